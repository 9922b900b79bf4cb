/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * The timeout's pure state machine: from the instant the limits were armed
 * and the progress marks seen since, the nearest instant at which a stage
 * may fire and which stage has fired by a given |now|.
 */
#include <assert.h>
#include <string.h>

#include "fortify.h"

#include "timeout_sm.h"

/* ---- pure state machine ------------------------------------------------ */


int fy_timeout_opts_check(const fy_timeout_opts_t *opts) {
  if (opts == NULL)
    return UV_EINVAL;
  if (opts->timeout_ms > FY_TIMEOUT_MAX_MS ||
      opts->first_byte_ms > FY_TIMEOUT_MAX_MS ||
      opts->idle_ms > FY_TIMEOUT_MAX_MS)
    return UV_EINVAL;
  if (opts->timeout_ms == 0 && opts->first_byte_ms == 0 &&
      opts->idle_ms == 0)
    return UV_EINVAL; /* a timeout that can never fire is a mistake */
  if ((unsigned)opts->scope > (unsigned)FY_TIMEOUT_PER_TRY)
    return UV_EINVAL;
  return 0;
}

int fy__timeout_opts_check(const fy_timeout_opts_t *opts) {
  return fy_timeout_opts_check(opts);
}

static uint64_t at_or_never(uint64_t now, uint64_t ms) {
  return ms == 0 ? FY_TIME_NEVER : fy_time_add(now, ms);
}

void fy__timeout_sm_start(fy__timeout_sm_t *sm, uint64_t now,
                          uint64_t total_ms, uint64_t first_byte_ms,
                          uint64_t idle_ms, uint64_t parent_at) {
  memset(sm, 0, sizeof(*sm));
  sm->start = now;
  sm->total_ms = total_ms;
  sm->first_byte_ms = first_byte_ms;
  sm->idle_ms = idle_ms;
  sm->total_at = at_or_never(now, total_ms);
  sm->first_byte_at = at_or_never(now, first_byte_ms);
  /* Idle runs from the start, not from the first mark: a stream that
   * never delivers anything must still time out. */
  sm->idle_at = at_or_never(now, idle_ms);
  sm->parent_at = parent_at;
}

void fy__timeout_sm_mark(fy__timeout_sm_t *sm, uint64_t now) {
  sm->marks++;
  sm->first_byte_at = FY_TIME_NEVER;
  if (sm->idle_ms != 0)
    sm->idle_at = fy_time_add(now, sm->idle_ms);
}

static uint64_t own_next(const fy__timeout_sm_t *sm) {
  uint64_t next = sm->first_byte_at;
  if (sm->idle_at < next)
    next = sm->idle_at;
  if (sm->total_at < next)
    next = sm->total_at;
  return next;
}

uint64_t fy__timeout_sm_next(const fy__timeout_sm_t *sm) {
  uint64_t next = own_next(sm);
  return sm->parent_at < next ? sm->parent_at : next;
}

fy_timeout_stage_t fy__timeout_sm_due(const fy__timeout_sm_t *sm,
                                      uint64_t now) {
  uint64_t own = own_next(sm);
  if (sm->parent_at < own)
    return sm->parent_at <= now ? FY_TIMEOUT_STAGE_DEADLINE
                                : FY_TIMEOUT_STAGE_NONE;
  if (own > now)
    return FY_TIMEOUT_STAGE_NONE;
  /* Equal instants: the most specific stage names the problem best. */
  if (sm->first_byte_at == own)
    return FY_TIMEOUT_STAGE_FIRST_BYTE;
  if (sm->idle_at == own)
    return FY_TIMEOUT_STAGE_IDLE;
  return FY_TIMEOUT_STAGE_TOTAL;
}

uint64_t fy__timeout_sm_limit(const fy__timeout_sm_t *sm,
                              fy_timeout_stage_t stage) {
  switch (stage) {
  case FY_TIMEOUT_STAGE_TOTAL:
    return sm->total_ms;
  case FY_TIMEOUT_STAGE_FIRST_BYTE:
    return sm->first_byte_ms;
  case FY_TIMEOUT_STAGE_IDLE:
    return sm->idle_ms;
  case FY_TIMEOUT_STAGE_DEADLINE:
    return sm->parent_at > sm->start ? sm->parent_at - sm->start : 0;
  default:
    return 0;
  }
}

uint64_t fy__timeout_sm_elapsed(const fy__timeout_sm_t *sm, uint64_t now) {
  return now > sm->start ? now - sm->start : 0;
}
