/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * Bundles of parts closed together (bundle.h). */
#include "bundle.h"

static void bundle_free(fy__bundle_t *b) {
  fy_ctx_detach(&b->attach);
  fy_free(b->obj);
}

/* Never closed by its user, or its close returned FY_ECLOSED: the
 * context, which closed every part, frees it at its end. */
static void on_ctx_gone(fy_attachment_t *attach) {
  fy__bundle_t *b = fy_container_of(attach, fy__bundle_t, attach);
  fy_free(b->obj);
}

static void on_parts_closed(fy_close_group_t *g) {
  fy__bundle_t *b = fy_container_of(g, fy__bundle_t, group);
  if (b->close_cb != NULL)
    b->close_cb(b->obj, b->close_ud);
  bundle_free(b);
}

int fy__bundle_attach(fy__bundle_t *b, fy_ctx_t *ctx, void *obj,
                      fy__bundle_parts_fn close_parts) {
  b->obj = obj;
  b->close_parts = close_parts;
  b->closing = 0;
  b->close_cb = NULL;
  b->close_ud = NULL;
  return fy_ctx_attach(ctx, &b->attach, NULL, on_ctx_gone);
}

void fy__bundle_abandon(fy__bundle_t *b) {
  b->close_parts(b, NULL);
  bundle_free(b);
}

void fy__bundle_track(fy_close_group_t *g, int rc) {
  if (g != NULL)
    (void)fy_close_group_add(g, rc);
}

int fy__bundle_close(fy__bundle_t *b, fy_close_cb cb, void *user_data) {
  if (b->closing)
    return FY_ECLOSED;
  b->closing = 1;
  b->close_cb = cb;
  b->close_ud = user_data;
  fy_close_group_init(&b->group);
  b->close_parts(b, &b->group);
  if (fy_close_group_wait(&b->group, on_parts_closed) != 0) {
    /* A part was already closing (the context is, or it was closed on its
     * own): as for any close that fails, nothing is freed and the callback
     * will not run; the bundle stays attached, and the context frees it
     * once every part is gone. */
    b->close_cb = NULL;
    return FY_ECLOSED;
  }
  return 0;
}
