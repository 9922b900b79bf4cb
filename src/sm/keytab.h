/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * A bounded in-memory key table: byte-string keys to a fixed 16-byte value
 * (the rate limiter's per-key state), with expiry of idle entries and LRU
 * eviction when full, and the key sanitiser used wherever a key is shown
 * (events, logs, fy_detail_t).  Pure data structure: no loop, no clock of
 * its own (time comes in as |now|, in ms), memory only through fy_malloc()
 * and friends.  Nothing here is API.
 *
 * Memory layout
 * -------------
 * Three blocks, the first two allocated by fy__keytab_init():
 *
 * - the entries: max_keys entries of 56 bytes each (fy__keytab_entry_t):
 *   value (16), idle_at (8), two uint32 LRU links (8), the key length (1)
 *   and 23 bytes of key.  A key of up to FY__KEYTAB_INLINE (23) bytes lives
 *   there entirely.  The array is handed out front to back, so pages the
 *   table never used are never touched.
 * - the index: nslots = max_keys + max_keys / 3 + 1 uint32 slots (load
 *   factor at most 3/4), linear probing from a home slot chosen by
 *   multiply-shift (so nslots need not be a power of two: a power of two
 *   would cost up to twice as much at the sizes that matter).  A slot holds
 *   0 (empty) or, from the low bits up, entry number + 1, the distance
 *   from the key's home slot (saturating at 2^dbits - 1, dbits <= 5) and
 *   a tag of the key's hash, so that a probe rarely reads an entry that
 *   is not the key (at 1,000,000 keys: 20 + 5 + 7 bits).  Deletion shifts
 *   the rest of the cluster back (no tombstones), so probe lengths never
 *   degrade with churn; the distances make that shift a scan of the index
 *   alone (an entry is re-hashed only when its distance saturated).
 * - long keys (longer than 23 bytes): the first 19 bytes stay in the
 *   entry, the rest goes to a tail slot (12 bytes of links + up to
 *   max_key_len - 19 bytes) in pages of FY__KEYTAB_PAGE tail slots, and
 *   the entry keeps the tail's number in its last 4 key bytes.  Only the
 *   page directory is allocated at init; a page is allocated when a new
 *   long key finds no free tail slot, and is kept until fy__keytab_free().
 *   So a table of short keys pays nothing for long ones, and a table
 *   where an attacker sends long keys pays at most max_long_keys tail
 *   slots.  Tail slots form their own LRU list, so that when all
 *   max_long_keys of them are in use the least recently used long key
 *   makes room for a new one.
 *
 * At 1,000,000 keys of 16 bytes: 56 + 5.33 (index) + 0.03 (page
 * directory) = 61.4 bytes per key.
 *
 * Allocation: fy__keytab_init() allocates the entries, the index and the
 * page directory; nothing else ever allocates except the insertion of a new
 * long key when every tail page is full (one page, at most
 * ceil(max_long_keys / FY__KEYTAB_PAGE) times over the table's life).
 * Looking up, updating, touching, removing and expiring never allocate.
 *
 * Idle entries: an entry whose idle_at <= now holds a value equivalent to
 * a fresh key's, so dropping it loses nothing.  The table treats such an
 * entry as absent whether or not it was dropped yet: fy__keytab_find()
 * does not return it and fy__keytab_find_or_insert() reports it fresh.
 * Idle entries are dropped by a sweep that walks the LRU list from the
 * least recently used end towards the most recent, one entry per step,
 * resuming where it stopped and starting again from the LRU end after
 * the most recent: fy__keytab_expire() runs |budget| steps, and every
 * insertion of a new key runs FY__KEYTAB_SWEEP_ON_INSERT steps first.
 *
 * Eviction: when a new key needs an entry (or a tail slot) and none is
 * free after the sweep, the least recently used entry (or long key) is
 * evicted and reported to the caller (unless it was idle: then it is
 * dropped silently, as the sweep would have).  So a table filled with
 * garbage never refuses a new key, and a key in steady use outlives
 * garbage that is not.
 *
 * Work per insertion of a new key, exactly: one hash and probe to find it
 * missing; FY__KEYTAB_SWEEP_ON_INSERT sweep steps (each removing at most
 * one entry); at most one eviction; one probe to place it.  A removal
 * re-hashes the removed key once and scans the index to the end of its
 * cluster (only entries whose displacement field saturated are
 * re-hashed).  Finding an existing key: one hash and probe, no removal.
 *
 * Pointers: an entry pointer is valid until the next call that may remove
 * entries (find_or_insert of a new key, expire, remove, clear, free).
 * Hashing: SipHash-1-3 keyed with the table's 128-bit seed; a caller
 * gives a seed from a good random source (tests give a fixed one). */
#ifndef FY_KEYTAB_H
#define FY_KEYTAB_H

#include <stddef.h>
#include <stdint.h>

#include "fortify.h"

#define FY__KEYTAB_KEY_MAX 255          /* longest max_key_len */
#define FY__KEYTAB_MAX_KEYS ((1u << 28) - 1) /* leaves >= 4 tag bits */
#define FY__KEYTAB_INLINE 23            /* a key up to this long is inline */
#define FY__KEYTAB_PREFIX 19            /* a longer key's bytes in its entry */
#define FY__KEYTAB_PAGE 256             /* tail slots per page */
#define FY__KEYTAB_SWEEP_ON_INSERT 2    /* sweep steps per new key */
#define FY__KEYTAB_NIL UINT32_MAX

typedef struct fy__keytab_entry_s {
  uint64_t value[2]; /* the caller's; undefined while the entry is fresh */
  uint64_t idle_at;  /* from this instant on the value is a fresh key's */
  /* private */
  uint32_t newer; /* LRU links: towards the most recently used, and away */
  uint32_t older; /* from it (free entries chain through |older|) */
  uint8_t len;
  uint8_t key[FY__KEYTAB_INLINE];
} fy__keytab_entry_t;

typedef struct fy__keytab_opts_s {
  uint32_t max_keys;      /* 1..FY__KEYTAB_MAX_KEYS */
  uint32_t max_key_len;   /* 0..FY__KEYTAB_KEY_MAX */
  uint32_t max_long_keys; /* keys longer than FY__KEYTAB_INLINE held at
                             once; 0 or more than max_keys: max_keys */
  uint64_t seed[2];       /* SipHash key */
} fy__keytab_opts_t;

/* What an insertion evicted (a live, non-idle entry), copied out because
 * its entry is reused at once. */
typedef struct fy__keytab_evicted_s {
  int evicted; /* 0: nothing was; the rest is then unset */
  uint32_t len;
  uint64_t value[2];
  uint64_t idle_at;
  char key[FY__KEYTAB_KEY_MAX + 1]; /* raw bytes, NUL added after |len| */
} fy__keytab_evicted_t;

typedef struct fy__keytab_s {
  fy__keytab_entry_t *entries;
  uint32_t *index;
  uint8_t **pages; /* tail pages; NULL when no key can be long */
  uint64_t seed[2];
  uint32_t max_keys, max_key_len, max_long_keys;
  uint32_t nslots;
  uint32_t ebits, emask; /* an index slot: entry number + 1 (low bits), */
  uint32_t dbits, dmax;  /* displacement from its home (saturating), */
  uint32_t tmask;        /* and a tag of the hash (high bits) */
  uint32_t count;
  uint32_t made;        /* entries handed out so far, front to back */
  uint32_t free_list;   /* removed entries, through |older| */
  uint32_t mru, lru;    /* ends of the LRU list */
  uint32_t sweep;       /* next entry the sweep looks at; NIL: the LRU end */
  uint32_t tail_stride; /* bytes per tail slot */
  uint32_t npages, pages_made;
  uint32_t tails_made, tail_free, long_count;
  uint32_t long_mru, long_lru;
  uint64_t expired;  /* idle entries dropped, over the table's life */
  uint64_t evicted;  /* live entries evicted */
} fy__keytab_t;

/* 0; UV_EINVAL (bad options; |t| untouched); UV_ENOMEM (nothing kept). */
int fy__keytab_init(fy__keytab_t *t, const fy__keytab_opts_t *opts);
/* Releases everything; |t| may then be initialised again. */
void fy__keytab_free(fy__keytab_t *t);

/* The entry of |key|, inserting it when absent (or idle at |now|).
 * |*fresh| = 1 when it was: the value is then undefined and idle_at is
 * FY_TIME_NEVER, for the caller to set both.  It is the most recently
 * used entry afterwards.  |evicted| (may be NULL) says whether a live
 * entry was evicted to make room.  Returns 0; FY_EKEY when |len| >
 * max_key_len (nothing changed: the caller denies); UV_EINVAL for a NULL
 * key of non-zero length; UV_ENOMEM when a long key needed a new tail page
 * that could not be allocated (nothing changed). */
int fy__keytab_find_or_insert(fy__keytab_t *t, const void *key, size_t len,
                              uint64_t now, fy__keytab_entry_t **entry,
                              int *fresh, fy__keytab_evicted_t *evicted);

/* The entry of |key| when present and not idle at |now|, else NULL (also
 * for a key too long to be present).  Changes nothing, LRU order included. */
fy__keytab_entry_t *fy__keytab_find(const fy__keytab_t *t, const void *key,
                                    size_t len, uint64_t now);

/* Marks |e| the most recently used. */
void fy__keytab_touch(fy__keytab_t *t, fy__keytab_entry_t *e);

static inline void fy__keytab_set_idle_at(fy__keytab_entry_t *e,
                                          uint64_t idle_at) {
  e->idle_at = idle_at;
}

/* Removes |e| (an entry of |t|). */
void fy__keytab_remove(fy__keytab_t *t, fy__keytab_entry_t *e);

/* Runs up to |budget| sweep steps (never more than the entries present):
 * each looks at one entry and removes it when idle at |now|.  Returns how
 * many were removed. */
uint32_t fy__keytab_expire(fy__keytab_t *t, uint64_t now, uint32_t budget);

/* Removes every entry; keeps the memory. O(nslots). */
void fy__keytab_clear(fy__keytab_t *t);

static inline uint32_t fy__keytab_count(const fy__keytab_t *t) {
  return t->count;
}

/* Bytes allocated by the table (entries, index, page directory, pages),
 * not counting the fy__keytab_t itself. */
size_t fy__keytab_bytes(const fy__keytab_t *t);

/* Copies |e|'s key to |out| (FY__KEYTAB_KEY_MAX bytes at least); returns
 * its length. */
size_t fy__keytab_entry_key(const fy__keytab_t *t,
                            const fy__keytab_entry_t *e, void *out);

/* The least recently used entry, or NULL when empty. */
fy__keytab_entry_t *fy__keytab_lru(const fy__keytab_t *t);

/* White box, for tests: the home slot of |key| in |t|'s index. */
uint32_t fy__keytab_home(const fy__keytab_t *t, const void *key, size_t len);

/* SipHash-1-3 (the table's hash) and SipHash-2-4 (the reference
 * parameters, whose published vectors check the common code),
 * keyed with k[0] (bytes 0..7, little-endian) and k[1] (bytes 8..15). */
uint64_t fy__siphash13(const uint64_t k[2], const void *data, size_t len);
uint64_t fy__siphash24(const uint64_t k[2], const void *data, size_t len);

/* ---- key sanitiser ------------------------------------------------------ */

/* The size of fy_detail_t's key field: the sanitised key as callers show
 * it, NUL included. */
#define FY__KEY_SANITIZED_SIZE sizeof(((fy_detail_t *)0)->key)

/* Writes a printable, NUL-terminated form of |key| (|len| bytes) into
 * |out| (|out_size| bytes; nothing is written when 0) and returns its
 * length.  Printable ASCII and well-formed UTF-8 are kept, except that
 * each of these becomes one '_':
 * - a C0 control (0x00..0x1f) or DEL (0x7f);
 * - each byte that does not begin a well-formed UTF-8 sequence (a stray
 *   continuation byte, an overlong form, a surrogate, a code point above
 *   U+10FFFF, a sequence cut short: each of its bytes);
 * - a C1 control (U+0080..U+009F), the line and paragraph separators
 *   (U+2028, U+2029) and the invisible marks that reorder or hide text in
 *   a terminal or a log viewer: U+200E, U+200F, U+202A..U+202E,
 *   U+2066..U+2069, U+FEFF.
 * When that does not fit in out_size - 1 bytes, it is cut at a character
 * boundary and ends in "..." (fewer dots when out_size < 4), so the
 * result is never longer than out_size - 1.  Idempotent: sanitising the
 * result with the same out_size gives it back.  A key that itself ends in
 * "..." looks the same as a cut one. */
size_t fy__key_sanitize(const char *key, size_t len, char *out,
                        size_t out_size);

#endif /* FY_KEYTAB_H */
