/* Copyright (c) 2026 the fortify authors. MIT licensed. */
#ifndef FORTIFY_EVENTS_H
#define FORTIFY_EVENTS_H

#include "fortify/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Typed events.  Every policy and the core emit them to the context's
 * listeners; logging, metrics and tracing are listeners.  When nobody
 * listens to a type, emitting it costs one mask test and nothing is built.
 *
 * Numbers are ABI: only append. */
typedef enum {
  FY_EV_CALL_DONE = 0,   /* a call completed: status, attempts, latency */
  FY_EV_CALL_REFUSED,    /* fy_call_start() refused synchronously: status */
  FY_EV_ATTEMPT_START,   /* an attempt of the operation starts: attempt */
  FY_EV_ATTEMPT_DONE,    /* an attempt reported: status, latency */
  FY_EV_REJECT,          /* a policy refused work: status */
  FY_EV_STATE_CHANGE,    /* a policy changed state: from, to */
  FY_EV_RETRY,           /* a retry is starting: attempt, delay_ms, status */
  FY_EV_TIMEOUT,         /* a timeout fired: value (stage) */
  FY_EV_FALLBACK,        /* a fallback runs: status of the primary */
  FY_EV_QUEUE,           /* a waiter was queued (value 1) or left (0,
                            delay_ms: how long it waited) */
  FY_EV_ALLOW,           /* a limiter let a request through: value is
                            the tokens remaining, key the key */
  FY_EV_EVICT,           /* a limiter dropped a key still in use to make
                            room in its table: key */
  FY_EV__COUNT
} fy_event_type_t;

#define FY_EV_MASK(type) (1u << (unsigned)(type))
#define FY_EV_ALL ((1u << FY_EV__COUNT) - 1u)

typedef struct fy_event_s {
  fy_event_type_t type;
  uint64_t time_ms;         /* context clock when emitted */
  fy_policy_t *policy;      /* emitting policy, NULL for the core */
  const char *policy_kind;  /* "breaker", "retry", ... or NULL */
  const char *policy_name;  /* the policy's name, "" when unnamed */
  fy_call_t *call;          /* the call concerned, or NULL */
  int status;
  unsigned attempt;         /* 0-based attempt index */
  uint64_t latency_ns;
  uint64_t delay_ms;
  int64_t from;
  int64_t to;
  int64_t value;
  const char *key;          /* a limiter's key, sanitised, or NULL */
} fy_event_t;

/* Pointers in |event| are valid only during the callback. */
typedef void (*fy_event_cb)(fy_ctx_t *ctx, const fy_event_t *event,
                            void *user_data);

typedef struct fy_listener_s fy_listener_t;

/* Register |cb| for the event types in |mask| (FY_EV_MASK bits).  Listeners
 * run synchronously, in registration order, on the loop thread.  Returns 0,
 * UV_EINVAL, UV_ENOMEM or FY_ECLOSED. */
FY_EXTERN int fy_ctx_listen(fy_ctx_t *ctx, uint32_t mask, fy_event_cb cb,
                            void *user_data, fy_listener_t **out);

/* Remove a listener; legal from inside any listener, including itself. */
FY_EXTERN void fy_listener_remove(fy_listener_t *listener);

/* For policy writers: whether anybody listens to |type|, and emission.
 * fy_ctx_emit() fills time_ms when it is 0. */
FY_EXTERN int fy_ctx_wants(const fy_ctx_t *ctx, fy_event_type_t type);
FY_EXTERN void fy_ctx_emit(fy_ctx_t *ctx, fy_event_t *event);

FY_EXTERN const char *fy_event_name(fy_event_type_t type);

#ifdef __cplusplus
}
#endif
#endif /* FORTIFY_EVENTS_H */
