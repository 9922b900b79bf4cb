/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * The circuit breaker, driven by a random script of acquires, outcomes
 * (success, failure, ignored, slow), releases, time steps, mode changes and
 * resets.  The first byte picks the subject:
 *
 * - the pure state machine (src/breaker.h), with a trip predicate that may
 *   re-enter the machine;
 * - the public synchronous API on a manual-clock context, where the
 *   open -> half-open deadline fires by itself and on_state_change (which
 *   may re-enter or close the breaker) and the listeners see every change.
 *
 * Invariants checked after every step: the generation never decreases; the
 * permits in flight equal the live permits of the current generation (no
 * permit leaks, stale permits are ignored and change nothing); half-open
 * never has more than max_requests trials; an open breaker refuses until
 * open_until and is half-open from then on; the counts are coherent; a
 * closed breaker never sits past its trip rules; state changes form an
 * unbroken chain ending at the visible state; nothing leaks. */
#include <string.h>
#include <uv.h>

#include "breaker_sm.h"
#include "fuzz.h"
#include "internal.h"

#define NPERMITS 24

static fz_t *Z;
static fy__breaker_sm_t B;
static fy_breaker_permit_t P[NPERMITS];
static fy_breaker_opts_t O;
static uint64_t now;
static uint64_t last_gen;
static fy_breaker_state_t seen; /* the end of the notified chain */
static unsigned predicate_depth;
static int recording = -1; /* the slot being recorded */

static uint8_t window_mem[64 * 1024];

/* Options the machine accepts, mostly: small values, sometimes edges. */
static void gen_opts(fz_t *z, fy_breaker_opts_t *o) {
  fy_breaker_opts_init(o);
  o->max_requests = (uint32_t)fz_below(z, 6);
  o->interval_ms = fz_u8(z) & 1 ? fz_time(z) : 0;
  o->open_ms = fz_time(z);
  o->failure_threshold = (uint32_t)fz_below(z, 8);
  o->window = (fy_breaker_window_t)fz_below(z, FY_BREAKER_WINDOW__COUNT);
  o->window_calls = 1 + (uint32_t)fz_below(z, 4096);
  o->window_ms = 1 + fz_time(z);
  o->window_buckets = 1 + (uint32_t)fz_below(z, 64);
  if (o->window_buckets > o->window_ms)
    o->window_buckets = (uint32_t)o->window_ms;
  o->minimum_calls = (uint32_t)fz_below(z, 50);
  o->failure_rate = 1 + (double)fz_below(z, 100);
  o->slow_call_rate = 1 + (double)fz_below(z, 100);
  o->slow_call_ms = fz_u8(z) & 1 ? fz_time(z) : 0;
  o->open_multiplier = 1.0 + (double)fz_below(z, 40) / 8.0;
  o->open_max_ms = fz_u8(z) & 1 ? o->open_ms + fz_time(z) : 0;
  o->mode = (fy_breaker_mode_t)fz_below(z, FY_BREAKER_MODE__COUNT);
}

static int machine_runs(void) {
  return B.mode == FY_BREAKER_NORMAL || B.mode == FY_BREAKER_METRICS_ONLY;
}

/* Drain the queued changes: each starts where the previous ended. */
static void drain_events(void) {
  fy_breaker_state_t from, to;
  while (fy__breaker_sm_next_event(&B, &from, &to)) {
    FZ_CHECK(from == seen, "change %d->%d, but the last one ended at %d", from,
             to, seen);
    FZ_CHECK(from != to, "a change from %d to itself", from);
    FZ_CHECK((unsigned)to <= FY_BREAKER_HALF_OPEN, "state %d", to);
    seen = to;
  }
  FZ_CHECK(seen == fy__breaker_sm_state(&B), "chain ends at %d, visible %d", seen,
           fy__breaker_sm_state(&B));
}

static void check_machine(void) {
  const fy_breaker_counts_t *c = &B.counts;
  uint64_t live = 0;
  int k;

  FZ_CHECK(B.generation >= last_gen, "generation went back: %llu < %llu",
           (unsigned long long)B.generation, (unsigned long long)last_gen);
  last_gen = B.generation;
  for (k = 0; k < NPERMITS; k++)
    live += P[k].kind != FY__BREAKER_SM_P_INERT && P[k].generation == B.generation;
  FZ_CHECK(c->inflight == live, "%llu permits in flight, %llu live",
           (unsigned long long)c->inflight, (unsigned long long)live);
  if (B.state == FY_BREAKER_HALF_OPEN)
    FZ_CHECK(c->inflight <= B.max_requests, "%llu trials for max %u",
             (unsigned long long)c->inflight, B.max_requests);
  FZ_CHECK(c->requests == c->total_successes + c->total_failures,
           "requests %llu != %llu + %llu", (unsigned long long)c->requests,
           (unsigned long long)c->total_successes,
           (unsigned long long)c->total_failures);
  FZ_CHECK(c->consecutive_successes <= c->total_successes &&
               c->consecutive_failures <= c->total_failures &&
               (c->consecutive_successes == 0 || c->consecutive_failures == 0),
           "consecutive counts");
  FZ_CHECK(c->total_slow <= c->requests, "slow > requests");
  FZ_CHECK(B.total.failures <= B.total.calls && B.total.slow <= B.total.calls,
           "window totals");
  if (B.window == FY_BREAKER_WINDOW_COUNT)
    FZ_CHECK(B.total.calls <= B.window_size, "count window overfull");
  if (B.window == FY_BREAKER_WINDOW_NONE)
    FZ_CHECK(B.total.calls == 0, "a window without a window");
  if (B.state == FY_BREAKER_OPEN) {
    FZ_CHECK(B.open_cur >= B.open_ms && B.open_cur <= B.open_max_ms,
             "open duration %llu outside [%llu, %llu]",
             (unsigned long long)B.open_cur, (unsigned long long)B.open_ms,
             (unsigned long long)B.open_max_ms);
    FZ_CHECK(fy__breaker_sm_wakeup(&B) ==
                 (machine_runs() ? B.open_until : FY_TIME_NEVER),
             "wakeup");
  } else {
    FZ_CHECK(fy__breaker_sm_wakeup(&B) == FY_TIME_NEVER, "wakeup while not open");
  }
  /* A closed machine never sits past the default predicate. */
  if (B.state == FY_BREAKER_CLOSED && machine_runs() &&
      B.ready_to_trip == NULL && B.failure_threshold > 0)
    FZ_CHECK(c->consecutive_failures < B.failure_threshold,
             "closed with %llu consecutive failures (threshold %u)",
             (unsigned long long)c->consecutive_failures, B.failure_threshold);
}

static void op_acquire(int k, int reentrant);

/* A predicate that decides from the script, and sometimes re-enters the
 * machine first (its verdict must then be dropped if the generation
 * changed). */
static int predicate(const fy_breaker_counts_t *c, void *ud) {
  uint8_t what = fz_u8(Z);
  (void)ud;
  FZ_CHECK(c->requests == c->total_successes + c->total_failures,
           "the predicate's copy is incoherent");
  if (predicate_depth++ == 0) {
    switch (what % 8) {
    case 5:
      fy__breaker_sm_reset(&B, now);
      break;
    case 6:
      fy__breaker_sm_set_mode(&B, (fy_breaker_mode_t)fz_below(Z, 5), now);
      break;
    case 7:
      op_acquire((int)fz_below(Z, NPERMITS), 1);
      break;
    default:
      break;
    }
  }
  predicate_depth--;
  return what & 1;
}

static void op_acquire(int k, int reentrant) {
  fy__breaker_sm_verdict_t v;
  fy_breaker_state_t before;
  uint64_t open_until;
  int rc;

  if ((P[k].kind != FY__BREAKER_SM_P_INERT && P[k].generation == B.generation) ||
      k == recording)
    return; /* the slot holds a live permit */
  fy__breaker_sm_advance(&B, now);
  before = B.state;
  open_until = B.open_until;
  rc = fy__breaker_sm_acquire(&B, &P[k], now, &v);
  FZ_CHECK(rc == 0 || rc == FY_ECIRCUITOPEN, "acquire: %d", rc);
  FZ_CHECK(rc == v.refused, "verdict %d, rc %d", v.refused, rc);
  if (rc != 0) {
    FZ_CHECK(P[k].kind == FY__BREAKER_SM_P_INERT, "a refusal holds a permit");
    FZ_CHECK(B.mode == FY_BREAKER_FORCED_OPEN || B.state != FY_BREAKER_CLOSED,
             "a closed breaker refused");
    if (B.mode != FY_BREAKER_FORCED_OPEN && before == FY_BREAKER_OPEN) {
      FZ_CHECK(now < open_until, "open past open_until");
      FZ_CHECK(v.retry_after_ms == open_until - now, "retry-after %llu",
               (unsigned long long)v.retry_after_ms);
    }
  } else {
    FZ_CHECK(B.mode != FY_BREAKER_FORCED_OPEN, "forced open admitted");
    if (B.mode == FY_BREAKER_NORMAL)
      FZ_CHECK(B.state != FY_BREAKER_OPEN, "an open breaker admitted");
  }
  if (!reentrant)
    check_machine();
}

static void op_record(int k) {
  fy_breaker_permit_t p = P[k];
  fy_breaker_counts_t before = B.counts;
  uint64_t gen = B.generation;
  fy_breaker_state_t state = B.state;
  uint8_t o = fz_u8(Z);
  fy_outcome_t outcome = (fy_outcome_t)(o % 3);
  uint64_t latency = o & 8 ? fz_time(Z) * 1000000u : fz_u32(Z);
  int stale = p.kind == FY__BREAKER_SM_P_INERT || p.generation != B.generation;

  if (stale && !(o & 16))
    fy__breaker_sm_advance(&B, now); /* so that only the record can change */
  before = B.counts;
  gen = B.generation;
  state = B.state;
  recording = k;
  fy__breaker_sm_record(&B, &P[k], outcome, latency, now);
  recording = -1;
  FZ_CHECK(P[k].kind == FY__BREAKER_SM_P_INERT, "a recorded permit stays live");
  if (stale && !(o & 16)) {
    /* The generation guard: an old permit changes nothing. */
    FZ_CHECK(B.generation == gen && B.state == state &&
                 memcmp(&before, &B.counts, sizeof(before)) == 0,
             "a stale permit changed the breaker");
  }
  if (!stale && machine_runs() && B.state == FY_BREAKER_CLOSED &&
      B.generation == gen && B.window != FY_BREAKER_WINDOW_NONE &&
      B.total.calls >= B.minimum_calls) {
    /* Right after a counted outcome a closed breaker is below its rates. */
    FZ_CHECK((double)B.total.failures * 100.0 <
                 B.failure_rate * (double)B.total.calls,
             "closed at a failure rate of %llu/%llu",
             (unsigned long long)B.total.failures,
             (unsigned long long)B.total.calls);
  }
  check_machine();
}

static void run_pure(fz_t *z) {
  size_t wbytes;
  int k;

  gen_opts(z, &O);
  if (fz_u8(z) & 1)
    O.ready_to_trip = predicate;
  if (fy__breaker_sm_validate(&O) != 0)
    return;
  wbytes = fy__breaker_sm_window_bytes(&O);
  if (wbytes > sizeof(window_mem))
    return;
  memset(window_mem, 0, wbytes);
  memset(P, 0, sizeof(P));
  now = fz_u8(z) & 1 ? fz_u64_edge(z) >> 2 : fz_u32(z);
  fy__breaker_sm_init(&B, &O, wbytes ? window_mem : NULL, now);
  last_gen = B.generation;
  seen = fy__breaker_sm_state(&B);
  check_machine();

  while (!fz_done(z)) {
    uint64_t before;
    k = (int)fz_below(z, NPERMITS);
    switch (fz_u8(z) % 12) {
    case 0:
    case 1:
    case 2:
      op_acquire(k, 0);
      break;
    case 3:
    case 4:
    case 5:
      op_record(k);
      break;
    case 6:
      fy__breaker_sm_release(&B, &P[k]);
      FZ_CHECK(P[k].kind == FY__BREAKER_SM_P_INERT, "released permit stays live");
      check_machine();
      break;
    case 7:
    case 8:
      before = now;
      now += fz_time(z);
      if (now < before)
        now = before;
      if (fz_u8(z) & 1) {
        /* Eagerly, as the driver's deadline does. */
        uint64_t wake = fy__breaker_sm_wakeup(&B);
        fy__breaker_sm_advance(&B, now);
        if (wake != FY_TIME_NEVER && now >= wake)
          FZ_CHECK(B.state == FY_BREAKER_HALF_OPEN, "still %d after open_until",
                   B.state);
      }
      check_machine();
      break;
    case 9: {
      int mode = (int)fz_below(z, 7) - 1;
      int rc = fy__breaker_sm_set_mode(&B, (fy_breaker_mode_t)mode, now);
      FZ_CHECK(rc == ((unsigned)mode < FY_BREAKER_MODE__COUNT ? 0 : UV_EINVAL),
               "set_mode(%d): %d", mode, rc);
      check_machine();
      break;
    }
    case 10: {
      uint64_t gen = B.generation;
      fy__breaker_sm_reset(&B, now);
      FZ_CHECK(B.generation > gen, "reset kept the generation");
      FZ_CHECK(B.state == FY_BREAKER_CLOSED, "reset left state %d", B.state);
      check_machine();
      break;
    }
    default: {
      fy_breaker_counts_t c;
      fy__breaker_sm_counts(&B, now, &c);
      FZ_CHECK(c.window_calls == B.total.calls, "window calls");
      drain_events();
      break;
    }
    }
  }
  drain_events();
  for (k = 0; k < NPERMITS; k++)
    fy__breaker_sm_release(&B, &P[k]);
  FZ_CHECK(B.counts.inflight == 0, "%llu permits leaked",
           (unsigned long long)B.counts.inflight);
  fy__breaker_sm_free(&B);
}

/* ---- the public API on a context ----------------------------------------- */

static fy_ctx_t *ctx;
static fy_breaker_t *g_brk;
static int closed_by_callback;
static int after_close; /* the close was seen back at the top level */
static fy_breaker_state_t cb_seen, ev_seen;
static unsigned cb_depth;

static void on_change(fy_breaker_state_t from, fy_breaker_state_t to,
                      void *ud) {
  (void)ud;
  /* After the close only changes queued before it are delivered, all
   * within the notification that was running (docs/breaker.md). */
  FZ_CHECK(!after_close, "on_state_change after the close returned");
  FZ_CHECK(cb_depth == 0, "on_state_change nested");
  FZ_CHECK(from == cb_seen && from != to, "callback chain %d->%d after %d",
           from, to, cb_seen);
  cb_seen = to;
  if (closed_by_callback)
    return;
  cb_depth++;
  switch (fz_u8(Z) % 10) {
  case 1:
    fy_breaker_reset(g_brk);
    break;
  case 2:
    fy_breaker_set_mode(g_brk, (fy_breaker_mode_t)fz_below(Z, 5));
    break;
  case 3:
    (void)fy_breaker_state(g_brk);
    break;
  case 4:
    if (fy_breaker_close(g_brk, NULL, NULL) == 0)
      closed_by_callback = 1;
    break;
  case 5:
    /* Queue one more change, then close with it still undelivered. */
    fy_breaker_reset(g_brk);
    if (fy_breaker_close(g_brk, NULL, NULL) == 0)
      closed_by_callback = 1;
    break;
  default:
    break;
  }
  cb_depth--;
}

static void on_event(fy_ctx_t *c, const fy_event_t *ev, void *ud) {
  (void)c;
  (void)ud;
  if (ev->type != FY_EV_STATE_CHANGE)
    return;
  FZ_CHECK(ev->from == ev_seen && ev->from != ev->to,
           "event chain %lld->%lld after %d", (long long)ev->from,
           (long long)ev->to, ev_seen);
  ev_seen = (fy_breaker_state_t)ev->to;
}

static void on_closed(void *obj, void *ud) {
  (void)obj;
  ++*(int *)ud;
}

static void run_api(fz_t *z) {
  static uv_loop_t loop;
  static int loop_ready;
  fy_ctx_opts_t copts;
  fy_breaker_permit_t permits[NPERMITS];
  fy_detail_t d;
  int closed = 0, k, rc;

  if (!loop_ready) {
    FZ_CHECK(uv_loop_init(&loop) == 0, "uv_loop_init");
    loop_ready = 1;
  }
  gen_opts(z, &O);
  O.on_state_change = on_change;
  if (fy__breaker_sm_validate(&O) != 0 || fy__breaker_sm_window_bytes(&O) > 65536)
    return;
  fz_alloc_install();
  memset(&copts, 0, sizeof(copts));
  copts.manual_clock = 1;
  copts.manual_start_ms = fz_u32(z);
  FZ_CHECK(fy_ctx_new(&loop, &copts, &ctx) == 0, "fy_ctx_new");
  FZ_CHECK(fy_ctx_listen(ctx, FY_EV_ALL, on_event, NULL, NULL) == 0, "listen");
  FZ_CHECK(fy_breaker_new(ctx, &O, &g_brk) == 0, "fy_breaker_new");
  cb_seen = ev_seen = fy_breaker_state(g_brk);
  closed_by_callback = 0;
  after_close = 0;
  memset(permits, 0, sizeof(permits));

  while (!fz_done(z) && !closed_by_callback) {
    k = (int)fz_below(z, NPERMITS);
    switch (fz_u8(z) % 8) {
    case 0:
    case 1:
      rc = fy_breaker_acquire(g_brk, &permits[k], &d);
      FZ_CHECK(rc == 0 || rc == FY_ECIRCUITOPEN || rc == FY_ECLOSED,
               "acquire: %d", rc);
      if (rc == FY_ECIRCUITOPEN)
        FZ_CHECK(d.by_kind != NULL && strcmp(d.by_kind, "breaker") == 0,
                 "refusal without detail");
      break;
    case 2:
    case 3:
      fy_breaker_record(g_brk, &permits[k], fz_status(z));
      break;
    case 4:
      fy_breaker_release(g_brk, &permits[k]);
      break;
    case 5:
      FZ_CHECK(fy_ctx_advance(ctx, fz_time(z)) == 0, "advance");
      break;
    case 6:
      rc = fy_breaker_set_mode(g_brk, (fy_breaker_mode_t)fz_below(z, 6));
      FZ_CHECK(rc == 0 || rc == UV_EINVAL, "set_mode: %d", rc);
      break;
    default:
      FZ_CHECK(fy_breaker_reset(g_brk) == 0, "reset");
      break;
    }
    if (!closed_by_callback) {
      /* Reading the state may move it (and call back, and close it). */
      fy_breaker_state_t st = fy_breaker_state(g_brk);
      fy_breaker_counts_t c;
      if (closed_by_callback)
        break;
      fy_breaker_counts(g_brk, &c);
      if (st == FY_BREAKER_HALF_OPEN)
        FZ_CHECK(c.inflight <= (O.max_requests ? O.max_requests : 1),
                 "%llu trials", (unsigned long long)c.inflight);
      FZ_CHECK(cb_seen == st && ev_seen == cb_seen,
               "notified %d / %d, visible %d", cb_seen, ev_seen, st);
    }
  }
  if (!closed_by_callback)
    FZ_CHECK(fy_breaker_close(g_brk, NULL, NULL) == 0, "close");
  after_close = 1;
  FZ_CHECK(fy_ctx_close(ctx, on_closed, &closed) == 0, "ctx close");
  for (k = 0; k < 4 && !closed; k++)
    uv_run(&loop, UV_RUN_DEFAULT);
  FZ_CHECK(closed == 1, "context closed %d times", closed);
  FZ_CHECK(fz_alloc_live() == 0, "%ld blocks leaked", fz_alloc_live());
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz_t z;
  fz_init(&z, data, size);
  Z = &z;
  predicate_depth = 0;
  cb_depth = 0;
  if (fz_u8(&z) & 1)
    run_api(&z);
  else
    run_pure(&z);
  return 0;
}
