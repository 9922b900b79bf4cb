/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * The bounded key table and the key sanitiser (keytab.h says what they
 * promise and how the memory is laid out). */
#include <assert.h>
#include <string.h>

#include "keytab.h"

_Static_assert(sizeof(fy__keytab_entry_t) == 56,
               "the per-key budget assumes 56-byte entries");
_Static_assert(FY__KEYTAB_PREFIX + 4 == FY__KEYTAB_INLINE,
               "a long key's entry keeps its prefix and a tail number");

/* ---- SipHash ------------------------------------------------------------ */

static uint64_t rotl(uint64_t x, int b) {
  return (x << b) | (x >> (64 - b));
}

static uint64_t load64_le(const uint8_t *p) {
  return (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 |
         (uint64_t)p[3] << 24 | (uint64_t)p[4] << 32 | (uint64_t)p[5] << 40 |
         (uint64_t)p[6] << 48 | (uint64_t)p[7] << 56;
}

#define SIPROUND                                                               \
  do {                                                                         \
    v0 += v1;                                                                  \
    v1 = rotl(v1, 13);                                                         \
    v1 ^= v0;                                                                  \
    v0 = rotl(v0, 32);                                                         \
    v2 += v3;                                                                  \
    v3 = rotl(v3, 16);                                                         \
    v3 ^= v2;                                                                  \
    v0 += v3;                                                                  \
    v3 = rotl(v3, 21);                                                         \
    v3 ^= v0;                                                                  \
    v2 += v1;                                                                  \
    v1 = rotl(v1, 17);                                                         \
    v1 ^= v2;                                                                  \
    v2 = rotl(v2, 32);                                                         \
  } while (0)

/* One implementation for both parameter sets; |c| and |d| are constants
 * at every call, so the compiler unrolls the rounds. */
static inline uint64_t siphash(const uint64_t k[2], const void *data,
                               size_t len, int c, int d) {
  const uint8_t *in = data;
  uint64_t v0 = 0x736f6d6570736575ULL ^ k[0];
  uint64_t v1 = 0x646f72616e646f6dULL ^ k[1];
  uint64_t v2 = 0x6c7967656e657261ULL ^ k[0];
  uint64_t v3 = 0x7465646279746573ULL ^ k[1];
  uint64_t b = (uint64_t)len << 56, m;
  size_t left = len & 7, i;
  const uint8_t *end = in + (len - left);
  int r;

  for (; in != end; in += 8) {
    m = load64_le(in);
    v3 ^= m;
    for (r = 0; r < c; r++)
      SIPROUND;
    v0 ^= m;
  }
  for (i = 0; i < left; i++)
    b |= (uint64_t)in[i] << (8 * i);
  v3 ^= b;
  for (r = 0; r < c; r++)
    SIPROUND;
  v0 ^= b;
  v2 ^= 0xff;
  for (r = 0; r < d; r++)
    SIPROUND;
  return v0 ^ v1 ^ v2 ^ v3;
}

uint64_t fy__siphash13(const uint64_t k[2], const void *data, size_t len) {
  return siphash(k, data, len, 1, 3);
}

uint64_t fy__siphash24(const uint64_t k[2], const void *data, size_t len) {
  return siphash(k, data, len, 2, 4);
}

/* ---- layout helpers ----------------------------------------------------- */

/* A tail slot: the rest of a long key, and the links of the long keys'
 * own LRU list (free tail slots chain through |older|). */
typedef struct tail_s {
  uint32_t owner; /* entry number */
  uint32_t newer, older;
  uint8_t bytes[];
} tail_t;

#define TAIL_HEADER ((uint32_t)sizeof(tail_t))

static inline tail_t *tail_at(const fy__keytab_t *t, uint32_t n) {
  return (tail_t *)(void *)(t->pages[n / FY__KEYTAB_PAGE] +
                            (size_t)(n % FY__KEYTAB_PAGE) * t->tail_stride);
}

static inline uint32_t tail_of(const fy__keytab_entry_t *e) {
  uint32_t n;
  memcpy(&n, e->key + FY__KEYTAB_PREFIX, sizeof(n));
  return n;
}

static inline uint32_t entry_no(const fy__keytab_t *t,
                                const fy__keytab_entry_t *e) {
  return (uint32_t)(e - t->entries);
}

static inline uint32_t home_of(const fy__keytab_t *t, uint64_t h) {
  /* Multiply-shift maps the hash's high half onto [0, nslots). */
  return (uint32_t)(((h >> 32) * (uint64_t)t->nslots) >> 32);
}

static inline uint32_t tag_of(const fy__keytab_t *t, uint64_t h) {
  return (uint32_t)h & t->tmask;
}

/* Distance from |home| forward to |i|, around the end. */
static inline uint32_t dist(const fy__keytab_t *t, uint32_t home, uint32_t i) {
  return i >= home ? i - home : i + t->nslots - home;
}

/* An index slot's displacement field: exact below dmax, else "dmax or
 * more, ask the hash". */
static inline uint32_t disp_field(const fy__keytab_t *t, uint32_t d) {
  return (d < t->dmax ? d : t->dmax) << t->ebits;
}

static inline uint32_t slot_disp(const fy__keytab_t *t, uint32_t s) {
  return (s >> t->ebits) & t->dmax;
}

static inline uint32_t next_slot(const fy__keytab_t *t, uint32_t i) {
  return i + 1 == t->nslots ? 0 : i + 1;
}

static inline uint64_t hash_key(const fy__keytab_t *t, const void *key,
                                size_t len) {
  return fy__siphash13(t->seed, key, len);
}

/* The key of an entry, in |buf| when it has to be assembled. */
static const uint8_t *entry_bytes(const fy__keytab_t *t,
                                  const fy__keytab_entry_t *e, uint8_t *buf) {
  if (e->len <= FY__KEYTAB_INLINE)
    return e->key;
  memcpy(buf, e->key, FY__KEYTAB_PREFIX);
  memcpy(buf + FY__KEYTAB_PREFIX, tail_at(t, tail_of(e))->bytes,
         (size_t)e->len - FY__KEYTAB_PREFIX);
  return buf;
}

static uint64_t entry_hash(const fy__keytab_t *t,
                           const fy__keytab_entry_t *e) {
  uint8_t buf[FY__KEYTAB_KEY_MAX];
  return hash_key(t, entry_bytes(t, e, buf), e->len);
}

/* memcmp() of a short key, without the call: keys of a few words are the
 * common case (addresses, ids) and the compare runs on every lookup. */
static inline int short_equal(const uint8_t *a, const uint8_t *b,
                              size_t len) {
  uint64_t x, y;
  for (; len >= 8; a += 8, b += 8, len -= 8) {
    memcpy(&x, a, 8);
    memcpy(&y, b, 8);
    if (x != y)
      return 0;
  }
  for (; len > 0; len--)
    if (*a++ != *b++)
      return 0;
  return 1;
}

static inline int entry_is(const fy__keytab_t *t, const fy__keytab_entry_t *e,
                           const uint8_t *key, size_t len) {
  if (e->len != len)
    return 0;
  if (len <= FY__KEYTAB_INLINE)
    return short_equal(e->key, key, len);
  return memcmp(e->key, key, FY__KEYTAB_PREFIX) == 0 &&
         memcmp(tail_at(t, tail_of(e))->bytes, key + FY__KEYTAB_PREFIX,
                len - FY__KEYTAB_PREFIX) == 0;
}

/* The entry number of |key|, or NIL; |*slot| is its index slot, or the
 * empty slot that ended the probe.  There is always an empty slot
 * (nslots > max_keys), so the probe ends. */
static uint32_t lookup(const fy__keytab_t *t, uint64_t h, const uint8_t *key,
                       size_t len, uint32_t *slot) {
  uint32_t home = home_of(t, h), i = home, tag = tag_of(t, h), s, n, d = 0;
  for (;; i = next_slot(t, i), d++) {
    s = t->index[i];
    if (s == 0)
      break;
    /* Same tag and same home (as far as the displacement field tells). */
    if ((s & ~t->emask) == (tag | disp_field(t, d))) {
      n = (s & t->emask) - 1;
      if (entry_is(t, &t->entries[n], key, len)) {
        *slot = i;
        return n;
      }
    }
  }
  *slot = i;
  return FY__KEYTAB_NIL;
}

/* ---- LRU lists ---------------------------------------------------------- */

static void lru_unlink(fy__keytab_t *t, uint32_t n) {
  fy__keytab_entry_t *e = &t->entries[n];
  if (t->sweep == n)
    t->sweep = e->newer; /* the sweep goes on with the next newer entry */
  if (e->newer != FY__KEYTAB_NIL)
    t->entries[e->newer].older = e->older;
  else
    t->mru = e->older;
  if (e->older != FY__KEYTAB_NIL)
    t->entries[e->older].newer = e->newer;
  else
    t->lru = e->newer;
}

static void lru_push(fy__keytab_t *t, uint32_t n) {
  fy__keytab_entry_t *e = &t->entries[n];
  e->newer = FY__KEYTAB_NIL;
  e->older = t->mru;
  if (t->mru != FY__KEYTAB_NIL)
    t->entries[t->mru].newer = n;
  else
    t->lru = n;
  t->mru = n;
}

static void long_unlink(fy__keytab_t *t, uint32_t n) {
  tail_t *x = tail_at(t, n);
  if (x->newer != FY__KEYTAB_NIL)
    tail_at(t, x->newer)->older = x->older;
  else
    t->long_mru = x->older;
  if (x->older != FY__KEYTAB_NIL)
    tail_at(t, x->older)->newer = x->newer;
  else
    t->long_lru = x->newer;
}

static void long_push(fy__keytab_t *t, uint32_t n) {
  tail_t *x = tail_at(t, n);
  x->newer = FY__KEYTAB_NIL;
  x->older = t->long_mru;
  if (t->long_mru != FY__KEYTAB_NIL)
    tail_at(t, t->long_mru)->newer = n;
  else
    t->long_lru = n;
  t->long_mru = n;
}

/* ---- tail pages --------------------------------------------------------- */

static uint32_t tail_slots_allocated(const fy__keytab_t *t) {
  uint64_t n = (uint64_t)t->pages_made * FY__KEYTAB_PAGE;
  return n < t->max_long_keys ? (uint32_t)n : t->max_long_keys;
}

static int tail_available(const fy__keytab_t *t) {
  return t->tail_free != FY__KEYTAB_NIL ||
         t->tails_made < tail_slots_allocated(t);
}

static size_t page_bytes(const fy__keytab_t *t, uint32_t page) {
  uint32_t first = page * FY__KEYTAB_PAGE;
  uint32_t n = t->max_long_keys - first < FY__KEYTAB_PAGE
                   ? t->max_long_keys - first
                   : FY__KEYTAB_PAGE;
  return (size_t)n * t->tail_stride;
}

/* ---- init and teardown -------------------------------------------------- */

int fy__keytab_init(fy__keytab_t *t, const fy__keytab_opts_t *o) {
  fy__keytab_t k;
  if (o == NULL || o->max_keys < 1 || o->max_keys > FY__KEYTAB_MAX_KEYS ||
      o->max_key_len > FY__KEYTAB_KEY_MAX)
    return UV_EINVAL;
  memset(&k, 0, sizeof(k));
  k.seed[0] = o->seed[0];
  k.seed[1] = o->seed[1];
  k.max_keys = o->max_keys;
  k.max_key_len = o->max_key_len;
  if (o->max_key_len > FY__KEYTAB_INLINE)
    k.max_long_keys = o->max_long_keys == 0 || o->max_long_keys > o->max_keys
                          ? o->max_keys
                          : o->max_long_keys;
  /* Load factor at most 3/4: linear probing then reads about eight slots
   * (half a cache line) on a miss, and the tags keep entry reads rare. */
  k.nslots = o->max_keys + o->max_keys / 3 + 1;
  /* Slot bits above the entry number: half (at most 5) for the
   * displacement, the rest for the tag; at least 2 each. */
  k.ebits = 32 - (uint32_t)__builtin_clz(o->max_keys);
  k.emask = (uint32_t)((1ull << k.ebits) - 1);
  k.dbits = 32 - k.ebits >= 10 ? 5 : (32 - k.ebits) / 2;
  k.dmax = (1u << k.dbits) - 1;
  k.tmask = ~0u << (k.ebits + k.dbits);
  k.free_list = k.mru = k.lru = k.sweep = FY__KEYTAB_NIL;
  k.tail_free = k.long_mru = k.long_lru = FY__KEYTAB_NIL;

  /* fy_calloc checks the products; a large calloc is zero pages that the
   * system maps lazily, so the entries never used are never touched. */
  k.entries = fy_calloc(o->max_keys, sizeof(fy__keytab_entry_t));
  k.index = fy_calloc(k.nslots, sizeof(uint32_t));
  if (k.max_long_keys > 0) {
    k.tail_stride =
        (TAIL_HEADER + k.max_key_len - FY__KEYTAB_PREFIX + 3) & ~3u;
    k.npages = (k.max_long_keys + FY__KEYTAB_PAGE - 1) / FY__KEYTAB_PAGE;
    k.pages = fy_calloc(k.npages, sizeof(uint8_t *));
  }
  if (k.entries == NULL || k.index == NULL ||
      (k.max_long_keys > 0 && k.pages == NULL)) {
    fy_free(k.entries);
    fy_free(k.index);
    fy_free(k.pages);
    return UV_ENOMEM;
  }
  *t = k;
  return 0;
}

void fy__keytab_free(fy__keytab_t *t) {
  uint32_t i;
  for (i = 0; i < t->pages_made; i++)
    fy_free(t->pages[i]);
  fy_free(t->pages);
  fy_free(t->index);
  fy_free(t->entries);
  memset(t, 0, sizeof(*t));
}

size_t fy__keytab_bytes(const fy__keytab_t *t) {
  size_t b = (size_t)t->max_keys * sizeof(fy__keytab_entry_t) +
             (size_t)t->nslots * sizeof(uint32_t) +
             (size_t)t->npages * sizeof(uint8_t *);
  uint32_t i;
  for (i = 0; i < t->pages_made; i++)
    b += page_bytes(t, i);
  return b;
}

/* ---- removal ------------------------------------------------------------ */

/* Empties index slot |i| and moves back the entries after it that may
 * live there, so that every probe still reaches its key. */
static void index_delete(fy__keytab_t *t, uint32_t i) {
  uint32_t j = i, s, d, gap;
  for (;;) {
    j = next_slot(t, j);
    s = t->index[j];
    if (s == 0)
      break;
    d = slot_disp(t, s);
    if (d == t->dmax) /* far from home: the field saturated */
      d = dist(t, home_of(t, entry_hash(t, &t->entries[(s & t->emask) - 1])),
               j);
    /* The entry at j may fill the hole at i unless i is before its
     * home. */
    gap = dist(t, i, j);
    if (d >= gap) {
      t->index[i] = (s & ~(t->dmax << t->ebits)) | disp_field(t, d - gap);
      i = j;
    }
  }
  t->index[i] = 0;
}

static void remove_entry(fy__keytab_t *t, uint32_t n) {
  fy__keytab_entry_t *e = &t->entries[n];
  uint64_t h = entry_hash(t, e);
  uint32_t i = home_of(t, h), x;

  while ((t->index[i] & t->emask) != n + 1) {
    assert(t->index[i] != 0);
    i = next_slot(t, i);
  }
  index_delete(t, i);
  lru_unlink(t, n);
  if (e->len > FY__KEYTAB_INLINE) {
    x = tail_of(e);
    long_unlink(t, x);
    tail_at(t, x)->older = t->tail_free;
    t->tail_free = x;
    t->long_count--;
  }
  e->older = t->free_list;
  t->free_list = n;
  t->count--;
}

void fy__keytab_remove(fy__keytab_t *t, fy__keytab_entry_t *e) {
  remove_entry(t, entry_no(t, e));
}

/* Drops |n| to make room: an eviction, unless it was idle anyway. */
static void evict(fy__keytab_t *t, uint32_t n, uint64_t now,
                  fy__keytab_evicted_t *ev) {
  fy__keytab_entry_t *e = &t->entries[n];
  if (e->idle_at <= now) {
    t->expired++;
  } else {
    t->evicted++;
    if (ev != NULL) {
      ev->evicted = 1;
      ev->len = e->len;
      ev->value[0] = e->value[0];
      ev->value[1] = e->value[1];
      ev->idle_at = e->idle_at;
      fy__keytab_entry_key(t, e, ev->key);
      ev->key[e->len] = '\0';
    }
  }
  remove_entry(t, n);
}

/* |steps| steps of the sweep, at most one per entry present. */
static uint32_t sweep(fy__keytab_t *t, uint64_t now, uint32_t steps) {
  uint32_t removed = 0, n;
  if (steps > t->count)
    steps = t->count;
  while (steps-- > 0) {
    if (t->sweep == FY__KEYTAB_NIL)
      t->sweep = t->lru;
    if (t->sweep == FY__KEYTAB_NIL)
      break;
    n = t->sweep;
    t->sweep = t->entries[n].newer;
    if (t->entries[n].idle_at <= now) {
      remove_entry(t, n);
      t->expired++;
      removed++;
    }
  }
  return removed;
}

uint32_t fy__keytab_expire(fy__keytab_t *t, uint64_t now, uint32_t budget) {
  return sweep(t, now, budget);
}

void fy__keytab_clear(fy__keytab_t *t) {
  memset(t->index, 0, (size_t)t->nslots * sizeof(uint32_t));
  t->count = t->made = 0;
  t->free_list = t->mru = t->lru = t->sweep = FY__KEYTAB_NIL;
  t->tails_made = t->long_count = 0;
  t->tail_free = t->long_mru = t->long_lru = FY__KEYTAB_NIL;
}

/* ---- lookup and insertion ----------------------------------------------- */

void fy__keytab_touch(fy__keytab_t *t, fy__keytab_entry_t *e) {
  uint32_t n = entry_no(t, e), x;
  if (t->mru == n)
    return;
  lru_unlink(t, n);
  lru_push(t, n);
  if (e->len > FY__KEYTAB_INLINE) {
    x = tail_of(e);
    long_unlink(t, x);
    long_push(t, x);
  }
}

fy__keytab_entry_t *fy__keytab_find(const fy__keytab_t *t, const void *key,
                                    size_t len, uint64_t now) {
  uint32_t slot, n;
  if ((key == NULL && len > 0) || len > t->max_key_len)
    return NULL;
  if (key == NULL)
    key = ""; /* the empty key; no arithmetic on a null pointer */
  n = lookup(t, hash_key(t, key, len), key, len, &slot);
  if (n == FY__KEYTAB_NIL || t->entries[n].idle_at <= now)
    return NULL;
  return &t->entries[n];
}

int fy__keytab_find_or_insert(fy__keytab_t *t, const void *key, size_t len,
                              uint64_t now, fy__keytab_entry_t **entry,
                              int *fresh, fy__keytab_evicted_t *ev) {
  fy__keytab_entry_t *e;
  uint64_t h;
  uint32_t slot, n, x = FY__KEYTAB_NIL;
  tail_t *tx;
  uint8_t *page;
  int is_long = len > FY__KEYTAB_INLINE;

  if (ev != NULL)
    ev->evicted = 0;
  if (key == NULL && len > 0)
    return UV_EINVAL;
  if (len > t->max_key_len)
    return FY_EKEY;
  if (key == NULL)
    key = "";
  h = hash_key(t, key, len);
  n = lookup(t, h, key, len, &slot);
  if (n != FY__KEYTAB_NIL) {
    e = &t->entries[n];
    fy__keytab_touch(t, e);
    *fresh = e->idle_at <= now;
    if (*fresh)
      e->idle_at = FY_TIME_NEVER;
    *entry = e;
    return 0;
  }

  /* The only allocation, done before anything changes so that a failure
   * leaves the table as it was. */
  if (is_long && !tail_available(t) && t->pages_made < t->npages) {
    page = fy_malloc(page_bytes(t, t->pages_made));
    if (page == NULL)
      return UV_ENOMEM;
    t->pages[t->pages_made++] = page;
  }

  sweep(t, now, FY__KEYTAB_SWEEP_ON_INSERT);
  /* At most one eviction: when a long key needs a tail slot and none is
   * left, the least recently used long key gives up both its tail and its
   * entry. */
  if (is_long && !tail_available(t))
    evict(t, tail_at(t, t->long_lru)->owner, now, ev);
  else if (t->count == t->max_keys)
    evict(t, t->lru, now, ev);

  if (t->free_list != FY__KEYTAB_NIL) {
    n = t->free_list;
    t->free_list = t->entries[n].older;
  } else {
    n = t->made++;
  }
  e = &t->entries[n];
  e->len = (uint8_t)len;
  e->idle_at = FY_TIME_NEVER;
  if (is_long) {
    if (t->tail_free != FY__KEYTAB_NIL) {
      x = t->tail_free;
      t->tail_free = tail_at(t, x)->older;
    } else {
      x = t->tails_made++;
    }
    tx = tail_at(t, x);
    tx->owner = n;
    memcpy(e->key, key, FY__KEYTAB_PREFIX);
    memcpy(e->key + FY__KEYTAB_PREFIX, &x, sizeof(x));
    memcpy(tx->bytes, (const uint8_t *)key + FY__KEYTAB_PREFIX,
           len - FY__KEYTAB_PREFIX);
    long_push(t, x);
    t->long_count++;
  } else if (len > 0) {
    memcpy(e->key, key, len);
  }

  /* Removals above may have shifted the probe path: find the empty slot
   * again. */
  slot = home_of(t, h);
  for (x = 0; t->index[slot] != 0; slot = next_slot(t, slot), x++)
    ;
  t->index[slot] = tag_of(t, h) | disp_field(t, x) | (n + 1);
  lru_push(t, n);
  t->count++;
  *fresh = 1;
  *entry = e;
  return 0;
}

size_t fy__keytab_entry_key(const fy__keytab_t *t,
                            const fy__keytab_entry_t *e, void *out) {
  uint8_t *o = out;
  if (e->len <= FY__KEYTAB_INLINE) {
    memcpy(o, e->key, e->len);
  } else {
    memcpy(o, e->key, FY__KEYTAB_PREFIX);
    memcpy(o + FY__KEYTAB_PREFIX, tail_at(t, tail_of(e))->bytes,
           (size_t)e->len - FY__KEYTAB_PREFIX);
  }
  return e->len;
}

fy__keytab_entry_t *fy__keytab_lru(const fy__keytab_t *t) {
  return t->lru == FY__KEYTAB_NIL ? NULL : &t->entries[t->lru];
}

uint32_t fy__keytab_home(const fy__keytab_t *t, const void *key, size_t len) {
  return home_of(t, hash_key(t, key, len));
}

/* ---- key sanitiser ------------------------------------------------------ */

/* Length of the well-formed UTF-8 sequence at |p| (|n| bytes left, n > 0)
 * and its code point, or 0 when |p| does not begin one (RFC 3629: no
 * overlong forms, no surrogates, nothing above U+10FFFF). */
static size_t utf8_seq(const unsigned char *p, size_t n, uint32_t *cp) {
  unsigned char c = p[0], lo = 0x80, hi = 0xbf;
  if (c < 0x80) {
    *cp = c;
    return 1;
  }
  if (c < 0xc2)
    return 0; /* a continuation byte, or an overlong two-byte lead */
  if (c < 0xe0) {
    if (n < 2 || p[1] < 0x80 || p[1] > 0xbf)
      return 0;
    *cp = (uint32_t)(c & 0x1f) << 6 | (p[1] & 0x3f);
    return 2;
  }
  if (c < 0xf0) {
    if (c == 0xe0)
      lo = 0xa0; /* overlong below */
    else if (c == 0xed)
      hi = 0x9f; /* surrogates above */
    if (n < 3 || p[1] < lo || p[1] > hi || p[2] < 0x80 || p[2] > 0xbf)
      return 0;
    *cp = (uint32_t)(c & 0x0f) << 12 | (uint32_t)(p[1] & 0x3f) << 6 |
          (p[2] & 0x3f);
    return 3;
  }
  if (c < 0xf5) {
    if (c == 0xf0)
      lo = 0x90; /* overlong below */
    else if (c == 0xf4)
      hi = 0x8f; /* beyond U+10FFFF above */
    if (n < 4 || p[1] < lo || p[1] > hi || p[2] < 0x80 || p[2] > 0xbf ||
        p[3] < 0x80 || p[3] > 0xbf)
      return 0;
    *cp = (uint32_t)(c & 0x07) << 18 | (uint32_t)(p[1] & 0x3f) << 12 |
          (uint32_t)(p[2] & 0x3f) << 6 | (p[3] & 0x3f);
    return 4;
  }
  return 0;
}

/* Characters that would break a log line or hide what it says. */
static int replaced(uint32_t cp) {
  return cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) || cp == 0x200e ||
         cp == 0x200f || cp == 0x2028 || cp == 0x2029 ||
         (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069) ||
         cp == 0xfeff;
}

size_t fy__key_sanitize(const char *key, size_t len, char *out,
                        size_t out_size) {
  const unsigned char *p = (const unsigned char *)key;
  size_t i = 0, o = 0, cap, k, wl, dots;
  const char *w;
  uint32_t cp;

  if (out_size == 0)
    return 0;
  if (key == NULL)
    len = 0;
  cap = out_size - 1;
  while (i < len) {
    k = utf8_seq(p + i, len - i, &cp);
    if (k == 0) {
      k = 1;
      w = "_";
      wl = 1;
    } else if (replaced(cp)) {
      w = "_";
      wl = 1;
    } else {
      w = key + i;
      wl = k;
    }
    if (o + wl > cap)
      goto cut;
    memcpy(out + o, w, wl);
    o += wl;
    i += k;
  }
  out[o] = '\0';
  return o;

cut:
  /* Make room for the marker by dropping whole characters: the output
   * is well-formed UTF-8, so a character starts at a non-continuation
   * byte. */
  dots = cap < 3 ? cap : 3;
  while (o + dots > cap) {
    do
      o--;
    while (o > 0 && ((unsigned char)out[o] & 0xc0) == 0x80);
  }
  memset(out + o, '.', dots);
  o += dots;
  out[o] = '\0';
  return o;
}
