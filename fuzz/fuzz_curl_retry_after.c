/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * The curl adapter's Retry-After parser (adapters/curl/retry_after.c) and
 * the header callback that feeds it (on_header() in curl.c, reached by
 * including the adapter's sources).
 *
 * The input chooses a clock (any int64, or near today), a cap (0, the
 * edges, any value) and then is, in its remaining bytes, the value,
 * passed as an exact-size heap copy that is not NUL-terminated, so that
 * ASan catches a read past |len|.  Invariants:
 * - the result is 0 or UV_EINVAL; UV_EINVAL gives no hint; the hint is at
 *   most the cap, and 0 when the cap is 0; the same input gives the same
 *   result; the parse and the conversion agree with the combined call;
 * - OWS (SP, HTAB) added around the value, or trimmed from it, changes
 *   nothing;
 * - a value that is 1*DIGIT (after OWS) is valid and gives exactly
 *   min(N * 1000, cap), computed here on the decimal string (any length);
 *   a valid value that starts with a digit is such a value;
 * - a valid value that is not digits is a date, and printing its instant
 *   again in the same form (with this file's own calendar) gives back the
 *   input, weekday and a leap second aside;
 * - an instant t of any year 0000..9999, printed in each of the three
 *   forms, reads back as t, and gives max(0, t - now) s, capped;
 * - lines fed to the header callback leave the hint of the last valid
 *   Retry-After of the last response's header section: status lines start
 *   afresh, trailers (after the blank line) and look-alike names count
 *   for nothing, an invalid value clears the hint, and a line's LF or CRLF
 *   is not part of the value. */
#include <stdlib.h>
#include <string.h>

#include "../adapters/curl/curl.c"
#include "../adapters/curl/hosts.c"
#include "../adapters/curl/retry_after.c"
#include "fuzz.h"

#define T_MIN INT64_C(-62167219200) /* 0000-01-01 00:00:00 */
#define T_MAX INT64_C(253402300799) /* 9999-12-31 23:59:59 */
#define VALUE_MAX 4096

static const char *const fz_wday[7] = {"Mon", "Tue", "Wed", "Thu",
                                       "Fri", "Sat", "Sun"};
static const char *const fz_wday_long[7] = {"Monday",   "Tuesday", "Wednesday",
                                            "Thursday", "Friday",  "Saturday",
                                            "Sunday"};
static const char *const fz_mon[12] = {"Jan", "Feb", "Mar", "Apr",
                                       "May", "Jun", "Jul", "Aug",
                                       "Sep", "Oct", "Nov", "Dec"};

/* ---- a calendar of our own (not the parser's arithmetic) --------------- */

typedef struct civil_s {
  int year, month, day, hour, min, sec, wday; /* month 0..11, wday 0=Mon */
} civil_t;

static int fz_leap(int y) {
  return y % 400 == 0 || (y % 4 == 0 && y % 100 != 0);
}

/* Walk from 0000-01-01 (a Saturday) by 400-year cycles, years, months. */
static void civil_of(int64_t t, civil_t *c) {
  static const int mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  int64_t days = (t - T_MIN) / 86400, secs = (t - T_MIN) % 86400;
  int y = 0, m = 0;
  c->wday = (int)((days + 5) % 7); /* 0000-01-01: index 5 */
  y = 400 * (int)(days / 146097);
  days %= 146097;
  while (days >= (fz_leap(y) ? 366 : 365)) {
    days -= fz_leap(y) ? 366 : 365;
    y++;
  }
  for (;;) {
    int len = mdays[m] + (m == 1 && fz_leap(y));
    if (days < len)
      break;
    days -= len;
    m++;
  }
  c->year = y;
  c->month = m;
  c->day = (int)days + 1;
  c->hour = (int)(secs / 3600);
  c->min = (int)(secs / 60 % 60);
  c->sec = (int)(secs % 60);
}

/* |form|: 0 IMF-fixdate, 1 RFC 850, 2 asctime.  Returns the length. */
static size_t format_date(int64_t t, int form, char *buf, size_t len) {
  civil_t c;
  int n;
  civil_of(t, &c);
  if (form == 0)
    n = snprintf(buf, len, "%s, %02d %s %04d %02d:%02d:%02d GMT",
                 fz_wday[c.wday], c.day, fz_mon[c.month], c.year, c.hour, c.min,
                 c.sec);
  else if (form == 1)
    n = snprintf(buf, len, "%s, %02d-%s-%02d %02d:%02d:%02d GMT",
                 fz_wday_long[c.wday], c.day, fz_mon[c.month], c.year % 100,
                 c.hour, c.min, c.sec);
  else
    n = snprintf(buf, len, "%s %s %2d %02d:%02d:%02d %04d", fz_wday[c.wday],
                 fz_mon[c.month], c.day, c.hour, c.min, c.sec, c.year);
  FZ_CHECK(n > 0 && (size_t)n < len, "format %d", form);
  return (size_t)n;
}

/* ---- calls on exact-size copies ---------------------------------------- */

typedef struct fzr_res_s {
  int rc;
  uint64_t ms;
} fzr_res_t;

static fzr_res_t fzr_call(const char *value, size_t len, int64_t now,
                          uint64_t cap) {
  char *copy = malloc(len > 0 ? len : 1);
  fzr_res_t r;
  int64_t secs = -1;
  int kind;
  FZ_CHECK(copy != NULL, "malloc");
  memcpy(copy, value, len);
  r.ms = UINT64_MAX - 7;
  r.rc = fy_curl__retry_after(copy, len, now, cap, &r.ms);
  FZ_CHECK(r.rc == 0 || r.rc == UV_EINVAL, "rc %d", r.rc);
  FZ_CHECK(r.rc == 0 || r.ms == 0, "invalid, yet a hint of %llu",
           (unsigned long long)r.ms);
  FZ_CHECK(r.ms <= cap, "%llu over the cap %llu", (unsigned long long)r.ms,
           (unsigned long long)cap);
  FZ_CHECK(cap != 0 || r.ms == 0, "cap 0 must ignore the header");
  kind = fy_curl__retry_after_parse(copy, len, now, &secs);
  FZ_CHECK((kind != FY_CURL__RA_NONE) == (r.rc == 0), "kind %d, rc %d", kind,
           r.rc);
  FZ_CHECK(kind != FY_CURL__RA_NONE || secs == 0, "secs of nothing");
  FZ_CHECK(fy_curl__retry_after_ms(kind, secs, now, cap) == r.ms,
           "parse + ms differ from the combined call");
  free(copy);
  return r;
}

static int fzr_ows(char ch) {
  return ch == ' ' || ch == '\t';
}

/* min(N * 1000, cap) for the decimal string |d| of |n| digits. */
static uint64_t delay_model(const char *d, size_t n, uint64_t cap) {
  uint64_t v = 0;
  size_t i = 0;
  while (i < n && d[i] == '0')
    i++;
  if (cap == 0 || i == n)
    return 0;
  if (n - i > 19)
    return cap; /* >= 10^19 s: over any cap */
  for (; i < n; i++)
    v = v * 10 + (uint64_t)(d[i] - '0');
  return v > cap / 1000 ? cap : v * 1000;
}

/* The instant of a valid non-digit value, printed again in its form,
 * gives the input back (but for the weekday, which is not checked, and a
 * leap second, which is the next minute's 0). */
static void check_reprint(const char *v, size_t n, int64_t now) {
  char buf[64];
  int64_t secs = 0;
  size_t m, skip;
  int form;
  FZ_CHECK(fy_curl__retry_after_parse(v, n, now, &secs) == FY_CURL__RA_DATE,
           "valid, not digits, not a date");
  FZ_CHECK(secs >= T_MIN && secs <= T_MAX + 1, "instant %lld out of range",
           (long long)secs);
  if (secs > T_MAX)
    return; /* 9999-12-31 23:59:60 */
  form = v[3] == ',' ? 0 : v[3] == ' ' ? 2 : 1;
  m = format_date(secs, form, buf, sizeof(buf));
  if (form == 1) {
    /* The long names differ in length: compare from the ", ". */
    const char *a = memchr(v, ',', n), *b = strchr(buf, ',');
    FZ_CHECK(a != NULL && b != NULL, "no comma");
    skip = (size_t)(a - v);
    FZ_CHECK(n - skip == m - (size_t)(b - buf), "RFC 850 reprint length");
    v += skip;
    n -= skip;
    memmove(buf, b, strlen(b) + 1);
    m = strlen(buf);
  } else {
    v += 3;
    n -= 3;
    memmove(buf, buf + 3, m - 3 + 1);
    m -= 3;
  }
  FZ_CHECK(n == m, "reprint length %zu vs %zu", m, n);
  if (form == 2 && v[5] == '0' && buf[5] == ' ')
    buf[5] = '0'; /* asctime's day may be "06" as well as " 6" */
  if (memcmp(v, buf, n) != 0) {
    /* Only a leap second may differ. */
    const char *sec = form == 2 ? v + 14 : v + n - 6;
    FZ_CHECK(sec[0] == '6' && sec[1] == '0', "reprint '%.*s' vs '%s'", (int)n,
             v, buf);
  }
}

static void check_value(const char *v, size_t n, int64_t now, uint64_t cap,
                        uint8_t pad) {
  char padded[VALUE_MAX + 16];
  const char *t = v;
  size_t tn = n, i, k = 0;
  fzr_res_t r = fzr_call(v, n, now, cap), again;
  int digits = 1;

  again = fzr_call(v, n, now, cap);
  FZ_CHECK(again.rc == r.rc && again.ms == r.ms, "not deterministic");
  /* OWS around it, or trimmed off it, changes nothing. */
  for (i = 0; i < (pad & 7u); i++)
    padded[k++] = (pad & 8u) ? '\t' : ' ';
  memcpy(padded + k, v, n);
  k += n;
  for (i = 0; i < (pad >> 4 & 7u); i++)
    padded[k++] = (pad & 128u) ? ' ' : '\t';
  again = fzr_call(padded, k, now, cap);
  FZ_CHECK(again.rc == r.rc && again.ms == r.ms, "OWS changed the result");
  while (tn > 0 && fzr_ows(*t)) {
    t++;
    tn--;
  }
  while (tn > 0 && fzr_ows(t[tn - 1]))
    tn--;
  again = fzr_call(t, tn, now, cap);
  FZ_CHECK(again.rc == r.rc && again.ms == r.ms, "trimming changed it");
  /* Digits: exactly the model. */
  for (i = 0; i < tn; i++)
    if (t[i] < '0' || t[i] > '9')
      digits = 0;
  if (tn > 0 && digits) {
    FZ_CHECK(r.rc == 0, "1*DIGIT refused");
    FZ_CHECK(r.ms == delay_model(t, tn, cap), "'%.*s' gave %llu",
             (int)(tn > 40 ? 40 : tn), t, (unsigned long long)r.ms);
    return;
  }
  if (r.rc != 0)
    return;
  FZ_CHECK(t[0] < '0' || t[0] > '9', "valid, a digit first, not digits");
  check_reprint(t, tn, now);
}

/* ---- round trips from an instant --------------------------------------- */

static void check_instant(int64_t t, int64_t now, uint64_t cap) {
  char buf[64];
  int form;
  uint64_t want;
  if (cap == 0 || t <= now)
    want = 0;
  else if ((uint64_t)t - (uint64_t)now > cap / 1000)
    want = cap;
  else
    want = ((uint64_t)t - (uint64_t)now) * 1000;
  for (form = 0; form < 3; form++) {
    size_t n = format_date(t, form, buf, sizeof(buf));
    int64_t secs = 0;
    fzr_res_t r;
    int64_t at = now;
    if (form == 1) {
      /* A two-digit year reads right within 50 years of now: use a clock
       * in the same year, away from the ends of 0000..9999. */
      civil_t c;
      civil_of(t, &c);
      if (c.year < 100 || c.year > 9899)
        continue;
      at = t;
    }
    FZ_CHECK(fy_curl__retry_after_parse(buf, n, at, &secs) == FY_CURL__RA_DATE,
             "'%s' not read", buf);
    FZ_CHECK(secs == t, "'%s' read as %lld, not %lld", buf, (long long)secs,
             (long long)t);
    if (form == 1)
      continue;
    r = fzr_call(buf, n, now, cap);
    FZ_CHECK(r.rc == 0 && r.ms == want, "'%s' at %lld gave %llu, not %llu", buf,
             (long long)now, (unsigned long long)r.ms,
             (unsigned long long)want);
  }
}

/* ---- the header callback ----------------------------------------------- */

static size_t feed(fy_curl_req_t *req, const char *line, size_t n) {
  char *copy = malloc(n > 0 ? n : 1);
  size_t got;
  FZ_CHECK(copy != NULL, "malloc");
  memcpy(copy, line, n);
  got = on_header(copy, 1, n, req);
  free(copy);
  return got;
}

static void check_headers(fz_t *z, const char *v, size_t vn) {
  static const char *const names[] = {
      "Retry-After:", "retry-after:", "RETRY-AFTER:", "rEtRy-AfTeR:"};
  static const char *const others[] = {
      "X-Retry-After: 5\r\n", "Retry-After-X: 5\r\n", "Retry-After : 5\r\n",
      "Retry-Afte: 5\r\n", "Content-Length: 0\r\n"};
  static const char *const status[] = {"HTTP/1.1 503 Busy\r\n",
                                       "HTTP/1.1 100 Continue\r\n",
                                       "HTTP/2 429 \r\n", "HTTP/1.0 301\r\n"};
  char line[VALUE_MAX + 64];
  fy_curl_req_t req;
  int valid = 0, ended = 0, kind = FY_CURL__RA_NONE;
  int64_t secs = 0;
  unsigned steps = (unsigned)fz_below(z, 24), i;

  memset(&req, 0, sizeof(req)); /* no attempt, no owner, nothing kept */
  for (i = 0; i < steps; i++) {
    uint8_t sel = fz_u8(z);
    size_t n = 0, cut;
    const char *s;
    switch (sel % 6) {
    case 0:
      s = status[fz_below(z, 4)];
      n = strlen(s);
      memcpy(line, s, n);
      valid = 0;
      ended = 0;
      break;
    case 1:
      s = (sel & 8u) ? "\n" : "\r\n";
      n = strlen(s);
      memcpy(line, s, n);
      ended = 1;
      break;
    case 2:
    case 3: {
      /* A Retry-After line with (part of) the value and some ending. */
      static const char *const ends[] = {"\r\n", "\n", "", "\r", "\n\n"};
      const char *end = ends[fz_below(z, 5)];
      size_t off;
      s = names[fz_below(z, 4)];
      n = strlen(s);
      memcpy(line, s, n);
      cut = (size_t)fz_below(z, vn + 1);
      memcpy(line + n, v, cut);
      n += cut;
      memcpy(line + n, end, strlen(end));
      n += strlen(end);
      if (!ended) {
        /* The model: one LF, then one CR, come off the end. */
        size_t m = n - strlen(s);
        off = strlen(s);
        if (m > 0 && line[off + m - 1] == '\n')
          m--;
        if (m > 0 && line[off + m - 1] == '\r')
          m--;
        kind =
            fy_curl__retry_after_parse(line + off, m, fy_curl__wall_s(), &secs);
        valid = kind != FY_CURL__RA_NONE;
      }
      break;
    }
    default:
      s = others[fz_below(z, 5)];
      n = strlen(s);
      memcpy(line, s, n);
      break;
    }
    FZ_CHECK(feed(&req, line, n) == n, "the callback refused a line");
    FZ_CHECK(((req.flags_ & RQ_RETRY_AFTER) != 0) == valid,
             "step %u: hint %d, want %d", i, (req.flags_ & RQ_RETRY_AFTER) != 0,
             valid);
    if (valid)
      FZ_CHECK(req.retry_after_kind_ == kind && req.retry_after_s_ == secs,
               "step %u: kind %d/%d, secs %lld/%lld", i, req.retry_after_kind_,
               kind, (long long)req.retry_after_s_, (long long)secs);
  }
}

/* ---- the input --------------------------------------------------------- */

static int64_t pick_now(fz_t *z) {
  uint8_t sel = fz_u8(z);
  if (sel < 128)
    return INT64_C(1700000000) + (int64_t)(int32_t)fz_u32(z);
  if (sel < 192)
    return T_MIN + (int64_t)fz_below(z, (uint64_t)(T_MAX - T_MIN) + 1);
  return (int64_t)fz_u64_edge(z);
}

static uint64_t pick_cap(fz_t *z) {
  static const uint64_t caps[] = {0,    1,     999,      1000,
                                  1500, 60000, 86400000, UINT64_MAX};
  uint8_t sel = fz_u8(z);
  if (sel < 160)
    return caps[sel % (sizeof(caps) / sizeof(caps[0]))];
  return fz_u64_edge(z);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz_t z;
  int64_t now;
  uint64_t cap;
  uint8_t pad;
  size_t vn;
  const char *v;

  fz_init(&z, data, size);
  now = pick_now(&z);
  cap = pick_cap(&z);
  pad = fz_u8(&z);
  check_instant(T_MIN + (int64_t)fz_below(&z, (uint64_t)(T_MAX - T_MIN) + 1),
                now, cap);
  /* The value: up to the first 0xff byte, the rest drives the header
   * script.  (No 0xff can be in a valid value anyway.) */
  v = (const char *)z.p;
  vn = z.n;
  {
    const uint8_t *stop = memchr(z.p, 0xff, z.n);
    if (stop != NULL)
      vn = (size_t)(stop - z.p);
  }
  if (vn > VALUE_MAX)
    vn = VALUE_MAX;
  check_value(v, vn, now, cap, pad);
  z.p += vn;
  z.n -= vn;
  check_headers(&z, v, vn);
  return 0;
}
