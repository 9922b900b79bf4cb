/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * The allocator hook and the per-context freelists: every allocation goes
 * through the hook, nothing is allocated per call in steady state (rule 6),
 * everything is returned at close, and the internal helpers refuse what
 * they must. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "internal.h"

static probe_t P;
static top_t T;
static tcall_t C;

TestSuite(alloc);

Test(alloc, replace_rejects_null_functions) {
  cr_assert_eq(fy_replace_allocator(NULL, realloc, calloc, free), UV_EINVAL);
  cr_assert_eq(fy_replace_allocator(malloc, NULL, calloc, free), UV_EINVAL);
  cr_assert_eq(fy_replace_allocator(malloc, realloc, NULL, free), UV_EINVAL);
  cr_assert_eq(fy_replace_allocator(malloc, realloc, calloc, NULL), UV_EINVAL);
  /* The rejected calls changed nothing: the default allocator still
   * serves the library (nothing reaches the counting one). */
  memset(&FA, 0, sizeof(FA));
  fx_init(&FX, 0);
  fx_finish(&FX);
  cr_assert_eq(FA.requests, 0);
}

static unsigned heard;
static void quiet(fy_ctx_t *ctx, const fy_event_t *ev, void *ud) {
  (void)ctx;
  (void)ev;
  (void)ud;
  heard++;
}

Test(alloc, everything_goes_through_the_hook_and_comes_back) {
  fy_pipeline_t *pl;
  long after_ctx;
  fa_install(-1);
  fx_init(&FX, 0);
  cr_assert_gt(FA.live, 0, "the context was not allocated by the hook");
  after_ctx = FA.requests;
  pl = fx_pipeline(&FX, 2, fx_probe(&FX, &P, "p"), fx_passthrough(&FX, "t"));
  cr_assert_eq(FA.requests, after_ctx + 3, "policies and pipeline");
  cr_assert_eq(fy_ctx_listen(FX.ctx, FY_EV_ALL, quiet, NULL, NULL), 0);
  cr_assert_eq(FA.requests, after_ctx + 4, "listener");
  top_script(&T, TOP_SYNC, 0);
  cr_assert_eq(tcall_start(&C, pl, &top_op_nocancel, &T), 0);
  cr_assert_eq(FA.requests, after_ctx + 7, "one block per frame");
  fx_advance(&FX, 0);
  cr_assert_eq(C.ncb, 1);
  cr_assert_gt(heard, 0);
  fx_finish(&FX);
  cr_assert_eq(FA.live, 0, "%ld blocks leaked", FA.live);
  cr_assert_eq(FA.frees, FA.requests);
  fa_restore();
}

Test(alloc, no_allocation_per_call_in_steady_state) {
  fy_pipeline_t *pl;
  fy_ctx_stats_t st;
  long before, live_before;
  int i;
  fa_install(-1);
  fx_init(&FX, 0);
  pl = fx_pipeline(&FX, 3, fx_probe(&FX, &P, "p"), fx_passthrough(&FX, "t"),
                   fx_passthrough(&FX, "u"));
  top_script(&T, TOP_SYNC, 0);
  for (i = 0; i < 10; i++) { /* warm up */
    cr_assert_eq(tcall_start(&C, pl, &top_op_nocancel, &T), 0);
    fx_advance(&FX, 0);
  }
  fy_ctx_stats(FX.ctx, &st);
  before = FA.requests;
  live_before = FA.live;
  for (i = 0; i < 200; i++) {
    cr_assert_eq(tcall_start(&C, pl, &top_op_nocancel, &T), 0);
    fx_advance(&FX, 0);
    cr_assert_eq(C.status, 0);
  }
  cr_assert_eq(C.ncb, 210);
  if (st.pool_cached > 0) {
    /* Freelists on: not one allocation. */
    cr_assert_eq(FA.requests, before, "%ld allocations for 200 calls",
                 FA.requests - before);
    cr_assert_eq(st.pool_cached, 4, "one block per frame of one call");
  } else {
    /* Freelists bypassed (ASan, FY_NO_POOL): balanced at least. */
    cr_assert_eq(FA.requests - before, 200 * 4);
  }
  cr_assert_eq(FA.live, live_before);
  fx_finish(&FX);
  cr_assert_eq(FA.live, 0);
  fa_restore();
}

static void clobber_free(void *p) {
  errno = EXDEV;
  fa_free(p);
}

Test(alloc, internal_helpers_refuse_and_preserve_errno) {
  void *p;
  fa_install(-1);
  cr_assert_null(fy__malloc(0));
  cr_assert_null(fy__calloc(0, 8));
  cr_assert_null(fy__calloc(8, 0));
  cr_assert_null(fy__calloc((size_t)-1 / 2, 4)); /* overflow */
  cr_assert_eq(FA.requests, 0, "the hook saw a request it must not");
  fy__free(NULL);
  cr_assert_eq(FA.frees, 0);

  cr_assert_eq(fy_replace_allocator(fa_malloc, fa_realloc, fa_calloc,
                                    clobber_free),
               0);
  p = fy__malloc(10);
  cr_assert_not_null(p);
  errno = ENOENT;
  fy__free(p);
  cr_assert_eq(errno, ENOENT, "fy__free() clobbered errno");
  cr_assert_eq(FA.live, 0);
  fa_restore();
}

Test(alloc, freelists_hand_back_zeroed_blocks_and_drain) {
  fy__pool_t pool;
  unsigned char *a, *b, *big;
  size_t i;
  fa_install(-1);
  memset(&pool, 0, sizeof(pool));
  a = fy__pool_get(&pool, 100);
  cr_assert_not_null(a);
  memset(a, 0xEE, 128); /* the whole 128-byte class */
  fy__pool_put(&pool, a, 100);
  b = fy__pool_get(&pool, 120); /* same class */
  cr_assert_not_null(b);
  for (i = 0; i < 120; i++) /* the requested size is zeroed */
    cr_assert_eq(b[i], 0, "byte %zu not zeroed", i);
  if (FY__POOL_ENABLED)
    cr_assert_eq(b, a, "same class must reuse the block");
  big = fy__pool_get(&pool, 5000); /* beyond the classes */
  cr_assert_not_null(big);
  fy__pool_put(&pool, big, 5000);
  fy__pool_put(&pool, b, 120);
  fy__pool_put(&pool, NULL, 64);
  cr_assert_eq(fy__pool_cached(&pool), FY__POOL_ENABLED ? 1u : 0u);
  fy__pool_drain(&pool);
  cr_assert_eq(fy__pool_cached(&pool), 0);
  cr_assert_eq(FA.live, 0);
  fa_restore();
}

Test(alloc, freelists_keep_a_bounded_number) {
  fy__pool_t pool;
  void **blocks;
  size_t i, n = FY__POOL_KEEP + 10;
  fa_install(-1);
  memset(&pool, 0, sizeof(pool));
  blocks = calloc(n, sizeof(*blocks));
  for (i = 0; i < n; i++)
    blocks[i] = fy__pool_get(&pool, 64);
  cr_assert_eq(FA.live, (long)n);
  for (i = 0; i < n; i++)
    fy__pool_put(&pool, blocks[i], 64);
  cr_assert_eq(fy__pool_cached(&pool), FY__POOL_ENABLED ? FY__POOL_KEEP : 0);
  cr_assert_eq(FA.live, FY__POOL_ENABLED ? FY__POOL_KEEP : 0);
  fy__pool_drain(&pool);
  cr_assert_eq(FA.live, 0);
  free(blocks);
  fa_restore();
}

/* A policy whose frames are larger than the biggest freelist class. */
typedef struct big_s {
  char pad[3000];
} big_t;
static int big_start(fy_policy_t *p, fy_frame_t *f) {
  big_t *st = fy_frame_state(f);
  (void)p;
  memset(st->pad, 0x11, sizeof(st->pad)); /* must be writable */
  return fy_frame_spawn(f, NULL);
}
Test(alloc, frames_larger_than_the_freelists) {
  static const fy_policy_vtable_t vt = {
      .kind = "big",
      .frame_size = sizeof(big_t),
      .start = big_start,
      .child_done = probe_pass_child_done,
  };
  fy_policy_t *p = NULL;
  fy_pipeline_t *pl;
  int i;
  fa_install(-1);
  fx_init(&FX, 0);
  cr_assert_eq(fy_policy_new(FX.ctx, &vt, 0, "big", &p), 0);
  pl = fx_pipeline(&FX, 2, p, p);
  top_script(&T, TOP_SYNC, 0);
  T.with_results = 1;
  for (i = 0; i < 5; i++) {
    cr_assert_eq(tcall_start(&C, pl, &top_op_nocancel, &T), 0);
    fx_advance(&FX, 0);
    cr_assert_eq(C.status, 0);
    cr_assert_not_null(C.result);
  }
  cr_assert_eq(tres_destroyed(), 5);
  fx_finish(&FX);
  cr_assert_eq(FA.live, 0);
  fa_restore();
}
