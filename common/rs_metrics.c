/* rs_metrics.c - lock-free metric registry and text rendering (rs_metrics.h). */
#include "rs_metrics.h"
#include "rs_mem.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RS_MAX_METRICS 256
#define RS_NBUCKETS 14

enum { KIND_COUNTER, KIND_GAUGE, KIND_HISTOGRAM };

static const double buckets[RS_NBUCKETS] = {
	0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10
};

struct rs_metric {
	const char *name, *help, *labels;
	int kind;
	_Atomic uint64_t bits;                 /* double value, as bits */
	_Atomic uint64_t counts[RS_NBUCKETS + 1];
	_Atomic uint64_t sum_us;
};

static rs_metric registry[RS_MAX_METRICS];
static int nmetrics;

static rs_metric *
reg(const char *name, const char *help, const char *labels, int kind)
{
	rs_metric *m;

	for (int i = 0; i < nmetrics; i++)
		if (strcmp(registry[i].name, name) == 0 &&
		    strcmp(registry[i].labels ? registry[i].labels : "", labels ? labels : "") == 0)
			return &registry[i];
	if (nmetrics == RS_MAX_METRICS)
		abort(); /* a programming error: raise RS_MAX_METRICS */
	m = &registry[nmetrics++];
	m->name = name;
	m->help = help;
	m->labels = labels;
	m->kind = kind;
	return m;
}

rs_metric *rs_counter(const char *n, const char *h, const char *l) { return reg(n, h, l, KIND_COUNTER); }
rs_metric *rs_gauge(const char *n, const char *h, const char *l) { return reg(n, h, l, KIND_GAUGE); }
rs_metric *rs_histogram(const char *n, const char *h, const char *l) { return reg(n, h, l, KIND_HISTOGRAM); }

static double
bits_to_d(uint64_t b)
{
	double d;

	memcpy(&d, &b, sizeof(d));
	return d;
}

static uint64_t
d_to_bits(double d)
{
	uint64_t b;

	memcpy(&b, &d, sizeof(b));
	return b;
}

void
rs_metric_add(rs_metric *m, double v)
{
	uint64_t old = atomic_load(&m->bits), nw;

	do {
		nw = d_to_bits(bits_to_d(old) + v);
	} while (!atomic_compare_exchange_weak(&m->bits, &old, nw));
}

void rs_metric_inc(rs_metric *m) { rs_metric_add(m, 1.0); }
void rs_metric_set(rs_metric *m, double v) { atomic_store(&m->bits, d_to_bits(v)); }
double rs_metric_get(const rs_metric *m) { return bits_to_d(atomic_load(&((rs_metric *)m)->bits)); }

void
rs_metric_observe(rs_metric *m, double s)
{
	int i = 0;

	while (i < RS_NBUCKETS && s > buckets[i])
		i++;
	atomic_fetch_add(&m->counts[i], 1);
	atomic_fetch_add(&m->sum_us, (uint64_t)(s < 0 ? 0 : s * 1e6));
}

typedef struct { char *buf; size_t len, cap; } sbuf;

static void
sb_printf(sbuf *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#include <stdarg.h>
static void
sb_printf(sbuf *sb, const char *fmt, ...)
{
	va_list ap;
	int n;

	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(sb->buf + sb->len, sb->cap - sb->len, fmt, ap);
		va_end(ap);
		if (n >= 0 && (size_t)n < sb->cap - sb->len) {
			sb->len += (size_t)n;
			return;
		}
		sb->cap = sb->cap * 2 + (size_t)n;
		sb->buf = rs_xrealloc(sb->buf, sb->cap);
	}
}

static int
header_done(int upto, const char *name)
{
	for (int i = 0; i < upto; i++)
		if (strcmp(registry[i].name, name) == 0)
			return 1;
	return 0;
}

char *
rs_metrics_render(size_t *len)
{
	static const char *kinds[] = { "counter", "gauge", "histogram" };
	sbuf sb = { malloc(4096), 0, 4096 };

	if (sb.buf == NULL)
		return NULL;
	sb.buf[0] = '\0';
	for (int i = 0; i < nmetrics; i++) {
		rs_metric *m = &registry[i];
		const char *l = m->labels ? m->labels : "";
		if (!header_done(i, m->name))
			sb_printf(&sb, "# HELP %s %s\n# TYPE %s %s\n", m->name, m->help,
			          m->name, kinds[m->kind]);
		if (m->kind != KIND_HISTOGRAM) {
			sb_printf(&sb, "%s%s%s%s %.17g\n", m->name, *l ? "{" : "", l, *l ? "}" : "",
			          rs_metric_get(m));
			continue;
		}
		uint64_t cum = 0;
		for (int b = 0; b <= RS_NBUCKETS; b++) {
			cum += atomic_load(&m->counts[b]);
			if (b < RS_NBUCKETS)
				sb_printf(&sb, "%s_bucket{%s%sle=\"%g\"} %llu\n", m->name, l, *l ? "," : "",
				          buckets[b], (unsigned long long)cum);
			else
				sb_printf(&sb, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", m->name, l, *l ? "," : "",
				          (unsigned long long)cum);
		}
		sb_printf(&sb, "%s_sum%s%s%s %.6f\n%s_count%s%s%s %llu\n", m->name, *l ? "{" : "", l,
		          *l ? "}" : "", (double)atomic_load(&m->sum_us) / 1e6, m->name, *l ? "{" : "",
		          l, *l ? "}" : "", (unsigned long long)cum);
	}
	*len = sb.len;
	return sb.buf;
}
