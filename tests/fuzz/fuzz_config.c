/* Fuzz target: the config loader, on whatever text. Every input must load or
 * give errors, never crash or leak. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config_errors errors;
	struct config *config;
	char *text = malloc(size + 1);

	if (text == NULL)
		abort();
	memcpy(text, data, size);
	text[size] = '\0';
	config = config_load_text("fuzz.conf", text, &errors);
	config_free(config);
	config_errors_free(&errors);
	free(text);
	return 0;
}
