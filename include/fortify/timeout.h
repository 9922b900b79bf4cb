/* Copyright (c) 2026 the fortify authors. MIT licensed. */
#ifndef FORTIFY_TIMEOUT_H
#define FORTIFY_TIMEOUT_H

#include "fortify/ctx.h"
#include "fortify/policy.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------
 * Timeout: total, per-attempt and streaming (first-byte, idle) limits.
 *
 * When a limit expires the operation below is cancelled through its cancel
 * hook and abandoned (its late outcome and result are discarded and freed),
 * and the call completes on time with UV_ETIMEDOUT.  The deadline is passed
 * down, so the operation sees it as attempt->deadline and
 * fy_attempt_remaining().  An expiry that belongs to an enclosing deadline
 * (an outer timeout, a total budget) completes with FY_EDEADLINE instead.
 * See docs/timeout.md.
 * ------------------------------------------------------------------------- */
typedef struct fy_timeout_s fy_timeout_t;
typedef struct fy_timeout_watch_s fy_timeout_watch_t;

/* Default total limit filled in by fy_timeout_opts_init(), in ms. */
#define FY_TIMEOUT_DEFAULT_MS 30000u
/* Largest accepted limit: 30 days, in ms.  Anything longer is a unit
 * mistake (seconds or microseconds taken for milliseconds). */
#define FY_TIMEOUT_MAX_MS (30ull * 24u * 60u * 60u * 1000u)

/* Where the policy sits, which decides whether the per-call override
 * (fy_call_opts_t.timeout_ms) applies. */
typedef enum {
  FY_TIMEOUT_TOTAL = 0,  /* outside retry: bounds the whole call; the
                            per-call override replaces timeout_ms */
  FY_TIMEOUT_PER_TRY = 1 /* inside retry: bounds each attempt; the per-call
                            override does not apply */
} fy_timeout_scope_t;

/* Which limit fired: fy_detail_t.state, the event's value, and the stage
 * argument of the callbacks.  Numbers are ABI. */
typedef enum {
  FY_TIMEOUT_STAGE_NONE = 0,       /* nothing fired (close, cancel) */
  FY_TIMEOUT_STAGE_TOTAL = 1,      /* timeout_ms (or the override) */
  FY_TIMEOUT_STAGE_FIRST_BYTE = 2, /* no fy_attempt_mark() in time */
  FY_TIMEOUT_STAGE_IDLE = 3,       /* too long since start / last mark */
  FY_TIMEOUT_STAGE_DEADLINE = 4    /* the enclosing deadline, earlier than
                                      every limit of this policy */
} fy_timeout_stage_t;

/* Called when one of this policy's own limits fires (never for
 * FY_TIMEOUT_STAGE_DEADLINE, which is the enclosing policy's timeout).
 * |call| is the call concerned, NULL for a standalone watch.  |elapsed_ms|
 * is measured when the limit fires.  It runs before the call's callback;
 * it may call back into the library, including closing this policy, the
 * pipeline or the context. */
typedef void (*fy_timeout_cb)(fy_timeout_t *timeout, fy_call_t *call,
                              fy_timeout_stage_t stage, uint64_t elapsed_ms,
                              uint64_t limit_ms, void *user_data);

typedef struct fy_timeout_opts_s {
  /* Total limit in ms, from the start of this layer; 0: off (then at least
   * one streaming limit must be set).  Default FY_TIMEOUT_DEFAULT_MS.
   * At most FY_TIMEOUT_MAX_MS. */
  uint64_t timeout_ms;
  /* Streaming: limit in ms until the first fy_attempt_mark(); 0: off
   * (the default).  At most FY_TIMEOUT_MAX_MS. */
  uint64_t first_byte_ms;
  /* Streaming: limit in ms between marks, armed from the start; 0: off
   * (the default).  At most FY_TIMEOUT_MAX_MS. */
  uint64_t idle_ms;
  fy_timeout_scope_t scope; /* default FY_TIMEOUT_TOTAL */
  fy_timeout_cb on_timeout; /* may be NULL (the default) */
  void *user_data;          /* for on_timeout */
  const char *name;         /* copied; NULL: "" */
} fy_timeout_opts_t;

/* Fill |opts| with the defaults above. */
FY_EXTERN void fy_timeout_opts_init(fy_timeout_opts_t *opts);

/* Check |opts| as fy_timeout_new() does, creating nothing: 0, or UV_EINVAL
 * when |opts| is NULL, a limit is above FY_TIMEOUT_MAX_MS (a negative
 * number stored in one is), all three limits are 0 (a timeout that can
 * never fire), or scope is unknown.  Callbacks and name are not checked. */
FY_EXTERN int fy_timeout_opts_check(const fy_timeout_opts_t *opts);

/* Create a timeout policy.  |opts| NULL: the defaults.  Returns 0, UV_EINVAL
 * (NULL ctx or out, or fy_timeout_opts_check() refused |opts|), UV_ENOMEM
 * or FY_ECLOSED (context closing); on error nothing is created and *out is
 * NULL.  CONSTRUCTOR. */
FY_EXTERN int fy_timeout_new(fy_ctx_t *ctx, const fy_timeout_opts_t *opts,
                             fy_timeout_t **out);

/* The policy, to put in pipelines. */
FY_EXTERN fy_policy_t *fy_timeout_policy(fy_timeout_t *timeout);

/* Close asynchronously (see fy_policy_close): calls in flight complete with
 * UV_ECANCELED, active watches are called back with UV_ECANCELED, then |cb|
 * runs with |timeout| as its object.  NULL is a no-op.  Returns 0 or
 * FY_ECLOSED.  DESTRUCTOR. */
FY_EXTERN int fy_timeout_close(fy_timeout_t *timeout, fy_close_cb cb,
                               void *user_data);

/* "none", "total", "first_byte", "idle", "deadline"; "unknown" otherwise. */
FY_EXTERN const char *fy_timeout_stage_name(fy_timeout_stage_t stage);

/* ---------------------------------------------------------------------------
 * Standalone watch: the same limits around work that does not go through a
 * pipeline (a server's request handler, say).  Caller-allocated and
 * embeddable; nothing is allocated.  The watch does not cancel anything by
 * itself: its callback does what expiry means for the caller.
 * ------------------------------------------------------------------------- */

/* |status| is UV_ETIMEDOUT when a limit fired (|stage| says which), or
 * UV_ECANCELED with FY_TIMEOUT_STAGE_NONE when the policy closed.  Runs once
 * per start, from the loop; the watch is inactive (and its memory the
 * caller's) during the callback, which may start it again. */
typedef void (*fy_timeout_watch_cb)(fy_timeout_watch_t *watch, int status,
                                    fy_timeout_stage_t stage,
                                    uint64_t elapsed_ms, uint64_t limit_ms,
                                    void *user_data);

/* Internal type, do not use: the pure state machine (src/timeout.h). */
typedef struct fy__timeout_sm_s {
  uint64_t start;         /* when the limits were armed */
  uint64_t total_at;      /* absolute instants, FY_TIME_NEVER when off */
  uint64_t first_byte_at; /* FY_TIME_NEVER once a mark arrived */
  uint64_t idle_at;
  uint64_t parent_at;     /* the enclosing deadline */
  uint64_t total_ms;
  uint64_t first_byte_ms;
  uint64_t idle_ms;
  uint64_t marks;
} fy__timeout_sm_t;

struct fy_timeout_watch_s {
  /* public */
  void *data;
  /* private */
  fy_deadline_t deadline;
  fy__qnode_t node;
  fy_timeout_t *timeout;
  fy_timeout_watch_cb cb;
  void *user_data;
  fy__timeout_sm_t sm;
  int active;
};

/* Start watching with |timeout|'s limits; |timeout_ms| overrides the total
 * limit (0: the policy's), whatever the policy's scope.  |watch| needs no
 * initialisation but must not be active.  Returns 0, UV_EINVAL (NULL
 * argument, |timeout_ms| above FY_TIMEOUT_MAX_MS) or FY_ECLOSED (policy
 * closing). */
FY_EXTERN int fy_timeout_watch_start(fy_timeout_t *timeout,
                                     fy_timeout_watch_t *watch,
                                     uint64_t timeout_ms,
                                     fy_timeout_watch_cb cb,
                                     void *user_data);
/* Progress: disarms first-byte, restarts idle.  No-op when inactive. */
FY_EXTERN void fy_timeout_watch_mark(fy_timeout_watch_t *watch);
/* Stop; the callback will not run.  Idempotent. */
FY_EXTERN void fy_timeout_watch_stop(fy_timeout_watch_t *watch);
FY_EXTERN int fy_timeout_watch_is_active(const fy_timeout_watch_t *watch);
/* Ms left until the total limit (0 when passed), FY_TIME_NEVER when no
 * total limit or inactive. */
FY_EXTERN uint64_t fy_timeout_watch_remaining(const fy_timeout_watch_t *watch);

#ifdef __cplusplus
}
#endif
#endif /* FORTIFY_TIMEOUT_H */
