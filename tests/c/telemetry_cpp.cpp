/* The same host as telemetry.c, compiled as C++17: the header must work from C++ too. */

#define _POSIX_C_SOURCE 200809L

#include "vigil.h"

#include <stdio.h>
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

static void sleep_ms(long ms) {
  struct timespec ts;
  ts.tv_sec = ms / 1000;
  ts.tv_nsec = (ms % 1000) * 1000000L;
  nanosleep(&ts, NULL);
}

int main(void) {
  CHECK(vigil_version_number() == VIGIL_VERSION_NUMBER);
  CHECK(VIGIL_VERSION_AT_LEAST(0, 1, 0));
  CHECK(!VIGIL_VERSION_AT_LEAST(VIGIL_VERSION_MAJOR + 1, 0, 0));
  CHECK(strcmp(vigil_last_error_message(), "") == 0);
  CHECK(vigil_strerror(VIGIL_OK) != NULL);
  CHECK(vigil_strerror(12345) != NULL);

  /* NULL out-parameter: a code and a message, nothing written. */
  CHECK(vigil_runtime_open(NULL, NULL) == VIGIL_E_NULL_ARGUMENT);
  CHECK(strstr(vigil_last_error_message(), "out") != NULL);

  /* Options without the INIT macro's struct_size are refused. */
  vigil_runtime_options bad_options = VIGIL_RUNTIME_OPTIONS_INIT;
  bad_options.struct_size = 4;
  vigil_runtime *rt = NULL;
  CHECK(vigil_runtime_open(&bad_options, &rt) == VIGIL_E_INVALID_ARGUMENT);
  CHECK(rt == NULL);

  /* A proc root that does not exist is an I/O error naming the file. */
  vigil_runtime_options missing = VIGIL_RUNTIME_OPTIONS_INIT;
  missing.proc_root = "/nonexistent-vigil-proc";
  CHECK(vigil_runtime_open(&missing, &rt) == VIGIL_E_IO);
  CHECK(strstr(vigil_last_error_message(), "nonexistent-vigil-proc") != NULL);
  CHECK(rt == NULL);

  vigil_runtime_options options = VIGIL_RUNTIME_OPTIONS_INIT;
  options.sample_interval_ms = 20;
  CHECK(vigil_runtime_open(&options, &rt) == VIGIL_OK);
  CHECK(rt != NULL);
  if (rt == NULL) return 1;

  vigil_sample sample = VIGIL_SAMPLE_INIT;
  CHECK(vigil_telemetry_sample(rt, NULL) == VIGIL_E_NULL_ARGUMENT);
  vigil_status st = VIGIL_E_UNAVAILABLE;
  for (int i = 0; i < 250 && (st != VIGIL_OK || sample.seq < 2); i++) {
    st = vigil_telemetry_sample(rt, &sample);
    if (st != VIGIL_OK || sample.seq < 2) sleep_ms(20);
  }
  CHECK(st == VIGIL_OK);
  CHECK(sample.seq >= 2);
  CHECK(sample.memory_total_bytes > 0);
  CHECK(sample.memory_available_bytes <= sample.memory_total_bytes);
  CHECK(sample.cpu_busy_pct == -1.0 || (sample.cpu_busy_pct >= 0.0 && sample.cpu_busy_pct <= 100.0));
  CHECK(sample.per_cpu_count >= 1 && sample.per_cpu_count <= VIGIL_SAMPLE_CPUS_MAX);
  CHECK(sample.load1 >= 0.0);

  vigil_sample small = VIGIL_SAMPLE_INIT;
  small.struct_size = 8;
  CHECK(vigil_telemetry_sample(rt, &small) == VIGIL_E_INVALID_ARGUMENT);
  CHECK(small.seq == 0); /* not written on failure */

  CHECK(vigil_runtime_close(rt) == VIGIL_OK);
  /* The handle is closed: calls report it instead of touching freed memory. */
  CHECK(vigil_telemetry_sample(rt, &sample) == VIGIL_E_CLOSED);
  CHECK(vigil_runtime_close(rt) == VIGIL_E_CLOSED);
  CHECK(vigil_runtime_close(NULL) == VIGIL_OK);

  if (failures == 0) printf("c host: all checks passed\n");
  return failures == 0 ? 0 : 1;
}
