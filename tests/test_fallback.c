/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * Fallback on a manual-clock context.  Every loop test ends with finish():
 * close the context, run the loop until its close callback ran,
 * uv_loop_close() == 0, and no block left allocated. */
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "fortify.h"
#include "fixture.h"

/* ---- fixture: FX at 1000 ms with the counting allocator (support/) ---- */

static void setup(void) { fx_init_counted(&FX, 1000); }
static void finish(void) { fx_finish_counted(&FX); }

/* ---- results: an int counts how often it was destroyed ------------------ */

static int primary_res, fallback_res;

static void bump(void *p) { (*(int *)p)++; }

/* ---- the primary and the fallback: a top_t each (support/probe.h),
 * asynchronous unless scripted, reported with top_finish(), cancelled
 * synchronously; |result| (destroyed with bump) is attached to each report
 * but the cancel's. ---- */

/* ---- calls ------------------------------------------------------------- */

typedef struct req_s {
  fy_call_t call;
  top_t primary;
  int done;
  int status;
  void *result;
  fy_detail_t detail;
  int take; /* take the result in the callback (and destroy it) */
} req_t;

static void on_done(fy_call_t *call, int status) {
  req_t *r = fy_container_of(call, req_t, call);
  r->done++;
  r->status = status;
  r->detail = call->detail;
  r->result = fy_call_result(call);
  if (r->take) {
    fy_result_dtor dtor;
    void *res = fy_call_take_result(call, &dtor);
    cr_assert_eq(res, r->result);
    if (dtor != NULL)
      dtor(res);
  }
}

static int start(req_t *r, fy_pipeline_t *pl) {
  return fy_call_start(&r->call, pl, &top_op_cancel_sync, &r->primary,
                       on_done);
}

/* ---- the fallback under test ------------------------------------------- */

static top_t fb_work;
static int fallback_calls[8];
static int nfallback;

static void record_fallback(int primary, void *ud) {
  (void)ud;
  cr_assert_lt(nfallback, 8);
  fallback_calls[nfallback++] = primary;
}

static fy_fallback_t *make_fb(fy_classify_fn classify, fy_fallback_cb cb) {
  fy_fallback_opts_t o;
  fy_fallback_t *fb = NULL;
  fy_fallback_opts_init(&o);
  o.op = &top_op_cancel_sync;
  o.arg = &fb_work;
  if (classify != NULL)
    o.should_fallback = classify;
  o.on_fallback = cb != NULL ? cb : record_fallback;
  o.name = "fb";
  cr_assert_eq(fy_fallback_new(FX.ctx, &o, &fb), 0);
  cr_assert_not_null(fb);
  return fb;
}

static fy_pipeline_t *make_pl(fy_policy_t *const *policies, size_t n) {
  fy_pipeline_t *pl = NULL;
  cr_assert_eq(fy_pipeline_new(FX.ctx, policies, n, &pl), 0);
  return pl;
}

static fy_pipeline_t *pl_of(fy_fallback_t *fb) {
  fy_policy_t *p = fy_fallback_policy(fb);
  return make_pl(&p, 1);
}

static evrec_t E; /* the events, when a test listens */

/* ======================================================================== *
 * Options.
 * ======================================================================== */

Test(fallback, opts_defaults) {
  fy_fallback_opts_t o;
  memset(&o, 0xab, sizeof(o));
  fy_fallback_opts_init(&o);
  cr_assert_null(o.op);
  cr_assert_null(o.arg);
  cr_assert_eq(o.should_fallback, fy_classify_default);
  cr_assert_null(o.on_fallback);
  cr_assert_null(o.user_data);
  cr_assert_null(o.name);
  fy_fallback_opts_init(NULL); /* no crash */
}

Test(fallback, bad_options_create_nothing) {
  const fy_op_t no_start = {NULL, top_op_cancel_sync.cancel};
  fy_fallback_opts_t o;
  fy_fallback_t *fb;
  long before;
  setup();
  before = FA.live;

  fb = (fy_fallback_t *)&o;
  cr_assert_eq(fy_fallback_opts_check(NULL), UV_EINVAL);
  cr_assert_eq(fy_fallback_new(FX.ctx, NULL, &fb), UV_EINVAL, "no operation");
  cr_assert_null(fb);
  fy_fallback_opts_init(&o);
  /* The defaults alone are not valid: there is no operation. */
  cr_assert_eq(fy_fallback_opts_check(&o), UV_EINVAL);
  fb = (fy_fallback_t *)&o;
  cr_assert_eq(fy_fallback_new(FX.ctx, &o, &fb), UV_EINVAL, "op NULL");
  cr_assert_null(fb);
  o.op = &no_start;
  cr_assert_eq(fy_fallback_opts_check(&o), UV_EINVAL);
  fb = (fy_fallback_t *)&o;
  cr_assert_eq(fy_fallback_new(FX.ctx, &o, &fb), UV_EINVAL, "op->start NULL");
  cr_assert_null(fb);
  o.op = &top_op_cancel_sync;
  cr_assert_eq(fy_fallback_opts_check(&o), 0);
  o.should_fallback = NULL; /* the default classifier */
  cr_assert_eq(fy_fallback_opts_check(&o), 0);
  cr_assert_eq(fy_fallback_new(NULL, &o, &fb), UV_EINVAL);
  cr_assert_null(fb);
  cr_assert_eq(fy_fallback_new(FX.ctx, &o, NULL), UV_EINVAL);
  cr_assert_eq(FA.live, before);

  fa_fail_all(1);
  fb = (fy_fallback_t *)&o;
  cr_assert_eq(fy_fallback_new(FX.ctx, &o, &fb), UV_ENOMEM);
  fa_fail_all(0);
  cr_assert_null(fb);
  cr_assert_eq(FA.live, before);

  /* should_fallback NULL means the default. */
  o.should_fallback = NULL;
  cr_assert_eq(fy_fallback_new(FX.ctx, &o, &fb), 0);
  cr_assert_str_eq(fy_policy_kind(fy_fallback_policy(fb)), "fallback");
  finish();
}

Test(fallback, null_handles_are_harmless) {
  cr_assert_null(fy_fallback_policy(NULL));
  cr_assert_eq(fy_fallback_close(NULL, NULL, NULL), 0);
}

/* ======================================================================== *
 * Behaviour.
 * ======================================================================== */

Test(fallback, primary_success_passes_through) {
  fy_fallback_t *fb;
  fy_pipeline_t *pl;
  req_t a = {0};
  setup();
  evrec_listen(&E, FX.ctx, FY_EV_MASK(FY_EV_FALLBACK));
  fb = make_fb(NULL, NULL);
  pl = pl_of(fb);
  a.primary.result = &primary_res;
  a.primary.result_dtor = bump;
  cr_assert_eq(start(&a, pl), 0);
  top_finish(&a.primary, 0);
  fy_ctx_advance(FX.ctx, 0);
  cr_assert_eq(a.done, 1);
  cr_assert_eq(a.status, 0);
  cr_assert_eq(a.result, &primary_res);
  cr_assert_eq(primary_res, 1, "destroyed once, after the callback");
  cr_assert_null(a.detail.by_kind);
  cr_assert_eq(a.detail.attempts, 1);
  cr_assert_eq(fb_work.starts, 0);
  cr_assert_eq(nfallback, 0);
  cr_assert_eq(E.n, 0, "no event when the primary succeeds");
  finish();
}

Test(fallback, primary_failure_runs_the_fallback_asynchronously) {
  fy_fallback_t *fb;
  fy_pipeline_t *pl;
  req_t a = {0};
  setup();
  evrec_listen(&E, FX.ctx, FY_EV_MASK(FY_EV_FALLBACK));
  fb = make_fb(NULL, NULL);
  pl = pl_of(fb);
  a.primary.result = &primary_res;
  a.primary.result_dtor = bump;
  fb_work.result = &fallback_res;
  fb_work.result_dtor = bump;
  a.take = 1;
  cr_assert_eq(start(&a, pl), 0);
  top_finish(&a.primary, UV_ECONNRESET);
  cr_assert_eq(fb_work.starts, 1);
  cr_assert_eq(primary_res, 1, "the primary's result is destroyed");
  cr_assert_eq(fb_work.cause[fb_work.starts - 1], UV_ECONNRESET,
               "the fallback reads the primary's error");
  cr_assert_str_eq(fb_work.by_kind[fb_work.starts - 1], "fallback");
  cr_assert_eq(fb_work.index[fb_work.starts - 1], 1);
  cr_assert_eq(a.done, 0, "the fallback is asynchronous");
  fy_ctx_advance(FX.ctx, 500);
  cr_assert_eq(a.done, 0);
  top_finish(&fb_work, 0);
  fy_ctx_advance(FX.ctx, 0);
  cr_assert_eq(a.done, 1);
  cr_assert_eq(a.status, 0);
  cr_assert_eq(a.result, &fallback_res, "the fallback's result");
  cr_assert_eq(fallback_res, 1, "taken and destroyed by the caller");
  cr_assert_str_eq(a.detail.by_kind, "fallback");
  cr_assert_str_eq(a.detail.by_name, "fb");
  cr_assert_eq(a.detail.cause, UV_ECONNRESET);
  cr_assert_eq(a.detail.state, 0);
  cr_assert_eq(a.detail.attempts, 2);
  cr_assert_eq(nfallback, 1);
  cr_assert_eq(fallback_calls[0], UV_ECONNRESET);
  cr_assert_eq(E.n, 1);
  cr_assert_eq(E.ev[0].type, FY_EV_FALLBACK);
  cr_assert_eq(E.ev[0].status, UV_ECONNRESET);
  cr_assert_eq(E.ev[0].call, &a.call);
  cr_assert_str_eq(E.ev[0].policy_kind, "fallback");
  finish();
}

Test(fallback, w37_fallback_failure_keeps_both_errors) {
  fy_fallback_t *fb;
  fy_pipeline_t *pl;
  req_t a = {0};
  setup();
  fb = make_fb(NULL, NULL);
  pl = pl_of(fb);
  a.primary.result = &primary_res;
  a.primary.result_dtor = bump;
  fb_work.result = &fallback_res;
  fb_work.result_dtor = bump;
  cr_assert_eq(start(&a, pl), 0);
  top_finish(&a.primary, UV_ECONNRESET);
  top_finish(&fb_work, UV_EHOSTUNREACH);
  fy_ctx_advance(FX.ctx, 0);
  cr_assert_eq(a.done, 1);
  cr_assert_eq(a.status, FY_EFALLBACK);
  cr_assert_str_eq(a.detail.by_kind, "fallback");
  cr_assert_eq(a.detail.cause, UV_ECONNRESET, "the primary's error");
  cr_assert_eq(a.detail.state, UV_EHOSTUNREACH, "the fallback's error");
  cr_assert_null(a.result);
  cr_assert_eq(primary_res, 1);
  cr_assert_eq(fallback_res, 1, "a failed fallback's result is destroyed");
  finish();
}

Test(fallback, cancelling_the_primary_does_not_trigger_the_fallback) {
  fy_fallback_t *fb;
  fy_pipeline_t *pl;
  req_t a = {0};
  setup();
  fb = make_fb(NULL, NULL);
  pl = pl_of(fb);
  cr_assert_eq(start(&a, pl), 0);
  cr_assert_eq(fy_call_cancel(&a.call), 0);
  fy_ctx_advance(FX.ctx, 0);
  cr_assert_eq(a.done, 1);
  cr_assert_eq(a.status, UV_ECANCELED);
  cr_assert_eq(a.primary.cancels, 1);
  cr_assert_eq(fb_work.starts, 0);
  cr_assert_eq(nfallback, 0);
  finish();
}

/* A primary that reports a real failure after cancellation was requested
 * still does not start the fallback. */
static void report_failure_on_cancel(top_t *top, fy_attempt_t *a) {
  (void)a;
  top_report(top, top->starts - 1, UV_EIO);
}

Test(fallback, cancelled_call_never_starts_the_fallback) {
  fy_fallback_t *fb;
  fy_pipeline_t *pl;
  req_t a = {0};
  setup();
  fb = make_fb(NULL, NULL);
  pl = pl_of(fb);
  a.primary.on_cancel = report_failure_on_cancel;
  cr_assert_eq(fy_call_start(&a.call, pl, &top_op_cancel_later, &a.primary,
                             on_done),
               0);
  cr_assert_eq(fy_call_cancel(&a.call), 0);
  fy_ctx_advance(FX.ctx, 0);
  cr_assert_eq(a.status, UV_EIO, "the real outcome won the race");
  cr_assert_eq(fb_work.starts, 0);
  finish();
}

Test(fallback, cancel_while_the_fallback_runs) {
  fy_fallback_t *fb;
  fy_pipeline_t *pl;
  req_t a = {0};
  setup();
  fb = make_fb(NULL, NULL);
  pl = pl_of(fb);
  a.primary.result = &primary_res;
  a.primary.result_dtor = bump;
  cr_assert_eq(start(&a, pl), 0);
  top_finish(&a.primary, UV_ETIMEDOUT);
  cr_assert_eq(fb_work.starts, 1);
  cr_assert_eq(fy_call_cancel(&a.call), 0);
  cr_assert_eq(fb_work.cancels, 1);
  fy_ctx_advance(FX.ctx, 0);
  cr_assert_eq(a.done, 1);
  cr_assert_eq(a.status, UV_ECANCELED);
  cr_assert_eq(a.detail.cause, UV_ETIMEDOUT);
  cr_assert_eq(primary_res, 1);
  finish();
}

static fy_outcome_t only_timeouts(int status, void *ud) {
  cr_assert_eq(ud, &fb_work, "user_data reaches the classifier");
  if (status == UV_ETIMEDOUT)
    return FY_OUTCOME_FAILURE;
  return status == 0 ? FY_OUTCOME_SUCCESS : FY_OUTCOME_IGNORE;
}

Test(fallback, classifier_decides_what_triggers) {
  fy_fallback_opts_t o;
  fy_fallback_t *fb;
  fy_pipeline_t *pl;
  req_t a = {0}, b = {0};
  setup();
  fy_fallback_opts_init(&o);
  o.op = &top_op_cancel_sync;
  o.arg = &fb_work;
  o.should_fallback = only_timeouts;
  o.user_data = &fb_work;
  cr_assert_eq(fy_fallback_new(FX.ctx, &o, &fb), 0);
  pl = pl_of(fb);
  a.primary.result = &primary_res;
  a.primary.result_dtor = bump;
  cr_assert_eq(start(&a, pl), 0);
  top_finish(&a.primary, UV_ECONNREFUSED);
  fy_ctx_advance(FX.ctx, 0);
  cr_assert_eq(a.status, UV_ECONNREFUSED, "passed through unchanged");
  cr_assert_eq(a.result, &primary_res, "with its result");
  cr_assert_eq(fb_work.starts, 0);
  cr_assert_eq(start(&b, pl), 0);
  top_finish(&b.primary, UV_ETIMEDOUT);
  cr_assert_eq(fb_work.starts, 1);
  top_finish(&fb_work, 0);
  fy_ctx_advance(FX.ctx, 0);
  cr_assert_eq(b.status, 0);
  cr_assert_eq(b.detail.cause, UV_ETIMEDOUT);
  finish();
}

Test(fallback, fallback_op_completing_inside_start) {
  fy_fallback_t *fb;
  fy_pipeline_t *pl;
  req_t a = {0};
  setup();
  fb = make_fb(NULL, NULL);
  pl = pl_of(fb);
  top_script(&fb_work, TOP_SYNC, 0);
  fb_work.result = &fallback_res;
  fb_work.result_dtor = bump;
  cr_assert_eq(start(&a, pl), 0);
  top_finish(&a.primary, UV_ECONNRESET);
  cr_assert_eq(fb_work.starts, 1);
  cr_assert_eq(a.done, 0, "delivered from a fresh stack");
  fy_ctx_advance(FX.ctx, 0);
  cr_assert_eq(a.done, 1);
  cr_assert_eq(a.status, 0);
  cr_assert_eq(a.result, &fallback_res);
  cr_assert_eq(fallback_res, 1);
  finish();
}

/* ---- the primary refused at start: a bulkhead below with no room. ---- */

Test(fallback, primary_refused_at_start_runs_the_fallback) {
  fy_fallback_t *fb;
  fy_bulkhead_t *bh;
  fy_bulkhead_opts_t bo;
  fy_policy_t *layers[2];
  fy_pipeline_t *pl;
  req_t a = {0};
  setup();
  fb = make_fb(NULL, NULL);
  fy_bulkhead_opts_init(&bo);
  bo.max_concurrent = 1;
  cr_assert_eq(fy_bulkhead_new(FX.ctx, &bo, &bh), 0);
  cr_assert_eq(fy_bulkhead_try_acquire(bh), 0);
  layers[0] = fy_fallback_policy(fb);
  layers[1] = fy_bulkhead_policy(bh);
  pl = make_pl(layers, 2);
  /* even a synchronous fallback is delivered later */
  top_script(&fb_work, TOP_SYNC, 0);
  fb_work.result = &fallback_res;
  fb_work.result_dtor = bump;
  cr_assert_eq(start(&a, pl), 0, "not refused: the fallback answers");
  cr_assert_eq(a.primary.starts, 0);
  cr_assert_eq(fb_work.starts, 1);
  cr_assert_eq(fb_work.cause[fb_work.starts - 1], FY_EBULKHEADFULL);
  cr_assert_eq(a.done, 0);
  fy_ctx_advance(FX.ctx, 0);
  cr_assert_eq(a.done, 1);
  cr_assert_eq(a.status, 0);
  cr_assert_eq(a.result, &fallback_res);
  cr_assert_str_eq(a.detail.by_kind, "fallback");
  cr_assert_eq(a.detail.cause, FY_EBULKHEADFULL);
  cr_assert_eq(nfallback, 1);
  cr_assert_eq(fallback_calls[0], FY_EBULKHEADFULL);
  fy_bulkhead_release(bh);
  finish();
}

static fy_outcome_t refusals_pass(int status, void *ud) {
  (void)ud;
  if (fy_is_refusal(status))
    return FY_OUTCOME_IGNORE;
  return fy_classify_default(status, NULL);
}

Test(fallback, refusal_not_classified_as_failure_stays_synchronous) {
  fy_fallback_t *fb;
  fy_bulkhead_t *bh;
  fy_bulkhead_opts_t bo;
  fy_policy_t *layers[2];
  fy_pipeline_t *pl;
  req_t a = {0};
  setup();
  fb = make_fb(refusals_pass, NULL);
  fy_bulkhead_opts_init(&bo);
  bo.max_concurrent = 1;
  cr_assert_eq(fy_bulkhead_new(FX.ctx, &bo, &bh), 0);
  cr_assert_eq(fy_bulkhead_try_acquire(bh), 0);
  layers[0] = fy_fallback_policy(fb);
  layers[1] = fy_bulkhead_policy(bh);
  pl = make_pl(layers, 2);
  cr_assert_eq(start(&a, pl), FY_EBULKHEADFULL);
  cr_assert_str_eq(a.call.detail.by_kind, "bulkhead");
  cr_assert_eq(fb_work.starts, 0);
  fy_ctx_advance(FX.ctx, 0);
  cr_assert_eq(a.done, 0, "a refusal's callback never runs");
  fy_bulkhead_release(bh);
  finish();
}

Test(fallback, fallback_that_cannot_start_fails_with_both_errors) {
  fy_fallback_t *fb;
  fy_pipeline_t *pl;
  req_t a = {0};
  setup();
  fb = make_fb(NULL, NULL);
  pl = pl_of(fb);
  cr_assert_eq(start(&a, pl), 0);
  /* The fallback attempt needs a new block (the primary's is still alive),
   * and the allocator refuses it. */
  fa_fail_all(1);
  top_finish(&a.primary, UV_ECONNRESET);
  fa_fail_all(0);
  cr_assert_eq(fb_work.starts, 0);
  fy_ctx_advance(FX.ctx, 0);
  cr_assert_eq(a.done, 1);
  cr_assert_eq(a.status, FY_EFALLBACK);
  cr_assert_eq(a.detail.cause, UV_ECONNRESET);
  cr_assert_eq(a.detail.state, UV_ENOMEM);
  finish();
}

/* ======================================================================== *
 * Close and re-entrancy.
 * ======================================================================== */

static int closed_obj_ok;

static void on_fb_closed(void *obj, void *ud) {
  closed_obj_ok += obj == ud;
}

Test(fallback, close_with_calls_in_flight) {
  fy_fallback_t *fb;
  fy_pipeline_t *pl;
  req_t a = {0}, b = {0}, c = {0};
  setup();
  fb = make_fb(NULL, NULL);
  pl = pl_of(fb);
  cr_assert_eq(start(&a, pl), 0); /* primary running */
  cr_assert_eq(start(&b, pl), 0);
  top_finish(&b.primary, UV_EIO); /* fallback running */
  cr_assert_eq(fb_work.starts, 1);
  cr_assert_eq(fy_fallback_close(fb, on_fb_closed, fb), 0);
  cr_assert_eq(fy_fallback_close(fb, on_fb_closed, fb), FY_ECLOSED);
  cr_assert_eq(start(&c, pl), FY_ECLOSED);
  cr_assert_str_eq(c.call.detail.by_kind, "fallback");
  fy_ctx_advance(FX.ctx, 0);
  cr_assert_eq(a.done, 1);
  cr_assert_eq(b.done, 1);
  cr_assert_eq(a.status, UV_ECANCELED);
  cr_assert_eq(b.status, UV_ECANCELED);
  cr_assert_eq(a.primary.cancels, 1);
  cr_assert_eq(fb_work.cancels, 1);
  cr_assert_eq(fb_work.starts, 1, "the cancelled primary ran no fallback");
  cr_assert_eq(closed_obj_ok, 1, "close callback names the handle");
  finish();
}

static fy_pipeline_t *reent_pl;
static int reent_pl_closed;

static void on_pl_closed(void *obj, void *ud) {
  (void)obj;
  (void)ud;
  reent_pl_closed++;
}

static void close_pipeline_on_fallback(int primary, void *ud) {
  record_fallback(primary, ud);
  cr_assert_eq(fy_pipeline_close(reent_pl, on_pl_closed, NULL), 0);
}

Test(fallback, reentrancy_on_fallback_closes_the_pipeline) {
  fy_fallback_t *fb;
  req_t a = {0};
  setup();
  fb = make_fb(NULL, close_pipeline_on_fallback);
  reent_pl = pl_of(fb);
  cr_assert_eq(start(&a, reent_pl), 0);
  top_finish(&a.primary, UV_ECONNRESET);
  cr_assert_eq(nfallback, 1);
  fy_ctx_advance(FX.ctx, 0);
  cr_assert_eq(a.done, 1);
  cr_assert_eq(a.status, UV_ECANCELED);
  cr_assert_eq(fb_work.starts, 1);
  cr_assert_eq(fb_work.cancels, 1, "the fallback was cancelled");
  cr_assert_eq(reent_pl_closed, 1);
  finish();
}

static fy_fallback_t *reent_fb;

static void close_fallback_on_fallback(int primary, void *ud) {
  record_fallback(primary, ud);
  cr_assert_eq(fy_fallback_close(reent_fb, on_fb_closed, reent_fb), 0);
}

Test(fallback, reentrancy_on_fallback_closes_the_fallback) {
  req_t a = {0};
  fy_pipeline_t *pl;
  setup();
  reent_fb = make_fb(NULL, close_fallback_on_fallback);
  pl = pl_of(reent_fb);
  cr_assert_eq(start(&a, pl), 0);
  top_finish(&a.primary, UV_ECONNRESET);
  fy_ctx_advance(FX.ctx, 0);
  cr_assert_eq(a.done, 1);
  cr_assert_eq(a.status, UV_ECANCELED);
  cr_assert_eq(closed_obj_ok, 1);
  finish();
}

static fy_call_t *cancel_me;

static void cancel_call_on_fallback(int primary, void *ud) {
  record_fallback(primary, ud);
  cr_assert_eq(fy_call_cancel(cancel_me), 0);
}

Test(fallback, reentrancy_on_fallback_cancels_the_call) {
  fy_fallback_t *fb;
  fy_pipeline_t *pl;
  req_t a = {0};
  setup();
  fb = make_fb(NULL, cancel_call_on_fallback);
  pl = pl_of(fb);
  cancel_me = &a.call;
  cr_assert_eq(start(&a, pl), 0);
  top_finish(&a.primary, UV_ECONNRESET);
  fy_ctx_advance(FX.ctx, 0);
  cr_assert_eq(a.done, 1);
  cr_assert_eq(a.status, UV_ECANCELED);
  cr_assert_eq(fb_work.starts, 0, "the fallback never started");
  cr_assert_str_eq(a.detail.by_kind, "fallback");
  cr_assert_eq(a.detail.cause, UV_ECONNRESET);
  cr_assert_eq(a.detail.state, 0, "no fallback error: it never ran");
  finish();
}

/* on_fallback cancelling the call while the primary was refused at start,
 * that is, inside fy_call_start. */
Test(fallback, reentrancy_on_fallback_cancels_inside_call_start) {
  fy_fallback_t *fb;
  fy_bulkhead_t *bh;
  fy_bulkhead_opts_t bo;
  fy_policy_t *layers[2];
  fy_pipeline_t *pl;
  req_t a = {0};
  setup();
  fb = make_fb(NULL, cancel_call_on_fallback);
  fy_bulkhead_opts_init(&bo);
  bo.max_concurrent = 1;
  cr_assert_eq(fy_bulkhead_new(FX.ctx, &bo, &bh), 0);
  cr_assert_eq(fy_bulkhead_try_acquire(bh), 0);
  layers[0] = fy_fallback_policy(fb);
  layers[1] = fy_bulkhead_policy(bh);
  pl = make_pl(layers, 2);
  cancel_me = &a.call;
  cr_assert_eq(start(&a, pl), 0);
  cr_assert_eq(a.done, 0);
  fy_ctx_advance(FX.ctx, 0);
  cr_assert_eq(a.done, 1);
  cr_assert_eq(a.status, UV_ECANCELED);
  cr_assert_eq(fb_work.starts, 0);
  fy_bulkhead_release(bh);
  finish();
}

/* A listener on the fallback event calls back into the library. */
static fy_fallback_t *listen_fb;

static void listener_calls_back(fy_ctx_t *c, const fy_event_t *ev, void *ud) {
  (void)c;
  (void)ud;
  evrec_cb(c, ev, &E);
  cr_assert_eq(fy_policy_active(fy_fallback_policy(listen_fb)), 1);
  cr_assert_eq(ev->call->detail.cause, ev->status,
               "the verdict is written before the event");
}

Test(fallback, reentrancy_listener_reads_state) {
  fy_pipeline_t *pl;
  fy_listener_t *l;
  req_t a = {0};
  setup();
  listen_fb = make_fb(NULL, NULL);
  pl = pl_of(listen_fb);
  cr_assert_eq(fy_ctx_listen(FX.ctx, FY_EV_MASK(FY_EV_FALLBACK),
                             listener_calls_back, NULL, &l),
               0);
  cr_assert_eq(start(&a, pl), 0);
  top_finish(&a.primary, UV_EPIPE);
  cr_assert_eq(E.n, 1);
  top_finish(&fb_work, 0);
  fy_ctx_advance(FX.ctx, 0);
  cr_assert_eq(a.status, 0);
  finish();
}

Test(fallback, ctx_close_with_calls_pending) {
  fy_fallback_t *fb;
  fy_pipeline_t *pl;
  req_t a = {0}, b = {0};
  setup();
  fb = make_fb(NULL, NULL);
  pl = pl_of(fb);
  cr_assert_eq(start(&a, pl), 0);
  cr_assert_eq(start(&b, pl), 0);
  top_finish(&b.primary, UV_EIO);
  finish();
  cr_assert_eq(a.done, 1);
  cr_assert_eq(b.done, 1);
  cr_assert_eq(a.status, UV_ECANCELED);
  cr_assert_eq(b.status, UV_ECANCELED);
  cr_assert_eq(fb_work.cancels, 1);
}
