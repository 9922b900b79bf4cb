/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * A bundle: an object made of parts (policies and a pipeline) that it
 * closes together, as a preset or the server guard does.  The bundle is
 * attached to the context, so that the context frees it if its user never
 * closes it (the context closes the parts itself), and it closes its parts
 * through one close group, calling its user back once they are all gone.
 * Only public API underneath.  Not API. */
#ifndef FY_BUNDLE_H
#define FY_BUNDLE_H

#include "fortify.h"

typedef struct fy__bundle_s fy__bundle_t;

/* Close every part that exists.  With |g|, give each close function
 * fy_close_group_cb and |g|, and hand what it returned to
 * fy__bundle_track(); with |g| NULL (a construction that failed), close
 * them with no callback. */
typedef void (*fy__bundle_parts_fn)(fy__bundle_t *b, fy_close_group_t *g);

struct fy__bundle_s {
  fy_attachment_t attach; /* freed by the context if never closed */
  fy_close_group_t group; /* the parts' close callbacks */
  fy__bundle_parts_fn close_parts;
  void *obj;              /* the object holding the bundle (fy_malloc'd):
                             what close_cb receives and what is freed */
  int closing;            /* fy__bundle_close() was called */
  fy_close_cb close_cb;
  void *close_ud;
};

/* Attach |b|, embedded in |obj|, to |ctx|.  0, or what fy_ctx_attach()
 * returned (nothing is freed then). */
int fy__bundle_attach(fy__bundle_t *b, fy_ctx_t *ctx, void *obj,
                      fy__bundle_parts_fn close_parts);

/* A construction failed after fy__bundle_attach(): close the parts made
 * so far, without callbacks, and free the object. */
void fy__bundle_abandon(fy__bundle_t *b);

/* The bundle's close: every part, then |cb| with the object, then the
 * object is freed.  0; FY_ECLOSED when called twice, or when a part was
 * closing already (the context is): the context then frees the object
 * once every part is gone, and |cb| never runs. */
int fy__bundle_close(fy__bundle_t *b, fy_close_cb cb, void *user_data);

/* What one part's close returned, counted by |g| when there is one. */
void fy__bundle_track(fy_close_group_t *g, int rc);

#endif /* FY_BUNDLE_H */
