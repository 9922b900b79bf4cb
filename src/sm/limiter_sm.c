/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * The rate limiter's pure state machine: GCRA and an interval-refilled
 * token bucket over a 16-byte state per key.  See limiter_sm.h for the
 * semantics, units and bounds.
 *
 * The hot case, one token from a key in use, does no division: GCRA adds
 * the precomputed T, the bucket divides only when a refill spans more than
 * one interval.  Divisions remain where a count must be rounded (retry
 * after, remaining, reset), which the caller may skip by passing no
 * verdict.
 */
#include <assert.h>
#include <stddef.h>

#include <uv.h>

#include "limiter_sm.h"

/* Every product below is at most burst * interval plus a rate or an
 * instant; these bounds keep it, and any instant plus it, in 64 bits. */
_Static_assert((uint64_t)FY__LIM_BURST_MAX * FY__LIM_INTERVAL_MAX +
                       FY__LIM_RATE_MAX <
                   ((uint64_t)1 << 58),
               "burst * interval must stay far below 2^64");
_Static_assert(FY__LIM_TIME_MAX + ((uint64_t)1 << 58) * 2 > FY__LIM_TIME_MAX &&
                   FY__LIM_TIME_MAX < ((uint64_t)1 << 63),
               "an instant plus a tolerance must not wrap");
_Static_assert(sizeof(fy__limiter_sm_state_t) == 16,
               "the key table stores 16 bytes per key");

int fy__limiter_sm_check(int algo, uint64_t rate, uint64_t interval_ms,
                         uint64_t burst) {
  if (algo != FY__LIM_GCRA && algo != FY__LIM_BUCKET)
    return UV_EINVAL;
  if (rate == 0 || rate > FY__LIM_RATE_MAX)
    return UV_EINVAL;
  if (interval_ms == 0 || interval_ms > FY__LIM_INTERVAL_MAX)
    return UV_EINVAL;
  if (burst == 0 || burst > FY__LIM_BURST_MAX)
    return UV_EINVAL;
  return 0;
}

int fy__limiter_sm_conf_init(fy__limiter_sm_conf_t *c, int algo,
                             uint64_t rate, uint64_t interval_ms,
                             uint64_t burst) {
  int rc = fy__limiter_sm_check(algo, rate, interval_ms, burst);
  if (rc != 0)
    return rc;
  c->algo = (fy__limiter_sm_algo_t)algo;
  c->rate = rate;
  c->interval_ms = interval_ms;
  c->burst = burst;
  c->t_ms = interval_ms / rate;
  c->t_rem = interval_ms % rate;
  c->tau = burst * interval_ms;
  c->tau_ms = c->tau / rate;
  c->fill_steps = (burst + rate - 1) / rate;
  return 0;
}

void fy__limiter_sm_fresh(const fy__limiter_sm_conf_t *c,
                          fy__limiter_sm_state_t *s) {
  /* GCRA: a TAT of 0 is in everybody's past.  BUCKET: full, no anchor. */
  s->a = c->algo == FY__LIM_BUCKET ? c->burst : 0;
  s->b = 0;
}

static uint64_t clamp_time(uint64_t t) {
  return t > FY__LIM_TIME_MAX ? FY__LIM_TIME_MAX : t;
}

/* ceil(x / r) for x >= 1, without dividing in the common case x <= r. */
static uint64_t steps(uint64_t x, uint64_t r) {
  return x <= r ? 1 : (x + r - 1) / r;
}

/* ---- GCRA ---------------------------------------------------------------
 *
 * TAT = a + b / R ms.  take(n) at now is allowed iff
 *   base + n * T - now <= B * T,  base = max(TAT, now),
 * i.e. with D = TAT - now in 1/R ms: D + n * I <= B * I.  A fresh key
 * (base = now) thus allows exactly B at once.
 *
 * The clock counts whole ms, so a take at |now| stands for some instant of
 * that ms.  A TAT that fell due less than one ms and less than one T
 * before |now| is kept as the base instead of |now|: without that, every
 * poll of a drained key would lose the fraction of a ms by which it came
 * late, and a key polled every ms would get one token per ceil(T) instead
 * of one per T.  Less than one T, so the credit is less than one token and
 * a key never allows more than B at one instant. */

/* 1 when TAT is after |now|. */
static int gcra_ahead(uint64_t a, uint64_t b, uint64_t now) {
  return a > now || (a == now && b > 0);
}

/* 1 when TAT < now is the credited base described above. */
static int gcra_credit(const fy__limiter_sm_conf_t *c, uint64_t a, uint64_t b,
                       uint64_t now) {
  return a + 1 == now && b > 0 && c->rate - b < c->interval_ms;
}

/* For TAT after |now|: 1 when take(n) fits.  Beyond tau_ms whole ms ahead
 * nothing fits, and D is not formed (it could overflow). */
static int gcra_fits(const fy__limiter_sm_conf_t *c, uint64_t a, uint64_t b,
                     uint64_t now, uint64_t n) {
  uint64_t dms = a - now;
  if (dms > c->tau_ms)
    return 0;
  return dms * c->rate + b + n * c->interval_ms <= c->tau;
}

/* The smallest whole-ms wait until take(n) fits: ceil(TAT - (B - n) * T -
 * now), for a denied take (TAT after now). */
static uint64_t gcra_retry(const fy__limiter_sm_conf_t *c, uint64_t a,
                           uint64_t b, uint64_t now, uint64_t n) {
  uint64_t w = (c->burst - n) * c->interval_ms; /* (B - n) * T in 1/R ms */
  uint64_t wq = w / c->rate, wr = w % c->rate;
  /* A denial means TAT - now > (B - n) * T, hence a - now >= wq. */
  assert(gcra_ahead(a, b, now) && a - now >= wq);
  return a - now - wq + (b > wr);
}

/* remaining and reset for TAT (a, b) at |now|. */
static void gcra_describe(const fy__limiter_sm_conf_t *c, uint64_t a,
                          uint64_t b, uint64_t now,
                          fy__limiter_sm_verdict_t *v) {
  uint64_t dms, d;
  v->limit = c->burst;
  if (!gcra_ahead(a, b, now)) {
    v->remaining = c->burst;
    v->reset_ms = 0;
    return;
  }
  dms = a - now;
  v->reset_ms = dms + (b != 0); /* full again at TAT */
  if (dms > c->tau_ms) {
    v->remaining = 0;
    return;
  }
  d = dms * c->rate + b;
  v->remaining = d >= c->tau ? 0 : (c->tau - d) / c->interval_ms;
}

static int gcra_take(const fy__limiter_sm_conf_t *c,
                     fy__limiter_sm_state_t *s, uint64_t now, uint64_t n,
                     fy__limiter_sm_verdict_t *v) {
  uint64_t a = s->a, b = s->b, qa, qb;

  if (gcra_ahead(a, b, now)) {
    if (!gcra_fits(c, a, b, now, n)) {
      if (v != NULL) {
        gcra_describe(c, a, b, now, v);
        v->retry_after_ms = gcra_retry(c, a, b, now, n);
      }
      return FY__LIM_DENIED;
    }
  } else if (!gcra_credit(c, a, b, now)) {
    a = now;
    b = 0;
  }
  /* Here n <= B fits: base + n * T. */
  if (n == 1) {
    qa = c->t_ms;
    qb = c->t_rem;
  } else {
    qa = n * c->interval_ms / c->rate;
    qb = n * c->interval_ms % c->rate;
  }
  b += qb;
  a += qa;
  if (b >= c->rate) {
    b -= c->rate;
    a++;
  }
  s->a = a;
  s->b = b;
  if (v != NULL) {
    gcra_describe(c, a, b, now, v);
    v->retry_after_ms = 0;
  }
  return FY__LIM_ALLOWED;
}

static void gcra_hold(const fy__limiter_sm_conf_t *c,
                      fy__limiter_sm_state_t *s, uint64_t until) {
  /* TAT = until + (B - 1) * T: the first take fits at |until|.  A later
   * TAT already holds fewer tokens at every instant: keep it. */
  uint64_t w = (c->burst - 1) * c->interval_ms;
  uint64_t a = until + w / c->rate, b = w % c->rate;
  if (a > s->a || (a == s->a && b > s->b)) {
    s->a = a;
    s->b = b;
  }
}

/* ---- token bucket -------------------------------------------------------
 *
 * a = tokens, b = next refill instant (while a < B).  At each instant
 * b + k * I (k >= 0) that has been reached, R tokens are added, up to B. */

/* The tokens at |now| and the refill after it, without storing them.
 * Tokens below zero are owed to waits (fy__limiter_sm_reserve()). */
static void bucket_refill(const fy__limiter_sm_conf_t *c, int64_t *t,
                          uint64_t *next, uint64_t now) {
  uint64_t k, d, missing;
  if (*t >= (int64_t)c->burst) {
    *t = (int64_t)c->burst;
    return;
  }
  if (now < *next)
    return; /* includes a clock that went back: no refill */
  d = now - *next;
  k = d < c->interval_ms ? 1 : 1 + d / c->interval_ms;
  /* Refills beyond those that fill the bucket are not formed: k * R
   * could overflow after a long idle. */
  missing = (uint64_t)((int64_t)c->burst - *t);
  if (k >= steps(missing, c->rate)) {
    *t = (int64_t)c->burst;
    return;
  }
  *t += (int64_t)(k * c->rate);
  *next += k * c->interval_ms;
}

/* From tokens |t| < B with the next refill at |next| > now: the wait until
 * |want| tokens are there. */
static uint64_t bucket_wait(const fy__limiter_sm_conf_t *c, int64_t t,
                            uint64_t next, uint64_t now, uint64_t want) {
  assert(t < (int64_t)want && next > now);
  return next + (steps((uint64_t)((int64_t)want - t), c->rate) - 1) *
                    c->interval_ms -
         now;
}

static void bucket_describe(const fy__limiter_sm_conf_t *c, int64_t t,
                            uint64_t next, uint64_t now,
                            fy__limiter_sm_verdict_t *v) {
  v->limit = c->burst;
  v->remaining = t > 0 ? (uint64_t)t : 0;
  v->reset_ms = t >= (int64_t)c->burst
                    ? 0
                    : bucket_wait(c, t, next, now, c->burst);
}

static int bucket_take(const fy__limiter_sm_conf_t *c,
                       fy__limiter_sm_state_t *s, uint64_t now, uint64_t n,
                       fy__limiter_sm_verdict_t *v) {
  int64_t t = (int64_t)s->a;
  uint64_t next = s->b;
  bucket_refill(c, &t, &next, now);
  if (t < (int64_t)n) {
    if (v != NULL) {
      bucket_describe(c, t, next, now, v);
      v->retry_after_ms = bucket_wait(c, t, next, now, n);
    }
    return FY__LIM_DENIED;
  }
  if (t == (int64_t)c->burst)
    next = now + c->interval_ms; /* a full bucket starts a new anchor */
  t -= (int64_t)n;
  s->a = (uint64_t)t;
  s->b = next;
  if (v != NULL) {
    bucket_describe(c, t, next, now, v);
    v->retry_after_ms = 0;
  }
  return FY__LIM_ALLOWED;
}

static void bucket_hold(const fy__limiter_sm_conf_t *c,
                        fy__limiter_sm_state_t *s, uint64_t until) {
  /* Empty, first refill at |until|, or at the pending refill if that comes
   * later: a refill due before |until| would create tokens the server has
   * just refused.  Refilling first is not needed: the tokens go anyway. */
  int64_t t = (int64_t)s->a;
  uint64_t next = t >= (int64_t)c->burst || s->b < until ? until : s->b;
  s->a = t < 0 ? s->a : 0; /* tokens owed to waits stay owed */
  s->b = next;
}

/* ---- entry points ------------------------------------------------------ */

static int invalid(const fy__limiter_sm_conf_t *c, uint64_t n) {
  /* n - 1 wraps for n == 0. */
  return n - 1 >= c->burst;
}

static void describe(const fy__limiter_sm_conf_t *c,
                     const fy__limiter_sm_state_t *s, uint64_t now,
                     fy__limiter_sm_verdict_t *v) {
  if (c->algo == FY__LIM_GCRA) {
    gcra_describe(c, s->a, s->b, now, v);
  } else {
    int64_t t = (int64_t)s->a;
    uint64_t next = s->b;
    bucket_refill(c, &t, &next, now);
    bucket_describe(c, t, next, now, v);
  }
}

int fy__limiter_sm_take(const fy__limiter_sm_conf_t *c,
                        fy__limiter_sm_state_t *s, int fresh, uint64_t now_ms,
                        uint64_t n, fy__limiter_sm_verdict_t *v) {
  fy__limiter_sm_state_t tmp;
  int rc;
  now_ms = clamp_time(now_ms);
  if (invalid(c, n)) {
    if (v != NULL) {
      if (fresh) {
        fy__limiter_sm_fresh(c, &tmp);
        describe(c, &tmp, now_ms, v);
      } else {
        describe(c, s, now_ms, v);
      }
      v->retry_after_ms = 0;
    }
    return UV_EINVAL;
  }
  if (fresh) {
    /* A full bucket always holds n <= B: the take is allowed. */
    fy__limiter_sm_fresh(c, &tmp);
    rc = c->algo == FY__LIM_GCRA ? gcra_take(c, &tmp, now_ms, n, v)
                                 : bucket_take(c, &tmp, now_ms, n, v);
    assert(rc == FY__LIM_ALLOWED);
    *s = tmp;
    return rc;
  }
  return c->algo == FY__LIM_GCRA ? gcra_take(c, s, now_ms, n, v)
                                 : bucket_take(c, s, now_ms, n, v);
}

int fy__limiter_sm_peek(const fy__limiter_sm_conf_t *c,
                        const fy__limiter_sm_state_t *s, int fresh,
                        uint64_t now_ms, uint64_t n,
                        fy__limiter_sm_verdict_t *v) {
  fy__limiter_sm_state_t tmp;
  fy__limiter_sm_verdict_t after;
  int rc;
  now_ms = clamp_time(now_ms);
  if (fresh)
    fy__limiter_sm_fresh(c, &tmp);
  else
    tmp = *s;
  if (invalid(c, n)) {
    rc = UV_EINVAL;
  } else {
    /* The take on a copy gives the decision and, when denied, the wait. */
    rc = c->algo == FY__LIM_GCRA ? gcra_take(c, &tmp, now_ms, n, &after)
                                 : bucket_take(c, &tmp, now_ms, n, &after);
    if (fresh)
      fy__limiter_sm_fresh(c, &tmp);
    else
      tmp = *s;
  }
  if (v != NULL) {
    describe(c, &tmp, now_ms, v);
    v->retry_after_ms = rc == FY__LIM_DENIED ? after.retry_after_ms : 0;
  }
  return rc;
}

void fy__limiter_sm_hold(const fy__limiter_sm_conf_t *c,
                         fy__limiter_sm_state_t *s, int fresh, uint64_t now_ms,
                         uint64_t until_ms) {
  now_ms = clamp_time(now_ms);
  until_ms = clamp_time(until_ms);
  if (fresh)
    fy__limiter_sm_fresh(c, s);
  if (until_ms <= now_ms)
    return;
  if (c->algo == FY__LIM_GCRA)
    gcra_hold(c, s, until_ms);
  else
    bucket_hold(c, s, until_ms);
}

uint64_t fy__limiter_sm_idle_at(const fy__limiter_sm_conf_t *c,
                                const fy__limiter_sm_state_t *s) {
  if (c->algo == FY__LIM_GCRA) {
    /* TAT rounded up, and one ms more while a take could be credited. */
    if (s->b == 0)
      return s->a;
    return s->a + (c->rate - s->b < c->interval_ms ? 2 : 1);
  }
  if ((int64_t)s->a >= (int64_t)c->burst)
    return 0;
  /* The refill that brings the last missing token. */
  return s->b + (steps((uint64_t)((int64_t)c->burst - (int64_t)s->a),
                       c->rate) -
                 1) * c->interval_ms;
}

/* ---- reservations -------------------------------------------------------
 *
 * A wait takes its tokens at once, from the key's future: the state then
 * says they are gone, so every later take or reservation of the key comes
 * after them, and the wait's deadline fires at the instant they are
 * usable.  GCRA moves its TAT past them; the bucket goes below zero, the
 * debt paid by the refills to come. */

static int gcra_reserve(const fy__limiter_sm_conf_t *c,
                        fy__limiter_sm_state_t *s, uint64_t now, uint64_t n,
                        uint64_t latest, uint64_t *at,
                        fy__limiter_sm_verdict_t *v) {
  uint64_t a = s->a, b = s->b, wait = 0, qa, qb;
  if (gcra_ahead(a, b, now)) {
    if (!gcra_fits(c, a, b, now, n))
      wait = gcra_retry(c, a, b, now, n);
  } else if (!gcra_credit(c, a, b, now)) {
    a = now;
    b = 0;
  }
  if (wait > 0 && (latest <= now || wait > latest - now)) {
    if (v != NULL) {
      gcra_describe(c, s->a, s->b, now, v);
      v->retry_after_ms = wait;
    }
    return FY__LIM_DENIED;
  }
  qa = n * c->interval_ms / c->rate;
  qb = n * c->interval_ms % c->rate;
  b += qb;
  a += qa;
  if (b >= c->rate) {
    b -= c->rate;
    a++;
  }
  s->a = a;
  s->b = b;
  *at = now + wait;
  if (v != NULL) {
    gcra_describe(c, a, b, now, v);
    v->retry_after_ms = wait;
  }
  return FY__LIM_ALLOWED;
}

static int bucket_reserve(const fy__limiter_sm_conf_t *c,
                          fy__limiter_sm_state_t *s, uint64_t now, uint64_t n,
                          uint64_t latest, uint64_t *at,
                          fy__limiter_sm_verdict_t *v) {
  int64_t t = (int64_t)s->a;
  uint64_t next = s->b, wait, k;
  bucket_refill(c, &t, &next, now);
  if (t >= (int64_t)n) {
    *at = now;
    return bucket_take(c, s, now, n, v);
  }
  wait = bucket_wait(c, t, next, now, n);
  if (latest <= now || wait > latest - now) {
    if (v != NULL) {
      bucket_describe(c, t, next, now, v);
      v->retry_after_ms = wait;
    }
    return FY__LIM_DENIED;
  }
  /* The k-th refill from here brings the tokens.  What the bucket would
   * hold beyond its capacity by then is never there: clamp before taking,
   * so that the refills after it add up to what they would have. */
  k = steps((uint64_t)((int64_t)n - t), c->rate);
  if (t + (int64_t)(k * c->rate) > (int64_t)c->burst)
    t = (int64_t)c->burst - (int64_t)(k * c->rate);
  t -= (int64_t)n;
  s->a = (uint64_t)t;
  s->b = next;
  *at = now + wait;
  if (v != NULL) {
    bucket_describe(c, t, next, now, v);
    v->retry_after_ms = wait;
  }
  return FY__LIM_ALLOWED;
}

int fy__limiter_sm_reserve(const fy__limiter_sm_conf_t *c,
                           fy__limiter_sm_state_t *s, int fresh,
                           uint64_t now_ms, uint64_t n, uint64_t latest_ms,
                           uint64_t *at_ms, fy__limiter_sm_verdict_t *v) {
  fy__limiter_sm_state_t tmp;
  int rc;
  now_ms = clamp_time(now_ms);
  latest_ms = clamp_time(latest_ms);
  *at_ms = now_ms;
  if (invalid(c, n) || fresh)
    return fy__limiter_sm_take(c, s, fresh, now_ms, n, v);
  tmp = *s;
  rc = c->algo == FY__LIM_GCRA
           ? gcra_reserve(c, &tmp, now_ms, n, latest_ms, at_ms, v)
           : bucket_reserve(c, &tmp, now_ms, n, latest_ms, at_ms, v);
  if (rc == FY__LIM_ALLOWED)
    *s = tmp;
  return rc;
}

void fy__limiter_sm_unreserve(fy__limiter_sm_state_t *s,
                              const fy__limiter_sm_state_t *before,
                              const fy__limiter_sm_state_t *after) {
  /* Unchanged since the reservation: nothing was decided after it, so it
   * can be undone exactly.  Otherwise a later request counts on the state
   * as it is, and undoing would let it overtake the waits before it. */
  if (s->a == after->a && s->b == after->b)
    *s = *before;
}
