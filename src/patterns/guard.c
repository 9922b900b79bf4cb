/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * The server admission guard: a pipeline of the library's own patterns
 * (limiter -> bulkhead -> breaker -> timeout, each optional) in front of a
 * server's request handlers, and the mapping from what it decided to an
 * HTTP answer.  Nothing here is a new mechanism. */
#include <stdio.h>

#include "policy_impl.h"

#include "bundle.h"

#define OVERLOAD_RETRY_AFTER_S 1

struct fy_guard_s {
  fy__bundle_t bundle; /* attached; closes the parts below together */
  fy_ctx_t *ctx;
  fy_pipeline_t *pipeline;
  fy_limiter_t *limiter;
  fy_bulkhead_t *bulkhead;
  fy_breaker_t *breaker;
  fy_timeout_t *timeout;
  uint64_t overload_retry_after_s;
};

void fy_guard_opts_init(fy_guard_opts_t *opts) {
  if (opts == NULL)
    return;
  memset(opts, 0, sizeof(*opts));
}

/* The handler's outcomes as the breaker counts them: a 5xx, an error or
 * an overrun is the server failing; a 4xx is the client's; a cancelled
 * request (the client went away) is neither. */
static fy_outcome_t classify_handler(int status, void *user_data) {
  (void)user_data;
  if (status == 0 || status == UV_ECANCELED)
    return status == 0 ? FY_OUTCOME_SUCCESS : FY_OUTCOME_IGNORE;
  if (FY_IS_EHTTP(status))
    return FY_EHTTP_CODE(status) >= 500 ? FY_OUTCOME_FAILURE
                                        : FY_OUTCOME_SUCCESS;
  return FY_OUTCOME_FAILURE;
}

/* The parts' options as the guard uses them. */
typedef struct parts_s {
  fy_limiter_opts_t limit;
  fy_bulkhead_opts_t bulkhead;
  fy_breaker_opts_t breaker;
  fy_timeout_opts_t timeout;
  char names[4][FY_NAME_MAX + 1];
} parts_t;

static const char *role_name(char *buf, const char *prefix,
                             const char *role) {
  snprintf(buf, FY_NAME_MAX + 1, "%s%s%s", prefix ? prefix : "",
           prefix ? "." : "", role);
  return buf;
}

static void make_parts(const fy_guard_opts_t *o, parts_t *p) {
  memset(p, 0, sizeof(*p));
  if (o->limit != NULL) {
    p->limit = *o->limit;
    p->limit.key = NULL; /* the key given to fy_guard_start() */
    p->limit.wait = 0;   /* a client over its rate is refused */
    p->limit.name = role_name(p->names[0], o->name, "limit");
  }
  fy_bulkhead_opts_init(&p->bulkhead);
  p->bulkhead.max_concurrent = o->max_concurrent;
  p->bulkhead.name = role_name(p->names[1], o->name, "concurrency");
  if (o->breaker != NULL) {
    p->breaker = *o->breaker;
    if (p->breaker.classify == NULL)
      p->breaker.classify = classify_handler;
    p->breaker.name = role_name(p->names[2], o->name, "breaker");
  }
  fy_timeout_opts_init(&p->timeout);
  p->timeout.timeout_ms = o->handler_timeout_ms;
  p->timeout.name = role_name(p->names[3], o->name, "handler");
}

int fy_guard_opts_check(const fy_guard_opts_t *o) {
  parts_t p;
  int rc;
  if (o == NULL)
    return UV_EINVAL;
  make_parts(o, &p);
  if (o->limit != NULL && (rc = fy_limiter_opts_check(&p.limit)) != 0)
    return rc;
  if (o->max_concurrent > 0 &&
      (rc = fy_bulkhead_opts_check(&p.bulkhead)) != 0)
    return rc;
  if (o->breaker != NULL && (rc = fy_breaker_opts_check(&p.breaker)) != 0)
    return rc;
  if (o->handler_timeout_ms > 0 &&
      (rc = fy_timeout_opts_check(&p.timeout)) != 0)
    return rc;
  return 0;
}

/* Close whatever exists (fy__bundle_parts_fn). */
static void close_parts(fy__bundle_t *b, fy_close_group_t *grp) {
  fy_guard_t *g = fy_container_of(b, fy_guard_t, bundle);
  fy_close_cb cb = grp != NULL ? fy_close_group_cb : NULL;
  if (g->pipeline != NULL)
    fy__bundle_track(grp, fy_pipeline_close(g->pipeline, cb, grp));
  if (g->limiter != NULL)
    fy__bundle_track(grp, fy_limiter_close(g->limiter, cb, grp));
  if (g->bulkhead != NULL)
    fy__bundle_track(grp, fy_bulkhead_close(g->bulkhead, cb, grp));
  if (g->breaker != NULL)
    fy__bundle_track(grp, fy_breaker_close(g->breaker, cb, grp));
  if (g->timeout != NULL)
    fy__bundle_track(grp, fy_timeout_close(g->timeout, cb, grp));
}

static int build(fy_guard_t *g, const fy_guard_opts_t *o, const parts_t *p) {
  fy_policy_t *layers[4];
  size_t n = 0;
  int rc;
  if (o->limit != NULL) {
    if ((rc = fy_limiter_new(g->ctx, &p->limit, &g->limiter)) != 0)
      return rc;
    layers[n++] = fy_limiter_policy(g->limiter);
  }
  if (o->max_concurrent > 0) {
    if ((rc = fy_bulkhead_new(g->ctx, &p->bulkhead, &g->bulkhead)) != 0)
      return rc;
    layers[n++] = fy_bulkhead_policy(g->bulkhead);
  }
  if (o->breaker != NULL) {
    if ((rc = fy_breaker_new(g->ctx, &p->breaker, &g->breaker)) != 0)
      return rc;
    layers[n++] = fy_breaker_policy(g->breaker);
  }
  if (o->handler_timeout_ms > 0) {
    if ((rc = fy_timeout_new(g->ctx, &p->timeout, &g->timeout)) != 0)
      return rc;
    layers[n++] = fy_timeout_policy(g->timeout);
  }
  return fy_pipeline_new(g->ctx, layers, n, &g->pipeline);
}

int fy_guard_new(fy_ctx_t *ctx, const fy_guard_opts_t *opts,
                 fy_guard_t **out) {
  fy_guard_opts_t defaults;
  parts_t parts;
  fy_guard_t *g;
  int rc;
  if (out == NULL)
    return UV_EINVAL;
  *out = NULL;
  if (ctx == NULL)
    return UV_EINVAL;
  if (opts == NULL) {
    fy_guard_opts_init(&defaults);
    opts = &defaults;
  }
  rc = fy_guard_opts_check(opts);
  if (rc != 0)
    return rc;
  make_parts(opts, &parts);
  g = fy_calloc(1, sizeof(*g));
  if (g == NULL)
    return UV_ENOMEM;
  g->ctx = ctx;
  g->overload_retry_after_s = opts->overload_retry_after_s != 0
                                  ? opts->overload_retry_after_s
                                  : OVERLOAD_RETRY_AFTER_S;
  rc = fy__bundle_attach(&g->bundle, ctx, g, close_parts);
  if (rc != 0) {
    fy_free(g);
    return rc;
  }
  rc = build(g, opts, &parts);
  if (rc != 0) {
    fy__bundle_abandon(&g->bundle);
    return rc;
  }
  *out = g;
  return 0;
}

int fy_guard_close(fy_guard_t *g, fy_close_cb cb, void *user_data) {
  if (g == NULL)
    return 0;
  return fy__bundle_close(&g->bundle, cb, user_data);
}

fy_pipeline_t *fy_guard_pipeline(fy_guard_t *g) {
  return g != NULL ? g->pipeline : NULL;
}

fy_limiter_t *fy_guard_limiter(fy_guard_t *g) {
  return g != NULL ? g->limiter : NULL;
}

int fy_guard_start(fy_guard_t *g, fy_call_t *call, const char *key,
                   size_t len, const fy_op_t *op, void *arg, fy_call_cb cb) {
  fy_call_opts_t o;
  if (g == NULL)
    return UV_EINVAL;
  memset(&o, 0, sizeof(o));
  o.key = key;
  o.key_len = len;
  return fy_call_start_opts(call, g->pipeline, op, arg, &o, cb);
}

/* Whole seconds, rounded up: a client that waits that long is let in. */
static uint64_t seconds_up(uint64_t ms) { return ms / 1000 + (ms % 1000 != 0); }

static void answer(fy_guard_answer_t *out, int http, uint64_t retry_after_s,
                   const char *reason) {
  out->http_status = http;
  out->retry_after_s = retry_after_s;
  out->reason = reason;
}

void fy_guard_answer(const fy_guard_t *g, const fy_call_t *call, int status,
                     fy_guard_answer_t *out) {
  uint64_t hint = call != NULL ? call->detail.retry_after_ms : 0;
  uint64_t overload = g != NULL ? g->overload_retry_after_s
                                : OVERLOAD_RETRY_AFTER_S;
  if (out == NULL)
    return;
  if (status == 0 || FY_IS_EHTTP(status)) {
    answer(out, 0, 0, NULL);
    return;
  }
  switch (status) {
  case FY_ERATELIMITED:
    /* A full wait queue promises no instant: one second. */
    answer(out, 429, hint > 0 ? seconds_up(hint) : 1, "Too Many Requests");
    break;
  case FY_ECIRCUITOPEN:
    answer(out, 503, hint > 0 ? seconds_up(hint) : overload,
           "Service Unavailable");
    break;
  case FY_EBULKHEADFULL:
  case FY_EQUEUETIMEOUT:
  case FY_ECLOSED:
  case UV_ECANCELED:
    answer(out, 503, overload, "Service Unavailable");
    break;
  case UV_ETIMEDOUT:
    answer(out, 504, 0, "Gateway Timeout");
    break;
  case FY_EKEY:
    answer(out, 400, 0, "Bad Request");
    break;
  default:
    answer(out, 500, 0, "Internal Server Error");
    break;
  }
}
