/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * The circuit breaker's pure state machine: options, the sliding window,
 * the closed / open / half-open machine, its generation guard and the
 * ordered ring of state changes.  It takes |now| and knows nothing of a
 * context, a loop or a frame (declared in breaker_sm.h, tested without a
 * loop).
 */
#include <assert.h>
#include <string.h>

#include "fortify.h"

#include "breaker_sm.h"

#define DEFAULT_OPEN_MS 60000u


/* A percentage in (0, 100].  NaN and infinities fail both comparisons. */
static int valid_rate(double r) { return r > 0.0 && r <= 100.0; }

/* ---- options ----------------------------------------------------------- */

void fy_breaker_opts_init(fy_breaker_opts_t *o) {
  if (o == NULL)
    return;
  memset(o, 0, sizeof(*o));
  o->max_requests = 1;
  o->interval_ms = 0;
  o->open_ms = DEFAULT_OPEN_MS;
  o->failure_threshold = 5;
  o->window = FY_BREAKER_WINDOW_NONE;
  o->window_calls = 100;
  o->window_ms = 10000;
  o->window_buckets = 10;
  o->minimum_calls = 100;
  o->failure_rate = 50.0;
  o->slow_call_rate = 100.0;
  o->slow_call_ms = 0;
  o->open_multiplier = 1.0;
  o->open_max_ms = 0;
  o->mode = FY_BREAKER_NORMAL;
}

static uint64_t norm_open_ms(const fy_breaker_opts_t *o) {
  return o->open_ms == 0 ? DEFAULT_OPEN_MS : o->open_ms;
}

int fy__breaker_sm_validate(const fy_breaker_opts_t *o) {
  uint64_t open_ms = norm_open_ms(o);
  if ((unsigned)o->mode >= FY_BREAKER_MODE__COUNT ||
      (unsigned)o->window >= FY_BREAKER_WINDOW__COUNT)
    return UV_EINVAL;
  if (o->interval_ms > FY_BREAKER_DURATION_MAX ||
      open_ms > FY_BREAKER_DURATION_MAX ||
      o->slow_call_ms > FY_BREAKER_DURATION_MAX ||
      o->open_max_ms > FY_BREAKER_DURATION_MAX)
    return UV_EINVAL;
  if (o->open_max_ms != 0 && o->open_max_ms < open_ms)
    return UV_EINVAL;
  if (!valid_rate(o->failure_rate) || !valid_rate(o->slow_call_rate))
    return UV_EINVAL;
  if (!(o->open_multiplier >= 1.0 &&
        o->open_multiplier <= FY_BREAKER_MULTIPLIER_MAX))
    return UV_EINVAL;
  if (o->window == FY_BREAKER_WINDOW_COUNT &&
      (o->window_calls == 0 || o->window_calls > FY_BREAKER_WINDOW_CALLS_MAX))
    return UV_EINVAL;
  if (o->window == FY_BREAKER_WINDOW_TIME &&
      (o->window_ms == 0 || o->window_ms > FY_BREAKER_DURATION_MAX ||
       o->window_buckets == 0 || o->window_buckets > FY_BREAKER_BUCKETS_MAX ||
       o->window_buckets > o->window_ms))
    return UV_EINVAL;
  return 0;
}

int fy_breaker_opts_check(const fy_breaker_opts_t *o) {
  return o != NULL ? fy__breaker_sm_validate(o) : UV_EINVAL;
}

size_t fy__breaker_sm_window_bytes(const fy_breaker_opts_t *o) {
  switch (o->window) {
  case FY_BREAKER_WINDOW_COUNT:
    return (((size_t)o->window_calls + 7) & ~(size_t)7);
  case FY_BREAKER_WINDOW_TIME:
    return (size_t)o->window_buckets * sizeof(fy__breaker_sm_agg_t);
  default:
    return 0;
  }
}

/* ---- the sliding window ------------------------------------------------ */

static void agg_sub(fy__breaker_sm_agg_t *total, const fy__breaker_sm_agg_t *k) {
  total->calls -= k->calls;
  total->failures -= k->failures;
  total->slow -= k->slow;
}

static void window_clear(fy__breaker_sm_t *b, uint64_t now) {
  memset(&b->total, 0, sizeof(b->total));
  b->head = 0;
  if (b->window == FY_BREAKER_WINDOW_COUNT) {
    memset(b->slots, 0, b->window_size);
  } else if (b->window == FY_BREAKER_WINDOW_TIME) {
    memset(b->buckets, 0, (size_t)b->window_size * sizeof(*b->buckets));
    b->head_epoch = now / b->width_ms;
  }
}

/* Time window: move the head to the bucket of |now|, evicting (subtracting)
 * each bucket it passes.  Amortised O(1): one step per bucket width, and a
 * gap longer than the window clears it at once. */
static void window_slide(fy__breaker_sm_t *b, uint64_t now) {
  uint64_t epoch, steps;
  fy__breaker_sm_agg_t *k;
  if (b->window != FY_BREAKER_WINDOW_TIME)
    return;
  epoch = now / b->width_ms;
  if (epoch <= b->head_epoch)
    return;
  steps = epoch - b->head_epoch;
  b->head_epoch = epoch;
  if (steps >= b->window_size) {
    window_clear(b, now);
    return;
  }
  while (steps-- > 0) {
    b->head = b->head + 1 == b->window_size ? 0 : b->head + 1;
    k = &b->buckets[b->head];
    agg_sub(&b->total, k);
    memset(k, 0, sizeof(*k));
  }
}

static void window_add(fy__breaker_sm_t *b, int failure, int slow, uint64_t now) {
  fy__breaker_sm_agg_t *k;
  uint8_t s;
  switch (b->window) {
  case FY_BREAKER_WINDOW_COUNT:
    /* The oldest outcome leaves as the newest enters (subtract-on-evict). */
    b->head = b->head + 1 == b->window_size ? 0 : b->head + 1;
    s = b->slots[b->head];
    if (s & FY__BREAKER_SM_S_USED) {
      b->total.calls--;
      b->total.failures -= (s & FY__BREAKER_SM_S_FAIL) != 0;
      b->total.slow -= (s & FY__BREAKER_SM_S_SLOW) != 0;
    }
    b->slots[b->head] = (uint8_t)(FY__BREAKER_SM_S_USED |
                                  (failure ? FY__BREAKER_SM_S_FAIL : 0) |
                                  (slow ? FY__BREAKER_SM_S_SLOW : 0));
    break;
  case FY_BREAKER_WINDOW_TIME:
    window_slide(b, now);
    k = &b->buckets[b->head];
    k->calls++;
    k->failures += failure != 0;
    k->slow += slow != 0;
    break;
  default:
    return;
  }
  b->total.calls++;
  b->total.failures += failure != 0;
  b->total.slow += slow != 0;
}

/* ---- the state machine ------------------------------------------------- */

static int machine_runs(fy_breaker_mode_t mode) {
  return mode == FY_BREAKER_NORMAL || mode == FY_BREAKER_METRICS_ONLY;
}

fy_breaker_state_t fy__breaker_sm_state(const fy__breaker_sm_t *b) {
  switch (b->mode) {
  case FY_BREAKER_FORCED_OPEN:
    return FY_BREAKER_OPEN;
  case FY_BREAKER_FORCED_CLOSED:
  case FY_BREAKER_DISABLED:
    return FY_BREAKER_CLOSED;
  default:
    return b->state;
  }
}

static void ev_push(fy__breaker_sm_t *b, fy_breaker_state_t from,
                    fy_breaker_state_t to) {
  fy__breaker_sm_ev_t *ev;
  size_t i, cap;
  if (from == to)
    return;
  if (b->ev_len == b->ev_cap) {
    cap = b->ev_cap * 2;
    ev = fy_malloc(cap * sizeof(*ev));
    if (ev == NULL) {
      /* Pending changes form a chain (each starts where the previous one
       * ended), so merging a->b then b->c into a->c keeps every listener's
       * view consistent.  Only under memory exhaustion. */
      fy__breaker_sm_ev_t *last = &b->ev[(b->ev_head + b->ev_len - 1) % b->ev_cap];
      last->to = (uint8_t)to;
      if (last->from == last->to)
        b->ev_len--;
      b->ev_merged++;
      return;
    }
    for (i = 0; i < b->ev_len; i++)
      ev[i] = b->ev[(b->ev_head + i) % b->ev_cap];
    if (b->ev != b->ev_inline)
      fy_free(b->ev);
    b->ev = ev;
    b->ev_cap = cap;
    b->ev_head = 0;
  }
  ev = &b->ev[(b->ev_head + b->ev_len) % b->ev_cap];
  ev->from = (uint8_t)from;
  ev->to = (uint8_t)to;
  b->ev_len++;
}

int fy__breaker_sm_next_event(fy__breaker_sm_t *b, fy_breaker_state_t *from,
                       fy_breaker_state_t *to) {
  fy__breaker_sm_ev_t *ev;
  if (b->ev_len == 0)
    return 0;
  ev = &b->ev[b->ev_head];
  *from = (fy_breaker_state_t)ev->from;
  *to = (fy_breaker_state_t)ev->to;
  b->ev_head = b->ev_head + 1 == b->ev_cap ? 0 : b->ev_head + 1;
  b->ev_len--;
  return 1;
}

static void clear_period(fy__breaker_sm_t *b) {
  uint64_t inflight = b->counts.inflight;
  memset(&b->counts, 0, sizeof(b->counts));
  b->counts.inflight = inflight;
}

/* Each consecutive trip opens for longer: the previous duration times the
 * multiplier, capped. */
static uint64_t next_open_ms(fy__breaker_sm_t *b) {
  double next;
  if (b->trips <= 1 || b->open_cur == 0)
    return b->open_ms;
  next = (double)b->open_cur * b->open_multiplier;
  if (next >= (double)b->open_max_ms)
    return b->open_max_ms;
  return (uint64_t)next;
}

/* Put the machine in |to| with a new generation and fresh counts. */
static void enter(fy__breaker_sm_t *b, fy_breaker_state_t to, uint64_t now) {
  b->state = to;
  b->generation++;
  memset(&b->counts, 0, sizeof(b->counts));
  window_clear(b, now);
  b->open_until = FY_TIME_NEVER;
  b->interval_end = FY_TIME_NEVER;
  switch (to) {
  case FY_BREAKER_CLOSED:
    b->trips = 0;
    b->open_cur = 0;
    memset(b->trip_n, 0, sizeof(b->trip_n));
    if (b->interval_ms > 0)
      b->interval_end = fy_time_add(now, b->interval_ms);
    break;
  case FY_BREAKER_OPEN:
    b->trips++;
    b->open_cur = next_open_ms(b);
    b->open_until = fy_time_add(now, b->open_cur);
    break;
  case FY_BREAKER_HALF_OPEN:
  default:
    break;
  }
}

static void transition(fy__breaker_sm_t *b, fy_breaker_state_t to, uint64_t now) {
  fy_breaker_state_t from = fy__breaker_sm_state(b);
  enter(b, to, now);
  ev_push(b, from, fy__breaker_sm_state(b));
}

static void trip(fy__breaker_sm_t *b, uint64_t calls, uint64_t failures,
                 uint64_t slow, uint64_t now) {
  b->trip_n[0] = calls;
  b->trip_n[1] = failures;
  b->trip_n[2] = b->counts.consecutive_failures;
  b->trip_n[3] = slow;
  transition(b, FY_BREAKER_OPEN, now);
}

void fy__breaker_sm_advance(fy__breaker_sm_t *b, uint64_t now) {
  if (b->mode == FY_BREAKER_DISABLED || b->mode == FY_BREAKER_FORCED_OPEN)
    return;
  if (b->state == FY_BREAKER_OPEN && now >= b->open_until &&
      machine_runs(b->mode)) {
    transition(b, FY_BREAKER_HALF_OPEN, now);
    return;
  }
  /* A tumbling interval: the counts (not the window, not the generation)
   * restart, anchored at the first access after it ended. */
  if (b->state == FY_BREAKER_CLOSED && now >= b->interval_end) {
    clear_period(b);
    b->interval_end = fy_time_add(now, b->interval_ms);
  }
}

uint64_t fy__breaker_sm_wakeup(const fy__breaker_sm_t *b) {
  if (machine_runs(b->mode) && b->state == FY_BREAKER_OPEN)
    return b->open_until;
  return FY_TIME_NEVER;
}

void fy__breaker_sm_init(fy__breaker_sm_t *b, const fy_breaker_opts_t *o, void *window,
                  uint64_t now) {
  memset(b, 0, sizeof(*b));
  b->interval_ms = o->interval_ms;
  b->open_ms = norm_open_ms(o);
  b->open_max_ms = o->open_max_ms != 0 ? o->open_max_ms
                                       : FY_BREAKER_DURATION_MAX;
  b->slow_ns = o->slow_call_ms * 1000000u;
  b->open_multiplier = o->open_multiplier;
  b->failure_rate = o->failure_rate;
  b->slow_call_rate = o->slow_call_rate;
  b->max_requests = o->max_requests != 0 ? o->max_requests : 1;
  b->failure_threshold = o->failure_threshold;
  b->minimum_calls = o->minimum_calls != 0 ? o->minimum_calls : 1;
  b->window = o->window;
  b->ready_to_trip = o->ready_to_trip;
  b->user_data = o->user_data;
  if (o->window == FY_BREAKER_WINDOW_COUNT) {
    b->window_size = o->window_calls;
    b->slots = window;
    /* A count window can never hold more than its size. */
    if (b->minimum_calls > b->window_size)
      b->minimum_calls = b->window_size;
  } else if (o->window == FY_BREAKER_WINDOW_TIME) {
    b->window_size = o->window_buckets;
    b->width_ms = o->window_ms / o->window_buckets;
    b->buckets = window;
  }
  b->mode = o->mode;
  b->ev = b->ev_inline;
  b->ev_cap = FY__BREAKER_SM_EV_INLINE;
  enter(b, FY_BREAKER_CLOSED, now);
  b->generation = 0;
}

void fy__breaker_sm_free(fy__breaker_sm_t *b) {
  if (b->ev != b->ev_inline)
    fy_free(b->ev);
  b->ev = b->ev_inline;
  b->ev_cap = FY__BREAKER_SM_EV_INLINE;
  b->ev_head = 0;
  b->ev_len = 0;
}

static void refuse(fy__breaker_sm_t *b, fy__breaker_sm_verdict_t *v, uint64_t now) {
  memset(v, 0, sizeof(*v));
  v->refused = FY_ECIRCUITOPEN;
  v->state = fy__breaker_sm_state(b);
  if (b->mode == FY_BREAKER_FORCED_OPEN)
    return; /* no trip behind it, no scheduled end */
  /* A refusal explains itself: the counts that opened it, kept until it
   * closes. */
  memcpy(v->n, b->trip_n, sizeof(v->n));
  if (b->state == FY_BREAKER_OPEN && b->open_until > now)
    v->retry_after_ms = b->open_until - now;
}

int fy__breaker_sm_acquire(fy__breaker_sm_t *b, fy_breaker_permit_t *permit, uint64_t now,
                    fy__breaker_sm_verdict_t *v) {
  /* The rest of the verdict is written by refuse(), when there is one. */
  v->refused = 0;
  v->dry = 0;
  permit->kind = FY__BREAKER_SM_P_INERT;
  permit->generation = b->generation;
  switch (b->mode) {
  case FY_BREAKER_DISABLED:
    return 0;
  case FY_BREAKER_FORCED_OPEN:
    refuse(b, v, now);
    return FY_ECIRCUITOPEN;
  default:
    break;
  }
  fy__breaker_sm_advance(b, now);
  permit->generation = b->generation;
  if (b->state == FY_BREAKER_CLOSED) {
    permit->kind = FY__BREAKER_SM_P_CLOSED;
  } else if (b->state == FY_BREAKER_HALF_OPEN &&
             b->counts.inflight < b->max_requests) {
    /* Trials are permits taken at admission, not completed calls, so at
     * most max_requests are ever in flight. */
    permit->kind = FY__BREAKER_SM_P_TRIAL;
  } else {
    refuse(b, v, now);
    if (b->mode != FY_BREAKER_METRICS_ONLY)
      return FY_ECIRCUITOPEN;
    /* Dry run: admit, but as a shadow whose outcome is not counted, so
     * the machine sees exactly the traffic it would have let through. */
    v->refused = 0;
    v->dry = 1;
    return 0;
  }
  b->counts.inflight++;
  return 0;
}

/* Take |permit| back: 1 when it belongs to the current generation and
 * still counts. */
static int take_permit(fy__breaker_sm_t *b, fy_breaker_permit_t *permit) {
  unsigned kind = permit->kind;
  permit->kind = FY__BREAKER_SM_P_INERT;
  if (kind == FY__BREAKER_SM_P_INERT || permit->generation != b->generation)
    return 0; /* generation guard: admitted before a state change */
  if (b->counts.inflight > 0)
    b->counts.inflight--;
  return 1;
}

void fy__breaker_sm_release(fy__breaker_sm_t *b, fy_breaker_permit_t *permit) {
  take_permit(b, permit);
}

static void count(fy__breaker_sm_t *b, int failure, int slow) {
  fy_breaker_counts_t *c = &b->counts;
  c->requests++;
  if (failure) {
    c->total_failures++;
    c->consecutive_failures++;
    c->consecutive_successes = 0;
  } else {
    c->total_successes++;
    c->consecutive_successes++;
    c->consecutive_failures = 0;
  }
  c->total_slow += slow != 0;
}

static int rate_reached(uint64_t part, uint64_t calls, double rate) {
  return (double)part * 100.0 >= rate * (double)calls;
}

/* The user's predicate runs on a copy; it may call back into the breaker,
 * and whatever it changed wins over its verdict. */
static int predicate_trips(fy__breaker_sm_t *b) {
  fy_breaker_counts_t copy = b->counts;
  uint64_t gen = b->generation;
  int r;
  if (b->ready_to_trip == NULL)
    return b->failure_threshold != 0 &&
           b->counts.consecutive_failures >= b->failure_threshold;
  copy.window_calls = b->total.calls;
  copy.window_failures = b->total.failures;
  copy.window_slow = b->total.slow;
  r = b->ready_to_trip(&copy, b->user_data);
  return r != 0 && gen == b->generation && b->state == FY_BREAKER_CLOSED;
}

/* The window's rules: judged only from minimum_calls calls on. */
static int window_trips(const fy__breaker_sm_t *b) {
  const fy__breaker_sm_agg_t *t = &b->total;
  if (b->window == FY_BREAKER_WINDOW_NONE || t->calls < b->minimum_calls)
    return 0;
  if (rate_reached(t->failures, t->calls, b->failure_rate))
    return 1;
  return b->slow_ns > 0 && rate_reached(t->slow, t->calls, b->slow_call_rate);
}

static void record_closed(fy__breaker_sm_t *b, int failure, int slow, uint64_t now) {
  count(b, failure, slow);
  window_add(b, failure, slow, now);
  if (b->mode == FY_BREAKER_FORCED_CLOSED)
    return;
  if (window_trips(b)) {
    trip(b, b->total.calls, b->total.failures, b->total.slow, now);
    return;
  }
  if (failure && predicate_trips(b))
    trip(b, b->counts.requests, b->counts.total_failures,
         b->counts.total_slow, now);
}

static void record_half_open(fy__breaker_sm_t *b, int failure, int slow,
                             uint64_t now) {
  count(b, failure, slow);
  /* With a window the slow-call rule is on, and a slow trial fails too. */
  if (failure || (slow && b->window != FY_BREAKER_WINDOW_NONE)) {
    trip(b, b->counts.requests, b->counts.total_failures,
         b->counts.total_slow, now);
    return;
  }
  if (b->counts.consecutive_successes >= b->max_requests)
    transition(b, FY_BREAKER_CLOSED, now);
}

void fy__breaker_sm_record(fy__breaker_sm_t *b, fy_breaker_permit_t *permit,
                    fy_outcome_t outcome, uint64_t latency_ns, uint64_t now) {
  int failure, slow;
  if (!take_permit(b, permit) || outcome == FY_OUTCOME_IGNORE)
    return;
  failure = outcome != FY_OUTCOME_SUCCESS;
  slow = b->slow_ns > 0 && latency_ns > b->slow_ns;
  fy__breaker_sm_advance(b, now);
  if (b->state == FY_BREAKER_CLOSED)
    record_closed(b, failure, slow, now);
  else if (b->state == FY_BREAKER_HALF_OPEN)
    record_half_open(b, failure, slow, now);
}

void fy__breaker_sm_counts(fy__breaker_sm_t *b, uint64_t now, fy_breaker_counts_t *out) {
  if (machine_runs(b->mode) || b->mode == FY_BREAKER_FORCED_CLOSED) {
    if (b->state == FY_BREAKER_CLOSED && now >= b->interval_end) {
      clear_period(b);
      b->interval_end = fy_time_add(now, b->interval_ms);
    }
    window_slide(b, now);
  }
  *out = b->counts;
  out->window_calls = b->total.calls;
  out->window_failures = b->total.failures;
  out->window_slow = b->total.slow;
}

int fy__breaker_sm_set_mode(fy__breaker_sm_t *b, fy_breaker_mode_t mode, uint64_t now) {
  fy_breaker_state_t from;
  if ((unsigned)mode >= FY_BREAKER_MODE__COUNT)
    return UV_EINVAL;
  if (mode == b->mode)
    return 0;
  if (machine_runs(mode) && machine_runs(b->mode)) {
    b->mode = mode; /* dry run on or off: the machine carries on */
    return 0;
  }
  from = fy__breaker_sm_state(b);
  b->mode = mode;
  enter(b, FY_BREAKER_CLOSED, now);
  ev_push(b, from, fy__breaker_sm_state(b));
  return 0;
}

void fy__breaker_sm_reset(fy__breaker_sm_t *b, uint64_t now) {
  /* A new generation always, a notification only if what callers see
   * changes: a reset of a closed breaker tells nobody. */
  transition(b, FY_BREAKER_CLOSED, now);
}

/* ---- names ------------------------------------------------------------- */

const char *fy_breaker_state_name(fy_breaker_state_t state) {
  switch (state) {
  case FY_BREAKER_CLOSED:
    return "closed";
  case FY_BREAKER_OPEN:
    return "open";
  case FY_BREAKER_HALF_OPEN:
    return "half-open";
  default:
    return "unknown";
  }
}

const char *fy_breaker_mode_name(fy_breaker_mode_t mode) {
  static const char *const names[FY_BREAKER_MODE__COUNT] = {
      "normal", "forced-open", "forced-closed", "disabled", "metrics-only"};
  if ((unsigned)mode >= FY_BREAKER_MODE__COUNT)
    return "unknown";
  return names[mode];
}
