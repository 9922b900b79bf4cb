/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * Real patterns composed into pipelines on a manual-clock context, driven by
 * a random script: calls started and cancelled, attempts reporting any
 * status (synchronously, late, never until cancelled, with results and
 * retry-after hints, with progress marks), time advancing, policies,
 * pipelines and the context closed mid-flight, breaker and bulkhead
 * permits taken through their synchronous APIs, and user callbacks (call
 * completions, operation hooks, listeners, every pattern's callback) that
 * cancel calls and close things from the inside.  Allocation failures can
 * be injected (one, or every one from some point on).
 *
 * Invariants: fy_call_start() either refuses with a known code and never
 * calls back, or calls back exactly once, never from inside fy_call_start()
 * or fy_call_cancel(), with a status <= 0; every attempt the operation saw
 * is reported once and the context cannot finish closing without that;
 * every result is destroyed exactly once (or taken); once every call has
 * completed, no frame, task or call is left (fy_ctx_stats), and once every
 * policy is closed no deadline either; every close callback runs exactly
 * once; nothing is allocated after the context is gone; nothing hangs. */
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include <fortify.h>

#include "fuzz.h"

#define NCALLS 24
#define NATT 256
#define NRES 4096
#define NLAYERS 6
#define NPIPES 3
#define NPERMITS 8

enum kind {
  K_BREAKER = 0,
  K_RETRY,
  K_TIMEOUT,
  K_BULKHEAD,
  K_FALLBACK,
  K_PASS,
  K__COUNT
};

typedef struct layer_s {
  int kind;
  void *handle; /* fy_breaker_t *, ... or the policy for K_PASS */
  fy_policy_t *policy;
  int close_asked;    /* a close was requested and accepted */
  unsigned closed_cb; /* its close callback ran */
  int held;           /* bulkhead permits held (try_acquire) */
} layer_t;

typedef struct pipe_s {
  fy_pipeline_t *pl;
  int close_asked;
  unsigned closed_cb;
} pipe_t;

typedef struct slot_s {
  fy_call_t call;
  int busy;     /* started, callback not yet run */
  unsigned ncb; /* callback runs for the current start */
  int action;   /* what the callback does */
} slot_t;

typedef struct att_s {
  fy_attempt_t *a;
  int ignore_cancel;
  int cancel_status;
} att_t;

typedef struct res_s {
  unsigned magic;
  unsigned destroyed;
} res_t;

#define RES_MAGIC 0x52455330u

static fz_t *Z;
static uv_loop_t loop;
static fy_ctx_t *ctx;
static layer_t L[NLAYERS];
static int nlayers;
static pipe_t PIPES[NPIPES];
static int npipes;
static fy_preset_t *preset;
static int preset_close_asked;
static unsigned preset_closed_cb;
static slot_t S[NCALLS];
static att_t A[NATT];
static res_t R[NRES];
static unsigned nres;
static fy_breaker_permit_t BP[NPERMITS];
static int BPL[NPERMITS]; /* the breaker layer holding permit i, or -1 */
static int ctx_close_asked;
static unsigned ctx_closed_cb;
static int in_api;   /* inside fy_call_start() / fy_call_cancel() */
static int draining; /* the end of the script: callbacks stay quiet */
static fy_listener_t *listener;
static int fb_arg;

/* ---- results ------------------------------------------------------------- */

static void res_dtor(void *p) {
  res_t *r = p;
  FZ_CHECK(r >= R && r < R + NRES && r->magic == RES_MAGIC,
           "a result that is not ours: %p", p);
  FZ_CHECK(r->destroyed == 0, "result %d destroyed twice", (int)(r - R));
  r->destroyed = 1;
}

static res_t *res_new(void) {
  if (nres >= NRES)
    return NULL;
  R[nres].magic = RES_MAGIC;
  R[nres].destroyed = 0;
  return &R[nres++];
}

/* ---- operation ----------------------------------------------------------- */

static int att_free_slot(void) {
  int i;
  for (i = 0; i < NATT; i++)
    if (A[i].a == NULL)
      return i;
  return -1;
}

static void report(int i, int status) {
  fy_attempt_t *a = A[i].a;
  int rc;
  A[i].a = NULL; /* dead once reported */
  if (!draining && fz_u8(Z) % 3 == 0) {
    res_t *r = res_new();
    if (r != NULL)
      fy_attempt_set_result(a, r, res_dtor);
  }
  if (!draining && fz_u8(Z) % 5 == 0)
    fy_attempt_set_retry_after(a, fz_time(Z));
  rc = fy_attempt_done(a, status);
  FZ_CHECK(rc == 0, "fy_attempt_done: %d", rc);
}

static int any_call(void) {
  return (int)fz_below(Z, NCALLS);
}

static int cancel_call(int s) {
  int rc;
  in_api++;
  rc = fy_call_cancel(&S[s].call);
  in_api--;
  if (S[s].busy)
    /* UV_EINVAL only for a call that is no longer active, its callback
     * not yet run: a listener of FY_EV_CALL_DONE or FY_EV_CALL_REFUSED. */
    FZ_CHECK(rc == 0 || rc == UV_EBUSY ||
                 (rc == UV_EINVAL && !fy_call_is_active(&S[s].call)),
             "cancel of a call in flight: %d", rc);
  else
    FZ_CHECK(rc == UV_EINVAL, "cancel of an idle call: %d", rc);
  return rc;
}

static int op_start(fy_attempt_t *a, void *arg) {
  uint8_t mode = draining ? 0 : fz_u8(Z);
  int i = att_free_slot(), status;
  res_t *r;

  FZ_CHECK(a->call != NULL, "an attempt starts for no call");
  FZ_CHECK(arg == &fb_arg || (arg != NULL && (slot_t *)arg >= S &&
                              (slot_t *)arg < S + NCALLS),
           "attempt arg %p", arg);
  if (i < 0)
    return UV_EAGAIN; /* out of attempt records: fail at once */
  switch (mode % 12) {
  case 4: /* reports inside start */
  case 5:
    status = mode % 12 == 4 ? 0 : fz_status(Z);
    if (fz_u8(Z) & 1 && (r = res_new()) != NULL)
      fy_attempt_set_result(a, r, res_dtor);
    fy_attempt_done(a, status);
    return 0;
  case 6: /* fails at once */
    status = fz_status(Z);
    return status < 0 ? status : UV_EIO;
  case 7: /* reports inside start and returns the status too */
    status = fz_status(Z);
    if (status >= 0)
      status = UV_EIO;
    fy_attempt_done(a, status);
    return status;
  default:
    break;
  }
  A[i].a = a;
  A[i].ignore_cancel = mode % 12 == 3;
  A[i].cancel_status = fz_u8(Z) % 4 == 0 ? fz_status(Z) : UV_ECANCELED;
  a->data = &A[i];
  if (mode % 12 == 8) {
    /* The operation cancels its own call from inside its start. */
    in_api++;
    (void)fy_call_cancel(a->call);
    in_api--;
  } else if (mode % 12 == 9) {
    fy_attempt_mark(a);
  }
  return 0;
}

static void op_cancel(fy_attempt_t *a, void *arg) {
  att_t *t = a->data;
  (void)arg;
  FZ_CHECK(t >= A && t < A + NATT && t->a == a, "cancel of an unknown attempt");
  if (t->ignore_cancel && !draining)
    return; /* reports whenever it likes */
  report((int)(t - A), t->cancel_status);
}

static const fy_op_t op_main = {op_start, op_cancel};
static const fy_op_t op_nocancel = {op_start, NULL};

/* ---- closing things ------------------------------------------------------ */

static void on_layer_closed(void *obj, void *ud) {
  layer_t *l = ud;
  FZ_CHECK(obj == l->handle, "close callback for %p, expected %p", obj,
           l->handle);
  l->closed_cb++;
}

static void on_pipe_closed(void *obj, void *ud) {
  pipe_t *p = ud;
  FZ_CHECK(obj == (void *)p->pl, "pipeline close callback object");
  p->closed_cb++;
}

static void on_preset_closed(void *obj, void *ud) {
  (void)ud;
  FZ_CHECK(obj == (void *)preset, "preset close callback object");
  preset_closed_cb++;
}

static void on_ctx_closed(void *obj, void *ud) {
  (void)ud;
  FZ_CHECK(obj == (void *)ctx, "context close callback object");
  ctx_closed_cb++;
}

/* Objects may be touched until their close callback ran; after a context
 * close, only calls and attempts are. */
static int layer_usable(const layer_t *l) {
  return l->handle != NULL && !ctx_close_asked && l->closed_cb == 0;
}

static void close_layer(layer_t *l) {
  int rc;
  if (!layer_usable(l))
    return;
  switch (l->kind) {
  case K_BREAKER:
    rc = fy_breaker_close(l->handle, on_layer_closed, l);
    break;
  case K_RETRY:
    rc = fy_retry_close(l->handle, on_layer_closed, l);
    break;
  case K_TIMEOUT:
    rc = fy_timeout_close(l->handle, on_layer_closed, l);
    break;
  case K_BULKHEAD:
    rc = fy_bulkhead_close(l->handle, on_layer_closed, l);
    break;
  case K_FALLBACK:
    rc = fy_fallback_close(l->handle, on_layer_closed, l);
    break;
  default:
    rc = fy_policy_close(l->policy, on_layer_closed, l);
    break;
  }
  FZ_CHECK(rc == 0 || (rc == FY_ECLOSED && l->close_asked),
           "close of layer kind %d: %d", l->kind, rc);
  if (rc == 0)
    l->close_asked = 1;
}

static void close_pipe(pipe_t *p) {
  int rc;
  if (p->pl == NULL || ctx_close_asked || p->closed_cb)
    return;
  rc = fy_pipeline_close(p->pl, on_pipe_closed, p);
  FZ_CHECK(rc == 0 || (rc == FY_ECLOSED && p->close_asked),
           "pipeline close: %d", rc);
  if (rc == 0)
    p->close_asked = 1;
}

static void close_ctx(void) {
  int rc;
  if (ctx_close_asked)
    return;
  rc = fy_ctx_close(ctx, on_ctx_closed, NULL);
  FZ_CHECK(rc == 0, "ctx close: %d", rc);
  ctx_close_asked = 1;
}

/* What any user callback may do: mostly nothing. */
static void maybe_act(void) {
  uint8_t what;
  if (draining)
    return;
  what = fz_u8(Z);
  if (what < 200)
    return;
  switch (what % 8) {
  case 0:
  case 1:
  case 2:
    cancel_call(any_call());
    break;
  case 3:
  case 4:
    if (nlayers > 0)
      close_layer(&L[fz_below(Z, (uint64_t)nlayers)]);
    break;
  case 5:
  case 6:
    if (npipes > 0)
      close_pipe(&PIPES[fz_below(Z, (uint64_t)npipes)]);
    break;
  default:
    if (fz_u8(Z) % 4 == 0)
      close_ctx();
    break;
  }
}

/* ---- calls --------------------------------------------------------------- */

static void start_call(int s);

static void call_cb(fy_call_t *call, int status) {
  slot_t *sl = fy_container_of(call, slot_t, call);
  void *result;
  fy_result_dtor dtor;

  FZ_CHECK(in_api == 0, "a callback ran inside fy_call_start/cancel");
  FZ_CHECK(sl->busy && sl->ncb == 0, "call %d called back twice",
           (int)(sl - S));
  FZ_CHECK(status <= 0, "status %d", status);
  FZ_CHECK(status == call->status, "status %d vs call->status %d", status,
           call->status);
  FZ_CHECK(!fy_call_is_active(call), "active inside its callback");
  sl->ncb++;
  sl->busy = 0;
  result = fy_call_result(call);
  if (result != NULL) {
    res_t *r = result;
    FZ_CHECK(r >= R && r < R + NRES && !r->destroyed, "dead result");
    if (fz_u8(Z) & 1) {
      FZ_CHECK(fy_call_take_result(call, &dtor) == result && dtor == res_dtor,
               "take_result");
      res_dtor(result); /* ours now: freed at once */
    }
  }
  if (draining)
    return;
  switch (sl->action) {
  case 1:
    start_call((int)(sl - S)); /* reuse the struct from its callback */
    break;
  case 2:
    maybe_act();
    break;
  default:
    break;
  }
}

static void start_call(int s) {
  slot_t *sl = &S[s];
  fy_call_opts_t opts;
  int rc, p;

  /* After a context close its pipelines may vanish at any moment. */
  if (sl->busy || npipes == 0 || ctx_close_asked)
    return;
  p = (int)fz_below(Z, (uint64_t)npipes + (preset != NULL));
  memset(&opts, 0, sizeof(opts));
  if (fz_u8(Z) % 4 == 0)
    opts.timeout_ms = fz_u8(Z) % 8 == 0 ? fz_u64_edge(Z) : fz_time(Z);
  opts.flags = fz_u8(Z) & 1 ? FY_CALL_IDEMPOTENT : 0;
  sl->action = (int)fz_below(Z, 4);
  sl->ncb = 0;
  sl->busy = 1; /* before: a synchronous refusal must never call back */
  in_api++;
  if (p == npipes) {
    if (preset_close_asked)
      rc = FY_ECLOSED; /* its pipeline may be gone already */
    else
      rc = fy_call_start_opts(&sl->call, fy_preset_pipeline(preset),
                              fz_u8(Z) & 1 ? &op_main : &op_nocancel, sl, &opts,
                              call_cb);
  } else if (PIPES[p].closed_cb) {
    rc = FY_ECLOSED; /* freed */
  } else {
    rc = fy_call_start_opts(&sl->call, PIPES[p].pl,
                            fz_u8(Z) & 1 ? &op_main : &op_nocancel, sl, &opts,
                            call_cb);
  }
  in_api--;
  if (rc == 0) {
    FZ_CHECK(sl->ncb == 0, "called back inside fy_call_start");
    return;
  }
  sl->busy = 0;
  FZ_CHECK(sl->ncb == 0, "a refused call was called back");
  FZ_CHECK(rc == UV_EINVAL || rc == UV_ENOMEM || rc == FY_ECLOSED ||
               rc == FY_ECIRCUITOPEN || rc == FY_EBULKHEADFULL ||
               rc == UV_ECANCELED || rc == FY_EDEADLINE || rc == UV_ETIMEDOUT,
           "fy_call_start refused with %d (%s)", rc, fy_err_name(rc));
  FZ_CHECK(!fy_call_is_active(&sl->call), "a refused call is active");
}

/* ---- policy callbacks ---------------------------------------------------- */

static void on_state(fy_breaker_state_t from, fy_breaker_state_t to, void *ud) {
  (void)from;
  (void)to;
  (void)ud;
  maybe_act();
}

static void on_retry(fy_call_t *call, unsigned attempt, int last,
                     uint64_t delay, void *ud) {
  (void)delay;
  (void)ud;
  FZ_CHECK(call != NULL && attempt >= 2 && last < 0, "on_retry(%u, %d)",
           attempt, last);
  maybe_act();
}

static void on_timeout(fy_timeout_t *t, fy_call_t *call,
                       fy_timeout_stage_t stage, uint64_t elapsed,
                       uint64_t limit, void *ud) {
  (void)t;
  (void)call;
  (void)elapsed;
  (void)limit;
  (void)ud;
  FZ_CHECK(stage >= FY_TIMEOUT_STAGE_TOTAL && stage <= FY_TIMEOUT_STAGE_IDLE,
           "on_timeout stage %d", stage);
  maybe_act();
}

static void on_rejected(int reason, void *ud) {
  (void)ud;
  FZ_CHECK(reason == FY_EBULKHEADFULL || reason == FY_EQUEUETIMEOUT ||
               reason == FY_ECLOSED,
           "on_rejected(%d)", reason);
  maybe_act();
}

static void on_fallback(int primary, void *ud) {
  (void)ud;
  FZ_CHECK(primary < 0, "fallback after %d", primary);
  maybe_act();
}

static fy_outcome_t fb_classify(int status, void *ud) {
  (void)ud;
  /* Only some failures fall back. */
  return status == 0 ? FY_OUTCOME_SUCCESS
                     : ((0u - (unsigned)status) % 3 ? FY_OUTCOME_FAILURE
                                                    : FY_OUTCOME_IGNORE);
}

static void on_event(fy_ctx_t *c, const fy_event_t *ev, void *ud) {
  (void)ud;
  FZ_CHECK(c == ctx, "listener for another context");
  FZ_CHECK((unsigned)ev->type < FY_EV__COUNT, "event type %d", ev->type);
  FZ_CHECK(ev->policy == NULL || ev->policy_kind != NULL, "kind missing");
  FZ_CHECK(ev->policy_name != NULL, "name missing");
  if (ev->type == FY_EV_CALL_DONE || ev->type == FY_EV_ATTEMPT_DONE)
    FZ_CHECK(ev->status <= 0, "event status %d", ev->status);
  if (!draining && fz_u8(Z) == 0xff && fz_u8(Z) % 2 == 0)
    cancel_call(any_call());
}

/* ---- building ------------------------------------------------------------ */

static int ok_or_enomem(int rc, const char *what) {
  FZ_CHECK(rc == 0 || rc == UV_ENOMEM, "%s: %d (%s)", what, rc,
           fy_err_name(rc));
  return rc == 0;
}

static void add_layer(fz_t *z) {
  layer_t *l = &L[nlayers];
  int rc;
  memset(l, 0, sizeof(*l));
  l->kind = (int)fz_below(z, K__COUNT);
  switch (l->kind) {
  case K_BREAKER: {
    fy_breaker_opts_t o;
    fy_breaker_t *b = NULL;
    fy_breaker_opts_init(&o);
    o.name = "b";
    o.failure_threshold = 1 + (uint32_t)fz_below(z, 4);
    o.open_ms = 1 + fz_time(z) % 1000;
    o.max_requests = 1 + (uint32_t)fz_below(z, 3);
    o.interval_ms = fz_u8(z) % 4 == 0 ? fz_time(z) % 10000 : 0;
    if (fz_u8(z) % 4 == 0) {
      o.window = FY_BREAKER_WINDOW_COUNT;
      o.window_calls = 1 + (uint32_t)fz_below(z, 16);
      o.minimum_calls = (uint32_t)fz_below(z, 8);
      o.slow_call_ms = fz_u8(z) & 1 ? fz_time(z) % 1000 : 0;
    }
    o.mode = fz_u8(z) % 8 == 0 ? (fy_breaker_mode_t)fz_below(z, 5)
                               : FY_BREAKER_NORMAL;
    o.on_state_change = on_state;
    rc = fy_breaker_new(ctx, &o, &b);
    l->handle = b;
    l->policy = fy_breaker_policy(b);
    break;
  }
  case K_RETRY: {
    fy_retry_opts_t o;
    fy_retry_t *r = NULL;
    fy_retry_opts_init(&o);
    o.max_attempts = 1 + (unsigned)fz_below(z, 4);
    o.initial_delay_ms = fz_time(z) % 200;
    o.max_delay_ms = fz_u8(z) & 1 ? fz_time(z) % 1000 : 0;
    o.jitter = (fy_retry_jitter_t)fz_below(z, 6);
    o.max_retry_after_ms = fz_time(z) % 2000;
    o.require_idempotent = (int)fz_below(z, 2);
    o.seed = 1 + fz_u8(z);
    o.on_retry = on_retry;
    rc = fy_retry_new(ctx, &o, &r);
    l->handle = r;
    l->policy = fy_retry_policy(r);
    break;
  }
  case K_TIMEOUT: {
    fy_timeout_opts_t o;
    fy_timeout_t *t = NULL;
    fy_timeout_opts_init(&o);
    o.timeout_ms = fz_u8(z) % 4 ? 1 + fz_time(z) % 300 : 0;
    o.first_byte_ms = fz_u8(z) % 4 == 0 ? 1 + fz_time(z) % 100 : 0;
    o.idle_ms = fz_u8(z) % 4 == 0 ? 1 + fz_time(z) % 100 : 0;
    if (o.timeout_ms == 0 && o.first_byte_ms == 0 && o.idle_ms == 0)
      o.timeout_ms = 50;
    o.scope = (fy_timeout_scope_t)fz_below(z, 2);
    o.on_timeout = on_timeout;
    rc = fy_timeout_new(ctx, &o, &t);
    l->handle = t;
    l->policy = fy_timeout_policy(t);
    break;
  }
  case K_BULKHEAD: {
    fy_bulkhead_opts_t o;
    fy_bulkhead_t *bh = NULL;
    fy_bulkhead_opts_init(&o);
    o.max_concurrent = 1 + (uint32_t)fz_below(z, 3);
    o.max_queue = (uint32_t)fz_below(z, 4);
    o.queue_timeout_ms = fz_u8(z) & 1 ? fz_time(z) % 500 : 0;
    o.order = (fy_bulkhead_order_t)fz_below(z, 2);
    o.on_rejected = on_rejected;
    rc = fy_bulkhead_new(ctx, &o, &bh);
    l->handle = bh;
    l->policy = fy_bulkhead_policy(bh);
    break;
  }
  case K_FALLBACK: {
    fy_fallback_opts_t o;
    fy_fallback_t *fb = NULL;
    fy_fallback_opts_init(&o);
    o.op = fz_u8(z) & 1 ? &op_main : &op_nocancel;
    o.arg = &fb_arg;
    if (fz_u8(z) & 1)
      o.should_fallback = fb_classify;
    o.on_fallback = on_fallback;
    rc = fy_fallback_new(ctx, &o, &fb);
    l->handle = fb;
    l->policy = fy_fallback_policy(fb);
    break;
  }
  default: {
    fy_policy_t *p = NULL;
    rc = fy_passthrough_new(ctx, "pass", &p);
    l->handle = p;
    l->policy = p;
    break;
  }
  }
  if (ok_or_enomem(rc, "policy new"))
    nlayers++;
  else
    FZ_CHECK(l->handle == NULL, "a failed constructor returned an object");
}

static void add_pipe(fz_t *z) {
  fy_policy_t *layers[NLAYERS];
  size_t n = 0;
  int i, rc;
  pipe_t *p = &PIPES[npipes];
  /* A random subsequence of the layers, in order or reversed: policies
   * are shared between pipelines. */
  int reverse = fz_u8(z) & 1;
  for (i = 0; i < nlayers; i++) {
    int k = reverse ? nlayers - 1 - i : i;
    if (npipes == 0 || fz_u8(z) & 1)
      layers[n++] = L[k].policy;
  }
  memset(p, 0, sizeof(*p));
  rc = fy_pipeline_new(ctx, layers, n, &p->pl);
  if (ok_or_enomem(rc, "pipeline new"))
    npipes++;
}

static void add_preset(fz_t *z) {
  fy_preset_opts_t o;
  int rc;
  fy_preset_opts_init(&o, (fy_preset_kind_t)fz_below(z, 3));
  o.name = "preset";
  o.attempt_timeout_ms = 1 + fz_time(z) % 500;
  o.total_timeout_ms =
      fz_u8(z) & 1 ? o.attempt_timeout_ms + fz_time(z) % 100000 : 0;
  o.retry_initial_delay_ms = fz_time(z) % 100;
  o.retry_max_delay_ms = fz_time(z) % 1000;
  o.breaker_open_ms = 1 + fz_time(z) % 1000;
  o.breaker_failures = (uint32_t)fz_below(z, 4);
  o.max_concurrent = (uint32_t)fz_below(z, 3);
  o.max_queue = (uint32_t)fz_below(z, 3);
  o.queue_timeout_ms = fz_time(z) % 200;
  rc = fy_preset_new(ctx, &o, &preset);
  if (!ok_or_enomem(rc, "preset new"))
    preset = NULL;
}

/* ---- the script ---------------------------------------------------------- */

static int live_attempts(void) {
  int i, n = 0;
  for (i = 0; i < NATT; i++)
    n += A[i].a != NULL;
  return n;
}

static int busy_calls(void) {
  int i, n = 0;
  for (i = 0; i < NCALLS; i++)
    n += S[i].busy;
  return n;
}

static void report_all(int status) {
  int i;
  for (i = 0; i < NATT; i++)
    if (A[i].a != NULL)
      report(i, status);
}

static layer_t *find_layer(int kind) {
  int i, start = (int)fz_below(Z, NLAYERS);
  for (i = 0; i < nlayers; i++) {
    layer_t *l = &L[(start + i) % nlayers];
    if (l->kind == kind && layer_usable(l))
      return l;
  }
  return NULL;
}

static void step(fz_t *z) {
  layer_t *l;
  int i, rc;

  switch (fz_u8(z) % 16) {
  case 0:
  case 1:
  case 2:
    if (!ctx_close_asked)
      start_call(any_call());
    break;
  case 3:
  case 4:
  case 5:
    i = (int)fz_below(z, NATT);
    for (rc = 0; rc < NATT && A[(i + rc) % NATT].a == NULL; rc++)
      ;
    if (rc < NATT) {
      i = (i + rc) % NATT;
      if (fz_u8(z) % 4 == 0)
        fy_attempt_mark(A[i].a);
      else
        report(i, fz_status(z));
    }
    break;
  case 6:
    cancel_call(any_call());
    break;
  case 7:
  case 8:
    FZ_CHECK(fy_ctx_advance(ctx, fz_time(z)) == 0, "advance");
    break;
  case 9:
    FZ_CHECK(fy_ctx_advance(ctx, 0) == 0, "advance 0");
    break;
  case 10:
    if (nlayers > 0 && fz_u8(z) % 4 == 0)
      close_layer(&L[fz_below(z, (uint64_t)nlayers)]);
    break;
  case 11:
    if (npipes > 0 && fz_u8(z) % 4 == 0)
      close_pipe(&PIPES[fz_below(z, (uint64_t)npipes)]);
    break;
  case 12:
    /* The synchronous API: a permit goes back to the breaker it came
     * from, exactly once. */
    i = (int)fz_below(z, NPERMITS);
    if (BPL[i] >= 0) {
      l = &L[BPL[i]];
      if (layer_usable(l)) {
        if (fz_u8(z) & 1)
          fy_breaker_record(l->handle, &BP[i], fz_status(z));
        else
          fy_breaker_release(l->handle, &BP[i]);
      }
      BPL[i] = -1;
    } else if ((l = find_layer(K_BREAKER)) != NULL) {
      switch (fz_u8(z) % 3) {
      case 0:
        rc = fy_breaker_acquire(l->handle, &BP[i], NULL);
        FZ_CHECK(rc == 0 || rc == FY_ECIRCUITOPEN || rc == FY_ECLOSED,
                 "breaker acquire: %d", rc);
        if (rc == 0)
          BPL[i] = (int)(l - L);
        break;
      case 1:
        fy_breaker_reset(l->handle);
        break;
      default:
        fy_breaker_set_mode(l->handle, (fy_breaker_mode_t)fz_below(z, 5));
        break;
      }
    }
    break;
  case 13:
    if ((l = find_layer(K_BULKHEAD)) != NULL) {
      if (l->held > 0 && fz_u8(z) & 1) {
        l->held--;
        fy_bulkhead_release(l->handle); /* may start a waiter right here */
      } else {
        rc = fy_bulkhead_try_acquire(l->handle);
        FZ_CHECK(rc == 0 || rc == FY_EBULKHEADFULL || rc == FY_ECLOSED,
                 "try_acquire: %d", rc);
        if (rc == 0)
          l->held++;
      }
    }
    break;
  case 14:
    report_all(fz_status(z));
    break;
  default:
    if (fz_u8(z) % 8 == 0 && preset != NULL && !preset_close_asked &&
        !ctx_close_asked) {
      rc = fy_preset_close(preset, on_preset_closed, NULL);
      FZ_CHECK(rc == 0, "preset close: %d", rc);
      preset_close_asked = 1;
    } else if (fz_u8(z) % 16 == 0) {
      close_ctx();
    } else {
      uv_run(&loop, UV_RUN_NOWAIT);
    }
    break;
  }
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  static int ready;
  (void)argc;
  (void)argv;
  if (ready++)
    return 0;
  if (uv_loop_init(&loop) != 0)
    abort();
  fz_alloc_install();
  return 0;
}

static void reset_globals(void) {
  memset(L, 0, sizeof(L));
  memset(PIPES, 0, sizeof(PIPES));
  memset(S, 0, sizeof(S));
  memset(A, 0, sizeof(A));
  memset(BP, 0, sizeof(BP));
  memset(BPL, 0xff, sizeof(BPL));
  nlayers = npipes = 0;
  nres = 0;
  preset = NULL;
  preset_close_asked = 0;
  preset_closed_cb = 0;
  ctx_close_asked = 0;
  ctx_closed_cb = 0;
  in_api = 0;
  draining = 0;
  listener = NULL;
  ctx = NULL;
}

/* Let everything finish: permits back, attempts reported, time forward. */
static void drain(void) {
  fy_ctx_stats_t st;
  int round, i;

  draining = 1;
  /* Permits go back while their owners may still be touched. */
  for (i = 0; i < NPERMITS; i++) {
    if (BPL[i] >= 0 && layer_usable(&L[BPL[i]]))
      fy_breaker_release(L[BPL[i]].handle, &BP[i]);
    BPL[i] = -1;
  }
  for (i = 0; i < nlayers; i++) {
    while (L[i].held > 0 && layer_usable(&L[i])) {
      L[i].held--;
      fy_bulkhead_release(L[i].handle);
    }
  }
  for (round = 0; round < 200 && !ctx_closed_cb; round++) {
    report_all(0);
    if (busy_calls() == 0 && live_attempts() == 0)
      break;
    FZ_CHECK(fy_ctx_advance(ctx, round < 100 ? 1000 : 25 * 3600 * 1000) == 0,
             "advance");
  }
  if (ctx_closed_cb)
    return;
  if (busy_calls() > 0 && !ctx_close_asked) {
    /* Two bulkheads shared by pipelines in opposite orders, queues without
     * a timeout: each call holds the slot the other waits for, as two
     * mutexes taken in opposite orders.  Nothing else may wait forever.
     * Cancelling the callers must end it. */
    int bulkheads = 0;
    for (i = 0; i < nlayers; i++)
      bulkheads += L[i].kind == K_BULKHEAD;
    FZ_CHECK(bulkheads >= 2 && npipes >= 2,
             "%d calls wait forever without a cross-bulkhead wait",
             busy_calls());
    for (i = 0; i < NCALLS; i++)
      if (S[i].busy)
        cancel_call(i);
    for (round = 0; round < 8; round++) {
      report_all(UV_ECANCELED);
      FZ_CHECK(fy_ctx_advance(ctx, 0) == 0, "advance");
    }
  }
  /* Deliver what the last reports queued (close tasks, say). */
  FZ_CHECK(fy_ctx_advance(ctx, 0) == 0, "advance");
  FZ_CHECK(busy_calls() == 0, "%d calls never completed", busy_calls());
  fy_ctx_stats(ctx, &st);
  FZ_CHECK(st.calls == 0 && st.frames == 0 && st.queued == 0,
           "idle context holds %zu calls, %zu frames, %zu tasks", st.calls,
           st.frames, st.queued);
  if (!ctx_close_asked) {
    for (i = 0; i < npipes; i++)
      close_pipe(&PIPES[i]);
    for (i = 0; i < nlayers; i++)
      close_layer(&L[i]);
    if (preset != NULL && !preset_close_asked) {
      FZ_CHECK(fy_preset_close(preset, on_preset_closed, NULL) == 0,
               "preset close");
      preset_close_asked = 1;
    }
    for (round = 0; round < 8; round++) {
      report_all(UV_ECANCELED);
      FZ_CHECK(fy_ctx_advance(ctx, 0) == 0, "advance");
    }
    FZ_CHECK(busy_calls() == 0, "%d calls survived every close", busy_calls());
    fy_ctx_stats(ctx, &st);
    FZ_CHECK(st.calls == 0 && st.frames == 0 && st.queued == 0 &&
                 st.deadlines == 0,
             "closed objects left %zu calls, %zu frames, %zu tasks, "
             "%zu deadlines",
             st.calls, st.frames, st.queued, st.deadlines);
    for (i = 0; i < nlayers; i++)
      FZ_CHECK(L[i].closed_cb == 1, "layer %d closed %u times", i,
               L[i].closed_cb);
    for (i = 0; i < npipes; i++)
      FZ_CHECK(PIPES[i].closed_cb == 1, "pipeline %d closed %u times", i,
               PIPES[i].closed_cb);
    if (preset != NULL)
      FZ_CHECK(preset_closed_cb == 1, "preset closed %u times",
               preset_closed_cb);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static int ready;
  fy_ctx_opts_t copts;
  fz_t z;
  long fail_at = -1, fail_from = -1;
  uint8_t sel;
  int i, n, rc;
  unsigned k;

  if (!ready++)
    LLVMFuzzerInitialize(NULL, NULL);
  fz_init(&z, data, size);
  Z = &z;
  reset_globals();
  sel = fz_u8(&z);
  if (sel % 8 == 1)
    fail_at = (long)fz_below(&z, 64);
  else if (sel % 8 == 2)
    fail_from = (long)fz_below(&z, 64);
  fz_alloc_reset(fail_at, fail_from);

  memset(&copts, 0, sizeof(copts));
  copts.manual_clock = 1;
  copts.manual_start_ms = fz_u32(&z);
  rc = fy_ctx_new(&loop, &copts, &ctx);
  if (!ok_or_enomem(rc, "fy_ctx_new")) {
    FZ_CHECK(ctx == NULL && fz_alloc_live() == 0, "failed ctx leaked");
    return 0;
  }
  if (fz_u8(&z) & 1) {
    rc = fy_ctx_listen(ctx, FY_EV_ALL, on_event, NULL, &listener);
    ok_or_enomem(rc, "listen");
  }
  n = 1 + (int)fz_below(&z, NLAYERS);
  for (i = 0; i < n; i++)
    add_layer(&z);
  n = 1 + (int)fz_below(&z, NPIPES);
  for (i = 0; i < n; i++)
    add_pipe(&z);
  if (fz_u8(&z) % 4 == 0)
    add_preset(&z);

  while (!fz_done(&z) && !ctx_closed_cb)
    step(&z);

  drain();
  close_ctx();
  for (i = 0; i < 16 && !ctx_closed_cb; i++) {
    report_all(UV_ECANCELED);
    uv_run(&loop, UV_RUN_NOWAIT);
  }
  FZ_CHECK(ctx_closed_cb == 1, "context closed %u times", ctx_closed_cb);
  FZ_CHECK(busy_calls() == 0, "%d calls never called back", busy_calls());
  FZ_CHECK(live_attempts() == 0, "attempts left");
  for (k = 0; k < nres; k++)
    FZ_CHECK(R[k].destroyed == 1, "result %u destroyed %u times", k,
             R[k].destroyed);
  FZ_CHECK(fz_alloc_live() == 0, "%ld blocks leaked", fz_alloc_live());
  FZ_CHECK(!uv_loop_alive(&loop), "handles left on the loop");
  return 0;
}
