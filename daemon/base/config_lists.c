/* config_lists: the lists of the config file: listen addresses, routes,
 * clients and names (server_names, allowed_origins), each item checked
 * with its own file:line error. */
#include "base/config.h"

#include <libconfig.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "base/address.h"
#include "base/config_private.h"

void
config_read_listen(
    struct config *c, const config_setting_t *s, char **out, size_t *out_count, struct config_errors *errors)
{
	int type = config_setting_type(s);
	int count;

	if (type != CONFIG_TYPE_ARRAY && type != CONFIG_TYPE_LIST) {
		config_setting_error(errors, c->path, s, "must be a list of addresses, e.g. [ \"127.0.0.1:8787\" ]");
		return;
	}
	count = config_setting_length(s);
	if (count < 1 || count > CONFIG_MAX_LISTEN) {
		config_setting_error(errors, c->path, s, "must hold 1 to %d addresses", CONFIG_MAX_LISTEN);
		return;
	}
	for (size_t i = 0; i < *out_count; i++)
		free(out[i]);
	*out_count = 0;
	for (int i = 0; i < count; i++) {
		const config_setting_t *item = config_setting_get_elem(s, (unsigned)i);
		const char *text = config_setting_get_string(item);
		struct address parsed;
		const char *why;
		if (text == NULL) {
			config_setting_error(errors, c->path, s, "item %d must be a string", i + 1);
			continue;
		}
		if (address_parse(text, &parsed, &why) != 0) {
			config_setting_error(errors, c->path, s, "\"%s\": %s", text, why);
			continue;
		}
		out[*out_count] = strdup(text);
		if (out[*out_count] != NULL)
			(*out_count)++;
	}
}

/* A list of names (server_names, allowed_origins): strings of 1 to 255
 * printable ASCII bytes, without blanks. */
void
config_read_names(struct config *c, const config_setting_t *s, struct config_names *out, struct config_errors *errors)
{
	int type = config_setting_type(s), count = config_setting_length(s);

	if ((type != CONFIG_TYPE_ARRAY && type != CONFIG_TYPE_LIST) || count > CONFIG_MAX_NAMES) {
		config_setting_error(errors, c->path, s, "must be a list of at most %d strings", CONFIG_MAX_NAMES);
		return;
	}
	for (int i = 0; i < count; i++) {
		const char *text = config_setting_get_string(config_setting_get_elem(s, (unsigned)i));
		size_t len = text != NULL ? strlen(text) : 0;
		bool printable = len > 0 && len < 256;
		for (size_t k = 0; printable && k < len; k++)
			printable = text[k] > ' ' && text[k] < 127;
		if (!printable) {
			config_setting_error(
			    errors, c->path, s, "item %d must be a name of 1 to 255 printable characters", i + 1);
			continue;
		}
		if ((out->items[out->count] = strdup(text)) != NULL)
			out->count++;
	}
}

static const struct {
	const char *name;
	unsigned bit;
} config_method_names[] = {
	{ "GET", CONFIG_METHOD_GET },
	{ "POST", CONFIG_METHOD_POST },
	{ "PUT", CONFIG_METHOD_PUT },
	{ "PATCH", CONFIG_METHOD_PATCH },
	{ "DELETE", CONFIG_METHOD_DELETE },
};

void
config_free_routes(struct config *c)
{
	for (size_t i = 0; i < c->route_count; i++)
		free(c->routes[i].prefix);
	c->route_count = 0;
}

/* Reads one { prefix = "/api/..."; methods = [ ... ]; } group. */
static void
config_read_route(struct config *c, const config_setting_t *group, struct config_errors *errors)
{
	const config_setting_t *prefix = NULL, *methods = NULL;
	struct config_route route = { NULL, 0 };
	int count = config_setting_length(group);
	const char *text;
	size_t len;

	if (config_setting_type(group) != CONFIG_TYPE_GROUP) {
		config_setting_error(
		    errors, c->path, group, "each route must be a group { prefix = ...; methods = [...]; }");
		return;
	}
	for (int i = 0; i < count; i++) {
		const config_setting_t *m = config_setting_get_elem(group, (unsigned)i);
		if (strcmp(config_setting_name(m), "prefix") == 0)
			prefix = m;
		else if (strcmp(config_setting_name(m), "methods") == 0)
			methods = m;
		else
			config_setting_error(errors, c->path, m, "unknown setting in a route");
	}
	if (prefix == NULL || methods == NULL) {
		config_setting_error(errors, c->path, group, "a route needs both prefix and methods");
		return;
	}
	text = config_setting_get_string(prefix);
	if (text == NULL || strncmp(text, "/api/", 5) != 0 || strstr(text, "..") != NULL ||
	    strpbrk(text, "?#%\\") != NULL) {
		config_setting_error(
		    errors, c->path, prefix, "must be a path under /api/, without '..', '?', '#' or '%%'");
		return;
	}
	if ((config_setting_type(methods) != CONFIG_TYPE_ARRAY && config_setting_type(methods) != CONFIG_TYPE_LIST) ||
	    config_setting_length(methods) < 1) {
		config_setting_error(errors, c->path, methods, "must be a list of methods, e.g. [ \"GET\" ]");
		return;
	}
	for (int i = 0; i < config_setting_length(methods); i++) {
		const char *name = config_setting_get_string(config_setting_get_elem(methods, (unsigned)i));
		unsigned bit = 0;
		for (size_t j = 0; name != NULL && j < sizeof(config_method_names) / sizeof(config_method_names[0]);
		     j++)
			if (strcmp(name, config_method_names[j].name) == 0)
				bit = config_method_names[j].bit;
		if (bit == 0) {
			config_setting_error(errors, c->path, methods,
			    "\"%s\" is not one of GET, POST, PUT, PATCH, DELETE",
			    name != NULL ? name : "(not a string)");
			return;
		}
		route.methods |= bit;
	}
	if (c->route_count == CONFIG_MAX_ROUTES) {
		config_setting_error(errors, c->path, group, "at most %d routes", CONFIG_MAX_ROUTES);
		return;
	}
	len = strlen(text);
	while (len > 1 && text[len - 1] == '/')
		len--;
	route.prefix = strndup(text, len);
	if (route.prefix != NULL)
		c->routes[c->route_count++] = route;
}

void
config_read_routes(struct config *c, const config_setting_t *s, struct config_errors *errors)
{
	if (config_setting_type(s) != CONFIG_TYPE_LIST) {
		config_setting_error(
		    errors, c->path, s, "must be a list of routes ( { prefix = ...; methods = [...]; }, ... )");
		return;
	}
	config_free_routes(c); /* the file's list replaces the default */
	for (int i = 0; i < config_setting_length(s); i++)
		config_read_route(c, config_setting_get_elem(s, (unsigned)i), errors);
}

static bool
config_client_name_is_valid(const char *name)
{
	size_t len = strlen(name);

	if (len == 0 || len > CONFIG_CLIENT_NAME_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		char ch = name[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-' ||
		        ch == '_' || ch == '.' || ch == '@'))
			return false;
	}
	return true;
}

static int
config_parse_hex_hash(const char *text, unsigned char out[32])
{
	if (text == NULL || strlen(text) != 64)
		return -1;
	for (int i = 0; i < 32; i++) {
		unsigned value;
		if (sscanf(text + 2 * i, "%2x", &value) != 1 || strchr("0123456789abcdefABCDEF", text[2 * i]) == NULL ||
		    strchr("0123456789abcdefABCDEF", text[2 * i + 1]) == NULL)
			return -1;
		out[i] = (unsigned char)value;
	}
	return 0;
}

/* Reads a number setting that may be written as an integer or a float. */
static bool
config_get_number(const config_setting_t *s, double *out)
{
	switch (config_setting_type(s)) {
	case CONFIG_TYPE_INT:
	case CONFIG_TYPE_INT64:
		*out = (double)config_setting_get_int64(s);
		return true;
	case CONFIG_TYPE_FLOAT:
		*out = config_setting_get_float(s);
		return true;
	default:
		return false;
	}
}

int
config_parse_utc(const char *text, long long *out)
{
	struct tm tm = { 0 };
	const char *end;
	time_t t;

	if (text == NULL || (end = strptime(text, "%Y-%m-%dT%H:%M:%S", &tm)) == NULL || text[4] != '-' ||
	    text[10] != 'T')
		return -1;
	if (*end == '.') /* fractions of a second: read, and dropped */
		for (end++; *end >= '0' && *end <= '9'; end++)
			;
	if (strcmp(end, "Z") != 0 && strcmp(end, "+00:00") != 0)
		return -1;
	if ((t = timegm(&tm)) == (time_t)-1)
		return -1;
	*out = (long long)t;
	return 0;
}

/* Reads tokens = ( { sha256 = ...; expires = ...; not_before = ...; } ... )
 * into client. */
static void
config_read_tokens(
    struct config *c, const config_setting_t *s, struct config_client *client, struct config_errors *errors)
{
	if (config_setting_type(s) != CONFIG_TYPE_LIST) {
		config_setting_error(errors, c->path, s, "must be a list ( { sha256 = ...; expires = ...; }, ... )");
		return;
	}
	for (int i = 0; i < config_setting_length(s); i++) {
		const config_setting_t *t = config_setting_get_elem(s, (unsigned)i);
		struct config_token token = { 0 };
		bool has_hash = false, bad = false;
		if (config_setting_type(t) != CONFIG_TYPE_GROUP) {
			config_setting_error(errors, c->path, t, "each token must be a group { sha256 = ...; }");
			continue;
		}
		for (int j = 0; j < config_setting_length(t); j++) {
			const config_setting_t *m = config_setting_get_elem(t, (unsigned)j);
			const char *field = config_setting_name(m), *text = config_setting_get_string(m);
			if (strcmp(field, "sha256") == 0) {
				if (config_parse_hex_hash(text, token.sha256) != 0) {
					config_setting_error(errors, c->path, m,
					    "must be the 64 hex digits of the token's SHA-256 (see llamachatd "
					    "--hash-token)");
					bad = true;
				} else {
					has_hash = true;
				}
			} else if (strcmp(field, "expires") == 0 || strcmp(field, "not_before") == 0) {
				long long *target = field[0] == 'e' ? &token.expires : &token.not_before;
				if (config_parse_utc(text, target) != 0) {
					config_setting_error(errors, c->path, m,
					    "must be an RFC 3339 UTC time in quotes, e.g. \"2027-03-01T00:00:00Z\"");
					bad = true;
				}
			} else {
				config_setting_error(errors, c->path, m, "unknown setting");
				bad = true;
			}
		}
		if (!has_hash && !bad)
			config_setting_error(errors, c->path, t, "a token needs its sha256");
		else if (token.expires != 0 && token.not_before != 0 && token.expires <= token.not_before)
			config_setting_error(errors, c->path, t, "expires must come after not_before");
		else if (client->token_count == CONFIG_MAX_TOKENS)
			config_setting_error(errors, c->path, t, "at most %d tokens a client", CONFIG_MAX_TOKENS);
		else if (has_hash && !bad)
			client->tokens[client->token_count++] = token;
	}
}

/* True when clients a and b share a token. */
static bool
config_share_a_token(const struct config_client *a, const struct config_client *b)
{
	for (size_t i = 0; i < a->token_count; i++)
		for (size_t j = 0; j < b->token_count; j++)
			if (memcmp(a->tokens[i].sha256, b->tokens[j].sha256, 32) == 0)
				return true;
	return false;
}

/* Reads one { name = ...; token_sha256 = ...; ... } client. */
static void
config_read_client(struct config *c, const config_setting_t *group, struct config_errors *errors)
{
	struct config_client client = { 0 };
	bool has_name = false, has_hash = false, has_burst = false;
	int count = config_setting_length(group);
	size_t errors_before = errors->count;

	if (config_setting_type(group) != CONFIG_TYPE_GROUP) {
		config_setting_error(
		    errors, c->path, group, "each client must be a group { name = ...; token_sha256 = ...; }");
		return;
	}
	client.rate_per_s = 0; /* no limit unless the entry sets one */
	for (int i = 0; i < count; i++) {
		const config_setting_t *m = config_setting_get_elem(group, (unsigned)i);
		const char *field = config_setting_name(m);
		const char *text = config_setting_get_string(m);
		if (strcmp(field, "name") == 0) {
			if (text == NULL || !config_client_name_is_valid(text))
				config_setting_error(errors, c->path, m, "must be 1 to 64 letters, digits or . _ - @");
			else if ((client.name = strdup(text)) != NULL)
				has_name = true;
		} else if (strcmp(field, "token_sha256") == 0) {
			/* The short form of one token with no dates. */
			if (config_parse_hex_hash(text, client.tokens[client.token_count].sha256) != 0)
				config_setting_error(errors, c->path, m,
				    "must be the 64 hex digits of the token's SHA-256 (see llamachatd --hash-token)");
			else if (client.token_count == CONFIG_MAX_TOKENS)
				config_setting_error(
				    errors, c->path, m, "at most %d tokens a client", CONFIG_MAX_TOKENS);
			else
				client.token_count++;
		} else if (strcmp(field, "tokens") == 0) {
			config_read_tokens(c, m, &client, errors);
		} else if (strcmp(field, "cert_sha256") == 0) {
			if (config_parse_hex_hash(text, client.cert_sha256) != 0)
				config_setting_error(errors, c->path, m,
				    "must be the 64 hex digits of the certificate's SHA-256 (see llamachatd "
				    "--hash-cert)");
			else
				has_hash = client.has_cert = true;
		} else if (strcmp(field, "organization_id") == 0 || strcmp(field, "project_id") == 0) {
			char **target = field[0] == 'o' ? &client.organization_id : &client.project_id;
			if (text == NULL || text[0] == '\0' || strlen(text) > 128 || strpbrk(text, " \t&=?#%/") != NULL)
				config_setting_error(
				    errors, c->path, m, "must be an id (no spaces, '&', '=', '?', '#', '%%' or '/')");
			else
				*target = strdup(text);
		} else if (strcmp(field, "see_all") == 0 || strcmp(field, "metrics") == 0) {
			bool *target = field[0] == 's' ? &client.see_all : &client.metrics;
			if (config_setting_type(m) != CONFIG_TYPE_BOOL)
				config_setting_error(errors, c->path, m, "must be true or false");
			else
				*target = config_setting_get_bool(m) != 0;
		} else if (strcmp(field, "rate_per_s") == 0) {
			if (!config_get_number(m, &client.rate_per_s) || client.rate_per_s < 0 ||
			    client.rate_per_s > 1e6)
				config_setting_error(
				    errors, c->path, m, "must be a number from 0 (no limit) to 1000000");
		} else if (strcmp(field, "max_tokens_per_day") == 0 || strcmp(field, "max_sessions_per_day") == 0) {
			long long *target = field[4] == 't' ? &client.max_tokens_per_day : &client.max_sessions_per_day;
			if (config_setting_type(m) != CONFIG_TYPE_INT && config_setting_type(m) != CONFIG_TYPE_INT64)
				config_setting_error(errors, c->path, m, "must be a whole number from 1 to 10^15");
			else if ((*target = config_setting_get_int64(m)) < 1 || *target > 1000000000000000LL)
				config_setting_error(errors, c->path, m, "must be a whole number from 1 to 10^15");
		} else if (strcmp(field, "burst") == 0) {
			if (!config_get_number(m, &client.burst) || client.burst < 1 || client.burst > 1e6)
				config_setting_error(errors, c->path, m, "must be a number from 1 to 1000000");
			else
				has_burst = true;
		} else {
			config_setting_error(errors, c->path, m, "unknown setting in a client");
		}
	}
	client.has_token = client.token_count > 0;
	has_hash = has_hash || client.has_token;
	if (errors->count == errors_before && (!has_name || !has_hash))
		config_setting_error(errors, c->path, group, "a client needs a name and a token_sha256 or cert_sha256");
	for (size_t i = 0; errors->count == errors_before && i < c->client_count; i++) {
		if (strcmp(c->clients[i].name, client.name) == 0)
			config_setting_error(errors, c->path, group, "a second client named \"%s\"", client.name);
		else if (config_share_a_token(&c->clients[i], &client))
			config_setting_error(errors, c->path, group, "clients \"%s\" and \"%s\" have the same token",
			    c->clients[i].name, client.name);
		else if (!client.has_token && !c->clients[i].has_token && client.has_cert && c->clients[i].has_cert &&
		    memcmp(c->clients[i].cert_sha256, client.cert_sha256, 32) == 0)
			config_setting_error(errors, c->path, group,
			    "clients \"%s\" and \"%s\" have the same certificate and no token to tell them apart",
			    c->clients[i].name, client.name);
	}
	if (!has_burst)
		client.burst = client.rate_per_s * 2 > 1 ? client.rate_per_s * 2 : 1;
	if (errors->count != errors_before || c->client_count == CONFIG_MAX_CLIENTS) {
		if (c->client_count == CONFIG_MAX_CLIENTS && errors->count == errors_before)
			config_setting_error(errors, c->path, group, "at most %d clients", CONFIG_MAX_CLIENTS);
		free(client.name);
		free(client.organization_id);
		free(client.project_id);
		return;
	}
	c->clients[c->client_count++] = client;
}

void
config_read_clients(struct config *c, const config_setting_t *s, struct config_errors *errors)
{
	int count = config_setting_length(s);

	if (config_setting_type(s) != CONFIG_TYPE_LIST) {
		config_setting_error(
		    errors, c->path, s, "must be a list of clients ( { name = ...; token_sha256 = ...; }, ... )");
		return;
	}
	if (count == 0)
		return;
	if ((c->clients = calloc((size_t)count, sizeof(*c->clients))) == NULL) {
		config_setting_error(errors, c->path, s, "out of memory");
		return;
	}
	for (int i = 0; i < count; i++)
		config_read_client(c, config_setting_get_elem(s, (unsigned)i), errors);
}

void
config_free_clients(struct config *c)
{
	for (size_t i = 0; i < c->client_count; i++) {
		free(c->clients[i].name);
		free(c->clients[i].organization_id);
		free(c->clients[i].project_id);
		explicit_bzero(c->clients[i].tokens, sizeof(c->clients[i].tokens));
	}
	free(c->clients);
	c->clients = NULL;
	c->client_count = 0;
}

bool
config_route_allows(const struct config *c, const char *path, unsigned method)
{
	for (size_t i = 0; i < c->route_count; i++) {
		size_t len = strlen(c->routes[i].prefix);
		/* A prefix covers itself and what lies below it, never
		 * "/api/v1/chatty" for "/api/v1/chat". */
		if (strncmp(path, c->routes[i].prefix, len) == 0 && (path[len] == '\0' || path[len] == '/') &&
		    (c->routes[i].methods & method) != 0)
			return true;
	}
	return false;
}

/* Reads one { project_id = ...; api_key_file = ... | credential = ...; }. */
static void
config_read_project_key(struct config *c, const config_setting_t *group, struct config_errors *errors)
{
	struct config_project_key key = { 0 };
	size_t errors_before = errors->count;

	if (config_setting_type(group) != CONFIG_TYPE_GROUP) {
		config_setting_error(errors, c->path, group,
		    "each project key must be a group { project_id = ...; api_key_file = ...; }");
		return;
	}
	for (int i = 0; i < config_setting_length(group); i++) {
		const config_setting_t *m = config_setting_get_elem(group, (unsigned)i);
		const char *field = config_setting_name(m), *text = config_setting_get_string(m);
		char **target = strcmp(field, "project_id") == 0 ? &key.project_id
		    : strcmp(field, "api_key_file") == 0         ? &key.api_key_file
		    : strcmp(field, "credential") == 0           ? &key.credential
		                                                 : NULL;
		if (target == NULL) {
			config_setting_error(errors, c->path, m, "unknown setting");
		} else if (text == NULL || text[0] == '\0' ||
		    strlen(text) > (target == &key.api_key_file ? 4095 : 128) ||
		    (target != &key.api_key_file && strpbrk(text, " \t&=?#%/") != NULL)) {
			config_setting_error(errors, c->path, m,
			    target == &key.api_key_file ? "must be a file name"
			                                : "must be an id (no spaces or / & = ? # %%)");
		} else {
			free(*target);
			*target = strdup(text);
		}
	}
	if (errors->count == errors_before &&
	    (key.project_id == NULL || (key.api_key_file == NULL) == (key.credential == NULL)))
		config_setting_error(
		    errors, c->path, group, "a project key needs a project_id and one of api_key_file or credential");
	for (size_t i = 0; errors->count == errors_before && i < c->project_key_count; i++)
		if (strcmp(c->project_keys[i].project_id, key.project_id) == 0)
			config_setting_error(errors, c->path, group, "a second key for project %s", key.project_id);
	if (errors->count == errors_before && c->project_key_count == CONFIG_MAX_PROJECT_KEYS)
		config_setting_error(errors, c->path, group, "at most %d project keys", CONFIG_MAX_PROJECT_KEYS);
	if (errors->count != errors_before) {
		free(key.project_id);
		free(key.api_key_file);
		free(key.credential);
		return;
	}
	c->project_keys[c->project_key_count++] = key;
}

void
config_read_project_keys(struct config *c, const config_setting_t *s, struct config_errors *errors)
{
	if (config_setting_type(s) != CONFIG_TYPE_LIST) {
		config_setting_error(
		    errors, c->path, s, "must be a list ( { project_id = ...; api_key_file = ...; }, ... )");
		return;
	}
	for (int i = 0; i < config_setting_length(s); i++)
		config_read_project_key(c, config_setting_get_elem(s, (unsigned)i), errors);
}
