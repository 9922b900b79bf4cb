/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * Admission layers (policy.h): a call through admission layers alone takes
 * one block, the attempt's, with their tokens in it; a layer that takes an
 * outcome over gets its frame in the finished work's place, without an
 * allocation; a refusal taken over either goes on in a frame or is
 * returned at once. */
#include <criterion/criterion.h>

#include "fixture.h"

static top_t T;
static tcall_t C;

static size_t live_frames(void) {
  fy_ctx_stats_t s;
  fy_ctx_stats(FX.ctx, &s);
  return s.frames;
}

static fy_retry_t *new_retry(unsigned tries, int also_retry) {
  fy_retry_opts_t o;
  fy_retry_t *r;
  fy_retry_opts_init(&o);
  o.max_attempts = tries;
  o.initial_delay_ms = 10;
  o.max_delay_ms = 10;
  if (also_retry != 0) {
    o.retryable[0] = also_retry;
    o.retryable_count = 1;
  }
  cr_assert_eq(fy_retry_new(FX.ctx, &o, &r), 0);
  return r;
}

Test(admission, a_call_through_admission_layers_takes_one_frame) {
  fy_retry_t *r;
  fy_breaker_t *b;
  fy_bulkhead_t *bh;
  fy_pipeline_t *pl;
  fx_init(&FX, 0);
  r = new_retry(3, 0);
  cr_assert_eq(fy_breaker_new(FX.ctx, NULL, &b), 0);
  cr_assert_eq(fy_bulkhead_new(FX.ctx, NULL, &bh), 0);
  pl = fx_pipeline(&FX, 3, fy_retry_policy(r), fy_breaker_policy(b),
                   fy_bulkhead_policy(bh));
  top_script(&T, TOP_ASYNC, 0);
  cr_assert_eq(tcall_start(&C, pl, &top_op_cancel_sync, &T), 0);
  cr_assert_eq(live_frames(), 1, "the attempt alone carries the tokens");
  cr_assert_eq(fy_bulkhead_active(bh), 1);
  cr_assert_eq(fy_policy_active(fy_retry_policy(r)), 1, "a token");
  top_report(&T, 0, 0);
  cr_assert_eq(C.ncb, 1);
  cr_assert_eq(C.status, 0);
  cr_assert_eq(live_frames(), 0);
  cr_assert_eq(fy_bulkhead_active(bh), 0, "settled");
  cr_assert_eq(fy_policy_active(fy_retry_policy(r)), 0);
  fx_finish(&FX);
}

/* The first try fails: the retry takes it over in the attempt's place,
 * backs off, and the next try runs under its frame. */
Test(admission, a_failed_try_is_taken_over_in_its_place) {
  fy_retry_t *r;
  fy_breaker_t *b;
  fy_breaker_counts_t n;
  fy_pipeline_t *pl;
  fx_init(&FX, 0);
  r = new_retry(3, 0);
  cr_assert_eq(fy_breaker_new(FX.ctx, NULL, &b), 0);
  pl = fx_pipeline(&FX, 2, fy_breaker_policy(b), fy_retry_policy(r));
  top_script(&T, TOP_ASYNC, 0);
  cr_assert_eq(tcall_start(&C, pl, &top_op_cancel_sync, &T), 0);
  cr_assert_eq(live_frames(), 1);
  top_report(&T, 0, UV_EIO);
  cr_assert_eq(C.ncb, 0, "retried, not delivered");
  cr_assert_eq(live_frames(), 1, "the retry's frame, where the attempt was");
  fy_breaker_counts(b, &n);
  cr_assert_eq(n.requests, 0, "the breaker above sees only the final outcome");
  fx_advance(&FX, 10);
  cr_assert_eq(T.starts, 2);
  cr_assert_eq(live_frames(), 2, "the retry's frame and the new attempt");
  top_report(&T, 1, 0);
  cr_assert_eq(C.ncb, 1);
  cr_assert_eq(C.status, 0);
  cr_assert_eq(C.call.detail.attempts, 2);
  fy_breaker_counts(b, &n);
  cr_assert_eq(n.requests, 1);
  cr_assert_eq(n.total_successes, 1);
  cr_assert_eq(live_frames(), 0);
  fx_finish(&FX);
}

/* A refusal below a retry that retries it: fy_call_start() returns 0 and
 * the retry backs off in a frame made in the refused block; one that it
 * does not retry is returned at once. */
Test(admission, a_refusal_taken_over_goes_on_or_is_returned_at_once) {
  fy_retry_t *keen, *plain;
  fy_bulkhead_t *bh;
  fy_bulkhead_opts_t bo;
  fy_pipeline_t *pl_keen, *pl_plain;
  tcall_t C2 = {0};
  fx_init(&FX, 0);
  keen = new_retry(3, FY_EBULKHEADFULL);
  plain = new_retry(3, 0);
  fy_bulkhead_opts_init(&bo);
  bo.max_concurrent = 1;
  cr_assert_eq(fy_bulkhead_new(FX.ctx, &bo, &bh), 0);
  pl_keen = fx_pipeline(&FX, 2, fy_retry_policy(keen), fy_bulkhead_policy(bh));
  pl_plain =
      fx_pipeline(&FX, 2, fy_retry_policy(plain), fy_bulkhead_policy(bh));
  top_script(&T, TOP_ASYNC, 0);
  cr_assert_eq(fy_bulkhead_try_acquire(bh), 0);
  cr_assert_eq(tcall_start(&C2, pl_plain, &top_op_cancel_sync, &T),
               FY_EBULKHEADFULL, "not retried: refused at once");
  cr_assert_eq(C2.ncb, 0);
  cr_assert_eq(tcall_start(&C, pl_keen, &top_op_cancel_sync, &T), 0,
               "retried: under way");
  cr_assert_eq(live_frames(), 1, "the retry backing off");
  cr_assert_eq(T.starts, 0);
  fy_bulkhead_release(bh);
  fx_advance(&FX, 10);
  cr_assert_eq(T.starts, 1);
  top_report(&T, 0, 0);
  cr_assert_eq(C.ncb, 1);
  cr_assert_eq(C.status, 0);
  cr_assert_eq(C.call.detail.attempts, 1);
  cr_assert_eq(live_frames(), 0);
  fx_finish(&FX);
}

/* The fallback is an admission layer too: a primary that succeeds costs
 * it nothing; one that fails is taken over and the fallback runs. */
static int fb_runs;
static int fb_start(fy_attempt_t *a, void *arg) {
  (void)arg;
  fb_runs++;
  return fy_attempt_done(a, 0);
}
static const fy_op_t fb_op = {fb_start, NULL};

Test(admission, a_fallback_takes_over_a_failed_primary) {
  fy_fallback_opts_t fo;
  fy_fallback_t *fb;
  fy_pipeline_t *pl;
  fx_init(&FX, 0);
  fy_fallback_opts_init(&fo);
  fo.op = &fb_op;
  cr_assert_eq(fy_fallback_new(FX.ctx, &fo, &fb), 0);
  pl = fx_pipeline(&FX, 1, fy_fallback_policy(fb));
  top_script(&T, TOP_ASYNC, 0);
  cr_assert_eq(tcall_start(&C, pl, &top_op_cancel_sync, &T), 0);
  cr_assert_eq(live_frames(), 1);
  top_report(&T, 0, 0);
  cr_assert_eq(C.ncb, 1);
  cr_assert_eq(C.status, 0);
  cr_assert_eq(fb_runs, 0);
  memset(&C, 0, sizeof(C));
  cr_assert_eq(tcall_start(&C, pl, &top_op_cancel_sync, &T), 0);
  top_report(&T, 1, UV_EIO);
  fx_advance(&FX, 0);
  cr_assert_eq(fb_runs, 1);
  cr_assert_eq(C.ncb, 1);
  cr_assert_eq(C.status, 0, "the fallback's success");
  cr_assert_str_eq(C.call.detail.by_kind, "fallback");
  cr_assert_eq(C.call.detail.cause, UV_EIO, "the primary's error");
  cr_assert_eq(live_frames(), 0);
  fx_finish(&FX);
}

/* A classifier of the user's may fail a success (a result that fails
 * validation): that outcome is taken over too, and the fallback runs. */
static fy_outcome_t success_is_invalid(int status, void *ud) {
  (void)ud;
  return status == 0 ? FY_OUTCOME_FAILURE : FY_OUTCOME_SUCCESS;
}

Test(admission, a_user_classifier_decides_on_successes_too) {
  fy_fallback_opts_t fo;
  fy_fallback_t *fb;
  fy_pipeline_t *pl;
  fx_init(&FX, 0);
  fb_runs = 0;
  fy_fallback_opts_init(&fo);
  fo.op = &fb_op;
  fo.should_fallback = success_is_invalid;
  cr_assert_eq(fy_fallback_new(FX.ctx, &fo, &fb), 0);
  pl = fx_pipeline(&FX, 1, fy_fallback_policy(fb));
  top_script(&T, TOP_ASYNC, 0);
  cr_assert_eq(tcall_start(&C, pl, &top_op_cancel_sync, &T), 0);
  top_report(&T, 0, 0);
  fx_advance(&FX, 0);
  cr_assert_eq(fb_runs, 1, "the invalid success triggered the fallback");
  cr_assert_eq(C.ncb, 1);
  cr_assert_eq(C.status, 0);
  cr_assert_str_eq(C.call.detail.by_kind, "fallback");
  fx_finish(&FX);
}

/* A refusal taken over by a fallback that cannot start (no memory for its
 * attempt): the fallback decided an outcome, FY_EFALLBACK, which reaches
 * the callback as the fallback's outcomes always do; only a refusal passed
 * on unchanged is returned at once. */
Test(admission, a_fallback_that_cannot_start_completes_through_the_callback) {
  fy_fallback_opts_t fo;
  fy_fallback_t *fb;
  fy_bulkhead_t *bh;
  fy_bulkhead_opts_t bo;
  fy_pipeline_t *pl;
  fx_init_counted(&FX, 0);
  fb_runs = 0;
  fy_fallback_opts_init(&fo);
  fo.op = &fb_op;
  cr_assert_eq(fy_fallback_new(FX.ctx, &fo, &fb), 0);
  fy_bulkhead_opts_init(&bo);
  bo.max_concurrent = 1;
  cr_assert_eq(fy_bulkhead_new(FX.ctx, &bo, &bh), 0);
  pl = fx_pipeline(&FX, 2, fy_fallback_policy(fb), fy_bulkhead_policy(bh));
  cr_assert_eq(fy_bulkhead_try_acquire(bh), 0);
  /* The call's first block is the next request; the fallback's attempt
   * the one after. */
  FA.fail_at = FA.requests + 1;
  cr_assert_eq(tcall_start(&C, pl, &top_op_cancel_sync, &T), 0);
  cr_assert_eq(FA.failed, 1, "the fallback's attempt found no memory");
  cr_assert_eq(C.ncb, 0);
  fx_advance(&FX, 0);
  cr_assert_eq(C.ncb, 1);
  cr_assert_eq(C.status, FY_EFALLBACK);
  cr_assert_eq(C.nested, 0);
  cr_assert_eq(C.call.detail.cause, FY_EBULKHEADFULL);
  cr_assert_eq(C.call.detail.state, UV_ENOMEM);
  cr_assert_eq(fb_runs, 0);
  fy_bulkhead_release(bh);
  fx_finish_counted(&FX);
}
