/* A C host of libvigil's jobs: a job that completes and its output, a job killed at its
 * deadline, a failing job, refused requests (bad JSON, unknown capability, NULL and closed
 * handles), the job list and a job's record. Usage: jobs DATA_DIR (a fresh directory).
 * Compiled as C11 and (through jobs_cpp.cpp) as C++17 by tests/c_api.rs. */
#include "host.h"

#include <unistd.h>

/* Runs `cmd` with the shell capability; NULL on failure. */
static vigil_job *run_shell(vigil_runtime *rt, const char *args_json, const vigil_limits *limits) {
  vigil_job *job = NULL;
  CHECK(vigil_run(rt, "shell", args_json, limits, &job) == VIGIL_OK);
  return job;
}

static vigil_job_info info_of(const vigil_job *job) {
  vigil_job_info info = VIGIL_JOB_INFO_INIT;
  CHECK(vigil_job_get_info(job, &info) == VIGIL_OK);
  return info;
}

/* Copies the job list (optionally filtered) into a fresh string the caller frees. */
static char *jobs_list(vigil_runtime *rt, const char *status) {
  size_t needed = 0;
  CHECK(vigil_jobs_list_json(rt, status, NULL, 0, &needed) == VIGIL_E_BUFFER_TOO_SMALL);
  CHECK(needed >= 3); /* at least "[]" and the NUL */
  char *buf = (char *)malloc(needed);
  size_t again = 0;
  CHECK(vigil_jobs_list_json(rt, status, buf, needed, &again) == VIGIL_OK);
  CHECK(again == needed);
  CHECK(strlen(buf) + 1 == needed);
  return buf;
}

int main(int argc, char **argv) {
  const char *data_dir = data_dir_arg(argc, argv);
  vigil_runtime *rt = open_runtime(data_dir);
  if (rt == NULL) return 1;

  /* A job that completes: its stdout, exit code and usage. */
  vigil_job *ok = run_shell(rt, "{\"cmd\": \"echo hello from vigil; echo oops >&2\"}", NULL);
  if (ok == NULL) return 1;
  vigil_job_info info = info_of(ok);
  CHECK(info.status == VIGIL_JOB_COMPLETED);
  CHECK(info.exit_code == 0);
  CHECK(info.signal == 0);
  CHECK(info.job_id >= 1);
  CHECK(info.lsn >= 1);
  CHECK(info.stdout_truncated == 0);
  CHECK(info.cpu_usage_us >= -1);
  CHECK(info.memory_peak_bytes >= -1);
  const uint8_t *data = NULL;
  size_t len = 0;
  CHECK(vigil_job_output(ok, VIGIL_STREAM_STDOUT, &data, &len) == VIGIL_OK);
  CHECK(len == info.stdout_len);
  CHECK(len == strlen("hello from vigil\n") && memcmp(data, "hello from vigil\n", len) == 0);
  CHECK(vigil_job_output(ok, VIGIL_STREAM_STDERR, &data, &len) == VIGIL_OK);
  CHECK(len == 5 && memcmp(data, "oops\n", 5) == 0);
  const char *message = "unset";
  CHECK(vigil_job_error(ok, &message) == VIGIL_OK);
  CHECK(message == NULL);
  const char *json = NULL;
  CHECK(vigil_job_json(ok, &json) == VIGIL_OK);
  CHECK(json != NULL && strstr(json, "\"status\":\"completed\"") != NULL);
  CHECK(strstr(json, "hello from vigil") != NULL);
  vigil_job_info small = VIGIL_JOB_INFO_INIT;
  small.struct_size = 4;
  CHECK(vigil_job_get_info(ok, &small) == VIGIL_E_INVALID_ARGUMENT);
  CHECK(small.job_id == 0);
  CHECK(vigil_job_output(ok, VIGIL_STREAM_STDOUT, NULL, &len) == VIGIL_E_NULL_ARGUMENT);
  CHECK(vigil_job_output(ok, 7, &data, &len) == VIGIL_E_INVALID_ARGUMENT);
  uint64_t ok_id = info.job_id;

  /* A job past its deadline is killed and reported as timed out. */
  vigil_limits limits = VIGIL_LIMITS_INIT;
  limits.timeout_ms = 300;
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  vigil_job *slow = run_shell(rt, "{\"cmd\": \"sleep 5\"}", &limits);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  if (slow == NULL) return 1;
  double took_ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
  info = info_of(slow);
  CHECK(info.status == VIGIL_JOB_TIMED_OUT);
  CHECK(info.exit_code == -1);
  CHECK(info.wall_ms >= 300 && info.wall_ms < 4000);
  CHECK(took_ms < 4000.0);
  CHECK(vigil_job_error(slow, &message) == VIGIL_OK);
  CHECK(message != NULL && strlen(message) > 0);
  CHECK(vigil_job_json(slow, &json) == VIGIL_OK);
  CHECK(strstr(json, "\"status\":\"timed_out\"") != NULL);
  /* Who holds the deadline: vigil's supervisor, never "kernel". */
  CHECK(strstr(json, "\"requested\":\"300ms\",\"strength\":\"supervisor\"") != NULL);

  /* require_enforcement: where a requested limit is not held (no cgroup: the kill may miss
     a process), the job is refused before it runs; where all are held, it runs. */
  vigil_limits strict = VIGIL_LIMITS_INIT;
  strict.timeout_ms = 5000;
  strict.require_enforcement = 1;
  vigil_job *required = run_shell(rt, "{\"cmd\": \"true\"}", &strict);
  if (required == NULL) return 1;
  info = info_of(required);
  CHECK(vigil_job_json(required, &json) == VIGIL_OK);
  if (strstr(json, "\"kill_complete\":true") != NULL) {
    CHECK(info.status == VIGIL_JOB_COMPLETED);
    CHECK(info.limits_not_held == 0);
  } else {
    CHECK(info.status == VIGIL_JOB_REJECTED);
    CHECK(strstr(json, "wall limit 5s not held") != NULL);
    CHECK((info.limits_not_held & VIGIL_LIMIT_WALL) != 0);
  }
  /* A caller built before limits_not_held existed passes the shorter struct: it is accepted,
     and nothing past its end is written. */
  unsigned char old_info[sizeof(vigil_job_info) + 8];
  memset(old_info, 0xAB, sizeof old_info);
  vigil_job_info *old = (vigil_job_info *)(void *)old_info;
  old->struct_size = (uint32_t)offsetof(vigil_job_info, limits_not_held);
  CHECK(vigil_job_get_info(required, old) == VIGIL_OK);
  CHECK(old->job_id == info.job_id && old->status == info.status);
  for (size_t i = offsetof(vigil_job_info, limits_not_held); i < sizeof old_info; i++)
    CHECK(old_info[i] == 0xAB);
  vigil_job_free(required);

  /* user: a shell job as nobody. Switching needs root: otherwise the job is refused before it
     runs, saying why; an unknown name is refused either way. */
  vigil_limits as_nobody = VIGIL_LIMITS_INIT;
  as_nobody.user = "nobody";
  vigil_job *switched = run_shell(rt, "{\"cmd\": \"id -u\"}", &as_nobody);
  if (switched == NULL) return 1;
  info = info_of(switched);
  CHECK(vigil_job_json(switched, &json) == VIGIL_OK);
  if (geteuid() == 0) {
    CHECK(info.status == VIGIL_JOB_COMPLETED);
    CHECK(vigil_job_output(switched, VIGIL_STREAM_STDOUT, &data, &len) == VIGIL_OK);
    CHECK(len == 6 && memcmp(data, "65534\n", 6) == 0);
    CHECK(strstr(json, "\"uid\":65534,\"user\":\"nobody\"") != NULL);
  } else {
    CHECK(info.status == VIGIL_JOB_REJECTED);
    CHECK(strstr(json, "not root") != NULL);
  }
  vigil_job_free(switched);
  as_nobody.user = "no-such-user-of-vigil";
  vigil_job *unknown = run_shell(rt, "{\"cmd\": \"true\"}", &as_nobody);
  if (unknown == NULL) return 1;
  CHECK(info_of(unknown).status == VIGIL_JOB_REJECTED);
  CHECK(vigil_job_error(unknown, &message) == VIGIL_OK);
  CHECK(message != NULL && strstr(message, "no user named") != NULL);
  vigil_job_free(unknown);

  /* A job that exits non-zero has failed, with its exit code. */
  vigil_job *failed = run_shell(rt, "{\"cmd\": \"exit 3\"}", NULL);
  if (failed == NULL) return 1;
  info = info_of(failed);
  CHECK(info.status == VIGIL_JOB_FAILED);
  CHECK(info.exit_code == 3);

  /* Arguments the capability refuses: a rejected job, recorded, with the reason. */
  vigil_job *rejected = NULL;
  CHECK(vigil_run(rt, "shell", "{\"command\": \"true\"}", NULL, &rejected) == VIGIL_OK);
  if (rejected == NULL) return 1;
  info = info_of(rejected);
  CHECK(info.status == VIGIL_JOB_REJECTED);
  CHECK(vigil_job_error(rejected, &message) == VIGIL_OK);
  CHECK(message != NULL && strstr(message, "cmd") != NULL);

  /* Refused before anything runs: codes and messages, no handle written. */
  vigil_job *none = NULL;
  CHECK(vigil_run(rt, "shell", "{\"cmd\": ", NULL, &none) == VIGIL_E_INVALID_ARGUMENT);
  CHECK(strstr(vigil_last_error_message(), "JSON") != NULL);
  CHECK(vigil_run(rt, "no.such.capability", "{}", NULL, &none) == VIGIL_E_INVALID_ARGUMENT);
  CHECK(strstr(vigil_last_error_message(), "no.such.capability") != NULL);
  CHECK(vigil_run(rt, NULL, "{}", NULL, &none) == VIGIL_E_NULL_ARGUMENT);
  CHECK(vigil_run(rt, "shell", "{}", NULL, NULL) == VIGIL_E_NULL_ARGUMENT);
  CHECK(vigil_run(NULL, "shell", "{}", NULL, &none) == VIGIL_E_NULL_ARGUMENT);
  CHECK(vigil_run(rt, "shell", "{\"cmd\": \"\xff\"}", NULL, &none) == VIGIL_E_INVALID_ARGUMENT);
  CHECK(strstr(vigil_last_error_message(), "UTF-8") != NULL);
  vigil_limits bad_limits = VIGIL_LIMITS_INIT;
  bad_limits.struct_size = 3;
  CHECK(vigil_run(rt, "shell", "{\"cmd\": \"true\"}", &bad_limits, &none) == VIGIL_E_INVALID_ARGUMENT);
  CHECK(none == NULL);

  /* The list: every job recorded, filters, the buffer-size protocol. */
  char *all = jobs_list(rt, NULL);
  CHECK(strstr(all, "\"status\":\"completed\"") != NULL);
  CHECK(strstr(all, "\"status\":\"timed_out\"") != NULL);
  CHECK(strstr(all, "\"status\":\"failed\"") != NULL);
  CHECK(strstr(all, "\"status\":\"rejected\"") != NULL);
  CHECK(strstr(all, "no.such.capability") == NULL); /* nothing recorded for it */
  free(all);
  char *timed_out = jobs_list(rt, "timed_out");
  CHECK(strstr(timed_out, "\"status\":\"timed_out\"") != NULL);
  CHECK(strstr(timed_out, "\"status\":\"completed\"") == NULL);
  free(timed_out);
  size_t needed = 0;
  char tiny[2] = {'x', 'x'};
  CHECK(vigil_jobs_list_json(rt, NULL, tiny, sizeof tiny, &needed) == VIGIL_E_BUFFER_TOO_SMALL);
  CHECK(tiny[0] == 'x' && needed > sizeof tiny);
  CHECK(vigil_jobs_list_json(rt, NULL, tiny, sizeof tiny, NULL) == VIGIL_E_NULL_ARGUMENT);
  /* An unknown status is refused, naming the valid ones; nothing is written. */
  CHECK(vigil_jobs_list_json(rt, "done", tiny, sizeof tiny, &needed) == VIGIL_E_INVALID_ARGUMENT);
  CHECK(tiny[0] == 'x');
  CHECK(strstr(vigil_last_error_message(), "timed_out") != NULL);

  /* One job's full record, from the log. */
  CHECK(vigil_job_detail_json(rt, ok_id, NULL, 0, &needed) == VIGIL_E_BUFFER_TOO_SMALL);
  char *detail = (char *)malloc(needed);
  CHECK(vigil_job_detail_json(rt, ok_id, detail, needed, &needed) == VIGIL_OK);
  CHECK(strstr(detail, "hello from vigil") != NULL);
  free(detail);
  CHECK(vigil_job_detail_json(rt, 999999, NULL, 0, &needed) == VIGIL_E_INVALID_ARGUMENT);

  /* Limits beyond what the kernel or a deadline takes are refused up front, by name. */
  vigil_limits too_many = VIGIL_LIMITS_INIT;
  too_many.pids = 4194305;
  CHECK(vigil_run(rt, "shell", "{\"cmd\": \"true\"}", &too_many, &none) == VIGIL_E_INVALID_ARGUMENT);
  CHECK(strstr(vigil_last_error_message(), "pids") != NULL);
  vigil_limits forever = VIGIL_LIMITS_INIT;
  forever.timeout_ms = UINT64_MAX;
  CHECK(vigil_run(rt, "shell", "{\"cmd\": \"true\"}", &forever, &none) == VIGIL_E_INVALID_ARGUMENT);
  CHECK(strstr(vigil_last_error_message(), "timeout_ms") != NULL);
  CHECK(none == NULL);

  /* The sandbox: a strict job runs and its record labels the network rule; an unknown mode
   * and a relative path are refused up front. */
  vigil_limits sandboxed = VIGIL_LIMITS_INIT;
  sandboxed.sandbox = VIGIL_SANDBOX_STRICT;
  vigil_job *strict_job = run_shell(rt, "{\"cmd\": \"echo confined\"}", &sandboxed);
  if (strict_job == NULL) return 1;
  vigil_job_info strict_info = info_of(strict_job);
  CHECK(strict_info.status == VIGIL_JOB_COMPLETED);
  CHECK(vigil_job_detail_json(rt, strict_info.job_id, NULL, 0, &needed) == VIGIL_E_BUFFER_TOO_SMALL);
  char *strict_detail = (char *)malloc(needed);
  CHECK(vigil_job_detail_json(rt, strict_info.job_id, strict_detail, needed, &needed) == VIGIL_OK);
  CHECK(strstr(strict_detail, "sandbox.network") != NULL);
  free(strict_detail);
  vigil_job_free(strict_job);
  vigil_limits bad_mode = VIGIL_LIMITS_INIT;
  bad_mode.sandbox = 7;
  CHECK(vigil_run(rt, "shell", "{\"cmd\": \"true\"}", &bad_mode, &none) == VIGIL_E_INVALID_ARGUMENT);
  CHECK(strstr(vigil_last_error_message(), "sandbox") != NULL);
  const char *relative[] = {"relative/dir"};
  vigil_limits bad_path = VIGIL_LIMITS_INIT;
  bad_path.allow_write = relative;
  bad_path.allow_write_count = 1;
  CHECK(vigil_run(rt, "shell", "{\"cmd\": \"true\"}", &bad_path, &none) == VIGIL_E_INVALID_ARGUMENT);
  CHECK(strstr(vigil_last_error_message(), "allow_write") != NULL);
  CHECK(none == NULL);

  /* Job handles outlive the runtime; freed handles are reported, NULL is a no-op. */
  CHECK(vigil_runtime_close(rt) == VIGIL_OK);
  CHECK(vigil_run(rt, "shell", "{}", NULL, &none) == VIGIL_E_CLOSED);
  CHECK(vigil_job_output(ok, VIGIL_STREAM_STDOUT, &data, &len) == VIGIL_OK);
  CHECK(len == strlen("hello from vigil\n"));
  CHECK(vigil_job_free(ok) == VIGIL_OK);
  CHECK(vigil_job_get_info(ok, &info) == VIGIL_E_CLOSED);
  CHECK(vigil_job_free(ok) == VIGIL_E_CLOSED);
  CHECK(vigil_job_free(NULL) == VIGIL_OK);
  CHECK(vigil_job_free(slow) == VIGIL_OK);
  CHECK(vigil_job_free(failed) == VIGIL_OK);
  CHECK(vigil_job_free(rejected) == VIGIL_OK);

  return verdict("jobs host");
}
