/* Copyright (c) 2026 the fortify authors. MIT licensed. */
#ifndef FORTIFY_FALLBACK_H
#define FORTIFY_FALLBACK_H

#include "fortify/policy.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------
 * Fallback: when the layers below fail (as should_fallback classifies it),
 * run an alternative operation and answer with its outcome instead.  The
 * fallback operation is an ordinary fy_op_t: it may be asynchronous, or
 * report inside its own start.  See docs/fallback.md.
 *
 * Outcomes, once the fallback ran (detail.by_kind is "fallback"):
 * - it succeeded: status 0, its result is the call's result, and
 *   detail.cause holds the primary's error (the primary's result, if any,
 *   is destroyed);
 * - it failed: status FY_EFALLBACK, detail.cause = the primary's error,
 *   detail.state = the fallback's own error;
 * - the call was cancelled meanwhile: the fallback is cancelled and the
 *   call completes with UV_ECANCELED.
 * While the fallback operation runs, its attempt can read the primary's
 * error from attempt->call->detail.cause.
 * ------------------------------------------------------------------------- */
typedef struct fy_fallback_s fy_fallback_t;

/* The fallback is about to run because the primary ended with
 * |primary_status|.  May call back into the library, including closing the
 * fallback or the pipeline. */
typedef void (*fy_fallback_cb)(int primary_status, void *user_data);

typedef struct fy_fallback_opts_s {
  const fy_op_t *op;  /* the fallback operation: required (start != NULL) */
  void *arg;          /* its |arg| */
  /* The fallback runs when this says FY_OUTCOME_FAILURE for the primary's
   * status.  Default fy_classify_default: every error except
   * UV_ECANCELED, the library's own refusals included. */
  fy_classify_fn should_fallback;
  fy_fallback_cb on_fallback; /* optional */
  void *user_data;    /* passed to should_fallback and on_fallback */
  const char *name;   /* optional, copied */
} fy_fallback_opts_t;

/* Fill |opts| with the defaults (no operation: set op before _new). */
FY_EXTERN void fy_fallback_opts_init(fy_fallback_opts_t *opts);

/* Check |opts| as fy_fallback_new() does, creating nothing: 0, or
 * UV_EINVAL when |opts| is NULL (there is no default operation), op is
 * NULL or op->start is NULL.  should_fallback NULL is valid (the default);
 * the other fields are not checked. */
FY_EXTERN int fy_fallback_opts_check(const fy_fallback_opts_t *opts);

/* Create a fallback.  Returns 0, UV_EINVAL (NULL ctx, or
 * fy_fallback_opts_check() refused |opts|; nothing is created and *out is
 * NULL), UV_ENOMEM or FY_ECLOSED (context closing).  CONSTRUCTOR. */
FY_EXTERN int fy_fallback_new(fy_ctx_t *ctx, const fy_fallback_opts_t *opts,
                              fy_fallback_t **out);

/* The policy to put in pipelines. */
FY_EXTERN fy_policy_t *fy_fallback_policy(fy_fallback_t *fb);

/* Close asynchronously (fy_policy_close): calls in flight are cancelled,
 * then |cb| runs with |fb| as its object.  NULL is a no-op.  Returns 0 or
 * FY_ECLOSED.  DESTRUCTOR. */
FY_EXTERN int fy_fallback_close(fy_fallback_t *fb, fy_close_cb cb,
                                void *user_data);

#ifdef __cplusplus
}
#endif
#endif /* FORTIFY_FALLBACK_H */
