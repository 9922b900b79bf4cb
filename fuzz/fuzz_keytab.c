/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * The bounded key table (src/sm/keytab.h) against a model: an array of the
 * present keys in LRU order (oldest first) with their values and idle_at,
 * the sweep's position, and the long keys' tail accounting.  Random
 * find_or_insert, find, touch, set_idle_at, remove, expire and clear on
 * small tables (so that collisions, long probe chains, evictions and the
 * long-key cap are common), time moving forward, and the tail page's
 * allocation failing on request.
 *
 * After every step: the count equals the model's and never exceeds
 * max_keys; every present key's entry holds the model's key, value and
 * idle_at, and is found (unless idle); the table's LRU order is the
 * model's; a removed or evicted key is not found; an insertion evicts
 * exactly the model's choice (and reports it with its key and value) or
 * nothing; a refusal (key too long, no memory) changes nothing.  Every
 * key and evicted key is also run through the sanitiser: the output is
 * printable, fits, and sanitising it again gives it back. */
#include <string.h>

#include <fortify.h>

#include "fuzz.h"
#include "keytab.h"

#define NK 24  /* distinct keys in play */
#define MAXN 16 /* largest table */

typedef struct mkey_s {
  uint32_t len;
  uint8_t b[FY__KEYTAB_KEY_MAX + 1];
} mkey_t;

typedef struct rec_s {
  int k;              /* index in K */
  uint32_t serial;    /* identity for the sweep position */
  uint64_t value[2];
  uint64_t idle_at;
  fy__keytab_entry_t *e;
} rec_t;

static mkey_t K[NK];
static rec_t M[MAXN]; /* present keys, least recently used first */
static uint32_t mn;
static uint32_t msweep; /* serial of the sweep's next entry; 0: the LRU end */
static uint32_t serials;
static uint32_t mlong, mpages;
static fy__keytab_t T;

static int is_long(int k) {
  return K[k].len > FY__KEYTAB_INLINE;
}

static int mfind(int k) {
  uint32_t i;
  for (i = 0; i < mn; i++)
    if (K[M[i].k].len == K[k].len && memcmp(K[M[i].k].b, K[k].b, K[k].len) == 0)
      return (int)i;
  return -1;
}

static rec_t munlink(uint32_t i) {
  rec_t r = M[i];
  if (msweep == r.serial)
    msweep = i + 1 < mn ? M[i + 1].serial : 0;
  memmove(&M[i], &M[i + 1], (mn - i - 1) * sizeof(M[0]));
  mn--;
  if (is_long(r.k))
    mlong--;
  return r;
}

/* Using a key makes it the most recently used; the table leaves the one
 * that already is alone (the sweep's position included). */
static rec_t *muse(uint32_t i) {
  rec_t r;
  if (i + 1 == mn)
    return &M[i];
  r = M[i];
  if (msweep == r.serial)
    msweep = M[i + 1].serial;
  memmove(&M[i], &M[i + 1], (mn - i - 1) * sizeof(M[0]));
  M[mn - 1] = r;
  return &M[mn - 1];
}

static void mpush(rec_t r) {
  M[mn++] = r;
  if (is_long(r.k))
    mlong++;
}

static void check_sanitized(const void *key, size_t len, size_t size) {
  char out[300], again[300];
  size_t n, i;
  n = fy__key_sanitize(key, len, out, size);
  if (size == 0)
    return;
  FZ_CHECK(n < size && strlen(out) == n, "sanitised length %zu in %zu", n,
           size);
  for (i = 0; i < n; i++)
    FZ_CHECK((unsigned char)out[i] >= 0x20 && out[i] != 0x7f,
             "byte %zu of the sanitised key is %#x", i,
             (unsigned char)out[i]);
  FZ_CHECK(fy__key_sanitize(out, n, again, size) == n &&
               memcmp(out, again, n + 1) == 0,
           "sanitising is not idempotent");
}

/* The model's sweep: |steps| steps, at most one per key. */
static uint32_t msweep_run(uint64_t now, uint32_t steps) {
  uint32_t removed = 0, i;
  if (steps > mn)
    steps = mn;
  while (steps-- > 0) {
    if (msweep == 0)
      msweep = mn > 0 ? M[0].serial : 0;
    if (msweep == 0)
      break;
    for (i = 0; i < mn && M[i].serial != msweep; i++)
      ;
    FZ_CHECK(i < mn, "the model's sweep lost its place");
    msweep = i + 1 < mn ? M[i + 1].serial : 0;
    if (M[i].idle_at <= now) {
      munlink((uint32_t)i);
      removed++;
    }
  }
  return removed;
}

static void check(uint64_t now) {
  uint32_t i, n;
  uint8_t buf[FY__KEYTAB_KEY_MAX];
  fy__keytab_entry_t *e;
  FZ_CHECK(fy__keytab_count(&T) == mn, "count %u, model %u", T.count, mn);
  FZ_CHECK(mn <= T.max_keys, "%u keys in %u", mn, T.max_keys);
  FZ_CHECK(T.long_count == mlong, "long keys %u, model %u", T.long_count,
           mlong);
  FZ_CHECK(T.long_count <= T.max_long_keys, "long keys over their cap");
  FZ_CHECK(fy__keytab_lru(&T) == (mn ? M[0].e : NULL), "LRU end");
  /* The table's LRU order, oldest first, is the model's. */
  for (i = 0, n = T.lru; n != FY__KEYTAB_NIL; n = T.entries[n].newer, i++)
    FZ_CHECK(i < mn && &T.entries[n] == M[i].e, "LRU order differs at %u", i);
  FZ_CHECK(i == mn, "LRU list has %u, model %u", i, mn);
  if (msweep == 0)
    FZ_CHECK(T.sweep == FY__KEYTAB_NIL, "the sweep should be at the LRU end");
  for (i = 0; i < mn; i++) {
    const mkey_t *k = &K[M[i].k];
    e = M[i].e;
    if (msweep == M[i].serial)
      FZ_CHECK(T.sweep == (uint32_t)(e - T.entries), "sweep position");
    FZ_CHECK(fy__keytab_entry_key(&T, e, buf) == k->len &&
                 memcmp(buf, k->b, k->len) == 0,
             "entry %u holds another key", i);
    FZ_CHECK(e->value[0] == M[i].value[0] && e->value[1] == M[i].value[1],
             "value of key %d", M[i].k);
    FZ_CHECK(e->idle_at == M[i].idle_at, "idle_at of key %d", M[i].k);
    FZ_CHECK(fy__keytab_find(&T, k->b, k->len, now) ==
                 (M[i].idle_at <= now ? NULL : e),
             "find key %d", M[i].k);
  }
}

static void op_insert(int k, uint64_t now, int fail) {
  fy__keytab_entry_t *e = NULL;
  fy__keytab_evicted_t ev;
  int fresh = -1, rc, i = mfind(k), want_evict = -1, need_page;
  uint32_t allocated, before = mn;
  long live = fz_alloc_live();
  rec_t r;

  if (fail)
    fz_alloc_reset(0, -1); /* the next request fails */
  allocated = mpages * FY__KEYTAB_PAGE < T.max_long_keys
                  ? mpages * FY__KEYTAB_PAGE
                  : T.max_long_keys;
  need_page = i < 0 && K[k].len <= T.max_key_len && is_long(k) &&
              mlong >= allocated && mpages < T.npages;
  rc = fy__keytab_find_or_insert(&T, K[k].b, K[k].len, now, &e, &fresh, &ev);
  fz_alloc_reset(-1, -1);
  if (K[k].len > T.max_key_len) {
    FZ_CHECK(rc == FY_EKEY && !ev.evicted, "a key of %u bytes: %d",
             K[k].len, rc);
    FZ_CHECK(mn == before, "a refusal changed the count");
    return;
  }
  if (need_page && fail) {
    FZ_CHECK(rc == UV_ENOMEM && !ev.evicted, "no memory: %d", rc);
    FZ_CHECK(fz_alloc_live() == live, "a failed insertion kept memory");
    return;
  }
  FZ_CHECK(rc == 0, "insert: %d", rc);
  if (need_page) {
    mpages++;
    FZ_CHECK(fz_alloc_live() == live + 1, "a tail page");
  } else {
    FZ_CHECK(fz_alloc_live() == live, "an insertion allocated");
  }
  if (i >= 0) {
    rec_t *p = muse((uint32_t)i);
    FZ_CHECK(e == p->e, "found another entry");
    FZ_CHECK(fresh == (p->idle_at <= now), "fresh %d, idle_at %llu at %llu",
             fresh, (unsigned long long)p->idle_at, (unsigned long long)now);
    FZ_CHECK(!ev.evicted, "finding evicted");
    if (fresh)
      p->idle_at = FY_TIME_NEVER;
    return;
  }
  msweep_run(now, FY__KEYTAB_SWEEP_ON_INSERT);
  allocated = mpages * FY__KEYTAB_PAGE < T.max_long_keys
                  ? mpages * FY__KEYTAB_PAGE
                  : T.max_long_keys;
  if (is_long(k) && mlong >= allocated) {
    for (want_evict = 0; !is_long(M[want_evict].k); want_evict++)
      ;
  } else if (mn == T.max_keys) {
    want_evict = 0;
  }
  if (want_evict >= 0) {
    r = M[want_evict];
    if (r.idle_at <= now) {
      FZ_CHECK(!ev.evicted, "an idle entry reported as evicted");
    } else {
      FZ_CHECK(ev.evicted && ev.len == K[r.k].len &&
                   memcmp(ev.key, K[r.k].b, ev.len) == 0 &&
                   ev.key[ev.len] == '\0',
               "evicted another key than the model's %d", r.k);
      FZ_CHECK(ev.value[0] == r.value[0] && ev.value[1] == r.value[1] &&
                   ev.idle_at == r.idle_at,
               "evicted value");
      check_sanitized(ev.key, ev.len, 1 + ev.len % 64);
    }
    munlink((uint32_t)want_evict);
    FZ_CHECK(fy__keytab_find(&T, K[r.k].b, K[r.k].len, 0) == NULL,
             "evicted key still found");
  } else {
    FZ_CHECK(!ev.evicted, "evicted with room to spare");
  }
  FZ_CHECK(fresh == 1 && e != NULL && e->idle_at == FY_TIME_NEVER,
           "a new key");
  memset(&r, 0, sizeof(r));
  r.k = k;
  r.serial = ++serials;
  r.idle_at = FY_TIME_NEVER;
  r.e = e;
  e->value[0] = r.value[0] = 0;
  e->value[1] = r.value[1] = 0;
  mpush(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz_t z;
  fy__keytab_opts_t o;
  uint64_t now;
  uint32_t j, n;
  int rc, k, i;

  fz_init(&z, data, size);
  fz_alloc_install();
  memset(&o, 0, sizeof(o));
  o.max_keys = 1 + (uint32_t)fz_below(&z, MAXN);
  switch (fz_u8(&z) % 4) {
  case 0:
    o.max_key_len = (uint32_t)fz_below(&z, FY__KEYTAB_KEY_MAX + 1);
    break;
  case 1:
    o.max_key_len = FY__KEYTAB_INLINE + (uint32_t)fz_below(&z, 3) - 1;
    break;
  case 2:
    o.max_key_len = FY__KEYTAB_KEY_MAX;
    break;
  default:
    o.max_key_len = 40;
    break;
  }
  o.max_long_keys = (uint32_t)fz_below(&z, o.max_keys + 2);
  o.seed[0] = fz_u64(&z);
  o.seed[1] = fz_u64(&z);
  /* Keys: lengths around the edges, bytes from a small alphabet so that
   * keys share prefixes, sometimes any byte. */
  for (k = 0; k < NK; k++) {
    uint8_t mode = fz_u8(&z);
    switch (mode % 4) {
    case 0:
      K[k].len = (uint32_t)fz_below(&z, 8);
      break;
    case 1:
      K[k].len = FY__KEYTAB_PREFIX + (uint32_t)fz_below(&z, 8);
      break;
    case 2:
      K[k].len = o.max_key_len + (uint32_t)fz_below(&z, 2);
      break;
    default:
      K[k].len = (uint32_t)fz_below(&z, FY__KEYTAB_KEY_MAX + 2);
      break;
    }
    if (K[k].len > FY__KEYTAB_KEY_MAX)
      K[k].len = FY__KEYTAB_KEY_MAX;
    for (j = 0; j < K[k].len; j++)
      K[k].b[j] = mode & 4 ? fz_u8(&z) : (uint8_t)('a' + fz_below(&z, 2));
    check_sanitized(K[k].b, K[k].len, 1 + (size_t)fz_below(&z, 80));
  }

  fz_alloc_reset(fz_u8(&z) % 8 == 0 ? (long)fz_below(&z, 3) : -1, -1);
  rc = fy__keytab_init(&T, &o);
  fz_alloc_reset(-1, -1);
  if (rc != 0) {
    FZ_CHECK(rc == UV_ENOMEM, "init: %d", rc);
    FZ_CHECK(fz_alloc_live() == 0, "a failed init leaked");
    return 0;
  }
  mn = msweep = serials = mlong = mpages = 0;
  now = fz_u8(&z);

  while (!fz_done(&z)) {
    uint8_t op = fz_u8(&z);
    k = (int)fz_below(&z, NK);
    i = mfind(k);
    switch (op % 10) {
    case 0:
    case 1:
    case 2:
      op_insert(k, now, 0);
      break;
    case 3:
      op_insert(k, now, fz_u8(&z) % 2);
      break;
    case 4:
      /* The caller updates a present key's state. */
      if (i >= 0) {
        M[i].value[0] = M[i].e->value[0] = fz_u64(&z);
        M[i].value[1] = M[i].e->value[1] = fz_u64(&z);
        M[i].idle_at = fz_u8(&z) % 4 == 0 ? FY_TIME_NEVER
                                          : now + fz_below(&z, 64);
        fy__keytab_set_idle_at(M[i].e, M[i].idle_at);
      }
      break;
    case 5:
      if (i >= 0)
        fy__keytab_touch(&T, muse((uint32_t)i)->e);
      break;
    case 6:
      if (i >= 0) {
        rec_t r = munlink((uint32_t)i);
        fy__keytab_remove(&T, r.e);
        FZ_CHECK(fy__keytab_find(&T, K[k].b, K[k].len, 0) == NULL,
                 "removed key still found");
      }
      break;
    case 7:
      n = (uint32_t)fz_below(&z, MAXN + 2);
      j = msweep_run(now, n);
      FZ_CHECK(fy__keytab_expire(&T, now, n) == j, "expire removed another "
                                                   "number than %u",
               j);
      break;
    case 8:
      now += fz_below(&z, 32);
      break;
    default:
      if (fz_u8(&z) % 8 == 0) {
        size_t b = fy__keytab_bytes(&T);
        fy__keytab_clear(&T);
        FZ_CHECK(fy__keytab_bytes(&T) == b, "clear gave memory back");
        mn = mlong = 0;
        msweep = 0;
      }
      break;
    }
    check(now);
  }
  fy__keytab_free(&T);
  FZ_CHECK(fz_alloc_live() == 0, "the table leaked %ld blocks",
           fz_alloc_live());
  return 0;
}
