/* Fuzz target: the stored session and Idempotency-Key record decoders, and the Session JSON
 * checks that upstream answers and client bodies go through. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gate/idempotency.h"
#include "store/session.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct session_record rec;
	struct idempotency_record key_rec;
	char id[SESSION_ID_MAX + 1];
	uint64_t updated;
	const char *why;

	if (session_record_decode(data, size, &rec) == 0) {
		/* A record that decodes must encode back to the same bytes. */
		size_t need = session_record_encoded_size(&rec);
		unsigned char *out = malloc(need);
		if (out == NULL)
			abort();
		session_record_encode(&rec, out);
		if (need != size || memcmp(out, data, size) != 0)
			abort();
		free(out);
	}
	if (idempotency_record_decode(data, size, &key_rec) == 0) {
		/* The same for an Idempotency-Key record. */
		size_t need = idempotency_record_encoded_size(&key_rec);
		unsigned char *out = malloc(need);
		if (out == NULL)
			abort();
		idempotency_record_encode(&key_rec, out);
		if (need != size || memcmp(out, data, size) != 0)
			abort();
		free(out);
	}
	(void)session_parse_summary((const char *)data, size, id, &updated, &why);
	(void)session_check_create_body((const char *)data, size, &why);
	(void)session_check_stream_body((const char *)data, size, &why);
	free(session_summary_of_history((const char *)data, size));
	return 0;
}
