/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * Smoke test of `make demo` (examples/demo.c, docs/demo.md): the built demo
 * runs with --quick (four phases of one second against two test upstreams
 * on loopback, about six seconds) and must exit 0, write its HTML report
 * with SVG charts, and show fortify answering more requests than bare
 * libcurl.  tests/CMakeLists.txt passes the binary's path as FY_DEMO_BIN
 * and leaves this file out when the demo is not the libcurl one. */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef FY_DEMO_BIN
#error "FY_DEMO_BIN (the demo's path) is set by tests/CMakeLists.txt"
#endif

/* The whole file, NUL-terminated, or NULL. */
static char *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  char *buf = NULL;
  long n;
  if (f == NULL)
    return NULL;
  if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 &&
      fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)n + 1)) != NULL) {
    *len = fread(buf, 1, (size_t)n, f);
    buf[*len] = '\0';
  }
  fclose(f);
  return buf;
}

Test(demo, quick_run_writes_report_and_fortify_wins, .timeout = 90) {
  char report[256], cmd[1024], line[512];
  double bare = -1, fort = -1;
  int saw_summary = 0, status;
  size_t len = 0;
  char *html;
  FILE *p;

  snprintf(report, sizeof(report), "/tmp/fy-demo-test-%ld.html",
           (long)getpid());
  unlink(report);
  snprintf(cmd, sizeof(cmd), "'%s' --quick --report '%s' 2>&1", FY_DEMO_BIN,
           report);
  p = popen(cmd, "r");
  cr_assert_not_null(p, "cannot run %s", FY_DEMO_BIN);
  while (fgets(line, sizeof(line), p) != NULL) {
    if (strncmp(line, "summary", 7) == 0)
      saw_summary = 1;
    /* "success rate      83.2%      86.8%": bare, then fortify. */
    if (strncmp(line, "success rate ", 13) == 0 && bare < 0)
      cr_expect_eq(sscanf(line + 13, " %lf%% %lf%%", &bare, &fort), 2,
                   "unreadable line: %s", line);
  }
  status = pclose(p);
  cr_assert(WIFEXITED(status), "the demo did not exit normally");
  cr_assert_eq(WEXITSTATUS(status), 0, "the demo exited with %d",
               WEXITSTATUS(status));
  cr_assert(saw_summary, "no summary table");
  cr_assert(bare >= 0 && fort >= 0, "no success rate row");
  cr_expect_gt(fort, bare, "fortify %.1f%% is not above bare %.1f%%", fort,
               bare);

  html = slurp(report, &len);
  cr_assert_not_null(html, "no report at %s", report);
  cr_expect_gt(len, 1000);
  cr_expect_not_null(strstr(html, "<svg"), "the report has no SVG chart");
  cr_expect_not_null(strstr(html, "</html>"), "the report is cut short");
  /* Self-contained: nothing to fetch, nothing to run. */
  cr_expect_null(strstr(html, "<script"));
  cr_expect_null(strstr(html, "src=\"http"));
  free(html);
  unlink(report);
}
