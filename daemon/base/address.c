/* address: parses listen addresses ("127.0.0.1:8787", "[::1]:8787", "unix:/path"). */
#include "base/address.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

static int
address_parse_port(const char *text, in_port_t *port)
{
	char *end;
	long value;

	if (*text < '0' || *text > '9')
		return -1;
	value = strtol(text, &end, 10);
	if (*end != '\0' || value < 0 || value > 65535)
		return -1;
	*port = htons((in_port_t)value);
	return 0;
}

int
address_parse(const char *text, struct address *out, const char **why)
{
	char host[64];
	const char *port_text;
	in_port_t port;

	memset(out, 0, sizeof(*out));
	if (strncmp(text, "unix:", 5) == 0) {
		struct sockaddr_un *sun = (struct sockaddr_un *)&out->sockaddr;
		const char *path = text + 5;
		if (path[0] != '/') {
			*why = "a unix socket path must be absolute";
			return -1;
		}
		if (strlen(path) >= sizeof(sun->sun_path)) {
			*why = "the unix socket path is too long";
			return -1;
		}
		sun->sun_family = AF_UNIX;
		strcpy(sun->sun_path, path);
		out->sockaddr_len = (socklen_t)sizeof(*sun);
		out->is_unix = true;
		return 0;
	}

	if (text[0] == '[') {
		const char *close = strchr(text, ']');
		if (close == NULL || close[1] != ':' || (size_t)(close - text - 1) >= sizeof(host)) {
			*why = "expected \"[ipv6]:port\"";
			return -1;
		}
		memcpy(host, text + 1, (size_t)(close - text - 1));
		host[close - text - 1] = '\0';
		port_text = close + 2;
	} else {
		const char *colon = strrchr(text, ':');
		if (colon == NULL || (size_t)(colon - text) >= sizeof(host)) {
			*why = "expected \"host:port\" or \"unix:/path\"";
			return -1;
		}
		memcpy(host, text, (size_t)(colon - text));
		host[colon - text] = '\0';
		port_text = colon + 1;
	}
	if (address_parse_port(port_text, &port) != 0) {
		*why = "the port must be a number from 0 to 65535";
		return -1;
	}
	if (strcmp(host, "localhost") == 0)
		strcpy(host, "127.0.0.1");

	struct sockaddr_in *sin = (struct sockaddr_in *)&out->sockaddr;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&out->sockaddr;
	if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = port;
		out->sockaddr_len = (socklen_t)sizeof(*sin);
	} else if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = port;
		out->sockaddr_len = (socklen_t)sizeof(*sin6);
	} else {
		*why = "the host must be an IPv4 or IPv6 address, or localhost";
		return -1;
	}
	return 0;
}

bool
address_is_local(const struct address *addr)
{
	if (addr->is_unix)
		return true;
	if (addr->sockaddr.ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)&addr->sockaddr;
		return (ntohl(sin->sin_addr.s_addr) >> 24) == 127;
	}
	return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)&addr->sockaddr)->sin6_addr);
}

bool
address_matches(const struct address *addr, const struct sockaddr *sa, socklen_t len)
{
	if (sa->sa_family != addr->sockaddr.ss_family)
		return false;
	if (sa->sa_family == AF_UNIX)
		return strcmp(((const struct sockaddr_un *)sa)->sun_path,
		           ((const struct sockaddr_un *)&addr->sockaddr)->sun_path) == 0;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)&addr->sockaddr,
		                         *b = (const struct sockaddr_in *)sa;
		return len >= sizeof(*b) && a->sin_port == b->sin_port && a->sin_addr.s_addr == b->sin_addr.s_addr;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&addr->sockaddr,
		                          *b = (const struct sockaddr_in6 *)sa;
		return len >= sizeof(*b) && a->sin6_port == b->sin6_port &&
		    memcmp(&a->sin6_addr, &b->sin6_addr, sizeof(a->sin6_addr)) == 0;
	}
	return false;
}

void
address_format(const struct sockaddr *sa, socklen_t len, char *buf, size_t size)
{
	char host[INET6_ADDRSTRLEN];

	(void)len;
	if (sa->sa_family == AF_UNIX) {
		snprintf(buf, size, "unix:%s", ((const struct sockaddr_un *)sa)->sun_path);
	} else if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
		snprintf(buf, size, "%s:%u", host, ntohs(sin->sin_port));
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
		inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
		snprintf(buf, size, "[%s]:%u", host, ntohs(sin6->sin6_port));
	} else {
		snprintf(buf, size, "(family %d)", sa->sa_family);
	}
}
