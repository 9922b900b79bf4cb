/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * The bulkhead's pure state machine (src/bulkhead.h) against a model:
 * random admissions, permits (try_acquire), releases with or without the
 * hand-over that follows them in the driver, waiters leaving (cancelled),
 * queue timeouts, FIFO and LIFO orders, limits from 1 to the maximum.
 *
 * After every step: slots in use and queue length equal the model's and
 * stay within their limits; the queue holds the model's waiters in the
 * model's order; a newcomer or a permit never takes a slot while anyone
 * waits (no barging); a freed slot goes to the head of the queue; a
 * waiter's wait ends exactly queue_timeout_ms after it joined; when every
 * holder has released and every waiter has left, nothing is in use (no
 * slot or queue place leaks). */
#include <string.h>

#include <fortify.h>

#include "bulkhead_sm.h"
#include "fuzz.h"

#define NW 32

enum { IDLE = 0, QUEUED, RUNNING };

static fy__bulkhead_sm_t C;
static fy__bulkhead_sm_waiter_t W[NW];
static int state[NW];
static uint64_t joined[NW];
static int queue[NW]; /* the model's queue, head first */
static int qlen;
static uint32_t active; /* running waiters plus permits */
static uint32_t permits;

static int idx(const fy__bulkhead_sm_waiter_t *w) {
  return (int)(w - W);
}

static void q_remove(int i) {
  int k;
  for (k = 0; k < qlen; k++) {
    if (queue[k] == i) {
      memmove(&queue[k], &queue[k + 1], (size_t)(qlen - k - 1) * sizeof(int));
      qlen--;
      return;
    }
  }
  FZ_CHECK(0, "waiter %d not in the model's queue", i);
}

static void check(void) {
  fy__queue_t *q;
  int k = 0;
  FZ_CHECK(C.active == active, "active %u, model %u", C.active, active);
  FZ_CHECK(C.queued == (uint32_t)qlen, "queued %u, model %d", C.queued, qlen);
  FZ_CHECK(C.active <= C.max_concurrent, "%u slots of %u", C.active,
           C.max_concurrent);
  FZ_CHECK(C.queued <= C.max_queue, "%u queued of %u", C.queued, C.max_queue);
  for (q = C.queue.next; q != &C.queue; q = q->next, k++) {
    fy__bulkhead_sm_waiter_t *w = fy__queue_data(q, fy__bulkhead_sm_waiter_t, node);
    FZ_CHECK(k < qlen && idx(w) == queue[k], "queue order differs at %d", k);
  }
  FZ_CHECK(k == qlen, "queue has %d, model %d", k, qlen);
  FZ_CHECK(fy__bulkhead_sm_head(&C) == (qlen ? &W[queue[0]] : NULL), "head");
}

/* The driver hands freed slots to the head of the queue at once. */
static void dispatch(void) {
  fy__bulkhead_sm_waiter_t *w;
  while ((w = fy__bulkhead_sm_next(&C)) != NULL) {
    int i = idx(w);
    FZ_CHECK(qlen > 0 && i == queue[0], "a slot went to %d, not the head", i);
    q_remove(i);
    state[i] = RUNNING;
    active++;
  }
  FZ_CHECK(qlen == 0 || active >= C.max_concurrent,
           "a slot is free and %d wait", qlen);
}

static void admit(int i, uint64_t now) {
  int rc, expect;
  if (state[i] != IDLE)
    return;
  if (active < C.max_concurrent && qlen == 0)
    expect = FY__BH_RUN;
  else if ((uint32_t)qlen < C.max_queue)
    expect = FY__BH_QUEUED;
  else
    expect = FY_EBULKHEADFULL;
  rc = fy__bulkhead_sm_admit(&C, &W[i], now);
  FZ_CHECK(rc == expect, "admit: %d, expected %d (active %u, queued %d)", rc,
           expect, active, qlen);
  if (rc == FY__BH_RUN) {
    state[i] = RUNNING;
    active++;
  } else if (rc == FY__BH_QUEUED) {
    uint64_t want = fy__bulkhead_sm_queue_deadline(&C, now);
    FZ_CHECK(W[i].deadline == want, "wait deadline");
    if (C.queue_timeout_ms == 0)
      FZ_CHECK(want == FY_TIME_NEVER, "a wait without limit has an end");
    else
      FZ_CHECK(
          want != FY_TIME_NEVER && want >= now &&
              (want - now == C.queue_timeout_ms || want == FY_TIME_NEVER - 1),
          "wait ends at %llu for %llu + %llu", (unsigned long long)want,
          (unsigned long long)now, (unsigned long long)C.queue_timeout_ms);
    state[i] = QUEUED;
    joined[i] = now;
    if (C.lifo) {
      memmove(&queue[1], &queue[0], (size_t)qlen * sizeof(int));
      queue[0] = i;
      qlen++;
    } else {
      queue[qlen++] = i;
    }
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz_t z;
  uint64_t now;
  uint32_t max_c, max_q;
  int i, k;

  fz_init(&z, data, size);
  max_c = fz_u8(&z) & 1 ? 1 + (uint32_t)fz_below(&z, 6) : fz_u32_edge(&z);
  max_q = fz_u8(&z) & 1 ? (uint32_t)fz_below(&z, 8) : fz_u32_edge(&z);
  if (max_c < 1 || max_c > FY_BULKHEAD_LIMIT_MAX ||
      max_q > FY_BULKHEAD_LIMIT_MAX)
    return 0; /* fy_bulkhead_new() refuses these (fuzz_options) */
  fy__bulkhead_sm_init(&C, max_c, max_q, fz_u8(&z) & 1 ? fz_time(&z) : fz_u64_edge(&z),
              fz_u8(&z) & 1);
  if (C.queue_timeout_ms > FY_BULKHEAD_TIMEOUT_MAX)
    return 0;
  memset(W, 0, sizeof(W));
  memset(state, 0, sizeof(state));
  qlen = 0;
  active = permits = 0;
  for (i = 0; i < NW; i++)
    fy__queue_init(&W[i].node);
  now = fz_u8(&z) & 1 ? fz_u32(&z) : fz_u64_edge(&z);
  if (now == FY_TIME_NEVER)
    now--; /* the context's clock never reads "never" */

  while (!fz_done(&z)) {
    int rc;
    i = (int)fz_below(&z, NW);
    switch (fz_u8(&z) % 9) {
    case 0:
    case 1:
    case 2:
      admit(i, now);
      break;
    case 3:
      rc = fy__bulkhead_sm_try_acquire(&C);
      FZ_CHECK(
          rc == (active < C.max_concurrent && qlen == 0 ? 0 : FY_EBULKHEADFULL),
          "try_acquire: %d (active %u, queued %d)", rc, active, qlen);
      if (rc == 0) {
        permits++;
        active++;
      }
      break;
    case 4:
    case 5:
      /* A running call ends, or a permit is given back. */
      if (state[i] == RUNNING) {
        state[i] = IDLE;
      } else if (permits > 0) {
        permits--;
      } else {
        if (active == 0)
          fy__bulkhead_sm_release(&C); /* nothing in use: a no-op */
        break;
      }
      fy__bulkhead_sm_release(&C);
      active--;
      if (fz_u8(&z) % 4 != 0)
        dispatch();
      break;
    case 6:
      /* A waiter's caller gives up. */
      if (state[i] == QUEUED) {
        fy__bulkhead_sm_leave(&C, &W[i]);
        q_remove(i);
        state[i] = IDLE;
        FZ_CHECK(fy__queue_empty(&W[i].node), "left waiter still linked");
      }
      break;
    case 7: {
      /* Time passes; the waits that are over end. */
      uint64_t step = fz_time(&z);
      now = now + step < now || now + step == FY_TIME_NEVER ? FY_TIME_NEVER - 1
                                                            : now + step;
      for (k = 0; k < NW; k++) {
        int over;
        if (state[k] != QUEUED)
          continue;
        over = fy__bulkhead_sm_expired(&W[k], now);
        FZ_CHECK(over ==
                     (W[k].deadline != FY_TIME_NEVER && now >= W[k].deadline),
                 "expired at %llu, deadline %llu", (unsigned long long)now,
                 (unsigned long long)W[k].deadline);
        if (!over)
          continue;
        FZ_CHECK(C.queue_timeout_ms != 0 &&
                     (now - joined[k] >= C.queue_timeout_ms ||
                      W[k].deadline == FY_TIME_NEVER - 1),
                 "a wait ended after %llu of %llu ms",
                 (unsigned long long)(now - joined[k]),
                 (unsigned long long)C.queue_timeout_ms);
        fy__bulkhead_sm_leave(&C, &W[k]);
        q_remove(k);
        state[k] = IDLE;
      }
      break;
    }
    default:
      dispatch();
      break;
    }
    check();
  }
  /* Everybody leaves: nothing may stay in use. */
  for (i = 0; i < NW; i++) {
    if (state[i] == QUEUED) {
      fy__bulkhead_sm_leave(&C, &W[i]);
      q_remove(i);
    } else if (state[i] == RUNNING) {
      fy__bulkhead_sm_release(&C);
      active--;
    }
    state[i] = IDLE;
  }
  while (permits-- > 0) {
    fy__bulkhead_sm_release(&C);
    active--;
  }
  check();
  FZ_CHECK(C.active == 0 && C.queued == 0, "leaked %u slots, %u places",
           C.active, C.queued);
  return 0;
}
