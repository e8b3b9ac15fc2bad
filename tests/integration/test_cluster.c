/* Integration: the team gateway whole. Three daemons sharing one Redis
 * (on a unix socket in the test's directory), behind HAProxy with the
 * example configuration of conf/haproxy.cfg (its third instance turned
 * on; only addresses and health-check pace changed), and the fake. Under a
 * mixed load of creates and lookups through HAProxy: an instance killed
 * fails only the calls that were in flight on it, and its clients' sessions
 * answer on the others; Redis killed fails nothing, and once back the
 * outboxes drain and Redis's sums equal what each instance served, also
 * after a FLUSHALL. Asserts counts and states, never times. Skipped, saying
 * so, where haproxy or redis-server is not installed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#define INSTANCES 3
#define CLIENTS 6 /* per test: its own names, so every count starts at zero */

static struct fake_upstream fake;
static struct daemon_process gw[INSTANCES];
static const char *const server_names[INSTANCES] = { "one", "two", "three" };
static const char *const instance_names[INSTANCES] = { "gw-a", "gw-b", "gw-c" };
static char *dir;
static char redis_sock[400];
static pid_t redis_pid = -1, haproxy_pid = -1;
static int haproxy_port;

/* A client of the load: "Authorization: Bearer tok-{prefix}{i}-cl". */
static void
client_header(const char *prefix, int i, char *out, size_t size)
{
	snprintf(out, size, "Authorization: Bearer tok-%s%d-cl", prefix, i);
}

static void
write_config(struct daemon_process *d, const char *where, const char *instance)
{
	const char *prefixes[] = { "k", "r", "w" }; /* killed-instance test, Redis test, watcher */
	char hex[65], token[32];
	FILE *f;

	daemon_write_config(d, where, fake.port, NULL, NULL, NULL);
	/* A port of its own that a restart keeps: HAProxy names it. */
	{
		char *text = harness_read_file(d->conf_path), port[32];
		snprintf(port, sizeof(port), "127.0.0.1:%d", harness_unused_port());
		text = harness_replace(text, "127.0.0.1:0", port);
		f = fopen(d->conf_path, "w");
		assert_non_null(f);
		fputs(text, f);
		fclose(f);
		free(text);
	}
	f = fopen(d->conf_path, "a");
	assert_non_null(f);
	fputs("clients = (\n", f);
	for (int p = 0; p < 3; p++)
		for (int i = 0; i < (p == 2 ? 1 : CLIENTS); i++) {
			snprintf(token, sizeof(token), "tok-%s%d-cl", prefixes[p], i);
			harness_token_hex(token, hex);
			fprintf(f, "  { name = \"%s%d\"; token_sha256 = \"%s\";%s }%s\n", prefixes[p], i, hex,
			    p == 1       ? " max_sessions_per_day = 100000;"
			        : p == 2 ? " metrics = true;"
			                 : "",
			    p == 2 ? "" : ",");
		}
	fputs(");\n", f);
	fprintf(f, "shared = { redis = \"unix:%s\"; instance = \"%s\"; timeout_ms = 200; breaker_failures = 2; };\n",
	    redis_sock, instance);
	fclose(f);
}

/* How many instances HAProxy counts up (its health checks say), as a
 * request's X-Served-By spread cannot: from the daemons' side, all three
 * must answer /healthz through it. */
static bool
all_answer_through_haproxy(void *arg)
{
	char url[128];
	bool seen[INSTANCES] = { false };
	int count = 0;

	(void)arg;
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/healthz", haproxy_port);
	/* Each client hashes to one instance: ask as several. */
	for (int i = 0; i < 32; i++) {
		char who[64], served[32];
		const char *headers[] = { who, NULL };
		struct http_response r;
		snprintf(who, sizeof(who), "Authorization: Bearer probe-%d", i);
		if (http_call("GET", url, headers, NULL, 0, &r) != 0)
			return false;
		if (r.status == 200 && http_header(&r, "X-Served-By", served, sizeof(served)) != NULL)
			for (int g = 0; g < INSTANCES; g++)
				if (strcmp(served, server_names[g]) == 0)
					seen[g] = true;
		http_response_free(&r);
	}
	for (int g = 0; g < INSTANCES; g++)
		count += seen[g];
	return count == INSTANCES;
}

static int
start_all(void **state)
{
	char where[600];

	(void)state;
	dir = harness_make_dir("cluster");
	if (dir == NULL || fake_start(&fake, dir) != 0)
		return -1;
	snprintf(redis_sock, sizeof(redis_sock), "%s/redis.sock", dir);
	redis_pid = harness_redis_start(dir, redis_sock);
	for (int i = 0; i < INSTANCES; i++) {
		snprintf(where, sizeof(where), "%s/%s", dir, instance_names[i]);
		mkdir(where, 0700);
		write_config(&gw[i], where, instance_names[i]);
		if (daemon_start(&gw[i], HARNESS_KEY) != 0)
			return -1;
	}
	{
		int ports[INSTANCES];
		for (int i = 0; i < INSTANCES; i++)
			ports[i] = gw[i].port;
		haproxy_pid = harness_haproxy_start(dir, ports, INSTANCES, &haproxy_port);
	}
	harness_wait(all_answer_through_haproxy, NULL, 15000, "HAProxy sending to all three instances");
	return 0;
}

static int
stop_all(void **state)
{
	(void)state;
	if (haproxy_pid > 0)
		harness_stop_process(haproxy_pid);
	for (int i = 0; i < INSTANCES; i++)
		daemon_kill(&gw[i]);
	if (redis_pid > 0)
		harness_stop_process(redis_pid);
	fake_stop(&fake);
	harness_remove_dir(dir);
	free(dir);
	return 0;
}

/* One client of the load: its calls one after another, through HAProxy. */
struct load_client {
	char who[64];
	struct curl_slist *headers;
	CURL *easy;
	char url[256];
	char body[4096];
	size_t len;
	bool creating; /* the call out is a create (else a lookup of session) */
	char session[160]; /* its newest session: what its lookups ask */
	char served_by[32]; /* of the last answer */
	int instance; /* the instance of the call out (-1: not known yet) */
	long calls, failures, creates[INSTANCES];
	bool out_at_event; /* a call was out when the event (a kill) came */
	int instance_at_event;
};

static size_t
load_body(char *data, size_t size, size_t count, void *userp)
{
	struct load_client *c = userp;
	size_t n = size * count;

	if (c->len + n < sizeof(c->body)) {
		memcpy(c->body + c->len, data, n);
		c->len += n;
	}
	return n;
}

static size_t
load_header(char *data, size_t size, size_t count, void *userp)
{
	struct load_client *c = userp;
	size_t n = size * count;

	if (n > 13 && strncasecmp(data, "X-Served-By: ", 13) == 0) {
		snprintf(c->served_by, sizeof(c->served_by), "%.*s", (int)(n - 13), data + 13);
		c->served_by[strcspn(c->served_by, "\r\n")] = '\0';
	}
	return n;
}

static int
instance_of(const char *served)
{
	for (int g = 0; g < INSTANCES; g++)
		if (strcmp(served, server_names[g]) == 0)
			return g;
	return -1;
}

/* Starts the client's next call: a create every third call (and while it
 * has no session yet), else a lookup of its newest session. */
static void
load_next(CURLM *multi, struct load_client *c)
{
	c->creating = c->session[0] == '\0' || c->calls % 3 == 0;
	c->len = 0;
	c->served_by[0] = '\0';
	curl_easy_reset(c->easy);
	if (c->creating) {
		snprintf(c->url, sizeof(c->url), "http://127.0.0.1:%d/api/v1/chat", haproxy_port);
		curl_easy_setopt(c->easy, CURLOPT_POSTFIELDS, "{}");
	} else {
		snprintf(
		    c->url, sizeof(c->url), "http://127.0.0.1:%d/api/v1/chat/%s/summary", haproxy_port, c->session);
	}
	curl_easy_setopt(c->easy, CURLOPT_URL, c->url);
	curl_easy_setopt(c->easy, CURLOPT_HTTPHEADER, c->headers);
	curl_easy_setopt(c->easy, CURLOPT_WRITEFUNCTION, load_body);
	curl_easy_setopt(c->easy, CURLOPT_WRITEDATA, c);
	curl_easy_setopt(c->easy, CURLOPT_HEADERFUNCTION, load_header);
	curl_easy_setopt(c->easy, CURLOPT_HEADERDATA, c);
	curl_easy_setopt(c->easy, CURLOPT_PRIVATE, c);
	curl_easy_setopt(c->easy, CURLOPT_TIMEOUT_MS, 30000L);
	curl_multi_add_handle(multi, c->easy);
}

/* The call out ended: counts it. */
static void
load_done(struct load_client *c, CURLcode code)
{
	long status = 0;
	int g = instance_of(c->served_by);

	if (code == CURLE_OK)
		curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &status);
	c->calls++;
	if (status != 200) {
		c->failures++;
		return;
	}
	c->instance = g;
	if (c->creating) {
		json_t *doc;
		c->body[c->len] = '\0';
		doc = json_loads(c->body, 0, NULL);
		if (json_string_value(json_object_get(doc, "session_id")) != NULL)
			snprintf(c->session, sizeof(c->session), "%s",
			    json_string_value(json_object_get(doc, "session_id")));
		json_decref(doc);
		if (g >= 0)
			c->creates[g]++;
	}
}

/* Runs CLIENTS clients of prefix through HAProxy, each calling in turn;
 * after before calls in all, event(arg) runs once (each client's state
 * then noted), and the load ends after after more. */
static void
run_load(struct load_client *clients, const char *prefix, long before, long after, void (*event)(void *arg), void *arg)
{
	CURLM *multi = curl_multi_init();
	long total = 0;
	bool fired = false;
	int running = 0;

	for (int i = 0; i < CLIENTS; i++) {
		struct load_client *c = &clients[i];
		memset(c, 0, sizeof(*c));
		client_header(prefix, i, c->who, sizeof(c->who));
		c->headers = curl_slist_append(NULL, c->who);
		c->headers = curl_slist_append(c->headers, "Content-Type: application/json");
		c->easy = curl_easy_init();
		c->instance = -1;
		load_next(multi, c);
	}
	/* Until the count is reached, then until the last calls out are
	 * back (counted too: the daemons counted them). */
	while (total < before + after || running > 0) {
		CURLMsg *msg;
		int left;
		curl_multi_perform(multi, &running);
		while ((msg = curl_multi_info_read(multi, &left)) != NULL) {
			struct load_client *c;
			if (msg->msg != CURLMSG_DONE)
				continue;
			curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&c);
			curl_multi_remove_handle(multi, c->easy);
			load_done(c, msg->data.result);
			total++;
			if (total < before + after)
				load_next(multi, c);
		}
		if (!fired && total >= before) {
			fired = true;
			for (int i = 0; i < CLIENTS; i++) {
				clients[i].out_at_event = true; /* each has one call out, always */
				clients[i].instance_at_event = clients[i].instance;
			}
			event(arg);
		}
		if (running > 0)
			curl_multi_poll(multi, NULL, 0, 100, NULL);
	}
	for (int i = 0; i < CLIENTS; i++) {
		curl_multi_remove_handle(multi, clients[i].easy);
		curl_easy_cleanup(clients[i].easy);
		curl_slist_free_all(clients[i].headers);
	}
	curl_multi_cleanup(multi);
}

static void
kill_instance(void *arg)
{
	daemon_kill(&gw[*(int *)arg]);
}

/* A GET through HAProxy as who: its status; which instance answered into
 * served, and whether the body has needle into *has, when asked. */
static long
call_through_body(const char *who, const char *path, char *served, const char *needle, bool *has)
{
	const char *headers[] = { who, NULL };
	struct http_response r;
	char url[512];
	long status;

	snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", haproxy_port, path);
	assert_int_equal(http_call("GET", url, headers, NULL, 0, &r), 0);
	status = r.status;
	if (served != NULL && http_header(&r, "X-Served-By", served, 32) == NULL)
		served[0] = '\0';
	if (has != NULL)
		*has = r.body != NULL && strstr(r.body, needle) != NULL;
	http_response_free(&r);
	return status;
}

static long
call_through(const char *who, const char *path, char *served)
{
	return call_through_body(who, path, served, NULL, NULL);
}

/* An instance SIGKILLed under a mixed load through HAProxy: the only
 * failures are the calls that were out on it at that moment (one per
 * client of it, at most), and every client's sessions, made on the dead
 * instance or not, answer on the others, for their owner only. */
static void
test_an_instance_killed_under_load_fails_only_its_calls_in_flight(void **state)
{
	struct load_client clients[CLIENTS];
	int victim;
	char probe[32], path[256], other[64];

	(void)state;
	/* The instance the first client sticks to. */
	client_header("k", 0, other, sizeof(other));
	assert_int_equal(call_through(other, "/api/v1/chat", probe), 200);
	victim = instance_of(probe);
	assert_true(victim >= 0);
	run_load(clients, "k", 150, 300, kill_instance, &victim);
	for (int i = 0; i < CLIENTS; i++) {
		struct load_client *c = &clients[i];
		long allowed = c->out_at_event && c->instance_at_event == victim ? 1 : 0;
		if (c->failures > allowed)
			fail_msg("client k%d (on %s) had %ld failed calls; only %ld were out on the killed instance", i,
			    c->instance_at_event >= 0 ? server_names[c->instance_at_event] : "-", c->failures, allowed);
		/* Its newest session answers it wherever it lands now. */
		snprintf(path, sizeof(path), "/api/v1/chat/%s/summary", c->session);
		assert_int_equal(call_through(c->who, path, probe), 200);
		assert_int_not_equal(instance_of(probe), victim);
		/* And its list has it. */
		{
			bool listed = false;
			assert_int_equal(call_through_body(c->who, "/api/v1/chat", NULL, c->session, &listed), 200);
			assert_true(listed);
		}
		/* And nobody else. */
		client_header("k", (i + 1) % CLIENTS, other, sizeof(other));
		assert_int_equal(call_through(other, path, NULL), 404);
	}
	assert_int_equal(daemon_start(&gw[victim], HARNESS_KEY), 0);
	harness_wait(all_answer_through_haproxy, NULL, 15000, "the instance back in HAProxy");
}

struct health_wait {
	int instance;
	const char *state;
	double outbox; /* -1: any */
};

/* d's /healthz is a 200 with shared.state (and outbox, when asked). */
static bool
health_is(void *arg)
{
	struct health_wait *w = arg;
	struct http_response r;
	json_t *doc, *shared;
	bool is = false;

	if (daemon_call(&gw[w->instance], NULL, "GET", "/healthz", NULL, &r) == 200) {
		doc = json_loads(r.body, 0, NULL);
		shared = json_object_get(doc, "shared");
		is = json_string_value(json_object_get(shared, "state")) != NULL &&
		    strcmp(json_string_value(json_object_get(shared, "state")), w->state) == 0 &&
		    (w->outbox < 0 || json_number_value(json_object_get(shared, "outbox")) == w->outbox);
		json_decref(doc);
	}
	http_response_free(&r);
	return is;
}

static void
kill_redis(void *arg)
{
	(void)arg;
	kill(redis_pid, SIGKILL);
	harness_stop_process(redis_pid); /* reaps it */
	redis_pid = -1;
}

/* What Redis holds of a client's sessions today, by instance. */
static void
redis_sessions(const char *client, long out[INSTANCES])
{
	char day[16];
	time_t now = time(NULL);
	struct tm tm;
	redisReply *r;

	gmtime_r(&now, &tm);
	strftime(day, sizeof(day), "%Y-%m-%d", &tm);
	r = harness_redis(redis_sock, "HGETALL llamachatd:budget:%s:%s", client, day);
	for (int g = 0; g < INSTANCES; g++)
		out[g] = 0;
	for (size_t i = 0; r != NULL && r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements; i += 2)
		for (int g = 0; g < INSTANCES; g++) {
			char field[64];
			snprintf(field, sizeof(field), "%s:sessions", instance_names[g]);
			if (strcmp(r->element[i]->str, field) == 0)
				out[g] = atol(r->element[i + 1]->str);
		}
	freeReplyObject(r);
}

struct sums_wait {
	const struct load_client *clients;
};

/* Redis's per-instance totals of every client equal the creates each
 * instance served it. */
static bool
sums_match(void *arg)
{
	const struct sums_wait *w = arg;

	for (int i = 0; i < CLIENTS; i++) {
		char name[16];
		long held[INSTANCES];
		snprintf(name, sizeof(name), "r%d", i);
		redis_sessions(name, held);
		for (int g = 0; g < INSTANCES; g++)
			if (held[g] != w->clients[i].creates[g])
				return false;
	}
	return true;
}

static bool
owners_present(void *arg)
{
	const struct load_client *clients = arg;

	for (int i = 0; i < CLIENTS; i++) {
		char key[256], *value;
		snprintf(key, sizeof(key), "llamachatd:own:%s", clients[i].session);
		if ((value = harness_redis_get(redis_sock, key)) == NULL)
			return false;
		free(value);
	}
	return true;
}

/* Redis SIGKILLed under a mixed load: no call fails (lookups are served
 * from each store, creates go on, their publications kept in the
 * outboxes), every /healthz stays 200 and says "down". Redis back with
 * its data: every outbox drains and Redis's totals equal what each
 * instance served. After a FLUSHALL: the totals and the owner records
 * come back. */
static void
test_redis_killed_under_load_fails_nothing_and_comes_back_whole(void **state)
{
	struct load_client clients[CLIENTS];
	struct sums_wait sums = { clients };

	(void)state;
	for (int g = 0; g < INSTANCES; g++) {
		struct health_wait up = { g, "up", -1 };
		harness_wait(health_is, &up, HARNESS_WAIT_MS, "an instance up");
	}
	run_load(clients, "r", 150, 300, kill_redis, NULL);
	for (int i = 0; i < CLIENTS; i++)
		if (clients[i].failures > 0)
			fail_msg("client r%d had %ld failed calls with Redis down", i, clients[i].failures);
	for (int g = 0; g < INSTANCES; g++) {
		struct health_wait down = { g, "down", -1 };
		harness_wait(health_is, &down, HARNESS_WAIT_MS, "an instance saying Redis is down");
	}

	redis_pid = harness_redis_start(dir, redis_sock);
	for (int g = 0; g < INSTANCES; g++) {
		struct health_wait drained = { g, "up", 0 };
		harness_wait(health_is, &drained, HARNESS_WAIT_MS, "an instance up with its outbox drained");
	}
	harness_wait(sums_match, &sums, HARNESS_WAIT_MS, "Redis's totals equal to what each instance served");
	harness_wait(owners_present, clients, HARNESS_WAIT_MS, "every client's newest owner record");

	freeReplyObject(harness_redis(redis_sock, "FLUSHALL"));
	harness_wait(sums_match, &sums, HARNESS_WAIT_MS, "the totals back after a FLUSHALL");
	harness_wait(owners_present, clients, HARNESS_WAIT_MS, "the owner records back after a FLUSHALL");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_an_instance_killed_under_load_fails_only_its_calls_in_flight),
		cmocka_unit_test(test_redis_killed_under_load_fails_nothing_and_comes_back_whole),
	};

	if (system("command -v redis-server >/dev/null 2>&1") != 0 ||
	    system("command -v haproxy >/dev/null 2>&1") != 0) {
		printf("it_cluster: skipped: redis-server or haproxy is not installed (make test installs both as "
		       "root)\n");
		return 0;
	}
	curl_global_init(CURL_GLOBAL_DEFAULT);
	return cmocka_run_group_tests_name(
	    "integration: three instances, HAProxy and Redis", tests, start_all, stop_all);
}
