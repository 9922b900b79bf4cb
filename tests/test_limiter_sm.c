/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * The rate limiter's pure state machine (src/sm/limiter_sm.h): GCRA and the
 * interval-refilled token bucket driven with explicit instants, without a
 * loop, a context or a key table. */
#include <criterion/criterion.h>
#include <string.h>

#include "fortify.h"
#include "limiter_sm.h"

#define SEC_MS ((uint64_t)1000)
#define HOUR_MS (3600 * SEC_MS)
#define DAY_MS (24 * HOUR_MS)

typedef fy__limiter_sm_conf_t conf_t;
typedef fy__limiter_sm_state_t state_t;
typedef fy__limiter_sm_verdict_t verdict_t;

static const int algos[] = {FY__LIM_GCRA, FY__LIM_BUCKET};

static conf_t mk(int algo, uint64_t rate, uint64_t interval, uint64_t burst) {
  conf_t c;
  cr_assert_eq(fy__limiter_sm_conf_init(&c, algo, rate, interval, burst), 0,
               "conf %d %llu/%llu burst %llu", algo, (unsigned long long)rate,
               (unsigned long long)interval, (unsigned long long)burst);
  return c;
}

static int take(const conf_t *c, state_t *s, uint64_t now, uint64_t n) {
  return fy__limiter_sm_take(c, s, 0, now, n, NULL);
}

/* take(n) on a copy: the decision alone. */
static int would(const conf_t *c, const state_t *s, uint64_t now, uint64_t n) {
  state_t t = *s;
  return take(c, &t, now, n);
}

static void fresh(const conf_t *c, state_t *s) {
  fy__limiter_sm_fresh(c, s);
}

/* ====================================================================== *
 * Configuration
 * ====================================================================== */

Test(limiter_sm, check_accepts_exactly_the_documented_bounds) {
  int i;
  for (i = 0; i < 2; i++) {
    int a = algos[i];
    cr_assert_eq(fy__limiter_sm_check(a, 1, 1, 1), 0);
    cr_assert_eq(fy__limiter_sm_check(a, FY__LIM_RATE_MAX, FY__LIM_INTERVAL_MAX,
                                      FY__LIM_BURST_MAX),
                 0);
    cr_assert_eq(fy__limiter_sm_check(a, 0, 1000, 1), UV_EINVAL);
    cr_assert_eq(fy__limiter_sm_check(a, FY__LIM_RATE_MAX + 1ull, 1000, 1),
                 UV_EINVAL);
    cr_assert_eq(fy__limiter_sm_check(a, UINT64_MAX, 1000, 1), UV_EINVAL);
    cr_assert_eq(fy__limiter_sm_check(a, 1, 0, 1), UV_EINVAL);
    cr_assert_eq(fy__limiter_sm_check(a, 1, FY__LIM_INTERVAL_MAX + 1ull, 1),
                 UV_EINVAL);
    cr_assert_eq(fy__limiter_sm_check(a, 1, 86400000, 1), 0);
    cr_assert_eq(fy__limiter_sm_check(a, 1, 86400001, 1), UV_EINVAL);
    cr_assert_eq(fy__limiter_sm_check(a, 1, UINT64_MAX, 1), UV_EINVAL);
    cr_assert_eq(fy__limiter_sm_check(a, 1, 1000, 0), UV_EINVAL);
    cr_assert_eq(fy__limiter_sm_check(a, 1, 1000, 1000000000), 0);
    cr_assert_eq(fy__limiter_sm_check(a, 1, 1000, 1000000001), UV_EINVAL);
    cr_assert_eq(fy__limiter_sm_check(a, 1, 1000, UINT64_MAX), UV_EINVAL);
  }
  cr_assert_eq(fy__limiter_sm_check(2, 1, 1, 1), UV_EINVAL);
  cr_assert_eq(fy__limiter_sm_check(-1, 1, 1, 1), UV_EINVAL);
}

Test(limiter_sm, conf_init_derives_and_refuses_without_writing) {
  conf_t c, before;
  memset(&c, 0xab, sizeof(c));
  before = c;
  cr_assert_eq(fy__limiter_sm_conf_init(&c, FY__LIM_GCRA, 0, 1000, 1),
               UV_EINVAL);
  cr_assert_eq(memcmp(&c, &before, sizeof(c)), 0, "a refused conf is written");
  c = mk(FY__LIM_GCRA, 3, 1000, 10);
  cr_assert_eq(c.t_ms, 333);
  cr_assert_eq(c.t_rem, 1); /* T = 333 + 1/3 ms */
  cr_assert_eq(c.tau, 10000);
  cr_assert_eq(c.tau_ms, 3333);
  c = mk(FY__LIM_BUCKET, 3, 1000, 10);
  cr_assert_eq(c.fill_steps, 4);
  c = mk(FY__LIM_BUCKET, 5, 1000, 10);
  cr_assert_eq(c.fill_steps, 2);
}

Test(limiter_sm, fresh_state_is_sixteen_bytes_and_full) {
  conf_t c;
  state_t s;
  verdict_t v;
  int i;
  cr_assert_eq(sizeof(state_t), 16);
  for (i = 0; i < 2; i++) {
    c = mk(algos[i], 3, 1000, 7);
    fresh(&c, &s);
    cr_assert_eq(fy__limiter_sm_peek(&c, &s, 0, 123456, 7, &v), FY__LIM_ALLOWED);
    cr_assert_eq(v.remaining, 7);
    cr_assert_eq(v.limit, 7);
    cr_assert_eq(v.reset_ms, 0);
    cr_assert_eq(v.retry_after_ms, 0);
    cr_assert_leq(fy__limiter_sm_idle_at(&c, &s), 0, "a fresh key is idle");
  }
}

/* ====================================================================== *
 * Burst, fresh keys, invalid requests
 * ====================================================================== */

Test(limiter_sm, fresh_key_allows_exactly_burst_at_once) {
  static const uint64_t bursts[] = {1, 2, 3, 10, 1000};
  size_t k;
  int i;
  for (i = 0; i < 2; i++) {
    for (k = 0; k < sizeof(bursts) / sizeof(bursts[0]); k++) {
      conf_t c = mk(algos[i], 3, 1000, bursts[k]);
      state_t s;
      verdict_t v;
      uint64_t j;
      memset(&s, 0xee, sizeof(s));
      cr_assert_eq(fy__limiter_sm_take(&c, &s, 1, 5000, 1, &v),
                   FY__LIM_ALLOWED);
      cr_assert_eq(v.remaining, bursts[k] - 1);
      for (j = 1; j < bursts[k]; j++)
        cr_assert_eq(take(&c, &s, 5000, 1), FY__LIM_ALLOWED,
                     "algo %d burst %llu: take %llu", algos[i],
                     (unsigned long long)bursts[k], (unsigned long long)j + 1);
      cr_assert_eq(fy__limiter_sm_take(&c, &s, 0, 5000, 1, &v), FY__LIM_DENIED,
                   "algo %d: burst + 1 at once", algos[i]);
      cr_assert_eq(v.remaining, 0);
      /* GCRA: the next token is T = 333.3 ms away; the bucket refills 3
       * tokens at the interval boundary. */
      cr_assert_eq(v.retry_after_ms, algos[i] == FY__LIM_GCRA ? 334 : 1000);
    }
  }
}

Test(limiter_sm, fresh_take_of_the_whole_burst_then_one_per_step) {
  int i;
  for (i = 0; i < 2; i++) {
    conf_t c = mk(algos[i], 1, 100, 4);
    state_t s;
    verdict_t v;
    cr_assert_eq(fy__limiter_sm_take(&c, &s, 1, 0, 4, &v), FY__LIM_ALLOWED);
    cr_assert_eq(v.remaining, 0);
    cr_assert_eq(v.reset_ms, 400);
    cr_assert_eq(would(&c, &s, 99, 1), FY__LIM_DENIED);
    cr_assert_eq(would(&c, &s, 100, 1), FY__LIM_ALLOWED);
    cr_assert_eq(would(&c, &s, 100, 2), FY__LIM_DENIED);
    cr_assert_eq(would(&c, &s, 200, 2), FY__LIM_ALLOWED);
    cr_assert_eq(would(&c, &s, 399, 4), FY__LIM_DENIED);
    cr_assert_eq(would(&c, &s, 400, 4), FY__LIM_ALLOWED);
  }
}

Test(limiter_sm, invalid_n_is_distinct_from_a_denial_and_changes_nothing) {
  int i;
  for (i = 0; i < 2; i++) {
    conf_t c = mk(algos[i], 10, 1000, 5);
    state_t s, before;
    verdict_t v;
    memset(&s, 0x5a, sizeof(s));
    before = s;
    /* Fresh: nothing is written for an invalid request. */
    cr_assert_eq(fy__limiter_sm_take(&c, &s, 1, 0, 0, &v), UV_EINVAL);
    cr_assert_eq(fy__limiter_sm_take(&c, &s, 1, 0, 6, &v), UV_EINVAL);
    cr_assert_eq(fy__limiter_sm_take(&c, &s, 1, 0, UINT64_MAX, &v), UV_EINVAL);
    cr_assert_eq(memcmp(&s, &before, sizeof(s)), 0);
    cr_assert_eq(v.retry_after_ms, 0, "no wait makes n > burst valid");
    cr_assert_eq(v.limit, 5);
    cr_assert_eq(v.remaining, 5);
    /* Existing key, even a drained one: still UV_EINVAL, never a denial. */
    cr_assert_eq(fy__limiter_sm_take(&c, &s, 1, 0, 5, NULL), FY__LIM_ALLOWED);
    before = s;
    cr_assert_eq(fy__limiter_sm_take(&c, &s, 0, 0, 6, &v), UV_EINVAL);
    cr_assert_eq(fy__limiter_sm_take(&c, &s, 0, 0, 0, &v), UV_EINVAL);
    cr_assert_eq(fy__limiter_sm_peek(&c, &s, 0, 0, 6, &v), UV_EINVAL);
    cr_assert_eq(v.retry_after_ms, 0);
    cr_assert_eq(v.remaining, 0);
    cr_assert_eq(memcmp(&s, &before, sizeof(s)), 0);
    cr_assert_eq(fy__limiter_sm_take(&c, &s, 0, 0, 1, &v), FY__LIM_DENIED);
    cr_assert_eq(memcmp(&s, &before, sizeof(s)), 0, "a denial wrote");
  }
}

Test(limiter_sm, burst_one_allows_one_per_emission_interval) {
  int i;
  for (i = 0; i < 2; i++) {
    conf_t c = mk(algos[i], 1, 250, 1);
    state_t s;
    uint64_t t, allowed = 0;
    fresh(&c, &s);
    for (t = 0; t <= 10000; t++)
      if (take(&c, &s, t, 1) == FY__LIM_ALLOWED) {
        cr_assert_eq(t % 250, 0, "algo %d allowed at %llu", algos[i],
                     (unsigned long long)t);
        allowed++;
      }
    cr_assert_eq(allowed, 41);
  }
}

/* ====================================================================== *
 * Exact fractional emission intervals, no drift
 * ====================================================================== */

/* GCRA, burst 1, T >= 1 ms: the k-th token (k >= 0) is due at exactly
 * k * I / R, so the first poll that gets it is at ceil(k * I / R). */
static void gcra_grid(uint64_t rate, uint64_t interval, uint64_t span) {
  conf_t c = mk(FY__LIM_GCRA, rate, interval, 1);
  state_t s;
  uint64_t t, k = 0;
  fresh(&c, &s);
  for (t = 0; t <= span; t++) {
    uint64_t due = (k * interval + rate - 1) / rate;
    int rc = take(&c, &s, t, 1);
    cr_assert_eq(rc, t == due ? FY__LIM_ALLOWED : FY__LIM_DENIED,
                 "%llu/%llu: poll at %llu, token %llu due at %llu",
                 (unsigned long long)rate, (unsigned long long)interval,
                 (unsigned long long)t, (unsigned long long)k,
                 (unsigned long long)due);
    if (rc == FY__LIM_ALLOWED)
      k++;
  }
}

Test(limiter_sm, gcra_fractional_emission_interval_is_exact) {
  gcra_grid(3, 1000, 20000);
  gcra_grid(7, 1000, 20000);
  gcra_grid(3, 7, 2000);
  gcra_grid(999, 1000, 3000);
}

/* An hour of dense polling (every ms) allows exactly rate per interval for
 * the hour plus the initial burst: no drift in either algorithm. */
static uint64_t dense(const conf_t *c, uint64_t start, uint64_t span) {
  state_t s;
  uint64_t t, allowed = 0;
  fresh(c, &s);
  for (t = start; t <= start + span; t++)
    while (take(c, &s, t, 1) == FY__LIM_ALLOWED)
      allowed++;
  return allowed;
}

Test(limiter_sm, no_drift_over_an_hour_of_dense_polling) {
  int i;
  for (i = 0; i < 2; i++) {
    conf_t c3 = mk(algos[i], 3, 1000, 5);
    conf_t c7 = mk(algos[i], 7, 1000, 7);
    cr_assert_eq(dense(&c3, 0, HOUR_MS), 3 * 3600 + 5, "algo %d", algos[i]);
    cr_assert_eq(dense(&c7, 0, HOUR_MS), 7 * 3600 + 7, "algo %d", algos[i]);
    /* Far along the clock the arithmetic is the same. */
    cr_assert_eq(dense(&c3, (uint64_t)1 << 50, HOUR_MS), 3 * 3600 + 5);
  }
  /* An interval that does not divide the hour: 9 per 7 ms, burst 9.  GCRA
   * emits every 7/9 ms; the bucket refills at each of the 514285 whole
   * intervals. */
  {
    conf_t g = mk(FY__LIM_GCRA, 9, 7, 9);
    conf_t b = mk(FY__LIM_BUCKET, 9, 7, 9);
    cr_assert_eq(dense(&g, 0, HOUR_MS), 9 + HOUR_MS * 9 / 7);
    cr_assert_eq(dense(&b, 0, HOUR_MS), 9 + 9 * (HOUR_MS / 7));
  }
  /* GCRA with burst 1: the fraction of a ms by which each poll comes late
   * is not lost. */
  {
    conf_t g = mk(FY__LIM_GCRA, 7, 1000, 1);
    cr_assert_eq(dense(&g, 0, HOUR_MS), 7 * 3600 + 1);
  }
  /* A bucket smaller than its rate: a refill tops up to burst only. */
  {
    conf_t b = mk(FY__LIM_BUCKET, 7, 1000, 2);
    cr_assert_eq(dense(&b, 0, HOUR_MS), 2 + 2 * 3600);
  }
}

/* ====================================================================== *
 * Token bucket: interval refill anchored at first use
 * ====================================================================== */

Test(limiter_sm, bucket_refills_whole_rate_at_each_full_interval) {
  conf_t c = mk(FY__LIM_BUCKET, 3, 1000, 5);
  state_t s;
  verdict_t v;
  cr_assert_eq(fy__limiter_sm_take(&c, &s, 1, 10, 5, &v), FY__LIM_ALLOWED);
  cr_assert_eq(v.reset_ms, 2000, "5 tokens need two refills of 3");
  cr_assert_eq(would(&c, &s, 1009, 1), FY__LIM_DENIED);
  cr_assert_eq(fy__limiter_sm_peek(&c, &s, 0, 1010, 1, &v), FY__LIM_ALLOWED);
  cr_assert_eq(v.remaining, 3);
  cr_assert_eq(v.reset_ms, 1000);
  cr_assert_eq(would(&c, &s, 1010, 4), FY__LIM_DENIED);
  cr_assert_eq(would(&c, &s, 2010, 5), FY__LIM_ALLOWED);
  /* Take 2 at 1500: 1 left, the anchor stays on the grid (next 2010). */
  cr_assert_eq(fy__limiter_sm_take(&c, &s, 0, 1500, 2, &v), FY__LIM_ALLOWED);
  cr_assert_eq(v.remaining, 1);
  cr_assert_eq(v.reset_ms, 2010 + 1000 - 1500, "1 + 3 + 3 >= 5 at 3010");
  cr_assert_eq(fy__limiter_sm_take(&c, &s, 0, 2009, 2, &v), FY__LIM_DENIED);
  cr_assert_eq(v.retry_after_ms, 1);
  cr_assert_eq(fy__limiter_sm_peek(&c, &s, 0, 2010, 5, &v), FY__LIM_DENIED);
  cr_assert_eq(v.remaining, 4);
  cr_assert_eq(v.retry_after_ms, 1000);
  cr_assert_eq(fy__limiter_sm_peek(&c, &s, 0, 3010, 5, &v), FY__LIM_ALLOWED);
  cr_assert_eq(v.remaining, 5, "capped at burst");
}

Test(limiter_sm, bucket_full_bucket_starts_a_new_anchor) {
  conf_t c = mk(FY__LIM_BUCKET, 2, 1000, 2);
  state_t s, f;
  verdict_t v;
  fresh(&c, &s);
  cr_assert_eq(take(&c, &s, 0, 1), FY__LIM_ALLOWED);
  /* At 1000 the bucket is full again; a take at 1700 anchors at 1700, as
   * a fresh key would, not at the old grid point 2000. */
  cr_assert_eq(fy__limiter_sm_take(&c, &s, 0, 1700, 2, &v), FY__LIM_ALLOWED);
  cr_assert_eq(v.reset_ms, 1000);
  fresh(&c, &f);
  cr_assert_eq(take(&c, &f, 1700, 2), FY__LIM_ALLOWED);
  cr_assert_eq(memcmp(&s, &f, sizeof(s)), 0, "full bucket != fresh key");
  cr_assert_eq(would(&c, &s, 2699, 1), FY__LIM_DENIED);
  cr_assert_eq(would(&c, &s, 2700, 2), FY__LIM_ALLOWED);
}

Test(limiter_sm, bucket_multi_interval_gap_counts_every_boundary) {
  conf_t c = mk(FY__LIM_BUCKET, 1, 100, 1000);
  state_t s;
  verdict_t v;
  fresh(&c, &s);
  cr_assert_eq(take(&c, &s, 0, 1000), FY__LIM_ALLOWED);
  cr_assert_eq(fy__limiter_sm_peek(&c, &s, 0, 37099, 1, &v), FY__LIM_ALLOWED);
  cr_assert_eq(v.remaining, 370);
  cr_assert_eq(v.reset_ms, 100000 - 37099, "full at 100000");
  cr_assert_eq(take(&c, &s, 37099, 370), FY__LIM_ALLOWED);
  cr_assert_eq(would(&c, &s, 37099, 1), FY__LIM_DENIED);
  /* The grid kept its phase: the next token at 37100. */
  cr_assert_eq(would(&c, &s, 37100, 1), FY__LIM_ALLOWED);
  cr_assert_eq(would(&c, &s, 37100, 2), FY__LIM_DENIED);
}

/* ====================================================================== *
 * GCRA with n > 1 and detail values
 * ====================================================================== */

Test(limiter_sm, gcra_remaining_reset_and_retry_values) {
  conf_t c = mk(FY__LIM_GCRA, 3, 1000, 10);
  state_t s;
  verdict_t v;
  /* T = 333.33 ms.  Take 4 at 0: TAT 1333.33. */
  cr_assert_eq(fy__limiter_sm_take(&c, &s, 1, 0, 4, &v), FY__LIM_ALLOWED);
  cr_assert_eq(v.limit, 10);
  cr_assert_eq(v.remaining, 6);
  cr_assert_eq(v.reset_ms, 1334);
  cr_assert_eq(v.retry_after_ms, 0);
  cr_assert_eq(s.a, 1333);
  cr_assert_eq(s.b, 1);
  cr_assert_eq(fy__limiter_sm_take(&c, &s, 0, 0, 6, &v), FY__LIM_ALLOWED);
  cr_assert_eq(v.remaining, 0);
  cr_assert_eq(v.reset_ms, 3334, "TAT 3333.33");
  cr_assert_eq(fy__limiter_sm_take(&c, &s, 0, 0, 1, &v), FY__LIM_DENIED);
  cr_assert_eq(v.retry_after_ms, 334);
  cr_assert_eq(v.remaining, 0);
  cr_assert_eq(v.reset_ms, 3334);
  cr_assert_eq(fy__limiter_sm_take(&c, &s, 0, 0, 10, &v), FY__LIM_DENIED);
  cr_assert_eq(v.retry_after_ms, 3334);
  cr_assert_eq(fy__limiter_sm_peek(&c, &s, 0, 1000, 3, &v), FY__LIM_ALLOWED);
  cr_assert_eq(v.remaining, 3, "3 tokens came back in 1 s");
  cr_assert_eq(v.reset_ms, 2334);
  cr_assert_eq(fy__limiter_sm_peek(&c, &s, 0, 1000, 4, &v), FY__LIM_DENIED);
  cr_assert_eq(v.retry_after_ms, 334);
  cr_assert_eq(v.remaining, 3);
}

/* ====================================================================== *
 * The clock: idle gaps, standing still, going back, the far end
 * ====================================================================== */

Test(limiter_sm, long_idle_gaps_refill_to_exactly_burst) {
  static const uint64_t gaps[] = {DAY_MS, 30 * DAY_MS, 3650 * DAY_MS,
                                  (uint64_t)1 << 61};
  size_t k;
  int i;
  for (i = 0; i < 2; i++) {
    for (k = 0; k < sizeof(gaps) / sizeof(gaps[0]); k++) {
      conf_t c = mk(algos[i], 1, 1000, 50);
      state_t s;
      verdict_t v;
      uint64_t j;
      fresh(&c, &s);
      cr_assert_eq(take(&c, &s, 100, 50), FY__LIM_ALLOWED);
      cr_assert_eq(fy__limiter_sm_peek(&c, &s, 0, 100 + gaps[k], 1, &v),
                   FY__LIM_ALLOWED);
      cr_assert_eq(v.remaining, 50, "never more than burst");
      cr_assert_eq(v.reset_ms, 0);
      for (j = 0; j < 50; j++)
        cr_assert_eq(take(&c, &s, 100 + gaps[k], 1), FY__LIM_ALLOWED);
      cr_assert_eq(take(&c, &s, 100 + gaps[k], 1), FY__LIM_DENIED);
    }
  }
}

Test(limiter_sm, a_clock_standing_still_never_refills) {
  int i;
  for (i = 0; i < 2; i++) {
    conf_t c = mk(algos[i], 1000, 1, 3);
    state_t s, before;
    verdict_t v;
    int k;
    fresh(&c, &s);
    cr_assert_eq(take(&c, &s, 777, 3), FY__LIM_ALLOWED);
    before = s;
    for (k = 0; k < 1000; k++) {
      cr_assert_eq(fy__limiter_sm_take(&c, &s, 0, 777, 1, &v), FY__LIM_DENIED);
      cr_assert_eq(v.retry_after_ms, 1);
    }
    cr_assert_eq(memcmp(&s, &before, sizeof(s)), 0);
    cr_assert_eq(take(&c, &s, 778, 3), FY__LIM_ALLOWED);
  }
}

Test(limiter_sm, a_clock_going_back_never_refills_nor_underflows) {
  int i;
  for (i = 0; i < 2; i++) {
    conf_t c = mk(algos[i], 1, 1000, 1);
    state_t s, before;
    verdict_t v;
    fresh(&c, &s);
    cr_assert_eq(take(&c, &s, 10000, 1), FY__LIM_ALLOWED); /* due 11000 */
    before = s;
    cr_assert_eq(fy__limiter_sm_take(&c, &s, 0, 5000, 1, &v), FY__LIM_DENIED);
    cr_assert_eq(v.retry_after_ms, 6000, "wait until 11000 on this clock");
    cr_assert_eq(v.remaining, 0);
    cr_assert_eq(v.reset_ms, 6000);
    cr_assert_eq(fy__limiter_sm_take(&c, &s, 0, 0, 1, &v), FY__LIM_DENIED);
    cr_assert_eq(v.retry_after_ms, 11000);
    cr_assert_eq(memcmp(&s, &before, sizeof(s)), 0);
    cr_assert_eq(would(&c, &s, 10999, 1), FY__LIM_DENIED);
    cr_assert_eq(would(&c, &s, 11000, 1), FY__LIM_ALLOWED);
  }
  /* GCRA, bigger burst: tokens taken "in the future" stay taken. */
  {
    conf_t c = mk(FY__LIM_GCRA, 1, 1000, 3);
    state_t s;
    verdict_t v;
    fresh(&c, &s);
    cr_assert_eq(take(&c, &s, 50000, 3), FY__LIM_ALLOWED); /* TAT 53000 */
    cr_assert_eq(fy__limiter_sm_peek(&c, &s, 0, 10, 1, &v), FY__LIM_DENIED);
    cr_assert_eq(v.remaining, 0);
    cr_assert_eq(v.retry_after_ms, 51000 - 10);
    cr_assert_eq(v.reset_ms, 53000 - 10);
  }
  /* Bucket: a key used at an earlier instant than its anchor keeps its
   * tokens and its refill instant. */
  {
    conf_t c = mk(FY__LIM_BUCKET, 2, 1000, 4);
    state_t s;
    verdict_t v;
    fresh(&c, &s);
    cr_assert_eq(take(&c, &s, 9000, 1), FY__LIM_ALLOWED); /* next 10000 */
    cr_assert_eq(fy__limiter_sm_take(&c, &s, 0, 100, 3, &v), FY__LIM_ALLOWED);
    cr_assert_eq(v.remaining, 0);
    cr_assert_eq(v.reset_ms, 10000 + 1000 - 100);
    cr_assert_eq(fy__limiter_sm_take(&c, &s, 0, 100, 1, &v), FY__LIM_DENIED);
    cr_assert_eq(v.retry_after_ms, 9900);
  }
}

Test(limiter_sm, instants_beyond_the_supported_range_saturate) {
  int i;
  for (i = 0; i < 2; i++) {
    conf_t c = mk(algos[i], 1, FY__LIM_INTERVAL_MAX, FY__LIM_BURST_MAX);
    state_t s;
    verdict_t v;
    fresh(&c, &s);
    cr_assert_eq(fy__limiter_sm_take(&c, &s, 0, UINT64_MAX, FY__LIM_BURST_MAX,
                                     &v),
                 FY__LIM_ALLOWED);
    cr_assert_eq(v.remaining, 0);
    cr_assert_eq(v.reset_ms, (uint64_t)FY__LIM_BURST_MAX * FY__LIM_INTERVAL_MAX);
    cr_assert_eq(fy__limiter_sm_take(&c, &s, 0, UINT64_MAX, 1, &v),
                 FY__LIM_DENIED);
    cr_assert_eq(v.retry_after_ms, FY__LIM_INTERVAL_MAX);
    cr_assert_eq(fy__limiter_sm_take(&c, &s, 0, FY__LIM_TIME_MAX, 1, &v),
                 FY__LIM_DENIED, "UINT64_MAX reads as FY__LIM_TIME_MAX");
    cr_assert_gt(fy__limiter_sm_idle_at(&c, &s), FY__LIM_TIME_MAX);
  }
}

/* ====================================================================== *
 * Extreme rates and intervals
 * ====================================================================== */

Test(limiter_sm, huge_rate_tiny_interval) {
  int i;
  for (i = 0; i < 2; i++) {
    conf_t c = mk(algos[i], FY__LIM_RATE_MAX, 1, FY__LIM_BURST_MAX);
    state_t s;
    verdict_t v;
    fresh(&c, &s);
    cr_assert_eq(fy__limiter_sm_take(&c, &s, 0, 42, FY__LIM_BURST_MAX, &v),
                 FY__LIM_ALLOWED);
    cr_assert_eq(v.reset_ms, 1);
    cr_assert_eq(fy__limiter_sm_take(&c, &s, 0, 42, 1, &v), FY__LIM_DENIED);
    cr_assert_eq(v.retry_after_ms, 1);
    cr_assert_eq(take(&c, &s, 43, FY__LIM_BURST_MAX), FY__LIM_ALLOWED,
                 "a full refill in 1 ms");
    cr_assert_eq(take(&c, &s, 44, FY__LIM_BURST_MAX / 2), FY__LIM_ALLOWED);
    cr_assert_eq(fy__limiter_sm_take(&c, &s, 0, 44, FY__LIM_BURST_MAX / 2, &v),
                 FY__LIM_ALLOWED);
    cr_assert_eq(v.remaining, 0);
  }
  /* GCRA: 1e9 per 24 h = one every 86.4 us, 11 or 12 per ms. */
  {
    conf_t c = mk(FY__LIM_GCRA, FY__LIM_RATE_MAX, FY__LIM_INTERVAL_MAX, 100);
    cr_assert_eq(dense(&c, 0, 999), (uint64_t)999 * FY__LIM_RATE_MAX / 86400000 + 100);
  }
}

Test(limiter_sm, slowest_rate_largest_burst) {
  int i;
  for (i = 0; i < 2; i++) {
    conf_t c = mk(algos[i], 1, FY__LIM_INTERVAL_MAX, FY__LIM_BURST_MAX);
    state_t s;
    verdict_t v;
    fresh(&c, &s);
    cr_assert_eq(take(&c, &s, 0, FY__LIM_BURST_MAX), FY__LIM_ALLOWED);
    cr_assert_eq(fy__limiter_sm_take(&c, &s, 0, 1, FY__LIM_BURST_MAX, &v),
                 FY__LIM_DENIED);
    cr_assert_eq(v.retry_after_ms,
                 (uint64_t)FY__LIM_BURST_MAX * FY__LIM_INTERVAL_MAX - 1);
    cr_assert_eq(fy__limiter_sm_idle_at(&c, &s),
                 (uint64_t)FY__LIM_BURST_MAX * FY__LIM_INTERVAL_MAX);
    cr_assert_eq(would(&c, &s, FY__LIM_INTERVAL_MAX - 1, 1), FY__LIM_DENIED);
    cr_assert_eq(would(&c, &s, FY__LIM_INTERVAL_MAX, 1), FY__LIM_ALLOWED);
  }
}

/* ====================================================================== *
 * retry_after is the exact smallest wait
 * ====================================================================== */

static uint64_t rng_next(uint64_t *x) {
  *x ^= *x << 13;
  *x ^= *x >> 7;
  *x ^= *x << 17;
  return *x;
}

/* At now + retry the same take succeeds, at now + retry - 1 it does not;
 * for short waits, no instant in between succeeds either. */
static void check_retry(const conf_t *c, const state_t *s, uint64_t now,
                        uint64_t n) {
  verdict_t v, p;
  state_t t = *s;
  int rc = fy__limiter_sm_take(c, &t, 0, now, n, &v);
  int prc = fy__limiter_sm_peek(c, s, 0, now, n, &p);
  uint64_t r = v.retry_after_ms, x;
  cr_assert_eq(rc, prc, "peek and take disagree");
  cr_assert_eq(p.retry_after_ms, r);
  if (rc == FY__LIM_ALLOWED) {
    cr_assert_eq(r, 0);
    return;
  }
  cr_assert_eq(rc, FY__LIM_DENIED);
  cr_assert_eq(memcmp(&t, s, sizeof(t)), 0, "a denial wrote");
  cr_assert_geq(r, 1);
  cr_assert_eq(would(c, s, now + r, n), FY__LIM_ALLOWED,
               "algo %d %llu/%llu b%llu n%llu: not allowed after %llu",
               c->algo, (unsigned long long)c->rate,
               (unsigned long long)c->interval_ms,
               (unsigned long long)c->burst, (unsigned long long)n,
               (unsigned long long)r);
  cr_assert_eq(would(c, s, now + r - 1, n), FY__LIM_DENIED,
               "algo %d %llu/%llu b%llu n%llu: allowed before %llu", c->algo,
               (unsigned long long)c->rate, (unsigned long long)c->interval_ms,
               (unsigned long long)c->burst, (unsigned long long)n,
               (unsigned long long)r);
  if (r <= 300)
    for (x = 0; x + 1 < r; x++)
      cr_assert_eq(would(c, s, now + x, n), FY__LIM_DENIED);
}

Test(limiter_sm, retry_after_is_exact_over_many_configurations) {
  static const uint64_t rates[] = {1, 2, 3, 7, 10, 1000, 999983, 1000000000};
  static const uint64_t intervals[] = {1, 7, 1000, 60000, 86400000};
  static const uint64_t bursts[] = {1, 2, 5, 100, 1000000000};
  uint64_t rng = 0x9e3779b97f4a7c15ull;
  size_t ri, ii, bi;
  int ai;
  unsigned long checked = 0;

  for (ai = 0; ai < 2; ai++)
    for (ri = 0; ri < sizeof(rates) / sizeof(rates[0]); ri++)
      for (ii = 0; ii < sizeof(intervals) / sizeof(intervals[0]); ii++)
        for (bi = 0; bi < sizeof(bursts) / sizeof(bursts[0]); bi++) {
          conf_t c = mk(algos[ai], rates[ri], intervals[ii], bursts[bi]);
          state_t s;
          uint64_t now = rng_next(&rng) % 100000, step;
          int k;
          fresh(&c, &s);
          for (k = 0; k < 60; k++) {
            uint64_t b = c.burst;
            uint64_t n = k % 3 == 0   ? 1
                         : k % 3 == 1 ? b
                                      : 1 + rng_next(&rng) % b;
            check_retry(&c, &s, now, n);
            check_retry(&c, &s, now, 1);
            check_retry(&c, &s, now, b);
            checked += 3;
            (void)take(&c, &s, now, n);
            /* Steps around the emission interval and the interval. */
            switch (rng_next(&rng) % 4) {
            case 0:
              step = 0;
              break;
            case 1:
              step = rng_next(&rng) % 3;
              break;
            case 2:
              step = c.interval_ms / c.rate + rng_next(&rng) % 2;
              break;
            default:
              step = rng_next(&rng) % (c.interval_ms + 1);
              break;
            }
            now += step;
          }
        }
  cr_assert_gt(checked, 10000);
}

/* ====================================================================== *
 * idle_at: from then on, the state is a fresh key
 * ====================================================================== */

/* From |at| on, |s| and a fresh key decide alike, whatever the requests. */
static void same_as_fresh(const conf_t *c, const state_t *s, uint64_t at) {
  state_t a = *s, f;
  uint64_t t = at, n;
  int k;
  fresh(c, &f);
  for (k = 0; k < 40; k++) {
    verdict_t va, vf;
    n = 1 + (uint64_t)k * 7 % c->burst;
    cr_assert_eq(fy__limiter_sm_take(c, &a, 0, t, n, &va),
                 fy__limiter_sm_take(c, &f, 0, t, n, &vf),
                 "differs from fresh at %llu", (unsigned long long)t);
    cr_assert_eq(va.remaining, vf.remaining);
    cr_assert_eq(va.retry_after_ms, vf.retry_after_ms);
    cr_assert_eq(va.reset_ms, vf.reset_ms);
    t += (uint64_t)k % 5 * c->interval_ms / 3;
  }
}

Test(limiter_sm, idle_at_is_the_earliest_instant_equal_to_fresh) {
  static const uint64_t cases[][3] = {
      {3, 1000, 5}, {7, 1000, 1}, {1, 100, 1000}, {5, 3, 2}, {1000, 1, 7}};
  size_t k;
  int i;
  for (i = 0; i < 2; i++) {
    for (k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
      conf_t c = mk(algos[i], cases[k][0], cases[k][1], cases[k][2]);
      state_t s;
      verdict_t v;
      uint64_t at;
      fresh(&c, &s);
      cr_assert_eq(take(&c, &s, 500, c.burst), FY__LIM_ALLOWED);
      (void)take(&c, &s, 500 + c.interval_ms, 1);
      at = fy__limiter_sm_idle_at(&c, &s);
      cr_assert_gt(at, 500);
      /* One ms earlier it is not a fresh key yet: not full, or (GCRA) a
       * TAT within the last ms still credited to the next take. */
      (void)fy__limiter_sm_peek(&c, &s, 0, at - 1, 1, &v);
      if (v.remaining == c.burst) {
        state_t x = s, f;
        cr_assert_eq(algos[i], FY__LIM_GCRA, "already full before idle_at");
        fresh(&c, &f);
        cr_assert_eq(take(&c, &x, at - 1, c.burst), FY__LIM_ALLOWED);
        cr_assert_eq(take(&c, &f, at - 1, c.burst), FY__LIM_ALLOWED);
        cr_assert_neq(memcmp(&x, &f, sizeof(x)), 0,
                      "equal to fresh before idle_at");
      }
      cr_assert_eq(fy__limiter_sm_peek(&c, &s, 0, at, 1, &v), FY__LIM_ALLOWED);
      cr_assert_eq(v.remaining, c.burst);
      cr_assert_eq(v.reset_ms, 0);
      same_as_fresh(&c, &s, at);
      same_as_fresh(&c, &s, at + 12345);
    }
  }
}

/* ====================================================================== *
 * hold: a server's 429 until an instant
 * ====================================================================== */

Test(limiter_sm, hold_denies_until_the_instant_then_one_step) {
  int i;
  for (i = 0; i < 2; i++) {
    conf_t c = mk(algos[i], 2, 1000, 4);
    state_t s;
    verdict_t v;
    uint64_t t;
    fy__limiter_sm_hold(&c, &s, 1, 100, 5100);
    for (t = 100; t < 5100; t += 37) {
      cr_assert_eq(fy__limiter_sm_take(&c, &s, 0, t, 1, &v), FY__LIM_DENIED);
      cr_assert_eq(v.retry_after_ms, 5100 - t);
    }
    cr_assert_eq(would(&c, &s, 5099, 1), FY__LIM_DENIED);
    cr_assert_eq(fy__limiter_sm_peek(&c, &s, 0, 5100, 1, &v), FY__LIM_ALLOWED);
    /* GCRA: one token at the instant; the bucket: one refill of 2. */
    cr_assert_eq(v.remaining, algos[i] == FY__LIM_GCRA ? 1 : 2);
    cr_assert_eq(take(&c, &s, 5100, v.remaining), FY__LIM_ALLOWED);
    cr_assert_eq(fy__limiter_sm_take(&c, &s, 0, 5100, 1, &v), FY__LIM_DENIED);
    cr_assert_eq(v.retry_after_ms, algos[i] == FY__LIM_GCRA ? 500 : 1000);
    cr_assert_eq(fy__limiter_sm_idle_at(&c, &s), 5100 + 2000);
  }
}

Test(limiter_sm, hold_never_creates_tokens) {
  int i;
  for (i = 0; i < 2; i++) {
    conf_t c = mk(algos[i], 1, 1000, 10);
    state_t s, before;
    uint64_t t;
    fresh(&c, &s);
    cr_assert_eq(take(&c, &s, 0, 10), FY__LIM_ALLOWED);
    /* Empty until ~10 s; a hold to 2 s must not make 2 s better. */
    before = s;
    fy__limiter_sm_hold(&c, &s, 0, 0, 2000);
    for (t = 0; t <= 30000; t += 250) {
      verdict_t vb, va;
      fy__limiter_sm_peek(&c, &before, 0, t, 1, &vb);
      fy__limiter_sm_peek(&c, &s, 0, t, 1, &va);
      cr_assert_leq(va.remaining, vb.remaining, "hold made tokens at %llu",
                    (unsigned long long)t);
    }
    cr_assert_eq(would(&c, &s, 999, 1), FY__LIM_DENIED);
  }
  /* Bucket: a refill pending after the hold's instant stays where it is. */
  {
    conf_t c = mk(FY__LIM_BUCKET, 3, 1000, 3);
    state_t s;
    fresh(&c, &s);
    cr_assert_eq(take(&c, &s, 0, 1), FY__LIM_ALLOWED); /* 2 left, next 1000 */
    fy__limiter_sm_hold(&c, &s, 0, 10, 500);
    cr_assert_eq(would(&c, &s, 500, 1), FY__LIM_DENIED);
    cr_assert_eq(would(&c, &s, 999, 1), FY__LIM_DENIED);
    cr_assert_eq(would(&c, &s, 1000, 3), FY__LIM_ALLOWED);
  }
  /* GCRA: a TAT already beyond the hold's is kept. */
  {
    conf_t c = mk(FY__LIM_GCRA, 1, 1000, 2);
    state_t s, before;
    fresh(&c, &s);
    fy__limiter_sm_hold(&c, &s, 0, 0, 60000);
    before = s;
    fy__limiter_sm_hold(&c, &s, 0, 0, 30000);
    cr_assert_eq(memcmp(&s, &before, sizeof(s)), 0);
  }
}

Test(limiter_sm, hold_in_the_past_changes_nothing) {
  int i;
  for (i = 0; i < 2; i++) {
    conf_t c = mk(algos[i], 3, 1000, 5);
    state_t s, before, f;
    fresh(&c, &s);
    cr_assert_eq(take(&c, &s, 1000, 2), FY__LIM_ALLOWED);
    before = s;
    fy__limiter_sm_hold(&c, &s, 0, 1000, 1000);
    fy__limiter_sm_hold(&c, &s, 0, 1000, 0);
    cr_assert_eq(memcmp(&s, &before, sizeof(s)), 0);
    memset(&s, 0x77, sizeof(s));
    fy__limiter_sm_hold(&c, &s, 1, 1000, 999);
    fresh(&c, &f);
    cr_assert_eq(memcmp(&s, &f, sizeof(s)), 0, "fresh hold leaves a fresh key");
  }
}

Test(limiter_sm, hold_far_in_the_future_saturates) {
  int i;
  for (i = 0; i < 2; i++) {
    conf_t c = mk(algos[i], 1, FY__LIM_INTERVAL_MAX, FY__LIM_BURST_MAX);
    state_t s;
    verdict_t v;
    fy__limiter_sm_hold(&c, &s, 1, 5, UINT64_MAX);
    cr_assert_eq(fy__limiter_sm_take(&c, &s, 0, 5, 1, &v), FY__LIM_DENIED);
    cr_assert_eq(v.retry_after_ms, FY__LIM_TIME_MAX - 5);
    cr_assert_eq(would(&c, &s, UINT64_MAX, 1), FY__LIM_ALLOWED);
  }
}

/* ====================================================================== *
 * peek
 * ====================================================================== */

Test(limiter_sm, peek_reports_without_taking) {
  int i;
  for (i = 0; i < 2; i++) {
    conf_t c = mk(algos[i], 1, 100, 3);
    state_t s, before;
    verdict_t v;
    fresh(&c, &s);
    cr_assert_eq(take(&c, &s, 0, 2), FY__LIM_ALLOWED);
    before = s;
    cr_assert_eq(fy__limiter_sm_peek(&c, &s, 0, 0, 1, &v), FY__LIM_ALLOWED);
    cr_assert_eq(v.remaining, 1, "peek reports what is held, not after");
    cr_assert_eq(v.retry_after_ms, 0);
    cr_assert_eq(fy__limiter_sm_peek(&c, &s, 0, 0, 3, &v), FY__LIM_DENIED);
    cr_assert_eq(v.retry_after_ms, 200);
    cr_assert_eq(v.reset_ms, 200);
    cr_assert_eq(fy__limiter_sm_peek(&c, &s, 0, 0, 3, NULL), FY__LIM_DENIED);
    cr_assert_eq(memcmp(&s, &before, sizeof(s)), 0);
    cr_assert_eq(fy__limiter_sm_peek(&c, NULL, 1, 0, 3, &v), FY__LIM_ALLOWED);
    cr_assert_eq(v.remaining, 3);
  }
}
