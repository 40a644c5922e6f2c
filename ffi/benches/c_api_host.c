/* The C side of ffi/benches/c_api.rs: times vigil_telemetry_sample and vigil_wal_append per
 * call with clock_gettime(CLOCK_MONOTONIC), as the Rust side times its calls with Instant, and
 * writes the raw durations (native-endian uint64 ns) for the bench to load into hdrhistogram.
 * Usage: c_api_host DATA_DIR CALLS RECORD_BYTES SAMPLE_OUT APPEND_OUT
 * Prints one line: "bulk_append_ns <ns>", the time of CALLS untimed appends in one loop. */
#define _POSIX_C_SOURCE 200809L

#include "vigil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int fail(const char *what, vigil_status st) {
  fprintf(stderr, "%s: %s: %s\n", what, vigil_strerror(st), vigil_last_error_message());
  return 1;
}

static int write_durations(const char *path, const uint64_t *ns, size_t n) {
  FILE *f = fopen(path, "wb");
  if (f == NULL || fwrite(ns, sizeof *ns, n, f) != n || fclose(f) != 0) {
    perror(path);
    return 1;
  }
  return 0;
}

int main(int argc, char **argv) {
  if (argc != 6) {
    fprintf(stderr, "usage: %s DATA_DIR CALLS RECORD_BYTES SAMPLE_OUT APPEND_OUT\n", argv[0]);
    return 2;
  }
  size_t calls = (size_t)strtoull(argv[2], NULL, 10);
  size_t record_bytes = (size_t)strtoull(argv[3], NULL, 10);
  uint64_t *ns = (uint64_t *)malloc(calls * sizeof *ns);
  unsigned char *record = (unsigned char *)calloc(record_bytes + 1, 1);
  if (ns == NULL || record == NULL) return 1;
  memset(record, 'r', record_bytes);

  vigil_runtime_options options = VIGIL_RUNTIME_OPTIONS_INIT;
  options.data_dir = argv[1];
  vigil_runtime *rt = NULL;
  vigil_status st = vigil_runtime_open(&options, &rt);
  if (st != VIGIL_OK) return fail("open", st);

  static vigil_sample sample = VIGIL_SAMPLE_INIT;
  while ((st = vigil_telemetry_sample(rt, &sample)) == VIGIL_E_UNAVAILABLE) {
  }
  if (st != VIGIL_OK) return fail("sample", st);
  for (size_t i = 0; i < calls; i++) {
    uint64_t t0 = now_ns();
    st = vigil_telemetry_sample(rt, &sample);
    ns[i] = now_ns() - t0;
    if (st != VIGIL_OK) return fail("sample", st);
  }
  if (write_durations(argv[4], ns, calls)) return 1;

  uint64_t lsn = 0;
  for (size_t i = 0; i < calls; i++) {
    uint64_t t0 = now_ns();
    st = vigil_wal_append(rt, record, record_bytes, &lsn);
    ns[i] = now_ns() - t0;
    if (st != VIGIL_OK) return fail("append", st);
  }
  if (write_durations(argv[5], ns, calls)) return 1;

  uint64_t t0 = now_ns();
  for (size_t i = 0; i < calls; i++) {
    st = vigil_wal_append(rt, record, record_bytes, &lsn);
    if (st != VIGIL_OK) return fail("append", st);
  }
  printf("bulk_append_ns %llu\n", (unsigned long long)(now_ns() - t0));

  st = vigil_runtime_close(rt);
  if (st != VIGIL_OK) return fail("close", st);
  free(record);
  free(ns);
  return 0;
}
