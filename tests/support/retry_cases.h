/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * Classification cases shared by the retry suites (test_retry_sm.c drives
 * the pure classification, test_retry.c the same cases through a
 * pipeline). */
#ifndef FY_TEST_RETRY_CASES_H
#define FY_TEST_RETRY_CASES_H

#include <criterion/criterion.h>

#include <fortify.h>

/* A predicate: UV_EPIPE is retried, UV_ECONNRESET is not, anything else
 * has no opinion.  |user_data| must be &pred_calls, its runs. */
static int pred_calls;
static inline int pred_answer(int status, void *user_data) {
  pred_calls++;
  cr_assert_eq(user_data, &pred_calls);
  if (status == UV_EPIPE)
    return 1;
  if (status == UV_ECONNRESET)
    return 0;
  return -1; /* no opinion */
}

/* Retry exactly UV_EPIPE, FY_ECIRCUITOPEN and UV_ETIMEDOUT, by |mode|. */
static inline void only_list(fy_retry_opts_t *o, fy_retry_codes_mode_t mode) {
  o->codes_mode = mode;
  o->retryable[0] = UV_EPIPE;
  o->retryable[1] = FY_ECIRCUITOPEN; /* a refusal, retried when listed */
  o->retryable[2] = UV_ETIMEDOUT;
  o->retryable_count = 3;
}

#endif /* FY_TEST_RETRY_CASES_H */
