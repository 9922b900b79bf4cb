/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * Retry's pure half: option checks, the PRNG, the backoff formulas, the
 * classification of outcomes and the decision after each one.  No context,
 * no frame (declared in retry_sm.h, tested without a loop).
 */
#include <assert.h>
#include <math.h>
#include <string.h>

#include "fortify.h"

#include "retry_sm.h"

/* ---- options ----------------------------------------------------------- */

void fy_retry_opts_init(fy_retry_opts_t *opts) {
  if (opts == NULL)
    return;
  memset(opts, 0, sizeof(*opts));
  opts->max_attempts = 3;
  opts->initial_delay_ms = 100;
  opts->max_delay_ms = 0;
  opts->multiplier = 2.0;
  opts->backoff = FY_RETRY_BACKOFF_EXPONENTIAL;
  opts->jitter = FY_RETRY_JITTER_NONE;
  opts->jitter_ratio = 0.2;
  opts->max_retry_after_ms = 30000;
}

static int codes_ok(const int *codes, unsigned count) {
  unsigned i;
  if (count > FY_RETRY_CODES_MAX)
    return 0;
  /* Statuses are negative: 0 is a success and is never retried, a
   * positive value is not a status at all. */
  for (i = 0; i < count; i++)
    if (codes[i] >= 0)
      return 0;
  return 1;
}

int fy_retry_opts_check(const fy_retry_opts_t *o) {
  if (o == NULL)
    return UV_EINVAL;
  if (o->max_attempts < 1 || o->max_attempts > FY_RETRY_ATTEMPTS_MAX)
    return UV_EINVAL;
  if (o->initial_delay_ms > FY_RETRY_DELAY_LIMIT_MS ||
      o->max_delay_ms > FY_RETRY_DELAY_LIMIT_MS ||
      o->max_retry_after_ms > FY_RETRY_DELAY_LIMIT_MS)
    return UV_EINVAL;
  /* isfinite() is false for NaN too: a NaN multiplier must not pass, or
   * every delay would land on the cap. */
  if (!isfinite(o->multiplier) || o->multiplier < 1.0 ||
      o->multiplier > FY_RETRY_MULTIPLIER_MAX)
    return UV_EINVAL;
  if (!isfinite(o->jitter_ratio) || o->jitter_ratio < 0.0 ||
      o->jitter_ratio > 1.0)
    return UV_EINVAL;
  if ((unsigned)o->backoff > (unsigned)FY_RETRY_BACKOFF_CONSTANT ||
      (unsigned)o->jitter > (unsigned)FY_RETRY_JITTER_RATIO)
    return UV_EINVAL;
  if (o->require_idempotent != 0 && o->require_idempotent != 1)
    return UV_EINVAL;
  if (!codes_ok(o->non_retryable, o->non_retryable_count) ||
      !codes_ok(o->retryable, o->retryable_count))
    return UV_EINVAL;
  /* An allow-list with nothing on it would retry nothing at all: that is
   * max_attempts 1 said by mistake, not a configuration. */
  if (o->codes_mode == FY_RETRY_CODES_ONLY) {
    if (o->retryable_count == 0)
      return UV_EINVAL;
  } else if (o->codes_mode != FY_RETRY_CODES_ADD) {
    return UV_EINVAL;
  }
  return 0;
}

/* ---- PRNG (splitmix64) ------------------------------------------------- */

uint64_t fy__retry_sm_rng_next(uint64_t *state) {
  uint64_t z = (*state += UINT64_C(0x9e3779b97f4a7c15));
  z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
  z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
  return z ^ (z >> 31);
}

double fy__retry_sm_rng_unit(uint64_t *state) {
  /* The top 53 bits, scaled to [0, 1). */
  return (double)(fy__retry_sm_rng_next(state) >> 11) *
         (1.0 / 9007199254740992.0);
}

uint64_t fy__retry_sm_rng_seed(uint64_t seed, uint64_t salt) {
  uint64_t s;
  if (seed != 0)
    return seed;
  /* Entropy, not time: two policies created in the same nanosecond still
   * differ through |salt|. */
  s = uv_hrtime() ^ (salt * UINT64_C(0x9e3779b97f4a7c15));
  return fy__retry_sm_rng_next(&s);
}

/* ---- backoff ----------------------------------------------------------- */

static double delay_cap(const fy_retry_opts_t *o) {
  uint64_t cap = o->max_delay_ms;
  if (cap == 0 || cap > FY_RETRY_DELAY_LIMIT_MS)
    cap = FY_RETRY_DELAY_LIMIT_MS;
  return (double)cap;
}

/* The un-jittered curve.  Computed in double: pow() may overflow to
 * infinity, which the caller clamps to the cap. */
static double curve(const fy_retry_opts_t *o, unsigned attempt) {
  double d = (double)o->initial_delay_ms;
  if (d == 0.0)
    return 0.0; /* 0 * inf would be NaN */
  switch (o->backoff) {
  case FY_RETRY_BACKOFF_EXPONENTIAL:
    return d * pow(o->multiplier, (double)attempt - 1.0);
  case FY_RETRY_BACKOFF_LINEAR:
    return d * (double)attempt;
  default:
    return d;
  }
}

static double jitter(const fy_retry_opts_t *o, double t, uint64_t *rng) {
  double r = o->jitter_ratio;
  switch (o->jitter) {
  case FY_RETRY_JITTER_FULL:
    return t * fy__retry_sm_rng_unit(rng);
  case FY_RETRY_JITTER_EQUAL:
    return t / 2.0 + t / 2.0 * fy__retry_sm_rng_unit(rng);
  case FY_RETRY_JITTER_RATIO:
    return t * (1.0 - r + 2.0 * r * fy__retry_sm_rng_unit(rng));
  default:
    return t;
  }
}

/* AWS decorrelated jitter: U[base, 3 * previous], the previous delay
 * starting at base. */
static double decorrelated(const fy_retry_opts_t *o,
                           const fy__retry_sm_seq_t *seq, uint64_t *rng) {
  double base = (double)o->initial_delay_ms;
  double prev = seq->count > 0 ? (double)seq->prev_ms : base;
  double hi = prev * 3.0;
  if (hi < base)
    hi = base; /* a cap below base shrank the previous delay */
  return base + (hi - base) * fy__retry_sm_rng_unit(rng);
}

/* Polly's decorrelated jitter v2: the delays are the steps of the curve
 * f(t) = 2^t * tanh(sqrt(4t)), sampled at t = retry index + U[0, 1),
 * scaled by base / 1.4.  The state is the curve's previous value. */
static double decorrelated_v2(const fy_retry_opts_t *o, unsigned attempt,
                              fy__retry_sm_seq_t *seq, uint64_t *rng) {
  double base = (double)o->initial_delay_ms;
  double t = (double)(attempt - 1) + fy__retry_sm_rng_unit(rng);
  double next = pow(2.0, t) * tanh(sqrt(4.0 * t));
  double x = (next - seq->v2_prev) * (1.0 / 1.4) * base;
  seq->v2_prev = next;
  return base == 0.0 ? 0.0 : x;
}

uint64_t fy__retry_sm_backoff(const fy_retry_opts_t *o, unsigned attempt,
                           fy__retry_sm_seq_t *seq, uint64_t *rng) {
  double cap = delay_cap(o);
  double t, x;
  uint64_t ms;

  if (attempt < 1)
    attempt = 1;
  switch (o->jitter) {
  case FY_RETRY_JITTER_DECORRELATED:
    x = decorrelated(o, seq, rng);
    break;
  case FY_RETRY_JITTER_DECORRELATED_V2:
    x = decorrelated_v2(o, attempt, seq, rng);
    break;
  default:
    /* Cap before the jitter too, so that a capped ratio jitter still
     * spreads callers below the cap instead of piling them on it. */
    t = curve(o, attempt);
    if (!(t < cap))
      t = cap;
    x = jitter(o, t, rng);
    break;
  }
  /* The cap applies after the jitter too, so no delay ever exceeds it.
   * Written so that NaN and infinities land on the cap and nothing negative
   * escapes. */
  if (!(x < cap))
    x = cap;
  if (!(x > 0.0))
    x = 0.0;
  ms = (uint64_t)ceil(x); /* the timer tick is 1 ms: round up */
  seq->prev_ms = ms;
  seq->count++;
  return ms;
}

/* ---- classification ---------------------------------------------------- */

static int in_list(const int *codes, unsigned count, int status) {
  unsigned i;
  if (count > FY_RETRY_CODES_MAX)
    count = FY_RETRY_CODES_MAX;
  for (i = 0; i < count; i++)
    if (codes[i] == status)
      return 1;
  return 0;
}

int fy__retry_sm_default_retryable(int status) {
  /* The library's own refusals say "not now" about a policy, cancellation
   * says the caller left, FY_EDEADLINE says the enclosing budget is spent:
   * retrying any of them only adds load. */
  return status != 0 && status != UV_ECANCELED && status != FY_EDEADLINE &&
         !fy_is_refusal(status);
}

int fy__retry_sm_is_retryable(const fy_retry_opts_t *o, int status) {
  int answer;
  if (status == 0)
    return 0;
  if (o->is_retryable != NULL) {
    answer = o->is_retryable(status, o->user_data);
    if (answer == 0 || answer == 1)
      return answer;
  }
  if (in_list(o->non_retryable, o->non_retryable_count, status))
    return 0;
  if (in_list(o->retryable, o->retryable_count, status))
    return 1;
  /* An allow-list: what it does not name is final, even a failure the
   * default would retry. */
  if (o->codes_mode == FY_RETRY_CODES_ONLY)
    return 0;
  return fy__retry_sm_default_retryable(status);
}

/* ---- decision ---------------------------------------------------------- */

void fy__retry_sm_decide(const fy_retry_opts_t *o, fy__retry_sm_seq_t *seq,
                      uint64_t *rng, unsigned tries, int status,
                      uint64_t hint_ms, unsigned call_flags, uint64_t now,
                      uint64_t deadline, fy__retry_sm_plan_t *out) {
  uint64_t delay;

  memset(out, 0, sizeof(*out));
  out->stop = FY_RETRY_STOP_SUCCESS;
  if (status == 0)
    return;
  out->stop = FY_RETRY_STOP_NOT_RETRYABLE;
  if (!fy__retry_sm_is_retryable(o, status))
    return;
  out->stop = FY_RETRY_STOP_EXHAUSTED;
  if (tries >= o->max_attempts)
    return;
  out->stop = FY_RETRY_STOP_NOT_IDEMPOTENT;
  if (o->require_idempotent && !(call_flags & FY_CALL_IDEMPOTENT))
    return;
  /* A server asking for more patience than the caller allows: retrying
   * earlier than asked would most likely be refused again. */
  out->stop = FY_RETRY_STOP_RETRY_AFTER;
  if (o->max_retry_after_ms == 0)
    hint_ms = 0;
  else if (hint_ms > o->max_retry_after_ms)
    return;

  delay = fy__retry_sm_backoff(o, tries, seq, rng);
  if (hint_ms > delay)
    delay = hint_ms;
  out->delay_ms = delay;
  out->when = fy_time_add(now, delay);
  /* Waiting past the deadline would only end in the enclosing timeout:
   * give the caller the real error now instead. */
  out->stop = FY_RETRY_STOP_DEADLINE;
  if (deadline != FY_TIME_NEVER && out->when >= deadline)
    return;
  out->stop = FY_RETRY_STOP_SUCCESS;
  out->retry = 1;
}

const char *fy_retry_stop_name(int stop) {
  static const char *const names[] = {
      "success",     "not_retryable",  "exhausted", "deadline",
      "retry_after", "not_idempotent", "cancelled", "closed"};
  if (stop < 0 || (size_t)stop >= sizeof(names) / sizeof(names[0]))
    return "unknown";
  return names[stop];
}
