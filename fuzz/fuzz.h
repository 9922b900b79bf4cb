/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * Shared by every fuzz target: the libFuzzer entry points, a reader that
 * turns the input bytes into a script (reading past the end yields zeros,
 * so every input is a valid script), values chosen to hit the edges of
 * option ranges, a counting allocator with failure injection, and the
 * invariant check.
 *
 * A target is one fuzz_<name>.c defining LLVMFuzzerTestOneInput().  It is
 * linked either with libFuzzer (clang -fsanitize=fuzzer, scripts/fuzz.sh)
 * or with standalone.c, which replays corpus files with any compiler (the
 * corpus replay of `make test`). */
#ifndef FY_FUZZ_H
#define FY_FUZZ_H

#include <stddef.h>
#include <stdint.h>

/* libFuzzer's entry points.  Initialize is optional (weak in standalone). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* An invariant broke: say which, then abort() so that libFuzzer keeps the
 * input as a crash artifact and the replay fails. */
#define FZ_CHECK(cond, ...)                                                    \
  do {                                                                         \
    if (!(cond))                                                               \
      fz_fail(__FILE__, __LINE__, #cond, __VA_ARGS__);                         \
  } while (0)

void fz_fail(const char *file, int line, const char *cond, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 4, 5)));

/* ---- the input as a script ---------------------------------------------- */
typedef struct fz_s {
  const uint8_t *p;
  size_t n;
} fz_t;

void fz_init(fz_t *z, const uint8_t *data, size_t size);
int fz_done(const fz_t *z);
uint8_t fz_u8(fz_t *z);
uint16_t fz_u16(fz_t *z);
uint32_t fz_u32(fz_t *z);
uint64_t fz_u64(fz_t *z);
/* Uniform-ish in [0, n); 0 when n is 0. */
uint64_t fz_below(fz_t *z, uint64_t n);
/* A duration-like value: mostly small, sometimes one of the edges below,
 * sometimes any 64-bit value. */
uint64_t fz_time(fz_t *z);
/* Any 64-bit value, biased towards edges (0, 1, powers of two and their
 * neighbours, the library's documented limits). */
uint64_t fz_u64_edge(fz_t *z);
/* Any 32-bit value, biased the same way. */
uint32_t fz_u32_edge(fz_t *z);
/* Any double: NaN, infinities, -0, tiny, huge, limits +- an ulp, raw bits. */
double fz_double(fz_t *z);
/* Any int, biased towards error codes (libuv's and the library's). */
int fz_status(fz_t *z);
/* A NUL-terminated string of up to |max| - 1 arbitrary bytes in |buf|. */
char *fz_string(fz_t *z, char *buf, size_t max);

/* ---- counting allocator -------------------------------------------------- */

/* Installed once (fy_replace_allocator), before any context exists. */
void fz_alloc_install(void);
/* Fresh counters; fail request number |fail_at| (0-based, -1 never), and
 * every request from |fail_from| on (-1 never). */
void fz_alloc_reset(long fail_at, long fail_from);
long fz_alloc_live(void);     /* blocks allocated and not freed */
long fz_alloc_requests(void); /* requests seen, failed ones included */
long fz_alloc_failed(void);   /* requests failed on purpose */

#endif /* FY_FUZZ_H */
