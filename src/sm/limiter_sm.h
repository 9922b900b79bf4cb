/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * The rate limiter's pure state machine: one key's decision, given the
 * limiter's configuration, the key's 16-byte state and |now|.  No loop, no
 * clock, no key table, no allocation.  The driver keeps one state per key
 * in its table (opaquely) and calls these functions; tests drive them
 * directly.  Not API.
 *
 * Two algorithms, chosen per limiter:
 *
 *   FY__LIM_GCRA    smooth: one token every T = interval / rate, with up to
 *                   |burst| taken at once.  A fresh key allows exactly
 *                   |burst| at the same instant, then one per T.
 *   FY__LIM_BUCKET  a quota: the bucket holds up to |burst| tokens, and
 *                   |rate| whole tokens are added each time a full
 *                   |interval| has passed since the bucket's anchor.  The
 *                   anchor is the take that found the bucket full (for a
 *                   new key: its first use), then each refill boundary.
 *                   A full bucket has no anchor: its next take starts a new
 *                   one, which is what makes a full bucket and a missing
 *                   key the same thing.
 *
 * Both are exact: integers only, no rounding that accumulates.  GCRA keeps
 * its theoretical arrival time (TAT) as whole ms plus a fraction in units
 * of 1/rate ms, so T = interval / rate is exact for every rate; a dense
 * poll over an hour of interval 1000, rate 3 allows exactly 3 * 3600 +
 * burst.  Because the clock counts whole ms, a take whose TAT fell due
 * less than one ms (and less than one T) before |now| is scheduled from
 * the TAT, not from |now|: the part of a ms by which a poll comes late is
 * not lost, and with T >= 1 ms a key polled every ms gets its k-th token
 * at exactly ceil(k * T), even with burst 1.
 *
 * Units and bounds.  Times are ms on the caller's clock.  The supported
 * configuration is rate 1..FY__LIM_RATE_MAX tokens per interval, interval
 * 1..FY__LIM_INTERVAL_MAX ms, burst 1..FY__LIM_BURST_MAX tokens; within
 * them every product the code forms (at most burst * interval + rate, about
 * 2^57) fits in 64 bits.  |now| and |until| above FY__LIM_TIME_MAX (2^62
 * ms, 146 million years) are read as FY__LIM_TIME_MAX, so that an instant
 * plus the longest tolerance never wraps.
 *
 * The clock may stand still or go backwards: a take at an earlier |now|
 * than the state's last use sees no refill (the state's instants are in
 * its future) and nothing underflows; time lost that way is not made up.
 *
 * A state is meaningful only with the configuration that wrote it. */
#ifndef FY_LIMITER_SM_H
#define FY_LIMITER_SM_H

#include <stdint.h>

/* Supported bounds (fy__limiter_sm_check()). */
#define FY__LIM_RATE_MAX ((uint64_t)1000000000)
#define FY__LIM_BURST_MAX ((uint64_t)1000000000)
#define FY__LIM_INTERVAL_MAX ((uint64_t)24 * 3600 * 1000) /* 24 h in ms */
#define FY__LIM_TIME_MAX ((uint64_t)1 << 62)

typedef enum {
  FY__LIM_GCRA = 0,
  FY__LIM_BUCKET = 1
} fy__limiter_sm_algo_t;

/* What a take or a peek decided. */
enum {
  FY__LIM_ALLOWED = 0,
  FY__LIM_DENIED = 1 /* not now: see retry_after_ms; nothing changed */
  /* or UV_EINVAL: |n| can never be allowed (0 or above burst) */
};

/* One key, 16 bytes, stored opaquely by the key table.
 *   GCRA:   a = TAT, whole ms; b = the TAT's fraction, in 1/rate ms
 *           (0 <= b < rate).  TAT <= now means a full bucket.
 *   BUCKET: a = tokens (up to burst; below zero, as an int64_t, while
 *           waits hold tokens that refills still have to bring); b = the
 *           instant of the next refill, meaningless while a == burst. */
typedef struct fy__limiter_sm_state_s {
  uint64_t a;
  uint64_t b;
} fy__limiter_sm_state_t;

/* Filled by fy__limiter_sm_conf_init(); read-only afterwards. */
typedef struct fy__limiter_sm_conf_s {
  fy__limiter_sm_algo_t algo;
  uint64_t rate;        /* R, tokens per interval */
  uint64_t interval_ms; /* I */
  uint64_t burst;       /* B, the bucket's capacity */
  /* Derived once, so that the hot path neither divides nor overflows. */
  uint64_t t_ms;       /* GCRA: T = I / R is t_ms + t_rem / R ms */
  uint64_t t_rem;      /* I % R */
  uint64_t tau;        /* GCRA: the tolerance B * T, in 1/R ms (B * I) */
  uint64_t tau_ms;     /* floor(B * I / R): a TAT further than this
                          beyond |now| denies everything */
  uint64_t fill_steps; /* BUCKET: ceil(B / R), refills from empty to full */
} fy__limiter_sm_conf_t;

/* The decision's detail, for Retry-After and RateLimit-* headers. */
typedef struct fy__limiter_sm_verdict_s {
  uint64_t retry_after_ms; /* denied: the smallest wait after which the
                              same take succeeds if nobody else takes
                              (ms, rounded up, >= 1); 0 otherwise */
  uint64_t limit;          /* burst */
  uint64_t remaining;      /* whole tokens left after the decision */
  uint64_t reset_ms;       /* time until the bucket is full again */
} fy__limiter_sm_verdict_t;

/* 0 when the configuration is supported, else UV_EINVAL: unknown
 * algorithm, rate, interval or burst of 0 or above its bound. */
int fy__limiter_sm_check(int algo, uint64_t rate, uint64_t interval_ms,
                         uint64_t burst);

/* Check and derive.  On UV_EINVAL |c| is left untouched. */
int fy__limiter_sm_conf_init(fy__limiter_sm_conf_t *c, int algo,
                             uint64_t rate, uint64_t interval_ms,
                             uint64_t burst);

/* Write the state of a key never seen (a full bucket).  It is the same
 * whatever the instant, so it takes none. */
void fy__limiter_sm_fresh(const fy__limiter_sm_conf_t *c,
                          fy__limiter_sm_state_t *s);

/* Take |n| tokens at |now_ms|, atomically: all or nothing.  |fresh| says
 * the key has no state yet (|s| is then not read: the key is a full
 * bucket).  Returns FY__LIM_ALLOWED (|s| written, initialised if fresh),
 * FY__LIM_DENIED (|s| unchanged, and left unwritten if fresh) or UV_EINVAL
 * when n == 0 or n > burst (|s| unchanged; retry_after_ms is 0, as no wait
 * helps).  |v| may be NULL when only the decision is wanted: filling it
 * costs a division on some paths. */
int fy__limiter_sm_take(const fy__limiter_sm_conf_t *c,
                        fy__limiter_sm_state_t *s, int fresh, uint64_t now_ms,
                        uint64_t n, fy__limiter_sm_verdict_t *v);

/* What take(n) would return now, without taking: |v|->remaining is the
 * tokens held now, |v|->retry_after_ms the wait before take(n) succeeds. */
int fy__limiter_sm_peek(const fy__limiter_sm_conf_t *c,
                        const fy__limiter_sm_state_t *s, int fresh,
                        uint64_t now_ms, uint64_t n,
                        fy__limiter_sm_verdict_t *v);

/* A server answered 429 with a Retry-After ending at |until_ms|: deny every
 * take before |until_ms|.  The key is left as if it had been emptied one
 * refill step before |until_ms|: at |until_ms| it holds what one step
 * brings (GCRA: one token, then one per T; BUCKET: rate tokens, then rate
 * per interval), or less when it already held less.  It never creates a
 * token.  |until_ms| <= |now_ms| changes nothing.  |s| is always left
 * valid (written when |fresh|). */
void fy__limiter_sm_hold(const fy__limiter_sm_conf_t *c,
                         fy__limiter_sm_state_t *s, int fresh, uint64_t now_ms,
                         uint64_t until_ms);

/* The earliest instant from which |s| behaves exactly as a fresh key (a
 * full bucket) at every later |now|, so that the key table may drop it
 * then without changing any decision.  An instant <= now means: already
 * (a full bucket gives 0).  A clock that later goes back before it would
 * meet a fresh key where the state would have denied. */
uint64_t fy__limiter_sm_idle_at(const fy__limiter_sm_conf_t *c,
                                const fy__limiter_sm_state_t *s);

/* Take |n| tokens for the earliest instant at which they are there, no
 * later than |latest_ms|: the tokens are taken now (every later take or
 * reservation of the key comes after them), usable from *at_ms (== now_ms:
 * at once).  Returns FY__LIM_ALLOWED (|s| written), FY__LIM_DENIED when
 * they would come after |latest_ms| (nothing changed; |v|->retry_after_ms
 * says when they would come) or UV_EINVAL.  |v| may be NULL. */
int fy__limiter_sm_reserve(const fy__limiter_sm_conf_t *c,
                           fy__limiter_sm_state_t *s, int fresh,
                           uint64_t now_ms, uint64_t n, uint64_t latest_ms,
                           uint64_t *at_ms, fy__limiter_sm_verdict_t *v);

/* Undo a reservation that gave up before its instant: |before| and
 * |after| are the key's state before and after it.  Done only when the
 * state is still |after| (nothing was decided since); otherwise the
 * tokens stay taken, so that no later wait overtakes an earlier one. */
void fy__limiter_sm_unreserve(fy__limiter_sm_state_t *s,
                              const fy__limiter_sm_state_t *before,
                              const fy__limiter_sm_state_t *after);

#endif /* FY_LIMITER_SM_H */
