/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * Retry's pure parts (src/retry.h): the backoff formulas with every growth
 * and jitter kind, and the decision taken after each outcome, over random
 * options (extreme multipliers, attempt numbers, caps, hints, deadlines).
 *
 * Backoff: never above the cap, whatever the attempt number (no overflow,
 * no NaN); deterministic for a given PRNG state; within the bounds of its
 * jitter kind relative to the un-jittered curve; the un-jittered curve
 * never decreases.  Decision: a retry is planned only for a retryable
 * failure with tries left, honouring idempotency, the retry-after ceiling
 * and the deadline, after a delay of at least the hint; every refusal to
 * retry names a reason that holds; the library's refusals, cancellation and
 * the enclosing deadline are never retried by default; without a
 * classifier, an allow-list (FY_RETRY_CODES_ONLY) retries exactly its codes
 * that are not also listed final, and only a valid codes_mode passes the
 * option check. */
#include <math.h>
#include <string.h>

#include <fortify.h>

#include "fuzz.h"
#include "retry_sm.h"

static fz_t *Z;
static unsigned classify_key;

/* A user classifier: a pure function of the status (it is asked twice
 * about the same status here), answering 1, 0, or -1 and 2 ("let the
 * lists decide"). */
static int classify(int status, void *ud) {
  (void)ud;
  return (int)((((unsigned)status * 2654435761u) ^ classify_key) % 4) - 1;
}

static void gen_opts(fz_t *z, fy_retry_opts_t *o) {
  unsigned i;
  fy_retry_opts_init(o);
  o->max_attempts =
      fz_u8(z) & 1 ? 1 + (unsigned)fz_below(z, 10) : (unsigned)fz_u32_edge(z);
  o->initial_delay_ms = fz_u8(z) & 1 ? fz_time(z) : fz_u64_edge(z);
  o->max_delay_ms = fz_u8(z) & 1 ? 0 : fz_u64_edge(z);
  o->multiplier =
      fz_u8(z) & 1 ? 1.0 + (double)fz_below(z, 1000) / 10.0 : fz_double(z);
  o->backoff = (fy_retry_backoff_t)fz_below(z, 3);
  o->jitter = (fy_retry_jitter_t)fz_below(z, 6);
  o->jitter_ratio =
      fz_u8(z) & 1 ? (double)fz_below(z, 101) / 100.0 : fz_double(z);
  o->max_retry_after_ms = fz_u8(z) & 1 ? fz_time(z) : fz_u64_edge(z);
  o->require_idempotent = (int)fz_below(z, 2);
  o->seed = fz_u64(z) | 1;
  if (fz_u8(z) % 4 == 0) {
    o->is_retryable = classify;
    classify_key = fz_u32(z);
  }
  o->non_retryable_count = (unsigned)fz_below(z, 4);
  for (i = 0; i < o->non_retryable_count; i++)
    o->non_retryable[i] = fz_status(z);
  o->retryable_count = (unsigned)fz_below(z, 4);
  for (i = 0; i < o->retryable_count; i++)
    o->retryable[i] = fz_status(z);
  /* Mostly a valid mode; sometimes any value (refused by the check). */
  o->codes_mode = (fy_retry_codes_mode_t)(fz_u8(z) % 16 == 0
                                              ? fz_u32(z)
                                              : (uint32_t)fz_below(z, 2));
}

static int listed(const int *codes, unsigned n, int status) {
  unsigned i;
  for (i = 0; i < n; i++)
    if (codes[i] == status)
      return 1;
  return 0;
}

static uint64_t cap_of(const fy_retry_opts_t *o) {
  return o->max_delay_ms == 0 ? FY_RETRY_DELAY_LIMIT_MS : o->max_delay_ms;
}

/* The un-jittered delay, the way the documentation states it. */
static uint64_t plain(const fy_retry_opts_t *o, unsigned attempt) {
  fy_retry_opts_t p = *o;
  fy__retry_sm_seq_t seq;
  uint64_t rng = 1;
  memset(&seq, 0, sizeof(seq));
  p.jitter = FY_RETRY_JITTER_NONE;
  return fy__retry_sm_backoff(&p, attempt, &seq, &rng);
}

static void check_backoff(const fy_retry_opts_t *o, unsigned attempt,
                          fy__retry_sm_seq_t *seq, uint64_t *rng) {
  fy__retry_sm_seq_t seq2 = *seq;
  uint64_t rng2 = *rng, prev = seq->count ? seq->prev_ms : o->initial_delay_ms;
  uint64_t cap = cap_of(o), base = plain(o, attempt), d, d2, lo, hi;

  d = fy__retry_sm_backoff(o, attempt, seq, rng);
  d2 = fy__retry_sm_backoff(o, attempt, &seq2, &rng2);
  FZ_CHECK(d == d2 && rng2 == *rng && seq2.prev_ms == seq->prev_ms,
           "backoff not deterministic: %llu then %llu", (unsigned long long)d,
           (unsigned long long)d2);
  FZ_CHECK(d <= cap, "delay %llu above the cap %llu (attempt %u, jitter %d)",
           (unsigned long long)d, (unsigned long long)cap, attempt,
           (int)o->jitter);
  FZ_CHECK(seq->prev_ms == d, "the sequence forgot the delay");
  if (o->initial_delay_ms == 0)
    FZ_CHECK(d == 0, "no base delay, yet %llu", (unsigned long long)d);
  switch (o->jitter) {
  case FY_RETRY_JITTER_NONE:
    FZ_CHECK(d == base, "plain %llu != %llu", (unsigned long long)d,
             (unsigned long long)base);
    lo = o->initial_delay_ms < cap ? o->initial_delay_ms : cap;
    FZ_CHECK(d >= lo, "plain %llu below the base %llu", (unsigned long long)d,
             (unsigned long long)lo);
    if (attempt < UINT32_MAX && o->backoff != FY_RETRY_BACKOFF_CONSTANT)
      FZ_CHECK(plain(o, attempt + 1) >= d, "the curve went down at %u",
               attempt);
    break;
  case FY_RETRY_JITTER_FULL:
    FZ_CHECK(d <= base, "full jitter %llu above %llu", (unsigned long long)d,
             (unsigned long long)base);
    break;
  case FY_RETRY_JITTER_EQUAL:
    FZ_CHECK(d <= base && d + 1 >= base / 2, "equal jitter %llu for %llu",
             (unsigned long long)d, (unsigned long long)base);
    break;
  case FY_RETRY_JITTER_RATIO:
    lo = (uint64_t)floor((double)base * (1.0 - o->jitter_ratio));
    hi = (uint64_t)ceil((double)base * (1.0 + o->jitter_ratio)) + 1;
    FZ_CHECK(d + 1 >= lo && (d <= hi || d == cap),
             "ratio jitter %llu outside [%llu, %llu]", (unsigned long long)d,
             (unsigned long long)lo, (unsigned long long)hi);
    break;
  case FY_RETRY_JITTER_DECORRELATED:
    lo = o->initial_delay_ms < cap ? o->initial_delay_ms : cap;
    hi = prev > UINT64_MAX / 3 ? UINT64_MAX : prev * 3;
    if (hi < o->initial_delay_ms)
      hi = o->initial_delay_ms;
    FZ_CHECK(d >= lo && d <= hi, "decorrelated %llu outside [%llu, %llu]",
             (unsigned long long)d, (unsigned long long)lo,
             (unsigned long long)hi);
    break;
  default:
    break;
  }
}

static void check_decide(const fy_retry_opts_t *o, fy__retry_sm_seq_t *seq,
                         uint64_t *rng, fz_t *z) {
  unsigned tries = fz_u8(z) & 1 ? 1 + (unsigned)fz_below(z, o->max_attempts + 1)
                                : (unsigned)fz_u32(z);
  int status = fz_status(z);
  uint64_t hint = fz_u8(z) & 1 ? 0 : fz_u64_edge(z);
  unsigned flags = (unsigned)fz_below(z, 4);
  uint64_t now = fz_u8(z) & 1 ? fz_u32(z) : fz_u64_edge(z);
  uint64_t deadline = fz_u8(z) & 1 ? FY_TIME_NEVER : now + fz_time(z);
  fy__retry_sm_plan_t plan;
  int retryable;

  if (deadline < now)
    deadline = FY_TIME_NEVER;
  fy__retry_sm_decide(o, seq, rng, tries, status, hint, flags, now, deadline,
                   &plan);
  retryable = status != 0 && fy__retry_sm_is_retryable(o, status);
  FZ_CHECK((unsigned)plan.stop <= FY_RETRY_STOP_CLOSED, "stop %d", plan.stop);
  if (status == 0) {
    FZ_CHECK(!plan.retry && plan.stop == FY_RETRY_STOP_SUCCESS,
             "a success was retried");
    return;
  }
  if (o->is_retryable == NULL && o->retryable_count == 0 &&
      (status == UV_ECANCELED || status == FY_EDEADLINE ||
       fy_is_refusal(status)))
    FZ_CHECK(!retryable, "%d is retryable by default", status);
  /* Without a classifier the lists decide alone: an allow-list retries
   * exactly the listed codes that are not also final, and the default
   * mode retries every such code too. */
  if (o->is_retryable == NULL && status != 0) {
    int allowed = listed(o->retryable, o->retryable_count, status) &&
                  !listed(o->non_retryable, o->non_retryable_count, status);
    if (o->codes_mode == FY_RETRY_CODES_ONLY)
      FZ_CHECK(retryable == allowed, "allow-list: %d classified %d", status,
               retryable);
    else if (allowed)
      FZ_CHECK(retryable, "listed %d not retried", status);
  }
  if (plan.retry) {
    uint64_t want = now + plan.delay_ms;
    if (want < now || want == FY_TIME_NEVER)
      want = FY_TIME_NEVER - 1;
    FZ_CHECK(retryable, "retrying a final failure %d", status);
    FZ_CHECK(tries < o->max_attempts, "retrying after %u of %u tries", tries,
             o->max_attempts);
    FZ_CHECK(!o->require_idempotent || (flags & FY_CALL_IDEMPOTENT),
             "retrying a call that is not idempotent");
    FZ_CHECK(plan.when == want ||
                 (plan.when == FY_TIME_NEVER - 1 && want >= FY_TIME_NEVER - 1),
             "when %llu for now %llu + %llu", (unsigned long long)plan.when,
             (unsigned long long)now, (unsigned long long)plan.delay_ms);
    FZ_CHECK(deadline == FY_TIME_NEVER || plan.when < deadline,
             "retry at %llu past the deadline %llu",
             (unsigned long long)plan.when, (unsigned long long)deadline);
    if (o->max_retry_after_ms != 0) {
      FZ_CHECK(hint <= o->max_retry_after_ms, "hint above the ceiling");
      FZ_CHECK(plan.delay_ms >= hint, "delay %llu shorter than the hint %llu",
               (unsigned long long)plan.delay_ms, (unsigned long long)hint);
    }
    if (hint == 0 || o->max_retry_after_ms == 0)
      FZ_CHECK(plan.delay_ms <= cap_of(o), "delay above the cap");
    return;
  }
  switch (plan.stop) {
  case FY_RETRY_STOP_NOT_RETRYABLE:
    FZ_CHECK(!retryable, "stopped a retryable failure as final");
    break;
  case FY_RETRY_STOP_EXHAUSTED:
    FZ_CHECK(retryable && tries >= o->max_attempts, "not exhausted");
    break;
  case FY_RETRY_STOP_NOT_IDEMPOTENT:
    FZ_CHECK(o->require_idempotent && !(flags & FY_CALL_IDEMPOTENT),
             "not idempotent?");
    break;
  case FY_RETRY_STOP_RETRY_AFTER:
    FZ_CHECK(o->max_retry_after_ms != 0 && hint > o->max_retry_after_ms,
             "hint %llu within %llu", (unsigned long long)hint,
             (unsigned long long)o->max_retry_after_ms);
    break;
  case FY_RETRY_STOP_DEADLINE:
    FZ_CHECK(deadline != FY_TIME_NEVER && plan.when >= deadline,
             "deadline stop without a deadline in the way");
    break;
  default:
    FZ_CHECK(0, "decide stopped with %d", plan.stop);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fy_retry_opts_t o;
  fy__retry_sm_seq_t seq;
  uint64_t rng, s;
  unsigned attempt = 0;
  fz_t z;

  fz_init(&z, data, size);
  Z = &z;
  gen_opts(&z, &o);
  FZ_CHECK(fy_retry_stop_name((int)fz_u32(&z)) != NULL, "stop name");
  if (fy_retry_opts_check(&o) != 0)
    return 0;
  FZ_CHECK(o.codes_mode == FY_RETRY_CODES_ADD ||
               (o.codes_mode == FY_RETRY_CODES_ONLY && o.retryable_count > 0),
           "codes_mode %d with %u codes accepted", (int)o.codes_mode,
           o.retryable_count);
  s = o.seed;
  FZ_CHECK(fy__retry_sm_rng_seed(s, 7) == s, "an explicit seed was changed");
  rng = fy__retry_sm_rng_seed(o.seed, 0);
  memset(&seq, 0, sizeof(seq));
  while (!fz_done(&z)) {
    double u;
    switch (fz_u8(&z) % 4) {
    case 0:
      /* The next retry, as a call goes on. */
      check_backoff(&o, ++attempt, &seq, &rng);
      break;
    case 1:
      /* Any attempt number at all. */
      check_backoff(&o, (unsigned)fz_u32_edge(&z), &seq, &rng);
      break;
    case 2:
      check_decide(&o, &seq, &rng, &z);
      break;
    default:
      u = fy__retry_sm_rng_unit(&rng);
      FZ_CHECK(u >= 0.0 && u < 1.0, "unit draw %g", u);
      memset(&seq, 0, sizeof(seq)); /* a new call */
      attempt = 0;
      break;
    }
  }
  return 0;
}
