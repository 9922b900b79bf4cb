/* Copyright (c) 2026 the fortify authors. MIT licensed. */
#ifndef FORTIFY_CTX_H
#define FORTIFY_CTX_H

#include "fortify/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------
 * Allocator.
 *
 * Same shape and restrictions as uv_replace_allocator(): call it before any
 * other fortify function, or after every context has been closed.  The
 * functions must be thread-safe if fortify is used on several loops.  Passing
 * the same four functions to uv_replace_allocator() and to this one gives one
 * allocator for the whole program.  Returns 0, or UV_EINVAL if any is NULL.
 * ------------------------------------------------------------------------- */
typedef void *(*fy_malloc_func)(size_t size);
typedef void *(*fy_realloc_func)(void *ptr, size_t size);
typedef void *(*fy_calloc_func)(size_t count, size_t size);
typedef void (*fy_free_func)(void *ptr);

FY_EXTERN int fy_replace_allocator(fy_malloc_func malloc_func,
                                   fy_realloc_func realloc_func,
                                   fy_calloc_func calloc_func,
                                   fy_free_func free_func);

/* The library's allocator, for adapters and policies that live outside
 * the core but must honour fy_replace_allocator(): same contracts as the C
 * functions, except that a zero size returns NULL and fy_calloc checks the
 * multiplication. */
FY_EXTERN void *fy_malloc(size_t size);
FY_EXTERN void *fy_calloc(size_t count, size_t size);
FY_EXTERN void *fy_realloc(void *ptr, size_t size);
FY_EXTERN void fy_free(void *ptr);

/* ---------------------------------------------------------------------------
 * Context: one per uv_loop_t.
 *
 * Threads: a context and everything made on it (pipelines, policies, calls,
 * deadlines, scopes, listeners) belong to the thread that runs its loop.
 * Call fortify on that thread only, as with libuv handles; the library
 * takes no locks and never blocks.  Separate loops on separate threads may
 * each have their own context.
 *
 * Owns the single uv_timer_t that drives every deadline on the loop (through
 * a hierarchical timer wheel: insert and cancel cost O(1) whatever the number
 * of pending deadlines), the clock, the per-context freelists, the deferred
 * completion queue and the event listeners.
 *
 * Loop liveness: an idle context keeps nothing alive.  The deadline timer is
 * referenced only while at least one deadline is pending (once idle it may
 * stay armed, unreferenced, until its last expiry), and the completion
 * queue's handles are active only while completions wait for delivery.  So a
 * call waiting on a backoff or a timeout keeps uv_run() going exactly as a
 * uv_timer_t would; fy_ctx_unref() makes pending deadlines not count, as
 * uv_unref() does for a handle.
 * ------------------------------------------------------------------------- */
typedef struct fy_ctx_opts_s {
  /* 1: a manual clock.  Time stands still until fy_ctx_advance() moves it,
   * and no uv timer is ever armed: tests are deterministic and never sleep. */
  int manual_clock;
  /* Initial value of the manual clock, in milliseconds. */
  uint64_t manual_start_ms;
  /* 1: every call measures its latency (detail.elapsed_ns), as if each
   * were started with FY_CALL_MEASURE.  Off by default: a clock read costs
   * more than a whole call through a simple pipeline (call.h, "Latency"). */
  int measure_calls;
} fy_ctx_opts_t;

/* Create a context on |loop|.  |opts| may be NULL (real clock).
 * Returns 0, UV_EINVAL, or UV_ENOMEM.  CONSTRUCTOR. */
FY_EXTERN int fy_ctx_new(uv_loop_t *loop, const fy_ctx_opts_t *opts,
                         fy_ctx_t **out);

/* Close asynchronously, as uv_close(): every pipeline and policy still open
 * is closed, every pending call completes with UV_ECANCELED, then the
 * context's handles are closed, then |cb| runs (from a close callback, on a
 * fresh stack), then the memory is gone.  Run the loop until |cb| has run
 * before uv_loop_close().  Legal from inside any callback.  Returns 0, or
 * FY_ECLOSED when already closing.  |ctx| NULL is a no-op.  DESTRUCTOR. */
FY_EXTERN int fy_ctx_close(fy_ctx_t *ctx, fy_close_cb cb, void *user_data);

FY_EXTERN uv_loop_t *fy_ctx_loop(const fy_ctx_t *ctx);
FY_EXTERN void fy_ctx_set_data(fy_ctx_t *ctx, void *data);
FY_EXTERN void *fy_ctx_get_data(const fy_ctx_t *ctx);

/* The context clock, in milliseconds: uv_now() of the loop, or the manual
 * clock.  Every deadline and every policy reads time from here. */
FY_EXTERN uint64_t fy_ctx_now(const fy_ctx_t *ctx);

/* The one latency clock, in nanoseconds: uv_hrtime() (monotonic, the
 * resolution of the system's clock_gettime()), or the manual clock scaled
 * to nanoseconds.  Every latency the library reports comes from it, and it
 * is read only where a latency is wanted (call.h, "Latency"). */
FY_EXTERN uint64_t fy_ctx_hrtime(const fy_ctx_t *ctx);

/* Manual clock only: move time forward by |ms|, firing every deadline that
 * falls due in order of expiry (ties in the order they were started) with
 * the clock set to that deadline's instant, and delivering the completions
 * each one causes before the next fires.  With |ms| 0 it delivers what is
 * due now.  Returns 0, UV_EINVAL (real clock), or UV_EBUSY when called from
 * inside one of the context's callbacks. */
FY_EXTERN int fy_ctx_advance(fy_ctx_t *ctx, uint64_t ms);

/* Whether pending deadlines keep the loop alive (the default) or not. */
FY_EXTERN void fy_ctx_ref(fy_ctx_t *ctx);
FY_EXTERN void fy_ctx_unref(fy_ctx_t *ctx);

/* Number of deadlines pending on the context. */
FY_EXTERN size_t fy_ctx_pending_deadlines(const fy_ctx_t *ctx);

/* Counters, for tests and metrics. */
typedef struct fy_ctx_stats_s {
  size_t deadlines;    /* pending deadlines */
  size_t calls;        /* calls started and not yet completed */
  size_t frames;       /* live frames, including detached attempts */
  size_t queued;       /* completions waiting for delivery */
  size_t pool_cached;  /* blocks held by the freelists */
} fy_ctx_stats_t;
FY_EXTERN void fy_ctx_stats(const fy_ctx_t *ctx, fy_ctx_stats_t *out);

/* ---------------------------------------------------------------------------
 * Deadlines: caller-allocated, embeddable timer entries on the context's
 * wheel.  No allocation, no uv handle, O(1) start and stop.
 *
 * The callback runs once, from the loop (or from fy_ctx_advance()), never
 * from inside fy_deadline_start().  A deadline may be started again or
 * stopped from inside any callback, including a sibling that fell due in the
 * same tick: a stopped deadline never fires.  A deadline carries no close:
 * stop it before freeing its memory.  Deadlines still pending when their
 * context finishes closing are dropped without firing.
 * ------------------------------------------------------------------------- */
typedef void (*fy_deadline_cb)(fy_deadline_t *deadline);

struct fy_deadline_s {
  /* public */
  void *data;
  /* private */
  fy__qnode_t node;
  uint64_t expiry;
  fy_deadline_cb cb;
  fy_ctx_t *ctx;
  uint32_t slot;  /* wheel level * 64 + slot, or a FY__DL_* marker */
  uint32_t flags; /* FY__DL_F_* */
  void *lane;     /* the lane holding it, when slot says so */
};

FY_EXTERN void fy_deadline_init(fy_ctx_t *ctx, fy_deadline_t *deadline,
                                fy_deadline_cb cb);
/* Fire after |timeout_ms| (a restart if active).  Saturates on overflow.
 * Returns 0, UV_EINVAL (not initialised) or FY_ECLOSED (context closing). */
FY_EXTERN int fy_deadline_start(fy_deadline_t *deadline, uint64_t timeout_ms);
/* Fire at the absolute context time |when_ms| (now, if in the past);
 * FY_TIME_NEVER is refused with UV_EINVAL. */
FY_EXTERN int fy_deadline_start_at(fy_deadline_t *deadline, uint64_t when_ms);
FY_EXTERN void fy_deadline_stop(fy_deadline_t *deadline);
FY_EXTERN int fy_deadline_is_active(const fy_deadline_t *deadline);
/* Whether this deadline keeps the loop alive while pending (the default,
 * as a uv_timer_t) or not (as after uv_unref()): a breaker's open ->
 * half-open timer should not hold a process open, a retry backoff should.
 * Legal at any time, pending or not. */
FY_EXTERN void fy_deadline_ref(fy_deadline_t *deadline);
FY_EXTERN void fy_deadline_unref(fy_deadline_t *deadline);
/* Absolute expiry, or FY_TIME_NEVER when not active. */
FY_EXTERN uint64_t fy_deadline_expiry(const fy_deadline_t *deadline);

/* ---------------------------------------------------------------------------
 * Attachments: how an object that lives outside the context's own lists (an
 * adapter, a bundle of policies such as a preset) learns that the context
 * closes, and is freed by it when its user never closed it.
 *
 * Caller-allocated and embeddable, like a deadline.  fy_ctx_attach() links
 * |a| to |ctx| with two hooks, either of which may be NULL:
 *
 *   wind_down  runs once, from the context's close task (on a fresh stack,
 *              never from inside fy_ctx_close()), FIRST: before any
 *              pipeline or policy of the context is told to close.  Every
 *              object the attachment owns is still open then, so it may
 *              close them itself (with callbacks), forget them, or cancel
 *              its own work; calls it completes there complete as usual.
 *              Attachments are wound down in the order they were attached,
 *              but nothing may depend on that order.
 *   destroy    runs at the very end, once the context is final (every call,
 *              pipeline and policy gone, no deadline fires any more), for
 *              each attachment still attached: free the object there.  It
 *              runs before the context's own close callback.
 *
 * An attachment whose object goes away earlier (closed by its user) must be
 * detached first; fy_ctx_detach() is then the last use of |a|.  Detaching
 * from inside either hook, or detaching another attachment from inside one,
 * is allowed.  Detaching twice, or an attachment never attached (zeroed),
 * is a no-op.
 *
 * fy_ctx_attach() returns 0, UV_EINVAL (NULL |ctx| or |a|) or FY_ECLOSED
 * once fy_ctx_close() has been called, as a policy's constructor does.
 * ------------------------------------------------------------------------- */
typedef struct fy_attachment_s fy_attachment_t;
typedef void (*fy_attachment_cb)(fy_attachment_t *a);

struct fy_attachment_s {
  /* public */
  void *data;
  /* private */
  fy__qnode_t node;
  fy_attachment_cb wind_down;
  fy_attachment_cb destroy;
};

FY_EXTERN int fy_ctx_attach(fy_ctx_t *ctx, fy_attachment_t *a,
                            fy_attachment_cb wind_down,
                            fy_attachment_cb destroy);
FY_EXTERN void fy_ctx_detach(fy_attachment_t *a);

/* ---------------------------------------------------------------------------
 * Close groups: "close these N parts, then call back", for an object made
 * of several closable parts (a preset, the curl adapter's pipeline).
 *
 *   fy_close_group_init(&g);
 *   fy_close_group_add(&g, fy_retry_close(r, fy_close_group_cb, &g));
 *   fy_close_group_add(&g, fy_pipeline_close(pl, fy_close_group_cb, &g));
 *   if (fy_close_group_wait(&g, done) != 0) ...   (see below)
 *
 * fy_close_group_add() takes what a close function returned when it was
 * given fy_close_group_cb and the group: 0 counts one callback due, any
 * other code counts a part that was already closing (its close callback
 * will not come).  It returns the code it was given.
 *
 * fy_close_group_wait() returns 0 when at least one part was added and
 * every close succeeded: |done| then runs once, when the last of their
 * callbacks has come (on a later turn of the loop; never from inside the
 * wait), and the group is no longer used after it.  It returns FY_ECLOSED
 * when nothing was added or a close failed (a part was already closing):
 * |done| will never run, and the group must stay allocated until the
 * callbacks already due have come; they all come before the context
 * finishes closing, so an object attached to the context can simply be
 * left to its destroy hook.  Every bundle in the library follows this one
 * rule: a close that returns an error frees nothing.
 * ------------------------------------------------------------------------- */
typedef struct fy_close_group_s fy_close_group_t;
typedef void (*fy_close_group_done)(fy_close_group_t *g);

struct fy_close_group_s {
  /* public */
  void *data;
  /* private */
  unsigned due;     /* close callbacks still to come */
  unsigned refused; /* closes that failed */
  int waiting;      /* fy_close_group_wait() returned 0 */
  fy_close_group_done done;
};

FY_EXTERN void fy_close_group_init(fy_close_group_t *g);
FY_EXTERN int fy_close_group_add(fy_close_group_t *g, int close_rc);
/* The close callback to give each part, with the group as user_data. */
FY_EXTERN void fy_close_group_cb(void *obj, void *group);
FY_EXTERN int fy_close_group_wait(fy_close_group_t *g,
                                  fy_close_group_done done);

#ifdef __cplusplus
}
#endif
#endif /* FORTIFY_CTX_H */
