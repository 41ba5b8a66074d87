/*
 * What bench/subscriber.c and bench/subscriber-h2.c share: the clock the publisher reads, the latency histogram, and
 * the line protocol with the orchestrator (bench/subscriber-pool.ts): the output lines, `stats`, the commands read from
 * stdin. Included by one .c file each (its functions are static); the program defines on_command() and
 * close_all_and_exit().
 */
#ifndef SUBSCRIBER_COMMON_H
#define SUBSCRIBER_COMMON_H

#include <ctype.h>
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SOURCE_ADDRESSES 9 /* 127.0.0.1..9: each has its own ephemeral ports */
#define READ_BUFFER 65536
/* bench/histogram.ts reads the same buckets. */
#define BUCKET_US 100
#define BUCKETS 600000 /* 60 s; slower deliveries land in the last bucket */
#define MAX_EVENTS 256
/* Marker values beyond this stop growing (garbage digits must not wrap around). */
#define VALUE_CAP 100000000000000000ULL

static void on_command(char *line);
static void close_all_and_exit(void);

static int epoll_fd;
static unsigned char read_buffer[READ_BUFFER];
static uint32_t histogram[BUCKETS];
static uint64_t deliveries;
static double last_at_ms;
static uint64_t closed_count;
/* The clock the publisher reads: Node's performance.timeOrigin (the wall clock when the process started) plus
 * performance.now() (the monotonic clock since then). Anchored the same way here: wall clock once at start, then
 * monotonic. */
static int64_t origin_wall_ns, origin_mono_ns;
static char stdin_tag; /* epoll data for stdin: its address */

/* Output line being built. */
static char *out;
static size_t out_length, out_capacity;

static int64_t clock_ns(clockid_t clock) {
  struct timespec ts;
  clock_gettime(clock, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Epoch ns on the publisher's clock. */
static int64_t epoch_ns(void) { return origin_wall_ns + (clock_ns(CLOCK_MONOTONIC) - origin_mono_ns); }

static void *grow(void *array, size_t *capacity, size_t needed, size_t size) {
  if (needed <= *capacity) return array;
  size_t next = *capacity < 16 ? 16 : *capacity;
  while (next < needed) next *= 2;
  array = realloc(array, next * size);
  if (array == NULL) {
    fputs("bench subscriber: out of memory\n", stderr);
    exit(1);
  }
  *capacity = next;
  return array;
}

static void out_append(const char *data, size_t length) {
  out = grow(out, &out_capacity, out_length + length + 1, 1);
  memcpy(out + out_length, data, length);
  out_length += length;
}

static void out_printf(const char *format, ...) {
  char small[64];
  va_list args;
  va_start(args, format);
  int n = vsnprintf(small, sizeof small, format, args);
  va_end(args);
  out_append(small, (size_t)n < sizeof small ? (size_t)n : sizeof small - 1);
}

static void out_flush(void) {
  out_append("\n", 1);
  size_t done = 0;
  while (done < out_length) {
    ssize_t n = write(STDOUT_FILENO, out + done, out_length - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      struct pollfd writable = {.fd = STDOUT_FILENO, .events = POLLOUT};
      poll(&writable, 1, -1);
      continue;
    }
    if (n <= 0) exit(1); /* the orchestrator is gone */
    done += (size_t)n;
  }
  out_length = 0;
}

static void fail(const char *format, ...) {
  char message[512];
  va_list args;
  va_start(args, format);
  vsnprintf(message, sizeof message, format, args);
  va_end(args);
  for (char *p = message; *p != 0; p++) if (*p == '\n' || *p == '\r') *p = ' ';
  out_length = 0;
  out_append("failed ", 7);
  out_append(message, strlen(message));
  out_flush();
  exit(1);
}

static char *percent_decode(const char *text) {
  char *decoded = malloc(strlen(text) + 1);
  char *d = decoded;
  for (const char *p = text; *p != 0; p++) {
    if (*p == '%' && isxdigit((unsigned char)p[1]) && isxdigit((unsigned char)p[2])) {
      char hex[3] = {p[1], p[2], 0};
      *d++ = (char)strtol(hex, NULL, 16);
      p += 2;
    } else {
      *d++ = *p;
    }
  }
  *d = 0;
  return decoded;
}

static int split(char *line, char **fields, int max) {
  int n = 0;
  char *field;
  while (n < max && (field = strsep(&line, " ")) != NULL) fields[n++] = field;
  return n;
}

static void command_stats(int final) {
  out_printf("stats %llu %.3f %llu %d", (unsigned long long)deliveries, last_at_ms, (unsigned long long)closed_count, final);
  if (final) {
    for (int i = 0; i < BUCKETS; i++) if (histogram[i] != 0) out_printf(" %d:%u", i, histogram[i]);
    deliveries = 0;
    last_at_ms = 0;
    memset(histogram, 0, sizeof histogram);
  }
  out_flush();
}

static void on_stdin(void) {
  static char *line;
  static size_t line_length, line_capacity;
  for (;;) {
    line = grow(line, &line_capacity, line_length + READ_BUFFER + 1, 1);
    ssize_t n = read(STDIN_FILENO, line + line_length, READ_BUFFER);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return;
    /* The orchestrator is gone: nothing left to measure. */
    if (n <= 0) close_all_and_exit();
    line_length += (size_t)n;
    char *start = line, *newline;
    while ((newline = memchr(start, '\n', line_length - (size_t)(start - line))) != NULL) {
      *newline = 0;
      on_command(start);
      start = newline + 1;
    }
    line_length -= (size_t)(start - line);
    memmove(line, start, line_length);
  }
}

#endif
