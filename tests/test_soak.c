/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * Soak: a long, seeded run of calls through full pipelines (a preset, and
 * a fallback + bulkhead wrapped around the preset's own policies) with
 * injected faults: failures at start, synchronous and late errors, latency
 * on the manual clock, stalls that only a cancel or a timeout ends, stalls
 * that ignore the cancel and report long after, results with destructors,
 * retry-after hints, callers cancelling, a breaker reset now and then,
 * pipelines closed and rebuilt with calls in flight, and the whole preset
 * closed and rebuilt.
 *
 * Checked: every started call is called back exactly once and never from
 * inside fy_call_start()/fy_call_cancel(); every result is destroyed once;
 * at the end of each round, once the calls drained, no call, frame or task
 * is left (fy_ctx_stats); the live allocations that are not freelist
 * blocks (the objects) are the same at the end of every round, the
 * freelists stay bounded, and the allocation requests after warm-up are
 * counted (through fy_replace_allocator: RSS would measure libc, not us);
 * after the context closes nothing is left allocated.
 *
 * Size: FY_SOAK_CALLS calls (default 200000, the CI size); `make soak` runs
 * millions.  FY_SOAK_SEED changes the seed.  The figures are printed. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"

#define ROUNDS 10
#define MAX_INFLIGHT 256
#define NATT 8192
#define NRES 8192

/* ---- seeded randomness --------------------------------------------------- */

static uint64_t rng;

static uint64_t rnd(void) {
  uint64_t z = (rng += UINT64_C(0x9e3779b97f4a7c15));
  z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
  z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
  return z ^ (z >> 31);
}

static unsigned pct(void) {
  return (unsigned)(rnd() % 100);
}

/* ---- results: a ring of reusable counted objects ------------------------- */

typedef struct res_s {
  int live;
} res_t;

static res_t RES[NRES];
static unsigned res_next;
static unsigned long res_made, res_freed, res_bad;

static void res_dtor(void *p) {
  res_t *r = p;
  if (r < RES || r >= RES + NRES || !r->live) {
    res_bad++;
    return;
  }
  r->live = 0;
  res_freed++;
}

static res_t *res_new(void) {
  unsigned i;
  for (i = 0; i < NRES; i++) {
    res_t *r = &RES[(res_next + i) % NRES];
    if (!r->live) {
      res_next = (unsigned)(r - RES) + 1;
      r->live = 1;
      res_made++;
      return r;
    }
  }
  return NULL;
}

/* ---- the operation with injected faults ---------------------------------- */

typedef struct satt_s {
  fy_deadline_t timer; /* latency: reports when it fires */
  fy_attempt_t *a;
  int status; /* what it reports when the timer fires */
  int ignore_cancel;
} satt_t;

static satt_t ATT[NATT];
static int att_free[NATT];
static int att_nfree;
static unsigned long att_started, att_reported;

static void att_report(satt_t *t, int status) {
  fy_attempt_t *a = t->a;
  t->a = NULL;
  fy_deadline_stop(&t->timer);
  att_free[att_nfree++] = (int)(t - ATT);
  att_reported++;
  if (status == 0 && pct() < 20) {
    res_t *r = res_new();
    if (r != NULL)
      fy_attempt_set_result(a, r, res_dtor);
  }
  cr_assert_eq(fy_attempt_done(a, status), 0);
}

static void on_latency(fy_deadline_t *d) {
  satt_t *t = fy_container_of(d, satt_t, timer);
  att_report(t, t->status);
}

static int failure(void) {
  static const int codes[] = {UV_EIO, UV_ECONNRESET, UV_ETIMEDOUT, UV_EPIPE,
                              UV_ECONNREFUSED};
  return codes[rnd() % (sizeof(codes) / sizeof(codes[0]))];
}

static int soak_start(fy_attempt_t *a, void *arg) {
  unsigned p = pct();
  satt_t *t;
  (void)arg;
  att_started++;
  if (p < 30) { /* at once, mostly fine */
    att_reported++;
    fy_attempt_done(a, pct() < 85 ? 0 : failure());
    return 0;
  }
  if (p < 35) { /* refused at once */
    att_reported++;
    return failure();
  }
  if (att_nfree == 0) {
    att_reported++;
    return UV_EAGAIN;
  }
  t = &ATT[att_free[--att_nfree]];
  t->a = a;
  a->data = t;
  t->ignore_cancel = 0;
  t->status = pct() < 80 ? 0 : failure();
  if (t->status != 0 && pct() < 10)
    fy_attempt_set_retry_after(a, rnd() % 200);
  fy_deadline_init(FX.ctx, &t->timer, on_latency);
  if (p < 80) {
    /* Latency: 1 to 300 ms, beyond the per-try timeout now and then. */
    fy_deadline_start(&t->timer, 1 + rnd() % 300);
  } else if (p < 92) {
    /* A stall: only a cancel (a timeout, a caller, a close) ends it. */
  } else {
    /* A stall that ignores cancellation and reports much later. */
    t->ignore_cancel = 1;
    fy_deadline_start(&t->timer, 2000 + rnd() % 8000);
  }
  return 0;
}

static void soak_cancel(fy_attempt_t *a, void *arg) {
  satt_t *t = a->data;
  (void)arg;
  if (t->ignore_cancel)
    return;
  att_report(t, UV_ECANCELED);
}

static const fy_op_t soak_op = {soak_start, soak_cancel};

/* The fallback: mostly a cached answer, sometimes down too. */
static int fb_start(fy_attempt_t *a, void *arg) {
  (void)arg;
  att_started++;
  att_reported++;
  fy_attempt_done(a, pct() < 90 ? 0 : UV_EIO);
  return 0;
}

static const fy_op_t fb_op = {fb_start, NULL};

/* ---- calls --------------------------------------------------------------- */

typedef struct scall_s {
  fy_call_t call;
  int busy;
  unsigned ncb;
} scall_t;

static scall_t CALLS[MAX_INFLIGHT];
static int inflight;
static int in_api;
static unsigned long started, refused, completed, completed_ok;
static unsigned long cb_errors;

static void soak_cb(fy_call_t *call, int status) {
  scall_t *c = fy_container_of(call, scall_t, call);
  void *result;
  fy_result_dtor dtor;
  if (!c->busy || c->ncb != 0 || in_api || status > 0)
    cb_errors++;
  c->ncb++;
  c->busy = 0;
  inflight--;
  completed++;
  completed_ok += status == 0;
  /* Take the result now and then (then it is ours to free). */
  if (pct() < 50 && (result = fy_call_take_result(call, &dtor)) != NULL)
    dtor(result);
}

/* ---- the objects --------------------------------------------------------- */

typedef struct world_s {
  fy_preset_t *preset;
  fy_fallback_t *fallback;
  fy_bulkhead_t *bulkhead;
  fy_pipeline_t *composite;
} world_t;

static world_t W;
static unsigned closes_asked, closes_done;
static unsigned long churn_requests; /* allocations of rebuilds, not calls */
static unsigned long events;

static void build_composite(void) {
  fy_policy_t *layers[6];
  size_t n = 0;
  layers[n++] = fy_fallback_policy(W.fallback);
  layers[n++] = fy_bulkhead_policy(W.bulkhead);
  if (fy_preset_timeout(W.preset, FY_TIMEOUT_TOTAL) != NULL)
    layers[n++] =
        fy_timeout_policy(fy_preset_timeout(W.preset, FY_TIMEOUT_TOTAL));
  layers[n++] = fy_retry_policy(fy_preset_retry(W.preset));
  layers[n++] = fy_breaker_policy(fy_preset_breaker(W.preset));
  layers[n++] =
      fy_timeout_policy(fy_preset_timeout(W.preset, FY_TIMEOUT_PER_TRY));
  cr_assert_eq(fy_pipeline_new(FX.ctx, layers, n, &W.composite), 0);
}

static void build_world(void) {
  fy_preset_opts_t po;
  fy_fallback_opts_t fo;
  fy_bulkhead_opts_t bo;

  fy_preset_opts_init(&po, FY_PRESET_RPC);
  po.name = "soak";
  po.attempt_timeout_ms = 200;
  po.total_timeout_ms = 1500;
  po.max_attempts = 3;
  po.retry_initial_delay_ms = 10;
  po.retry_max_delay_ms = 200;
  po.breaker_failures = 8;
  po.breaker_open_ms = 300;
  po.breaker_max_requests = 4;
  po.max_concurrent = 64;
  po.max_queue = 64;
  po.queue_timeout_ms = 100;
  cr_assert_eq(fy_preset_new(FX.ctx, &po, &W.preset), 0);

  fy_fallback_opts_init(&fo);
  fo.name = "soak.fallback";
  fo.op = &fb_op;
  cr_assert_eq(fy_fallback_new(FX.ctx, &fo, &W.fallback), 0);

  fy_bulkhead_opts_init(&bo);
  bo.name = "soak.gate";
  bo.max_concurrent = 48;
  bo.max_queue = 32;
  bo.queue_timeout_ms = 50;
  bo.order = FY_BULKHEAD_LIFO;
  cr_assert_eq(fy_bulkhead_new(FX.ctx, &bo, &W.bulkhead), 0);
  build_composite();
}

static void close_asked(int rc) {
  cr_assert_eq(rc, 0);
  closes_asked++;
}

static void close_composite(void) {
  close_asked(fy_pipeline_close(W.composite, fx_count_closed, &closes_done));
  W.composite = NULL;
}

/* Everything goes, calls in flight included. */
static void close_world(void) {
  close_composite();
  close_asked(fy_fallback_close(W.fallback, fx_count_closed, &closes_done));
  close_asked(fy_bulkhead_close(W.bulkhead, fx_count_closed, &closes_done));
  close_asked(fy_preset_close(W.preset, fx_count_closed, &closes_done));
  memset(&W, 0, sizeof(W));
}

/* ---- driving ------------------------------------------------------------- */

static void start_one(void) {
  fy_call_opts_t opts;
  scall_t *c = NULL;
  fy_pipeline_t *pl;
  int i, rc;

  for (i = 0; i < MAX_INFLIGHT; i++) {
    c = &CALLS[(size_t)(rnd() % MAX_INFLIGHT)];
    if (!c->busy)
      break;
  }
  if (c == NULL || c->busy)
    return;
  memset(&opts, 0, sizeof(opts));
  opts.flags = pct() < 70 ? FY_CALL_IDEMPOTENT : 0;
  if (pct() < 10)
    opts.timeout_ms = 50 + rnd() % 500;
  pl = pct() < 40 ? fy_preset_pipeline(W.preset) : W.composite;
  c->busy = 1;
  c->ncb = 0;
  in_api++;
  rc = fy_call_start_opts(&c->call, pl, &soak_op, c, &opts, soak_cb);
  in_api--;
  if (rc == 0) {
    started++;
    inflight++;
    return;
  }
  /* Refusals only: an open breaker, full bulkheads, a closing pipeline. */
  cr_assert(rc == FY_ECIRCUITOPEN || rc == FY_EBULKHEADFULL || rc == FY_ECLOSED,
            "refused with %s", fy_err_name(rc));
  cr_assert_eq(c->ncb, 0, "a refused call was called back");
  c->busy = 0;
  refused++;
}

static void cancel_one(void) {
  scall_t *c = &CALLS[(size_t)(rnd() % MAX_INFLIGHT)];
  int rc;
  if (!c->busy)
    return;
  in_api++;
  rc = fy_call_cancel(&c->call);
  in_api--;
  cr_assert(rc == 0 || rc == UV_EBUSY, "cancel: %s", fy_err_name(rc));
}

static int live_attempts(void) {
  return NATT - att_nfree;
}

/* Let every call finish: no new work, time runs until nothing is left. */
static void quiesce(void) {
  int i;
  for (i = 0; i < 400 && (inflight > 0 || live_attempts() > 0); i++)
    fx_advance(&FX, 100);
  cr_assert_eq(inflight, 0, "%d calls never completed", inflight);
  cr_assert_eq(live_attempts(), 0, "%d attempts never reported",
               live_attempts());
  fx_advance(&FX, 0);
}

static unsigned long env_or(const char *name, unsigned long dflt) {
  const char *v = getenv(name);
  return v != NULL && *v != '\0' ? strtoul(v, NULL, 10) : dflt;
}

TestSuite(soak);

Test(soak, full_pipelines_with_faults_stay_flat) {
  unsigned long target = env_or("FY_SOAK_CALLS", 200000);
  unsigned long per_round = target / ROUNDS + 1;
  unsigned long req_warm = 0, req_end, steps = 0;
  long objects_base = -1;
  size_t pool_max = 0;
  fy_ctx_stats_t st;
  int round, i;

  rng = env_or("FY_SOAK_SEED", 20261126);
  memset(RES, 0, sizeof(RES));
  for (i = 0; i < NATT; i++)
    att_free[i] = NATT - 1 - i;
  att_nfree = NATT;

  fa_install(-1);
  fx_init(&FX, 1000);
  cr_assert_eq(
      fy_ctx_listen(FX.ctx, FY_EV_ALL, fx_count_event, &events, NULL), 0);
  build_world();

  for (round = 0; round < ROUNDS; round++) {
    unsigned long goal = started + per_round;
    while (started < goal) {
      unsigned p = pct();
      steps++;
      if (p < 55 && inflight < MAX_INFLIGHT)
        start_one();
      else if (p < 60)
        cancel_one();
      else if (p < 95)
        fx_advance(&FX, rnd() % 8);
      else if (p < 96 && pct() < 5)
        cr_assert_eq(fy_breaker_reset(fy_preset_breaker(W.preset)), 0);
      else if (p < 97 && pct() < 2) {
        /* A pipeline goes away with calls in it, another replaces it. */
        long before = FA.requests;
        close_composite();
        build_composite();
        churn_requests += (unsigned long)(FA.requests - before);
      } else if (p < 98 && pct() < 1) {
        /* Everything goes: preset, fallback, bulkhead, pipelines. */
        long before = FA.requests;
        close_world();
        build_world();
        churn_requests += (unsigned long)(FA.requests - before);
      } else {
        fx_advance(&FX, 0);
      }
    }
    quiesce();
    fy_ctx_stats(FX.ctx, &st);
    cr_assert_eq(st.calls, 0);
    cr_assert_eq(st.frames, 0, "%zu frames left after round %d", st.frames,
                 round);
    cr_assert_eq(st.queued, 0);
    /* Only the breaker's open -> half-open timer may be pending. */
    cr_assert_leq(st.deadlines, 1, "%zu deadlines left", st.deadlines);
    if (st.pool_cached > pool_max)
      pool_max = st.pool_cached;
    /* The objects: everything alive that is not a cached block. */
    if (round == 0) {
      req_warm = (unsigned long)FA.requests;
      churn_requests = 0;
      objects_base = FA.live - (long)st.pool_cached;
    } else {
      cr_assert_eq(FA.live - (long)st.pool_cached, objects_base,
                   "round %d: %ld objects, %ld after warm-up", round,
                   FA.live - (long)st.pool_cached, objects_base);
    }
  }
  req_end = (unsigned long)FA.requests;
  cr_assert_eq(cb_errors, 0, "%lu callbacks ran twice, nested or badly",
               cb_errors);
  cr_assert_eq(completed, started);
  cr_assert_eq(att_reported, att_started);
  /* The freelists keep at most 4096 blocks in each of 16 size classes. */
  cr_assert_leq(pool_max, (size_t)16 * 4096);
  /* With the freelists on (not under ASan or FY_NO_POOL), calls allocate
   * nothing once warm: what remains is the freelists reaching a new peak. */
  if (pool_max > 0)
    cr_assert_leq(req_end - req_warm - churn_requests, started / 1000 + 256,
                  "%lu allocations outside rebuilds for %lu calls",
                  req_end - req_warm - churn_requests, started);

  close_world();
  fx_advance(&FX, 0);
  cr_assert_eq(closes_done, closes_asked, "%u of %u close callbacks",
               closes_done, closes_asked);
  fx_finish(&FX);
  cr_assert_eq(res_bad, 0);
  cr_assert_eq(res_freed, res_made, "%lu of %lu results freed", res_freed,
               res_made);
  cr_assert_eq(FA.live, 0, "%ld blocks leaked", FA.live);
  fa_restore();

  fprintf(stderr,
          "soak: %lu calls (%lu ok, %lu refused), %lu attempts, %lu steps, "
          "%lu events; objects %ld, freelist peak %zu blocks; allocation "
          "requests: %lu in warm-up, %lu after, of which %lu rebuilding "
          "objects: %.5f per call\n",
          started, completed_ok, refused, att_started, steps, events,
          objects_base, pool_max, req_warm, req_end - req_warm, churn_requests,
          (double)(req_end - req_warm - churn_requests) /
              (double)(started > per_round ? started - per_round : 1));
}
