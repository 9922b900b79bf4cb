/* Copyright (c) 2026 the fortify authors. MIT licensed. */
#include "fuzz.h"

#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <fortify.h>

void fz_fail(const char *file, int line, const char *cond, const char *fmt,
             ...) {
  va_list ap;
  fprintf(stderr, "%s:%d: invariant broken: %s\n  ", file, line, cond);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  fflush(stderr);
  abort();
}

/* ---- reader ------------------------------------------------------------- */

void fz_init(fz_t *z, const uint8_t *data, size_t size) {
  z->p = data;
  z->n = size;
}

int fz_done(const fz_t *z) {
  return z->n == 0;
}

uint8_t fz_u8(fz_t *z) {
  if (z->n == 0)
    return 0;
  z->n--;
  return *z->p++;
}

static uint64_t fz_le(fz_t *z, unsigned bytes) {
  uint64_t v = 0;
  unsigned i;
  for (i = 0; i < bytes; i++)
    v |= (uint64_t)fz_u8(z) << (8 * i);
  return v;
}

uint16_t fz_u16(fz_t *z) {
  return (uint16_t)fz_le(z, 2);
}
uint32_t fz_u32(fz_t *z) {
  return (uint32_t)fz_le(z, 4);
}
uint64_t fz_u64(fz_t *z) {
  return fz_le(z, 8);
}

uint64_t fz_below(fz_t *z, uint64_t n) {
  if (n == 0)
    return 0;
  if (n <= 256)
    return fz_u8(z) % n;
  if (n <= 65536)
    return fz_u16(z) % n;
  if (n <= UINT64_C(0x100000000))
    return fz_u32(z) % n;
  return fz_u64(z) % n;
}

/* The library's documented limits and their neighbours. */
static const uint64_t edges64[] = {
    0,
    1,
    2,
    63,
    64,
    100,
    1000,
    1024,
    4096,
    65535,
    65536,
    (1u << 20),
    (1u << 20) + 1,
    0x7fffffffu,
    0x80000000u,
    0xffffffffu,
    UINT64_C(0x100000000),
    UINT64_C(86400000), /* 24 h: retry's delay limit */
    UINT64_C(86400001),
    UINT64_C(2592000000), /* 30 days: timeout's limit */
    UINT64_C(2592000001),
    UINT64_C(1) << 42, /* breaker's duration limit */
    (UINT64_C(1) << 42) + 1,
    UINT64_C(0x7fffffffffffffff),
    UINT64_C(0x8000000000000000),
    UINT64_MAX - 1,
    UINT64_MAX,
};

uint64_t fz_u64_edge(fz_t *z) {
  uint8_t sel = fz_u8(z);
  uint64_t e;
  if (sel < 96)
    return fz_u8(z);
  if (sel < 192) {
    e = edges64[fz_below(z, sizeof(edges64) / sizeof(edges64[0]))];
    /* ... or just beside it. */
    switch (sel % 4) {
    case 1:
      return e + 1;
    case 2:
      return e - 1;
    default:
      return e;
    }
  }
  if (sel < 224)
    return fz_u32(z);
  return fz_u64(z);
}

uint32_t fz_u32_edge(fz_t *z) {
  uint64_t v = fz_u64_edge(z);
  /* The 64-bit edges truncate to 32-bit ones (UINT64_MAX to UINT32_MAX,
   * 2^63 to 0), so no clamping is needed. */
  return (uint32_t)v;
}

uint64_t fz_time(fz_t *z) {
  uint8_t sel = fz_u8(z);
  if (sel < 128)
    return fz_u8(z) % 64;
  if (sel < 200)
    return fz_u16(z) % 5000;
  if (sel < 230)
    return fz_u32(z) % 100000000u;
  return fz_u64_edge(z);
}

double fz_double(fz_t *z) {
  static const double specials[] = {
      0.0,    -0.0, 0.5,    1.0,   1.5,     2.0,      50.0,    99.9,    100.0,
      1000.0, -1.0, 1e-300, 1e300, DBL_MAX, -DBL_MAX, DBL_MIN, 4.9e-324};
  uint8_t sel = fz_u8(z);
  double d;
  uint64_t bits;
  if (sel < 64)
    return (double)fz_u16(z) / 100.0;
  if (sel < 160) {
    d = specials[fz_below(z, sizeof(specials) / sizeof(specials[0]))];
    switch (sel % 4) {
    case 1:
      return nextafter(d, INFINITY);
    case 2:
      return nextafter(d, -INFINITY);
    default:
      return d;
    }
  }
  if (sel < 176)
    return NAN;
  if (sel < 184)
    return -NAN;
  if (sel < 192)
    return INFINITY;
  if (sel < 200)
    return -INFINITY;
  bits = fz_u64(z);
  memcpy(&d, &bits, sizeof(d));
  return d;
}

int fz_status(fz_t *z) {
  static const int codes[] = {0,
                              UV_ECANCELED,
                              UV_ETIMEDOUT,
                              UV_EIO,
                              UV_ECONNRESET,
                              UV_ENOMEM,
                              UV_EINVAL,
                              UV_EAGAIN,
                              UV_EBUSY,
                              UV_EOF,
                              FY_ECIRCUITOPEN,
                              /* -2, -7, -8, -13 and -14: offsets of
                               * removed codes, no longer the library's */
                              FY__ERRNO_BASE - 2,
                              FY_EBULKHEADFULL,
                              FY_EQUEUETIMEOUT,
                              FY_ECLOSED,
                              FY_EDEADLINE,
                              FY__ERRNO_BASE - 7,
                              FY__ERRNO_BASE - 8,
                              FY_EFALLBACK,
                              FY_EKEY,
                              FY__ERRNO_BASE - 13,
                              FY__ERRNO_BASE - 14,
                              FY_EBADRESULT,
                              1,
                              INT_MAX,
                              INT_MIN,
                              -1,
                              FY__ERRNO_BASE,
                              FY__ERRNO_LAST,
                              FY_EHTTP_STATUS(503),
                              FY_EHTTP_STATUS(429),
                              FY_EHTTP_STATUS(404),
                              FY_EHTTP_STATUS(100),
                              FY_EHTTP_STATUS(999),
                              -6000,
                              -6099,
                              -7000};
  uint8_t sel = fz_u8(z);
  if (sel < 224)
    return codes[sel % (sizeof(codes) / sizeof(codes[0]))];
  return (int)fz_u32(z);
}

char *fz_string(fz_t *z, char *buf, size_t max) {
  size_t len = (size_t)fz_below(z, max);
  size_t i;
  for (i = 0; i < len; i++)
    buf[i] = (char)fz_u8(z);
  buf[len] = '\0';
  return buf;
}

/* ---- counting allocator -------------------------------------------------- */

static struct {
  long requests;
  long live;
  long failed;
  long fail_at;
  long fail_from;
} fa = {0, 0, 0, -1, -1};

static int fa_refuse(void) {
  long i = fa.requests++;
  if (i == fa.fail_at || (fa.fail_from >= 0 && i >= fa.fail_from)) {
    fa.failed++;
    return 1;
  }
  return 0;
}

static void *fa_malloc(size_t size) {
  void *p;
  if (fa_refuse())
    return NULL;
  p = malloc(size);
  if (p != NULL)
    fa.live++;
  return p;
}

static void *fa_calloc(size_t count, size_t size) {
  void *p;
  if (fa_refuse())
    return NULL;
  p = calloc(count, size);
  if (p != NULL)
    fa.live++;
  return p;
}

static void *fa_realloc(void *ptr, size_t size) {
  if (ptr == NULL)
    return fa_malloc(size);
  if (fa_refuse())
    return NULL;
  return realloc(ptr, size);
}

static void fa_free(void *ptr) {
  if (ptr == NULL)
    return;
  fa.live--;
  free(ptr);
}

void fz_alloc_install(void) {
  static int installed;
  if (installed)
    return;
  installed = 1;
  if (fy_replace_allocator(fa_malloc, fa_realloc, fa_calloc, fa_free) != 0)
    abort();
}

void fz_alloc_reset(long fail_at, long fail_from) {
  fa.requests = 0;
  fa.failed = 0;
  fa.fail_at = fail_at;
  fa.fail_from = fail_from;
}

long fz_alloc_live(void) {
  return fa.live;
}
long fz_alloc_requests(void) {
  return fa.requests;
}
long fz_alloc_failed(void) {
  return fa.failed;
}
