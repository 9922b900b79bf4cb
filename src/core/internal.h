/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * The core's own declarations (src/core): allocation and freelists,
 * deadlines, deferred tasks, the close paths, starting frames.  The object
 * layouts are in objects.h; what policies may use is in policy_impl.h.
 * Nothing here is API.  Only the core and its white-box tests include it:
 * they are compiled with FY__CORE_SOURCE. */
#ifndef FY_INTERNAL_H
#define FY_INTERNAL_H

#ifndef FY__CORE_SOURCE
#error "internal.h is the core's; a policy includes policy_impl.h"
#endif

#include <assert.h>
#include <string.h>

#include "policy_impl.h"

/* FY__NOINLINE keeps a rare path (a refusal, a take-over) out of the
 * function that runs on every call, so that the common path needs fewer
 * registers; FY__INLINE keeps a step of the common path inline although
 * the rare path uses it too. */
#if defined(__GNUC__) || defined(__clang__)
#define FY__NOINLINE __attribute__((noinline))
#define FY__INLINE inline __attribute__((always_inline))
#define FY__UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define FY__NOINLINE
#define FY__INLINE inline
#define FY__UNLIKELY(x) (x)
#endif

/* ---- allocation (alloc.c) ---------------------------------------------- */
void *fy__malloc(size_t size);
void *fy__calloc(size_t count, size_t size);
void *fy__realloc(void *ptr, size_t size);
void fy__free(void *ptr);

/* Freelist operations. */
void *fy__pool_get(fy__pool_t *pool, size_t size); /* |size| bytes zeroed */
void fy__pool_put(fy__pool_t *pool, void *ptr, size_t size);
void fy__pool_drain(fy__pool_t *pool);
size_t fy__pool_cached(const fy__pool_t *pool);

/* The frames' fast paths, inline (two per layer of every call):
 * fy__pool_take() returns at least |size| bytes that are NOT zeroed when
 * they come from the freelist (the caller sets every field); otherwise
 * both defer to the functions above. */
static inline void *fy__pool_take(fy__pool_t *pool, size_t size) {
  size_t c = (size + FY__POOL_STEP - 1) / FY__POOL_STEP - 1;
  void *block;
  if (FY__POOL_ENABLED && c < FY__POOL_CLASSES &&
      (block = pool->free[c]) != NULL) {
    pool->free[c] = *(void **)block;
    pool->count[c]--;
    return block;
  }
  return fy__pool_get(pool, size);
}

static inline void fy__pool_give(fy__pool_t *pool, void *ptr, size_t size) {
  size_t c = (size + FY__POOL_STEP - 1) / FY__POOL_STEP - 1;
  if (FY__POOL_ENABLED && c < FY__POOL_CLASSES &&
      pool->count[c] < FY__POOL_KEEP) {
    *(void **)ptr = pool->free[c];
    pool->free[c] = ptr;
    pool->count[c]++;
    return;
  }
  fy__pool_put(pool, ptr, size);
}

/* ---- deadlines (ctx.c) ------------------------------------------------- */
/* fy_deadline_init(), inlined where a deadline is set up per call (every
 * frame embeds one). */
static inline void fy__deadline_init(fy_ctx_t *ctx, fy_deadline_t *d,
                                     fy_deadline_cb cb) {
  d->ctx = ctx;
  d->cb = cb;
  d->expiry = FY_TIME_NEVER;
  d->slot = FY__DL_IDLE;
  d->flags = 0;
  d->lane = NULL;
  d->node.next = &d->node;
  d->node.prev = &d->node;
}

void fy__ctx_enqueue(fy_ctx_t *ctx, fy__task_t *task);

/* Re-examine a closing context once something it waits for went away. */
void fy__ctx_poke(fy_ctx_t *ctx);

/* The close tasks of the context, pipelines and policies (close.c). */
void fy__ctx_close_task(fy__task_t *task);
void fy__pipeline_close_task(fy__task_t *task);
void fy__policy_close_task(fy__task_t *task);
/* The context's end (ctx.c): pending deadlines dropped without firing, the
 * listeners freed. */
void fy__ctx_drop_deadlines(fy_ctx_t *ctx);
void fy__ctx_free_listeners(fy_ctx_t *ctx);

void fy__pipeline_wind_down(fy_pipeline_t *pl);
void fy__policy_wind_down(fy_policy_t *p);
void fy__policy_unref(fy_policy_t *p);
/* Counters went down: a closing object may now finish (via a task). */
void fy__policy_poke(fy_policy_t *p);
void fy__pipeline_poke(fy_pipeline_t *pl);

/* Start a frame for |layer| of the call's pipeline under |parent| (NULL:
 * the root).  An attempt runs |op| with |arg|, or the call's own when |op|
 * is NULL.  Returns 0 with *out set, or a negative refusal. */
int fy__frame_start(fy_call_t *call, fy_frame_t *parent, unsigned layer,
                    uint64_t deadline, const fy_op_t *op, void *arg,
                    fy_frame_t **out);

/* Join |call| to the scope |s| (scope.c): 0, or UV_ECANCELED when the
 * scope was cancelled. */
int fy__scope_join(fy_scope_t *s, fy_call_t *call);

/* Compute pl->layout from its layers (pipeline.c). */
void fy__layout_build(fy_pipeline_t *pl);

#endif /* FY_INTERNAL_H */
