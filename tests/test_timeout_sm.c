/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * The timeout pattern's pure state machine (src/sm/timeout_sm.h): no loop,
 * no context, the time passed in.  The driver's tests are in
 * test_timeout.c. */
#include <criterion/criterion.h>

#include <fortify.h>

#include "timeout_sm.h"

Test(timeout_sm, sm_total_fires_at_its_instant) {
  fy__timeout_sm_t sm;
  fy__timeout_sm_start(&sm, 1000, 100, 0, 0, FY_TIME_NEVER);
  cr_assert_eq(fy__timeout_sm_next(&sm), 1100);
  cr_assert_eq(fy__timeout_sm_due(&sm, 1099), FY_TIMEOUT_STAGE_NONE);
  cr_assert_eq(fy__timeout_sm_due(&sm, 1100), FY_TIMEOUT_STAGE_TOTAL);
  cr_assert_eq(fy__timeout_sm_limit(&sm, FY_TIMEOUT_STAGE_TOTAL), 100);
  cr_assert_eq(fy__timeout_sm_elapsed(&sm, 1100), 100);
  cr_assert_eq(fy__timeout_sm_elapsed(&sm, 900), 0);
  /* A mark changes nothing for total. */
  fy__timeout_sm_mark(&sm, 1050);
  cr_assert_eq(fy__timeout_sm_next(&sm), 1100);
  cr_assert_eq(sm.marks, 1);
}

Test(timeout_sm, sm_first_byte_is_disarmed_by_the_first_mark) {
  fy__timeout_sm_t sm;
  fy__timeout_sm_start(&sm, 0, 500, 50, 0, FY_TIME_NEVER);
  cr_assert_eq(fy__timeout_sm_next(&sm), 50);
  cr_assert_eq(fy__timeout_sm_due(&sm, 50), FY_TIMEOUT_STAGE_FIRST_BYTE);
  fy__timeout_sm_mark(&sm, 49);
  cr_assert_eq(fy__timeout_sm_due(&sm, 50), FY_TIMEOUT_STAGE_NONE);
  cr_assert_eq(fy__timeout_sm_next(&sm), 500);
  cr_assert_eq(fy__timeout_sm_due(&sm, 500), FY_TIMEOUT_STAGE_TOTAL);
}

Test(timeout_sm, sm_w29_idle_is_armed_at_start_and_reset_by_marks) {
  fy__timeout_sm_t sm;
  fy__timeout_sm_start(&sm, 0, 0, 0, 30, FY_TIME_NEVER);
  /* No mark at all: idle still fires. */
  cr_assert_eq(fy__timeout_sm_next(&sm), 30);
  cr_assert_eq(fy__timeout_sm_due(&sm, 30), FY_TIMEOUT_STAGE_IDLE);
  fy__timeout_sm_mark(&sm, 20);
  cr_assert_eq(fy__timeout_sm_next(&sm), 50);
  cr_assert_eq(fy__timeout_sm_due(&sm, 49), FY_TIMEOUT_STAGE_NONE);
  cr_assert_eq(fy__timeout_sm_due(&sm, 50), FY_TIMEOUT_STAGE_IDLE);
  cr_assert_eq(fy__timeout_sm_limit(&sm, FY_TIMEOUT_STAGE_IDLE), 30);
}

Test(timeout_sm, sm_parent_deadline_only_when_strictly_earlier) {
  fy__timeout_sm_t sm;
  /* Parent earlier than the own limit: the expiry is the parent's. */
  fy__timeout_sm_start(&sm, 0, 100, 0, 0, 60);
  cr_assert_eq(fy__timeout_sm_next(&sm), 60);
  cr_assert_eq(fy__timeout_sm_due(&sm, 59), FY_TIMEOUT_STAGE_NONE);
  cr_assert_eq(fy__timeout_sm_due(&sm, 60), FY_TIMEOUT_STAGE_DEADLINE);
  cr_assert_eq(fy__timeout_sm_limit(&sm, FY_TIMEOUT_STAGE_DEADLINE), 60);
  /* Equal: the own limit wins. */
  fy__timeout_sm_start(&sm, 0, 100, 0, 0, 100);
  cr_assert_eq(fy__timeout_sm_due(&sm, 100), FY_TIMEOUT_STAGE_TOTAL);
  /* Own earlier. */
  fy__timeout_sm_start(&sm, 0, 40, 0, 0, 100);
  cr_assert_eq(fy__timeout_sm_due(&sm, 100), FY_TIMEOUT_STAGE_TOTAL);
  /* Parent earlier than a streaming limit too. */
  fy__timeout_sm_start(&sm, 0, 0, 80, 0, 70);
  cr_assert_eq(fy__timeout_sm_due(&sm, 75), FY_TIMEOUT_STAGE_DEADLINE);
}

Test(timeout_sm, sm_equal_instants_prefer_the_most_specific_stage) {
  fy__timeout_sm_t sm;
  fy__timeout_sm_start(&sm, 0, 50, 50, 50, 50);
  cr_assert_eq(fy__timeout_sm_due(&sm, 50), FY_TIMEOUT_STAGE_FIRST_BYTE);
  fy__timeout_sm_start(&sm, 0, 50, 0, 50, FY_TIME_NEVER);
  cr_assert_eq(fy__timeout_sm_due(&sm, 50), FY_TIMEOUT_STAGE_IDLE);
  /* A late look at a past instant reports the earliest stage. */
  fy__timeout_sm_start(&sm, 0, 100, 20, 0, FY_TIME_NEVER);
  cr_assert_eq(fy__timeout_sm_due(&sm, 500), FY_TIMEOUT_STAGE_FIRST_BYTE);
}

Test(timeout_sm, sm_additions_saturate) {
  cr_assert_eq(fy_time_add(FY_TIME_NEVER - 5, 100), FY_TIME_NEVER - 1);
  cr_assert_eq(fy_time_add(10, 5), 15);
}
