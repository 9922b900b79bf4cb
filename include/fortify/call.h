/* Copyright (c) 2026 the fortify authors. MIT licensed. */
#ifndef FORTIFY_CALL_H
#define FORTIFY_CALL_H

#include "fortify/common.h"
#include "fortify/scope.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------
 * Operation: the user's asynchronous work, wrapped by a pipeline.
 *
 * start() begins one attempt.  It returns 0 once the attempt is under way,
 * or a negative code to report that the attempt failed at once (the same as
 * calling fy_attempt_done() with that code; either way the outcome reaches
 * the policies later, never inside start()).
 *
 * cancel() is a request (may be NULL): stop the attempt if possible.  The
 * operation still reports exactly once, normally with UV_ECANCELED; reporting
 * from inside cancel() itself is the ideal (curl's remove_handle is
 * synchronous).
 *
 * Every started attempt reports exactly once with fy_attempt_done().  After
 * that call the attempt pointer is dead.
 * ------------------------------------------------------------------------- */
typedef struct fy_op_s {
  int (*start)(fy_attempt_t *attempt, void *arg);
  void (*cancel)(fy_attempt_t *attempt, void *arg);
} fy_op_t;

/* One attempt of the operation.  Library-allocated, from a freelist. */
struct fy_attempt_s {
  /* public */
  void *data;          /* the operation's own per-attempt pointer */
  /* read-only */
  void *arg;           /* the |arg| given to fy_call_start() */
  fy_call_t *call;     /* NULL once the attempt was abandoned (detached) */
  unsigned index;      /* 0-based attempt number within the call */
  uint64_t deadline;   /* absolute context time (ms) by which the attempt's
                          result is needed, or FY_TIME_NEVER */
};

/* Report the attempt's outcome: 0 or a negative code.  Returns 0, or
 * UV_EALREADY (nothing done) when it already reported. */
FY_EXTERN int fy_attempt_done(fy_attempt_t *attempt, int status);

/* Attach a result to the attempt, before fy_attempt_done().  Ownership
 * passes to the library even on error: a result that does not reach the
 * caller (a late attempt after a timeout, the loser of attempts raced against
 * each other, a failure replaced
 * by a fallback, a result nobody took) is destroyed with |dtor| (may be
 * NULL).  Setting it twice destroys the first. */
FY_EXTERN void fy_attempt_set_result(fy_attempt_t *attempt, void *result,
                                     fy_result_dtor dtor);

/* A hint from the outcome (e.g. an HTTP Retry-After), in milliseconds. */
FY_EXTERN void fy_attempt_set_retry_after(fy_attempt_t *attempt,
                                          uint64_t ms);

/* Milliseconds left until attempt->deadline (0 when passed), or
 * FY_TIME_NEVER.  An HTTP adapter sets its transfer timeout from this. */
FY_EXTERN uint64_t fy_attempt_remaining(const fy_attempt_t *attempt);

/* 1 once cancellation of this attempt was requested. */
FY_EXTERN int fy_attempt_is_cancelled(const fy_attempt_t *attempt);

/* Progress (a chunk of a streaming response arrived); feeds streaming
 * timeouts in the policies above. */
FY_EXTERN void fy_attempt_mark(fy_attempt_t *attempt);

/* ---------------------------------------------------------------------------
 * Call: one execution through a pipeline.  Caller-allocated, like uv_req_t:
 * embed it and recover your struct with fy_container_of().  Nothing is
 * allocated per call in steady state.
 *
 * Rules:
 * - A fy_call_t is zeroed (or was used by a call that completed) before its
 *   first start: fy_call_start() reads its flags to refuse a call that is
 *   still in flight with UV_EBUSY.
 * - fy_call_start() returning an error (a refusal decided before anything
 *   asynchronous started: open circuit, full bulkhead, closed pipeline,
 *   invalid argument, UV_ENOMEM) means the callback is never called; the
 *   detail is filled all the same.
 * - Returning 0 means the callback runs exactly once, never from inside
 *   fy_call_start() or fy_call_cancel().
 * - The memory is the caller's again inside the callback (it may be freed or
 *   reused for a new call there).
 * ------------------------------------------------------------------------- */
typedef void (*fy_call_cb)(fy_call_t *call, int status);

/* Structured detail, readable after completion or after a refusal.  The
 * policy that decided the status writes it; a later attempt's own outcome
 * clears it.  The meaning of |state| and |n| depends on |by_kind| and is
 * given on each pattern's page in docs/. */
typedef struct fy_detail_s {
  int cause;               /* the error behind a policy's decision, or 0 */
  unsigned attempts;       /* attempts of the operation started */
  uint64_t retry_after_ms; /* hint from a refusal or the operation, or 0 */
  uint64_t elapsed_ns;     /* start to completion, in ns, when measured
                              (see "Latency" below); 0 otherwise */
  const char *by_kind;     /* kind of the deciding policy; NULL: operation */
  const char *by_name;     /* its name; valid while the policy lives */
  int state;               /* e.g. breaker state, timeout stage */
  uint64_t n[4];           /* e.g. breaker counts */
  char key[64];            /* e.g. the host key of the curl adapter's
                              per-host policy, sanitised, truncated */
} fy_detail_t;

/* Per-call options (fy_call_start_opts).  Zero means "the default". */
enum {
  /* The operation may safely run more than once (a POST the caller knows
   * to be idempotent).  Policies that re-run work (retry) consult
   * it through their classifiers. */
  FY_CALL_IDEMPOTENT = 1u << 0,
  /* Measure this call's latency into detail.elapsed_ns. */
  FY_CALL_MEASURE = 1u << 1
};

/* Latency.  A call's latency is read from fy_ctx_hrtime(), the one latency
 * clock (uv_hrtime(), or the manual clock), and only where something wants
 * it, because one read costs about as much as a call through a simple
 * pipeline (tens of nanoseconds on a virtual machine's clock source):
 * - detail.elapsed_ns is measured when the call was started with
 *   FY_CALL_MEASURE, when the context was made with measure_calls, or when
 *   a listener of FY_EV_CALL_DONE was registered at the call's start (the
 *   event carries it as latency_ns); otherwise it stays 0;
 * - an attempt's latency (FY_EV_ATTEMPT_DONE's latency_ns) is measured
 *   when a listener of that event was registered at the attempt's start;
 * - a policy that needs latencies (a breaker with a slow-call threshold)
 *   reads the clock itself, only then. */

typedef struct fy_call_opts_s {
  uint64_t timeout_ms; /* overrides the total timeout of the timeout
                          policies on the way; 0: their default */
  unsigned flags;      /* FY_CALL_* */
  fy_scope_t *scope;   /* the cancellation scope the call belongs to
                          (scope.h), or NULL */
  const char *key;     /* the key of the rate limiters on the way that
                          have no key function (limiter.h), |key_len|
                          bytes; must stay valid until the call completes.
                          NULL: the empty key */
  size_t key_len;
} fy_call_opts_t;

struct fy_call_s {
  /* public */
  void *data;
  /* read-only */
  int status;          /* final status, valid in and after the callback */
  fy_detail_t detail;
  fy_call_opts_t opts; /* copied at start */
  /* private */
  fy_call_cb cb;
  fy_pipeline_t *pipeline;
  fy_frame_t *root;
  const fy_op_t *op;
  void *arg;
  uint64_t start_ns;
  fy__qnode_t node;
  fy__qnode_t scope_node; /* in opts.scope's calls */
  unsigned flags;
  void *reserved[4];
};

/* Start |call| through |pipeline| around |op|.  See the rules above.
 * Returns 0 or a negative code (UV_EINVAL, UV_ENOMEM, FY_ECLOSED, or the
 * refusal of a policy such as FY_ECIRCUITOPEN, or UV_ECANCELED in a
 * cancelled scope). */
FY_EXTERN int fy_call_start(fy_call_t *call, fy_pipeline_t *pipeline,
                            const fy_op_t *op, void *arg, fy_call_cb cb);

/* The same with per-call options (|opts| may be NULL; it is copied). */
FY_EXTERN int fy_call_start_opts(fy_call_t *call, fy_pipeline_t *pipeline,
                                 const fy_op_t *op, void *arg,
                                 const fy_call_opts_t *opts, fy_call_cb cb);

/* Request cancellation.  The call still completes through its callback,
 * normally with UV_ECANCELED (with its real outcome if that won the race).
 * Returns 0, UV_EINVAL (not in flight) or UV_EBUSY (already completing). */
FY_EXTERN int fy_call_cancel(fy_call_t *call);

/* 1 while started and not yet delivered. */
FY_EXTERN int fy_call_is_active(const fy_call_t *call);

/* The winning attempt's result, valid only inside the callback, and
 * destroyed when the callback returns unless taken: fy_call_take_result()
 * passes ownership to the caller (|dtor| receives its destructor). */
FY_EXTERN void *fy_call_result(const fy_call_t *call);
FY_EXTERN void *fy_call_take_result(fy_call_t *call, fy_result_dtor *dtor);

/* ---------------------------------------------------------------------------
 * Pipeline: policies composed outermost first, wrapped around operations.
 * Library-allocated; holds a reference on each policy, so one policy (a
 * shared breaker, say) can sit in several pipelines.
 * ------------------------------------------------------------------------- */
#define FY_PIPELINE_MAX 16

/* |n| may be 0 (the operation alone).  Returns 0, UV_EINVAL (NULL policy,
 * n > FY_PIPELINE_MAX, policy of another context), FY_ECLOSED or
 * UV_ENOMEM.  CONSTRUCTOR. */
FY_EXTERN int fy_pipeline_new(fy_ctx_t *ctx, fy_policy_t *const *policies,
                              size_t n, fy_pipeline_t **out);

/* Close asynchronously: new calls are refused with FY_ECLOSED, calls in
 * flight are cancelled and complete, then |cb| runs on a fresh stack, then
 * the memory is gone.  Legal from inside any callback.  NULL is a no-op.
 * Returns 0 or FY_ECLOSED (already closing).  DESTRUCTOR. */
FY_EXTERN int fy_pipeline_close(fy_pipeline_t *pipeline, fy_close_cb cb,
                                void *user_data);

FY_EXTERN size_t fy_pipeline_inflight(const fy_pipeline_t *pipeline);
FY_EXTERN size_t fy_pipeline_size(const fy_pipeline_t *pipeline);
FY_EXTERN fy_ctx_t *fy_pipeline_ctx(const fy_pipeline_t *pipeline);

#ifdef __cplusplus
}
#endif
#endif /* FORTIFY_CALL_H */
