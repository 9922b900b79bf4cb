/* Copyright (c) 2026 the fortify authors. MIT licensed. */
#ifndef FORTIFY_COMMON_H
#define FORTIFY_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Every public symbol carries FY_EXTERN; the library is built with hidden
 * visibility so nothing else leaks out of the shared object. */
#if defined(__GNUC__) || defined(__clang__)
#define FY_EXTERN __attribute__((visibility("default")))
#else
#define FY_EXTERN
#endif

/* Recover the struct that embeds |ptr| as its member |member|.  Use this,
 * never a cast, to go from an embedded fy_call_t or fy_deadline_t to your
 * own struct. */
#define fy_container_of(ptr, type, member)                                     \
  ((type *)((char *)(ptr) - offsetof(type, member)))

/* Internal type, do not use.  An intrusive doubly linked list node, embedded
 * in public structs only so that callers can allocate them. */
typedef struct fy__qnode_s {
  struct fy__qnode_s *next;
  struct fy__qnode_s *prev;
} fy__qnode_t;

typedef struct fy_ctx_s fy_ctx_t;
typedef struct fy_policy_s fy_policy_t;
typedef struct fy_pipeline_s fy_pipeline_t;
typedef struct fy_call_s fy_call_t;
typedef struct fy_attempt_s fy_attempt_t;
typedef struct fy_frame_s fy_frame_t;
typedef struct fy_deadline_s fy_deadline_t;

/* A deadline or an instant on the context clock, in milliseconds. */
#define FY_TIME_NEVER UINT64_MAX

/* |now| + |ms| on the context clock, saturating: a sum that would reach or
 * pass FY_TIME_NEVER gives FY_TIME_NEVER - 1, the latest instant that is
 * still a time.  Every deadline computed by the library goes through it. */
static inline uint64_t fy_time_add(uint64_t now, uint64_t ms) {
  return now >= FY_TIME_NEVER - 1 || ms >= FY_TIME_NEVER - 1 - now
             ? FY_TIME_NEVER - 1
             : now + ms;
}

/* Destructor of an attempt's result (see fy_attempt_set_result). */
typedef void (*fy_result_dtor)(void *result);

/* Close callback shared by every library-allocated object.  |obj| is the
 * pointer that was closed; it is dead once the callback returns. */
typedef void (*fy_close_cb)(void *obj, void *user_data);

#ifdef __cplusplus
}
#endif
#endif /* FORTIFY_COMMON_H */
