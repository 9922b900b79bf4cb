/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * Frames and calls: how one call flows through the layers of a pipeline.
 *
 * A frame is one invocation of one layer.  The root frame belongs to the
 * call; a policy's frame spawns children in the layer below; the innermost
 * frame is an attempt of the operation.  Outcomes travel upwards with
 * deliver().  Two counters make re-entrancy impossible by construction:
 * - frame->hooks counts hooks of that frame on the stack (and spawns made
 *   from it).  An outcome for a busy parent is queued on the context and
 *   delivered from a fresh stack; a frame that finishes inside its own hook
 *   is delivered when the hook returns.
 * - ctx->api_depth is non-zero inside fy_call_start()/fy_call_cancel() and
 *   the close wind-downs: a call finishing then is delivered later, so a
 *   completion callback never runs inside the function that started or
 *   cancelled its call (rule 2). */
#include "internal.h"

static void deliver(fy_frame_t *f);
static void frame_cancel(fy_frame_t *f);
static void leave_hook(fy_frame_t *f);
static void run_pending_cancel(fy_frame_t *f);
static void drop_result(fy_frame_t *f);

static fy__leaf_t *leaf_of(fy_frame_t *f) {
  return fy_container_of(f, fy__leaf_t, frame);
}

static fy_frame_t *frame_of_attempt(const fy_attempt_t *a) {
  return &fy_container_of(a, fy__leaf_t, attempt)->frame;
}

static void run_deliver_task(fy__task_t *task) {
  deliver(fy_container_of(task, fy_frame_t, task));
}

static void on_frame_timer(fy_deadline_t *d);

/* Deliver |f| from a fresh stack.  The task's fields other than |queued|
 * are set here rather than at every frame start: few frames ever wait. */
static void defer_delivery(fy_frame_t *f) {
  if (!f->task.queued)
    f->task.run = run_deliver_task;
  fy__ctx_enqueue(f->ctx, &f->task);
}

/* The frame timer is set up on first use, for the same reason: only
 * timeouts and retries arm one.  Until then only its slot is meaningful. */
static fy_deadline_t *frame_timer(fy_frame_t *f) {
  if (f->timer.slot == FY__DL_IDLE)
    fy__deadline_init(f->ctx, &f->timer, on_frame_timer);
  return &f->timer;
}

/* ---- lifetime ---------------------------------------------------------- */

/* |f| is no longer a frame of its policy. */
static FY__INLINE void leave_policy(fy_frame_t *f) {
  fy_policy_t *p = f->policy;
  if (p == NULL)
    return;
  fy__queue_remove(&f->pnode);
  p->active--;
  if (p->flags & FY__OBJ_CLOSING)
    fy__policy_poke(p);
}

/* |f| is no longer a live frame: its timer, its policy's and its
 * pipeline's counts.  Every frame goes through here: the flag tests keep
 * the common case (timer idle, nothing closing) free of calls. */
static FY__INLINE void frame_unregister(fy_frame_t *f) {
  fy_pipeline_t *pl = f->pipeline;
  if (f->timer.slot != FY__DL_IDLE)
    fy_deadline_stop(&f->timer);
  leave_policy(f);
  pl->nframes--;
  if (pl->flags & FY__OBJ_CLOSING)
    fy__pipeline_poke(pl);
  f->ctx->nframes--;
}

static FY__INLINE void frame_free(fy_frame_t *f) {
  fy_ctx_t *ctx = f->ctx;
  void *result = f->result;
  fy_result_dtor dtor = f->dtor;

  assert(f->nchildren == 0 && f->parent == NULL && f->hooks == 0);
  assert(f->tok_from == f->layer); /* every token settled or released */
  frame_unregister(f);
  fy__pool_give(&ctx->pool, f, f->size);
  /* The destructor is user code: run it once the frame is gone. */
  if (result != NULL && dtor != NULL)
    dtor(result);
  if (ctx->flags & FY__CTX_CLOSING)
    fy__ctx_poke(ctx);
}

/* Forget the call in a detached subtree: the call's memory is the caller's
 * again as soon as it completes. */
static void forget_call(fy_frame_t *f) {
  fy__queue_t *q;
  f->call = NULL;
  f->flags |= FY__F_DETACHED;
  if (f->flags & FY__F_LEAF)
    leaf_of(f)->attempt.call = NULL;
  for (q = f->children.next; q != &f->children; q = q->next)
    forget_call(fy__queue_data(q, fy_frame_t, sibling));
}

static void unlink_child(fy_frame_t *child) {
  fy_frame_t *parent = child->parent;
  fy__queue_remove(&child->sibling);
  parent->nchildren--;
  child->parent = NULL;
}

void fy_frame_detach(fy_frame_t *child) {
  if (child == NULL || child->parent == NULL)
    return;
  unlink_child(child);
  forget_call(child);
  if (child->flags & FY__F_DONE) {
    /* Its delivery is queued or pending on its own hook: either path
     * frees it now that it has no parent. */
    return;
  }
  frame_cancel(child);
}

static void detach_children(fy_frame_t *f) {
  while (!fy__queue_empty(&f->children))
    fy_frame_detach(
        fy__queue_data(fy__queue_head(&f->children), fy_frame_t, sibling));
}

/* ---- making frames ----------------------------------------------------- */

/* Register the block |f| (|size| bytes) as the frame of |layer| of the
 * call's pipeline under |parent| (NULL: the root), carrying the tokens of
 * layers from .. layer - 1.  Every field is set here rather than zeroing
 * the block first: a memset of the header compiles to "rep stos", which
 * cost more than all these stores (docs/PERFORMANCE.md).  A new field of
 * fy_frame_s goes here. */
static FY__INLINE void frame_make(fy_frame_t *f, fy_call_t *call,
                                  fy_frame_t *parent, unsigned layer,
                                  unsigned from, uint64_t deadline,
                                  size_t size) {
  fy_pipeline_t *pl = call->pipeline;
  fy_ctx_t *ctx = pl->ctx;
  fy_policy_t *p = layer < pl->n ? pl->layers[layer] : NULL;

  f->task.queued = 0; /* the rest: defer_delivery() */
  fy__queue_init(&f->children);
  /* sibling and pnode are linked below, when the frame has a parent and a
   * policy; otherwise nothing ever reads them. */
  f->parent = NULL;
  f->call = call;
  f->pipeline = pl;
  f->policy = p;
  f->ctx = ctx;
  f->timer.slot = FY__DL_IDLE; /* the rest: frame_timer() */
  f->result = NULL;
  f->dtor = NULL;
  f->deadline = deadline;
  f->retry_after = 0;
  f->start_ns = 0;
  f->size = size;
  f->nchildren = 0;
  f->status = 0;
  f->hooks = 0;
  f->layer = layer;
  f->tok_from = from;
  f->tok_off = pl->layout.tok_off[from];
  ctx->nframes++;
  pl->nframes++;
  if (p != NULL) {
    f->flags = 0;
    /* The policy's state starts zeroed (policy.h). */
    memset((char *)f + FY__FRAME_HDR, 0, p->vt->frame_size);
    p->active++;
    fy__queue_insert_tail(&p->frames, &f->pnode);
    if (p->vt->progress != NULL)
      f->flags |= FY__F_HEARD;
  } else {
    f->flags = FY__F_LEAF;
    leaf_of(f)->attempt.data = NULL; /* the rest is set by start_leaf() */
  }
  if (parent != NULL) {
    f->parent = parent;
    f->flags |= parent->flags & FY__F_HEARD;
    fy__queue_insert_tail(&parent->children, &f->sibling);
    parent->nchildren++;
  } else {
    call->root = f;
  }
}

/* Undo frame_make() for a frame that refused at once: it is no frame any
 * more, but its block and the tokens in it stay. */
static void frame_unmake(fy_frame_t *f) {
  fy_ctx_t *ctx = f->ctx;
  detach_children(f);
  if (f->parent != NULL)
    unlink_child(f);
  else if (f->call != NULL && f->call->root == f)
    f->call->root = NULL;
  frame_unregister(f);
  if (ctx->flags & FY__CTX_CLOSING)
    fy__ctx_poke(ctx);
  drop_result(f); /* user code: last */
}

/* ---- admission ---------------------------------------------------------- */

/* The token of layer |l| in a token area whose first token is layer
 * |from|. */
static fy__token_t *token_at(const fy_pipeline_t *pl, char *area,
                             unsigned from, unsigned l) {
  return (fy__token_t *)(area + pl->layout.cum[l] - pl->layout.cum[from]);
}

static void *token_bytes(fy__token_t *t) { return (char *)t + FY__TOKEN_HDR; }

/* The admission layer |p| no longer holds token |t|. */
static void token_gone(fy_policy_t *p, fy__token_t *t) {
  fy__queue_remove(&t->node);
  p->active--;
}

/* Whether |p| answered that it takes an outcome over in a frame. */
static int takes_over(const fy_policy_t *p, int answer) {
  return answer == FY_ADMIT_WAIT && p->vt->child_done != NULL;
}

#define NO_LAYER UINT32_MAX

/* Nothing ran below: give back, innermost first, the tokens of layers
 * from .. to - 1 in |area|, refused with |status|.  Stops at a layer that
 * takes the refusal over in a frame, and returns it (its own token is
 * gone, the outer ones stay); else NO_LAYER. */
static unsigned release_tokens(fy_pipeline_t *pl, char *area, unsigned from,
                               unsigned to, int status) {
  while (to > from) {
    fy_policy_t *p = pl->layers[--to];
    fy__token_t *t = token_at(pl, area, from, to);
    int answer;
    token_gone(p, t);
    answer = p->vt->release(p, token_bytes(t), status);
    if (p->flags & FY__OBJ_CLOSING)
      fy__policy_poke(p);
    if (takes_over(p, answer))
      return to;
  }
  return NO_LAYER;
}

/* The work below |f| finished: settle, innermost first, the tokens it
 * carries, with its status.  Once per frame, when its outcome is handed
 * over (a late one too: a detached frame still settles).  Returns
 * NO_LAYER, or the layer that takes the outcome over in a frame; the
 * tokens outside it are then still carried by |f|. */
static unsigned settle_tokens(fy_frame_t *f) {
  fy_pipeline_t *pl = f->pipeline;
  char *area = (char *)f + f->tok_off;
  unsigned from = f->tok_from, l = f->layer, taker = NO_LAYER;
  f->tok_from = f->layer;
  f->hooks++;
  while (l > from) {
    fy_policy_t *p = pl->layers[--l];
    fy__token_t *t = token_at(pl, area, from, l);
    int answer;
    token_gone(p, t);
    answer = p->vt->settle(p, token_bytes(t), f->status);
    if (p->flags & FY__OBJ_CLOSING)
      fy__policy_poke(p);
    /* A detached frame's outcome is discarded: nothing takes it over. */
    if (takes_over(p, answer) && f->call != NULL) {
      f->tok_from = from;
      taker = l;
      break;
    }
  }
  f->hooks--;
  return taker;
}

/* Layer |l| takes over the finished work |f|.  |f|'s block becomes that
 * layer's frame, in the same place: its parent (and any pointer a policy
 * above keeps to its child) now sees the frame of layer |l|, which gets the
 * work's outcome through child_done as a finished child, and keeps the
 * tokens of the layers above |l|.  The block is large enough: the pipeline
 * counted every layer with frame hooks when it sized it.  Returns 1 when
 * the new frame finished inside child_done and must be delivered. */
static int take_over(fy_frame_t *f, unsigned l) {
  fy_pipeline_t *pl = f->pipeline;
  fy_policy_t *q = f->policy, *p = pl->layers[l];
  fy_frame_t *parent = f->parent;
  fy_frame_t work;

  /* What a child_done hook may read of a finished child. */
  memset(&work, 0, sizeof(work));
  fy__queue_init(&work.children);
  work.flags = (f->flags & (FY__F_LEAF | FY__F_CANCEL)) | FY__F_DONE;
  work.call = f->call;
  work.pipeline = pl;
  work.policy = q;
  work.ctx = f->ctx;
  work.result = f->result;
  work.dtor = f->dtor;
  work.retry_after = f->retry_after;
  work.status = f->status;
  work.layer = f->layer;
  work.parent = f;
  work.timer.slot = FY__DL_IDLE;
  leave_policy(f);
  /* Re-made in place: parent, sibling links, call, tokens and size stay. */
  fy__queue_init(&f->children);
  f->nchildren = 0;
  f->policy = p;
  f->layer = l;
  f->result = NULL;
  f->dtor = NULL;
  f->retry_after = 0;
  f->start_ns = 0;
  f->status = 0;
  f->timer.slot = FY__DL_IDLE;
  f->deadline = parent != NULL ? parent->deadline : FY_TIME_NEVER;
  /* A cancellation requested for the work, or for a frame above it while
   * the work was finished but not yet delivered (it reached nothing then),
   * holds for the frame that takes the work over: the caller gave up.  It
   * already ran its course, so the cancel hook does not run again. */
  f->flags = (f->flags & FY__F_CANCEL) || fy_frame_is_cancelled_above(parent)
                 ? FY__F_CANCEL | FY__F_CANCEL_RUN
                 : 0;
  if (parent != NULL)
    f->flags |= parent->flags & FY__F_HEARD;
  if (p->vt->progress != NULL)
    f->flags |= FY__F_HEARD;
  memset((char *)f + FY__FRAME_HDR, 0, p->vt->frame_size);
  p->active++;
  fy__queue_insert_tail(&p->frames, &f->pnode);

  f->hooks++;
  p->vt->child_done(p, f, &work, work.status);
  drop_result(&work); /* not adopted: destroyed */
  if (f->flags & FY__F_CANCEL)
    run_pending_cancel(f);
  if (--f->hooks > 0 || !(f->flags & FY__F_DELIVER))
    return 0;
  f->flags &= ~(unsigned)FY__F_DELIVER;
  return 1;
}

static void refuse_closed(fy_call_t *call, fy_policy_t *p) {
  fy_detail_t *d = &call->detail;
  call->flags |= FY__CALL_VERDICT;
  d->by_kind = p->vt->kind;
  d->by_name = p->name;
}

/* Run the admission layers from |from| on, their tokens in |block|, until
 * the first layer that needs a frame: a frame layer, the operation, or an
 * admission layer that makes the call wait.  Sets *layer to it and returns
 * 0; or sets *layer to the layer that refused and returns the refusal (the
 * tokens of the layers before it are still held). */
static int admit_layers(fy_call_t *call, fy_frame_t *parent,
                        fy_pipeline_t *pl, char *block, unsigned from,
                        unsigned *layer) {
  char *area = block + pl->layout.tok_off[from];
  unsigned l = from;
  int rc = 0;
  for (; l < pl->n; l++) {
    fy_policy_t *p = pl->layers[l];
    fy__token_t *t;
    if (p->flags & FY__OBJ_CLOSING) {
      refuse_closed(call, p);
      rc = FY_ECLOSED;
      break;
    }
    if (p->vt->admit == NULL)
      break;
    t = token_at(pl, area, from, l);
    rc = p->vt->admit(p, call, parent, token_bytes(t));
    if (rc > 0) {
      /* Waiting takes a frame, so only a policy with frame hooks may. */
      rc = rc == FY_ADMIT_WAIT && p->vt->start != NULL ? 0 : FY_EBADRESULT;
      break;
    }
    if (rc < 0)
      break;
    t->frame = (fy_frame_t *)block;
    fy__queue_insert_tail(&p->holders, &t->node);
    p->active++;
  }
  *layer = l;
  return rc;
}

/* ---- starting ---------------------------------------------------------- */

static FY__INLINE int start_leaf(fy_frame_t *f, fy_call_t *call,
                                 const fy_op_t *op, void *arg) {
  fy__leaf_t *leaf = leaf_of(f);
  fy_ctx_t *ctx = f->ctx;
  int rc;

  leaf->op = op != NULL ? op : call->op;
  leaf->attempt.arg = op != NULL ? arg : call->arg;
  leaf->attempt.call = call;
  leaf->attempt.index = call->detail.attempts++;
  leaf->attempt.deadline = f->deadline;
  /* The attempt's latency is only reported to listeners: skip the clock
   * read (the most expensive step of a bare attempt) when none listens. */
  if (FY__CTX_WANTS(ctx, FY_EV_ATTEMPT_DONE))
    f->start_ns = fy_ctx_hrtime(ctx);
  if (FY__CTX_WANTS(ctx, FY_EV_ATTEMPT_START)) {
    fy_event_t ev = {0};
    ev.type = FY_EV_ATTEMPT_START;
    ev.call = call;
    ev.attempt = leaf->attempt.index;
    fy_ctx_emit(ctx, &ev);
  }
  rc = leaf->op->start(&leaf->attempt, leaf->attempt.arg);
  if (rc > 0)
    rc = FY_EBADRESULT;
  /* A failure at start is the attempt's outcome, delivered like any other
   * (later, never inside the spawn that started it). */
  if (rc < 0 && !(f->flags & FY__F_DONE))
    fy_frame_done(f, rc);
  return 0;
}

/* Run the frame |f| just made: its start hook, or, for a frame made to
 * take over a refusal, child_done with that refusal (a frame finished in
 * there refuses too).  Returns 0 or the refusal. */
static FY__INLINE int frame_run(fy_frame_t *f, fy_call_t *call,
                                fy_frame_t *parent, const fy_op_t *op,
                                void *arg, int refused) {
  fy_policy_t *p = f->policy;
  int rc;
  f->hooks++;
  if (refused < 0) {
    p->vt->child_done(p, f, NULL, refused);
    /* Finished in there with the refusal itself, it passed the refusal on:
     * that is returned at once.  Any other ending is an outcome the layer
     * decided (a fallback that could not start, say), and a call cancelled
     * meanwhile (from a user callback) completes as fy_call_cancel()
     * promised: both are delivered through the callback. */
    rc = (f->flags & (FY__F_DONE | FY__F_CANCEL)) == FY__F_DONE &&
                 f->status == refused
             ? refused
             : 0;
    if (rc < 0)
      f->flags &= ~(unsigned)FY__F_DELIVER;
  } else {
    rc = p != NULL ? p->vt->start(p, f) : start_leaf(f, call, op, arg);
  }
  if (parent == NULL && (call->flags & FY__CALL_CANCEL)) {
    /* fy_call_cancel() from an admission hook, before the root existed. */
    call->flags &= ~(unsigned)FY__CALL_CANCEL;
    if (!(f->flags & FY__F_DONE))
      f->flags |= FY__F_CANCEL;
  }
  if (rc >= 0 && (f->flags & FY__F_CANCEL))
    run_pending_cancel(f); /* requested while start was on the stack */
  f->hooks--;
  return rc;
}

/* The end of a start that made |f|: deliver an outcome decided inside it. */
static FY__INLINE void start_made(fy_frame_t *f, fy_frame_t *parent) {
  if (!(f->flags & FY__F_DELIVER))
    return;
  f->flags &= ~(unsigned)FY__F_DELIVER;
  if (parent != NULL && f->parent == NULL)
    /* Detached during its own start (its parent finished meanwhile, e.g.
     * the call was cancelled from inside the operation's start): discard
     * it from a fresh stack, so that the child fy_frame_spawn() hands back
     * stays valid until the spawn has returned. */
    defer_delivery(f);
  else
    deliver(f);
}

/* A start refused with |rc| at |layer| (the admission layer that refused,
 * or the frame made there, already unmade): give the tokens back,
 * innermost first; a layer that takes the refusal over gets its frame in
 * the same block, which may refuse in turn. */
static FY__NOINLINE int start_refused(fy_call_t *call, fy_frame_t *parent,
                                      fy_frame_t *f, unsigned from,
                                      unsigned layer, uint64_t deadline,
                                      const fy_op_t *op, void *arg, int rc,
                                      fy_frame_t **out) {
  fy_pipeline_t *pl = call->pipeline;
  size_t size = pl->layout.block[from];
  char *area = (char *)f + pl->layout.tok_off[from];
  while (rc < 0) {
    layer = release_tokens(pl, area, from, layer, rc);
    if (layer == NO_LAYER) {
      fy__pool_give(&pl->ctx->pool, f, size);
      return rc;
    }
    frame_make(f, call, parent, layer, from, deadline, size);
    rc = frame_run(f, call, parent, op, arg, rc);
    if (rc < 0)
      frame_unmake(f); /* nothing will be delivered for this frame */
  }
  start_made(f, parent);
  *out = f;
  return 0;
}

/* Start a frame for |layer| of the call's pipeline under |parent|: run the
 * admission layers from there on, then make and start the first frame that
 * is needed. */
int fy__frame_start(fy_call_t *call, fy_frame_t *parent, unsigned layer,
                    uint64_t deadline, const fy_op_t *op, void *arg,
                    fy_frame_t **out) {
  fy_pipeline_t *pl = call->pipeline;
  unsigned from = layer;
  size_t size = pl->layout.block[from];
  fy_frame_t *f;
  int rc = 0;

  f = fy__pool_take(&pl->ctx->pool, size);
  if (f == NULL)
    return UV_ENOMEM;
#ifndef NDEBUG
  memset(f, 0xa5, size); /* a field left unset below shows in the tests */
#endif
  if (layer < pl->n) {
    rc = admit_layers(call, parent, pl, (char *)f, from, &layer);
    if (FY__UNLIKELY(rc < 0))
      return start_refused(call, parent, f, from, layer, deadline, op, arg,
                           rc, out);
  }
  frame_make(f, call, parent, layer, from, deadline, size);
  rc = frame_run(f, call, parent, op, arg, 0);
  if (FY__UNLIKELY(rc < 0)) {
    frame_unmake(f);
    return start_refused(call, parent, f, from, layer, deadline, op, arg, rc,
                         out);
  }
  start_made(f, parent);
  *out = f;
  return 0;
}

static inline int spawn(fy_frame_t *f, unsigned layer, const fy_op_t *op,
                        void *arg, fy_frame_t **child) {
  fy_frame_t *c = NULL;
  int rc;
  if (child != NULL)
    *child = NULL;
  if (f == NULL || (f->flags & FY__F_LEAF))
    return UV_EINVAL;
  if ((f->flags & (FY__F_DONE | FY__F_DETACHED)) || f->call == NULL)
    return FY_ECLOSED;
  /* Spawning counts as a hook: the child's outcome must not reach
   * child_done before this call has returned. */
  f->hooks++;
  rc = fy__frame_start(f->call, f, layer, f->deadline, op, arg, &c);
  if (rc == 0 && child != NULL)
    *child = c;
  leave_hook(f);
  return rc;
}

int fy_frame_spawn(fy_frame_t *f, fy_frame_t **child) {
  if (f == NULL)
    return UV_EINVAL;
  return spawn(f, f->layer + 1, NULL, NULL, child);
}

int fy_frame_spawn_op(fy_frame_t *f, const fy_op_t *op, void *arg,
                      fy_frame_t **child) {
  if (f == NULL || op == NULL || op->start == NULL) {
    if (child != NULL)
      *child = NULL;
    return UV_EINVAL;
  }
  return spawn(f, (unsigned)f->pipeline->n, op, arg, child);
}

const fy_call_opts_t *fy_frame_call_opts(const fy_frame_t *f) {
  static const fy_call_opts_t defaults;
  return f->call != NULL ? &f->call->opts : &defaults;
}

/* ---- finishing --------------------------------------------------------- */

static void complete_call(fy_frame_t *root);

/* Hand a finished frame's outcome to whoever waits for it, now if that is
 * safe, else from a fresh stack. */
static void deliver(fy_frame_t *f) {
  fy_frame_t *parent;
  fy_policy_t *pp;

  /* One level per turn: an outcome that finishes its parent climbs on in
   * this loop rather than through a recursion via leave_hook(). */
  for (;;) {
    if (f->hooks > 0) {
      f->flags |= FY__F_DELIVER;
      return;
    }
    parent = f->parent;
    if (parent != NULL ? parent->hooks > 0
                       : f->call != NULL && f->ctx->api_depth > 0) {
      defer_delivery(f);
      return;
    }
    /* The admission layers above count the outcome as it is handed over,
     * just before whoever waits for it sees it.  They run user code (a
     * breaker's state-change callback): look at everything again. */
    if (f->tok_from != f->layer) {
      unsigned taker = settle_tokens(f);
      if (taker != NO_LAYER && !take_over(f, taker))
        return; /* the layer that took it over goes on */
      continue;
    }
    if (parent == NULL)
      break;
    unlink_child(f);
    pp = parent->policy;
    parent->hooks++;
    pp->vt->child_done(pp, parent, f, f->status);
    frame_free(f);
    /* leave_hook(parent), its delivery being the next turn. */
    if (parent->flags & FY__F_CANCEL)
      run_pending_cancel(parent);
    if (--parent->hooks > 0 || !(parent->flags & FY__F_DELIVER))
      return;
    parent->flags &= ~(unsigned)FY__F_DELIVER;
    f = parent;
  }
  if (f->call == NULL) {
    frame_free(f); /* detached: the late outcome is discarded */
    return;
  }
  complete_call(f);
}

static FY__INLINE void note_attempt_done(fy_frame_t *f) {
  fy_ctx_t *ctx = f->ctx;
  fy__leaf_t *leaf = leaf_of(f);
  fy_call_t *call = f->call;

  if (call != NULL) {
    /* The operation's own outcome replaces any earlier verdict (the
     * detail is clean unless a policy claimed it since the call began). */
    fy_detail_t *d = &call->detail;
    if (call->flags & FY__CALL_VERDICT) {
      call->flags &= ~(unsigned)FY__CALL_VERDICT;
      d->cause = 0;
      d->by_kind = NULL;
      d->by_name = NULL;
      d->state = 0;
      memset(d->n, 0, sizeof(d->n));
      d->key[0] = '\0';
    }
    d->retry_after_ms = f->retry_after;
  }
  if (FY__CTX_WANTS(ctx, FY_EV_ATTEMPT_DONE)) {
    fy_event_t ev = {0};
    ev.type = FY_EV_ATTEMPT_DONE;
    ev.call = call;
    ev.status = f->status;
    ev.attempt = leaf->attempt.index;
    /* 0: the listener registered while this attempt was in flight. */
    ev.latency_ns = f->start_ns != 0 ? fy_ctx_hrtime(ctx) - f->start_ns : 0;
    ev.delay_ms = f->retry_after;
    fy_ctx_emit(ctx, &ev);
  }
}

int fy_frame_done(fy_frame_t *f, int status) {
  if (f == NULL)
    return UV_EINVAL;
  if (f->flags & FY__F_DONE)
    return UV_EALREADY;
  f->flags |= FY__F_DONE;
  f->status = status;
  if (f->timer.slot != FY__DL_IDLE)
    fy_deadline_stop(&f->timer);
  detach_children(f);
  if (f->flags & FY__F_LEAF)
    note_attempt_done(f);
  deliver(f);
  return 0;
}

/* One of |f|'s hooks returned.  Once none is left on the stack, run what
 * waited for that: a cancellation requested meanwhile, then the delivery of
 * an outcome decided meanwhile.  |f| may be gone afterwards. */
static void leave_hook(fy_frame_t *f) {
  if (f->flags & FY__F_CANCEL)
    run_pending_cancel(f);
  if (--f->hooks > 0)
    return;
  if (f->flags & FY__F_DELIVER) {
    f->flags &= ~(unsigned)FY__F_DELIVER;
    deliver(f);
  }
}

/* Run the cancel hook of |f| if cancellation was requested while another
 * of its hooks ran, now that only the caller's own (outermost) level is on
 * the stack.  Hooks of one frame never nest. */
static void run_pending_cancel(fy_frame_t *f) {
  fy_policy_t *p = f->policy;
  if (f->hooks != 1 ||
      (f->flags & (FY__F_CANCEL | FY__F_CANCEL_RUN | FY__F_DONE)) !=
          FY__F_CANCEL)
    return;
  f->flags |= FY__F_CANCEL_RUN;
  f->hooks++;
  if (f->flags & FY__F_LEAF) {
    fy__leaf_t *leaf = leaf_of(f);
    if (leaf->op->cancel != NULL)
      leaf->op->cancel(&leaf->attempt, leaf->attempt.arg);
  } else if (p->vt->cancel != NULL) {
    p->vt->cancel(p, f);
  } else if (!fy__queue_empty(&f->children)) {
    fy_frame_cancel_children(f);
  } else {
    fy_frame_done(f, UV_ECANCELED);
  }
  f->hooks--;
}

/* Request cancellation of |f|: its cancel hook runs now, or, when one of
 * its hooks is on the stack, as soon as that hook returns. */
static void frame_cancel(fy_frame_t *f) {
  if (f->flags & (FY__F_DONE | FY__F_CANCEL))
    return;
  f->flags |= FY__F_CANCEL;
  if (f->hooks > 0)
    return;
  f->hooks++;
  leave_hook(f);
}

void fy_frame_cancel_children(fy_frame_t *f) {
  fy__queue_t *q, *next;
  if (f == NULL)
    return;
  /* Children finishing now are queued (this frame is busy inside a hook,
   * or is marked busy here), so the list stays intact while it is walked. */
  f->hooks++;
  for (q = f->children.next; q != &f->children; q = next) {
    next = q->next;
    frame_cancel(fy__queue_data(q, fy_frame_t, sibling));
  }
  leave_hook(f);
}

int fy_frame_cancel(fy_frame_t *f) {
  if (f == NULL)
    return UV_EINVAL;
  if (f->flags & FY__F_DONE)
    return UV_EALREADY;
  frame_cancel(f);
  return 0;
}

static void on_frame_timer(fy_deadline_t *d) {
  fy_frame_t *f = fy_container_of(d, fy_frame_t, timer);
  fy_policy_t *p = f->policy;
  if ((f->flags & FY__F_DONE) || p == NULL || p->vt->deadline == NULL)
    return;
  f->hooks++;
  p->vt->deadline(p, f);
  leave_hook(f);
}

/* ---- frame accessors --------------------------------------------------- */

void *fy_frame_state(fy_frame_t *f) {
  if (f->flags & FY__F_LEAF)
    return NULL;
  return (char *)f + FY__FRAME_HDR;
}

fy_policy_t *fy_frame_policy(const fy_frame_t *f) { return f->policy; }
fy_ctx_t *fy_frame_ctx(const fy_frame_t *f) { return f->ctx; }
fy_call_t *fy_frame_call(const fy_frame_t *f) { return f->call; }
size_t fy_frame_children(const fy_frame_t *f) { return f->nchildren; }

int fy_frame_is_cancelled(const fy_frame_t *f) {
  return (f->flags & FY__F_CANCEL) != 0;
}

int fy_frame_is_cancelled_above(const fy_frame_t *f) {
  for (; f != NULL; f = f->parent)
    if (f->flags & FY__F_CANCEL)
      return 1;
  return 0;
}

static void drop_result(fy_frame_t *f) {
  void *result = f->result;
  fy_result_dtor dtor = f->dtor;
  f->result = NULL;
  f->dtor = NULL;
  if (result != NULL && dtor != NULL)
    dtor(result);
}

void fy_frame_adopt_result(fy_frame_t *f, fy_frame_t *child) {
  void *result;
  fy_result_dtor dtor;
  if (f == NULL || child == NULL || f == child)
    return;
  result = child->result;
  dtor = child->dtor;
  child->result = NULL;
  child->dtor = NULL;
  fy_frame_set_result(f, result, dtor);
}

void fy_frame_set_result(fy_frame_t *f, void *result, fy_result_dtor dtor) {
  drop_result(f);
  f->result = result;
  f->dtor = dtor;
}

uint64_t fy_frame_retry_after(const fy_frame_t *f) {
  return f->retry_after;
}
uint64_t fy_frame_deadline(const fy_frame_t *f) { return f->deadline; }

void fy_frame_set_deadline(fy_frame_t *f, uint64_t when_ms) {
  if (when_ms < f->deadline)
    f->deadline = when_ms;
}

int fy_frame_arm(fy_frame_t *f, uint64_t when_ms) {
  if (f == NULL || (f->flags & FY__F_LEAF))
    return UV_EINVAL;
  if (f->flags & FY__F_DONE)
    return FY_ECLOSED;
  return fy_deadline_start_at(frame_timer(f), when_ms);
}

int fy__frame_arm_lane(fy_frame_t *f, uint64_t when_ms, fy__lane_t *lane) {
  if (f->flags & FY__F_DONE)
    return FY_ECLOSED;
  return fy__lane_start(lane, frame_timer(f), when_ms);
}

void fy_frame_disarm(fy_frame_t *f) {
  if (f != NULL)
    fy_deadline_stop(&f->timer);
}

static fy_detail_t *claim(fy_detail_t *d, fy_policy_t *p) {
  d->cause = 0;
  d->state = 0;
  memset(d->n, 0, sizeof(d->n));
  d->key[0] = '\0';
  d->by_kind = p != NULL ? p->vt->kind : NULL;
  d->by_name = p != NULL ? p->name : NULL;
  return d;
}

fy_detail_t *fy_frame_verdict(fy_frame_t *f, fy_policy_t *p) {
  if (f->call == NULL)
    return claim(&f->ctx->scratch_detail, p);
  return fy_call_verdict(f->call, p);
}

fy_detail_t *fy_call_verdict(fy_call_t *call, fy_policy_t *p) {
  call->flags |= FY__CALL_VERDICT;
  return claim(&call->detail, p);
}

/* ---- attempts ---------------------------------------------------------- */

int fy_attempt_done(fy_attempt_t *a, int status) {
  if (a == NULL)
    return UV_EINVAL;
  if (status > 0)
    status = FY_EBADRESULT;
  return fy_frame_done(frame_of_attempt(a), status);
}

void fy_attempt_set_result(fy_attempt_t *a, void *result,
                           fy_result_dtor dtor) {
  fy_frame_t *f = frame_of_attempt(a);
  if (f->flags & FY__F_DONE) {
    if (result != NULL && dtor != NULL)
      dtor(result);
    return;
  }
  fy_frame_set_result(f, result, dtor);
}

void fy_attempt_set_retry_after(fy_attempt_t *a, uint64_t ms) {
  frame_of_attempt(a)->retry_after = ms;
}

uint64_t fy_attempt_remaining(const fy_attempt_t *a) {
  const fy_frame_t *f = frame_of_attempt(a);
  uint64_t now;
  if (a->deadline == FY_TIME_NEVER)
    return FY_TIME_NEVER;
  now = fy__ctx_now(f->ctx);
  return a->deadline > now ? a->deadline - now : 0;
}

int fy_attempt_is_cancelled(const fy_attempt_t *a) {
  return (frame_of_attempt(a)->flags & FY__F_CANCEL) != 0;
}

void fy_attempt_mark(fy_attempt_t *a) {
  fy_frame_t *leaf = frame_of_attempt(a);
  fy_frame_t *f, *up;
  /* A streaming body marks every chunk: with no progress hook above (the
   * common case) that must cost next to nothing. */
  if ((leaf->flags & (FY__F_DONE | FY__F_HEARD)) != FY__F_HEARD)
    return;
  leaf->hooks++;
  for (f = leaf->parent; f != NULL; f = up) {
    fy_policy_t *p = f->policy;
    unsigned before = f->flags;
    int stop;
    up = f->parent;
    if (p->vt->progress == NULL)
      continue;
    f->hooks++;
    p->vt->progress(p, f);
    /* Finished, or cancelled by its own hook: its ancestors learn of it
     * through delivery, and |f| may be gone once leave_hook() has run. */
    stop = (f->flags & ~before & (FY__F_DONE | FY__F_CANCEL)) != 0;
    leave_hook(f);
    if (stop)
      break;
  }
  leave_hook(leaf);
}

/* ---- calls ------------------------------------------------------------- */

static void complete_call(fy_frame_t *root) {
  fy_call_t *call = root->call;
  fy_pipeline_t *pl = root->pipeline;
  fy_ctx_t *ctx = root->ctx;
  int status = root->status;
  fy_call_t *saved_call = ctx->delivering;
  void *saved_result = ctx->delivering_result;
  fy_result_dtor saved_dtor = ctx->delivering_dtor;
  void *result = root->result;
  fy_result_dtor dtor = root->dtor;

  root->result = NULL;
  root->dtor = NULL;
  root->call = NULL;
  call->root = NULL;
  if (call->flags & FY__CALL_MEASURED)
    call->detail.elapsed_ns = fy_ctx_hrtime(ctx) - call->start_ns;
  call->flags &= ~(unsigned)(FY__CALL_ACTIVE | FY__CALL_MEASURED);
  call->status = status;
  fy__queue_remove(&call->node);
  if (call->opts.scope != NULL)
    fy__queue_remove(&call->scope_node);
  pl->inflight--;
  ctx->ncalls--;
  frame_free(root);

  if (FY__CTX_WANTS(ctx, FY_EV_CALL_DONE)) {
    fy_event_t ev = {0};
    ev.type = FY_EV_CALL_DONE;
    ev.call = call;
    ev.status = status;
    ev.attempt = call->detail.attempts;
    ev.latency_ns = call->detail.elapsed_ns;
    fy_ctx_emit(ctx, &ev);
  }

  ctx->delivering = call;
  ctx->delivering_result = result;
  ctx->delivering_dtor = dtor;
  call->cb(call, status);
  /* |call| may be gone now; only the context is touched. */
  result = ctx->delivering_result;
  dtor = ctx->delivering_dtor;
  ctx->delivering = saved_call;
  ctx->delivering_result = saved_result;
  ctx->delivering_dtor = saved_dtor;
  if (result != NULL && dtor != NULL)
    dtor(result);
}

static void emit_refused(fy_ctx_t *ctx, fy_call_t *call, int status) {
  fy_event_t ev = {0};
  if (!FY__CTX_WANTS(ctx, FY_EV_CALL_REFUSED))
    return;
  ev.type = FY_EV_CALL_REFUSED;
  ev.call = call;
  ev.status = status;
  ev.policy_kind = call->detail.by_kind;
  ev.policy_name = call->detail.by_name;
  fy_ctx_emit(ctx, &ev);
}

int fy_call_start(fy_call_t *call, fy_pipeline_t *pl, const fy_op_t *op,
                  void *arg, fy_call_cb cb) {
  return fy_call_start_opts(call, pl, op, arg, NULL, cb);
}

int fy_call_start_opts(fy_call_t *call, fy_pipeline_t *pl, const fy_op_t *op,
                       void *arg, const fy_call_opts_t *opts, fy_call_cb cb) {
  fy_ctx_t *ctx;
  fy_frame_t *root;
  int rc;

  if (call == NULL || pl == NULL || op == NULL || op->start == NULL ||
      cb == NULL)
    return UV_EINVAL;
  assert(pl->magic == FY__MAGIC_PIPELINE);
  if (call->flags & FY__CALL_ACTIVE)
    return UV_EBUSY;
  ctx = pl->ctx;
  fy__detail_clear(&call->detail);
  call->status = 0;
  if (opts != NULL)
    call->opts = *opts;
  else
    memset(&call->opts, 0, sizeof(call->opts));
  if ((pl->flags & FY__OBJ_CLOSING) || (ctx->flags & FY__CTX_CLOSING))
    rc = FY_ECLOSED;
  else if (call->opts.scope != NULL)
    rc = fy__scope_join(call->opts.scope, call);
  else
    rc = 0;
  if (rc != 0) {
    call->status = rc;
    emit_refused(ctx, call, rc);
    return rc;
  }
  call->cb = cb;
  call->pipeline = pl;
  call->op = op;
  call->arg = arg;
  call->root = NULL;
  call->flags = FY__CALL_ACTIVE;
  /* The clock is read only when the latency is wanted (call.h). */
  if ((call->opts.flags & FY_CALL_MEASURE) || (ctx->flags & FY__CTX_MEASURE) ||
      FY__CTX_WANTS(ctx, FY_EV_CALL_DONE)) {
    call->flags |= FY__CALL_MEASURED;
    call->start_ns = fy_ctx_hrtime(ctx);
  }
  fy__queue_insert_tail(&pl->calls, &call->node);
  pl->inflight++;
  ctx->ncalls++;

  ctx->api_depth++;
  rc = fy__frame_start(call, NULL, 0, FY_TIME_NEVER, NULL, NULL, &root);
  ctx->api_depth--;
  if (rc == 0)
    return 0;

  fy__queue_remove(&call->node);
  if (call->opts.scope != NULL)
    fy__queue_remove(&call->scope_node);
  pl->inflight--;
  ctx->ncalls--;
  call->flags = 0;
  call->status = rc;
  fy__pipeline_poke(pl);
  fy__ctx_poke(ctx);
  emit_refused(ctx, call, rc);
  return rc;
}

int fy_call_cancel(fy_call_t *call) {
  fy_ctx_t *ctx;
  if (call == NULL || !(call->flags & FY__CALL_ACTIVE))
    return UV_EINVAL;
  if (call->root == NULL) {
    /* Active without a root: an admission hook of its start is running.
     * The root frame is cancelled as soon as it exists. */
    call->flags |= FY__CALL_CANCEL;
    return 0;
  }
  if (call->root->flags & FY__F_DONE)
    return UV_EBUSY;
  ctx = call->pipeline->ctx;
  ctx->api_depth++;
  frame_cancel(call->root);
  ctx->api_depth--;
  return 0;
}

int fy_call_is_active(const fy_call_t *call) {
  return call != NULL && (call->flags & FY__CALL_ACTIVE) != 0;
}

void *fy_call_result(const fy_call_t *call) {
  fy_ctx_t *ctx;
  if (call == NULL || call->pipeline == NULL)
    return NULL;
  ctx = call->pipeline->ctx;
  return ctx->delivering == call ? ctx->delivering_result : NULL;
}

void *fy_call_take_result(fy_call_t *call, fy_result_dtor *dtor) {
  fy_ctx_t *ctx;
  void *result;
  if (dtor != NULL)
    *dtor = NULL;
  if (call == NULL || call->pipeline == NULL)
    return NULL;
  ctx = call->pipeline->ctx;
  if (ctx->delivering != call)
    return NULL;
  result = ctx->delivering_result;
  if (dtor != NULL)
    *dtor = ctx->delivering_dtor;
  ctx->delivering_result = NULL;
  ctx->delivering_dtor = NULL;
  return result;
}
