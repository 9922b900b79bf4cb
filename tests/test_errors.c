/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * Error codes: the FY_ block, names and messages, delegation to libuv, the
 * reentrant forms and their truncation, event names. */
#include <criterion/criterion.h>
#include <string.h>

#include <fortify.h>

typedef struct {
  int code;
  int off;
  const char *name;
  const char *msg;
} fy_code_t;

static const fy_code_t fy_codes[] = {
#define XX(name, off, msg) {FY_##name, off, "FY_" #name, msg},
    FY_ERRNO_MAP(XX)
#undef XX
};
#define NCODES (sizeof(fy_codes) / sizeof(fy_codes[0]))

TestSuite(errors);

Test(errors, every_fy_code_has_its_name_and_message) {
  size_t i;
  char buf[128];
  cr_assert_eq(NCODES, 9);
  for (i = 0; i < NCODES; i++) {
    const fy_code_t *c = &fy_codes[i];
    cr_expect_str_eq(fy_err_name(c->code), c->name);
    cr_expect_eq(strncmp(fy_err_name(c->code), "FY_", 3), 0);
    cr_expect_str_eq(fy_strerror(c->code), c->msg);
    cr_expect_gt(strlen(fy_strerror(c->code)), 0);
    cr_expect_str_eq(fy_err_name_r(c->code, buf, sizeof(buf)), c->name);
    cr_expect_str_eq(fy_strerror_r(c->code, buf, sizeof(buf)), c->msg);
    cr_expect_eq(fy_is_fy_error(c->code), 1, "%s", c->name);
  }
}

Test(errors, fy_codes_sit_below_libuv_and_are_distinct) {
  size_t i, j;
  for (i = 0; i < NCODES; i++) {
    cr_expect_lt(fy_codes[i].code, UV_ERRNO_MAX, "%s", fy_codes[i].name);
    cr_expect_gt(fy_codes[i].code, FY__ERRNO_LAST, "%s", fy_codes[i].name);
    cr_expect_lt(fy_codes[i].code, 0);
    /* Offsets are ABI: FY_<n> = -5000 - offset, offsets rising. */
    cr_expect_eq(fy_codes[i].code, FY__ERRNO_BASE - fy_codes[i].off);
    if (i > 0)
      cr_expect_gt(fy_codes[i].off, fy_codes[i - 1].off, "%s",
                   fy_codes[i].name);
    for (j = i + 1; j < NCODES; j++)
      cr_expect_neq(fy_codes[i].code, fy_codes[j].code);
  }
  cr_expect_eq(FY_ECIRCUITOPEN, -5001);
  cr_expect_eq(FY_EBULKHEADFULL, -5003);
  cr_expect_eq(FY_EQUEUETIMEOUT, -5004);
  cr_expect_eq(FY_ECLOSED, -5005);
  cr_expect_eq(FY_EDEADLINE, -5006);
  cr_expect_eq(FY_EFALLBACK, -5009);
  cr_expect_eq(FY_EKEY, -5011);
  cr_expect_eq(FY_EBADRESULT, -5015);
  cr_expect_eq(FY_ERATELIMITED, -5016);
  cr_expect_str_eq(fy_strerror(FY_ERATELIMITED), "rate limit exceeded");
  cr_expect_eq(fy_is_refusal(FY_ERATELIMITED), 1);
}

/* The offsets of removed codes stay free: nothing of the library answers
 * to them. */
Test(errors, offsets_of_removed_codes_are_not_library_codes) {
  static const int removed[] = {2, 7, 8, 10, 12, 13, 14};
  size_t i;
  for (i = 0; i < sizeof(removed) / sizeof(removed[0]); i++) {
    int code = FY__ERRNO_BASE - removed[i];
    cr_expect_eq(fy_is_fy_error(code), 0, "%d", code);
    cr_expect_eq(fy_is_refusal(code), 0, "%d", code);
    cr_expect_neq(strncmp(fy_err_name(code), "FY_", 3), 0, "%d named %s",
                  code, fy_err_name(code));
  }
}

/* fy_err_name() and fy_strerror() each have their own buffer: one printf()
 * may take both, for every kind of code. */
Test(errors, name_and_message_in_one_printf) {
  static const int codes[] = {UV_ECONNRESET, FY_ECIRCUITOPEN,
                              FY_EHTTP_STATUS(503), -123456};
  char line[256], name[128], msg[128];
  size_t i;
  for (i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
    int code = codes[i];
    fy_err_name_r(code, name, sizeof(name));
    fy_strerror_r(code, msg, sizeof(msg));
    snprintf(line, sizeof(line), "%s: %s", fy_err_name(code),
             fy_strerror(code));
    cr_expect_str_eq(line, strcat(strcat(name, ": "), msg), "code %d",
                     code);
  }
  snprintf(line, sizeof(line), "%s: %s", fy_err_name(UV_ECONNRESET),
           fy_strerror(UV_ECONNRESET));
  snprintf(msg, sizeof(msg), "UV_ECONNRESET: %s", uv_strerror(UV_ECONNRESET));
  cr_expect_str_eq(line, msg);
  snprintf(line, sizeof(line), "%s: %s", fy_err_name(FY_ECIRCUITOPEN),
           fy_strerror(FY_ECIRCUITOPEN));
  cr_expect_str_eq(line, "FY_ECIRCUITOPEN: circuit breaker is open");
  snprintf(line, sizeof(line), "%s: %s", fy_err_name(FY_EHTTP_STATUS(404)),
           fy_strerror(FY_EHTTP_STATUS(404)));
  cr_expect_str_eq(line, "FY_EHTTP_404: HTTP status 404");
}

Test(errors, libuv_codes_keep_libuv_names_and_messages) {
  char expect[96];
  cr_assert_str_eq(fy_err_name(UV_ECANCELED), "UV_ECANCELED");
  cr_assert_str_eq(fy_err_name(UV_ETIMEDOUT), "UV_ETIMEDOUT");
  cr_assert_str_eq(fy_strerror(UV_ECANCELED), uv_strerror(UV_ECANCELED));
#define XX(code, _)                                                            \
  snprintf(expect, sizeof(expect), "UV_%s", #code);                            \
  cr_expect_str_eq(fy_err_name(UV_##code), expect);                            \
  cr_expect_str_eq(fy_strerror(UV_##code), uv_strerror(UV_##code));            \
  cr_expect_eq(fy_is_fy_error(UV_##code), 0, "%s", #code);
  UV_ERRNO_MAP(XX)
#undef XX
}

Test(errors, zero_and_unknown_codes_do_not_crash) {
  static const int unknown[] = {-123456, FY__ERRNO_BASE - 500, FY__ERRNO_LAST,
                                -1000000, 1, 77, -5000};
  size_t i;
  int k;
  char buf[64];
  cr_expect_eq(fy_is_fy_error(0), 0);
  cr_expect_not_null(fy_err_name(0));
  cr_expect_not_null(fy_strerror(0));
  for (i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++) {
    const char *n;
    cr_expect_eq(fy_is_fy_error(unknown[i]), 0, "%d", unknown[i]);
    /* libuv's own uv_err_name() leaks on unknown codes; fortify must not,
     * even called many times (the leak checkers see the rest). */
    for (k = 0; k < 100; k++) {
      n = fy_err_name(unknown[i]);
      cr_assert_not_null(n);
      cr_assert_neq(strncmp(n, "FY_", 3), 0, "unknown %d named %s",
                    unknown[i], n);
      cr_assert_gt(strlen(fy_strerror(unknown[i])), 0);
    }
    cr_expect_str_eq(fy_err_name_r(unknown[i], buf, sizeof(buf)),
                     fy_err_name(unknown[i]));
    cr_expect_str_eq(fy_strerror_r(unknown[i], buf, sizeof(buf)),
                     fy_strerror(unknown[i]));
  }
  cr_expect_not_null(strstr(fy_err_name(-123456), "-123456"));
}

/* Fill with a canary, call, check the string fits and the canary stands. */
static void check_truncation(int code, int name) {
  char buf[16], full[128];
  size_t len, sizes[] = {1, 2, 4, 5, 8};
  size_t i;
  if (name)
    fy_err_name_r(code, full, sizeof(full));
  else
    fy_strerror_r(code, full, sizeof(full));
  for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
    size_t n = sizes[i];
    char *ret;
    memset(buf, 'Z', sizeof(buf));
    ret = name ? fy_err_name_r(code, buf, n) : fy_strerror_r(code, buf, n);
    cr_assert_eq(ret, buf);
    len = strnlen(buf, n);
    cr_assert_lt(len, n, "code %d size %zu not terminated", code, n);
    cr_assert_eq(len, strlen(full) < n - 1 ? strlen(full) : n - 1,
                 "code %d size %zu: '%s' from '%s'", code, n, buf, full);
    cr_assert_eq(strncmp(buf, full, len), 0);
    cr_assert_eq(buf[n], 'Z', "code %d size %zu wrote past the end", code, n);
  }
  /* Size 0 and a NULL buffer write nothing. */
  memset(buf, 'Z', sizeof(buf));
  cr_assert_eq(name ? fy_err_name_r(code, buf, 0) : fy_strerror_r(code, buf, 0),
               buf);
  cr_assert_eq(buf[0], 'Z');
  cr_assert_null(name ? fy_err_name_r(code, NULL, 0)
                      : fy_strerror_r(code, NULL, 0));
  cr_assert_null(name ? fy_err_name_r(code, NULL, 10)
                      : fy_strerror_r(code, NULL, 10));
}

Test(errors, reentrant_forms_truncate_safely) {
  static const int codes[] = {FY_ECIRCUITOPEN, FY_EBADRESULT, UV_ECANCELED,
                              UV_EINVAL, -123456, 0};
  size_t i;
  for (i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
    check_truncation(codes[i], 1);
    check_truncation(codes[i], 0);
  }
}

Test(errors, event_names) {
  static const char *const names[FY_EV__COUNT] = {
      "call_done", "call_refused", "attempt_start", "attempt_done",
      "reject",    "state_change", "retry",         "timeout",
      "fallback",  "queue",        "allow",         "evict"};
  unsigned t;
  for (t = 0; t < FY_EV__COUNT; t++)
    cr_expect_str_eq(fy_event_name((fy_event_type_t)t), names[t]);
  cr_expect_str_eq(fy_event_name(FY_EV__COUNT), "unknown");
  cr_expect_str_eq(fy_event_name((fy_event_type_t)1000), "unknown");
  cr_expect_eq(FY_EV_ALL, (1u << 12) - 1u);
}

Test(errors, http_status_block) {
  char buf[64];
  int s = FY_EHTTP_STATUS(503);
  cr_assert_eq(s, -6503);
  cr_assert(FY_IS_EHTTP(s));
  cr_assert_eq(FY_EHTTP_CODE(s), 503);
  cr_assert(!FY_IS_EHTTP(FY_ECIRCUITOPEN));
  cr_assert(!FY_IS_EHTTP(UV_ECANCELED));
  cr_assert(FY_EHTTP_STATUS(100) < FY__ERRNO_LAST);
  cr_assert_str_eq(fy_err_name(s), "FY_EHTTP_503");
  cr_assert_str_eq(fy_strerror(s), "HTTP status 503");
  cr_assert_str_eq(fy_err_name_r(FY_EHTTP_STATUS(429), buf, sizeof(buf)),
                   "FY_EHTTP_429");
  cr_assert_str_eq(fy_strerror_r(FY_EHTTP_STATUS(404), buf, 8), "HTTP st");
  cr_assert(!fy_is_fy_error(s));
}
