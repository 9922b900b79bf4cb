/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * Per-host rate limits and 429 feedback in the libcurl adapter's per-host
 * stage, through real libcurl against test upstreams running in-process
 * on the same loop.  The clock is real (the I/O is), so the limits used
 * here refill slowly (one token a minute) wherever a test asserts that a
 * call is refused, and the waits are asserted on order and counts: what
 * reached each upstream, and when.  Timing bounds are one-sided. */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fortify.h"
#include "fortify/curl.h"
#include "upstream.h"

/* ---- fixture ----------------------------------------------------------- */

static uv_loop_t loop;
static fy_ctx_t *ctx;
static fy_curl_t *cu;
static fy_up_t *up, *up2;
static char base[64], base2[64];
static uv_timer_t guard; /* wakes uv_run() up while a test waits */
static int ctx_closed, guard_closed;

static void on_guard(uv_timer_t *t) { (void)t; }

static void count_close(void *obj, void *user_data) {
  (void)obj;
  (*(int *)user_data)++;
}

static void on_guard_closed(uv_handle_t *h) {
  (void)h;
  guard_closed++;
}

static fy_up_t *server(char *url, size_t len, uint64_t seed) {
  fy_up_opts_t o;
  fy_up_t *s = NULL;
  memset(&o, 0, sizeof(o));
  o.seed = seed;
  o.quiet = 1;
  cr_assert_eq(fy_up_start(&loop, &o, &s), 0);
  fy_up_base_url(s, url, len);
  return s;
}

static void setup(void) {
  cr_assert_eq(uv_loop_init(&loop), 0);
  cr_assert_eq(fy_ctx_new(&loop, NULL, &ctx), 0);
  cr_assert_eq(uv_timer_init(&loop, &guard), 0);
  up = server(base, sizeof(base), 11);
  up2 = server(base2, sizeof(base2), 12);
  cr_assert_eq(fy_curl_new(ctx, NULL, &cu), 0);
}

static int wait_for(const int *counter, int target, uint64_t ms) {
  uint64_t until = uv_hrtime() + ms * 1000000u;
  uv_timer_start(&guard, on_guard, 10, 10);
  while (*counter < target && uv_hrtime() < until)
    uv_run(&loop, UV_RUN_ONCE);
  uv_timer_stop(&guard);
  return *counter >= target;
}

static void run_for(uint64_t ms) {
  int never = 0;
  wait_for(&never, 1, ms);
}

/* The context closes everything it holds: the adapter, the pipelines and
 * the policies (a waiting call completes with UV_ECANCELED). */
static void teardown(void) {
  if (up != NULL)
    fy_up_close(up, NULL, NULL);
  if (up2 != NULL)
    fy_up_close(up2, NULL, NULL);
  up = up2 = NULL;
  cr_assert_eq(fy_ctx_close(ctx, count_close, &ctx_closed), 0);
  uv_close((uv_handle_t *)&guard, on_guard_closed);
  cr_assert_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  cr_assert_eq(ctx_closed, 1);
  cr_assert_eq(uv_loop_close(&loop), 0);
}

TestSuite(curl_limit, .init = setup, .fini = teardown, .timeout = 30);

/* ---- requests ---------------------------------------------------------- */

typedef struct treq_s {
  fy_curl_req_t req;
  int done;
  int status;
  int *order; /* where to note the completion order */
  int seq;
  uint64_t t0;
  uint64_t elapsed_ms;
  uint64_t up_requests; /* the upstream's count when it completed */
  fy_up_t *server;
} treq_t;

static int g_seq;

static uint64_t up_requests(fy_up_t *s) {
  fy_up_stats_t st;
  fy_up_stats(s, &st);
  return st.requests;
}

static void on_done(fy_call_t *call, int status) {
  treq_t *t = fy_container_of(call, treq_t, req.call);
  t->done++;
  t->status = status;
  t->seq = ++g_seq;
  /* On the loop's clock, which the limiter and its deadlines use: the
   * loop's cached time may lag the real time by a whole iteration (much
   * more under valgrind), and a wait is exact on this clock only. */
  t->elapsed_ms = uv_now(&loop) - t->t0;
  if (t->server != NULL)
    t->up_requests = up_requests(t->server);
}

static void treq_init(treq_t *t, fy_up_t *s, const char *b,
                      const char *path) {
  char url[512];
  memset(t, 0, sizeof(*t));
  t->server = s;
  snprintf(url, sizeof(url), "%s%s", b, path);
  cr_assert_eq(fy_curl_req_init(cu, &t->req), 0);
  cr_assert_eq(fy_curl_req_set_url(&t->req, url), 0);
}

static int treq_start(treq_t *t, fy_pipeline_t *pl) {
  t->t0 = uv_now(&loop);
  return fy_curl_start(&t->req, pl, on_done);
}

static void treq_run(treq_t *t, fy_pipeline_t *pl) {
  cr_assert_eq(treq_start(t, pl), 0);
  cr_assert(wait_for(&t->done, 1, 5000), "request did not complete");
  cr_assert_eq(t->done, 1);
}

static void treq_cleanup(treq_t *t) {
  cr_assert_eq(fy_curl_req_cleanup(&t->req), 0);
}

/* A hosts table with |limit| (NULL: none) and |max_hold_ms|. */
static fy_curl_hosts_t *hosts_new(const fy_limiter_opts_t *limit,
                                  uint64_t max_hold_ms) {
  fy_curl_hosts_opts_t o;
  fy_curl_hosts_t *h = NULL;
  fy_curl_hosts_opts_init(&o);
  o.name = "h";
  o.limit = limit;
  o.max_hold_ms = max_hold_ms;
  cr_assert_eq(fy_curl_hosts_new(ctx, &o, &h), 0);
  return h;
}

static fy_pipeline_t *pipeline_of(fy_curl_hosts_t *h) {
  fy_policy_t *layers[1] = {fy_curl_hosts_policy(h)};
  fy_pipeline_t *pl = NULL;
  cr_assert_eq(fy_pipeline_new(ctx, layers, 1, &pl), 0);
  return pl;
}

/* |burst| at once, then one token every |interval_ms| / |rate|. */
static void limit_init(fy_limiter_opts_t *lo, uint64_t rate,
                       uint64_t interval_ms, uint64_t burst, int wait) {
  fy_limiter_opts_init(lo);
  lo->rate = rate;
  lo->interval_ms = interval_ms;
  lo->burst = burst;
  lo->wait = wait;
}

/* A call refused at once by the host's limit, with the limiter's detail. */
static void expect_refused(treq_t *t, fy_pipeline_t *pl,
                           uint64_t max_retry_after) {
  const fy_detail_t *d = &t->req.call.detail;
  cr_assert_eq(treq_start(t, pl), FY_ERATELIMITED);
  cr_assert_str_eq(d->by_kind, "limiter");
  cr_assert_str_eq(d->by_name, "h.limit");
  cr_assert_eq(d->state, FY_ERATELIMITED);
  cr_assert_str_eq(d->key, fy_curl_req_host(&t->req));
  cr_assert(d->retry_after_ms >= 1 && d->retry_after_ms <= max_retry_after,
            "retry_after_ms %llu", (unsigned long long)d->retry_after_ms);
  cr_assert_eq(d->attempts, 0);
}

/* ---- the rate limit ---------------------------------------------------- */

/* Two calls in the burst go out; the third is refused at once, the
 * callback never runs, and the upstream never sees it. */
Test(curl_limit, over_the_rate_fails_fast_without_a_request) {
  fy_limiter_opts_t lo;
  fy_curl_hosts_t *h;
  fy_pipeline_t *pl;
  treq_t a, b, c;

  limit_init(&lo, 1, 60000, 2, 0);
  h = hosts_new(&lo, FY_CURL_HOLD_DEFAULT_MS);
  pl = pipeline_of(h);
  treq_init(&a, up, base, "/a");
  treq_init(&b, up, base, "/b");
  treq_init(&c, up, base, "/c");
  treq_run(&a, pl);
  treq_run(&b, pl);
  cr_assert_eq(a.status, 0);
  cr_assert_eq(b.status, 0);
  expect_refused(&c, pl, 60000);
  cr_assert_eq(c.req.call.detail.n[0], 2, "the limit: the burst");
  cr_assert_eq(c.req.call.detail.n[1], 0, "nothing remains");
  run_for(50);
  cr_assert_eq(c.done, 0, "a refusal never calls back");
  cr_assert_eq(up_requests(up), 2);
  treq_cleanup(&a);
  treq_cleanup(&b);
  treq_cleanup(&c);
}

/* Each scheme://host:port has a bucket of its own. */
Test(curl_limit, hosts_are_limited_independently) {
  fy_limiter_opts_t lo;
  fy_limiter_stats_t ls;
  fy_curl_hosts_t *h;
  fy_pipeline_t *pl;
  treq_t a1, a2, b1, b2;

  limit_init(&lo, 1, 60000, 1, 0);
  h = hosts_new(&lo, FY_CURL_HOLD_DEFAULT_MS);
  pl = pipeline_of(h);
  treq_init(&a1, up, base, "/1");
  treq_init(&a2, up, base, "/2");
  treq_init(&b1, up2, base2, "/1");
  treq_init(&b2, up2, base2, "/2");
  treq_run(&a1, pl);
  expect_refused(&a2, pl, 60000);
  /* The first host being over its limit does not touch the second. */
  treq_run(&b1, pl);
  cr_assert_eq(b1.status, 0);
  expect_refused(&b2, pl, 60000);
  cr_assert_eq(up_requests(up), 1);
  cr_assert_eq(up_requests(up2), 1);
  fy_limiter_stats(fy_curl_hosts_limiter(h), &ls);
  cr_assert_eq(ls.keys, 2, "one key per host");
  treq_cleanup(&a1);
  treq_cleanup(&a2);
  treq_cleanup(&b1);
  treq_cleanup(&b2);
}

/* With |wait|, the second call waits for its token: it is sent only after
 * the first has been answered, and at least one interval after the
 * first took the only token. */
Test(curl_limit, waiting_calls_are_sent_when_their_tokens_come) {
  fy_limiter_opts_t lo;
  fy_limiter_stats_t ls;
  fy_curl_hosts_t *h;
  fy_pipeline_t *pl;
  treq_t a, b, c;

  limit_init(&lo, 1, 300, 1, 1);
  h = hosts_new(&lo, FY_CURL_HOLD_DEFAULT_MS);
  pl = pipeline_of(h);
  treq_init(&a, up, base, "/a");
  treq_init(&b, up, base, "/b");
  treq_init(&c, up2, base2, "/c");
  cr_assert_eq(treq_start(&a, pl), 0);
  cr_assert_eq(treq_start(&b, pl), 0);
  cr_assert_eq(treq_start(&c, pl), 0, "another host does not wait");
  fy_limiter_stats(fy_curl_hosts_limiter(h), &ls);
  cr_assert_eq(ls.waiting, 1);
  cr_assert(wait_for(&a.done, 1, 5000));
  cr_assert(wait_for(&c.done, 1, 5000));
  cr_assert_eq(a.status, 0);
  cr_assert_eq(c.status, 0);
  cr_assert_eq(b.done, 0, "b still waits for its token");
  cr_assert_eq(a.up_requests, 1, "b was not sent before a was answered");
  cr_assert(wait_for(&b.done, 1, 5000));
  cr_assert_eq(b.done, 1);
  cr_assert_eq(b.status, 0);
  cr_assert(b.seq > a.seq);
  cr_assert_eq(b.up_requests, 2);
  cr_assert_eq(b.req.attempts, 1);
  cr_assert(b.elapsed_ms >= 250, "b waited %llu ms",
            (unsigned long long)b.elapsed_ms);
  fy_limiter_stats(fy_curl_hosts_limiter(h), &ls);
  cr_assert_eq(ls.waiting, 0);
  run_for(20);
  cr_assert_eq(b.done, 1, "called back once");
  treq_cleanup(&a);
  treq_cleanup(&b);
  treq_cleanup(&c);
}

/* A wait that would outlast the call's own deadline is refused at once. */
Test(curl_limit, a_wait_past_the_deadline_is_refused_at_once) {
  fy_limiter_opts_t lo;
  fy_timeout_opts_t to;
  fy_timeout_t *total = NULL;
  fy_curl_hosts_t *h;
  fy_policy_t *layers[2];
  fy_pipeline_t *pl = NULL;
  treq_t a, b;

  limit_init(&lo, 1, 60000, 1, 1);
  h = hosts_new(&lo, FY_CURL_HOLD_DEFAULT_MS);
  fy_timeout_opts_init(&to);
  to.timeout_ms = 2000;
  to.scope = FY_TIMEOUT_TOTAL;
  cr_assert_eq(fy_timeout_new(ctx, &to, &total), 0);
  layers[0] = fy_timeout_policy(total);
  layers[1] = fy_curl_hosts_policy(h);
  cr_assert_eq(fy_pipeline_new(ctx, layers, 2, &pl), 0);
  treq_init(&a, up, base, "/a");
  treq_init(&b, up, base, "/b");
  treq_run(&a, pl);
  cr_assert_eq(a.status, 0);
  /* Its token comes in a minute, its deadline in two seconds. */
  expect_refused(&b, pl, 60000);
  cr_assert(b.req.call.detail.retry_after_ms > 2000);
  cr_assert_eq(up_requests(up), 1);
  treq_cleanup(&a);
  treq_cleanup(&b);
}

/* Cancelling a waiting call ends it once with UV_ECANCELED, and it is
 * never sent. */
Test(curl_limit, cancelling_a_waiting_call) {
  fy_limiter_opts_t lo;
  fy_curl_hosts_t *h;
  fy_pipeline_t *pl;
  treq_t a, b;

  limit_init(&lo, 1, 60000, 1, 1);
  h = hosts_new(&lo, FY_CURL_HOLD_DEFAULT_MS);
  pl = pipeline_of(h);
  treq_init(&a, up, base, "/a");
  treq_init(&b, up, base, "/b");
  treq_run(&a, pl);
  cr_assert_eq(treq_start(&b, pl), 0);
  cr_assert_eq(fy_call_cancel(&b.req.call), 0);
  cr_assert_eq(b.done, 0, "never inside the cancel");
  cr_assert(wait_for(&b.done, 1, 2000));
  run_for(50);
  cr_assert_eq(b.done, 1);
  cr_assert_eq(b.status, UV_ECANCELED);
  cr_assert_str_eq(b.req.call.detail.by_kind, "limiter");
  cr_assert_eq(up_requests(up), 1);
  treq_cleanup(&a);
  treq_cleanup(&b);
}

/* Closing the table with a call waiting for tokens completes the call
 * once with UV_ECANCELED, closes the limiter, then calls back. */
Test(curl_limit, close_with_a_waiting_call) {
  fy_limiter_opts_t lo;
  fy_curl_hosts_t *h;
  fy_pipeline_t *pl;
  int closed = 0;
  treq_t a, b;

  limit_init(&lo, 1, 60000, 1, 1);
  h = hosts_new(&lo, FY_CURL_HOLD_DEFAULT_MS);
  pl = pipeline_of(h);
  treq_init(&a, up, base, "/a");
  treq_init(&b, up, base, "/b");
  treq_run(&a, pl);
  cr_assert_eq(treq_start(&b, pl), 0);
  cr_assert_eq(fy_curl_hosts_close(h, count_close, &closed), 0);
  cr_assert_null(fy_curl_hosts_limiter(h), "the limiter is closing");
  cr_assert_eq(b.done, 0, "never inside the close");
  cr_assert(wait_for(&closed, 1, 2000));
  cr_assert_eq(b.done, 1, "the waiting call ended before the close cb");
  cr_assert_eq(b.status, UV_ECANCELED);
  run_for(50);
  cr_assert_eq(b.done, 1);
  cr_assert_eq(up_requests(up), 1);
  treq_cleanup(&a);
  treq_cleanup(&b);
}

static int ctx_close_done;
static treq_t *ctx_close_req;
static void on_ctx_closed(void *obj, void *user_data) {
  (void)obj;
  (void)user_data;
  /* The waiting call ended first, exactly once. */
  cr_assert_eq(ctx_close_req->done, 1);
  ctx_close_done++;
}

/* The same when the context closes: the waiting call ends once with
 * UV_ECANCELED, and nothing leaks (uv_loop_close() in the teardown). */
Test(curl_limit, context_close_with_a_waiting_call) {
  fy_limiter_opts_t lo;
  fy_curl_hosts_t *h;
  fy_pipeline_t *pl;
  static treq_t a, b;

  limit_init(&lo, 1, 60000, 1, 1);
  h = hosts_new(&lo, FY_CURL_HOLD_DEFAULT_MS);
  pl = pipeline_of(h);
  treq_init(&a, up, base, "/a");
  treq_init(&b, up, base, "/b");
  treq_run(&a, pl);
  cr_assert_eq(treq_start(&b, pl), 0);
  ctx_close_req = &b;
  b.server = NULL; /* closed before b completes */
  fy_up_close(up, NULL, NULL);
  fy_up_close(up2, NULL, NULL);
  up = up2 = NULL;
  cr_assert_eq(fy_ctx_close(ctx, on_ctx_closed, NULL), 0);
  uv_close((uv_handle_t *)&guard, on_guard_closed);
  cr_assert_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  cr_assert_eq(ctx_close_done, 1);
  cr_assert_eq(b.done, 1);
  cr_assert_eq(b.status, UV_ECANCELED);
  treq_cleanup(&a);
  treq_cleanup(&b);
  cr_assert_eq(uv_loop_close(&loop), 0);
  /* Everything is gone: the teardown has nothing left to close. */
  cr_assert_eq(uv_loop_init(&loop), 0);
  cr_assert_eq(fy_ctx_new(&loop, NULL, &ctx), 0);
  cr_assert_eq(uv_timer_init(&loop, &guard), 0);
}

/* ---- 429 feedback ------------------------------------------------------ */

/* A 429 with Retry-After: 60 holds the host: the next call, to another
 * path of the same host, is refused at once and never sent, while
 * another host is not held. */
Test(curl_limit, a_429_with_retry_after_holds_the_host) {
  fy_curl_hosts_t *h = hosts_new(NULL, FY_CURL_HOLD_DEFAULT_MS);
  fy_pipeline_t *pl = pipeline_of(h);
  treq_t a, b, c;

  cr_assert_not_null(fy_curl_hosts_limiter(h),
                     "holds need a limiter even without a rate");
  treq_init(&a, up, base, "/x?status=429&retry_after=60");
  treq_init(&b, up, base, "/y");
  treq_init(&c, up2, base2, "/y");
  treq_run(&a, pl);
  cr_assert_eq(a.status, FY_CURL_EHTTP(429));
  cr_assert_eq(a.req.retry_after_ms, 60000);
  expect_refused(&b, pl, 60000);
  cr_assert(b.req.call.detail.retry_after_ms > 55000,
            "held for the hint: %llu",
            (unsigned long long)b.req.call.detail.retry_after_ms);
  cr_assert_eq(up_requests(up), 1, "the held call never reached the host");
  treq_run(&c, pl);
  cr_assert_eq(c.status, 0, "another host is not held");
  treq_cleanup(&a);
  treq_cleanup(&b);
  treq_cleanup(&c);
}

/* No Retry-After, no hold: the server gave no instant to wait for. */
Test(curl_limit, a_429_without_retry_after_holds_nothing) {
  fy_curl_hosts_t *h = hosts_new(NULL, FY_CURL_HOLD_DEFAULT_MS);
  fy_pipeline_t *pl = pipeline_of(h);
  treq_t a, b;

  treq_init(&a, up, base, "/x?status=429");
  treq_init(&b, up, base, "/y");
  treq_run(&a, pl);
  cr_assert_eq(a.status, FY_CURL_EHTTP(429));
  treq_run(&b, pl);
  cr_assert_eq(b.status, 0);
  cr_assert_eq(up_requests(up), 2);
  treq_cleanup(&a);
  treq_cleanup(&b);
}

/* Another status with Retry-After (a 503) is the retry's and the
 * breaker's business, not a hold. */
Test(curl_limit, only_a_429_holds) {
  fy_curl_hosts_t *h = hosts_new(NULL, FY_CURL_HOLD_DEFAULT_MS);
  fy_pipeline_t *pl = pipeline_of(h);
  treq_t a, b;

  treq_init(&a, up, base, "/x?status=503&retry_after=60");
  treq_init(&b, up, base, "/y");
  treq_run(&a, pl);
  cr_assert_eq(a.status, FY_CURL_EHTTP(503));
  treq_run(&b, pl);
  cr_assert_eq(b.status, 0);
  cr_assert_eq(up_requests(up), 2);
  treq_cleanup(&a);
  treq_cleanup(&b);
}

/* max_hold_ms bounds a huge Retry-After (a day): the hold ends after it,
 * and the host is called again. */
Test(curl_limit, the_cap_bounds_a_huge_retry_after) {
  fy_curl_hosts_t *h = hosts_new(NULL, 300);
  fy_pipeline_t *pl = pipeline_of(h);
  treq_t a, b, c;

  treq_init(&a, up, base, "/x?status=429&retry_after=86400");
  treq_init(&b, up, base, "/y");
  treq_init(&c, up, base, "/y");
  treq_run(&a, pl);
  cr_assert_eq(a.status, FY_CURL_EHTTP(429));
  cr_assert_eq(a.req.retry_after_ms, 86400000, "the adapter's own cap is 24 h");
  expect_refused(&b, pl, 300);
  run_for(400);
  treq_run(&c, pl);
  cr_assert_eq(c.status, 0, "the hold ended at the cap");
  cr_assert_eq(up_requests(up), 2);
  treq_cleanup(&a);
  treq_cleanup(&b);
  treq_cleanup(&c);
}

/* max_hold_ms 0 turns the holds off (and without a rate, the limiter). */
Test(curl_limit, holds_can_be_turned_off) {
  fy_curl_hosts_t *h = hosts_new(NULL, 0);
  fy_pipeline_t *pl = pipeline_of(h);
  treq_t a, b;

  cr_assert_null(fy_curl_hosts_limiter(h));
  treq_init(&a, up, base, "/x?status=429&retry_after=60");
  treq_init(&b, up, base, "/y");
  treq_run(&a, pl);
  cr_assert_eq(a.status, FY_CURL_EHTTP(429));
  treq_run(&b, pl);
  cr_assert_eq(b.status, 0);
  cr_assert_eq(up_requests(up), 2);
  treq_cleanup(&a);
  treq_cleanup(&b);
}

/* With a limit that waits, a held host's calls wait for the hold to pass
 * and are then sent. */
Test(curl_limit, a_held_host_makes_waiting_calls_wait) {
  fy_limiter_opts_t lo;
  fy_curl_hosts_t *h;
  fy_pipeline_t *pl;
  treq_t a, b;

  limit_init(&lo, 1000, 1000, 1000, 1);
  h = hosts_new(&lo, FY_CURL_HOLD_DEFAULT_MS);
  pl = pipeline_of(h);
  treq_init(&a, up, base, "/x?status=429&retry_after=1");
  treq_init(&b, up, base, "/y");
  treq_run(&a, pl);
  cr_assert_eq(a.status, FY_CURL_EHTTP(429));
  cr_assert_eq(treq_start(&b, pl), 0);
  run_for(300);
  cr_assert_eq(b.done, 0, "held: b waits");
  cr_assert_eq(up_requests(up), 1);
  cr_assert(wait_for(&b.done, 1, 5000));
  cr_assert_eq(b.status, 0);
  cr_assert_eq(b.up_requests, 2);
  cr_assert(b.elapsed_ms >= 600, "b waited %llu ms",
            (unsigned long long)b.elapsed_ms);
  treq_cleanup(&a);
  treq_cleanup(&b);
}

/* The default pipeline: the retry does not retry a refusal of the host's
 * limit (it says "not now" about a policy), and a retry is held to the
 * host's limit like any other attempt. */
Test(curl_limit, default_pipeline_with_a_host_limit) {
  fy_curl_pipeline_opts_t o;
  fy_curl_pipeline_t *b = NULL;
  fy_limiter_opts_t lo;
  treq_t t1, t2, t3;

  limit_init(&lo, 1, 60000, 1, 0);
  fy_curl_pipeline_opts_init(&o);
  o.preset.name = "p";
  o.host_limit = &lo;
  o.preset.retry_initial_delay_ms = 1;
  o.preset.retry_max_delay_ms = 1;
  cr_assert_eq(fy_curl_pipeline_new(ctx, &o, &b), 0);
  cr_assert_not_null(fy_curl_hosts_limiter(fy_curl_pipeline_hosts(b)));
  treq_init(&t1, up, base, "/a");
  treq_init(&t2, up, base, "/b");
  treq_run(&t1, fy_curl_pipeline_get(b));
  cr_assert_eq(t1.status, 0);
  cr_assert_eq(treq_start(&t2, fy_curl_pipeline_get(b)), FY_ERATELIMITED);
  cr_assert_str_eq(t2.req.call.detail.by_kind, "limiter");
  cr_assert_eq(t2.req.call.detail.attempts, 0);
  cr_assert_eq(up_requests(up), 1);
  /* The second host: a 429 with a one-second hint.  The retry waits for
   * the hint, and its next attempt meets the host's limit (the only token
   * went to the first attempt, and a hold creates none), so the server
   * sees one request. */
  treq_init(&t3, up2, base2, "/x?status=429&retry_after=1");
  treq_run(&t3, fy_curl_pipeline_get(b));
  cr_assert(t3.status == FY_CURL_EHTTP(429) || t3.status == FY_ERATELIMITED,
            "status %d", t3.status);
  cr_assert_eq(t3.req.attempts, 1);
  cr_assert_eq(up_requests(up2), 1);
  cr_assert(t3.elapsed_ms >= 900, "the retry waited for the hint: %llu ms",
            (unsigned long long)t3.elapsed_ms);
  treq_cleanup(&t1);
  treq_cleanup(&t2);
  treq_cleanup(&t3);
}

/* ---- keys and options -------------------------------------------------- */

/* Keys over the limiter's longest (a user key function's, up to
 * FY_CURL_HOST_MAX bytes) are cut and digested: they are limited, never
 * refused, and two of them differing only at the end have buckets of
 * their own. */
static int long_key(fy_call_t *call, char *buf, size_t len, void *ud) {
  treq_t *t = fy_container_of(call, treq_t, req.call);
  (void)ud;
  memset(buf, 'k', 280);
  buf[280] = (char)('a' + (t->req.call.data != NULL));
  buf[281] = '\0';
  cr_assert(len > 281);
  return 0;
}

Test(curl_limit, long_keys_get_buckets_of_their_own) {
  fy_curl_hosts_opts_t o;
  fy_limiter_opts_t lo;
  fy_curl_hosts_t *h = NULL;
  fy_pipeline_t *pl;
  treq_t a, b, a2;
  int one = 1;

  limit_init(&lo, 1, 60000, 1, 0);
  fy_curl_hosts_opts_init(&o);
  o.name = "h";
  o.limit = &lo;
  o.key = long_key;
  cr_assert_eq(fy_curl_hosts_new(ctx, &o, &h), 0);
  pl = pipeline_of(h);
  treq_init(&a, up, base, "/a");
  treq_init(&b, up, base, "/b");
  treq_init(&a2, up, base, "/a2");
  b.req.call.data = &one;
  treq_run(&a, pl);
  cr_assert_eq(a.status, 0);
  treq_run(&b, pl);
  cr_assert_eq(b.status, 0, "a key that differs at its end is another");
  cr_assert_eq(treq_start(&a2, pl), FY_ERATELIMITED);
  cr_assert_eq(up_requests(up), 2);
  treq_cleanup(&a);
  treq_cleanup(&b);
  treq_cleanup(&a2);
}

Test(curl_limit, options_validated) {
  fy_curl_hosts_opts_t o;
  fy_curl_pipeline_opts_t po;
  fy_limiter_opts_t lo;
  fy_curl_hosts_t *h = (fy_curl_hosts_t *)&o;

  fy_curl_hosts_opts_init(&o);
  cr_assert_eq(o.max_hold_ms, FY_CURL_HOLD_DEFAULT_MS);
  cr_assert_null(o.limit);
  cr_assert_eq(fy_curl_hosts_opts_check(&o), 0);
  o.max_hold_ms = FY_CURL_RETRY_AFTER_MAX;
  cr_assert_eq(fy_curl_hosts_opts_check(&o), 0);
  o.max_hold_ms = FY_CURL_RETRY_AFTER_MAX + 1;
  cr_assert_eq(fy_curl_hosts_opts_check(&o), UV_EINVAL);
  cr_assert_eq(fy_curl_hosts_new(ctx, &o, &h), UV_EINVAL);
  cr_assert_null(h);
  o.max_hold_ms = 0;

  o.limit = &lo;
  limit_init(&lo, 10, 1000, 0, 0);
  cr_assert_eq(fy_curl_hosts_opts_check(&o), 0);
  lo.rate = 0;
  cr_assert_eq(fy_curl_hosts_opts_check(&o), UV_EINVAL);
  limit_init(&lo, FY_LIMIT_RATE_MAX + 1, 1000, 0, 0);
  cr_assert_eq(fy_curl_hosts_opts_check(&o), UV_EINVAL);
  limit_init(&lo, 10, 0, 0, 0);
  cr_assert_eq(fy_curl_hosts_opts_check(&o), UV_EINVAL);
  limit_init(&lo, 10, 1000, FY_LIMIT_BURST_MAX + 1, 0);
  cr_assert_eq(fy_curl_hosts_opts_check(&o), UV_EINVAL);
  limit_init(&lo, 10, 1000, 0, 2);
  cr_assert_eq(fy_curl_hosts_opts_check(&o), UV_EINVAL);
  /* The table's own bounds replace the template's: a max_keys out of the
   * limiter's range does not matter. */
  limit_init(&lo, 10, 1000, 0, 0);
  lo.max_keys = FY_LIMIT_KEYS_MAX + 1;
  cr_assert_eq(fy_curl_hosts_opts_check(&o), 0);
  cr_assert_eq(fy_curl_hosts_new(ctx, &o, &h), 0);
  cr_assert_not_null(fy_curl_hosts_limiter(h));
  cr_assert_str_eq(fy_policy_name(fy_limiter_policy(fy_curl_hosts_limiter(h))),
                   "hosts.limit");

  fy_curl_pipeline_opts_init(&po);
  cr_assert_eq(po.max_hold_ms, FY_CURL_HOLD_DEFAULT_MS);
  cr_assert_eq(fy_curl_pipeline_opts_check(&po), 0);
  po.max_hold_ms = FY_CURL_RETRY_AFTER_MAX + 1;
  cr_assert_eq(fy_curl_pipeline_opts_check(&po), UV_EINVAL);
  po.max_hold_ms = 0;
  po.host_limit = &lo;
  lo.rate = 0;
  cr_assert_eq(fy_curl_pipeline_opts_check(&po), UV_EINVAL);
}
