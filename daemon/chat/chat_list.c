/* chat_list: GET /api/v1/chat answered from the store, paged by keyset.
 *
 * Sessions of one scope (organization_id, project_id) form one run of index
 * keys, newest first: in the index of all sessions for a caller who may see
 * all, else in the caller's own index. A page reads page_size + 1 entries after the position
 * its page_token names: the extra one only tells whether a next page exists,
 * so an empty page never comes with a token. The cost of a page does not
 * grow with the number of stored sessions. */
#include <errno.h>
#include <event2/buffer.h>
#include <stdlib.h>
#include <string.h>

#include "chat/chat_private.h"
#include "base/config.h"
#include "base/log.h"
#include "chat/pagetoken.h"
#include "http/reply.h"
#include "http/request.h"
#include "http/uri.h"

#define LIST_DEFAULT_PAGE_SIZE 20
#define LIST_MAX_PAGE_SIZE 100

struct list_page {
	struct evbuffer *out;
	size_t wanted; /* page_size */
	size_t taken;
	bool more;
	unsigned char last_key[SESSION_INDEX_KEY_MAX];
	size_t last_key_len;
};

static int
list_take(const char *key, size_t key_len, const void *value, size_t value_len, const void *index_key,
    size_t index_key_len, void *arg)
{
	struct list_page *page = arg;
	struct session_record rec;

	(void)key;
	(void)key_len;
	if (page->taken == page->wanted) {
		page->more = true;
		return 1;
	}
	if (session_record_decode(value, value_len, &rec) != 0)
		return 0; /* a damaged record is left out, not fatal */
	if (page->taken > 0)
		evbuffer_add(page->out, ",", 1);
	evbuffer_add(page->out, rec.json, rec.json_len);
	page->taken++;
	memcpy(page->last_key, index_key, index_key_len);
	page->last_key_len = index_key_len;
	return 0;
}

/* page_size: absent or empty means the default; else 1 to 100. */
static int
list_read_page_size(const char *text, size_t *out)
{
	char *end;
	long value;

	if (text == NULL || text[0] == '\0') {
		*out = LIST_DEFAULT_PAGE_SIZE;
		return 0;
	}
	if (text[0] < '0' || text[0] > '9')
		return -1;
	errno = 0;
	value = strtol(text, &end, 10);
	if (errno != 0 || *end != '\0' || value < 1 || value > LIST_MAX_PAGE_SIZE)
		return -1;
	*out = (size_t)value;
	return 0;
}

void
chat_handle_list(struct chat *chat, struct request *req, const struct caller *caller, const char *query)
{
	struct chat_scope scope;
	struct list_page page = { 0 };
	unsigned char prefix[SESSION_LIST_KEY_MAX], after[PAGETOKEN_MAX_KEY];
	size_t prefix_len;
	long after_len = 0;
	const char *why;
	char text[PAGETOKEN_MAX_TEXT], size_text[32], token[PAGETOKEN_MAX_TEXT + 1];
	int has_size, has_token;
	bool lists_all;

	if (chat_read_scope(query, &scope, &why) != 0) {
		reply_error(req, 400, REPLY_RETRY_WONT_HELP, why);
		return;
	}
	if (!uri_query_is_valid(query)) {
		reply_error(req, 400, REPLY_RETRY_WONT_HELP, "the query string is malformed");
		return;
	}
	has_size = uri_query_get(query, "page_size", size_text, sizeof(size_text));
	if (has_size < 0 || list_read_page_size(has_size > 0 ? size_text : NULL, &page.wanted) != 0) {
		reply_error(req, 400, REPLY_RETRY_WONT_HELP, "page_size must be a whole number from 1 to 100");
		goto out;
	}
	/* A caller who sees only its own sessions reads its own index; one
	 * pinned to a project reads that project's run of the index of all
	 * (the gate made the pin the query's project_id). */
	lists_all = caller->see_all || (caller->client != NULL && caller->client->project_id != NULL);
	prefix_len = session_list_key(lists_all ? NULL : caller->name, scope.organization_id, scope.project_id, prefix);
	has_token = uri_query_get(query, "page_token", token, sizeof(token));
	if (has_token < 0) {
		reply_error(req, 400, REPLY_RETRY_WONT_HELP, "page_token is not valid for this list");
		goto out;
	}
	if (has_token > 0 && token[0] != '\0') {
		/* A token is a position in this scope's run of keys; anything
		 * else is forged or belongs to another query. */
		after_len = pagetoken_decode(token, after);
		if (after_len <= (long)(prefix_len + 8) || memcmp(after, prefix, prefix_len) != 0) {
			reply_error(req, 400, REPLY_RETRY_WONT_HELP, "page_token is not valid for this list");
			goto out;
		}
	}
	if ((page.out = evbuffer_new()) == NULL) {
		reply_error(req, 503, REPLY_RETRY_MAY_HELP, "llamachatd is out of memory");
		goto out;
	}
	evbuffer_add_printf(page.out, "{\"items\":[");
	if (store_scan(chat->store, prefix, prefix_len, after_len > 0 ? after : NULL, (size_t)after_len,
	        page.wanted + 1, list_take, &page) != STORE_OK) {
		reply_error(req, 503, REPLY_RETRY_MAY_HELP, "the session store cannot be read right now");
		goto out;
	}
	evbuffer_add_printf(page.out, "]");
	if (page.more && pagetoken_encode(page.last_key, page.last_key_len, text) == 0)
		evbuffer_add_printf(page.out, ",\"next_page_token\":\"%s\"", text);
	evbuffer_add_printf(page.out, "}");
	request_add_header(req, "Content-Type", "application/json");
	request_add_header(req, "X-Cache", "HIT");
	req->access.cache = "HIT";
	request_reply_buffer(req, 200, page.out);
out:
	if (page.out != NULL)
		evbuffer_free(page.out);
}
