/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * The timer wheel, against a model.  The first byte picks the subject:
 *
 * - the pure wheel (src/wheel.h): random inserts, removes and steps with
 *   64-bit expiries, including removals and re-inserts of entries while
 *   they wait in a ready list;
 * - deadlines on a manual-clock context (fy_deadline_*): random starts,
 *   stops, ref/unref and advances, with callbacks that stop or restart
 *   themselves and their siblings; some starts go through one of three
 *   lanes (fy__lane_start, each with its own fixed delay), which may keep
 *   them in the lane or pass them to the wheel.
 *
 * After every step: the entry that fires is pending in the model, fires at
 * its expiry (clamped to the time it was started) and never twice, and no
 * pending entry precedes it in (expiry, start order) (among equal instants,
 * lane members keep start order within their lane only); the counts,
 * lower bound of the next expiry and the context's reference count agree
 * with the model. */
#include <string.h>
#include <uv.h>

#include "fuzz.h"
#include "internal.h"
#include "wheel.h"

#define NDL 48

typedef struct model_s {
  int pending;
  uint64_t expiry;
  uint64_t seq; /* start order */
  int unref;
  int lane; /* the lane holding it, or -1 */
} model_t;

static fy_deadline_t dl[NDL];
static model_t m[NDL];
static uint64_t seq;
static uint64_t last_fire_at;
static fz_t *Z;

static int idx_of(const fy_deadline_t *d) {
  return (int)(d - dl);
}

/* Nothing pending may come before |i|, which fires now. */
static void check_first(int i, uint64_t now) {
  int j;
  FZ_CHECK(m[i].pending, "deadline %d fired while not pending", i);
  FZ_CHECK(m[i].expiry == now, "deadline %d due at %llu fired at %llu", i,
           (unsigned long long)m[i].expiry, (unsigned long long)now);
  FZ_CHECK(now >= last_fire_at, "time went back: %llu after %llu",
           (unsigned long long)now, (unsigned long long)last_fire_at);
  for (j = 0; j < NDL; j++) {
    if (j == i || !m[j].pending)
      continue;
    /* A tie between a lane member and anything outside its lane may go
     * either way. */
    if (m[j].expiry == m[i].expiry && m[i].lane != m[j].lane &&
        (m[i].lane >= 0 || m[j].lane >= 0))
      continue;
    FZ_CHECK(m[j].expiry > m[i].expiry ||
                 (m[j].expiry == m[i].expiry && m[j].seq > m[i].seq),
             "deadline %d (at %llu, #%llu) fired before %d (at %llu, #%llu)", i,
             (unsigned long long)m[i].expiry, (unsigned long long)m[i].seq, j,
             (unsigned long long)m[j].expiry, (unsigned long long)m[j].seq);
  }
  last_fire_at = now;
  m[i].pending = 0;
}

static size_t model_count(int strong_only) {
  size_t n = 0;
  int i;
  for (i = 0; i < NDL; i++)
    n += m[i].pending && !(strong_only && m[i].unref);
  return n;
}

static uint64_t model_min(void) {
  uint64_t min = FY_TIME_NEVER;
  int i;
  for (i = 0; i < NDL; i++)
    if (m[i].pending && m[i].expiry < min)
      min = m[i].expiry;
  return min;
}

/* ---- the pure wheel ------------------------------------------------------ */

/* The context never hands the wheel FY_TIME_NEVER, as an expiry or as a
 * target: it is the "not pending" marker. */
static uint64_t sat(uint64_t base, uint64_t delta) {
  return base + delta < base || base + delta == FY_TIME_NEVER
             ? FY_TIME_NEVER - 1
             : base + delta;
}

static void pure_insert(fy__wheel_t *w, int i, uint64_t when) {
  fy_deadline_t *d = &dl[i];
  if (d->slot != FY__DL_IDLE)
    fy__wheel_remove(w, d);
  d->expiry = when;
  fy__wheel_insert(w, d);
  m[i].pending = 1;
  m[i].expiry = when < w->wtime ? w->wtime : when;
  m[i].seq = ++seq;
  FZ_CHECK(d->expiry == m[i].expiry, "insert clamped %llu to %llu",
           (unsigned long long)when, (unsigned long long)d->expiry);
}

static void pure_remove(fy__wheel_t *w, int i) {
  fy__wheel_remove(w, &dl[i]);
  FZ_CHECK(dl[i].slot == FY__DL_IDLE, "removed entry still linked");
  m[i].pending = 0;
}

static void pure_step(fy__wheel_t *w, uint64_t target) {
  fy__queue_t ready;
  uint64_t before = w->wtime, min = model_min(), seq0 = seq;
  int r, i;

  fy__queue_init(&ready);
  r = fy__wheel_step(w, target, &ready);
  if (!r) {
    FZ_CHECK(min > target || min == FY_TIME_NEVER,
             "nothing due by %llu although %llu is pending",
             (unsigned long long)target, (unsigned long long)min);
    FZ_CHECK(w->wtime == (target > before ? target : before),
             "wtime %llu after an empty step to %llu from %llu",
             (unsigned long long)w->wtime, (unsigned long long)target,
             (unsigned long long)before);
    return;
  }
  FZ_CHECK(w->wtime == min, "step stopped at %llu, earliest is %llu",
           (unsigned long long)w->wtime, (unsigned long long)min);
  /* Pop the ready list one at a time, as the context does; in between, a
   * "callback" may stop a sibling in the list or start any entry again. */
  while (!fy__queue_empty(&ready)) {
    fy_deadline_t *d =
        fy__queue_data(fy__queue_head(&ready), fy_deadline_t, node);
    FZ_CHECK(d->slot == FY__DL_READY, "ready entry not marked ready");
    fy__queue_remove(&d->node);
    d->slot = FY__DL_IDLE;
    check_first(idx_of(d), w->wtime);
    switch (fz_u8(Z) % 4) {
    case 1:
      pure_remove(w, (int)fz_below(Z, NDL));
      break;
    case 2:
      pure_insert(w, (int)fz_below(Z, NDL), sat(w->wtime, fz_time(Z)));
      break;
    default:
      break;
    }
  }
  /* Everything due at that instant came out; what is still due then was
   * started by a "callback" and waits for the next step. */
  for (i = 0; i < NDL; i++)
    FZ_CHECK(!m[i].pending || m[i].expiry > w->wtime ||
                 (m[i].expiry == w->wtime && m[i].seq > seq0),
             "deadline %d due at %llu left behind at %llu", i,
             (unsigned long long)m[i].expiry, (unsigned long long)w->wtime);
}

static void run_pure(fz_t *z) {
  static fy__wheel_t w;
  uint64_t start = fz_u8(z) & 1 ? fz_u64_edge(z) : fz_u32(z);
  int i;

  fy__wheel_init(&w, start);
  for (i = 0; i < NDL; i++) {
    memset(&dl[i], 0, sizeof(dl[i]));
    fy__queue_init(&dl[i].node);
    dl[i].slot = FY__DL_IDLE;
  }
  last_fire_at = start;
  while (!fz_done(z)) {
    uint64_t next;
    i = (int)fz_below(z, NDL);
    switch (fz_u8(z) % 6) {
    case 0:
    case 1:
      pure_insert(&w, i, sat(w.wtime, fz_time(z)));
      break;
    case 2:
      /* Absolute, maybe in the past. */
      pure_insert(&w, i, sat(0, fz_u64_edge(z)));
      break;
    case 3:
      pure_remove(&w, i);
      break;
    default:
      pure_step(&w, sat(w.wtime, fz_time(z)));
      break;
    }
    FZ_CHECK(w.count == model_count(0), "wheel counts %zu, model %zu", w.count,
             model_count(0));
    next = fy__wheel_next(&w);
    if (w.count == 0)
      FZ_CHECK(next == FY_TIME_NEVER, "empty wheel says next %llu",
               (unsigned long long)next);
    else
      FZ_CHECK(next <= model_min() && next >= w.wtime,
               "next %llu is no lower bound of %llu (wtime %llu)",
               (unsigned long long)next, (unsigned long long)model_min(),
               (unsigned long long)w.wtime);
  }
}

/* ---- deadlines on a context ---------------------------------------------- */

static fy_ctx_t *ctx;

#define NLANES 3
static fy__lane_t lanes[NLANES];
static uint64_t lane_delay[NLANES];

/* A start through lane |k|: its fixed delay from now. */
static void lane_start(int i, int k) {
  uint64_t when = sat(fy_ctx_now(ctx), lane_delay[k]);
  int rc = fy__lane_start(&lanes[k], &dl[i], when);
  FZ_CHECK(rc == 0, "lane start: %d", rc);
  m[i].pending = 1;
  m[i].expiry = when < ctx->wheel.wtime ? ctx->wheel.wtime : when;
  m[i].seq = ++seq;
  m[i].lane = dl[i].slot == FY__DL_LANE ? k : -1;
  FZ_CHECK(m[i].lane < 0 || dl[i].expiry == when,
           "lane member's expiry moved");
  FZ_CHECK(fy_deadline_is_active(&dl[i]), "started deadline inactive");
}

static void ctx_start(int i, uint64_t ms, int absolute) {
  uint64_t now = fy_ctx_now(ctx), when;
  int rc;
  if (absolute) {
    when = ms;
    rc = fy_deadline_start_at(&dl[i], when);
    if (when == FY_TIME_NEVER) {
      FZ_CHECK(rc == UV_EINVAL, "start_at(FY_TIME_NEVER): %d", rc);
      return; /* nothing changed */
    }
  } else {
    when = sat(now, ms); /* "saturates on overflow" */
    rc = fy_deadline_start(&dl[i], ms);
  }
  FZ_CHECK(rc == 0, "start: %d", rc);
  m[i].pending = 1;
  m[i].expiry = when < ctx->wheel.wtime ? ctx->wheel.wtime : when;
  m[i].seq = ++seq;
  m[i].lane = -1;
  FZ_CHECK(fy_deadline_is_active(&dl[i]), "started deadline inactive");
}

static void ctx_stop(int i) {
  fy_deadline_stop(&dl[i]);
  m[i].pending = 0;
  FZ_CHECK(!fy_deadline_is_active(&dl[i]), "stopped deadline active");
  FZ_CHECK(fy_deadline_expiry(&dl[i]) == FY_TIME_NEVER,
           "stopped deadline has an expiry");
}

static void on_deadline(fy_deadline_t *d) {
  int i = idx_of(d);
  check_first(i, fy_ctx_now(ctx));
  FZ_CHECK(!fy_deadline_is_active(d), "deadline active in its callback");
  /* Also in the middle of a batch (siblings due now, a lane's timer due
   * too): the count is what the model says is pending. */
  FZ_CHECK(fy_ctx_pending_deadlines(ctx) == model_count(0),
           "%zu pending in a callback, model says %zu",
           fy_ctx_pending_deadlines(ctx), model_count(0));
  switch (fz_u8(Z) % 6) {
  case 1:
    ctx_stop((int)fz_below(Z, NDL));
    break;
  case 2:
    ctx_start((int)fz_below(Z, NDL), fz_time(Z), 0);
    break;
  case 3:
    ctx_start(i, fz_time(Z), 0); /* a periodic timer */
    break;
  case 5:
    lane_start((int)fz_below(Z, NDL), (int)fz_below(Z, NLANES));
    break;
  case 4:
    /* Not from here: fy_ctx_advance() refuses to nest. */
    FZ_CHECK(fy_ctx_advance(ctx, 1) == UV_EBUSY, "advance nested");
    break;
  default:
    break;
  }
}

static void check_ctx(void) {
  fy_ctx_stats_t st;
  fy_ctx_stats(ctx, &st);
  FZ_CHECK(st.deadlines == model_count(0), "ctx counts %zu, model %zu",
           st.deadlines, model_count(0));
  FZ_CHECK(fy_ctx_pending_deadlines(ctx) == st.deadlines, "pending count");
  FZ_CHECK(ctx->strong == model_count(1),
           "%zu deadlines keep the loop alive, model says %zu", ctx->strong,
           model_count(1));
  FZ_CHECK(st.calls == 0 && st.frames == 0, "calls or frames out of thin air");
}

static void on_closed(void *obj, void *ud) {
  (void)obj;
  ++*(int *)ud;
}

static void run_ctx(fz_t *z) {
  static uv_loop_t loop;
  static int loop_ready;
  fy_ctx_opts_t opts;
  uint64_t start = fz_u8(z) & 1 ? fz_u64_edge(z) : fz_u32(z);
  int i, closed = 0, rc;

  if (!loop_ready) {
    FZ_CHECK(uv_loop_init(&loop) == 0, "uv_loop_init");
    loop_ready = 1;
  }
  fz_alloc_install();
  memset(&opts, 0, sizeof(opts));
  opts.manual_clock = 1;
  opts.manual_start_ms = start;
  FZ_CHECK(fy_ctx_new(&loop, &opts, &ctx) == 0, "fy_ctx_new");
  for (i = 0; i < NDL; i++)
    fy_deadline_init(ctx, &dl[i], on_deadline);
  for (i = 0; i < NLANES; i++) {
    fy__lane_init(ctx, &lanes[i]);
    lane_delay[i] = fz_time(z);
  }
  last_fire_at = start;
  while (!fz_done(z)) {
    i = (int)fz_below(z, NDL);
    switch (fz_u8(z) % 10) {
    case 8:
    case 9:
      lane_start(i, (int)fz_below(z, NLANES));
      break;
    case 0:
    case 1:
      ctx_start(i, fz_time(z), 0);
      break;
    case 2:
      ctx_start(i, fz_u64_edge(z), 1);
      break;
    case 3:
      ctx_stop(i);
      break;
    case 4:
      if (fz_u8(z) & 1) {
        fy_deadline_unref(&dl[i]);
        m[i].unref = 1;
      } else {
        fy_deadline_ref(&dl[i]);
        m[i].unref = 0;
      }
      break;
    default:
      rc = fy_ctx_advance(ctx, fz_time(z));
      FZ_CHECK(rc == 0, "advance: %d", rc);
      break;
    }
    check_ctx();
  }
  /* Half of the runs stop everything first; the rest close with deadlines
   * pending, which are dropped without firing. */
  if (fz_u8(z) & 1) {
    for (i = 0; i < NDL; i++)
      ctx_stop(i);
    check_ctx();
  }
  /* A lane closed with members pending drops them (a timeout policy has
   * none left when it goes); the others go with the context. */
  for (i = 0; i < NLANES; i++) {
    if (fz_u8(z) & 1)
      continue;
    fy__lane_close(&lanes[i]);
    for (int j = 0; j < NDL; j++)
      if (m[j].lane == i)
        m[j].pending = 0;
    check_ctx();
  }
  FZ_CHECK(fy_ctx_close(ctx, on_closed, &closed) == 0, "close");
  for (i = 0; i < 4 && !closed; i++)
    uv_run(&loop, UV_RUN_DEFAULT);
  FZ_CHECK(closed == 1, "context closed %d times", closed);
  FZ_CHECK(fz_alloc_live() == 0, "%ld blocks leaked", fz_alloc_live());
  FZ_CHECK(!uv_loop_alive(&loop), "handles left on the loop");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz_t z;
  fz_init(&z, data, size);
  Z = &z;
  memset(m, 0, sizeof(m));
  seq = 0;
  if (fz_u8(&z) & 1)
    run_ctx(&z);
  else
    run_pure(&z);
  return 0;
}
