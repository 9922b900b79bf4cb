/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * `make demo`: one HTTP workload, two clients, side by side (docs/demo.md).
 *
 * Two test upstreams (tests/upstream, each on its own thread) play two
 * hosts on loopback.  The workload sends the same requests, at the same
 * instants, through two clients on one loop:
 *
 *   bare     libcurl's multi interface through the adapter with an EMPTY
 *            pipeline: one attempt, no timeout; what plain libcurl does;
 *   fortify  the same adapter through fortify's default HTTP pipeline:
 *            total timeout -> retry with jitter -> per-host breakers ->
 *            per-try timeout.
 *
 * Four phases script the hosts (fy_up_route at each boundary): healthy,
 * failing (host A fails hard, host B stays healthy), recovering, and a slow
 * tail.  A line per second and client, a summary table, and an HTML report
 * with inline SVG charts (demo_report.c). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "demo_report.h"
#include "fortify.h"
#include "fortify/curl.h"
#include "upstream.h"

#ifndef FY_DEMO_REPORT_PATH
#define FY_DEMO_REPORT_PATH "demo-report.html"
#endif

#define BARE 0
#define FORT 1
#define HOST_A 0
#define HOST_B 1
#define PHASE_FAILING 1
#define JOBS_MAX 512        /* requests in flight per client */
#define PACE_MS 5           /* the workload's pacer period */
#define TRANSITIONS_MAX 512 /* breaker state changes kept for the report */

/* ---- the phases: the upstreams' route scripts (docs/upstream.md) --------- */
#define Q_HEALTHY "latency=3&jitter=12&fail=0.03"
#define Q_FAILING "latency=100&jitter=400&fail=1&action=reset&action_rate=0.3"
#define Q_RECOVER "latency=10&jitter=40&fail=0.15"
#define Q_TAIL                                                                 \
  "latency=3&jitter=12&fail=0.03&slow=0.08&slow_ms=1500&action=stall"         \
  "&action_rate=0.02"

static const demo_phase_t phase_template[DEMO_PHASES] = {
    {"healthy", "both hosts answer in 3-15 ms; 3% of answers are 503s",
     {Q_HEALTHY, Q_HEALTHY}, 0, 0},
    {"failing",
     "host A fails hard: every answer is a 503 or a connection reset, "
     "after 100-500 ms; host B stays healthy",
     {Q_FAILING, Q_HEALTHY}, 0, 0},
    {"recovering", "host A comes back: 10-50 ms, 15% of answers are 503s",
     {Q_RECOVER, Q_HEALTHY}, 0, 0},
    {"slow tail",
     "both hosts: 8% of answers come 1.5 s late, 2% never come (the "
     "server stalls), 3% are 503s",
     {Q_TAIL, Q_TAIL}, 0, 0}};

/* ---- fortify's pipeline settings ----------------------------------------- */
#define ATTEMPT_TIMEOUT_MS 250
#define TOTAL_TIMEOUT_MS 1000
#define MAX_ATTEMPTS 3
#define RETRY_DELAY_MS 50
#define RETRY_MAX_DELAY_MS 400
#define BREAKER_FAILURES 5
#define BREAKER_TRIALS 2

typedef struct client_s client_t;

/* One request slot: the adapter's request and what the demo tracks. */
typedef struct job_s {
  fy_curl_req_t req;
  client_t *client;
  struct job_s *next_free;
  uint64_t start_ns;
  int host;     /* HOST_A or HOST_B */
  int url_host; /* the host whose URL is set on |req|, or -1 */
  int phase;    /* the phase the request started in */
  int inited;   /* |req| was initialised */
  int busy;
} job_t;

struct client_s {
  int id;
  const char *name;
  fy_curl_t *curl;
  fy_pipeline_t *pipeline;   /* what calls start on */
  fy_pipeline_t *bare;       /* bare: the empty pipeline, owned */
  fy_curl_pipeline_t *http;  /* fortify: the default pipeline, owned */
  job_t *jobs;
  job_t *free_jobs;
  size_t inflight;
  /* Totals. */
  uint64_t issued, done, ok, http_errors, transport_errors, timeouts;
  uint64_t refused, stuck, dropped, retries, attempts;
  uint64_t sent_while_open; /* attempts to host A while its breaker was open */
  uint64_t sent_failing;    /* attempts to host A during the failing phase */
  uint64_t last_done_ms;    /* when the last request that got an answer
                               completed, since the start */
  uint64_t phase_done[DEMO_PHASES], phase_ok[DEMO_PHASES];
  /* Every request's latency, in completion order, and its phase. */
  uint32_t *lat_us;
  uint8_t *lat_phase;
  size_t nlat, cap;
  /* The second being counted, and the finished ones. */
  demo_second_t cur;
  size_t sec_first; /* index in lat_us of the current second's first */
  demo_second_t *seconds;
};

typedef struct demo_s {
  /* options */
  int quick;
  const char *report_path;
  uint64_t seed;
  unsigned rate; /* requests per second and client */
  /* the run */
  uv_loop_t loop;
  fy_ctx_t *ctx;
  fy_listener_t *listener;
  fy_up_t *up[DEMO_HOSTS];
  char url[DEMO_HOSTS][80];
  char key[DEMO_HOSTS][FY_CURL_HOST_MAX + 1];
  client_t clients[DEMO_CLIENTS];
  demo_phase_t phases[DEMO_PHASES];
  uint64_t phase_ms, drain_ms, open_ms, workload_ms;
  fy_deadline_t pacer, ticker, phase_timer;
  uint64_t t0; /* context time of the start, ms */
  uint64_t issued;
  int phase;   /* the current phase; DEMO_PHASES while draining */
  size_t second;
  size_t max_seconds;
  int finishing, shut;
  uint64_t end_ms;
  int bstate[DEMO_HOSTS];
  demo_transition_t transitions[TRANSITIONS_MAX];
  size_t ntransitions;
  int closes_pending;
  int failed;
} demo_t;

static demo_t demo;

/* ---- small helpers ------------------------------------------------------- */

static uint64_t elapsed_ms(void) { return fy_ctx_now(demo.ctx) - demo.t0; }

static int cmp_u32(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return x < y ? -1 : x > y;
}

/* The |pct| percentile of sorted |v| (nearest rank). */
static uint32_t pctl(const uint32_t *v, size_t n, double pct) {
  size_t i;
  if (n == 0)
    return 0;
  i = (size_t)(pct / 100.0 * (double)n + 0.999999);
  if (i == 0)
    i = 1;
  return v[(i > n ? n : i) - 1];
}

/* "0.8ms", "12ms", "1.52s". */
static char *fmt_lat(char *buf, size_t len, uint32_t us) {
  if (us < 10000)
    snprintf(buf, len, "%.1fms", us / 1000.0);
  else if (us < 1000000)
    snprintf(buf, len, "%ums", (unsigned)((us + 500) / 1000));
  else
    snprintf(buf, len, "%.2fs", us / 1e6);
  return buf;
}

static double rate_of(uint64_t ok, uint64_t n) {
  return n > 0 ? 100.0 * (double)ok / (double)n : 0.0;
}

static const char *state_name(int s) {
  return s == FY_BREAKER_OPEN        ? "OPEN"
         : s == FY_BREAKER_HALF_OPEN ? "half-open"
                                     : "closed";
}

/* ---- breaker state and attempt accounting -------------------------------- */

static int host_index(const char *key) {
  int h;
  for (h = 0; h < DEMO_HOSTS; h++)
    if (strcmp(key, demo.key[h]) == 0)
      return h;
  return -1;
}

static void on_breaker(fy_curl_hosts_t *hosts, const char *host,
                       fy_breaker_state_t from, fy_breaker_state_t to,
                       void *user_data) {
  int h = host_index(host);
  demo_transition_t *t;
  (void)hosts;
  (void)from;
  (void)user_data;
  if (h < 0)
    return;
  demo.bstate[h] = (int)to;
  if (demo.ntransitions == TRANSITIONS_MAX)
    return;
  t = &demo.transitions[demo.ntransitions++];
  t->t_ms = (uint32_t)elapsed_ms();
  t->host = (uint8_t)h;
  t->state = (uint8_t)to;
}

/* Every attempt that reaches the wire, and every retry, of either client:
 * the call identifies the job and with it the client. */
static void on_event(fy_ctx_t *ctx, const fy_event_t *ev, void *user_data) {
  job_t *job;
  client_t *c;
  (void)ctx;
  (void)user_data;
  if (ev->call == NULL)
    return;
  job = fy_container_of(ev->call, job_t, req.call);
  c = job->client;
  if (ev->type == FY_EV_RETRY) {
    c->retries++;
    c->cur.retries++;
    return;
  }
  c->attempts++;
  if (job->host != HOST_A)
    return;
  if (demo.bstate[HOST_A] == FY_BREAKER_OPEN)
    c->sent_while_open++;
  if (demo.phase == PHASE_FAILING)
    c->sent_failing++;
}

/* ---- completions --------------------------------------------------------- */

static void maybe_shutdown(void);

static void record(client_t *c, job_t *job, int status) {
  uint64_t ns = uv_hrtime() - job->start_ns;
  uint32_t us = ns / 1000 > UINT32_MAX ? UINT32_MAX : (uint32_t)(ns / 1000);

  c->done++;
  c->cur.done++;
  c->phase_done[job->phase]++;
  if (status == 0) {
    c->ok++;
    c->cur.ok++;
    c->phase_ok[job->phase]++;
  } else if (status == FY_ECIRCUITOPEN) {
    c->refused++;
    c->cur.refused++;
  } else if (status == UV_ECANCELED && demo.finishing) {
    c->stuck++;
  } else if (fy_curl_http_code(status) != 0) {
    c->http_errors++;
  } else if (status == UV_ETIMEDOUT || status == FY_EDEADLINE) {
    c->timeouts++;
  } else {
    c->transport_errors++;
  }
  if (!(status == UV_ECANCELED && demo.finishing))
    c->last_done_ms = elapsed_ms();
  if (c->nlat < c->cap) {
    c->lat_phase[c->nlat] = (uint8_t)job->phase;
    c->lat_us[c->nlat++] = us;
  }
}

static void release(client_t *c, job_t *job) {
  job->busy = 0;
  job->next_free = c->free_jobs;
  c->free_jobs = job;
  c->inflight--;
}

static void on_done(fy_call_t *call, int status) {
  job_t *job = fy_container_of(call, job_t, req.call);
  client_t *c = job->client;
  record(c, job, status);
  release(c, job);
  maybe_shutdown();
}

/* Start one request of |c| to |host|.  A refusal at start (the breaker is
 * open: rule 2, the callback never runs) completes the request here. */
static void issue(client_t *c, int host) {
  job_t *job = c->free_jobs;
  int rc;

  c->issued++;
  if (job == NULL) {
    c->dropped++; /* every slot is waiting: counted as a failure */
    c->done++;
    c->cur.done++;
    c->phase_done[demo.phase < DEMO_PHASES ? demo.phase : DEMO_PHASES - 1]++;
    return;
  }
  c->free_jobs = job->next_free;
  c->inflight++;
  job->busy = 1;
  job->host = host;
  job->phase = demo.phase < DEMO_PHASES ? demo.phase : DEMO_PHASES - 1;
  if (!job->inited) {
    if (fy_curl_req_init(c->curl, &job->req) != 0)
      goto failed;
    job->inited = 1;
    job->req.call.data = job;
  }
  if (job->url_host != host) {
    if (fy_curl_req_set_url(&job->req, demo.url[host]) != 0)
      goto failed;
    job->url_host = host;
  }
  job->start_ns = uv_hrtime();
  rc = fy_curl_start(&job->req, c->pipeline, on_done);
  if (rc == 0)
    return;
  record(c, job, rc);
  release(c, job);
  return;

failed:
  fprintf(stderr, "demo: cannot set up a request\n");
  demo.failed = 1;
  job->start_ns = uv_hrtime();
  record(c, job, UV_ENOMEM);
  release(c, job);
}

/* ---- the live lines ------------------------------------------------------ */

/* |text| on lines of at most 76 columns, each indented by |indent|. */
static void print_wrapped(const char *text, int indent) {
  const char *s = text, *brk;
  int width = 76 - indent, n;
  while (*s != '\0') {
    n = (int)strlen(s);
    if (n > width) {
      for (brk = s + width; brk > s && *brk != ' '; brk--)
        ;
      n = brk > s ? (int)(brk - s) : width;
    }
    printf("%*s%.*s\n", indent, "", n, s);
    s += n;
    while (*s == ' ')
      s++;
  }
}

static void print_header(int phase) {
  const demo_phase_t *p = &demo.phases[phase];
  printf("\n-- phase %d/%d: %s, %.0f-%.0f s --\n", phase + 1, DEMO_PHASES,
         p->name, p->start_ms / 1000.0, p->end_ms / 1000.0);
  print_wrapped(p->what, 3);
  printf("%5s  %-8s %5s %5s %6s %6s %8s %8s  %-9s %s\n", "t", "client",
         "req", "ok", "retry", "failfast", "p50", "p99", "breaker A",
         "breaker B");
}

/* Close the second being counted: percentiles, a line per client. */
static void close_second(int print) {
  char b50[16], b99[16], t[16];
  uint32_t *tmp;
  size_t n;
  int k;

  if (demo.second >= demo.max_seconds)
    return;
  for (k = 0; k < DEMO_CLIENTS; k++) {
    client_t *c = &demo.clients[k];
    n = c->nlat - c->sec_first;
    if (n > 0) {
      tmp = malloc(n * sizeof(*tmp));
      if (tmp != NULL) {
        memcpy(tmp, c->lat_us + c->sec_first, n * sizeof(*tmp));
        qsort(tmp, n, sizeof(*tmp), cmp_u32);
        c->cur.p50_us = pctl(tmp, n, 50);
        c->cur.p99_us = pctl(tmp, n, 99);
        free(tmp);
      }
    }
    c->seconds[demo.second] = c->cur;
    if (print) {
      snprintf(t, sizeof(t), "%zus", demo.second + 1);
      printf("%5s  %-8s %5u %5u %6u %8u %8s %8s", k == 0 ? t : "", c->name,
             c->cur.done, c->cur.ok, c->cur.retries, c->cur.refused,
             n ? fmt_lat(b50, sizeof(b50), c->cur.p50_us) : "-",
             n ? fmt_lat(b99, sizeof(b99), c->cur.p99_us) : "-");
      if (k == FORT)
        printf("  %-9s %s\n", state_name(demo.bstate[HOST_A]),
               state_name(demo.bstate[HOST_B]));
      else
        printf("  %-9s %s\n", "(none)", "(none)");
    }
    memset(&c->cur, 0, sizeof(c->cur));
    c->sec_first = c->nlat;
  }
  fflush(stdout);
  demo.second++;
}

static void on_tick(fy_deadline_t *d) {
  close_second(1);
  if (!demo.finishing)
    fy_deadline_start_at(d, demo.t0 + 1000 * (demo.second + 1));
}

/* ---- phases, pacing, the end --------------------------------------------- */

static void set_routes(int phase) {
  int h;
  for (h = 0; h < DEMO_HOSTS; h++)
    if (fy_up_route(demo.up[h], "/api", demo.phases[phase].script[h]) != 0) {
      fprintf(stderr, "demo: bad route script\n");
      demo.failed = 1;
    }
}

static void on_pace(fy_deadline_t *d) {
  uint64_t now = elapsed_ms(), target;
  int k, first;
  if (now > demo.workload_ms)
    now = demo.workload_ms;
  target = now * demo.rate / 1000;
  /* The same request, at the same instant, for both clients; who goes
   * first alternates so that neither always draws first from the
   * upstream's random stream. */
  while (demo.issued < target) {
    first = (int)(demo.issued & 1);
    for (k = 0; k < DEMO_CLIENTS; k++)
      issue(&demo.clients[(first + k) % DEMO_CLIENTS],
            (demo.issued & 1) ? HOST_B : HOST_A);
    demo.issued++;
  }
  if (demo.phase < DEMO_PHASES)
    fy_deadline_start(d, PACE_MS);
}

static void finish(void);

static void on_phase(fy_deadline_t *d) {
  /* A second that ends on the boundary belongs to the phase before. */
  if (fy_deadline_is_active(&demo.ticker) &&
      fy_deadline_expiry(&demo.ticker) <= fy_ctx_now(demo.ctx)) {
    fy_deadline_stop(&demo.ticker);
    on_tick(&demo.ticker);
  }
  demo.phase++;
  if (demo.phase < DEMO_PHASES) {
    set_routes(demo.phase);
    print_header(demo.phase);
    fy_deadline_start_at(d, demo.t0 + demo.phases[demo.phase].end_ms);
    return;
  }
  if (demo.phase == DEMO_PHASES) {
    /* The workload is over: the requests in flight get drain_ms. */
    on_pace(&demo.pacer);
    fy_deadline_stop(&demo.pacer);
    printf("\n-- workload done at %.0f s; waiting up to %.1f s for the "
           "requests still in flight --\n",
           demo.workload_ms / 1000.0, demo.drain_ms / 1000.0);
    fflush(stdout);
    fy_deadline_start_at(d, demo.t0 + demo.workload_ms + demo.drain_ms);
    maybe_shutdown();
    return;
  }
  finish();
}

/* The drain is over (or nothing is left): whatever is still in flight has
 * had no answer, and bare libcurl, without a timeout, would wait forever.
 * Cancel it; the completions count it as "never answered". */
static void finish(void) {
  size_t i;
  int k;
  if (demo.finishing)
    return;
  demo.finishing = 1;
  demo.end_ms = elapsed_ms();
  fy_deadline_stop(&demo.ticker);
  fy_deadline_stop(&demo.phase_timer);
  if (demo.clients[BARE].seconds != NULL &&
      (demo.clients[0].nlat > demo.clients[0].sec_first ||
       demo.clients[1].nlat > demo.clients[1].sec_first))
    close_second(1);
  for (k = 0; k < DEMO_CLIENTS; k++)
    for (i = 0; demo.clients[k].jobs != NULL && i < JOBS_MAX; i++)
      if (demo.clients[k].jobs[i].busy)
        fy_call_cancel(&demo.clients[k].jobs[i].req.call);
  maybe_shutdown();
}

static void on_closed(void *obj, void *user_data) {
  (void)obj;
  (void)user_data;
  demo.closes_pending--;
}

static void close_client(client_t *c) {
  size_t i;
  for (i = 0; c->jobs != NULL && i < JOBS_MAX; i++)
    if (c->jobs[i].inited)
      fy_curl_req_cleanup(&c->jobs[i].req);
  if (c->http != NULL && fy_curl_pipeline_close(c->http, on_closed, NULL) == 0)
    demo.closes_pending++;
  if (c->bare != NULL && fy_pipeline_close(c->bare, on_closed, NULL) == 0)
    demo.closes_pending++;
  if (c->curl != NULL && fy_curl_close(c->curl, on_closed, NULL) == 0)
    demo.closes_pending++;
  c->http = NULL;
  c->bare = NULL;
  c->curl = NULL;
}

/* Once the drain has started and nothing is in flight any more. */
static void maybe_shutdown(void) {
  int k;
  if (demo.shut || demo.phase < DEMO_PHASES)
    return;
  for (k = 0; k < DEMO_CLIENTS; k++)
    if (demo.clients[k].inflight > 0)
      return;
  if (!demo.finishing) {
    finish(); /* which comes back here */
    return;
  }
  demo.shut = 1;
  fy_deadline_stop(&demo.pacer);
  fy_deadline_stop(&demo.ticker);
  fy_deadline_stop(&demo.phase_timer);
  fy_listener_remove(demo.listener);
  demo.listener = NULL;
  for (k = 0; k < DEMO_CLIENTS; k++)
    close_client(&demo.clients[k]);
  if (fy_ctx_close(demo.ctx, on_closed, NULL) == 0)
    demo.closes_pending++;
}

/* ---- set-up -------------------------------------------------------------- */

static int start_upstreams(void) {
  fy_up_opts_t o;
  int h, rc;
  for (h = 0; h < DEMO_HOSTS; h++) {
    memset(&o, 0, sizeof(o));
    o.seed = demo.seed + (uint64_t)h;
    o.quiet = 1;
    rc = fy_up_spawn(&o, &demo.up[h]);
    if (rc != 0) {
      fprintf(stderr, "demo: cannot start the test upstream: %s\n",
              uv_strerror(rc));
      return rc;
    }
    fy_up_base_url(demo.up[h], demo.url[h], sizeof(demo.url[h]));
    snprintf(demo.key[h], sizeof(demo.key[h]), "%s", demo.url[h]);
    strncat(demo.url[h], "/api", sizeof(demo.url[h]) - strlen(demo.url[h]) - 1);
  }
  return 0;
}

static int make_client(client_t *c, int id) {
  fy_curl_pipeline_opts_t po;
  size_t i;
  int rc;

  c->id = id;
  c->name = id == BARE ? "bare" : "fortify";
  c->jobs = calloc(JOBS_MAX, sizeof(*c->jobs));
  c->cap = (size_t)(demo.workload_ms * demo.rate / 1000) + 16;
  c->lat_us = calloc(c->cap, sizeof(*c->lat_us));
  c->lat_phase = calloc(c->cap, sizeof(*c->lat_phase));
  c->seconds = calloc(demo.max_seconds, sizeof(*c->seconds));
  if (c->jobs == NULL || c->lat_us == NULL || c->lat_phase == NULL ||
      c->seconds == NULL)
    return UV_ENOMEM;
  for (i = JOBS_MAX; i-- > 0;) {
    c->jobs[i].client = c;
    c->jobs[i].url_host = -1;
    c->jobs[i].next_free = c->free_jobs;
    c->free_jobs = &c->jobs[i];
  }
  /* One adapter (one CURLM, one connection pool) per client. */
  if ((rc = fy_curl_new(demo.ctx, NULL, &c->curl)) != 0)
    return rc;
  if (id == BARE) {
    rc = fy_pipeline_new(demo.ctx, NULL, 0, &c->bare);
    c->pipeline = c->bare;
    return rc;
  }
  fy_curl_pipeline_opts_init(&po);
  po.preset.name = "fortify";
  po.preset.attempt_timeout_ms = ATTEMPT_TIMEOUT_MS;
  po.preset.total_timeout_ms = TOTAL_TIMEOUT_MS;
  po.preset.max_attempts = MAX_ATTEMPTS;
  po.preset.retry_initial_delay_ms = RETRY_DELAY_MS;
  po.preset.retry_max_delay_ms = RETRY_MAX_DELAY_MS;
  po.preset.retry_jitter = FY_RETRY_JITTER_FULL;
  po.preset.breaker_failures = BREAKER_FAILURES;
  po.preset.breaker_open_ms = demo.open_ms;
  po.preset.breaker_max_requests = BREAKER_TRIALS;
  po.on_state_change = on_breaker;
  if ((rc = fy_curl_pipeline_new(demo.ctx, &po, &c->http)) != 0)
    return rc;
  c->pipeline = fy_curl_pipeline_get(c->http);
  return 0;
}

static void plan(void) {
  int p;
  demo.phase_ms = demo.quick ? 1000 : 7000;
  demo.open_ms = demo.quick ? 250 : 1000;
  demo.drain_ms = 2000;
  demo.workload_ms = demo.phase_ms * DEMO_PHASES;
  demo.max_seconds = (size_t)((demo.workload_ms + demo.drain_ms) / 1000) + 2;
  for (p = 0; p < DEMO_PHASES; p++) {
    demo.phases[p] = phase_template[p];
    demo.phases[p].start_ms = (uint32_t)(demo.phase_ms * (uint64_t)p);
    demo.phases[p].end_ms = (uint32_t)(demo.phase_ms * (uint64_t)(p + 1));
  }
}

static void print_intro(void) {
  printf("fortify demo: one HTTP workload, two clients, side by side\n\n");
  printf("  hosts    A %s   B %s\n", demo.key[HOST_A], demo.key[HOST_B]);
  printf("           (the test upstream on loopback, one thread each, "
         "seeds %" PRIu64 " and %" PRIu64 ")\n",
         demo.seed, demo.seed + 1);
  printf("  workload %u requests/s per client, alternating A and B, "
         "%d phases of %.0f s\n",
         demo.rate, DEMO_PHASES, demo.phase_ms / 1000.0);
  printf("  bare     libcurl multi through the adapter with an empty "
         "pipeline: one\n"
         "           attempt, no timeout (curl's default): plain libcurl "
         "behaviour\n");
  printf("  fortify  the same adapter through fortify's default HTTP "
         "pipeline:\n"
         "           total timeout %d ms -> retry (%d tries, full jitter, "
         "%d-%d ms)\n"
         "           -> per-host breaker (%d failures, open %.2g s, %d "
         "trials) -> per-try %d ms\n",
         TOTAL_TIMEOUT_MS, MAX_ATTEMPTS, RETRY_DELAY_MS, RETRY_MAX_DELAY_MS,
         BREAKER_FAILURES, demo.open_ms / 1000.0, BREAKER_TRIALS,
         ATTEMPT_TIMEOUT_MS);
  printf("  Both clients run at the same time on one loop against the same "
         "upstreams:\n"
         "  the same conditions for both, in half the wall time.\n");
  printf("  Columns: requests completed in that second, ok, retries "
         "started, failfast\n"
         "  (refused at once by an open breaker), latency p50/p99 of that "
         "second.\n");
  fflush(stdout);
}

/* ---- the summary --------------------------------------------------------- */

static demo_row_t rows[24];
static size_t nrows;
static demo_row_t phase_rows[DEMO_PHASES];
static uint32_t *sorted[DEMO_CLIENTS];

static demo_row_t *row(const char *label) {
  demo_row_t *r = &rows[nrows++];
  snprintf(r->label, sizeof(r->label), "%s", label);
  return r;
}

static void row_u64(const char *label, uint64_t bare, uint64_t fort) {
  demo_row_t *r = row(label);
  snprintf(r->cell[BARE], sizeof(r->cell[BARE]), "%" PRIu64, bare);
  snprintf(r->cell[FORT], sizeof(r->cell[FORT]), "%" PRIu64, fort);
}

static void row_lat(const char *label, double pct) {
  demo_row_t *r = row(label);
  int k;
  for (k = 0; k < DEMO_CLIENTS; k++) {
    client_t *c = &demo.clients[k];
    fmt_lat(r->cell[k], sizeof(r->cell[k]), pctl(sorted[k], c->nlat, pct));
  }
}

/* Success rate and tail of the requests started in |phase|. */
static void phase_cell(client_t *c, int phase, char *buf, size_t len) {
  uint32_t *tmp = malloc((c->nlat + 1) * sizeof(*tmp));
  size_t i, n = 0;
  char b[16];
  if (tmp == NULL) {
    snprintf(buf, len, "?");
    return;
  }
  for (i = 0; i < c->nlat; i++)
    if (c->lat_phase[i] == phase)
      tmp[n++] = c->lat_us[i];
  qsort(tmp, n, sizeof(*tmp), cmp_u32);
  snprintf(buf, len, "%5.1f%%  p99 %s",
           rate_of(c->phase_ok[phase], c->phase_done[phase]),
           fmt_lat(b, sizeof(b), pctl(tmp, n, 99)));
  free(tmp);
}

static void build_summary(void) {
  client_t *b = &demo.clients[BARE], *f = &demo.clients[FORT];
  demo_row_t *r;
  int k, p;

  for (k = 0; k < DEMO_CLIENTS; k++) {
    client_t *c = &demo.clients[k];
    sorted[k] = malloc((c->nlat + 1) * sizeof(uint32_t));
    if (sorted[k] != NULL) {
      memcpy(sorted[k], c->lat_us, c->nlat * sizeof(uint32_t));
      qsort(sorted[k], c->nlat, sizeof(uint32_t), cmp_u32);
    }
  }
  row_u64("requests", b->issued, f->issued);
  row_u64("succeeded", b->ok, f->ok);
  r = row("success rate");
  for (k = 0; k < DEMO_CLIENTS; k++)
    snprintf(r->cell[k], sizeof(r->cell[k]), "%.1f%%",
             rate_of(demo.clients[k].ok, demo.clients[k].issued));
  row_u64("failed: HTTP 5xx", b->http_errors, f->http_errors);
  row_u64("failed: reset or other error", b->transport_errors,
          f->transport_errors);
  row_u64("failed: timed out", b->timeouts, f->timeouts);
  row_u64("failed fast: breaker open", b->refused, f->refused);
  row_u64("never answered (cancelled at end)", b->stuck, f->stuck);
  if (b->dropped + f->dropped > 0)
    row_u64("dropped: no free request slot", b->dropped, f->dropped);
  row_lat("latency p50", 50);
  row_lat("latency p90", 90);
  row_lat("latency p99", 99);
  row_lat("latency max", 100);
  row_u64("HTTP attempts sent", b->attempts, f->attempts);
  row_u64("retries", b->retries, f->retries);
  row_u64("sent to A while its breaker was open", b->sent_while_open,
          f->sent_while_open);
  row_u64("sent to A during the failing phase", b->sent_failing,
          f->sent_failing);
  r = row("last answer received at");
  for (k = 0; k < DEMO_CLIENTS; k++)
    snprintf(r->cell[k], sizeof(r->cell[k]), "%.1f s",
             demo.clients[k].last_done_ms / 1000.0);
  r = row("total time (side by side)");
  for (k = 0; k < DEMO_CLIENTS; k++)
    snprintf(r->cell[k], sizeof(r->cell[k]), "%.1f s",
             demo.end_ms / 1000.0);
  for (p = 0; p < DEMO_PHASES; p++) {
    snprintf(phase_rows[p].label, sizeof(phase_rows[p].label), "%s",
             demo.phases[p].name);
    for (k = 0; k < DEMO_CLIENTS; k++)
      phase_cell(&demo.clients[k], p, phase_rows[p].cell[k],
                 sizeof(phase_rows[p].cell[k]));
  }
}

static void print_table(const char *title, const demo_row_t *r, size_t n) {
  size_t i;
  printf("\n%-38s %18s %18s\n", title, "bare libcurl", "fortify");
  for (i = 0; i < n; i++)
    printf("%-38s %18s %18s\n", r[i].label, r[i].cell[BARE], r[i].cell[FORT]);
}

static int write_report(void) {
  demo_report_t r;
  int k, h;
  char setup[1024];

  memset(&r, 0, sizeof(r));
  r.client_name[BARE] = "bare libcurl";
  r.client_name[FORT] = "fortify";
  r.client_desc[BARE] = "libcurl multi through the adapter with an empty "
                        "pipeline: one attempt, no timeout (curl's default)";
  r.client_desc[FORT] = "the same adapter through fortify's default HTTP "
                        "pipeline: total timeout, retry with jitter, "
                        "per-host breakers, per-try timeout";
  r.host_name[HOST_A] = "A";
  r.host_name[HOST_B] = "B";
  for (h = 0; h < DEMO_HOSTS; h++)
    r.host_url[h] = demo.key[h];
  snprintf(setup, sizeof(setup),
           "%u requests per second and client, alternating host A and host "
           "B, %d phases of %.0f s, then up to %.1f s for the requests in "
           "flight. Both clients ran at the same time on one libuv loop "
           "against the same two test upstreams (loopback, seeds %" PRIu64
           " and %" PRIu64 "). fortify: total timeout %d ms, %d tries with "
           "full jitter (%d-%d ms), a breaker per host (%d consecutive "
           "failures, open %.2g s, %d trials), per-try timeout %d ms.",
           demo.rate, DEMO_PHASES, demo.phase_ms / 1000.0,
           demo.drain_ms / 1000.0, demo.seed, demo.seed + 1,
           TOTAL_TIMEOUT_MS, MAX_ATTEMPTS, RETRY_DELAY_MS, RETRY_MAX_DELAY_MS,
           BREAKER_FAILURES, demo.open_ms / 1000.0, BREAKER_TRIALS,
           ATTEMPT_TIMEOUT_MS);
  r.setup = setup;
  memcpy(r.phases, demo.phases, sizeof(r.phases));
  r.total_ms = (uint32_t)demo.end_ms;
  r.workload_ms = (uint32_t)demo.workload_ms;
  r.nseconds = demo.second;
  for (k = 0; k < DEMO_CLIENTS; k++) {
    r.seconds[k] = demo.clients[k].seconds;
    r.lat_us[k] = sorted[k];
    r.nlat[k] = sorted[k] != NULL ? demo.clients[k].nlat : 0;
  }
  r.transitions = demo.transitions;
  r.ntransitions = demo.ntransitions;
  r.rows = rows;
  r.nrows = nrows;
  r.phase_rows = phase_rows;
  r.nphase_rows = DEMO_PHASES;
  return demo_report_write(demo.report_path, &r);
}

/* ---- main ---------------------------------------------------------------- */

static void usage(FILE *out) {
  fprintf(out,
          "usage: demo [--quick] [--report PATH] [--seed N] [--rate N]\n"
          "  --quick        each phase lasts 1 s instead of 7 s (smoke tests,"
          " valgrind)\n"
          "  --report PATH  where to write the HTML report (default %s)\n"
          "  --seed N       the upstreams' seed (default 1)\n"
          "  --rate N       requests per second and client, 10..1000 "
          "(default 100)\n",
          FY_DEMO_REPORT_PATH);
}

static int parse_args(int argc, char **argv) {
  unsigned long v;
  char *end;
  int i;
  demo.report_path = FY_DEMO_REPORT_PATH;
  demo.seed = 1;
  demo.rate = 100;
  for (i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--quick") == 0) {
      demo.quick = 1;
    } else if (strcmp(argv[i], "--report") == 0 && i + 1 < argc) {
      demo.report_path = argv[++i];
    } else if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc) {
      errno = 0;
      demo.seed = strtoull(argv[++i], &end, 10);
      if (errno != 0 || *end != '\0')
        return 2;
    } else if (strcmp(argv[i], "--rate") == 0 && i + 1 < argc) {
      errno = 0;
      v = strtoul(argv[++i], &end, 10);
      if (errno != 0 || *end != '\0' || v < 10 || v > 1000)
        return 2;
      demo.rate = (unsigned)v;
    } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      usage(stdout);
      exit(0);
    } else {
      return 2;
    }
  }
  return 0;
}

/* Fail before the run rather than after it: the file is created now and
 * written at the end. */
static int report_writable(void) {
  FILE *f = fopen(demo.report_path, "w");
  if (f == NULL)
    return 0;
  fclose(f);
  return 1;
}

static void free_all(void) {
  int k, h;
  for (k = 0; k < DEMO_CLIENTS; k++) {
    client_t *c = &demo.clients[k];
    free(c->jobs);
    free(c->lat_us);
    free(c->lat_phase);
    free(c->seconds);
    free(sorted[k]);
  }
  for (h = 0; h < DEMO_HOSTS; h++)
    if (demo.up[h] != NULL)
      fy_up_close(demo.up[h], NULL, NULL);
}

int main(int argc, char **argv) {
  double sb, sf;
  int k, rc;

  if (parse_args(argc, argv) != 0) {
    usage(stderr);
    return 2;
  }
  plan();
  if (!report_writable()) {
    fprintf(stderr, "demo: cannot write %s: %s\n", demo.report_path,
            strerror(errno));
    return 1;
  }
  if (start_upstreams() != 0) {
    free_all();
    return 1;
  }
  if ((rc = uv_loop_init(&demo.loop)) != 0 ||
      (rc = fy_ctx_new(&demo.loop, NULL, &demo.ctx)) != 0 ||
      (rc = fy_ctx_listen(demo.ctx,
                          FY_EV_MASK(FY_EV_RETRY) |
                              FY_EV_MASK(FY_EV_ATTEMPT_START),
                          on_event, NULL, &demo.listener)) != 0) {
    fprintf(stderr, "demo: set-up failed: %s\n", fy_strerror(rc));
    free_all();
    return 1;
  }
  fy_deadline_init(demo.ctx, &demo.pacer, on_pace);
  fy_deadline_init(demo.ctx, &demo.ticker, on_tick);
  fy_deadline_init(demo.ctx, &demo.phase_timer, on_phase);
  for (k = 0; k < DEMO_CLIENTS; k++)
    if ((rc = make_client(&demo.clients[k], k)) != 0) {
      fprintf(stderr, "demo: cannot create the %s client: %s\n",
              k == BARE ? "bare" : "fortify", fy_strerror(rc));
      demo.phase = DEMO_PHASES;
      demo.failed = 1;
      break;
    }

  if (!demo.failed) {
    print_intro();
    set_routes(0);
    print_header(0);
    demo.t0 = fy_ctx_now(demo.ctx);
    fy_deadline_start(&demo.pacer, 0);
    fy_deadline_start_at(&demo.ticker, demo.t0 + 1000);
    fy_deadline_start_at(&demo.phase_timer,
                         demo.t0 + demo.phases[0].end_ms);
  } else {
    maybe_shutdown();
  }
  uv_run(&demo.loop, UV_RUN_DEFAULT);
  rc = uv_loop_close(&demo.loop);
  if (rc != 0 || demo.closes_pending != 0) {
    fprintf(stderr, "demo: unclean shutdown (uv_loop_close: %s, %d close "
            "callbacks missing)\n", uv_strerror(rc), demo.closes_pending);
    demo.failed = 1;
  }
  if (demo.failed) {
    free_all();
    return 1;
  }

  build_summary();
  print_table("summary", rows, nrows);
  print_table("by phase (success rate, p99)", phase_rows, DEMO_PHASES);
  sb = rate_of(demo.clients[BARE].ok, demo.clients[BARE].issued);
  sf = rate_of(demo.clients[FORT].ok, demo.clients[FORT].issued);
  printf("\nfortify answered %.1f%% of the requests, bare libcurl %.1f%%.\n",
         sf, sb);
  if (write_report() != 0) {
    fprintf(stderr, "demo: cannot write %s: %s\n", demo.report_path,
            strerror(errno));
    free_all();
    return 1;
  }
  printf("report: %s\n", demo.report_path);
  free_all();
  return 0;
}
