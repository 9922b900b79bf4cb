/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * The bulkhead's pure state machine (src/sm/bulkhead_sm.h): slot and queue
 * accounting without a loop or a context, the time passed in.  The
 * driver's tests are in test_bulkhead.c. */
#include <criterion/criterion.h>

#include "fortify.h"
#include "bulkhead_sm.h"

/* ======================================================================== *
 * Pure state machine.
 * ======================================================================== */

Test(bulkhead_sm, core_admits_until_full_without_queue) {
  fy__bulkhead_sm_t c;
  fy__bulkhead_sm_waiter_t w[3];
  fy__bulkhead_sm_init(&c, 2, 0, 0, 0);
  cr_assert_eq(fy__bulkhead_sm_admit(&c, &w[0], 0), FY__BH_RUN);
  cr_assert_eq(fy__bulkhead_sm_admit(&c, &w[1], 0), FY__BH_RUN);
  cr_assert_eq(fy__bulkhead_sm_admit(&c, &w[2], 0), FY_EBULKHEADFULL);
  cr_assert_eq(c.active, 2);
  cr_assert_eq(c.queued, 0);
  fy__bulkhead_sm_release(&c);
  cr_assert_eq(c.active, 1);
  cr_assert_null(fy__bulkhead_sm_next(&c));
  cr_assert_eq(fy__bulkhead_sm_admit(&c, &w[2], 0), FY__BH_RUN);
}

Test(bulkhead_sm, core_fifo_hands_slots_in_arrival_order) {
  fy__bulkhead_sm_t c;
  fy__bulkhead_sm_waiter_t w[5];
  int i;
  fy__bulkhead_sm_init(&c, 1, 3, 0, 0);
  cr_assert_eq(fy__bulkhead_sm_admit(&c, &w[0], 0), FY__BH_RUN);
  for (i = 1; i <= 3; i++)
    cr_assert_eq(fy__bulkhead_sm_admit(&c, &w[i], 0), FY__BH_QUEUED);
  cr_assert_eq(fy__bulkhead_sm_admit(&c, &w[4], 0), FY_EBULKHEADFULL);
  cr_assert_eq(fy__bulkhead_sm_head(&c), &w[1]);
  for (i = 1; i <= 3; i++) {
    cr_assert_null(fy__bulkhead_sm_next(&c), "no slot is free yet");
    fy__bulkhead_sm_release(&c);
    cr_assert_eq(fy__bulkhead_sm_next(&c), &w[i]);
    cr_assert_eq(c.active, 1);
    cr_assert_eq(c.queued, (uint32_t)(3 - i));
  }
  cr_assert_null(fy__bulkhead_sm_head(&c));
}

Test(bulkhead_sm, core_lifo_hands_slots_newest_first) {
  fy__bulkhead_sm_t c;
  fy__bulkhead_sm_waiter_t w[4];
  int i;
  fy__bulkhead_sm_init(&c, 1, 3, 0, 1);
  cr_assert_eq(fy__bulkhead_sm_admit(&c, &w[0], 0), FY__BH_RUN);
  for (i = 1; i <= 3; i++)
    cr_assert_eq(fy__bulkhead_sm_admit(&c, &w[i], 0), FY__BH_QUEUED);
  for (i = 3; i >= 1; i--) {
    fy__bulkhead_sm_release(&c);
    cr_assert_eq(fy__bulkhead_sm_next(&c), &w[i]);
  }
}

Test(bulkhead_sm, core_no_barging_past_waiters) {
  fy__bulkhead_sm_t c;
  fy__bulkhead_sm_waiter_t w[3];
  fy__bulkhead_sm_init(&c, 1, 2, 0, 0);
  cr_assert_eq(fy__bulkhead_sm_admit(&c, &w[0], 0), FY__BH_RUN);
  cr_assert_eq(fy__bulkhead_sm_admit(&c, &w[1], 0), FY__BH_QUEUED);
  fy__bulkhead_sm_release(&c); /* a slot is free, but w[1] waits for it */
  cr_assert_eq(c.active, 0);
  cr_assert_eq(fy__bulkhead_sm_admit(&c, &w[2], 0), FY__BH_QUEUED,
               "a newcomer must queue behind the waiter");
  cr_assert_eq(fy__bulkhead_sm_try_acquire(&c), FY_EBULKHEADFULL);
  cr_assert_eq(fy__bulkhead_sm_next(&c), &w[1]);
  cr_assert_eq(fy__bulkhead_sm_head(&c), &w[2]);
}

Test(bulkhead_sm, core_w32_running_work_does_not_consume_queue_capacity) {
  fy__bulkhead_sm_t c;
  fy__bulkhead_sm_waiter_t w[4];
  fy__bulkhead_sm_init(&c, 1, 1, 0, 0);
  cr_assert_eq(fy__bulkhead_sm_admit(&c, &w[0], 0), FY__BH_RUN);
  cr_assert_eq(fy__bulkhead_sm_admit(&c, &w[1], 0), FY__BH_QUEUED);
  fy__bulkhead_sm_release(&c);
  cr_assert_eq(fy__bulkhead_sm_next(&c), &w[1]); /* w[1] now runs */
  cr_assert_eq(c.queued, 0);
  /* total in system = active + queued = 1 + 1 */
  cr_assert_eq(fy__bulkhead_sm_admit(&c, &w[2], 0), FY__BH_QUEUED);
  cr_assert_eq(fy__bulkhead_sm_admit(&c, &w[3], 0), FY_EBULKHEADFULL);
}

Test(bulkhead_sm, core_queue_deadline_and_expiry) {
  fy__bulkhead_sm_t c;
  fy__bulkhead_sm_waiter_t w[3];
  fy__bulkhead_sm_init(&c, 1, 2, 0, 0);
  cr_assert_eq(fy__bulkhead_sm_queue_deadline(&c, 500), FY_TIME_NEVER);
  fy__bulkhead_sm_init(&c, 1, 2, 100, 0);
  cr_assert_eq(fy__bulkhead_sm_queue_deadline(&c, 500), 600);
  cr_assert_eq(fy__bulkhead_sm_queue_deadline(&c, FY_TIME_NEVER - 10),
               FY_TIME_NEVER - 1, "saturates, never wraps");
  cr_assert_eq(fy__bulkhead_sm_admit(&c, &w[0], 500), FY__BH_RUN);
  cr_assert_eq(fy__bulkhead_sm_admit(&c, &w[1], 500), FY__BH_QUEUED);
  cr_assert_eq(w[1].deadline, 600);
  cr_assert_not(fy__bulkhead_sm_expired(&w[1], 599));
  cr_assert(fy__bulkhead_sm_expired(&w[1], 600));
  w[2].deadline = FY_TIME_NEVER;
  cr_assert_not(fy__bulkhead_sm_expired(&w[2], FY_TIME_NEVER - 1));
}

Test(bulkhead_sm, core_leave_and_release_underflow) {
  fy__bulkhead_sm_t c;
  fy__bulkhead_sm_waiter_t w[3];
  fy__bulkhead_sm_init(&c, 1, 2, 0, 0);
  fy__bulkhead_sm_release(&c); /* nothing held: no-op */
  cr_assert_eq(c.active, 0);
  cr_assert_eq(fy__bulkhead_sm_admit(&c, &w[0], 0), FY__BH_RUN);
  cr_assert_eq(fy__bulkhead_sm_admit(&c, &w[1], 0), FY__BH_QUEUED);
  cr_assert_eq(fy__bulkhead_sm_admit(&c, &w[2], 0), FY__BH_QUEUED);
  fy__bulkhead_sm_leave(&c, &w[1]);
  cr_assert_eq(c.queued, 1);
  fy__bulkhead_sm_release(&c);
  cr_assert_eq(fy__bulkhead_sm_next(&c), &w[2]);
  cr_assert_eq(fy__bulkhead_sm_try_acquire(&c), FY_EBULKHEADFULL);
  fy__bulkhead_sm_release(&c);
  cr_assert_eq(fy__bulkhead_sm_try_acquire(&c), 0);
}
