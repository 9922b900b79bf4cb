/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * Key sanitisation in the curl adapter: the per-host key that
 * fy_curl_req_set_url() derives from a URL (parse_key/build_key in curl.c),
 * and the keys of a user key function, as the per-host policy (hosts.c)
 * checks them, stores them and shows them in a refusal's detail.
 *
 * One loop, context, adapter, request and two per-host policies live for
 * the whole process (libFuzzer runs every input in it); they are closed
 * at exit, so that a replay under valgrind or LSan shows no leak.  Every
 * host's breaker is forced open: a call through the policy reaches the
 * key, the table and the breaker, and is refused there, so no transfer
 * ever starts.
 *
 * The input is a URL (raw bytes, or put together from a scheme, userinfo,
 * host, port and path chosen to reach the parser's corners) and the bytes
 * a user key function returns.  Invariants:
 * - fy_curl_req_set_url() returns 0, UV_EINVAL or UV_ENOMEM.  On 0 the key
 *   is 1..FY_CURL_HOST_MAX printable ASCII bytes without space and without
 *   uppercase, shaped scheme "://" host ":" port, the scheme a letter then
 *   letters, digits, "+-.", the port decimal 1..65535 without a leading
 *   zero; fy_curl_req_host() gives it.  On UV_EINVAL the request's key and
 *   URL are those it had; on UV_ENOMEM they are those it had, or none.
 * - The same URL with the case of its scheme and host changed, with
 *   another path, query and fragment, or with the default port spelt out,
 *   is accepted and gives the same key.
 * - A key set_url made is one the per-host policy takes: the call is
 *   refused by the host's breaker (FY_ECIRCUITOPEN), the host is in the
 *   table, and the detail shows the key (truncated to 63 bytes).
 * - A user key is taken exactly when it is what the header promises
 *   (non-empty printable ASCII without space, terminated within the
 *   buffer; a function's negative code is passed on); else FY_EKEY.  The
 *   detail's key is always printable, without space, and terminated.
 * - The table never holds more than its max_hosts; nothing leaks. */
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "../adapters/curl/curl.c"
#include "../adapters/curl/hosts.c"
#include "../adapters/curl/retry_after.c"
#include "fuzz.h"

#define MAX_HOSTS 4
#define URL_MAX 2048
#define KEY_LEN (FY_CURL_HOST_MAX + 1)

static uv_loop_t loop;
static fy_ctx_t *ctx;
static fy_curl_t *cu;
static fy_curl_hosts_t *by_req, *by_fn; /* request keys, user keys */
static fy_pipeline_t *pl_req, *pl_fn;
static fy_curl_req_t req;
static fy_call_t ucall;
static int ready;

/* What the user key function returns next. */
static struct {
  char bytes[KEY_LEN];
  size_t n; /* bytes written; a NUL follows when n < KEY_LEN */
  int rc;
} ukey;

/* ---- setup and teardown ------------------------------------------------ */

static int never_start(fy_attempt_t *a, void *arg) {
  (void)a;
  (void)arg;
  FZ_CHECK(0, "an operation started behind a forced-open breaker");
  return UV_EIO;
}

static void never_cancel(fy_attempt_t *a, void *arg) {
  (void)a;
  (void)arg;
}

static const fy_op_t never_op = {never_start, never_cancel};

static void never_done(fy_call_t *call, int status) {
  (void)call;
  FZ_CHECK(0, "a refused call called back (%d)", status);
}

static int user_key(fy_call_t *call, char *buf, size_t len, void *ud) {
  (void)ud;
  FZ_CHECK(call == &ucall, "key of another call");
  FZ_CHECK(len == KEY_LEN, "key buffer of %zu bytes", len);
  memcpy(buf, ukey.bytes, ukey.n);
  if (ukey.n < len)
    buf[ukey.n] = '\0';
  return ukey.rc;
}

static fy_curl_hosts_t *fz_hosts_new(fy_curl_key_fn key, const char *name) {
  fy_curl_hosts_opts_t o;
  fy_curl_hosts_t *h = NULL;
  fy_curl_hosts_opts_init(&o);
  o.name = name;
  o.max_hosts = MAX_HOSTS;
  o.key = key;
  o.breaker.mode = FY_BREAKER_FORCED_OPEN;
  FZ_CHECK(fy_curl_hosts_new(ctx, &o, &h) == 0, "fy_curl_hosts_new");
  return h;
}

static fy_pipeline_t *fz_pipeline_new(fy_curl_hosts_t *h) {
  fy_policy_t *p = fy_curl_hosts_policy(h);
  fy_pipeline_t *pl = NULL;
  FZ_CHECK(fy_pipeline_new(ctx, &p, 1, &pl) == 0, "fy_pipeline_new");
  return pl;
}

static void on_ctx_closed(void *obj, void *ud) {
  (void)obj;
  ++*(int *)ud;
}

static void fz_teardown(void) {
  int closed = 0, i;
  if (!ready)
    return;
  ready = 0;
  FZ_CHECK(fy_curl_req_cleanup(&req) == 0, "req cleanup");
  FZ_CHECK(fy_pipeline_close(pl_req, NULL, NULL) == 0, "pipeline close");
  FZ_CHECK(fy_pipeline_close(pl_fn, NULL, NULL) == 0, "pipeline close");
  FZ_CHECK(fy_curl_hosts_close(by_req, NULL, NULL) == 0, "hosts close");
  FZ_CHECK(fy_curl_hosts_close(by_fn, NULL, NULL) == 0, "hosts close");
  FZ_CHECK(fy_curl_close(cu, NULL, NULL) == 0, "curl close");
  FZ_CHECK(fy_ctx_close(ctx, on_ctx_closed, &closed) == 0, "ctx close");
  for (i = 0; i < 8 && !closed; i++)
    uv_run(&loop, UV_RUN_DEFAULT);
  FZ_CHECK(closed == 1, "context closed %d times", closed);
  FZ_CHECK(fz_alloc_live() == 0, "%ld blocks leaked", fz_alloc_live());
  FZ_CHECK(uv_loop_close(&loop) == 0, "uv_loop_close");
}

static void fz_setup(void) {
  fy_ctx_opts_t copts;
  if (ready)
    return;
  fz_alloc_install();
  FZ_CHECK(uv_loop_init(&loop) == 0, "uv_loop_init");
  memset(&copts, 0, sizeof(copts));
  copts.manual_clock = 1;
  FZ_CHECK(fy_ctx_new(&loop, &copts, &ctx) == 0, "fy_ctx_new");
  FZ_CHECK(fy_curl_new(ctx, NULL, &cu) == 0, "fy_curl_new");
  FZ_CHECK(fy_curl_req_init(cu, &req) == 0, "fy_curl_req_init");
  by_req = fz_hosts_new(NULL, "req");
  by_fn = fz_hosts_new(user_key, "fn");
  pl_req = fz_pipeline_new(by_req);
  pl_fn = fz_pipeline_new(by_fn);
  ready = 1;
  atexit(fz_teardown);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  fz_setup();
  return 0;
}

/* ---- checks ------------------------------------------------------------ */

static int fz_is_lower(int ch) {
  return ch >= 'a' && ch <= 'z';
}
static int fz_is_num(int ch) {
  return ch >= '0' && ch <= '9';
}

/* scheme "://" host ":" port, as the header promises. */
static void check_key_shape(const char *key) {
  const char *end = memchr(key, '\0', KEY_LEN), *p, *colon;
  size_t n, i;
  unsigned long port = 0;

  FZ_CHECK(end != NULL, "key not terminated");
  n = (size_t)(end - key);
  FZ_CHECK(n > 0 && n <= FY_CURL_HOST_MAX, "key of %zu bytes", n);
  for (i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)key[i];
    FZ_CHECK(ch > 0x20 && ch < 0x7f, "byte 0x%02x in key '%s'", ch, key);
    FZ_CHECK(ch < 'A' || ch > 'Z', "uppercase in key '%s'", key);
  }
  FZ_CHECK(fz_is_lower(key[0]), "scheme of '%s'", key);
  for (p = key + 1; *p != ':' && *p != '\0'; p++)
    FZ_CHECK(fz_is_lower(*p) || fz_is_num(*p) || *p == '+' || *p == '-' ||
                 *p == '.',
             "scheme of '%s'", key);
  FZ_CHECK(strncmp(p, "://", 3) == 0, "no :// in '%s'", key);
  p += 3;
  colon = strrchr(p, ':');
  FZ_CHECK(colon != NULL && colon > p, "no host or port in '%s'", key);
  FZ_CHECK(colon[1] != '\0' && colon[1] != '0' && strlen(colon + 1) <= 5,
           "port of '%s'", key);
  for (p = colon + 1; *p != '\0'; p++) {
    FZ_CHECK(fz_is_num(*p), "port of '%s'", key);
    port = port * 10 + (unsigned long)(*p - '0');
  }
  FZ_CHECK(port >= 1 && port <= 65535, "port %lu in '%s'", port, key);
}

/* The detail of a refusal by the per-host policy shows |key| (NULL: only
 * check that it is clean). */
static void check_detail(const fy_call_t *call, const char *key) {
  const char *d = call->detail.key;
  const char *end = memchr(d, '\0', sizeof(call->detail.key));
  size_t i;
  FZ_CHECK(end != NULL, "detail key not terminated");
  for (i = 0; d + i < end; i++)
    FZ_CHECK((unsigned char)d[i] > 0x20 && (unsigned char)d[i] < 0x7f,
             "byte 0x%02x in the detail key", (unsigned char)d[i]);
  if (key != NULL)
    FZ_CHECK(strncmp(d, key, sizeof(call->detail.key) - 1) == 0 &&
                 strlen(d) == (strlen(key) < sizeof(call->detail.key)
                                   ? strlen(key)
                                   : sizeof(call->detail.key) - 1),
             "detail key '%s' for '%s'", d, key);
}

static void check_table(fy_curl_hosts_t *h) {
  fy_curl_hosts_stats_t st;
  fy_curl_hosts_stats(h, &st);
  FZ_CHECK(st.hosts <= MAX_HOSTS, "%zu hosts in the table", st.hosts);
}

/* Set |url| (copied to an exact-size buffer).  Returns set_url's code;
 * on 0 the key is checked, and run through the per-host policy. */
static int fz_set_url(const char *url, size_t n) {
  char before[KEY_LEN], *copy = malloc(n + 1);
  unsigned had_url = req.flags_ & RQ_URL;
  int rc;

  FZ_CHECK(copy != NULL, "malloc");
  memcpy(copy, url, n);
  copy[n] = '\0';
  memcpy(before, req.host_, sizeof(before));
  rc = fy_curl_req_set_url(&req, copy);
  free(copy);
  FZ_CHECK(rc == 0 || rc == UV_EINVAL || rc == UV_ENOMEM, "set_url: %d", rc);
  if (rc != 0) {
    int same =
        strcmp(before, req.host_) == 0 && (req.flags_ & RQ_URL) == had_url;
    int none = req.host_[0] == '\0' && !(req.flags_ & RQ_URL);
    FZ_CHECK(same || (rc == UV_ENOMEM && none),
             "a refused URL changed the request (%d)", rc);
    return rc;
  }
  FZ_CHECK(req.flags_ & RQ_URL, "accepted, yet no URL");
  check_key_shape(req.host_);
  FZ_CHECK(fy_curl_req_host(&req) == req.host_, "fy_curl_req_host");
  /* The policy takes every key set_url makes. */
  rc = fy_curl_start(&req, pl_req, never_done);
  FZ_CHECK(rc == FY_ECIRCUITOPEN, "'%s' through the policy: %d", req.host_, rc);
  FZ_CHECK(fy_curl_hosts_breaker(by_req, req.host_) != NULL,
           "'%s' not in the table", req.host_);
  check_detail(&req.call, req.host_);
  check_table(by_req);
  return 0;
}

/* The user key function's bytes, and whether the policy must take them. */
static void check_user_key(fz_t *z) {
  char eff[KEY_LEN];
  size_t i, n;
  int rc, want_ok;
  uint8_t sel = fz_u8(z);

  ukey.n = (sel & 3u) == 0 ? KEY_LEN : (size_t)fz_below(z, KEY_LEN);
  for (i = 0; i < ukey.n; i++) {
    uint8_t b = fz_u8(z);
    /* Mostly key-like bytes, so that valid keys are common. */
    ukey.bytes[i] = (sel & 4u) ? (char)b : (char)(0x21 + b % 0x5e);
  }
  ukey.rc = (sel & 0x18u) == 0x18u ? fz_status(z) : 0;
  /* What the policy sees: the bytes, cut at the buffer's last byte. */
  memcpy(eff, ukey.bytes, ukey.n);
  if (ukey.n < KEY_LEN)
    eff[ukey.n] = '\0';
  eff[KEY_LEN - 1] = '\0';
  n = strlen(eff);
  want_ok = n > 0;
  for (i = 0; i < n; i++)
    if ((unsigned char)eff[i] <= 0x20 || (unsigned char)eff[i] >= 0x7f)
      want_ok = 0;

  memset(&ucall, 0, sizeof(ucall));
  rc = fy_call_start(&ucall, pl_fn, &never_op, NULL, never_done);
  if (ukey.rc < 0) {
    FZ_CHECK(rc == ukey.rc, "the key function's %d became %d", ukey.rc, rc);
    check_detail(&ucall, NULL);
  } else if (want_ok) {
    FZ_CHECK(rc == FY_ECIRCUITOPEN, "key '%s' refused: %d", eff, rc);
    FZ_CHECK(fy_curl_hosts_breaker(by_fn, eff) != NULL, "'%s' not kept", eff);
    check_detail(&ucall, eff);
  } else {
    FZ_CHECK(rc == FY_EKEY, "a bad key taken: %d", rc);
    check_detail(&ucall, NULL);
  }
  check_table(by_fn);
}

/* ---- URLs -------------------------------------------------------------- */

typedef struct url_s {
  char buf[URL_MAX + 64];
  size_t n;
  size_t host_at, host_len; /* the host part, when safe_host */
  size_t scheme_len;
  int safe_host; /* built from [A-Za-z0-9.-] or an IPv6 literal's bytes */
  int has_port;
} url_t;

static void fz_put(url_t *u, const char *s, size_t n) {
  if (n > URL_MAX - u->n)
    n = URL_MAX - u->n;
  memcpy(u->buf + u->n, s, n);
  u->n += n;
}

static void put_str(url_t *u, const char *s) {
  fz_put(u, s, strlen(s));
}

/* Bytes from |set|, |n| of them. */
static void put_from(url_t *u, fz_t *z, const char *set, size_t n) {
  size_t i, k = strlen(set);
  for (i = 0; i < n; i++) {
    char ch = set[fz_below(z, k)];
    fz_put(u, &ch, 1);
  }
}

static void put_raw(url_t *u, fz_t *z, size_t n) {
  size_t i;
  for (i = 0; i < n; i++) {
    char ch = (char)fz_u8(z);
    if (ch == '\0')
      ch = '%';
    fz_put(u, &ch, 1);
  }
}

static void build_url(url_t *u, fz_t *z) {
  static const char *const schemes[] = {
      "http", "https", "HTTP",   "hTtPs", "ftp",    "ftps", "ws",
      "wss",  "mqtt",  "gopher", "imap",  "smtp",   "file", "ldap",
      "dict", "rtsp",  "foo",    "",      "h+t.t-p"};
  static const char *const seps[] = {"://", "://", "://", ":/", ":", ":////"};
  static const char *const ports[] = {"0",     "1",     "80",
                                      "080",   "443",   "65535",
                                      "65536", "00000", "99999999999999999999",
                                      "-1",    "+80",   " 80",
                                      "8o",    ""};
  static const char *const hosts[] = {"localhost",
                                      "EXAMPLE.com",
                                      "a",
                                      "127.0.0.1",
                                      "127.1",
                                      "0x7f.1",
                                      "[::1]",
                                      "[::FFFF:1.2.3.4]",
                                      "[fe80::1%25eth0]",
                                      "h.",
                                      "%41",
                                      "a%2eb",
                                      "xn--nxasmq6b",
                                      ""};
  uint8_t sel = fz_u8(z), hsel;
  memset(u, 0, sizeof(*u));

  /* The variants below need to know where the host is: a raw scheme, a
   * separator other than "://" or an empty host make that curl's call. */
  u->safe_host = 1;
  if (fz_u8(z) % 4 == 0) {
    put_raw(u, z, fz_below(z, 24));
    u->safe_host = 0;
  } else {
    put_str(u, schemes[fz_below(z, sizeof(schemes) / sizeof(schemes[0]))]);
  }
  u->scheme_len = u->n;
  if (sel & 3u) {
    put_str(u, "://");
  } else {
    put_str(u, seps[fz_below(z, 6)]);
    u->safe_host = 0;
  }
  if ((sel & 0x1cu) == 0x1cu) {
    put_from(u, z, "abcXYZ019:", fz_below(z, 12));
    put_str(u, "@");
  }
  u->host_at = u->n;
  hsel = fz_u8(z);
  switch (hsel % 6) {
  case 0:
    put_str(u, hosts[fz_below(z, sizeof(hosts) / sizeof(hosts[0]))]);
    /* All case-safe: IPv6 hex, a zone id, %41 (decoded, then lowered). */
    break;
  case 1:
  case 2:
    /* Labels; sometimes long enough to pass FY_CURL_HOST_MAX. */
    put_from(u, z,
             "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123"
             "456789-..",
             fz_below(z, (hsel & 8u) ? 400 : 40));
    break;
  case 3:
    put_str(u, "[");
    put_from(u, z, "0123456789abcdefABCDEF:::.", fz_below(z, 48));
    put_str(u, "]");
    break;
  default:
    put_raw(u, z, fz_below(z, 40));
    u->safe_host = 0;
    break;
  }
  u->host_len = u->n - u->host_at;
  if (u->host_len == 0)
    u->safe_host = 0;
  if (sel & 0x20u) {
    put_str(u, ":");
    if (sel & 0x40u)
      put_str(u, ports[fz_below(z, sizeof(ports) / sizeof(ports[0]))]);
    else
      put_from(u, z, "0123456789", fz_below(z, 7));
    u->has_port = 1;
  }
  if (sel & 0x80u) {
    put_str(u, "/");
    put_raw(u, z, fz_below(z, 64));
  } else if (fz_u8(z) & 1) {
    /* A query or fragment right after the authority. */
    put_from(u, z, "/?#", 1);
    put_from(u, z, "/?#=&abc%20", fz_below(z, 16));
  }
}

/* Variants of an accepted URL that must give its key. */
static void check_variants(const url_t *u, fz_t *z, const char *key) {
  char k0[KEY_LEN];
  url_t v;
  size_t i;
  int rc;

  if (!u->safe_host)
    return;
  memcpy(k0, key, sizeof(k0));
  /* The case of the scheme and the host. */
  v = *u;
  for (i = 0; i < v.n; i++) {
    int in_scheme = i < v.scheme_len;
    int in_host = i >= v.host_at && i < v.host_at + v.host_len;
    char ch = v.buf[i];
    if ((in_scheme || in_host) && (fz_u8(z) & 1)) {
      if (ch >= 'a' && ch <= 'z')
        v.buf[i] = (char)(ch - 'a' + 'A');
      else if (ch >= 'A' && ch <= 'Z')
        v.buf[i] = (char)(ch - 'A' + 'a');
    }
  }
  rc = fz_set_url(v.buf, v.n);
  FZ_CHECK(rc == 0 && strcmp(req.host_, k0) == 0,
           "case changed the key: '%.*s' gave %d '%s', not '%s'", (int)v.n,
           v.buf, rc, req.host_, k0);
  /* Another path, query and fragment. */
  v = *u;
  v.n = v.host_at + v.host_len;
  if (u->has_port) {
    const char *colon = strrchr(k0, ':');
    put_str(&v, colon);
  }
  put_str(&v, "/");
  put_from(&v, z, "abcxyz0189-._~/", fz_below(z, 20));
  if (fz_u8(z) & 1) {
    put_str(&v, "?");
    put_from(&v, z, "abc019=&", fz_below(z, 12));
  }
  if (fz_u8(z) & 1) {
    put_str(&v, "#");
    put_from(&v, z, "abc019", fz_below(z, 6));
  }
  rc = fz_set_url(v.buf, v.n);
  FZ_CHECK(rc == 0 && strcmp(req.host_, k0) == 0,
           "the path changed the key: '%.*s' gave %d '%s', not '%s'", (int)v.n,
           v.buf, rc, req.host_, k0);
  /* The default port spelt out. */
  if (!u->has_port) {
    v = *u;
    v.n = v.host_at + v.host_len;
    put_str(&v, strrchr(k0, ':'));
    put_str(&v, "/");
    rc = fz_set_url(v.buf, v.n);
    FZ_CHECK(rc == 0 && strcmp(req.host_, k0) == 0,
             "the default port changed the key: '%.*s' gave %d '%s'", (int)v.n,
             v.buf, rc, req.host_);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz_t z;
  url_t *u = malloc(sizeof(*u));
  uint8_t mode;

  FZ_CHECK(u != NULL, "malloc");
  fz_setup();
  fz_init(&z, data, size);
  mode = fz_u8(&z);
  if (mode % 4 == 0) {
    /* Raw: the rest of the input up to a NUL is the URL. */
    const uint8_t *nul = memchr(z.p, 0, z.n);
    size_t n = nul != NULL ? (size_t)(nul - z.p) : z.n;
    if (n > URL_MAX)
      n = URL_MAX;
    memset(u, 0, sizeof(*u));
    memcpy(u->buf, z.p, n);
    u->n = n;
    z.p += n;
    z.n -= n;
    fz_u8(&z); /* the NUL */
    (void)fz_set_url(u->buf, u->n);
  } else {
    build_url(u, &z);
    if (fz_set_url(u->buf, u->n) == 0)
      check_variants(u, &z, req.host_);
  }
  if (mode & 4u)
    check_user_key(&z);
  free(u);
  uv_run(&loop, UV_RUN_NOWAIT); /* evicted hosts' breakers go */
  return 0;
}
