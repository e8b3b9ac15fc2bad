/* address: parses listen addresses ("127.0.0.1:8787", "[::1]:8787", "unix:/path"). */
#ifndef LLAMACHATD_ADDRESS_H
#define LLAMACHATD_ADDRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

/* A parsed listen address, ready for bind(). */
struct address {
	struct sockaddr_storage sockaddr;
	socklen_t sockaddr_len;
	bool is_unix;
};

/* Parses text into out. Hosts must be numeric IPv4/IPv6 literals or
 * "localhost"; port 0 asks the kernel for a free port. Returns 0, or -1 with
 * a short reason in why (a static string). */
int address_parse(const char *text, struct address *out, const char **why) __attribute__((warn_unused_result));

/* True for a unix socket or a loopback IP address (127.0.0.0/8, ::1). */
bool address_is_local(const struct address *addr);

/* True when a bound socket address sa is the address addr names. */
bool address_matches(const struct address *addr, const struct sockaddr *sa, socklen_t len);

/* Writes a printable form of a bound socket address ("127.0.0.1:43121",
 * "unix:/run/x.sock") into buf. */
void address_format(const struct sockaddr *sa, socklen_t len, char *buf, size_t size);

#endif
