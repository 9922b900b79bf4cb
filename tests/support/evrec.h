/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * Test support: an event recorder.  A listener that copies every event it
 * receives into an array (with the policy's kind and name copied too, so
 * they stay readable after the callback), and helpers to count and find
 * events by type. */
#ifndef FY_TEST_EVREC_H
#define FY_TEST_EVREC_H

#include <fortify.h>

#define EVREC_MAX 256

typedef struct evrec_s evrec_t;
/* Runs inside the listener, after |ev| was recorded as rec->ev[rec->n-1]. */
typedef void (*evrec_hook_fn)(evrec_t *rec, const fy_event_t *ev);

struct evrec_s {
  fy_event_t ev[EVREC_MAX]; /* policy_kind/policy_name point into kind/name */
  char kind[EVREC_MAX][16];
  char name[EVREC_MAX][32];
  char key[EVREC_MAX][72];  /* ev[i].key points here when it was set */
  unsigned n;               /* events recorded */
  fy_listener_t *listener;
  evrec_hook_fn hook;       /* optional */
  void *data;               /* for the test */
};

/* Zero |rec| and listen on |ctx| to the event types in |mask|, asserting
 * success. */
void evrec_listen(evrec_t *rec, fy_ctx_t *ctx, uint32_t mask);
/* The listener itself (user_data: an evrec_t), for fy_ctx_listen(). */
void evrec_cb(fy_ctx_t *ctx, const fy_event_t *ev, void *user_data);

/* Events of |type| recorded so far. */
unsigned evrec_count(const evrec_t *rec, fy_event_type_t type);
/* The |k|th (0-based) recorded event of |type|, or NULL. */
const fy_event_t *evrec_nth(const evrec_t *rec, fy_event_type_t type,
                            unsigned k);

#endif /* FY_TEST_EVREC_H */
