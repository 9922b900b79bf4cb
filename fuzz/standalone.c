/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * A main() for the fuzz targets without libFuzzer, so that they build with
 * any C compiler and the committed corpus is replayed in every test run:
 *
 *   fuzz_<name> [-random=N] [-seed=S] FILE_OR_DIR...
 *
 * Every file given, and every regular file in a directory given (sorted by
 * name, not recursive), is passed once to LLVMFuzzerTestOneInput().  With
 * -random=N, N pseudo-random inputs (xorshift from -seed, default 1; sizes
 * up to 4 KiB) follow the files: a cheap smoke test where no fuzzer is
 * available.  Other options starting with '-' are ignored, so a libFuzzer
 * command line also works.  A broken invariant aborts, as under libFuzzer;
 * an unreadable path is an error (exit 1). */
#include "fuzz.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

__attribute__((weak)) int LLVMFuzzerInitialize(int *argc, char ***argv);

static unsigned long replayed;

static int run_file(const char *path) {
  FILE *fp = fopen(path, "rb");
  uint8_t *buf = NULL;
  long len;
  size_t got;

  if (fp == NULL) {
    perror(path);
    return -1;
  }
  if (fseek(fp, 0, SEEK_END) != 0 || (len = ftell(fp)) < 0 ||
      fseek(fp, 0, SEEK_SET) != 0) {
    perror(path);
    fclose(fp);
    return -1;
  }
  /* One spare byte: malloc(0) may return NULL. */
  buf = malloc((size_t)len + 1);
  if (buf == NULL) {
    fclose(fp);
    return -1;
  }
  got = fread(buf, 1, (size_t)len, fp);
  fclose(fp);
  if (got != (size_t)len) {
    fprintf(stderr, "%s: short read\n", path);
    free(buf);
    return -1;
  }
  LLVMFuzzerTestOneInput(buf, got);
  free(buf);
  replayed++;
  return 0;
}

static int by_name(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static int run_dir(const char *dir) {
  DIR *d = opendir(dir);
  struct dirent *e;
  char **names = NULL;
  size_t n = 0, cap = 0, i;
  int rc = 0;

  if (d == NULL) {
    perror(dir);
    return -1;
  }
  while ((e = readdir(d)) != NULL) {
    char *path;
    struct stat st;
    if (e->d_name[0] == '.')
      continue;
    path = malloc(strlen(dir) + strlen(e->d_name) + 2);
    if (path == NULL)
      break;
    sprintf(path, "%s/%s", dir, e->d_name);
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
      free(path);
      continue;
    }
    if (n == cap) {
      char **grown;
      cap = cap ? cap * 2 : 64;
      grown = realloc(names, cap * sizeof(*names));
      if (grown == NULL) {
        free(path);
        break;
      }
      names = grown;
    }
    names[n++] = path;
  }
  closedir(d);
  if (n > 0)
    qsort(names, n, sizeof(*names), by_name);
  for (i = 0; i < n; i++) {
    if (run_file(names[i]) != 0)
      rc = -1;
    free(names[i]);
  }
  free(names);
  return rc;
}

static uint64_t xorshift(uint64_t *s) {
  uint64_t x = *s;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return *s = x;
}

static void run_random(unsigned long count, uint64_t seed) {
  static uint8_t buf[4096];
  uint64_t s = seed ? seed : 1;
  unsigned long i;
  size_t len, k;
  for (i = 0; i < count; i++) {
    len = (size_t)(xorshift(&s) % sizeof(buf));
    for (k = 0; k < len; k++)
      buf[k] = (uint8_t)xorshift(&s);
    LLVMFuzzerTestOneInput(buf, len);
    replayed++;
  }
}

int main(int argc, char **argv) {
  unsigned long random_runs = 0;
  uint64_t seed = 1;
  int i, rc = 0;
  struct stat st;

  if (LLVMFuzzerInitialize != NULL)
    LLVMFuzzerInitialize(&argc, &argv);
  for (i = 1; i < argc; i++) {
    if (strncmp(argv[i], "-random=", 8) == 0) {
      random_runs = strtoul(argv[i] + 8, NULL, 10);
      continue;
    }
    if (strncmp(argv[i], "-seed=", 6) == 0) {
      seed = strtoull(argv[i] + 6, NULL, 10);
      continue;
    }
    if (argv[i][0] == '-')
      continue;
    if (stat(argv[i], &st) != 0) {
      perror(argv[i]);
      rc = 1;
    } else if (S_ISDIR(st.st_mode) ? run_dir(argv[i]) : run_file(argv[i])) {
      rc = 1;
    }
  }
  run_random(random_runs, seed);
  printf("%s: %lu inputs replayed\n", argv[0], replayed);
  return rc;
}
