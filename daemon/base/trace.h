/* trace: W3C trace ids and the spans the daemon records, held in a bounded
 * queue until the exporter (upstream/span_export.c) sends them on.
 *
 * A span is plain fixed-size data: recording one allocates nothing, and a
 * full queue drops it (counted) rather than wait. The loop pushes; the
 * exporter's thread takes. The queue's mutex is held for a copy only. */
#ifndef LLAMACHATD_TRACE_H
#define LLAMACHATD_TRACE_H

#include <stdbool.h>
#include <stddef.h>

#define TRACE_ID_HEX 32
#define TRACE_SPAN_ID_HEX 16
#define TRACEPARENT_LEN 55 /* "00-" trace "-" span "-" flags */

/* Fills out with digits random lower-case hex digits and a NUL; never all
 * zero. A counter run through splitmix64, seeded once from the kernel: no
 * system call per id. For the loop's thread only. */
void trace_new_id(char *out, size_t digits);

/* A sampling decision for a new trace: true with probability ratio. */
bool trace_sample(double ratio);

enum span_kind {
	SPAN_KIND_SERVER = 2, /* as OTLP numbers them */
	SPAN_KIND_CLIENT = 3,
};

#define SPAN_ATTRS_MAX 20
#define SPAN_TEXT_MAX 512

/* One attribute: its key (a static string) and an integer or a string
 * (offset and length in the span's text). */
struct span_attr {
	const char *key;
	bool is_int;
	long long number;
	unsigned short offset, len;
};

struct span {
	char trace_id[TRACE_ID_HEX + 1];
	char span_id[TRACE_SPAN_ID_HEX + 1];
	char parent_id[TRACE_SPAN_ID_HEX + 1]; /* "": a root span */
	char name[64];
	enum span_kind kind;
	long long start_unix_ns, end_unix_ns;
	bool error; /* its status is Error */
	struct span_attr attrs[SPAN_ATTRS_MAX];
	size_t attr_count;
	char text[SPAN_TEXT_MAX]; /* the string attributes' values */
	size_t text_used;
};

/* Adds an attribute; one that does not fit (too many, or text full) is
 * left out, never cut short. key must be static. */
void span_add_string(struct span *s, const char *key, const char *value);
void span_add_int(struct span *s, const char *key, long long value);
/* A string attribute's value (not NUL-terminated: a->len bytes). */
const char *span_attr_text(const struct span *s, const struct span_attr *a);

struct span_queue;

/* A queue of at most capacity spans, all allocated now; NULL when out of
 * memory. Free with span_queue_free() once nobody pushes or takes. */
struct span_queue *span_queue_create(size_t capacity) __attribute__((warn_unused_result));
void span_queue_free(struct span_queue *q);

/* Copies s in; false (and counted as dropped) when the queue is full. */
bool span_queue_push(struct span_queue *q, const struct span *s);

/* Waits up to wait_ms for at least want spans (or span_queue_close()),
 * then hands up to max of them, oldest first, to each(span, arg), read in
 * place without the lock, and removes them; returns how many. For one
 * taking thread only. */
size_t span_queue_drain(struct span_queue *q, size_t max, size_t want, long wait_ms,
    void (*each)(const struct span *span, void *arg), void *arg);

/* Wakes a waiting taker for good: takes stop waiting from now on. */
void span_queue_close(struct span_queue *q);
bool span_queue_closed(struct span_queue *q);

/* Spans never delivered: the queue was full, or the exporter gave up on
 * them (span_queue_count_dropped). Any thread. */
void span_queue_count_dropped(struct span_queue *q, size_t n);
unsigned long long span_queue_dropped(struct span_queue *q);
/* Spans the exporter delivered. */
void span_queue_count_exported(struct span_queue *q, size_t n);
unsigned long long span_queue_exported(struct span_queue *q);
/* Spans waiting now. */
size_t span_queue_length(struct span_queue *q);

#endif
