/* Fuzz target: the request head and body path. The bytes go over a real
 * socketpair into the daemon's HTTP server (llhttp plus our own rules),
 * whose handler answers each request it is given, as a hit would. */
#include <event2/event.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http/http.h"
#include "base/log.h"
#include "http/reply.h"
#include "http/request.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct event_base *base;
static struct http_server *server;
static int answered;

static void
fuzz_handle(struct request *req, void *arg)
{
	(void)arg;
	answered++;
	/* Read what the handlers read, then answer. */
	(void)request_header(req, "Content-Type");
	(void)req->path;
	(void)req->query;
	if (req->method == REQUEST_POST)
		reply_error(req, 422, REPLY_RETRY_WONT_HELP, "fuzz");
	else
		request_reply(req, 200, "{}", 2);
}

static void
fuzz_init(void)
{
	struct http_settings settings = {
		.max_header_bytes = 4096,
		.max_target_bytes = 1024,
		.max_body_bytes = 65536,
		.header_timeout_ms = 1000,
		.body_timeout_ms = 1000,
		.keepalive_timeout_ms = 1000,
		.send_timeout_ms = 1000,
		.max_connections = 64,
	};
	struct http_hooks hooks = { NULL, fuzz_handle, NULL, NULL };

	log_init(LOG_LEVEL_ERROR, false);
	base = event_base_new();
	server = http_server_create(base, &settings, &hooks);
	if (base == NULL || server == NULL)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int pair[2];
	char sink[65536];

	if (server == NULL)
		fuzz_init();
	if (size > 60000)
		return 0;
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, pair) != 0)
		abort();
	if (http_server_adopt(server, pair[0], true) != 0)
		abort();
	if (size > 0 && write(pair[1], data, size) != (ssize_t)size)
		abort();
	shutdown(pair[1], SHUT_WR);
	/* Let the server read, parse, answer and close; a few turns do it. */
	for (int turn = 0; turn < 64 && http_server_open_connections(server) > 0; turn++) {
		event_base_loop(base, EVLOOP_NONBLOCK);
		while (recv(pair[1], sink, sizeof(sink), MSG_DONTWAIT) > 0)
			;
	}
	close(pair[1]);
	/* A connection left open (a deadline would close it) is closed now,
	 * by freeing the whole server. */
	if (http_server_open_connections(server) > 0) {
		http_server_free(server);
		server = NULL;
	}
	return 0;
}
