/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * Tests of the test upstream (tests/upstream), driven by blocking libcurl
 * easy calls and, for what curl would never send, by raw blocking sockets.
 * The server runs on its own thread (fy_up_spawn) unless a test says
 * otherwise.  The only time-based assertions are lower bounds ("took at
 * least the latency asked for"), which cannot flake. */
#include <criterion/criterion.h>
#include <curl/curl.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "upstream.h"

/* ---- fixture ------------------------------------------------------------ */

static void suite_init(void) {
  cr_assert_eq(curl_global_init(CURL_GLOBAL_DEFAULT), CURLE_OK);
}

static void suite_fini(void) {
  curl_global_cleanup();
}

TestSuite(upstream, .init = suite_init, .fini = suite_fini);

static fy_up_t *spawn_seed(uint64_t seed) {
  fy_up_opts_t opts;
  fy_up_t *up = NULL;

  memset(&opts, 0, sizeof(opts));
  opts.seed = seed;
  opts.quiet = 1;
  cr_assert_eq(fy_up_spawn(&opts, &up), 0);
  cr_assert_not_null(up);
  return up;
}

static fy_up_t *spawn(void) {
  return spawn_seed(42);
}

/* ---- a blocking curl client --------------------------------------------- */

typedef struct buf_s {
  char *p;
  size_t n;
} buf_t;

typedef struct resp_s {
  CURLcode rc;
  long code;
  long connects;
  curl_off_t retry_after;
  curl_off_t header_size;
  uint64_t elapsed_ms;
  buf_t body;
  buf_t head;
} resp_t;

static void buf_add(buf_t *b, const void *p, size_t n) {
  char *np = realloc(b->p, b->n + n + 1);

  cr_assert_not_null(np);
  b->p = np;
  memcpy(b->p + b->n, p, n);
  b->n += n;
  b->p[b->n] = '\0';
}

static size_t on_body(char *p, size_t size, size_t n, void *ud) {
  buf_add(ud, p, size * n);
  return size * n;
}

static size_t on_sink(char *p, size_t size, size_t n, void *ud) {
  (void)p;
  (void)ud;
  return size * n;
}

static void resp_free(resp_t *r) {
  free(r->body.p);
  free(r->head.p);
  memset(r, 0, sizeof(*r));
}

/* Carries out one request on |h| (reused between calls for keep-alive).
 * |method| NULL is GET; |post| is the request body, if any. */
static void req_on(CURL *h, fy_up_t *up, const char *method,
                   const char *target, const char *post, size_t post_len,
                   long timeout_ms, resp_t *r) {
  char url[8192];
  char base[64];
  uint64_t t0;

  memset(r, 0, sizeof(*r));
  snprintf(url, sizeof(url), "%s%s", fy_up_base_url(up, base, sizeof(base)),
           target);
  curl_easy_setopt(h, CURLOPT_URL, url);
  curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &r->body);
  curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_body);
  curl_easy_setopt(h, CURLOPT_HEADERDATA, &r->head);
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms > 0 ? timeout_ms : 10000L);
  curl_easy_setopt(h, CURLOPT_NOBODY, 0L);
  if (method == NULL)
    curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
  if (post != NULL) {
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, post);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)post_len);
  }
  if (method != NULL && strcmp(method, "HEAD") == 0)
    curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
  curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST,
                   method != NULL && strcmp(method, "HEAD") != 0 ? method
                                                                  : NULL);
  t0 = uv_hrtime();
  r->rc = curl_easy_perform(h);
  r->elapsed_ms = (uv_hrtime() - t0) / 1000000u;
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->code);
  curl_easy_getinfo(h, CURLINFO_NUM_CONNECTS, &r->connects);
  curl_easy_getinfo(h, CURLINFO_RETRY_AFTER, &r->retry_after);
  curl_easy_getinfo(h, CURLINFO_HEADER_SIZE, &r->header_size);
}

/* One request on a fresh handle (no connection reuse). */
static void req(fy_up_t *up, const char *method, const char *target,
                const char *post, size_t post_len, long timeout_ms,
                resp_t *r) {
  CURL *h = curl_easy_init();

  cr_assert_not_null(h);
  req_on(h, up, method, target, post, post_len, timeout_ms, r);
  curl_easy_cleanup(h);
}

static void get(fy_up_t *up, const char *target, resp_t *r) {
  req(up, NULL, target, NULL, 0, 0, r);
}

static int has_header(const resp_t *r, const char *line) {
  return r->head.p != NULL && strstr(r->head.p, line) != NULL;
}

static void stats(fy_up_t *up, fy_up_stats_t *st) {
  fy_up_stats(up, st);
}

/* The server closes a connection shortly after its client does; waits (at
 * most 5 s) until |open| connections remain. */
static int wait_open(fy_up_t *up, uint64_t open) {
  fy_up_stats_t st;
  int i;

  for (i = 0; i < 1000; i++) {
    stats(up, &st);
    if (st.open == open)
      return 1;
    uv_sleep(5);
  }
  return 0;
}

/* ---- raw blocking sockets ------------------------------------------------ */

static int raw_connect(fy_up_t *up) {
  struct sockaddr_in sa;
  struct timeval tv = {5, 0};
  int fd = socket(AF_INET, SOCK_STREAM, 0);

  cr_assert_geq(fd, 0);
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_port = htons(fy_up_port(up));
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  return fd;
}

static void raw_send(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t k = send(fd, p, n, MSG_NOSIGNAL);

    if (k < 0 && errno == EINTR)
      continue;
    if (k <= 0)
      return;   /* the server may close early, e.g. after a 431 */
    p += k;
    n -= (size_t)k;
  }
}

/* Reads until the server closes (or 5 s pass); returns the bytes read and
 * sets *eof when the server closed. */
static size_t raw_read_all(int fd, buf_t *b, int *eof) {
  char tmp[4096];

  *eof = 0;
  for (;;) {
    ssize_t k = recv(fd, tmp, sizeof(tmp), 0);

    if (k < 0 && errno == EINTR)
      continue;
    if (k == 0 || (k < 0 && errno == ECONNRESET)) {
      *eof = 1;
      break;
    }
    if (k < 0)
      break;
    buf_add(b, tmp, (size_t)k);
  }
  return b->n;
}

/* Reads until |want| is in the input (or EOF/timeout). */
static int raw_read_until(int fd, buf_t *b, const char *want) {
  char tmp[4096];

  while (b->p == NULL || strstr(b->p, want) == NULL) {
    ssize_t k = recv(fd, tmp, sizeof(tmp), 0);

    if (k <= 0)
      return 0;
    buf_add(b, tmp, (size_t)k);
  }
  return 1;
}

static unsigned count_of(const char *hay, const char *needle) {
  unsigned n = 0;

  while (hay != NULL && (hay = strstr(hay, needle)) != NULL) {
    n++;
    hay += strlen(needle);
  }
  return n;
}

/* ---- lifecycle ---------------------------------------------------------- */

static void count_cb(void *ud) {
  (*(int *)ud)++;
}

Test(upstream, spawn_listens_and_close_runs_cb_before_return) {
  fy_up_t *up = spawn();
  char url[64];
  char want[64];
  int ran = 0;

  cr_assert_neq(fy_up_port(up), 0);
  snprintf(want, sizeof(want), "http://127.0.0.1:%u",
           (unsigned)fy_up_port(up));
  cr_assert_str_eq(fy_up_base_url(up, url, sizeof(url)), want);
  fy_up_close(up, count_cb, &ran);
  cr_assert_eq(ran, 1);
  fy_up_close(NULL, NULL, NULL);   /* a no-op */
}

Test(upstream, start_and_close_in_process_without_request) {
  uv_loop_t loop;
  fy_up_opts_t opts = {0, 0, 1};
  fy_up_t *up = NULL;
  int ran = 0;

  cr_assert_eq(uv_loop_init(&loop), 0);
  cr_assert_eq(fy_up_start(&loop, &opts, &up), 0);
  cr_assert_neq(fy_up_port(up), 0);
  fy_up_close(up, count_cb, &ran);
  cr_assert_eq(ran, 0, "the close callback is asynchronous");
  cr_assert_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  cr_assert_eq(ran, 1);
  cr_assert_eq(uv_loop_close(&loop), 0);
}

Test(upstream, bad_arguments_are_refused) {
  uv_loop_t loop;
  fy_up_t *up = (fy_up_t *)&loop;

  cr_assert_eq(uv_loop_init(&loop), 0);
  cr_assert_eq(fy_up_start(NULL, NULL, &up), UV_EINVAL);
  cr_assert_null(up);
  cr_assert_eq(fy_up_start(&loop, NULL, NULL), UV_EINVAL);
  cr_assert_eq(fy_up_spawn(NULL, NULL), UV_EINVAL);
  cr_assert_eq(uv_loop_close(&loop), 0);
}

Test(upstream, busy_port_is_eaddrinuse_and_nothing_is_left) {
  fy_up_t *a = spawn();
  fy_up_t *b = (fy_up_t *)&a;
  fy_up_opts_t opts = {0, 0, 1};
  uv_loop_t loop;

  opts.port = fy_up_port(a);
  cr_assert_eq(fy_up_spawn(&opts, &b), UV_EADDRINUSE);
  cr_assert_null(b);
  cr_assert_eq(uv_loop_init(&loop), 0);
  cr_assert_eq(fy_up_start(&loop, &opts, &b), UV_EADDRINUSE);
  cr_assert_null(b);
  cr_assert_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  cr_assert_eq(uv_loop_close(&loop), 0);
  fy_up_close(a, NULL, NULL);
}

/* In-process: the server on a loop this test runs, the blocking client on
 * a second thread, which wakes the loop when done. */
typedef struct inproc_s {
  uv_async_t done;
  fy_up_t *up;
  resp_t r;
  int closed;
} inproc_t;

static void inproc_client(void *arg) {
  inproc_t *t = arg;

  get(t->up, "/in-process?status=201&body=7", &t->r);
  uv_async_send(&t->done);
}

static void inproc_done(uv_async_t *a) {
  inproc_t *t = a->data;

  fy_up_close(t->up, count_cb, &t->closed);
  uv_close((uv_handle_t *)a, NULL);
}

Test(upstream, in_process_server_answers_on_the_callers_loop) {
  uv_loop_t loop;
  uv_thread_t client;
  fy_up_opts_t opts = {0, 0, 1};
  inproc_t t;

  memset(&t, 0, sizeof(t));
  cr_assert_eq(uv_loop_init(&loop), 0);
  cr_assert_eq(fy_up_start(&loop, &opts, &t.up), 0);
  cr_assert_eq(uv_async_init(&loop, &t.done, inproc_done), 0);
  t.done.data = &t;
  cr_assert_eq(uv_thread_create(&client, inproc_client, &t), 0);
  cr_assert_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  cr_assert_eq(uv_thread_join(&client), 0);
  cr_assert_eq(t.r.rc, CURLE_OK);
  cr_assert_eq(t.r.code, 201);
  cr_assert_eq(t.r.body.n, 7);
  cr_assert_str_eq(t.r.body.p, "ok\nok\no");
  cr_assert_eq(t.closed, 1);
  resp_free(&t.r);
  cr_assert_eq(uv_loop_close(&loop), 0);
}

/* ---- status, methods, bodies -------------------------------------------- */

Test(upstream, default_answer_is_200_ok) {
  fy_up_t *up = spawn();
  resp_t r;

  get(up, "/anything/at/all", &r);
  cr_assert_eq(r.rc, CURLE_OK);
  cr_assert_eq(r.code, 200);
  cr_assert_str_eq(r.body.p, "ok\n");
  cr_assert(has_header(&r, "Content-Length: 3\r\n"));
  cr_assert(has_header(&r, "HTTP/1.1 200 OK\r\n"));
  resp_free(&r);
  fy_up_close(up, NULL, NULL);
}

Test(upstream, status_parameter) {
  fy_up_t *up = spawn();
  static const long codes[] = {201, 204, 299, 404, 429, 500, 503, 599, 999};
  char target[64];
  resp_t r;
  size_t i;

  for (i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
    snprintf(target, sizeof(target), "/s?status=%ld", codes[i]);
    get(up, target, &r);
    cr_assert_eq(r.rc, CURLE_OK, "%ld: %s", codes[i],
                 curl_easy_strerror(r.rc));
    cr_assert_eq(r.code, codes[i]);
    cr_assert_eq(r.body.n, codes[i] == 204 ? 0u : 3u);
    resp_free(&r);
  }
  fy_up_close(up, NULL, NULL);
}

Test(upstream, bad_values_get_400_and_keep_the_connection) {
  fy_up_t *up = spawn();
  static const char *const bad[] = {
      "/?status=abc",      "/?status=99",        "/?status=1000",
      "/?fail=1.5",        "/?fail=-1",          "/?fail=nan",
      "/?latency=-5",      "/?latency=99999999", "/?body=x",
      "/?chunk=0",         "/?chunked=2",        "/?action=explode",
      "/?huge_kb=99999",   "/?retry_after=a%0d%0aX-Evil:%201",
      "/?retry_after=",    "/?status=%zz",       "/?action_rate=2"};
  CURL *h = curl_easy_init();
  resp_t r;
  size_t i;

  for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    req_on(h, up, NULL, bad[i], NULL, 0, 0, &r);
    cr_assert_eq(r.rc, CURLE_OK);
    cr_assert_eq(r.code, 400, "%s", bad[i]);
    cr_assert(strstr(r.body.p, "bad query parameter") != NULL);
    cr_assert(!has_header(&r, "X-Evil"));
    cr_assert_eq(r.connects, i == 0 ? 1 : 0, "%s reconnected", bad[i]);
    resp_free(&r);
  }
  /* Unknown keys are ignored. */
  req_on(h, up, NULL, "/?cachebuster=123&x&=y&&", NULL, 0, 0, &r);
  cr_assert_eq(r.code, 200);
  resp_free(&r);
  curl_easy_cleanup(h);
  fy_up_close(up, NULL, NULL);
}

Test(upstream, every_method_is_answered) {
  fy_up_t *up = spawn();
  static const char *const methods[] = {"GET", "POST", "PUT", "PATCH",
                                        "DELETE", "OPTIONS"};
  curl_off_t clen = -1;
  resp_t r;
  size_t i;
  CURL *h;

  for (i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
    req(up, methods[i], "/m?status=202", "data", 4, 0, &r);
    cr_assert_eq(r.rc, CURLE_OK, "%s", methods[i]);
    cr_assert_eq(r.code, 202, "%s", methods[i]);
    cr_assert_str_eq(r.body.p, "ok\n");
    resp_free(&r);
  }
  /* HEAD: the headers of the GET, no body. */
  h = curl_easy_init();
  req_on(h, up, "HEAD", "/m?body=1234", NULL, 0, 0, &r);
  cr_assert_eq(r.rc, CURLE_OK);
  cr_assert_eq(r.code, 200);
  cr_assert_eq(r.body.n, 0);
  curl_easy_getinfo(h, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &clen);
  cr_assert_eq(clen, 1234);
  resp_free(&r);
  /* The connection stays usable after a HEAD. */
  req_on(h, up, NULL, "/m", NULL, 0, 0, &r);
  cr_assert_eq(r.code, 200);
  cr_assert_eq(r.connects, 0);
  resp_free(&r);
  curl_easy_cleanup(h);
  fy_up_close(up, NULL, NULL);
}

Test(upstream, body_size_and_content) {
  fy_up_t *up = spawn();
  static const unsigned long sizes[] = {0, 1, 2, 3, 4, 65535, 65536, 65537,
                                        100000, 3000001};
  char target[64];
  resp_t r;
  size_t i;
  size_t j;

  for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
    snprintf(target, sizeof(target), "/b?body=%lu", sizes[i]);
    get(up, target, &r);
    cr_assert_eq(r.rc, CURLE_OK);
    cr_assert_eq(r.body.n, sizes[i]);
    for (j = 0; j < r.body.n; j++)
      cr_assert_eq(r.body.p[j], "ok\n"[j % 3], "byte %zu of %lu", j,
                   sizes[i]);
    resp_free(&r);
  }
  fy_up_close(up, NULL, NULL);
}

Test(upstream, chunked_body) {
  fy_up_t *up = spawn();
  CURL *h = curl_easy_init();
  resp_t r;
  size_t j;

  get(up, "/c?chunked=1&body=50000&chunk=1000", &r);
  cr_assert_eq(r.rc, CURLE_OK);
  cr_assert_eq(r.code, 200);
  cr_assert(has_header(&r, "Transfer-Encoding: chunked\r\n"));
  cr_assert(!has_header(&r, "Content-Length"));
  cr_assert_eq(r.body.n, 50000);
  for (j = 0; j < r.body.n; j++)
    cr_assert_eq(r.body.p[j], "ok\n"[j % 3]);
  resp_free(&r);

  /* The framing itself: 50 chunks of 0x3e8 bytes, then the last chunk. */
  curl_easy_setopt(h, CURLOPT_HTTP_TRANSFER_DECODING, 0L);
  req_on(h, up, NULL, "/c?chunked=1&body=50000&chunk=1000", NULL, 0, 0, &r);
  cr_assert_eq(r.rc, CURLE_OK);
  cr_assert_eq(strncmp(r.body.p, "3e8\r\nok\n", 8), 0);
  cr_assert_eq(count_of(r.body.p, "\r\n3e8\r\n"), 49);
  cr_assert_eq(strcmp(r.body.p + r.body.n - 5, "0\r\n\r\n"), 0);
  cr_assert_eq(r.body.n, 50000 + 50 * 7 + 5);
  resp_free(&r);

  /* An empty chunked body is just the last chunk; a chunk larger than the
   * server's buffers spans several writes. */
  req_on(h, up, NULL, "/c?chunked=1&body=0", NULL, 0, 0, &r);
  cr_assert_str_eq(r.body.p, "0\r\n\r\n");
  resp_free(&r);
  req_on(h, up, NULL, "/c?chunked=1&body=300000&chunk=200000", NULL, 0, 0,
         &r);
  cr_assert_eq(strncmp(r.body.p, "30d40\r\n", 7), 0);
  cr_assert_eq(r.body.n, 300000 + 2 * 2 + 7 + 7 + 5);
  cr_assert_eq(r.connects, 0);
  resp_free(&r);
  curl_easy_cleanup(h);
  fy_up_close(up, NULL, NULL);
}

/* ---- time: lower bounds only -------------------------------------------- */

Test(upstream, latency_is_at_least_what_was_asked) {
  fy_up_t *up = spawn();
  resp_t r;

  get(up, "/l?latency=50", &r);
  cr_assert_eq(r.code, 200);
  cr_assert_geq(r.elapsed_ms, 50);
  resp_free(&r);
  get(up, "/l?latency=20&jitter=30", &r);
  cr_assert_eq(r.code, 200);
  cr_assert_geq(r.elapsed_ms, 20);
  resp_free(&r);
  get(up, "/l?slow=1&slow_ms=60", &r);
  cr_assert_eq(r.code, 200);
  cr_assert_geq(r.elapsed_ms, 60);
  resp_free(&r);
  /* The latency comes before any action. */
  get(up, "/l?latency=40&action=reset", &r);
  cr_assert_neq(r.rc, CURLE_OK);
  cr_assert_geq(r.elapsed_ms, 40);
  resp_free(&r);
  fy_up_close(up, NULL, NULL);
}

Test(upstream, chunk_delay_is_at_least_what_was_asked) {
  fy_up_t *up = spawn();
  resp_t r;

  /* Four pieces, three pauses between them. */
  get(up, "/d?chunked=1&body=4&chunk=1&chunk_delay=30", &r);
  cr_assert_eq(r.rc, CURLE_OK);
  cr_assert_str_eq(r.body.p, "ok\no");
  cr_assert_geq(r.elapsed_ms, 90);
  resp_free(&r);
  /* The same with Content-Length framing. */
  get(up, "/d?body=3&chunk=1&chunk_delay=25", &r);
  cr_assert_eq(r.rc, CURLE_OK);
  cr_assert_str_eq(r.body.p, "ok\n");
  cr_assert_geq(r.elapsed_ms, 50);
  resp_free(&r);
  fy_up_close(up, NULL, NULL);
}

/* ---- PRNG determinism --------------------------------------------------- */

static void codes_of(uint64_t seed, const char *target, unsigned n,
                     long *codes) {
  fy_up_t *up = spawn_seed(seed);
  CURL *h = curl_easy_init();
  resp_t r;
  unsigned i;

  for (i = 0; i < n; i++) {
    req_on(h, up, NULL, target, NULL, 0, 0, &r);
    codes[i] = r.rc == CURLE_OK ? r.code : -(long)r.rc;
    resp_free(&r);
  }
  curl_easy_cleanup(h);
  fy_up_close(up, NULL, NULL);
}

Test(upstream, fail_is_deterministic_for_a_seed) {
  enum { N = 200 };
  long a[N];
  long b[N];
  long c[N];
  unsigned fails = 0;
  unsigned i;

  codes_of(7, "/f?fail=0.3", N, a);
  codes_of(7, "/f?fail=0.3", N, b);
  codes_of(8, "/f?fail=0.3", N, c);
  for (i = 0; i < N; i++) {
    cr_assert(a[i] == 200 || a[i] == 503, "%ld", a[i]);
    fails += a[i] == 503;
  }
  cr_assert_eq(memcmp(a, b, sizeof(a)), 0, "same seed, same sequence");
  cr_assert_neq(memcmp(a, c, sizeof(a)), 0, "another seed, another one");
  /* Deterministic, so this is not a statistical test: 0.3 of 200. */
  cr_assert(fails > 30 && fails < 90, "%u failures", fails);
}

Test(upstream, fail_status_and_certain_failure) {
  fy_up_t *up = spawn();
  resp_t r;

  get(up, "/f?fail=1&fail_status=429&retry_after=3", &r);
  cr_assert_eq(r.code, 429);
  cr_assert_eq(r.retry_after, 3);
  resp_free(&r);
  get(up, "/f?fail=0&status=201", &r);
  cr_assert_eq(r.code, 201);
  resp_free(&r);
  fy_up_close(up, NULL, NULL);
}

Test(upstream, action_rate_is_deterministic_for_a_seed) {
  enum { N = 60 };
  long a[N];
  long b[N];
  unsigned resets = 0;
  unsigned i;

  codes_of(99, "/r?action=truncated&action_rate=0.5", N, a);
  codes_of(99, "/r?action=truncated&action_rate=0.5", N, b);
  cr_assert_eq(memcmp(a, b, sizeof(a)), 0);
  for (i = 0; i < N; i++)
    resets += a[i] == -(long)CURLE_PARTIAL_FILE;
  cr_assert(resets > 10 && resets < 50, "%u truncated", resets);
}

/* ---- Retry-After -------------------------------------------------------- */

Test(upstream, retry_after_is_sent_verbatim) {
  fy_up_t *up = spawn();
  static const struct {
    const char *query;
    const char *header;
  } cases[] = {
      {"2", "Retry-After: 2\r\n"},
      {"-1", "Retry-After: -1\r\n"},
      {"abc", "Retry-After: abc\r\n"},
      {"99999999999999999999", "Retry-After: 99999999999999999999\r\n"},
      {"Wed%2C%2021%20Oct%202015%2007%3A28%3A00%20GMT",
       "Retry-After: Wed, 21 Oct 2015 07:28:00 GMT\r\n"},
      {"Wed,+21+Oct+2015+07:28:00+GMT",
       "Retry-After: Wed, 21 Oct 2015 07:28:00 GMT\r\n"},
  };
  char target[256];
  resp_t r;
  size_t i;

  for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    snprintf(target, sizeof(target), "/ra?status=503&retry_after=%s",
             cases[i].query);
    get(up, target, &r);
    cr_assert_eq(r.code, 503);
    cr_assert(has_header(&r, cases[i].header), "%s", r.head.p);
    if (i == 0)
      cr_assert_eq(r.retry_after, 2);
    resp_free(&r);
  }
  get(up, "/ra", &r);
  cr_assert(!has_header(&r, "Retry-After"));
  resp_free(&r);
  fy_up_close(up, NULL, NULL);
}

/* ---- echo --------------------------------------------------------------- */

typedef struct upload_s {
  const char *p;
  size_t left;
} upload_t;

static size_t on_upload(char *dst, size_t size, size_t n, void *ud) {
  upload_t *u = ud;
  size_t k = size * n < u->left ? size * n : u->left;

  if (k > 777)
    k = 777;   /* small reads: many chunks */
  memcpy(dst, u->p, k);
  u->p += k;
  u->left -= k;
  return k;
}

Test(upstream, echo_answers_with_the_request_body) {
  fy_up_t *up = spawn();
  size_t big = 3u << 20;
  char *data = malloc(big);
  struct curl_slist *hdrs = NULL;
  upload_t u;
  CURL *h;
  resp_t r;
  size_t i;

  cr_assert_not_null(data);
  for (i = 0; i < big; i++)
    data[i] = (char)('a' + i % 23);
  req(up, "POST", "/echo", "hello world", 11, 0, &r);
  cr_assert_eq(r.code, 200);
  cr_assert_str_eq(r.body.p, "hello world");
  resp_free(&r);
  /* Large enough for curl to send "Expect: 100-continue". */
  req(up, "PUT", "/echo?status=201", data, big, 0, &r);
  cr_assert_eq(r.rc, CURLE_OK);
  cr_assert_eq(r.code, 201);
  cr_assert_eq(r.body.n, big);
  cr_assert_eq(memcmp(r.body.p, data, big), 0);
  resp_free(&r);
  /* A chunked request body, echoed with chunked framing. */
  h = curl_easy_init();
  u.p = data;
  u.left = 100000;
  hdrs = curl_slist_append(hdrs, "Transfer-Encoding: chunked");
  curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
  curl_easy_setopt(h, CURLOPT_READFUNCTION, on_upload);
  curl_easy_setopt(h, CURLOPT_READDATA, &u);
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
  req_on(h, up, "POST", "/echo?chunked=1&chunk=4096", NULL, 0, 0, &r);
  cr_assert_eq(r.rc, CURLE_OK, "%s", curl_easy_strerror(r.rc));
  cr_assert(has_header(&r, "Transfer-Encoding: chunked"));
  cr_assert_eq(r.body.n, 100000);
  cr_assert_eq(memcmp(r.body.p, data, 100000), 0);
  resp_free(&r);
  /* Not /echo: the body is read and dropped. */
  req(up, "POST", "/echo2", "hello", 5, 0, &r);
  cr_assert_str_eq(r.body.p, "ok\n");
  resp_free(&r);
  curl_easy_cleanup(h);
  curl_slist_free_all(hdrs);
  free(data);
  fy_up_close(up, NULL, NULL);
}

Test(upstream, echo_over_the_limit_is_413) {
  fy_up_t *up = spawn();
  static const char head[] = "POST /echo HTTP/1.1\r\nHost: x\r\n"
                             "Content-Length: 9000000\r\n\r\n";
  buf_t b = {NULL, 0};
  int eof;
  int fd = raw_connect(up);

  raw_send(fd, head, sizeof(head) - 1);
  raw_read_all(fd, &b, &eof);
  cr_assert_not_null(b.p);
  cr_assert_eq(strncmp(b.p, "HTTP/1.1 413 ", 13), 0, "%s", b.p);
  cr_assert(strstr(b.p, "Connection: close\r\n") != NULL);
  cr_assert(eof);
  close(fd);
  free(b.p);
  fy_up_close(up, NULL, NULL);
}

Test(upstream, expect_100_continue_is_answered) {
  fy_up_t *up = spawn();
  static const char head[] = "POST /echo HTTP/1.1\r\nHost: x\r\n"
                             "Content-Length: 5\r\nExpect: 100-Continue\r\n"
                             "Connection: close\r\n\r\n";
  buf_t b = {NULL, 0};
  int eof;
  int fd = raw_connect(up);

  raw_send(fd, head, sizeof(head) - 1);
  cr_assert(raw_read_until(fd, &b, "\r\n\r\n"));
  cr_assert_str_eq(b.p, "HTTP/1.1 100 Continue\r\n\r\n");
  raw_send(fd, "abcde", 5);
  raw_read_all(fd, &b, &eof);
  cr_assert(eof);
  cr_assert(strstr(b.p, "HTTP/1.1 200 OK\r\n") != NULL);
  cr_assert_eq(strcmp(b.p + b.n - 5, "abcde"), 0);
  close(fd);
  free(b.p);
  fy_up_close(up, NULL, NULL);
}

/* ---- actions ------------------------------------------------------------ */

Test(upstream, action_reset_is_a_receive_error) {
  fy_up_t *up = spawn();
  fy_up_stats_t st;
  resp_t r;

  get(up, "/x?action=reset", &r);
  /* curl sees ECONNRESET on its read: "Recv failure". */
  cr_assert(r.rc == CURLE_RECV_ERROR || r.rc == CURLE_GOT_NOTHING, "%s",
            curl_easy_strerror(r.rc));
  resp_free(&r);
  get(up, "/x?action=reset_mid_body&body=100000", &r);
  cr_assert(r.rc == CURLE_RECV_ERROR || r.rc == CURLE_PARTIAL_FILE, "%s",
            curl_easy_strerror(r.rc));
  cr_assert_leq(r.body.n, 50000);
  resp_free(&r);
  cr_assert(wait_open(up, 0));
  stats(up, &st);
  cr_assert_eq(st.actions, 2);
  cr_assert_eq(st.responses, 0);
  fy_up_close(up, NULL, NULL);
}

Test(upstream, action_stall_times_out_and_is_cleaned_up) {
  fy_up_t *up = spawn();
  resp_t r;

  req(up, NULL, "/x?action=stall", NULL, 0, 200, &r);
  cr_assert_eq(r.rc, CURLE_OPERATION_TIMEDOUT);
  cr_assert_geq(r.elapsed_ms, 200);
  cr_assert_eq(r.body.n, 0);
  resp_free(&r);
  req(up, NULL, "/x?action=stall_mid_body&body=100000", NULL, 0, 200, &r);
  cr_assert_eq(r.rc, CURLE_OPERATION_TIMEDOUT);
  cr_assert_eq(r.code, 200);
  cr_assert_leq(r.body.n, 50000);
  resp_free(&r);
  /* curl closed its side: the stalled connections go too. */
  cr_assert(wait_open(up, 0));
  fy_up_close(up, NULL, NULL);
}

Test(upstream, action_garbage_is_not_http) {
  fy_up_t *up = spawn();
  resp_t r;

  get(up, "/x?action=garbage", &r);
  /* curl 7.88 says "Received HTTP/0.9 when not allowed"
   * (CURLE_UNSUPPORTED_PROTOCOL); other versions may call it a weird
   * reply. */
  cr_assert(r.rc == CURLE_UNSUPPORTED_PROTOCOL ||
                r.rc == CURLE_WEIRD_SERVER_REPLY,
            "%s", curl_easy_strerror(r.rc));
  resp_free(&r);
  fy_up_close(up, NULL, NULL);
}

Test(upstream, action_truncated_is_a_partial_file) {
  fy_up_t *up = spawn();
  resp_t r;

  get(up, "/x?action=truncated", &r);
  cr_assert_eq(r.rc, CURLE_PARTIAL_FILE, "%s", curl_easy_strerror(r.rc));
  cr_assert_eq(r.body.n, 1);
  resp_free(&r);
  get(up, "/x?action=truncated&body=0", &r);
  cr_assert_eq(r.rc, CURLE_PARTIAL_FILE);
  resp_free(&r);
  get(up, "/x?action=truncated&body=10000&chunked=1&chunk=1000", &r);
  cr_assert_eq(r.rc, CURLE_PARTIAL_FILE, "%s", curl_easy_strerror(r.rc));
  cr_assert_eq(r.body.n, 5000);
  resp_free(&r);
  fy_up_close(up, NULL, NULL);
}

Test(upstream, action_huge_headers) {
  fy_up_t *up = spawn();
  resp_t r;

  /* 64 KiB of headers: curl accepts it (its limit is 300 KiB in all). */
  get(up, "/x?action=huge_headers", &r);
  cr_assert_eq(r.rc, CURLE_OK, "%s", curl_easy_strerror(r.rc));
  cr_assert_eq(r.code, 200);
  cr_assert_geq(r.header_size, 64 * 1024);
  cr_assert_str_eq(r.body.p, "ok\n");
  resp_free(&r);
  /* 1 MiB of headers: curl gives up, with a receive error. */
  get(up, "/x?action=huge_headers&huge_kb=1024", &r);
  cr_assert_neq(r.rc, CURLE_OK);
  cr_assert_eq(r.rc, CURLE_RECV_ERROR, "%s", curl_easy_strerror(r.rc));
  resp_free(&r);
  fy_up_close(up, NULL, NULL);
}

/* ---- connections -------------------------------------------------------- */

Test(upstream, keep_alive_reuses_the_connection) {
  fy_up_t *up = spawn();
  CURL *h = curl_easy_init();
  fy_up_stats_t st;
  resp_t r;

  req_on(h, up, NULL, "/k?body=10", NULL, 0, 0, &r);
  cr_assert_eq(r.connects, 1);
  resp_free(&r);
  req_on(h, up, NULL, "/k?chunked=1", NULL, 0, 0, &r);
  cr_assert_eq(r.code, 200);
  cr_assert_eq(r.connects, 0);
  resp_free(&r);
  req_on(h, up, "POST", "/k?status=503", "x", 1, 0, &r);
  cr_assert_eq(r.code, 503);
  cr_assert_eq(r.connects, 0);
  resp_free(&r);
  stats(up, &st);
  cr_assert_eq(st.connections, 1);
  cr_assert_eq(st.requests, 3);
  curl_easy_cleanup(h);
  fy_up_close(up, NULL, NULL);
}

Test(upstream, a_thousand_sequential_requests) {
  fy_up_t *up = spawn();
  CURL *h = curl_easy_init();
  fy_up_stats_t st;
  resp_t r;
  unsigned i;

  for (i = 0; i < 1000; i++) {
    req_on(h, up, NULL, i % 2 ? "/seq" : "/seq?status=500&body=10", NULL, 0,
           0, &r);
    cr_assert_eq(r.rc, CURLE_OK);
    cr_assert_eq(r.code, i % 2 ? 200 : 500);
    resp_free(&r);
  }
  /* Answers are counted when their write completes, which may be just
   * after curl has read them: the counters are exact once the connection
   * has closed. */
  curl_easy_cleanup(h);
  cr_assert(wait_open(up, 0));
  stats(up, &st);
  cr_assert_eq(st.connections, 1);
  cr_assert_eq(st.requests, 1000);
  cr_assert_eq(st.responses, 1000);
  cr_assert_eq(st.status_2xx, 500);
  cr_assert_eq(st.status_5xx, 500);
  cr_assert_eq(st.bytes_out,
               500 * strlen("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                            "Content-Length: 3\r\n\r\nok\n") +
                   500 * strlen("HTTP/1.1 500 Internal Server Error\r\n"
                                "Content-Type: text/plain\r\n"
                                "Content-Length: 10\r\n\r\nok\nok\nok\no"));
  fy_up_close(up, NULL, NULL);
}

/* Raises the soft descriptor limit to what |need| takes; 0 if it cannot. */
static int enough_fds(rlim_t need) {
  struct rlimit rl;

  if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
    return 0;
  if (rl.rlim_cur >= need)
    return 1;
  if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need)
    return 0;
  rl.rlim_cur = need;
  return setrlimit(RLIMIT_NOFILE, &rl) == 0;
}

/* Runs |n| concurrent GETs of |target| through one multi handle and
 * returns how many ended with a 200.  With |stop_at| > 0 it stops once the
 * server has parsed that many requests in all, snapshots the server's
 * counters into |st| and drops the transfers still running. */
static unsigned multi_get(fy_up_t *up, const char *target, unsigned n,
                          uint64_t stop_at, fy_up_stats_t *st) {
  CURLM *m = curl_multi_init();
  CURL **hs = calloc(n, sizeof(*hs));
  char url[128];
  char base[64];
  int running = 1;
  unsigned ok = 0;
  unsigned i;
  CURLMsg *msg;
  int left;

  cr_assert_not_null(m);
  cr_assert_not_null(hs);
  snprintf(url, sizeof(url), "%s%s", fy_up_base_url(up, base, sizeof(base)),
           target);
  for (i = 0; i < n; i++) {
    hs[i] = curl_easy_init();
    curl_easy_setopt(hs[i], CURLOPT_URL, url);
    curl_easy_setopt(hs[i], CURLOPT_NOPROXY, "*");
    curl_easy_setopt(hs[i], CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(hs[i], CURLOPT_WRITEFUNCTION, on_sink);
    curl_easy_setopt(hs[i], CURLOPT_TIMEOUT_MS, 30000L);
    cr_assert_eq(curl_multi_add_handle(m, hs[i]), CURLM_OK);
  }
  while (running > 0) {
    cr_assert_eq(curl_multi_perform(m, &running), CURLM_OK);
    if (stop_at > 0) {
      fy_up_stats(up, st);
      if (st->requests >= stop_at)
        break;
    }
    if (running > 0)
      cr_assert_eq(curl_multi_poll(m, NULL, 0, 10, NULL), CURLM_OK);
  }
  while ((msg = curl_multi_info_read(m, &left)) != NULL) {
    long code = 0;

    if (msg->msg != CURLMSG_DONE)
      continue;
    curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &code);
    ok += msg->data.result == CURLE_OK && code == 200;
  }
  for (i = 0; i < n; i++) {
    curl_multi_remove_handle(m, hs[i]);
    curl_easy_cleanup(hs[i]);
  }
  curl_multi_cleanup(m);
  free(hs);
  return ok;
}

Test(upstream, a_thousand_concurrent_connections, .timeout = 60) {
  enum { N = 1000 };
  fy_up_t *up;
  fy_up_stats_t st;

  /* Both ends live in this process: two descriptors per connection. */
  if (!enough_fds(2 * N + 64))
    cr_skip_test("RLIMIT_NOFILE below %d", 2 * N + 64);
  up = spawn();
  /* A thousand at once, each answered after 300 ms: all succeed. */
  cr_assert_eq(multi_get(up, "/many?latency=300", N, 0, NULL), N);
  cr_assert(wait_open(up, 0));
  fy_up_stats(up, &st);
  cr_assert_eq(st.requests, N);
  cr_assert_eq(st.status_2xx, N);
  /* A thousand stalled requests each hold their connection: once the
   * server has parsed them all, a thousand connections are open at once
   * (no timing involved). */
  cr_assert_eq(multi_get(up, "/many?action=stall", N, 2 * N, &st), 0);
  cr_assert_eq(st.requests, 2 * N);
  cr_assert_geq(st.open, N);
  cr_assert_geq(st.peak_open, N);
  cr_assert(wait_open(up, 0));
  fy_up_close(up, NULL, NULL);
}

Test(upstream, a_client_gone_during_a_wait_is_closed_at_once) {
  fy_up_t *up = spawn();
  static const char *const waits[] = {
      "/w?latency=600000", "/w?chunked=1&body=10&chunk=1&chunk_delay=600000",
      "/w?body=10&chunk=1&chunk_delay=600000",
      "/w?action=stall_mid_body&body=100"};
  resp_t r;
  size_t i;

  for (i = 0; i < sizeof(waits) / sizeof(waits[0]); i++) {
    req(up, NULL, waits[i], NULL, 0, 100, &r);
    cr_assert_eq(r.rc, CURLE_OPERATION_TIMEDOUT, "%s", waits[i]);
    resp_free(&r);
    /* Well before the ten minutes. */
    cr_assert(wait_open(up, 0), "%s", waits[i]);
  }
  fy_up_close(up, NULL, NULL);
}

Test(upstream, close_with_connections_open) {
  fy_up_t *up = spawn();
  static const char stall[] = "GET /?action=stall HTTP/1.1\r\nHost: x\r\n\r\n";
  static const char slow[] = "GET /?latency=60000 HTTP/1.1\r\nHost: x\r\n\r\n";
  static const char part[] = "GET /?status=200 HTTP/1.1\r\nHo";
  int fds[4];
  buf_t b = {NULL, 0};
  int eof;
  int i;

  fds[0] = raw_connect(up);
  fds[1] = raw_connect(up);
  fds[2] = raw_connect(up);
  fds[3] = raw_connect(up);   /* idle */
  raw_send(fds[0], stall, sizeof(stall) - 1);
  raw_send(fds[1], slow, sizeof(slow) - 1);
  raw_send(fds[2], part, sizeof(part) - 1);
  cr_assert(wait_open(up, 4));
  fy_up_close(up, NULL, NULL);
  for (i = 0; i < 4; i++) {
    raw_read_all(fds[i], &b, &eof);
    cr_assert(eof, "connection %d still open", i);
    cr_assert_eq(b.n, 0);
    close(fds[i]);
  }
}

/* ---- robustness (raw bytes) --------------------------------------------- */

static void raw_exchange(fy_up_t *up, const char *data, size_t n, buf_t *b,
                         int *eof) {
  int fd = raw_connect(up);

  raw_send(fd, data, n);
  shutdown(fd, SHUT_WR);   /* the server answers what it got, then closes */
  raw_read_all(fd, b, eof);
  close(fd);
}

Test(upstream, malformed_request_gets_400_and_close) {
  fy_up_t *up = spawn();
  static const char *const bad[] = {
      "NOT HTTP AT ALL\r\n\r\n",
      "GET / HTTP/9.9\r\n\r\n",   /* 505, see below */
      "GET / HTTP/1.1\r\nBad Header\r\n\r\n",
      "GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n",
      "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
      "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
  };
  fy_up_stats_t st;
  size_t i;

  for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    buf_t b = {NULL, 0};
    int eof;

    raw_exchange(up, bad[i], strlen(bad[i]), &b, &eof);
    cr_assert_not_null(b.p, "case %zu", i);
    cr_assert_eq(strncmp(b.p, i == 1 ? "HTTP/1.1 505 " : "HTTP/1.1 400 ", 13),
                 0, "case %zu: %s", i, b.p);
    cr_assert(strstr(b.p, "Connection: close\r\n") != NULL);
    cr_assert(eof);
    free(b.p);
  }
  stats(up, &st);
  cr_assert_eq(st.bad_requests, i);
  cr_assert_eq(st.status_4xx, i - 1);
  cr_assert_eq(st.status_5xx, 1);
  fy_up_close(up, NULL, NULL);
}

Test(upstream, long_target_is_414_and_huge_request_headers_431) {
  fy_up_t *up = spawn();
  size_t n = 200000;
  char *req_buf = malloc(n + 64);
  buf_t b = {NULL, 0};
  int eof;
  resp_t r;

  cr_assert_not_null(req_buf);
  memcpy(req_buf, "GET /", 5);
  memset(req_buf + 5, 'a', 5000);
  strcpy(req_buf + 5005, " HTTP/1.1\r\n\r\n");
  raw_exchange(up, req_buf, strlen(req_buf), &b, &eof);
  cr_assert_eq(strncmp(b.p, "HTTP/1.1 414 ", 13), 0, "%s", b.p);
  cr_assert(eof);
  free(b.p);
  b.p = NULL;
  b.n = 0;

  strcpy(req_buf, "GET / HTTP/1.1\r\nX-Big: ");
  memset(req_buf + 23, 'b', n);
  strcpy(req_buf + 23 + n, "\r\n\r\n");
  raw_exchange(up, req_buf, strlen(req_buf), &b, &eof);
  cr_assert_eq(strncmp(b.p, "HTTP/1.1 431 ", 13), 0, "%s", b.p);
  cr_assert(eof);
  free(b.p);

  /* Through curl too: a target just under the bound still works. */
  req_buf[0] = '/';
  memset(req_buf + 1, 'c', 4000);
  req_buf[4001] = '\0';
  get(up, req_buf, &r);
  cr_assert_eq(r.code, 200);
  resp_free(&r);
  free(req_buf);
  fy_up_close(up, NULL, NULL);
}

Test(upstream, pipelined_requests_are_answered_in_order) {
  fy_up_t *up = spawn();
  static const char two[] =
      "GET /?status=201&body=300000 HTTP/1.1\r\nHost: x\r\n\r\n"
      "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nabcd"
      "GET /?status=202 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  buf_t b = {NULL, 0};
  int eof;
  char *first;
  char *second;
  char *third;

  raw_exchange(up, two, sizeof(two) - 1, &b, &eof);
  cr_assert(eof);
  first = strstr(b.p, "HTTP/1.1 201 ");
  second = strstr(b.p, "HTTP/1.1 200 ");
  third = strstr(b.p, "HTTP/1.1 202 ");
  cr_assert(first != NULL && second != NULL && third != NULL, "%s", b.p);
  cr_assert(first < second && second < third);
  cr_assert(strstr(second, "\r\n\r\nabcd") != NULL);
  free(b.p);
  fy_up_close(up, NULL, NULL);
}

Test(upstream, http_1_0_closes_unless_keep_alive) {
  fy_up_t *up = spawn();
  static const char plain[] = "GET /?body=5 HTTP/1.0\r\n\r\n";
  static const char ka[] =
      "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
  buf_t b = {NULL, 0};
  int eof;
  int fd;

  raw_exchange(up, plain, sizeof(plain) - 1, &b, &eof);
  cr_assert(eof);
  cr_assert(strstr(b.p, "Connection: close\r\n") != NULL);
  cr_assert(strstr(b.p, "Content-Length: 5\r\n") != NULL);
  cr_assert_str_eq(b.p + b.n - 9, "\r\n\r\nok\nok", "%s", b.p);
  free(b.p);
  b.p = NULL;
  b.n = 0;

  fd = raw_connect(up);
  raw_send(fd, ka, sizeof(ka) - 1);
  cr_assert(raw_read_until(fd, &b, "\r\n\r\nok\n"));
  cr_assert(strstr(b.p, "Connection: keep-alive\r\n") != NULL);
  /* Still open: a second request on it is answered. */
  raw_send(fd, ka, sizeof(ka) - 1);
  cr_assert(raw_read_until(fd, &b, "ok\nHTTP/1.1 200 OK"));
  close(fd);
  free(b.p);
  fy_up_close(up, NULL, NULL);
}

Test(upstream, random_bytes_do_not_crash_the_server) {
  fy_up_t *up = spawn();
  uint64_t x = 0x1234567;
  char junk[8192];
  resp_t r;
  int i;
  size_t j;

  for (i = 0; i < 40; i++) {
    buf_t b = {NULL, 0};
    int eof;

    for (j = 0; j < sizeof(junk); j++) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      junk[j] = (char)x;
    }
    /* Some cases start like a request, the rest is noise. */
    if (i % 2 == 0)
      memcpy(junk, "GET /", 5);
    if (i % 4 == 0)
      memcpy(junk, "POST /echo HTTP/1.1\r\nContent-Length: 99\r\n", 42);
    raw_exchange(up, junk, (size_t)(i * 197) % sizeof(junk) + 1, &b, &eof);
    free(b.p);
  }
  get(up, "/still-alive", &r);
  cr_assert_eq(r.code, 200);
  resp_free(&r);
  cr_assert(wait_open(up, 0));
  fy_up_close(up, NULL, NULL);
}

/* ---- routes and stats --------------------------------------------------- */

Test(upstream, routes_script_a_path_and_the_query_overrides) {
  fy_up_t *up = spawn();
  char longpath[300];
  resp_t r;
  int i;

  cr_assert_eq(fy_up_route(up, "/api", "status=503&retry_after=7"), 0);
  get(up, "/api", &r);
  cr_assert_eq(r.code, 503);
  cr_assert(has_header(&r, "Retry-After: 7\r\n"));
  resp_free(&r);
  get(up, "/api?status=200", &r);
  cr_assert_eq(r.code, 200);
  cr_assert(has_header(&r, "Retry-After: 7\r\n"));
  resp_free(&r);
  get(up, "/api/other", &r);
  cr_assert_eq(r.code, 200);
  resp_free(&r);
  /* Replace, then remove. */
  cr_assert_eq(fy_up_route(up, "/api", "?status=418"), 0);
  get(up, "/api", &r);
  cr_assert_eq(r.code, 418);
  resp_free(&r);
  cr_assert_eq(fy_up_route(up, "/api", NULL), 0);
  get(up, "/api", &r);
  cr_assert_eq(r.code, 200);
  resp_free(&r);
  cr_assert_eq(fy_up_route(up, "/api", NULL), 0, "removing twice is fine");

  cr_assert_eq(fy_up_route(NULL, "/a", ""), UV_EINVAL);
  cr_assert_eq(fy_up_route(up, NULL, ""), UV_EINVAL);
  cr_assert_eq(fy_up_route(up, "api", ""), UV_EINVAL);
  cr_assert_eq(fy_up_route(up, "/a?b", ""), UV_EINVAL);
  cr_assert_eq(fy_up_route(up, "/a", "status=abc"), UV_EINVAL);
  memset(longpath, 'p', sizeof(longpath));
  longpath[0] = '/';
  longpath[sizeof(longpath) - 1] = '\0';
  cr_assert_eq(fy_up_route(up, longpath, ""), UV_EINVAL);
  for (i = 0; i < 64; i++) {
    char p[16];
    snprintf(p, sizeof(p), "/r%d", i);
    cr_assert_eq(fy_up_route(up, p, "status=201"), 0);
  }
  cr_assert_eq(fy_up_route(up, "/one-too-many", "status=201"), UV_ENOBUFS);
  get(up, "/r63", &r);
  cr_assert_eq(r.code, 201);
  resp_free(&r);
  fy_up_close(up, NULL, NULL);
}

Test(upstream, stats_count_what_happened) {
  fy_up_t *up = spawn();
  fy_up_stats_t st;
  resp_t r;

  get(up, "/", &r);
  resp_free(&r);
  get(up, "/?status=404", &r);
  resp_free(&r);
  get(up, "/?status=502", &r);
  resp_free(&r);
  get(up, "/?action=truncated", &r);
  resp_free(&r);
  cr_assert(wait_open(up, 0));   /* then the counters are final */
  stats(up, &st);
  cr_assert_eq(st.connections, 4);
  cr_assert_eq(st.requests, 4);
  cr_assert_eq(st.responses, 3);
  cr_assert_eq(st.status_2xx, 1);
  cr_assert_eq(st.status_4xx, 1);
  cr_assert_eq(st.status_5xx, 1);
  cr_assert_eq(st.actions, 1);
  cr_assert_eq(st.bad_requests, 0);
  cr_assert_geq(st.bytes_out, 3 * 3 + 1);
  cr_assert(wait_open(up, 0));
  fy_up_close(up, NULL, NULL);
}
