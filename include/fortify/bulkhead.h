/* Copyright (c) 2026 the fortify authors. MIT licensed. */
#ifndef FORTIFY_BULKHEAD_H
#define FORTIFY_BULKHEAD_H

#include "fortify/policy.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------
 * Bulkhead: at most max_concurrent calls run at once; up to max_queue more
 * wait in a queue of pending calls (not threads) for at most
 * queue_timeout_ms.  A waiter leaves the queue as soon as it starts to run,
 * so the queue bounds waiting work only (total in the system = active +
 * queued).  A freed slot always goes to the queue's head: nobody barges
 * past a waiter.  See docs/bulkhead.md.
 *
 * Rejections (status, and detail.state when by_kind is "bulkhead"):
 * - FY_EBULKHEADFULL: no free slot and no room in the queue.  Returned at
 *   once from fy_call_start() (or fy_frame_spawn() of the layer above); the
 *   call's callback never runs.
 * - FY_EQUEUETIMEOUT: waited queue_timeout_ms without getting a slot.
 *   Delivered through the callback.
 * - FY_ECLOSED: the bulkhead is closing.  Calls still queued then complete
 *   with UV_ECANCELED (detail.state FY_ECLOSED); new ones are refused.
 * ------------------------------------------------------------------------- */
typedef struct fy_bulkhead_s fy_bulkhead_t;

/* Which waiter gets a freed slot. */
typedef enum {
  FY_BULKHEAD_FIFO = 0, /* the oldest (default) */
  FY_BULKHEAD_LIFO = 1  /* the newest: keeps latency low under overload */
} fy_bulkhead_order_t;

/* A call or permit was rejected; |reason| is FY_EBULKHEADFULL,
 * FY_EQUEUETIMEOUT or FY_ECLOSED.  May call back into the library,
 * including closing the bulkhead or the pipeline. */
typedef void (*fy_bulkhead_rejected_cb)(int reason, void *user_data);

/* Upper bounds of the options. */
#define FY_BULKHEAD_LIMIT_MAX 0x7fffffffu
#define FY_BULKHEAD_TIMEOUT_MAX ((uint64_t)INT64_MAX)

typedef struct fy_bulkhead_opts_s {
  uint32_t max_concurrent;   /* 1..FY_BULKHEAD_LIMIT_MAX; default 10 */
  uint32_t max_queue;        /* 0..FY_BULKHEAD_LIMIT_MAX; 0 = no queue
                                (default) */
  uint64_t queue_timeout_ms; /* 0 = wait without limit (default) */
  fy_bulkhead_order_t order; /* default FY_BULKHEAD_FIFO */
  fy_bulkhead_rejected_cb on_rejected; /* optional */
  void *user_data;           /* passed to on_rejected */
  const char *name;          /* optional, copied */
} fy_bulkhead_opts_t;

/* Fill |opts| with the defaults above. */
FY_EXTERN void fy_bulkhead_opts_init(fy_bulkhead_opts_t *opts);

/* Check |opts| as fy_bulkhead_new() does, creating nothing: 0, or
 * UV_EINVAL when |opts| is NULL, max_concurrent is 0 or above
 * FY_BULKHEAD_LIMIT_MAX, max_queue is above FY_BULKHEAD_LIMIT_MAX,
 * queue_timeout_ms is above FY_BULKHEAD_TIMEOUT_MAX (a negative number
 * stored in it is), or order is unknown.  The callback and the name are
 * not checked. */
FY_EXTERN int fy_bulkhead_opts_check(const fy_bulkhead_opts_t *opts);

/* Create a bulkhead.  |opts| NULL means the defaults.  Returns 0, UV_EINVAL
 * (fy_bulkhead_opts_check() refused |opts|; nothing is created and *out is
 * NULL), UV_ENOMEM or FY_ECLOSED (context closing).  CONSTRUCTOR. */
FY_EXTERN int fy_bulkhead_new(fy_ctx_t *ctx, const fy_bulkhead_opts_t *opts,
                              fy_bulkhead_t **out);

/* The policy to put in pipelines. */
FY_EXTERN fy_policy_t *fy_bulkhead_policy(fy_bulkhead_t *bh);

/* Close asynchronously (fy_policy_close): queued calls complete with
 * UV_ECANCELED, running ones are cancelled, then |cb| runs with |bh| as its
 * object.  Release every permit of fy_bulkhead_try_acquire() before the
 * callback: the handle is dead after it.  NULL is a no-op.  Returns 0 or
 * FY_ECLOSED.  DESTRUCTOR. */
FY_EXTERN int fy_bulkhead_close(fy_bulkhead_t *bh, fy_close_cb cb,
                                void *user_data);

/* Slots in use (running pipeline calls plus held permits), and calls
 * waiting in the queue. */
FY_EXTERN size_t fy_bulkhead_active(const fy_bulkhead_t *bh);
FY_EXTERN size_t fy_bulkhead_queued(const fy_bulkhead_t *bh);

/* Synchronous admission without a pipeline (a server deciding whether to
 * accept a request).  Takes a slot and returns 0, or returns
 * FY_EBULKHEADFULL (no free slot, or calls are waiting in the queue: a
 * permit never barges past them) or FY_ECLOSED.  It never queues.
 * on_rejected runs for a refusal. */
FY_EXTERN int fy_bulkhead_try_acquire(fy_bulkhead_t *bh);

/* Give back a slot taken with fy_bulkhead_try_acquire().  If calls are
 * queued, the head of the queue starts running inside this call.  Calling
 * it without a held permit is a no-op when no slot is in use, and corrupts
 * the count otherwise. */
FY_EXTERN void fy_bulkhead_release(fy_bulkhead_t *bh);

#ifdef __cplusplus
}
#endif
#endif /* FORTIFY_BULKHEAD_H */
