/* Copyright (c) 2026 the fortify authors. MIT licensed. */
#include "wheel.h"

#define SLOT_MASK ((uint64_t)FY__WHEEL_SLOTS - 1)

void fy__wheel_init(fy__wheel_t *w, uint64_t now) {
  int l, s;
  w->wtime = now;
  w->count = 0;
  for (l = 0; l < FY__WHEEL_LEVELS; l++) {
    w->occupied[l] = 0;
    for (s = 0; s < FY__WHEEL_SLOTS; s++)
      fy__queue_init(&w->slots[l][s]);
  }
}

static unsigned level_of(uint64_t wtime, uint64_t expiry) {
  uint64_t diff = wtime ^ expiry;
  if (diff == 0)
    return 0;
  return (unsigned)(63 - __builtin_clzll(diff)) / FY__WHEEL_BITS;
}

void fy__wheel_insert(fy__wheel_t *w, fy_deadline_t *d) {
  unsigned level, slot;
  if (d->expiry < w->wtime)
    d->expiry = w->wtime;
  level = level_of(w->wtime, d->expiry);
  slot = (unsigned)((d->expiry >> (level * FY__WHEEL_BITS)) & SLOT_MASK);
  fy__queue_insert_tail(&w->slots[level][slot], &d->node);
  w->occupied[level] |= (uint64_t)1 << slot;
  d->slot = level * FY__WHEEL_SLOTS + slot;
  w->count++;
}

void fy__wheel_remove(fy__wheel_t *w, fy_deadline_t *d) {
  unsigned level, slot;
  if (d->slot == FY__DL_IDLE)
    return;
  fy__queue_remove(&d->node);
  if (d->slot != FY__DL_READY) {
    level = d->slot / FY__WHEEL_SLOTS;
    slot = d->slot % FY__WHEEL_SLOTS;
    if (fy__queue_empty(&w->slots[level][slot]))
      w->occupied[level] &= ~((uint64_t)1 << slot);
    w->count--;
  }
  d->slot = FY__DL_IDLE;
}

/* Earliest occupied slot: its level, index and block start.  Slots below
 * wtime's own index at a level cannot be occupied (see wheel.h), so the
 * lowest non-empty level holds the earliest block. */
static int earliest(const fy__wheel_t *w, unsigned *level, unsigned *slot,
                    uint64_t *start) {
  unsigned l, shift, idx;
  uint64_t pending, base;
  for (l = 0; l < FY__WHEEL_LEVELS; l++) {
    shift = l * FY__WHEEL_BITS;
    idx = (unsigned)((w->wtime >> shift) & SLOT_MASK);
    pending = w->occupied[l] & (~(uint64_t)0 << idx);
    if (pending == 0)
      continue;
    *level = l;
    *slot = (unsigned)__builtin_ctzll(pending);
    base = shift + FY__WHEEL_BITS >= 64
               ? 0
               : (w->wtime >> (shift + FY__WHEEL_BITS))
                     << (shift + FY__WHEEL_BITS);
    *start = base | ((uint64_t)*slot << shift);
    return 1;
  }
  return 0;
}

uint64_t fy__wheel_next(const fy__wheel_t *w) {
  unsigned level, slot;
  uint64_t start;
  if (w->count == 0 || !earliest(w, &level, &slot, &start))
    return FY_TIME_NEVER;
  return start;
}

int fy__wheel_step(fy__wheel_t *w, uint64_t target, fy__queue_t *ready) {
  unsigned level, slot;
  uint64_t start;
  fy__queue_t moving, *q;
  fy_deadline_t *d;

  for (;;) {
    if (w->count == 0 || !earliest(w, &level, &slot, &start) ||
        start > target) {
      if (target > w->wtime)
        w->wtime = target;
      return 0;
    }
    w->wtime = start;
    q = &w->slots[level][slot];
    w->occupied[level] &= ~((uint64_t)1 << slot);
    if (level == 0) {
      while (!fy__queue_empty(q)) {
        d = fy__queue_data(fy__queue_head(q), fy_deadline_t, node);
        fy__queue_remove(&d->node);
        fy__queue_insert_tail(ready, &d->node);
        d->slot = FY__DL_READY;
        w->count--;
      }
      return 1;
    }
    /* Cascade: re-insert relative to the new wtime, in list order. */
    fy__queue_init(&moving);
    fy__queue_move_tail(q, &moving);
    while (!fy__queue_empty(&moving)) {
      d = fy__queue_data(fy__queue_head(&moving), fy_deadline_t, node);
      fy__queue_remove(&d->node);
      w->count--;
      fy__wheel_insert(w, d);
    }
  }
}
