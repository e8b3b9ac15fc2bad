/* pagetoken: the opaque page_token of session lists, and its checks.
 *
 * A token is "p1." followed by the index key in unpadded base64url: it names a
 * position in the ordered index, so the next page starts right after it even
 * when sessions come and go meanwhile. The prefix lets a later format be told
 * apart. */
#include "chat/pagetoken.h"

#include <string.h>

#define PREFIX "p1."

static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

int
pagetoken_encode(const unsigned char *key, size_t key_len, char *text)
{
	size_t out = strlen(PREFIX);
	unsigned bits = 0, nbits = 0;

	if (key_len == 0 || key_len > PAGETOKEN_MAX_KEY)
		return -1;
	memcpy(text, PREFIX, out);
	for (size_t i = 0; i < key_len; i++) {
		bits = (bits << 8) | key[i];
		nbits += 8;
		while (nbits >= 6) {
			nbits -= 6;
			text[out++] = alphabet[(bits >> nbits) & 63];
		}
	}
	if (nbits > 0)
		text[out++] = alphabet[(bits << (6 - nbits)) & 63];
	text[out] = '\0';
	return 0;
}

static int
sextet(char ch)
{
	const char *at = ch != '\0' ? strchr(alphabet, ch) : NULL;
	return at != NULL ? (int)(at - alphabet) : -1;
}

long
pagetoken_decode(const char *text, unsigned char *key)
{
	size_t prefix_len = strlen(PREFIX), len;
	unsigned bits = 0, nbits = 0;
	long out = 0;

	if (strncmp(text, PREFIX, prefix_len) != 0)
		return -1;
	text += prefix_len;
	len = strlen(text);
	/* One leftover character holds fewer than 8 bits: never a whole token. */
	if (len == 0 || len % 4 == 1 || len > (PAGETOKEN_MAX_KEY * 4 + 2) / 3)
		return -1;
	for (size_t i = 0; i < len; i++) {
		int v = sextet(text[i]);
		if (v < 0)
			return -1;
		bits = (bits << 6) | (unsigned)v;
		nbits += 6;
		if (nbits >= 8) {
			nbits -= 8;
			key[out++] = (unsigned char)(bits >> nbits);
		}
	}
	/* The unused low bits of the last character must be zero, so that one
	 * position has exactly one token. */
	if ((bits & ((1u << nbits) - 1)) != 0)
		return -1;
	return out;
}
