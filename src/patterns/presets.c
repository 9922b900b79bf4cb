/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * Presets: the common pipelines, assembled from the patterns in the
 * library's default order.  Nothing here is a new mechanism; a preset only
 * chooses options and an order, and closes what it built. */
#include <stdio.h>

#include "policy_impl.h"

#include "bundle.h"

struct fy_preset_s {
  fy__bundle_t bundle; /* attached; closes the parts below together */
  fy_ctx_t *ctx;
  fy_pipeline_t *pipeline;
  fy_bulkhead_t *bulkhead;
  fy_timeout_t *total;
  fy_retry_t *retry;
  fy_breaker_t *breaker;
  fy_timeout_t *per_try;
};

void fy_preset_opts_init(fy_preset_opts_t *o, fy_preset_kind_t kind) {
  memset(o, 0, sizeof(*o));
  o->retry_jitter = FY_RETRY_JITTER_FULL;
  o->breaker_max_requests = 3;
  o->breaker_interval_ms = 60000;
  switch (kind) {
  case FY_PRESET_RPC:
    o->attempt_timeout_ms = 2000;
    o->max_attempts = 3;
    o->retry_initial_delay_ms = 100;
    o->retry_max_delay_ms = 2000;
    o->breaker_failures = 5;
    o->breaker_open_ms = 30000;
    break;
  case FY_PRESET_DATABASE:
    o->attempt_timeout_ms = 5000;
    o->max_attempts = 2;
    o->retry_initial_delay_ms = 50;
    o->retry_max_delay_ms = 500;
    o->breaker_failures = 10;
    o->breaker_open_ms = 20000;
    o->breaker_max_requests = 2;
    break;
  case FY_PRESET_HTTP_CLIENT:
  default:
    o->attempt_timeout_ms = 10000;
    o->max_attempts = 3;
    o->retry_initial_delay_ms = 100;
    o->retry_max_delay_ms = 5000;
    o->breaker_failures = 5;
    o->breaker_open_ms = 30000;
    break;
  }
}

/* "<prefix>.<role>", truncated like every policy name. */
static const char *role_name(char *buf, const char *prefix,
                             const char *role) {
  snprintf(buf, FY_NAME_MAX + 1, "%s%s%s", prefix ? prefix : "",
           prefix ? "." : "", role);
  return buf;
}

/* Close whatever exists (fy__bundle_parts_fn). */
static void close_parts(fy__bundle_t *b, fy_close_group_t *g) {
  fy_preset_t *p = fy_container_of(b, fy_preset_t, bundle);
  fy_close_cb cb = g != NULL ? fy_close_group_cb : NULL;
  if (p->pipeline != NULL)
    fy__bundle_track(g, fy_pipeline_close(p->pipeline, cb, g));
  if (p->bulkhead != NULL)
    fy__bundle_track(g, fy_bulkhead_close(p->bulkhead, cb, g));
  if (p->total != NULL)
    fy__bundle_track(g, fy_timeout_close(p->total, cb, g));
  if (p->retry != NULL)
    fy__bundle_track(g, fy_retry_close(p->retry, cb, g));
  if (p->breaker != NULL)
    fy__bundle_track(g, fy_breaker_close(p->breaker, cb, g));
  if (p->per_try != NULL)
    fy__bundle_track(g, fy_timeout_close(p->per_try, cb, g));
}

int fy_preset_parts(const fy_preset_opts_t *o, fy_preset_parts_t *parts) {
  fy_preset_opts_t defaults;
  if (parts == NULL)
    return UV_EINVAL;
  memset(parts, 0, sizeof(*parts));
  if (o == NULL) {
    fy_preset_opts_init(&defaults, FY_PRESET_HTTP_CLIENT);
    o = &defaults;
  }
  /* A preset without a per-try timeout would let one hung attempt eat
   * every retry: refuse it rather than default it silently. */
  if (o->attempt_timeout_ms == 0 ||
      (o->total_timeout_ms != 0 && o->total_timeout_ms < o->attempt_timeout_ms))
    return UV_EINVAL;
  parts->has_bulkhead = o->max_concurrent > 0;
  fy_bulkhead_opts_init(&parts->bulkhead);
  parts->bulkhead.name = role_name(parts->names[0], o->name, "bulkhead");
  parts->bulkhead.max_concurrent = o->max_concurrent;
  parts->bulkhead.max_queue = o->max_queue;
  parts->bulkhead.queue_timeout_ms = o->queue_timeout_ms;

  parts->has_total = o->total_timeout_ms > 0;
  fy_timeout_opts_init(&parts->total);
  parts->total.name = role_name(parts->names[1], o->name, "total");
  parts->total.timeout_ms = o->total_timeout_ms;
  parts->total.scope = FY_TIMEOUT_TOTAL;

  fy_retry_opts_init(&parts->retry);
  parts->retry.name = role_name(parts->names[2], o->name, "retry");
  parts->retry.max_attempts = o->max_attempts;
  parts->retry.initial_delay_ms = o->retry_initial_delay_ms;
  parts->retry.max_delay_ms = o->retry_max_delay_ms;
  parts->retry.jitter = o->retry_jitter;
  parts->retry.seed = o->retry_seed;
  parts->retry.require_idempotent = o->require_idempotent;

  fy_breaker_opts_init(&parts->breaker);
  parts->breaker.name = role_name(parts->names[3], o->name, "breaker");
  parts->breaker.failure_threshold = o->breaker_failures;
  parts->breaker.open_ms = o->breaker_open_ms;
  parts->breaker.max_requests = o->breaker_max_requests;
  parts->breaker.interval_ms = o->breaker_interval_ms;

  fy_timeout_opts_init(&parts->per_try);
  parts->per_try.name = role_name(parts->names[4], o->name, "attempt");
  parts->per_try.timeout_ms = o->attempt_timeout_ms;
  parts->per_try.scope = FY_TIMEOUT_PER_TRY;
  return 0;
}

int fy_preset_opts_check(const fy_preset_opts_t *o) {
  fy_preset_parts_t parts;
  int rc;
  if (o == NULL)
    return UV_EINVAL;
  rc = fy_preset_parts(o, &parts);
  if (rc != 0)
    return rc;
  /* Each part as its constructor will check it: fy_preset_new() creates
   * nothing when one of them would refuse. */
  if (parts.has_bulkhead &&
      (rc = fy_bulkhead_opts_check(&parts.bulkhead)) != 0)
    return rc;
  if (parts.has_total && (rc = fy_timeout_opts_check(&parts.total)) != 0)
    return rc;
  if ((rc = fy_retry_opts_check(&parts.retry)) != 0)
    return rc;
  if ((rc = fy_breaker_opts_check(&parts.breaker)) != 0)
    return rc;
  return fy_timeout_opts_check(&parts.per_try);
}

static int build_policies(fy_preset_t *p, const fy_preset_parts_t *parts) {
  int rc;
  if (parts->has_bulkhead &&
      (rc = fy_bulkhead_new(p->ctx, &parts->bulkhead, &p->bulkhead)) != 0)
    return rc;
  if (parts->has_total &&
      (rc = fy_timeout_new(p->ctx, &parts->total, &p->total)) != 0)
    return rc;
  if ((rc = fy_retry_new(p->ctx, &parts->retry, &p->retry)) != 0)
    return rc;
  if ((rc = fy_breaker_new(p->ctx, &parts->breaker, &p->breaker)) != 0)
    return rc;
  return fy_timeout_new(p->ctx, &parts->per_try, &p->per_try);
}

int fy_preset_new(fy_ctx_t *ctx, const fy_preset_opts_t *opts,
                  fy_preset_t **out) {
  fy_preset_opts_t defaults;
  fy_preset_parts_t parts;
  fy_policy_t *layers[5];
  size_t n = 0;
  fy_preset_t *p;
  int rc;

  if (out == NULL)
    return UV_EINVAL;
  *out = NULL;
  if (ctx == NULL)
    return UV_EINVAL;
  if (opts == NULL) {
    fy_preset_opts_init(&defaults, FY_PRESET_HTTP_CLIENT);
    opts = &defaults;
  }
  rc = fy_preset_opts_check(opts);
  if (rc != 0)
    return rc;
  rc = fy_preset_parts(opts, &parts);
  if (rc != 0)
    return rc;
  p = fy_calloc(1, sizeof(*p));
  if (p == NULL)
    return UV_ENOMEM;
  p->ctx = ctx;
  rc = fy__bundle_attach(&p->bundle, ctx, p, close_parts);
  if (rc != 0) {
    fy_free(p);
    return rc;
  }
  rc = build_policies(p, &parts);
  if (rc == 0) {
    if (p->bulkhead != NULL)
      layers[n++] = fy_bulkhead_policy(p->bulkhead);
    if (p->total != NULL)
      layers[n++] = fy_timeout_policy(p->total);
    layers[n++] = fy_retry_policy(p->retry);
    layers[n++] = fy_breaker_policy(p->breaker);
    layers[n++] = fy_timeout_policy(p->per_try);
    rc = fy_pipeline_new(ctx, layers, n, &p->pipeline);
  }
  if (rc != 0) {
    fy__bundle_abandon(&p->bundle);
    return rc;
  }
  *out = p;
  return 0;
}

int fy_preset_close(fy_preset_t *p, fy_close_cb cb, void *user_data) {
  if (p == NULL)
    return 0;
  return fy__bundle_close(&p->bundle, cb, user_data);
}

fy_pipeline_t *fy_preset_pipeline(const fy_preset_t *p) {
  return p->pipeline;
}
fy_breaker_t *fy_preset_breaker(const fy_preset_t *p) { return p->breaker; }
fy_retry_t *fy_preset_retry(const fy_preset_t *p) { return p->retry; }
fy_bulkhead_t *fy_preset_bulkhead(const fy_preset_t *p) {
  return p->bulkhead;
}

fy_timeout_t *fy_preset_timeout(const fy_preset_t *p,
                                fy_timeout_scope_t scope) {
  return scope == FY_TIMEOUT_PER_TRY ? p->per_try : p->total;
}
