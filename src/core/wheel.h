/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * Hierarchical timer wheel: the structure behind every deadline of a
 * context.  Pure: it never reads a clock, the caller passes time in.
 *
 * 11 levels of 64 slots cover the whole 64-bit millisecond range.  An entry
 * sits at the level of the highest bit in which its expiry differs from the
 * wheel's time (wtime), in the slot given by its expiry's bits at that level.
 * Insert and remove are O(1) list operations plus a bit in a per-level
 * occupancy mask; finding the earliest occupied slot is one count-trailing-
 * zeros per level.  When wtime reaches the start of an occupied slot at a
 * level above 0, the slot's entries are re-inserted one level (or more)
 * lower ("cascade"); a slot at level 0 holds entries of one instant only.
 *
 * Order: entries due at the same instant come out in the order they were
 * inserted.  Insertion at a level happens only while wtime lies in that
 * slot's enclosing block, and blocks are entered in time order with the
 * cascade done first, so an earlier insertion is never overtaken. */
#ifndef FY_WHEEL_H
#define FY_WHEEL_H

#include "fortify/ctx.h"
#include "queue.h"

#define FY__WHEEL_BITS 6
#define FY__WHEEL_SLOTS 64
#define FY__WHEEL_LEVELS 11

/* fy_deadline_t.slot markers. */
#define FY__DL_IDLE 0xffffffffu  /* not pending */
#define FY__DL_READY 0xfffffffeu /* due, waiting in a ready list */
#define FY__DL_LANE 0xfffffffdu  /* pending in a lane (fy__lane_t) */

/* fy_deadline_t.flags */
#define FY__DL_F_UNREF 1u    /* does not keep the loop alive */
#define FY__DL_F_INTERNAL 2u /* a lane's own timer: not counted as pending */

typedef struct fy__wheel_s {
  uint64_t wtime;
  size_t count; /* entries in slots (not those in a ready list) */
  uint64_t occupied[FY__WHEEL_LEVELS];
  fy__queue_t slots[FY__WHEEL_LEVELS][FY__WHEEL_SLOTS];
} fy__wheel_t;

void fy__wheel_init(fy__wheel_t *w, uint64_t now);
/* Insert |d| by d->expiry (clamped up to wtime). */
void fy__wheel_insert(fy__wheel_t *w, fy_deadline_t *d);
/* Remove |d| from its slot or from the ready list it sits in. */
void fy__wheel_remove(fy__wheel_t *w, fy_deadline_t *d);
/* A lower bound of the earliest expiry (exact when it is in level 0), or
 * FY_TIME_NEVER when the wheel is empty. */
uint64_t fy__wheel_next(const fy__wheel_t *w);
/* Advance towards |target|.  Returns 1 after moving the entries due at the
 * earliest instant <= target into |ready| (marked FY__DL_READY, wtime set to
 * that instant), or 0 when nothing is due by |target| (wtime = target). */
int fy__wheel_step(fy__wheel_t *w, uint64_t target, fy__queue_t *ready);

#endif /* FY_WHEEL_H */
