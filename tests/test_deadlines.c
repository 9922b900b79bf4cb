/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * Deadlines on a context: firing order on the manual clock, insertion,
 * restart and stop from inside callbacks, 100k pending deadlines, argument
 * validation, loop liveness on the real clock, and close. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"

typedef struct tdl_s tdl_t;
struct tdl_s {
  fy_deadline_t d;
  unsigned id;
  unsigned fired;
  uint64_t at;                /* context clock when it fired */
  void (*action)(tdl_t *t);   /* runs inside the callback */
  tdl_t *other;
  uint64_t arg;
  unsigned left;
};

#define MAXORDER 64
static unsigned order[MAXORDER];
static unsigned norder;
static int inside_active; /* is_active() seen inside a callback */

static void on_dl(fy_deadline_t *d) {
  tdl_t *t = fy_container_of(d, tdl_t, d);
  t->fired++;
  t->at = fy_ctx_now(FX.ctx);
  if (fy_deadline_is_active(d))
    inside_active++;
  if (norder < MAXORDER)
    order[norder] = t->id;
  norder++;
  if (t->action != NULL)
    t->action(t);
}

static void dl_init(tdl_t *t, unsigned id) {
  memset(t, 0, sizeof(*t));
  t->id = id;
  fy_deadline_init(FX.ctx, &t->d, on_dl);
}

static void start(tdl_t *t, uint64_t ms) {
  cr_assert_eq(fy_deadline_start(&t->d, ms), 0);
}

TestSuite(deadlines);

Test(deadlines, fire_in_order_of_expiry_with_the_clock_at_each) {
  static const uint64_t ms[] = {30, 10, 20, 10, 0, 25};
  static const unsigned want[] = {4, 1, 3, 2, 5, 0};
  tdl_t t[6];
  unsigned i;
  fx_init(&FX, 1000);
  for (i = 0; i < 6; i++) {
    dl_init(&t[i], i);
    start(&t[i], ms[i]);
    cr_assert_eq(fy_deadline_expiry(&t[i].d), 1000 + ms[i]);
    cr_assert(fy_deadline_is_active(&t[i].d));
  }
  cr_assert_eq(fy_ctx_pending_deadlines(FX.ctx), 6);
  fx_advance(&FX, 100);
  cr_assert_eq(norder, 6);
  for (i = 0; i < 6; i++) {
    cr_expect_eq(order[i], want[i], "position %u: %u", i, order[i]);
    cr_expect_eq(t[i].fired, 1);
    cr_expect_eq(t[i].at, 1000 + ms[i]);
    cr_expect_not(fy_deadline_is_active(&t[i].d));
    cr_expect_eq(fy_deadline_expiry(&t[i].d), FY_TIME_NEVER);
  }
  cr_assert_eq(inside_active, 0);
  cr_assert_eq(fy_ctx_now(FX.ctx), 1100);
  cr_assert_eq(fy_ctx_pending_deadlines(FX.ctx), 0);
  fx_finish(&FX);
}

Test(deadlines, nothing_fires_early) {
  tdl_t a;
  fx_init(&FX, 0);
  dl_init(&a, 0);
  start(&a, 10);
  fx_advance(&FX, 9);
  cr_assert_eq(a.fired, 0);
  cr_assert_eq(fy_ctx_now(FX.ctx), 9);
  fx_advance(&FX, 0);
  cr_assert_eq(a.fired, 0);
  fx_advance(&FX, 1);
  cr_assert_eq(a.fired, 1);
  cr_assert_eq(a.at, 10);
  fx_advance(&FX, 1000);
  cr_assert_eq(a.fired, 1);
  fx_finish(&FX);
}

Test(deadlines, zero_ms_and_past_fire_on_advance_zero_not_inside_start) {
  tdl_t a, b;
  fx_init(&FX, 500);
  dl_init(&a, 0);
  dl_init(&b, 1);
  start(&a, 0);
  cr_assert_eq(fy_deadline_start_at(&b.d, 3), 0); /* in the past */
  cr_assert_eq(a.fired + b.fired, 0, "fired inside fy_deadline_start");
  fx_advance(&FX, 0);
  cr_assert_eq(a.fired, 1);
  cr_assert_eq(b.fired, 1);
  cr_assert_eq(a.at, 500);
  cr_assert_eq(b.at, 500);
  cr_assert_eq(order[0], 0);
  cr_assert_eq(order[1], 1);
  fx_finish(&FX);
}

/* ---- inserted from inside callbacks ------------------------------------ */

static tdl_t nest[6];

static void insert_more(tdl_t *t) {
  (void)t;
  start(&nest[2], 0);   /* due now: after the one already due now */
  start(&nest[3], 5);   /* inside the advance */
  start(&nest[4], 200); /* beyond it */
}

Test(deadlines, inserted_from_callbacks_including_zero_ms) {
  unsigned i;
  fx_init(&FX, 0);
  for (i = 0; i < 5; i++)
    dl_init(&nest[i], i);
  nest[0].action = insert_more;
  start(&nest[0], 10);
  start(&nest[1], 10);
  fx_advance(&FX, 100);
  cr_assert_eq(norder, 4);
  cr_assert_eq(order[0], 0);
  cr_assert_eq(order[1], 1);
  cr_assert_eq(order[2], 2);
  cr_assert_eq(order[3], 3);
  cr_assert_eq(nest[2].at, 10);
  cr_assert_eq(nest[3].at, 15);
  cr_assert_eq(nest[4].fired, 0);
  cr_assert(fy_deadline_is_active(&nest[4].d));
  cr_assert_eq(fy_deadline_expiry(&nest[4].d), 210);
  fx_advance(&FX, 110);
  cr_assert_eq(nest[4].fired, 1);
  cr_assert_eq(nest[4].at, 210);
  fx_finish(&FX);
}

static void restart_self(tdl_t *t) {
  if (t->left > 0) {
    t->left--;
    start(t, t->arg);
    cr_assert(fy_deadline_is_active(&t->d));
  }
}

Test(deadlines, restart_inside_own_callback) {
  tdl_t a, z;
  fx_init(&FX, 0);
  dl_init(&a, 0);
  a.action = restart_self;
  a.arg = 10;
  a.left = 4;
  start(&a, 10);
  fx_advance(&FX, 1000);
  cr_assert_eq(a.fired, 5); /* 10, 20, 30, 40, 50 */
  cr_assert_eq(a.at, 50);
  cr_assert_not(fy_deadline_is_active(&a.d));

  /* 0 ms from inside its own callback: again in the same advance, at the
   * same instant, and the advance still ends. */
  dl_init(&z, 1);
  z.action = restart_self;
  z.arg = 0;
  z.left = 3;
  start(&z, 7);
  fx_advance(&FX, 10);
  cr_assert_eq(z.fired, 4);
  cr_assert_eq(z.at, 1007);
  cr_assert_eq(fy_ctx_now(FX.ctx), 1010);
  fx_finish(&FX);
}

static void stop_other(tdl_t *t) { fy_deadline_stop(&t->other->d); }
static void restart_other(tdl_t *t) { start(t->other, t->arg); }

Test(deadlines, stopping_a_due_sibling_inside_a_callback) {
  tdl_t a, b, c, d;
  fx_init(&FX, 0);
  dl_init(&a, 0);
  dl_init(&b, 1);
  dl_init(&c, 2);
  dl_init(&d, 3);
  a.action = stop_other;
  a.other = &b;
  c.action = stop_other;
  c.other = &d;
  start(&a, 10);
  start(&b, 10); /* due in the same batch as a: must never fire */
  start(&c, 20);
  start(&d, 21); /* due in a later batch of the same advance */
  fx_advance(&FX, 100);
  cr_assert_eq(a.fired, 1);
  cr_assert_eq(b.fired, 0);
  cr_assert_eq(c.fired, 1);
  cr_assert_eq(d.fired, 0);
  cr_assert_not(fy_deadline_is_active(&b.d));
  cr_assert_eq(fy_ctx_pending_deadlines(FX.ctx), 0);
  fx_advance(&FX, 10000);
  cr_assert_eq(b.fired + d.fired, 0);
  fx_finish(&FX);
}

Test(deadlines, restarting_a_due_sibling_inside_a_callback) {
  tdl_t a, b;
  fx_init(&FX, 0);
  dl_init(&a, 0);
  dl_init(&b, 1);
  a.action = restart_other;
  a.other = &b;
  a.arg = 5;
  start(&a, 10);
  start(&b, 10);
  fx_advance(&FX, 100);
  cr_assert_eq(a.fired, 1);
  cr_assert_eq(b.fired, 1);
  cr_assert_eq(b.at, 15);
  fx_finish(&FX);
}

Test(deadlines, stop_and_restart_outside_callbacks) {
  tdl_t a;
  fx_init(&FX, 0);
  dl_init(&a, 0);
  fy_deadline_stop(&a.d); /* never started: no-op */
  start(&a, 50);
  start(&a, 20); /* a restart replaces */
  cr_assert_eq(fy_ctx_pending_deadlines(FX.ctx), 1);
  cr_assert_eq(fy_deadline_expiry(&a.d), 20);
  fy_deadline_stop(&a.d);
  fy_deadline_stop(&a.d);
  cr_assert_eq(fy_ctx_pending_deadlines(FX.ctx), 0);
  fx_advance(&FX, 100);
  cr_assert_eq(a.fired, 0);
  start(&a, 1);
  fx_advance(&FX, 1);
  cr_assert_eq(a.fired, 1);
  fx_finish(&FX);
}

/* ---- 100k pending deadlines -------------------------------------------- */

#define BIG 100000u
#define SPAN 50000u /* every expiry is shared by two deadlines */

static tdl_t *big;
static uint64_t last_exp;
static unsigned last_id;
static unsigned big_fired, big_errors;

static void on_big(fy_deadline_t *d) {
  tdl_t *t = fy_container_of(d, tdl_t, d);
  uint64_t now = fy_ctx_now(FX.ctx);
  t->fired++;
  big_fired++;
  if (now != t->arg || t->fired != 1 || (t->id & 1u))
    big_errors++;
  /* In order of expiry, ties in start order (ids were started in order). */
  if (big_fired > 1 &&
      (t->arg < last_exp || (t->arg == last_exp && t->id <= last_id)))
    big_errors++;
  last_exp = t->arg;
  last_id = t->id;
}

Test(deadlines, hundred_thousand_pending) {
  unsigned i;
  uint64_t t;
  fx_init(&FX, 0);
  big = calloc(BIG, sizeof(*big));
  cr_assert_not_null(big);
  for (i = 0; i < BIG; i++) {
    big[i].id = i;
    big[i].arg = (uint64_t)(i * 7919u % SPAN) + 1; /* expiry */
    fy_deadline_init(FX.ctx, &big[i].d, on_big);
    if (fy_deadline_start(&big[i].d, big[i].arg) != 0)
      big_errors++;
  }
  cr_assert_eq(big_errors, 0);
  cr_assert_eq(fy_ctx_pending_deadlines(FX.ctx), BIG);
  for (i = 1; i < BIG; i += 2)
    fy_deadline_stop(&big[i].d);
  cr_assert_eq(fy_ctx_pending_deadlines(FX.ctx), BIG / 2);
  for (t = 0; t < SPAN + 1000; t += 997) {
    fx_advance(&FX, 997);
    cr_assert_eq(big_errors, 0, "wrong order or instant before %llu",
                 (unsigned long long)fy_ctx_now(FX.ctx));
  }
  cr_assert_eq(big_fired, BIG / 2);
  cr_assert_eq(fy_ctx_pending_deadlines(FX.ctx), 0);
  for (i = 0; i < BIG; i++)
    if (big[i].fired != ((i & 1u) ? 0u : 1u))
      big_errors++;
  cr_assert_eq(big_errors, 0);
  fx_finish(&FX);
  free(big);
}

/* ---- validation -------------------------------------------------------- */

Test(deadlines, argument_validation) {
  fy_deadline_t zero;
  tdl_t a;
  fx_init(&FX, 0);
  memset(&zero, 0, sizeof(zero));
  cr_assert_eq(fy_deadline_start(&zero, 10), UV_EINVAL);
  cr_assert_eq(fy_deadline_start_at(&zero, 10), UV_EINVAL);
  cr_assert_eq(fy_deadline_start(NULL, 10), UV_EINVAL);
  cr_assert_eq(fy_deadline_start_at(NULL, 10), UV_EINVAL);
  fy_deadline_stop(NULL);
  cr_assert_eq(fy_deadline_is_active(NULL), 0);
  cr_assert_eq(fy_deadline_expiry(NULL), FY_TIME_NEVER);

  fy_deadline_init(FX.ctx, &zero, NULL); /* no callback */
  cr_assert_eq(fy_deadline_start(&zero, 10), UV_EINVAL);
  cr_assert_not(fy_deadline_is_active(&zero));

  dl_init(&a, 0);
  cr_assert_not(fy_deadline_is_active(&a.d));
  cr_assert_eq(fy_deadline_expiry(&a.d), FY_TIME_NEVER);
  fx_advance(&FX, 5);
  start(&a, UINT64_MAX); /* saturates */
  cr_assert_eq(fy_deadline_expiry(&a.d), FY_TIME_NEVER - 1);
  fy_deadline_stop(&a.d);

  cr_assert_eq(fy_ctx_advance(NULL, 1), UV_EINVAL);
  fx_finish(&FX);
}

Test(deadlines, advance_saturates_at_the_end_of_time) {
  tdl_t a;
  fx_init(&FX, UINT64_MAX - 100);
  dl_init(&a, 0);
  start(&a, 50);
  fx_advance(&FX, UINT64_MAX);
  cr_assert_eq(a.fired, 1);
  cr_assert_eq(a.at, UINT64_MAX - 50);
  cr_assert_eq(fy_ctx_now(FX.ctx), FY_TIME_NEVER - 1);
  fx_finish(&FX);
}

Test(deadlines, manual_clock_start_and_hrtime) {
  fx_init(&FX, 123456);
  cr_assert_eq(fy_ctx_now(FX.ctx), 123456);
  cr_assert_eq(fy_ctx_hrtime(FX.ctx), 123456ull * 1000000ull);
  fx_advance(&FX, 44);
  cr_assert_eq(fy_ctx_now(FX.ctx), 123500);
  cr_assert_eq(fy_ctx_hrtime(FX.ctx), 123500ull * 1000000ull);
  cr_assert_eq(fy_ctx_loop(FX.ctx), &FX.loop);
  fy_ctx_set_data(FX.ctx, &FX);
  cr_assert_eq(fy_ctx_get_data(FX.ctx), &FX);
  fx_finish(&FX);
}

static int advance_rc = 1;
static void try_advance(tdl_t *t) {
  (void)t;
  advance_rc = fy_ctx_advance(FX.ctx, 10);
}

Test(deadlines, advance_inside_a_callback_is_busy) {
  tdl_t a, b;
  fx_init(&FX, 0);
  dl_init(&a, 0);
  dl_init(&b, 1);
  a.action = try_advance;
  start(&a, 1);
  start(&b, 5);
  fx_advance(&FX, 2);
  cr_assert_eq(advance_rc, UV_EBUSY);
  cr_assert_eq(b.fired, 0);
  cr_assert_eq(fy_ctx_now(FX.ctx), 2);
  fy_deadline_stop(&b.d);
  fx_finish(&FX);
}

Test(deadlines, advance_on_a_real_clock_is_invalid) {
  fx_init_real(&FX);
  cr_assert_eq(fy_ctx_advance(FX.ctx, 1), UV_EINVAL);
  cr_assert_eq(fy_ctx_advance(FX.ctx, 0), UV_EINVAL);
  fx_finish(&FX);
}

/* ---- loop liveness on the real clock ------------------------------------ */

Test(deadlines, idle_real_clock_context_keeps_nothing_alive) {
  tdl_t a;
  fx_init_real(&FX);
  cr_assert_eq(uv_loop_alive(&FX.loop), 0);
  cr_assert_eq(uv_run(&FX.loop, UV_RUN_DEFAULT), 0); /* returns at once */

  dl_init(&a, 0);
  start(&a, 3600 * 1000); /* an hour */
  cr_assert_neq(uv_loop_alive(&FX.loop), 0);
  fy_ctx_unref(FX.ctx);
  cr_assert_eq(uv_loop_alive(&FX.loop), 0);
  cr_assert_eq(uv_run(&FX.loop, UV_RUN_NOWAIT), 0);
  cr_assert_eq(uv_run(&FX.loop, UV_RUN_DEFAULT), 0); /* does not wait */
  cr_assert_eq(a.fired, 0);
  fy_ctx_ref(FX.ctx);
  cr_assert_neq(uv_loop_alive(&FX.loop), 0);
  cr_assert_neq(uv_run(&FX.loop, UV_RUN_NOWAIT), 0);
  /* Stopping the last deadline releases the loop, even when referenced. */
  fy_deadline_stop(&a.d);
  cr_assert_eq(uv_loop_alive(&FX.loop), 0);
  cr_assert_eq(uv_run(&FX.loop, UV_RUN_DEFAULT), 0);
  cr_assert_eq(a.fired, 0);
  fx_finish(&FX);
}

static void check_real_now(tdl_t *t) {
  t->arg = fy_ctx_now(FX.ctx) == uv_now(&FX.loop);
}

Test(deadlines, real_clock_zero_ms_fires_from_the_loop_then_releases_it) {
  tdl_t a;
  fx_init_real(&FX);
  dl_init(&a, 0);
  a.action = check_real_now;
  start(&a, 0);
  cr_assert_eq(a.fired, 0);
  cr_assert_neq(uv_loop_alive(&FX.loop), 0);
  cr_assert_eq(uv_run(&FX.loop, UV_RUN_DEFAULT), 0);
  cr_assert_eq(a.fired, 1);
  cr_assert_eq(a.arg, 1, "context clock is not uv_now()");
  cr_assert_eq(uv_loop_alive(&FX.loop), 0);
  fx_finish(&FX);
}

/* ---- close ------------------------------------------------------------- */

Test(deadlines, pending_deadlines_are_dropped_at_close) {
  tdl_t a;
  fx_init(&FX, 0);
  dl_init(&a, 0);
  start(&a, 10);
  fx_finish(&FX);
  cr_assert_eq(a.fired, 0);
  cr_assert_not(fy_deadline_is_active(&a.d),
                "a dropped deadline still claims to be pending");
  fy_deadline_stop(&a.d); /* harmless: the context is gone */
}

Test(deadlines, real_clock_pending_deadline_dropped_at_close) {
  tdl_t a;
  fx_init_real(&FX);
  dl_init(&a, 0);
  start(&a, 3600 * 1000);
  fx_finish(&FX); /* would hang for an hour if the timer stayed armed */
  cr_assert_eq(a.fired, 0);
  cr_assert_not(fy_deadline_is_active(&a.d));
}

static void close_ctx(tdl_t *t) {
  (void)t;
  cr_assert_eq(fx_close(&FX), 0);
}

Test(deadlines, close_inside_a_callback_drops_later_ones) {
  tdl_t a, b, c;
  fx_init(&FX, 0);
  dl_init(&a, 0);
  dl_init(&b, 1);
  dl_init(&c, 2);
  a.action = close_ctx;
  start(&a, 10);
  start(&b, 20);
  start(&c, 30);
  fx_advance(&FX, 100); /* the close completes during this advance */
  cr_assert_eq(a.fired, 1);
  cr_assert_eq(b.fired, 0, "fired after its context closed");
  cr_assert_eq(c.fired, 0, "fired after its context closed");
  fx_finish(&FX);
  cr_assert_eq(b.fired + c.fired, 0);
}

Test(deadlines, start_after_close_is_refused) {
  tdl_t a;
  fx_init(&FX, 0);
  dl_init(&a, 0);
  cr_assert_eq(fx_close(&FX), 0);
  cr_assert_eq(fy_ctx_close(FX.ctx, NULL, NULL), FY_ECLOSED);
  fx_advance(&FX, 0); /* runs the close: handles are closing now */
  cr_assert_eq(fy_deadline_start(&a.d, 1), FY_ECLOSED);
  cr_assert_not(fy_deadline_is_active(&a.d));
  fx_finish(&FX);
}
