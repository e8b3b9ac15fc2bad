/* pagetoken: the opaque page_token of session lists, and its checks. */
#ifndef LLAMACHATD_PAGETOKEN_H
#define LLAMACHATD_PAGETOKEN_H

#include <stddef.h>

#define PAGETOKEN_MAX_KEY 512
#define PAGETOKEN_MAX_TEXT (3 + (PAGETOKEN_MAX_KEY * 4 + 2) / 3 + 1)

/* Writes the token for a position (the last index key a page showed) into
 * text, which holds PAGETOKEN_MAX_TEXT bytes. Returns 0, or -1 when the key is
 * longer than PAGETOKEN_MAX_KEY. */
int pagetoken_encode(const unsigned char *key, size_t key_len, char *text) __attribute__((warn_unused_result));

/* Reads a token back into key (PAGETOKEN_MAX_KEY bytes). Returns the key's
 * length, or -1 when text is not a token this daemon made. */
long pagetoken_decode(const char *text, unsigned char *key) __attribute__((warn_unused_result));

#endif
