/* Unit: where the API key comes from, and what is refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gate/apikey.h"

static char path[256];

static int
make_key_file(void **state)
{
	int fd;

	(void)state;
	snprintf(path, sizeof(path), "%s/llamachatd-key-XXXXXX", getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp");
	fd = mkstemp(path);
	if (fd < 0)
		return -1;
	close(fd);
	return 0;
}

static int
remove_key_file(void **state)
{
	(void)state;
	unlink(path);
	unsetenv(APIKEY_ENV);
	return 0;
}

static void
write_key_file(const char *text, mode_t mode)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	assert_int_equal(chmod(path, mode), 0);
}

static void
test_key_file_is_read_and_trimmed(void **state)
{
	char why[256];
	enum apikey_source source;
	char *key = NULL;

	(void)state;
	write_key_file("llx-secret\n", 0600);
	setenv(APIKEY_ENV, "from-env", 1);
	assert_int_equal(apikey_load(path, &key, &source, why, sizeof(why)), 0);
	assert_string_equal(key, "llx-secret"); /* the file wins over the environment */
	assert_int_equal(source, APIKEY_SOURCE_FILE);
	apikey_free(key);
}

static void
test_key_file_readable_by_others_is_refused(void **state)
{
	char why[256];
	enum apikey_source source;
	char *key = NULL;

	(void)state;
	write_key_file("llx-secret\n", 0644);
	assert_int_equal(apikey_load(path, &key, &source, why, sizeof(why)), -1);
	assert_null(key);
	assert_non_null(strstr(why, "chmod 600"));
	assert_null(strstr(why, "llx-secret"));
	write_key_file("llx-secret\n", 0640);
	assert_int_equal(apikey_load(path, &key, &source, why, sizeof(why)), -1);
}

static void
test_bad_key_files(void **state)
{
	char why[256];
	enum apikey_source source;
	char *key = NULL;

	(void)state;
	write_key_file("\n", 0600);
	assert_int_equal(apikey_load(path, &key, &source, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "empty"));
	write_key_file("llx-a\r\nX-Injected: 1\n", 0600);
	assert_int_equal(apikey_load(path, &key, &source, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "control"));
	assert_int_equal(apikey_load("/nonexistent/key", &key, &source, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "/nonexistent/key"));
}

static void
test_environment_key_is_taken_and_wiped(void **state)
{
	char why[256];
	enum apikey_source source;
	char *key = NULL;

	(void)state;
	setenv(APIKEY_ENV, "llx-from-env\n", 1);
	assert_int_equal(apikey_load(NULL, &key, &source, why, sizeof(why)), 0);
	assert_string_equal(key, "llx-from-env");
	assert_int_equal(source, APIKEY_SOURCE_ENV);
	assert_null(getenv(APIKEY_ENV));
	apikey_free(key);
}

static void
test_no_key_at_all_is_not_an_error(void **state)
{
	char why[256];
	enum apikey_source source;
	char *key = (char *)"untouched";

	(void)state;
	unsetenv(APIKEY_ENV);
	assert_int_equal(apikey_load(NULL, &key, &source, why, sizeof(why)), 0);
	assert_null(key);
	setenv(APIKEY_ENV, "", 1); /* empty means unset, as for the SDKs */
	assert_int_equal(apikey_load(NULL, &key, &source, why, sizeof(why)), 0);
	assert_null(key);
}

static void
test_systemd_credential_comes_first(void **state)
{
	char why[256], dir[300], cred[400];
	enum apikey_source source;
	char *key = NULL;
	FILE *f;

	(void)state;
	snprintf(dir, sizeof(dir), "%s.creds", path);
	assert_int_equal(mkdir(dir, 0700), 0);
	snprintf(cred, sizeof(cred), "%s/llama_cloud_api_key", dir);
	f = fopen(cred, "w");
	fputs("llx-from-credential\n", f);
	fclose(f);
	chmod(cred, 0400);
	write_key_file("llx-from-file", 0600);
	setenv("CREDENTIALS_DIRECTORY", dir, 1);
	assert_int_equal(apikey_load(path, &key, &source, why, sizeof(why)), 0);
	assert_string_equal(key, "llx-from-credential");
	assert_int_equal(source, APIKEY_SOURCE_CREDENTIAL);
	apikey_free(key);
	/* A credentials directory without the key falls back to the file. */
	unlink(cred);
	assert_int_equal(apikey_load(path, &key, &source, why, sizeof(why)), 0);
	assert_string_equal(key, "llx-from-file");
	apikey_free(key);
	unsetenv("CREDENTIALS_DIRECTORY");
	rmdir(dir);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_key_file_is_read_and_trimmed, make_key_file, remove_key_file),
		cmocka_unit_test_setup_teardown(
		    test_key_file_readable_by_others_is_refused, make_key_file, remove_key_file),
		cmocka_unit_test_setup_teardown(test_bad_key_files, make_key_file, remove_key_file),
		cmocka_unit_test_setup_teardown(
		    test_environment_key_is_taken_and_wiped, make_key_file, remove_key_file),
		cmocka_unit_test_setup_teardown(test_no_key_at_all_is_not_an_error, make_key_file, remove_key_file),
		cmocka_unit_test_setup_teardown(test_systemd_credential_comes_first, make_key_file, remove_key_file),
	};
	return cmocka_run_group_tests_name("unit: apikey", tests, NULL, NULL);
}
