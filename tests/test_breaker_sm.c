/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * The circuit breaker's pure state machine (src/sm/breaker_sm.h), driven by
 * hand: no loop, no context, the time passed in.  The driver's tests are in
 * test_breaker.c.  One regression test per fixed Fortify weakness, named
 * after it (w1_, w5_, w6_, w7_, w9_). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "breaker_ev.h"
#include "breaker_sm.h"
#include "fixture.h"

#define F FY_OUTCOME_FAILURE
#define S FY_OUTCOME_SUCCESS
#define I FY_OUTCOME_IGNORE
#define MS 1000000u /* ns per ms */

/* ===========================================================================
 * The pure core, driven by hand.
 * ======================================================================== */

static uint64_t g_win[4096];
static fy__breaker_sm_t C;

static fy_breaker_opts_t defaults(void) {
  fy_breaker_opts_t o;
  fy_breaker_opts_init(&o);
  return o;
}

static void core_new(const fy_breaker_opts_t *o, uint64_t now) {
  cr_assert_eq(fy__breaker_sm_validate(o), 0);
  cr_assert_leq(fy__breaker_sm_window_bytes(o), sizeof(g_win));
  memset(g_win, 0, sizeof(g_win));
  fy__breaker_sm_init(&C, o, g_win, now);
}

/* Acquire and record one outcome: the acquire's return. */
static int step_lat(fy_outcome_t outcome, uint64_t latency_ms, uint64_t now) {
  fy_breaker_permit_t p;
  fy__breaker_sm_verdict_t v;
  int rc = fy__breaker_sm_acquire(&C, &p, now, &v);
  if (rc == 0)
    fy__breaker_sm_record(&C, &p, outcome, latency_ms * MS, now);
  return rc;
}

static int step(fy_outcome_t outcome, uint64_t now) {
  return step_lat(outcome, 0, now);
}

/* Pop every queued state change into |buf| as EV(from, to). */
static unsigned pop_events(int *buf, unsigned max) {
  fy_breaker_state_t from, to;
  unsigned n = 0;
  while (fy__breaker_sm_next_event(&C, &from, &to)) {
    if (n < max)
      buf[n] = EV(from, to);
    n++;
  }
  return n;
}

static fy_breaker_counts_t core_counts(uint64_t now) {
  fy_breaker_counts_t c;
  fy__breaker_sm_counts(&C, now, &c);
  return c;
}


Test(breaker_sm, default_trips_after_five_consecutive_failures) {
  fy_breaker_opts_t o = defaults();
  int ev[8];
  unsigned i;
  core_new(&o, 0);
  for (i = 0; i < 4; i++)
    cr_assert_eq(step(F, 1), 0);
  cr_assert_eq(step(S, 1), 0); /* breaks the run */
  for (i = 0; i < 4; i++)
    cr_assert_eq(step(F, 2), 0);
  cr_assert_eq(fy__breaker_sm_state(&C), FY_BREAKER_CLOSED);
  cr_assert_eq(core_counts(2).consecutive_failures, 4);
  cr_assert_eq(core_counts(2).requests, 9);
  cr_assert_eq(step(F, 3), 0);
  cr_assert_eq(fy__breaker_sm_state(&C), FY_BREAKER_OPEN);
  cr_assert_eq(pop_events(ev, 8), 1);
  cr_assert_eq(ev[0], C2O);
  cr_assert_eq(step(S, 4), FY_ECIRCUITOPEN);
  /* Counts restart on every state change. */
  cr_assert_eq(core_counts(4).requests, 0);
  fy__breaker_sm_free(&C);
}

Test(breaker_sm, failure_threshold_is_an_option_and_zero_turns_it_off) {
  fy_breaker_opts_t o = defaults();
  unsigned i;
  o.failure_threshold = 2;
  core_new(&o, 0);
  step(F, 0);
  cr_assert_eq(fy__breaker_sm_state(&C), FY_BREAKER_CLOSED);
  step(F, 0);
  cr_assert_eq(fy__breaker_sm_state(&C), FY_BREAKER_OPEN);

  o.failure_threshold = 0;
  core_new(&o, 0);
  for (i = 0; i < 1000; i++)
    cr_assert_eq(step(F, i), 0);
  cr_assert_eq(fy__breaker_sm_state(&C), FY_BREAKER_CLOSED);
  cr_assert_eq(core_counts(1000).consecutive_failures, 1000);
}

typedef struct pred_s {
  unsigned calls;
  fy_breaker_counts_t last;
} pred_t;

/* The production guide's predicate: at least 10 requests, 60% failing. */
static int guide_predicate(const fy_breaker_counts_t *c, void *user_data) {
  pred_t *p = user_data;
  p->calls++;
  p->last = *c;
  return c->requests >= 10 &&
         (double)c->total_failures / (double)c->requests >= 0.6;
}

Test(breaker_sm, ready_to_trip_predicate_replaces_default_and_sees_counts) {
  fy_breaker_opts_t o = defaults();
  pred_t pred = {0};
  fy_breaker_permit_t p;
  fy__breaker_sm_verdict_t v;
  unsigned i;
  o.ready_to_trip = guide_predicate;
  o.user_data = &pred;
  core_new(&o, 0);
  for (i = 0; i < 4; i++)
    step(S, 0);
  cr_assert_eq(pred.calls, 0, "consulted on failures only");
  for (i = 0; i < 5; i++)
    step(F, 0); /* 9 requests, more than 5 consecutive failures */
  cr_assert_eq(pred.calls, 5);
  cr_assert_eq(fy__breaker_sm_state(&C), FY_BREAKER_CLOSED);
  cr_assert_eq(pred.last.consecutive_failures, 5);
  step(S, 0); /* 10 requests, 50% */
  cr_assert_eq(pred.calls, 5);
  step(F, 0); /* 11 requests, 6/11 = 54% */
  cr_assert_eq(fy__breaker_sm_state(&C), FY_BREAKER_CLOSED);
  step(F, 0); /* 12, 7/12 = 58% */
  step(F, 0); /* 13, 8/13 = 61.5% */
  cr_assert_eq(fy__breaker_sm_state(&C), FY_BREAKER_OPEN);
  cr_assert_eq(pred.last.requests, 13);
  cr_assert_eq(pred.last.total_failures, 8);
  cr_assert_eq(pred.last.total_successes, 5);
  /* W7: the refusal reports the counts that tripped it. */
  cr_assert_eq(fy__breaker_sm_acquire(&C, &p, 0, &v), FY_ECIRCUITOPEN);
  cr_assert_eq(v.n[0], 13);
  cr_assert_eq(v.n[1], 8);
  cr_assert_eq(v.n[2], 3);
}

Test(breaker_sm, interval_restarts_counts_while_closed) {
  fy_breaker_opts_t o = defaults();
  unsigned i;
  o.interval_ms = 1000;
  core_new(&o, 0);
  for (i = 0; i < 4; i++)
    step(F, 10);
  cr_assert_eq(core_counts(999).consecutive_failures, 4);
  /* The period ends at 1000: the next access restarts the counts. */
  step(F, 1000);
  cr_assert_eq(core_counts(1000).consecutive_failures, 1);
  cr_assert_eq(core_counts(1000).requests, 1);
  cr_assert_eq(fy__breaker_sm_state(&C), FY_BREAKER_CLOSED);
  /* Re-anchored at 1000: the next restart is at 2000. */
  for (i = 0; i < 3; i++)
    step(F, 1999);
  cr_assert_eq(core_counts(1999).requests, 4);
  cr_assert_eq(core_counts(2000).requests, 0);

  /* 0 = never. */
  o.interval_ms = 0;
  core_new(&o, 0);
  for (i = 0; i < 4; i++)
    step(F, (uint64_t)i * 1000000);
  cr_assert_eq(core_counts(10000000).consecutive_failures, 4);
  step(F, 20000000);
  cr_assert_eq(fy__breaker_sm_state(&C), FY_BREAKER_OPEN);
}

Test(breaker_sm, open_moves_to_half_open_after_open_ms) {
  fy_breaker_opts_t o = defaults();
  fy_breaker_permit_t p;
  fy__breaker_sm_verdict_t v;
  int ev[4];
  unsigned i;
  o.open_ms = 5000;
  core_new(&o, 0);
  for (i = 0; i < 5; i++)
    step(F, 100);
  pop_events(ev, 4);
  cr_assert_eq(fy__breaker_sm_wakeup(&C), 5100);
  cr_assert_eq(fy__breaker_sm_acquire(&C, &p, 5099, &v), FY_ECIRCUITOPEN);
  cr_assert_eq(v.state, FY_BREAKER_OPEN);
  cr_assert_eq(v.retry_after_ms, 1);
  cr_assert_eq(pop_events(ev, 4), 0);
  fy__breaker_sm_advance(&C, 5100);
  cr_assert_eq(fy__breaker_sm_state(&C), FY_BREAKER_HALF_OPEN);
  cr_assert_eq(fy__breaker_sm_wakeup(&C), FY_TIME_NEVER);
  cr_assert_eq(pop_events(ev, 4), 1);
  cr_assert_eq(ev[0], O2H);
  /* Lazily too, when nobody advanced it. */
  core_new(&o, 0);
  for (i = 0; i < 5; i++)
    step(F, 0);
  cr_assert_eq(fy__breaker_sm_acquire(&C, &p, 5000, &v), 0);
  cr_assert_eq(fy__breaker_sm_state(&C), FY_BREAKER_HALF_OPEN);
}

/* Trip a default breaker (open 1000 ms) at |now| and move it to half-open
 * at now + 1000. */
static void core_half_open(fy_breaker_opts_t *o, uint64_t now) {
  unsigned i;
  int ev[8];
  core_new(o, now);
  for (i = 0; i < 5; i++)
    step(F, now);
  fy__breaker_sm_advance(&C, now + 1000);
  cr_assert_eq(fy__breaker_sm_state(&C), FY_BREAKER_HALF_OPEN);
  pop_events(ev, 8);
}

Test(breaker_sm, w1_half_open_admits_at_most_max_requests) {
  fy_breaker_opts_t o = defaults();
  fy_breaker_permit_t p[4];
  fy__breaker_sm_verdict_t v;
  unsigned i;
  o.open_ms = 1000;
  o.max_requests = 3;
  core_half_open(&o, 0);
  /* Fortify admits every concurrent caller here; trials are permits. */
  for (i = 0; i < 3; i++)
    cr_assert_eq(fy__breaker_sm_acquire(&C, &p[i], 1000, &v), 0);
  cr_assert_eq(core_counts(1000).inflight, 3);
  cr_assert_eq(fy__breaker_sm_acquire(&C, &p[3], 1000, &v), FY_ECIRCUITOPEN);
  cr_assert_eq(v.state, FY_BREAKER_HALF_OPEN);
  cr_assert_eq(v.retry_after_ms, 0, "documented: 0 in half-open");
  cr_assert_eq(v.n[0], 5, "the counts that tripped it (W7)");
  cr_assert_eq(v.n[2], 5);
  /* A permit given back frees a trial slot. */
  fy__breaker_sm_release(&C, &p[0]);
  cr_assert_eq(core_counts(1000).inflight, 2);
  cr_assert_eq(fy__breaker_sm_acquire(&C, &p[3], 1000, &v), 0);
  cr_assert_eq(fy__breaker_sm_acquire(&C, &p[0], 1000, &v), FY_ECIRCUITOPEN);
  /* An ignored outcome frees one as well, counting nothing. */
  fy__breaker_sm_record(&C, &p[3], I, 0, 1000);
  cr_assert_eq(core_counts(1000).inflight, 2);
  cr_assert_eq(core_counts(1000).requests, 0);
  cr_assert_eq(fy__breaker_sm_acquire(&C, &p[3], 1000, &v), 0);
  cr_assert_eq(fy__breaker_sm_state(&C), FY_BREAKER_HALF_OPEN);
}

Test(breaker_sm, half_open_closes_after_max_requests_successes) {
  fy_breaker_opts_t o = defaults();
  fy_breaker_permit_t p[3];
  fy__breaker_sm_verdict_t v;
  int ev[4];
  unsigned i;
  o.open_ms = 1000;
  o.max_requests = 3;
  core_half_open(&o, 0);
  for (i = 0; i < 3; i++)
    cr_assert_eq(fy__breaker_sm_acquire(&C, &p[i], 1000, &v), 0);
  fy__breaker_sm_record(&C, &p[0], S, 0, 1001);
  fy__breaker_sm_record(&C, &p[1], S, 0, 1002);
  cr_assert_eq(fy__breaker_sm_state(&C), FY_BREAKER_HALF_OPEN);
  cr_assert_eq(core_counts(1002).consecutive_successes, 2);
  fy__breaker_sm_record(&C, &p[2], S, 0, 1003);
  cr_assert_eq(fy__breaker_sm_state(&C), FY_BREAKER_CLOSED);
  cr_assert_eq(pop_events(ev, 4), 1);
  cr_assert_eq(ev[0], H2C);
  cr_assert_eq(core_counts(1003).requests, 0);
}

Test(breaker_sm, half_open_failure_reopens) {
  fy_breaker_opts_t o = defaults();
  fy_breaker_permit_t p[3];
  fy__breaker_sm_verdict_t v;
  int ev[4];
  o.open_ms = 1000;
  o.max_requests = 3;
  core_half_open(&o, 0);
  cr_assert_eq(fy__breaker_sm_acquire(&C, &p[0], 1000, &v), 0);
  cr_assert_eq(fy__breaker_sm_acquire(&C, &p[1], 1000, &v), 0);
  cr_assert_eq(fy__breaker_sm_acquire(&C, &p[2], 1000, &v), 0);
  fy__breaker_sm_record(&C, &p[0], S, 0, 1010);
  fy__breaker_sm_record(&C, &p[1], F, 0, 1020);
  cr_assert_eq(fy__breaker_sm_state(&C), FY_BREAKER_OPEN);
  cr_assert_eq(pop_events(ev, 4), 1);
  cr_assert_eq(ev[0], H2O);
  cr_assert_eq(fy__breaker_sm_wakeup(&C), 2020);
  /* The third trial reports after the change: ignored. */
  fy__breaker_sm_record(&C, &p[2], S, 0, 1030);
  cr_assert_eq(fy__breaker_sm_state(&C), FY_BREAKER_OPEN);
  cr_assert_eq(core_counts(1030).requests, 0);
  /* The refusal reports the half-open counts that re-opened it. */
  cr_assert_eq(fy__breaker_sm_acquire(&C, &p[0], 1030, &v), FY_ECIRCUITOPEN);
  cr_assert_eq(v.n[0], 2);
  cr_assert_eq(v.n[1], 1);
  cr_assert_eq(v.n[2], 1);
  cr_assert_eq(v.retry_after_ms, 990);
}

Test(breaker_sm, zero_max_requests_means_one_and_zero_open_ms_means_60s) {
  fy_breaker_opts_t o = defaults();
  fy_breaker_permit_t p[2];
  fy__breaker_sm_verdict_t v;
  unsigned i;
  o.max_requests = 0;
  o.open_ms = 0;
  core_new(&o, 0);
  for (i = 0; i < 5; i++)
    step(F, 0);
  cr_assert_eq(fy__breaker_sm_wakeup(&C), 60000);
  fy__breaker_sm_advance(&C, 60000);
  cr_assert_eq(fy__breaker_sm_acquire(&C, &p[0], 60000, &v), 0);
  cr_assert_eq(fy__breaker_sm_acquire(&C, &p[1], 60000, &v), FY_ECIRCUITOPEN);
  fy__breaker_sm_record(&C, &p[0], S, 0, 60000);
  cr_assert_eq(fy__breaker_sm_state(&C), FY_BREAKER_CLOSED);
}

Test(breaker_sm, count_window_evicts_the_oldest_outcome) {
  fy_breaker_opts_t o = defaults();
  fy_breaker_counts_t c;
  o.window = FY_BREAKER_WINDOW_COUNT;
  o.window_calls = 4;
  o.failure_rate = 100; /* only an all-failed window trips */
  o.failure_threshold = 0;
  core_new(&o, 0);
  step(F, 0);
  step(F, 0);
  step(S, 0);
  step(S, 0);
  c = core_counts(0);
  cr_assert_eq(c.window_calls, 4);
  cr_assert_eq(c.window_failures, 2);
  step(S, 0); /* evicts the first F */
  c = core_counts(0);
  cr_assert_eq(c.window_calls, 4);
  cr_assert_eq(c.window_failures, 1);
  step(S, 0); /* evicts the second F */
  c = core_counts(0);
  cr_assert_eq(c.window_failures, 0);
  cr_assert_eq(c.requests, 6, "the period counts are not windowed");
  step(F, 0);
  step(F, 0);
  step(F, 0);
  cr_assert_eq(fy__breaker_sm_state(&C), FY_BREAKER_CLOSED);
  cr_assert_eq(core_counts(0).window_failures, 3);
  step(F, 0); /* 4 of 4 */
  cr_assert_eq(fy__breaker_sm_state(&C), FY_BREAKER_OPEN);
}

Test(breaker_sm, time_window_buckets_evict_with_time) {
  fy_breaker_opts_t o = defaults();
  fy_breaker_counts_t c;
  unsigned i;
  o.window = FY_BREAKER_WINDOW_TIME;
  o.window_ms = 1000;
  o.window_buckets = 10; /* 100 ms each */
  o.failure_threshold = 0;
  o.minimum_calls = 1000;
  core_new(&o, 0);
  for (i = 0; i < 3; i++)
    step(F, 10);
  for (i = 0; i < 2; i++)
    step(S, 150);
  step(F, 420);
  c = core_counts(999);
  cr_assert_eq(c.window_calls, 6);
  cr_assert_eq(c.window_failures, 4);
  /* At 1000 the bucket [0, 100) leaves the window. */
  c = core_counts(1000);
  cr_assert_eq(c.window_calls, 3);
  cr_assert_eq(c.window_failures, 1);
  c = core_counts(1100); /* [100, 200) leaves */
  cr_assert_eq(c.window_calls, 1);
  cr_assert_eq(c.window_failures, 1);
  step(S, 1350);
  c = core_counts(1399);
  cr_assert_eq(c.window_calls, 2);
  c = core_counts(1400); /* [400, 500) leaves */
  cr_assert_eq(c.window_calls, 1);
  cr_assert_eq(c.window_failures, 0);
  /* A gap longer than the window clears it at once. */
  step(F, 1500);
  c = core_counts(50000);
  cr_assert_eq(c.window_calls, 0);
  cr_assert_eq(c.window_failures, 0);
  step(F, 50001);
  cr_assert_eq(core_counts(50001).window_calls, 1);
}

Test(breaker_sm, time_window_trips_on_failure_rate) {
  fy_breaker_opts_t o = defaults();
  unsigned i;
  o.window = FY_BREAKER_WINDOW_TIME;
  o.window_ms = 1000;
  o.window_buckets = 4;
  o.failure_threshold = 0;
  o.minimum_calls = 4;
  o.failure_rate = 75;
  core_new(&o, 0);
  step(F, 0);
  step(F, 0);
  step(F, 0);
  /* The failures at 0 leave before the fourth call. */
  for (i = 0; i < 4; i++)
    step(i < 2 ? F : S, 1000 + i);
  cr_assert_eq(fy__breaker_sm_state(&C), FY_BREAKER_CLOSED);
  step(F, 1010); /* 3 of 5 = 60% */
  cr_assert_eq(fy__breaker_sm_state(&C), FY_BREAKER_CLOSED);
  step(F, 1020); /* 4 of 6 = 66% */
  step(F, 1030); /* 5 of 7 = 71% */
  cr_assert_eq(fy__breaker_sm_state(&C), FY_BREAKER_CLOSED);
  step(F, 1040); /* 6 of 8 = 75% */
  cr_assert_eq(fy__breaker_sm_state(&C), FY_BREAKER_OPEN);
}

Test(breaker_sm, minimum_calls_gate_rates) {
  fy_breaker_opts_t o = defaults();
  fy_breaker_permit_t p;
  fy__breaker_sm_verdict_t v;
  unsigned i;
  o.window = FY_BREAKER_WINDOW_COUNT;
  o.window_calls = 10;
  o.minimum_calls = 5;
  o.failure_threshold = 0;
  core_new(&o, 0);
  for (i = 0; i < 4; i++)
    step(F, 0);
  cr_assert_eq(fy__breaker_sm_state(&C), FY_BREAKER_CLOSED, "4 calls < 5");
  step(F, 0);
  cr_assert_eq(fy__breaker_sm_state(&C), FY_BREAKER_OPEN);
  cr_assert_eq(fy__breaker_sm_acquire(&C, &p, 0, &v), FY_ECIRCUITOPEN);
  cr_assert_eq(v.n[0], 5);
  cr_assert_eq(v.n[1], 5);
  cr_assert_eq(v.n[2], 5);
  cr_assert_eq(v.n[3], 0);

  /* A minimum above a count window's size is the size. */
  o.window_calls = 3;
  o.minimum_calls = 100;
  core_new(&o, 0);
  step(F, 0);
  step(F, 0);
  cr_assert_eq(fy__breaker_sm_state(&C), FY_BREAKER_CLOSED);
  step(F, 0);
  cr_assert_eq(fy__breaker_sm_state(&C), FY_BREAKER_OPEN);
}

Test(breaker_sm, failure_rate_threshold) {
  fy_breaker_opts_t o = defaults();
  unsigned i;
  o.window = FY_BREAKER_WINDOW_COUNT;
  o.window_calls = 10;
  o.minimum_calls = 10;
  o.failure_threshold = 0;
  o.failure_rate = 50;
  core_new(&o, 0);
  for (i = 0; i < 5; i++)
    step(S, 0);
  for (i = 0; i < 4; i++)
    step(F, 0);
  cr_assert_eq(fy__breaker_sm_state(&C), FY_BREAKER_CLOSED);
  step(F, 0); /* 5 of 10 = 50% */
  cr_assert_eq(fy__breaker_sm_state(&C), FY_BREAKER_OPEN);

  /* A success can complete the minimum volume and trip too. */
  core_new(&o, 0);
  for (i = 0; i < 6; i++)
    step(F, 0);
  for (i = 0; i < 3; i++)
    step(S, 0);
  cr_assert_eq(fy__breaker_sm_state(&C), FY_BREAKER_CLOSED);
  step(S, 0); /* 6 of 10 */
  cr_assert_eq(fy__breaker_sm_state(&C), FY_BREAKER_OPEN);
}

Test(breaker_sm, slow_call_rate_threshold) {
  fy_breaker_opts_t o = defaults();
  fy_breaker_permit_t p;
  fy__breaker_sm_verdict_t v;
  o.window = FY_BREAKER_WINDOW_COUNT;
  o.window_calls = 4;
  o.minimum_calls = 4;
  o.failure_threshold = 0;
  o.slow_call_ms = 100;
  o.slow_call_rate = 50;
  core_new(&o, 0);
  step_lat(S, 200, 0);
  step_lat(S, 100, 0); /* exactly the threshold: not slow */
  step_lat(S, 50, 0);
  cr_assert_eq(core_counts(0).window_slow, 1);
  cr_assert_eq(core_counts(0).total_slow, 1);
  step_lat(S, 101, 0); /* 2 of 4 slow */
  cr_assert_eq(fy__breaker_sm_state(&C), FY_BREAKER_OPEN);
  cr_assert_eq(fy__breaker_sm_acquire(&C, &p, 0, &v), FY_ECIRCUITOPEN);
  cr_assert_eq(v.n[0], 4);
  cr_assert_eq(v.n[1], 0);
  cr_assert_eq(v.n[3], 2);

  /* slow_call_ms 0: nothing is slow. */
  o.slow_call_ms = 0;
  core_new(&o, 0);
  step_lat(S, 200000, 0);
  step_lat(S, 200000, 0);
  step_lat(S, 200000, 0);
  step_lat(S, 200000, 0);
  cr_assert_eq(core_counts(0).window_slow, 0);
  cr_assert_eq(fy__breaker_sm_state(&C), FY_BREAKER_CLOSED);
}

Test(breaker_sm, slow_trial_in_half_open_reopens_with_a_window) {
  fy_breaker_opts_t o = defaults();
  fy_breaker_permit_t p;
  fy__breaker_sm_verdict_t v;
  o.window = FY_BREAKER_WINDOW_COUNT;
  o.window_calls = 5;
  o.minimum_calls = 5;
  o.open_ms = 1000;
  o.slow_call_ms = 10;
  core_half_open(&o, 0);
  cr_assert_eq(fy__breaker_sm_acquire(&C, &p, 1000, &v), 0);
  fy__breaker_sm_record(&C, &p, S, 11 * MS, 1011);
  cr_assert_eq(fy__breaker_sm_state(&C), FY_BREAKER_OPEN);
  /* Without a window, slowness is only counted. */
  o.window = FY_BREAKER_WINDOW_NONE;
  core_half_open(&o, 0);
  cr_assert_eq(fy__breaker_sm_acquire(&C, &p, 1000, &v), 0);
  fy__breaker_sm_record(&C, &p, S, 11 * MS, 1011);
  cr_assert_eq(fy__breaker_sm_state(&C), FY_BREAKER_CLOSED);
}

/* Fail the trial of a half-open core at |now|: it opens again. */
static void fail_trial(uint64_t now) {
  cr_assert_eq(step(F, now), 0);
  cr_assert_eq(fy__breaker_sm_state(&C), FY_BREAKER_OPEN);
}

Test(breaker_sm, growing_open_duration_with_cap_resets_when_closed) {
  fy_breaker_opts_t o = defaults();
  unsigned i;
  o.open_ms = 1000;
  o.open_multiplier = 2.0;
  o.open_max_ms = 3000;
  core_new(&o, 0);
  for (i = 0; i < 5; i++)
    step(F, 0);
  cr_assert_eq(fy__breaker_sm_wakeup(&C), 1000);
  fy__breaker_sm_advance(&C, 1000);
  fail_trial(1000);
  cr_assert_eq(fy__breaker_sm_wakeup(&C), 3000); /* 2000 */
  fy__breaker_sm_advance(&C, 3000);
  fail_trial(3000);
  cr_assert_eq(fy__breaker_sm_wakeup(&C), 6000); /* 4000 capped to 3000 */
  fy__breaker_sm_advance(&C, 6000);
  fail_trial(6000);
  cr_assert_eq(fy__breaker_sm_wakeup(&C), 9000); /* stays at the cap */
  fy__breaker_sm_advance(&C, 9000);
  cr_assert_eq(step(S, 9000), 0);
  cr_assert_eq(fy__breaker_sm_state(&C), FY_BREAKER_CLOSED);
  for (i = 0; i < 5; i++)
    step(F, 10000);
  cr_assert_eq(fy__breaker_sm_wakeup(&C), 11000, "back to the base duration");
  /* A reset forgets the trips as well. */
  fy__breaker_sm_advance(&C, 11000);
  fail_trial(11000);
  cr_assert_eq(fy__breaker_sm_wakeup(&C), 13000);
  fy__breaker_sm_reset(&C, 13000);
  for (i = 0; i < 5; i++)
    step(F, 13000);
  cr_assert_eq(fy__breaker_sm_wakeup(&C), 14000);
}

Test(breaker_sm, generation_guard_ignores_outcomes_from_before_a_change) {
  fy_breaker_opts_t o = defaults();
  fy_breaker_permit_t old, old2;
  fy__breaker_sm_verdict_t v;
  unsigned i;
  o.open_ms = 1000;
  core_new(&o, 0);
  cr_assert_eq(fy__breaker_sm_acquire(&C, &old, 0, &v), 0);
  cr_assert_eq(fy__breaker_sm_acquire(&C, &old2, 0, &v), 0);
  for (i = 0; i < 5; i++)
    step(F, 0);
  fy__breaker_sm_advance(&C, 1000);
  cr_assert_eq(fy__breaker_sm_state(&C), FY_BREAKER_HALF_OPEN);
  /* Admitted while closed, reporting in half-open: it must not close or
   * re-open the breaker, nor take a trial slot. */
  fy__breaker_sm_record(&C, &old, F, 0, 1000);
  cr_assert_eq(fy__breaker_sm_state(&C), FY_BREAKER_HALF_OPEN);
  fy__breaker_sm_record(&C, &old2, S, 0, 1000);
  cr_assert_eq(fy__breaker_sm_state(&C), FY_BREAKER_HALF_OPEN);
  cr_assert_eq(core_counts(1000).requests, 0);
  cr_assert_eq(core_counts(1000).inflight, 0);
  /* A reset is a change too. */
  fy__breaker_sm_reset(&C, 1000);
  cr_assert_eq(fy__breaker_sm_acquire(&C, &old, 1000, &v), 0);
  fy__breaker_sm_reset(&C, 1000);
  fy__breaker_sm_record(&C, &old, F, 0, 1000);
  cr_assert_eq(core_counts(1000).requests, 0);
  /* A permit is used once. */
  cr_assert_eq(fy__breaker_sm_acquire(&C, &old, 1000, &v), 0);
  fy__breaker_sm_record(&C, &old, F, 0, 1000);
  fy__breaker_sm_record(&C, &old, F, 0, 1000);
  fy__breaker_sm_release(&C, &old);
  cr_assert_eq(core_counts(1000).requests, 1);
  cr_assert_eq(core_counts(1000).inflight, 0);
}

Test(breaker_sm, w9_counts_are_64_bit) {
  fy_breaker_opts_t o = defaults();
  fy_breaker_counts_t c;
  o.failure_threshold = 0;
  core_new(&o, 0);
  /* 2^32 outcomes take too long to record; start just below the wrap. */
  C.counts.requests = UINT32_MAX;
  C.counts.total_failures = UINT32_MAX;
  C.counts.consecutive_failures = UINT32_MAX;
  step(F, 0);
  c = core_counts(0);
  cr_assert_eq(c.requests, (uint64_t)UINT32_MAX + 1);
  cr_assert_eq(c.total_failures, (uint64_t)UINT32_MAX + 1);
  cr_assert_eq(c.consecutive_failures, (uint64_t)UINT32_MAX + 1);
  cr_assert_eq(sizeof(c.requests), 8);
  cr_assert_eq(sizeof(((fy_breaker_permit_t *)0)->generation), 8);
}

Test(breaker_sm, w7_refusal_carries_the_counts_that_tripped_it) {
  fy_breaker_opts_t o = defaults();
  fy_breaker_permit_t p;
  fy__breaker_sm_verdict_t v;
  unsigned i;
  o.open_ms = 30000;
  core_new(&o, 1000);
  step(S, 1000);
  for (i = 0; i < 5; i++)
    step(F, 1000);
  /* Fortify reports zeros here: the counts were reset on opening. */
  cr_assert_eq(fy__breaker_sm_acquire(&C, &p, 11000, &v), FY_ECIRCUITOPEN);
  cr_assert_eq(v.refused, FY_ECIRCUITOPEN);
  cr_assert_eq(v.state, FY_BREAKER_OPEN);
  cr_assert_eq(v.retry_after_ms, 20000, "ms until half-open");
  cr_assert_eq(v.n[0], 6);
  cr_assert_eq(v.n[1], 5);
  cr_assert_eq(v.n[2], 5);
  cr_assert_eq(v.n[3], 0);
  cr_assert_eq(core_counts(11000).requests, 0);
}

Test(breaker_sm, forced_open_refuses_everything) {
  fy_breaker_opts_t o = defaults();
  fy_breaker_permit_t p;
  fy__breaker_sm_verdict_t v;
  int ev[4];
  core_new(&o, 0);
  cr_assert_eq(fy__breaker_sm_set_mode(&C, FY_BREAKER_FORCED_OPEN, 0), 0);
  cr_assert_eq(fy__breaker_sm_state(&C), FY_BREAKER_OPEN);
  cr_assert_eq(pop_events(ev, 4), 1);
  cr_assert_eq(ev[0], C2O);
  cr_assert_eq(fy__breaker_sm_acquire(&C, &p, 1000000, &v), FY_ECIRCUITOPEN);
  cr_assert_eq(v.state, FY_BREAKER_OPEN);
  cr_assert_eq(v.retry_after_ms, 0, "no scheduled end");
  cr_assert_eq(v.n[0], 0);
  cr_assert_eq(fy__breaker_sm_wakeup(&C), FY_TIME_NEVER);
  cr_assert_eq(fy__breaker_sm_set_mode(&C, FY_BREAKER_NORMAL, 5), 0);
  cr_assert_eq(pop_events(ev, 4), 1);
  cr_assert_eq(ev[0], O2C);
  cr_assert_eq(fy__breaker_sm_acquire(&C, &p, 5, &v), 0);
}

Test(breaker_sm, forced_closed_counts_but_never_trips) {
  fy_breaker_opts_t o = defaults();
  fy_breaker_permit_t p;
  fy__breaker_sm_verdict_t v;
  int ev[4];
  unsigned i;
  o.open_ms = 1000;
  core_new(&o, 0);
  for (i = 0; i < 5; i++)
    step(F, 0);
  cr_assert_eq(fy__breaker_sm_state(&C), FY_BREAKER_OPEN);
  pop_events(ev, 4);
  cr_assert_eq(fy__breaker_sm_set_mode(&C, FY_BREAKER_FORCED_CLOSED, 10), 0);
  cr_assert_eq(fy__breaker_sm_state(&C), FY_BREAKER_CLOSED);
  cr_assert_eq(pop_events(ev, 4), 1);
  cr_assert_eq(ev[0], O2C);
  cr_assert_eq(fy__breaker_sm_wakeup(&C), FY_TIME_NEVER);
  for (i = 0; i < 50; i++)
    cr_assert_eq(step(F, 20), 0);
  cr_assert_eq(fy__breaker_sm_state(&C), FY_BREAKER_CLOSED);
  cr_assert_eq(core_counts(20).consecutive_failures, 50);
  cr_assert_eq(pop_events(ev, 4), 0);
  /* Back to normal: a fresh closed machine. */
  cr_assert_eq(fy__breaker_sm_acquire(&C, &p, 20, &v), 0);
  cr_assert_eq(fy__breaker_sm_set_mode(&C, FY_BREAKER_NORMAL, 30), 0);
  cr_assert_eq(pop_events(ev, 4), 0, "closed to closed: nothing to say");
  cr_assert_eq(core_counts(30).requests, 0);
  fy__breaker_sm_record(&C, &p, F, 0, 30); /* from the forced period: ignored */
  cr_assert_eq(core_counts(30).requests, 0);
}

Test(breaker_sm, disabled_counts_nothing_and_refuses_nothing) {
  fy_breaker_opts_t o = defaults();
  int ev[4];
  unsigned i;
  o.mode = FY_BREAKER_DISABLED;
  core_new(&o, 0);
  for (i = 0; i < 100; i++)
    cr_assert_eq(step(F, i), 0);
  cr_assert_eq(fy__breaker_sm_state(&C), FY_BREAKER_CLOSED);
  cr_assert_eq(core_counts(100).requests, 0);
  cr_assert_eq(core_counts(100).inflight, 0);
  cr_assert_eq(pop_events(ev, 4), 0);
}

Test(breaker_sm, metrics_only_runs_the_machine_and_never_refuses) {
  fy_breaker_opts_t o = defaults();
  fy_breaker_permit_t p[3];
  fy__breaker_sm_verdict_t v;
  int ev[8];
  unsigned i;
  o.mode = FY_BREAKER_METRICS_ONLY;
  o.open_ms = 1000;
  o.max_requests = 2;
  core_new(&o, 0);
  for (i = 0; i < 5; i++)
    cr_assert_eq(step(F, 0), 0);
  cr_assert_eq(fy__breaker_sm_state(&C), FY_BREAKER_OPEN);
  cr_assert_eq(pop_events(ev, 8), 1);
  cr_assert_eq(ev[0], C2O);
  /* Would refuse: admits, flagged dry, as a shadow that counts nothing. */
  cr_assert_eq(fy__breaker_sm_acquire(&C, &p[0], 400, &v), 0);
  cr_assert_eq(v.dry, 1);
  cr_assert_eq(v.refused, 0);
  cr_assert_eq(v.state, FY_BREAKER_OPEN);
  cr_assert_eq(v.retry_after_ms, 600);
  cr_assert_eq(v.n[2], 5);
  fy__breaker_sm_record(&C, &p[0], S, 0, 500);
  cr_assert_eq(fy__breaker_sm_state(&C), FY_BREAKER_OPEN);
  cr_assert_eq(fy__breaker_sm_wakeup(&C), 1000, "the eager move still runs");
  fy__breaker_sm_advance(&C, 1000);
  cr_assert_eq(pop_events(ev, 8), 1);
  cr_assert_eq(ev[0], O2H);
  /* Two trials, the third is a shadow. */
  cr_assert_eq(fy__breaker_sm_acquire(&C, &p[0], 1000, &v), 0);
  cr_assert_eq(v.dry, 0);
  cr_assert_eq(fy__breaker_sm_acquire(&C, &p[1], 1000, &v), 0);
  cr_assert_eq(fy__breaker_sm_acquire(&C, &p[2], 1000, &v), 0);
  cr_assert_eq(v.dry, 1);
  cr_assert_eq(v.state, FY_BREAKER_HALF_OPEN);
  fy__breaker_sm_record(&C, &p[2], F, 0, 1001); /* shadow: not counted */
  cr_assert_eq(fy__breaker_sm_state(&C), FY_BREAKER_HALF_OPEN);
  fy__breaker_sm_record(&C, &p[0], S, 0, 1002);
  fy__breaker_sm_record(&C, &p[1], S, 0, 1003);
  cr_assert_eq(fy__breaker_sm_state(&C), FY_BREAKER_CLOSED);
  cr_assert_eq(pop_events(ev, 8), 1);
  cr_assert_eq(ev[0], H2C);
  /* Switching dry run off keeps the machine as it is. */
  for (i = 0; i < 5; i++)
    step(F, 2000);
  cr_assert_eq(fy__breaker_sm_set_mode(&C, FY_BREAKER_NORMAL, 2000), 0);
  cr_assert_eq(fy__breaker_sm_state(&C), FY_BREAKER_OPEN);
  cr_assert_eq(step(S, 2000), FY_ECIRCUITOPEN);
}

Test(breaker_sm, w6_reset_on_a_closed_breaker_emits_nothing) {
  fy_breaker_opts_t o = defaults();
  int ev[4];
  unsigned i;
  core_new(&o, 0);
  step(F, 0);
  fy__breaker_sm_reset(&C, 0);
  cr_assert_eq(pop_events(ev, 4), 0);
  cr_assert_eq(core_counts(0).requests, 0, "counts are fresh all the same");
  for (i = 0; i < 5; i++)
    step(F, 0);
  pop_events(ev, 4);
  fy__breaker_sm_reset(&C, 0);
  cr_assert_eq(pop_events(ev, 4), 1);
  cr_assert_eq(ev[0], O2C);
  cr_assert_eq(fy__breaker_sm_wakeup(&C), FY_TIME_NEVER);
  /* Forced open stays open across a reset: the mode is the operator's. */
  fy__breaker_sm_set_mode(&C, FY_BREAKER_FORCED_OPEN, 0);
  pop_events(ev, 4);
  fy__breaker_sm_reset(&C, 0);
  cr_assert_eq(pop_events(ev, 4), 0);
  cr_assert_eq(fy__breaker_sm_state(&C), FY_BREAKER_OPEN);
}

Test(breaker_sm, ignored_outcome_counts_as_neither) {
  fy_breaker_opts_t o = defaults();
  unsigned i;
  core_new(&o, 0);
  for (i = 0; i < 4; i++)
    step(F, 0);
  step(I, 0);
  cr_assert_eq(core_counts(0).requests, 4);
  cr_assert_eq(core_counts(0).consecutive_failures, 4, "run not broken");
  cr_assert_eq(core_counts(0).inflight, 0);
  step(F, 0);
  cr_assert_eq(fy__breaker_sm_state(&C), FY_BREAKER_OPEN);
}

Test(breaker_sm, w5_queued_changes_grow_and_stay_in_order) {
  fy_breaker_opts_t o = defaults();
  int ev[2100];
  unsigned i, n;
  core_new(&o, 0);
  /* 1000 flips with nobody draining: far beyond the inline queue. */
  for (i = 0; i < 1000; i++)
    fy__breaker_sm_set_mode(&C,
                     i % 2 == 0 ? FY_BREAKER_FORCED_OPEN : FY_BREAKER_NORMAL,
                     i);
  n = pop_events(ev, 2100);
  cr_assert_eq(n, 1000);
  for (i = 0; i < n; i++)
    cr_assert_eq(ev[i], i % 2 == 0 ? C2O : O2C, "event %u", i);
  cr_assert_eq(C.ev_merged, 0);
  fy__breaker_sm_free(&C);
}


Test(breaker_sm, event_queue_merges_rather_than_drops_without_memory) {
  fy_breaker_opts_t o = defaults();
  fy_breaker_state_t from, to;
  unsigned i, n = 0;
  fa_install(-1);
  core_new(&o, 0);
  /* Fill the inline queue, then fail the growth: the 33rd change (open ->
   * closed after closed -> open) merges into the last one. */
  for (i = 0; i < FY__BREAKER_SM_EV_INLINE; i++)
    fy__breaker_sm_set_mode(&C,
                     i % 2 == 0 ? FY_BREAKER_FORCED_OPEN : FY_BREAKER_NORMAL,
                     0);
  cr_assert_eq(fy__breaker_sm_state(&C), FY_BREAKER_CLOSED);
  fa_fail_next();
  fy__breaker_sm_set_mode(&C, FY_BREAKER_FORCED_OPEN, 0);
  cr_assert_eq(C.ev_merged, 1);
  /* open->closed then closed->open cancel out; the chain still ends where
   * the breaker is. */
  while (fy__breaker_sm_next_event(&C, &from, &to))
    n++;
  cr_assert_eq(n, FY__BREAKER_SM_EV_INLINE - 1);
  cr_assert_eq(from, FY_BREAKER_CLOSED);
  cr_assert_eq(to, FY_BREAKER_OPEN);
  cr_assert_eq(fy__breaker_sm_state(&C), FY_BREAKER_OPEN);
  /* With memory again, the queue grows. */
  for (i = 0; i < 100; i++)
    fy__breaker_sm_set_mode(&C,
                     i % 2 == 0 ? FY_BREAKER_NORMAL : FY_BREAKER_FORCED_OPEN,
                     0);
  n = 0;
  while (fy__breaker_sm_next_event(&C, &from, &to))
    n++;
  cr_assert_eq(n, 100);
  fy__breaker_sm_free(&C);
}
