/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * Bulkhead: the policy on a manual-clock context (the pure state machine's
 * tests are in test_bulkhead_sm.c).  Every loop test ends with finish()
 * (fx_finish_counted): close the context, run the loop until its close
 * callback ran, uv_loop_close() == 0, and no block left allocated. */
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "fortify.h"
#include "fixture.h"

/* ---- fixture: FX at 1000 ms with the counting allocator (support/) ---- */

static void setup(void) { fx_init_counted(&FX, 1000); }
static void finish(void) { fx_finish_counted(&FX); }

/* The operation is a top_t per call (support/probe.h): asynchronous unless
 * scripted, reported with top_finish(), cancelled synchronously. */

/* ---- calls ------------------------------------------------------------- */

typedef struct req_s {
  fy_call_t call;
  top_t work;
  int refuse;         /* the refuser policy below refuses with this */
  int done;
  int status;
  int seq;
  fy_detail_t detail;
  void (*then)(struct req_s *req); /* runs inside the callback */
} req_t;

static int done_seq;

static void on_done(fy_call_t *call, int status) {
  req_t *r = fy_container_of(call, req_t, call);
  r->done++;
  r->status = status;
  r->seq = ++done_seq;
  r->detail = call->detail;
  if (r->then != NULL)
    r->then(r);
}

static int start(req_t *r, fy_pipeline_t *pl) {
  r->work.data = r;
  return fy_call_start(&r->call, pl, &top_op_cancel_sync, &r->work, on_done);
}

/* ---- recording callbacks ----------------------------------------------- */

static int rejected[16];
static int nrejected;

static void record_rejected(int reason, void *ud) {
  (void)ud;
  cr_assert_lt(nrejected, 16);
  rejected[nrejected++] = reason;
}

static evrec_t E; /* the events, when a test listens */

static fy_bulkhead_t *make_bh(uint32_t max_concurrent, uint32_t max_queue,
                              uint64_t timeout, fy_bulkhead_order_t order) {
  fy_bulkhead_opts_t o;
  fy_bulkhead_t *bh = NULL;
  fy_bulkhead_opts_init(&o);
  o.max_concurrent = max_concurrent;
  o.max_queue = max_queue;
  o.queue_timeout_ms = timeout;
  o.order = order;
  o.on_rejected = record_rejected;
  o.name = "bh";
  cr_assert_eq(fy_bulkhead_new(FX.ctx, &o, &bh), 0);
  cr_assert_not_null(bh);
  return bh;
}

static fy_pipeline_t *make_pl(fy_policy_t *const *policies, size_t n) {
  fy_pipeline_t *pl = NULL;
  cr_assert_eq(fy_pipeline_new(FX.ctx, policies, n, &pl), 0);
  return pl;
}

static fy_pipeline_t *pl_of(fy_bulkhead_t *bh) {
  fy_policy_t *p = fy_bulkhead_policy(bh);
  return make_pl(&p, 1);
}

/* ======================================================================== *
 * Options.
 * ======================================================================== */

Test(bulkhead, opts_defaults) {
  fy_bulkhead_opts_t o;
  fy_bulkhead_t *bh;
  memset(&o, 0xab, sizeof(o));
  fy_bulkhead_opts_init(&o);
  cr_assert_eq(o.max_concurrent, 10);
  cr_assert_eq(o.max_queue, 0);
  cr_assert_eq(o.queue_timeout_ms, 0);
  cr_assert_eq(o.order, FY_BULKHEAD_FIFO);
  cr_assert_null(o.on_rejected);
  cr_assert_null(o.user_data);
  cr_assert_null(o.name);
  fy_bulkhead_opts_init(NULL); /* no crash */

  setup();
  cr_assert_eq(fy_bulkhead_new(FX.ctx, NULL, &bh), 0);
  cr_assert_str_eq(fy_policy_kind(fy_bulkhead_policy(bh)), "bulkhead");
  cr_assert_eq(fy_bulkhead_active(bh), 0);
  cr_assert_eq(fy_bulkhead_queued(bh), 0);
  for (int i = 0; i < 10; i++)
    cr_assert_eq(fy_bulkhead_try_acquire(bh), 0);
  cr_assert_eq(fy_bulkhead_try_acquire(bh), FY_EBULKHEADFULL);
  for (int i = 0; i < 10; i++)
    fy_bulkhead_release(bh);
  finish();
}

Test(bulkhead, opts_check_without_a_context) {
  fy_bulkhead_opts_t o;
  fy_bulkhead_opts_init(&o);
  cr_assert_eq(fy_bulkhead_opts_check(&o), 0);
  cr_assert_eq(fy_bulkhead_opts_check(NULL), UV_EINVAL);
  o.max_queue = (uint32_t)-1; /* a negative number, stored unsigned */
  cr_assert_eq(fy_bulkhead_opts_check(&o), UV_EINVAL);
  fy_bulkhead_opts_init(&o);
  o.queue_timeout_ms = FY_BULKHEAD_TIMEOUT_MAX + 1; /* overflows int64 */
  cr_assert_eq(fy_bulkhead_opts_check(&o), UV_EINVAL);
  fy_bulkhead_opts_init(&o);
  o.max_concurrent = 0;
  cr_assert_eq(fy_bulkhead_opts_check(&o), UV_EINVAL);
  o.max_concurrent = FY_BULKHEAD_LIMIT_MAX;
  o.max_queue = FY_BULKHEAD_LIMIT_MAX;
  o.queue_timeout_ms = FY_BULKHEAD_TIMEOUT_MAX;
  o.order = FY_BULKHEAD_LIFO;
  cr_assert_eq(fy_bulkhead_opts_check(&o), 0);
  o.order = (fy_bulkhead_order_t)2;
  cr_assert_eq(fy_bulkhead_opts_check(&o), UV_EINVAL);
}

Test(bulkhead, bad_options_create_nothing) {
  fy_bulkhead_opts_t o;
  fy_bulkhead_t *bh;
  long before;
  setup();
  before = FA.live;

#define EXPECT_EINVAL(field, value)                                            \
  do {                                                                         \
    fy_bulkhead_opts_init(&o);                                                 \
    o.field = value;                                                           \
    cr_assert_eq(fy_bulkhead_opts_check(&o), UV_EINVAL, #field);               \
    bh = (fy_bulkhead_t *)&o;                                                  \
    cr_assert_eq(fy_bulkhead_new(FX.ctx, &o, &bh), UV_EINVAL, #field);        \
    cr_assert_null(bh, #field);                                                \
    cr_assert_eq(FA.live, before, #field);                                     \
  } while (0)

  EXPECT_EINVAL(max_concurrent, 0);
  EXPECT_EINVAL(max_concurrent, (uint32_t)-1);
  EXPECT_EINVAL(max_concurrent, FY_BULKHEAD_LIMIT_MAX + 1u);
  EXPECT_EINVAL(max_queue, (uint32_t)-1);
  EXPECT_EINVAL(max_queue, FY_BULKHEAD_LIMIT_MAX + 1u);
  EXPECT_EINVAL(queue_timeout_ms, (uint64_t)-1);
  EXPECT_EINVAL(queue_timeout_ms, FY_BULKHEAD_TIMEOUT_MAX + 1);
  EXPECT_EINVAL(order, (fy_bulkhead_order_t)2);
  EXPECT_EINVAL(order, (fy_bulkhead_order_t)-1);
#undef EXPECT_EINVAL

  fy_bulkhead_opts_init(&o);
  cr_assert_eq(fy_bulkhead_new(NULL, &o, &bh), UV_EINVAL);
  cr_assert_null(bh);
  cr_assert_eq(fy_bulkhead_new(FX.ctx, &o, NULL), UV_EINVAL);

  /* The largest values are accepted. */
  o.max_concurrent = FY_BULKHEAD_LIMIT_MAX;
  o.max_queue = FY_BULKHEAD_LIMIT_MAX;
  o.queue_timeout_ms = FY_BULKHEAD_TIMEOUT_MAX;
  o.order = FY_BULKHEAD_LIFO;
  cr_assert_eq(fy_bulkhead_new(FX.ctx, &o, &bh), 0);

  /* Out of memory: nothing created either. */
  before = FA.live;
  fa_fail_all(1);
  bh = (fy_bulkhead_t *)&o;
  cr_assert_eq(fy_bulkhead_new(FX.ctx, NULL, &bh), UV_ENOMEM);
  fa_fail_all(0);
  cr_assert_null(bh);
  cr_assert_eq(FA.live, before);
  finish();
}

Test(bulkhead, null_handles_are_harmless) {
  cr_assert_null(fy_bulkhead_policy(NULL));
  cr_assert_eq(fy_bulkhead_close(NULL, NULL, NULL), 0);
  cr_assert_eq(fy_bulkhead_active(NULL), 0);
  cr_assert_eq(fy_bulkhead_queued(NULL), 0);
  cr_assert_eq(fy_bulkhead_try_acquire(NULL), UV_EINVAL);
  fy_bulkhead_release(NULL);
}

/* ======================================================================== *
 * Admission through a pipeline.
 * ======================================================================== */

Test(bulkhead, free_slot_runs_the_call) {
  fy_bulkhead_t *bh;
  fy_pipeline_t *pl;
  req_t a = {0};
  setup();
  bh = make_bh(2, 0, 0, FY_BULKHEAD_FIFO);
  pl = pl_of(bh);
  cr_assert_eq(start(&a, pl), 0);
  cr_assert_eq(a.work.starts, 1);
  cr_assert_eq(fy_bulkhead_active(bh), 1);
  top_finish(&a.work, 0);
  fy_ctx_advance(FX.ctx, 0);
  cr_assert_eq(a.done, 1);
  cr_assert_eq(a.status, 0);
  cr_assert_null(a.detail.by_kind, "the operation decided, not the bulkhead");
  cr_assert_eq(fy_bulkhead_active(bh), 0);
  cr_assert_eq(nrejected, 0);
  finish();
}

Test(bulkhead, full_without_queue_is_refused_synchronously) {
  fy_bulkhead_t *bh;
  fy_pipeline_t *pl;
  req_t a = {0}, b = {0};
  setup();
  evrec_listen(&E, FX.ctx, FY_EV_MASK(FY_EV_REJECT));
  bh = make_bh(1, 0, 0, FY_BULKHEAD_FIFO);
  pl = pl_of(bh);
  cr_assert_eq(start(&a, pl), 0);
  cr_assert_eq(start(&b, pl), FY_EBULKHEADFULL);
  cr_assert_eq(b.work.starts, 0);
  cr_assert_eq(b.call.status, FY_EBULKHEADFULL);
  cr_assert_str_eq(b.call.detail.by_kind, "bulkhead");
  cr_assert_str_eq(b.call.detail.by_name, "bh");
  cr_assert_eq(b.call.detail.state, FY_EBULKHEADFULL);
  cr_assert_eq(b.call.detail.n[0], 1); /* active */
  cr_assert_eq(b.call.detail.n[1], 0); /* queued */
  cr_assert_eq(b.call.detail.n[2], 1); /* max_concurrent */
  cr_assert_eq(b.call.detail.n[3], 0); /* max_queue */
  cr_assert_eq(nrejected, 1);
  cr_assert_eq(rejected[0], FY_EBULKHEADFULL);
  cr_assert_eq(E.n, 1);
  cr_assert_eq(E.ev[0].type, FY_EV_REJECT);
  cr_assert_eq(E.ev[0].status, FY_EBULKHEADFULL);
  cr_assert_eq(E.ev[0].call, &b.call);
  cr_assert_str_eq(E.ev[0].policy_kind, "bulkhead");
  cr_assert_str_eq(E.ev[0].policy_name, "bh");
  top_finish(&a.work, 0);
  fy_ctx_advance(FX.ctx, 0);
  cr_assert_eq(a.done, 1);
  cr_assert_eq(b.done, 0, "a refused call's callback never runs");
  finish();
}

Test(bulkhead, queue_is_fifo_by_default) {
  fy_bulkhead_t *bh;
  fy_pipeline_t *pl;
  req_t r[4];
  int i;
  memset(r, 0, sizeof(r));
  setup();
  bh = make_bh(1, 3, 0, FY_BULKHEAD_FIFO);
  pl = pl_of(bh);
  for (i = 0; i < 4; i++)
    cr_assert_eq(start(&r[i], pl), 0);
  cr_assert_eq(fy_bulkhead_active(bh), 1);
  cr_assert_eq(fy_bulkhead_queued(bh), 3);
  for (i = 0; i < 4; i++) {
    cr_assert_eq(r[i].work.starts, 1, "call %d", i);
    cr_assert_eq(r[i].work.order[0], i + 1);
    top_finish(&r[i].work, 0);
    fy_ctx_advance(FX.ctx, 0);
    cr_assert_eq(r[i].done, 1);
  }
  cr_assert_eq(fy_bulkhead_active(bh), 0);
  finish();
}

Test(bulkhead, queue_lifo_serves_newest_first) {
  fy_bulkhead_t *bh;
  fy_pipeline_t *pl;
  req_t r[4];
  int i, order[4] = {0, 3, 2, 1};
  memset(r, 0, sizeof(r));
  setup();
  bh = make_bh(1, 3, 0, FY_BULKHEAD_LIFO);
  pl = pl_of(bh);
  for (i = 0; i < 4; i++)
    cr_assert_eq(start(&r[i], pl), 0);
  for (i = 0; i < 4; i++) {
    req_t *cur = &r[order[i]];
    cr_assert_eq(cur->work.starts, 1, "call %d", order[i]);
    cr_assert_eq(cur->work.order[0], i + 1);
    top_finish(&cur->work, 0);
    fy_ctx_advance(FX.ctx, 0);
  }
  for (i = 0; i < 4; i++)
    cr_assert_eq(r[i].done, 1);
  finish();
}

Test(bulkhead, w32_queue_slot_is_freed_when_execution_starts) {
  fy_bulkhead_t *bh;
  fy_pipeline_t *pl;
  req_t a = {0}, b = {0}, c = {0}, d = {0};
  setup();
  bh = make_bh(1, 1, 0, FY_BULKHEAD_FIFO);
  pl = pl_of(bh);
  cr_assert_eq(start(&a, pl), 0);
  cr_assert_eq(start(&b, pl), 0);
  cr_assert_eq(fy_bulkhead_queued(bh), 1);
  top_finish(&a.work, 0);
  /* b got the slot at once and left the queue: its queue slot is free
   * although it is still running. */
  cr_assert_eq(b.work.starts, 1);
  cr_assert_eq(fy_bulkhead_active(bh), 1);
  cr_assert_eq(fy_bulkhead_queued(bh), 0);
  cr_assert_eq(start(&c, pl), 0, "the queue has room again");
  cr_assert_eq(fy_bulkhead_queued(bh), 1);
  cr_assert_eq(start(&d, pl), FY_EBULKHEADFULL);
  top_finish(&b.work, 0);
  top_finish(&c.work, 0);
  fy_ctx_advance(FX.ctx, 0);
  cr_assert_eq(a.done + b.done + c.done, 3);
  finish();
}

/* No barging: inside a's completion callback the slot a freed already
 * belongs to b, so a call started there queues and a permit is refused. */
static fy_pipeline_t *barge_pl;
static fy_bulkhead_t *barge_bh;
static req_t barge_c;
static int barge_permit_rc;
static int barge_b_started_at_callback;
static req_t *barge_b;

static void barge_then(req_t *r) {
  (void)r;
  barge_b_started_at_callback = barge_b->work.starts;
  barge_permit_rc = fy_bulkhead_try_acquire(barge_bh);
  cr_assert_eq(start(&barge_c, barge_pl), 0);
}

Test(bulkhead, no_barging_past_a_waiter) {
  req_t a = {0}, b = {0};
  setup();
  barge_bh = make_bh(1, 2, 0, FY_BULKHEAD_FIFO);
  barge_pl = pl_of(barge_bh);
  barge_b = &b;
  a.then = barge_then;
  cr_assert_eq(start(&a, barge_pl), 0);
  cr_assert_eq(start(&b, barge_pl), 0);
  top_finish(&a.work, 0);
  fy_ctx_advance(FX.ctx, 0);
  cr_assert_eq(a.done, 1);
  cr_assert_eq(barge_b_started_at_callback, 1, "b had the slot first");
  cr_assert_eq(barge_permit_rc, FY_EBULKHEADFULL);
  cr_assert_eq(barge_c.work.starts, 0, "c waits behind b");
  cr_assert_eq(fy_bulkhead_queued(barge_bh), 1);
  top_finish(&b.work, 0);
  cr_assert_eq(barge_c.work.starts, 1);
  top_finish(&barge_c.work, 0);
  fy_ctx_advance(FX.ctx, 0);
  cr_assert_eq(barge_c.done, 1);
  finish();
}

Test(bulkhead, queue_timeout_rejects_asynchronously) {
  fy_bulkhead_t *bh;
  fy_pipeline_t *pl;
  req_t a = {0}, b = {0};
  setup();
  evrec_listen(&E, FX.ctx,
               FY_EV_MASK(FY_EV_REJECT) | FY_EV_MASK(FY_EV_QUEUE));
  bh = make_bh(1, 1, 100, FY_BULKHEAD_FIFO);
  pl = pl_of(bh);
  cr_assert_eq(start(&a, pl), 0);
  cr_assert_eq(start(&b, pl), 0, "queued, not refused");
  fy_ctx_advance(FX.ctx, 99);
  cr_assert_eq(b.done, 0);
  cr_assert_eq(fy_bulkhead_queued(bh), 1);
  fy_ctx_advance(FX.ctx, 1);
  cr_assert_eq(b.done, 1);
  cr_assert_eq(b.status, FY_EQUEUETIMEOUT);
  cr_assert_eq(b.work.starts, 0);
  cr_assert_str_eq(b.detail.by_kind, "bulkhead");
  cr_assert_eq(b.detail.state, FY_EQUEUETIMEOUT);
  cr_assert_eq(b.detail.n[0], 1);
  cr_assert_eq(b.detail.n[1], 0);
  cr_assert_eq(b.detail.n[2], 1);
  cr_assert_eq(b.detail.n[3], 1);
  cr_assert_eq(nrejected, 1);
  cr_assert_eq(rejected[0], FY_EQUEUETIMEOUT);
  /* queue(1), queue(0), reject */
  cr_assert_eq(E.n, 3);
  cr_assert_eq(E.ev[0].type, FY_EV_QUEUE);
  cr_assert_eq(E.ev[0].value, 1);
  cr_assert_eq(E.ev[0].from, 0);
  cr_assert_eq(E.ev[0].to, 1);
  cr_assert_eq(E.ev[1].type, FY_EV_QUEUE);
  cr_assert_eq(E.ev[1].value, 0);
  cr_assert_eq(E.ev[1].from, 1);
  cr_assert_eq(E.ev[1].to, 0);
  cr_assert_eq(E.ev[0].delay_ms, 0);
  cr_assert_eq(E.ev[1].delay_ms, 100, "it waited the whole queue timeout");
  cr_assert_eq(E.ev[2].type, FY_EV_REJECT);
  cr_assert_eq(E.ev[2].status, FY_EQUEUETIMEOUT);
  cr_assert_eq(E.ev[2].time_ms, 1100);
  cr_assert_eq(fy_bulkhead_active(bh), 1);
  top_finish(&a.work, 0);
  fy_ctx_advance(FX.ctx, 0);
  cr_assert_eq(a.status, 0);
  finish();
}

Test(bulkhead, queue_timeout_bounds_waiting_only) {
  fy_bulkhead_t *bh;
  fy_pipeline_t *pl;
  req_t a = {0}, b = {0};
  setup();
  bh = make_bh(1, 1, 100, FY_BULKHEAD_FIFO);
  pl = pl_of(bh);
  cr_assert_eq(start(&a, pl), 0);
  cr_assert_eq(start(&b, pl), 0);
  fy_ctx_advance(FX.ctx, 99);
  top_finish(&a.work, 0); /* b starts 1 ms before its queue timeout */
  cr_assert_eq(b.work.starts, 1);
  cr_assert_eq(fy_ctx_pending_deadlines(FX.ctx), 0, "queue timer disarmed");
  fy_ctx_advance(FX.ctx, 10000);
  cr_assert_eq(b.done, 0, "running work is not interrupted");
  cr_assert_eq(b.work.cancels, 0);
  top_finish(&b.work, 0);
  fy_ctx_advance(FX.ctx, 0);
  cr_assert_eq(b.status, 0);
  cr_assert_eq(nrejected, 0);
  finish();
}

Test(bulkhead, lifo_queue_timeout_expires_each_waiter_on_time) {
  fy_bulkhead_t *bh;
  fy_pipeline_t *pl;
  req_t a = {0}, b = {0}, c = {0};
  setup();
  bh = make_bh(1, 2, 100, FY_BULKHEAD_LIFO);
  pl = pl_of(bh);
  cr_assert_eq(start(&a, pl), 0);
  cr_assert_eq(start(&b, pl), 0);
  fy_ctx_advance(FX.ctx, 50);
  cr_assert_eq(start(&c, pl), 0);
  fy_ctx_advance(FX.ctx, 50);
  cr_assert_eq(b.status, FY_EQUEUETIMEOUT);
  cr_assert_eq(c.done, 0);
  fy_ctx_advance(FX.ctx, 49);
  cr_assert_eq(c.done, 0);
  fy_ctx_advance(FX.ctx, 1);
  cr_assert_eq(c.status, FY_EQUEUETIMEOUT);
  cr_assert_eq(nrejected, 2);
  top_finish(&a.work, 0);
  fy_ctx_advance(FX.ctx, 0);
  finish();
}

Test(bulkhead, w33_cancelled_waiter_leaves_at_once_and_never_runs) {
  fy_bulkhead_t *bh;
  fy_pipeline_t *pl;
  req_t a = {0}, b = {0}, c = {0};
  setup();
  bh = make_bh(1, 2, 0, FY_BULKHEAD_FIFO);
  pl = pl_of(bh);
  cr_assert_eq(start(&a, pl), 0);
  cr_assert_eq(start(&b, pl), 0);
  cr_assert_eq(start(&c, pl), 0);
  cr_assert_eq(fy_call_cancel(&b.call), 0);
  cr_assert_eq(b.done, 0, "never inside fy_call_cancel");
  cr_assert_eq(fy_bulkhead_queued(bh), 1, "left the queue at once");
  fy_ctx_advance(FX.ctx, 0);
  cr_assert_eq(b.done, 1);
  cr_assert_eq(b.status, UV_ECANCELED);
  cr_assert_str_eq(b.detail.by_kind, "bulkhead");
  cr_assert_eq(b.detail.state, UV_ECANCELED);
  cr_assert_eq(nrejected, 0, "a caller's cancel is not a rejection");
  top_finish(&a.work, 0);
  cr_assert_eq(b.work.starts, 0, "never dispatched");
  cr_assert_eq(c.work.starts, 1);
  top_finish(&c.work, 0);
  fy_ctx_advance(FX.ctx, 0);
  cr_assert_eq(a.done + b.done + c.done, 3);
  finish();
}

Test(bulkhead, cancel_running_call_frees_its_slot_for_the_queue) {
  fy_bulkhead_t *bh;
  fy_pipeline_t *pl;
  req_t a = {0}, b = {0};
  setup();
  bh = make_bh(1, 1, 0, FY_BULKHEAD_FIFO);
  pl = pl_of(bh);
  cr_assert_eq(start(&a, pl), 0);
  cr_assert_eq(start(&b, pl), 0);
  cr_assert_eq(fy_call_cancel(&a.call), 0);
  cr_assert_eq(a.work.cancels, 1);
  cr_assert_eq(b.work.starts, 0, "a's outcome arrives from a fresh stack");
  fy_ctx_advance(FX.ctx, 0);
  cr_assert_eq(a.status, UV_ECANCELED);
  cr_assert_eq(b.work.starts, 1);
  top_finish(&b.work, 0);
  fy_ctx_advance(FX.ctx, 0);
  cr_assert_eq(b.status, 0);
  finish();
}

/* ---- W35: a gate policy whose cancel hook spawns the layer below, so the
 * bulkhead sees a call whose caller has already cancelled. ------------- */

static int gate_spawn_rc = 1;

static int gate_start(fy_policy_t *p, fy_frame_t *f) {
  (void)p;
  (void)f;
  return 0; /* wait for cancellation */
}

static void gate_cancel(fy_policy_t *p, fy_frame_t *f) {
  (void)p;
  gate_spawn_rc = fy_frame_spawn(f, NULL);
  if (gate_spawn_rc < 0)
    fy_frame_done(f, gate_spawn_rc);
}

static const fy_policy_vtable_t gate_vt = {
    .kind = "gate",
    .start = gate_start,
    .child_done = probe_pass_child_done,
    .cancel = gate_cancel,
};

static void w35_case(uint32_t max_concurrent, uint32_t max_queue,
                     int hold_permit) {
  fy_bulkhead_t *bh;
  fy_policy_t *gate, *layers[2];
  fy_pipeline_t *pl;
  req_t a = {0};
  setup();
  bh = make_bh(max_concurrent, max_queue, 0, FY_BULKHEAD_FIFO);
  if (hold_permit)
    cr_assert_eq(fy_bulkhead_try_acquire(bh), 0);
  cr_assert_eq(fy_policy_new(FX.ctx, &gate_vt, 0, "gate", &gate), 0);
  layers[0] = gate;
  layers[1] = fy_bulkhead_policy(bh);
  pl = make_pl(layers, 2);
  cr_assert_eq(start(&a, pl), 0);
  cr_assert_eq(fy_call_cancel(&a.call), 0);
  cr_assert_eq(gate_spawn_rc, UV_ECANCELED, "refused, deterministically");
  cr_assert_eq(a.work.starts, 0);
  cr_assert_eq(fy_bulkhead_queued(bh), 0, "not queued either");
  cr_assert_eq(fy_bulkhead_active(bh), (size_t)hold_permit);
  fy_ctx_advance(FX.ctx, 0);
  cr_assert_eq(a.done, 1);
  cr_assert_eq(a.status, UV_ECANCELED);
  cr_assert_eq(nrejected, 0);
  if (hold_permit)
    fy_bulkhead_release(bh);
  finish();
}

Test(bulkhead, w35_cancelled_call_with_free_slot_never_runs) {
  w35_case(4, 0, 0);
}

Test(bulkhead, w35_cancelled_call_with_full_bulkhead_is_not_queued) {
  w35_case(1, 4, 1);
}

/* A shield policy keeps cancellation to itself (its cancel hook does not
 * pass it down), so the bulkhead frame stays queued; when its turn comes
 * the bulkhead sees the caller left and does not start the work. */
static fy_frame_t *shield_frame;

static int shield_start(fy_policy_t *p, fy_frame_t *f) {
  (void)p;
  shield_frame = f;
  return fy_frame_spawn(f, NULL);
}

static void shield_cancel(fy_policy_t *p, fy_frame_t *f) {
  (void)p;
  (void)f;
}

static const fy_policy_vtable_t shield_vt = {
    .kind = "shield",
    .start = shield_start,
    .child_done = probe_pass_child_done,
    .cancel = shield_cancel,
};

Test(bulkhead, w33_waiter_whose_caller_left_is_not_dispatched) {
  fy_bulkhead_t *bh;
  fy_policy_t *shield, *layers[2];
  fy_pipeline_t *pl;
  req_t a = {0}, b = {0};
  setup();
  bh = make_bh(1, 1, 0, FY_BULKHEAD_FIFO);
  cr_assert_eq(fy_policy_new(FX.ctx, &shield_vt, 0, "shield", &shield), 0);
  layers[0] = shield;
  layers[1] = fy_bulkhead_policy(bh);
  pl = make_pl(layers, 2);
  cr_assert_eq(start(&a, pl), 0);
  cr_assert_eq(start(&b, pl), 0);
  cr_assert_eq(fy_call_cancel(&b.call), 0);
  cr_assert_eq(fy_bulkhead_queued(bh), 1, "the shield kept the cancel");
  top_finish(&a.work, 0);
  cr_assert_eq(b.work.starts, 0, "never dispatched");
  cr_assert_eq(fy_bulkhead_active(bh), 0);
  fy_ctx_advance(FX.ctx, 0);
  cr_assert_eq(a.status, 0);
  cr_assert_eq(b.done, 1);
  cr_assert_eq(b.status, UV_ECANCELED);
  cr_assert_eq(b.detail.state, UV_ECANCELED);
  finish();
}

/* ---- a refuser below the bulkhead: a dispatched waiter whose spawn is
 * refused completes with the refusal and the slot goes to the next. ---- */

static int refuser_start(fy_policy_t *p, fy_frame_t *f) {
  req_t *r = ((top_t *)fy_frame_call(f)->arg)->data;
  (void)p;
  if (r->refuse)
    return r->refuse;
  return fy_frame_spawn(f, NULL);
}

static const fy_policy_vtable_t refuser_vt = {
    .kind = "refuser",
    .start = refuser_start,
    .child_done = probe_pass_child_done,
};

Test(bulkhead, refused_dispatch_completes_waiter_and_tries_next) {
  fy_bulkhead_t *bh;
  fy_policy_t *refuser, *layers[2];
  fy_pipeline_t *pl;
  req_t a = {0}, b = {0}, c = {0}, d = {0};
  setup();
  bh = make_bh(1, 3, 0, FY_BULKHEAD_FIFO);
  cr_assert_eq(fy_policy_new(FX.ctx, &refuser_vt, 0, "refuser", &refuser), 0);
  layers[0] = fy_bulkhead_policy(bh);
  layers[1] = refuser;
  pl = make_pl(layers, 2);
  cr_assert_eq(start(&a, pl), 0);
  b.refuse = FY_ECIRCUITOPEN;
  c.refuse = FY_EKEY;
  cr_assert_eq(start(&b, pl), 0);
  cr_assert_eq(start(&c, pl), 0);
  cr_assert_eq(start(&d, pl), 0);
  top_finish(&a.work, 0);
  cr_assert_eq(d.work.starts, 1);
  cr_assert_eq(fy_bulkhead_active(bh), 1);
  cr_assert_eq(fy_bulkhead_queued(bh), 0);
  fy_ctx_advance(FX.ctx, 0);
  cr_assert_eq(b.status, FY_ECIRCUITOPEN);
  cr_assert_eq(c.status, FY_EKEY);
  cr_assert_eq(d.done, 0);
  /* A refusal in the layer below, at admission with a free slot, is
   * returned as is and gives the slot back. */
  top_finish(&d.work, 0);
  cr_assert_eq(fy_bulkhead_active(bh), 0);
  {
    req_t e = {0};
    e.refuse = FY_ECIRCUITOPEN;
    cr_assert_eq(start(&e, pl), FY_ECIRCUITOPEN);
    cr_assert_eq(fy_bulkhead_active(bh), 0);
  }
  fy_ctx_advance(FX.ctx, 0);
  cr_assert_eq(a.done + b.done + c.done + d.done, 4);
  cr_assert_eq(nrejected, 0);
  finish();
}

/* The moment a slot is really free while someone waits: the head's spawn
 * was refused and its callback runs synchronously, inside the dispatch.  A
 * call started there must queue behind the remaining waiter. */
static fy_pipeline_t *barge2_pl;
static req_t barge2_c;

static void barge2_then(req_t *r) {
  (void)r;
  cr_assert_eq(start(&barge2_c, barge2_pl), 0);
  cr_assert_eq(barge2_c.work.starts, 0, "must not barge");
}

Test(bulkhead, no_barging_while_a_refused_waiter_completes) {
  fy_bulkhead_t *bh;
  fy_policy_t *refuser, *layers[2];
  req_t a = {0}, b = {0}, d = {0};
  setup();
  bh = make_bh(1, 3, 0, FY_BULKHEAD_FIFO);
  cr_assert_eq(fy_policy_new(FX.ctx, &refuser_vt, 0, "refuser", &refuser), 0);
  layers[0] = fy_bulkhead_policy(bh);
  layers[1] = refuser;
  barge2_pl = make_pl(layers, 2);
  b.refuse = FY_ECIRCUITOPEN;
  b.then = barge2_then;
  cr_assert_eq(start(&a, barge2_pl), 0);
  cr_assert_eq(start(&b, barge2_pl), 0);
  cr_assert_eq(start(&d, barge2_pl), 0);
  top_finish(&a.work, 0);
  cr_assert_eq(b.done, 1, "b's callback ran inside the dispatch");
  cr_assert_eq(b.status, FY_ECIRCUITOPEN);
  cr_assert_eq(d.work.starts, 1, "the slot went to d, the older waiter");
  cr_assert_eq(barge2_c.work.starts, 0);
  cr_assert_eq(fy_bulkhead_queued(bh), 1);
  top_finish(&d.work, 0);
  cr_assert_eq(barge2_c.work.starts, 1);
  cr_assert_gt(barge2_c.work.order[0], d.work.order[0]);
  top_finish(&barge2_c.work, 0);
  fy_ctx_advance(FX.ctx, 0);
  cr_assert_eq(a.done + d.done + barge2_c.done, 3);
  finish();
}

Test(bulkhead, op_reporting_inside_start_when_dispatched) {
  fy_bulkhead_t *bh;
  fy_pipeline_t *pl;
  req_t a = {0}, b = {0}, c = {0};
  setup();
  bh = make_bh(1, 2, 0, FY_BULKHEAD_FIFO);
  pl = pl_of(bh);
  top_script(&b.work, TOP_SYNC, UV_EPIPE);
  cr_assert_eq(start(&a, pl), 0);
  cr_assert_eq(start(&b, pl), 0);
  cr_assert_eq(start(&c, pl), 0);
  top_finish(&a.work, 0);
  cr_assert_eq(b.work.starts, 1);
  fy_ctx_advance(FX.ctx, 0);
  cr_assert_eq(b.status, UV_EPIPE);
  cr_assert_eq(c.work.starts, 1, "b's slot went to c");
  top_finish(&c.work, 0);
  fy_ctx_advance(FX.ctx, 0);
  cr_assert_eq(c.status, 0);
  cr_assert_eq(fy_bulkhead_active(bh), 0);
  finish();
}

/* ======================================================================== *
 * Synchronous acquire / release.
 * ======================================================================== */

Test(bulkhead, sync_acquire_release) {
  fy_bulkhead_t *bh;
  setup();
  bh = make_bh(2, 0, 0, FY_BULKHEAD_FIFO);
  cr_assert_eq(fy_bulkhead_try_acquire(bh), 0);
  cr_assert_eq(fy_bulkhead_try_acquire(bh), 0);
  cr_assert_eq(fy_bulkhead_active(bh), 2);
  cr_assert_eq(fy_bulkhead_try_acquire(bh), FY_EBULKHEADFULL);
  cr_assert_eq(nrejected, 1);
  cr_assert_eq(rejected[0], FY_EBULKHEADFULL);
  fy_bulkhead_release(bh);
  cr_assert_eq(fy_bulkhead_active(bh), 1);
  cr_assert_eq(fy_bulkhead_try_acquire(bh), 0);
  fy_bulkhead_release(bh);
  fy_bulkhead_release(bh);
  fy_bulkhead_release(bh); /* nothing held: no-op */
  cr_assert_eq(fy_bulkhead_active(bh), 0);
  finish();
}

Test(bulkhead, sync_permits_share_slots_with_pipeline_calls) {
  fy_bulkhead_t *bh;
  fy_pipeline_t *pl;
  req_t a = {0}, b = {0};
  setup();
  bh = make_bh(1, 1, 0, FY_BULKHEAD_FIFO);
  pl = pl_of(bh);
  cr_assert_eq(fy_bulkhead_try_acquire(bh), 0);
  cr_assert_eq(start(&a, pl), 0);
  cr_assert_eq(a.work.starts, 0, "waits for the permit");
  cr_assert_eq(fy_bulkhead_queued(bh), 1);
  cr_assert_eq(start(&b, pl), FY_EBULKHEADFULL);
  fy_bulkhead_release(bh); /* a starts inside the release */
  cr_assert_eq(a.work.starts, 1);
  cr_assert_eq(fy_bulkhead_try_acquire(bh), FY_EBULKHEADFULL,
               "the slot went to the waiter");
  top_finish(&a.work, 0);
  cr_assert_eq(fy_bulkhead_try_acquire(bh), 0);
  fy_bulkhead_release(bh);
  fy_ctx_advance(FX.ctx, 0);
  cr_assert_eq(a.status, 0);
  finish();
}

Test(bulkhead, sync_acquire_never_barges_past_queued_calls) {
  fy_bulkhead_t *bh;
  fy_pipeline_t *pl;
  req_t a = {0}, b = {0};
  setup();
  bh = make_bh(2, 2, 0, FY_BULKHEAD_FIFO);
  pl = pl_of(bh);
  cr_assert_eq(fy_bulkhead_try_acquire(bh), 0);
  cr_assert_eq(start(&a, pl), 0);
  cr_assert_eq(start(&b, pl), 0);
  cr_assert_eq(fy_bulkhead_queued(bh), 1);
  fy_bulkhead_release(bh); /* b takes it */
  cr_assert_eq(b.work.starts, 1);
  cr_assert_eq(fy_bulkhead_try_acquire(bh), FY_EBULKHEADFULL);
  top_finish(&a.work, 0);
  top_finish(&b.work, 0);
  cr_assert_eq(fy_bulkhead_try_acquire(bh), 0);
  fy_bulkhead_release(bh);
  fy_ctx_advance(FX.ctx, 0);
  finish();
}

/* ======================================================================== *
 * W36, close, re-entrancy.
 * ======================================================================== */

static int closed_obj_ok;

static void on_bh_closed(void *obj, void *ud) {
  closed_obj_ok += obj == ud;
}

Test(bulkhead, w36_rejections_are_distinct) {
  fy_bulkhead_t *bh;
  fy_pipeline_t *pl;
  req_t a = {0}, b = {0}, c = {0}, d = {0};
  int i, reasons = 0;
  setup();
  evrec_listen(&E, FX.ctx, FY_EV_MASK(FY_EV_REJECT));
  bh = make_bh(1, 1, 100, FY_BULKHEAD_FIFO);
  pl = pl_of(bh);
  cr_assert_eq(start(&a, pl), 0);
  cr_assert_eq(start(&b, pl), 0);
  cr_assert_eq(start(&c, pl), FY_EBULKHEADFULL); /* full */
  fy_ctx_advance(FX.ctx, 100);
  cr_assert_eq(b.status, FY_EQUEUETIMEOUT); /* waited too long */
  cr_assert_eq(start(&d, pl), 0);
  cr_assert_eq(fy_bulkhead_close(bh, on_bh_closed, bh), 0);
  cr_assert_eq(fy_bulkhead_close(bh, on_bh_closed, bh), FY_ECLOSED);
  cr_assert_eq(fy_bulkhead_try_acquire(bh), FY_ECLOSED); /* closing */
  fy_ctx_advance(FX.ctx, 0);
  cr_assert_eq(d.status, UV_ECANCELED, "rule 4");
  cr_assert_eq(d.detail.state, FY_ECLOSED);
  cr_assert_eq(a.status, UV_ECANCELED);
  cr_assert_eq(a.work.cancels, 1);
  cr_assert_eq(closed_obj_ok, 1, "close callback names the handle");

  cr_assert_eq(nrejected, 4);
  cr_assert_eq(rejected[0], FY_EBULKHEADFULL);
  cr_assert_eq(rejected[1], FY_EQUEUETIMEOUT);
  cr_assert_eq(rejected[2], FY_ECLOSED); /* try_acquire */
  cr_assert_eq(rejected[3], FY_ECLOSED); /* d, queued at close */
  cr_assert_eq(E.n, 4);
  for (i = 0; i < 4; i++) {
    cr_assert_eq(E.ev[i].type, FY_EV_REJECT);
    cr_assert_eq(E.ev[i].status, rejected[i]);
    reasons |= 1 << i;
  }
  cr_assert_null(E.ev[2].call);
  cr_assert_eq(E.ev[3].call, &d.call);
  cr_assert_eq(reasons, 15);
  /* After close, the core refuses with FY_ECLOSED in the bulkhead's name. */
  {
    req_t e = {0};
    cr_assert_eq(start(&e, pl), FY_ECLOSED);
    cr_assert_str_eq(e.call.detail.by_kind, "bulkhead");
  }
  finish();
}

Test(bulkhead, close_with_queued_and_running_calls) {
  fy_bulkhead_t *bh;
  fy_pipeline_t *pl;
  req_t r[4];
  int i;
  memset(r, 0, sizeof(r));
  setup();
  bh = make_bh(2, 2, 0, FY_BULKHEAD_FIFO);
  pl = pl_of(bh);
  for (i = 0; i < 4; i++)
    cr_assert_eq(start(&r[i], pl), 0);
  cr_assert_eq(fy_bulkhead_active(bh), 2);
  cr_assert_eq(fy_bulkhead_queued(bh), 2);
  cr_assert_eq(fy_bulkhead_close(bh, on_bh_closed, bh), 0);
  cr_assert_eq(closed_obj_ok, 0);
  fy_ctx_advance(FX.ctx, 0);
  for (i = 0; i < 4; i++) {
    cr_assert_eq(r[i].done, 1, "call %d completes once", i);
    cr_assert_eq(r[i].status, UV_ECANCELED);
  }
  cr_assert_eq(r[0].work.cancels + r[1].work.cancels, 2);
  cr_assert_eq(r[2].work.starts + r[3].work.starts, 0);
  cr_assert_eq(r[2].detail.state, FY_ECLOSED);
  cr_assert_eq(nrejected, 2);
  cr_assert_eq(closed_obj_ok, 1);
  fy_pipeline_close(pl, NULL, NULL);
  finish();
}

Test(bulkhead, closing_bulkhead_does_not_dispatch_waiters) {
  fy_bulkhead_t *bh;
  fy_pipeline_t *pl;
  req_t a = {0}, b = {0};
  setup();
  bh = make_bh(1, 1, 0, FY_BULKHEAD_FIFO);
  pl = pl_of(bh);
  cr_assert_eq(start(&a, pl), 0);
  cr_assert_eq(start(&b, pl), 0);
  cr_assert_eq(fy_bulkhead_close(bh, NULL, NULL), 0);
  top_finish(&a.work, 0); /* before the close hook ran */
  cr_assert_eq(b.work.starts, 0, "no new work once closing");
  fy_ctx_advance(FX.ctx, 0);
  cr_assert_eq(a.status, 0);
  cr_assert_eq(b.status, UV_ECANCELED);
  cr_assert_eq(b.detail.state, FY_ECLOSED);
  cr_assert_eq(b.work.starts, 0);
  cr_assert_eq(nrejected, 1);
  cr_assert_eq(rejected[0], FY_ECLOSED);
  finish();
}

Test(bulkhead, pipeline_close_cancels_queued_calls) {
  fy_bulkhead_t *bh;
  fy_pipeline_t *pl;
  req_t a = {0}, b = {0};
  fx_closed_t pl_closed = {0};
  setup();
  bh = make_bh(1, 1, 0, FY_BULKHEAD_FIFO);
  pl = pl_of(bh);
  cr_assert_eq(start(&a, pl), 0);
  cr_assert_eq(start(&b, pl), 0);
  cr_assert_eq(fy_pipeline_close(pl, fx_obj_closed, &pl_closed), 0);
  fy_ctx_advance(FX.ctx, 0);
  cr_assert_eq(a.status, UV_ECANCELED);
  cr_assert_eq(b.status, UV_ECANCELED);
  cr_assert_eq(b.work.starts, 0);
  cr_assert_eq(nrejected, 0);
  cr_assert_eq(fy_bulkhead_active(bh), 0);
  cr_assert_eq(fy_bulkhead_queued(bh), 0);
  cr_assert_eq(pl_closed.n, 1);
  finish();
}

/* on_rejected closes the bulkhead from inside fy_call_start. */
static fy_bulkhead_t *reent_bh;
static fy_pipeline_t *reent_pl;
static int reent_close_rc = 1;

static void close_bh_on_reject(int reason, void *ud) {
  (void)ud;
  record_rejected(reason, NULL);
  if (reason == FY_EBULKHEADFULL)
    reent_close_rc = fy_bulkhead_close(reent_bh, on_bh_closed, reent_bh);
  else /* FY_ECLOSED for the waiter: a second close is refused */
    cr_assert_eq(fy_bulkhead_close(reent_bh, NULL, NULL), FY_ECLOSED);
}

Test(bulkhead, reentrancy_on_rejected_closes_the_bulkhead) {
  fy_bulkhead_opts_t o;
  req_t a = {0}, b = {0}, c = {0};
  setup();
  fy_bulkhead_opts_init(&o);
  o.max_concurrent = 1;
  o.max_queue = 1;
  o.on_rejected = close_bh_on_reject;
  cr_assert_eq(fy_bulkhead_new(FX.ctx, &o, &reent_bh), 0);
  reent_pl = pl_of(reent_bh);
  cr_assert_eq(start(&a, reent_pl), 0);
  cr_assert_eq(start(&b, reent_pl), 0);
  cr_assert_eq(start(&c, reent_pl), FY_EBULKHEADFULL);
  cr_assert_eq(reent_close_rc, 0);
  cr_assert_eq(a.done + b.done, 0);
  fy_ctx_advance(FX.ctx, 0);
  cr_assert_eq(a.done, 1);
  cr_assert_eq(b.done, 1);
  cr_assert_eq(c.done, 0);
  cr_assert_eq(a.status, UV_ECANCELED);
  cr_assert_eq(b.status, UV_ECANCELED);
  cr_assert_eq(nrejected, 2);
  cr_assert_eq(rejected[1], FY_ECLOSED);
  cr_assert_eq(closed_obj_ok, 1);
  finish();
}

/* on_rejected closes the pipeline from inside the queue-timeout hook. */
static int reent_pl_closed;

static void on_pl_closed(void *obj, void *ud) {
  (void)obj;
  (void)ud;
  reent_pl_closed++;
}

static void close_pl_on_reject(int reason, void *ud) {
  (void)ud;
  record_rejected(reason, NULL);
  cr_assert_eq(fy_pipeline_close(reent_pl, on_pl_closed, NULL), 0);
}

Test(bulkhead, reentrancy_on_rejected_closes_the_pipeline) {
  fy_bulkhead_opts_t o;
  req_t a = {0}, b = {0};
  setup();
  fy_bulkhead_opts_init(&o);
  o.max_concurrent = 1;
  o.max_queue = 1;
  o.queue_timeout_ms = 10;
  o.on_rejected = close_pl_on_reject;
  cr_assert_eq(fy_bulkhead_new(FX.ctx, &o, &reent_bh), 0);
  reent_pl = pl_of(reent_bh);
  cr_assert_eq(start(&a, reent_pl), 0);
  cr_assert_eq(start(&b, reent_pl), 0);
  fy_ctx_advance(FX.ctx, 10);
  cr_assert_eq(b.done, 1);
  cr_assert_eq(b.status, FY_EQUEUETIMEOUT);
  cr_assert_eq(a.done, 1);
  cr_assert_eq(a.status, UV_ECANCELED);
  cr_assert_eq(reent_pl_closed, 1);
  cr_assert_eq(fy_bulkhead_active(reent_bh), 0);
  finish();
}

/* A listener calls back into the bulkhead while it emits. */
static fy_bulkhead_t *listen_bh;
static int listen_acquire_rc[8];
static int nlisten;

static void listener_calls_back(fy_ctx_t *c, const fy_event_t *ev, void *ud) {
  (void)c;
  (void)ud;
  cr_assert_lt(nlisten, 8);
  if (ev->type == FY_EV_QUEUE && ev->value == 0) {
    /* The waiter leaving already holds the slot. */
    cr_assert_eq(fy_bulkhead_active(listen_bh), 1);
    cr_assert_eq(fy_bulkhead_queued(listen_bh), 0);
  }
  listen_acquire_rc[nlisten++] = fy_bulkhead_try_acquire(listen_bh);
}

Test(bulkhead, reentrancy_listener_calls_back_into_the_bulkhead) {
  fy_pipeline_t *pl;
  fy_listener_t *l;
  req_t a = {0}, b = {0};
  setup();
  listen_bh = make_bh(1, 1, 0, FY_BULKHEAD_FIFO);
  pl = pl_of(listen_bh);
  cr_assert_eq(start(&a, pl), 0);
  cr_assert_eq(fy_ctx_listen(FX.ctx, FY_EV_MASK(FY_EV_QUEUE),
                             listener_calls_back,
                             NULL, &l),
               0);
  cr_assert_eq(start(&b, pl), 0);
  top_finish(&a.work, 0);
  cr_assert_eq(nlisten, 2);
  cr_assert_eq(listen_acquire_rc[0], FY_EBULKHEADFULL); /* b joined */
  cr_assert_eq(listen_acquire_rc[1], FY_EBULKHEADFULL); /* b left, runs */
  cr_assert_eq(b.work.starts, 1);
  fy_listener_remove(l);
  top_finish(&b.work, 0);
  fy_ctx_advance(FX.ctx, 0);
  cr_assert_eq(a.status, 0);
  cr_assert_eq(b.status, 0);
  cr_assert_eq(nrejected, 2);
  finish();
}

/* A listener cancels the waiter just as it is dispatched. */
static fy_call_t *cancel_on_leave;

static void cancel_when_leaving(fy_ctx_t *c, const fy_event_t *ev, void *ud) {
  (void)c;
  (void)ud;
  if (ev->value == 0 && ev->call == cancel_on_leave)
    cr_assert_eq(fy_call_cancel(cancel_on_leave), 0);
}

Test(bulkhead, reentrancy_listener_cancels_waiter_being_dispatched) {
  fy_bulkhead_t *bh;
  fy_pipeline_t *pl;
  fy_listener_t *l;
  req_t a = {0}, b = {0}, c = {0};
  setup();
  bh = make_bh(1, 2, 0, FY_BULKHEAD_FIFO);
  pl = pl_of(bh);
  cr_assert_eq(start(&a, pl), 0);
  cr_assert_eq(start(&b, pl), 0);
  cr_assert_eq(start(&c, pl), 0);
  cancel_on_leave = &b.call;
  cr_assert_eq(fy_ctx_listen(FX.ctx, FY_EV_MASK(FY_EV_QUEUE),
                             cancel_when_leaving,
                             NULL, &l),
               0);
  top_finish(&a.work, 0);
  cr_assert_eq(b.work.starts, 0);
  cr_assert_eq(c.work.starts, 1);
  fy_ctx_advance(FX.ctx, 0);
  cr_assert_eq(b.status, UV_ECANCELED);
  top_finish(&c.work, 0);
  fy_ctx_advance(FX.ctx, 0);
  cr_assert_eq(c.status, 0);
  finish();
}

/* A completion callback reuses its call struct for a new call. */
static fy_pipeline_t *reuse_pl;
static int reuse_rounds;

static void reuse_then(req_t *r) {
  if (++reuse_rounds < 3) {
    top_script(&r->work, TOP_SYNC, 0);
    cr_assert_eq(start(r, reuse_pl), 0);
  }
}

Test(bulkhead, completion_callback_reuses_its_call) {
  fy_bulkhead_t *bh;
  req_t a = {0};
  setup();
  bh = make_bh(1, 0, 0, FY_BULKHEAD_FIFO);
  reuse_pl = pl_of(bh);
  a.then = reuse_then;
  top_script(&a.work, TOP_SYNC, 0);
  cr_assert_eq(start(&a, reuse_pl), 0);
  fy_ctx_advance(FX.ctx, 0);
  cr_assert_eq(a.done, 3);
  cr_assert_eq(fy_bulkhead_active(bh), 0);
  finish();
}

Test(bulkhead, ctx_close_with_calls_pending) {
  fy_bulkhead_t *bh;
  fy_pipeline_t *pl;
  req_t a = {0}, b = {0};
  setup();
  bh = make_bh(1, 1, 1000, FY_BULKHEAD_FIFO);
  pl = pl_of(bh);
  cr_assert_eq(start(&a, pl), 0);
  cr_assert_eq(start(&b, pl), 0);
  cr_assert_eq(fy_bulkhead_try_acquire(bh), FY_EBULKHEADFULL);
  finish();
  cr_assert_eq(a.done, 1);
  cr_assert_eq(b.done, 1);
  cr_assert_eq(a.status, UV_ECANCELED);
  cr_assert_eq(b.status, UV_ECANCELED);
}
