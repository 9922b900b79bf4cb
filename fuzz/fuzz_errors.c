/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * Error names and messages for any int, and every other "name of a value"
 * function for any value: never NULL, always terminated, never longer than
 * the buffer given (including 0 and 1 bytes, and NULL), never allocating;
 * the plain and _r forms agree; FY_* names are given exactly to the codes
 * of FY_ERRNO_MAP in the library's block [-5999, -5000] and to the HTTP
 * statuses of the block [-6999, -6100] (FY_EHTTP_<status>); fy_is_refusal()
 * holds only for library codes. */
#include <stdio.h>
#include <string.h>

#include <fortify.h>

#include "fuzz.h"

static void check_r(char *(*fn)(int, char *, size_t), const char *plain,
                    int code, size_t len) {
  char buf[256];
  char *got;
  memset(buf, 'x', sizeof(buf));
  got = fn(code, len ? buf : NULL, len);
  FZ_CHECK(got == (len ? buf : NULL), "the _r form returned another buffer");
  if (len == 0) {
    FZ_CHECK(buf[0] == 'x', "wrote into a zero-length buffer");
    return;
  }
  FZ_CHECK(memchr(buf, '\0', len) != NULL, "not terminated within %zu", len);
  FZ_CHECK(buf[len] == 'x' || len == sizeof(buf), "wrote past %zu bytes", len);
  FZ_CHECK(strncmp(buf, plain, len - 1) == 0,
           "_r '%s' and plain '%s' differ for %d", buf, plain, code);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz_t z;
  long requests;
  fz_init(&z, data, size);
  fz_alloc_install();
  while (!fz_done(&z)) {
    int code = fz_u8(&z) & 1 ? fz_status(&z) : (int)fz_u32(&z);
    size_t len = (size_t)fz_below(&z, 200);
    char name[256], msg[256];
    int own;

    requests = fz_alloc_requests();
    /* The plain forms have a buffer each: both stay valid together. */
    snprintf(name, sizeof(name), "%s", fy_err_name(code));
    snprintf(msg, sizeof(msg), "%s", fy_strerror(code));
    FZ_CHECK(name[0] != '\0' && msg[0] != '\0', "empty text for %d", code);
    {
      const char *pn = fy_err_name(code);
      const char *pm = fy_strerror(code);
      FZ_CHECK(strcmp(pn, name) == 0 && strcmp(pm, msg) == 0,
               "the name and the message of %d overwrite each other", code);
    }
    own = fy_is_fy_error(code);
    if (FY_IS_EHTTP(code)) {
      /* The HTTP block: named after the status, not one of our own. */
      char want[64];
      FZ_CHECK(!own, "HTTP status %d counted as a library code", code);
      snprintf(want, sizeof(want), "FY_EHTTP_%d", FY_EHTTP_CODE(code));
      FZ_CHECK(strcmp(name, want) == 0, "%d named %s", code, name);
      snprintf(want, sizeof(want), "HTTP status %d", FY_EHTTP_CODE(code));
      FZ_CHECK(strcmp(msg, want) == 0, "%d described as %s", code, msg);
    } else if (own) {
      FZ_CHECK(code <= FY__ERRNO_BASE - 1 && code > FY__ERRNO_LAST,
               "library code %d outside its block", code);
      FZ_CHECK(strncmp(name, "FY_", 3) == 0, "library code %d named %s", code,
               name);
    } else {
      FZ_CHECK(strncmp(name, "FY_", 3) != 0, "%d is not ours, yet %s", code,
               name);
    }
    if (fy_is_refusal(code))
      FZ_CHECK(own, "refusal %d is not a library code", code);
    check_r(fy_err_name_r, name, code, len);
    check_r(fy_strerror_r, msg, code, len);
    FZ_CHECK(fz_alloc_requests() == requests, "names allocated");

    FZ_CHECK(fy_event_name((fy_event_type_t)code) != NULL, "event name");
    FZ_CHECK(fy_breaker_state_name((fy_breaker_state_t)code) != NULL,
             "state name");
    FZ_CHECK(fy_breaker_mode_name((fy_breaker_mode_t)code) != NULL,
             "mode name");
    FZ_CHECK(fy_retry_stop_name(code) != NULL, "stop name");
    FZ_CHECK(fy_timeout_stage_name((fy_timeout_stage_t)code) != NULL,
             "stage name");
  }
  return 0;
}
