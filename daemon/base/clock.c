/* clock: the two clocks the daemon reads, in the units its modules use. */
#include "base/clock.h"

#include <time.h>

double
clock_monotonic_s(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)now.tv_sec + (double)now.tv_nsec / 1e9;
}

long long
clock_monotonic_ms(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

uint64_t
clock_monotonic_us(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (uint64_t)now.tv_sec * 1000000u + (uint64_t)now.tv_nsec / 1000u;
}

uint64_t
clock_unix_us(void)
{
	struct timespec now;

	clock_gettime(CLOCK_REALTIME, &now);
	return (uint64_t)now.tv_sec * 1000000u + (uint64_t)now.tv_nsec / 1000u;
}

double
clock_unix_s(void)
{
	struct timespec now;

	clock_gettime(CLOCK_REALTIME, &now);
	return (double)now.tv_sec + (double)now.tv_nsec / 1e9;
}

long long
clock_unix_ns_of_monotonic(double monotonic_s)
{
	static long long offset_ns;
	static double next_read;

	if (monotonic_s >= next_read) {
		struct timespec real, mono;
		clock_gettime(CLOCK_REALTIME, &real);
		clock_gettime(CLOCK_MONOTONIC, &mono);
		offset_ns =
		    ((long long)real.tv_sec - (long long)mono.tv_sec) * 1000000000LL + (real.tv_nsec - mono.tv_nsec);
		next_read = (double)mono.tv_sec + (double)mono.tv_nsec / 1e9 + 1.0;
	}
	/* In integers: Unix nanoseconds are past what a double holds exactly. */
	return (long long)(monotonic_s * 1e9) + offset_ns;
}

struct timeval
clock_timeval_ms(long long ms)
{
	struct timeval tv = { 0, 0 };

	if (ms > 0) {
		tv.tv_sec = (time_t)(ms / 1000);
		tv.tv_usec = (suseconds_t)(ms % 1000 * 1000);
	}
	return tv;
}
