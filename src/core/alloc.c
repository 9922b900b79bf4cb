/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * The allocator hook and the per-context freelists.  This is the only file
 * that calls the C allocator. */
#include <errno.h>
#include <stdlib.h>

#include "internal.h"

static fy_malloc_func fy__malloc_fn = malloc;
static fy_realloc_func fy__realloc_fn = realloc;
static fy_calloc_func fy__calloc_fn = calloc;
static fy_free_func fy__free_fn = free;

int fy_replace_allocator(fy_malloc_func malloc_func,
                         fy_realloc_func realloc_func,
                         fy_calloc_func calloc_func, fy_free_func free_func) {
  if (malloc_func == NULL || realloc_func == NULL || calloc_func == NULL ||
      free_func == NULL)
    return UV_EINVAL;
  fy__malloc_fn = malloc_func;
  fy__realloc_fn = realloc_func;
  fy__calloc_fn = calloc_func;
  fy__free_fn = free_func;
  return 0;
}

/* malloc(0) may return NULL or a unique pointer; we never want either
 * ambiguity, so a zero-sized request is refused, as libuv's uv__malloc. */
void *fy__malloc(size_t size) {
  if (size == 0)
    return NULL;
  return fy__malloc_fn(size);
}

/* The user's calloc may not check the multiplication. */
void *fy__calloc(size_t count, size_t size) {
  if (count == 0 || size == 0)
    return NULL;
  if (size > (size_t)-1 / count)
    return NULL;
  return fy__calloc_fn(count, size);
}

/* Callers expect free() to keep errno, which custom allocators may not. */
void fy__free(void *ptr) {
  int saved;
  if (ptr == NULL)
    return;
  saved = errno;
  fy__free_fn(ptr);
  errno = saved;
}

void *fy__realloc(void *ptr, size_t size) {
  if (size == 0) {
    fy__free(ptr);
    return NULL;
  }
  return fy__realloc_fn(ptr, size);
}

/* The exported forms, for code built outside the core (the adapters). */
void *fy_malloc(size_t size) { return fy__malloc(size); }
void *fy_calloc(size_t count, size_t size) { return fy__calloc(count, size); }
void *fy_realloc(void *ptr, size_t size) { return fy__realloc(ptr, size); }
void fy_free(void *ptr) { fy__free(ptr); }

static size_t class_of(size_t size) {
  return (size + FY__POOL_STEP - 1) / FY__POOL_STEP - 1;
}

void *fy__pool_get(fy__pool_t *pool, size_t size) {
  size_t c = class_of(size);
  void *block;
  if (FY__POOL_ENABLED && c < FY__POOL_CLASSES && pool->free[c] != NULL) {
    block = pool->free[c];
    pool->free[c] = *(void **)block;
    pool->count[c]--;
    /* Clear |size|, not the whole class: with a size the compiler can
     * bound it inlines "rep stos", whose start-up cost makes it slower per
     * frame than the library memset (docs/PERFORMANCE.md, bench/op.c). */
    memset(block, 0, size);
    return block;
  }
  if (c < FY__POOL_CLASSES)
    size = (c + 1) * FY__POOL_STEP;
  return fy__calloc(1, size);
}

void fy__pool_put(fy__pool_t *pool, void *ptr, size_t size) {
  size_t c = class_of(size);
  if (ptr == NULL)
    return;
  if (FY__POOL_ENABLED && c < FY__POOL_CLASSES &&
      pool->count[c] < FY__POOL_KEEP) {
    *(void **)ptr = pool->free[c];
    pool->free[c] = ptr;
    pool->count[c]++;
    return;
  }
  fy__free(ptr);
}

void fy__pool_drain(fy__pool_t *pool) {
  size_t c;
  void *block;
  for (c = 0; c < FY__POOL_CLASSES; c++) {
    while ((block = pool->free[c]) != NULL) {
      pool->free[c] = *(void **)block;
      fy__free(block);
    }
    pool->count[c] = 0;
  }
}

size_t fy__pool_cached(const fy__pool_t *pool) {
  size_t c, n = 0;
  for (c = 0; c < FY__POOL_CLASSES; c++)
    n += pool->count[c];
  return n;
}
