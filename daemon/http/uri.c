/* uri: the query string and percent-encoding, as the handlers need them. */
#include "http/uri.h"

#include <string.h>

static int
uri_hex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int
uri_escape_value(const char *text)
{
	int hi = text[0] == '%' ? uri_hex(text[1]) : -1;
	int lo = hi >= 0 ? uri_hex(text[2]) : -1;

	return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

static bool
uri_is_unreserved(int c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
	    c == '_' || c == '~';
}

int
uri_normalize_path(char *path)
{
	static const char hex[] = "0123456789ABCDEF";
	char *out = path;

	/* Most paths hold no escape: nothing moves until the first one. */
	for (const char *in = path; *in != '\0';) {
		int value;
		if (*in != '%') {
			*out++ = *in++;
			continue;
		}
		if ((value = uri_escape_value(in)) < 0)
			return -1;
		if (uri_is_unreserved(value)) {
			*out++ = (char)value;
		} else {
			out[0] = '%';
			out[1] = hex[value >> 4];
			out[2] = hex[value & 15];
			out += 3;
		}
		in += 3;
	}
	*out = '\0';
	return 0;
}

/* Decodes len bytes of text into out (size bytes, NUL-terminated). */
static int
uri_decode(const char *text, size_t len, char *out, size_t size)
{
	size_t n = 0;

	for (size_t i = 0; i < len; i++) {
		char c = text[i];
		if (c == '+') {
			c = ' ';
		} else if (c == '%') {
			int hi = i + 2 < len ? uri_hex(text[i + 1]) : -1;
			int lo = hi >= 0 ? uri_hex(text[i + 2]) : -1;
			if (hi < 0 || lo < 0)
				return -1;
			c = (char)(hi * 16 + lo);
			i += 2;
		}
		if (c == '\0' || n + 1 >= size)
			return -1;
		out[n++] = c;
	}
	out[n] = '\0';
	return 0;
}

int
uri_query_each(const char *query, bool (*fn)(const char *name, const char *value, void *arg), void *arg)
{
	char name[URI_PARAM_MAX + 1], value[URI_PARAM_MAX + 1];

	for (const char *p = query; p != NULL && *p != '\0';) {
		size_t len = strcspn(p, "&");
		const char *eq = memchr(p, '=', len);
		size_t name_len = eq != NULL ? (size_t)(eq - p) : len;

		if (len > 0) {
			if (uri_decode(p, name_len, name, sizeof(name)) != 0)
				return -1;
			if (uri_decode(eq != NULL ? eq + 1 : p + len, eq != NULL ? len - name_len - 1 : 0, value,
			        sizeof(value)) != 0)
				return -1;
			if (!fn(name, value, arg))
				return 0;
		}
		p += len;
		if (*p == '&')
			p++;
	}
	return 0;
}

static bool
uri_accept(const char *name, const char *value, void *arg)
{
	(void)name;
	(void)value;
	(void)arg;
	return true;
}

bool
uri_query_is_valid(const char *query)
{
	return uri_query_each(query, uri_accept, NULL) == 0;
}

struct uri_lookup {
	const char *name;
	char *out;
	size_t size;
	int found; /* 1 found, -1 too long */
};

static bool
uri_match(const char *name, const char *value, void *arg)
{
	struct uri_lookup *l = arg;
	size_t len = strlen(value);

	if (strcmp(name, l->name) != 0)
		return true;
	if (len >= l->size) {
		l->found = -1;
	} else {
		memcpy(l->out, value, len + 1);
		l->found = 1;
	}
	return false;
}

int
uri_query_get(const char *query, const char *name, char *out, size_t size)
{
	struct uri_lookup l = { name, out, size, 0 };

	if (uri_query_each(query, uri_match, &l) != 0)
		return -1;
	return l.found;
}

int
uri_encode(const char *text, char *out, size_t size)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = 0;

	for (const unsigned char *p = (const unsigned char *)text; *p != '\0'; p++) {
		bool plain = uri_is_unreserved(*p);
		if (n + (plain ? 1 : 3) >= size)
			return -1;
		if (plain) {
			out[n++] = (char)*p;
		} else {
			out[n++] = '%';
			out[n++] = hex[*p >> 4];
			out[n++] = hex[*p & 15];
		}
	}
	out[n] = '\0';
	return (int)n;
}
