/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * Rate limiter: the driver on a manual-clock context.  The synchronous
 * API, holds, events, the pipeline stage (refusing and waiting), waits
 * without a pipeline, cancellation, close, eviction under a flood of keys
 * and allocation failures.  The algorithms' own boundaries are tested in
 * test_limiter_sm.c, the key table's in test_keytab.c. */
#include <criterion/criterion.h>
#include <string.h>

#include "fixture.h"

TestSuite(limiter);

#define T0 1000 /* the manual clock's start: instant 0 is no special case */

static fy_limiter_t *mk(fy_limit_algo_t algo, uint64_t rate,
                        uint64_t interval_ms, uint64_t burst) {
  fy_limiter_opts_t o;
  fy_limiter_t *l = NULL;
  fy_limiter_opts_init(&o);
  o.algo = algo;
  o.rate = rate;
  o.interval_ms = interval_ms;
  o.burst = burst;
  o.max_keys = 1000;
  cr_assert_eq(fy_limiter_new(FX.ctx, &o, &l), 0);
  cr_assert_not_null(l);
  return l;
}

static int allow(fy_limiter_t *l, const char *key, fy_limit_verdict_t *v) {
  return fy_limiter_allow(l, key, strlen(key), v);
}

/* ---- options ------------------------------------------------------------ */

Test(limiter, opts_defaults_and_bounds) {
  fy_limiter_opts_t o, bad;
  fy_limiter_t *l = (fy_limiter_t *)&o;
  fy_limiter_opts_init(&o);
  cr_assert_eq(o.algo, FY_LIMIT_GCRA);
  cr_assert_eq(o.rate, 100);
  cr_assert_eq(o.interval_ms, 1000);
  cr_assert_eq(o.burst, 0);
  cr_assert_eq(o.wait, 0);
  cr_assert_null(o.key);
  cr_assert_eq(fy_limiter_opts_check(&o), 0);
  cr_assert_eq(fy_limiter_opts_check(NULL), UV_EINVAL);
#define BAD(field, value)                                                      \
  do {                                                                         \
    bad = o;                                                                   \
    bad.field = value;                                                         \
    cr_assert_eq(fy_limiter_opts_check(&bad), UV_EINVAL, #field " " #value);   \
  } while (0)
  BAD(algo, (fy_limit_algo_t)7);
  BAD(rate, 0);
  BAD(rate, FY_LIMIT_RATE_MAX + 1ull);
  BAD(interval_ms, 0);
  BAD(interval_ms, FY_LIMIT_INTERVAL_MAX + 1ull);
  BAD(burst, FY_LIMIT_BURST_MAX + 1ull);
  BAD(max_tokens, 101); /* above the burst (= rate) */
  BAD(cost, 101);
  BAD(wait, 2);
  BAD(max_key_len, FY_LIMIT_KEY_MAX + 1);
  BAD(max_keys, FY_LIMIT_KEYS_MAX + 1);
#undef BAD
  bad = o;
  bad.rate = FY_LIMIT_RATE_MAX;
  bad.interval_ms = FY_LIMIT_INTERVAL_MAX;
  bad.burst = FY_LIMIT_BURST_MAX;
  bad.max_key_len = FY_LIMIT_KEY_MAX;
  cr_assert_eq(fy_limiter_opts_check(&bad), 0, "the bounds themselves");
  fx_init(&FX, T0);
  bad.rate = 0;
  cr_assert_eq(fy_limiter_new(FX.ctx, &bad, &l), UV_EINVAL);
  cr_assert_null(l, "nothing is created");
  cr_assert_eq(fy_limiter_new(NULL, &o, &l), UV_EINVAL);
  cr_assert_eq(fy_limiter_new(FX.ctx, NULL, &l), 0, "NULL: the defaults");
  cr_assert_eq(fy_limiter_close(l, NULL, NULL), 0);
  fx_finish(&FX);
}

/* ---- synchronous decisions ---------------------------------------------- */

Test(limiter, gcra_allows_the_burst_then_one_per_interval_over_rate) {
  fy_limit_verdict_t v;
  fy_limiter_t *l;
  int i;
  fx_init(&FX, T0);
  l = mk(FY_LIMIT_GCRA, 10, 1000, 5); /* one token per 100 ms */
  for (i = 0; i < 5; i++) {
    cr_assert_eq(allow(l, "k", &v), 0, "take %d", i);
    cr_assert_eq(v.remaining, (uint64_t)(4 - i));
    cr_assert_eq(v.limit, 5);
    cr_assert_eq(v.retry_after_ms, 0);
  }
  cr_assert_eq(allow(l, "k", &v), FY_ERATELIMITED);
  cr_assert_eq(v.retry_after_ms, 100);
  cr_assert_eq(v.remaining, 0);
  cr_assert_eq(v.reset_ms, 500);
  fx_advance(&FX, 99);
  cr_assert_eq(allow(l, "k", &v), FY_ERATELIMITED);
  cr_assert_eq(v.retry_after_ms, 1, "exact: one ms left");
  fx_advance(&FX, 1);
  cr_assert_eq(allow(l, "k", &v), 0);
  cr_assert_eq(allow(l, "k", &v), FY_ERATELIMITED);
  fx_finish(&FX);
}

Test(limiter, token_bucket_refills_rate_tokens_per_interval) {
  fy_limit_verdict_t v;
  fy_limiter_t *l;
  int i;
  fx_init(&FX, T0);
  l = mk(FY_LIMIT_TOKEN_BUCKET, 3, 1000, 3);
  for (i = 0; i < 3; i++)
    cr_assert_eq(allow(l, "k", &v), 0);
  cr_assert_eq(allow(l, "k", &v), FY_ERATELIMITED);
  cr_assert_eq(v.retry_after_ms, 1000);
  fx_advance(&FX, 999);
  cr_assert_eq(allow(l, "k", &v), FY_ERATELIMITED);
  cr_assert_eq(v.retry_after_ms, 1);
  fx_advance(&FX, 1);
  for (i = 0; i < 3; i++)
    cr_assert_eq(allow(l, "k", &v), 0, "a whole interval's quota");
  cr_assert_eq(allow(l, "k", &v), FY_ERATELIMITED);
  fx_finish(&FX);
}

Test(limiter, take_n_is_all_or_nothing_with_the_wait_for_n) {
  fy_limit_verdict_t v;
  fy_limiter_t *l;
  fx_init(&FX, T0);
  l = mk(FY_LIMIT_GCRA, 10, 1000, 5);
  cr_assert_eq(fy_limiter_take(l, "k", 1, 3, &v), 0);
  cr_assert_eq(v.remaining, 2);
  cr_assert_eq(fy_limiter_take(l, "k", 1, 3, &v), FY_ERATELIMITED);
  cr_assert_eq(v.retry_after_ms, 100, "one more token is missing");
  cr_assert_eq(v.remaining, 2, "nothing was taken");
  cr_assert_eq(fy_limiter_take(l, "k", 1, 2, &v), 0);
  fx_finish(&FX);
}

Test(limiter, bad_requests_get_their_own_errors) {
  fy_limiter_opts_t o;
  fy_limiter_t *l;
  char big[65];
  fx_init(&FX, T0);
  fy_limiter_opts_init(&o);
  o.rate = 5;
  o.max_tokens = 2;
  cr_assert_eq(fy_limiter_new(FX.ctx, &o, &l), 0);
  cr_assert_eq(fy_limiter_take(l, "k", 1, 0, NULL), UV_EINVAL);
  cr_assert_eq(fy_limiter_take(l, "k", 1, 3, NULL), UV_EINVAL,
               "above max_tokens: no wait helps");
  cr_assert_eq(fy_limiter_take(l, "k", 1, 2, NULL), 0);
  memset(big, 'x', sizeof(big));
  cr_assert_eq(fy_limiter_allow(l, big, 65, NULL), FY_EKEY,
               "longer than the default 64 bytes");
  cr_assert_eq(fy_limiter_allow(l, big, 64, NULL), 0);
  cr_assert_eq(fy_limiter_allow(l, NULL, 3, NULL), FY_EKEY);
  cr_assert_eq(fy_limiter_allow(NULL, "k", 1, NULL), UV_EINVAL);
  fx_finish(&FX);
}

Test(limiter, the_empty_key_is_one_shared_bucket) {
  fy_limiter_t *l;
  fx_init(&FX, T0);
  l = mk(FY_LIMIT_GCRA, 2, 1000, 2);
  cr_assert_eq(fy_limiter_allow(l, NULL, 0, NULL), 0);
  cr_assert_eq(fy_limiter_allow(l, "", 0, NULL), 0);
  cr_assert_eq(fy_limiter_allow(l, NULL, 0, NULL), FY_ERATELIMITED);
  cr_assert_eq(allow(l, "other", NULL), 0, "keys are independent");
  fx_finish(&FX);
}

Test(limiter, hold_refuses_until_the_hint_and_creates_no_token) {
  fy_limit_verdict_t v;
  fy_limiter_t *l;
  fx_init(&FX, T0);
  l = mk(FY_LIMIT_GCRA, 10, 1000, 5);
  cr_assert_eq(fy_limiter_hold(l, "h", 1, 2000), 0);
  cr_assert_eq(allow(l, "h", &v), FY_ERATELIMITED);
  cr_assert_eq(v.retry_after_ms, 2000);
  fx_advance(&FX, 1999);
  cr_assert_eq(allow(l, "h", &v), FY_ERATELIMITED);
  fx_advance(&FX, 1);
  cr_assert_eq(allow(l, "h", &v), 0, "the hint passed");
  cr_assert_eq(allow(l, "h", &v), FY_ERATELIMITED,
               "one token, not a fresh burst");
  cr_assert_eq(allow(l, "free", &v), 0, "other keys are not held");
  fx_finish(&FX);
}

Test(limiter, events_carry_the_sanitised_key) {
  static evrec_t E;
  fy_limiter_t *l;
  const fy_event_t *ev;
  fx_init(&FX, T0);
  evrec_listen(&E, FX.ctx,
               FY_EV_MASK(FY_EV_ALLOW) | FY_EV_MASK(FY_EV_REJECT));
  l = mk(FY_LIMIT_GCRA, 1, 1000, 1);
  cr_assert_eq(fy_limiter_allow(l, "a\nb\x01", 4, NULL), 0);
  cr_assert_eq(fy_limiter_allow(l, "a\nb\x01", 4, NULL), FY_ERATELIMITED);
  cr_assert_eq(E.n, 2);
  ev = evrec_nth(&E, FY_EV_ALLOW, 0);
  cr_assert_not_null(ev);
  cr_assert_str_eq(ev->key, "a_b_");
  cr_assert_eq(ev->value, 0, "tokens remaining");
  cr_assert_str_eq(ev->policy_kind, "limiter");
  ev = evrec_nth(&E, FY_EV_REJECT, 0);
  cr_assert_not_null(ev);
  cr_assert_eq(ev->status, FY_ERATELIMITED);
  cr_assert_eq(ev->delay_ms, 1000);
  cr_assert_str_eq(ev->key, "a_b_");
  fx_finish(&FX);
}

Test(limiter, sanitize_key_is_public) {
  char out[8];
  cr_assert_eq(fy_limiter_sanitize_key("ok", 2, out, sizeof(out)), 2);
  cr_assert_str_eq(out, "ok");
  cr_assert_eq(fy_limiter_sanitize_key("\x7f", 1, out, sizeof(out)), 1);
  cr_assert_str_eq(out, "_");
  fy_limiter_sanitize_key("0123456789", 10, out, sizeof(out));
  cr_assert_eq(strlen(out), 7);
  cr_assert_str_eq(out + 4, "...", "a cut key says so");
  cr_assert_eq(fy_limiter_sanitize_key(NULL, 5, out, sizeof(out)), 0);
}

/* ---- the pipeline stage -------------------------------------------------- */

static fy_limiter_t *mk_stage(uint64_t rate, uint64_t burst, int wait,
                              uint32_t max_waiters) {
  fy_limiter_opts_t o;
  fy_limiter_t *l;
  fy_limiter_opts_init(&o);
  o.rate = rate;
  o.interval_ms = 1000;
  o.burst = burst;
  o.wait = wait;
  o.max_waiters = max_waiters;
  o.name = "api";
  cr_assert_eq(fy_limiter_new(FX.ctx, &o, &l), 0);
  return l;
}

static int start_key(tcall_t *tc, fy_pipeline_t *pl, top_t *top,
                     const char *key) {
  fy_call_opts_t o;
  memset(&o, 0, sizeof(o));
  o.key = key;
  o.key_len = key != NULL ? strlen(key) : 0;
  return fy_call_start_opts(&tc->call, pl, &top_op_cancel_sync, top, &o,
                            tcall_cb);
}

Test(limiter, stage_refuses_at_once_with_the_figures) {
  static top_t top;
  static tcall_t c[3];
  fy_pipeline_t *pl;
  fy_limiter_t *l;
  fx_init(&FX, T0);
  l = mk_stage(10, 2, 0, 0);
  pl = fx_pipeline(&FX, 1, fy_limiter_policy(l));
  top_script(&top, TOP_SYNC, 0);
  cr_assert_eq(start_key(&c[0], pl, &top, "10.0.0.1"), 0);
  cr_assert_eq(start_key(&c[1], pl, &top, "10.0.0.1"), 0);
  cr_assert_eq(start_key(&c[2], pl, &top, "10.0.0.1"), FY_ERATELIMITED,
               "refused synchronously");
  cr_assert_eq(top.starts, 2, "the refused call ran nothing");
  cr_assert_str_eq(c[2].call.detail.by_kind, "limiter");
  cr_assert_str_eq(c[2].call.detail.by_name, "api");
  cr_assert_eq(c[2].call.detail.retry_after_ms, 100);
  cr_assert_str_eq(c[2].call.detail.key, "10.0.0.1");
  cr_assert_eq(c[2].call.detail.n[0], 2, "limit");
  cr_assert_eq(c[2].call.detail.n[1], 0, "remaining");
  cr_assert_eq(c[2].call.detail.n[2], 200, "reset");
  cr_assert_eq(c[2].call.detail.state, FY_ERATELIMITED);
  fx_advance(&FX, 0);
  cr_assert_eq(c[0].ncb, 1);
  cr_assert_eq(c[1].ncb, 1);
  cr_assert_eq(c[2].ncb, 0, "a refusal has no callback");
  cr_assert_eq(start_key(&c[2], pl, &top, "10.0.0.2"), 0, "another key");
  fx_advance(&FX, 0);
  fx_finish(&FX);
}

static const char *key_of_arg(fy_call_t *call, void *arg, size_t *len,
                              void *user_data) {
  top_t *top = arg;
  (void)call;
  (void)user_data;
  if (top->data == NULL)
    return NULL;
  *len = strlen(top->data);
  return top->data;
}

Test(limiter, stage_key_function_reads_the_argument) {
  static top_t a, b, none;
  static tcall_t c[4];
  fy_limiter_opts_t o;
  fy_pipeline_t *pl;
  fy_limiter_t *l;
  fx_init(&FX, T0);
  fy_limiter_opts_init(&o);
  o.rate = 1;
  o.key = key_of_arg;
  cr_assert_eq(fy_limiter_new(FX.ctx, &o, &l), 0);
  pl = fx_pipeline(&FX, 1, fy_limiter_policy(l));
  top_script(&a, TOP_SYNC, 0);
  top_script(&b, TOP_SYNC, 0);
  top_script(&none, TOP_SYNC, 0);
  a.data = "alice";
  b.data = "bob";
  cr_assert_eq(tcall_start(&c[0], pl, &top_op_cancel_sync, &a), 0);
  cr_assert_eq(tcall_start(&c[1], pl, &top_op_cancel_sync, &a),
               FY_ERATELIMITED);
  cr_assert_eq(tcall_start(&c[2], pl, &top_op_cancel_sync, &b), 0);
  cr_assert_eq(tcall_start(&c[3], pl, &top_op_cancel_sync, &none), FY_EKEY,
               "no key: refused, never let through");
  cr_assert_str_eq(c[3].call.detail.by_kind, "limiter");
  fx_advance(&FX, 0);
  fx_finish(&FX);
}

Test(limiter, stage_waits_in_arrival_order_until_the_exact_instant) {
  static evrec_t E;
  static top_t top;
  static tcall_t c[4];
  fy_pipeline_t *pl;
  fy_limiter_t *l;
  const fy_event_t *ev;
  fx_init(&FX, T0);
  evrec_listen(&E, FX.ctx, FY_EV_MASK(FY_EV_QUEUE));
  l = mk_stage(10, 1, 1, 0); /* one per 100 ms, no burst */
  pl = fx_pipeline(&FX, 1, fy_limiter_policy(l));
  top_script(&top, TOP_ASYNC, 0);
  cr_assert_eq(start_key(&c[0], pl, &top, "k"), 0);
  cr_assert_eq(start_key(&c[1], pl, &top, "k"), 0, "waits, not refused");
  cr_assert_eq(start_key(&c[2], pl, &top, "k"), 0);
  cr_assert_eq(start_key(&c[3], pl, &top, "other"), 0);
  cr_assert_eq(top.starts, 2, "the first call of each key runs at once");
  cr_assert_eq(fy_ctx_pending_deadlines(FX.ctx), 2, "one per waiter");
  fx_advance(&FX, 99);
  cr_assert_eq(top.starts, 2);
  fx_advance(&FX, 1);
  cr_assert_eq(top.starts, 3, "the second call at +100, not before");
  fx_advance(&FX, 99);
  cr_assert_eq(top.starts, 3);
  fx_advance(&FX, 1);
  cr_assert_eq(top.starts, 4, "the third at +200");
  top_report_all(&top, 0);
  fx_advance(&FX, 0);
  cr_assert_eq(c[1].ncb, 1);
  cr_assert_eq(c[1].status, 0);
  cr_assert_eq(c[2].ncb, 1);
  cr_assert_eq(evrec_count(&E, FY_EV_QUEUE), 4, "two joined, two left");
  ev = evrec_nth(&E, FY_EV_QUEUE, 2);
  cr_assert_eq(ev->value, 0);
  cr_assert_eq(ev->delay_ms, 100, "waited 100 ms");
  ev = evrec_nth(&E, FY_EV_QUEUE, 3);
  cr_assert_eq(ev->delay_ms, 200);
  fx_finish(&FX);
}

Test(limiter, a_take_never_jumps_the_queue) {
  static top_t top;
  static tcall_t c[2];
  fy_pipeline_t *pl;
  fy_limiter_t *l;
  fx_init(&FX, T0);
  l = mk_stage(10, 1, 1, 0);
  pl = fx_pipeline(&FX, 1, fy_limiter_policy(l));
  top_script(&top, TOP_SYNC, 0);
  cr_assert_eq(start_key(&c[0], pl, &top, "k"), 0);
  cr_assert_eq(start_key(&c[1], pl, &top, "k"), 0); /* waits until +100 */
  fx_advance(&FX, 50);
  cr_assert_eq(allow(l, "k", NULL), FY_ERATELIMITED);
  fx_advance(&FX, 50);
  cr_assert_eq(top.starts, 2);
  cr_assert_eq(allow(l, "k", NULL), FY_ERATELIMITED, "the waiter took it");
  fx_advance(&FX, 100);
  cr_assert_eq(allow(l, "k", NULL), 0);
  fx_finish(&FX);
}

Test(limiter, stage_refuses_a_wait_beyond_the_call_deadline) {
  static top_t top;
  static tcall_t c[3];
  fy_timeout_opts_t to;
  fy_timeout_t *t;
  fy_pipeline_t *pl;
  fy_limiter_t *l;
  fx_init(&FX, T0);
  l = mk_stage(10, 1, 1, 0);
  fy_timeout_opts_init(&to);
  to.timeout_ms = 150;
  cr_assert_eq(fy_timeout_new(FX.ctx, &to, &t), 0);
  pl = fx_pipeline(&FX, 2, fy_timeout_policy(t), fy_limiter_policy(l));
  top_script(&top, TOP_SYNC, 0);
  cr_assert_eq(start_key(&c[0], pl, &top, "k"), 0);
  cr_assert_eq(start_key(&c[1], pl, &top, "k"), 0, "+100 is in time");
  cr_assert_eq(start_key(&c[2], pl, &top, "k"), FY_ERATELIMITED,
               "+200 is past its 150 ms deadline: refused now");
  cr_assert_eq(c[2].call.detail.retry_after_ms, 200);
  fx_advance(&FX, 100);
  cr_assert_eq(c[1].ncb, 1);
  cr_assert_eq(c[1].status, 0);
  fx_advance(&FX, 100);
  cr_assert_eq(allow(l, "k", NULL), 0, "the refused call reserved nothing");
  fx_finish(&FX);
}

Test(limiter, stage_bounds_the_number_of_waiters) {
  static top_t top;
  static tcall_t c[3];
  fy_pipeline_t *pl;
  fy_limiter_t *l;
  fy_limiter_stats_t st;
  fx_init(&FX, T0);
  l = mk_stage(10, 1, 1, 1);
  pl = fx_pipeline(&FX, 1, fy_limiter_policy(l));
  top_script(&top, TOP_SYNC, 0);
  cr_assert_eq(start_key(&c[0], pl, &top, "k"), 0);
  cr_assert_eq(start_key(&c[1], pl, &top, "k"), 0);
  cr_assert_eq(start_key(&c[2], pl, &top, "k"), FY_ERATELIMITED,
               "a second waiter: the queue is full");
  cr_assert_eq(top.starts, 1);
  fy_limiter_stats(l, &st);
  cr_assert_eq(st.waiting, 1);
  cr_assert_eq(c[2].call.detail.retry_after_ms, 0, "no instant promised");
  cr_assert_eq(start_key(&c[2], pl, &top, "j"), 0,
               "a call that needs no wait is not held by the full queue");
  fx_advance(&FX, 100);
  cr_assert_eq(c[1].ncb, 1);
  fy_limiter_stats(l, &st);
  cr_assert_eq(st.waiting, 0);
  fx_finish(&FX);
}

Test(limiter, a_cancelled_waiter_gives_its_tokens_back) {
  static top_t top;
  static tcall_t c[3];
  fy_pipeline_t *pl;
  fy_limiter_t *l;
  fx_init(&FX, T0);
  l = mk_stage(10, 1, 1, 0);
  pl = fx_pipeline(&FX, 1, fy_limiter_policy(l));
  top_script(&top, TOP_SYNC, 0);
  cr_assert_eq(start_key(&c[0], pl, &top, "k"), 0);
  cr_assert_eq(start_key(&c[1], pl, &top, "k"), 0); /* at +100 */
  cr_assert_eq(tcall_cancel(&c[1]), 0);
  fx_advance(&FX, 0);
  cr_assert_eq(c[1].ncb, 1);
  cr_assert_eq(c[1].status, UV_ECANCELED);
  cr_assert_eq(top.starts, 1, "its operation never ran");
  cr_assert_eq(start_key(&c[2], pl, &top, "k"), 0);
  fx_advance(&FX, 100);
  cr_assert_eq(top.starts, 2, "the next waiter got the slot at +100");
  fx_finish(&FX);
}

/* ---- waits without a pipeline -------------------------------------------- */

typedef struct waited_s {
  fy_limit_wait_t w;
  unsigned n;
  int status;
  uint64_t at;
} waited_t;

static void on_waited(fy_limit_wait_t *w, int status) {
  waited_t *x = fy_container_of(w, waited_t, w);
  x->n++;
  x->status = status;
  x->at = fy_ctx_now(FX.ctx);
}

Test(limiter, wait_completes_when_the_tokens_are_there) {
  static waited_t a, b;
  fy_limit_verdict_t v;
  fy_limiter_t *l;
  fx_init(&FX, T0);
  l = mk(FY_LIMIT_GCRA, 10, 1000, 1);
  cr_assert_eq(allow(l, "k", NULL), 0);
  cr_assert_eq(fy_limiter_wait(l, &a.w, "k", 1, 1, 0, on_waited, &v), 0);
  cr_assert_eq(a.n, 0, "never inside the call");
  cr_assert_eq(fy_limiter_wait(l, &a.w, "k", 1, 1, 0, on_waited, NULL),
               UV_EBUSY);
  cr_assert_eq(fy_limiter_wait(l, &b.w, "k", 1, 1, 150, on_waited, &v),
               FY_ERATELIMITED, "its tokens come at +200, after 150 ms");
  cr_assert_eq(v.retry_after_ms, 200);
  fx_advance(&FX, 99);
  cr_assert_eq(a.n, 0);
  fx_advance(&FX, 1);
  cr_assert_eq(a.n, 1);
  cr_assert_eq(a.status, 0);
  cr_assert_eq(a.at, T0 + 100);
  /* Tokens already there: the callback still comes from the loop. */
  fx_advance(&FX, 100);
  cr_assert_eq(fy_limiter_wait(l, &a.w, "k", 1, 1, 0, on_waited, NULL), 0);
  cr_assert_eq(a.n, 1);
  fx_advance(&FX, 0);
  cr_assert_eq(a.n, 2);
  cr_assert_eq(a.status, 0);
  cr_assert_eq(fy_limiter_wait(l, &a.w, "k", 1, 0, 0, on_waited, NULL),
               UV_EINVAL);
  fx_finish(&FX);
}

Test(limiter, wait_cancel_calls_back_from_the_loop) {
  static waited_t a, b;
  fy_limiter_t *l;
  fx_init(&FX, T0);
  l = mk(FY_LIMIT_GCRA, 10, 1000, 1);
  cr_assert_eq(allow(l, "k", NULL), 0);
  cr_assert_eq(fy_limiter_wait(l, &a.w, "k", 1, 1, 0, on_waited, NULL), 0);
  cr_assert_eq(fy_limiter_wait_cancel(&a.w), 0);
  cr_assert_eq(a.n, 0, "not inside the cancel");
  cr_assert_eq(fy_limiter_wait_cancel(&a.w), 0, "twice is harmless");
  fx_advance(&FX, 0);
  cr_assert_eq(a.n, 1);
  cr_assert_eq(a.status, UV_ECANCELED);
  cr_assert_eq(fy_limiter_wait_cancel(&a.w), UV_EINVAL, "not waiting");
  cr_assert_eq(fy_limiter_wait(l, &b.w, "k", 1, 1, 0, on_waited, NULL), 0);
  fx_advance(&FX, 100);
  cr_assert_eq(b.n, 1, "the cancelled wait's slot went to the next");
  cr_assert_eq(b.at, T0 + 100);
  fx_finish(&FX);
}

Test(limiter, close_completes_every_waiter_once) {
  static top_t top;
  static tcall_t c[2];
  static waited_t a;
  fx_closed_t closed = {0};
  fy_pipeline_t *pl;
  fy_limiter_t *l;
  fx_init(&FX, T0);
  l = mk_stage(10, 1, 1, 0);
  pl = fx_pipeline(&FX, 1, fy_limiter_policy(l));
  top_script(&top, TOP_SYNC, 0);
  cr_assert_eq(start_key(&c[0], pl, &top, "k"), 0);
  cr_assert_eq(start_key(&c[1], pl, &top, "k"), 0);
  cr_assert_eq(fy_limiter_wait(l, &a.w, "k", 1, 1, 0, on_waited, NULL), 0);
  cr_assert_eq(fy_limiter_close(l, fx_obj_closed, &closed), 0);
  cr_assert_eq(fy_limiter_close(l, NULL, NULL), FY_ECLOSED);
  cr_assert_eq(fy_limiter_allow(l, "k", 1, NULL), FY_ECLOSED);
  cr_assert_eq(a.n, 0);
  fx_advance(&FX, 0);
  cr_assert_eq(a.n, 1);
  cr_assert_eq(a.status, UV_ECANCELED);
  cr_assert_eq(c[1].ncb, 1);
  cr_assert_eq(c[1].status, UV_ECANCELED);
  cr_assert_eq(top.starts, 1);
  fx_advance(&FX, 1000);
  cr_assert_eq(a.n, 1, "exactly once");
  cr_assert_eq(c[1].ncb, 1);
  fy_pipeline_close(pl, NULL, NULL);
  fx_advance(&FX, 0);
  cr_assert_eq(closed.n, 1);
  cr_assert_eq(closed.obj, l);
  fx_finish(&FX);
}

/* ---- the key table under pressure ---------------------------------------- */

/* A flood of one-off keys fills the table over and over; a key in steady
 * use is never the least recently used, so it is never evicted: its
 * bucket stays empty (an eviction would give it a fresh burst). */
Test(limiter, a_flood_of_new_keys_never_locks_out_or_resets_a_key_in_use) {
  fy_limiter_opts_t o;
  fy_limiter_t *l;
  fy_limiter_stats_t st;
  char key[32];
  unsigned i;
  fx_init(&FX, T0);
  fy_limiter_opts_init(&o);
  o.rate = 1;
  o.interval_ms = 60000;
  o.burst = 1;
  o.max_keys = 1000;
  cr_assert_eq(fy_limiter_new(FX.ctx, &o, &l), 0);
  cr_assert_eq(allow(l, "good", NULL), 0);
  for (i = 0; i < 1100000; i++) {
    int n = snprintf(key, sizeof(key), "garbage-%u", i);
    cr_assert_eq(fy_limiter_allow(l, key, (size_t)n, NULL), 0,
                 "a new key is never refused (%u)", i);
    if (i % 500 == 0)
      cr_assert_eq(allow(l, "good", NULL), FY_ERATELIMITED,
                   "the key in use kept its state (%u)", i);
  }
  fy_limiter_stats(l, &st);
  cr_assert_eq(st.keys, 1000);
  cr_assert_geq(st.evicted, 1100000 - 1000);
  cr_assert_gt(st.bytes, 0);
  cr_assert_leq(st.bytes, 1000 * 64 + 4096, "bytes: %llu",
                (unsigned long long)st.bytes);
  fx_finish(&FX);
}

Test(limiter, idle_keys_expire_without_losing_anything) {
  fy_limiter_t *l;
  fy_limiter_stats_t st;
  char key[16];
  int i, n;
  fx_init(&FX, T0);
  l = mk(FY_LIMIT_GCRA, 1, 1000, 1);
  for (i = 0; i < 100; i++) {
    n = snprintf(key, sizeof(key), "k%d", i);
    cr_assert_eq(fy_limiter_allow(l, key, (size_t)n, NULL), 0);
  }
  fx_advance(&FX, 1000); /* every bucket is full again */
  for (i = 0; i < 100; i++) {
    n = snprintf(key, sizeof(key), "n%d", i);
    cr_assert_eq(fy_limiter_allow(l, key, (size_t)n, NULL), 0);
  }
  fy_limiter_stats(l, &st);
  cr_assert_gt(st.expired, 0, "new keys swept idle ones out");
  cr_assert_eq(st.evicted, 0, "the table never had to evict");
  cr_assert_eq(allow(l, "k0", NULL), 0, "an expired key is a full bucket");
  fx_finish(&FX);
}

/* ---- allocation failures ------------------------------------------------ */

Test(limiter, out_of_memory_creates_nothing) {
  fy_limiter_t *l;
  long from;
  int rc = UV_ENOMEM;
  for (from = 0; rc != 0; from++) {
    cr_assert_lt(from, 64, "fy_limiter_new never succeeded");
    fx_init_counted(&FX, T0);
    FA.fail_from = from;
    l = (fy_limiter_t *)&rc;
    rc = fy_limiter_new(FX.ctx, NULL, &l);
    FA.fail_from = -1;
    if (rc != 0) {
      cr_assert_eq(rc, UV_ENOMEM, "allocation %ld", from);
      cr_assert_null(l);
    } else {
      cr_assert_eq(fy_limiter_allow(l, "k", 1, NULL), 0);
    }
    fx_finish_counted(&FX);
  }
  cr_assert_gt(from, 1, "at least one allocation was tried");
}

/* A cancelled waiter that is not the last keeps its tokens taken: giving
 * them back would let the next request overtake the waiter behind it. */
Test(limiter, a_cancelled_waiter_in_the_middle_lets_nobody_overtake) {
  static top_t top;
  static tcall_t c[4];
  fy_pipeline_t *pl;
  fy_limiter_t *l;
  fx_init(&FX, T0);
  l = mk_stage(10, 1, 1, 0);
  pl = fx_pipeline(&FX, 1, fy_limiter_policy(l));
  top_script(&top, TOP_SYNC, 0);
  cr_assert_eq(start_key(&c[0], pl, &top, "k"), 0);
  cr_assert_eq(start_key(&c[1], pl, &top, "k"), 0); /* at +100 */
  cr_assert_eq(start_key(&c[2], pl, &top, "k"), 0); /* at +200 */
  cr_assert_eq(tcall_cancel(&c[1]), 0);
  cr_assert_eq(start_key(&c[3], pl, &top, "k"), 0);
  fx_advance(&FX, 199);
  cr_assert_eq(top.starts, 1, "nobody took the cancelled waiter's slot");
  fx_advance(&FX, 1);
  cr_assert_eq(top.starts, 2, "the third call at +200, as promised");
  fx_advance(&FX, 99);
  cr_assert_eq(top.starts, 2);
  fx_advance(&FX, 1);
  cr_assert_eq(top.starts, 3, "the fourth after it, at +300");
  cr_assert_eq(c[1].status, UV_ECANCELED);
  fx_finish(&FX);
}

/* The token bucket's waits owe tokens to the refills to come: each wait
 * wakes at the refill that brings its tokens, in arrival order, and a
 * refill beyond the capacity is not counted twice. */
Test(limiter, token_bucket_waits_wake_at_the_refill_that_pays_them) {
  static waited_t a, b, c;
  fy_limit_verdict_t v;
  fy_limiter_t *l;
  fx_init(&FX, T0);
  l = mk(FY_LIMIT_TOKEN_BUCKET, 2, 1000, 2);
  cr_assert_eq(fy_limiter_take(l, "k", 1, 2, NULL), 0); /* empty */
  cr_assert_eq(fy_limiter_wait(l, &a.w, "k", 1, 1, 0, on_waited, &v), 0);
  cr_assert_eq(v.retry_after_ms, 1000, "the next refill brings 2");
  cr_assert_eq(fy_limiter_wait(l, &b.w, "k", 1, 2, 0, on_waited, &v), 0);
  cr_assert_eq(v.retry_after_ms, 2000, "one token left at +1000: +2000");
  /* At +2000 the bucket holds 2, not 1 + 2: it never holds more than its
   * capacity, so the token left at +1000 is not there twice. */
  cr_assert_eq(fy_limiter_wait(l, &c.w, "k", 1, 1, 0, on_waited, &v), 0);
  cr_assert_eq(v.retry_after_ms, 3000, "b takes the whole second refill");
  cr_assert_eq(fy_limiter_take(l, "k", 1, 1, &v), FY_ERATELIMITED);
  cr_assert_eq(v.remaining, 0);
  cr_assert_eq(v.retry_after_ms, 3000, "the token c leaves at +3000");
  fx_advance(&FX, 1000);
  cr_assert_eq(a.n, 1);
  cr_assert_eq(b.n + c.n, 0);
  fx_advance(&FX, 1000);
  cr_assert_eq(b.n, 1);
  cr_assert_eq(b.at, T0 + 2000);
  cr_assert_eq(c.n, 0);
  cr_assert_eq(fy_limiter_allow(l, "k", 1, NULL), FY_ERATELIMITED);
  fx_advance(&FX, 1000);
  cr_assert_eq(c.n, 1);
  cr_assert_eq(c.at, T0 + 3000);
  cr_assert_eq(fy_limiter_allow(l, "k", 1, NULL), 0, "the one c left");
  cr_assert_eq(fy_limiter_allow(l, "k", 1, NULL), FY_ERATELIMITED);
  fx_advance(&FX, 1000);
  cr_assert_eq(fy_limiter_take(l, "k", 1, 2, NULL), 0, "a full refill");
  fx_finish(&FX);
}

Test(limiter, an_evicted_key_is_named_in_an_event) {
  static evrec_t E;
  fy_limiter_opts_t o;
  fy_limiter_t *l;
  fy_limiter_stats_t st;
  const fy_event_t *ev;
  fx_init(&FX, T0);
  evrec_listen(&E, FX.ctx, FY_EV_MASK(FY_EV_EVICT));
  fy_limiter_opts_init(&o);
  o.rate = 1;
  o.interval_ms = 60000;
  o.max_keys = 2;
  cr_assert_eq(fy_limiter_new(FX.ctx, &o, &l), 0);
  cr_assert_eq(allow(l, "a\tb", NULL), 0);
  cr_assert_eq(allow(l, "c", NULL), 0);
  cr_assert_eq(E.n, 0);
  cr_assert_eq(allow(l, "d", NULL), 0, "a new key is never refused");
  cr_assert_eq(E.n, 1);
  ev = evrec_nth(&E, FY_EV_EVICT, 0);
  cr_assert_str_eq(ev->key, "a_b", "the least recently used, sanitised");
  cr_assert_str_eq(ev->policy_kind, "limiter");
  fy_limiter_stats(l, &st);
  cr_assert_eq(st.evicted, 1);
  cr_assert_eq(st.keys, 2);
  cr_assert_eq(allow(l, "c", NULL), FY_ERATELIMITED, "c kept its state");
  fx_finish(&FX);
}
