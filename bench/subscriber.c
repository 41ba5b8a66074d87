/*
 * Subscriber process for the bench (spawned by bench/subscriber-pool.ts): holds N streams or WebSockets on raw
 * sockets (muxgate, Nchan, Pushpin: the request is the caller's) and counts the `@T=<µs>;` markers they receive,
 * whatever the framing around them (a WebSocket's: in its messages' payloads). Single-threaded, one epoll loop, so
 * that the load client costs the machine little: what it still costs is nearly all the kernel's (on loopback each
 * delivery is a segment read and an ACK sent, whose processing on the server's socket is charged here too).
 *
 * Protocol: one command per line on stdin, one report per line on stdout. Strings that may hold spaces or CRLF
 * (request, channel, tokens, status lines) are percent-encoded (encodeURIComponent on the Node side); fields are
 * separated by exactly one space, so an empty string is an empty field.
 *
 *   open <port> <count> <firstSource> <firstIndex> <isChannelEach 0|1> <channel%> <request%> <isWebSocket 0|1>
 *       `{channel}` in the request (first occurrence) becomes the channel, or `<channel>-<i>` (i counts from
 *       firstIndex) with isChannelEach. Stream i is bound to 127.0.0.<1 + (firstSource + i) % 9>.
 *       isWebSocket: the request is an RFC 6455 opening with `Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==` (the
 *       RFC's example key: its accept value is checked without SHA-1 here); the answer must be `HTTP/1.1 101`
 *       with the matching Sec-WebSocket-Accept, then the server's (unmasked) frames are parsed: markers are looked
 *       for in data frames' payloads, pings are answered with pongs, a close frame counts as a closed stream.
 *       Answer: `opened <count> <token%>... <failedOpens> (<times> <status%>)...`, tokens in stream order ('' where
 *       the server names no X-Token), then the status lines of opens that were retried, with their counts.
 *   stats <final 0|1>
 *       Answer: `stats <deliveries> <lastAt> <closed> <final 0|1> (<bucket>:<count>)...`; lastAt is epoch ms of
 *       the last marker (0: none); final adds the latency histogram (100 µs buckets, non-zero ones only), then
 *       deliveries, lastAt and the histogram start afresh (closed keeps counting).
 *   send <0|1>
 *       1: every open WebSocket sends a masked text message holding a marker of the time it is sent, then the next
 *       one each time a marker comes back (one message in flight per WebSocket: the server's echo is the answer);
 *       0: no more are sent (those in flight still count when they come back). Answer: `sending <0|1> <count>`,
 *       the WebSockets that started sending.
 *   close
 *       Closes every stream and exits 0. End of stdin (the orchestrator is gone) does the same.
 *
 * A stream whose head is not `HTTP/1.1 200`, or whose connection ends before the head, is retried after 100 ms
 * more each time, as an EventSource would (at most 10 times). Any failure (a stream that cannot connect, or is
 * still refused after its retries) answers `failed <message>` and exits 1.
 *
 * Build: gcc -O2 -Wall -Wextra -Werror -o subscriber subscriber.c (bench/subscriber-pool.ts does it on first use).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "subscriber-common.h"

#define MAX_CONNECTING 256
#define MAX_RETRIES 10
/* Retries back off 100 ms more each time, as an EventSource would wait before reconnecting. */
#define RETRY_STEP_MS 100
#define MAX_HEAD 65536
/* RFC 6455 section 1.3's example: the accept value of the key every WebSocket opening must send. */
#define WEBSOCKET_ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
#define MAX_CONTROL_PAYLOAD 125

/* Marker scanner states: `@`, `T`, `=`, digits, `;`. */
enum { SEEK, AFTER_AT, AFTER_T, DIGITS };
enum { CONNECTING, WAITING_HEAD, RETRY_WAIT, OPEN, CLOSED };
enum { OP_CONTINUATION = 0, OP_TEXT = 1, OP_BINARY = 2, OP_CLOSE = 8, OP_PING = 9, OP_PONG = 10 };

typedef struct {
  int fd;
  int phase;
  int index; /* within the open command that launched it */
  int attempts;
  int source;
  char *request;
  size_t request_length;
  size_t written;
  char *head;
  size_t head_length;
  int64_t retry_at_ms; /* monotonic */
  int state;
  uint64_t value;
  /* WebSocket only: the frame being read; frame_head_length is -1 while its payload is read. */
  int is_websocket;
  int is_in_flight; /* a message sent, its echo not back yet */
  unsigned char frame_head[10];
  int frame_head_length;
  int opcode;
  uint64_t payload_left;
  unsigned char control[MAX_CONTROL_PAYLOAD];
  int control_length;
} Subscription;

/* The open command in progress (one at a time). */
static struct {
  int active;
  int port;
  int count;
  int launched;
  int opened;
  int first_source;
  int first_index;
  int is_channel_each;
  int is_websocket;
  char *channel;
  char *request;
  char **tokens;
  /* Status lines of opens that failed and were retried, with their counts. */
  char **failed_status;
  int *failed_times;
  int failed_length;
} batch;

static Subscription **subscriptions;
static size_t subscription_count, subscription_capacity;
/* `send 1`: WebSockets send their next message when the last one comes back. */
static int is_sending;
/* Retries waiting for their time: the subscriptions in RETRY_WAIT. */
static Subscription **retries;
static size_t retry_count, retry_capacity;

static int64_t mono_ms(void) { return clock_ns(CLOCK_MONOTONIC) / 1000000; }

static void out_encoded(const char *text) {
  static const char hex[] = "0123456789ABCDEF";
  for (const unsigned char *p = (const unsigned char *)text; *p != 0; p++) {
    if (isalnum(*p) || strchr("-_.!~*'()", *p) != NULL) {
      out_append((const char *)p, 1);
    } else {
      char escaped[3] = {'%', hex[*p >> 4], hex[*p & 15]};
      out_append(escaped, 3);
    }
  }
}

/* --- streams --- */

static void watch(Subscription *s, int op, uint32_t events) {
  struct epoll_event event = {.events = events, .data.ptr = s};
  if (epoll_ctl(epoll_fd, op, s->fd, &event) < 0) fail("epoll_ctl: %s", strerror(errno));
}

static void source_name(int source, char *name, size_t size) { snprintf(name, size, "127.0.0.%d", 1 + source); }

static void connect_stream(Subscription *s) {
  char source[24];
  source_name(s->source, source, sizeof source);
  s->attempts++;
  s->head_length = 0;
  s->written = 0;
  s->phase = CONNECTING;
  s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (s->fd < 0) fail("stream from %s: socket: %s", source, strerror(errno));
  /* Pick the ephemeral port at connect time, per destination: binding alone would take one for the address. */
  int one = 1;
  setsockopt(s->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
  struct sockaddr_in local = {.sin_family = AF_INET, .sin_port = 0};
  inet_pton(AF_INET, source, &local.sin_addr);
  if (bind(s->fd, (struct sockaddr *)&local, sizeof local) < 0) fail("stream from %s: bind: %s", source, strerror(errno));
  struct sockaddr_in remote = {.sin_family = AF_INET, .sin_port = htons((uint16_t)batch.port)};
  inet_pton(AF_INET, "127.0.0.1", &remote.sin_addr);
  if (connect(s->fd, (struct sockaddr *)&remote, sizeof remote) < 0 && errno != EINPROGRESS) {
    fail("stream from %s: connect: %s", source, strerror(errno));
  }
  watch(s, EPOLL_CTL_ADD, EPOLLIN | EPOLLOUT);
}

static void launch(void) {
  int index = batch.launched++;
  Subscription *s = calloc(1, sizeof *s);
  s->index = index;
  s->is_websocket = batch.is_websocket;
  s->source = (batch.first_source + index) % SOURCE_ADDRESSES;
  /* The request with its channel, as String.prototype.replace: the first `{channel}` only. */
  char name[300];
  if (batch.is_channel_each) snprintf(name, sizeof name, "%s-%d", batch.channel, batch.first_index + index);
  else snprintf(name, sizeof name, "%s", batch.channel);
  const char *at = strstr(batch.request, "{channel}");
  size_t total = strlen(batch.request) + (at != NULL ? strlen(name) : 0);
  s->request = malloc(total + 1);
  if (at == NULL) {
    strcpy(s->request, batch.request);
  } else {
    size_t before = (size_t)(at - batch.request);
    memcpy(s->request, batch.request, before);
    strcpy(s->request + before, name);
    strcat(s->request, at + strlen("{channel}"));
  }
  s->request_length = strlen(s->request);
  subscriptions = grow(subscriptions, &subscription_capacity, subscription_count + 1, sizeof *subscriptions);
  subscriptions[subscription_count++] = s;
  connect_stream(s);
}

static void send_opened(void) {
  out_printf("opened %d", batch.count);
  for (int i = 0; i < batch.count; i++) {
    out_append(" ", 1);
    out_encoded(batch.tokens[i]);
  }
  out_printf(" %d", batch.failed_length);
  for (int i = 0; i < batch.failed_length; i++) {
    out_printf(" %d ", batch.failed_times[i]);
    out_encoded(batch.failed_status[i]);
  }
  out_flush();
}

static void note_failed_open(const char *status, size_t length) {
  for (int i = 0; i < batch.failed_length; i++) {
    if (strlen(batch.failed_status[i]) == length && memcmp(batch.failed_status[i], status, length) == 0) {
      batch.failed_times[i]++;
      return;
    }
  }
  batch.failed_status = realloc(batch.failed_status, (size_t)(batch.failed_length + 1) * sizeof *batch.failed_status);
  batch.failed_times = realloc(batch.failed_times, (size_t)(batch.failed_length + 1) * sizeof *batch.failed_times);
  batch.failed_status[batch.failed_length] = strndup(status, length);
  batch.failed_times[batch.failed_length++] = 1;
}

static void close_stream(Subscription *s) {
  close(s->fd); /* also leaves the epoll set */
  s->fd = -1;
}

/* As an EventSource would, tries again later: `status` says why, the count of retries is reported. */
static void retry(Subscription *s, const char *status, size_t length) {
  note_failed_open(status, length);
  close_stream(s);
  s->phase = RETRY_WAIT;
  s->retry_at_ms = mono_ms() + (int64_t)RETRY_STEP_MS * s->attempts;
  retries = grow(retries, &retry_capacity, retry_count + 1, sizeof *retries);
  retries[retry_count++] = s;
}

/* The server hung up on the request before its head (Pushpin's condure does, now and then, in a burst of opens). */
static void hung_up(Subscription *s, const char *why) {
  char status[128];
  snprintf(status, sizeof status, "%s before the response head", why);
  if (s->attempts > MAX_RETRIES) {
    char source[24];
    source_name(s->source, source, sizeof source);
    fail("stream from %s: %s, %d times", source, status, s->attempts);
  }
  retry(s, status, strlen(status));
}

/* The value of header `name` (lower case, with its colon) in the head (without its blank line), case-insensitive;
 * "" when absent. */
static char *find_header(const char *head, size_t length, const char *name) {
  char pattern[64];
  snprintf(pattern, sizeof pattern, "\r\n%s", name);
  const size_t name_length = strlen(pattern);
  for (size_t i = 0; i + name_length <= length; i++) {
    if (strncasecmp(head + i, pattern, name_length) != 0) continue;
    size_t start = i + name_length;
    while (start < length && head[start] == ' ') start++;
    size_t end = start;
    while (end < length && head[end] != '\r' && head[end] != ' ') end++;
    if (end > start) return strndup(head + start, end - start);
  }
  return strdup("");
}

static void send_message(Subscription *s);

/* Counts the markers in a chunk; a marker may be split across chunks. */
static void scan(Subscription *s, const unsigned char *chunk, size_t length, int64_t now_ns) {
  size_t i = 0;
  while (i < length) {
    if (s->state == SEEK) {
      const unsigned char *at = memchr(chunk + i, '@', length - i);
      if (at == NULL) return;
      s->state = AFTER_AT;
      i = (size_t)(at - chunk) + 1;
      continue;
    }
    unsigned char byte = chunk[i++];
    if (s->state == AFTER_AT) {
      s->state = byte == 'T' ? AFTER_T : byte == '@' ? AFTER_AT : SEEK;
    } else if (s->state == AFTER_T) {
      s->state = byte == '=' ? DIGITS : SEEK;
      s->value = 0;
    } else if (byte >= '0' && byte <= '9') {
      if (s->value < VALUE_CAP) s->value = s->value * 10 + (byte - '0');
    } else {
      if (byte == ';') {
        deliveries++;
        last_at_ms = (double)now_ns / 1e6;
        int64_t latency_ns = now_ns - (int64_t)s->value * 1000;
        int64_t bucket = latency_ns <= 0 ? 0 : latency_ns / (BUCKET_US * 1000);
        histogram[bucket < BUCKETS ? bucket : BUCKETS - 1]++;
        s->is_in_flight = 0;
        if (is_sending && s->is_websocket) send_message(s);
      }
      s->state = SEEK;
    }
  }
}

/* --- WebSocket frames --- */

/* Writes a whole client frame (masked, as RFC 6455 requires of a client); small frames only: the socket's buffer
 * always has room for one, as a WebSocket has at most one message in flight. */
static void send_frame(Subscription *s, int opcode, const unsigned char *payload, size_t length) {
  unsigned char frame[2 + 4 + MAX_CONTROL_PAYLOAD];
  if (length > MAX_CONTROL_PAYLOAD) fail("frame payload of %zu bytes: at most %d sent", length, MAX_CONTROL_PAYLOAD);
  uint32_t key = (uint32_t)random();
  frame[0] = (unsigned char)(0x80 | opcode);
  frame[1] = (unsigned char)(0x80 | length);
  memcpy(frame + 2, &key, 4);
  for (size_t i = 0; i < length; i++) frame[6 + i] = payload[i] ^ frame[2 + (i & 3)];
  size_t total = 6 + length;
  ssize_t n;
  do n = send(s->fd, frame, total, MSG_NOSIGNAL); while (n < 0 && errno == EINTR);
  if (n != (ssize_t)total) {
    char source[24];
    source_name(s->source, source, sizeof source);
    fail("WebSocket from %s: a %zu-byte frame could not be sent at once: %s", source, total, n < 0 ? strerror(errno) : "short write");
  }
}

/* A text message with a marker of the time it leaves. */
static void send_message(Subscription *s) {
  char marker[48];
  int length = snprintf(marker, sizeof marker, "@T=%lld;", (long long)(epoch_ns() / 1000));
  send_frame(s, OP_TEXT, (const unsigned char *)marker, (size_t)length);
  s->is_in_flight = 1;
}

/* The server closed an open stream (a WebSocket's close frame, or the connection ended): counted as closed. */
static void on_closed(Subscription *s) {
  closed_count++;
  s->phase = CLOSED;
  close_stream(s);
}

static void on_frame_end(Subscription *s) {
  if (s->opcode == OP_PING) send_frame(s, OP_PONG, s->control, (size_t)s->control_length);
  else if (s->opcode == OP_CLOSE) on_closed(s);
  s->frame_head_length = 0;
  s->control_length = 0;
}

/* Reads the server's frames: a frame head (2 to 10 bytes, never masked), then its payload. */
static void on_frames(Subscription *s, const unsigned char *chunk, size_t length, int64_t now_ns) {
  size_t i = 0;
  while (i < length && s->fd >= 0) {
    if (s->frame_head_length >= 0) {
      s->frame_head[s->frame_head_length++] = chunk[i++];
      if (s->frame_head_length < 2) continue;
      int length7 = s->frame_head[1] & 0x7f;
      int needed = length7 == 126 ? 4 : length7 == 127 ? 10 : 2;
      if (s->frame_head_length < needed) continue;
      char source[24];
      source_name(s->source, source, sizeof source);
      if (s->frame_head[1] & 0x80) fail("WebSocket from %s: the server sent a masked frame", source);
      uint64_t payload = (uint64_t)length7;
      if (needed > 2) {
        payload = 0;
        for (int b = 2; b < needed; b++) payload = payload << 8 | s->frame_head[b];
      }
      int opcode = s->frame_head[0] & 0x0f;
      if (opcode >= OP_CLOSE && payload > MAX_CONTROL_PAYLOAD) fail("WebSocket from %s: a control frame of %llu bytes", source, (unsigned long long)payload);
      /* A new message: a marker cut short in the one before does not run on into it. */
      if (opcode == OP_TEXT || opcode == OP_BINARY) s->state = SEEK;
      /* A continuation keeps its message's opcode for what follows. */
      if (opcode != OP_CONTINUATION) s->opcode = opcode;
      s->payload_left = payload;
      s->frame_head_length = -1;
      if (payload == 0) on_frame_end(s);
      continue;
    }
    size_t take = length - i < s->payload_left ? length - i : (size_t)s->payload_left;
    if (s->opcode < OP_CLOSE) {
      scan(s, chunk + i, take, now_ns);
    } else {
      memcpy(s->control + s->control_length, chunk + i, take);
      s->control_length += (int)take;
    }
    i += take;
    s->payload_left -= take;
    if (s->payload_left == 0) on_frame_end(s);
  }
}

/* What follows a response head: a stream's bytes, or a WebSocket's frames. */
static void on_body(Subscription *s, const unsigned char *chunk, size_t length, int64_t now_ns) {
  if (s->is_websocket) on_frames(s, chunk, length, now_ns);
  else scan(s, chunk, length, now_ns);
}

/* Gathers the response head; once complete, the stream is open (the rest is body) or closed for a retry. */
static void on_head(Subscription *s, const unsigned char *chunk, size_t length, int64_t now_ns) {
  char source[24];
  source_name(s->source, source, sizeof source);
  if (s->head_length + length > MAX_HEAD) fail("stream from %s: response head over %d bytes", source, MAX_HEAD);
  size_t from = s->head_length >= 3 ? s->head_length - 3 : 0;
  s->head = realloc(s->head, s->head_length + length + 1);
  memcpy(s->head + s->head_length, chunk, length);
  s->head_length += length;
  s->head[s->head_length] = 0;
  char *end = memmem(s->head + from, s->head_length - from, "\r\n\r\n", 4);
  if (end == NULL) return;
  size_t head_length = (size_t)(end - s->head);
  const char *expected = s->is_websocket ? "HTTP/1.1 101 " : "HTTP/1.1 200 ";
  if (strncmp(s->head, expected, 13) != 0) {
    *end = 0;
    if (s->attempts > MAX_RETRIES) fail("stream from %s: unexpected response head, %d times: %s", source, s->attempts, s->head);
    const char *line_end = strstr(s->head, "\r\n");
    retry(s, s->head, line_end != NULL ? (size_t)(line_end - s->head) : strlen(s->head));
    return;
  }
  if (s->is_websocket) {
    char *accept = find_header(s->head, head_length, "sec-websocket-accept:");
    int is_accepted = strcmp(accept, WEBSOCKET_ACCEPT) == 0;
    free(accept);
    if (!is_accepted) {
      *end = 0;
      fail("WebSocket from %s: no Sec-WebSocket-Accept: %s in the answer: %s", source, WEBSOCKET_ACCEPT, s->head);
    }
  }
  s->phase = OPEN;
  batch.tokens[s->index] = find_header(s->head, head_length, "x-token:");
  size_t body = head_length + 4;
  /* Read what followed the head before the buffer goes (a closed WebSocket counts as opened, then closed). */
  if (body < s->head_length) on_body(s, (unsigned char *)s->head + body, s->head_length - body, now_ns);
  free(s->head);
  s->head = NULL;
  s->head_length = 0;
  if (++batch.opened == batch.count) {
    send_opened();
    batch.active = 0;
  } else if (batch.launched < batch.count) {
    launch();
  }
}

static void on_writable(Subscription *s) {
  int error = 0;
  socklen_t length = sizeof error;
  char source[24];
  source_name(s->source, source, sizeof source);
  if (s->phase == CONNECTING) {
    getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &error, &length);
    if (error != 0) fail("stream from %s: connect: %s", source, strerror(error));
    s->phase = WAITING_HEAD;
  }
  while (s->written < s->request_length) {
    ssize_t n = send(s->fd, s->request + s->written, s->request_length - s->written, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return;
    if (n < 0) return hung_up(s, strerror(errno));
    s->written += (size_t)n;
  }
  watch(s, EPOLL_CTL_MOD, EPOLLIN);
}

static void on_readable(Subscription *s) {
  for (;;) {
    ssize_t n = read(s->fd, read_buffer, sizeof read_buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return;
    if (n <= 0) {
      /* Once open, an end or a reset is counted as a closed stream. */
      if (s->phase == OPEN) return on_closed(s);
      hung_up(s, n == 0 ? "connection closed" : strerror(errno));
      return;
    }
    int64_t now_ns = epoch_ns();
    if (s->phase == OPEN) {
      on_body(s, read_buffer, (size_t)n, now_ns);
      if (s->fd < 0) return; /* a close frame */
    } else {
      on_head(s, read_buffer, (size_t)n, now_ns);
      if (s->phase != OPEN) return; /* closed for a retry, or the head is not complete */
    }
  }
}

static void run_retries(void) {
  int64_t now = mono_ms();
  size_t kept = 0;
  for (size_t i = 0; i < retry_count; i++) {
    Subscription *s = retries[i];
    if (s->retry_at_ms <= now) connect_stream(s);
    else retries[kept++] = s;
  }
  retry_count = kept;
}

static int next_timeout_ms(void) {
  if (retry_count == 0) return -1;
  int64_t now = mono_ms(), soonest = INT64_MAX;
  for (size_t i = 0; i < retry_count; i++) if (retries[i]->retry_at_ms < soonest) soonest = retries[i]->retry_at_ms;
  return soonest <= now ? 0 : (int)(soonest - now);
}

/* --- commands --- */

static void command_open(char **fields, int n) {
  if (n != 9) fail("open: expected 8 arguments, got %d", n - 1);
  if (batch.active) fail("open: the previous open is not done");
  for (int i = 0; i < batch.failed_length; i++) free(batch.failed_status[i]);
  free(batch.failed_status);
  free(batch.failed_times);
  free(batch.tokens);
  free(batch.channel);
  free(batch.request);
  memset(&batch, 0, sizeof batch);
  batch.port = atoi(fields[1]);
  batch.count = atoi(fields[2]);
  batch.first_source = atoi(fields[3]);
  batch.first_index = atoi(fields[4]);
  batch.is_channel_each = atoi(fields[5]);
  batch.channel = percent_decode(fields[6]);
  batch.request = percent_decode(fields[7]);
  batch.is_websocket = atoi(fields[8]);
  batch.tokens = calloc((size_t)batch.count + 1, sizeof *batch.tokens);
  if (batch.count == 0) {
    send_opened();
    return;
  }
  batch.active = 1;
  while (batch.launched < batch.count && batch.launched < MAX_CONNECTING) launch();
}

static void command_send(int on) {
  int started = 0;
  is_sending = on;
  for (size_t i = 0; on && i < subscription_count; i++) {
    Subscription *s = subscriptions[i];
    if (s->is_websocket && s->phase == OPEN && !s->is_in_flight) {
      send_message(s);
      started++;
    }
  }
  out_printf("sending %d %d", on, started);
  out_flush();
}

static void close_all_and_exit(void) {
  for (size_t i = 0; i < subscription_count; i++) if (subscriptions[i]->fd >= 0) close(subscriptions[i]->fd);
  exit(0);
}

static void on_command(char *line) {
  char *fields[10];
  int n = split(line, fields, 10);
  if (strcmp(fields[0], "open") == 0) command_open(fields, n);
  else if (strcmp(fields[0], "stats") == 0 && n == 2) command_stats(atoi(fields[1]));
  else if (strcmp(fields[0], "send") == 0 && n == 2) command_send(atoi(fields[1]));
  else if (strcmp(fields[0], "close") == 0) close_all_and_exit();
  else fail("unknown command: %.100s", fields[0]);
}

int main(void) {
  /* Many streams each: as many descriptors as allowed. */
  struct rlimit limit;
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
  }
  /* A closed stdout or socket is an error to handle, not a signal that kills. */
  signal(SIGPIPE, SIG_IGN);
  origin_wall_ns = clock_ns(CLOCK_REALTIME);
  srandom((unsigned)(origin_wall_ns ^ getpid())); /* the masking keys */
  origin_mono_ns = clock_ns(CLOCK_MONOTONIC);
  epoll_fd = epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd < 0) fail("epoll_create1: %s", strerror(errno));
  fcntl(STDIN_FILENO, F_SETFL, fcntl(STDIN_FILENO, F_GETFL) | O_NONBLOCK);
  struct epoll_event event = {.events = EPOLLIN, .data.ptr = &stdin_tag};
  if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, STDIN_FILENO, &event) < 0) fail("epoll_ctl stdin: %s", strerror(errno));
  struct epoll_event events[MAX_EVENTS];
  for (;;) {
    int n = epoll_wait(epoll_fd, events, MAX_EVENTS, next_timeout_ms());
    if (n < 0 && errno != EINTR) fail("epoll_wait: %s", strerror(errno));
    for (int i = 0; i < n; i++) {
      if (events[i].data.ptr == &stdin_tag) {
        on_stdin();
        continue;
      }
      Subscription *s = events[i].data.ptr;
      if (s->fd < 0) continue; /* closed earlier in this batch of events */
      if (s->phase == CONNECTING || (s->phase == WAITING_HEAD && s->written < s->request_length)) {
        if (events[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) on_writable(s);
        if (s->phase == CONNECTING || s->fd < 0) continue; /* still connecting, or hung up and retried */
      }
      if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) on_readable(s);
    }
    if (retry_count > 0) run_retries();
  }
}
