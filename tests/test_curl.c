/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * Tests of the libcurl adapter, through real libcurl against the test
 * upstream running in-process on the same loop (everything here is single-
 * threaded).  The clock is real, because the I/O is: bounds are generous
 * and only ever one-sided.  Every loop test ends by closing the adapter,
 * the servers and the context and checking uv_loop_close() == 0. */
#include <criterion/criterion.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "fortify.h"
#include "fortify/curl.h"
#include "upstream.h"

/* ---- fixture ----------------------------------------------------------- */

static uv_loop_t loop;
static fy_ctx_t *ctx;
static fy_curl_t *cu;
static fy_up_t *up;
static fy_up_t *up2;
static char base[64];
static char base2[64];
static uv_timer_t guard; /* wakes uv_run() up while a test waits */
static int curl_closed, ctx_closed, up_closed, guard_closed;
static int closes_expected; /* close callbacks the teardown waits for */

static void on_guard(uv_timer_t *t) { (void)t; }

static void count_close(void *obj, void *user_data) {
  (void)obj;
  (*(int *)user_data)++;
}

static void on_up_closed(void *user_data) { (*(int *)user_data)++; }
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

static fy_curl_t *adapter(const fy_curl_opts_t *o) {
  fy_curl_t *c = NULL;
  cr_assert_eq(fy_curl_new(ctx, o, &c), 0);
  cr_assert_not_null(c);
  return c;
}

/* Close the adapter (its callback is counted by the teardown). */
static void close_adapter(void) {
  cr_assert_eq(fy_curl_close(cu, count_close, &curl_closed), 0);
  closes_expected++;
  cu = NULL;
}

static void setup(void) {
  cr_assert_eq(uv_loop_init(&loop), 0);
  cr_assert_eq(fy_ctx_new(&loop, NULL, &ctx), 0);
  cr_assert_eq(uv_timer_init(&loop, &guard), 0);
  up = server(base, sizeof(base), 42);
  cu = adapter(NULL);
}

/* Run the loop until |*counter| reaches |target| or |ms| have passed. */
static int wait_for(const int *counter, int target, uint64_t ms) {
  uint64_t until = uv_hrtime() + ms * 1000000u;
  uv_timer_start(&guard, on_guard, 10, 10);
  while (*counter < target && uv_hrtime() < until)
    uv_run(&loop, UV_RUN_ONCE);
  uv_timer_stop(&guard);
  return *counter >= target;
}

/* Let the loop run for |ms| (to see that nothing else happens). */
static void run_for(uint64_t ms) {
  int never = 0;
  wait_for(&never, 1, ms);
}

static void teardown(void) {
  int pending = closes_expected;
  if (ctx == NULL) {
    /* The test closed the context itself. */
    uv_close((uv_handle_t *)&guard, on_guard_closed);
    cr_assert_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    cr_assert_eq(uv_loop_close(&loop), 0);
    return;
  }
  if (cu != NULL && fy_curl_close(cu, count_close, &curl_closed) == 0)
    pending++;
  cu = NULL;
  if (up != NULL) {
    fy_up_close(up, on_up_closed, &up_closed);
    pending++;
  }
  if (up2 != NULL) {
    fy_up_close(up2, on_up_closed, &up_closed);
    pending++;
  }
  up = up2 = NULL;
  cr_assert_eq(fy_ctx_close(ctx, count_close, &ctx_closed), 0);
  uv_close((uv_handle_t *)&guard, on_guard_closed);
  cr_assert_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  cr_assert_eq(ctx_closed, 1);
  cr_assert_eq(guard_closed, 1);
  cr_assert_eq(curl_closed + up_closed + 0, pending,
               "adapter and servers closed: %d + %d of %d", curl_closed,
               up_closed, pending);
  cr_assert_eq(uv_loop_close(&loop), 0);
}

TestSuite(curl, .init = setup, .fini = teardown, .timeout = 20);

/* ---- requests ---------------------------------------------------------- */

typedef struct treq_s {
  fy_curl_req_t req;
  int done;
  int status;
  uint64_t elapsed_ms;
  uint64_t t0;
  size_t body_at_done;
  void (*then)(struct treq_s *t);
} treq_t;

static int g_done;

static void on_done(fy_call_t *call, int status) {
  treq_t *t = fy_container_of(call, treq_t, req.call);
  t->done++;
  t->status = status;
  t->elapsed_ms = (uv_hrtime() - t->t0) / 1000000u;
  t->body_at_done = t->req.body.len;
  g_done++;
  if (t->then != NULL)
    t->then(t);
}

static void treq_init(treq_t *t, const char *url) {
  memset(t, 0, sizeof(*t));
  cr_assert_eq(fy_curl_req_init(cu, &t->req), 0);
  cr_assert_eq(fy_curl_req_set_url(&t->req, url), 0);
}

static void treq_initf(treq_t *t, const char *fmt, const char *b,
                       const char *rest) {
  char url[512];
  snprintf(url, sizeof(url), fmt, b, rest);
  treq_init(t, url);
}

static int treq_start(treq_t *t, fy_pipeline_t *pl) {
  t->t0 = uv_hrtime();
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

static fy_pipeline_t *bare_pipeline(void) {
  fy_pipeline_t *pl = NULL;
  cr_assert_eq(fy_pipeline_new(ctx, NULL, 0, &pl), 0);
  return pl;
}

static fy_pipeline_t *pipeline_of(size_t n, fy_policy_t **layers) {
  fy_pipeline_t *pl = NULL;
  cr_assert_eq(fy_pipeline_new(ctx, layers, n, &pl), 0);
  return pl;
}

static fy_retry_t *curl_retry(unsigned attempts, int require_idempotent) {
  fy_retry_opts_t o;
  fy_retry_t *r = NULL;
  fy_retry_opts_init(&o);
  o.max_attempts = attempts;
  o.initial_delay_ms = 1;
  o.max_delay_ms = 5;
  o.require_idempotent = require_idempotent;
  o.is_retryable = fy_curl_retry_classify;
  cr_assert_eq(fy_retry_new(ctx, &o, &r), 0);
  return r;
}

static fy_timeout_t *per_try(uint64_t total, uint64_t first_byte,
                             uint64_t idle) {
  fy_timeout_opts_t o;
  fy_timeout_t *t = NULL;
  fy_timeout_opts_init(&o);
  o.timeout_ms = total;
  o.first_byte_ms = first_byte;
  o.idle_ms = idle;
  o.scope = FY_TIMEOUT_PER_TRY;
  cr_assert_eq(fy_timeout_new(ctx, &o, &t), 0);
  return t;
}

static uint64_t server_requests(fy_up_t *s) {
  fy_up_stats_t st;
  fy_up_stats(s, &st);
  return st.requests;
}

static void assert_idle(void) {
  fy_curl_stats_t st;
  fy_curl_stats(cu, &st);
  cr_assert_eq(st.transfers, 0, "transfers left in the multi: %zu",
               st.transfers);
  cr_assert_eq(st.started, st.completed);
}

/* ---- basics ------------------------------------------------------------ */

Test(curl, get_ok_with_body_and_headers) {
  treq_t t;
  size_t len = 0;
  const char *v;
  treq_initf(&t, "%s/hello%s", base, "");
  treq_run(&t, bare_pipeline());
  cr_assert_eq(t.status, 0);
  cr_assert_eq(t.req.http_code, 200);
  cr_assert_eq(t.req.curl_code, CURLE_OK);
  cr_assert_eq(t.req.attempts, 1);
  cr_assert_eq(t.req.connects, 1);
  cr_assert_str_eq(t.req.body.data, "ok\n");
  cr_assert_eq(t.req.body.len, 3);
  cr_assert_not_null(t.req.headers.data);
  cr_assert(strncmp(t.req.headers.data, "HTTP/1.1 200", 12) == 0);
  v = fy_curl_req_header(&t.req, "content-length", &len);
  cr_assert_not_null(v);
  cr_assert_eq(len, 1);
  cr_assert_eq(v[0], '3');
  cr_assert_null(fy_curl_req_header(&t.req, "x-absent", &len));
  cr_assert_eq(len, 0);
  cr_assert_eq(server_requests(up), 1, "one request, no duplicate");
  assert_idle();
  treq_cleanup(&t);
}

Test(curl, body_sizes_and_storage_off) {
  treq_t t;
  treq_initf(&t, "%s/big?body=200000%s", base, "");
  treq_run(&t, bare_pipeline());
  cr_assert_eq(t.status, 0);
  cr_assert_eq(t.req.body.len, 200000);
  /* Storage off: the transfer still runs to the end. */
  cr_assert_eq(fy_curl_req_set_limits(&t.req, 0, 0), 0);
  t.done = 0;
  treq_run(&t, bare_pipeline());
  cr_assert_eq(t.status, 0);
  cr_assert_eq(t.req.body.len, 0);
  cr_assert_eq(t.req.headers.len, 0);
  cr_assert_eq(t.req.connects, 0, "the connection was reused");
  treq_cleanup(&t);
}

Test(curl, body_over_limit_fails_with_emsgsize) {
  fy_curl_opts_t o;
  treq_t a, b;
  close_adapter();
  fy_curl_opts_init(&o);
  o.max_body_bytes = 1000;
  cu = adapter(&o);
  /* Content-Length known up front, and a chunked body discovered late. */
  treq_initf(&a, "%s/x?body=5000%s", base, "");
  treq_initf(&b, "%s/x?body=5000&chunked=1&chunk=700%s", base, "");
  treq_run(&a, bare_pipeline());
  treq_run(&b, bare_pipeline());
  cr_assert_eq(a.status, UV_EMSGSIZE);
  cr_assert_eq(b.status, UV_EMSGSIZE);
  cr_assert_leq(b.req.body.len, 1000);
  cr_assert_eq(fy_curl_retry_classify(UV_EMSGSIZE, NULL), 0);
  cr_assert_eq(fy_curl_breaker_classify(UV_EMSGSIZE, NULL),
               FY_OUTCOME_IGNORE);
  treq_cleanup(&a);
  treq_cleanup(&b);
  assert_idle();
}

Test(curl, headers_over_limit_fail_with_emsgsize) {
  treq_t t;
  treq_initf(&t, "%s/x?action=huge_headers&huge_kb=32%s", base, "");
  cr_assert_eq(fy_curl_req_set_limits(&t.req, 1 << 20, 8 << 10), 0);
  treq_run(&t, bare_pipeline());
  cr_assert_eq(t.status, UV_EMSGSIZE);
  /* Large enough: the same response goes through. */
  cr_assert_eq(fy_curl_req_set_limits(&t.req, 1 << 20, 64 << 10), 0);
  t.done = 0;
  treq_run(&t, bare_pipeline());
  cr_assert_eq(t.status, 0);
  cr_assert_gt(t.req.headers.len, 32 << 10);
  treq_cleanup(&t);
}


/* ---- status mapping and classification --------------------------------- */

Test(curl, status_mapping_table) {
  static const struct {
    CURLcode code;
    int status;
  } table[] = {
      {CURLE_OK, 0},
      {CURLE_COULDNT_RESOLVE_HOST, UV_EAI_NONAME},
      {CURLE_COULDNT_CONNECT, UV_ECONNREFUSED},
      {CURLE_OPERATION_TIMEDOUT, UV_ETIMEDOUT},
      {CURLE_RECV_ERROR, UV_ECONNRESET},
      {CURLE_SEND_ERROR, UV_ECONNRESET},
      {CURLE_GOT_NOTHING, UV_ECONNRESET},
      {CURLE_PARTIAL_FILE, UV_EOF},
      {CURLE_WEIRD_SERVER_REPLY, UV_EPROTO},
      {CURLE_FILESIZE_EXCEEDED, UV_EMSGSIZE},
      {CURLE_TOO_MANY_REDIRECTS, UV_ELOOP},
      {CURLE_OUT_OF_MEMORY, UV_ENOMEM},
      {CURLE_URL_MALFORMAT, UV_EINVAL},
      {CURLE_UNSUPPORTED_PROTOCOL, UV_EPROTONOSUPPORT},
      {CURLE_SSL_CONNECT_ERROR, UV_ECONNABORTED},
      {CURLE_PEER_FAILED_VERIFICATION, UV_EACCES},
      {CURLE_ABORTED_BY_CALLBACK, UV_ECANCELED},
      {CURLE_READ_ERROR, UV_EIO},
  };
  char buf[64];
  size_t i;
  for (i = 0; i < sizeof(table) / sizeof(table[0]); i++)
    cr_assert_eq(fy_curl_status(table[i].code), table[i].status,
                 "CURLcode %d", (int)table[i].code);
  cr_assert_eq(FY_CURL_EHTTP(503), -6503);
  cr_assert_eq(fy_curl_http_code(FY_CURL_EHTTP(503)), 503);
  cr_assert_eq(fy_curl_http_code(FY_CURL_EHTTP(100)), 100);
  cr_assert_eq(fy_curl_http_code(FY_CURL_EHTTP(999)), 999);
  cr_assert_eq(fy_curl_http_code(0), 0);
  cr_assert_eq(fy_curl_http_code(UV_ECONNRESET), 0);
  cr_assert_eq(fy_curl_http_code(FY__ERRNO_BASE - 13), 0);
  cr_assert_eq(fy_curl_http_code(FY_CURL_EHTTP(99)), 0);
  cr_assert_eq(fy_curl_http_code(FY_CURL_EHTTP(1000)), 0);
  cr_assert_eq(fy_is_fy_error(FY_CURL_EHTTP(404)), 0);
  cr_assert_str_eq(fy_curl_err_name_r(FY_CURL_EHTTP(404), buf, sizeof(buf)),
                   "FY_EHTTP_404");
  cr_assert_str_eq(fy_curl_err_name_r(FY_CURL_EHTTP(404), buf, sizeof(buf)),
                   fy_err_name(FY_CURL_EHTTP(404)));
  cr_assert_str_eq(fy_curl_strerror_r(FY_CURL_EHTTP(404), buf, sizeof(buf)),
                   fy_strerror(FY_CURL_EHTTP(404)));
  cr_assert_str_eq(fy_curl_strerror_r(FY_CURL_EHTTP(503), buf, sizeof(buf)),
                   "HTTP status 503");
  cr_assert_str_eq(fy_curl_err_name_r(UV_ECONNRESET, buf, sizeof(buf)),
                   "UV_ECONNRESET");
  cr_assert_str_eq(fy_curl_err_name_r(FY_ECIRCUITOPEN, buf, sizeof(buf)),
                   "FY_ECIRCUITOPEN");
}

Test(curl, class_table_defaults_and_overrides) {
  fy_curl_class_t cls;
  int code;
  fy_curl_class_init(&cls);
  for (code = 100; code <= 999; code++) {
    int retry = code == 408 || code == 429 || code == 502 || code == 503 ||
                code == 504;
    fy_outcome_t brk = code < 500 ? FY_OUTCOME_SUCCESS : FY_OUTCOME_FAILURE;
    if (code == 408 || code == 429)
      brk = FY_OUTCOME_IGNORE;
    cr_assert_eq(!!(cls.http[code] & FY_CURL_CLASS_ERROR), code >= 400);
    cr_assert_eq(fy_curl_retry_classify(FY_CURL_EHTTP(code), &cls), retry,
                 "retry %d", code);
    cr_assert_eq(fy_curl_retry_classify(FY_CURL_EHTTP(code), NULL), retry);
    cr_assert_eq(fy_curl_breaker_classify(FY_CURL_EHTTP(code), &cls), brk,
                 "breaker %d", code);
    cr_assert_eq(fy_curl_breaker_classify(FY_CURL_EHTTP(code), NULL), brk);
  }
  /* Transport failures. */
  cr_assert_eq(fy_curl_retry_classify(UV_ECONNREFUSED, NULL), 1);
  cr_assert_eq(fy_curl_retry_classify(UV_ECONNRESET, NULL), 1);
  cr_assert_eq(fy_curl_retry_classify(UV_ETIMEDOUT, NULL), 1);
  cr_assert_eq(fy_curl_retry_classify(UV_EAI_NONAME, NULL), 1);
  cr_assert_eq(fy_curl_retry_classify(UV_EOF, NULL), 1);
  cr_assert_eq(fy_curl_retry_classify(UV_EPROTO, NULL), 1);
  cr_assert_eq(fy_curl_retry_classify(UV_EINVAL, NULL), 0);
  cr_assert_eq(fy_curl_retry_classify(UV_EACCES, NULL), 0);
  cr_assert_eq(fy_curl_retry_classify(UV_EPROTONOSUPPORT, NULL), 0);
  cr_assert_eq(fy_curl_retry_classify(UV_ECANCELED, NULL), -1);
  cr_assert_eq(fy_curl_retry_classify(FY_EDEADLINE, NULL), -1);
  cr_assert_eq(fy_curl_breaker_classify(0, NULL), FY_OUTCOME_SUCCESS);
  cr_assert_eq(fy_curl_breaker_classify(UV_ECONNRESET, NULL),
               FY_OUTCOME_FAILURE);
  cr_assert_eq(fy_curl_breaker_classify(UV_ETIMEDOUT, NULL),
               FY_OUTCOME_FAILURE);
  cr_assert_eq(fy_curl_breaker_classify(FY_EDEADLINE, NULL),
               FY_OUTCOME_FAILURE);
  cr_assert_eq(fy_curl_breaker_classify(UV_ECANCELED, NULL),
               FY_OUTCOME_IGNORE);
  cr_assert_eq(fy_curl_breaker_classify(FY_ECIRCUITOPEN, NULL),
               FY_OUTCOME_IGNORE);
  /* Overrides: 404 retried and a breaker failure; 500 ignored. */
  cr_assert_eq(fy_curl_class_set(&cls, 404,
                                 FY_CURL_CLASS_ERROR | FY_CURL_CLASS_RETRY |
                                     FY_CURL_CLASS_BREAKER_FAIL),
               0);
  cr_assert_eq(fy_curl_class_set(&cls, 500, FY_CURL_CLASS_ERROR |
                                                FY_CURL_CLASS_BREAKER_IGNORE |
                                                FY_CURL_CLASS_BREAKER_FAIL),
               0);
  cr_assert_eq(fy_curl_retry_classify(FY_CURL_EHTTP(404), &cls), 1);
  cr_assert_eq(fy_curl_breaker_classify(FY_CURL_EHTTP(404), &cls),
               FY_OUTCOME_FAILURE);
  cr_assert_eq(fy_curl_breaker_classify(FY_CURL_EHTTP(500), &cls),
               FY_OUTCOME_IGNORE);
  cr_assert_eq(fy_curl_class_set(&cls, 99, 0), UV_EINVAL);
  cr_assert_eq(fy_curl_class_set(&cls, 1000, 0), UV_EINVAL);
  cr_assert_eq(fy_curl_class_set(NULL, 200, 0), UV_EINVAL);
}

static const int http_codes[] = {200, 204, 301, 302, 400, 401, 404, 408,
                                 409, 418, 429, 500, 501, 502, 503, 504,
                                 599};
#define N_CODES (sizeof(http_codes) / sizeof(http_codes[0]))

static int retryable_code(int code) {
  return code == 408 || code == 429 || code == 502 || code == 503 ||
         code == 504;
}

Test(curl, http_codes_map_to_statuses) {
  fy_pipeline_t *pl = bare_pipeline();
  size_t i;
  for (i = 0; i < N_CODES; i++) {
    char q[32];
    treq_t t;
    int code = http_codes[i];
    snprintf(q, sizeof(q), "?status=%d", code);
    treq_initf(&t, "%s/code%s", base, q);
    treq_run(&t, pl);
    cr_assert_eq(t.req.http_code, code);
    cr_assert_eq(t.status, code >= 400 ? FY_CURL_EHTTP(code) : 0,
                 "code %d: status %d", code, t.status);
    cr_assert_eq(t.req.status, t.status);
    treq_cleanup(&t);
  }
  assert_idle();
}

Test(curl, http_codes_retried_by_the_rules) {
  fy_policy_t *layers[1];
  fy_pipeline_t *pl;
  size_t i;
  layers[0] = fy_retry_policy(curl_retry(3, 0));
  pl = pipeline_of(1, layers);
  for (i = 0; i < N_CODES; i++) {
    char q[32];
    treq_t t;
    int code = http_codes[i];
    uint64_t before = server_requests(up);
    unsigned want = code < 400 ? 1 : retryable_code(code) ? 3 : 1;
    snprintf(q, sizeof(q), "?status=%d", code);
    treq_initf(&t, "%s/code%s", base, q);
    treq_run(&t, pl);
    cr_assert_eq(t.req.attempts, want, "code %d: %u attempts", code,
                 t.req.attempts);
    cr_assert_eq(server_requests(up) - before, want);
    cr_assert_eq(t.status, code >= 400 ? FY_CURL_EHTTP(code) : 0);
    treq_cleanup(&t);
  }
}

static fy_curl_hosts_t *hosts_policy(uint32_t threshold, uint32_t max_hosts,
                                     fy_curl_key_fn key,
                                     fy_curl_host_state_fn on_state,
                                     void *user_data) {
  fy_curl_hosts_opts_t o;
  fy_curl_hosts_t *h = NULL;
  fy_curl_hosts_opts_init(&o);
  o.name = "hosts";
  o.max_hosts = max_hosts;
  o.breaker.failure_threshold = threshold;
  o.breaker.open_ms = 60000;
  o.key = key;
  o.on_state_change = on_state;
  o.user_data = user_data;
  cr_assert_eq(fy_curl_hosts_new(ctx, &o, &h), 0);
  cr_assert_not_null(h);
  return h;
}

Test(curl, breaker_counts_5xx_not_4xx) {
  fy_curl_hosts_t *h = hosts_policy(2, 8, NULL, NULL, NULL);
  fy_policy_t *layers[1] = {fy_curl_hosts_policy(h)};
  fy_pipeline_t *pl = pipeline_of(1, layers);
  static const char *const healthy[] = {"404", "400", "429", "408", "401",
                                        "200", "404", "429", "408"};
  fy_breaker_counts_t counts;
  fy_breaker_t *b;
  treq_t t;
  size_t i;

  for (i = 0; i < sizeof(healthy) / sizeof(healthy[0]); i++) {
    treq_initf(&t, "%s/b?status=%s", base, healthy[i]);
    treq_run(&t, pl);
    treq_cleanup(&t);
  }
  b = fy_curl_hosts_breaker(h, fy_curl_req_host(&t.req));
  cr_assert_not_null(b);
  cr_assert_eq(fy_breaker_state(b), FY_BREAKER_CLOSED);
  fy_breaker_counts(b, &counts);
  cr_assert_eq(counts.total_failures, 0);
  cr_assert_eq(counts.total_successes, 5, "4xx other than 408/429 and 2xx");
  /* Two 5xx in a row open it; the next call is refused at once. */
  for (i = 0; i < 2; i++) {
    treq_initf(&t, "%s/b?status=%s", base, i == 0 ? "500" : "503");
    treq_run(&t, pl);
    treq_cleanup(&t);
  }
  cr_assert_eq(fy_breaker_state(b), FY_BREAKER_OPEN);
  treq_initf(&t, "%s/b%s", base, "");
  cr_assert_eq(treq_start(&t, pl), FY_ECIRCUITOPEN);
  cr_assert_str_eq(t.req.call.detail.by_kind, "hosts");
  cr_assert_str_eq(t.req.call.detail.by_name, "hosts");
  cr_assert_eq(t.req.call.detail.state, FY_BREAKER_OPEN);
  cr_assert_gt(t.req.call.detail.retry_after_ms, 0);
  cr_assert_str_eq(t.req.call.detail.key, fy_curl_req_host(&t.req));
  cr_assert_eq(t.done, 0);
  treq_cleanup(&t);
}

/* A port with nobody listening: bound, never listened on. */
static uv_tcp_t dead_tcp;

static int dead_port(void) {
  struct sockaddr_in addr;
  struct sockaddr_storage name;
  int len = sizeof(name);
  cr_assert_eq(uv_tcp_init(&loop, &dead_tcp), 0);
  cr_assert_eq(uv_ip4_addr("127.0.0.1", 0, &addr), 0);
  cr_assert_eq(uv_tcp_bind(&dead_tcp, (const struct sockaddr *)&addr, 0), 0);
  cr_assert_eq(uv_tcp_getsockname(&dead_tcp, (struct sockaddr *)&name, &len),
               0);
  return ntohs(((struct sockaddr_in *)&name)->sin_port);
}

Test(curl, transport_errors_map_and_retry) {
  static const struct {
    const char *query;
    int status;
    int hits; /* requests the server sees over 2 attempts */
  } cases[] = {
      {"action=reset", UV_ECONNRESET, 2},
      {"action=reset_mid_body&body=100000", UV_ECONNRESET, 2},
      {"action=truncated&body=1000", UV_EOF, 2},
      {"action=garbage", UV_EPROTO, 2},
  };
  fy_policy_t *layers[1];
  fy_pipeline_t *pl;
  char url[128];
  treq_t t;
  size_t i;

  layers[0] = fy_retry_policy(curl_retry(2, 0));
  pl = pipeline_of(1, layers);
  for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    uint64_t before = server_requests(up);
    treq_initf(&t, "%s/t?%s", base, cases[i].query);
    treq_run(&t, pl);
    cr_assert_eq(t.status, cases[i].status, "%s: %s", cases[i].query,
                 fy_err_name(t.status));
    cr_assert_eq(t.req.attempts, 2, "%s retried", cases[i].query);
    cr_assert_eq(server_requests(up) - before, (uint64_t)cases[i].hits);
    cr_assert_neq(t.req.errbuf[0], '\0');
    treq_cleanup(&t);
  }
  /* Refused. */
  snprintf(url, sizeof(url), "http://127.0.0.1:%d/x", dead_port());
  treq_init(&t, url);
  treq_run(&t, pl);
  cr_assert_eq(t.status, UV_ECONNREFUSED, "%s", fy_err_name(t.status));
  cr_assert_eq(t.req.attempts, 2);
  treq_cleanup(&t);
  uv_close((uv_handle_t *)&dead_tcp, NULL);
  /* DNS (RFC 6761: .invalid never resolves). */
  treq_init(&t, "http://fortify-test.invalid/x");
  treq_run(&t, pl);
  cr_assert_eq(t.status, UV_EAI_NONAME, "%s", fy_err_name(t.status));
  cr_assert_eq(t.req.attempts, 2);
  treq_cleanup(&t);
  assert_idle();
}

/* A policy that only tightens the deadline, arming nothing: the transfer's
 * own CURLOPT_TIMEOUT_MS is what ends a stalled attempt. */
static uint64_t g_deadline_ms;

static int deadline_start(fy_policy_t *p, fy_frame_t *f) {
  (void)p;
  fy_frame_set_deadline(f, fy_ctx_now(fy_frame_ctx(f)) + g_deadline_ms);
  return fy_frame_spawn(f, NULL);
}

static void pass_child_done(fy_policy_t *p, fy_frame_t *f, fy_frame_t *child,
                            int status) {
  (void)p;
  fy_frame_adopt_result(f, child);
  fy_frame_done(f, status);
}

static const fy_policy_vtable_t deadline_vtable = {
    .kind = "deadline",
    .start = deadline_start,
    .child_done = pass_child_done,
};

Test(curl, remaining_deadline_becomes_transfer_timeout) {
  fy_policy_t *p = NULL;
  fy_policy_t *layers[1];
  treq_t t;
  g_deadline_ms = 300;
  cr_assert_eq(fy_policy_new(ctx, &deadline_vtable, 0, "dl", &p), 0);
  layers[0] = p;
  treq_initf(&t, "%s/s?action=stall%s", base, "");
  treq_run(&t, pipeline_of(1, layers));
  cr_assert_eq(t.status, UV_ETIMEDOUT);
  cr_assert_eq(t.req.curl_code, CURLE_OPERATION_TIMEDOUT);
  cr_assert_geq(t.elapsed_ms, 250);
  /* Without a deadline there is no transfer timeout: an answer slower
   * than the old one gets through. */
  t.done = 0;
  cr_assert_eq(fy_curl_req_set_url(&t.req, "http://127.0.0.1"), 0);
  {
    char url[128];
    snprintf(url, sizeof(url), "%s/s?latency=400", base);
    cr_assert_eq(fy_curl_req_set_url(&t.req, url), 0);
  }
  treq_run(&t, bare_pipeline());
  cr_assert_eq(t.status, 0);
  treq_cleanup(&t);
  assert_idle();
}

/* ---- Retry-After ------------------------------------------------------- */

/* The hint one 503 carrying "Retry-After: <value>" gives. */
static uint64_t hint_for(const char *encoded_value, int *status) {
  char q[256];
  treq_t t;
  uint64_t ms;
  snprintf(q, sizeof(q), "?status=503&retry_after=%s", encoded_value);
  treq_initf(&t, "%s/ra%s", base, q);
  treq_run(&t, bare_pipeline());
  if (status != NULL)
    *status = t.status;
  ms = t.req.retry_after_ms;
  /* The operation's hint is what the call's detail carries. */
  cr_assert_eq(t.req.call.detail.retry_after_ms, ms);
  treq_cleanup(&t);
  return ms;
}

/* IMF-fixdate of now + |delta| seconds, URL-encoded. */
static void http_date(char *buf, size_t len, long delta) {
  time_t when = time(NULL) + delta;
  struct tm tm;
  char raw[64];
  size_t i, o = 0;
  gmtime_r(&when, &tm);
  strftime(raw, sizeof(raw), "%a, %d %b %Y %H:%M:%S GMT", &tm);
  for (i = 0; raw[i] != '\0' && o + 4 < len; i++) {
    if (raw[i] == ' ' || raw[i] == ',')
      o += (size_t)snprintf(buf + o, len - o, "%%%02X", raw[i]);
    else
      buf[o++] = raw[i];
  }
  buf[o] = '\0';
}

Test(curl, retry_after_delta_seconds) {
  int status = 0;
  cr_assert_eq(hint_for("2", &status), 2000);
  cr_assert_eq(status, FY_CURL_EHTTP(503));
  cr_assert_eq(hint_for("0", NULL), 0);
  cr_assert_eq(hint_for("120", NULL), 120000);
}

Test(curl, retry_after_http_date) {
  char date[128];
  uint64_t ms;
  http_date(date, sizeof(date), 3600);
  ms = hint_for(date, NULL);
  cr_assert_geq(ms, 3590000, "future date: %lu", (unsigned long)ms);
  cr_assert_leq(ms, 3601000);
  http_date(date, sizeof(date), -3600);
  cr_assert_eq(hint_for(date, NULL), 0, "a date in the past: no hint");
  cr_assert_eq(hint_for("Wed,%2021%20Oct%202015%2007:28:00%20GMT", NULL), 0);
}

Test(curl, retry_after_hostile_values) {
  fy_curl_opts_t o;
  close_adapter();
  fy_curl_opts_init(&o);
  o.max_retry_after_ms = 60000;
  cu = adapter(&o);
  cr_assert_eq(hint_for("-1", NULL), 0);
  cr_assert_eq(hint_for("-86400", NULL), 0);
  cr_assert_eq(hint_for("abc", NULL), 0);
  cr_assert_eq(hint_for("1.5", NULL) <= 1000, 1);
  cr_assert_eq(hint_for("315360000", NULL), 60000, "10 years: capped");
  cr_assert_leq(hint_for("99999999999999999999999999", NULL), 60000);
  cr_assert_eq(hint_for("61", NULL), 60000);
  cr_assert_eq(hint_for("60", NULL), 60000);
  cr_assert_eq(hint_for("59", NULL), 59000);
}

Test(curl, retry_after_can_be_turned_off) {
  fy_curl_opts_t o;
  close_adapter();
  fy_curl_opts_init(&o);
  o.max_retry_after_ms = 0;
  cu = adapter(&o);
  cr_assert_eq(hint_for("5", NULL), 0);
}

Test(curl, retry_after_belongs_to_its_own_response) {
  treq_t t;
  char url[128];
  treq_initf(&t, "%s/ra?status=503&retry_after=5%s", base, "");
  treq_run(&t, bare_pipeline());
  cr_assert_eq(t.req.retry_after_ms, 5000);
  /* The same handle, a 503 without the header: curl may still hold the
   * old value, the adapter must not report it. */
  snprintf(url, sizeof(url), "%s/ra?status=503", base);
  cr_assert_eq(fy_curl_req_set_url(&t.req, url), 0);
  t.done = 0;
  treq_run(&t, bare_pipeline());
  cr_assert_eq(t.req.retry_after_ms, 0);
  cr_assert_eq(t.req.call.detail.retry_after_ms, 0);
  /* A success carrying Retry-After gives no hint either. */
  snprintf(url, sizeof(url), "%s/ra?retry_after=5", base);
  cr_assert_eq(fy_curl_req_set_url(&t.req, url), 0);
  t.done = 0;
  treq_run(&t, bare_pipeline());
  cr_assert_eq(t.status, 0);
  cr_assert_eq(t.req.retry_after_ms, 0);
  treq_cleanup(&t);
}

Test(curl, retry_waits_for_retry_after) {
  fy_policy_t *layers[1];
  treq_t t;
  layers[0] = fy_retry_policy(curl_retry(2, 0));
  treq_initf(&t, "%s/ra?status=429&retry_after=1%s", base, "");
  treq_run(&t, pipeline_of(1, layers));
  cr_assert_eq(t.req.attempts, 2);
  cr_assert_eq(t.status, FY_CURL_EHTTP(429));
  cr_assert_geq(t.elapsed_ms, 900, "waited %lu ms",
                (unsigned long)t.elapsed_ms);
  treq_cleanup(&t);
}

Test(curl, retry_gives_up_on_retry_after_over_its_max) {
  fy_retry_opts_t o;
  fy_retry_t *r = NULL;
  fy_policy_t *layers[1];
  treq_t t;
  fy_retry_opts_init(&o);
  o.max_attempts = 3;
  o.initial_delay_ms = 1;
  o.max_retry_after_ms = 500;
  o.is_retryable = fy_curl_retry_classify;
  cr_assert_eq(fy_retry_new(ctx, &o, &r), 0);
  layers[0] = fy_retry_policy(r);
  treq_initf(&t, "%s/ra?status=503&retry_after=315360000%s", base, "");
  treq_run(&t, pipeline_of(1, layers));
  cr_assert_eq(t.req.attempts, 1);
  cr_assert_eq(t.status, FY_CURL_EHTTP(503));
  cr_assert_str_eq(t.req.call.detail.by_kind, "retry");
  cr_assert_eq(t.req.call.detail.state, FY_RETRY_STOP_RETRY_AFTER);
  cr_assert_lt(t.elapsed_ms, 1000);
  treq_cleanup(&t);
}

/* ---- timeouts and cancellation ----------------------------------------- */

static fy_pipeline_t *per_try_pipeline(uint64_t total, uint64_t first_byte,
                                       uint64_t idle) {
  fy_policy_t *layers[1];
  layers[0] = fy_timeout_policy(per_try(total, first_byte, idle));
  return pipeline_of(1, layers);
}

/* One request first, so that the timed part runs on a warm connection
 * (and warm code: under valgrind the first transfer is slow). */
static void warm_up(void) {
  treq_t t;
  treq_initf(&t, "%s/warm%s", base, "");
  treq_run(&t, bare_pipeline());
  cr_assert_eq(t.status, 0);
  treq_cleanup(&t);
}

Test(curl, timeout_cancels_transfer_mid_body) {
  fy_curl_stats_t st;
  treq_t t;
  size_t len;
  warm_up();
  /* 100 chunks 30 ms apart: three seconds of body. */
  treq_initf(&t,
             "%s/slow?body=100000&chunked=1&chunk=1000&chunk_delay=30%s",
             base, "");
  treq_run(&t, per_try_pipeline(800, 0, 0));
  cr_assert_eq(t.status, UV_ETIMEDOUT);
  cr_assert_gt(t.body_at_done, 0, "the body had started");
  cr_assert_lt(t.body_at_done, 100000);
  fy_curl_stats(cu, &st);
  cr_assert_eq(st.transfers, 0, "the handle left the multi");
  /* The policy's timer cancels the transfer, unless curl's own timeout,
   * set from the same deadline, happened to fire a moment earlier: then
   * the operation reported the timeout, and the detail names no policy. */
  if (t.req.curl_code == CURLE_OPERATION_TIMEDOUT) {
    cr_assert_null(t.req.call.detail.by_kind);
  } else {
    cr_assert_eq(st.cancelled, 1);
    cr_assert_str_eq(t.req.call.detail.by_kind, "timeout");
  }
  assert_idle();
  /* Nothing arrives for the abandoned transfer any more. */
  len = t.req.body.len;
  run_for(200);
  cr_assert_eq(t.req.body.len, len);
  cr_assert_eq(t.done, 1);
  /* And nothing after the adapter closed. */
  close_adapter();
  cr_assert(wait_for(&curl_closed, 1, 2000));
  run_for(100);
  cr_assert_eq(t.done, 1);
  cr_assert_eq(t.req.body.len, len);
  treq_cleanup(&t);
}

/* A timer that abandons the attempt without lowering its deadline (curl
 * gets no timeout of its own): the cancel path, every time. */
static int abandon_start(fy_policy_t *p, fy_frame_t *f) {
  (void)p;
  fy_frame_arm(f, fy_ctx_now(fy_frame_ctx(f)) + 400);
  return fy_frame_spawn(f, NULL);
}

static void abandon_deadline(fy_policy_t *p, fy_frame_t *f) {
  (void)p;
  fy_frame_done(f, UV_ETIMEDOUT); /* detaches (and cancels) the attempt */
}

static const fy_policy_vtable_t abandon_vtable = {
    .kind = "abandon",
    .start = abandon_start,
    .child_done = pass_child_done,
    .deadline = abandon_deadline,
};

Test(curl, abandoned_mid_body_leaves_no_handle) {
  fy_policy_t *p = NULL;
  fy_policy_t *layers[1];
  fy_curl_stats_t st;
  treq_t t;
  size_t len;
  warm_up();
  cr_assert_eq(fy_policy_new(ctx, &abandon_vtable, 0, "abandon", &p), 0);
  layers[0] = p;
  treq_initf(&t,
             "%s/slow?body=100000&chunked=1&chunk=1000&chunk_delay=30%s",
             base, "");
  treq_run(&t, pipeline_of(1, layers));
  cr_assert_eq(t.status, UV_ETIMEDOUT);
  cr_assert_gt(t.body_at_done, 0);
  fy_curl_stats(cu, &st);
  cr_assert_eq(st.transfers, 0);
  cr_assert_eq(st.cancelled, 1);
  cr_assert_eq(t.req.status, UV_ECANCELED, "the attempt was cancelled");
  len = t.req.body.len;
  run_for(150);
  cr_assert_eq(t.req.body.len, len);
  treq_cleanup(&t);
  assert_idle();
}

Test(curl, timeout_on_stall_mid_body) {
  treq_t t;
  warm_up();
  treq_initf(&t, "%s/slow?action=stall_mid_body&body=50000%s", base, "");
  treq_run(&t, per_try_pipeline(800, 0, 0));
  cr_assert_eq(t.status, UV_ETIMEDOUT);
  cr_assert_gt(t.body_at_done, 0);
  assert_idle();
  treq_cleanup(&t);
}

Test(curl, idle_timeout_fed_by_progress) {
  treq_t t;
  warm_up();
  /* 8 chunks 100 ms apart: 0.8 s in all, never 500 ms without data. */
  treq_initf(&t, "%s/stream?body=800&chunked=1&chunk=100&chunk_delay=100%s",
             base, "");
  treq_run(&t, per_try_pipeline(10000, 0, 500));
  cr_assert_eq(t.status, 0, "%s", fy_err_name(t.status));
  cr_assert_eq(t.req.body.len, 800);
  cr_assert_geq(t.elapsed_ms, 600, "longer than the idle limit");
  treq_cleanup(&t);
  /* 1.2 s between chunks: the idle limit fires. */
  treq_initf(&t, "%s/stream?body=400&chunked=1&chunk=100&chunk_delay=1200%s",
             base, "");
  treq_run(&t, per_try_pipeline(10000, 0, 500));
  cr_assert_eq(t.status, UV_ETIMEDOUT);
  cr_assert_eq(t.req.call.detail.state, FY_TIMEOUT_STAGE_IDLE);
  cr_assert_gt(t.body_at_done, 0);
  treq_cleanup(&t);
  assert_idle();
}

Test(curl, first_byte_timeout) {
  treq_t t;
  warm_up();
  treq_initf(&t, "%s/fb?latency=1200%s", base, "");
  treq_run(&t, per_try_pipeline(10000, 400, 0));
  cr_assert_eq(t.status, UV_ETIMEDOUT);
  cr_assert_eq(t.req.call.detail.state, FY_TIMEOUT_STAGE_FIRST_BYTE);
  treq_cleanup(&t);
  /* The first header disarms it: a slow body is fine. */
  treq_initf(&t, "%s/fb?body=300&chunked=1&chunk=100&chunk_delay=300%s",
             base, "");
  treq_run(&t, per_try_pipeline(10000, 400, 0));
  cr_assert_eq(t.status, 0);
  treq_cleanup(&t);
  assert_idle();
}

Test(curl, cancel_removes_the_transfer_at_once) {
  fy_curl_stats_t st;
  treq_t t;
  treq_initf(&t, "%s/c?latency=3000%s", base, "");
  cr_assert_eq(treq_start(&t, bare_pipeline()), 0);
  run_for(50);
  fy_curl_stats(cu, &st);
  cr_assert_eq(st.transfers, 1);
  cr_assert_eq(fy_call_cancel(&t.req.call), 0);
  fy_curl_stats(cu, &st);
  cr_assert_eq(st.transfers, 0, "removed inside fy_call_cancel()");
  cr_assert_eq(st.cancelled, 1);
  cr_assert_eq(t.done, 0, "the callback is never inside the cancel");
  cr_assert(wait_for(&t.done, 1, 1000));
  cr_assert_eq(t.status, UV_ECANCELED);
  treq_cleanup(&t);
}

/* ---- user code inside curl's callbacks --------------------------------- */

/* A policy whose progress hook runs a test function: progress comes from
 * fy_attempt_mark(), which the adapter calls from curl's write and header
 * callbacks, so this is user code running inside curl. */
static void (*g_on_progress)(fy_frame_t *f);
static int g_progress;

static int hook_start(fy_policy_t *p, fy_frame_t *f) {
  (void)p;
  return fy_frame_spawn(f, NULL);
}

static void hook_progress(fy_policy_t *p, fy_frame_t *f) {
  (void)p;
  g_progress++;
  if (g_on_progress != NULL)
    g_on_progress(f);
}

static const fy_policy_vtable_t hook_vtable = {
    .kind = "hook",
    .start = hook_start,
    .child_done = pass_child_done,
    .progress = hook_progress,
};

static fy_pipeline_t *hook_pipeline(void) {
  fy_policy_t *p = NULL;
  fy_policy_t *layers[1];
  cr_assert_eq(fy_policy_new(ctx, &hook_vtable, 0, "hook", &p), 0);
  layers[0] = p;
  return pipeline_of(1, layers);
}

static void cancel_own_call(fy_frame_t *f) {
  if (g_progress == 3)
    cr_assert_eq(fy_call_cancel(fy_frame_call(f)), 0);
}

Test(curl, cancel_inside_curl_callback_is_deferred) {
  fy_curl_stats_t st;
  treq_t t;
  g_on_progress = cancel_own_call;
  treq_initf(&t, "%s/p?body=100000&chunked=1&chunk=1000&chunk_delay=10%s",
             base, "");
  treq_run(&t, hook_pipeline());
  cr_assert_eq(t.status, UV_ECANCELED);
  cr_assert_eq(g_progress, 3, "the transfer stopped at the cancel");
  cr_assert_gt(t.body_at_done, 0);
  cr_assert_lt(t.body_at_done, 100000);
  fy_curl_stats(cu, &st);
  cr_assert_eq(st.transfers, 0);
  cr_assert_eq(st.cancelled, 1);
  run_for(100);
  cr_assert_eq(g_progress, 3);
  treq_cleanup(&t);
}

static treq_t g_second;
static fy_pipeline_t *g_pl;

static void start_another(fy_frame_t *f) {
  (void)f;
  if (g_progress == 1)
    cr_assert_eq(treq_start(&g_second, g_pl), 0);
}

Test(curl, start_inside_curl_callback_is_deferred) {
  treq_t t;
  g_pl = hook_pipeline();
  g_on_progress = start_another;
  treq_initf(&g_second, "%s/second%s", base, "");
  treq_initf(&t, "%s/first?body=3000&chunked=1&chunk=1000%s", base, "");
  treq_run(&t, g_pl);
  cr_assert(wait_for(&g_second.done, 1, 2000));
  cr_assert_eq(t.status, 0);
  cr_assert_eq(g_second.status, 0);
  cr_assert_str_eq(g_second.req.body.data, "ok\n");
  cr_assert_eq(server_requests(up), 2);
  treq_cleanup(&t);
  treq_cleanup(&g_second);
  assert_idle();
}

static void close_adapter_inside(fy_frame_t *f) {
  (void)f;
  if (g_progress == 2)
    close_adapter();
}

Test(curl, close_inside_curl_callback_is_deferred) {
  treq_t t;
  g_on_progress = close_adapter_inside;
  treq_initf(&t, "%s/p?body=100000&chunked=1&chunk=1000&chunk_delay=10%s",
             base, "");
  treq_run(&t, hook_pipeline());
  cr_assert_eq(t.status, UV_ECANCELED);
  cr_assert(wait_for(&curl_closed, 1, 2000));
  run_for(50);
  cr_assert_eq(t.done, 1);
  treq_cleanup(&t);
}

/* ---- closing ----------------------------------------------------------- */

#define N_INFLIGHT 20

Test(curl, close_with_transfers_in_flight) {
  static treq_t t[N_INFLIGHT];
  fy_curl_t *c;
  treq_t late;
  fy_pipeline_t *pl = bare_pipeline();
  int i;
  for (i = 0; i < N_INFLIGHT; i++) {
    treq_initf(&t[i], "%s/slow?latency=5000%s", base, "");
    cr_assert_eq(treq_start(&t[i], pl), 0);
  }
  run_for(100); /* connected, waiting for the answers */
  treq_initf(&late, "%s/late%s", base, "");
  c = cu;
  close_adapter();
  cr_assert_eq(fy_curl_close(c, NULL, NULL), FY_ECLOSED);
  cr_assert_eq(treq_start(&late, pl), FY_ECLOSED, "refused at once");
  cr_assert_eq(g_done, 0, "nothing completes inside the close");
  cr_assert(wait_for(&g_done, N_INFLIGHT, 2000));
  for (i = 0; i < N_INFLIGHT; i++) {
    cr_assert_eq(t[i].done, 1);
    cr_assert_eq(t[i].status, UV_ECANCELED);
  }
  cr_assert(wait_for(&curl_closed, 1, 2000));
  run_for(100);
  cr_assert_eq(g_done, N_INFLIGHT, "no callback after the close");
  for (i = 0; i < N_INFLIGHT; i++)
    treq_cleanup(&t[i]);
  treq_cleanup(&late);
}

static void close_on_first(treq_t *t) {
  (void)t;
  if (g_done == 1)
    close_adapter();
}

Test(curl, close_from_a_completion_callback) {
  static treq_t t[10];
  fy_pipeline_t *pl = bare_pipeline();
  int i;
  for (i = 0; i < 10; i++) {
    treq_initf(&t[i], "%s/x?latency=%s", base, i == 0 ? "0" : "5000");
    t[i].then = close_on_first;
    cr_assert_eq(treq_start(&t[i], pl), 0);
  }
  cr_assert(wait_for(&g_done, 10, 3000));
  cr_assert_eq(t[0].status, 0);
  for (i = 1; i < 10; i++)
    cr_assert_eq(t[i].status, UV_ECANCELED);
  cr_assert(wait_for(&curl_closed, 1, 2000));
  for (i = 0; i < 10; i++)
    treq_cleanup(&t[i]);
}

Test(curl, context_close_closes_the_adapter) {
  static treq_t t[5];
  fy_pipeline_t *pl = bare_pipeline();
  int i;
  for (i = 0; i < 5; i++) {
    treq_initf(&t[i], "%s/x?latency=5000%s", base, "");
    cr_assert_eq(treq_start(&t[i], pl), 0);
  }
  run_for(50);
  /* The adapter is never closed by hand: the context tears it down, and
   * frees it, after the calls have been cancelled. */
  cu = NULL;
  cr_assert_eq(fy_ctx_close(ctx, count_close, &ctx_closed), 0);
  cr_assert(wait_for(&ctx_closed, 1, 2000));
  cr_assert_eq(g_done, 5);
  for (i = 0; i < 5; i++) {
    cr_assert_eq(t[i].status, UV_ECANCELED);
    /* Requests outlive their adapter. */
    treq_cleanup(&t[i]);
  }
  ctx = NULL;
  fy_up_close(up, on_up_closed, &up_closed);
  up = NULL;
  cr_assert(wait_for(&up_closed, 1, 2000));
}

/* ---- retries ----------------------------------------------------------- */

Test(curl, connection_reused_across_retries) {
  fy_policy_t *layers[1];
  fy_up_stats_t st;
  treq_t t;
  layers[0] = fy_retry_policy(curl_retry(3, 0));
  treq_initf(&t, "%s/r?status=503%s", base, "");
  treq_run(&t, pipeline_of(1, layers));
  cr_assert_eq(t.req.attempts, 3);
  cr_assert_eq(t.status, FY_CURL_EHTTP(503));
  cr_assert_eq(t.req.connects, 1, "one connection for three attempts");
  fy_up_stats(up, &st);
  cr_assert_eq(st.connections, 1);
  cr_assert_eq(st.requests, 3);
  treq_cleanup(&t);
}

static void restart(treq_t *t) {
  if (t->done < 5)
    cr_assert_eq(fy_curl_start(&t->req, g_pl, on_done), 0);
}

Test(curl, request_restarted_from_its_callback) {
  treq_t t;
  fy_up_stats_t st;
  g_pl = bare_pipeline();
  treq_initf(&t, "%s/again%s", base, "");
  t.then = restart;
  cr_assert_eq(treq_start(&t, g_pl), 0);
  cr_assert(wait_for(&t.done, 5, 3000));
  cr_assert_eq(t.status, 0);
  cr_assert_eq(t.req.connects, 0, "the last call reused the connection");
  fy_up_stats(up, &st);
  cr_assert_eq(st.requests, 5);
  cr_assert_eq(st.connections, 1);
  treq_cleanup(&t);
}

Test(curl, post_body_resent_on_retry) {
  fy_policy_t *layers[1];
  fy_pipeline_t *pl;
  unsigned total = 0;
  int i;
  layers[0] = fy_retry_policy(curl_retry(20, 1));
  pl = pipeline_of(1, layers);
  for (i = 0; i < 10; i++) {
    char body[64];
    treq_t t;
    int n = snprintf(body, sizeof(body), "payload-%d-%s", i, "abcdefgh");
    treq_initf(&t, "%s/echo?fail=0.5%s", base, "");
    cr_assert_eq(fy_curl_req_set_method(&t.req, "POST"), 0);
    cr_assert_eq(fy_curl_req_set_body(&t.req, body, (size_t)n), 0);
    cr_assert_eq(fy_curl_req_add_header(&t.req, "Content-Type: text/plain"),
                 0);
    fy_curl_req_set_idempotent(&t.req, 1);
    memset(body, 'X', sizeof(body)); /* the request holds its own copy */
    treq_run(&t, pl);
    cr_assert_eq(t.status, 0, "call %d: %s", i, fy_err_name(t.status));
    snprintf(body, sizeof(body), "payload-%d-%s", i, "abcdefgh");
    cr_assert_str_eq(t.req.body.data, body);
    total += t.req.attempts;
    treq_cleanup(&t);
  }
  cr_assert_gt(total, 10, "some calls needed a retry (%u attempts)", total);
}

Test(curl, non_idempotent_methods_not_retried) {
  static const struct {
    const char *method;
    int flagged;
    unsigned attempts;
  } cases[] = {
      {"POST", 0, 1}, {"PATCH", 0, 1}, {"POST", 1, 3},
      {"PUT", 0, 3},  {"DELETE", 0, 3}, {NULL, 0, 3},
  };
  fy_policy_t *layers[1];
  fy_pipeline_t *pl;
  size_t i;
  layers[0] = fy_retry_policy(curl_retry(3, 1));
  pl = pipeline_of(1, layers);
  for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    treq_t t;
    treq_initf(&t, "%s/echo?status=503%s", base, "");
    cr_assert_eq(fy_curl_req_set_method(&t.req, cases[i].method), 0);
    if (cases[i].method != NULL && strcmp(cases[i].method, "DELETE") != 0)
      cr_assert_eq(fy_curl_req_set_body(&t.req, "b", 1), 0);
    fy_curl_req_set_idempotent(&t.req, cases[i].flagged);
    treq_run(&t, pl);
    cr_assert_eq(t.req.attempts, cases[i].attempts, "%s%s: %u",
                 cases[i].method ? cases[i].method : "GET",
                 cases[i].flagged ? " (idempotent)" : "", t.req.attempts);
    if (cases[i].attempts == 1) {
      cr_assert_str_eq(t.req.call.detail.by_kind, "retry");
      cr_assert_eq(t.req.call.detail.state, FY_RETRY_STOP_NOT_IDEMPOTENT);
    }
    treq_cleanup(&t);
  }
}

Test(curl, methods_and_bodies) {
  fy_pipeline_t *pl = bare_pipeline();
  treq_t t;
  treq_initf(&t, "%s/echo%s", base, "");
  cr_assert_eq(fy_curl_req_set_method(&t.req, "PUT"), 0);
  cr_assert_eq(fy_curl_req_set_body(&t.req, "put-body", 8), 0);
  treq_run(&t, pl);
  cr_assert_eq(t.status, 0);
  cr_assert_str_eq(t.req.body.data, "put-body");
  /* Back to GET on the same handle: no body is sent any more. */
  cr_assert_eq(fy_curl_req_set_body(&t.req, NULL, 0), 0);
  cr_assert_eq(fy_curl_req_set_method(&t.req, NULL), 0);
  t.done = 0;
  treq_run(&t, pl);
  cr_assert_eq(t.status, 0);
  cr_assert_eq(t.req.body.len, 0);
  /* HEAD: headers only. */
  cr_assert_eq(fy_curl_req_set_url(&t.req, base), 0);
  cr_assert_eq(fy_curl_req_set_method(&t.req, "HEAD"), 0);
  t.done = 0;
  treq_run(&t, pl);
  cr_assert_eq(t.status, 0);
  cr_assert_eq(t.req.http_code, 200);
  cr_assert_eq(t.req.body.len, 0);
  cr_assert_gt(t.req.headers.len, 0);
  /* A body-less POST is sent with Content-Length: 0. */
  cr_assert_eq(fy_curl_req_set_method(&t.req, "POST"), 0);
  t.done = 0;
  treq_run(&t, pl);
  cr_assert_eq(t.status, 0);
  treq_cleanup(&t);
}

/* ---- per-host policies ------------------------------------------------- */

static char g_state_host[FY_CURL_HOST_MAX + 1];
static int g_state_changes;
static fy_breaker_state_t g_state_to;

static void on_host_state(fy_curl_hosts_t *h, const char *host,
                          fy_breaker_state_t from, fy_breaker_state_t to,
                          void *user_data) {
  (void)h;
  (void)from;
  cr_assert_eq(user_data, &g_state_changes);
  snprintf(g_state_host, sizeof(g_state_host), "%s", host);
  g_state_to = to;
  g_state_changes++;
}

Test(curl, per_host_breakers_isolate_hosts) {
  fy_curl_hosts_t *h;
  fy_curl_hosts_stats_t hs;
  fy_policy_t *layers[1];
  fy_pipeline_t *pl;
  char bad_host[FY_CURL_HOST_MAX + 1], good_host[FY_CURL_HOST_MAX + 1];
  treq_t t;
  int i;

  up2 = server(base2, sizeof(base2), 7);
  h = hosts_policy(3, 16, NULL, on_host_state, &g_state_changes);
  layers[0] = fy_curl_hosts_policy(h);
  pl = pipeline_of(1, layers);
  for (i = 0; i < 3; i++) {
    treq_initf(&t, "%s/down?status=500%s", base, "");
    treq_run(&t, pl);
    cr_assert_eq(t.status, FY_CURL_EHTTP(500));
    snprintf(bad_host, sizeof(bad_host), "%s", fy_curl_req_host(&t.req));
    treq_cleanup(&t);
  }
  cr_assert_eq(g_state_changes, 1);
  cr_assert_str_eq(g_state_host, bad_host);
  cr_assert_eq(g_state_to, FY_BREAKER_OPEN);
  /* The failing host is refused at once... */
  treq_initf(&t, "%s/down%s", base, "");
  cr_assert_eq(treq_start(&t, pl), FY_ECIRCUITOPEN);
  cr_assert_str_eq(t.req.call.detail.key, bad_host);
  treq_cleanup(&t);
  /* ...the healthy one is not. */
  for (i = 0; i < 5; i++) {
    treq_initf(&t, "%s/up%s", base2, "");
    treq_run(&t, pl);
    cr_assert_eq(t.status, 0);
    snprintf(good_host, sizeof(good_host), "%s", fy_curl_req_host(&t.req));
    treq_cleanup(&t);
  }
  cr_assert_str_neq(bad_host, good_host);
  cr_assert_eq(fy_breaker_state(fy_curl_hosts_breaker(h, bad_host)),
               FY_BREAKER_OPEN);
  cr_assert_eq(fy_breaker_state(fy_curl_hosts_breaker(h, good_host)),
               FY_BREAKER_CLOSED);
  cr_assert_null(fy_curl_hosts_breaker(h, "http://elsewhere:80"));
  fy_curl_hosts_stats(h, &hs);
  cr_assert_eq(hs.hosts, 2);
  cr_assert_eq(hs.created, 2);
  cr_assert_eq(server_requests(up), 3);
  cr_assert_eq(server_requests(up2), 5);
}

/* Calls that stay pending until the test completes them, keyed by hand. */
typedef struct pend_s {
  fy_call_t call;
  fy_attempt_t *a;
  const char *key;
  int done;
  int status;
} pend_t;

static int pend_start(fy_attempt_t *a, void *arg) {
  ((pend_t *)arg)->a = a;
  return 0;
}

static void pend_cancel(fy_attempt_t *a, void *arg) {
  ((pend_t *)arg)->a = NULL;
  fy_attempt_done(a, UV_ECANCELED);
}

static const fy_op_t pend_op = {pend_start, pend_cancel};

static void pend_done(fy_call_t *call, int status) {
  pend_t *p = fy_container_of(call, pend_t, call);
  p->done++;
  p->status = status;
}

static int pend_key(fy_call_t *call, char *buf, size_t len, void *ud) {
  pend_t *p = fy_container_of(call, pend_t, call);
  (void)ud;
  if (p->key == NULL)
    return UV_EPERM;
  snprintf(buf, len, "%s", p->key);
  return 0;
}

static int pend_go(pend_t *p, fy_pipeline_t *pl, const char *key) {
  memset(p, 0, sizeof(*p));
  p->key = key;
  return fy_call_start(&p->call, pl, &pend_op, p, pend_done);
}

static void pend_finish(pend_t *p, int status) {
  fy_attempt_t *a = p->a;
  cr_assert_not_null(a);
  p->a = NULL;
  cr_assert_eq(fy_attempt_done(a, status), 0);
  cr_assert(wait_for(&p->done, 1, 1000));
}

Test(curl, hosts_lru_eviction_is_safe_with_calls_in_flight) {
  fy_curl_hosts_t *h = hosts_policy(1, 2, pend_key, NULL, NULL);
  fy_policy_t *layers[1] = {fy_curl_hosts_policy(h)};
  fy_pipeline_t *pl = pipeline_of(1, layers);
  fy_curl_hosts_stats_t hs;
  pend_t a, b, c, d;

  /* "a" fails once: its breaker opens. */
  cr_assert_eq(pend_go(&a, pl, "a"), 0);
  pend_finish(&a, UV_ECONNRESET);
  cr_assert_eq(pend_go(&a, pl, "a"), FY_ECIRCUITOPEN);
  /* "b" stays in flight while "c" and "d" push it out of the table. */
  cr_assert_eq(pend_go(&b, pl, "b"), 0);
  cr_assert_eq(pend_go(&c, pl, "c"), 0); /* evicts "a" (idle) */
  cr_assert_null(fy_curl_hosts_breaker(h, "a"));
  cr_assert_eq(pend_go(&d, pl, "d"), 0); /* evicts "b" (busy) */
  fy_curl_hosts_stats(h, &hs);
  cr_assert_eq(hs.hosts, 2);
  cr_assert_eq(hs.evicted, 2);
  cr_assert_eq(hs.evicted_busy, 1);
  cr_assert_null(fy_curl_hosts_breaker(h, "b"));
  /* The evicted host's call records into its own breaker, then it goes. */
  pend_finish(&b, UV_ECONNRESET);
  cr_assert_eq(b.status, UV_ECONNRESET);
  fy_curl_hosts_stats(h, &hs);
  cr_assert_eq(hs.evicted_busy, 0);
  /* "a" comes back with a fresh breaker. */
  cr_assert_eq(pend_go(&a, pl, "a"), 0);
  fy_curl_hosts_stats(h, &hs);
  cr_assert_eq(hs.created, 5);
  pend_finish(&a, 0);
  pend_finish(&c, 0);
  pend_finish(&d, 0);
}

Test(curl, hosts_refuse_calls_without_a_valid_key) {
  fy_curl_hosts_t *plain = hosts_policy(5, 4, NULL, NULL, NULL);
  fy_curl_hosts_t *keyed = hosts_policy(5, 4, pend_key, NULL, NULL);
  fy_policy_t *l1[1] = {fy_curl_hosts_policy(plain)};
  fy_policy_t *l2[1] = {fy_curl_hosts_policy(keyed)};
  fy_pipeline_t *p1 = pipeline_of(1, l1), *p2 = pipeline_of(1, l2);
  pend_t p;
  /* Not a request of the adapter, and no key function. */
  cr_assert_eq(pend_go(&p, p1, "a"), FY_EKEY);
  cr_assert_str_eq(p.call.detail.by_kind, "hosts");
  cr_assert_eq(p.call.detail.cause, FY_EKEY);
  /* Keys that are empty or not printable ASCII. */
  cr_assert_eq(pend_go(&p, p2, ""), FY_EKEY);
  cr_assert_eq(pend_go(&p, p2, "two words"), FY_EKEY);
  cr_assert_eq(pend_go(&p, p2, "caf\xc3\xa9"), FY_EKEY);
  /* A key function's own refusal. */
  cr_assert_eq(pend_go(&p, p2, NULL), UV_EPERM);
  cr_assert_eq(p.done, 0);
}

static void on_hosts_closed(void *obj, void *user_data) {
  (void)obj;
  (*(int *)user_data)++;
}

Test(curl, hosts_close_with_calls_in_flight) {
  fy_curl_hosts_t *h = hosts_policy(5, 4, pend_key, NULL, NULL);
  fy_policy_t *layers[1] = {fy_curl_hosts_policy(h)};
  fy_pipeline_t *pl = pipeline_of(1, layers);
  int closed = 0;
  pend_t a, b;
  treq_t t;
  cr_assert_eq(pend_go(&a, pl, "a"), 0);
  cr_assert_eq(pend_go(&b, pl, "b"), 0);
  cr_assert_eq(fy_curl_hosts_close(h, on_hosts_closed, &closed), 0);
  cr_assert_eq(fy_curl_hosts_close(h, NULL, NULL), FY_ECLOSED);
  cr_assert(wait_for(&closed, 1, 1000));
  cr_assert_eq(a.done + b.done, 2);
  cr_assert_eq(a.status, UV_ECANCELED);
  cr_assert_eq(b.status, UV_ECANCELED);
  treq_initf(&t, "%s/x%s", base, "");
  cr_assert_eq(treq_start(&t, pl), FY_ECLOSED);
  treq_cleanup(&t);
}

/* ---- scale ------------------------------------------------------------- */

#define N_MANY 1000

Test(curl, thousand_concurrent_requests) {
  fy_curl_pipeline_opts_t o;
  fy_curl_pipeline_t *cp = NULL;
  treq_t *t = calloc(N_MANY, sizeof(*t));
  fy_curl_stats_t st;
  uint64_t t0;
  int i;
  cr_assert_not_null(t);
  fy_curl_pipeline_opts_init(&o);
  cr_assert_eq(fy_curl_pipeline_new(ctx, &o, &cp), 0);
  for (i = 0; i < N_MANY; i++) {
    char q[32];
    snprintf(q, sizeof(q), "?i=%d", i);
    treq_initf(&t[i], "%s/many%s", base, q);
  }
  t0 = uv_hrtime();
  for (i = 0; i < N_MANY; i++)
    cr_assert_eq(treq_start(&t[i], fy_curl_pipeline_get(cp)), 0);
  cr_assert(wait_for(&g_done, N_MANY, 15000), "%d of %d done", g_done,
            N_MANY);
  for (i = 0; i < N_MANY; i++) {
    cr_assert_eq(t[i].done, 1);
    cr_assert_eq(t[i].status, 0, "request %d: %s", i,
                 fy_err_name(t[i].status));
    cr_assert_str_eq(t[i].req.body.data, "ok\n");
  }
  cr_assert_eq(server_requests(up), N_MANY, "no request sent twice");
  fy_curl_stats(cu, &st);
  cr_assert_eq(st.started, N_MANY);
  cr_assert_eq(st.completed, N_MANY);
  cr_assert_eq(st.transfers, 0);
  cr_log_info("1000 requests in %lu ms",
              (unsigned long)((uv_hrtime() - t0) / 1000000u));
  for (i = 0; i < N_MANY; i++)
    treq_cleanup(&t[i]);
  free(t);
}

/* ---- options and arguments --------------------------------------------- */

Test(curl, adapter_options_validated) {
  fy_curl_opts_t o;
  fy_curl_t *c = (fy_curl_t *)&o;
  fy_ctx_stats_t before, after;
  fy_ctx_stats(ctx, &before);
#define BAD(field, value)                                                      \
  do {                                                                         \
    fy_curl_opts_init(&o);                                                     \
    o.field = value;                                                           \
    c = (fy_curl_t *)&o;                                                       \
    cr_assert_eq(fy_curl_new(ctx, &o, &c), UV_EINVAL, #field);                 \
    cr_assert_null(c);                                                         \
  } while (0)
  BAD(max_body_bytes, FY_CURL_BODY_MAX + 1);
  BAD(max_body_bytes, (size_t)-1);
  BAD(max_header_bytes, FY_CURL_HEADERS_MAX + 1);
  BAD(max_retry_after_ms, FY_CURL_RETRY_AFTER_MAX + 1);
  BAD(max_retry_after_ms, UINT64_MAX);
  BAD(max_host_connections, -1);
  BAD(max_host_connections, FY_CURL_CONNECTIONS_MAX + 1);
  BAD(max_total_connections, -1);
  BAD(max_total_connections, LONG_MAX);
#undef BAD
  cr_assert_eq(fy_curl_new(NULL, NULL, &c), UV_EINVAL);
  cr_assert_null(c);
  cr_assert_eq(fy_curl_new(ctx, NULL, NULL), UV_EINVAL);
  fy_ctx_stats(ctx, &after);
  cr_assert_eq(memcmp(&before, &after, sizeof(before)), 0);
  /* The limits themselves are accepted. */
  fy_curl_opts_init(&o);
  o.max_body_bytes = FY_CURL_BODY_MAX;
  o.max_header_bytes = FY_CURL_HEADERS_MAX;
  o.max_retry_after_ms = FY_CURL_RETRY_AFTER_MAX;
  o.max_host_connections = FY_CURL_CONNECTIONS_MAX;
  o.max_total_connections = 4;
  c = adapter(&o);
  cr_assert_eq(fy_curl_close(c, count_close, &curl_closed), 0);
  closes_expected++;
  cr_assert_eq(fy_curl_close(NULL, NULL, NULL), 0);
}

Test(curl, hosts_options_validated) {
  fy_curl_hosts_opts_t o;
  fy_curl_hosts_t *h;
  fy_ctx_stats_t before, after;
#define BAD(stmt)                                                              \
  do {                                                                         \
    fy_curl_hosts_opts_init(&o);                                               \
    stmt;                                                                      \
    cr_assert_eq(fy_curl_hosts_opts_check(&o), UV_EINVAL, #stmt);              \
    h = (fy_curl_hosts_t *)&o;                                                 \
    cr_assert_eq(fy_curl_hosts_new(ctx, &o, &h), UV_EINVAL, #stmt);            \
    cr_assert_null(h);                                                         \
  } while (0)
  fy_ctx_stats(ctx, &before);
  fy_curl_hosts_opts_init(&o);
  cr_assert_eq(fy_curl_hosts_opts_check(&o), 0);
  o.max_hosts = FY_CURL_HOSTS_MAX;
  cr_assert_eq(fy_curl_hosts_opts_check(&o), 0);
  cr_assert_eq(fy_curl_hosts_opts_check(NULL), UV_EINVAL);
  BAD(o.max_hosts = 0);
  BAD(o.max_hosts = FY_CURL_HOSTS_MAX + 1);
  BAD(o.max_hosts = (uint32_t)-1);
  BAD(o.breaker.window = FY_BREAKER_WINDOW_COUNT;
      o.breaker.failure_rate = 0.0 / 0.0);
  BAD(o.breaker.mode = FY_BREAKER_MODE__COUNT);
  BAD(o.breaker.open_max_ms = 1; o.breaker.open_ms = 10);
  BAD(o.breaker.open_ms = (uint64_t)-1);
#undef BAD
  /* Checking the template creates no breaker. */
  fy_ctx_stats(ctx, &after);
  cr_assert_eq(memcmp(&before, &after, sizeof(before)), 0);
  cr_assert_eq(fy_curl_hosts_new(NULL, NULL, &h), UV_EINVAL);
  cr_assert_eq(fy_curl_hosts_new(ctx, NULL, NULL), UV_EINVAL);
  /* Nor does creating the policy: no breaker is made (and closed again)
   * to validate the template; the first call makes the first one. */
  fy_ctx_stats(ctx, &before);
  cr_assert_eq(fy_curl_hosts_new(ctx, NULL, &h), 0);
  fy_ctx_stats(ctx, &after);
  cr_assert_eq(memcmp(&before, &after, sizeof(before)), 0);
  cr_assert_str_eq(fy_policy_kind(fy_curl_hosts_policy(h)), "hosts");
  cr_assert_str_eq(fy_policy_name(fy_curl_hosts_policy(h)), "hosts");
  cr_assert_eq(fy_curl_hosts_close(NULL, NULL, NULL), 0);
}

Test(curl, pipeline_options_validated) {
  fy_curl_pipeline_opts_t o;
  fy_curl_pipeline_t *p;
  fy_ctx_stats_t before, after;
#define BAD(stmt)                                                              \
  do {                                                                         \
    fy_curl_pipeline_opts_init(&o);                                            \
    stmt;                                                                      \
    cr_assert_eq(fy_curl_pipeline_opts_check(&o), UV_EINVAL, #stmt);           \
    p = (fy_curl_pipeline_t *)&o;                                              \
    cr_assert_eq(fy_curl_pipeline_new(ctx, &o, &p), UV_EINVAL, #stmt);         \
    cr_assert_null(p);                                                         \
  } while (0)
  fy_ctx_stats(ctx, &before);
  fy_curl_pipeline_opts_init(&o);
  cr_assert_eq(fy_curl_pipeline_opts_check(&o), 0);
  cr_assert_eq(fy_curl_pipeline_opts_check(NULL), UV_EINVAL);
  BAD(o.preset.attempt_timeout_ms = 0);
  BAD(o.preset.total_timeout_ms = 5; o.preset.attempt_timeout_ms = 10);
  BAD(o.max_retry_after_ms = FY_RETRY_DELAY_LIMIT_MS + 1);
  BAD(o.max_hosts = 0);
  BAD(o.preset.max_attempts = 0);
  BAD(o.idle_ms = FY_TIMEOUT_MAX_MS + 1);
  BAD(o.first_byte_ms = (uint64_t)-1);
  BAD(o.preset.breaker_open_ms = FY_BREAKER_DURATION_MAX + 1);
  BAD(o.preset.max_concurrent = 1; o.preset.queue_timeout_ms = (uint64_t)-1);
  BAD(o.preset.retry_jitter = (fy_retry_jitter_t)99);
#undef BAD
  /* Nothing was created, not even the parts before the one refused. */
  fy_ctx_stats(ctx, &after);
  cr_assert_eq(memcmp(&before, &after, sizeof(before)), 0);
  cr_assert_eq(fy_curl_pipeline_new(NULL, NULL, &p), UV_EINVAL);
  cr_assert_eq(fy_curl_pipeline_new(ctx, NULL, NULL), UV_EINVAL);
}

Test(curl, urls_give_host_keys) {
  static const struct {
    const char *url;
    const char *key;
  } ok[] = {
      {"http://example.com/x", "http://example.com:80"},
      {"HTTP://Example.COM:8080/path?q=1#f", "http://example.com:8080"},
      {"https://h.example", "https://h.example:443"},
      {"http://[::1]:81/", "http://[::1]:81"},
      {"http://user:pw@host:9/", "http://host:9"},
  };
  static const char *const bad[] = {"", "not a url", "http://", "/relative",
                                    "http://exa mple.com/"};
  char longurl[600];
  treq_t t;
  size_t i;
  memset(&t, 0, sizeof(t));
  cr_assert_eq(fy_curl_req_init(cu, &t.req), 0);
  cr_assert_str_eq(fy_curl_req_host(&t.req), "");
  for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
    cr_assert_eq(fy_curl_req_set_url(&t.req, ok[i].url), 0, "%s", ok[i].url);
    cr_assert_str_eq(fy_curl_req_host(&t.req), ok[i].key);
  }
  for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    cr_assert_eq(fy_curl_req_set_url(&t.req, bad[i]), UV_EINVAL, "'%s'",
                 bad[i]);
    cr_assert_str_eq(fy_curl_req_host(&t.req), ok[4].key, "key unchanged");
  }
  /* A host name longer than a key may be. */
  memcpy(longurl, "http://", 7);
  memset(longurl + 7, 'a', 400);
  memcpy(longurl + 407, ".com/", 6);
  cr_assert_eq(fy_curl_req_set_url(&t.req, longurl), UV_EINVAL);
  cr_assert_eq(fy_curl_req_set_url(&t.req, NULL), UV_EINVAL);
  cr_assert_eq(fy_curl_req_set_url(NULL, "http://a/"), UV_EINVAL);
  treq_cleanup(&t);
}

Test(curl, request_arguments_validated) {
  fy_pipeline_t *pl = bare_pipeline();
  fy_ctx_t *other = NULL;
  fy_pipeline_t *foreign = NULL;
  char method[32];
  treq_t t;
  memset(&t, 0, sizeof(t));
  cr_assert_eq(fy_curl_req_init(NULL, &t.req), UV_EINVAL);
  cr_assert_eq(fy_curl_req_init(cu, NULL), UV_EINVAL);
  cr_assert_eq(fy_curl_req_init_easy(cu, &t.req, NULL), UV_EINVAL);
  cr_assert_eq(fy_curl_req_cleanup(NULL), UV_EINVAL);
  cr_assert_eq(fy_curl_req_init(cu, &t.req), 0);
  /* No URL yet. */
  cr_assert_eq(fy_curl_start(&t.req, pl, on_done), UV_EINVAL);
  cr_assert_eq(fy_curl_req_set_url(&t.req, base), 0);
  cr_assert_eq(fy_curl_start(&t.req, pl, NULL), UV_EINVAL);
  cr_assert_eq(fy_curl_start(&t.req, NULL, on_done), UV_EINVAL);
  cr_assert_eq(fy_curl_start(NULL, pl, on_done), UV_EINVAL);
  /* Headers: no line breaks (no header injection). */
  cr_assert_eq(fy_curl_req_add_header(&t.req, "X-A: 1\r\nX-B: 2"), UV_EINVAL);
  cr_assert_eq(fy_curl_req_add_header(&t.req, "X-A: 1\n"), UV_EINVAL);
  cr_assert_eq(fy_curl_req_add_header(&t.req, ""), UV_EINVAL);
  cr_assert_eq(fy_curl_req_add_header(&t.req, NULL), UV_EINVAL);
  cr_assert_eq(fy_curl_req_add_header(&t.req, "X-Ok: 1"), 0);
  /* Methods are tokens. */
  cr_assert_eq(fy_curl_req_set_method(&t.req, ""), UV_EINVAL);
  cr_assert_eq(fy_curl_req_set_method(&t.req, "GE T"), UV_EINVAL);
  cr_assert_eq(fy_curl_req_set_method(&t.req, "GET\r\n"), UV_EINVAL);
  memset(method, 'A', sizeof(method));
  method[FY_CURL_METHOD_MAX + 1] = '\0';
  cr_assert_eq(fy_curl_req_set_method(&t.req, method), UV_EINVAL);
  method[FY_CURL_METHOD_MAX] = '\0';
  cr_assert_eq(fy_curl_req_set_method(&t.req, method), 0);
  cr_assert_eq(fy_curl_req_set_method(&t.req, "GET"), 0);
  cr_assert_eq(fy_curl_req_set_body(&t.req, NULL, 3), UV_EINVAL);
  cr_assert_eq(fy_curl_req_set_limits(&t.req, FY_CURL_BODY_MAX + 1, 0),
               UV_EINVAL);
  cr_assert_eq(fy_curl_req_set_limits(&t.req, 0, FY_CURL_HEADERS_MAX + 1),
               UV_EINVAL);
  /* A pipeline of another context. */
  cr_assert_eq(fy_ctx_new(&loop, NULL, &other), 0);
  cr_assert_eq(fy_pipeline_new(other, NULL, 0, &foreign), 0);
  cr_assert_eq(fy_curl_start(&t.req, foreign, on_done), UV_EINVAL);
  cr_assert_eq(fy_ctx_close(other, NULL, NULL), 0);
  /* In flight: busy. */
  cr_assert_eq(treq_start(&t, pl), 0);
  cr_assert_eq(treq_start(&t, pl), UV_EBUSY);
  cr_assert_eq(fy_curl_req_cleanup(&t.req), UV_EBUSY);
  cr_assert_eq(fy_curl_req_set_url(&t.req, base), UV_EBUSY);
  cr_assert_eq(fy_curl_req_set_body(&t.req, "x", 1), UV_EBUSY);
  cr_assert(wait_for(&t.done, 1, 2000));
  cr_assert_eq(t.status, 0);
  treq_cleanup(&t);
  cr_assert_eq(fy_curl_req_cleanup(&t.req), UV_EINVAL, "cleaned up twice");
}

Test(curl, callers_easy_handle) {
  CURL *easy = curl_easy_init();
  treq_t t;
  memset(&t, 0, sizeof(t));
  cr_assert_eq(fy_curl_req_init_easy(cu, &t.req, easy), 0);
  cr_assert_eq(fy_curl_req_set_url(&t.req, base), 0);
  cr_assert_eq(fy_curl_req_add_header(&t.req, "X-Test: 1"), 0);
  treq_run(&t, bare_pipeline());
  cr_assert_eq(t.status, 0);
  cr_assert_eq(t.req.easy, easy);
  treq_cleanup(&t);
  /* Still the caller's, and reset: usable on its own. */
  curl_easy_cleanup(easy);
}

/* ---- the default pipeline ---------------------------------------------- */

Test(curl, default_pipeline_end_to_end) {
  fy_curl_pipeline_opts_t o;
  fy_curl_pipeline_t *p = NULL;
  fy_curl_hosts_t *h;
  int closed = 0;
  treq_t t;
  fy_curl_pipeline_opts_init(&o);
  o.preset.name = "api";
  o.preset.retry_initial_delay_ms = 1;
  o.preset.retry_max_delay_ms = 5;
  o.preset.total_timeout_ms = 20000;
  o.preset.max_concurrent = 8;
  o.preset.breaker_failures = 2;
  cr_assert_eq(fy_curl_pipeline_new(ctx, &o, &p), 0);
  cr_assert_eq(fy_pipeline_size(fy_curl_pipeline_get(p)), 5);
  h = fy_curl_pipeline_hosts(p);
  cr_assert_str_eq(fy_policy_name(fy_curl_hosts_policy(h)), "api.hosts");
  cr_assert_str_eq(fy_policy_name(fy_retry_policy(fy_curl_pipeline_retry(p))),
                   "api.retry");
  cr_assert_not_null(fy_curl_pipeline_bulkhead(p));
  cr_assert_not_null(fy_curl_pipeline_timeout(p, FY_TIMEOUT_TOTAL));
  cr_assert_not_null(fy_curl_pipeline_timeout(p, FY_TIMEOUT_PER_TRY));
  /* GET 503: retried, and two failures open the host's breaker, which
   * refuses the third attempt: the call fails fast with the refusal. */
  treq_initf(&t, "%s/d?status=503%s", base, "");
  treq_run(&t, fy_curl_pipeline_get(p));
  cr_assert_eq(t.req.attempts, 2);
  cr_assert_eq(t.status, FY_ECIRCUITOPEN, "%s", fy_err_name(t.status));
  cr_assert_eq(t.req.status, FY_CURL_EHTTP(503), "the last attempt's");
  cr_assert_str_eq(t.req.call.detail.by_kind, "retry");
  cr_assert_eq(t.req.call.detail.state, FY_RETRY_STOP_NOT_RETRYABLE);
  cr_assert_eq(fy_breaker_state(
                   fy_curl_hosts_breaker(h, fy_curl_req_host(&t.req))),
               FY_BREAKER_OPEN);
  treq_cleanup(&t);
  /* A POST is not retried. */
  up2 = server(base2, sizeof(base2), 9);
  treq_initf(&t, "%s/echo?status=502%s", base2, "");
  cr_assert_eq(fy_curl_req_set_body(&t.req, "x", 1), 0);
  treq_run(&t, fy_curl_pipeline_get(p));
  cr_assert_eq(t.req.attempts, 1);
  cr_assert_eq(t.req.call.detail.state, FY_RETRY_STOP_NOT_IDEMPOTENT);
  treq_cleanup(&t);
  cr_assert_eq(fy_curl_pipeline_close(p, count_close, &closed), 0);
  cr_assert_eq(fy_curl_pipeline_close(p, NULL, NULL), FY_ECLOSED);
  cr_assert(wait_for(&closed, 1, 1000));
}

Test(curl, default_pipeline_freed_with_the_context) {
  fy_curl_pipeline_t *p = NULL;
  treq_t t;
  cr_assert_eq(fy_curl_pipeline_new(ctx, NULL, &p), 0);
  treq_initf(&t, "%s/x%s", base, "");
  treq_run(&t, fy_curl_pipeline_get(p));
  cr_assert_eq(t.status, 0);
  treq_cleanup(&t);
  /* Never closed: the context's close frees it (checked by ASan and
   * valgrind). */
}

/* One part already closing: the bundle's close closes the rest but fails,
 * so it frees nothing and never calls back; the context frees the bundle
 * at its end (checked by ASan and valgrind). */
Test(curl, default_pipeline_close_returning_eclosed_frees_nothing) {
  fy_curl_pipeline_t *p = NULL;
  fy_pipeline_t *pl;
  int closed = 0;
  cr_assert_eq(fy_curl_pipeline_new(ctx, NULL, &p), 0);
  pl = fy_curl_pipeline_get(p);
  cr_assert_eq(fy_retry_close(fy_curl_pipeline_retry(p), NULL, NULL), 0);
  cr_assert_eq(fy_curl_pipeline_close(p, count_close, &closed), FY_ECLOSED);
  /* The parts still open were closed all the same (they go on a later
   * turn; only the bundle itself stays). */
  cr_assert(fy_policy_is_closing(fy_curl_hosts_policy(
      fy_curl_pipeline_hosts(p))));
  run_for(50);
  cr_assert_eq(closed, 0);
  cr_assert_eq(fy_curl_pipeline_get(p), pl, "still allocated");
  cr_assert_eq(fy_curl_pipeline_close(p, count_close, &closed), FY_ECLOSED);
}

static fy_curl_pipeline_t *g_bundle;
static int g_bundle_rc = -1, g_bundle_closed;

static void close_bundle_then(treq_t *t) {
  (void)t;
  g_bundle_rc = fy_curl_pipeline_close(g_bundle, count_close,
                                       &g_bundle_closed);
}

Test(curl, default_pipeline_closed_from_a_completion_callback) {
  treq_t t;
  cr_assert_eq(fy_curl_pipeline_new(ctx, NULL, &g_bundle), 0);
  treq_initf(&t, "%s/x%s", base, "");
  t.then = close_bundle_then;
  treq_run(&t, fy_curl_pipeline_get(g_bundle));
  cr_assert_eq(t.status, 0);
  cr_assert_eq(g_bundle_rc, 0);
  cr_assert(wait_for(&g_bundle_closed, 1, 1000));
  run_for(20);
  cr_assert_eq(g_bundle_closed, 1);
  treq_cleanup(&t);
}

/* The context's close, with calls in flight through the per-host
 * breakers: the hosts forget their breakers before any policy is wound
 * down, so the outcomes that come afterwards (UV_ECANCELED) touch no
 * closed breaker, whatever order the policies go in.  The bundle is never
 * closed; the context frees it (checked by ASan and valgrind). */
Test(curl, context_close_with_calls_through_the_hosts) {
  static treq_t t[4];
  fy_curl_pipeline_t *p = NULL;
  fy_curl_hosts_t *h;
  int i;
  cr_assert_eq(fy_curl_pipeline_new(ctx, NULL, &p), 0);
  h = fy_curl_pipeline_hosts(p);
  for (i = 0; i < 4; i++) {
    treq_initf(&t[i], "%s/slow?latency=5000%s", base, "");
    cr_assert_eq(treq_start(&t[i], fy_curl_pipeline_get(p)), 0);
  }
  run_for(50);
  cr_assert_not_null(fy_curl_hosts_breaker(h, fy_curl_req_host(&t[0].req)));
  cu = NULL;
  cr_assert_eq(fy_ctx_close(ctx, count_close, &ctx_closed), 0);
  cr_assert(wait_for(&g_done, 4, 2000));
  for (i = 0; i < 4; i++)
    cr_assert_eq(t[i].status, UV_ECANCELED);
  cr_assert(wait_for(&ctx_closed, 1, 2000));
  for (i = 0; i < 4; i++)
    treq_cleanup(&t[i]);
  /* The adapter was never closed either: the context's close freed it. */
  cu = NULL;
  ctx = NULL;
  fy_up_close(up, on_up_closed, &up_closed);
  up = NULL;
  cr_assert(wait_for(&up_closed, 1, 2000));
}
Test(curl, idle_adapter_keeps_nothing_alive) {
  fy_curl_stats_t st;
  treq_t t;
  treq_initf(&t, "%s/x%s", base, "");
  treq_run(&t, bare_pipeline());
  run_for(50);
  /* Pooled connections are not polled and curl's timer is stopped: an
   * idle adapter holds no active handle and no deadline. */
  fy_curl_stats(cu, &st);
  cr_assert_eq(st.polling, 0);
  cr_assert_eq(st.sockets, 1); /* the pooled connection keeps its poll */
  cr_assert_eq(st.transfers, 0);
  cr_assert_eq(fy_ctx_pending_deadlines(ctx), 0);
  treq_cleanup(&t);
}

typedef struct polls_s {
  int active;     /* started */
  int referenced; /* started and keeping the loop alive */
} polls_t;

static void walk_poll(uv_handle_t *h, void *arg) {
  polls_t *n = arg;
  if (h->type != UV_POLL || !uv_is_active(h))
    return;
  n->active++;
  if (uv_has_ref(h))
    n->referenced++;
}

static polls_t loop_polls(void) {
  polls_t n = {0, 0};
  uv_walk(&loop, walk_poll, &n);
  return n;
}

static void assert_pooled_idle(size_t sockets) {
  fy_curl_stats_t st;
  /* A pooled connection's poll may still read (for a FIN), but it never
   * keeps the loop alive. */
  cr_assert_eq(loop_polls().referenced, 0);
  fy_curl_stats(cu, &st);
  cr_assert_eq(st.polling, 0, "an idle adapter watches %zu sockets",
               st.polling);
  cr_assert_eq(st.sockets, sockets, "%zu poll handles, %zu expected",
               st.sockets, sockets);
}

Test(curl, pooled_connection_keeps_its_poll) {
  treq_t t;
  int i;
  treq_initf(&t, "%s/x%s", base, "");
  for (i = 0; i < 20; i++) {
    t.done = 0;
    treq_run(&t, bare_pipeline());
    cr_assert_eq(t.status, 0);
    cr_assert_eq(t.req.connects, i == 0 ? 1 : 0, "request %d connected", i);
    /* Between requests the connection idles in curl's pool: its poll is
     * kept, stopped, for the next request. */
    assert_pooled_idle(1);
  }
  treq_cleanup(&t);
}

static uv_check_t turns_check;
static unsigned turns;

static void count_turn(uv_check_t *h) {
  (void)h;
  turns++;
}

Test(curl, server_closing_a_pooled_connection) {
  treq_t t;
  fy_up_stats_t us;
  treq_initf(&t, "%s/x%s", base, "?action=close_after");
  treq_run(&t, bare_pipeline());
  cr_assert_eq(t.status, 0);
  cr_assert_eq(t.req.http_code, 200);
  /* The FIN reaches a socket whose poll is stopped: the loop must not
     spin on it (a level-triggered readable fd nobody reads would make
     every turn return at once; the guard timer alone makes about 10). */
  cr_assert_eq(uv_check_init(&loop, &turns_check), 0);
  cr_assert_eq(uv_check_start(&turns_check, count_turn), 0);
  turns = 0;
  run_for(100);
  uv_close((uv_handle_t *)&turns_check, NULL);
  cr_assert_lt(turns, 100, "%u loop turns in 100 ms", turns);
  cr_assert_eq(loop_polls().active, 0, "the FIN stopped the pooled poll");
  assert_pooled_idle(1);
  /* The next request finds the connection dead, closes it (with its poll)
   * and opens a new one. */
  cr_assert_eq(fy_curl_req_set_url(&t.req, base), 0);
  t.done = 0;
  treq_run(&t, bare_pipeline());
  cr_assert_eq(t.status, 0);
  cr_assert_eq(t.req.connects, 1);
  fy_up_stats(up, &us);
  cr_assert_eq(us.connections, 2);
  assert_pooled_idle(1);
  treq_cleanup(&t);
}

static int user_opens, user_closes;

static curl_socket_t user_open(void *ud, curlsocktype purpose,
                               struct curl_sockaddr *addr) {
  (void)ud;
  (void)purpose;
  user_opens++;
  return socket(addr->family, addr->socktype, addr->protocol);
}

static int user_close(void *ud, curl_socket_t s) {
  (void)ud;
  user_closes++;
  return close(s);
}

Test(curl, adapter_owns_the_close_socket_callback) {
  treq_t t;
  treq_initf(&t, "%s/x%s", base, "?action=close_after");
  /* Set after the request was bound.  Opening sockets stays the caller's
   * business; closing is the adapter's, set again on every attempt, so a
   * connection whose poll it keeps always closes through it. */
  curl_easy_setopt(t.req.easy, CURLOPT_OPENSOCKETFUNCTION, user_open);
  curl_easy_setopt(t.req.easy, CURLOPT_CLOSESOCKETFUNCTION, user_close);
  treq_run(&t, bare_pipeline());
  cr_assert_eq(t.status, 0);
  cr_assert_eq(user_opens, 1);
  assert_pooled_idle(1);
  /* The server closed it: the next request closes it and opens another. */
  run_for(20);
  t.done = 0;
  treq_run(&t, bare_pipeline());
  cr_assert_eq(t.status, 0);
  cr_assert_eq(user_opens, 2);
  cr_assert_eq(user_closes, 0);
  assert_pooled_idle(1);
  treq_cleanup(&t);
}

/* A connection in a CURLSH's cache outlives the adapter that opened it:
 * its close, at curl_share_cleanup(), still comes through the adapter's
 * close callback, whose data must then not be the adapter (ASan and
 * valgrind check that nothing freed is touched and nothing leaks). */
Test(curl, shared_connection_outlives_the_adapter) {
  CURLSH *sh = curl_share_init();
  treq_t t;
  fy_up_stats_t us;
  int i;
  cr_assert_not_null(sh);
  cr_assert_eq(curl_share_setopt(sh, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT),
               CURLSHE_OK);
  treq_initf(&t, "%s/x%s", base, "");
  cr_assert_eq(curl_easy_setopt(t.req.easy, CURLOPT_SHARE, sh), CURLE_OK);
  for (i = 0; i < 2; i++) {
    t.done = 0;
    treq_run(&t, bare_pipeline());
    cr_assert_eq(t.status, 0);
    cr_assert_eq(t.req.connects, i == 0 ? 1 : 0);
  }
  close_adapter();
  run_for(20);
  cr_assert_eq(curl_closed, 1);
  fy_up_stats(up, &us);
  cr_assert_eq(us.open, 1, "the share keeps the connection");
  treq_cleanup(&t);
  cr_assert_eq(curl_share_cleanup(sh), CURLSHE_OK);
  /* The share closed it: the server sees the FIN. */
  for (i = 0; i < 100 && us.open != 0; i++) {
    run_for(5);
    fy_up_stats(up, &us);
  }
  cr_assert_eq(us.open, 0);
}

/* ---- re-entrancy ------------------------------------------------------- */

static void free_self(treq_t *t) {
  /* The request's memory is the caller's again inside its callback. */
  cr_assert_eq(fy_curl_req_cleanup(&t->req), 0);
  free(t);
}

Test(curl, request_freed_inside_its_callback) {
  treq_t *t = malloc(sizeof(*t));
  cr_assert_not_null(t);
  treq_initf(t, "%s/x%s", base, "");
  t->then = free_self;
  cr_assert_eq(treq_start(t, bare_pipeline()), 0);
  cr_assert(wait_for(&g_done, 1, 2000));
  run_for(20);
  assert_idle();
}

static fy_pipeline_t *g_hosts_pl;
static pend_t g_reentrant;
static int g_hosts_closed;

/* A host's breaker opened: from inside the breaker's notification, start
 * a call for another host, which evicts the one being recorded (max_hosts
 * 1), then close the whole policy. */
static void reenter_on_open(fy_curl_hosts_t *h, const char *host,
                            fy_breaker_state_t from, fy_breaker_state_t to,
                            void *user_data) {
  (void)host;
  (void)from;
  (void)user_data;
  if (to != FY_BREAKER_OPEN)
    return;
  cr_assert_eq(pend_go(&g_reentrant, g_hosts_pl, "other"), 0);
  cr_assert_eq(fy_curl_hosts_close(h, on_hosts_closed, &g_hosts_closed), 0);
}

Test(curl, hosts_state_callback_reenters_the_policy) {
  fy_curl_hosts_t *h = hosts_policy(1, 1, pend_key, reenter_on_open, NULL);
  fy_policy_t *layers[1] = {fy_curl_hosts_policy(h)};
  fy_curl_hosts_stats_t hs;
  pend_t a;
  g_hosts_pl = pipeline_of(1, layers);
  cr_assert_eq(pend_go(&a, g_hosts_pl, "a"), 0);
  pend_finish(&a, UV_ECONNRESET); /* opens "a": the callback runs */
  cr_assert_eq(a.status, UV_ECONNRESET);
  cr_assert(wait_for(&g_hosts_closed, 1, 1000));
  cr_assert_eq(g_reentrant.done, 1);
  cr_assert_eq(g_reentrant.status, UV_ECANCELED, "cancelled by the close");
  fy_curl_hosts_stats(h, &hs);
  cr_assert_eq(hs.created, 2);
  cr_assert_eq(hs.evicted, 1);
  cr_assert_eq(hs.evicted_busy, 0);
}
