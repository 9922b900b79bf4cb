/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * Allocation failure injection (rule 6): run a scenario once to count the
 * library's allocations N, then once per allocation i < N with the i-th one
 * failing.  Every failure must surface as UV_ENOMEM from the API that
 * allocated, or as a call completing with UV_ENOMEM; nothing crashes, and
 * nothing is left allocated.  N is counted at run time: the freelists are
 * bypassed under AddressSanitizer, so it differs between builds. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"

#define NCALLS 7

static probe_t PA, PS, PC, PT;
static top_t T[NCALLS];
static tcall_t C[NCALLS];
static int started[NCALLS];
static unsigned closed;
static unsigned long events;

static void start(int i, fy_pipeline_t *pl, const fy_op_t *op) {
  C[i].ncb = 0;
  started[i] = ok_or_enomem(tcall_start(&C[i], pl, op, &T[i]),
                            "fy_call_start") == 0;
}

static void report_all(int status) {
  for (int i = 0; i < NCALLS; i++)
    top_report_all(&T[i], status);
}

static void scenario(void) {
  static const int expect[NCALLS] = {0, 0, 0, 0, UV_ETIMEDOUT, UV_ECANCELED,
                                     UV_EIO};
  uv_loop_t loop;
  fy_ctx_t *ctx = NULL;
  fy_ctx_opts_t opts;
  fy_policy_t *pt = NULL, *l2[2];
  fy_pipeline_t *pl1, *pl2, *pl3, *pl4, *pl5;
  int i, runs;

  probe_reset();
  memset(&PA, 0, sizeof(PA));
  memset(&PS, 0, sizeof(PS));
  memset(&PC, 0, sizeof(PC));
  memset(&PT, 0, sizeof(PT));
  memset(T, 0, sizeof(T));
  memset(C, 0, sizeof(C));
  memset(started, 0, sizeof(started));
  enomem = 0;
  closed = 0;
  events = 0;

  cr_assert_eq(uv_loop_init(&loop), 0);
  memset(&opts, 0, sizeof(opts));
  opts.manual_clock = 1;
  if (ok_or_enomem(fy_ctx_new(&loop, &opts, &ctx), "fy_ctx_new") != 0) {
    cr_assert_null(ctx);
    cr_assert_eq(uv_loop_close(&loop), 0);
    return;
  }
  if (ok_or_enomem(fy_ctx_listen(ctx, FY_EV_ALL, fx_count_event, &events,
                                 NULL),
                   "fy_ctx_listen") != 0)
    goto close;

  PA.cancel = PROBE_CANCEL_FORWARD;
  PS.mode = PROBE_SEQUENTIAL;
  PS.n = 3;
  PC.mode = PROBE_CONCURRENT;
  PC.n = 2;
  PT.timeout_ms = 10;
  PT.timeout_detach = 1;
  if (ok_or_enomem(probe_new(ctx, &PA, "pass"), "probe_new") != 0 ||
      ok_or_enomem(fy_passthrough_new(ctx, "pt", &pt), "passthrough") != 0 ||
      ok_or_enomem(probe_new(ctx, &PS, "seq"), "probe_new") != 0 ||
      ok_or_enomem(probe_new(ctx, &PC, "hedge"), "probe_new") != 0 ||
      ok_or_enomem(probe_new(ctx, &PT, "timeout"), "probe_new") != 0)
    goto close;
  l2[0] = PA.policy;
  l2[1] = pt;
  if (ok_or_enomem(fy_pipeline_new(ctx, l2, 2, &pl1), "pipeline") != 0)
    goto close;
  l2[0] = PS.policy;
  if (ok_or_enomem(fy_pipeline_new(ctx, l2, 2, &pl2), "pipeline") != 0 ||
      ok_or_enomem(fy_pipeline_new(ctx, &PC.policy, 1, &pl3), "pipeline") !=
          0 ||
      ok_or_enomem(fy_pipeline_new(ctx, NULL, 0, &pl4), "pipeline") != 0 ||
      ok_or_enomem(fy_pipeline_new(ctx, &PT.policy, 1, &pl5), "pipeline") !=
          0)
    goto close;

  top_script(&T[0], TOP_SYNC, 0);
  start(0, pl1, &top_op_cancel_sync);          /* sync success */
  top_script(&T[1], TOP_SYNC, UV_EIO);
  top_push(&T[1], TOP_START_ERROR, UV_EIO);
  top_push(&T[1], TOP_SYNC, 0);
  start(1, pl2, &top_op_cancel_sync);          /* two failures, then ok */
  start(2, pl3, &top_op_cancel_sync);          /* hedge, async */
  start(3, pl4, &top_op_nocancel);             /* bare, async */
  T[4].with_results = 0;
  start(4, pl5, &top_op_cancel_later);         /* times out */
  start(5, pl1, &top_op_cancel_sync);          /* cancelled */
  top_script(&T[6], TOP_SYNC, UV_EIO);
  start(6, pl4, &top_op_nocancel);             /* sync failure */

  cr_assert_eq(fy_ctx_advance(ctx, 0), 0);
  top_report(&T[2], 0, 0);                     /* hedge winner */
  top_report_all(&T[3], 0);
  if (started[5])
    cr_assert_eq(fy_call_cancel(&C[5].call), 0);
  cr_assert_eq(fy_ctx_advance(ctx, 10), 0);    /* the timeout fires */
  top_report_all(&T[4], 0);                    /* late */
  cr_assert_eq(fy_ctx_advance(ctx, 0), 0);

  /* Reuse the structs: steady state, freelists warm. */
  for (i = 0; i < NCALLS; i++) {
    cr_assert_eq(top_live(&T[i]), 0, "call %d still has attempts", i);
    if (started[i]) {
      cr_assert_eq(C[i].ncb, 1, "call %d ran %u times", i, C[i].ncb);
      if (C[i].status == UV_ENOMEM)
        enomem++;
      else
        cr_assert_eq(C[i].status, expect[i], "call %d: %s (fail_at %ld)", i,
                     fy_err_name(C[i].status), FA.fail_at);
    }
  }
  memset(&T[0], 0, sizeof(T[0]));
  top_script(&T[0], TOP_SYNC, 0);
  start(0, pl1, &top_op_cancel_sync);
  cr_assert_eq(fy_ctx_advance(ctx, 0), 0);
  if (started[0]) {
    cr_assert_eq(C[0].ncb, 1);
    if (C[0].status == UV_ENOMEM)
      enomem++;
    else
      cr_assert_eq(C[0].status, 0);
  }

close:
  cr_assert_eq(fy_ctx_close(ctx, fx_count_closed, &closed), 0);
  for (runs = 0; runs < 8 && !closed; runs++) {
    report_all(UV_ECANCELED);
    uv_run(&loop, UV_RUN_DEFAULT);
  }
  cr_assert_eq(closed, 1, "context never closed (fail_at %ld)", FA.fail_at);
  cr_assert_eq(uv_loop_close(&loop), 0);
  cr_assert_eq(PA.violations + PS.violations + PC.violations + PT.violations,
               0);
}

TestSuite(failmalloc);

static const fa_plan_t plan = {"core", scenario, 8, 0, NULL};

Test(failmalloc, every_allocation_failure_surfaces_as_enomem) {
  long n = fa_count(&plan);
  cr_assert_gt(events, 0);
  fa_fail_each(&plan, n);
  fa_restore();
}

/* The same, failing every allocation from the i-th on (a heap that stays
 * exhausted): still no crash and no leak. */
Test(failmalloc, an_exhausted_heap_is_survived) {
  fa_exhaust_each(&plan, fa_count(&plan));
  fa_restore();
}
