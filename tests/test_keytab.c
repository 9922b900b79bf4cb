/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * The bounded key table and the key sanitiser (src/sm/keytab.h): pure
 * data structures, driven directly with a hand-made clock. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "fortify.h"
#include "fixture.h"
#include "keytab.h"

static const uint64_t SEED[2] = {0x0123456789abcdefULL, 0xfedcba9876543210ULL};

static fy__keytab_opts_t opts(uint32_t max_keys, uint32_t max_key_len) {
  fy__keytab_opts_t o;
  memset(&o, 0, sizeof(o));
  o.max_keys = max_keys;
  o.max_key_len = max_key_len;
  o.seed[0] = SEED[0];
  o.seed[1] = SEED[1];
  return o;
}

static void tab_init(fy__keytab_t *t, uint32_t max_keys, uint32_t max_key_len) {
  fy__keytab_opts_t o = opts(max_keys, max_key_len);
  cr_assert_eq(fy__keytab_init(t, &o), 0);
}

/* Inserts |s| (must be new) with value {v, ~v} and idle_at |idle|. */
static fy__keytab_entry_t *put(fy__keytab_t *t, const char *s, uint64_t now,
                               uint64_t v, uint64_t idle,
                               fy__keytab_evicted_t *ev) {
  fy__keytab_entry_t *e = NULL;
  int fresh = -1;
  cr_assert_eq(fy__keytab_find_or_insert(t, s, strlen(s), now, &e, &fresh, ev),
               0, "insert '%s'", s);
  cr_assert_eq(fresh, 1, "'%s' was already there", s);
  cr_assert_eq(e->idle_at, FY_TIME_NEVER);
  e->value[0] = v;
  e->value[1] = ~v;
  fy__keytab_set_idle_at(e, idle);
  return e;
}

static fy__keytab_entry_t *get(const fy__keytab_t *t, const char *s,
                               uint64_t now) {
  return fy__keytab_find(t, s, strlen(s), now);
}

/* Deterministic pseudo-random numbers (splitmix64). */
static uint64_t rng_state;
static uint64_t rnd(void) {
  uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

/* ======================================================================== *
 * keytab
 * ======================================================================== */

Test(keytab, siphash_matches_the_published_vectors) {
  /* SipHash-2-4 with key 00..0f (Aumasson & Bernstein, appendix A). */
  const uint64_t k[2] = {0x0706050403020100ULL, 0x0f0e0d0c0b0a0908ULL};
  uint8_t msg[15];
  unsigned i;
  for (i = 0; i < sizeof(msg); i++)
    msg[i] = (uint8_t)i;
  cr_assert_eq(fy__siphash24(k, msg, 15), 0xa129ca6149be45e5ULL);
  cr_assert_eq(fy__siphash24(k, msg, 0), 0x726fdb47dd0e0e31ULL);
  cr_assert_eq(fy__siphash24(k, msg, 8), 0x93f5f5799a932462ULL);
  /* The table's variant shares the code with fewer rounds: it differs,
   * and depends on the key. */
  cr_assert_neq(fy__siphash13(k, msg, 15), fy__siphash24(k, msg, 15));
  cr_assert_neq(fy__siphash13(k, msg, 15), fy__siphash13(SEED, msg, 15));
}

Test(keytab, init_rejects_bad_options) {
  fy__keytab_t t;
  fy__keytab_opts_t o = opts(0, 16);
  memset(&t, 0xab, sizeof(t));
  cr_assert_eq(fy__keytab_init(&t, NULL), UV_EINVAL);
  cr_assert_eq(fy__keytab_init(&t, &o), UV_EINVAL);
  o = opts(FY__KEYTAB_MAX_KEYS + 1, 16);
  cr_assert_eq(fy__keytab_init(&t, &o), UV_EINVAL);
  o = opts(10, FY__KEYTAB_KEY_MAX + 1);
  cr_assert_eq(fy__keytab_init(&t, &o), UV_EINVAL);
  cr_assert_eq(t.max_keys, 0xababababu, "a refusal leaves |t| alone");
  o = opts(1, FY__KEYTAB_KEY_MAX);
  cr_assert_eq(fy__keytab_init(&t, &o), 0);
  fy__keytab_free(&t);
}

Test(keytab, insert_find_remove_round_trip) {
  fy__keytab_t t;
  char k[32];
  unsigned i;
  fy__keytab_entry_t *e;
  tab_init(&t, 100, 64);
  for (i = 0; i < 100; i++) {
    snprintf(k, sizeof(k), "client-%u", i);
    put(&t, k, 0, i, FY_TIME_NEVER, NULL);
  }
  cr_assert_eq(fy__keytab_count(&t), 100);
  for (i = 0; i < 100; i++) {
    snprintf(k, sizeof(k), "client-%u", i);
    e = get(&t, k, 0);
    cr_assert_not_null(e, "%s", k);
    cr_assert_eq(e->value[0], i);
    cr_assert_eq(e->value[1], ~(uint64_t)i);
  }
  cr_assert_null(get(&t, "client-100", 0));
  cr_assert_null(get(&t, "client-1 ", 0));
  /* Remove the even ones. */
  for (i = 0; i < 100; i += 2) {
    snprintf(k, sizeof(k), "client-%u", i);
    fy__keytab_remove(&t, get(&t, k, 0));
  }
  cr_assert_eq(fy__keytab_count(&t), 50);
  for (i = 0; i < 100; i++) {
    snprintf(k, sizeof(k), "client-%u", i);
    e = get(&t, k, 0);
    if (i % 2 == 0) {
      cr_assert_null(e, "%s was removed", k);
    } else {
      cr_assert_not_null(e, "%s", k);
      cr_assert_eq(e->value[0], i);
    }
  }
  /* A second find_or_insert finds the same entry, not fresh. */
  {
    fy__keytab_entry_t *a = get(&t, "client-7", 0), *b = NULL;
    int fresh = -1;
    cr_assert_eq(fy__keytab_find_or_insert(&t, "client-7", 8, 0, &b, &fresh,
                                           NULL),
                 0);
    cr_assert_eq(fresh, 0);
    cr_assert_eq(a, b);
    cr_assert_eq(b->value[0], 7);
  }
  /* Removed keys come back fresh. */
  put(&t, "client-0", 0, 1000, FY_TIME_NEVER, NULL);
  cr_assert_eq(get(&t, "client-0", 0)->value[0], 1000);
  cr_assert_eq(fy__keytab_count(&t), 51);
  fy__keytab_free(&t);
}

Test(keytab, empty_key_is_a_key_of_its_own) {
  fy__keytab_t t;
  fy__keytab_entry_t *e = NULL;
  int fresh = -1;
  tab_init(&t, 4, 8);
  put(&t, "", 0, 5, FY_TIME_NEVER, NULL);
  cr_assert_eq(fy__keytab_find_or_insert(&t, NULL, 0, 0, &e, &fresh, NULL), 0,
               "NULL of length 0 is the empty key");
  cr_assert_eq(fresh, 0);
  cr_assert_eq(e->value[0], 5);
  cr_assert_null(fy__keytab_find(&t, "\0", 1, 0), "\"\\0\" is another key");
  cr_assert_eq(fy__keytab_find_or_insert(&t, NULL, 3, 0, &e, &fresh, NULL),
               UV_EINVAL);
  fy__keytab_remove(&t, fy__keytab_find(&t, "", 0, 0));
  cr_assert_null(fy__keytab_find(&t, "", 0, 0));
  cr_assert_eq(fy__keytab_count(&t), 0);
  fy__keytab_free(&t);
}

Test(keytab, longest_key_accepted_one_more_refused) {
  fy__keytab_t t;
  char k[FY__KEYTAB_KEY_MAX + 2];
  fy__keytab_entry_t *e = NULL;
  int fresh = -1;
  uint32_t lens[] = {0, 7, FY__KEYTAB_INLINE, 40, FY__KEYTAB_KEY_MAX};
  unsigned i;
  memset(k, 'k', sizeof(k));
  for (i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
    uint32_t max = lens[i];
    tab_init(&t, 8, max);
    cr_assert_eq(fy__keytab_find_or_insert(&t, k, max, 0, &e, &fresh, NULL), 0,
                 "a key of max_key_len=%u", max);
    cr_assert_eq(fresh, 1);
    cr_assert_eq(fy__keytab_find_or_insert(&t, k, max + 1, 0, &e, &fresh,
                                           NULL),
                 FY_EKEY, "a key of max_key_len + 1 = %u", max + 1);
    cr_assert_null(fy__keytab_find(&t, k, max + 1, 0));
    cr_assert_eq(fy__keytab_count(&t), 1, "a refusal inserts nothing");
    cr_assert_not_null(fy__keytab_find(&t, k, max, 0));
    fy__keytab_free(&t);
  }
}

Test(keytab, long_keys_compare_every_byte) {
  fy__keytab_t t;
  char a[200], b[200], out[FY__KEYTAB_KEY_MAX];
  fy__keytab_entry_t *ea, *eb;
  tab_init(&t, 16, 200);
  memset(a, 'x', sizeof(a));
  memcpy(b, a, sizeof(b));
  b[199] = 'y'; /* same 19-byte prefix and length, last byte differs */
  {
    int fresh;
    cr_assert_eq(fy__keytab_find_or_insert(&t, a, 200, 0, &ea, &fresh, NULL), 0);
    ea->value[0] = 1;
    ea->idle_at = FY_TIME_NEVER;
    cr_assert_eq(fy__keytab_find_or_insert(&t, b, 200, 0, &eb, &fresh, NULL), 0);
    cr_assert_eq(fresh, 1);
    eb->value[0] = 2;
    eb->idle_at = FY_TIME_NEVER;
    cr_assert_eq(fy__keytab_find_or_insert(&t, a, 199, 0, &eb, &fresh, NULL), 0);
    cr_assert_eq(fresh, 1, "a prefix is another key");
    eb->idle_at = FY_TIME_NEVER;
  }
  cr_assert_eq(fy__keytab_find(&t, a, 200, 0)->value[0], 1);
  cr_assert_eq(fy__keytab_find(&t, b, 200, 0)->value[0], 2);
  cr_assert_eq(fy__keytab_entry_key(&t, fy__keytab_find(&t, b, 200, 0), out),
               200);
  cr_assert_eq(memcmp(out, b, 200), 0);
  cr_assert_eq(t.long_count, 3);
  fy__keytab_remove(&t, fy__keytab_find(&t, a, 200, 0));
  cr_assert_eq(t.long_count, 2);
  cr_assert_null(fy__keytab_find(&t, a, 200, 0));
  cr_assert_eq(fy__keytab_find(&t, b, 200, 0)->value[0], 2);
  fy__keytab_free(&t);
}

/* Keys "c<i>" whose home slot is |home|, written into |out|. */
static unsigned colliding(const fy__keytab_t *t, uint32_t home, char out[][16],
                          unsigned n) {
  unsigned i, found = 0;
  for (i = 0; found < n && i < 1000000; i++) {
    char k[16];
    snprintf(k, sizeof(k), "c%u", i);
    if (fy__keytab_home(t, k, strlen(k)) == home)
      memcpy(out[found++], k, sizeof(k));
  }
  return found;
}

static uint32_t slot_entry(const fy__keytab_t *t, uint32_t slot) {
  uint32_t s = t->index[slot];
  return s == 0 ? FY__KEYTAB_NIL : (s & t->emask) - 1;
}

static uint32_t no_of(const fy__keytab_t *t, const fy__keytab_entry_t *e) {
  return (uint32_t)(e - t->entries);
}

Test(keytab, deletion_inside_a_probe_chain_shifts_back) {
  fy__keytab_t t;
  char k[3][16];
  uint32_t h;
  tab_init(&t, 4, 16); /* 6 slots */
  cr_assert_eq(t.nslots, 6);
  h = 2;
  cr_assert_eq(colliding(&t, h, k, 3), 3);
  put(&t, k[0], 0, 0, FY_TIME_NEVER, NULL);
  put(&t, k[1], 0, 1, FY_TIME_NEVER, NULL);
  put(&t, k[2], 0, 2, FY_TIME_NEVER, NULL);
  /* One chain: home, home+1, home+2. */
  cr_assert_eq(slot_entry(&t, h), no_of(&t, get(&t, k[0], 0)));
  cr_assert_eq(slot_entry(&t, h + 1), no_of(&t, get(&t, k[1], 0)));
  cr_assert_eq(slot_entry(&t, h + 2), no_of(&t, get(&t, k[2], 0)));
  fy__keytab_remove(&t, get(&t, k[1], 0));
  /* The last one moved into the hole: no tombstone, no gap. */
  cr_assert_eq(slot_entry(&t, h + 1), no_of(&t, get(&t, k[2], 0)));
  cr_assert_eq(t.index[h + 2], 0);
  cr_assert_eq(get(&t, k[0], 0)->value[0], 0);
  cr_assert_eq(get(&t, k[2], 0)->value[0], 2);
  cr_assert_null(get(&t, k[1], 0));
  fy__keytab_remove(&t, get(&t, k[0], 0));
  cr_assert_eq(slot_entry(&t, h), no_of(&t, get(&t, k[2], 0)));
  cr_assert_eq(get(&t, k[2], 0)->value[0], 2);
  fy__keytab_free(&t);
}

Test(keytab, deletion_shifts_back_across_the_wrap) {
  fy__keytab_t t;
  char k[3][16], o[1][16];
  uint32_t last;
  tab_init(&t, 4, 16);
  last = t.nslots - 1;
  cr_assert_eq(colliding(&t, last, k, 3), 3);
  /* A key at home 0 sits after the wrapped chain and must not move to a
   * slot before its home. */
  cr_assert_eq(colliding(&t, 1, o, 1), 1);
  put(&t, o[0], 0, 9, FY_TIME_NEVER, NULL); /* slot 1 */
  put(&t, k[0], 0, 0, FY_TIME_NEVER, NULL); /* last */
  put(&t, k[1], 0, 1, FY_TIME_NEVER, NULL); /* 0 */
  put(&t, k[2], 0, 2, FY_TIME_NEVER, NULL); /* 2, past o */
  cr_assert_eq(slot_entry(&t, 0), no_of(&t, get(&t, k[1], 0)));
  cr_assert_eq(slot_entry(&t, 2), no_of(&t, get(&t, k[2], 0)));
  fy__keytab_remove(&t, get(&t, k[0], 0));
  /* k1 moves back over the wrap to |last|, k2 to 0; o stays at its home. */
  cr_assert_eq(slot_entry(&t, last), no_of(&t, get(&t, k[1], 0)));
  cr_assert_eq(slot_entry(&t, 0), no_of(&t, get(&t, k[2], 0)));
  cr_assert_eq(slot_entry(&t, 1), no_of(&t, get(&t, o[0], 0)));
  cr_assert_eq(t.index[2], 0);
  cr_assert_eq(get(&t, o[0], 0)->value[0], 9);
  cr_assert_eq(get(&t, k[1], 0)->value[0], 1);
  cr_assert_eq(get(&t, k[2], 0)->value[0], 2);
  fy__keytab_free(&t);
}

/* A chain longer than the displacement field can count: the entries past
 * it are found again through their hash when the chain shifts. */
Test(keytab, long_chains_shift_back_past_a_saturated_displacement) {
  enum { N = 40 };
  fy__keytab_t t;
  static char k[N][16];
  unsigned i, r;
  tab_init(&t, 64, 16);
  cr_assert_lt(t.dmax, N - 1, "the chain must saturate the field");
  cr_assert_eq(colliding(&t, 7, k, N), N);
  for (i = 0; i < N; i++)
    put(&t, k[i], 0, i, FY_TIME_NEVER, NULL);
  for (i = 0; i < N; i++)
    cr_assert_eq(slot_entry(&t, (7 + i) % t.nslots),
                 no_of(&t, get(&t, k[i], 0)));
  /* Remove from the front, then every third: each time, every remaining
   * key is found and the chain stays contiguous from its home. */
  for (r = 0; r < N; r += 3) {
    fy__keytab_remove(&t, get(&t, k[r], 0));
    for (i = 0; i < N; i++) {
      fy__keytab_entry_t *e = get(&t, k[i], 0);
      if (i <= r && i % 3 == 0)
        cr_assert_null(e, "%u removed", i);
      else
        cr_assert(e != NULL && e->value[0] == i, "%u after removing %u", i, r);
    }
  }
  cr_assert_eq(fy__keytab_count(&t), N - (N + 2) / 3);
  for (i = 0; i < fy__keytab_count(&t); i++)
    cr_assert_neq(t.index[(7 + i) % t.nslots], 0, "a gap in the chain");
  cr_assert_eq(t.index[(7 + i) % t.nslots], 0);
  fy__keytab_free(&t);
}

/* Many inserts and removals on a small, crowded table: every present key
 * is found with its value, every absent one is not. */
Test(keytab, churn_keeps_every_probe_correct) {
  enum { N = 64, KEYS = 200 };
  fy__keytab_t t;
  uint64_t present[KEYS] = {0};
  char k[16];
  unsigned step, i;
  rng_state = 42;
  tab_init(&t, N, 16);
  for (step = 0; step < 20000; step++) {
    unsigned r = (unsigned)(rnd() % KEYS);
    fy__keytab_entry_t *e;
    snprintf(k, sizeof(k), "k%u", r);
    e = get(&t, k, 0);
    cr_assert_eq(e != NULL, present[r] != 0, "step %u key %s", step, k);
    if (e != NULL) {
      cr_assert_eq(e->value[0], present[r]);
      fy__keytab_remove(&t, e);
      present[r] = 0;
    } else if (fy__keytab_count(&t) < N) {
      put(&t, k, 0, step + 1, FY_TIME_NEVER, NULL);
      present[r] = step + 1;
    }
  }
  for (i = 0; i < KEYS; i++) {
    fy__keytab_entry_t *e;
    snprintf(k, sizeof(k), "k%u", i);
    e = get(&t, k, 0);
    cr_assert_eq(e != NULL, present[i] != 0);
    if (e)
      cr_assert_eq(e->value[0], present[i]);
  }
  cr_assert_eq(t.evicted, 0, "never full: nothing evicted");
  fy__keytab_free(&t);
}

Test(keytab, idle_entries_are_absent_and_come_back_fresh) {
  fy__keytab_t t;
  fy__keytab_entry_t *e, *f = NULL;
  int fresh = -1;
  tab_init(&t, 4, 16);
  e = put(&t, "a", 0, 3, 50, NULL);
  cr_assert_eq(get(&t, "a", 49), e);
  cr_assert_null(get(&t, "a", 50), "idle at 50");
  cr_assert_eq(fy__keytab_count(&t), 1, "find changes nothing");
  cr_assert_eq(fy__keytab_find_or_insert(&t, "a", 1, 50, &f, &fresh, NULL), 0);
  cr_assert_eq(fresh, 1);
  cr_assert_eq(f, e, "reused in place");
  cr_assert_eq(f->idle_at, FY_TIME_NEVER);
  cr_assert_eq(fy__keytab_count(&t), 1);
  fy__keytab_free(&t);
}

Test(keytab, expire_is_bounded_by_its_budget) {
  fy__keytab_t t;
  char k[16];
  unsigned i;
  tab_init(&t, 100, 16);
  for (i = 0; i < 10; i++) {
    snprintf(k, sizeof(k), "k%u", i);
    put(&t, k, 0, i, 100, NULL);
  }
  t.sweep = FY__KEYTAB_NIL; /* white box: start from the LRU end */
  cr_assert_eq(fy__keytab_expire(&t, 99, 100), 0, "nothing idle yet");
  cr_assert_eq(fy__keytab_count(&t), 10);
  cr_assert_eq(fy__keytab_expire(&t, 100, 3), 3);
  cr_assert_eq(fy__keytab_count(&t), 7);
  /* Oldest first. */
  cr_assert_null(fy__keytab_find(&t, "k0", 2, 0));
  cr_assert_null(fy__keytab_find(&t, "k2", 2, 0));
  cr_assert_not_null(fy__keytab_find(&t, "k3", 2, 0));
  cr_assert_eq(fy__keytab_expire(&t, 100, 0), 0);
  cr_assert_eq(fy__keytab_expire(&t, 100, 1000), 7);
  cr_assert_eq(fy__keytab_count(&t), 0);
  cr_assert_eq(t.expired, 10);
  cr_assert_eq(t.evicted, 0);
  fy__keytab_free(&t);
}

Test(keytab, sweep_goes_past_live_entries_and_resumes) {
  fy__keytab_t t;
  char k[16];
  unsigned i;
  tab_init(&t, 100, 16);
  /* Oldest first: live, idle, live, idle, ... */
  for (i = 0; i < 10; i++) {
    snprintf(k, sizeof(k), "k%u", i);
    put(&t, k, 0, i, i % 2 ? 10 : FY_TIME_NEVER, NULL);
  }
  t.sweep = FY__KEYTAB_NIL; /* white box: start from the LRU end */
  cr_assert_eq(fy__keytab_expire(&t, 10, 4), 2, "k1, k3 of k0..k3");
  cr_assert_not_null(fy__keytab_find(&t, "k0", 2, 0));
  cr_assert_null(fy__keytab_find(&t, "k3", 2, 0));
  cr_assert_not_null(fy__keytab_find(&t, "k5", 2, 0));
  /* The next call resumes at k4, not at the live k0. */
  cr_assert_eq(fy__keytab_expire(&t, 10, 2), 1, "k4, k5");
  cr_assert_null(fy__keytab_find(&t, "k5", 2, 0));
  cr_assert_not_null(fy__keytab_find(&t, "k7", 2, 0));
  /* Removing the entry the sweep stands on keeps it on track. */
  fy__keytab_remove(&t, fy__keytab_find(&t, "k6", 2, 0));
  cr_assert_eq(fy__keytab_expire(&t, 10, 1), 1, "k7");
  /* Past the newest it starts again from the oldest. */
  cr_assert_eq(fy__keytab_expire(&t, 10, 6), 1);
  cr_assert_null(fy__keytab_find(&t, "k9", 2, 0));
  cr_assert_eq(fy__keytab_count(&t), 4); /* k0 k2 k4 k8 */
  fy__keytab_free(&t);
}

Test(keytab, full_table_evicts_least_recently_used) {
  fy__keytab_t t;
  fy__keytab_evicted_t ev;
  fy__keytab_entry_t *e;
  int fresh;
  tab_init(&t, 4, 16);
  put(&t, "a", 0, 1, FY_TIME_NEVER, &ev);
  cr_assert_eq(ev.evicted, 0);
  put(&t, "b", 0, 2, FY_TIME_NEVER, NULL);
  put(&t, "c", 0, 3, FY_TIME_NEVER, NULL);
  put(&t, "d", 0, 4, FY_TIME_NEVER, NULL);
  /* Using a makes b the least recently used. */
  cr_assert_eq(fy__keytab_find_or_insert(&t, "a", 1, 0, &e, &fresh, NULL), 0);
  cr_assert_eq(fresh, 0);
  /* find() does not count as use. */
  cr_assert_not_null(get(&t, "b", 0));
  cr_assert_eq(fy__keytab_lru(&t), get(&t, "b", 0));
  put(&t, "e", 0, 5, 77, &ev);
  cr_assert_eq(ev.evicted, 1);
  cr_assert_eq(ev.len, 1);
  cr_assert_str_eq(ev.key, "b");
  cr_assert_eq(ev.value[0], 2);
  cr_assert_eq(ev.value[1], ~(uint64_t)2);
  cr_assert_eq(ev.idle_at, FY_TIME_NEVER);
  cr_assert_null(get(&t, "b", 0));
  put(&t, "f", 0, 6, FY_TIME_NEVER, &ev);
  cr_assert_str_eq(ev.key, "c");
  fy__keytab_touch(&t, get(&t, "d", 0));
  put(&t, "g", 0, 7, FY_TIME_NEVER, &ev);
  cr_assert_str_eq(ev.key, "a");
  put(&t, "h", 0, 8, FY_TIME_NEVER, &ev);
  cr_assert_str_eq(ev.key, "e");
  cr_assert_eq(fy__keytab_count(&t), 4);
  cr_assert_eq(t.evicted, 4);
  cr_assert_not_null(get(&t, "d", 0));
  fy__keytab_free(&t);
}

Test(keytab, full_table_drops_an_idle_entry_within_two_steps_first) {
  fy__keytab_t t;
  fy__keytab_evicted_t ev;
  tab_init(&t, 4, 16);
  put(&t, "a", 0, 1, FY_TIME_NEVER, NULL);
  put(&t, "b", 0, 2, FY_TIME_NEVER, NULL);
  put(&t, "c", 0, 3, FY_TIME_NEVER, NULL);
  put(&t, "d", 0, 4, FY_TIME_NEVER, NULL);
  /* The inserts' own steps left the sweep at c; two more take it past
   * the newest, so that it starts again at a. */
  cr_assert_eq(fy__keytab_expire(&t, 0, 2), 0);
  cr_assert_eq(t.sweep, FY__KEYTAB_NIL);
  get(&t, "b", 0)->idle_at = 10; /* second from the LRU end */
  get(&t, "d", 0)->idle_at = 10; /* fourth: beyond one insert's steps */
  put(&t, "e", 10, 5, FY_TIME_NEVER, &ev);
  cr_assert_eq(ev.evicted, 0, "b was idle: nothing live was evicted");
  cr_assert_not_null(get(&t, "a", 10));
  cr_assert_null(fy__keytab_find(&t, "b", 1, 0), "b was dropped");
  cr_assert_not_null(get(&t, "d", 9), "d was not looked at yet");
  cr_assert_eq(t.expired, 1);
  /* The next insert looks at c and d. */
  put(&t, "f", 10, 6, FY_TIME_NEVER, &ev);
  cr_assert_eq(ev.evicted, 0);
  cr_assert_null(fy__keytab_find(&t, "d", 1, 0), "d was dropped");
  cr_assert_eq(t.expired, 2);
  /* Nothing idle any more: a real eviction of the LRU, a. */
  put(&t, "g", 10, 7, FY_TIME_NEVER, &ev);
  cr_assert_eq(ev.evicted, 1);
  cr_assert_str_eq(ev.key, "a");
  cr_assert_eq(t.evicted, 1);
  fy__keytab_free(&t);
}

Test(keytab, full_table_with_an_idle_lru_reports_no_eviction) {
  fy__keytab_t t;
  fy__keytab_evicted_t ev;
  tab_init(&t, 3, 16);
  put(&t, "a", 0, 1, FY_TIME_NEVER, NULL);
  put(&t, "b", 0, 2, FY_TIME_NEVER, NULL);
  put(&t, "c", 0, 3, FY_TIME_NEVER, NULL);
  fy__keytab_expire(&t, 0, 3); /* the sweep passes a, b, c and wraps */
  get(&t, "a", 0)->idle_at = 5;
  /* The insert's steps look at a (idle at 5: dropped). */
  put(&t, "d", 5, 4, FY_TIME_NEVER, &ev);
  cr_assert_eq(ev.evicted, 0);
  cr_assert_eq(t.evicted, 0);
  cr_assert_eq(fy__keytab_count(&t), 3);
  fy__keytab_free(&t);
}

Test(keytab, long_keys_beyond_their_cap_evict_the_oldest_long_key) {
  fy__keytab_t t;
  fy__keytab_opts_t o = opts(8, 64);
  fy__keytab_evicted_t ev;
  const char *l1 = "long-key-number-one-xxxxxxxxxxxxxx";
  const char *l2 = "long-key-number-two-xxxxxxxxxxxxxx";
  const char *l3 = "long-key-number-three-xxxxxxxxxxxx";
  o.max_long_keys = 2;
  cr_assert_eq(fy__keytab_init(&t, &o), 0);
  put(&t, "s0", 0, 0, FY_TIME_NEVER, NULL);
  put(&t, l1, 0, 1, FY_TIME_NEVER, NULL);
  put(&t, l2, 0, 2, FY_TIME_NEVER, NULL);
  fy__keytab_touch(&t, get(&t, l1, 0));
  put(&t, l3, 0, 3, FY_TIME_NEVER, &ev);
  cr_assert_eq(ev.evicted, 1);
  cr_assert_eq(ev.len, strlen(l2));
  cr_assert_str_eq(ev.key, l2, "the least recently used long key");
  cr_assert_not_null(get(&t, "s0", 0), "short keys keep their place");
  cr_assert_eq(get(&t, l1, 0)->value[0], 1);
  cr_assert_eq(get(&t, l3, 0)->value[0], 3);
  cr_assert_eq(t.long_count, 2);
  cr_assert_eq(fy__keytab_count(&t), 3);
  fy__keytab_free(&t);
}

/* An attacker sends 1.2 million distinct keys, short and long, each used
 * once and never idle; two well-behaved clients (one short key, one long)
 * come back every few hundred requests.  No request is refused, and the
 * table never evicts them while garbage remains. */
Test(keytab, garbage_flood_never_refuses_and_never_evicts_a_used_key,
     .timeout = 60) {
  enum { MAX = 1 << 19, GARBAGE = 1200000, EVERY = 300 };
  fy__keytab_t t;
  fy__keytab_opts_t o = opts(MAX, 64);
  fy__keytab_evicted_t ev;
  fy__keytab_entry_t *e;
  const char *good[2] = {"203.0.113.7",
                         "api-key:7f3a9c2e5b1d4e6f8a0b1c2d3e4f5a6b"};
  uint64_t uses[2] = {0, 0};
  char k[64];
  unsigned i, g;
  int fresh;
  o.max_long_keys = MAX / 2;
  cr_assert_eq(fy__keytab_init(&t, &o), 0);
  rng_state = 7;
  for (i = 0; i < GARBAGE; i++) {
    /* Lengths 1..64, distinct through the counter in front. */
    size_t len = 1 + (size_t)(rnd() % 64), n;
    n = (size_t)snprintf(k, sizeof(k), "%x.", i);
    while (n < len)
      k[n++] = (char)('a' + rnd() % 26);
    if (len < n)
      len = n;
    cr_assert_eq(fy__keytab_find_or_insert(&t, k, len, i, &e, &fresh, &ev), 0,
                 "garbage %u refused", i);
    if (!fresh)
      cr_assert_fail("garbage %u was already there", i);
    e->idle_at = FY_TIME_NEVER;
    if (ev.evicted) {
      for (g = 0; g < 2; g++)
        if (ev.len == strlen(good[g]) && memcmp(ev.key, good[g], ev.len) == 0)
          cr_assert_fail("good key %u evicted at %u", g, i);
    }
    if (i % EVERY == 0) {
      for (g = 0; g < 2; g++) {
        cr_assert_eq(fy__keytab_find_or_insert(&t, good[g], strlen(good[g]), i,
                                               &e, &fresh, &ev),
                     0);
        cr_assert_eq(ev.evicted && ev.len == strlen(good[g]), 0);
        if (uses[g] == 0) {
          cr_assert_eq(fresh, 1);
          e->value[0] = 0;
        } else if (fresh || e->value[0] != uses[g]) {
          cr_assert_fail("good key %u lost its state at %u", g, i);
        }
        e->value[0] = ++uses[g];
        e->idle_at = FY_TIME_NEVER;
      }
    }
  }
  cr_assert_eq(fy__keytab_count(&t), MAX);
  cr_assert_leq(t.long_count, MAX / 2);
  cr_assert_gt(t.long_count, 0);
  cr_assert_geq(t.evicted, GARBAGE - MAX, "the garbage went out");
  for (g = 0; g < 2; g++)
    cr_assert_eq(fy__keytab_find(&t, good[g], strlen(good[g]), 0)->value[0],
                 uses[g]);
  fy__keytab_free(&t);
}

Test(keytab, a_million_16_byte_keys_fit_in_64_bytes_each, .timeout = 60) {
  enum { N = 1000000 };
  fy__keytab_t t;
  fy__keytab_entry_t *e;
  char k[17];
  unsigned i;
  int fresh;
  double per_key;
  /* The longest keys allowed, so that long-key bookkeeping is counted. */
  tab_init(&t, N, FY__KEYTAB_KEY_MAX);
  for (i = 0; i < N; i++) {
    snprintf(k, sizeof(k), "%016x", i * 2654435761u);
    cr_assert_eq(fy__keytab_find_or_insert(&t, k, 16, 0, &e, &fresh, NULL), 0);
    if (!fresh)
      cr_assert_fail("key %u collided", i);
    e->value[0] = i;
    e->idle_at = FY_TIME_NEVER;
  }
  cr_assert_eq(fy__keytab_count(&t), N);
  cr_assert_eq(t.evicted + t.expired, 0);
  per_key = (double)(fy__keytab_bytes(&t) + sizeof(t)) / N;
  cr_log_info("keytab: %.2f bytes per key at %u keys of 16 bytes", per_key, N);
  cr_assert_leq(per_key, 64.0, "%.2f bytes per key", per_key);
  for (i = 0; i < N; i += 997) {
    snprintf(k, sizeof(k), "%016x", i * 2654435761u);
    e = fy__keytab_find(&t, k, 16, 0);
    cr_assert_not_null(e);
    cr_assert_eq(e->value[0], i);
  }
  fy__keytab_free(&t);
}

Test(keytab, clear_empties_and_keeps_memory) {
  fy__keytab_t t;
  char k[40];
  size_t before;
  unsigned i;
  tab_init(&t, 64, 40);
  for (i = 0; i < 64; i++) {
    snprintf(k, sizeof(k), "a-long-enough-key-for-a-tail-%u", i);
    put(&t, k, 0, i, FY_TIME_NEVER, NULL);
  }
  before = fy__keytab_bytes(&t);
  fy__keytab_clear(&t);
  cr_assert_eq(fy__keytab_count(&t), 0);
  cr_assert_null(fy__keytab_lru(&t));
  cr_assert_eq(t.long_count, 0);
  cr_assert_null(get(&t, "a-long-enough-key-for-a-tail-3", 0));
  cr_assert_eq(fy__keytab_bytes(&t), before);
  for (i = 0; i < 64; i++) {
    snprintf(k, sizeof(k), "a-long-enough-key-for-a-tail-%u", i);
    put(&t, k, 0, i + 100, FY_TIME_NEVER, NULL);
  }
  cr_assert_eq(get(&t, "a-long-enough-key-for-a-tail-3", 0)->value[0], 103);
  cr_assert_eq(fy__keytab_bytes(&t), before, "the pages were reused");
  fy__keytab_free(&t);
}

Test(keytab, init_allocation_failures_leak_nothing) {
  fy__keytab_t t;
  fy__keytab_opts_t o = opts(1000, 100);
  long n, i;
  fa_install(-1);
  cr_assert_eq(fy__keytab_init(&t, &o), 0);
  n = FA.requests;
  cr_assert_eq(n, 3, "entries, index, page directory");
  fy__keytab_free(&t);
  cr_assert_eq(FA.live, 0);
  for (i = 0; i < n; i++) {
    fa_install(i);
    memset(&t, 0, sizeof(t));
    cr_assert_eq(fy__keytab_init(&t, &o), UV_ENOMEM, "request %ld failing", i);
    cr_assert_eq(FA.failed, 1);
    cr_assert_eq(FA.live, 0, "request %ld failing leaked", i);
    cr_assert_null(t.entries, "a failed init leaves |t| alone");
  }
  fa_restore();
}

Test(keytab, only_a_new_long_key_allocates_and_its_failure_changes_nothing) {
  fy__keytab_t t;
  fy__keytab_opts_t o = opts(4, 64);
  fy__keytab_entry_t *e;
  fy__keytab_evicted_t ev;
  const char *lk = "a-key-longer-than-twenty-three-bytes";
  long req;
  int fresh;
  fa_install(-1);
  cr_assert_eq(fy__keytab_init(&t, &o), 0);
  put(&t, "a", 0, 1, FY_TIME_NEVER, NULL);
  put(&t, "b", 0, 2, 10, NULL);
  put(&t, "c", 0, 3, FY_TIME_NEVER, NULL);
  put(&t, "d", 0, 4, FY_TIME_NEVER, NULL); /* full; b idle at 10 */
  req = FA.requests;
  /* Lookups, updates, touches and expiry never allocate. */
  cr_assert_eq(fy__keytab_find_or_insert(&t, "a", 1, 0, &e, &fresh, NULL), 0);
  fy__keytab_touch(&t, get(&t, "c", 0));
  cr_assert_null(get(&t, "zz", 0));
  cr_assert_eq(fy__keytab_expire(&t, 0, 4), 0);
  cr_assert_eq(FA.requests, req);
  /* The first long key needs a page: refused without memory, and nothing
   * moved (b is still there, though it is idle and the table full). */
  fa_fail_next();
  cr_assert_eq(fy__keytab_find_or_insert(&t, lk, strlen(lk), 10, &e, &fresh,
                                         &ev),
               UV_ENOMEM);
  cr_assert_eq(ev.evicted, 0);
  cr_assert_eq(fy__keytab_count(&t), 4);
  cr_assert_not_null(get(&t, "b", 9));
  cr_assert_eq(t.expired + t.evicted, 0);
  cr_assert_eq(fy__keytab_lru(&t), get(&t, "b", 9));
  cr_assert_null(get(&t, lk, 0));
  cr_assert_eq(FA.live, 3, "no page kept");
  /* With memory it goes in. */
  cr_assert_eq(fy__keytab_find_or_insert(&t, lk, strlen(lk), 10, &e, &fresh,
                                         &ev),
               0);
  cr_assert_eq(fresh, 1);
  cr_assert_eq(FA.live, 4);
  fy__keytab_free(&t);
  cr_assert_eq(FA.live, 0);
  fa_restore();
}

/* ======================================================================== *
 * key_sanitize
 * ======================================================================== */

static void san_is(const char *in, size_t len, size_t out_size,
                   const char *want) {
  char out[512], again[512];
  size_t n;
  memset(out, 0x5a, sizeof(out));
  n = fy__key_sanitize(in, len, out, out_size);
  cr_assert_str_eq(out, want, "sanitising %zu bytes into %zu", len, out_size);
  cr_assert_eq(n, strlen(want));
  cr_assert_lt(n, out_size);
  cr_assert_eq((unsigned char)out[n + 1], 0x5a, "wrote past the terminator");
  fy__key_sanitize(out, n, again, out_size);
  cr_assert_str_eq(again, out, "not idempotent");
}

#define SAN(lit, want) san_is(lit, sizeof(lit) - 1, 256, want)

Test(key_sanitize, printable_ascii_is_kept) {
  SAN("user-123@example.com", "user-123@example.com");
  SAN("a b ~!\"#$%&'()*+,-./:;<=>?[\\]^_`{|}", "a b ~!\"#$%&'()*+,-./:;<=>?[\\]^_`{|}");
  SAN("", "");
  san_is(NULL, 5, 16, "");
}

Test(key_sanitize, controls_and_del_become_underscores) {
  SAN("a\nb", "a_b");
  SAN("x\r\n\tINFO forged", "x___INFO forged");
  SAN("\x1b[31mred", "_[31mred");
  san_is("a\0b", 3, 16, "a_b");
  SAN("\x01\x1f\x7f", "___");
}

Test(key_sanitize, well_formed_utf8_is_kept) {
  SAN("caf\xc3\xa9", "caf\xc3\xa9");                   /* U+00E9 */
  SAN("\xc2\xa0", "\xc2\xa0");                         /* U+00A0, after C1 */
  SAN("\xe6\x97\xa5\xe6\x9c\xac", "\xe6\x97\xa5\xe6\x9c\xac");
  SAN("\xe2\x80\xa7", "\xe2\x80\xa7");                 /* U+2027 */
  SAN("\xed\x9f\xbf", "\xed\x9f\xbf");                 /* U+D7FF */
  SAN("\xee\x80\x80", "\xee\x80\x80");                 /* U+E000 */
  SAN("\xf0\x9f\x98\x80", "\xf0\x9f\x98\x80");         /* U+1F600 */
  SAN("\xf4\x8f\xbf\xbf", "\xf4\x8f\xbf\xbf");         /* U+10FFFF */
}

Test(key_sanitize, ill_formed_utf8_becomes_one_underscore_per_byte) {
  SAN("\x80", "_");                      /* stray continuation */
  SAN("\xbf\xbf", "__");
  SAN("\xc0\xaf", "__");                 /* overlong '/' */
  SAN("\xc1\xbf", "__");
  SAN("\xe0\x80\xaf", "___");            /* overlong, 3 bytes */
  SAN("\xe0\x9f\xbf", "___");
  SAN("\xf0\x80\x80\xaf", "____");       /* overlong, 4 bytes */
  SAN("\xf0\x8f\xbf\xbf", "____");
  SAN("\xed\xa0\x80", "___");            /* U+D800, a surrogate */
  SAN("\xed\xbf\xbf", "___");            /* U+DFFF */
  SAN("\xf4\x90\x80\x80", "____");       /* U+110000 */
  SAN("\xf5\x80\x80\x80", "____");
  SAN("\xfe\xff", "__");
  SAN("ab\xe2\x82", "ab__");             /* cut short at the end */
  SAN("\xe2\x82z", "__z");               /* cut short by ASCII */
  SAN("\xf0\x9f\x98", "___");
  SAN("\xc3\xc3\xa9", "_\xc3\xa9");      /* a bad lead, then a good one */
}

Test(key_sanitize, c1_separators_and_invisible_marks_are_replaced) {
  SAN("a\xc2\x85z", "a_z");              /* U+0085 NEL */
  SAN("\xc2\x80\xc2\x9f", "__");         /* U+0080, U+009F */
  SAN("a\xe2\x80\xa8z", "a_z");          /* U+2028 */
  SAN("a\xe2\x80\xa9z", "a_z");          /* U+2029 */
  SAN("\xe2\x80\xae" "gnp.exe", "_gnp.exe"); /* U+202E RLO */
  SAN("\xe2\x80\x8e\xe2\x80\x8f", "__");  /* U+200E, U+200F */
  SAN("\xe2\x81\xa6\xe2\x81\xa9", "__");  /* U+2066, U+2069 */
  SAN("\xef\xbb\xbf" "x", "_x");          /* U+FEFF */
}

Test(key_sanitize, cut_at_a_character_boundary_with_a_marker) {
  char out[64];
  san_is("abcdefghij", 10, 8, "abcd...");
  san_is("abcdefg", 7, 8, "abcdefg"); /* fits exactly: no marker */
  san_is("abcdefgh", 8, 8, "abcd...");
  /* "ab" then three 3-byte characters: 11 bytes into 9 + NUL. */
  san_is("ab\xe6\x97\xa5\xe6\x97\xa5\xe6\x97\xa5", 11, 10,
         "ab\xe6\x97\xa5...");
  san_is("ab\xe6\x97\xa5\xe6\x97\xa5\xe6\x97\xa5", 11, 9,
         "ab\xe6\x97\xa5...");
  /* The marker needs the bytes of the first character: dropped whole,
   * not split. */
  san_is("ab\xe6\x97\xa5\xe6\x97\xa5\xe6\x97\xa5", 11, 8, "ab...");
  san_is("\xf0\x9f\x98\x80\xf0\x9f\x98\x80", 8, 7, "...");
  /* Smaller than the marker: as many dots as fit. */
  san_is("abcdef", 6, 3, "..");
  san_is("abcdef", 6, 2, ".");
  san_is("abcdef", 6, 1, "");
  san_is("", 0, 1, "");
  /* A zero size writes nothing. */
  out[0] = 'Q';
  cr_assert_eq(fy__key_sanitize("abc", 3, out, 0), 0);
  cr_assert_eq(out[0], 'Q');
}

Test(key_sanitize, default_size_is_the_detail_key_field) {
  char key[300], out[FY__KEY_SANITIZED_SIZE];
  size_t n;
  cr_assert_eq(FY__KEY_SANITIZED_SIZE, sizeof(((fy_detail_t *)0)->key));
  cr_assert_eq(FY__KEY_SANITIZED_SIZE, 64);
  memset(key, 'k', sizeof(key));
  n = fy__key_sanitize(key, sizeof(key), out, sizeof(out));
  cr_assert_eq(n, 63);
  cr_assert_eq(strcmp(out + 60, "..."), 0);
}

/* Random bytes, random sizes: the output is printable (no C0, no DEL,
 * no C1 or separator encodings), never longer than allowed, and a second
 * pass gives it back. */
Test(key_sanitize, random_inputs_are_printable_and_idempotent) {
  char in[128], out[128], again[128];
  unsigned iter;
  size_t i, n, len, size;
  rng_state = 1234;
  for (iter = 0; iter < 20000; iter++) {
    len = (size_t)(rnd() % sizeof(in));
    size = 1 + (size_t)(rnd() % sizeof(out));
    for (i = 0; i < len; i++) {
      uint64_t r = rnd();
      /* Mostly high bytes, so that multi-byte forms appear. */
      in[i] = (char)(r % 4 == 0 ? ' ' + (r >> 8) % 95 : 0x80 + (r >> 8) % 128);
      if (r % 13 == 0)
        in[i] = (char)((r >> 16) % 32);
    }
    n = fy__key_sanitize(in, len, out, size);
    cr_assert_lt(n, size);
    cr_assert_eq(strlen(out), n);
    for (i = 0; i < n; i++) {
      unsigned char c = (unsigned char)out[i];
      cr_assert(c >= 0x20 && c != 0x7f, "byte %zu is %#x", i, c);
      if (c == 0xc2 && i + 1 < n)
        cr_assert_geq((unsigned char)out[i + 1], 0xa0, "a C1 control");
      if (c == 0xe2 && i + 2 < n && (unsigned char)out[i + 1] == 0x80)
        cr_assert(out[i + 2] != '\xa8' && out[i + 2] != '\xa9',
                  "a line separator");
    }
    fy__key_sanitize(out, n, again, size);
    cr_assert_str_eq(again, out, "iteration %u", iter);
  }
}
