/* A C host that reads a log which may be damaged, for tests/wal_corruption_matrix.rs.
 *
 *   wal_damage append DATA_DIR SEGMENT_BYTES TAG COUNT
 *       appends COUNT user records "TAG-<i>" and syncs them
 *   wal_damage read DATA_DIR SEGMENT_BYTES
 *       prints every durable user record, one per line: "<lsn> <text>", until VIGIL_END_OF_LOG
 *   wal_damage read-later DATA_DIR SEGMENT_BYTES
 *       opens the runtime, prints "open", waits for a line on stdin (the log may be damaged
 *       meanwhile), then reads as `read` does
 *
 * SEGMENT_BYTES is vigil_runtime_options.wal_segment_bytes (the size the log was built with).
 *
 * Exit codes: 0 the whole answer was given; 10 + status when a vigil call failed (so a damaged
 * log refused with VIGIL_E_CORRUPT exits 20), with "<call>: <strerror>: <last error message>"
 * on stderr; 2 for a usage error. A read that fails part-way has printed the records before
 * the failure: the exit code says the answer is incomplete. */
#include "vigil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { RECORD_BYTES_MAX = 4096 };

static int failed(const char *call, vigil_status status) {
  fprintf(stderr, "%s: %s: %s\n", call, vigil_strerror((int)status), vigil_last_error_message());
  return 10 + (int)status;
}

static uint64_t segment_bytes = 0;

static vigil_status open_log(const char *data_dir, vigil_runtime **rt) {
  vigil_runtime_options options = VIGIL_RUNTIME_OPTIONS_INIT;
  options.data_dir = data_dir;
  options.wal_segment_bytes = segment_bytes;
  options.job_root = data_dir;
  options.sample_interval_ms = 20;
  return vigil_runtime_open(&options, rt);
}

static int append(const char *data_dir, const char *tag, long count) {
  vigil_runtime *rt = NULL;
  vigil_status st = open_log(data_dir, &rt);
  if (st != VIGIL_OK) return failed("vigil_runtime_open", st);
  for (long i = 0; i < count; i++) {
    char text[128];
    int n = snprintf(text, sizeof text, "%s-%ld", tag, i);
    uint64_t lsn = 0;
    st = vigil_wal_append(rt, text, (size_t)n, &lsn);
    if (st != VIGIL_OK) {
      vigil_runtime_close(rt);
      return failed("vigil_wal_append", st);
    }
  }
  st = vigil_wal_sync(rt, NULL);
  if (st != VIGIL_OK) {
    vigil_runtime_close(rt);
    return failed("vigil_wal_sync", st);
  }
  st = vigil_runtime_close(rt);
  return st == VIGIL_OK ? 0 : failed("vigil_runtime_close", st);
}

static int read_all(const char *data_dir, int later) {
  vigil_runtime *rt = NULL;
  vigil_status st = open_log(data_dir, &rt);
  if (st != VIGIL_OK) return failed("vigil_runtime_open", st);
  if (later) {
    char line[16];
    printf("open\n");
    fflush(stdout);
    if (fgets(line, sizeof line, stdin) == NULL) {
      vigil_runtime_close(rt);
      return 2;
    }
  }
  vigil_wal_reader *reader = NULL;
  st = vigil_wal_reader_open(rt, 1, &reader);
  if (st != VIGIL_OK) {
    vigil_runtime_close(rt);
    return failed("vigil_wal_reader_open", st);
  }
  static char buf[RECORD_BYTES_MAX + 1];
  size_t len = 0;
  uint64_t lsn = 0;
  int code = 0;
  for (;;) {
    st = vigil_wal_reader_next(reader, buf, RECORD_BYTES_MAX, &len, &lsn);
    if (st == VIGIL_END_OF_LOG) break;
    if (st != VIGIL_OK) {
      code = failed("vigil_wal_reader_next", st);
      break;
    }
    buf[len] = '\0';
    printf("%llu %s\n", (unsigned long long)lsn, buf);
  }
  vigil_wal_reader_close(reader);
  st = vigil_runtime_close(rt);
  if (code == 0 && st != VIGIL_OK) code = failed("vigil_runtime_close", st);
  return code;
}

/* A non-negative decimal number, or -1. */
static long long number(const char *text) {
  char *end = NULL;
  long long n = strtoll(text, &end, 10);
  return (end == text || *end != '\0' || n < 0) ? -1 : n;
}

int main(int argc, char **argv) {
  if (argc >= 4 && number(argv[3]) >= 0) segment_bytes = (uint64_t)number(argv[3]);
  if (argc == 6 && strcmp(argv[1], "append") == 0 && number(argv[5]) >= 0) {
    return append(argv[2], argv[4], (long)number(argv[5]));
  }
  if (argc == 4 && strcmp(argv[1], "read") == 0) return read_all(argv[2], 0);
  if (argc == 4 && strcmp(argv[1], "read-later") == 0) return read_all(argv[2], 1);
  fprintf(stderr,
          "usage: %s append DATA_DIR SEGMENT_BYTES TAG COUNT | read[-later] DATA_DIR "
          "SEGMENT_BYTES\n",
          argv[0]);
  return 2;
}
