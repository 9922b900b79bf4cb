/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * Tiny shared harness for the benchmarks (not a library: every function is
 * static inline, each bench/NAME.c is a single translation unit).
 *
 * - A counting allocator installed with fy_replace_allocator(): every block
 *   fortify asks the C allocator for is counted (libuv's own allocations are
 *   not; they do not go through the fortify hook).
 * - A clock: uv_hrtime(), nanoseconds.
 * - Benches measured together (a bench_set_t): each is registered with
 *   bench_add() (name, timed loop, state, setup/report/teardown), then
 *   bench_set_run() sets them all up, calibrates each once (the iteration
 *   count that makes one sample last about BENCH_SAMPLE_NS), and runs
 *   BENCH_ROUNDS rounds (default 60); each round takes BENCH_ROUND_SAMPLES
 *   samples (default 4) of every bench in turn, starting one bench later
 *   each round.  Per bench it keeps the best (minimum) sample over all
 *   rounds and the median over the rounds of each round's best sample.
 *   Machines are noisy (2 shared cores): many short samples give some that
 *   ran without being preempted, so the best is the number to compare; and
 *   since the benches of a set take turns all along the run, a busy spell
 *   of the machine hits them all, not only the one that happened to be
 *   running, so the ratio of two benches of one set is not an artefact of
 *   when each ran.  The median of the round bests says how stable that
 *   best was.
 * - bench_print(): one JSON object on one line:
 *     {"bench": NAME, "ns_per_op": X, "allocs_per_op": Y, ...}
 *   scripts/bench.sh keeps the lines that start with '{'.
 * - A fixed-seed PRNG (splitmix64), so every run sees the same workload. */
#ifndef FY_BENCH_H
#define FY_BENCH_H

#include <fnmatch.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "fortify.h"

/* One sample (timed repetition) lasts about this long: short enough to fit
 * in a scheduler time slice on a loaded machine. */
#ifndef BENCH_SAMPLE_NS
#define BENCH_SAMPLE_NS 4000000ull
#endif
/* Time spent sampling one bench measured alone in its own loop
 * (timer.fy.fire_100000, which does not fit the bench_fn shape). */
#ifndef BENCH_TIME_NS
#define BENCH_TIME_NS 1000000000ull
#endif
#define BENCH_MIN_REPS 5

/* Keep the compiler from seeing through a value (a pointer to a function
 * table, a result): no constant propagation, no devirtualisation. */
#define BENCH_OPAQUE(x) __asm__ volatile("" : "+r"(x))

/* ---- counting allocator ------------------------------------------------ */

static uint64_t bench_n_alloc; /* malloc + calloc + realloc calls */
static uint64_t bench_n_grown; /* of these, reallocs of a live block */
static uint64_t bench_n_free;

static inline void *bench_malloc(size_t size) {
  bench_n_alloc++;
  return malloc(size);
}

static inline void *bench_realloc(void *ptr, size_t size) {
  bench_n_alloc++;
  if (ptr != NULL)
    bench_n_grown++;
  return realloc(ptr, size);
}

static inline void *bench_calloc(size_t count, size_t size) {
  bench_n_alloc++;
  return calloc(count, size);
}

static inline void bench_free(void *ptr) {
  if (ptr != NULL)
    bench_n_free++;
  free(ptr);
}

/* Call first thing in main(), before any other fortify function. */
static inline void bench_init(void) {
  if (fy_replace_allocator(bench_malloc, bench_realloc, bench_calloc,
                           bench_free) != 0) {
    fprintf(stderr, "bench: fy_replace_allocator failed\n");
    exit(1);
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
}

static inline uint64_t bench_allocs(void) {
  return bench_n_alloc;
}

/* Blocks fortify allocated and has not freed (a leak check at the end). */
static inline int64_t bench_live_blocks(void) {
  return (int64_t)(bench_n_alloc - bench_n_grown - bench_n_free);
}

/* ---- clock and PRNG ---------------------------------------------------- */

static inline uint64_t bench_now_ns(void) {
  return uv_hrtime();
}

typedef struct bench_rng_s {
  uint64_t s;
} bench_rng_t;

static inline void bench_rng_seed(bench_rng_t *r, uint64_t seed) {
  r->s = seed;
}

static inline uint64_t bench_rng_next(bench_rng_t *r) {
  uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* Uniform in [lo, hi] (the modulo bias is irrelevant here). */
static inline uint64_t bench_rng_range(bench_rng_t *r, uint64_t lo,
                                       uint64_t hi) {
  return lo + bench_rng_next(r) % (hi - lo + 1);
}

static inline void bench_die(const char *what) {
  fprintf(stderr, "bench: %s\n", what);
  exit(1);
}

#define BENCH_CHECK(cond)                                                      \
  do {                                                                         \
    if (!(cond))                                                               \
      bench_die("check failed: " #cond);                                       \
  } while (0)

/* ---- selection --------------------------------------------------------- */

/* 1 when |name| should run: BENCH_FILTER unset or empty, or one of its
 * comma-separated shell globs matches |name| (handy under perf record or
 * valgrind: BENCH_FILTER='pipeline.5', BENCH_FILTER='breaker.*,op.bare'). */
static inline int bench_selected(const char *name) {
  const char *f = getenv("BENCH_FILTER");
  char glob[256];
  size_t len;
  if (f == NULL || *f == '\0')
    return 1;
  for (;;) {
    len = strcspn(f, ",");
    if (len > 0 && len < sizeof(glob)) {
      memcpy(glob, f, len);
      glob[len] = '\0';
      if (fnmatch(glob, name, 0) == 0)
        return 1;
    }
    if (f[len] == '\0')
      return 0;
    f += len + 1;
  }
}

/* ---- timed loop: a set of benches, interleaved in rounds ------------- */

/* Runs the operation under test |n| times. */
typedef void (*bench_fn)(void *arg, uint64_t n);

typedef struct bench_result_s {
  double best_ns;   /* minimum over every sample, ns per op */
  double median_ns; /* median over the rounds of each round's best sample */
  double allocs_per_op;
  uint64_t ops; /* ops per sample */
  int reps;     /* samples taken */
  int rounds;   /* rounds the samples were taken in */
} bench_result_t;

static inline int bench_cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* Best (minimum) and median of |n| samples; sorts |v|. */
static inline void bench_stats(double *v, int n, double *best, double *median) {
  qsort(v, (size_t)n, sizeof(v[0]), bench_cmp_double);
  *best = v[0];
  *median = v[n / 2];
}

/* ---- output ------------------------------------------------------------ */

/* One JSON line.  |extra| is NULL or a printf format producing further
 * members, each starting with ", " (e.g. ", \"pending\": %zu"). */
static inline void bench_print(const char *name, const bench_result_t *r,
                               const char *extra, ...)
    __attribute__((format(printf, 3, 4)));

static inline void bench_print(const char *name, const bench_result_t *r,
                               const char *extra, ...) {
  va_list ap;
  printf("{\"bench\": \"%s\", \"ns_per_op\": %.2f, \"allocs_per_op\": %.6g, "
         "\"median_ns_per_op\": %.2f, \"ops\": %llu, \"reps\": %d, "
         "\"rounds\": %d",
         name, r->best_ns, r->allocs_per_op, r->median_ns,
         (unsigned long long)r->ops, r->reps, r->rounds);
  if (extra != NULL) {
    va_start(ap, extra);
    vprintf(extra, ap);
    va_end(ap);
  }
  printf("}\n");
  fflush(stdout);
}

/* A bench of a set: |setup| (NULL: none) runs once before the calibration,
 * |report| (NULL: a plain bench_print) once after the last round, then
 * |teardown| (NULL: none).  All three get |arg|, as |loop| does, and may
 * BENCH_CHECK; the state behind |arg| lives through every round. */
typedef void (*bench_hook)(void *arg);
typedef void (*bench_report_fn)(const char *name, const bench_result_t *r,
                                void *arg);

#define BENCH_SET_MAX 32
#define BENCH_ROUNDS_DEFAULT 60
#define BENCH_ROUND_SAMPLES_DEFAULT 4
#define BENCH_ENV_MAX 100000

typedef struct bench_entry_s {
  char name[96];
  bench_fn loop;
  void *arg;
  bench_hook setup, teardown;
  bench_report_fn report;
  uint64_t n;         /* ops per sample (calibrated) */
  double *round_best; /* [rounds]: ns/op of each round's best sample */
  double best;        /* over every sample */
  uint64_t ops;       /* timed ops */
  uint64_t allocs;    /* allocations counted during the timed samples */
  int reps;
  bench_result_t result;
} bench_entry_t;

/* Benches measured together: registered with bench_add(), calibrated once
 * each, then sampled in rounds, every bench in every round. */
typedef struct bench_set_s {
  bench_entry_t e[BENCH_SET_MAX];
  int n;
  int done; /* results are valid */
} bench_set_t;

static inline void bench_set_init(bench_set_t *s) {
  memset(s, 0, sizeof(*s));
}

/* Registers a bench unless BENCH_FILTER leaves it out; 1 when registered. */
static inline int bench_add(bench_set_t *s, const char *name, bench_fn loop,
                            void *arg, bench_hook setup,
                            bench_report_fn report, bench_hook teardown) {
  bench_entry_t *e;
  if (!bench_selected(name))
    return 0;
  if (s->n == BENCH_SET_MAX || strlen(name) >= sizeof(e->name))
    bench_die("bench_add: too many benches in a set, or name too long");
  e = &s->e[s->n++];
  memset(e, 0, sizeof(*e));
  snprintf(e->name, sizeof(e->name), "%s", name);
  e->loop = loop;
  e->arg = arg;
  e->setup = setup;
  e->report = report;
  e->teardown = teardown;
  return 1;
}

/* The result of bench |name| of a set that has run; NULL if it is not in
 * the set (left out by BENCH_FILTER).  For a report that compares. */
static inline const bench_result_t *bench_set_result(const bench_set_t *s,
                                                     const char *name) {
  int i;
  if (!s->done)
    return NULL;
  for (i = 0; i < s->n; i++)
    if (strcmp(s->e[i].name, name) == 0)
      return &s->e[i].result;
  return NULL;
}

/* An environment variable as an integer in [lo, hi]; |def| when unset. */
static inline int bench_env_int(const char *var, int def, int lo, int hi) {
  const char *v = getenv(var);
  char *end;
  long x;
  if (v == NULL || *v == '\0')
    return def;
  x = strtol(v, &end, 10);
  if (*end != '\0' || x < lo || x > hi) {
    fprintf(stderr, "bench: %s must be an integer in [%d, %d]\n", var, lo, hi);
    exit(1);
  }
  return (int)x;
}

/* Rounds (BENCH_ROUNDS) and samples of each bench per round
 * (BENCH_ROUND_SAMPLES).  The defaults give each bench about 1 s of
 * samples, as one bench measured alone for BENCH_TIME_NS used to get. */
static inline int bench_rounds(void) {
  return bench_env_int("BENCH_ROUNDS", BENCH_ROUNDS_DEFAULT, 1, BENCH_ENV_MAX);
}

static inline int bench_round_samples(void) {
  return bench_env_int("BENCH_ROUND_SAMPLES", BENCH_ROUND_SAMPLES_DEFAULT, 1,
                       BENCH_ENV_MAX);
}

/* How many ops make one sample of about BENCH_SAMPLE_NS (also warms caches
 * and freelists up).  Grow until one run takes >= 1/4 of a sample; the
 * best of 3 runs at that size decides, so a preemption does not shrink the
 * samples.  Not timed as samples, its allocations are not counted. */
static inline uint64_t bench_calibrate(bench_fn fn, void *arg) {
  uint64_t n = 64, t0, dt, best_dt;
  int k;
  for (;;) {
    t0 = bench_now_ns();
    fn(arg, n);
    dt = bench_now_ns() - t0;
    if (dt >= BENCH_SAMPLE_NS / 4 || n >= (1ull << 40))
      break;
    n *= dt < BENCH_SAMPLE_NS / 64 ? 8 : 2;
  }
  best_dt = dt;
  for (k = 0; k < 2; k++) {
    t0 = bench_now_ns();
    fn(arg, n);
    dt = bench_now_ns() - t0;
    if (dt < best_dt)
      best_dt = dt;
  }
  n = (uint64_t)((double)n * (double)BENCH_SAMPLE_NS /
                 (double)(best_dt ? best_dt : 1));
  return n == 0 ? 1 : n;
}

/* One timed sample of |e|: ns per op; allocations counted around it. */
static inline double bench_sample(bench_entry_t *e) {
  uint64_t a0, t0, dt;
  a0 = bench_allocs();
  t0 = bench_now_ns();
  e->loop(e->arg, e->n);
  dt = bench_now_ns() - t0;
  e->allocs += bench_allocs() - a0;
  e->ops += e->n;
  e->reps++;
  return (double)dt / (double)e->n;
}

/* Sets every bench up (in registration order), calibrates each once, then
 * runs the rounds: round r takes bench_round_samples() consecutive samples
 * of each bench in turn, starting with bench r mod n, so no bench always
 * runs first or right after the same one.  Then, in registration order,
 * each bench's report and teardown.  A set of one bench is a bench
 * measured alone, in rounds all the same. */
static inline void bench_set_run(bench_set_t *s) {
  int rounds = bench_rounds(), per = bench_round_samples();
  int i, j, k, r;
  bench_entry_t *e;
  double ns, rb;
  if (s->n == 0)
    return;
  for (i = 0; i < s->n; i++) {
    e = &s->e[i];
    if (e->setup != NULL)
      e->setup(e->arg);
    e->round_best = malloc((size_t)rounds * sizeof(double));
    if (e->round_best == NULL)
      bench_die("out of memory");
  }
  for (i = 0; i < s->n; i++)
    s->e[i].n = bench_calibrate(s->e[i].loop, s->e[i].arg);
  for (r = 0; r < rounds; r++) {
    for (j = 0; j < s->n; j++) {
      e = &s->e[(r + j) % s->n];
      rb = 0;
      for (k = 0; k < per; k++) {
        ns = bench_sample(e);
        if (k == 0 || ns < rb)
          rb = ns;
      }
      e->round_best[r] = rb;
      if (r == 0 || rb < e->best)
        e->best = rb;
    }
  }
  for (i = 0; i < s->n; i++) {
    e = &s->e[i];
    e->result.best_ns = e->best;
    bench_stats(e->round_best, rounds, &rb, &e->result.median_ns);
    e->result.allocs_per_op = (double)e->allocs / (double)e->ops;
    e->result.ops = e->n;
    e->result.reps = e->reps;
    e->result.rounds = rounds;
    free(e->round_best);
    e->round_best = NULL;
  }
  s->done = 1;
  for (i = 0; i < s->n; i++) {
    e = &s->e[i];
    if (e->report != NULL)
      e->report(e->name, &e->result, e->arg);
    else
      bench_print(e->name, &e->result, NULL);
    if (e->teardown != NULL)
      e->teardown(e->arg);
  }
}

#endif /* FY_BENCH_H */
