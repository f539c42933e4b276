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
	struct tm tm;
	int frac = 0, fdig = 0, off = 0;
	const char *p = s;

	memset(&tm, 0, sizeof(tm));
	if (s == NULL || strlen(s) < 20)
		return RS_EINVAL;
	tm.tm_year = digits(&p, 4) - 1900;
	if (*p++ != '-') return RS_EINVAL;
	tm.tm_mon = digits(&p, 2) - 1;
	if (*p++ != '-') return RS_EINVAL;
	tm.tm_mday = digits(&p, 2);
	if (*p != 'T' && *p != 't' && *p != ' ') return RS_EINVAL;
	p++;
	tm.tm_hour = digits(&p, 2);
	if (*p++ != ':') return RS_EINVAL;
	tm.tm_min = digits(&p, 2);
	if (*p++ != ':') return RS_EINVAL;
	tm.tm_sec = digits(&p, 2);
	if (tm.tm_year < 0 || tm.tm_mon < 0 || tm.tm_mon > 11 || tm.tm_mday < 1 ||
	    tm.tm_mday > 31 || tm.tm_hour < 0 || tm.tm_hour > 23 || tm.tm_min < 0 ||
	    tm.tm_min > 59 || tm.tm_sec < 0 || tm.tm_sec > 60)
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
	*ms = ((int64_t)timegm(&tm) - off) * 1000 + frac;
	return RS_OK;
}
