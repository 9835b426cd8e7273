/* clock.h — time in milliseconds, and the API's UTC timestamp format.
 *
 * Two clocks: the wall clock for instants that are stored or answered (sent_at, delete_at, rows
 * in the database, log stamps), and the monotonic clock for every wait, timeout and duration,
 * so that a step of the system clock (NTP, an operator) moves no deadline. */
#ifndef OTP_CLOCK_H
#define OTP_CLOCK_H

#include <stddef.h>
#include <stdint.h>

/* Milliseconds since the Unix epoch (CLOCK_REALTIME): for instants that are stored or answered. */
int64_t clock_now_ms(void);

/* clock_now_ms() rounded up: for an instant that a deadline counts from, so that the deadline
 * in milliseconds is never before the real instant plus its length. */
int64_t clock_now_ms_up(void);

/* Microseconds since the Unix epoch (CLOCK_REALTIME). */
int64_t clock_now_us(void);

/* Milliseconds on CLOCK_MONOTONIC (from an arbitrary origin): for waits, timeouts, durations. */
int64_t clock_mono_ms(void);

/* Length of "2025-10-28T12:00:00Z" plus its NUL. */
#define CLOCK_ISO_LEN 21

/* Writes the UTC second `sec` as "YYYY-MM-DDTHH:MM:SSZ" into buf (CLOCK_ISO_LEN bytes).
 * Returns 0, or -1 if the time cannot be represented. */
int clock_format_utc(int64_t sec, char buf[CLOCK_ISO_LEN]);

/* Sleeps for ms milliseconds; returns early (and -1) when a signal interrupts it. */
int clock_sleep_ms(int64_t ms);

/* Sleeps us microseconds on the monotonic clock (a wall-clock step does not stretch it), to the
 * end even if a signal interrupts it. */
void clock_sleep_us(int64_t us);

#endif
