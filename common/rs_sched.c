/*
 * rs_sched.c - time zones read from TZif files, cron, next fire times,
 * catch-up, tick run ids (rs_sched.h). Pure except rs_tz_load's read.
 */
#include "rs_sched.h"
#include "rs_mem.h"
#include "rs_json.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* Calendar (proleptic Gregorian, days since 1970-01-01)               */
/* ------------------------------------------------------------------ */

static int64_t
days_from_civil(int64_t y, int64_t m, int64_t d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static void
civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
	z += 719468;
	int64_t era = (z >= 0 ? z : z - 146096) / 146097;
	int64_t doe = z - era * 146097;
	int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	int64_t mp = (5 * doy + 2) / 153;
	*d = (int)(doy - (153 * mp + 2) / 5 + 1);
	*m = (int)(mp < 10 ? mp + 3 : mp - 9);
	*y = yoe + era * 400 + (*m <= 2);
}

static int64_t
floordiv(int64_t a, int64_t b)
{
	return a / b - ((a % b != 0) && ((a < 0) != (b < 0)));
}

static int
is_leap(int64_t y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int
days_in_month(int64_t y, int m)
{
	static const int dm[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	return m == 2 && is_leap(y) ? 29 : dm[m - 1];
}

/* ------------------------------------------------------------------ */
/* POSIX TZ strings (the TZif footer): "CET-1CEST,M3.5.0,M10.5.0/3"     */
/* ------------------------------------------------------------------ */

typedef struct {
	char kind;        /* 'J' (1..365, no Feb 29), 'D' (0..365), 'M' */
	int a, b, c;      /* J/D: a = day; M: month a, week b, weekday c */
	int32_t time;     /* seconds after local midnight (may be < 0 or > 24 h) */
} tzrule;

typedef struct {
	int32_t std_off, dst_off;   /* UTC offsets (local - UTC), seconds */
	int has_dst;
	tzrule start, end;
} posix_tz;

static const char *
skip_name(const char *p)
{
	if (*p == '<') {
		const char *e = strchr(p, '>');
		return e ? e + 1 : NULL;
	}
	const char *s = p;
	while (isalpha((unsigned char)*p))
		p++;
	return p - s >= 3 ? p : NULL;
}

/* [+-]hh[:mm[:ss]] -> seconds */
static const char *
parse_hms(const char *p, int32_t *out, int allow_sign)
{
	int sign = 1, h = 0, m = 0, s = 0;

	if (allow_sign && (*p == '+' || *p == '-'))
		sign = *p++ == '-' ? -1 : 1;
	if (!isdigit((unsigned char)*p))
		return NULL;
	while (isdigit((unsigned char)*p))
		h = h * 10 + (*p++ - '0');
	if (*p == ':') {
		p++;
		while (isdigit((unsigned char)*p))
			m = m * 10 + (*p++ - '0');
		if (*p == ':') {
			p++;
			while (isdigit((unsigned char)*p))
				s = s * 10 + (*p++ - '0');
		}
	}
	if (h > 167 || m > 59 || s > 59)
		return NULL;
	*out = sign * (h * 3600 + m * 60 + s);
	return p;
}

static const char *
parse_rule(const char *p, tzrule *r)
{
	char *e;

	r->time = 7200;
	if (*p == 'M') {
		r->kind = 'M';
		r->a = (int)strtol(p + 1, &e, 10);
		if (*e != '.')
			return NULL;
		r->b = (int)strtol(e + 1, &e, 10);
		if (*e != '.')
			return NULL;
		r->c = (int)strtol(e + 1, &e, 10);
		if (r->a < 1 || r->a > 12 || r->b < 1 || r->b > 5 || r->c < 0 || r->c > 6)
			return NULL;
	} else {
		r->kind = *p == 'J' ? 'J' : 'D';
		if (*p == 'J')
			p++;
		if (!isdigit((unsigned char)*p))
			return NULL;
		r->a = (int)strtol(p, &e, 10);
		if (r->a > 365 || (r->kind == 'J' && r->a < 1))
			return NULL;
	}
	p = e;
	if (*p == '/' && (p = parse_hms(p + 1, &r->time, 1)) == NULL)
		return NULL;
	return p;
}

static int
parse_posix(const char *s, posix_tz *z)
{
	const char *p = skip_name(s);
	int32_t off;

	memset(z, 0, sizeof(*z));
	if (p == NULL || (p = parse_hms(p, &off, 1)) == NULL)
		return -1;
	z->std_off = -off;              /* POSIX offsets are west-positive */
	if (*p == '\0')
		return 0;
	if ((p = skip_name(p)) == NULL)
		return -1;
	z->has_dst = 1;
	z->dst_off = z->std_off + 3600;
	if (*p != ',' && *p != '\0') {
		if ((p = parse_hms(p, &off, 1)) == NULL)
			return -1;
		z->dst_off = -off;
	}
	if (*p != ',')                  /* no rule: not in footers of real zones */
		return -1;
	if ((p = parse_rule(p + 1, &z->start)) == NULL || *p != ',' ||
	    (p = parse_rule(p + 1, &z->end)) == NULL || *p != '\0')
		return -1;
	return 0;
}

/* Local-time seconds since the epoch at which rule r falls in year y
 * (midnight of its day + its time). */
static int64_t
rule_local(const tzrule *r, int64_t y)
{
	int64_t day;

	if (r->kind == 'J') {
		day = days_from_civil(y, 1, 1) + r->a - 1;
		if (is_leap(y) && r->a >= 60)
			day++;
	} else if (r->kind == 'D') {
		day = days_from_civil(y, 1, 1) + r->a;
	} else {
		int64_t first = days_from_civil(y, r->a, 1);
		int wd = (int)((first % 7 + 7 + 4) % 7);    /* 1970-01-01 was a Thursday */
		int d = 1 + (r->c - wd + 7) % 7 + (r->b - 1) * 7;
		while (d > days_in_month(y, r->a))
			d -= 7;
		day = first + d - 1;
	}
	return day * 86400 + r->time;
}

static int32_t
posix_utoff(const posix_tz *z, int64_t t)
{
	int64_t y, start, end;
	int m, d;

	if (!z->has_dst)
		return z->std_off;
	civil_from_days(floordiv(t + z->std_off, 86400), &y, &m, &d);
	start = rule_local(&z->start, y) - z->std_off;  /* begins in standard time */
	end = rule_local(&z->end, y) - z->dst_off;      /* ends in daylight time */
	if (start < end)
		return t >= start && t < end ? z->dst_off : z->std_off;
	return t >= end && t < start ? z->std_off : z->dst_off;   /* southern */
}

/* ------------------------------------------------------------------ */
/* TZif (RFC 8536)                                                     */
/* ------------------------------------------------------------------ */

struct rs_tz {
	int64_t *trans;      /* transition times, ascending */
	uint8_t *idx;        /* type index per transition */
	size_t ntrans;
	int32_t *offs;       /* UTC offset per type */
	size_t ntypes;
	posix_tz footer;
	int has_footer;
};

static uint32_t
be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int64_t
be64(const unsigned char *p)
{
	return (int64_t)((uint64_t)be32(p) << 32 | be32(p + 4));
}

static int
name_ok(const char *n)
{
	size_t len = strlen(n);

	if (len == 0 || len > 64 || n[0] == '/' || n[len - 1] == '/' || strstr(n, "//") ||
	    strstr(n, ".."))
		return 0;
	for (const char *p = n; *p; p++)
		if (!isalnum((unsigned char)*p) && !strchr("_+-/", *p))
			return 0;
	return 1;
}

static rs_status
parse_tzif(const unsigned char *b, size_t len, rs_tz *z)
{
	size_t off, cnt[6], v1, need;

	if (len < 44 || memcmp(b, "TZif", 4) != 0 || b[4] < '2')
		return RS_EINVAL;   /* version 1 files have no 64-bit data: not on this system */
	for (int i = 0; i < 6; i++)
		cnt[i] = be32(b + 20 + 4 * i);
	/* isutcnt isstdcnt leapcnt timecnt typecnt charcnt */
	v1 = cnt[3] * 5 + cnt[4] * 6 + cnt[5] + cnt[2] * 8 + cnt[1] + cnt[0];
	off = 44 + v1;
	if (off + 44 > len || memcmp(b + off, "TZif", 4) != 0)
		return RS_EINVAL;
	for (int i = 0; i < 6; i++)
		cnt[i] = be32(b + off + 20 + 4 * i);
	off += 44;
	if (cnt[4] == 0 || cnt[4] > 256 || cnt[3] > 100000)
		return RS_EINVAL;
	need = cnt[3] * 9 + cnt[4] * 6 + cnt[5] + cnt[2] * 12 + cnt[1] + cnt[0];
	if (off + need > len)
		return RS_EINVAL;
	z->ntrans = cnt[3];
	z->ntypes = cnt[4];
	z->trans = rs_xcalloc(z->ntrans + 1, sizeof(*z->trans));
	z->idx = rs_xcalloc(z->ntrans + 1, 1);
	z->offs = rs_xcalloc(z->ntypes, sizeof(*z->offs));
	for (size_t i = 0; i < z->ntrans; i++)
		z->trans[i] = be64(b + off + 8 * i);
	off += z->ntrans * 8;
	for (size_t i = 0; i < z->ntrans; i++) {
		z->idx[i] = b[off + i];
		if (z->idx[i] >= z->ntypes)
			return RS_EINVAL;
	}
	off += z->ntrans;
	for (size_t i = 0; i < z->ntypes; i++)
		z->offs[i] = (int32_t)be32(b + off + 6 * i);
	off += z->ntypes * 6 + cnt[5] + cnt[2] * 12 + cnt[1] + cnt[0];
	/* footer: "\n<POSIX TZ>\n" (may be empty) */
	if (off < len && b[off] == '\n') {
		const unsigned char *e = memchr(b + off + 1, '\n', len - off - 1);
		char tzs[128];
		size_t n = e ? (size_t)(e - (b + off + 1)) : 0;
		if (e != NULL && n > 0 && n < sizeof(tzs)) {
			memcpy(tzs, b + off + 1, n);
			tzs[n] = '\0';
			if (parse_posix(tzs, &z->footer) != 0)
				return RS_EINVAL;
			z->has_footer = 1;
		}
	}
	return RS_OK;
}

rs_status
rs_tz_load(const char *name, const char *dir, rs_tz **out, char *err, size_t cap)
{
	char path[512];
	unsigned char *buf = NULL;
	size_t len = 0, bufcap = 0, got;
	FILE *f;
	rs_tz *z;
	rs_status st;

	*out = NULL;
	if (name == NULL || !name_ok(name)) {
		snprintf(err, cap, "timezone: must be a zone of the tz database, e.g. Europe/Paris");
		return RS_EINVAL;
	}
	if (dir == NULL)
		dir = getenv("RS_ZONEINFO_DIR");
	snprintf(path, sizeof(path), "%s/%s", dir ? dir : "/usr/share/zoneinfo", name);
	if ((f = fopen(path, "rb")) == NULL) {
		snprintf(err, cap, "timezone: unknown zone %s", name);
		return RS_ENOTFOUND;
	}
	do {
		if (len == bufcap) {
			bufcap = bufcap ? bufcap * 2 : 4096;
			if (bufcap > (1 << 20)) {
				fclose(f);
				free(buf);
				snprintf(err, cap, "timezone: %s is not a TZif file", name);
				return RS_EINVAL;
			}
			buf = rs_xrealloc(buf, bufcap);
		}
		got = fread(buf + len, 1, bufcap - len, f);
		len += got;
	} while (got > 0);
	fclose(f);
	z = rs_xcalloc(1, sizeof(*z));
	st = parse_tzif(buf, len, z);
	free(buf);
	if (st != RS_OK) {
		rs_tz_free(z);
		snprintf(err, cap, "timezone: %s is not a TZif (version 2+) file", name);
		return st;
	}
	*out = z;
	return RS_OK;
}

void
rs_tz_free(rs_tz *tz)
{
	if (tz == NULL)
		return;
	free(tz->trans);
	free(tz->idx);
	free(tz->offs);
	free(tz);
}

int32_t
rs_tz_utoff(const rs_tz *z, int64_t t)
{
	size_t lo = 0, hi = z->ntrans;

	if (z->ntrans == 0 || t < z->trans[0])
		return z->ntrans == 0 && z->has_footer ? posix_utoff(&z->footer, t) : z->offs[0];
	if (t >= z->trans[z->ntrans - 1] && z->has_footer)
		return posix_utoff(&z->footer, t);
	while (hi - lo > 1) {    /* last transition <= t */
		size_t mid = (lo + hi) / 2;
		if (z->trans[mid] <= t)
			lo = mid;
		else
			hi = mid;
	}
	return z->offs[z->idx[lo]];
}

/* ------------------------------------------------------------------ */
/* Cron                                                                */
/* ------------------------------------------------------------------ */

static rs_status
parse_field(const char *s, int lo, int hi, uint64_t *bits, int *any, const char *name, char *err,
            size_t cap)
{
	char buf[128], *save = NULL, *item;

	*bits = 0;
	*any = strcmp(s, "*") == 0;
	if (strlen(s) >= sizeof(buf))
		goto bad;
	snprintf(buf, sizeof(buf), "%s", s);
	for (item = strtok_r(buf, ",", &save); item != NULL; item = strtok_r(NULL, ",", &save)) {
		long a = lo, b = hi, step = 1;
		char *p = item, *e;
		if (*p == '*') {
			p++;
		} else {
			if (!isdigit((unsigned char)*p))
				goto bad;
			a = b = strtol(p, &e, 10);
			p = e;
			if (*p == '-') {
				if (!isdigit((unsigned char)p[1]))
					goto bad;
				b = strtol(p + 1, &e, 10);
				p = e;
			}
		}
		if (*p == '/') {
			if (!isdigit((unsigned char)p[1]))
				goto bad;
			step = strtol(p + 1, &e, 10);
			p = e;
			if (item[0] != '*' && strchr(item, '-') == NULL)
				b = hi;                  /* "5/15": from 5 to the end */
		}
		if (*p != '\0' || a < lo || b > hi || a > b || step < 1 || step > hi)
			goto bad;
		for (long v = a; v <= b; v += step)
			*bits |= 1ULL << v;
	}
	if (*bits == 0)
		goto bad;
	return RS_OK;
bad:
	snprintf(err, cap, "cron: %s field \"%.32s\" must be *, N, A-B, */S, A-B/S or a list of "
	         "them within %d-%d", name, s, lo, hi);
	return RS_EINVAL;
}

rs_status
rs_cron_parse(const char *expr, rs_cron *c, char *err, size_t cap)
{
	static const struct { const char *name; int lo, hi; } f[5] = {
		{ "minute", 0, 59 }, { "hour", 0, 23 }, { "day-of-month", 1, 31 },
		{ "month", 1, 12 }, { "day-of-week", 0, 7 },
	};
	char buf[256], *tok[6], *save = NULL;
	uint64_t bits[5];
	int any[5], n = 0;

	memset(c, 0, sizeof(*c));
	if (expr == NULL || strlen(expr) >= sizeof(buf)) {
		snprintf(err, cap, "cron: must be 5 fields \"minute hour day-of-month month "
		         "day-of-week\" of at most 255 characters");
		return RS_EINVAL;
	}
	snprintf(buf, sizeof(buf), "%s", expr);
	for (char *t = strtok_r(buf, " \t", &save); t != NULL && n < 6; t = strtok_r(NULL, " \t", &save))
		tok[n++] = t;
	if (n != 5) {
		snprintf(err, cap, "cron: must be 5 fields \"minute hour day-of-month month "
		         "day-of-week\", got %d", n);
		return RS_EINVAL;
	}
	for (int i = 0; i < 5; i++)
		if (parse_field(tok[i], f[i].lo, f[i].hi, &bits[i], &any[i], f[i].name, err, cap)
		    != RS_OK)
			return RS_EINVAL;
	c->minute = bits[0];
	c->hour = (uint32_t)bits[1];
	c->dom = (uint32_t)bits[2];
	c->month = (uint16_t)bits[3];
	c->dow = (uint8_t)((bits[4] | (bits[4] >> 7)) & 0x7f);   /* 7 = Sunday = 0 */
	c->dom_any = any[2];
	c->dow_any = any[4];
	return RS_OK;
}

static int
day_matches(const rs_cron *c, int dom, int wday)
{
	int d = (c->dom >> dom) & 1, w = (c->dow >> wday) & 1;

	if (!c->dom_any && !c->dow_any)
		return d || w;
	return d && w;
}

rs_status
rs_cron_next(const rs_cron *c, const rs_tz *tz, int64_t after_ms, int64_t *next_ms)
{
	int64_t t = floordiv(after_ms, 60000) * 60 + 60;    /* seconds, next whole minute */
	int64_t limit = t + 5LL * 366 * 86400;

	while (t < limit) {
		int32_t off = tz ? rs_tz_utoff(tz, t) : 0;
		int64_t local = t + off, y, days = floordiv(local, 86400);
		int64_t sec = local - days * 86400;
		int m, d, hour = (int)(sec / 3600), min = (int)(sec % 3600 / 60);
		int wday = (int)((days % 7 + 7 + 4) % 7);

		civil_from_days(days, &y, &m, &d);
		if (!((c->month >> m) & 1) || !day_matches(c, d, wday) || !((c->hour >> hour) & 1)) {
			t += (60 - min) * 60;         /* the next local hour */
			continue;
		}
		if (!((c->minute >> min) & 1)) {
			t += 60;
			continue;
		}
		/* The autumn hour: this wall time already occurred (earlier
		 * offset larger by the size of the fall-back): fire only then. */
		if (tz != NULL) {
			int32_t before = rs_tz_utoff(tz, t - 3 * 3600);
			if (before > off && rs_tz_utoff(tz, t - (before - off)) == before &&
			    t - (before - off) >= t - 3 * 3600) {
				t += 60;
				continue;
			}
		}
		*next_ms = t * 1000;
		return RS_OK;
	}
	return RS_ENOTFOUND;
}

rs_status
rs_sched_next(const rs_sched_timing *s, int64_t after_ms, int64_t *next_ms)
{
	if (s->cron != NULL)
		return rs_cron_next(s->cron, s->tz, after_ms, next_ms);
	if (s->interval_ms <= 0)
		return RS_EINVAL;
	if (after_ms < s->anchor_ms) {
		*next_ms = s->anchor_ms;
		return RS_OK;
	}
	*next_ms = s->anchor_ms + (floordiv(after_ms - s->anchor_ms, s->interval_ms) + 1) *
	           s->interval_ms;
	return RS_OK;
}

rs_status
rs_catchup_parse(const char *s, rs_catchup *out)
{
	if (s == NULL || strcmp(s, "one") == 0)
		*out = RS_CATCHUP_ONE;
	else if (strcmp(s, "skip") == 0)
		*out = RS_CATCHUP_SKIP;
	else if (strcmp(s, "all") == 0)
		*out = RS_CATCHUP_ALL;
	else
		return RS_EINVAL;
	return RS_OK;
}

rs_status
rs_sched_due(const rs_sched_timing *s, int64_t last_ms, int64_t now_ms, int64_t grace_ms,
             rs_catchup policy, size_t max, int64_t *ticks, size_t cap, size_t *n,
             int64_t *advance_ms)
{
	int64_t t = last_ms, next, latest_missed = 0;
	size_t count = 0, scanned = 0;
	rs_status st;

	*n = 0;
	*advance_ms = last_ms;
	if (max > cap)
		max = cap;
	/* Walk the ticks in (last_ms, now_ms]: at most 100,000 of them (an
	 * interval of a second down for a day); past that the oldest are
	 * dropped without looking (they would be skipped or capped anyway). */
	if (s->cron == NULL && s->interval_ms > 0 && now_ms - last_ms > 100000 * s->interval_ms)
		t = now_ms - 100000 * s->interval_ms;
	while ((st = rs_sched_next(s, t, &next)) == RS_OK && next <= now_ms && scanned++ < 200000) {
		t = next;
		*advance_ms = next;
		if (now_ms - next <= grace_ms) {
			if (policy == RS_CATCHUP_ONE && latest_missed) {
				latest_missed = 0;   /* an on-time tick supersedes the missed one */
			}
			if (count == max) {      /* keep the latest max */
				memmove(ticks, ticks + 1, (max - 1) * sizeof(*ticks));
				count--;
			}
			if (max > 0)
				ticks[count++] = next;
			continue;
		}
		if (policy == RS_CATCHUP_ONE)
			latest_missed = next;
		else if (policy == RS_CATCHUP_ALL && max > 0) {
			if (count == max) {
				memmove(ticks, ticks + 1, (max - 1) * sizeof(*ticks));
				count--;
			}
			ticks[count++] = next;
		}
	}
	if (st != RS_OK && st != RS_ENOTFOUND)
		return st;
	if (policy == RS_CATCHUP_ONE && latest_missed && count == 0 && max > 0)
		ticks[count++] = latest_missed;
	*n = count;
	return RS_OK;
}

void
rs_sched_run_id(const char *tenant, const char *id, int64_t tick_ms, char out[37])
{
	char seed[256], h[65];
	uint64_t ms = (uint64_t)tick_ms;
	unsigned char b[16];

	snprintf(seed, sizeof(seed), "%s/%s/%lld", tenant, id, (long long)tick_ms);
	rs_sha256_hex(seed, strlen(seed), h);
	for (int i = 0; i < 16; i++) {
		unsigned v;
		sscanf(h + 2 * i, "%2x", &v);
		b[i] = (unsigned char)v;
	}
	for (int i = 0; i < 6; i++)             /* 48-bit Unix ms, as UUIDv7 */
		b[i] = (unsigned char)(ms >> (40 - 8 * i));
	b[6] = (unsigned char)(0x70 | (b[6] & 0x0f));
	b[8] = (unsigned char)(0x80 | (b[8] & 0x3f));
	snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
	         b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12],
	         b[13], b[14], b[15]);
}
