/* clock: the two clocks the daemon reads, in the units its modules use. */
#ifndef LLAMACHATD_CLOCK_H
#define LLAMACHATD_CLOCK_H

#include <stdint.h>
#include <sys/time.h>

/* Seconds of the monotonic clock (durations, deadlines, uptime). */
double clock_monotonic_s(void);

/* The same in whole milliseconds and microseconds. */
long long clock_monotonic_ms(void);
uint64_t clock_monotonic_us(void);

/* Unix nanoseconds of a monotonic time (in seconds), through the offset
 * between the two clocks, read again at most once a second: a span's
 * stamps cost no system call of their own (a VM's clock may need one).
 * For the loop's thread only. */
long long clock_unix_ns_of_monotonic(double monotonic_s);

/* A duration of ms milliseconds (0 when negative), as libevent's timers
 * take it. */
struct timeval clock_timeval_ms(long long ms);

/* Unix time (wall clock) in microseconds and in seconds. */
uint64_t clock_unix_us(void);
double clock_unix_s(void);

#endif
