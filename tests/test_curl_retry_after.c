/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * The curl adapter's Retry-After parser (adapters/curl/retry_after.c): a
 * pure function of the value, the time and the cap, so every case runs on
 * a fixed "now".  The end-to-end cases (through a real response) are in
 * test_curl.c. */
#define _DEFAULT_SOURCE /* gmtime_r, for the cross-check against libc */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "curl_int.h"

/* 2023-11-14 22:13:20 UTC. */
#define NOW INT64_C(1700000000)
/* 1994-11-06 08:49:37 UTC, RFC 9110's example date. */
#define RFC_DATE INT64_C(784111777)
#define CAP FY_CURL_RETRY_AFTER_MAX

TestSuite(curl_retry_after);

/* The hint of |len| bytes of |s|, read from an exact-size heap copy (so
 * that a sanitizer catches a read past the end), at |now| with |cap|.
 * |*rc| gets the return code. */
static uint64_t hint_n(const char *s, size_t len, int64_t now, uint64_t cap,
                       int *rc) {
  char *copy = malloc(len > 0 ? len : 1);
  uint64_t ms = 12345; /* must be overwritten */
  int r;
  cr_assert_not_null(copy);
  memcpy(copy, s, len);
  r = fy_curl__retry_after(copy, len, now, cap, &ms);
  free(copy);
  cr_assert(r == 0 || r == UV_EINVAL, "rc %d", r);
  if (r != 0)
    cr_assert_eq(ms, 0, "an invalid value gives no hint");
  cr_assert_leq(ms, cap);
  if (rc != NULL)
    *rc = r;
  return ms;
}

static uint64_t hint(const char *s, int64_t now, uint64_t cap) {
  return hint_n(s, strlen(s), now, cap, NULL);
}

static int valid(const char *s) {
  int rc;
  hint_n(s, strlen(s), NOW, CAP, &rc);
  return rc == 0;
}

/* The instant a date value stands for (it must be one). */
static int64_t date_of(const char *s, int64_t now) {
  int64_t secs = -1;
  cr_assert_eq(fy_curl__retry_after_parse(s, strlen(s), now, &secs),
               FY_CURL__RA_DATE, "not a date: '%s'", s);
  return secs;
}

/* ---- delay-seconds ----------------------------------------------------- */

Test(curl_retry_after, delay_seconds) {
  int64_t secs = -1;
  cr_assert_eq(hint("0", NOW, CAP), 0);
  cr_assert(valid("0"), "0 is valid: retry now");
  cr_assert_eq(hint("1", NOW, CAP), 1000);
  cr_assert_eq(hint("120", NOW, CAP), 120000);
  cr_assert_eq(hint("007", NOW, CAP), 7000, "leading zeros are digits");
  cr_assert_eq(hint("86400", NOW, CAP), 86400000);
  cr_assert_eq(fy_curl__retry_after_parse("42", 2, NOW, &secs),
               FY_CURL__RA_DELAY);
  cr_assert_eq(secs, 42);
  /* A delay does not depend on the clock. */
  cr_assert_eq(hint("5", 0, CAP), 5000);
  cr_assert_eq(hint("5", INT64_MIN, CAP), 5000);
  cr_assert_eq(hint("5", INT64_MAX, CAP), 5000);
}

Test(curl_retry_after, delay_is_capped) {
  cr_assert_eq(hint("59", NOW, 60000), 59000);
  cr_assert_eq(hint("60", NOW, 60000), 60000);
  cr_assert_eq(hint("61", NOW, 60000), 60000);
  cr_assert_eq(hint("315360000", NOW, 60000), 60000, "ten years");
  /* A cap that is not whole seconds: a delay over it gives the cap. */
  cr_assert_eq(hint("1", NOW, 1500), 1000);
  cr_assert_eq(hint("2", NOW, 1500), 1500);
  cr_assert_eq(hint("1", NOW, 999), 999);
  cr_assert_eq(hint("1", NOW, 1), 1);
}

Test(curl_retry_after, huge_delays_saturate) {
  static char many[10000];
  int64_t secs = 0;
  cr_assert_eq(hint("9223372036854775807", NOW, CAP), CAP); /* INT64_MAX */
  cr_assert_eq(hint("9223372036854775808", NOW, CAP), CAP);
  cr_assert_eq(hint("18446744073709551616", NOW, CAP), CAP); /* 2^64 */
  cr_assert_eq(hint("99999999999999999999999999", NOW, CAP), CAP);
  cr_assert_eq(hint("18446744073709552", NOW, CAP), CAP, "x1000 wraps");
  cr_assert_eq(
      fy_curl__retry_after_parse("99999999999999999999", 20, NOW, &secs),
      FY_CURL__RA_DELAY);
  cr_assert_eq(secs, INT64_MAX);
  memset(many, '9', sizeof(many));
  cr_assert_eq(hint_n(many, sizeof(many), NOW, CAP, NULL), CAP);
  /* Many leading zeros are still a small number. */
  memset(many, '0', sizeof(many));
  many[sizeof(many) - 1] = '3';
  cr_assert_eq(hint_n(many, sizeof(many), NOW, CAP, NULL), 3000);
}

/* Decided: anything that is not 1*DIGIT or an HTTP-date is ignored (no
 * hint), rather than read as far as it makes sense. */
Test(curl_retry_after, not_delay_seconds) {
  /* With non-ASCII digits and spaces (a fullwidth 1, an Arabic-Indic 3,
   * a no-break space). */
  static const char *const bad[] = {
      "",    " ",    "\t \t",  "-1",           "-86400",   "+5",   "1.5",
      "1e3", "0x10", "120abc", "abc",          "1 2",      "1,2",  "12s",
      "1\r", "\r1",  "1\n",    "\v1",          "1\f",      "-0",   "0-",
      "NaN", "inf",  "1_000",  "\xef\xbc\x91", "\xd9\xa3", "1\xa0"};
  size_t i;
  int rc;
  for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    cr_assert_eq(hint_n(bad[i], strlen(bad[i]), NOW, CAP, &rc), 0, "'%s'",
                 bad[i]);
    cr_assert_eq(rc, UV_EINVAL, "'%s' accepted", bad[i]);
  }
  /* A NUL inside is a byte like any other. */
  cr_assert_eq(hint_n("1\0002", 3, NOW, CAP, &rc), 0);
  cr_assert_eq(rc, UV_EINVAL);
  cr_assert_eq(fy_curl__retry_after(NULL, 0, NOW, CAP, &(uint64_t){7}),
               UV_EINVAL);
}

Test(curl_retry_after, only_len_bytes_are_read) {
  cr_assert_eq(hint_n("120abc", 3, NOW, CAP, NULL), 120000);
  cr_assert_eq(hint_n("12", 1, NOW, CAP, NULL), 1000);
  cr_assert_eq(
      hint_n("Sun, 06 Nov 1994 08:49:37 GMTxyz", 29, RFC_DATE - 9, CAP, NULL),
      9000);
}

Test(curl_retry_after, surrounding_whitespace) {
  cr_assert_eq(hint(" 120", NOW, CAP), 120000);
  cr_assert_eq(hint("120 ", NOW, CAP), 120000);
  cr_assert_eq(hint(" \t 120\t \t", NOW, CAP), 120000);
  cr_assert_eq(hint("  Sun, 06 Nov 1994 08:49:37 GMT\t", RFC_DATE - 3, CAP),
               3000);
  /* Inside a value, the separators are exact. */
  cr_assert(!valid("1 20"));
  cr_assert(!valid("Sun,  06 Nov 1994 08:49:37 GMT"));
  cr_assert(!valid("Sun, 06 Nov 1994 08:49:37  GMT"));
  cr_assert(!valid("Sun, 06 Nov 1994\t08:49:37 GMT"));
  cr_assert(!valid("Sun Nov   6 08:49:37 1994"));
}

/* ---- HTTP-dates -------------------------------------------------------- */

Test(curl_retry_after, the_three_date_forms) {
  cr_assert_eq(date_of("Sun, 06 Nov 1994 08:49:37 GMT", NOW), RFC_DATE);
  cr_assert_eq(date_of("Sunday, 06-Nov-94 08:49:37 GMT", NOW), RFC_DATE);
  cr_assert_eq(date_of("Sun Nov  6 08:49:37 1994", NOW), RFC_DATE);
  cr_assert_eq(date_of("Sun Nov 06 08:49:37 1994", NOW), RFC_DATE,
               "asctime's day may be 2DIGIT too");
  cr_assert_eq(date_of("Thu, 01 Jan 1970 00:00:00 GMT", NOW), 0);
  cr_assert_eq(date_of("Sat, 01 Jan 2000 00:00:00 GMT", NOW), 946684800);
  cr_assert_eq(date_of("Tue, 14 Nov 2023 22:13:20 GMT", NOW), NOW);
  cr_assert_eq(date_of("Fri, 31 Dec 9999 23:59:59 GMT", NOW),
               INT64_C(253402300799));
  cr_assert_eq(date_of("Sat, 01 Jan 0000 00:00:00 GMT", NOW),
               INT64_C(-62167219200));
  /* Every long weekday name, every month. */
  cr_assert_eq(date_of("Wednesday, 09-Nov-94 08:49:37 GMT", NOW),
               RFC_DATE + 3 * 86400);
  cr_assert_eq(date_of("Mon, 31 Jan 2022 00:00:00 GMT", NOW), 1643587200);
  cr_assert_eq(date_of("Thu, 31 Dec 2020 00:00:00 GMT", NOW), 1609372800);
  cr_assert_eq(date_of("Fri, 30 Sep 2022 12:00:00 GMT", NOW), 1664539200);
}

Test(curl_retry_after, past_present_future) {
  int rc;
  cr_assert_eq(hint("Sun, 06 Nov 1994 08:49:37 GMT", RFC_DATE - 120, CAP),
               120000);
  cr_assert_eq(hint("Sun, 06 Nov 1994 08:49:37 GMT", RFC_DATE - 1, CAP), 1000);
  /* Now or past: valid, but no wait (retry at once, the policy decides). */
  cr_assert_eq(hint_n("Sun, 06 Nov 1994 08:49:37 GMT", 29, RFC_DATE, CAP, &rc),
               0);
  cr_assert_eq(rc, 0);
  cr_assert_eq(hint_n("Sun, 06 Nov 1994 08:49:37 GMT", 29, NOW, CAP, &rc), 0);
  cr_assert_eq(rc, 0);
  cr_assert_eq(hint("Sat, 01 Jan 0000 00:00:00 GMT", NOW, CAP), 0);
  /* Far future: the cap. */
  cr_assert_eq(hint("Fri, 31 Dec 9999 23:59:59 GMT", NOW, CAP), CAP);
  cr_assert_eq(hint("Fri, 31 Dec 9999 23:59:59 GMT", NOW, 60000), 60000);
  cr_assert_eq(hint("Tue, 14 Nov 2023 22:14:20 GMT", NOW, 60000), 60000);
  cr_assert_eq(hint("Tue, 14 Nov 2023 22:14:21 GMT", NOW, 60000), 60000);
  cr_assert_eq(hint("Tue, 14 Nov 2023 22:14:19 GMT", NOW, 60000), 59000);
  /* Any clock: no overflow in the difference. */
  cr_assert_eq(hint("Fri, 31 Dec 9999 23:59:59 GMT", INT64_MIN, CAP), CAP);
  cr_assert_eq(hint("Sat, 01 Jan 0000 00:00:00 GMT", INT64_MAX, CAP), 0);
  cr_assert_eq(hint("Sat, 01 Jan 0000 00:00:00 GMT", INT64_MIN, CAP), CAP);
}

Test(curl_retry_after, leap_years) {
  cr_assert_eq(date_of("Tue, 29 Feb 2000 00:00:00 GMT", NOW), 951782400);
  cr_assert_eq(date_of("Thu, 29 Feb 2024 12:00:00 GMT", NOW), 1709208000);
  cr_assert_eq(date_of("Fri, 01 Mar 2024 00:00:00 GMT", NOW), 1709251200);
  cr_assert_eq(date_of("Thursday, 29-Feb-24 12:00:00 GMT", NOW), 1709208000);
  cr_assert_eq(date_of("Thu Feb 29 12:00:00 2024", NOW), 1709208000);
  cr_assert_eq(date_of("Sat, 29 Feb 0000 00:00:00 GMT", NOW),
               INT64_C(-62167219200) + 59 * 86400);
  cr_assert(!valid("Wed, 29 Feb 2023 00:00:00 GMT"), "2023 is not leap");
  cr_assert(!valid("Thu, 29 Feb 1900 00:00:00 GMT"), "nor is 1900");
  cr_assert(!valid("Mon, 29 Feb 2100 00:00:00 GMT"), "nor 2100");
}

/* Decided: a date that does not exist is not a date, so no hint. */
Test(curl_retry_after, impossible_dates) {
  static const char *const bad[] = {
      "Fri, 30 Feb 2024 00:00:00 GMT",   "Sat, 31 Apr 2023 00:00:00 GMT",
      "Sat, 31 Jun 2023 00:00:00 GMT",   "Sun, 31 Sep 2023 00:00:00 GMT",
      "Fri, 31 Nov 2023 00:00:00 GMT",   "Sun, 00 Jan 2023 00:00:00 GMT",
      "Sun, 32 Jan 2023 00:00:00 GMT",   "Tue, 14 Nov 2023 24:00:00 GMT",
      "Tue, 14 Nov 2023 23:60:00 GMT",   "Tue, 14 Nov 2023 23:59:61 GMT",
      "Tue, 14 Nov 2023 99:99:99 GMT",   "Tue Nov  0 00:00:00 2023",
      "Tuesday, 31-Nov-23 00:00:00 GMT", "Tuesday, 14-Nov-23 24:00:00 GMT"};
  size_t i;
  for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    cr_assert(!valid(bad[i]), "'%s' accepted", bad[i]);
  /* The leap second exists: 23:59:60 is the next day's 00:00:00. */
  cr_assert_eq(date_of("Sat, 31 Dec 2016 23:59:60 GMT", NOW), 1483228800);
}

/* Decided: the weekday must be a weekday's name in the form's spelling,
 * but it is not checked against the date (the date is what the server
 * meant). */
Test(curl_retry_after, weekday) {
  cr_assert_eq(date_of("Mon, 06 Nov 1994 08:49:37 GMT", NOW), RFC_DATE);
  cr_assert_eq(date_of("Friday, 06-Nov-94 08:49:37 GMT", NOW), RFC_DATE);
  cr_assert_eq(date_of("Wed Nov  6 08:49:37 1994", NOW), RFC_DATE);
  cr_assert(!valid("Foo, 06 Nov 1994 08:49:37 GMT"));
  cr_assert(!valid("Sunday, 06 Nov 1994 08:49:37 GMT"), "long name in IMF");
  cr_assert(!valid("Sun, 06-Nov-94 08:49:37 GMT"), "short name in RFC 850");
  cr_assert(!valid("Sund, 06-Nov-94 08:49:37 GMT"));
  cr_assert(!valid("06 Nov 1994 08:49:37 GMT"), "no weekday");
}

Test(curl_retry_after, rfc850_two_digit_years) {
  /* RFC 9110 §5.6.7: more than 50 years ahead means the previous century.
   * Now is 2026-01-01. */
  const int64_t now = INT64_C(1767225600);
  cr_assert_eq(date_of("Saturday, 01-Jan-76 00:00:00 GMT", now),
               date_of("Sat, 01 Jan 2076 00:00:00 GMT", now), "50 years");
  cr_assert_eq(date_of("Saturday, 01-Jan-77 00:00:00 GMT", now),
               date_of("Sat, 01 Jan 1977 00:00:00 GMT", now), "51 years");
  cr_assert_eq(date_of("Saturday, 01-Jan-26 00:00:00 GMT", now), now);
  cr_assert_eq(date_of("Saturday, 01-Jan-00 00:00:00 GMT", now), 946684800);
  /* Late in a century, a small year is the next one's. */
  cr_assert_eq(date_of("Saturday, 01-Jan-10 00:00:00 GMT",
                       date_of("Sat, 01 Jan 2090 00:00:00 GMT", now)),
               date_of("Sat, 01 Jan 2110 00:00:00 GMT", now));
  /* Absurd clocks still give a year in 0000..9999. */
  cr_assert_eq(date_of("Saturday, 01-Jan-10 00:00:00 GMT", INT64_MAX),
               date_of("Sat, 01 Jan 9910 00:00:00 GMT", now));
  cr_assert_eq(date_of("Saturday, 01-Jan-90 00:00:00 GMT", INT64_MIN),
               date_of("Sat, 01 Jan 0090 00:00:00 GMT", now));
}

Test(curl_retry_after, strict_spelling) {
  static const char *const bad[] = {"sun, 06 nov 1994 08:49:37 gmt",
                                    "Sun, 06 NOV 1994 08:49:37 GMT",
                                    "Sun, 06 Nov 1994 08:49:37 UTC",
                                    "Sun, 06 Nov 1994 08:49:37 +0000",
                                    "Sun, 06 Nov 1994 08:49:37",
                                    "Sun, 06 Nov 1994 08:49:37 GMT x",
                                    "Sun, 06 Nov 1994 08:49:37 GM",
                                    "Sun, 6 Nov 1994 08:49:37 GMT",
                                    "Sun, 06 Nov 94 08:49:37 GMT",
                                    "Sun, 06 Nov 19940 08:49:37 GMT",
                                    "Sun, 06 Nov 1994 8:49:37 GMT",
                                    "Sun, 06 Nov 1994 08:49 GMT",
                                    "Sun, 06 Nov 1994 08.49.37 GMT",
                                    "Sun, 06 Xyz 1994 08:49:37 GMT",
                                    "Sun,06 Nov 1994 08:49:37 GMT",
                                    "Sun Nov 6 08:49:37 1994",
                                    "Sun Nov  6 08:49:37 94",
                                    "Sun Nov  6 08:49:37 1994 GMT",
                                    "Sunday, 06-Nov-1994 08:49:37 GMT",
                                    "Sunday, 06-Nov-94 08:49:37",
                                    "Sunday, 06 Nov 94 08:49:37 GMT",
                                    "Sun",
                                    "Sun,",
                                    "2023-11-14T22:13:20Z",
                                    "1700000000.0",
                                    "Sun, 06 Nov 1994 08:49:37 GMT\r"};
  size_t i;
  for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    cr_assert(!valid(bad[i]), "'%s' accepted", bad[i]);
}

Test(curl_retry_after, cap_zero_ignores_the_header) {
  int rc;
  cr_assert_eq(hint_n("120", 3, NOW, 0, &rc), 0);
  cr_assert_eq(rc, 0, "still a valid value");
  cr_assert_eq(hint("Fri, 31 Dec 9999 23:59:59 GMT", NOW, 0), 0);
  cr_assert_eq(fy_curl__retry_after_ms(FY_CURL__RA_DELAY, 5, NOW, 0), 0);
}

Test(curl_retry_after, ms_of_a_parsed_value) {
  cr_assert_eq(fy_curl__retry_after_ms(FY_CURL__RA_NONE, 5, NOW, CAP), 0);
  cr_assert_eq(fy_curl__retry_after_ms(FY_CURL__RA_DELAY, 0, NOW, CAP), 0);
  cr_assert_eq(fy_curl__retry_after_ms(FY_CURL__RA_DELAY, -5, NOW, CAP), 0);
  cr_assert_eq(fy_curl__retry_after_ms(FY_CURL__RA_DELAY, 5, NOW, CAP), 5000);
  cr_assert_eq(
      fy_curl__retry_after_ms(FY_CURL__RA_DELAY, INT64_MAX, NOW, UINT64_MAX),
      UINT64_MAX, "the cap even when x1000 would wrap");
  cr_assert_eq(fy_curl__retry_after_ms(FY_CURL__RA_DATE, NOW + 7, NOW, CAP),
               7000);
  cr_assert_eq(fy_curl__retry_after_ms(FY_CURL__RA_DATE, INT64_MAX, INT64_MIN,
                                       UINT64_MAX),
               UINT64_MAX);
  cr_assert_eq(fy_curl__retry_after_ms(42, 5, NOW, CAP), 0, "unknown kind");
}

/* ---- against libc ------------------------------------------------------ */

/* Every form, formatted by strftime() in the C locale for instants spread
 * over 0000..9999 (a prime step, so that every field takes many values),
 * reads back as that instant. */
Test(curl_retry_after, agrees_with_gmtime) {
  const int64_t lo = INT64_C(-62167219200), hi = INT64_C(253402300799);
  const int64_t step = INT64_C(98765431);
  int64_t t;
  unsigned n = 0;
  for (t = lo; t <= hi; t += step, n++) {
    time_t tt = (time_t)t;
    struct tm tm;
    char buf[64];
    cr_assert_not_null(gmtime_r(&tt, &tm));
    strftime(buf, sizeof(buf), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    if (tm.tm_year + 1900 < 1000)
      continue; /* %Y does not pad to four digits */
    cr_assert_eq(date_of(buf, NOW), t, "%s", buf);
    strftime(buf, sizeof(buf), "%a %b %e %H:%M:%S %Y", &tm);
    cr_assert_eq(date_of(buf, NOW), t, "%s", buf);
    /* RFC 850 read with a clock in the same year. */
    strftime(buf, sizeof(buf), "%A, %d-%b-%y %H:%M:%S GMT", &tm);
    cr_assert_eq(date_of(buf, t), t, "%s", buf);
  }
  cr_assert_gt(n, 2500);
}
