/* Copyright (c) 2026 the fortify authors. MIT licensed. */
#ifndef FORTIFY_PRESETS_H
#define FORTIFY_PRESETS_H

#include "fortify/breaker.h"
#include "fortify/bulkhead.h"
#include "fortify/retry.h"
#include "fortify/timeout.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------
 * Presets: the common shapes, built in the library's default order
 *
 *   [bulkhead] -> [total timeout] -> retry -> breaker -> per-try timeout -> op
 *
 * (docs/presets.md explains the order).  A preset owns its policies and its
 * pipeline; fy_preset_close() closes them all.
 * ------------------------------------------------------------------------- */
typedef struct fy_preset_s fy_preset_t;

typedef enum {
  FY_PRESET_HTTP_CLIENT = 0, /* an HTTP API over the network */
  FY_PRESET_RPC = 1,         /* a downstream service: short timeouts */
  FY_PRESET_DATABASE = 2     /* a database query: few, quick retries */
} fy_preset_kind_t;

typedef struct fy_preset_opts_s {
  const char *name;             /* prefix of the policies' names */
  /* Timeouts.  attempt_timeout_ms is required (> 0). */
  uint64_t attempt_timeout_ms;  /* each try */
  uint64_t total_timeout_ms;    /* the whole call, backoffs included;
                                   0: none */
  /* Retry. */
  unsigned max_attempts;        /* tries in total, the first included */
  uint64_t retry_initial_delay_ms;
  uint64_t retry_max_delay_ms;
  fy_retry_jitter_t retry_jitter;
  uint64_t retry_seed;          /* the jitter's PRNG seed; 0 (default):
                                   from uv_hrtime(), see retry.h */
  int require_idempotent;       /* retry only FY_CALL_IDEMPOTENT calls */
  /* Circuit breaker. */
  uint32_t breaker_failures;    /* consecutive failures that open it */
  uint64_t breaker_open_ms;     /* open -> half-open */
  uint32_t breaker_max_requests; /* half-open trials */
  uint64_t breaker_interval_ms; /* closed: count reset period, 0 = never */
  /* Bulkhead, outermost; max_concurrent 0 leaves it out. */
  uint32_t max_concurrent;
  uint32_t max_queue;
  uint64_t queue_timeout_ms;
} fy_preset_opts_t;

/* Fill |opts| with the defaults of |kind| (docs/presets.md has the table).
 * Unknown kinds get the HTTP client's. */
FY_EXTERN void fy_preset_opts_init(fy_preset_opts_t *opts,
                                   fy_preset_kind_t kind);

/* The options of each part of a preset, exactly as fy_preset_new() makes
 * them from a fy_preset_opts_t: for a composition of one's own on the same
 * defaults (the curl adapter's per-host pipeline is one).  The names
 * ("<name>.retry", ...) point into |names|. */
typedef struct fy_preset_parts_s {
  int has_bulkhead;             /* max_concurrent > 0 */
  int has_total;                /* total_timeout_ms > 0 */
  fy_bulkhead_opts_t bulkhead;
  fy_timeout_opts_t total;      /* scope FY_TIMEOUT_TOTAL */
  fy_retry_opts_t retry;
  fy_breaker_opts_t breaker;
  fy_timeout_opts_t per_try;    /* scope FY_TIMEOUT_PER_TRY */
  char names[5][FY_NAME_MAX + 1];
} fy_preset_parts_t;

/* Fill |parts| from |opts| (NULL: the HTTP client's defaults).  Returns 0,
 * or UV_EINVAL when the timeouts cannot make a preset: no per-try timeout,
 * or a total one shorter than one try.  The parts' own options are not
 * checked here: fy_preset_opts_check() does both, and each part's
 * fy_<pattern>_opts_check() checks a part changed afterwards. */
FY_EXTERN int fy_preset_parts(const fy_preset_opts_t *opts,
                              fy_preset_parts_t *parts);

/* Check |opts| as fy_preset_new() does, creating nothing: 0, or UV_EINVAL
 * when |opts| is NULL, fy_preset_parts() refuses the timeouts, or the
 * options it makes for one of the parts are refused by that part's check
 * (fy_bulkhead_opts_check() when max_concurrent > 0,
 * fy_timeout_opts_check() for the total timeout when total_timeout_ms > 0
 * and for the per-try one, fy_retry_opts_check(), fy_breaker_opts_check()).
 * So a value is valid here when the part it configures accepts it: for
 * instance max_attempts in [1, FY_RETRY_ATTEMPTS_MAX], attempt_timeout_ms
 * in [1, FY_TIMEOUT_MAX_MS]. */
FY_EXTERN int fy_preset_opts_check(const fy_preset_opts_t *opts);

/* Build the policies and the pipeline.  |opts| NULL: the HTTP client's
 * defaults.  Returns 0, UV_EINVAL (fy_preset_opts_check() refused |opts|;
 * nothing is created), UV_ENOMEM or FY_ECLOSED; on error nothing usable is
 * returned (policies already made are closed and vanish on the next loop
 * iteration).  CONSTRUCTOR. */
FY_EXTERN int fy_preset_new(fy_ctx_t *ctx, const fy_preset_opts_t *opts,
                            fy_preset_t **out);

/* Close the pipeline and every policy.  Returns 0 when every part could
 * be closed: |cb| runs once all of them have called back (on a later turn
 * of the loop), then the preset is freed.  Returns FY_ECLOSED when the
 * preset was already closed, or when a part was already closing (the
 * context is closing, or the part was closed on its own): the parts still
 * open are closed all the same, but a close that returns an error frees
 * nothing and |cb| never runs; the preset stays valid until the context
 * has finished closing, which frees it.  A preset never closed is freed
 * the same way.  NULL is a no-op.  DESTRUCTOR. */
FY_EXTERN int fy_preset_close(fy_preset_t *preset, fy_close_cb cb,
                              void *user_data);

FY_EXTERN fy_pipeline_t *fy_preset_pipeline(const fy_preset_t *preset);
FY_EXTERN fy_breaker_t *fy_preset_breaker(const fy_preset_t *preset);
FY_EXTERN fy_retry_t *fy_preset_retry(const fy_preset_t *preset);
/* The per-try or the total timeout (NULL when there is none). */
FY_EXTERN fy_timeout_t *fy_preset_timeout(const fy_preset_t *preset,
                                          fy_timeout_scope_t scope);
FY_EXTERN fy_bulkhead_t *fy_preset_bulkhead(const fy_preset_t *preset);

#ifdef __cplusplus
}
#endif
#endif /* FORTIFY_PRESETS_H */
