/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * The probe policy and the scriptable operations (see probe.h).  Only the
 * public API is used here: this file is also the proof that a policy can be
 * written outside the library. */
#include "probe.h"

#include <criterion/criterion.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int g_nested;
unsigned g_completions;
unsigned g_starts;

/* ---- counted results --------------------------------------------------- */

static tres_t tres_pool[TRES_MAX];
static unsigned tres_dcount[TRES_MAX];
static unsigned tres_ncreated;
static unsigned tres_ndestroyed;
static unsigned tres_nerrors;

tres_t *tres_new(void) {
  tres_t *r;
  if (tres_ncreated >= TRES_MAX)
    abort(); /* a test asked for more than the pool holds */
  r = &tres_pool[tres_ncreated];
  r->magic = TRES_MAGIC;
  r->id = tres_ncreated++;
  return r;
}

/* Results live in a static pool and are never freed, so a second destroy is
 * counted rather than being a double free. */
void tres_dtor(void *result) {
  tres_t *r = result;
  if (r == NULL || r < &tres_pool[0] || r >= &tres_pool[TRES_MAX] ||
      r->magic != TRES_MAGIC) {
    tres_nerrors++;
    return;
  }
  if (tres_dcount[r->id]++ > 0)
    tres_nerrors++;
  tres_ndestroyed++;
}

unsigned tres_created(void) { return tres_ncreated; }
unsigned tres_destroyed(void) { return tres_ndestroyed; }
unsigned tres_errors(void) { return tres_nerrors; }

unsigned tres_destroy_count(unsigned id) {
  return id < TRES_MAX ? tres_dcount[id] : 0;
}

void probe_reset(void) {
  memset(tres_pool, 0, sizeof(tres_pool));
  memset(tres_dcount, 0, sizeof(tres_dcount));
  tres_ncreated = 0;
  tres_ndestroyed = 0;
  tres_nerrors = 0;
  g_nested = 0;
  g_completions = 0;
  g_starts = 0;
}

/* ---- the probe policy -------------------------------------------------- */

typedef struct pframe_s {
  unsigned depth;   /* hooks of this frame on the stack */
  unsigned spawned; /* children spawned so far */
  unsigned failed;  /* children that reported a failure (CONCURRENT) */
  fy_frame_t *kids[PROBE_MAX_CHILDREN];
} pframe_t;

static const char probe_kind[] = "probe";

void probe_pass_child_done(fy_policy_t *policy, fy_frame_t *frame,
                           fy_frame_t *child, int status) {
  (void)policy;
  fy_frame_adopt_result(frame, child);
  fy_frame_done(frame, status);
}

probe_t *probe_of(fy_policy_t *policy) {
  if (policy == NULL || fy_policy_kind(policy) != probe_kind)
    return NULL;
  return *(probe_t **)fy_policy_impl(policy);
}

static probe_t *enter(fy_policy_t *p, fy_frame_t *f, probe_hook_t hook) {
  probe_t *pr = probe_of(p);
  pr->hooks[hook]++;
  if (f != NULL) {
    pframe_t *st = fy_frame_state(f);
    st->depth++;
    if (st->depth > pr->max_depth)
      pr->max_depth = st->depth;
    if (st->depth > 1)
      pr->violations++;
  } else {
    if (++pr->close_depth > 1)
      pr->violations++;
  }
  if (pr->on_hook != NULL)
    pr->on_hook(pr, hook, f);
  return pr;
}

static void leave(probe_t *pr, fy_frame_t *f) {
  if (f != NULL)
    ((pframe_t *)fy_frame_state(f))->depth--;
  else
    pr->close_depth--;
}

static unsigned nchildren(const probe_t *pr) { return pr->n ? pr->n : 1; }

static int spawn(probe_t *pr, fy_frame_t *f) {
  pframe_t *st = fy_frame_state(f);
  fy_frame_t *child = NULL;
  unsigned i;
  int rc = fy_frame_spawn(f, &child);
  if (rc < 0) {
    pr->spawn_errors++;
    return rc;
  }
  st->spawned++;
  /* The child handed back must be valid now (a policy may inspect it). */
  if (child == NULL || fy_frame_ctx(child) != fy_frame_ctx(f))
    pr->violations++;
  for (i = 0; i < PROBE_MAX_CHILDREN; i++) {
    if (st->kids[i] == NULL) {
      st->kids[i] = child;
      break;
    }
  }
  return 0;
}

static void forget_kid(fy_frame_t *f, fy_frame_t *child) {
  pframe_t *st = fy_frame_state(f);
  unsigned i;
  for (i = 0; i < PROBE_MAX_CHILDREN; i++)
    if (st->kids[i] == child)
      st->kids[i] = NULL;
}

static int probe_start(fy_policy_t *p, fy_frame_t *f) {
  probe_t *pr = enter(p, f, PROBE_HOOK_START);
  pframe_t *st = fy_frame_state(f);
  fy_ctx_t *ctx = fy_frame_ctx(f);
  unsigned i, count;
  int rc = 0;

  if (pr->mode == PROBE_REFUSE) {
    fy_detail_t *d = fy_frame_verdict(f, p);
    d->cause = pr->refuse_code;
    d->state = 1;
    rc = pr->refuse_code;
    goto out;
  }
  if (pr->deadline_ms > 0)
    fy_frame_set_deadline(f, fy_ctx_now(ctx) + pr->deadline_ms);
  if (pr->timeout_ms > 0) {
    rc = fy_frame_arm(f, fy_ctx_now(ctx) + pr->timeout_ms);
    if (rc < 0)
      goto out;
  }
  count = pr->mode == PROBE_CONCURRENT ? nchildren(pr) : 1;
  for (i = 0; i < count; i++) {
    rc = spawn(pr, f);
    if (rc < 0) {
      if (st->spawned == 0)
        goto out; /* nothing alive: refuse at once */
      /* Some children are under way: finish with the error (they are
       * detached), so that the failure still reaches the caller. */
      fy_frame_done(f, rc);
      rc = 0;
      break;
    }
  }
out:
  leave(pr, f);
  return rc;
}

static void probe_child_done(fy_policy_t *p, fy_frame_t *f, fy_frame_t *child,
                             int status) {
  probe_t *pr = enter(p, f, PROBE_HOOK_CHILD_DONE);
  pframe_t *st = fy_frame_state(f);
  int rc;

  pr->children_done++;
  pr->last_status = status;
  forget_kid(f, child);
  switch (pr->mode) {
  case PROBE_SEQUENTIAL:
    fy_frame_adopt_result(f, child);
    if (status == 0 || st->spawned >= nchildren(pr) ||
        fy_frame_is_cancelled(f)) {
      fy_frame_done(f, status);
      break;
    }
    rc = spawn(pr, f);
    if (rc < 0)
      fy_frame_done(f, rc);
    break;
  case PROBE_CONCURRENT:
    fy_frame_adopt_result(f, child);
    if (status == 0) {
      fy_frame_done(f, 0); /* losers are detached */
      break;
    }
    if (++st->failed >= st->spawned)
      fy_frame_done(f, status);
    break;
  case PROBE_PASS:
  case PROBE_REFUSE:
  default:
    fy_frame_adopt_result(f, child);
    fy_frame_done(f, status);
    break;
  }
  leave(pr, f);
}

static void probe_cancel(fy_policy_t *p, fy_frame_t *f) {
  probe_t *pr = enter(p, f, PROBE_HOOK_CANCEL);
  pframe_t *st = fy_frame_state(f);
  unsigned i;
  if (pr->cancel == PROBE_CANCEL_FINISH) {
    fy_frame_done(f, UV_ECANCELED);
  } else {
    for (i = 0; i < PROBE_MAX_CHILDREN; i++)
      if (st->kids[i] != NULL)
        fy_frame_cancel(st->kids[i]);
  }
  leave(pr, f);
}

static void probe_progress(fy_policy_t *p, fy_frame_t *f) {
  probe_t *pr = enter(p, f, PROBE_HOOK_PROGRESS);
  leave(pr, f);
}

static void probe_deadline(fy_policy_t *p, fy_frame_t *f) {
  probe_t *pr = enter(p, f, PROBE_HOOK_DEADLINE);
  pframe_t *st = fy_frame_state(f);
  fy_detail_t *d;
  unsigned i;
  if (pr->timeout_detach) {
    for (i = 0; i < PROBE_MAX_CHILDREN; i++) {
      if (st->kids[i] != NULL) {
        fy_frame_detach(st->kids[i]);
        st->kids[i] = NULL;
      }
    }
  }
  d = fy_frame_verdict(f, p);
  d->state = 2;
  fy_frame_done(f, pr->timeout_code ? pr->timeout_code : UV_ETIMEDOUT);
  leave(pr, f);
}

static void probe_close(fy_policy_t *p) {
  probe_t *pr = enter(p, NULL, PROBE_HOOK_CLOSE);
  leave(pr, NULL);
}

static void probe_destroy(fy_policy_t *p) {
  probe_t *pr = enter(p, NULL, PROBE_HOOK_DESTROY);
  leave(pr, NULL);
  pr->policy = NULL;
}

static const fy_policy_vtable_t probe_vt_default = {
    .kind = probe_kind,
    .frame_size = sizeof(pframe_t),
    .start = probe_start,
    .child_done = probe_child_done,
    .progress = probe_progress,
    .deadline = probe_deadline,
    .close = probe_close,
    .destroy = probe_destroy,
};

static const fy_policy_vtable_t probe_vt_cancel = {
    .kind = probe_kind,
    .frame_size = sizeof(pframe_t),
    .start = probe_start,
    .child_done = probe_child_done,
    .cancel = probe_cancel,
    .progress = probe_progress,
    .deadline = probe_deadline,
    .close = probe_close,
    .destroy = probe_destroy,
};

int probe_new(fy_ctx_t *ctx, probe_t *probe, const char *name) {
  const fy_policy_vtable_t *vt = probe->cancel == PROBE_CANCEL_DEFAULT
                                     ? &probe_vt_default
                                     : &probe_vt_cancel;
  fy_policy_t *p = NULL;
  int rc = fy_policy_new(ctx, vt, sizeof(probe_t *), name, &p);
  if (rc < 0)
    return rc;
  *(probe_t **)fy_policy_impl(p) = probe;
  probe->policy = p;
  return 0;
}

/* ---- scriptable operations --------------------------------------------- */

void top_script(top_t *top, top_kind_t kind, int status) {
  top->nsteps = 0;
  top_push(top, kind, status);
}

void top_push_step(top_t *top, top_step_t step) {
  if (top->nsteps >= TOP_MAX_STEPS)
    abort();
  top->steps[top->nsteps++] = step;
}

void top_script_after(top_t *top, uint64_t after_ms, int status) {
  top_step_t step = {TOP_AFTER, status, after_ms, 0};
  if (after_ms == FY_TIME_NEVER)
    step.kind = TOP_ASYNC;
  top->nsteps = 0;
  top_push_step(top, step);
}

void top_push(top_t *top, top_kind_t kind, int status) {
  top_step_t step = {kind, status, 0, 0};
  top_push_step(top, step);
}

static top_step_t step_for(const top_t *top, unsigned k) {
  top_step_t async = {TOP_ASYNC, 0, 0, 0};
  if (top->nsteps == 0)
    return async;
  return top->steps[k < top->nsteps ? k : top->nsteps - 1];
}

static unsigned key_of(const fy_attempt_t *a) {
  return (unsigned)(uintptr_t)a->data;
}

static void top_attach_result(top_t *top, fy_attempt_t *a, int status) {
  if (top->with_results == TOP_RESULTS_OK ? status == 0 : top->with_results)
    fy_attempt_set_result(a, tres_new(), tres_dtor);
  else if (top->result != NULL && !top->with_results)
    fy_attempt_set_result(a, top->result, top->result_dtor);
}

static int top_report_(top_t *top, unsigned k, int status, int cancelled) {
  fy_attempt_t *a;
  top_step_t step;
  if (k >= TOP_MAX_ATTEMPTS || top->att[k] == NULL)
    return UV_ENOENT;
  a = top->att[k];
  top->att[k] = NULL; /* dead once reported */
  if (top->timer[k].armed)
    fy_deadline_stop(&top->timer[k].dl);
  if (!cancelled || top->with_results)
    top_attach_result(top, a, status);
  step = step_for(top, k);
  if (!cancelled && step.retry_after_ms != 0)
    fy_attempt_set_retry_after(a, step.retry_after_ms);
  top->reports++;
  return fy_attempt_done(a, status);
}

static void top_fire(fy_deadline_t *d) {
  top_timer_t *t = fy_container_of(d, top_timer_t, dl);
  cr_assert_eq(top_report(t->top, t->k, step_for(t->top, t->k).status), 0);
}

void top_after(top_t *top, unsigned k, uint64_t ms) {
  top_timer_t *t;
  cr_assert_lt(k, TOP_MAX_ATTEMPTS);
  cr_assert_not_null(top->att[k], "attempt %u is not waiting", k);
  t = &top->timer[k];
  if (!t->armed) {
    cr_assert_not_null(t->ctx, "attempt %u: no context for a timer", k);
    fy_deadline_init(t->ctx, &t->dl, top_fire);
    t->top = top;
    t->k = k;
    t->armed = 1;
  }
  fy_deadline_start(&t->dl, ms);
}

void top_mark(top_t *top) {
  cr_assert_gt(top->starts, 0);
  cr_assert_not_null(top->att[top->starts - 1], "attempt not running");
  fy_attempt_mark(top->att[top->starts - 1]);
}

int top_report(top_t *top, unsigned k, int status) {
  return top_report_(top, k, status, 0);
}

void top_finish(top_t *top, int status) {
  cr_assert_gt(top->starts, 0, "attempt not running");
  cr_assert_not_null(top->att[top->starts - 1], "attempt not running");
  cr_assert_eq(top_report(top, top->starts - 1, status), 0);
}

unsigned top_live(const top_t *top) {
  unsigned k, n = 0;
  for (k = 0; k < TOP_MAX_ATTEMPTS; k++)
    n += top->att[k] != NULL;
  return n;
}

void top_report_all(top_t *top, int status) {
  unsigned k;
  for (k = 0; k < TOP_MAX_ATTEMPTS; k++)
    if (top->att[k] != NULL)
      top_report(top, k, status);
}

static int top_start(fy_attempt_t *a, void *arg) {
  top_t *top = arg;
  unsigned k = top->starts++;
  top_step_t step;

  if (k >= TOP_MAX_ATTEMPTS)
    abort();
  a->data = (void *)(uintptr_t)k;
  top->att[k] = a;
  top->index[k] = a->index;
  top->remaining[k] = fy_attempt_remaining(a);
  top->call_at_start[k] = a->call;
  top->order[k] = ++g_starts;
  top->deadline[k] = a->deadline;
  top->timer[k].ctx = top->ctx;
  if (top->ctx == NULL && a->call != NULL && a->call->pipeline != NULL)
    top->timer[k].ctx = fy_pipeline_ctx(a->call->pipeline);
  top->start_at[k] =
      top->timer[k].ctx != NULL ? fy_ctx_now(top->timer[k].ctx) : 0;
  if (a->call != NULL) {
    top->cause[k] = a->call->detail.cause;
    top->by_kind[k] = a->call->detail.by_kind;
  }
  if (top->on_start != NULL)
    top->on_start(top, a);
  if (top->att[k] == NULL)
    return 0; /* the hook reported it */
  step = step_for(top, k);
  switch (step.kind) {
  case TOP_SYNC:
    top_report(top, k, step.status);
    return 0;
  case TOP_SYNC_RETURN:
    top_report(top, k, step.status);
    return step.status;
  case TOP_AFTER:
    top_after(top, k, step.after_ms);
    return 0;
  case TOP_START_ERROR:
    /* The core finishes the attempt with this code. */
    top->att[k] = NULL;
    top_attach_result(top, a, step.status);
    return step.status;
  case TOP_ASYNC:
  default:
    return 0;
  }
}

static void top_note_cancel(top_t *top, fy_attempt_t *a) {
  unsigned k = key_of(a);
  top->cancels++;
  if (k < TOP_MAX_ATTEMPTS)
    top->cancelled[k]++;
  if (top->on_cancel != NULL)
    top->on_cancel(top, a);
}

static void top_cancel_sync(fy_attempt_t *a, void *arg) {
  top_t *top = arg;
  unsigned k = key_of(a);
  top_note_cancel(top, a);
  if (top->att[k] != NULL)
    cr_assert_eq(top_report_(top, k,
                             top->cancel_status ? top->cancel_status
                                                : UV_ECANCELED,
                             1),
                 0);
}

static void top_cancel_later(fy_attempt_t *a, void *arg) {
  top_t *top = arg;
  unsigned k = key_of(a);
  top_note_cancel(top, a);
  if (top->cancel_after_ms != 0 && k < TOP_MAX_ATTEMPTS &&
      top->att[k] != NULL)
    top_after(top, k, top->cancel_after_ms);
}

const fy_op_t top_op_nocancel = {top_start, NULL};
const fy_op_t top_op_cancel_sync = {top_start, top_cancel_sync};
const fy_op_t top_op_cancel_later = {top_start, top_cancel_later};

/* ---- calls ------------------------------------------------------------- */

void tcall_cb(fy_call_t *call, int status) {
  tcall_t *tc = fy_container_of(call, tcall_t, call);
  tc->ncb++;
  tc->status = status;
  if (g_nested)
    tc->nested = 1;
  tc->order = ++g_completions;
  tc->detail = call->detail;
  if (call->pipeline != NULL)
    tc->at = fy_ctx_now(fy_pipeline_ctx(call->pipeline));
  tc->result = fy_call_result(call);
  if (tc->take)
    tc->taken = fy_call_take_result(call, &tc->taken_dtor);
  if (tc->then != NULL)
    tc->then(tc, status); /* may free |tc| */
}

int tcall_start(tcall_t *tc, fy_pipeline_t *pl, const fy_op_t *op,
                top_t *top) {
  int rc;
  g_nested++;
  rc = fy_call_start(&tc->call, pl, op, top, tcall_cb);
  g_nested--;
  return rc;
}

int tcall_cancel(tcall_t *tc) {
  int rc;
  g_nested++;
  rc = fy_call_cancel(&tc->call);
  g_nested--;
  return rc;
}
