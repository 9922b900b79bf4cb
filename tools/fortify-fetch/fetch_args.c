/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * fortify-fetch: the command line.  Every value is checked for its form
 * here (a number, not negative, not overflowing; a known name); whether it
 * is in range is left to the policy it configures (fetch_pipeline.c), so
 * the tool and the library cannot disagree. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fetch.h"
#include "fortify/version.h"

static const char usage_head[] =
    "usage: fortify-fetch [OPTIONS] [URL|-]...\n"
    "\n"
    "Fetch every URL concurrently through a resilient pipeline (total\n"
    "timeout -> retry -> per-host circuit breakers -> per-try timeout) and\n"
    "print one JSON line per URL on stdout, in completion order.  With no\n"
    "URL, or with \"-\", URLs are read from stdin, one per line (read in full\n"
    "before the first request; blank lines are skipped).\n"
    "\n";

static const char usage_body[] =
    "Concurrency\n"
    "  -c, --concurrency N       requests in flight at once, 1..10000\n"
    "                            (default 16)\n"
    "Retries\n"
    "  --retries N               attempts per URL in all, the first included:\n"
    "                            1 = no retry, at most 1000 (default 3)\n"
    "  --backoff KIND            constant, linear or exponential (default)\n"
    "  --jitter KIND             none, full (default), equal, decorrelated,\n"
    "                            decorrelated-v2 or ratio (+/- 20%)\n"
    "  --initial-delay MS        base delay between attempts (default 100)\n"
    "  --max-delay MS            cap on one delay, 0 = 24 h (default 5000)\n"
    "  --max-retry-after MS      longest Retry-After honoured; a longer one\n"
    "                            ends the retries (default 30000)\n"
    "  --idempotent              retry requests with a body (POST, PATCH)\n"
    "                            too; GET, HEAD, PUT, DELETE are retried\n"
    "Timeouts (ms)\n"
    "  --timeout MS              whole URL, retries and waits included;\n"
    "                            0 = none (default 0)\n"
    "  --attempt-timeout MS      each attempt (default 10000)\n"
    "  --first-byte-timeout MS   each attempt: until the first response byte\n"
    "                            (default 0 = off)\n"
    "  --idle-timeout MS         each attempt: longest silence (default 0)\n"
    "Per-host policies (a breaker and a rate limit per scheme://host:port)\n"
    "  --breaker-failures N      consecutive failures that open it; 0 = never\n"
    "                            (default 5)\n"
    "  --breaker-open MS         open -> half-open after (default 30000)\n"
    "  --rate N[/s|/m]           at most N requests per second (N or N/s) or\n"
    "                            per minute (N/m) to each host; a request over\n"
    "                            it waits for its turn (default: no limit)\n"
    "  --burst N                 requests a host may get at once, before the\n"
    "                            rate applies; needs --rate (default: the N\n"
    "                            of --rate)\n"
    "  --no-breaker              no breakers and no limits at all\n"
    "  A 429 with Retry-After holds its host: the host's other requests wait\n"
    "  for the hint too (at most --max-retry-after) instead of being sent.\n"
    "Requests\n"
    "  -X, --method METHOD       GET (default; POST with a body), HEAD, PUT,\n"
    "                            DELETE, PATCH or any other token\n"
    "  -H, --header 'Name: val'  add a request header (repeatable)\n"
    "  -d, --data TEXT           request body (POST unless -X says otherwise)\n"
    "      --data-file PATH      request body from a file\n"
    "  --max-body BYTES          largest response body kept; a larger one\n"
    "                            fails with UV_EMSGSIZE; 0 = keep none, no\n"
    "                            limit (default 8388608)\n"
    "Output\n"
    "  --body                    add the response body to each JSON line\n"
    "  --no-progress             no progress line on stderr\n"
    "  -q, --quiet               no progress line and no summary\n"
    "  -h, --help                this text\n"
    "  -V, --version             the version\n"
    "\n"
    "JSON line: {\"url\",\"index\",\"status\",\"http_code\",\"attempts\","
    "\"elapsed_ms\",\n"
    "            \"bytes\",\"error\",\"breaker\"[,\"body\"]}; status is \"OK\" "
    "or an error\n"
    "            name such as \"FY_EHTTP_503\" or \"UV_ETIMEDOUT\".\n"
    "Exit status: 0 every URL succeeded, 1 some failed, 2 usage error,\n"
    "3 setup or internal error, 130 interrupted (SIGINT; press it twice to\n"
    "kill).  See docs/fortify-fetch.md.\n";

/* Long options without a short form; policy flags get 1000 + their index
 * in fetch_flags. */
enum {
  OPT_DATA_FILE = 256,
  OPT_IDEMPOTENT,
  OPT_NO_BREAKER,
  OPT_BODY,
  OPT_NO_PROGRESS,
  OPT_FLAG = 1000
};

static const struct option tool_options[] = {
    {"concurrency", required_argument, NULL, 'c'},
    {"method", required_argument, NULL, 'X'},
    {"header", required_argument, NULL, 'H'},
    {"data", required_argument, NULL, 'd'},
    {"data-file", required_argument, NULL, OPT_DATA_FILE},
    {"idempotent", no_argument, NULL, OPT_IDEMPOTENT},
    {"no-breaker", no_argument, NULL, OPT_NO_BREAKER},
    {"body", no_argument, NULL, OPT_BODY},
    {"no-progress", no_argument, NULL, OPT_NO_PROGRESS},
    {"quiet", no_argument, NULL, 'q'},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, 'V'}};

#define TOOL_OPTIONS (sizeof(tool_options) / sizeof(tool_options[0]))
#define ALL_OPTIONS_MAX (TOOL_OPTIONS + 32 + 1)

const char *const fetch_backoff_names[3] = {
    [FY_RETRY_BACKOFF_EXPONENTIAL] = "exponential",
    [FY_RETRY_BACKOFF_LINEAR] = "linear",
    [FY_RETRY_BACKOFF_CONSTANT] = "constant"};

const char *const fetch_jitter_names[6] = {
    [FY_RETRY_JITTER_NONE] = "none",
    [FY_RETRY_JITTER_FULL] = "full",
    [FY_RETRY_JITTER_EQUAL] = "equal",
    [FY_RETRY_JITTER_DECORRELATED] = "decorrelated",
    [FY_RETRY_JITTER_DECORRELATED_V2] = "decorrelated-v2",
    [FY_RETRY_JITTER_RATIO] = "ratio"};

static int usage_error(const char *what, const char *detail) {
  fprintf(stderr, FETCH_PROG ": %s%s%s\n", what, detail ? ": " : "",
          detail ? detail : "");
  fprintf(stderr, "Try '" FETCH_PROG " --help'.\n");
  return FETCH_EXIT_USAGE;
}

static int out_of_memory(void) {
  fprintf(stderr, FETCH_PROG ": out of memory\n");
  return FETCH_EXIT_INTERNAL;
}

/* A decimal integer: digits only, no sign, no overflow.  Returns NULL or
 * what is wrong with |s|. */
static const char *parse_u64(const char *s, uint64_t *out) {
  uint64_t v = 0;
  if (s == NULL || *s == '\0')
    return "missing value";
  if (*s == '-')
    return "must not be negative";
  for (; *s != '\0'; s++) {
    unsigned d = (unsigned)(*s - '0');
    if (d > 9)
      return "not a decimal integer";
    if (v > (UINT64_MAX - d) / 10)
      return "too large";
    v = v * 10 + d;
  }
  *out = v;
  return NULL;
}

/* A rate: "N" or "N/s" (per second), "N/m" (per minute).  Returns NULL
 * or what is wrong with |s|. */
static const char *parse_rate(const char *s, uint64_t *n, uint64_t *per_ms) {
  char num[32];
  const char *slash = s != NULL ? strchr(s, '/') : NULL;
  size_t len;
  *per_ms = 1000;
  if (slash == NULL)
    return parse_u64(s, n);
  if (strcmp(slash, "/s") == 0)
    *per_ms = 1000;
  else if (strcmp(slash, "/m") == 0)
    *per_ms = 60000;
  else
    return "expected N, N/s or N/m";
  len = (size_t)(slash - s);
  if (len >= sizeof(num))
    return "too large";
  memcpy(num, s, len);
  num[len] = '\0';
  return parse_u64(num, n);
}

static int parse_name(const char *s, const char *const *names, size_t n,
                      uint64_t *out) {
  size_t i;
  for (i = 0; i < n; i++)
    if (strcmp(s, names[i]) == 0) {
      *out = i;
      return 0;
    }
  return -1;
}

static int flag_error(const char *flag, const char *value, const char *why) {
  char what[96];
  snprintf(what, sizeof(what), "--%s '%.40s'", flag,
           value != NULL ? value : "");
  return usage_error(what, why);
}

/* A policy flag: its value is checked for its form, stored, and applied
 * (and blamed) by fetch_stack_new(). */
static int set_flag(fetch_opts_t *o, const fetch_flag_t *f, const char *s) {
  const char *why = NULL;
  uint64_t v = 0, per_ms = 0;

  if (f->val == FETCH_VAL_NUMBER && (why = parse_u64(s, &v)) == NULL &&
      v > f->max)
    why = "too large";
  else if (f->val == FETCH_VAL_RATE)
    why = parse_rate(s, &v, &per_ms);
  else if (f->val == FETCH_VAL_BACKOFF &&
           parse_name(s, fetch_backoff_names, 3, &v) != 0)
    why = "expected constant, linear or exponential";
  else if (f->val == FETCH_VAL_JITTER &&
           parse_name(s, fetch_jitter_names, 6, &v) != 0)
    why = "expected none, full, equal, decorrelated, decorrelated-v2 or "
          "ratio";
  if (why != NULL)
    return flag_error(f->name, s, why);
  if (o->nsets == FETCH_SETS_MAX)
    return flag_error(f->name, s, "too many options");
  o->sets[o->nsets].flag = f;
  o->sets[o->nsets].value = v;
  o->sets[o->nsets].per_ms = per_ms;
  o->nsets++;
  return FETCH_EXIT_OK;
}

static int set_concurrency(fetch_opts_t *o, const char *s) {
  uint64_t v = 0;
  const char *why = parse_u64(s, &v);
  if (why == NULL && (v < 1 || v > FETCH_CONCURRENCY_MAX))
    why = "must be between 1 and 10000";
  if (why != NULL)
    return flag_error("concurrency", s, why);
  o->concurrency = (unsigned)v;
  return FETCH_EXIT_OK;
}

static int add_header(fetch_opts_t *o, const char *line) {
  const char **h = realloc(o->headers, (o->nheaders + 1) * sizeof(*h));
  if (h == NULL)
    return out_of_memory();
  o->headers = h;
  h[o->nheaders++] = line;
  return FETCH_EXIT_OK;
}

static int set_data(fetch_opts_t *o, const char *s, size_t n) {
  char *d = malloc(n + 1);
  if (d == NULL)
    return out_of_memory();
  memcpy(d, s, n);
  d[n] = '\0';
  free(o->data);
  o->data = d;
  o->data_len = n;
  return FETCH_EXIT_OK;
}

/* Read all of |f| (blocking: this runs before the loop starts). */
static int slurp(FILE *f, char **out, size_t *len) {
  size_t cap = 4096, n = 0, r;
  char *buf = malloc(cap), *nb;
  if (buf == NULL)
    return UV_ENOMEM;
  for (;;) {
    if (cap - n < 2) {
      nb = cap > SIZE_MAX / 2 ? NULL : realloc(buf, cap * 2);
      if (nb == NULL) {
        free(buf);
        return UV_ENOMEM;
      }
      buf = nb;
      cap *= 2;
    }
    r = fread(buf + n, 1, cap - n - 1, f);
    n += r;
    if (r == 0)
      break;
  }
  if (ferror(f)) {
    free(buf);
    return UV_EIO;
  }
  buf[n] = '\0';
  *out = buf;
  *len = n;
  return 0;
}

static int read_data_file(fetch_opts_t *o, const char *path) {
  FILE *f = fopen(path, "rb");
  char *buf;
  size_t n;
  int rc;
  if (f == NULL)
    return flag_error("data-file", path, strerror(errno));
  rc = slurp(f, &buf, &n);
  fclose(f);
  if (rc == UV_ENOMEM)
    return out_of_memory();
  if (rc != 0)
    return flag_error("data-file", path, "read error");
  free(o->data);
  o->data = buf;
  o->data_len = n;
  return FETCH_EXIT_OK;
}

static int print_help(void) {
  fputs(usage_head, stdout);
  fputs(usage_body, stdout);
  return FETCH_EXIT_OK;
}

static int print_version(void) {
  printf(FETCH_PROG " %s (libcurl %s, libuv %s)\n", FY_VERSION_STRING,
         curl_version_info(CURLVERSION_NOW)->version, uv_version_string());
  return FETCH_EXIT_OK;
}

/* One option from getopt_long().  Returns FETCH_EXIT_OK to go on; *done
 * is set when the program should exit with the returned status. */
static int on_option(fetch_opts_t *o, int c, const char *arg, int *done) {
  *done = 1;
  switch (c) {
  case 'h':
    return print_help();
  case 'V':
    return print_version();
  }
  *done = 0;
  switch (c) {
  case 'c':
    return set_concurrency(o, arg);
  case 'X':
    o->method = arg;
    return FETCH_EXIT_OK;
  case 'H':
    return add_header(o, arg);
  case 'd':
    return set_data(o, arg, strlen(arg));
  case OPT_DATA_FILE:
    return read_data_file(o, arg);
  case OPT_IDEMPOTENT:
    o->idempotent = 1;
    return FETCH_EXIT_OK;
  case OPT_NO_BREAKER:
    o->no_breaker = 1;
    return FETCH_EXIT_OK;
  case OPT_BODY:
    o->body = 1;
    return FETCH_EXIT_OK;
  case OPT_NO_PROGRESS:
    o->no_progress = 1;
    return FETCH_EXIT_OK;
  case 'q':
    o->quiet = 1;
    return FETCH_EXIT_OK;
  }
  if (c >= OPT_FLAG)
    return set_flag(o, &fetch_flags[c - OPT_FLAG], arg);
  return usage_error("unhandled option", NULL);
}

static size_t build_options(struct option *all) {
  size_t n = TOOL_OPTIONS, i;
  memcpy(all, tool_options, sizeof(tool_options));
  for (i = 0; fetch_flags[i].name != NULL && n + 1 < ALL_OPTIONS_MAX; i++) {
    all[n].name = fetch_flags[i].name;
    all[n].has_arg = required_argument;
    all[n].flag = NULL;
    all[n].val = OPT_FLAG + (int)i;
    n++;
  }
  memset(&all[n], 0, sizeof(all[n]));
  return n;
}

static int bad_option(int c, char **argv) {
  char what[128];
  const char *arg = argv[optind - 1];
  if (c == ':')
    snprintf(what, sizeof(what), "option '%.80s' needs a value", arg);
  else if (optopt != 0 && optopt < 256)
    snprintf(what, sizeof(what), "unknown option '-%c'", optopt);
  else
    snprintf(what, sizeof(what), "unknown option '%.80s'", arg);
  return usage_error(what, NULL);
}

static int parse_options(int argc, char **argv, fetch_opts_t *o, int *done) {
  struct option all[ALL_OPTIONS_MAX];
  int c, rc;

  build_options(all);
  opterr = 0;
  optind = 1;
  while ((c = getopt_long(argc, argv, ":c:X:H:d:qhV", all, NULL)) != -1) {
    if (c == '?' || c == ':') {
      *done = 1;
      return bad_option(c, argv);
    }
    rc = on_option(o, c, optarg, done);
    if (rc != FETCH_EXIT_OK || *done)
      return rc;
  }
  return FETCH_EXIT_OK;
}

/* ---- the URL list -------------------------------------------------------- */

static int is_blank(int ch) {
  return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\v' || ch == '\f';
}

/* Split the stdin buffer into trimmed, non-blank lines, in place.  With
 * |urls| NULL only counts them.  Returns the count, or -1 on a NUL byte. */
static long split_lines(char *buf, size_t len, char **urls) {
  char *p = buf, *end = buf + len, *nl, *a, *b;
  long n = 0;
  while (p < end) {
    nl = memchr(p, '\n', (size_t)(end - p));
    if (nl == NULL)
      nl = end;
    for (a = p; a < nl && is_blank((unsigned char)*a); a++)
      ;
    for (b = nl; b > a && is_blank((unsigned char)b[-1]); b--)
      ;
    if (memchr(a, '\0', (size_t)(b - a)) != NULL)
      return -1;
    if (b > a) {
      if (urls != NULL) {
        *b = '\0';
        urls[n] = a;
      }
      n++;
    }
    p = nl + 1;
  }
  return n;
}

static int read_stdin(fetch_opts_t *o, long *count) {
  int rc = slurp(stdin, &o->stdin_buf, &o->stdin_len);
  if (rc == UV_ENOMEM)
    return out_of_memory();
  if (rc != 0)
    return usage_error("cannot read stdin", strerror(errno));
  *count = split_lines(o->stdin_buf, o->stdin_len, NULL);
  if (*count < 0)
    return usage_error("stdin", "a line holds a NUL byte");
  return FETCH_EXIT_OK;
}

/* URLs from the arguments, with stdin's in place of the first "-" (or as
 * the whole list when there is no argument). */
static int collect_urls(int argc, char **argv, fetch_opts_t *o) {
  int i, first = optind, use_stdin = optind >= argc, rc;
  long nin = 0;
  size_t n = 0, cap;

  for (i = first; i < argc; i++)
    if (strcmp(argv[i], "-") == 0)
      use_stdin = 1;
  if (use_stdin && (rc = read_stdin(o, &nin)) != FETCH_EXIT_OK)
    return rc;
  cap = (size_t)(argc - first) + (size_t)nin + 1;
  o->urls = calloc(cap, sizeof(*o->urls));
  if (o->urls == NULL)
    return out_of_memory();
  for (i = first; i < argc; i++) {
    if (strcmp(argv[i], "-") == 0) {
      if (nin > 0)
        n += (size_t)split_lines(o->stdin_buf, o->stdin_len, o->urls + n);
      nin = 0; /* a second "-" adds nothing */
    } else if (argv[i][0] == '\0') {
      char what[64];
      snprintf(what, sizeof(what), "empty URL (index %zu)", n);
      return usage_error(what, NULL);
    } else {
      o->urls[n++] = argv[i];
    }
  }
  if (first >= argc && nin > 0)
    n += (size_t)split_lines(o->stdin_buf, o->stdin_len, o->urls + n);
  o->nurls = n;
  if (n == 0)
    return usage_error("no URL given", use_stdin ? "stdin was empty" : NULL);
  return FETCH_EXIT_OK;
}

int fetch_args_parse(int argc, char **argv, fetch_opts_t *o, int *done) {
  int rc;
  memset(o, 0, sizeof(*o));
  o->concurrency = FETCH_CONCURRENCY_DEFAULT;
  *done = 0;
  rc = parse_options(argc, argv, o, done);
  if (rc != FETCH_EXIT_OK || *done) {
    *done = 1;
    return rc;
  }
  rc = collect_urls(argc, argv, o);
  if (rc != FETCH_EXIT_OK)
    *done = 1;
  return rc;
}

void fetch_args_free(fetch_opts_t *o) {
  free(o->headers);
  free(o->data);
  free(o->urls);
  free(o->stdin_buf);
  memset(o, 0, sizeof(*o));
}

void fetch_print_quoted(FILE *f, const char *s, size_t n, size_t max) {
  size_t i;
  for (i = 0; i < n && i < max; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (ch < 0x20 || ch >= 0x7f || ch == '\\')
      fprintf(f, "\\x%02x", ch);
    else
      fputc(ch, f);
  }
  if (n > max)
    fputs("...", f);
}
