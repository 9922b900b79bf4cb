/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * Attachments (fy_ctx_attach) and close groups (fy_close_group_t): the
 * wind-down hook runs once, first, from the context's close task; the
 * destroy hook runs at the very end for what is still attached; hooks may
 * detach; a group calls back once after its last part, and never when a
 * close failed. */
#include <criterion/criterion.h>

#include "fixture.h"

typedef struct rec_s {
  fy_attachment_t a;
  fy_attachment_t *other;  /* detached from inside wind_down */
  fy_policy_t *policy;     /* must still be open in wind_down */
  int detach_self;         /* in wind_down */
  unsigned wound, destroyed;
  unsigned wound_at, destroyed_at; /* g_seq when they ran */
  int policy_open;         /* fy_policy_is_closing() was 0 in wind_down */
  unsigned ctx_closed_at_destroy;  /* FX.closed in destroy */
} rec_t;

static unsigned g_seq;

static void rec_wind_down(fy_attachment_t *a) {
  rec_t *r = fy_container_of(a, rec_t, a);
  r->wound++;
  r->wound_at = ++g_seq;
  if (r->policy != NULL)
    r->policy_open = !fy_policy_is_closing(r->policy);
  if (r->other != NULL)
    fy_ctx_detach(r->other);
  if (r->detach_self)
    fy_ctx_detach(a);
}

static void rec_destroy(fy_attachment_t *a) {
  rec_t *r = fy_container_of(a, rec_t, a);
  r->destroyed++;
  r->destroyed_at = ++g_seq;
  r->ctx_closed_at_destroy = FX.closed;
  fy_ctx_detach(a); /* already unlinked: a no-op */
}

static void attach(rec_t *r) {
  cr_assert_eq(fy_ctx_attach(FX.ctx, &r->a, rec_wind_down, rec_destroy), 0);
}

Test(attach, refuses_bad_arguments_and_a_closing_context) {
  rec_t r = {0};
  fy_attachment_t zero = {0};
  fx_init(&FX, 0);
  cr_expect_eq(fy_ctx_attach(NULL, &r.a, rec_wind_down, rec_destroy),
               UV_EINVAL);
  cr_expect_eq(fy_ctx_attach(FX.ctx, NULL, rec_wind_down, rec_destroy),
               UV_EINVAL);
  fy_ctx_detach(&zero); /* never attached: a no-op */
  fy_ctx_detach(NULL);
  cr_assert_eq(fx_close(&FX), 0);
  cr_expect_eq(fy_ctx_attach(FX.ctx, &r.a, rec_wind_down, rec_destroy),
               FY_ECLOSED);
  fx_finish(&FX);
  cr_expect_eq(r.wound, 0);
  cr_expect_eq(r.destroyed, 0);
}

Test(attach, detached_before_the_close_runs_no_hook) {
  rec_t r = {0};
  fx_init(&FX, 0);
  attach(&r);
  fy_ctx_detach(&r.a);
  fy_ctx_detach(&r.a); /* twice: a no-op */
  fx_finish(&FX);
  cr_expect_eq(r.wound, 0);
  cr_expect_eq(r.destroyed, 0);
}

Test(attach, wind_down_once_first_destroy_at_the_very_end) {
  rec_t r = {0};
  top_t top = {0};
  tcall_t tc = {0};
  fy_policy_t *pass;
  fy_pipeline_t *pl;
  fx_init(&FX, 0);
  pass = fx_passthrough(&FX, "pass");
  pl = fx_pipeline(&FX, 1, pass);
  attach(&r);
  r.policy = pass;
  /* A call whose cancel reports later keeps the close going over several
   * runs of the close task: the wind-down hook still runs once. */
  top_push(&top, TOP_ASYNC, 0);
  cr_assert_eq(tcall_start(&tc, pl, &top_op_cancel_later, &top), 0);
  cr_assert_eq(fx_close(&FX), 0);
  cr_expect_eq(r.wound, 0, "never from inside fy_ctx_close()");
  fx_advance(&FX, 0);
  cr_expect_eq(r.wound, 1);
  cr_expect(r.policy_open, "a policy was closing before the attachment "
                           "was told");
  cr_expect_eq(r.destroyed, 0, "destroyed while a call was still alive");
  top_report_all(&top, UV_ECANCELED);
  fx_finish(&FX);
  cr_expect_eq(tc.ncb, 1);
  cr_expect_eq(r.wound, 1);
  cr_expect_eq(r.destroyed, 1);
  cr_expect_lt(r.wound_at, r.destroyed_at);
  cr_expect_eq(r.ctx_closed_at_destroy, 0,
               "destroy must run before the context's close callback");
}

Test(attach, hooks_may_detach_themselves_and_each_other) {
  rec_t a = {0}, b = {0}, c = {0}, d = {0};
  fx_init(&FX, 0);
  attach(&a);
  attach(&b);
  attach(&c);
  attach(&d);
  a.other = &b.a;   /* b is detached before its turn: no hook at all */
  c.detach_self = 1; /* c goes after its wind-down: no destroy */
  d.other = &a.a;   /* a is detached after its turn: no destroy */
  fx_finish(&FX);
  cr_expect_eq(a.wound, 1);
  cr_expect_eq(a.destroyed, 0);
  cr_expect_eq(b.wound, 0);
  cr_expect_eq(b.destroyed, 0);
  cr_expect_eq(c.wound, 1);
  cr_expect_eq(c.destroyed, 0);
  cr_expect_eq(d.wound, 1);
  cr_expect_eq(d.destroyed, 1);
}

/* ---- close groups ------------------------------------------------------ */

typedef struct grp_s {
  fy_close_group_t g;
  unsigned done;
  unsigned inside; /* set while fy_close_group_wait() runs */
  unsigned done_inside;
} grp_t;

static void grp_done(fy_close_group_t *g) {
  grp_t *x = fy_container_of(g, grp_t, g);
  x->done++;
  x->done_inside += x->inside;
}

Test(close_group, calls_back_once_after_the_last_part) {
  grp_t x = {0};
  fy_policy_t *p1, *p2;
  fx_init(&FX, 0);
  p1 = fx_passthrough(&FX, "p1");
  p2 = fx_passthrough(&FX, "p2");
  fy_close_group_init(&x.g);
  cr_expect_eq(fy_close_group_add(&x.g,
                                  fy_policy_close(p1, fy_close_group_cb, &x.g)),
               0);
  cr_expect_eq(fy_close_group_add(&x.g,
                                  fy_policy_close(p2, fy_close_group_cb, &x.g)),
               0);
  x.inside = 1;
  cr_assert_eq(fy_close_group_wait(&x.g, grp_done), 0);
  x.inside = 0;
  cr_expect_eq(x.done, 0);
  fx_advance(&FX, 0);
  cr_expect_eq(x.done, 1);
  cr_expect_eq(x.done_inside, 0);
  fx_finish(&FX);
  cr_expect_eq(x.done, 1);
}

Test(close_group, nothing_added_or_a_refused_close_never_calls_back) {
  grp_t empty = {0}, x = {0};
  fy_policy_t *p1, *p2;
  fx_init(&FX, 0);
  p1 = fx_passthrough(&FX, "p1");
  p2 = fx_passthrough(&FX, "p2");
  fy_close_group_init(&empty.g);
  cr_expect_eq(fy_close_group_wait(&empty.g, grp_done), FY_ECLOSED);
  /* p2 is already closing: its close is refused, the group fails, and the
   * callback of p1 that is still due changes nothing. */
  cr_assert_eq(fy_policy_close(p2, NULL, NULL), 0);
  fy_close_group_init(&x.g);
  cr_expect_eq(fy_close_group_add(&x.g,
                                  fy_policy_close(p1, fy_close_group_cb, &x.g)),
               0);
  cr_expect_eq(fy_close_group_add(&x.g,
                                  fy_policy_close(p2, fy_close_group_cb, &x.g)),
               FY_ECLOSED);
  cr_expect_eq(fy_close_group_wait(&x.g, grp_done), FY_ECLOSED);
  fx_advance(&FX, 0);
  fx_finish(&FX);
  cr_expect_eq(x.done, 0);
  cr_expect_eq(empty.done, 0);
}
