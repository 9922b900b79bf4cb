/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * Declarations shared by the adapter's files.  Nothing here is API. */
#ifndef FY_CURL_INT_H
#define FY_CURL_INT_H

#include <string.h>
#include <time.h>

#include "fortify/curl.h"

/* Allocation: through the library's allocator, so that
 * fy_replace_allocator() covers the adapter too.  curl allocates with its
 * own allocator (curl_global_init_mem). */
static inline void *fyc_calloc(size_t count, size_t size) {
  return fy_calloc(count, size);
}

static inline void *fyc_realloc(void *ptr, size_t size) {
  if (size == 0)
    return NULL; /* callers never shrink to nothing; keep |ptr| intact */
  return fy_realloc(ptr, size);
}

static inline void fyc_free(void *ptr) { fy_free(ptr); }

/* The adapter's operation: the per-host policy recognises the calls that
 * fy_curl_start() made by it. */
extern const fy_op_t fy_curl__op;

/* Default flags of an HTTP code (fy_curl_class_init's table). */
unsigned fy_curl__default_class(int code);

/* The hash of a host key (FNV-1a).  fy_curl_req_set_url() stores it in the
 * request, so the per-host policy finds a request's host without reading
 * its key twice. */
static inline uint32_t fy_curl__key_hash(const char *s) {
  uint32_t h = 2166136261u;
  for (; *s != '\0'; s++) {
    h ^= (unsigned char)*s;
    h *= 16777619u;
  }
  return h;
}

/* ---- Retry-After (retry_after.c; the grammar is documented there) ------
 *
 * The header callback parses the value while curl holds the line, into a
 * delay or an instant; complete() turns that into milliseconds against the
 * wall clock and the adapter's cap.  fy_curl__retry_after() does both at
 * once, for tests and the fuzz target. */
enum {
  FY_CURL__RA_NONE = 0, /* not a Retry-After value: no hint */
  FY_CURL__RA_DELAY,    /* delay-seconds: |secs| is the delay (saturated) */
  FY_CURL__RA_DATE      /* HTTP-date: |secs| is its Unix time */
};

/* Parse |len| bytes of |value| (no NUL needed), surrounding OWS allowed.
 * |now_s| (Unix seconds) places an RFC 850 two-digit year.  Returns a
 * FY_CURL__RA_* kind; |*secs| is 0 for FY_CURL__RA_NONE. */
int fy_curl__retry_after_parse(const char *value, size_t len, int64_t now_s,
                               int64_t *secs);

/* The hint of a parsed value at |now_s|, in ms: 0 for none, for a delay of
 * 0, for a date not after |now_s| and when |cap_ms| is 0; at most
 * |cap_ms|. */
uint64_t fy_curl__retry_after_ms(int kind, int64_t secs, int64_t now_s,
                                 uint64_t cap_ms);

/* Both: |*out_ms| receives the hint (0 when none).  Returns 0 for a valid
 * Retry-After value (even one giving no hint: "0", a past date, cap 0),
 * UV_EINVAL for anything else. */
int fy_curl__retry_after(const char *value, size_t len, int64_t now_s,
                         uint64_t cap_ms, uint64_t *out_ms);

/* Wall-clock Unix seconds, for HTTP-dates.  Never blocks. */
static inline int64_t fy_curl__wall_s(void) { return (int64_t)time(NULL); }

#endif /* FY_CURL_INT_H */
