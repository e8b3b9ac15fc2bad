/* harness: starts the fake upstream and the daemon as child processes on
 * loopback, and makes HTTP calls to them, for the integration suites. */
#include "harness.h"

#include "gate/clients.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <curl/curl.h>
#include <hiredis/hiredis.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define WAIT_STEP_MS 10
#define START_WAIT_MS 10000
#define STOP_WAIT_MS 15000

static void
sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

static const char *
env_or(const char *name, const char *fallback)
{
	const char *value = getenv(name);
	return value != NULL && value[0] != '\0' ? value : fallback;
}

char *
harness_make_dir(const char *name)
{
	char templ[512];
	char *dir;

	snprintf(templ, sizeof(templ), "%s/llamachatd-%s-XXXXXX", env_or("TMPDIR", "/tmp"), name);
	dir = mkdtemp(templ);
	return dir != NULL ? strdup(dir) : NULL;
}

static int
remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

void
harness_remove_dir(const char *dir)
{
	/* KEEP_TEST_DIRS=1 leaves logs and stores behind for a post-mortem. */
	if (dir != NULL && getenv("KEEP_TEST_DIRS") == NULL)
		nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

char *
harness_read_file(const char *path)
{
	FILE *f = fopen(path, "r");
	char *text;
	long size;

	if (f == NULL)
		return NULL;
	fseek(f, 0, SEEK_END);
	size = ftell(f);
	fseek(f, 0, SEEK_SET);
	text = malloc((size_t)size + 1);
	if (text != NULL) {
		size_t got = fread(text, 1, (size_t)size, f);
		text[got] = '\0';
	}
	fclose(f);
	return text;
}

/* Starts argv[0] with stdout and stderr into log_path and stdin from
 * /dev/null, with the key (or none) and env entries added. */
static pid_t
spawn_with(char *const argv[], const char *log_path, const char *key, char *const *env)
{
	pid_t pid = fork();

	if (pid != 0)
		return pid;
	int in = open("/dev/null", O_RDONLY);
	int out = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
	if (in < 0 || out < 0)
		_exit(127);
	dup2(in, 0);
	dup2(out, 1);
	dup2(out, 2);
	if (key != NULL)
		setenv("LLAMA_CLOUD_API_KEY", key, 1);
	else
		unsetenv("LLAMA_CLOUD_API_KEY");
	for (size_t i = 0; env != NULL && env[i] != NULL; i++)
		putenv(env[i]);
	execvp(argv[0], argv);
	_exit(127);
}

static pid_t
spawn(char *const argv[], const char *log_path, const char *key)
{
	return spawn_with(argv, log_path, key, NULL);
}

static int
wait_exit(pid_t pid, long wait_ms)
{
	int status;

	for (long waited = 0; waited <= wait_ms; waited += WAIT_STEP_MS) {
		pid_t got = waitpid(pid, &status, WNOHANG);
		if (got == pid)
			return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
		if (got < 0)
			return -1;
		sleep_ms(WAIT_STEP_MS);
	}
	return -1;
}

int
fake_start(struct fake_upstream *fake, const char *dir)
{
	char port_file[512], log_path[512];
	char *argv[] = { (char *)env_or("FAKE_UPSTREAM_BIN", "fake_upstream"), "--port-file", port_file, "--key",
		HARNESS_KEY, "--key", HARNESS_KEY2, "--key", HARNESS_KEY_A, "--key", HARNESS_KEY_B, NULL };

	snprintf(fake->dir, sizeof(fake->dir), "%s", dir);
	snprintf(port_file, sizeof(port_file), "%s/fake.port", dir);
	snprintf(log_path, sizeof(log_path), "%s/fake.log", dir);
	unlink(port_file);
	fake->pid = spawn(argv, log_path, NULL);
	if (fake->pid < 0)
		return -1;
	for (long waited = 0; waited < START_WAIT_MS; waited += WAIT_STEP_MS) {
		char *text = harness_read_file(port_file);
		if (text != NULL) {
			fake->port = atoi(text);
			free(text);
			return fake->port > 0 ? 0 : -1;
		}
		sleep_ms(WAIT_STEP_MS);
	}
	return -1;
}

void
fake_stop(struct fake_upstream *fake)
{
	if (fake->pid <= 0)
		return;
	kill(fake->pid, SIGTERM);
	if (wait_exit(fake->pid, STOP_WAIT_MS) < 0) {
		kill(fake->pid, SIGKILL);
		waitpid(fake->pid, NULL, 0);
	}
	fake->pid = 0;
}

json_t *
fake_stats(const struct fake_upstream *fake)
{
	char url[128];
	struct http_response r;
	json_t *doc = NULL;

	snprintf(url, sizeof(url), "http://127.0.0.1:%d/_fake/stats", fake->port);
	if (http_call("GET", url, NULL, NULL, 0, &r) == 0 && r.status == 200)
		doc = json_loads(r.body, 0, NULL);
	http_response_free(&r);
	return doc;
}

long
fake_count(const struct fake_upstream *fake, const char *counter)
{
	json_t *doc = fake_stats(fake);
	long value = doc != NULL ? (long)json_integer_value(json_object_get(doc, counter)) : -1;

	json_decref(doc);
	return value;
}

int
fake_fault(const struct fake_upstream *fake, const char *method, const char *path, const char *fault)
{
	char url[128];
	struct http_response r;
	const char *headers[] = { "Content-Type: application/json", NULL };
	json_t *doc = json_loads(fault, 0, NULL);
	char *text;
	int rc;

	if (!json_is_object(doc)) {
		json_decref(doc);
		return -1;
	}
	json_object_set_new(doc, "method", json_string(method));
	json_object_set_new(doc, "path", json_string(path));
	text = json_dumps(doc, JSON_COMPACT);
	json_decref(doc);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/_fake/fault", fake->port);
	rc = http_call("POST", url, headers, text, strlen(text), &r) == 0 && r.status == 200 ? 0 : -1;
	free(text);
	http_response_free(&r);
	return rc;
}

int
fake_release(const struct fake_upstream *fake)
{
	char url[128];
	struct http_response r;
	json_t *doc = NULL;
	int count = -1;

	snprintf(url, sizeof(url), "http://127.0.0.1:%d/_fake/release", fake->port);
	if (http_call("POST", url, NULL, "", 0, &r) == 0 && r.status == 200 && (doc = json_loads(r.body, 0, NULL)))
		count = (int)json_integer_value(json_object_get(doc, "count"));
	json_decref(doc);
	http_response_free(&r);
	return count;
}

static long
monotonic_ms(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (long)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

void
harness_wait(bool (*cond)(void *arg), void *arg, long timeout_ms, const char *what)
{
	long deadline = monotonic_ms() + timeout_ms;

	for (;;) {
		if (cond(arg))
			return;
		if (monotonic_ms() > deadline)
			break;
		sleep_ms(WAIT_STEP_MS);
	}
	/* One last look: the condition may have come true while we slept. */
	if (cond(arg))
		return;
	fail_msg("timed out after %ld ms waiting for %s", timeout_ms, what);
}

struct count_wait {
	const struct fake_upstream *fake;
	const char *counter;
	long target;
	long value;
};

static bool
count_reached(void *arg)
{
	struct count_wait *w = arg;

	w->value = fake_count(w->fake, w->counter);
	return w->value >= w->target;
}

long
fake_wait_count(const struct fake_upstream *fake, const char *counter, long target)
{
	struct count_wait w = { fake, counter, target, -1 };
	char what[160];

	snprintf(what, sizeof(what), "the fake's %s to reach %ld", counter, target);
	harness_wait(count_reached, &w, HARNESS_WAIT_MS, what);
	return w.value;
}

long
harness_file_offset(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 ? (long)st.st_size : 0;
}

/* The text of path from offset on, as a new string, or NULL. */
static char *
read_file_since(const char *path, long offset)
{
	FILE *f = fopen(path, "r");
	char *text = NULL;
	long size;

	if (f == NULL)
		return NULL;
	fseek(f, 0, SEEK_END);
	size = ftell(f);
	if (size >= offset && fseek(f, offset, SEEK_SET) == 0 && (text = malloc((size_t)(size - offset) + 1)) != NULL) {
		size_t got = fread(text, 1, (size_t)(size - offset), f);
		text[got] = '\0';
	}
	fclose(f);
	return text;
}

bool
harness_file_contains_since(const char *path, long offset, const char *needle)
{
	char *text = read_file_since(path, offset);
	bool found = text != NULL && strstr(text, needle) != NULL;

	free(text);
	return found;
}

const char *
harness_file_line_since(const char *path, long offset, const char *needle, char *line, size_t size)
{
	char *text = read_file_since(path, offset);
	const char *at = text != NULL ? strstr(text, needle) : NULL;
	const char *start, *end;

	if (at == NULL) {
		free(text);
		return NULL;
	}
	for (start = at; start > text && start[-1] != '\n'; start--)
		;
	end = strchr(at, '\n');
	/* A line is whole only once its newline is written. */
	if (end == NULL) {
		free(text);
		return NULL;
	}
	snprintf(line, size, "%.*s", (int)(end - start), start);
	free(text);
	return line;
}

struct file_wait {
	const char *path;
	long offset;
	const char *needle;
};

static bool
file_has_needle(void *arg)
{
	struct file_wait *w = arg;

	return harness_file_contains_since(w->path, w->offset, w->needle);
}

void
harness_wait_file(const char *path, long offset, const char *needle)
{
	struct file_wait w = { path, offset, needle };
	char what[512];

	snprintf(what, sizeof(what), "\"%s\" in %s after byte %ld", needle, path, offset);
	harness_wait(file_has_needle, &w, HARNESS_WAIT_MS, what);
}

void
daemon_write_config(struct daemon_process *d, const char *dir, int upstream_port, const char *extra_upstream,
    const char *extra_limits, const char *extra_store)
{
	FILE *f;

	d->bin = NULL;
	snprintf(d->dir, sizeof(d->dir), "%s", dir);
	snprintf(d->conf_path, sizeof(d->conf_path), "%s/llamachatd.conf", dir);
	snprintf(d->log_path, sizeof(d->log_path), "%s/daemon.log", dir);
	f = fopen(d->conf_path, "w");
	if (f == NULL)
		return;
	fprintf(f,
	    "listen = [ \"127.0.0.1:0\" ];\n"
	    "upstream = {\n  base_url = \"http://127.0.0.1:%d\";\n  connect_timeout_ms = 2000;\n"
	    "%s\n};\n"
	    "store = {\n  path = \"%s/store\";\n%s\n};\n"
	    "limits = {\n  drain_timeout_ms = 5000;\n%s\n};\n"
	    "log = { level = \"debug\"; };\n",
	    upstream_port, extra_upstream != NULL ? extra_upstream : "", dir, extra_store != NULL ? extra_store : "",
	    extra_limits != NULL ? extra_limits : "");
	fclose(f);
}

/* The daemon logs "listening on 127.0.0.1:PORT" once it is bound. */
static int
daemon_find_port(const struct daemon_process *d)
{
	char *log = harness_read_file(d->log_path);
	const char *at = log != NULL ? strstr(log, "listening on 127.0.0.1:") : NULL;
	int port = at != NULL ? atoi(at + strlen("listening on 127.0.0.1:")) : 0;

	free(log);
	return port;
}

static void
daemon_print_log(const struct daemon_process *d, const char *why)
{
	char *log = harness_read_file(d->log_path);

	fprintf(stderr, "---- %s; daemon log %s:\n%s----\n", why, d->log_path, log != NULL ? log : "(none)");
	free(log);
}

int
daemon_start(struct daemon_process *d, const char *key)
{
	return daemon_start_with(d, key, NULL, NULL);
}

int
daemon_start_with(struct daemon_process *d, const char *key, char *const *env, char *const *wrapper)
{
	if (daemon_spawn_with(d, key, env, wrapper) != 0)
		return -1;
	return daemon_wait_ready(d);
}

int
daemon_spawn_with(struct daemon_process *d, const char *key, char *const *env, char *const *wrapper)
{
	char *argv[16];
	size_t n = 0;
	FILE *log = fopen(d->log_path, "w"); /* each start gets a fresh log */

	if (log != NULL)
		fclose(log);
	for (size_t i = 0; wrapper != NULL && wrapper[i] != NULL && n < 12; i++)
		argv[n++] = wrapper[i];
	argv[n++] = (char *)(d->bin != NULL ? d->bin : harness_daemon_bin());
	argv[n++] = "-c";
	argv[n++] = d->conf_path;
	argv[n] = NULL;
	d->port = 0;
	d->pid = spawn_with(argv, d->log_path, key, env);
	return d->pid < 0 ? -1 : 0;
}

int
daemon_wait_ready(struct daemon_process *d)
{
	for (long waited = 0; waited < START_WAIT_MS; waited += WAIT_STEP_MS) {
		if (daemon_log_contains(d, " ready: ") && (d->port = daemon_find_port(d)) > 0)
			return 0;
		if (waitpid(d->pid, NULL, WNOHANG) == d->pid) {
			d->pid = 0;
			daemon_print_log(d, "the daemon exited at start");
			return -1;
		}
		sleep_ms(WAIT_STEP_MS);
	}
	daemon_print_log(d, "the daemon did not start in time");
	return -1;
}

int
daemon_stop(struct daemon_process *d)
{
	int status;

	if (d->pid <= 0)
		return -1;
	kill(d->pid, SIGTERM);
	status = wait_exit(d->pid, STOP_WAIT_MS);
	if (status < 0) {
		kill(d->pid, SIGKILL);
		waitpid(d->pid, NULL, 0);
	}
	d->pid = 0;
	if (status != 0)
		daemon_print_log(d, "the daemon did not stop cleanly");
	return status;
}

void
daemon_kill(struct daemon_process *d)
{
	if (d->pid <= 0)
		return;
	kill(d->pid, SIGKILL);
	waitpid(d->pid, NULL, 0);
	d->pid = 0;
}

bool
daemon_log_contains(const struct daemon_process *d, const char *needle)
{
	char *log = harness_read_file(d->log_path);
	bool found = log != NULL && strstr(log, needle) != NULL;

	free(log);
	return found;
}

long
daemon_log_offset(const struct daemon_process *d)
{
	return harness_file_offset(d->log_path);
}

void
daemon_wait_log(const struct daemon_process *d, long offset, const char *needle)
{
	harness_wait_file(d->log_path, offset, needle);
}

char *
daemon_url(const struct daemon_process *d, const char *path, char *buf, size_t size)
{
	snprintf(buf, size, "http://127.0.0.1:%d%s", d->port, path);
	return buf;
}

long
daemon_call(const struct daemon_process *d, const char *who, const char *method, const char *path, const char *body,
    struct http_response *r)
{
	const char *headers[] = { "Content-Type: application/json", who, NULL };
	struct http_response own;
	char url[512];
	long status;

	if (r == NULL)
		r = &own;
	assert_int_equal(
	    http_call(method, daemon_url(d, path, url, sizeof(url)), headers, body, body != NULL ? strlen(body) : 0, r),
	    0);
	status = r->status;
	if (r == &own)
		http_response_free(&own);
	return status;
}

void
daemon_create_session(const struct daemon_process *d, const char *who, char *id, size_t size)
{
	struct http_response r;
	json_t *doc;

	assert_int_equal(daemon_call(d, who, "POST", "/api/v1/chat", "{}", &r), 200);
	doc = json_loads(r.body, 0, NULL);
	snprintf(id, size, "%s", json_string_value(json_object_get(doc, "session_id")));
	json_decref(doc);
	http_response_free(&r);
}

double
harness_metric_sample(const char *text, const char *series)
{
	size_t len = strlen(series);

	for (const char *line = text; line != NULL && *line != '\0';) {
		if (strncmp(line, series, len) == 0 && line[len] == ' ')
			return atof(line + len + 1);
		line = strchr(line, '\n');
		if (line != NULL)
			line++;
	}
	return -1;
}

double
daemon_metric(const struct daemon_process *d, const char *series)
{
	return daemon_metric_as(d, NULL, series);
}

double
daemon_metric_as(const struct daemon_process *d, const char *header, const char *series)
{
	const char *headers[] = { header, NULL };
	struct http_response r;
	char url[128];
	double v = -1;

	if (http_call("GET", daemon_url(d, "/metrics", url, sizeof(url)), headers, NULL, 0, &r) == 0) {
		if (r.status == 200)
			v = harness_metric_sample(r.body, series);
		http_response_free(&r);
	}
	return v;
}

struct growing {
	char *data;
	size_t len;
};

static size_t
collect(char *data, size_t size, size_t count, void *userp)
{
	struct growing *g = userp;
	size_t len = size * count;
	char *grown = realloc(g->data, g->len + len + 1);

	if (grown == NULL)
		return 0;
	memcpy(grown + g->len, data, len);
	g->len += len;
	grown[g->len] = '\0';
	g->data = grown;
	return len;
}

int
http_call(const char *method, const char *url, const char *const *headers, const char *body, size_t body_len,
    struct http_response *out)
{
	CURL *curl = curl_easy_init();
	struct curl_slist *list = NULL;
	struct growing got_body = { NULL, 0 }, got_headers = { NULL, 0 };
	CURLcode rc;

	memset(out, 0, sizeof(*out));
	if (curl == NULL)
		return -1;
	for (size_t i = 0; headers != NULL && headers[i] != NULL; i++)
		list = curl_slist_append(list, headers[i]);
	list = curl_slist_append(list, "Expect:");
	curl_easy_setopt(curl, CURLOPT_URL, url);
	curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
	if (body != NULL) {
		curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
	} else if (strcmp(method, "GET") == 0) {
		curl_easy_setopt(curl, CURLOPT_HTTPGET, 1L);
	}
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, list);
	curl_easy_setopt(curl, CURLOPT_PROXY, "");
	curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 30000L);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, &got_body);
	curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, collect);
	curl_easy_setopt(curl, CURLOPT_HEADERDATA, &got_headers);
	rc = curl_easy_perform(curl);
	if (rc == CURLE_OK)
		curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &out->status);
	else
		fprintf(stderr, "http_call %s %s: %s\n", method, url, curl_easy_strerror(rc));
	curl_slist_free_all(list);
	curl_easy_cleanup(curl);
	if (rc != CURLE_OK) {
		/* Nothing for the caller to free on failure. */
		free(got_body.data);
		free(got_headers.data);
		return -1;
	}
	out->body = got_body.data != NULL ? got_body.data : strdup("");
	out->body_len = got_body.len;
	out->headers = got_headers.data != NULL ? got_headers.data : strdup("");
	return 0;
}

void
http_response_free(struct http_response *r)
{
	free(r->body);
	free(r->headers);
	memset(r, 0, sizeof(*r));
}

const char *
http_header(const struct http_response *r, const char *name, char *buf, size_t size)
{
	size_t name_len = strlen(name);

	for (const char *line = r->headers; line != NULL && *line != '\0';) {
		const char *end = strstr(line, "\r\n");
		size_t len = end != NULL ? (size_t)(end - line) : strlen(line);
		if (len > name_len && strncasecmp(line, name, name_len) == 0 && line[name_len] == ':') {
			const char *v = line + name_len + 1;
			while (*v == ' ')
				v++;
			size_t vlen = len - (size_t)(v - line);
			if (vlen >= size)
				vlen = size - 1;
			memcpy(buf, v, vlen);
			buf[vlen] = '\0';
			return buf;
		}
		line = end != NULL ? end + 2 : NULL;
	}
	return NULL;
}

const char *
harness_daemon_bin(void)
{
	return env_or("LLAMACHATD_BIN", "llamachatd");
}

const char *
harness_test_daemon_bin(void)
{
	return env_or("LLAMACHATD_TEST_BIN", "llamachatd-test");
}

int
run_command(char *const argv[], const char *env_key, const char *env_value, char **output)
{
	return run_command_input(argv, NULL, env_key, env_value, output);
}

int
run_command_input(char *const argv[], const char *input, const char *env_key, const char *env_value, char **output)
{
	char path[512], in_path[512];
	char *dir = harness_make_dir("cmd");
	pid_t pid;
	int status;

	*output = NULL;
	if (dir == NULL)
		return -1;
	snprintf(path, sizeof(path), "%s/output", dir);
	snprintf(in_path, sizeof(in_path), "%s/input", dir);
	if (input != NULL) {
		FILE *f = fopen(in_path, "w");
		if (f != NULL) {
			fputs(input, f);
			fclose(f);
		}
	}
	pid = fork();
	if (pid == 0) {
		int in = open(input != NULL ? in_path : "/dev/null", O_RDONLY);
		int out = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		dup2(in, 0);
		dup2(out, 1);
		dup2(out, 2);
		if (env_key != NULL && env_value != NULL)
			setenv(env_key, env_value, 1);
		else if (env_key != NULL)
			unsetenv(env_key);
		execv(argv[0], argv);
		_exit(127);
	}
	if (pid < 0 || waitpid(pid, &status, 0) != pid) {
		free(dir);
		return -1;
	}
	*output = harness_read_file(path);
	unlink(path);
	unlink(in_path);
	rmdir(dir);
	free(dir);
	if (*output == NULL)
		*output = strdup("");
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

size_t
harness_body_sink(char *data, size_t size, size_t count, void *userp)
{
	struct harness_body *b = userp;
	size_t len = size * count;

	if (b->len + len < sizeof(b->data)) {
		memcpy(b->data + b->len, data, len);
		b->len += len;
		b->data[b->len] = '\0';
	}
	return len;
}

int
harness_send_raw_stream(int port, const char *id, const char *body)
{
	char request[1024];
	int fd = harness_connect(port);
	int len = snprintf(request, sizeof(request),
	    "POST /api/v1/chat/%s/messages/stream HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
	    "Content-Length: %zu\r\n\r\n%s",
	    id, strlen(body), body);

	if (fd >= 0 && (len <= 0 || (size_t)len >= sizeof(request) || write(fd, request, (size_t)len) != len)) {
		close(fd);
		return -1;
	}
	return fd;
}

long
harness_rss_kib(pid_t pid)
{
	char path[64], line[256];
	long kib = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	if ((f = fopen(path, "r")) == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
			break;
	fclose(f);
	return kib;
}

int
harness_suite_start(const char *name, char **dir, struct fake_upstream *fake, struct daemon_process *d)
{
	*dir = harness_make_dir(name);
	if (*dir == NULL || fake_start(fake, *dir) != 0)
		return -1;
	daemon_write_config(d, *dir, fake->port, NULL, NULL, NULL);
	return daemon_start(d, HARNESS_KEY);
}

void
harness_suite_stop(char **dir, struct fake_upstream *fake, struct daemon_process *d)
{
	daemon_kill(d);
	fake_stop(fake);
	harness_remove_dir(*dir);
	free(*dir);
	*dir = NULL;
}

int
harness_open_sockets(pid_t pid)
{
	char dir[64], path[400], target[64];
	DIR *fds;
	struct dirent *e;
	int n = 0;

	snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
	if ((fds = opendir(dir)) == NULL)
		return -1;
	while ((e = readdir(fds)) != NULL) {
		ssize_t len;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		len = readlink(path, target, sizeof(target) - 1);
		if (len > 0) {
			target[len] = '\0';
			if (strncmp(target, "socket:", 7) == 0)
				n++;
		}
	}
	closedir(fds);
	return n;
}

int
harness_connect(int port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

void
harness_token_hex(const char *token, char out[65])
{
	unsigned char hash[32];

	clients_hash_token(token, strlen(token), hash);
	for (int i = 0; i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", hash[i]);
}

int
harness_unused_port(void)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = 0 };
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	bind(fd, (struct sockaddr *)&sin, sizeof(sin));
	getsockname(fd, (struct sockaddr *)&sin, &len);
	port = ntohs(sin.sin_port);
	close(fd);
	return port;
}

pid_t
harness_spawn(char *const argv[], const char *log_path)
{
	return spawn(argv, log_path, NULL);
}

void
harness_stop_process(pid_t pid)
{
	if (pid <= 0)
		return;
	kill(pid, SIGTERM);
	waitpid(pid, NULL, 0);
}

int
harness_raw_exchange(int port, const char *request, size_t len, struct http_response *out)
{
	struct timeval limit = { HARNESS_WAIT_MS / 1000, 0 };
	size_t cap = 4096, used = 0;
	char *all = NULL, *end, *sp;
	int fd = harness_connect(port);

	memset(out, 0, sizeof(*out));
	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof(limit));
	if (write(fd, request, len) != (ssize_t)len || (all = malloc(cap)) == NULL)
		goto fail;
	for (;;) {
		ssize_t n;
		if (used + 1 == cap) {
			char *grown = realloc(all, cap * 2);
			if (grown == NULL)
				goto fail;
			all = grown;
			cap *= 2;
		}
		n = read(fd, all + used, cap - used - 1);
		if (n <= 0)
			break;
		used += (size_t)n;
	}
	all[used] = '\0';
	close(fd);
	if ((end = strstr(all, "\r\n\r\n")) == NULL || (sp = strchr(all, ' ')) == NULL) {
		free(all);
		return -1;
	}
	out->status = strtol(sp + 1, NULL, 10);
	out->headers = strndup(all, (size_t)(end - all) + 2);
	out->body_len = used - (size_t)(end + 4 - all);
	out->body = malloc(out->body_len + 1);
	if (out->headers == NULL || out->body == NULL) {
		http_response_free(out);
		free(all);
		return -1;
	}
	memcpy(out->body, end + 4, out->body_len);
	out->body[out->body_len] = '\0';
	free(all);
	return 0;
fail:
	free(all);
	close(fd);
	return -1;
}

pid_t
harness_redis_start(const char *dir, const char *sock)
{
	char log_path[512];
	char *argv[] = { "redis-server", "--port", "0", "--unixsocket", (char *)sock, "--unixsocketperm", "700",
		"--save", "", "--appendonly", "yes", "--appendfsync", "always", "--dir", (char *)dir, NULL };
	struct stat st;
	pid_t pid;

	snprintf(log_path, sizeof(log_path), "%s/redis.log", dir);
	unlink(sock);
	pid = harness_spawn(argv, log_path);
	assert_true(pid > 0);
	/* Polls for its socket, to a deadline. */
	for (int i = 0; i < 1000 && stat(sock, &st) != 0; i++)
		usleep(10000);
	assert_int_equal(stat(sock, &st), 0);
	return pid;
}

struct redisReply *
harness_redis(const char *sock, const char *format, ...)
{
	redisContext *c = redisConnectUnix(sock);
	redisReply *r = NULL;
	va_list args;

	if (c != NULL && c->err == 0) {
		va_start(args, format);
		r = redisvCommand(c, format, args);
		va_end(args);
	}
	redisFree(c);
	return r;
}

char *
harness_redis_get(const char *sock, const char *key)
{
	redisReply *r = harness_redis(sock, "GET %s", key);
	char *value = r != NULL && r->type == REDIS_REPLY_STRING ? strdup(r->str) : NULL;

	freeReplyObject(r);
	return value;
}

char *
harness_replace(char *text, const char *from, const char *to)
{
	char *at = strstr(text, from), *out;
	size_t size;

	assert_non_null(at);
	size = strlen(text) - strlen(from) + strlen(to) + 1;
	out = malloc(size);
	assert_non_null(out);
	snprintf(out, size, "%.*s%s%s", (int)(at - text), text, to, at + strlen(from));
	free(text);
	return out;
}

pid_t
harness_haproxy_start(const char *dir, const int *ports, int count, int *port)
{
	static const char *const example_servers[] = { "127.0.0.1:8787", "127.0.0.1:8788", "127.0.0.1:8789" };
	char path[512], log_path[512], line[128];
	char *cfg;
	FILE *f;
	pid_t pid;

	snprintf(path, sizeof(path), "%s/conf/haproxy.cfg", env_or("LLAMACHATD_TOP", "."));
	cfg = harness_read_file(path);
	assert_non_null(cfg);
	*port = harness_unused_port();
	snprintf(line, sizeof(line), "127.0.0.1:%d", *port);
	cfg = harness_replace(cfg, "127.0.0.1:8700", line);
	if (count == 3)
		cfg = harness_replace(cfg, "    #   server three 127.0.0.1:8789", "    server three 127.0.0.1:8789");
	for (int i = 0; i < count; i++) {
		snprintf(line, sizeof(line), "127.0.0.1:%d", ports[i]);
		cfg = harness_replace(cfg, example_servers[i], line);
		cfg = harness_replace(cfg, "check inter 2s fall 2 rise 2", "check inter 100ms fall 1 rise 1");
	}
	snprintf(path, sizeof(path), "%s/haproxy.cfg", dir);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(cfg, f);
	fclose(f);
	free(cfg);
	snprintf(log_path, sizeof(log_path), "%s/haproxy.log", dir);
	{
		char *argv[] = { "haproxy", "-db", "-f", path, NULL };
		pid = harness_spawn(argv, log_path);
	}
	assert_true(pid > 0);
	return pid;
}
