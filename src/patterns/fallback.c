/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * Fallback: when the primary (the layers below) fails, run an alternative
 * operation and answer with its outcome.
 *
 * A frame goes through two phases.  PRIMARY: one child in the layer below.
 * FALLBACK: one attempt of the fallback operation, spawned directly under
 * the frame with fy_frame_spawn_op().  The state machine is small enough to
 * live in the hooks; it reads no time. */
#include "policy_impl.h"

struct fy_fallback_s {
  fy_policy_t *policy;
  const fy_op_t *op;
  void *arg;
  fy_classify_fn should_fallback;
  fy_fallback_cb on_fallback;
  void *user_data;
};

enum { FB_PRIMARY = 0, FB_FALLBACK };

typedef struct fb_frame_s {
  int phase;
  int primary; /* the primary's status, once the fallback runs */
} fb_frame_t;

static int should_fallback(const fy_fallback_t *fb, int status) {
  return fb->should_fallback(status, fb->user_data) == FY_OUTCOME_FAILURE;
}

/* by_kind "fallback", cause = the primary's error, state = the fallback's
 * own status (0 while it runs or when it succeeded). */
static void write_verdict(fy_fallback_t *fb, fy_frame_t *f, int primary,
                          int state) {
  fy_detail_t *d = fy_frame_verdict(f, fb->policy);
  d->cause = primary;
  d->state = state;
}

/* The primary failed with |primary|: start the fallback.  The outcome
 * always comes later through child_done (or fy_frame_done), so this never
 * refuses. */
static void run_fallback(fy_fallback_t *fb, fy_frame_t *f, int primary) {
  fb_frame_t *st = fy__frame_state(f);
  int rc;

  st->phase = FB_FALLBACK;
  st->primary = primary;
  /* Written first, so the fallback operation can read the primary's error
   * from attempt->call->detail.cause. */
  write_verdict(fb, f, primary, 0);
  fy_policy_emit(fb->policy, FY_EV_FALLBACK, fy__frame_call(f), primary, 0, 0);
  if (fb->on_fallback != NULL)
    fb->on_fallback(primary, fb->user_data);
  /* A call cancelled meanwhile (by on_fallback, a listener, an outer
   * timeout) never starts the fallback: its caller has left. */
  if (fy__frame_is_cancelled(f)) {
    fy_frame_done(f, UV_ECANCELED);
    return;
  }
  rc = fy_frame_spawn_op(f, fb->op, fb->arg, NULL);
  if (rc < 0) {
    write_verdict(fb, f, primary, rc);
    fy_frame_done(f, FY_EFALLBACK);
  }
}

/* The primary runs without a frame: the fallback admits the call as an
 * admission layer, and a primary that succeeds costs no more than that.
 * Any other outcome, a refusal at once included, is taken over in a frame
 * (policy.h), whose child_done decides whether the fallback runs. */
static int fb_admit(fy_policy_t *p, fy_call_t *call, fy_frame_t *parent,
                    void *token) {
  (void)p;
  (void)call;
  (void)parent;
  (void)token;
  return 0;
}

static int fb_settle(fy_policy_t *p, void *token, int status) {
  fy_fallback_t *fb = fy__policy_impl(p);
  (void)token;
  /* The default classifier passes every success; a user's may fail one (a
   * result that fails validation), so it decides in the frame. */
  if (status == 0 && fb->should_fallback == fy_classify_default)
    return 0;
  return FY_ADMIT_WAIT;
}

static int fb_release(fy_policy_t *p, void *token, int status) {
  (void)p;
  (void)token;
  (void)status;
  return FY_ADMIT_WAIT;
}

static void fb_child_done(fy_policy_t *p, fy_frame_t *f, fy_frame_t *child,
                          int status) {
  fy_fallback_t *fb = fy__policy_impl(p);
  fb_frame_t *st = fy__frame_state(f);

  /* A new frame starts in FB_PRIMARY: its primary ran without it, and
   * |child| is NULL when the primary was refused at once (then a frame
   * finished here is a refusal returned at once, rule 2). */
  if (st->phase == FB_PRIMARY) {
    if (fy__frame_is_cancelled(f) || !should_fallback(fb, status)) {
      fy__frame_adopt_result(f, child);
      fy_frame_done(f, status);
      return;
    }
    /* The primary's result is not adopted: it is destroyed with |child|. */
    run_fallback(fb, f, status);
    return;
  }
  /* The fallback attempt's own outcome cleared the detail: write it again
   * so that both errors stay readable (the primary's in cause, the
   * fallback's in state). */
  write_verdict(fb, f, st->primary, status);
  if (status == 0) {
    fy__frame_adopt_result(f, child);
    fy_frame_done(f, 0);
  } else if (fy__frame_is_cancelled(f)) {
    fy_frame_done(f, UV_ECANCELED);
  } else {
    fy_frame_done(f, FY_EFALLBACK);
  }
}

/* cancel: the core's default (cancel the child; with none, complete with
 * UV_ECANCELED) is exactly what both phases need. */
static const fy_policy_vtable_t fb_vtable = {
    .kind = "fallback",
    .frame_size = sizeof(fb_frame_t),
    .child_done = fb_child_done,
    .admit = fb_admit,
    .settle = fb_settle,
    .release = fb_release,
};

/* ---- public API -------------------------------------------------------- */

void fy_fallback_opts_init(fy_fallback_opts_t *opts) {
  if (opts == NULL)
    return;
  memset(opts, 0, sizeof(*opts));
  opts->should_fallback = fy_classify_default;
}

int fy_fallback_opts_check(const fy_fallback_opts_t *opts) {
  /* Without an operation there is nothing to fall back to: the defaults
   * alone are not a valid fallback. */
  if (opts == NULL || opts->op == NULL || opts->op->start == NULL)
    return UV_EINVAL;
  return 0;
}

int fy_fallback_new(fy_ctx_t *ctx, const fy_fallback_opts_t *opts,
                    fy_fallback_t **out) {
  fy_policy_t *p;
  fy_fallback_t *fb;
  int rc;

  if (out == NULL)
    return UV_EINVAL;
  *out = NULL;
  if (ctx == NULL)
    return UV_EINVAL;
  rc = fy_fallback_opts_check(opts);
  if (rc != 0)
    return rc;
  rc = fy_policy_new(ctx, &fb_vtable, sizeof(*fb), opts->name, &p);
  if (rc != 0)
    return rc;
  fb = fy__policy_impl(p);
  fb->policy = p;
  fb->op = opts->op;
  fb->arg = opts->arg;
  fb->should_fallback = opts->should_fallback != NULL ? opts->should_fallback
                                                      : fy_classify_default;
  fb->on_fallback = opts->on_fallback;
  fb->user_data = opts->user_data;
  *out = fb;
  return 0;
}

fy_policy_t *fy_fallback_policy(fy_fallback_t *fb) {
  return fb != NULL ? fb->policy : NULL;
}

int fy_fallback_close(fy_fallback_t *fb, fy_close_cb cb, void *user_data) {
  if (fb == NULL)
    return 0;
  if (fy__policy_is_closing(fb->policy))
    return FY_ECLOSED;
  return fy_policy_close_as(fb->policy, fb, cb, user_data);
}
