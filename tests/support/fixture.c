/* Copyright (c) 2026 the fortify authors. MIT licensed. */
#include "fixture.h"

#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

fx_t FX;

static void fx_base(fx_t *fx) {
  memset(fx, 0, sizeof(*fx));
  probe_reset();
  cr_assert_eq(uv_loop_init(&fx->loop), 0);
}

void fx_init(fx_t *fx, uint64_t start_ms) {
  fy_ctx_opts_t opts;
  fx_base(fx);
  memset(&opts, 0, sizeof(opts));
  opts.manual_clock = 1;
  opts.manual_start_ms = start_ms;
  cr_assert_eq(fy_ctx_new(&fx->loop, &opts, &fx->ctx), 0);
  cr_assert_not_null(fx->ctx);
  cr_assert_eq(fy_ctx_now(fx->ctx), start_ms);
}

void fx_init_real(fx_t *fx) {
  fx_base(fx);
  cr_assert_eq(fy_ctx_new(&fx->loop, NULL, &fx->ctx), 0);
  cr_assert_not_null(fx->ctx);
}

void fx_close_cb(void *ctx, void *user_data) {
  fx_t *fx = user_data;
  fx->closed++;
  fx->closed_ptr = ctx;
  fx->closed_ud = user_data;
}

int fx_close(fx_t *fx) {
  if (fx->close_requested)
    return 0;
  fx->close_requested = 1;
  return fy_ctx_close(fx->ctx, fx_close_cb, fx);
}

void fx_advance(fx_t *fx, uint64_t ms) {
  cr_assert_eq(fy_ctx_advance(fx->ctx, ms), 0);
}

void fx_finish(fx_t *fx) {
  int i;
  if (!fx->close_requested)
    cr_assert_eq(fx_close(fx), 0);
  /* The loop has nothing left once the context is gone: a bounded number
   * of runs, each returning because nothing is active. */
  for (i = 0; i < 8 && !fx->closed; i++)
    uv_run(&fx->loop, UV_RUN_DEFAULT);
  cr_assert_eq(fx->closed, 1, "context close callback ran %u times",
               fx->closed);
  cr_assert_eq(fx->closed_ptr, (void *)fx->ctx);
  cr_assert_eq(fx->closed_ud, (void *)fx);
  cr_assert_eq(uv_loop_close(&fx->loop), 0, "handles left open on the loop");
}

void fx_init_counted(fx_t *fx, uint64_t start_ms) {
  fa_install(-1);
  fx_init(fx, start_ms);
}

void fx_finish_counted(fx_t *fx) {
  fx_finish(fx);
  cr_assert_eq(FA.live, 0, "leaked %ld blocks", FA.live);
}

void fx_obj_closed(void *obj, void *user_data) {
  fx_closed_t *c = user_data;
  c->n++;
  c->obj = obj;
  c->order = ++g_completions;
}

void fx_count_closed(void *obj, void *user_data) {
  (void)obj;
  (*(unsigned *)user_data)++;
}

void fx_count_event(fy_ctx_t *ctx, const fy_event_t *ev, void *user_data) {
  (void)ctx;
  (void)ev;
  (*(unsigned long *)user_data)++;
}

fy_policy_t *fx_probe(fx_t *fx, probe_t *probe, const char *name) {
  cr_assert_eq(probe_new(fx->ctx, probe, name), 0);
  cr_assert_not_null(probe->policy);
  cr_assert_eq(probe_of(probe->policy), probe);
  return probe->policy;
}

fy_policy_t *fx_passthrough(fx_t *fx, const char *name) {
  fy_policy_t *p = NULL;
  cr_assert_eq(fy_passthrough_new(fx->ctx, name, &p), 0);
  cr_assert_not_null(p);
  return p;
}

fy_pipeline_t *fx_pipeline(fx_t *fx, size_t n, ...) {
  fy_policy_t *layers[FY_PIPELINE_MAX];
  fy_pipeline_t *pl = NULL;
  va_list ap;
  size_t i;
  cr_assert_leq(n, FY_PIPELINE_MAX);
  va_start(ap, n);
  for (i = 0; i < n; i++)
    layers[i] = va_arg(ap, fy_policy_t *);
  va_end(ap);
  cr_assert_eq(fy_pipeline_new(fx->ctx, layers, n, &pl), 0);
  cr_assert_not_null(pl);
  cr_assert_eq(fy_pipeline_size(pl), n);
  cr_assert_eq(fy_pipeline_ctx(pl), fx->ctx);
  return pl;
}

/* ---- counting allocator ------------------------------------------------- */

fa_stats_t FA = {0, 0, 0, 0, -1, -1};

static int fa_fail_now(void) {
  long i = FA.requests++;
  if (i == FA.fail_at || (FA.fail_from >= 0 && i >= FA.fail_from)) {
    FA.failed++;
    return 1;
  }
  return 0;
}

void *fa_malloc(size_t size) {
  void *p;
  if (fa_fail_now())
    return NULL;
  p = malloc(size);
  if (p != NULL)
    FA.live++;
  return p;
}

void *fa_calloc(size_t count, size_t size) {
  void *p;
  if (fa_fail_now())
    return NULL;
  p = calloc(count, size);
  if (p != NULL)
    FA.live++;
  return p;
}

void *fa_realloc(void *ptr, size_t size) {
  void *p;
  if (ptr == NULL)
    return fa_malloc(size);
  if (fa_fail_now())
    return NULL;
  p = realloc(ptr, size);
  return p;
}

void fa_free(void *ptr) {
  if (ptr == NULL)
    return;
  FA.live--;
  FA.frees++;
  free(ptr);
}

void fa_install(long fail_at) {
  memset(&FA, 0, sizeof(FA));
  FA.fail_at = fail_at;
  FA.fail_from = -1;
  cr_assert_eq(fy_replace_allocator(fa_malloc, fa_realloc, fa_calloc, fa_free),
               0);
}

void fa_install_exhausted(long from) {
  fa_install(-1);
  FA.fail_from = from;
}

void fa_fail_next(void) { FA.fail_at = FA.requests; }

void fa_fail_all(int on) { FA.fail_from = on ? FA.requests : -1; }

void fa_restore(void) {
  cr_assert_eq(fy_replace_allocator(malloc, realloc, calloc, free), 0);
}

/* ---- allocation-failure runs -------------------------------------------- */

unsigned enomem;

int ok_or_enomem(int rc, const char *what) {
  if (rc == UV_ENOMEM) {
    enomem++;
    return rc;
  }
  cr_assert_eq(rc, 0, "%s: %s (fail_at %ld)", what, fy_err_name(rc),
               FA.fail_at);
  return rc;
}

static int fa_seen(const fa_plan_t *plan) {
  return enomem >= 1 || (plan->excused != NULL && plan->excused());
}

static long fa_count_once(const fa_plan_t *plan) {
  fa_install(-1);
  enomem = 0;
  plan->scenario();
  cr_assert_eq(enomem, 0, "%s: UV_ENOMEM without an injected failure",
               plan->what);
  cr_assert_eq(FA.live, 0, "%s: %ld blocks leaked", plan->what, FA.live);
  return FA.requests;
}

long fa_count(const fa_plan_t *plan) {
  long n = fa_count_once(plan);
  if (plan->count_twice) {
    long n2 = fa_count_once(plan);
    cr_assert_eq(n, n2, "%s: %ld then %ld allocations: timing-dependent",
                 plan->what, n, n2);
  }
  cr_assert_gt(n, plan->min_points, "%s allocates too little to be a test",
               plan->what);
  return n;
}

/* Run |plan| once per i < n: with request i failing alone, or (|exhaust|)
 * with every request from i on failing. */
static void fa_each(const fa_plan_t *plan, long n, int exhaust) {
  const char *how = exhaust ? "exhausted from" : "failing allocation";
  long i;
  for (i = 0; i < n; i++) {
    if (exhaust)
      fa_install_exhausted(i);
    else
      fa_install(i);
    enomem = 0;
    plan->scenario();
    if (!exhaust)
      cr_assert_eq(FA.failed, 1, "%s: allocation %ld never requested",
                   plan->what, i);
    cr_assert(fa_seen(plan), "%s: %s %ld: nothing failed visibly", plan->what,
              how, i);
    cr_assert_eq(FA.live, 0, "%s: %s %ld: %ld blocks leaked", plan->what, how,
                 i, FA.live);
  }
}

void fa_fail_each(const fa_plan_t *plan, long n) { fa_each(plan, n, 0); }

void fa_exhaust_each(const fa_plan_t *plan, long n) { fa_each(plan, n, 1); }

long fa_run(const fa_plan_t *plan) {
  long n = fa_count(plan);
  fa_fail_each(plan, n);
  fa_exhaust_each(plan, n);
  fa_restore();
  return n;
}
