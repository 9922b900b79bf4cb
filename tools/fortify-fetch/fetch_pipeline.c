/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * fortify-fetch: the request stack.
 *
 * It has the shape and the defaults of fy_curl_pipeline_new() (the HTTP
 * client preset, retries only for idempotent requests, the adapter's
 * classifiers), but is assembled here from the same public parts, because
 * the bundle's options cannot express two of the tool's flags: the backoff
 * kind (fy_preset_opts_t has no field for it) and --no-breaker (the bundle
 * always has its per-host stage).
 *
 * Ranges are not checked here: each part's fy_<part>_opts_check() (the
 * check its constructor makes) validates its own options before anything
 * is created, and when one says UV_EINVAL the flags that configure that
 * part are checked one at a time against the defaults, so that the message
 * can name the flag at fault.  The curl adapter has no such check: its
 * options are validated by fy_curl_new() alone. */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "fetch.h"

/* ---- flags --------------------------------------------------------------- */

static void set_retries(fetch_cfg_t *c, const fetch_set_t *s) {
  uint64_t v = s->value;
  c->retry.max_attempts = (unsigned)v;
}
static void set_backoff(fetch_cfg_t *c, const fetch_set_t *s) {
  uint64_t v = s->value;
  c->retry.backoff = (fy_retry_backoff_t)v;
}
static void set_jitter(fetch_cfg_t *c, const fetch_set_t *s) {
  uint64_t v = s->value;
  c->retry.jitter = (fy_retry_jitter_t)v;
}
static void set_initial_delay(fetch_cfg_t *c, const fetch_set_t *s) {
  uint64_t v = s->value;
  c->retry.initial_delay_ms = v;
}
static void set_max_delay(fetch_cfg_t *c, const fetch_set_t *s) {
  uint64_t v = s->value;
  c->retry.max_delay_ms = v;
}
static void set_max_retry_after(fetch_cfg_t *c, const fetch_set_t *s) {
  uint64_t v = s->value;
  c->retry.max_retry_after_ms = v;
  /* The same bound for a host's hold after a 429 (the tool honours a
   * Retry-After up to one ceiling, for the URL that got it and for the
   * others of its host). */
  c->hosts.max_hold_ms = v;
}
static void set_timeout(fetch_cfg_t *c, const fetch_set_t *s) {
  uint64_t v = s->value;
  c->total.timeout_ms = v;
}
static void set_attempt_timeout(fetch_cfg_t *c, const fetch_set_t *s) {
  uint64_t v = s->value;
  c->attempt.timeout_ms = v;
}
static void set_first_byte(fetch_cfg_t *c, const fetch_set_t *s) {
  uint64_t v = s->value;
  c->attempt.first_byte_ms = v;
}
static void set_idle(fetch_cfg_t *c, const fetch_set_t *s) {
  uint64_t v = s->value;
  c->attempt.idle_ms = v;
}
static void set_breaker_failures(fetch_cfg_t *c, const fetch_set_t *s) {
  uint64_t v = s->value;
  c->hosts.breaker.failure_threshold = (uint32_t)v;
}
static void set_breaker_open(fetch_cfg_t *c, const fetch_set_t *s) {
  uint64_t v = s->value;
  c->hosts.breaker.open_ms = v;
}
static void set_rate(fetch_cfg_t *c, const fetch_set_t *s) {
  c->rate = s->value;
  c->rate_ms = s->per_ms;
  c->has_rate = 1;
}
static void set_burst(fetch_cfg_t *c, const fetch_set_t *s) {
  c->burst = s->value;
  c->has_burst = 1;
}
static void set_max_body(fetch_cfg_t *c, const fetch_set_t *s) {
  uint64_t v = s->value;
  c->curl.max_body_bytes = (size_t)v;
}

#define U64 UINT64_MAX

/* Values are parsed into uint64_t; |max| keeps them within their field. */
const fetch_flag_t fetch_flags[] = {
    {"retries", FETCH_PART_RETRY, FETCH_VAL_NUMBER, UINT_MAX, set_retries},
    {"backoff", FETCH_PART_RETRY, FETCH_VAL_BACKOFF, U64, set_backoff},
    {"jitter", FETCH_PART_RETRY, FETCH_VAL_JITTER, U64, set_jitter},
    {"initial-delay", FETCH_PART_RETRY, FETCH_VAL_NUMBER, U64,
     set_initial_delay},
    {"max-delay", FETCH_PART_RETRY, FETCH_VAL_NUMBER, U64, set_max_delay},
    {"max-retry-after", FETCH_PART_RETRY, FETCH_VAL_NUMBER, U64,
     set_max_retry_after},
    {"timeout", FETCH_PART_TOTAL, FETCH_VAL_NUMBER, U64, set_timeout},
    {"attempt-timeout", FETCH_PART_ATTEMPT, FETCH_VAL_NUMBER, U64,
     set_attempt_timeout},
    {"first-byte-timeout", FETCH_PART_ATTEMPT, FETCH_VAL_NUMBER, U64,
     set_first_byte},
    {"idle-timeout", FETCH_PART_ATTEMPT, FETCH_VAL_NUMBER, U64, set_idle},
    {"breaker-failures", FETCH_PART_HOSTS, FETCH_VAL_NUMBER, UINT32_MAX,
     set_breaker_failures},
    {"breaker-open", FETCH_PART_HOSTS, FETCH_VAL_NUMBER, U64, set_breaker_open},
    {"rate", FETCH_PART_HOSTS, FETCH_VAL_RATE, U64, set_rate},
    {"burst", FETCH_PART_HOSTS, FETCH_VAL_NUMBER, U64, set_burst},
    {"max-body", FETCH_PART_CURL, FETCH_VAL_NUMBER, SIZE_MAX, set_max_body},
    {NULL, FETCH_PART__COUNT, FETCH_VAL_NUMBER, 0, NULL}};

/* ---- defaults: fy_curl_pipeline_opts_init(), mapped as the bundle maps
 * them ------------------------------------------------------------------- */

static void cfg_defaults(fetch_cfg_t *c) {
  fy_curl_pipeline_opts_t po;
  const fy_preset_opts_t *ps = &po.preset;

  fy_curl_pipeline_opts_init(&po);
  fy_curl_opts_init(&c->curl);

  fy_timeout_opts_init(&c->total);
  c->total.name = "fetch.total";
  c->total.timeout_ms = ps->total_timeout_ms;
  c->total.scope = FY_TIMEOUT_TOTAL;

  fy_retry_opts_init(&c->retry);
  c->retry.name = "fetch.retry";
  c->retry.max_attempts = ps->max_attempts;
  c->retry.initial_delay_ms = ps->retry_initial_delay_ms;
  c->retry.max_delay_ms = ps->retry_max_delay_ms;
  c->retry.jitter = ps->retry_jitter;
  c->retry.require_idempotent = ps->require_idempotent;
  c->retry.max_retry_after_ms = po.max_retry_after_ms;
  c->retry.is_retryable = fy_curl_retry_classify; /* user_data NULL: the
                                                     default classes */
  fy_curl_hosts_opts_init(&c->hosts);
  c->hosts.name = "fetch.hosts";
  c->hosts.max_hosts = po.max_hosts;
  c->hosts.breaker.failure_threshold = ps->breaker_failures;
  c->hosts.breaker.open_ms = ps->breaker_open_ms;
  c->hosts.breaker.max_requests = ps->breaker_max_requests;
  c->hosts.breaker.interval_ms = ps->breaker_interval_ms;
  c->hosts.max_hold_ms = po.max_retry_after_ms;
  c->rate = c->rate_ms = c->burst = 0;
  c->has_rate = c->has_burst = 0;

  fy_timeout_opts_init(&c->attempt);
  c->attempt.name = "fetch.attempt";
  c->attempt.timeout_ms = ps->attempt_timeout_ms;
  c->attempt.first_byte_ms = po.first_byte_ms;
  c->attempt.idle_ms = po.idle_ms;
  c->attempt.scope = FY_TIMEOUT_PER_TRY;
}

/* Every host's limit, from --rate and --burst.  The calls of a host over
 * its rate wait for their tokens (a client pacing itself, not a server
 * shedding load), bounded by --timeout when there is one; no URL is ever
 * refused for the length of the queue, which the slots bound already.
 * Without --rate the rate is one nobody reaches, and waiting still applies
 * to a host held by a 429, so that its other URLs wait for the
 * Retry-After instead of failing.  A --burst without a --rate is refused
 * before (fetch_stack_new); the limiter's default rate stands in for it
 * only so that a probe of --burst alone is checked. */
static void cfg_link(fetch_cfg_t *c) {
  fy_limiter_opts_init(&c->limit);
  if (c->has_rate) {
    c->limit.rate = c->rate;
    c->limit.interval_ms = c->rate_ms;
  }
  if (c->has_rate || c->has_burst) {
    c->limit.burst = c->burst;
  } else {
    c->limit.rate = FY_LIMIT_RATE_MAX;
    c->limit.interval_ms = 1;
    c->limit.burst = FY_LIMIT_BURST_MAX;
  }
  c->limit.wait = 1;
  c->limit.max_waiters = FETCH_CONCURRENCY_MAX;
  c->hosts.limit = &c->limit;
}

static void cfg_apply(fetch_cfg_t *c, const fetch_opts_t *o) {
  unsigned i;
  for (i = 0; i < o->nsets; i++)
    o->sets[i].flag->apply(c, &o->sets[i]);
  cfg_link(c);
}

/* ---- parts --------------------------------------------------------------- */

/* The part's own check of its options in |c|: 0 or UV_EINVAL, and 1 for
 * the curl adapter, which only fy_curl_new() checks. */
static int part_check(fetch_part_t part, const fetch_cfg_t *c) {
  switch (part) {
  case FETCH_PART_TOTAL:
    if (c->total.timeout_ms == 0)
      return 0; /* no total timeout */
    return fy_timeout_opts_check(&c->total);
  case FETCH_PART_RETRY:
    return fy_retry_opts_check(&c->retry);
  case FETCH_PART_HOSTS:
    return fy_curl_hosts_opts_check(&c->hosts);
  case FETCH_PART_ATTEMPT:
    return fy_timeout_opts_check(&c->attempt);
  default:
    return 1;
  }
}

static int part_new(fy_ctx_t *ctx, fetch_part_t part, const fetch_cfg_t *c,
                    void **out) {
  *out = NULL;
  switch (part) {
  case FETCH_PART_CURL:
    return fy_curl_new(ctx, &c->curl, (fy_curl_t **)out);
  case FETCH_PART_TOTAL:
    if (c->total.timeout_ms == 0)
      return 0; /* no total timeout */
    return fy_timeout_new(ctx, &c->total, (fy_timeout_t **)out);
  case FETCH_PART_RETRY:
    return fy_retry_new(ctx, &c->retry, (fy_retry_t **)out);
  case FETCH_PART_HOSTS:
    return fy_curl_hosts_new(ctx, &c->hosts, (fy_curl_hosts_t **)out);
  case FETCH_PART_ATTEMPT:
    return fy_timeout_new(ctx, &c->attempt, (fy_timeout_t **)out);
  default:
    return UV_EINVAL;
  }
}

/* Whether |o->sets[i]| is the value in effect: no later set of the same
 * flag overrides it. */
static int in_effect(const fetch_opts_t *o, unsigned i) {
  unsigned j;
  for (j = i + 1; j < o->nsets; j++)
    if (o->sets[j].flag == o->sets[i].flag)
      return 0;
  return 1;
}

/* The first flag of |part| whose value in effect alone, over the
 * defaults, makes the part's check refuse its options; NULL when only
 * their combination is refused.  For the curl adapter, which has no check
 * of its own: its flag when only one of its flags was given (the defaults
 * being valid, that one is at fault), else NULL. */
static const fetch_set_t *blame(fetch_part_t part, const fetch_opts_t *o) {
  const fetch_set_t *only = NULL;
  fetch_cfg_t probe;
  unsigned i;

  for (i = 0; i < o->nsets; i++) {
    if (o->sets[i].flag->part != part || !in_effect(o, i))
      continue;
    cfg_defaults(&probe);
    o->sets[i].flag->apply(&probe, &o->sets[i]);
    cfg_link(&probe);
    switch (part_check(part, &probe)) {
    case 0:
      break;
    case 1:
      if (only != NULL)
        return NULL; /* two flags, no check to tell them apart */
      only = &o->sets[i];
      break;
    default:
      return &o->sets[i];
    }
  }
  return only;
}

static void print_value(const fetch_set_t *s) {
  if (s->flag->val == FETCH_VAL_BACKOFF && s->value < 3)
    fputs(fetch_backoff_names[s->value], stderr);
  else if (s->flag->val == FETCH_VAL_JITTER && s->value < 6)
    fputs(fetch_jitter_names[s->value], stderr);
  else if (s->flag->val == FETCH_VAL_RATE)
    fprintf(stderr, "%llu/%s", (unsigned long long)s->value,
            s->per_ms == 60000 ? "m" : "s");
  else
    fprintf(stderr, "%llu", (unsigned long long)s->value);
}

static const char *const part_names[] = {
    [FETCH_PART_CURL] = "the curl adapter",
    [FETCH_PART_TOTAL] = "the total timeout",
    [FETCH_PART_RETRY] = "the retry policy",
    [FETCH_PART_HOSTS] = "the per-host policies",
    [FETCH_PART_ATTEMPT] = "the per-try timeout"};

static int part_failed(fetch_part_t part, const fetch_opts_t *o, int rc) {
  const fetch_set_t *s;
  unsigned i;
  const char *sep = "";

  if (rc != UV_EINVAL) {
    fprintf(stderr, FETCH_PROG ": cannot create %s: %s\n", part_names[part],
            fy_strerror(rc));
    return FETCH_EXIT_INTERNAL;
  }
  s = blame(part, o);
  if (s != NULL) {
    fprintf(stderr, FETCH_PROG ": --%s ", s->flag->name);
    print_value(s);
    fprintf(stderr, ": out of range for %s (see --help)\n", part_names[part]);
    return FETCH_EXIT_USAGE;
  }
  fprintf(stderr, FETCH_PROG ": %s refuses this combination of",
          part_names[part]);
  for (i = 0; i < o->nsets; i++)
    if (o->sets[i].flag->part == part) {
      fprintf(stderr, "%s --%s", sep, o->sets[i].flag->name);
      sep = ",";
    }
  fputs(" (see --help)\n", stderr);
  return FETCH_EXIT_USAGE;
}

/* --burst shapes a rate: alone it would limit every host at a rate
 * nobody chose. */
static int check_burst(const fetch_cfg_t *c) {
  if (!c->has_burst || c->has_rate)
    return FETCH_EXIT_OK;
  fprintf(stderr, FETCH_PROG ": --burst needs --rate\n");
  return FETCH_EXIT_USAGE;
}

static int check_no_breaker(const fetch_opts_t *o) {
  unsigned i;
  if (!o->no_breaker)
    return FETCH_EXIT_OK;
  /* The per-host stage holds the limits too: without it there is nowhere
   * for --rate and --burst to live. */
  for (i = 0; i < o->nsets; i++)
    if (o->sets[i].flag->part == FETCH_PART_HOSTS) {
      fprintf(stderr, FETCH_PROG ": --no-breaker conflicts with --%s\n",
              o->sets[i].flag->name);
      return FETCH_EXIT_USAGE;
    }
  return FETCH_EXIT_OK;
}

/* As fy_curl_pipeline_new(): a total timeout must leave room for one
 * attempt. */
static int check_timeouts(const fetch_cfg_t *c) {
  if (c->total.timeout_ms == 0 || c->attempt.timeout_ms == 0 ||
      c->total.timeout_ms >= c->attempt.timeout_ms)
    return FETCH_EXIT_OK;
  fprintf(stderr,
          FETCH_PROG ": --timeout %llu is shorter than --attempt-timeout "
                     "%llu\n",
          (unsigned long long)c->total.timeout_ms,
          (unsigned long long)c->attempt.timeout_ms);
  return FETCH_EXIT_USAGE;
}

static int make_pipeline(fy_ctx_t *ctx, fetch_stack_t *s) {
  fy_policy_t *layers[4];
  size_t n = 0;
  int rc;
  if (s->total != NULL)
    layers[n++] = fy_timeout_policy(s->total);
  layers[n++] = fy_retry_policy(s->retry);
  if (s->hosts != NULL)
    layers[n++] = fy_curl_hosts_policy(s->hosts);
  layers[n++] = fy_timeout_policy(s->attempt);
  rc = fy_pipeline_new(ctx, layers, n, &s->pipeline);
  if (rc != 0) {
    fprintf(stderr, FETCH_PROG ": cannot create the pipeline: %s\n",
            fy_strerror(rc));
    return FETCH_EXIT_INTERNAL;
  }
  return FETCH_EXIT_OK;
}

int fetch_stack_new(fy_ctx_t *ctx, const fetch_opts_t *o,
                    fy_curl_host_state_fn on_state, void *user_data,
                    fetch_stack_t *s) {
  fetch_cfg_t cfg;
  void *parts[FETCH_PART__COUNT] = {NULL};
  int p, rc;

  memset(s, 0, sizeof(*s));
  cfg_defaults(&cfg);
  cfg_apply(&cfg, o);
  cfg.hosts.on_state_change = on_state;
  cfg.hosts.user_data = user_data;
  rc = check_no_breaker(o);
  if (rc == FETCH_EXIT_OK)
    rc = check_burst(&cfg);
  if (rc == FETCH_EXIT_OK)
    rc = check_timeouts(&cfg);
  if (rc != FETCH_EXIT_OK)
    return rc;
  /* Every option that can be checked is, before anything is made. */
  for (p = 0; p < FETCH_PART__COUNT; p++) {
    if (p == FETCH_PART_HOSTS && o->no_breaker)
      continue;
    rc = part_check((fetch_part_t)p, &cfg);
    if (rc < 0)
      return part_failed((fetch_part_t)p, o, rc);
  }
  /* Whatever is made before a failure is closed with the context. */
  for (p = 0; p < FETCH_PART__COUNT; p++) {
    if (p == FETCH_PART_HOSTS && o->no_breaker)
      continue;
    rc = part_new(ctx, (fetch_part_t)p, &cfg, &parts[p]);
    if (rc != 0)
      return part_failed((fetch_part_t)p, o, rc);
  }
  s->curl = parts[FETCH_PART_CURL];
  s->total = parts[FETCH_PART_TOTAL];
  s->retry = parts[FETCH_PART_RETRY];
  s->hosts = parts[FETCH_PART_HOSTS];
  s->attempt = parts[FETCH_PART_ATTEMPT];
  return make_pipeline(ctx, s);
}
