/*
 * rs_time.h - clocks and RFC 3339 timestamps.
 * Wall time in Unix milliseconds is the unit used in events and timers.
 */
#ifndef RS_TIME_H
#define RS_TIME_H

#include <stddef.h>
#include <stdint.h>
#include "rs_status.h"

int64_t rs_now_ms(void);   /* wall clock, Unix ms */
int64_t rs_mono_ms(void);  /* monotonic ms, for durations */
int64_t rs_mono_us(void);  /* monotonic us, for latency metrics */

/* Format ms as "2026-11-22T10:00:00.123Z" into buf (>= 25 bytes). */
void rs_time_rfc3339(int64_t ms, char *buf, size_t cap);

/* Parse an RFC 3339 timestamp (Z or +hh:mm offset, optional fraction). */
rs_status rs_time_parse_rfc3339(const char *s, int64_t *ms);

#endif
