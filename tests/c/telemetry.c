/* A C host of libvigil: versions, argument errors, telemetry, closed handles. Usage:
 * telemetry DATA_DIR (a fresh directory). Exits 0 on success; prints what failed otherwise.
 * Compiled as C11 and (through telemetry_cpp.cpp) as C++17 by tests/c_api.rs. */
#include "host.h"

int main(int argc, char **argv) {
  const char *data_dir = data_dir_arg(argc, argv);
  CHECK(vigil_version_number() == VIGIL_VERSION_NUMBER);
  CHECK(VIGIL_VERSION_AT_LEAST(0, 1, 0));
  CHECK(!VIGIL_VERSION_AT_LEAST(VIGIL_VERSION_MAJOR + 1, 0, 0));
  CHECK(strcmp(vigil_last_error_message(), "") == 0);
  CHECK(vigil_strerror(VIGIL_OK) != NULL);
  CHECK(vigil_strerror(12345) != NULL);
  CHECK(strcmp(vigil_strerror(VIGIL_END_OF_LOG), vigil_strerror(VIGIL_E_CORRUPT)) != 0);

  /* NULL out-parameter and NULL options: a code and a message, nothing written. */
  vigil_runtime_options options = VIGIL_RUNTIME_OPTIONS_INIT;
  options.data_dir = data_dir;
  CHECK(vigil_runtime_open(&options, NULL) == VIGIL_E_NULL_ARGUMENT);
  CHECK(strstr(vigil_last_error_message(), "out") != NULL);
  vigil_runtime *rt = NULL;
  CHECK(vigil_runtime_open(NULL, &rt) == VIGIL_E_NULL_ARGUMENT);
  CHECK(strstr(vigil_last_error_message(), "options") != NULL);
  CHECK(rt == NULL);

  /* Options without the INIT macro's struct_size, or without a data directory, are refused. */
  vigil_runtime_options bad_options = VIGIL_RUNTIME_OPTIONS_INIT;
  bad_options.data_dir = data_dir;
  bad_options.struct_size = 4;
  CHECK(vigil_runtime_open(&bad_options, &rt) == VIGIL_E_INVALID_ARGUMENT);
  CHECK(strstr(vigil_last_error_message(), "VIGIL_RUNTIME_OPTIONS_INIT") != NULL);
  vigil_runtime_options no_dir = VIGIL_RUNTIME_OPTIONS_INIT;
  CHECK(vigil_runtime_open(&no_dir, &rt) == VIGIL_E_NULL_ARGUMENT);
  CHECK(strstr(vigil_last_error_message(), "data_dir") != NULL);
  vigil_limits bad_limits = VIGIL_LIMITS_INIT;
  bad_limits.struct_size = 8;
  options.default_limits = &bad_limits;
  CHECK(vigil_runtime_open(&options, &rt) == VIGIL_E_INVALID_ARGUMENT);
  CHECK(strstr(vigil_last_error_message(), "VIGIL_LIMITS_INIT") != NULL);
  options.default_limits = NULL;
  CHECK(rt == NULL);

  /* A proc root that does not exist is an I/O error naming the file. */
  vigil_runtime_options missing = VIGIL_RUNTIME_OPTIONS_INIT;
  missing.data_dir = data_dir;
  missing.proc_root = "/nonexistent-vigil-proc";
  CHECK(vigil_runtime_open(&missing, &rt) == VIGIL_E_IO);
  CHECK(strstr(vigil_last_error_message(), "nonexistent-vigil-proc") != NULL);
  CHECK(rt == NULL);

  options.sample_interval_ms = 20;
  CHECK(vigil_runtime_open(&options, &rt) == VIGIL_OK);
  CHECK(rt != NULL);
  if (rt == NULL) return 1;

  /* A second runtime shares the data directory and its log: appends from both get distinct
   * LSNs. */
  vigil_runtime *second = NULL;
  CHECK(vigil_runtime_open(&options, &second) == VIGIL_OK);
  CHECK(second != NULL);
  uint64_t first_lsn = 0, second_lsn = 0;
  CHECK(vigil_wal_append(rt, "a", 1, &first_lsn) == VIGIL_OK);
  CHECK(vigil_wal_append(second, "b", 1, &second_lsn) == VIGIL_OK);
  CHECK(second_lsn > first_lsn);
  CHECK(vigil_runtime_close(second) == VIGIL_OK);

  vigil_sample sample = VIGIL_SAMPLE_INIT;
  CHECK(vigil_telemetry_sample(rt, NULL) == VIGIL_E_NULL_ARGUMENT);
  CHECK(vigil_telemetry_sample(NULL, &sample) == VIGIL_E_NULL_ARGUMENT);
  vigil_status st = VIGIL_E_UNAVAILABLE;
  for (int i = 0; i < 250 && (st != VIGIL_OK || sample.seq < 3); i++) {
    st = vigil_telemetry_sample(rt, &sample);
    if (st != VIGIL_OK || sample.seq < 3) sleep_ms(20);
  }
  CHECK(st == VIGIL_OK);
  CHECK(sample.seq >= 3);
  CHECK(sample.memory_total_bytes > 0);
  CHECK(sample.memory_available_bytes <= sample.memory_total_bytes);
  CHECK(sample.cpu_busy_pct == -1.0 || (sample.cpu_busy_pct >= 0.0 && sample.cpu_busy_pct <= 100.0));
  CHECK(sample.per_cpu_count >= 1 && sample.per_cpu_count <= VIGIL_SAMPLE_CPUS_MAX);
  CHECK(sample.load1 >= 0.0);

  vigil_sample small = VIGIL_SAMPLE_INIT;
  small.struct_size = 8;
  CHECK(vigil_telemetry_sample(rt, &small) == VIGIL_E_INVALID_ARGUMENT);
  CHECK(small.seq == 0); /* not written on failure */

  /* History: how many exist, then the newest two, oldest first, in sequence. */
  size_t written = 99, available = 0;
  CHECK(vigil_telemetry_history(rt, 0, NULL, 0, &written, &available) == VIGIL_OK);
  CHECK(written == 0);
  CHECK(available >= 3 && available <= VIGIL_SAMPLE_HISTORY_MAX);
  vigil_sample history[2] = {VIGIL_SAMPLE_INIT, VIGIL_SAMPLE_INIT};
  CHECK(vigil_telemetry_history(rt, 0, history, 2, &written, &available) == VIGIL_OK);
  CHECK(written == 2);
  CHECK(history[1].seq == history[0].seq + 1);
  CHECK(history[1].seq >= sample.seq);
  CHECK(history[0].memory_total_bytes == sample.memory_total_bytes);
  /* Only samples after a sequence number. */
  CHECK(vigil_telemetry_history(rt, history[1].seq, NULL, 0, &written, &available) == VIGIL_OK);
  CHECK(available <= 5);
  CHECK(vigil_telemetry_history(rt, 0, NULL, 3, &written, NULL) == VIGIL_E_NULL_ARGUMENT);
  CHECK(vigil_telemetry_history(rt, 0, history, 2, NULL, NULL) == VIGIL_E_NULL_ARGUMENT);

  CHECK(vigil_runtime_close(rt) == VIGIL_OK);
  /* The handle is closed: calls report it instead of touching freed memory. */
  CHECK(vigil_telemetry_sample(rt, &sample) == VIGIL_E_CLOSED);
  CHECK(strstr(vigil_last_error_message(), "closed") != NULL);
  CHECK(vigil_runtime_close(rt) == VIGIL_E_CLOSED);
  CHECK(vigil_runtime_close(NULL) == VIGIL_OK);

  /* A runtime opens again on the directory once the others are closed. */
  CHECK(vigil_runtime_open(&options, &second) == VIGIL_OK);
  CHECK(vigil_runtime_close(second) == VIGIL_OK);

  return verdict("telemetry host");
}
