/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * The cost of each pattern on its fast path, alone and composed, on a
 * real-clock context (what users run).  Same method as bench/op.c: the
 * operation records its attempt, the bench loop completes it with
 * fy_attempt_done(), so the outcome travels up and reaches the callback
 * synchronously.  One op = fy_call_start() + fy_attempt_done() + the
 * callback.  Compare with op.bare and op.pipeline.passthrough_0.
 *
 * Fast paths, one policy with its default options:
 *   breaker.closed        a closed breaker admits and records a success
 *   retry.no_retry        the first try succeeds
 *   bulkhead.free_slot    a slot is free (max_concurrent 10)
 *   timeout.set_cancel    the deadline is armed, then disarmed (30 s)
 *   fallback.primary_ok   the primary succeeds, the fallback never runs
 *   pipeline.5            the default order (presets.h): bulkhead -> total
 *                         timeout -> retry -> breaker -> per-try timeout
 * The synchronous forms, without a pipeline:
 *   breaker.closed.sync   fy_breaker_acquire() + fy_breaker_record(0)
 *   bulkhead.free_slot.sync  fy_bulkhead_try_acquire() + release()
 *   timeout.watch         fy_timeout_watch_start() + fy_timeout_watch_stop()
 *
 * Scaling: the cost per call with N other calls in flight (N = 100, 10k,
 * 100k), so any growth with N is visible:
 *   pipeline.timeout.inflight_N   N calls wait in a timeout (N deadlines
 *                                 pending); one op = one more call through.
 *   pipeline.5.inflight_N         N calls in flight through pipeline.5 (2N
 *                                 deadlines pending, N bulkhead slots held);
 *                                 one op = one more call through it.
 *   pipeline.bulkhead.inflight_N  max_concurrent 1 and N calls waiting in
 *                                 the bulkhead's queue (each with a 60 s
 *                                 queue deadline); one op = the running call
 *                                 completes, the head of the queue takes the
 *                                 slot and starts, the finished call joins
 *                                 the tail again (from its callback).
 *
 * Two sets of benches (bench.h), each measured interleaved in rounds:
 *   - the compared set: op.bare.patterns (op.bare, bench/bare.h, measured
 *     here), op.pipeline.passthrough_0.patterns (op.pipeline.passthrough_0
 *     of bench/op.c, measured here), every fast path and every synchronous
 *     form, so that each pattern / op.bare ratio comes from benches that
 *     took turns all along the same rounds.  Their lines name that op.bare
 *     as "baseline", which scripts/bench-summary.sh divides by;
 *   - the scaling set: the nine *.inflight_N benches (flatness across N).
 *
 * allocs_per_op counts the fortify allocator hook over the timed samples. */
#include "bare.h"

#define NSIZES 3
static const size_t sizes[NSIZES] = {100, 10000, 100000};

/* ---- the harness --------------------------------------------------------- */

typedef struct pat_s pat_t;

/* What a bench measures.  Set before pat_setup(), kept by it. */
typedef enum pat_kind_e {
  PAT_HELD,  /* held_loop: one call through the pipeline */
  PAT_SYNC,  /* a synchronous form, no pipeline */
  PAT_ROTATE /* rotate_loop: the bulkhead queue rotation */
} pat_kind_t;

typedef struct pat_cfg_s {
  pat_kind_t kind;
  const char *shape;               /* "pipeline" member of the line */
  void (*build)(pat_t *st);        /* policies, pipeline, calls in flight */
  fy_policy_t *(*make)(pat_t *st); /* the one policy of build_one */
  size_t n;                        /* calls in flight (scaling) */
  const bench_set_t *set;          /* the set holding its baseline */
} pat_cfg_t;

struct pat_s {
  pat_cfg_t cfg;
  uv_loop_t loop;
  fy_ctx_t *ctx;
  fy_pipeline_t *pl;
  fy_call_t call;       /* the measured call */
  fy_attempt_t *held;   /* its attempt under way */
  uint64_t started;
  uint64_t done;
  int bad_status;
  int rc;
  /* Calls in flight around the measured one. */
  fy_call_t *bg;
  size_t nbg;
  uint64_t bg_done;
  int bg_restart;       /* the queue rotation: restart from the callback */
  /* Policies, closed with the context. */
  fy_breaker_t *breaker;
  fy_bulkhead_t *bulkhead;
  fy_timeout_t *timeout;
  /* The synchronous forms. */
  fy_breaker_permit_t permit;
  fy_timeout_watch_t watch;
  uint64_t fired;
};

static void on_closed(void *obj, void *user_data) {
  (void)obj;
  (*(int *)user_data)++;
}

static int held_start(fy_attempt_t *attempt, void *arg) {
  pat_t *st = arg;
  st->held = attempt;
  st->started++;
  return 0;
}

static void op_cancel(fy_attempt_t *attempt, void *arg) {
  (void)arg;
  fy_attempt_done(attempt, UV_ECANCELED);
}

static const fy_op_t held_op = {held_start, op_cancel};

/* A background attempt just waits; close cancels it. */
static int idle_start(fy_attempt_t *attempt, void *arg) {
  (void)attempt;
  (void)arg;
  return 0;
}

static const fy_op_t idle_op = {idle_start, op_cancel};

static void on_call_done(fy_call_t *call, int status) {
  pat_t *st = call->data;
  if (status != 0)
    st->bad_status = 1;
  st->done++;
}

static void on_bg_done(fy_call_t *call, int status) {
  pat_t *st = call->data;
  st->bg_done++;
  if (st->bg_restart && status == 0)
    st->rc |= fy_call_start(call, st->pl, &held_op, st, on_bg_done);
}

static void setup(pat_t *st) {
  pat_cfg_t cfg = st->cfg;
  memset(st, 0, sizeof(*st));
  st->cfg = cfg;
  BENCH_CHECK(uv_loop_init(&st->loop) == 0);
  BENCH_CHECK(fy_ctx_new(&st->loop, NULL, &st->ctx) == 0);
  st->call.data = st;
}

static void make_pipeline(pat_t *st, fy_policy_t **layers, size_t n) {
  BENCH_CHECK(fy_pipeline_new(st->ctx, layers, n, &st->pl) == 0);
}

/* Start |n| calls that stay in flight (op |op|). */
static void start_background(pat_t *st, size_t n, const fy_op_t *op) {
  size_t i;
  st->bg = calloc(n, sizeof(*st->bg));
  BENCH_CHECK(st->bg != NULL);
  st->nbg = n;
  for (i = 0; i < n; i++) {
    st->bg[i].data = st;
    BENCH_CHECK(fy_call_start(&st->bg[i], st->pl, op, st, on_bg_done) == 0);
  }
}

static void teardown(pat_t *st) {
  fy_ctx_stats_t stats;
  int closed = 0;
  fy_ctx_stats(st->ctx, &stats);
  BENCH_CHECK(stats.calls == st->nbg);
  BENCH_CHECK(stats.queued == 0);
  BENCH_CHECK(st->rc == 0 && st->bad_status == 0);
  BENCH_CHECK(st->done == st->started || st->bg_restart);
  st->bg_restart = 0;
  /* Closing the context cancels what is in flight and closes everything. */
  BENCH_CHECK(fy_ctx_close(st->ctx, on_closed, &closed) == 0);
  BENCH_CHECK(uv_run(&st->loop, UV_RUN_DEFAULT) == 0);
  BENCH_CHECK(closed == 1);
  BENCH_CHECK(uv_loop_close(&st->loop) == 0);
  free(st->bg);
}

/* Start the call, then complete its attempt from here: the outcome climbs
 * the pipeline and the callback runs before fy_attempt_done() returns. */
static void held_loop(void *arg, uint64_t n) {
  pat_t *st = arg;
  uint64_t i;
  int rc = 0;
  for (i = 0; i < n; i++) {
    rc |= fy_call_start(&st->call, st->pl, &held_op, st, on_call_done);
    rc |= fy_attempt_done(st->held, 0);
  }
  st->rc |= rc;
}

/* ---- policies with their defaults -------------------------------------- */

static fy_policy_t *new_breaker(pat_t *st) {
  BENCH_CHECK(fy_breaker_new(st->ctx, NULL, &st->breaker) == 0);
  return fy_breaker_policy(st->breaker);
}

static fy_policy_t *new_retry(pat_t *st) {
  fy_retry_t *r;
  BENCH_CHECK(fy_retry_new(st->ctx, NULL, &r) == 0);
  return fy_retry_policy(r);
}

static fy_policy_t *new_bulkhead(pat_t *st, uint32_t max_concurrent,
                                 uint32_t max_queue, uint64_t queue_ms) {
  fy_bulkhead_opts_t o;
  fy_bulkhead_opts_init(&o);
  if (max_concurrent != 0)
    o.max_concurrent = max_concurrent;
  o.max_queue = max_queue;
  o.queue_timeout_ms = queue_ms;
  BENCH_CHECK(fy_bulkhead_new(st->ctx, &o, &st->bulkhead) == 0);
  return fy_bulkhead_policy(st->bulkhead);
}

static fy_policy_t *new_timeout(pat_t *st, fy_timeout_scope_t scope,
                                uint64_t ms) {
  fy_timeout_opts_t o;
  fy_timeout_t *t;
  fy_timeout_opts_init(&o);
  o.scope = scope;
  o.timeout_ms = ms;
  BENCH_CHECK(fy_timeout_new(st->ctx, &o, &t) == 0);
  st->timeout = t;
  return fy_timeout_policy(t);
}

static int fb_start(fy_attempt_t *attempt, void *arg) {
  (void)arg;
  return fy_attempt_done(attempt, 0);
}

static const fy_op_t fb_op = {fb_start, NULL};

static fy_policy_t *new_fallback(pat_t *st) {
  fy_fallback_opts_t o;
  fy_fallback_t *fb;
  fy_fallback_opts_init(&o);
  o.op = &fb_op;
  BENCH_CHECK(fy_fallback_new(st->ctx, &o, &fb) == 0);
  return fy_fallback_policy(fb);
}

/* bulkhead -> total timeout -> retry -> breaker -> per-try timeout.  The
 * bulkhead admits |max_concurrent| (0: its default). */
static void make_pipeline5(pat_t *st, uint32_t max_concurrent) {
  fy_policy_t *layers[5];
  layers[0] = new_bulkhead(st, max_concurrent, 0, 0);
  layers[1] = new_timeout(st, FY_TIMEOUT_TOTAL, 30000);
  layers[2] = new_retry(st);
  layers[3] = new_breaker(st);
  layers[4] = new_timeout(st, FY_TIMEOUT_PER_TRY, 10000);
  make_pipeline(st, layers, 5);
}

/* ---- what each bench builds ------------------------------------------ */

static fy_policy_t *make_bulkhead(pat_t *st) {
  return new_bulkhead(st, 0, 0, 0);
}

static fy_policy_t *make_timeout(pat_t *st) {
  return new_timeout(st, FY_TIMEOUT_TOTAL, FY_TIMEOUT_DEFAULT_MS);
}

/* One policy, fast path. */
static void build_one(pat_t *st) {
  fy_policy_t *p = st->cfg.make(st);
  make_pipeline(st, &p, 1);
}

/* No policy: op.pipeline.passthrough_0 of bench/op.c. */
static void build_empty(pat_t *st) {
  fy_policy_t *none[1] = {NULL};
  make_pipeline(st, none, 0);
}

static void build_pipeline5(pat_t *st) {
  make_pipeline5(st, 0);
}

/* The synchronous forms use the policies without a pipeline. */
static void build_sync(pat_t *st) {
  new_breaker(st);
  new_bulkhead(st, 0, 0, 0);
  new_timeout(st, FY_TIMEOUT_TOTAL, FY_TIMEOUT_DEFAULT_MS);
}

static void build_timeout_inflight(pat_t *st) {
  size_t n = st->cfg.n;
  fy_policy_t *p = new_timeout(st, FY_TIMEOUT_TOTAL, FY_TIMEOUT_DEFAULT_MS);
  make_pipeline(st, &p, 1);
  start_background(st, n, &idle_op);
  BENCH_CHECK(fy_ctx_pending_deadlines(st->ctx) == n);
}

static void build_pipeline5_inflight(pat_t *st) {
  size_t n = st->cfg.n;
  make_pipeline5(st, (uint32_t)n + 1);
  start_background(st, n, &idle_op);
  BENCH_CHECK(fy_bulkhead_active(st->bulkhead) == n);
}

/* The running call's attempt is st->held (held_op): completing it hands
 * the slot to the head of the queue, whose held_op start replaces
 * st->held; the finished call re-joins the queue from its callback. */
static void build_bulkhead_inflight(pat_t *st) {
  size_t n = st->cfg.n;
  fy_policy_t *p = new_bulkhead(st, 1, (uint32_t)n, 60000);
  make_pipeline(st, &p, 1);
  /* n + 1 calls: one runs, n wait. */
  start_background(st, n + 1, &held_op);
  BENCH_CHECK(fy_bulkhead_active(st->bulkhead) == 1);
  BENCH_CHECK(fy_bulkhead_queued(st->bulkhead) == n);
  st->bg_restart = 1;
}

/* ---- timed loops besides held_loop ----------------------------------- */

static void breaker_sync_loop(void *arg, uint64_t n) {
  pat_t *st = arg;
  fy_breaker_t *b = st->breaker;
  uint64_t i;
  int rc = 0;
  for (i = 0; i < n; i++) {
    rc |= fy_breaker_acquire(b, &st->permit, NULL);
    fy_breaker_record(b, &st->permit, 0);
  }
  st->rc |= rc;
}

static void bulkhead_sync_loop(void *arg, uint64_t n) {
  pat_t *st = arg;
  fy_bulkhead_t *bh = st->bulkhead;
  uint64_t i;
  int rc = 0;
  for (i = 0; i < n; i++) {
    rc |= fy_bulkhead_try_acquire(bh);
    fy_bulkhead_release(bh);
  }
  st->rc |= rc;
}

static void on_watch(fy_timeout_watch_t *w, int status,
                     fy_timeout_stage_t stage, uint64_t elapsed_ms,
                     uint64_t limit_ms, void *user_data) {
  pat_t *st = user_data;
  (void)w;
  (void)status;
  (void)stage;
  (void)elapsed_ms;
  (void)limit_ms;
  st->fired++;
}

static void watch_loop(void *arg, uint64_t n) {
  pat_t *st = arg;
  fy_timeout_t *t = st->timeout;
  uint64_t i;
  int rc = 0;
  for (i = 0; i < n; i++) {
    rc |= fy_timeout_watch_start(t, &st->watch, 0, on_watch, st);
    fy_timeout_watch_stop(&st->watch);
  }
  st->rc |= rc;
}

static void rotate_loop(void *arg, uint64_t n) {
  pat_t *st = arg;
  uint64_t i;
  int rc = 0;
  for (i = 0; i < n; i++)
    rc |= fy_attempt_done(st->held, 0);
  st->rc |= rc;
}

/* ---- bench_add() hooks ----------------------------------------------- */

#define BARE "op.bare.patterns"

static void pat_setup(void *arg) {
  pat_t *st = arg;
  setup(st);
  st->cfg.build(st);
}

/* The checks after the rounds, then the line. */
static void pat_report(const char *name, const bench_result_t *r, void *arg) {
  pat_t *st = arg;
  const bench_result_t *bare = NULL;
  fy_ctx_stats_t stats;
  char base[96] = "";
  if (st->cfg.set != NULL)
    bare = bench_set_result(st->cfg.set, BARE);
  if (bare != NULL)
    snprintf(base, sizeof(base),
             ", \"baseline\": \"" BARE "\", \"ratio_to_bare\": %.2f",
             r->best_ns / bare->best_ns);
  fy_ctx_stats(st->ctx, &stats);
  switch (st->cfg.kind) {
  case PAT_HELD:
    bench_print(name, r,
                ", \"pipeline\": \"%s\", \"inflight\": %zu, \"deadlines\": "
                "%zu%s",
                st->cfg.shape, st->nbg, stats.deadlines, base);
    break;
  case PAT_SYNC:
    BENCH_CHECK(st->rc == 0 && st->fired == 0);
    BENCH_CHECK(fy_bulkhead_active(st->bulkhead) == 0);
    BENCH_CHECK(fy_ctx_pending_deadlines(st->ctx) == 0);
    bench_print(name, r, ", \"pipeline\": \"none\"%s", base);
    break;
  case PAT_ROTATE:
    BENCH_CHECK(fy_bulkhead_queued(st->bulkhead) == st->cfg.n);
    bench_print(name, r,
                ", \"pipeline\": \"bulkhead\", \"inflight\": %zu, \"queued\": "
                "%zu, \"deadlines\": %zu%s",
                st->nbg, fy_bulkhead_queued(st->bulkhead), stats.deadlines,
                base);
    break;
  }
}

static void pat_teardown(void *arg) {
  pat_t *st = arg;
  teardown(st);
  /* Closing cancelled every call left in flight (the rotation restarts
   * its calls, so it counts more). */
  if (st->cfg.kind == PAT_HELD)
    BENCH_CHECK(st->bg_done == st->nbg);
}

/* ---- the sets -------------------------------------------------------- */

#define NFAST 11
#define NSCALE (3 * NSIZES)

static bench_set_t fast_set, scale_set;
static bare_state_t bare;
static pat_t fast[NFAST], scale[NSCALE];
static char scale_names[NSCALE][64];

static void add(bench_set_t *set, pat_t *st, const char *name, bench_fn loop,
                pat_kind_t kind, const char *shape, void (*build)(pat_t *),
                fy_policy_t *(*make)(pat_t *), size_t n) {
  st->cfg.kind = kind;
  st->cfg.shape = shape;
  st->cfg.build = build;
  st->cfg.make = make;
  st->cfg.n = n;
  st->cfg.set = set == &fast_set ? set : NULL;
  bench_add(set, name, loop, st, pat_setup, pat_report, pat_teardown);
}

int main(void) {
  static const char *p5 = "bulkhead>timeout>retry>breaker>timeout";
  pat_t *f = fast, *sc = scale;
  size_t i;
  bench_init();

  bench_set_init(&fast_set);
  bench_add(&fast_set, BARE, bare_loop, &bare, bare_setup, NULL,
            bare_teardown);
  add(&fast_set, f++, "breaker.closed", held_loop, PAT_HELD,
      "breaker.closed", build_one, new_breaker, 0);
  add(&fast_set, f++, "retry.no_retry", held_loop, PAT_HELD, "retry.no_retry",
      build_one, new_retry, 0);
  add(&fast_set, f++, "bulkhead.free_slot", held_loop, PAT_HELD,
      "bulkhead.free_slot", build_one, make_bulkhead, 0);
  add(&fast_set, f++, "timeout.set_cancel", held_loop, PAT_HELD,
      "timeout.set_cancel", build_one, make_timeout, 0);
  add(&fast_set, f++, "fallback.primary_ok", held_loop, PAT_HELD,
      "fallback.primary_ok", build_one, new_fallback, 0);
  add(&fast_set, f++, "pipeline.5", held_loop, PAT_HELD, p5, build_pipeline5,
      NULL, 0);
  add(&fast_set, f++, "breaker.closed.sync", breaker_sync_loop, PAT_SYNC,
      NULL, build_sync, NULL, 0);
  add(&fast_set, f++, "bulkhead.free_slot.sync", bulkhead_sync_loop, PAT_SYNC,
      NULL, build_sync, NULL, 0);
  add(&fast_set, f++, "timeout.watch", watch_loop, PAT_SYNC, NULL, build_sync,
      NULL, 0);
  add(&fast_set, f++, "op.pipeline.passthrough_0.patterns", held_loop,
      PAT_HELD, "empty", build_empty, NULL, 0);
  BENCH_CHECK(f - fast <= NFAST);
  bench_set_run(&fast_set);

  bench_set_init(&scale_set);
  for (i = 0; i < NSIZES; i++) {
    snprintf(scale_names[sc - scale], sizeof(scale_names[0]),
             "pipeline.timeout.inflight_%zu", sizes[i]);
    add(&scale_set, sc, scale_names[sc - scale], held_loop, PAT_HELD,
        "timeout", build_timeout_inflight, NULL, sizes[i]);
    sc++;
  }
  for (i = 0; i < NSIZES; i++) {
    snprintf(scale_names[sc - scale], sizeof(scale_names[0]),
             "pipeline.bulkhead.inflight_%zu", sizes[i]);
    add(&scale_set, sc, scale_names[sc - scale], rotate_loop, PAT_ROTATE,
        "bulkhead", build_bulkhead_inflight, NULL, sizes[i]);
    sc++;
  }
  for (i = 0; i < NSIZES; i++) {
    snprintf(scale_names[sc - scale], sizeof(scale_names[0]),
             "pipeline.5.inflight_%zu", sizes[i]);
    add(&scale_set, sc, scale_names[sc - scale], held_loop, PAT_HELD, p5,
        build_pipeline5_inflight, NULL, sizes[i]);
    sc++;
  }
  bench_set_run(&scale_set);

  BENCH_CHECK(bench_live_blocks() == 0);
  return 0;
}
