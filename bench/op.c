/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * The cost of the pipeline core around one asynchronous operation.
 *
 * op.bare (bench/bare.h): no fortify.  What a user writes by hand: an
 *   operation as a struct of start/cancel function pointers, a request
 *   that records the attempt, and a completion callback called through a
 *   function pointer.  One op = start (the operation records the attempt)
 *   + completion from the bench loop.
 * op.pipeline.passthrough_K (K = 0, 1, 4): fy_call_start() on a pipeline of
 *   K fy_passthrough policies, real-clock context; the operation records
 *   its attempt and the bench loop completes it with fy_attempt_done(), so
 *   the outcome travels up and reaches the callback synchronously (no
 *   deferral).  Must not allocate once the freelists are warm.
 * op.pipeline.sync_0: 0 policies, manual-clock context; the operation
 *   completes inside start(), so the outcome is queued and delivered by
 *   fy_ctx_advance(ctx, 0): the deferral path.
 *
 * op.pipeline.passthrough_0.manual_clock (extra): passthrough_0 on a
 *   manual-clock context.  Neither reads a clock: latency is measured only
 *   when asked for.
 * op.pipeline.passthrough_0.timed: passthrough_0 on a context made with
 *   measure_calls, so every call reads uv_hrtime() twice for
 *   detail.elapsed_ns: what the latency costs when it is wanted.
 *
 * All of them form one set (bench.h): calibrated once each, then measured
 * in rounds, op.bare and every op.pipeline.* bench in turn in every round.
 * ratio_to_bare = ns_per_op / op.bare's ns_per_op (best against best), both
 * from this set; "baseline" names that op.bare line. */
#include "bare.h"

/* ---- fortify pipelines ------------------------------------------------- */

/* What a bench builds: set before setup(), kept by it. */
typedef struct fy_cfg_s {
  int sync;   /* the operation completes inside start() */
  int manual; /* manual-clock context */
  int timed;  /* measure_calls */
  size_t npolicies;
} fy_cfg_t;

typedef struct fy_state_s {
  fy_cfg_t cfg;
  uv_loop_t loop;
  fy_ctx_t *ctx;
  fy_pipeline_t *pl;
  fy_policy_t *policies[FY_PIPELINE_MAX];
  size_t npolicies;
  fy_call_t call;
  fy_attempt_t *held;
  uint64_t started;
  uint64_t done;
  int bad_status;
  int rc;
} fy_state_t;

static void on_closed(void *obj, void *user_data) {
  (void)obj;
  (*(int *)user_data)++;
}

static int held_start(fy_attempt_t *attempt, void *arg) {
  fy_state_t *st = arg;
  st->held = attempt;
  st->started++;
  return 0;
}

static int sync_start(fy_attempt_t *attempt, void *arg) {
  fy_state_t *st = arg;
  st->started++;
  return fy_attempt_done(attempt, 0);
}

static void op_cancel(fy_attempt_t *attempt, void *arg) {
  (void)arg;
  fy_attempt_done(attempt, UV_ECANCELED);
}

static const fy_op_t held_op = {held_start, op_cancel};
static const fy_op_t sync_op = {sync_start, op_cancel};

static void on_call_done(fy_call_t *call, int status) {
  fy_state_t *st = call->data;
  if (status != 0)
    st->bad_status = 1;
  st->done++;
}

static void setup(void *arg) {
  fy_state_t *st = arg;
  fy_cfg_t cfg = st->cfg;
  size_t npolicies = cfg.npolicies, i;
  fy_ctx_opts_t opts;
  memset(st, 0, sizeof(*st));
  st->cfg = cfg;
  memset(&opts, 0, sizeof(opts));
  opts.manual_clock = cfg.manual;
  opts.measure_calls = cfg.timed;
  BENCH_CHECK(uv_loop_init(&st->loop) == 0);
  BENCH_CHECK(fy_ctx_new(&st->loop, &opts, &st->ctx) == 0);
  for (i = 0; i < npolicies; i++)
    BENCH_CHECK(fy_passthrough_new(st->ctx, "pt", &st->policies[i]) == 0);
  st->npolicies = npolicies;
  BENCH_CHECK(fy_pipeline_new(st->ctx, st->policies, npolicies, &st->pl) == 0);
  st->call.data = st;
}

static void teardown(void *arg) {
  fy_state_t *st = arg;
  fy_ctx_stats_t stats;
  int closed = 0;
  fy_ctx_stats(st->ctx, &stats);
  BENCH_CHECK(stats.calls == 0 && stats.frames == 0 && stats.queued == 0);
  BENCH_CHECK(st->rc == 0 && st->bad_status == 0);
  BENCH_CHECK(st->done == st->started);
  /* Closing the context closes the pipeline and the policies. */
  BENCH_CHECK(fy_ctx_close(st->ctx, on_closed, &closed) == 0);
  BENCH_CHECK(uv_run(&st->loop, UV_RUN_DEFAULT) == 0);
  BENCH_CHECK(closed == 1);
  BENCH_CHECK(uv_loop_close(&st->loop) == 0);
}

/* Start the call, then complete the held attempt from here. */
static void held_loop(void *arg, uint64_t n) {
  fy_state_t *st = arg;
  uint64_t i;
  int rc = 0;
  for (i = 0; i < n; i++) {
    rc |= fy_call_start(&st->call, st->pl, &held_op, st, on_call_done);
    rc |= fy_attempt_done(st->held, 0);
  }
  st->rc |= rc;
}

/* The attempt completes inside start(): delivered by the advance. */
static void sync_loop(void *arg, uint64_t n) {
  fy_state_t *st = arg;
  uint64_t i;
  int rc = 0;
  for (i = 0; i < n; i++) {
    rc |= fy_call_start(&st->call, st->pl, &sync_op, st, on_call_done);
    rc |= fy_ctx_advance(st->ctx, 0);
  }
  st->rc |= rc;
}

static bench_set_t set;

static void report(const char *name, const bench_result_t *r, void *arg) {
  fy_state_t *st = arg;
  const bench_result_t *bare = bench_set_result(&set, "op.bare");
  if (bare != NULL)
    bench_print(name, r,
                ", \"policies\": %zu, \"clock\": \"%s\", "
                "\"baseline\": \"op.bare\", \"ratio_to_bare\": %.2f",
                st->cfg.npolicies, st->cfg.manual ? "manual" : "real",
                r->best_ns / bare->best_ns);
  else
    bench_print(name, r, ", \"policies\": %zu, \"clock\": \"%s\"",
                st->cfg.npolicies, st->cfg.manual ? "manual" : "real");
}

#define NPIPES 6
static bare_state_t bare;
static fy_state_t pipes[NPIPES];

static void add_pipeline(int i, const char *name, int sync, int manual,
                         int timed, size_t npolicies) {
  fy_state_t *st = &pipes[i];
  st->cfg.sync = sync;
  st->cfg.manual = manual;
  st->cfg.timed = timed;
  st->cfg.npolicies = npolicies;
  bench_add(&set, name, sync ? sync_loop : held_loop, st, setup, report,
            teardown);
}

int main(void) {
  bench_init();
  bench_set_init(&set);
  bench_add(&set, "op.bare", bare_loop, &bare, bare_setup, NULL,
            bare_teardown);
  add_pipeline(0, "op.pipeline.passthrough_0", 0, 0, 0, 0);
  add_pipeline(1, "op.pipeline.passthrough_0.timed", 0, 0, 1, 0);
  add_pipeline(2, "op.pipeline.passthrough_1", 0, 0, 0, 1);
  add_pipeline(3, "op.pipeline.passthrough_4", 0, 0, 0, 4);
  add_pipeline(4, "op.pipeline.sync_0", 1, 1, 0, 0);
  add_pipeline(5, "op.pipeline.passthrough_0.manual_clock", 0, 1, 0, 0);
  bench_set_run(&set);
  BENCH_CHECK(bench_live_blocks() == 0);
  return 0;
}
