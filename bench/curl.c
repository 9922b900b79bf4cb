/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * HTTP requests per second on loopback: libcurl alone vs the adapter.
 *
 * curl.raw.rps: a CURLM driven from a uv loop by a minimal hand-written
 *   multi-socket driver (a uv_poll_t per socket, one uv_timer_t, no 1 ms
 *   clamp, completions drained after every socket_action), CONCURRENCY
 *   keep-alive easy handles, each re-added as soon as it completes.
 * curl.raw_timeout.rps: the same raw driver with CURLOPT_TIMEOUT_MS set on
 *   every transfer, as the adapter sets each attempt's remaining time (the
 *   default per-try timeout, 10 s): curl's own timeout bookkeeping, which
 *   a raw client that sets a timeout pays as well.  Information only.
 * curl.raw_keep.rps: the raw driver keeping each kept-alive connection's
 *   poll while it idles in curl's pool, as the adapter does: the
 *   pipeline's cost over a raw driver as good as the adapter's own.
 *   Information only.
 * curl.pipeline.rps: the same load through the adapter (its own CURLM on
 *   the same loop) and fortify's default HTTP pipeline
 *   (fy_curl_pipeline_new: retry -> per-host breaker -> per-try timeout),
 *   CONCURRENCY requests each started again from its own callback.
 *
 * Both talk to one test upstream (tests/upstream) on its own thread,
 * answering "200 ok" with a 3-byte body.  The two are measured in turns,
 * ROUNDS times each, WINDOW_NS per measurement after WARMUP_NS of warm-up,
 * so machine noise hits both; the best round of each is reported:
 *
 *   {"bench": "curl.raw.rps", "ns_per_op": 1e9/rps, "allocs_per_op": ...,
 *    "rps": ..., "cpu_ns_per_op": ..., ...}
 *   {"bench": "curl.pipeline.rps", ..., "rps": ..., "ratio": pipe/raw,
 *    "cpu_ratio": raw cpu_ns_per_op / pipeline cpu_ns_per_op}
 *
 * allocs_per_op counts the fortify allocator hook (the adapter allocates
 * through it; curl and libuv do not), over the measured window.
 * cpu_ns_per_op is the loop thread's CPU time per request (the lowest of
 * the rounds): far less sensitive to the rest of a shared machine than
 * rps, it is what a request costs the client; cpu_ratio is what the ratio
 * would be if the client's thread were the bottleneck.  Target (issue 4):
 * curl.pipeline.rps >= 0.95 x curl.raw.rps.
 *
 * BENCH_CURL_CONCURRENCY, BENCH_CURL_ROUNDS and BENCH_CURL_WINDOW_MS
 * override the defaults (handy under perf record). */
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "bench.h"
#include "fortify/curl.h"
#include "upstream.h"

#define CONCURRENCY_DEFAULT 32
#define CONCURRENCY_MAX 1024
#define ROUNDS_DEFAULT 6
#define ROUNDS_MAX 20
#define WINDOW_MS_DEFAULT 1000
#define WARMUP_NS 150000000ull
#define RAW_TIMEOUT_MS 10000L /* fy_curl_pipeline_opts_init's per-try */

static uv_loop_t loop;
static char url[96];
static unsigned concurrency = CONCURRENCY_DEFAULT;
static unsigned rounds = ROUNDS_DEFAULT;
static uint64_t window_ns = WINDOW_MS_DEFAULT * 1000000ull;

/* ---- the measurement window, shared by both clients -------------------- */

typedef struct window_s {
  uint64_t start_ns, end_ns; /* the measured window */
  uint64_t count;            /* completions inside it */
  uint64_t errors;           /* failed requests (any time) */
  uint64_t allocs0, allocs1; /* allocator count at its edges */
  uint64_t cpu0, cpu1;       /* this thread's CPU time at its edges, ns */
  int in, over;              /* inside it / past its end */
} window_t;

static window_t win;

/* CPU time of the loop's thread: unlike rps, barely moved by what the rest
 * of a shared machine does, so it tells what a request costs the client. */
static uint64_t thread_cpu_ns(void) {
  struct timespec ts;
  if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0)
    return 0;
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void window_open(void) {
  memset(&win, 0, sizeof(win));
  win.start_ns = bench_now_ns() + WARMUP_NS;
  win.end_ns = win.start_ns + window_ns;
}

/* One completion; returns 1 while requests should go on. */
static int window_count(int failed) {
  uint64_t now = bench_now_ns();
  if (failed)
    win.errors++;
  if (win.over)
    return 0;
  if (now >= win.end_ns) {
    win.allocs1 = bench_allocs();
    win.cpu1 = thread_cpu_ns();
    win.over = 1;
    return 0;
  }
  if (now >= win.start_ns) {
    if (!win.in) {
      win.in = 1;
      win.allocs0 = bench_allocs();
      win.cpu0 = thread_cpu_ns();
    }
    win.count++;
  }
  return 1;
}

/* One measurement. */
typedef struct sample_s {
  double rps;
  double allocs; /* fortify allocations per request */
  double cpu_ns; /* the loop thread's CPU time per request */
} sample_t;

static void window_close(sample_t *out) {
  BENCH_CHECK(win.errors == 0);
  BENCH_CHECK(win.over);
  out->rps = (double)win.count * 1e9 / (double)(win.end_ns - win.start_ns);
  out->allocs = win.count > 0 ? (double)(win.allocs1 - win.allocs0) /
                                    (double)win.count
                              : 0.0;
  out->cpu_ns = win.count > 0 ? (double)(win.cpu1 - win.cpu0) /
                                    (double)win.count
                              : 0.0;
}


/* ---- raw: a minimal multi-socket driver --------------------------------- */

/* With |keep|, the adapter's socket handling (docs/curl.md, "Kept-alive
 * connections keep their poll"), the same system calls by a simpler rule
 * that suits this bench, whose connects all succeed: a socket opened
 * through the open callback is kept until the close callback, a pooled
 * connection's
 * reading poll stays started, unreferenced, and a mask that does not
 * change is not applied again.  curl.raw_keep.rps: what the adapter's
 * pipeline costs over a raw driver as good as its own.  Without |keep|, a
 * poll lives from one CURL_POLL_REMOVE to the next, as in curl's own
 * multi-uv example. */
#define RAW_KEEP_FDS 4096

typedef struct raw_s raw_t;

typedef struct raw_sock_s {
  uv_poll_t poll;
  raw_t *raw;
  curl_socket_t fd;
  int kept;     /* a connection socket with a lasting poll */
  int watching; /* the mask the poll was started with, 0 when stopped */
  int idle;     /* pooled: left reading, unreferenced */
} raw_sock_t;

struct raw_s {
  CURLM *multi;
  uv_timer_t timer;
  CURL *easy[CONCURRENCY_MAX];
  unsigned inflight;
  int socks;
  int keep;
  raw_sock_t *kept[RAW_KEEP_FDS]; /* by fd, with |keep| */
};

static raw_t raw_plain, raw_keep;

static size_t raw_write(char *ptr, size_t size, size_t nmemb, void *ud) {
  (void)ptr;
  (void)ud;
  return size * nmemb;
}

static void raw_drain(raw_t *r) {
  CURLMsg *msg;
  CURLcode result;
  CURL *easy;
  int left;
  while ((msg = curl_multi_info_read(r->multi, &left)) != NULL) {
    if (msg->msg != CURLMSG_DONE)
      continue;
    easy = msg->easy_handle;
    result = msg->data.result;
    curl_multi_remove_handle(r->multi, easy);
    if (window_count(result != CURLE_OK))
      curl_multi_add_handle(r->multi, easy);
    else
      r->inflight--;
  }
}

static void raw_sock_stop(raw_sock_t *sk) {
  if (sk->idle)
    uv_ref((uv_handle_t *)&sk->poll);
  sk->idle = 0;
  sk->watching = 0;
  uv_poll_stop(&sk->poll);
}

static void raw_on_poll(uv_poll_t *h, int status, int events) {
  raw_sock_t *sk = fy_container_of(h, raw_sock_t, poll);
  raw_t *r = sk->raw;
  int flags = 0, running;
  if (sk->idle) { /* a pooled connection closed by the server */
    raw_sock_stop(sk);
    return;
  }
  if (status < 0)
    flags = CURL_CSELECT_ERR;
  else {
    if (events & UV_READABLE)
      flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
      flags |= CURL_CSELECT_OUT;
  }
  curl_multi_socket_action(r->multi, sk->fd, flags, &running);
  raw_drain(r);
}

static void raw_on_sock_closed(uv_handle_t *h) {
  raw_sock_t *sk = fy_container_of((uv_poll_t *)h, raw_sock_t, poll);
  sk->raw->socks--;
  free(sk);
}

static raw_sock_t *raw_sock_new(raw_t *r, curl_socket_t s) {
  raw_sock_t *sk = malloc(sizeof(*sk));
  if (sk == NULL || uv_poll_init_socket(&loop, &sk->poll, s) != 0) {
    free(sk);
    return NULL;
  }
  sk->raw = r;
  sk->fd = s;
  sk->kept = 0;
  sk->watching = 0;
  sk->idle = 0;
  r->socks++;
  return sk;
}

static void raw_sock_close(raw_sock_t *sk) {
  if (sk->kept)
    sk->raw->kept[sk->fd] = NULL;
  uv_poll_stop(&sk->poll);
  uv_close((uv_handle_t *)&sk->poll, raw_on_sock_closed);
}

static int raw_on_socket(CURL *easy, curl_socket_t s, int what, void *userp,
                         void *socketp) {
  raw_t *r = userp;
  raw_sock_t *sk = socketp;
  int events = 0;
  (void)easy;
  if (what == CURL_POLL_REMOVE) {
    /* As the adapter's park(): a pooled connection's reading poll stays,
     * unreferenced; one waiting to write is stopped. */
    if (sk != NULL && sk->kept && sk->watching == UV_READABLE &&
        uv_is_active((uv_handle_t *)&sk->poll)) {
      if (!sk->idle)
        uv_unref((uv_handle_t *)&sk->poll);
      sk->idle = 1;
    } else if (sk != NULL && sk->kept) {
      raw_sock_stop(sk);
    } else if (sk != NULL) {
      raw_sock_close(sk);
    }
    return 0;
  }
  if (sk == NULL) {
    if (r->keep && s < RAW_KEEP_FDS)
      sk = r->kept[s];
    if (sk == NULL && (sk = raw_sock_new(r, s)) == NULL)
      return -1;
    curl_multi_assign(r->multi, s, sk);
  }
  if (what & CURL_POLL_IN)
    events |= UV_READABLE;
  if (what & CURL_POLL_OUT)
    events |= UV_WRITABLE;
  if (sk->idle)
    uv_ref((uv_handle_t *)&sk->poll);
  sk->idle = 0;
  if (r->keep && sk->watching == events &&
      uv_is_active((uv_handle_t *)&sk->poll))
    return 0; /* unchanged: no epoll_ctl */
  sk->watching = events;
  return uv_poll_start(&sk->poll, events, raw_on_poll) == 0 ? 0 : -1;
}

static curl_socket_t raw_open(void *ud, curlsocktype purpose,
                              struct curl_sockaddr *addr) {
  raw_t *r = ud;
  curl_socket_t s = socket(addr->family, addr->socktype, addr->protocol);
  raw_sock_t *sk;
  if (s == CURL_SOCKET_BAD || purpose != CURLSOCKTYPE_IPCXN ||
      s >= RAW_KEEP_FDS || (sk = raw_sock_new(r, s)) == NULL)
    return s;
  sk->kept = 1;
  r->kept[s] = sk;
  return s;
}

static int raw_close(void *ud, curl_socket_t s) {
  raw_t *r = ud;
  if (s < RAW_KEEP_FDS && r->kept[s] != NULL)
    raw_sock_close(r->kept[s]);
  return close(s) == 0 ? 0 : 1;
}

static void raw_on_timeout(uv_timer_t *t) {
  raw_t *r = fy_container_of(t, raw_t, timer);
  int running;
  curl_multi_socket_action(r->multi, CURL_SOCKET_TIMEOUT, 0, &running);
  raw_drain(r);
}

/* No clamp: 0 fires on the next turn of the loop, as in the adapter. */
static int raw_on_timer(CURLM *multi, long timeout_ms, void *userp) {
  raw_t *r = userp;
  (void)multi;
  if (timeout_ms < 0)
    uv_timer_stop(&r->timer);
  else
    uv_timer_start(&r->timer, raw_on_timeout, (uint64_t)timeout_ms, 0);
  return 0;
}

static void raw_setup(raw_t *r, int keep) {
  unsigned i;
  r->keep = keep;
  r->multi = curl_multi_init();
  BENCH_CHECK(r->multi != NULL);
  BENCH_CHECK(uv_timer_init(&loop, &r->timer) == 0);
  curl_multi_setopt(r->multi, CURLMOPT_SOCKETFUNCTION, raw_on_socket);
  curl_multi_setopt(r->multi, CURLMOPT_SOCKETDATA, r);
  curl_multi_setopt(r->multi, CURLMOPT_TIMERFUNCTION, raw_on_timer);
  curl_multi_setopt(r->multi, CURLMOPT_TIMERDATA, r);
  for (i = 0; i < concurrency; i++) {
    r->easy[i] = curl_easy_init();
    BENCH_CHECK(r->easy[i] != NULL);
    curl_easy_setopt(r->easy[i], CURLOPT_URL, url);
    curl_easy_setopt(r->easy[i], CURLOPT_WRITEFUNCTION, raw_write);
    curl_easy_setopt(r->easy[i], CURLOPT_NOSIGNAL, 1L);
    if (keep) {
      curl_easy_setopt(r->easy[i], CURLOPT_OPENSOCKETFUNCTION, raw_open);
      curl_easy_setopt(r->easy[i], CURLOPT_OPENSOCKETDATA, r);
      curl_easy_setopt(r->easy[i], CURLOPT_CLOSESOCKETFUNCTION, raw_close);
      curl_easy_setopt(r->easy[i], CURLOPT_CLOSESOCKETDATA, r);
    }
  }
}

/* |timeout_ms| 0: no transfer timeout. */
static void raw_round(raw_t *r, sample_t *out, long timeout_ms) {
  unsigned i;
  for (i = 0; i < concurrency; i++)
    curl_easy_setopt(r->easy[i], CURLOPT_TIMEOUT_MS, timeout_ms);
  window_open();
  for (i = 0; i < concurrency; i++)
    BENCH_CHECK(curl_multi_add_handle(r->multi, r->easy[i]) == CURLM_OK);
  r->inflight = concurrency;
  while (r->inflight > 0)
    uv_run(&loop, UV_RUN_ONCE);
  window_close(out);
}

static void raw_on_timer_closed(uv_handle_t *h) { (void)h; }

static void raw_teardown(raw_t *r) {
  unsigned i;
  curl_multi_cleanup(r->multi); /* closes the pooled connections */
  for (i = 0; i < concurrency; i++)
    curl_easy_cleanup(r->easy[i]);
  uv_close((uv_handle_t *)&r->timer, raw_on_timer_closed);
  uv_run(&loop, UV_RUN_DEFAULT);
  BENCH_CHECK(r->socks == 0);
}

/* ---- through the adapter and the default pipeline ----------------------- */

static fy_ctx_t *ctx;
static fy_curl_t *cu;
static fy_curl_pipeline_t *http;
static fy_curl_req_t reqs[CONCURRENCY_MAX];
static unsigned pipe_inflight;
static int closes;

static void on_closed(void *obj, void *user_data) {
  (void)obj;
  (void)user_data;
  closes--;
}

static void pipe_on_done(fy_call_t *call, int status) {
  fy_curl_req_t *req = fy_container_of(call, fy_curl_req_t, call);
  if (window_count(status != 0) &&
      fy_curl_start(req, fy_curl_pipeline_get(http), pipe_on_done) == 0)
    return;
  pipe_inflight--;
}

static void pipe_setup(void) {
  unsigned i;
  BENCH_CHECK(fy_ctx_new(&loop, NULL, &ctx) == 0);
  BENCH_CHECK(fy_curl_new(ctx, NULL, &cu) == 0);
  BENCH_CHECK(fy_curl_pipeline_new(ctx, NULL, &http) == 0);
  for (i = 0; i < concurrency; i++) {
    BENCH_CHECK(fy_curl_req_init(cu, &reqs[i]) == 0);
    BENCH_CHECK(fy_curl_req_set_url(&reqs[i], url) == 0);
  }
}

static void pipe_round(sample_t *out) {
  unsigned i;
  window_open();
  for (i = 0; i < concurrency; i++)
    BENCH_CHECK(fy_curl_start(&reqs[i], fy_curl_pipeline_get(http),
                              pipe_on_done) == 0);
  pipe_inflight = concurrency;
  while (pipe_inflight > 0)
    uv_run(&loop, UV_RUN_ONCE);
  window_close(out);
}

static void pipe_teardown(void) {
  unsigned i;
  for (i = 0; i < concurrency; i++)
    BENCH_CHECK(fy_curl_req_cleanup(&reqs[i]) == 0);
  closes = 3;
  BENCH_CHECK(fy_curl_pipeline_close(http, on_closed, NULL) == 0);
  BENCH_CHECK(fy_curl_close(cu, on_closed, NULL) == 0);
  BENCH_CHECK(fy_ctx_close(ctx, on_closed, NULL) == 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  BENCH_CHECK(closes == 0);
}

/* ---- main --------------------------------------------------------------- */

static unsigned env_uint(const char *name, unsigned def, unsigned lo,
                         unsigned hi) {
  const char *s = getenv(name);
  char *end;
  unsigned long v;
  if (s == NULL || *s == '\0')
    return def;
  v = strtoul(s, &end, 10);
  if (*end != '\0' || v < lo || v > hi)
    bench_die("bad BENCH_CURL_* value");
  return (unsigned)v;
}

static int cmp_rps(const void *a, const void *b) {
  double x = ((const sample_t *)a)->rps, y = ((const sample_t *)b)->rps;
  return x > y ? -1 : x < y; /* best first */
}

/* The lowest CPU time per request of the rounds: the least disturbed. */
static double best_cpu(const sample_t *v, int n) {
  double cpu = 0;
  int i;
  for (i = 0; i < n; i++)
    if (cpu == 0 || (v[i].cpu_ns > 0 && v[i].cpu_ns < cpu))
      cpu = v[i].cpu_ns;
  return cpu;
}

/* Sorts |v|: the best round first.  With |raw| (the raw rounds), the line
 * also gets "ratio" (best rps over best rps) and "cpu_ratio" (raw CPU per
 * request over ours: what the ratio would be if the loop thread were the
 * bottleneck, which on a shared machine it often is not). */
static void print_line(const char *name, sample_t *v, int n,
                       const sample_t *raw, int nraw) {
  bench_result_t r;
  double cpu = best_cpu(v, n);
  qsort(v, (size_t)n, sizeof(*v), cmp_rps);
  memset(&r, 0, sizeof(r));
  r.best_ns = 1e9 / v[0].rps;
  r.median_ns = 1e9 / v[n / 2].rps;
  r.allocs_per_op = v[0].allocs;
  r.ops = (uint64_t)(v[0].rps * (double)window_ns / 1e9);
  r.reps = n;
  r.rounds = n; /* one window per round; the clients take turns */
  if (raw != NULL)
    bench_print(name, &r,
                ", \"rps\": %.0f, \"cpu_ns_per_op\": %.0f, "
                "\"concurrency\": %u, \"ratio\": %.3f, "
                "\"cpu_ratio\": %.3f",
                v[0].rps, cpu, concurrency, v[0].rps / raw[0].rps,
                best_cpu(raw, nraw) / cpu);
  else
    bench_print(name, &r,
                ", \"rps\": %.0f, \"cpu_ns_per_op\": %.0f, "
                "\"concurrency\": %u",
                v[0].rps, cpu, concurrency);
}

int main(void) {
  sample_t raw[ROUNDS_MAX], rawto[ROUNDS_MAX], rawkeep[ROUNDS_MAX],
      pipe[ROUNDS_MAX];
  int do_raw, do_rawto, do_rawkeep, do_pipe;
  fy_up_opts_t uo;
  fy_up_t *up;
  unsigned i;

  bench_init();
  concurrency = env_uint("BENCH_CURL_CONCURRENCY", CONCURRENCY_DEFAULT, 1,
                         CONCURRENCY_MAX);
  rounds = env_uint("BENCH_CURL_ROUNDS", ROUNDS_DEFAULT, 1, ROUNDS_MAX);
  window_ns = env_uint("BENCH_CURL_WINDOW_MS", WINDOW_MS_DEFAULT, 100,
                       600000) *
              1000000ull;
  do_raw = bench_selected("curl.raw.rps");
  do_rawto = bench_selected("curl.raw_timeout.rps");
  do_rawkeep = bench_selected("curl.raw_keep.rps");
  do_pipe = bench_selected("curl.pipeline.rps");
  if (!do_raw && !do_rawto && !do_rawkeep && !do_pipe)
    return 0;

  BENCH_CHECK(curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK);
  memset(&uo, 0, sizeof(uo));
  uo.seed = 1;
  uo.quiet = 1;
  BENCH_CHECK(fy_up_spawn(&uo, &up) == 0);
  fy_up_base_url(up, url, sizeof(url));
  strcat(url, "/");
  BENCH_CHECK(uv_loop_init(&loop) == 0);
  if (do_raw || do_rawto)
    raw_setup(&raw_plain, 0);
  if (do_rawkeep)
    raw_setup(&raw_keep, 1);
  if (do_pipe)
    pipe_setup();

  /* Turns: raw, pipeline, raw, pipeline, ... */
  for (i = 0; i < rounds; i++) {
    if (do_raw)
      raw_round(&raw_plain, &raw[i], 0);
    if (do_rawto)
      raw_round(&raw_plain, &rawto[i], RAW_TIMEOUT_MS);
    if (do_rawkeep)
      raw_round(&raw_keep, &rawkeep[i], 0);
    if (do_pipe)
      pipe_round(&pipe[i]);
    fprintf(stderr,
            "bench_curl: round %u: raw %.0f rps (%.1f us cpu), raw with "
            "timeout %.0f rps (%.1f us cpu), raw keeping polls %.0f rps "
            "(%.1f us cpu), pipeline %.0f rps (%.1f us cpu)\n",
            i + 1, do_raw ? raw[i].rps : 0.0,
            do_raw ? raw[i].cpu_ns / 1e3 : 0.0,
            do_rawto ? rawto[i].rps : 0.0,
            do_rawto ? rawto[i].cpu_ns / 1e3 : 0.0,
            do_rawkeep ? rawkeep[i].rps : 0.0,
            do_rawkeep ? rawkeep[i].cpu_ns / 1e3 : 0.0,
            do_pipe ? pipe[i].rps : 0.0,
            do_pipe ? pipe[i].cpu_ns / 1e3 : 0.0);
  }
  if (do_raw || do_rawto)
    raw_teardown(&raw_plain);
  if (do_rawkeep)
    raw_teardown(&raw_keep);
  if (do_pipe)
    pipe_teardown();
  if (do_raw)
    print_line("curl.raw.rps", raw, (int)rounds, NULL, 0);
  if (do_rawto)
    print_line("curl.raw_timeout.rps", rawto, (int)rounds,
               do_raw ? raw : NULL, (int)rounds);
  if (do_rawkeep)
    print_line("curl.raw_keep.rps", rawkeep, (int)rounds,
               do_raw ? raw : NULL, (int)rounds);
  if (do_pipe)
    print_line("curl.pipeline.rps", pipe, (int)rounds, do_raw ? raw : NULL,
               (int)rounds);
  BENCH_CHECK(uv_loop_close(&loop) == 0);
  fy_up_close(up, NULL, NULL);
  curl_global_cleanup();
  BENCH_CHECK(bench_live_blocks() == 0);
  return 0;
}
