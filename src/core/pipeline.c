/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * Pipelines: the layers a call goes through, and the layout of the memory
 * each call takes from the freelists. */
#include "internal.h"


static int is_admission(const fy_policy_t *p) { return p->vt->admit != NULL; }

/* Bytes of a frame for |layer| (the operation's attempt below the last). */
static size_t frame_base(const fy_pipeline_t *pl, size_t layer) {
  if (layer >= pl->n)
    return FY__ROUND_UP(sizeof(fy__leaf_t), FY__ALIGN);
  return FY__ROUND_UP(FY__FRAME_HDR + pl->layers[layer]->vt->frame_size,
                      FY__ALIGN);
}

void fy__layout_build(fy_pipeline_t *pl) {
  fy__layout_t *lo = &pl->layout;
  size_t from, l;
  lo->cum[0] = 0;
  for (l = 0; l < pl->n; l++) {
    const fy_policy_t *p = pl->layers[l];
    size_t slot = is_admission(p)
                      ? FY__TOKEN_HDR + FY__ROUND_UP(p->vt->token_size, 8)
                      : 0;
    lo->cum[l + 1] = lo->cum[l] + (uint32_t)slot;
  }
  /* A block started at |from| holds the frame of the first frame layer at
   * or below it, or of an admission layer on the way that makes the call
   * wait: room for the largest of them, then the tokens. */
  for (from = 0; from <= pl->n; from++) {
    size_t base = 0, end = from;
    for (;;) {
      int last = end >= pl->n || !is_admission(pl->layers[end]);
      /* An admission layer without frame hooks never has a frame. */
      if (last || pl->layers[end]->vt->child_done != NULL) {
        size_t b = frame_base(pl, end);
        if (b > base)
          base = b;
      }
      if (last)
        break;
      end++;
    }
    lo->tok_off[from] = (uint32_t)base;
    lo->block[from] = (uint32_t)(base + lo->cum[end] - lo->cum[from]);
  }
}

int fy_pipeline_new(fy_ctx_t *ctx, fy_policy_t *const *policies, size_t n,
                    fy_pipeline_t **out) {
  fy_pipeline_t *pl;
  size_t i;
  if (out == NULL)
    return UV_EINVAL;
  *out = NULL;
  if (ctx == NULL || n > FY_PIPELINE_MAX || (n > 0 && policies == NULL))
    return UV_EINVAL;
  for (i = 0; i < n; i++) {
    if (policies[i] == NULL || policies[i]->ctx != ctx)
      return UV_EINVAL;
    if (policies[i]->flags & FY__OBJ_CLOSING)
      return FY_ECLOSED;
  }
  if (ctx->flags & FY__CTX_CLOSING)
    return FY_ECLOSED;
  pl = fy__calloc(1, sizeof(*pl));
  if (pl == NULL)
    return UV_ENOMEM;
  pl->magic = FY__MAGIC_PIPELINE;
  pl->ctx = ctx;
  pl->n = n;
  for (i = 0; i < n; i++) {
    pl->layers[i] = policies[i];
    policies[i]->refs++;
  }
  fy__layout_build(pl);
  fy__queue_init(&pl->calls);
  fy__queue_insert_tail(&ctx->pipelines, &pl->node);
  pl->close_task.run = fy__pipeline_close_task;
  *out = pl;
  return 0;
}

size_t fy_pipeline_inflight(const fy_pipeline_t *pl) { return pl->inflight; }
size_t fy_pipeline_size(const fy_pipeline_t *pl) { return pl->n; }
fy_ctx_t *fy_pipeline_ctx(const fy_pipeline_t *pl) { return pl->ctx; }

