/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * The cost of the pipeline core around one asynchronous operation.
 *
 * op.bare: no fortify.  What a user writes by hand: an operation as a
 *   struct of start/cancel function pointers, a request that records the
 *   attempt, and a completion callback called through a function pointer.
 *   One op = start (the operation records the attempt) + completion from
 *   the bench loop.
 * op.pipeline.passthrough_K (K = 0, 1, 4): fy_call_start() on a pipeline of
 *   K fy_passthrough policies, real-clock context; the operation records
 *   its attempt and the bench loop completes it with fy_attempt_done(), so
 *   the outcome travels up and reaches the callback synchronously (no
 *   deferral).  Must not allocate once the freelists are warm.
 * op.pipeline.sync_0: 0 policies, manual-clock context; the operation
 *   completes inside start(), so the outcome is queued and delivered by
 *   fy_ctx_advance(ctx, 0): the deferral path.
 *
 * op.pipeline.passthrough_0.manual_clock (extra): passthrough_0 on a
 *   manual-clock context.  Neither reads a clock: latency is measured only
 *   when asked for.
 * op.pipeline.passthrough_0.timed: passthrough_0 on a context made with
 *   measure_calls, so every call reads uv_hrtime() twice for
 *   detail.elapsed_ns: what the latency costs when it is wanted.
 *
 * ratio_to_bare = ns_per_op / op.bare's ns_per_op (best against best). */
#include "bench.h"

/* ---- op.bare: the hand-written baseline -------------------------------- */

typedef struct bare_req_s bare_req_t;

typedef struct bare_op_s {
  int (*start)(bare_req_t *req, void *arg);
  void (*cancel)(bare_req_t *req, void *arg);
} bare_op_t;

typedef void (*bare_cb)(bare_req_t *req, int status);

struct bare_req_s {
  void *data;
  const bare_op_t *op;
  void *arg;
  bare_cb cb;
  unsigned attempts;
  int active;
  int status;
};

/* Not inlined into the bench loop: the fortify entry points live in another
 * object file, so the baseline pays calls as well. */
__attribute__((noinline, noclone)) static int
bare_start(bare_req_t *req, const bare_op_t *op, void *arg, bare_cb cb) {
  int rc;
  if (req->active)
    return UV_EBUSY;
  req->op = op;
  req->arg = arg;
  req->cb = cb;
  req->attempts++;
  req->active = 1;
  rc = op->start(req, arg);
  if (rc < 0)
    req->active = 0;
  return rc;
}

__attribute__((noinline, noclone)) static void bare_done(bare_req_t *req,
                                                         int status) {
  if (!req->active)
    return;
  req->active = 0;
  req->status = status;
  req->cb(req, status);
}

typedef struct bare_state_s {
  bare_req_t req;
  bare_req_t *held; /* the attempt under way */
  const bare_op_t *op;
  uint64_t done;
  int rc;
} bare_state_t;

static int bare_op_start(bare_req_t *req, void *arg) {
  bare_state_t *st = arg;
  st->held = req;
  return 0;
}

static void bare_op_cancel(bare_req_t *req, void *arg) {
  (void)arg;
  bare_done(req, UV_ECANCELED);
}

static const bare_op_t bare_op = {bare_op_start, bare_op_cancel};

static void bare_on_done(bare_req_t *req, int status) {
  bare_state_t *st = req->data;
  (void)status;
  st->done++;
}

static void bare_loop(void *arg, uint64_t n) {
  bare_state_t *st = arg;
  const bare_op_t *op = st->op;
  uint64_t i;
  int rc = 0;
  /* The table is opaque to the optimiser, as fy_op_t is to the library. */
  BENCH_OPAQUE(op);
  for (i = 0; i < n; i++) {
    rc |= bare_start(&st->req, op, st, bare_on_done);
    bare_done(st->held, 0);
  }
  st->rc |= rc;
}

static double bench_bare(void) {
  bare_state_t st;
  bench_result_t r;
  memset(&st, 0, sizeof(st));
  st.req.data = &st;
  st.op = &bare_op;
  bench_run(bare_loop, &st, &r);
  BENCH_CHECK(st.rc == 0);
  BENCH_CHECK(st.done == st.req.attempts);
  bench_print("op.bare", &r, NULL);
  return r.best_ns;
}

/* ---- fortify pipelines ------------------------------------------------- */

typedef struct fy_state_s {
  uv_loop_t loop;
  fy_ctx_t *ctx;
  fy_pipeline_t *pl;
  fy_policy_t *policies[FY_PIPELINE_MAX];
  size_t npolicies;
  fy_call_t call;
  fy_attempt_t *held;
  uint64_t started;
  uint64_t done;
  int bad_status;
  int rc;
} fy_state_t;

static void on_closed(void *obj, void *user_data) {
  (void)obj;
  (*(int *)user_data)++;
}

static int held_start(fy_attempt_t *attempt, void *arg) {
  fy_state_t *st = arg;
  st->held = attempt;
  st->started++;
  return 0;
}

static int sync_start(fy_attempt_t *attempt, void *arg) {
  fy_state_t *st = arg;
  st->started++;
  return fy_attempt_done(attempt, 0);
}

static void op_cancel(fy_attempt_t *attempt, void *arg) {
  (void)arg;
  fy_attempt_done(attempt, UV_ECANCELED);
}

static const fy_op_t held_op = {held_start, op_cancel};
static const fy_op_t sync_op = {sync_start, op_cancel};

static void on_call_done(fy_call_t *call, int status) {
  fy_state_t *st = call->data;
  if (status != 0)
    st->bad_status = 1;
  st->done++;
}

static void setup(fy_state_t *st, int manual, int timed, size_t npolicies) {
  fy_ctx_opts_t opts;
  size_t i;
  memset(st, 0, sizeof(*st));
  memset(&opts, 0, sizeof(opts));
  opts.manual_clock = manual;
  opts.measure_calls = timed;
  BENCH_CHECK(uv_loop_init(&st->loop) == 0);
  BENCH_CHECK(fy_ctx_new(&st->loop, &opts, &st->ctx) == 0);
  for (i = 0; i < npolicies; i++)
    BENCH_CHECK(fy_passthrough_new(st->ctx, "pt", &st->policies[i]) == 0);
  st->npolicies = npolicies;
  BENCH_CHECK(fy_pipeline_new(st->ctx, st->policies, npolicies, &st->pl) == 0);
  st->call.data = st;
}

static void teardown(fy_state_t *st) {
  fy_ctx_stats_t stats;
  int closed = 0;
  fy_ctx_stats(st->ctx, &stats);
  BENCH_CHECK(stats.calls == 0 && stats.frames == 0 && stats.queued == 0);
  BENCH_CHECK(st->rc == 0 && st->bad_status == 0);
  BENCH_CHECK(st->done == st->started);
  /* Closing the context closes the pipeline and the policies. */
  BENCH_CHECK(fy_ctx_close(st->ctx, on_closed, &closed) == 0);
  BENCH_CHECK(uv_run(&st->loop, UV_RUN_DEFAULT) == 0);
  BENCH_CHECK(closed == 1);
  BENCH_CHECK(uv_loop_close(&st->loop) == 0);
}

/* Start the call, then complete the held attempt from here. */
static void held_loop(void *arg, uint64_t n) {
  fy_state_t *st = arg;
  uint64_t i;
  int rc = 0;
  for (i = 0; i < n; i++) {
    rc |= fy_call_start(&st->call, st->pl, &held_op, st, on_call_done);
    rc |= fy_attempt_done(st->held, 0);
  }
  st->rc |= rc;
}

/* The attempt completes inside start(): delivered by the advance. */
static void sync_loop(void *arg, uint64_t n) {
  fy_state_t *st = arg;
  uint64_t i;
  int rc = 0;
  for (i = 0; i < n; i++) {
    rc |= fy_call_start(&st->call, st->pl, &sync_op, st, on_call_done);
    rc |= fy_ctx_advance(st->ctx, 0);
  }
  st->rc |= rc;
}

static void bench_pipeline(const char *name, int sync, int manual, int timed,
                           size_t npolicies, double bare_ns) {
  fy_state_t st;
  bench_result_t r;
  setup(&st, manual, timed, npolicies);
  bench_run(sync ? sync_loop : held_loop, &st, &r);
  bench_print(name, &r,
              ", \"policies\": %zu, \"clock\": \"%s\", \"ratio_to_bare\": "
              "%.2f",
              npolicies, manual ? "manual" : "real", r.best_ns / bare_ns);
  teardown(&st);
}

int main(void) {
  double bare_ns;
  bench_init();
  bare_ns = bench_bare();
  bench_pipeline("op.pipeline.passthrough_0", 0, 0, 0, 0, bare_ns);
  bench_pipeline("op.pipeline.passthrough_0.timed", 0, 0, 1, 0, bare_ns);
  bench_pipeline("op.pipeline.passthrough_1", 0, 0, 0, 1, bare_ns);
  bench_pipeline("op.pipeline.passthrough_4", 0, 0, 0, 4, bare_ns);
  bench_pipeline("op.pipeline.sync_0", 1, 1, 0, 0, bare_ns);
  bench_pipeline("op.pipeline.passthrough_0.manual_clock", 0, 1, 0, 0,
                 bare_ns);
  BENCH_CHECK(bench_live_blocks() == 0);
  return 0;
}
