/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * The rate limiter's driver: the key table (src/sm/keytab.c) holds one
 * 16-byte state per key, the pure state machine (src/sm/limiter_sm.c)
 * decides on it, and this file binds both to a context: the synchronous
 * API, waits woken by a deadline at the instant their tokens are there,
 * and the pipeline stage.
 *
 * Waiting is a reservation: a wait takes its tokens at once, from the
 * key's future (the state machine moves the key's next free instant past
 * them), and its deadline fires when they become usable.  So waits of one
 * key complete in arrival order, a later take never jumps ahead of them,
 * and nothing polls. */
#include "policy_impl.h"

#include "keytab.h"
#include "limiter_sm.h"

/* The public bounds are the parts' own. */
_Static_assert(FY_LIMIT_RATE_MAX == FY__LIM_RATE_MAX &&
                   FY_LIMIT_BURST_MAX == FY__LIM_BURST_MAX &&
                   FY_LIMIT_INTERVAL_MAX == FY__LIM_INTERVAL_MAX,
               "limiter.h and limiter_sm.h bounds differ");
_Static_assert(FY_LIMIT_KEY_MAX == FY__KEYTAB_KEY_MAX &&
                   FY_LIMIT_KEYS_MAX == FY__KEYTAB_MAX_KEYS,
               "limiter.h and keytab.h bounds differ");

#define DEFAULT_RATE 100
#define DEFAULT_INTERVAL_MS 1000
#define DEFAULT_MAX_WAITERS 1024
#define DEFAULT_MAX_KEYS 100000
#define DEFAULT_MAX_KEY_LEN 64

struct fy_limiter_s {
  fy_policy_t *policy;
  fy_ctx_t *ctx;
  fy__limiter_sm_conf_t conf;
  fy__keytab_t tab;
  uint64_t max_tokens;
  uint64_t cost;
  uint64_t max_wait_ms; /* FY_TIME_NEVER: no bound */
  uint32_t max_waiters;
  uint32_t waiting; /* waiting calls and pending fy_limit_wait_t */
  int wait;
  fy_limit_key_fn key_fn;
  void *user_data;
  fy__queue_t waits; /* pending fy_limit_wait_t, for close */
};

/* ---- the key's state ---------------------------------------------------- */

static void verdict_out(const fy__limiter_sm_verdict_t *sv,
                        fy_limit_verdict_t *v) {
  if (v == NULL)
    return;
  v->retry_after_ms = sv->retry_after_ms;
  v->limit = sv->limit;
  v->remaining = sv->remaining;
  v->reset_ms = sv->reset_ms;
}

static void emit_key(fy_limiter_t *l, fy_event_type_t type, fy_call_t *call,
                     int status, const char *key, size_t len,
                     const fy__limiter_sm_verdict_t *sv) {
  char shown[FY__KEY_SANITIZED_SIZE];
  fy_event_t ev;
  if (!fy_policy_event_init(l->policy, &ev, type))
    return;
  fy__key_sanitize(key, len, shown, sizeof(shown));
  ev.call = call;
  ev.status = status;
  ev.key = shown;
  if (sv != NULL) {
    ev.delay_ms = sv->retry_after_ms;
    ev.value = (int64_t)sv->remaining;
  }
  fy_ctx_emit(l->ctx, &ev);
}

/* The entry of |key|, made when missing.  A key this limiter cannot hold
 * is FY_EKEY: refused, never let through. */
static int lookup(fy_limiter_t *l, const char *key, size_t len, uint64_t now,
                  fy__keytab_entry_t **e, int *fresh) {
  fy__keytab_evicted_t gone;
  int rc;
  if (key == NULL) {
    if (len > 0)
      return FY_EKEY;
    key = "";
  }
  /* What an eviction dropped is copied out only for a listener. */
  if (!FY__CTX_WANTS(l->ctx, FY_EV_EVICT))
    return fy__keytab_find_or_insert(&l->tab, key, len, now, e, fresh, NULL);
  gone.evicted = 0;
  rc = fy__keytab_find_or_insert(&l->tab, key, len, now, e, fresh, &gone);
  if (rc == 0 && gone.evicted)
    emit_key(l, FY_EV_EVICT, NULL, 0, gone.key, gone.len, NULL);
  return rc;
}

static void state_load(const fy__keytab_entry_t *e,
                       fy__limiter_sm_state_t *s) {
  s->a = e->value[0];
  s->b = e->value[1];
}

/* Write |s| back, or drop a key whose state was never written. */
static void state_store(fy_limiter_t *l, fy__keytab_entry_t *e, int fresh,
                        int written, const fy__limiter_sm_state_t *s) {
  if (!written) {
    if (fresh)
      fy__keytab_remove(&l->tab, e);
    return;
  }
  e->value[0] = s->a;
  e->value[1] = s->b;
  fy__keytab_set_idle_at(e, fy__limiter_sm_idle_at(&l->conf, s));
}

static int check_n(const fy_limiter_t *l, uint64_t n) {
  return n == 0 || n > l->max_tokens ? UV_EINVAL : 0;
}

/* Take |n| tokens of |key| now: 0, FY_ERATELIMITED, FY_EKEY, UV_ENOMEM.
 * |sv| is filled for a refusal, and for an allowance only when |always|:
 * the figures cost divisions that a plain allowance does not need. */
static int take(fy_limiter_t *l, const char *key, size_t len, uint64_t n,
                fy__limiter_sm_verdict_t *sv, int always) {
  uint64_t now = fy__ctx_now(l->ctx);
  fy__limiter_sm_state_t s;
  fy__keytab_entry_t *e;
  int fresh, rc;
  rc = lookup(l, key, len, now, &e, &fresh);
  if (rc != 0)
    return rc;
  if (!fresh)
    state_load(e, &s);
  rc = fy__limiter_sm_take(&l->conf, &s, fresh, now, n, always ? sv : NULL);
  if (rc == FY__LIM_DENIED && !always)
    (void)fy__limiter_sm_peek(&l->conf, &s, fresh, now, n, sv);
  state_store(l, e, fresh, rc == FY__LIM_ALLOWED, &s);
  if (rc == FY__LIM_ALLOWED)
    return 0;
  return rc == FY__LIM_DENIED ? FY_ERATELIMITED : rc;
}

/* A reservation: when its tokens are there, and the key's state before
 * and after it, to undo it if it is given up before then.  |evicted| is
 * the table's count of evictions then: a key evicted and made again could
 * come back to the |after| state by chance, with other requests counting
 * on it, so after any eviction nothing is undone. */
typedef struct booking_s {
  uint64_t at;
  uint64_t evicted;
  fy__limiter_sm_state_t before, after;
} booking_t;

/* Reserve |n| tokens of |key| for the earliest instant they are there, if
 * that is no later than |latest|: 0 with |bk| filled (bk->at <= now: at
 * once), else FY_ERATELIMITED with nothing taken, or FY_EKEY, UV_ENOMEM. */
static int reserve(fy_limiter_t *l, const char *key, size_t len, uint64_t n,
                   uint64_t latest, booking_t *bk,
                   fy__limiter_sm_verdict_t *sv) {
  uint64_t now = fy__ctx_now(l->ctx);
  fy__limiter_sm_state_t s;
  fy__keytab_entry_t *e;
  int fresh, rc;
  rc = lookup(l, key, len, now, &e, &fresh);
  if (rc != 0)
    return rc;
  if (!fresh)
    state_load(e, &s);
  bk->before = s;
  rc = fy__limiter_sm_reserve(&l->conf, &s, fresh, now, n, latest, &bk->at,
                              sv);
  state_store(l, e, fresh, rc == FY__LIM_ALLOWED, &s);
  bk->after = s;
  bk->evicted = l->tab.evicted;
  if (rc == FY__LIM_ALLOWED)
    return 0;
  return rc == FY__LIM_DENIED ? FY_ERATELIMITED : rc;
}

/* A wait gave its reservation up before its instant: undo it, if nothing
 * was decided for the key since (fy__limiter_sm_unreserve()). */
static void unreserve(fy_limiter_t *l, const char *key, size_t len,
                      const booking_t *bk) {
  uint64_t now = fy__ctx_now(l->ctx);
  fy__limiter_sm_state_t s;
  fy__keytab_entry_t *e = fy__keytab_find(&l->tab, key, len, now);
  if (e == NULL || bk->at <= now || bk->evicted != l->tab.evicted)
    return; /* the key may have been dropped meanwhile, or they are due */
  state_load(e, &s);
  fy__limiter_sm_unreserve(&s, &bk->before, &bk->after);
  state_store(l, e, 0, 1, &s);
}

/* The latest instant a wait starting now may end at, with |timeout_ms|
 * of its own (0 or FY_TIME_NEVER: none). */
static uint64_t wait_bound(const fy_limiter_t *l, uint64_t timeout_ms) {
  uint64_t now = fy__ctx_now(l->ctx);
  uint64_t bound = l->max_wait_ms;
  if (timeout_ms != 0 && timeout_ms < bound)
    bound = timeout_ms;
  return bound == FY_TIME_NEVER ? FY_TIME_NEVER : fy_time_add(now, bound);
}

/* ---- the pipeline stage ------------------------------------------------- */

enum {
  LIM_NEW = 0, /* start hook running */
  LIM_WAITING, /* tokens reserved, its deadline armed at |at| */
  LIM_RUNNING, /* its child runs */
  LIM_ENDED
};

typedef struct lim_frame_s {
  fy_frame_t *frame;
  fy_frame_t *child;
  int phase;
  booking_t bk;   /* its tokens */
  uint64_t since; /* when it started to wait */
  uint32_t len;
  char key[FY_LIMIT_KEY_MAX]; /* to give the tokens back on cancel */
} lim_frame_t;

/* The key of |call|: the key function's, the call's own, or "". */
static int call_key(fy_limiter_t *l, fy_call_t *call, const char **key,
                    size_t *len) {
  if (l->key_fn != NULL) {
    *len = 0;
    *key = l->key_fn(call, call->arg, len, l->user_data);
    return *key != NULL ? 0 : FY_EKEY;
  }
  *key = call->opts.key;
  *len = call->opts.key_len;
  if (*key == NULL) {
    if (*len > 0)
      return FY_EKEY;
    *key = "";
  }
  return 0;
}

/* The refused call's detail: the key as shown, the figures in n[]. */
static void fill_detail(fy_limiter_t *l, fy_detail_t *d, int rc,
                        const char *key, size_t len,
                        const fy__limiter_sm_verdict_t *sv) {
  d->state = rc;
  if (key != NULL)
    fy__key_sanitize(key, len, d->key, sizeof(d->key));
  if (sv != NULL) {
    d->retry_after_ms = sv->retry_after_ms;
    d->n[0] = sv->limit;
    d->n[1] = sv->remaining;
    d->n[2] = sv->reset_ms;
  } else {
    d->retry_after_ms = 0;
    d->n[0] = l->conf.burst;
  }
}

static void refuse_call(fy_limiter_t *l, fy_call_t *call, int rc,
                        const char *key, size_t len,
                        const fy__limiter_sm_verdict_t *sv) {
  if (call != NULL)
    fill_detail(l, fy_call_verdict(call, l->policy), rc, key, len, sv);
  emit_key(l, FY_EV_REJECT, call, rc, key != NULL ? key : "",
           key != NULL ? len : 0, sv);
}

static int lim_admit(fy_policy_t *p, fy_call_t *call, fy_frame_t *parent,
                     void *token) {
  fy_limiter_t *l = fy__policy_impl(p);
  fy__limiter_sm_verdict_t sv;
  const char *key;
  size_t len;
  int rc;
  (void)parent;
  (void)token;
  rc = call_key(l, call, &key, &len);
  if (rc != 0) {
    refuse_call(l, call, rc, NULL, 0, NULL);
    return rc;
  }
  rc = take(l, key, len, l->cost, &sv, FY__CTX_WANTS(l->ctx, FY_EV_ALLOW));
  if (rc == 0) {
    if (FY__CTX_WANTS(l->ctx, FY_EV_ALLOW))
      emit_key(l, FY_EV_ALLOW, call, 0, key, len, &sv);
    return 0;
  }
  if (rc == FY_ERATELIMITED && l->wait)
    return FY_ADMIT_WAIT; /* lim_start() reserves the tokens */
  refuse_call(l, call, rc, key, len, rc == FY_ERATELIMITED ? &sv : NULL);
  return rc;
}

static int lim_settle(fy_policy_t *p, void *token, int status) {
  (void)p;
  (void)token;
  (void)status;
  return 0; /* a rate limits starts, not outcomes */
}

static void emit_queue(fy_limiter_t *l, lim_frame_t *st, int joined) {
  fy_event_t ev;
  if (!fy_policy_event_init(l->policy, &ev, FY_EV_QUEUE))
    return;
  ev.call = fy__frame_call(st->frame);
  ev.from = joined ? l->waiting - 1 : l->waiting + 1;
  ev.to = l->waiting;
  ev.value = joined;
  if (!joined)
    ev.delay_ms = fy__ctx_now(l->ctx) - st->since;
  fy_ctx_emit(l->ctx, &ev);
}

/* |st|'s tokens are there: run the layer below.  0 or the refusal. */
static int run(lim_frame_t *st) {
  int rc;
  st->phase = LIM_RUNNING;
  rc = fy_frame_spawn(st->frame, &st->child);
  if (rc == 0) {
    /* A cancel that arrived during the spawn found no child to pass on. */
    if (fy__frame_is_cancelled(st->frame))
      fy_frame_cancel(st->child);
    return 0;
  }
  st->phase = LIM_ENDED;
  st->child = NULL;
  return rc;
}

/* A call over the limit in a limiter that waits: reserve its tokens and
 * sleep until they are there, or refuse it at once when they would come
 * after its deadline, after max_wait_ms, or when max_waiters wait. */
static int lim_start(fy_policy_t *p, fy_frame_t *f) {
  fy_limiter_t *l = fy__policy_impl(p);
  lim_frame_t *st = fy__frame_state(f);
  fy_call_t *call = fy__frame_call(f);
  fy__limiter_sm_verdict_t sv;
  uint64_t latest;
  booking_t bk;
  const char *key;
  size_t len;
  int rc;

  st->frame = f;
  st->phase = LIM_ENDED;
  if (fy_frame_is_cancelled_above(f)) {
    fill_detail(l, fy_frame_verdict(f, p), UV_ECANCELED, NULL, 0, NULL);
    return UV_ECANCELED;
  }
  rc = call_key(l, call, &key, &len);
  if (rc != 0) {
    refuse_call(l, call, rc, NULL, 0, NULL);
    return rc;
  }
  if (l->waiting >= l->max_waiters) {
    /* No instant can be promised: retry_after_ms stays 0. */
    refuse_call(l, call, FY_ERATELIMITED, key, len, NULL);
    return FY_ERATELIMITED;
  }
  latest = wait_bound(l, 0);
  if (fy__frame_deadline(f) < latest)
    latest = fy__frame_deadline(f);
  rc = reserve(l, key, len, l->cost, latest, &bk, &sv);
  if (rc != 0) {
    refuse_call(l, call, rc, key, len, rc == FY_ERATELIMITED ? &sv : NULL);
    return rc;
  }
  st->since = fy__ctx_now(l->ctx);
  if (bk.at <= st->since)
    return run(st); /* the tokens came back meanwhile */
  rc = fy_frame_arm(f, bk.at);
  if (rc != 0) {
    unreserve(l, key, len, &bk);
    return rc;
  }
  st->phase = LIM_WAITING;
  st->bk = bk;
  st->len = (uint32_t)len;
  memcpy(st->key, key, len);
  l->waiting++;
  emit_queue(l, st, 1);
  return 0;
}

static void leave_wait(fy_limiter_t *l, lim_frame_t *st) {
  l->waiting--;
  st->phase = LIM_ENDED;
  emit_queue(l, st, 0);
}

static void lim_deadline(fy_policy_t *p, fy_frame_t *f) {
  fy_limiter_t *l = fy__policy_impl(p);
  lim_frame_t *st = fy__frame_state(f);
  int rc;
  if (st->phase != LIM_WAITING)
    return;
  leave_wait(l, st);
  rc = run(st);
  if (rc < 0)
    fy_frame_done(f, rc);
}

static void lim_cancel(fy_policy_t *p, fy_frame_t *f) {
  fy_limiter_t *l = fy__policy_impl(p);
  lim_frame_t *st = fy__frame_state(f);
  switch (st->phase) {
  case LIM_WAITING:
    fy_frame_disarm(f);
    unreserve(l, st->key, st->len, &st->bk);
    leave_wait(l, st);
    fill_detail(l, fy_frame_verdict(f, p), UV_ECANCELED, st->key, st->len,
                NULL);
    fy_frame_done(f, UV_ECANCELED);
    break;
  case LIM_RUNNING:
    if (st->child != NULL)
      fy_frame_cancel(st->child);
    break;
  default:
    break;
  }
}

static void lim_child_done(fy_policy_t *p, fy_frame_t *f, fy_frame_t *child,
                           int status) {
  lim_frame_t *st = fy__frame_state(f);
  (void)p;
  st->child = NULL;
  st->phase = LIM_ENDED;
  fy__frame_adopt_result(f, child);
  fy_frame_done(f, status);
}

/* ---- waits without a pipeline ------------------------------------------- */

/* A wait keeps its booking in its private words. */
static void wait_booking_set(fy_limit_wait_t *w, const booking_t *bk) {
  w->at = bk->at;
  w->booked[4] = bk->evicted;
  w->booked[0] = bk->before.a;
  w->booked[1] = bk->before.b;
  w->booked[2] = bk->after.a;
  w->booked[3] = bk->after.b;
}

static void wait_booking_get(const fy_limit_wait_t *w, booking_t *bk) {
  bk->at = w->at;
  bk->evicted = w->booked[4];
  bk->before.a = w->booked[0];
  bk->before.b = w->booked[1];
  bk->after.a = w->booked[2];
  bk->after.b = w->booked[3];
}

static void wait_finish(fy_limit_wait_t *w, int status) {
  fy_limiter_t *l = w->limiter;
  fy_limit_wait_cb cb = w->cb;
  fy_deadline_stop(&w->timer);
  fy__queue_remove(&w->node);
  l->waiting--;
  w->active = 0;
  cb(w, status);
}

static void on_wait_timer(fy_deadline_t *d) {
  fy_limit_wait_t *w = fy_container_of(d, fy_limit_wait_t, timer);
  wait_finish(w, w->cancelled ? UV_ECANCELED : 0);
}

int fy_limiter_wait(fy_limiter_t *l, fy_limit_wait_t *w, const char *key,
                    size_t len, uint64_t n, uint64_t timeout_ms,
                    fy_limit_wait_cb cb, fy_limit_verdict_t *v) {
  fy__limiter_sm_verdict_t sv;
  booking_t bk;
  int rc;
  if (l == NULL || w == NULL || cb == NULL)
    return UV_EINVAL;
  if (w->active)
    return UV_EBUSY;
  if (fy__policy_is_closing(l->policy))
    return FY_ECLOSED;
  rc = check_n(l, n);
  if (rc != 0)
    return rc;
  if (key == NULL && len > 0)
    return FY_EKEY;
  if (len > l->tab.max_key_len)
    return FY_EKEY;
  if (l->waiting >= l->max_waiters) {
    if (v != NULL) {
      memset(v, 0, sizeof(*v));
      v->limit = l->conf.burst;
    }
    return FY_ERATELIMITED;
  }
  rc = reserve(l, key, len, n, wait_bound(l, timeout_ms), &bk, &sv);
  if (rc == 0 || rc == FY_ERATELIMITED)
    verdict_out(&sv, v);
  if (rc != 0)
    return rc;
  w->limiter = l;
  w->cb = cb;
  w->n = n;
  wait_booking_set(w, &bk);
  w->active = 1;
  w->cancelled = 0;
  w->len = (uint32_t)len;
  if (len > 0)
    memcpy(w->key, key, len);
  fy_deadline_init(l->ctx, &w->timer, on_wait_timer);
  /* Never inside this call: a wait whose tokens are there fires from the
   * loop, at once. */
  rc = fy_deadline_start_at(&w->timer, bk.at);
  if (rc != 0) {
    unreserve(l, key, len, &bk);
    w->active = 0;
    return rc;
  }
  fy__queue_insert_tail(&l->waits, &w->node);
  l->waiting++;
  return 0;
}

int fy_limiter_wait_cancel(fy_limit_wait_t *w) {
  fy_limiter_t *l;
  booking_t bk;
  if (w == NULL || !w->active)
    return UV_EINVAL;
  if (w->cancelled)
    return 0;
  l = w->limiter;
  w->cancelled = 1;
  wait_booking_get(w, &bk);
  unreserve(l, w->key, w->len, &bk);
  return fy_deadline_start_at(&w->timer, fy__ctx_now(l->ctx));
}

/* ---- policy hooks ------------------------------------------------------- */

/* Closing: every pending wait completes with UV_ECANCELED, from the
 * close task.  Waiting calls are frames: the core cancels them next. */
static void lim_close(fy_policy_t *p) {
  fy_limiter_t *l = fy__policy_impl(p);
  while (!fy__queue_empty(&l->waits))
    wait_finish(fy__queue_data(fy__queue_head(&l->waits), fy_limit_wait_t,
                               node),
                UV_ECANCELED);
}

static void lim_destroy(fy_policy_t *p) {
  fy_limiter_t *l = fy__policy_impl(p);
  fy__keytab_free(&l->tab);
}

static const fy_policy_vtable_t limiter_vtable = {
    .kind = "limiter",
    .frame_size = sizeof(lim_frame_t),
    .start = lim_start,
    .child_done = lim_child_done,
    .cancel = lim_cancel,
    .deadline = lim_deadline,
    .close = lim_close,
    .destroy = lim_destroy,
    .admit = lim_admit,
    .settle = lim_settle,
    .release = lim_settle,
};

/* ---- public API --------------------------------------------------------- */

void fy_limiter_opts_init(fy_limiter_opts_t *opts) {
  if (opts == NULL)
    return;
  memset(opts, 0, sizeof(*opts));
  opts->algo = FY_LIMIT_GCRA;
  opts->rate = DEFAULT_RATE;
  opts->interval_ms = DEFAULT_INTERVAL_MS;
}

static uint64_t burst_of(const fy_limiter_opts_t *o) {
  return o->burst != 0 ? o->burst : o->rate;
}

int fy_limiter_opts_check(const fy_limiter_opts_t *o) {
  uint64_t burst, max_tokens;
  if (o == NULL)
    return UV_EINVAL;
  if (o->algo != FY_LIMIT_GCRA && o->algo != FY_LIMIT_TOKEN_BUCKET)
    return UV_EINVAL;
  if (o->rate == 0 || o->rate > FY_LIMIT_RATE_MAX)
    return UV_EINVAL;
  if (o->interval_ms == 0 || o->interval_ms > FY_LIMIT_INTERVAL_MAX)
    return UV_EINVAL;
  burst = burst_of(o);
  if (burst > FY_LIMIT_BURST_MAX)
    return UV_EINVAL;
  if (fy__limiter_sm_check(o->algo == FY_LIMIT_GCRA ? FY__LIM_GCRA
                                                    : FY__LIM_BUCKET,
                           o->rate, o->interval_ms, burst) != 0)
    return UV_EINVAL;
  max_tokens = o->max_tokens != 0 ? o->max_tokens : burst;
  if (max_tokens > burst)
    return UV_EINVAL;
  if ((o->cost != 0 ? o->cost : 1) > max_tokens)
    return UV_EINVAL;
  if (o->wait != 0 && o->wait != 1)
    return UV_EINVAL;
  if (o->max_keys > FY_LIMIT_KEYS_MAX || o->max_key_len > FY_LIMIT_KEY_MAX)
    return UV_EINVAL;
  return 0;
}

/* The table's hash seed: unpredictable, so that nobody can choose keys
 * that collide.  uv_random() reads the system's source (getrandom); if it
 * fails, the clock and addresses still differ from one process to the
 * next. */
static void make_seed(uint64_t seed[2]) {
  if (uv_random(NULL, NULL, seed, 2 * sizeof(seed[0]), 0, NULL) == 0)
    return;
  seed[0] = uv_hrtime() ^ (uint64_t)(uintptr_t)seed;
  seed[1] = (uint64_t)uv_os_getpid() ^ 0x9e3779b97f4a7c15ull;
}

int fy_limiter_new(fy_ctx_t *ctx, const fy_limiter_opts_t *opts,
                   fy_limiter_t **out) {
  fy_limiter_opts_t defaults;
  fy__keytab_opts_t to;
  fy__keytab_t tab;
  fy_policy_t *p;
  fy_limiter_t *l;
  int rc;

  if (out == NULL)
    return UV_EINVAL;
  *out = NULL;
  if (ctx == NULL)
    return UV_EINVAL;
  if (opts == NULL) {
    fy_limiter_opts_init(&defaults);
    opts = &defaults;
  }
  rc = fy_limiter_opts_check(opts);
  if (rc != 0)
    return rc;
  memset(&to, 0, sizeof(to));
  to.max_keys = opts->max_keys != 0 ? opts->max_keys : DEFAULT_MAX_KEYS;
  to.max_key_len =
      opts->max_key_len != 0 ? opts->max_key_len : DEFAULT_MAX_KEY_LEN;
  make_seed(to.seed);
  rc = fy__keytab_init(&tab, &to);
  if (rc != 0)
    return rc;
  rc = fy_policy_new(ctx, &limiter_vtable, sizeof(*l), opts->name, &p);
  if (rc != 0) {
    fy__keytab_free(&tab);
    return rc;
  }
  l = fy__policy_impl(p);
  l->tab = tab;
  l->policy = p;
  l->ctx = ctx;
  fy__limiter_sm_conf_init(&l->conf,
                           opts->algo == FY_LIMIT_GCRA ? FY__LIM_GCRA
                                                       : FY__LIM_BUCKET,
                           opts->rate, opts->interval_ms, burst_of(opts));
  l->max_tokens = opts->max_tokens != 0 ? opts->max_tokens : l->conf.burst;
  l->cost = opts->cost != 0 ? opts->cost : 1;
  l->max_wait_ms = opts->max_wait_ms != 0 ? opts->max_wait_ms : FY_TIME_NEVER;
  l->max_waiters =
      opts->max_waiters != 0 ? opts->max_waiters : DEFAULT_MAX_WAITERS;
  l->wait = opts->wait;
  l->key_fn = opts->key;
  l->user_data = opts->user_data;
  fy__queue_init(&l->waits);
  *out = l;
  return 0;
}

fy_policy_t *fy_limiter_policy(fy_limiter_t *l) {
  return l != NULL ? l->policy : NULL;
}

int fy_limiter_close(fy_limiter_t *l, fy_close_cb cb, void *user_data) {
  if (l == NULL)
    return 0;
  if (fy__policy_is_closing(l->policy))
    return FY_ECLOSED;
  return fy_policy_close_as(l->policy, l, cb, user_data);
}

int fy_limiter_take(fy_limiter_t *l, const char *key, size_t len, uint64_t n,
                    fy_limit_verdict_t *v) {
  fy__limiter_sm_verdict_t sv;
  int rc;
  if (l == NULL)
    return UV_EINVAL;
  if (fy__policy_is_closing(l->policy))
    return FY_ECLOSED;
  rc = check_n(l, n);
  if (rc != 0)
    return rc;
  rc = take(l, key, len, n, &sv,
            v != NULL || FY__CTX_WANTS(l->ctx, FY_EV_ALLOW));
  if (rc == 0 || rc == FY_ERATELIMITED)
    verdict_out(&sv, v);
  if (rc == 0) {
    if (FY__CTX_WANTS(l->ctx, FY_EV_ALLOW))
      emit_key(l, FY_EV_ALLOW, NULL, 0, key, len, &sv);
  } else if (rc == FY_ERATELIMITED) {
    emit_key(l, FY_EV_REJECT, NULL, rc, key, len, &sv);
  }
  return rc;
}

int fy_limiter_allow(fy_limiter_t *l, const char *key, size_t len,
                     fy_limit_verdict_t *v) {
  return fy_limiter_take(l, key, len, 1, v);
}

int fy_limiter_hold(fy_limiter_t *l, const char *key, size_t len,
                    uint64_t retry_after_ms) {
  fy__limiter_sm_state_t s;
  fy__keytab_entry_t *e;
  uint64_t now;
  int fresh, rc;
  if (l == NULL)
    return UV_EINVAL;
  if (fy__policy_is_closing(l->policy))
    return FY_ECLOSED;
  now = fy__ctx_now(l->ctx);
  rc = lookup(l, key, len, now, &e, &fresh);
  if (rc != 0)
    return rc;
  if (!fresh)
    state_load(e, &s);
  fy__limiter_sm_hold(&l->conf, &s, fresh, now,
                      fy_time_add(now, retry_after_ms));
  state_store(l, e, fresh, 1, &s);
  return 0;
}

void fy_limiter_stats(const fy_limiter_t *l, fy_limiter_stats_t *out) {
  if (out == NULL)
    return;
  memset(out, 0, sizeof(*out));
  if (l == NULL)
    return;
  out->keys = fy__keytab_count(&l->tab);
  out->bytes = fy__keytab_bytes(&l->tab);
  out->waiting = l->waiting;
  out->expired = l->tab.expired;
  out->evicted = l->tab.evicted;
}

size_t fy_limiter_sanitize_key(const char *key, size_t len, char *out,
                               size_t out_size) {
  if (key == NULL)
    len = 0;
  return fy__key_sanitize(key != NULL ? key : "", len, out, out_size);
}
