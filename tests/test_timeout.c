/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * Timeout: the policy on a manual-clock context (the pure state machine's
 * tests are in test_timeout_sm.c): expiry cancels and completes on time,
 * late results are freed, the deadline reaches the operation, the per-call
 * override, total outside and per-try inside retry, parent deadline vs own
 * (W28), streaming limits (W29, W31), cancel, close, re-entrancy, bad
 * options, standalone watches. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include <fortify.h>

#include "fixture.h"

#define T0 1000u /* manual clock start */

/* ---- fixture: support/fixture.h's fx_t, on a manual clock at T0 -------- */

/* fx_finish(), and every counted result made was freed, once. */
static void finish(fx_t *fx) {
  fx_finish(fx);
  cr_assert_eq(tres_created(), tres_destroyed(),
               "results leaked: %u made %u freed", tres_created(),
               tres_destroyed());
  cr_assert_eq(tres_errors(), 0);
}

static uint64_t now_ms(fx_t *fx) { return fy_ctx_now(fx->ctx); }

static size_t live_frames(fx_t *fx) {
  fy_ctx_stats_t s;
  fy_ctx_stats(fx->ctx, &s);
  return s.frames;
}

/* ---- the operation: a top_t (support/probe.h) ------------------------- */

/* Every attempt reports |outcome| |latency| ms after its start
 * (FY_TIME_NEVER: never by itself); successes carry a counted result when
 * with_results is TOP_RESULTS_OK.  Cancelled synchronously through
 * top_op_cancel_sync, not at all through top_op_nocancel. */
static const fy_op_t *const svc_op = &top_op_cancel_sync;

static void svc_init(top_t *svc, uint64_t latency, int outcome) {
  memset(svc, 0, sizeof(*svc));
  top_script_after(svc, latency, outcome);
}

/* ---- calls ------------------------------------------------------------- */

typedef struct rec_s {
  fy_call_t call;
  fy_ctx_t *ctx;
  int done;
  int status;
  uint64_t at;
  int took_result;
  fy_detail_t detail;
} rec_t;

static void on_done(fy_call_t *call, int status) {
  rec_t *r = fy_container_of(call, rec_t, call);
  fy_result_dtor dtor = NULL;
  void *res;
  r->done++;
  r->status = status;
  r->at = fy_ctx_now(r->ctx);
  r->detail = call->detail;
  res = fy_call_take_result(call, &dtor);
  if (res != NULL) {
    r->took_result++;
    dtor(res);
  }
}

static int start_call(rec_t *r, fx_t *fx, fy_pipeline_t *pl, const fy_op_t *op,
                      top_t *svc, uint64_t override_ms) {
  fy_call_opts_t o;
  memset(r, 0, sizeof(*r));
  r->ctx = fx->ctx;
  memset(&o, 0, sizeof(o));
  o.timeout_ms = override_ms;
  return fy_call_start_opts(&r->call, pl, op, svc, &o, on_done);
}

/* ---- timeouts and pipelines -------------------------------------------- */

typedef struct cbrec_s {
  int calls;
  fy_timeout_t *timeout;
  fy_call_t *call;
  fy_timeout_stage_t stage;
  uint64_t elapsed, limit, at;
  fy_ctx_t *ctx;
  /* re-entrancy */
  fy_pipeline_t *close_pipeline;
  fx_t *close_ctx;
  int close_self;
  int close_rc;
} cbrec_t;

static int pl_closed, tm_closed;
static void *tm_closed_obj;

static void on_pl_closed(void *obj, void *ud) {
  (void)obj;
  (void)ud;
  pl_closed++;
}

static void on_tm_closed(void *obj, void *ud) {
  (void)ud;
  tm_closed++;
  tm_closed_obj = obj;
}

static void on_timeout_cb(fy_timeout_t *t, fy_call_t *call,
                          fy_timeout_stage_t stage, uint64_t elapsed,
                          uint64_t limit, void *user_data) {
  cbrec_t *cb = user_data;
  cb->calls++;
  cb->timeout = t;
  cb->call = call;
  cb->stage = stage;
  cb->elapsed = elapsed;
  cb->limit = limit;
  cb->at = fy_ctx_now(cb->ctx);
  if (cb->close_pipeline != NULL)
    cb->close_rc = fy_pipeline_close(cb->close_pipeline, on_pl_closed, NULL);
  if (cb->close_ctx != NULL)
    cr_assert_eq(fx_close(cb->close_ctx), 0);
  if (cb->close_self)
    cb->close_rc = fy_timeout_close(t, on_tm_closed, NULL);
}

static fy_timeout_t *mk_timeout(fx_t *fx, uint64_t total, uint64_t fb,
                                uint64_t idle, fy_timeout_scope_t scope,
                                const char *name, cbrec_t *cb) {
  fy_timeout_opts_t o;
  fy_timeout_t *t = NULL;
  fy_timeout_opts_init(&o);
  o.timeout_ms = total;
  o.first_byte_ms = fb;
  o.idle_ms = idle;
  o.scope = scope;
  o.name = name;
  if (cb != NULL) {
    cb->ctx = fx->ctx;
    o.on_timeout = on_timeout_cb;
    o.user_data = cb;
  }
  cr_assert_eq(fy_timeout_new(fx->ctx, &o, &t), 0);
  cr_assert_not_null(t);
  return t;
}

static fy_pipeline_t *mk_pipeline(fx_t *fx, fy_policy_t **ps, size_t n) {
  fy_pipeline_t *pl = NULL;
  cr_assert_eq(fy_pipeline_new(fx->ctx, ps, n, &pl), 0);
  return pl;
}

static fy_pipeline_t *mk_pipeline1(fx_t *fx, fy_timeout_t *t) {
  fy_policy_t *p = fy_timeout_policy(t);
  return mk_pipeline(fx, &p, 1);
}

/* ---- events ------------------------------------------------------------ */

#define MAX_EV 16

/* The FY_EV_TIMEOUT events, in an evrec_t (support/evrec.h). */
typedef evrec_t evlog_t;

/* Re-entrancy: start a call through |pl| on the first event. */
typedef struct reenter_s {
  fy_pipeline_t *pl;
  rec_t *rec;
  top_t *svc;
  fx_t *fx;
  int rc;
} reenter_t;

static void on_event(evrec_t *log, const fy_event_t *ev) {
  reenter_t *re = log->data;
  cr_assert_eq(ev->type, FY_EV_TIMEOUT);
  cr_assert_leq(log->n, MAX_EV);
  cr_assert_str_eq(ev->policy_kind, "timeout");
  if (re != NULL && log->n == 1)
    re->rc = start_call(re->rec, re->fx, re->pl, svc_op, re->svc, 0);
}

static void listen_timeouts(fx_t *fx, evlog_t *log) {
  evrec_listen(log, fx->ctx, FY_EV_MASK(FY_EV_TIMEOUT));
  log->hook = on_event;
}

/* ---- small test policies ----------------------------------------------- */

/* Retry-like: spawns again on UV_ETIMEDOUT, up to |max| attempts. */
typedef struct tretry_s {
  unsigned max;
} tretry_t;

typedef struct tretry_frame_s {
  unsigned n;
} tretry_frame_t;

static int tretry_start(fy_policy_t *p, fy_frame_t *f) {
  tretry_frame_t *rf = fy_frame_state(f);
  (void)p;
  rf->n = 1;
  return fy_frame_spawn(f, NULL);
}

static void tretry_child_done(fy_policy_t *p, fy_frame_t *f,
                              fy_frame_t *child, int status) {
  tretry_t *cfg = fy_policy_impl(p);
  tretry_frame_t *rf = fy_frame_state(f);
  int rc;
  if (status == UV_ETIMEDOUT && rf->n < cfg->max && !fy_frame_is_cancelled(f)) {
    rf->n++;
    rc = fy_frame_spawn(f, NULL);
    if (rc < 0)
      fy_frame_done(f, rc);
    return;
  }
  fy_frame_adopt_result(f, child);
  fy_frame_done(f, status);
}

static const fy_policy_vtable_t tretry_vt = {
    .kind = "test-retry",
    .frame_size = sizeof(tretry_frame_t),
    .start = tretry_start,
    .child_done = tretry_child_done,
};

static fy_policy_t *mk_tretry(fx_t *fx, unsigned max) {
  fy_policy_t *p;
  cr_assert_eq(fy_policy_new(fx->ctx, &tretry_vt, sizeof(tretry_t), "retry",
                             &p),
               0);
  ((tretry_t *)fy_policy_impl(p))->max = max;
  return p;
}

/* Sets a deadline for the layers below without any timer of its own (a
 * budget handed down by an outer layer). */
typedef struct tdeadline_s {
  uint64_t budget;
} tdeadline_t;

static int tdeadline_start(fy_policy_t *p, fy_frame_t *f) {
  tdeadline_t *cfg = fy_policy_impl(p);
  fy_frame_set_deadline(f, fy_ctx_now(fy_frame_ctx(f)) + cfg->budget);
  return fy_frame_spawn(f, NULL);
}

static const fy_policy_vtable_t tdeadline_vt = {
    .kind = "test-deadline",
    .start = tdeadline_start,
    .child_done = probe_pass_child_done,
};

static fy_policy_t *mk_tdeadline(fx_t *fx, uint64_t budget) {
  fy_policy_t *p;
  cr_assert_eq(fy_policy_new(fx->ctx, &tdeadline_vt, sizeof(tdeadline_t),
                             "budget", &p),
               0);
  ((tdeadline_t *)fy_policy_impl(p))->budget = budget;
  return p;
}

/* Refuses at start with a configured code. */
static int trefuse_start(fy_policy_t *p, fy_frame_t *f) {
  (void)f;
  return *(int *)fy_policy_impl(p);
}

static const fy_policy_vtable_t trefuse_vt = {
    .kind = "test-refuse",
    .start = trefuse_start,
    .child_done = probe_pass_child_done,
};

/* =========================================================================
 * Options and names.
 * ====================================================================== */

TestSuite(timeout);

Test(timeout, opts_check_rejects_every_bad_value) {
  fy_timeout_opts_t o;
  fy_timeout_opts_init(&o);
  cr_assert_eq(fy_timeout_opts_check(&o), 0);
  cr_assert_eq(fy_timeout_opts_check(NULL), UV_EINVAL);
  o.timeout_ms = FY_TIMEOUT_MAX_MS;
  cr_assert_eq(fy_timeout_opts_check(&o), 0);
  o.timeout_ms = FY_TIMEOUT_MAX_MS + 1;
  cr_assert_eq(fy_timeout_opts_check(&o), UV_EINVAL);
  o.timeout_ms = UINT64_MAX; /* a negative value cast to unsigned */
  cr_assert_eq(fy_timeout_opts_check(&o), UV_EINVAL);
  fy_timeout_opts_init(&o);
  o.first_byte_ms = (uint64_t)-30;
  cr_assert_eq(fy_timeout_opts_check(&o), UV_EINVAL);
  fy_timeout_opts_init(&o);
  o.idle_ms = FY_TIMEOUT_MAX_MS + 1;
  cr_assert_eq(fy_timeout_opts_check(&o), UV_EINVAL);
  fy_timeout_opts_init(&o);
  o.timeout_ms = 0; /* nothing could fire */
  cr_assert_eq(fy_timeout_opts_check(&o), UV_EINVAL);
  o.idle_ms = 5; /* a streaming limit alone is a timeout */
  cr_assert_eq(fy_timeout_opts_check(&o), 0);
  o.scope = (fy_timeout_scope_t)2;
  cr_assert_eq(fy_timeout_opts_check(&o), UV_EINVAL);
}

Test(timeout, opts_init_fills_the_documented_defaults) {
  fy_timeout_opts_t o;
  memset(&o, 0xab, sizeof(o));
  fy_timeout_opts_init(&o);
  cr_assert_eq(o.timeout_ms, 30000);
  cr_assert_eq(o.first_byte_ms, 0);
  cr_assert_eq(o.idle_ms, 0);
  cr_assert_eq(o.scope, FY_TIMEOUT_TOTAL);
  cr_assert_null(o.on_timeout);
  cr_assert_null(o.user_data);
  cr_assert_null(o.name);
  fy_timeout_opts_init(NULL); /* harmless */
}

Test(timeout, stage_names) {
  cr_assert_str_eq(fy_timeout_stage_name(FY_TIMEOUT_STAGE_NONE), "none");
  cr_assert_str_eq(fy_timeout_stage_name(FY_TIMEOUT_STAGE_TOTAL), "total");
  cr_assert_str_eq(fy_timeout_stage_name(FY_TIMEOUT_STAGE_FIRST_BYTE),
                   "first_byte");
  cr_assert_str_eq(fy_timeout_stage_name(FY_TIMEOUT_STAGE_IDLE), "idle");
  cr_assert_str_eq(fy_timeout_stage_name(FY_TIMEOUT_STAGE_DEADLINE),
                   "deadline");
  cr_assert_str_eq(fy_timeout_stage_name((fy_timeout_stage_t)99), "unknown");
}

/* =========================================================================
 * Options.
 * ====================================================================== */

static void expect_rejected(fx_t *fx, const fy_timeout_opts_t *o) {
  fy_timeout_t *t = (fy_timeout_t *)&t; /* not NULL: must be cleared */
  long before = FA.live;
  fy_ctx_stats_t s;
  cr_assert_eq(fy_timeout_opts_check(o), UV_EINVAL);
  cr_assert_eq(fy_timeout_new(fx->ctx, o, &t), UV_EINVAL);
  cr_assert_null(t);
  cr_assert_eq(FA.live, before, "something was allocated");
  fy_ctx_stats(fx->ctx, &s);
  cr_assert_eq(s.frames, 0);
}

Test(timeout, bad_options_are_rejected_and_nothing_is_created) {
  fx_t fx;
  fy_timeout_opts_t o;
  fy_timeout_t *t = NULL;
  long before;

  fa_install(-1);
  fx_init(&fx, T0);

  fy_timeout_opts_init(&o);
  o.timeout_ms = FY_TIMEOUT_MAX_MS + 1;
  expect_rejected(&fx, &o);
  o.timeout_ms = (uint64_t)-1; /* -1 through an unsigned field */
  expect_rejected(&fx, &o);

  fy_timeout_opts_init(&o);
  o.first_byte_ms = FY_TIMEOUT_MAX_MS + 1;
  expect_rejected(&fx, &o);

  fy_timeout_opts_init(&o);
  o.idle_ms = UINT64_MAX;
  expect_rejected(&fx, &o);

  fy_timeout_opts_init(&o); /* no limit at all */
  o.timeout_ms = 0;
  expect_rejected(&fx, &o);

  fy_timeout_opts_init(&o);
  o.scope = (fy_timeout_scope_t)2;
  expect_rejected(&fx, &o);
  o.scope = (fy_timeout_scope_t)-1;
  expect_rejected(&fx, &o);

  /* NULL arguments. */
  fy_timeout_opts_init(&o);
  cr_assert_eq(fy_timeout_new(NULL, &o, &t), UV_EINVAL);
  cr_assert_null(t);
  cr_assert_eq(fy_timeout_new(fx.ctx, &o, NULL), UV_EINVAL);

  /* The limits themselves are accepted. */
  o.timeout_ms = FY_TIMEOUT_MAX_MS;
  o.first_byte_ms = FY_TIMEOUT_MAX_MS;
  o.idle_ms = FY_TIMEOUT_MAX_MS;
  o.scope = FY_TIMEOUT_PER_TRY;
  before = FA.live;
  cr_assert_eq(fy_timeout_new(fx.ctx, &o, &t), 0);
  cr_assert_not_null(t);
  cr_assert_gt(FA.live, before);
  /* opts NULL: the defaults. */
  cr_assert_eq(fy_timeout_new(fx.ctx, NULL, &t), 0);
  cr_assert_str_eq(fy_policy_kind(fy_timeout_policy(t)), "timeout");
  cr_assert_null(fy_timeout_policy(NULL));
  cr_assert_eq(fy_timeout_close(NULL, NULL, NULL), 0);

  finish(&fx);
  cr_assert_eq(FA.live, 0, "blocks still allocated: %ld", FA.live);
}

Test(timeout, new_on_a_closing_context_is_refused) {
  fx_t fx;
  fy_timeout_t *t = NULL;
  fx_init(&fx, T0);
  cr_assert_eq(fx_close(&fx), 0);
  cr_assert_eq(fy_timeout_new(fx.ctx, NULL, &t), FY_ECLOSED);
  cr_assert_null(t);
  finish(&fx);
}

Test(timeout, defaults_time_out_after_thirty_seconds) {
  fx_t fx;
  top_t svc;
  rec_t r;
  fy_timeout_t *t = NULL;
  fy_pipeline_t *pl;
  fx_init(&fx, T0);
  cr_assert_eq(fy_timeout_new(fx.ctx, NULL, &t), 0);
  pl = mk_pipeline1(&fx, t);
  svc_init(&svc, FY_TIME_NEVER, 0);
  cr_assert_eq(start_call(&r, &fx, pl, svc_op, &svc, 0), 0);
  cr_assert_eq(svc.deadline[0], T0 + 30000);
  fx_advance(&fx, 29999);
  cr_assert_eq(r.done, 0);
  fx_advance(&fx, 1);
  cr_assert_eq(r.done, 1);
  cr_assert_eq(r.status, UV_ETIMEDOUT);
  finish(&fx);
}

/* =========================================================================
 * Expiry.
 * ====================================================================== */

Test(timeout, expiry_cancels_the_operation_and_completes_on_time) {
  fx_t fx;
  top_t svc;
  rec_t r;
  cbrec_t cb = {0};
  evlog_t log;
  fy_timeout_t *t;
  fy_pipeline_t *pl;

  fx_init(&fx, T0);
  listen_timeouts(&fx, &log);
  t = mk_timeout(&fx, 100, 0, 0, FY_TIMEOUT_TOTAL, "t100", &cb);
  pl = mk_pipeline1(&fx, t);
  svc_init(&svc, FY_TIME_NEVER, 0);
  cr_assert_eq(start_call(&r, &fx, pl, svc_op, &svc, 0), 0);
  cr_assert_eq(svc.starts, 1);
  fx_advance(&fx, 99);
  cr_assert_eq(r.done, 0);
  cr_assert_eq(svc.cancels, 0);
  fx_advance(&fx, 1);
  cr_assert_eq(r.done, 1);
  cr_assert_eq(r.status, UV_ETIMEDOUT);
  cr_assert_eq(r.at, T0 + 100);
  cr_assert_eq(svc.cancels, 1, "the cancel hook ran");
  cr_assert_eq(svc.reports, 1);
  /* Detail. */
  cr_assert_str_eq(r.detail.by_kind, "timeout");
  cr_assert_str_eq(r.detail.by_name, "t100");
  cr_assert_eq(r.detail.state, FY_TIMEOUT_STAGE_TOTAL);
  cr_assert_eq(r.detail.n[0], 100);
  cr_assert_eq(r.detail.n[1], 100);
  cr_assert_eq(r.detail.attempts, 1);
  /* on_timeout got its arguments (W27). */
  cr_assert_eq(cb.calls, 1);
  cr_assert_eq(cb.timeout, t);
  cr_assert_eq(cb.call, &r.call);
  cr_assert_eq(cb.stage, FY_TIMEOUT_STAGE_TOTAL);
  cr_assert_eq(cb.elapsed, 100);
  cr_assert_eq(cb.limit, 100);
  cr_assert_eq(cb.at, T0 + 100);
  /* The event. */
  cr_assert_eq(log.n, 1);
  cr_assert_eq(log.ev[0].value, FY_TIMEOUT_STAGE_TOTAL);
  cr_assert_eq(log.ev[0].status, UV_ETIMEDOUT);
  cr_assert_eq(log.ev[0].delay_ms, 100);
  cr_assert_eq(log.ev[0].latency_ns / 1000000u, 100);
  cr_assert_eq(log.ev[0].time_ms, T0 + 100);
  cr_assert_eq(log.ev[0].call, &r.call);
  cr_assert_str_eq(log.name[0], "t100");
  /* Nothing left behind. */
  cr_assert_eq(live_frames(&fx), 0);
  cr_assert_eq(fy_ctx_pending_deadlines(fx.ctx), 0);
  finish(&fx);
}

Test(timeout, w26_uncooperative_operation_still_completes_on_time) {
  fx_t fx;
  top_t svc;
  rec_t r;
  fy_timeout_t *t;
  fy_pipeline_t *pl;

  fx_init(&fx, T0);
  t = mk_timeout(&fx, 100, 0, 0, FY_TIMEOUT_TOTAL, NULL, NULL);
  pl = mk_pipeline1(&fx, t);
  /* No cancel hook; succeeds with a result much later. */
  svc_init(&svc, 1000, 0);
  svc.with_results = TOP_RESULTS_OK;
  cr_assert_eq(start_call(&r, &fx, pl, &top_op_nocancel, &svc, 0), 0);
  fx_advance(&fx, 100);
  cr_assert_eq(r.done, 1);
  cr_assert_eq(r.status, UV_ETIMEDOUT);
  cr_assert_eq(r.at, T0 + 100);
  cr_assert_eq(live_frames(&fx), 1, "the abandoned attempt is still alive");
  /* The late success never replaces the timeout; its result is freed. */
  fx_advance(&fx, 900);
  cr_assert_eq(svc.reports, 1);
  cr_assert_eq(r.done, 1);
  cr_assert_eq(r.status, UV_ETIMEDOUT);
  cr_assert_eq(r.took_result, 0);
  cr_assert_eq(tres_created(), 1);
  cr_assert_eq(tres_destroyed(), 1);
  cr_assert_eq(r.call.detail.state, FY_TIMEOUT_STAGE_TOTAL,
               "a late outcome does not touch the detail");
  cr_assert_eq(live_frames(&fx), 0);
  finish(&fx);
}

Test(timeout, late_success_after_an_asynchronous_cancel_is_destroyed) {
  fx_t fx;
  top_t svc;
  rec_t r;
  fy_timeout_t *t;
  fy_pipeline_t *pl;

  fx_init(&fx, T0);
  t = mk_timeout(&fx, 100, 0, 0, FY_TIMEOUT_TOTAL, NULL, NULL);
  pl = mk_pipeline1(&fx, t);
  /* The cancel hook only takes note; the operation then succeeds 50 ms
   * later with a result anyway. */
  svc_init(&svc, FY_TIME_NEVER, 0);
  svc.cancel_after_ms = 50;
  svc.with_results = TOP_RESULTS_OK;
  cr_assert_eq(start_call(&r, &fx, pl, &top_op_cancel_later, &svc, 0), 0);
  fx_advance(&fx, 100);
  cr_assert_eq(r.done, 1);
  cr_assert_eq(r.status, UV_ETIMEDOUT);
  cr_assert_eq(svc.cancels, 1);
  cr_assert_eq(svc.reports, 0);
  fx_advance(&fx, 50);
  cr_assert_eq(svc.reports, 1);
  cr_assert_eq(r.done, 1);
  cr_assert_eq(tres_created(), 1);
  cr_assert_eq(tres_destroyed(), 1);
  cr_assert_eq(live_frames(&fx), 0);
  finish(&fx);
}

Test(timeout, success_before_expiry_disarms) {
  fx_t fx;
  top_t svc;
  rec_t r;
  cbrec_t cb = {0};
  evlog_t log;
  fy_timeout_t *t;
  fy_pipeline_t *pl;

  fx_init(&fx, T0);
  listen_timeouts(&fx, &log);
  t = mk_timeout(&fx, 100, 0, 0, FY_TIMEOUT_TOTAL, NULL, &cb);
  pl = mk_pipeline1(&fx, t);
  svc_init(&svc, 50, 0);
  svc.with_results = TOP_RESULTS_OK;
  cr_assert_eq(start_call(&r, &fx, pl, svc_op, &svc, 0), 0);
  cr_assert_eq(fy_ctx_pending_deadlines(fx.ctx), 2);
  fx_advance(&fx, 50);
  cr_assert_eq(r.done, 1);
  cr_assert_eq(r.status, 0);
  cr_assert_eq(r.took_result, 1, "the result reached the caller");
  cr_assert_null(r.detail.by_kind);
  cr_assert_eq(fy_ctx_pending_deadlines(fx.ctx), 0, "the timer is disarmed");
  fx_advance(&fx, 1000);
  cr_assert_eq(r.done, 1);
  cr_assert_eq(cb.calls, 0);
  cr_assert_eq(log.n, 0);
  cr_assert_eq(svc.cancels, 0);
  finish(&fx);
}

Test(timeout, failure_before_expiry_passes_through) {
  fx_t fx;
  top_t svc;
  rec_t r;
  fy_timeout_t *t;
  fy_pipeline_t *pl;

  fx_init(&fx, T0);
  t = mk_timeout(&fx, 100, 0, 0, FY_TIMEOUT_TOTAL, NULL, NULL);
  pl = mk_pipeline1(&fx, t);
  svc_init(&svc, 10, UV_ECONNRESET);
  cr_assert_eq(start_call(&r, &fx, pl, svc_op, &svc, 0), 0);
  fx_advance(&fx, 10);
  cr_assert_eq(r.done, 1);
  cr_assert_eq(r.status, UV_ECONNRESET);
  cr_assert_null(r.detail.by_kind);
  cr_assert_eq(fy_ctx_pending_deadlines(fx.ctx), 0);
  finish(&fx);
}

Test(timeout, synchronous_outcome_inside_start_is_delivered_later) {
  fx_t fx;
  top_t svc;
  rec_t r;
  fy_timeout_t *t;
  fy_pipeline_t *pl;

  fx_init(&fx, T0);
  t = mk_timeout(&fx, 100, 0, 0, FY_TIMEOUT_TOTAL, NULL, NULL);
  pl = mk_pipeline1(&fx, t);
  svc_init(&svc, 0, 0); /* reports at once (0 ms deadline) */
  cr_assert_eq(start_call(&r, &fx, pl, svc_op, &svc, 0), 0);
  cr_assert_eq(r.done, 0);
  fx_advance(&fx, 0);
  cr_assert_eq(r.done, 1);
  cr_assert_eq(r.status, 0);
  finish(&fx);
}

/* =========================================================================
 * Deadline visibility and the per-call override.
 * ====================================================================== */

Test(timeout, deadline_is_visible_to_the_operation) {
  fx_t fx;
  top_t svc;
  rec_t r;
  fy_timeout_t *t, *outer;
  fy_pipeline_t *pl;
  fy_policy_t *ps[2];

  fx_init(&fx, T0);
  t = mk_timeout(&fx, 100, 0, 0, FY_TIMEOUT_TOTAL, NULL, NULL);
  pl = mk_pipeline1(&fx, t);
  svc_init(&svc, 10, 0);
  cr_assert_eq(start_call(&r, &fx, pl, svc_op, &svc, 0), 0);
  cr_assert_eq(svc.deadline[0], T0 + 100);
  cr_assert_eq(svc.remaining[0], 100);
  fx_advance(&fx, 10);
  cr_assert_eq(r.status, 0);

  /* Nested: the tighter deadline wins, whichever layer sets it. */
  outer = mk_timeout(&fx, 80, 0, 0, FY_TIMEOUT_TOTAL, NULL, NULL);
  ps[0] = fy_timeout_policy(outer);
  ps[1] = fy_timeout_policy(t);
  pl = mk_pipeline(&fx, ps, 2);
  svc_init(&svc, 10, 0);
  cr_assert_eq(start_call(&r, &fx, pl, svc_op, &svc, 0), 0);
  cr_assert_eq(svc.deadline[0], now_ms(&fx) + 80);
  cr_assert_eq(svc.remaining[0], 80);
  fx_advance(&fx, 10);

  /* Streaming limits alone set no deadline: they are not known ahead. */
  t = mk_timeout(&fx, 0, 50, 30, FY_TIMEOUT_TOTAL, NULL, NULL);
  pl = mk_pipeline1(&fx, t);
  svc_init(&svc, 10, 0);
  cr_assert_eq(start_call(&r, &fx, pl, svc_op, &svc, 0), 0);
  cr_assert_eq(svc.deadline[0], FY_TIME_NEVER);
  cr_assert_eq(svc.remaining[0], FY_TIME_NEVER);
  fx_advance(&fx, 10);
  cr_assert_eq(r.status, 0);
  finish(&fx);
}

Test(timeout, per_call_override_replaces_the_total_limit) {
  fx_t fx;
  top_t svc;
  rec_t r;
  fy_timeout_t *t;
  fy_pipeline_t *pl;

  fx_init(&fx, T0);
  t = mk_timeout(&fx, 100, 0, 0, FY_TIMEOUT_TOTAL, NULL, NULL);
  pl = mk_pipeline1(&fx, t);
  svc_init(&svc, FY_TIME_NEVER, 0);
  cr_assert_eq(start_call(&r, &fx, pl, svc_op, &svc, 40), 0);
  cr_assert_eq(svc.deadline[0], T0 + 40);
  fx_advance(&fx, 39);
  cr_assert_eq(r.done, 0);
  fx_advance(&fx, 1);
  cr_assert_eq(r.done, 1);
  cr_assert_eq(r.status, UV_ETIMEDOUT);
  cr_assert_eq(r.detail.n[0], 40);
  /* Longer than the default works too; 0 means the default. */
  cr_assert_eq(start_call(&r, &fx, pl, svc_op, &svc, 250), 0);
  fx_advance(&fx, 249);
  cr_assert_eq(r.done, 0);
  fx_advance(&fx, 1);
  cr_assert_eq(r.status, UV_ETIMEDOUT);
  cr_assert_eq(start_call(&r, &fx, pl, svc_op, &svc, 0), 0);
  fx_advance(&fx, 100);
  cr_assert_eq(r.done, 1);
  cr_assert_eq(r.detail.n[0], 100);
  finish(&fx);
}

Test(timeout, per_call_override_does_not_apply_per_try) {
  fx_t fx;
  top_t svc;
  rec_t r;
  fy_timeout_t *t;
  fy_pipeline_t *pl;

  fx_init(&fx, T0);
  t = mk_timeout(&fx, 100, 0, 0, FY_TIMEOUT_PER_TRY, NULL, NULL);
  pl = mk_pipeline1(&fx, t);
  svc_init(&svc, FY_TIME_NEVER, 0);
  cr_assert_eq(start_call(&r, &fx, pl, svc_op, &svc, 40), 0);
  cr_assert_eq(svc.deadline[0], T0 + 100);
  fx_advance(&fx, 40);
  cr_assert_eq(r.done, 0);
  fx_advance(&fx, 60);
  cr_assert_eq(r.done, 1);
  cr_assert_eq(r.status, UV_ETIMEDOUT);
  cr_assert_eq(r.detail.n[0], 100);
  /* An absurd override is ignored here too, since it does not apply. */
  cr_assert_eq(start_call(&r, &fx, pl, svc_op, &svc, UINT64_MAX), 0);
  fx_advance(&fx, 100);
  cr_assert_eq(r.status, UV_ETIMEDOUT);
  finish(&fx);
}

Test(timeout, absurd_per_call_override_is_refused_synchronously) {
  fx_t fx;
  top_t svc;
  rec_t r;
  fy_timeout_t *t;
  fy_pipeline_t *pl;

  fx_init(&fx, T0);
  t = mk_timeout(&fx, 100, 0, 0, FY_TIMEOUT_TOTAL, NULL, NULL);
  pl = mk_pipeline1(&fx, t);
  svc_init(&svc, FY_TIME_NEVER, 0);
  cr_assert_eq(start_call(&r, &fx, pl, svc_op, &svc, FY_TIMEOUT_MAX_MS + 1),
               UV_EINVAL);
  cr_assert_str_eq(r.call.detail.by_kind, "timeout");
  cr_assert_eq(r.call.detail.cause, UV_EINVAL);
  cr_assert_eq(svc.starts, 0);
  fx_advance(&fx, 1000);
  cr_assert_eq(r.done, 0, "the callback never runs after a refusal");
  cr_assert_eq(live_frames(&fx), 0);
  cr_assert_eq(fy_ctx_pending_deadlines(fx.ctx), 0);
  finish(&fx);
}

/* =========================================================================
 * Total outside retry, per-try inside.
 * ====================================================================== */

Test(timeout, total_outside_and_per_try_inside_retry) {
  fx_t fx;
  top_t svc;
  rec_t r;
  cbrec_t cb_total = {0}, cb_try = {0};
  evlog_t log;
  fy_timeout_t *total, *per_try;
  fy_pipeline_t *pl;
  fy_policy_t *ps[3];

  fx_init(&fx, T0);
  listen_timeouts(&fx, &log);
  total = mk_timeout(&fx, 250, 0, 0, FY_TIMEOUT_TOTAL, "total", &cb_total);
  per_try = mk_timeout(&fx, 100, 0, 0, FY_TIMEOUT_PER_TRY, "try", &cb_try);
  ps[0] = fy_timeout_policy(total);
  ps[1] = mk_tretry(&fx, 10);
  ps[2] = fy_timeout_policy(per_try);
  pl = mk_pipeline(&fx, ps, 3);
  svc_init(&svc, FY_TIME_NEVER, 0);
  cr_assert_eq(start_call(&r, &fx, pl, svc_op, &svc, 0), 0);

  fx_advance(&fx, 100); /* per-try fires, the retry spawns again */
  cr_assert_eq(r.done, 0);
  cr_assert_eq(svc.starts, 2);
  cr_assert_eq(cb_try.calls, 1);
  cr_assert_eq(cb_try.call, &r.call);
  fx_advance(&fx, 100);
  cr_assert_eq(svc.starts, 3);
  cr_assert_eq(cb_try.calls, 2);
  /* Each attempt sees the tighter of its own and the total deadline. */
  cr_assert_eq(svc.deadline[0], T0 + 100);
  cr_assert_eq(svc.deadline[1], T0 + 200);
  cr_assert_eq(svc.deadline[2], T0 + 250);
  cr_assert_eq(svc.remaining[2], 50);
  fx_advance(&fx, 50); /* total fires */
  cr_assert_eq(r.done, 1);
  cr_assert_eq(r.status, UV_ETIMEDOUT);
  cr_assert_eq(r.at, T0 + 250);
  cr_assert_str_eq(r.detail.by_name, "total");
  cr_assert_eq(r.detail.state, FY_TIMEOUT_STAGE_TOTAL);
  cr_assert_eq(r.detail.n[0], 250);
  cr_assert_eq(r.detail.n[1], 250);
  cr_assert_eq(r.detail.attempts, 3);
  cr_assert_eq(svc.cancels, 3);
  cr_assert_eq(cb_total.calls, 1);
  cr_assert_eq(cb_try.calls, 2, "the inner one never reports the total");
  cr_assert_eq(log.n, 3);
  cr_assert_str_eq(log.name[0], "try");
  cr_assert_str_eq(log.name[1], "try");
  cr_assert_str_eq(log.name[2], "total");
  cr_assert_eq(log.ev[2].time_ms, T0 + 250);
  cr_assert_eq(log.ev[0].attempt, 0);
  cr_assert_eq(log.ev[1].attempt, 1);
  cr_assert_eq(log.ev[2].attempt, 2);
  cr_assert_eq(live_frames(&fx), 0);
  finish(&fx);
}

Test(timeout, per_try_expiry_then_a_retry_that_succeeds) {
  fx_t fx;
  top_t svc;
  rec_t r;
  fy_timeout_t *total, *per_try;
  fy_pipeline_t *pl;
  fy_policy_t *ps[3];

  fx_init(&fx, T0);
  total = mk_timeout(&fx, 1000, 0, 0, FY_TIMEOUT_TOTAL, "total", NULL);
  per_try = mk_timeout(&fx, 100, 0, 0, FY_TIMEOUT_PER_TRY, "try", NULL);
  ps[0] = fy_timeout_policy(total);
  ps[1] = mk_tretry(&fx, 3);
  ps[2] = fy_timeout_policy(per_try);
  pl = mk_pipeline(&fx, ps, 3);
  svc_init(&svc, 150, 0); /* slower than the per-try limit */
  svc.with_results = TOP_RESULTS_OK;
  cr_assert_eq(start_call(&r, &fx, pl, svc_op, &svc, 0), 0);
  fx_advance(&fx, 100);
  cr_assert_eq(svc.starts, 2);
  /* The second attempt is fast: it reports 20 ms after it started. */
  top_after(&svc, 1, 20);
  fx_advance(&fx, 20);
  cr_assert_eq(r.done, 1);
  cr_assert_eq(r.status, 0);
  cr_assert_eq(r.took_result, 1);
  cr_assert_eq(r.detail.attempts, 2);
  cr_assert_eq(fy_ctx_pending_deadlines(fx.ctx), 0);
  finish(&fx);
}

/* =========================================================================
 * Parent deadline vs own timeout (W28).
 * ====================================================================== */

Test(timeout, w28_parent_deadline_is_a_distinct_outcome) {
  fx_t fx;
  top_t svc;
  rec_t r;
  cbrec_t cb = {0};
  evlog_t log;
  fy_timeout_t *t;
  fy_pipeline_t *pl;
  fy_policy_t *ps[2];

  fx_init(&fx, T0);
  listen_timeouts(&fx, &log);
  t = mk_timeout(&fx, 100, 0, 0, FY_TIMEOUT_PER_TRY, "inner", &cb);
  ps[0] = mk_tdeadline(&fx, 50);
  ps[1] = fy_timeout_policy(t);
  pl = mk_pipeline(&fx, ps, 2);
  svc_init(&svc, FY_TIME_NEVER, 0);
  cr_assert_eq(start_call(&r, &fx, pl, svc_op, &svc, 0), 0);
  cr_assert_eq(svc.deadline[0], T0 + 50);
  fx_advance(&fx, 50);
  cr_assert_eq(r.done, 1);
  cr_assert_eq(r.status, FY_EDEADLINE);
  cr_assert_neq(r.status, UV_ETIMEDOUT);
  cr_assert_eq(r.at, T0 + 50);
  cr_assert_eq(svc.cancels, 1);
  cr_assert_str_eq(r.detail.by_kind, "timeout");
  cr_assert_eq(r.detail.state, FY_TIMEOUT_STAGE_DEADLINE);
  cr_assert_eq(r.detail.n[0], 50, "the budget the parent left");
  cr_assert_eq(r.detail.n[1], 50);
  cr_assert_eq(cb.calls, 0, "on_timeout is not called for the parent's");
  cr_assert_eq(log.n, 1);
  cr_assert_eq(log.ev[0].value, FY_TIMEOUT_STAGE_DEADLINE);
  cr_assert_eq(log.ev[0].status, FY_EDEADLINE);
  finish(&fx);
}

Test(timeout, w28_own_limit_earlier_or_equal_is_a_timeout) {
  fx_t fx;
  top_t svc;
  rec_t r;
  cbrec_t cb = {0};
  fy_timeout_t *t;
  fy_pipeline_t *pl;
  fy_policy_t *ps[2];
  uint64_t own[2] = {40, 50};
  int i;

  fx_init(&fx, T0);
  for (i = 0; i < 2; i++) {
    memset(&cb, 0, sizeof(cb));
    t = mk_timeout(&fx, own[i], 0, 0, FY_TIMEOUT_PER_TRY, "inner", &cb);
    ps[0] = mk_tdeadline(&fx, 50);
    ps[1] = fy_timeout_policy(t);
    pl = mk_pipeline(&fx, ps, 2);
    svc_init(&svc, FY_TIME_NEVER, 0);
    cr_assert_eq(start_call(&r, &fx, pl, svc_op, &svc, 0), 0);
    fx_advance(&fx, own[i]);
    cr_assert_eq(r.done, 1);
    cr_assert_eq(r.status, UV_ETIMEDOUT, "own %d", (int)own[i]);
    cr_assert_eq(r.detail.state, FY_TIMEOUT_STAGE_TOTAL);
    cr_assert_eq(cb.calls, 1);
  }
  finish(&fx);
}

Test(timeout, w28_parent_deadline_already_passed_refuses_at_start) {
  fx_t fx;
  top_t svc;
  rec_t r;
  evlog_t log;
  fy_timeout_t *t;
  fy_pipeline_t *pl;
  fy_policy_t *ps[2];

  fx_init(&fx, T0);
  listen_timeouts(&fx, &log);
  t = mk_timeout(&fx, 100, 0, 0, FY_TIMEOUT_PER_TRY, "inner", NULL);
  ps[0] = mk_tdeadline(&fx, 0); /* a budget already spent */
  ps[1] = fy_timeout_policy(t);
  pl = mk_pipeline(&fx, ps, 2);
  svc_init(&svc, FY_TIME_NEVER, 0);
  cr_assert_eq(start_call(&r, &fx, pl, svc_op, &svc, 0), FY_EDEADLINE);
  cr_assert_eq(svc.starts, 0, "no operation runs on a dead deadline (W27)");
  cr_assert_eq(r.call.detail.state, FY_TIMEOUT_STAGE_DEADLINE);
  cr_assert_eq(log.n, 1);
  fx_advance(&fx, 200);
  cr_assert_eq(r.done, 0);
  cr_assert_eq(live_frames(&fx), 0);
  finish(&fx);
}

Test(timeout, w28_equal_instants_outer_timer_fires_first) {
  fx_t fx;
  top_t svc;
  rec_t r;
  cbrec_t cb_out = {0}, cb_in = {0};
  evlog_t log;
  fy_timeout_t *outer, *inner;
  fy_pipeline_t *pl;
  fy_policy_t *ps[2];

  fx_init(&fx, T0);
  listen_timeouts(&fx, &log);
  outer = mk_timeout(&fx, 100, 0, 0, FY_TIMEOUT_TOTAL, "outer", &cb_out);
  inner = mk_timeout(&fx, 100, 0, 0, FY_TIMEOUT_PER_TRY, "inner", &cb_in);
  ps[0] = fy_timeout_policy(outer);
  ps[1] = fy_timeout_policy(inner);
  pl = mk_pipeline(&fx, ps, 2);
  svc_init(&svc, FY_TIME_NEVER, 0);
  cr_assert_eq(start_call(&r, &fx, pl, svc_op, &svc, 0), 0);
  fx_advance(&fx, 100);
  cr_assert_eq(r.done, 1);
  cr_assert_eq(r.status, UV_ETIMEDOUT);
  cr_assert_str_eq(r.detail.by_name, "outer");
  cr_assert_eq(r.detail.state, FY_TIMEOUT_STAGE_TOTAL);
  cr_assert_eq(cb_out.calls, 1);
  cr_assert_eq(cb_in.calls, 0, "the detached inner one stays quiet");
  cr_assert_eq(log.n, 1);
  cr_assert_str_eq(log.name[0], "outer");
  cr_assert_eq(svc.cancels, 1);
  cr_assert_eq(live_frames(&fx), 0);
  finish(&fx);
}

/* The outer timer is re-armed by marks (idle), so by the time both fall due
 * at 100 the inner entry, armed at 0, comes first.  |inner_ms| 200: the
 * inner one reports the parent's deadline; 100: its own limit (equal
 * instants go to the own limit).  Either way the outer one reports the call's
 * outcome as its own total timeout, as when its timer runs first. */
static void inner_first(uint64_t inner_ms, fy_timeout_stage_t inner_stage) {
  fx_t fx;
  top_t svc;
  rec_t r;
  cbrec_t cb_out = {0}, cb_in = {0};
  evlog_t log;
  fy_timeout_t *outer, *inner;
  fy_pipeline_t *pl;
  fy_policy_t *ps[2];
  int i;

  fx_init(&fx, T0);
  listen_timeouts(&fx, &log);
  outer = mk_timeout(&fx, 100, 0, 30, FY_TIMEOUT_TOTAL, "outer", &cb_out);
  inner =
      mk_timeout(&fx, inner_ms, 0, 0, FY_TIMEOUT_PER_TRY, "inner", &cb_in);
  ps[0] = fy_timeout_policy(outer);
  ps[1] = fy_timeout_policy(inner);
  pl = mk_pipeline(&fx, ps, 2);
  svc_init(&svc, FY_TIME_NEVER, 0);
  cr_assert_eq(start_call(&r, &fx, pl, svc_op, &svc, 0), 0);
  for (i = 0; i < 4; i++) {
    fx_advance(&fx, 20);
    top_mark(&svc);
  }
  fx_advance(&fx, 20);
  cr_assert_eq(r.done, 1);
  cr_assert_eq(r.at, T0 + 100);
  cr_assert_eq(r.status, UV_ETIMEDOUT);
  cr_assert_str_eq(r.detail.by_name, "outer");
  cr_assert_eq(r.detail.state, FY_TIMEOUT_STAGE_TOTAL);
  cr_assert_eq(r.detail.n[0], 100);
  cr_assert_eq(cb_out.calls, 1);
  cr_assert_eq(cb_out.stage, FY_TIMEOUT_STAGE_TOTAL);
  /* The inner one did fire first. */
  cr_assert_eq(cb_in.calls, inner_stage == FY_TIMEOUT_STAGE_DEADLINE ? 0 : 1);
  cr_assert_eq(log.n, 2);
  cr_assert_str_eq(log.name[0], "inner");
  cr_assert_eq(log.ev[0].value, inner_stage);
  cr_assert_str_eq(log.name[1], "outer");
  cr_assert_eq(log.ev[1].value, FY_TIMEOUT_STAGE_TOTAL);
  cr_assert_eq(live_frames(&fx), 0);
  finish(&fx);
}

Test(timeout, w28_equal_instants_inner_timer_first_gives_the_same_outcome) {
  inner_first(200, FY_TIMEOUT_STAGE_DEADLINE);
}

Test(timeout, equal_own_limits_inner_timer_first_gives_the_same_outcome) {
  inner_first(100, FY_TIMEOUT_STAGE_TOTAL);
}

static fy_deadline_t trigger;

static void on_trigger(fy_deadline_t *d) {
  top_t *svc = d->data;
  cr_assert_eq(top_report(svc, 0, svc->steps[0].status), 0);
}

/* An operation that reports its own UV_ETIMEDOUT exactly at the deadline
 * (a transfer timeout set from fy_attempt_remaining) reads as this
 * policy's timeout; earlier, it is the operation's own failure. */
Test(timeout, operation_timeout_at_the_deadline_is_the_policys) {
  fx_t fx;
  top_t svc;
  rec_t r;
  cbrec_t cb = {0};
  fy_timeout_t *t;
  fy_pipeline_t *pl;

  fx_init(&fx, T0);
  t = mk_timeout(&fx, 100, 0, 0, FY_TIMEOUT_TOTAL, "t", &cb);
  pl = mk_pipeline1(&fx, t);
  svc_init(&svc, 99, UV_ETIMEDOUT);
  cr_assert_eq(start_call(&r, &fx, pl, svc_op, &svc, 0), 0);
  fx_advance(&fx, 99);
  cr_assert_eq(r.status, UV_ETIMEDOUT);
  cr_assert_null(r.detail.by_kind, "the operation's own timeout");
  cr_assert_eq(cb.calls, 0);

  /* At the deadline itself, reported before our timer ran: a trigger
   * started before the call falls due first at the same instant. */
  svc_init(&svc, FY_TIME_NEVER, UV_ETIMEDOUT);
  fy_deadline_init(fx.ctx, &trigger, on_trigger);
  trigger.data = &svc;
  fy_deadline_start(&trigger, 100);
  cr_assert_eq(start_call(&r, &fx, pl, svc_op, &svc, 0), 0);
  fx_advance(&fx, 100);
  cr_assert_eq(svc.reports, 1);
  cr_assert_eq(svc.cancels, 0, "it reported by itself");
  cr_assert_eq(r.done, 1);
  cr_assert_eq(r.status, UV_ETIMEDOUT);
  cr_assert_str_eq(r.detail.by_kind, "timeout");
  cr_assert_eq(r.detail.state, FY_TIMEOUT_STAGE_TOTAL);
  cr_assert_eq(cb.calls, 1);
  finish(&fx);
}

/* =========================================================================
 * Streaming.
 * ====================================================================== */

Test(timeout, streaming_first_byte_fires_without_a_mark) {
  fx_t fx;
  top_t svc;
  rec_t r;
  cbrec_t cb = {0};
  fy_timeout_t *t;
  fy_pipeline_t *pl;

  fx_init(&fx, T0);
  t = mk_timeout(&fx, 0, 50, 0, FY_TIMEOUT_TOTAL, NULL, &cb);
  pl = mk_pipeline1(&fx, t);
  svc_init(&svc, FY_TIME_NEVER, 0);
  cr_assert_eq(start_call(&r, &fx, pl, svc_op, &svc, 0), 0);
  fx_advance(&fx, 49);
  cr_assert_eq(r.done, 0);
  fx_advance(&fx, 1);
  cr_assert_eq(r.done, 1);
  cr_assert_eq(r.status, UV_ETIMEDOUT);
  cr_assert_eq(r.detail.state, FY_TIMEOUT_STAGE_FIRST_BYTE);
  cr_assert_eq(r.detail.n[0], 50);
  cr_assert_eq(r.detail.n[1], 50);
  cr_assert_eq(r.detail.n[2], 0);
  cr_assert_eq(cb.stage, FY_TIMEOUT_STAGE_FIRST_BYTE);
  cr_assert_eq(cb.limit, 50);
  finish(&fx);
}

Test(timeout, streaming_first_byte_is_disarmed_by_a_mark) {
  fx_t fx;
  top_t svc;
  rec_t r;
  fy_timeout_t *t;
  fy_pipeline_t *pl;

  fx_init(&fx, T0);
  t = mk_timeout(&fx, 200, 50, 0, FY_TIMEOUT_TOTAL, NULL, NULL);
  pl = mk_pipeline1(&fx, t);
  svc_init(&svc, FY_TIME_NEVER, 0);
  cr_assert_eq(start_call(&r, &fx, pl, svc_op, &svc, 0), 0);
  fx_advance(&fx, 10);
  top_mark(&svc);
  fx_advance(&fx, 189);
  cr_assert_eq(r.done, 0);
  fx_advance(&fx, 1);
  cr_assert_eq(r.status, UV_ETIMEDOUT);
  cr_assert_eq(r.detail.state, FY_TIMEOUT_STAGE_TOTAL);
  cr_assert_eq(r.detail.n[2], 1, "one mark seen");
  finish(&fx);
}

Test(timeout, streaming_idle_fires_when_marks_are_too_far_apart) {
  fx_t fx;
  top_t svc;
  rec_t r;
  cbrec_t cb = {0};
  fy_timeout_t *t;
  fy_pipeline_t *pl;

  fx_init(&fx, T0);
  t = mk_timeout(&fx, 0, 0, 30, FY_TIMEOUT_TOTAL, NULL, &cb);
  pl = mk_pipeline1(&fx, t);
  svc_init(&svc, FY_TIME_NEVER, 0);
  cr_assert_eq(start_call(&r, &fx, pl, svc_op, &svc, 0), 0);
  fx_advance(&fx, 20);
  top_mark(&svc);
  fx_advance(&fx, 20);
  top_mark(&svc);
  fx_advance(&fx, 29);
  cr_assert_eq(r.done, 0);
  fx_advance(&fx, 1);
  cr_assert_eq(r.done, 1);
  cr_assert_eq(r.at, T0 + 70);
  cr_assert_eq(r.status, UV_ETIMEDOUT);
  cr_assert_eq(r.detail.state, FY_TIMEOUT_STAGE_IDLE);
  cr_assert_eq(r.detail.n[0], 30);
  cr_assert_eq(r.detail.n[1], 70);
  cr_assert_eq(r.detail.n[2], 2);
  cr_assert_eq(cb.elapsed, 70);
  finish(&fx);
}

Test(timeout, w29_idle_is_armed_at_start_without_any_mark) {
  fx_t fx;
  top_t svc;
  rec_t r;
  fy_timeout_t *t;
  fy_pipeline_t *pl;

  fx_init(&fx, T0);
  t = mk_timeout(&fx, 0, 0, 30, FY_TIMEOUT_TOTAL, NULL, NULL);
  pl = mk_pipeline1(&fx, t);
  svc_init(&svc, FY_TIME_NEVER, 0);
  cr_assert_eq(start_call(&r, &fx, pl, svc_op, &svc, 0), 0);
  fx_advance(&fx, 30);
  cr_assert_eq(r.done, 1, "a stream that never starts still times out");
  cr_assert_eq(r.status, UV_ETIMEDOUT);
  cr_assert_eq(r.detail.state, FY_TIMEOUT_STAGE_IDLE);
  cr_assert_eq(r.detail.n[1], 30);
  cr_assert_eq(svc.cancels, 1);
  finish(&fx);
}

Test(timeout, streaming_total_fires_despite_regular_marks) {
  fx_t fx;
  top_t svc;
  rec_t r;
  fy_timeout_t *t;
  fy_pipeline_t *pl;
  int i;

  fx_init(&fx, T0);
  t = mk_timeout(&fx, 100, 50, 30, FY_TIMEOUT_TOTAL, NULL, NULL);
  pl = mk_pipeline1(&fx, t);
  svc_init(&svc, FY_TIME_NEVER, 0);
  cr_assert_eq(start_call(&r, &fx, pl, svc_op, &svc, 0), 0);
  for (i = 0; i < 9; i++) {
    fx_advance(&fx, 10);
    top_mark(&svc);
    cr_assert_eq(r.done, 0);
  }
  fx_advance(&fx, 10);
  cr_assert_eq(r.done, 1);
  cr_assert_eq(r.at, T0 + 100);
  cr_assert_eq(r.detail.state, FY_TIMEOUT_STAGE_TOTAL);
  cr_assert_eq(r.detail.n[2], 9);
  finish(&fx);
}

Test(timeout, w31_elapsed_is_measured_at_fire_time) {
  fx_t fx;
  top_t svc;
  rec_t r;
  cbrec_t cb = {0};
  evlog_t log;
  fy_timeout_t *t;
  fy_pipeline_t *pl;

  fx_init(&fx, T0);
  listen_timeouts(&fx, &log);
  t = mk_timeout(&fx, 0, 50, 0, FY_TIMEOUT_TOTAL, NULL, &cb);
  pl = mk_pipeline1(&fx, t);
  /* Uncooperative: reports (successfully) only at 500. */
  svc_init(&svc, 500, 0);
  svc.with_results = TOP_RESULTS_OK;
  cr_assert_eq(start_call(&r, &fx, pl, &top_op_nocancel, &svc, 0), 0);
  fx_advance(&fx, 50);
  cr_assert_eq(r.done, 1);
  cr_assert_eq(r.status, UV_ETIMEDOUT);
  cr_assert_eq(r.detail.n[1], 50);
  cr_assert_eq(cb.elapsed, 50);
  cr_assert_eq(log.ev[0].latency_ns / 1000000u, 50);
  fx_advance(&fx, 450);
  cr_assert_eq(svc.reports, 1);
  cr_assert_eq(r.done, 1);
  cr_assert_eq(r.call.detail.n[1], 50, "not the time the operation returned");
  cr_assert_eq(tres_destroyed(), 1, "the late success was discarded");
  finish(&fx);
}

Test(timeout, marks_from_a_detached_attempt_are_ignored) {
  fx_t fx;
  top_t svc;
  rec_t r;
  fy_timeout_t *t;
  fy_pipeline_t *pl;

  fx_init(&fx, T0);
  t = mk_timeout(&fx, 0, 0, 30, FY_TIMEOUT_TOTAL, NULL, NULL);
  pl = mk_pipeline1(&fx, t);
  svc_init(&svc, 100, 0);
  cr_assert_eq(start_call(&r, &fx, pl, &top_op_nocancel, &svc, 0), 0);
  fx_advance(&fx, 30);
  cr_assert_eq(r.done, 1);
  fy_attempt_mark(svc.att[0]); /* still alive, abandoned */
  fx_advance(&fx, 70);
  cr_assert_eq(svc.reports, 1);
  cr_assert_eq(live_frames(&fx), 0);
  finish(&fx);
}

/* =========================================================================
 * Cancel, refusal, close.
 * ====================================================================== */

Test(timeout, caller_cancel_lets_the_child_report) {
  fx_t fx;
  top_t svc;
  rec_t r;
  cbrec_t cb = {0};
  fy_timeout_t *t;
  fy_pipeline_t *pl;

  fx_init(&fx, T0);
  t = mk_timeout(&fx, 100, 0, 0, FY_TIMEOUT_TOTAL, NULL, &cb);
  pl = mk_pipeline1(&fx, t);
  svc_init(&svc, FY_TIME_NEVER, 0);
  cr_assert_eq(start_call(&r, &fx, pl, svc_op, &svc, 0), 0);
  fx_advance(&fx, 10);
  cr_assert_eq(fy_call_cancel(&r.call), 0);
  cr_assert_eq(svc.cancels, 1);
  cr_assert_eq(r.done, 0, "never inside fy_call_cancel");
  fx_advance(&fx, 0);
  cr_assert_eq(r.done, 1);
  cr_assert_eq(r.status, UV_ECANCELED);
  cr_assert_null(r.detail.by_kind, "the operation's own outcome");
  cr_assert_eq(cb.calls, 0);
  cr_assert_eq(fy_ctx_pending_deadlines(fx.ctx), 0);
  finish(&fx);
}

Test(timeout, caller_cancel_of_an_uncooperative_op_ends_by_the_deadline) {
  fx_t fx;
  top_t svc;
  rec_t r;
  cbrec_t cb = {0};
  evlog_t log;
  fy_timeout_t *t;
  fy_pipeline_t *pl;

  fx_init(&fx, T0);
  listen_timeouts(&fx, &log);
  t = mk_timeout(&fx, 100, 0, 0, FY_TIMEOUT_TOTAL, NULL, &cb);
  pl = mk_pipeline1(&fx, t);
  svc_init(&svc, 1000, 0);
  svc.with_results = TOP_RESULTS_OK;
  cr_assert_eq(start_call(&r, &fx, pl, &top_op_nocancel, &svc, 0), 0);
  fx_advance(&fx, 10);
  cr_assert_eq(fy_call_cancel(&r.call), 0);
  fx_advance(&fx, 89);
  cr_assert_eq(r.done, 0);
  fx_advance(&fx, 1);
  cr_assert_eq(r.done, 1);
  cr_assert_eq(r.at, T0 + 100);
  cr_assert_eq(r.status, UV_ECANCELED, "what the caller asked for");
  cr_assert_str_eq(r.detail.by_kind, "timeout");
  cr_assert_eq(r.detail.cause, UV_ETIMEDOUT);
  cr_assert_eq(cb.calls, 0);
  cr_assert_eq(log.n, 0);
  fx_advance(&fx, 900);
  cr_assert_eq(svc.reports, 1);
  cr_assert_eq(tres_destroyed(), 1);
  cr_assert_eq(live_frames(&fx), 0);
  finish(&fx);
}

Test(timeout, refusal_below_is_returned_from_start) {
  fx_t fx;
  top_t svc;
  rec_t r;
  fy_timeout_t *t;
  fy_pipeline_t *pl;
  fy_policy_t *ps[2], *closed;
  int *code;

  fx_init(&fx, T0);
  t = mk_timeout(&fx, 100, 0, 0, FY_TIMEOUT_TOTAL, NULL, NULL);
  ps[0] = fy_timeout_policy(t);
  cr_assert_eq(fy_policy_new(fx.ctx, &trefuse_vt, sizeof(int), "full",
                             &ps[1]),
               0);
  code = fy_policy_impl(ps[1]);
  *code = FY_EBULKHEADFULL;
  pl = mk_pipeline(&fx, ps, 2);
  svc_init(&svc, 10, 0);
  cr_assert_eq(start_call(&r, &fx, pl, svc_op, &svc, 0), FY_EBULKHEADFULL);
  cr_assert_eq(svc.starts, 0);
  cr_assert_eq(live_frames(&fx), 0);
  cr_assert_eq(fy_ctx_pending_deadlines(fx.ctx), 0, "no timer left armed");

  /* A closed layer below: FY_ECLOSED, synchronously too. */
  cr_assert_eq(fy_passthrough_new(fx.ctx, "pt", &closed), 0);
  ps[1] = closed;
  pl = mk_pipeline(&fx, ps, 2);
  cr_assert_eq(fy_policy_close(closed, NULL, NULL), 0);
  cr_assert_eq(start_call(&r, &fx, pl, svc_op, &svc, 0), FY_ECLOSED);
  fx_advance(&fx, 200);
  cr_assert_eq(r.done, 0);
  cr_assert_eq(live_frames(&fx), 0);
  finish(&fx);
}

static int close_order_calls_done;

static void on_done_count(fy_call_t *call, int status) {
  rec_t *r = fy_container_of(call, rec_t, call);
  r->done++;
  r->status = status;
  r->at = fy_ctx_now(r->ctx);
  close_order_calls_done++;
}

static void on_tm_closed_check(void *obj, void *ud) {
  (void)ud;
  tm_closed++;
  tm_closed_obj = obj;
  cr_assert_eq(close_order_calls_done, 3, "close cb after every call");
}

Test(timeout, close_with_frames_pending) {
  fx_t fx;
  top_t svc_a, svc_b;
  rec_t r[3];
  fy_timeout_t *t;
  fy_pipeline_t *pl;
  int i;

  fx_init(&fx, T0);
  t = mk_timeout(&fx, 100, 0, 0, FY_TIMEOUT_TOTAL, NULL, NULL);
  pl = mk_pipeline1(&fx, t);
  svc_init(&svc_a, FY_TIME_NEVER, 0);
  svc_init(&svc_b, 1000, 0);
  svc_b.with_results = TOP_RESULTS_OK;
  for (i = 0; i < 3; i++) {
    memset(&r[i], 0, sizeof(r[i]));
    r[i].ctx = fx.ctx;
  }
  cr_assert_eq(fy_call_start(&r[0].call, pl, svc_op, &svc_a, on_done_count),
               0);
  cr_assert_eq(fy_call_start(&r[1].call, pl, svc_op, &svc_a, on_done_count),
               0);
  cr_assert_eq(
      fy_call_start(&r[2].call, pl, &top_op_nocancel, &svc_b, on_done_count),
      0);
  fx_advance(&fx, 10);
  cr_assert_eq(fy_timeout_close(t, on_tm_closed_check, NULL), 0);
  cr_assert_eq(fy_timeout_close(t, on_tm_closed_check, NULL), FY_ECLOSED);
  fx_advance(&fx, 0);
  cr_assert_eq(r[0].done, 1);
  cr_assert_eq(r[0].status, UV_ECANCELED);
  cr_assert_eq(r[1].done, 1);
  cr_assert_eq(r[1].status, UV_ECANCELED);
  cr_assert_eq(r[2].done, 0, "waits for its deadline");
  cr_assert_eq(tm_closed, 0);
  fx_advance(&fx, 90);
  cr_assert_eq(r[2].done, 1);
  cr_assert_eq(r[2].status, UV_ECANCELED);
  cr_assert_eq(r[2].at, T0 + 100);
  cr_assert_eq(tm_closed, 1);
  cr_assert_eq(tm_closed_obj, t, "the close callback gets the handle");
  /* New calls through the closed policy are refused. */
  cr_assert_eq(start_call(&r[0], &fx, pl, svc_op, &svc_a, 0), FY_ECLOSED);
  fx_advance(&fx, 900);
  cr_assert_eq(svc_b.reports, 1);
  finish(&fx);
  cr_assert_eq(r[0].done, 0);
  cr_assert_eq(r[1].done + r[2].done, 2);
}

Test(timeout, context_close_with_frames_pending) {
  fx_t fx;
  top_t svc;
  rec_t r[2];
  fy_timeout_t *t;
  fy_pipeline_t *pl;

  fx_init(&fx, T0);
  t = mk_timeout(&fx, 100, 0, 30, FY_TIMEOUT_TOTAL, NULL, NULL);
  pl = mk_pipeline1(&fx, t);
  svc_init(&svc, FY_TIME_NEVER, 0);
  cr_assert_eq(start_call(&r[0], &fx, pl, svc_op, &svc, 0), 0);
  cr_assert_eq(start_call(&r[1], &fx, pl, svc_op, &svc, 0), 0);
  cr_assert_eq(fx_close(&fx), 0);
  uv_run(&fx.loop, UV_RUN_DEFAULT);
  cr_assert_eq(r[0].done, 1);
  cr_assert_eq(r[0].status, UV_ECANCELED);
  cr_assert_eq(r[1].done, 1);
  cr_assert_eq(r[1].status, UV_ECANCELED);
  finish(&fx);
}

/* =========================================================================
 * Re-entrancy.
 * ====================================================================== */

Test(timeout, on_timeout_closes_the_pipeline) {
  fx_t fx;
  top_t svc;
  rec_t r;
  cbrec_t cb = {0};
  fy_timeout_t *t;
  fy_pipeline_t *pl;

  fx_init(&fx, T0);
  t = mk_timeout(&fx, 100, 0, 0, FY_TIMEOUT_TOTAL, NULL, &cb);
  pl = mk_pipeline1(&fx, t);
  cb.close_pipeline = pl;
  svc_init(&svc, FY_TIME_NEVER, 0);
  cr_assert_eq(start_call(&r, &fx, pl, svc_op, &svc, 0), 0);
  fx_advance(&fx, 100);
  cr_assert_eq(cb.calls, 1);
  cr_assert_eq(cb.close_rc, 0);
  cr_assert_eq(r.done, 1);
  cr_assert_eq(r.status, UV_ETIMEDOUT);
  cr_assert_eq(pl_closed, 1);
  finish(&fx);
  cr_assert_eq(r.done, 1);
}

Test(timeout, on_timeout_closes_the_context) {
  fx_t fx;
  top_t svc;
  rec_t r;
  cbrec_t cb = {0};
  fy_timeout_t *t;
  fy_pipeline_t *pl;

  fx_init(&fx, T0);
  t = mk_timeout(&fx, 100, 0, 0, FY_TIMEOUT_TOTAL, NULL, &cb);
  pl = mk_pipeline1(&fx, t);
  cb.close_ctx = &fx;
  svc_init(&svc, FY_TIME_NEVER, 0);
  cr_assert_eq(start_call(&r, &fx, pl, svc_op, &svc, 0), 0);
  fx_advance(&fx, 100);
  cr_assert_eq(cb.calls, 1);
  cr_assert_eq(r.done, 1);
  cr_assert_eq(r.status, UV_ETIMEDOUT);
  finish(&fx);
  cr_assert_eq(r.done, 1);
}

Test(timeout, on_timeout_closes_its_own_policy) {
  fx_t fx;
  top_t svc;
  rec_t r;
  cbrec_t cb = {0};
  fy_timeout_t *t;
  fy_pipeline_t *pl;

  fx_init(&fx, T0);
  t = mk_timeout(&fx, 100, 0, 0, FY_TIMEOUT_TOTAL, NULL, &cb);
  pl = mk_pipeline1(&fx, t);
  cb.close_self = 1;
  svc_init(&svc, FY_TIME_NEVER, 0);
  cr_assert_eq(start_call(&r, &fx, pl, svc_op, &svc, 0), 0);
  fx_advance(&fx, 100);
  cr_assert_eq(cb.calls, 1);
  cr_assert_eq(cb.close_rc, 0);
  cr_assert_eq(r.done, 1);
  cr_assert_eq(r.status, UV_ETIMEDOUT);
  cr_assert_eq(tm_closed, 1);
  cr_assert_eq(tm_closed_obj, t);
  finish(&fx);
}

Test(timeout, listener_calls_back_into_the_policy) {
  fx_t fx;
  top_t svc, svc2;
  rec_t r, r2;
  evlog_t log;
  reenter_t re = {0};
  fy_timeout_t *t;
  fy_pipeline_t *pl;

  fx_init(&fx, T0);
  listen_timeouts(&fx, &log);
  t = mk_timeout(&fx, 100, 0, 0, FY_TIMEOUT_TOTAL, NULL, NULL);
  pl = mk_pipeline1(&fx, t);
  svc_init(&svc, FY_TIME_NEVER, 0);
  svc_init(&svc2, FY_TIME_NEVER, 0);
  re.pl = pl;
  re.rec = &r2;
  re.svc = &svc2;
  re.fx = &fx;
  log.data = &re;
  cr_assert_eq(start_call(&r, &fx, pl, svc_op, &svc, 0), 0);
  fx_advance(&fx, 100);
  cr_assert_eq(r.done, 1);
  cr_assert_eq(re.rc, 0, "a call started from the listener");
  cr_assert_eq(svc2.starts, 1);
  cr_assert_eq(svc2.deadline[0], T0 + 200);
  fx_advance(&fx, 100);
  cr_assert_eq(r2.done, 1);
  cr_assert_eq(r2.status, UV_ETIMEDOUT);
  cr_assert_eq(log.n, 2);
  finish(&fx);
}

/* A call's callback that starts the next call through the same timeout. */
static fy_pipeline_t *chain_pl;
static top_t *chain_svc;
static int chain_left;

static void on_done_chain(fy_call_t *call, int status) {
  rec_t *r = fy_container_of(call, rec_t, call);
  r->done++;
  r->status = status;
  if (chain_left-- > 0)
    cr_assert_eq(
        fy_call_start(call, chain_pl, svc_op, chain_svc, on_done_chain), 0);
}

Test(timeout, completion_callback_reuses_the_call) {
  fx_t fx;
  top_t svc;
  rec_t r;
  fy_timeout_t *t;

  fx_init(&fx, T0);
  t = mk_timeout(&fx, 100, 0, 0, FY_TIMEOUT_TOTAL, NULL, NULL);
  chain_pl = mk_pipeline1(&fx, t);
  svc_init(&svc, FY_TIME_NEVER, 0);
  chain_svc = &svc;
  chain_left = 2;
  memset(&r, 0, sizeof(r));
  r.ctx = fx.ctx;
  cr_assert_eq(fy_call_start(&r.call, chain_pl, svc_op, &svc, on_done_chain),
               0);
  fx_advance(&fx, 300);
  cr_assert_eq(r.done, 3);
  cr_assert_eq(r.status, UV_ETIMEDOUT);
  cr_assert_eq(svc.cancels, 3);
  finish(&fx);
}

/* =========================================================================
 * Standalone watches.
 * ====================================================================== */

typedef struct wrec_s {
  int calls;
  int status;
  fy_timeout_stage_t stage;
  uint64_t elapsed, limit, at;
  fy_ctx_t *ctx;
  fy_timeout_t *restart_with;
  int restart_rc;
} wrec_t;

static void on_watch(fy_timeout_watch_t *w, int status,
                     fy_timeout_stage_t stage, uint64_t elapsed,
                     uint64_t limit, void *user_data) {
  wrec_t *wr = user_data;
  wr->calls++;
  wr->status = status;
  wr->stage = stage;
  wr->elapsed = elapsed;
  wr->limit = limit;
  wr->at = fy_ctx_now(wr->ctx);
  cr_assert_eq(fy_timeout_watch_is_active(w), 0);
  if (wr->restart_with != NULL) {
    fy_timeout_t *t = wr->restart_with;
    wr->restart_with = NULL;
    wr->restart_rc = fy_timeout_watch_start(t, w, 0, on_watch, wr);
  }
}

Test(timeout, watch_fires_marks_and_stops) {
  fx_t fx;
  fy_timeout_t *t;
  fy_timeout_watch_t w;
  wrec_t wr = {0};
  cbrec_t cb = {0};
  evlog_t log;

  fx_init(&fx, T0);
  listen_timeouts(&fx, &log);
  wr.ctx = fx.ctx;
  t = mk_timeout(&fx, 100, 0, 30, FY_TIMEOUT_TOTAL, "w", &cb);
  cr_assert_eq(fy_timeout_watch_start(t, &w, 0, on_watch, &wr), 0);
  cr_assert(fy_timeout_watch_is_active(&w));
  cr_assert_eq(fy_timeout_watch_remaining(&w), 100);
  fx_advance(&fx, 20);
  fy_timeout_watch_mark(&w);
  fx_advance(&fx, 29);
  cr_assert_eq(wr.calls, 0);
  cr_assert_eq(fy_timeout_watch_remaining(&w), 51);
  fx_advance(&fx, 1);
  cr_assert_eq(wr.calls, 1);
  cr_assert_eq(wr.status, UV_ETIMEDOUT);
  cr_assert_eq(wr.stage, FY_TIMEOUT_STAGE_IDLE);
  cr_assert_eq(wr.elapsed, 50);
  cr_assert_eq(wr.limit, 30);
  cr_assert_eq(cb.calls, 1);
  cr_assert_null(cb.call);
  cr_assert_eq(log.n, 1);
  cr_assert_null(log.ev[0].call);
  cr_assert_eq(fy_timeout_watch_remaining(&w), FY_TIME_NEVER);
  fy_timeout_watch_mark(&w); /* inactive: no-op */
  fy_timeout_watch_stop(&w); /* idempotent */

  /* Stopped: never fires. */
  cr_assert_eq(fy_timeout_watch_start(t, &w, 500, on_watch, &wr), 0);
  fy_timeout_watch_stop(&w);
  fy_timeout_watch_stop(&w);
  fx_advance(&fx, 1000);
  cr_assert_eq(wr.calls, 1);
  cr_assert_eq(fy_ctx_pending_deadlines(fx.ctx), 0);

  /* The override sets the total limit; restart from the callback. */
  t = mk_timeout(&fx, 100, 0, 0, FY_TIMEOUT_PER_TRY, NULL, NULL);
  wr.restart_with = t;
  cr_assert_eq(fy_timeout_watch_start(t, &w, 10, on_watch, &wr), 0);
  fx_advance(&fx, 10);
  cr_assert_eq(wr.calls, 2);
  cr_assert_eq(wr.stage, FY_TIMEOUT_STAGE_TOTAL);
  cr_assert_eq(wr.limit, 10);
  cr_assert_eq(wr.restart_rc, 0);
  cr_assert(fy_timeout_watch_is_active(&w), "restarted from its callback");
  fx_advance(&fx, 100);
  cr_assert_eq(wr.calls, 3);
  cr_assert_eq(wr.limit, 100);

  /* Bad arguments. */
  cr_assert_eq(fy_timeout_watch_start(NULL, &w, 0, on_watch, &wr), UV_EINVAL);
  cr_assert_eq(fy_timeout_watch_start(t, NULL, 0, on_watch, &wr), UV_EINVAL);
  cr_assert_eq(fy_timeout_watch_start(t, &w, 0, NULL, &wr), UV_EINVAL);
  cr_assert_eq(
      fy_timeout_watch_start(t, &w, FY_TIMEOUT_MAX_MS + 1, on_watch, &wr),
      UV_EINVAL);
  finish(&fx);
}

Test(timeout, watch_is_cancelled_when_the_policy_closes) {
  fx_t fx;
  fy_timeout_t *t;
  fy_timeout_watch_t w1, w2, w3;
  wrec_t wr1 = {0}, wr2 = {0};

  fx_init(&fx, T0);
  wr1.ctx = fx.ctx;
  wr2.ctx = fx.ctx;
  t = mk_timeout(&fx, 100, 0, 0, FY_TIMEOUT_TOTAL, NULL, NULL);
  cr_assert_eq(fy_timeout_watch_start(t, &w1, 0, on_watch, &wr1), 0);
  cr_assert_eq(fy_timeout_watch_start(t, &w2, 0, on_watch, &wr2), 0);
  /* w1's callback tries to restart: refused, the policy is closing. */
  wr1.restart_with = t;
  fx_advance(&fx, 10);
  cr_assert_eq(fy_timeout_close(t, on_tm_closed, NULL), 0);
  cr_assert_eq(fy_timeout_watch_start(t, &w3, 0, on_watch, &wr2), FY_ECLOSED);
  fx_advance(&fx, 0);
  cr_assert_eq(wr1.calls, 1);
  cr_assert_eq(wr1.restart_rc, FY_ECLOSED, "no restart once closing");
  cr_assert_eq(fy_timeout_watch_is_active(&w1), 0);
  cr_assert_eq(wr1.status, UV_ECANCELED);
  cr_assert_eq(wr1.stage, FY_TIMEOUT_STAGE_NONE);
  cr_assert_eq(wr1.elapsed, 10);
  cr_assert_eq(wr2.calls, 1);
  cr_assert_eq(wr2.status, UV_ECANCELED);
  cr_assert_eq(tm_closed, 1);
  fx_advance(&fx, 1000);
  cr_assert_eq(wr1.calls, 1);
  cr_assert_eq(wr2.calls, 1);
  cr_assert_eq(fy_ctx_pending_deadlines(fx.ctx), 0);
  finish(&fx);
}

/* Closing the context with an active watch cancels it too. */
Test(timeout, watch_is_cancelled_when_the_context_closes) {
  fx_t fx;
  fy_timeout_t *t;
  fy_timeout_watch_t w;
  wrec_t wr = {0};

  fx_init(&fx, T0);
  wr.ctx = fx.ctx;
  t = mk_timeout(&fx, 100, 0, 0, FY_TIMEOUT_TOTAL, NULL, NULL);
  cr_assert_eq(fy_timeout_watch_start(t, &w, 0, on_watch, &wr), 0);
  finish(&fx);
  cr_assert_eq(wr.calls, 1);
  cr_assert_eq(wr.status, UV_ECANCELED);
}

/* ---- the lane: one list for the frames of a fixed delay ---------------- */

/* Calls through one timeout with its own delay expire in start order from
 * the policy's lane (a list with one timer on the wheel): each still fires
 * at its own instant, a stopped head makes the next one wait for its own
 * expiry, and pending counts see the calls, not the lane's timer. */
Test(timeout, same_delay_calls_expire_in_order_each_on_time) {
  fx_t fx;
  top_t svc;
  rec_t r[3];
  fy_pipeline_t *pl;
  int i;

  fx_init(&fx, T0);
  svc_init(&svc, FY_TIME_NEVER, 0);
  pl = mk_pipeline1(&fx, mk_timeout(&fx, 100, 0, 0, FY_TIMEOUT_TOTAL, NULL,
                                    NULL));
  for (i = 0; i < 3; i++) {
    if (i > 0)
      fx_advance(&fx, 10);
    cr_assert_eq(start_call(&r[i], &fx, pl, svc_op, &svc, 0), 0);
  }
  cr_assert_eq(fy_ctx_pending_deadlines(fx.ctx), 3);
  /* The head leaves early: cancelled at T0 + 30. */
  fx_advance(&fx, 10);
  cr_assert_eq(fy_call_cancel(&r[0].call), 0);
  fx_advance(&fx, 0);
  cr_assert_eq(r[0].done, 1);
  cr_assert_eq(r[0].status, UV_ECANCELED);
  cr_assert_eq(fy_ctx_pending_deadlines(fx.ctx), 2);
  /* T0 + 100, the old head's instant: nothing is due. */
  fx_advance(&fx, 70);
  cr_assert_eq(r[1].done, 0);
  fx_advance(&fx, 9);
  cr_assert_eq(r[1].done, 0, "fired early at %lu",
               (unsigned long)(r[1].at - T0));
  fx_advance(&fx, 1);
  cr_assert_eq(r[1].done, 1);
  cr_assert_eq(r[1].status, UV_ETIMEDOUT);
  cr_assert_eq(r[1].at, T0 + 110);
  cr_assert_eq(r[2].done, 0);
  fx_advance(&fx, 10);
  cr_assert_eq(r[2].done, 1);
  cr_assert_eq(r[2].status, UV_ETIMEDOUT);
  cr_assert_eq(r[2].at, T0 + 120);
  cr_assert_eq(fy_ctx_pending_deadlines(fx.ctx), 0);
  cr_assert_eq(live_frames(&fx), 0);
  finish(&fx);
}

/* Per-call overrides, shorter or longer, run beside the lane's members:
 * every call fires at its own instant. */
Test(timeout, overrides_and_the_lane_interleave) {
  fx_t fx;
  top_t svc;
  rec_t r[4];
  fy_pipeline_t *pl;

  fx_init(&fx, T0);
  svc_init(&svc, FY_TIME_NEVER, 0);
  pl = mk_pipeline1(&fx, mk_timeout(&fx, 100, 0, 0, FY_TIMEOUT_TOTAL, NULL,
                                    NULL));
  cr_assert_eq(start_call(&r[0], &fx, pl, svc_op, &svc, 0), 0);   /* 100 */
  fx_advance(&fx, 10);
  cr_assert_eq(start_call(&r[1], &fx, pl, svc_op, &svc, 50), 0);  /* 60 */
  cr_assert_eq(start_call(&r[2], &fx, pl, svc_op, &svc, 200), 0); /* 210 */
  fx_advance(&fx, 10);
  cr_assert_eq(start_call(&r[3], &fx, pl, svc_op, &svc, 0), 0);   /* 120 */
  cr_assert_eq(fy_ctx_pending_deadlines(fx.ctx), 4);
  fx_advance(&fx, 300);
  cr_assert_eq(r[0].at, T0 + 100);
  cr_assert_eq(r[1].at, T0 + 60);
  cr_assert_eq(r[2].at, T0 + 210);
  cr_assert_eq(r[3].at, T0 + 120);
  cr_assert_eq(r[0].status, UV_ETIMEDOUT);
  cr_assert_eq(r[2].status, UV_ETIMEDOUT);
  cr_assert_eq(fy_ctx_pending_deadlines(fx.ctx), 0);
  finish(&fx);
}

/* On a real loop, a call waiting on the lane keeps the loop alive until it
 * times out, and nothing is left afterwards. */
Test(timeout, lane_keeps_a_real_loop_alive_until_it_fires) {
  fy_timeout_opts_t o;
  fy_timeout_t *t = NULL;
  fy_policy_t *p;
  fy_pipeline_t *pl = NULL;
  top_t svc;
  rec_t r;
  uint64_t t0;
  fx_t fx;

  fx_init_real(&fx);
  fy_timeout_opts_init(&o);
  o.timeout_ms = 20;
  cr_assert_eq(fy_timeout_new(fx.ctx, &o, &t), 0);
  p = fy_timeout_policy(t);
  cr_assert_eq(fy_pipeline_new(fx.ctx, &p, 1, &pl), 0);
  svc_init(&svc, FY_TIME_NEVER, 0);
  /* The loop's own clock, which the context reads: the deadline is due 20
   * ms after it, however stale it was when the call started. */
  t0 = uv_now(&fx.loop);
  cr_assert_eq(start_call(&r, &fx, pl, svc_op, &svc, 0), 0);
  cr_assert_eq(uv_run(&fx.loop, UV_RUN_DEFAULT), 0);
  cr_assert_eq(r.done, 1);
  cr_assert_eq(r.status, UV_ETIMEDOUT);
  cr_assert_geq(uv_now(&fx.loop) - t0, 20);
  cr_assert_eq(fy_ctx_pending_deadlines(fx.ctx), 0);
  cr_assert_eq(fx_close(&fx), 0);
  cr_assert_eq(uv_run(&fx.loop, UV_RUN_DEFAULT), 0);
  cr_assert_eq(fx.closed, 1);
  finish(&fx); /* the loop closes */
}
