/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * The libcurl adapter: a CURLM driven by curl's multi-socket API from the
 * context's loop, and an operation that runs a request's easy handle as the
 * attempts of a call.
 *
 * How curl is driven (docs/curl.md, "How curl is driven"):
 * - one uv_poll_t per socket, registered with curl_multi_assign() and
 *   started and stopped from the socket callback.  A connection socket
 *   that our transfers connected keeps its poll for its whole life
 *   ("kept"): CURL_POLL_REMOVE, which curl sends each time a kept-alive
 *   connection goes back to the pool, leaves it be, and our
 *   CURLOPT_CLOSESOCKETFUNCTION closes it just before the fd is closed.
 *   Any other socket's poll is closed on CURL_POLL_REMOVE, before curl
 *   closes the fd.  Polls are freed in their close callback;
 * - curl's timer is a fy_deadline_t on the context's wheel: -1 stops it, 0
 *   fires on the next turn of the loop, no clamp; the deadline's callback
 *   (never curl's timer callback itself) calls curl_multi_socket_action();
 * - after every socket_action, timeouts included, the finished transfers
 *   are drained with curl_multi_info_read(), copying the easy handle and
 *   the result before curl_multi_remove_handle().
 *
 * curl refuses most of its API inside its own callbacks, and our write and
 * header callbacks run user code (fy_attempt_mark() reaches the policies'
 * progress hooks and through them listeners and user callbacks).  So
 * |in_curl| counts the curl calls on the stack; an attempt started or
 * cancelled while it is non-zero is put on the deferred list and handled as
 * soon as curl has returned ("settle").  A deferred cancel also makes our
 * write and header callbacks abort the transfer at once. */
#include <limits.h>
#include <stdio.h>
#include <unistd.h>

#include "curl_int.h"

/* fy_curl_req_t.flags_ */
enum {
  RQ_OWN_EASY = 1u << 0,    /* the request created its easy handle */
  RQ_IN_MULTI = 1u << 1,    /* the easy handle is in the multi */
  RQ_PENDING_ADD = 1u << 2, /* started inside curl: add it when we can */
  RQ_CANCEL = 1u << 3,      /* cancelled inside curl: remove it when we can */
  RQ_DEFERRED = 1u << 4,    /* on the adapter's deferred list */
  RQ_MARKED = 1u << 5,      /* this attempt's first byte was reported */
  RQ_RETRY_AFTER = 1u << 6, /* the response carries Retry-After */
  RQ_IDEMPOTENT = 1u << 7,  /* fy_curl_req_set_idempotent() */
  RQ_DIRTY = 1u << 8,       /* method, body or headers to apply */
  RQ_URL = 1u << 9,         /* a URL was set */
  RQ_BODY = 1u << 10,       /* a body was set (possibly empty) */
  RQ_EXPECT = 1u << 11      /* "Expect:" is in the header list */
};

typedef struct sock_s sock_t;

/* Closed poll handles kept for reuse: a socket that is not kept (a
 * connect attempt, the resolver's, a pooled connection another multi
 * opened) has a poll for one transfer only. */
#define SPARE_MAX 64

/* Connection sockets with a number at or past this get no lasting poll
 * (they are handled like other sockets); it bounds the fd table. */
#define CONN_FD_LIMIT 65536

struct fy_curl_s {
  fy_ctx_t *ctx;
  uv_loop_t *loop;
  CURLM *multi;
  fy_attachment_t attach;   /* ties our teardown to the context's close */
  fy_deadline_t defer;      /* fy_curl_close(): the teardown, on a fresh
                               stack */
  fy_deadline_t timer;      /* CURLMOPT_TIMERFUNCTION */
  fy_curl_req_t *head;      /* requests with an attempt */
  fy_curl_req_t *dfirst;    /* deferred work, FIFO */
  fy_curl_req_t *dlast;
  sock_t *socks;            /* poll handles not closing */
  size_t nsocks;            /* poll handles not yet freed */
  sock_t *spare;            /* closed ones kept for reuse (SPARE_MAX) */
  unsigned nspare;
  size_t transfers;         /* easy handles in the multi */
  unsigned in_curl;         /* curl calls on the stack */
  int settling;
  int closing;              /* new attempts are refused */
  int tearing;              /* teardown started: no new polls or timers */
  int ctx_gone;             /* the context has finished closing */
  int close_requested;
  fy_close_cb close_cb;
  void *close_ud;
  size_t max_body;
  size_t max_headers;
  uint64_t max_retry_after;
  fy_curl_stats_t stats;
  fy_curl_class_t cls;
};

struct sock_s {
  uv_poll_t poll;
  fy_curl_t *curl;
  sock_t *next;
  sock_t *prev;
  curl_socket_t fd;
  int events;   /* the mask curl asked for */
  int watching; /* the mask the poll was started with, 0 when stopped */
  int closing;  /* uv_close() called */
  int conn;     /* kept: listed in kept_socks[] */
  int saw_out;  /* curl waited for it to be writable (a connect) */
  int idle;     /* a pooled connection's poll, left reading, unreferenced */
};

/* ---- status mapping ---------------------------------------------------- */

_Static_assert(FY_CURL_EHTTP(999) < FY_CURL_EHTTP(100) &&
                   FY_CURL_EHTTP(100) < FY__ERRNO_LAST,
               "HTTP statuses must sit below the library's reserved block");

int fy_curl_http_code(int status) {
  if (status <= FY_CURL_EHTTP(100) && status >= FY_CURL_EHTTP(999))
    return FY_CURL_EHTTP_BASE - status;
  return 0;
}

int fy_curl_status(CURLcode code) {
  switch (code) {
  case CURLE_OK:
    return 0;
  case CURLE_COULDNT_RESOLVE_HOST:
  case CURLE_COULDNT_RESOLVE_PROXY:
    return UV_EAI_NONAME;
  case CURLE_COULDNT_CONNECT:
    return UV_ECONNREFUSED;
  case CURLE_OPERATION_TIMEDOUT:
    return UV_ETIMEDOUT;
  case CURLE_SEND_ERROR:
  case CURLE_RECV_ERROR:
  case CURLE_GOT_NOTHING:
    return UV_ECONNRESET;
  case CURLE_PARTIAL_FILE:
    return UV_EOF;
  case CURLE_WEIRD_SERVER_REPLY:
  case CURLE_HTTP2:
  case CURLE_HTTP2_STREAM:
  case CURLE_HTTP3:
  case CURLE_BAD_CONTENT_ENCODING:
  case CURLE_RANGE_ERROR:
  case CURLE_HTTP_RETURNED_ERROR:
    return UV_EPROTO;
  case CURLE_FILESIZE_EXCEEDED:
    return UV_EMSGSIZE;
  case CURLE_TOO_MANY_REDIRECTS:
    return UV_ELOOP;
  case CURLE_OUT_OF_MEMORY:
    return UV_ENOMEM;
  case CURLE_URL_MALFORMAT:
  case CURLE_BAD_FUNCTION_ARGUMENT:
    return UV_EINVAL;
  case CURLE_UNSUPPORTED_PROTOCOL:
    return UV_EPROTONOSUPPORT;
  case CURLE_SSL_CONNECT_ERROR:
    return UV_ECONNABORTED;
  case CURLE_PEER_FAILED_VERIFICATION:
  case CURLE_SSL_CERTPROBLEM:
  case CURLE_SSL_CIPHER:
  case CURLE_SSL_CACERT_BADFILE:
  case CURLE_SSL_ISSUER_ERROR:
  case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
  case CURLE_SSL_INVALIDCERTSTATUS:
  case CURLE_SSL_CRL_BADFILE:
  case CURLE_LOGIN_DENIED:
  case CURLE_REMOTE_ACCESS_DENIED:
    return UV_EACCES;
  case CURLE_ABORTED_BY_CALLBACK:
    return UV_ECANCELED;
  default:
    return UV_EIO;
  }
}

/* The same, refined with the socket error curl saw where that tells more
 * (a connect that was not refused but unreachable, say). */
static int map_result(CURLcode code, long os_errno) {
  int status = fy_curl_status(code);
  if (os_errno <= 0 || os_errno > INT_MAX)
    return status;
  if (code == CURLE_COULDNT_CONNECT || code == CURLE_SEND_ERROR ||
      code == CURLE_RECV_ERROR) {
    int sys = uv_translate_sys_error((int)os_errno);
    switch (sys) {
    case UV_ECONNREFUSED:
    case UV_ECONNRESET:
    case UV_ECONNABORTED:
    case UV_EPIPE:
    case UV_ENETUNREACH:
    case UV_EHOSTUNREACH:
    case UV_ENETDOWN:
    case UV_ETIMEDOUT:
      return sys;
    default:
      break;
    }
  }
  return status;
}

/* The core names HTTP statuses itself ("FY_EHTTP_503", "HTTP status 503"),
 * so these only forward: one format everywhere. */
char *fy_curl_err_name_r(int status, char *buf, size_t len) {
  return fy_err_name_r(status, buf, len);
}

char *fy_curl_strerror_r(int status, char *buf, size_t len) {
  return fy_strerror_r(status, buf, len);
}

/* ---- classification ---------------------------------------------------- */

unsigned fy_curl__default_class(int code) {
  unsigned f = 0;
  if (code < 100 || code > FY_CURL_HTTP_CODE_MAX)
    return 0;
  if (code >= 400)
    f |= FY_CURL_CLASS_ERROR;
  if (code >= 500)
    f |= FY_CURL_CLASS_BREAKER_FAIL;
  /* A 408 or a 429 says "not now" rather than "broken": retried, but not
   * held against the host's breaker. */
  if (code == 408 || code == 429)
    f |= FY_CURL_CLASS_RETRY | FY_CURL_CLASS_BREAKER_IGNORE;
  if (code == 502 || code == 503 || code == 504)
    f |= FY_CURL_CLASS_RETRY;
  return f;
}

void fy_curl_class_init(fy_curl_class_t *cls) {
  int code;
  if (cls == NULL)
    return;
  for (code = 0; code <= FY_CURL_HTTP_CODE_MAX; code++)
    cls->http[code] = (uint8_t)fy_curl__default_class(code);
}

int fy_curl_class_set(fy_curl_class_t *cls, int code, unsigned flags) {
  if (cls == NULL || code < 100 || code > FY_CURL_HTTP_CODE_MAX ||
      flags > 0xffu)
    return UV_EINVAL;
  cls->http[code] = (uint8_t)flags;
  return 0;
}

static unsigned class_of(const fy_curl_class_t *cls, int code) {
  if (cls == NULL)
    return fy_curl__default_class(code);
  if (code < 0 || code > FY_CURL_HTTP_CODE_MAX)
    return 0;
  return cls->http[code];
}

int fy_curl_retry_classify(int status, void *user_data) {
  int code = fy_curl_http_code(status);
  if (code != 0)
    return (class_of(user_data, code) & FY_CURL_CLASS_RETRY) ? 1 : 0;
  switch (status) {
  case UV_ECONNREFUSED:
  case UV_ECONNRESET:
  case UV_ECONNABORTED:
  case UV_EPIPE:
  case UV_ETIMEDOUT:
  case UV_EAI_NONAME:
  case UV_EAI_AGAIN:
  case UV_EOF:
  case UV_EPROTO:
  case UV_ENETUNREACH:
  case UV_EHOSTUNREACH:
  case UV_ENETDOWN:
    return 1;
  case UV_EMSGSIZE:
  case UV_EINVAL:
  case UV_EPROTONOSUPPORT:
  case UV_EACCES:
  case UV_ENOMEM:
  case UV_ELOOP:
    return 0;
  default:
    return -1;
  }
}

fy_outcome_t fy_curl_breaker_classify(int status, void *user_data) {
  int code;
  unsigned f;
  if (status == 0)
    return FY_OUTCOME_SUCCESS;
  if (status == UV_ECANCELED || fy_is_refusal(status))
    return FY_OUTCOME_IGNORE;
  code = fy_curl_http_code(status);
  if (code != 0) {
    f = class_of(user_data, code);
    if (f & FY_CURL_CLASS_BREAKER_IGNORE)
      return FY_OUTCOME_IGNORE;
    return (f & FY_CURL_CLASS_BREAKER_FAIL) ? FY_OUTCOME_FAILURE
                                             : FY_OUTCOME_SUCCESS;
  }
  switch (status) {
  case UV_EMSGSIZE: /* our own size limit */
  case UV_EINVAL:   /* our own bad request */
  case UV_ENOMEM:
  case UV_EPROTONOSUPPORT:
    return FY_OUTCOME_IGNORE;
  default:
    return FY_OUTCOME_FAILURE;
  }
}

/* ---- small helpers ----------------------------------------------------- */

static int lower(int ch) {
  return ch >= 'A' && ch <= 'Z' ? ch - 'A' + 'a' : ch;
}

/* ASCII, locale-free: header names are case-insensitive. */
static int prefix_nocase(const char *s, size_t n, const char *prefix) {
  size_t i;
  for (i = 0; prefix[i] != '\0'; i++)
    if (i >= n || lower((unsigned char)s[i]) != prefix[i])
      return 0;
  return 1;
}

static void buf_clear(fy_curl_buf_t *b) {
  b->len = 0;
  if (b->data != NULL)
    b->data[0] = '\0';
}

static void buf_free(fy_curl_buf_t *b) {
  fyc_free(b->data);
  b->data = NULL;
  b->len = 0;
  b->cap = 0;
}

/* Append |n| bytes, keeping a terminating NUL and |len| <= |max|.  The
 * capacity is kept across attempts: a retried request allocates nothing. */
static int buf_append(fy_curl_buf_t *b, const char *p, size_t n,
                      size_t max) {
  size_t need, cap;
  char *data;
  if (n > max - b->len)
    return UV_EMSGSIZE;
  need = b->len + n + 1;
  if (need > b->cap) {
    cap = b->cap != 0 ? b->cap : 1024;
    while (cap < need)
      cap = cap > (max + 1) / 2 ? max + 1 : cap * 2;
    data = fyc_realloc(b->data, cap);
    if (data == NULL)
      return UV_ENOMEM;
    b->data = data;
    b->cap = cap;
  }
  memcpy(b->data + b->len, p, n);
  b->len += n;
  b->data[b->len] = '\0';
  return 0;
}

/* ---- the transfer list and the deferred list --------------------------- */

static void link_transfer(fy_curl_t *c, fy_curl_req_t *req) {
  req->prev_ = NULL;
  req->next_ = c->head;
  if (c->head != NULL)
    c->head->prev_ = req;
  c->head = req;
}

static void unlink_transfer(fy_curl_t *c, fy_curl_req_t *req) {
  if (req->prev_ != NULL)
    req->prev_->next_ = req->next_;
  else if (c->head == req)
    c->head = req->next_;
  if (req->next_ != NULL)
    req->next_->prev_ = req->prev_;
  req->next_ = req->prev_ = NULL;
}

/* The deferred list is singly linked: O(n) removal happens only for a
 * request that is cancelled or cleaned up while queued, which is rare. */
static void defer(fy_curl_t *c, fy_curl_req_t *req) {
  if (req->flags_ & RQ_DEFERRED)
    return;
  req->flags_ |= RQ_DEFERRED;
  req->dnext_ = NULL;
  if (c->dlast != NULL)
    c->dlast->dnext_ = req;
  else
    c->dfirst = req;
  c->dlast = req;
}

static void undefer(fy_curl_t *c, fy_curl_req_t *req) {
  fy_curl_req_t *p, *prev = NULL;
  if (!(req->flags_ & RQ_DEFERRED))
    return;
  for (p = c->dfirst; p != NULL; prev = p, p = p->dnext_) {
    if (p != req)
      continue;
    if (prev != NULL)
      prev->dnext_ = p->dnext_;
    else
      c->dfirst = p->dnext_;
    if (c->dlast == p)
      c->dlast = prev;
    break;
  }
  req->dnext_ = NULL;
  req->flags_ &= ~(unsigned)RQ_DEFERRED;
}

static fy_curl_req_t *pop_deferred(fy_curl_t *c) {
  fy_curl_req_t *req = c->dfirst;
  if (req == NULL)
    return NULL;
  c->dfirst = req->dnext_;
  if (c->dfirst == NULL)
    c->dlast = NULL;
  req->dnext_ = NULL;
  req->flags_ &= ~(unsigned)RQ_DEFERRED;
  return req;
}

/* ---- attempts ---------------------------------------------------------- */

static int add_now(fy_curl_t *c, fy_curl_req_t *req) {
  CURLMcode mc;
  c->in_curl++;
  mc = curl_multi_add_handle(c->multi, req->easy);
  c->in_curl--;
  if (mc != CURLM_OK)
    return mc == CURLM_OUT_OF_MEMORY ? UV_ENOMEM : UV_EINVAL;
  req->flags_ |= RQ_IN_MULTI;
  c->transfers++;
  return 0;
}

/* Synchronous: no callback of curl's follows for this handle. */
static void remove_now(fy_curl_t *c, fy_curl_req_t *req) {
  if (!(req->flags_ & RQ_IN_MULTI))
    return;
  req->flags_ &= ~(unsigned)RQ_IN_MULTI;
  c->transfers--;
  c->in_curl++;
  curl_multi_remove_handle(c->multi, req->easy);
  c->in_curl--;
}

/* Report the attempt's outcome.  User code may run inside and free |req|:
 * nothing is touched afterwards. */
static void report(fy_curl_t *c, fy_curl_req_t *req, int status) {
  fy_attempt_t *a = req->attempt_;
  undefer(c, req);
  unlink_transfer(c, req);
  req->attempt_ = NULL;
  req->flags_ &= ~(unsigned)(RQ_PENDING_ADD | RQ_CANCEL | RQ_MARKED);
  req->status = status;
  c->stats.completed++;
  if (status == UV_ECANCELED)
    c->stats.cancelled++;
  fy_attempt_done(a, status);
}

static void mark(fy_curl_req_t *req) {
  if (req->attempt_ != NULL)
    fy_attempt_mark(req->attempt_);
}

static int connected(fy_curl_req_t *req) {
  char *ip = NULL;
  return curl_easy_getinfo(req->easy, CURLINFO_PRIMARY_IP, &ip) ==
             CURLE_OK &&
         ip != NULL && ip[0] != '\0';
}

/* A transfer finished (from the drain loop, after its removal). */
static void complete(fy_curl_t *c, fy_curl_req_t *req, CURLcode result) {
  long code = 0, connects = 0, os_errno = 0;
  int status;

  curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &code);
  curl_easy_getinfo(req->easy, CURLINFO_NUM_CONNECTS, &connects);
  req->http_code = code;
  req->curl_code = result;
  if (connects > 0)
    req->connects += (unsigned)connects;
  if (req->flags_ & RQ_CANCEL) {
    status = UV_ECANCELED;
  } else if (req->local_error_ != 0) {
    status = req->local_error_;
  } else if (result != CURLE_OK) {
    curl_easy_getinfo(req->easy, CURLINFO_OS_ERRNO, &os_errno);
    status = map_result(result, os_errno);
    /* curl says "unsupported protocol" both for a scheme it lacks and for
     * a reply that is not HTTP at all (HTTP/0.9): a connected peer means
     * the latter, a malformed reply. */
    if (result == CURLE_UNSUPPORTED_PROTOCOL && connected(req))
      status = UV_EPROTO;
  } else if (code >= 100 && code <= FY_CURL_HTTP_CODE_MAX &&
             (c->cls.http[code] & FY_CURL_CLASS_ERROR)) {
    status = FY_CURL_EHTTP(code);
  } else {
    status = 0;
  }
  /* The header callback parsed this response's Retry-After (the flag is
   * per response); a date counts from now, and the cap bounds it. */
  if (fy_curl_http_code(status) != 0 && (req->flags_ & RQ_RETRY_AFTER)) {
    req->retry_after_ms =
        fy_curl__retry_after_ms(req->retry_after_kind_, req->retry_after_s_,
                                fy_curl__wall_s(), c->max_retry_after);
    if (req->retry_after_ms > 0)
      fy_attempt_set_retry_after(req->attempt_, req->retry_after_ms);
  }
  report(c, req, status);
}

static void drain(fy_curl_t *c) {
  CURLMsg *msg;
  CURL *easy;
  CURLcode result;
  fy_curl_req_t *req;
  char *priv;
  int left;

  while (!c->tearing && (msg = curl_multi_info_read(c->multi, &left))) {
    if (msg->msg != CURLMSG_DONE)
      continue;
    /* |msg| dies with the removal: copy first. */
    easy = msg->easy_handle;
    result = msg->data.result;
    priv = NULL;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv);
    req = (fy_curl_req_t *)(void *)priv;
    if (req == NULL || req->easy != easy || !(req->flags_ & RQ_IN_MULTI)) {
      c->in_curl++;
      curl_multi_remove_handle(c->multi, easy);
      c->in_curl--;
      continue;
    }
    remove_now(c, req);
    complete(c, req, result);
  }
}

/* Do what had to wait until curl returned. */
static void flush(fy_curl_t *c) {
  fy_curl_req_t *req;
  int rc;
  while (c->in_curl == 0 && (req = pop_deferred(c)) != NULL) {
    if (req->flags_ & RQ_PENDING_ADD) {
      req->flags_ &= ~(unsigned)RQ_PENDING_ADD;
      rc = c->closing ? FY_ECLOSED : add_now(c, req);
      if (rc != 0)
        report(c, req, rc);
    } else if (req->flags_ & RQ_CANCEL) {
      remove_now(c, req);
      report(c, req, UV_ECANCELED);
    } else if (req->local_error_ != 0) {
      remove_now(c, req); /* its socket could not be watched */
      report(c, req, req->local_error_);
    }
  }
}

static void settle(fy_curl_t *c) {
  if (c->in_curl > 0 || c->settling || c->tearing)
    return;
  c->settling = 1;
  do {
    flush(c);
    drain(c);
  } while (c->dfirst != NULL && c->in_curl == 0 && !c->tearing);
  c->settling = 0;
}

static void act(fy_curl_t *c, curl_socket_t s, int flags) {
  int running = 0;
  if (c->tearing)
    return;
  c->in_curl++;
  curl_multi_socket_action(c->multi, s, flags, &running);
  c->in_curl--;
  settle(c);
}

/* ---- the operation ----------------------------------------------------- */

static int set_socket_hooks(fy_curl_req_t *req);

static void reset_response(fy_curl_req_t *req) {
  buf_clear(&req->body);
  buf_clear(&req->headers);
  req->errbuf[0] = '\0';
  req->http_code = 0;
  req->curl_code = CURLE_OK;
  req->retry_after_ms = 0;
  req->header_bytes_ = 0;
  req->local_error_ = 0;
  req->flags_ &= ~(unsigned)(RQ_MARKED | RQ_RETRY_AFTER | RQ_CANCEL);
}

static void set_timeout(fy_curl_req_t *req, const fy_attempt_t *a) {
  uint64_t left = fy_attempt_remaining(a);
  long ms;
  if (left == FY_TIME_NEVER)
    ms = 0; /* no limit */
  else if (left == 0)
    ms = 1; /* the deadline is now: fail at once rather than never */
  else
    ms = left > (uint64_t)LONG_MAX ? LONG_MAX : (long)left;
  curl_easy_setopt(req->easy, CURLOPT_TIMEOUT_MS, ms);
}

static int op_start(fy_attempt_t *a, void *arg) {
  fy_curl_req_t *req = arg;
  fy_curl_t *c = req->owner_;
  int rc;

  if (c->closing)
    return FY_ECLOSED;
  if (req->attempt_ != NULL) {
    /* An earlier attempt whose cancellation waits for curl to return
     * (it was abandoned by a timeout, say): finish it now if we can. */
    if (!(req->flags_ & RQ_CANCEL) || c->in_curl > 0)
      return UV_EBUSY;
    remove_now(c, req);
    report(c, req, UV_ECANCELED);
  }
  reset_response(req);
  set_timeout(req, a);
  set_socket_hooks(req); /* in case the caller changed it */
  req->attempt_ = a;
  req->attempts++;
  link_transfer(c, req);
  c->stats.started++;
  if (c->in_curl > 0) {
    req->flags_ |= RQ_PENDING_ADD;
    defer(c, req);
    return 0;
  }
  rc = add_now(c, req);
  if (rc != 0) {
    unlink_transfer(c, req);
    req->attempt_ = NULL;
    return rc;
  }
  return 0;
}

/* Synchronous whenever curl allows it: the handle leaves the multi and the
 * attempt reports UV_ECANCELED before this returns. */
static void op_cancel(fy_attempt_t *a, void *arg) {
  fy_curl_req_t *req = arg;
  fy_curl_t *c = req->owner_;
  if (req->attempt_ != a)
    return;
  if (req->flags_ & RQ_PENDING_ADD) {
    report(c, req, UV_ECANCELED); /* curl never saw it */
    return;
  }
  if (c->in_curl > 0) {
    /* Inside one of curl's callbacks: curl_multi_remove_handle() is
     * refused here.  Our callbacks abort the transfer from now on, and
     * settle() removes it and reports once curl has returned. */
    req->flags_ |= RQ_CANCEL;
    defer(c, req);
    return;
  }
  remove_now(c, req);
  report(c, req, UV_ECANCELED);
}

const fy_op_t fy_curl__op = {op_start, op_cancel};

/* ---- easy callbacks (user code may run inside: in_curl > 0) ------------ */

static size_t on_write(char *ptr, size_t size, size_t nmemb, void *ud) {
  fy_curl_req_t *req = ud;
  size_t n = size * nmemb;
  int rc;
  if (req->flags_ & RQ_CANCEL)
    return 0; /* aborts the transfer */
  if (req->max_body_ > 0) {
    rc = buf_append(&req->body, ptr, n, req->max_body_);
    if (rc != 0) {
      req->local_error_ = rc;
      return 0;
    }
  }
  req->flags_ |= RQ_MARKED;
  mark(req);
  /* The mark may have led to this very attempt's cancellation. */
  return (req->flags_ & RQ_CANCEL) ? 0 : n;
}

static size_t on_header(char *ptr, size_t size, size_t nitems, void *ud) {
  fy_curl_req_t *req = ud;
  size_t n = size * nitems;
  int rc;
  if (req->flags_ & RQ_CANCEL)
    return 0;
  if (n >= 5 && memcmp(ptr, "HTTP/", 5) == 0) {
    /* A new response (after a 100 Continue or a redirect): only the last
     * one's headers are kept. */
    buf_clear(&req->headers);
    req->header_bytes_ = 0;
    req->flags_ &= ~(unsigned)RQ_RETRY_AFTER;
    req->header_end_ = 0;
  } else if ((n == 2 && ptr[0] == '\r' && ptr[1] == '\n') ||
             (n == 1 && ptr[0] == '\n')) {
    req->header_end_ = 1; /* the blank line: trailers may follow */
  } else if (!req->header_end_ && prefix_nocase(ptr, n, "retry-after:")) {
    /* The last Retry-After of the header section counts (RFC 9110 keeps
     * trailers out of it).  Parsed while curl holds the whole line, so
     * nothing is copied; an invalid value clears the hint. */
    size_t vn = n - 12;
    if (vn > 0 && ptr[12 + vn - 1] == '\n')
      vn--;
    if (vn > 0 && ptr[12 + vn - 1] == '\r')
      vn--;
    req->retry_after_kind_ = fy_curl__retry_after_parse(
        ptr + 12, vn, fy_curl__wall_s(), &req->retry_after_s_);
    if (req->retry_after_kind_ != FY_CURL__RA_NONE)
      req->flags_ |= RQ_RETRY_AFTER;
    else
      req->flags_ &= ~(unsigned)RQ_RETRY_AFTER;
  }
  /* Past FY_CURL_HEADERS_MAX curl itself would soon fail the transfer as
   * a receive error: stop first, and say what it is. */
  req->header_bytes_ += n;
  if (req->header_bytes_ > FY_CURL_HEADERS_MAX) {
    req->local_error_ = UV_EMSGSIZE;
    return 0;
  }
  if (req->max_headers_ > 0) {
    rc = buf_append(&req->headers, ptr, n, req->max_headers_);
    if (rc != 0) {
      req->local_error_ = rc;
      return 0;
    }
  }
  if (!(req->flags_ & RQ_MARKED)) {
    req->flags_ |= RQ_MARKED; /* the first byte of the response */
    mark(req);
  }
  return (req->flags_ & RQ_CANCEL) ? 0 : n;
}

/* ---- sockets and the timer --------------------------------------------- */

static void maybe_free(fy_curl_t *c);

/* The kept polls, by fd, for every adapter in the process: the close
 * callback finds the poll of the socket curl closes here.  Its data is
 * not the adapter, because a connection in a CURLSH's cache may be closed
 * after the adapter is gone (an adapter's entries go with its teardown).
 * An fd has one owner at a time, so adapters on other threads use other
 * entries; the table never moves. */
static sock_t *kept_socks[CONN_FD_LIMIT];

static void on_sock_closed(uv_handle_t *h) {
  sock_t *sk = fy_container_of((uv_poll_t *)h, sock_t, poll);
  fy_curl_t *c = sk->curl;
  if (!c->tearing && c->nspare < SPARE_MAX) {
    sk->next = c->spare;
    c->spare = sk;
    c->nspare++;
  } else {
    fyc_free(sk);
  }
  c->nsocks--;
  maybe_free(c);
}

static void sock_close(fy_curl_t *c, sock_t *sk) {
  if (sk->closing)
    return;
  sk->closing = 1;
  if (sk->conn)
    kept_socks[sk->fd] = NULL;
  if (sk->prev != NULL)
    sk->prev->next = sk->next;
  else
    c->socks = sk->next;
  if (sk->next != NULL)
    sk->next->prev = sk->prev;
  uv_poll_stop(&sk->poll);
  uv_close((uv_handle_t *)&sk->poll, on_sock_closed);
}

static void sock_stop(sock_t *sk) {
  if (sk->idle) {
    sk->idle = 0;
    uv_ref((uv_handle_t *)&sk->poll);
  }
  sk->watching = 0;
  uv_poll_stop(&sk->poll);
}

static void on_poll(uv_poll_t *h, int status, int events) {
  sock_t *sk = fy_container_of(h, sock_t, poll);
  fy_curl_t *c = sk->curl;
  int flags = 0;
  if (sk->idle) {
    /* A pooled connection's peer closed it or sent something: curl finds
     * out when it next wants the connection; until then, quiet. */
    sock_stop(sk);
    return;
  }
  if (status < 0) {
    /* libuv reports POLLERR as an error status and stops the handle. */
    flags = CURL_CSELECT_ERR;
  } else {
    if (events & UV_READABLE)
      flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
      flags |= CURL_CSELECT_OUT;
  }
  act(c, sk->fd, flags);
  /* |sk| is freed only from its close callback, so it is still here.  If
   * curl kept the socket without asking for a new mask, watch it again. */
  if (status < 0 && !sk->closing && !c->tearing && sk->events != 0 &&
      !uv_is_active((uv_handle_t *)&sk->poll)) {
    sk->watching = sk->events;
    uv_poll_start(&sk->poll, sk->events, on_poll);
  }
}

/* A socket curl wants watched and we cannot watch (out of memory).
 * Returning -1 would make curl mark the whole multi handle dead (or, in
 * some versions, leave the transfer waiting on a socket nobody polls): the
 * transfer that asked fails alone instead, with |status|, once curl has
 * returned (flush). */
static int sock_failed(fy_curl_t *c, CURL *easy, int status) {
  fy_curl_req_t *req;
  char *priv = NULL;
  if (easy == NULL)
    return 0;
  curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv);
  req = (fy_curl_req_t *)(void *)priv;
  if (req != NULL && req->easy == easy && req->attempt_ != NULL &&
      (req->flags_ & RQ_IN_MULTI) && req->local_error_ == 0) {
    req->local_error_ = status;
    defer(c, req);
  }
  return 0;
}

/* A poll handle for |s|, listed in c->socks; NULL with *rc set when it
 * cannot be had. */
static sock_t *sock_new(fy_curl_t *c, curl_socket_t s, int *rc) {
  sock_t *sk = c->spare;
  if (sk != NULL) {
    c->spare = sk->next;
    c->nspare--;
    memset(sk, 0, sizeof(*sk));
  } else if ((sk = fyc_calloc(1, sizeof(*sk))) == NULL) {
    *rc = UV_ENOMEM;
    return NULL;
  }
  *rc = uv_poll_init_socket(c->loop, &sk->poll, s);
  if (*rc != 0) {
    fyc_free(sk);
    return NULL;
  }
  sk->curl = c;
  sk->fd = s;
  sk->next = c->socks;
  if (c->socks != NULL)
    c->socks->prev = sk;
  c->socks = sk;
  c->nsocks++;
  return sk;
}

/* The kept poll of socket |s| if it is this adapter's, or NULL. */
static sock_t *kept_sock(const fy_curl_t *c, curl_socket_t s) {
  sock_t *sk = s >= 0 && s < CONN_FD_LIMIT ? kept_socks[s] : NULL;
  return sk != NULL && sk->curl == c ? sk : NULL;
}

/* A kept connection goes back to curl's pool.  Its poll stays as it is if
 * it only reads (a response was its last wait), unreferenced so that it
 * keeps no loop alive: the next transfer on the connection, which curl
 * starts by waiting to read, then costs no system call, and a peer that
 * closes the idle connection wakes us once (on_poll stops the poll).  A
 * poll that waits to write is stopped: an idle socket is always
 * writable. */
static void park(sock_t *sk) {
  if (sk->watching == UV_READABLE &&
      uv_is_active((uv_handle_t *)&sk->poll)) {
    if (!sk->idle) {
      sk->idle = 1;
      uv_unref((uv_handle_t *)&sk->poll);
    }
    return;
  }
  sock_stop(sk);
}

/* A socket curl first waited on to become writable (a connect) and now
 * waits on to be readable is the active socket of a connection that one
 * of our transfers opened: curl 7.88 makes a socket the connection's own
 * as soon as it connects, before anything waits to read it, and then
 * closes it through the close callback of the handle that opened the
 * connection (set on every attempt: set_socket_hooks()).  Only such a
 * socket is kept.  A connect attempt that loses or fails may be closed
 * without that callback, or any notice; it has never waited to read.  A
 * pooled connection's socket met by a fresh poll starts by reading, and
 * the resolver's wake-up socket only ever reads. */
static void maybe_keep(sock_t *sk, int events) {
  if (events & UV_WRITABLE)
    sk->saw_out = 1;
  if (sk->conn || !sk->saw_out || !(events & UV_READABLE) ||
      sk->fd >= CONN_FD_LIMIT || kept_socks[sk->fd] != NULL)
    return;
  sk->conn = 1;
  kept_socks[sk->fd] = sk;
}

static int on_socket(CURL *easy, curl_socket_t s, int what, void *userp,
                     void *socketp) {
  fy_curl_t *c = userp;
  sock_t *sk = socketp;
  int events = 0;
  int rc;

  if (what == CURL_POLL_REMOVE) {
    /* A kept connection back in the pool keeps its poll for the next
     * transfer (its close callback closes it); any other socket's poll
     * goes now, before curl closes the fd: a poll must never outlive it. */
    if (sk != NULL && sk->conn) {
      sk->events = 0;
      park(sk);
    } else if (sk != NULL) {
      sock_close(c, sk);
    }
    return 0;
  }
  if (what & CURL_POLL_IN)
    events |= UV_READABLE;
  if (what & CURL_POLL_OUT)
    events |= UV_WRITABLE;
  if (sk == NULL) {
    if (c->tearing || events == 0)
      return 0; /* no new polling once shutting down */
    sk = kept_sock(c, s);
    if (sk == NULL && (sk = sock_new(c, s, &rc)) == NULL)
      return sock_failed(c, easy, rc);
    curl_multi_assign(c->multi, s, sk);
  }
  maybe_keep(sk, events);
  if (sk->idle) {
    sk->idle = 0;
    uv_ref((uv_handle_t *)&sk->poll);
  }
  sk->events = events;
  if (c->tearing || events == 0) {
    sock_stop(sk);
    return 0;
  }
  /* Each uv_poll_start() and uv_poll_stop() costs epoll_ctl calls
   * (libuv 1.44 deregisters the fd in both): none when nothing changes. */
  if (sk->watching == events && uv_is_active((uv_handle_t *)&sk->poll))
    return 0;
  sk->watching = events;
  return uv_poll_start(&sk->poll, events, on_poll) == 0 ? 0 : -1;
}

/* CURLOPT_CLOSESOCKETFUNCTION: a kept poll goes first (uv_close() takes
 * the fd out of the loop's epoll set at once), then the fd. */
static int on_close_socket(void *ud, curl_socket_t s) {
  sock_t *sk = s >= 0 && s < CONN_FD_LIMIT ? kept_socks[s] : NULL;
  (void)ud;
  if (sk != NULL)
    sock_close(sk->curl, sk);
  return close(s) == 0 ? 0 : 1;
}

static void on_timer(fy_deadline_t *d) {
  act(fy_container_of(d, fy_curl_t, timer), CURL_SOCKET_TIMEOUT, 0);
}

/* curl's timer callback.  No curl call from here: the deadline's callback
 * makes it, on a later turn (0 ms included, with no clamp). */
static int on_timer_fn(CURLM *multi, long timeout_ms, void *userp) {
  fy_curl_t *c = userp;
  (void)multi;
  if (c->tearing)
    return 0;
  if (timeout_ms < 0) {
    fy_deadline_stop(&c->timer);
    return 0;
  }
  return fy_deadline_start(&c->timer, (uint64_t)timeout_ms) == 0 ? 0 : -1;
}

/* ---- lifetime ---------------------------------------------------------- */

/* Torn down, the last poll handle closed, and either closed by the user or
 * left to the context, which has finished: the memory can go. */
static void maybe_free(fy_curl_t *c) {
  fy_close_cb cb;
  sock_t *sk;
  if (!c->tearing || c->nsocks > 0 || !(c->close_requested || c->ctx_gone))
    return;
  /* Idle by now (teardown stopped both, or the context dropped them). */
  fy_deadline_stop(&c->defer);
  fy_deadline_stop(&c->timer);
  fy_ctx_detach(&c->attach);
  while ((sk = c->spare) != NULL) {
    c->spare = sk->next;
    fyc_free(sk);
  }
  cb = c->close_cb;
  if (cb != NULL)
    cb(c, c->close_ud);
  fyc_free(c);
}

/* Shutdown, in curl's order: every transfer out of the multi (their
 * attempts report UV_ECANCELED), curl_multi_cleanup() (which may still
 * call the socket callback), the timer, and the polls that are left. */
static void teardown(fy_curl_t *c) {
  fy_curl_req_t *req;
  c->closing = 1;
  while ((req = c->head) != NULL) {
    remove_now(c, req);
    report(c, req, UV_ECANCELED);
  }
  c->tearing = 1;
  fy_deadline_stop(&c->defer);
  fy_deadline_stop(&c->timer);
  c->in_curl++;
  curl_multi_cleanup(c->multi);
  c->in_curl--;
  c->multi = NULL;
  fy_deadline_stop(&c->timer);
  while (c->socks != NULL)
    sock_close(c, c->socks);
}

/* The adapter is attached to its context (ctx.h, "Attachments").  When
 * the context starts closing, before any pipeline or policy is told, every
 * transfer is removed (its attempt reports UV_ECANCELED) and curl is shut
 * down; once the context has finished, an adapter its user never closed is
 * freed as soon as its last poll handle has closed. */
static void curl_ctx_closing(fy_attachment_t *a) {
  fy_curl_t *c = fy_container_of(a, fy_curl_t, attach);
  if (!c->tearing)
    teardown(c);
  maybe_free(c);
}

static void curl_ctx_gone(fy_attachment_t *a) {
  fy_curl_t *c = fy_container_of(a, fy_curl_t, attach);
  c->ctx_gone = 1;
  maybe_free(c);
}

/* fy_curl_close()'s work, from the loop. */
static void on_defer(fy_deadline_t *d) {
  fy_curl_t *c = fy_container_of(d, fy_curl_t, defer);
  if (!c->tearing)
    teardown(c);
  maybe_free(c);
}

void fy_curl_opts_init(fy_curl_opts_t *opts) {
  if (opts == NULL)
    return;
  memset(opts, 0, sizeof(*opts));
  opts->max_body_bytes = FY_CURL_BODY_DEFAULT;
  opts->max_header_bytes = FY_CURL_HEADERS_DEFAULT;
  opts->max_retry_after_ms = FY_CURL_RETRY_AFTER_MAX;
}

static int validate(const fy_curl_opts_t *o) {
  if (o->max_body_bytes > FY_CURL_BODY_MAX ||
      o->max_header_bytes > FY_CURL_HEADERS_MAX ||
      o->max_retry_after_ms > FY_CURL_RETRY_AFTER_MAX ||
      o->max_host_connections < 0 ||
      o->max_host_connections > FY_CURL_CONNECTIONS_MAX ||
      o->max_total_connections < 0 ||
      o->max_total_connections > FY_CURL_CONNECTIONS_MAX)
    return UV_EINVAL;
  return 0;
}

/* curl_global_init() is not thread-safe in every curl: it runs once, on the
 * first adapter, and is never undone (curl_global_cleanup() would break
 * other users of curl in the process). */
static int global_init(void) {
  static int done;
  if (done)
    return 0;
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
    return UV_ENOMEM;
  done = 1;
  return 0;
}

static int setup_multi(fy_curl_t *c, const fy_curl_opts_t *o) {
  CURLM *m = c->multi;
  if (curl_multi_setopt(m, CURLMOPT_SOCKETFUNCTION, on_socket) ||
      curl_multi_setopt(m, CURLMOPT_SOCKETDATA, c) ||
      curl_multi_setopt(m, CURLMOPT_TIMERFUNCTION, on_timer_fn) ||
      curl_multi_setopt(m, CURLMOPT_TIMERDATA, c) ||
      curl_multi_setopt(m, CURLMOPT_MAX_HOST_CONNECTIONS,
                        o->max_host_connections) ||
      curl_multi_setopt(m, CURLMOPT_MAX_TOTAL_CONNECTIONS,
                        o->max_total_connections))
    return UV_EINVAL;
  return 0;
}

int fy_curl_new(fy_ctx_t *ctx, const fy_curl_opts_t *opts, fy_curl_t **out) {
  fy_curl_opts_t defaults;
  fy_curl_t *c;
  int rc;

  if (out == NULL)
    return UV_EINVAL;
  *out = NULL;
  if (ctx == NULL)
    return UV_EINVAL;
  if (opts == NULL) {
    fy_curl_opts_init(&defaults);
    opts = &defaults;
  }
  if ((rc = validate(opts)) != 0)
    return rc;
  if ((rc = global_init()) != 0)
    return rc;
  c = fyc_calloc(1, sizeof(*c));
  if (c == NULL)
    return UV_ENOMEM;
  c->ctx = ctx;
  c->loop = fy_ctx_loop(ctx);
  c->max_body = opts->max_body_bytes;
  c->max_headers = opts->max_header_bytes;
  c->max_retry_after = opts->max_retry_after_ms;
  if (opts->classes != NULL)
    c->cls = *opts->classes;
  else
    fy_curl_class_init(&c->cls);
  fy_deadline_init(ctx, &c->timer, on_timer);
  fy_deadline_init(ctx, &c->defer, on_defer);
  c->multi = curl_multi_init();
  if (c->multi == NULL) {
    fyc_free(c);
    return UV_ENOMEM;
  }
  rc = setup_multi(c, opts);
  if (rc == 0)
    rc = fy_ctx_attach(ctx, &c->attach, curl_ctx_closing, curl_ctx_gone);
  if (rc != 0) {
    curl_multi_cleanup(c->multi);
    fyc_free(c);
    return rc;
  }
  *out = c;
  return 0;
}

int fy_curl_close(fy_curl_t *c, fy_close_cb cb, void *user_data) {
  if (c == NULL)
    return 0;
  if (c->close_requested)
    return FY_ECLOSED;
  c->close_requested = 1;
  c->closing = 1;
  c->close_cb = cb;
  c->close_ud = user_data;
  /* The teardown runs from a deadline due now, on a fresh stack (or from
   * the context's close, whichever comes first).  The start fails only
   * once the context is final; then the teardown is done and the last
   * poll handle to close, or the context's end, frees the adapter. */
  (void)fy_deadline_start(&c->defer, 0);
  return 0;
}

fy_ctx_t *fy_curl_ctx(const fy_curl_t *c) { return c->ctx; }
CURLM *fy_curl_multi(fy_curl_t *c) { return c->multi; }

void fy_curl_stats(const fy_curl_t *c, fy_curl_stats_t *out) {
  const sock_t *sk;
  if (out == NULL)
    return;
  *out = c->stats;
  out->transfers = c->transfers;
  out->sockets = 0; /* c->nsocks counts the closing ones too */
  out->polling = 0;
  for (sk = c->socks; sk != NULL; sk = sk->next) {
    out->sockets++;
    if (uv_is_active((const uv_handle_t *)&sk->poll) && !sk->idle)
      out->polling++;
  }
}

/* ---- requests ---------------------------------------------------------- */

/* Every connection one of our attempts opens closes through our close
 * callback (a connection keeps the callback of the handle that opened it),
 * which the kept polls rely on: set on every attempt, in case the caller
 * changed it. */
static int set_socket_hooks(fy_curl_req_t *req) {
  CURL *e = req->easy;
  return curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, on_close_socket) ||
         curl_easy_setopt(e, CURLOPT_CLOSESOCKETDATA, NULL);
}

static int setup_easy(fy_curl_req_t *req) {
  CURL *e = req->easy;
  if (curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)req) ||
      curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write) ||
      curl_easy_setopt(e, CURLOPT_WRITEDATA, req) ||
      curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header) ||
      curl_easy_setopt(e, CURLOPT_HEADERDATA, req) ||
      curl_easy_setopt(e, CURLOPT_ERRORBUFFER, req->errbuf) ||
      curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) ||
      set_socket_hooks(req))
    return UV_EINVAL;
  return 0;
}

static int req_bind(fy_curl_t *c, fy_curl_req_t *req, CURL *easy,
                    unsigned flags) {
  int rc;
  memset(req, 0, sizeof(*req));
  req->owner_ = c;
  req->easy = easy;
  req->flags_ = flags;
  req->max_body_ = c->max_body;
  req->max_headers_ = c->max_headers;
  rc = setup_easy(req);
  if (rc != 0) {
    if (flags & RQ_OWN_EASY)
      curl_easy_cleanup(easy);
    memset(req, 0, sizeof(*req));
  }
  return rc;
}

int fy_curl_req_init(fy_curl_t *c, fy_curl_req_t *req) {
  CURL *easy;
  if (c == NULL || req == NULL)
    return UV_EINVAL;
  easy = curl_easy_init();
  if (easy == NULL)
    return UV_ENOMEM;
  return req_bind(c, req, easy, RQ_OWN_EASY);
}

int fy_curl_req_init_easy(fy_curl_t *c, fy_curl_req_t *req, CURL *easy) {
  if (c == NULL || req == NULL || easy == NULL)
    return UV_EINVAL;
  return req_bind(c, req, easy, 0);
}

int fy_curl_req_cleanup(fy_curl_req_t *req) {
  if (req == NULL || req->easy == NULL)
    return UV_EINVAL;
  if (fy_call_is_active(&req->call))
    return UV_EBUSY;
  if (req->attempt_ != NULL) {
    /* An abandoned attempt still in flight: it ends here. */
    fy_curl_t *c = req->owner_;
    if (c->in_curl > 0)
      return UV_EBUSY;
    remove_now(c, req);
    report(c, req, UV_ECANCELED);
  }
  if (req->flags_ & RQ_OWN_EASY)
    curl_easy_cleanup(req->easy);
  else
    curl_easy_reset(req->easy); /* our options point into |req| */
  curl_slist_free_all(req->hdrs_);
  fyc_free(req->body_);
  buf_free(&req->body);
  buf_free(&req->headers);
  req->easy = NULL;
  req->hdrs_ = NULL;
  req->body_ = NULL;
  req->owner_ = NULL;
  req->flags_ = 0;
  return 0;
}

/* Append "scheme://host:port" to the key, lowercased. */
static int build_key(char *key, const char *scheme, const char *host,
                     const char *port) {
  size_t i, n;
  int len;
  if (strcmp(port, "0") == 0)
    return UV_EINVAL; /* curl's parser takes port 0, which names no host */
  len = snprintf(key, FY_CURL_HOST_MAX + 1, "%s://%s:%s", scheme, host, port);
  if (len < 0 || (size_t)len > FY_CURL_HOST_MAX)
    return UV_EINVAL;
  n = (size_t)len;
  for (i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)key[i];
    if (ch <= 0x20 || ch >= 0x7f)
      return UV_EINVAL; /* keys are logged: printable ASCII only */
    key[i] = (char)lower(ch);
  }
  return 0;
}

static int url_error(CURLUcode uc) {
  return uc == CURLUE_OUT_OF_MEMORY ? UV_ENOMEM : UV_EINVAL;
}

static int parse_key(const char *url, char *key) {
  char *scheme = NULL, *host = NULL, *port = NULL;
  CURLU *u = curl_url();
  CURLUcode uc;
  int rc;

  if (u == NULL)
    return UV_ENOMEM;
  uc = curl_url_set(u, CURLUPART_URL, url, 0);
  if (uc == CURLUE_OK)
    uc = curl_url_get(u, CURLUPART_SCHEME, &scheme, 0);
  if (uc == CURLUE_OK)
    uc = curl_url_get(u, CURLUPART_HOST, &host, 0);
  if (uc == CURLUE_OK)
    uc = curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT);
  rc = uc == CURLUE_OK ? build_key(key, scheme, host, port) : url_error(uc);
  curl_free(scheme);
  curl_free(host);
  curl_free(port);
  curl_url_cleanup(u);
  return rc;
}

int fy_curl_req_set_url(fy_curl_req_t *req, const char *url) {
  char key[FY_CURL_HOST_MAX + 1];
  CURLcode cc;
  int rc;
  if (req == NULL || req->easy == NULL || url == NULL)
    return UV_EINVAL;
  if (fy_call_is_active(&req->call))
    return UV_EBUSY;
  rc = parse_key(url, key);
  if (rc != 0)
    return rc;
  cc = curl_easy_setopt(req->easy, CURLOPT_URL, url);
  if (cc != CURLE_OK) {
    /* curl frees its old copy before it copies: no URL is left. */
    req->host_[0] = '\0';
    req->flags_ &= ~(unsigned)RQ_URL;
    return cc == CURLE_OUT_OF_MEMORY ? UV_ENOMEM : UV_EINVAL;
  }
  memcpy(req->host_, key, sizeof(key));
  req->host_hash_ = fy_curl__key_hash(req->host_);
  req->flags_ |= RQ_URL;
  return 0;
}

/* RFC 9110 token characters. */
static int is_tchar(int ch) {
  if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
      (ch >= '0' && ch <= '9'))
    return 1;
  return ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

int fy_curl_req_set_method(fy_curl_req_t *req, const char *method) {
  size_t i, n;
  if (req == NULL || req->easy == NULL)
    return UV_EINVAL;
  if (fy_call_is_active(&req->call))
    return UV_EBUSY;
  if (method == NULL) {
    req->method_[0] = '\0';
    req->flags_ |= RQ_DIRTY;
    return 0;
  }
  n = strlen(method);
  if (n == 0 || n > FY_CURL_METHOD_MAX)
    return UV_EINVAL;
  for (i = 0; i < n; i++)
    if (!is_tchar((unsigned char)method[i]))
      return UV_EINVAL;
  memcpy(req->method_, method, n + 1);
  req->flags_ |= RQ_DIRTY;
  return 0;
}

/* curl sends "Expect: 100-continue" before a large body and then waits for
 * the server for up to a second; a client with its own timeouts sends the
 * body at once instead. */
static int add_expect(fy_curl_req_t *req) {
  struct curl_slist *l;
  if (req->flags_ & RQ_EXPECT)
    return 0;
  l = curl_slist_append(req->hdrs_, "Expect:");
  if (l == NULL)
    return UV_ENOMEM;
  req->hdrs_ = l;
  req->flags_ |= RQ_EXPECT;
  return 0;
}

int fy_curl_req_set_body(fy_curl_req_t *req, const void *data, size_t len) {
  char *copy = NULL;
  int rc;
  if (req == NULL || req->easy == NULL || (data == NULL && len > 0))
    return UV_EINVAL;
  if (fy_call_is_active(&req->call))
    return UV_EBUSY;
  if (len > (size_t)INT64_MAX)
    return UV_EINVAL;
  if (data != NULL) {
    rc = add_expect(req);
    if (rc != 0)
      return rc;
    copy = fyc_calloc(1, len + 1); /* +1: a zero-length body is a body */
    if (copy == NULL)
      return UV_ENOMEM;
    memcpy(copy, data, len);
  }
  fyc_free(req->body_);
  req->body_ = copy;
  req->body_len_ = len;
  if (data != NULL)
    req->flags_ |= RQ_BODY;
  else
    req->flags_ &= ~(unsigned)RQ_BODY;
  req->flags_ |= RQ_DIRTY;
  return 0;
}

int fy_curl_req_add_header(fy_curl_req_t *req, const char *line) {
  struct curl_slist *l;
  if (req == NULL || req->easy == NULL || line == NULL || line[0] == '\0' ||
      strpbrk(line, "\r\n") != NULL)
    return UV_EINVAL;
  if (fy_call_is_active(&req->call))
    return UV_EBUSY;
  l = curl_slist_append(req->hdrs_, line);
  if (l == NULL)
    return UV_ENOMEM;
  req->hdrs_ = l;
  req->flags_ |= RQ_DIRTY;
  return 0;
}

void fy_curl_req_clear_headers(fy_curl_req_t *req) {
  if (req == NULL || fy_call_is_active(&req->call))
    return;
  curl_slist_free_all(req->hdrs_);
  req->hdrs_ = NULL;
  req->flags_ &= ~(unsigned)RQ_EXPECT;
  req->flags_ |= RQ_DIRTY;
  if (req->flags_ & RQ_BODY)
    (void)add_expect(req); /* best effort: only saves a round trip */
}

void fy_curl_req_set_idempotent(fy_curl_req_t *req, int yes) {
  if (req == NULL)
    return;
  if (yes)
    req->flags_ |= RQ_IDEMPOTENT;
  else
    req->flags_ &= ~(unsigned)RQ_IDEMPOTENT;
}

int fy_curl_req_set_limits(fy_curl_req_t *req, size_t max_body_bytes,
                           size_t max_header_bytes) {
  if (req == NULL || max_body_bytes > FY_CURL_BODY_MAX ||
      max_header_bytes > FY_CURL_HEADERS_MAX)
    return UV_EINVAL;
  if (fy_call_is_active(&req->call))
    return UV_EBUSY;
  req->max_body_ = max_body_bytes;
  req->max_headers_ = max_header_bytes;
  return 0;
}

const char *fy_curl_req_host(const fy_curl_req_t *req) {
  return req != NULL ? req->host_ : "";
}

const char *fy_curl_req_header(const fy_curl_req_t *req, const char *name,
                               size_t *len) {
  const char *p, *end, *eol, *v, *found = NULL;
  size_t n, flen = 0;
  if (len != NULL)
    *len = 0;
  if (req == NULL || name == NULL || req->headers.data == NULL)
    return NULL;
  n = strlen(name);
  p = req->headers.data;
  end = p + req->headers.len;
  for (; p < end; p = eol + 1) {
    size_t i;
    eol = memchr(p, '\n', (size_t)(end - p));
    if (eol == NULL)
      eol = end;
    if ((size_t)(eol - p) <= n || p[n] != ':')
      continue;
    for (i = 0; i < n; i++)
      if (lower((unsigned char)p[i]) != lower((unsigned char)name[i]))
        break;
    if (i < n)
      continue;
    v = p + n + 1;
    while (v < eol && (*v == ' ' || *v == '\t'))
      v++;
    flen = (size_t)(eol - v);
    while (flen > 0 && (v[flen - 1] == '\r' || v[flen - 1] == ' ' ||
                        v[flen - 1] == '\t'))
      flen--;
    found = v;
  }
  if (found != NULL && len != NULL)
    *len = flen;
  return found;
}

static int method_is(const fy_curl_req_t *req, const char *m) {
  return strcmp(req->method_, m) == 0;
}

/* RFC 9110 §9.2.2. */
static int idempotent(const fy_curl_req_t *req) {
  if (req->flags_ & RQ_IDEMPOTENT)
    return 1;
  if (req->method_[0] == '\0')
    return !(req->flags_ & RQ_BODY); /* GET, or POST for a body */
  return method_is(req, "GET") || method_is(req, "HEAD") ||
         method_is(req, "PUT") || method_is(req, "DELETE") ||
         method_is(req, "OPTIONS") || method_is(req, "TRACE");
}

/* Method, body and headers go to the easy handle once per change, not per
 * call: a CUSTOMREQUEST copies its string. */
static int apply(fy_curl_req_t *req) {
  static char empty[1];
  CURL *e = req->easy;
  const char *m = req->method_;
  int body = (req->flags_ & RQ_BODY) != 0;
  CURLcode cc = CURLE_OK;

  /* Back to a plain GET first: POSTFIELDS, even NULL, switches to POST. */
  curl_easy_setopt(e, CURLOPT_POSTFIELDS, (char *)NULL);
  curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)-1);
  curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, (char *)NULL);
  curl_easy_setopt(e, CURLOPT_NOBODY, 0L);
  curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
  if (m[0] == '\0')
    m = body ? "POST" : "GET";
  if (strcmp(m, "HEAD") == 0) {
    cc = curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
  } else if (body || strcmp(m, "POST") == 0) {
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
                     (curl_off_t)req->body_len_);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS,
                     req->body_ != NULL ? req->body_ : empty);
    if (strcmp(m, "POST") != 0)
      cc = curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, m);
  } else if (strcmp(m, "GET") != 0) {
    cc = curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, m);
  }
  if (cc == CURLE_OK)
    cc = curl_easy_setopt(e, CURLOPT_HTTPHEADER, req->hdrs_);
  if (cc != CURLE_OK)
    return cc == CURLE_OUT_OF_MEMORY ? UV_ENOMEM : UV_EINVAL;
  req->flags_ &= ~(unsigned)RQ_DIRTY;
  return 0;
}

int fy_curl_start_opts(fy_curl_req_t *req, fy_pipeline_t *pl,
                       const fy_call_opts_t *opts, fy_call_cb cb) {
  fy_call_opts_t o;
  fy_curl_t *c;
  int rc;

  if (req == NULL || req->owner_ == NULL || pl == NULL || cb == NULL ||
      !(req->flags_ & RQ_URL))
    return UV_EINVAL;
  c = req->owner_;
  if (fy_pipeline_ctx(pl) != c->ctx)
    return UV_EINVAL;
  if (c->closing)
    return FY_ECLOSED;
  if (fy_call_is_active(&req->call))
    return UV_EBUSY;
  if (req->attempt_ != NULL) {
    if (c->in_curl > 0)
      return UV_EBUSY;
    remove_now(c, req); /* the previous call's abandoned attempt */
    report(c, req, UV_ECANCELED);
  }
  if (req->flags_ & RQ_DIRTY) {
    rc = apply(req);
    if (rc != 0)
      return rc;
  }
  curl_easy_setopt(req->easy, CURLOPT_MAXFILESIZE_LARGE,
                   (curl_off_t)req->max_body_);
  if (opts != NULL)
    o = *opts;
  else
    memset(&o, 0, sizeof(o));
  if (idempotent(req))
    o.flags |= FY_CALL_IDEMPOTENT;
  reset_response(req);
  req->status = 0;
  req->attempts = 0;
  req->connects = 0;
  return fy_call_start_opts(&req->call, pl, &fy_curl__op, req, &o, cb);
}

int fy_curl_start(fy_curl_req_t *req, fy_pipeline_t *pl, fy_call_cb cb) {
  return fy_curl_start_opts(req, pl, NULL, cb);
}
