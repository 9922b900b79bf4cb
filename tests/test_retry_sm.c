/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * The retry pattern's pure parts (src/sm/retry_sm.h): backoff formulas,
 * the PRNG, classification and the decision after each outcome, without a
 * loop or a context.  The policy's tests are in test_retry.c. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "fortify.h"
#include "retry_cases.h"
#include "retry_sm.h"

#define HOUR_MS ((uint64_t)60 * 60 * 1000)
#define DAY_MS (24 * HOUR_MS)

/* ====================================================================== *
 * Backoff, pure
 * ====================================================================== */

static uint64_t bo(const fy_retry_opts_t *o, unsigned attempt,
                   fy__retry_sm_seq_t *seq, uint64_t *rng) {
  return fy__retry_sm_backoff(o, attempt, seq, rng);
}

Test(retry_sm, backoff_formulas_without_jitter) {
  fy_retry_opts_t o;
  fy__retry_sm_seq_t seq;
  uint64_t rng = 1, before;
  unsigned k;

  fy_retry_opts_init(&o);
  memset(&seq, 0, sizeof(seq));
  /* Exponential: d * m^(k-1), k the failed try (W14: not m^k). */
  cr_assert_eq(bo(&o, 1, &seq, &rng), 100);
  cr_assert_eq(bo(&o, 2, &seq, &rng), 200);
  cr_assert_eq(bo(&o, 3, &seq, &rng), 400);
  cr_assert_eq(bo(&o, 4, &seq, &rng), 800);
  o.multiplier = 1.5;
  cr_assert_eq(bo(&o, 3, &seq, &rng), 225);
  cr_assert_eq(bo(&o, 4, &seq, &rng), 338); /* 337.5 rounded up */
  o.backoff = FY_RETRY_BACKOFF_LINEAR;
  for (k = 1; k <= 5; k++)
    cr_assert_eq(bo(&o, k, &seq, &rng), 100 * k);
  o.backoff = FY_RETRY_BACKOFF_CONSTANT;
  for (k = 1; k <= 5; k++)
    cr_assert_eq(bo(&o, k, &seq, &rng), 100);
  /* Attempt 0 is taken as 1. */
  o.backoff = FY_RETRY_BACKOFF_EXPONENTIAL;
  cr_assert_eq(bo(&o, 0, &seq, &rng), 100);
  /* No jitter: the PRNG is not touched. */
  before = rng;
  bo(&o, 7, &seq, &rng);
  cr_assert_eq(rng, before);
}

Test(retry_sm, backoff_exponential_monotonic_to_cap) {
  fy_retry_opts_t o;
  fy__retry_sm_seq_t seq;
  uint64_t rng = 1, prev = 0, d;
  unsigned k;
  double m[] = {1.0, 1.1, 1.5, 2.0, 3.7, 100.0};
  size_t i;

  for (i = 0; i < sizeof(m) / sizeof(m[0]); i++) {
    fy_retry_opts_init(&o);
    o.multiplier = m[i];
    o.max_delay_ms = 60000;
    memset(&seq, 0, sizeof(seq));
    prev = 0;
    for (k = 1; k <= FY_RETRY_ATTEMPTS_MAX; k++) {
      d = bo(&o, k, &seq, &rng);
      cr_assert_geq(d, prev, "m=%g k=%u", m[i], k);
      cr_assert_leq(d, 60000);
      prev = d;
    }
    cr_assert_eq(prev, m[i] == 1.0 ? 100 : 60000);
  }
}

/* Every jitter kind, many draws. */
Test(retry_sm, backoff_full_jitter_bounds) {
  fy_retry_opts_t o;
  fy__retry_sm_seq_t seq;
  uint64_t rng = 7, d, lo = UINT64_MAX, hi = 0;
  unsigned i, k;
  fy_retry_opts_init(&o);
  o.jitter = FY_RETRY_JITTER_FULL;
  memset(&seq, 0, sizeof(seq));
  for (k = 1; k <= 4; k++) {
    uint64_t t = 100u << (k - 1);
    for (i = 0; i < 2000; i++) {
      d = bo(&o, k, &seq, &rng);
      cr_assert_leq(d, t);
      if (k == 3) {
        lo = d < lo ? d : lo;
        hi = d > hi ? d : hi;
      }
    }
  }
  /* Spread over the whole range [0, 400]. */
  cr_assert_lt(lo, 20);
  cr_assert_gt(hi, 380);
}

Test(retry_sm, backoff_equal_jitter_bounds) {
  fy_retry_opts_t o;
  fy__retry_sm_seq_t seq;
  uint64_t rng = 9, d, lo = UINT64_MAX, hi = 0;
  unsigned i;
  fy_retry_opts_init(&o);
  o.jitter = FY_RETRY_JITTER_EQUAL;
  memset(&seq, 0, sizeof(seq));
  for (i = 0; i < 2000; i++) {
    d = bo(&o, 3, &seq, &rng); /* t = 400 */
    cr_assert_geq(d, 200);
    cr_assert_leq(d, 400);
    lo = d < lo ? d : lo;
    hi = d > hi ? d : hi;
  }
  cr_assert_lt(lo, 210);
  cr_assert_gt(hi, 390);
}

Test(retry_sm, backoff_ratio_jitter_bounds) {
  fy_retry_opts_t o;
  fy__retry_sm_seq_t seq;
  uint64_t rng = 11, d, lo = UINT64_MAX, hi = 0;
  unsigned i;
  fy_retry_opts_init(&o);
  o.jitter = FY_RETRY_JITTER_RATIO; /* default r = 0.2 (gRPC) */
  memset(&seq, 0, sizeof(seq));
  for (i = 0; i < 2000; i++) {
    d = bo(&o, 4, &seq, &rng); /* t = 800: [640, 960] */
    cr_assert_geq(d, 640);
    cr_assert_leq(d, 960);
    lo = d < lo ? d : lo;
    hi = d > hi ? d : hi;
  }
  cr_assert_lt(lo, 660);
  cr_assert_gt(hi, 940);
  o.jitter_ratio = 0.0;
  cr_assert_eq(bo(&o, 4, &seq, &rng), 800);
  o.jitter_ratio = 1.0;
  for (i = 0; i < 200; i++)
    cr_assert_leq(bo(&o, 4, &seq, &rng), 1600);
}

Test(retry_sm, backoff_decorrelated_bounds) {
  fy_retry_opts_t o;
  fy__retry_sm_seq_t seq;
  uint64_t rng = 13, d, prev;
  unsigned i, k;
  fy_retry_opts_init(&o);
  o.jitter = FY_RETRY_JITTER_DECORRELATED;
  o.max_delay_ms = 5000;
  for (i = 0; i < 300; i++) {
    memset(&seq, 0, sizeof(seq));
    prev = o.initial_delay_ms;
    for (k = 1; k <= 12; k++) {
      uint64_t hi = prev * 3 < 5000 ? prev * 3 : 5000;
      d = bo(&o, k, &seq, &rng);
      cr_assert_geq(d, 100);
      cr_assert_leq(d, hi, "k=%u prev=%llu d=%llu", k,
                    (unsigned long long)prev, (unsigned long long)d);
      prev = d;
    }
  }
  /* The backoff kind and multiplier do not matter to it. */
  o.backoff = FY_RETRY_BACKOFF_CONSTANT;
  memset(&seq, 0, sizeof(seq));
  rng = 13;
  d = bo(&o, 1, &seq, &rng);
  o.backoff = FY_RETRY_BACKOFF_EXPONENTIAL;
  memset(&seq, 0, sizeof(seq));
  rng = 13;
  cr_assert_eq(bo(&o, 1, &seq, &rng), d);
}

static double v2_curve(double t) { return pow(2.0, t) * tanh(sqrt(4.0 * t)); }

Test(retry_sm, backoff_decorrelated_v2_bounds) {
  fy_retry_opts_t o;
  fy__retry_sm_seq_t seq;
  uint64_t rng = 17, d, sum;
  unsigned i, k;
  fy_retry_opts_init(&o);
  o.jitter = FY_RETRY_JITTER_DECORRELATED_V2;
  for (i = 0; i < 300; i++) {
    memset(&seq, 0, sizeof(seq));
    sum = 0;
    for (k = 1; k <= 10; k++) {
      d = bo(&o, k, &seq, &rng);
      sum += d;
      /* The delays are the steps of the curve, so their sum after k
       * retries is base/1.4 * f(t_k) with t_k in [k-1, k), plus at most
       * 1 ms of rounding per step. */
      cr_assert_geq((double)sum, 100.0 / 1.4 * v2_curve(k - 1) - 1e-6);
      cr_assert_leq((double)sum, 100.0 / 1.4 * v2_curve(k) + k);
    }
  }
  /* The median of retry k lands near base * 2^(k-2) (1600 for k = 6):
   * exponential growth, spread smoothly. */
  {
    uint64_t sample[401];
    unsigned n;
    for (n = 0; n < 401; n++) {
      memset(&seq, 0, sizeof(seq));
      for (k = 1; k <= 6; k++)
        d = bo(&o, k, &seq, &rng);
      sample[n] = d;
    }
    for (n = 0; n < 401; n++) /* a small selection sort of the middle */
      for (k = n + 1; k < 401; k++)
        if (sample[k] < sample[n]) {
          uint64_t tmp = sample[n];
          sample[n] = sample[k];
          sample[k] = tmp;
        }
    cr_assert_gt(sample[200], 1200);
    cr_assert_lt(sample[200], 2000);
  }
}

Test(retry_sm, w10_cap_applies_after_jitter) {
  static const fy_retry_jitter_t kinds[] = {
      FY_RETRY_JITTER_NONE,         FY_RETRY_JITTER_FULL,
      FY_RETRY_JITTER_EQUAL,        FY_RETRY_JITTER_DECORRELATED,
      FY_RETRY_JITTER_DECORRELATED_V2, FY_RETRY_JITTER_RATIO};
  fy_retry_opts_t o;
  fy__retry_sm_seq_t seq;
  uint64_t rng = 21, d, top;
  size_t j;
  unsigned i, k;

  for (j = 0; j < sizeof(kinds) / sizeof(kinds[0]); j++) {
    fy_retry_opts_init(&o);
    o.jitter = kinds[j];
    o.jitter_ratio = 1.0; /* widest ratio: up to 2x before the cap */
    o.max_delay_ms = 1000;
    top = 0;
    for (i = 0; i < 200; i++) {
      memset(&seq, 0, sizeof(seq));
      for (k = 1; k <= 20; k++) {
        d = bo(&o, k, &seq, &rng);
        cr_assert_leq(d, 1000, "kind %zu k %u: %llu", j, k,
                      (unsigned long long)d);
        top = d > top ? d : top;
      }
    }
    cr_assert_gt(top, 900, "kind %zu never near the cap", j);
    /* No max_delay: the 24 h hard cap, also after jitter. */
    o.max_delay_ms = 0;
    o.initial_delay_ms = DAY_MS;
    for (i = 0; i < 200; i++) {
      memset(&seq, 0, sizeof(seq));
      for (k = 1; k <= 5; k++)
        cr_assert_leq(bo(&o, k, &seq, &rng), DAY_MS);
    }
  }
  /* Ratio jitter at the cap still spreads below it. */
  fy_retry_opts_init(&o);
  o.jitter = FY_RETRY_JITTER_RATIO;
  o.max_delay_ms = 1000;
  memset(&seq, 0, sizeof(seq));
  {
    uint64_t lo = UINT64_MAX;
    for (i = 0; i < 500; i++) {
      d = bo(&o, 30, &seq, &rng);
      cr_assert_geq(d, 800);
      lo = d < lo ? d : lo;
    }
    cr_assert_lt(lo, 850);
  }
}

Test(retry_sm, backoff_overflow_safe) {
  static const fy_retry_jitter_t kinds[] = {
      FY_RETRY_JITTER_NONE,         FY_RETRY_JITTER_FULL,
      FY_RETRY_JITTER_EQUAL,        FY_RETRY_JITTER_DECORRELATED,
      FY_RETRY_JITTER_DECORRELATED_V2, FY_RETRY_JITTER_RATIO};
  static const fy_retry_backoff_t curves[] = {FY_RETRY_BACKOFF_EXPONENTIAL,
                                              FY_RETRY_BACKOFF_LINEAR,
                                              FY_RETRY_BACKOFF_CONSTANT};
  static const unsigned attempts[] = {999, 1000, 1100, 70000, UINT32_MAX};
  fy_retry_opts_t o;
  fy__retry_sm_seq_t seq;
  uint64_t rng = 23, d;
  size_t j, c, a;

  for (j = 0; j < sizeof(kinds) / sizeof(kinds[0]); j++) {
    for (c = 0; c < 3; c++) {
      fy_retry_opts_init(&o);
      o.jitter = kinds[j];
      o.backoff = curves[c];
      o.multiplier = 100.0;
      o.initial_delay_ms = DAY_MS;
      memset(&seq, 0, sizeof(seq));
      for (a = 0; a < sizeof(attempts) / sizeof(attempts[0]); a++) {
        d = bo(&o, attempts[a], &seq, &rng);
        cr_assert_leq(d, DAY_MS);
      }
      /* No jitter: pinned exactly on the cap. */
      if (kinds[j] == FY_RETRY_JITTER_NONE) {
        o.max_delay_ms = 1234;
        cr_assert_eq(bo(&o, 1000, &seq, &rng), 1234);
      }
    }
  }
  /* Attempt 1000, multiplier 100, default delay: the hard cap. */
  fy_retry_opts_init(&o);
  o.multiplier = 100.0;
  memset(&seq, 0, sizeof(seq));
  cr_assert_eq(bo(&o, 1000, &seq, &rng), DAY_MS);
  /* v2's curve overflows to infinity (and inf - inf is NaN) past ~1024. */
  o.jitter = FY_RETRY_JITTER_DECORRELATED_V2;
  memset(&seq, 0, sizeof(seq));
  cr_assert_eq(bo(&o, 1100, &seq, &rng), DAY_MS);
  cr_assert_eq(bo(&o, 1101, &seq, &rng), DAY_MS);
}

Test(retry_sm, backoff_zero_initial_delay) {
  static const fy_retry_jitter_t kinds[] = {
      FY_RETRY_JITTER_NONE,         FY_RETRY_JITTER_FULL,
      FY_RETRY_JITTER_EQUAL,        FY_RETRY_JITTER_DECORRELATED,
      FY_RETRY_JITTER_DECORRELATED_V2, FY_RETRY_JITTER_RATIO};
  fy_retry_opts_t o;
  fy__retry_sm_seq_t seq;
  uint64_t rng = 1;
  size_t j;
  unsigned k;
  for (j = 0; j < sizeof(kinds) / sizeof(kinds[0]); j++) {
    fy_retry_opts_init(&o);
    o.initial_delay_ms = 0;
    o.multiplier = 100.0;
    o.jitter = kinds[j];
    memset(&seq, 0, sizeof(seq));
    for (k = 1; k <= 1100; k += 99)
      cr_assert_eq(bo(&o, k, &seq, &rng), 0, "kind %zu k %u", j, k);
  }
}

Test(retry_sm, rng_seeded_is_reproducible) {
  uint64_t a = fy__retry_sm_rng_seed(42, 1), b = fy__retry_sm_rng_seed(42, 2);
  uint64_t c = fy__retry_sm_rng_seed(43, 1);
  uint64_t x, y;
  unsigned i, same = 0;
  double u;
  for (i = 0; i < 100; i++) {
    x = fy__retry_sm_rng_next(&a);
    y = fy__retry_sm_rng_next(&b);
    cr_assert_eq(x, y);
    if (fy__retry_sm_rng_next(&c) == x)
      same++;
    u = fy__retry_sm_rng_unit(&a);
    fy__retry_sm_rng_unit(&b);
    cr_assert(u >= 0.0 && u < 1.0);
  }
  cr_assert_lt(same, 2);
  /* Seed 0: from the clock, and different for different salts. */
  cr_assert_neq(fy__retry_sm_rng_seed(0, 1), fy__retry_sm_rng_seed(0, 2));
}

/* ====================================================================== *
 * Classification and decision, pure
 * ====================================================================== */

Test(retry_sm, w12_default_classification) {
  fy_retry_opts_t o;
  fy_retry_opts_init(&o);
  /* Failures are retried... */
  cr_assert_eq(fy__retry_sm_is_retryable(&o, UV_ECONNRESET), 1);
  cr_assert_eq(fy__retry_sm_is_retryable(&o, UV_ETIMEDOUT), 1);
  cr_assert_eq(fy__retry_sm_is_retryable(&o, FY_EHTTP_STATUS(503)), 1);
  /* ...but not success, the library's refusals, cancellation, or the
   * enclosing deadline. */
  cr_assert_eq(fy__retry_sm_is_retryable(&o, 0), 0);
  cr_assert_eq(fy__retry_sm_is_retryable(&o, FY_ECIRCUITOPEN), 0);
  cr_assert_eq(fy__retry_sm_is_retryable(&o, FY_EBULKHEADFULL), 0);
  cr_assert_eq(fy__retry_sm_is_retryable(&o, FY_EQUEUETIMEOUT), 0);
  cr_assert_eq(fy__retry_sm_is_retryable(&o, FY_ECLOSED), 0);
  cr_assert_eq(fy__retry_sm_is_retryable(&o, UV_ECANCELED), 0);
  cr_assert_eq(fy__retry_sm_is_retryable(&o, FY_EDEADLINE), 0);
}

Test(retry_sm, classification_precedence) {
  fy_retry_opts_t o;
  fy_retry_opts_init(&o);
  o.non_retryable[0] = UV_ETIMEDOUT;
  o.non_retryable[1] = UV_EPIPE;
  o.non_retryable_count = 2;
  o.retryable[0] = FY_EBULKHEADFULL;
  o.retryable[1] = UV_ETIMEDOUT;
  o.retryable_count = 2;
  /* Lists: non-retryable wins over retryable, retryable over default. */
  cr_assert_eq(fy__retry_sm_is_retryable(&o, UV_ETIMEDOUT), 0);
  cr_assert_eq(fy__retry_sm_is_retryable(&o, FY_EBULKHEADFULL), 1);
  cr_assert_eq(fy__retry_sm_is_retryable(&o, UV_ECONNRESET), 1);
  /* The predicate wins over both lists, and may defer to them. */
  o.is_retryable = pred_answer;
  o.user_data = &pred_calls;
  cr_assert_eq(fy__retry_sm_is_retryable(&o, UV_EPIPE), 1);
  cr_assert_eq(fy__retry_sm_is_retryable(&o, UV_ECONNRESET), 0);
  cr_assert_eq(fy__retry_sm_is_retryable(&o, UV_ETIMEDOUT), 0);
  cr_assert_eq(fy__retry_sm_is_retryable(&o, FY_EBULKHEADFULL), 1);
  cr_assert_eq(fy__retry_sm_is_retryable(&o, FY_ECIRCUITOPEN), 0);
  cr_assert_eq(pred_calls, 5);
  /* Never asked about a success. */
  cr_assert_eq(fy__retry_sm_is_retryable(&o, 0), 0);
  cr_assert_eq(pred_calls, 5);
}

/* A list of codes some other retry library took as its allow-list. */
Test(retry_sm, codes_only_retries_the_listed_codes_and_nothing_else) {
  fy_retry_opts_t o;
  fy_retry_opts_init(&o);
  only_list(&o, FY_RETRY_CODES_ONLY);
  cr_assert_eq(fy_retry_opts_check(&o), 0);
  cr_assert_eq(fy__retry_sm_is_retryable(&o, UV_EPIPE), 1);
  cr_assert_eq(fy__retry_sm_is_retryable(&o, FY_ECIRCUITOPEN), 1);
  cr_assert_eq(fy__retry_sm_is_retryable(&o, UV_ETIMEDOUT), 1);
  /* Retried by default, but not on the list: final. */
  cr_assert_eq(fy__retry_sm_default_retryable(UV_ECONNRESET), 1);
  cr_assert_eq(fy__retry_sm_is_retryable(&o, UV_ECONNRESET), 0);
  cr_assert_eq(fy__retry_sm_is_retryable(&o, UV_ECONNREFUSED), 0);
  cr_assert_eq(fy__retry_sm_is_retryable(&o, FY_EHTTP_STATUS(503)), 0);
  /* Final by default and not listed: still final. */
  cr_assert_eq(fy__retry_sm_is_retryable(&o, FY_EBULKHEADFULL), 0);
  cr_assert_eq(fy__retry_sm_is_retryable(&o, UV_ECANCELED), 0);
  cr_assert_eq(fy__retry_sm_is_retryable(&o, 0), 0);
  /* The final list still wins over the allow-list. */
  o.non_retryable[0] = UV_ETIMEDOUT;
  o.non_retryable_count = 1;
  cr_assert_eq(fy__retry_sm_is_retryable(&o, UV_ETIMEDOUT), 0);
  cr_assert_eq(fy__retry_sm_is_retryable(&o, UV_EPIPE), 1);
}

Test(retry_sm, codes_add_keeps_the_default_classification) {
  fy_retry_opts_t o;
  fy_retry_opts_init(&o);
  only_list(&o, FY_RETRY_CODES_ADD);
  cr_assert_eq(fy_retry_opts_check(&o), 0);
  cr_assert_eq(fy__retry_sm_is_retryable(&o, UV_EPIPE), 1);
  cr_assert_eq(fy__retry_sm_is_retryable(&o, FY_ECIRCUITOPEN), 1);
  /* Everything the default retries still is... */
  cr_assert_eq(fy__retry_sm_is_retryable(&o, UV_ECONNRESET), 1);
  cr_assert_eq(fy__retry_sm_is_retryable(&o, UV_ECONNREFUSED), 1);
  cr_assert_eq(fy__retry_sm_is_retryable(&o, FY_EHTTP_STATUS(503)), 1);
  /* ...and what it does not retry, unless listed, still is not. */
  cr_assert_eq(fy__retry_sm_is_retryable(&o, FY_EBULKHEADFULL), 0);
  cr_assert_eq(fy__retry_sm_is_retryable(&o, FY_EDEADLINE), 0);
  /* A zeroed options struct is in ADD mode. */
  memset(&o, 0, sizeof(o));
  cr_assert_eq(o.codes_mode, FY_RETRY_CODES_ADD);
  cr_assert_eq(fy__retry_sm_is_retryable(&o, UV_ECONNRESET), 1);
}

/* 1 for UV_ECONNRESET, 0 for UV_EPIPE, no opinion otherwise. */
static int pred_flip(int status, void *user_data) {
  (void)user_data;
  if (status == UV_ECONNRESET)
    return 1;
  if (status == UV_EPIPE)
    return 0;
  return -1;
}

Test(retry_sm, codes_only_the_classifier_still_wins) {
  fy_retry_opts_t o;
  fy__retry_sm_seq_t seq;
  fy__retry_sm_plan_t pl;
  uint64_t rng = 1;
  fy_retry_opts_init(&o);
  only_list(&o, FY_RETRY_CODES_ONLY);
  o.is_retryable = pred_flip;
  /* Its 1 retries a code the allow-list does not name, its 0 refuses one
   * it names, and where it has no opinion the allow-list decides. */
  cr_assert_eq(fy__retry_sm_is_retryable(&o, UV_ECONNRESET), 1);
  cr_assert_eq(fy__retry_sm_is_retryable(&o, UV_EPIPE), 0);
  cr_assert_eq(fy__retry_sm_is_retryable(&o, UV_ETIMEDOUT), 1);
  cr_assert_eq(fy__retry_sm_is_retryable(&o, UV_ECONNREFUSED), 0);
  /* The decision follows the classification. */
  memset(&seq, 0, sizeof(seq));
  fy__retry_sm_decide(&o, &seq, &rng, 1, UV_ECONNREFUSED, 0, 0, 1000,
                      FY_TIME_NEVER, &pl);
  cr_assert_eq(pl.retry, 0);
  cr_assert_eq(pl.stop, FY_RETRY_STOP_NOT_RETRYABLE);
  fy__retry_sm_decide(&o, &seq, &rng, 1, UV_ETIMEDOUT, 0, 0, 1000,
                      FY_TIME_NEVER, &pl);
  cr_assert_eq(pl.retry, 1);
}

Test(retry_sm, decide_order_and_hints) {
  fy_retry_opts_t o;
  fy__retry_sm_seq_t seq;
  fy__retry_sm_plan_t pl;
  uint64_t rng = 5;

  fy_retry_opts_init(&o);
  memset(&seq, 0, sizeof(seq));
  fy__retry_sm_decide(&o, &seq, &rng, 1, 0, 0, 0, 1000, FY_TIME_NEVER, &pl);
  cr_assert_eq(pl.retry, 0);
  cr_assert_eq(pl.stop, FY_RETRY_STOP_SUCCESS);
  fy__retry_sm_decide(&o, &seq, &rng, 1, FY_ECIRCUITOPEN, 0, 0, 1000,
                   FY_TIME_NEVER, &pl);
  cr_assert_eq(pl.stop, FY_RETRY_STOP_NOT_RETRYABLE);
  fy__retry_sm_decide(&o, &seq, &rng, 3, UV_EPIPE, 0, 0, 1000, FY_TIME_NEVER,
                   &pl);
  cr_assert_eq(pl.stop, FY_RETRY_STOP_EXHAUSTED);
  cr_assert_eq(seq.count, 0); /* no delay computed for nothing */
  fy__retry_sm_decide(&o, &seq, &rng, 1, UV_EPIPE, 0, 0, 1000, FY_TIME_NEVER,
                   &pl);
  cr_assert_eq(pl.retry, 1);
  cr_assert_eq(pl.delay_ms, 100);
  cr_assert_eq(pl.when, 1100);
  /* Hint: max(backoff, hint). */
  fy__retry_sm_decide(&o, &seq, &rng, 2, UV_EPIPE, 50, 0, 1000, FY_TIME_NEVER,
                   &pl);
  cr_assert_eq(pl.delay_ms, 200);
  fy__retry_sm_decide(&o, &seq, &rng, 2, UV_EPIPE, 7000, 0, 1000,
                   FY_TIME_NEVER, &pl);
  cr_assert_eq(pl.delay_ms, 7000);
  /* The hint may exceed max_delay_ms (up to max_retry_after_ms). */
  o.max_delay_ms = 150;
  fy__retry_sm_decide(&o, &seq, &rng, 2, UV_EPIPE, 30000, 0, 1000,
                   FY_TIME_NEVER, &pl);
  cr_assert_eq(pl.retry, 1);
  cr_assert_eq(pl.delay_ms, 30000);
  fy__retry_sm_decide(&o, &seq, &rng, 2, UV_EPIPE, 30001, 0, 1000,
                   FY_TIME_NEVER, &pl);
  cr_assert_eq(pl.retry, 0);
  cr_assert_eq(pl.stop, FY_RETRY_STOP_RETRY_AFTER);
  o.max_retry_after_ms = 0; /* hints ignored */
  fy__retry_sm_decide(&o, &seq, &rng, 2, UV_EPIPE, 90000, 0, 1000,
                   FY_TIME_NEVER, &pl);
  cr_assert_eq(pl.retry, 1);
  cr_assert_eq(pl.delay_ms, 150);
  /* Deadline: a wait ending at or after it is not scheduled. */
  fy__retry_sm_decide(&o, &seq, &rng, 2, UV_EPIPE, 0, 0, 1000, 1150, &pl);
  cr_assert_eq(pl.retry, 0);
  cr_assert_eq(pl.stop, FY_RETRY_STOP_DEADLINE);
  cr_assert_eq(pl.delay_ms, 150);
  fy__retry_sm_decide(&o, &seq, &rng, 2, UV_EPIPE, 0, 0, 1000, 1151, &pl);
  cr_assert_eq(pl.retry, 1);
  fy__retry_sm_decide(&o, &seq, &rng, 2, UV_EPIPE, 0, 0, 1000, 900, &pl);
  cr_assert_eq(pl.stop, FY_RETRY_STOP_DEADLINE);
  /* Idempotency, after attempts. */
  o.require_idempotent = 1;
  fy__retry_sm_decide(&o, &seq, &rng, 1, UV_EPIPE, 0, 0, 1000, FY_TIME_NEVER,
                   &pl);
  cr_assert_eq(pl.stop, FY_RETRY_STOP_NOT_IDEMPOTENT);
  fy__retry_sm_decide(&o, &seq, &rng, 1, UV_EPIPE, 0, FY_CALL_IDEMPOTENT, 1000,
                   FY_TIME_NEVER, &pl);
  cr_assert_eq(pl.retry, 1);
  fy__retry_sm_decide(&o, &seq, &rng, 3, UV_EPIPE, 0, 0, 1000, FY_TIME_NEVER,
                   &pl);
  cr_assert_eq(pl.stop, FY_RETRY_STOP_EXHAUSTED);
  /* Saturation near the end of time. */
  o.require_idempotent = 0;
  fy__retry_sm_decide(&o, &seq, &rng, 1, UV_EPIPE, 0, 0, UINT64_MAX - 10,
                   FY_TIME_NEVER, &pl);
  cr_assert_eq(pl.retry, 1);
  cr_assert_eq(pl.when, FY_TIME_NEVER - 1);
}
