/* upstream_keys: the LlamaCloud API keys calls go with (a default one and
 * one per project), which key a call takes, and what upstream made of each:
 * its 401 and 403 answers, counted and logged once after a success. No key
 * ever leaves here but in a call's Authorization header. */
#include "upstream/upstream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/log.h"
#include "upstream/upstream_private.h"

static void
upstream_wipe_key(char *key)
{
	if (key != NULL) {
		explicit_bzero(key, strlen(key));
		free(key);
	}
}

struct upstream_key *
upstream_find_key(const struct upstream *upstream, const char *project)
{
	for (size_t i = 0; i < upstream->key_count; i++)
		if (strcmp(upstream->keys[i].project, project) == 0)
			return (struct upstream_key *)&upstream->keys[i];
	return NULL;
}

void
upstream_set_keys(struct upstream *upstream, char *default_key, const char *const *projects, char **keys, size_t count)
{
	struct upstream_key fresh[1 + UPSTREAM_MAX_PROJECT_KEYS];
	size_t n = 0;

	if (count > UPSTREAM_MAX_PROJECT_KEYS)
		count = UPSTREAM_MAX_PROJECT_KEYS;
	memset(fresh, 0, sizeof(fresh));
	for (size_t i = 0; i <= count; i++) {
		const char *project = i == 0 ? "" : projects[i - 1];
		struct upstream_key *old = upstream_find_key(upstream, project);
		/* What upstream made of a project's key so far stays. */
		if (old != NULL)
			fresh[n] = *old;
		snprintf(fresh[n].project, sizeof(fresh[n].project), "%s", project);
		if (old == NULL)
			fresh[n].breaker.wait_ms = upstream->settings.breaker_open_ms;
		fresh[n].key = i == 0 ? default_key : keys[i - 1];
		if (i > 0)
			keys[i - 1] = NULL;
		n++;
	}
	for (size_t i = 0; i < upstream->key_count; i++)
		upstream_wipe_key(upstream->keys[i].key);
	memcpy(upstream->keys, fresh, sizeof(fresh));
	upstream->key_count = n;
	explicit_bzero(fresh, sizeof(fresh));
}

void
upstream_set_project_keys(struct upstream *upstream, const char *const *projects, char **keys, size_t count)
{
	char *kept = upstream->key_count > 0 ? upstream->keys[0].key : NULL;

	if (upstream->key_count > 0)
		upstream->keys[0].key = NULL; /* moved, not wiped */
	upstream_set_keys(upstream, kept, projects, keys, count);
}

bool
upstream_has_key(const struct upstream *upstream)
{
	for (size_t i = 0; i < upstream->key_count; i++)
		if (upstream->keys[i].key != NULL)
			return true;
	return false;
}

struct upstream_key *
upstream_key_slot_for(const struct upstream *upstream, const char *project)
{
	struct upstream_key *k = project != NULL && project[0] != '\0' ? upstream_find_key(upstream, project) : NULL;

	if (k == NULL || k->key == NULL)
		k = upstream->key_count > 0 ? (struct upstream_key *)&upstream->keys[0] : NULL; /* the default */
	return k != NULL && k->key != NULL ? k : NULL;
}

const char *
upstream_pick_key(const struct upstream *upstream, const char *project, const char **owner)
{
	const struct upstream_key *k = upstream_key_slot_for(upstream, project);

	if (k == NULL)
		return NULL;
	*owner = k->project;
	return k->key;
}

bool
upstream_has_key_for(const struct upstream *upstream, const char *project)
{
	const char *owner;

	return upstream_pick_key(upstream, project, &owner) != NULL;
}

void
upstream_key_outcome(struct upstream *upstream, const char *owner, long status)
{
	struct upstream_key *k = upstream_find_key(upstream, owner);
	const char *name = owner[0] != '\0' ? owner : "default";

	if (k == NULL)
		return; /* the key went away with a reload */
	if (status == 401 || status == 403) {
		k->rejections++;
		k->last_rejection_wall = clock_unix_s();
		if (!k->rejected_since_success) {
			log_warnx("upstream refused the API key of project %s (HTTP %ld): revoked, or of another "
			          "project? Calls with it fail until it is replaced",
			    name, status);
			k->rejected_since_success = true;
		}
	} else if (status >= 200 && status <= 299) {
		k->last_success_wall = clock_unix_s();
		k->rejected_since_success = false;
	}
}

size_t
upstream_key_count(const struct upstream *upstream)
{
	return upstream->key_count;
}

void
upstream_key_info(const struct upstream *upstream, size_t index, struct upstream_key_info *out)
{
	const struct upstream_key *k = &upstream->keys[index];

	out->project = k->project[0] != '\0' ? k->project : "default";
	out->rejections = k->rejections;
	out->last_success_wall = k->last_success_wall;
	out->last_rejection_wall = k->last_rejection_wall;
	out->breaker = k->breaker.state;
}
