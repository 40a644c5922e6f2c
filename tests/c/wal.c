/* A C host of libvigil's write-ahead log: append opaque records (from several threads at
 * once), sync, read them back byte for byte, the buffer-size protocol, the end of the log,
 * and the records surviving a reopen. Usage: wal DATA_DIR (a fresh directory). Compiled as
 * C11 and (through wal_cpp.cpp) as C++17 by tests/c_api.rs. */
#include "host.h"

#include <pthread.h>

enum { THREADS = 4, RECORDS_PER_THREAD = 250 };

struct appender {
  vigil_runtime *rt;
  int id;
  int errors;
};

/* A record: "t<thread>-<index>". */
static int record_text(char *buf, size_t len, int thread, int index) {
  return snprintf(buf, len, "t%d-%d", thread, index);
}

static void *append_records(void *arg) {
  struct appender *a = (struct appender *)arg;
  uint64_t last = 0;
  for (int i = 0; i < RECORDS_PER_THREAD; i++) {
    char text[32];
    int n = record_text(text, sizeof text, a->id, i);
    uint64_t lsn = 0;
    if (vigil_wal_append(a->rt, text, (size_t)n, &lsn) != VIGIL_OK || lsn <= last) a->errors++;
    last = lsn;
    vigil_sample sample = VIGIL_SAMPLE_INIT;
    vigil_status st = vigil_telemetry_sample(a->rt, &sample);
    if (st != VIGIL_OK && st != VIGIL_E_UNAVAILABLE) a->errors++;
    if (i % 50 == 0 && vigil_wal_sync(a->rt, NULL) != VIGIL_OK) a->errors++;
  }
  return NULL;
}

/* Reads every user record from `from`; checks each thread's records arrive in its order. */
static int read_all(vigil_runtime *rt, uint64_t from, int *next_index) {
  vigil_wal_reader *reader = NULL;
  CHECK(vigil_wal_reader_open(rt, from, &reader) == VIGIL_OK);
  int count = 0;
  char buf[64];
  size_t len = 0;
  uint64_t lsn = 0, last_lsn = 0;
  vigil_status st;
  while ((st = vigil_wal_reader_next(reader, buf, sizeof buf - 1, &len, &lsn)) == VIGIL_OK) {
    CHECK(lsn > last_lsn);
    last_lsn = lsn;
    int thread = -1, index = -1;
    char text[64];
    memcpy(text, buf, len);
    text[len] = '\0';
    if (sscanf(text, "t%d-%d", &thread, &index) == 2 && thread >= 0 && thread < THREADS) {
      CHECK(index == next_index[thread]);
      next_index[thread] = index + 1;
    }
    count++;
  }
  CHECK(st == VIGIL_END_OF_LOG);
  CHECK(strstr(vigil_last_error_message(), "end of the log") != NULL);
  CHECK(vigil_wal_reader_close(reader) == VIGIL_OK);
  return count;
}

int main(int argc, char **argv) {
  const char *data_dir = data_dir_arg(argc, argv);
  vigil_runtime *rt = open_runtime(data_dir);
  if (rt == NULL) return 1;

  /* One record, the buffer-size protocol, binary bytes kept exactly. */
  const unsigned char first[] = {0x00, 'v', 'i', 'g', 0xff, 0x00, 'l'};
  uint64_t lsn = 0, durable = 0;
  CHECK(vigil_wal_append(rt, first, sizeof first, &lsn) == VIGIL_OK);
  CHECK(lsn >= 1);
  uint64_t first_lsn = lsn;
  CHECK(vigil_wal_append(rt, NULL, 0, &lsn) == VIGIL_OK); /* an empty record */
  CHECK(lsn == first_lsn + 1);
  CHECK(vigil_wal_append(rt, NULL, 3, &lsn) == VIGIL_E_NULL_ARGUMENT);
  CHECK(vigil_wal_append(rt, first, sizeof first, NULL) == VIGIL_E_NULL_ARGUMENT);
  CHECK(lsn == first_lsn + 1); /* not written on failure */
  unsigned char *huge = (unsigned char *)calloc(VIGIL_WAL_RECORD_BYTES_MAX + 1, 1);
  CHECK(vigil_wal_append(rt, huge, VIGIL_WAL_RECORD_BYTES_MAX + 1, &lsn) == VIGIL_E_INVALID_ARGUMENT);
  CHECK(strstr(vigil_last_error_message(), "exceeds") != NULL);
  free(huge);

  /* Not yet durable: a reader sees nothing. */
  vigil_wal_reader *reader = NULL;
  CHECK(vigil_wal_reader_open(rt, first_lsn, NULL) == VIGIL_E_NULL_ARGUMENT);
  CHECK(vigil_wal_reader_open(rt, first_lsn, &reader) == VIGIL_OK);
  size_t len = 12345;
  unsigned char buf[16];
  CHECK(vigil_wal_reader_next(reader, buf, sizeof buf, &len, &lsn) == VIGIL_END_OF_LOG);
  CHECK(len == 12345);

  CHECK(vigil_wal_sync(rt, &durable) == VIGIL_OK);
  CHECK(durable >= first_lsn + 1);
  CHECK(vigil_wal_sync(NULL, &durable) == VIGIL_E_NULL_ARGUMENT);

  /* Too small a buffer: the size comes back and the same record is handed out next. */
  CHECK(vigil_wal_reader_next(reader, NULL, 0, &len, &lsn) == VIGIL_E_BUFFER_TOO_SMALL);
  CHECK(len == sizeof first);
  CHECK(vigil_wal_reader_next(reader, buf, 3, &len, &lsn) == VIGIL_E_BUFFER_TOO_SMALL);
  CHECK(len == sizeof first);
  CHECK(vigil_wal_reader_next(reader, buf, sizeof buf, NULL, &lsn) == VIGIL_E_NULL_ARGUMENT);
  uint64_t got_lsn = 0;
  CHECK(vigil_wal_reader_next(reader, buf, sizeof buf, &len, &got_lsn) == VIGIL_OK);
  CHECK(len == sizeof first && memcmp(buf, first, sizeof first) == 0);
  CHECK(got_lsn == first_lsn);
  CHECK(vigil_wal_reader_next(reader, NULL, 0, &len, &got_lsn) == VIGIL_OK);
  CHECK(len == 0 && got_lsn == first_lsn + 1);
  CHECK(vigil_wal_reader_next(reader, buf, sizeof buf, &len, NULL) == VIGIL_END_OF_LOG);

  /* Several threads append, sample and sync on one runtime at once. */
  pthread_t threads[THREADS];
  struct appender appenders[THREADS];
  for (int t = 0; t < THREADS; t++) {
    appenders[t].rt = rt;
    appenders[t].id = t;
    appenders[t].errors = 0;
    CHECK(pthread_create(&threads[t], NULL, append_records, &appenders[t]) == 0);
  }
  for (int t = 0; t < THREADS; t++) {
    CHECK(pthread_join(threads[t], NULL) == 0);
    CHECK(appenders[t].errors == 0);
  }
  CHECK(vigil_wal_sync(rt, &durable) == VIGIL_OK);

  /* The open reader continues where it stopped and sees every thread's records, in order. */
  int next_index[THREADS] = {0};
  int count = 0;
  vigil_status st;
  while ((st = vigil_wal_reader_next(reader, buf, sizeof buf, &len, &lsn)) == VIGIL_OK) {
    int thread = -1, index = -1;
    char text[32];
    memcpy(text, buf, len);
    text[len] = '\0';
    CHECK(sscanf(text, "t%d-%d", &thread, &index) == 2);
    if (thread >= 0 && thread < THREADS) {
      CHECK(index == next_index[thread]);
      next_index[thread] = index + 1;
    }
    CHECK(lsn <= durable);
    count++;
  }
  CHECK(st == VIGIL_END_OF_LOG);
  CHECK(count == THREADS * RECORDS_PER_THREAD);
  CHECK(vigil_wal_reader_close(reader) == VIGIL_OK);
  CHECK(vigil_wal_reader_next(reader, buf, sizeof buf, &len, &lsn) == VIGIL_E_CLOSED);
  CHECK(vigil_wal_reader_close(reader) == VIGIL_E_CLOSED);
  CHECK(vigil_wal_reader_close(NULL) == VIGIL_OK);

  /* A reader handle is not a runtime handle. */
  vigil_wal_reader *other = NULL;
  CHECK(vigil_wal_reader_open(rt, 1, &other) == VIGIL_OK);
  CHECK(vigil_wal_sync((const vigil_runtime *)(const void *)other, NULL) == VIGIL_E_INVALID_ARGUMENT);
  CHECK(vigil_wal_reader_close(other) == VIGIL_OK);

  /* After a reopen every record is still there, byte for byte. */
  CHECK(vigil_runtime_close(rt) == VIGIL_OK);
  CHECK(vigil_wal_append(rt, first, sizeof first, &lsn) == VIGIL_E_CLOSED);
  rt = open_runtime(data_dir);
  if (rt == NULL) return 1;
  int after_reopen[THREADS] = {0};
  CHECK(read_all(rt, 1, after_reopen) == 2 + THREADS * RECORDS_PER_THREAD);
  for (int t = 0; t < THREADS; t++) CHECK(after_reopen[t] == RECORDS_PER_THREAD);
  CHECK(vigil_runtime_close(rt) == VIGIL_OK);

  return verdict("wal host");
}
