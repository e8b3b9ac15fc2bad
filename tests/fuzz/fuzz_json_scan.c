/* Fuzz target: json_scan against Jansson. Whatever the scan calls certain
 * must be a JSON object that json_loadb accepts, with the same bytes in
 * each string member picked out; the scan may give up on anything else. */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "store/json_scan.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct json_scan_field fields[] = { { .name = "session_id" }, { .name = "last_updated_at" }, { .name = "" } };
	const char *text = (const char *)data;
	json_error_t error;
	json_t *root;

	/* With no fields the scan checks the document alone. */
	if (json_scan_object(text, size, NULL, 0)) {
		root = json_loadb(text, size, 0, &error);
		if (!json_is_object(root))
			abort();
		json_decref(root);
	}
	for (size_t count = 1; count <= 3; count++) {
		if (!json_scan_object(text, size, fields, count))
			continue;
		root = json_loadb(text, size, 0, &error);
		if (!json_is_object(root))
			abort();
		for (size_t i = 0; i < count; i++) {
			json_t *member = json_object_get(root, fields[i].name);
			if (!json_is_string(member) || json_string_length(member) != fields[i].len ||
			    memcmp(json_string_value(member), fields[i].value, fields[i].len) != 0)
				abort();
		}
		json_decref(root);
	}
	return 0;
}
