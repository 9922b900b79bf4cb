/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * HTTP faults through the libcurl adapter and the default pipeline
 * (bulkhead -> total timeout -> retry -> per-host breakers -> per-try
 * timeout), against test upstreams on their own threads (fy_up_spawn):
 * resets before and in the middle of a body, stalls, garbage and truncated
 * responses, huge headers, slow chunked bodies, 429/503 with absurd
 * Retry-After values, client-side cancellations, and the adapter and the
 * pipeline closed in the middle of a run.
 *
 * First one deterministic test per fault kind that tests/test_curl.c does
 * not already cover (it has resets, garbage, Content-Length truncation and
 * stalls through a bare retry, and the Retry-After parsing): the status,
 * the attempts and the retry's verdict each kind gives through the whole
 * pipeline.  Then a seeded soak mixing them all, which checks:
 * - every call started is called back exactly once, never from inside the
 *   call that started it; refusals at start are known refusals;
 * - every outcome is a classified code: 0, an HTTP status
 *   (FY_CURL_EHTTP), a UV_E* code libuv knows or a FY_E* code, never
 *   anything else; and it is one the kind can give;
 * - the attempts agree with the retry policy (its verdict and the kind);
 * - nothing hangs: a watchdog fails the run when no call completes for
 *   a while, and each call's time is bounded by the total timeout;
 * - nothing leaks: the counting allocator is back to zero once the context
 *   closed, and uv_loop_close() == 0;
 * - the library's allocations per call after warm-up are printed (not
 *   asserted: a response larger than a request's buffers grows them once).
 *
 * Size: FY_CURL_SOAK_CALLS calls (default 5000; a tenth under valgrind),
 * `make soak` runs more; FY_CURL_SOAK_SEED changes the seed.  The figures
 * are printed. */
#include <criterion/criterion.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define FY_HAVE_VALGRIND_H 1
#endif
#endif

#include "fixture.h"
#include "fortify/curl.h"
#include "upstream.h"

#define NHOSTS 3
#define MAX_ATTEMPTS 3

/* valgrind makes everything about twenty times slower: the timeouts and
 * the size of the soak follow. */
static int under_valgrind(void) {
  const char *p = getenv("LD_PRELOAD");
#ifdef FY_HAVE_VALGRIND_H
  if (RUNNING_ON_VALGRIND)
    return 1;
#endif
  return p != NULL && strstr(p, "vgpreload") != NULL;
}

static unsigned long env_or(const char *name, unsigned long dflt) {
  const char *v = getenv(name);
  return v != NULL && *v != '\0' ? strtoul(v, NULL, 10) : dflt;
}

/* ---- the world: a loop, a context, upstreams, an adapter, a pipeline ---- */

static uv_loop_t loop;
static uv_timer_t guard;
static fy_ctx_t *ctx;
static fy_curl_t *cu;
static fy_curl_pipeline_t *cp;
static fy_up_t *UP[NHOSTS];
static char URL[NHOSTS][64];
static unsigned closes_asked, closes_done;
static uint64_t per_try_ms, total_ms;
static uint32_t breaker_failures = 1000; /* the soak lowers it */

static void on_guard(uv_timer_t *t) {
  (void)t;
}

static void on_closed(void *obj, void *ud) {
  (void)obj;
  (void)ud;
  closes_done++;
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

static int all_closed(void) {
  return closes_done >= closes_asked;
}

static void servers(void) {
  fy_up_opts_t o;
  int i;
  memset(&o, 0, sizeof(o));
  o.quiet = 1;
  for (i = 0; i < NHOSTS; i++) {
    o.seed = (uint64_t)i + 7;
    cr_assert_eq(fy_up_spawn(&o, &UP[i]), 0);
    fy_up_base_url(UP[i], URL[i], sizeof(URL[i]));
  }
}

static uint64_t server_requests(void) {
  uint64_t n = 0;
  int i;
  for (i = 0; i < NHOSTS; i++) {
    fy_up_stats_t st;
    fy_up_stats(UP[i], &st);
    n += st.requests;
  }
  return n;
}

static void build_pipeline(void) {
  fy_curl_pipeline_opts_t o;
  fy_curl_pipeline_opts_init(&o);
  o.preset.name = "faults";
  o.preset.attempt_timeout_ms = per_try_ms;
  o.preset.total_timeout_ms = total_ms;
  o.preset.max_attempts = MAX_ATTEMPTS;
  o.preset.retry_initial_delay_ms = 1;
  o.preset.retry_max_delay_ms = 4;
  o.preset.breaker_failures = breaker_failures;
  o.preset.breaker_open_ms = 20;
  o.preset.max_concurrent = 48;
  o.preset.max_queue = 32;
  o.preset.queue_timeout_ms = total_ms;
  /* No holds after a 429: each case here is about what the retry makes of
   * one response's Retry-After, and a hold would refuse the next case's
   * calls to the same host (tests/test_curl_limit.c tests the holds). */
  o.max_hold_ms = 0;
  cr_assert_eq(fy_curl_pipeline_new(ctx, &o, &cp), 0);
}

/* Timeouts short enough for stalls to end quickly (valgrind needs more). */
static uint64_t short_per_try(void) {
  return under_valgrind() ? 400 : 40;
}
static uint64_t short_total(void) {
  return under_valgrind() ? 4000 : 600;
}

static void world_new(uint64_t per_try, uint64_t total) {
  /* Every call measures its latency: the soak bounds it. */
  fy_ctx_opts_t copts = {0};
  copts.measure_calls = 1;
  per_try_ms = per_try;
  total_ms = total;
  cr_assert_eq(uv_loop_init(&loop), 0);
  cr_assert_eq(uv_timer_init(&loop, &guard), 0);
  cr_assert_eq(fy_ctx_new(&loop, &copts, &ctx), 0);
  cr_assert_eq(fy_curl_new(ctx, NULL, &cu), 0);
  build_pipeline();
  servers();
}

static void close_adapter_and_pipeline(void) {
  cr_assert_eq(fy_curl_pipeline_close(cp, on_closed, NULL), 0);
  closes_asked++;
  cr_assert_eq(fy_curl_close(cu, on_closed, NULL), 0);
  closes_asked++;
  cp = NULL;
  cu = NULL;
}

static void world_close(void) {
  uint64_t until;
  int i;
  if (cu != NULL)
    close_adapter_and_pipeline();
  cr_assert(wait_until(all_closed, 5000), "%u of %u close callbacks",
            closes_done, closes_asked);
  cr_assert_eq(fy_ctx_close(ctx, on_closed, NULL), 0);
  closes_asked++;
  uv_close((uv_handle_t *)&guard, NULL);
  /* Bounded: the suite has no Criterion timeout (see the top). */
  until = uv_hrtime() + UINT64_C(10000000000);
  while (uv_run(&loop, UV_RUN_NOWAIT) != 0 && uv_hrtime() < until)
    ;
  cr_assert_eq(uv_run(&loop, UV_RUN_NOWAIT), 0, "handles left on the loop");
  cr_assert_eq(closes_done, closes_asked);
  cr_assert_eq(uv_loop_close(&loop), 0);
  for (i = 0; i < NHOSTS; i++)
    fy_up_close(UP[i], NULL, NULL);
  memset(UP, 0, sizeof(UP));
}

/* A classified outcome: success, an HTTP status, a libuv code or one of
 * the library's; never positive, never a number nobody knows. */
static int classified(int status) {
  char buf[64];
  if (status == 0 || fy_curl_http_code(status) != 0 || fy_is_fy_error(status))
    return 1;
  if (status > 0)
    return 0;
  uv_err_name_r(status, buf, sizeof(buf));
  return strncmp(buf, "Unknown", 7) != 0;
}

/* ---- one request, waited for -------------------------------------------- */

typedef struct one_s {
  fy_curl_req_t req;
  int done;
  int status;
  uint64_t t0, ms;
} one_t;

static one_t *g_one;

static void one_done(fy_call_t *call, int status) {
  one_t *o = fy_container_of(call, one_t, req.call);
  o->done++;
  o->status = status;
  o->ms = (uv_hrtime() - o->t0) / 1000000u;
}

static int one_finished(void) {
  return g_one->done > 0;
}

/* GET (or POST |body|) |path| on host 0 through the pipeline. */
static void one_run(one_t *o, const char *path, const char *body) {
  char url[512];
  memset(o, 0, sizeof(*o));
  snprintf(url, sizeof(url), "%s%s", URL[0], path);
  cr_assert_eq(fy_curl_req_init(cu, &o->req), 0);
  cr_assert_eq(fy_curl_req_set_url(&o->req, url), 0);
  if (body != NULL)
    cr_assert_eq(fy_curl_req_set_body(&o->req, body, strlen(body)), 0);
  o->t0 = uv_hrtime();
  cr_assert_eq(fy_curl_start(&o->req, fy_curl_pipeline_get(cp), one_done), 0);
  g_one = o;
  cr_assert(wait_until(one_finished, 10000), "%s never completed", path);
  cr_assert_eq(o->done, 1);
  cr_assert(classified(o->status), "%s: %d", path, o->status);
  cr_assert_eq(o->req.attempts, o->req.call.detail.attempts);
}

static void one_cleanup(one_t *o) {
  cr_assert_eq(fy_curl_req_cleanup(&o->req), 0);
}

static int is_retry_verdict(const one_t *o, int state) {
  const fy_detail_t *d = &o->req.call.detail;
  return d->by_kind != NULL && strcmp(d->by_kind, "retry") == 0 &&
         d->state == state;
}

/* Roomy timeouts by default: what a test checks must not depend on how
 * loaded the machine is. */
static void setup_one(void) {
  world_new(5000, 20000);
}
static void teardown_one(void) {
  world_close();
}

/* ---- one test per fault kind -------------------------------------------- */

/* No Criterion timeout: every wait here is bounded, and the soak has a
 * watchdog, so that `make soak` may run as long as its size needs. */
TestSuite(curl_faults, .init = setup_one, .fini = teardown_one);

Test(curl_faults, huge_headers_past_the_limits) {
  one_t o;
  /* Past the adapter's limit (64 KiB): our side, not retried, not held
   * against the host. */
  one_run(&o, "/h?action=huge_headers&huge_kb=100", NULL);
  cr_assert_eq(o.status, UV_EMSGSIZE, "%s", fy_err_name(o.status));
  cr_assert_eq(o.req.attempts, 1);
  one_cleanup(&o);
  /* Within it: a normal answer. */
  memset(&o, 0, sizeof(o));
  one_run(&o, "/h?action=huge_headers&huge_kb=16", NULL);
  cr_assert_eq(o.status, 0);
  cr_assert_gt(o.req.headers.len, 16 << 10);
  one_cleanup(&o);
}

/* Headers past curl's own cap (300 KiB since 7.84), which curl reports as
 * a receive error (UV_ECONNRESET, retried): the adapter stops first, at
 * FY_CURL_HEADERS_MAX, stored or not, with UV_EMSGSIZE, not retried. */
Test(curl_faults, huge_headers_past_curls_own_limit) {
  static const size_t keep[] = {FY_CURL_HEADERS_MAX, 0};
  char url[128];
  unsigned i;
  one_t o;
  snprintf(url, sizeof(url), "%s/h?action=huge_headers&huge_kb=1024", URL[0]);
  for (i = 0; i < 2; i++) {
    memset(&o, 0, sizeof(o));
    cr_assert_eq(fy_curl_req_init(cu, &o.req), 0);
    cr_assert_eq(fy_curl_req_set_url(&o.req, url), 0);
    /* Nothing above the cap can be asked for. */
    cr_assert_eq(fy_curl_req_set_limits(&o.req, 1 << 20,
                                        FY_CURL_HEADERS_MAX + 1),
                 UV_EINVAL);
    cr_assert_eq(fy_curl_req_set_limits(&o.req, 1 << 20, keep[i]), 0);
    o.t0 = uv_hrtime();
    cr_assert_eq(fy_curl_start(&o.req, fy_curl_pipeline_get(cp), one_done),
                 0);
    g_one = &o;
    cr_assert(wait_until(one_finished, 10000));
    cr_assert_eq(o.status, UV_EMSGSIZE, "%s (%s)", fy_err_name(o.status),
                 o.req.errbuf);
    cr_assert_eq(o.req.attempts, 1);
    one_cleanup(&o);
  }
}

Test(curl_faults, truncated_chunked_body_is_a_premature_end) {
  one_t o;
  one_run(&o, "/t?action=truncated&chunked=1&chunk=100&body=1000", NULL);
  cr_assert_eq(o.status, UV_EOF, "%s (%s)", fy_err_name(o.status),
               o.req.errbuf);
  cr_assert_eq(o.req.attempts, MAX_ATTEMPTS, "retried");
  cr_assert(is_retry_verdict(&o, FY_RETRY_STOP_EXHAUSTED));
  one_cleanup(&o);
}

Test(curl_faults, reset_in_a_chunked_body) {
  one_t o;
  one_run(&o, "/r?action=reset_mid_body&chunked=1&chunk=1000&body=20000", NULL);
  cr_assert(o.status == UV_ECONNRESET || o.status == UV_EOF, "%s (%s)",
            fy_err_name(o.status), o.req.errbuf);
  cr_assert_eq(o.req.attempts, MAX_ATTEMPTS);
  cr_assert(is_retry_verdict(&o, FY_RETRY_STOP_EXHAUSTED));
  one_cleanup(&o);
}

/* Retry-After values a broken or hostile server may send, through the
 * whole pipeline: either a hint beyond the retry's ceiling (30 s), which
 * ends the retries at once with the server's status, or no hint at all,
 * which leaves the ordinary backoff (1-4 ms here).  Never a wait. */
Test(curl_faults, absurd_retry_after_never_stalls_the_client) {
  static const struct {
    const char *query;
    int stops; /* 1: the hint ends the retries; 0: no hint */
  } cases[] = {
      {"status=503&retry_after=315360000", 1},               /* 10 years */
      {"status=429&retry_after=99999999999999999999999", 1}, /* overflow */
      {"status=503&retry_after=Fri,+31+Dec+9999+23:59:59+GMT", 1},
      {"status=429&retry_after=-1", 0},
      {"status=503&retry_after=-86400", 0},
      {"status=503&retry_after=abc", 0},
      {"status=429&retry_after=Wed,+21+Oct+2015+07:28:00+GMT", 0}, /* past */
      {"status=503&retry_after=0", 0},
      {"status=503&retry_after=%20", 0},
  };
  size_t i;
  for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    char path[256];
    one_t o;
    int code = strstr(cases[i].query, "429") != NULL ? 429 : 503;
    snprintf(path, sizeof(path), "/ra?%s", cases[i].query);
    one_run(&o, path, NULL);
    cr_assert_eq(o.status, FY_CURL_EHTTP(code), "%s: %s", cases[i].query,
                 fy_err_name(o.status));
    cr_assert_lt(o.ms, 1000, "%s: waited %lu ms", cases[i].query,
                 (unsigned long)o.ms);
    if (cases[i].stops) {
      cr_assert_eq(o.req.attempts, 1, "%s: %u attempts", cases[i].query,
                   o.req.attempts);
      cr_assert(is_retry_verdict(&o, FY_RETRY_STOP_RETRY_AFTER), "%s",
                cases[i].query);
      cr_assert_eq(o.req.retry_after_ms, FY_CURL_RETRY_AFTER_MAX, "%s: capped",
                   cases[i].query);
    } else {
      cr_assert_eq(o.req.attempts, MAX_ATTEMPTS, "%s: %u attempts",
                   cases[i].query, o.req.attempts);
      cr_assert(is_retry_verdict(&o, FY_RETRY_STOP_EXHAUSTED), "%s",
                cases[i].query);
      cr_assert_eq(o.req.retry_after_ms, 0, "%s", cases[i].query);
    }
    one_cleanup(&o);
  }
}

/* The pipeline again with other timeouts. */
static void rebuild_pipeline(uint64_t per_try, uint64_t total) {
  cr_assert_eq(fy_curl_pipeline_close(cp, on_closed, NULL), 0);
  closes_asked++;
  per_try_ms = per_try;
  total_ms = total;
  build_pipeline();
}

Test(curl_faults, stalls_end_at_the_per_try_timeout_and_are_retried) {
  char slow[128];
  const char *paths[] = {
      "/s?action=stall", "/s?action=stall_mid_body&body=20000",
      "/s?latency=5000", slow, /* a body that keeps coming, too slowly */
  };
  size_t i;
  rebuild_pipeline(short_per_try(), short_total());
  snprintf(slow, sizeof(slow),
           "/s?body=8000&chunked=1&chunk=1000&chunk_delay=%lu",
           (unsigned long)per_try_ms / 4);
  for (i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
    one_t o;
    one_run(&o, paths[i], NULL);
    cr_assert_eq(o.status, UV_ETIMEDOUT, "%s: %s", paths[i],
                 fy_err_name(o.status));
    cr_assert_eq(o.req.attempts, MAX_ATTEMPTS, "%s", paths[i]);
    cr_assert(is_retry_verdict(&o, FY_RETRY_STOP_EXHAUSTED), "%s", paths[i]);
    cr_assert_lt(o.ms, total_ms + 500, "%s: %lu ms", paths[i],
                 (unsigned long)o.ms);
    one_cleanup(&o);
  }
}

Test(curl_faults, slow_chunked_body_within_the_per_try_timeout) {
  one_t o;
  one_run(&o, "/c?body=2000&chunked=1&chunk=500&chunk_delay=5", NULL);
  cr_assert_eq(o.status, 0, "%s", fy_err_name(o.status));
  cr_assert_eq(o.req.body.len, 2000);
  cr_assert_eq(o.req.attempts, 1);
  one_cleanup(&o);
}

static one_t g_slow;
static uv_timer_t g_poll; /* closed by the teardown's loop run */

/* Cancel as soon as the body has started. */
static void cancel_once_started(uv_timer_t *t) {
  if (g_slow.req.body.len == 0)
    return;
  uv_timer_stop(t);
  cr_assert_eq(fy_call_cancel(&g_slow.req.call), 0);
}

Test(curl_faults, cancel_in_the_middle_of_a_slow_body) {
  one_t *o = &g_slow;
  fy_curl_stats_t st;
  uint64_t before;
  char url[256];
  memset(o, 0, sizeof(*o));
  snprintf(url, sizeof(url), "%s%s", URL[0],
           "/c?body=100000&chunked=1&chunk=1000&chunk_delay=2");
  cr_assert_eq(fy_curl_req_init(cu, &o->req), 0);
  cr_assert_eq(fy_curl_req_set_url(&o->req, url), 0);
  before = server_requests();
  cr_assert_eq(fy_curl_start(&o->req, fy_curl_pipeline_get(cp), one_done), 0);
  cr_assert_eq(uv_timer_init(&loop, &g_poll), 0);
  cr_assert_eq(uv_timer_start(&g_poll, cancel_once_started, 1, 1), 0);
  g_one = o;
  cr_assert(wait_until(one_finished, 5000));
  uv_close((uv_handle_t *)&g_poll, NULL);
  cr_assert_eq(o->status, UV_ECANCELED, "%s", fy_err_name(o->status));
  cr_assert_eq(o->req.attempts, 1);
  cr_assert_gt(o->req.body.len, 0, "cancelled in the middle of the body");
  cr_assert_lt(o->req.body.len, 100000);
  fy_curl_stats(cu, &st);
  cr_assert_eq(st.transfers, 0);
  cr_assert_eq(server_requests() - before, 1, "not retried");
  one_cleanup(o);
}

/* ---- the soak ----------------------------------------------------------- */

enum {
  K_ONCE = 1u << 0,    /* its failure is final: one attempt */
  K_FAILS = 1u << 1,   /* every attempt fails, retryably: the retry gives up */
  K_RA_STOP = 1u << 2, /* an absurd Retry-After ends the retries at once */
  K_POST = 1u << 3,    /* POST, not idempotent: never retried */
  K_CANCEL = 1u << 4   /* the client cancels it after a few ms */
};

#define EHTTP FY_CURL_EHTTP

typedef struct kind_s {
  const char *name;
  const char *path; /* path and query */
  unsigned weight;
  unsigned flags;
  size_t max_headers; /* 0: the adapter's default (64 KiB) */
  int nst;
  int st[3]; /* what the kind itself gives */
} kind_t;

/* clang-format off */
static const kind_t KINDS[] = {
  /* name, path and query, weight, flags, header limit, outcomes */
  {"ok", "/ok", 18, 0, 0, 1, {0}},
  {"body", "/b?body=3000", 5, 0, 0, 1, {0}},
  {"chunked slow", "/c?body=2000&chunked=1&chunk=500&chunk_delay=3", 5, 0,
   0, 1, {0}},
  {"huge headers", "/h?action=huge_headers&huge_kb=16", 3, 0, 0, 1, {0}},
  {"post", "/echo", 3, K_POST, 0, 1, {0}},
  {"flaky 503", "/f?fail=0.5", 5, 0, 0, 2, {0, EHTTP(503)}},
  {"404", "/n?status=404", 3, K_ONCE, 0, 1, {EHTTP(404)}},
  {"headers over our limit", "/h?action=huge_headers&huge_kb=100", 2,
   K_ONCE, 0, 1, {UV_EMSGSIZE}},
  {"headers over curl's limit", "/h?action=huge_headers&huge_kb=400", 1,
   K_ONCE, FY_CURL_HEADERS_MAX, 1, {UV_EMSGSIZE}},
  {"reset", "/r?action=reset", 5, K_FAILS, 0, 2, {UV_ECONNRESET, UV_EPIPE}},
  {"reset mid body", "/r?action=reset_mid_body&body=20000", 4, K_FAILS, 0,
   2, {UV_ECONNRESET, UV_EOF}},
  {"reset mid chunked body",
   "/r?action=reset_mid_body&body=20000&chunked=1&chunk=1000", 2, K_FAILS,
   0, 2, {UV_ECONNRESET, UV_EOF}},
  {"stall", "/s?action=stall", 3, K_FAILS, 0, 1, {UV_ETIMEDOUT}},
  {"stall mid body", "/s?action=stall_mid_body&body=20000", 2, K_FAILS, 0,
   1, {UV_ETIMEDOUT}},
  {"latency past the per-try timeout", "/s?latency=5000", 2, K_FAILS, 0, 1,
   {UV_ETIMEDOUT}},
  {"garbage", "/g?action=garbage", 4, K_FAILS, 0, 1, {UV_EPROTO}},
  {"truncated", "/t?action=truncated&body=1000", 3, K_FAILS, 0, 1,
   {UV_EOF}},
  {"truncated chunked", "/t?action=truncated&body=1000&chunked=1&chunk=100",
   2, K_FAILS, 0, 1, {UV_EOF}},
  {"503", "/u?status=503", 3, K_FAILS, 0, 1, {EHTTP(503)}},
  {"post 503", "/echo?status=503", 2, K_POST, 0, 1, {EHTTP(503)}},
  {"429 Retry-After -1", "/u?status=429&retry_after=-1", 2, K_FAILS, 0, 1,
   {EHTTP(429)}},
  {"503 Retry-After abc", "/u?status=503&retry_after=abc", 2, K_FAILS, 0, 1,
   {EHTTP(503)}},
  {"503 Retry-After in the past",
   "/u?status=503&retry_after=Wed,+21+Oct+2015+07:28:00+GMT", 2, K_FAILS, 0,
   1, {EHTTP(503)}},
  {"429 Retry-After 10 years", "/u?status=429&retry_after=315360000", 2,
   K_RA_STOP, 0, 1, {EHTTP(429)}},
  {"503 Retry-After year 9999",
   "/u?status=503&retry_after=Fri,+31+Dec+9999+23:59:59+GMT", 2, K_RA_STOP,
   0, 1, {EHTTP(503)}},
  {"503 Retry-After overflowing",
   "/u?status=503&retry_after=99999999999999999999999", 1, K_RA_STOP, 0, 1,
   {EHTTP(503)}},
  {"cancelled in a slow body",
   "/c?body=100000&chunked=1&chunk=1000&chunk_delay=2", 4, K_CANCEL, 0, 1,
   {UV_ECANCELED}},
  {"cancelled early", "/ok", 2, K_CANCEL, 0, 2, {0, UV_ECANCELED}},
};
/* clang-format on */
#define NKINDS (sizeof(KINDS) / sizeof(KINDS[0]))

#define NSLOTS 64

typedef struct slot_s {
  fy_curl_req_t req;
  fy_deadline_t cancel; /* the client's cancellation */
  fy_curl_t *bound;     /* the adapter |req| is bound to */
  const kind_t *kind;
  int busy;
  unsigned ncb;
  unsigned epoch;  /* of the adapter the call started on */
  unsigned starts; /* FY_EV_ATTEMPT_START seen */
  unsigned dones;  /* FY_EV_ATTEMPT_DONE seen */
  int att[MAX_ATTEMPTS + 2];
} slot_t;

typedef struct tally_s {
  int code;
  unsigned long n;
} tally_t;

static slot_t SLOT[NSLOTS];
static tally_t OUT[64];
static unsigned long kind_calls[NKINDS], kind_own[NKINDS];
static unsigned long started, refused, completed, attempts, cancels;
static unsigned long posts_started; /* each copies its body: 1 allocation */
static unsigned long cb_errors, generic_outcomes, closed_epoch_calls;
static int inflight, in_api;
static unsigned epoch, closed_epoch;
static uint64_t rng;
static uint64_t last_progress;

static uint64_t rnd(void) {
  uint64_t z = (rng += UINT64_C(0x9e3779b97f4a7c15));
  z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
  z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
  return z ^ (z >> 31);
}

static void tally(int code) {
  size_t i;
  for (i = 0; i < sizeof(OUT) / sizeof(OUT[0]); i++) {
    if (OUT[i].n == 0)
      OUT[i].code = code;
    if (OUT[i].code == code) {
      OUT[i].n++;
      return;
    }
  }
  cr_assert_fail("more than 64 distinct outcomes");
}

static int own(const kind_t *k, int status) {
  int i;
  for (i = 0; i < k->nst; i++)
    if (k->st[i] == status)
      return 1;
  return 0;
}

/* What any call may end with, whatever its fault: its per-try or total
 * timeout (under load), its host's breaker opening between tries, the
 * bulkhead's queue, a cancel, the close. */
static int generic(int status) {
  return status == UV_ETIMEDOUT || status == FY_EDEADLINE ||
         status == FY_ECIRCUITOPEN || status == FY_EQUEUETIMEOUT ||
         status == UV_ECANCELED || status == FY_ECLOSED;
}

static int verdict(const fy_call_t *call, int state) {
  const fy_detail_t *d = &call->detail;
  return d->by_kind != NULL && strcmp(d->by_kind, "retry") == 0 &&
         d->state == state;
}

/* The attempts agree with the retry policy and with the kind. */
static void check_attempts(slot_t *s, int status) {
  const fy_call_t *call = &s->req.call;
  const kind_t *k = s->kind;
  unsigned a = s->req.attempts, i;
  cr_assert_eq(a, call->detail.attempts, "%s", k->name);
  cr_assert_eq(a, s->starts, "%s: %u attempts, %u starts", k->name, a,
               s->starts);
  cr_assert_leq(s->dones, a, "%s", k->name);
  cr_assert_leq(a, MAX_ATTEMPTS, "%s: %u attempts", k->name, a);
  /* Every attempt but the last failed, and not for good. */
  for (i = 0; i + 1 < s->dones; i++)
    cr_assert(s->att[i] != 0 && fy_curl_retry_classify(s->att[i], NULL) != 0,
              "%s: attempt %u of %u ended %s and was retried", k->name, i, a,
              fy_err_name(s->att[i]));
  if (fy_curl_http_code(status) != 0 && s->dones == a)
    cr_assert_eq(s->att[a - 1], status, "%s", k->name);
  if (verdict(call, FY_RETRY_STOP_EXHAUSTED))
    cr_assert_eq(a, MAX_ATTEMPTS, "%s: exhausted after %u", k->name, a);
  if (verdict(call, FY_RETRY_STOP_RETRY_AFTER))
    cr_assert(k->flags & K_RA_STOP, "%s: Retry-After stop", k->name);
  if (verdict(call, FY_RETRY_STOP_NOT_IDEMPOTENT))
    cr_assert((k->flags & K_POST) && a == 1, "%s: not idempotent", k->name);
  if (verdict(call, FY_RETRY_STOP_DEADLINE))
    cr_assert_lt(a, MAX_ATTEMPTS, "%s", k->name);
  if (!own(k, status) || generic(status))
    return;
  /* The kind's own outcome: how it got there is fixed. */
  /* (Earlier attempts may have timed out: they were checked above.) */
  if (k->flags & K_RA_STOP)
    cr_assert(verdict(call, FY_RETRY_STOP_RETRY_AFTER), "%s: %u attempts",
              k->name, a);
  if ((k->flags & K_POST) && status != 0)
    cr_assert(a == 1 && verdict(call, FY_RETRY_STOP_NOT_IDEMPOTENT),
              "%s: %u attempts", k->name, a);
  if (k->flags & K_FAILS)
    cr_assert(verdict(call, FY_RETRY_STOP_EXHAUSTED) ||
                  verdict(call, FY_RETRY_STOP_DEADLINE) ||
                  (status == UV_EMSGSIZE && a == 1),
              "%s: %s after %u attempts, retry state %d", k->name,
              fy_err_name(status), a, call->detail.state);
  if ((k->flags & K_ONCE) && s->dones == a && a > 1)
    cr_assert(s->att[a - 2] != status, "%s: a final outcome retried", k->name);
}

static void soak_done(fy_call_t *call, int status) {
  slot_t *s = fy_container_of(call, slot_t, req.call);
  const kind_t *k = s->kind;
  size_t ki = (size_t)(k - KINDS);
  uint64_t ms = call->detail.elapsed_ns / 1000000u;
  if (!s->busy || s->ncb != 0 || in_api || status > 0)
    cb_errors++;
  s->ncb++;
  s->busy = 0;
  fy_deadline_stop(&s->cancel);
  inflight--;
  completed++;
  attempts += s->req.attempts;
  last_progress = uv_hrtime();
  tally(status);
  cr_assert(classified(status), "%s: unclassified outcome %d", k->name, status);
  /* The bulkhead's queue, then the total timeout: nothing lasts longer. */
  cr_assert_leq(ms, 2 * total_ms + 2000, "%s: %lu ms", k->name,
                (unsigned long)ms);
  if (s->epoch == closed_epoch) {
    /* Caught by the close: cancelled, or refused by the closing objects. */
    closed_epoch_calls++;
    cr_assert(own(k, status) || generic(status), "%s: %s during the close",
              k->name, fy_err_name(status));
    return;
  }
  kind_calls[ki]++;
  if (own(k, status))
    kind_own[ki]++;
  else if (generic(status))
    generic_outcomes++;
  else
    cr_assert_fail("%s: %s is not an outcome of this fault", k->name,
                   fy_err_name(status));
  check_attempts(s, status);
}

static void on_soak_event(fy_ctx_t *c, const fy_event_t *ev, void *ud) {
  slot_t *s;
  (void)c;
  (void)ud;
  if ((const char *)ev->call < (const char *)SLOT ||
      (const char *)ev->call >= (const char *)(SLOT + NSLOTS))
    return; /* not a call of the soak (or a detached attempt's: NULL) */
  s = fy_container_of(ev->call, slot_t, req.call);
  if (!s->busy)
    return;
  if (ev->type == FY_EV_ATTEMPT_START)
    s->starts++;
  else if (ev->type == FY_EV_ATTEMPT_DONE && s->dones < MAX_ATTEMPTS + 2)
    s->att[s->dones++] = ev->status;
}

static void on_cancel(fy_deadline_t *d) {
  slot_t *s = fy_container_of(d, slot_t, cancel);
  int rc;
  if (!s->busy)
    return;
  cancels++;
  in_api++;
  rc = fy_call_cancel(&s->req.call);
  in_api--;
  cr_assert(rc == 0 || rc == UV_EBUSY, "cancel: %s", fy_err_name(rc));
}

static const kind_t *pick_kind(void) {
  static unsigned total;
  unsigned w, i;
  if (total == 0)
    for (i = 0; i < NKINDS; i++)
      total += KINDS[i].weight;
  w = (unsigned)(rnd() % total);
  for (i = 0; w >= KINDS[i].weight; i++)
    w -= KINDS[i].weight;
  return &KINDS[i];
}

/* Start one call on a free slot; 0, or the refusal (counted). */
static int start_one(void) {
  char url[256];
  slot_t *s = NULL;
  const kind_t *k;
  int i, rc;

  for (i = 0; i < NSLOTS && s == NULL; i++)
    if (!SLOT[i].busy)
      s = &SLOT[i];
  cr_assert_not_null(s);
  if (s->bound != cu) {
    /* Its adapter was closed: bind it to the new one. */
    if (s->bound != NULL)
      cr_assert_eq(fy_curl_req_cleanup(&s->req), 0);
    cr_assert_eq(fy_curl_req_init(cu, &s->req), 0);
    s->bound = cu;
  }
  k = pick_kind();
  snprintf(url, sizeof(url), "%s%s", URL[rnd() % NHOSTS], k->path);
  cr_assert_eq(fy_curl_req_set_url(&s->req, url), 0);
  fy_curl_req_clear_headers(&s->req);
  cr_assert_eq(fy_curl_req_add_header(&s->req, "X-Fy-Soak: 1"), 0);
  if (k->flags & K_POST) {
    cr_assert_eq(fy_curl_req_set_method(&s->req, "POST"), 0);
    cr_assert_eq(fy_curl_req_set_body(&s->req, "soak", 4), 0);
  } else {
    cr_assert_eq(fy_curl_req_set_method(&s->req, NULL), 0);
    cr_assert_eq(fy_curl_req_set_body(&s->req, NULL, 0), 0);
  }
  cr_assert_eq(fy_curl_req_set_limits(&s->req, FY_CURL_BODY_DEFAULT,
                                      k->max_headers != 0
                                          ? k->max_headers
                                          : FY_CURL_HEADERS_DEFAULT),
               0);
  s->kind = k;
  s->busy = 1;
  s->ncb = 0;
  s->starts = s->dones = 0;
  s->epoch = epoch;
  in_api++;
  rc = fy_curl_start(&s->req, fy_curl_pipeline_get(cp), soak_done);
  in_api--;
  if (rc != 0) {
    s->busy = 0;
    cr_assert(rc == FY_ECIRCUITOPEN || rc == FY_EBULKHEADFULL, "%s: %s",
              k->name, fy_err_name(rc));
    cr_assert_eq(s->ncb, 0, "a refused call was called back");
    refused++;
    return rc;
  }
  started++;
  inflight++;
  posts_started += (k->flags & K_POST) != 0;
  if (k->flags & K_CANCEL)
    cr_assert_eq(fy_deadline_start(&s->cancel,
                                   rnd() % (k->nst > 1 ? 3 : per_try_ms / 2)),
                 0);
  return 0;
}

static int drained(void) {
  return inflight == 0 && all_closed();
}

/* The adapter and the pipeline closed with calls in flight, then new
 * ones in their place. */
static void close_and_rebuild(void) {
  closed_epoch = epoch;
  close_adapter_and_pipeline();
  cr_assert(wait_until(drained, 10000), "%d calls left after the close",
            inflight);
  epoch++;
  cr_assert_eq(fy_curl_new(ctx, NULL, &cu), 0);
  build_pipeline();
}

static const char *kind_of(int code, char *buf, size_t len) {
  return fy_curl_err_name_r(code, buf, len);
}

Test(curl_faults, soak_mixed_faults) {
  unsigned long target = env_or("FY_CURL_SOAK_CALLS", 5000);
  unsigned long warm, req_warm = 0, req_end, churn = 0, posts = 0;
  uint64_t t0, watchdog_ns, up_before, up_requests;
  fy_curl_stats_t cst;
  fy_ctx_stats_t st;
  int i, closed_once = 0;

  /* The fixture's world is replaced by one built under the counting
   * allocator, with breakers that can open. */
  world_close();
  if (under_valgrind() && getenv("FY_CURL_SOAK_CALLS") == NULL)
    target /= 10;
  /* The requests' buffers grow to the largest answer each has seen, and
   * the close in the middle frees them: the last quarter is measured. */
  warm = target - target / 4;
  rng = env_or("FY_CURL_SOAK_SEED", 20261127);
  breaker_failures = 30;
  closes_asked = closes_done = 0;
  fa_install(-1);
  world_new(short_per_try(), short_total());
  cr_assert_eq(fy_ctx_listen(ctx,
                             FY_EV_MASK(FY_EV_ATTEMPT_START) |
                                 FY_EV_MASK(FY_EV_ATTEMPT_DONE),
                             on_soak_event, NULL, NULL),
               0);
  for (i = 0; i < NSLOTS; i++)
    fy_deadline_init(ctx, &SLOT[i].cancel, on_cancel);
  closed_epoch = UINT_MAX;
  up_before = server_requests();
  watchdog_ns = (under_valgrind() ? 120 : 20) * UINT64_C(1000000000);
  t0 = last_progress = uv_hrtime();

  uv_timer_start(&guard, on_guard, 5, 5);
  while (started < target || inflight > 0) {
    while (started < target && inflight < NSLOTS && start_one() == 0)
      ;
    if (!closed_once && started >= target / 2) {
      long before = FA.requests;
      closed_once = 1;
      uv_timer_stop(&guard);
      close_and_rebuild();
      churn += (unsigned long)(FA.requests - before);
      uv_timer_start(&guard, on_guard, 5, 5);
    }
    if (req_warm == 0 && completed >= warm) {
      req_warm = (unsigned long)FA.requests + 1;
      posts = posts_started;
    }
    uv_run(&loop, UV_RUN_ONCE);
    cr_assert_lt(uv_hrtime() - last_progress, watchdog_ns,
                 "no call completed for %lu s: %d in flight",
                 (unsigned long)(watchdog_ns / 1000000000u), inflight);
  }
  uv_timer_stop(&guard);
  req_end = (unsigned long)FA.requests;

  cr_assert_eq(cb_errors, 0, "%lu callbacks ran twice, nested or badly",
               cb_errors);
  cr_assert_eq(completed, started);
  for (i = 0; i < NSLOTS; i++)
    cr_assert_eq(SLOT[i].busy, 0);
  fy_curl_stats(cu, &cst);
  cr_assert_eq(cst.transfers, 0);
  cr_assert_eq(cst.started, cst.completed);
  fy_ctx_stats(ctx, &st);
  cr_assert_eq(st.calls, 0);
  cr_assert_eq(st.frames, 0);
  /* The servers may read more requests than attempts were made: curl
   * sends a request again, once, on a new connection when a reused one
   * turns out to be closed before any answer (a reset, say). */
  up_requests = server_requests() - up_before;

  fprintf(stderr,
          "curl_faults: %lu calls in %.1f s, %lu refused at start; %lu "
          "attempts, %lu requests read by the servers; %lu cancels; %lu "
          "calls caught by the close, %lu ended by a timeout, a breaker or "
          "the queue instead of their fault\n",
          started, (double)(uv_hrtime() - t0) / 1e9, refused, attempts,
          (unsigned long)up_requests, cancels, closed_epoch_calls,
          generic_outcomes);
  fprintf(stderr,
          "curl_faults: fortify allocations in the last quarter: %lu for "
          "%lu calls (%.3f per call), of which %lu copies of POST bodies; "
          "%lu rebuilding the adapter and the pipeline in the middle\n",
          req_end - req_warm, started - warm,
          (double)(req_end - req_warm) / (double)(started - warm),
          posts_started - posts, churn);
  for (i = 0; i < 64 && OUT[i].n > 0; i++) {
    char buf[64];
    fprintf(stderr, "curl_faults:   %-22s %lu\n",
            kind_of(OUT[i].code, buf, sizeof(buf)), OUT[i].n);
  }
  for (i = 0; i < (int)NKINDS; i++)
    cr_assert(kind_calls[i] > 0 || target < 1000, "%s never ran",
              KINDS[i].name);

  for (i = 0; i < NSLOTS; i++)
    if (SLOT[i].bound != NULL)
      cr_assert_eq(fy_curl_req_cleanup(&SLOT[i].req), 0);
  world_close();
  cr_assert_eq(FA.live, 0, "%ld blocks leaked", FA.live);
  fa_restore();
  /* The fixture's teardown closes a world: give it one. */
  breaker_failures = 1000;
  world_new(5000, 20000);
}
