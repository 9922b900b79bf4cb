/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * op.bare, the hand-written baseline every pipelined bench is compared
 * with: no fortify.  What a user writes by hand: an operation as a struct
 * of start/cancel function pointers, a request that records the attempt,
 * and a completion callback called through a function pointer.  One op =
 * start (the operation records the attempt) + completion from the bench
 * loop.  Shared by bench/op.c and bench/patterns.c, so that each binary
 * measures its own op.bare interleaved with the benches it compares to it
 * (bench_set_t in bench.h). */
#ifndef FY_BENCH_BARE_H
#define FY_BENCH_BARE_H

#include "bench.h"

typedef struct bare_req_s bare_req_t;

typedef struct bare_op_s {
  int (*start)(bare_req_t *req, void *arg);
  void (*cancel)(bare_req_t *req, void *arg);
} bare_op_t;

typedef void (*bare_cb)(bare_req_t *req, int status);

struct bare_req_s {
  void *data;
  const bare_op_t *op;
  void *arg;
  bare_cb cb;
  unsigned attempts;
  int active;
  int status;
};

/* Not inlined into the bench loop: the fortify entry points live in another
 * object file, so the baseline pays calls as well. */
__attribute__((noinline, noclone)) static int
bare_start(bare_req_t *req, const bare_op_t *op, void *arg, bare_cb cb) {
  int rc;
  if (req->active)
    return UV_EBUSY;
  req->op = op;
  req->arg = arg;
  req->cb = cb;
  req->attempts++;
  req->active = 1;
  rc = op->start(req, arg);
  if (rc < 0)
    req->active = 0;
  return rc;
}

__attribute__((noinline, noclone)) static void bare_done(bare_req_t *req,
                                                         int status) {
  if (!req->active)
    return;
  req->active = 0;
  req->status = status;
  req->cb(req, status);
}

typedef struct bare_state_s {
  bare_req_t req;
  bare_req_t *held; /* the attempt under way */
  const bare_op_t *op;
  uint64_t done;
  int rc;
} bare_state_t;

static int bare_op_start(bare_req_t *req, void *arg) {
  bare_state_t *st = arg;
  st->held = req;
  return 0;
}

static void bare_op_cancel(bare_req_t *req, void *arg) {
  (void)arg;
  bare_done(req, UV_ECANCELED);
}

static const bare_op_t bare_op = {bare_op_start, bare_op_cancel};

static void bare_on_done(bare_req_t *req, int status) {
  bare_state_t *st = req->data;
  (void)status;
  st->done++;
}

static void bare_loop(void *arg, uint64_t n) {
  bare_state_t *st = arg;
  const bare_op_t *op = st->op;
  uint64_t i;
  int rc = 0;
  /* The table is opaque to the optimiser, as fy_op_t is to the library. */
  BENCH_OPAQUE(op);
  for (i = 0; i < n; i++) {
    rc |= bare_start(&st->req, op, st, bare_on_done);
    bare_done(st->held, 0);
  }
  st->rc |= rc;
}

/* bench_add() hooks; |arg| is a bare_state_t. */
static void bare_setup(void *arg) {
  bare_state_t *st = arg;
  memset(st, 0, sizeof(*st));
  st->req.data = st;
  st->op = &bare_op;
}

static void bare_teardown(void *arg) {
  bare_state_t *st = arg;
  BENCH_CHECK(st->rc == 0);
  /* attempts is an unsigned: compare modulo its width. */
  BENCH_CHECK((unsigned)st->done == st->req.attempts);
}

#endif /* FY_BENCH_BARE_H */
