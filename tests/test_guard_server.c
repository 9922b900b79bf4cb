/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * Tests of the guarded example server: the built binary (FY_GUARD_SERVER_BIN,
 * set by tests/CMakeLists.txt) runs on a free port of 127.0.0.1 and is
 * spoken to with libcurl, over real HTTP.  The server runs on the real
 * clock, so the tests assert counts and headers, never timings: limits are
 * either long enough that nothing refills during a test, or a test waits
 * for as long as the server itself said to. */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#ifndef FY_GUARD_SERVER_BIN
#error "FY_GUARD_SERVER_BIN (the example server's path) is set by tests/CMakeLists.txt"
#endif

extern char **environ;

#define ARGS_MAX 32

/* Servers still running when a test ends, by an assertion that failed
 * before stop(): killed by the suite's fini, so none outlives its test. */
static pid_t live[4];

static void track(pid_t pid, int on) {
  size_t i;

  for (i = 0; i < sizeof(live) / sizeof(live[0]); i++) {
    if (on ? live[i] == 0 : live[i] == pid) {
      live[i] = on ? pid : 0;
      return;
    }
  }
}

static void kill_live(void) {
  size_t i;

  for (i = 0; i < sizeof(live) / sizeof(live[0]); i++) {
    if (live[i] > 0) {
      kill(live[i], SIGKILL);
      waitpid(live[i], NULL, 0);
      live[i] = 0;
    }
  }
}

TestSuite(guard_server, .fini = kill_live, .timeout = 60);

/* ---- running the server -------------------------------------------------- */

typedef struct srv_s {
  pid_t pid;
  int port;
  char base[64];
  char err_path[32];
} srv_t;

static void spawn_server(srv_t *s, int out_fd, const char *const *args) {
  posix_spawn_file_actions_t fa;
  char *argv[ARGS_MAX + 2];
  int n = 0, err_fd;

  argv[n++] = (char *)FY_GUARD_SERVER_BIN;
  while (args[n - 1] != NULL && n <= ARGS_MAX) {
    argv[n] = (char *)args[n - 1];
    n++;
  }
  argv[n] = NULL;
  strcpy(s->err_path, "/tmp/fy_gsrv_XXXXXX");
  err_fd = mkstemp(s->err_path);
  cr_assert(err_fd >= 0);
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, out_fd, 1);
  posix_spawn_file_actions_adddup2(&fa, err_fd, 2);
  cr_assert_eq(posix_spawn(&s->pid, FY_GUARD_SERVER_BIN, &fa, NULL, argv,
                           environ),
               0);
  posix_spawn_file_actions_destroy(&fa);
  close(err_fd);
  track(s->pid, 1);
}

/* Start the server with |args| plus "--port 0" and read the port it
 * printed on its first line. */
static void start(srv_t *s, const char *const *args) {
  const char *full[ARGS_MAX + 1];
  char line[128];
  size_t len = 0;
  int fds[2], n = 0;
  const char *p;

  memset(s, 0, sizeof(*s));
  full[n++] = "--port";
  full[n++] = "0";
  while (*args != NULL && n < ARGS_MAX)
    full[n++] = *args++;
  full[n] = NULL;
  cr_assert_eq(pipe(fds), 0);
  spawn_server(s, fds[1], full);
  close(fds[1]);
  while (len < sizeof(line) - 1 && memchr(line, '\n', len) == NULL) {
    struct pollfd pfd = {fds[0], POLLIN, 0};
    ssize_t got;

    cr_assert_gt(poll(&pfd, 1, 10000), 0, "the server printed no port");
    got = read(fds[0], line + len, sizeof(line) - 1 - len);
    cr_assert_gt(got, 0, "the server ended before listening");
    len += (size_t)got;
  }
  line[len] = '\0';
  close(fds[0]);
  p = strstr(line, "127.0.0.1:");
  cr_assert_not_null(p, "first line: %s", line);
  s->port = atoi(p + strlen("127.0.0.1:"));
  cr_assert_gt(s->port, 0);
  snprintf(s->base, sizeof(s->base), "http://127.0.0.1:%d/", s->port);
}

/* Send |sig| and return the exit status (128 + signal when killed). */
static int stop(srv_t *s, int sig) {
  int ws;

  cr_assert_eq(kill(s->pid, sig), 0);
  cr_assert_eq(waitpid(s->pid, &ws, 0), s->pid);
  track(s->pid, 0);
  unlink(s->err_path);
  return WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
}

/* Run the binary with |args| to its end (no port, no signal). */
static int run_to_end(const char *const *args, char *err, size_t err_size) {
  srv_t s;
  int ws, fd;
  ssize_t n;

  memset(&s, 0, sizeof(s));
  fd = open("/dev/null", O_WRONLY);
  cr_assert(fd >= 0);
  spawn_server(&s, fd, args);
  close(fd);
  cr_assert_eq(waitpid(s.pid, &ws, 0), s.pid);
  track(s.pid, 0);
  fd = open(s.err_path, O_RDONLY);
  n = read(fd, err, err_size - 1);
  err[n > 0 ? n : 0] = '\0';
  close(fd);
  unlink(s.err_path);
  return WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
}

/* ---- talking to it ------------------------------------------------------- */

typedef struct resp_s {
  long status;
  long retry_after; /* -1: no header */
  char body[256];
  size_t body_len;
} resp_t;

static size_t on_body(char *data, size_t size, size_t nmemb, void *ud) {
  resp_t *r = ud;
  size_t n = size * nmemb;
  size_t room = sizeof(r->body) - 1 - r->body_len;

  memcpy(r->body + r->body_len, data, n < room ? n : room);
  r->body_len += n < room ? n : room;
  r->body[r->body_len] = '\0';
  return n;
}

static CURL *client(resp_t *r, const char *url) {
  CURL *h = curl_easy_init();

  cr_assert_not_null(h);
  curl_easy_setopt(h, CURLOPT_URL, url);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 20000L);
  curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
  return h;
}

static void read_resp(CURL *h, resp_t *r) {
  struct curl_header *hdr;

  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
  r->retry_after = -1;
  if (curl_easy_header(h, "Retry-After", 0, CURLH_HEADER, -1, &hdr) ==
      CURLHE_OK) {
    char *end;
    long v = strtol(hdr->value, &end, 10);

    cr_assert(end != hdr->value && *end == '\0', "Retry-After: '%s'",
              hdr->value);
    r->retry_after = v;
  }
}

/* One request on |h| (kept alive between calls). */
static resp_t perform(CURL *h, struct curl_slist *headers) {
  resp_t r;
  CURLcode rc;

  memset(&r, 0, sizeof(r));
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &r);
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
  rc = curl_easy_perform(h);
  cr_assert_eq(rc, CURLE_OK, "curl: %s", curl_easy_strerror(rc));
  read_resp(h, &r);
  return r;
}

static resp_t get(const srv_t *s, struct curl_slist *headers) {
  resp_t r;
  CURL *h = client(&r, s->base);

  r = perform(h, headers);
  curl_easy_cleanup(h);
  return r;
}

static struct curl_slist *one_header(const char *line) {
  struct curl_slist *l = curl_slist_append(NULL, line);

  cr_assert_not_null(l);
  return l;
}

/* ---- rate limit ---------------------------------------------------------- */

Test(guard_server, burst_then_429_with_retry_after) {
  /* An interval of a minute: nothing comes back during the test. */
  const char *args[] = {"--rate", "3", "--burst", "3", "--interval-ms",
                        "60000", NULL};
  srv_t s;
  resp_t r;
  CURL *h;
  int i, ok = 0, limited = 0;

  start(&s, args);
  h = client(&r, s.base);
  for (i = 0; i < 10; i++) {
    r = perform(h, NULL);
    if (r.status == 200) {
      ok++;
      cr_assert_str_eq(r.body, "ok\n");
      cr_assert_eq(r.retry_after, -1);
      cr_assert_eq(limited, 0, "a 200 after a 429");
    } else {
      cr_assert_eq(r.status, 429, "status %ld", r.status);
      limited++;
      /* The next token is 20 s away: whole seconds, rounded up. */
      cr_assert_geq(r.retry_after, 1);
      cr_assert_leq(r.retry_after, 20);
      cr_assert_str_eq(r.body, "Too Many Requests\n");
    }
  }
  curl_easy_cleanup(h);
  cr_assert_eq(ok, 3);
  cr_assert_eq(limited, 7);
  cr_assert_eq(stop(&s, SIGTERM), 0);
}

Test(guard_server, request_after_retry_after_passes) {
  const char *args[] = {"--rate", "2", "--burst", "2", "--interval-ms",
                        "200", NULL};
  srv_t s;
  resp_t r;
  CURL *h;
  int i;

  start(&s, args);
  h = client(&r, s.base);
  /* However slow this machine, a client sending in a loop runs into its
   * limit long before 200 requests. */
  for (i = 0; i < 200; i++) {
    r = perform(h, NULL);
    if (r.status != 200)
      break;
  }
  cr_assert_eq(r.status, 429);
  cr_assert_geq(r.retry_after, 1);
  /* Waiting as long as told is enough. */
  sleep((unsigned)r.retry_after);
  r = perform(h, NULL);
  cr_assert_eq(r.status, 200);
  curl_easy_cleanup(h);
  cr_assert_eq(stop(&s, SIGTERM), 0);
}

Test(guard_server, no_rate_limit_with_rate_zero) {
  const char *args[] = {"--rate", "0", NULL};
  srv_t s;
  resp_t r;
  CURL *h;
  int i;

  start(&s, args);
  h = client(&r, s.base);
  for (i = 0; i < 50; i++)
    cr_assert_eq(perform(h, NULL).status, 200);
  curl_easy_cleanup(h);
  cr_assert_eq(stop(&s, SIGTERM), 0);
}

Test(guard_server, no_guard_answers_everything) {
  const char *args[] = {"--no-guard", "--rate", "1", "--interval-ms",
                        "60000", NULL};
  srv_t s;
  resp_t r;
  CURL *h;
  int i;

  start(&s, args);
  h = client(&r, s.base);
  for (i = 0; i < 20; i++) {
    r = perform(h, NULL);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.body, "ok\n");
  }
  curl_easy_cleanup(h);
  cr_assert_eq(stop(&s, SIGTERM), 0);
}

/* ---- client keys --------------------------------------------------------- */

Test(guard_server, key_header_separates_clients) {
  const char *args[] = {"--rate", "1", "--interval-ms", "60000",
                        "--key-header", "X-Api-Key", NULL};
  struct curl_slist *a = one_header("X-Api-Key: alpha");
  struct curl_slist *b = one_header("x-api-key:   beta  ");
  struct curl_slist *empty = one_header("X-Api-Key;");
  srv_t s;

  start(&s, args);
  cr_assert_eq(get(&s, a).status, 200);
  cr_assert_eq(get(&s, a).status, 429);
  cr_assert_eq(get(&s, b).status, 200);
  cr_assert_eq(get(&s, b).status, 429);
  /* No header: keyed by address, a bucket of its own. */
  cr_assert_eq(get(&s, NULL).status, 200);
  cr_assert_eq(get(&s, NULL).status, 429);
  /* An empty value names nobody: refused, not let through. */
  cr_assert_eq(get(&s, empty).status, 400);
  curl_slist_free_all(a);
  curl_slist_free_all(b);
  curl_slist_free_all(empty);
  cr_assert_eq(stop(&s, SIGTERM), 0);
}

Test(guard_server, forwarded_for_ignored_without_trusted_proxy) {
  const char *args[] = {"--rate", "1", "--interval-ms", "60000", NULL};
  struct curl_slist *x1 = one_header("X-Forwarded-For: 203.0.113.1");
  struct curl_slist *x2 = one_header("X-Forwarded-For: 203.0.113.2");
  srv_t s;

  start(&s, args);
  cr_assert_eq(get(&s, x1).status, 200);
  /* Another "client" by the header, the same address: the same bucket. */
  cr_assert_eq(get(&s, x2).status, 429);
  curl_slist_free_all(x1);
  curl_slist_free_all(x2);
  cr_assert_eq(stop(&s, SIGTERM), 0);
}

Test(guard_server, forwarded_for_from_trusted_proxy) {
  const char *args[] = {"--rate", "1", "--interval-ms", "60000",
                        "--trust-proxy", "::ffff:127.0.0.1", NULL};
  struct curl_slist *x1 = one_header("X-Forwarded-For: 203.0.113.1");
  struct curl_slist *x2 =
      one_header("X-Forwarded-For: 198.51.100.9, 203.0.113.2, 127.0.0.1");
  struct curl_slist *bad = one_header("X-Forwarded-For: junk");
  srv_t s;

  start(&s, args);
  cr_assert_eq(get(&s, x1).status, 200);
  cr_assert_eq(get(&s, x1).status, 429);
  /* The right-most address no trusted proxy owns: 203.0.113.2. */
  cr_assert_eq(get(&s, x2).status, 200);
  cr_assert_eq(get(&s, x2).status, 429);
  /* Garbage: the proxy itself is the client, once. */
  cr_assert_eq(get(&s, bad).status, 200);
  cr_assert_eq(get(&s, NULL).status, 429);
  curl_slist_free_all(x1);
  curl_slist_free_all(x2);
  curl_slist_free_all(bad);
  cr_assert_eq(stop(&s, SIGTERM), 0);
}

/* ---- handler deadline and concurrency ----------------------------------- */

Test(guard_server, handler_overrun_is_504) {
  const char *args[] = {"--handler-ms", "2000", "--handler-timeout-ms", "50",
                        NULL};
  srv_t s;
  resp_t r;

  start(&s, args);
  r = get(&s, NULL);
  cr_assert_eq(r.status, 504);
  cr_assert_eq(r.retry_after, -1);
  cr_assert_str_eq(r.body, "Gateway Timeout\n");
  cr_assert_eq(stop(&s, SIGTERM), 0);
}

Test(guard_server, handler_within_deadline_is_200) {
  const char *args[] = {"--handler-ms", "20", "--handler-timeout-ms",
                        "10000", NULL};
  srv_t s;

  start(&s, args);
  cr_assert_eq(get(&s, NULL).status, 200);
  cr_assert_eq(stop(&s, SIGTERM), 0);
}

/* Two requests at once on two connections; returns their statuses and
 * Retry-After values in |r|. */
static void two_at_once(const srv_t *s, resp_t r[2]) {
  CURLM *m = curl_multi_init();
  CURL *h[2];
  int i, running = 1;

  memset(r, 0, 2 * sizeof(*r));
  for (i = 0; i < 2; i++) {
    h[i] = client(&r[i], s->base);
    curl_easy_setopt(h[i], CURLOPT_WRITEDATA, &r[i]);
    curl_multi_add_handle(m, h[i]);
  }
  while (running) {
    cr_assert_eq(curl_multi_perform(m, &running), CURLM_OK);
    if (running)
      curl_multi_poll(m, NULL, 0, 100, NULL);
  }
  for (i = 0; i < 2; i++) {
    read_resp(h[i], &r[i]);
    curl_multi_remove_handle(m, h[i]);
    curl_easy_cleanup(h[i]);
  }
  curl_multi_cleanup(m);
}

Test(guard_server, concurrency_limit_is_503) {
  /* The first request holds the one slot for 1.5 s: the second, sent at
   * the same moment, finds it taken. */
  const char *args[] = {"--max-concurrent", "1", "--handler-ms", "1500",
                        NULL};
  srv_t s;
  resp_t r[2];
  const resp_t *ok, *shed;

  start(&s, args);
  two_at_once(&s, r);
  ok = r[0].status == 200 ? &r[0] : &r[1];
  shed = ok == &r[0] ? &r[1] : &r[0];
  cr_assert_eq(ok->status, 200);
  cr_assert_eq(shed->status, 503);
  cr_assert_geq(shed->retry_after, 1);
  cr_assert_str_eq(shed->body, "Service Unavailable\n");
  /* The slot is free again. */
  cr_assert_eq(get(&s, NULL).status, 200);
  cr_assert_eq(stop(&s, SIGTERM), 0);
}

Test(guard_server, backend_slots_queue_without_the_guard) {
  /* Without the guard nothing is shed: the second request waits for the
   * one backend slot and is answered too. */
  const char *args[] = {"--no-guard", "--backend-slots", "1", "--handler-ms",
                        "300", NULL};
  srv_t s;
  resp_t r[2];

  start(&s, args);
  two_at_once(&s, r);
  cr_assert_eq(r[0].status, 200);
  cr_assert_eq(r[1].status, 200);
  cr_assert_eq(stop(&s, SIGTERM), 0);
}

/* ---- bad input ----------------------------------------------------------- */

/* Sends |req| on a raw connection and reads until the server closes. */
static void raw(const srv_t *s, const char *req, size_t len, char *out,
                size_t out_size) {
  struct sockaddr_in sa;
  size_t got = 0;
  int fd = socket(AF_INET, SOCK_STREAM, 0);

  cr_assert(fd >= 0);
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)s->port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
  cr_assert_eq(send(fd, req, len, MSG_NOSIGNAL), (ssize_t)len);
  for (;;) {
    struct pollfd pfd = {fd, POLLIN, 0};
    ssize_t n;

    cr_assert_gt(poll(&pfd, 1, 10000), 0, "the server kept it open");
    n = recv(fd, out + got, out_size - 1 - got, 0);
    if (n <= 0)
      break; /* closed: what every bad request must end with */
    got += (size_t)n;
    cr_assert_lt(got, out_size - 1);
  }
  out[got] = '\0';
  close(fd);
}

Test(guard_server, garbage_gets_400_and_close) {
  const char *args[] = {NULL};
  static const char junk[] = "\x16\x03\x01\x00\xa5 not http\r\n\r\n";
  char out[1024];
  srv_t s;

  start(&s, args);
  raw(&s, junk, sizeof(junk) - 1, out, sizeof(out));
  cr_assert(strncmp(out, "HTTP/1.1 400 ", 13) == 0, "%s", out);
  cr_assert_not_null(strstr(out, "Connection: close\r\n"));
  /* The server still serves others. */
  cr_assert_eq(get(&s, NULL).status, 200);
  cr_assert_eq(stop(&s, SIGTERM), 0);
}

Test(guard_server, huge_headers_get_431) {
  const char *args[] = {NULL};
  char req[20000], out[1024];
  srv_t s;
  int n;

  n = snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nHost: x\r\nX-Pad: ");
  memset(req + n, 'a', 10000);
  n += 10000;
  n += snprintf(req + n, sizeof(req) - (size_t)n, "\r\n\r\n");
  start(&s, args);
  raw(&s, req, (size_t)n, out, sizeof(out));
  cr_assert(strncmp(out, "HTTP/1.1 431 ", 13) == 0, "%s", out);
  cr_assert_eq(stop(&s, SIGTERM), 0);
}

Test(guard_server, pipelined_requests_answered_in_order) {
  const char *args[] = {"--rate", "2", "--interval-ms", "60000", NULL};
  static const char reqs[] = "GET /1 HTTP/1.1\r\nHost: x\r\n\r\n"
                             "GET /2 HTTP/1.1\r\nHost: x\r\n\r\n"
                             "GET /3 HTTP/1.1\r\nHost: x\r\n"
                             "Connection: close\r\n\r\n";
  char out[2048];
  const char *p;
  srv_t s;

  start(&s, args);
  raw(&s, reqs, sizeof(reqs) - 1, out, sizeof(out));
  p = strstr(out, "HTTP/1.1 200 ");
  cr_assert_not_null(p, "%s", out);
  p = strstr(p + 1, "HTTP/1.1 200 ");
  cr_assert_not_null(p, "%s", out);
  p = strstr(p + 1, "HTTP/1.1 429 ");
  cr_assert_not_null(p, "%s", out);
  cr_assert_null(strstr(p + 1, "HTTP/1.1 "), "%s", out);
  cr_assert_eq(stop(&s, SIGTERM), 0);
}

/* ---- flags and signals --------------------------------------------------- */

Test(guard_server, bad_flags_exit_2) {
  static const char *const bad[][4] = {
      {"--bogus", NULL},
      {"--rate", "x", NULL},
      {"--rate", "-1", NULL},
      {"--port", "70000", NULL},
      {"--port", NULL},
      {"--interval-ms", "0", NULL},
      {"--key-header", "X Api", NULL},
      {"--key-header", "", NULL},
      {"--trust-proxy", "proxy.example", NULL},
      {"--handler-ms", "99999999999999999999999", NULL},
      {"stray", NULL}};
  char err[2048];
  size_t i;

  for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    cr_assert_eq(run_to_end(bad[i], err, sizeof(err)), 2, "%s %s", bad[i][0],
                 bad[i][1] ? bad[i][1] : "");
    cr_assert_not_null(strstr(err, "guard_server: "), "%s", err);
  }
}

Test(guard_server, help_exits_0) {
  const char *args[] = {"--help", NULL};
  char err[256];

  cr_assert_eq(run_to_end(args, err, sizeof(err)), 0);
}

Test(guard_server, sigterm_and_sigint_exit_0) {
  const char *args[] = {NULL};
  srv_t s;

  start(&s, args);
  cr_assert_eq(get(&s, NULL).status, 200);
  cr_assert_eq(stop(&s, SIGTERM), 0);
  start(&s, args);
  cr_assert_eq(stop(&s, SIGINT), 0);
}

Test(guard_server, sigterm_with_a_request_in_flight_exits_0) {
  const char *args[] = {"--handler-ms", "30000", NULL};
  CURLM *m = curl_multi_init();
  resp_t r;
  CURL *h;
  srv_t s;
  int running = 1, i;

  start(&s, args);
  h = client(&r, s.base);
  curl_multi_add_handle(m, h);
  /* Long enough for the request to reach the server's handler. */
  for (i = 0; i < 5 && running; i++) {
    curl_multi_perform(m, &running);
    curl_multi_poll(m, NULL, 0, 100, NULL);
  }
  cr_assert_eq(running, 1);
  cr_assert_eq(stop(&s, SIGTERM), 0);
  curl_multi_remove_handle(m, h);
  curl_easy_cleanup(h);
  curl_multi_cleanup(m);
}
