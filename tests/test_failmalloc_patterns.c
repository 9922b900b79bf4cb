/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * Allocation failure injection across the patterns and presets (rule 6),
 * as tests/test_failmalloc.c does for the core: a representative scenario
 * per pattern runs once to count the library's allocations N, then once per
 * allocation i < N with the i-th one failing, then once per i with every
 * allocation from the i-th on failing (a heap that stays exhausted).
 *
 * Each run checks:
 * - the failure surfaces as UV_ENOMEM to the caller that needed the memory:
 *   a constructor or fy_call_start() returns it, or a call completes with
 *   it, or the policy that absorbed it says so (a retry retrying it, a
 *   fallback standing in for it: the event's status, detail.cause or
 *   detail.state); anything else an API returns is what the scenario
 *   expects or UV_ENOMEM;
 * - every started call is called back exactly once, every result is
 *   destroyed once, nothing crashes;
 * - the object stays usable: after a single failure, the scenario's last
 *   call succeeds unless that very call met the failure;
 * - the context closes and nothing is left allocated.
 *
 * One allocation is allowed to fail without an UV_ENOMEM: the breaker's
 * queue of state changes, which merges changes instead of growing
 * (docs/breaker.md); the scenario checks that the notified chain still ends
 * at the real state.  N is counted at run time (the freelists are bypassed
 * under ASan and with FY_NO_POOL, so it differs between builds). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"

#define NCALLS 8

static uv_loop_t loop;
static fy_ctx_t *ctx;
static top_t T[NCALLS];
static tcall_t C[NCALLS];
static int started[NCALLS];
static unsigned closed; /* close callbacks */
static unsigned to_close;
static unsigned merged_ok; /* breaker: changes merged, chain intact */
static top_t FBT;          /* the fallback operation's attempts */

static void on_event(fy_ctx_t *c, const fy_event_t *ev, void *ud) {
  (void)c;
  (void)ud;
  /* A retry retrying an UV_ENOMEM, a fallback standing in for one, a
   * bulkhead waiter that could not start: the failure was seen. */
  if (ev->status == UV_ENOMEM &&
      (ev->type == FY_EV_RETRY || ev->type == FY_EV_FALLBACK ||
       ev->type == FY_EV_ATTEMPT_DONE))
    enomem++;
}

/* A synchronous refusal the scenario allows, or UV_ENOMEM. */
static int start(int i, fy_pipeline_t *pl, const fy_op_t *op, int allowed) {
  int rc;
  C[i].ncb = 0;
  rc = tcall_start(&C[i], pl, op, &T[i]);
  started[i] = rc == 0;
  if (rc == 0)
    return 0;
  if (rc == UV_ENOMEM) {
    enomem++;
    return rc;
  }
  cr_assert(rc == allowed && allowed != 0, "call %d refused: %s (fail_at %ld)",
            i, fy_err_name(rc), FA.fail_at);
  return rc;
}

static void begin(void) {
  fy_ctx_opts_t opts;
  probe_reset();
  memset(T, 0, sizeof(T));
  memset(C, 0, sizeof(C));
  memset(started, 0, sizeof(started));
  memset(&FBT, 0, sizeof(FBT));
  enomem = 0;
  closed = 0;
  to_close = 0;
  merged_ok = 0;
  ctx = NULL;
  cr_assert_eq(uv_loop_init(&loop), 0);
  memset(&opts, 0, sizeof(opts));
  opts.manual_clock = 1;
  opts.manual_start_ms = 1000;
  if (ok_or_enomem(fy_ctx_new(&loop, &opts, &ctx), "fy_ctx_new") != 0) {
    cr_assert_null(ctx);
    return;
  }
  ok_or_enomem(fy_ctx_listen(ctx, FY_EV_ALL, on_event, NULL, NULL),
               "fy_ctx_listen");
}

static void report_all(int status) {
  int i;
  for (i = 0; i < NCALLS; i++)
    top_report_all(&T[i], status);
  top_report_all(&FBT, status);
}

/* Every call started was called back once; a failure seen in a status or
 * in the detail counts. */
static void check_calls(void) {
  int i;
  for (i = 0; i < NCALLS; i++) {
    if (!started[i])
      continue;
    cr_assert_eq(C[i].ncb, 1, "call %d called back %u times (fail_at %ld)", i,
                 C[i].ncb, FA.fail_at);
    cr_assert_leq(C[i].status, 0);
    if (C[i].status == UV_ENOMEM || C[i].call.detail.cause == UV_ENOMEM ||
        C[i].call.detail.state == UV_ENOMEM)
      enomem++;
  }
}

/* The last call of a scenario: after a single failure the objects still
 * work, unless the failure happened inside this very call. */
static void last_call(fy_pipeline_t *pl) {
  long failed = FA.failed;
  const int i = NCALLS - 1;
  if (pl == NULL)
    return;
  top_script(&T[i], TOP_SYNC, 0);
  if (start(i, pl, &top_op_cancel_sync, 0) != 0)
    return;
  /* Long enough for any retry of it (the heap may stay exhausted). */
  cr_assert_eq(fy_ctx_advance(ctx, 5000), 0);
  cr_assert_eq(C[i].ncb, 1, "the last call is still running (fail_at %ld)",
               FA.fail_at);
  if (FA.failed == failed && FA.fail_at >= 0 && FA.fail_at < FA.requests)
    cr_assert_eq(C[i].status, 0, "not usable after failure %ld: %s", FA.fail_at,
                 fy_err_name(C[i].status));
}

static void finish(void) {
  int runs;
  if (ctx != NULL) {
    cr_assert_eq(fy_ctx_advance(ctx, 0), 0);
    cr_assert_eq(fy_ctx_close(ctx, fx_count_closed, &closed), 0);
    to_close++;
    for (runs = 0; runs < 16 && closed < to_close; runs++) {
      report_all(UV_ECANCELED);
      uv_run(&loop, UV_RUN_DEFAULT);
    }
    cr_assert_eq(closed, to_close, "%u of %u close callbacks (fail_at %ld)",
                 closed, to_close, FA.fail_at);
    check_calls(); /* the close completed whatever was still running */
  }
  cr_assert_eq(uv_loop_close(&loop), 0);
  cr_assert_eq(tres_errors(), 0);
  cr_assert_eq(tres_created(), tres_destroyed(), "%u of %u results freed",
               tres_destroyed(), tres_created());
}

static void close_policy(fy_policy_t *p) {
  if (p != NULL && fy_policy_close(p, fx_count_closed, &closed) == 0)
    to_close++;
}

static void close_pipeline(fy_pipeline_t *pl) {
  if (pl != NULL && fy_pipeline_close(pl, fx_count_closed, &closed) == 0)
    to_close++;
}

static fy_pipeline_t *pipeline1(fy_policy_t *p) {
  fy_pipeline_t *pl = NULL;
  if (p == NULL ||
      ok_or_enomem(fy_pipeline_new(ctx, &p, 1, &pl), "fy_pipeline_new") != 0)
    return NULL;
  return pl;
}

/* ---- scenarios ------------------------------------------------------------
 */

static fy_breaker_state_t notified;
static unsigned notes;
static fy_breaker_t *g_brk;

static void on_change(fy_breaker_state_t from, fy_breaker_state_t to,
                      void *ud) {
  (void)ud;
  cr_assert_eq(from, notified, "chain broken: %d->%d after %d", from, to,
               notified);
  notified = to;
  notes++;
  /* The first trip queues many more changes from here, past the inline
   * queue of 32: the queue grows (an allocation). */
  if (notes == 1 && to == FY_BREAKER_OPEN) {
    int k;
    for (k = 0; k < 20; k++) {
      fy_breaker_set_mode(g_brk, FY_BREAKER_FORCED_OPEN);
      fy_breaker_set_mode(g_brk, FY_BREAKER_NORMAL);
    }
  }
}

static unsigned notes_baseline;

static void scen_breaker(void) {
  fy_breaker_opts_t o;
  fy_breaker_permit_t permit;
  fy_pipeline_t *pl = NULL;
  int i;

  begin();
  if (ctx == NULL)
    goto out;
  fy_breaker_opts_init(&o);
  o.name = "b";
  o.failure_threshold = 2;
  o.open_ms = 100;
  o.max_requests = 1;
  o.window = FY_BREAKER_WINDOW_COUNT; /* allocated with the breaker */
  o.window_calls = 50;
  o.minimum_calls = 50;
  o.on_state_change = on_change;
  notified = FY_BREAKER_CLOSED;
  notes = 0;
  g_brk = NULL;
  if (ok_or_enomem(fy_breaker_new(ctx, &o, &g_brk), "fy_breaker_new") != 0)
    goto out;
  pl = pipeline1(fy_breaker_policy(g_brk));
  if (pl != NULL) {
    top_script(&T[0], TOP_SYNC, 0);
    start(0, pl, &top_op_cancel_sync, 0);
    for (i = 1; i <= 2; i++) {
      top_script(&T[i], TOP_SYNC, UV_EIO);
      T[i].with_results = 1;
      start(i, pl, &top_op_cancel_sync, FY_ECIRCUITOPEN);
      cr_assert_eq(fy_ctx_advance(ctx, 0), 0);
    }
    /* Open (with the burst of changes above): refused at once. */
    start(3, pl, &top_op_cancel_sync, FY_ECIRCUITOPEN);
    cr_assert_eq(fy_ctx_advance(ctx, 100), 0); /* half-open */
    start(4, pl, &top_op_cancel_later, FY_ECIRCUITOPEN);
    if (started[4])
      tcall_cancel(&C[4]); /* a trial given back */
    cr_assert_eq(fy_ctx_advance(ctx, 0), 0);
  }
  /* The two-step API with no pipeline. */
  if (fy_breaker_acquire(g_brk, &permit, NULL) == 0)
    fy_breaker_record(g_brk, &permit, 0);
  fy_breaker_reset(g_brk);
  cr_assert_eq(notified, fy_breaker_state(g_brk), "chain ends at %d, state %d",
               notified, fy_breaker_state(g_brk));
  if (notes_baseline != 0 && notes < notes_baseline)
    merged_ok = 1; /* the queue could not grow: changes were merged */
  last_call(pl);
  close_pipeline(pl);
  close_policy(fy_breaker_policy(g_brk));
out:
  finish();
}

static unsigned retries_seen;

static void on_retry(fy_call_t *call, unsigned attempt, int last,
                     uint64_t delay, void *ud) {
  (void)call;
  (void)attempt;
  (void)last;
  (void)delay;
  (void)ud;
  retries_seen++;
}

static void scen_retry(void) {
  fy_retry_opts_t o;
  fy_retry_t *r = NULL;
  fy_pipeline_t *pl = NULL;

  begin();
  if (ctx == NULL)
    goto out;
  fy_retry_opts_init(&o);
  o.name = "r";
  o.max_attempts = 3;
  o.initial_delay_ms = 10;
  o.jitter = FY_RETRY_JITTER_FULL;
  o.seed = 7;
  o.on_retry = on_retry;
  if (ok_or_enomem(fy_retry_new(ctx, &o, &r), "fy_retry_new") != 0)
    goto out;
  pl = pipeline1(fy_retry_policy(r));
  if (pl != NULL) {
    /* Fails twice (once at start), then works. */
    top_script(&T[0], TOP_SYNC, UV_EIO);
    top_push(&T[0], TOP_START_ERROR, UV_ECONNRESET);
    top_push(&T[0], TOP_SYNC, 0);
    T[0].with_results = 1;
    start(0, pl, &top_op_cancel_sync, 0);
    /* Fails for good. */
    top_script(&T[1], TOP_SYNC, UV_EIO);
    start(1, pl, &top_op_cancel_sync, 0);
    /* Cancelled in its backoff. */
    top_script(&T[2], TOP_SYNC, UV_EIO);
    start(2, pl, &top_op_cancel_sync, 0);
    cr_assert_eq(fy_ctx_advance(ctx, 0), 0);
    if (started[2] && C[2].ncb == 0)
      tcall_cancel(&C[2]);
    cr_assert_eq(fy_ctx_advance(ctx, 100), 0);
    cr_assert_eq(fy_ctx_advance(ctx, 100), 0);
  }
  last_call(pl);
  close_pipeline(pl);
  close_policy(fy_retry_policy(r));
out:
  finish();
}

static void scen_timeout(void) {
  fy_timeout_opts_t o;
  fy_timeout_t *t = NULL;
  fy_pipeline_t *pl = NULL;

  begin();
  if (ctx == NULL)
    goto out;
  fy_timeout_opts_init(&o);
  o.name = "t";
  o.timeout_ms = 20;
  o.idle_ms = 15;
  if (ok_or_enomem(fy_timeout_new(ctx, &o, &t), "fy_timeout_new") != 0)
    goto out;
  pl = pipeline1(fy_timeout_policy(t));
  if (pl != NULL) {
    start(0, pl, &top_op_nocancel, 0); /* times out, reports late */
    T[0].with_results = 1;
    start(1, pl, &top_op_cancel_later, 0); /* completes in time */
    T[1].with_results = 1;
    top_script(&T[2], TOP_SYNC, 0);
    start(2, pl, &top_op_cancel_sync, 0);
    cr_assert_eq(fy_ctx_advance(ctx, 5), 0);
    top_report_all(&T[1], 0);
    cr_assert_eq(fy_ctx_advance(ctx, 20), 0);
    top_report_all(&T[0], 0); /* late: destroyed */
    cr_assert_eq(fy_ctx_advance(ctx, 0), 0);
  }
  last_call(pl);
  close_pipeline(pl);
  close_policy(fy_timeout_policy(t));
out:
  finish();
}

static unsigned rejections;

static void on_rejected(int reason, void *ud) {
  (void)reason;
  (void)ud;
  rejections++;
}

static void scen_bulkhead(void) {
  fy_bulkhead_opts_t o;
  fy_bulkhead_t *bh = NULL;
  fy_pipeline_t *pl = NULL;

  begin();
  if (ctx == NULL)
    goto out;
  fy_bulkhead_opts_init(&o);
  o.name = "bh";
  o.max_concurrent = 1;
  o.max_queue = 2;
  o.queue_timeout_ms = 50;
  o.on_rejected = on_rejected;
  if (ok_or_enomem(fy_bulkhead_new(ctx, &o, &bh), "fy_bulkhead_new") != 0)
    goto out;
  pl = pipeline1(fy_bulkhead_policy(bh));
  if (pl != NULL) {
    start(0, pl, &top_op_cancel_later, FY_EBULKHEADFULL); /* runs */
    T[0].with_results = 1;
    start(1, pl, &top_op_cancel_later, FY_EBULKHEADFULL); /* queued */
    start(2, pl, &top_op_cancel_later, FY_EBULKHEADFULL); /* queued */
    start(3, pl, &top_op_cancel_later, FY_EBULKHEADFULL); /* refused */
    top_report_all(&T[0], 0); /* the head of the queue starts here */
    cr_assert_eq(fy_ctx_advance(ctx, 0), 0);
    top_report_all(&T[1], UV_EIO);
    top_report_all(&T[2], 0);
    cr_assert_eq(fy_ctx_advance(ctx, 0), 0);
    /* A permit without a pipeline. */
    if (fy_bulkhead_try_acquire(bh) == 0)
      fy_bulkhead_release(bh);
    report_all(0);
    cr_assert_eq(fy_ctx_advance(ctx, 60), 0);
    report_all(0);
  }
  last_call(pl);
  close_pipeline(pl);
  close_policy(fy_bulkhead_policy(bh));
out:
  finish();
}

static void scen_fallback(void) {
  fy_fallback_opts_t o;
  fy_fallback_t *fb = NULL;
  fy_pipeline_t *pl = NULL;

  begin();
  if (ctx == NULL)
    goto out;
  fy_fallback_opts_init(&o);
  o.name = "fb";
  o.op = &top_op_cancel_sync;
  o.arg = &FBT;
  top_script(&FBT, TOP_SYNC, 0);
  FBT.with_results = 1;
  if (ok_or_enomem(fy_fallback_new(ctx, &o, &fb), "fy_fallback_new") != 0)
    goto out;
  pl = pipeline1(fy_fallback_policy(fb));
  if (pl != NULL) {
    top_script(&T[0], TOP_SYNC, UV_EIO); /* primary fails: fallback */
    T[0].with_results = 1;
    start(0, pl, &top_op_cancel_sync, 0);
    top_script(&T[1], TOP_SYNC, 0); /* primary fine */
    start(1, pl, &top_op_cancel_sync, 0);
    start(2, pl, &top_op_cancel_later, 0); /* fails late */
    cr_assert_eq(fy_ctx_advance(ctx, 0), 0);
    top_report_all(&T[2], UV_ETIMEDOUT);
    cr_assert_eq(fy_ctx_advance(ctx, 0), 0);
  }
  last_call(pl);
  close_pipeline(pl);
  close_policy(fy_fallback_policy(fb));
out:
  finish();
}

static void scen_preset(void) {
  fy_preset_opts_t o;
  fy_preset_t *p = NULL;
  fy_pipeline_t *pl = NULL;

  begin();
  if (ctx == NULL)
    goto out;
  fy_preset_opts_init(&o, FY_PRESET_HTTP_CLIENT);
  o.name = "api";
  o.attempt_timeout_ms = 50;
  o.total_timeout_ms = 400;
  o.retry_initial_delay_ms = 10;
  o.retry_jitter = FY_RETRY_JITTER_NONE;
  o.max_concurrent = 2;
  o.max_queue = 1;
  o.queue_timeout_ms = 30;
  if (ok_or_enomem(fy_preset_new(ctx, &o, &p), "fy_preset_new") != 0) {
    cr_assert_null(p);
    goto out;
  }
  pl = fy_preset_pipeline(p);
  top_script(&T[0], TOP_SYNC, UV_EIO); /* retried, then fine */
  top_push(&T[0], TOP_SYNC, 0);
  T[0].with_results = 1;
  start(0, pl, &top_op_cancel_sync, 0);
  start(1, pl, &top_op_cancel_later, 0); /* per-try timeouts, retried */
  start(2, pl, &top_op_cancel_later, FY_EBULKHEADFULL); /* queued */
  start(3, pl, &top_op_cancel_later, FY_EBULKHEADFULL); /* full */
  cr_assert_eq(fy_ctx_advance(ctx, 10), 0);
  cr_assert_eq(fy_ctx_advance(ctx, 60), 0);
  report_all(0);
  cr_assert_eq(fy_ctx_advance(ctx, 100), 0);
  report_all(0);
  cr_assert_eq(fy_ctx_advance(ctx, 500), 0);
  report_all(0);
  last_call(pl);
  if (fy_preset_close(p, fx_count_closed, &closed) == 0)
    to_close++;
out:
  finish();
}

/* ---- the driver -----------------------------------------------------------
 */

typedef void (*scenario_fn)(void);

static int breaker_merged(void) { return merged_ok; }

static void run_failmalloc(const char *what, scenario_fn fn, int merges) {
  fa_plan_t plan = {what, fn, 3, 0, NULL};
  long n;
  if (merges)
    plan.excused = breaker_merged;
  n = fa_run(&plan);
  /* The figure for docs/RELIABILITY.md. */
  fprintf(stderr, "failmalloc_patterns: %s: %ld allocation points, %ld runs\n",
          what, n, 2 * n + 1);
}

TestSuite(failmalloc_patterns);

Test(failmalloc_patterns, breaker) {
  /* The baseline notification count tells a merge from a loss. */
  notes_baseline = 0;
  fa_install(-1);
  scen_breaker();
  notes_baseline = notes;
  cr_assert_gt(notes_baseline, 32, "the change queue never had to grow");
  run_failmalloc("breaker", scen_breaker, 1);
}

Test(failmalloc_patterns, retry) {
  run_failmalloc("retry", scen_retry, 0);
  cr_assert_gt(retries_seen, 0);
}

Test(failmalloc_patterns, timeout) {
  run_failmalloc("timeout", scen_timeout, 0);
}

Test(failmalloc_patterns, bulkhead) {
  run_failmalloc("bulkhead", scen_bulkhead, 0);
  cr_assert_gt(rejections, 0);
}

Test(failmalloc_patterns, fallback) {
  run_failmalloc("fallback", scen_fallback, 0);
}

Test(failmalloc_patterns, preset) {
  run_failmalloc("preset", scen_preset, 0);
}
