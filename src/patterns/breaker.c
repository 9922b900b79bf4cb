/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * The circuit breaker's driver, binding its pure state machine
 * (src/sm/breaker_sm.c, which takes |now| and is tested without a loop) to
 * a context: an embedded deadline for the eager open -> half-open move,
 * classification and latency of outcomes, in-order delivery of state
 * changes, and the pipeline vtable. */
#include "policy_impl.h"

#include "breaker_sm.h"
/* ---- the driver -------------------------------------------------------- */

struct fy_breaker_s {
  fy_policy_t *policy;
  fy_ctx_t *ctx;
  fy_deadline_t timer;  /* open -> half-open, on time, even without calls */
  uint64_t armed;       /* expiry of |timer|, FY_TIME_NEVER when idle */
  fy_classify_fn classify;
  fy_breaker_state_fn on_state_change;
  void *user_data;
  int delivering;       /* inside notify(): nested changes queue up */
  fy__breaker_sm_t core;
  /* the window's memory follows */
};

#define BREAKER_HDR FY__ROUND_UP(sizeof(struct fy_breaker_s), FY__ALIGN)

static int closing(const fy_breaker_t *b) {
  return fy__policy_is_closing(b->policy);
}

static void sync_timer(fy_breaker_t *b) {
  uint64_t want = closing(b) ? FY_TIME_NEVER : fy__breaker_sm_wakeup(&b->core);
  if (want == b->armed)
    return;
  if (want == FY_TIME_NEVER || fy_deadline_start_at(&b->timer, want) != 0) {
    fy_deadline_stop(&b->timer);
    want = FY_TIME_NEVER;
  }
  b->armed = want;
}

/* Deliver queued state changes, oldest first, to on_state_change and then
 * to the listeners.  A callback that changes the breaker again only queues
 * more: the outermost notify() delivers them, in order, once the one being
 * delivered has reached everybody.  Nothing is ever dropped. */
static void notify(fy_breaker_t *b) {
  fy_breaker_state_t from, to;
  if (b->delivering || b->core.ev_len == 0)
    return; /* the second test: every call comes here, few change state */
  b->delivering = 1;
  while (fy__breaker_sm_next_event(&b->core, &from, &to)) {
    if (b->on_state_change != NULL)
      b->on_state_change(from, to, b->user_data);
    fy_policy_emit(b->policy, FY_EV_STATE_CHANGE, NULL, 0, from, to);
  }
  b->delivering = 0;
}

static void settle_changes(fy_breaker_t *b) {
  sync_timer(b);
  notify(b);
}

/* Every call comes here twice; a breaker that is not open, has no timer
 * armed and no change queued has nothing to settle.  The test is kept apart
 * from the work so that it inlines into its callers. */
static inline void settle(fy_breaker_t *b) {
  if (b->core.ev_len == 0 && b->armed == FY_TIME_NEVER &&
      b->core.state != FY_BREAKER_OPEN)
    return;
  settle_changes(b);
}

static void on_timer(fy_deadline_t *d) {
  fy_breaker_t *b = fy_container_of(d, fy_breaker_t, timer);
  b->armed = FY_TIME_NEVER;
  if (closing(b))
    return;
  fy__breaker_sm_advance(&b->core, fy__ctx_now(b->ctx));
  settle(b);
}

/* A refusal, or in metrics-only mode a refusal that did not happen (value
 * 1). */
static void emit_reject(fy_breaker_t *b, fy_call_t *call,
                        const fy__breaker_sm_verdict_t *v) {
  fy_event_t ev;
  if (!fy_policy_event_init(b->policy, &ev, FY_EV_REJECT))
    return;
  ev.call = call;
  ev.status = FY_ECIRCUITOPEN;
  ev.delay_ms = v->retry_after_ms;
  ev.from = v->state;
  ev.to = v->state;
  ev.value = v->dry;
  fy_ctx_emit(b->ctx, &ev);
}

static void fill_detail(fy_breaker_t *b, fy_detail_t *d,
                        const fy__breaker_sm_verdict_t *v) {
  d->cause = 0;
  d->by_kind = fy_policy_kind(b->policy);
  d->by_name = fy_policy_name(b->policy);
  d->state = (int)v->state;
  d->retry_after_ms = v->retry_after_ms;
  memcpy(d->n, v->n, sizeof(d->n));
}

/* Nothing waits to be settled: no state change queued, no timer armed. */
static inline int quiet(const fy_breaker_t *b) {
  return b->core.ev_len == 0 && b->armed == FY_TIME_NEVER;
}

/* A closed breaker admits without the clock and without settling (the
 * state machine says when: fy__breaker_sm_acquire_closed()). */
static inline int admit_closed(fy_breaker_t *b, fy_breaker_permit_t *permit) {
  return quiet(b) && fy__breaker_sm_acquire_closed(&b->core, permit);
}

/* The success of a call admitted closed, with the default classifier,
 * counted without the clock; 0: fy_breaker_record() must do it. */
static inline int record_closed_ok(fy_breaker_t *b,
                                   fy_breaker_permit_t *permit, int status) {
  return status == 0 && b->classify == fy_classify_default && quiet(b) &&
         !closing(b) && fy__breaker_sm_record_closed_ok(&b->core, permit);
}

static int admit_slow(fy_breaker_t *b, fy_breaker_permit_t *permit,
                      fy_call_t *call, fy__breaker_sm_verdict_t *v) {
  int rc = fy__breaker_sm_acquire(&b->core, permit, fy__ctx_now(b->ctx), v);
  /* Latency only feeds the slow-call rule: without one, skip the clock
   * reads (two per call, the costliest steps of a closed breaker). */
  if (rc == 0 && b->core.slow_ns > 0)
    permit->start_ns = fy_ctx_hrtime(b->ctx);
  /* An overdue open -> half-open is announced before the verdict. */
  settle(b);
  if (v->refused || v->dry)
    emit_reject(b, call, v);
  return rc;
}

static inline int admit(fy_breaker_t *b, fy_breaker_permit_t *permit,
                        fy_call_t *call, fy__breaker_sm_verdict_t *v) {
  if (admit_closed(b, permit)) {
    v->refused = 0;
    v->dry = 0;
    return 0;
  }
  return admit_slow(b, permit, call, v);
}

int fy_breaker_acquire(fy_breaker_t *b, fy_breaker_permit_t *permit,
                       fy_detail_t *detail) {
  fy__breaker_sm_verdict_t v;
  int rc;
  if (permit != NULL)
    memset(permit, 0, sizeof(*permit));
  if (b == NULL || permit == NULL)
    return UV_EINVAL;
  if (detail != NULL)
    fy__detail_clear(detail);
  if (closing(b)) {
    if (detail != NULL) {
      detail->by_kind = fy_policy_kind(b->policy);
      detail->by_name = fy_policy_name(b->policy);
    }
    return FY_ECLOSED;
  }
  rc = admit(b, permit, NULL, &v);
  if (rc < 0 && detail != NULL)
    fill_detail(b, detail, &v);
  return rc;
}

void fy_breaker_record(fy_breaker_t *b, fy_breaker_permit_t *permit,
                       int status) {
  fy_breaker_permit_t p;
  fy_outcome_t outcome;
  uint64_t latency;
  if (b == NULL || permit == NULL || permit->kind == FY__BREAKER_SM_P_INERT)
    return;
  if (record_closed_ok(b, permit, status))
    return;
  /* Take it first: a classifier that records it again finds it inert. */
  p = *permit;
  permit->kind = FY__BREAKER_SM_P_INERT;
  if (closing(b)) {
    fy__breaker_sm_release(&b->core, &p); /* no user code once closing */
    return;
  }
  latency = b->core.slow_ns > 0 ? fy_ctx_hrtime(b->ctx) - p.start_ns : 0;
  outcome = b->classify(status, b->user_data);
  if (outcome != FY_OUTCOME_SUCCESS && outcome != FY_OUTCOME_IGNORE)
    outcome = FY_OUTCOME_FAILURE;
  if (closing(b)) {
    fy__breaker_sm_release(&b->core, &p); /* the classifier closed it */
    return;
  }
  fy__breaker_sm_record(&b->core, &p, outcome, latency, fy__ctx_now(b->ctx));
  settle(b);
}

void fy_breaker_release(fy_breaker_t *b, fy_breaker_permit_t *permit) {
  if (b == NULL || permit == NULL)
    return;
  fy__breaker_sm_release(&b->core, permit);
}

fy_breaker_state_t fy_breaker_state(fy_breaker_t *b) {
  if (b == NULL)
    return FY_BREAKER_CLOSED;
  if (!closing(b)) {
    fy__breaker_sm_advance(&b->core, fy__ctx_now(b->ctx));
    settle(b);
  }
  return fy__breaker_sm_state(&b->core);
}

void fy_breaker_counts(fy_breaker_t *b, fy_breaker_counts_t *out) {
  if (b == NULL || out == NULL)
    return;
  fy__breaker_sm_counts(&b->core, fy__ctx_now(b->ctx), out);
}

int fy_breaker_set_mode(fy_breaker_t *b, fy_breaker_mode_t mode) {
  int rc;
  if (b == NULL)
    return UV_EINVAL;
  if (closing(b))
    return FY_ECLOSED;
  rc = fy__breaker_sm_set_mode(&b->core, mode, fy__ctx_now(b->ctx));
  settle(b);
  return rc;
}

fy_breaker_mode_t fy_breaker_mode(const fy_breaker_t *b) {
  return b != NULL ? b->core.mode : FY_BREAKER_NORMAL;
}

int fy_breaker_reset(fy_breaker_t *b) {
  if (b == NULL)
    return UV_EINVAL;
  if (closing(b))
    return FY_ECLOSED;
  fy__breaker_sm_reset(&b->core, fy__ctx_now(b->ctx));
  settle(b);
  return 0;
}

/* ---- the pipeline stage ------------------------------------------------ */

/* An admission layer: no frame, a permit in the call's token. */
static int brk_admit(fy_policy_t *p, fy_call_t *call, fy_frame_t *parent,
                     void *token) {
  fy_breaker_t *b = fy__policy_impl(p);
  fy__breaker_sm_verdict_t v;
  int rc = admit(b, token, call, &v);
  (void)parent;
  if (rc < 0)
    fill_detail(b, fy_call_verdict(call, p), &v);
  return rc; /* rule 2: the caller gets a refusal synchronously */
}

static int brk_settle(fy_policy_t *p, void *token, int status) {
  fy_breaker_t *b = fy__policy_impl(p);
  if (!record_closed_ok(b, token, status))
    fy_breaker_record(b, token, status);
  return 0;
}

static int brk_release(fy_policy_t *p, void *token, int status) {
  fy_breaker_t *b = fy__policy_impl(p);
  (void)status;
  fy__breaker_sm_release(&b->core, token); /* nothing ran below */
  return 0;
}

static void brk_close(fy_policy_t *p) {
  fy_breaker_t *b = fy__policy_impl(p);
  fy_deadline_stop(&b->timer);
  b->armed = FY_TIME_NEVER;
}

static void brk_destroy(fy_policy_t *p) {
  fy_breaker_t *b = fy__policy_impl(p);
  fy_deadline_stop(&b->timer);
  fy__breaker_sm_free(&b->core);
}

static const fy_policy_vtable_t breaker_vtable = {
    .kind = "breaker",
    .close = brk_close,
    .destroy = brk_destroy,
    .token_size = sizeof(fy_breaker_permit_t),
    .admit = brk_admit,
    .settle = brk_settle,
    .release = brk_release,
};

int fy_breaker_new(fy_ctx_t *ctx, const fy_breaker_opts_t *opts,
                   fy_breaker_t **out) {
  fy_breaker_opts_t defaults;
  fy_policy_t *p;
  fy_breaker_t *b;
  size_t wbytes;
  int rc;

  if (out == NULL)
    return UV_EINVAL;
  *out = NULL;
  if (ctx == NULL)
    return UV_EINVAL;
  if (opts == NULL) {
    fy_breaker_opts_init(&defaults);
    opts = &defaults;
  }
  rc = fy_breaker_opts_check(opts);
  if (rc != 0)
    return rc;
  wbytes = fy__breaker_sm_window_bytes(opts);
  rc = fy_policy_new(ctx, &breaker_vtable, BREAKER_HDR + wbytes, opts->name,
                     &p);
  if (rc != 0)
    return rc;
  b = fy__policy_impl(p);
  b->policy = p;
  b->ctx = ctx;
  b->armed = FY_TIME_NEVER;
  b->classify = opts->classify != NULL ? opts->classify : fy_classify_default;
  b->on_state_change = opts->on_state_change;
  b->user_data = opts->user_data;
  fy_deadline_init(ctx, &b->timer, on_timer);
  /* The half-open transition is bookkeeping: it must not hold a process
   * open on its own.  While the loop runs for other reasons it fires on
   * time; otherwise the lazy check in acquire/state catches up. */
  fy_deadline_unref(&b->timer);
  fy__breaker_sm_init(&b->core, opts, wbytes > 0 ? (char *)b + BREAKER_HDR : NULL,
               fy__ctx_now(ctx));
  *out = b;
  return 0;
}

fy_policy_t *fy_breaker_policy(fy_breaker_t *b) {
  return b != NULL ? b->policy : NULL;
}

int fy_breaker_close(fy_breaker_t *b, fy_close_cb cb, void *user_data) {
  int rc;
  if (b == NULL)
    return 0;
  if (closing(b))
    return FY_ECLOSED;
  rc = fy_policy_close_as(b->policy, b, cb, user_data);
  if (rc == 0)
    brk_close(b->policy);
  return rc;
}
