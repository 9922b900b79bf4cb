/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * The policy-writer header: what the built-in patterns (src/patterns) use
 * beyond the public API.  Inline forms of the frame and policy accessors
 * (a call into another file for each would be a measurable share of a
 * pipelined call), the detail reset, and timeout lanes.  A pattern
 * includes this and the public headers, never internal.h. */
#ifndef FY_POLICY_IMPL_H
#define FY_POLICY_IMPL_H

#include "objects.h"

/* ---- details ----------------------------------------------------------- */
/* Every field reset; the key is a string, so its first byte is enough.
 * (One memset of the whole struct compiles to "rep stos", slow to start on
 * every call: docs/PERFORMANCE.md.) */
static inline void fy__detail_clear(fy_detail_t *d) {
  memset(d, 0, offsetof(fy_detail_t, key));
  d->key[0] = '\0';
}

/* ---- lanes (ctx.c) ---------------------------------------------------- */
void fy__lane_init(fy_ctx_t *ctx, fy__lane_t *lane);
/* Start |d| to fire at |when| in |lane|, or on the wheel when |when| is
 * earlier than the lane's tail (a different delay).  As
 * fy_deadline_start_at(). */
int fy__lane_start(fy__lane_t *lane, fy_deadline_t *d, uint64_t when);
/* Stop the lane's own timer; members still pending are dropped without
 * firing. */
void fy__lane_close(fy__lane_t *lane);

/* fy_frame_arm() in |lane|: for a policy whose frames always arm the same
 * delay after their start. */
int fy__frame_arm_lane(fy_frame_t *f, uint64_t when_ms, fy__lane_t *lane);

/* ---- inline accessors ----------------------------------------------------
 * The patterns read these on every frame of every call; inside the library
 * they are called by their fy__ names, so that they inline.  The exported
 * fy_ functions of the same meaning are for policies outside the library. */
static inline void *fy__frame_state(fy_frame_t *f) {
  return (f->flags & FY__F_LEAF) ? NULL : (char *)f + FY__FRAME_HDR;
}
static inline fy_ctx_t *fy__frame_ctx(const fy_frame_t *f) { return f->ctx; }
static inline fy_call_t *fy__frame_call(const fy_frame_t *f) {
  return f->call;
}
static inline int fy__frame_is_cancelled(const fy_frame_t *f) {
  return (f->flags & FY__F_CANCEL) != 0;
}
static inline uint64_t fy__frame_deadline(const fy_frame_t *f) {
  return f->deadline;
}
static inline uint64_t fy__frame_retry_after(const fy_frame_t *f) {
  return f->retry_after;
}
static inline void *fy__policy_impl(fy_policy_t *p) {
  return (char *)p + FY__POLICY_HDR;
}
static inline fy_ctx_t *fy__policy_ctx(const fy_policy_t *p) {
  return p->ctx;
}
static inline int fy__policy_is_closing(const fy_policy_t *p) {
  return (p->flags & FY__OBJ_CLOSING) != 0;
}
static inline uint64_t fy__ctx_now(const fy_ctx_t *ctx) {
  return (ctx->flags & FY__CTX_MANUAL) ? ctx->manual_now : uv_now(ctx->loop);
}

/* Most outcomes carry no result: then adopting moves nothing. */
static inline void fy__frame_adopt_result(fy_frame_t *f, fy_frame_t *child) {
  if (f != NULL && child != NULL && f->result == NULL && child->result == NULL)
    return;
  fy_frame_adopt_result(f, child);
}

#endif /* FY_POLICY_IMPL_H */
