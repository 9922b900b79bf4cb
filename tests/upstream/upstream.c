/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * The test upstream (see upstream.h and docs/upstream.md).
 *
 * One connection is one conn_t holding its TCP handle, a timer (response
 * latency and the pause between body pieces), the request parser and the
 * response being written.  A connection answers one request at a time: a
 * request that arrives while the previous answer is still being written is
 * buffered (bounded) and parsed once that answer is done, so pipelining
 * works even though nothing relies on it.
 *
 * Nothing is allocated per request on the plain path: reads go into one
 * buffer per server (libuv calls alloc, read and the read callback back to
 * back, and the parser copies what it keeps), headers are formatted into a
 * buffer of the connection, and bodies point into a filler block built once
 * per server.  Only /echo bodies, pipelined bytes and routes allocate.
 *
 * The server's own state is touched by its loop thread only, except the
 * counters (atomics) and the route table (a mutex), which other threads
 * read and write through fy_up_stats and fy_up_route. */
#include "upstream.h"

#include <http_parser.h>

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

enum {
  UP_BACKLOG = 4096,       /* the kernel caps it at net.core.somaxconn */
  UP_URL_MAX = 4096,       /* longer request targets get 414 */
  UP_HEADER_MAX = 32768,   /* more header bytes get 431 */
  UP_ECHO_MAX = 8 << 20,   /* larger /echo bodies get 413 */
  UP_PENDING_MAX = 65536,  /* pipelined bytes kept while answering */
  UP_HEAD_MAX = 1024,
  UP_RA_MAX = 256,         /* longest Retry-After value */
  UP_VALUE_MAX = 512,      /* longest decoded query value */
  UP_READ_BUF = 65536,
  UP_FILL = 65536,         /* longest body piece in one buffer */
  UP_HUGE_LINE = 1024,     /* one huge_headers line, CRLF included */
  UP_HUGE_BLOCK = 16,      /* lines in the prebuilt block */
  UP_NBUFS = 24,           /* buffers in one write */
  UP_NFRAMES = 8,          /* chunk headers in one write */
  UP_BATCH = 256 * 1024,   /* bytes queued by one write */
  UP_ROUTES_MAX = 64,
  UP_ROUTE_PATH_MAX = 256,
  UP_ROUTE_QUERY_MAX = 1024
};

#define UP_MS_MAX 3600000u           /* one hour */
#define UP_BODY_MAX (1ull << 40)
#define UP_CHUNK_MAX (16u << 20)
#define UP_HUGE_KB_MAX 4096u

enum {
  ACT_NONE,
  ACT_RESET,
  ACT_RESET_MID,
  ACT_STALL,
  ACT_STALL_MID,
  ACT_GARBAGE,
  ACT_TRUNCATED,
  ACT_HUGE,
  ACT_CLOSE_AFTER
};

/* What a connection is doing. */
enum {
  ST_READ,    /* reading (or waiting for) a request */
  ST_DELAY,   /* request complete, latency timer running */
  ST_WRITE,   /* a write of the answer is in flight */
  ST_PAUSE,   /* between two body pieces (chunk_delay) */
  ST_STALL,   /* never answers */
  ST_CLOSING
};

/* What to do once the answer has been written. */
enum { END_DONE, END_CLOSE, END_RESET, END_STALL };

typedef struct params_s {
  unsigned status;
  unsigned fail_status;
  double fail;
  double slow;
  double action_rate;
  uint64_t latency;
  uint64_t jitter;
  uint64_t slow_ms;
  uint64_t body;
  uint64_t chunk;
  uint64_t chunk_delay;
  unsigned huge_kb;
  int chunked;
  int action;
  size_t ra_len;               /* 0: no Retry-After */
  char ra[UP_RA_MAX];
} params_t;

typedef struct route_s {
  char *path;
  char *query;
} route_t;

typedef struct conn_s conn_t;

struct fy_up_s {
  uv_loop_t *loop;
  uv_tcp_t listener;
  uv_async_t wake;             /* spawned: the close request */
  uv_thread_t thread;
  uv_mutex_t mu;               /* guards routes */
  uv_loop_t own;               /* spawned: the server's loop */
  int spawned;
  int has_wake;
  int closing;
  unsigned handles;            /* listener, wake, one per connection */
  void (*close_cb)(void *user_data);
  void *close_ud;
  fy_up_opts_t opts;
  uint16_t port;
  uint64_t rng;
  conn_t *conns;
  unsigned nroutes;
  route_t routes[UP_ROUTES_MAX];
  struct {
    _Atomic uint64_t connections, requests, responses;
    _Atomic uint64_t s2xx, s4xx, s5xx, actions, bytes_out;
    _Atomic uint64_t bad_requests, open, peak_open;
  } st;
  char rbuf[UP_READ_BUF];
  char fill[UP_FILL + 3];
  char huge[UP_HUGE_LINE * UP_HUGE_BLOCK];
};

struct conn_s {
  uv_tcp_t tcp;
  uv_timer_t timer;
  uv_write_t wreq;
  uv_write_t creq;             /* "100 Continue" */
  http_parser parser;
  fy_up_t *up;
  conn_t *prev;
  conn_t *next;
  int state;
  int end;
  int action;
  unsigned open_handles;
  unsigned status;
  int err_status;              /* set by the parser callbacks */
  unsigned closing : 1;
  unsigned keep_alive : 1;
  unsigned peer_eof : 1;
  unsigned head_only : 1;
  unsigned echo : 1;
  unsigned chunked : 1;
  unsigned head_sent : 1;
  unsigned huge_crlf : 1;
  unsigned term_needed : 1;
  unsigned term_sent : 1;
  unsigned delay_next : 1;
  unsigned cont_busy : 1;
  unsigned expect : 1;
  unsigned in_value : 1;
  unsigned value_is_expect : 1;
  uint64_t wake_at;            /* uv_hrtime() deadline of the timer */
  uint64_t body_total;
  uint64_t body_limit;         /* bytes actually sent (< total if cut) */
  uint64_t body_sent;
  uint64_t piece_left;
  uint64_t chunk;
  uint64_t chunk_delay;
  unsigned huge_left;          /* huge_headers lines still to write */
  size_t batch;                /* bytes of the write in flight */
  size_t header_bytes;
  size_t hname_len;
  size_t hval_len;
  char hname[8];
  char hval[16];
  char *echo_buf;
  size_t echo_len;
  size_t echo_cap;
  char *pend;                  /* pipelined bytes, UP_PENDING_MAX */
  size_t pend_off;
  size_t pend_len;
  size_t head_len;
  size_t url_len;
  uv_buf_t bufs[UP_NBUFS];
  char fhdr[UP_NFRAMES][20];
  char head[UP_HEAD_MAX];
  char url[UP_URL_MAX];
};

static const char up_crlf[] = "\r\n";
static const char up_last_chunk[] = "0\r\n\r\n";
static const char up_continue[] = "HTTP/1.1 100 Continue\r\n\r\n";
/* Starts like an SSH banner and goes on like a TLS record: neither is a
 * status line, so a client cannot mistake it for HTTP. */
static const char up_garbage[] =
    "SSH-2.0-fortify_garbage\r\n\x16\x03\x01\x00\xa5\x01\x00\x00\xa1"
    "\xff\xfe\xfd not http at all\r\n\r\n";

static void conn_close(conn_t *c, int reset);
static void conn_pump(conn_t *c);
static void conn_feed(conn_t *c, const char *data, size_t len, int pend);

/* ---- small helpers ------------------------------------------------------ */

static void up_log(const fy_up_t *up, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void up_log(const fy_up_t *up, const char *fmt, ...) {
  va_list ap;

  if (up->opts.quiet)
    return;
  va_start(ap, fmt);
  fputs("fortify-upstream: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

#define ST_ADD(up, field, n) \
  atomic_fetch_add_explicit(&(up)->st.field, (n), memory_order_relaxed)
#define ST_GET(up, field) \
  atomic_load_explicit(&(up)->st.field, memory_order_relaxed)

/* splitmix64: one stream per server, drawn on the loop thread only. */
static uint64_t up_next(fy_up_t *up) {
  uint64_t z = (up->rng += 0x9e3779b97f4a7c15ull);

  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* Uniform in [0, 1). */
static double up_uniform(fy_up_t *up) {
  return (double)(up_next(up) >> 11) * 0x1.0p-53;
}

static uint64_t u64_min(uint64_t a, uint64_t b) {
  return a < b ? a : b;
}

/* A bounded output cursor: writes past the end are dropped, never made. */
typedef struct out_s {
  char *p;
  char *end;
} out_t;

static void out_mem(out_t *o, const char *s, size_t n) {
  size_t room = (size_t)(o->end - o->p);

  if (n > room)
    n = room;
  memcpy(o->p, s, n);
  o->p += n;
}

static void out_str(out_t *o, const char *s) {
  out_mem(o, s, strlen(s));
}

static void out_u64(out_t *o, uint64_t v) {
  char tmp[24];
  size_t i = sizeof(tmp);

  do {
    tmp[--i] = (char)('0' + v % 10);
    v /= 10;
  } while (v != 0);
  out_mem(o, tmp + i, sizeof(tmp) - i);
}

static size_t fmt_hex(char *dst, uint64_t v) {
  char tmp[20];
  size_t i = sizeof(tmp);
  size_t n;

  do {
    tmp[--i] = "0123456789abcdef"[v & 15];
    v >>= 4;
  } while (v != 0);
  n = sizeof(tmp) - i;
  memcpy(dst, tmp + i, n);
  return n;
}

static const char *reason(unsigned status) {
  switch (status) {
  case 200: return "OK";
  case 201: return "Created";
  case 202: return "Accepted";
  case 204: return "No Content";
  case 206: return "Partial Content";
  case 301: return "Moved Permanently";
  case 302: return "Found";
  case 304: return "Not Modified";
  case 400: return "Bad Request";
  case 401: return "Unauthorized";
  case 403: return "Forbidden";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 408: return "Request Timeout";
  case 409: return "Conflict";
  case 410: return "Gone";
  case 413: return "Content Too Large";
  case 414: return "URI Too Long";
  case 429: return "Too Many Requests";
  case 431: return "Request Header Fields Too Large";
  case 500: return "Internal Server Error";
  case 501: return "Not Implemented";
  case 502: return "Bad Gateway";
  case 503: return "Service Unavailable";
  case 504: return "Gateway Timeout";
  case 505: return "HTTP Version Not Supported";
  default: return "Status";
  }
}

/* ---- the query language ------------------------------------------------- */

static void params_init(params_t *p) {
  memset(p, 0, sizeof(*p));
  p->status = 200;
  p->fail_status = 503;
  p->action_rate = 1.0;
  p->body = 3;
  p->chunk = 16384;
  p->huge_kb = 64;
}

static int hexval(int ch) {
  if (ch >= '0' && ch <= '9')
    return ch - '0';
  if (ch >= 'a' && ch <= 'f')
    return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F')
    return ch - 'A' + 10;
  return -1;
}

/* Percent-decodes |s| ("+" is a space, as in forms) into |dst|; returns the
 * decoded length or -1 when it does not fit or a %XX is malformed. */
static long url_decode(const char *s, size_t n, char *dst, size_t cap) {
  size_t i;
  size_t o = 0;

  for (i = 0; i < n; i++) {
    int ch = (unsigned char)s[i];

    if (ch == '%') {
      int hi = i + 2 < n ? hexval((unsigned char)s[i + 1]) : -1;
      int lo = i + 2 < n ? hexval((unsigned char)s[i + 2]) : -1;

      if (hi < 0 || lo < 0)
        return -1;
      ch = hi * 16 + lo;
      i += 2;
    } else if (ch == '+') {
      ch = ' ';
    }
    if (o >= cap)
      return -1;
    dst[o++] = (char)ch;
  }
  return (long)o;
}

static int parse_u64(const char *s, size_t n, uint64_t max, uint64_t *out) {
  uint64_t v = 0;
  size_t i;

  if (n == 0 || n > 20)
    return -1;
  for (i = 0; i < n; i++) {
    uint64_t d = (uint64_t)(s[i] - '0');

    if (s[i] < '0' || s[i] > '9' || d > max || v > (max - d) / 10)
      return -1;
    v = v * 10 + d;
  }
  *out = v;
  return 0;
}

/* A probability: digits, an optional fraction, in [0, 1].  Written by hand
 * so the locale's decimal point cannot change what a URL means. */
static int parse_prob(const char *s, size_t n, double *out) {
  double v = 0;
  double scale = 1;
  size_t i = 0;
  int digits = 0;

  for (; i < n && s[i] >= '0' && s[i] <= '9'; i++, digits++)
    v = v * 10 + (s[i] - '0');
  if (i < n && s[i] == '.') {
    for (i++; i < n && s[i] >= '0' && s[i] <= '9'; i++, digits++) {
      scale /= 10;
      v += (s[i] - '0') * scale;
    }
  }
  if (i != n || digits == 0 || digits > 40 || v > 1.0)
    return -1;
  *out = v;
  return 0;
}

static int parse_status(const char *s, size_t n, unsigned *out) {
  uint64_t v;

  if (parse_u64(s, n, 999, &v) != 0 || v < 200)
    return -1;
  *out = (unsigned)v;
  return 0;
}

static int parse_action(const char *s, size_t n, int *out) {
  static const struct {
    const char *name;
    int action;
  } names[] = {
      {"none", ACT_NONE},          {"reset", ACT_RESET},
      {"reset_mid_body", ACT_RESET_MID}, {"stall", ACT_STALL},
      {"stall_mid_body", ACT_STALL_MID}, {"garbage", ACT_GARBAGE},
      {"truncated", ACT_TRUNCATED}, {"huge_headers", ACT_HUGE},
      {"close_after", ACT_CLOSE_AFTER}};
  size_t i;

  for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
    if (strlen(names[i].name) == n && memcmp(names[i].name, s, n) == 0) {
      *out = names[i].action;
      return 0;
    }
  }
  return -1;
}

static int key_is(const char *k, size_t kn, const char *name) {
  return strlen(name) == kn && memcmp(k, name, kn) == 0;
}

/* Applies one key=value pair; unknown keys are ignored (cache busters,
 * request ids).  Returns 0 or -1 for a bad value of a known key. */
static int param_set(params_t *p, const char *k, size_t kn, const char *v,
                     size_t vn) {
  uint64_t u;

  if (key_is(k, kn, "status"))
    return parse_status(v, vn, &p->status);
  if (key_is(k, kn, "fail_status"))
    return parse_status(v, vn, &p->fail_status);
  if (key_is(k, kn, "fail"))
    return parse_prob(v, vn, &p->fail);
  if (key_is(k, kn, "slow"))
    return parse_prob(v, vn, &p->slow);
  if (key_is(k, kn, "action_rate"))
    return parse_prob(v, vn, &p->action_rate);
  if (key_is(k, kn, "latency"))
    return parse_u64(v, vn, UP_MS_MAX, &p->latency);
  if (key_is(k, kn, "jitter"))
    return parse_u64(v, vn, UP_MS_MAX, &p->jitter);
  if (key_is(k, kn, "slow_ms"))
    return parse_u64(v, vn, UP_MS_MAX, &p->slow_ms);
  if (key_is(k, kn, "chunk_delay"))
    return parse_u64(v, vn, UP_MS_MAX, &p->chunk_delay);
  if (key_is(k, kn, "body"))
    return parse_u64(v, vn, UP_BODY_MAX, &p->body);
  if (key_is(k, kn, "chunk")) {
    if (parse_u64(v, vn, UP_CHUNK_MAX, &u) != 0 || u == 0)
      return -1;
    p->chunk = u;
    return 0;
  }
  if (key_is(k, kn, "chunked")) {
    if (parse_u64(v, vn, 1, &u) != 0)
      return -1;
    p->chunked = (int)u;
    return 0;
  }
  if (key_is(k, kn, "huge_kb")) {
    if (parse_u64(v, vn, UP_HUGE_KB_MAX, &u) != 0)
      return -1;
    p->huge_kb = (unsigned)u;
    return 0;
  }
  if (key_is(k, kn, "action"))
    return parse_action(v, vn, &p->action);
  if (key_is(k, kn, "retry_after")) {
    size_t i;

    /* Anything printable goes out verbatim; control bytes would let a
     * query split the response. */
    if (vn == 0 || vn > UP_RA_MAX)
      return -1;
    for (i = 0; i < vn; i++) {
      unsigned char ch = (unsigned char)v[i];
      if (ch < 0x20 || ch == 0x7f)
        return -1;
    }
    memcpy(p->ra, v, vn);
    p->ra_len = vn;
    return 0;
  }
  return 0;
}

/* Applies a query string ("a=1&b=2", no leading "?").  On error returns -1
 * and points |*bad| at the offending key (a static name). */
static int params_parse(params_t *p, const char *q, size_t n,
                        const char **bad) {
  static const char *const known[] = {
      "status", "fail_status", "fail", "slow", "action_rate", "latency",
      "jitter", "slow_ms", "chunk_delay", "body", "chunk", "chunked",
      "huge_kb", "action", "retry_after"};
  char val[UP_VALUE_MAX];
  size_t i = 0;

  while (i < n) {
    size_t start = i;
    size_t eq = 0;
    size_t kn;
    int have_eq = 0;
    long vn;

    while (i < n && q[i] != '&') {
      if (!have_eq && q[i] == '=') {
        have_eq = 1;
        eq = i;
      }
      i++;
    }
    kn = (have_eq ? eq : i) - start;
    if (kn > 0) {
      const char *v = have_eq ? q + eq + 1 : q + i;
      size_t raw = have_eq ? i - eq - 1 : 0;

      vn = url_decode(v, raw, val, sizeof(val));
      if (vn < 0 || param_set(p, q + start, kn, val, (size_t)vn) != 0) {
        size_t j;

        *bad = "query";
        for (j = 0; j < sizeof(known) / sizeof(known[0]); j++)
          if (key_is(q + start, kn, known[j]))
            *bad = known[j];
        return -1;
      }
    }
    i++;   /* the '&' */
  }
  return 0;
}

/* ---- routes ------------------------------------------------------------- */

/* Applies the route of |path|, if any, under the lock (fy_up_route may run
 * on another thread).  Route queries were validated when set. */
static void route_apply(fy_up_t *up, const char *path, size_t n,
                        params_t *p) {
  unsigned i;
  const char *bad;

  uv_mutex_lock(&up->mu);
  for (i = 0; i < up->nroutes; i++) {
    route_t *r = &up->routes[i];
    if (strlen(r->path) == n && memcmp(r->path, path, n) == 0) {
      (void)params_parse(p, r->query, strlen(r->query), &bad);
      break;
    }
  }
  uv_mutex_unlock(&up->mu);
}

int fy_up_route(fy_up_t *up, const char *path, const char *query) {
  route_t fresh = {NULL, NULL};
  route_t old = {NULL, NULL};
  size_t plen;
  unsigned i;
  int rc = 0;

  if (up == NULL || path == NULL || path[0] != '/' ||
      strchr(path, '?') != NULL)
    return UV_EINVAL;
  plen = strlen(path);
  if (plen >= UP_ROUTE_PATH_MAX)
    return UV_EINVAL;
  if (query != NULL) {
    params_t p;
    const char *bad;
    size_t qlen;

    if (query[0] == '?')
      query++;
    qlen = strlen(query);
    params_init(&p);
    if (qlen >= UP_ROUTE_QUERY_MAX || params_parse(&p, query, qlen, &bad))
      return UV_EINVAL;
    fresh.path = malloc(plen + 1 + qlen + 1);
    if (fresh.path == NULL)
      return UV_ENOMEM;
    memcpy(fresh.path, path, plen + 1);
    fresh.query = fresh.path + plen + 1;
    memcpy(fresh.query, query, qlen + 1);
  }

  uv_mutex_lock(&up->mu);
  for (i = 0; i < up->nroutes; i++)
    if (strcmp(up->routes[i].path, path) == 0)
      break;
  if (i < up->nroutes) {
    old = up->routes[i];
    if (fresh.path != NULL)
      up->routes[i] = fresh;
    else
      up->routes[i] = up->routes[--up->nroutes];
  } else if (fresh.path != NULL) {
    if (up->nroutes < UP_ROUTES_MAX)
      up->routes[up->nroutes++] = fresh;
    else
      rc = UV_ENOBUFS;
  }
  uv_mutex_unlock(&up->mu);

  free(old.path);
  if (rc != 0)
    free(fresh.path);
  return rc;
}

/* ---- connections: lifetime ---------------------------------------------- */

static void up_maybe_done(fy_up_t *up);

static void on_conn_closed(uv_handle_t *h) {
  conn_t *c = h->data;
  fy_up_t *up = c->up;

  if (--c->open_handles > 0)
    return;
  if (c->prev != NULL)
    c->prev->next = c->next;
  else
    up->conns = c->next;
  if (c->next != NULL)
    c->next->prev = c->prev;
  free(c->echo_buf);
  free(c->pend);
  free(c);
  atomic_fetch_sub_explicit(&up->st.open, 1, memory_order_relaxed);
  up->handles--;
  up_maybe_done(up);
}

/* Closes both handles; with |reset| the peer gets a RST instead of a FIN.
 * The memory goes when the second close callback has run. */
static void conn_close(conn_t *c, int reset) {
  if (c->closing)
    return;
  c->closing = 1;
  c->state = ST_CLOSING;
  uv_close((uv_handle_t *)&c->timer, on_conn_closed);
#if UV_VERSION_HEX >= 0x012000
  if (reset && uv_tcp_close_reset(&c->tcp, on_conn_closed) == 0)
    return;
#else
  (void)reset;
#endif
  uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
}

/* Waits at least |ms| (the timer is checked against uv_hrtime, since the
 * loop's millisecond clock may lag by up to one tick), then goes on from
 * |state|.  A client that has closed its side is not waited for. */
static void on_conn_timer(uv_timer_t *t);

static void conn_sleep(conn_t *c, uint64_t ms, int state) {
  if (c->peer_eof) {
    conn_close(c, 0);
    return;
  }
  c->state = state;
  c->wake_at = uv_hrtime() + ms * 1000000u;
  uv_timer_start(&c->timer, on_conn_timer, ms, 0);
}

/* ---- connections: writing the answer ------------------------------------ */

static int conn_more(const conn_t *c) {
  return !c->head_sent || c->body_sent < c->body_limit ||
         (c->term_needed && !c->term_sent);
}

/* Back to reading: the pipelined bytes first; a client that has shut
 * down its side is closed once nothing it sent remains to answer. */
static void conn_resume(conn_t *c) {
  c->state = ST_READ;
  http_parser_pause(&c->parser, 0);
  if (c->pend_len > c->pend_off)
    conn_feed(c, c->pend + c->pend_off, c->pend_len - c->pend_off, 1);
  if (c->peer_eof && c->state == ST_READ && !c->closing)
    conn_close(c, 0);
}

static void conn_finish(conn_t *c) {
  fy_up_t *up = c->up;

  switch (c->end) {
  case END_DONE:
    ST_ADD(up, responses, 1);
    if (c->status >= 500)
      ST_ADD(up, s5xx, 1);
    else if (c->status >= 400)
      ST_ADD(up, s4xx, 1);
    else if (c->status >= 200 && c->status < 300)
      ST_ADD(up, s2xx, 1);
    if (!c->keep_alive)
      conn_close(c, 0);
    else
      conn_resume(c);
    break;
  case END_CLOSE:
    conn_close(c, 0);
    break;
  case END_RESET:
    conn_close(c, 1);
    break;
  default:
    if (c->peer_eof)
      conn_close(c, 0);
    else
      c->state = ST_STALL;
    break;
  }
}

static void on_write(uv_write_t *req, int status) {
  conn_t *c = req->data;

  if (c->closing)
    return;
  if (status < 0) {
    conn_close(c, 0);
    return;
  }
  ST_ADD(c->up, bytes_out, c->batch);
  if (!conn_more(c)) {
    conn_finish(c);
  } else if (c->delay_next) {
    c->delay_next = 0;
    conn_sleep(c, c->chunk_delay, ST_PAUSE);
  } else {
    conn_pump(c);
  }
}

static const char *body_at(const conn_t *c, uint64_t off) {
  if (c->echo)
    return c->echo_buf + off;
  return c->up->fill + off % 3;
}

/* Queues the next batch of the answer: headers (and huge_headers lines),
 * then body pieces, framed as chunks when asked, stopping after a piece
 * when chunk_delay wants a pause. */
static void conn_pump(conn_t *c) {
  fy_up_t *up = c->up;
  unsigned n = 0;
  unsigned nf = 0;
  size_t bytes = 0;

#define ADD(ptr, len)                                           \
  do {                                                          \
    c->bufs[n] = uv_buf_init((char *)(ptr), (unsigned)(len));  \
    bytes += (len);                                             \
    n++;                                                        \
  } while (0)

  if (!c->head_sent) {
    if (c->head_len > 0) {
      ADD(c->head, c->head_len);
      c->head_len = 0;
    }
    while (c->huge_left > 0 && n < UP_NBUFS - 1 && bytes < UP_BATCH) {
      unsigned k = c->huge_left < UP_HUGE_BLOCK ? c->huge_left
                                                : UP_HUGE_BLOCK;
      ADD(up->huge, (size_t)k * UP_HUGE_LINE);
      c->huge_left -= k;
    }
    if (c->huge_left == 0) {
      if (c->huge_crlf)
        ADD(up_crlf, 2);
      c->head_sent = 1;
    }
  }
  while (c->head_sent && c->body_sent < c->body_limit &&
         n + 3 <= UP_NBUFS && nf < UP_NFRAMES && bytes < UP_BATCH) {
    uint64_t k;

    if (c->piece_left == 0) {
      c->piece_left = u64_min(c->chunk, c->body_total - c->body_sent);
      if (c->chunked) {
        size_t hn = fmt_hex(c->fhdr[nf], c->piece_left);
        memcpy(c->fhdr[nf] + hn, "\r\n", 2);
        ADD(c->fhdr[nf], hn + 2);
        nf++;
      }
    }
    k = u64_min(c->piece_left, c->body_limit - c->body_sent);
    k = u64_min(k, UP_FILL);
    ADD(body_at(c, c->body_sent), k);
    c->body_sent += k;
    c->piece_left -= k;
    if (c->piece_left == 0) {
      if (c->chunked)
        ADD(up_crlf, 2);
      if (c->chunk_delay > 0 && c->body_sent < c->body_limit) {
        c->delay_next = 1;
        break;
      }
    }
  }
  if (c->head_sent && c->term_needed && !c->term_sent &&
      c->body_sent == c->body_limit && !c->delay_next && n < UP_NBUFS) {
    ADD(up_last_chunk, sizeof(up_last_chunk) - 1);
    c->term_sent = 1;
  }
#undef ADD

  if (n == 0) {
    conn_finish(c);
    return;
  }
  c->batch = bytes;
  c->state = ST_WRITE;
  if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, c->bufs, n, on_write) != 0)
    conn_close(c, 0);
}

/* ---- connections: deciding the answer ----------------------------------- */

/* Resets the writer for a new answer whose headers are in c->head. */
static void conn_plan(conn_t *c, uint64_t total, uint64_t limit) {
  c->body_total = total;
  c->body_limit = limit;
  c->body_sent = 0;
  c->piece_left = 0;
  c->head_sent = 0;
  c->term_sent = 0;
  c->delay_next = 0;
  c->huge_left = 0;
  c->huge_crlf = 0;
  c->term_needed = 0;
  c->end = END_DONE;
}

static void head_connection(const conn_t *c, out_t *o) {
  if (!c->keep_alive)
    out_str(o, "Connection: close\r\n");
  else if (c->parser.http_major == 1 && c->parser.http_minor == 0)
    out_str(o, "Connection: keep-alive\r\n");
}

static void head_status(out_t *o, unsigned status) {
  out_str(o, "HTTP/1.1 ");
  out_u64(o, status);
  out_mem(o, " ", 1);
  out_str(o, reason(status));
  out_str(o, "\r\nContent-Type: text/plain\r\n");
}

/* Answers |status| with a one-line text body; used for requests that are
 * not valid HTTP (then |keep| is 0) and for bad query values. */
static void conn_reply_error(conn_t *c, unsigned status, const char *msg,
                             const char *detail, int keep) {
  char body[128];
  out_t b = {body, body + sizeof(body)};
  out_t o = {c->head, c->head + sizeof(c->head)};

  out_str(&b, msg);
  if (detail != NULL) {
    out_str(&b, ": ");
    out_str(&b, detail);
  }
  out_mem(&b, "\n", 1);
  if (!keep)
    c->keep_alive = 0;
  c->status = status;
  head_status(&o, status);
  out_str(&o, "Content-Length: ");
  out_u64(&o, (uint64_t)(b.p - body));
  out_str(&o, "\r\n");
  head_connection(c, &o);
  out_str(&o, "\r\n");
  if (!c->head_only)
    out_mem(&o, body, (size_t)(b.p - body));
  c->head_len = (size_t)(o.p - c->head);
  conn_plan(c, 0, 0);
  conn_pump(c);
}

/* Carries out the decided answer (after the latency, if any). */
static void conn_act(conn_t *c) {
  c->state = ST_WRITE;
  switch (c->action) {
  case ACT_RESET:
    conn_close(c, 1);
    return;
  case ACT_GARBAGE:
    conn_plan(c, 0, 0);
    memcpy(c->head, up_garbage, sizeof(up_garbage) - 1);
    c->head_len = sizeof(up_garbage) - 1;
    c->end = END_CLOSE;
    break;
  case ACT_RESET_MID:
    c->end = END_RESET;
    break;
  case ACT_STALL_MID:
    c->end = END_STALL;
    break;
  case ACT_TRUNCATED:
  case ACT_CLOSE_AFTER:
    c->end = END_CLOSE;
    break;
  default:
    break;
  }
  conn_pump(c);
}

/* A request is complete: read its script (route, then query), draw from
 * the PRNG, format the headers and answer now or after the latency. */
static void conn_respond(conn_t *c) {
  fy_up_t *up = c->up;
  params_t p;
  const char *q;
  const char *bad = NULL;
  size_t plen;
  uint64_t delay;
  uint64_t total;
  uint64_t limit;
  int no_body;
  out_t o = {c->head, c->head + sizeof(c->head)};

  c->url[c->url_len] = '\0';
  q = memchr(c->url, '?', c->url_len);
  plen = q != NULL ? (size_t)(q - c->url) : c->url_len;

  params_init(&p);
  route_apply(up, c->url, plen, &p);
  if (q != NULL &&
      params_parse(&p, q + 1, c->url_len - plen - 1, &bad) != 0) {
    conn_reply_error(c, 400, "bad query parameter", bad, 1);
    return;
  }

  /* The draws, in a fixed order, only for what the request asks. */
  c->status = p.status;
  if (p.fail > 0 && (p.fail >= 1 || up_uniform(up) < p.fail))
    c->status = p.fail_status;
  delay = p.latency;
  if (p.jitter > 0)
    delay += (uint64_t)(up_uniform(up) * (double)(p.jitter + 1));
  if (p.slow > 0 && (p.slow >= 1 || up_uniform(up) < p.slow))
    delay += p.slow_ms;
  c->action = p.action;
  if (p.action != ACT_NONE && p.action_rate < 1 &&
      (p.action_rate <= 0 || up_uniform(up) >= p.action_rate))
    c->action = ACT_NONE;
  if (c->action != ACT_NONE)
    ST_ADD(up, actions, 1);
  if (c->action == ACT_STALL) {
    c->state = ST_STALL;
    return;
  }

  no_body = c->status == 204 || c->status == 304;
  total = no_body ? 0 : c->echo ? c->echo_len : p.body;
  if (c->action == ACT_TRUNCATED && total == 0 && !p.chunked)
    total = 1;
  limit = c->head_only ? 0 : total;
  if (c->action == ACT_RESET_MID || c->action == ACT_STALL_MID ||
      c->action == ACT_TRUNCATED)
    limit /= 2;
  conn_plan(c, total, limit);
  c->chunked = p.chunked && !no_body;
  c->chunk = p.chunk;
  c->chunk_delay = p.chunk_delay;
  c->term_needed = c->chunked && !c->head_only && limit == total;

  head_status(&o, c->status);
  if (c->chunked)
    out_str(&o, "Transfer-Encoding: chunked\r\n");
  else if (!no_body) {
    out_str(&o, "Content-Length: ");
    out_u64(&o, total);
    out_str(&o, "\r\n");
  }
  if (p.ra_len > 0) {
    out_str(&o, "Retry-After: ");
    out_mem(&o, p.ra, p.ra_len);
    out_str(&o, "\r\n");
  }
  head_connection(c, &o);
  if (c->action == ACT_HUGE) {
    c->huge_left = p.huge_kb;
    c->huge_crlf = 1;
  } else {
    out_str(&o, "\r\n");
  }
  c->head_len = (size_t)(o.p - c->head);

  if (delay > 0)
    conn_sleep(c, delay, ST_DELAY);
  else
    conn_act(c);
}

static void on_conn_timer(uv_timer_t *t) {
  conn_t *c = t->data;
  uint64_t now = uv_hrtime();

  if (now < c->wake_at) {
    uv_timer_start(t, on_conn_timer, (c->wake_at - now + 999999) / 1000000,
                   0);
    return;
  }
  if (c->state == ST_DELAY) {
    conn_act(c);
  } else if (c->state == ST_PAUSE) {
    conn_pump(c);
  }
}

/* ---- connections: reading the request ----------------------------------- */

static conn_t *conn_of(http_parser *p) {
  return p->data;
}

/* Keeps what follows a complete request for later; returns -1 when more
 * than UP_PENDING_MAX bytes wait. */
static int conn_keep(conn_t *c, const char *data, size_t len) {
  if (c->pend == NULL) {
    c->pend = malloc(UP_PENDING_MAX);
    if (c->pend == NULL)
      return -1;
  }
  if (c->pend_off > 0) {
    memmove(c->pend, c->pend + c->pend_off, c->pend_len - c->pend_off);
    c->pend_len -= c->pend_off;
    c->pend_off = 0;
  }
  if (len > UP_PENDING_MAX - c->pend_len)
    return -1;
  memcpy(c->pend + c->pend_len, data, len);
  c->pend_len += len;
  return 0;
}

static int on_message_begin(http_parser *p) {
  conn_t *c = conn_of(p);

  c->url_len = 0;
  c->head_only = 0;
  c->header_bytes = 0;
  c->echo_len = 0;
  c->err_status = 0;
  c->expect = 0;
  c->in_value = 0;
  c->value_is_expect = 0;
  c->hname_len = 0;
  c->hval_len = 0;
  return 0;
}

static int on_url(http_parser *p, const char *at, size_t len) {
  conn_t *c = conn_of(p);

  if (len >= UP_URL_MAX - c->url_len) {
    c->err_status = 414;
    return -1;
  }
  memcpy(c->url + c->url_len, at, len);
  c->url_len += len;
  return 0;
}

static void header_done(conn_t *c) {
  if (c->value_is_expect && c->hval_len == 12 &&
      strncasecmp(c->hval, "100-continue", 12) == 0)
    c->expect = 1;
  c->hname_len = 0;
  c->hval_len = 0;
  c->value_is_expect = 0;
}

static int header_bound(conn_t *c, size_t len) {
  c->header_bytes += len;
  if (c->header_bytes > UP_HEADER_MAX) {
    c->err_status = 431;
    return -1;
  }
  return 0;
}

/* Only "Expect: 100-continue" matters, so names and values are kept only
 * as far as needed to recognise it. */
static int on_header_field(http_parser *p, const char *at, size_t len) {
  conn_t *c = conn_of(p);
  size_t k;

  if (header_bound(c, len))
    return -1;
  if (c->in_value) {
    header_done(c);
    c->in_value = 0;
  }
  k = len < sizeof(c->hname) - c->hname_len ? len
                                             : sizeof(c->hname) - c->hname_len;
  memcpy(c->hname + c->hname_len, at, k);
  c->hname_len += k;
  if (k < len)
    c->hname_len = sizeof(c->hname);   /* too long to be "Expect" */
  return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len) {
  conn_t *c = conn_of(p);
  size_t k;

  if (header_bound(c, len))
    return -1;
  if (!c->in_value) {
    c->in_value = 1;
    c->value_is_expect = c->hname_len == 6 &&
                         strncasecmp(c->hname, "expect", 6) == 0;
  }
  if (!c->value_is_expect)
    return 0;
  k = len < sizeof(c->hval) - c->hval_len ? len
                                           : sizeof(c->hval) - c->hval_len;
  memcpy(c->hval + c->hval_len, at, k);
  c->hval_len += k;
  return 0;
}

static void on_continue_written(uv_write_t *req, int status) {
  conn_t *c = req->data;

  (void)status;
  c->cont_busy = 0;
}

static int on_headers_complete(http_parser *p) {
  conn_t *c = conn_of(p);
  int has_body = (p->flags & F_CHUNKED) ||
                 (p->content_length > 0 && p->content_length != ULLONG_MAX);

  if (c->in_value)
    header_done(c);
  c->in_value = 0;
  c->head_only = p->method == HTTP_HEAD;
  if (p->http_major != 1) {
    c->err_status = 505;
    return -1;
  }
  c->echo = c->url_len >= 5 && memcmp(c->url, "/echo", 5) == 0 &&
            (c->url_len == 5 || c->url[5] == '?');
  if (c->echo && p->content_length != ULLONG_MAX &&
      p->content_length > UP_ECHO_MAX) {
    c->err_status = 413;
    return -1;
  }
  if (c->expect && has_body && p->http_minor >= 1 && !c->cont_busy) {
    uv_buf_t b = uv_buf_init((char *)up_continue, sizeof(up_continue) - 1);

    if (uv_write(&c->creq, (uv_stream_t *)&c->tcp, &b, 1,
                 on_continue_written) == 0)
      c->cont_busy = 1;
  }
  return 0;
}

static int on_body(http_parser *p, const char *at, size_t len) {
  conn_t *c = conn_of(p);

  if (!c->echo)
    return 0;
  if (len > UP_ECHO_MAX - c->echo_len) {
    c->err_status = 413;
    return -1;
  }
  if (c->echo_len + len > c->echo_cap) {
    size_t cap = c->echo_cap ? c->echo_cap : 4096;
    char *nb;

    while (cap < c->echo_len + len)
      cap *= 2;
    nb = realloc(c->echo_buf, cap);
    if (nb == NULL) {
      c->err_status = 500;
      return -1;
    }
    c->echo_buf = nb;
    c->echo_cap = cap;
  }
  memcpy(c->echo_buf + c->echo_len, at, len);
  c->echo_len += len;
  return 0;
}

static int on_message_complete(http_parser *p) {
  conn_t *c = conn_of(p);

  c->keep_alive = http_should_keep_alive(p) && !p->upgrade;
  ST_ADD(c->up, requests, 1);
  /* Stop here: whatever follows waits until this request is answered. */
  http_parser_pause(p, 1);
  return 0;
}

static const http_parser_settings up_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete};

/* Parses |len| bytes, from the read buffer or (|pend|) from the pipelined
 * bytes kept earlier. */
static void conn_feed(conn_t *c, const char *data, size_t len, int pend) {
  size_t used = http_parser_execute(&c->parser, &up_settings, data, len);
  enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);

  if (pend) {
    c->pend_off += used;
    if (c->pend_off >= c->pend_len)
      c->pend_off = c->pend_len = 0;
  }
  if (e == HPE_PAUSED) {
    if (!pend && used < len && c->keep_alive &&
        conn_keep(c, data + used, len - used) != 0)
      c->keep_alive = 0;
    conn_respond(c);
    return;
  }
  if (e != HPE_OK) {
    unsigned status = c->err_status ? (unsigned)c->err_status
                      : e == HPE_HEADER_OVERFLOW ? 431u
                                                 : 400u;
    const char *msg = status == 413   ? "request body too large"
                      : status == 414 ? "request target too long"
                      : status == 431 ? "request headers too large"
                      : status == 505 ? "HTTP version not supported"
                      : status == 500 ? "out of memory"
                                      : "malformed request";

    ST_ADD(c->up, bad_requests, 1);
    up_log(c->up, "%u %s (%s)", status, msg, http_errno_name(e));
    conn_reply_error(c, status, msg, NULL, 0);
  }
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  conn_t *c = h->data;

  (void)hint;
  *buf = uv_buf_init(c->up->rbuf, sizeof(c->up->rbuf));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  conn_t *c = s->data;

  if (c->closing)
    return;
  if (nread > 0) {
    if (c->state == ST_READ)
      conn_feed(c, buf->base, (size_t)nread, 0);
    else if (c->keep_alive && c->state != ST_STALL &&
             conn_keep(c, buf->base, (size_t)nread) != 0)
      conn_close(c, 0);
    /* Otherwise the bytes are dropped: the connection ends after this
     * answer, or never answers again. */
  } else if (nread < 0) {
    /* The end of the client's data while an answer is being written: the
     * client may only have shut down its side (as "printf ... | nc" does),
     * so the answers to what it sent are written, up to the next wait.
     * Anywhere else, and at any wait (latency, chunk_delay, stall), a
     * client that stopped sending is taken as gone: that is what a client
     * that timed out looks like, and its connection must not linger. */
    if (nread == UV_EOF && c->state == ST_WRITE)
      c->peer_eof = 1;
    else
      conn_close(c, 0);
  }
}

static void on_connection(uv_stream_t *server, int status) {
  fy_up_t *up = server->data;
  conn_t *c;
  uint64_t open;
  uint64_t peak;

  if (status < 0) {
    up_log(up, "accept: %s", uv_strerror(status));
    return;
  }
  c = calloc(1, sizeof(*c));
  if (c == NULL) {
    up_log(up, "accept: out of memory");
    return;
  }
  c->up = up;
  c->keep_alive = 1;
  c->open_handles = 2;
  http_parser_init(&c->parser, HTTP_REQUEST);
  c->parser.data = c;
  uv_tcp_init(up->loop, &c->tcp);
  uv_timer_init(up->loop, &c->timer);
  c->tcp.data = c;
  c->timer.data = c;
  c->wreq.data = c;
  c->creq.data = c;
  c->next = up->conns;
  if (up->conns != NULL)
    up->conns->prev = c;
  up->conns = c;
  up->handles++;
  ST_ADD(up, connections, 1);
  open = atomic_fetch_add_explicit(&up->st.open, 1, memory_order_relaxed) + 1;
  peak = ST_GET(up, peak_open);
  if (open > peak)
    atomic_store_explicit(&up->st.peak_open, open, memory_order_relaxed);

  if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0 ||
      uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) {
    conn_close(c, 0);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
}

/* ---- the server --------------------------------------------------------- */

static void up_free(fy_up_t *up) {
  unsigned i;

  for (i = 0; i < up->nroutes; i++)
    free(up->routes[i].path);
  uv_mutex_destroy(&up->mu);
  free(up);
}

static void up_maybe_done(fy_up_t *up) {
  void (*cb)(void *);
  void *ud;

  if (!up->closing || up->handles > 0 || up->spawned)
    return;
  cb = up->close_cb;
  ud = up->close_ud;
  up_free(up);
  if (cb != NULL)
    cb(ud);
}

static void on_up_handle_closed(uv_handle_t *h) {
  fy_up_t *up = h->data;

  up->handles--;
  up_maybe_done(up);
}

/* Stops listening and closes every connection (loop thread). */
static void up_shutdown(fy_up_t *up) {
  conn_t *c;

  if (up->closing)
    return;
  up->closing = 1;
  uv_close((uv_handle_t *)&up->listener, on_up_handle_closed);
  if (up->has_wake)
    uv_close((uv_handle_t *)&up->wake, on_up_handle_closed);
  for (c = up->conns; c != NULL; c = c->next)
    conn_close(c, 0);
}

/* Writing to a connection the peer has reset raises SIGPIPE, whose default
 * action ends the process; a server cannot allow that.  Only the default
 * disposition is replaced, so a program's own handler stays. */
static void up_ignore_sigpipe(void) {
  struct sigaction sa;

  if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL) {
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_IGN;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGPIPE, &sa, NULL);
  }
}

static int up_alloc(const fy_up_opts_t *opts, fy_up_t **out) {
  fy_up_t *up = calloc(1, sizeof(*up));
  size_t i;

  if (up == NULL)
    return UV_ENOMEM;
  if (uv_mutex_init(&up->mu) != 0) {
    free(up);
    return UV_ENOMEM;
  }
  if (opts != NULL)
    up->opts = *opts;
  up->rng = up->opts.seed != 0 ? up->opts.seed : 1;
  for (i = 0; i < sizeof(up->fill); i++)
    up->fill[i] = "ok\n"[i % 3];
  for (i = 0; i < UP_HUGE_BLOCK; i++) {
    char *line = up->huge + i * UP_HUGE_LINE;

    memset(line, 'h', UP_HUGE_LINE);
    memcpy(line, "X-Fy-Huge: ", 11);
    memcpy(line + UP_HUGE_LINE - 2, "\r\n", 2);
  }
  up_ignore_sigpipe();
  *out = up;
  return 0;
}

/* Binds with plain socket calls first, so a busy port fails before any
 * handle exists and nothing needs an asynchronous close. */
static int up_listen(fy_up_t *up) {
  struct sockaddr_in sa;
  socklen_t salen = sizeof(sa);
  int one = 1;
  int fd;
  int rc;

  fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -errno;
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_port = htons(up->opts.port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
      bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
      listen(fd, UP_BACKLOG) != 0 ||
      getsockname(fd, (struct sockaddr *)&sa, &salen) != 0) {
    rc = -errno;
    close(fd);
    return rc;
  }
  up->port = ntohs(sa.sin_port);

  uv_tcp_init(up->loop, &up->listener);
  up->listener.data = up;
  up->handles++;
  rc = uv_tcp_open(&up->listener, fd);
  if (rc != 0) {
    close(fd);
  } else {
    rc = uv_listen((uv_stream_t *)&up->listener, UP_BACKLOG, on_connection);
  }
  if (rc != 0) {
    /* The handle exists: it is closed, and the server freed, from the
     * loop (in-process) or by the caller running its own loop. */
    up->closing = 1;
    uv_close((uv_handle_t *)&up->listener, on_up_handle_closed);
  }
  return rc;
}

int fy_up_start(uv_loop_t *loop, const fy_up_opts_t *opts, fy_up_t **out) {
  fy_up_t *up;
  int rc;

  if (out == NULL)
    return UV_EINVAL;
  *out = NULL;
  if (loop == NULL)
    return UV_EINVAL;
  rc = up_alloc(opts, &up);
  if (rc != 0)
    return rc;
  up->loop = loop;
  rc = up_listen(up);
  if (rc != 0) {
    if (up->handles == 0)
      up_free(up);
    return rc;
  }
  up_log(up, "listening on http://127.0.0.1:%u", up->port);
  *out = up;
  return 0;
}

static void on_wake(uv_async_t *a) {
  up_shutdown(a->data);
}

static void up_thread(void *arg) {
  fy_up_t *up = arg;

  uv_run(up->loop, UV_RUN_DEFAULT);
}

int fy_up_spawn(const fy_up_opts_t *opts, fy_up_t **out) {
  fy_up_t *up;
  int rc;

  if (out == NULL)
    return UV_EINVAL;
  *out = NULL;
  rc = up_alloc(opts, &up);
  if (rc != 0)
    return rc;
  up->spawned = 1;
  up->loop = &up->own;
  rc = uv_loop_init(&up->own);
  if (rc != 0) {
    up_free(up);
    return rc;
  }
  /* Everything is set up here, before the thread exists; creating the
   * thread publishes it to the server thread. */
  rc = up_listen(up);
  if (rc == 0) {
    rc = uv_async_init(&up->own, &up->wake, on_wake);
    if (rc == 0) {
      up->wake.data = up;
      up->has_wake = 1;
      up->handles++;
      rc = uv_thread_create(&up->thread, up_thread, up);
    }
    if (rc != 0)
      up_shutdown(up);
  }
  if (rc != 0) {
    uv_run(&up->own, UV_RUN_DEFAULT);
    uv_loop_close(&up->own);
    up_free(up);
    return rc;
  }
  up_log(up, "listening on http://127.0.0.1:%u (own thread)", up->port);
  *out = up;
  return 0;
}

uint16_t fy_up_port(const fy_up_t *up) {
  return up->port;
}

char *fy_up_base_url(const fy_up_t *up, char *buf, size_t len) {
  if (len > 0)
    snprintf(buf, len, "http://127.0.0.1:%u", (unsigned)up->port);
  return buf;
}

void fy_up_stats(fy_up_t *up, fy_up_stats_t *out) {
  memset(out, 0, sizeof(*out));
  out->connections = ST_GET(up, connections);
  out->requests = ST_GET(up, requests);
  out->responses = ST_GET(up, responses);
  out->status_2xx = ST_GET(up, s2xx);
  out->status_4xx = ST_GET(up, s4xx);
  out->status_5xx = ST_GET(up, s5xx);
  out->actions = ST_GET(up, actions);
  out->bytes_out = ST_GET(up, bytes_out);
  out->bad_requests = ST_GET(up, bad_requests);
  out->open = ST_GET(up, open);
  out->peak_open = ST_GET(up, peak_open);
}

void fy_up_close(fy_up_t *up, void (*cb)(void *user_data), void *user_data) {
  if (up == NULL)
    return;
  if (!up->spawned) {
    if (up->closing)
      return;
    up->close_cb = cb;
    up->close_ud = user_data;
    up_log(up, "closing");
    up_shutdown(up);
    return;
  }
  up_log(up, "closing");
  uv_async_send(&up->wake);
  uv_thread_join(&up->thread);
  uv_loop_close(&up->own);
  up_free(up);
  if (cb != NULL)
    cb(user_data);
}
