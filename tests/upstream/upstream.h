/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * The test upstream: a small scripted HTTP/1.1 server on libuv and
 * http-parser, for tests, benches, examples and the demo.  It listens on an
 * ephemeral port of 127.0.0.1 and answers each request as its route, and
 * then its query string, say.  Deterministic for a given seed.
 *
 * Query parameters (override the route's settings for one request):
 *   status=N          response status (default 200)
 *   fail=P            with probability P answer fail_status instead
 *   fail_status=N     default 503
 *   latency=MS        delay before the response headers
 *   jitter=MS         plus U[0, MS]
 *   slow=P&slow_ms=MS with probability P add MS (a slow tail)
 *   retry_after=V     send "Retry-After: V" verbatim (URL-encoded value:
 *                     "2", "-1", "abc", an HTTP-date, ...)
 *   body=BYTES        body size (default 3: "ok\n")
 *   chunked=1         Transfer-Encoding: chunked
 *   chunk=BYTES       chunk size (default 16 KiB)
 *   chunk_delay=MS    delay between chunks (a slow body)
 *   action=A          reset (close the connection before answering),
 *                     reset_mid_body (send headers and half the body, then
 *                     reset), stall (never answer), stall_mid_body (headers
 *                     and half the body, then nothing), garbage (bytes that
 *                     are not HTTP), truncated (Content-Length larger than
 *                     what is sent, then close), huge_headers (a 200 with
 *                     headers of huge_kb KiB, default 64), close_after (a
 *                     whole keep-alive response, then the connection is
 *                     closed without notice, as a server's idle timeout
 *                     does)
 *   action_rate=P     apply action with probability P (default 1)
 *   huge_kb=N
 * The path itself is free; "/echo" answers with the request body. */
#ifndef FY_TEST_UPSTREAM_H
#define FY_TEST_UPSTREAM_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

typedef struct fy_up_s fy_up_t;

typedef struct fy_up_opts_s {
  uint64_t seed;     /* PRNG seed; 0 = 1 */
  uint16_t port;     /* 0 = ephemeral (the default) */
  int quiet;         /* no log lines on stderr */
} fy_up_opts_t;

typedef struct fy_up_stats_s {
  uint64_t connections;  /* accepted */
  uint64_t requests;     /* parsed */
  uint64_t responses;    /* fully written */
  uint64_t status_2xx, status_4xx, status_5xx;
  uint64_t actions;      /* resets, stalls, garbage ... applied */
  uint64_t bytes_out;
  /* Added after the first version: */
  uint64_t bad_requests; /* refused: 400, 413, 414, 431, 505 */
  uint64_t open;         /* connections open now */
  uint64_t peak_open;    /* most connections open at once */
} fy_up_stats_t;

/* In-process on |loop| (the caller runs the loop).  Returns 0 or a UV_E*
 * code. */
int fy_up_start(uv_loop_t *loop, const fy_up_opts_t *opts, fy_up_t **out);

/* On its own thread and loop (benches, the demo): the calling loop is not
 * slowed by the server's work. */
int fy_up_spawn(const fy_up_opts_t *opts, fy_up_t **out);

uint16_t fy_up_port(const fy_up_t *up);

/* "http://127.0.0.1:PORT" into |buf|; returns buf. */
char *fy_up_base_url(const fy_up_t *up, char *buf, size_t len);

/* Thread-safe snapshot of the counters. */
void fy_up_stats(fy_up_t *up, fy_up_stats_t *out);

/* Added after the first version: the script of one path.  |path| is
 * matched exactly against the request path (no query), |query| is a query
 * string in the language above (a leading "?" is allowed), applied before
 * the request's own query, which overrides it.  NULL removes the route.
 * Takes effect for requests completed after the call; callable from any
 * thread until fy_up_close.  Returns 0, UV_EINVAL (path not starting with
 * "/", containing "?", 256 bytes or longer; query of 1 KiB or longer or with
 * a bad value), UV_ENOBUFS (64 routes already) or UV_ENOMEM. */
int fy_up_route(fy_up_t *up, const char *path, const char *query);

/* Stop listening, drop every connection, free everything.  In-process:
 * asynchronous, |cb| runs from the loop once all handles are closed (then
 * |up| is gone).  Spawned: joins the thread and frees before returning
 * (|cb| runs on the caller's thread before return). */
void fy_up_close(fy_up_t *up, void (*cb)(void *user_data), void *user_data);

#endif /* FY_TEST_UPSTREAM_H */
