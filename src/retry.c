/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * Retry: run the layer below again after a failure, with a backoff that is
 * a deadline on the context's wheel.
 *
 * The first half is pure (option checks, PRNG, backoff formulas,
 * classification, the decision after an outcome; see retry.h).  The second
 * half is the driver: a frame is either running a try (PHASE_TRY), waiting
 * in a backoff (PHASE_BACKOFF), starting the next try from the timer
 * (PHASE_FIRING: user callbacks run there and may cancel or close
 * anything), or finished (PHASE_DONE). */
#include <math.h>
#include <string.h>

#include "internal.h"
#include "retry.h"

/* ---- options ----------------------------------------------------------- */

void fy_retry_opts_init(fy_retry_opts_t *opts) {
  if (opts == NULL)
    return;
  memset(opts, 0, sizeof(*opts));
  opts->max_attempts = 3;
  opts->initial_delay_ms = 100;
  opts->max_delay_ms = 0;
  opts->multiplier = 2.0;
  opts->backoff = FY_RETRY_BACKOFF_EXPONENTIAL;
  opts->jitter = FY_RETRY_JITTER_NONE;
  opts->jitter_ratio = 0.2;
  opts->max_retry_after_ms = 30000;
}

static int codes_ok(const int *codes, unsigned count) {
  unsigned i;
  if (count > FY_RETRY_CODES_MAX)
    return 0;
  /* Statuses are negative: 0 is a success and is never retried, a
   * positive value is not a status at all. */
  for (i = 0; i < count; i++)
    if (codes[i] >= 0)
      return 0;
  return 1;
}

int fy__retry_opts_check(const fy_retry_opts_t *o) {
  if (o->max_attempts < 1 || o->max_attempts > FY_RETRY_ATTEMPTS_MAX)
    return UV_EINVAL;
  if (o->initial_delay_ms > FY_RETRY_DELAY_LIMIT_MS ||
      o->max_delay_ms > FY_RETRY_DELAY_LIMIT_MS ||
      o->max_retry_after_ms > FY_RETRY_DELAY_LIMIT_MS)
    return UV_EINVAL;
  /* isfinite() is false for NaN too: a NaN multiplier must not pass as it
   * does in Fortify (W11). */
  if (!isfinite(o->multiplier) || o->multiplier < 1.0 ||
      o->multiplier > FY_RETRY_MULTIPLIER_MAX)
    return UV_EINVAL;
  if (!isfinite(o->jitter_ratio) || o->jitter_ratio < 0.0 ||
      o->jitter_ratio > 1.0)
    return UV_EINVAL;
  if ((unsigned)o->backoff > (unsigned)FY_RETRY_BACKOFF_CONSTANT ||
      (unsigned)o->jitter > (unsigned)FY_RETRY_JITTER_RATIO)
    return UV_EINVAL;
  if (o->require_idempotent != 0 && o->require_idempotent != 1)
    return UV_EINVAL;
  if (!codes_ok(o->non_retryable, o->non_retryable_count) ||
      !codes_ok(o->retryable, o->retryable_count))
    return UV_EINVAL;
  return 0;
}

/* ---- PRNG (splitmix64) ------------------------------------------------- */

uint64_t fy__retry_rng_next(uint64_t *state) {
  uint64_t z = (*state += UINT64_C(0x9e3779b97f4a7c15));
  z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
  z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
  return z ^ (z >> 31);
}

double fy__retry_rng_unit(uint64_t *state) {
  /* The top 53 bits, scaled to [0, 1). */
  return (double)(fy__retry_rng_next(state) >> 11) *
         (1.0 / 9007199254740992.0);
}

uint64_t fy__retry_rng_seed(uint64_t seed, uint64_t salt) {
  uint64_t s;
  if (seed != 0)
    return seed;
  /* Entropy, not time: two policies created in the same nanosecond still
   * differ through |salt|. */
  s = uv_hrtime() ^ (salt * UINT64_C(0x9e3779b97f4a7c15));
  return fy__retry_rng_next(&s);
}

/* ---- backoff ----------------------------------------------------------- */

static double delay_cap(const fy_retry_opts_t *o) {
  uint64_t cap = o->max_delay_ms;
  if (cap == 0 || cap > FY_RETRY_DELAY_LIMIT_MS)
    cap = FY_RETRY_DELAY_LIMIT_MS;
  return (double)cap;
}

/* The un-jittered curve.  Computed in double: pow() may overflow to
 * infinity, which the caller clamps to the cap. */
static double curve(const fy_retry_opts_t *o, unsigned attempt) {
  double d = (double)o->initial_delay_ms;
  if (d == 0.0)
    return 0.0; /* 0 * inf would be NaN */
  switch (o->backoff) {
  case FY_RETRY_BACKOFF_EXPONENTIAL:
    return d * pow(o->multiplier, (double)attempt - 1.0);
  case FY_RETRY_BACKOFF_LINEAR:
    return d * (double)attempt;
  default:
    return d;
  }
}

static double jitter(const fy_retry_opts_t *o, double t, uint64_t *rng) {
  double r = o->jitter_ratio;
  switch (o->jitter) {
  case FY_RETRY_JITTER_FULL:
    return t * fy__retry_rng_unit(rng);
  case FY_RETRY_JITTER_EQUAL:
    return t / 2.0 + t / 2.0 * fy__retry_rng_unit(rng);
  case FY_RETRY_JITTER_RATIO:
    return t * (1.0 - r + 2.0 * r * fy__retry_rng_unit(rng));
  default:
    return t;
  }
}

/* AWS decorrelated jitter: U[base, 3 * previous], the previous delay
 * starting at base. */
static double decorrelated(const fy_retry_opts_t *o,
                           const fy__retry_seq_t *seq, uint64_t *rng) {
  double base = (double)o->initial_delay_ms;
  double prev = seq->count > 0 ? (double)seq->prev_ms : base;
  double hi = prev * 3.0;
  if (hi < base)
    hi = base; /* a cap below base shrank the previous delay */
  return base + (hi - base) * fy__retry_rng_unit(rng);
}

/* Polly's decorrelated jitter v2: the delays are the steps of the curve
 * f(t) = 2^t * tanh(sqrt(4t)), sampled at t = retry index + U[0, 1),
 * scaled by base / 1.4.  The state is the curve's previous value. */
static double decorrelated_v2(const fy_retry_opts_t *o, unsigned attempt,
                              fy__retry_seq_t *seq, uint64_t *rng) {
  double base = (double)o->initial_delay_ms;
  double t = (double)(attempt - 1) + fy__retry_rng_unit(rng);
  double next = pow(2.0, t) * tanh(sqrt(4.0 * t));
  double x = (next - seq->v2_prev) * (1.0 / 1.4) * base;
  seq->v2_prev = next;
  return base == 0.0 ? 0.0 : x;
}

uint64_t fy__retry_backoff(const fy_retry_opts_t *o, unsigned attempt,
                           fy__retry_seq_t *seq, uint64_t *rng) {
  double cap = delay_cap(o);
  double t, x;
  uint64_t ms;

  if (attempt < 1)
    attempt = 1;
  switch (o->jitter) {
  case FY_RETRY_JITTER_DECORRELATED:
    x = decorrelated(o, seq, rng);
    break;
  case FY_RETRY_JITTER_DECORRELATED_V2:
    x = decorrelated_v2(o, attempt, seq, rng);
    break;
  default:
    /* Cap before the jitter too, so that a capped ratio jitter still
     * spreads callers below the cap instead of piling them on it. */
    t = curve(o, attempt);
    if (!(t < cap))
      t = cap;
    x = jitter(o, t, rng);
    break;
  }
  /* The cap applies after the jitter (W10).  Written so that NaN and
   * infinities land on the cap and nothing negative escapes. */
  if (!(x < cap))
    x = cap;
  if (!(x > 0.0))
    x = 0.0;
  ms = (uint64_t)ceil(x); /* the timer tick is 1 ms: round up */
  seq->prev_ms = ms;
  seq->count++;
  return ms;
}

/* ---- classification ---------------------------------------------------- */

static int in_list(const int *codes, unsigned count, int status) {
  unsigned i;
  if (count > FY_RETRY_CODES_MAX)
    count = FY_RETRY_CODES_MAX;
  for (i = 0; i < count; i++)
    if (codes[i] == status)
      return 1;
  return 0;
}

int fy__retry_default_retryable(int status) {
  /* The library's own refusals say "not now" about a policy, cancellation
   * says the caller left, FY_EDEADLINE says the enclosing budget is spent:
   * retrying any of them only adds load (W12). */
  return status != 0 && status != UV_ECANCELED && status != FY_EDEADLINE &&
         !fy_is_refusal(status);
}

int fy__retry_is_retryable(const fy_retry_opts_t *o, int status) {
  int answer;
  if (status == 0)
    return 0;
  if (o->is_retryable != NULL) {
    answer = o->is_retryable(status, o->user_data);
    if (answer == 0 || answer == 1)
      return answer;
  }
  if (in_list(o->non_retryable, o->non_retryable_count, status))
    return 0;
  if (in_list(o->retryable, o->retryable_count, status))
    return 1;
  return fy__retry_default_retryable(status);
}

/* ---- decision ---------------------------------------------------------- */

void fy__retry_decide(const fy_retry_opts_t *o, fy__retry_seq_t *seq,
                      uint64_t *rng, unsigned tries, int status,
                      uint64_t hint_ms, unsigned call_flags, uint64_t now,
                      uint64_t deadline, fy__retry_plan_t *out) {
  uint64_t delay;

  memset(out, 0, sizeof(*out));
  out->stop = FY_RETRY_STOP_SUCCESS;
  if (status == 0)
    return;
  out->stop = FY_RETRY_STOP_NOT_RETRYABLE;
  if (!fy__retry_is_retryable(o, status))
    return;
  out->stop = FY_RETRY_STOP_EXHAUSTED;
  if (tries >= o->max_attempts)
    return;
  out->stop = FY_RETRY_STOP_NOT_IDEMPOTENT;
  if (o->require_idempotent && !(call_flags & FY_CALL_IDEMPOTENT))
    return;
  /* A server asking for more patience than the caller allows: retrying
   * earlier than asked would most likely be refused again. */
  out->stop = FY_RETRY_STOP_RETRY_AFTER;
  if (o->max_retry_after_ms == 0)
    hint_ms = 0;
  else if (hint_ms > o->max_retry_after_ms)
    return;

  delay = fy__retry_backoff(o, tries, seq, rng);
  if (hint_ms > delay)
    delay = hint_ms;
  out->delay_ms = delay;
  /* Saturate below FY_TIME_NEVER, which no deadline accepts. */
  out->when = now + delay < now || now + delay == FY_TIME_NEVER
                  ? FY_TIME_NEVER - 1
                  : now + delay;
  /* Waiting past the deadline would only end in the enclosing timeout:
   * give the caller the real error now instead. */
  out->stop = FY_RETRY_STOP_DEADLINE;
  if (deadline != FY_TIME_NEVER && out->when >= deadline)
    return;
  out->stop = FY_RETRY_STOP_SUCCESS;
  out->retry = 1;
}

const char *fy_retry_stop_name(int stop) {
  static const char *const names[] = {
      "success",     "not_retryable",  "exhausted", "deadline",
      "retry_after", "not_idempotent", "cancelled", "closed"};
  if (stop < 0 || (size_t)stop >= sizeof(names) / sizeof(names[0]))
    return "unknown";
  return names[stop];
}

/* ---- driver ------------------------------------------------------------ */

struct fy_retry_s {
  fy_policy_t *policy;
  fy_retry_opts_t opts; /* validated copy; name points into the policy */
  uint64_t rng;
  fy_retry_stats_t stats;
};

enum { PHASE_TRY = 0, PHASE_BACKOFF, PHASE_FIRING, PHASE_DONE };

typedef struct retry_frame_s {
  fy_frame_t *child;    /* the try in flight, once its spawn returned */
  fy__retry_seq_t seq;
  uint64_t wait_start;  /* when the current backoff began */
  uint64_t delay_ms;    /* the current or last planned backoff */
  uint64_t slept_ms;    /* backoff time actually spent */
  uint64_t hint_ms;     /* the last retry-after hint seen */
  unsigned tries;       /* spawns made, refused ones included */
  int last;             /* the last failure seen */
  int phase;
  int backed_off;       /* a backoff was armed at least once */
} retry_frame_t;

/* The hint written into the call's detail by the last attempt or by a
 * policy below that refused; zeroed before each spawn so that an old hint
 * is never taken for a new one. */
static uint64_t detail_hint(const fy_frame_t *f) {
  fy_call_t *call = fy_frame_call(f);
  return call != NULL ? call->detail.retry_after_ms : 0;
}

static int gives_up(fy_retry_stop_t stop) {
  return stop == FY_RETRY_STOP_EXHAUSTED || stop == FY_RETRY_STOP_DEADLINE ||
         stop == FY_RETRY_STOP_RETRY_AFTER ||
         stop == FY_RETRY_STOP_NOT_IDEMPOTENT;
}

/* Mark the frame finished and write the verdict.  When the retry never
 * waited and did not itself refuse to go on, the outcome of the only try
 * passes through untouched, so the detail keeps what the layer below wrote
 * (a breaker's refusal, say); every other ending is described by the
 * retry. */
static void conclude(fy_retry_t *r, fy_frame_t *f, retry_frame_t *rf,
                     fy_retry_stop_t stop) {
  fy_detail_t *d;
  rf->phase = PHASE_DONE;
  if (gives_up(stop))
    r->stats.given_up++;
  if (!rf->backed_off && !gives_up(stop))
    return;
  d = fy_frame_verdict(f, r->policy);
  d->cause = rf->last;
  d->state = (int)stop;
  d->n[0] = rf->tries;
  d->n[1] = rf->slept_ms;
  d->n[2] = rf->delay_ms;
  d->n[3] = rf->hint_ms;
}

static void finish(fy_retry_t *r, fy_frame_t *f, retry_frame_t *rf,
                   int status, fy_retry_stop_t stop) {
  conclude(r, f, rf, stop);
  fy_frame_done(f, status);
}

static void leave_backoff(fy_retry_t *r, fy_frame_t *f, retry_frame_t *rf) {
  uint64_t now = fy_ctx_now(fy_frame_ctx(f));
  r->stats.waiting--;
  rf->slept_ms += now - rf->wait_start;
  rf->phase = PHASE_FIRING;
}

/* Act on the outcome of try rf->tries: arm a backoff and return 1, or
 * return 0 with *stop saying why the frame ends with |status|. */
static int on_outcome(fy_retry_t *r, fy_frame_t *f, retry_frame_t *rf,
                      int status, uint64_t hint, fy_retry_stop_t *stop) {
  uint64_t now;
  fy__retry_plan_t plan;

  if (status != 0)
    rf->last = status;
  rf->hint_ms = hint;
  if (status == 0) {
    /* The common case, decided the same way on every path below. */
    *stop = FY_RETRY_STOP_SUCCESS;
    return 0;
  }
  now = fy_ctx_now(fy_frame_ctx(f));
  if (fy_frame_is_cancelled(f) || fy_policy_is_closing(r->policy)) {
    /* No new try, and the outcome that arrived is reported as it is. */
    if (status == 0)
      *stop = FY_RETRY_STOP_SUCCESS;
    else if (status != UV_ECANCELED &&
             !fy__retry_is_retryable(&r->opts, status))
      *stop = FY_RETRY_STOP_NOT_RETRYABLE;
    else if (fy_policy_is_closing(r->policy))
      *stop = FY_RETRY_STOP_CLOSED;
    else
      *stop = FY_RETRY_STOP_CANCELLED;
    return 0;
  }
  fy__retry_decide(&r->opts, &rf->seq, &r->rng, rf->tries, status, hint,
                   fy_frame_call_opts(f)->flags, now, fy_frame_deadline(f),
                   &plan);
  if (plan.retry || plan.stop == FY_RETRY_STOP_DEADLINE)
    rf->delay_ms = plan.delay_ms;
  if (!plan.retry) {
    *stop = plan.stop;
    return 0;
  }
  if (fy_frame_arm(f, plan.when) != 0) {
    *stop = FY_RETRY_STOP_CLOSED; /* the context is going away */
    return 0;
  }
  rf->phase = PHASE_BACKOFF;
  rf->backed_off = 1;
  rf->wait_start = now;
  r->stats.waiting++;
  return 1;
}

static int try_spawn(fy_frame_t *f, retry_frame_t *rf) {
  fy_call_t *call = fy_frame_call(f);
  fy_frame_t *child;
  int rc;

  rf->tries++;
  rf->phase = PHASE_TRY;
  if (call != NULL)
    call->detail.retry_after_ms = 0;
  rc = fy_frame_spawn(f, &child);
  if (rc != 0)
    return rc;
  rf->child = child;
  /* The operation may cancel its own call from inside its start: the
   * request reached this frame before it knew its child. */
  if (fy_frame_is_cancelled(f))
    fy_frame_cancel(child);
  return 0;
}

static int retry_start(fy_policy_t *p, fy_frame_t *f) {
  fy_retry_t *r = fy_policy_impl(p);
  retry_frame_t *rf = fy_frame_state(f);
  fy_retry_stop_t stop;
  int rc;

  rc = try_spawn(f, rf);
  if (rc == 0)
    return 0;
  /* The layer below refused at once.  That is an outcome like any other;
   * when it is not retried the caller gets it now (rule 2). */
  if (on_outcome(r, f, rf, rc, detail_hint(f), &stop))
    return 0;
  conclude(r, f, rf, stop);
  return rc;
}

static void retry_child_done(fy_policy_t *p, fy_frame_t *f,
                             fy_frame_t *child, int status) {
  fy_retry_t *r = fy_policy_impl(p);
  retry_frame_t *rf = fy_frame_state(f);
  fy_retry_stop_t stop;
  uint64_t hint;

  rf->child = NULL;
  if (rf->phase != PHASE_TRY)
    return; /* cannot happen: a finished frame has no child */
  hint = fy_frame_retry_after(child);
  if (detail_hint(f) > hint)
    hint = detail_hint(f);
  if (on_outcome(r, f, rf, status, hint, &stop))
    return; /* the failed try's result is destroyed with it */
  fy_frame_adopt_result(f, child);
  finish(r, f, rf, status, stop);
}

/* After user code ran: 0 when the frame must not go on. */
static int still_wanted(fy_retry_t *r, fy_frame_t *f, retry_frame_t *rf) {
  if (rf->phase == PHASE_DONE)
    return 0; /* finished from the callback */
  if (fy_policy_is_closing(r->policy)) {
    finish(r, f, rf, UV_ECANCELED, FY_RETRY_STOP_CLOSED);
    return 0;
  }
  /* Cancelled from the callback: the cancel hook runs only once this hook
   * has returned, so the request is seen here first. */
  if (fy_frame_is_cancelled(f)) {
    finish(r, f, rf, UV_ECANCELED, FY_RETRY_STOP_CANCELLED);
    return 0;
  }
  return 1;
}

static void emit_retry(fy_retry_t *r, fy_frame_t *f,
                       const retry_frame_t *rf) {
  fy_ctx_t *ctx = fy_frame_ctx(f);
  fy_event_t ev;
  if (!fy_ctx_wants(ctx, FY_EV_RETRY))
    return;
  memset(&ev, 0, sizeof(ev));
  ev.type = FY_EV_RETRY;
  ev.policy = r->policy;
  ev.policy_kind = fy_policy_kind(r->policy);
  ev.policy_name = fy_policy_name(r->policy);
  ev.call = fy_frame_call(f);
  ev.status = rf->last;
  ev.attempt = rf->tries; /* 0-based index of the try about to start */
  ev.delay_ms = rf->delay_ms;
  ev.value = (int64_t)rf->slept_ms;
  fy_ctx_emit(ctx, &ev);
}

/* The backoff ended: tell the user (W13: only now, when the retry really
 * starts), then start the next try. */
static void retry_deadline(fy_policy_t *p, fy_frame_t *f) {
  fy_retry_t *r = fy_policy_impl(p);
  retry_frame_t *rf = fy_frame_state(f);
  fy_retry_stop_t stop;
  int rc;

  if (rf->phase != PHASE_BACKOFF)
    return;
  leave_backoff(r, f, rf);
  if (!still_wanted(r, f, rf))
    return;
  if (r->opts.on_retry != NULL) {
    r->opts.on_retry(fy_frame_call(f), rf->tries + 1, rf->last, rf->delay_ms,
                     r->opts.user_data);
    if (!still_wanted(r, f, rf))
      return;
  }
  emit_retry(r, f, rf);
  if (!still_wanted(r, f, rf))
    return;
  r->stats.retries++;
  rc = try_spawn(f, rf);
  if (rc == 0)
    return;
  if (on_outcome(r, f, rf, rc, detail_hint(f), &stop))
    return;
  finish(r, f, rf, rc, stop);
}

static void retry_cancel(fy_policy_t *p, fy_frame_t *f) {
  fy_retry_t *r = fy_policy_impl(p);
  retry_frame_t *rf = fy_frame_state(f);
  fy_retry_stop_t stop = fy_policy_is_closing(p) ? FY_RETRY_STOP_CLOSED
                                                 : FY_RETRY_STOP_CANCELLED;

  if (rf->phase == PHASE_TRY) {
    /* The try reports, normally UV_ECANCELED, and child_done ends the
     * frame.  A child still being spawned is cancelled by try_spawn. */
    if (rf->child != NULL)
      fy_frame_cancel(rf->child);
    return;
  }
  if (rf->phase == PHASE_BACKOFF) {
    fy_frame_disarm(f);
    leave_backoff(r, f, rf);
  }
  /* Waiting, or between the timer and the next spawn: nothing runs below,
   * so the call ends now; the failure it was retrying stays in
   * detail.cause (W13). */
  if (rf->phase == PHASE_FIRING)
    finish(r, f, rf, UV_ECANCELED, stop);
}

static const fy_policy_vtable_t retry_vtable = {
    "retry",          sizeof(retry_frame_t), retry_start,
    retry_child_done, retry_cancel,          NULL,
    retry_deadline,   NULL,                  NULL};

/* ---- API --------------------------------------------------------------- */

int fy_retry_new(fy_ctx_t *ctx, const fy_retry_opts_t *opts,
                 fy_retry_t **out) {
  fy_retry_opts_t defaults;
  fy_policy_t *p;
  fy_retry_t *r;
  int rc;

  if (out == NULL)
    return UV_EINVAL;
  *out = NULL;
  if (ctx == NULL)
    return UV_EINVAL;
  if (opts == NULL) {
    fy_retry_opts_init(&defaults);
    opts = &defaults;
  }
  rc = fy__retry_opts_check(opts);
  if (rc != 0)
    return rc;
  rc = fy_policy_new(ctx, &retry_vtable, sizeof(*r), opts->name, &p);
  if (rc != 0)
    return rc;
  r = fy_policy_impl(p);
  r->policy = p;
  r->opts = *opts;
  r->opts.name = fy_policy_name(p);
  r->rng = fy__retry_rng_seed(opts->seed, (uint64_t)(uintptr_t)r);
  *out = r;
  return 0;
}

fy_policy_t *fy_retry_policy(fy_retry_t *r) {
  return r != NULL ? r->policy : NULL;
}

int fy_retry_close(fy_retry_t *r, fy_close_cb cb, void *user_data) {
  if (r == NULL)
    return 0;
  if (fy_policy_is_closing(r->policy))
    return FY_ECLOSED;
  return fy_policy_close_as(r->policy, r, cb, user_data);
}

void fy_retry_stats(const fy_retry_t *r, fy_retry_stats_t *out) {
  if (out == NULL)
    return;
  if (r == NULL) {
    memset(out, 0, sizeof(*out));
    return;
  }
  *out = r->stats;
}
