/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * The timeout, driven by random limits, marks (progress) and time steps.
 * The first byte picks the subject:
 *
 * - the pure state machine (src/timeout.h): the next instant is the
 *   earliest armed limit or the enclosing deadline; a stage is due exactly
 *   from that instant on; on equal instants first-byte wins over idle over
 *   total, and the enclosing deadline only when strictly earlier; a mark
 *   disarms first-byte, restarts idle, never moves total; saturating sums
 *   never produce "never";
 * - standalone watches of a timeout policy on a manual-clock context: each
 *   start is called back exactly once, at the instant the state machine
 *   says, with the stage it says (or UV_ECANCELED when the policy closes);
 *   a stopped watch never is; callbacks restart, stop and mark watches. */
#include <string.h>
#include <fortify.h>

#include "fuzz.h"
#include "timeout_sm.h"

static fz_t *Z;

static uint64_t min64(uint64_t a, uint64_t b) {
  return a < b ? a : b;
}

static void check_sm(const fy__timeout_sm_t *sm, uint64_t t) {
  uint64_t own = min64(sm->first_byte_at, min64(sm->idle_at, sm->total_at));
  uint64_t next = fy__timeout_sm_next(sm);
  fy_timeout_stage_t due = fy__timeout_sm_due(sm, t), want;

  FZ_CHECK(next == min64(own, sm->parent_at), "next %llu",
           (unsigned long long)next);
  if (sm->parent_at < own)
    want =
        sm->parent_at <= t ? FY_TIMEOUT_STAGE_DEADLINE : FY_TIMEOUT_STAGE_NONE;
  else if (own > t)
    want = FY_TIMEOUT_STAGE_NONE;
  else if (sm->first_byte_at == own)
    want = FY_TIMEOUT_STAGE_FIRST_BYTE;
  else if (sm->idle_at == own)
    want = FY_TIMEOUT_STAGE_IDLE;
  else
    want = FY_TIMEOUT_STAGE_TOTAL;
  FZ_CHECK(due == want, "due %d at %llu, expected %d", due,
           (unsigned long long)t, want);
  FZ_CHECK((due != FY_TIMEOUT_STAGE_NONE) == (next <= t),
           "due %d but next %llu at %llu", due, (unsigned long long)next,
           (unsigned long long)t);
  FZ_CHECK(fy__timeout_sm_elapsed(sm, t) == (t > sm->start ? t - sm->start : 0),
           "elapsed");
  FZ_CHECK(fy__timeout_sm_limit(sm, FY_TIMEOUT_STAGE_TOTAL) == sm->total_ms &&
               fy__timeout_sm_limit(sm, FY_TIMEOUT_STAGE_IDLE) == sm->idle_ms &&
               fy__timeout_sm_limit(sm, FY_TIMEOUT_STAGE_NONE) == 0,
           "limits");
}

static void run_pure(fz_t *z) {
  fy__timeout_sm_t sm;
  uint64_t now = fz_u8(z) & 1 ? fz_u32(z) : fz_u64_edge(z);
  uint64_t total = fz_u8(z) & 1 ? fz_time(z) : fz_u64_edge(z);
  uint64_t fb = fz_u8(z) & 1 ? 0 : fz_time(z);
  uint64_t idle = fz_u8(z) & 1 ? 0 : fz_time(z);
  uint64_t parent = fz_u8(z) & 1 ? FY_TIME_NEVER : now + fz_time(z);
  uint64_t total_at;

  if (now == FY_TIME_NEVER)
    now--;
  fy__timeout_sm_start(&sm, now, total, fb, idle, parent);
  total_at = sm.total_at;
  FZ_CHECK(sm.total_at == (total ? fy_time_add(now, total) : FY_TIME_NEVER),
           "total_at");
  FZ_CHECK(sm.idle_at == (idle ? fy_time_add(now, idle) : FY_TIME_NEVER),
           "idle armed at start (W29)");
  while (!fz_done(z)) {
    uint64_t step = fz_time(z), a = fz_u64_edge(z), b = fz_u64_edge(z);
    uint64_t sum = fy_time_add(a, b);
    FZ_CHECK(sum != FY_TIME_NEVER && (sum >= a || a == FY_TIME_NEVER),
             "add(%llu, %llu) = %llu", (unsigned long long)a,
             (unsigned long long)b, (unsigned long long)sum);
    if (fz_u8(z) & 1) {
      fy_timeout_stage_t before = fy__timeout_sm_due(&sm, now);
      now = fy_time_add(now, step);
      /* Without a mark, what was due stays due. */
      if (before != FY_TIMEOUT_STAGE_NONE)
        FZ_CHECK(fy__timeout_sm_due(&sm, now) != FY_TIMEOUT_STAGE_NONE,
                 "a due stage went away");
    } else {
      uint64_t marks = sm.marks;
      fy__timeout_sm_mark(&sm, now);
      FZ_CHECK(sm.marks == marks + 1, "marks");
      FZ_CHECK(sm.first_byte_at == FY_TIME_NEVER, "first byte armed");
      FZ_CHECK(sm.idle_at ==
                   (idle ? fy_time_add(now, idle) : FY_TIME_NEVER),
               "idle not restarted by a mark");
      FZ_CHECK(sm.total_at == total_at, "a mark moved the total limit");
    }
    check_sm(&sm, now);
  }
}

/* ---- standalone watches -------------------------------------------------- */

#define NWATCH 8

static fy_ctx_t *ctx;
static fy_timeout_t *tmo;
static fy_timeout_watch_t W[NWATCH];
static fy__timeout_sm_t M[NWATCH]; /* the model of each active watch */
static int active[NWATCH];
static unsigned on_timeout_runs, timeouts_seen;
static int policy_closing;
static fy_timeout_opts_t TO; /* the policy's limits */

static void watch_cb(fy_timeout_watch_t *w, int status,
                     fy_timeout_stage_t stage, uint64_t elapsed_ms,
                     uint64_t limit_ms, void *ud);

static void model_start(int i, uint64_t override) {
  int rc;
  uint64_t now = fy_ctx_now(ctx);
  rc = fy_timeout_watch_start(tmo, &W[i], override, watch_cb, &active[i]);
  if (policy_closing) {
    FZ_CHECK(rc == FY_ECLOSED, "watch start while closing: %d", rc);
    return;
  }
  if (override > FY_TIMEOUT_MAX_MS) {
    FZ_CHECK(rc == UV_EINVAL, "override %llu accepted",
             (unsigned long long) override);
    return;
  }
  FZ_CHECK(rc == 0, "watch start: %d", rc);
  fy__timeout_sm_start(&M[i], now, override ? override : TO.timeout_ms,
                       TO.first_byte_ms, TO.idle_ms, FY_TIME_NEVER);
  active[i] = 1;
  FZ_CHECK(fy_timeout_watch_is_active(&W[i]), "started watch inactive");
}

static void watch_cb(fy_timeout_watch_t *w, int status,
                     fy_timeout_stage_t stage, uint64_t elapsed_ms,
                     uint64_t limit_ms, void *ud) {
  int i = (int)(w - W);
  uint64_t now = fy_ctx_now(ctx);
  (void)ud;
  FZ_CHECK(active[i], "watch %d called back while inactive", i);
  FZ_CHECK(!fy_timeout_watch_is_active(w), "active inside its callback");
  active[i] = 0;
  if (status == UV_ETIMEDOUT) {
    FZ_CHECK(fy__timeout_sm_next(&M[i]) == now,
             "watch %d fired at %llu, due at %llu", i, (unsigned long long)now,
             (unsigned long long)fy__timeout_sm_next(&M[i]));
    FZ_CHECK(stage == fy__timeout_sm_due(&M[i], now), "stage %d", stage);
    FZ_CHECK(limit_ms == fy__timeout_sm_limit(&M[i], stage), "limit");
    FZ_CHECK(elapsed_ms == fy__timeout_sm_elapsed(&M[i], now), "elapsed");
    FZ_CHECK(on_timeout_runs == ++timeouts_seen, "on_timeout not run first");
  } else {
    FZ_CHECK(status == UV_ECANCELED && stage == FY_TIMEOUT_STAGE_NONE &&
                 policy_closing,
             "status %d stage %d", status, stage);
  }
  switch (fz_u8(Z) % 6) {
  case 1:
    model_start(i, fz_u8(Z) & 1 ? 0 : fz_time(Z)); /* again */
    break;
  case 2: {
    int j = (int)fz_below(Z, NWATCH);
    fy_timeout_watch_stop(&W[j]);
    active[j] = 0;
    break;
  }
  case 3: {
    int j = (int)fz_below(Z, NWATCH);
    fy_timeout_watch_mark(&W[j]);
    if (active[j])
      fy__timeout_sm_mark(&M[j], now);
    break;
  }
  default:
    break;
  }
}

static void on_timeout(fy_timeout_t *t, fy_call_t *call,
                       fy_timeout_stage_t stage, uint64_t elapsed_ms,
                       uint64_t limit_ms, void *ud) {
  (void)t;
  (void)elapsed_ms;
  (void)limit_ms;
  (void)ud;
  FZ_CHECK(call == NULL && stage != FY_TIMEOUT_STAGE_NONE &&
               stage != FY_TIMEOUT_STAGE_DEADLINE,
           "on_timeout for a watch: call %p stage %d", (void *)call, stage);
  on_timeout_runs++;
}

static void on_closed(void *obj, void *ud) {
  (void)obj;
  ++*(int *)ud;
}

static void run_watches(fz_t *z) {
  static uv_loop_t loop;
  static int loop_ready;
  fy_ctx_opts_t copts;
  fy_timeout_opts_t *o = &TO;
  int i, closed = 0, tclosed = 0;

  if (!loop_ready) {
    FZ_CHECK(uv_loop_init(&loop) == 0, "uv_loop_init");
    loop_ready = 1;
  }
  fz_alloc_install();
  fy_timeout_opts_init(o);
  o->timeout_ms = fz_u8(z) & 1 ? fz_time(z) : 0;
  o->first_byte_ms = fz_u8(z) & 1 ? fz_time(z) : 0;
  o->idle_ms = fz_u8(z) & 1 ? fz_time(z) : 0;
  o->on_timeout = on_timeout;
  if (fy__timeout_opts_check(o) != 0)
    return;
  memset(&copts, 0, sizeof(copts));
  copts.manual_clock = 1;
  copts.manual_start_ms = fz_u32(z);
  FZ_CHECK(fy_ctx_new(&loop, &copts, &ctx) == 0, "fy_ctx_new");
  FZ_CHECK(fy_timeout_new(ctx, o, &tmo) == 0, "fy_timeout_new");
  memset(W, 0, sizeof(W));
  memset(active, 0, sizeof(active));
  on_timeout_runs = timeouts_seen = 0;
  policy_closing = 0;

  while (!fz_done(z)) {
    uint64_t now;
    int advanced = 0;
    i = (int)fz_below(z, NWATCH);
    switch (fz_u8(z) % 6) {
    case 0:
      if (!active[i])
        model_start(i, fz_u8(z) & 1 ? 0 : fz_u64_edge(z) % 100000);
      break;
    case 1:
      fy_timeout_watch_mark(&W[i]);
      if (active[i])
        fy__timeout_sm_mark(&M[i], fy_ctx_now(ctx));
      break;
    case 2:
      fy_timeout_watch_stop(&W[i]);
      active[i] = 0;
      break;
    default:
      FZ_CHECK(fy_ctx_advance(ctx, fz_time(z)) == 0, "advance");
      advanced = 1;
      break;
    }
    now = fy_ctx_now(ctx);
    for (i = 0; i < NWATCH; i++) {
      FZ_CHECK(fy_timeout_watch_is_active(&W[i]) == active[i],
               "watch %d active %d, model %d", i,
               fy_timeout_watch_is_active(&W[i]), active[i]);
      if (!active[i])
        continue;
      /* Due now is fine until the loop turns (never inside start). */
      if (advanced)
        FZ_CHECK(fy__timeout_sm_next(&M[i]) > now, "watch %d overdue", i);
      FZ_CHECK(fy_timeout_watch_remaining(&W[i]) ==
                   (M[i].total_at == FY_TIME_NEVER ? FY_TIME_NEVER
                                                   : M[i].total_at - now),
               "remaining");
    }
  }
  /* Closing calls back every active watch with UV_ECANCELED (from the
   * close task: the next turn of the loop). */
  policy_closing = 1;
  FZ_CHECK(fy_timeout_close(tmo, on_closed, &tclosed) == 0, "close");
  FZ_CHECK(fy_ctx_advance(ctx, 0) == 0, "advance");
  for (i = 0; i < NWATCH; i++)
    FZ_CHECK(!active[i], "watch %d not called back by the close", i);
  FZ_CHECK(fy_ctx_close(ctx, on_closed, &closed) == 0, "ctx close");
  for (i = 0; i < 4 && !closed; i++)
    uv_run(&loop, UV_RUN_DEFAULT);
  FZ_CHECK(closed == 1 && tclosed == 1, "closed %d / %d", closed, tclosed);
  FZ_CHECK(fz_alloc_live() == 0, "%ld blocks leaked", fz_alloc_live());
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz_t z;
  int i;
  fz_init(&z, data, size);
  Z = &z;
  for (i = -2; i < 8; i++)
    FZ_CHECK(fy_timeout_stage_name((fy_timeout_stage_t)i) != NULL, "name");
  if (fz_u8(&z) & 1)
    run_watches(&z);
  else
    run_pure(&z);
  return 0;
}
