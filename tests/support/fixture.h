/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * Test fixture: one uv loop and one context on it, and the teardown every
 * loop test ends with (libuv's MAKE_VALGRIND_HAPPY): close the context, run
 * the loop until the close callback ran, uv_loop_close() == 0. */
#ifndef FY_TEST_FIXTURE_H
#define FY_TEST_FIXTURE_H

#include <fortify.h>

#include "evrec.h"
#include "probe.h"

typedef struct fx_s {
  uv_loop_t loop;
  fy_ctx_t *ctx;
  int close_requested; /* fy_ctx_close() was called through fx_close() */
  unsigned closed;     /* runs of the context's close callback */
  void *closed_ptr;    /* the pointer the close callback received */
  void *closed_ud;
} fx_t;

/* The fixture of the running test (Criterion runs each test in its own
 * process, so one global is enough). */
extern fx_t FX;

/* Loop + manual-clock context starting at |start_ms|. */
void fx_init(fx_t *fx, uint64_t start_ms);
/* Loop + real-clock context. */
void fx_init_real(fx_t *fx);

/* fx_init() with the counting allocator installed first (fa_install(-1)),
 * and fx_finish() that also checks no block is left (FA.live == 0). */
void fx_init_counted(fx_t *fx, uint64_t start_ms);
void fx_finish_counted(fx_t *fx);

/* Ask the context to close (legal from inside any callback); a second
 * request is a no-op.  Returns what fy_ctx_close() returned. */
int fx_close(fx_t *fx);
void fx_close_cb(void *ctx, void *user_data);

/* fy_ctx_advance() that must succeed. */
void fx_advance(fx_t *fx, uint64_t ms);

/* Close (unless already requested), run the loop until the close callback
 * ran exactly once, and check the loop closes cleanly. */
void fx_finish(fx_t *fx);

/* Create a probe policy / a pipeline, asserting success. */
fy_policy_t *fx_probe(fx_t *fx, probe_t *probe, const char *name);
fy_policy_t *fx_passthrough(fx_t *fx, const char *name);
/* |n| fy_policy_t * arguments, outermost first. */
fy_pipeline_t *fx_pipeline(fx_t *fx, size_t n, ...);

/* Counted close callbacks for pipelines and policies. */
typedef struct fx_closed_s {
  unsigned n;
  void *obj;
  unsigned order; /* g_completions when it ran */
} fx_closed_t;
void fx_obj_closed(void *obj, void *user_data); /* user_data: fx_closed_t */

/* A close callback and a listener that only count: |user_data| is an
 * unsigned (close callbacks) / an unsigned long (events). */
void fx_count_closed(void *obj, void *user_data);
void fx_count_event(fy_ctx_t *ctx, const fy_event_t *ev, void *user_data);

/* ---------------------------------------------------------------------------
 * A counting allocator for fy_replace_allocator(): counts requests, live
 * blocks, and fails request number |fa_fail_at| (0-based; -1: never).
 * ------------------------------------------------------------------------- */
typedef struct fa_stats_s {
  long requests; /* allocation requests seen (malloc, calloc, realloc) */
  long live;     /* blocks allocated and not yet freed */
  long frees;
  long failed;   /* requests failed on purpose */
  long fail_at;
  long fail_from; /* every request from this one on fails; -1: none */
} fa_stats_t;

extern fa_stats_t FA;
void *fa_malloc(size_t size);
void *fa_calloc(size_t count, size_t size);
void *fa_realloc(void *ptr, size_t size);
void fa_free(void *ptr);
/* Install the counting allocator with fresh counters / put back libc's. */
void fa_install(long fail_at);
/* The same, with an exhausted heap: request |from| and all later fail. */
void fa_install_exhausted(long from);
/* On the installed allocator: fail the next request only; or, with |on|,
 * every request from the next one on (0: none any more). */
void fa_fail_next(void);
void fa_fail_all(int on);
void fa_restore(void);

/* ---------------------------------------------------------------------------
 * Allocation-failure runs (the failmalloc suites): run a scenario once to
 * count its allocation requests N, then once per request i < N with the
 * i-th failing, then once per i with every request from the i-th on failing
 * (a heap that stays exhausted).  Every failure must be seen: the scenario
 * counts each UV_ENOMEM it meets in enomem (reset before each run).
 * ------------------------------------------------------------------------- */
extern unsigned enomem;
/* 0, or UV_ENOMEM which is counted; anything else fails the test. */
int ok_or_enomem(int rc, const char *what);

typedef struct fa_plan_s {
  const char *what;
  void (*scenario)(void); /* builds, runs and closes its whole world */
  long min_points;        /* N must be above this */
  int count_twice;        /* N must be the same in two runs (no timing) */
  int (*excused)(void);   /* 1: this run's failure was absorbed by design,
                             without an UV_ENOMEM; NULL: never */
} fa_plan_t;

/* The counting run(s): no UV_ENOMEM, nothing leaked, N > min_points.
 * Returns N. */
long fa_count(const fa_plan_t *plan);
/* Each request i < n failing alone: it was requested, the failure was
 * seen, nothing leaked. */
void fa_fail_each(const fa_plan_t *plan, long n);
/* Every request from i on failing, for each i < n: the failure was seen,
 * nothing leaked. */
void fa_exhaust_each(const fa_plan_t *plan, long n);
/* All three, then fa_restore().  Returns N. */
long fa_run(const fa_plan_t *plan);

#endif /* FY_TEST_FIXTURE_H */
