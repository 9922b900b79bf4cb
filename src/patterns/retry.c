/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * Retry: run the layer below again after a failure, with a backoff that is
 * a deadline on the context's wheel.
 *
 * The pure half (option checks, PRNG, backoff formulas, classification,
 * the decision after an outcome) is src/sm/retry_sm.c.  This is the
 * driver: a frame is either running a try (PHASE_TRY), waiting
 * in a backoff (PHASE_BACKOFF), starting the next try from the timer
 * (PHASE_FIRING: user callbacks run there and may cancel or close
 * anything), or finished (PHASE_DONE). */
#include <math.h>
#include <string.h>

#include "policy_impl.h"
#include "retry_sm.h"

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
  fy__retry_sm_seq_t seq;
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
  fy_call_t *call = fy__frame_call(f);
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
  uint64_t now = fy__ctx_now(fy__frame_ctx(f));
  r->stats.waiting--;
  rf->slept_ms += now - rf->wait_start;
  rf->phase = PHASE_FIRING;
}

/* Act on the outcome of try rf->tries: arm a backoff and return 1, or
 * return 0 with *stop saying why the frame ends with |status|. */
static int on_outcome(fy_retry_t *r, fy_frame_t *f, retry_frame_t *rf,
                      int status, uint64_t hint, fy_retry_stop_t *stop) {
  uint64_t now;
  fy__retry_sm_plan_t plan;

  if (status != 0)
    rf->last = status;
  rf->hint_ms = hint;
  if (status == 0) {
    /* The common case, decided the same way on every path below. */
    *stop = FY_RETRY_STOP_SUCCESS;
    return 0;
  }
  now = fy__ctx_now(fy__frame_ctx(f));
  if (fy__frame_is_cancelled(f) || fy__policy_is_closing(r->policy)) {
    /* No new try, and the outcome that arrived is reported as it is. */
    if (status == 0)
      *stop = FY_RETRY_STOP_SUCCESS;
    else if (status != UV_ECANCELED &&
             !fy__retry_sm_is_retryable(&r->opts, status))
      *stop = FY_RETRY_STOP_NOT_RETRYABLE;
    else if (fy__policy_is_closing(r->policy))
      *stop = FY_RETRY_STOP_CLOSED;
    else
      *stop = FY_RETRY_STOP_CANCELLED;
    return 0;
  }
  fy__retry_sm_decide(&r->opts, &rf->seq, &r->rng, rf->tries, status, hint,
                   fy_frame_call_opts(f)->flags, now, fy__frame_deadline(f),
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
  fy_call_t *call = fy__frame_call(f);
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
  if (fy__frame_is_cancelled(f))
    fy_frame_cancel(child);
  return 0;
}

/* The first try runs without a frame: the retry admits the call as an
 * admission layer, and a try that succeeds costs no more than that.  Any
 * other outcome, a refusal at once included, is taken over in a frame
 * (policy.h), whose child_done decides it as for every later try. */
static int retry_admit(fy_policy_t *p, fy_call_t *call, fy_frame_t *parent,
                       void *token) {
  (void)p;
  (void)parent;
  (void)token;
  /* As before every try: an old hint is never taken for a new one. */
  call->detail.retry_after_ms = 0;
  return 0;
}

static int retry_settle(fy_policy_t *p, void *token, int status) {
  (void)p;
  (void)token;
  return status == 0 ? 0 : FY_ADMIT_WAIT;
}

static int retry_release(fy_policy_t *p, void *token, int status) {
  (void)p;
  (void)token;
  (void)status;
  return FY_ADMIT_WAIT;
}

static void retry_child_done(fy_policy_t *p, fy_frame_t *f,
                             fy_frame_t *child, int status) {
  fy_retry_t *r = fy__policy_impl(p);
  retry_frame_t *rf = fy__frame_state(f);
  fy_retry_stop_t stop;
  uint64_t hint;

  rf->child = NULL;
  if (rf->phase != PHASE_TRY)
    return; /* cannot happen: a finished frame has no child */
  if (rf->tries == 0)
    rf->tries = 1; /* a new frame: the first try ran without it */
  /* |child| NULL: the first try was refused at once. */
  hint = child != NULL ? fy__frame_retry_after(child) : 0;
  if (detail_hint(f) > hint)
    hint = detail_hint(f);
  if (on_outcome(r, f, rf, status, hint, &stop))
    return; /* the failed try's result is destroyed with it */
  fy__frame_adopt_result(f, child);
  finish(r, f, rf, status, stop);
}

/* After user code ran: 0 when the frame must not go on. */
static int still_wanted(fy_retry_t *r, fy_frame_t *f, retry_frame_t *rf) {
  if (rf->phase == PHASE_DONE)
    return 0; /* finished from the callback */
  if (fy__policy_is_closing(r->policy)) {
    finish(r, f, rf, UV_ECANCELED, FY_RETRY_STOP_CLOSED);
    return 0;
  }
  /* Cancelled from the callback: the cancel hook runs only once this hook
   * has returned, so the request is seen here first. */
  if (fy__frame_is_cancelled(f)) {
    finish(r, f, rf, UV_ECANCELED, FY_RETRY_STOP_CANCELLED);
    return 0;
  }
  return 1;
}

static void emit_retry(fy_retry_t *r, fy_frame_t *f,
                       const retry_frame_t *rf) {
  fy_ctx_t *ctx = fy__frame_ctx(f);
  fy_event_t ev;
  if (!fy_policy_event_init(r->policy, &ev, FY_EV_RETRY))
    return;
  ev.call = fy__frame_call(f);
  ev.status = rf->last;
  ev.attempt = rf->tries; /* 0-based index of the try about to start */
  ev.delay_ms = rf->delay_ms;
  ev.value = (int64_t)rf->slept_ms;
  fy_ctx_emit(ctx, &ev);
}

/* The backoff ended: tell the user (only now, when the retry really
 * starts, so that a retry abandoned during its wait is never reported),
 * then start the next try. */
static void retry_deadline(fy_policy_t *p, fy_frame_t *f) {
  fy_retry_t *r = fy__policy_impl(p);
  retry_frame_t *rf = fy__frame_state(f);
  fy_retry_stop_t stop;
  int rc;

  if (rf->phase != PHASE_BACKOFF)
    return;
  leave_backoff(r, f, rf);
  if (!still_wanted(r, f, rf))
    return;
  if (r->opts.on_retry != NULL) {
    r->opts.on_retry(fy__frame_call(f), rf->tries + 1, rf->last, rf->delay_ms,
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
  fy_retry_t *r = fy__policy_impl(p);
  retry_frame_t *rf = fy__frame_state(f);
  fy_retry_stop_t stop = fy__policy_is_closing(p) ? FY_RETRY_STOP_CLOSED
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
   * detail.cause, so a cancel does not lose the last error. */
  if (rf->phase == PHASE_FIRING)
    finish(r, f, rf, UV_ECANCELED, stop);
}

static const fy_policy_vtable_t retry_vtable = {
    .kind = "retry",
    .frame_size = sizeof(retry_frame_t),
    .child_done = retry_child_done,
    .cancel = retry_cancel,
    .deadline = retry_deadline,
    .admit = retry_admit,
    .settle = retry_settle,
    .release = retry_release,
};

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
  rc = fy_retry_opts_check(opts);
  if (rc != 0)
    return rc;
  rc = fy_policy_new(ctx, &retry_vtable, sizeof(*r), opts->name, &p);
  if (rc != 0)
    return rc;
  r = fy__policy_impl(p);
  r->policy = p;
  r->opts = *opts;
  r->opts.name = fy_policy_name(p);
  r->rng = fy__retry_sm_rng_seed(opts->seed, (uint64_t)(uintptr_t)r);
  *out = r;
  return 0;
}

fy_policy_t *fy_retry_policy(fy_retry_t *r) {
  return r != NULL ? r->policy : NULL;
}

int fy_retry_close(fy_retry_t *r, fy_close_cb cb, void *user_data) {
  if (r == NULL)
    return 0;
  if (fy__policy_is_closing(r->policy))
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
