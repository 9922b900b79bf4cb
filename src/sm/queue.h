/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * Intrusive circular doubly linked lists.  A head is a node linked to
 * itself.  Everything is static inline; nothing allocates. */
#ifndef FY_QUEUE_H
#define FY_QUEUE_H

#include "fortify/common.h"

typedef fy__qnode_t fy__queue_t;

#define fy__queue_data(node, type, member) fy_container_of(node, type, member)

static inline void fy__queue_init(fy__queue_t *q) {
  q->next = q;
  q->prev = q;
}

static inline int fy__queue_empty(const fy__queue_t *q) {
  return q->next == q;
}

static inline fy__queue_t *fy__queue_head(const fy__queue_t *q) {
  return q->next;
}

static inline void fy__queue_insert_tail(fy__queue_t *q, fy__queue_t *n) {
  n->next = q;
  n->prev = q->prev;
  n->prev->next = n;
  q->prev = n;
}

static inline void fy__queue_insert_head(fy__queue_t *q, fy__queue_t *n) {
  n->next = q->next;
  n->prev = q;
  n->next->prev = n;
  q->next = n;
}

/* Unlink |n| and leave it self-linked, so a second remove is harmless. */
static inline void fy__queue_remove(fy__queue_t *n) {
  n->prev->next = n->next;
  n->next->prev = n->prev;
  n->next = n;
  n->prev = n;
}

/* Move every node of |from| to the tail of |to|; |from| ends empty. */
static inline void fy__queue_move_tail(fy__queue_t *from, fy__queue_t *to) {
  if (fy__queue_empty(from))
    return;
  from->next->prev = to->prev;
  to->prev->next = from->next;
  from->prev->next = to;
  to->prev = from->prev;
  fy__queue_init(from);
}

#endif /* FY_QUEUE_H */
