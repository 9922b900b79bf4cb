/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * Option validation of every pattern and of presets (rule 9).  Every field
 * of the options struct comes from the input: integers over their whole
 * range, doubles including NaN, infinities, -0 and denormals, enums out of
 * range, names of any bytes and length.  An oracle written from the
 * documented ranges (docs/<pattern>.md, include/fortify/<pattern>.h) says
 * whether the options are valid; then
 *
 * - fy_<pattern>_opts_check() agrees with it (0 or UV_EINVAL);
 * - invalid: _new() returns UV_EINVAL, sets *out to NULL and allocates
 *   nothing (a preset: nothing left once the loop turns);
 * - valid: _new() succeeds, the name is kept (truncated to 63 bytes), and
 *   the policy works: calls through a pipeline holding it complete exactly
 *   once (or are refused as its pattern allows), then it closes, nothing is
 *   left in the context and nothing leaks.
 *
 * A disagreement between the oracle and the code is a bug in one of them,
 * or in the documentation. */
#include <math.h>
#include <string.h>
#include <uv.h>

#include <fortify.h>

#include "fuzz.h"

enum {
  P_BREAKER = 0,
  P_RETRY,
  P_TIMEOUT,
  P_BULKHEAD,
  P_FALLBACK,
  P_PRESET,
  P__COUNT
};

static uv_loop_t loop;
static fy_ctx_t *ctx;
static char name[128];

/* ---- a small operation --------------------------------------------------- */

#define NATT 64
static fy_attempt_t *live[NATT];
static int sync_next; /* the next start reports at once with this + 1 */

static int op_start(fy_attempt_t *a, void *arg) {
  int i;
  (void)arg;
  if (sync_next) {
    int st = sync_next - 1;
    sync_next = 0;
    fy_attempt_done(a, st);
    return 0;
  }
  for (i = 0; i < NATT; i++) {
    if (live[i] == NULL) {
      live[i] = a;
      a->data = &live[i];
      return 0;
    }
  }
  return UV_EAGAIN;
}

static void op_cancel(fy_attempt_t *a, void *arg) {
  fy_attempt_t **slot = a->data;
  (void)arg;
  *slot = NULL;
  fy_attempt_done(a, UV_ECANCELED);
}

static const fy_op_t op = {op_start, op_cancel};

static void report_all(int status) {
  int i;
  for (i = 0; i < NATT; i++) {
    fy_attempt_t *a = live[i];
    if (a != NULL) {
      live[i] = NULL;
      fy_attempt_done(a, status);
    }
  }
}

typedef struct call_s {
  fy_call_t call;
  int busy;
  unsigned ncb;
} call_t;

static void call_cb(fy_call_t *call, int status) {
  call_t *c = fy_container_of(call, call_t, call);
  FZ_CHECK(c->busy && c->ncb == 0, "called back twice");
  FZ_CHECK(status <= 0, "status %d", status);
  c->busy = 0;
  c->ncb++;
}

static void on_closed(void *obj, void *ud) {
  (void)obj;
  ++*(int *)ud;
}

/* Calls through a pipeline holding |policy| complete exactly once; the
 * pattern's refusals are allowed.  Then everything closes cleanly. */
static void exercise(fy_policy_t *policy, fy_pipeline_t *pl, fz_t *z) {
  call_t calls[3];
  fy_ctx_stats_t st;
  int i, rc, round, pclosed = 0, plclosed = 0;

  memset(calls, 0, sizeof(calls));
  for (i = 0; i < 3; i++) {
    calls[i].busy = 1;
    sync_next = i == 0 ? 1 : 0; /* the first succeeds at once */
    rc = fy_call_start(&calls[i].call, pl, &op, NULL, call_cb);
    sync_next = 0;
    if (rc != 0) {
      calls[i].busy = 0;
      FZ_CHECK(rc == FY_ECIRCUITOPEN || rc == FY_EBULKHEADFULL ||
                   rc == UV_ECANCELED,
               "a valid policy refused with %d (%s)", rc, fy_err_name(rc));
    }
  }
  report_all(UV_EIO); /* the second fails (retried, fallen back, ...) */
  if (calls[2].busy)
    fy_call_cancel(&calls[2].call);
  for (round = 0; round < 64; round++) {
    report_all(0);
    if (!calls[0].busy && !calls[1].busy && !calls[2].busy)
      break;
    FZ_CHECK(fy_ctx_advance(ctx, round < 8 ? fz_time(z) + 1
                                           : (uint64_t)48 * 3600 * 1000) == 0,
             "advance");
  }
  FZ_CHECK(!calls[0].busy && !calls[1].busy && !calls[2].busy,
           "calls never completed");
  FZ_CHECK(fy_policy_close(policy, on_closed, &pclosed) == 0, "close");
  FZ_CHECK(fy_pipeline_close(pl, on_closed, &plclosed) == 0, "close");
  FZ_CHECK(fy_ctx_advance(ctx, 0) == 0, "advance");
  FZ_CHECK(pclosed == 1 && plclosed == 1, "closed %d / %d", pclosed, plclosed);
  fy_ctx_stats(ctx, &st);
  FZ_CHECK(st.calls == 0 && st.frames == 0 && st.queued == 0 &&
               st.deadlines == 0,
           "left %zu calls, %zu frames, %zu tasks, %zu deadlines", st.calls,
           st.frames, st.queued, st.deadlines);
}

static void check_name(fy_policy_t *p) {
  const char *got = fy_policy_name(p);
  FZ_CHECK(strlen(got) <= FY_NAME_MAX && strncmp(got, name, FY_NAME_MAX) == 0,
           "name '%s' kept as '%s'", name, got);
}

/* ---- the oracle ---------------------------------------------------------- */

static int in_rate(double r) {
  return r > 0.0 && r <= 100.0;
}

static int breaker_valid(const fy_breaker_opts_t *o) {
  const uint64_t max = FY_BREAKER_DURATION_MAX;
  uint64_t open = o->open_ms == 0 ? 60000 : o->open_ms;
  if ((unsigned)o->mode >= FY_BREAKER_MODE__COUNT ||
      (unsigned)o->window >= FY_BREAKER_WINDOW__COUNT)
    return 0;
  if (o->interval_ms > max || open > max || o->slow_call_ms > max ||
      o->open_max_ms > max || (o->open_max_ms != 0 && o->open_max_ms < open))
    return 0;
  if (!in_rate(o->failure_rate) || !in_rate(o->slow_call_rate))
    return 0;
  if (!(o->open_multiplier >= 1.0 && o->open_multiplier <= 1000.0))
    return 0;
  if (o->window == FY_BREAKER_WINDOW_COUNT &&
      (o->window_calls < 1 || o->window_calls > FY_BREAKER_WINDOW_CALLS_MAX))
    return 0;
  if (o->window == FY_BREAKER_WINDOW_TIME &&
      (o->window_ms < 1 || o->window_ms > max || o->window_buckets < 1 ||
       o->window_buckets > FY_BREAKER_BUCKETS_MAX ||
       o->window_buckets > o->window_ms))
    return 0;
  return 1;
}

static int codes_valid(const int *codes, unsigned n) {
  unsigned i;
  if (n > FY_RETRY_CODES_MAX)
    return 0;
  for (i = 0; i < n; i++)
    if (codes[i] >= 0)
      return 0;
  return 1;
}

static int retry_valid(const fy_retry_opts_t *o) {
  const uint64_t day = 86400000u;
  return o->max_attempts >= 1 && o->max_attempts <= 1000 &&
         o->initial_delay_ms <= day && o->max_delay_ms <= day &&
         o->max_retry_after_ms <= day && isfinite(o->multiplier) &&
         o->multiplier >= 1.0 && o->multiplier <= 100.0 &&
         isfinite(o->jitter_ratio) && o->jitter_ratio >= 0.0 &&
         o->jitter_ratio <= 1.0 && (unsigned)o->backoff <= 2 &&
         (unsigned)o->jitter <= 5 &&
         (o->require_idempotent == 0 || o->require_idempotent == 1) &&
         codes_valid(o->non_retryable, o->non_retryable_count) &&
         codes_valid(o->retryable, o->retryable_count) &&
         (o->codes_mode == FY_RETRY_CODES_ADD ||
          (o->codes_mode == FY_RETRY_CODES_ONLY && o->retryable_count >= 1));
}

static int timeout_valid(const fy_timeout_opts_t *o) {
  const uint64_t max = FY_TIMEOUT_MAX_MS;
  return o->timeout_ms <= max && o->first_byte_ms <= max && o->idle_ms <= max &&
         (o->timeout_ms | o->first_byte_ms | o->idle_ms) != 0 &&
         (unsigned)o->scope <= 1;
}

static int bulkhead_valid(const fy_bulkhead_opts_t *o) {
  return o->max_concurrent >= 1 && o->max_concurrent <= 0x7fffffffu &&
         o->max_queue <= 0x7fffffffu &&
         o->queue_timeout_ms <= (uint64_t)INT64_MAX &&
         (o->order == FY_BULKHEAD_FIFO || o->order == FY_BULKHEAD_LIFO);
}

static int preset_valid(const fy_preset_opts_t *o) {
  const uint64_t day = 86400000u;
  if (o->attempt_timeout_ms == 0 || o->attempt_timeout_ms > FY_TIMEOUT_MAX_MS)
    return 0;
  if (o->total_timeout_ms != 0 &&
      (o->total_timeout_ms < o->attempt_timeout_ms ||
       o->total_timeout_ms > FY_TIMEOUT_MAX_MS))
    return 0;
  if (o->max_concurrent != 0 &&
      (o->max_concurrent > 0x7fffffffu || o->max_queue > 0x7fffffffu ||
       o->queue_timeout_ms > (uint64_t)INT64_MAX))
    return 0;
  if (o->max_attempts < 1 || o->max_attempts > 1000 ||
      o->retry_initial_delay_ms > day || o->retry_max_delay_ms > day ||
      (unsigned)o->retry_jitter > 5 ||
      (o->require_idempotent != 0 && o->require_idempotent != 1))
    return 0;
  if (o->breaker_open_ms > FY_BREAKER_DURATION_MAX ||
      o->breaker_interval_ms > FY_BREAKER_DURATION_MAX)
    return 0;
  return 1;
}

/* ---- generators: any value at all ---------------------------------------- */

static int any_enum(fz_t *z) {
  uint8_t s = fz_u8(z);
  if (s < 200)
    return s % 8;
  return (int)fz_u32(z);
}

static const char *any_name(fz_t *z) {
  name[0] = '\0'; /* NULL reads as "" */
  return fz_u8(z) % 4 == 0 ? NULL : fz_string(z, name, sizeof(name));
}

static void gen_codes(fz_t *z, int *codes, unsigned *count) {
  unsigned i;
  *count = fz_u8(z) % 4 == 0 ? fz_u32_edge(z) : (unsigned)fz_below(z, 4);
  for (i = 0; i < FY_RETRY_CODES_MAX; i++)
    codes[i] = fz_u8(z) % 8 == 0 ? (int)fz_u32(z) : fz_status(z);
}

static fy_outcome_t classify(int status, void *ud) {
  return fy_classify_default(status, ud);
}

static int op2_start(fy_attempt_t *a, void *arg) {
  (void)arg;
  fy_attempt_done(a, 0);
  return 0;
}
static const fy_op_t fallback_op = {op2_start, NULL};
static const fy_op_t no_start_op = {NULL, NULL};

/* The pattern's own check of the options agrees with the oracle. */
static void check_agrees(int which, int rc, int valid) {
  FZ_CHECK(rc == 0 || rc == UV_EINVAL, "pattern %d: opts_check gave %d",
           which, rc);
  FZ_CHECK((rc == 0) == (valid != 0),
           "pattern %d: opts_check says %d, the oracle %s", which, rc,
           valid ? "valid" : "invalid");
}

/* Create the policy |which| from the input: 1 created, 0 refused. */
static int make(int which, fz_t *z, fy_policy_t **policy) {
  long before = fz_alloc_live();
  int rc, valid;
  void *out = (void *)&out; /* must come back NULL on failure */

  *policy = NULL;
  switch (which) {
  case P_BREAKER: {
    fy_breaker_opts_t o;
    fy_breaker_opts_init(&o);
    o.name = any_name(z);
    o.max_requests = fz_u32_edge(z);
    o.interval_ms = fz_u64_edge(z);
    o.open_ms = fz_u64_edge(z);
    o.failure_threshold = fz_u32_edge(z);
    o.classify = fz_u8(z) & 1 ? classify : NULL;
    o.window = (fy_breaker_window_t)any_enum(z);
    o.window_calls = fz_u32_edge(z);
    o.window_ms = fz_u64_edge(z);
    o.window_buckets = fz_u32_edge(z);
    o.minimum_calls = fz_u32_edge(z);
    o.failure_rate = fz_double(z);
    o.slow_call_rate = fz_double(z);
    o.slow_call_ms = fz_u64_edge(z);
    o.open_multiplier = fz_double(z);
    o.open_max_ms = fz_u64_edge(z);
    o.mode = (fy_breaker_mode_t)any_enum(z);
    /* Windows are allocated with the breaker: keep them affordable. */
    if (o.window == FY_BREAKER_WINDOW_COUNT && o.window_calls > (1u << 16))
      o.window_calls = FY_BREAKER_WINDOW_CALLS_MAX + (fz_u8(z) & 1);
    valid = breaker_valid(&o);
    check_agrees(which, fy_breaker_opts_check(&o), valid);
    rc = fy_breaker_new(ctx, &o, (fy_breaker_t **)&out);
    if (rc == 0)
      *policy = fy_breaker_policy(out);
    break;
  }
  case P_RETRY: {
    fy_retry_opts_t o;
    fy_retry_opts_init(&o);
    o.name = any_name(z);
    o.max_attempts = fz_u32_edge(z);
    o.initial_delay_ms = fz_u64_edge(z);
    o.max_delay_ms = fz_u64_edge(z);
    o.multiplier = fz_double(z);
    o.backoff = (fy_retry_backoff_t)any_enum(z);
    o.jitter = (fy_retry_jitter_t)any_enum(z);
    o.jitter_ratio = fz_double(z);
    o.max_retry_after_ms = fz_u64_edge(z);
    o.require_idempotent = any_enum(z);
    o.seed = fz_u64(z);
    gen_codes(z, o.non_retryable, &o.non_retryable_count);
    gen_codes(z, o.retryable, &o.retryable_count);
    o.codes_mode = (fy_retry_codes_mode_t)any_enum(z);
    valid = retry_valid(&o);
    check_agrees(which, fy_retry_opts_check(&o), valid);
    rc = fy_retry_new(ctx, &o, (fy_retry_t **)&out);
    if (rc == 0)
      *policy = fy_retry_policy(out);
    break;
  }
  case P_TIMEOUT: {
    fy_timeout_opts_t o;
    fy_timeout_opts_init(&o);
    o.name = any_name(z);
    o.timeout_ms = fz_u64_edge(z);
    o.first_byte_ms = fz_u8(z) & 1 ? 0 : fz_u64_edge(z);
    o.idle_ms = fz_u8(z) & 1 ? 0 : fz_u64_edge(z);
    o.scope = (fy_timeout_scope_t)any_enum(z);
    valid = timeout_valid(&o);
    check_agrees(which, fy_timeout_opts_check(&o), valid);
    rc = fy_timeout_new(ctx, &o, (fy_timeout_t **)&out);
    if (rc == 0)
      *policy = fy_timeout_policy(out);
    break;
  }
  case P_BULKHEAD: {
    fy_bulkhead_opts_t o;
    fy_bulkhead_opts_init(&o);
    o.name = any_name(z);
    o.max_concurrent = fz_u32_edge(z);
    o.max_queue = fz_u32_edge(z);
    o.queue_timeout_ms = fz_u64_edge(z);
    o.order = (fy_bulkhead_order_t)any_enum(z);
    valid = bulkhead_valid(&o);
    check_agrees(which, fy_bulkhead_opts_check(&o), valid);
    rc = fy_bulkhead_new(ctx, &o, (fy_bulkhead_t **)&out);
    if (rc == 0)
      *policy = fy_bulkhead_policy(out);
    break;
  }
  case P_FALLBACK: {
    fy_fallback_opts_t o;
    uint8_t s;
    fy_fallback_opts_init(&o);
    o.name = any_name(z);
    s = fz_u8(z);
    o.op = s % 4 == 0 ? NULL : s % 4 == 1 ? &no_start_op : &fallback_op;
    o.should_fallback = fz_u8(z) & 1 ? classify : NULL;
    s = fz_u8(z); /* NULL options: there is no default operation */
    valid = s % 16 != 0 && o.op != NULL && o.op->start != NULL;
    check_agrees(which, fy_fallback_opts_check(s % 16 ? &o : NULL), valid);
    rc = fy_fallback_new(ctx, s % 16 ? &o : NULL, (fy_fallback_t **)&out);
    if (rc == 0)
      *policy = fy_fallback_policy(out);
    break;
  }
  default: {
    fy_preset_opts_t o;
    fy_preset_opts_init(&o, (fy_preset_kind_t)any_enum(z));
    o.name = any_name(z);
    o.attempt_timeout_ms = fz_u64_edge(z);
    o.total_timeout_ms = fz_u8(z) & 1 ? 0 : fz_u64_edge(z);
    o.max_attempts = fz_u32_edge(z);
    o.retry_initial_delay_ms = fz_u64_edge(z);
    o.retry_max_delay_ms = fz_u64_edge(z);
    o.retry_jitter = (fy_retry_jitter_t)any_enum(z);
    o.require_idempotent = any_enum(z);
    o.breaker_failures = fz_u32_edge(z);
    o.breaker_open_ms = fz_u64_edge(z);
    o.breaker_max_requests = fz_u32_edge(z);
    o.breaker_interval_ms = fz_u64_edge(z);
    o.max_concurrent = fz_u8(z) & 1 ? 0 : fz_u32_edge(z);
    o.max_queue = fz_u32_edge(z);
    o.queue_timeout_ms = fz_u64_edge(z);
    valid = preset_valid(&o);
    check_agrees(which, fy_preset_opts_check(&o), valid);
    rc = fy_preset_new(ctx, &o, (fy_preset_t **)&out);
    if (rc == 0) {
      /* The preset's own pipeline is exercised; keep it. */
      *policy = (fy_policy_t *)out;
      return 2;
    }
    break;
  }
  }
  if (!valid) {
    FZ_CHECK(rc == UV_EINVAL, "pattern %d: invalid options accepted (%d)",
             which, rc);
    FZ_CHECK(out == NULL, "pattern %d: *out not cleared", which);
    if (which == P_PRESET)
      FZ_CHECK(fy_ctx_advance(ctx, 0) == 0, "advance");
    FZ_CHECK(fz_alloc_live() == before,
             "pattern %d: a refused constructor left %ld blocks", which,
             fz_alloc_live() - before);
    return 0;
  }
  FZ_CHECK(rc == 0, "pattern %d: valid options refused: %d (%s)", which, rc,
           fy_err_name(rc));
  return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static int ready;
  fy_ctx_opts_t copts;
  fy_policy_t *policy;
  fy_pipeline_t *pl = NULL;
  fz_t z;
  int which, made, closed = 0, i;

  if (!ready++) {
    FZ_CHECK(uv_loop_init(&loop) == 0, "uv_loop_init");
    fz_alloc_install();
  }
  fz_init(&z, data, size);
  memset(live, 0, sizeof(live));
  memset(&copts, 0, sizeof(copts));
  copts.manual_clock = 1;
  FZ_CHECK(fy_ctx_new(&loop, &copts, &ctx) == 0, "fy_ctx_new");
  which = (int)fz_below(&z, P__COUNT);
  made = make(which, &z, &policy);
  if (made == 1) {
    check_name(policy);
    FZ_CHECK(fy_pipeline_new(ctx, &policy, 1, &pl) == 0, "pipeline");
    exercise(policy, pl, &z);
  } else if (made == 2) {
    fy_preset_t *p = (fy_preset_t *)policy;
    int pclosed = 0;
    call_t c;
    memset(&c, 0, sizeof(c));
    c.busy = 1;
    sync_next = 1;
    if (fy_call_start(&c.call, fy_preset_pipeline(p), &op, NULL, call_cb) != 0)
      c.busy = 0;
    sync_next = 0;
    FZ_CHECK(fy_ctx_advance(ctx, 0) == 0, "advance");
    FZ_CHECK(!c.busy, "a preset call never completed");
    FZ_CHECK(fy_preset_close(p, on_closed, &pclosed) == 0, "preset close");
    FZ_CHECK(fy_ctx_advance(ctx, 0) == 0, "advance");
    FZ_CHECK(pclosed == 1, "preset closed %d times", pclosed);
  }
  FZ_CHECK(fy_ctx_close(ctx, on_closed, &closed) == 0, "ctx close");
  for (i = 0; i < 4 && !closed; i++)
    uv_run(&loop, UV_RUN_DEFAULT);
  FZ_CHECK(closed == 1, "ctx closed %d times", closed);
  FZ_CHECK(fz_alloc_live() == 0, "%ld blocks leaked", fz_alloc_live());
  return 0;
}
