/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * Cancellation scopes: a list of the calls in flight started in a scope,
 * and a tree of scopes, so that one fy_scope_cancel() reaches them all.
 * A call joins its scope in fy_call_start_opts() and leaves it when it
 * completes or is refused (frame.c). */
#include "internal.h"

enum { SCOPE_CANCELLED = 1u << 0 };

int fy_scope_init(fy_scope_t *s, fy_scope_t *parent) {
  if (s == NULL || s == parent)
    return UV_EINVAL;
  s->data = NULL;
  fy__queue_init(&s->calls);
  fy__queue_init(&s->children);
  fy__queue_init(&s->node);
  s->parent = parent;
  s->flags = 0;
  if (parent != NULL) {
    fy__queue_insert_tail(&parent->children, &s->node);
    if (parent->flags & SCOPE_CANCELLED)
      s->flags |= SCOPE_CANCELLED;
  }
  return 0;
}

int fy_scope_is_cancelled(const fy_scope_t *s) {
  return s != NULL && (s->flags & SCOPE_CANCELLED) != 0;
}

size_t fy_scope_calls(const fy_scope_t *s) {
  const fy__queue_t *q;
  size_t n = 0;
  if (s == NULL)
    return 0;
  for (q = s->calls.next; q != &s->calls; q = q->next)
    n++;
  return n;
}

/* Mark the whole subtree first, so that a call started from a cancel hook
 * below, in any scope of it, is already refused; then cancel the calls.
 * fy_call_cancel() defers every completion, so the lists stay intact while
 * they are walked. */
static void mark(fy_scope_t *s) {
  fy__queue_t *q;
  s->flags |= SCOPE_CANCELLED;
  for (q = s->children.next; q != &s->children; q = q->next)
    mark(fy__queue_data(q, fy_scope_t, node));
}

static void cancel_calls(fy_scope_t *s) {
  fy__queue_t *q;
  for (q = s->calls.next; q != &s->calls; q = q->next)
    fy_call_cancel(fy__queue_data(q, fy_call_t, scope_node));
  for (q = s->children.next; q != &s->children; q = q->next)
    cancel_calls(fy__queue_data(q, fy_scope_t, node));
}

int fy_scope_cancel(fy_scope_t *s) {
  if (s == NULL)
    return UV_EINVAL;
  if (s->flags & SCOPE_CANCELLED)
    return UV_EALREADY;
  mark(s);
  cancel_calls(s);
  return 0;
}

int fy_scope_fini(fy_scope_t *s) {
  if (s == NULL)
    return 0;
  if (!fy__queue_empty(&s->calls) || !fy__queue_empty(&s->children))
    return UV_EBUSY;
  fy__queue_remove(&s->node);
  s->parent = NULL;
  return 0;
}

int fy__scope_join(fy_scope_t *s, fy_call_t *call) {
  if (s->flags & SCOPE_CANCELLED)
    return UV_ECANCELED;
  fy__queue_insert_tail(&s->calls, &call->scope_node);
  return 0;
}
