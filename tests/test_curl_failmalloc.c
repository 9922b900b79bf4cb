/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * Allocation failure injection through the libcurl adapter (rule 6), as
 * tests/test_failmalloc_patterns.c does for the patterns: a scenario runs
 * once to count the library's allocations N, then once per allocation
 * i < N with the i-th one failing, then once per i with every allocation
 * from the i-th on failing (a heap that stays exhausted).  The scenarios
 * talk to real test upstreams (fy_up_spawn, each on its own thread) through
 * real libcurl, on a real-clock context.
 *
 * Only fortify's allocations are counted and failed: the adapter's (its
 * state, poll blocks, per-host entries, request bodies, response buffers)
 * and the core's.  curl allocates with its own allocator, which can only be
 * replaced process-wide (curl_global_init_mem), so its failures are not
 * injected here.
 *
 * Each run checks:
 * - the failure surfaces as UV_ENOMEM to the caller that needed the memory:
 *   a constructor, a request setter or fy_curl_start() returns it, or a
 *   call completes with it, or a policy that absorbed it says so (an
 *   attempt or retry event carrying it, detail.cause);
 * - every started call is called back exactly once, never from inside the
 *   call that started it, and with the status the scenario expects or
 *   UV_ENOMEM;
 * - the objects stay usable: an API that returned UV_ENOMEM is called
 *   again, and a call that completed with UV_ENOMEM is started again, on
 *   the same objects; after a single failure both must then work exactly
 *   as without it, and the scenario's last request must succeed;
 * - everything closes (adapter, pipeline, context), uv_loop_close() == 0,
 *   and the counting allocator shows nothing left.
 *
 * N is counted at run time: the freelists are bypassed under ASan and with
 * FY_NO_POOL, so it differs between builds.  The scenarios are arranged so
 * that N does not depend on timing (small bodies, one connection per host
 * and request wave); the driver checks that every failure point is met. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "fortify/curl.h"
#include "upstream.h"

#define NREQ 6

/* ---- the world of one run ----------------------------------------------- */

typedef struct freq_s {
  fy_curl_req_t req;
  int inited;   /* fy_curl_req_init() succeeded */
  int started;  /* calls started (restarts included) */
  unsigned ncb; /* callbacks */
  int status;
  int expect; /* the status of a normal run */
} freq_t;

static fy_up_t *UP[3];
static char URL[3][64];

static uv_loop_t loop;
static uv_timer_t guard;
static fy_ctx_t *ctx;
static fy_curl_t *cu;
static fy_curl_pipeline_t *cp;
static freq_t R[NREQ];
static unsigned closed;   /* close callbacks */
static unsigned to_close; /* close callbacks asked for */
static int in_api;        /* inside fy_curl_start() */
static unsigned nested;   /* callbacks from inside fy_curl_start() */

static int single(void) {
  return FA.fail_at >= 0; /* one failure (not an exhausted heap) */
}

static void on_event(fy_ctx_t *c, const fy_event_t *ev, void *ud) {
  (void)c;
  (void)ud;
  /* An attempt that failed for want of memory, a retry deciding about one:
   * the failure was seen. */
  if (ev->status == UV_ENOMEM &&
      (ev->type == FY_EV_ATTEMPT_DONE || ev->type == FY_EV_RETRY ||
       ev->type == FY_EV_CALL_DONE || ev->type == FY_EV_REJECT))
    enomem++;
}

static void on_guard(uv_timer_t *t) {
  (void)t;
}

/* Call |expr| again when it ran out of memory: after a single failure the
 * second try must work (nothing half-done was left behind). */
#define AGAIN(rc, expr, what)                                                  \
  do {                                                                         \
    (rc) = ok_or_enomem((expr), (what));                                       \
    if ((rc) == UV_ENOMEM) {                                                   \
      (rc) = ok_or_enomem((expr), (what));                                     \
      cr_assert((rc) == 0 || !single(), "%s failed twice (fail_at %ld)",       \
                (what), FA.fail_at);                                           \
    }                                                                          \
  } while (0)

static unsigned calls_done(void) {
  unsigned i, n = 0;
  for (i = 0; i < NREQ; i++)
    n += R[i].ncb;
  return n;
}

static unsigned calls_started(void) {
  unsigned i, n = 0;
  for (i = 0; i < NREQ; i++)
    n += (unsigned)R[i].started;
  return n;
}

static void on_done(fy_call_t *call, int status) {
  freq_t *r = fy_container_of(call, freq_t, req.call);
  if (in_api)
    nested++;
  r->ncb++;
  r->status = status;
  if (status == UV_ENOMEM || call->detail.cause == UV_ENOMEM)
    enomem++;
}

static void begin(void) {
  int rc;
  memset(R, 0, sizeof(R));
  enomem = closed = to_close = nested = 0;
  in_api = 0;
  ctx = NULL;
  cu = NULL;
  cp = NULL;
  cr_assert_eq(uv_loop_init(&loop), 0);
  cr_assert_eq(uv_timer_init(&loop, &guard), 0);
  AGAIN(rc, fy_ctx_new(&loop, NULL, &ctx), "fy_ctx_new");
  if (rc != 0) {
    cr_assert_null(ctx);
    return;
  }
  AGAIN(rc, fy_ctx_listen(ctx, FY_EV_ALL, on_event, NULL, NULL),
        "fy_ctx_listen");
}

static int new_adapter(void) {
  int rc;
  AGAIN(rc, fy_curl_new(ctx, NULL, &cu), "fy_curl_new");
  if (rc != 0)
    cr_assert_null(cu);
  return rc;
}

static int new_pipeline(uint32_t max_hosts) {
  fy_curl_pipeline_opts_t o;
  int rc;
  fy_curl_pipeline_opts_init(&o);
  o.preset.name = "fm";
  o.preset.total_timeout_ms = 10000;
  o.preset.attempt_timeout_ms = 5000;
  o.preset.max_attempts = 3;
  o.preset.retry_initial_delay_ms = 1;
  o.preset.retry_max_delay_ms = 2;
  o.preset.retry_jitter = FY_RETRY_JITTER_NONE;
  o.preset.breaker_failures = 100; /* never opens here */
  o.max_hosts = max_hosts;
  AGAIN(rc, fy_curl_pipeline_new(ctx, &o, &cp), "fy_curl_pipeline_new");
  if (rc != 0)
    cr_assert_null(cp);
  return rc;
}

/* Bind R[i] to the adapter, with a URL, an optional header and body. */
static int prep(int i, int host, const char *path, const char *header,
                const char *body, int expect) {
  char url[256];
  freq_t *r = &R[i];
  int rc;
  snprintf(url, sizeof(url), "%s%s", URL[host], path);
  r->expect = expect;
  /* No fortify allocation here: the easy handle is curl's. */
  cr_assert_eq(fy_curl_req_init(cu, &r->req), 0);
  r->inited = 1;
  AGAIN(rc, fy_curl_req_set_url(&r->req, url), "fy_curl_req_set_url");
  if (rc == 0 && header != NULL)
    AGAIN(rc, fy_curl_req_add_header(&r->req, header),
          "fy_curl_req_add_header");
  if (rc == 0 && body != NULL) {
    AGAIN(rc, fy_curl_req_set_body(&r->req, body, strlen(body)),
          "fy_curl_req_set_body");
    fy_curl_req_set_idempotent(&r->req, 1);
  }
  return rc;
}

static int start(int i) {
  freq_t *r = &R[i];
  int rc;
  in_api++;
  AGAIN(rc, fy_curl_start(&r->req, fy_curl_pipeline_get(cp), on_done),
        "fy_curl_start");
  in_api--;
  if (rc == 0)
    r->started++;
  return rc;
}

static int all_done(void) {
  return calls_done() >= calls_started();
}

/* Run the loop until |pred| holds or |ms| passed. */
static int wait_until(int (*pred)(void), uint64_t ms) {
  uint64_t until = uv_hrtime() + ms * 1000000u;
  uv_timer_start(&guard, on_guard, 5, 5);
  while (!pred() && uv_hrtime() < until)
    uv_run(&loop, UV_RUN_ONCE);
  uv_timer_stop(&guard);
  return pred();
}

/* Wait for every started call; a call that ran out of memory is started
 * again once (same request, same pipeline, same adapter). */
static void settle(void) {
  int i, again;
  do {
    cr_assert(wait_until(all_done, 10000), "%u of %u calls done (fail_at %ld)",
              calls_done(), calls_started(), FA.fail_at);
    again = 0;
    for (i = 0; i < NREQ; i++) {
      freq_t *r = &R[i];
      if (r->started == 1 && r->ncb == 1 && r->status == UV_ENOMEM &&
          start(i) == 0)
        again = 1;
    }
  } while (again);
}

/* Every call was called back once per start, never nested, with the
 * status a normal run gives or UV_ENOMEM; after a single failure, the
 * last call of every request (restarted if need be) is a normal one. */
static void check_calls(void) {
  int i;
  cr_assert_eq(nested, 0, "a callback ran inside fy_curl_start()");
  for (i = 0; i < NREQ; i++) {
    freq_t *r = &R[i];
    if (r->started == 0)
      continue;
    cr_assert_eq(r->ncb, (unsigned)r->started,
                 "request %d: %u callbacks for %d starts (fail_at %ld)", i,
                 r->ncb, r->started, FA.fail_at);
    cr_assert(r->status == r->expect || r->status == UV_ENOMEM ||
                  r->req.call.detail.cause == UV_ENOMEM,
              "request %d: %s, expected %s (fail_at %ld)", i,
              fy_err_name(r->status), fy_err_name(r->expect), FA.fail_at);
    if (single())
      cr_assert_eq(r->status, r->expect,
                   "request %d not usable after failure %ld: %s", i, FA.fail_at,
                   fy_err_name(r->status));
  }
}

static void finish(void) {
  uint64_t until;
  int i;
  if (ctx == NULL)
    goto out;
  if (cp != NULL && fy_curl_pipeline_close(cp, fx_count_closed, &closed) == 0)
    to_close++;
  if (cu != NULL) {
    cr_assert_eq(fy_curl_close(cu, fx_count_closed, &closed), 0);
    to_close++;
  }
  cr_assert(wait_until(all_done, 5000), "calls left after the close");
  check_calls();
  for (i = 0; i < NREQ; i++)
    if (R[i].inited)
      cr_assert_eq(fy_curl_req_cleanup(&R[i].req), 0);
  cr_assert_eq(fy_ctx_close(ctx, fx_count_closed, &closed), 0);
  to_close++;
out:
  uv_close((uv_handle_t *)&guard, NULL);
  /* Bounded (the suite has no Criterion timeout): nothing may stay open. */
  until = uv_hrtime() + UINT64_C(10000000000);
  while (uv_run(&loop, UV_RUN_NOWAIT) != 0 && uv_hrtime() < until)
    ;
  cr_assert_eq(uv_run(&loop, UV_RUN_NOWAIT), 0, "handles left (fail_at %ld)",
               FA.fail_at);
  cr_assert_eq(closed, to_close, "%u of %u close callbacks (fail_at %ld)",
               closed, to_close, FA.fail_at);
  cr_assert_eq(uv_loop_close(&loop), 0);
}

/* ---- scenarios ------------------------------------------------------------
 */

/* (a) The default pipeline (total timeout -> retry -> per-host breakers ->
 * per-try timeout) over two hosts: a GET answered 503 and retried, a POST
 * with a header and a body (idempotent), a GET with a header, then a
 * second wave on the same requests and connections, and a last request. */
static void scen_pipeline(void) {
  begin();
  if (ctx == NULL || new_adapter() != 0 || new_pipeline(8) != 0)
    goto out;
  if (prep(0, 0, "/r?status=503", NULL, NULL, FY_CURL_EHTTP(503)) == 0)
    start(0);
  if (prep(1, 1, "/echo", "Content-Type: text/plain", "fortify", 0) == 0)
    start(1);
  if (prep(2, 0, "/g", "X-Fy: 1", NULL, 0) == 0)
    start(2);
  settle();
  if (R[0].started && R[0].status == FY_CURL_EHTTP(503))
    cr_assert_eq(R[0].req.attempts, 3, "the 503 was retried");
  if (R[1].started && R[1].status == 0)
    cr_assert_str_eq(R[1].req.body.data, "fortify");
  /* Second wave: the requests again, on warm connections and buffers. */
  if (R[2].started && R[2].status == 0)
    start(2);
  if (R[1].started && R[1].status == 0)
    start(1);
  settle();
  if (prep(5, 1, "/last", NULL, NULL, 0) == 0)
    start(5);
  settle();
  if (R[5].started && R[5].status == 0)
    cr_assert_str_eq(R[5].req.body.data, "ok\n");
out:
  finish();
}

static fy_up_stats_t base_stats[3];

static uint64_t server_requests(void) {
  uint64_t n = 0;
  int i;
  for (i = 0; i < 3; i++) {
    fy_up_stats_t st;
    if (UP[i] == NULL)
      continue;
    fy_up_stats(UP[i], &st);
    n += st.requests - base_stats[i].requests;
  }
  return n;
}

static int all_closed(void) {
  return closed >= to_close;
}

/* Every call either reached its server or is already done. */
static int all_in_flight(void) {
  unsigned i, pending = 0;
  for (i = 0; i < NREQ; i++)
    if (R[i].started > (int)R[i].ncb)
      pending++;
  return server_requests() >= pending;
}

/* (b) The adapter and the pipeline closed with transfers in flight: every
 * call completes with UV_ECANCELED, new starts are refused with
 * FY_ECLOSED. */
static void scen_close(void) {
  unsigned done_before;
  int i;
  for (i = 0; i < 3; i++)
    if (UP[i] != NULL)
      fy_up_stats(UP[i], &base_stats[i]);
  begin();
  if (ctx == NULL || new_adapter() != 0 || new_pipeline(8) != 0)
    goto out;
  for (i = 0; i < 4; i++)
    if (prep(i, i % 2, "/slow?latency=2000", i == 1 ? "X-Fy: 1" : NULL,
             i == 3 ? "body" : NULL, UV_ECANCELED) == 0)
      start(i);
  /* Calls that failed for want of memory go again before the close. */
  cr_assert(wait_until(all_in_flight, 5000),
            "requests never arrived (fail_at %ld)", FA.fail_at);
  for (i = 0; i < 4; i++)
    if (R[i].started == 1 && R[i].ncb == 1 && R[i].status == UV_ENOMEM)
      start(i);
  cr_assert(wait_until(all_in_flight, 5000), "requests never arrived");
  /* Closed with everything in flight; refused afterwards. */
  if (prep(4, 0, "/late", NULL, NULL, FY_ECLOSED) != 0)
    goto out;
  done_before = calls_done();
  cr_assert_eq(fy_curl_pipeline_close(cp, fx_count_closed, &closed), 0);
  to_close++;
  cr_assert_eq(fy_curl_close(cu, fx_count_closed, &closed), 0);
  to_close++;
  cr_assert_eq(calls_done(), done_before, "completed inside the close");
  cr_assert_eq(fy_curl_start(&R[4].req, fy_curl_pipeline_get(cp), on_done),
               FY_ECLOSED);
  cp = NULL;
  cu = NULL;
  cr_assert(wait_until(all_done, 5000), "calls left after the close");
  cr_assert(wait_until(all_closed, 5000), "close callbacks");
out:
  finish();
}

/* (c) The per-host table at its size (2 hosts, 3 servers): a host evicted
 * with a call in flight, idle hosts evicted, evicted hosts coming back
 * with fresh breakers. */
static void scen_evict(void) {
  fy_curl_hosts_stats_t hs;
  begin();
  if (ctx == NULL || new_adapter() != 0 || new_pipeline(2) != 0)
    goto out;
  /* Host 0 stays busy while hosts 1 and 2 push it out. */
  if (prep(0, 0, "/slow?latency=30", NULL, NULL, 0) == 0)
    start(0);
  if (prep(1, 1, "/a", "X-Fy: 1", NULL, 0) == 0)
    start(1);
  if (prep(2, 2, "/b", NULL, "x", 0) == 0)
    start(2);
  settle();
  /* Host 0 again (evicts 1), then host 1 (evicts 2). */
  if (prep(3, 0, "/c", NULL, NULL, 0) == 0)
    start(3);
  settle();
  if (prep(4, 1, "/d", NULL, NULL, 0) == 0)
    start(4);
  settle();
  /* The last request: host 2 once more. */
  if (prep(5, 2, "/e?status=404", NULL, NULL, FY_CURL_EHTTP(404)) == 0)
    start(5);
  settle();
  fy_curl_hosts_stats(fy_curl_pipeline_hosts(cp), &hs);
  cr_assert_leq(hs.hosts, 2);
  cr_assert_eq(hs.evicted_busy, 0);
  if (FA.fail_at < 0 && FA.failed == 0 && enomem == 0) {
    /* The count run, and runs whose failure the table never saw. */
    cr_assert_geq(hs.created, 5, "created %lu", (unsigned long)hs.created);
    cr_assert_geq(hs.evicted, 3, "evicted %lu", (unsigned long)hs.evicted);
  }
out:
  finish();
}

/* ---- the driver -----------------------------------------------------------
 */

typedef void (*scenario_fn)(void);

static void servers(int n) {
  fy_up_opts_t o;
  int i;
  memset(&o, 0, sizeof(o));
  o.quiet = 1;
  for (i = 0; i < n; i++) {
    o.seed = (uint64_t)i + 1;
    cr_assert_eq(fy_up_spawn(&o, &UP[i]), 0);
    fy_up_base_url(UP[i], URL[i], sizeof(URL[i]));
  }
}

static void servers_close(void) {
  int i;
  for (i = 0; i < 3; i++)
    if (UP[i] != NULL)
      fy_up_close(UP[i], NULL, NULL);
  memset(UP, 0, sizeof(UP));
}

static void run_failmalloc(const char *what, scenario_fn fn) {
  fa_plan_t plan = {what, fn, 10, 1, NULL};
  long n;
  uint64_t t0 = uv_hrtime();
  n = fa_run(&plan);
  /* The figure for docs/RELIABILITY.md. */
  fprintf(stderr,
          "curl_failmalloc: %s: %ld allocation points, %ld runs, %.1f s\n",
          what, n, 2 * n + 2, (double)(uv_hrtime() - t0) / 1e9);
}

/* No Criterion timeout (mixing suite timeouts makes Criterion 2.4 leak in
 * its runner under ASan): every wait here is bounded instead. */
TestSuite(curl_failmalloc);

Test(curl_failmalloc, pipeline_two_hosts_retried_503) {
  servers(2);
  run_failmalloc("pipeline", scen_pipeline);
  servers_close();
}

Test(curl_failmalloc, close_with_transfers_in_flight) {
  servers(2);
  run_failmalloc("close", scen_close);
  servers_close();
}

Test(curl_failmalloc, host_table_eviction) {
  servers(3);
  run_failmalloc("evict", scen_evict);
  servers_close();
}
