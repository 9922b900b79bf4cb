/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * The timeout pattern's pure state machine: no loop, no clock, time comes
 * in as |now| (ms).  The driver in timeout.c binds it to frames and
 * standalone watches; the tests drive it directly. */
#ifndef FY_TIMEOUT_SM_H
#define FY_TIMEOUT_SM_H

#include "fortify/timeout.h"

/* fy_timeout_opts_check() under its internal name. */
int fy__timeout_opts_check(const fy_timeout_opts_t *opts);

/* Arm the limits at |now|.  Each limit is in ms, 0 = off; |parent_at| is the
 * enclosing deadline (FY_TIME_NEVER: none).  Idle counts from |now|. */
void fy__timeout_sm_start(fy__timeout_sm_t *sm, uint64_t now,
                          uint64_t total_ms, uint64_t first_byte_ms,
                          uint64_t idle_ms, uint64_t parent_at);

/* Progress at |now|: first-byte is disarmed, idle restarts, total stays. */
void fy__timeout_sm_mark(fy__timeout_sm_t *sm, uint64_t now);

/* The nearest instant at which something may fire (own limits and the
 * enclosing deadline), or FY_TIME_NEVER. */
uint64_t fy__timeout_sm_next(const fy__timeout_sm_t *sm);

/* The stage that has fired by |now|, or FY_TIMEOUT_STAGE_NONE.  The
 * earliest instant wins.  On equal instants the order is first-byte, idle,
 * total, and the enclosing deadline last: the parent's deadline is reported
 * only when it is strictly earlier than every own limit. */
fy_timeout_stage_t fy__timeout_sm_due(const fy__timeout_sm_t *sm,
                                      uint64_t now);

/* The limit behind |stage| in ms (for DEADLINE: the budget the enclosing
 * deadline left at start). */
uint64_t fy__timeout_sm_limit(const fy__timeout_sm_t *sm,
                              fy_timeout_stage_t stage);

/* Ms since start (0 if |now| is earlier). */
uint64_t fy__timeout_sm_elapsed(const fy__timeout_sm_t *sm, uint64_t now);


#endif /* FY_TIMEOUT_SM_H */
