/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * Re-entrancy everywhere (rule 4): every kind of user callback closes, in
 * turn, its policy, its pipeline and the context, while other calls are in
 * flight.  The kinds: a call's completion, an operation's start and cancel
 * hooks, a deadline, a listener, the breaker's on_state_change, trip
 * predicate and classifier, the retry's on_retry and classifier, the
 * timeout's on_timeout and a standalone watch's callback, the bulkhead's
 * on_rejected, the fallback's on_fallback and should_fallback, and a close
 * callback.
 *
 * One world serves every cell of the matrix: a pipeline
 *   fallback -> bulkhead -> timeout -> retry -> breaker -> operation
 * with four calls that make every callback fire (failures that are retried,
 * trip the breaker and fall back; a call refused by the full bulkhead and
 * answered by the fallback; calls that run into the timeout, one whose
 * operation ignores the cancel), a user deadline, a timeout watch and a
 * spare policy closed early.  The callback under test acts the first time
 * it runs; then time runs on and the context closes.
 *
 * Checked: the callback ran, acted once, nothing crashed; every started
 * call was called back exactly once, never from inside fy_call_start() or
 * fy_call_cancel(); every result was destroyed once; every close callback
 * asked for ran once; the loop closes and nothing is left allocated. */
#include <criterion/criterion.h>
#include <string.h>

#include "fixture.h"

enum kind {
  K_CALL_DONE = 0,
  K_OP_START,
  K_OP_CANCEL,
  K_DEADLINE,
  K_LISTENER,
  K_BREAKER_STATE,
  K_BREAKER_TRIP,
  K_BREAKER_CLASSIFY,
  K_RETRY_ON_RETRY,
  K_RETRY_CLASSIFY,
  K_TIMEOUT_ON_TIMEOUT,
  K_TIMEOUT_WATCH,
  K_BULKHEAD_REJECTED,
  K_FALLBACK_ON_FALLBACK,
  K_FALLBACK_SHOULD,
  K_CLOSE_CB
};

enum target { CLOSE_POLICY = 0, CLOSE_PIPELINE, CLOSE_CTX };

#define NCALLS 4

static int trigger;   /* the kind under test */
static int target;    /* what it closes */
static unsigned runs; /* times the kind under test ran */
static int acted;
static size_t inflight_at_action; /* calls in flight when it acted */

static fy_breaker_t *BR;
static fy_retry_t *RT;
static fy_timeout_t *TO;
static fy_bulkhead_t *BH;
static fy_fallback_t *FB;
static fy_policy_t *SPARE;
static fy_pipeline_t *PL;
static fy_deadline_t DL;
static fy_timeout_watch_t WATCH;
static top_t T[NCALLS], FBT;
static tcall_t C[NCALLS];
static int started[NCALLS];
static int policy_closed; /* the callback's own policy was closed */
static int pipeline_closed;
static fx_closed_t closes[4];
static unsigned closes_asked;

/* Each kind's "own" policy; the generic kinds use the retry. */
static fy_policy_t *own_policy(void) {
  switch (trigger) {
  case K_BREAKER_STATE:
  case K_BREAKER_TRIP:
  case K_BREAKER_CLASSIFY:
    return fy_breaker_policy(BR);
  case K_TIMEOUT_ON_TIMEOUT:
  case K_TIMEOUT_WATCH:
    return fy_timeout_policy(TO);
  case K_BULKHEAD_REJECTED:
    return fy_bulkhead_policy(BH);
  case K_FALLBACK_ON_FALLBACK:
  case K_FALLBACK_SHOULD:
    return fy_fallback_policy(FB);
  default:
    return fy_retry_policy(RT);
  }
}

/* Called from every callback: the one under test acts, once. */
static void hook(int kind) {
  fy_ctx_stats_t st;
  int rc;
  if (kind != trigger)
    return;
  runs++;
  if (acted)
    return;
  acted = 1;
  fy_ctx_stats(FX.ctx, &st);
  inflight_at_action = st.calls;
  switch (target) {
  case CLOSE_POLICY:
    rc = fy_policy_close(own_policy(), fx_obj_closed, &closes[0]);
    cr_assert_eq(rc, 0, "policy close from kind %d: %s", kind, fy_err_name(rc));
    closes_asked++;
    policy_closed = 1;
    break;
  case CLOSE_PIPELINE:
    rc = fy_pipeline_close(PL, fx_obj_closed, &closes[1]);
    cr_assert_eq(rc, 0, "pipeline close from kind %d: %s", kind,
                 fy_err_name(rc));
    closes_asked++;
    pipeline_closed = 1;
    break;
  default:
    cr_assert_eq(fx_close(&FX), 0);
    break;
  }
}

/* ---- the callbacks --------------------------------------------------------
 */

static void on_call_done(tcall_t *tc, int status) {
  (void)tc;
  (void)status;
  hook(K_CALL_DONE);
}

static void on_op_start(top_t *top, fy_attempt_t *a) {
  (void)top;
  (void)a;
  hook(K_OP_START);
}

static void on_op_cancel(top_t *top, fy_attempt_t *a) {
  (void)top;
  (void)a;
  hook(K_OP_CANCEL);
}

static void on_deadline(fy_deadline_t *d) {
  (void)d;
  hook(K_DEADLINE);
}

static void on_event(fy_ctx_t *ctx, const fy_event_t *ev, void *ud) {
  (void)ctx;
  (void)ud;
  if (ev->type == FY_EV_ATTEMPT_DONE)
    hook(K_LISTENER);
}

static void on_state(fy_breaker_state_t from, fy_breaker_state_t to, void *ud) {
  (void)from;
  (void)to;
  (void)ud;
  hook(K_BREAKER_STATE);
}

static int trip(const fy_breaker_counts_t *c, void *ud) {
  (void)ud;
  hook(K_BREAKER_TRIP);
  return c->consecutive_failures >= 2;
}

static fy_outcome_t breaker_classify(int status, void *ud) {
  hook(K_BREAKER_CLASSIFY);
  return fy_classify_default(status, ud);
}

static void on_retry(fy_call_t *call, unsigned attempt, int last,
                     uint64_t delay, void *ud) {
  (void)call;
  (void)attempt;
  (void)last;
  (void)delay;
  (void)ud;
  hook(K_RETRY_ON_RETRY);
}

static int retry_classify(int status, void *ud) {
  (void)status;
  (void)ud;
  hook(K_RETRY_CLASSIFY);
  return -1; /* let the defaults decide */
}

static void on_timeout(fy_timeout_t *t, fy_call_t *call,
                       fy_timeout_stage_t stage, uint64_t elapsed,
                       uint64_t limit, void *ud) {
  (void)t;
  (void)call;
  (void)stage;
  (void)elapsed;
  (void)limit;
  (void)ud;
  hook(K_TIMEOUT_ON_TIMEOUT);
}

static void on_watch(fy_timeout_watch_t *w, int status,
                     fy_timeout_stage_t stage, uint64_t elapsed, uint64_t limit,
                     void *ud) {
  (void)w;
  (void)status;
  (void)stage;
  (void)elapsed;
  (void)limit;
  (void)ud;
  hook(K_TIMEOUT_WATCH);
}

static void on_rejected(int reason, void *ud) {
  (void)reason;
  (void)ud;
  hook(K_BULKHEAD_REJECTED);
}

static void on_fallback(int primary, void *ud) {
  (void)primary;
  (void)ud;
  hook(K_FALLBACK_ON_FALLBACK);
}

static fy_outcome_t should_fallback(int status, void *ud) {
  hook(K_FALLBACK_SHOULD);
  return fy_classify_default(status, ud);
}

static void on_spare_closed(void *obj, void *ud) {
  fx_obj_closed(obj, ud);
  hook(K_CLOSE_CB);
}

/* ---- the world ------------------------------------------------------------
 */

static void build(void) {
  fy_breaker_opts_t bo;
  fy_retry_opts_t ro;
  fy_timeout_opts_t to;
  fy_bulkhead_opts_t ho;
  fy_fallback_opts_t fo;
  fy_policy_t *layers[5];

  fy_breaker_opts_init(&bo);
  bo.name = "breaker";
  bo.open_ms = 30;
  bo.ready_to_trip = trip;
  bo.classify = breaker_classify;
  bo.on_state_change = on_state;
  cr_assert_eq(fy_breaker_new(FX.ctx, &bo, &BR), 0);

  fy_retry_opts_init(&ro);
  ro.name = "retry";
  ro.max_attempts = 2;
  ro.initial_delay_ms = 5;
  ro.is_retryable = retry_classify;
  ro.on_retry = on_retry;
  cr_assert_eq(fy_retry_new(FX.ctx, &ro, &RT), 0);

  fy_timeout_opts_init(&to);
  to.name = "timeout";
  to.timeout_ms = 50;
  to.on_timeout = on_timeout;
  cr_assert_eq(fy_timeout_new(FX.ctx, &to, &TO), 0);

  fy_bulkhead_opts_init(&ho);
  ho.name = "bulkhead";
  ho.max_concurrent = 2;
  ho.max_queue = 1;
  ho.queue_timeout_ms = 100;
  ho.on_rejected = on_rejected;
  cr_assert_eq(fy_bulkhead_new(FX.ctx, &ho, &BH), 0);

  fy_fallback_opts_init(&fo);
  fo.name = "fallback";
  fo.op = &top_op_cancel_sync;
  fo.arg = &FBT;
  fo.should_fallback = should_fallback;
  fo.on_fallback = on_fallback;
  top_script(&FBT, TOP_SYNC, 0);
  FBT.with_results = 1;
  FBT.on_start = on_op_start;
  cr_assert_eq(fy_fallback_new(FX.ctx, &fo, &FB), 0);

  cr_assert_eq(fy_passthrough_new(FX.ctx, "spare", &SPARE), 0);

  layers[0] = fy_fallback_policy(FB);
  layers[1] = fy_bulkhead_policy(BH);
  layers[2] = fy_timeout_policy(TO);
  layers[3] = fy_retry_policy(RT);
  layers[4] = fy_breaker_policy(BR);
  cr_assert_eq(fy_pipeline_new(FX.ctx, layers, 5, &PL), 0);
  cr_assert_eq(fy_ctx_listen(FX.ctx, FY_EV_ALL, on_event, NULL, NULL), 0);
}

static int alive(void) {
  return !FX.close_requested;
}

static void start(int i, const fy_op_t *op) {
  int rc;
  if (!alive() || pipeline_closed)
    return;
  C[i].then = on_call_done;
  rc = tcall_start(&C[i], PL, op, &T[i]);
  started[i] = rc == 0;
  /* Refusals the scenario may meet once something is closing. */
  cr_assert(rc == 0 || rc == FY_ECLOSED || rc == FY_ECIRCUITOPEN,
            "call %d refused: %s", i, fy_err_name(rc));
}

static void advance(uint64_t ms) {
  /* The context may be closing: advancing still delivers and fires until
   * its handles close in the loop. */
  cr_assert_eq(fy_ctx_advance(FX.ctx, ms), 0);
}

static void run_matrix_cell(int kind, int what) {
  int i, r;

  trigger = kind;
  target = what;
  runs = 0;
  acted = 0;
  policy_closed = pipeline_closed = 0;
  closes_asked = 0;
  memset(closes, 0, sizeof(closes));
  memset(T, 0, sizeof(T));
  memset(&FBT, 0, sizeof(FBT));
  memset(C, 0, sizeof(C));
  memset(started, 0, sizeof(started));

  fa_install(-1);
  fx_init(&FX, 1000);
  build();
  for (i = 0; i < NCALLS; i++) {
    T[i].on_start = on_op_start;
    T[i].on_cancel = on_op_cancel;
    T[i].with_results = 1;
  }
  fy_deadline_init(FX.ctx, &DL, on_deadline);
  cr_assert_eq(fy_deadline_start(&DL, 10), 0);
  cr_assert_eq(fy_timeout_watch_start(TO, &WATCH, 15, on_watch, NULL), 0);

  top_script(&T[0], TOP_SYNC, UV_EIO); /* retried, trips, falls back */
  start(0, &top_op_cancel_sync);
  start(1, &top_op_cancel_sync);  /* runs into the timeout */
  start(2, &top_op_cancel_later); /* queued; ignores the cancel */
  start(3, &top_op_cancel_sync);  /* refused inside: falls back */
  advance(0);
  if (alive()) {
    cr_assert_eq(fy_policy_close(SPARE, on_spare_closed, &closes[2]), 0);
    closes_asked++;
  }
  advance(1);
  advance(4);  /* 5: the retry of call 0 fails too, the breaker opens */
  advance(5);  /* 10: the user deadline */
  advance(5);  /* 15: the watch */
  advance(40); /* 55: the timeouts; call 2's operation ignores it */
  advance(60);
  top_report_all(&T[2], 0); /* late: its result is destroyed */
  advance(100);

  cr_assert_geq(runs, 1, "callback kind %d never ran", kind);
  cr_assert_eq(acted, 1);
  cr_assert_geq(inflight_at_action, 1, "kind %d acted with no call in flight",
                kind);

  /* Everything ends: the context closes, late attempts report. */
  fx_close(&FX);
  for (r = 0; r < 16 && !FX.closed; r++) {
    for (i = 0; i < NCALLS; i++)
      top_report_all(&T[i], UV_ECANCELED);
    top_report_all(&FBT, UV_ECANCELED);
    uv_run(&FX.loop, UV_RUN_NOWAIT);
  }
  fx_finish(&FX);

  for (i = 0; i < NCALLS; i++) {
    if (!started[i])
      continue;
    cr_assert_eq(C[i].ncb, 1, "call %d called back %u times (kind %d, %d)", i,
                 C[i].ncb, kind, what);
    cr_assert_eq(C[i].nested, 0, "call %d called back inside the API", i);
  }
  for (i = 0; i < 3; i++)
    cr_assert_leq(closes[i].n, 1, "close callback %d ran %u times", i,
                  closes[i].n);
  cr_assert_eq(closes[0].n + closes[1].n + closes[2].n, closes_asked,
               "%u close callbacks for %u closes",
               closes[0].n + closes[1].n + closes[2].n, closes_asked);
  cr_assert_eq(tres_errors(), 0);
  cr_assert_eq(tres_created(), tres_destroyed(), "%u of %u results freed",
               tres_destroyed(), tres_created());
  cr_assert_eq(FA.live, 0, "%ld blocks leaked (kind %d, %d)", FA.live, kind,
               what);
  fa_restore();
}

TestSuite(reentrancy);

#define CELL(name, kind)                                                       \
  Test(reentrancy, name##_closes_its_policy) {                                 \
    run_matrix_cell(kind, CLOSE_POLICY);                                       \
  }                                                                            \
  Test(reentrancy, name##_closes_its_pipeline) {                               \
    run_matrix_cell(kind, CLOSE_PIPELINE);                                     \
  }                                                                            \
  Test(reentrancy, name##_closes_the_context) {                                \
    run_matrix_cell(kind, CLOSE_CTX);                                          \
  }

CELL(call_done, K_CALL_DONE)
CELL(op_start, K_OP_START)
CELL(op_cancel, K_OP_CANCEL)
CELL(deadline, K_DEADLINE)
CELL(listener, K_LISTENER)
CELL(breaker_on_state_change, K_BREAKER_STATE)
CELL(breaker_ready_to_trip, K_BREAKER_TRIP)
CELL(breaker_classify, K_BREAKER_CLASSIFY)
CELL(retry_on_retry, K_RETRY_ON_RETRY)
CELL(retry_is_retryable, K_RETRY_CLASSIFY)
CELL(timeout_on_timeout, K_TIMEOUT_ON_TIMEOUT)
CELL(timeout_watch, K_TIMEOUT_WATCH)
CELL(bulkhead_on_rejected, K_BULKHEAD_REJECTED)
CELL(fallback_on_fallback, K_FALLBACK_ON_FALLBACK)
CELL(fallback_should_fallback, K_FALLBACK_SHOULD)
CELL(close_callback, K_CLOSE_CB)
