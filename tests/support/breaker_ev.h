/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * A breaker state change as one int, EV(from, to), for the breaker's two
 * suites (test_breaker_sm.c, test_breaker.c). */
#ifndef FY_TEST_BREAKER_EV_H
#define FY_TEST_BREAKER_EV_H

#include <fortify.h>

#define EV(from, to) ((int)(from)*10 + (int)(to))
#define C2O EV(FY_BREAKER_CLOSED, FY_BREAKER_OPEN)
#define O2H EV(FY_BREAKER_OPEN, FY_BREAKER_HALF_OPEN)
#define H2O EV(FY_BREAKER_HALF_OPEN, FY_BREAKER_OPEN)
#define H2C EV(FY_BREAKER_HALF_OPEN, FY_BREAKER_CLOSED)
#define O2C EV(FY_BREAKER_OPEN, FY_BREAKER_CLOSED)

#endif /* FY_TEST_BREAKER_EV_H */
