/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * Deadlines against raw libuv timers.
 *
 * timer.fy.pending_N: N fy deadlines pending on a real-clock context, at
 *   random expiries 1-60 s ahead; one op is fy_deadline_start() (random
 *   1..60000 ms) + fy_deadline_stop() on one more deadline.  The wheel makes
 *   this O(1): the cost should not depend on N.
 * timer.uv.pending_N: the same with uv_timer_t handles (a binary heap in
 *   libuv: O(log N)): uv_timer_start() + uv_timer_stop() on one more timer.
 * timer.fy.fire_100000: 100k deadlines at random expiries within 1000 ms on
 *   a manual-clock context, then fy_ctx_advance() through them; one op is
 *   one fired deadline (cascades, ready list, callback).
 *
 * The six pending_N benches form one set (bench.h): they take turns in
 * every round.  fire_100000 does not fit a timed loop of n ops (one
 * sample is a whole population started and fired), so it keeps its own
 * loop of consecutive samples after the set: "rounds": 1, and its median
 * is over the samples.
 *
 * Nothing runs the loop while measuring; the loops are run at the end only
 * to close every handle.  allocs_per_op counts the fortify allocator hook
 * over the timed repetitions (libuv's allocations are not counted). */
#include "bench.h"

#define SEED 0x5eed5eedf0f1f2f3ull

/* The measured start/stop pairs cycle through these timeouts, precomputed
 * so that both variants pay the same (nothing) for randomness. */
#define NTMO 4096 /* power of two */
static uint64_t tmo[NTMO];

static void on_closed(void *obj, void *user_data) {
  (void)obj;
  *(int *)user_data = 1;
}

static void on_deadline(fy_deadline_t *d) {
  (void)d;
}

static void on_uv_timer(uv_timer_t *t) {
  (void)t;
}

/* ---- fy: start + stop with N pending ----------------------------------- */

typedef struct fy_pending_s {
  uv_loop_t loop;
  fy_ctx_t *ctx;
  fy_deadline_t *pending;
  size_t n;
  fy_deadline_t probe;
  uint64_t seed; /* of the pending expiries */
  int rc;
} fy_pending_t;

static void fy_pair_loop(void *arg, uint64_t n) {
  fy_pending_t *b = arg;
  fy_deadline_t *d = &b->probe;
  uint64_t i;
  int rc = 0;
  for (i = 0; i < n; i++) {
    rc |= fy_deadline_start(d, tmo[i & (NTMO - 1)]);
    fy_deadline_stop(d);
  }
  b->rc |= rc;
}

static void fy_pending_setup(void *arg) {
  fy_pending_t *b = arg;
  bench_rng_t rng;
  size_t i, npending = b->n;

  bench_rng_seed(&rng, b->seed);
  BENCH_CHECK(uv_loop_init(&b->loop) == 0);
  BENCH_CHECK(fy_ctx_new(&b->loop, NULL, &b->ctx) == 0);
  b->pending = malloc(npending * sizeof(*b->pending));
  BENCH_CHECK(b->pending != NULL);
  for (i = 0; i < npending; i++) {
    fy_deadline_init(b->ctx, &b->pending[i], on_deadline);
    BENCH_CHECK(fy_deadline_start(&b->pending[i],
                                  bench_rng_range(&rng, 1000, 60000)) == 0);
  }
  fy_deadline_init(b->ctx, &b->probe, on_deadline);
  BENCH_CHECK(fy_ctx_pending_deadlines(b->ctx) == npending);
}

static void fy_pending_report(const char *name, const bench_result_t *r,
                              void *arg) {
  fy_pending_t *b = arg;
  BENCH_CHECK(b->rc == 0);
  BENCH_CHECK(fy_ctx_pending_deadlines(b->ctx) == b->n);
  bench_print(name, r, ", \"pending\": %zu", fy_ctx_pending_deadlines(b->ctx));
}

static void fy_pending_teardown(void *arg) {
  fy_pending_t *b = arg;
  size_t i;
  int closed = 0;
  for (i = 0; i < b->n; i++)
    fy_deadline_stop(&b->pending[i]);
  BENCH_CHECK(fy_ctx_close(b->ctx, on_closed, &closed) == 0);
  BENCH_CHECK(uv_run(&b->loop, UV_RUN_DEFAULT) == 0);
  BENCH_CHECK(closed);
  BENCH_CHECK(uv_loop_close(&b->loop) == 0);
  free(b->pending);
}

/* ---- uv: start + stop with N pending ----------------------------------- */

typedef struct uv_pending_s {
  uv_loop_t loop;
  uv_timer_t *pending;
  size_t n;
  uv_timer_t probe;
  uint64_t seed; /* of the pending expiries */
  int rc;
} uv_pending_t;

static void uv_pair_loop(void *arg, uint64_t n) {
  uv_pending_t *b = arg;
  uv_timer_t *t = &b->probe;
  uint64_t i;
  int rc = 0;
  for (i = 0; i < n; i++) {
    rc |= uv_timer_start(t, on_uv_timer, tmo[i & (NTMO - 1)], 0);
    rc |= uv_timer_stop(t);
  }
  b->rc |= rc;
}

static void uv_pending_setup(void *arg) {
  uv_pending_t *b = arg;
  bench_rng_t rng;
  size_t i, npending = b->n;

  bench_rng_seed(&rng, b->seed);
  BENCH_CHECK(uv_loop_init(&b->loop) == 0);
  b->pending = malloc(npending * sizeof(*b->pending));
  BENCH_CHECK(b->pending != NULL);
  for (i = 0; i < npending; i++) {
    BENCH_CHECK(uv_timer_init(&b->loop, &b->pending[i]) == 0);
    BENCH_CHECK(uv_timer_start(&b->pending[i], on_uv_timer,
                               bench_rng_range(&rng, 1000, 60000), 0) == 0);
  }
  BENCH_CHECK(uv_timer_init(&b->loop, &b->probe) == 0);
}

static void uv_pending_report(const char *name, const bench_result_t *r,
                              void *arg) {
  uv_pending_t *b = arg;
  BENCH_CHECK(b->rc == 0);
  bench_print(name, r, ", \"pending\": %zu", b->n);
}

static void uv_pending_teardown(void *arg) {
  uv_pending_t *b = arg;
  size_t i;
  for (i = 0; i < b->n; i++)
    uv_close((uv_handle_t *)&b->pending[i], NULL);
  uv_close((uv_handle_t *)&b->probe, NULL);
  BENCH_CHECK(uv_run(&b->loop, UV_RUN_DEFAULT) == 0);
  BENCH_CHECK(uv_loop_close(&b->loop) == 0);
  free(b->pending);
}

/* ---- fy: firing -------------------------------------------------------- */

#define FIRE_N 100000
#define FIRE_WINDOW_MS 1000
#define FIRE_MAX_REPS 200

static size_t fired;

static void on_fire(fy_deadline_t *d) {
  (void)d;
  fired++;
}

static void bench_fy_fire(bench_rng_t *rng) {
  uv_loop_t loop;
  fy_ctx_t *ctx;
  fy_ctx_opts_t opts;
  fy_deadline_t *ds;
  uint64_t *when;
  static double fire_ns[FIRE_MAX_REPS], start_ns[FIRE_MAX_REPS];
  double best, median, sbest, smedian;
  uint64_t t0, t1, t2, a0, spent = 0;
  bench_result_t r;
  size_t i;
  int rep, closed = 0;

  memset(&opts, 0, sizeof(opts));
  opts.manual_clock = 1;
  opts.manual_start_ms = 1000000;
  BENCH_CHECK(uv_loop_init(&loop) == 0);
  BENCH_CHECK(fy_ctx_new(&loop, &opts, &ctx) == 0);
  ds = malloc(FIRE_N * sizeof(*ds));
  when = malloc(FIRE_N * sizeof(*when));
  BENCH_CHECK(ds != NULL && when != NULL);
  for (i = 0; i < FIRE_N; i++) {
    fy_deadline_init(ctx, &ds[i], on_fire);
    when[i] = bench_rng_range(rng, 1, FIRE_WINDOW_MS);
  }

  /* Repetition -1 is a warm-up and is not counted.  Then consecutive
   * samples for about BENCH_TIME_NS (at least BENCH_MIN_REPS). */
  a0 = 0;
  for (rep = -1;
       rep < FIRE_MAX_REPS && (rep < BENCH_MIN_REPS || spent < BENCH_TIME_NS);
       rep++) {
    if (rep == 0)
      a0 = bench_allocs();
    fired = 0;
    t0 = bench_now_ns();
    for (i = 0; i < FIRE_N; i++)
      fy_deadline_start(&ds[i], when[i]);
    t1 = bench_now_ns();
    BENCH_CHECK(fy_ctx_advance(ctx, FIRE_WINDOW_MS) == 0);
    t2 = bench_now_ns();
    BENCH_CHECK(fired == FIRE_N);
    BENCH_CHECK(fy_ctx_pending_deadlines(ctx) == 0);
    if (rep >= 0) {
      spent += t2 - t0;
      start_ns[rep] = (double)(t1 - t0) / FIRE_N;
      fire_ns[rep] = (double)(t2 - t1) / FIRE_N;
    }
  }
  r.allocs_per_op = (double)(bench_allocs() - a0) / ((double)FIRE_N * rep);
  bench_stats(fire_ns, rep, &best, &median);
  bench_stats(start_ns, rep, &sbest, &smedian);
  r.best_ns = best;
  r.median_ns = median;
  r.ops = FIRE_N;
  r.reps = rep;
  r.rounds = 1; /* its samples are consecutive; the median is over them */
  bench_print("timer.fy.fire_100000", &r,
              ", \"window_ms\": %d, \"start_ns_per_op\": %.2f, "
              "\"start_median_ns_per_op\": %.2f",
              FIRE_WINDOW_MS, sbest, smedian);

  BENCH_CHECK(fy_ctx_close(ctx, on_closed, &closed) == 0);
  BENCH_CHECK(uv_run(&loop, UV_RUN_DEFAULT) == 0);
  BENCH_CHECK(closed);
  BENCH_CHECK(uv_loop_close(&loop) == 0);
  free(ds);
  free(when);
}

#define NSIZES 3

int main(void) {
  static const size_t sizes[NSIZES] = {100, 10000, 100000};
  static fy_pending_t fyp[NSIZES];
  static uv_pending_t uvp[NSIZES];
  static char names[2 * NSIZES][64];
  bench_set_t *set;
  bench_rng_t rng;
  size_t i;

  bench_init();
  bench_rng_seed(&rng, SEED);
  for (i = 0; i < NTMO; i++)
    tmo[i] = bench_rng_range(&rng, 1, 60000);

  /* One set: fy and uv at every size take turns in each round.  The same
   * pending population for fy and uv at each size. */
  set = malloc(sizeof(*set));
  BENCH_CHECK(set != NULL);
  bench_set_init(set);
  for (i = 0; i < NSIZES; i++) {
    fyp[i].n = sizes[i];
    fyp[i].seed = SEED + 1 + i;
    snprintf(names[i], sizeof(names[i]), "timer.fy.pending_%zu", sizes[i]);
    bench_add(set, names[i], fy_pair_loop, &fyp[i], fy_pending_setup,
              fy_pending_report, fy_pending_teardown);
  }
  for (i = 0; i < NSIZES; i++) {
    uvp[i].n = sizes[i];
    uvp[i].seed = SEED + 1 + i;
    snprintf(names[NSIZES + i], sizeof(names[0]), "timer.uv.pending_%zu",
             sizes[i]);
    bench_add(set, names[NSIZES + i], uv_pair_loop, &uvp[i], uv_pending_setup,
              uv_pending_report, uv_pending_teardown);
  }
  bench_set_run(set);
  free(set);

  if (bench_selected("timer.fy.fire_100000")) {
    bench_rng_seed(&rng, SEED + 100);
    bench_fy_fire(&rng);
  }

  BENCH_CHECK(bench_live_blocks() == 0);
  return 0;
}
