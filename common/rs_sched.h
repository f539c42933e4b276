/*
 * rs_sched.h - the pure core of schedules (issue 17): time zones, cron
 * expressions, next fire times, catch-up after downtime, and the run id
 * of a tick. No I/O except rs_tz_load (one file read); no global state.
 *
 * Time zones without TZ. localtime_r() converts with the process's TZ,
 * and changing TZ per call (setenv + tzset) races with every other thread
 * that reads the environment or converts a time: not usable in a service.
 * Instead a zone is read once from the system tz database as data
 * (/usr/share/zoneinfo/<Area/City>, the TZif format of RFC 8536: version
 * 2+ transition table, 64-bit times, and the POSIX TZ string of its footer
 * for times after the last transition, which Debian's "slim" files rely on)
 * into an immutable rs_tz. Converting is a binary search or the footer's
 * rule: pure, reentrant, shareable between threads.
 *
 * Cron: 5 fields, minute hour day-of-month month day-of-week, each `*`,
 * a number, `a-b`, `*\/n` or `a-b/n`, or a comma list of those; day of week
 * 0-7 (0 and 7 are Sunday). Standard cron rule: when both day fields are
 * restricted, a day matching either matches. A fire time is a UTC minute
 * whose wall-clock time in the zone matches: a local time skipped by a DST
 * change does not fire that day; a local time that occurs twice (the
 * autumn hour) fires once, at its first occurrence.
 */
#ifndef RS_SCHED_H
#define RS_SCHED_H

#include <stddef.h>
#include <stdint.h>
#include "rs_status.h"

typedef struct rs_tz rs_tz;

/* Load zone name ("Europe/Paris", "UTC") from dir (NULL: /usr/share/zoneinfo,
 * or RS_ZONEINFO_DIR when set). RS_EINVAL for a malformed name (only
 * [A-Za-z0-9_+-] components separated by '/', at most 64 characters) or a
 * file that is not TZif; RS_ENOTFOUND for an unknown zone. err says which. */
rs_status rs_tz_load(const char *name, const char *dir, rs_tz **out, char *err, size_t cap);
void rs_tz_free(rs_tz *tz);
/* Offset of local time from UTC at UTC instant t (seconds; Paris in
 * summer: 7200). */
int32_t rs_tz_utoff(const rs_tz *tz, int64_t t);

typedef struct {
	uint64_t minute;     /* bit i: minute i matches */
	uint32_t hour;
	uint32_t dom;        /* bits 1..31 */
	uint16_t month;      /* bits 1..12 */
	uint8_t dow;         /* bits 0..6 */
	int dom_any, dow_any;
} rs_cron;

/* Parse a 5-field expression. RS_EINVAL with the field named in err. */
rs_status rs_cron_parse(const char *expr, rs_cron *out, char *err, size_t cap);

/* The first fire time strictly after after_ms (Unix ms), in ms (a whole
 * minute). RS_ENOTFOUND if none within 5 years (e.g. "0 0 30 2 *"). */
rs_status rs_cron_next(const rs_cron *c, const rs_tz *tz, int64_t after_ms, int64_t *next_ms);

/* A schedule's timing: a cron expression in a zone, or a fixed interval
 * from an anchor (ticks at anchor + k * interval). */
typedef struct {
	const rs_cron *cron;   /* NULL: interval */
	const rs_tz *tz;
	int64_t interval_ms;
	int64_t anchor_ms;
} rs_sched_timing;

rs_status rs_sched_next(const rs_sched_timing *t, int64_t after_ms, int64_t *next_ms);

typedef enum { RS_CATCHUP_SKIP = 0, RS_CATCHUP_ONE, RS_CATCHUP_ALL } rs_catchup;
rs_status rs_catchup_parse(const char *s, rs_catchup *out);   /* "skip" | "one" | "all" */

/*
 * The ticks to fire now: those in (last_ms, now_ms]. A tick is on time if
 * it is at most grace_ms old; the others were missed (downtime):
 *   skip: only on-time ticks;
 *   one:  on-time ticks, or else the latest missed one;
 *   all:  every tick, at most max of them (the latest max).
 * ticks[] receives at most cap tick times (ascending), *n how many;
 * *advance_ms is the new last_ms (the latest tick <= now_ms, fired or
 * skipped), so a tick is never considered twice.
 */
rs_status rs_sched_due(const rs_sched_timing *t, int64_t last_ms, int64_t now_ms,
                       int64_t grace_ms, rs_catchup policy, size_t max, int64_t *ticks,
                       size_t cap, size_t *n, int64_t *advance_ms);

/* The run of schedule id's tick: a UUIDv7 whose time is the tick and whose
 * other bits come from sha256("<tenant>/<id>/<tick_ms>"), so every
 * instance derives the same id for the same tick (exactly one run: the
 * start is de-duplicated by its Nats-Msg-Id and by the state machine). */
void rs_sched_run_id(const char *tenant, const char *id, int64_t tick_ms, char out[37]);

#endif
