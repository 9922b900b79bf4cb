/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * The server admission guard on a manual-clock context: what each part
 * refuses, the HTTP answer of every refusal and outcome, the handler
 * deadline, the breaker over the handler's own failures, and close.  The
 * example server's end-to-end tests are in test_guard_server.c, the
 * client keys' in test_guard_keys.c. */
#include <criterion/criterion.h>
#include <string.h>

#include "fixture.h"

TestSuite(guard);

#define T0 1000

static fy_guard_t *mk(const fy_limiter_opts_t *limit, uint32_t max_concurrent,
                      uint64_t handler_timeout_ms,
                      const fy_breaker_opts_t *breaker) {
  fy_guard_opts_t o;
  fy_guard_t *g = NULL;
  fy_guard_opts_init(&o);
  o.limit = limit;
  o.max_concurrent = max_concurrent;
  o.handler_timeout_ms = handler_timeout_ms;
  o.breaker = breaker;
  o.name = "api";
  cr_assert_eq(fy_guard_new(FX.ctx, &o, &g), 0);
  cr_assert_not_null(g);
  return g;
}

static int start(fy_guard_t *g, tcall_t *tc, top_t *top, const char *key) {
  return fy_guard_start(g, &tc->call, key, strlen(key), &top_op_cancel_sync,
                        top, tcall_cb);
}

Test(guard, opts_are_checked_part_by_part) {
  fy_guard_opts_t o;
  fy_limiter_opts_t lo;
  fy_breaker_opts_t bo;
  fy_guard_t *g = (fy_guard_t *)&o;
  fy_guard_opts_init(&o);
  cr_assert_eq(fy_guard_opts_check(&o), 0, "every part is optional");
  cr_assert_eq(fy_guard_opts_check(NULL), UV_EINVAL);
  fy_limiter_opts_init(&lo);
  lo.rate = 0;
  o.limit = &lo;
  cr_assert_eq(fy_guard_opts_check(&o), UV_EINVAL, "the limiter's check");
  lo.rate = 10;
  lo.wait = 1; /* ignored: a guard refuses, it never keeps clients waiting */
  cr_assert_eq(fy_guard_opts_check(&o), 0);
  fy_breaker_opts_init(&bo);
  bo.failure_rate = 200.0;
  bo.window = FY_BREAKER_WINDOW_COUNT;
  o.breaker = &bo;
  cr_assert_eq(fy_guard_opts_check(&o), UV_EINVAL, "the breaker's check");
  fx_init(&FX, T0);
  cr_assert_eq(fy_guard_new(FX.ctx, &o, &g), UV_EINVAL);
  cr_assert_null(g);
  cr_assert_eq(fy_guard_new(FX.ctx, NULL, &g), 0, "NULL: no part at all");
  cr_assert_not_null(fy_guard_pipeline(g));
  cr_assert_null(fy_guard_limiter(g));
  cr_assert_eq(fy_guard_close(g, NULL, NULL), 0);
  fx_finish(&FX);
}

Test(guard, a_client_over_its_rate_gets_429_with_retry_after) {
  static top_t top;
  static tcall_t c[4];
  fy_limiter_opts_t lo;
  fy_guard_answer_t a;
  fy_guard_t *g;
  fx_init(&FX, T0);
  fy_limiter_opts_init(&lo);
  lo.rate = 2;
  lo.interval_ms = 3000; /* one token per 1.5 s */
  lo.wait = 1;           /* ignored by the guard */
  g = mk(&lo, 0, 0, NULL);
  top_script(&top, TOP_SYNC, 0);
  cr_assert_eq(start(g, &c[0], &top, "10.0.0.1"), 0);
  cr_assert_eq(start(g, &c[1], &top, "10.0.0.1"), 0);
  cr_assert_eq(start(g, &c[2], &top, "10.0.0.1"), FY_ERATELIMITED,
               "refused at once, never kept waiting");
  fy_guard_answer(g, &c[2].call, FY_ERATELIMITED, &a);
  cr_assert_eq(a.http_status, 429);
  cr_assert_eq(a.retry_after_s, 2, "1500 ms, rounded up");
  cr_assert_str_eq(a.reason, "Too Many Requests");
  cr_assert_eq(start(g, &c[3], &top, "10.0.0.2"), 0, "per client");
  fx_advance(&FX, 0);
  fy_guard_answer(g, &c[0].call, c[0].status, &a);
  cr_assert_eq(a.http_status, 0, "the handler's own answer stands");
  cr_assert_null(a.reason);
  fx_finish(&FX);
}

Test(guard, a_server_at_its_concurrency_limit_sheds_with_503) {
  static top_t top;
  static tcall_t c[3];
  fy_guard_opts_t o;
  fy_guard_answer_t a;
  fy_guard_t *g;
  fx_init(&FX, T0);
  fy_guard_opts_init(&o);
  o.max_concurrent = 2;
  o.overload_retry_after_s = 5;
  cr_assert_eq(fy_guard_new(FX.ctx, &o, &g), 0);
  top_script(&top, TOP_ASYNC, 0);
  cr_assert_eq(start(g, &c[0], &top, "a"), 0);
  cr_assert_eq(start(g, &c[1], &top, "b"), 0);
  cr_assert_eq(start(g, &c[2], &top, "c"), FY_EBULKHEADFULL);
  fy_guard_answer(g, &c[2].call, FY_EBULKHEADFULL, &a);
  cr_assert_eq(a.http_status, 503);
  cr_assert_eq(a.retry_after_s, 5);
  cr_assert_str_eq(a.reason, "Service Unavailable");
  top_finish(&top, 0);
  fx_advance(&FX, 0);
  cr_assert_eq(start(g, &c[2], &top, "c"), 0, "a slot is free again");
  top_report_all(&top, 0);
  fx_advance(&FX, 0);
  fx_finish(&FX);
}

Test(guard, a_handler_that_overruns_is_cancelled_and_answered_504) {
  static top_t top;
  static tcall_t c;
  fy_guard_answer_t a;
  fy_guard_t *g;
  fx_init(&FX, T0);
  g = mk(NULL, 0, 250, NULL);
  top_script(&top, TOP_ASYNC, 0);
  cr_assert_eq(start(g, &c, &top, "k"), 0);
  fx_advance(&FX, 249);
  cr_assert_eq(c.ncb, 0);
  fx_advance(&FX, 1);
  cr_assert_eq(c.ncb, 1);
  cr_assert_eq(c.status, UV_ETIMEDOUT);
  cr_assert_eq(top.cancels, 1, "the handler's work was cancelled");
  fy_guard_answer(g, &c.call, c.status, &a);
  cr_assert_eq(a.http_status, 504);
  cr_assert_eq(a.retry_after_s, 0);
  cr_assert_str_eq(a.reason, "Gateway Timeout");
  fx_finish(&FX);
}

/* The breaker counts the handler's 5xx and errors, not the clients' 4xx. */
Test(guard, a_storm_of_5xx_opens_the_breaker_and_4xx_does_not) {
  static top_t top;
  static tcall_t c[16];
  fy_breaker_opts_t bo;
  fy_guard_answer_t a;
  fy_guard_t *g;
  int i;
  fx_init(&FX, T0);
  fy_breaker_opts_init(&bo);
  bo.failure_threshold = 3;
  bo.open_ms = 10000;
  g = mk(NULL, 0, 0, &bo);
  top_script(&top, TOP_SYNC, FY_EHTTP_STATUS(404));
  for (i = 0; i < 5; i++)
    cr_assert_eq(start(g, &c[i], &top, "k"), 0, "4xx are the client's");
  fx_advance(&FX, 0);
  fy_guard_answer(g, &c[0].call, c[0].status, &a);
  cr_assert_eq(a.http_status, 0, "a 404 of the handler is its answer");
  top_script(&top, TOP_SYNC, FY_EHTTP_STATUS(500));
  for (i = 5; i < 8; i++)
    cr_assert_eq(start(g, &c[i], &top, "k"), 0);
  fx_advance(&FX, 0);
  cr_assert_eq(start(g, &c[8], &top, "k"), FY_ECIRCUITOPEN,
               "three 5xx in a row: the server is failing");
  fy_guard_answer(g, &c[8].call, FY_ECIRCUITOPEN, &a);
  cr_assert_eq(a.http_status, 503);
  cr_assert_eq(a.retry_after_s, 10, "until the breaker half-opens");
  fx_finish(&FX);
}

Test(guard, every_status_has_one_answer) {
  static const struct {
    int status;
    int http;
  } cases[] = {
      {FY_EQUEUETIMEOUT, 503}, {FY_ECLOSED, 503}, {UV_ECANCELED, 503},
      {FY_EKEY, 400},          {UV_EIO, 500},     {FY_EHTTP_STATUS(502), 0},
      {0, 0},
  };
  fy_guard_answer_t a;
  size_t i;
  for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    memset(&a, 0xab, sizeof(a));
    fy_guard_answer(NULL, NULL, cases[i].status, &a);
    cr_assert_eq(a.http_status, cases[i].http, "%s",
                 fy_err_name(cases[i].status));
    if (a.http_status != 0)
      cr_assert_not_null(a.reason);
  }
  fy_guard_answer(NULL, NULL, FY_ERATELIMITED, &a);
  cr_assert_eq(a.http_status, 429);
  cr_assert_eq(a.retry_after_s, 1, "no hint: one second");
  fy_guard_answer(NULL, NULL, 0, NULL); /* harmless */
}

Test(guard, close_cancels_the_calls_in_flight_then_calls_back) {
  static top_t top;
  static tcall_t c;
  fy_limiter_opts_t lo;
  fx_closed_t closed = {0};
  fy_guard_t *g;
  fx_init(&FX, T0);
  fy_limiter_opts_init(&lo);
  g = mk(&lo, 4, 1000, NULL);
  top_script(&top, TOP_ASYNC, 0);
  cr_assert_eq(start(g, &c, &top, "k"), 0);
  cr_assert_eq(fy_guard_close(g, fx_obj_closed, &closed), 0);
  cr_assert_eq(fy_guard_close(g, NULL, NULL), FY_ECLOSED);
  fx_advance(&FX, 0);
  cr_assert_eq(c.ncb, 1);
  cr_assert_eq(c.status, UV_ECANCELED);
  cr_assert_eq(closed.n, 1);
  cr_assert_eq(closed.obj, g);
  fx_finish(&FX);
}

/* Every allocation of fy_guard_new() failing in turn: UV_ENOMEM, nothing
 * made, nothing leaked; once it succeeds, the guard works and closes. */
Test(guard, out_of_memory_creates_nothing) {
  static top_t top;
  static tcall_t c;
  fy_limiter_opts_t lo;
  fy_breaker_opts_t bo;
  fy_guard_opts_t o;
  fy_guard_t *g;
  long from;
  int rc = UV_ENOMEM;
  fy_limiter_opts_init(&lo);
  fy_breaker_opts_init(&bo);
  fy_guard_opts_init(&o);
  o.limit = &lo;
  o.max_concurrent = 8;
  o.handler_timeout_ms = 1000;
  o.breaker = &bo;
  for (from = 0; rc != 0; from++) {
    cr_assert_lt(from, 64, "fy_guard_new never succeeded");
    fx_init_counted(&FX, T0);
    FA.fail_from = from;
    g = (fy_guard_t *)&rc;
    rc = fy_guard_new(FX.ctx, &o, &g);
    FA.fail_from = -1;
    if (rc != 0) {
      cr_assert_eq(rc, UV_ENOMEM, "allocation %ld", from);
      cr_assert_null(g);
    } else {
      memset(&top, 0, sizeof(top));
      memset(&c, 0, sizeof(c));
      top_script(&top, TOP_SYNC, 0);
      cr_assert_eq(start(g, &c, &top, "k"), 0);
      fx_advance(&FX, 0);
      cr_assert_eq(c.status, 0);
      cr_assert_eq(fy_guard_close(g, NULL, NULL), 0);
    }
    fx_finish_counted(&FX);
  }
  cr_assert_gt(from, 5, "every part allocates: %ld", from);
}
