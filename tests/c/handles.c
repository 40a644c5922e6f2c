/* A C host of libvigil's handles: a handle freed before a new one of the same kind is made
 * (which the allocator is free to place where the freed one lived) is closed for every call,
 * and using or freeing it leaves the new handle alone. For job results, WAL readers and
 * runtimes. Usage: handles DATA_DIR (a fresh directory). Compiled as C11 and (through
 * handles_cpp.cpp) as C++17 by tests/c_api.rs. */
#include "host.h"

static vigil_job *run_echo(vigil_runtime *rt, const char *args_json) {
  vigil_job *job = NULL;
  CHECK(vigil_run(rt, "shell", args_json, NULL, &job) == VIGIL_OK);
  return job;
}

/* 1 when the job's stdout is exactly `text`. */
static int stdout_is(const vigil_job *job, const char *text) {
  const uint8_t *data = NULL;
  size_t len = 0;
  if (vigil_job_output(job, VIGIL_STREAM_STDOUT, &data, &len) != VIGIL_OK) return 0;
  return len == strlen(text) && memcmp(data, text, len) == 0;
}

static vigil_wal_reader *open_reader(vigil_runtime *rt) {
  vigil_wal_reader *reader = NULL;
  CHECK(vigil_wal_reader_open(rt, 0, &reader) == VIGIL_OK);
  return reader;
}

int main(int argc, char **argv) {
  const char *data_dir = data_dir_arg(argc, argv);
  vigil_runtime *rt = open_runtime(data_dir);
  if (rt == NULL) return 1;

  /* Jobs: the first is freed, then a second is run; with a handle that was the address of
   * the result, the second would take the first one's place and the first handle would read
   * (and free) the second job. */
  vigil_job *old_job = run_echo(rt, "{\"cmd\": \"echo old\"}");
  CHECK(old_job != NULL && stdout_is(old_job, "old\n"));
  CHECK(vigil_job_free(old_job) == VIGIL_OK);
  vigil_job *new_job = run_echo(rt, "{\"cmd\": \"echo new\"}");
  if (new_job == NULL) return 1;
  CHECK(new_job != old_job);
  const uint8_t *data = NULL;
  size_t len = 0;
  CHECK(vigil_job_output(old_job, VIGIL_STREAM_STDOUT, &data, &len) == VIGIL_E_CLOSED);
  CHECK(strstr(vigil_last_error_message(), "closed") != NULL);
  vigil_job_info info = VIGIL_JOB_INFO_INIT;
  CHECK(vigil_job_get_info(old_job, &info) == VIGIL_E_CLOSED);
  CHECK(info.job_id == 0);
  const char *json = NULL;
  CHECK(vigil_job_json(old_job, &json) == VIGIL_E_CLOSED);
  CHECK(json == NULL);
  CHECK(vigil_job_free(old_job) == VIGIL_E_CLOSED);
  /* The new job is whole: its output, its info, and it frees once. */
  CHECK(stdout_is(new_job, "new\n"));
  CHECK(vigil_job_get_info(new_job, &info) == VIGIL_OK);
  CHECK(info.status == VIGIL_JOB_COMPLETED);
  CHECK(vigil_job_free(new_job) == VIGIL_OK);
  CHECK(vigil_job_free(new_job) == VIGIL_E_CLOSED);

  /* Many handles freed and made again: none equals a handle freed before it. */
  vigil_wal_reader *seen[64];
  for (int i = 0; i < 64; i++) {
    seen[i] = open_reader(rt);
    CHECK(vigil_wal_reader_close(seen[i]) == VIGIL_OK);
    for (int j = 0; j < i; j++) CHECK(seen[j] != seen[i]);
  }

  /* WAL readers: a stale reader neither reads nor closes the new one. */
  const char record[] = "one record";
  uint64_t lsn = 0;
  CHECK(vigil_wal_append(rt, record, sizeof record, &lsn) == VIGIL_OK);
  CHECK(vigil_wal_sync(rt, NULL) == VIGIL_OK);
  vigil_wal_reader *old_reader = open_reader(rt);
  CHECK(vigil_wal_reader_close(old_reader) == VIGIL_OK);
  vigil_wal_reader *new_reader = open_reader(rt);
  CHECK(new_reader != old_reader);
  char buf[64];
  CHECK(vigil_wal_reader_next(old_reader, buf, sizeof buf, &len, &lsn) == VIGIL_E_CLOSED);
  CHECK(vigil_wal_reader_close(old_reader) == VIGIL_E_CLOSED);
  CHECK(vigil_wal_reader_next(new_reader, buf, sizeof buf, &len, &lsn) == VIGIL_OK);
  CHECK(len == sizeof record && memcmp(buf, record, len) == 0);
  CHECK(vigil_wal_reader_close(new_reader) == VIGIL_OK);

  /* Runtimes: a closed runtime stays closed while a new one is open on the same directory. */
  CHECK(vigil_runtime_close(rt) == VIGIL_OK);
  vigil_runtime *again = open_runtime(data_dir);
  if (again == NULL) return 1;
  CHECK(again != rt);
  CHECK(vigil_wal_append(rt, record, sizeof record, &lsn) == VIGIL_E_CLOSED);
  CHECK(vigil_runtime_close(rt) == VIGIL_E_CLOSED);
  CHECK(vigil_wal_append(again, record, sizeof record, &lsn) == VIGIL_OK);
  CHECK(vigil_runtime_close(again) == VIGIL_OK);

  return verdict("handles host");
}
