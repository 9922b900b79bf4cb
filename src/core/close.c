/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * The close sequence, in one file, as libuv keeps uv_close() and its
 * finishing steps together (docs/design.md, "Closing").  Every object
 * closes through a task on the context's queue, re-run whenever something
 * it waits for goes away (the pokes), so that closing from inside any
 * callback is legal:
 * - the context: CLOSING, then on its task's first run WINDING (the
 *   attachments' wind-down hooks, then every pipeline and policy is told
 *   to close), then FINAL once no call, frame, task, pipeline or policy is
 *   left (deadlines dropped, listeners freed, attachments destroyed, the uv
 *   handles closed; the last uv close callback runs the user's);
 * - a pipeline: CLOSING, WOUND (its calls cancelled), NOTIFIED (its close
 *   callback), then freed, dropping its references on its policies;
 * - a policy: CLOSING, WOUND (its close hook, then its frames and the work
 *   below its tokens cancelled), NOTIFIED once none is left, freed once no
 *   pipeline holds it. */
#include "internal.h"

/* ---- policies ---------------------------------------------------------- */

void fy__policy_poke(fy_policy_t *p) {
  if (p->flags & FY__OBJ_CLOSING)
    fy__ctx_enqueue(p->ctx, &p->close_task);
}

void fy__policy_unref(fy_policy_t *p) {
  assert(p->refs > 0);
  p->refs--;
  fy__policy_poke(p);
}

static void policy_free(fy_policy_t *p) {
  fy_ctx_t *ctx = p->ctx;
  fy__queue_remove(&p->node);
  if (p->vt->destroy != NULL)
    p->vt->destroy(p);
  p->magic = FY__MAGIC_DEAD;
  fy__free(p);
  fy__ctx_poke(ctx);
}

/* Tell the implementation, then cancel every frame still alive in this
 * policy: pending calls complete with UV_ECANCELED (rule 4). */
static void wind_down_policy(fy_policy_t *p) {
  fy_ctx_t *ctx = p->ctx;
  fy__queue_t pending, *q;
  ctx->api_depth++;
  if (p->vt->close != NULL)
    p->vt->close(p);
  /* Cancelling one frame may finish and free others of this policy (a
   * frame that abandons its children, which sit in this same policy when
   * it appears twice in a pipeline): a saved next pointer could dangle.
   * Walk a private list instead; frame_free() unlinks a frame from
   * whichever list holds it. */
  fy__queue_init(&pending);
  fy__queue_move_tail(&p->frames, &pending);
  while (!fy__queue_empty(&pending)) {
    q = fy__queue_head(&pending);
    fy__queue_remove(q);
    fy__queue_insert_tail(&p->frames, q);
    fy_frame_cancel(fy__queue_data(q, fy_frame_t, pnode));
  }
  /* The same for the work below every token it admitted: the frame that
   * carries the token is cancelled, and settling unlinks the token from
   * whichever list holds it. */
  fy__queue_move_tail(&p->holders, &pending);
  while (!fy__queue_empty(&pending)) {
    q = fy__queue_head(&pending);
    fy__queue_remove(q);
    fy__queue_insert_tail(&p->holders, q);
    fy_frame_cancel(fy__queue_data(q, fy__token_t, node)->frame);
  }
  ctx->api_depth--;
}

void fy__policy_close_task(fy__task_t *task) {
  fy_policy_t *p = fy_container_of(task, fy_policy_t, close_task);
  fy_close_cb cb;
  if (!(p->flags & FY__OBJ_WOUND)) {
    p->flags |= FY__OBJ_WOUND;
    wind_down_policy(p);
  }
  if (p->active > 0)
    return;
  if (!(p->flags & FY__OBJ_NOTIFIED)) {
    p->flags |= FY__OBJ_NOTIFIED;
    cb = p->close_cb;
    if (cb != NULL)
      cb(p->close_obj != NULL ? p->close_obj : p, p->close_ud);
  }
  if (p->refs == 0)
    policy_free(p);
}

void fy__policy_wind_down(fy_policy_t *p) {
  p->flags |= FY__OBJ_CLOSING;
  fy__ctx_enqueue(p->ctx, &p->close_task);
}

int fy_policy_close_as(fy_policy_t *p, void *obj, fy_close_cb cb,
                       void *user_data) {
  if (p == NULL)
    return 0;
  assert(p->magic == FY__MAGIC_POLICY);
  if (p->flags & FY__OBJ_CLOSING)
    return FY_ECLOSED;
  p->close_cb = cb;
  p->close_ud = user_data;
  p->close_obj = obj;
  fy__policy_wind_down(p);
  return 0;
}

int fy_policy_close(fy_policy_t *p, fy_close_cb cb, void *user_data) {
  return fy_policy_close_as(p, p, cb, user_data);
}

/* ---- pipelines --------------------------------------------------------- */

void fy__pipeline_poke(fy_pipeline_t *pl) {
  if (pl->flags & FY__OBJ_CLOSING)
    fy__ctx_enqueue(pl->ctx, &pl->close_task);
}

static void pipeline_free(fy_pipeline_t *pl) {
  fy_ctx_t *ctx = pl->ctx;
  size_t i;
  fy__queue_remove(&pl->node);
  for (i = 0; i < pl->n; i++)
    fy__policy_unref(pl->layers[i]);
  pl->magic = FY__MAGIC_DEAD;
  fy__free(pl);
  fy__ctx_poke(ctx);
}

/* Cancel every call in flight.  Their completions are queued (api_depth),
 * so the list is stable while it is walked. */
static void cancel_calls(fy_pipeline_t *pl) {
  fy_ctx_t *ctx = pl->ctx;
  fy__queue_t *q;
  ctx->api_depth++;
  for (q = pl->calls.next; q != &pl->calls; q = q->next) {
    fy_call_t *call = fy__queue_data(q, fy_call_t, node);
    if (call->root != NULL)
      fy_frame_cancel(call->root);
  }
  ctx->api_depth--;
}

void fy__pipeline_close_task(fy__task_t *task) {
  fy_pipeline_t *pl = fy_container_of(task, fy_pipeline_t, close_task);
  fy_close_cb cb;
  if (!(pl->flags & FY__OBJ_WOUND)) {
    pl->flags |= FY__OBJ_WOUND;
    cancel_calls(pl);
  }
  if (pl->inflight > 0 || pl->nframes > 0)
    return;
  cb = pl->close_cb;
  pl->flags |= FY__OBJ_NOTIFIED;
  if (cb != NULL)
    cb(pl, pl->close_ud);
  pipeline_free(pl);
}

void fy__pipeline_wind_down(fy_pipeline_t *pl) {
  pl->flags |= FY__OBJ_CLOSING;
  fy__ctx_enqueue(pl->ctx, &pl->close_task);
}

int fy_pipeline_close(fy_pipeline_t *pl, fy_close_cb cb, void *user_data) {
  if (pl == NULL)
    return 0;
  assert(pl->magic == FY__MAGIC_PIPELINE);
  if (pl->flags & FY__OBJ_CLOSING)
    return FY_ECLOSED;
  pl->close_cb = cb;
  pl->close_ud = user_data;
  fy__pipeline_wind_down(pl);
  return 0;
}

/* ---- the context ------------------------------------------------------- */

static void on_handle_closed(uv_handle_t *handle) {
  fy_ctx_t *ctx = handle->data;
  fy_close_cb cb;
  void *ud;
  if (--ctx->open_handles > 0)
    return;
  cb = ctx->close_cb;
  ud = ctx->close_ud;
  fy__pool_drain(&ctx->pool);
  /* As for pipelines and policies, the object is alive during its close
   * callback (fy_close_cb: "dead once the callback returns"). */
  if (cb != NULL)
    cb(ctx, ud);
  ctx->magic = FY__MAGIC_DEAD;
  fy__free(ctx);
}

/* ---- attachments and close groups (ctx.h) ------------------------------ */

int fy_ctx_attach(fy_ctx_t *ctx, fy_attachment_t *a,
                  fy_attachment_cb wind_down, fy_attachment_cb destroy) {
  if (ctx == NULL || a == NULL)
    return UV_EINVAL;
  if (ctx->flags & FY__CTX_CLOSING)
    return FY_ECLOSED;
  a->wind_down = wind_down;
  a->destroy = destroy;
  fy__queue_insert_tail(&ctx->attachments, &a->node);
  return 0;
}

void fy_ctx_detach(fy_attachment_t *a) {
  if (a == NULL || a->node.next == NULL)
    return; /* never attached */
  fy__queue_remove(&a->node); /* self-linked: a second detach is harmless */
}

/* The close task's first step.  A hook may detach (and free) itself or
 * any other attachment: walk a private list, putting each one back before
 * its hook runs, so that a detach always finds the list holding it. */
static void wind_down_attachments(fy_ctx_t *ctx) {
  fy__queue_t pending, *q;
  fy_attachment_t *a;
  fy__queue_init(&pending);
  fy__queue_move_tail(&ctx->attachments, &pending);
  while (!fy__queue_empty(&pending)) {
    q = fy__queue_head(&pending);
    fy__queue_remove(q);
    fy__queue_insert_tail(&ctx->attachments, q);
    a = fy__queue_data(q, fy_attachment_t, node);
    if (a->wind_down != NULL)
      a->wind_down(a);
  }
}

void fy_close_group_init(fy_close_group_t *g) { memset(g, 0, sizeof(*g)); }

int fy_close_group_add(fy_close_group_t *g, int close_rc) {
  if (close_rc == 0)
    g->due++;
  else
    g->refused++;
  return close_rc;
}

void fy_close_group_cb(void *obj, void *group) {
  fy_close_group_t *g = group;
  (void)obj;
  assert(g->due > 0);
  if (--g->due == 0 && g->waiting) {
    g->waiting = 0;
    g->done(g);
  }
}

int fy_close_group_wait(fy_close_group_t *g, fy_close_group_done done) {
  /* The library's close callbacks never run from inside the close call,
   * so every callback of a successful close is still due here. */
  if (g->due == 0 || g->refused > 0 || done == NULL)
    return FY_ECLOSED;
  g->done = done;
  g->waiting = 1;
  return 0;
}

static void finalize(fy_ctx_t *ctx) {
  fy_attachment_t *a;
  ctx->flags |= FY__CTX_FINAL;
  fy__ctx_drop_deadlines(ctx);
  fy__ctx_free_listeners(ctx);
  /* Each one is unlinked before its hook, which may free it or detach
   * another. */
  while (!fy__queue_empty(&ctx->attachments)) {
    a = fy__queue_data(fy__queue_head(&ctx->attachments), fy_attachment_t,
                       node);
    fy__queue_remove(&a->node);
    if (a->destroy != NULL)
      a->destroy(a);
  }
  ctx->timer.data = ctx;
  ctx->check.data = ctx;
  ctx->idle.data = ctx;
  uv_close((uv_handle_t *)&ctx->timer, on_handle_closed);
  uv_close((uv_handle_t *)&ctx->check, on_handle_closed);
  uv_close((uv_handle_t *)&ctx->idle, on_handle_closed);
}

void fy__ctx_close_task(fy__task_t *task) {
  fy_ctx_t *ctx = fy_container_of(task, fy_ctx_t, close_task);
  fy__queue_t *q, *next;
  if (ctx->flags & FY__CTX_FINAL)
    return;
  if (!(ctx->flags & FY__CTX_WINDING)) {
    ctx->flags |= FY__CTX_WINDING;
    /* Attachments first, while everything they own is still open (ctx.h,
     * "Attachments"); then the pipelines and the policies. */
    wind_down_attachments(ctx);
    /* Each wind-down may unlink its own object; walk with a saved next. */
    for (q = ctx->pipelines.next; q != &ctx->pipelines; q = next) {
      next = q->next;
      fy__pipeline_wind_down(fy__queue_data(q, fy_pipeline_t, node));
    }
    for (q = ctx->policies.next; q != &ctx->policies; q = next) {
      next = q->next;
      fy__policy_wind_down(fy__queue_data(q, fy_policy_t, node));
    }
  }
  if (ctx->ncalls == 0 && ctx->nframes == 0 && ctx->ntasks == 0 &&
      fy__queue_empty(&ctx->pipelines) && fy__queue_empty(&ctx->policies))
    finalize(ctx);
}

void fy__ctx_poke(fy_ctx_t *ctx) {
  if ((ctx->flags & (FY__CTX_CLOSING | FY__CTX_FINAL)) == FY__CTX_CLOSING)
    fy__ctx_enqueue(ctx, &ctx->close_task);
}

int fy_ctx_close(fy_ctx_t *ctx, fy_close_cb cb, void *user_data) {
  if (ctx == NULL)
    return 0;
  assert(ctx->magic == FY__MAGIC_CTX);
  if (ctx->flags & FY__CTX_CLOSING)
    return FY_ECLOSED;
  ctx->flags |= FY__CTX_CLOSING;
  ctx->close_cb = cb;
  ctx->close_ud = user_data;
  fy__ctx_enqueue(ctx, &ctx->close_task);
  return 0;
}
