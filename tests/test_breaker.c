/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * Circuit breaker: the pure state machine (src/breaker.h, no loop) first,
 * then the driver on a manual-clock context: the synchronous two-step API,
 * the pipeline stage, events, re-entrancy and close.  One regression test
 * per fixed Fortify weakness, named after it (w1_, w3_, w5_, w6_, w7_,
 * w9_). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "breaker_sm.h"
#include "fixture.h"

#define F FY_OUTCOME_FAILURE
#define S FY_OUTCOME_SUCCESS
#define I FY_OUTCOME_IGNORE
#define EV(from, to) ((int)(from)*10 + (int)(to))
#define C2O EV(FY_BREAKER_CLOSED, FY_BREAKER_OPEN)
#define O2H EV(FY_BREAKER_OPEN, FY_BREAKER_HALF_OPEN)
#define H2O EV(FY_BREAKER_HALF_OPEN, FY_BREAKER_OPEN)
#define H2C EV(FY_BREAKER_HALF_OPEN, FY_BREAKER_CLOSED)
#define O2C EV(FY_BREAKER_OPEN, FY_BREAKER_CLOSED)
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

Test(breaker, opts_init_fills_documented_defaults) {
  fy_breaker_opts_t o;
  memset(&o, 0xab, sizeof(o));
  fy_breaker_opts_init(&o);
  cr_assert_null(o.name);
  cr_assert_eq(o.max_requests, 1);
  cr_assert_eq(o.interval_ms, 0);
  cr_assert_eq(o.open_ms, 60000);
  cr_assert_null(o.ready_to_trip);
  cr_assert_eq(o.failure_threshold, 5);
  cr_assert_null(o.on_state_change);
  cr_assert_null(o.classify);
  cr_assert_null(o.user_data);
  cr_assert_eq(o.window, FY_BREAKER_WINDOW_NONE);
  cr_assert_eq(o.window_calls, 100);
  cr_assert_eq(o.window_ms, 10000);
  cr_assert_eq(o.window_buckets, 10);
  cr_assert_eq(o.minimum_calls, 100);
  cr_assert_float_eq(o.failure_rate, 50.0, 1e-9);
  cr_assert_float_eq(o.slow_call_rate, 100.0, 1e-9);
  cr_assert_eq(o.slow_call_ms, 0);
  cr_assert_float_eq(o.open_multiplier, 1.0, 1e-9);
  cr_assert_eq(o.open_max_ms, 0);
  cr_assert_eq(o.mode, FY_BREAKER_NORMAL);
  fy_breaker_opts_init(NULL); /* harmless */
}

Test(breaker, default_trips_after_five_consecutive_failures) {
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

Test(breaker, failure_threshold_is_an_option_and_zero_turns_it_off) {
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

Test(breaker, ready_to_trip_predicate_replaces_default_and_sees_counts) {
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

Test(breaker, interval_restarts_counts_while_closed) {
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

Test(breaker, open_moves_to_half_open_after_open_ms) {
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

Test(breaker, w1_half_open_admits_at_most_max_requests) {
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

Test(breaker, half_open_closes_after_max_requests_successes) {
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

Test(breaker, half_open_failure_reopens) {
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

Test(breaker, zero_max_requests_means_one_and_zero_open_ms_means_60s) {
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

Test(breaker, count_window_evicts_the_oldest_outcome) {
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

Test(breaker, time_window_buckets_evict_with_time) {
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

Test(breaker, time_window_trips_on_failure_rate) {
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

Test(breaker, minimum_calls_gate_rates) {
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

Test(breaker, failure_rate_threshold) {
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

Test(breaker, slow_call_rate_threshold) {
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

Test(breaker, slow_trial_in_half_open_reopens_with_a_window) {
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

Test(breaker, growing_open_duration_with_cap_resets_when_closed) {
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

Test(breaker, generation_guard_ignores_outcomes_from_before_a_change) {
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

Test(breaker, w9_counts_are_64_bit) {
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

Test(breaker, w7_refusal_carries_the_counts_that_tripped_it) {
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

Test(breaker, forced_open_refuses_everything) {
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

Test(breaker, forced_closed_counts_but_never_trips) {
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

Test(breaker, disabled_counts_nothing_and_refuses_nothing) {
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

Test(breaker, metrics_only_runs_the_machine_and_never_refuses) {
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

Test(breaker, w6_reset_on_a_closed_breaker_emits_nothing) {
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

Test(breaker, ignored_outcome_counts_as_neither) {
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

Test(breaker, w5_queued_changes_grow_and_stay_in_order) {
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

Test(breaker, state_and_mode_names) {
  cr_assert_str_eq(fy_breaker_state_name(FY_BREAKER_CLOSED), "closed");
  cr_assert_str_eq(fy_breaker_state_name(FY_BREAKER_OPEN), "open");
  cr_assert_str_eq(fy_breaker_state_name(FY_BREAKER_HALF_OPEN), "half-open");
  cr_assert_str_eq(fy_breaker_state_name((fy_breaker_state_t)7), "unknown");
  cr_assert_str_eq(fy_breaker_mode_name(FY_BREAKER_NORMAL), "normal");
  cr_assert_str_eq(fy_breaker_mode_name(FY_BREAKER_FORCED_OPEN),
                   "forced-open");
  cr_assert_str_eq(fy_breaker_mode_name(FY_BREAKER_FORCED_CLOSED),
                   "forced-closed");
  cr_assert_str_eq(fy_breaker_mode_name(FY_BREAKER_DISABLED), "disabled");
  cr_assert_str_eq(fy_breaker_mode_name(FY_BREAKER_METRICS_ONLY),
                   "metrics-only");
  cr_assert_str_eq(fy_breaker_mode_name(FY_BREAKER_MODE__COUNT), "unknown");
}

/* ===========================================================================
 * The driver on a manual-clock context.
 * ======================================================================== */

/* Counting allocator: live blocks, and an optional failure. */
static long g_live;
static int g_fail_next;

static void *cnt_malloc(size_t n) {
  void *p;
  if (g_fail_next) {
    g_fail_next = 0;
    return NULL;
  }
  p = malloc(n);
  g_live += p != NULL;
  return p;
}

static void *cnt_realloc(void *p, size_t n) {
  void *q = realloc(p, n);
  if (p == NULL && q != NULL)
    g_live++;
  return q;
}

static void *cnt_calloc(size_t a, size_t b) {
  void *p;
  if (g_fail_next) {
    g_fail_next = 0;
    return NULL;
  }
  p = calloc(a, b);
  g_live += p != NULL;
  return p;
}

static void cnt_free(void *p) {
  g_live -= p != NULL;
  free(p);
}

/* What the breaker told the outside world, in order. */
#define LOG_MAX 4096
typedef struct rec_s rec_t;
typedef void (*rec_hook_fn)(rec_t *r, fy_breaker_state_t from,
                            fy_breaker_state_t to);
struct rec_s {
  fy_breaker_t *b;
  unsigned n;               /* on_state_change */
  int ev[LOG_MAX];
  uint64_t at[LOG_MAX];
  unsigned ln;              /* listener, FY_EV_STATE_CHANGE */
  int lev[LOG_MAX];
  char seq[2 * LOG_MAX + 1]; /* 'c' callback, 'l' listener, interleaved */
  unsigned nseq;
  unsigned nreject;
  int reject_value;
  uint64_t reject_delay;
  fy_call_t *reject_call;
  int reject_from;
  rec_hook_fn hook;         /* runs inside on_state_change */
  rec_hook_fn lhook;        /* runs inside the listener */
  int bad_event;
};

static rec_t R;

static void on_change(fy_breaker_state_t from, fy_breaker_state_t to,
                      void *user_data) {
  rec_t *r = user_data;
  if (r->n < LOG_MAX) {
    r->ev[r->n] = EV(from, to);
    r->at[r->n] = fy_ctx_now(FX.ctx);
  }
  r->n++;
  if (r->nseq < 2 * LOG_MAX)
    r->seq[r->nseq++] = 'c';
  if (r->hook != NULL)
    r->hook(r, from, to);
}

static void on_event(fy_ctx_t *ctx, const fy_event_t *ev, void *user_data) {
  rec_t *r = user_data;
  (void)ctx;
  if (ev->policy != fy_breaker_policy(r->b) ||
      strcmp(ev->policy_kind, "breaker") != 0)
    r->bad_event++;
  if (ev->type == FY_EV_REJECT) {
    r->nreject++;
    r->reject_value = (int)ev->value;
    r->reject_delay = ev->delay_ms;
    r->reject_call = ev->call;
    r->reject_from = (int)ev->from;
    if (ev->status != FY_ECIRCUITOPEN)
      r->bad_event++;
    return;
  }
  if (r->ln < LOG_MAX)
    r->lev[r->ln] = EV(ev->from, ev->to);
  r->ln++;
  if (r->nseq < 2 * LOG_MAX)
    r->seq[r->nseq++] = 'l';
  if (r->lhook != NULL)
    r->lhook(r, (fy_breaker_state_t)ev->from, (fy_breaker_state_t)ev->to);
}

/* A breaker on FX wired to R.  |o| may be NULL (defaults). */
static fy_breaker_t *mk(fy_breaker_opts_t *o) {
  fy_breaker_opts_t d;
  fy_breaker_t *b = NULL;
  if (o == NULL) {
    d = defaults();
    o = &d;
  }
  o->on_state_change = on_change;
  o->user_data = &R;
  if (o->name == NULL)
    o->name = "db";
  cr_assert_eq(fy_breaker_new(FX.ctx, o, &b), 0);
  cr_assert_not_null(b);
  R.b = b;
  cr_assert_eq(fy_ctx_listen(FX.ctx,
                             FY_EV_MASK(FY_EV_STATE_CHANGE) |
                                 FY_EV_MASK(FY_EV_REJECT),
                             on_event, &R, NULL),
               0);
  return b;
}

static void fail_n(fy_breaker_t *b, unsigned n) {
  fy_breaker_permit_t p;
  unsigned i;
  for (i = 0; i < n; i++) {
    cr_assert_eq(fy_breaker_acquire(b, &p, NULL), 0);
    fy_breaker_record(b, &p, UV_ECONNRESET);
  }
}

static fy_pipeline_t *pipe_of(fy_breaker_t *b) {
  fy_policy_t *p = fy_breaker_policy(b);
  fy_pipeline_t *pl = NULL;
  cr_assert_eq(fy_pipeline_new(FX.ctx, &p, 1, &pl), 0);
  return pl;
}

static fy_breaker_counts_t counts(fy_breaker_t *b) {
  fy_breaker_counts_t c;
  fy_breaker_counts(b, &c);
  return c;
}

Test(breaker, standalone_two_step_api) {
  fy_breaker_opts_t o = defaults();
  fy_breaker_t *b;
  fy_breaker_permit_t p;
  fy_detail_t d;
  fx_init(&FX, 1000);
  o.open_ms = 10000;
  b = mk(&o);
  cr_assert_eq(fy_breaker_acquire(b, &p, &d), 0);
  cr_assert_eq(counts(b).inflight, 1);
  fy_breaker_record(b, &p, 0);
  cr_assert_eq(counts(b).total_successes, 1);
  cr_assert_eq(counts(b).inflight, 0);
  /* release: an excluded outcome. */
  cr_assert_eq(fy_breaker_acquire(b, &p, NULL), 0);
  fy_breaker_release(b, &p);
  cr_assert_eq(counts(b).requests, 1);
  cr_assert_eq(counts(b).inflight, 0);
  /* The default classifier: UV_ECANCELED counts as neither. */
  cr_assert_eq(fy_breaker_acquire(b, &p, NULL), 0);
  fy_breaker_record(b, &p, UV_ECANCELED);
  cr_assert_eq(counts(b).requests, 1);
  fail_n(b, 5);
  cr_assert_eq(fy_breaker_state(b), FY_BREAKER_OPEN);
  fx_advance(&FX, 2500);
  cr_assert_eq(fy_breaker_acquire(b, &p, &d), FY_ECIRCUITOPEN);
  cr_assert_str_eq(d.by_kind, "breaker");
  cr_assert_str_eq(d.by_name, "db");
  cr_assert_eq(d.state, FY_BREAKER_OPEN);
  cr_assert_eq(d.retry_after_ms, 7500);
  cr_assert_eq(d.n[0], 6, "the success before the failures counts");
  cr_assert_eq(d.n[1], 5);
  cr_assert_eq(d.n[2], 5);
  cr_assert_eq(d.cause, 0);
  cr_assert_eq(R.nreject, 1);
  cr_assert_null(R.reject_call);
  cr_assert_eq(R.reject_delay, 7500);
  cr_assert_eq(R.reject_value, 0);
  fy_breaker_record(b, &p, UV_EIO); /* a refused permit is inert */
  cr_assert_eq(fy_breaker_acquire(NULL, &p, NULL), UV_EINVAL);
  cr_assert_eq(fy_breaker_acquire(b, NULL, NULL), UV_EINVAL);
  fy_breaker_record(NULL, &p, 0);
  fy_breaker_record(b, NULL, 0);
  fy_breaker_release(NULL, &p);
  cr_assert_eq(R.bad_event, 0);
  fx_finish(&FX);
}

Test(breaker, latency_is_measured_from_acquire) {
  fy_breaker_opts_t o = defaults();
  fy_breaker_t *b;
  fy_breaker_permit_t p;
  fx_init(&FX, 0);
  o.slow_call_ms = 100;
  b = mk(&o);
  cr_assert_eq(fy_breaker_acquire(b, &p, NULL), 0);
  fx_advance(&FX, 101);
  fy_breaker_record(b, &p, 0);
  cr_assert_eq(counts(b).total_slow, 1);
  cr_assert_eq(fy_breaker_acquire(b, &p, NULL), 0);
  fx_advance(&FX, 100);
  fy_breaker_record(b, &p, 0);
  cr_assert_eq(counts(b).total_slow, 1);
  fx_finish(&FX);
}

static fy_outcome_t classify_custom(int status, void *user_data) {
  cr_assert_eq(user_data, (void *)&R);
  if (status == UV_ENOENT)
    return FY_OUTCOME_SUCCESS; /* "not found" is an answer */
  if (status == UV_EAGAIN)
    return FY_OUTCOME_IGNORE;
  if (status == UV_EIO)
    return (fy_outcome_t)42; /* out of range: counts as a failure */
  return fy_classify_default(status, NULL);
}

Test(breaker, classifier_decides_what_counts) {
  fy_breaker_opts_t o = defaults();
  fy_breaker_t *b;
  fy_breaker_permit_t p;
  fx_init(&FX, 0);
  o.classify = classify_custom;
  b = mk(&o);
  fy_breaker_acquire(b, &p, NULL);
  fy_breaker_record(b, &p, UV_ENOENT);
  fy_breaker_acquire(b, &p, NULL);
  fy_breaker_record(b, &p, UV_EAGAIN);
  fy_breaker_acquire(b, &p, NULL);
  fy_breaker_record(b, &p, UV_EIO);
  cr_assert_eq(counts(b).total_successes, 1);
  cr_assert_eq(counts(b).total_failures, 1);
  cr_assert_eq(counts(b).requests, 2);
  cr_assert_eq(counts(b).inflight, 0);
  fx_finish(&FX);
}

Test(breaker, null_opts_give_defaults) {
  fy_breaker_t *b = NULL;
  fx_init(&FX, 0);
  cr_assert_eq(fy_breaker_new(FX.ctx, NULL, &b), 0);
  cr_assert_not_null(b);
  fail_n(b, 4);
  cr_assert_eq(fy_breaker_state(b), FY_BREAKER_CLOSED);
  fail_n(b, 1);
  cr_assert_eq(fy_breaker_state(b), FY_BREAKER_OPEN);
  cr_assert_str_eq(fy_policy_name(fy_breaker_policy(b)), "");
  cr_assert_str_eq(fy_policy_kind(fy_breaker_policy(b)), "breaker");
  cr_assert_eq(fy_ctx_pending_deadlines(FX.ctx), 1);
  fx_advance(&FX, 59999);
  cr_assert_eq(fy_breaker_state(b), FY_BREAKER_OPEN);
  fx_advance(&FX, 1);
  cr_assert_eq(fy_breaker_state(b), FY_BREAKER_HALF_OPEN);
  fx_finish(&FX);
}

Test(breaker, pipeline_refuses_synchronously_with_detail) {
  fy_breaker_opts_t o = defaults();
  fy_breaker_t *b;
  fy_pipeline_t *pl;
  static top_t top;
  static tcall_t tc[8];
  unsigned i;
  fx_init(&FX, 0);
  o.open_ms = 5000;
  o.name = "payments";
  b = mk(&o);
  pl = pipe_of(b);
  top_script(&top, TOP_SYNC, UV_ECONNRESET);
  for (i = 0; i < 5; i++)
    cr_assert_eq(tcall_start(&tc[i], pl, &top_op_cancel_sync, &top), 0);
  fx_advance(&FX, 0);
  for (i = 0; i < 5; i++) {
    cr_assert_eq(tc[i].ncb, 1);
    cr_assert_eq(tc[i].status, UV_ECONNRESET);
    cr_assert_eq(tc[i].nested, 0);
    cr_assert_null(tc[i].call.detail.by_kind, "the operation decided");
  }
  cr_assert_eq(fy_breaker_state(b), FY_BREAKER_OPEN);
  fx_advance(&FX, 1000);
  cr_assert_eq(tcall_start(&tc[5], pl, &top_op_cancel_sync, &top),
               FY_ECIRCUITOPEN);
  cr_assert_eq(top.starts, 5, "the operation never ran");
  cr_assert_eq(tc[5].call.status, FY_ECIRCUITOPEN);
  cr_assert_str_eq(tc[5].call.detail.by_kind, "breaker");
  cr_assert_str_eq(tc[5].call.detail.by_name, "payments");
  cr_assert_eq(tc[5].call.detail.state, FY_BREAKER_OPEN);
  cr_assert_eq(tc[5].call.detail.retry_after_ms, 4000);
  cr_assert_eq(tc[5].call.detail.n[0], 5);
  cr_assert_eq(tc[5].call.detail.n[1], 5);
  cr_assert_eq(tc[5].call.detail.n[2], 5);
  cr_assert_eq(R.nreject, 1);
  cr_assert_eq(R.reject_call, &tc[5].call);
  fx_advance(&FX, 0);
  cr_assert_eq(tc[5].ncb, 0, "a refused call never calls back");
  cr_assert_eq(fy_pipeline_inflight(pl), 0);
  fx_finish(&FX);
}

Test(breaker, pipeline_success_passes_results_and_closes_half_open) {
  fy_breaker_opts_t o = defaults();
  fy_breaker_t *b;
  fy_pipeline_t *pl;
  static top_t top;
  static tcall_t tc[4];
  fx_init(&FX, 0);
  o.open_ms = 1000;
  b = mk(&o);
  pl = pipe_of(b);
  top.with_results = 1;
  fail_n(b, 5);
  fx_advance(&FX, 1000);
  cr_assert_eq(fy_breaker_state(b), FY_BREAKER_HALF_OPEN);
  top_script(&top, TOP_ASYNC, 0);
  tc[0].take = 1;
  cr_assert_eq(tcall_start(&tc[0], pl, &top_op_cancel_sync, &top), 0);
  cr_assert_eq(tcall_start(&tc[1], pl, &top_op_cancel_sync, &top),
               FY_ECIRCUITOPEN);
  cr_assert_eq(tc[1].call.detail.state, FY_BREAKER_HALF_OPEN);
  cr_assert_eq(tc[1].call.detail.retry_after_ms, 0);
  cr_assert_eq(top_report(&top, 0, 0), 0);
  cr_assert_eq(tc[0].ncb, 1);
  cr_assert_eq(tc[0].status, 0);
  cr_assert_not_null(tc[0].taken, "the result went up through the breaker");
  tc[0].taken_dtor(tc[0].taken);
  cr_assert_eq(fy_breaker_state(b), FY_BREAKER_CLOSED);
  cr_assert_eq(R.n, 3);
  cr_assert_eq(R.ev[2], H2C);
  fx_finish(&FX);
  cr_assert_eq(tres_errors(), 0);
  cr_assert_eq(tres_created(), tres_destroyed());
}

Test(breaker, w3_half_open_fires_on_time_without_traffic) {
  fy_breaker_opts_t o = defaults();
  fy_breaker_t *b;
  fx_init(&FX, 100);
  o.open_ms = 2000;
  b = mk(&o);
  cr_assert_eq(fy_ctx_pending_deadlines(FX.ctx), 0);
  fail_n(b, 5);
  cr_assert_eq(R.n, 1);
  cr_assert_eq(fy_ctx_pending_deadlines(FX.ctx), 1);
  fx_advance(&FX, 1999);
  cr_assert_eq(R.n, 1);
  cr_assert_eq(R.ln, 1);
  fx_advance(&FX, 1);
  /* Nobody called the breaker: the deadline moved it, on time. */
  cr_assert_eq(R.n, 2);
  cr_assert_eq(R.ev[1], O2H);
  cr_assert_eq(R.at[1], 2100);
  cr_assert_eq(R.ln, 2);
  cr_assert_eq(R.lev[1], O2H);
  cr_assert_eq(fy_ctx_pending_deadlines(FX.ctx), 0);
  fx_finish(&FX);
}

Test(breaker, growing_open_duration_on_the_loop) {
  fy_breaker_opts_t o = defaults();
  fy_breaker_t *b;
  fy_breaker_permit_t p;
  fx_init(&FX, 0);
  o.open_ms = 1000;
  o.open_multiplier = 2.5;
  o.open_max_ms = 5000;
  b = mk(&o);
  fail_n(b, 5);
  fx_advance(&FX, 1000);
  cr_assert_eq(R.ev[1], O2H);
  cr_assert_eq(R.at[1], 1000);
  fail_n(b, 1); /* open for 2500 */
  cr_assert_eq(R.ev[2], H2O);
  fx_advance(&FX, 2499);
  cr_assert_eq(R.n, 3);
  fx_advance(&FX, 1);
  cr_assert_eq(R.ev[3], O2H);
  cr_assert_eq(R.at[3], 3500);
  fail_n(b, 1); /* 6250, capped at 5000 */
  fx_advance(&FX, 10000);
  cr_assert_eq(R.ev[5], O2H);
  cr_assert_eq(R.at[5], 8500);
  cr_assert_eq(fy_breaker_acquire(b, &p, NULL), 0);
  fy_breaker_record(b, &p, 0);
  cr_assert_eq(R.ev[6], H2C);
  fail_n(b, 5); /* closed in between: back to 1000 */
  fx_advance(&FX, 1000);
  cr_assert_eq(R.ev[8], O2H);
  cr_assert_eq(R.at[8], 13500 + 1000);
  cr_assert_eq(R.n, 9);
  fx_finish(&FX);
}

Test(breaker, time_window_on_the_manual_clock) {
  fy_breaker_opts_t o = defaults();
  fy_breaker_t *b;
  fy_breaker_permit_t p;
  fx_init(&FX, 0);
  o.window = FY_BREAKER_WINDOW_TIME;
  o.window_ms = 1000;
  o.window_buckets = 5; /* 200 ms */
  o.minimum_calls = 4;
  o.failure_rate = 100;
  o.failure_threshold = 0;
  b = mk(&o);
  fail_n(b, 3);
  fx_advance(&FX, 999);
  cr_assert_eq(counts(b).window_failures, 3);
  fx_advance(&FX, 1);
  cr_assert_eq(counts(b).window_failures, 0);
  fail_n(b, 3);
  cr_assert_eq(fy_breaker_state(b), FY_BREAKER_CLOSED);
  cr_assert_eq(fy_breaker_acquire(b, &p, NULL), 0);
  fx_advance(&FX, 500); /* still inside the window */
  fy_breaker_record(b, &p, UV_EIO);
  cr_assert_eq(fy_breaker_state(b), FY_BREAKER_OPEN);
  fx_finish(&FX);
}

/* ---- W5: ordered, never dropped ---------------------------------------- */

static void flip(fy_breaker_t *b) {
  fy_breaker_mode_t m = fy_breaker_mode(b) == FY_BREAKER_FORCED_OPEN
                            ? FY_BREAKER_NORMAL
                            : FY_BREAKER_FORCED_OPEN;
  cr_assert_eq(fy_breaker_set_mode(b, m), 0);
}

static void check_alternating(unsigned n) {
  unsigned i;
  cr_assert_eq(R.n, n);
  cr_assert_eq(R.ln, n);
  for (i = 0; i < n; i++) {
    cr_assert_eq(R.ev[i], i % 2 == 0 ? C2O : O2C, "callback event %u", i);
    cr_assert_eq(R.lev[i], R.ev[i], "listener event %u", i);
  }
  /* Each change reached the callback and then the listener before the
   * next one was delivered. */
  for (i = 0; i < 2 * n; i++)
    cr_assert_eq(R.seq[i], i % 2 == 0 ? 'c' : 'l', "position %u", i);
}

Test(breaker, w5_no_dropped_transitions_with_1000_flips) {
  fy_breaker_t *b;
  unsigned i;
  fx_init(&FX, 0);
  b = mk(NULL);
  for (i = 0; i < 1000; i++)
    flip(b);
  check_alternating(1000);
  cr_assert_eq(fy_breaker_state(b), FY_BREAKER_CLOSED);
  fx_finish(&FX);
}

static void flip_again(rec_t *r, fy_breaker_state_t from,
                       fy_breaker_state_t to) {
  (void)from;
  (void)to;
  if (r->n < 1000)
    flip(r->b);
}

Test(breaker, w5_1000_flips_from_inside_the_callback_stay_in_order) {
  fy_breaker_t *b;
  fx_init(&FX, 0);
  b = mk(NULL);
  R.hook = flip_again;
  flip(b);
  check_alternating(1000);
  fx_finish(&FX);
}

static void flip_burst(rec_t *r, fy_breaker_state_t from,
                       fy_breaker_state_t to) {
  unsigned i;
  (void)from;
  (void)to;
  if (r->n != 1)
    return;
  /* 999 changes queued while the first one is being delivered. */
  for (i = 0; i < 999; i++)
    flip(r->b);
}

Test(breaker, w5_burst_of_changes_inside_a_callback_is_queued_not_lost) {
  fy_breaker_t *b;
  fx_init(&FX, 0);
  b = mk(NULL);
  R.hook = flip_burst;
  flip(b);
  check_alternating(1000);
  cr_assert_eq(fy_breaker_mode(b), FY_BREAKER_NORMAL);
  fx_finish(&FX);
}

/* ---- re-entrancy ------------------------------------------------------- */

static fy_breaker_permit_t g_held;

static void reenter_on_trip(rec_t *r, fy_breaker_state_t from,
                            fy_breaker_state_t to) {
  fy_breaker_permit_t p;
  fy_detail_t d;
  fy_breaker_t *b = r->b;
  (void)from;
  if (to != FY_BREAKER_OPEN || r->n != 1)
    return;
  /* The machine is consistent: open, with the trip's counts. */
  cr_assert_eq(fy_breaker_state(b), FY_BREAKER_OPEN);
  cr_assert_eq(fy_breaker_acquire(b, &p, &d), FY_ECIRCUITOPEN);
  cr_assert_eq(d.n[2], 5);
  fy_breaker_record(b, &g_held, UV_EIO); /* from before: ignored */
  cr_assert_eq(counts(b).requests, 0);
  cr_assert_eq(fy_breaker_set_mode(b, FY_BREAKER_FORCED_CLOSED), 0);
  cr_assert_eq(fy_breaker_state(b), FY_BREAKER_CLOSED);
  cr_assert_eq(fy_breaker_acquire(b, &p, NULL), 0);
  fy_breaker_record(b, &p, UV_EIO);
  cr_assert_eq(fy_breaker_reset(b), 0);
  /* Only the first change has been delivered so far. */
  cr_assert_eq(r->n, 1);
  cr_assert_eq(r->ln, 0);
}

Test(breaker, state_change_callback_calls_back_into_the_breaker) {
  fy_breaker_t *b;
  fx_init(&FX, 0);
  b = mk(NULL);
  R.hook = reenter_on_trip;
  cr_assert_eq(fy_breaker_acquire(b, &g_held, NULL), 0);
  fail_n(b, 5);
  cr_assert_eq(R.n, 2);
  cr_assert_eq(R.ev[0], C2O);
  cr_assert_eq(R.ev[1], O2C);
  cr_assert_eq(R.ln, 2);
  cr_assert_eq(R.lev[0], C2O);
  cr_assert_eq(R.lev[1], O2C);
  cr_assert_str_eq(R.seq, "clcl");
  cr_assert_eq(fy_breaker_mode(b), FY_BREAKER_FORCED_CLOSED);
  cr_assert_eq(fy_ctx_pending_deadlines(FX.ctx), 0, "no stale timer");
  fx_finish(&FX);
}

static void listener_resets(rec_t *r, fy_breaker_state_t from,
                            fy_breaker_state_t to) {
  (void)from;
  if (to == FY_BREAKER_OPEN)
    cr_assert_eq(fy_breaker_reset(r->b), 0);
}

Test(breaker, listener_calls_back_into_the_breaker) {
  fy_breaker_t *b;
  fx_init(&FX, 0);
  b = mk(NULL);
  R.lhook = listener_resets;
  fail_n(b, 5);
  cr_assert_eq(R.n, 2);
  cr_assert_eq(R.ev[1], O2C);
  cr_assert_str_eq(R.seq, "clcl");
  cr_assert_eq(fy_breaker_state(b), FY_BREAKER_CLOSED);
  cr_assert_eq(fy_ctx_pending_deadlines(FX.ctx), 0);
  fx_finish(&FX);
}

static int pred_mode; /* 0 reads, 1 resets, 2 forces open */

static int reentrant_predicate(const fy_breaker_counts_t *c,
                               void *user_data) {
  rec_t *r = user_data;
  fy_breaker_counts_t now;
  fy_breaker_counts(r->b, &now);
  cr_assert_eq(now.requests, c->requests);
  cr_assert_eq(fy_breaker_state(r->b), FY_BREAKER_CLOSED);
  if (pred_mode == 1)
    fy_breaker_reset(r->b);
  else if (pred_mode == 2)
    fy_breaker_set_mode(r->b, FY_BREAKER_FORCED_OPEN);
  /* Modes 1 and 2 always vote to trip: the vote must be dropped. */
  return pred_mode != 0 || c->consecutive_failures >= 2;
}

Test(breaker, predicate_may_call_back_into_the_breaker) {
  fy_breaker_opts_t o = defaults();
  fy_breaker_t *b;
  fx_init(&FX, 0);
  o.ready_to_trip = reentrant_predicate;
  b = mk(&o);
  pred_mode = 0;
  fail_n(b, 2);
  cr_assert_eq(fy_breaker_state(b), FY_BREAKER_OPEN);
  cr_assert_eq(R.n, 1);
  /* A predicate that resets: its own verdict is stale and dropped. */
  fy_breaker_reset(b);
  cr_assert_eq(R.n, 2);
  pred_mode = 1;
  fail_n(b, 2);
  cr_assert_eq(fy_breaker_state(b), FY_BREAKER_CLOSED);
  cr_assert_eq(R.n, 2);
  /* One that forces open: one change, not two. */
  pred_mode = 2;
  fail_n(b, 1);
  cr_assert_eq(fy_breaker_state(b), FY_BREAKER_OPEN);
  cr_assert_eq(R.n, 3);
  cr_assert_eq(R.ev[2], C2O);
  fx_finish(&FX);
}

/* ---- pipeline: cancel, late outcomes, refusals below ------------------- */

Test(breaker, cancelled_call_releases_its_trial_permit) {
  fy_breaker_opts_t o = defaults();
  fy_breaker_t *b;
  fy_pipeline_t *pl;
  static top_t top;
  static tcall_t tc[4];
  fx_init(&FX, 0);
  o.open_ms = 1000;
  b = mk(&o);
  pl = pipe_of(b);
  fail_n(b, 5);
  fx_advance(&FX, 1000);
  top_script(&top, TOP_ASYNC, 0);
  cr_assert_eq(tcall_start(&tc[0], pl, &top_op_cancel_sync, &top), 0);
  cr_assert_eq(tcall_start(&tc[1], pl, &top_op_cancel_sync, &top),
               FY_ECIRCUITOPEN);
  cr_assert_eq(tcall_cancel(&tc[0]), 0);
  fx_advance(&FX, 0);
  cr_assert_eq(tc[0].ncb, 1);
  cr_assert_eq(tc[0].status, UV_ECANCELED);
  cr_assert_eq(counts(b).inflight, 0);
  cr_assert_eq(counts(b).requests, 0, "cancellation counts as neither");
  cr_assert_eq(fy_breaker_state(b), FY_BREAKER_HALF_OPEN);
  cr_assert_eq(tcall_start(&tc[2], pl, &top_op_cancel_sync, &top), 0);
  top_report(&top, 1, 0);
  cr_assert_eq(tc[2].ncb, 1);
  cr_assert_eq(fy_breaker_state(b), FY_BREAKER_CLOSED);
  fx_finish(&FX);
}

Test(breaker, late_outcome_after_a_state_change_is_ignored) {
  fy_breaker_opts_t o = defaults();
  fy_breaker_t *b;
  fy_pipeline_t *pl;
  static top_t top;
  static tcall_t tc[8];
  unsigned i;
  fx_init(&FX, 0);
  o.open_ms = 1000;
  o.failure_threshold = 1;
  b = mk(&o);
  pl = pipe_of(b);
  top_script(&top, TOP_ASYNC, 0);
  for (i = 0; i < 3; i++)
    cr_assert_eq(tcall_start(&tc[i], pl, &top_op_cancel_sync, &top), 0);
  top_report(&top, 0, UV_ETIMEDOUT); /* trips */
  cr_assert_eq(fy_breaker_state(b), FY_BREAKER_OPEN);
  fx_advance(&FX, 1000);
  cr_assert_eq(fy_breaker_state(b), FY_BREAKER_HALF_OPEN);
  /* Admitted while closed; a failure now must not re-open it. */
  top_report(&top, 1, UV_ETIMEDOUT);
  cr_assert_eq(tc[1].ncb, 1);
  cr_assert_eq(tc[1].status, UV_ETIMEDOUT, "the caller sees its outcome");
  cr_assert_eq(fy_breaker_state(b), FY_BREAKER_HALF_OPEN);
  /* Nor a success close it. */
  top_report(&top, 2, 0);
  cr_assert_eq(fy_breaker_state(b), FY_BREAKER_HALF_OPEN);
  cr_assert_eq(R.n, 2);
  fx_finish(&FX);
}

Test(breaker, refusal_below_releases_the_permit) {
  fy_breaker_opts_t o = defaults();
  fy_breaker_t *b;
  fy_pipeline_t *pl;
  fy_policy_t *layers[2];
  static probe_t pr;
  static top_t top;
  static tcall_t tc;
  unsigned i;
  fx_init(&FX, 0);
  o.open_ms = 1000;
  b = mk(&o);
  pr.mode = PROBE_REFUSE;
  pr.refuse_code = FY_EBULKHEADFULL;
  cr_assert_eq(probe_new(FX.ctx, &pr, "bulkhead"), 0);
  layers[0] = fy_breaker_policy(b);
  layers[1] = pr.policy;
  cr_assert_eq(fy_pipeline_new(FX.ctx, layers, 2, &pl), 0);
  fail_n(b, 5);
  fx_advance(&FX, 1000);
  cr_assert_eq(fy_breaker_state(b), FY_BREAKER_HALF_OPEN);
  /* Each refusal below gives the single trial permit back. */
  for (i = 0; i < 3; i++) {
    cr_assert_eq(tcall_start(&tc, pl, &top_op_cancel_sync, &top),
                 FY_EBULKHEADFULL);
    cr_assert_str_eq(tc.call.detail.by_kind, "probe");
    cr_assert_eq(counts(b).inflight, 0);
  }
  cr_assert_eq(counts(b).requests, 0);
  cr_assert_eq(fy_breaker_state(b), FY_BREAKER_HALF_OPEN);
  cr_assert_eq(top.starts, 0);
  fx_finish(&FX);
}

Test(breaker, slow_calls_through_a_pipeline_trip_it) {
  fy_breaker_opts_t o = defaults();
  fy_breaker_t *b;
  fy_pipeline_t *pl;
  static top_t top;
  static tcall_t tc[4];
  fx_init(&FX, 0);
  o.window = FY_BREAKER_WINDOW_COUNT;
  o.window_calls = 2;
  o.minimum_calls = 2;
  o.failure_threshold = 0;
  o.slow_call_ms = 100;
  b = mk(&o);
  pl = pipe_of(b);
  top_script(&top, TOP_ASYNC, 0);
  cr_assert_eq(tcall_start(&tc[0], pl, &top_op_cancel_sync, &top), 0);
  fx_advance(&FX, 150);
  top_report(&top, 0, 0);
  cr_assert_eq(tcall_start(&tc[1], pl, &top_op_cancel_sync, &top), 0);
  fx_advance(&FX, 101);
  top_report(&top, 1, 0);
  cr_assert_eq(tc[1].status, 0, "slow successes still succeed");
  cr_assert_eq(fy_breaker_state(b), FY_BREAKER_OPEN);
  cr_assert_eq(tcall_start(&tc[2], pl, &top_op_cancel_sync, &top),
               FY_ECIRCUITOPEN);
  cr_assert_eq(tc[2].call.detail.n[0], 2);
  cr_assert_eq(tc[2].call.detail.n[1], 0);
  cr_assert_eq(tc[2].call.detail.n[3], 2);
  fx_finish(&FX);
}

Test(breaker, metrics_only_pipeline_never_refuses_but_reports) {
  fy_breaker_opts_t o = defaults();
  fy_breaker_t *b;
  fy_pipeline_t *pl;
  static top_t top;
  static tcall_t tc[8];
  unsigned i;
  fx_init(&FX, 0);
  o.mode = FY_BREAKER_METRICS_ONLY;
  b = mk(&o);
  pl = pipe_of(b);
  top_script(&top, TOP_SYNC, UV_EPIPE);
  for (i = 0; i < 5; i++)
    cr_assert_eq(tcall_start(&tc[i], pl, &top_op_cancel_sync, &top), 0);
  fx_advance(&FX, 0);
  cr_assert_eq(fy_breaker_state(b), FY_BREAKER_OPEN);
  cr_assert_eq(R.n, 1);
  cr_assert_eq(tcall_start(&tc[5], pl, &top_op_cancel_sync, &top), 0);
  cr_assert_eq(R.nreject, 1);
  cr_assert_eq(R.reject_value, 1, "would have refused");
  cr_assert_eq(R.reject_call, &tc[5].call);
  cr_assert_eq(R.reject_from, FY_BREAKER_OPEN);
  fx_advance(&FX, 0);
  cr_assert_eq(tc[5].ncb, 1);
  cr_assert_eq(tc[5].status, UV_EPIPE);
  cr_assert_eq(top.starts, 6);
  fx_finish(&FX);
}

Test(breaker, modes_through_the_driver) {
  fy_breaker_t *b;
  fy_breaker_permit_t p;
  fy_detail_t d;
  fx_init(&FX, 0);
  b = mk(NULL);
  cr_assert_eq(fy_breaker_mode(b), FY_BREAKER_NORMAL);
  cr_assert_eq(fy_breaker_set_mode(b, (fy_breaker_mode_t)99), UV_EINVAL);
  cr_assert_eq(fy_breaker_set_mode(b, (fy_breaker_mode_t)-1), UV_EINVAL);
  cr_assert_eq(fy_breaker_set_mode(NULL, FY_BREAKER_NORMAL), UV_EINVAL);
  cr_assert_eq(fy_breaker_set_mode(b, FY_BREAKER_FORCED_OPEN), 0);
  cr_assert_eq(fy_breaker_acquire(b, &p, &d), FY_ECIRCUITOPEN);
  cr_assert_eq(d.state, FY_BREAKER_OPEN);
  cr_assert_eq(d.retry_after_ms, 0);
  cr_assert_eq(fy_breaker_set_mode(b, FY_BREAKER_DISABLED), 0);
  fail_n(b, 20);
  cr_assert_eq(counts(b).requests, 0);
  cr_assert_eq(fy_breaker_set_mode(b, FY_BREAKER_FORCED_CLOSED), 0);
  fail_n(b, 20);
  cr_assert_eq(counts(b).requests, 20);
  cr_assert_eq(fy_breaker_state(b), FY_BREAKER_CLOSED);
  cr_assert_eq(R.n, 2);
  cr_assert_eq(R.ev[0], C2O);
  cr_assert_eq(R.ev[1], O2C);
  fx_finish(&FX);
}

Test(breaker, w6_reset_on_closed_notifies_nobody) {
  fy_breaker_t *b;
  fx_init(&FX, 0);
  b = mk(NULL);
  fail_n(b, 2);
  cr_assert_eq(fy_breaker_reset(b), 0);
  cr_assert_eq(R.n, 0);
  cr_assert_eq(R.ln, 0);
  cr_assert_eq(counts(b).requests, 0);
  cr_assert_eq(fy_breaker_reset(NULL), UV_EINVAL);
  fail_n(b, 5);
  cr_assert_eq(fy_breaker_reset(b), 0);
  cr_assert_eq(R.n, 2);
  cr_assert_eq(R.ev[1], O2C);
  cr_assert_eq(fy_ctx_pending_deadlines(FX.ctx), 0);
  fx_finish(&FX);
}

/* ---- close ------------------------------------------------------------- */

Test(breaker, close_with_calls_pending_completes_each_once) {
  fy_breaker_t *b;
  fy_pipeline_t *pl;
  fy_breaker_permit_t p;
  fx_closed_t closed = {0};
  static top_t top;
  static tcall_t tc[3];
  unsigned i;
  fx_init(&FX, 0);
  b = mk(NULL);
  pl = pipe_of(b);
  top_script(&top, TOP_ASYNC, 0);
  for (i = 0; i < 3; i++)
    cr_assert_eq(tcall_start(&tc[i], pl, &top_op_cancel_sync, &top), 0);
  cr_assert_eq(fy_breaker_acquire(b, &g_held, NULL), 0);
  cr_assert_eq(fy_breaker_close(b, fx_obj_closed, &closed), 0);
  cr_assert_eq(fy_breaker_close(b, fx_obj_closed, &closed), FY_ECLOSED);
  cr_assert_eq(fy_breaker_acquire(b, &p, NULL), FY_ECLOSED);
  cr_assert_eq(fy_breaker_set_mode(b, FY_BREAKER_FORCED_OPEN), FY_ECLOSED);
  cr_assert_eq(fy_breaker_reset(b), FY_ECLOSED);
  fx_advance(&FX, 0);
  for (i = 0; i < 3; i++) {
    cr_assert_eq(tc[i].ncb, 1);
    cr_assert_eq(tc[i].status, UV_ECANCELED);
  }
  cr_assert_eq(closed.n, 1);
  cr_assert_eq(closed.obj, (void *)b, "the close callback gets the breaker");
  cr_assert_gt(closed.order, tc[2].order, "after the calls completed");
  /* The pipeline still holds it: a late record is harmless. */
  fy_breaker_record(b, &g_held, UV_EIO);
  cr_assert_eq(tcall_start(&tc[0], pl, &top_op_cancel_sync, &top),
               FY_ECLOSED);
  cr_assert_eq(fy_breaker_close(NULL, NULL, NULL), 0);
  cr_assert_eq(R.n, 0);
  fx_finish(&FX);
  cr_assert_eq(closed.n, 1);
}

Test(breaker, close_while_open_stops_the_deadline) {
  fy_breaker_t *b;
  fx_closed_t closed = {0};
  fx_init(&FX, 0);
  b = mk(NULL);
  fail_n(b, 5);
  cr_assert_eq(fy_ctx_pending_deadlines(FX.ctx), 1);
  cr_assert_eq(fy_breaker_close(b, fx_obj_closed, &closed), 0);
  cr_assert_eq(fy_ctx_pending_deadlines(FX.ctx), 0);
  fx_advance(&FX, 120000);
  cr_assert_eq(closed.n, 1);
  cr_assert_eq(R.n, 1, "no half-open after close");
  fx_finish(&FX);
}

static fy_pipeline_t *g_pl;
static fx_closed_t g_bclosed, g_plclosed;

static void close_all_on_trip(rec_t *r, fy_breaker_state_t from,
                              fy_breaker_state_t to) {
  (void)from;
  if (to != FY_BREAKER_OPEN)
    return;
  cr_assert_eq(fy_breaker_close(r->b, fx_obj_closed, &g_bclosed), 0);
  cr_assert_eq(fy_pipeline_close(g_pl, fx_obj_closed, &g_plclosed), 0);
}

Test(breaker, state_change_callback_closes_breaker_and_pipeline) {
  fy_breaker_opts_t o = defaults();
  fy_breaker_t *b;
  static top_t top;
  static tcall_t tc[8];
  unsigned i;
  fx_init(&FX, 0);
  o.failure_threshold = 2;
  b = mk(&o);
  g_pl = pipe_of(b);
  R.hook = close_all_on_trip;
  top_script(&top, TOP_ASYNC, 0);
  for (i = 0; i < 5; i++)
    cr_assert_eq(tcall_start(&tc[i], g_pl, &top_op_cancel_sync, &top), 0);
  top_report(&top, 0, UV_EIO);
  top_report(&top, 1, UV_EIO); /* trips; the callback closes everything */
  cr_assert_eq(R.n, 1);
  fx_advance(&FX, 0);
  for (i = 0; i < 5; i++)
    cr_assert_eq(tc[i].ncb, 1, "call %u", i);
  for (i = 2; i < 5; i++)
    cr_assert_eq(tc[i].status, UV_ECANCELED);
  cr_assert_eq(g_bclosed.n, 1);
  cr_assert_eq(g_plclosed.n, 1);
  fx_advance(&FX, 120000);
  cr_assert_eq(R.n, 1, "nothing after close");
  fx_finish(&FX);
}

static void close_ctx_on_trip(rec_t *r, fy_breaker_state_t from,
                              fy_breaker_state_t to) {
  (void)r;
  (void)from;
  if (to == FY_BREAKER_OPEN)
    cr_assert_eq(fx_close(&FX), 0);
}

Test(breaker, state_change_callback_closes_the_context) {
  fy_breaker_opts_t o = defaults();
  fy_breaker_t *b;
  fy_pipeline_t *pl;
  static top_t top;
  static tcall_t tc[4];
  unsigned i;
  fx_init(&FX, 0);
  o.failure_threshold = 1;
  b = mk(&o);
  pl = pipe_of(b);
  R.hook = close_ctx_on_trip;
  top_script(&top, TOP_ASYNC, 0);
  for (i = 0; i < 3; i++)
    cr_assert_eq(tcall_start(&tc[i], pl, &top_op_cancel_sync, &top), 0);
  top_report(&top, 0, UV_EIO);
  fx_finish(&FX);
  for (i = 0; i < 3; i++)
    cr_assert_eq(tc[i].ncb, 1);
  cr_assert_eq(tc[1].status, UV_ECANCELED);
  cr_assert_eq(R.n, 1);
}

/* ---- bad options ------------------------------------------------------- */

typedef void (*mutate_fn)(fy_breaker_opts_t *o);

static void bad_mode(fy_breaker_opts_t *o) { o->mode = FY_BREAKER_MODE__COUNT; }
static void bad_mode_neg(fy_breaker_opts_t *o) {
  o->mode = (fy_breaker_mode_t)-1;
}
static void bad_window(fy_breaker_opts_t *o) {
  o->window = FY_BREAKER_WINDOW__COUNT;
}
static void nan_rate(fy_breaker_opts_t *o) { o->failure_rate = NAN; }
static void inf_rate(fy_breaker_opts_t *o) { o->failure_rate = INFINITY; }
static void neg_rate(fy_breaker_opts_t *o) { o->failure_rate = -10; }
static void zero_rate(fy_breaker_opts_t *o) { o->failure_rate = 0; }
static void big_rate(fy_breaker_opts_t *o) { o->failure_rate = 100.01; }
static void nan_slow(fy_breaker_opts_t *o) { o->slow_call_rate = NAN; }
static void neg_slow(fy_breaker_opts_t *o) { o->slow_call_rate = -INFINITY; }
static void big_slow(fy_breaker_opts_t *o) { o->slow_call_rate = 150; }
static void nan_mult(fy_breaker_opts_t *o) { o->open_multiplier = NAN; }
static void small_mult(fy_breaker_opts_t *o) { o->open_multiplier = 0.5; }
static void neg_mult(fy_breaker_opts_t *o) { o->open_multiplier = -2; }
static void inf_mult(fy_breaker_opts_t *o) { o->open_multiplier = INFINITY; }
static void huge_mult(fy_breaker_opts_t *o) { o->open_multiplier = 1e6; }
static void huge_open(fy_breaker_opts_t *o) {
  o->open_ms = FY_BREAKER_DURATION_MAX + 1;
}
static void max_open(fy_breaker_opts_t *o) { o->open_ms = UINT64_MAX; }
static void huge_interval(fy_breaker_opts_t *o) {
  o->interval_ms = UINT64_MAX;
}
static void huge_slow_ms(fy_breaker_opts_t *o) {
  o->slow_call_ms = UINT64_MAX;
}
static void cap_below_base(fy_breaker_opts_t *o) {
  o->open_ms = 5000;
  o->open_max_ms = 4999;
}
static void cap_below_default(fy_breaker_opts_t *o) {
  o->open_ms = 0; /* 60000 */
  o->open_max_ms = 1000;
}
static void huge_cap(fy_breaker_opts_t *o) { o->open_max_ms = UINT64_MAX; }
static void count_zero(fy_breaker_opts_t *o) {
  o->window = FY_BREAKER_WINDOW_COUNT;
  o->window_calls = 0;
}
static void count_huge(fy_breaker_opts_t *o) {
  o->window = FY_BREAKER_WINDOW_COUNT;
  o->window_calls = FY_BREAKER_WINDOW_CALLS_MAX + 1;
}
static void time_zero(fy_breaker_opts_t *o) {
  o->window = FY_BREAKER_WINDOW_TIME;
  o->window_ms = 0;
}
static void time_huge(fy_breaker_opts_t *o) {
  o->window = FY_BREAKER_WINDOW_TIME;
  o->window_ms = UINT64_MAX;
}
static void buckets_zero(fy_breaker_opts_t *o) {
  o->window = FY_BREAKER_WINDOW_TIME;
  o->window_buckets = 0;
}
static void buckets_huge(fy_breaker_opts_t *o) {
  o->window = FY_BREAKER_WINDOW_TIME;
  o->window_ms = 100000;
  o->window_buckets = FY_BREAKER_BUCKETS_MAX + 1;
}
static void buckets_over_ms(fy_breaker_opts_t *o) {
  o->window = FY_BREAKER_WINDOW_TIME;
  o->window_ms = 5;
  o->window_buckets = 10;
}

static const mutate_fn bad_opts[] = {
    bad_mode,     bad_mode_neg,  bad_window,     nan_rate,
    inf_rate,     neg_rate,      zero_rate,      big_rate,
    nan_slow,     neg_slow,      big_slow,       nan_mult,
    small_mult,   neg_mult,      inf_mult,       huge_mult,
    huge_open,    max_open,      huge_interval,  huge_slow_ms,
    cap_below_base, cap_below_default, huge_cap, count_zero,
    count_huge,   time_zero,     time_huge,      buckets_zero,
    buckets_huge, buckets_over_ms};

Test(breaker, bad_options_are_rejected_and_create_nothing) {
  fy_breaker_opts_t o;
  fy_breaker_t *b;
  long live;
  size_t i;
  cr_assert_eq(fy_replace_allocator(cnt_malloc, cnt_realloc, cnt_calloc,
                                    cnt_free),
               0);
  fx_init(&FX, 0);
  live = g_live;
  for (i = 0; i < sizeof(bad_opts) / sizeof(bad_opts[0]); i++) {
    fy_breaker_opts_init(&o);
    bad_opts[i](&o);
    cr_assert_eq(fy_breaker_opts_check(&o), UV_EINVAL, "case %zu", i);
    b = (fy_breaker_t *)&o; /* must be cleared */
    cr_assert_eq(fy_breaker_new(FX.ctx, &o, &b), UV_EINVAL, "case %zu", i);
    cr_assert_null(b, "case %zu", i);
    cr_assert_eq(g_live, live, "case %zu allocated", i);
  }
  cr_assert_eq(fy_breaker_new(NULL, NULL, &b), UV_EINVAL);
  cr_assert_null(b);
  cr_assert_eq(fy_breaker_new(FX.ctx, NULL, NULL), UV_EINVAL);
  cr_assert_eq(g_live, live);
  fx_finish(&FX);
}

Test(breaker, opts_check_without_a_context) {
  fy_breaker_opts_t o;
  fy_breaker_opts_init(&o);
  cr_assert_eq(fy_breaker_opts_check(&o), 0);
  cr_assert_eq(fy_breaker_opts_check(NULL), UV_EINVAL);
  o.failure_rate = NAN;
  cr_assert_eq(fy_breaker_opts_check(&o), UV_EINVAL);
  fy_breaker_opts_init(&o);
  o.open_multiplier = -2.0;
  cr_assert_eq(fy_breaker_opts_check(&o), UV_EINVAL);
  fy_breaker_opts_init(&o);
  o.interval_ms = (uint64_t)-1; /* a negative number, stored unsigned */
  cr_assert_eq(fy_breaker_opts_check(&o), UV_EINVAL);
  fy_breaker_opts_init(&o);
  o.window = FY_BREAKER_WINDOW_COUNT;
  o.window_calls = FY_BREAKER_WINDOW_CALLS_MAX + 1;
  cr_assert_eq(fy_breaker_opts_check(&o), UV_EINVAL);
  o.window_calls = FY_BREAKER_WINDOW_CALLS_MAX;
  cr_assert_eq(fy_breaker_opts_check(&o), 0);
  /* A window's size is checked only when that window is selected. */
  o.window = FY_BREAKER_WINDOW_NONE;
  o.window_calls = 0;
  cr_assert_eq(fy_breaker_opts_check(&o), 0);
}

Test(breaker, edge_values_are_accepted) {
  fy_breaker_opts_t o;
  fy_breaker_t *b;
  fx_init(&FX, 0);
  fy_breaker_opts_init(&o);
  o.failure_rate = 100;
  o.slow_call_rate = 1e-9;
  o.open_multiplier = FY_BREAKER_MULTIPLIER_MAX;
  o.open_ms = FY_BREAKER_DURATION_MAX;
  o.open_max_ms = FY_BREAKER_DURATION_MAX;
  o.window_calls = 0; /* not used without a count window */
  o.window = FY_BREAKER_WINDOW_TIME;
  o.window_ms = 7;
  o.window_buckets = 7;
  o.max_requests = UINT32_MAX;
  o.minimum_calls = 0;
  cr_assert_eq(fy_breaker_new(FX.ctx, &o, &b), 0);
  /* minimum_calls 0 -> 1 and a 100% rate: one failure is enough. */
  fail_n(b, 1);
  cr_assert_eq(fy_breaker_state(b), FY_BREAKER_OPEN);
  fy_breaker_opts_init(&o);
  o.window = FY_BREAKER_WINDOW_COUNT;
  o.window_calls = FY_BREAKER_WINDOW_CALLS_MAX;
  cr_assert_eq(fy_breaker_new(FX.ctx, &o, &b), 0);
  fx_finish(&FX);
}

Test(breaker, out_of_memory_creates_nothing) {
  fy_breaker_t *b = NULL;
  long live;
  cr_assert_eq(fy_replace_allocator(cnt_malloc, cnt_realloc, cnt_calloc,
                                    cnt_free),
               0);
  fx_init(&FX, 0);
  live = g_live;
  g_fail_next = 1;
  cr_assert_eq(fy_breaker_new(FX.ctx, NULL, &b), UV_ENOMEM);
  cr_assert_null(b);
  cr_assert_eq(g_live, live);
  fx_finish(&FX);
}

Test(breaker, event_queue_merges_rather_than_drops_without_memory) {
  fy_breaker_opts_t o = defaults();
  fy_breaker_state_t from, to;
  unsigned i, n = 0;
  cr_assert_eq(fy_replace_allocator(cnt_malloc, cnt_realloc, cnt_calloc,
                                    cnt_free),
               0);
  core_new(&o, 0);
  /* Fill the inline queue, then fail the growth: the 33rd change (open ->
   * closed after closed -> open) merges into the last one. */
  for (i = 0; i < FY__BREAKER_SM_EV_INLINE; i++)
    fy__breaker_sm_set_mode(&C,
                     i % 2 == 0 ? FY_BREAKER_FORCED_OPEN : FY_BREAKER_NORMAL,
                     0);
  cr_assert_eq(fy__breaker_sm_state(&C), FY_BREAKER_CLOSED);
  g_fail_next = 1;
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

static unsigned g_classified;

static fy_outcome_t classify_reentrant(int status, void *user_data) {
  rec_t *r = user_data;
  fy_breaker_counts_t c;
  g_classified++;
  fy_breaker_counts(r->b, &c);
  (void)fy_breaker_state(r->b);
  if (status == UV_EIO)
    cr_assert_eq(fy_breaker_reset(r->b), 0); /* makes this outcome stale */
  return fy_classify_default(status, NULL);
}

Test(breaker, classifier_may_call_back_and_never_runs_after_close) {
  fy_breaker_opts_t o = defaults();
  fy_breaker_t *b;
  fy_pipeline_t *pl;
  fx_closed_t closed = {0};
  static top_t top;
  static tcall_t tc[2];
  fx_init(&FX, 0);
  o.classify = classify_reentrant;
  o.failure_threshold = 1;
  b = mk(&o);
  pl = pipe_of(b);
  top_script(&top, TOP_ASYNC, 0);
  cr_assert_eq(tcall_start(&tc[0], pl, &top_op_cancel_sync, &top), 0);
  top_report(&top, 0, UV_EIO);
  cr_assert_eq(g_classified, 1);
  cr_assert_eq(tc[0].status, UV_EIO);
  cr_assert_eq(fy_breaker_state(b), FY_BREAKER_CLOSED, "stale: ignored");
  cr_assert_eq(counts(b).requests, 0);
  cr_assert_eq(tcall_start(&tc[1], pl, &top_op_cancel_sync, &top), 0);
  cr_assert_eq(fy_breaker_close(b, fx_obj_closed, &closed), 0);
  fx_advance(&FX, 0);
  cr_assert_eq(tc[1].ncb, 1);
  cr_assert_eq(tc[1].status, UV_ECANCELED);
  cr_assert_eq(closed.n, 1);
  cr_assert_eq(g_classified, 1, "no user code once closing");
  cr_assert_eq(R.n, 0);
  fx_finish(&FX);
}

/* The half-open deadline of an open breaker must not keep the loop alive
 * on its own: uv_run(DEFAULT) returns although the deadline is pending. */
static void count_closed(void *obj, void *user_data) {
  (void)obj;
  (*(int *)user_data)++;
}

Test(breaker, open_breaker_does_not_keep_the_loop_alive) {
  uv_loop_t loop;
  fy_ctx_t *ctx;
  fy_breaker_t *b;
  fy_breaker_opts_t o;
  fy_breaker_permit_t permit;
  fy_ctx_stats_t st;
  int closed = 0, i;

  cr_assert_eq(uv_loop_init(&loop), 0);
  cr_assert_eq(fy_ctx_new(&loop, NULL, &ctx), 0);
  fy_breaker_opts_init(&o);
  o.failure_threshold = 2;
  o.open_ms = 3600000; /* an hour: the test would hang if it held the loop */
  cr_assert_eq(fy_breaker_new(ctx, &o, &b), 0);
  for (i = 0; i < 2; i++) {
    cr_assert_eq(fy_breaker_acquire(b, &permit, NULL), 0);
    fy_breaker_record(b, &permit, UV_ECONNRESET);
  }
  cr_assert_eq(fy_breaker_state(b), FY_BREAKER_OPEN);
  fy_ctx_stats(ctx, &st);
  cr_expect_eq(st.deadlines, 1); /* the half-open deadline is pending */
  cr_expect_eq(uv_loop_alive(&loop), 0);
  cr_expect_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  cr_expect_eq(fy_breaker_state(b), FY_BREAKER_OPEN);
  fy_ctx_close(ctx, count_closed, &closed);
  uv_run(&loop, UV_RUN_DEFAULT);
  cr_expect_eq(closed, 1);
  cr_expect_eq(uv_loop_close(&loop), 0);
}
