/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * Events: the core's call_done / call_refused / attempt_start /
 * attempt_done with their fields, masks, registration order, removal from
 * inside a listener, fy_ctx_wants(), emission by policies. */
#include <criterion/criterion.h>
#include <string.h>

#include "fixture.h"

typedef struct rec_s {
  unsigned who;
  fy_event_type_t type;
  uint64_t time_ms;
  fy_policy_t *policy;
  int kind_null;
  char kind[32];
  char name[64];
  fy_call_t *call;
  int status;
  unsigned attempt;
  uint64_t latency_ns;
  uint64_t delay_ms;
  int64_t from, to, value;
  unsigned completions; /* g_completions when received */
} rec_t;

#define MAXREC 64
static rec_t R[MAXREC];
static unsigned NR;

typedef struct lis_s {
  unsigned who;
  unsigned got;
  fy_listener_t *self;
  fy_listener_t *victim; /* removed on the first event */
  int remove_self;
} lis_t;

static lis_t L1, L2, L3;
static probe_t P;
static top_t T;
static tcall_t C;

static void on_event(fy_ctx_t *ctx, const fy_event_t *ev, void *ud) {
  lis_t *l = ud;
  cr_assert_eq(ctx, FX.ctx);
  l->got++;
  if (NR < MAXREC) {
    rec_t *r = &R[NR];
    memset(r, 0, sizeof(*r));
    r->who = l->who;
    r->type = ev->type;
    r->time_ms = ev->time_ms;
    r->policy = ev->policy;
    r->kind_null = ev->policy_kind == NULL;
    if (ev->policy_kind != NULL)
      snprintf(r->kind, sizeof(r->kind), "%s", ev->policy_kind);
    cr_assert_not_null(ev->policy_name, "policy_name must never be NULL");
    snprintf(r->name, sizeof(r->name), "%s", ev->policy_name);
    r->call = ev->call;
    r->status = ev->status;
    r->attempt = ev->attempt;
    r->latency_ns = ev->latency_ns;
    r->delay_ms = ev->delay_ms;
    r->from = ev->from;
    r->to = ev->to;
    r->value = ev->value;
    r->completions = g_completions;
  }
  NR++;
  if (l->remove_self) {
    fy_listener_remove(l->self);
    fy_listener_remove(l->self); /* twice: harmless */
  }
  if (l->victim != NULL) {
    fy_listener_remove(l->victim);
    l->victim = NULL;
  }
}

static void add_listener(lis_t *l, unsigned who, uint32_t mask) {
  memset(l, 0, sizeof(*l));
  l->who = who;
  cr_assert_eq(fy_ctx_listen(FX.ctx, mask, on_event, l, &l->self), 0);
  cr_assert_not_null(l->self);
}

static void reset_records(void) {
  NR = 0;
  memset(R, 0, sizeof(R));
}

TestSuite(events);

Test(events, core_events_carry_their_fields) {
  fy_pipeline_t *pl;
  fx_init(&FX, 1000);
  reset_records();
  pl = fx_pipeline(&FX, 1, fx_probe(&FX, &P, "p"));
  add_listener(&L1, 1, FY_EV_ALL);
  cr_assert_eq(tcall_start(&C, pl, &top_op_nocancel, &T), 0);
  cr_assert_eq(NR, 1);
  cr_assert_eq(R[0].type, FY_EV_ATTEMPT_START);
  cr_assert_eq(R[0].call, &C.call);
  cr_assert_eq(R[0].attempt, 0);
  cr_assert_eq(R[0].time_ms, 1000);
  cr_assert_null(R[0].policy);
  cr_assert(R[0].kind_null);
  cr_assert_str_eq(R[0].name, "");

  fy_attempt_set_retry_after(T.att[0], 250);
  fx_advance(&FX, 7);
  cr_assert_eq(top_report(&T, 0, UV_EIO), 0);
  cr_assert_eq(NR, 3);
  cr_assert_eq(R[1].type, FY_EV_ATTEMPT_DONE);
  cr_assert_eq(R[1].call, &C.call);
  cr_assert_eq(R[1].status, UV_EIO);
  cr_assert_eq(R[1].attempt, 0);
  cr_assert_eq(R[1].latency_ns, 7000000ull);
  cr_assert_eq(R[1].delay_ms, 250);
  cr_assert_eq(R[1].time_ms, 1007);
  cr_assert_eq(R[2].type, FY_EV_CALL_DONE);
  cr_assert_eq(R[2].call, &C.call);
  cr_assert_eq(R[2].status, UV_EIO);
  cr_assert_eq(R[2].attempt, 1, "call_done carries the attempt count");
  cr_assert_eq(R[2].latency_ns, 7000000ull);
  cr_assert_eq(R[2].time_ms, 1007);
  cr_assert_null(R[2].policy);
  /* Emitted before the callback runs. */
  cr_assert_eq(R[2].completions, 0);
  cr_assert_eq(C.ncb, 1);
  fx_finish(&FX);
}

Test(events, attempts_of_a_sequential_policy_are_numbered) {
  fy_pipeline_t *pl;
  unsigned i, starts = 0, dones = 0;
  fx_init(&FX, 0);
  reset_records();
  P.mode = PROBE_SEQUENTIAL;
  P.n = 3;
  pl = fx_pipeline(&FX, 1, fx_probe(&FX, &P, "seq"));
  add_listener(&L1, 1, FY_EV_MASK(FY_EV_ATTEMPT_START) |
                     FY_EV_MASK(FY_EV_ATTEMPT_DONE));
  top_script(&T, TOP_SYNC, UV_EIO);
  cr_assert_eq(tcall_start(&C, pl, &top_op_nocancel, &T), 0);
  fx_advance(&FX, 0);
  cr_assert_eq(NR, 6);
  for (i = 0; i < NR; i++) {
    if (R[i].type == FY_EV_ATTEMPT_START)
      cr_assert_eq(R[i].attempt, starts++);
    else
      cr_assert_eq(R[i].attempt, dones++);
  }
  cr_assert_eq(starts, 3);
  cr_assert_eq(dones, 3);
  fx_finish(&FX);
}

static int advance_rc = 1;
static void advance_listener(fy_ctx_t *ctx, const fy_event_t *ev, void *ud) {
  (void)ev;
  (void)ud;
  advance_rc = fy_ctx_advance(ctx, 5);
}

Test(events, call_refused_names_the_policy) {
  fy_pipeline_t *pl;
  fx_init(&FX, 50);
  reset_records();
  P.mode = PROBE_REFUSE;
  P.refuse_code = FY_EKEY;
  pl = fx_pipeline(&FX, 1, fx_probe(&FX, &P, "lim"));
  add_listener(&L1, 1, FY_EV_ALL);
  cr_assert_eq(fy_ctx_listen(FX.ctx, FY_EV_MASK(FY_EV_CALL_REFUSED),
                             advance_listener, NULL, NULL),
               0);
  cr_assert_eq(tcall_start(&C, pl, &top_op_nocancel, &T), FY_EKEY);
  cr_assert_eq(NR, 1);
  cr_assert_eq(R[0].type, FY_EV_CALL_REFUSED);
  cr_assert_eq(R[0].status, FY_EKEY);
  cr_assert_eq(R[0].call, &C.call);
  cr_assert_str_eq(R[0].kind, "probe");
  cr_assert_str_eq(R[0].name, "lim");
  cr_assert_eq(R[0].time_ms, 50);
  /* A listener is one of the context's callbacks. */
  cr_assert_eq(advance_rc, UV_EBUSY);
  cr_assert_eq(fy_ctx_now(FX.ctx), 50);
  fx_finish(&FX);
}

Test(events, masks_filter_and_order_is_registration) {
  fy_pipeline_t *pl;
  unsigned i;
  fx_init(&FX, 0);
  reset_records();
  pl = fx_pipeline(&FX, 0);
  add_listener(&L1, 1, FY_EV_MASK(FY_EV_CALL_DONE));
  add_listener(&L2, 2, FY_EV_ALL);
  add_listener(&L3, 3, FY_EV_MASK(FY_EV_ATTEMPT_START) | FY_EV_MASK(FY_EV_CALL_DONE));
  top_script(&T, TOP_SYNC, 0);
  cr_assert_eq(tcall_start(&C, pl, &top_op_nocancel, &T), 0);
  fx_advance(&FX, 0);
  cr_assert_eq(L1.got, 1);
  cr_assert_eq(L2.got, 3);
  cr_assert_eq(L3.got, 2);
  /* attempt_start: 2, 3; attempt_done: 2; call_done: 1, 2, 3. */
  {
    static const unsigned want_who[] = {2, 3, 2, 1, 2, 3};
    static const fy_event_type_t want_type[] = {
        FY_EV_ATTEMPT_START, FY_EV_ATTEMPT_START, FY_EV_ATTEMPT_DONE,
        FY_EV_CALL_DONE,     FY_EV_CALL_DONE,     FY_EV_CALL_DONE};
    cr_assert_eq(NR, 6);
    for (i = 0; i < 6; i++) {
      cr_assert_eq(R[i].who, want_who[i], "event %u from %u", i, R[i].who);
      cr_assert_eq(R[i].type, want_type[i]);
    }
  }
  fx_finish(&FX);
}

Test(events, listener_removes_itself_inside_its_callback) {
  fy_pipeline_t *pl;
  fx_init(&FX, 0);
  reset_records();
  pl = fx_pipeline(&FX, 0);
  add_listener(&L1, 1, FY_EV_ALL);
  add_listener(&L2, 2, FY_EV_ALL);
  L1.remove_self = 1;
  top_script(&T, TOP_SYNC, 0);
  cr_assert_eq(tcall_start(&C, pl, &top_op_nocancel, &T), 0);
  fx_advance(&FX, 0);
  cr_assert_eq(L1.got, 1);
  cr_assert_eq(L2.got, 3, "the next listener missed events");
  cr_assert_eq(R[0].who, 1);
  cr_assert_eq(R[1].who, 2);
  cr_assert_eq(R[0].type, R[1].type);
  fx_finish(&FX);
}

Test(events, listener_removes_others_inside_its_callback) {
  fy_pipeline_t *pl;
  fx_init(&FX, 0);
  reset_records();
  pl = fx_pipeline(&FX, 0);
  add_listener(&L1, 1, FY_EV_ALL);
  add_listener(&L2, 2, FY_EV_ALL);
  add_listener(&L3, 3, FY_EV_ALL);
  L2.victim = L3.self; /* later in the list: misses the current event */
  top_script(&T, TOP_SYNC, 0);
  cr_assert_eq(tcall_start(&C, pl, &top_op_nocancel, &T), 0);
  cr_assert_eq(L3.got, 0, "a removed listener got the current event");
  /* attempt_start and attempt_done (reported inside start) so far. */
  cr_assert_eq(L1.got, 2);
  cr_assert_eq(L2.got, 2);
  /* Now an earlier one: it already had the current event (call_done). */
  L2.victim = L1.self;
  fx_advance(&FX, 0);
  cr_assert_eq(C.ncb, 1);
  cr_assert_eq(L1.got, 3);
  cr_assert_eq(L2.got, 3);
  cr_assert_eq(L3.got, 0);
  {
    fy_event_t ev;
    memset(&ev, 0, sizeof(ev));
    ev.type = FY_EV_FALLBACK;
    fy_ctx_emit(FX.ctx, &ev);
  }
  cr_assert_eq(L1.got, 3);
  cr_assert_eq(L2.got, 4);
  cr_assert_eq(L3.got, 0);
  fy_listener_remove(NULL);
  fx_finish(&FX);
}

Test(events, wants_reflects_the_listeners) {
  fy_listener_t *a = NULL, *b = NULL;
  unsigned t;
  fx_init(&FX, 0);
  for (t = 0; t < FY_EV__COUNT; t++)
    cr_assert_eq(fy_ctx_wants(FX.ctx, (fy_event_type_t)t), 0);
  cr_assert_eq(fy_ctx_listen(FX.ctx, FY_EV_MASK(FY_EV_RETRY), on_event, &L1,
                             &a),
               0);
  cr_assert_eq(fy_ctx_listen(FX.ctx,
                             FY_EV_MASK(FY_EV_RETRY) | FY_EV_MASK(FY_EV_QUEUE),
                             on_event, &L2, &b),
               0);
  for (t = 0; t < FY_EV__COUNT; t++)
    cr_assert_eq(fy_ctx_wants(FX.ctx, (fy_event_type_t)t),
                 t == FY_EV_RETRY || t == FY_EV_QUEUE, "type %u", t);
  fy_listener_remove(b);
  cr_assert_eq(fy_ctx_wants(FX.ctx, FY_EV_QUEUE), 0);
  cr_assert_eq(fy_ctx_wants(FX.ctx, FY_EV_RETRY), 1);
  fy_listener_remove(a);
  cr_assert_eq(fy_ctx_wants(FX.ctx, FY_EV_RETRY), 0);
  cr_assert_eq(fy_ctx_wants(FX.ctx, FY_EV__COUNT), 0);
  cr_assert_eq(fy_ctx_wants(FX.ctx, (fy_event_type_t)99), 0);
  fx_finish(&FX);
}

Test(events, invalid_registrations_are_rejected) {
  fy_listener_t *l = (fy_listener_t *)&T;
  fx_init(&FX, 0);
  cr_assert_eq(fy_ctx_listen(FX.ctx, 0, on_event, NULL, &l), UV_EINVAL);
  cr_assert_null(l);
  cr_assert_eq(fy_ctx_listen(FX.ctx, 1u << FY_EV__COUNT, on_event, NULL, &l),
               UV_EINVAL);
  cr_assert_eq(fy_ctx_listen(FX.ctx, 0xffffffffu, on_event, NULL, &l),
               UV_EINVAL);
  cr_assert_eq(fy_ctx_listen(FX.ctx, FY_EV_ALL, NULL, NULL, &l), UV_EINVAL);
  cr_assert_eq(fy_ctx_listen(NULL, FY_EV_ALL, on_event, NULL, &l), UV_EINVAL);
  cr_assert_null(l);
  for (unsigned t = 0; t < FY_EV__COUNT; t++)
    cr_assert_eq(fy_ctx_wants(FX.ctx, (fy_event_type_t)t), 0);
  /* |out| is optional; such a listener is freed with the context. */
  cr_assert_eq(fy_ctx_listen(FX.ctx, FY_EV_ALL, on_event, &L1, NULL), 0);
  cr_assert_eq(fy_ctx_wants(FX.ctx, FY_EV_FALLBACK), 1);
  fx_finish(&FX);
}

Test(events, emit_fills_time_and_name) {
  fy_event_t ev;
  fx_init(&FX, 4242);
  reset_records();
  add_listener(&L1, 1, FY_EV_MASK(FY_EV_FALLBACK) | FY_EV_MASK(FY_EV_STATE_CHANGE));
  memset(&ev, 0, sizeof(ev));
  ev.type = FY_EV_FALLBACK;
  ev.value = 77;
  fy_ctx_emit(FX.ctx, &ev);
  cr_assert_eq(NR, 1);
  cr_assert_eq(R[0].time_ms, 4242);
  cr_assert_str_eq(R[0].name, "");
  cr_assert_eq(R[0].value, 77);
  ev.time_ms = 5; /* preset: kept */
  fy_ctx_emit(FX.ctx, &ev);
  cr_assert_eq(R[1].time_ms, 5);
  ev.type = FY_EV_RETRY; /* nobody listens */
  fy_ctx_emit(FX.ctx, &ev);
  ev.type = (fy_event_type_t)FY_EV__COUNT;
  fy_ctx_emit(FX.ctx, &ev);
  cr_assert_eq(NR, 2);

  fx_probe(&FX, &P, "emitter");
  fy_policy_emit(P.policy, FY_EV_STATE_CHANGE, &C.call, FY_ECIRCUITOPEN, 1, 2);
  fy_policy_emit(P.policy, FY_EV_QUEUE, NULL, 0, 0, 0); /* not listened */
  fy_policy_emit(P.policy, (fy_event_type_t)200, NULL, 0, 0, 0);
  cr_assert_eq(NR, 3);
  cr_assert_eq(R[2].type, FY_EV_STATE_CHANGE);
  cr_assert_eq(R[2].policy, P.policy);
  cr_assert_str_eq(R[2].kind, "probe");
  cr_assert_str_eq(R[2].name, "emitter");
  cr_assert_eq(R[2].call, &C.call);
  cr_assert_eq(R[2].status, FY_ECIRCUITOPEN);
  cr_assert_eq(R[2].from, 1);
  cr_assert_eq(R[2].to, 2);
  cr_assert_eq(R[2].time_ms, 4242);
  fx_finish(&FX);
}

Test(events, listeners_hear_the_close) {
  fy_pipeline_t *pl;
  fx_init(&FX, 0);
  reset_records();
  pl = fx_pipeline(&FX, 0);
  add_listener(&L1, 1, FY_EV_MASK(FY_EV_CALL_DONE));
  cr_assert_eq(tcall_start(&C, pl, &top_op_cancel_sync, &T), 0);
  fx_finish(&FX); /* the listener is never removed: freed with the ctx */
  cr_assert_eq(L1.got, 1);
  cr_assert_eq(R[0].status, UV_ECANCELED);
  cr_assert_eq(C.status, UV_ECANCELED);
}

/* fy_policy_event_init(): a policy's event starts zeroed with its type,
 * policy, kind and name, and says whether anybody listens. */
Test(events, policy_event_init_fills_the_policy_and_tells_who_listens) {
  fy_event_t ev;
  fx_init(&FX, 77);
  reset_records();
  fx_probe(&FX, &P, "writer");
  memset(&ev, 0xab, sizeof(ev));
  cr_assert_eq(fy_policy_event_init(P.policy, &ev, FY_EV_QUEUE), 0,
               "nobody listens yet");
  cr_assert_eq(ev.value, 0, "zeroed all the same");
  cr_assert_null(ev.policy);
  add_listener(&L1, 1, FY_EV_MASK(FY_EV_QUEUE));
  cr_assert_eq(fy_policy_event_init(P.policy, &ev, FY_EV_QUEUE), 1);
  cr_assert_eq(ev.type, FY_EV_QUEUE);
  cr_assert_eq(ev.policy, P.policy);
  cr_assert_str_eq(ev.policy_kind, fy_policy_kind(P.policy));
  cr_assert_str_eq(ev.policy_name, "writer");
  cr_assert_null(ev.call);
  ev.value = 5;
  ev.delay_ms = 9;
  fy_ctx_emit(FX.ctx, &ev);
  cr_assert_eq(NR, 1);
  cr_assert_eq(R[0].type, FY_EV_QUEUE);
  cr_assert_eq(R[0].value, 5);
  cr_assert_eq(R[0].delay_ms, 9);
  cr_assert_eq(R[0].time_ms, 77, "fy_ctx_emit fills the time");
  cr_assert_eq(fy_policy_event_init(P.policy, &ev, FY_EV__COUNT), 0);
  cr_assert_eq(fy_policy_event_init(NULL, &ev, FY_EV_QUEUE), 0);
  fx_finish(&FX);
}
