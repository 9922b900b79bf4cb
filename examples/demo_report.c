/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * The demo's HTML report: one file, inline CSS and SVG, no script and no
 * external asset, so that it opens anywhere, offline, and can be attached
 * to a ticket as it is.  Every chart is drawn here with a few primitives
 * (a plot frame that maps data to pixels, axes, polylines, rectangles). */
#include "demo_report.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#define W 900  /* SVG width (viewBox units) */
#define PL 64  /* plot margins */
#define PR 16
#define PT 26
#define PB 34

static const char *color[DEMO_CLIENTS] = {"#d95f02", "#1b7f79"};
static const char *state_color[3] = {"#57a55a", "#d64541", "#f0b429"};
static const char *state_label[3] = {"closed", "open", "half-open"};
static const char *phase_fill[DEMO_PHASES] = {"#f3f6f3", "#fbeeee",
                                              "#fbf6e9", "#f1eff8"};

/* A plot area and the data range it shows; log axes map log10 values. */
typedef struct plot_s {
  double x0, x1, y0, y1;
  int logx, logy;
  int left, top, width, height;
} plot_t;

static void esc(FILE *f, const char *s) {
  for (; s != NULL && *s != '\0'; s++) {
    switch (*s) {
    case '<': fputs("&lt;", f); break;
    case '>': fputs("&gt;", f); break;
    case '&': fputs("&amp;", f); break;
    case '"': fputs("&quot;", f); break;
    default: fputc(*s, f);
    }
  }
}

static double px(const plot_t *p, double x) {
  double a = p->x0, b = p->x1;
  if (p->logx) {
    x = log10(x > 0 ? x : 1e-9);
    a = log10(a);
    b = log10(b);
  }
  if (x < a)
    x = a;
  if (x > b)
    x = b;
  return p->left + (x - a) / (b - a) * p->width;
}

static double py(const plot_t *p, double y) {
  double a = p->y0, b = p->y1;
  if (p->logy) {
    y = log10(y > 0 ? y : 1e-9);
    a = log10(a);
    b = log10(b);
  }
  if (y < a)
    y = a;
  if (y > b)
    y = b;
  return p->top + p->height - (y - a) / (b - a) * p->height;
}

static void svg_open(FILE *f, int height, const char *label) {
  fprintf(f,
          "<svg viewBox=\"0 0 %d %d\" role=\"img\" aria-label=\"", W,
          height);
  esc(f, label);
  fputs("\" xmlns=\"http://www.w3.org/2000/svg\">\n", f);
}

static void plot_init(plot_t *p, int height) {
  p->left = PL;
  p->top = PT;
  p->width = W - PL - PR;
  p->height = height - PT - PB;
}

/* "250ms", "1s" for a latency axis given in milliseconds. */
static void fmt_ms(char *buf, size_t len, double ms) {
  if (ms >= 1000)
    snprintf(buf, len, "%gs", ms / 1000);
  else
    snprintf(buf, len, "%gms", ms);
}

/* The time axis (seconds) with the phases shaded behind the plot. */
static void time_axis(FILE *f, const plot_t *p, const demo_report_t *r,
                      int shade) {
  double total = p->x1, step = total > 20 ? 5 : 1, t, x0, x1;
  int i;
  if (shade) {
    for (i = 0; i < DEMO_PHASES; i++) {
      x0 = px(p, r->phases[i].start_ms / 1000.0);
      x1 = px(p, r->phases[i].end_ms / 1000.0);
      fprintf(f,
              "<rect x=\"%.1f\" y=\"%d\" width=\"%.1f\" height=\"%d\" "
              "fill=\"%s\"/>\n",
              x0, p->top, x1 - x0, p->height, phase_fill[i]);
      fprintf(f,
              "<text x=\"%.1f\" y=\"%d\" class=\"ph\" "
              "text-anchor=\"middle\">",
              (x0 + x1) / 2, p->top - 8);
      esc(f, r->phases[i].name);
      fputs("</text>\n", f);
    }
    x0 = px(p, r->workload_ms / 1000.0);
    x1 = px(p, total);
    if (x1 > x0 + 1) {
      fprintf(f,
              "<rect x=\"%.1f\" y=\"%d\" width=\"%.1f\" height=\"%d\" "
              "fill=\"#f6f6f6\"/>\n<text x=\"%.1f\" y=\"%d\" class=\"ph\" "
              "text-anchor=\"middle\">drain</text>\n",
              x0, p->top, x1 - x0, p->height, (x0 + x1) / 2, p->top - 8);
    }
  }
  fprintf(f,
          "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" class=\"ax\"/>\n",
          p->left, p->top + p->height, p->left + p->width,
          p->top + p->height);
  for (t = 0; t <= total + 1e-9; t += step)
    fprintf(f,
            "<text x=\"%.1f\" y=\"%d\" class=\"tk\" "
            "text-anchor=\"middle\">%gs</text>\n",
            px(p, t), p->top + p->height + 16, t);
}

/* Horizontal grid lines with labels on the left. */
static void y_grid(FILE *f, const plot_t *p, const double *ticks, int n,
                   int ms) {
  char buf[32];
  double y;
  int i;
  for (i = 0; i < n; i++) {
    y = py(p, ticks[i]);
    fprintf(f,
            "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" "
            "class=\"gr\"/>\n",
            p->left, y, p->left + p->width, y);
    if (ms)
      fmt_ms(buf, sizeof(buf), ticks[i]);
    else
      snprintf(buf, sizeof(buf), "%g%%", ticks[i]);
    fprintf(f,
            "<text x=\"%d\" y=\"%.1f\" class=\"tk\" "
            "text-anchor=\"end\">%s</text>\n",
            p->left - 6, y + 4, buf);
  }
}

static void legend(FILE *f, const demo_report_t *r, int x, int y,
                   const char *dash) {
  int k;
  for (k = 0; k < DEMO_CLIENTS; k++) {
    fprintf(f,
            "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"%s\" "
            "stroke-width=\"3\"/>\n<text x=\"%d\" y=\"%d\" class=\"lg\">",
            x, y, x + 22, y, color[k], x + 28, y + 4);
    esc(f, r->client_name[k]);
    fputs("</text>\n", f);
    x += 150;
  }
  if (dash != NULL)
    fprintf(f,
            "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#777\" "
            "stroke-width=\"2\" stroke-dasharray=\"5 4\"/>\n<text x=\"%d\" "
            "y=\"%d\" class=\"lg\">%s</text>\n",
            x, y, x + 22, y, x + 28, y + 4, dash);
}

/* ---- the charts --------------------------------------------------------- */

static void chart_success(FILE *f, const demo_report_t *r) {
  static const double ticks[] = {0, 25, 50, 75, 100};
  plot_t p = {0};
  size_t s;
  int k, h = 260;
  const demo_second_t *sec;

  plot_init(&p, h);
  p.x1 = r->nseconds > 0 ? (double)r->nseconds : 1;
  p.y1 = 100;
  svg_open(f, h, "success rate per second");
  time_axis(f, &p, r, 1);
  y_grid(f, &p, ticks, 5, 0);
  for (k = 0; k < DEMO_CLIENTS; k++) {
    fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2.2\" "
            "points=\"", color[k]);
    for (s = 0; s < r->nseconds; s++) {
      sec = &r->seconds[k][s];
      if (sec->done == 0)
        continue;
      fprintf(f, "%.1f,%.1f ", px(&p, s + 0.5),
              py(&p, 100.0 * sec->ok / sec->done));
    }
    fputs("\"/>\n", f);
  }
  legend(f, r, p.left + 10, h - 6, NULL);
  fputs("</svg>\n", f);
}

static void chart_p99(FILE *f, const demo_report_t *r) {
  static const double ticks[] = {1, 10, 100, 1000, 10000};
  plot_t p = {0};
  size_t s;
  int k, pass, h = 260;
  const demo_second_t *sec;

  plot_init(&p, h);
  p.x1 = r->nseconds > 0 ? (double)r->nseconds : 1;
  p.y0 = 0.5;
  p.y1 = 10000;
  p.logy = 1;
  svg_open(f, h, "latency p50 and p99 per second");
  time_axis(f, &p, r, 1);
  y_grid(f, &p, ticks, 5, 1);
  for (pass = 0; pass < 2; pass++)
    for (k = 0; k < DEMO_CLIENTS; k++) {
      fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"%s\" "
              "%s points=\"", color[k], pass ? "2.2" : "1.5",
              pass ? "" : "stroke-dasharray=\"5 4\"");
      for (s = 0; s < r->nseconds; s++) {
        sec = &r->seconds[k][s];
        if (sec->done == 0)
          continue;
        fprintf(f, "%.1f,%.1f ", px(&p, s + 0.5),
                py(&p, (pass ? sec->p99_us : sec->p50_us) / 1000.0));
      }
      fputs("\"/>\n", f);
    }
  legend(f, r, p.left + 10, h - 6, "dashed: p50, solid: p99");
  fputs("</svg>\n", f);
}

/* The empirical CDF on a log latency axis, as a step line through at most
 * a few hundred points. */
static void chart_cdf(FILE *f, const demo_report_t *r) {
  static const double xt[] = {0.01, 0.1, 1, 10, 100, 1000, 10000};
  static const double yt[] = {0, 25, 50, 75, 90, 99};
  plot_t p = {0};
  char buf[32];
  size_t i, n, step;
  double x, y, prev;
  int k, j, h = 300;

  plot_init(&p, h);
  p.x0 = 0.01;
  p.x1 = 10000;
  p.logx = 1;
  p.y1 = 100;
  svg_open(f, h, "latency distribution, bare libcurl vs fortify");
  y_grid(f, &p, yt, 6, 0);
  for (j = 0; j < 7; j++) {
    x = px(&p, xt[j]);
    fmt_ms(buf, sizeof(buf), xt[j]);
    fprintf(f,
            "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" "
            "class=\"gr\"/>\n<text x=\"%.1f\" y=\"%d\" class=\"tk\" "
            "text-anchor=\"middle\">%s</text>\n",
            x, p.top, x, p.top + p.height, x, p.top + p.height + 16, buf);
  }
  for (k = 0; k < DEMO_CLIENTS; k++) {
    n = r->nlat[k];
    if (n == 0)
      continue;
    step = n / 400 + 1;
    fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2.2\" "
            "points=\"%.1f,%.1f ", color[k], px(&p, r->lat_us[k][0] / 1000.0),
            py(&p, 0));
    prev = py(&p, 0);
    for (i = 0; i < n; i += step) {
      x = px(&p, r->lat_us[k][i] / 1000.0);
      y = py(&p, 100.0 * (double)(i + 1) / (double)n);
      fprintf(f, "%.1f,%.1f %.1f,%.1f ", x, prev, x, y);
      prev = y;
    }
    x = px(&p, r->lat_us[k][n - 1] / 1000.0);
    fprintf(f, "%.1f,%.1f %.1f,%.1f\"/>\n", x, prev, x, py(&p, 100));
  }
  legend(f, r, p.left + 10, h - 6, NULL);
  fputs("</svg>\n", f);
}

/* Per host: a thin band with the upstream's phase, and the breaker's state
 * over time as coloured segments. */
static void chart_breakers(FILE *f, const demo_report_t *r) {
  plot_t p = {0};
  int h = 70 + 56 * DEMO_HOSTS + 20, host, i, state, y;
  double x0, x1, t0;
  size_t j;

  plot_init(&p, h);
  p.top = 30;
  p.height = 56 * DEMO_HOSTS;
  p.x1 = r->nseconds > 0 ? (double)r->nseconds : 1;
  svg_open(f, h, "breaker state per host over time (fortify)");
  for (host = 0; host < DEMO_HOSTS; host++) {
    y = p.top + 56 * host;
    fprintf(f, "<text x=\"%d\" y=\"%d\" class=\"tk\" text-anchor=\"end\">"
            "host %s</text>\n", p.left - 6, y + 30, r->host_name[host]);
    for (i = 0; i < DEMO_PHASES; i++) {
      const char *s = r->phases[i].script[host];
      int sick = host == 0 ? i == 1 : 0;
      x0 = px(&p, r->phases[i].start_ms / 1000.0);
      x1 = px(&p, r->phases[i].end_ms / 1000.0);
      fprintf(f,
              "<rect x=\"%.1f\" y=\"%d\" width=\"%.1f\" height=\"8\" "
              "fill=\"%s\"><title>",
              x0, y + 4, x1 - x0, sick ? "#d64541" : phase_fill[i]);
      esc(f, r->phases[i].name);
      fputs(": ", f);
      esc(f, s);
      fputs("</title></rect>\n", f);
    }
    /* Replay the transitions of this host. */
    state = 0;
    t0 = 0;
    for (j = 0; j <= r->ntransitions; j++) {
      double t;
      if (j < r->ntransitions && r->transitions[j].host != host)
        continue;
      t = j < r->ntransitions ? r->transitions[j].t_ms / 1000.0
                              : r->total_ms / 1000.0;
      x0 = px(&p, t0);
      x1 = px(&p, t);
      if (x1 > x0)
        fprintf(f,
                "<rect x=\"%.1f\" y=\"%d\" width=\"%.2f\" height=\"26\" "
                "fill=\"%s\"/>\n",
                x0, y + 16, x1 - x0, state_color[state % 3]);
      if (j < r->ntransitions) {
        state = r->transitions[j].state;
        t0 = t;
      }
    }
  }
  for (i = 0; i < DEMO_PHASES; i++) {
    x0 = px(&p, r->phases[i].start_ms / 1000.0);
    fprintf(f,
            "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" "
            "class=\"gr\"/>\n<text x=\"%.1f\" y=\"%d\" class=\"ph\">",
            x0, p.top - 4, x0, p.top + p.height, x0 + 3, p.top - 10);
    esc(f, r->phases[i].name);
    fputs("</text>\n", f);
  }
  time_axis(f, &p, r, 0);
  for (i = 0; i < 3; i++)
    fprintf(f,
            "<rect x=\"%d\" y=\"%d\" width=\"14\" height=\"10\" "
            "fill=\"%s\"/><text x=\"%d\" y=\"%d\" class=\"lg\">%s</text>\n",
            p.left + 10 + 120 * i, h - 16, state_color[i],
            p.left + 30 + 120 * i, h - 7, state_label[i]);
  fprintf(f,
          "<rect x=\"%d\" y=\"%d\" width=\"14\" height=\"6\" "
          "fill=\"#d64541\"/><text x=\"%d\" y=\"%d\" class=\"lg\">thin band: "
          "the host's script (red: failing hard)</text>\n",
          p.left + 370, h - 14, p.left + 390, h - 7);
  fputs("</svg>\n", f);
}

static void chart_retries(FILE *f, const demo_report_t *r) {
  plot_t p = {0};
  double ticks[8], bw, x, y, step;
  uint32_t top = 1;
  size_t s;
  int i, h = 240;
  const demo_second_t *sec;

  for (s = 0; s < r->nseconds; s++) {
    sec = &r->seconds[1][s];
    if (sec->retries > top)
      top = sec->retries;
    if (sec->refused > top)
      top = sec->refused;
  }
  plot_init(&p, h);
  p.x1 = r->nseconds > 0 ? (double)r->nseconds : 1;
  p.y1 = top * 1.1;
  svg_open(f, h, "retries and fast failures per second (fortify)");
  time_axis(f, &p, r, 1);
  /* A count axis in steps of 1, 2 or 5 times a power of ten. */
  step = pow(10, floor(log10(top / 4.0 > 1 ? top / 4.0 : 1)));
  if (top / step > 20)
    step *= 5;
  else if (top / step > 8)
    step *= 2;
  for (i = 0; i < 8 && i * step <= p.y1; i++) {
    ticks[i] = i * step;
    y = py(&p, ticks[i]);
    fprintf(f,
            "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" "
            "class=\"gr\"/>\n<text x=\"%d\" y=\"%.1f\" class=\"tk\" "
            "text-anchor=\"end\">%g</text>\n",
            p.left, y, p.left + p.width, y, p.left - 6, y + 4, ticks[i]);
  }
  bw = (double)p.width / p.x1 * 0.38;
  for (s = 0; s < r->nseconds; s++) {
    sec = &r->seconds[1][s];
    x = px(&p, (double)s + 0.5);
    if (sec->retries > 0)
      fprintf(f,
              "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
              "fill=\"%s\"><title>%zus: %u retries</title></rect>\n",
              x - bw, py(&p, sec->retries), bw,
              py(&p, 0) - py(&p, sec->retries), color[1], s + 1,
              sec->retries);
    if (sec->refused > 0)
      fprintf(f,
              "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
              "fill=\"%s\"><title>%zus: %u failed fast</title></rect>\n",
              x, py(&p, sec->refused), bw, py(&p, 0) - py(&p, sec->refused),
              state_color[1], s + 1, sec->refused);
  }
  fprintf(f,
          "<rect x=\"%d\" y=\"%d\" width=\"14\" height=\"10\" fill=\"%s\"/>"
          "<text x=\"%d\" y=\"%d\" class=\"lg\">retries started</text>\n"
          "<rect x=\"%d\" y=\"%d\" width=\"14\" height=\"10\" fill=\"%s\"/>"
          "<text x=\"%d\" y=\"%d\" class=\"lg\">failed fast (breaker "
          "open)</text>\n",
          p.left + 10, h - 16, color[1], p.left + 30, h - 7, p.left + 190,
          h - 16, state_color[1], p.left + 210, h - 7);
  fputs("</svg>\n", f);
}

/* ---- the page ------------------------------------------------------------ */

static void table(FILE *f, const demo_report_t *r, const demo_row_t *rows,
                  size_t n, const char *first) {
  size_t i;
  int k;
  fputs("<table>\n<tr><th>", f);
  esc(f, first);
  fputs("</th>", f);
  for (k = 0; k < DEMO_CLIENTS; k++) {
    fprintf(f, "<th style=\"color:%s\">", color[k]);
    esc(f, r->client_name[k]);
    fputs("</th>", f);
  }
  fputs("</tr>\n", f);
  for (i = 0; i < n; i++) {
    fputs("<tr><td>", f);
    esc(f, rows[i].label);
    fputs("</td>", f);
    for (k = 0; k < DEMO_CLIENTS; k++) {
      fputs("<td class=\"n\">", f);
      esc(f, rows[i].cell[k]);
      fputs("</td>", f);
    }
    fputs("</tr>\n", f);
  }
  fputs("</table>\n", f);
}

static const char style[] =
    "body{font:15px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;"
    "max-width:960px;margin:2em auto;padding:0 1em;color:#222}"
    "h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.15em;"
    "margin:1.8em 0 .4em}p.sub{color:#555;margin-top:0}"
    "svg{width:100%;height:auto;display:block}"
    "svg text{font:12px system-ui,sans-serif;fill:#444}"
    "svg .ph{fill:#777;font-size:11px}svg .lg{fill:#333}"
    "svg .ax{stroke:#999}svg .gr{stroke:#e4e4e4}"
    "table{border-collapse:collapse;margin:.5em 0}"
    "td,th{padding:.25em .8em;border-bottom:1px solid #eee;"
    "text-align:left}td.n{text-align:right;font-variant-numeric:"
    "tabular-nums}th{border-bottom:2px solid #ccc}"
    "code{font-size:.9em;background:#f4f4f4;padding:0 .2em}"
    ".note{color:#555;font-size:.92em}";

int demo_report_write(const char *path, const demo_report_t *r) {
  FILE *f = fopen(path, "w");
  int i, k, rc;

  if (f == NULL)
    return -1;
  fprintf(f, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta "
          "charset=\"utf-8\">\n<title>fortify demo: bare libcurl vs "
          "fortify</title>\n<style>%s</style>\n</head>\n<body>\n",
          style);
  fputs("<h1>bare libcurl vs fortify</h1>\n<p class=\"sub\">", f);
  esc(f, r->setup);
  fputs("</p>\n<ul>\n", f);
  for (k = 0; k < DEMO_CLIENTS; k++) {
    fprintf(f, "<li><b style=\"color:%s\">", color[k]);
    esc(f, r->client_name[k]);
    fputs("</b>: ", f);
    esc(f, r->client_desc[k]);
    fputs("</li>\n", f);
  }
  fputs("</ul>\n<h2>Phases</h2>\n<table>\n<tr><th>phase</th><th>time</th>"
        "<th>what the hosts do</th></tr>\n", f);
  for (i = 0; i < DEMO_PHASES; i++) {
    fputs("<tr><td>", f);
    esc(f, r->phases[i].name);
    fprintf(f, "</td><td>%g-%g s</td><td>", r->phases[i].start_ms / 1000.0,
            r->phases[i].end_ms / 1000.0);
    esc(f, r->phases[i].what);
    fputs("<br><span class=\"note\">A: <code>", f);
    esc(f, r->phases[i].script[0]);
    fputs("</code> B: <code>", f);
    esc(f, r->phases[i].script[1]);
    fputs("</code></span></td></tr>\n", f);
  }
  fputs("</table>\n", f);

  fputs("<h2>Summary</h2>\n", f);
  table(f, r, r->rows, r->nrows, "");
  table(f, r, r->phase_rows, r->nphase_rows, "by phase");
  fputs("<p class=\"note\">Latency is what the caller waited for each "
        "request, failures included. A request that never got an answer "
        "counts with the time it had waited when the demo cancelled it.</p>"
        "\n", f);

  fputs("<h2>Success rate per second</h2>\n", f);
  chart_success(f, r);
  fputs("<h2>Latency per second (log scale)</h2>\n", f);
  chart_p99(f, r);
  fputs("<h2>Latency distribution (cumulative, log scale)</h2>\n", f);
  chart_cdf(f, r);
  fputs("<p class=\"note\">The share of requests (y) that completed within "
        "a latency (x). Further left and higher is better.</p>\n", f);
  fputs("<h2>Breaker state per host (fortify)</h2>\n", f);
  chart_breakers(f, r);
  fputs("<p class=\"note\">bare libcurl has no breaker: it keeps sending to "
        "the failing host.</p>\n", f);
  fputs("<h2>Retries and fast failures per second (fortify)</h2>\n", f);
  chart_retries(f, r);
  fputs("<p class=\"note\">bare libcurl never retries.</p>\n", f);
  fputs("<p class=\"note\">Written by <code>examples/demo.c</code> "
        "(<code>make demo</code>); see <code>docs/demo.md</code>.</p>\n"
        "</body>\n</html>\n", f);
  rc = ferror(f) ? -1 : 0;
  if (fclose(f) != 0)
    rc = -1;
  if (rc != 0 && errno == 0)
    errno = EIO;
  return rc;
}
