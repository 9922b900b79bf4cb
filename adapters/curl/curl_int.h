/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * Declarations shared by the adapter's files.  Nothing here is API. */
#ifndef FY_CURL_INT_H
#define FY_CURL_INT_H

#include <string.h>

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

#endif /* FY_CURL_INT_H */
