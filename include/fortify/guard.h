/* Copyright (c) 2026 the fortify authors. MIT licensed. */
#ifndef FORTIFY_GUARD_H
#define FORTIFY_GUARD_H

#include "fortify/breaker.h"
#include "fortify/limiter.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------
 * Server admission guard: what a libuv server puts in front of its request
 * handlers.  A guard is a pipeline of
 *
 *   limiter (per client key) -> bulkhead (requests at once) ->
 *   breaker (over the handler's own failures) -> timeout (handler deadline)
 *
 * each part optional, and a mapping from what that pipeline decided to an
 * HTTP answer.  The server runs each request's handler as the operation of
 * a call through fy_guard_pipeline(), with the client's key in the call's
 * options (fy_guard_start() does both):
 *
 * - a client over its rate is refused at once: 429 with Retry-After;
 * - a server at its concurrency limit, or whose handlers keep failing (the
 *   breaker is open), is refused at once: 503 with Retry-After;
 * - a handler that overruns its deadline is cancelled (the operation's
 *   cancel hook runs: stop the work) and answered 504;
 * - otherwise the handler answers; a 5xx it reports counts as a failure of
 *   the breaker (report FY_EHTTP_STATUS(code) as the attempt's status).
 *
 * fy_guard_answer() turns a refusal or an outcome into the status, the
 * Retry-After value in whole seconds (rounded up) and a short reason
 * phrase that says nothing about the server's internals.  See
 * docs/guard.md and examples/guard_server.c.
 * ------------------------------------------------------------------------- */
typedef struct fy_guard_s fy_guard_t;

typedef struct fy_guard_opts_s {
  /* Per-client rate limit; NULL: none.  Its |key| function and |wait| are
   * ignored: the key is the one given to fy_guard_start(), and a client
   * over its rate is refused, never kept waiting. */
  const fy_limiter_opts_t *limit;
  /* Requests handled at once; beyond it a request is refused with 503.
   * 0: no limit. */
  uint32_t max_concurrent;
  /* The handler's deadline in ms; an overrun is answered 504 and the
   * handler cancelled.  0: none. */
  uint64_t handler_timeout_ms;
  /* A breaker over the handler's outcomes (5xx, errors, overruns are
   * failures); NULL: none. */
  const fy_breaker_opts_t *breaker;
  /* Retry-After sent with a 503 for overload (no breaker hint), in
   * seconds; 0: 1. */
  uint32_t overload_retry_after_s;
  const char *name; /* optional, copied; names the guard's policies */
} fy_guard_opts_t;

FY_EXTERN void fy_guard_opts_init(fy_guard_opts_t *opts);

/* 0, or UV_EINVAL when |opts| is NULL or one of its parts is refused by
 * that part's own check (fy_limiter_opts_check, fy_breaker_opts_check, the
 * timeout's bounds). */
FY_EXTERN int fy_guard_opts_check(const fy_guard_opts_t *opts);

/* Create a guard and its policies.  0, UV_EINVAL, UV_ENOMEM or FY_ECLOSED.
 * CONSTRUCTOR. */
FY_EXTERN int fy_guard_new(fy_ctx_t *ctx, const fy_guard_opts_t *opts,
                           fy_guard_t **out);

/* Close the guard's pipeline and policies; calls in flight complete with
 * UV_ECANCELED first; then |cb| runs with |g|.  DESTRUCTOR. */
FY_EXTERN int fy_guard_close(fy_guard_t *g, fy_close_cb cb, void *user_data);

/* The pipeline requests run through. */
FY_EXTERN fy_pipeline_t *fy_guard_pipeline(fy_guard_t *g);

/* The guard's limiter (NULL when it has none): for fy_limiter_stats(). */
FY_EXTERN fy_limiter_t *fy_guard_limiter(fy_guard_t *g);

/* Start the handler |op| for a request of client |key| (|len| bytes) as a
 * call through the guard: fy_call_start_opts() with the key in the
 * options.  The key must stay valid until the call completes.  Returns 0
 * (|cb| runs once) or the refusal: give it to fy_guard_answer(). */
FY_EXTERN int fy_guard_start(fy_guard_t *g, fy_call_t *call, const char *key,
                             size_t len, const fy_op_t *op, void *arg,
                             fy_call_cb cb);

/* The answer to send for a request whose call through the guard was
 * refused or completed with |status|. */
typedef struct fy_guard_answer_s {
  int http_status;         /* 400, 429, 500, 503, 504; 0: the handler's
                              own answer stands (status 0 or FY_EHTTP_*) */
  uint64_t retry_after_s;  /* Retry-After in whole seconds; 0: no header */
  const char *reason;      /* the status's reason phrase ("Too Many
                              Requests", ...); NULL when http_status is 0 */
} fy_guard_answer_t;

FY_EXTERN void fy_guard_answer(const fy_guard_t *g, const fy_call_t *call,
                               int status, fy_guard_answer_t *out);

/* ---- client keys ---------------------------------------------------------
 * The key of a client from its address: the numeric form of the IP, with
 * an IPv6 zone ("%eth0") left out and an IPv4-mapped IPv6 address
 * (::ffff:192.0.2.1) written as IPv4, so that one client has one key.
 * Returns the key's length, or 0 when |addr| is neither IPv4 nor IPv6 or
 * |out| is too small (FY_GUARD_KEY_MAX is enough). */
#define FY_GUARD_KEY_MAX 48
FY_EXTERN size_t fy_guard_addr_key(const struct sockaddr *addr, char *out,
                                   size_t out_size);

/* The client's key behind trusted proxies: |peer| is the connection's
 * address; |xff| (|len| bytes, may be NULL) the value of the request's
 * X-Forwarded-For header.  When |peer| is one of the |ntrusted| trusted
 * proxy addresses (numeric IPs, as fy_guard_addr_key() writes them), the
 * key is the right-most address of |xff| that is not itself trusted,
 * normalised the same way; else, or when |xff| has no valid address there,
 * it is |peer|'s key.  With no trusted proxy (the default a server should
 * keep unless it runs behind one) the header is never read: a client could
 * write anything in it. */
FY_EXTERN size_t fy_guard_forwarded_key(const struct sockaddr *peer,
                                        const char *xff, size_t len,
                                        const char *const *trusted,
                                        size_t ntrusted, char *out,
                                        size_t out_size);

/* A server may key clients by a request header instead (an API key, a
 * tenant id).  fy_guard_header_name_valid(): 1 when |name| is a header
 * name a server may be configured with: 1..64 bytes of an HTTP token
 * (letters, digits, !#$%&'*+-.^_`|~).  fy_guard_header_key(): the key
 * from that header's value (|len| bytes): spaces and tabs around it left
 * out; 0 when nothing is left, when it holds a control byte, or when it
 * is longer than out_size - 1 (never cut: two clients must not share a
 * key by accident). */
FY_EXTERN int fy_guard_header_name_valid(const char *name);
FY_EXTERN size_t fy_guard_header_key(const char *value, size_t len,
                                     char *out, size_t out_size);

#ifdef __cplusplus
}
#endif
#endif /* FORTIFY_GUARD_H */
