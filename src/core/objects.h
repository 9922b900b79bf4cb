/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * The layouts of the core's objects (context, pipelines, policies, frames,
 * tokens, lanes, tasks), shared by the core (internal.h) and the
 * policy-writer header (policy_impl.h).  Types and constants only: no
 * function is declared here.  Nothing here is API. */
#ifndef FY_OBJECTS_H
#define FY_OBJECTS_H

#include <stddef.h>
#include <string.h>

#include "fortify.h"
#include "queue.h"
#include "wheel.h"

/* Freelists are bypassed under AddressSanitizer so that a use after free
 * stays visible, and when built with FY_NO_POOL. */
#if defined(__SANITIZE_ADDRESS__)
#define FY__POOL_ENABLED 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FY__POOL_ENABLED 0
#endif
#endif
#ifndef FY__POOL_ENABLED
#ifdef FY_NO_POOL
#define FY__POOL_ENABLED 0
#else
#define FY__POOL_ENABLED 1
#endif
#endif

#define FY__MAGIC_CTX 0x66794358u      /* "fyCX" */
#define FY__MAGIC_PIPELINE 0x6679504cu /* "fyPL" */
#define FY__MAGIC_POLICY 0x66795059u   /* "fyPY" */
#define FY__MAGIC_DEAD 0xdeadf00du

#define FY__ALIGN 16
#define FY__ROUND_UP(n, a) (((n) + (a)-1) & ~((size_t)(a)-1))

/* Per-context freelists by size class (64-byte steps up to 1 KiB); the
 * functions are the core's (internal.h). */
#define FY__POOL_STEP 64
#define FY__POOL_CLASSES 16
#define FY__POOL_KEEP 4096 /* blocks kept per class */
typedef struct fy__pool_s {
  void *free[FY__POOL_CLASSES];
  uint32_t count[FY__POOL_CLASSES];
} fy__pool_t;

/* A lane: deadlines that are always started with the same delay (a
 * timeout policy's) expire in the order they start, so a lane keeps them
 * in a FIFO and only its own timer sits on the wheel, at the head's expiry
 * (or earlier, when the head stopped meanwhile: it then fires for nothing
 * and moves on).  Starting and stopping a member are then a list append
 * and unlink, against a wheel insert and remove.  A member behaves as any
 * deadline: fy_deadline_stop(), fy_deadline_start_at() (which moves it to
 * the wheel), refs and pending counts are the same; it fires at its own
 * expiry, in start order among equal instants. */
typedef struct fy__lane_s {
  fy__queue_t node; /* in ctx->lanes */
  fy__queue_t fifo;
  fy_deadline_t timer; /* unreferenced: the members count instead */
  uint64_t tail;       /* the latest expiry started in the lane */
} fy__lane_t;

/* ---- deferred tasks ---------------------------------------------------- */
typedef struct fy__task_s fy__task_t;
struct fy__task_s {
  fy__queue_t node;
  void (*run)(fy__task_t *task);
  int queued;
};

/* ---- context ----------------------------------------------------------- */
enum {
  FY__CTX_MANUAL = 1u << 0,
  FY__CTX_CLOSING = 1u << 1,    /* fy_ctx_close() called */
  FY__CTX_WINDING = 1u << 2,    /* objects told to close */
  FY__CTX_FINAL = 1u << 3,      /* handles closing, nothing runs any more */
  FY__CTX_UNREF = 1u << 4,
  FY__CTX_RUNNING = 1u << 5,    /* firing deadlines or draining tasks */
  FY__CTX_TASKS_ARMED = 1u << 6, /* idle + check started */
  FY__CTX_MEASURE = 1u << 7      /* every call measures its latency */
};

struct fy_ctx_s {
  uint32_t magic;
  unsigned flags;
  uv_loop_t *loop;
  void *data;
  uint64_t manual_now;

  /* Deadlines. */
  fy__wheel_t wheel;
  uint64_t armed_at; /* when the uv timer fires, FY_TIME_NEVER if stopped */
  size_t strong;     /* pending deadlines that keep the loop alive */
  int timer_refd;    /* the uv timer is referenced */
  fy__queue_t lanes; /* fy__lane_t, to drop their members at the end */
  size_t npending;   /* pending deadlines, as fy_ctx_pending_deadlines()
                        reports them (lanes' own timers left out) */
  uv_timer_t timer;

  /* Deferred tasks, delivered from a check handle; the idle handle keeps
   * the loop from blocking in poll while tasks wait. */
  fy__queue_t tasks;
  size_t ntasks;
  uv_check_t check;
  uv_idle_t idle;
  int open_handles;

  /* Objects. */
  fy__queue_t pipelines;
  fy__queue_t policies;
  fy__queue_t listeners;
  fy__queue_t attachments; /* fy_attachment_t (ctx.h) */
  uint32_t ev_mask;
  unsigned emitting;
  int listeners_dirty;
  size_t ncalls;
  size_t nframes;
  unsigned api_depth; /* inside a public entry point that must not call the
                         user back (fy_call_start, fy_call_cancel) */

  /* The call whose callback runs now, and the result it may take. */
  fy_call_t *delivering;
  void *delivering_result;
  fy_result_dtor delivering_dtor;

  fy_detail_t scratch_detail;

  fy__task_t close_task;
  fy_close_cb close_cb;
  void *close_ud;

  fy__pool_t pool;
};

#define FY__CTX_WANTS(ctx, type) (((ctx)->ev_mask >> (unsigned)(type)) & 1u)


/* ---- pipelines and policies -------------------------------------------- */
enum {
  FY__OBJ_CLOSING = 1u << 0,  /* close requested */
  FY__OBJ_NOTIFIED = 1u << 1, /* close callback delivered */
  FY__OBJ_WOUND = 1u << 2     /* close hook ran */
};

/* The layout of a call's memory, computed when the pipeline is built.  A
 * frame started at layer |from| takes one block of block[from] bytes: the
 * frame itself (of the first frame layer at or below |from|, or of an
 * admission layer that made the call wait), then at tok_off[from] the
 * tokens of the admission layers between |from| and that frame, the token
 * of layer L at cum[L] - cum[from] from there. */
typedef struct fy__layout_s {
  uint32_t cum[FY_PIPELINE_MAX + 1];     /* token bytes of layers < L */
  uint32_t tok_off[FY_PIPELINE_MAX + 1];
  uint32_t block[FY_PIPELINE_MAX + 1];
} fy__layout_t;

struct fy_pipeline_s {
  uint32_t magic;
  unsigned flags;
  fy_ctx_t *ctx;
  size_t n;
  fy_policy_t *layers[FY_PIPELINE_MAX];
  fy__layout_t layout;
  fy__queue_t calls;
  size_t inflight; /* calls */
  size_t nframes;  /* frames, including detached ones */
  fy__queue_t node;
  fy__task_t close_task;
  fy_close_cb close_cb;
  void *close_ud;
};

struct fy_policy_s {
  uint32_t magic;
  unsigned flags;
  fy_ctx_t *ctx;
  const fy_policy_vtable_t *vt;
  unsigned refs;   /* pipelines holding it */
  size_t active;   /* live frames and admitted tokens */
  fy__queue_t frames;
  fy__queue_t holders; /* fy__token_t admitted and not yet settled */
  fy__queue_t node;
  fy__task_t close_task;
  fy_close_cb close_cb;
  void *close_ud;
  void *close_obj; /* what close_cb receives */
  char name[FY_NAME_MAX + 1];
  /* the implementation's state follows, FY__ALIGN-aligned */
};

#define FY__POLICY_HDR FY__ROUND_UP(sizeof(struct fy_policy_s), FY__ALIGN)

/* ---- frames ------------------------------------------------------------ */
enum {
  FY__F_LEAF = 1u << 0,
  FY__F_DONE = 1u << 1,      /* outcome decided */
  FY__F_CANCEL = 1u << 2,    /* cancellation requested */
  FY__F_DELIVER = 1u << 3,   /* deliver once the running hook returns */
  FY__F_DETACHED = 1u << 4,  /* parent gave up on it */
  FY__F_CANCEL_RUN = 1u << 5, /* the cancel hook ran (or is running) */
  FY__F_HEARD = 1u << 6       /* this frame or one above has a progress
                                 hook: fy_attempt_mark() has work to do */
};

/* The core's header of an admission layer's token: the policy finds the
 * frame that holds it when it closes.  The policy's own bytes follow. */
typedef struct fy__token_s {
  fy__queue_t node; /* in policy->holders */
  fy_frame_t *frame;
} fy__token_t;

#define FY__TOKEN_HDR FY__ROUND_UP(sizeof(fy__token_t), 8)

/* No memset: fy__frame_start() (frame.c) sets every field of a new frame,
 * so a field added here must be set there too (debug builds fill new
 * frames with garbage first, so that the test suite catches a miss). */
struct fy_frame_s {
  fy__task_t task; /* delivery of the outcome, when deferred */
  fy__queue_t children;
  fy__queue_t sibling;
  fy__queue_t pnode; /* in policy->frames */
  fy_frame_t *parent;
  fy_call_t *call;
  fy_pipeline_t *pipeline;
  fy_policy_t *policy; /* NULL for the operation's attempt */
  fy_ctx_t *ctx;
  fy_deadline_t timer;
  void *result;
  fy_result_dtor dtor;
  uint64_t deadline;
  uint64_t retry_after;
  uint64_t start_ns;
  size_t size;
  size_t nchildren;
  int status;
  unsigned hooks; /* hooks of this frame on the stack */
  unsigned flags;
  unsigned layer;
  /* Tokens of the admission layers tok_from .. layer - 1, which this frame
   * carries for them (none when tok_from == layer), at tok_off. */
  unsigned tok_from;
  unsigned tok_off;
};

#define FY__FRAME_HDR FY__ROUND_UP(sizeof(struct fy_frame_s), FY__ALIGN)

typedef struct fy__leaf_s {
  struct fy_frame_s frame;
  const fy_op_t *op; /* kept here: a detached attempt has no call */
  fy_attempt_t attempt;
} fy__leaf_t;

/* fy_call_t.flags */
enum {
  FY__CALL_ACTIVE = 1u << 0,
  FY__CALL_MEASURED = 1u << 1, /* start_ns was read: elapsed_ns is wanted */
  FY__CALL_CANCEL = 1u << 2,   /* cancelled before its root frame existed
                                  (from an admission hook) */
  FY__CALL_VERDICT = 1u << 3   /* a policy wrote its verdict in the detail
                                  (fy_call_verdict) since the call began */
};

#endif /* FY_OBJECTS_H */
