/* Copyright (c) 2026 the fortify authors. MIT licensed. */
#ifndef FORTIFY_SCOPE_H
#define FORTIFY_SCOPE_H

#include "fortify/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------
 * Cancellation scope: one switch for many calls, as an AbortSignal or a Go
 * context is used.  A server makes one per incoming request, passes it to
 * every call it starts for that request (fy_call_opts_t.scope), and cancels
 * it when the client goes away: every call still in the scope is cancelled
 * (each completes through its callback, normally with UV_ECANCELED), and a
 * call started in a cancelled scope is refused at once with UV_ECANCELED
 * and runs nothing: no attempt, no policy sees it, no fallback.
 *
 * A scope may have a parent: cancelling the parent cancels it too, and a
 * scope made under a cancelled parent starts cancelled.
 *
 * Caller-allocated and embeddable, like a uv_req_t; nothing is allocated.
 * Loop thread only, as everything in fortify.  A scope must stay alive
 * while calls or child scopes are in it: fy_scope_fini() tells.
 * ------------------------------------------------------------------------- */
typedef struct fy_scope_s fy_scope_t;

struct fy_scope_s {
  /* public */
  void *data;
  /* private */
  fy__qnode_t calls;    /* calls in flight started in this scope */
  fy__qnode_t children; /* child scopes */
  fy__qnode_t node;     /* in the parent's children */
  fy_scope_t *parent;
  unsigned flags;
};

/* Initialise |scope|, under |parent| (NULL: none).  Returns 0, or
 * UV_EINVAL when |scope| is NULL or is |parent|. */
FY_EXTERN int fy_scope_init(fy_scope_t *scope, fy_scope_t *parent);

/* Cancel the scope, its child scopes and every call in them.  Returns 0,
 * or UV_EALREADY when it was cancelled already (nothing done), or
 * UV_EINVAL.  Legal from inside any callback; no completion callback runs
 * inside this function. */
FY_EXTERN int fy_scope_cancel(fy_scope_t *scope);

/* 1 once the scope (or one of its ancestors) was cancelled. */
FY_EXTERN int fy_scope_is_cancelled(const fy_scope_t *scope);

/* Calls in flight in this scope (not counting child scopes). */
FY_EXTERN size_t fy_scope_calls(const fy_scope_t *scope);

/* Detach |scope| from its parent, so that its memory may be reused.
 * Returns 0, or UV_EBUSY (nothing done) while calls or child scopes are in
 * it.  NULL is a no-op. */
FY_EXTERN int fy_scope_fini(fy_scope_t *scope);

#ifdef __cplusplus
}
#endif
#endif /* FORTIFY_SCOPE_H */
