/* Copyright (c) 2026 the fortify authors. MIT licensed. */
#ifndef FORTIFY_BREAKER_H
#define FORTIFY_BREAKER_H

#include "fortify/policy.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------
 * Circuit breaker.
 *
 * Stops calling a dependency that keeps failing, then lets a few trial calls
 * through to see whether it recovered.  Three states:
 *
 *   closed     calls pass; outcomes are counted.  When the trip rules fire
 *              (by default 5 consecutive failures) the breaker opens.
 *   open       calls are refused with FY_ECIRCUITOPEN.  After the open
 *              duration a deadline moves it to half-open, with or without
 *              traffic.
 *   half-open  at most max_requests trial calls are in flight at once.
 *              max_requests successes close it; one failure re-opens it.
 *
 * Usable three ways: as a pipeline stage (fy_breaker_policy()), through the
 * synchronous acquire/record API with no pipeline at all, or both at once.
 * Everything runs on the loop thread.  See docs/breaker.md.
 * ------------------------------------------------------------------------- */
typedef struct fy_breaker_s fy_breaker_t;

/* Values are ABI (they travel in events and in fy_detail_t.state). */
typedef enum {
  FY_BREAKER_CLOSED = 0,
  FY_BREAKER_OPEN = 1,
  FY_BREAKER_HALF_OPEN = 2
} fy_breaker_state_t;

/* Operator modes.  Only NORMAL and METRICS_ONLY run the state machine. */
typedef enum {
  FY_BREAKER_NORMAL = 0,     /* the state machine decides */
  FY_BREAKER_FORCED_OPEN,    /* refuse every call; reads as open */
  FY_BREAKER_FORCED_CLOSED,  /* admit every call and count it, never trip */
  FY_BREAKER_DISABLED,       /* admit every call, count nothing */
  FY_BREAKER_METRICS_ONLY,   /* dry run: the state machine runs and emits
                                its events, but no call is ever refused */
  FY_BREAKER_MODE__COUNT
} fy_breaker_mode_t;

/* Where failure and slow-call rates come from. */
typedef enum {
  FY_BREAKER_WINDOW_NONE = 0, /* no rates: only the trip predicate over
                                 the period's counts */
  FY_BREAKER_WINDOW_COUNT,    /* the last window_calls outcomes */
  FY_BREAKER_WINDOW_TIME,     /* the outcomes of the last window_ms */
  FY_BREAKER_WINDOW__COUNT
} fy_breaker_window_t;

/* Counts.  The first six, slow calls included, are those of the current
 * period, which starts at every state change, at
 * fy_breaker_reset() and, while closed, every interval_ms.  The window_*
 * fields are the sliding window's totals (0 without a window).  All 64-bit:
 * they never wrap in practice. */
typedef struct fy_breaker_counts_s {
  uint64_t requests;              /* outcomes counted (successes+failures) */
  uint64_t total_successes;
  uint64_t total_failures;
  uint64_t consecutive_successes;
  uint64_t consecutive_failures;
  uint64_t total_slow;            /* outcomes slower than slow_call_ms */
  uint64_t window_calls;
  uint64_t window_failures;
  uint64_t window_slow;
  uint64_t inflight;              /* permits held now (half-open: trials) */
} fy_breaker_counts_t;

/* Trip predicate: return non-zero to open the breaker.  Consulted in the
 * closed state after each counted failure.  |counts| is a copy; the
 * predicate may call back into the breaker (the decision is dropped if the
 * breaker changed state meanwhile). */
typedef int (*fy_breaker_trip_fn)(const fy_breaker_counts_t *counts,
                                  void *user_data);

/* State change notification, delivered synchronously, in order, never
 * dropped.  It may call back into the breaker, close it, or close the
 * context: transitions it causes are delivered after it returns. */
typedef void (*fy_breaker_state_fn)(fy_breaker_state_t from,
                                    fy_breaker_state_t to, void *user_data);

/* Limits on option values (beyond them fy_breaker_new() says UV_EINVAL). */
#define FY_BREAKER_DURATION_MAX ((uint64_t)1 << 42) /* ms, about 139 years */
#define FY_BREAKER_WINDOW_CALLS_MAX (1u << 20)
#define FY_BREAKER_BUCKETS_MAX 1024u
#define FY_BREAKER_MULTIPLIER_MAX 1000.0

typedef struct fy_breaker_opts_s {
  const char *name;               /* copied; NULL: "" */

  /* Trials, period, open duration, trip predicate and callbacks. */
  uint32_t max_requests;          /* trial permits in half-open and the
                                     successes that close it; 0 -> 1 */
  uint64_t interval_ms;           /* closed: reset the counts this often;
                                     0 = never (default) */
  uint64_t open_ms;               /* open -> half-open after this long;
                                     0 -> 60000 (default 60000) */
  fy_breaker_trip_fn ready_to_trip; /* NULL: consecutive_failures >=
                                       failure_threshold */
  uint32_t failure_threshold;     /* the default predicate's threshold;
                                     0 turns it off (default 5) */
  fy_breaker_state_fn on_state_change; /* optional */
  fy_classify_fn classify;        /* NULL: fy_classify_default (0 success,
                                     UV_ECANCELED neither, else failure) */
  void *user_data;                /* given to the three callbacks above */

  /* Sliding window and rate rules (they apply only with a window). */
  fy_breaker_window_t window;     /* default NONE */
  uint32_t window_calls;          /* COUNT: 1..FY_BREAKER_WINDOW_CALLS_MAX
                                     (default 100) */
  uint64_t window_ms;             /* TIME: window length (default 10000) */
  uint32_t window_buckets;        /* TIME: 1..FY_BREAKER_BUCKETS_MAX and
                                     <= window_ms (default 10) */
  uint32_t minimum_calls;         /* rates are judged from this many calls
                                     in the window; 0 -> 1 (default 100) */
  double failure_rate;            /* percent, (0, 100] (default 50) */
  double slow_call_rate;          /* percent, (0, 100] (default 100) */
  uint64_t slow_call_ms;          /* a call is slow when its latency is
                                     over this; 0 = no call is slow
                                     (default 0) */

  /* Growing open duration across consecutive trips. */
  double open_multiplier;         /* [1, FY_BREAKER_MULTIPLIER_MAX]
                                     (default 1: fixed) */
  uint64_t open_max_ms;           /* cap; 0 = FY_BREAKER_DURATION_MAX, else
                                     >= open_ms (default 0) */

  fy_breaker_mode_t mode;         /* initial mode (default NORMAL) */
} fy_breaker_opts_t;

/* A permit of the synchronous API.  Caller-allocated; its fields are
 * private.  A zeroed permit is inert (record and release ignore it). */
typedef struct fy_breaker_permit_s {
  /* private */
  uint64_t generation;
  uint64_t start_ns;
  unsigned kind;
} fy_breaker_permit_t;

/* Fill |opts| with the defaults documented above. */
FY_EXTERN void fy_breaker_opts_init(fy_breaker_opts_t *opts);

/* Check |opts| as fy_breaker_new() does, creating nothing: 0, or UV_EINVAL
 * when |opts| is NULL, mode or window is unknown, a duration (interval_ms,
 * open_ms, slow_call_ms, open_max_ms) is above FY_BREAKER_DURATION_MAX,
 * open_max_ms is set and below open_ms, a rate is NaN or outside
 * (0, 100], open_multiplier is NaN or outside [1, FY_BREAKER_MULTIPLIER_MAX],
 * or the selected window's size is out of range (COUNT: window_calls;
 * TIME: window_ms, window_buckets).  The fields of the window not selected,
 * the thresholds, the callbacks and the name are not checked. */
FY_EXTERN int fy_breaker_opts_check(const fy_breaker_opts_t *opts);

/* Create a breaker.  |opts| NULL means the defaults; it is copied.  Returns
 * 0, UV_EINVAL (fy_breaker_opts_check() refused |opts|: nothing is created
 * and *out is NULL), UV_ENOMEM or FY_ECLOSED (context closing).
 * CONSTRUCTOR. */
FY_EXTERN int fy_breaker_new(fy_ctx_t *ctx, const fy_breaker_opts_t *opts,
                             fy_breaker_t **out);

/* The policy to put in pipelines (valid as long as the breaker). */
FY_EXTERN fy_policy_t *fy_breaker_policy(fy_breaker_t *breaker);

/* Close asynchronously (fy_policy_close): calls in flight through its
 * pipelines complete with UV_ECANCELED, then |cb| runs with |breaker| as
 * its object.  From then on no callback of the breaker runs.  Returns 0 or
 * FY_ECLOSED.  NULL is a no-op.  DESTRUCTOR. */
FY_EXTERN int fy_breaker_close(fy_breaker_t *breaker, fy_close_cb cb,
                               void *user_data);

/* ---- synchronous two-step API ------------------------------------------ */

/* Ask to make one call.  Returns 0 (|permit| admitted: report it with
 * fy_breaker_record() or fy_breaker_release()), FY_ECIRCUITOPEN (refused;
 * |detail| filled if not NULL: by_kind "breaker", by_name, state,
 * retry_after_ms, n[]), FY_ECLOSED, or UV_EINVAL. */
FY_EXTERN int fy_breaker_acquire(fy_breaker_t *breaker,
                                 fy_breaker_permit_t *permit,
                                 fy_detail_t *detail);

/* Report the outcome of an admitted call: |status| goes through the
 * classifier; the latency is measured from the acquire.  A permit from
 * before a state change or reset is ignored (generation guard).  The permit
 * is inert afterwards. */
FY_EXTERN void fy_breaker_record(fy_breaker_t *breaker,
                                 fy_breaker_permit_t *permit, int status);

/* Give a permit back without an outcome (the call did not run, or its
 * outcome must count as neither success nor failure). */
FY_EXTERN void fy_breaker_release(fy_breaker_t *breaker,
                                  fy_breaker_permit_t *permit);

/* ---- inspection and control -------------------------------------------- */

/* The state as callers see it (a forced mode overrides the machine).  May
 * move an overdue open breaker to half-open (and notify). */
FY_EXTERN fy_breaker_state_t fy_breaker_state(fy_breaker_t *breaker);
FY_EXTERN void fy_breaker_counts(fy_breaker_t *breaker,
                                 fy_breaker_counts_t *out);

/* Change the operator mode.  Entering or leaving FORCED_OPEN,
 * FORCED_CLOSED or DISABLED restarts the machine closed with fresh counts;
 * NORMAL <-> METRICS_ONLY keeps it.  A change of the visible state is
 * notified.  Returns 0, UV_EINVAL or FY_ECLOSED. */
FY_EXTERN int fy_breaker_set_mode(fy_breaker_t *breaker,
                                  fy_breaker_mode_t mode);
FY_EXTERN fy_breaker_mode_t fy_breaker_mode(const fy_breaker_t *breaker);

/* Back to closed with fresh counts and the base open duration; calls in
 * flight are forgotten.  Notifies only if the visible state changes (a
 * closed breaker notifies nothing).  The mode is kept.  Returns 0 or
 * FY_ECLOSED. */
FY_EXTERN int fy_breaker_reset(fy_breaker_t *breaker);

/* "closed", "open", "half-open", or "unknown". */
FY_EXTERN const char *fy_breaker_state_name(fy_breaker_state_t state);
/* "normal", "forced-open", "forced-closed", "disabled", "metrics-only", or
 * "unknown". */
FY_EXTERN const char *fy_breaker_mode_name(fy_breaker_mode_t mode);

#ifdef __cplusplus
}
#endif
#endif /* FORTIFY_BREAKER_H */
