/* hostcheck: which Host and Origin a request may carry. */
#include "gate/hostcheck.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "base/config.h"

#define HOSTCHECK_NAME_MAX 256

/* Copies the host of a Host value (its port cut off, IPv6 brackets kept
 * off) into out; false when it does not fit. */
static bool
hostcheck_host_part(const char *value, char *out, size_t size)
{
	size_t len;

	if (value[0] == '[') {
		const char *end = strchr(value, ']');
		if (end == NULL || (end[1] != '\0' && end[1] != ':'))
			return false;
		value++;
		len = (size_t)(end - value);
	} else {
		len = strcspn(value, ":");
	}
	if (len == 0 || len >= size)
		return false;
	memcpy(out, value, len);
	out[len] = '\0';
	return true;
}

static bool
hostcheck_is_loopback(const char *host)
{
	struct in_addr v4;
	struct in6_addr v6;

	if (strcasecmp(host, "localhost") == 0)
		return true;
	if (inet_pton(AF_INET, host, &v4) == 1)
		return (ntohl(v4.s_addr) >> 24) == 127;
	return inet_pton(AF_INET6, host, &v6) == 1 && IN6_IS_ADDR_LOOPBACK(&v6);
}

static bool
hostcheck_listed(const struct config_names *names, const char *value)
{
	for (size_t i = 0; i < names->count; i++)
		if (strcasecmp(names->items[i], value) == 0)
			return true;
	return false;
}

const char *
hostcheck_refusal(const struct config *config, const char *host, const char *origin, bool over_unix)
{
	bool single_user = config->client_count == 0;
	char name[HOSTCHECK_NAME_MAX];

	if (single_user && origin != NULL && !hostcheck_listed(&config->allowed_origins, origin))
		return "requests from a web page (an Origin header) are refused unless allowed_origins lists it";
	/* No Host (HTTP/1.0, a balancer's health check) or a unix socket: no
	 * browser sends such a request to us by a name of its choosing. */
	if (over_unix || host == NULL || (!single_user && config->server_names.count == 0))
		return NULL;
	if (!hostcheck_host_part(host, name, sizeof(name)))
		return "the Host header is malformed";
	if (hostcheck_is_loopback(name) || hostcheck_listed(&config->server_names, name))
		return NULL;
	return single_user ? "the Host header names no loopback address, localhost or server_names entry: "
	                     "single-user mode serves only this machine"
	                   : "the Host header names no server_names entry";
}
