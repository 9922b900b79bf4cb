/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * fortify-fetch: declarations shared by its files (docs/fortify-fetch.md is
 * the manual).  The program, not the library: nothing here is API.
 *
 *   fetch_args.c      the command line, the URL list, --help
 *   fetch_pipeline.c  the policies and the pipeline, and which flag a
 *                     policy's UV_EINVAL is about
 *   fetch_out.c       non-blocking output, JSON lines, progress, summary
 *   fortify-fetch.c   main(): the loop, the request slots, SIGINT */
#ifndef FY_FETCH_H
#define FY_FETCH_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "fortify/curl.h"

#define FETCH_PROG "fortify-fetch"

/* Exit statuses. */
enum {
  FETCH_EXIT_OK = 0,         /* every URL succeeded */
  FETCH_EXIT_FAILED = 1,     /* at least one URL failed */
  FETCH_EXIT_USAGE = 2,      /* bad command line or input */
  FETCH_EXIT_INTERNAL = 3,   /* setup failed, out of memory, output lost */
  FETCH_EXIT_INTERRUPT = 130 /* SIGINT */
};

/* ---- options ------------------------------------------------------------- */

/* The parts of the request stack a flag configures; each part validates
 * its own options (fy_<part>_opts_check(), or the curl adapter's
 * constructor). */
typedef enum {
  FETCH_PART_CURL = 0, /* the adapter */
  FETCH_PART_TOTAL,    /* total timeout */
  FETCH_PART_RETRY,
  FETCH_PART_HOSTS,   /* per-host breakers and rate limits */
  FETCH_PART_ATTEMPT, /* per-try timeout */
  FETCH_PART__COUNT
} fetch_part_t;

/* Options of every part, in the form the constructors take. */
typedef struct fetch_cfg_s {
  fy_curl_opts_t curl;
  fy_timeout_opts_t total; /* timeout_ms 0: no total timeout */
  fy_retry_opts_t retry;
  fy_curl_hosts_opts_t hosts; /* .limit points at |limit| */
  fy_timeout_opts_t attempt;
  fy_limiter_opts_t limit; /* every host's, made from the fields below */
  uint64_t rate;           /* --rate: tokens per |rate_ms|; 0: none */
  uint64_t rate_ms;
  uint64_t burst;          /* --burst; 0: the rate */
  int has_rate, has_burst;
} fetch_cfg_t;

/* How a flag's value is written. */
typedef enum {
  FETCH_VAL_NUMBER = 0, /* a decimal integer >= 0 */
  FETCH_VAL_BACKOFF,    /* constant|linear|exponential */
  FETCH_VAL_JITTER,     /* none|full|equal|decorrelated|... */
  FETCH_VAL_RATE        /* N, N/s (the same) or N/m */
} fetch_val_t;

typedef struct fetch_set_s fetch_set_t;

/* A flag whose value a part validates. */
typedef struct fetch_flag_s {
  const char *name; /* "retries": --retries */
  fetch_part_t part;
  fetch_val_t val;
  uint64_t max; /* the largest value its field holds (not the valid range,
                   which the part checks) */
  void (*apply)(fetch_cfg_t *cfg, const fetch_set_t *set);
} fetch_flag_t;

/* One such flag as given on the command line. */
struct fetch_set_s {
  const fetch_flag_t *flag;
  uint64_t value;
  uint64_t per_ms; /* FETCH_VAL_RATE: the interval, 1000 or 60000 */
};

#define FETCH_SETS_MAX 64
#define FETCH_CONCURRENCY_DEFAULT 16u
#define FETCH_CONCURRENCY_MAX 10000u

typedef struct fetch_opts_s {
  unsigned concurrency;
  fetch_set_t sets[FETCH_SETS_MAX];
  unsigned nsets;
  int no_breaker;
  int idempotent;
  int body;  /* add the response body to the JSON line */
  int quiet; /* no progress, no summary */
  int no_progress;
  const char *method;   /* NULL: the adapter's default */
  const char **headers; /* owned array of argv strings */
  size_t nheaders;
  char *data; /* owned copy, or NULL */
  size_t data_len;
  char **urls; /* owned array; strings in argv or stdin_buf */
  size_t nurls;
  char *stdin_buf; /* owned */
  size_t stdin_len;
} fetch_opts_t;

/* The policy flags, NULL-terminated by name. */
extern const fetch_flag_t fetch_flags[];

/* Values of --backoff and --jitter, indexed by fy_retry_backoff_t and
 * fy_retry_jitter_t. */
extern const char *const fetch_backoff_names[3];
extern const char *const fetch_jitter_names[6];

/* Parse the command line (and stdin, when it lists URLs).  Returns
 * FETCH_EXIT_OK with |*done| 0 to go on, or an exit status with |*done| 1
 * (after --help or --version, or an error already reported on stderr). */
int fetch_args_parse(int argc, char **argv, fetch_opts_t *opts, int *done);
void fetch_args_free(fetch_opts_t *opts);

/* Write |s| (|n| bytes) for a terminal: control and non-ASCII bytes as
 * \xHH, at most |max| bytes of it. */
void fetch_print_quoted(FILE *f, const char *s, size_t n, size_t max);

/* ---- the request stack --------------------------------------------------- */

typedef struct fetch_stack_s {
  fy_curl_t *curl;
  fy_timeout_t *total; /* NULL without --timeout */
  fy_retry_t *retry;
  fy_curl_hosts_t *hosts; /* NULL with --no-breaker */
  fy_timeout_t *attempt;
  fy_pipeline_t *pipeline;
} fetch_stack_t;

/* Build the adapter and the pipeline
 *   [total timeout] -> retry -> [per-host limits and breakers]
 *   -> per-try timeout
 * on |ctx|.  |on_state| is told of every host breaker's transitions.
 * Returns FETCH_EXIT_OK, or FETCH_EXIT_USAGE / FETCH_EXIT_INTERNAL after a
 * message on stderr; whatever was created is closed with the context. */
int fetch_stack_new(fy_ctx_t *ctx, const fetch_opts_t *opts,
                    fy_curl_host_state_fn on_state, void *user_data,
                    fetch_stack_t *out);

/* ---- output -------------------------------------------------------------- */

/* A growable byte buffer; |oom| sticks once an allocation failed. */
typedef struct fetch_buf_s {
  char *data;
  size_t len;
  size_t cap;
  int oom;
} fetch_buf_t;

void fetch_buf_put(fetch_buf_t *b, const char *s, size_t n);
void fetch_buf_puts(fetch_buf_t *b, const char *s);
void fetch_buf_printf(fetch_buf_t *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* |s| as a JSON string, quotes included; invalid UTF-8 becomes U+FFFD. */
void fetch_buf_json(fetch_buf_t *b, const char *s, size_t n);
void fetch_buf_free(fetch_buf_t *b);

/* A file descriptor written through the loop's thread pool (uv_fs_write),
 * so that a slow reader never blocks the loop.  Bytes go into |fill|;
 * one write is in flight at a time, the next one takes what accumulated
 * meanwhile.  After an error everything is dropped and |error| is set. */
/* Output waiting behind a write in flight beyond which no URL is started
 * (fetch_sink_full): a slow reader slows the fetching down instead of
 * growing the buffer without bound. */
#define FETCH_SINK_HIGH_WATER (64u * 1024u)

typedef struct fetch_sink_s fetch_sink_t;
/* Called when a write has ended: the sink has room again, or s->error. */
typedef void (*fetch_sink_cb)(fetch_sink_t *s);

struct fetch_sink_s {
  uv_loop_t *loop;
  uv_file fd;
  uv_fs_t req;
  fetch_buf_t fill;
  fetch_buf_t out; /* being written */
  size_t off;      /* bytes of |out| written */
  int busy;
  int error;
  fetch_sink_cb on_written; /* may be NULL */
  void *data;
};

void fetch_sink_init(fetch_sink_t *s, uv_loop_t *loop, uv_file fd);
/* Start writing what was appended to s->fill, unless a write is in
 * flight (its completion takes it). */
void fetch_sink_flush(fetch_sink_t *s);
/* Whether FETCH_SINK_HIGH_WATER bytes wait behind the write in flight. */
int fetch_sink_full(const fetch_sink_t *s);
void fetch_sink_free(fetch_sink_t *s);

/* The outcome of one URL. */
typedef struct fetch_result_s {
  const char *url;
  size_t index;
  int status;
  long http_code;
  unsigned attempts;
  uint64_t elapsed_ns;
  uint64_t bytes;
  const char *error;   /* NULL on success */
  const char *breaker; /* the host's breaker state, or NULL */
  const char *body;    /* with --body; NULL: null */
  size_t body_len;
} fetch_result_t;

void fetch_json_line(fetch_buf_t *b, const fetch_result_t *r, int with_body);

/* Counters for the progress line and the summary. */
typedef struct fetch_stats_s {
  size_t total; /* URLs */
  size_t done;  /* URLs with a result */
  size_t ok;
  size_t failed;
  uint64_t attempts;
  uint64_t retries; /* the retry policy's, live */
  uint64_t breaker_opens;
  uint64_t start_ns;
  uint64_t *lat_ns; /* one per result, |done| of them */
} fetch_stats_t;

/* "\r[####----] 12/100 ok 11 failed 1 retries 2 85.3 req/s" + erase. */
void fetch_progress_line(fetch_buf_t *b, const fetch_stats_t *st,
                         uint64_t now_ns);
/* The closing report; sorts st->lat_ns. */
void fetch_summary(fetch_buf_t *b, fetch_stats_t *st, uint64_t now_ns,
                   int interrupted);

#endif /* FY_FETCH_H */
