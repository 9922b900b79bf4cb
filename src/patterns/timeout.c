/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * Timeout: total, per-attempt and streaming limits.
 *
 * The pure state machine (src/sm/timeout_sm.c) computes, from the instant the
 * limits were armed and the marks seen since, the nearest instant at which
 * something may fire and which stage has fired by a given |now|.  The
 * driver keeps one frame timer set to that instant.  On expiry it abandons
 * the child with fy_frame_detach() (the operation's cancel hook runs, its
 * late outcome and result are freed by the core) and completes the frame at
 * once, so the call finishes on time whether or not the operation
 * cooperates. */
#include <string.h>

#include "policy_impl.h"
#include "timeout_sm.h"

struct fy_timeout_s {
  fy_policy_t *policy;
  uint64_t timeout_ms;
  uint64_t first_byte_ms;
  uint64_t idle_ms;
  fy_timeout_scope_t scope;
  fy_timeout_cb on_timeout;
  void *user_data;
  fy__queue_t watches; /* active standalone watches */
  fy__lane_t lane;     /* frames armed timeout_ms after their start */
};

typedef struct timeout_frame_s {
  fy__timeout_sm_t sm;
  fy_frame_t *child;  /* live child, NULL once delivered or abandoned */
  uint64_t armed_at;  /* instant the frame timer is set to */
} timeout_frame_t;

/* ---- shared by frames and watches -------------------------------------- */

const char *fy_timeout_stage_name(fy_timeout_stage_t stage) {
  switch (stage) {
  case FY_TIMEOUT_STAGE_NONE:
    return "none";
  case FY_TIMEOUT_STAGE_TOTAL:
    return "total";
  case FY_TIMEOUT_STAGE_FIRST_BYTE:
    return "first_byte";
  case FY_TIMEOUT_STAGE_IDLE:
    return "idle";
  case FY_TIMEOUT_STAGE_DEADLINE:
    return "deadline";
  default:
    return "unknown";
  }
}

static int stage_status(fy_timeout_stage_t stage) {
  return stage == FY_TIMEOUT_STAGE_DEADLINE ? FY_EDEADLINE : UV_ETIMEDOUT;
}

/* FY_EV_TIMEOUT: value = stage, delay_ms = limit, latency_ns = elapsed at
 * fire time. */
static void emit_timeout(fy_timeout_t *t, fy_call_t *call, int status,
                         fy_timeout_stage_t stage, uint64_t limit,
                         uint64_t elapsed) {
  fy_policy_t *p = t->policy;
  fy_ctx_t *ctx = fy__policy_ctx(p);
  fy_event_t ev;
  if (!fy_policy_event_init(p, &ev, FY_EV_TIMEOUT))
    return;
  ev.call = call;
  ev.status = status;
  if (call != NULL && call->detail.attempts > 0)
    ev.attempt = call->detail.attempts - 1;
  ev.delay_ms = limit;
  ev.latency_ns = elapsed > UINT64_MAX / 1000000u ? UINT64_MAX
                                                   : elapsed * 1000000u;
  ev.value = (int64_t)stage;
  fy_ctx_emit(ctx, &ev);
}

/* ---- the policy driver ------------------------------------------------- */

static void frame_rearm(fy_frame_t *f, timeout_frame_t *tf) {
  uint64_t next = fy__timeout_sm_next(&tf->sm);
  if (next == tf->armed_at)
    return; /* re-inserting would only reorder it among equal instants */
  tf->armed_at = next;
  if (next == FY_TIME_NEVER)
    fy_frame_disarm(f);
  else
    fy_frame_arm(f, next);
}

static fy_detail_t *write_verdict(fy_policy_t *p, fy_frame_t *f,
                                  timeout_frame_t *tf,
                                  fy_timeout_stage_t stage, uint64_t now) {
  fy_detail_t *d = fy_frame_verdict(f, p);
  d->state = (int)stage;
  d->n[0] = fy__timeout_sm_limit(&tf->sm, stage);
  d->n[1] = fy__timeout_sm_elapsed(&tf->sm, now);
  d->n[2] = tf->sm.marks;
  return d;
}

static void abandon_child(timeout_frame_t *tf) {
  fy_frame_t *child = tf->child;
  tf->child = NULL;
  if (child != NULL)
    fy_frame_detach(child);
}

/* |stage| fired at |now|: give up on the child and complete on time. */
static void fire(fy_policy_t *p, fy_frame_t *f, timeout_frame_t *tf,
                 fy_timeout_stage_t stage, uint64_t now) {
  fy_timeout_t *t = fy__policy_impl(p);
  int status = stage_status(stage);
  uint64_t limit = fy__timeout_sm_limit(&tf->sm, stage);
  uint64_t elapsed = fy__timeout_sm_elapsed(&tf->sm, now);
  fy_call_t *call;

  abandon_child(tf);
  write_verdict(p, f, tf, stage, now);
  /* Delivery waits until this hook returns, so the call is still ours and
   * the user callback below runs before the call's own callback. */
  fy_frame_done(f, status);
  call = fy__frame_call(f);
  emit_timeout(t, call, status, stage, limit, elapsed);
  if (stage != FY_TIMEOUT_STAGE_DEADLINE && t->on_timeout != NULL)
    t->on_timeout(t, call, stage, elapsed, limit, t->user_data);
}

static int timeout_start(fy_policy_t *p, fy_frame_t *f) {
  fy_timeout_t *t = fy__policy_impl(p);
  timeout_frame_t *tf = fy__frame_state(f);
  uint64_t now = fy__ctx_now(fy__frame_ctx(f));
  uint64_t total = t->timeout_ms;
  fy_timeout_stage_t stage;
  int rc;

  if (t->scope == FY_TIMEOUT_TOTAL) {
    uint64_t override = fy_frame_call_opts(f)->timeout_ms;
    if (override > FY_TIMEOUT_MAX_MS) {
      fy_frame_verdict(f, p)->cause = UV_EINVAL;
      return UV_EINVAL;
    }
    if (override != 0)
      total = override;
  }
  /* The inherited deadline is read before this layer tightens it, so an
   * expiry that belongs to an enclosing layer is told apart: it ends the
   * call with FY_EDEADLINE, not with this policy's UV_ETIMEDOUT. */
  fy__timeout_sm_start(&tf->sm, now, total, t->first_byte_ms, t->idle_ms,
                       fy__frame_deadline(f));
  tf->armed_at = FY_TIME_NEVER;
  stage = fy__timeout_sm_due(&tf->sm, now);
  if (stage != FY_TIMEOUT_STAGE_NONE) {
    /* The enclosing deadline has already passed (own limits are >= 1 ms):
     * refuse rather than run an operation that cannot finish in time. */
    write_verdict(p, f, tf, stage, now);
    emit_timeout(t, fy__frame_call(f), stage_status(stage), stage,
                 fy__timeout_sm_limit(&tf->sm, stage), 0);
    return stage_status(stage);
  }
  fy_frame_set_deadline(f, tf->sm.total_at);
  /* Arm before spawning: on equal instants the wheel fires in start order,
   * so an outer timeout always fires before an inner one armed later. */
  tf->armed_at = fy__timeout_sm_next(&tf->sm);
  if (tf->armed_at != FY_TIME_NEVER) {
    /* The usual case, the policy's own total limit and nothing sooner,
     * expires in start order: the lane's list instead of the wheel. */
    if (tf->armed_at == tf->sm.total_at && total == t->timeout_ms)
      rc = fy__frame_arm_lane(f, tf->armed_at, &t->lane);
    else
      rc = fy_frame_arm(f, tf->armed_at);
    if (rc < 0)
      return rc;
  }
  return fy_frame_spawn(f, &tf->child);
}

static void timeout_child_done(fy_policy_t *p, fy_frame_t *f,
                               fy_frame_t *child, int status) {
  timeout_frame_t *tf = fy__frame_state(f);
  tf->child = NULL;
  if ((status == FY_EDEADLINE || status == UV_ETIMEDOUT) &&
      !fy__frame_is_cancelled(f)) {
    /* Something below timed out at an instant when one of our own limits
     * is due too (an inner timeout whose timer ran first, or an operation
     * whose own transfer timeout was set from our deadline): report it as
     * this layer's expiry, as if our timer had run first, so the outcome
     * does not depend on the order of equal-instant timers. */
    uint64_t now = fy__ctx_now(fy__frame_ctx(f));
    fy_timeout_stage_t stage = fy__timeout_sm_due(&tf->sm, now);
    if (stage != FY_TIMEOUT_STAGE_NONE) {
      fire(p, f, tf, stage, now);
      return;
    }
  }
  fy__frame_adopt_result(f, child);
  fy_frame_done(f, status);
}

static void timeout_deadline(fy_policy_t *p, fy_frame_t *f) {
  timeout_frame_t *tf = fy__frame_state(f);
  uint64_t now = fy__ctx_now(fy__frame_ctx(f));
  fy_timeout_stage_t stage = fy__timeout_sm_due(&tf->sm, now);

  tf->armed_at = FY_TIME_NEVER; /* the timer is spent */
  if (stage == FY_TIMEOUT_STAGE_NONE) {
    frame_rearm(f, tf);
    return;
  }
  if (fy__frame_is_cancelled(f)) {
    /* Cancellation was asked for and the operation has not acknowledged
     * it by the deadline: stop waiting, but report what the caller asked
     * for rather than a timeout. */
    abandon_child(tf);
    write_verdict(p, f, tf, stage, now)->cause = UV_ETIMEDOUT;
    fy_frame_done(f, UV_ECANCELED);
    return;
  }
  fire(p, f, tf, stage, now);
}

static void timeout_progress(fy_policy_t *p, fy_frame_t *f) {
  timeout_frame_t *tf = fy__frame_state(f);
  (void)p;
  fy__timeout_sm_mark(&tf->sm, fy__ctx_now(fy__frame_ctx(f)));
  frame_rearm(f, tf);
}

static void watch_finish(fy_timeout_watch_t *w, int status,
                         fy_timeout_stage_t stage, uint64_t now);

/* Frames are cancelled by the core after this hook; watches are ours. */
static void timeout_close(fy_policy_t *p) {
  fy_timeout_t *t = fy__policy_impl(p);
  uint64_t now = fy__ctx_now(fy__policy_ctx(p));
  /* Pop one at a time: a callback may stop or restart other watches. */
  while (!fy__queue_empty(&t->watches)) {
    fy_timeout_watch_t *w = fy__queue_data(fy__queue_head(&t->watches),
                                           fy_timeout_watch_t, node);
    watch_finish(w, UV_ECANCELED, FY_TIMEOUT_STAGE_NONE, now);
  }
}

static void timeout_destroy(fy_policy_t *p) {
  fy_timeout_t *t = fy__policy_impl(p);
  fy__lane_close(&t->lane); /* no frame is left to use it */
}

/* The default cancel (cancel the child) is what we want: the timer stays
 * armed, so even an operation that ignores cancellation completes by the
 * deadline (see timeout_deadline). */
static const fy_policy_vtable_t timeout_vtable = {
    .kind = "timeout",
    .frame_size = sizeof(timeout_frame_t),
    .start = timeout_start,
    .child_done = timeout_child_done,
    .progress = timeout_progress,
    .deadline = timeout_deadline,
    .close = timeout_close,
    .destroy = timeout_destroy,
};

/* Without a first-byte or idle limit a mark changes nothing: leaving the
 * progress hook out spares every fy_attempt_mark() (one per body chunk in
 * the curl adapter) a call into this policy. */
static const fy_policy_vtable_t timeout_vtable_no_progress = {
    .kind = "timeout",
    .frame_size = sizeof(timeout_frame_t),
    .start = timeout_start,
    .child_done = timeout_child_done,
    .deadline = timeout_deadline,
    .close = timeout_close,
    .destroy = timeout_destroy,
};

void fy_timeout_opts_init(fy_timeout_opts_t *opts) {
  if (opts == NULL)
    return;
  memset(opts, 0, sizeof(*opts));
  opts->timeout_ms = FY_TIMEOUT_DEFAULT_MS;
  opts->scope = FY_TIMEOUT_TOTAL;
}

int fy_timeout_new(fy_ctx_t *ctx, const fy_timeout_opts_t *opts,
                   fy_timeout_t **out) {
  fy_timeout_opts_t defaults;
  fy_policy_t *p;
  fy_timeout_t *t;
  int rc;

  if (out == NULL)
    return UV_EINVAL;
  *out = NULL;
  if (ctx == NULL)
    return UV_EINVAL;
  if (opts == NULL) {
    fy_timeout_opts_init(&defaults);
    opts = &defaults;
  }
  rc = fy_timeout_opts_check(opts);
  if (rc != 0)
    return rc;
  rc = fy_policy_new(ctx,
                     opts->first_byte_ms == 0 && opts->idle_ms == 0
                         ? &timeout_vtable_no_progress
                         : &timeout_vtable,
                     sizeof(*t), opts->name, &p);
  if (rc != 0)
    return rc;
  t = fy__policy_impl(p);
  t->policy = p;
  t->timeout_ms = opts->timeout_ms;
  t->first_byte_ms = opts->first_byte_ms;
  t->idle_ms = opts->idle_ms;
  t->scope = opts->scope;
  t->on_timeout = opts->on_timeout;
  t->user_data = opts->user_data;
  fy__queue_init(&t->watches);
  fy__lane_init(ctx, &t->lane);
  *out = t;
  return 0;
}

fy_policy_t *fy_timeout_policy(fy_timeout_t *t) {
  return t != NULL ? t->policy : NULL;
}

int fy_timeout_close(fy_timeout_t *t, fy_close_cb cb, void *user_data) {
  int rc;
  if (t == NULL)
    return 0;
  if (fy__policy_is_closing(t->policy))
    return FY_ECLOSED;
  rc = fy_policy_close_as(t->policy, t, cb, user_data);
  return rc;
}

/* ---- standalone watches ------------------------------------------------ */

static void watch_rearm(fy_timeout_watch_t *w) {
  uint64_t next = fy__timeout_sm_next(&w->sm);
  if (next == fy_deadline_expiry(&w->deadline))
    return;
  if (next == FY_TIME_NEVER)
    fy_deadline_stop(&w->deadline);
  else
    fy_deadline_start_at(&w->deadline, next);
}

/* Deactivate |w| and run its callback last: the callback may reuse or free
 * the watch. */
static void watch_finish(fy_timeout_watch_t *w, int status,
                         fy_timeout_stage_t stage, uint64_t now) {
  fy_timeout_t *t = w->timeout;
  fy_timeout_watch_cb cb = w->cb;
  void *ud = w->user_data;
  uint64_t limit = stage == FY_TIMEOUT_STAGE_NONE
                       ? w->sm.total_ms
                       : fy__timeout_sm_limit(&w->sm, stage);
  uint64_t elapsed = fy__timeout_sm_elapsed(&w->sm, now);

  fy_deadline_stop(&w->deadline);
  fy__queue_remove(&w->node);
  w->active = 0;
  if (status == UV_ETIMEDOUT) {
    emit_timeout(t, NULL, status, stage, limit, elapsed);
    if (t->on_timeout != NULL)
      t->on_timeout(t, NULL, stage, elapsed, limit, t->user_data);
  }
  cb(w, status, stage, elapsed, limit, ud);
}

static void on_watch_deadline(fy_deadline_t *d) {
  fy_timeout_watch_t *w = fy_container_of(d, fy_timeout_watch_t, deadline);
  uint64_t now = fy__ctx_now(fy__policy_ctx(w->timeout->policy));
  fy_timeout_stage_t stage = fy__timeout_sm_due(&w->sm, now);
  if (stage == FY_TIMEOUT_STAGE_NONE) {
    watch_rearm(w);
    return;
  }
  watch_finish(w, UV_ETIMEDOUT, stage, now);
}

int fy_timeout_watch_start(fy_timeout_t *t, fy_timeout_watch_t *w,
                           uint64_t timeout_ms, fy_timeout_watch_cb cb,
                           void *user_data) {
  fy_ctx_t *ctx;
  uint64_t now, total;
  int rc;

  if (t == NULL || w == NULL || cb == NULL || timeout_ms > FY_TIMEOUT_MAX_MS)
    return UV_EINVAL;
  if (fy__policy_is_closing(t->policy))
    return FY_ECLOSED;
  ctx = fy__policy_ctx(t->policy);
  now = fy__ctx_now(ctx);
  total = timeout_ms != 0 ? timeout_ms : t->timeout_ms;
  fy__timeout_sm_start(&w->sm, now, total, t->first_byte_ms, t->idle_ms,
                       FY_TIME_NEVER);
  fy_deadline_init(ctx, &w->deadline, on_watch_deadline);
  rc = fy_deadline_start_at(&w->deadline, fy__timeout_sm_next(&w->sm));
  if (rc != 0)
    return rc;
  w->timeout = t;
  w->cb = cb;
  w->user_data = user_data;
  w->active = 1;
  fy__queue_insert_tail(&t->watches, &w->node);
  return 0;
}

void fy_timeout_watch_mark(fy_timeout_watch_t *w) {
  if (w == NULL || !w->active)
    return;
  fy__timeout_sm_mark(&w->sm, fy__ctx_now(fy__policy_ctx(w->timeout->policy)));
  watch_rearm(w);
}

void fy_timeout_watch_stop(fy_timeout_watch_t *w) {
  if (w == NULL || !w->active)
    return;
  fy_deadline_stop(&w->deadline);
  fy__queue_remove(&w->node);
  w->active = 0;
}

int fy_timeout_watch_is_active(const fy_timeout_watch_t *w) {
  return w != NULL && w->active;
}

uint64_t fy_timeout_watch_remaining(const fy_timeout_watch_t *w) {
  uint64_t now;
  if (w == NULL || !w->active || w->sm.total_at == FY_TIME_NEVER)
    return FY_TIME_NEVER;
  now = fy__ctx_now(fy__policy_ctx(w->timeout->policy));
  return w->sm.total_at > now ? w->sm.total_at - now : 0;
}
