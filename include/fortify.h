/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * fortify: resilience patterns for the libuv event loop.  The umbrella
 * header; the curl adapter's header (fortify/curl.h) is separate because
 * it needs libcurl's headers. */
#ifndef FORTIFY_H
#define FORTIFY_H

#include "fortify/version.h"
#include "fortify/common.h"
#include "fortify/errno.h"
#include "fortify/events.h"
#include "fortify/ctx.h"
#include "fortify/scope.h"
#include "fortify/call.h"
#include "fortify/policy.h"
#include "fortify/breaker.h"
#include "fortify/retry.h"
#include "fortify/timeout.h"
#include "fortify/bulkhead.h"
#include "fortify/fallback.h"
#include "fortify/limiter.h"
#include "fortify/guard.h"
#include "fortify/presets.h"

#endif /* FORTIFY_H */
