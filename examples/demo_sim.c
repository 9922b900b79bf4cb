/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * A flaky simulated service on the loop, called 400 times bare and 400
 * times through a pipeline holding a small retry policy written against
 * the public policy API: the worked example of docs/design.md ("Writing a
 * policy").  It is also what `make demo` runs when the libcurl adapter or
 * the test upstream cannot be built (examples/CMakeLists.txt); the real
 * demo is examples/demo.c.  Prints a live line every 250 ms of loop time
 * and a side-by-side summary. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fortify.h"

#define CALLS 400
#define CONCURRENCY 25
#define FAIL_PERCENT 35

/* ---- a simulated service: each request takes 2..40 ms and fails with
 * probability FAIL_PERCENT, decided by a deterministic PRNG. ------------- */
typedef struct request_s {
  fy_deadline_t latency;
  fy_attempt_t *attempt;
  int outcome;
} request_t;

static uint32_t rng_state = 12345;
static uint32_t rng(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 17;
  rng_state ^= rng_state << 5;
  return rng_state;
}

static fy_ctx_t *ctx;

static void on_service_reply(fy_deadline_t *d) {
  request_t *req = fy_container_of(d, request_t, latency);
  fy_attempt_t *a = req->attempt;
  int outcome = req->outcome;
  free(req);
  fy_attempt_done(a, outcome);
}

static int service_start(fy_attempt_t *a, void *arg) {
  request_t *req = malloc(sizeof(*req));
  (void)arg;
  if (req == NULL)
    return UV_ENOMEM;
  req->attempt = a;
  req->outcome = (int)(rng() % 100) < FAIL_PERCENT ? UV_ECONNRESET : 0;
  a->data = req;
  fy_deadline_init(ctx, &req->latency, on_service_reply);
  fy_deadline_start(&req->latency, 2 + rng() % 39);
  return 0;
}

/* Cancel stops the simulated request and reports at once, as curl's
 * remove_handle lets a real adapter do. */
static void service_cancel(fy_attempt_t *a, void *arg) {
  request_t *req = a->data;
  (void)arg;
  fy_deadline_stop(&req->latency);
  free(req);
  fy_attempt_done(a, UV_ECANCELED);
}

static const fy_op_t service_op = {service_start, service_cancel};

/* ---- a small retry policy: up to |max_attempts|, fixed backoff. -------- */
typedef struct retry_cfg_s {
  unsigned max_attempts;
  uint64_t backoff_ms;
} retry_cfg_t;

typedef struct retry_frame_s {
  unsigned attempts;
  int last;
} retry_frame_t;

static int retry_start(fy_policy_t *p, fy_frame_t *f) {
  retry_frame_t *rf = fy_frame_state(f);
  (void)p;
  rf->attempts = 1;
  return fy_frame_spawn(f, NULL);
}

static void retry_child_done(fy_policy_t *p, fy_frame_t *f, fy_frame_t *child,
                             int status) {
  retry_cfg_t *cfg = fy_policy_impl(p);
  retry_frame_t *rf = fy_frame_state(f);
  if (status == 0 || status == UV_ECANCELED ||
      rf->attempts >= cfg->max_attempts || fy_frame_is_cancelled(f)) {
    fy_frame_adopt_result(f, child);
    fy_frame_done(f, status);
    return;
  }
  rf->last = status;
  fy_policy_emit(p, FY_EV_RETRY, fy_frame_call(f), status, 0, 0);
  fy_frame_arm(f, fy_ctx_now(fy_frame_ctx(f)) + cfg->backoff_ms);
}

static void retry_deadline(fy_policy_t *p, fy_frame_t *f) {
  retry_frame_t *rf = fy_frame_state(f);
  int rc;
  (void)p;
  rf->attempts++;
  rc = fy_frame_spawn(f, NULL);
  if (rc < 0)
    fy_frame_done(f, rc);
}

static const fy_policy_vtable_t retry_vtable = {
    .kind = "demo-retry",
    .frame_size = sizeof(retry_frame_t),
    .start = retry_start,
    .child_done = retry_child_done,
    .deadline = retry_deadline,
};

/* ---- the workload ------------------------------------------------------ */
typedef struct run_s {
  const char *label;
  fy_pipeline_t *pipeline;
  unsigned started, done, ok, attempts, retries;
  uint64_t lat_ms[CALLS];
} run_t;

typedef struct job_s {
  fy_call_t call;
  run_t *run;
  uint64_t started_ms;
} job_t;

static job_t jobs[CONCURRENCY];
static run_t runs[2];
static run_t *current;
static fy_deadline_t ticker;

static void start_next(job_t *job);

static void on_done(fy_call_t *call, int status) {
  job_t *job = fy_container_of(call, job_t, call);
  run_t *run = job->run;
  run->lat_ms[run->done++] = fy_ctx_now(ctx) - job->started_ms;
  run->attempts += call->detail.attempts;
  if (status == 0)
    run->ok++;
  start_next(job); /* reusing the call struct inside its callback is legal */
}

static void start_next(job_t *job) {
  run_t *run = job->run;
  if (run->started == CALLS)
    return;
  run->started++;
  job->started_ms = fy_ctx_now(ctx);
  if (fy_call_start(&job->call, run->pipeline, &service_op, NULL, on_done) <
      0)
    run->done++;
}

static void on_event(fy_ctx_t *c, const fy_event_t *ev, void *user_data) {
  (void)c;
  (void)user_data;
  if (ev->type == FY_EV_RETRY && current != NULL)
    current->retries++;
}

static void on_tick(fy_deadline_t *d) {
  run_t *run = current;
  fprintf(stderr, "  [%-14s] %4u/%u done  %4u ok  %4u retries\n", run->label,
          run->done, CALLS, run->ok, run->retries);
  if (run->done < CALLS)
    fy_deadline_start(d, 250);
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

static uint64_t percentile(run_t *run, unsigned pct) {
  size_t i;
  if (run->done == 0)
    return 0;
  qsort(run->lat_ms, run->done, sizeof(uint64_t), cmp_u64);
  i = (size_t)run->done * pct / 100;
  return run->lat_ms[i >= run->done ? run->done - 1 : i];
}

static void run_workload(uv_loop_t *loop, run_t *run) {
  unsigned i;
  current = run;
  fprintf(stderr, "running %s (%d calls, %d%% of requests fail)\n", run->label,
          CALLS, FAIL_PERCENT);
  for (i = 0; i < CONCURRENCY; i++) {
    jobs[i].run = run;
    start_next(&jobs[i]);
  }
  fy_deadline_start(&ticker, 250);
  uv_run(loop, UV_RUN_DEFAULT);
  on_tick(&ticker);
}

static void on_ctx_closed(void *obj, void *user_data) {
  (void)obj;
  *(int *)user_data = 1;
}

int main(void) {
  uv_loop_t loop;
  fy_policy_t *retry;
  fy_listener_t *listener;
  retry_cfg_t *cfg;
  int closed = 0, rc, i;

  uv_loop_init(&loop);
  if ((rc = fy_ctx_new(&loop, NULL, &ctx)) != 0 ||
      (rc = fy_policy_new(ctx, &retry_vtable, sizeof(retry_cfg_t), "retry",
                          &retry)) != 0) {
    fprintf(stderr, "demo: %s\n", fy_strerror(rc));
    return 1;
  }
  cfg = fy_policy_impl(retry);
  cfg->max_attempts = 4;
  cfg->backoff_ms = 10;
  fy_ctx_listen(ctx, FY_EV_MASK(FY_EV_RETRY), on_event, NULL, &listener);
  fy_deadline_init(ctx, &ticker, on_tick);

  runs[0].label = "bare";
  runs[1].label = "fortify retry";
  if ((rc = fy_pipeline_new(ctx, NULL, 0, &runs[0].pipeline)) != 0 ||
      (rc = fy_pipeline_new(ctx, &retry, 1, &runs[1].pipeline)) != 0) {
    fprintf(stderr, "demo: %s\n", fy_strerror(rc));
    return 1;
  }
  for (i = 0; i < 2; i++) {
    rng_state = 12345; /* the same service behaviour for both runs */
    run_workload(&loop, &runs[i]);
  }

  printf("\n%-22s %12s %14s\n", "", runs[0].label, runs[1].label);
  printf("%-22s %12u %14u\n", "calls", runs[0].done, runs[1].done);
  printf("%-22s %11.1f%% %13.1f%%\n", "succeeded",
         100.0 * runs[0].ok / CALLS, 100.0 * runs[1].ok / CALLS);
  printf("%-22s %12u %14u\n", "attempts", runs[0].attempts, runs[1].attempts);
  printf("%-22s %12u %14u\n", "retries", runs[0].retries, runs[1].retries);
  printf("%-22s %10llums %12llums\n", "latency p50",
         (unsigned long long)percentile(&runs[0], 50),
         (unsigned long long)percentile(&runs[1], 50));
  printf("%-22s %10llums %12llums\n", "latency p99",
         (unsigned long long)percentile(&runs[0], 99),
         (unsigned long long)percentile(&runs[1], 99));

  fy_ctx_close(ctx, on_ctx_closed, &closed);
  uv_run(&loop, UV_RUN_DEFAULT);
  rc = uv_loop_close(&loop);
  if (!closed || rc != 0) {
    fprintf(stderr, "demo: unclean shutdown (%s)\n", fy_strerror(rc));
    return 1;
  }
  return runs[1].ok > runs[0].ok ? 0 : 1;
}
