/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * The circuit breaker's pure state machine.  It takes the time (|now|, in
 * context milliseconds) as an argument, owns no timer and calls no user code
 * except the trip predicate, so tests drive it without a loop.  The driver
 * in breaker.c binds it to a context: it arms a deadline for
 * fy__breaker_sm_wakeup(), classifies outcomes, measures latency and delivers the
 * state changes queued here.  Nothing here is API. */
#ifndef FY_BREAKER_SM_H
#define FY_BREAKER_SM_H

#include <stddef.h>
#include <stdint.h>

#include "fortify/breaker.h"

/* fy_breaker_permit_t.kind */
enum {
  FY__BREAKER_SM_P_INERT = 0, /* nothing to give back: refused, shadow, used up */
  FY__BREAKER_SM_P_CLOSED,    /* admitted while closed: its outcome counts */
  FY__BREAKER_SM_P_TRIAL      /* a half-open trial: holds one of max_requests */
};

/* One slot of a count window: bits of one outcome. */
enum { FY__BREAKER_SM_S_USED = 1, FY__BREAKER_SM_S_FAIL = 2, FY__BREAKER_SM_S_SLOW = 4 };

typedef struct fy__breaker_sm_agg_s {
  uint64_t calls;
  uint64_t failures;
  uint64_t slow;
} fy__breaker_sm_agg_t;

/* A queued state change (visible states). */
typedef struct fy__breaker_sm_ev_s {
  uint8_t from;
  uint8_t to;
} fy__breaker_sm_ev_t;

#define FY__BREAKER_SM_EV_INLINE 32

/* What acquire decided.  |refused| is FY_ECIRCUITOPEN or 0; |dry| is set
 * when metrics-only mode admitted a call it would have refused.  The other
 * fields are written only then (a plain admission sets just these two).  n[] holds
 * the counts that tripped the breaker: calls, failures, consecutive
 * failures, slow calls. */
typedef struct fy__breaker_sm_verdict_s {
  int refused;
  int dry;
  fy_breaker_state_t state;
  uint64_t retry_after_ms;
  uint64_t n[4];
} fy__breaker_sm_verdict_t;

typedef struct fy__breaker_sm_s {
  /* Configuration, normalised. */
  uint64_t interval_ms;
  uint64_t open_ms;
  uint64_t open_max_ms;
  uint64_t slow_ns;         /* 0: no call is slow */
  uint64_t width_ms;        /* time window: one bucket */
  double open_multiplier;
  double failure_rate;
  double slow_call_rate;
  uint32_t max_requests;
  uint32_t failure_threshold;
  uint32_t window_size;     /* slots (count) or buckets (time) */
  uint32_t minimum_calls;
  fy_breaker_window_t window;
  fy_breaker_trip_fn ready_to_trip;
  void *user_data;

  /* State. */
  fy_breaker_state_t state; /* the machine's own state */
  fy_breaker_mode_t mode;
  uint64_t generation;      /* bumped by every state change and reset */
  fy_breaker_counts_t counts; /* window_* are filled on reading */
  uint64_t interval_end;    /* closed: when the counts restart */
  uint64_t open_until;      /* open: when half-open starts */
  uint64_t open_cur;        /* the current trip's open duration */
  uint64_t trips;           /* consecutive trips since last closed */
  uint64_t trip_n[4];       /* the counts that tripped it */

  /* Sliding window: a ring of slots (count) or of buckets (time), with a
   * running total kept by subtract-on-evict. */
  fy__breaker_sm_agg_t total;
  uint8_t *slots;
  fy__breaker_sm_agg_t *buckets;
  uint32_t head;
  uint64_t head_epoch;      /* time window: bucket number of |head| */

  /* State changes waiting for delivery, oldest first.  A ring that grows
   * when full; if growing fails the newest change is merged into the last
   * one (counted in |ev_merged|) rather than lost. */
  fy__breaker_sm_ev_t ev_inline[FY__BREAKER_SM_EV_INLINE];
  fy__breaker_sm_ev_t *ev;
  size_t ev_cap;
  size_t ev_head;
  size_t ev_len;
  uint64_t ev_merged;
} fy__breaker_sm_t;

/* The common case, inline for the pipeline stage and the synchronous API:
 * a closed breaker in normal mode, whose counts never restart (no interval)
 * and that times nothing (no slow-call rule), decides without the clock.
 * Returns 1 with |permit| taken, or 0: call fy__breaker_sm_acquire(). */
static inline int fy__breaker_sm_acquire_closed(fy__breaker_sm_t *b,
                                                fy_breaker_permit_t *permit) {
  if (b->state != FY_BREAKER_CLOSED || b->mode != FY_BREAKER_NORMAL ||
      b->interval_end != FY_TIME_NEVER || b->slow_ns != 0)
    return 0;
  permit->kind = FY__BREAKER_SM_P_CLOSED;
  permit->generation = b->generation;
  b->counts.inflight++;
  return 1;
}

/* A success of a call admitted by fy__breaker_sm_acquire_closed(), while
 * nothing changed: with no window a success can trip nothing, so only the
 * counts move.  Returns 1 when recorded, or 0: call fy__breaker_sm_record(). */
static inline int fy__breaker_sm_record_closed_ok(fy__breaker_sm_t *b,
                                                  fy_breaker_permit_t *permit) {
  fy_breaker_counts_t *c = &b->counts;
  if (permit->kind != FY__BREAKER_SM_P_CLOSED ||
      permit->generation != b->generation || b->state != FY_BREAKER_CLOSED ||
      b->mode != FY_BREAKER_NORMAL || b->interval_end != FY_TIME_NEVER ||
      b->window != FY_BREAKER_WINDOW_NONE || b->slow_ns != 0)
    return 0;
  permit->kind = FY__BREAKER_SM_P_INERT;
  if (c->inflight > 0)
    c->inflight--;
  c->requests++;
  c->total_successes++;
  c->consecutive_successes++;
  c->consecutive_failures = 0;
  return 1;
}

/* 0, or UV_EINVAL when an option is out of range; |opts| not NULL.  The
 * body of fy_breaker_opts_check(). */
int fy__breaker_sm_validate(const fy_breaker_opts_t *opts);
/* Bytes of window memory a validated |opts| needs (may be 0). */
size_t fy__breaker_sm_window_bytes(const fy_breaker_opts_t *opts);
/* |window| is zeroed memory of fy__breaker_sm_window_bytes() bytes, 8-aligned,
 * living as long as |b|. */
void fy__breaker_sm_init(fy__breaker_sm_t *b, const fy_breaker_opts_t *opts, void *window,
                  uint64_t now);
void fy__breaker_sm_free(fy__breaker_sm_t *b);

/* 0 (admitted; |permit| filled) or FY_ECIRCUITOPEN (|permit| inert). */
int fy__breaker_sm_acquire(fy__breaker_sm_t *b, fy_breaker_permit_t *permit, uint64_t now,
                    fy__breaker_sm_verdict_t *v);
/* Count the outcome of |permit| and make it inert. */
void fy__breaker_sm_record(fy__breaker_sm_t *b, fy_breaker_permit_t *permit,
                    fy_outcome_t outcome, uint64_t latency_ns, uint64_t now);
/* Give |permit| back without an outcome and make it inert. */
void fy__breaker_sm_release(fy__breaker_sm_t *b, fy_breaker_permit_t *permit);

/* Apply what time alone changes: open -> half-open when due, the closed
 * interval's restart of the counts. */
void fy__breaker_sm_advance(fy__breaker_sm_t *b, uint64_t now);
/* When fy__breaker_sm_advance() next has work, or FY_TIME_NEVER. */
uint64_t fy__breaker_sm_wakeup(const fy__breaker_sm_t *b);

fy_breaker_state_t fy__breaker_sm_state(const fy__breaker_sm_t *b); /* visible state */
void fy__breaker_sm_counts(fy__breaker_sm_t *b, uint64_t now, fy_breaker_counts_t *out);
int fy__breaker_sm_set_mode(fy__breaker_sm_t *b, fy_breaker_mode_t mode, uint64_t now);
void fy__breaker_sm_reset(fy__breaker_sm_t *b, uint64_t now);

/* Pop the oldest queued state change: 1, or 0 when none. */
int fy__breaker_sm_next_event(fy__breaker_sm_t *b, fy_breaker_state_t *from,
                       fy_breaker_state_t *to);

#endif /* FY_BREAKER_SM_H */
