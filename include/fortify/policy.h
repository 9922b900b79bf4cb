/* Copyright (c) 2026 the fortify authors. MIT licensed. */
#ifndef FORTIFY_POLICY_H
#define FORTIFY_POLICY_H

#include "fortify/common.h"
#include "fortify/call.h"
#include "fortify/events.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------
 * Writing a policy.
 *
 * A policy is a long-lived object, and comes in one of two shapes, or both:
 *
 * - An admission layer (a breaker, a bulkhead with a free slot) decides when
 *   a call reaches it and counts the outcome when the work below it has
 *   finished.  It implements admit / settle / release and keeps what it
 *   needs between the two (a permit) in a token of vtable->token_size bytes
 *   that the core places in the call's own memory.  No frame is made for
 *   it: the core runs consecutive admission layers in a loop.
 * - A frame layer (a timeout, a fallback; an admission layer at the moment
 *   it must make a call wait, or a retry at the moment a try failed) gets a
 *   frame per invocation: its
 *   per-invocation state (vtable->frame_size bytes, zeroed, from the
 *   context's freelists).  A frame reaches the layer below by spawning
 *   children (a retry spawns one after another; a policy may also race
 *   several at once);
 *   the operation's attempt is the innermost frame.
 *
 * Admission hooks:
 * admit       decide for |call|, whose work is being started under the
 *             frame |parent| (NULL at the top).  Return 0 to let it through
 *             (the token is then the policy's until settle or release; it
 *             is not zeroed first), a negative code to refuse it (fill the
 *             detail with fy_call_verdict()), or FY_ADMIT_WAIT when the
 *             call must wait: the core then makes a frame for this layer
 *             and calls start() on it.
 * settle      the work below finished with |status| (also a late outcome,
 *             after a timeout above gave up on it): count it, release the
 *             permit, return 0.  Or return FY_ADMIT_WAIT to take the
 *             outcome over in a frame: the core makes a frame for this
 *             layer in the work's place and hands it the outcome through
 *             child_done(), as if it had spawned the work (a retry that
 *             must retry).  If no memory is left for the frame, the outcome
 *             goes on up unchanged.
 * release     a layer below refused at once with |status|, so nothing ran:
 *             give the permit back without counting anything, return 0.
 *             Or return FY_ADMIT_WAIT to take the refusal over in a frame:
 *             the core makes one and calls child_done() with a NULL child
 *             and |status|; a frame finished inside that call is a refusal
 *             (its status is returned at once), otherwise it goes on.
 * Exactly one of settle and release runs for every admitted token.  A
 * policy that answers FY_ADMIT_WAIT anywhere needs frame hooks.
 * Closing an admission layer cancels the work below every token it holds,
 * as closing a frame layer cancels its frames.
 *
 * The core guarantees, so that hooks never have to defend against
 * re-entrancy:
 * - child_done() is never called while another hook of the same frame is on
 *   the stack (start, cancel, child_done, progress, deadline): such an outcome
 *   is queued and delivered from a fresh stack.
 * - fy_frame_done() from inside a hook takes effect when the hook returns.
 * - A frame lives until its outcome has been delivered to its parent.
 *
 * Hooks:
 * start       begin the invocation.  Return 0 when under way, or a negative
 *             code to refuse at once (then it must not have spawned
 *             anything still alive, and child_done never runs for it).
 *             Required, unless the policy is an admission layer whose
 *             admit never answers FY_ADMIT_WAIT.
 * child_done  a child finished with |status|.  |child| is valid during the
 *             hook only; adopt its result to pass it upwards.  NULL when
 *             the frame was made by release() (see above).  Required for
 *             every policy that can have a frame.
 * cancel      cancellation was requested.  Default: cancel every child.
 * progress    a streaming attempt below reported progress.  Optional.
 * deadline    the frame's deadline (fy_frame_arm) fired.  Optional.
 * close       the policy is closing: wind down waiting frames (e.g. complete
 *             queued ones with UV_ECANCELED).  New frames are already refused
 *             with FY_ECLOSED by the core.  Optional.
 * destroy     free what the policy owns; the core frees the object.
 * ------------------------------------------------------------------------- */
typedef struct fy_policy_vtable_s {
  const char *kind;    /* "breaker", "retry", ...: static storage */
  size_t frame_size;   /* bytes of per-frame state */
  /* Frame hooks (see above for which are required). */
  int (*start)(fy_policy_t *policy, fy_frame_t *frame);
  void (*child_done)(fy_policy_t *policy, fy_frame_t *frame,
                     fy_frame_t *child, int status);
  void (*cancel)(fy_policy_t *policy, fy_frame_t *frame);
  void (*progress)(fy_policy_t *policy, fy_frame_t *frame);
  void (*deadline)(fy_policy_t *policy, fy_frame_t *frame);
  void (*close)(fy_policy_t *policy);
  void (*destroy)(fy_policy_t *policy);
  /* Admission hooks, all three or none. */
  size_t token_size; /* bytes of per-call token, at most FY_TOKEN_MAX */
  int (*admit)(fy_policy_t *policy, fy_call_t *call, fy_frame_t *parent,
               void *token);
  int (*settle)(fy_policy_t *policy, void *token, int status);
  int (*release)(fy_policy_t *policy, void *token, int status);
} fy_policy_vtable_t;

/* admit(): the call must wait, run this layer's frame hooks. */
#define FY_ADMIT_WAIT 1
#define FY_TOKEN_MAX 256

#define FY_NAME_MAX 63

/* Create a policy object with |impl_size| bytes of private state (zeroed,
 * reachable with fy_policy_impl()).  |name| may be NULL; it is copied and
 * truncated to FY_NAME_MAX.  |vtable| must outlive the policy.  Returns 0,
 * UV_EINVAL (no kind; neither complete frame hooks nor complete admission
 * hooks; a token over FY_TOKEN_MAX), FY_ECLOSED or UV_ENOMEM.
 * CONSTRUCTOR. */
FY_EXTERN int fy_policy_new(fy_ctx_t *ctx, const fy_policy_vtable_t *vtable,
                            size_t impl_size, const char *name,
                            fy_policy_t **out);

/* Close asynchronously (every policy kind): new frames are refused with
 * FY_ECLOSED, vtable->close winds down the waiting ones, and once none is
 * left |cb| runs on a fresh stack.  Pipelines holding the policy keep its
 * memory alive but can no longer pass through it.  Legal from inside any
 * callback.  NULL is a no-op.  Returns 0 or FY_ECLOSED.  DESTRUCTOR. */
FY_EXTERN int fy_policy_close(fy_policy_t *policy, fy_close_cb cb,
                              void *user_data);

/* fy_policy_close() for a pattern's typed handle: |cb| receives |obj| (the
 * handle the user closed) instead of the policy pointer. */
FY_EXTERN int fy_policy_close_as(fy_policy_t *policy, void *obj,
                                 fy_close_cb cb, void *user_data);

FY_EXTERN void *fy_policy_impl(fy_policy_t *policy);
FY_EXTERN fy_ctx_t *fy_policy_ctx(const fy_policy_t *policy);
FY_EXTERN const char *fy_policy_name(const fy_policy_t *policy);
FY_EXTERN const char *fy_policy_kind(const fy_policy_t *policy);
FY_EXTERN int fy_policy_is_closing(const fy_policy_t *policy);
/* Frames and admitted tokens of this policy alive now. */
FY_EXTERN size_t fy_policy_active(const fy_policy_t *policy);

/* Start an event on behalf of |policy|: zeroes |event| and fills its type,
 * policy, kind and name.  Returns 1 when a listener wants |type| (set the
 * other fields, such as call, status, attempt, delay_ms, latency_ns, from,
 * to or value, then fy_ctx_emit() it), 0 when nobody does (nothing to
 * build).  The time is filled by fy_ctx_emit(). */
FY_EXTERN int fy_policy_event_init(fy_policy_t *policy, fy_event_t *event,
                                   fy_event_type_t type);

/* Emit an event on behalf of |policy| (fills kind, name and time). */
FY_EXTERN void fy_policy_emit(fy_policy_t *policy, fy_event_type_t type,
                              fy_call_t *call, int status, int64_t from,
                              int64_t to);

/* ---------------------------------------------------------------------------
 * Frames.
 * ------------------------------------------------------------------------- */

/* The policy's per-frame state (frame_size bytes). */
FY_EXTERN void *fy_frame_state(fy_frame_t *frame);
FY_EXTERN fy_policy_t *fy_frame_policy(const fy_frame_t *frame);
FY_EXTERN fy_ctx_t *fy_frame_ctx(const fy_frame_t *frame);
/* The call, or NULL when this frame was detached. */
FY_EXTERN fy_call_t *fy_frame_call(const fy_frame_t *frame);
/* Number of live children. */
FY_EXTERN size_t fy_frame_children(const fy_frame_t *frame);
FY_EXTERN int fy_frame_is_cancelled(const fy_frame_t *frame);
/* 1 when cancellation was requested for |frame| or any frame above it (the
 * caller gave up on this work); 0 for NULL. */
FY_EXTERN int fy_frame_is_cancelled_above(const fy_frame_t *frame);

/* Start one invocation of the layer below.  Returns 0 (the child will
 * complete through child_done, never inside this call) and, if |child| is
 * not NULL, the child; or a negative code when the layer below refused at
 * once (no child_done follows).  FY_ECLOSED when the frame is finished. */
FY_EXTERN int fy_frame_spawn(fy_frame_t *frame, fy_frame_t **child);

/* Start an attempt of |op| with |arg| directly under |frame|, skipping the
 * layers below (a fallback's alternative operation).  Same contract as
 * fy_frame_spawn(); the attempt counts in detail.attempts. */
FY_EXTERN int fy_frame_spawn_op(fy_frame_t *frame, const fy_op_t *op,
                                void *arg, fy_frame_t **child);

/* The call's options, or all-zero defaults for a detached frame. */
FY_EXTERN const fy_call_opts_t *fy_frame_call_opts(const fy_frame_t *frame);

/* Ask a child (or this frame) to cancel.  It still completes.
 * Returns 0 or UV_EALREADY when it already finished. */
FY_EXTERN int fy_frame_cancel(fy_frame_t *frame);

/* Ask every live child of |frame| to cancel (what the default cancel hook
 * does).  Their outcomes still arrive through child_done, never inside this
 * call. */
FY_EXTERN void fy_frame_cancel_children(fy_frame_t *frame);

/* Abandon |child|: cancellation is requested, child_done will not run for
 * it, and its late outcome and result are discarded when they arrive. */
FY_EXTERN void fy_frame_detach(fy_frame_t *child);

/* Finish this invocation with |status|.  Live children are detached.
 * Returns 0 or UV_EALREADY. */
FY_EXTERN int fy_frame_done(fy_frame_t *frame, int status);

/* Take |child|'s result (destroying any result |frame| held). */
FY_EXTERN void fy_frame_adopt_result(fy_frame_t *frame, fy_frame_t *child);
/* Set a result directly (a fallback's value). */
FY_EXTERN void fy_frame_set_result(fy_frame_t *frame, void *result,
                                   fy_result_dtor dtor);
/* The retry-after hint of a finished child, or 0. */
FY_EXTERN uint64_t fy_frame_retry_after(const fy_frame_t *frame);

/* Deadline by which this frame's result is needed (inherited from the
 * parent; FY_TIME_NEVER when none).  set_deadline only tightens; children
 * spawned afterwards inherit it, and the attempt sees it. */
FY_EXTERN uint64_t fy_frame_deadline(const fy_frame_t *frame);
FY_EXTERN void fy_frame_set_deadline(fy_frame_t *frame, uint64_t when_ms);

/* The frame's own timer: vtable->deadline runs at |when_ms| (absolute
 * context time).  Re-arming replaces; disarm is idempotent. */
FY_EXTERN int fy_frame_arm(fy_frame_t *frame, uint64_t when_ms);
FY_EXTERN void fy_frame_disarm(fy_frame_t *frame);

/* fy_frame_verdict() for an admission layer's refusal in admit(). */
FY_EXTERN fy_detail_t *fy_call_verdict(fy_call_t *call, fy_policy_t *policy);

/* The call's detail, claimed by |policy| for the decision about to be made:
 * by_kind/by_name/state/n/key are reset and by_kind/by_name set.  For a
 * detached frame this is a scratch copy nobody reads. */
FY_EXTERN fy_detail_t *fy_frame_verdict(fy_frame_t *frame,
                                        fy_policy_t *policy);

/* ---------------------------------------------------------------------------
 * Classification shared by the patterns.
 * ------------------------------------------------------------------------- */
typedef enum {
  FY_OUTCOME_SUCCESS = 0,
  FY_OUTCOME_FAILURE = 1,
  FY_OUTCOME_IGNORE = 2 /* counts as neither (e.g. the caller cancelled) */
} fy_outcome_t;

/* A user classifier: how a policy should count |status|. */
typedef fy_outcome_t (*fy_classify_fn)(int status, void *user_data);

/* The default: 0 is a success, UV_ECANCELED is ignored, the rest fail. */
FY_EXTERN fy_outcome_t fy_classify_default(int status, void *user_data);

/* 1 for the library's own refusals, which say "not now" about a policy
 * rather than anything about the operation: FY_ECIRCUITOPEN,
 * FY_EBULKHEADFULL, FY_EQUEUETIMEOUT, FY_ERATELIMITED, FY_ECLOSED. */
FY_EXTERN int fy_is_refusal(int status);

/* ---------------------------------------------------------------------------
 * The pass-through policy: spawns one child and reports its outcome.  The
 * smallest complete example of a policy, and a measure of the core's cost.
 * ------------------------------------------------------------------------- */
FY_EXTERN int fy_passthrough_new(fy_ctx_t *ctx, const char *name,
                                 fy_policy_t **out);

#ifdef __cplusplus
}
#endif
#endif /* FORTIFY_POLICY_H */
