/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * The README's example: one call through a pipeline, around an operation
 * that completes on the next loop iteration. */
#include <stdio.h>

#include "fortify.h"

static fy_ctx_t *ctx;
static fy_deadline_t work;

/* The operation: start the work, report its outcome exactly once. */
static void on_work_done(fy_deadline_t *d) {
  fy_attempt_done(d->data, 0);
}

static int work_start(fy_attempt_t *attempt, void *arg) {
  (void)arg;
  work.data = attempt;
  fy_deadline_init(ctx, &work, on_work_done);
  return fy_deadline_start(&work, 10); /* "I/O" that takes 10 ms */
}

static void work_cancel(fy_attempt_t *attempt, void *arg) {
  (void)arg;
  fy_deadline_stop(&work);
  fy_attempt_done(attempt, UV_ECANCELED);
}

static const fy_op_t work_op = {work_start, work_cancel};

static void on_call_done(fy_call_t *call, int status) {
  printf("call finished: %s after %u attempt(s)\n", fy_strerror(status),
         call->detail.attempts);
}

int main(void) {
  uv_loop_t loop;
  fy_policy_t *layer;
  fy_pipeline_t *pipeline;
  fy_call_t call;
  int rc;

  uv_loop_init(&loop);
  fy_ctx_new(&loop, NULL, &ctx);
  fy_passthrough_new(ctx, "edge", &layer);
  fy_pipeline_new(ctx, &layer, 1, &pipeline);

  rc = fy_call_start(&call, pipeline, &work_op, NULL, on_call_done);
  if (rc != 0) /* refused at once: the callback will not run */
    printf("refused: %s\n", fy_strerror(rc));

  uv_run(&loop, UV_RUN_DEFAULT);
  fy_ctx_close(ctx, NULL, NULL); /* closes the pipeline and policy too */
  uv_run(&loop, UV_RUN_DEFAULT);
  return uv_loop_close(&loop);
}
