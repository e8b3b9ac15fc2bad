/* Integration: session owners shared through Redis (the shared group), with
 * a real redis-server on a unix socket in the test's directory, two daemons
 * and the fake. A session made on one instance is its owner's on the
 * other, and nobody else's; while Redis cannot answer, a miss that needs
 * an owner is a 503, never a 404 and never a leak, and lookups of what an
 * instance holds go on. Skipped, saying so, where redis-server is missing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <hiredis/hiredis.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "gate/idempotency.h"
#include "harness.h"

static struct fake_upstream fake;
static struct daemon_process a, b;
static char *dir;
static char redis_sock[400];
static pid_t redis_pid = -1;

#define ALICE "Authorization: Bearer tok-alice-shared-3f1"
#define BOB "Authorization: Bearer tok-bob-shared-9c4"
#define WATCHER "Authorization: Bearer tok-watcher-shared-77e"
#define CAROL "Authorization: Bearer tok-carol-shared-5aa" /* pinned to project proj-shared-1 */
#define DAVE "Authorization: Bearer tok-dave-shared-0d2" /* max_sessions_per_day = 5 */
#define ERIN "Authorization: Bearer tok-erin-shared-61b" /* burst 10, next to no refill */
#define FRANK "Authorization: Bearer tok-frank-shared-2c8" /* a budget far from used */
#define LEAD "Authorization: Bearer tok-lead-shared-4e0" /* see_all */

static void
redis_start(void)
{
	redis_pid = harness_redis_start(dir, redis_sock);
}

#define redis_run(...) harness_redis(redis_sock, __VA_ARGS__)

static char *
redis_get(const char *key)
{
	return harness_redis_get(redis_sock, key);
}

struct key_wait {
	char key[256];
	char *value;
};

static bool
key_present(void *arg)
{
	struct key_wait *w = arg;

	free(w->value);
	w->value = redis_get(w->key);
	return w->value != NULL;
}

/* Waits until session id's owner record is in Redis; returns its value. */
static char *
wait_owner_record(const char *id)
{
	struct key_wait w = { .value = NULL };

	snprintf(w.key, sizeof(w.key), "llamachatd:own:%s", id);
	harness_wait(key_present, &w, HARNESS_WAIT_MS, w.key);
	return w.value;
}

/* A daemon of the pair; with refuse, its budgets refuse while Redis cannot
 * answer (budgets_when_unavailable). */
static void
write_shared_config(struct daemon_process *d, const char *where, const char *instance, bool refuse)
{
	char extra[2400], alice[65], bob[65], watcher[65], carol[65], dave[65], erin[65], frank[65], lead[65];
	FILE *f;

	daemon_write_config(d, where, fake.port, NULL, NULL, NULL);
	harness_token_hex("tok-alice-shared-3f1", alice);
	harness_token_hex("tok-bob-shared-9c4", bob);
	harness_token_hex("tok-watcher-shared-77e", watcher);
	harness_token_hex("tok-carol-shared-5aa", carol);
	harness_token_hex("tok-dave-shared-0d2", dave);
	harness_token_hex("tok-erin-shared-61b", erin);
	harness_token_hex("tok-frank-shared-2c8", frank);
	harness_token_hex("tok-lead-shared-4e0", lead);
	snprintf(extra, sizeof(extra),
	    "clients = ( { name = \"alice\"; token_sha256 = \"%s\"; },\n"
	    "            { name = \"bob\"; token_sha256 = \"%s\"; },\n"
	    "            { name = \"carol\"; token_sha256 = \"%s\"; project_id = \"proj-shared-1\"; },\n"
	    "            { name = \"dave\"; token_sha256 = \"%s\"; max_sessions_per_day = 5; },\n"
	    "            { name = \"erin\"; token_sha256 = \"%s\"; rate_per_s = 0.001; burst = 10; },\n"
	    "            { name = \"frank\"; token_sha256 = \"%s\"; max_tokens_per_day = 100000000; },\n"
	    "            { name = \"lead\"; token_sha256 = \"%s\"; see_all = true; },\n"
	    "            { name = \"watcher\"; token_sha256 = \"%s\"; metrics = true; } );\n"
	    "shared = { redis = \"unix:%s\"; instance = \"%s\"; timeout_ms = 200; breaker_failures = 2;\n"
	    "           budgets_when_unavailable = \"%s\"; };\n",
	    alice, bob, carol, dave, erin, frank, lead, watcher, redis_sock, instance, refuse ? "refuse" : "local");
	f = fopen(d->conf_path, "a");
	assert_non_null(f);
	fputs(extra, f);
	fclose(f);
}

static int
start_all(void **state)
{
	char where[600];

	(void)state;
	dir = harness_make_dir("shared");
	if (dir == NULL || fake_start(&fake, dir) != 0)
		return -1;
	snprintf(redis_sock, sizeof(redis_sock), "%s/redis.sock", dir);
	redis_start();
	snprintf(where, sizeof(where), "%s/a", dir);
	mkdir(where, 0700);
	write_shared_config(&a, where, "gw-a", false);
	snprintf(where, sizeof(where), "%s/b", dir);
	mkdir(where, 0700);
	write_shared_config(&b, where, "gw-b", true);
	return daemon_start(&a, HARNESS_KEY) == 0 && daemon_start(&b, HARNESS_KEY) == 0 ? 0 : -1;
}

static int
stop_all(void **state)
{
	(void)state;
	daemon_kill(&a);
	daemon_kill(&b);
	if (redis_pid > 0) {
		kill(redis_pid, SIGCONT);
		harness_stop_process(redis_pid);
	}
	fake_stop(&fake);
	harness_remove_dir(dir);
	free(dir);
	return 0;
}

static long
get_summary(const struct daemon_process *d, const char *who, const char *id, struct http_response *r)
{
	char path[256];

	snprintf(path, sizeof(path), "/api/v1/chat/%s/summary", id);
	return daemon_call(d, who, "GET", path, NULL, r);
}

struct state_wait {
	const struct daemon_process *d;
	const char *state;
};

static bool
shared_state_is(void *arg)
{
	struct state_wait *w = arg;
	struct http_response r;
	json_t *doc;
	bool is;

	if (daemon_call(w->d, NULL, "GET", "/healthz", NULL, &r) != 200) {
		http_response_free(&r);
		return false;
	}
	doc = json_loads(r.body, 0, NULL);
	is = json_string_value(json_object_get(json_object_get(doc, "shared"), "state")) != NULL &&
	    strcmp(json_string_value(json_object_get(json_object_get(doc, "shared"), "state")), w->state) == 0;
	json_decref(doc);
	http_response_free(&r);
	return is;
}

/* Waits until d's /healthz (a 200) says Redis is state ("up", "down"). */
static void
wait_shared_state(const struct daemon_process *d, const char *state)
{
	struct state_wait w = { d, state };

	harness_wait(shared_state_is, &w, HARNESS_WAIT_MS, state);
}

/* A session made upstream by an instance that died before its stream
 * entry went out: only its owner record says whose it is. */
static void
made_by_a_lost_instance(const char *owner, char *id, size_t size)
{
	char url[128], auth[128];
	const char *headers[] = { auth, "Content-Type: application/json", NULL };
	struct http_response r;
	redisReply *set;
	json_t *doc;

	snprintf(url, sizeof(url), "http://127.0.0.1:%d/api/v1/chat", fake.port);
	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", HARNESS_KEY);
	assert_int_equal(http_call("POST", url, headers, "{}", 2, &r), 0);
	assert_int_equal(r.status, 200);
	doc = json_loads(r.body, 0, NULL);
	snprintf(id, size, "%s", json_string_value(json_object_get(doc, "session_id")));
	json_decref(doc);
	http_response_free(&r);
	set = redis_run("SET llamachatd:own:%s {\"owner\":\"%s\",\"organization_id\":\"\",\"project_id\":\"\","
	                "\"instance\":\"gw-lost\"}",
	    id, owner);
	assert_non_null(set);
	freeReplyObject(set);
}

/* Alice's session, made by an instance that died before B heard of it: on
 * B it is hers (read through, then held), and Bob gets the same 404 as for
 * a session that does not exist, under every path that names it. */
static void
test_a_session_made_on_one_instance_is_its_owners_on_another(void **state)
{
	struct http_response r, missing;
	char id[160], path[256], *record;
	json_t *doc;

	(void)state;
	wait_shared_state(&a, "up");
	wait_shared_state(&b, "up");
	/* What A publishes: the owner record, by its instance. */
	daemon_create_session(&a, ALICE, id, sizeof(id));
	record = wait_owner_record(id);
	doc = json_loads(record, 0, NULL);
	assert_string_equal(json_string_value(json_object_get(doc, "owner")), "alice");
	assert_string_equal(json_string_value(json_object_get(doc, "instance")), "gw-a");
	json_decref(doc);
	free(record);
	made_by_a_lost_instance("alice", id, sizeof(id));

	/* Bob first: nothing of it may reach B's store through him. */
	assert_int_equal(get_summary(&b, BOB, id, &r), 404);
	assert_int_equal(get_summary(&b, BOB, "ses-never-made-anywhere", &missing), 404);
	assert_string_equal(r.body, missing.body);
	http_response_free(&r);
	http_response_free(&missing);
	snprintf(path, sizeof(path), "/api/v1/chat/%s", id);
	assert_int_equal(daemon_call(&b, BOB, "GET", path, NULL, NULL), 404);
	assert_int_equal(daemon_call(&b, BOB, "DELETE", path, NULL, NULL), 404);
	snprintf(path, sizeof(path), "/api/v1/chat/%s/files", id);
	assert_int_equal(daemon_call(&b, BOB, "GET", path, NULL, NULL), 404);

	/* Alice: read through once, then held by B as hers. */
	assert_int_equal(get_summary(&b, ALICE, id, &r), 200);
	doc = json_loads(r.body, 0, NULL);
	assert_string_equal(json_string_value(json_object_get(doc, "session_id")), id);
	json_decref(doc);
	http_response_free(&r);
	assert_int_equal(get_summary(&b, ALICE, id, &r), 200);
	{
		char cache[16];
		assert_string_equal(http_header(&r, "X-Cache", cache, sizeof(cache)), "HIT");
	}
	http_response_free(&r);
	assert_int_equal(daemon_call(&b, ALICE, "GET", "/api/v1/chat", NULL, &r), 200);
	assert_non_null(strstr(r.body, id));
	http_response_free(&r);
	/* And still Bob's 404, now that B holds it. */
	assert_int_equal(get_summary(&b, BOB, id, NULL), 404);
}

struct list_wait {
	const struct daemon_process *d;
	const char *who, *id;
	bool want; /* listed, or not */
};

static bool
listed_is(void *arg)
{
	struct list_wait *w = arg;
	struct http_response r;
	bool listed;

	if (daemon_call(w->d, w->who, "GET", "/api/v1/chat", NULL, &r) != 200) {
		http_response_free(&r);
		return false;
	}
	listed = strstr(r.body, w->id) != NULL;
	http_response_free(&r);
	return listed == w->want;
}

/* Waits until who's list on d has id (want) or has it no more. */
static void
wait_listed(const struct daemon_process *d, const char *who, const char *id, bool want)
{
	struct list_wait w = { d, who, id, want };

	harness_wait(listed_is, &w, HARNESS_WAIT_MS, want ? "a session listed" : "a session gone from a list");
}

/* A number in d's /healthz "shared" object; -1 when absent. */
static double
health_shared_number(const struct daemon_process *d, const char *field)
{
	struct http_response r;
	json_t *doc, *value;
	double n = -1;

	if (daemon_call(d, NULL, "GET", "/healthz", NULL, &r) == 200) {
		doc = json_loads(r.body, 0, NULL);
		value = json_object_get(json_object_get(doc, "shared"), field);
		if (json_is_number(value))
			n = json_number_value(value);
		json_decref(doc);
	}
	http_response_free(&r);
	return n;
}

struct outbox_wait {
	const struct daemon_process *d;
	double want;
};

static bool
outbox_is(void *arg)
{
	struct outbox_wait *w = arg;

	return health_shared_number(w->d, "outbox") == w->want;
}

static char *
redis_get_owner(const char *id)
{
	char key[256];

	snprintf(key, sizeof(key), "llamachatd:own:%s", id);
	return redis_get(key);
}

/* Every store converges: a session made on A is listed on B, and served
 * there from B's store, without B asking anyone; A dies (SIGKILL): B
 * still answers Alice (never Bob); a delete and a create on B while A is
 * down reach A once it starts again, from the read position its store
 * kept. */
static void
test_every_store_converges_through_the_stream(void **state)
{
	struct http_response r;
	char id[160], made_meanwhile[160], path[256], *record;
	long asked;

	(void)state;
	wait_shared_state(&a, "up");
	wait_shared_state(&b, "up");
	daemon_create_session(&a, ALICE, id, sizeof(id));
	/* Its owner record went out before its answer: no wait. */
	record = redis_get_owner(id);
	assert_non_null(record);
	free(record);
	wait_listed(&b, ALICE, id, true);
	/* Listed for her alone. */
	assert_int_equal(daemon_call(&b, BOB, "GET", "/api/v1/chat", NULL, &r), 200);
	assert_null(strstr(r.body, id));
	http_response_free(&r);
	/* B's store holds it: a HIT, upstream not asked. */
	asked = fake_count(&fake, "api_requests");
	assert_int_equal(get_summary(&b, ALICE, id, &r), 200);
	{
		char cache[16];
		assert_string_equal(http_header(&r, "X-Cache", cache, sizeof(cache)), "HIT");
	}
	http_response_free(&r);
	assert_int_equal(fake_count(&fake, "api_requests"), asked);

	daemon_kill(&a);
	assert_int_equal(get_summary(&b, ALICE, id, NULL), 200);
	assert_int_equal(get_summary(&b, BOB, id, NULL), 404);
	/* While A is down: one deleted, one made. */
	snprintf(path, sizeof(path), "/api/v1/chat/%s", id);
	assert_int_equal(daemon_call(&b, ALICE, "DELETE", path, NULL, NULL), 204);
	daemon_create_session(&b, ALICE, made_meanwhile, sizeof(made_meanwhile));
	assert_int_equal(daemon_start(&a, HARNESS_KEY), 0);
	/* It reads on from where its store was (said before it is ready),
	 * not from the start. */
	assert_true(daemon_log_contains(&a, "following the sessions stream from "));
	assert_false(daemon_log_contains(&a, "following the sessions stream from 0\n"));
	wait_listed(&a, ALICE, made_meanwhile, true);
	wait_listed(&a, ALICE, id, false);
	assert_int_equal(get_summary(&a, ALICE, made_meanwhile, &r), 200);
	{
		char cache[16];
		assert_string_equal(http_header(&r, "X-Cache", cache, sizeof(cache)), "HIT");
	}
	http_response_free(&r);
}

/* B away while the stream is trimmed past where B read: B says so when it
 * comes back (log, counter); the session whose entry was trimmed is still
 * Alice's on B, read through by its owner record; one made after is
 * listed from the stream. */
static void
test_an_instance_behind_the_trimmed_stream_says_so_and_reads_through(void **state)
{
	char trimmed[160], after[160];
	redisReply *r;

	(void)state;
	wait_shared_state(&a, "up");
	wait_shared_state(&b, "up");
	assert_int_equal(daemon_stop(&b), 0);
	daemon_create_session(&a, ALICE, trimmed, sizeof(trimmed));
	r = redis_run("XTRIM llamachatd:sessions MAXLEN 0");
	assert_non_null(r);
	freeReplyObject(r);
	daemon_create_session(&a, ALICE, after, sizeof(after));
	assert_int_equal(daemon_start(&b, HARNESS_KEY), 0);
	wait_listed(&b, ALICE, after, true);
	assert_true(
	    daemon_log_contains(&b, "entries of the sessions stream were trimmed before this instance read them"));
	assert_int_equal(daemon_metric_as(&b, WATCHER, "llamachatd_shared_stream_trimmed_total"), 1);
	assert_int_equal(get_summary(&b, BOB, trimmed, NULL), 404);
	assert_int_equal(get_summary(&b, ALICE, trimmed, NULL), 200);
}

/* A project pin holds across instances as it does on one: Carol, pinned
 * to a project, may touch Alice's session in it on an instance that never
 * held it; and B then holds it as Alice's. */
static void
test_a_project_pin_holds_across_instances(void **state)
{
	struct http_response r;
	char id[160], *record;
	json_t *doc;

	(void)state;
	wait_shared_state(&a, "up");
	wait_shared_state(&b, "up");
	assert_int_equal(daemon_call(&a, ALICE, "POST", "/api/v1/chat?project_id=proj-shared-1", "{}", &r), 200);
	doc = json_loads(r.body, 0, NULL);
	snprintf(id, sizeof(id), "%s", json_string_value(json_object_get(doc, "session_id")));
	json_decref(doc);
	http_response_free(&r);
	record = wait_owner_record(id);
	assert_non_null(strstr(record, "\"project_id\":\"proj-shared-1\""));
	free(record);
	assert_int_equal(get_summary(&b, BOB, id, NULL), 404);
	assert_int_equal(get_summary(&b, CAROL, id, NULL), 200);
	/* Held by B now, as Alice's: hers is a HIT. */
	assert_int_equal(get_summary(&b, ALICE, id, &r), 200);
	{
		char cache[16];
		assert_string_equal(http_header(&r, "X-Cache", cache, sizeof(cache)), "HIT");
	}
	http_response_free(&r);
}

/* A field of a hash in Redis as a number; -1 when absent. */
static long
redis_hget(const char *key, const char *field)
{
	redisReply *r = redis_run("HGET %s %s", key, field);
	long value = r != NULL && r->type == REDIS_REPLY_STRING ? atol(r->str) : -1;

	freeReplyObject(r);
	return value;
}

struct hash_wait {
	char key[128];
	const char *field;
	long want;
};

static bool
hash_field_is(void *arg)
{
	struct hash_wait *w = arg;

	return redis_hget(w->key, w->field) == w->want;
}

struct metric_wait {
	const struct daemon_process *d;
	const char *series;
	double want;
};

static bool
metric_is(void *arg)
{
	struct metric_wait *w = arg;

	return daemon_metric_as(w->d, WATCHER, w->series) == w->want;
}

#define DAVE_SESSIONS "llamachatd_budget_used{client=\"dave\",budget=\"sessions\"}"

/* A budget holds for the cluster: what Dave used on A counts on B, so his
 * five sessions a day are five, not five per instance; and a restart
 * republishes B's totals without adding them again. */
static void
test_a_budget_is_summed_over_instances(void **state)
{
	struct hash_wait h;
	struct metric_wait m = { &b, DAVE_SESSIONS, 3 };
	long creates = fake_count(&fake, "creates");
	char id[160], today[16];
	time_t now = time(NULL);
	struct tm tm;

	(void)state;
	gmtime_r(&now, &tm);
	strftime(today, sizeof(today), "%Y-%m-%d", &tm);
	wait_shared_state(&a, "up");
	wait_shared_state(&b, "up");
	for (int i = 0; i < 3; i++)
		daemon_create_session(&a, DAVE, id, sizeof(id));
	snprintf(h.key, sizeof(h.key), "llamachatd:budget:dave:%s", today);
	h.field = "gw-a:sessions";
	h.want = 3;
	harness_wait(hash_field_is, &h, HARNESS_WAIT_MS, "A's sessions of Dave in Redis");
	harness_wait(metric_is, &m, HARNESS_WAIT_MS, "B counting Dave's sessions made on A");
	daemon_create_session(&b, DAVE, id, sizeof(id));
	m.want = 4;
	harness_wait(metric_is, &m, HARNESS_WAIT_MS, "B counting its own session of Dave");
	daemon_create_session(&b, DAVE, id, sizeof(id));
	assert_int_equal(daemon_call(&b, DAVE, "POST", "/api/v1/chat", "{}", NULL), 429);
	/* A learns of B's two as well. */
	m.d = &a;
	m.want = 5;
	harness_wait(metric_is, &m, HARNESS_WAIT_MS, "A counting Dave's sessions made on B");
	assert_int_equal(daemon_call(&a, DAVE, "POST", "/api/v1/chat", "{}", NULL), 429);
	assert_int_equal(fake_count(&fake, "creates"), creates + 5);

	/* Summed, never added to: B restarts and writes its totals again. */
	assert_int_equal(daemon_stop(&b), 0);
	assert_int_equal(daemon_start(&b, HARNESS_KEY), 0);
	m.d = &b;
	harness_wait(metric_is, &m, HARNESS_WAIT_MS, "B counting all five after its restart");
	assert_int_equal(redis_hget(h.key, "gw-b:sessions"), 2);
	assert_int_equal(redis_hget(h.key, "gw-a:sessions"), 3);
	assert_int_equal(daemon_call(&b, DAVE, "POST", "/api/v1/chat", "{}", NULL), 429);
}

/* Creates as who on d until the first 429 (at most limit tries); returns
 * how many were admitted. */
static int
admitted_until_429(const struct daemon_process *d, const char *who, int limit)
{
	int admitted = 0;

	for (int i = 0; i < limit; i++) {
		long status = daemon_call(d, who, "POST", "/api/v1/chat", "{}", NULL);
		if (status == 429)
			break;
		assert_int_equal(status, 200);
		admitted++;
	}
	return admitted;
}

/* A rate limit holds for the cluster, in one bucket in Redis: Erin's
 * burst of 10 is hers whole on the instance she talks to, and once used
 * there the other instance refuses her too (with a Retry-After), so the
 * two together admit 10, not 20. */
static void
test_a_rate_limit_is_one_bucket_for_every_instance(void **state)
{
	struct metric_wait m = { &a, "llamachatd_shared_instances", 2 };
	struct http_response r;
	char retry[16];

	(void)state;
	harness_wait(metric_is, &m, HARNESS_WAIT_MS, "A counting two instances live");
	m.d = &b;
	harness_wait(metric_is, &m, HARNESS_WAIT_MS, "B counting two instances live");
	assert_int_equal(admitted_until_429(&a, ERIN, 20), 10);
	assert_int_equal(daemon_call(&b, ERIN, "POST", "/api/v1/chat", "{}", &r), 429);
	assert_non_null(http_header(&r, "Retry-After", retry, sizeof(retry)));
	assert_true(atol(retry) >= 1);
	assert_non_null(strstr(r.body, "over its rate"));
	http_response_free(&r);
	/* A name nobody owns is a 404 at once: a miss that goes nowhere
	 * takes nothing from the bucket. */
	assert_int_equal(get_summary(&b, ERIN, "ses-erin-none", NULL), 404);
}

/* How many keys match pattern in Redis. */
static size_t
redis_count_keys(const char *pattern)
{
	redisReply *r = redis_run("KEYS %s", pattern);
	size_t n = r != NULL && r->type == REDIS_REPLY_ARRAY ? r->elements : 0;

	freeReplyObject(r);
	return n;
}

struct claim_wait {
	CURLM *multi;
	size_t before;
};

/* Pumps the create in flight on A until its key's claim is in Redis. */
static bool
claim_seen(void *arg)
{
	struct claim_wait *w = arg;
	int running;

	curl_multi_perform(w->multi, &running);
	return redis_count_keys("llamachatd:idem:alice:*") > w->before;
}

/* One Idempotency-Key, any instance: sent to A (upstream held), then to B:
 * B answers 409 while A's is in flight, then replays A's answer byte for
 * byte; a different body with it is a 422; upstream made one session. */
static void
test_an_idempotency_key_holds_on_every_instance(void **state)
{
	static struct harness_body first;
	const char *headers_b[] = { "Content-Type: application/json", ALICE, "Idempotency-Key: shared-key-1", NULL };
	struct curl_slist *headers = NULL;
	struct claim_wait w = { curl_multi_init(), redis_count_keys("llamachatd:idem:alice:*") };
	long creates = fake_count(&fake, "creates");
	CURL *easy = curl_easy_init();
	struct http_response r;
	char url[256], replayed[16];
	int running = 1;
	long status = 0;
	const char *a_body;

	(void)state;
	wait_shared_state(&a, "up");
	wait_shared_state(&b, "up");
	assert_int_equal(fake_fault(&fake, "POST", "/api/v1/chat", "{\"mode\":\"delay\",\"ms\":1500,\"count\":1}"), 0);
	headers = curl_slist_append(headers, "Content-Type: application/json");
	headers = curl_slist_append(headers, ALICE);
	headers = curl_slist_append(headers, "Idempotency-Key: shared-key-1");
	curl_easy_setopt(easy, CURLOPT_URL, daemon_url(&a, "/api/v1/chat", url, sizeof(url)));
	curl_easy_setopt(easy, CURLOPT_POSTFIELDS, "{}");
	curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, harness_body_sink);
	curl_easy_setopt(easy, CURLOPT_WRITEDATA, &first);
	curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, 30000L);
	curl_easy_setopt(easy, CURLOPT_PROXY, "");
	curl_multi_add_handle(w.multi, easy);
	harness_wait(claim_seen, &w, HARNESS_WAIT_MS, "A's claim of the key in Redis");

	/* B, while A's create is held upstream. */
	daemon_url(&b, "/api/v1/chat", url, sizeof(url));
	assert_int_equal(http_call("POST", url, headers_b, "{}", 2, &r), 0);
	assert_int_equal(r.status, 409);
	assert_non_null(http_header(&r, "Retry-After", replayed, sizeof(replayed)));
	http_response_free(&r);

	while (running > 0) {
		curl_multi_perform(w.multi, &running);
		if (running > 0)
			curl_multi_poll(w.multi, NULL, 0, 1000, NULL);
	}
	curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
	assert_int_equal(status, 200);
	first.data[first.len] = '\0';
	a_body = first.data;

	/* B replays A's answer byte for byte, at once: A's answer was shared
	 * before A answered. */
	assert_int_equal(http_call("POST", url, headers_b, "{}", 2, &r), 0);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.body, a_body);
	assert_string_equal(http_header(&r, "Idempotent-Replayed", replayed, sizeof(replayed)), "true");
	http_response_free(&r);
	/* The key with another request: 422. */
	assert_int_equal(http_call("POST", url, headers_b, "{\"name\":\"other\"}", 16, &r), 0);
	assert_int_equal(r.status, 422);
	http_response_free(&r);
	assert_int_equal(fake_count(&fake, "creates"), creates + 1);
	curl_multi_remove_handle(w.multi, easy);
	curl_easy_cleanup(easy);
	curl_multi_cleanup(w.multi);
	curl_slist_free_all(headers);
}

/* A turn's Idempotency-Key holds on every instance too: while the turn
 * runs on A, and after it, B answers 409 (a turn cannot be replayed);
 * upstream ran one turn. */
static void
test_a_turns_idempotency_key_holds_on_every_instance(void **state)
{
	static struct harness_body held;
	const char *headers_b[] = { "Content-Type: application/json", ALICE, "Idempotency-Key: shared-turn-1", NULL };
	struct curl_slist *headers = NULL;
	CURLM *multi = curl_multi_init();
	CURL *easy = curl_easy_init();
	long streams = fake_count(&fake, "streams"), held_before = fake_count(&fake, "streams_held");
	struct http_response r;
	char id[160], path[256], url[512];
	const char *body = "{\"prompt\":\"hello\",\"index_ids\":[]}";
	int running = 1;

	(void)state;
	wait_shared_state(&a, "up");
	wait_shared_state(&b, "up");
	daemon_create_session(&a, ALICE, id, sizeof(id));
	free(wait_owner_record(id));
	assert_int_equal(fake_fault(&fake, "POST", "/api/v1/chat/{id}/messages/stream", "{\"mode\":\"hold\"}"), 0);
	snprintf(path, sizeof(path), "/api/v1/chat/%s/messages/stream", id);
	headers = curl_slist_append(headers, "Content-Type: application/json");
	headers = curl_slist_append(headers, ALICE);
	headers = curl_slist_append(headers, "Idempotency-Key: shared-turn-1");
	curl_easy_setopt(easy, CURLOPT_URL, daemon_url(&a, path, url, sizeof(url)));
	curl_easy_setopt(easy, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, harness_body_sink);
	curl_easy_setopt(easy, CURLOPT_WRITEDATA, &held);
	curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, 30000L);
	curl_easy_setopt(easy, CURLOPT_PROXY, "");
	curl_multi_add_handle(multi, easy);
	for (int i = 0; i < 1000 && fake_count(&fake, "streams_held") <= held_before; i++) {
		curl_multi_perform(multi, &running);
		curl_multi_poll(multi, NULL, 0, 10, NULL);
	}
	assert_true(fake_count(&fake, "streams_held") > held_before);

	daemon_url(&b, path, url, sizeof(url));
	assert_int_equal(http_call("POST", url, headers_b, body, strlen(body), &r), 0);
	/* Upstream answered A's turn: its key is used, for every instance. */
	assert_int_equal(r.status, 409);
	assert_non_null(strstr(r.body, "cannot be replayed"));
	http_response_free(&r);

	assert_true(fake_release(&fake) > 0);
	while (running > 0) {
		curl_multi_perform(multi, &running);
		if (running > 0)
			curl_multi_poll(multi, NULL, 0, 1000, NULL);
	}
	assert_int_equal(http_call("POST", url, headers_b, body, strlen(body), &r), 0);
	assert_int_equal(r.status, 409);
	assert_non_null(strstr(r.body, "used already"));
	http_response_free(&r);
	assert_int_equal(fake_count(&fake, "streams"), streams + 1);
	curl_multi_remove_handle(multi, easy);
	curl_easy_cleanup(easy);
	curl_multi_cleanup(multi);
	curl_slist_free_all(headers);
}

/* Redis loses its data (FLUSHALL): every instance publishes again the
 * owners of what it holds, so a failover still finds them. */
static void
test_owners_are_republished_after_redis_loses_its_data(void **state)
{
	const char *headers[] = { ALICE, "Content-Type: application/json", "Idempotency-Key: republish-k1", NULL };
	struct http_response first, again;
	char id[160], url[256], replayed[16], *record;
	struct key_wait k = { .value = NULL };
	redisReply *r;
	long creates;

	(void)state;
	wait_shared_state(&b, "up");
	daemon_create_session(&b, ALICE, id, sizeof(id));
	free(wait_owner_record(id));
	/* A keyed create answered by B. */
	daemon_url(&b, "/api/v1/chat", url, sizeof(url));
	assert_int_equal(http_call("POST", url, headers, "{}", 2, &first), 0);
	assert_int_equal(first.status, 200);
	creates = fake_count(&fake, "creates");
	r = redis_run("FLUSHALL");
	assert_non_null(r);
	freeReplyObject(r);
	record = wait_owner_record(id);
	assert_non_null(strstr(record, "\"owner\":\"alice\""));
	free(record);
	/* A gives it to Alice and to nobody else. */
	assert_int_equal(get_summary(&a, BOB, id, NULL), 404);
	assert_int_equal(get_summary(&a, ALICE, id, NULL), 200);
	/* B's key answer comes back too (named as B named it): A replays it,
	 * upstream not asked. */
	{
		unsigned char record_key[IDEMPOTENCY_RECORD_KEY_MAX];
		char hash[IDEMPOTENCY_UPSTREAM_KEY_LEN + 1];
		size_t len = idempotency_record_key("alice", "republish-k1", record_key);
		idempotency_upstream_key(record_key, len, hash);
		snprintf(k.key, sizeof(k.key), "llamachatd:idem:alice:%s", hash);
		harness_wait(key_present, &k, HARNESS_WAIT_MS, "the Idempotency-Key answer republished");
		assert_non_null(strstr(k.value, "\"answered\""));
		free(k.value);
	}
	daemon_url(&a, "/api/v1/chat", url, sizeof(url));
	assert_int_equal(http_call("POST", url, headers, "{}", 2, &again), 0);
	assert_int_equal(again.status, 200);
	assert_string_equal(again.body, first.body);
	assert_string_equal(http_header(&again, "Idempotent-Replayed", replayed, sizeof(replayed)), "true");
	assert_int_equal(fake_count(&fake, "creates"), creates);
	http_response_free(&first);
	http_response_free(&again);
}

/* A see-all client reads Alice's session through on B first, so B holds
 * it without an owner: Alice still gets it there (her owner record says
 * so), and Bob still does not. */
static void
test_a_session_held_without_an_owner_is_still_its_owners(void **state)
{
	char id[160], path[256];

	(void)state;
	wait_shared_state(&a, "up");
	wait_shared_state(&b, "up");
	daemon_create_session(&a, ALICE, id, sizeof(id));
	free(wait_owner_record(id));
	assert_int_equal(get_summary(&b, LEAD, id, NULL), 200);
	assert_int_equal(get_summary(&b, ALICE, id, NULL), 200);
	snprintf(path, sizeof(path), "/api/v1/chat/%s", id);
	assert_int_equal(daemon_call(&b, ALICE, "GET", path, NULL, NULL), 200);
	assert_int_equal(get_summary(&b, BOB, id, NULL), 404);
	assert_int_equal(daemon_call(&b, BOB, "GET", path, NULL, NULL), 404);
}

static bool
key_absent(void *arg)
{
	struct key_wait *w = arg;

	free(w->value);
	w->value = redis_get(w->key);
	return w->value == NULL;
}

/* A deleted session's owner record goes with it. */
static void
test_a_delete_removes_the_owner_record(void **state)
{
	char id[160], path[256];
	struct key_wait w = { .value = NULL };

	(void)state;
	wait_shared_state(&b, "up");
	daemon_create_session(&b, ALICE, id, sizeof(id));
	free(wait_owner_record(id));
	wait_listed(&a, ALICE, id, true);
	snprintf(path, sizeof(path), "/api/v1/chat/%s", id);
	assert_int_equal(daemon_call(&b, ALICE, "DELETE", path, NULL, NULL), 204);
	snprintf(w.key, sizeof(w.key), "llamachatd:own:%s", id);
	harness_wait(key_absent, &w, HARNESS_WAIT_MS, "the owner record of a deleted session gone");
	/* And another instance drops it too (the stream), and no longer
	 * gives it to its owner. */
	wait_listed(&a, ALICE, id, false);
	assert_int_equal(get_summary(&a, ALICE, id, NULL), 404);
}

/* Redis gone: what an instance holds is served (its own sessions and
 * those the stream brought), a miss that needs an owner is a 503 with
 * Retry-After for everyone (the owner may be the caller: no false 404; it
 * may not: no leak), /healthz stays 200 and says it. A session made
 * meanwhile waits in the outbox, in the store; Redis back: the outbox
 * drains, its owner record is published and the other instance lists it. */
static void
test_with_redis_down_a_miss_is_a_503_and_what_is_held_is_served(void **state)
{
	struct http_response r;
	struct outbox_wait drained = { &b, 0 };
	char held[160], elsewhere[160], fresh[160], during[160], lost[160], retry[16];

	(void)state;
	wait_shared_state(&a, "up");
	wait_shared_state(&b, "up");
	daemon_create_session(&b, ALICE, held, sizeof(held));
	daemon_create_session(&a, ALICE, elsewhere, sizeof(elsewhere));
	made_by_a_lost_instance("alice", lost, sizeof(lost));
	wait_listed(&b, ALICE, elsewhere, true);
	harness_wait(outbox_is, &drained, HARNESS_WAIT_MS, "B's outbox empty");

	harness_stop_process(redis_pid);
	redis_pid = -1;
	wait_shared_state(&b, "down");
	assert_int_equal(daemon_metric_as(&b, WATCHER, "llamachatd_shared_up"), 0);

	assert_int_equal(get_summary(&b, ALICE, held, &r), 200);
	http_response_free(&r);
	assert_int_equal(get_summary(&b, ALICE, elsewhere, &r), 200);
	http_response_free(&r);
	assert_int_equal(get_summary(&b, ALICE, lost, &r), 503);
	assert_non_null(http_header(&r, "Retry-After", retry, sizeof(retry)));
	http_response_free(&r);
	assert_int_equal(get_summary(&b, BOB, lost, &r), 503);
	http_response_free(&r);
	/* Someone else's session held here is still a plain 404. */
	assert_int_equal(get_summary(&b, BOB, held, NULL), 404);
	assert_int_equal(get_summary(&b, BOB, elsewhere, NULL), 404);
	/* Made while Redis is away: its publication waits in the outbox. */
	daemon_create_session(&b, ALICE, during, sizeof(during));
	assert_int_equal(health_shared_number(&b, "outbox"), 1);
	assert_int_equal(daemon_metric_as(&b, WATCHER, "llamachatd_shared_outbox_pending"), 1);
	/* A budgeted client: B refuses (budgets_when_unavailable = "refuse"),
	 * A counts on its last known sums ("local"). */
	wait_shared_state(&a, "down");
	assert_int_equal(daemon_call(&b, FRANK, "POST", "/api/v1/chat", "{}", &r), 429);
	assert_non_null(strstr(r.body, "cannot answer now"));
	assert_string_equal(http_header(&r, "Retry-After", retry, sizeof(retry)), "5");
	http_response_free(&r);
	assert_int_equal(daemon_call(&a, FRANK, "POST", "/api/v1/chat", "{}", NULL), 200);
	/* Rates: each instance its part of the bucket (the last count of
	 * instances live: two), here Erin's burst of 10 split. */
	assert_int_equal(admitted_until_429(&b, ERIN, 20), 5);

	redis_start();
	wait_shared_state(&b, "up");
	daemon_create_session(&b, ALICE, fresh, sizeof(fresh));
	free(wait_owner_record(fresh));
	assert_int_equal(daemon_call(&b, FRANK, "POST", "/api/v1/chat", "{}", NULL), 200);
	/* Redis kept its data; what B made meanwhile is published on its
	 * return, from the outbox, which drains. */
	free(wait_owner_record(during));
	free(wait_owner_record(held));
	harness_wait(outbox_is, &drained, HARNESS_WAIT_MS, "B's outbox drained");
	wait_listed(&a, ALICE, during, true);
	assert_int_equal(daemon_metric_as(&b, WATCHER, "llamachatd_shared_up"), 1);
	assert_true(daemon_metric_as(&b, WATCHER, "llamachatd_shared_errors_total{kind=\"connection\"}") > 0);
}

struct up_wait {
	const struct daemon_process *d;
	double want;
};

static bool
shared_up_is(void *arg)
{
	struct up_wait *w = arg;

	return daemon_metric_as(w->d, WATCHER, "llamachatd_shared_up") == w->want;
}

/* Redis stopped (SIGSTOP): a miss waits no longer than the deadline (plus a
 * generous margin for a loaded machine) and is a 503; the breaker counts it
 * down; SIGCONT: a probe finds it and owners answer again. */
static void
test_a_stopped_redis_costs_a_miss_its_deadline_only(void **state)
{
	struct http_response r;
	struct up_wait w = { &b, 0 };
	char elsewhere[160];
	struct timespec t0, t1;

	(void)state;
	wait_shared_state(&a, "up");
	wait_shared_state(&b, "up");
	made_by_a_lost_instance("alice", elsewhere, sizeof(elsewhere));
	kill(redis_pid, SIGSTOP);
	for (int i = 0; i < 3; i++) {
		clock_gettime(CLOCK_MONOTONIC, &t0);
		assert_int_equal(get_summary(&b, ALICE, elsewhere, &r), 503);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		http_response_free(&r);
		/* timeout_ms is 200: a stuck Redis never holds a request long. */
		assert_true((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000 < 3000);
	}
	/* A create waits for Redis no longer than the deadline either: its
	 * owner record stays in the outbox. */
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(daemon_call(&b, ALICE, "POST", "/api/v1/chat", "{}", NULL), 200);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	assert_true((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000 < 3000);
	harness_wait(shared_up_is, &w, HARNESS_WAIT_MS, "llamachatd_shared_up 0 (the breaker open)");
	assert_true(daemon_metric_as(&b, WATCHER, "llamachatd_shared_errors_total{kind=\"timeout\"}") >= 2);
	kill(redis_pid, SIGCONT);
	w.want = 1;
	harness_wait(shared_up_is, &w, HARNESS_WAIT_MS, "llamachatd_shared_up 1 (a probe answered)");
	assert_int_equal(get_summary(&b, ALICE, elsewhere, NULL), 200);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_a_session_made_on_one_instance_is_its_owners_on_another),
		cmocka_unit_test(test_every_store_converges_through_the_stream),
		cmocka_unit_test(test_an_instance_behind_the_trimmed_stream_says_so_and_reads_through),
		cmocka_unit_test(test_a_project_pin_holds_across_instances),
		cmocka_unit_test(test_a_session_held_without_an_owner_is_still_its_owners),
		cmocka_unit_test(test_a_delete_removes_the_owner_record),
		cmocka_unit_test(test_a_budget_is_summed_over_instances),
		cmocka_unit_test(test_a_rate_limit_is_one_bucket_for_every_instance),
		cmocka_unit_test(test_an_idempotency_key_holds_on_every_instance),
		cmocka_unit_test(test_a_turns_idempotency_key_holds_on_every_instance),
		cmocka_unit_test(test_owners_are_republished_after_redis_loses_its_data),
		cmocka_unit_test(test_with_redis_down_a_miss_is_a_503_and_what_is_held_is_served),
		cmocka_unit_test(test_a_stopped_redis_costs_a_miss_its_deadline_only),
	};

	if (system("command -v redis-server >/dev/null 2>&1") != 0) {
		printf("it_shared: skipped: redis-server is not installed (apt-get install redis-server; make test "
		       "installs it as root)\n");
		return 0;
	}
	return cmocka_run_group_tests_name(
	    "integration: session owners shared through Redis", tests, start_all, stop_all);
}
