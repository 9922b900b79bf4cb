/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * The rate limiter as users drive it: fy_limiter_take/allow/hold/wait/
 * wait_cancel with random keys, n and time steps on a manual-clock
 * context, a small key table (so that keys are evicted and expire), both
 * algorithms, allocation failures, and close at a random moment.  The
 * exact decisions are the state machine's target's business (fuzz_limiter);
 * this one checks what must hold whatever the numbers:
 *
 * - the rate: over the run, no key is granted more than its burst plus
 *   what the elapsed time refills, counting every allowed take and every
 *   completed wait (a key evicted meanwhile starts again from a full
 *   bucket: the bound then counts from its eviction, and the waits that
 *   reserved from the lost state count in the past);
 * - a wait is called back exactly once, never inside an API call, at the
 *   instant it was promised (now + retry-after of a refused take is a
 *   lower bound of it) or, cancelled, with UV_ECANCELED;
 * - waits of one key complete in the order they started (since the key
 *   was last evicted: an eviction loses the reservations in its state);
 * - a refusal comes with retry_after_ms >= 1, an allowance with 0; the
 *   remaining tokens never exceed the burst; the table never holds more
 *   than max_keys; close completes every wait; nothing leaks. */
#include <stdlib.h>
#include <string.h>

#include <fortify.h>

#include "fuzz.h"

#define NKEYS 6
#define NW 16
#define UNORDERED UINT32_MAX /* a wait whose key was evicted under it */

static uv_loop_t loop;
static fy_ctx_t *ctx;
static fy_limiter_t *lim;
static uint64_t burst, rate, interval;
static int in_api; /* inside a call of the limiter's API */
static int closed_cb;

typedef struct wait_s {
  fy_limit_wait_t w;
  int key;
  int pending;
  int cancelled;
  unsigned starts; /* accepted waits */
  unsigned calls;  /* callbacks */
  uint64_t n;
  uint64_t due;   /* earliest promised instant */
  unsigned seq;   /* start order among waits of its key */
} wait_t;

static wait_t W[NW];
static unsigned seq_started[NKEYS];
static unsigned seq_done[NKEYS]; /* 1 + the last wait completed with 0 */
static uint64_t granted[NKEYS]; /* tokens granted since |since| */
static uint64_t since[NKEYS];

static const char *keyname(int k) {
  static const char *const names[NKEYS] = {"", "a", "bb", "10.0.0.1",
                                           "\x01\xff", "k5"};
  return names[k];
}

static size_t keylen(int k) { return strlen(keyname(k)); }

/* The most a key may be granted from |since| to now. */
static uint64_t bound(int k) {
  uint64_t el = fy_ctx_now(ctx) - since[k];
  uint64_t refills = el / interval + 1;
  return burst + refills * rate;
}

static void grant(int k, uint64_t n) {
  granted[k] += n;
  FZ_CHECK(granted[k] <= bound(k), "key %d granted %llu > %llu", k,
           (unsigned long long)granted[k], (unsigned long long)bound(k));
}

static void on_evict(fy_ctx_t *c, const fy_event_t *ev, void *ud) {
  int k;
  (void)c;
  (void)ud;
  if (ev->type != FY_EV_EVICT || ev->key == NULL)
    return;
  /* The evicted key starts again from a full bucket: count from here. */
  for (k = 0; k < NKEYS; k++) {
    char shown[80];
    fy_limiter_sanitize_key(keyname(k), keylen(k), shown, sizeof(shown));
    if (strcmp(shown, ev->key) == 0) {
      int i;
      granted[k] = 0;
      since[k] = fy_ctx_now(ctx);
      /* Its pending waits keep their instants, but the order promised
       * holds only among the waits that start from here. */
      for (i = 0; i < NW; i++)
        if (W[i].pending && W[i].key == k)
          W[i].seq = UNORDERED;
      seq_done[k] = seq_started[k];
    }
  }
}

static void on_waited(fy_limit_wait_t *w, int status) {
  wait_t *x = fy_container_of(w, wait_t, w);
  FZ_CHECK(!in_api, "a wait called back inside an API call");
  FZ_CHECK(x->pending, "callback of a wait not pending");
  x->calls++;
  x->pending = 0;
  if (status == 0) {
    FZ_CHECK(!x->cancelled, "a cancelled wait completed with 0");
    FZ_CHECK(fy_ctx_now(ctx) >= x->due, "woken early: %llu < %llu",
             (unsigned long long)fy_ctx_now(ctx),
             (unsigned long long)x->due);
    /* Cancelled waits leave gaps; the others come in start order. */
    FZ_CHECK(x->seq == UNORDERED || x->seq >= seq_done[x->key],
             "key %d: wait %u after %u", x->key, x->seq,
             seq_done[x->key] - 1);
    /* A wait whose key was evicted under it took its tokens from the
     * state that was lost: they count in that past, not from here. */
    if (x->seq != UNORDERED) {
      seq_done[x->key] = x->seq + 1;
      grant(x->key, x->n);
    }
  } else {
    FZ_CHECK(status == UV_ECANCELED, "wait status %d", status);
  }
}

static void check_verdict(int rc, const fy_limit_verdict_t *v) {
  if (rc == 0) {
    FZ_CHECK(v->retry_after_ms == 0, "allowed with a retry-after");
  } else if (rc == FY_ERATELIMITED) {
    FZ_CHECK(v->retry_after_ms >= 1, "refused without a wait");
  }
  if (rc == 0 || rc == FY_ERATELIMITED) {
    FZ_CHECK(v->remaining <= burst, "remaining %llu > burst",
             (unsigned long long)v->remaining);
    FZ_CHECK(v->limit == burst, "limit %llu", (unsigned long long)v->limit);
  }
}

static void step(fz_t *z) {
  fy_limit_verdict_t v;
  fy_limiter_stats_t st;
  int k = (int)fz_below(z, NKEYS), rc;
  uint64_t n;
  wait_t *x;
  switch (fz_u8(z) % 8) {
  case 0:
  case 1:
    n = fz_below(z, 4) == 0 ? fz_u64_edge(z) : 1 + fz_below(z, burst);
    in_api = 1;
    rc = fy_limiter_take(lim, keyname(k), keylen(k), n, &v);
    in_api = 0;
    FZ_CHECK(rc == 0 || rc == FY_ERATELIMITED || rc == UV_EINVAL ||
                 rc == UV_ENOMEM || rc == FY_ECLOSED,
             "take: %d", rc);
    FZ_CHECK(rc != UV_EINVAL || n == 0 || n > burst, "EINVAL for n %llu",
             (unsigned long long)n);
    check_verdict(rc, &v);
    if (rc == 0)
      grant(k, n);
    break;
  case 2:
    in_api = 1;
    rc = fy_limiter_hold(lim, keyname(k), keylen(k), fz_time(z));
    in_api = 0;
    FZ_CHECK(rc == 0 || rc == UV_ENOMEM || rc == FY_ECLOSED, "hold %d", rc);
    break;
  case 3:
  case 4:
    x = &W[fz_below(z, NW)];
    if (x->pending)
      break;
    n = 1 + fz_below(z, burst);
    in_api = 1;
    rc = fy_limiter_wait(lim, &x->w, keyname(k), keylen(k), n,
                         fz_below(z, 3) == 0 ? 0 : fz_time(z), on_waited, &v);
    in_api = 0;
    FZ_CHECK(rc == 0 || rc == FY_ERATELIMITED || rc == UV_ENOMEM ||
                 rc == FY_ECLOSED,
             "wait: %d", rc);
    if (rc == 0) {
      x->key = k;
      x->pending = 1;
      x->cancelled = 0;
      x->n = n;
      x->due = fy_ctx_now(ctx) + v.retry_after_ms;
      x->seq = seq_started[k]++;
      x->starts++;
    }
    break;
  case 5:
    x = &W[fz_below(z, NW)];
    in_api = 1;
    rc = fy_limiter_wait_cancel(&x->w);
    in_api = 0;
    FZ_CHECK(rc == 0 || (rc == UV_EINVAL && !x->pending), "cancel: %d", rc);
    if (rc == 0)
      x->cancelled = 1;
    break;
  case 6:
    FZ_CHECK(fy_ctx_advance(ctx, fz_below(z, 2 * interval + 2)) == 0,
             "advance");
    break;
  default:
    FZ_CHECK(fy_ctx_advance(ctx, fz_time(z) % (3 * interval + 1)) == 0,
             "advance");
    break;
  }
  fy_limiter_stats(lim, &st);
  FZ_CHECK(st.keys <= 4, "%llu keys in a table of 4",
           (unsigned long long)st.keys);
}

static void on_closed(void *obj, void *ud) {
  (void)obj;
  (void)ud;
  closed_cb++;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  static int ready;
  (void)argc;
  (void)argv;
  if (ready++)
    return 0;
  if (uv_loop_init(&loop) != 0)
    abort();
  fz_alloc_install();
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static int ready;
  fy_ctx_opts_t copts;
  fy_limiter_opts_t lo;
  fy_listener_t *listener = NULL;
  fz_t z;
  int i, rc;

  if (!ready++)
    LLVMFuzzerInitialize(NULL, NULL);
  fz_init(&z, data, size);
  memset(W, 0, sizeof(W));
  memset(seq_started, 0, sizeof(seq_started));
  memset(seq_done, 0, sizeof(seq_done));
  memset(granted, 0, sizeof(granted));
  closed_cb = 0;
  fz_alloc_reset(fz_u8(&z) % 4 == 1 ? (long)fz_below(&z, 8) : -1, -1);

  memset(&copts, 0, sizeof(copts));
  copts.manual_clock = 1;
  copts.manual_start_ms = fz_u32(&z);
  rc = fy_ctx_new(&loop, &copts, &ctx);
  if (rc != 0) {
    FZ_CHECK(rc == UV_ENOMEM && fz_alloc_live() == 0, "ctx: %d", rc);
    return 0;
  }
  for (i = 0; i < NKEYS; i++)
    since[i] = fy_ctx_now(ctx);
  fy_limiter_opts_init(&lo);
  lo.algo = fz_u8(&z) & 1 ? FY_LIMIT_TOKEN_BUCKET : FY_LIMIT_GCRA;
  lo.rate = 1 + fz_below(&z, 8);
  lo.interval_ms = 1 + fz_below(&z, 1000);
  lo.burst = 1 + fz_below(&z, 8);
  lo.max_keys = 4;
  lo.max_waiters = 1 + (uint32_t)fz_below(&z, NW);
  lo.max_wait_ms = fz_below(&z, 2) ? 0 : fz_time(&z);
  rate = lo.rate;
  interval = lo.interval_ms;
  burst = lo.burst;
  lim = NULL;
  rc = fy_limiter_new(ctx, &lo, &lim);
  if (rc == 0)
    rc = fy_ctx_listen(ctx, FY_EV_MASK(FY_EV_EVICT), on_evict, NULL,
                       &listener);
  if (rc == 0) {
    while (!fz_done(&z))
      step(&z);
    FZ_CHECK(fy_limiter_close(lim, on_closed, NULL) == 0, "close");
  } else {
    FZ_CHECK(rc == UV_ENOMEM, "limiter: %d", rc);
  }
  FZ_CHECK(fy_ctx_close(ctx, NULL, NULL) == 0, "ctx close");
  for (i = 0; i < 16 && uv_loop_alive(&loop); i++)
    uv_run(&loop, UV_RUN_NOWAIT);
  for (i = 0; i < NW; i++) {
    FZ_CHECK(!W[i].pending, "wait %d never called back", i);
    FZ_CHECK(W[i].calls == W[i].starts, "wait %d: %u callbacks for %u waits",
             i, W[i].calls, W[i].starts);
  }
  FZ_CHECK(rc != 0 || closed_cb == 1, "closed %d times", closed_cb);
  lim = NULL;
  FZ_CHECK(fz_alloc_live() == 0, "%ld blocks leaked", fz_alloc_live());
  FZ_CHECK(!uv_loop_alive(&loop), "handles left on the loop");
  return 0;
}
