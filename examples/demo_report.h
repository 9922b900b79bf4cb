/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * The demo's HTML report (docs/demo.md): what examples/demo.c measured, as
 * plain data, and a writer that turns it into one self-contained HTML file
 * with inline SVG charts (no scripts, no external assets). */
#ifndef FY_DEMO_REPORT_H
#define FY_DEMO_REPORT_H

#include <stddef.h>
#include <stdint.h>

#define DEMO_CLIENTS 2 /* 0: bare libcurl, 1: fortify */
#define DEMO_HOSTS 2   /* 0: host A (the one that fails), 1: host B */
#define DEMO_PHASES 4

/* One second of one client's live line. */
typedef struct demo_second_s {
  uint32_t done;     /* requests that completed during the second */
  uint32_t ok;       /* of which succeeded (2xx) */
  uint32_t retries;  /* retries started during the second */
  uint32_t refused;  /* requests failed fast by an open breaker */
  uint32_t p50_us;   /* latency of the completed requests */
  uint32_t p99_us;
} demo_second_t;

/* A breaker state change of one host (fortify's per-host breakers). */
typedef struct demo_transition_s {
  uint32_t t_ms; /* since the start of the workload */
  uint8_t host;
  uint8_t state; /* fy_breaker_state_t */
} demo_transition_t;

typedef struct demo_phase_s {
  const char *name;
  const char *what;                 /* one line for people */
  const char *script[DEMO_HOSTS];   /* the upstream's route query per host */
  uint32_t start_ms, end_ms;
} demo_phase_t;

/* A row of the summary table: a label and one cell per client. */
typedef struct demo_row_s {
  char label[64];
  char cell[DEMO_CLIENTS][40];
} demo_row_t;

typedef struct demo_report_s {
  const char *client_name[DEMO_CLIENTS];
  const char *client_desc[DEMO_CLIENTS];
  const char *host_name[DEMO_HOSTS];    /* "A", "B" */
  const char *host_url[DEMO_HOSTS];
  const char *setup;                    /* one paragraph about the run */
  demo_phase_t phases[DEMO_PHASES];
  uint32_t total_ms;                    /* workload and drain */
  uint32_t workload_ms;                 /* the phases alone */
  /* Per-second lines, |nseconds| of each client. */
  const demo_second_t *seconds[DEMO_CLIENTS];
  size_t nseconds;
  /* Every request's latency in microseconds, sorted ascending. */
  const uint32_t *lat_us[DEMO_CLIENTS];
  size_t nlat[DEMO_CLIENTS];
  /* Breaker transitions in time order; the state at t = 0 is closed. */
  const demo_transition_t *transitions;
  size_t ntransitions;
  /* Summary tables. */
  const demo_row_t *rows;
  size_t nrows;
  const demo_row_t *phase_rows; /* success rate per phase */
  size_t nphase_rows;
} demo_report_t;

/* Write the report to |path|.  Returns 0, or -1 with errno set. */
int demo_report_write(const char *path, const demo_report_t *r);

#endif /* FY_DEMO_REPORT_H */
