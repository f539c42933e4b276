/*
 * test_sched.c - the schedules' pure core (rs_sched.h): time zones read
 * from TZif checked against glibc's localtime_r (this test is one thread,
 * so setting TZ here is safe: the service never does), cron next times
 * with DST edges, catch-up tables, tick run ids.
 */
#include "rs_id.h"
#include "rs_sched.h"
#include "check.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *ZONES[] = { "UTC", "Europe/Paris", "America/New_York", "Australia/Sydney",
                               "Asia/Kolkata", "America/Sao_Paulo", "Pacific/Chatham",
                               "Europe/Dublin", "Africa/Casablanca", NULL };

/* rs_tz_utoff agrees with glibc at many instants, 1900..2150 (the far
 * future comes from the footer's POSIX rule). */
static void
test_zones_vs_glibc(void)
{
	char err[256];

	for (int z = 0; ZONES[z]; z++) {
		rs_tz *tz = NULL;
		int bad = 0;
		if (rs_tz_load(ZONES[z], NULL, &tz, err, sizeof(err)) != RS_OK) {
			fprintf(stderr, "zone %s: %s\n", ZONES[z], err);
			CHECK(0);
			continue;
		}
		setenv("TZ", ZONES[z], 1);
		tzset();
		for (int64_t t = -2208988800LL; t < 5680281600LL; t += 86400 * 3 + 3607) {
			time_t tt = (time_t)t;
			struct tm tm;
			localtime_r(&tt, &tm);
			if (rs_tz_utoff(tz, t) != tm.tm_gmtoff && bad++ < 3)
				fprintf(stderr, "%s at %lld: ours %d, glibc %ld\n", ZONES[z], (long long)t,
				        rs_tz_utoff(tz, t), tm.tm_gmtoff);
		}
		CHECK_INT(bad, 0);
		rs_tz_free(tz);
	}
	unsetenv("TZ");
}

static int64_t
ms_of(const char *rfc)   /* "2026-03-29T00:59:00Z" */
{
	struct tm tm;

	memset(&tm, 0, sizeof(tm));
	CHECK(strptime(rfc, "%Y-%m-%dT%H:%M:%SZ", &tm) != NULL);
	return (int64_t)timegm(&tm) * 1000;
}

static void
check_next(const char *expr, const char *zone, const char *after, const char *want)
{
	rs_cron c;
	rs_tz *tz = NULL;
	char err[256], got[32] = "none";
	int64_t next = 0;

	CHECK(rs_cron_parse(expr, &c, err, sizeof(err)) == RS_OK);
	CHECK(rs_tz_load(zone, NULL, &tz, err, sizeof(err)) == RS_OK);
	if (rs_cron_next(&c, tz, ms_of(after), &next) == RS_OK) {
		time_t s = (time_t)(next / 1000);
		struct tm tm;
		gmtime_r(&s, &tm);
		strftime(got, sizeof(got), "%Y-%m-%dT%H:%M:%SZ", &tm);
	}
	if (strcmp(got, want) != 0)
		fprintf(stderr, "cron \"%s\" %s after %s\n", expr, zone, after);
	CHECK_STR(got, want);
	rs_tz_free(tz);
}

static void
test_cron(void)
{
	rs_cron c;
	char err[256];

	check_next("*/15 * * * *", "UTC", "2026-01-01T10:07:00Z", "2026-01-01T10:15:00Z");
	check_next("0 9 * * 1-5", "UTC", "2026-01-02T09:00:00Z", "2026-01-05T09:00:00Z");   /* Fri -> Mon */
	check_next("0 9 * * *", "Europe/Paris", "2026-01-01T00:00:00Z", "2026-01-01T08:00:00Z");
	check_next("0 9 * * *", "Europe/Paris", "2026-07-01T00:00:00Z", "2026-07-01T07:00:00Z");
	check_next("0 0 1 1 *", "America/New_York", "2026-06-01T00:00:00Z", "2027-01-01T05:00:00Z");
	/* 02:30 does not exist in Paris on 2026-03-29: the next is the 30th */
	check_next("30 2 * * *", "Europe/Paris", "2026-03-28T02:00:00Z", "2026-03-30T00:30:00Z");
	/* 02:30 occurs twice on 2026-10-25 (CEST then CET): once, the first */
	check_next("30 2 * * *", "Europe/Paris", "2026-10-24T12:00:00Z", "2026-10-25T00:30:00Z");
	check_next("30 2 * * *", "Europe/Paris", "2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z");
	/* day-of-month or day-of-week when both are restricted; 7 is Sunday */
	check_next("0 12 13 * 5", "UTC", "2026-02-01T00:00:00Z", "2026-02-06T12:00:00Z");
	check_next("0 12 * * 7", "UTC", "2026-02-01T12:00:00Z", "2026-02-08T12:00:00Z");
	check_next("0 0 29 2 *", "UTC", "2026-03-01T00:00:00Z", "2028-02-29T00:00:00Z");
	check_next("0 0 30 2 *", "UTC", "2026-03-01T00:00:00Z", "none");
	check_next("5/20 1 * * *", "Asia/Kolkata", "2026-01-01T00:00:00Z", "2026-01-01T19:35:00Z");

	CHECK(rs_cron_parse("* * * *", &c, err, sizeof(err)) == RS_EINVAL);
	CHECK(strstr(err, "5 fields") != NULL);
	CHECK(rs_cron_parse("60 * * * *", &c, err, sizeof(err)) == RS_EINVAL);
	CHECK(strstr(err, "minute") != NULL);
	CHECK(rs_cron_parse("* * * 13 *", &c, err, sizeof(err)) == RS_EINVAL);
	CHECK(rs_cron_parse("* * * * 1-", &c, err, sizeof(err)) == RS_EINVAL);
	CHECK(rs_cron_parse("*/0 * * * *", &c, err, sizeof(err)) == RS_EINVAL);
	CHECK(rs_cron_parse("5-1 * * * *", &c, err, sizeof(err)) == RS_EINVAL);
	CHECK(rs_cron_parse("a * * * *", &c, err, sizeof(err)) == RS_EINVAL);
	CHECK(rs_cron_parse("* * * * * *", &c, err, sizeof(err)) == RS_EINVAL);
}

static void
test_zone_names(void)
{
	rs_tz *tz = NULL;
	char err[256];

	CHECK(rs_tz_load("../../etc/passwd", NULL, &tz, err, sizeof(err)) == RS_EINVAL);
	CHECK(rs_tz_load("/etc/passwd", NULL, &tz, err, sizeof(err)) == RS_EINVAL);
	CHECK(rs_tz_load("Mars/Olympus", NULL, &tz, err, sizeof(err)) == RS_ENOTFOUND);
	CHECK(strstr(err, "unknown zone") != NULL);
	CHECK(rs_tz_load("", NULL, &tz, err, sizeof(err)) == RS_EINVAL);
	CHECK(tz == NULL);
}

static void
test_due(void)
{
	rs_sched_timing s = { NULL, NULL, 60000, 0 };   /* every minute from the epoch */
	int64_t ticks[8], adv;
	size_t n;
	int64_t M = 60000, base = 1000 * M;

	/* on time: one tick, whatever the policy */
	CHECK(rs_sched_due(&s, base, base + M + 500, 5000, RS_CATCHUP_SKIP, 8, ticks, 8, &n, &adv) == RS_OK);
	CHECK_INT(n, 1);
	CHECK_INT(ticks[0], base + M);
	CHECK_INT(adv, base + M);
	/* down for 10 minutes, back 30 s after a tick: */
	CHECK(rs_sched_due(&s, base, base + 10 * M + 30000, 5000, RS_CATCHUP_SKIP, 8, ticks, 8, &n, &adv) == RS_OK);
	CHECK_INT(n, 0);                    /* skip: the missed ticks are dropped */
	CHECK_INT(adv, base + 10 * M);
	CHECK(rs_sched_due(&s, base, base + 10 * M + 30000, 5000, RS_CATCHUP_ONE, 8, ticks, 8, &n, &adv) == RS_OK);
	CHECK_INT(n, 1);                    /* one: the latest missed */
	CHECK_INT(ticks[0], base + 10 * M);
	CHECK(rs_sched_due(&s, base, base + 10 * M + 30000, 5000, RS_CATCHUP_ALL, 4, ticks, 8, &n, &adv) == RS_OK);
	CHECK_INT(n, 4);                    /* all, bounded: the latest 4 */
	CHECK_INT(ticks[0], base + 7 * M);
	CHECK_INT(ticks[3], base + 10 * M);
	/* back exactly on a tick: it is on time, "one" fires only it */
	CHECK(rs_sched_due(&s, base, base + 10 * M, 5000, RS_CATCHUP_ONE, 8, ticks, 8, &n, &adv) == RS_OK);
	CHECK_INT(n, 1);
	CHECK_INT(ticks[0], base + 10 * M);
	/* nothing due yet */
	CHECK(rs_sched_due(&s, base, base + M - 1, 5000, RS_CATCHUP_ALL, 8, ticks, 8, &n, &adv) == RS_OK);
	CHECK_INT(n, 0);
	CHECK_INT(adv, base);
	/* an interval anchored later than now: its first tick is the anchor */
	{
		rs_sched_timing a = { NULL, NULL, 3600000, base + 5 * M };
		int64_t next;
		CHECK(rs_sched_next(&a, base, &next) == RS_OK);
		CHECK_INT(next, base + 5 * M);
		CHECK(rs_sched_next(&a, base + 5 * M, &next) == RS_OK);
		CHECK_INT(next, base + 65 * M);
	}
	{
		rs_catchup p;
		CHECK(rs_catchup_parse("all", &p) == RS_OK && p == RS_CATCHUP_ALL);
		CHECK(rs_catchup_parse("some", &p) == RS_EINVAL);
	}
}

static void
test_run_ids(void)
{
	char a[37], b[37], c[37];

	rs_sched_run_id("acme", "nightly", 1767323040000LL, a);
	rs_sched_run_id("acme", "nightly", 1767323040000LL, b);
	rs_sched_run_id("acme", "nightly", 1767323100000LL, c);
	CHECK_STR(a, b);                     /* every instance derives the same run */
	CHECK(strcmp(a, c) != 0);
	CHECK(rs_id_is_uuid(a));
	CHECK_INT(rs_id_uuidv7_ms(a), 1767323040000LL);   /* created_at = the tick */
	rs_sched_run_id("globex", "nightly", 1767323040000LL, c);
	CHECK(strcmp(a, c) != 0);
}

int
main(void)
{
	test_zones_vs_glibc();
	test_cron();
	test_zone_names();
	test_due();
	test_run_ids();
	return check_report("test_sched");
}
