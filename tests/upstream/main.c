/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * fortify-upstream: the test upstream as a standalone program, for trying
 * clients by hand and for benches that want the server in another process.
 * Serves on 127.0.0.1 until SIGINT or SIGTERM. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "upstream.h"

#define MAX_ROUTES 64

static const char usage[] =
    "usage: fortify-upstream [--port N] [--seed N] [--quiet]\n"
    "                        [--route PATH?QUERY]...\n"
    "\n"
    "A scripted HTTP/1.1 server on 127.0.0.1 for testing clients.  Each\n"
    "request is answered as its query string says, for example\n"
    "  /x?fail=0.3&latency=20&jitter=10   /x?status=429&retry_after=2\n"
    "  /x?action=reset   /x?chunked=1&body=100000&chunk_delay=5\n"
    "  POST /echo answers with the request body.\n"
    "\n"
    "  --port N          listen on port N (default 0: an ephemeral port)\n"
    "  --seed N          seed of fail, jitter, slow, action_rate (default 1)\n"
    "  --quiet           no log lines on stderr\n"
    "  --route P?Q       default script Q for path P (repeatable); the\n"
    "                    request's own query overrides it\n"
    "  -h, --help        this text\n"
    "\n"
    "Prints \"listening on http://127.0.0.1:PORT\" on stdout once ready.\n"
    "Exit status: 0 after SIGINT/SIGTERM, 1 when it cannot listen or a route\n"
    "is invalid, 2 on a usage error.  See docs/upstream.md.\n";

typedef struct app_s {
  fy_up_t *up;
  uv_signal_t sigint;
  uv_signal_t sigterm;
  fy_up_stats_t stats;
  int stopping;
} app_t;

static int parse_num(const char *s, unsigned long long max,
                     unsigned long long *out) {
  char *end;
  unsigned long long v;

  if (s == NULL || *s < '0' || *s > '9')
    return -1;
  v = strtoull(s, &end, 10);
  if (*end != '\0' || v > max)
    return -1;
  *out = v;
  return 0;
}

static void on_signal(uv_signal_t *sig, int signum) {
  app_t *app = sig->data;

  (void)signum;
  if (app->stopping)
    return;
  app->stopping = 1;
  fy_up_stats(app->up, &app->stats);
  fy_up_close(app->up, NULL, NULL);
  uv_close((uv_handle_t *)&app->sigint, NULL);
  uv_close((uv_handle_t *)&app->sigterm, NULL);
}

int main(int argc, char **argv) {
  fy_up_opts_t opts;
  app_t app;
  const char *routes[MAX_ROUTES];
  unsigned nroutes = 0;
  unsigned long long v;
  uv_loop_t *loop = uv_default_loop();
  char url[64];
  unsigned i;
  int rc;

  memset(&opts, 0, sizeof(opts));
  memset(&app, 0, sizeof(app));
  for (i = 1; i < (unsigned)argc; i++) {
    const char *a = argv[i];
    const char *val = i + 1 < (unsigned)argc ? argv[i + 1] : NULL;

    if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
      fputs(usage, stdout);
      return 0;
    } else if (strcmp(a, "--quiet") == 0) {
      opts.quiet = 1;
    } else if (strcmp(a, "--port") == 0 && parse_num(val, 65535, &v) == 0) {
      opts.port = (uint16_t)v;
      i++;
    } else if (strcmp(a, "--seed") == 0 &&
               parse_num(val, UINT64_MAX, &v) == 0) {
      opts.seed = v;
      i++;
    } else if (strcmp(a, "--route") == 0 && val != NULL &&
               nroutes < MAX_ROUTES) {
      routes[nroutes++] = val;
      i++;
    } else {
      fprintf(stderr, "fortify-upstream: bad argument '%s'\n\n%s", a, usage);
      return 2;
    }
  }

  rc = fy_up_start(loop, &opts, &app.up);
  if (rc != 0) {
    fprintf(stderr, "fortify-upstream: cannot listen on port %u: %s\n",
            (unsigned)opts.port, uv_strerror(rc));
    uv_run(loop, UV_RUN_DEFAULT);
    uv_loop_close(loop);
    return 1;
  }
  for (i = 0; i < nroutes; i++) {
    char path[256];
    const char *q = strchr(routes[i], '?');
    size_t n = q != NULL ? (size_t)(q - routes[i]) : strlen(routes[i]);

    if (n >= sizeof(path)) {
      rc = UV_EINVAL;
    } else {
      memcpy(path, routes[i], n);
      path[n] = '\0';
      rc = fy_up_route(app.up, path, q != NULL ? q + 1 : "");
    }
    if (rc != 0) {
      fprintf(stderr, "fortify-upstream: bad route '%s': %s\n", routes[i],
              uv_strerror(rc));
      fy_up_close(app.up, NULL, NULL);
      uv_run(loop, UV_RUN_DEFAULT);
      uv_loop_close(loop);
      return 1;
    }
  }

  uv_signal_init(loop, &app.sigint);
  uv_signal_init(loop, &app.sigterm);
  app.sigint.data = &app;
  app.sigterm.data = &app;
  uv_signal_start(&app.sigint, on_signal, SIGINT);
  uv_signal_start(&app.sigterm, on_signal, SIGTERM);

  printf("listening on %s\n", fy_up_base_url(app.up, url, sizeof(url)));
  fflush(stdout);

  uv_run(loop, UV_RUN_DEFAULT);
  uv_loop_close(loop);
  if (!opts.quiet)
    fprintf(stderr,
            "fortify-upstream: %llu connections, %llu requests, "
            "%llu responses (2xx %llu, 4xx %llu, 5xx %llu), %llu actions, "
            "%llu bytes out\n",
            (unsigned long long)app.stats.connections,
            (unsigned long long)app.stats.requests,
            (unsigned long long)app.stats.responses,
            (unsigned long long)app.stats.status_2xx,
            (unsigned long long)app.stats.status_4xx,
            (unsigned long long)app.stats.status_5xx,
            (unsigned long long)app.stats.actions,
            (unsigned long long)app.stats.bytes_out);
  return 0;
}
