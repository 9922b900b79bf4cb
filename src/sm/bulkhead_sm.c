/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * The bulkhead's pure state machine: slot counts, the waiter queue,
 * admission and hand-over.  It knows nothing of frames.
 */
#include <assert.h>
#include <string.h>

#include "fortify.h"

#include "bulkhead_sm.h"

/* ---- pure state machine ------------------------------------------------ */

void fy__bulkhead_sm_init(fy__bulkhead_sm_t *c, uint32_t max_concurrent,
                 uint32_t max_queue, uint64_t queue_timeout_ms, int lifo) {
  memset(c, 0, sizeof(*c));
  c->max_concurrent = max_concurrent;
  c->max_queue = max_queue;
  c->queue_timeout_ms = queue_timeout_ms;
  c->lifo = lifo != 0;
  fy__queue_init(&c->queue);
}

uint64_t fy__bulkhead_sm_queue_deadline(const fy__bulkhead_sm_t *c, uint64_t now) {
  if (c->queue_timeout_ms == 0)
    return FY_TIME_NEVER;
  return fy_time_add(now, c->queue_timeout_ms);
}

int fy__bulkhead_sm_expired(const fy__bulkhead_sm_waiter_t *w, uint64_t now) {
  return w->deadline != FY_TIME_NEVER && now >= w->deadline;
}

int fy__bulkhead_sm_admit(fy__bulkhead_sm_t *c, fy__bulkhead_sm_waiter_t *w, uint64_t now) {
  /* A free slot is only free for a newcomer when nobody waits for it. */
  if (c->active < c->max_concurrent && c->queued == 0) {
    c->active++;
    return FY__BH_RUN;
  }
  if (c->queued >= c->max_queue)
    return FY_EBULKHEADFULL;
  w->deadline = fy__bulkhead_sm_queue_deadline(c, now);
  /* The head runs next: LIFO puts the newcomer there. */
  if (c->lifo)
    fy__queue_insert_head(&c->queue, &w->node);
  else
    fy__queue_insert_tail(&c->queue, &w->node);
  c->queued++;
  return FY__BH_QUEUED;
}

fy__bulkhead_sm_waiter_t *fy__bulkhead_sm_head(const fy__bulkhead_sm_t *c) {
  if (c->queued == 0)
    return NULL;
  return fy__queue_data(fy__queue_head(&c->queue), fy__bulkhead_sm_waiter_t, node);
}

fy__bulkhead_sm_waiter_t *fy__bulkhead_sm_next(fy__bulkhead_sm_t *c) {
  fy__bulkhead_sm_waiter_t *w;
  if (c->active >= c->max_concurrent || c->queued == 0)
    return NULL;
  w = fy__bulkhead_sm_head(c);
  fy__queue_remove(&w->node);
  c->queued--;
  c->active++;
  return w;
}

void fy__bulkhead_sm_leave(fy__bulkhead_sm_t *c, fy__bulkhead_sm_waiter_t *w) {
  assert(c->queued > 0 && !fy__queue_empty(&w->node));
  fy__queue_remove(&w->node);
  c->queued--;
}
