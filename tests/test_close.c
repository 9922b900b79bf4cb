/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * Asynchronous close (rule 4): a context closing with calls pending, and
 * closing a context, a pipeline or a policy from inside every kind of
 * callback -- call completion, operation start and cancel, deadline,
 * listener, every policy hook, pipeline and policy close callbacks. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"

static probe_t P, P2;
static top_t T;
static tcall_t C[4];

TestSuite(close);

static void never_cb(fy_call_t *call, int status) {
  (void)call;
  (void)status;
  cr_assert_fail("callback of a refused call ran");
}

Test(close, ctx_close_with_calls_pending) {
  fy_pipeline_t *pl;
  int i;
  fx_init(&FX, 0);
  P.cancel = PROBE_CANCEL_FORWARD;
  pl = fx_pipeline(&FX, 2, fx_probe(&FX, &P, "p"), fx_passthrough(&FX, "t"));
  T.with_results = 1;
  for (i = 0; i < 3; i++)
    cr_assert_eq(tcall_start(&C[i], pl, &top_op_cancel_sync, &T), 0);
  g_nested = 1;
  cr_assert_eq(fx_close(&FX), 0);
  g_nested = 0;
  cr_assert_eq(fy_ctx_close(FX.ctx, NULL, NULL), FY_ECLOSED);
  cr_assert_eq(fy_ctx_close(NULL, NULL, NULL), 0);
  for (i = 0; i < 3; i++)
    cr_assert_eq(C[i].ncb, 0, "completed inside fy_ctx_close");
  /* Closing: everything new is refused. */
  cr_assert_eq(fy_call_start(&C[3].call, pl, &top_op_nocancel, &T, never_cb),
               FY_ECLOSED);
  fx_finish(&FX);
  for (i = 0; i < 3; i++) {
    cr_assert_eq(C[i].ncb, 1);
    cr_assert_eq(C[i].nested, 0);
    cr_assert_eq(C[i].status, UV_ECANCELED);
  }
  cr_assert_eq(T.cancels, 3);
  cr_assert_eq(P.hooks[PROBE_HOOK_CLOSE], 1);
  cr_assert_eq(P.hooks[PROBE_HOOK_DESTROY], 1);
  cr_assert_eq(P.violations, 0);
  cr_assert_eq(tres_created(), 3);
  cr_assert_eq(tres_destroyed(), 3);
}

static void ev_never(fy_ctx_t *ctx, const fy_event_t *ev, void *ud) {
  (void)ctx;
  (void)ev;
  (void)ud;
  cr_assert_fail("listener of a refused registration ran");
}

Test(close, constructors_refuse_while_closing) {
  fy_pipeline_t *pl = NULL;
  fy_policy_t *p = NULL;
  fy_listener_t *l = NULL;
  probe_t pr;
  fx_init(&FX, 0);
  memset(&pr, 0, sizeof(pr));
  cr_assert_eq(fx_close(&FX), 0);
  cr_assert_eq(fy_pipeline_new(FX.ctx, NULL, 0, &pl), FY_ECLOSED);
  cr_assert_null(pl);
  cr_assert_eq(fy_passthrough_new(FX.ctx, "x", &p), FY_ECLOSED);
  cr_assert_null(p);
  cr_assert_eq(probe_new(FX.ctx, &pr, "x"), FY_ECLOSED);
  cr_assert_eq(fy_ctx_listen(FX.ctx, FY_EV_ALL, ev_never, NULL, &l),
               FY_ECLOSED);
  cr_assert_null(l);
  fx_finish(&FX);
}

Test(close, ctx_close_waits_for_operations_to_report) {
  fy_pipeline_t *pl;
  fx_init(&FX, 0);
  pl = fx_pipeline(&FX, 1, fx_probe(&FX, &P, "p"));
  cr_assert_eq(tcall_start(&C[0], pl, &top_op_nocancel, &T), 0);
  cr_assert_eq(tcall_start(&C[1], pl, &top_op_cancel_later, &T), 0);
  cr_assert_eq(fx_close(&FX), 0);
  fx_advance(&FX, 0);
  uv_run(&FX.loop, UV_RUN_DEFAULT); /* returns: nothing to wait on */
  cr_assert_eq(FX.closed, 0, "closed with attempts still running");
  cr_assert_eq(C[0].ncb + C[1].ncb, 0);
  cr_assert_eq(T.cancels, 1);
  cr_assert_eq(top_report(&T, 0, 0), 0);
  cr_assert_eq(top_report(&T, 1, UV_ECANCELED), 0);
  cr_assert_eq(C[0].status, 0);
  cr_assert_eq(C[1].status, UV_ECANCELED);
  fx_finish(&FX);
  cr_assert_eq(C[0].ncb, 1);
  cr_assert_eq(C[1].ncb, 1);
}

Test(close, ctx_close_waits_for_detached_attempts) {
  fy_pipeline_t *pl;
  fx_init(&FX, 0);
  P.timeout_ms = 10;
  pl = fx_pipeline(&FX, 1, fx_probe(&FX, &P, "to"));
  T.with_results = 1;
  cr_assert_eq(tcall_start(&C[0], pl, &top_op_cancel_later, &T), 0);
  fx_advance(&FX, 10);
  cr_assert_eq(C[0].status, UV_ETIMEDOUT);
  cr_assert_eq(fx_close(&FX), 0);
  fx_advance(&FX, 0);
  uv_run(&FX.loop, UV_RUN_DEFAULT);
  cr_assert_eq(FX.closed, 0);
  cr_assert_eq(top_report(&T, 0, 0), 0); /* late */
  fx_finish(&FX);
  cr_assert_eq(C[0].ncb, 1);
  cr_assert_eq(tres_destroyed(), 1);
}

Test(close, pipeline_closed_before_ctx_gets_its_callback_first) {
  fx_closed_t pc = {0}, qc = {0};
  fy_pipeline_t *pl;
  fx_init(&FX, 0);
  pl = fx_pipeline(&FX, 1, fx_probe(&FX, &P, "p"));
  fx_probe(&FX, &P2, "p2");
  cr_assert_eq(fy_pipeline_close(pl, fx_obj_closed, &pc), 0);
  cr_assert_eq(fy_policy_close(P2.policy, fx_obj_closed, &qc), 0);
  cr_assert_eq(fx_close(&FX), 0);
  fx_finish(&FX);
  cr_assert_eq(pc.n, 1);
  cr_assert_eq(qc.n, 1);
  cr_assert_eq(P.hooks[PROBE_HOOK_DESTROY], 1);
  cr_assert_eq(P2.hooks[PROBE_HOOK_DESTROY], 1);
}

/* ---- closing from inside every kind of callback ------------------------- */

enum {
  AT_CALL_CB,
  AT_OP_START,
  AT_OP_CANCEL,
  AT_DEADLINE,
  AT_LISTENER,
  AT_P_START,
  AT_P_CHILD_DONE,
  AT_P_CANCEL,
  AT_P_DEADLINE,
  AT_P_PROGRESS,
  AT_P_CLOSE,     /* P2's close hook */
  AT_P_DESTROY,   /* P2's destroy hook */
  AT_PIPELINE_CB, /* PL2's close callback */
  AT_POLICY_CB,   /* P2's close callback */
  AT__COUNT
};

enum { WHAT_CTX, WHAT_PIPELINE, WHAT_POLICY };

static int where, what, fired;
static fy_pipeline_t *PL, *PL2;
static fx_closed_t pl_closed, pl2_closed, p_closed, p2_closed;
static fy_deadline_t D;

static void trigger(int at) {
  if (at != where || fired)
    return;
  fired = 1;
  switch (what) {
  case WHAT_CTX:
    cr_assert_eq(fx_close(&FX), 0);
    break;
  case WHAT_PIPELINE:
    cr_assert_eq(fy_pipeline_close(PL, fx_obj_closed, &pl_closed), 0);
    break;
  default:
    cr_assert_eq(fy_policy_close(P.policy, fx_obj_closed, &p_closed), 0);
    break;
  }
}

static void on_hook(probe_t *pr, probe_hook_t hook, fy_frame_t *f) {
  (void)f;
  if (pr == &P) {
    switch (hook) {
    case PROBE_HOOK_START: trigger(AT_P_START); break;
    case PROBE_HOOK_CHILD_DONE: trigger(AT_P_CHILD_DONE); break;
    case PROBE_HOOK_CANCEL: trigger(AT_P_CANCEL); break;
    case PROBE_HOOK_DEADLINE: trigger(AT_P_DEADLINE); break;
    case PROBE_HOOK_PROGRESS: trigger(AT_P_PROGRESS); break;
    default: break;
    }
  } else if (hook == PROBE_HOOK_CLOSE) {
    trigger(AT_P_CLOSE);
  } else if (hook == PROBE_HOOK_DESTROY) {
    trigger(AT_P_DESTROY);
  }
}

static void op_start_hook(top_t *t, fy_attempt_t *a) {
  (void)t;
  (void)a;
  trigger(AT_OP_START);
}
static void op_cancel_hook(top_t *t, fy_attempt_t *a) {
  (void)t;
  (void)a;
  trigger(AT_OP_CANCEL);
}
static void call_then(tcall_t *tc, int status) {
  (void)tc;
  (void)status;
  trigger(AT_CALL_CB);
}
static void on_deadline(fy_deadline_t *d) {
  (void)d;
  trigger(AT_DEADLINE);
}
static void on_event(fy_ctx_t *ctx, const fy_event_t *ev, void *ud) {
  (void)ctx;
  (void)ev;
  (void)ud;
  trigger(AT_LISTENER);
}
static void pl2_cb(void *obj, void *ud) {
  fx_obj_closed(obj, ud);
  trigger(AT_PIPELINE_CB);
}
static void p2_cb(void *obj, void *ud) {
  fx_obj_closed(obj, ud);
  trigger(AT_POLICY_CB);
}

static int ctx_gone(void) { return FX.close_requested; }

static void world(int w, int wh) {
  int rc[4], i;
  where = w;
  what = wh;
  fired = 0;
  memset(&P, 0, sizeof(P));
  memset(&P2, 0, sizeof(P2));
  memset(&T, 0, sizeof(T));
  memset(C, 0, sizeof(C));
  memset(&pl_closed, 0, sizeof(pl_closed));
  memset(&pl2_closed, 0, sizeof(pl2_closed));
  memset(&p_closed, 0, sizeof(p_closed));
  memset(&p2_closed, 0, sizeof(p2_closed));
  fx_init(&FX, 0);
  P.cancel = PROBE_CANCEL_FORWARD;
  P.timeout_ms = 50;
  P.on_hook = on_hook;
  P2.on_hook = on_hook;
  fx_probe(&FX, &P, "p");
  fx_probe(&FX, &P2, "p2");
  PL = fx_pipeline(&FX, 2, P.policy, fx_passthrough(&FX, "pt"));
  PL2 = fx_pipeline(&FX, 0);
  cr_assert_eq(fy_ctx_listen(FX.ctx,
                             FY_EV_MASK(FY_EV_ATTEMPT_DONE) |
                                 FY_EV_MASK(FY_EV_CALL_DONE),
                             on_event, NULL, NULL),
               0);
  fy_deadline_init(FX.ctx, &D, on_deadline);
  cr_assert_eq(fy_deadline_start(&D, 20), 0);
  T.with_results = 1;
  T.on_start = op_start_hook;
  T.on_cancel = op_cancel_hook;
  for (i = 0; i < 4; i++)
    C[i].then = call_then;
  for (i = 0; i < 3; i++) {
    rc[i] = tcall_start(&C[i], PL, &top_op_cancel_sync, &T);
    cr_assert(rc[i] == 0 || rc[i] == FY_ECLOSED, "%s", fy_err_name(rc[i]));
  }
  rc[3] = FY_ECLOSED;

  /* Stimuli, each reaching some of the callbacks above. */
  if (T.att[0] != NULL)
    fy_attempt_mark(T.att[0]);                     /* progress */
  top_report(&T, 0, 0);                            /* child_done, call cb,
                                                      listener */
  tcall_cancel(&C[1]);                             /* cancel hooks */
  if (!ctx_gone() && pl_closed.n == 0)
    rc[3] = tcall_start(&C[3], PL, &top_op_cancel_sync, &T);
  cr_assert(rc[3] == 0 || rc[3] == FY_ECLOSED, "%s", fy_err_name(rc[3]));
  fx_advance(&FX, 20);                             /* deadline */
  fx_advance(&FX, 100);                            /* policy deadline */
  if (!ctx_gone())
    cr_assert_eq(fy_pipeline_close(PL2, pl2_cb, &pl2_closed), 0);
  fx_advance(&FX, 0);                              /* pipeline close cb */
  if (!ctx_gone())
    cr_assert_eq(fy_policy_close(P2.policy, p2_cb, &p2_closed), 0);
  fx_advance(&FX, 0);                              /* close, destroy, cb */
  cr_assert(fired, "never reached trigger point %d", w);

  fx_finish(&FX);

  for (i = 0; i < 4; i++) {
    if (rc[i] == 0)
      cr_assert_eq(C[i].ncb, 1, "where %d what %d: call %d ran %u times", w,
                   wh, i, C[i].ncb);
    else
      cr_assert_eq(C[i].ncb, 0);
    cr_assert_eq(C[i].nested, 0);
  }
  cr_assert_eq(top_live(&T), 0);
  cr_assert_eq(P.hooks[PROBE_HOOK_DESTROY], 1);
  cr_assert_eq(P2.hooks[PROBE_HOOK_DESTROY], 1);
  cr_assert_eq(P.hooks[PROBE_HOOK_CLOSE], 1);
  cr_assert_eq(P2.hooks[PROBE_HOOK_CLOSE], 1);
  cr_assert_eq(P.violations + P2.violations, 0);
  cr_assert_eq(tres_created(), tres_destroyed(), "results leaked");
  cr_assert_eq(tres_errors(), 0);
  cr_assert_leq(pl2_closed.n, 1);
  cr_assert_leq(p2_closed.n, 1);
  if (wh == WHAT_PIPELINE)
    cr_assert_eq(pl_closed.n, 1);
  if (wh == WHAT_POLICY)
    cr_assert_eq(p_closed.n, 1);
}

Test(close, ctx_close_from_inside_every_callback) {
  for (int w = 0; w < AT__COUNT; w++)
    world(w, WHAT_CTX);
}

Test(close, pipeline_close_from_inside_every_callback) {
  for (int w = 0; w < AT__COUNT; w++)
    world(w, WHAT_PIPELINE);
}

Test(close, policy_close_from_inside_every_callback) {
  for (int w = 0; w < AT__COUNT; w++)
    world(w, WHAT_POLICY);
}

/* ---- freeing from inside callbacks during a close ----------------------- */

static void free_it(tcall_t *tc, int status) {
  (void)status;
  memset(tc, 0x5A, sizeof(*tc));
  free(tc);
}

Test(close, calls_freed_by_their_callbacks_during_close) {
  fy_pipeline_t *pl;
  int i;
  fx_init(&FX, 0);
  pl = fx_pipeline(&FX, 2, fx_probe(&FX, &P, "p"), fx_passthrough(&FX, "t"));
  T.with_results = 1;
  for (i = 0; i < 8; i++) {
    tcall_t *tc = calloc(1, sizeof(*tc));
    tc->then = free_it;
    cr_assert_eq(tcall_start(tc, pl, &top_op_cancel_sync, &T), 0);
  }
  fx_finish(&FX);
  cr_assert_eq(g_completions, 8);
  cr_assert_eq(T.cancels, 8);
  cr_assert_eq(tres_destroyed(), 8);
}

static fy_pipeline_t *again_pl;
static void start_again(tcall_t *tc, int status) {
  /* A new call from inside a completion during close: refused at once. */
  (void)status;
  cr_assert_eq(fy_call_start(&tc->call, again_pl, &top_op_nocancel, &T,
                             never_cb),
               FY_ECLOSED);
}

Test(close, new_calls_from_callbacks_during_close_are_refused) {
  fx_init(&FX, 0);
  again_pl = fx_pipeline(&FX, 1, fx_probe(&FX, &P, "p"));
  C[0].then = start_again;
  cr_assert_eq(tcall_start(&C[0], again_pl, &top_op_cancel_sync, &T), 0);
  fx_finish(&FX);
  cr_assert_eq(C[0].ncb, 1);
  cr_assert_eq(C[0].status, UV_ECANCELED);
}

Test(close, close_callback_runs_on_a_fresh_stack) {
  fx_init(&FX, 0);
  cr_assert_eq(fx_close(&FX), 0);
  fx_advance(&FX, 0);
  cr_assert_eq(FX.closed, 0, "close cb must come from the loop");
  fx_finish(&FX);
}

/* The close callback receives the context, alive until it returns (as a
 * pipeline's or a policy's): its data can be read there. */
static void read_data_cb(void *obj, void *ud) {
  fy_ctx_t *ctx = obj;
  *(void **)ud = fy_ctx_get_data(ctx);
  cr_assert_eq(fy_ctx_loop(ctx), &FX.loop);
  FX.closed++;
  FX.closed_ptr = obj;
  FX.closed_ud = &FX;
}

Test(close, ctx_is_readable_inside_its_close_callback) {
  void *seen = NULL;
  fx_init(&FX, 0);
  fy_ctx_set_data(FX.ctx, &FX);
  FX.close_requested = 1;
  cr_assert_eq(fy_ctx_close(FX.ctx, read_data_cb, &seen), 0);
  fx_finish(&FX);
  cr_assert_eq(seen, &FX);
}
