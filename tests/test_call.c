/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * Calls through pipelines: the callback rules (never inside fy_call_start or
 * fy_call_cancel, exactly once), refusals, cancellation and its races,
 * results and their ownership, detail, attempts, deadlines seen by the
 * operation, and the probe policy's re-entrancy guarantees. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"

static probe_t P, Q;
static top_t T, T2;
static tcall_t C, C2;

TestSuite(call);

static void no_violations(void) {
  cr_assert_eq(P.violations, 0, "probe P: a hook of a frame re-entered");
  cr_assert_eq(Q.violations, 0, "probe Q: a hook of a frame re-entered");
  cr_assert_leq(P.max_depth, 1);
  cr_assert_leq(Q.max_depth, 1);
  cr_assert_eq(tres_errors(), 0, "a result was destroyed twice");
}

static void all_gone(void) {
  fy_ctx_stats_t st;
  fy_ctx_stats(FX.ctx, &st);
  cr_assert_eq(st.calls, 0);
  cr_assert_eq(st.frames, 0);
  cr_assert_eq(st.queued, 0);
}

/* Pipelines used by the table-driven tests. */
enum { PL_BARE, PL_PROBE, PL_PASSTHROUGH, PL_PROBE_PASSTHROUGH, PL__N };

static fy_pipeline_t *make(int kind) {
  switch (kind) {
  case PL_BARE:
    return fx_pipeline(&FX, 0);
  case PL_PROBE:
    return fx_pipeline(&FX, 1, fx_probe(&FX, &P, "p"));
  case PL_PASSTHROUGH:
    return fx_pipeline(&FX, 1, fx_passthrough(&FX, "pt"));
  default:
    return fx_pipeline(&FX, 2, fx_probe(&FX, &P, "p"),
                       fx_passthrough(&FX, "pt"));
  }
}

/* ---- the callback stack rule ------------------------------------------- */

static void sync_case(int kind, top_kind_t how, int status, int expect) {
  fy_pipeline_t *pl;
  fx_init(&FX, 0);
  memset(&P, 0, sizeof(P));
  memset(&T, 0, sizeof(T));
  memset(&C, 0, sizeof(C));
  pl = make(kind);
  top_script(&T, how, status);
  cr_assert_eq(tcall_start(&C, pl, &top_op_cancel_sync, &T), 0);
  cr_assert_eq(T.starts, 1);
  cr_assert_eq(C.ncb, 0, "callback ran inside fy_call_start (kind %d)", kind);
  cr_assert(fy_call_is_active(&C.call));
  fx_advance(&FX, 0);
  cr_assert_eq(C.ncb, 1, "kind %d", kind);
  cr_assert_eq(C.nested, 0);
  cr_assert_eq(C.status, expect, "kind %d: %s", kind, fy_err_name(C.status));
  cr_assert_eq(C.call.status, expect);
  cr_assert_not(fy_call_is_active(&C.call));
  cr_assert_eq(C.call.detail.attempts, 1);
  cr_assert_null(C.call.detail.by_kind);
  fx_advance(&FX, 1000);
  cr_assert_eq(C.ncb, 1);
  all_gone();
  no_violations();
  fx_finish(&FX);
}

Test(call, sync_success_is_delivered_later) {
  for (int k = 0; k < PL__N; k++)
    sync_case(k, TOP_SYNC, 0, 0);
}

Test(call, sync_failure_is_delivered_later) {
  for (int k = 0; k < PL__N; k++)
    sync_case(k, TOP_SYNC, UV_EIO, UV_EIO);
}

Test(call, start_returning_an_error_is_the_attempts_outcome) {
  for (int k = 0; k < PL__N; k++)
    sync_case(k, TOP_START_ERROR, UV_ECONNREFUSED, UV_ECONNREFUSED);
}

Test(call, report_and_return_the_same_error_counts_once) {
  for (int k = 0; k < PL__N; k++)
    sync_case(k, TOP_SYNC_RETURN, UV_EPIPE, UV_EPIPE);
}

Test(call, positive_outcomes_become_ebadresult) {
  sync_case(PL_PROBE, TOP_START_ERROR, 7, FY_EBADRESULT);
  sync_case(PL_BARE, TOP_SYNC, 3, FY_EBADRESULT);
}

Test(call, loop_delivers_completions_in_manual_mode) {
  fy_pipeline_t *pl;
  fx_init(&FX, 0);
  pl = make(PL_PROBE);
  top_script(&T, TOP_SYNC, 0);
  cr_assert_eq(tcall_start(&C, pl, &top_op_nocancel, &T), 0);
  cr_assert_neq(uv_loop_alive(&FX.loop), 0, "a waiting completion must keep "
                                            "the loop alive");
  uv_run(&FX.loop, UV_RUN_NOWAIT);
  cr_assert_eq(C.ncb, 1);
  cr_assert_eq(C.status, 0);
  cr_assert_eq(uv_loop_alive(&FX.loop), 0, "an idle context keeps the loop");
  fx_finish(&FX);
}

Test(call, async_completes_when_the_operation_reports) {
  fy_pipeline_t *pl;
  fx_init(&FX, 0);
  pl = make(PL_PROBE_PASSTHROUGH);
  cr_assert_eq(tcall_start(&C, pl, &top_op_nocancel, &T), 0);
  cr_assert_eq(fy_pipeline_inflight(pl), 1);
  fx_advance(&FX, 100000);
  uv_run(&FX.loop, UV_RUN_NOWAIT);
  cr_assert_eq(C.ncb, 0);
  cr_assert(fy_call_is_active(&C.call));
  cr_assert_eq(T.call_at_start[0], &C.call);
  cr_assert_eq(T.att[0]->arg, &T);
  cr_assert_eq(T.att[0]->index, 0);
  cr_assert_eq(top_report(&T, 0, UV_ENOENT), 0);
  cr_assert_eq(C.ncb, 1);
  cr_assert_eq(C.status, UV_ENOENT);
  cr_assert_eq(fy_pipeline_inflight(pl), 0);
  fx_advance(&FX, 0);
  cr_assert_eq(C.ncb, 1);
  all_gone();
  no_violations();
  fx_finish(&FX);
}

static int second_done_rc = 1;
static void report_twice(top_t *t, fy_attempt_t *a) {
  (void)t;
  cr_assert_eq(fy_attempt_done(a, 0), 0);
  second_done_rc = fy_attempt_done(a, UV_EIO);
  T.att[0] = NULL;
}

Test(call, attempt_done_twice_is_ealready) {
  fy_pipeline_t *pl;
  fx_init(&FX, 0);
  pl = make(PL_PROBE);
  T.on_start = report_twice;
  cr_assert_eq(tcall_start(&C, pl, &top_op_nocancel, &T), 0);
  cr_assert_eq(second_done_rc, UV_EALREADY);
  fx_advance(&FX, 0);
  cr_assert_eq(C.ncb, 1);
  cr_assert_eq(C.status, 0);
  fx_finish(&FX);
}

static int adv_rc = 1;
static void advance_inside(top_t *t, fy_attempt_t *a) {
  (void)t;
  (void)a;
  adv_rc = fy_ctx_advance(FX.ctx, 0);
}

/* fy_ctx_advance() from inside an operation's hooks (the context's
 * callbacks) must refuse, even when the call was started from the top
 * level: delivering there would run callbacks inside fy_call_start(). */
Test(call, advance_inside_op_start_and_cancel_is_busy) {
  fy_pipeline_t *pl;
  fx_init(&FX, 0);
  pl = make(PL_PROBE);
  top_script(&T, TOP_SYNC, 0);
  cr_assert_eq(tcall_start(&C2, pl, &top_op_nocancel, &T), 0); /* queued */
  T2.on_start = advance_inside;
  cr_assert_eq(tcall_start(&C, pl, &top_op_cancel_later, &T2), 0);
  cr_assert_eq(adv_rc, UV_EBUSY);
  cr_assert_eq(C2.ncb, 0);
  T2.on_start = NULL;
  T2.on_cancel = advance_inside;
  adv_rc = 1;
  cr_assert_eq(tcall_cancel(&C), 0);
  cr_assert_eq(adv_rc, UV_EBUSY);
  cr_assert_eq(C.ncb + C2.ncb, 0);
  top_report(&T2, 0, UV_ECANCELED);
  fx_advance(&FX, 0);
  cr_assert_eq(C.ncb, 1);
  cr_assert_eq(C2.ncb, 1);
  cr_assert_eq(C.nested + C2.nested, 0);
  fx_finish(&FX);
}

/* ---- argument validation ----------------------------------------------- */

static void never_cb(fy_call_t *call, int status) {
  (void)call;
  (void)status;
  cr_assert_fail("callback of a refused call ran");
}

Test(call, argument_validation) {
  fy_pipeline_t *pl;
  fy_ctx_t *ctx = (fy_ctx_t *)&C;
  fy_op_t nostart = {NULL, NULL};
  fx_init(&FX, 0);
  cr_assert_eq(fy_ctx_new(NULL, NULL, &ctx), UV_EINVAL);
  cr_assert_null(ctx);
  cr_assert_eq(fy_ctx_new(&FX.loop, NULL, NULL), UV_EINVAL);
  pl = make(PL_PROBE);
  cr_assert_eq(fy_call_start(NULL, pl, &top_op_nocancel, &T, tcall_cb),
               UV_EINVAL);
  cr_assert_eq(fy_call_start(&C.call, NULL, &top_op_nocancel, &T, tcall_cb),
               UV_EINVAL);
  cr_assert_eq(fy_call_start(&C.call, pl, NULL, &T, tcall_cb), UV_EINVAL);
  cr_assert_eq(fy_call_start(&C.call, pl, &nostart, &T, tcall_cb),
               UV_EINVAL);
  cr_assert_eq(fy_call_start(&C.call, pl, &top_op_nocancel, &T, NULL),
               UV_EINVAL);
  cr_assert_eq(T.starts, 0);
  cr_assert_eq(fy_call_cancel(NULL), UV_EINVAL);
  cr_assert_eq(fy_call_cancel(&C.call), UV_EINVAL); /* never started */
  cr_assert_eq(fy_call_is_active(NULL), 0);
  cr_assert_null(fy_call_result(NULL));
  cr_assert_null(fy_call_take_result(NULL, NULL));
  cr_assert_eq(fy_attempt_done(NULL, 0), UV_EINVAL);
  fx_advance(&FX, 0);
  cr_assert_eq(C.ncb, 0);
  fx_finish(&FX);
}

Test(call, start_on_an_active_call_is_ebusy) {
  fy_pipeline_t *pl;
  fx_init(&FX, 0);
  pl = make(PL_PROBE);
  cr_assert_eq(tcall_start(&C, pl, &top_op_nocancel, &T), 0);
  cr_assert_eq(fy_call_start(&C.call, pl, &top_op_nocancel, &T, never_cb),
               UV_EBUSY);
  cr_assert_eq(T.starts, 1);
  cr_assert(fy_call_is_active(&C.call));
  cr_assert_eq(top_report(&T, 0, 0), 0);
  cr_assert_eq(C.ncb, 1);
  cr_assert_eq(fy_call_cancel(&C.call), UV_EINVAL); /* completed */
  fx_finish(&FX);
}

/* ---- refusal ------------------------------------------------------------ */

Test(call, refusal_never_calls_back_and_fills_detail) {
  fy_pipeline_t *pl, *ok;
  fy_ctx_stats_t st;
  fx_init(&FX, 0);
  P.mode = PROBE_REFUSE;
  P.refuse_code = FY_ECIRCUITOPEN;
  pl = fx_pipeline(&FX, 1, fx_probe(&FX, &P, "breaker-x"));
  C.call.detail.attempts = 99; /* stale detail is reset */
  cr_assert_eq(fy_call_start(&C.call, pl, &top_op_nocancel, &T, never_cb),
               FY_ECIRCUITOPEN);
  cr_assert_eq(C.call.status, FY_ECIRCUITOPEN);
  cr_assert_not(fy_call_is_active(&C.call));
  cr_assert_str_eq(C.call.detail.by_kind, "probe");
  cr_assert_str_eq(C.call.detail.by_name, "breaker-x");
  cr_assert_eq(C.call.detail.by_name, fy_policy_name(P.policy));
  cr_assert_eq(C.call.detail.state, 1);
  cr_assert_eq(C.call.detail.cause, FY_ECIRCUITOPEN);
  cr_assert_eq(C.call.detail.attempts, 0);
  cr_assert_eq(T.starts, 0);
  cr_assert_eq(fy_pipeline_inflight(pl), 0);
  fy_ctx_stats(FX.ctx, &st);
  cr_assert_eq(st.calls, 0);
  cr_assert_eq(st.frames, 0);
  fx_advance(&FX, 1000);
  uv_run(&FX.loop, UV_RUN_NOWAIT);
  cr_assert_eq(P.hooks[PROBE_HOOK_START], 1);
  cr_assert_eq(P.hooks[PROBE_HOOK_CHILD_DONE], 0);
  cr_assert_eq(P.hooks[PROBE_HOOK_CANCEL], 0);
  /* The struct is the caller's again at once. */
  ok = fx_pipeline(&FX, 0);
  top_script(&T, TOP_SYNC, 0);
  cr_assert_eq(tcall_start(&C, ok, &top_op_nocancel, &T), 0);
  fx_advance(&FX, 0);
  cr_assert_eq(C.ncb, 1);
  cr_assert_eq(C.status, 0);
  fx_finish(&FX);
}

Test(call, refusal_by_an_inner_layer) {
  fy_pipeline_t *pl;
  fx_init(&FX, 0);
  Q.mode = PROBE_REFUSE;
  Q.refuse_code = FY_EKEY;
  pl = fx_pipeline(&FX, 3, fx_probe(&FX, &P, "outer"),
                   fx_passthrough(&FX, "mid"), fx_probe(&FX, &Q, "inner"));
  cr_assert_eq(fy_call_start(&C.call, pl, &top_op_nocancel, &T, never_cb),
               FY_EKEY);
  cr_assert_str_eq(C.call.detail.by_name, "inner");
  cr_assert_eq(P.hooks[PROBE_HOOK_START], 1);
  cr_assert_eq(P.spawn_errors, 1);
  fx_advance(&FX, 10);
  cr_assert_eq(P.hooks[PROBE_HOOK_CHILD_DONE], 0);
  cr_assert_eq(T.starts, 0);
  all_gone();
  no_violations();
  fx_finish(&FX);
}

/* ---- cancellation ------------------------------------------------------ */

Test(call, cancel_with_a_synchronous_cancel_hook) {
  fx_init(&FX, 0);
  for (int k = 0; k < PL__N; k++) {
    fy_pipeline_t *pl;
    memset(&P, 0, sizeof(P));
    memset(&T, 0, sizeof(T));
    memset(&C, 0, sizeof(C));
    pl = make(k);
    cr_assert_eq(tcall_start(&C, pl, &top_op_cancel_sync, &T), 0);
    cr_assert_eq(tcall_cancel(&C), 0);
    cr_assert_eq(T.cancelled[0], 1);
    cr_assert_eq(C.ncb, 0, "callback ran inside fy_call_cancel (kind %d)", k);
    fx_advance(&FX, 0);
    cr_assert_eq(C.ncb, 1);
    cr_assert_eq(C.nested, 0);
    cr_assert_eq(C.status, UV_ECANCELED, "kind %d: %s", k,
                 fy_err_name(C.status));
    no_violations();
    cr_assert_eq(fy_pipeline_close(pl, NULL, NULL), 0);
  }
  fx_finish(&FX);
}

Test(call, cancel_reported_later) {
  fy_pipeline_t *pl;
  fx_init(&FX, 0);
  P.cancel = PROBE_CANCEL_FORWARD;
  pl = make(PL_PROBE_PASSTHROUGH);
  cr_assert_eq(tcall_start(&C, pl, &top_op_cancel_later, &T), 0);
  cr_assert_eq(fy_attempt_is_cancelled(T.att[0]), 0);
  cr_assert_eq(tcall_cancel(&C), 0);
  cr_assert_eq(P.hooks[PROBE_HOOK_CANCEL], 1);
  cr_assert_eq(T.cancels, 1);
  cr_assert_eq(fy_attempt_is_cancelled(T.att[0]), 1);
  cr_assert_eq(tcall_cancel(&C), 0); /* again: nothing more */
  cr_assert_eq(T.cancels, 1);
  fx_advance(&FX, 1000);
  cr_assert_eq(C.ncb, 0, "completed before the operation reported");
  cr_assert_eq(top_report(&T, 0, UV_ECANCELED), 0);
  cr_assert_eq(C.ncb, 1);
  cr_assert_eq(C.status, UV_ECANCELED);
  no_violations();
  fx_finish(&FX);
}

Test(call, cancel_then_the_operation_reports_success) {
  static const fy_op_t *const ops[] = {&top_op_cancel_later,
                                       &top_op_nocancel};
  fx_init(&FX, 0);
  for (int i = 0; i < 2; i++) {
    for (int k = 0; k < PL__N; k++) {
      fy_pipeline_t *pl;
      memset(&P, 0, sizeof(P));
      memset(&T, 0, sizeof(T));
      memset(&C, 0, sizeof(C));
      pl = make(k);
      cr_assert_eq(tcall_start(&C, pl, ops[i], &T), 0);
      cr_assert_eq(tcall_cancel(&C), 0);
      cr_assert_eq(C.ncb, 0);
      cr_assert_eq(top_report(&T, 0, 0), 0);
      fx_advance(&FX, 0);
      cr_assert_eq(C.ncb, 1);
      cr_assert_eq(C.status, 0, "op %d kind %d: %s", i, k,
                   fy_err_name(C.status));
      cr_assert_eq(fy_pipeline_close(pl, NULL, NULL), 0);
    }
  }
  fx_finish(&FX);
}

Test(call, cancel_after_the_op_reported_before_delivery_is_ebusy) {
  fy_pipeline_t *pl;
  fx_init(&FX, 0);
  pl = make(PL_BARE);
  top_script(&T, TOP_SYNC, UV_EIO);
  cr_assert_eq(tcall_start(&C, pl, &top_op_cancel_sync, &T), 0);
  cr_assert_eq(tcall_cancel(&C), UV_EBUSY);
  cr_assert_eq(T.cancels, 0);
  fx_advance(&FX, 0);
  cr_assert_eq(C.ncb, 1);
  cr_assert_eq(C.status, UV_EIO);
  fx_finish(&FX);
}

Test(call, cancel_racing_a_reported_outcome_through_layers) {
  fy_pipeline_t *pl;
  int rc;
  fx_init(&FX, 0);
  pl = make(PL_PROBE_PASSTHROUGH);
  top_script(&T, TOP_SYNC, 0);
  cr_assert_eq(tcall_start(&C, pl, &top_op_cancel_sync, &T), 0);
  rc = tcall_cancel(&C);
  cr_assert(rc == 0 || rc == UV_EBUSY, "%s", fy_err_name(rc));
  cr_assert_eq(T.cancels, 0, "cancel hook of a finished attempt ran");
  cr_assert_eq(C.ncb, 0);
  fx_advance(&FX, 0);
  cr_assert_eq(C.ncb, 1);
  cr_assert_eq(C.status, 0, "the real outcome must win: %s",
               fy_err_name(C.status));
  fx_advance(&FX, 0);
  cr_assert_eq(C.ncb, 1);
  no_violations();
  fx_finish(&FX);
}

Test(call, cancel_hook_finishing_the_frame_at_once) {
  fy_pipeline_t *pl;
  fx_init(&FX, 0);
  P.cancel = PROBE_CANCEL_FINISH;
  pl = make(PL_PROBE_PASSTHROUGH);
  T.with_results = 1;
  cr_assert_eq(tcall_start(&C, pl, &top_op_cancel_later, &T), 0);
  cr_assert_eq(tcall_cancel(&C), 0);
  cr_assert_eq(C.ncb, 0);
  cr_assert_eq(T.cancels, 1); /* the detached attempt was asked to stop */
  fx_advance(&FX, 0);
  cr_assert_eq(C.ncb, 1);
  cr_assert_eq(C.status, UV_ECANCELED);
  /* The abandoned attempt reports late: discarded, result destroyed. */
  cr_assert_null(T.att[0]->call);
  cr_assert_eq(top_report(&T, 0, 0), 0);
  cr_assert_eq(C.ncb, 1);
  cr_assert_eq(tres_created(), 1);
  cr_assert_eq(tres_destroyed(), 1);
  all_gone();
  no_violations();
  fx_finish(&FX);
}

/* ---- results ------------------------------------------------------------ */

Test(call, result_readable_inside_and_destroyed_after) {
  for (int k = 0; k < PL__N; k++) {
    fy_pipeline_t *pl;
    fx_init(&FX, 0);
    memset(&P, 0, sizeof(P));
    memset(&T, 0, sizeof(T));
    memset(&C, 0, sizeof(C));
    pl = make(k);
    T.with_results = 1;
    cr_assert_eq(tcall_start(&C, pl, &top_op_nocancel, &T), 0);
    cr_assert_null(fy_call_result(&C.call));
    cr_assert_eq(top_report(&T, 0, 0), 0);
    cr_assert_eq(C.ncb, 1);
    cr_assert_not_null(C.result, "kind %d", k);
    cr_assert_eq(((tres_t *)C.result)->id, 0);
    cr_assert_eq(tres_destroy_count(0), 1, "untaken result kept (kind %d)",
                 k);
    cr_assert_null(fy_call_result(&C.call));
    cr_assert_null(fy_call_take_result(&C.call, NULL));
    no_violations();
    fx_finish(&FX);
  }
}

Test(call, result_of_a_failure_is_delivered_too) {
  fy_pipeline_t *pl;
  fx_init(&FX, 0);
  pl = make(PL_PROBE);
  T.with_results = 1;
  top_script(&T, TOP_SYNC, UV_EIO);
  cr_assert_eq(tcall_start(&C, pl, &top_op_nocancel, &T), 0);
  fx_advance(&FX, 0);
  cr_assert_eq(C.status, UV_EIO);
  cr_assert_not_null(C.result);
  cr_assert_eq(tres_destroyed(), 1);
  fx_finish(&FX);
}

Test(call, take_result_transfers_ownership) {
  fy_pipeline_t *pl;
  fx_init(&FX, 0);
  pl = make(PL_PROBE_PASSTHROUGH);
  T.with_results = 1;
  C.take = 1;
  top_script(&T, TOP_SYNC, 0);
  cr_assert_eq(tcall_start(&C, pl, &top_op_nocancel, &T), 0);
  fx_advance(&FX, 0);
  cr_assert_eq(C.ncb, 1);
  cr_assert_not_null(C.taken);
  cr_assert_eq(C.taken, C.result);
  cr_assert_eq(C.taken_dtor, tres_dtor);
  fx_advance(&FX, 10);
  cr_assert_eq(tres_destroyed(), 0, "a taken result was destroyed");
  C.taken_dtor(C.taken);
  cr_assert_eq(tres_destroy_count(0), 1);
  fx_finish(&FX);
  cr_assert_eq(tres_destroyed(), 1);
}

static void set_twice(top_t *t, fy_attempt_t *a) {
  (void)t;
  fy_attempt_set_result(a, tres_new(), tres_dtor); /* id 0 */
  fy_attempt_set_result(a, tres_new(), tres_dtor); /* id 1 */
  cr_assert_eq(tres_destroy_count(0), 1, "first result not destroyed");
  cr_assert_eq(tres_destroy_count(1), 0);
  fy_attempt_set_result(a, NULL, NULL); /* clears: id 1 destroyed */
  cr_assert_eq(tres_destroy_count(1), 1);
  fy_attempt_set_result(a, tres_new(), tres_dtor); /* id 2 wins */
}

Test(call, set_result_twice_destroys_the_first) {
  fy_pipeline_t *pl;
  fx_init(&FX, 0);
  pl = make(PL_PROBE);
  T.on_start = set_twice;
  top_script(&T, TOP_SYNC, 0);
  cr_assert_eq(tcall_start(&C, pl, &top_op_nocancel, &T), 0);
  fx_advance(&FX, 0);
  cr_assert_not_null(C.result);
  cr_assert_eq(((tres_t *)C.result)->id, 2);
  cr_assert_eq(tres_destroyed(), 3);
  cr_assert_eq(tres_errors(), 0);
  fx_finish(&FX);
}

Test(call, late_attempt_after_timeout_is_discarded_with_its_result) {
  fy_pipeline_t *pl;
  fy_ctx_stats_t st;
  for (int detach = 0; detach < 2; detach++) {
    fx_init(&FX, 0);
    memset(&P, 0, sizeof(P));
    memset(&T, 0, sizeof(T));
    memset(&C, 0, sizeof(C));
    P.timeout_ms = 50;
    P.timeout_detach = detach;
    pl = make(PL_PROBE_PASSTHROUGH);
    T.with_results = 1;
    cr_assert_eq(tcall_start(&C, pl, &top_op_cancel_later, &T), 0);
    fx_advance(&FX, 49);
    cr_assert_eq(C.ncb, 0);
    fx_advance(&FX, 1);
    cr_assert_eq(P.hooks[PROBE_HOOK_DEADLINE], 1);
    cr_assert_eq(C.ncb, 1);
    cr_assert_eq(C.status, UV_ETIMEDOUT);
    cr_assert_str_eq(C.call.detail.by_kind, "probe");
    cr_assert_eq(C.call.detail.state, 2);
    cr_assert_null(C.result);
    cr_assert_eq(T.cancelled[0], 1, "abandoned attempt not cancelled");
    fy_ctx_stats(FX.ctx, &st);
    cr_assert_eq(st.calls, 0);
    cr_assert_eq(st.frames, 2); /* the detached passthrough and attempt */
    cr_assert_null(T.att[0]->call);
    cr_assert_eq(top_report(&T, 0, 0), 0);
    cr_assert_eq(C.ncb, 1);
    cr_assert_eq(C.call.detail.state, 2, "a late attempt touched detail");
    cr_assert_eq(tres_created(), 1);
    cr_assert_eq(tres_destroyed(), 1);
    all_gone();
    no_violations();
    fx_finish(&FX);
  }
}

Test(call, hedge_losers_are_cancelled_and_their_results_destroyed) {
  fy_pipeline_t *pl;
  fx_init(&FX, 0);
  P.mode = PROBE_CONCURRENT;
  P.n = 3;
  pl = make(PL_PROBE);
  T.with_results = 1;
  cr_assert_eq(tcall_start(&C, pl, &top_op_cancel_later, &T), 0);
  cr_assert_eq(T.starts, 3);
  cr_assert_eq(C.call.detail.attempts, 3);
  cr_assert_eq(T.index[2], 2);
  cr_assert_eq(top_report(&T, 1, UV_EIO), 0); /* a failure: keep waiting */
  cr_assert_eq(C.ncb, 0);
  cr_assert_eq(top_report(&T, 2, 0), 0); /* the winner */
  cr_assert_eq(C.ncb, 1);
  cr_assert_eq(C.status, 0);
  cr_assert_eq(((tres_t *)C.result)->id, 1);
  cr_assert_eq(T.cancelled[0], 1);
  cr_assert_eq(T.cancelled[1] + T.cancelled[2], 0);
  cr_assert_eq(top_report(&T, 0, UV_ECANCELED), 0);
  cr_assert_eq(C.ncb, 1);
  cr_assert_eq(tres_created(), 3);
  cr_assert_eq(tres_destroyed(), 3);
  all_gone();
  no_violations();
  fx_finish(&FX);
}

Test(call, sequential_attempts_are_counted_and_failures_freed) {
  fy_pipeline_t *pl;
  fx_init(&FX, 0);
  P.mode = PROBE_SEQUENTIAL;
  P.n = 5;
  pl = make(PL_PROBE_PASSTHROUGH);
  T.with_results = 1;
  top_script(&T, TOP_SYNC, UV_EAI_AGAIN);
  top_push(&T, TOP_START_ERROR, UV_ECONNRESET);
  top_push(&T, TOP_SYNC, 0);
  cr_assert_eq(tcall_start(&C, pl, &top_op_nocancel, &T), 0);
  fx_advance(&FX, 0);
  cr_assert_eq(C.ncb, 1);
  cr_assert_eq(C.status, 0);
  cr_assert_eq(C.call.detail.attempts, 3);
  cr_assert_eq(T.starts, 3);
  for (unsigned k = 0; k < 3; k++)
    cr_assert_eq(T.index[k], k);
  cr_assert_eq(((tres_t *)C.result)->id, 2);
  cr_assert_eq(tres_destroyed(), 3);
  cr_assert_eq(P.children_done, 3);

  /* All attempts fail: the last failure is reported. */
  memset(&C, 0, sizeof(C));
  memset(&T, 0, sizeof(T));
  top_script(&T, TOP_SYNC, UV_EIO);
  cr_assert_eq(tcall_start(&C, pl, &top_op_nocancel, &T), 0);
  fx_advance(&FX, 0);
  cr_assert_eq(C.status, UV_EIO);
  cr_assert_eq(C.call.detail.attempts, 5);
  no_violations();
  fx_finish(&FX);
}

/* A result set on an attempt that ends through a refusal path upstream
 * (the spawning frame finished first) is destroyed, not leaked. */
Test(call, partial_hedge_failure_discards_started_attempts) {
  fy_pipeline_t *pl;
  fx_init(&FX, 0);
  P.mode = PROBE_CONCURRENT;
  P.n = 2;
  Q.mode = PROBE_PASS;
  pl = fx_pipeline(&FX, 1, fx_probe(&FX, &P, "hedge"));
  T.with_results = 1;
  top_script(&T, TOP_SYNC, 0);
  cr_assert_eq(tcall_start(&C, pl, &top_op_cancel_sync, &T), 0);
  fx_advance(&FX, 0);
  cr_assert_eq(C.ncb, 1);
  cr_assert_eq(C.status, 0);
  cr_assert_eq(tres_created(), 2);
  cr_assert_eq(tres_destroyed(), 2);
  no_violations();
  fx_finish(&FX);
}

/* ---- detail, deadlines, hints ------------------------------------------ */

Test(call, attempt_remaining_reflects_frame_deadlines) {
  fy_pipeline_t *pl;
  fx_init(&FX, 1000);
  P.deadline_ms = 100;
  pl = make(PL_PROBE_PASSTHROUGH);
  cr_assert_eq(tcall_start(&C, pl, &top_op_nocancel, &T), 0);
  cr_assert_eq(T.remaining[0], 100);
  cr_assert_eq(T.att[0]->deadline, 1100);
  fx_advance(&FX, 30);
  cr_assert_eq(fy_attempt_remaining(T.att[0]), 70);
  fx_advance(&FX, 500);
  cr_assert_eq(fy_attempt_remaining(T.att[0]), 0);
  top_report(&T, 0, 0);

  /* Without a deadline: never. */
  memset(&T2, 0, sizeof(T2));
  cr_assert_eq(tcall_start(&C2, fx_pipeline(&FX, 0), &top_op_nocancel, &T2),
               0);
  cr_assert_eq(T2.remaining[0], FY_TIME_NEVER);
  cr_assert_eq(T2.att[0]->deadline, FY_TIME_NEVER);
  top_report(&T2, 0, 0);
  fx_finish(&FX);
}

Test(call, frame_deadlines_only_tighten) {
  fy_pipeline_t *pl;
  fx_init(&FX, 0);
  P.deadline_ms = 100;
  Q.deadline_ms = 200; /* looser than its parent: ignored */
  pl = fx_pipeline(&FX, 2, fx_probe(&FX, &P, "outer"),
                   fx_probe(&FX, &Q, "inner"));
  cr_assert_eq(tcall_start(&C, pl, &top_op_nocancel, &T), 0);
  cr_assert_eq(T.remaining[0], 100);
  top_report(&T, 0, 0);
  Q.deadline_ms = 40; /* tighter: wins */
  cr_assert_eq(tcall_start(&C, pl, &top_op_nocancel, &T), 0);
  cr_assert_eq(T.remaining[1], 40);
  top_report(&T, 1, 0);
  cr_assert_eq(C.ncb, 2);
  fx_finish(&FX);
}

static void hint(top_t *t, fy_attempt_t *a) {
  (void)t;
  fy_attempt_set_retry_after(a, 1500);
}

Test(call, elapsed_and_retry_after_in_detail) {
  fy_pipeline_t *pl;
  fy_call_opts_t o = {0};
  fx_init(&FX, 0);
  pl = make(PL_PROBE_PASSTHROUGH);
  T.on_start = hint;
  o.flags = FY_CALL_MEASURE;
  cr_assert_eq(fy_call_start_opts(&C.call, pl, &top_op_nocancel, &T, &o,
                                  tcall_cb),
               0);
  fx_advance(&FX, 25);
  top_report(&T, 0, UV_EAGAIN);
  cr_assert_eq(C.ncb, 1);
  cr_assert_eq(C.call.detail.elapsed_ns, 25ull * 1000000ull);
  cr_assert_eq(C.call.detail.retry_after_ms, 1500);
  cr_assert_null(C.call.detail.by_kind);
  fx_finish(&FX);
}

/* The clock is read only when the latency is wanted: by the call, by the
 * context, or by a listener of FY_EV_CALL_DONE. */
static void ignore_event(fy_ctx_t *ctx, const fy_event_t *ev, void *ud) {
  (void)ctx;
  (void)ev;
  (void)ud;
}

static uint64_t elapsed_of_one_call(fy_pipeline_t *pl) {
  memset(&C, 0, sizeof(C));
  memset(&T, 0, sizeof(T));
  cr_assert_eq(tcall_start(&C, pl, &top_op_nocancel, &T), 0);
  fx_advance(&FX, 7);
  top_report(&T, 0, 0);
  cr_assert_eq(C.ncb, 1);
  return C.call.detail.elapsed_ns;
}

Test(call, elapsed_is_measured_only_when_wanted) {
  fy_pipeline_t *pl;
  fy_listener_t *l;
  fx_init(&FX, 0);
  pl = make(PL_PROBE_PASSTHROUGH);
  cr_assert_eq(elapsed_of_one_call(pl), 0, "measured though nobody asked");
  cr_assert_eq(fy_ctx_listen(FX.ctx, FY_EV_MASK(FY_EV_CALL_DONE),
                             ignore_event, NULL, &l),
               0);
  cr_assert_eq(elapsed_of_one_call(pl), 7ull * 1000000ull);
  fy_listener_remove(l);
  cr_assert_eq(elapsed_of_one_call(pl), 0);
  fx_finish(&FX);
}

Test(call, a_measuring_context_measures_every_call) {
  fy_ctx_opts_t o = {0};
  fy_pipeline_t *pl;
  uv_loop_t loop;
  fy_ctx_t *ctx;
  o.manual_clock = 1;
  o.measure_calls = 1;
  cr_assert_eq(uv_loop_init(&loop), 0);
  cr_assert_eq(fy_ctx_new(&loop, &o, &ctx), 0);
  cr_assert_eq(fy_pipeline_new(ctx, NULL, 0, &pl), 0);
  memset(&C, 0, sizeof(C));
  memset(&T, 0, sizeof(T));
  cr_assert_eq(tcall_start(&C, pl, &top_op_nocancel, &T), 0);
  cr_assert_eq(fy_ctx_advance(ctx, 3), 0);
  top_report(&T, 0, 0);
  cr_assert_eq(C.ncb, 1);
  cr_assert_eq(C.call.detail.elapsed_ns, 3ull * 1000000ull);
  cr_assert_eq(fy_ctx_close(ctx, NULL, NULL), 0);
  cr_assert_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  cr_assert_eq(uv_loop_close(&loop), 0);
}

/* ---- the call struct is the caller's inside the callback ---------------- */

static void free_it(tcall_t *tc, int status) {
  (void)status;
  memset(tc, 0xAB, sizeof(*tc)); /* poison: the library must not read it */
  free(tc);
}

static unsigned restarts;
static fy_pipeline_t *restart_pl;
static void restart_it(tcall_t *tc, int status) {
  (void)status;
  if (restarts++ < 3) {
    memset(&T, 0, sizeof(T));
    top_script(&T, TOP_SYNC, -(int)restarts);
    cr_assert_eq(tcall_start(tc, restart_pl, &top_op_nocancel, &T), 0);
  }
}

Test(call, callback_frees_or_reuses_its_call) {
  tcall_t *heap = calloc(1, sizeof(*heap));
  fy_pipeline_t *pl;
  fx_init(&FX, 0);
  pl = make(PL_PROBE_PASSTHROUGH);
  restart_pl = pl;
  T.with_results = 1;
  heap->then = free_it;
  cr_assert_eq(tcall_start(heap, pl, &top_op_nocancel, &T), 0);
  top_report(&T, 0, 0); /* completes, frees the struct */
  cr_assert_eq(tres_destroyed(), 1);

  memset(&T, 0, sizeof(T));
  top_script(&T, TOP_SYNC, 0);
  C.then = restart_it;
  cr_assert_eq(tcall_start(&C, pl, &top_op_nocancel, &T), 0);
  fx_advance(&FX, 0);
  cr_assert_eq(C.ncb, 4);
  cr_assert_eq(C.status, -3);
  cr_assert_eq(C.nested, 0, "a restarted call completed inside its start");
  cr_assert_not(fy_call_is_active(&C.call));
  no_violations();
  fx_finish(&FX);
}

/* A callback that completes another call (nested delivery) still sees its
 * own result afterwards. */
static void complete_other(tcall_t *tc, int status) {
  (void)status;
  cr_assert_eq(top_report(&T2, 0, 0), 0);
  cr_assert_eq(C2.ncb, 1);
  cr_assert_eq(fy_call_result(&tc->call), tc->result);
  cr_assert_null(fy_call_result(&C2.call));
}

Test(call, nested_completion_keeps_the_outer_result) {
  fy_pipeline_t *pl;
  fx_init(&FX, 0);
  pl = make(PL_PROBE);
  T.with_results = 1;
  T2.with_results = 1;
  C.then = complete_other;
  cr_assert_eq(tcall_start(&C2, pl, &top_op_nocancel, &T2), 0);
  cr_assert_eq(tcall_start(&C, pl, &top_op_nocancel, &T), 0);
  top_report(&T, 0, 0);
  cr_assert_eq(C.ncb, 1);
  cr_assert_eq(C2.ncb, 1);
  cr_assert_neq(C.result, C2.result);
  cr_assert_eq(tres_destroyed(), 2);
  cr_assert_eq(tres_errors(), 0);
  fx_finish(&FX);
}

/* ---- the probe's re-entrancy guarantees --------------------------------- */

Test(call, child_done_never_nests_inside_another_hook) {
  fy_pipeline_t *pl;
  fx_init(&FX, 0);
  /* start: the child finishes inside the spawn. */
  P.mode = PROBE_SEQUENTIAL;
  P.n = 3;
  P.cancel = PROBE_CANCEL_FORWARD;
  Q.cancel = PROBE_CANCEL_FORWARD;
  Q.timeout_ms = 10;
  pl = fx_pipeline(&FX, 2, fx_probe(&FX, &P, "seq"), fx_probe(&FX, &Q, "to"));
  top_script(&T, TOP_SYNC, UV_EIO);
  cr_assert_eq(tcall_start(&C, pl, &top_op_cancel_sync, &T), 0);
  fx_advance(&FX, 0);
  cr_assert_eq(C.status, UV_EIO);
  cr_assert_eq(T.starts, 3);
  no_violations();

  /* cancel: the children finish inside the cancel hooks. */
  memset(&T, 0, sizeof(T));
  cr_assert_eq(tcall_start(&C, pl, &top_op_cancel_sync, &T), 0);
  cr_assert_eq(tcall_cancel(&C), 0);
  fx_advance(&FX, 0);
  cr_assert_eq(C.status, UV_ECANCELED);
  no_violations();

  /* deadline: the timeout finishes its frame, its child reports inside the
   * cancel that follows, and the retry above starts the next attempt. */
  memset(&T, 0, sizeof(T));
  cr_assert_eq(tcall_start(&C, pl, &top_op_cancel_sync, &T), 0);
  fx_advance(&FX, 100);
  cr_assert_eq(C.ncb, 3);
  cr_assert_eq(C.status, UV_ETIMEDOUT);
  cr_assert_eq(C.call.detail.attempts, 3);
  cr_assert_eq(T.starts, 3);
  cr_assert_eq(T.cancels, 3);
  cr_assert_eq(Q.hooks[PROBE_HOOK_DEADLINE], 3);
  cr_assert_eq(fy_ctx_now(FX.ctx), 100);
  no_violations();
  cr_assert_gt(P.hooks[PROBE_HOOK_CHILD_DONE], 0);
  cr_assert_gt(Q.hooks[PROBE_HOOK_DEADLINE], 0);
  fx_finish(&FX);
}

Test(call, progress_reaches_every_layer) {
  fy_pipeline_t *pl;
  fx_init(&FX, 0);
  pl = fx_pipeline(&FX, 3, fx_probe(&FX, &P, "a"), fx_passthrough(&FX, "b"),
                   fx_probe(&FX, &Q, "c"));
  cr_assert_eq(tcall_start(&C, pl, &top_op_nocancel, &T), 0);
  fy_attempt_mark(T.att[0]);
  fy_attempt_mark(T.att[0]);
  cr_assert_eq(P.hooks[PROBE_HOOK_PROGRESS], 2);
  cr_assert_eq(Q.hooks[PROBE_HOOK_PROGRESS], 2);
  top_report(&T, 0, 0);
  cr_assert_eq(C.ncb, 1);
  no_violations();
  fx_finish(&FX);
}

Test(call, stats_count_calls_and_frames) {
  fy_pipeline_t *pl;
  fy_ctx_stats_t st;
  fx_init(&FX, 0);
  pl = make(PL_PROBE_PASSTHROUGH);
  cr_assert_eq(tcall_start(&C, pl, &top_op_nocancel, &T), 0);
  cr_assert_eq(tcall_start(&C2, pl, &top_op_nocancel, &T), 0);
  fy_ctx_stats(FX.ctx, &st);
  cr_assert_eq(st.calls, 2);
  cr_assert_eq(st.frames, 6);
  cr_assert_eq(fy_policy_active(P.policy), 2);
  cr_assert_eq(fy_pipeline_inflight(pl), 2);
  top_report_all(&T, 0);
  fy_ctx_stats(FX.ctx, &st);
  cr_assert_eq(st.calls, 0);
  cr_assert_eq(st.frames, 0);
  cr_assert_eq(fy_policy_active(P.policy), 0);
  fx_finish(&FX);
}

/* ---- odd but legal call sequences ---------------------------------------- */

static void cancel_own_call(top_t *t, fy_attempt_t *a) {
  (void)t;
  cr_assert_eq(fy_call_cancel(a->call), 0);
}

Test(call, cancel_from_inside_the_operations_start) {
  for (int i = 0; i < 4; i++) {
    int finish = i & 1;
    fy_pipeline_t *pl;
    fx_init(&FX, 0);
    memset(&P, 0, sizeof(P));
    memset(&T, 0, sizeof(T));
    memset(&C, 0, sizeof(C));
    P.cancel = finish ? PROBE_CANCEL_FINISH : PROBE_CANCEL_DEFAULT;
    pl = make(i < 2 ? PL_PROBE : PL_PROBE_PASSTHROUGH);
    T.on_start = cancel_own_call;
    T.with_results = 1;
    cr_assert_eq(tcall_start(&C, pl, &top_op_cancel_sync, &T), 0);
    cr_assert_eq(C.ncb, 0);
    cr_assert_eq(T.cancels, 1);
    fx_advance(&FX, 0);
    cr_assert_eq(C.ncb, 1);
    cr_assert_eq(C.status, UV_ECANCELED);
    cr_assert_eq(top_live(&T), 0);
    cr_assert_eq(tres_created(), tres_destroyed());
    all_gone();
    /* The operation cancelled its call from inside the spawn: the probe's
     * cancel hook is deferred until its start hook has returned (hooks of
     * one frame never nest), and fy_frame_spawn never hands back a
     * dangling child.  The probe counts either as a violation. */
    cr_assert_eq(P.violations, 0u, "case %d (finish %d): %u", i, finish,
                 P.violations);
    fx_finish(&FX);
  }
}

Test(call, real_clock_completions_come_from_the_loop) {
  fy_pipeline_t *pl;
  fx_init_real(&FX);
  pl = make(PL_PROBE_PASSTHROUGH);
  top_script(&T, TOP_SYNC, 0);
  cr_assert_eq(tcall_start(&C, pl, &top_op_nocancel, &T), 0);
  cr_assert_eq(C.ncb, 0);
  cr_assert_eq(uv_run(&FX.loop, UV_RUN_DEFAULT), 0);
  cr_assert_eq(C.ncb, 1);
  cr_assert_eq(C.status, 0);
  cr_assert_eq(uv_loop_alive(&FX.loop), 0);
  /* An operation still running does not keep the loop: only the
   * completion queue and deadlines do. */
  memset(&T, 0, sizeof(T));
  cr_assert_eq(tcall_start(&C, pl, &top_op_nocancel, &T), 0);
  cr_assert_eq(uv_run(&FX.loop, UV_RUN_DEFAULT), 0);
  cr_assert_eq(C.ncb, 1);
  top_report(&T, 0, UV_EIO);
  cr_assert_eq(C.ncb, 2);
  cr_assert_eq(C.status, UV_EIO);
  no_violations();
  fx_finish(&FX);
}

Test(call, real_clock_cancel_completes_from_the_loop) {
  fy_pipeline_t *pl;
  fx_init_real(&FX);
  P.deadline_ms = 3600 * 1000;
  pl = make(PL_PROBE);
  cr_assert_eq(tcall_start(&C, pl, &top_op_cancel_sync, &T), 0);
  cr_assert_gt(T.remaining[0], 3500 * 1000);
  cr_assert_leq(T.remaining[0], 3600 * 1000);
  cr_assert_eq(tcall_cancel(&C), 0);
  cr_assert_eq(C.ncb, 0);
  cr_assert_eq(uv_run(&FX.loop, UV_RUN_DEFAULT), 0);
  cr_assert_eq(C.ncb, 1);
  cr_assert_eq(C.status, UV_ECANCELED);
  no_violations();
  fx_finish(&FX);
}

/* ---- the detail of a call the operation decided ------------------------ */

/* A probe that writes a verdict on its way in, as a policy that refused an
 * earlier attempt would have, and then runs the operation. */
static void verdict_at_start(probe_t *probe, probe_hook_t hook,
                             fy_frame_t *f) {
  fy_detail_t *d;
  (void)probe;
  if (hook != PROBE_HOOK_START)
    return;
  d = fy_frame_verdict(f, fy_frame_policy(f));
  d->cause = UV_EIO;
  d->state = 7;
  d->n[0] = 3;
  strcpy(d->key, "k");
}

Test(call, the_operation_outcome_replaces_an_earlier_verdict) {
  fy_pipeline_t *pl;
  int i;
  fx_init(&FX, 0);
  memset(&P, 0, sizeof(P));
  P.on_hook = verdict_at_start;
  pl = make(PL_PROBE);
  for (i = 0; i < 2; i++) {
    memset(&C, 0, sizeof(C));
    memset(&T, 0, sizeof(T));
    top_script(&T, TOP_ASYNC, 0);
    cr_assert_eq(tcall_start(&C, pl, &top_op_nocancel, &T), 0);
    cr_assert_str_eq(C.call.detail.by_kind, "probe"); /* claimed */
    top_finish(&T, UV_EPIPE);
    fx_advance(&FX, 0);
    cr_assert_eq(C.ncb, 1);
    cr_assert_eq(C.status, UV_EPIPE);
    cr_assert_null(C.call.detail.by_kind, "round %d", i);
    cr_assert_null(C.call.detail.by_name);
    cr_assert_eq(C.call.detail.cause, 0);
    cr_assert_eq(C.call.detail.state, 0);
    cr_assert_eq(C.call.detail.n[0], 0);
    cr_assert_str_empty(C.call.detail.key);
  }
  no_violations();
  fx_finish(&FX);
}
