/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * Bulkhead: a concurrency limit with a queue of pending calls.
 *
 * The pure state machine (slot counts, the waiter queue, admission and
 * hand-over) is src/sm/bulkhead_sm.c and knows nothing of frames; this
 * driver binds it to the policy API.  A queued call is a frame whose start hook returned
 * 0 without spawning: its state is linked in the queue and its own timer
 * bounds the wait.  When a slot frees, the head of the queue gets it and its
 * child is spawned right there, before anything else can run, so a call that
 * arrives at that moment finds the slot taken (no barging). */
#include "policy_impl.h"
#include "bulkhead_sm.h"

/* ---- driver ------------------------------------------------------------ */

struct fy_bulkhead_s {
  fy_policy_t *policy;
  fy__bulkhead_sm_t core;
  fy_bulkhead_rejected_cb on_rejected;
  void *user_data;
};

enum {
  BH_NEW = 0,  /* start hook running, no decision yet */
  BH_QUEUED,   /* linked in the queue, waiting for a slot */
  BH_RUNNING,  /* holds a slot; its child runs */
  BH_ENDED     /* outcome decided (or being decided) by this layer */
};

typedef struct bh_frame_s {
  fy__bulkhead_sm_waiter_t waiter;
  uint64_t since; /* when it joined the queue */
  fy_frame_t *frame;
  fy_frame_t *child;
  int phase;
} bh_frame_t;

/* Whether the caller gave up (cancellation requested for this frame
 * or any frame above it).  Checked before a slot is looked at, so a call
 * whose caller already gave up never runs, whatever the slots say. */
static inline int caller_cancelled(const fy_frame_t *f) {
  return f != NULL && fy_frame_is_cancelled_above(f);
}

static void emit(fy_bulkhead_t *bh, fy_event_type_t type, fy_call_t *call,
                 int status, int64_t from, int64_t to, int64_t value,
                 uint64_t delay_ms) {
  fy_ctx_t *ctx = fy__policy_ctx(bh->policy);
  fy_event_t ev;
  if (!fy_policy_event_init(bh->policy, &ev, type))
    return;
  ev.call = call;
  ev.status = status;
  ev.from = from;
  ev.to = to;
  ev.value = value;
  ev.delay_ms = delay_ms;
  fy_ctx_emit(ctx, &ev);
}

/* FY_EV_QUEUE: value 1 when |f| joined the queue, 0 when it left (with
 * the time it waited); from/to are the queue lengths before and after. */
static void emit_queue(fy_bulkhead_t *bh, fy_frame_t *f, int joined) {
  int64_t len = bh->core.queued;
  bh_frame_t *st = fy__frame_state(f);
  uint64_t waited = joined ? 0 : fy__ctx_now(fy__frame_ctx(f)) - st->since;
  emit(bh, FY_EV_QUEUE, fy__frame_call(f), 0, joined ? len - 1 : len + 1,
       len, joined, waited);
}

/* FY_EV_REJECT: status is the reason; from = active, to = queued. */
static void emit_reject(fy_bulkhead_t *bh, fy_call_t *call, int reason) {
  emit(bh, FY_EV_REJECT, call, reason, bh->core.active, bh->core.queued, 0,
       0);
}

static void fill_verdict(fy_bulkhead_t *bh, fy_detail_t *d, int state) {
  d->state = state;
  d->n[0] = bh->core.active;
  d->n[1] = bh->core.queued;
  d->n[2] = bh->core.max_concurrent;
  d->n[3] = bh->core.max_queue;
}

static void write_verdict(fy_bulkhead_t *bh, fy_frame_t *f, int state) {
  fill_verdict(bh, fy_frame_verdict(f, bh->policy), state);
}

static void notify_rejected(fy_bulkhead_t *bh, int reason) {
  if (bh->on_rejected != NULL)
    bh->on_rejected(reason, bh->user_data);
}

/* Take |st| out of the queue for good. */
static void leave_queue(fy_bulkhead_t *bh, bh_frame_t *st) {
  fy__bulkhead_sm_leave(&bh->core, &st->waiter);
  st->phase = BH_ENDED;
  fy_frame_disarm(st->frame);
  emit_queue(bh, st->frame, 0);
}

/* Nobody waits (a bulkhead's usual state): nothing to hand over. */
static void dispatch_queue(fy_bulkhead_t *bh);
static inline void dispatch(fy_bulkhead_t *bh) {
  if (bh->core.queued > 0)
    dispatch_queue(bh);
}

/* |st| holds a slot: start the layer below.  Returns 0, or the refusal
 * after giving the slot back. */
static int run(fy_bulkhead_t *bh, bh_frame_t *st) {
  fy_frame_t *f = st->frame;
  int rc;

  st->phase = BH_RUNNING;
  rc = fy_frame_spawn(f, &st->child);
  if (rc == 0) {
    /* A cancel that arrived during the spawn found no child to pass on. */
    if (fy__frame_is_cancelled(f))
      fy_frame_cancel(st->child);
    return 0;
  }
  st->phase = BH_ENDED;
  st->child = NULL;
  fy__bulkhead_sm_release(&bh->core);
  return rc;
}

/* Hand free slots to the queue's head, one after the other.  A refused
 * spawn completes that waiter with the refusal and the slot goes to the
 * next.  Completing a waiter may run user code synchronously, so the state
 * is read afresh on every round. */
static void dispatch_queue(fy_bulkhead_t *bh) {
  fy__bulkhead_sm_waiter_t *w;
  bh_frame_t *st;
  fy_frame_t *f;
  int rc;

  /* While closing, waiters are left for the close hook to cancel. */
  while (!fy__policy_is_closing(bh->policy) &&
         (w = fy__bulkhead_sm_next(&bh->core)) != NULL) {
    st = fy_container_of(w, bh_frame_t, waiter);
    f = st->frame;
    st->phase = BH_RUNNING;
    fy_frame_disarm(f); /* the queue timeout bounds the wait, not the run */
    emit_queue(bh, f, 0);
    if (caller_cancelled(f)) {
      /* The caller left (seen by a listener, or above a layer that
       * keeps cancellation to itself): the work is never started. */
      st->phase = BH_ENDED;
      fy__bulkhead_sm_release(&bh->core);
      write_verdict(bh, f, UV_ECANCELED);
      rc = UV_ECANCELED;
    } else {
      rc = run(bh, st);
    }
    if (rc < 0)
      fy_frame_done(f, rc); /* |f| may be gone after this */
  }
}

static int bh_start(fy_policy_t *p, fy_frame_t *f) {
  fy_bulkhead_t *bh = fy__policy_impl(p);
  bh_frame_t *st = fy__frame_state(f);
  int rc;

  st->frame = f;
  fy__queue_init(&st->waiter.node);
  if (caller_cancelled(f)) {
    write_verdict(bh, f, UV_ECANCELED);
    return UV_ECANCELED;
  }
  rc = fy__bulkhead_sm_admit(&bh->core, &st->waiter, fy__ctx_now(fy__frame_ctx(f)));
  if (rc == FY__BH_RUN) {
    rc = run(bh, st);
    if (rc < 0)
      dispatch(bh); /* someone may have queued during the spawn */
    return rc;
  }
  if (rc == FY__BH_QUEUED) {
    st->phase = BH_QUEUED;
    st->since = fy__ctx_now(fy__frame_ctx(f));
    if (st->waiter.deadline != FY_TIME_NEVER &&
        (rc = fy_frame_arm(f, st->waiter.deadline)) < 0) {
      fy__bulkhead_sm_leave(&bh->core, &st->waiter);
      st->phase = BH_ENDED;
      return rc;
    }
    emit_queue(bh, f, 1);
    return 0;
  }
  /* Rule 2: a refusal decided now is returned now. */
  st->phase = BH_ENDED;
  write_verdict(bh, f, rc);
  emit_reject(bh, fy__frame_call(f), rc);
  notify_rejected(bh, rc);
  return rc;
}

static void bh_child_done(fy_policy_t *p, fy_frame_t *f, fy_frame_t *child,
                          int status) {
  fy_bulkhead_t *bh = fy__policy_impl(p);
  bh_frame_t *st = fy__frame_state(f);

  st->child = NULL;
  st->phase = BH_ENDED;
  fy__frame_adopt_result(f, child);
  fy_frame_done(f, status); /* takes effect when this hook returns */
  fy__bulkhead_sm_release(&bh->core);
  dispatch(bh);
}

static void bh_cancel(fy_policy_t *p, fy_frame_t *f) {
  fy_bulkhead_t *bh = fy__policy_impl(p);
  bh_frame_t *st = fy__frame_state(f);

  switch (st->phase) {
  case BH_QUEUED:
    /* A waiter whose caller gives up leaves at once, never runs. */
    leave_queue(bh, st);
    write_verdict(bh, f, UV_ECANCELED);
    fy_frame_done(f, UV_ECANCELED);
    break;
  case BH_RUNNING:
    if (st->child != NULL)
      fy_frame_cancel(st->child);
    break;
  default:
    break; /* the outcome is already being decided */
  }
}

static void bh_deadline(fy_policy_t *p, fy_frame_t *f) {
  fy_bulkhead_t *bh = fy__policy_impl(p);
  bh_frame_t *st = fy__frame_state(f);

  if (st->phase != BH_QUEUED)
    return;
  leave_queue(bh, st);
  write_verdict(bh, f, FY_EQUEUETIMEOUT);
  emit_reject(bh, fy__frame_call(f), FY_EQUEUETIMEOUT);
  fy_frame_done(f, FY_EQUEUETIMEOUT); /* delivered after this hook */
  notify_rejected(bh, FY_EQUEUETIMEOUT);
}

/* Closing: every waiter completes with UV_ECANCELED (rule 4), reported to
 * on_rejected as FY_ECLOSED.  Running frames are cancelled by the core
 * afterwards. */
static void bh_close(fy_policy_t *p) {
  fy_bulkhead_t *bh = fy__policy_impl(p);
  fy__bulkhead_sm_waiter_t *w;
  bh_frame_t *st;
  fy_frame_t *f;

  while ((w = fy__bulkhead_sm_head(&bh->core)) != NULL) {
    st = fy_container_of(w, bh_frame_t, waiter);
    f = st->frame;
    leave_queue(bh, st);
    write_verdict(bh, f, FY_ECLOSED);
    emit_reject(bh, fy__frame_call(f), FY_ECLOSED);
    /* Delivery may be synchronous (a parent frame's child_done): |f| is
     * not touched after this. */
    fy_frame_done(f, UV_ECANCELED);
    notify_rejected(bh, FY_ECLOSED);
  }
}

/* The admission path: a free slot with nobody waiting is taken without a
 * frame.  Anything else (a queue to join, a refusal to decide) goes to the
 * frame hooks above, which decide it exactly as for a waiting call. */
static int bh_admit(fy_policy_t *p, fy_call_t *call, fy_frame_t *parent,
                    void *token) {
  fy_bulkhead_t *bh = fy__policy_impl(p);
  (void)token;
  if (caller_cancelled(parent)) {
    fill_verdict(bh, fy_call_verdict(call, p), UV_ECANCELED);
    return UV_ECANCELED;
  }
  return fy__bulkhead_sm_try_acquire(&bh->core) == 0 ? 0 : FY_ADMIT_WAIT;
}

static int bh_settle(fy_policy_t *p, void *token, int status) {
  fy_bulkhead_t *bh = fy__policy_impl(p);
  (void)token;
  (void)status;
  fy__bulkhead_sm_release(&bh->core);
  dispatch(bh);
  return 0;
}

static int bh_release(fy_policy_t *p, void *token, int status) {
  return bh_settle(p, token, status);
}

static const fy_policy_vtable_t bh_vtable = {
    .kind = "bulkhead",
    .frame_size = sizeof(bh_frame_t),
    .start = bh_start,
    .child_done = bh_child_done,
    .cancel = bh_cancel,
    .deadline = bh_deadline,
    .close = bh_close,
    .admit = bh_admit,
    .settle = bh_settle,
    .release = bh_release,
};

/* ---- public API -------------------------------------------------------- */

void fy_bulkhead_opts_init(fy_bulkhead_opts_t *opts) {
  if (opts == NULL)
    return;
  memset(opts, 0, sizeof(*opts));
  opts->max_concurrent = 10;
  opts->max_queue = 0;
  opts->queue_timeout_ms = 0;
  opts->order = FY_BULKHEAD_FIFO;
}

int fy_bulkhead_opts_check(const fy_bulkhead_opts_t *o) {
  if (o == NULL)
    return UV_EINVAL;
  if (o->max_concurrent < 1 || o->max_concurrent > FY_BULKHEAD_LIMIT_MAX)
    return UV_EINVAL;
  if (o->max_queue > FY_BULKHEAD_LIMIT_MAX)
    return UV_EINVAL;
  if (o->queue_timeout_ms > FY_BULKHEAD_TIMEOUT_MAX)
    return UV_EINVAL;
  if (o->order != FY_BULKHEAD_FIFO && o->order != FY_BULKHEAD_LIFO)
    return UV_EINVAL;
  return 0;
}

int fy_bulkhead_new(fy_ctx_t *ctx, const fy_bulkhead_opts_t *opts,
                    fy_bulkhead_t **out) {
  fy_bulkhead_opts_t defaults;
  fy_policy_t *p;
  fy_bulkhead_t *bh;
  int rc;

  if (out == NULL)
    return UV_EINVAL;
  *out = NULL;
  if (ctx == NULL)
    return UV_EINVAL;
  if (opts == NULL) {
    fy_bulkhead_opts_init(&defaults);
    opts = &defaults;
  }
  rc = fy_bulkhead_opts_check(opts);
  if (rc != 0)
    return rc;
  rc = fy_policy_new(ctx, &bh_vtable, sizeof(*bh), opts->name, &p);
  if (rc != 0)
    return rc;
  bh = fy__policy_impl(p);
  bh->policy = p;
  fy__bulkhead_sm_init(&bh->core, opts->max_concurrent, opts->max_queue,
              opts->queue_timeout_ms, opts->order == FY_BULKHEAD_LIFO);
  bh->on_rejected = opts->on_rejected;
  bh->user_data = opts->user_data;
  *out = bh;
  return 0;
}

fy_policy_t *fy_bulkhead_policy(fy_bulkhead_t *bh) {
  return bh != NULL ? bh->policy : NULL;
}

int fy_bulkhead_close(fy_bulkhead_t *bh, fy_close_cb cb, void *user_data) {
  if (bh == NULL)
    return 0;
  if (fy__policy_is_closing(bh->policy))
    return FY_ECLOSED;
  return fy_policy_close_as(bh->policy, bh, cb, user_data);
}

size_t fy_bulkhead_active(const fy_bulkhead_t *bh) {
  return bh != NULL ? bh->core.active : 0;
}

size_t fy_bulkhead_queued(const fy_bulkhead_t *bh) {
  return bh != NULL ? bh->core.queued : 0;
}

int fy_bulkhead_try_acquire(fy_bulkhead_t *bh) {
  int rc;
  if (bh == NULL)
    return UV_EINVAL;
  if (fy__policy_is_closing(bh->policy))
    rc = FY_ECLOSED;
  else
    rc = fy__bulkhead_sm_try_acquire(&bh->core);
  if (rc < 0) {
    emit_reject(bh, NULL, rc);
    notify_rejected(bh, rc);
  }
  return rc;
}

void fy_bulkhead_release(fy_bulkhead_t *bh) {
  if (bh == NULL)
    return;
  fy__bulkhead_sm_release(&bh->core);
  dispatch(bh);
}
