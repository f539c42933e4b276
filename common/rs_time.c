/* rs_time.c - clocks and RFC 3339 formatting/parsing (see rs_time.h). */
#include "rs_time.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

int64_t
rs_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t
rs_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t
rs_mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void
rs_time_rfc3339(int64_t ms, char *buf, size_t cap)
{
	time_t secs = (time_t)(ms / 1000);
	struct tm tm;

	gmtime_r(&secs, &tm);
	snprintf(buf, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
	         tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
	         tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
 * days_from_civil). Linear in d, so a day past the month's end gives the
 * same answer timegm()'s normalisation does; unlike timegm() it needs no
 * struct tm and no locale lock (the fast event decoder calls this for
 * every event). */
static int64_t
days_from_civil(int64_t y, int m, int d)
{
	int64_t era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static int
digits(const char **p, int n)
{
	int v = 0;

	for (int i = 0; i < n; i++, (*p)++) {
		if (!isdigit((unsigned char)**p))
			return -1;
		v = v * 10 + (**p - '0');
	}
	return v;
}

rs_status
rs_time_parse_rfc3339(const char *s, int64_t *ms)
{
	int year, mon, mday, hour, min, sec, frac = 0, fdig = 0, off = 0;
	const char *p = s;

	if (s == NULL || strlen(s) < 20)
		return RS_EINVAL;
	year = digits(&p, 4);
	if (*p++ != '-') return RS_EINVAL;
	mon = digits(&p, 2);
	if (*p++ != '-') return RS_EINVAL;
	mday = digits(&p, 2);
	if (*p != 'T' && *p != 't' && *p != ' ') return RS_EINVAL;
	p++;
	hour = digits(&p, 2);
	if (*p++ != ':') return RS_EINVAL;
	min = digits(&p, 2);
	if (*p++ != ':') return RS_EINVAL;
	sec = digits(&p, 2);
	if (year < 1900 || mon < 1 || mon > 12 || mday < 1 || mday > 31 || hour < 0 ||
	    hour > 23 || min < 0 || min > 59 || sec < 0 || sec > 60)
		return RS_EINVAL;
	if (*p == '.') {
		p++;
		while (isdigit((unsigned char)*p)) {
			if (fdig < 3) {
				frac = frac * 10 + (*p - '0');
				fdig++;
			}
			p++;
		}
		if (fdig == 0) return RS_EINVAL;
		while (fdig++ < 3) frac *= 10;
	}
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		int sign = *p == '-' ? -1 : 1, hh, mm;
		p++;
		hh = digits(&p, 2);
		if (*p++ != ':') return RS_EINVAL;
		mm = digits(&p, 2);
		if (hh < 0 || mm < 0) return RS_EINVAL;
		off = sign * (hh * 3600 + mm * 60);
	} else {
		return RS_EINVAL;
	}
	if (*p != '\0')
		return RS_EINVAL;
	*ms = ((days_from_civil(year, mon, mday) * 86400 + hour * 3600 + min * 60 + sec) - off) *
	      1000 + frac;
	return RS_OK;
}
