/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * Per-host policies and the default HTTP pipeline.
 *
 * The per-host policy is one pipeline stage holding a bounded table of
 * hosts (scheme://host:port), each with a circuit breaker made on first use
 * from a template.  It drives the breakers through their synchronous
 * acquire/record API, so one pipeline serves every host.
 *
 * Rate limits.  One limiter serves the whole table, keyed by the same host
 * key (a limiter holds many keys in a bounded table of its own, so nothing
 * is made per host).  It is asked before the breaker: a call that must wait
 * for tokens holds no breaker permit meanwhile, so a half-open breaker's
 * few trial permits are never tied up by calls that are only waiting.  A
 * 429 answered with a Retry-After holds the host's key in the same limiter
 * (fy_limiter_hold), so that every call to that host, not only the one
 * that was told, stays away until the hint has passed.  Without a rate in
 * the template the limiter still exists, with a rate no client reaches,
 * so that the holds have somewhere to live; only max_hold_ms 0 and no rate
 * leave it out.
 *
 * Lifetimes.  A host is evicted (least recently used first) when a new one
 * needs its room.  A host with calls in flight still holds their permits:
 * it leaves the table at once but stays alive, "busy", until the last of
 * them has recorded its outcome; only then is its breaker closed.  When the
 * policy closes, every breaker is closed and forgotten by the hosts, and
 * outcomes that arrive later are not recorded: a breaker of a closing
 * policy (or context) may be freed at any turn of the loop.
 *
 * So the hosts must forget their breakers before anything else can close
 * them, and the only other closer is the context.  The table is attached
 * to the context (ctx.h, "Attachments"): its wind-down hook forgets every
 * breaker, and attachments are wound down before any policy is.  Whatever
 * order the context then winds its policies down in, no host holds a
 * breaker that the context closed; and no breaker is made afterwards (a
 * closing context refuses new policies). */
#include <stdio.h>

#include "curl_int.h"

typedef struct host_s host_t;

struct host_s {
  host_t *hnext;           /* hash chain */
  host_t *prev;            /* LRU list (most recent first) or busy list */
  host_t *next;
  fy_curl_hosts_t *hosts;
  fy_breaker_t *breaker;   /* NULL once forgotten (policy closing) */
  size_t frames;           /* calls holding it: a permit, or a wait */
  size_t len;              /* of key */
  uint32_t hash;
  int evicted;
  char key[];
};

struct fy_curl_hosts_s {
  fy_policy_t *policy;
  fy_ctx_t *ctx;
  fy_breaker_opts_t tmpl;      /* the user's template */
  fy_curl_key_fn key;
  fy_curl_host_state_fn on_state_change;
  void *user_data;
  host_t **buckets;
  uint32_t nbuckets;           /* a power of two */
  uint32_t max_hosts;
  host_t *lru_head;            /* most recently used */
  host_t *lru_tail;
  host_t *busy;                /* evicted, permits still out */
  fy_curl_hosts_stats_t stats;
  fy_attachment_t attach;      /* told first when the context closes */
  fy_limiter_t *limiter;       /* NULL: none, or forgotten (closing) */
  uint64_t cost;               /* tokens per call */
  uint64_t max_hold_ms;        /* cap of a 429's hold; 0: no holds */
  int wait;                    /* over the limit: wait (1) or refuse */
};

typedef struct hosts_frame_s {
  host_t *host;
  fy_frame_t *frame;
  fy_breaker_permit_t permit;
  int waiting;                 /* its fy_limit_wait_t is pending */
} hosts_frame_t;

/* The frame of a table whose limiter makes calls wait: the wait lives in
 * the frame, as a uv_req_t lives in its caller's struct.  Only such a
 * table pays for its size (it holds a copy of the key). */
typedef struct hosts_wait_frame_s {
  hosts_frame_t base;
  fy_limit_wait_t wait;
} hosts_wait_frame_t;

/* ---- the table --------------------------------------------------------- */

static uint32_t hash_key(const char *s) { return fy_curl__key_hash(s); }

static host_t **bucket(fy_curl_hosts_t *h, uint32_t hash) {
  return &h->buckets[hash & (h->nbuckets - 1)];
}

static host_t *lookup(fy_curl_hosts_t *h, const char *key, uint32_t hash) {
  host_t *e;
  for (e = *bucket(h, hash); e != NULL; e = e->hnext)
    if (e->hash == hash && strcmp(e->key, key) == 0)
      return e;
  return NULL;
}

static void lru_unlink(fy_curl_hosts_t *h, host_t *e) {
  if (e->prev != NULL)
    e->prev->next = e->next;
  else
    h->lru_head = e->next;
  if (e->next != NULL)
    e->next->prev = e->prev;
  else
    h->lru_tail = e->prev;
  e->prev = e->next = NULL;
}

static void lru_push_front(fy_curl_hosts_t *h, host_t *e) {
  e->prev = NULL;
  e->next = h->lru_head;
  if (h->lru_head != NULL)
    h->lru_head->prev = e;
  else
    h->lru_tail = e;
  h->lru_head = e;
}

static void busy_unlink(fy_curl_hosts_t *h, host_t *e) {
  if (e->prev != NULL)
    e->prev->next = e->next;
  else
    h->busy = e->next;
  if (e->next != NULL)
    e->next->prev = e->prev;
  e->prev = e->next = NULL;
}

static void host_free(host_t *e) {
  if (e->breaker != NULL)
    (void)fy_breaker_close(e->breaker, NULL, NULL);
  fyc_free(e);
}

static void hash_unlink(fy_curl_hosts_t *h, host_t *e) {
  host_t **pp;
  for (pp = bucket(h, e->hash); *pp != NULL; pp = &(*pp)->hnext) {
    if (*pp == e) {
      *pp = e->hnext;
      break;
    }
  }
  e->hnext = NULL;
}

/* Take |e| out of the table.  Idle: freed now.  Busy: kept until its last
 * permit comes back (release_host). */
static void evict(fy_curl_hosts_t *h, host_t *e) {
  hash_unlink(h, e);
  lru_unlink(h, e);
  h->stats.hosts--;
  h->stats.evicted++;
  if (e->frames == 0) {
    host_free(e);
    return;
  }
  e->evicted = 1;
  e->next = h->busy;
  if (h->busy != NULL)
    h->busy->prev = e;
  h->busy = e;
  h->stats.evicted_busy++;
}

static void release_host(fy_curl_hosts_t *h, host_t *e) {
  if (--e->frames > 0 || !e->evicted)
    return;
  busy_unlink(h, e);
  h->stats.evicted_busy--;
  host_free(e);
}

/* ---- the breakers' callbacks ------------------------------------------- */

static void on_host_state(fy_breaker_state_t from, fy_breaker_state_t to,
                          void *user_data) {
  host_t *e = user_data;
  fy_curl_hosts_t *h = e->hosts;
  if (h->tmpl.on_state_change != NULL)
    h->tmpl.on_state_change(from, to, h->tmpl.user_data);
  if (h->on_state_change != NULL)
    h->on_state_change(h, e->key, from, to, h->user_data);
}

/* The template's callbacks share one user_data; each host's breaker gets
 * the host instead, so these pass the template's along. */
static fy_outcome_t on_host_classify(int status, void *user_data) {
  fy_curl_hosts_t *h = ((host_t *)user_data)->hosts;
  return h->tmpl.classify(status, h->tmpl.user_data);
}

static int on_host_trip(const fy_breaker_counts_t *counts, void *user_data) {
  fy_curl_hosts_t *h = ((host_t *)user_data)->hosts;
  return h->tmpl.ready_to_trip(counts, h->tmpl.user_data);
}

static void breaker_opts(fy_curl_hosts_t *h, host_t *e, char *name,
                         fy_breaker_opts_t *o) {
  *o = h->tmpl;
  snprintf(name, FY_NAME_MAX + 1, "%s:%s", fy_policy_name(h->policy),
           e->key);
  o->name = name;
  o->user_data = e;
  o->on_state_change = on_host_state;
  o->classify = h->tmpl.classify != NULL ? on_host_classify : NULL;
  o->ready_to_trip = h->tmpl.ready_to_trip != NULL ? on_host_trip : NULL;
}

static int host_new(fy_curl_hosts_t *h, const char *key, uint32_t hash,
                    host_t **out) {
  char name[FY_NAME_MAX + 1];
  fy_breaker_opts_t o;
  size_t n = strlen(key);
  host_t *e;
  int rc;

  if (h->stats.hosts >= h->max_hosts && h->lru_tail != NULL)
    evict(h, h->lru_tail);
  e = fyc_calloc(1, sizeof(*e) + n + 1);
  if (e == NULL)
    return UV_ENOMEM;
  memcpy(e->key, key, n + 1);
  e->len = n;
  e->hosts = h;
  e->hash = hash;
  breaker_opts(h, e, name, &o);
  rc = fy_breaker_new(h->ctx, &o, &e->breaker);
  if (rc != 0) {
    fyc_free(e);
    return rc;
  }
  e->hnext = *bucket(h, hash);
  *bucket(h, hash) = e;
  lru_push_front(h, e);
  h->stats.hosts++;
  h->stats.created++;
  *out = e;
  return 0;
}

/* ---- keys -------------------------------------------------------------- */

/* Printable ASCII, non-empty, terminated within |len|. */
static int key_valid(const char *key, size_t len) {
  size_t i;
  for (i = 0; i < len && key[i] != '\0'; i++)
    if ((unsigned char)key[i] <= 0x20 || (unsigned char)key[i] >= 0x7f)
      return 0;
  return i > 0 && i < len;
}

/* The call's key and its hash.  A request's own key is used in place
 * (fy_curl_req_set_url() checked it and hashed it); a key function's goes
 * into |buf|, and is checked here. */
static int call_key(fy_curl_hosts_t *h, fy_call_t *call, char *buf,
                    size_t len, const char **key, uint32_t *hash) {
  const fy_curl_req_t *req;
  int rc;
  buf[0] = '\0';
  *key = buf;
  if (h->key != NULL) {
    rc = h->key(call, buf, len, h->user_data);
    buf[len - 1] = '\0';
    if (rc < 0)
      return rc;
    if (!key_valid(buf, len))
      return FY_EKEY;
    *hash = hash_key(buf);
    return 0;
  }
  /* Only a call that fy_curl_start() made embeds a request. */
  if (call == NULL || call->op != &fy_curl__op)
    return FY_EKEY;
  req = fy_container_of(call, fy_curl_req_t, call);
  if (req->host_[0] == '\0')
    return FY_EKEY; /* no URL was set */
  *key = req->host_;
  *hash = req->host_hash_;
  return 0;
}

/* The key as the detail shows it: truncated, and sanitised in case a user
 * key function returned something odd. */
static void detail_key(fy_detail_t *d, const char *key) {
  size_t i;
  for (i = 0; i + 1 < sizeof(d->key) && key[i] != '\0'; i++)
    d->key[i] = ((unsigned char)key[i] <= 0x20 ||
                 (unsigned char)key[i] >= 0x7f)
                    ? '?'
                    : key[i];
  d->key[i] = '\0';
}

/* ---- the host's limit -------------------------------------------------- */

/* The limiter holds keys of at most FY_LIMIT_KEY_MAX bytes, and a host key
 * may be longer (a DNS name of 253 bytes with its scheme and port).  Such a
 * key is cut and ends with "#" and a 64-bit FNV-1a digest of the whole key,
 * so that two long hosts differing only past the cut still have buckets of
 * their own: it is never refused, and never merged with a neighbour's by
 * accident.  Returns the limiter's key of |e| and its length. */
#define LONG_KEY_HEAD (FY_LIMIT_KEY_MAX - 17u)

static const char *limit_key(const host_t *e, char buf[FY_LIMIT_KEY_MAX],
                             size_t *len) {
  static const char hex[] = "0123456789abcdef";
  uint64_t d = 14695981039346656037ull;
  size_t i;
  if (e->len <= FY_LIMIT_KEY_MAX) {
    *len = e->len;
    return e->key;
  }
  for (i = 0; i < e->len; i++) {
    d ^= (unsigned char)e->key[i];
    d *= 1099511628211ull;
  }
  memcpy(buf, e->key, LONG_KEY_HEAD);
  buf[LONG_KEY_HEAD] = '#';
  for (i = 0; i < 16; i++)
    buf[LONG_KEY_HEAD + 1 + i] = hex[(d >> (60 - 4 * i)) & 0xf];
  *len = FY_LIMIT_KEY_MAX;
  return buf;
}

/* The detail of a call the host's limit refused: as the limiter's own
 * stage writes it (by_kind "limiter", the hint, the figures in n[]), with
 * the host key. */
static void limit_detail(fy_curl_hosts_t *h, fy_frame_t *f, int rc,
                         const host_t *e, const fy_limit_verdict_t *v) {
  fy_detail_t *d = fy_frame_verdict(f, h->policy);
  d->by_kind = "limiter";
  /* NULL once the limiter was forgotten: it is about to go. */
  d->by_name = h->limiter != NULL
                   ? fy_policy_name(fy_limiter_policy(h->limiter))
                   : NULL;
  d->cause = rc;
  d->state = rc;
  if (v != NULL) {
    d->retry_after_ms = v->retry_after_ms;
    d->n[0] = v->limit;
    d->n[1] = v->remaining;
    d->n[2] = v->reset_ms;
  }
  detail_key(d, e->key);
}

static int pass_breaker(fy_curl_hosts_t *h, fy_frame_t *f, hosts_frame_t *hf);

/* The wait of a call over its host's limit ended: the tokens are taken
 * (0), or the wait was cancelled or the limiter closed (UV_ECANCELED).
 * Runs from the loop, never inside a hook of this frame. */
static void on_limit_waited(fy_limit_wait_t *w, int status) {
  hosts_wait_frame_t *wf = fy_container_of(w, hosts_wait_frame_t, wait);
  hosts_frame_t *hf = &wf->base;
  fy_frame_t *f = hf->frame;
  fy_curl_hosts_t *h = fy_policy_impl(fy_frame_policy(f));
  host_t *e = hf->host;
  int rc = status;
  hf->waiting = 0;
  if (rc == 0 && fy_frame_is_cancelled_above(f))
    rc = UV_ECANCELED; /* the caller left while the tokens came */
  if (rc == 0) {
    rc = pass_breaker(h, f, hf);
    if (rc == 0)
      return;
  } else {
    limit_detail(h, f, rc, e, NULL);
    hf->host = NULL;
    release_host(h, e);
  }
  fy_frame_done(f, rc);
}

/* The host's limit: 0 to go on, 1 when the call now waits for its tokens,
 * or a refusal (the detail filled). */
static int pass_limit(fy_curl_hosts_t *h, fy_frame_t *f, hosts_frame_t *hf) {
  char buf[FY_LIMIT_KEY_MAX];
  host_t *e = hf->host;
  fy_limit_verdict_t v;
  uint64_t deadline, now, timeout = 0;
  const char *key;
  size_t len;
  int rc;

  key = limit_key(e, buf, &len);
  rc = fy_limiter_take(h->limiter, key, len, h->cost, &v);
  if (rc == 0)
    return 0;
  if (rc != FY_ERATELIMITED || !h->wait) {
    limit_detail(h, f, rc, e, rc == FY_ERATELIMITED ? &v : NULL);
    return rc;
  }
  /* Wait no later than the call's own deadline (a total timeout above):
   * tokens that come after it are refused now rather than waited for. */
  deadline = fy_frame_deadline(f);
  if (deadline != FY_TIME_NEVER) {
    now = fy_ctx_now(fy_frame_ctx(f));
    if (deadline <= now) {
      limit_detail(h, f, FY_ERATELIMITED, e, &v);
      return FY_ERATELIMITED;
    }
    timeout = deadline - now;
  }
  rc = fy_limiter_wait(h->limiter, &((hosts_wait_frame_t *)hf)->wait, key,
                       len, h->cost, timeout, on_limit_waited, &v);
  if (rc != 0) {
    limit_detail(h, f, rc, e, rc == FY_ERATELIMITED ? &v : NULL);
    return rc;
  }
  hf->waiting = 1;
  return 1;
}

/* A 429 with a Retry-After hint: hold the host off for the hint, at most
 * max_hold_ms, so that the calls that were not told stay away too. */
static void feed_back(fy_curl_hosts_t *h, host_t *e, fy_frame_t *f,
                      fy_frame_t *child, int status) {
  char buf[FY_LIMIT_KEY_MAX];
  fy_call_t *call;
  uint64_t hint;
  const char *key;
  size_t len;
  if (h->limiter == NULL || h->max_hold_ms == 0 ||
      fy_curl_http_code(status) != 429)
    return;
  /* The attempt's hint reaches here through the call's detail (written
   * when the attempt reported) or through the child itself. */
  hint = child != NULL ? fy_frame_retry_after(child) : 0;
  call = fy_frame_call(f);
  if (call != NULL && call->detail.retry_after_ms > hint)
    hint = call->detail.retry_after_ms;
  if (hint == 0)
    return;
  if (hint > h->max_hold_ms)
    hint = h->max_hold_ms;
  key = limit_key(e, buf, &len);
  (void)fy_limiter_hold(h->limiter, key, len, hint);
}

/* ---- the policy -------------------------------------------------------- */

/* The host's breaker, then the layer below.  0, or a refusal (the detail
 * filled, the host given back). */
static int pass_breaker(fy_curl_hosts_t *h, fy_frame_t *f, hosts_frame_t *hf) {
  host_t *e = hf->host;
  fy_detail_t refusal;
  fy_detail_t *d;
  int rc;
  if (e->breaker == NULL) {
    rc = FY_ECLOSED; /* forgotten: the context is closing */
    d = fy_frame_verdict(f, h->policy);
    d->cause = rc;
    detail_key(d, e->key);
    hf->host = NULL;
    release_host(h, e);
    return rc;
  }
  rc = fy_breaker_acquire(e->breaker, &hf->permit, &refusal);
  if (rc != 0) {
    d = fy_frame_verdict(f, h->policy);
    d->state = refusal.state;
    d->retry_after_ms = refusal.retry_after_ms;
    memcpy(d->n, refusal.n, sizeof(d->n));
    detail_key(d, e->key);
    hf->host = NULL;
    release_host(h, e);
    return rc;
  }
  rc = fy_frame_spawn(f, NULL);
  if (rc != 0) {
    /* Nothing ran below: the permit counts as neither. */
    if (e->breaker != NULL)
      fy_breaker_release(e->breaker, &hf->permit);
    hf->host = NULL;
    release_host(h, e);
  }
  return rc;
}

static int hosts_start(fy_policy_t *p, fy_frame_t *f) {
  fy_curl_hosts_t *h = fy_policy_impl(p);
  hosts_frame_t *hf = fy_frame_state(f);
  char buf[FY_CURL_HOST_MAX + 1];
  const char *key;
  fy_detail_t *d;
  uint32_t hash = 0;
  host_t *e;
  int rc;

  rc = call_key(h, fy_frame_call(f), buf, sizeof(buf), &key, &hash);
  if (rc == 0) {
    e = lookup(h, key, hash);
    if (e != NULL) {
      if (h->lru_head != e) {
        lru_unlink(h, e);
        lru_push_front(h, e);
      }
    } else {
      rc = host_new(h, key, hash, &e);
    }
  }
  if (rc != 0) {
    d = fy_frame_verdict(f, p);
    d->cause = rc;
    detail_key(d, key);
    return rc;
  }
  /* Hold the host across the limit and the acquire: the breaker's
   * state-change callback is user code, which may do anything but free it
   * while it is held, and a waiting call needs its key. */
  e->frames++;
  hf->host = e;
  hf->frame = f;
  if (h->limiter != NULL) {
    rc = pass_limit(h, f, hf);
    if (rc == 1)
      return 0; /* waiting: on_limit_waited() goes on */
    if (rc != 0) {
      hf->host = NULL;
      release_host(h, e);
      return rc;
    }
  }
  return pass_breaker(h, f, hf);
}

static void hosts_child_done(fy_policy_t *p, fy_frame_t *f,
                             fy_frame_t *child, int status) {
  fy_curl_hosts_t *h = fy_policy_impl(p);
  hosts_frame_t *hf = fy_frame_state(f);
  host_t *e = hf->host;
  hf->host = NULL;
  if (e != NULL) {
    if (e->breaker != NULL)
      fy_breaker_record(e->breaker, &hf->permit, status);
    feed_back(h, e, f, child, status);
    release_host(h, e);
  }
  fy_frame_adopt_result(f, child);
  fy_frame_done(f, status);
}

/* A waiting call is cancelled through its wait, which calls back with
 * UV_ECANCELED from the loop; a running one through its child. */
static void hosts_cancel(fy_policy_t *p, fy_frame_t *f) {
  hosts_frame_t *hf = fy_frame_state(f);
  (void)p;
  if (hf->waiting) {
    (void)fy_limiter_wait_cancel(&((hosts_wait_frame_t *)hf)->wait);
    return;
  }
  fy_frame_cancel_children(f);
}

/* Close every breaker now and forget it: outcomes still to come are not
 * recorded (see the top of the file).  Runs when the policy closes and when
 * the context starts closing, whichever comes first; the second time there
 * is nothing left to forget. */
static void forget_breakers(fy_curl_hosts_t *h) {
  host_t *e;
  /* The limiter too: closing it completes the waiting calls' waits with
   * UV_ECANCELED, from the loop, and those calls end with it. */
  if (h->limiter != NULL) {
    (void)fy_limiter_close(h->limiter, NULL, NULL);
    h->limiter = NULL;
  }
  for (e = h->lru_head; e != NULL; e = e->next) {
    (void)fy_breaker_close(e->breaker, NULL, NULL);
    e->breaker = NULL;
  }
  for (e = h->busy; e != NULL; e = e->next) {
    (void)fy_breaker_close(e->breaker, NULL, NULL);
    e->breaker = NULL;
  }
}

static void hosts_close(fy_policy_t *p) {
  forget_breakers(fy_policy_impl(p));
}

static void hosts_ctx_closing(fy_attachment_t *a) {
  forget_breakers(fy_container_of(a, fy_curl_hosts_t, attach));
}

static void hosts_destroy(fy_policy_t *p) {
  fy_curl_hosts_t *h = fy_policy_impl(p);
  host_t *e;
  /* No frame is left: every host is idle. */
  while ((e = h->lru_head) != NULL) {
    lru_unlink(h, e);
    host_free(e);
  }
  while ((e = h->busy) != NULL) {
    busy_unlink(h, e);
    host_free(e);
  }
  fyc_free(h->buckets);
  h->buckets = NULL;
  fy_ctx_detach(&h->attach);
}

static const fy_policy_vtable_t hosts_vtable = {
    .kind = "hosts",
    .frame_size = sizeof(hosts_frame_t),
    .start = hosts_start,
    .child_done = hosts_child_done,
    .cancel = hosts_cancel,
    .close = hosts_close,
    .destroy = hosts_destroy,
};

/* The same with room for a wait in each frame. */
static const fy_policy_vtable_t hosts_wait_vtable = {
    .kind = "hosts",
    .frame_size = sizeof(hosts_wait_frame_t),
    .start = hosts_start,
    .child_done = hosts_child_done,
    .cancel = hosts_cancel,
    .close = hosts_close,
    .destroy = hosts_destroy,
};

void fy_curl_hosts_opts_init(fy_curl_hosts_opts_t *opts) {
  if (opts == NULL)
    return;
  memset(opts, 0, sizeof(*opts));
  opts->max_hosts = FY_CURL_HOSTS_DEFAULT;
  fy_breaker_opts_init(&opts->breaker);
  opts->breaker.classify = fy_curl_breaker_classify;
  opts->max_hold_ms = FY_CURL_HOLD_DEFAULT_MS;
}

/* The options of the table's limiter: the template's, or a rate no client
 * reaches (10^9 per ms) that only holds ever refuse; with the table's own
 * bounds and name.  Returns 0 when the table needs no limiter. */
static int limiter_opts(const fy_curl_hosts_opts_t *opts, const char *name,
                        fy_limiter_opts_t *lo) {
  if (opts->limit == NULL && opts->max_hold_ms == 0)
    return 0;
  if (opts->limit != NULL) {
    *lo = *opts->limit;
  } else {
    fy_limiter_opts_init(lo);
    lo->rate = FY_LIMIT_RATE_MAX;
    lo->interval_ms = 1;
    lo->burst = FY_LIMIT_BURST_MAX;
  }
  lo->max_keys = opts->max_hosts;
  lo->max_key_len = FY_LIMIT_KEY_MAX;
  lo->key = NULL;
  lo->user_data = NULL;
  lo->name = name;
  return 1;
}

int fy_curl_hosts_opts_check(const fy_curl_hosts_opts_t *opts) {
  fy_limiter_opts_t lo;
  int rc;
  if (opts == NULL)
    return UV_EINVAL;
  if (opts->max_hosts < 1 || opts->max_hosts > FY_CURL_HOSTS_MAX)
    return UV_EINVAL;
  if (opts->max_hold_ms > FY_CURL_RETRY_AFTER_MAX)
    return UV_EINVAL;
  /* Every host's breaker is made from the template on first use: a
   * template its constructor would refuse must be refused now, not on the
   * first call. */
  rc = fy_breaker_opts_check(&opts->breaker);
  if (rc == 0 && limiter_opts(opts, NULL, &lo))
    rc = fy_limiter_opts_check(&lo);
  return rc;
}

int fy_curl_hosts_new(fy_ctx_t *ctx, const fy_curl_hosts_opts_t *opts,
                      fy_curl_hosts_t **out) {
  fy_curl_hosts_opts_t defaults;
  char lname[FY_NAME_MAX + 1];
  fy_limiter_opts_t lo;
  fy_policy_t *p;
  fy_curl_hosts_t *h;
  uint32_t nb = 1;
  int limited, rc;

  if (out == NULL)
    return UV_EINVAL;
  *out = NULL;
  if (ctx == NULL)
    return UV_EINVAL;
  if (opts == NULL) {
    fy_curl_hosts_opts_init(&defaults);
    opts = &defaults;
  }
  if ((rc = fy_curl_hosts_opts_check(opts)) != 0)
    return rc;
  while (nb < opts->max_hosts)
    nb <<= 1;
  snprintf(lname, sizeof(lname), "%s.limit",
           opts->name != NULL ? opts->name : "hosts");
  limited = limiter_opts(opts, lname, &lo);
  rc = fy_policy_new(ctx,
                     limited && lo.wait ? &hosts_wait_vtable : &hosts_vtable,
                     sizeof(*h), opts->name != NULL ? opts->name : "hosts",
                     &p);
  if (rc != 0)
    return rc;
  h = fy_policy_impl(p);
  h->buckets = fyc_calloc(nb, sizeof(*h->buckets));
  if (h->buckets == NULL) {
    fy_policy_close(p, NULL, NULL);
    return UV_ENOMEM;
  }
  if (limited) {
    rc = fy_limiter_new(ctx, &lo, &h->limiter);
    if (rc != 0) {
      fy_policy_close(p, NULL, NULL);
      return rc;
    }
    h->cost = lo.cost != 0 ? lo.cost : 1;
    h->wait = lo.wait;
    h->max_hold_ms = opts->max_hold_ms;
  }
  /* Cannot fail: the policy was just made, so the context is not closing.
   * (The policy is always destroyed before the context ends, which
   * detaches it: no destroy hook.) */
  rc = fy_ctx_attach(ctx, &h->attach, hosts_ctx_closing, NULL);
  if (rc != 0) {
    (void)fy_limiter_close(h->limiter, NULL, NULL);
    fy_policy_close(p, NULL, NULL);
    return rc;
  }
  h->policy = p;
  h->ctx = ctx;
  h->nbuckets = nb;
  h->max_hosts = opts->max_hosts;
  h->tmpl = opts->breaker;
  h->tmpl.name = NULL; /* replaced per host */
  h->key = opts->key;
  h->on_state_change = opts->on_state_change;
  h->user_data = opts->user_data;
  *out = h;
  return 0;
}

fy_policy_t *fy_curl_hosts_policy(fy_curl_hosts_t *h) {
  return h != NULL ? h->policy : NULL;
}

int fy_curl_hosts_close(fy_curl_hosts_t *h, fy_close_cb cb,
                        void *user_data) {
  if (h == NULL)
    return 0;
  return fy_policy_close_as(h->policy, h, cb, user_data);
}

fy_limiter_t *fy_curl_hosts_limiter(fy_curl_hosts_t *h) {
  if (h == NULL || fy_policy_is_closing(h->policy))
    return NULL; /* about to be closed with the table */
  return h->limiter;
}

fy_breaker_t *fy_curl_hosts_breaker(fy_curl_hosts_t *h, const char *host) {
  host_t *e;
  if (h == NULL || host == NULL || h->buckets == NULL)
    return NULL;
  e = lookup(h, host, hash_key(host));
  return e != NULL ? e->breaker : NULL;
}

void fy_curl_hosts_foreach(fy_curl_hosts_t *h,
                           void (*fn)(const char *host, fy_breaker_t *b,
                                      void *user_data),
                           void *user_data) {
  host_t *e, *next;
  if (h == NULL || fn == NULL)
    return;
  for (e = h->lru_head; e != NULL; e = next) {
    next = e->next;
    if (e->breaker != NULL)
      fn(e->key, e->breaker, user_data);
  }
}

void fy_curl_hosts_stats(const fy_curl_hosts_t *h,
                         fy_curl_hosts_stats_t *out) {
  if (out == NULL)
    return;
  if (h != NULL)
    *out = h->stats;
  else
    memset(out, 0, sizeof(*out));
}

/* ---- the default pipeline ---------------------------------------------- */

struct fy_curl_pipeline_s {
  fy_attachment_t attach; /* freed by the context if never closed */
  fy_close_group_t group; /* the parts' close callbacks */
  fy_ctx_t *ctx;
  fy_pipeline_t *pipeline;
  fy_bulkhead_t *bulkhead;
  fy_timeout_t *total;
  fy_retry_t *retry;
  fy_curl_hosts_t *hosts;
  fy_timeout_t *per_try;
  int closing;          /* fy_curl_pipeline_close() was called */
  fy_close_cb close_cb;
  void *close_ud;
  fy_curl_class_t cls;  /* the classifiers' user_data */
};

void fy_curl_pipeline_opts_init(fy_curl_pipeline_opts_t *opts) {
  if (opts == NULL)
    return;
  memset(opts, 0, sizeof(*opts));
  fy_preset_opts_init(&opts->preset, FY_PRESET_HTTP_CLIENT);
  opts->preset.require_idempotent = 1;
  opts->max_hosts = FY_CURL_HOSTS_DEFAULT;
  opts->max_retry_after_ms = 30000;
  opts->max_hold_ms = FY_CURL_HOLD_DEFAULT_MS;
}

/* The parts use |cls| (their classifiers' user_data) until they are gone,
 * so the bundle goes last: once every part's close callback has come, or,
 * never closed (or its close returned FY_ECLOSED), at the context's end. */
static void bundle_free(fy_curl_pipeline_t *b) {
  fy_ctx_detach(&b->attach);
  fyc_free(b);
}

static void bundle_ctx_gone(fy_attachment_t *a) {
  fyc_free(fy_container_of(a, fy_curl_pipeline_t, attach));
}

static void on_parts_closed(fy_close_group_t *g) {
  fy_curl_pipeline_t *b = fy_container_of(g, fy_curl_pipeline_t, group);
  if (b->close_cb != NULL)
    b->close_cb(b, b->close_ud);
  bundle_free(b);
}

/* The options of every part of the bundle. */
typedef struct bundle_parts_s {
  fy_preset_parts_t preset; /* the bulkhead and the total timeout */
  fy_retry_opts_t retry;
  fy_curl_hosts_opts_t hosts;
  fy_timeout_opts_t per_try;
  char hosts_name[FY_NAME_MAX + 1];
} bundle_parts_t;

/* The preset's parts, with the HTTP changes: the retry and every host's
 * breaker classify with the adapter's table (|cls|), the retry honours
 * Retry-After up to its own ceiling, the per-try timeout may watch the
 * first byte and idle gaps, and one breaker per host takes the place of
 * the breaker.  Returns 0 or fy_preset_parts()'s UV_EINVAL; the parts' own
 * options are not checked. */
static int bundle_parts(const fy_curl_pipeline_opts_t *o, fy_curl_class_t *cls,
                        bundle_parts_t *bp) {
  const fy_preset_parts_t *parts = &bp->preset;
  const char *prefix = o->preset.name;
  int rc;

  rc = fy_preset_parts(&o->preset, &bp->preset);
  if (rc != 0)
    return rc;
  bp->retry = parts->retry;
  bp->retry.max_retry_after_ms = o->max_retry_after_ms;
  bp->retry.is_retryable = fy_curl_retry_classify;
  bp->retry.user_data = cls;
  fy_curl_hosts_opts_init(&bp->hosts);
  snprintf(bp->hosts_name, sizeof(bp->hosts_name), "%s%shosts",
           prefix != NULL ? prefix : "", prefix != NULL ? "." : "");
  bp->hosts.name = bp->hosts_name;
  bp->hosts.max_hosts = o->max_hosts;
  bp->hosts.limit = o->host_limit;
  bp->hosts.max_hold_ms = o->max_hold_ms;
  bp->hosts.on_state_change = o->on_state_change;
  bp->hosts.user_data = o->user_data;
  bp->hosts.breaker.failure_threshold = parts->breaker.failure_threshold;
  bp->hosts.breaker.open_ms = parts->breaker.open_ms;
  bp->hosts.breaker.max_requests = parts->breaker.max_requests;
  bp->hosts.breaker.interval_ms = parts->breaker.interval_ms;
  bp->hosts.breaker.user_data = cls;
  bp->per_try = parts->per_try;
  bp->per_try.first_byte_ms = o->first_byte_ms;
  bp->per_try.idle_ms = o->idle_ms;
  return 0;
}

/* Every part's own check, in the order build() creates them. */
static int bundle_check(const bundle_parts_t *bp) {
  int rc;
  if (bp->preset.has_bulkhead &&
      (rc = fy_bulkhead_opts_check(&bp->preset.bulkhead)) != 0)
    return rc;
  if (bp->preset.has_total &&
      (rc = fy_timeout_opts_check(&bp->preset.total)) != 0)
    return rc;
  if ((rc = fy_retry_opts_check(&bp->retry)) != 0)
    return rc;
  if ((rc = fy_curl_hosts_opts_check(&bp->hosts)) != 0)
    return rc;
  return fy_timeout_opts_check(&bp->per_try);
}

int fy_curl_pipeline_opts_check(const fy_curl_pipeline_opts_t *opts) {
  bundle_parts_t bp;
  int rc;
  if (opts == NULL)
    return UV_EINVAL;
  rc = bundle_parts(opts, NULL, &bp);
  if (rc != 0)
    return rc;
  return bundle_check(&bp);
}

static int build(fy_curl_pipeline_t *b, const bundle_parts_t *bp) {
  const fy_preset_parts_t *parts = &bp->preset;
  int rc;

  if (parts->has_bulkhead &&
      (rc = fy_bulkhead_new(b->ctx, &parts->bulkhead, &b->bulkhead)) != 0)
    return rc;
  if (parts->has_total &&
      (rc = fy_timeout_new(b->ctx, &parts->total, &b->total)) != 0)
    return rc;
  if ((rc = fy_retry_new(b->ctx, &bp->retry, &b->retry)) != 0)
    return rc;
  if ((rc = fy_curl_hosts_new(b->ctx, &bp->hosts, &b->hosts)) != 0)
    return rc;
  return fy_timeout_new(b->ctx, &bp->per_try, &b->per_try);
}

/* What one part's close returned, counted by |g| when there is one. */
static void track(fy_close_group_t *g, int rc) {
  if (g != NULL)
    (void)fy_close_group_add(g, rc);
}

/* Close whatever exists.  With |g| the group counts the callbacks; without
 * (a failed construction) nobody waits for them. */
static void close_parts(fy_curl_pipeline_t *b, fy_close_group_t *g) {
  fy_close_cb cb = g != NULL ? fy_close_group_cb : NULL;
  if (b->pipeline != NULL)
    track(g, fy_pipeline_close(b->pipeline, cb, g));
  if (b->bulkhead != NULL)
    track(g, fy_bulkhead_close(b->bulkhead, cb, g));
  if (b->total != NULL)
    track(g, fy_timeout_close(b->total, cb, g));
  if (b->retry != NULL)
    track(g, fy_retry_close(b->retry, cb, g));
  if (b->hosts != NULL)
    track(g, fy_curl_hosts_close(b->hosts, cb, g));
  if (b->per_try != NULL)
    track(g, fy_timeout_close(b->per_try, cb, g));
}

int fy_curl_pipeline_new(fy_ctx_t *ctx, const fy_curl_pipeline_opts_t *opts,
                         fy_curl_pipeline_t **out) {
  fy_curl_pipeline_opts_t defaults;
  bundle_parts_t bp;
  fy_policy_t *layers[5];
  fy_curl_pipeline_t *b;
  size_t n = 0;
  int rc;

  if (out == NULL)
    return UV_EINVAL;
  *out = NULL;
  if (ctx == NULL)
    return UV_EINVAL;
  if (opts == NULL) {
    fy_curl_pipeline_opts_init(&defaults);
    opts = &defaults;
  }
  if ((rc = fy_curl_pipeline_opts_check(opts)) != 0)
    return rc;
  b = fyc_calloc(1, sizeof(*b));
  if (b == NULL)
    return UV_ENOMEM;
  b->ctx = ctx;
  if (opts->classes != NULL)
    b->cls = *opts->classes;
  else
    fy_curl_class_init(&b->cls);
  rc = fy_ctx_attach(ctx, &b->attach, NULL, bundle_ctx_gone);
  if (rc == 0)
    rc = bundle_parts(opts, &b->cls, &bp);
  if (rc == 0)
    rc = build(b, &bp);
  if (rc == 0) {
    if (b->bulkhead != NULL)
      layers[n++] = fy_bulkhead_policy(b->bulkhead);
    if (b->total != NULL)
      layers[n++] = fy_timeout_policy(b->total);
    layers[n++] = fy_retry_policy(b->retry);
    layers[n++] = fy_curl_hosts_policy(b->hosts);
    layers[n++] = fy_timeout_policy(b->per_try);
    rc = fy_pipeline_new(ctx, layers, n, &b->pipeline);
  }
  if (rc != 0) {
    /* The parts made so far are closed and never see a call: their
     * classifiers will not run, and the bundle can go now. */
    close_parts(b, NULL);
    bundle_free(b);
    return rc;
  }
  *out = b;
  return 0;
}

int fy_curl_pipeline_close(fy_curl_pipeline_t *b, fy_close_cb cb,
                           void *user_data) {
  if (b == NULL)
    return 0;
  if (b->closing)
    return FY_ECLOSED;
  b->closing = 1;
  b->close_cb = cb;
  b->close_ud = user_data;
  fy_close_group_init(&b->group);
  close_parts(b, &b->group);
  if (fy_close_group_wait(&b->group, on_parts_closed) != 0) {
    /* A part was already closing (the context is, or it was closed on its
     * own), and may still classify with |cls|: as for any close that
     * fails, nothing is freed and the callback will not run; the context
     * frees the bundle once every part is gone. */
    b->close_cb = NULL;
    return FY_ECLOSED;
  }
  return 0;
}

fy_pipeline_t *fy_curl_pipeline_get(const fy_curl_pipeline_t *b) {
  return b->pipeline;
}
fy_curl_hosts_t *fy_curl_pipeline_hosts(const fy_curl_pipeline_t *b) {
  return b->hosts;
}
fy_retry_t *fy_curl_pipeline_retry(const fy_curl_pipeline_t *b) {
  return b->retry;
}
fy_bulkhead_t *fy_curl_pipeline_bulkhead(const fy_curl_pipeline_t *b) {
  return b->bulkhead;
}
fy_timeout_t *fy_curl_pipeline_timeout(const fy_curl_pipeline_t *b,
                                       fy_timeout_scope_t scope) {
  return scope == FY_TIMEOUT_PER_TRY ? b->per_try : b->total;
}
