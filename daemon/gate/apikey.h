/* apikey: finds the one real LlamaCloud API key and keeps it out of sight. */
#ifndef LLAMACHATD_APIKEY_H
#define LLAMACHATD_APIKEY_H

#include <stddef.h>

#define APIKEY_ENV "LLAMA_CLOUD_API_KEY"
#define APIKEY_CREDENTIAL "llama_cloud_api_key" /* systemd LoadCredential= name */

/* Where the key came from. */
enum apikey_source {
	APIKEY_SOURCE_NONE,
	APIKEY_SOURCE_CREDENTIAL, /* $CREDENTIALS_DIRECTORY/llama_cloud_api_key */
	APIKEY_SOURCE_FILE, /* upstream.api_key_file */
	APIKEY_SOURCE_ENV, /* $LLAMA_CLOUD_API_KEY */
};
#define APIKEY_MAX_BYTES 4096

/* Reads the key from, in order: the systemd credential
 * $CREDENTIALS_DIRECTORY/llama_cloud_api_key, key_file (when non-NULL), and
 * $LLAMA_CLOUD_API_KEY (whose value is then wiped from the environment, so
 * it does not linger in /proc/PID/environ). A file that group or others may
 * read is refused. Trailing white space is dropped.
 *
 * Returns 0 with *key set to a new string the caller releases with
 * apikey_free(), or to NULL when no key is configured at all, and *source
 * saying where it came from. Returns -1 with a reason in why when a
 * configured key cannot be used. */
int apikey_load(const char *key_file, char **key, enum apikey_source *source, char *why, size_t why_size)
    __attribute__((warn_unused_result));

/* Reads a project's key from file, or (file NULL) from the systemd
 * credential called credential, with the same rules as apikey_load().
 * Returns 0 with *key a new string (apikey_free()), or -1 with why. */
int apikey_load_project(const char *file, const char *credential, char **key, char *why, size_t why_size)
    __attribute__((warn_unused_result));

/* Wipes and frees a key returned by apikey_load(); NULL is fine. */
void apikey_free(char *key);

#endif
