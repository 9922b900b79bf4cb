/* Copyright (c) 2026 the fortify authors. MIT licensed. */
#ifndef FORTIFY_CURL_H
#define FORTIFY_CURL_H

/* The libcurl adapter.  Not included by <fortify.h>: it needs <curl/curl.h>.
 * Link with fortify::curl (CMake) or `pkg-config fortify-curl`.
 * docs/curl.md describes every option, the classification rules and the
 * status mapping. */
#include <curl/curl.h>

#include "fortify.h"
#include "fortify/limiter.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------
 * Status codes.
 *
 * An attempt reports 0 for a 2xx or 3xx response (more precisely: for a
 * code without FY_CURL_CLASS_ERROR), FY_CURL_EHTTP(code) for an HTTP error,
 * or a UV_E* code for a transport failure (docs/curl.md has the table).
 * HTTP errors live in their own block, [-6999, -6100], below the library's
 * reserved block, so that classifiers, which see only the status, can tell
 * a 503 from a 404.  It is the core's block (FY_EHTTP_STATUS() in
 * fortify/errno.h): fy_err_name() and fy_strerror() name these statuses.
 * ------------------------------------------------------------------------- */
#define FY_CURL_EHTTP_BASE FY__EHTTP_BASE
#define FY_CURL_EHTTP(code) FY_EHTTP_STATUS(code)

/* The HTTP code carried by |status|, or 0 when it is not an HTTP error. */
FY_EXTERN int fy_curl_http_code(int status);

/* The status for a finished transfer's CURLcode (CURLE_OK gives 0). */
FY_EXTERN int fy_curl_status(CURLcode code);

/* The same as fy_err_name_r() / fy_strerror_r(): "FY_EHTTP_503" /
 * "HTTP status 503" for an HTTP status, the core's name and message for
 * any other code. */
FY_EXTERN char *fy_curl_err_name_r(int status, char *buf, size_t len);
FY_EXTERN char *fy_curl_strerror_r(int status, char *buf, size_t len);

/* ---------------------------------------------------------------------------
 * Classification of HTTP codes: one byte of flags per code.
 * ------------------------------------------------------------------------- */
enum {
  FY_CURL_CLASS_ERROR = 1u << 0,         /* the attempt fails with
                                            FY_CURL_EHTTP(code) */
  FY_CURL_CLASS_RETRY = 1u << 1,         /* fy_curl_retry_classify: retry */
  FY_CURL_CLASS_BREAKER_FAIL = 1u << 2,  /* breaker: a failure */
  FY_CURL_CLASS_BREAKER_IGNORE = 1u << 3 /* breaker: neither (wins over
                                            BREAKER_FAIL) */
};

#define FY_CURL_HTTP_CODE_MAX 999

typedef struct fy_curl_class_s {
  uint8_t http[FY_CURL_HTTP_CODE_MAX + 1]; /* FY_CURL_CLASS_* by code */
} fy_curl_class_t;

/* The defaults: 400-999 are errors; 408, 429, 502, 503, 504 are retried;
 * 500-999 are breaker failures; 408 and 429 count as neither for the
 * breaker; every other code is a breaker success. */
FY_EXTERN void fy_curl_class_init(fy_curl_class_t *cls);
/* Set the flags of |code| (100..999).  Returns 0 or UV_EINVAL. */
FY_EXTERN int fy_curl_class_set(fy_curl_class_t *cls, int code,
                                unsigned flags);

/* A fy_retry_classify_fn.  |cls| is a fy_curl_class_t (NULL: the defaults).
 * HTTP errors: 1 for codes with FY_CURL_CLASS_RETRY, else 0.  Transport:
 * 1 for connection refused, reset, timeout, DNS failure, premature end,
 * malformed reply; 0 for oversized responses, bad URLs, unsupported
 * protocols, TLS verification failures and UV_ENOMEM; -1 (the retry
 * policy's own rules) for the rest. */
FY_EXTERN int fy_curl_retry_classify(int status, void *cls);

/* A fy_classify_fn for breakers.  0 is a success, UV_ECANCELED and the
 * library's refusals are ignored, HTTP errors follow their flags,
 * UV_EMSGSIZE / UV_EINVAL / UV_ENOMEM (our side's problems) are ignored,
 * every other failure counts. */
FY_EXTERN fy_outcome_t fy_curl_breaker_classify(int status, void *cls);

/* ---------------------------------------------------------------------------
 * The adapter: one CURLM driven from the context's loop.
 * ------------------------------------------------------------------------- */
typedef struct fy_curl_s fy_curl_t;

#define FY_CURL_BODY_DEFAULT ((size_t)8 << 20)    /* 8 MiB */
#define FY_CURL_BODY_MAX ((size_t)1 << 30)        /* 1 GiB */
#define FY_CURL_HEADERS_DEFAULT ((size_t)64 << 10) /* 64 KiB */
/* Below libcurl's own cap on a response's header section (300 KiB since
 * 7.84), which it reports as a receive error: past this one the attempt
 * fails with UV_EMSGSIZE, stored or not, so an oversized header section is
 * never mistaken for a broken connection (and retried). */
#define FY_CURL_HEADERS_MAX ((size_t)256 << 10)   /* 256 KiB */
#define FY_CURL_RETRY_AFTER_MAX ((uint64_t)24 * 60 * 60 * 1000) /* 24 h */
#define FY_CURL_CONNECTIONS_MAX 1000000L

typedef struct fy_curl_opts_s {
  /* Response body kept per request: 0 = not stored; else at most this many
   * bytes, [1, FY_CURL_BODY_MAX]; a larger body fails the attempt with
   * UV_EMSGSIZE.  Default FY_CURL_BODY_DEFAULT.  Per request:
   * fy_curl_req_set_limits(). */
  size_t max_body_bytes;
  /* Response headers kept per request (the last response's raw lines):
   * 0 = not stored; else [1, FY_CURL_HEADERS_MAX]; more fails the attempt
   * with UV_EMSGSIZE.  Default FY_CURL_HEADERS_DEFAULT. */
  size_t max_header_bytes;
  /* Largest Retry-After honoured, ms: [0, FY_CURL_RETRY_AFTER_MAX]; a
   * larger one is lowered to it; 0 ignores Retry-After.  Default
   * FY_CURL_RETRY_AFTER_MAX: the retry policy's own max_retry_after_ms
   * decides whether to wait or to give up. */
  uint64_t max_retry_after_ms;
  /* CURLMOPT_MAX_HOST_CONNECTIONS / CURLMOPT_MAX_TOTAL_CONNECTIONS:
   * [0, FY_CURL_CONNECTIONS_MAX], 0 = no limit (default).  Transfers over
   * the limit wait inside curl for a connection. */
  long max_host_connections;
  long max_total_connections;
  /* Which HTTP codes fail an attempt (FY_CURL_CLASS_ERROR); copied.
   * NULL: fy_curl_class_init()'s. */
  const fy_curl_class_t *classes;
} fy_curl_opts_t;

FY_EXTERN void fy_curl_opts_init(fy_curl_opts_t *opts);

/* Create the adapter on |ctx|'s loop.  Use a real-clock context: with a
 * manual clock curl's timeouts fire only when fy_ctx_advance() moves time.
 * Calls curl_global_init() on the first use in the process (do it yourself
 * first if other threads use curl).  Returns 0, UV_EINVAL (an option out of
 * range; nothing is created), UV_ENOMEM or FY_ECLOSED.  CONSTRUCTOR. */
FY_EXTERN int fy_curl_new(fy_ctx_t *ctx, const fy_curl_opts_t *opts,
                          fy_curl_t **out);

/* Close asynchronously.  New transfers are refused at once with FY_ECLOSED;
 * on a later turn of the loop (a deadline due at once: with a manual clock,
 * the next fy_ctx_advance()) every transfer still in flight is removed
 * and its attempt reports UV_ECANCELED, curl_multi_cleanup() runs, and once
 * the last socket's poll handle has closed |cb| runs and the memory is
 * gone.  Legal from inside any callback, curl's included.  The adapter is
 * attached to its context (ctx.h, "Attachments"): when the context starts
 * closing, before any pipeline or policy is, the same shutdown runs; an
 * adapter never closed is freed once the context has finished and its last
 * poll has closed (do not call this afterwards).  Returns 0, or FY_ECLOSED
 * when already closing.  NULL is a no-op.  DESTRUCTOR. */
FY_EXTERN int fy_curl_close(fy_curl_t *curl, fy_close_cb cb,
                            void *user_data);

FY_EXTERN fy_ctx_t *fy_curl_ctx(const fy_curl_t *curl);

/* The multi handle, to set options such as CURLMOPT_PIPELINING.  Never set
 * CURLMOPT_SOCKETFUNCTION/TIMERFUNCTION or their data, never call
 * curl_multi_socket_action()/perform()/cleanup() on it. */
FY_EXTERN CURLM *fy_curl_multi(fy_curl_t *curl);

typedef struct fy_curl_stats_s {
  size_t transfers;    /* easy handles in the multi now */
  size_t sockets;      /* poll handles open now, one per socket curl uses
                          (a pooled connection's included) */
  size_t polling;      /* of these, the ones watching their socket now */
  uint64_t started;    /* attempts started */
  uint64_t completed;  /* attempts that reported, cancelled ones included */
  uint64_t cancelled;  /* attempts that reported UV_ECANCELED */
} fy_curl_stats_t;
FY_EXTERN void fy_curl_stats(const fy_curl_t *curl, fy_curl_stats_t *out);

/* ---------------------------------------------------------------------------
 * Requests: caller-allocated, like the fy_call_t they embed.
 *
 *   fy_curl_req_init(curl, &req);             -- or _init_easy()
 *   fy_curl_req_set_url(&req, "http://...");
 *   fy_curl_req_set_method(&req, "POST");     -- optional
 *   fy_curl_req_set_body(&req, data, len);    -- optional, copied
 *   fy_curl_req_add_header(&req, "X-A: b");   -- optional
 *   fy_curl_start(&req, pipeline, on_done);
 *   ... on_done(call, status): req = fy_container_of(call, fy_curl_req_t,
 *       call); read req->http_code, req->body, ...
 *   fy_curl_req_cleanup(&req);
 *
 * A request runs one call at a time and may be started again from its own
 * callback (the easy handle, and with it the connection, is reused).  Each
 * attempt re-issues the transfer with the response reset.  Only one
 * attempt of a request can be in flight: a policy that runs attempts side
 * by side (hedging) needs one request per attempt.
 * ------------------------------------------------------------------------- */

/* A growable buffer; |data| is NUL-terminated when not NULL. */
typedef struct fy_curl_buf_s {
  char *data;
  size_t len;
  size_t cap;
} fy_curl_buf_t;

#define FY_CURL_HOST_MAX 300   /* bytes of a scheme://host:port key */
#define FY_CURL_METHOD_MAX 15  /* bytes of a method token */

typedef struct fy_curl_req_s fy_curl_req_t;

struct fy_curl_req_s {
  /* public */
  fy_call_t call;          /* call.data is yours */
  /* read-only: the last attempt's response, valid in the callback */
  CURL *easy;              /* set options on it before fy_curl_start() */
  long http_code;          /* 0 when no response arrived */
  CURLcode curl_code;      /* the transfer's result */
  int status;              /* the last attempt's status */
  uint64_t retry_after_ms; /* the last attempt's Retry-After, sanitised */
  unsigned attempts;       /* attempts of the current call */
  unsigned connects;       /* new connections its attempts opened */
  fy_curl_buf_t body;      /* response body (see max_body_bytes) */
  fy_curl_buf_t headers;   /* response header lines, raw */
  char errbuf[CURL_ERROR_SIZE]; /* curl's message, "" when none */
  /* private */
  fy_curl_t *owner_;
  fy_attempt_t *attempt_;
  fy_curl_req_t *next_, *prev_;  /* transfers of the adapter */
  fy_curl_req_t *dnext_;         /* deferred work of the adapter */
  struct curl_slist *hdrs_;
  char *body_;
  size_t body_len_;
  size_t max_body_;
  size_t max_headers_;
  size_t header_bytes_;    /* this response's header section so far */
  int local_error_;
  unsigned flags_;
  char method_[FY_CURL_METHOD_MAX + 1];
  char host_[FY_CURL_HOST_MAX + 1];
  uint32_t host_hash_;      /* fy_curl__key_hash(host_) */
  int retry_after_kind_;    /* this response's Retry-After: its kind */
  int64_t retry_after_s_;   /* and value (adapters/curl/curl_int.h) */
  int header_end_;          /* the header section ended: trailers follow */
  void *reserved_[4];
};

/* Bind |req| to |curl| with a new easy handle, which the request owns.
 * Returns 0, UV_EINVAL or UV_ENOMEM (then nothing needs cleaning up). */
FY_EXTERN int fy_curl_req_init(fy_curl_t *curl, fy_curl_req_t *req);

/* The same with the caller's |easy|, which the request never frees.  The
 * adapter sets its own PRIVATE, WRITE*, HEADER*, ERRORBUFFER, NOSIGNAL,
 * POSTFIELDS, HTTPHEADER, method and TIMEOUT_MS options on it. */
FY_EXTERN int fy_curl_req_init_easy(fy_curl_t *curl, fy_curl_req_t *req,
                                    CURL *easy);

/* Free what the request owns: the easy handle (unless the caller's), the
 * buffers, the headers, the body.  UV_EBUSY (nothing done) while a call is
 * in flight.  Legal from inside the request's own callback, and after the
 * adapter closed.  Returns 0, UV_EBUSY or UV_EINVAL. */
FY_EXTERN int fy_curl_req_cleanup(fy_curl_req_t *req);

/* The URL, parsed with curl's URL API: its scheme://host:port becomes the
 * request's host key (lowercase, default port filled in).  Returns 0,
 * UV_EINVAL (not a URL with a host, port 0, or a key over
 * FY_CURL_HOST_MAX; the request keeps its URL) or UV_ENOMEM. */
FY_EXTERN int fy_curl_req_set_url(fy_curl_req_t *req, const char *url);

/* "GET" (the default, or "POST" when a body is set), "HEAD", "POST",
 * "PUT", "PATCH", "DELETE", or any other token.  NULL restores the default.
 * Returns 0 or UV_EINVAL (not a token, or longer than FY_CURL_METHOD_MAX). */
FY_EXTERN int fy_curl_req_set_method(fy_curl_req_t *req, const char *method);

/* The request body, copied: every attempt sends it again.  |len| 0 with
 * |data| NULL removes it.  Returns 0, UV_EINVAL or UV_ENOMEM. */
FY_EXTERN int fy_curl_req_set_body(fy_curl_req_t *req, const void *data,
                                   size_t len);

/* Add one "Name: value" line (copied; no CR or LF).  Returns 0, UV_EINVAL
 * or UV_ENOMEM.  fy_curl_req_clear_headers() removes them all. */
FY_EXTERN int fy_curl_req_add_header(fy_curl_req_t *req, const char *line);
FY_EXTERN void fy_curl_req_clear_headers(fy_curl_req_t *req);

/* Declare the request safe to repeat whatever its method (a POST with an
 * idempotency key, say): retry policies with require_idempotent retry it.
 * GET, HEAD, PUT, DELETE, OPTIONS and TRACE are idempotent already. */
FY_EXTERN void fy_curl_req_set_idempotent(fy_curl_req_t *req, int yes);

/* Per-request limits, as the adapter's options (same ranges).  Returns 0 or
 * UV_EINVAL. */
FY_EXTERN int fy_curl_req_set_limits(fy_curl_req_t *req,
                                     size_t max_body_bytes,
                                     size_t max_header_bytes);

/* The scheme://host:port key of the URL ("" before a URL is set). */
FY_EXTERN const char *fy_curl_req_host(const fy_curl_req_t *req);

/* The value of response header |name| (case-insensitive, the last one
 * wins), or NULL; |len| receives its length.  Needs stored headers. */
FY_EXTERN const char *fy_curl_req_header(const fy_curl_req_t *req,
                                         const char *name, size_t *len);

/* Run the request through |pipeline| (of the adapter's context), as
 * fy_call_start() with the adapter's operation; FY_CALL_IDEMPOTENT is added
 * to the call's flags for an idempotent method or a request declared so.
 * Same rules: an error means the callback never runs.  Returns 0,
 * UV_EINVAL (no URL, foreign pipeline), UV_EBUSY (in flight), FY_ECLOSED,
 * UV_ENOMEM, or a policy's refusal. */
FY_EXTERN int fy_curl_start(fy_curl_req_t *req, fy_pipeline_t *pipeline,
                            fy_call_cb cb);
FY_EXTERN int fy_curl_start_opts(fy_curl_req_t *req, fy_pipeline_t *pipeline,
                                 const fy_call_opts_t *opts, fy_call_cb cb);

/* ---------------------------------------------------------------------------
 * Per-host policies: one pipeline stage that keeps a circuit breaker per
 * scheme://host:port, created on first use from a template, in a bounded
 * table with LRU eviction, and an optional rate limit per host.
 *
 * For each call the stage asks, in this order:
 * 1. the host's rate limit (the template's |limit|, one bucket per host in
 *    one limiter of the table): over it, the call is refused at once with
 *    FY_ERATELIMITED (detail.by_kind "limiter", retry_after_ms, the host in
 *    detail.key, n[0..2] = limit, remaining, reset_ms), or, with
 *    limit->wait, waits for its tokens without holding anything else;
 * 2. the host's breaker (FY_ECIRCUITOPEN when open);
 * 3. the layer below.
 * An attempt answered 429 with a Retry-After holds its host off for the
 * hint, at most max_hold_ms: until then every call to that host is refused
 * (or waits, with limit->wait) before it reaches the server, instead of
 * each call finding out for itself.
 * ------------------------------------------------------------------------- */
typedef struct fy_curl_hosts_s fy_curl_hosts_t;

#define FY_CURL_HOSTS_DEFAULT 256u
#define FY_CURL_HOSTS_MAX 65536u
#define FY_CURL_HOLD_DEFAULT_MS ((uint64_t)60000) /* 60 s */

/* The key of |call| into |buf| (NUL-terminated, printable ASCII, shorter
 * than |len| = FY_CURL_HOST_MAX + 1).  Returns 0 or a negative code, which
 * refuses the call. */
typedef int (*fy_curl_key_fn)(fy_call_t *call, char *buf, size_t len,
                              void *user_data);

/* A host's breaker changed state (after the template's on_state_change). */
typedef void (*fy_curl_host_state_fn)(fy_curl_hosts_t *hosts,
                                      const char *host,
                                      fy_breaker_state_t from,
                                      fy_breaker_state_t to,
                                      void *user_data);

typedef struct fy_curl_hosts_opts_s {
  const char *name;           /* copied; NULL: "hosts" */
  uint32_t max_hosts;         /* [1, FY_CURL_HOSTS_MAX], default 256 */
  /* Template of every host's breaker.  Its name is replaced by
   * "<name>:<host>"; its callbacks get the template's user_data.  Default:
   * fy_breaker_opts_init() with classify = fy_curl_breaker_classify. */
  fy_breaker_opts_t breaker;
  /* NULL: the request's key (calls not started with fy_curl_start() are
   * refused with FY_EKEY). */
  fy_curl_key_fn key;
  fy_curl_host_state_fn on_state_change;
  void *user_data;            /* for key and on_state_change */
  /* Every host's rate limit, copied: algo, rate, interval_ms, burst,
   * max_tokens, cost (tokens per call), wait, max_waiters (all hosts
   * together) and max_wait_ms apply; key, user_data and name are the
   * table's own ("<name>.limit"), max_keys is max_hosts and max_key_len
   * FY_LIMIT_KEY_MAX.  NULL (default): no limit. */
  const fy_limiter_opts_t *limit;
  /* Longest hold of a host after a 429 with Retry-After, ms:
   * [0, FY_CURL_RETRY_AFTER_MAX]; a longer hint is cut to it; 0 turns the
   * holds off.  Default FY_CURL_HOLD_DEFAULT_MS.  The hint itself is
   * already capped by the adapter's max_retry_after_ms. */
  uint64_t max_hold_ms;
} fy_curl_hosts_opts_t;

FY_EXTERN void fy_curl_hosts_opts_init(fy_curl_hosts_opts_t *opts);

/* Check |opts| as fy_curl_hosts_new() does, creating nothing: 0, or
 * UV_EINVAL when |opts| is NULL, max_hosts is outside
 * [1, FY_CURL_HOSTS_MAX], max_hold_ms is over FY_CURL_RETRY_AFTER_MAX,
 * fy_breaker_opts_check() refuses the breaker template, or
 * fy_limiter_opts_check() refuses |limit| (with the table's own bounds in
 * place).  The callbacks and the name are not checked. */
FY_EXTERN int fy_curl_hosts_opts_check(const fy_curl_hosts_opts_t *opts);

/* Returns 0, UV_EINVAL (NULL ctx or out, or fy_curl_hosts_opts_check()
 * refused |opts|; nothing is created), UV_ENOMEM or FY_ECLOSED.
 * CONSTRUCTOR. */
FY_EXTERN int fy_curl_hosts_new(fy_ctx_t *ctx,
                                const fy_curl_hosts_opts_t *opts,
                                fy_curl_hosts_t **out);
FY_EXTERN fy_policy_t *fy_curl_hosts_policy(fy_curl_hosts_t *hosts);
/* Close asynchronously (fy_policy_close): calls in flight through it are
 * cancelled (calls waiting for tokens complete with UV_ECANCELED), every
 * host's breaker and the limiter are closed, then |cb| runs with |hosts|.
 * Returns 0 or FY_ECLOSED.  NULL is a no-op.  DESTRUCTOR. */
FY_EXTERN int fy_curl_hosts_close(fy_curl_hosts_t *hosts, fy_close_cb cb,
                                  void *user_data);

/* The breaker of |host| (a key as fy_curl_req_host() gives), or NULL when
 * the table has none.  Valid until the host is evicted or the policy
 * closes: do not keep it. */
FY_EXTERN fy_breaker_t *fy_curl_hosts_breaker(fy_curl_hosts_t *hosts,
                                              const char *host);

/* The limiter of the hosts' limits and holds (one key per host, the key
 * as fy_curl_req_host() gives it; a key over FY_LIMIT_KEY_MAX bytes is
 * cut and ends with "#" and 16 hex digits of a digest of the whole key),
 * or NULL when the table has none (no |limit| and max_hold_ms 0) or is
 * closing.  For fy_limiter_stats() and fy_limiter_take(); do not close it
 * or keep it. */
FY_EXTERN fy_limiter_t *fy_curl_hosts_limiter(fy_curl_hosts_t *hosts);

/* Visit every host, most recently used first.  |fn| must not start calls
 * through this policy. */
FY_EXTERN void fy_curl_hosts_foreach(fy_curl_hosts_t *hosts,
                                     void (*fn)(const char *host,
                                                fy_breaker_t *breaker,
                                                void *user_data),
                                     void *user_data);

typedef struct fy_curl_hosts_stats_s {
  size_t hosts;       /* in the table */
  size_t evicted_busy; /* evicted with calls in flight, not yet freed */
  uint64_t created;   /* hosts added since creation */
  uint64_t evicted;   /* hosts evicted */
} fy_curl_hosts_stats_t;
FY_EXTERN void fy_curl_hosts_stats(const fy_curl_hosts_t *hosts,
                                   fy_curl_hosts_stats_t *out);

/* ---------------------------------------------------------------------------
 * The default HTTP pipeline:
 *
 *   [bulkhead] -> [total timeout] -> retry -> per-host breakers
 *              -> per-try timeout -> transfer
 *
 * built from a fy_preset_opts_t (HTTP client defaults) with the per-host
 * table in place of the preset's single breaker, the adapter's classifiers,
 * and retries limited to idempotent requests.
 * ------------------------------------------------------------------------- */
typedef struct fy_curl_pipeline_s fy_curl_pipeline_t;

typedef struct fy_curl_pipeline_opts_s {
  /* fy_preset_opts_init(FY_PRESET_HTTP_CLIENT) with require_idempotent 1.
   * The breaker_* fields configure every host's breaker. */
  fy_preset_opts_t preset;
  uint32_t max_hosts;           /* default FY_CURL_HOSTS_DEFAULT */
  uint64_t first_byte_ms;       /* per try: 0 = off (default) */
  uint64_t idle_ms;             /* per try: 0 = off (default) */
  uint64_t max_retry_after_ms;  /* the retry's (default 30000) */
  /* Every host's rate limit (fy_curl_hosts_opts_t.limit); NULL: none. */
  const fy_limiter_opts_t *host_limit;
  /* fy_curl_hosts_opts_t.max_hold_ms (default FY_CURL_HOLD_DEFAULT_MS). */
  uint64_t max_hold_ms;
  const fy_curl_class_t *classes; /* copied; NULL: the defaults */
  fy_curl_host_state_fn on_state_change;
  void *user_data;
} fy_curl_pipeline_opts_t;

FY_EXTERN void fy_curl_pipeline_opts_init(fy_curl_pipeline_opts_t *opts);

/* Check |opts| as fy_curl_pipeline_new() does, creating nothing: 0, or
 * UV_EINVAL when |opts| is NULL or one of the parts it makes would refuse
 * its options: the preset's rules and ranges (fy_preset_opts_check(); the
 * breaker_* fields are checked as the per-host template), max_hosts in
 * [1, FY_CURL_HOSTS_MAX], first_byte_ms and idle_ms at most
 * FY_TIMEOUT_MAX_MS (the per-try timeout's), max_retry_after_ms at most
 * FY_RETRY_DELAY_LIMIT_MS (the retry's), host_limit and max_hold_ms as
 * fy_curl_hosts_opts_check() checks them. */
FY_EXTERN int fy_curl_pipeline_opts_check(
    const fy_curl_pipeline_opts_t *opts);

/* Returns 0, UV_EINVAL (NULL ctx or out, or fy_curl_pipeline_opts_check()
 * refused |opts|; nothing is created), UV_ENOMEM or FY_ECLOSED; on error
 * nothing usable is returned.  A bundle never closed is closed with the
 * context and freed when it has finished closing (do not call
 * fy_curl_pipeline_close() afterwards).  CONSTRUCTOR. */
FY_EXTERN int fy_curl_pipeline_new(fy_ctx_t *ctx,
                                   const fy_curl_pipeline_opts_t *opts,
                                   fy_curl_pipeline_t **out);
/* Close the pipeline and every part, as fy_preset_close() does a preset.
 * Returns 0 when every part could be closed: |cb| runs once all of them
 * have called back, then the bundle is freed.  Returns FY_ECLOSED when the
 * bundle was already closed, or when a part was already closing (the
 * context is closing, or the part was closed on its own): the parts still
 * open are closed all the same, but a close that returns an error frees
 * nothing and |cb| never runs; the context frees the bundle once it has
 * finished closing (a part may still use the bundle's classifier table
 * until then).  NULL is a no-op.  DESTRUCTOR. */
FY_EXTERN int fy_curl_pipeline_close(fy_curl_pipeline_t *p, fy_close_cb cb,
                                     void *user_data);
FY_EXTERN fy_pipeline_t *fy_curl_pipeline_get(const fy_curl_pipeline_t *p);
FY_EXTERN fy_curl_hosts_t *fy_curl_pipeline_hosts(const fy_curl_pipeline_t *p);
FY_EXTERN fy_retry_t *fy_curl_pipeline_retry(const fy_curl_pipeline_t *p);
FY_EXTERN fy_timeout_t *fy_curl_pipeline_timeout(const fy_curl_pipeline_t *p,
                                                 fy_timeout_scope_t scope);
FY_EXTERN fy_bulkhead_t *fy_curl_pipeline_bulkhead(
    const fy_curl_pipeline_t *p);

#ifdef __cplusplus
}
#endif
#endif /* FORTIFY_CURL_H */
