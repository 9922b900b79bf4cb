/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * Presets: defaults per shape, validation, and the default order at work
 * (retry outside the breaker, per-try timeouts retried, the total deadline
 * bounding everything). */
#include <criterion/criterion.h>

#include "fixture.h"

static fy_preset_t *make_preset(fy_preset_kind_t kind, uint64_t total_ms) {
  fy_preset_opts_t o;
  fy_preset_t *p = NULL;
  fy_preset_opts_init(&o, kind);
  o.name = "api";
  o.retry_jitter = FY_RETRY_JITTER_NONE; /* exact instants in the tests */
  o.total_timeout_ms = total_ms;
  cr_assert_eq(fy_preset_new(FX.ctx, &o, &p), 0);
  cr_assert_not_null(p);
  return p;
}

Test(presets, defaults_per_kind) {
  fy_preset_opts_t http, rpc, db;
  fy_preset_opts_init(&http, FY_PRESET_HTTP_CLIENT);
  fy_preset_opts_init(&rpc, FY_PRESET_RPC);
  fy_preset_opts_init(&db, FY_PRESET_DATABASE);
  cr_expect_eq(http.attempt_timeout_ms, 10000);
  cr_expect_eq(http.max_attempts, 3);
  cr_expect_eq(http.breaker_failures, 5);
  cr_expect_eq(http.breaker_open_ms, 30000);
  cr_expect_eq(rpc.attempt_timeout_ms, 2000);
  cr_expect_eq(rpc.retry_max_delay_ms, 2000);
  cr_expect_eq(db.max_attempts, 2);
  cr_expect_eq(db.breaker_failures, 10);
  cr_expect_eq(db.breaker_max_requests, 2);
  cr_expect_eq(db.retry_initial_delay_ms, 50);
}

Test(presets, builds_the_default_order) {
  fy_preset_opts_t o;
  fy_preset_t *p;
  fx_init(&FX, 0);
  fy_preset_opts_init(&o, FY_PRESET_HTTP_CLIENT);
  o.name = "api";
  o.total_timeout_ms = 20000;
  o.max_concurrent = 4;
  cr_assert_eq(fy_preset_new(FX.ctx, &o, &p), 0);
  cr_expect_eq(fy_pipeline_size(fy_preset_pipeline(p)), 5);
  cr_expect_not_null(fy_preset_bulkhead(p));
  cr_expect_not_null(fy_preset_timeout(p, FY_TIMEOUT_TOTAL));
  cr_expect_not_null(fy_preset_timeout(p, FY_TIMEOUT_PER_TRY));
  cr_expect_str_eq(fy_policy_name(fy_breaker_policy(fy_preset_breaker(p))),
                   "api.breaker");
  cr_expect_str_eq(fy_policy_name(fy_retry_policy(fy_preset_retry(p))),
                   "api.retry");
  fx_finish(&FX); /* the context frees a preset nobody closed */
}

Test(presets, invalid_options_rejected) {
  fy_preset_opts_t o;
  fy_preset_t *p = (fy_preset_t *)&o;
  fx_init(&FX, 0);
  cr_expect_eq(fy_preset_new(FX.ctx, NULL, NULL), UV_EINVAL);
  cr_expect_eq(fy_preset_new(NULL, NULL, &p), UV_EINVAL);
  cr_expect_null(p);

  fy_preset_opts_init(&o, FY_PRESET_RPC);
  o.attempt_timeout_ms = 0;
  cr_expect_eq(fy_preset_new(FX.ctx, &o, &p), UV_EINVAL);
  cr_expect_null(p);

  fy_preset_opts_init(&o, FY_PRESET_RPC);
  o.total_timeout_ms = 1000; /* shorter than one attempt */
  cr_expect_eq(fy_preset_new(FX.ctx, &o, &p), UV_EINVAL);

  fy_preset_opts_init(&o, FY_PRESET_RPC);
  o.max_attempts = 0; /* refused by the retry policy */
  cr_expect_eq(fy_preset_new(FX.ctx, &o, &p), UV_EINVAL);
  cr_expect_null(p);

  fy_preset_opts_init(&o, FY_PRESET_DATABASE);
  o.max_concurrent = 2;
  o.breaker_open_ms = UINT64_MAX; /* refused by the breaker's check */
  cr_expect_eq(fy_preset_new(FX.ctx, &o, &p), UV_EINVAL);
  cr_expect_null(p);
  fx_finish(&FX);
}

Test(presets, opts_check_is_the_constructors_check) {
  fy_preset_opts_t o;
  fy_preset_t *p;
  long requests;
  size_t i;
  fa_install(-1);
  fx_init(&FX, 0);
  for (i = 0; i <= FY_PRESET_DATABASE; i++) {
    fy_preset_opts_init(&o, (fy_preset_kind_t)i);
    cr_expect_eq(fy_preset_opts_check(&o), 0, "kind %zu", i);
  }
  cr_expect_eq(fy_preset_opts_check(NULL), UV_EINVAL);
  for (i = 0; i < 9; i++) {
    fy_preset_opts_init(&o, FY_PRESET_HTTP_CLIENT);
    o.max_concurrent = 4; /* every part is built */
    o.total_timeout_ms = 60000;
    switch (i) {
    case 0:
      o.attempt_timeout_ms = 0;
      break;
    case 1:
      o.attempt_timeout_ms = (uint64_t)-1; /* negative, stored unsigned */
      o.total_timeout_ms = 0;
      break;
    case 2:
      o.total_timeout_ms = FY_TIMEOUT_MAX_MS + 1;
      break;
    case 3:
      o.max_queue = FY_BULKHEAD_LIMIT_MAX + 1;
      break;
    case 4:
      o.max_attempts = FY_RETRY_ATTEMPTS_MAX + 1;
      break;
    case 5:
      o.retry_max_delay_ms = FY_RETRY_DELAY_LIMIT_MS + 1;
      break;
    case 6:
      o.retry_jitter = (fy_retry_jitter_t)-1;
      break;
    case 7:
      o.require_idempotent = 2;
      break;
    default:
      o.breaker_interval_ms = FY_BREAKER_DURATION_MAX + 1;
      break;
    }
    cr_expect_eq(fy_preset_opts_check(&o), UV_EINVAL, "case %zu", i);
    /* The constructor makes that check first: it allocates nothing. */
    requests = FA.requests;
    p = (fy_preset_t *)&o;
    cr_expect_eq(fy_preset_new(FX.ctx, &o, &p), UV_EINVAL, "case %zu", i);
    cr_expect_null(p);
    cr_expect_eq(FA.requests, requests, "case %zu allocated", i);
  }
  /* The largest values each part takes are accepted. */
  fy_preset_opts_init(&o, FY_PRESET_HTTP_CLIENT);
  o.max_concurrent = FY_BULKHEAD_LIMIT_MAX;
  o.attempt_timeout_ms = FY_TIMEOUT_MAX_MS;
  o.total_timeout_ms = FY_TIMEOUT_MAX_MS;
  o.max_attempts = FY_RETRY_ATTEMPTS_MAX;
  o.retry_max_delay_ms = FY_RETRY_DELAY_LIMIT_MS;
  o.breaker_open_ms = FY_BREAKER_DURATION_MAX;
  cr_expect_eq(fy_preset_opts_check(&o), 0);
  fx_finish(&FX);
  fa_restore();
}

Test(presets, failures_are_retried_through_the_breaker) {
  top_t top = {0};
  tcall_t tc = {0};
  fy_preset_t *p;
  fx_init(&FX, 0);
  p = make_preset(FY_PRESET_HTTP_CLIENT, 0);
  top_push(&top, TOP_SYNC, UV_ECONNRESET);
  top_push(&top, TOP_SYNC, UV_ECONNRESET);
  top_push(&top, TOP_SYNC, 0);
  cr_assert_eq(tcall_start(&tc, fy_preset_pipeline(p), &top_op_cancel_sync,
                           &top), 0);
  fx_advance(&FX, 100); /* first backoff: 100 ms */
  cr_expect_eq(tc.ncb, 0);
  fx_advance(&FX, 200); /* second: 200 ms */
  cr_assert_eq(tc.ncb, 1);
  cr_expect_eq(tc.status, 0);
  cr_expect_eq(tc.call.detail.attempts, 3);
  cr_expect_eq(fy_breaker_state(fy_preset_breaker(p)), FY_BREAKER_CLOSED);
  fx_finish(&FX);
}

Test(presets, per_try_timeout_is_retried) {
  top_t top = {0};
  tcall_t tc = {0};
  fy_preset_t *p;
  fx_init(&FX, 0);
  p = make_preset(FY_PRESET_RPC, 0);
  top_push(&top, TOP_ASYNC, 0); /* hangs until cancelled */
  top_push(&top, TOP_SYNC, 0);
  cr_assert_eq(tcall_start(&tc, fy_preset_pipeline(p), &top_op_cancel_sync,
                           &top), 0);
  fx_advance(&FX, 2000); /* the per-try timeout fires */
  cr_expect_eq(top.cancels, 1);
  cr_expect_eq(tc.ncb, 0);
  fx_advance(&FX, 100); /* backoff, then the second try succeeds */
  cr_assert_eq(tc.ncb, 1);
  cr_expect_eq(tc.status, 0);
  cr_expect_eq(tc.call.detail.attempts, 2);
  fx_finish(&FX);
}

Test(presets, open_breaker_refuses_synchronously_and_stops_retries) {
  top_t top = {0};
  tcall_t tc[3];
  fy_preset_t *p;
  unsigned i;
  memset(tc, 0, sizeof(tc));
  fx_init(&FX, 0);
  p = make_preset(FY_PRESET_HTTP_CLIENT, 0);
  top_push(&top, TOP_SYNC, UV_ECONNRESET); /* every attempt fails */
  /* Two calls of three attempts: the fifth consecutive failure opens the
   * breaker, and the sixth attempt is refused, which ends the retries. */
  for (i = 0; i < 2; i++) {
    cr_assert_eq(tcall_start(&tc[i], fy_preset_pipeline(p),
                             &top_op_cancel_sync, &top), 0);
    fx_advance(&FX, 1000);
    cr_assert_eq(tc[i].ncb, 1);
  }
  cr_expect_eq(top.starts, 5);
  cr_expect_eq(tc[1].status, FY_ECIRCUITOPEN);
  cr_expect_eq(fy_breaker_state(fy_preset_breaker(p)), FY_BREAKER_OPEN);
  /* A new call is refused at once (rule 2), with the breaker's detail. */
  cr_expect_eq(tcall_start(&tc[2], fy_preset_pipeline(p), &top_op_cancel_sync,
                           &top), FY_ECIRCUITOPEN);
  cr_expect_str_eq(tc[2].call.detail.by_kind, "breaker");
  cr_expect_gt(tc[2].call.detail.retry_after_ms, 0);
  fx_advance(&FX, 0);
  cr_expect_eq(tc[2].ncb, 0);
  cr_expect_eq(top.starts, 5);
  fx_finish(&FX);
}

Test(presets, total_deadline_bounds_the_whole_call) {
  top_t top = {0};
  tcall_t tc = {0};
  fy_preset_opts_t o;
  fy_preset_t *p;
  fx_init(&FX, 0);
  fy_preset_opts_init(&o, FY_PRESET_RPC);
  o.retry_jitter = FY_RETRY_JITTER_NONE;
  o.attempt_timeout_ms = 100;
  o.total_timeout_ms = 250;
  o.max_attempts = 10;
  cr_assert_eq(fy_preset_new(FX.ctx, &o, &p), 0);
  top_push(&top, TOP_ASYNC, 0); /* every attempt hangs */
  cr_assert_eq(tcall_start(&tc, fy_preset_pipeline(p), &top_op_cancel_sync,
                           &top), 0);
  fx_advance(&FX, 249);
  cr_expect_eq(tc.ncb, 0);
  fx_advance(&FX, 1);
  cr_assert_eq(tc.ncb, 1);
  cr_expect_eq(tc.status, UV_ETIMEDOUT);
  cr_expect_eq(top_live(&top), 0);
  fx_finish(&FX);
}

Test(presets, per_call_override_shortens_the_total) {
  top_t top = {0};
  tcall_t tc = {0};
  fy_call_opts_t co = {0};
  fy_preset_t *p;
  fx_init(&FX, 0);
  p = make_preset(FY_PRESET_HTTP_CLIENT, 20000);
  top_push(&top, TOP_ASYNC, 0);
  co.timeout_ms = 50;
  cr_assert_eq(fy_call_start_opts(&tc.call, fy_preset_pipeline(p),
                                  &top_op_cancel_sync, &top, &co, tcall_cb),
               0);
  cr_expect_eq(top.remaining[0], 50); /* the attempt sees the budget */
  fx_advance(&FX, 50);
  cr_assert_eq(tc.ncb, 1);
  cr_expect_eq(tc.status, UV_ETIMEDOUT);
  fx_finish(&FX);
}

static void on_preset_closed(void *obj, void *user_data) {
  (void)obj;
  (*(int *)user_data)++;
}

Test(presets, close_cancels_calls_then_calls_back_once) {
  top_t top = {0};
  tcall_t tc = {0};
  fy_preset_t *p;
  int closed = 0;
  fx_init(&FX, 0);
  p = make_preset(FY_PRESET_DATABASE, 0);
  top_push(&top, TOP_ASYNC, 0);
  cr_assert_eq(tcall_start(&tc, fy_preset_pipeline(p), &top_op_cancel_sync,
                           &top), 0);
  cr_assert_eq(fy_preset_close(p, on_preset_closed, &closed), 0);
  cr_expect_eq(fy_preset_close(p, on_preset_closed, &closed), FY_ECLOSED);
  fx_advance(&FX, 0);
  uv_run(&FX.loop, UV_RUN_NOWAIT);
  cr_expect_eq(tc.ncb, 1);
  cr_expect_eq(tc.status, UV_ECANCELED);
  cr_expect_eq(closed, 1);
  fx_finish(&FX);
}

/* The instant (ms after the start) at which the second try of a call whose
 * first try fails starts, with full jitter and |seed|. */
static uint64_t second_try_at(uint64_t seed) {
  top_t top = {0};
  tcall_t tc = {0};
  fy_preset_opts_t o;
  fy_preset_t *p;
  uint64_t t;
  fx_init(&FX, 0);
  fy_preset_opts_init(&o, FY_PRESET_HTTP_CLIENT);
  o.retry_seed = seed;
  o.retry_initial_delay_ms = 1000; /* full jitter: anywhere in [0, 1000] */
  cr_assert_eq(fy_preset_new(FX.ctx, &o, &p), 0);
  top_push(&top, TOP_SYNC, UV_ECONNRESET);
  top_push(&top, TOP_SYNC, 0);
  cr_assert_eq(tcall_start(&tc, fy_preset_pipeline(p), &top_op_cancel_sync,
                           &top), 0);
  for (t = 0; top.starts < 2 && t <= 1000; t++)
    fx_advance(&FX, 1);
  cr_assert_eq(top.starts, 2, "no second try within the first backoff");
  cr_assert_eq(tc.ncb, 1);
  cr_expect_eq(tc.status, 0);
  fx_finish(&FX);
  return t;
}

Test(presets, retry_seed_makes_the_jitter_reproducible) {
  uint64_t a = second_try_at(42), b = second_try_at(42);
  uint64_t others[4];
  unsigned i, differ = 0;
  cr_expect_eq(a, b);
  /* Other seeds land elsewhere (four draws in [0, 1000] all equal to |a|
   * would mean the seed is ignored). */
  for (i = 0; i < 4; i++) {
    others[i] = second_try_at(1000 + i);
    differ += others[i] != a;
  }
  cr_expect_gt(differ, 0);
}

Test(presets, parts_give_each_policy_its_options) {
  fy_preset_opts_t o;
  fy_preset_parts_t parts;
  fy_preset_opts_init(&o, FY_PRESET_DATABASE);
  o.name = "db";
  o.total_timeout_ms = 9000;
  o.max_concurrent = 7;
  o.max_queue = 3;
  o.retry_seed = 99;
  cr_assert_eq(fy_preset_parts(&o, &parts), 0);
  cr_expect(parts.has_bulkhead);
  cr_expect(parts.has_total);
  cr_expect_str_eq(parts.bulkhead.name, "db.bulkhead");
  cr_expect_eq(parts.bulkhead.max_concurrent, 7);
  cr_expect_eq(parts.bulkhead.max_queue, 3);
  cr_expect_str_eq(parts.total.name, "db.total");
  cr_expect_eq(parts.total.timeout_ms, 9000);
  cr_expect_eq(parts.total.scope, FY_TIMEOUT_TOTAL);
  cr_expect_str_eq(parts.retry.name, "db.retry");
  cr_expect_eq(parts.retry.max_attempts, 2);
  cr_expect_eq(parts.retry.initial_delay_ms, 50);
  cr_expect_eq(parts.retry.seed, 99);
  cr_expect_str_eq(parts.breaker.name, "db.breaker");
  cr_expect_eq(parts.breaker.failure_threshold, 10);
  cr_expect_eq(parts.breaker.max_requests, 2);
  cr_expect_str_eq(parts.per_try.name, "db.attempt");
  cr_expect_eq(parts.per_try.timeout_ms, 5000);
  cr_expect_eq(parts.per_try.scope, FY_TIMEOUT_PER_TRY);

  /* NULL: the HTTP client's defaults, no bulkhead, no total timeout. */
  cr_assert_eq(fy_preset_parts(NULL, &parts), 0);
  cr_expect(!parts.has_bulkhead);
  cr_expect(!parts.has_total);
  cr_expect_str_eq(parts.retry.name, "retry");
  cr_expect_eq(parts.per_try.timeout_ms, 10000);

  /* The timeouts fy_preset_new() refuses are refused here. */
  o.attempt_timeout_ms = 0;
  cr_expect_eq(fy_preset_parts(&o, &parts), UV_EINVAL);
  fy_preset_opts_init(&o, FY_PRESET_RPC);
  o.total_timeout_ms = o.attempt_timeout_ms - 1;
  cr_expect_eq(fy_preset_parts(&o, &parts), UV_EINVAL);
  cr_expect_eq(fy_preset_parts(&o, NULL), UV_EINVAL);
}

/* ---- lifetime: attachments and the one FY_ECLOSED rule ----------------- */

Test(presets, never_closed_is_freed_by_the_context) {
  fx_init_counted(&FX, 0);
  (void)make_preset(FY_PRESET_RPC, 5000);
  /* No fy_preset_close(): the context frees it at its end, and
   * fx_finish_counted() checks that no block is left. */
  fx_finish_counted(&FX);
}

Test(presets, close_returning_eclosed_frees_nothing) {
  fy_preset_t *p;
  fy_pipeline_t *pl;
  int closed = 0;
  fx_init_counted(&FX, 0);
  p = make_preset(FY_PRESET_HTTP_CLIENT, 0);
  pl = fy_preset_pipeline(p);
  /* One part closed on its own: the preset's close closes the rest but
   * fails, so it frees nothing and never calls back. */
  cr_assert_eq(fy_breaker_close(fy_preset_breaker(p), NULL, NULL), 0);
  cr_expect_eq(fy_preset_close(p, on_preset_closed, &closed), FY_ECLOSED);
  fx_advance(&FX, 0);
  uv_run(&FX.loop, UV_RUN_NOWAIT);
  cr_expect_eq(closed, 0);
  /* Still allocated and readable. */
  cr_expect_eq(fy_preset_pipeline(p), pl);
  cr_expect_eq(fy_preset_close(p, on_preset_closed, &closed), FY_ECLOSED);
  fx_finish_counted(&FX); /* freed by the context: no block left */
  cr_expect_eq(closed, 0);
}

typedef struct pcall_s {
  tcall_t tc;
  fy_preset_t *p;
  int rc;     /* fy_preset_close() inside the call's callback */
  int closed; /* runs of the preset's close callback */
} pcall_t;

static void close_preset_then(tcall_t *tc, int status) {
  pcall_t *pc = fy_container_of(tc, pcall_t, tc);
  (void)status;
  pc->rc = fy_preset_close(pc->p, on_preset_closed, &pc->closed);
}

static void start_pcall(pcall_t *pc, top_t *top) {
  pc->rc = -1;
  pc->tc.then = close_preset_then;
  top_push(top, TOP_ASYNC, 0);
  cr_assert_eq(tcall_start(&pc->tc, fy_preset_pipeline(pc->p),
                           &top_op_cancel_sync, top),
               0);
}

Test(presets, closed_from_inside_a_call_callback) {
  top_t top = {0};
  pcall_t pc = {0};
  fx_init_counted(&FX, 0);
  pc.p = make_preset(FY_PRESET_RPC, 0);
  start_pcall(&pc, &top);
  top_finish(&top, 0);
  fx_advance(&FX, 0);
  cr_expect_eq(pc.tc.ncb, 1);
  cr_expect_eq(pc.tc.status, 0);
  cr_expect_eq(pc.rc, 0);
  cr_expect_eq(pc.closed, 1);
  fx_finish_counted(&FX);
  cr_expect_eq(pc.closed, 1);
}

/* Closed from the callback of a call that the context's close cancels:
 * every part is closing by then, so the close fails and frees nothing, and
 * the context frees the preset at its end. */
Test(presets, closed_from_inside_a_call_the_context_cancels) {
  top_t top = {0};
  pcall_t pc = {0};
  fx_init_counted(&FX, 0);
  pc.p = make_preset(FY_PRESET_RPC, 0);
  start_pcall(&pc, &top);
  cr_assert_eq(fx_close(&FX), 0);
  fx_finish_counted(&FX);
  cr_expect_eq(pc.tc.ncb, 1);
  cr_expect_eq(pc.tc.status, UV_ECANCELED);
  cr_expect_eq(pc.rc, FY_ECLOSED);
  cr_expect_eq(pc.closed, 0);
}

typedef struct closer_s {
  fy_attachment_t a;
  fy_preset_t *p;
  int rc;
  int closed;
} closer_t;

static void closer_wind_down(fy_attachment_t *a) {
  closer_t *c = fy_container_of(a, closer_t, a);
  c->rc = fy_preset_close(c->p, on_preset_closed, &c->closed);
}

/* Attachments are wound down before any policy: a preset closed from a
 * wind-down hook still finds every part open, and calls back before the
 * context finishes. */
Test(presets, closed_from_an_attachment_wind_down) {
  closer_t c = {0};
  fx_init_counted(&FX, 0);
  c.p = make_preset(FY_PRESET_DATABASE, 0);
  c.rc = -1;
  cr_assert_eq(fy_ctx_attach(FX.ctx, &c.a, closer_wind_down, NULL), 0);
  fx_finish_counted(&FX);
  cr_expect_eq(c.rc, 0);
  cr_expect_eq(c.closed, 1);
}
