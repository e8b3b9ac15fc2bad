/* failalloc: linked into a test build of the daemon with -Wl,--wrap=calloc,
 * it makes the daemon's own calloc() calls of at least
 * $LLAMACHATD_FAILALLOC_CALLOC_MIN bytes fail with ENOMEM, so integration
 * tests reach the out-of-memory paths of the large allocations (the store's
 * copy of a write) while everything small still works. Libraries keep the
 * real calloc: --wrap only redirects the references in our own objects. */
#include <errno.h>
#include <stdlib.h>

void *__real_calloc(size_t count, size_t size);
void *__wrap_calloc(size_t count, size_t size);

void *
__wrap_calloc(size_t count, size_t size)
{
	static long min_bytes = -2; /* -2: not read yet; -1: never fail */

	if (min_bytes == -2) {
		const char *value = getenv("LLAMACHATD_FAILALLOC_CALLOC_MIN");
		min_bytes = value != NULL && value[0] != '\0' ? atol(value) : -1;
	}
	if (min_bytes >= 0 && count != 0 && size >= (size_t)min_bytes / count) {
		errno = ENOMEM;
		return NULL;
	}
	return __real_calloc(count, size);
}
