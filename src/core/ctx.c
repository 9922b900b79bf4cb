/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * The per-loop context: clock, deadlines (one uv_timer_t over a timer
 * wheel), the deferred-task queue, and asynchronous close. */
#include "internal.h"

static void on_timer(uv_timer_t *timer);
static void on_check(uv_check_t *check);
static void on_idle(uv_idle_t *idle);

int fy_ctx_new(uv_loop_t *loop, const fy_ctx_opts_t *opts, fy_ctx_t **out) {
  fy_ctx_t *ctx;
  if (out == NULL)
    return UV_EINVAL;
  *out = NULL;
  if (loop == NULL)
    return UV_EINVAL;
  ctx = fy__calloc(1, sizeof(*ctx));
  if (ctx == NULL)
    return UV_ENOMEM;
  ctx->magic = FY__MAGIC_CTX;
  ctx->loop = loop;
  if (opts != NULL && opts->manual_clock) {
    ctx->flags |= FY__CTX_MANUAL;
    ctx->manual_now = opts->manual_start_ms;
  }
  if (opts != NULL && opts->measure_calls)
    ctx->flags |= FY__CTX_MEASURE;
  fy__wheel_init(&ctx->wheel, fy__ctx_now(ctx));
  ctx->armed_at = FY_TIME_NEVER;
  fy__queue_init(&ctx->tasks);
  fy__queue_init(&ctx->pipelines);
  fy__queue_init(&ctx->policies);
  fy__queue_init(&ctx->listeners);
  fy__queue_init(&ctx->attachments);
  fy__queue_init(&ctx->lanes);
  ctx->close_task.run = fy__ctx_close_task;
  /* These inits cannot fail on a valid loop; they allocate nothing. */
  uv_timer_init(loop, &ctx->timer);
  uv_unref((uv_handle_t *)&ctx->timer); /* referenced while deadlines wait */
  uv_check_init(loop, &ctx->check);
  uv_idle_init(loop, &ctx->idle);
  ctx->open_handles = 3;
  *out = ctx;
  return 0;
}

uv_loop_t *fy_ctx_loop(const fy_ctx_t *ctx) { return ctx->loop; }
void fy_ctx_set_data(fy_ctx_t *ctx, void *data) { ctx->data = data; }
void *fy_ctx_get_data(const fy_ctx_t *ctx) { return ctx->data; }

uint64_t fy_ctx_now(const fy_ctx_t *ctx) {
  if (ctx->flags & FY__CTX_MANUAL)
    return ctx->manual_now;
  return uv_now(ctx->loop);
}

uint64_t fy_ctx_hrtime(const fy_ctx_t *ctx) {
  if (ctx->flags & FY__CTX_MANUAL)
    return ctx->manual_now * 1000000u;
  return uv_hrtime();
}

/* The uv timer is referenced exactly while a deadline that keeps the loop
 * alive is pending and the context itself is not unreferenced. */
static void update_timer_ref(fy_ctx_t *ctx) {
  int want = ctx->strong > 0 && !(ctx->flags & FY__CTX_UNREF);
  if (want == ctx->timer_refd || (ctx->flags & FY__CTX_FINAL))
    return;
  if (want)
    uv_ref((uv_handle_t *)&ctx->timer);
  else
    uv_unref((uv_handle_t *)&ctx->timer);
  ctx->timer_refd = want;
}

/* |d| starts (+1) or stops (-1) being pending. */
static void count_pending(fy_ctx_t *ctx, const fy_deadline_t *d, int delta) {
  if (d->flags & FY__DL_F_UNREF)
    return;
  if (delta > 0) {
    if (ctx->strong++ == 0)
      update_timer_ref(ctx);
  } else if (--ctx->strong == 0) {
    update_timer_ref(ctx);
  }
}

/* |d| starts (+1) or stops (-1) being pending: it fired, stopped or was
 * dropped.  (fy_deadline_ref/unref change only count_pending's side.) */
static void note_pending(fy_ctx_t *ctx, const fy_deadline_t *d, int delta) {
  if (!(d->flags & FY__DL_F_INTERNAL)) {
    if (delta > 0)
      ctx->npending++;
    else
      ctx->npending--;
  }
  count_pending(ctx, d, delta);
}

void fy_ctx_ref(fy_ctx_t *ctx) {
  ctx->flags &= ~(unsigned)FY__CTX_UNREF;
  update_timer_ref(ctx);
}

void fy_ctx_unref(fy_ctx_t *ctx) {
  ctx->flags |= FY__CTX_UNREF;
  update_timer_ref(ctx);
}

size_t fy_ctx_pending_deadlines(const fy_ctx_t *ctx) {
  return ctx->npending;
}

void fy_ctx_stats(const fy_ctx_t *ctx, fy_ctx_stats_t *out) {
  out->deadlines = ctx->npending;
  out->calls = ctx->ncalls;
  out->frames = ctx->nframes;
  out->queued = ctx->ntasks;
  out->pool_cached = fy__pool_cached(&ctx->pool);
}

/* ---- the uv timer ------------------------------------------------------ */

/* Arm the uv timer for the wheel's earliest entry, or stop it.  Called after
 * a run and whenever an insertion may have moved the earliest entry. */
static void rearm(fy_ctx_t *ctx) {
  uint64_t next, now;
  if (ctx->flags & (FY__CTX_MANUAL | FY__CTX_FINAL))
    return;
  next = fy__wheel_next(&ctx->wheel);
  if (next == FY_TIME_NEVER) {
    if (ctx->armed_at != FY_TIME_NEVER) {
      uv_timer_stop(&ctx->timer);
      ctx->armed_at = FY_TIME_NEVER;
    }
    return;
  }
  if (next == ctx->armed_at)
    return;
  now = uv_now(ctx->loop);
  uv_timer_start(&ctx->timer, on_timer, next > now ? next - now : 0, 0);
  ctx->armed_at = next;
}

/* Fire everything due by |target|, one instant at a time, in order.  In
 * manual mode the clock is set to each instant and the completions it
 * causes are delivered before the next instant fires. */
static void drain_tasks(fy_ctx_t *ctx, int until_empty);

static void run_deadlines(fy_ctx_t *ctx, uint64_t target) {
  fy__queue_t ready;
  fy_deadline_t *d;
  int manual = (ctx->flags & FY__CTX_MANUAL) != 0;

  fy__queue_init(&ready);
  while (fy__wheel_step(&ctx->wheel, target, &ready)) {
    if (manual)
      ctx->manual_now = ctx->wheel.wtime;
    /* Pop one at a time: a callback may stop a sibling that is due in this
     * same batch, which unlinks it from |ready|. */
    while (!fy__queue_empty(&ready)) {
      d = fy__queue_data(fy__queue_head(&ready), fy_deadline_t, node);
      fy__queue_remove(&d->node);
      d->slot = FY__DL_IDLE;
      note_pending(ctx, d, -1);
      d->cb(d);
    }
    if (manual)
      drain_tasks(ctx, 1);
    else if (ctx->wheel.wtime >= target)
      break; /* entries re-armed for "now" wait for the next iteration */
  }
  if (manual && target > ctx->manual_now)
    ctx->manual_now = target;
}

static void on_timer(uv_timer_t *timer) {
  fy_ctx_t *ctx = fy_container_of(timer, fy_ctx_t, timer);
  ctx->armed_at = FY_TIME_NEVER;
  ctx->flags |= FY__CTX_RUNNING;
  run_deadlines(ctx, uv_now(ctx->loop));
  drain_tasks(ctx, 0);
  ctx->flags &= ~(unsigned)FY__CTX_RUNNING;
  rearm(ctx);
}

int fy_ctx_advance(fy_ctx_t *ctx, uint64_t ms) {
  uint64_t target;
  if (ctx == NULL || !(ctx->flags & FY__CTX_MANUAL))
    return UV_EINVAL;
  /* Inside any of the context's callbacks: deadlines and tasks running, an
   * operation's hooks inside fy_call_start()/fy_call_cancel(), a listener.
   * Draining there would deliver completions on the wrong stack (or spin
   * on completions that must wait for api_depth to drop). */
  if ((ctx->flags & FY__CTX_RUNNING) || ctx->api_depth > 0 ||
      ctx->emitting > 0)
    return UV_EBUSY;
  /* The clock stops short of FY_TIME_NEVER, which no deadline accepts. */
  target = fy_time_add(ctx->manual_now, ms);
  ctx->flags |= FY__CTX_RUNNING;
  drain_tasks(ctx, 1);
  run_deadlines(ctx, target);
  drain_tasks(ctx, 1);
  ctx->flags &= ~(unsigned)FY__CTX_RUNNING;
  return 0;
}

/* ---- deadlines --------------------------------------------------------- */

void fy_deadline_init(fy_ctx_t *ctx, fy_deadline_t *d, fy_deadline_cb cb) {
  fy__deadline_init(ctx, d, cb);
}

/* Out of the wheel or lane holding |d|, which stays counted as pending. */
static void unlink_deadline(fy_ctx_t *ctx, fy_deadline_t *d) {
  if (d->slot == FY__DL_LANE) {
    fy__queue_remove(&d->node);
    d->slot = FY__DL_IDLE;
    d->lane = NULL;
    return;
  }
  fy__wheel_remove(&ctx->wheel, d);
}

/* |d| is about to be placed (again): counted once, linked nowhere. */
static void claim_deadline(fy_ctx_t *ctx, fy_deadline_t *d) {
  if (d->slot == FY__DL_IDLE)
    note_pending(ctx, d, 1);
  else
    unlink_deadline(ctx, d);
}

/* |d| is no longer pending, fired or not. */
static void drop_deadline(fy_ctx_t *ctx, fy_deadline_t *d) {
  unlink_deadline(ctx, d);
  d->expiry = FY_TIME_NEVER;
  note_pending(ctx, d, -1);
}

int fy_deadline_start_at(fy_deadline_t *d, uint64_t when) {
  fy_ctx_t *ctx;
  if (d == NULL || d->ctx == NULL || d->cb == NULL || when == FY_TIME_NEVER)
    return UV_EINVAL;
  ctx = d->ctx;
  if (ctx->flags & FY__CTX_FINAL)
    return FY_ECLOSED;
  claim_deadline(ctx, d);
  d->expiry = when;
  fy__wheel_insert(&ctx->wheel, d);
  /* Inside a run the timer is re-armed once at the end. */
  if (!(ctx->flags & FY__CTX_RUNNING) && d->expiry < ctx->armed_at)
    rearm(ctx);
  return 0;
}

int fy_deadline_start(fy_deadline_t *d, uint64_t timeout_ms) {
  uint64_t now, when;
  if (d == NULL || d->ctx == NULL)
    return UV_EINVAL;
  now = fy__ctx_now(d->ctx);
  /* Saturates below FY_TIME_NEVER, which start_at refuses. */
  when = fy_time_add(now, timeout_ms);
  return fy_deadline_start_at(d, when);
}

void fy_deadline_stop(fy_deadline_t *d) {
  fy_ctx_t *ctx;
  if (d == NULL || d->ctx == NULL || d->slot == FY__DL_IDLE)
    return;
  ctx = d->ctx;
  drop_deadline(ctx, d);
  /* The uv timer is left armed, even when this was the last deadline: it
   * is unreferenced then (count_pending), so an idle context keeps nothing
   * alive, and when it fires with nothing due, rearm() stops it.  Stopping
   * it here cost a uv_timer_stop() + uv_timer_start() pair per call for a
   * context with one call at a time (bench/patterns.c); a stale expiry
   * that is still ahead also spares the re-arm of the next deadline, which
   * lies later (time only moves forward). */
}

/* ---- lanes (internal.h) ------------------------------------------------ */

static void lane_arm(fy__lane_t *lane, uint64_t when) {
  /* Fails only once the context is final, when nothing fires any more. */
  (void)fy_deadline_start_at(&lane->timer, when);
}

/* The lane's timer: fire the members that are due, in order, and go on to
 * the next one's expiry.  The head is read again after every callback,
 * which may stop or start members. */
static void on_lane_timer(fy_deadline_t *t) {
  fy__lane_t *lane = fy_container_of(t, fy__lane_t, timer);
  fy_ctx_t *ctx = t->ctx;
  uint64_t now = fy__ctx_now(ctx);
  fy_deadline_t *d;
  while (!fy__queue_empty(&lane->fifo)) {
    d = fy__queue_data(fy__queue_head(&lane->fifo), fy_deadline_t, node);
    if (d->expiry > now) {
      lane_arm(lane, d->expiry);
      return;
    }
    drop_deadline(ctx, d);
    d->cb(d);
  }
}

void fy__lane_init(fy_ctx_t *ctx, fy__lane_t *lane) {
  fy__queue_init(&lane->fifo);
  fy__deadline_init(ctx, &lane->timer, on_lane_timer);
  lane->timer.flags |= FY__DL_F_UNREF | FY__DL_F_INTERNAL;
  lane->tail = 0;
  fy__queue_insert_tail(&ctx->lanes, &lane->node);
}

int fy__lane_start(fy__lane_t *lane, fy_deadline_t *d, uint64_t when) {
  fy_ctx_t *ctx = d->ctx;
  if (when < lane->tail || ctx != lane->timer.ctx || d->cb == NULL ||
      when == FY_TIME_NEVER)
    return fy_deadline_start_at(d, when);
  if (ctx->flags & FY__CTX_FINAL)
    return FY_ECLOSED;
  claim_deadline(ctx, d);
  d->expiry = when;
  d->slot = FY__DL_LANE;
  d->lane = lane;
  fy__queue_insert_tail(&lane->fifo, &d->node);
  lane->tail = when;
  /* The timer is at the head's expiry or earlier, unless idle. */
  if (lane->timer.slot == FY__DL_IDLE)
    lane_arm(lane, when);
  return 0;
}

void fy__lane_close(fy__lane_t *lane) {
  fy_ctx_t *ctx = lane->timer.ctx;
  /* Members still pending are dropped without firing, as at the end of
   * the context (a timeout policy has none left by then). */
  while (!fy__queue_empty(&lane->fifo)) {
    fy_deadline_t *d =
        fy__queue_data(fy__queue_head(&lane->fifo), fy_deadline_t, node);
    drop_deadline(ctx, d);
  }
  fy_deadline_stop(&lane->timer);
  fy__queue_remove(&lane->node);
}

void fy_deadline_ref(fy_deadline_t *d) {
  if (d == NULL || d->ctx == NULL || !(d->flags & FY__DL_F_UNREF))
    return;
  d->flags &= ~FY__DL_F_UNREF;
  if (d->slot != FY__DL_IDLE)
    count_pending(d->ctx, d, 1);
}

void fy_deadline_unref(fy_deadline_t *d) {
  if (d == NULL || d->ctx == NULL || (d->flags & FY__DL_F_UNREF))
    return;
  if (d->slot != FY__DL_IDLE)
    count_pending(d->ctx, d, -1);
  d->flags |= FY__DL_F_UNREF;
}

int fy_deadline_is_active(const fy_deadline_t *d) {
  return d != NULL && d->slot != FY__DL_IDLE;
}

uint64_t fy_deadline_expiry(const fy_deadline_t *d) {
  return fy_deadline_is_active(d) ? d->expiry : FY_TIME_NEVER;
}

/* ---- deferred tasks ---------------------------------------------------- */

static void arm_tasks(fy_ctx_t *ctx) {
  if ((ctx->flags & (FY__CTX_TASKS_ARMED | FY__CTX_FINAL)) != 0)
    return;
  uv_check_start(&ctx->check, on_check);
  uv_idle_start(&ctx->idle, on_idle);
  ctx->flags |= FY__CTX_TASKS_ARMED;
}

static void disarm_tasks(fy_ctx_t *ctx) {
  if (!(ctx->flags & FY__CTX_TASKS_ARMED) || (ctx->flags & FY__CTX_FINAL))
    return;
  uv_check_stop(&ctx->check);
  uv_idle_stop(&ctx->idle);
  ctx->flags &= ~(unsigned)FY__CTX_TASKS_ARMED;
}

void fy__ctx_enqueue(fy_ctx_t *ctx, fy__task_t *task) {
  if (task->queued)
    return;
  task->queued = 1;
  fy__queue_insert_tail(&ctx->tasks, &task->node);
  ctx->ntasks++;
  arm_tasks(ctx);
}

/* Run queued tasks.  Without |until_empty| only those queued before the
 * drain started run, so a callback that keeps queueing work cannot starve
 * the loop's I/O; the rest go on the next iteration. */
static void drain_tasks(fy_ctx_t *ctx, int until_empty) {
  fy__queue_t batch;
  fy__task_t *task;
  do {
    fy__queue_init(&batch);
    fy__queue_move_tail(&ctx->tasks, &batch);
    while (!fy__queue_empty(&batch)) {
      task = fy__queue_data(fy__queue_head(&batch), fy__task_t, node);
      fy__queue_remove(&task->node);
      task->queued = 0;
      ctx->ntasks--;
      task->run(task);
    }
  } while (until_empty && !fy__queue_empty(&ctx->tasks));
  if (fy__queue_empty(&ctx->tasks))
    disarm_tasks(ctx);
}

static void on_check(uv_check_t *check) {
  fy_ctx_t *ctx = fy_container_of(check, fy_ctx_t, check);
  unsigned running = ctx->flags & FY__CTX_RUNNING;
  ctx->flags |= FY__CTX_RUNNING;
  drain_tasks(ctx, 0);
  ctx->flags = (ctx->flags & ~(unsigned)FY__CTX_RUNNING) | running;
  if (!running)
    rearm(ctx);
}

/* The idle handle exists only to keep poll from blocking while tasks wait. */
static void on_idle(uv_idle_t *idle) { (void)idle; }

/* ---- the end of a context (close.c) ---------------------------------- */

/* Deadlines still pending are dropped without firing (ctx.h): unlink them,
 * so that they read as inactive, a fy_ctx_advance() still running fires
 * none of them, and a later fy_deadline_stop() touches nothing. */
void fy__ctx_drop_deadlines(fy_ctx_t *ctx) {
  unsigned l, s;
  fy__queue_t *lq;
  for (lq = ctx->lanes.next; lq != &ctx->lanes; lq = lq->next) {
    fy__lane_t *lane = fy__queue_data(lq, fy__lane_t, node);
    while (!fy__queue_empty(&lane->fifo)) {
      fy_deadline_t *d =
          fy__queue_data(fy__queue_head(&lane->fifo), fy_deadline_t, node);
      drop_deadline(ctx, d);
    }
  }
  for (l = 0; l < FY__WHEEL_LEVELS; l++) {
    for (s = 0; s < FY__WHEEL_SLOTS; s++) {
      fy__queue_t *q = &ctx->wheel.slots[l][s];
      while (!fy__queue_empty(q)) {
        fy_deadline_t *d =
            fy__queue_data(fy__queue_head(q), fy_deadline_t, node);
        fy__wheel_remove(&ctx->wheel, d);
        d->expiry = FY_TIME_NEVER;
        note_pending(ctx, d, -1);
      }
    }
  }
}

/* ---- events ------------------------------------------------------------ */

struct fy_listener_s {
  fy__queue_t node;
  fy_ctx_t *ctx;
  uint32_t mask;
  fy_event_cb cb;
  void *user_data;
  int dead;
};

static void recompute_mask(fy_ctx_t *ctx) {
  fy__queue_t *q;
  uint32_t mask = 0;
  for (q = ctx->listeners.next; q != &ctx->listeners; q = q->next) {
    fy_listener_t *l = fy__queue_data(q, fy_listener_t, node);
    if (!l->dead)
      mask |= l->mask;
  }
  ctx->ev_mask = mask;
}

static void sweep_listeners(fy_ctx_t *ctx) {
  fy__queue_t *q, *next;
  for (q = ctx->listeners.next; q != &ctx->listeners; q = next) {
    fy_listener_t *l = fy__queue_data(q, fy_listener_t, node);
    next = q->next;
    if (l->dead) {
      fy__queue_remove(&l->node);
      fy__free(l);
    }
  }
  ctx->listeners_dirty = 0;
}

void fy__ctx_free_listeners(fy_ctx_t *ctx) {
  fy__queue_t *q;
  for (q = ctx->listeners.next; q != &ctx->listeners; q = q->next)
    fy__queue_data(q, fy_listener_t, node)->dead = 1;
  sweep_listeners(ctx);
  ctx->ev_mask = 0;
}

int fy_ctx_listen(fy_ctx_t *ctx, uint32_t mask, fy_event_cb cb,
                  void *user_data, fy_listener_t **out) {
  fy_listener_t *l;
  if (out != NULL)
    *out = NULL;
  if (ctx == NULL || cb == NULL || (mask & ~(uint32_t)FY_EV_ALL) != 0 ||
      mask == 0)
    return UV_EINVAL;
  if (ctx->flags & FY__CTX_CLOSING)
    return FY_ECLOSED;
  l = fy__calloc(1, sizeof(*l));
  if (l == NULL)
    return UV_ENOMEM;
  l->ctx = ctx;
  l->mask = mask;
  l->cb = cb;
  l->user_data = user_data;
  fy__queue_insert_tail(&ctx->listeners, &l->node);
  ctx->ev_mask |= mask;
  if (out != NULL)
    *out = l;
  return 0;
}

void fy_listener_remove(fy_listener_t *l) {
  fy_ctx_t *ctx;
  if (l == NULL || l->dead)
    return;
  ctx = l->ctx;
  l->dead = 1;
  recompute_mask(ctx);
  /* Inside a dispatch the list is being walked: free after it. */
  if (ctx->emitting)
    ctx->listeners_dirty = 1;
  else
    sweep_listeners(ctx);
}

int fy_ctx_wants(const fy_ctx_t *ctx, fy_event_type_t type) {
  return (unsigned)type < FY_EV__COUNT && FY__CTX_WANTS(ctx, type);
}

void fy_ctx_emit(fy_ctx_t *ctx, fy_event_t *ev) {
  fy__queue_t *q;
  if ((unsigned)ev->type >= FY_EV__COUNT || !FY__CTX_WANTS(ctx, ev->type))
    return;
  if (ev->time_ms == 0)
    ev->time_ms = fy__ctx_now(ctx);
  if (ev->policy_name == NULL)
    ev->policy_name = "";
  ctx->emitting++;
  for (q = ctx->listeners.next; q != &ctx->listeners; q = q->next) {
    fy_listener_t *l = fy__queue_data(q, fy_listener_t, node);
    if (!l->dead && (l->mask & FY_EV_MASK(ev->type)))
      l->cb(ctx, ev, l->user_data);
  }
  if (--ctx->emitting == 0 && ctx->listeners_dirty)
    sweep_listeners(ctx);
}

const char *fy_event_name(fy_event_type_t type) {
  static const char *const names[FY_EV__COUNT] = {
      "call_done", "call_refused", "attempt_start", "attempt_done",
      "reject",    "state_change", "retry",         "timeout",
      "fallback",  "queue",        "allow",         "evict"};
  if ((unsigned)type >= FY_EV__COUNT)
    return "unknown";
  return names[type];
}
