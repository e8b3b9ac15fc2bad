/* hostcheck: which Host and Origin a request may carry, so that a loopback
 * listener is not a door for a web page whose name rebinds to 127.0.0.1
 * (the check transmission-daemon's rpc-host-whitelist and Jupyter make). */
#ifndef LLAMACHATD_HOSTCHECK_H
#define LLAMACHATD_HOSTCHECK_H

#include <stdbool.h>

struct config;

/* Why a request with these headers (host and origin may be NULL: absent)
 * is refused, or NULL when it may go on. over_unix: it came over a unix
 * socket, which no browser reaches. In single-user mode (no clients) the
 * Host must name a loopback address, "localhost", or one of server_names,
 * and an Origin must be one of allowed_origins. In team mode Host is
 * checked only when server_names is set (loopback names still pass), and
 * Origin not at all: every call there needs a token. */
const char *hostcheck_refusal(const struct config *config, const char *host, const char *origin, bool over_unix);

#endif
