/* upstream_reply: the answers a client gets when its call could not reach
 * upstream or upstream's transfer failed. */
#include "chat/upstream_reply.h"

#include <time.h>

#include <stdio.h>

#include "base/log.h"
#include "http/reply.h"
#include "http/request.h"
#include "upstream/upstream.h"

void
reply_upstream_failure(struct request *req, const struct upstream_response *response, bool may_have_acted)
{
	enum reply_retry retry =
	    may_have_acted && response->request_sent ? REPLY_RETRY_WONT_HELP : REPLY_RETRY_MAY_HELP;
	int status = response->error == UPSTREAM_ERR_TIMEOUT ? 504
	    : response->error == UPSTREAM_ERR_NO_CONNECTION  ? 503
	                                                     : 502;

	log_warnx("upstream call failed: %s", response->error_text);
	switch (response->error) {
	case UPSTREAM_ERR_CONNECT:
		reply_errorf(req, status, retry, "LlamaCloud upstream is unreachable: %s", response->error_text);
		break;
	case UPSTREAM_ERR_TIMEOUT:
		reply_error(req, status, retry, "LlamaCloud upstream did not answer in time");
		break;
	case UPSTREAM_ERR_NO_CONNECTION: /* ours to relieve: nothing reached upstream */
		reply_error(req, status, REPLY_RETRY_MAY_HELP, response->error_text);
		break;
	case UPSTREAM_ERR_TLS:
		reply_error(
		    req, status, REPLY_RETRY_WONT_HELP, "LlamaCloud upstream's TLS certificate could not be verified");
		break;
	default:
		reply_errorf(req, status, retry, "LlamaCloud upstream failed: %s", response->error_text);
		break;
	}
}

void
reply_no_key(struct request *req)
{
	reply_error(req, 503, REPLY_RETRY_WONT_HELP,
	    "llamachatd has no LlamaCloud API key: set LLAMA_CLOUD_API_KEY in the daemon's environment and "
	    "restart it, or set upstream.api_key_file in its config and reload it (SIGHUP)");
}

bool
reply_unless_ready(struct request *req, struct upstream *upstream, const char *project)
{
	long retry_after = 1;
	double since;

	if (upstream_has_key_for(upstream, project)) {
		char seconds[24], when[32];
		time_t t;
		struct tm tm;
		if (upstream_breaker_admits(upstream, project, &retry_after, &since))
			return false;
		/* Failing fast beats every caller waiting out the timeout. */
		t = (time_t)since;
		gmtime_r(&t, &tm);
		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
		snprintf(seconds, sizeof(seconds), "%ld", retry_after > 0 ? retry_after : 1);
		request_add_header(req, "Retry-After", seconds);
		reply_errorf(req, 503, REPLY_RETRY_MAY_HELP,
		    "LlamaCloud upstream is failing (circuit breaker open since %s); nothing was sent; retry later",
		    when);
		return true;
	}
	if (!upstream_has_key(upstream))
		reply_no_key(req);
	else if (project != NULL && project[0] != '\0')
		reply_errorf(req, 403, REPLY_RETRY_WONT_HELP,
		    "llamachatd has no LlamaCloud API key for project %s, and no default key", project);
	else
		reply_error(req, 403, REPLY_RETRY_WONT_HELP,
		    "this call names no project, and llamachatd has no default LlamaCloud API key: send project_id");
	return true;
}
