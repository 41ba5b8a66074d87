/*
 * HTTP/2-over-TLS subscriber process for the bench (spawned by bench/subscriber-pool.ts for the `tls` scenario): holds
 * N SSE streams over TLS with ALPN h2, S streams per connection, and counts the `@T=<µs>;` markers in their DATA
 * payloads, as bench/subscriber.c does in HTTP/1.1 bytes. The HTTP/2 framing is libnghttp2's (HPACK, SETTINGS and PING
 * acknowledgements, WINDOW_UPDATEs), the TLS OpenSSL's; one epoll loop, single-threaded. Windows are opened wide (1 GiB
 * per stream and per connection) and nghttp2 gives them back as the data is consumed, so flow control never holds a
 * delivery back.
 *
 * Protocol: subscriber.c's, but for `open`, whose request is a path and whose last field is the streams per connection:
 *   open <port> <count> <firstSource> <firstIndex> <isChannelEach 0|1> <channel%> <path%> <streamsPerConnection>
 *       Answer, once every stream has its `:status 200` head: `opened <count> <''>... 0`. A connection or stream that
 *       fails, or any other status, answers `failed <message>` and exits 1 (no retries).
 *   stats <final 0|1>, close: as subscriber.c.
 *
 * Build: gcc -O2 -Wall -Wextra -Werror -o subscriber-h2 subscriber-h2.c -lnghttp2 -lssl -lcrypto
 * (libnghttp2-dev and libssl-dev: bench/setup-peers.sh).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "subscriber-common.h"

#define WIDE_WINDOW (1 << 30)

enum { SEEK, AFTER_AT, AFTER_T, DIGITS };

typedef struct Connection Connection;

typedef struct {
  Connection *connection;
  int has_head;
  int is_closed;
  int state;
  uint64_t value;
} Stream;

struct Connection {
  int fd;
  SSL *ssl;
  nghttp2_session *session;
  int source;
  int open_streams;
  int is_closed;
  /* What nghttp2 gave to send that TLS has not taken yet. */
  unsigned char *pending;
  size_t pending_length, pending_capacity;
  int is_watching_out;
};

static struct {
  int active;
  int port;
  int count;
  int opened;
} batch;

static SSL_CTX *tls;
static Connection **connections;
static size_t connection_count, connection_capacity;

/* Counts the markers in a DATA chunk; a marker may be split across frames. */
static void scan(Stream *s, const uint8_t *chunk, size_t length) {
  size_t i = 0;
  while (i < length) {
    if (s->state == SEEK) {
      const uint8_t *at = memchr(chunk + i, '@', length - i);
      if (at == NULL) return;
      s->state = AFTER_AT;
      i = (size_t)(at - chunk) + 1;
      continue;
    }
    uint8_t byte = chunk[i++];
    if (s->state == AFTER_AT) {
      s->state = byte == 'T' ? AFTER_T : byte == '@' ? AFTER_AT : SEEK;
    } else if (s->state == AFTER_T) {
      s->state = byte == '=' ? DIGITS : SEEK;
      s->value = 0;
    } else if (byte >= '0' && byte <= '9') {
      if (s->value < VALUE_CAP) s->value = s->value * 10 + (byte - '0');
    } else {
      if (byte == ';') {
        int64_t now_ns = epoch_ns();
        deliveries++;
        last_at_ms = (double)now_ns / 1e6;
        int64_t latency_ns = now_ns - (int64_t)s->value * 1000;
        int64_t bucket = latency_ns <= 0 ? 0 : latency_ns / (BUCKET_US * 1000);
        histogram[bucket < BUCKETS ? bucket : BUCKETS - 1]++;
      }
      s->state = SEEK;
    }
  }
}

/* --- nghttp2 callbacks --- */

static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name, size_t name_length,
                     const uint8_t *value, size_t value_length, uint8_t flags, void *user_data) {
  (void)flags;
  (void)user_data;
  if (frame->hd.type != NGHTTP2_HEADERS || name_length != 7 || memcmp(name, ":status", 7) != 0) return 0;
  Stream *s = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
  if (s == NULL || s->has_head) return 0;
  if (value_length != 3 || memcmp(value, "200", 3) != 0) fail("stream %d answered :status %.*s", frame->hd.stream_id, (int)value_length, value);
  s->has_head = 1;
  batch.opened++;
  return 0;
}

static int on_data_chunk(nghttp2_session *session, uint8_t flags, int32_t stream_id, const uint8_t *data, size_t length, void *user_data) {
  (void)flags;
  (void)user_data;
  Stream *s = nghttp2_session_get_stream_user_data(session, stream_id);
  if (s != NULL) scan(s, data, length);
  return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code, void *user_data) {
  (void)error_code;
  Connection *c = user_data;
  Stream *s = nghttp2_session_get_stream_user_data(session, stream_id);
  if (s == NULL || s->is_closed) return 0;
  if (!s->has_head) fail("stream %d closed before its head (error code %u)", stream_id, error_code);
  s->is_closed = 1;
  c->open_streams--;
  closed_count++;
  return 0;
}

/* --- connections --- */

static void watch(Connection *c, int op, uint32_t events) {
  struct epoll_event event = {.events = events, .data.ptr = c};
  if (epoll_ctl(epoll_fd, op, c->fd, &event) < 0) fail("epoll_ctl: %s", strerror(errno));
}

static void close_connection(Connection *c) {
  if (c->is_closed) return;
  c->is_closed = 1;
  closed_count += (uint64_t)c->open_streams;
  c->open_streams = 0;
  epoll_ctl(epoll_fd, EPOLL_CTL_DEL, c->fd, NULL);
  close(c->fd);
}

/* Hands what nghttp2 wants sent to TLS; keeps what TLS cannot take yet, and watches for room. */
static void flush(Connection *c) {
  for (;;) {
    if (c->pending_length == 0) {
      const uint8_t *data;
      ssize_t n = nghttp2_session_mem_send(c->session, &data);
      if (n < 0) fail("nghttp2_session_mem_send: %s", nghttp2_strerror((int)n));
      if (n == 0) break;
      c->pending = grow(c->pending, &c->pending_capacity, (size_t)n, 1);
      memcpy(c->pending, data, (size_t)n);
      c->pending_length = (size_t)n;
    }
    int n = SSL_write(c->ssl, c->pending, (int)c->pending_length);
    if (n <= 0) {
      int error = SSL_get_error(c->ssl, n);
      if (error == SSL_ERROR_WANT_WRITE || error == SSL_ERROR_WANT_READ) break;
      close_connection(c);
      return;
    }
    memmove(c->pending, c->pending + n, c->pending_length - (size_t)n);
    c->pending_length -= (size_t)n;
  }
  int wants_out = c->pending_length > 0;
  if (wants_out != c->is_watching_out) {
    c->is_watching_out = wants_out;
    watch(c, EPOLL_CTL_MOD, EPOLLIN | (wants_out ? EPOLLOUT : 0));
  }
}

static void on_readable(Connection *c) {
  for (;;) {
    int n = SSL_read(c->ssl, read_buffer, sizeof read_buffer);
    if (n <= 0) {
      int error = SSL_get_error(c->ssl, n);
      if (error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE) break;
      close_connection(c);
      return;
    }
    ssize_t used = nghttp2_session_mem_recv(c->session, read_buffer, (size_t)n);
    if (used < 0) fail("nghttp2_session_mem_recv: %s", nghttp2_strerror((int)used));
  }
  flush(c);
}

/* A TLS connection from the source address, its handshake done blocking (h2 by ALPN), then its streams requested. */
static void open_connection(int source, const char *path_template, const char *channel, int is_channel_each, int first_index, int streams) {
  Connection *c = calloc(1, sizeof *c);
  c->source = source;
  char source_name[24];
  snprintf(source_name, sizeof source_name, "127.0.0.%d", 1 + source);
  c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (c->fd < 0) fail("socket: %s", strerror(errno));
  int one = 1;
  setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  struct sockaddr_in local = {.sin_family = AF_INET, .sin_port = 0};
  inet_pton(AF_INET, source_name, &local.sin_addr);
  if (bind(c->fd, (struct sockaddr *)&local, sizeof local) < 0) fail("bind %s: %s", source_name, strerror(errno));
  struct sockaddr_in remote = {.sin_family = AF_INET, .sin_port = htons((uint16_t)batch.port)};
  inet_pton(AF_INET, "127.0.0.1", &remote.sin_addr);
  if (connect(c->fd, (struct sockaddr *)&remote, sizeof remote) < 0) fail("connect from %s: %s", source_name, strerror(errno));
  c->ssl = SSL_new(tls);
  SSL_set_fd(c->ssl, c->fd);
  SSL_set_tlsext_host_name(c->ssl, "localhost");
  if (SSL_connect(c->ssl) != 1) fail("TLS handshake from %s: %s", source_name, ERR_error_string(ERR_get_error(), NULL));
  const unsigned char *alpn;
  unsigned int alpn_length;
  SSL_get0_alpn_selected(c->ssl, &alpn, &alpn_length);
  if (alpn_length != 2 || memcmp(alpn, "h2", 2) != 0) fail("the server chose ALPN %.*s, not h2", (int)alpn_length, alpn);
  fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);

  nghttp2_session_callbacks *callbacks;
  nghttp2_session_callbacks_new(&callbacks);
  nghttp2_session_callbacks_set_on_header_callback(callbacks, on_header);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, on_data_chunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, on_stream_close);
  nghttp2_session_client_new(&c->session, callbacks, c);
  nghttp2_session_callbacks_del(callbacks);
  nghttp2_settings_entry settings[] = {{NGHTTP2_SETTINGS_ENABLE_PUSH, 0}, {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, WIDE_WINDOW}};
  nghttp2_submit_settings(c->session, NGHTTP2_FLAG_NONE, settings, 2);
  nghttp2_session_set_local_window_size(c->session, NGHTTP2_FLAG_NONE, 0, WIDE_WINDOW);

  for (int i = 0; i < streams; i++) {
    char name[300], path[1024];
    if (is_channel_each) snprintf(name, sizeof name, "%s-%d", channel, first_index + i);
    else snprintf(name, sizeof name, "%s", channel);
    const char *at = strstr(path_template, "{channel}");
    if (at == NULL) snprintf(path, sizeof path, "%s", path_template);
    else snprintf(path, sizeof path, "%.*s%s%s", (int)(at - path_template), path_template, name, at + strlen("{channel}"));
    nghttp2_nv headers[] = {
      {(uint8_t *)":method", (uint8_t *)"GET", 7, 3, NGHTTP2_NV_FLAG_NONE},
      {(uint8_t *)":scheme", (uint8_t *)"https", 7, 5, NGHTTP2_NV_FLAG_NONE},
      {(uint8_t *)":authority", (uint8_t *)"bench", 10, 5, NGHTTP2_NV_FLAG_NONE},
      {(uint8_t *)":path", (uint8_t *)path, 5, strlen(path), NGHTTP2_NV_FLAG_NONE},
      {(uint8_t *)"accept", (uint8_t *)"text/event-stream", 6, 17, NGHTTP2_NV_FLAG_NONE},
    };
    Stream *s = calloc(1, sizeof *s);
    s->connection = c;
    int32_t id = nghttp2_submit_request(c->session, NULL, headers, 5, NULL, s);
    if (id < 0) fail("nghttp2_submit_request: %s", nghttp2_strerror(id));
    c->open_streams++;
  }
  connections = grow(connections, &connection_capacity, connection_count + 1, sizeof *connections);
  connections[connection_count++] = c;
  watch(c, EPOLL_CTL_ADD, EPOLLIN);
  flush(c);
}

/* --- commands --- */

static void send_opened_when_done(void) {
  if (!batch.active || batch.opened < batch.count) return;
  batch.active = 0;
  out_printf("opened %d", batch.count);
  for (int i = 0; i < batch.count; i++) out_append(" ", 1);
  out_printf(" %d", 0);
  out_flush();
}

static void command_open(char **fields, int n) {
  if (n != 9) fail("open: expected 8 arguments, got %d", n - 1);
  if (batch.active) fail("open: the previous open is not done");
  batch.port = atoi(fields[1]);
  batch.count = atoi(fields[2]);
  batch.opened = 0;
  batch.active = 1;
  int first_source = atoi(fields[3]);
  int first_index = atoi(fields[4]);
  int is_channel_each = atoi(fields[5]);
  char *channel = percent_decode(fields[6]);
  char *path = percent_decode(fields[7]);
  int per_connection = atoi(fields[8]);
  if (per_connection < 1) fail("open: streams per connection %d: at least 1", per_connection);
  for (int i = 0, k = 0; i < batch.count; i += per_connection, k++) {
    int streams = batch.count - i < per_connection ? batch.count - i : per_connection;
    open_connection((first_source + k) % SOURCE_ADDRESSES, path, channel, is_channel_each, first_index + i, streams);
  }
  free(channel);
  free(path);
  send_opened_when_done();
}

static void close_all_and_exit(void) {
  for (size_t i = 0; i < connection_count; i++) if (!connections[i]->is_closed) close(connections[i]->fd);
  exit(0);
}

static void on_command(char *line) {
  char *fields[10];
  int n = split(line, fields, 10);
  if (strcmp(fields[0], "open") == 0) command_open(fields, n);
  else if (strcmp(fields[0], "stats") == 0 && n == 2) command_stats(atoi(fields[1]));
  else if (strcmp(fields[0], "close") == 0) close_all_and_exit();
  else fail("unknown command: %.100s", fields[0]);
}

int main(void) {
  struct rlimit limit;
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
  }
  signal(SIGPIPE, SIG_IGN);
  origin_wall_ns = clock_ns(CLOCK_REALTIME);
  origin_mono_ns = clock_ns(CLOCK_MONOTONIC);
  tls = SSL_CTX_new(TLS_client_method());
  /* The bench's own certificate: the handshake is measured, not the trust. */
  SSL_CTX_set_verify(tls, SSL_VERIFY_NONE, NULL);
  SSL_CTX_set_mode(tls, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  static const unsigned char alpn[] = {2, 'h', '2'};
  SSL_CTX_set_alpn_protos(tls, alpn, sizeof alpn);
  epoll_fd = epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd < 0) fail("epoll_create1: %s", strerror(errno));
  fcntl(STDIN_FILENO, F_SETFL, fcntl(STDIN_FILENO, F_GETFL) | O_NONBLOCK);
  struct epoll_event event = {.events = EPOLLIN, .data.ptr = &stdin_tag};
  if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, STDIN_FILENO, &event) < 0) fail("epoll_ctl stdin: %s", strerror(errno));
  struct epoll_event events[MAX_EVENTS];
  for (;;) {
    int n = epoll_wait(epoll_fd, events, MAX_EVENTS, -1);
    if (n < 0 && errno != EINTR) fail("epoll_wait: %s", strerror(errno));
    for (int i = 0; i < n; i++) {
      if (events[i].data.ptr == &stdin_tag) {
        on_stdin();
        continue;
      }
      Connection *c = events[i].data.ptr;
      if (c->is_closed) continue;
      if (events[i].events & EPOLLOUT) flush(c);
      if (!c->is_closed && (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) on_readable(c);
    }
    send_opened_when_done();
  }
}
