/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * Tiny shared harness for the benchmarks (not a library: every function is
 * static inline, each bench/NAME.c is a single translation unit).
 *
 * - A counting allocator installed with fy_replace_allocator(): every block
 *   fortify asks the C allocator for is counted (libuv's own allocations are
 *   not; they do not go through the fortify hook).
 * - A clock: uv_hrtime(), nanoseconds.
 * - bench_run(): calibrates the iteration count of a timed loop so that one
 *   repetition (a sample) lasts about BENCH_SAMPLE_NS, then takes samples
 *   for about BENCH_TIME_NS (at least BENCH_MIN_REPS of them) and keeps the
 *   best (minimum) and the median ns/op.  Machines are noisy (2 shared
 *   cores): many short samples give some that ran without being preempted,
 *   so the best is the number to compare; the median tells how noisy the
 *   run was.
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
/* Time spent sampling one bench (plus about 10% for the calibration). */
#ifndef BENCH_TIME_NS
#define BENCH_TIME_NS 1000000000ull
#endif
#define BENCH_MIN_REPS 5
#define BENCH_MAX_REPS 1000

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

/* ---- timed loop -------------------------------------------------------- */

/* Runs the operation under test |n| times. */
typedef void (*bench_fn)(void *arg, uint64_t n);

typedef struct bench_result_s {
  double best_ns;   /* minimum over the repetitions, ns per op */
  double median_ns; /* median over the repetitions, ns per op */
  double allocs_per_op;
  uint64_t ops; /* ops per repetition */
  int reps;     /* repetitions (samples) taken */
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

/* Calibrate |fn| (which also warms caches and freelists up), then take
 * samples.  Allocations are counted over the timed samples only. */
static inline void bench_run(bench_fn fn, void *arg, bench_result_t *out) {
  static double per_rep[BENCH_MAX_REPS];
  uint64_t n = 64, t0, dt, best_dt, a0, ops = 0, spent = 0;
  int i, k;

  /* Grow until one run takes >= 1/4 of a sample; the best of 3 runs at
   * that size decides, so a preemption does not shrink the samples. */
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
  if (n == 0)
    n = 1;

  a0 = bench_allocs();
  for (i = 0;
       i < BENCH_MAX_REPS && (i < BENCH_MIN_REPS || spent < BENCH_TIME_NS);
       i++) {
    t0 = bench_now_ns();
    fn(arg, n);
    dt = bench_now_ns() - t0;
    spent += dt;
    ops += n;
    per_rep[i] = (double)dt / (double)n;
  }
  out->allocs_per_op = (double)(bench_allocs() - a0) / (double)ops;
  bench_stats(per_rep, i, &out->best_ns, &out->median_ns);
  out->ops = n;
  out->reps = i;
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
         "\"median_ns_per_op\": %.2f, \"ops\": %llu, \"reps\": %d",
         name, r->best_ns, r->allocs_per_op, r->median_ns,
         (unsigned long long)r->ops, r->reps);
  if (extra != NULL) {
    va_start(ap, extra);
    vprintf(extra, ap);
    va_end(ap);
  }
  printf("}\n");
  fflush(stdout);
}

#endif /* FY_BENCH_H */
