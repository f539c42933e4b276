/*
 * rs_event_fast.h - a fast decoder for the run event codec, for bulk reads
 * (`runctl replay --file` must decode and reduce >= 1M events/s).
 *
 * rs_event_decode_fast() has exactly the contract of rs_event_decode()
 * (rs_event.h): same accepted inputs, same rs_event, same status and same
 * error text. It scans the CloudEvent once without building a jansson tree
 * for the envelope; only the free-form JSON members of data (input,
 * output, args, payload, ...) become json_t values. Whenever an input is
 * unusual (an escape it does not handle, a key it does not know, an event
 * type it has no table for, anything invalid) it hands the whole buffer to
 * rs_event_decode, so correctness never depends on the fast path: the fast
 * path only ever *accepts*, and only inputs the strict decoder accepts too
 * (tests/unit/test_event_fast.c checks this differentially).
 */
#ifndef RS_EVENT_FAST_H
#define RS_EVENT_FAST_H

#include <stddef.h>
#include "rs_event.h"
#include "rs_status.h"

rs_status rs_event_decode_fast(const char *buf, size_t len, rs_event *ev, char *err, size_t cap);

/* The bytes of the top-level member key of the JSON object text
 * buf[0..len), scanned as the fast decoder scans (text it or rs_event_decode
 * has already validated). 1 with *vs and *vn set if found; 0 if not found or in
 * any doubt (an escaped key or string, malformed text): the caller then
 * takes the slow way. For writing a member through as it was sent (the
 * projector's run_events.data) instead of parsing and printing it again. */
int rs_event_raw_member(const char *buf, size_t len, const char *key, const char **vs,
                        size_t *vn);

/* Counters of how many decodes the fast path finished itself and how many
 * it handed to rs_event_decode (per thread; for tests and benchmarks). */
typedef struct {
	unsigned long long fast;
	unsigned long long fallback;
} rs_event_fast_stats;

void rs_event_fast_get_stats(rs_event_fast_stats *out);

#endif
