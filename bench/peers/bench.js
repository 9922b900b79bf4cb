// Copyright (c) 2026 the fortify authors. MIT licensed.
//
// The libraries a user would otherwise pick, doing the same work as
// bench/patterns.c: one op = one call through the policy around an async
// operation that succeeds at once (an async function returning a value),
// awaited.  The samples of bench/bench.h, without its interleaved rounds:
// each peer is measured alone, one after the other.  Calibrate the
// iteration count so that a sample lasts about 4 ms, take samples for
// about 1 s (at least 5), report the best (minimum) and the median ns per
// op (here the median of all the samples).  Many short samples
// give some that ran without a GC pause or a preemption; the best is the
// number to compare, the median says how noisy the run was.
//
// Output: one JSON object per line, as the C benches print:
//   {"bench": NAME, "ns_per_op": X, "allocs_per_op": null, ...}
// allocs_per_op is null: a JavaScript heap has no allocation hook to count.
//
//   peer.node.await           await of an async function (the floor)
//   peer.cockatiel.breaker    circuitBreaker(ConsecutiveBreaker(5)), closed
//   peer.cockatiel.retry      retry(maxAttempts 3, exponential), 1st try ok
//   peer.cockatiel.bulkhead   bulkhead(10), a slot is free
//   peer.cockatiel.timeout    timeout(30 s, Cooperative), not reached
//   peer.cockatiel.fallback   fallback(value), primary ok (extra)
//   peer.cockatiel.pipeline4  wrap(bulkhead, timeout, breaker, retry)
//   peer.opossum.breaker      new CircuitBreaker(fn) with its defaults
//                             (10 s timeout per call), closed
//   peer.rlf.consume          RateLimiterMemory.consume(key), under limit
'use strict';

const SAMPLE_NS = 4e6;
const TIME_NS = Number(process.env.BENCH_PEERS_TIME_NS || 1e9);
const MIN_REPS = 5;
const MAX_REPS = 1000;

const now = () => Number(process.hrtime.bigint());

function versionOf(name) {
  try {
    return require(`${name}/package.json`).version;
  } catch (e) {
    return 'unknown';
  }
}

// Runs |op| (an async function) |n| times, awaiting each.
async function loop(op, n) {
  for (let i = 0; i < n; i++) await op();
}

async function bench(name, op, extra) {
  let n = 64;
  let t0;
  let dt;
  for (;;) {
    t0 = now();
    await loop(op, n);
    dt = now() - t0;
    if (dt >= SAMPLE_NS / 4 || n >= 2 ** 40) break;
    n *= dt < SAMPLE_NS / 64 ? 8 : 2;
  }
  let best = dt;
  for (let k = 0; k < 2; k++) {
    t0 = now();
    await loop(op, n);
    dt = now() - t0;
    if (dt < best) best = dt;
  }
  n = Math.max(1, Math.floor((n * SAMPLE_NS) / Math.max(best, 1)));

  const per = [];
  let spent = 0;
  while (per.length < MAX_REPS && (per.length < MIN_REPS || spent < TIME_NS)) {
    t0 = now();
    await loop(op, n);
    dt = now() - t0;
    spent += dt;
    per.push(dt / n);
  }
  per.sort((a, b) => a - b);
  const line = Object.assign(
    {
      bench: name,
      ns_per_op: Number(per[0].toFixed(2)),
      allocs_per_op: null,
      median_ns_per_op: Number(per[per.length >> 1].toFixed(2)),
      ops: n,
      reps: per.length,
      runtime: `node ${process.version}`,
    },
    extra || {},
  );
  // The C benches' layout ("key": value, one space after ':' and ',').
  const body = Object.entries(line)
    .map(([k, v]) => `${JSON.stringify(k)}: ${JSON.stringify(v)}`)
    .join(', ');
  process.stdout.write(`{${body}}\n`);
}

async function main() {
  const ck = require('cockatiel');
  const CircuitBreaker = require('opossum');
  const { RateLimiterMemory } = require('rate-limiter-flexible');
  const ckv = `cockatiel@${versionOf('cockatiel')}`;

  // The operation every peer wraps: async, succeeds at once.
  const work = async () => 1;

  await bench('peer.node.await', work, { package: 'none' });

  const breaker = ck.circuitBreaker(ck.handleAll, {
    halfOpenAfter: 60000,
    breaker: new ck.ConsecutiveBreaker(5),
  });
  await bench('peer.cockatiel.breaker', () => breaker.execute(work), {
    package: ckv,
  });

  const retry = ck.retry(ck.handleAll, {
    maxAttempts: 3,
    backoff: new ck.ExponentialBackoff(),
  });
  await bench('peer.cockatiel.retry', () => retry.execute(work), {
    package: ckv,
  });

  const bulkhead = ck.bulkhead(10);
  await bench('peer.cockatiel.bulkhead', () => bulkhead.execute(work), {
    package: ckv,
  });

  const timeout = ck.timeout(30000, ck.TimeoutStrategy.Cooperative);
  await bench('peer.cockatiel.timeout', () => timeout.execute(work), {
    package: ckv,
  });

  const fallback = ck.fallback(ck.handleAll, () => 2);
  await bench('peer.cockatiel.fallback', () => fallback.execute(work), {
    package: ckv,
  });

  const pipeline4 = ck.wrap(
    ck.bulkhead(10),
    ck.timeout(30000, ck.TimeoutStrategy.Cooperative),
    ck.circuitBreaker(ck.handleAll, {
      halfOpenAfter: 60000,
      breaker: new ck.ConsecutiveBreaker(5),
    }),
    ck.retry(ck.handleAll, {
      maxAttempts: 3,
      backoff: new ck.ExponentialBackoff(),
    }),
  );
  await bench('peer.cockatiel.pipeline4', () => pipeline4.execute(work), {
    package: ckv,
    pipeline: 'bulkhead>timeout>breaker>retry',
  });

  const opossum = new CircuitBreaker(work);
  await bench('peer.opossum.breaker', () => opossum.fire(), {
    package: `opossum@${versionOf('opossum')}`,
  });
  opossum.shutdown();

  const limiter = new RateLimiterMemory({ points: 1e15, duration: 3600 });
  await bench('peer.rlf.consume', () => limiter.consume('k'), {
    package: `rate-limiter-flexible@${versionOf('rate-limiter-flexible')}`,
  });
}

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`bench.js: ${err && err.stack ? err.stack : err}\n`);
    process.exit(1);
  },
);
