/* Copyright (c) 2026 the fortify authors. MIT licensed. */
#include <stdio.h>

#include "internal.h"

/* Every library code must sit below libuv's whole range, on every
 * platform; UV_ERRNO_MAX is the bottom of libuv's codes. */
#define FY__CHECK_RANGE(name, off, msg)                                        \
  _Static_assert((int)FY_##name < (int)UV_ERRNO_MAX &&                      \
                     (int)FY_##name > (int)FY__ERRNO_LAST,                     \
                 "FY_" #name " collides with libuv's error range");
FY_ERRNO_MAP(FY__CHECK_RANGE)
#undef FY__CHECK_RANGE
_Static_assert(FY_EHTTP_STATUS(100) < (int)FY__ERRNO_LAST,
               "the HTTP block must sit below the library's own block");

/* One buffer per function, so that both may appear in one printf(). */
static _Thread_local char fy__name_buf[128];
static _Thread_local char fy__msg_buf[128];

int fy_is_fy_error(int code) {
  switch (code) {
#define FY__CASE(name, off, msg) case FY_##name:
    FY_ERRNO_MAP(FY__CASE)
#undef FY__CASE
    return 1;
  default:
    return 0;
  }
}

static const char *fy_own_name(int code) {
  switch (code) {
#define FY__NAME(name, off, msg)                                               \
  case FY_##name:                                                              \
    return "FY_" #name;
    FY_ERRNO_MAP(FY__NAME)
#undef FY__NAME
  default:
    return NULL;
  }
}

static const char *fy_own_message(int code) {
  switch (code) {
#define FY__MSG(name, off, msg)                                                \
  case FY_##name:                                                              \
    return msg;
    FY_ERRNO_MAP(FY__MSG)
#undef FY__MSG
  default:
    return NULL;
  }
}

static char *copy_out(const char *s, char *buf, size_t buflen) {
  if (buf == NULL || buflen == 0)
    return buf;
  snprintf(buf, buflen, "%s", s);
  return buf;
}

/* libuv's own uv_err_name()/uv_strerror() leak a strdup'd string for
 * unknown codes, so only the _r forms are used. */
char *fy_err_name_r(int code, char *buf, size_t buflen) {
  const char *own = fy_own_name(code);
  char tmp[96];
  if (own != NULL)
    return copy_out(own, buf, buflen);
  if (FY_IS_EHTTP(code)) {
    if (buf != NULL && buflen > 0)
      snprintf(buf, buflen, "FY_EHTTP_%d", FY_EHTTP_CODE(code));
    return buf;
  }
  if (code == 0)
    return copy_out("OK", buf, buflen);
  uv_err_name_r(code, tmp, sizeof(tmp));
  if (buf == NULL || buflen == 0)
    return buf;
  if (strncmp(tmp, "Unknown", 7) == 0)
    snprintf(buf, buflen, "%s", tmp);
  else
    snprintf(buf, buflen, "UV_%s", tmp);
  return buf;
}

char *fy_strerror_r(int code, char *buf, size_t buflen) {
  const char *own = fy_own_message(code);
  if (own != NULL)
    return copy_out(own, buf, buflen);
  if (FY_IS_EHTTP(code)) {
    if (buf != NULL && buflen > 0)
      snprintf(buf, buflen, "HTTP status %d", FY_EHTTP_CODE(code));
    return buf;
  }
  if (code == 0)
    return copy_out("success", buf, buflen);
  if (buf == NULL || buflen == 0)
    return buf;
  uv_strerror_r(code, buf, buflen);
  return buf;
}

const char *fy_err_name(int code) {
  const char *own = fy_own_name(code);
  if (own != NULL)
    return own;
  return fy_err_name_r(code, fy__name_buf, sizeof(fy__name_buf));
}

const char *fy_strerror(int code) {
  const char *own = fy_own_message(code);
  if (own != NULL)
    return own;
  return fy_strerror_r(code, fy__msg_buf, sizeof(fy__msg_buf));
}
