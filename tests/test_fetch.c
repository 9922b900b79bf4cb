/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * Tests of the fortify-fetch tool: the built binary (FY_FETCH_BIN, set by
 * tests/CMakeLists.txt) runs against test upstreams spawned on their own
 * threads on loopback, with its stdin, stdout and stderr in temporary
 * files.  The JSON lines are checked field by field.  Times are real, so
 * bounds are generous and one-sided. */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fortify/curl.h"
#include "upstream.h"

extern char **environ;

#define ARGS_MAX 64

/* ---- fixture: two upstreams ---------------------------------------------- */

static fy_up_t *up, *up2;
static char base[64], base2[64];

static fy_up_t *server(char *url, size_t len, uint64_t seed) {
  fy_up_opts_t o;
  fy_up_t *s = NULL;
  memset(&o, 0, sizeof(o));
  o.seed = seed;
  o.quiet = 1;
  cr_assert_eq(fy_up_spawn(&o, &s), 0);
  fy_up_base_url(s, url, len);
  return s;
}

static void setup(void) {
  up = server(base, sizeof(base), 7);
}

static void teardown(void) {
  fy_up_close(up, NULL, NULL);
  fy_up_close(up2, NULL, NULL);
  up = up2 = NULL;
}

TestSuite(fetch, .init = setup, .fini = teardown, .timeout = 60);

/* ---- running the tool ---------------------------------------------------- */

typedef struct run_s {
  pid_t pid;
  int status; /* exit status, or 128 + signal */
  char path[3][32];
  char *out; /* stdout, NUL-terminated */
  char *err; /* stderr */
} run_t;

static char *slurp(const char *path) {
  FILE *f = fopen(path, "rb");
  char *buf;
  long n;
  cr_assert_not_null(f);
  fseek(f, 0, SEEK_END);
  n = ftell(f);
  fseek(f, 0, SEEK_SET);
  buf = malloc((size_t)n + 1);
  cr_assert_not_null(buf);
  cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
  buf[n] = '\0';
  fclose(f);
  return buf;
}

static int temp_file(char *path, const char *text) {
  int fd;
  strcpy(path, "/tmp/fy_fetch_XXXXXX");
  fd = mkstemp(path);
  cr_assert(fd >= 0);
  if (text != NULL)
    cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
  lseek(fd, 0, SEEK_SET);
  return fd;
}

/* Start the tool with |args| (NULL-terminated), |in| as stdin and, when
 * |out| is not NULL, that file as stdout. */
static void spawn_to(run_t *r, const char *in, const char *out,
                     const char *const *args) {
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t at;
  sigset_t none, dfl;
  char *argv[ARGS_MAX + 2];
  int fd[3], i, n = 0;

  memset(r, 0, sizeof(*r));
  argv[n++] = (char *)FY_FETCH_BIN;
  while (args[n - 1] != NULL && n <= ARGS_MAX) {
    argv[n] = (char *)args[n - 1];
    n++;
  }
  argv[n] = NULL;
  fd[0] = temp_file(r->path[0], in != NULL ? in : "");
  fd[1] = temp_file(r->path[1], NULL);
  if (out != NULL) {
    close(fd[1]);
    fd[1] = open(out, O_WRONLY);
    cr_assert(fd[1] >= 0);
  }
  fd[2] = temp_file(r->path[2], NULL);
  posix_spawn_file_actions_init(&fa);
  for (i = 0; i < 3; i++)
    posix_spawn_file_actions_adddup2(&fa, fd[i], i);
  /* The tool must see SIGINT and SIGPIPE as a shell would give them. */
  posix_spawnattr_init(&at);
  sigemptyset(&none);
  sigemptyset(&dfl);
  sigaddset(&dfl, SIGINT);
  sigaddset(&dfl, SIGPIPE);
  posix_spawnattr_setsigmask(&at, &none);
  posix_spawnattr_setsigdefault(&at, &dfl);
  posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  cr_assert_eq(posix_spawn(&r->pid, FY_FETCH_BIN, &fa, &at, argv, environ), 0);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&at);
  for (i = 0; i < 3; i++)
    close(fd[i]);
}

static void spawn(run_t *r, const char *in, const char *const *args) {
  spawn_to(r, in, NULL, args);
}

static void reap(run_t *r) {
  int ws, i;
  cr_assert_eq(waitpid(r->pid, &ws, 0), r->pid);
  r->status = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
  r->out = slurp(r->path[1]);
  r->err = slurp(r->path[2]);
  for (i = 0; i < 3; i++)
    unlink(r->path[i]);
}

static void fetch_in(run_t *r, const char *in, const char *const *args) {
  spawn(r, in, args);
  reap(r);
}

static void fetch(run_t *r, const char *const *args) {
  fetch_in(r, NULL, args);
}

static void done(run_t *r) {
  free(r->out);
  free(r->err);
}

/* ---- reading the JSON lines ---------------------------------------------- */

static size_t nlines(const char *s) {
  size_t n = 0;
  for (; *s; s++)
    n += *s == '\n';
  return n;
}

/* The line whose "index" is |index|, copied into |buf|; every line must be
 * one object. */
static const char *line_of(const run_t *r, size_t index, char *buf,
                           size_t len) {
  char key[40];
  const char *p = r->out, *nl;
  snprintf(key, sizeof(key), ",\"index\":%zu,", index);
  for (; *p; p = nl + 1) {
    nl = strchr(p, '\n');
    cr_assert_not_null(nl, "unterminated line: %s", p);
    cr_assert_eq(*p, '{', "line: %.*s", (int)(nl - p), p);
    cr_assert_eq(nl[-1], '}', "line: %.*s", (int)(nl - p), p);
    if ((size_t)(nl - p) < len &&
        memmem(p, (size_t)(nl - p), key, strlen(key)) != NULL) {
      memcpy(buf, p, (size_t)(nl - p));
      buf[nl - p] = '\0';
      return buf;
    }
  }
  cr_assert_fail("no line with index %zu in:\n%s", index, r->out);
  return NULL;
}

/* The raw text of string field |name| ("" for null). */
static const char *jstr(const char *line, const char *name, char *buf,
                        size_t len) {
  char key[40];
  const char *p, *q;
  snprintf(key, sizeof(key), "\"%s\":", name);
  p = strstr(line, key);
  cr_assert_not_null(p, "no %s in %s", name, line);
  p += strlen(key);
  if (strncmp(p, "null", 4) == 0) {
    buf[0] = '\0';
    return buf;
  }
  cr_assert_eq(*p, '"', "%s is not a string in %s", name, line);
  for (q = ++p; *q != '"'; q++)
    if (*q == '\\')
      q++;
  cr_assert_lt((size_t)(q - p), len);
  memcpy(buf, p, (size_t)(q - p));
  buf[q - p] = '\0';
  return buf;
}

static double jnum(const char *line, const char *name) {
  char key[40];
  const char *p;
  snprintf(key, sizeof(key), "\"%s\":", name);
  p = strstr(line, key);
  cr_assert_not_null(p, "no %s in %s", name, line);
  return strtod(p + strlen(key), NULL);
}

static int is_null(const char *line, const char *name) {
  char key[40];
  snprintf(key, sizeof(key), "\"%s\":null", name);
  return strstr(line, key) != NULL;
}

/* Check one line's status and attempts. */
static void expect(const run_t *r, size_t index, const char *status,
                   unsigned attempts) {
  char line[2048], s[64];
  line_of(r, index, line, sizeof(line));
  cr_expect_str_eq(jstr(line, "status", s, sizeof(s)), status, "%s", line);
  cr_expect_eq(jnum(line, "attempts"), attempts, "%s", line);
}

static uint64_t server_requests(fy_up_t *s) {
  fy_up_stats_t st;
  fy_up_stats(s, &st);
  return st.requests;
}

static char *url(char *buf, const char *b, const char *path) {
  snprintf(buf, 256, "%s%s", b, path);
  return buf;
}

/* ---- results ------------------------------------------------------------- */

Test(fetch, success_prints_one_line_per_url) {
  char u0[256], u1[256], line[2048], s[256];
  run_t r;
  const char *args[] = {url(u0, base, "/a"), url(u1, base, "/b?body=10"), NULL};
  fetch(&r, args);
  cr_assert_eq(r.status, 0, "stderr: %s", r.err);
  cr_assert_eq(nlines(r.out), 2);
  line_of(&r, 0, line, sizeof(line));
  cr_expect_str_eq(jstr(line, "url", s, sizeof(s)), u0);
  cr_expect_str_eq(jstr(line, "status", s, sizeof(s)), "OK");
  cr_expect_eq(jnum(line, "http_code"), 200);
  cr_expect_eq(jnum(line, "attempts"), 1);
  cr_expect_eq(jnum(line, "bytes"), 3);
  cr_expect_geq(jnum(line, "elapsed_ms"), 0.0);
  cr_expect(is_null(line, "error"), "%s", line);
  cr_expect_str_eq(jstr(line, "breaker", s, sizeof(s)), "closed");
  cr_expect_null(strstr(line, "\"body\""));
  line_of(&r, 1, line, sizeof(line));
  cr_expect_str_eq(jstr(line, "url", s, sizeof(s)), u1);
  cr_expect_eq(jnum(line, "bytes"), 10);
  /* The summary, on stderr only. */
  cr_expect_not_null(strstr(r.err, "2 of 2 URLs"), "%s", r.err);
  cr_expect_not_null(strstr(r.err, "ok 2 (100.0%), failed 0"), "%s", r.err);
  cr_expect_not_null(strstr(r.err, "p50"), "%s", r.err);
  cr_expect_not_null(strstr(r.err, "p99"), "%s", r.err);
  done(&r);
}

Test(fetch, http_404_is_not_retried) {
  char u[256], line[2048], s[64];
  run_t r;
  const char *args[] = {
      "--retries", "3", "--initial-delay", "1", url(u, base, "/x?status=404"),
      NULL};
  fetch(&r, args);
  cr_assert_eq(r.status, 1, "stderr: %s", r.err);
  expect(&r, 0, "FY_EHTTP_404", 1);
  line_of(&r, 0, line, sizeof(line));
  cr_expect_eq(jnum(line, "http_code"), 404);
  cr_expect_str_eq(jstr(line, "error", s, sizeof(s)), "HTTP status 404");
  cr_expect_eq(server_requests(up), 1);
  done(&r);
}

Test(fetch, http_503_is_retried_until_success) {
  /* fail=0.5 with seed 7: the first requests fail, a later one passes. */
  char u[256], line[2048];
  run_t r;
  const char *args[] = {"--retries", "10",   "--initial-delay",           "1",
                        "--jitter",  "none", url(u, base, "/x?fail=0.5"), NULL};
  fetch(&r, args);
  cr_assert_eq(r.status, 0, "stdout: %s stderr: %s", r.out, r.err);
  line_of(&r, 0, line, sizeof(line));
  cr_expect_geq(jnum(line, "attempts"), 2, "%s", line);
  cr_expect_eq(jnum(line, "attempts"), (double)server_requests(up));
  cr_expect_eq(jnum(line, "http_code"), 200);
  done(&r);
}

Test(fetch, http_503_retries_run_out) {
  char u[256], line[2048];
  run_t r;
  const char *args[] = {"--retries",
                        "3",
                        "--initial-delay",
                        "1",
                        "--backoff",
                        "constant",
                        url(u, base, "/x?status=503"),
                        NULL};
  fetch(&r, args);
  cr_assert_eq(r.status, 1);
  expect(&r, 0, "FY_EHTTP_503", 3);
  line_of(&r, 0, line, sizeof(line));
  cr_expect_eq(jnum(line, "http_code"), 503);
  cr_expect_eq(server_requests(up), 3);
  cr_expect_not_null(strstr(r.err, "attempts 3, retries 2"), "%s", r.err);
  done(&r);
}

Test(fetch, retry_after_is_honoured) {
  char u[256], line[2048];
  run_t r;
  const char *args[] = {"--retries",
                        "2",
                        "--initial-delay",
                        "1",
                        url(u, base, "/x?status=503&retry_after=1"),
                        NULL};
  fetch(&r, args);
  cr_assert_eq(r.status, 1);
  expect(&r, 0, "FY_EHTTP_503", 2);
  line_of(&r, 0, line, sizeof(line));
  cr_expect_geq(jnum(line, "elapsed_ms"), 990.0, "%s", line);
  cr_expect_lt(jnum(line, "elapsed_ms"), 5000.0, "%s", line);
  done(&r);
}

Test(fetch, retry_after_beyond_the_cap_ends_the_retries) {
  char u[256], line[2048];
  run_t r;
  const char *args[] = {"--max-retry-after", "1000",
                        url(u, base, "/x?status=429&retry_after=100"), NULL};
  fetch(&r, args);
  cr_assert_eq(r.status, 1);
  expect(&r, 0, "FY_EHTTP_429", 1);
  line_of(&r, 0, line, sizeof(line));
  cr_expect_lt(jnum(line, "elapsed_ms"), 900.0, "%s", line);
  done(&r);
}

Test(fetch, attempt_timeout_cuts_each_try) {
  char u[256], line[2048];
  run_t r;
  const char *args[] = {"--attempt-timeout",
                        "100",
                        "--retries",
                        "2",
                        "--initial-delay",
                        "1",
                        url(u, base, "/x?latency=2000"),
                        NULL};
  fetch(&r, args);
  cr_assert_eq(r.status, 1);
  expect(&r, 0, "UV_ETIMEDOUT", 2);
  line_of(&r, 0, line, sizeof(line));
  cr_expect_geq(jnum(line, "elapsed_ms"), 195.0, "%s", line);
  cr_expect_lt(jnum(line, "elapsed_ms"), 1500.0, "%s", line);
  cr_expect_eq(jnum(line, "http_code"), 0);
  done(&r);
}

Test(fetch, total_timeout_bounds_the_url) {
  char u[256], line[2048];
  run_t r;
  const char *args[] = {"--timeout",
                        "250",
                        "--attempt-timeout",
                        "100",
                        "--retries",
                        "10",
                        "--initial-delay",
                        "1",
                        url(u, base, "/x?latency=2000"),
                        NULL};
  fetch(&r, args);
  cr_assert_eq(r.status, 1);
  line_of(&r, 0, line, sizeof(line));
  cr_expect_geq(jnum(line, "elapsed_ms"), 245.0, "%s", line);
  cr_expect_lt(jnum(line, "elapsed_ms"), 1500.0, "%s", line);
  cr_expect_leq(jnum(line, "attempts"), 3, "%s", line);
  done(&r);
}

Test(fetch, connection_refused_is_retried) {
  char u[256];
  fy_up_t *gone = server(u, sizeof(u), 1);
  run_t r;
  const char *args[] = {"--retries", "2", "--initial-delay", "1", u, NULL};
  fy_up_close(gone, NULL, NULL); /* nothing listens there now */
  fetch(&r, args);
  cr_assert_eq(r.status, 1);
  expect(&r, 0, "UV_ECONNREFUSED", 2);
  done(&r);
}

Test(fetch, oversized_body_fails_without_retry) {
  char u[256];
  run_t r;
  const char *args[] = {"--max-body", "100", url(u, base, "/x?body=1000"),
                        NULL};
  fetch(&r, args);
  cr_assert_eq(r.status, 1);
  expect(&r, 0, "UV_EMSGSIZE", 1);
  done(&r);
}

/* ---- per-host breakers --------------------------------------------------- */

Test(fetch, breaker_isolates_a_failing_host) {
  char bad[8][256], good[8][256], line[2048], s[64];
  const char *args[24] = {"-c", "1", "--retries", "1", "--breaker-failures",
                          "3"};
  size_t n = 6, i;
  run_t r;

  up2 = server(base2, sizeof(base2), 1);
  for (i = 0; i < 8; i++) {
    args[n++] = url(bad[i], base2, "/down?status=503");
    args[n++] = url(good[i], base, "/up");
  }
  args[n] = NULL;
  fetch(&r, args);
  cr_assert_eq(r.status, 1);
  cr_assert_eq(nlines(r.out), 16);
  for (i = 0; i < 8; i++) {
    /* -c 1: URLs run in order, so the fourth failure finds it open. */
    line_of(&r, 2 * i, line, sizeof(line));
    cr_expect_str_eq(jstr(line, "status", s, sizeof(s)),
                     i < 3 ? "FY_EHTTP_503" : "FY_ECIRCUITOPEN", "%s", line);
    cr_expect_eq(jnum(line, "attempts"), i < 3 ? 1 : 0, "%s", line);
    cr_expect_str_eq(jstr(line, "breaker", s, sizeof(s)),
                     i < 2 ? "closed" : "open", "%s", line);
    line_of(&r, 2 * i + 1, line, sizeof(line));
    cr_expect_str_eq(jstr(line, "status", s, sizeof(s)), "OK", "%s", line);
    cr_expect_str_eq(jstr(line, "breaker", s, sizeof(s)), "closed");
  }
  cr_expect_eq(server_requests(up2), 3);
  cr_expect_eq(server_requests(up), 8);
  cr_expect_not_null(strstr(r.err, "breaker opens 1"), "%s", r.err);
  done(&r);
}

/* ---- per-host rate limits and 429 holds ---------------------------------- */

/* --rate 1/m --burst 1 with a total timeout: the host's second URL would
 * wait a minute for its token, past its deadline, so it is refused at once
 * without a request; the other host has its own token. */
Test(fetch, rate_limits_each_host_on_its_own) {
  char a1[256], a2[256], b1[256], line[2048], s[64];
  run_t r;
  const char *args[] = {"-c",        "1",    "--rate",
                        "1/m",       "--burst", "1",
                        "--timeout", "3000", "--attempt-timeout",
                        "3000",      a1,     a2,
                        b1,          NULL};
  up2 = server(base2, sizeof(base2), 3);
  url(a1, base, "/1");
  url(a2, base, "/2");
  url(b1, base2, "/1");
  fetch(&r, args);
  cr_assert_eq(r.status, 1, "stderr: %s", r.err);
  cr_assert_eq(nlines(r.out), 3);
  expect(&r, 0, "OK", 1);
  line_of(&r, 1, line, sizeof(line));
  cr_expect_str_eq(jstr(line, "status", s, sizeof(s)), "FY_ERATELIMITED",
                   "%s", line);
  cr_expect_eq(jnum(line, "attempts"), 0, "%s", line);
  cr_expect_lt(jnum(line, "elapsed_ms"), 2500.0, "refused, not waited: %s",
               line);
  expect(&r, 2, "OK", 1);
  cr_expect_eq(server_requests(up), 1);
  cr_expect_eq(server_requests(up2), 1);
  done(&r);
}

/* Over the rate, URLs wait for their turn: --rate 10/s --burst 1 spaces
 * three URLs of one host 100 ms apart, and all of them succeed. */
Test(fetch, rate_paces_a_host) {
  char u[3][256], line[2048];
  double slowest = 0;
  size_t i;
  run_t r;
  const char *args[] = {"-c", "3", "--rate", "10/s", "--burst", "1",
                        u[0], u[1], u[2],   NULL};
  for (i = 0; i < 3; i++)
    url(u[i], base, "/p");
  fetch(&r, args);
  cr_assert_eq(r.status, 0, "stdout: %s stderr: %s", r.out, r.err);
  for (i = 0; i < 3; i++) {
    expect(&r, i, "OK", 1);
    line_of(&r, i, line, sizeof(line));
    if (jnum(line, "elapsed_ms") > slowest)
      slowest = jnum(line, "elapsed_ms");
  }
  /* Two intervals on the loop's clock; the tool measures on the real one,
   * which the loop's cached time may lag by an iteration (a long one
   * under valgrind): half of it is the bound that cannot be missed. */
  cr_expect_geq(slowest, 100.0, "the third waited two intervals");
  cr_expect_eq(server_requests(up), 3);
  done(&r);
}

/* A 429 with Retry-After: 1 holds the host: the next URL (-c 1, so it
 * starts after the first ended) waits for the hint instead of being sent
 * into the same 429, then succeeds. */
Test(fetch, a_429_holds_the_host_for_its_other_urls) {
  char a[256], b[256], line[2048];
  run_t r;
  const char *args[] = {"-c", "1", "--retries", "1", a, b, NULL};
  url(a, base, "/x?status=429&retry_after=1");
  url(b, base, "/y");
  fetch(&r, args);
  cr_assert_eq(r.status, 1, "stderr: %s", r.err);
  expect(&r, 0, "FY_EHTTP_429", 1);
  expect(&r, 1, "OK", 1);
  line_of(&r, 1, line, sizeof(line));
  /* Measured by the tool on the real clock, from its start of the URL;
   * the hold runs on the loop's clock, which may lag the real one by an
   * iteration (a long one under valgrind): half the hint is the bound
   * that cannot be missed. */
  cr_expect_geq(jnum(line, "elapsed_ms"), 500.0, "%s", line);
  cr_expect_eq(server_requests(up), 2);
  done(&r);
}

/* --max-retry-after caps the hold: a Retry-After of an hour holds the
 * host for 1 s, so the next URL, whose total timeout is 5 s, is sent
 * (uncapped, it would be refused at once: its wait would outlast it). */
Test(fetch, max_retry_after_caps_the_hold) {
  char a[256], b[256], line[2048];
  run_t r;
  const char *args[] = {"-c",
                        "1",
                        "--retries",
                        "1",
                        "--max-retry-after",
                        "1000",
                        "--timeout",
                        "5000",
                        "--attempt-timeout",
                        "5000",
                        a,
                        b,
                        NULL};
  url(a, base, "/x?status=429&retry_after=3600");
  url(b, base, "/y");
  fetch(&r, args);
  cr_assert_eq(r.status, 1, "stderr: %s", r.err);
  expect(&r, 0, "FY_EHTTP_429", 1);
  expect(&r, 1, "OK", 1);
  line_of(&r, 1, line, sizeof(line));
  /* Held for the cap, 1 s, not the hint's hour (the call would have
   * timed out after 5 s); at least half of it, as above. */
  cr_expect_geq(jnum(line, "elapsed_ms"), 500.0, "held: %s", line);
  cr_expect_lt(jnum(line, "elapsed_ms"), 5000.0, "held: %s", line);
  cr_expect_eq(server_requests(up), 2);
  done(&r);
}

Test(fetch, no_breaker_never_refuses) {
  char u[6][256], line[2048];
  const char *args[16] = {"-c", "1", "--retries", "1", "--no-breaker"};
  size_t n = 5, i;
  run_t r;
  for (i = 0; i < 6; i++)
    args[n++] = url(u[i], base, "/x?status=503");
  args[n] = NULL;
  fetch(&r, args);
  cr_assert_eq(r.status, 1);
  for (i = 0; i < 6; i++) {
    expect(&r, i, "FY_EHTTP_503", 1);
    cr_expect(is_null(line_of(&r, i, line, sizeof(line)), "breaker"));
  }
  cr_expect_eq(server_requests(up), 6);
  done(&r);
}

/* ---- input --------------------------------------------------------------- */

Test(fetch, urls_from_stdin) {
  char in[1024], line[2048], s[256], u[256];
  run_t r;
  const char *args[] = {"-q", NULL};
  snprintf(in, sizeof(in), "%s/a\n\n   \n  %s/b?body=5  \r\n%s/c", base, base,
           base);
  fetch_in(&r, in, args);
  cr_assert_eq(r.status, 0, "stderr: %s", r.err);
  cr_assert_eq(nlines(r.out), 3);
  cr_expect_str_eq(
      jstr(line_of(&r, 1, line, sizeof(line)), "url", s, sizeof(s)),
      url(u, base, "/b?body=5"));
  cr_expect_eq(jnum(line, "bytes"), 5);
  cr_expect_str_eq(r.err, ""); /* -q */
  done(&r);
}

Test(fetch, dash_inserts_stdin_among_the_arguments) {
  char in[512], u0[256], u3[256], line[2048], s[256], u[256];
  run_t r;
  const char *args[] = {url(u0, base, "/zero"), "-", url(u3, base, "/three"),
                        "-q", NULL};
  snprintf(in, sizeof(in), "%s/one\n%s/two\n", base, base);
  fetch_in(&r, in, args);
  cr_assert_eq(r.status, 0, "stderr: %s", r.err);
  cr_assert_eq(nlines(r.out), 4);
  cr_expect_str_eq(jstr(line_of(&r, 0, line, sizeof(line)), "url", s, 256), u0);
  cr_expect_str_eq(jstr(line_of(&r, 1, line, sizeof(line)), "url", s, 256),
                   url(u, base, "/one"));
  cr_expect_str_eq(jstr(line_of(&r, 2, line, sizeof(line)), "url", s, 256),
                   url(u, base, "/two"));
  cr_expect_str_eq(jstr(line_of(&r, 3, line, sizeof(line)), "url", s, 256), u3);
  done(&r);
}

Test(fetch, json_strings_are_escaped) {
  /* A quote, a backslash, a byte that is not UTF-8 and one that is. */
  char u[256], line[2048], want[256];
  run_t r;
  const char *args[] = {"-q", u, NULL};
  snprintf(u, sizeof(u), "%s/q?a=\"x\"&b=\\c&d=\xff&e=\xc3\xa9", base);
  fetch(&r, args);
  cr_assert_eq(r.status, 0, "stderr: %s", r.err);
  line_of(&r, 0, line, sizeof(line));
  snprintf(want, sizeof(want),
           "{\"url\":\"%s/q?a=\\\"x\\\"&b=\\\\c&d=\\ufffd&e=\xc3\xa9\",", base);
  cr_expect_eq(strncmp(line, want, strlen(want)), 0, "%s\nwanted %s", line,
               want);
  done(&r);
}

Test(fetch, response_body_with_post_and_echo) {
  char u[256], line[2048], s[64];
  run_t r;
  const char *args[] = {"-q",
                        "--body",
                        "-d",
                        "he\"llo\n",
                        "-H",
                        "X-Test: 1",
                        url(u, base, "/echo"),
                        NULL};
  fetch(&r, args);
  cr_assert_eq(r.status, 0, "stderr: %s", r.err);
  line_of(&r, 0, line, sizeof(line));
  cr_expect_str_eq(jstr(line, "body", s, sizeof(s)), "he\\\"llo\\n");
  cr_expect_eq(jnum(line, "bytes"), 7);
  done(&r);
}

Test(fetch, post_is_retried_only_when_declared_idempotent) {
  char u[256];
  run_t r;
  const char *plain[] = {"-q", "-d",
                         "x",  "--retries",
                         "3",  "--initial-delay",
                         "1",  url(u, base, "/echo?status=503"),
                         NULL};
  const char *idem[] = {
      "-q", "-d",           "x", "--retries", "3", "--initial-delay",
      "1",  "--idempotent", u,   NULL};
  fetch(&r, plain);
  cr_assert_eq(r.status, 1);
  expect(&r, 0, "FY_EHTTP_503", 1);
  done(&r);
  fetch(&r, idem);
  cr_assert_eq(r.status, 1);
  expect(&r, 0, "FY_EHTTP_503", 3);
  done(&r);
}

Test(fetch, many_urls_each_once) {
  enum { N = 300 };
  static char in[N * 64];
  char line[2048];
  size_t len = 0, i;
  fy_up_stats_t st;
  run_t r;
  const char *args[] = {"-c", "32", "-q", NULL};
  for (i = 0; i < N; i++)
    len += (size_t)snprintf(in + len, sizeof(in) - len, "%s/m%zu?latency=2\n",
                            base, i);
  fetch_in(&r, in, args);
  cr_assert_eq(r.status, 0, "stderr: %s", r.err);
  cr_assert_eq(nlines(r.out), N);
  for (i = 0; i < N; i++)
    expect(&r, i, "OK", 1);
  (void)line;
  fy_up_stats(up, &st);
  cr_expect_eq(st.requests, N);
  cr_expect_leq(st.peak_open, 32);
  done(&r);
}

/* ---- SIGINT -------------------------------------------------------------- */

static int wait_lines(const char *path, size_t n) {
  struct timespec ts = {0, 5 * 1000 * 1000};
  int i;
  for (i = 0; i < 1000; i++) {
    FILE *f = fopen(path, "rb");
    size_t lines = 0;
    int ch;
    if (f != NULL) {
      while ((ch = fgetc(f)) != EOF)
        lines += ch == '\n';
      fclose(f);
    }
    if (lines >= n)
      return 1;
    nanosleep(&ts, NULL);
  }
  return 0;
}

Test(fetch, sigint_cancels_and_reports) {
  char fast[256], slow[256], slow2[256], later[256], line[2048], s[64];
  run_t r;
  const char *args[] = {"-c",
                        "2",
                        url(fast, base, "/fast"),
                        url(slow, base, "/slow?latency=10000"),
                        url(slow2, base, "/slow2?latency=10000"),
                        url(later, base, "/later"),
                        NULL};
  spawn(&r, NULL, args);
  cr_assert(wait_lines(r.path[1], 1), "the fast URL never finished");
  /* Both slots are now busy with the slow URLs. */
  kill(r.pid, SIGINT);
  reap(&r);
  cr_assert_eq(r.status, 130, "stderr: %s", r.err);
  cr_assert_eq(nlines(r.out), 3, "%s", r.out);
  expect(&r, 0, "OK", 1);
  expect(&r, 1, "UV_ECANCELED", 1);
  expect(&r, 2, "UV_ECANCELED", 1);
  cr_expect_null(strstr(r.out, "/later"));
  line_of(&r, 1, line, sizeof(line));
  cr_expect_str_eq(jstr(line, "error", s, sizeof(s)), "operation canceled");
  cr_expect_not_null(strstr(r.err, "interrupted: 3 of 4 URLs"), "%s", r.err);
  done(&r);
}

Test(fetch, lost_output_stops_with_status_3) {
  enum { N = 2000 };
  static char in[N * 64];
  size_t len = 0, i;
  run_t r;
  const char *args[] = {"-c", "8", NULL};
  for (i = 0; i < N; i++)
    len += (size_t)snprintf(in + len, sizeof(in) - len, "%s/m%zu\n", base, i);
  spawn_to(&r, in, "/dev/full", args);
  reap(&r);
  cr_assert_eq(r.status, 3, "stderr: %s", r.err);
  cr_expect_not_null(strstr(r.err, "cannot write stdout"), "%s", r.err);
  /* It stopped early rather than fetching everything for nobody. */
  cr_expect_lt(server_requests(up), N);
  done(&r);
}

/* A reader that does not read: once the pipe and the tool's own buffer
 * (FETCH_SINK_HIGH_WATER) are full, no URL is started until it reads; then
 * every line arrives.  The bound on requests holds whatever the timing:
 * the sleep only gives a broken tool the time to overrun it. */
Test(fetch, slow_reader_pauses_the_fetching) {
  enum { N = 6000 };
  static char in[N * 64];
  static char got[N * 160];
  const struct timespec pause = {0, 400 * 1000 * 1000};
  size_t len = 0, i, n = 0;
  ssize_t k;
  int p[2];
  char out[64];
  run_t r;
  const char *args[] = {"-c", "8", "--quiet", NULL};

  for (i = 0; i < N; i++)
    len += (size_t)snprintf(in + len, sizeof(in) - len, "%s/p%zu\n", base, i);
  cr_assert_eq(pipe(p), 0);
  snprintf(out, sizeof(out), "/proc/self/fd/%d", p[1]);
  spawn_to(&r, in, out, args);
  close(p[1]);
  nanosleep(&pause, NULL);
  /* Lines are over 64 bytes: 64 KiB of pipe and 64 KiB of buffer hold
   * fewer than 2100 of them, plus one per slot in flight. */
  cr_expect_lt(server_requests(up), 2200);
  while ((k = read(p[0], got + n, sizeof(got) - 1 - n)) > 0)
    n += (size_t)k;
  close(p[0]);
  got[n] = '\0';
  reap(&r);
  cr_assert_eq(r.status, 0, "stderr: %s", r.err);
  cr_expect_eq(nlines(got), N);
  cr_expect_eq(server_requests(up), N);
  done(&r);
}

/* ---- the command line ---------------------------------------------------- */

Test(fetch, help_documents_every_flag) {
  static const char *const flags[] = {"--concurrency",
                                      "-c,",
                                      "--retries",
                                      "--backoff",
                                      "--jitter",
                                      "--initial-delay",
                                      "--max-delay",
                                      "--max-retry-after",
                                      "--idempotent",
                                      "--timeout",
                                      "--attempt-timeout",
                                      "--first-byte-timeout",
                                      "--idle-timeout",
                                      "--breaker-failures",
                                      "--breaker-open",
                                      "--no-breaker",
                                      "--rate",
                                      "--burst",
                                      "--method",
                                      "-X,",
                                      "--header",
                                      "-H,",
                                      "--data",
                                      "-d,",
                                      "--data-file",
                                      "--max-body",
                                      "--body",
                                      "--no-progress",
                                      "--quiet",
                                      "-q,",
                                      "--help",
                                      "--version",
                                      "Exit status"};
  const char *help[] = {"--help", NULL};
  const char *version[] = {"--version", NULL};
  run_t r;
  size_t i;

  fetch(&r, help);
  cr_assert_eq(r.status, 0);
  for (i = 0; i < sizeof(flags) / sizeof(flags[0]); i++)
    cr_expect_not_null(strstr(r.out, flags[i]), "--help lacks %s", flags[i]);
  cr_expect_str_eq(r.err, "");
  done(&r);
  fetch(&r, version);
  cr_assert_eq(r.status, 0);
  cr_expect_eq(strncmp(r.out, "fortify-fetch ", 14), 0, "%s", r.out);
  done(&r);
}

/* The text --help gives for |flag|, up to the next option, holds
 * "default |value|". */
static void expect_default(const char *help, const char *flag,
                           unsigned long long value) {
  char want[64];
  const char *p = strstr(help, flag), *end;
  cr_assert_not_null(p, "--help lacks %s", flag);
  end = strstr(p + 1, "\n  -");
  if (end == NULL)
    end = p + strlen(p);
  snprintf(want, sizeof(want), "default %llu)", value);
  cr_expect(memmem(p, (size_t)(end - p), want, strlen(want)) != NULL,
            "%s: wanted '%s' in %.*s", flag, want, (int)(end - p), p);
}

Test(fetch, help_shows_the_library_defaults) {
  fy_curl_pipeline_opts_t po;
  const char *help[] = {"--help", NULL};
  run_t r;

  fy_curl_pipeline_opts_init(&po);
  fetch(&r, help);
  cr_assert_eq(r.status, 0);
  expect_default(r.out, "--concurrency", 16);
  expect_default(r.out, "--retries", po.preset.max_attempts);
  expect_default(r.out, "--initial-delay", po.preset.retry_initial_delay_ms);
  expect_default(r.out, "--max-delay", po.preset.retry_max_delay_ms);
  expect_default(r.out, "--max-retry-after", po.max_retry_after_ms);
  expect_default(r.out, "--timeout", po.preset.total_timeout_ms);
  expect_default(r.out, "--attempt-timeout", po.preset.attempt_timeout_ms);
  expect_default(r.out, "--breaker-failures", po.preset.breaker_failures);
  expect_default(r.out, "--breaker-open", po.preset.breaker_open_ms);
  expect_default(r.out, "--max-body", FY_CURL_BODY_DEFAULT);
  cr_expect_eq(po.preset.retry_jitter, FY_RETRY_JITTER_FULL);
  cr_expect_not_null(strstr(r.out, "full (default)"));
  cr_expect_eq(po.first_byte_ms, 0);
  cr_expect_eq(po.idle_ms, 0);
  done(&r);
}

typedef struct bad_s {
  const char *args[6];
  const char *says; /* part of the message on stderr */
} bad_t;

/* Each case runs the tool and must end with status 2, an empty stdout, the
 * message on stderr, and no request made.  The cases are split over three
 * tests so that each stays well inside the suite's timeout under valgrind
 * (a per-test .timeout, tried first, made Criterion's runner leak a block
 * that LeakSanitizer reported with --jobs 2). */
static void expect_usage_errors(const bad_t *cases, size_t n) {
  size_t i;
  run_t r;
  for (i = 0; i < n; i++) {
    fetch(&r, cases[i].args);
    cr_expect_eq(r.status, 2, "case %zu: status %d, stderr: %s", i, r.status,
                 r.err);
    cr_expect_str_eq(r.out, "", "case %zu", i);
    cr_expect_not_null(strstr(r.err, cases[i].says),
                       "case %zu: wanted '%s' in: %s", i, cases[i].says, r.err);
    done(&r);
  }
  cr_expect_eq(server_requests(up), 0);
}

Test(fetch, malformed_values_are_usage_errors) {
  char u[256];
  const bad_t cases[] = {
      {{"--nope", u}, "unknown option '--nope'"},
      {{"-Z", u}, "unknown option '-Z'"},
      {{u, "--retries"}, "needs a value"},
      {{"--retries", "abc", u}, "--retries 'abc': not a decimal integer"},
      {{"--timeout", "-5", u}, "--timeout '-5': must not be negative"},
      {{"--timeout", "99999999999999999999999", u}, "too large"},
      {{"--retries", "4294967296", u}, "--retries '4294967296': too large"},
      {{"--breaker-failures", "4294967296", u}, "too large"},
      {{"--backoff", "fast", u}, "--backoff 'fast'"},
      {{"--jitter", "lots", u}, "--jitter 'lots'"},
      {{"-c", "0", u}, "--concurrency '0'"},
      {{"-c", "10001", u}, "--concurrency '10001'"},
      {{"--hedge", "50", u}, "unknown option '--hedge'"},
      {{"--data-file", "/nonexistent/fy", u}, "--data-file"},
  };
  url(u, base, "/x");
  expect_usage_errors(cases, sizeof(cases) / sizeof(cases[0]));
}

Test(fetch, values_the_policies_refuse_are_usage_errors) {
  char u[256];
  const bad_t cases[] = {
      {{"--retries", "0", u}, "--retries 0: out of range for the retry"},
      {{"--retries", "1001", u}, "--retries 1001: out of range"},
      {{"--retries", "4294967295", u}, "--retries 4294967295: out of range"},
      {{"--max-delay", "86400001", u}, "--max-delay 86400001: out of range"},
      {{"--attempt-timeout", "0", u}, "--attempt-timeout 0: out of range"},
      {{"--breaker-open", "4398046511105", u}, "--breaker-open"},
      {{"--max-body", "2000000000", u}, "--max-body 2000000000"},
      {{"--timeout", "10", "--attempt-timeout", "20", u}, "shorter than"},
      {{"--no-breaker", "--breaker-failures", "2", u}, "conflicts"},
      {{"-X", "GE T", u}, "-X 'GE T': not a method token"},
      {{"-H", "X-A: 1\r\nX-B: 2", u}, "-H 'X-A: 1\\x0d\\x0aX-B: 2'"},
  };
  url(u, base, "/x");
  expect_usage_errors(cases, sizeof(cases) / sizeof(cases[0]));
}

/* --rate and --burst: the form is the tool's to check, the range the
 * limiter's (fy_limiter_opts_check(), through the per-host policies'). */
Test(fetch, bad_rates_are_usage_errors) {
  char u[256];
  const bad_t cases[] = {
      {{"--rate", "abc", u}, "--rate 'abc': not a decimal integer"},
      {{"--rate", "10/h", u}, "--rate '10/h': expected N, N/s or N/m"},
      {{"--rate", "-1/s", u}, "--rate '-1/s': must not be negative"},
      {{"--burst", "x", "--rate", "1", u}, "--burst 'x'"},
      {{"--rate", "0", u}, "--rate 0/s: out of range for the per-host"},
      {{"--rate", "2000000000/m", u}, "--rate 2000000000/m: out of range"},
      {{"--rate", "5", "--burst", "2000000000", u},
       "--burst 2000000000: out of range for the per-host policies"},
      {{"--burst", "5", u}, "--burst needs --rate"},
      {{"--no-breaker", "--rate", "5", u}, "--no-breaker conflicts with --rate"},
  };
  url(u, base, "/x");
  expect_usage_errors(cases, sizeof(cases) / sizeof(cases[0]));
}

/* A flag given twice: the value in effect (the last) is the one named,
 * never an earlier value the later one replaced. */
Test(fetch, the_value_named_is_the_one_in_effect) {
  char u[256];
  const bad_t cases[] = {
      {{"--retries=0", "--retries=3", "--max-delay=86400001", u},
       "--max-delay 86400001: out of range for the retry"},
      {{"--max-body=2000000000", "--max-body=2000000001", u},
       "--max-body 2000000001: out of range for the curl adapter"},
      {{"--idle-timeout=99999999999", "--idle-timeout=0",
        "--attempt-timeout=0", u},
       "--attempt-timeout 0: out of range for the per-try timeout"},
  };
  url(u, base, "/x");
  expect_usage_errors(cases, sizeof(cases) / sizeof(cases[0]));
}

Test(fetch, bad_urls_are_usage_errors) {
  char u[256];
  const bad_t cases[] = {
      {{""}, "empty URL"},
      {{u, ""}, "empty URL (index 1)"},
      {{"not a url"}, "invalid URL (index 0): 'not a url'"},
      {{u, "http://h/\x01"}, "invalid URL (index 1): 'http://h/\\x01'"},
      {{"ftp:/"}, "invalid URL"},
  };
  url(u, base, "/x");
  expect_usage_errors(cases, sizeof(cases) / sizeof(cases[0]));
}

Test(fetch, empty_stdin_is_a_usage_error) {
  run_t r;
  const char *args[] = {NULL};
  fetch_in(&r, "\n  \n", args);
  cr_assert_eq(r.status, 2);
  cr_expect_not_null(strstr(r.err, "no URL given"), "%s", r.err);
  done(&r);
}
