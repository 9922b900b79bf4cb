/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * fortify-fetch: output.  stdout and stderr are written through the loop's
 * thread pool (uv_fs_write), never with a blocking write on the loop
 * thread, and the same way whatever they are: a terminal, a pipe, a file.
 * uv_pipe_open() would need one code path per kind of descriptor and would
 * switch a shared terminal or pipe to non-blocking mode behind the shell's
 * back. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fetch.h"

/* ---- buffers ------------------------------------------------------------- */

static int buf_reserve(fetch_buf_t *b, size_t extra) {
  size_t cap = b->cap ? b->cap : 256;
  char *p;
  if (b->oom)
    return -1;
  if (extra <= b->cap - b->len)
    return 0;
  while (cap - b->len < extra) {
    if (cap > SIZE_MAX / 2) {
      b->oom = 1;
      return -1;
    }
    cap *= 2;
  }
  p = realloc(b->data, cap);
  if (p == NULL) {
    b->oom = 1;
    return -1;
  }
  b->data = p;
  b->cap = cap;
  return 0;
}

void fetch_buf_put(fetch_buf_t *b, const char *s, size_t n) {
  if (n == 0 || buf_reserve(b, n) != 0)
    return;
  memcpy(b->data + b->len, s, n);
  b->len += n;
}

void fetch_buf_puts(fetch_buf_t *b, const char *s) {
  fetch_buf_put(b, s, strlen(s));
}

void fetch_buf_printf(fetch_buf_t *b, const char *fmt, ...) {
  va_list ap;
  int n;
  char small[256];

  va_start(ap, fmt);
  n = vsnprintf(small, sizeof(small), fmt, ap);
  va_end(ap);
  if (n < 0)
    return;
  if ((size_t)n < sizeof(small)) {
    fetch_buf_put(b, small, (size_t)n);
    return;
  }
  if (buf_reserve(b, (size_t)n + 1) != 0)
    return;
  va_start(ap, fmt);
  vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  b->len += (size_t)n;
}

void fetch_buf_free(fetch_buf_t *b) {
  free(b->data);
  memset(b, 0, sizeof(*b));
}

/* ---- JSON strings -------------------------------------------------------- */

/* Length of the well-formed UTF-8 sequence at |s| (RFC 3629: no overlong
 * forms, no surrogates, nothing above U+10FFFF), or 0. */
static size_t utf8_seq(const unsigned char *s, size_t n) {
  unsigned char c = s[0], lo = 0x80, hi = 0xbf;
  size_t len, i;

  if (c >= 0xc2 && c <= 0xdf)
    len = 2;
  else if (c >= 0xe0 && c <= 0xef)
    len = 3;
  else if (c >= 0xf0 && c <= 0xf4)
    len = 4;
  else
    return 0;
  if (c == 0xe0)
    lo = 0xa0;
  else if (c == 0xed)
    hi = 0x9f;
  else if (c == 0xf0)
    lo = 0x90;
  else if (c == 0xf4)
    hi = 0x8f;
  if (n < len || s[1] < lo || s[1] > hi)
    return 0;
  for (i = 2; i < len; i++)
    if (s[i] < 0x80 || s[i] > 0xbf)
      return 0;
  return len;
}

static void json_escape_byte(fetch_buf_t *b, unsigned char c) {
  static const char hex[] = "0123456789abcdef";
  char esc[7] = {'\\', 'u', '0', '0', 0, 0, 0};
  switch (c) {
  case '"':
    fetch_buf_put(b, "\\\"", 2);
    return;
  case '\\':
    fetch_buf_put(b, "\\\\", 2);
    return;
  case '\n':
    fetch_buf_put(b, "\\n", 2);
    return;
  case '\r':
    fetch_buf_put(b, "\\r", 2);
    return;
  case '\t':
    fetch_buf_put(b, "\\t", 2);
    return;
  }
  esc[4] = hex[c >> 4];
  esc[5] = hex[c & 15];
  fetch_buf_put(b, esc, 6);
}

void fetch_buf_json(fetch_buf_t *b, const char *str, size_t n) {
  const unsigned char *s = (const unsigned char *)str;
  size_t i = 0, run, k;

  fetch_buf_put(b, "\"", 1);
  while (i < n) {
    /* Copy the longest run that needs no escape at once. */
    for (run = i; run < n && s[run] >= 0x20 && s[run] < 0x7f && s[run] != '"' &&
                  s[run] != '\\';
         run++)
      ;
    fetch_buf_put(b, str + i, run - i);
    i = run;
    if (i == n)
      break;
    if (s[i] < 0x80) {
      /* Control bytes and DEL, which terminals interpret, are escaped. */
      json_escape_byte(b, s[i]);
      i++;
    } else if ((k = utf8_seq(s + i, n - i)) > 0) {
      fetch_buf_put(b, str + i, k);
      i += k;
    } else {
      fetch_buf_put(b, "\\ufffd", 6); /* not UTF-8: one per bad byte */
      i++;
    }
  }
  fetch_buf_put(b, "\"", 1);
}

static void json_str_or_null(fetch_buf_t *b, const char *s, size_t n) {
  if (s == NULL)
    fetch_buf_put(b, "null", 4);
  else
    fetch_buf_json(b, s, n);
}

void fetch_json_line(fetch_buf_t *b, const fetch_result_t *r, int with_body) {
  char name[64];

  fetch_buf_puts(b, "{\"url\":");
  fetch_buf_json(b, r->url, strlen(r->url));
  fetch_buf_printf(b, ",\"index\":%zu,\"status\":", r->index);
  if (r->status == 0) {
    fetch_buf_puts(b, "\"OK\"");
  } else {
    fy_err_name_r(r->status, name, sizeof(name));
    fetch_buf_json(b, name, strlen(name));
  }
  fetch_buf_printf(b,
                   ",\"http_code\":%ld,\"attempts\":%u,\"elapsed_ms\":%.3f,"
                   "\"bytes\":%llu,\"error\":",
                   r->http_code, r->attempts, (double)r->elapsed_ns / 1e6,
                   (unsigned long long)r->bytes);
  json_str_or_null(b, r->error, r->error ? strlen(r->error) : 0);
  fetch_buf_puts(b, ",\"breaker\":");
  json_str_or_null(b, r->breaker, r->breaker ? strlen(r->breaker) : 0);
  if (with_body) {
    fetch_buf_puts(b, ",\"body\":");
    json_str_or_null(b, r->body, r->body_len);
  }
  fetch_buf_put(b, "}\n", 2);
}

/* ---- sinks --------------------------------------------------------------- */

void fetch_sink_init(fetch_sink_t *s, uv_loop_t *loop, uv_file fd) {
  memset(s, 0, sizeof(*s));
  s->loop = loop;
  s->fd = fd;
  s->req.data = s;
}

static void sink_write(fetch_sink_t *s);

static void sink_fail(fetch_sink_t *s, int err) {
  s->error = err;
  s->busy = 0;
  s->out.len = 0;
  s->fill.len = 0;
}

static void on_sink_write(uv_fs_t *req) {
  fetch_sink_t *s = req->data;
  ssize_t n = req->result;

  uv_fs_req_cleanup(req);
  if (n < 0) {
    sink_fail(s, (int)n);
  } else {
    s->off += (size_t)n;
    if (s->off < s->out.len) {
      sink_write(s); /* a short write: the rest */
      return;
    }
    s->busy = 0;
    s->out.len = 0;
    fetch_sink_flush(s);
  }
  if (s->on_written != NULL)
    s->on_written(s);
}

/* uv_buf_t holds an unsigned length: a huge batch goes in pieces. */
static void sink_write(fetch_sink_t *s) {
  size_t n = s->out.len - s->off;
  uv_buf_t b = uv_buf_init(s->out.data + s->off,
                           (unsigned)(n > (1u << 30) ? (1u << 30) : n));
  int rc = uv_fs_write(s->loop, &s->req, s->fd, &b, 1, -1, on_sink_write);
  if (rc != 0)
    sink_fail(s, rc);
}

void fetch_sink_flush(fetch_sink_t *s) {
  fetch_buf_t t;
  if (s->error != 0 || s->fill.oom) {
    if (s->error == 0)
      s->error = UV_ENOMEM;
    s->fill.len = 0;
    return;
  }
  if (s->busy || s->fill.len == 0)
    return;
  t = s->out; /* swap: the empty buffer keeps its memory for next time */
  s->out = s->fill;
  s->fill = t;
  s->fill.len = 0;
  s->off = 0;
  s->busy = 1;
  sink_write(s);
}

int fetch_sink_full(const fetch_sink_t *s) {
  return s->busy && s->fill.len >= FETCH_SINK_HIGH_WATER;
}

void fetch_sink_free(fetch_sink_t *s) {
  fetch_buf_free(&s->fill);
  fetch_buf_free(&s->out);
}

/* ---- progress and summary ------------------------------------------------ */

static double seconds(uint64_t from_ns, uint64_t to_ns) {
  return to_ns > from_ns ? (double)(to_ns - from_ns) / 1e9 : 0.0;
}

static double rate(size_t n, double secs) {
  return secs > 0.0 ? (double)n / secs : 0.0;
}

void fetch_progress_line(fetch_buf_t *b, const fetch_stats_t *st,
                         uint64_t now_ns) {
  enum { WIDTH = 24 };
  char bar[WIDTH + 1];
  size_t fill = st->total ? st->done * WIDTH / st->total : 0, i;

  for (i = 0; i < WIDTH; i++)
    bar[i] = i < fill ? '#' : '-';
  bar[WIDTH] = '\0';
  fetch_buf_printf(b,
                   "\r[%s] %zu/%zu  ok %zu  failed %zu  retries %llu  "
                   "%.1f req/s\033[K",
                   bar, st->done, st->total, st->ok, st->failed,
                   (unsigned long long)st->retries,
                   rate(st->done, seconds(st->start_ns, now_ns)));
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

/* Nearest rank of a sorted sample, in ms. */
static double pct_ms(const uint64_t *v, size_t n, unsigned p) {
  size_t rank = (n * p + 99) / 100;
  return n == 0 ? 0.0 : (double)v[rank ? rank - 1 : 0] / 1e6;
}

void fetch_summary(fetch_buf_t *b, fetch_stats_t *st, uint64_t now_ns,
                   int interrupted) {
  double secs = seconds(st->start_ns, now_ns);
  size_t n = st->done;

  qsort(st->lat_ns, n, sizeof(*st->lat_ns), cmp_u64);
  fetch_buf_printf(b, FETCH_PROG ": %s%zu of %zu URLs in %.3f s (%.1f req/s)\n",
                   interrupted ? "interrupted: " : "", n, st->total, secs,
                   rate(n, secs));
  fetch_buf_printf(b, "  ok %zu (%.1f%%), failed %zu\n", st->ok,
                   n ? 100.0 * (double)st->ok / (double)n : 0.0, st->failed);
  fetch_buf_printf(b,
                   "  latency p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, "
                   "max %.2f ms\n",
                   pct_ms(st->lat_ns, n, 50), pct_ms(st->lat_ns, n, 90),
                   pct_ms(st->lat_ns, n, 99), pct_ms(st->lat_ns, n, 100));
  fetch_buf_printf(b, "  attempts %llu, retries %llu, breaker opens %llu\n",
                   (unsigned long long)st->attempts,
                   (unsigned long long)st->retries,
                   (unsigned long long)st->breaker_opens);
}
