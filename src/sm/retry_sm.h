/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * The retry pattern's pure parts: option checks, the PRNG, the backoff
 * formulas, classification and the decision taken after each outcome.
 * None of them touches a loop or a clock (|now| is an argument), so tests
 * drive them directly.  Not API. */
#ifndef FY_RETRY_SM_H
#define FY_RETRY_SM_H

#include "fortify/retry.h"

/* The options are checked by fy_retry_opts_check() (fortify/retry.h). */

/* splitmix64: |seed| 0 picks a seed from uv_hrtime() mixed with |salt|. */
uint64_t fy__retry_sm_rng_seed(uint64_t seed, uint64_t salt);
uint64_t fy__retry_sm_rng_next(uint64_t *state);
/* Uniform in [0, 1). */
double fy__retry_sm_rng_unit(uint64_t *state);

/* Per-call memory of the backoff sequence (the decorrelated kinds depend
 * on what came before).  Zero it before the first delay of a call. */
typedef struct fy__retry_sm_seq_s {
  uint64_t prev_ms; /* previous delay; unused before the first */
  double v2_prev;   /* decorrelated-v2: the curve's previous value */
  unsigned count;   /* delays computed so far */
} fy__retry_sm_seq_t;

/* The delay, in ms, before the try that follows failed try |attempt|
 * (1-based), without retry-after hints.  Always within [0, cap], cap being
 * max_delay_ms or FY_RETRY_DELAY_LIMIT_MS, whatever the attempt number or
 * multiplier.  Updates |seq| and draws from |rng| when jittered. */
uint64_t fy__retry_sm_backoff(const fy_retry_opts_t *opts, unsigned attempt,
                           fy__retry_sm_seq_t *seq, uint64_t *rng);

/* 1 when |status| (non-zero) should be retried, by the precedence of the
 * options: predicate, non-retryable list, retryable list, then the default
 * (FY_RETRY_CODES_ADD) or nothing (FY_RETRY_CODES_ONLY). */
int fy__retry_sm_is_retryable(const fy_retry_opts_t *opts, int status);

/* The default classification alone. */
int fy__retry_sm_default_retryable(int status);

/* What to do after an outcome. */
typedef struct fy__retry_sm_plan_s {
  int retry;         /* 1: retry at |when|; 0: complete now */
  fy_retry_stop_t stop; /* why not, when |retry| is 0 */
  uint64_t delay_ms; /* the planned wait (also set for STOP_DEADLINE) */
  uint64_t when;     /* now + delay_ms */
} fy__retry_sm_plan_t;

/* Decide after try number |tries| (1-based) ended with |status|.
 * |hint_ms| is a retry-after hint (0: none), |call_flags| the call's
 * FY_CALL_* flags, |deadline| the call's deadline or FY_TIME_NEVER.  Checks,
 * in order: success, classification, attempts left, idempotency, hint
 * above the maximum, then delay = max(backoff, hint) and the deadline. */
void fy__retry_sm_decide(const fy_retry_opts_t *opts, fy__retry_sm_seq_t *seq,
                      uint64_t *rng, unsigned tries, int status,
                      uint64_t hint_ms, unsigned call_flags, uint64_t now,
                      uint64_t deadline, fy__retry_sm_plan_t *out);

#endif /* FY_RETRY_SM_H */
