/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * The policy object every pattern is built on, and the pass-through
 * policy. */
#include "internal.h"


/* Frame hooks, admission hooks, or both (policy.h): the admission hooks
 * all or none; start only with child_done; a frame layer needs both. */
static int vtable_ok(const fy_policy_vtable_t *vt) {
  int frames = vt->start != NULL && vt->child_done != NULL;
  int admission = vt->admit != NULL && vt->settle != NULL &&
                  vt->release != NULL;
  if (vt->kind == NULL || vt->frame_size > ((size_t)1 << 20) ||
      vt->token_size > FY_TOKEN_MAX)
    return 0;
  if (vt->start != NULL && vt->child_done == NULL)
    return 0;
  if (!admission && (vt->admit != NULL || vt->settle != NULL ||
                     vt->release != NULL))
    return 0;
  return frames || admission;
}

int fy_policy_new(fy_ctx_t *ctx, const fy_policy_vtable_t *vt,
                  size_t impl_size, const char *name, fy_policy_t **out) {
  fy_policy_t *p;
  if (out == NULL)
    return UV_EINVAL;
  *out = NULL;
  if (ctx == NULL || vt == NULL || !vtable_ok(vt))
    return UV_EINVAL;
  if (impl_size > ((size_t)1 << 30))
    return UV_EINVAL;
  if (ctx->flags & FY__CTX_CLOSING)
    return FY_ECLOSED;
  p = fy__calloc(1, FY__POLICY_HDR + (impl_size ? impl_size : 1));
  if (p == NULL)
    return UV_ENOMEM;
  p->magic = FY__MAGIC_POLICY;
  p->ctx = ctx;
  p->vt = vt;
  if (name != NULL) {
    strncpy(p->name, name, FY_NAME_MAX);
    p->name[FY_NAME_MAX] = '\0';
  }
  fy__queue_init(&p->frames);
  fy__queue_init(&p->holders);
  fy__queue_insert_tail(&ctx->policies, &p->node);
  p->close_task.run = fy__policy_close_task;
  *out = p;
  return 0;
}

void *fy_policy_impl(fy_policy_t *p) { return (char *)p + FY__POLICY_HDR; }
fy_ctx_t *fy_policy_ctx(const fy_policy_t *p) { return p->ctx; }
const char *fy_policy_name(const fy_policy_t *p) { return p->name; }
const char *fy_policy_kind(const fy_policy_t *p) { return p->vt->kind; }
size_t fy_policy_active(const fy_policy_t *p) { return p->active; }

int fy_policy_is_closing(const fy_policy_t *p) {
  return (p->flags & FY__OBJ_CLOSING) != 0;
}

int fy_policy_event_init(fy_policy_t *p, fy_event_t *ev,
                         fy_event_type_t type) {
  memset(ev, 0, sizeof(*ev));
  if (p == NULL || (unsigned)type >= FY_EV__COUNT ||
      !FY__CTX_WANTS(p->ctx, type))
    return 0;
  ev->type = type;
  ev->policy = p;
  ev->policy_kind = p->vt->kind;
  ev->policy_name = p->name;
  return 1;
}

void fy_policy_emit(fy_policy_t *p, fy_event_type_t type, fy_call_t *call,
                    int status, int64_t from, int64_t to) {
  fy_event_t ev;
  if (!fy_policy_event_init(p, &ev, type))
    return;
  ev.call = call;
  ev.status = status;
  ev.from = from;
  ev.to = to;
  fy_ctx_emit(p->ctx, &ev);
}

/* ---- classification ---------------------------------------------------- */

fy_outcome_t fy_classify_default(int status, void *user_data) {
  (void)user_data;
  if (status == 0)
    return FY_OUTCOME_SUCCESS;
  if (status == UV_ECANCELED)
    return FY_OUTCOME_IGNORE;
  return FY_OUTCOME_FAILURE;
}

int fy_is_refusal(int status) {
  switch (status) {
  case FY_ECIRCUITOPEN:
  case FY_EBULKHEADFULL:
  case FY_EQUEUETIMEOUT:
  case FY_ERATELIMITED:
  case FY_ECLOSED:
    return 1;
  default:
    return 0;
  }
}

/* ---- pass-through ------------------------------------------------------ */

static int passthrough_start(fy_policy_t *p, fy_frame_t *f) {
  (void)p;
  return fy_frame_spawn(f, NULL);
}

static void passthrough_child_done(fy_policy_t *p, fy_frame_t *f,
                                   fy_frame_t *child, int status) {
  (void)p;
  fy_frame_adopt_result(f, child);
  fy_frame_done(f, status);
}

static const fy_policy_vtable_t passthrough_vtable = {
    .kind = "passthrough",
    .start = passthrough_start,
    .child_done = passthrough_child_done,
};

int fy_passthrough_new(fy_ctx_t *ctx, const char *name, fy_policy_t **out) {
  return fy_policy_new(ctx, &passthrough_vtable, 0, name, out);
}
