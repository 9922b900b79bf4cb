/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * Cancellation scopes (scope.h): cancelling reaches every call in the scope
 * and in its child scopes, each completing once through its callback and
 * never inside fy_scope_cancel(); a call started in a cancelled scope is
 * refused at once and nothing runs for it. */
#include <criterion/criterion.h>

#include "fixture.h"

static top_t T;
static tcall_t C[3];

static int start_in(tcall_t *tc, fy_pipeline_t *pl, fy_scope_t *scope) {
  fy_call_opts_t o = {0};
  int rc;
  o.scope = scope;
  g_nested++;
  rc = fy_call_start_opts(&tc->call, pl, &top_op_cancel_sync, &T, &o,
                          tcall_cb);
  g_nested--;
  return rc;
}

static int cancel_scope(fy_scope_t *s) {
  int rc;
  g_nested++;
  rc = fy_scope_cancel(s);
  g_nested--;
  return rc;
}

Test(scope, cancel_reaches_every_call_in_it) {
  fy_scope_t s, other;
  fy_pipeline_t *pl;
  tcall_t outside = {0};
  unsigned i;
  fx_init(&FX, 0);
  pl = fx_pipeline(&FX, 1, fx_passthrough(&FX, "p"));
  top_script(&T, TOP_ASYNC, 0);
  cr_assert_eq(fy_scope_init(&s, NULL), 0);
  cr_assert_eq(fy_scope_init(&other, NULL), 0);
  for (i = 0; i < 3; i++)
    cr_assert_eq(start_in(&C[i], pl, &s), 0);
  cr_assert_eq(start_in(&outside, pl, &other), 0);
  cr_assert_eq(fy_scope_calls(&s), 3);
  cr_assert_eq(cancel_scope(&s), 0);
  for (i = 0; i < 3; i++)
    cr_assert_eq(C[i].ncb, 0, "no callback inside fy_scope_cancel()");
  fx_advance(&FX, 0);
  for (i = 0; i < 3; i++) {
    cr_assert_eq(C[i].ncb, 1);
    cr_assert_eq(C[i].status, UV_ECANCELED);
    cr_assert_eq(C[i].nested, 0);
  }
  cr_assert_eq(T.cancels, 3);
  cr_assert_eq(outside.ncb, 0, "a call of another scope runs on");
  cr_assert_eq(fy_scope_calls(&s), 0);
  cr_assert_eq(fy_scope_cancel(&s), UV_EALREADY);
  top_report(&T, 3, 0);
  cr_assert_eq(outside.ncb, 1);
  cr_assert_eq(outside.status, 0);
  cr_assert_eq(fy_scope_fini(&s), 0);
  cr_assert_eq(fy_scope_fini(&other), 0);
  fx_finish(&FX);
}

/* A call in a cancelled scope is refused before anything sees it: no
 * attempt, no breaker count, no fallback. */
static int fallback_runs;
static int fb_start(fy_attempt_t *a, void *arg) {
  (void)arg;
  fallback_runs++;
  return fy_attempt_done(a, 0);
}
static const fy_op_t fb_op = {fb_start, NULL};

Test(scope, a_cancelled_scope_refuses_new_calls_and_runs_nothing) {
  fy_scope_t s;
  fy_pipeline_t *pl;
  fy_breaker_t *b;
  fy_fallback_t *fb;
  fy_fallback_opts_t fo;
  fy_breaker_counts_t n;
  fy_policy_t *layers[2];
  fx_init(&FX, 0);
  cr_assert_eq(fy_breaker_new(FX.ctx, NULL, &b), 0);
  fy_fallback_opts_init(&fo);
  fo.op = &fb_op;
  cr_assert_eq(fy_fallback_new(FX.ctx, &fo, &fb), 0);
  layers[0] = fy_fallback_policy(fb);
  layers[1] = fy_breaker_policy(b);
  cr_assert_eq(fy_pipeline_new(FX.ctx, layers, 2, &pl), 0);
  top_script(&T, TOP_SYNC, 0);
  cr_assert_eq(fy_scope_init(&s, NULL), 0);
  cr_assert_eq(fy_scope_cancel(&s), 0);
  cr_assert_eq(start_in(&C[0], pl, &s), UV_ECANCELED);
  cr_assert_eq(C[0].call.status, UV_ECANCELED);
  fx_advance(&FX, 0);
  cr_assert_eq(C[0].ncb, 0, "a refused call has no callback");
  cr_assert_eq(T.starts, 0, "no attempt");
  cr_assert_eq(fallback_runs, 0, "no fallback");
  fy_breaker_counts(b, &n);
  cr_assert_eq(n.requests, 0, "the breaker never saw it");
  cr_assert_eq(fy_scope_calls(&s), 0);
  /* The same call object works in another scope. */
  cr_assert_eq(start_in(&C[0], pl, NULL), 0);
  fx_advance(&FX, 0);
  cr_assert_eq(C[0].ncb, 1);
  cr_assert_eq(C[0].status, 0);
  cr_assert_eq(T.starts, 1);
  fx_finish(&FX);
}

Test(scope, children_are_cancelled_with_their_parent) {
  fy_scope_t parent, child, late, sibling;
  fy_pipeline_t *pl;
  fx_init(&FX, 0);
  pl = fx_pipeline(&FX, 0);
  top_script(&T, TOP_ASYNC, 0);
  cr_assert_eq(fy_scope_init(&parent, NULL), 0);
  cr_assert_eq(fy_scope_init(&child, &parent), 0);
  cr_assert_eq(fy_scope_init(&sibling, &parent), 0);
  cr_assert_eq(start_in(&C[0], pl, &child), 0);
  cr_assert_eq(start_in(&C[1], pl, &sibling), 0);
  /* Cancelling a child leaves its parent and siblings alone. */
  cr_assert_eq(cancel_scope(&sibling), 0);
  cr_assert(!fy_scope_is_cancelled(&parent));
  fx_advance(&FX, 0);
  cr_assert_eq(C[1].ncb, 1);
  cr_assert_eq(C[0].ncb, 0);
  cr_assert_eq(fy_scope_fini(&parent), UV_EBUSY, "children are in it");
  cr_assert_eq(cancel_scope(&parent), 0);
  cr_assert(fy_scope_is_cancelled(&child));
  fx_advance(&FX, 0);
  cr_assert_eq(C[0].ncb, 1);
  cr_assert_eq(C[0].status, UV_ECANCELED);
  /* A scope made under a cancelled parent starts cancelled. */
  cr_assert_eq(fy_scope_init(&late, &parent), 0);
  cr_assert(fy_scope_is_cancelled(&late));
  cr_assert_eq(start_in(&C[2], pl, &late), UV_ECANCELED);
  cr_assert_eq(fy_scope_fini(&late), 0);
  cr_assert_eq(fy_scope_fini(&child), 0);
  cr_assert_eq(fy_scope_fini(&sibling), 0);
  cr_assert_eq(fy_scope_fini(&parent), 0);
  fx_finish(&FX);
}

/* From inside a call's own callback, and with a call that completes
 * normally: the scope lets it go, and busy scopes cannot be finished. */
static fy_scope_t g_scope;
static void cancel_from_callback(tcall_t *tc, int status) {
  (void)tc;
  (void)status;
  cr_assert_eq(fy_scope_cancel(&g_scope), 0);
}

Test(scope, cancel_from_a_callback_and_fini_rules) {
  fy_pipeline_t *pl;
  fx_init(&FX, 0);
  pl = fx_pipeline(&FX, 0);
  top_script(&T, TOP_ASYNC, 0);
  cr_assert_eq(fy_scope_init(&g_scope, NULL), 0);
  cr_assert_eq(start_in(&C[0], pl, &g_scope), 0);
  cr_assert_eq(start_in(&C[1], pl, &g_scope), 0);
  cr_assert_eq(fy_scope_fini(&g_scope), UV_EBUSY);
  C[0].then = cancel_from_callback;
  top_report(&T, 0, 0);
  cr_assert_eq(C[0].ncb, 1);
  cr_assert_eq(C[0].status, 0);
  cr_assert_eq(C[1].ncb, 0, "not inside the first call's callback");
  fx_advance(&FX, 0);
  cr_assert_eq(C[1].ncb, 1);
  cr_assert_eq(C[1].status, UV_ECANCELED);
  cr_assert_eq(fy_scope_fini(&g_scope), 0);
  cr_assert_eq(fy_scope_init(NULL, NULL), UV_EINVAL);
  cr_assert_eq(fy_scope_init(&g_scope, &g_scope), UV_EINVAL);
  cr_assert_eq(fy_scope_cancel(NULL), UV_EINVAL);
  fx_finish(&FX);
}
