/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * Retry-After (RFC 9110 §10.2.3), parsed by the adapter rather than by
 * curl: curl's own parser (CURLINFO_RETRY_AFTER, curl_getdate) accepts
 * very loose text, so what counts as a hint would be whatever curl's
 * version of the day says.  Here the grammar is the RFC's, exactly:
 *
 *   Retry-After   = OWS ( HTTP-date / delay-seconds ) OWS
 *   delay-seconds = 1*DIGIT
 *   HTTP-date     = IMF-fixdate / rfc850-date / asctime-date
 *   IMF-fixdate   = "Sun, 06 Nov 1994 08:49:37 GMT"
 *   rfc850-date   = "Sunday, 06-Nov-94 08:49:37 GMT"
 *   asctime-date  = "Sun Nov  6 08:49:37 1994"   (day: 2DIGIT / SP DIGIT)
 *
 * Names, "GMT" and the separators are case-sensitive, as in the RFC.  A
 * date must exist (no Feb 30, no Feb 29 outside leap years, hour 0-23,
 * minute 0-59, second 0-60 for a leap second); the weekday must be a valid
 * name of the right form but is not checked against the date (the date is
 * what the server meant; Go's http.ParseTime ignores it too).  Anything
 * else - a sign, a fraction, an exponent, hex, trailing text, an empty
 * value - is not a Retry-After value: no hint.
 *
 * Everything here is pure: |now_s| is given, nothing is allocated, and the
 * input is read within |len| only (it is not NUL-terminated). */
#include "curl_int.h"

/* Parsing bounds: years are 4DIGIT, and an RFC 850 year is placed within
 * a century of now, so every instant stays in [0000, 9999]. */
#define RA_YEAR_MAX 9999
#define RA_DAYS_TO_EPOCH INT64_C(719528) /* 0000-01-01 .. 1970-01-01 */

static const char *const ra_wday_short[7] = {"Mon", "Tue", "Wed", "Thu",
                                             "Fri", "Sat", "Sun"};
static const char *const ra_wday_long[7] = {"Monday",   "Tuesday", "Wednesday",
                                            "Thursday", "Friday",  "Saturday",
                                            "Sunday"};
static const char *const ra_months[12] = {"Jan", "Feb", "Mar", "Apr",
                                          "May", "Jun", "Jul", "Aug",
                                          "Sep", "Oct", "Nov", "Dec"};

/* ---- a cursor over the value ------------------------------------------- */

typedef struct ra_scan_s {
  const char *p;
  const char *end;
} ra_scan_t;

static int ra_is_digit(char ch) {
  return ch >= '0' && ch <= '9';
}
static int ra_is_ows(char ch) {
  return ch == ' ' || ch == '\t';
}

/* Consume |lit| if the input continues with exactly it. */
static int ra_take(ra_scan_t *s, const char *lit) {
  size_t n = strlen(lit);
  if ((size_t)(s->end - s->p) < n || memcmp(s->p, lit, n) != 0)
    return 0;
  s->p += n;
  return 1;
}

/* Exactly |n| digits. */
static int ra_take_num(ra_scan_t *s, int n, int *out) {
  int v = 0;
  if (s->end - s->p < n)
    return 0;
  for (; n > 0; n--, s->p++) {
    if (!ra_is_digit(*s->p))
      return 0;
    v = v * 10 + (*s->p - '0');
  }
  *out = v;
  return 1;
}

/* One of |names|; its index in |out|.  No name is a prefix of another of
 * the same table, so the first match is the only one. */
static int ra_take_name(ra_scan_t *s, const char *const *names, int count,
                        int *out) {
  int i;
  for (i = 0; i < count; i++) {
    if (ra_take(s, names[i])) {
      *out = i;
      return 1;
    }
  }
  return 0;
}

/* ---- the calendar (proleptic Gregorian, years 0..9999) ----------------- */

typedef struct ra_date_s {
  int year, month, day; /* month 0..11 */
  int hour, min, sec;
} ra_date_t;

static int ra_leap(int y) {
  return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int ra_month_days(int y, int m) {
  static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return m == 1 && ra_leap(y) ? 29 : days[m];
}

/* Days from 0000-01-01 to January 1st of |y|: year 0 is a leap year, and
 * of the years 1..y-1 every fourth is, but of centuries only every
 * fourth. */
static int64_t ra_days_to_year(int y) {
  int64_t p = y - 1;
  if (y == 0)
    return 0;
  return INT64_C(365) * y + 1 + p / 4 - p / 100 + p / 400;
}

/* Unix seconds of a valid |d|. */
static int64_t ra_unix_time(const ra_date_t *d) {
  int64_t days = ra_days_to_year(d->year) - RA_DAYS_TO_EPOCH;
  int m;
  for (m = 0; m < d->month; m++)
    days += ra_month_days(d->year, m);
  days += d->day - 1;
  return days * 86400 + d->hour * 3600 + d->min * 60 + d->sec;
}

/* The year (0..9999) of Unix time |t|, clamped to that range. */
static int ra_year_of(int64_t t) {
  int64_t days;
  int y;
  if (t < -RA_DAYS_TO_EPOCH * 86400)
    return 0;
  days = t / 86400 + RA_DAYS_TO_EPOCH;
  if (t < 0 && t % 86400 != 0)
    days--; /* floor, not truncation */
  if (days >= ra_days_to_year(RA_YEAR_MAX + 1))
    return RA_YEAR_MAX;
  y = (int)(days / 366); /* a lower bound, then walk up */
  while (y < RA_YEAR_MAX && ra_days_to_year(y + 1) <= days)
    y++;
  return y;
}

/* RFC 9110 §5.6.7: a two-digit year that appears to be more than 50 years
 * in the future is the most recent past year with those digits.  So the
 * year is the one ending in |yy| in (now - 50, now + 50]. */
static int ra_full_year(int yy, int64_t now_s) {
  int cur = ra_year_of(now_s);
  int y = cur - cur % 100 + yy;
  if (y > cur + 50)
    y -= 100;
  else if (y <= cur - 50)
    y += 100;
  if (y < 0)
    y += 100;
  if (y > RA_YEAR_MAX)
    y -= 100;
  return y;
}

static int ra_take_time(ra_scan_t *s, ra_date_t *d) {
  return ra_take_num(s, 2, &d->hour) && ra_take(s, ":") &&
         ra_take_num(s, 2, &d->min) && ra_take(s, ":") &&
         ra_take_num(s, 2, &d->sec);
}

/* "Sun, 06 Nov 1994 08:49:37 GMT" */
static int ra_imf_fixdate(ra_scan_t *s, ra_date_t *d) {
  int wd;
  return ra_take_name(s, ra_wday_short, 7, &wd) && ra_take(s, ", ") &&
         ra_take_num(s, 2, &d->day) && ra_take(s, " ") &&
         ra_take_name(s, ra_months, 12, &d->month) && ra_take(s, " ") &&
         ra_take_num(s, 4, &d->year) && ra_take(s, " ") && ra_take_time(s, d) &&
         ra_take(s, " GMT");
}

/* "Sunday, 06-Nov-94 08:49:37 GMT" */
static int ra_rfc850_date(ra_scan_t *s, int64_t now_s, ra_date_t *d) {
  int wd, yy;
  if (!(ra_take_name(s, ra_wday_long, 7, &wd) && ra_take(s, ", ") &&
        ra_take_num(s, 2, &d->day) && ra_take(s, "-") &&
        ra_take_name(s, ra_months, 12, &d->month) && ra_take(s, "-") &&
        ra_take_num(s, 2, &yy) && ra_take(s, " ") && ra_take_time(s, d) &&
        ra_take(s, " GMT")))
    return 0;
  d->year = ra_full_year(yy, now_s);
  return 1;
}

/* "Sun Nov  6 08:49:37 1994" (or "Nov 06") */
static int ra_asctime_date(ra_scan_t *s, ra_date_t *d) {
  int wd;
  if (!(ra_take_name(s, ra_wday_short, 7, &wd) && ra_take(s, " ") &&
        ra_take_name(s, ra_months, 12, &d->month) && ra_take(s, " ")))
    return 0;
  if (!(ra_take(s, " ") ? ra_take_num(s, 1, &d->day)
                        : ra_take_num(s, 2, &d->day)))
    return 0;
  return ra_take(s, " ") && ra_take_time(s, d) && ra_take(s, " ") &&
         ra_take_num(s, 4, &d->year);
}

static int ra_http_date(ra_scan_t *s, int64_t now_s, int64_t *out) {
  ra_date_t d;
  int ok;
  memset(&d, 0, sizeof(d));
  /* The fourth byte tells the forms apart: "Sun," "Sun " "Sund". */
  if (s->end - s->p < 4)
    return 0;
  if (s->p[3] == ',')
    ok = ra_imf_fixdate(s, &d);
  else if (s->p[3] == ' ')
    ok = ra_asctime_date(s, &d);
  else
    ok = ra_rfc850_date(s, now_s, &d);
  if (!ok || s->p != s->end)
    return 0;
  if (d.day < 1 || d.day > ra_month_days(d.year, d.month) || d.hour > 23 ||
      d.min > 59 || d.sec > 60)
    return 0;
  *out = ra_unix_time(&d);
  return 1;
}

/* 1*DIGIT, saturating at INT64_MAX: any huge delay is "too long". */
static int ra_delay_seconds(ra_scan_t *s, int64_t *out) {
  int64_t v = 0;
  if (s->p == s->end)
    return 0;
  for (; s->p < s->end; s->p++) {
    int digit;
    if (!ra_is_digit(*s->p))
      return 0;
    digit = *s->p - '0';
    v = v > (INT64_MAX - digit) / 10 ? INT64_MAX : v * 10 + digit;
  }
  *out = v;
  return 1;
}

/* ---- the entry points -------------------------------------------------- */

int fy_curl__retry_after_parse(const char *value, size_t len, int64_t now_s,
                               int64_t *secs) {
  ra_scan_t s;
  int64_t v = 0;
  *secs = 0;
  if (value == NULL)
    return FY_CURL__RA_NONE;
  s.p = value;
  s.end = value + len;
  while (s.p < s.end && ra_is_ows(*s.p))
    s.p++;
  while (s.end > s.p && ra_is_ows(s.end[-1]))
    s.end--;
  if (s.p == s.end)
    return FY_CURL__RA_NONE;
  if (ra_is_digit(*s.p)) {
    if (!ra_delay_seconds(&s, &v))
      return FY_CURL__RA_NONE;
    *secs = v;
    return FY_CURL__RA_DELAY;
  }
  if (!ra_http_date(&s, now_s, &v))
    return FY_CURL__RA_NONE;
  *secs = v;
  return FY_CURL__RA_DATE;
}

uint64_t fy_curl__retry_after_ms(int kind, int64_t secs, int64_t now_s,
                                 uint64_t cap_ms) {
  uint64_t wait;
  if (cap_ms == 0)
    return 0;
  if (kind == FY_CURL__RA_DELAY && secs > 0)
    wait = (uint64_t)secs;
  else if (kind == FY_CURL__RA_DATE && secs > now_s)
    wait = (uint64_t)secs - (uint64_t)now_s; /* exact: secs > now_s */
  else
    return 0; /* no hint, a delay of 0, or a date not in the future */
  return wait > cap_ms / 1000 ? cap_ms : wait * 1000;
}

int fy_curl__retry_after(const char *value, size_t len, int64_t now_s,
                         uint64_t cap_ms, uint64_t *out_ms) {
  int64_t secs;
  int kind = fy_curl__retry_after_parse(value, len, now_s, &secs);
  *out_ms = fy_curl__retry_after_ms(kind, secs, now_s, cap_ms);
  return kind == FY_CURL__RA_NONE ? UV_EINVAL : 0;
}
