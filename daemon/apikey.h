/* apikey: finds the one real LlamaCloud API key and keeps it out of sight. */
#ifndef LLAMACHATD_APIKEY_H
#define LLAMACHATD_APIKEY_H

#include <stddef.h>

#define APIKEY_ENV "LLAMA_CLOUD_API_KEY"
#define APIKEY_MAX_BYTES 4096

/* Reads the key from key_file when it is non-NULL, else from
 * $LLAMA_CLOUD_API_KEY (whose value is then wiped from the environment, so it
 * does not linger in /proc/PID/environ). A key file that group or others may
 * read is refused. Trailing white space is dropped.
 *
 * Returns 0 with *key set to a new string the caller releases with
 * apikey_free(), or to NULL when no key is configured at all. Returns -1 with
 * a reason in why when a configured key cannot be used. */
int apikey_load(const char *key_file, char **key, char *why, size_t why_size) __attribute__((warn_unused_result));

/* Wipes and frees a key returned by apikey_load(); NULL is fine. */
void apikey_free(char *key);

#endif
