/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * The rate limiter and the server guard on their fast paths, on real-clock
 * contexts (what users run).  Same method as bench/patterns.c: a pipelined
 * operation records its attempt, the bench loop completes it with
 * fy_attempt_done(), so the outcome climbs the pipeline and reaches the
 * callback before fy_attempt_done() returns.
 *
 * One interleaved set (bench.h):
 *   op.bare.limiter           op.bare (bench/bare.h), measured here: the
 *                             baseline of this set's ratios
 *   op.pipeline.passthrough_0.limiter
 *                             op.pipeline.passthrough_0, measured here: the
 *                             base of the limiter's layer cost
 *   limiter.allow.hot_key     fy_limiter_allow() on one 16-byte key, under
 *                             the limit, the verdict filled
 *   limiter.pipeline          one call through a pipeline whose only stage
 *                             is the limiter, the key in the call's options
 *   guard.admit               one call through fy_guard_start(): limiter ->
 *                             bulkhead -> breaker -> handler timeout, under
 *                             every limit
 * The limiters allow FY_LIMIT_RATE_MAX per ms with a burst of
 * FY_LIMIT_BURST_MAX, so that no call of the run is refused; each bench
 * checks that after the rounds.  Nothing runs the loop while measuring, so
 * the loop's clock stands still and the burst alone must last: the default
 * rounds make a few times 10^7 calls per bench, far from 10^9 (a run long
 * enough to reach it would fail that check, not report a wrong number).
 *
 * Outside the set, in consecutive samples (as timer.fy.fire_100000):
 *   limiter.allow.keys_1000000
 *                             a limiter of max_keys 1,000,000, filled with
 *                             1,000,000 distinct 16-byte keys; one sample
 *                             is one fy_limiter_allow() of every key, in a
 *                             shuffled order (so that neither the table
 *                             nor the LRU list is walked in order).  The
 *                             line gives bytes_per_key (the table's own
 *                             accounting, fy_limiter_stats().bytes / keys),
 *                             rss_bytes_per_key (the growth of the
 *                             process's resident set, /proc/self/statm,
 *                             from before the limiter is made to after the
 *                             fill, per key) and the fill's cost per key.
 *
 * allocs_per_op counts the fortify allocator hook over the timed samples:
 * every key a sample uses exists already. */
#include <unistd.h>

#include "bare.h"

#define KEY_LEN 16
#define NKEYS 1000000
#define KEYS_MAX_REPS 200
#define SEED 0x11a17e55eed5ull

/* The key of the hot-key benches: 16 bytes, as the keys of the big table. */
static const char hot_key[KEY_LEN + 1] = "198.51.100.77:80";

/* ---- the set ------------------------------------------------------------- */

typedef enum lim_kind_e {
  LIM_ALLOW,    /* fy_limiter_allow(), no pipeline */
  LIM_PIPELINE, /* a pipeline of the limiter alone */
  LIM_GUARD,    /* fy_guard_start() */
  LIM_EMPTY     /* a pipeline without policies */
} lim_kind_t;

typedef struct lim_s {
  lim_kind_t kind;
  const char *shape;
  const bench_set_t *set; /* the set holding its baseline */
  uv_loop_t loop;
  fy_ctx_t *ctx;
  fy_limiter_t *limiter;
  fy_guard_t *guard;
  fy_pipeline_t *pl;
  fy_call_t call;
  fy_call_opts_t copts;
  fy_attempt_t *held; /* the call's attempt under way */
  fy_limit_verdict_t v;
  uint64_t started;
  uint64_t done;
  uint64_t refused; /* calls refused: must stay 0 */
  int bad_status;
} lim_t;

static void on_closed(void *obj, void *user_data) {
  (void)obj;
  (*(int *)user_data)++;
}

static int held_start(fy_attempt_t *attempt, void *arg) {
  lim_t *st = arg;
  st->held = attempt;
  st->started++;
  return 0;
}

static void op_cancel(fy_attempt_t *attempt, void *arg) {
  (void)arg;
  fy_attempt_done(attempt, UV_ECANCELED);
}

static const fy_op_t held_op = {held_start, op_cancel};

static void on_call_done(fy_call_t *call, int status) {
  lim_t *st = call->data;
  if (status != 0)
    st->bad_status = 1;
  st->done++;
}

/* As many tokens as the options allow, in the shortest interval. */
static void unlimited(fy_limiter_opts_t *o) {
  fy_limiter_opts_init(o);
  o->rate = FY_LIMIT_RATE_MAX;
  o->interval_ms = 1;
  o->burst = FY_LIMIT_BURST_MAX;
}

static void lim_setup(void *arg) {
  lim_t *st = arg;
  lim_kind_t kind = st->kind;
  const char *shape = st->shape;
  const bench_set_t *set = st->set;
  fy_limiter_opts_t lo;
  fy_breaker_opts_t bo;
  fy_guard_opts_t go;
  fy_policy_t *p;

  memset(st, 0, sizeof(*st));
  st->kind = kind;
  st->shape = shape;
  st->set = set;
  BENCH_CHECK(uv_loop_init(&st->loop) == 0);
  BENCH_CHECK(fy_ctx_new(&st->loop, NULL, &st->ctx) == 0);
  st->call.data = st;
  st->copts.key = hot_key;
  st->copts.key_len = KEY_LEN;
  unlimited(&lo);
  switch (kind) {
  case LIM_ALLOW:
    BENCH_CHECK(fy_limiter_new(st->ctx, &lo, &st->limiter) == 0);
    /* The real clock does let it through, and leaves nearly all. */
    BENCH_CHECK(fy_limiter_allow(st->limiter, hot_key, KEY_LEN, &st->v) == 0);
    BENCH_CHECK(st->v.limit == FY_LIMIT_BURST_MAX);
    BENCH_CHECK(st->v.remaining == FY_LIMIT_BURST_MAX - 1);
    break;
  case LIM_PIPELINE:
    BENCH_CHECK(fy_limiter_new(st->ctx, &lo, &st->limiter) == 0);
    p = fy_limiter_policy(st->limiter);
    BENCH_CHECK(fy_pipeline_new(st->ctx, &p, 1, &st->pl) == 0);
    break;
  case LIM_GUARD:
    fy_breaker_opts_init(&bo);
    fy_guard_opts_init(&go);
    go.limit = &lo;
    go.max_concurrent = 100;
    go.breaker = &bo;
    go.handler_timeout_ms = 30000;
    BENCH_CHECK(fy_guard_new(st->ctx, &go, &st->guard) == 0);
    st->limiter = fy_guard_limiter(st->guard);
    st->pl = fy_guard_pipeline(st->guard);
    BENCH_CHECK(st->limiter != NULL && st->pl != NULL);
    break;
  case LIM_EMPTY:
    p = NULL;
    BENCH_CHECK(fy_pipeline_new(st->ctx, &p, 0, &st->pl) == 0);
    break;
  }
}

static void allow_loop(void *arg, uint64_t n) {
  lim_t *st = arg;
  fy_limiter_t *l = st->limiter;
  uint64_t i, refused = 0;
  for (i = 0; i < n; i++)
    refused += fy_limiter_allow(l, hot_key, KEY_LEN, &st->v) != 0;
  st->refused += refused;
}

/* Start the call, then complete its attempt from here. */
static void pipeline_loop(void *arg, uint64_t n) {
  lim_t *st = arg;
  uint64_t i, refused = 0;
  for (i = 0; i < n; i++) {
    refused += fy_call_start_opts(&st->call, st->pl, &held_op, st, &st->copts,
                                  on_call_done) != 0;
    fy_attempt_done(st->held, 0);
  }
  st->refused += refused;
}

static void guard_loop(void *arg, uint64_t n) {
  lim_t *st = arg;
  fy_guard_t *g = st->guard;
  uint64_t i, refused = 0;
  for (i = 0; i < n; i++) {
    refused += fy_guard_start(g, &st->call, hot_key, KEY_LEN, &held_op, st,
                              on_call_done) != 0;
    fy_attempt_done(st->held, 0);
  }
  st->refused += refused;
}

/* op.pipeline.passthrough_0, as bench/op.c and bench/patterns.c run it. */
static void empty_loop(void *arg, uint64_t n) {
  lim_t *st = arg;
  uint64_t i, refused = 0;
  for (i = 0; i < n; i++) {
    refused +=
        fy_call_start(&st->call, st->pl, &held_op, st, on_call_done) != 0;
    fy_attempt_done(st->held, 0);
  }
  st->refused += refused;
}

#define BARE "op.bare.limiter"

static void lim_report(const char *name, const bench_result_t *r,
                       void *arg) {
  lim_t *st = arg;
  const bench_result_t *bare = NULL;
  fy_limiter_stats_t ls;
  fy_ctx_stats_t cs;
  char base[96] = "";

  /* No call of the run was refused, and every call completed. */
  BENCH_CHECK(st->refused == 0 && st->bad_status == 0);
  BENCH_CHECK(st->done == st->started);
  fy_ctx_stats(st->ctx, &cs);
  BENCH_CHECK(cs.calls == 0 && cs.deadlines == 0 && cs.queued == 0);
  fy_limiter_stats(st->limiter, &ls);
  if (st->limiter != NULL)
    BENCH_CHECK(ls.keys == 1 && ls.evicted == 0 && ls.waiting == 0);
  if (st->set != NULL)
    bare = bench_set_result(st->set, BARE);
  if (bare != NULL)
    snprintf(base, sizeof(base),
             ", \"baseline\": \"" BARE "\", \"ratio_to_bare\": %.2f",
             r->best_ns / bare->best_ns);
  bench_print(name, r, ", \"pipeline\": \"%s\", \"refused\": %llu%s",
              st->shape, (unsigned long long)st->refused, base);
}

static void lim_teardown(void *arg) {
  lim_t *st = arg;
  int closed = 0;
  /* Closing the context closes the guard, the limiter, the pipeline. */
  BENCH_CHECK(fy_ctx_close(st->ctx, on_closed, &closed) == 0);
  BENCH_CHECK(uv_run(&st->loop, UV_RUN_DEFAULT) == 0);
  BENCH_CHECK(closed == 1);
  BENCH_CHECK(uv_loop_close(&st->loop) == 0);
}

/* ---- limiter.allow.keys_1000000 ----------------------------------------- */

/* Resident bytes of the process, or -1 when /proc/self/statm is not there. */
static long long rss_bytes(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  unsigned long long size, resident;
  int got;
  if (f == NULL)
    return -1;
  got = fscanf(f, "%llu %llu", &size, &resident);
  fclose(f);
  if (got != 2)
    return -1;
  return (long long)(resident * (unsigned long long)sysconf(_SC_PAGESIZE));
}

/* Key |i|: 16 hex digits of a bijective mix of i, so all are distinct. */
static void make_key(char *out, uint64_t i) {
  static const char hex[] = "0123456789abcdef";
  uint64_t z = i + 0x9e3779b97f4a7c15ull;
  int k;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  for (k = 0; k < KEY_LEN; k++)
    out[k] = hex[(z >> (4 * k)) & 15];
}

static void bench_keys(void) {
  static double pass_ns[KEYS_MAX_REPS];
  uv_loop_t loop;
  fy_ctx_t *ctx;
  fy_limiter_t *l;
  fy_limiter_opts_t o;
  fy_limiter_stats_t ls;
  fy_limit_verdict_t v;
  bench_result_t r;
  bench_rng_t rng;
  char *keys, *shuffled, tmp[KEY_LEN];
  uint64_t t0, t1, a0, fill_allocs, spent = 0, refused = 0;
  long long rss0, rss1;
  double fill_ns, rss_per_key = -1;
  char rss_field[64];
  size_t i, j;
  int rep, closed = 0;

  keys = malloc((size_t)NKEYS * KEY_LEN);
  shuffled = malloc((size_t)NKEYS * KEY_LEN);
  BENCH_CHECK(keys != NULL && shuffled != NULL);
  for (i = 0; i < NKEYS; i++)
    make_key(keys + i * KEY_LEN, i);
  /* The measured order: a shuffle of the fill order. */
  memcpy(shuffled, keys, (size_t)NKEYS * KEY_LEN);
  bench_rng_seed(&rng, SEED);
  for (i = NKEYS - 1; i > 0; i--) {
    j = (size_t)bench_rng_range(&rng, 0, i);
    memcpy(tmp, shuffled + i * KEY_LEN, KEY_LEN);
    memcpy(shuffled + i * KEY_LEN, shuffled + j * KEY_LEN, KEY_LEN);
    memcpy(shuffled + j * KEY_LEN, tmp, KEY_LEN);
  }

  BENCH_CHECK(uv_loop_init(&loop) == 0);
  BENCH_CHECK(fy_ctx_new(&loop, NULL, &ctx) == 0);
  /* One token a day, a burst of a million: no key is refused, and none
   * is idle again (droppable) during the run, whatever the clock does. */
  fy_limiter_opts_init(&o);
  o.rate = 1;
  o.interval_ms = FY_LIMIT_INTERVAL_MAX;
  o.burst = 1000000;
  o.max_keys = NKEYS;

  rss0 = rss_bytes();
  BENCH_CHECK(fy_limiter_new(ctx, &o, &l) == 0);
  a0 = bench_allocs();
  t0 = bench_now_ns();
  for (i = 0; i < NKEYS; i++)
    refused += fy_limiter_allow(l, keys + i * KEY_LEN, KEY_LEN, &v) != 0;
  t1 = bench_now_ns();
  fill_allocs = bench_allocs() - a0;
  rss1 = rss_bytes();
  fill_ns = (double)(t1 - t0) / NKEYS;
  fy_limiter_stats(l, &ls);
  BENCH_CHECK(ls.keys == NKEYS && ls.evicted == 0 && ls.expired == 0);

  /* Consecutive passes over every key for about BENCH_TIME_NS (at least
   * BENCH_MIN_REPS); pass -1 warms up and is not counted. */
  a0 = 0;
  for (rep = -1;
       rep < KEYS_MAX_REPS && (rep < BENCH_MIN_REPS || spent < BENCH_TIME_NS);
       rep++) {
    if (rep == 0)
      a0 = bench_allocs();
    t0 = bench_now_ns();
    for (i = 0; i < NKEYS; i++)
      refused +=
          fy_limiter_allow(l, shuffled + i * KEY_LEN, KEY_LEN, &v) != 0;
    t1 = bench_now_ns();
    if (rep >= 0) {
      spent += t1 - t0;
      pass_ns[rep] = (double)(t1 - t0) / NKEYS;
    }
  }
  r.allocs_per_op = (double)(bench_allocs() - a0) / ((double)NKEYS * rep);
  BENCH_CHECK(refused == 0);
  fy_limiter_stats(l, &ls);
  BENCH_CHECK(ls.keys == NKEYS && ls.evicted == 0 && ls.expired == 0);
  bench_stats(pass_ns, rep, &r.best_ns, &r.median_ns);
  r.ops = NKEYS;
  r.reps = rep;
  r.rounds = 1; /* consecutive samples; the median is over them */
  if (rss0 >= 0 && rss1 >= 0)
    rss_per_key = (double)(rss1 - rss0) / NKEYS;
  if (rss_per_key >= 0)
    snprintf(rss_field, sizeof(rss_field), "%.2f", rss_per_key);
  else
    snprintf(rss_field, sizeof(rss_field), "null");
  bench_print("limiter.allow.keys_1000000", &r,
              ", \"keys\": %llu, \"key_len\": %d, \"bytes_per_key\": %.2f, "
              "\"rss_bytes_per_key\": %s, \"fill_ns_per_key\": %.2f, "
              "\"fill_allocs\": %llu, \"refused\": %llu",
              (unsigned long long)ls.keys, KEY_LEN,
              (double)ls.bytes / NKEYS, rss_field, fill_ns,
              (unsigned long long)fill_allocs, (unsigned long long)refused);

  BENCH_CHECK(fy_ctx_close(ctx, on_closed, &closed) == 0);
  BENCH_CHECK(uv_run(&loop, UV_RUN_DEFAULT) == 0);
  BENCH_CHECK(closed == 1);
  BENCH_CHECK(uv_loop_close(&loop) == 0);
  free(keys);
  free(shuffled);
}

/* ---- main ---------------------------------------------------------------- */

static bench_set_t set;
static bare_state_t bare;
static lim_t benches[4];

static void add(lim_t *st, const char *name, bench_fn loop, lim_kind_t kind,
                const char *shape) {
  st->kind = kind;
  st->shape = shape;
  st->set = &set;
  bench_add(&set, name, loop, st, lim_setup, lim_report, lim_teardown);
}

int main(void) {
  lim_t *b = benches;
  bench_init();

  bench_set_init(&set);
  bench_add(&set, BARE, bare_loop, &bare, bare_setup, NULL, bare_teardown);
  add(b++, "op.pipeline.passthrough_0.limiter", empty_loop, LIM_EMPTY,
      "empty");
  add(b++, "limiter.allow.hot_key", allow_loop, LIM_ALLOW, "none");
  add(b++, "limiter.pipeline", pipeline_loop, LIM_PIPELINE, "limiter");
  add(b++, "guard.admit", guard_loop, LIM_GUARD,
      "limiter>bulkhead>breaker>timeout");
  bench_set_run(&set);

  if (bench_selected("limiter.allow.keys_1000000"))
    bench_keys();

  BENCH_CHECK(bench_live_blocks() == 0);
  return 0;
}
