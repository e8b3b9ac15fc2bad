/* trace: W3C trace ids, spans as plain data, and the queue that carries
 * them from the loop to the exporter's thread. */
#include "base/trace.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

static uint64_t trace_state;
static bool trace_seeded;

/* The next 64 random-looking bits: splitmix64 over a counter. */
static uint64_t
trace_next(void)
{
	uint64_t z;

	if (!trace_seeded) {
		if (getrandom(&trace_state, sizeof(trace_state), GRND_NONBLOCK) != (ssize_t)sizeof(trace_state))
			trace_state = (uint64_t)time(NULL) * 0x9e3779b97f4a7c15ULL;
		trace_seeded = true;
	}
	z = (trace_state += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

void
trace_new_id(char *out, size_t digits)
{
	static const char hex[] = "0123456789abcdef";

	do {
		for (size_t i = 0; i < digits; i += 16) {
			uint64_t z = trace_next();
			for (size_t j = 0; j < 16 && i + j < digits; j++, z >>= 4)
				out[i + j] = hex[z & 0xf];
		}
		out[digits] = '\0';
	} while (strspn(out, "0") == digits);
}

bool
trace_sample(double ratio)
{
	if (ratio >= 1.0)
		return true;
	if (ratio <= 0.0)
		return false;
	return (double)(trace_next() >> 11) * 0x1.0p-53 < ratio;
}

static void
span_add(struct span *s, const char *key, bool is_int, long long number, const char *value)
{
	size_t len = value != NULL ? strlen(value) : 0;

	if (s->attr_count >= SPAN_ATTRS_MAX || len > SPAN_TEXT_MAX - s->text_used)
		return;
	s->attrs[s->attr_count] = (struct span_attr){
		.key = key,
		.is_int = is_int,
		.number = number,
		.offset = (unsigned short)s->text_used,
		.len = (unsigned short)len,
	};
	memcpy(s->text + s->text_used, value != NULL ? value : "", len);
	s->text_used += len;
	s->attr_count++;
}

void
span_add_string(struct span *s, const char *key, const char *value)
{
	span_add(s, key, false, 0, value);
}

void
span_add_int(struct span *s, const char *key, long long value)
{
	span_add(s, key, true, value, NULL);
}

const char *
span_attr_text(const struct span *s, const struct span_attr *a)
{
	return s->text + a->offset;
}

struct span_queue {
	pthread_mutex_t lock;
	pthread_cond_t ready; /* enough spans for a taker, or closed */
	struct span *ring;
	size_t capacity, head, length;
	size_t want; /* what the waiting taker asked for; 0: none waits */
	bool closed;
	atomic_ullong dropped, exported;
};

struct span_queue *
span_queue_create(size_t capacity)
{
	struct span_queue *q = calloc(1, sizeof(*q));
	pthread_condattr_t attr;

	/* calloc: the pages cost nothing until spans are written into them. */
	if (q == NULL || capacity == 0 || (q->ring = calloc(capacity, sizeof(*q->ring))) == NULL) {
		free(q);
		return NULL;
	}
	q->capacity = capacity;

	pthread_mutex_init(&q->lock, NULL);
	/* The taker's deadlines are on the monotonic clock. */
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&q->ready, &attr);
	pthread_condattr_destroy(&attr);
	atomic_init(&q->dropped, 0);
	atomic_init(&q->exported, 0);
	return q;
}

void
span_queue_free(struct span_queue *q)
{
	if (q == NULL)
		return;
	pthread_mutex_destroy(&q->lock);
	pthread_cond_destroy(&q->ready);
	free(q->ring);
	free(q);
}

bool
span_queue_push(struct span_queue *q, const struct span *s)
{
	bool taken, wake;

	pthread_mutex_lock(&q->lock);
	taken = q->length < q->capacity;
	if (taken) {
		memcpy(&q->ring[(q->head + q->length) % q->capacity], s, sizeof(*s));
		q->length++;
	}
	/* Wake the taker once, when it has what it waits for: a signal per
	 * span would cost the loop a system call per request. */
	wake = taken && q->want > 0 && q->length == q->want;
	pthread_mutex_unlock(&q->lock);
	if (wake)
		pthread_cond_signal(&q->ready);
	if (!taken)
		atomic_fetch_add(&q->dropped, 1);
	return taken;
}

size_t
span_queue_drain(struct span_queue *q, size_t max, size_t want, long wait_ms,
    void (*each)(const struct span *span, void *arg), void *arg)
{
	struct timespec deadline;
	size_t n, start;

	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += wait_ms / 1000;
	deadline.tv_nsec += (wait_ms % 1000) * 1000000L;
	if (deadline.tv_nsec >= 1000000000L) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&q->lock);
	q->want = want > 0 ? want : 1;
	while (!q->closed && q->length < q->want)
		if (pthread_cond_timedwait(&q->ready, &q->lock, &deadline) != 0)
			break;
	q->want = 0;
	n = q->length < max ? q->length : max;
	start = q->head;
	pthread_mutex_unlock(&q->lock);
	/* Read without the lock: the slots stay counted as taken until
	 * released below, so a push never writes into them, and the loop
	 * never waits on the reading. One taker only. */
	for (size_t i = 0; i < n; i++)
		each(&q->ring[(start + i) % q->capacity], arg);
	pthread_mutex_lock(&q->lock);
	q->head = (q->head + n) % q->capacity;
	q->length -= n;
	pthread_mutex_unlock(&q->lock);
	return n;
}

void
span_queue_close(struct span_queue *q)
{
	pthread_mutex_lock(&q->lock);
	q->closed = true;
	pthread_mutex_unlock(&q->lock);
	pthread_cond_broadcast(&q->ready);
}

bool
span_queue_closed(struct span_queue *q)
{
	bool closed;

	pthread_mutex_lock(&q->lock);
	closed = q->closed;
	pthread_mutex_unlock(&q->lock);
	return closed;
}

void
span_queue_count_dropped(struct span_queue *q, size_t n)
{
	atomic_fetch_add(&q->dropped, n);
}

unsigned long long
span_queue_dropped(struct span_queue *q)
{
	return atomic_load(&q->dropped);
}

void
span_queue_count_exported(struct span_queue *q, size_t n)
{
	atomic_fetch_add(&q->exported, n);
}

unsigned long long
span_queue_exported(struct span_queue *q)
{
	return atomic_load(&q->exported);
}

size_t
span_queue_length(struct span_queue *q)
{
	size_t n;

	pthread_mutex_lock(&q->lock);
	n = q->length;
	pthread_mutex_unlock(&q->lock);
	return n;
}
