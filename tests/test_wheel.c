/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * Unit tests of the timer wheel (src/wheel.h) with a fake "now": no loop,
 * no context.  Far deadlines, cascades, tie order, removal (from slots and
 * from a ready list), the fy__wheel_next() lower bound, and a randomised
 * comparison against a brute-force model. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "wheel.h"

#define HOUR (3600ull * 1000ull)
#define YEAR (365ull * 24ull * HOUR)

static void never(fy_deadline_t *d) { (void)d; }

static fy__wheel_t W;

typedef struct ent_s {
  fy_deadline_t d;
  unsigned id;
  uint64_t want;  /* the expiry asked for (before clamping) */
  uint64_t seq;   /* insertion sequence, for tie order */
  int pending;
} ent_t;

#define NENT 512
static ent_t E[NENT];
static uint64_t seqno;

static void ents_init(void) {
  unsigned i;
  memset(E, 0, sizeof(E));
  for (i = 0; i < NENT; i++) {
    fy_deadline_init(NULL, &E[i].d, never);
    E[i].id = i;
  }
  seqno = 0;
}

static void ins(unsigned i, uint64_t expiry) {
  E[i].d.expiry = expiry;
  E[i].want = expiry;
  E[i].seq = seqno++;
  E[i].pending = 1;
  fy__wheel_insert(&W, &E[i].d);
}

static void rem(unsigned i) {
  fy__wheel_remove(&W, &E[i].d);
  E[i].pending = 0;
}

static ent_t *ent_of(fy__queue_t *q) {
  return fy_container_of(fy__queue_data(q, fy_deadline_t, node), ent_t, d);
}

/* Step to |target| collecting fired ids in order (at most |max|). */
static size_t fire(uint64_t target, unsigned *ids, uint64_t *at, size_t max) {
  fy__queue_t ready;
  size_t n = 0;
  uint64_t t0 = W.wtime;
  fy__queue_init(&ready);
  while (fy__wheel_step(&W, target, &ready)) {
    cr_assert(!fy__queue_empty(&ready), "step returned 1 with nothing");
    while (!fy__queue_empty(&ready)) {
      ent_t *e = ent_of(fy__queue_head(&ready));
      cr_assert_eq(e->d.slot, FY__DL_READY);
      fy__queue_remove(&e->d.node);
      e->d.slot = FY__DL_IDLE;
      e->pending = 0;
      cr_assert_eq(e->d.expiry, W.wtime, "entry %u fired at %llu, due %llu",
                   e->id, (unsigned long long)W.wtime,
                   (unsigned long long)e->d.expiry);
      cr_assert_leq(W.wtime, target);
      if (n < max) {
        ids[n] = e->id;
        if (at != NULL)
          at[n] = W.wtime;
      }
      n++;
    }
  }
  cr_assert_eq(W.wtime, target > t0 ? target : t0,
               "wtime must end at the target");
  return n;
}

TestSuite(wheel);

Test(wheel, empty) {
  unsigned ids[4];
  fy__wheel_init(&W, 1000);
  cr_assert_eq(W.wtime, 1000);
  cr_assert_eq(W.count, 0);
  cr_assert_eq(fy__wheel_next(&W), FY_TIME_NEVER);
  cr_assert_eq(fire(5000, ids, NULL, 4), 0);
  cr_assert_eq(W.wtime, 5000);
  /* A target in the past never moves time backwards. */
  cr_assert_eq(fire(10, ids, NULL, 4), 0);
  cr_assert_eq(W.wtime, 5000);
}

Test(wheel, now_and_past_fire_at_wtime) {
  unsigned ids[4];
  ents_init();
  fy__wheel_init(&W, 777);
  ins(0, 777);
  ins(1, 3); /* in the past: clamped to wtime */
  cr_assert_eq(E[1].d.expiry, 777);
  cr_assert_eq(W.count, 2);
  cr_assert_eq(fy__wheel_next(&W), 777);
  cr_assert_eq(fire(777, ids, NULL, 4), 2);
  cr_assert_eq(ids[0], 0);
  cr_assert_eq(ids[1], 1);
  cr_assert_eq(W.count, 0);
}

Test(wheel, order_of_expiry_then_insertion) {
  static const uint64_t exp[] = {50, 10, 70, 10, 4095, 64, 63, 4096, 10, 70};
  static const unsigned want[] = {1, 3, 8, 0, 6, 5, 2, 9, 4, 7};
  unsigned ids[16], i;
  ents_init();
  fy__wheel_init(&W, 0);
  for (i = 0; i < 10; i++)
    ins(i, exp[i]);
  cr_assert_eq(fire(100000, ids, NULL, 16), 10);
  for (i = 0; i < 10; i++)
    cr_expect_eq(ids[i], want[i], "position %u: %u", i, ids[i]);
}

/* An entry inserted early at a high level and one inserted later, for the
 * same instant, at a lower level: the earlier insertion still fires first. */
Test(wheel, ties_across_levels_keep_insertion_order) {
  unsigned ids[8];
  uint64_t t = 5 * 4096 + 17;
  ents_init();
  fy__wheel_init(&W, 0);
  ins(0, t);                    /* level 2 */
  cr_assert_eq(fire(5 * 4096 - 1, ids, NULL, 8), 0);
  ins(1, t);                    /* level 2 still (differs in bit 12) */
  cr_assert_eq(fire(5 * 4096 + 3, ids, NULL, 8), 0); /* cascaded */
  ins(2, t);                    /* level 0 now */
  ins(3, t - 1);
  cr_assert_eq(fire(t, ids, NULL, 8), 4);
  cr_assert_eq(ids[0], 3);
  cr_assert_eq(ids[1], 0);
  cr_assert_eq(ids[2], 1);
  cr_assert_eq(ids[3], 2);
}

Test(wheel, far_deadlines_fire_exactly_on_time) {
  const uint64_t far[] = {HOUR,      24 * HOUR,          YEAR,
                          100 * YEAR, (uint64_t)1 << 62, UINT64_MAX - 1,
                          UINT64_MAX};
  const size_t n = sizeof(far) / sizeof(far[0]);
  unsigned ids[4];
  uint64_t at[4];
  size_t i;
  ents_init();
  fy__wheel_init(&W, 0);
  for (i = 0; i < n; i++)
    ins((unsigned)i, far[i]);
  cr_assert_eq(W.count, n);
  for (i = 0; i < n; i++) {
    uint64_t next = fy__wheel_next(&W);
    cr_assert_leq(next, far[i], "next %llu above %llu",
                  (unsigned long long)next, (unsigned long long)far[i]);
    cr_assert_geq(next, W.wtime);
    cr_assert_eq(fire(far[i] - 1, ids, NULL, 4), 0, "fired early: %zu", i);
    cr_assert_eq(fire(far[i], ids, at, 4), 1, "did not fire: %zu", i);
    cr_assert_eq(ids[0], i);
    cr_assert_eq(at[0], far[i]);
  }
  cr_assert_eq(W.count, 0);
  cr_assert_eq(fy__wheel_next(&W), FY_TIME_NEVER);
}

Test(wheel, far_deadlines_in_one_jump) {
  const uint64_t far[] = {UINT64_MAX, YEAR, HOUR, UINT64_MAX - 1, 1};
  unsigned ids[8];
  ents_init();
  fy__wheel_init(&W, 0);
  for (unsigned i = 0; i < 5; i++)
    ins(i, far[i]);
  cr_assert_eq(fire(UINT64_MAX, ids, NULL, 8), 5);
  cr_assert_eq(ids[0], 4);
  cr_assert_eq(ids[1], 2);
  cr_assert_eq(ids[2], 1);
  cr_assert_eq(ids[3], 3);
  cr_assert_eq(ids[4], 0);
  cr_assert_eq(W.wtime, UINT64_MAX);
}

Test(wheel, starting_near_the_end_of_time) {
  const uint64_t base = UINT64_MAX - 5000;
  unsigned ids[8];
  ents_init();
  fy__wheel_init(&W, base);
  ins(0, UINT64_MAX);
  ins(1, UINT64_MAX - 1);
  ins(2, base + 1);
  ins(3, base);
  ins(4, base + 4096);
  cr_assert_eq(fy__wheel_next(&W), base);
  cr_assert_eq(fire(UINT64_MAX - 2, ids, NULL, 8), 3);
  cr_assert_eq(ids[0], 3);
  cr_assert_eq(ids[1], 2);
  cr_assert_eq(ids[2], 4);
  cr_assert_eq(fire(UINT64_MAX, ids, NULL, 8), 2);
  cr_assert_eq(ids[0], 1);
  cr_assert_eq(ids[1], 0);
}

/* Entries spread over several levels, time moved 1 ms at a time across
 * level boundaries: each fires exactly at its instant, in order. */
Test(wheel, cascade_one_ms_at_a_time) {
  unsigned ids[4], i, fired = 0;
  uint64_t at[4], t;
  ents_init();
  fy__wheel_init(&W, 0);
  for (i = 0; i < 300; i++)
    ins(i, (uint64_t)i * 97 % 20011 + 1); /* distinct, up to 20011 */
  for (t = 1; t <= 20011; t++) {
    size_t n = fire(t, ids, at, 4);
    cr_assert_leq(n, 1);
    if (n == 1) {
      cr_assert_eq(E[ids[0]].want, t);
      fired++;
    }
  }
  cr_assert_eq(fired, 300);
  cr_assert_eq(W.count, 0);
}

Test(wheel, remove_from_slots_and_ready_list) {
  fy__queue_t ready;
  unsigned ids[8];
  ents_init();
  fy__wheel_init(&W, 0);
  ins(0, 10);
  ins(1, 10);
  ins(2, 10);
  ins(3, 1u << 20);
  ins(4, 500);
  cr_assert_eq(W.count, 5);
  rem(4);
  cr_assert_eq(W.count, 4);
  cr_assert_eq(E[4].d.slot, FY__DL_IDLE);
  rem(4); /* idempotent */
  cr_assert_eq(W.count, 4);

  fy__queue_init(&ready);
  cr_assert_eq(fy__wheel_step(&W, 100, &ready), 1);
  cr_assert_eq(W.wtime, 10);
  cr_assert_eq(W.count, 1); /* entries in a ready list are not counted */
  /* A callback stops a sibling that is already due. */
  rem(1);
  cr_assert_eq(W.count, 1);
  cr_assert_eq(E[1].d.slot, FY__DL_IDLE);
  cr_assert_eq(ent_of(fy__queue_head(&ready))->id, 0);
  cr_assert_eq(ent_of(fy__queue_head(&ready)->next)->id, 2);
  cr_assert_eq(fy__queue_head(&ready)->next->next, &ready);
  rem(0);
  rem(2);
  cr_assert(fy__queue_empty(&ready));

  rem(3);
  cr_assert_eq(W.count, 0);
  cr_assert_eq(fy__wheel_next(&W), FY_TIME_NEVER);
  cr_assert_eq(fire(UINT64_MAX, ids, NULL, 8), 0);
  for (unsigned l = 0; l < FY__WHEEL_LEVELS; l++)
    cr_assert_eq(W.occupied[l], 0, "level %u still marked", l);
}

Test(wheel, next_is_a_lower_bound_and_exact_in_level0) {
  ents_init();
  fy__wheel_init(&W, 1000);
  ins(0, 1000 + 20);
  /* Same 64 ms block as wtime (1000 = 15*64 + 40): level 0, exact. */
  cr_assert_eq(fy__wheel_next(&W), 1020);
  rem(0);
  ins(1, 100000);
  cr_assert_leq(fy__wheel_next(&W), 100000);
  cr_assert_gt(fy__wheel_next(&W), 1000);
  ins(2, 1010);
  cr_assert_eq(fy__wheel_next(&W), 1010);
}

/* ---- randomised model check -------------------------------------------- */

static uint64_t rng;
static uint64_t rnd(void) {
  rng = rng * 6364136223846793005ull + 1442695040888963407ull;
  return rng >> 33;
}

static uint64_t delta(unsigned dist) {
  switch (dist) {
  case 0: return rnd() % 200;                 /* level 0-1 */
  case 1: return rnd() % 300000;              /* a few levels */
  case 2: return (rnd() << 31 | rnd()) % (50 * YEAR);
  default: {
    unsigned r = (unsigned)(rnd() % 4);
    return r == 0 ? rnd() % 64 : r == 1 ? rnd() % 5000
         : r == 2 ? rnd() % (10 * HOUR) : (rnd() << 31 | rnd()) % YEAR;
  }
  }
}

/* The pending entry that must fire next: smallest clamped expiry, then
 * smallest insertion sequence. */
static ent_t *model_first(void) {
  ent_t *best = NULL;
  unsigned i;
  for (i = 0; i < NENT; i++) {
    ent_t *e = &E[i];
    if (!e->pending)
      continue;
    if (best == NULL || e->d.expiry < best->d.expiry ||
        (e->d.expiry == best->d.expiry && e->seq < best->seq))
      best = e;
  }
  return best;
}

static void model_run(uint64_t seed, unsigned dist, unsigned ops) {
  unsigned op, npending = 0;
  rng = seed;
  ents_init();
  fy__wheel_init(&W, dist == 2 ? (uint64_t)1 << 40 : 0);
  for (op = 0; op < ops; op++) {
    unsigned r = (unsigned)(rnd() % 100);
    unsigned i = (unsigned)(rnd() % NENT);
    ent_t *first;
    if (r < 55) {
      if (E[i].pending) {
        rem(i);
        npending--;
      }
      ins(i, W.wtime + delta(dist));
      npending++;
      cr_assert_geq(E[i].d.expiry, W.wtime);
    } else if (r < 70) {
      if (E[i].pending) {
        rem(i);
        npending--;
      }
    } else {
      /* Step to a target; every batch must be exactly the model's. */
      uint64_t target = W.wtime + delta(dist);
      fy__queue_t ready;
      fy__queue_init(&ready);
      while (fy__wheel_step(&W, target, &ready)) {
        while (!fy__queue_empty(&ready)) {
          ent_t *e = ent_of(fy__queue_head(&ready));
          first = model_first();
          cr_assert_not_null(first);
          cr_assert_eq(e, first,
                       "seed %llu op %u: fired %u (due %llu) before %u (due "
                       "%llu)",
                       (unsigned long long)seed, op, e->id,
                       (unsigned long long)e->d.expiry, first->id,
                       (unsigned long long)first->d.expiry);
          cr_assert_eq(e->d.expiry, W.wtime);
          fy__queue_remove(&e->d.node);
          e->d.slot = FY__DL_IDLE;
          e->pending = 0;
          npending--;
        }
      }
      cr_assert_eq(W.wtime, target);
      first = model_first();
      if (first != NULL)
        cr_assert_gt(first->d.expiry, target, "seed %llu: %u left behind",
                     (unsigned long long)seed, first->id);
    }
    cr_assert_eq(W.count, npending);
    first = model_first();
    if (first == NULL) {
      cr_assert_eq(fy__wheel_next(&W), FY_TIME_NEVER);
    } else {
      uint64_t next = fy__wheel_next(&W);
      cr_assert_leq(next, first->d.expiry);
      cr_assert_geq(next, W.wtime);
      if ((first->d.expiry >> FY__WHEEL_BITS) == (W.wtime >> FY__WHEEL_BITS))
        cr_assert_eq(next, first->d.expiry);
    }
  }
}

Test(wheel, model_small_deltas) { model_run(1, 0, 6000); }
Test(wheel, model_medium_deltas) { model_run(2, 1, 6000); }
Test(wheel, model_huge_deltas) { model_run(3, 2, 6000); }
Test(wheel, model_mixed_deltas) {
  model_run(4, 3, 6000);
  model_run(5, 3, 6000);
}
