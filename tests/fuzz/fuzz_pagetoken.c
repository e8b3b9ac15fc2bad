/* Fuzz target: page tokens as clients send them back; whatever decodes must
 * encode again to the same token. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "chat/pagetoken.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char text[PAGETOKEN_MAX_TEXT + 64], again[PAGETOKEN_MAX_TEXT];
	unsigned char key[PAGETOKEN_MAX_KEY];
	long len;

	if (size >= sizeof(text))
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	len = pagetoken_decode(text, key);
	if (len >= 0) {
		if (pagetoken_encode(key, (size_t)len, again) != 0 || strcmp(again, text) != 0)
			abort(); /* a token that decodes must be one we would write */
	}
	return 0;
}
