/* Integration: the Grafana dashboard and the Prometheus alert rules that
 * ship with llamachatd stay true to the code: promtool checks the rules and
 * drives their alerts from synthetic series, and every llamachatd_ metric
 * a dashboard query or a rule names is one the daemon exposes (started
 * with TLS, clients with budgets and an expiring token, so that every
 * family shows). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"

static struct fake_upstream fake;
static struct daemon_process gw;
static char *dir;

#define LEAD "Authorization: Bearer tok-lead-dash-77"

static int
shell(const char *line, char **out)
{
	char *argv[] = { "/bin/sh", "-c", (char *)line, NULL };

	return run_command(argv, NULL, NULL, out);
}

static int
start_all(void **state)
{
	char line[2048], lead[65], *out = NULL;
	char expires[32];
	time_t soon = time(NULL) + 3 * 86400;
	struct tm tm;
	FILE *f;

	(void)state;
	dir = harness_make_dir("dashboards");
	if (dir == NULL || fake_start(&fake, dir) != 0)
		return -1;
	snprintf(line, sizeof(line),
	    "cd '%s' && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout tls.key "
	    "-out tls.pem -days 30 -subj /CN=localhost 2>/dev/null && chmod 600 tls.key",
	    dir);
	if (shell(line, &out) != 0)
		return -1;
	free(out);
	gmtime_r(&soon, &tm);
	strftime(expires, sizeof(expires), "%Y-%m-%dT%H:%M:%SZ", &tm);
	harness_token_hex("tok-lead-dash-77", lead);
	daemon_write_config(&gw, dir, fake.port, NULL, NULL, NULL);
	f = fopen(gw.conf_path, "a");
	fprintf(f,
	    "tls = { listen = [ \"127.0.0.1:0\" ]; cert_file = \"%s/tls.pem\"; key_file = \"%s/tls.key\"; };\n"
	    /* Shared mode, its Redis nowhere: its metrics are there all the same. */
	    "shared = { redis = \"unix:%s/no-redis.sock\"; instance = \"dash\"; };\n"
	    "clients = ( { name = \"lead\"; see_all = true; metrics = true; max_tokens_per_day = 1000;\n"
	    "  max_sessions_per_day = 10; tokens = ( { sha256 = \"%s\"; expires = \"%s\"; } ); } );\n",
	    dir, dir, dir, lead, expires);
	fclose(f);
	return daemon_start(&gw, HARNESS_KEY);
}

static int
stop_all(void **state)
{
	(void)state;
	harness_suite_stop(&dir, &fake, &gw);
	return 0;
}

static void
test_promtool_checks_and_drives_the_rules(void **state)
{
	char line[1024], *out = NULL;
	const char *top = getenv("LLAMACHATD_TOP");

	(void)state;
	assert_non_null(top);
	snprintf(line, sizeof(line), "cd '%s' && promtool check rules conf/prometheus/llamachatd-rules.yml 2>&1", top);
	if (shell(line, &out) != 0)
		fail_msg("promtool check rules:\n%s", out);
	free(out);
	snprintf(line, sizeof(line), "cd '%s' && promtool test rules tests/prometheus/rules_test.yml 2>&1", top);
	if (shell(line, &out) != 0)
		fail_msg("promtool test rules:\n%s", out);
	free(out);
}

/* True when the scrape has a family called name, or name is the _bucket,
 * _count or _sum series of a histogram it has. */
static bool
scrape_has(const char *scrape, const char *name)
{
	static const char *const suffixes[] = { "_bucket", "_count", "_sum" };
	char needle[320];
	size_t len = strlen(name);

	snprintf(needle, sizeof(needle), "# TYPE %s ", name);
	if (strstr(scrape, needle) != NULL)
		return true;
	for (size_t i = 0; i < 3; i++) {
		size_t s = strlen(suffixes[i]);
		if (len > s && strcmp(name + len - s, suffixes[i]) == 0) {
			snprintf(needle, sizeof(needle), "# TYPE %.*s histogram", (int)(len - s), name);
			if (strstr(scrape, needle) != NULL)
				return true;
		}
	}
	return false;
}

/* Every llamachatd_ name in text is in the scrape; returns how many. */
static int
check_names(const char *what, const char *text, const char *scrape)
{
	int count = 0;

	for (const char *at = strstr(text, "llamachatd_"); at != NULL; at = strstr(at + 1, "llamachatd_")) {
		char name[256];
		size_t n = strspn(at, "abcdefghijklmnopqrstuvwxyz_");
		if (n >= sizeof(name) || (at > text && (at[-1] == '/' || at[-1] == '-' || at[-1] == '.')))
			continue; /* a file name, not a metric */
		memcpy(name, at, n);
		name[n] = '\0';
		if (!scrape_has(scrape, name))
			fail_msg("%s names %s, which the daemon does not expose", what, name);
		count++;
	}
	return count;
}

static void
test_every_metric_named_is_exposed(void **state)
{
	char path[1024];
	const char *top = getenv("LLAMACHATD_TOP");
	struct http_response r;
	char *dashboard, *rules;

	(void)state;
	assert_int_equal(daemon_call(&gw, LEAD, "GET", "/metrics", NULL, &r), 200);
	snprintf(path, sizeof(path), "%s/conf/grafana/llamachatd.json", top);
	dashboard = harness_read_file(path);
	snprintf(path, sizeof(path), "%s/conf/prometheus/llamachatd-rules.yml", top);
	rules = harness_read_file(path);
	assert_non_null(dashboard);
	assert_non_null(rules);
	assert_true(check_names("the dashboard", dashboard, r.body) >= 20);
	assert_true(check_names("the alert rules", rules, r.body) >= 9);
	free(dashboard);
	free(rules);
	http_response_free(&r);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_promtool_checks_and_drives_the_rules),
		cmocka_unit_test(test_every_metric_named_is_exposed),
	};
	return cmocka_run_group_tests_name("integration: dashboard and alert rules", tests, start_all, stop_all);
}
