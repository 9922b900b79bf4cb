/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * Circuit breaker: the driver on a manual-clock context: the synchronous
 * two-step API, the pipeline stage, events, re-entrancy and close.  The
 * pure state machine's tests are in test_breaker_sm.c.  One regression test
 * per fixed Fortify weakness, named after it (w3_, w5_, w6_, w7_). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "breaker_ev.h"
#include "fixture.h"

static fy_breaker_opts_t defaults(void) {
  fy_breaker_opts_t o;
  fy_breaker_opts_init(&o);
  return o;
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

/* A closed breaker without interval, window or slow-call rule counts a
 * success without reading the clock (its short path); one with an
 * interval takes the full path.  Both must count the same, through the
 * pipeline and through the synchronous API, and a failure still trips. */
static void count_path_case(uint64_t interval_ms) {
  fy_breaker_opts_t o = defaults();
  fy_breaker_t *b;
  fy_pipeline_t *pl;
  fy_breaker_permit_t p;
  fy_breaker_counts_t c;
  static top_t top;
  static tcall_t tc[3];
  int i;
  fx_init(&FX, 0);
  o.interval_ms = interval_ms;
  b = mk(&o);
  pl = pipe_of(b);
  memset(&top, 0, sizeof(top));
  top_script(&top, TOP_ASYNC, 0);
  for (i = 0; i < 3; i++) {
    memset(&tc[i], 0, sizeof(tc[i]));
    cr_assert_eq(tcall_start(&tc[i], pl, &top_op_cancel_sync, &top), 0);
  }
  cr_assert_eq(counts(b).inflight, 3);
  for (i = 0; i < 3; i++)
    cr_assert_eq(top_report(&top, (unsigned)i, 0), 0);
  fx_advance(&FX, 0);
  cr_assert_eq(fy_breaker_acquire(b, &p, NULL), 0);
  fy_breaker_record(b, &p, 0);
  c = counts(b);
  cr_assert_eq(c.inflight, 0);
  cr_assert_eq(c.requests, 4);
  cr_assert_eq(c.total_successes, 4);
  cr_assert_eq(c.consecutive_successes, 4);
  cr_assert_eq(c.consecutive_failures, 0);
  fail_n(b, 1);
  c = counts(b);
  cr_assert_eq(c.consecutive_successes, 0);
  cr_assert_eq(c.consecutive_failures, 1);
  cr_assert_eq(fy_breaker_acquire(b, &p, NULL), 0);
  fy_breaker_record(b, &p, 0);
  c = counts(b);
  cr_assert_eq(c.requests, 6);
  cr_assert_eq(c.consecutive_successes, 1);
  cr_assert_eq(c.consecutive_failures, 0);
  fail_n(b, 5);
  cr_assert_eq(fy_breaker_state(b), FY_BREAKER_OPEN);
  fx_finish(&FX);
}

Test(breaker, short_and_full_counting_paths_agree) {
  count_path_case(0);
  count_path_case(60000);
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
  fa_install(-1);
  fx_init(&FX, 0);
  live = FA.live;
  for (i = 0; i < sizeof(bad_opts) / sizeof(bad_opts[0]); i++) {
    fy_breaker_opts_init(&o);
    bad_opts[i](&o);
    cr_assert_eq(fy_breaker_opts_check(&o), UV_EINVAL, "case %zu", i);
    b = (fy_breaker_t *)&o; /* must be cleared */
    cr_assert_eq(fy_breaker_new(FX.ctx, &o, &b), UV_EINVAL, "case %zu", i);
    cr_assert_null(b, "case %zu", i);
    cr_assert_eq(FA.live, live, "case %zu allocated", i);
  }
  cr_assert_eq(fy_breaker_new(NULL, NULL, &b), UV_EINVAL);
  cr_assert_null(b);
  cr_assert_eq(fy_breaker_new(FX.ctx, NULL, NULL), UV_EINVAL);
  cr_assert_eq(FA.live, live);
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
  fa_install(-1);
  fx_init(&FX, 0);
  live = FA.live;
  fa_fail_next();
  cr_assert_eq(fy_breaker_new(FX.ctx, NULL, &b), UV_ENOMEM);
  cr_assert_null(b);
  cr_assert_eq(FA.live, live);
  fx_finish(&FX);
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
