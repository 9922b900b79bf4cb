/* Copyright (c) 2026 the fortify authors. MIT licensed. */
#ifndef FORTIFY_ERRNO_H
#define FORTIFY_ERRNO_H

#include "fortify/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Errors are 0 or a negative int.  libuv's UV_E* codes keep their meaning
 * (UV_ECANCELED, UV_ETIMEDOUT, UV_ENOMEM, UV_EINVAL, UV_EBUSY, ...).  The
 * library's own outcomes live in the reserved block [-5999, -5000], below
 * every libuv code on every platform (UV_ERRNO_MAX is -4096);
 * src/core/errno.c checks that at compile time.
 *
 * XX(name, offset, message): the code is FY_<name> = FY__ERRNO_BASE - offset.
 * Offsets are part of the ABI: never renumber, only append.  Offsets 2, 7,
 * 8, 10, 12, 13 and 14 belonged to codes that were removed and are never
 * reused. */
#define FY__ERRNO_BASE (-5000)

#define FY_ERRNO_MAP(XX)                                                       \
  XX(ECIRCUITOPEN, 1, "circuit breaker is open")                               \
  XX(EBULKHEADFULL, 3, "bulkhead is full")                                     \
  XX(EQUEUETIMEOUT, 4, "timed out waiting in a queue")                         \
  XX(ECLOSED, 5, "object is closed or closing")                                \
  XX(EDEADLINE, 6, "deadline of the enclosing call exceeded")                  \
  XX(EFALLBACK, 9, "fallback failed")                                          \
  XX(EKEY, 11, "invalid or oversized key")                                     \
  XX(EBADRESULT, 15, "operation reported an invalid outcome")              \
  XX(ERATELIMITED, 16, "rate limit exceeded")

typedef enum {
#define FY__ERRNO_ENUM(name, off, msg) FY_##name = FY__ERRNO_BASE - (off),
  FY_ERRNO_MAP(FY__ERRNO_ENUM)
#undef FY__ERRNO_ENUM
  FY__ERRNO_LAST = FY__ERRNO_BASE - 999
} fy_errno_t;

/* HTTP response statuses as errors: a second reserved block, [-6999,
 * -6100], so that a classifier that only sees an int can still tell a 503
 * from a 404.  FY_EHTTP_STATUS(503) == -6503.  fy_err_name() gives
 * "FY_EHTTP_503" and fy_strerror() "HTTP status 503". */
#define FY__EHTTP_BASE (-6000)
#define FY_EHTTP_STATUS(code) (FY__EHTTP_BASE - (int)(code))
#define FY_IS_EHTTP(status) ((status) <= -6100 && (status) >= -6999)
#define FY_EHTTP_CODE(status) (FY__EHTTP_BASE - (status))

/* 1 when |code| is one of the library's own codes. */
FY_EXTERN int fy_is_fy_error(int code);

/* Name ("FY_ECIRCUITOPEN", "FY_EHTTP_503", "UV_ECANCELED") and message of
 * |code|.  Library codes come from FY_ERRNO_MAP, HTTP statuses are
 * formatted here, every other code is delegated to libuv.  Neither
 * function allocates: the returned string is static or lives in a
 * per-thread buffer of that function, valid until the next call of the
 * same function on the same thread.  The two functions have separate
 * buffers, so both may be used in one printf(). */
FY_EXTERN const char *fy_err_name(int code);
FY_EXTERN const char *fy_strerror(int code);

/* Reentrant forms: write into |buf| (truncating, always terminated) and
 * return |buf|. */
FY_EXTERN char *fy_err_name_r(int code, char *buf, size_t buflen);
FY_EXTERN char *fy_strerror_r(int code, char *buf, size_t buflen);

#ifdef __cplusplus
}
#endif
#endif /* FORTIFY_ERRNO_H */
