/* Copyright (c) 2026 the fortify authors. MIT licensed. */
#ifndef FORTIFY_LIMITER_H
#define FORTIFY_LIMITER_H

#include "fortify/ctx.h"
#include "fortify/policy.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------
 * Rate limiter: per key, at most |rate| tokens per |interval_ms|, with up
 * to |burst| taken at once.  One limiter holds the state of many keys (a
 * client address, a user id, a host) in a bounded table of its own.  See
 * docs/ratelimit.md.
 *
 * Two algorithms:
 * - FY_LIMIT_GCRA (default): smooth.  A key that was idle may take |burst|
 *   at once; after that one token comes back every interval_ms / rate.
 * - FY_LIMIT_TOKEN_BUCKET: a quota.  The bucket holds up to |burst|
 *   tokens, and |rate| whole tokens come back each time a full
 *   |interval_ms| has passed since the bucket was last full.
 *
 * Every decision is exact (integer arithmetic on the context's clock) and
 * comes with the figures a server puts in its answer (fy_limit_verdict_t):
 * the wait after which the same request succeeds, the limit, the tokens
 * remaining and the time until the bucket is full again.
 *
 * Three ways to use it:
 * - synchronously, without a pipeline: fy_limiter_take() (a server
 *   deciding on a request);
 * - asynchronously: fy_limiter_wait() completes when the tokens are
 *   there, woken by a deadline at that instant (never by polling), in
 *   arrival order per key;
 * - as a pipeline stage (fy_limiter_policy()): a call over the limit is
 *   refused at once with FY_ERATELIMITED, or, with |wait| set, waits for
 *   its tokens as fy_limiter_wait() does.
 *
 * Keys are byte strings of 0..max_key_len bytes; the empty key is one
 * bucket like any other (a limiter used without keys is one shared
 * bucket).  A longer key is refused with FY_EKEY, never let through.  When
 * the table is full, keys whose bucket is full again are dropped first
 * (that loses nothing: a missing key is a full bucket), then the least
 * recently used key, so a flood of new keys cannot lock out a key in use.
 * Keys are shown sanitised (fy_limiter_sanitize_key()) in events and in a
 * call's detail, never raw.
 * ------------------------------------------------------------------------- */
typedef struct fy_limiter_s fy_limiter_t;

typedef enum {
  FY_LIMIT_GCRA = 0,        /* smooth (default) */
  FY_LIMIT_TOKEN_BUCKET = 1 /* |rate| tokens back per full interval */
} fy_limit_algo_t;

/* Bounds of the options. */
#define FY_LIMIT_RATE_MAX 1000000000u
#define FY_LIMIT_BURST_MAX 1000000000u
#define FY_LIMIT_INTERVAL_MAX (24u * 3600u * 1000u) /* 24 h, in ms */
#define FY_LIMIT_KEY_MAX 255u                       /* longest max_key_len */
#define FY_LIMIT_KEYS_MAX ((1u << 28) - 1u)         /* largest max_keys */

/* The figures of one decision. */
typedef struct fy_limit_verdict_s {
  uint64_t retry_after_ms; /* refused: the smallest wait after which the
                              same request succeeds if nobody else takes
                              tokens of the key (>= 1); 0 when allowed */
  uint64_t limit;          /* burst */
  uint64_t remaining;      /* whole tokens left after the decision */
  uint64_t reset_ms;       /* time until the bucket is full again */
} fy_limit_verdict_t;

/* The key of a call going through the limiter stage, for a limiter that
 * derives it from the operation's argument (a request's client address).
 * Return the key and set *len, or return NULL to refuse the call with
 * FY_EKEY.  The key must stay valid until the limiter's admission returns
 * (it is copied when the call has to wait).  Runs inside fy_call_start(),
 * and again for each new attempt when the limiter sits below a retry. */
typedef const char *(*fy_limit_key_fn)(fy_call_t *call, void *arg,
                                       size_t *len, void *user_data);

typedef struct fy_limiter_opts_s {
  fy_limit_algo_t algo;  /* default FY_LIMIT_GCRA */
  uint64_t rate;         /* tokens per interval, 1..FY_LIMIT_RATE_MAX;
                            default 100 */
  uint64_t interval_ms;  /* 1..FY_LIMIT_INTERVAL_MAX; default 1000 */
  uint64_t burst;        /* 0..FY_LIMIT_BURST_MAX; 0 (default): rate */
  uint64_t max_tokens;   /* the largest n of one request, 0..burst; 0
                            (default): burst.  A larger n can never be
                            allowed, so it is refused with UV_EINVAL
                            rather than told to wait */
  uint64_t cost;         /* tokens one call of the pipeline stage takes;
                            0 (default): 1 */
  int wait;              /* pipeline stage: 0 (default) refuses a call
                            over the limit at once; 1 makes it wait */
  uint32_t max_waiters;  /* calls waiting at once, in all keys (stage
                            with |wait|, and fy_limiter_wait()); a call
                            beyond is refused.  0: 1024 */
  uint64_t max_wait_ms;  /* longest wait; a call whose tokens come later
                            is refused at once.  0: no bound besides the
                            call's own deadline */
  uint32_t max_keys;     /* 1..FY_LIMIT_KEYS_MAX; 0: 100000 */
  uint32_t max_key_len;  /* 0..FY_LIMIT_KEY_MAX; 0: 64 */
  fy_limit_key_fn key;   /* pipeline stage: the call's key.  NULL: the
                            call's opts.key, else the empty key */
  void *user_data;       /* passed to |key| */
  const char *name;      /* optional, copied */
} fy_limiter_opts_t;

/* Fill |opts| with the defaults above. */
FY_EXTERN void fy_limiter_opts_init(fy_limiter_opts_t *opts);

/* Check |opts| as fy_limiter_new() does, creating nothing: 0, or UV_EINVAL
 * when |opts| is NULL, the algorithm is unknown, rate, interval_ms,
 * burst, max_keys or max_key_len is out of its range, max_tokens is above
 * the burst, or wait is neither 0 nor 1. */
FY_EXTERN int fy_limiter_opts_check(const fy_limiter_opts_t *opts);

/* Create a limiter.  |opts| NULL means the defaults.  Its key table is
 * allocated here, whole (about 62 bytes per key of max_keys with keys of
 * up to 23 bytes), so that no request allocates.  Returns 0, UV_EINVAL
 * (fy_limiter_opts_check() refused |opts|; nothing is created and *out is
 * NULL), UV_ENOMEM or FY_ECLOSED (context closing).  CONSTRUCTOR. */
FY_EXTERN int fy_limiter_new(fy_ctx_t *ctx, const fy_limiter_opts_t *opts,
                             fy_limiter_t **out);

/* The policy to put in pipelines.  A call refused by the stage has
 * detail.by_kind "limiter", retry_after_ms, the sanitised key in
 * detail.key, and n[0] = limit, n[1] = remaining, n[2] = reset_ms. */
FY_EXTERN fy_policy_t *fy_limiter_policy(fy_limiter_t *l);

/* Close asynchronously: waiting calls and waits complete with
 * UV_ECANCELED, then |cb| runs with |l| as its object.  NULL is a no-op.
 * Returns 0 or FY_ECLOSED.  DESTRUCTOR. */
FY_EXTERN int fy_limiter_close(fy_limiter_t *l, fy_close_cb cb,
                               void *user_data);

/* Take |n| tokens of |key| (|len| bytes) now, all or nothing.  Returns 0
 * (allowed), FY_ERATELIMITED (not now: v->retry_after_ms says when; nothing
 * was taken), UV_EINVAL (n is 0 or above max_tokens: no wait would help),
 * FY_EKEY (key longer than max_key_len, or NULL with a length) or
 * FY_ECLOSED.  |v| may be NULL; it is filled for 0 and FY_ERATELIMITED.
 * Tokens that calls wait for (fy_limiter_wait, the stage with |wait|) are
 * already taken: a take never jumps the queue. */
FY_EXTERN int fy_limiter_take(fy_limiter_t *l, const char *key, size_t len,
                              uint64_t n, fy_limit_verdict_t *v);

/* fy_limiter_take(l, key, len, 1, v). */
FY_EXTERN int fy_limiter_allow(fy_limiter_t *l, const char *key, size_t len,
                               fy_limit_verdict_t *v);

/* Hold |key| off until |retry_after_ms| from now (a server answered 429
 * with Retry-After): every request of the key is refused before then.
 * Creates no token: after the hold the key has what it would have had,
 * at most what one refill brings.  Returns 0, FY_EKEY or FY_ECLOSED. */
FY_EXTERN int fy_limiter_hold(fy_limiter_t *l, const char *key, size_t len,
                              uint64_t retry_after_ms);

/* An asynchronous wait for tokens: embed it, as a libuv request. */
typedef struct fy_limit_wait_s fy_limit_wait_t;
typedef void (*fy_limit_wait_cb)(fy_limit_wait_t *w, int status);

struct fy_limit_wait_s {
  /* public */
  void *data;
  /* private */
  fy_limiter_t *limiter;
  fy_limit_wait_cb cb;
  fy_deadline_t timer;
  fy__qnode_t node;
  uint64_t n;
  uint64_t at;
  uint64_t booked[5];
  int active;
  int cancelled;
  uint32_t len;
  char key[FY_LIMIT_KEY_MAX];
};

/* Take |n| tokens of |key| as soon as they are there, waiting behind the
 * earlier waits and waiting calls of the same key.  Returns 0: |cb| runs
 * exactly once, never inside this function, with 0 (the tokens are taken),
 * UV_ECANCELED (fy_limiter_wait_cancel(), or the limiter closed).  Or
 * returns at once, with nothing taken and no callback: FY_ERATELIMITED
 * when the tokens would come after |timeout_ms| (0: no bound but
 * max_wait_ms), or when max_waiters waits are pending (v->retry_after_ms
 * says when they would come; it is 0 for a full queue), UV_EINVAL, FY_EKEY,
 * UV_EBUSY (|w| is already waiting) or FY_ECLOSED.  |v| may be NULL. */
FY_EXTERN int fy_limiter_wait(fy_limiter_t *l, fy_limit_wait_t *w,
                              const char *key, size_t len, uint64_t n,
                              uint64_t timeout_ms, fy_limit_wait_cb cb,
                              fy_limit_verdict_t *v);

/* Give up a pending wait: its callback runs with UV_ECANCELED from the
 * loop.  Its tokens are given back when nothing was decided for the key
 * since the wait began and the table evicted no key meanwhile (else they
 * stay taken: giving them back would let the later requests overtake the
 * waits before them).  Returns 0, or UV_EINVAL when |w| is not waiting. */
FY_EXTERN int fy_limiter_wait_cancel(fy_limit_wait_t *w);

/* Counters of a limiter. */
typedef struct fy_limiter_stats_s {
  uint64_t keys;     /* keys in the table */
  uint64_t bytes;    /* memory of the table */
  uint64_t waiting;  /* waits and waiting calls pending */
  uint64_t expired;  /* keys dropped because their bucket was full again */
  uint64_t evicted;  /* keys dropped to make room (their state was lost) */
} fy_limiter_stats_t;

FY_EXTERN void fy_limiter_stats(const fy_limiter_t *l,
                                fy_limiter_stats_t *out);

/* Write |key| (|len| bytes) as events and details show it: control bytes
 * and invalid UTF-8 become '_', and a key that does not fit in |out_size|
 * is cut at a character boundary and ends with "...".  Always terminated
 * (when out_size > 0).  Returns strlen(out). */
FY_EXTERN size_t fy_limiter_sanitize_key(const char *key, size_t len,
                                         char *out, size_t out_size);

#ifdef __cplusplus
}
#endif
#endif /* FORTIFY_LIMITER_H */
