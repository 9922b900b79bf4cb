/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * Tests of the retry pattern: its options, then the policy on a manual
 * clock (the pure parts, backoff formulas, classification and decision,
 * are tested in test_retry_sm.c). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fortify.h"
#include "fixture.h"
#include "retry_cases.h"

#define HOUR_MS ((uint64_t)60 * 60 * 1000)
#define DAY_MS (24 * HOUR_MS)

/* ---- fixture: FX on a manual clock at 5000 ms (support/fixture.h) ----- */
static uint64_t t0;

static void setup_ctx(void) {
  fx_init(&FX, 5000);
  t0 = fy_ctx_now(FX.ctx);
}

/* Run the loop until a close already requested has finished. */
static void drain_loop(fx_closed_t *closed) {
  uv_run(&FX.loop, UV_RUN_DEFAULT);
  cr_assert_eq(closed->n, 1);
  cr_assert_eq(uv_loop_close(&FX.loop), 0);
}

/* ---- the operation: one top_t for every call (support/probe.h) -------- */
#define MAX_TRIES TOP_MAX_STEPS

/* A step of the script, as the tests write it. */
typedef struct step_s {
  int status;           /* the outcome */
  uint64_t after_ms;    /* report after this long; 0: inside start */
  uint64_t retry_after; /* hint set before reporting */
  int fail_start;       /* 1: start itself returns |status| */
  int cancel_own_call;  /* 1: start cancels its own call, then waits */
} step_t;

static top_t OPS;
static int cancel_own[MAX_TRIES]; /* by step */

/* The attempt whose step says so cancels its own call from start; the
 * synchronous cancel reports it. */
static void maybe_cancel_own_call(top_t *top, fy_attempt_t *a) {
  unsigned k = top->starts - 1;
  if (cancel_own[k < top->nsteps ? k : top->nsteps - 1])
    cr_assert_eq(fy_call_cancel(a->call), 0);
}

/* The last step repeats. */
static void script(unsigned n, const step_t *steps) {
  unsigned i;
  memset(&OPS, 0, sizeof(OPS));
  memset(cancel_own, 0, sizeof(cancel_own));
  for (i = 0; i < n; i++) {
    top_step_t st = {steps[i].after_ms == 0 ? TOP_SYNC : TOP_AFTER,
                     steps[i].status, steps[i].after_ms,
                     steps[i].retry_after};
    if (steps[i].fail_start)
      st.kind = TOP_START_ERROR;
    if (steps[i].cancel_own_call)
      st.kind = TOP_ASYNC;
    cancel_own[i] = steps[i].cancel_own_call;
    top_push_step(&OPS, st);
  }
  OPS.on_start = maybe_cancel_own_call;
}

/* ---- calls ------------------------------------------------------------- */
/* A call is a tcall_t (support/probe.h), completed by tcall_cb. */
static int start_call(tcall_t *tc, fy_pipeline_t *pl, unsigned flags) {
  fy_call_opts_t co;
  memset(&co, 0, sizeof(co));
  co.flags = flags;
  memset(tc, 0, sizeof(*tc));
  return fy_call_start_opts(&tc->call, pl, &top_op_cancel_sync, &OPS, &co,
                            tcall_cb);
}

/* ---- on_retry recorder ------------------------------------------------- */
enum {
  ACT_NONE = 0,
  ACT_CANCEL_CALL,
  ACT_CLOSE_PIPELINE,
  ACT_CLOSE_POLICY,
  ACT_CLOSE_CTX
};

typedef struct rec_s {
  unsigned attempt;
  int last;
  uint64_t delay;
  uint64_t at;
} rec_t;

static rec_t recs[MAX_TRIES];
static unsigned nrecs;
static int retry_action;
static fx_closed_t closed_flag;
static fy_retry_t *retry;
static fy_pipeline_t *pl_main;

static void on_retry_rec(fy_call_t *call, unsigned attempt, int last,
                         uint64_t delay, void *user_data) {
  cr_assert_eq(user_data, &recs);
  cr_assert_not_null(call);
  if (nrecs < MAX_TRIES) {
    recs[nrecs].attempt = attempt;
    recs[nrecs].last = last;
    recs[nrecs].delay = delay;
    recs[nrecs].at = fy_ctx_now(FX.ctx);
  }
  nrecs++;
  switch (retry_action) {
  case ACT_CANCEL_CALL:
    cr_assert_eq(fy_call_cancel(call), 0);
    break;
  case ACT_CLOSE_PIPELINE:
    cr_assert_eq(fy_pipeline_close(pl_main, fx_obj_closed, &closed_flag), 0);
    break;
  case ACT_CLOSE_POLICY:
    cr_assert_eq(fy_retry_close(retry, fx_obj_closed, &closed_flag), 0);
    break;
  case ACT_CLOSE_CTX:
    cr_assert_eq(fy_ctx_close(FX.ctx, fx_obj_closed, &closed_flag), 0);
    break;
  default:
    break;
  }
}

static fy_retry_opts_t opts_default(void) {
  fy_retry_opts_t o;
  fy_retry_opts_init(&o);
  o.on_retry = on_retry_rec;
  o.user_data = &recs;
  return o;
}

/* ---- two tiny test policies -------------------------------------------- */

/* "refuser": refuses the first |times| starts synchronously with |code|,
 * writing a retry-after hint into the detail as a limiter would. */
typedef struct refuser_s {
  int code;
  uint64_t hint;
  unsigned times;
  unsigned refused;
} refuser_t;

static int refuser_start(fy_policy_t *p, fy_frame_t *f) {
  refuser_t *rs = fy_policy_impl(p);
  if (rs->refused < rs->times) {
    fy_detail_t *d = fy_frame_verdict(f, p);
    rs->refused++;
    d->retry_after_ms = rs->hint;
    d->state = 42;
    return rs->code;
  }
  return fy_frame_spawn(f, NULL);
}

static const fy_policy_vtable_t refuser_vt = {
    .kind = "refuser",
    .start = refuser_start,
    .child_done = probe_pass_child_done,
};

static refuser_t *new_refuser(int code, uint64_t hint, unsigned times,
                              fy_policy_t **out) {
  refuser_t *rs;
  cr_assert_eq(fy_policy_new(FX.ctx, &refuser_vt, sizeof(refuser_t), "lim",
                             out),
               0);
  rs = fy_policy_impl(*out);
  rs->code = code;
  rs->hint = hint;
  rs->times = times;
  return rs;
}

/* "budget": an outer policy that declares a deadline |deadline_in| ms
 * after the call's start (0: none), and, with |enforce_in| (0: never),
 * ends the call with FY_EDEADLINE that long after its start, abandoning
 * (detaching) the layers below. */
typedef struct budget_s {
  uint64_t deadline_in;
  uint64_t enforce_in;
} budget_t;

static int budget_start(fy_policy_t *p, fy_frame_t *f) {
  budget_t *b = fy_policy_impl(p);
  uint64_t now = fy_ctx_now(fy_frame_ctx(f));
  if (b->deadline_in != 0)
    fy_frame_set_deadline(f, now + b->deadline_in);
  if (b->enforce_in != 0)
    cr_assert_eq(fy_frame_arm(f, now + b->enforce_in), 0);
  return fy_frame_spawn(f, NULL);
}

static void budget_deadline(fy_policy_t *p, fy_frame_t *f) {
  fy_frame_verdict(f, p);
  fy_frame_done(f, FY_EDEADLINE);
}

static const fy_policy_vtable_t budget_vt = {
    .kind = "budget",
    .start = budget_start,
    .child_done = probe_pass_child_done,
    .deadline = budget_deadline,
};

static fy_policy_t *new_budget(uint64_t deadline_in, uint64_t enforce_in) {
  fy_policy_t *p;
  budget_t *b;
  cr_assert_eq(fy_policy_new(FX.ctx, &budget_vt, sizeof(budget_t), "budget",
                             &p),
               0);
  b = fy_policy_impl(p);
  b->deadline_in = deadline_in;
  b->enforce_in = enforce_in;
  return p;
}

/* Build |pl_main| as [outer?, retry, inner?]. */
static void make(const fy_retry_opts_t *o, fy_policy_t *outer,
                 fy_policy_t *inner) {
  fy_policy_t *layers[3];
  size_t n = 0;
  cr_assert_eq(fy_retry_new(FX.ctx, o, &retry), 0);
  cr_assert_not_null(retry);
  if (outer != NULL)
    layers[n++] = outer;
  layers[n++] = fy_retry_policy(retry);
  if (inner != NULL)
    layers[n++] = inner;
  cr_assert_eq(fy_pipeline_new(FX.ctx, layers, n, &pl_main), 0);
}

static int by_retry(const fy_call_t *call) {
  return call->detail.by_kind != NULL &&
         strcmp(call->detail.by_kind, "retry") == 0;
}

/* ====================================================================== *
 * Options
 * ====================================================================== */

Test(retry, opts_init_defaults) {
  fy_retry_opts_t o;
  memset(&o, 0xab, sizeof(o));
  fy_retry_opts_init(&o);
  cr_assert_null(o.name);
  cr_assert_eq(o.max_attempts, 3);
  cr_assert_eq(o.initial_delay_ms, 100);
  cr_assert_eq(o.max_delay_ms, 0);
  cr_assert_float_eq(o.multiplier, 2.0, 1e-12);
  cr_assert_eq(o.backoff, FY_RETRY_BACKOFF_EXPONENTIAL);
  cr_assert_eq(o.jitter, FY_RETRY_JITTER_NONE);
  cr_assert_float_eq(o.jitter_ratio, 0.2, 1e-12);
  cr_assert_eq(o.max_retry_after_ms, 30000);
  cr_assert_eq(o.require_idempotent, 0);
  cr_assert_eq(o.seed, 0);
  cr_assert_null(o.is_retryable);
  cr_assert_null(o.on_retry);
  cr_assert_eq(o.retryable_count, 0);
  cr_assert_eq(o.non_retryable_count, 0);
  cr_assert_eq(o.codes_mode, FY_RETRY_CODES_ADD);
  cr_assert_eq(fy_retry_opts_check(&o), 0);
  fy_retry_opts_init(NULL); /* harmless */
}

typedef void (*mutate_fn)(fy_retry_opts_t *o);

static void m_attempts0(fy_retry_opts_t *o) { o->max_attempts = 0; }
static void m_attempts_big(fy_retry_opts_t *o) {
  o->max_attempts = FY_RETRY_ATTEMPTS_MAX + 1;
}
static void m_attempts_neg(fy_retry_opts_t *o) {
  o->max_attempts = (unsigned)-1;
}
static void m_initial_big(fy_retry_opts_t *o) {
  o->initial_delay_ms = DAY_MS + 1;
}
static void m_initial_neg(fy_retry_opts_t *o) {
  o->initial_delay_ms = (uint64_t)-100;
}
static void m_max_big(fy_retry_opts_t *o) { o->max_delay_ms = DAY_MS + 1; }
static void m_max_neg(fy_retry_opts_t *o) { o->max_delay_ms = (uint64_t)-1; }
static void m_mult_nan(fy_retry_opts_t *o) { o->multiplier = NAN; }
static void m_mult_inf(fy_retry_opts_t *o) { o->multiplier = INFINITY; }
static void m_mult_ninf(fy_retry_opts_t *o) { o->multiplier = -INFINITY; }
static void m_mult_neg(fy_retry_opts_t *o) { o->multiplier = -2.0; }
static void m_mult_zero(fy_retry_opts_t *o) { o->multiplier = 0.0; }
static void m_mult_below1(fy_retry_opts_t *o) { o->multiplier = 0.5; }
static void m_mult_big(fy_retry_opts_t *o) { o->multiplier = 100.5; }
static void m_backoff(fy_retry_opts_t *o) {
  o->backoff = (fy_retry_backoff_t)3;
}
static void m_backoff_neg(fy_retry_opts_t *o) {
  o->backoff = (fy_retry_backoff_t)-1;
}
static void m_jitter(fy_retry_opts_t *o) {
  o->jitter = (fy_retry_jitter_t)(FY_RETRY_JITTER_RATIO + 1);
}
static void m_jitter_neg(fy_retry_opts_t *o) {
  o->jitter = (fy_retry_jitter_t)-1;
}
static void m_ratio_nan(fy_retry_opts_t *o) { o->jitter_ratio = NAN; }
static void m_ratio_inf(fy_retry_opts_t *o) { o->jitter_ratio = INFINITY; }
static void m_ratio_neg(fy_retry_opts_t *o) { o->jitter_ratio = -0.1; }
static void m_ratio_big(fy_retry_opts_t *o) { o->jitter_ratio = 1.5; }
static void m_hint_big(fy_retry_opts_t *o) {
  o->max_retry_after_ms = DAY_MS + 1;
}
static void m_idem(fy_retry_opts_t *o) { o->require_idempotent = 2; }
static void m_idem_neg(fy_retry_opts_t *o) { o->require_idempotent = -1; }
static void m_list_count(fy_retry_opts_t *o) {
  o->retryable_count = FY_RETRY_CODES_MAX + 1;
}
static void m_nlist_count(fy_retry_opts_t *o) {
  o->non_retryable_count = FY_RETRY_CODES_MAX + 1;
}
static void m_list_zero(fy_retry_opts_t *o) {
  o->retryable[0] = UV_EPIPE;
  o->retryable[1] = 0;
  o->retryable_count = 2;
}
static void m_nlist_pos(fy_retry_opts_t *o) {
  o->non_retryable[0] = 5;
  o->non_retryable_count = 1;
}
static void m_only_empty(fy_retry_opts_t *o) {
  o->codes_mode = FY_RETRY_CODES_ONLY;
}
static void m_only_empty_but_final_list(fy_retry_opts_t *o) {
  o->codes_mode = FY_RETRY_CODES_ONLY;
  o->non_retryable[0] = UV_EPIPE;
  o->non_retryable_count = 1;
}
static void m_mode_unknown(fy_retry_opts_t *o) {
  o->codes_mode = (fy_retry_codes_mode_t)2;
}
static void m_mode_neg(fy_retry_opts_t *o) {
  o->codes_mode = (fy_retry_codes_mode_t)-1;
}

Test(retry, bad_options_rejected_nothing_created) {
  static const mutate_fn bad[] = {
      m_attempts0,   m_attempts_big, m_attempts_neg, m_initial_big,
      m_initial_neg, m_max_big,      m_max_neg,      m_mult_nan,
      m_mult_inf,    m_mult_ninf,    m_mult_neg,     m_mult_zero,
      m_mult_below1, m_mult_big,     m_backoff,      m_backoff_neg,
      m_jitter,      m_jitter_neg,   m_ratio_nan,    m_ratio_inf,
      m_ratio_neg,   m_ratio_big,    m_hint_big,     m_idem,
      m_idem_neg,    m_list_count,   m_nlist_count,  m_list_zero,
      m_nlist_pos,   m_only_empty,   m_only_empty_but_final_list,
      m_mode_unknown, m_mode_neg};
  fy_ctx_stats_t st;
  size_t i;
  long before;

  fa_install(-1);
  setup_ctx();
  before = FA.live;
  for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    fy_retry_opts_t o;
    fy_retry_t *r = (fy_retry_t *)&o; /* must be overwritten with NULL */
    fy_retry_opts_init(&o);
    bad[i](&o);
    cr_assert_eq(fy_retry_opts_check(&o), UV_EINVAL, "case %zu", i);
    cr_assert_eq(fy_retry_new(FX.ctx, &o, &r), UV_EINVAL, "case %zu", i);
    cr_assert_null(r, "case %zu", i);
    cr_assert_eq(FA.live, before, "case %zu allocated", i);
  }
  fy_ctx_stats(FX.ctx, &st);
  cr_assert_eq(st.frames, 0);
  fx_finish(&FX);
  cr_assert_eq(FA.live, 0);
}

/* W11: Fortify lets a NaN multiplier through (every later delay becomes
 * 24 h).  Here NaN and infinities are refused wherever a double is taken,
 * and so are negative and overflowing integers. */
Test(retry, w11_nan_inf_negative_overflow_rejected) {
  static const double bad_mult[] = {NAN, -NAN, INFINITY, -INFINITY, -1.0,
                                    0.0, 0.999, 100.0001, 1e308};
  static const double bad_ratio[] = {NAN, INFINITY, -INFINITY, -1e-9,
                                     1.0000001};
  fy_retry_opts_t o;
  fy_retry_t *r;
  size_t i;

  setup_ctx();
  for (i = 0; i < sizeof(bad_mult) / sizeof(bad_mult[0]); i++) {
    fy_retry_opts_init(&o);
    o.multiplier = bad_mult[i];
    r = (fy_retry_t *)&o;
    cr_assert_eq(fy_retry_new(FX.ctx, &o, &r), UV_EINVAL, "multiplier %g",
                 bad_mult[i]);
    cr_assert_null(r);
  }
  for (i = 0; i < sizeof(bad_ratio) / sizeof(bad_ratio[0]); i++) {
    fy_retry_opts_init(&o);
    o.jitter = FY_RETRY_JITTER_RATIO;
    o.jitter_ratio = bad_ratio[i];
    cr_assert_eq(fy_retry_new(FX.ctx, &o, &r), UV_EINVAL, "ratio %g",
                 bad_ratio[i]);
    /* Checked even when another jitter kind is selected. */
    o.jitter = FY_RETRY_JITTER_NONE;
    cr_assert_eq(fy_retry_new(FX.ctx, &o, &r), UV_EINVAL);
  }
  fy_retry_opts_init(&o);
  o.initial_delay_ms = (uint64_t)-1; /* a negative stored unsigned */
  cr_assert_eq(fy_retry_new(FX.ctx, &o, &r), UV_EINVAL);
  fy_retry_opts_init(&o);
  o.max_retry_after_ms = UINT64_MAX;
  cr_assert_eq(fy_retry_new(FX.ctx, &o, &r), UV_EINVAL);
  /* The edges are accepted. */
  fy_retry_opts_init(&o);
  o.multiplier = 1.0;
  cr_assert_eq(fy_retry_new(FX.ctx, &o, &r), 0);
  o.multiplier = 100.0;
  cr_assert_eq(fy_retry_new(FX.ctx, &o, &r), 0);
  fx_finish(&FX);
}

Test(retry, opts_check_is_the_constructors_check) {
  fy_retry_opts_t o;
  fy_retry_t *r;
  setup_ctx();
  /* The defaults pass, and so does a zeroed struct made valid. */
  fy_retry_opts_init(&o);
  cr_assert_eq(fy_retry_opts_check(&o), 0);
  cr_assert_eq(fy_retry_opts_check(NULL), UV_EINVAL);
  /* NaN, a negative number in an unsigned field, an overflowing count. */
  o.multiplier = NAN;
  cr_assert_eq(fy_retry_opts_check(&o), UV_EINVAL);
  fy_retry_opts_init(&o);
  o.max_delay_ms = (uint64_t)-5;
  cr_assert_eq(fy_retry_opts_check(&o), UV_EINVAL);
  fy_retry_opts_init(&o);
  o.max_attempts = UINT32_MAX;
  cr_assert_eq(fy_retry_opts_check(&o), UV_EINVAL);
  fy_retry_opts_init(&o);
  o.jitter_ratio = -0.5;
  cr_assert_eq(fy_retry_opts_check(&o), UV_EINVAL);
  /* It answers as fy_retry_new() does, and creates nothing itself. */
  fy_retry_opts_init(&o);
  o.codes_mode = FY_RETRY_CODES_ONLY;
  o.retryable[0] = UV_EPIPE;
  o.retryable_count = 1;
  cr_assert_eq(fy_retry_opts_check(&o), 0);
  cr_assert_eq(fy_ctx_pending_deadlines(FX.ctx), 0);
  cr_assert_eq(fy_retry_new(FX.ctx, &o, &r), 0);
  o.retryable_count = 0;
  cr_assert_eq(fy_retry_opts_check(&o), UV_EINVAL);
  cr_assert_eq(fy_retry_new(FX.ctx, &o, &r), UV_EINVAL);
  fx_finish(&FX);
}

Test(retry, edge_options_accepted) {
  fy_retry_opts_t o;
  fy_retry_t *r;
  setup_ctx();
  fy_retry_opts_init(&o);
  o.max_attempts = FY_RETRY_ATTEMPTS_MAX;
  o.initial_delay_ms = 0;
  o.max_delay_ms = DAY_MS;
  o.multiplier = 1.0;
  o.jitter_ratio = 1.0;
  o.max_retry_after_ms = 0;
  o.require_idempotent = 1;
  o.retryable_count = FY_RETRY_CODES_MAX;
  o.non_retryable_count = FY_RETRY_CODES_MAX;
  {
    unsigned i;
    for (i = 0; i < FY_RETRY_CODES_MAX; i++) {
      o.retryable[i] = -1 - (int)i;
      o.non_retryable[i] = -100 - (int)i;
    }
  }
  cr_assert_eq(fy_retry_new(FX.ctx, &o, &r), 0);
  o.multiplier = FY_RETRY_MULTIPLIER_MAX;
  o.max_attempts = 1;
  o.name = "edge";
  cr_assert_eq(fy_retry_new(FX.ctx, &o, &r), 0);
  cr_assert_str_eq(fy_policy_name(fy_retry_policy(r)), "edge");
  cr_assert_str_eq(fy_policy_kind(fy_retry_policy(r)), "retry");
  fx_finish(&FX);
}

Test(retry, new_argument_errors) {
  fy_retry_t *r = (fy_retry_t *)&r;
  setup_ctx();
  cr_assert_eq(fy_retry_new(FX.ctx, NULL, NULL), UV_EINVAL);
  cr_assert_eq(fy_retry_new(NULL, NULL, &r), UV_EINVAL);
  cr_assert_null(r);
  cr_assert_eq(fy_retry_new(FX.ctx, NULL, &r), 0); /* NULL: the defaults */
  cr_assert_not_null(r);
  cr_assert_null(fy_retry_policy(NULL));
  cr_assert_eq(fy_retry_close(NULL, NULL, NULL), 0);
  {
    fy_retry_stats_t st;
    fy_retry_stats(NULL, &st);
    cr_assert_eq(st.retries, 0);
    fy_retry_stats(r, NULL);
  }
  fx_finish(&FX);
}

Test(retry, new_enomem_and_closing_ctx) {
  fy_retry_t *r = (fy_retry_t *)&r;
  fx_closed_t closed = {0};
  fa_install(-1);
  setup_ctx();
  fa_fail_all(1);
  cr_assert_eq(fy_retry_new(FX.ctx, NULL, &r), UV_ENOMEM);
  cr_assert_null(r);
  fa_fail_all(0);
  cr_assert_eq(fy_ctx_close(FX.ctx, fx_obj_closed, &closed), 0);
  cr_assert_eq(fy_retry_new(FX.ctx, NULL, &r), FY_ECLOSED);
  cr_assert_null(r);
  drain_loop(&closed);
  cr_assert_eq(FA.live, 0);
}

Test(retry, stop_names) {
  cr_assert_str_eq(fy_retry_stop_name(FY_RETRY_STOP_SUCCESS), "success");
  cr_assert_str_eq(fy_retry_stop_name(FY_RETRY_STOP_EXHAUSTED),
                   "exhausted");
  cr_assert_str_eq(fy_retry_stop_name(FY_RETRY_STOP_DEADLINE), "deadline");
  cr_assert_str_eq(fy_retry_stop_name(FY_RETRY_STOP_CLOSED), "closed");
  cr_assert_str_eq(fy_retry_stop_name(8), "unknown");
  cr_assert_str_eq(fy_retry_stop_name(-1), "unknown");
}

/* ====================================================================== *
 * The policy on a loop
 * ====================================================================== */

Test(retry, retries_until_success) {
  static const step_t s[] = {{UV_ECONNRESET, 10, 0, 0, 0},
                             {UV_ETIMEDOUT, 10, 0, 0, 0},
                             {0, 10, 0, 0, 0}};
  fy_retry_opts_t o;
  fy_retry_stats_t st;
  tcall_t tc;

  setup_ctx();
  o = opts_default();
  make(&o, NULL, NULL);
  script(3, s);
  OPS.with_results = TOP_RESULTS_ALL;
  cr_assert_eq(start_call(&tc, pl_main, 0), 0);
  fx_advance(&FX, 0);
  cr_assert_eq(tc.ncb, 0);
  fx_advance(&FX, 10);
  fy_retry_stats(retry, &st);
  cr_assert_eq(st.waiting, 1);
  cr_assert_eq(OPS.starts, 1);
  fx_advance(&FX, 2000);
  cr_assert_eq(tc.ncb, 1);
  cr_assert_eq(tc.status, 0);
  cr_assert_eq(OPS.starts, 3);
  cr_assert_eq(OPS.start_at[1] - t0, 110);
  cr_assert_eq(OPS.start_at[2] - t0, 320);
  cr_assert_eq(tc.at - t0, 330);
  cr_assert_not_null(tc.result);
  /* failed tries' results destroyed */
  cr_assert_eq(tres_created(), tres_destroyed());
  cr_assert_eq(tc.call.detail.attempts, 3);
  cr_assert(by_retry(&tc.call));
  cr_assert_eq(tc.call.detail.state, FY_RETRY_STOP_SUCCESS);
  cr_assert_eq(tc.call.detail.cause, UV_ETIMEDOUT);
  cr_assert_eq(tc.call.detail.n[0], 3);
  cr_assert_eq(tc.call.detail.n[1], 300);
  cr_assert_eq(tc.call.detail.n[2], 200);
  cr_assert_eq(nrecs, 2);
  cr_assert_eq(recs[0].attempt, 2);
  cr_assert_eq(recs[0].last, UV_ECONNRESET);
  cr_assert_eq(recs[0].delay, 100);
  cr_assert_eq(recs[1].attempt, 3);
  cr_assert_eq(recs[1].last, UV_ETIMEDOUT);
  cr_assert_eq(recs[1].delay, 200);
  fy_retry_stats(retry, &st);
  cr_assert_eq(st.waiting, 0);
  cr_assert_eq(st.retries, 2);
  cr_assert_eq(st.given_up, 0);
  fx_finish(&FX);
}

Test(retry, w14_exhausted_reports_last_status_and_attempts) {
  static const step_t s[] = {{UV_ECONNRESET, 5, 0, 0, 0},
                             {UV_ETIMEDOUT, 5, 0, 0, 0},
                             {UV_EPIPE, 5, 0, 0, 0}};
  fy_retry_opts_t o;
  fy_retry_stats_t st;
  tcall_t tc;

  setup_ctx();
  o = opts_default();
  make(&o, NULL, NULL);
  script(3, s);
  OPS.with_results = TOP_RESULTS_ALL;
  cr_assert_eq(start_call(&tc, pl_main, 0), 0);
  fx_advance(&FX, 10000);
  cr_assert_eq(tc.ncb, 1);
  /* The last attempt's own status, not a new code. */
  cr_assert_eq(tc.status, UV_EPIPE);
  cr_assert_eq(tc.call.detail.attempts, 3);
  cr_assert(by_retry(&tc.call));
  cr_assert_eq(tc.call.detail.state, FY_RETRY_STOP_EXHAUSTED);
  cr_assert_eq(tc.call.detail.cause, UV_EPIPE);
  cr_assert_eq(tc.call.detail.n[0], 3);
  cr_assert_eq(tc.call.detail.n[1], 300);
  /* The last failure's result still reaches the caller. */
  cr_assert_not_null(tc.result);
  cr_assert_eq(tres_created(), tres_destroyed());
  fy_retry_stats(retry, &st);
  cr_assert_eq(st.given_up, 1);
  fx_finish(&FX);
}

Test(retry, w14_non_retryable_first_failure_passes_through) {
  static const step_t s[] = {{UV_EACCES, 5, 0, 0, 0}};
  fy_retry_opts_t o;
  fy_retry_stats_t st;
  tcall_t tc;

  setup_ctx();
  o = opts_default();
  o.non_retryable[0] = UV_EACCES;
  o.non_retryable_count = 1;
  make(&o, NULL, NULL);
  script(1, s);
  cr_assert_eq(start_call(&tc, pl_main, 0), 0);
  fx_advance(&FX, 5);
  cr_assert_eq(tc.ncb, 1);
  cr_assert_eq(tc.status, UV_EACCES);
  cr_assert_eq(tc.call.detail.attempts, 1);
  /* Not reported as "exhausted": the retry leaves the detail alone. */
  cr_assert_null(tc.call.detail.by_kind);
  cr_assert_eq(nrecs, 0);
  fy_retry_stats(retry, &st);
  cr_assert_eq(st.given_up, 0);
  cr_assert_eq(fy_ctx_pending_deadlines(FX.ctx), 0);
  fx_finish(&FX);
}

/* Through a pipeline: tries that fail with UV_EPIPE (listed) then
 * UV_ECONNRESET (retried by default, not listed), then succeed. */
static void run_listed_then_unlisted(fy_retry_codes_mode_t mode,
                                     tcall_t *tc) {
  static const step_t s[] = {{UV_EPIPE, 5, 0, 0, 0},
                             {UV_ECONNRESET, 5, 0, 0, 0},
                             {0, 5, 0, 0, 0}};
  fy_retry_opts_t o;
  o = opts_default();
  only_list(&o, mode);
  make(&o, NULL, NULL);
  script(3, s);
  cr_assert_eq(start_call(tc, pl_main, 0), 0);
  fx_advance(&FX, 10000);
  cr_assert_eq(tc->ncb, 1);
}

Test(retry, codes_only_through_a_pipeline) {
  fy_retry_stats_t st;
  tcall_t tc;
  setup_ctx();
  run_listed_then_unlisted(FY_RETRY_CODES_ONLY, &tc);
  /* The listed failure was retried, the unlisted one ended the call. */
  cr_assert_eq(OPS.starts, 2);
  cr_assert_eq(tc.status, UV_ECONNRESET);
  cr_assert(by_retry(&tc.call));
  cr_assert_eq(tc.call.detail.state, FY_RETRY_STOP_NOT_RETRYABLE);
  cr_assert_eq(tc.call.detail.n[0], 2);
  cr_assert_eq(nrecs, 1);
  cr_assert_eq(recs[0].last, UV_EPIPE);
  fy_retry_stats(retry, &st);
  cr_assert_eq(st.retries, 1);
  cr_assert_eq(st.given_up, 0);
  fx_finish(&FX);
}

Test(retry, codes_add_through_a_pipeline) {
  tcall_t tc;
  setup_ctx();
  run_listed_then_unlisted(FY_RETRY_CODES_ADD, &tc);
  /* Both failures retried, as without the mode. */
  cr_assert_eq(OPS.starts, 3);
  cr_assert_eq(tc.status, 0);
  cr_assert_eq(tc.call.detail.state, FY_RETRY_STOP_SUCCESS);
  cr_assert_eq(nrecs, 2);
  cr_assert_eq(recs[1].last, UV_ECONNRESET);
  fx_finish(&FX);
}

Test(retry, success_first_try_no_timer_no_verdict) {
  static const step_t s[] = {{0, 0, 0, 0, 0}};
  fy_retry_opts_t o;
  tcall_t tc;

  setup_ctx();
  o = opts_default();
  make(&o, NULL, NULL);
  script(1, s);
  cr_assert_eq(start_call(&tc, pl_main, 0), 0);
  cr_assert_eq(tc.ncb, 0); /* never inside fy_call_start */
  cr_assert_eq(fy_ctx_pending_deadlines(FX.ctx), 0);
  fx_advance(&FX, 0);
  cr_assert_eq(tc.ncb, 1);
  cr_assert_eq(tc.status, 0);
  cr_assert_null(tc.call.detail.by_kind);
  cr_assert_eq(tc.call.detail.attempts, 1);
  fx_finish(&FX);
}

Test(retry, w12_refusals_cancel_deadline_not_retried) {
  static const int codes[] = {FY_ECIRCUITOPEN, FY_EBULKHEADFULL,
                              FY_EQUEUETIMEOUT, FY_ECLOSED, UV_ECANCELED,
                              FY_EDEADLINE};
  fy_retry_opts_t o;
  size_t i;

  setup_ctx();
  o = opts_default();
  make(&o, NULL, NULL);
  for (i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
    step_t s = {codes[i], 5, 100, 0, 0};
    tcall_t tc;
    script(1, &s);
    cr_assert_eq(start_call(&tc, pl_main, 0), 0);
    fx_advance(&FX, 1000);
    cr_assert_eq(tc.ncb, 1);
    cr_assert_eq(tc.status, codes[i]);
    cr_assert_eq(OPS.starts, 1, "%s retried", fy_err_name(codes[i]));
  }
  cr_assert_eq(nrecs, 0);
  fx_finish(&FX);
}

Test(retry, op_start_failure_is_retried) {
  static const step_t s[] = {{UV_ECONNREFUSED, 0, 0, 1, 0},
                             {UV_ECONNREFUSED, 0, 0, 1, 0},
                             {0, 3, 0, 0, 0}};
  fy_retry_opts_t o;
  tcall_t tc;

  setup_ctx();
  o = opts_default();
  make(&o, NULL, NULL);
  script(3, s);
  cr_assert_eq(start_call(&tc, pl_main, 0), 0);
  cr_assert_eq(tc.ncb, 0);
  fx_advance(&FX, 1000);
  cr_assert_eq(tc.ncb, 1);
  cr_assert_eq(tc.status, 0);
  cr_assert_eq(OPS.starts, 3);
  cr_assert_eq(OPS.start_at[2] - t0, 300);
  cr_assert_eq(tc.call.detail.attempts, 3);
  fx_finish(&FX);
}

Test(retry, zero_delay_retries_on_next_turn) {
  static const step_t s[] = {{UV_EPIPE, 0, 0, 0, 0},
                             {UV_EPIPE, 0, 0, 0, 0},
                             {0, 0, 0, 0, 0}};
  fy_retry_opts_t o;
  tcall_t tc;

  setup_ctx();
  o = opts_default();
  o.initial_delay_ms = 0;
  make(&o, NULL, NULL);
  script(3, s);
  cr_assert_eq(start_call(&tc, pl_main, 0), 0);
  cr_assert_eq(OPS.starts, 1);
  fx_advance(&FX, 0);
  cr_assert_eq(tc.ncb, 1);
  cr_assert_eq(tc.status, 0);
  cr_assert_eq(OPS.starts, 3);
  cr_assert_eq(tc.at, t0);
  cr_assert_eq(tc.call.detail.n[1], 0);
  fx_finish(&FX);
}

Test(retry, w13_on_retry_fires_after_the_backoff) {
  static const step_t s[] = {{UV_EPIPE, 0, 0, 0, 0}, {0, 10, 0, 0, 0}};
  fy_retry_opts_t o;
  tcall_t tc;

  setup_ctx();
  o = opts_default();
  o.initial_delay_ms = 500;
  make(&o, NULL, NULL);
  script(2, s);
  cr_assert_eq(start_call(&tc, pl_main, 0), 0);
  fx_advance(&FX, 499);
  cr_assert_eq(nrecs, 0); /* not before the wait */
  fx_advance(&FX, 1);
  cr_assert_eq(nrecs, 1);
  cr_assert_eq(recs[0].at - t0, 500);
  cr_assert_eq(OPS.starts, 2);
  cr_assert_eq(OPS.start_at[1] - t0, 500);
  fx_advance(&FX, 100);
  cr_assert_eq(tc.status, 0);
  fx_finish(&FX);
}

Test(retry, w13_cancel_during_backoff_keeps_last_error) {
  static const step_t s[] = {{UV_ECONNRESET, 5, 0, 0, 0}, {0, 5, 0, 0, 0}};
  fy_retry_opts_t o;
  fy_retry_stats_t st;
  tcall_t tc;

  setup_ctx();
  o = opts_default();
  make(&o, NULL, NULL);
  script(2, s);
  cr_assert_eq(start_call(&tc, pl_main, 0), 0);
  fx_advance(&FX, 50); /* failed at 5, waiting until 105 */
  cr_assert_eq(fy_ctx_pending_deadlines(FX.ctx), 1);
  cr_assert_eq(fy_call_cancel(&tc.call), 0);
  cr_assert_eq(tc.ncb, 0); /* never inside fy_call_cancel */
  cr_assert_eq(fy_ctx_pending_deadlines(FX.ctx), 0); /* disarmed */
  fx_advance(&FX, 0);
  cr_assert_eq(tc.ncb, 1);
  cr_assert_eq(tc.status, UV_ECANCELED);
  cr_assert(by_retry(&tc.call));
  cr_assert_eq(tc.call.detail.state, FY_RETRY_STOP_CANCELLED);
  cr_assert_eq(tc.call.detail.cause, UV_ECONNRESET);
  cr_assert_eq(tc.call.detail.n[0], 1);
  cr_assert_eq(tc.call.detail.n[1], 45); /* slept 5..50 */
  fx_advance(&FX, 1000);
  cr_assert_eq(nrecs, 0); /* the abandoned retry was never announced */
  cr_assert_eq(OPS.starts, 1);
  cr_assert_eq(tc.ncb, 1);
  fy_retry_stats(retry, &st);
  cr_assert_eq(st.waiting, 0);
  cr_assert_eq(st.retries, 0);
  fx_finish(&FX);
}

Test(retry, cancel_during_attempt) {
  static const step_t s[] = {{UV_EPIPE, 5, 0, 0, 0}, {0, 50, 0, 0, 0}};
  fy_retry_opts_t o;
  tcall_t tc;

  setup_ctx();
  o = opts_default();
  make(&o, NULL, NULL);
  script(2, s);
  cr_assert_eq(start_call(&tc, pl_main, 0), 0);
  fx_advance(&FX, 120); /* second try in flight since 105 */
  cr_assert_eq(OPS.starts, 2);
  cr_assert_eq(fy_call_cancel(&tc.call), 0);
  cr_assert_eq(OPS.cancels, 1);
  fx_advance(&FX, 0);
  cr_assert_eq(tc.ncb, 1);
  cr_assert_eq(tc.status, UV_ECANCELED);
  cr_assert_eq(tc.call.detail.state, FY_RETRY_STOP_CANCELLED);
  cr_assert_eq(tc.call.detail.n[0], 2);
  fx_advance(&FX, 1000);
  cr_assert_eq(OPS.starts, 2);
  cr_assert_eq(tc.ncb, 1);
  fx_finish(&FX);
}

Test(retry, op_cancels_its_own_call_from_start) {
  static const step_t s[] = {{UV_EPIPE, 5, 0, 0, 0},
                             {UV_EPIPE, 0, 0, 0, 1}};
  fy_retry_opts_t o;
  tcall_t tc;

  setup_ctx();
  o = opts_default();
  make(&o, NULL, NULL);
  script(2, s);
  cr_assert_eq(start_call(&tc, pl_main, 0), 0);
  fx_advance(&FX, 1000);
  cr_assert_eq(OPS.starts, 2);
  cr_assert_eq(OPS.cancels, 1);
  cr_assert_eq(tc.ncb, 1);
  cr_assert_eq(tc.status, UV_ECANCELED);
  fx_finish(&FX);
}

Test(retry, close_policy_with_frames_in_backoff) {
  static const step_t s[] = {{UV_EPIPE, 5, 0, 0, 0}};
  fy_retry_opts_t o;
  tcall_t tc[3];
  fy_retry_t *r2;
  int i;

  setup_ctx();
  o = opts_default();
  make(&o, NULL, NULL);
  script(1, s);
  for (i = 0; i < 3; i++)
    cr_assert_eq(start_call(&tc[i], pl_main, 0), 0);
  fx_advance(&FX, 20);
  cr_assert_eq(fy_ctx_pending_deadlines(FX.ctx), 3);
  cr_assert_eq(fy_retry_close(retry, fx_obj_closed, &closed_flag), 0);
  cr_assert_eq(fy_retry_close(retry, fx_obj_closed, &closed_flag),
               FY_ECLOSED);
  fx_advance(&FX, 0);
  for (i = 0; i < 3; i++) {
    cr_assert_eq(tc[i].ncb, 1);
    cr_assert_eq(tc[i].status, UV_ECANCELED);
    cr_assert_eq(tc[i].call.detail.state, FY_RETRY_STOP_CLOSED);
    cr_assert_eq(tc[i].call.detail.cause, UV_EPIPE);
  }
  cr_assert_eq(closed_flag.n, 1);
  cr_assert_eq(fy_ctx_pending_deadlines(FX.ctx), 0);
  fx_advance(&FX, 1000);
  cr_assert_eq(OPS.starts, 3);
  /* The pipeline refuses new calls through the closed policy. */
  {
    tcall_t late;
    cr_assert_eq(start_call(&late, pl_main, 0), FY_ECLOSED);
    cr_assert_eq(late.ncb, 0);
  }
  /* Closing a retry with nothing pending also reports once. */
  cr_assert_eq(fy_retry_new(FX.ctx, NULL, &r2), 0);
  cr_assert_eq(fy_retry_close(r2, fx_obj_closed, &closed_flag), 0);
  fx_advance(&FX, 0);
  cr_assert_eq(closed_flag.n, 2);
  fx_finish(&FX);
}

static fy_retry_t *closed_obj;
static void remember_close(void *obj, void *user_data) {
  closed_obj = obj;
  (*(int *)user_data)++;
}

Test(retry, close_policy_with_attempt_in_flight) {
  static const step_t s[] = {{0, 100, 0, 0, 0}};
  fy_retry_opts_t o;
  tcall_t tc;
  fx_closed_t closed = {0};

  setup_ctx();
  o = opts_default();
  make(&o, NULL, NULL);
  script(1, s);
  cr_assert_eq(start_call(&tc, pl_main, 0), 0);
  fx_advance(&FX, 10);
  cr_assert_eq(fy_retry_close(retry, remember_close, &closed), 0);
  fx_advance(&FX, 0);
  cr_assert_eq(OPS.cancels, 1);
  cr_assert_eq(tc.ncb, 1);
  cr_assert_eq(tc.status, UV_ECANCELED);
  cr_assert_eq(closed.n, 1);
  cr_assert_eq(closed_obj, retry); /* the callback gets the retry */
  fx_finish(&FX);
}

Test(retry, ctx_close_with_calls_in_backoff) {
  static const step_t s[] = {{UV_EPIPE, 5, 0, 0, 0}};
  fy_retry_opts_t o;
  tcall_t tc[4];
  int i;
  fx_closed_t closed = {0};

  setup_ctx();
  o = opts_default();
  make(&o, NULL, NULL);
  script(1, s);
  for (i = 0; i < 4; i++)
    cr_assert_eq(start_call(&tc[i], pl_main, 0), 0);
  fx_advance(&FX, 6);
  cr_assert_eq(fy_ctx_close(FX.ctx, fx_obj_closed, &closed), 0);
  uv_run(&FX.loop, UV_RUN_DEFAULT);
  for (i = 0; i < 4; i++) {
    cr_assert_eq(tc[i].ncb, 1);
    cr_assert_eq(tc[i].status, UV_ECANCELED);
    cr_assert_eq(tc[i].call.detail.cause, UV_EPIPE);
  }
  cr_assert_eq(closed.n, 1);
  cr_assert_eq(uv_loop_close(&FX.loop), 0);
}

Test(retry, retry_after_from_operation) {
  static const step_t s[] = {{UV_EAGAIN, 5, 700, 0, 0},
                             {UV_EAGAIN, 5, 50, 0, 0},
                             {0, 5, 0, 0, 0}};
  fy_retry_opts_t o;
  tcall_t tc;

  setup_ctx();
  o = opts_default();
  make(&o, NULL, NULL);
  script(3, s);
  cr_assert_eq(start_call(&tc, pl_main, 0), 0);
  fx_advance(&FX, 5000);
  cr_assert_eq(tc.status, 0);
  /* 700 > backoff 100: the hint wins; 50 < backoff 200: the backoff. */
  cr_assert_eq(OPS.start_at[1] - t0, 5 + 700);
  cr_assert_eq(OPS.start_at[2] - t0, 5 + 700 + 5 + 200);
  cr_assert_eq(recs[0].delay, 700);
  cr_assert_eq(recs[1].delay, 200);
  cr_assert_eq(tc.call.detail.n[1], 900);
  cr_assert_eq(tc.call.detail.n[3], 0); /* the last try had no hint */
  fx_finish(&FX);
}

Test(retry, retry_after_above_max_stops) {
  static const step_t s[] = {{UV_EAGAIN, 5, 40000, 0, 0}, {0, 5, 0, 0, 0}};
  fy_retry_opts_t o;
  fy_retry_stats_t st;
  tcall_t tc;

  setup_ctx();
  o = opts_default(); /* max_retry_after_ms 30000 */
  make(&o, NULL, NULL);
  script(2, s);
  cr_assert_eq(start_call(&tc, pl_main, 0), 0);
  fx_advance(&FX, 5);
  cr_assert_eq(tc.ncb, 1);
  cr_assert_eq(tc.status, UV_EAGAIN);
  cr_assert_eq(OPS.starts, 1);
  cr_assert(by_retry(&tc.call));
  cr_assert_eq(tc.call.detail.state, FY_RETRY_STOP_RETRY_AFTER);
  cr_assert_eq(tc.call.detail.n[3], 40000);
  cr_assert_eq(tc.call.detail.retry_after_ms, 40000); /* kept for caller */
  fy_retry_stats(retry, &st);
  cr_assert_eq(st.given_up, 1);
  fx_finish(&FX);
}

Test(retry, retry_after_ignored_when_max_is_zero) {
  static const step_t s[] = {{UV_EAGAIN, 5, 40000, 0, 0}, {0, 5, 0, 0, 0}};
  fy_retry_opts_t o;
  tcall_t tc;

  setup_ctx();
  o = opts_default();
  o.max_retry_after_ms = 0;
  make(&o, NULL, NULL);
  script(2, s);
  cr_assert_eq(start_call(&tc, pl_main, 0), 0);
  fx_advance(&FX, 1000);
  cr_assert_eq(tc.status, 0);
  cr_assert_eq(OPS.start_at[1] - t0, 105);
  fx_finish(&FX);
}

Test(retry, retry_after_from_inner_refusal) {
  static const step_t s[] = {{0, 5, 0, 0, 0}};
  fy_retry_opts_t o;
  fy_policy_t *lim;
  refuser_t *rs;
  tcall_t tc;

  setup_ctx();
  rs = new_refuser(FY_EBULKHEADFULL, 250, 1, &lim);
  o = opts_default();
  o.retryable[0] = FY_EBULKHEADFULL; /* refusals are opt-in */
  o.retryable_count = 1;
  make(&o, NULL, lim);
  script(1, s);
  cr_assert_eq(start_call(&tc, pl_main, 0), 0);
  cr_assert_eq(rs->refused, 1);
  cr_assert_eq(OPS.starts, 0);
  fx_advance(&FX, 249);
  cr_assert_eq(OPS.starts, 0);
  fx_advance(&FX, 1);
  cr_assert_eq(OPS.starts, 1); /* max(100, 250) */
  cr_assert_eq(recs[0].last, FY_EBULKHEADFULL);
  cr_assert_eq(recs[0].delay, 250);
  fx_advance(&FX, 10);
  cr_assert_eq(tc.ncb, 1);
  cr_assert_eq(tc.status, 0);
  cr_assert_eq(tc.call.detail.attempts, 1);
  cr_assert_eq(tc.call.detail.n[0], 2);
  cr_assert_eq(tc.call.detail.cause, FY_EBULKHEADFULL);
  fx_finish(&FX);
}

Test(retry, sync_refusal_not_retryable_returned_from_start) {
  fy_retry_opts_t o;
  fy_policy_t *lim;
  tcall_t tc;

  setup_ctx();
  new_refuser(FY_ECIRCUITOPEN, 1234, 100, &lim);
  o = opts_default();
  make(&o, NULL, lim);
  script(1, (step_t[]){{0, 5, 0, 0, 0}});
  cr_assert_eq(start_call(&tc, pl_main, 0), FY_ECIRCUITOPEN);
  fx_advance(&FX, 1000);
  cr_assert_eq(tc.ncb, 0); /* rule 2: never called back */
  /* The refusing policy's detail is intact. */
  cr_assert_str_eq(tc.call.detail.by_kind, "refuser");
  cr_assert_eq(tc.call.detail.state, 42);
  cr_assert_eq(tc.call.detail.retry_after_ms, 1234);
  cr_assert_eq(OPS.starts, 0);
  fx_finish(&FX);
}

Test(retry, sync_refusal_retryable_but_last_returned_from_start) {
  fy_retry_opts_t o;
  fy_policy_t *lim;
  tcall_t tc;

  setup_ctx();
  new_refuser(FY_EBULKHEADFULL, 10, 100, &lim);
  o = opts_default();
  o.max_attempts = 1;
  o.retryable[0] = FY_EBULKHEADFULL;
  o.retryable_count = 1;
  make(&o, NULL, lim);
  script(1, (step_t[]){{0, 5, 0, 0, 0}});
  cr_assert_eq(start_call(&tc, pl_main, 0), FY_EBULKHEADFULL);
  fx_advance(&FX, 100);
  cr_assert_eq(tc.ncb, 0);
  cr_assert(by_retry(&tc.call));
  cr_assert_eq(tc.call.detail.state, FY_RETRY_STOP_EXHAUSTED);
  cr_assert_eq(tc.call.detail.retry_after_ms, 10);
  fx_finish(&FX);
}

Test(retry, sync_refusals_retried_until_exhausted) {
  fy_retry_opts_t o;
  fy_policy_t *lim;
  refuser_t *rs;
  tcall_t tc;

  setup_ctx();
  rs = new_refuser(FY_EBULKHEADFULL, 0, 100, &lim);
  o = opts_default();
  o.retryable[0] = FY_EBULKHEADFULL;
  o.retryable_count = 1;
  make(&o, NULL, lim);
  script(1, (step_t[]){{0, 5, 0, 0, 0}});
  cr_assert_eq(start_call(&tc, pl_main, 0), 0); /* a retry is under way */
  fx_advance(&FX, 1000);
  cr_assert_eq(tc.ncb, 1);
  cr_assert_eq(tc.status, FY_EBULKHEADFULL);
  cr_assert_eq(rs->refused, 3);
  cr_assert_eq(tc.call.detail.attempts, 0);
  cr_assert_eq(tc.call.detail.n[0], 3);
  cr_assert_eq(tc.call.detail.state, FY_RETRY_STOP_EXHAUSTED);
  cr_assert_eq(tc.at - t0, 300);
  fx_finish(&FX);
}

Test(retry, deadline_cuts_off_the_backoff) {
  static const step_t s[] = {{UV_EPIPE, 10, 0, 0, 0}};
  fy_retry_opts_t o;
  fy_retry_stats_t st;
  tcall_t tc;

  setup_ctx();
  o = opts_default();
  make(&o, new_budget(250, 0), NULL);
  script(1, s);
  cr_assert_eq(start_call(&tc, pl_main, 0), 0);
  fx_advance(&FX, 5000);
  /* Fails at 10, retry at 110, fails at 120: 120 + 200 >= 250, so the
   * call ends at 120 with the real error instead of waiting. */
  cr_assert_eq(OPS.starts, 2);
  cr_assert_eq(tc.ncb, 1);
  cr_assert_eq(tc.status, UV_EPIPE);
  cr_assert_eq(tc.at - t0, 120);
  cr_assert(by_retry(&tc.call));
  cr_assert_eq(tc.call.detail.state, FY_RETRY_STOP_DEADLINE);
  cr_assert_eq(tc.call.detail.n[2], 200);
  fy_retry_stats(retry, &st);
  cr_assert_eq(st.given_up, 1);
  fx_finish(&FX);
}

Test(retry, deadline_passed_during_attempt) {
  static const step_t s[] = {{UV_EPIPE, 300, 0, 0, 0}};
  fy_retry_opts_t o;
  tcall_t tc;

  setup_ctx();
  o = opts_default();
  make(&o, new_budget(250, 0), NULL);
  script(1, s);
  cr_assert_eq(start_call(&tc, pl_main, 0), 0);
  fx_advance(&FX, 5000);
  cr_assert_eq(OPS.starts, 1);
  cr_assert_eq(tc.status, UV_EPIPE);
  cr_assert_eq(tc.call.detail.state, FY_RETRY_STOP_DEADLINE);
  fx_finish(&FX);
}

Test(retry, enclosing_timeout_cancels_the_try) {
  static const step_t s[] = {{UV_EPIPE, 40, 0, 0, 0}};
  fy_retry_opts_t o;
  fy_ctx_stats_t cs;
  tcall_t tc;

  setup_ctx();
  o = opts_default();
  o.backoff = FY_RETRY_BACKOFF_CONSTANT;
  make(&o, new_budget(150, 150), NULL);
  script(1, s);
  cr_assert_eq(start_call(&tc, pl_main, 0), 0);
  /* Fails at 40, waits until 140 (< 150), the retry would fail at 180:
   * the budget fires at 150 and the try is cancelled. */
  fx_advance(&FX, 1000);
  cr_assert_eq(OPS.starts, 2);
  cr_assert_eq(OPS.cancels, 1);
  cr_assert_eq(tc.ncb, 1);
  cr_assert_eq(tc.status, FY_EDEADLINE);
  cr_assert_eq(tc.at - t0, 150);
  cr_assert_str_eq(tc.call.detail.by_kind, "budget");
  fy_ctx_stats(FX.ctx, &cs);
  cr_assert_eq(cs.frames, 0);
  cr_assert_eq(cs.deadlines, 0);
  fx_finish(&FX);
}

Test(retry, detached_while_waiting_frees_the_frame) {
  static const step_t s[] = {{UV_EPIPE, 5, 0, 0, 0}};
  fy_retry_opts_t o;
  fy_retry_stats_t st;
  fy_ctx_stats_t cs;
  tcall_t tc;

  setup_ctx();
  o = opts_default();
  /* No declared deadline, but the outer layer gives up at 50 while the
   * retry waits until 105. */
  make(&o, new_budget(0, 50), NULL);
  script(1, s);
  cr_assert_eq(start_call(&tc, pl_main, 0), 0);
  fx_advance(&FX, 20);
  fy_retry_stats(retry, &st);
  cr_assert_eq(st.waiting, 1);
  fx_advance(&FX, 1000);
  cr_assert_eq(tc.ncb, 1);
  cr_assert_eq(tc.status, FY_EDEADLINE);
  cr_assert_eq(tc.at - t0, 50);
  cr_assert_eq(OPS.starts, 1);
  cr_assert_eq(nrecs, 0);
  fy_retry_stats(retry, &st);
  cr_assert_eq(st.waiting, 0);
  fy_ctx_stats(FX.ctx, &cs);
  cr_assert_eq(cs.frames, 0);
  cr_assert_eq(cs.deadlines, 0);
  fx_finish(&FX);
}

Test(retry, require_idempotent) {
  static const step_t s[] = {{UV_EPIPE, 5, 0, 0, 0},
                             {UV_EPIPE, 5, 0, 0, 0},
                             {0, 5, 0, 0, 0}};
  fy_retry_opts_t o;
  tcall_t tc;

  setup_ctx();
  o = opts_default();
  o.require_idempotent = 1;
  make(&o, NULL, NULL);
  script(3, s);
  cr_assert_eq(start_call(&tc, pl_main, 0), 0);
  fx_advance(&FX, 1000);
  cr_assert_eq(tc.status, UV_EPIPE);
  cr_assert_eq(OPS.starts, 1);
  cr_assert_eq(tc.call.detail.state, FY_RETRY_STOP_NOT_IDEMPOTENT);
  script(3, s);
  cr_assert_eq(start_call(&tc, pl_main, FY_CALL_IDEMPOTENT), 0);
  fx_advance(&FX, 1000);
  cr_assert_eq(tc.status, 0);
  cr_assert_eq(OPS.starts, 3);
  fx_finish(&FX);
}

Test(retry, idempotent_flag_ignored_by_default) {
  static const step_t s[] = {{UV_EPIPE, 5, 0, 0, 0}, {0, 5, 0, 0, 0}};
  fy_retry_opts_t o;
  tcall_t tc;
  setup_ctx();
  o = opts_default();
  make(&o, NULL, NULL);
  script(2, s);
  cr_assert_eq(start_call(&tc, pl_main, 0), 0);
  fx_advance(&FX, 1000);
  cr_assert_eq(tc.status, 0);
  cr_assert_eq(OPS.starts, 2);
  fx_finish(&FX);
}

Test(retry, predicate_decides) {
  static const step_t s[] = {{UV_EPIPE, 5, 0, 0, 0},
                             {UV_ECONNRESET, 5, 0, 0, 0}};
  fy_retry_opts_t o;
  tcall_t tc;
  setup_ctx();
  o = opts_default();
  o.is_retryable = pred_answer;
  o.user_data = &pred_calls;
  o.on_retry = NULL;
  make(&o, NULL, NULL);
  script(2, s);
  cr_assert_eq(start_call(&tc, pl_main, 0), 0);
  fx_advance(&FX, 1000);
  cr_assert_eq(OPS.starts, 2); /* EPIPE retried, ECONNRESET final */
  cr_assert_eq(tc.status, UV_ECONNRESET);
  cr_assert_eq(tc.call.detail.state, FY_RETRY_STOP_NOT_RETRYABLE);
  cr_assert_eq(pred_calls, 2);
  fx_finish(&FX);
}

/* ---- re-entrancy -------------------------------------------------------- */

Test(retry, on_retry_cancels_the_call) {
  static const step_t s[] = {{UV_EPIPE, 5, 0, 0, 0}, {0, 5, 0, 0, 0}};
  fy_retry_opts_t o;
  tcall_t tc;

  setup_ctx();
  o = opts_default();
  retry_action = ACT_CANCEL_CALL;
  make(&o, NULL, NULL);
  script(2, s);
  cr_assert_eq(start_call(&tc, pl_main, 0), 0);
  fx_advance(&FX, 1000);
  cr_assert_eq(nrecs, 1);
  cr_assert_eq(OPS.starts, 1); /* the retry did not start */
  cr_assert_eq(tc.ncb, 1);
  cr_assert_eq(tc.status, UV_ECANCELED);
  cr_assert_eq(tc.call.detail.cause, UV_EPIPE);
  cr_assert_eq(tc.call.detail.state, FY_RETRY_STOP_CANCELLED);
  fx_finish(&FX);
}

Test(retry, on_retry_closes_the_pipeline) {
  static const step_t s[] = {{UV_EPIPE, 5, 0, 0, 0}, {0, 50, 0, 0, 0}};
  fy_retry_opts_t o;
  tcall_t tc;

  setup_ctx();
  o = opts_default();
  retry_action = ACT_CLOSE_PIPELINE;
  make(&o, NULL, NULL);
  script(2, s);
  cr_assert_eq(start_call(&tc, pl_main, 0), 0);
  fx_advance(&FX, 1000);
  cr_assert_eq(nrecs, 1);
  cr_assert_eq(tc.ncb, 1);
  cr_assert_eq(tc.status, UV_ECANCELED);
  cr_assert_eq(closed_flag.n, 1);
  fx_finish(&FX);
}

Test(retry, on_retry_closes_the_policy) {
  static const step_t s[] = {{UV_EPIPE, 5, 0, 0, 0}, {0, 5, 0, 0, 0}};
  fy_retry_opts_t o;
  tcall_t tc;

  setup_ctx();
  o = opts_default();
  retry_action = ACT_CLOSE_POLICY;
  make(&o, NULL, NULL);
  script(2, s);
  cr_assert_eq(start_call(&tc, pl_main, 0), 0);
  fx_advance(&FX, 1000);
  cr_assert_eq(OPS.starts, 1);
  cr_assert_eq(tc.ncb, 1);
  cr_assert_eq(tc.status, UV_ECANCELED);
  cr_assert_eq(tc.call.detail.state, FY_RETRY_STOP_CLOSED);
  cr_assert_eq(tc.call.detail.cause, UV_EPIPE);
  cr_assert_eq(closed_flag.n, 1);
  fx_finish(&FX);
}

Test(retry, on_retry_closes_the_context) {
  static const step_t s[] = {{UV_EPIPE, 5, 0, 0, 0}, {0, 50, 0, 0, 0}};
  fy_retry_opts_t o;
  tcall_t tc;

  setup_ctx();
  o = opts_default();
  retry_action = ACT_CLOSE_CTX;
  make(&o, NULL, NULL);
  script(2, s);
  cr_assert_eq(start_call(&tc, pl_main, 0), 0);
  fx_advance(&FX, 200);
  uv_run(&FX.loop, UV_RUN_DEFAULT);
  cr_assert_eq(tc.ncb, 1);
  cr_assert_eq(tc.status, UV_ECANCELED);
  cr_assert_eq(closed_flag.n, 1);
  cr_assert_eq(uv_loop_close(&FX.loop), 0);
}

/* A listener that calls back into the library: on the first retry event
 * it starts a second call through the same pipeline and cancels the
 * first; on the second call's retry it closes the policy. */
static tcall_t re_a, re_b;
static int re_events;

static void reenter_listener(fy_ctx_t *c, const fy_event_t *ev, void *ud) {
  fy_retry_stats_t st;
  (void)c;
  (void)ud;
  cr_assert_eq(ev->type, FY_EV_RETRY);
  re_events++;
  fy_retry_stats(retry, &st); /* reading the policy from inside */
  if (ev->call == &re_a.call) {
    cr_assert_eq(start_call(&re_b, pl_main, 0), 0);
    cr_assert_eq(fy_call_cancel(&re_a.call), 0);
  } else if (ev->call == &re_b.call) {
    cr_assert_eq(fy_retry_close(retry, fx_obj_closed, &closed_flag), 0);
  }
}

Test(retry, listener_reenters_the_policy) {
  static const step_t s[] = {{UV_EPIPE, 5, 0, 0, 0}};
  fy_retry_opts_t o;
  fy_listener_t *l;

  setup_ctx();
  o = opts_default();
  make(&o, NULL, NULL);
  script(1, s);
  cr_assert_eq(fy_ctx_listen(FX.ctx, FY_EV_MASK(FY_EV_RETRY), reenter_listener,
                             NULL, &l),
               0);
  cr_assert_eq(start_call(&re_a, pl_main, 0), 0);
  fx_advance(&FX, 5000);
  cr_assert_eq(re_a.ncb, 1);
  cr_assert_eq(re_a.status, UV_ECANCELED);
  cr_assert_eq(re_a.call.detail.cause, UV_EPIPE);
  cr_assert_eq(re_b.ncb, 1);
  cr_assert_eq(re_b.status, UV_ECANCELED);
  cr_assert_eq(re_b.call.detail.state, FY_RETRY_STOP_CLOSED);
  cr_assert_eq(re_events, 2);
  cr_assert_eq(closed_flag.n, 1);
  cr_assert_eq(OPS.starts, 2); /* neither retry started */
  fx_finish(&FX);
}

/* ---- events ------------------------------------------------------------ */
static evrec_t E;

Test(retry, retry_event_fields) {
  static const step_t s[] = {{UV_EPIPE, 5, 0, 0, 0},
                             {UV_ECONNRESET, 5, 0, 0, 0},
                             {0, 5, 0, 0, 0}};
  fy_retry_opts_t o;
  tcall_t tc;

  setup_ctx();
  o = opts_default();
  o.name = "api";
  make(&o, NULL, NULL);
  script(3, s);
  evrec_listen(&E, FX.ctx, FY_EV_MASK(FY_EV_RETRY));
  cr_assert_eq(start_call(&tc, pl_main, 0), 0);
  fx_advance(&FX, 5000);
  cr_assert_eq(tc.status, 0);
  cr_assert_eq(E.n, 2);
  cr_assert_eq(E.ev[0].type, FY_EV_RETRY);
  cr_assert_eq(E.ev[0].time_ms - t0, 105);
  cr_assert_eq(E.ev[0].call, &tc.call);
  cr_assert_eq(E.ev[0].policy, fy_retry_policy(retry));
  cr_assert_str_eq(E.ev[0].policy_kind, "retry");
  cr_assert_eq(E.ev[0].status, UV_EPIPE);
  cr_assert_eq(E.ev[0].attempt, 1);
  cr_assert_eq(E.ev[0].delay_ms, 100);
  cr_assert_eq(E.ev[0].value, 100);
  cr_assert_eq(E.ev[1].time_ms - t0, 105 + 5 + 200);
  cr_assert_eq(E.ev[1].status, UV_ECONNRESET);
  cr_assert_eq(E.ev[1].attempt, 2);
  cr_assert_eq(E.ev[1].delay_ms, 200);
  cr_assert_eq(E.ev[1].value, 300);
  fy_listener_remove(E.listener);
  fx_finish(&FX);
}

/* ---- jitter on the loop ------------------------------------------------ */

static void run_jittered(uint64_t seed, uint64_t *starts) {
  static const step_t s[] = {{UV_EPIPE, 1, 0, 0, 0}};
  fy_retry_opts_t o;
  tcall_t tc;
  unsigned i;

  setup_ctx();
  o = opts_default();
  o.max_attempts = 6;
  o.jitter = FY_RETRY_JITTER_FULL;
  o.seed = seed;
  make(&o, NULL, NULL);
  script(1, s);
  cr_assert_eq(start_call(&tc, pl_main, 0), 0);
  fx_advance(&FX, 100000);
  cr_assert_eq(tc.ncb, 1);
  cr_assert_eq(OPS.starts, 6);
  for (i = 0; i < 6; i++)
    starts[i] = OPS.start_at[i] - t0;
  for (i = 1; i < 6; i++) /* full jitter: within [0, 100 * 2^(i-1)] */
    cr_assert_leq(starts[i] - starts[i - 1] - 1, 100u << (i - 1));
  fx_finish(&FX);
}

Test(retry, seeded_jitter_is_reproducible) {
  uint64_t a[6], b[6], c[6];
  run_jittered(12345, a);
  run_jittered(12345, b);
  run_jittered(54321, c);
  cr_assert_arr_eq(a, b, sizeof(a));
  cr_assert(memcmp(a, c, sizeof(a)) != 0);
}

/* ---- allocation --------------------------------------------------------- */

Test(retry, no_allocation_per_call) {
  static const step_t s[] = {{UV_EPIPE, 5, 0, 0, 0}, {0, 5, 0, 0, 0}};
  fy_retry_opts_t o;
  tcall_t tc;
  long before;
  int i;

  fa_install(-1);
  setup_ctx();
  o = opts_default();
  make(&o, NULL, NULL);
  /* Warm the freelists, then count. */
  script(2, s);
  cr_assert_eq(start_call(&tc, pl_main, 0), 0);
  fx_advance(&FX, 1000);
  before = FA.requests;
  for (i = 0; i < 10; i++) {
    script(2, s);
    cr_assert_eq(start_call(&tc, pl_main, 0), 0);
    fx_advance(&FX, 1000);
    cr_assert_eq(tc.status, 0);
  }
  /* The freelists are bypassed under ASan and with FY_NO_POOL. */
#if !defined(__SANITIZE_ADDRESS__) && !defined(FY_NO_POOL)
  cr_assert_eq(FA.requests, before);
#else
  (void)before;
#endif
  fx_finish(&FX);
  cr_assert_eq(FA.live, 0);
}
