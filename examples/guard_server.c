/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * guard_server: a small HTTP/1.1 server on libuv and http-parser with the
 * admission guard in front of its handler (docs/guard.md).
 *
 * Each request gets a client key (the peer's IP, the client named by
 * X-Forwarded-For behind trusted proxies, or a request header), and its
 * handler runs as a call through the guard: a client over its rate is
 * answered 429, a server at its concurrency limit 503, a handler past its
 * deadline 504 (its work cancelled), each with Retry-After where one
 * helps.  The handler itself answers "ok" after a configurable delay.
 *
 * One connection is one conn_t: its TCP handle, its parser, the call of
 * the request in flight and the handler's timer.  A connection handles
 * one request at a time; bytes a client sends ahead (pipelining) are kept,
 * bounded, and parsed once the answer is written.  Nothing is allocated
 * per request: reads land in one buffer per server, the answer is
 * formatted into a buffer of the connection, the call lives in the
 * connection, and the handler's timer is a deadline on the context's
 * wheel (no uv handle to open and close per request). */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <http_parser.h>
#include <uv.h>

#include "fortify.h"
#include "fortify/guard.h"

#define PROG "guard_server"

enum {
  BACKLOG = 1024,
  READ_BUF = 16384,        /* one read; also the most bytes kept ahead */
  HEADER_MAX = 8192,       /* request line and headers; beyond: 431 */
  BODY_MAX = 1 << 20,      /* request bodies are read and dropped */
  OUT_MAX = 512,           /* one answer, head and body */
  NAME_MAX_ = 64,          /* longest header name compared */
  XFF_KEEP = 4096,         /* X-Forwarded-For bytes kept (the tail) */
  KEY_VALUE_MAX = 256,     /* raw key header bytes kept */
  KEY_HEADER_LEN = 128,    /* longest key taken from a header */
  TRUST_MAX = 16
};

/* Room for a header key ("h:" and up to KEY_HEADER_LEN bytes) or an
 * address key. */
#define KEY_BUF (2 + KEY_HEADER_LEN + 1)

/* What a header's value is collected into. */
enum { HDR_NONE, HDR_XFF, HDR_KEY };

typedef struct config_s {
  unsigned port;
  uint64_t rate;
  uint64_t burst;
  uint64_t interval_ms;
  uint32_t max_concurrent;
  uint64_t handler_ms;
  uint64_t handler_timeout_ms;
  uint32_t max_connections;
  uint32_t backend_slots;
  size_t ntrusted;
  const char *key_header;
  int no_guard;
  int quiet;
  char trusted_buf[TRUST_MAX][FY_GUARD_KEY_MAX];
  const char *trusted[TRUST_MAX];
} config_t;

typedef struct server_s server_t;

typedef struct conn_s {
  uv_tcp_t tcp;
  uv_write_t wreq;
  http_parser parser;
  fy_call_t call;           /* the request's call through the guard */
  fy_deadline_t work;       /* the handler's delay */
  fy_attempt_t *attempt;    /* the handler's attempt in flight, or NULL */
  server_t *srv;
  struct conn_s *prev, *next;
  struct conn_s *wnext;     /* in the backend's line */
  struct sockaddr_storage peer;
  unsigned in_call : 1;     /* the call has not completed yet */
  unsigned direct : 1;      /* --no-guard: the handler is working */
  unsigned working : 1;     /* the handler's work holds a backend slot */
  unsigned queued : 1;      /* the handler waits for a backend slot */
  unsigned writing : 1;
  unsigned closing : 1;
  unsigned tcp_closed : 1;
  unsigned keep_alive : 1;
  unsigned head_only : 1;
  unsigned peer_eof : 1;
  unsigned read_stopped : 1;
  unsigned ready : 1;       /* a whole request was parsed */
  unsigned in_value : 1;    /* the parser is inside a header value */
  unsigned key_bad : 1;     /* key header repeated or too long */
  unsigned key_seen : 1;
  int hdr_target;
  int err_status;           /* set by a parser callback that refused */
  size_t header_bytes;
  uint64_t body_bytes;
  size_t name_len;
  size_t xff_len;
  size_t kv_len;
  size_t key_len;
  size_t peer_key_len;
  char *pend;               /* bytes sent ahead, READ_BUF of them */
  size_t pend_off;
  size_t pend_len;
  char name[NAME_MAX_];
  char xff[XFF_KEEP];
  char kv[KEY_VALUE_MAX];
  char key[KEY_BUF];
  char peer_key[FY_GUARD_KEY_MAX];
  char out[OUT_MAX];
} conn_t;

struct server_s {
  uv_loop_t *loop;
  fy_ctx_t *ctx;
  fy_guard_t *guard;
  uv_tcp_t listener;
  uv_signal_t sigint;
  uv_signal_t sigterm;
  config_t cfg;
  conn_t *conns;
  uint32_t nconns;
  uint32_t slots_used;      /* backend slots working */
  conn_t *waiting;          /* the backend's line, first to last */
  conn_t *waiting_tail;
  int closing;
  struct {
    uint64_t connections, refused_connections, requests;
    uint64_t s200, s400, s429, s503, s504, other;
  } st;
  char rbuf[READ_BUF];
};

static void conn_close(conn_t *c);
static void conn_feed(conn_t *c, const char *data, size_t len, int pend);
static void conn_next(conn_t *c);
static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf);
static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);

/* ---- answers ------------------------------------------------------------ */

static const char *status_text(int status) {
  switch (status) {
  case 200: return "OK";
  case 400: return "Bad Request";
  case 413: return "Content Too Large";
  case 429: return "Too Many Requests";
  case 431: return "Request Header Fields Too Large";
  case 500: return "Internal Server Error";
  case 503: return "Service Unavailable";
  case 504: return "Gateway Timeout";
  default: return "Error";
  }
}

static void count_status(server_t *s, int status) {
  switch (status) {
  case 200: s->st.s200++; break;
  case 400: case 413: case 431: s->st.s400++; break;
  case 429: s->st.s429++; break;
  case 503: s->st.s503++; break;
  case 504: s->st.s504++; break;
  default: s->st.other++; break;
  }
}

static void on_written(uv_write_t *req, int status) {
  conn_t *c = req->data;

  c->writing = 0;
  if (c->closing)
    return; /* the close callback frees it */
  if (status < 0 || !c->keep_alive) {
    conn_close(c);
    return;
  }
  conn_next(c);
}

/* Writes the answer |status| with |body| (a line of text, its newline
 * added here) and, when |retry_after_s| is not 0, a Retry-After header.  An answer that ends the connection (an error,
 * or a client that asked for it) says so with Connection: close. */
static void conn_reply(conn_t *c, int status, const char *reason,
                       uint64_t retry_after_s, const char *body) {
  size_t body_len = strlen(body) + 1;
  char ra[48] = "";
  uv_buf_t buf;
  int n;

  count_status(c->srv, status);
  if (retry_after_s > 0)
    snprintf(ra, sizeof(ra), "Retry-After: %llu\r\n",
             (unsigned long long)retry_after_s);
  n = snprintf(c->out, sizeof(c->out),
               "HTTP/1.1 %d %s\r\n"
               "%s"
               "Content-Type: text/plain\r\n"
               "Content-Length: %zu\r\n"
               "%s"
               "\r\n"
               "%s%s",
               status, reason, ra, body_len,
               c->keep_alive ? "" : "Connection: close\r\n",
               c->head_only ? "" : body, c->head_only ? "" : "\n");
  if (n < 0 || (size_t)n >= sizeof(c->out)) {
    conn_close(c); /* cannot happen with the fixed texts used here */
    return;
  }
  buf = uv_buf_init(c->out, (unsigned)n);
  c->wreq.data = c;
  if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &buf, 1, on_written) != 0) {
    conn_close(c);
    return;
  }
  c->writing = 1;
}

/* A request the server refuses before any handler runs; the connection
 * ends after the answer, since what follows cannot be trusted. */
static void conn_reply_error(conn_t *c, int status, const char *body) {
  c->keep_alive = 0;
  conn_reply(c, status, status_text(status), 0, body);
}

static void reply_ok(conn_t *c) {
  conn_reply(c, 200, "OK", 0, "ok");
}

/* ---- the handler -------------------------------------------------------- */

/* The handler's work: --handler-ms on a backend of --backend-slots
 * (a database pool, a worker pool): work beyond the slots waits in line
 * for one, as it would for a real pool.  0 slots: no line at all. */
static void backend_start(conn_t *c) {
  server_t *s = c->srv;

  c->working = 1;
  if (s->cfg.backend_slots > 0)
    s->slots_used++;
  /* Cannot fail: the context is open while connections are. */
  (void)fy_deadline_start(&c->work, s->cfg.handler_ms);
}

static void backend_pump(server_t *s) {
  while (s->waiting != NULL && s->slots_used < s->cfg.backend_slots) {
    conn_t *c = s->waiting;

    s->waiting = c->wnext;
    if (s->waiting == NULL)
      s->waiting_tail = NULL;
    c->wnext = NULL;
    c->queued = 0;
    backend_start(c);
  }
}

static void backend_submit(conn_t *c) {
  server_t *s = c->srv;

  if (s->cfg.backend_slots == 0 || s->slots_used < s->cfg.backend_slots) {
    backend_start(c);
    return;
  }
  c->queued = 1;
  c->wnext = NULL;
  if (s->waiting_tail != NULL)
    s->waiting_tail->wnext = c;
  else
    s->waiting = c;
  s->waiting_tail = c;
}

/* The work ended (done, or stopped): its slot goes to the next in line. */
static void backend_end(conn_t *c) {
  server_t *s = c->srv;

  if (c->queued) {
    conn_t **pp = &s->waiting;
    conn_t *prev = NULL;

    while (*pp != c) {
      prev = *pp;
      pp = &(*pp)->wnext;
    }
    *pp = c->wnext;
    if (s->waiting_tail == c)
      s->waiting_tail = prev;
    c->wnext = NULL;
    c->queued = 0;
    return;
  }
  if (c->working) {
    fy_deadline_stop(&c->work);
    c->working = 0;
    if (s->cfg.backend_slots > 0)
      s->slots_used--;
    backend_pump(s);
  }
}

static void on_work_done(fy_deadline_t *d) {
  conn_t *c = d->data;
  fy_attempt_t *a = c->attempt;

  backend_end(c);
  if (c->srv->cfg.no_guard) {
    c->direct = 0;
    reply_ok(c);
    return;
  }
  c->attempt = NULL;
  if (a != NULL)
    fy_attempt_done(a, 0);
}

/* The handler is the operation of the request's call.  Its cancel hook is
 * what a deadline overrun, a closing guard or a client gone calls: stop
 * the work and report. */
static int handler_start(fy_attempt_t *attempt, void *arg) {
  conn_t *c = arg;

  if (c->srv->cfg.handler_ms == 0) {
    /* Done at once.  Reporting from inside start is allowed: the outcome
     * reaches the guard after start returns, and the call's callback
     * runs on a fresh stack. */
    fy_attempt_done(attempt, 0);
    return 0;
  }
  c->attempt = attempt;
  backend_submit(c);
  return 0;
}

static void handler_cancel(fy_attempt_t *attempt, void *arg) {
  conn_t *c = arg;

  if (c->attempt == attempt) {
    backend_end(c);
    c->attempt = NULL;
  }
  fy_attempt_done(attempt, UV_ECANCELED);
}

static const fy_op_t handler_op = {handler_start, handler_cancel};

static void on_call_done(fy_call_t *call, int status) {
  conn_t *c = fy_container_of(call, conn_t, call);
  fy_guard_answer_t a;

  c->in_call = 0;
  if (c->closing) {
    conn_close(c); /* frees it once the handle is closed too */
    return;
  }
  fy_guard_answer(c->srv->guard, call, status, &a);
  if (a.http_status == 0)
    reply_ok(c);
  else
    conn_reply(c, a.http_status, a.reason, a.retry_after_s, a.reason);
}

/* ---- requests ----------------------------------------------------------- */

/* The client's key for the request just parsed, into c->key.  Returns 0,
 * or -1 when the request names its client in a way that cannot be used. */
static int request_key(conn_t *c) {
  const config_t *cfg = &c->srv->cfg;
  size_t n;

  if (cfg->key_header != NULL && c->key_seen) {
    if (c->key_bad)
      return -1;
    /* "h:" keeps header keys apart from address keys (which never
     * contain "h:"), so a client cannot borrow an address's bucket. */
    n = fy_guard_header_key(c->kv, c->kv_len, c->key + 2, sizeof(c->key) - 2);
    if (n == 0)
      return -1;
    c->key[0] = 'h';
    c->key[1] = ':';
    c->key_len = n + 2;
    return 0;
  }
  if (cfg->ntrusted > 0) {
    n = fy_guard_forwarded_key((const struct sockaddr *)&c->peer, c->xff,
                               c->xff_len, cfg->trusted, cfg->ntrusted, c->key,
                               sizeof(c->key));
    if (n == 0)
      return -1;
    c->key_len = n;
    return 0;
  }
  memcpy(c->key, c->peer_key, c->peer_key_len + 1);
  c->key_len = c->peer_key_len;
  return 0;
}

static void request_run(conn_t *c) {
  server_t *s = c->srv;
  fy_guard_answer_t a;
  int rc;

  s->st.requests++;
  if (s->cfg.no_guard) {
    if (s->cfg.handler_ms == 0) {
      reply_ok(c);
      return;
    }
    c->direct = 1;
    backend_submit(c);
    return;
  }
  if (request_key(c) != 0) {
    conn_reply_error(c, 400, "invalid client key");
    return;
  }
  rc = fy_guard_start(s->guard, &c->call, c->key, c->key_len, &handler_op, c,
                      on_call_done);
  if (rc == 0) {
    c->in_call = 1;
    return;
  }
  /* Refused at once (over the rate, overloaded): the callback will not
   * run, the answer is ready now. */
  fy_guard_answer(s->guard, &c->call, rc, &a);
  conn_reply(c, a.http_status != 0 ? a.http_status : 500,
             a.reason != NULL ? a.reason : "Internal Server Error",
             a.retry_after_s, a.reason != NULL ? a.reason : "error");
}

/* The answer is written: go on with what the client sent ahead, then
 * read again. */
static void conn_next(conn_t *c) {
  if (c->pend_len > c->pend_off) {
    conn_feed(c, c->pend + c->pend_off, c->pend_len - c->pend_off, 1);
    if (c->closing || c->in_call || c->direct || c->writing)
      return;
  }
  c->pend_off = c->pend_len = 0;
  if (c->peer_eof) {
    conn_close(c);
    return;
  }
  if (c->read_stopped) {
    c->read_stopped = 0;
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0)
      conn_close(c);
  }
}

/* ---- parsing ------------------------------------------------------------ */

static conn_t *conn_of(http_parser *p) {
  return p->data;
}

static int header_bytes(conn_t *c, size_t len) {
  c->header_bytes += len;
  if (c->header_bytes > HEADER_MAX) {
    c->err_status = 431;
    return -1;
  }
  return 0;
}

static int on_message_begin(http_parser *p) {
  conn_t *c = conn_of(p);

  c->header_bytes = 0;
  c->body_bytes = 0;
  c->name_len = 0;
  c->xff_len = 0;
  c->kv_len = 0;
  c->key_bad = 0;
  c->key_seen = 0;
  c->in_value = 0;
  c->hdr_target = HDR_NONE;
  return 0;
}

static int on_url(http_parser *p, const char *at, size_t len) {
  (void)at;
  return header_bytes(conn_of(p), len);
}

static int on_header_field(http_parser *p, const char *at, size_t len) {
  conn_t *c = conn_of(p);

  if (header_bytes(c, len) != 0)
    return -1;
  if (c->in_value) {
    c->in_value = 0;
    c->name_len = 0;
  }
  /* A name longer than the buffer is none of the names looked for. */
  if (len > sizeof(c->name) - c->name_len) {
    c->name_len = sizeof(c->name) + 1;
    return 0;
  }
  if (c->name_len <= sizeof(c->name)) {
    memcpy(c->name + c->name_len, at, len);
    c->name_len += len;
  }
  return 0;
}

static int name_is(const conn_t *c, const char *want) {
  size_t n = strlen(want);

  return c->name_len == n && strncasecmp(c->name, want, n) == 0;
}

/* Appends to the X-Forwarded-For bytes, keeping the last XFF_KEEP: the
 * guard reads the list from its right end, where the trusted proxies
 * wrote. */
static void xff_append(conn_t *c, const char *s, size_t n) {
  if (n >= sizeof(c->xff)) {
    memcpy(c->xff, s + n - sizeof(c->xff), sizeof(c->xff));
    c->xff_len = sizeof(c->xff);
    return;
  }
  if (c->xff_len + n > sizeof(c->xff)) {
    size_t drop = c->xff_len + n - sizeof(c->xff);

    memmove(c->xff, c->xff + drop, c->xff_len - drop);
    c->xff_len -= drop;
  }
  memcpy(c->xff + c->xff_len, s, n);
  c->xff_len += n;
}

static int on_header_value(http_parser *p, const char *at, size_t len) {
  conn_t *c = conn_of(p);
  const config_t *cfg = &c->srv->cfg;

  if (header_bytes(c, len) != 0)
    return -1;
  if (!c->in_value) {
    c->in_value = 1;
    c->hdr_target = HDR_NONE;
    if (cfg->key_header != NULL && name_is(c, cfg->key_header)) {
      /* Two values for the one key: which client is it?  Refused. */
      if (c->key_seen)
        c->key_bad = 1;
      c->key_seen = 1;
      c->hdr_target = HDR_KEY;
    } else if (cfg->ntrusted > 0 && name_is(c, "x-forwarded-for")) {
      /* Several X-Forwarded-For lines are one list (RFC 9110, 5.3). */
      if (c->xff_len > 0)
        xff_append(c, ",", 1);
      c->hdr_target = HDR_XFF;
    }
  }
  if (c->hdr_target == HDR_XFF) {
    xff_append(c, at, len);
  } else if (c->hdr_target == HDR_KEY) {
    if (len > sizeof(c->kv) - c->kv_len) {
      c->key_bad = 1; /* never cut a key: refuse it */
    } else {
      memcpy(c->kv + c->kv_len, at, len);
      c->kv_len += len;
    }
  }
  return 0;
}

static int on_headers_complete(http_parser *p) {
  conn_t *c = conn_of(p);

  c->head_only = p->method == HTTP_HEAD;
  /* 0 or ULLONG_MAX: no Content-Length (a chunked body is counted as it
   * comes). */
  if (p->content_length != ULLONG_MAX && p->content_length > BODY_MAX) {
    c->err_status = 413;
    return -1;
  }
  return 0;
}

static int on_body(http_parser *p, const char *at, size_t len) {
  conn_t *c = conn_of(p);

  (void)at;
  c->body_bytes += len;
  if (c->body_bytes > BODY_MAX) {
    c->err_status = 413;
    return -1;
  }
  return 0;
}

static int on_message_complete(http_parser *p) {
  conn_t *c = conn_of(p);

  c->keep_alive = http_should_keep_alive(p) && !p->upgrade;
  c->ready = 1;
  /* One request at a time: what follows waits until this one is
   * answered. */
  http_parser_pause(p, 1);
  return 0;
}

static const http_parser_settings parser_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete};

/* Keeps bytes that arrived ahead of the answer to the current request.
 * Returns -1 when they do not fit (the client sends much more than it
 * reads). */
static int conn_keep(conn_t *c, const char *data, size_t len) {
  if (c->pend == NULL) {
    c->pend = malloc(READ_BUF);
    if (c->pend == NULL)
      return -1;
  }
  if (c->pend_off > 0) {
    memmove(c->pend, c->pend + c->pend_off, c->pend_len - c->pend_off);
    c->pend_len -= c->pend_off;
    c->pend_off = 0;
  }
  if (len > READ_BUF - c->pend_len)
    return -1;
  memcpy(c->pend + c->pend_len, data, len);
  c->pend_len += len;
  return 0;
}

/* Parses |len| bytes from the read buffer or (|pend|) from the bytes kept
 * ahead, and runs the request they complete. */
static void conn_feed(conn_t *c, const char *data, size_t len, int pend) {
  size_t used;
  enum http_errno e;

  http_parser_pause(&c->parser, 0);
  used = http_parser_execute(&c->parser, &parser_settings, data, len);
  e = HTTP_PARSER_ERRNO(&c->parser);
  if (pend)
    c->pend_off += used;
  if (e == HPE_PAUSED) {
    c->ready = 0;
    if (!pend && used < len && conn_keep(c, data + used, len - used) != 0) {
      conn_reply_error(c, 400, "too much data sent ahead");
      return;
    }
    request_run(c);
    return;
  }
  if (e != HPE_OK) {
    int status = c->err_status != 0 ? c->err_status
                 : e == HPE_HEADER_OVERFLOW ? 431
                                            : 400;

    conn_reply_error(c, status,
                     status == 431   ? "request headers too large"
                     : status == 413 ? "request body too large"
                                     : "malformed request");
  }
}

static int conn_busy(const conn_t *c) {
  return c->in_call || c->direct || c->writing;
}

/* Reads go into the server's buffer and are parsed at once, except while
 * a request is being answered: then they go into the connection's own
 * buffer, kept for later, and once that is full the connection is not
 * read until the answer is out (the rest waits in the kernel). */
static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  conn_t *c = h->data;

  (void)hint;
  if (!conn_busy(c)) {
    *buf = uv_buf_init(c->srv->rbuf, sizeof(c->srv->rbuf));
    return;
  }
  if (c->pend == NULL) {
    c->pend = malloc(READ_BUF);
    if (c->pend == NULL) {
      *buf = uv_buf_init(NULL, 0); /* UV_ENOBUFS: stop reading */
      return;
    }
  }
  if (c->pend_off > 0) {
    memmove(c->pend, c->pend + c->pend_off, c->pend_len - c->pend_off);
    c->pend_len -= c->pend_off;
    c->pend_off = 0;
  }
  *buf = uv_buf_init(c->pend + c->pend_len,
                     (unsigned)(READ_BUF - c->pend_len));
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
  conn_t *c = stream->data;

  if (c->closing)
    return;
  if (nread > 0) {
    if (buf->base == c->srv->rbuf)
      conn_feed(c, buf->base, (size_t)nread, 0);
    else
      c->pend_len += (size_t)nread;
    return;
  }
  if (nread == UV_ENOBUFS) {
    uv_read_stop(stream);
    c->read_stopped = 1;
    return;
  }
  if (nread == UV_EOF && conn_busy(c)) {
    /* The client may have only shut down its side (as "printf ... | nc"
     * does): answer what it sent, then close. */
    c->peer_eof = 1;
    uv_read_stop(stream);
    return;
  }
  if (nread < 0)
    conn_close(c);
}

/* ---- connections -------------------------------------------------------- */

static void conn_free(conn_t *c) {
  server_t *s = c->srv;

  if (c->prev != NULL)
    c->prev->next = c->next;
  else
    s->conns = c->next;
  if (c->next != NULL)
    c->next->prev = c->prev;
  s->nconns--;
  free(c->pend);
  free(c);
}

static void on_conn_closed(uv_handle_t *h) {
  conn_t *c = h->data;

  c->tcp_closed = 1;
  if (!c->in_call)
    conn_free(c);
}

/* Closes the connection; its memory goes once the handle is closed and
 * the call of its request, if any, has completed (a cancelled call still
 * calls back). */
static void conn_close(conn_t *c) {
  if (!c->closing) {
    c->closing = 1;
    if (c->direct) {
      backend_end(c);
      c->direct = 0;
    }
    if (c->in_call)
      fy_call_cancel(&c->call);
    uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
    return;
  }
  if (c->tcp_closed && !c->in_call)
    conn_free(c);
}

static void on_connection(uv_stream_t *server, int status) {
  server_t *s = server->data;
  conn_t *c;
  int len = (int)sizeof(struct sockaddr_storage);

  if (status < 0) {
    if (!s->cfg.quiet)
      fprintf(stderr, PROG ": accept: %s\n", uv_strerror(status));
    return;
  }
  c = calloc(1, sizeof(*c));
  if (c == NULL)
    return; /* the connection waits in the backlog */
  c->srv = s;
  c->keep_alive = 1;
  http_parser_init(&c->parser, HTTP_REQUEST);
  c->parser.data = c;
  fy_deadline_init(s->ctx, &c->work, on_work_done);
  c->work.data = c;
  uv_tcp_init(s->loop, &c->tcp);
  c->tcp.data = c;
  c->next = s->conns;
  if (s->conns != NULL)
    s->conns->prev = c;
  s->conns = c;
  s->nconns++;
  s->st.connections++;

  if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
    conn_close(c);
    return;
  }
  /* Beyond the connection limit, accept and close at once: left in the
   * backlog, the connections would wait there unanswered. */
  if (s->nconns > s->cfg.max_connections ||
      uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&c->peer, &len) != 0) {
    s->st.refused_connections++;
    conn_close(c);
    return;
  }
  c->peer_key_len = fy_guard_addr_key((const struct sockaddr *)&c->peer,
                                      c->peer_key, sizeof(c->peer_key));
  if (c->peer_key_len == 0 ||
      uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) {
    conn_close(c);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
}

/* ---- the server --------------------------------------------------------- */

static void on_ctx_closed(void *obj, void *user_data) {
  (void)obj;
  (void)user_data;
}

static void on_guard_closed(void *obj, void *user_data) {
  server_t *s = user_data;

  (void)obj;
  s->guard = NULL;
  fy_ctx_close(s->ctx, on_ctx_closed, s);
}

static void on_server_handle_closed(uv_handle_t *h) {
  (void)h;
}

static void server_shutdown(server_t *s) {
  conn_t *c, *next;

  if (s->closing)
    return;
  s->closing = 1;
  uv_close((uv_handle_t *)&s->listener, on_server_handle_closed);
  uv_close((uv_handle_t *)&s->sigint, on_server_handle_closed);
  uv_close((uv_handle_t *)&s->sigterm, on_server_handle_closed);
  for (c = s->conns; c != NULL; c = next) {
    next = c->next; /* conn_close() never frees at once */
    conn_close(c);
  }
  /* Calls still in flight complete with UV_ECANCELED as the guard
   * closes, then the context goes. */
  if (s->guard != NULL)
    fy_guard_close(s->guard, on_guard_closed, s);
  else
    fy_ctx_close(s->ctx, on_ctx_closed, s);
}

static void on_signal(uv_signal_t *h, int signum) {
  server_t *s = h->data;

  if (!s->cfg.quiet)
    fprintf(stderr, PROG ": %s, shutting down\n",
            signum == SIGINT ? "SIGINT" : "SIGTERM");
  server_shutdown(s);
}

/* ---- options ------------------------------------------------------------ */

static void usage(FILE *f) {
  fputs(
      "usage: " PROG " [options]\n"
      "\n"
      "An HTTP/1.1 server on 127.0.0.1 whose handler answers \"ok\" after a\n"
      "delay, behind an admission guard: a client over its rate gets 429, a\n"
      "server at its concurrency limit 503, a handler past its deadline 504,\n"
      "with a Retry-After header where waiting helps.\n"
      "\n"
      "  --port N                port to listen on (default 8080; 0: any free\n"
      "                          port, printed on the first line of output)\n"
      "  --rate R                requests per client per interval (default "
      "100;\n"
      "                          0: no per-client limit)\n"
      "  --burst B               requests a client may send at once (default: "
      "R)\n"
      "  --interval-ms I         the interval of the rate (default 1000)\n"
      "  --max-concurrent C      requests handled at once (default 0: no "
      "limit)\n"
      "  --handler-ms D          the handler's work, in ms (default 0)\n"
      "  --handler-timeout-ms T  the handler's deadline, in ms (default 0: "
      "none)\n"
      "  --backend-slots K       the handler's work runs on K slots (a pool);\n"
      "                          more waits in line (default 0: no such "
      "limit)\n"
      "  --trust-proxy ADDR      a proxy whose X-Forwarded-For is believed; the\n"
      "                          client is the right-most address that is not\n"
      "                          such a proxy.  Repeat for several (at most "
      "16).\n"
      "                          Off by default: a client could write anything\n"
      "                          in that header.\n"
      "  --key-header NAME       key clients by this request header (an API "
      "key,\n"
      "                          a tenant) instead of their address; requests\n"
      "                          without it are keyed by address, requests "
      "with\n"
      "                          an empty, repeated or over-long value get 400\n"
      "  --max-connections N     connections open at once (default 10000)\n"
      "  --no-guard              run the handler without the guard (to measure\n"
      "                          what the guard costs)\n"
      "  --quiet                 no log lines on stderr\n"
      "  --help                  this text\n"
      "\n"
      "Stop it with SIGINT or SIGTERM; it closes every connection and exits "
      "0.\n",
      f);
}

static void die_usage(const char *fmt, const char *a, const char *b) {
  fprintf(stderr, PROG ": ");
  fprintf(stderr, fmt, a, b);
  fprintf(stderr, "\n(try " PROG " --help)\n");
  exit(2);
}

static uint64_t parse_num(const char *flag, const char *v, uint64_t min,
                          uint64_t max) {
  char range[64];
  uint64_t n = 0;
  size_t i;

  snprintf(range, sizeof(range), "%llu..%llu", (unsigned long long)min,
           (unsigned long long)max);
  if (v[0] == '\0')
    goto bad;
  for (i = 0; v[i] != '\0'; i++) {
    uint64_t d = (uint64_t)(v[i] - '0');

    if (v[i] < '0' || v[i] > '9' || n > (UINT64_MAX - d) / 10)
      goto bad;
    n = n * 10 + d;
  }
  if (n < min || n > max)
    goto bad;
  return n;
bad:
  fprintf(stderr, PROG ": %s: expected a whole number in %s, got '%s'\n"
                  "(try " PROG " --help)\n",
          flag, range, v);
  exit(2);
}

/* A trusted proxy, written as the guard writes client keys (so that
 * "::ffff:10.0.0.1" and "10.0.0.1" are one proxy). */
static void add_trusted(config_t *cfg, const char *v) {
  struct sockaddr_storage ss;
  unsigned char bytes[16];
  size_t n;

  if (cfg->ntrusted == TRUST_MAX)
    die_usage("--trust-proxy: at most %s proxies%s", "16", "");
  memset(&ss, 0, sizeof(ss));
  if (strlen(v) < 64 && uv_inet_pton(AF_INET, v, bytes) == 0) {
    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;

    sin->sin_family = AF_INET;
    memcpy(&sin->sin_addr, bytes, 4);
  } else if (strlen(v) < 64 && uv_inet_pton(AF_INET6, v, bytes) == 0) {
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;

    sin6->sin6_family = AF_INET6;
    memcpy(&sin6->sin6_addr, bytes, 16);
  } else {
    die_usage("--trust-proxy: '%s' is not a numeric IPv4 or IPv6 address%s",
              v, "");
  }
  n = fy_guard_addr_key((const struct sockaddr *)&ss,
                        cfg->trusted_buf[cfg->ntrusted], FY_GUARD_KEY_MAX);
  if (n == 0)
    die_usage("--trust-proxy: '%s' is not usable%s", v, "");
  cfg->trusted[cfg->ntrusted] = cfg->trusted_buf[cfg->ntrusted];
  cfg->ntrusted++;
}

static void parse_args(int argc, char **argv, config_t *cfg) {
  int i;

  memset(cfg, 0, sizeof(*cfg));
  cfg->port = 8080;
  cfg->rate = 100;
  cfg->interval_ms = 1000;
  cfg->max_connections = 10000;

  for (i = 1; i < argc; i++) {
    const char *arg = argv[i];
    const char *eq = strchr(arg, '=');
    char flag[32];
    const char *v = NULL;
    size_t flen = eq != NULL ? (size_t)(eq - arg) : strlen(arg);

    if (strncmp(arg, "--", 2) != 0 || flen >= sizeof(flag))
      die_usage("unknown argument '%s'%s", arg, "");
    memcpy(flag, arg, flen);
    flag[flen] = '\0';

    if (strcmp(flag, "--help") == 0 && eq == NULL) {
      usage(stdout);
      exit(0);
    }
    if (strcmp(flag, "--no-guard") == 0 && eq == NULL) {
      cfg->no_guard = 1;
      continue;
    }
    if (strcmp(flag, "--quiet") == 0 && eq == NULL) {
      cfg->quiet = 1;
      continue;
    }
    if (strcmp(flag, "--port") != 0 && strcmp(flag, "--rate") != 0 &&
        strcmp(flag, "--burst") != 0 && strcmp(flag, "--interval-ms") != 0 &&
        strcmp(flag, "--max-concurrent") != 0 &&
        strcmp(flag, "--handler-ms") != 0 &&
        strcmp(flag, "--handler-timeout-ms") != 0 &&
        strcmp(flag, "--trust-proxy") != 0 &&
        strcmp(flag, "--key-header") != 0 &&
        strcmp(flag, "--max-connections") != 0 &&
        strcmp(flag, "--backend-slots") != 0)
      die_usage("unknown option '%s'%s", flag, "");
    if (eq != NULL)
      v = eq + 1;
    else if (i + 1 < argc)
      v = argv[++i];
    else
      die_usage("%s needs a value%s", flag, "");

    if (strcmp(flag, "--port") == 0)
      cfg->port = (unsigned)parse_num(flag, v, 0, 65535);
    else if (strcmp(flag, "--rate") == 0)
      cfg->rate = parse_num(flag, v, 0, FY_LIMIT_RATE_MAX);
    else if (strcmp(flag, "--burst") == 0)
      cfg->burst = parse_num(flag, v, 0, FY_LIMIT_BURST_MAX);
    else if (strcmp(flag, "--interval-ms") == 0)
      cfg->interval_ms = parse_num(flag, v, 1, FY_LIMIT_INTERVAL_MAX);
    else if (strcmp(flag, "--max-concurrent") == 0)
      cfg->max_concurrent = (uint32_t)parse_num(flag, v, 0, UINT32_MAX);
    else if (strcmp(flag, "--handler-ms") == 0)
      cfg->handler_ms = parse_num(flag, v, 0, 3600000);
    else if (strcmp(flag, "--handler-timeout-ms") == 0)
      cfg->handler_timeout_ms = parse_num(flag, v, 0, 3600000);
    else if (strcmp(flag, "--backend-slots") == 0)
      cfg->backend_slots = (uint32_t)parse_num(flag, v, 0, 1000000);
    else if (strcmp(flag, "--max-connections") == 0)
      cfg->max_connections = (uint32_t)parse_num(flag, v, 1, 1000000);
    else if (strcmp(flag, "--trust-proxy") == 0)
      add_trusted(cfg, v);
    else if (strcmp(flag, "--key-header") == 0) {
      if (!fy_guard_header_name_valid(v))
        die_usage("--key-header: '%s' is not a valid header name (1 to 64 "
                  "letters, digits or !#$%%&'*+-.^_`|~)%s",
                  v, "");
      cfg->key_header = v;
    }
  }
}

/* ---- main --------------------------------------------------------------- */

static void log_config(const config_t *cfg) {
  char rate[96] = "no rate limit";
  char conc[48] = "no concurrency limit";
  char dl[48] = "no deadline";

  if (cfg->no_guard) {
    fprintf(stderr, PROG ": no guard; handler %llu ms\n",
            (unsigned long long)cfg->handler_ms);
    return;
  }
  if (cfg->rate > 0)
    snprintf(rate, sizeof(rate), "rate %llu per %llu ms (burst %llu)",
             (unsigned long long)cfg->rate,
             (unsigned long long)cfg->interval_ms,
             (unsigned long long)(cfg->burst ? cfg->burst : cfg->rate));
  if (cfg->max_concurrent > 0)
    snprintf(conc, sizeof(conc), "at most %u at once",
             (unsigned)cfg->max_concurrent);
  if (cfg->handler_timeout_ms > 0)
    snprintf(dl, sizeof(dl), "deadline %llu ms",
             (unsigned long long)cfg->handler_timeout_ms);
  fprintf(stderr, PROG ": %s, %s, handler %llu ms, %s; clients keyed by %s\n",
          rate, conc, (unsigned long long)cfg->handler_ms, dl,
          cfg->key_header != NULL ? cfg->key_header
          : cfg->ntrusted > 0     ? "X-Forwarded-For from trusted proxies"
                                  : "address");
}

static int guard_create(server_t *s) {
  const config_t *cfg = &s->cfg;
  fy_limiter_opts_t lim;
  fy_guard_opts_t go;
  int rc;

  fy_guard_opts_init(&go);
  if (cfg->rate > 0) {
    fy_limiter_opts_init(&lim);
    lim.rate = cfg->rate;
    lim.burst = cfg->burst;
    lim.interval_ms = cfg->interval_ms;
    lim.max_key_len = KEY_BUF - 1;
    go.limit = &lim;
  }
  go.max_concurrent = cfg->max_concurrent;
  go.handler_timeout_ms = cfg->handler_timeout_ms;
  go.name = "guard_server";
  rc = fy_guard_opts_check(&go);
  if (rc != 0) {
    fprintf(stderr,
            PROG ": these limits do not go together (is the burst below the "
                 "rate's needs?): %s\n(try " PROG " --help)\n",
            fy_strerror(rc));
    return 2;
  }
  rc = fy_guard_new(s->ctx, &go, &s->guard);
  if (rc != 0) {
    fprintf(stderr, PROG ": cannot create the guard: %s\n", fy_strerror(rc));
    return 1;
  }
  return 0;
}

static int server_listen(server_t *s) {
  struct sockaddr_in sa;
  struct sockaddr_storage bound;
  int len = (int)sizeof(bound);
  int rc;

  uv_ip4_addr("127.0.0.1", (int)s->cfg.port, &sa);
  uv_tcp_init(s->loop, &s->listener);
  s->listener.data = s;
  rc = uv_tcp_bind(&s->listener, (const struct sockaddr *)&sa, 0);
  if (rc == 0)
    rc = uv_listen((uv_stream_t *)&s->listener, BACKLOG, on_connection);
  if (rc == 0)
    rc = uv_tcp_getsockname(&s->listener, (struct sockaddr *)&bound, &len);
  if (rc != 0) {
    fprintf(stderr, PROG ": cannot listen on 127.0.0.1:%u: %s\n", s->cfg.port,
            uv_strerror(rc));
    return rc;
  }
  /* The first line of output names the port, for scripts that asked for
   * any free one. */
  printf("listening on http://127.0.0.1:%d\n",
         ntohs(((struct sockaddr_in *)&bound)->sin_port));
  fflush(stdout);
  return 0;
}

int main(int argc, char **argv) {
  static server_t srv;
  server_t *s = &srv;
  uv_loop_t loop;
  int rc;

  parse_args(argc, argv, &s->cfg);
  /* Writing to a connection the client has reset raises SIGPIPE, whose
   * default action would end the server. */
  signal(SIGPIPE, SIG_IGN);

  if (uv_loop_init(&loop) != 0)
    return 1;
  s->loop = &loop;
  rc = fy_ctx_new(&loop, NULL, &s->ctx);
  if (rc != 0) {
    fprintf(stderr, PROG ": %s\n", fy_strerror(rc));
    return 1;
  }
  /* The signals are caught before the port is printed: a script may stop
   * the server as soon as it knows where it listens. */
  uv_signal_init(&loop, &s->sigint);
  uv_signal_init(&loop, &s->sigterm);
  s->sigint.data = s->sigterm.data = s;
  uv_signal_start(&s->sigint, on_signal, SIGINT);
  uv_signal_start(&s->sigterm, on_signal, SIGTERM);
  rc = s->cfg.no_guard ? 0 : guard_create(s);
  if (rc == 0 && server_listen(s) != 0)
    rc = 1;
  if (rc != 0) {
    if (s->listener.loop != NULL)
      uv_close((uv_handle_t *)&s->listener, NULL);
    uv_close((uv_handle_t *)&s->sigint, NULL);
    uv_close((uv_handle_t *)&s->sigterm, NULL);
    if (s->guard != NULL)
      fy_guard_close(s->guard, NULL, NULL);
    fy_ctx_close(s->ctx, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    return rc;
  }
  if (!s->cfg.quiet)
    log_config(&s->cfg);

  uv_run(&loop, UV_RUN_DEFAULT);
  rc = uv_loop_close(&loop);
  if (!s->cfg.quiet)
    fprintf(stderr,
            PROG ": %llu connections (%llu refused), %llu requests: "
                 "200=%llu 4xx=%llu 429=%llu 503=%llu 504=%llu other=%llu\n",
            (unsigned long long)s->st.connections,
            (unsigned long long)s->st.refused_connections,
            (unsigned long long)s->st.requests,
            (unsigned long long)s->st.s200, (unsigned long long)s->st.s400,
            (unsigned long long)s->st.s429, (unsigned long long)s->st.s503,
            (unsigned long long)s->st.s504, (unsigned long long)s->st.other);
  return rc == 0 ? 0 : 1;
}
