/* apikey: finds the one real LlamaCloud API key and keeps it out of sight. */
#include "gate/apikey.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A key goes into an HTTP header: anything outside visible ASCII would either
 * break the request or smuggle a header. */
static int
apikey_check(const char *key, size_t len, char *why, size_t why_size, const char *source)
{
	if (len == 0) {
		snprintf(why, why_size, "%s: the API key is empty", source);
		return -1;
	}
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)key[i];
		if (ch <= ' ' || ch >= 0x7f) {
			snprintf(why, why_size, "%s: the API key holds a space or control character", source);
			return -1;
		}
	}
	return 0;
}

static size_t
apikey_trimmed_length(const char *text, size_t len)
{
	while (len > 0 &&
	    (text[len - 1] == '\n' || text[len - 1] == '\r' || text[len - 1] == ' ' || text[len - 1] == '\t'))
		len--;
	return len;
}

static int
apikey_read_file(const char *path, char **key, char *why, size_t why_size)
{
	char buf[APIKEY_MAX_BYTES + 1];
	struct stat st;
	ssize_t got;
	size_t len = 0;
	int fd, rc = -1;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		snprintf(why, why_size, "%s: cannot open the API key file: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		snprintf(why, why_size, "%s: the API key file is not a regular file", path);
		goto out;
	}
	if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
		snprintf(why, why_size,
		    "%s: the API key file is accessible by group or others (mode %03o); "
		    "run chmod 600 on it",
		    path, (unsigned)(st.st_mode & 0777));
		goto out;
	}
	while (len < sizeof(buf) && (got = read(fd, buf + len, sizeof(buf) - len)) != 0) {
		if (got < 0) {
			if (errno == EINTR)
				continue;
			snprintf(why, why_size, "%s: cannot read the API key file: %s", path, strerror(errno));
			goto out;
		}
		len += (size_t)got;
	}
	if (len > APIKEY_MAX_BYTES) {
		snprintf(why, why_size, "%s: the API key file is larger than %d bytes", path, APIKEY_MAX_BYTES);
		goto out;
	}
	len = apikey_trimmed_length(buf, len);
	if (apikey_check(buf, len, why, why_size, path) != 0)
		goto out;
	*key = strndup(buf, len);
	if (*key == NULL) {
		snprintf(why, why_size, "%s: out of memory", path);
		goto out;
	}
	rc = 0;
out:
	explicit_bzero(buf, sizeof(buf));
	close(fd);
	return rc;
}

int
apikey_load(const char *key_file, char **key, enum apikey_source *source, char *why, size_t why_size)
{
	const char *credentials = getenv("CREDENTIALS_DIRECTORY");
	char *from_env;
	size_t len;

	*key = NULL;
	*source = APIKEY_SOURCE_NONE;
	if (credentials != NULL && credentials[0] != '\0') {
		char path[4096];
		snprintf(path, sizeof(path), "%s/%s", credentials, APIKEY_CREDENTIAL);
		if (access(path, F_OK) == 0) {
			*source = APIKEY_SOURCE_CREDENTIAL;
			return apikey_read_file(path, key, why, why_size);
		}
	}
	if (key_file != NULL) {
		*source = APIKEY_SOURCE_FILE;
		return apikey_read_file(key_file, key, why, why_size);
	}
	from_env = getenv(APIKEY_ENV);
	if (from_env == NULL)
		return 0;
	len = apikey_trimmed_length(from_env, strlen(from_env));
	if (len == 0) /* set but empty means unset, as for the official SDKs */
		return 0;
	if (apikey_check(from_env, len, why, why_size, "$" APIKEY_ENV) != 0)
		return -1;
	*key = strndup(from_env, len);
	if (*key == NULL) {
		snprintf(why, why_size, "$" APIKEY_ENV ": out of memory");
		return -1;
	}
	*source = APIKEY_SOURCE_ENV;
	explicit_bzero(from_env, strlen(from_env));
	unsetenv(APIKEY_ENV);
	return 0;
}

void
apikey_free(char *key)
{
	if (key == NULL)
		return;
	explicit_bzero(key, strlen(key));
	free(key);
}

int
apikey_load_project(const char *file, const char *credential, char **key, char *why, size_t why_size)
{
	const char *credentials = getenv("CREDENTIALS_DIRECTORY");
	char path[4096];

	*key = NULL;
	if (file != NULL)
		return apikey_read_file(file, key, why, why_size);
	if (credentials == NULL || credentials[0] == '\0') {
		snprintf(why, why_size, "the systemd credential %s: no $CREDENTIALS_DIRECTORY (LoadCredential=)",
		    credential);
		return -1;
	}
	snprintf(path, sizeof(path), "%s/%s", credentials, credential);
	return apikey_read_file(path, key, why, why_size);
}
