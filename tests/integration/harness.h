/* harness: starts the fake upstream and the daemon as child processes on
 * loopback, and makes HTTP calls to them, for the integration suites. */
#ifndef LLAMACHATD_HARNESS_H
#define LLAMACHATD_HARNESS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define HARNESS_KEY "llx-real-upstream-key-7f3a9c"
#define HARNESS_KEY2 "llx-rotated-upstream-key-0b41e2" /* the fake takes it too */
#define HARNESS_KEY_A "llx-project-a-key-5d17c0" /* and these, a key per project */
#define HARNESS_KEY_B "llx-project-b-key-93e4aa"

struct fake_upstream {
	pid_t pid;
	int port;
	char dir[256];
};

struct daemon_process {
	const char *bin; /* the binary to start; NULL: harness_daemon_bin() */
	pid_t pid;
	int port;
	char dir[256];
	char log_path[300];
	char conf_path[300];
};

struct http_response {
	long status;
	char *body; /* NUL-terminated */
	size_t body_len;
	char *headers; /* the raw header block */
};

/* A fresh directory for one test's files; the caller owns the string. */
char *harness_make_dir(const char *name);

/* The usual group set-up: a fresh dir named after the suite, the fake
 * upstream, and the daemon with a default config and HARNESS_KEY. Returns 0
 * or -1. suite_stop() kills both and removes the dir. */
int harness_suite_start(const char *name, char **dir, struct fake_upstream *fake, struct daemon_process *d);
void harness_suite_stop(char **dir, struct fake_upstream *fake, struct daemon_process *d);

/* The whole file at path as a new string the caller frees; NULL when it
 * cannot be read. */
char *harness_read_file(const char *path);

/* Removes dir and everything below it. */
void harness_remove_dir(const char *dir);

/* Starts the fake with HARNESS_KEY and HARNESS_KEY2 as the keys it accepts.
 * Returns 0 or -1. */
int fake_start(struct fake_upstream *fake, const char *dir);
void fake_stop(struct fake_upstream *fake);
/* GET /_fake/stats as a new JSON object (caller decrefs), or NULL. */
json_t *fake_stats(const struct fake_upstream *fake);
/* One counter from the stats ("api_requests", "creates", "summaries"). */
long fake_count(const struct fake_upstream *fake, const char *counter);
/* Arms a fault on the fake for the next requests with method and path (no
 * query; a "{id}" segment matches any one segment): fault is a JSON object
 * text with the mode and its settings, e.g. {"mode":"hold"}. Returns 0 or
 * -1. Other requests are never touched by it. */
int fake_fault(const struct fake_upstream *fake, const char *method, const char *path, const char *fault);
/* POST /_fake/release: lets held streams go on; returns how many, or -1. */
int fake_release(const struct fake_upstream *fake);

/* Polls cond(arg) every few milliseconds until it returns true or timeout_ms
 * pass; on time-out the test fails with "timed out after N ms waiting for
 * <what>". cond may do work of its own (pump a curl multi handle, say). */
void harness_wait(bool (*cond)(void *arg), void *arg, long timeout_ms, const char *what);
/* The default deadline of a wait: long enough for a loaded one-CPU box. */
#define HARNESS_WAIT_MS 10000

/* Waits until a fake counter reaches at least target (a baseline taken
 * before the action plus the change expected); returns its value. */
long fake_wait_count(const struct fake_upstream *fake, const char *counter, long target);

/* The size of a file now (0 when absent): a baseline for the waits below. */
long harness_file_offset(const char *path);
/* True when needle occurs in path after byte offset. */
bool harness_file_contains_since(const char *path, long offset, const char *needle);
/* Waits until needle occurs in path after byte offset. */
void harness_wait_file(const char *path, long offset, const char *needle);
/* The first line of path after offset that holds needle, copied into line;
 * NULL when there is none (yet). */
const char *harness_file_line_since(const char *path, long offset, const char *needle, char *line, size_t size);

/* Writes a config (listen on 127.0.0.1:0, store in dir/store, upstream at
 * upstream_port) with extra settings text spliced into each group; returns
 * its path in d->conf_path. */
void daemon_write_config(struct daemon_process *d, const char *dir, int upstream_port, const char *extra_upstream,
    const char *extra_limits, const char *extra_store);

/* Starts llamachatd with d->conf_path, stderr into dir/daemon.log, the key in
 * $LLAMA_CLOUD_API_KEY unless key is NULL. Waits until it listens. */
int daemon_start(struct daemon_process *d, const char *key);
/* Like daemon_start(), with extra "NAME=value" environment entries (env,
 * NULL-terminated, may be NULL) and the daemon started through wrapper (a
 * NULL-terminated argv prefix such as systemd-socket-activate, may be NULL). */
int daemon_start_with(struct daemon_process *d, const char *key, char *const *env, char *const *wrapper);

/* daemon_start_with() in two halves: start it, then wait until it says it is
 * ready (for wrappers that wait for a first connection before starting it). */
int daemon_spawn_with(struct daemon_process *d, const char *key, char *const *env, char *const *wrapper);
int daemon_wait_ready(struct daemon_process *d);

/* SIGTERM, then waits; returns the exit status (0 is a clean stop), or -1.
 * Prints the daemon's log when the stop was not clean. */
int daemon_stop(struct daemon_process *d);
/* SIGKILL, then reaps it. */
void daemon_kill(struct daemon_process *d);
/* True when the daemon's log holds needle. */
bool daemon_log_contains(const struct daemon_process *d, const char *needle);
/* The daemon log's size now: the baseline for daemon_wait_log(). */
long daemon_log_offset(const struct daemon_process *d);
/* Waits until needle is in the daemon's log after offset. */
void daemon_wait_log(const struct daemon_process *d, long offset, const char *needle);

/* Runs one HTTP call to url. headers is a NULL-terminated list of "Name:
 * value" lines, or NULL. Returns 0 once a response arrived (free it with
 * http_response_free()), else -1 with nothing to free. */
int http_call(const char *method, const char *url, const char *const *headers, const char *body, size_t body_len,
    struct http_response *out);
void http_response_free(struct http_response *r);
/* The value of header name in r (case-insensitive), copied into buf; NULL
 * when absent. */
const char *http_header(const struct http_response *r, const char *name, char *buf, size_t size);

/* One call to the daemon as a client: a JSON body (may be NULL) with
 * Content-Type: application/json, and who (an "Authorization: Bearer ..."
 * line, or NULL). Returns the status; the response goes into r (freed by
 * the caller) or, r NULL, is freed here. */
long daemon_call(const struct daemon_process *d, const char *who, const char *method, const char *path,
    const char *body, struct http_response *r);
/* Creates a session as who (asserting 200) and copies its id into id. */
void daemon_create_session(const struct daemon_process *d, const char *who, char *id, size_t size);

/* The value of one sample line ("name{labels}") of a /metrics text; -1
 * when absent. */
double harness_metric_sample(const char *text, const char *series);
/* The same, scraped from the daemon's /metrics (in single-user mode). */
double daemon_metric(const struct daemon_process *d, const char *series);
/* The same with a header line ("Authorization: Bearer ...") of a client
 * that may read /metrics. */
double daemon_metric_as(const struct daemon_process *d, const char *header, const char *series);

char *daemon_url(const struct daemon_process *d, const char *path, char *buf, size_t size);

/* Runs argv to its end with environment variable env_key set to env_value
 * (unset when env_value is NULL); its stdout and stderr, merged, go into a
 * new string in *output. Returns the exit status, or -1. */
int run_command(char *const argv[], const char *env_key, const char *env_value, char **output);

/* Like run_command() with input (may be NULL) on its standard input. */
int run_command_input(char *const argv[], const char *input, const char *env_key, const char *env_value, char **output);

/* The daemon binary under test. */
const char *harness_daemon_bin(void);
/* The test build of the daemon (tests/support/: failalloc, hold_writer). */
const char *harness_test_daemon_bin(void);

/* A response body collected by libcurl, cut at HARNESS_BODY_MAX bytes. */
#define HARNESS_BODY_MAX 8192
struct harness_body {
	char data[HARNESS_BODY_MAX];
	size_t len;
};

/* CURLOPT_WRITEFUNCTION for a struct harness_body. */
size_t harness_body_sink(char *data, size_t size, size_t count, void *userp);

/* Starts argv[0] (looked up in PATH) with argv, its stdout and stderr into
 * log_path; returns its pid (stop it with harness_stop_process()). */
pid_t harness_spawn(char *const argv[], const char *log_path);
/* SIGTERM to pid, then waits for it. */
void harness_stop_process(pid_t pid);

/* Opens a connection to port and writes a raw message-stream request for
 * session id with body; returns the socket (the caller reads or closes it). */
int harness_send_raw_stream(int port, const char *id, const char *body);

/* Writes len bytes of a raw request (which should ask for Connection:
 * close) to 127.0.0.1:port and reads the answer to the connection's end:
 * its status, its raw header block, and everything after the head as the
 * body (not de-chunked). Returns 0 (free out with http_response_free()) or
 * -1 with nothing to free. Spellings curl would tidy up go as they are. */
int harness_raw_exchange(int port, const char *request, size_t len, struct http_response *out);

/* The resident memory of a process in KiB (VmRSS), or -1. */
long harness_rss_kib(pid_t pid);

/* How many sockets process pid holds open now, or -1. */
int harness_open_sockets(pid_t pid);

/* A TCP connection to 127.0.0.1:port, or -1. */
int harness_connect(int port);

/* The 64 hex digits of a token's SHA-256, as a config's token_sha256. */
void harness_token_hex(const char *token, char out[65]);

/* A loopback port nothing listens on (bound, then closed). */
int harness_unused_port(void);

/* Returns text (a heap string, freed) with its first from replaced by to. */
char *harness_replace(char *text, const char *from, const char *to);
/* Starts HAProxy with the example config of conf/haproxy.cfg, its servers
 * pointed at the count (2 or 3: its commented third turned on) loopback
 * ports given and its health checks at a test's pace; its config and log
 * in dir. Sets *port to where it listens; returns its pid. */
pid_t harness_haproxy_start(const char *dir, const int *ports, int count, int *port);

/* Starts redis-server on the unix socket sock (no TCP), its append-only
 * file and log in dir (its data kept across a restart, as the README asks
 * of a deployment); returns its pid once the socket is there. */
pid_t harness_redis_start(const char *dir, const char *sock);
/* Runs one command on the Redis at sock (a printf-like format, one
 * connection of its own); its reply (free with freeReplyObject) or NULL. */
struct redisReply *harness_redis(const char *sock, const char *format, ...);
/* The string value of key as a new string (caller frees), or NULL. */
char *harness_redis_get(const char *sock, const char *key);

#endif
