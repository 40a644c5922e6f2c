/* Shared by the C hosts of libvigil in tests/c: a CHECK that counts failures and prints the
 * last vigil error, the data directory argument, and the closing verdict. Each host is one
 * translation unit, compiled as C11 and as C++17. */
#ifndef VIGIL_TEST_HOST_H
#define VIGIL_TEST_HOST_H

#define _POSIX_C_SOURCE 200809L

#include "vigil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int failures = 0;

#define CHECK(cond)                                                              \
  do {                                                                           \
    if (!(cond)) {                                                               \
      fprintf(stderr, "%s:%d: check failed: %s (last error: %s)\n", __FILE__,     \
              __LINE__, #cond, vigil_last_error_message());                      \
      failures++;                                                                \
    }                                                                            \
  } while (0)

static inline void sleep_ms(long ms) {
  struct timespec ts;
  ts.tv_sec = ms / 1000;
  ts.tv_nsec = (ms % 1000) * 1000000L;
  nanosleep(&ts, NULL);
}

/* The fresh data directory the test passes as the first argument. */
static inline const char *data_dir_arg(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s DATA_DIR\n", argv[0]);
    exit(2);
  }
  return argv[1];
}

/* Opens a runtime on data_dir sampling every 20 ms, with data_dir as the job root. */
static inline vigil_runtime *open_runtime(const char *data_dir) {
  vigil_runtime_options options = VIGIL_RUNTIME_OPTIONS_INIT;
  options.data_dir = data_dir;
  options.job_root = data_dir;
  options.sample_interval_ms = 20;
  vigil_runtime *rt = NULL;
  CHECK(vigil_runtime_open(&options, &rt) == VIGIL_OK);
  return rt;
}

static inline int verdict(const char *host) {
  if (failures == 0) printf("%s: all checks passed\n", host);
  return failures == 0 ? 0 : 1;
}

#endif
