/* Copyright (c) 2026 the fortify authors. MIT licensed. */
#ifndef FORTIFY_RETRY_H
#define FORTIFY_RETRY_H

#include "fortify/policy.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------
 * Retry: run the layer below again after a failure, waiting a backoff
 * between tries.  The wait is a deadline on the context's wheel, never a
 * blocked thread.  docs/retry.md describes every option, the formulas and
 * the detail written on completion.
 * ------------------------------------------------------------------------- */
typedef struct fy_retry_s fy_retry_t;

/* Bounds of the options (fy_retry_new() rejects values outside them). */
#define FY_RETRY_ATTEMPTS_MAX 1000u
#define FY_RETRY_DELAY_LIMIT_MS ((uint64_t)24 * 60 * 60 * 1000) /* 24 h */
#define FY_RETRY_MULTIPLIER_MAX 100.0
#define FY_RETRY_CODES_MAX 16

/* Growth of the delay before try k+1, k being the 1-based number of the
 * try that just failed and d the initial delay. */
typedef enum {
  FY_RETRY_BACKOFF_EXPONENTIAL = 0, /* d * multiplier^(k-1) */
  FY_RETRY_BACKOFF_LINEAR = 1,      /* d * k */
  FY_RETRY_BACKOFF_CONSTANT = 2     /* d */
} fy_retry_backoff_t;

/* How the delay is randomised.  The cap (max_delay_ms, or 24 h) always
 * applies after the jitter. */
typedef enum {
  FY_RETRY_JITTER_NONE = 0,      /* the backoff as computed */
  FY_RETRY_JITTER_FULL,          /* U[0, b] */
  FY_RETRY_JITTER_EQUAL,         /* b/2 + U[0, b/2] */
  FY_RETRY_JITTER_DECORRELATED,  /* U[d, 3 * previous delay]; own growth */
  FY_RETRY_JITTER_DECORRELATED_V2, /* smoothed exponential; own growth */
  FY_RETRY_JITTER_RATIO          /* b * U[1 - r, 1 + r] */
} fy_retry_jitter_t;

/* Why the retry stopped: detail.state when by_kind is "retry". */
typedef enum {
  FY_RETRY_STOP_SUCCESS = 0,       /* the last try succeeded */
  FY_RETRY_STOP_NOT_RETRYABLE = 1, /* its failure is classified final */
  FY_RETRY_STOP_EXHAUSTED = 2,     /* max_attempts tries ran */
  FY_RETRY_STOP_DEADLINE = 3,      /* the backoff would pass the deadline */
  FY_RETRY_STOP_RETRY_AFTER = 4,   /* hint above max_retry_after_ms */
  FY_RETRY_STOP_NOT_IDEMPOTENT = 5, /* require_idempotent, flag missing */
  FY_RETRY_STOP_CANCELLED = 6,     /* the call was cancelled */
  FY_RETRY_STOP_CLOSED = 7         /* the policy is closing */
} fy_retry_stop_t;

/* Classifier: 1 to retry |status|, 0 not to, any other value (e.g. -1) to
 * let the status lists and codes_mode decide.  Never asked about 0. */
typedef int (*fy_retry_classify_fn)(int status, void *user_data);

/* What retryable[] means. */
typedef enum {
  /* The listed codes are retried on top of the default classification,
   * which retries every other failure except the library's refusals,
   * UV_ECANCELED and FY_EDEADLINE.  The default. */
  FY_RETRY_CODES_ADD = 0,
  /* An allow-list: only the listed codes are retried, every other failure
   * is final, the default classification included.  retryable_count must
   * be at least 1. */
  FY_RETRY_CODES_ONLY = 1
} fy_retry_codes_mode_t;

/* Called when a retry actually starts, after its backoff: |attempt| is
 * the number of the try about to start, the first try being 1 (so 2 on the
 * first retry); |last_status| the failure being retried; |delay_ms| the
 * wait that just ended.  It may cancel |call|, close the policy, the
 * pipeline or the context: the retry then does not start. */
typedef void (*fy_retry_on_retry_fn)(fy_call_t *call, unsigned attempt,
                                     int last_status, uint64_t delay_ms,
                                     void *user_data);

typedef struct fy_retry_opts_s {
  const char *name;            /* copied; NULL: unnamed */
  /* Tries in total, the first included: [1, FY_RETRY_ATTEMPTS_MAX];
   * default 3. */
  unsigned max_attempts;
  /* Base delay, ms: [0, 24 h]; default 100.  0 retries on the next turn
   * of the loop. */
  uint64_t initial_delay_ms;
  /* Cap applied after jitter, ms: [0, 24 h]; default 0 = only the 24 h
   * hard cap. */
  uint64_t max_delay_ms;
  /* Exponential growth factor: finite, [1, FY_RETRY_MULTIPLIER_MAX];
   * default 2.0. */
  double multiplier;
  fy_retry_backoff_t backoff;  /* default FY_RETRY_BACKOFF_EXPONENTIAL */
  fy_retry_jitter_t jitter;    /* default FY_RETRY_JITTER_NONE */
  /* r of FY_RETRY_JITTER_RATIO: finite, [0, 1]; default 0.2. */
  double jitter_ratio;
  /* Largest retry-after hint honoured, ms: [0, 24 h]; default 30000.  A
   * larger hint ends the retries (FY_RETRY_STOP_RETRY_AFTER).  0 ignores
   * hints altogether. */
  uint64_t max_retry_after_ms;
  /* 1: a call started without FY_CALL_IDEMPOTENT is never retried.
   * 0 or 1; default 0. */
  int require_idempotent;
  /* PRNG seed for the jitter; 0 (default) seeds from uv_hrtime(). */
  uint64_t seed;
  /* Classification of a failure, the first rule that answers deciding:
   *  1. is_retryable, when set and it answers 1 or 0.  Its answer wins
   *     over both lists and over codes_mode, in either mode: a strict
   *     allow-list has no classifier, or one that answers -1 for the
   *     codes it leaves to the list;
   *  2. non_retryable[]: listed codes are final (also over retryable[]);
   *  3. retryable[]: listed codes are retried;
   *  4. codes_mode FY_RETRY_CODES_ADD: the default (retry every failure
   *     except the library's refusals, UV_ECANCELED and FY_EDEADLINE);
   *     FY_RETRY_CODES_ONLY: final.
   * Codes are negative; at most FY_RETRY_CODES_MAX of each list. */
  fy_retry_classify_fn is_retryable;
  int non_retryable[FY_RETRY_CODES_MAX];
  unsigned non_retryable_count;
  int retryable[FY_RETRY_CODES_MAX];
  unsigned retryable_count;
  /* FY_RETRY_CODES_ADD (default) or FY_RETRY_CODES_ONLY, which needs
   * retryable_count >= 1. */
  fy_retry_codes_mode_t codes_mode;
  fy_retry_on_retry_fn on_retry;
  void *user_data; /* passed to is_retryable and on_retry */
} fy_retry_opts_t;

/* Fill |opts| with the defaults above. */
FY_EXTERN void fy_retry_opts_init(fy_retry_opts_t *opts);

/* Check |opts| as fy_retry_new() does, creating nothing: 0, or UV_EINVAL
 * when |opts| is NULL or any field is outside the range given above: a
 * count or delay out of range (a negative number stored in an unsigned
 * field is out of range), a NaN or infinite multiplier or jitter_ratio,
 * an unknown backoff, jitter or codes_mode, require_idempotent other than
 * 0 or 1, a list longer than FY_RETRY_CODES_MAX or holding a code >= 0,
 * or FY_RETRY_CODES_ONLY with an empty retryable[].  Callbacks, name,
 * seed and user_data are not checked. */
FY_EXTERN int fy_retry_opts_check(const fy_retry_opts_t *opts);

/* Create a retry policy.  |opts| NULL means the defaults; it is copied.
 * Returns 0, UV_EINVAL (fy_retry_opts_check() refused |opts|; nothing is
 * created and *out is NULL), UV_ENOMEM or FY_ECLOSED.  CONSTRUCTOR. */
FY_EXTERN int fy_retry_new(fy_ctx_t *ctx, const fy_retry_opts_t *opts,
                           fy_retry_t **out);

/* The policy to put in pipelines. */
FY_EXTERN fy_policy_t *fy_retry_policy(fy_retry_t *retry);

/* Close asynchronously (fy_policy_close): calls waiting in a backoff
 * complete with UV_ECANCELED, tries in flight are cancelled, then |cb|
 * runs with |retry| as its object.  NULL is a no-op.  Returns 0 or
 * FY_ECLOSED.  DESTRUCTOR. */
FY_EXTERN int fy_retry_close(fy_retry_t *retry, fy_close_cb cb,
                             void *user_data);

/* Counters since creation. */
typedef struct fy_retry_stats_s {
  size_t waiting;    /* calls in a backoff now */
  uint64_t retries;  /* retries started (tries after the first) */
  uint64_t given_up; /* calls that ended on a retryable failure:
                        exhausted, deadline, retry-after, not idempotent */
} fy_retry_stats_t;
FY_EXTERN void fy_retry_stats(const fy_retry_t *retry, fy_retry_stats_t *out);

/* "exhausted", "deadline", ...: the name of a fy_retry_stop_t. */
FY_EXTERN const char *fy_retry_stop_name(int stop);

#ifdef __cplusplus
}
#endif
#endif /* FORTIFY_RETRY_H */
