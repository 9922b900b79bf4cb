/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * The bulkhead's pure state machine: slot and queue accounting, admission
 * and hand-over decisions.  No loop, no frames, no clock of its own: time
 * comes in as |now|.  src/bulkhead.c binds it to frames; tests drive it
 * directly.  Nothing here is API. */
#ifndef FY_BULKHEAD_SM_H
#define FY_BULKHEAD_SM_H

#include "queue.h"

/* A pending call, embedded in whatever represents it (a frame's state). */
typedef struct fy__bulkhead_sm_waiter_s {
  fy__queue_t node;
  uint64_t deadline; /* end of its queue wait, or FY_TIME_NEVER */
} fy__bulkhead_sm_waiter_t;

typedef struct fy__bulkhead_sm_s {
  uint32_t max_concurrent;
  uint32_t max_queue;
  uint64_t queue_timeout_ms; /* 0: no limit */
  int lifo;
  uint32_t active; /* slots in use */
  uint32_t queued; /* waiters linked in |queue| */
  fy__queue_t queue; /* the next waiter to run is at the head */
} fy__bulkhead_sm_t;

/* What fy__bulkhead_sm_admit() decided. */
enum {
  FY__BH_RUN = 0,   /* a slot was taken: run now */
  FY__BH_QUEUED = 1 /* linked in the queue: wait */
  /* or FY_EBULKHEADFULL: rejected, nothing changed */
};

void fy__bulkhead_sm_init(fy__bulkhead_sm_t *c, uint32_t max_concurrent,
                 uint32_t max_queue, uint64_t queue_timeout_ms, int lifo);

/* A new call arrives at |now|.  It runs only if a slot is free and nobody
 * waits (no barging); else it is queued if there is room (|w|->deadline is
 * set); else FY_EBULKHEADFULL. */
int fy__bulkhead_sm_admit(fy__bulkhead_sm_t *c, fy__bulkhead_sm_waiter_t *w, uint64_t now);

/* Take a slot without queueing: 0 or FY_EBULKHEADFULL. */
static inline int fy__bulkhead_sm_try_acquire(fy__bulkhead_sm_t *c) {
  if (c->active >= c->max_concurrent || c->queued > 0)
    return FY_EBULKHEADFULL;
  c->active++;
  return 0;
}

/* Give a slot back (no-op when none is in use). */
static inline void fy__bulkhead_sm_release(fy__bulkhead_sm_t *c) {
  if (c->active > 0)
    c->active--;
}

/* Hand a free slot to the head of the queue: unlinks it, counts it active
 * and returns it; NULL when no slot is free or nobody waits. */
fy__bulkhead_sm_waiter_t *fy__bulkhead_sm_next(fy__bulkhead_sm_t *c);

/* The head of the queue, without changing anything (NULL when empty). */
fy__bulkhead_sm_waiter_t *fy__bulkhead_sm_head(const fy__bulkhead_sm_t *c);

/* Unlink a waiter that gives up (cancelled, timed out, closing). */
void fy__bulkhead_sm_leave(fy__bulkhead_sm_t *c, fy__bulkhead_sm_waiter_t *w);

/* End of a queue wait that starts at |now| (saturates), or FY_TIME_NEVER
 * without a queue timeout. */
uint64_t fy__bulkhead_sm_queue_deadline(const fy__bulkhead_sm_t *c, uint64_t now);

/* 1 once |w|'s wait is over at |now|. */
int fy__bulkhead_sm_expired(const fy__bulkhead_sm_waiter_t *w, uint64_t now);

#endif /* FY_BULKHEAD_SM_H */
