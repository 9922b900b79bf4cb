/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * The rate limiter's pure state machine (src/sm/limiter_sm.h) against
 * slow reference models: a random configuration (either algorithm, values
 * at and beside the bounds), then a script of clock steps (forward, large,
 * backward), takes, peeks and holds on a few keys, and evictions of keys
 * whose idle_at has passed.
 *
 * The models are written from the documented semantics, not from the code:
 *   GCRA    the TAT as one absolute count of 1/rate ms in 128 bits, so no
 *           splitting into ms and fraction and no overflow guard;
 *   BUCKET  tokens and the next refill, refilled one interval at a time
 *           (only for configurations that fill in at most MAX_STEPS).
 * A model keeps its key's state when the key is evicted: the evicted key
 * comes back fresh in the implementation, and every later decision must
 * still agree, which is what idle_at promises.
 *
 * After every decision: the result and every verdict field equal the
 * model's; remaining <= burst, and <= burst - n after a take; a denial
 * changes nothing and its retry_after is exact (the same take fails one ms
 * earlier and succeeds at it); peek agrees with take; invalid n (0, above
 * burst) is UV_EINVAL whatever the state; idle_at is the first instant at
 * which the model's state is a fresh key's. */
#include <string.h>

#include <uv.h>

#include "fuzz.h"
#include "limiter_sm.h"

#define NK 4
#define MAX_STEPS 4096

/* The documented bounds, restated. */
#define M_RATE_MAX UINT64_C(1000000000)
#define M_BURST_MAX UINT64_C(1000000000)
#define M_INTERVAL_MAX UINT64_C(86400000)
#define M_TIME_MAX (UINT64_C(1) << 62)

#ifdef __SIZEOF_INT128__
__extension__ typedef unsigned __int128 u128;
#define HAVE_GCRA_MODEL 1
#else
#define HAVE_GCRA_MODEL 0
#endif

typedef struct model_s {
  int exists;      /* the model has seen the key */
#if HAVE_GCRA_MODEL
  u128 tat;        /* GCRA, in 1/R ms */
#endif
  uint64_t tokens; /* BUCKET */
  uint64_t next;   /* BUCKET, while tokens < B */
} model_t;

static fy__limiter_sm_conf_t C;
static int algo;
static uint64_t R, I, B;
static int use_model;

static fy__limiter_sm_state_t S[NK];
static int present[NK]; /* the implementation's table holds the key */
static uint64_t gone_at[NK]; /* idle_at of a key the table dropped */
static model_t M[NK];

static uint64_t mclamp(uint64_t t) {
  return t > M_TIME_MAX ? M_TIME_MAX : t;
}

typedef struct mverdict_s {
  int rc;
  uint64_t retry, remaining, reset;
} mverdict_t;

/* ---- GCRA model -------------------------------------------------------- */
#if HAVE_GCRA_MODEL

static u128 g_tat(const model_t *m) {
  return m->exists ? m->tat : 0;
}

static u128 umin(u128 a, u128 b) {
  return a < b ? a : b;
}

/* The instant the next take is scheduled from: the TAT when it is ahead,
 * or when it fell less than one ms and less than one T ago; else now. */
static u128 g_base(u128 tat, u128 nowt) {
  if (tat >= nowt)
    return tat;
  if (nowt - tat < umin(R, I))
    return tat;
  return nowt;
}

static void g_describe(u128 tat, u128 nowt, mverdict_t *v) {
  u128 tau = (u128)B * I;
  if (tat <= nowt) {
    v->remaining = B;
    v->reset = 0;
    return;
  }
  v->reset = (uint64_t)((tat - nowt + R - 1) / R);
  v->remaining = tat - nowt >= tau ? 0 : (uint64_t)((tau - (tat - nowt)) / I);
}

static void g_decide(model_t *m, uint64_t now, uint64_t n, int commit,
                     mverdict_t *v) {
  u128 nowt = (u128)mclamp(now) * R;
  u128 tat = g_tat(m);
  u128 base = g_base(tat, nowt);
  u128 tau = (u128)B * I;
  if (n == 0 || n > B) {
    v->rc = UV_EINVAL;
    v->retry = 0;
    g_describe(tat, nowt, v);
    return;
  }
  if (base + (u128)n * I > nowt + tau) {
    u128 allow_at = tat - (u128)(B - n) * I; /* > nowt */
    v->rc = FY__LIM_DENIED;
    v->retry = (uint64_t)((allow_at - nowt + R - 1) / R);
    g_describe(tat, nowt, v);
    return;
  }
  v->rc = FY__LIM_ALLOWED;
  v->retry = 0;
  if (commit) {
    m->tat = base + (u128)n * I;
    m->exists = 1;
    g_describe(m->tat, nowt, v);
  } else {
    g_describe(tat, nowt, v);
  }
}

static void g_hold(model_t *m, uint64_t now, uint64_t until) {
  u128 want;
  now = mclamp(now);
  until = mclamp(until);
  if (!m->exists) {
    m->tat = 0;
    m->exists = 1;
  }
  if (until <= now)
    return;
  want = (u128)until * R + (u128)(B - 1) * I;
  if (want > m->tat)
    m->tat = want;
}

/* 1 when the state decides as a fresh key does at |t| (and so at any later
 * instant): the base of a take is |t| itself. */
static int g_is_fresh_at(const model_t *m, uint64_t t) {
  u128 tt = (u128)t * R;
  return g_base(g_tat(m), tt) == tt;
}

#endif /* HAVE_GCRA_MODEL */

/* ---- token bucket model ------------------------------------------------ */

static void b_state(const model_t *m, uint64_t *t, uint64_t *next) {
  *t = m->exists ? m->tokens : B;
  *next = m->exists ? m->next : 0;
}

static void b_refill(uint64_t *t, uint64_t *next, uint64_t now) {
  while (*t < B && now >= *next) {
    *t = *t + R >= B ? B : *t + R;
    *next += I;
  }
}

/* Instant at which |want| tokens are held, from |t| < want. */
static uint64_t b_when(uint64_t t, uint64_t next, uint64_t want) {
  for (;;) {
    t = t + R >= B ? B : t + R;
    if (t >= want)
      return next;
    next += I;
  }
}

static void b_describe(uint64_t t, uint64_t next, uint64_t now,
                       mverdict_t *v) {
  v->remaining = t;
  v->reset = t >= B ? 0 : b_when(t, next, B) - now;
}

static void b_decide(model_t *m, uint64_t now, uint64_t n, int commit,
                     mverdict_t *v) {
  uint64_t t, next;
  now = mclamp(now);
  b_state(m, &t, &next);
  b_refill(&t, &next, now);
  if (n == 0 || n > B) {
    v->rc = UV_EINVAL;
    v->retry = 0;
    b_describe(t, next, now, v);
    return;
  }
  if (t < n) {
    v->rc = FY__LIM_DENIED;
    v->retry = b_when(t, next, n) - now;
    b_describe(t, next, now, v);
    return;
  }
  v->rc = FY__LIM_ALLOWED;
  v->retry = 0;
  if (!commit) {
    b_describe(t, next, now, v);
    return;
  }
  if (t == B)
    next = now + I;
  t -= n;
  m->exists = 1;
  m->tokens = t;
  m->next = next;
  b_describe(t, next, now, v);
}

static void b_hold(model_t *m, uint64_t now, uint64_t until) {
  uint64_t t, next;
  now = mclamp(now);
  until = mclamp(until);
  b_state(m, &t, &next);
  m->exists = 1;
  m->tokens = t;
  m->next = next;
  if (until <= now)
    return;
  /* No token before |until|, and none sooner than the state would give. */
  m->next = t >= B || next < until ? until : next;
  m->tokens = 0;
}

static int b_is_fresh_at(const model_t *m, uint64_t t) {
  uint64_t tok, next;
  b_state(m, &tok, &next);
  b_refill(&tok, &next, t);
  return tok == B;
}

/* ---- driving ------------------------------------------------------------ */

static int model_fresh_at(const model_t *m, uint64_t t) {
#if HAVE_GCRA_MODEL
  if (algo == FY__LIM_GCRA)
    return g_is_fresh_at(m, t);
#endif
  return b_is_fresh_at(m, t);
}

static void model_decide(model_t *m, uint64_t now, uint64_t n, int commit,
                         mverdict_t *v) {
#if HAVE_GCRA_MODEL
  if (algo == FY__LIM_GCRA) {
    g_decide(m, now, n, commit, v);
    return;
  }
#endif
  b_decide(m, now, n, commit, v);
}

static void model_hold(model_t *m, uint64_t now, uint64_t until) {
#if HAVE_GCRA_MODEL
  if (algo == FY__LIM_GCRA) {
    g_hold(m, now, until);
    return;
  }
#endif
  b_hold(m, now, until);
}

static void compare(const char *op, int rc, const fy__limiter_sm_verdict_t *v,
                    const mverdict_t *mv, uint64_t now, uint64_t n) {
  FZ_CHECK(rc == mv->rc, "%s(%llu) at %llu: %d, model %d (algo %d, %llu per "
           "%llu ms, burst %llu)", op, (unsigned long long)n,
           (unsigned long long)now, rc, mv->rc, algo, (unsigned long long)R,
           (unsigned long long)I, (unsigned long long)B);
  FZ_CHECK(v->retry_after_ms == mv->retry, "%s(%llu) at %llu: retry %llu, "
           "model %llu", op, (unsigned long long)n, (unsigned long long)now,
           (unsigned long long)v->retry_after_ms,
           (unsigned long long)mv->retry);
  FZ_CHECK(v->remaining == mv->remaining, "%s(%llu) at %llu: remaining "
           "%llu, model %llu", op, (unsigned long long)n,
           (unsigned long long)now, (unsigned long long)v->remaining,
           (unsigned long long)mv->remaining);
  FZ_CHECK(v->reset_ms == mv->reset, "%s(%llu) at %llu: reset %llu, model "
           "%llu", op, (unsigned long long)n, (unsigned long long)now,
           (unsigned long long)v->reset_ms, (unsigned long long)mv->reset);
}

static void invariants(int rc, const fy__limiter_sm_verdict_t *v, uint64_t n,
                       int took) {
  FZ_CHECK(v->limit == B, "limit %llu", (unsigned long long)v->limit);
  FZ_CHECK(v->remaining <= B, "remaining %llu > burst",
           (unsigned long long)v->remaining);
  if (rc == FY__LIM_ALLOWED) {
    FZ_CHECK(v->retry_after_ms == 0, "allowed with a wait");
    if (took)
      FZ_CHECK(v->remaining <= B - n, "remaining %llu after taking %llu",
               (unsigned long long)v->remaining, (unsigned long long)n);
  } else if (rc == FY__LIM_DENIED) {
    FZ_CHECK(v->retry_after_ms >= 1, "denied without a wait");
    FZ_CHECK(v->remaining < n, "denied %llu with %llu held",
             (unsigned long long)n, (unsigned long long)v->remaining);
  } else {
    FZ_CHECK(rc == UV_EINVAL && (n == 0 || n > B), "rc %d for n %llu", rc,
             (unsigned long long)n);
    FZ_CHECK(v->retry_after_ms == 0, "invalid with a wait");
  }
}

/* The denied take(n) at |now| succeeds after exactly retry ms. */
static void retry_exact(int k, uint64_t now, uint64_t n, uint64_t r) {
  fy__limiter_sm_state_t t;
  int rc;
  now = mclamp(now);
  if (r > M_TIME_MAX - now)
    return; /* past the supported range the clock stops */
  t = S[k];
  rc = fy__limiter_sm_take(&C, &t, !present[k], now + r - 1, n, NULL);
  FZ_CHECK(rc == FY__LIM_DENIED, "allowed at retry - 1 (%llu)",
           (unsigned long long)r);
  t = S[k];
  rc = fy__limiter_sm_take(&C, &t, !present[k], now + r, n, NULL);
  FZ_CHECK(rc == FY__LIM_ALLOWED, "denied at retry (%llu)",
           (unsigned long long)r);
}

/* The key table's eviction: a key idle by |now| is dropped.  The model
 * keeps its state; it must decide as a fresh key does from idle_at on. */
static void evict(int k, uint64_t now) {
  uint64_t at;
  if (!present[k])
    return;
  at = fy__limiter_sm_idle_at(&C, &S[k]);
  if (use_model) {
    uint64_t from = at > mclamp(now) ? at : mclamp(now);
    if (at <= M_TIME_MAX)
      FZ_CHECK(model_fresh_at(&M[k], from), "not fresh at %llu, idle_at %llu",
               (unsigned long long)from, (unsigned long long)at);
    else
      FZ_CHECK(!model_fresh_at(&M[k], M_TIME_MAX),
               "fresh within range, idle_at %llu", (unsigned long long)at);
    if (at > mclamp(now) && at <= M_TIME_MAX)
      FZ_CHECK(!model_fresh_at(&M[k], at - 1),
               "fresh already at %llu, before idle_at",
               (unsigned long long)(at - 1));
  }
  if (at <= mclamp(now)) {
    present[k] = 0;
    gone_at[k] = at;
  }
}

/* A dropped key comes back fresh in the table; the model's own state must
 * be a fresh key's by then, and is replaced by one. */
static void comes_back(int k, uint64_t now) {
  if (present[k] || !M[k].exists || !use_model)
    return;
  FZ_CHECK(model_fresh_at(&M[k], mclamp(now)),
           "a dropped key was not idle at %llu", (unsigned long long)now);
  memset(&M[k], 0, sizeof(M[k]));
}

/* The equivalence holds from idle_at on: a clock that goes back before it
 * meets a fresh key in the table, and the model must too. */
static void clock_went_back(uint64_t now) {
  int k;
  for (k = 0; k < NK; k++)
    if (!present[k] && M[k].exists && mclamp(now) < gone_at[k])
      memset(&M[k], 0, sizeof(M[k]));
}

static void do_take(int k, uint64_t now, uint64_t n) {
  fy__limiter_sm_verdict_t v, pv;
  fy__limiter_sm_state_t before = S[k];
  mverdict_t mv, mpv;
  int rc, prc;

  comes_back(k, now);
  prc = fy__limiter_sm_peek(&C, &S[k], !present[k], now, n, &pv);
  FZ_CHECK(memcmp(&before, &S[k], sizeof(before)) == 0, "peek wrote");
  invariants(prc, &pv, n, 0);
  if (use_model) {
    model_decide(&M[k], now, n, 0, &mpv);
    compare("peek", prc, &pv, &mpv, now, n);
  }

  rc = fy__limiter_sm_take(&C, &S[k], !present[k], now, n, &v);
  FZ_CHECK(rc == prc, "take %d, peek %d", rc, prc);
  FZ_CHECK(v.retry_after_ms == pv.retry_after_ms, "take and peek waits");
  invariants(rc, &v, n, 1);
  if (use_model) {
    model_decide(&M[k], now, n, 1, &mv);
    compare("take", rc, &v, &mv, now, n);
  }
  if (rc == FY__LIM_ALLOWED) {
    present[k] = 1;
  } else {
    FZ_CHECK(memcmp(&before, &S[k], sizeof(before)) == 0,
             "a refused take wrote");
    if (rc == FY__LIM_DENIED)
      retry_exact(k, now, n, v.retry_after_ms);
  }
}

static void do_hold(int k, uint64_t now, uint64_t until) {
  fy__limiter_sm_verdict_t v;
  int rc;
  comes_back(k, now);
  fy__limiter_sm_hold(&C, &S[k], !present[k], now, until);
  present[k] = 1;
  if (use_model)
    model_hold(&M[k], now, until);
  if (mclamp(until) > mclamp(now)) {
    /* Nothing before |until|, even a single token. */
    rc = fy__limiter_sm_peek(&C, &S[k], 0, now, 1, &v);
    FZ_CHECK(rc == FY__LIM_DENIED, "allowed during a hold");
    FZ_CHECK(v.retry_after_ms >= mclamp(until) - mclamp(now),
             "hold to %llu ends after %llu", (unsigned long long)until,
             (unsigned long long)v.retry_after_ms);
  }
}

static uint64_t pick_conf(fz_t *z, uint64_t small, uint64_t max) {
  switch (fz_u8(z) % 4) {
  case 0:
    return 1 + fz_below(z, small);
  case 1:
    return max - fz_below(z, 2) + fz_below(z, 2); /* max - 1 .. max + 1 */
  case 2:
    return fz_u64_edge(z);
  default:
    return 1 + fz_below(z, max);
  }
}

static uint64_t pick_n(fz_t *z) {
  switch (fz_u8(z) % 6) {
  case 0:
  case 1:
    return 1;
  case 2:
    return B;
  case 3:
    return 1 + fz_below(z, B);
  case 4:
    return fz_below(z, 2) ? 0 : B + 1;
  default:
    return fz_u64_edge(z);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz_t z;
  uint64_t now;
  int rc, valid, k;

  fz_init(&z, data, size);
  algo = fz_u8(&z) % 3 == 0 ? (int)fz_u8(&z) - 1 : (int)(fz_u8(&z) & 1);
  R = pick_conf(&z, 20, M_RATE_MAX);
  I = pick_conf(&z, 2000, M_INTERVAL_MAX);
  B = pick_conf(&z, 20, M_BURST_MAX);
  valid = (algo == FY__LIM_GCRA || algo == FY__LIM_BUCKET) && R >= 1 &&
          R <= M_RATE_MAX && I >= 1 && I <= M_INTERVAL_MAX && B >= 1 &&
          B <= M_BURST_MAX;
  rc = fy__limiter_sm_check(algo, R, I, B);
  FZ_CHECK(rc == (valid ? 0 : UV_EINVAL), "check(%d, %llu, %llu, %llu) = %d",
           algo, (unsigned long long)R, (unsigned long long)I,
           (unsigned long long)B, rc);
  FZ_CHECK(fy__limiter_sm_conf_init(&C, algo, R, I, B) == rc, "init != check");
  if (!valid)
    return 0;
  if (algo == FY__LIM_GCRA)
    use_model = HAVE_GCRA_MODEL;
  else
    use_model = (B + R - 1) / R <= MAX_STEPS;

  memset(S, 0, sizeof(S));
  memset(M, 0, sizeof(M));
  memset(present, 0, sizeof(present));
  memset(gone_at, 0, sizeof(gone_at));
  now = fz_u8(&z) & 1 ? fz_u32(&z) : fz_u64_edge(&z);

  while (!fz_done(&z)) {
    k = (int)fz_below(&z, NK);
    switch (fz_u8(&z) % 10) {
    case 0:
    case 1:
    case 2:
    case 3:
      do_take(k, now, pick_n(&z));
      break;
    case 4: {
      uint64_t step = fz_u8(&z) % 3; /* dense polling */
      now = now + step < now ? UINT64_MAX : now + step;
      break;
    }
    case 5: {
      /* Forward, by steps around the interval and the emission interval. */
      uint64_t step;
      switch (fz_u8(&z) % 4) {
      case 0:
        step = I / R + fz_below(&z, 2);
        break;
      case 1:
        step = I * (1 + fz_below(&z, 4)) - fz_below(&z, 2);
        break;
      case 2:
        step = fz_time(&z);
        break;
      default:
        step = fz_below(&z, I + 1);
        break;
      }
      now = now + step < now ? UINT64_MAX : now + step;
      break;
    }
    case 6: {
      /* The clock goes back. */
      uint64_t back = fz_u8(&z) & 1 ? fz_below(&z, 2 * I + 2) : fz_time(&z);
      now = back > now ? 0 : now - back;
      clock_went_back(now);
      break;
    }
    case 7: {
      uint64_t d = fz_u8(&z) & 1 ? fz_below(&z, 4 * I + 2) : fz_time(&z);
      uint64_t until = fz_u8(&z) % 4 == 0 ? now - (d < now ? d : now)
                                          : (now + d < now ? UINT64_MAX
                                                           : now + d);
      do_hold(k, now, until);
      break;
    }
    case 8:
      evict(k, now);
      break;
    default:
      /* Skip ahead to the key's idle_at, and drop it there. */
      if (present[k]) {
        uint64_t at = fy__limiter_sm_idle_at(&C, &S[k]);
        if (at > now && at <= M_TIME_MAX)
          now = at;
        evict(k, now);
      }
      break;
    }
  }
  return 0;
}
