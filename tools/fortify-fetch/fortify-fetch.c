/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * fortify-fetch: fetch many URLs concurrently through a resilient pipeline
 * and print one JSON line per URL (docs/fortify-fetch.md is the manual).
 *
 * The tool keeps --concurrency request slots, each a fy_curl_req_t whose
 * easy handle (and with it its connection) is reused for URL after URL:
 * a slot's completion callback prints the URL's line and starts the next
 * URL on the same slot.  Everything after the command line runs on the
 * loop, without a blocking call: stdin is read in full before the loop
 * starts, and output goes through the thread pool (fetch_out.c). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fetch.h"

#define TICK_MS 100 /* progress line period */

typedef struct slot_s {
  fy_curl_req_t req;
  struct app_s *app;
  size_t index; /* the URL in flight */
  uint64_t t0;  /* uv_hrtime() at its start */
  int ready;    /* req initialised */
  int parked;   /* idle until stdout has room (on_out_written) */
} slot_t;

typedef struct app_s {
  uv_loop_t loop;
  fy_ctx_t *ctx;
  fetch_opts_t opts;
  fetch_stack_t stack;
  slot_t *slots;
  unsigned nslots;
  size_t next;     /* the next URL to start */
  unsigned active; /* slots with a call in flight */
  fetch_stats_t st;
  uint64_t end_ns;
  fetch_sink_t out; /* stdout: the JSON lines */
  fetch_sink_t err; /* stderr: the progress line */
  fy_deadline_t tick;
  uv_signal_t sigint;
  int sig_open;
  int loop_open;
  int progress;    /* draw the progress line */
  int stopping;    /* start nothing more */
  int interrupted; /* by SIGINT */
  int finished;
  int internal; /* an internal error: exit status 3 */
  int ctx_closed;
} app_t;

static void on_done(fy_call_t *call, int status);
static void stop(app_t *app);

/* ---- one URL's result ---------------------------------------------------- */

static const char *error_text(const fy_curl_req_t *req, int status, char *buf,
                              size_t len) {
  size_t n;
  if (status == 0)
    return NULL;
  fy_curl_strerror_r(status, buf, len);
  /* curl's own words say which connection failed and how. */
  if (req != NULL && req->attempts > 0 && req->status == status &&
      req->errbuf[0] != '\0' && !FY_IS_EHTTP(status)) {
    n = strlen(buf);
    snprintf(buf + n, len - n, " (%s)", req->errbuf);
  }
  return buf;
}

static const char *breaker_state(app_t *app, const fy_curl_req_t *req) {
  fy_breaker_t *b;
  if (app->stack.hosts == NULL)
    return NULL;
  b = fy_curl_hosts_breaker(app->stack.hosts, fy_curl_req_host(req));
  return b != NULL ? fy_breaker_state_name(fy_breaker_state(b)) : NULL;
}

static uint64_t body_bytes(const fy_curl_req_t *req) {
  curl_off_t n = 0;
  if (curl_easy_getinfo(req->easy, CURLINFO_SIZE_DOWNLOAD_T, &n) != CURLE_OK ||
      n < 0)
    return 0;
  return (uint64_t)n;
}

static void count(app_t *app, const fetch_result_t *r) {
  fetch_stats_t *st = &app->st;
  st->lat_ns[st->done++] = r->elapsed_ns;
  if (r->status == 0)
    st->ok++;
  else
    st->failed++;
  st->attempts += r->attempts;
}

/* Print and count the result of URL |index|, which ran on |sl| (|ran|: a
 * call was started, so the request's fields are this URL's). */
static void record(app_t *app, slot_t *sl, size_t index, int status, int ran) {
  fy_curl_req_t *req = &sl->req;
  fetch_result_t r;
  char err[CURL_ERROR_SIZE + 128];

  memset(&r, 0, sizeof(r));
  r.url = app->opts.urls[index];
  r.index = index;
  r.status = status;
  r.elapsed_ns = uv_hrtime() - sl->t0;
  if (ran && req->attempts > 0) {
    r.attempts = req->attempts;
    r.http_code = req->http_code;
    r.bytes = body_bytes(req);
    r.body = req->body.data;
    r.body_len = req->body.len;
  }
  r.error = error_text(ran ? req : NULL, status, err, sizeof(err));
  r.breaker = breaker_state(app, req);
  count(app, &r);
  fetch_json_line(&app->out.fill, &r, app->opts.body);
  fetch_sink_flush(&app->out);
  /* Nobody reads the results any more (a closed pipe, a full disk). */
  if (app->out.error != 0)
    stop(app);
}

/* ---- slots --------------------------------------------------------------- */

static int start_one(slot_t *sl, size_t index) {
  app_t *app = sl->app;
  int rc;
  sl->index = index;
  sl->t0 = uv_hrtime();
  rc = fy_curl_req_set_url(&sl->req, app->opts.urls[index]);
  if (rc != 0)
    return rc;
  return fy_curl_start(&sl->req, app->stack.pipeline, on_done);
}

/* Start the next URL on |sl|.  A URL refused at once (an open breaker) has
 * its line printed here and the slot takes the one after. */
static void start_next(slot_t *sl) {
  app_t *app = sl->app;
  size_t i;
  int rc;

  while (!app->stopping && app->next < app->opts.nurls) {
    if (fetch_sink_full(&app->out)) {
      sl->parked = 1; /* the reader is behind: wait for it */
      return;
    }
    i = app->next++;
    rc = start_one(sl, i);
    if (rc == 0) {
      app->active++;
      return;
    }
    if (rc == UV_ENOMEM)
      app->internal = 1;
    record(app, sl, i, rc, 0);
  }
}

static void on_ctx_closed(void *obj, void *user_data) {
  (void)obj;
  ((app_t *)user_data)->ctx_closed = 1;
}

/* Every URL has its line (or SIGINT came and nothing is in flight): close
 * everything; the loop ends once the last output is written. */
static void finish(app_t *app) {
  fy_retry_stats_t rs;
  unsigned i;

  app->finished = 1;
  app->end_ns = uv_hrtime();
  fy_retry_stats(app->stack.retry, &rs);
  app->st.retries = rs.retries;
  fy_deadline_stop(&app->tick);
  if (app->sig_open)
    uv_close((uv_handle_t *)&app->sigint, NULL);
  app->sig_open = 0;
  for (i = 0; i < app->nslots; i++)
    if (app->slots[i].ready)
      fy_curl_req_cleanup(&app->slots[i].req);
  fy_ctx_close(app->ctx, on_ctx_closed, app);
}

static void maybe_finish(app_t *app) {
  if (!app->finished && app->active == 0 &&
      (app->stopping || app->next >= app->opts.nurls))
    finish(app);
}

static void on_done(fy_call_t *call, int status) {
  fy_curl_req_t *req = fy_container_of(call, fy_curl_req_t, call);
  slot_t *sl = fy_container_of(req, slot_t, req);
  app_t *app = sl->app;

  app->active--;
  record(app, sl, sl->index, status, 1);
  start_next(sl);
  maybe_finish(app);
}

/* A stdout write has ended: the parked slots go on, or, if stdout is
 * gone, everything stops. */
static void on_out_written(fetch_sink_t *s) {
  app_t *app = s->data;
  unsigned i;

  if (app->finished)
    return; /* the last lines are being written */
  if (s->error != 0)
    stop(app);
  for (i = 0; i < app->nslots && !fetch_sink_full(s); i++) {
    if (app->slots[i].parked) {
      app->slots[i].parked = 0;
      start_next(&app->slots[i]);
    }
  }
  maybe_finish(app);
}

/* ---- progress and SIGINT ------------------------------------------------- */

static void on_tick(fy_deadline_t *d) {
  app_t *app = d->data;
  fy_retry_stats_t rs;

  fy_retry_stats(app->stack.retry, &rs);
  app->st.retries = rs.retries;
  /* A frame is skipped rather than queued behind a slow terminal. */
  if (!app->err.busy) {
    fetch_progress_line(&app->err.fill, &app->st, uv_hrtime());
    fetch_sink_flush(&app->err);
  }
  fy_deadline_start(d, TICK_MS);
}

/* Start nothing more and cancel what is in flight; those calls still
 * complete (UV_ECANCELED) and print their lines. */
static void stop(app_t *app) {
  unsigned i;
  if (app->stopping)
    return;
  app->stopping = 1;
  for (i = 0; i < app->nslots; i++)
    if (fy_call_is_active(&app->slots[i].req.call))
      fy_call_cancel(&app->slots[i].req.call);
}

/* The handler is stopped, so a second SIGINT kills. */
static void on_sigint(uv_signal_t *h, int signum) {
  app_t *app = h->data;
  (void)signum;
  uv_signal_stop(h);
  app->interrupted = 1;
  stop(app);
  maybe_finish(app);
}

static void on_host_state(fy_curl_hosts_t *hosts, const char *host,
                          fy_breaker_state_t from, fy_breaker_state_t to,
                          void *user_data) {
  app_t *app = user_data;
  (void)hosts;
  (void)host;
  (void)from;
  if (to == FY_BREAKER_OPEN)
    app->st.breaker_opens++;
}

/* ---- setup --------------------------------------------------------------- */

static int req_error(const char *flag, const char *value, const char *what,
                     int rc) {
  if (rc == UV_ENOMEM) {
    fprintf(stderr, FETCH_PROG ": out of memory\n");
    return FETCH_EXIT_INTERNAL;
  }
  fprintf(stderr, FETCH_PROG ": %s '", flag);
  fetch_print_quoted(stderr, value, strlen(value), 200);
  fprintf(stderr, "': %s (%s)\n", what, fy_strerror(rc));
  return rc == UV_EINVAL ? FETCH_EXIT_USAGE : FETCH_EXIT_INTERNAL;
}

/* The request options every slot shares. */
static int slot_init(app_t *app, slot_t *sl) {
  const fetch_opts_t *o = &app->opts;
  fy_curl_req_t *req = &sl->req;
  size_t i;
  int rc;

  sl->app = app;
  rc = fy_curl_req_init(app->stack.curl, req);
  if (rc != 0)
    return req_error("request", "init", "cannot create", rc);
  sl->ready = 1;
  if (o->method != NULL && (rc = fy_curl_req_set_method(req, o->method)) != 0)
    return req_error("-X", o->method, "not a method token", rc);
  for (i = 0; i < o->nheaders; i++)
    if ((rc = fy_curl_req_add_header(req, o->headers[i])) != 0)
      return req_error("-H", o->headers[i], "not a header line", rc);
  if (o->data != NULL &&
      (rc = fy_curl_req_set_body(req, o->data, o->data_len)) != 0)
    return req_error("-d", "(body)", "cannot set the body", rc);
  fy_curl_req_set_idempotent(req, o->idempotent);
  return FETCH_EXIT_OK;
}

/* Every URL is checked, with the adapter's own parser, before any is
 * fetched: a typo in line 9000 should not surface after 8999 requests. */
static int check_urls(app_t *app) {
  const fetch_opts_t *o = &app->opts;
  size_t i;
  int rc;
  for (i = 0; i < o->nurls; i++) {
    rc = fy_curl_req_set_url(&app->slots[0].req, o->urls[i]);
    if (rc == UV_ENOMEM)
      return req_error("URL", o->urls[i], "cannot parse", rc);
    if (rc != 0) {
      fprintf(stderr, FETCH_PROG ": invalid URL (index %zu): '", i);
      fetch_print_quoted(stderr, o->urls[i], strlen(o->urls[i]), 200);
      fprintf(stderr, "' (expected scheme://host[:port]/path)\n");
      return FETCH_EXIT_USAGE;
    }
  }
  return FETCH_EXIT_OK;
}

static int make_slots(app_t *app) {
  const fetch_opts_t *o = &app->opts;
  unsigned i;
  int rc;

  app->nslots = o->concurrency < o->nurls ? o->concurrency : (unsigned)o->nurls;
  app->slots = calloc(app->nslots, sizeof(*app->slots));
  app->st.lat_ns = calloc(o->nurls, sizeof(*app->st.lat_ns));
  if (app->slots == NULL || app->st.lat_ns == NULL) {
    fprintf(stderr, FETCH_PROG ": out of memory\n");
    return FETCH_EXIT_INTERNAL;
  }
  for (i = 0; i < app->nslots; i++)
    if ((rc = slot_init(app, &app->slots[i])) != FETCH_EXIT_OK)
      return rc;
  return check_urls(app);
}

static int setup(app_t *app) {
  int rc = uv_loop_init(&app->loop);
  app->loop_open = rc == 0;
  if (rc == 0)
    rc = fy_ctx_new(&app->loop, NULL, &app->ctx);
  if (rc != 0) {
    fprintf(stderr, FETCH_PROG ": cannot start the loop: %s\n",
            fy_strerror(rc));
    return FETCH_EXIT_INTERNAL;
  }
  rc = fetch_stack_new(app->ctx, &app->opts, on_host_state, app, &app->stack);
  if (rc == FETCH_EXIT_OK)
    rc = make_slots(app);
  if (rc != FETCH_EXIT_OK)
    return rc;
  fetch_sink_init(&app->out, &app->loop, STDOUT_FILENO);
  app->out.on_written = on_out_written;
  app->out.data = app;
  fetch_sink_init(&app->err, &app->loop, STDERR_FILENO);
  app->st.total = app->opts.nurls;
  app->progress =
      !app->opts.quiet && !app->opts.no_progress && isatty(STDERR_FILENO);
  fy_deadline_init(app->ctx, &app->tick, on_tick);
  app->tick.data = app;
  if (uv_signal_init(&app->loop, &app->sigint) == 0) {
    app->sig_open = 1;
    app->sigint.data = app;
    uv_signal_start(&app->sigint, on_sigint, SIGINT);
  }
  return FETCH_EXIT_OK;
}

/* After a failed setup: free what exists, through the loop. */
static void unwind(app_t *app) {
  unsigned i;
  if (app->ctx == NULL)
    return;
  for (i = 0; i < app->nslots; i++)
    if (app->slots[i].ready)
      fy_curl_req_cleanup(&app->slots[i].req);
  fy_ctx_close(app->ctx, on_ctx_closed, app);
  uv_run(&app->loop, UV_RUN_DEFAULT);
}

static void run(app_t *app) {
  unsigned i;
  /* The loop's clock, which every deadline reads, was last set by
   * uv_loop_init(): setup time would otherwise shorten the first timeouts. */
  uv_update_time(&app->loop);
  app->st.start_ns = uv_hrtime();
  if (app->progress)
    fy_deadline_start(&app->tick, TICK_MS);
  for (i = 0; i < app->nslots && !app->finished; i++)
    start_next(&app->slots[i]);
  maybe_finish(app);
  uv_run(&app->loop, UV_RUN_DEFAULT);
}

static void summary(app_t *app) {
  fetch_buf_t b = {0};
  if (app->progress)
    fetch_buf_puts(&b, "\r\033[K"); /* erase the progress line */
  if (!app->opts.quiet)
    fetch_summary(&b, &app->st, app->end_ns, app->interrupted);
  if (app->out.error != 0)
    fetch_buf_printf(&b, FETCH_PROG ": cannot write stdout: %s\n",
                     fy_strerror(app->out.error));
  if (b.len > 0)
    fwrite(b.data, 1, b.len, stderr);
  fetch_buf_free(&b);
}

static int exit_status(const app_t *app) {
  if (app->interrupted)
    return FETCH_EXIT_INTERRUPT;
  if (app->internal || app->out.error != 0 || !app->ctx_closed)
    return FETCH_EXIT_INTERNAL;
  return app->st.failed > 0 ? FETCH_EXIT_FAILED : FETCH_EXIT_OK;
}

static int cleanup(app_t *app, int rc) {
  if (app->loop_open && uv_loop_close(&app->loop) != 0) {
    fprintf(stderr, FETCH_PROG ": internal error: handles left open\n");
    rc = FETCH_EXIT_INTERNAL;
  }
  fetch_sink_free(&app->out);
  fetch_sink_free(&app->err);
  free(app->slots);
  free(app->st.lat_ns);
  fetch_args_free(&app->opts);
  return rc;
}

int main(int argc, char **argv) {
  static app_t app;
  int done, rc;

  rc = fetch_args_parse(argc, argv, &app.opts, &done);
  if (done) {
    fetch_args_free(&app.opts);
    return rc;
  }
  /* A reader that goes away must give EPIPE, not kill us mid-line. */
  signal(SIGPIPE, SIG_IGN);
  rc = setup(&app);
  if (rc != FETCH_EXIT_OK) {
    unwind(&app);
    return cleanup(&app, rc);
  }
  run(&app);
  summary(&app);
  return cleanup(&app, exit_status(&app));
}
