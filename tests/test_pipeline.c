/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * Pipelines and policies as objects: construction and its validation,
 * asynchronous close of a pipeline and of a policy with calls in flight,
 * sharing a policy, and the refusals that follow a close. */
#include <criterion/criterion.h>
#include <string.h>

#include "fixture.h"

static probe_t P, Q;
static top_t T;
static tcall_t C[4];

TestSuite(pipeline);

static void never_cb(fy_call_t *call, int status) {
  (void)call;
  (void)status;
  cr_assert_fail("callback of a refused call ran");
}

static void no_violations(void) {
  cr_assert_eq(P.violations + Q.violations, 0, "a probe hook re-entered");
  cr_assert_eq(tres_errors(), 0);
}

/* ---- construction ------------------------------------------------------ */

static void ctx2_closed(void *ctx, void *ud) {
  (void)ctx;
  (*(int *)ud)++;
}

Test(pipeline, new_validates_its_arguments) {
  fy_policy_t *layers[FY_PIPELINE_MAX + 1];
  fy_pipeline_t *pl = (fy_pipeline_t *)&T;
  fy_policy_t *other = NULL, *pt;
  fy_ctx_t *ctx2 = NULL;
  int closed2 = 0;
  size_t i;
  fx_init(&FX, 0);
  pt = fx_passthrough(&FX, "pt");
  for (i = 0; i <= FY_PIPELINE_MAX; i++)
    layers[i] = pt;
  cr_assert_eq(fy_pipeline_new(FX.ctx, layers, 1, NULL), UV_EINVAL);
  cr_assert_eq(fy_pipeline_new(NULL, layers, 1, &pl), UV_EINVAL);
  cr_assert_null(pl);
  cr_assert_eq(fy_pipeline_new(FX.ctx, NULL, 1, &pl), UV_EINVAL);
  cr_assert_eq(fy_pipeline_new(FX.ctx, layers, FY_PIPELINE_MAX + 1, &pl),
               UV_EINVAL);
  layers[3] = NULL;
  cr_assert_eq(fy_pipeline_new(FX.ctx, layers, 5, &pl), UV_EINVAL);
  layers[3] = pt;

  /* A policy of another context. */
  cr_assert_eq(fy_ctx_new(&FX.loop, NULL, &ctx2), 0);
  cr_assert_eq(fy_passthrough_new(ctx2, "foreign", &other), 0);
  layers[2] = other;
  cr_assert_eq(fy_pipeline_new(FX.ctx, layers, 4, &pl), UV_EINVAL);
  cr_assert_null(pl);
  layers[2] = pt;
  cr_assert_eq(fy_ctx_close(ctx2, ctx2_closed, &closed2), 0);

  /* 0 and FY_PIPELINE_MAX layers are fine; the policy is shared. */
  cr_assert_eq(fy_pipeline_new(FX.ctx, NULL, 0, &pl), 0);
  cr_assert_eq(fy_pipeline_size(pl), 0);
  cr_assert_eq(fy_pipeline_new(FX.ctx, layers, FY_PIPELINE_MAX, &pl), 0);
  cr_assert_eq(fy_pipeline_size(pl), FY_PIPELINE_MAX);
  cr_assert_eq(fy_pipeline_inflight(pl), 0);
  cr_assert_eq(fy_pipeline_close(NULL, NULL, NULL), 0);

  uv_run(&FX.loop, UV_RUN_DEFAULT);
  cr_assert_eq(closed2, 1);
  fx_finish(&FX);
}

Test(pipeline, sixteen_layers_deep) {
  fy_policy_t *pt;
  fy_pipeline_t *pl;
  fy_policy_t *layers[FY_PIPELINE_MAX];
  fy_ctx_stats_t st;
  size_t i;
  fx_init(&FX, 0);
  pt = fx_passthrough(&FX, NULL);
  for (i = 0; i < FY_PIPELINE_MAX - 1; i++)
    layers[i] = pt;
  layers[FY_PIPELINE_MAX - 1] = fx_probe(&FX, &P, "last");
  cr_assert_eq(fy_pipeline_new(FX.ctx, layers, FY_PIPELINE_MAX, &pl), 0);
  T.with_results = 1;
  cr_assert_eq(tcall_start(&C[0], pl, &top_op_nocancel, &T), 0);
  fy_ctx_stats(FX.ctx, &st);
  cr_assert_eq(st.frames, FY_PIPELINE_MAX + 1);
  cr_assert_eq(fy_policy_active(pt), FY_PIPELINE_MAX - 1);
  top_report(&T, 0, 0);
  cr_assert_eq(C[0].ncb, 1);
  cr_assert_eq(C[0].status, 0);
  cr_assert_not_null(C[0].result, "result lost on the way up");
  cr_assert_eq(tres_destroyed(), 1);
  fx_finish(&FX);
}

Test(pipeline, closed_policy_cannot_join_a_pipeline) {
  fy_pipeline_t *pl = NULL;
  fy_policy_t *pt;
  fx_init(&FX, 0);
  pt = fx_passthrough(&FX, "pt");
  cr_assert_eq(fy_policy_close(pt, NULL, NULL), 0);
  cr_assert_eq(fy_pipeline_new(FX.ctx, &pt, 1, &pl), FY_ECLOSED);
  cr_assert_null(pl);
  fx_finish(&FX);
}

/* ---- policy objects ----------------------------------------------------- */

static int dummy_start(fy_policy_t *p, fy_frame_t *f) {
  (void)p;
  return fy_frame_spawn(f, NULL);
}
static void dummy_child_done(fy_policy_t *p, fy_frame_t *f, fy_frame_t *c,
                             int status) {
  (void)p;
  (void)c;
  fy_frame_done(f, status);
}

Test(pipeline, policy_new_validates_and_accessors_work) {
  static const fy_policy_vtable_t ok = {
      .kind = "dummy",
      .frame_size = 8,
      .start = dummy_start,
      .child_done = dummy_child_done,
  };
  fy_policy_vtable_t bad;
  fy_policy_t *p = (fy_policy_t *)&T;
  char longname[100];
  unsigned char *impl;
  size_t i;
  fx_init(&FX, 0);
  cr_assert_eq(fy_policy_new(FX.ctx, &ok, 0, NULL, NULL), UV_EINVAL);
  cr_assert_eq(fy_policy_new(NULL, &ok, 0, NULL, &p), UV_EINVAL);
  cr_assert_null(p);
  cr_assert_eq(fy_policy_new(FX.ctx, NULL, 0, NULL, &p), UV_EINVAL);
  bad = ok;
  bad.start = NULL;
  cr_assert_eq(fy_policy_new(FX.ctx, &bad, 0, NULL, &p), UV_EINVAL);
  bad = ok;
  bad.child_done = NULL;
  cr_assert_eq(fy_policy_new(FX.ctx, &bad, 0, NULL, &p), UV_EINVAL);
  bad = ok;
  bad.kind = NULL;
  cr_assert_eq(fy_policy_new(FX.ctx, &bad, 0, NULL, &p), UV_EINVAL);
  bad = ok;
  bad.frame_size = (size_t)1 << 40;
  cr_assert_eq(fy_policy_new(FX.ctx, &bad, 0, NULL, &p), UV_EINVAL);
  cr_assert_eq(fy_policy_new(FX.ctx, &ok, (size_t)-1, NULL, &p), UV_EINVAL);
  cr_assert_null(p);

  memset(longname, 'n', sizeof(longname) - 1);
  longname[sizeof(longname) - 1] = '\0';
  cr_assert_eq(fy_policy_new(FX.ctx, &ok, 200, longname, &p), 0);
  cr_assert_eq(strlen(fy_policy_name(p)), FY_NAME_MAX);
  cr_assert_eq(strncmp(fy_policy_name(p), longname, FY_NAME_MAX), 0);
  cr_assert_str_eq(fy_policy_kind(p), "dummy");
  cr_assert_eq(fy_policy_ctx(p), FX.ctx);
  cr_assert_eq(fy_policy_is_closing(p), 0);
  cr_assert_eq(fy_policy_active(p), 0);
  impl = fy_policy_impl(p);
  cr_assert_eq((uintptr_t)impl % 16, 0, "impl not aligned");
  for (i = 0; i < 200; i++)
    cr_assert_eq(impl[i], 0, "impl not zeroed at %zu", i);
  cr_assert_eq(fy_policy_new(FX.ctx, &ok, 0, NULL, &p), 0);
  cr_assert_str_eq(fy_policy_name(p), "");
  fx_finish(&FX);
}

/* ---- pipeline close ----------------------------------------------------- */

Test(pipeline, close_with_calls_pending) {
  fy_pipeline_t *pl;
  fx_closed_t closed = {0};
  tcall_t late;
  int i;
  fx_init(&FX, 0);
  P.cancel = PROBE_CANCEL_FORWARD;
  pl = fx_pipeline(&FX, 2, fx_probe(&FX, &P, "p"), fx_passthrough(&FX, "t"));
  T.with_results = 1;
  for (i = 0; i < 3; i++)
    cr_assert_eq(tcall_start(&C[i], pl, &top_op_cancel_sync, &T), 0);
  g_nested = 1;
  cr_assert_eq(fy_pipeline_close(pl, fx_obj_closed, &closed), 0);
  g_nested = 0;
  cr_assert_eq(fy_pipeline_close(pl, fx_obj_closed, &closed), FY_ECLOSED);
  memset(&late, 0, sizeof(late));
  cr_assert_eq(fy_call_start(&late.call, pl, &top_op_nocancel, &T, never_cb),
               FY_ECLOSED);
  cr_assert_eq(late.call.status, FY_ECLOSED);
  cr_assert_eq(closed.n, 0);
  fx_advance(&FX, 0);
  for (i = 0; i < 3; i++) {
    cr_assert_eq(C[i].ncb, 1);
    cr_assert_eq(C[i].nested, 0);
    cr_assert_eq(C[i].status, UV_ECANCELED);
    cr_assert_lt(C[i].order, closed.order, "close cb before a call's");
  }
  cr_assert_eq(closed.n, 1);
  cr_assert_eq(closed.obj, pl);
  cr_assert_eq(T.cancels, 3);
  cr_assert_eq(tres_created(), 3);
  cr_assert_eq(tres_destroyed(), 3);
  /* The policies stay with the context. */
  cr_assert_eq(P.hooks[PROBE_HOOK_DESTROY], 0);
  no_violations();
  fx_finish(&FX);
  cr_assert_eq(P.hooks[PROBE_HOOK_DESTROY], 1);
}

Test(pipeline, close_waits_for_an_operation_that_reports_later) {
  fy_pipeline_t *pl;
  fx_closed_t closed = {0};
  fx_init(&FX, 0);
  pl = fx_pipeline(&FX, 1, fx_probe(&FX, &P, "p"));
  cr_assert_eq(tcall_start(&C[0], pl, &top_op_cancel_later, &T), 0);
  cr_assert_eq(fy_pipeline_close(pl, fx_obj_closed, &closed), 0);
  fx_advance(&FX, 1000);
  uv_run(&FX.loop, UV_RUN_NOWAIT);
  cr_assert_eq(T.cancels, 1);
  cr_assert_eq(C[0].ncb, 0);
  cr_assert_eq(closed.n, 0);
  cr_assert_eq(fy_pipeline_inflight(pl), 1);
  top_report(&T, 0, UV_ECANCELED);
  cr_assert_eq(C[0].ncb, 1);
  cr_assert_eq(C[0].status, UV_ECANCELED);
  fx_advance(&FX, 0);
  cr_assert_eq(closed.n, 1);
  fx_finish(&FX);
}

static void inspect_pipeline(void *obj, void *ud) {
  fy_pipeline_t *pl = obj;
  /* Still readable inside its close callback. */
  cr_assert_eq(fy_pipeline_inflight(pl), 0);
  cr_assert_eq(fy_pipeline_ctx(pl), FX.ctx);
  fx_obj_closed(obj, ud);
}

Test(pipeline, close_without_calls_is_still_asynchronous) {
  fy_pipeline_t *pl;
  fx_closed_t closed = {0};
  fx_init(&FX, 0);
  pl = fx_pipeline(&FX, 0);
  cr_assert_eq(fy_pipeline_close(pl, inspect_pipeline, &closed), 0);
  cr_assert_eq(closed.n, 0, "close callback ran inside fy_pipeline_close");
  uv_run(&FX.loop, UV_RUN_NOWAIT);
  cr_assert_eq(closed.n, 1);
  cr_assert_eq(closed.obj, pl);
  fx_finish(&FX);
}

Test(pipeline, a_shared_policy_outlives_one_pipeline) {
  fy_pipeline_t *a, *b;
  fy_policy_t *p;
  fx_closed_t closed = {0};
  fx_init(&FX, 0);
  p = fx_probe(&FX, &P, "shared");
  a = fx_pipeline(&FX, 1, p);
  b = fx_pipeline(&FX, 2, fx_passthrough(&FX, NULL), p);
  cr_assert_eq(fy_pipeline_close(a, fx_obj_closed, &closed), 0);
  fx_advance(&FX, 0);
  cr_assert_eq(closed.n, 1);
  cr_assert_eq(P.hooks[PROBE_HOOK_DESTROY], 0);
  cr_assert_eq(P.hooks[PROBE_HOOK_CLOSE], 0);
  top_script(&T, TOP_SYNC, 0);
  cr_assert_eq(tcall_start(&C[0], b, &top_op_nocancel, &T), 0);
  fx_advance(&FX, 0);
  cr_assert_eq(C[0].ncb, 1);
  cr_assert_eq(C[0].status, 0);
  cr_assert_eq(P.hooks[PROBE_HOOK_START], 1);
  fx_finish(&FX);
  cr_assert_eq(P.hooks[PROBE_HOOK_CLOSE], 1);
  cr_assert_eq(P.hooks[PROBE_HOOK_DESTROY], 1);
}

/* ---- policy close ------------------------------------------------------- */

Test(pipeline, policy_close_refuses_new_calls_synchronously) {
  fy_pipeline_t *pl;
  fx_closed_t closed = {0};
  tcall_t r;
  fx_init(&FX, 0);
  pl = fx_pipeline(&FX, 2, fx_passthrough(&FX, "front"),
                   fx_probe(&FX, &P, "victim"));
  cr_assert_eq(tcall_start(&C[0], pl, &top_op_cancel_sync, &T), 0);
  cr_assert_eq(fy_policy_close(P.policy, fx_obj_closed, &closed), 0);
  cr_assert(fy_policy_is_closing(P.policy));
  cr_assert_eq(fy_policy_close(P.policy, NULL, NULL), FY_ECLOSED);
  cr_assert_eq(fy_policy_close(NULL, NULL, NULL), 0);
  cr_assert_eq(closed.n, 0);

  memset(&r, 0, sizeof(r));
  cr_assert_eq(fy_call_start(&r.call, pl, &top_op_nocancel, &T, never_cb),
               FY_ECLOSED);
  cr_assert_str_eq(r.call.detail.by_kind, "probe");
  cr_assert_str_eq(r.call.detail.by_name, "victim");
  cr_assert_not(fy_call_is_active(&r.call));
  cr_assert_eq(T.starts, 1);

  fx_advance(&FX, 0);
  cr_assert_eq(C[0].ncb, 1);
  cr_assert_eq(C[0].status, UV_ECANCELED);
  cr_assert_eq(closed.n, 1);
  cr_assert_eq(closed.obj, P.policy);
  cr_assert_gt(closed.order, C[0].order);
  cr_assert_eq(P.hooks[PROBE_HOOK_CLOSE], 1);
  /* The pipeline still holds it: no destroy yet, and still refused. */
  cr_assert_eq(P.hooks[PROBE_HOOK_DESTROY], 0);
  cr_assert_eq(fy_call_start(&r.call, pl, &top_op_nocancel, &T, never_cb),
               FY_ECLOSED);
  cr_assert_eq(fy_pipeline_close(pl, NULL, NULL), 0);
  fx_advance(&FX, 0);
  cr_assert_eq(P.hooks[PROBE_HOOK_DESTROY], 1);
  cr_assert_eq(closed.n, 1);
  no_violations();
  fx_finish(&FX);
}

Test(pipeline, policy_close_waits_for_its_frames) {
  fy_pipeline_t *pl;
  fx_closed_t closed = {0};
  fx_init(&FX, 0);
  pl = fx_pipeline(&FX, 1, fx_probe(&FX, &P, "p"));
  cr_assert_eq(tcall_start(&C[0], pl, &top_op_cancel_later, &T), 0);
  cr_assert_eq(fy_policy_close(P.policy, fx_obj_closed, &closed), 0);
  fx_advance(&FX, 500);
  cr_assert_eq(T.cancels, 1);
  cr_assert_eq(closed.n, 0);
  cr_assert_eq(fy_policy_active(P.policy), 1);
  top_report(&T, 0, 0); /* the operation won the race */
  cr_assert_eq(C[0].ncb, 1);
  cr_assert_eq(C[0].status, 0);
  fx_advance(&FX, 0);
  cr_assert_eq(closed.n, 1);
  fx_finish(&FX);
}

Test(pipeline, unused_policy_close_then_destroy) {
  fx_closed_t closed = {0};
  fx_init(&FX, 0);
  fx_probe(&FX, &P, "alone");
  cr_assert_eq(fy_policy_close(P.policy, fx_obj_closed, &closed), 0);
  cr_assert_eq(closed.n, 0);
  fx_advance(&FX, 0);
  cr_assert_eq(closed.n, 1);
  cr_assert_eq(P.hooks[PROBE_HOOK_CLOSE], 1);
  cr_assert_eq(P.hooks[PROBE_HOOK_DESTROY], 1);
  fx_finish(&FX);
  cr_assert_eq(P.hooks[PROBE_HOOK_DESTROY], 1);
}

/* Closing a policy whose cancel hook finishes frames at once, when the
 * frames of one call nest inside each other: cancelling the outer frame
 * abandons and frees the inner one while the close walks the policy's
 * frames. */
Test(pipeline, policy_close_when_cancel_frees_sibling_frames) {
  fy_pipeline_t *pl;
  fx_closed_t closed = {0};
  fx_init(&FX, 0);
  P.cancel = PROBE_CANCEL_FINISH;
  fx_probe(&FX, &P, "twice");
  pl = fx_pipeline(&FX, 2, P.policy, P.policy);
  cr_assert_eq(tcall_start(&C[0], pl, &top_op_cancel_sync, &T), 0);
  cr_assert_eq(tcall_start(&C[1], pl, &top_op_cancel_sync, &T), 0);
  cr_assert_eq(fy_policy_active(P.policy), 4);
  cr_assert_eq(fy_policy_close(P.policy, fx_obj_closed, &closed), 0);
  fx_advance(&FX, 0);
  cr_assert_eq(C[0].ncb, 1);
  cr_assert_eq(C[1].ncb, 1);
  cr_assert_eq(C[0].status, UV_ECANCELED);
  cr_assert_eq(C[1].status, UV_ECANCELED);
  cr_assert_eq(closed.n, 1);
  cr_assert_eq(fy_policy_active(P.policy), 0);
  no_violations();
  fx_finish(&FX);
}

Test(pipeline, ctx_close_when_cancel_frees_sibling_frames) {
  fy_pipeline_t *pl;
  fx_init(&FX, 0);
  P.cancel = PROBE_CANCEL_FINISH;
  fx_probe(&FX, &P, "twice");
  pl = fx_pipeline(&FX, 3, P.policy, fx_passthrough(&FX, NULL), P.policy);
  cr_assert_eq(tcall_start(&C[0], pl, &top_op_cancel_sync, &T), 0);
  fx_finish(&FX);
  cr_assert_eq(C[0].ncb, 1);
  cr_assert_eq(C[0].status, UV_ECANCELED);
  cr_assert_eq(T.cancels, 1);
}
