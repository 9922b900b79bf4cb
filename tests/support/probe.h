/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * Test support: a scriptable policy ("probe") built only on the public
 * policy API, scriptable operations, counted results and a call wrapper.
 *
 * Everything here is per process: Criterion runs each test in its own
 * process, and probe_reset() (called by the fixture) clears the globals. */
#ifndef FY_TEST_PROBE_H
#define FY_TEST_PROBE_H

#include <fortify.h>

/* ---------------------------------------------------------------------------
 * Counted results.  Every result has an id; its destructor counts per id, so
 * a test can prove each result was destroyed exactly once (or taken).
 * ------------------------------------------------------------------------- */
#define TRES_MAX 4096
#define TRES_MAGIC 0x72657375u

typedef struct tres_s {
  unsigned magic;
  unsigned id;
} tres_t;

tres_t *tres_new(void);
void tres_dtor(void *result);
unsigned tres_created(void);
unsigned tres_destroyed(void);
/* Destructor runs of result |id| (must be 0 or 1). */
unsigned tres_destroy_count(unsigned id);
/* Results destroyed more than once, or not ours (bad magic). */
unsigned tres_errors(void);

/* ---------------------------------------------------------------------------
 * The probe policy.
 *
 * The test owns a probe_t (zero it, set the script, call probe_new()); the
 * policy's impl holds a pointer to it, so the counters outlive the policy and
 * destroy can be counted.
 * ------------------------------------------------------------------------- */
typedef enum {
  PROBE_PASS = 0,    /* spawn one child, report its outcome */
  PROBE_REFUSE,      /* start refuses with refuse_code */
  PROBE_SEQUENTIAL,  /* one child after another while they fail, up to n */
  PROBE_CONCURRENT   /* n children at once: first success wins, else the
                        last failure */
} probe_mode_t;

typedef enum {
  PROBE_CANCEL_DEFAULT = 0, /* no cancel hook: the core's default */
  PROBE_CANCEL_FORWARD,     /* hook that cancels every live child */
  PROBE_CANCEL_FINISH       /* hook that finishes the frame at once with
                               UV_ECANCELED (children are detached) */
} probe_cancel_t;

typedef enum {
  PROBE_HOOK_START = 0,
  PROBE_HOOK_CHILD_DONE,
  PROBE_HOOK_CANCEL,
  PROBE_HOOK_PROGRESS,
  PROBE_HOOK_DEADLINE,
  PROBE_HOOK_CLOSE,
  PROBE_HOOK_DESTROY,
  PROBE_HOOK__COUNT
} probe_hook_t;

#define PROBE_MAX_CHILDREN 8

typedef struct probe_s probe_t;
/* Called from inside every hook, before the hook acts (frame is NULL for
 * close and destroy). */
typedef void (*probe_hook_fn)(probe_t *probe, probe_hook_t hook,
                              fy_frame_t *frame);

struct probe_s {
  /* script */
  probe_mode_t mode;
  probe_cancel_t cancel;
  int refuse_code;         /* PROBE_REFUSE */
  unsigned n;              /* children (SEQUENTIAL, CONCURRENT); 0 means 1 */
  uint64_t timeout_ms;     /* > 0: arm the frame timer at start */
  int timeout_code;        /* status on expiry; 0 means UV_ETIMEDOUT */
  int timeout_detach;      /* on expiry, fy_frame_detach() every live child
                              before finishing (else fy_frame_done does) */
  uint64_t deadline_ms;    /* > 0: fy_frame_set_deadline(now + deadline_ms) */
  probe_hook_fn on_hook;
  void *data;              /* for the test */

  /* records */
  fy_policy_t *policy;
  unsigned hooks[PROBE_HOOK__COUNT];
  unsigned violations;     /* a hook ran while another of its frame ran */
  unsigned max_depth;      /* deepest hook nesting seen on one frame */
  unsigned close_depth;
  int last_status;         /* last child_done status */
  unsigned children_done;  /* child_done calls */
  unsigned spawn_errors;   /* fy_frame_spawn failures */
};

/* A child_done hook for small test policies of one child: adopt its result
 * and finish with its status. */
void probe_pass_child_done(fy_policy_t *policy, fy_frame_t *frame,
                           fy_frame_t *child, int status);

/* Create the policy for |probe| (its script already set).  Returns what
 * fy_policy_new() returns. */
int probe_new(fy_ctx_t *ctx, probe_t *probe, const char *name);

/* The probe behind a policy created by probe_new(), or NULL. */
probe_t *probe_of(fy_policy_t *policy);

/* ---------------------------------------------------------------------------
 * Scriptable operations.
 *
 * The |arg| of fy_call_start() is a top_t: the script for each attempt (by
 * order of start across every call that uses it) and the record of what the
 * operation saw.  Three fy_op_t differ only by their cancel hook.
 * ------------------------------------------------------------------------- */
typedef enum {
  TOP_ASYNC = 0,   /* under way; the test reports with top_report() */
  TOP_SYNC,        /* fy_attempt_done(status) inside start, return 0 */
  TOP_START_ERROR, /* return status from start, without reporting */
  TOP_SYNC_RETURN, /* fy_attempt_done(status) inside start, return status */
  TOP_AFTER        /* report status after_ms after the start, from a
                      deadline on the top's context (0 ms: the next turn) */
} top_kind_t;

typedef struct top_step_s {
  top_kind_t kind;
  int status;
  uint64_t after_ms;       /* TOP_AFTER */
  uint64_t retry_after_ms; /* a hint set before the report (0: none) */
} top_step_t;

#define TOP_MAX_ATTEMPTS 256
#define TOP_MAX_STEPS 64

/* top_t.with_results */
#define TOP_RESULTS_ALL 1 /* a counted result with every report */
#define TOP_RESULTS_OK 2  /* with successful reports only */

typedef struct top_s top_t;
typedef void (*top_hook_fn)(top_t *top, fy_attempt_t *attempt);

/* The timer behind a TOP_AFTER report or a delayed cancel. */
typedef struct top_timer_s {
  fy_deadline_t dl;
  top_t *top;
  fy_ctx_t *ctx; /* the attempt's context, seen at start */
  unsigned k;
  int armed;     /* initialised */
} top_timer_t;

struct top_s {
  /* script; attempts beyond nsteps use the last step (or ASYNC) */
  top_step_t steps[TOP_MAX_STEPS];
  unsigned nsteps;
  int with_results;     /* attach a counted result before each report
                           (TOP_RESULTS_ALL) or each success's (_OK) */
  void *result;         /* else, when set: attach this one (with
                           result_dtor) before each report that is not
                           the synchronous cancel's */
  fy_result_dtor result_dtor;
  int cancel_status;    /* reported by a synchronous cancel; 0: ECANCELED */
  top_hook_fn on_start; /* runs first inside start */
  top_hook_fn on_cancel;/* runs first inside cancel */
  void *data;
  fy_ctx_t *ctx;        /* of the timers; NULL: the call's pipeline's */
  uint64_t cancel_after_ms; /* top_op_cancel_later: report the step's
                               status this long after the cancel (0: the
                               test reports) */

  /* records */
  unsigned starts;
  unsigned cancels;
  unsigned reports;
  fy_attempt_t *att[TOP_MAX_ATTEMPTS]; /* live attempts by start order */
  unsigned index[TOP_MAX_ATTEMPTS];    /* attempt->index seen at start */
  uint64_t remaining[TOP_MAX_ATTEMPTS];/* fy_attempt_remaining() at start */
  int cancelled[TOP_MAX_ATTEMPTS];     /* cancel hook ran for it */
  fy_call_t *call_at_start[TOP_MAX_ATTEMPTS];
  unsigned order[TOP_MAX_ATTEMPTS];    /* g_starts after this start */
  int cause[TOP_MAX_ATTEMPTS];         /* call->detail.cause at start */
  const char *by_kind[TOP_MAX_ATTEMPTS];/* call->detail.by_kind at start */
  uint64_t deadline[TOP_MAX_ATTEMPTS]; /* attempt->deadline at start */
  uint64_t start_at[TOP_MAX_ATTEMPTS]; /* context time at start */
  top_timer_t timer[TOP_MAX_ATTEMPTS];
};

/* Attempts started so far by every top_t (1-based start order). */
extern unsigned g_starts;

extern const fy_op_t top_op_nocancel;   /* cancel hook NULL */
extern const fy_op_t top_op_cancel_sync;/* reports from inside cancel */
extern const fy_op_t top_op_cancel_later;/* records only; report later */

void top_script(top_t *top, top_kind_t kind, int status);
void top_push(top_t *top, top_kind_t kind, int status);
/* Script every attempt to report |status| |after_ms| after its start
 * (TOP_AFTER); FY_TIME_NEVER: never by itself (TOP_ASYNC), |status| being
 * what a delayed cancel reports. */
void top_script_after(top_t *top, uint64_t after_ms, int status);
/* Push a whole step (TOP_AFTER, hints). */
void top_push_step(top_t *top, top_step_t step);
/* (Re)arm the report of attempt |k|, still waiting, |ms| from now, with
 * its step's status. */
void top_after(top_t *top, unsigned k, uint64_t ms);
/* fy_attempt_mark() on the newest attempt, asserting it still waits. */
void top_mark(top_t *top);

/* Report attempt |k| (start order) with |status|, attaching a counted result
 * when with_results.  Returns what fy_attempt_done() returned. */
int top_report(top_t *top, unsigned k, int status);
/* Report the newest attempt with |status|, asserting it was still waiting
 * and fy_attempt_done() returned 0. */
void top_finish(top_t *top, int status);
/* Number of attempts still waiting for a report. */
unsigned top_live(const top_t *top);
/* Report every live attempt with |status|. */
void top_report_all(top_t *top, int status);

/* ---------------------------------------------------------------------------
 * Calls.  A tcall_t embeds fy_call_t and records its completion.
 * ------------------------------------------------------------------------- */
typedef struct tcall_s tcall_t;
typedef void (*tcall_then_fn)(tcall_t *tc, int status);

struct tcall_s {
  fy_call_t call;
  unsigned ncb;      /* callback runs */
  int status;        /* status given to the callback */
  int nested;        /* the callback ran while g_nested was set */
  void *result;      /* fy_call_result() inside the callback */
  int take;          /* take the result inside the callback */
  void *taken;
  fy_result_dtor taken_dtor;
  tcall_then_fn then;/* optional action at the end of the callback */
  void *data;
  unsigned order;    /* global completion order (1-based) */
  uint64_t at;       /* the context's time in the callback */
  fy_detail_t detail;/* call->detail in the callback */
};

/* Set around fy_call_start()/fy_call_cancel() by tests: a callback that runs
 * while it is set ran on the wrong stack. */
extern int g_nested;
extern unsigned g_completions;

void tcall_cb(fy_call_t *call, int status);
/* fy_call_start() with g_nested set around it. */
int tcall_start(tcall_t *tc, fy_pipeline_t *pl, const fy_op_t *op,
                top_t *top);
int tcall_cancel(tcall_t *tc);

/* Reset every global of this file (the fixture does it). */
void probe_reset(void);

#endif /* FY_TEST_PROBE_H */
