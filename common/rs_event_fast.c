/*
 * rs_event_fast.c - a single-pass decoder for run events, beside the strict
 * one (rs_event.c), for bulk reading: `runctl replay --file` must decode and
 * reduce >= 1M events/s, and rs_event_decode spends most of its time
 * building a jansson tree of the whole CloudEvent and copying out of it.
 *
 * Why a second decoder and not a faster first one: rs_event_decode is the
 * contract (its error texts name the field, its checks are the spec) and is
 * easy to read and change; this file is a cache in front of it. It scans the
 * envelope in place (strings are slices of the input scanned 16 bytes at a
 * time, keys are first tried in the sorted order producers write them, the
 * RFC 3339 time is parsed inline, the id is compared without formatting),
 * decodes data with field tables in the rs_field format - in the same pass,
 * with the type guessed from the end of the line - and builds json_t values
 * only for the free-form members (input, output, args, payload, ...),
 * directly, without jansson's lexer.
 *
 * The rule that keeps it correct: this file never rejects anything. Any
 * doubt - an escape other than the simple ones, a \u escape, a key it does
 * not know (extension attributes, a data field added later), an event type
 * it has no table for, a number that is not a plain integer or real, and
 * every kind of invalid input - returns "doubt", and the whole buffer goes
 * to rs_event_decode, which then accepts or rejects with its own words. So
 * only the accepting side has to match the strict decoder exactly:
 *  - the JSON must be what jansson accepts with JSON_REJECT_DUPLICATES
 *    (grammar, UTF-8 validity, no control characters, no duplicate keys,
 *    integers that fit, reals that do not overflow) nested no deeper than
 *    RS_JSON_MAX_DEPTH;
 *  - envelope_decode's and the field tables' checks, one by one.
 * tests/unit/test_event_fast.c checks both decoders agree on the fixtures,
 * the recorded histories and thousands of mutations of them.
 *
 * The data tables below copy rs_event.c's (which are static there). A
 * table that drifts from rs_event.c can only make this file fall back more
 * often (a field it does not know) or, for a field that became required or
 * stricter, accept what rs_event_decode rejects: the differential test
 * drops and retypes every data field of every fixture to catch that.
 *
 * The JSON scanner itself (strings, numbers, literals, free-form values)
 * is in rs_event_fast_scan.c; rs_event_fast_int.h holds what the two share.
 */
#include "rs_event_fast.h"
#include "rs_event_fast_int.h"

#include <errno.h>
#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rs_id.h"
#include "rs_json.h"
#include "rs_time.h"

#ifdef __SSE2__
#include <emmintrin.h>
#endif

#define EV_RUNSEQ_MAX 2147483647LL
#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

static _Thread_local rs_event_fast_stats stats;

void
rs_event_fast_get_stats(rs_event_fast_stats *out)
{
	*out = stats;
}

/* ---- the data tables: name-sorted views of rs_event.c's ----
 * rs_event.c holds the one definition of every type's data fields. Here
 * each table is copied once, at first use, and sorted by name: producers
 * write data with sorted keys, so the next key is almost always the next
 * entry and the lookup in object_fields starts there. */

#define FAST_MAX_FIELDS 32   /* a longer table takes the strict path */

typedef struct {
	char name[64];          /* "runstream." + rs_event_type_name() */
	size_t len;
	const rs_field *fields; /* NULL: strict path for this type */
	size_t n;
} fast_type;

static fast_type fast_types[RS_EV__COUNT];
static rs_field fast_fields[RS_EV__COUNT][FAST_MAX_FIELDS];
static rs_field f_err[FAST_MAX_FIELDS];
static size_t f_err_n;
static pthread_once_t fast_once = PTHREAD_ONCE_INIT;

static int
field_by_name(const void *a, const void *b)
{
	return strcmp(((const rs_field *)a)->name, ((const rs_field *)b)->name);
}

/* Copy n entries of src into dst and sort them; 0 if they do not fit. */
static size_t
sorted_copy(rs_field *dst, const rs_field *src, size_t n)
{
	if (src == NULL || n > FAST_MAX_FIELDS)
		return 0;
	memcpy(dst, src, n * sizeof(*src));
	qsort(dst, n, sizeof(*dst), field_by_name);
	return n;
}

static void
fast_init(void)
{
	const rs_field *src;
	size_t n = 0;

	src = rs_err_fields(&n);
	f_err_n = sorted_copy(f_err, src, n);
	for (int t = 0; t < RS_EV__COUNT; t++) {
		fast_type *ft = &fast_types[t];
		src = rs_event_fields((rs_event_type)t, &n);
		if (src == NULL || (n > 0 && sorted_copy(fast_fields[t], src, n) == 0))
			continue;
		snprintf(ft->name, sizeof(ft->name), "runstream.%s",
		         rs_event_type_name((rs_event_type)t));
		ft->len = strlen(ft->name);
		ft->fields = fast_fields[t];
		ft->n = n;
	}
}


/* ---- data fields ------------------------------------------------------ */

#define MEMBER(s, f, type) ((type *)(void *)((char *)(s) + (f)->off))


static int
field_string(const rs_field *f, cur *c, void *s)
{
	slice sl;
	char *copy;
	size_t n;

	if (peek(c) != '"' || !rs_efast_scan_string(c, &sl) || (copy = malloc(sl.n + 1)) == NULL)
		return 0;
	n = rs_efast_unescape(&sl, copy);
	if (!rs_field_string_ok(f, copy, n)) {
		free(copy);
		return 0;
	}
	*MEMBER(s, f, char *) = copy;
	return 1;
}

/* A short enum string (purpose, error class) into a NUL-terminated buffer. */
static int
short_string(cur *c, char *buf, size_t cap)
{
	slice sl;

	if (peek(c) != '"' || !rs_efast_scan_string(c, &sl) || sl.esc || sl.n >= cap)
		return 0;
	memcpy(buf, sl.s, sl.n);
	buf[sl.n] = '\0';
	return 1;
}

static int object_fields(const rs_field *f, size_t n, cur *c, void *s, rs_errclass *cls);

/* One data member: the same checks as rs_event.c's decode_field. */
static int
field_value(const rs_field *f, cur *c, void *s, int depth)
{
	int64_t i;
	json_t *j;
	slice sl;
	char buf[32];
	int which;

	switch (f->kind) {
	case RS_F_STR:
	case RS_F_CALLID:
	case RS_F_UUID:
	case RS_F_TOKEN:
	case RS_F_STEPKIND:
		return field_string(f, c, s);
	case RS_F_INT:
		if (!rs_efast_scan_int(c, &i) || i < f->min)
			return 0;
		*MEMBER(s, f, int64_t) = i;
		return 1;
	case RS_F_TIME:
		if (peek(c) != '"' || !rs_efast_scan_string(c, &sl))
			return 0;
		return rs_efast_time_value(&sl, MEMBER(s, f, int64_t));
	case RS_F_BOOL:
		if (!rs_efast_scan_literal(c, &which) || which == 'n')
			return 0;
		*MEMBER(s, f, int) = which == 't';
		return 1;
	case RS_F_JSON:
	case RS_F_OBJECT:
	case RS_F_ARRAY:
	case RS_F_NUMBER:
		if ((j = rs_efast_build_value(c, depth)) == NULL)
			return 0;
		*MEMBER(s, f, json_t *) = j;   /* owned now: freed on doubt */
		return f->kind == RS_F_JSON || (f->kind == RS_F_OBJECT && json_is_object(j)) ||
		       (f->kind == RS_F_ARRAY && json_is_array(j)) ||
		       (f->kind == RS_F_NUMBER && json_is_number(j));
	case RS_F_ERR:
		if (peek(c) != '{' || depth + 1 > RS_JSON_MAX_DEPTH)
			return 0;
		return object_fields(f_err, f_err_n, c, MEMBER(s, f, rs_err),
		                     &MEMBER(s, f, rs_err)->cls);
	case RS_F_PURPOSE:
		return short_string(c, buf, sizeof(buf)) &&
		       rs_timer_purpose_parse(buf, MEMBER(s, f, rs_timer_purpose)) == RS_OK;
	default:
		return 0;
	}
}

/* Is the key k the name? Byte by byte: names are short, and a key never
 * holds a NUL (control characters are a doubt), so the loop stops at the
 * end of a shorter name. */
static int
name_is(const char *name, const slice *k)
{
	for (size_t i = 0; i < k->n; i++)
		if (name[i] != k->s[i])
			return 0;
	return name[k->n] == '\0';
}

/* If the key at c (on its quote) is exactly name, consume it: a plain
 * ASCII name is a valid JSON string as is, so the key needs no scan. This
 * is how keys are read when they come in the expected (sorted) order. */
static int
take_key(cur *c, const char *name)
{
	const char *p = c->p + 1;
	size_t i;

	for (i = 0; name[i] != '\0'; i++)
		if (p + i >= c->end || p[i] != name[i])
			return 0;
	if (p + i >= c->end || p[i] != '"')
		return 0;
	c->p = p + i + 1;
	return 1;
}

/* Index of the field named k in f (n if none), looking from entry
 * `from` on first: the tables are sorted, and so are keys in the input. */
static size_t
find_field(const rs_field *f, size_t n, const slice *k, size_t from)
{
	for (size_t j = 0; j < n; j++) {
		size_t i = from + j < n ? from + j : from + j - n;
		if (f[i].name[0] == k->s[0] && name_is(f[i].name, k))
			return i;
	}
	return n;
}

/*
 * An object at c decoded with table f into s (the data object at depth 2,
 * or an error object at depth 3 when cls is set: its "class" member is an
 * enum the field kinds do not cover). Every key must be in the table (an
 * unknown one is ignored by the strict decoder but must still be valid
 * JSON with no duplicates: simpler to let it decide), at most once, and
 * every required field present.
 */
static int
object_fields(const rs_field *f, size_t n, cur *c, void *s, rs_errclass *cls)
{
	int depth = cls != NULL ? 3 : 2, have_cls = 0, more;
	size_t next = 0;
	uint32_t seen = 0;
	char buf[32];
	slice k;
	size_t i;

	if (!expect(c, '{'))
		return 0;
	if (peek(c) == '}') {
		c->p++;
		goto done;
	}
	for (;;) {
		if (peek(c) != '"')
			return 0;
		if (next < n && take_key(c, f[next].name)) {
			i = next;          /* the expected key: k is not needed */
		} else if (!rs_efast_scan_string(c, &k) || k.esc || k.n == 0) {
			return 0;
		} else {
			i = n;
		}
		if (!expect(c, ':'))
			return 0;
		if (i == n && cls != NULL && k.n == 5 && memcmp(k.s, "class", 5) == 0) {
			if (have_cls || !short_string(c, buf, sizeof(buf)) ||
			    rs_errclass_parse(buf, cls) != RS_OK)
				return 0;
			have_cls = 1;
		} else {
			if ((i == n && (i = find_field(f, n, &k, next)) == n) || (seen & (1u << i)) != 0)
				return 0;
			next = i + 1;
			seen |= 1u << i;
			if (!field_value(&f[i], c, s, depth))
				return 0;
		}
		if ((more = list_next(c, '}')) < 0)
			return 0;
		if (!more)
			break;
	}
done:
	for (i = 0; i < n; i++)
		if (!f[i].optional && (seen & (1u << i)) == 0)
			return 0;
	return cls == NULL || have_cls;
}

/* ---- the envelope ----------------------------------------------------- */

enum { A_SPECVERSION, A_ID, A_SOURCE, A_TYPE, A_SUBJECT, A_TIME, A_DATACONTENTTYPE,
       A_RUNSEQ, A_TENANT, A_TRACEPARENT, A_DATA, A__COUNT };

static const char *const attr_names[A__COUNT] = {
	"specversion", "id", "source", "type", "subject", "time", "datacontenttype",
	"runseq", "tenant", "traceparent", "data",
};

typedef struct {
	slice str[A__COUNT];        /* the string attributes, raw */
	int64_t runseq;
	const char *data, *data_end;
	unsigned seen;
	int hint;                   /* type guessed from the tail, -1 if none */
	const rs_field *df;         /* table data was decoded with (to free) */
	size_t dn;
	void *d;                    /* where data goes (&ev->d) */
} envelope;

/* The attribute a key names, or -1: a guess from its length, then a
 * check of every byte. */
static int
attr_index(const slice *k)
{
	int a;

	switch (k->n) {
	case 2:  a = A_ID; break;
	case 4:  a = k->s[1] == 'y' ? A_TYPE : k->s[1] == 'i' ? A_TIME : A_DATA; break;
	case 6:  a = k->s[0] == 's' ? A_SOURCE : k->s[0] == 't' ? A_TENANT : A_RUNSEQ; break;
	case 7:  a = A_SUBJECT; break;
	case 11: a = k->s[0] == 's' ? A_SPECVERSION : A_TRACEPARENT; break;
	case 15: a = A_DATACONTENTTYPE; break;
	default: return -1;
	}
	return memcmp(attr_names[a], k->s, k->n) == 0 ? a : -1;   /* same length */
}

/* Skip a container at c ('{'/'['): brackets counted outside strings. On
 * valid JSON this ends exactly where the value ends; on invalid JSON the
 * decode of [start, end) finds out. */
static int
skip_container(cur *c)
{
	const char *p = c->p, *end = c->end, *q;
	int depth = 0;

	while (p < end) {
		switch (*p) {
		case '"':
			for (q = p + 1;; q++) {
				size_t bs = 0;
				if ((q = memchr(q, '"', (size_t)(end - q))) == NULL)
					return 0;
				while (q - bs - 1 > p && q[-(ptrdiff_t)bs - 1] == '\\')
					bs++;
				if (bs % 2 == 0)
					break;
			}
			p = q;
			break;
		case '{':
		case '[':
			depth++;
			break;
		case '}':
		case ']':
			if (--depth == 0) {
				c->p = p + 1;
				return 1;
			}
			break;
		default:
			break;
		}
		p++;
	}
	return 0;
}

/* rs_event_raw_member (rs_event_fast.h): the same scanning as the decoder,
 * member by member at the top level of an object; any doubt is "not found". */
int
rs_event_raw_member(const char *buf, size_t len, const char *key, const char **vs, size_t *vn)
{
	cur c = { buf, buf + len };
	size_t kl = strlen(key);
	slice k, sv;

	if (!expect(&c, '{'))
		return 0;
	if (peek(&c) == '}')
		return 0;
	for (;;) {
		const char *v;

		if (peek(&c) != '"' || !rs_efast_scan_string(&c, &k) || !expect(&c, ':'))
			return 0;
		v = c.p;
		switch (peek(&c)) {
		case '{':
		case '[':
			if (!skip_container(&c))
				return 0;
			break;
		case '"':
			if (!rs_efast_scan_string(&c, &sv))
				return 0;
			break;
		default:        /* number, true, false, null */
			while (c.p < c.end && *c.p != ',' && *c.p != '}' && *c.p != ' ' &&
			       *c.p != '\t' && *c.p != '\n' && *c.p != '\r')
				c.p++;
			if (c.p == v)
				return 0;
			break;
		}
		if (!k.esc && k.n == kl && memcmp(k.s, key, kl) == 0) {
			*vs = v;
			*vn = (size_t)(c.p - v);
			return 1;
		}
		if (list_next(&c, '}') != 1)
			return 0;
	}
}

/* The top-level object: every key a known attribute, once; string
 * attributes must be plain strings, runseq an integer, data an object.
 * data is decoded on the spot with the table of the type guessed from the
 * tail (type_hint), or else kept as a span and decoded once "type" (which
 * sorts after "data") has been read. */
static int
scan_envelope(cur *c, envelope *e)
{
	/* the attributes in the order sorted keys put them */
	static const int sorted_attrs[A__COUNT] = {
		A_DATA, A_DATACONTENTTYPE, A_ID, A_RUNSEQ, A_SOURCE, A_SPECVERSION, A_SUBJECT,
		A_TENANT, A_TIME, A_TRACEPARENT, A_TYPE,
	};
	int a, next = 0, more;
	slice k;

	ws(c);
	if (!expect(c, '{') || peek(c) == '}')
		return 0;
	for (;;) {
		if (peek(c) != '"')
			return 0;
		if (next < A__COUNT && take_key(c, attr_names[sorted_attrs[next]])) {
			a = sorted_attrs[next];
		} else if (!rs_efast_scan_string(c, &k) || k.esc || (a = attr_index(&k)) < 0) {
			return 0;
		}
		if (!expect(c, ':') || (e->seen & (1u << a)) != 0)
			return 0;
		e->seen |= 1u << a;
		for (next = 0; next < A__COUNT && sorted_attrs[next] != a; next++)
			;
		next++;
		if (a == A_RUNSEQ) {
			if (!rs_efast_scan_int(c, &e->runseq))
				return 0;
		} else if (a == A_DATA) {
			if (peek(c) != '{')
				return 0;
			if (e->hint >= 0) {
				/* one pass: decoded now, the type checked later */
				e->df = fast_types[e->hint].fields;
				e->dn = fast_types[e->hint].n;
				if (!object_fields(e->df, e->dn, c, e->d, NULL))
					return 0;
			} else {
				e->data = c->p;
				if (!skip_container(c))
					return 0;
				e->data_end = c->p;
			}
		} else if (peek(c) != '"' || !rs_efast_scan_string(c, &e->str[a]) || e->str[a].esc) {
			return 0;
		}
		if ((more = list_next(c, '}')) < 0)
			return 0;
		if (!more) {
			ws(c);
			return c->p == c->end;
		}
	}
}

static int
slice_is(const slice *sl, const char *want, size_t n)
{
	return sl->n == n && memcmp(sl->s, want, n) == 0;
}

/* The whole type attribute, "runstream.<noun>.<verb>": a type with a
 * fast table (names are the wire contract; the test checks every v1.0
 * type really takes the fast path, so a name that differs from
 * rs_event_type_name() fails there). */
static int
event_type(const slice *sl, rs_event_type *t)
{
	for (int i = 0; i < RS_EV__COUNT; i++) {
		if (fast_types[i].fields != NULL && fast_types[i].len == sl->n &&
		    memcmp(fast_types[i].name, sl->s, sl->n) == 0) {
			*t = (rs_event_type)i;
			return 1;
		}
	}
	return 0;
}

/* id == "<subject>-<runseq>", compared without formatting. */
static int
id_matches(const slice *id, const slice *subject, int64_t runseq)
{
	char digits_buf[24];
	size_t nd = 0;

	do {
		digits_buf[sizeof(digits_buf) - 1 - nd++] = (char)('0' + runseq % 10);
		runseq /= 10;
	} while (runseq > 0);
	return id->n == subject->n + 1 + nd && memcmp(id->s, subject->s, subject->n) == 0 &&
	       id->s[subject->n] == '-' &&
	       memcmp(id->s + subject->n + 1, digits_buf + sizeof(digits_buf) - nd, nd) == 0;
}

/* rs_id_is_uuid on a slice: 36 chars, lowercase hex and four dashes. */
static int
uuid_ok(const slice *sl)
{
	if (sl->n != RS_UUID_LEN)
		return 0;
	for (int i = 0; i < RS_UUID_LEN; i++) {
		char ch = sl->s[i];
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (ch != '-')
				return 0;
		} else if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f'))) {
			return 0;
		}
	}
	return 1;
}

/* The checks of rs_event.c's envelope_decode, in any order (any failure
 * is a doubt, the strict decoder then reports the first one). */
static int
envelope_fill(const envelope *e, rs_event *ev)
{
	const unsigned required = ((1u << A__COUNT) - 1) & ~(1u << A_TRACEPARENT);
	const slice *s;

	if ((e->seen & required) != required)
		return 0;
	if (!slice_is(&e->str[A_SPECVERSION], "1.0", 3) ||
	    !slice_is(&e->str[A_DATACONTENTTYPE], "application/json", 16) ||
	    !event_type(&e->str[A_TYPE], &ev->type))
		return 0;
	s = &e->str[A_SUBJECT];
	if (!uuid_ok(s))
		return 0;
	memcpy(ev->run_id, s->s, s->n);
	ev->run_id[s->n] = '\0';
	if (e->runseq < 1 || e->runseq > EV_RUNSEQ_MAX || !id_matches(&e->str[A_ID], s, e->runseq))
		return 0;
	ev->runseq = (uint64_t)e->runseq;
	if (e->str[A_SOURCE].n == 0 || !rs_efast_time_value(&e->str[A_TIME], &ev->time_ms))
		return 0;
	s = &e->str[A_TENANT];
	if (s->n == 0 || s->n > 64)
		return 0;
	memcpy(ev->tenant, s->s, s->n);
	ev->tenant[s->n] = '\0';
	if (!rs_id_is_token(ev->tenant, 64))
		return 0;
	if (e->seen & (1u << A_TRACEPARENT)) {
		s = &e->str[A_TRACEPARENT];
		if (s->n >= sizeof(ev->traceparent))
			return 0;
		memcpy(ev->traceparent, s->s, s->n);
		ev->traceparent[s->n] = '\0';
		if (!rs_traceparent_valid(ev->traceparent))
			return 0;
	}
	return 1;
}

static int
is_ws(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r';
}

/* The event type guessed from the end of the buffer, -1 if no guess:
 * with sorted keys (how every Runstream producer writes events) "type"
 * is the last member, but "data" the first, so without a guess data is
 * scanned twice (skipped, then decoded once the type is known). A wrong
 * guess costs a fallback, never a wrong event: the real type attribute
 * must equal it. */
static int
type_hint(const char *buf, size_t len)
{
	const char *p = buf + len, *q;
	rs_event_type t;
	slice sl;
	size_t w;

	while (p > buf && is_ws(p[-1]))
		p--;
	if (p == buf || *--p != '}')
		return -1;
	while (p > buf && is_ws(p[-1]))
		p--;
	if (p == buf || *--p != '"')
		return -1;
	q = p;
	w = q - buf > 64 ? 64 : (size_t)(q - buf);   /* longer than any type */
	if ((p = memrchr(q - w, '"', w)) == NULL)
		return -1;
	sl.s = p + 1;
	sl.n = (size_t)(q - p - 1);
	sl.esc = 0;
	return event_type(&sl, &t) ? (int)t : -1;
}

/* The whole event, or 0 (ev then holds nothing). */
static int
decode_fast(const char *buf, size_t len, rs_event *ev)
{
	cur c = { buf, buf + len }, dc;
	envelope e;

	pthread_once(&fast_once, fast_init);
	memset(&e, 0, sizeof(e));
	memset(ev, 0, sizeof(*ev));
	e.hint = type_hint(buf, len);
	e.d = &ev->d;
	if (!scan_envelope(&c, &e) || !envelope_fill(&e, ev))
		goto doubt;
	if (e.df != NULL) {
		if ((int)ev->type != e.hint)
			goto doubt;
	} else {
		e.df = fast_types[ev->type].fields;
		e.dn = fast_types[ev->type].n;
		dc.p = e.data;
		dc.end = e.data_end;
		if (!object_fields(e.df, e.dn, &dc, &ev->d, NULL) || dc.p != dc.end)
			goto doubt;
	}
	if ((ev->source = malloc(e.str[A_SOURCE].n + 1)) == NULL)
		goto doubt;
	rs_efast_unescape(&e.str[A_SOURCE], ev->source);
	return 1;
doubt:
	if (e.df != NULL)
		rs_fields_free(e.df, e.dn, &ev->d);
	memset(ev, 0, sizeof(*ev));
	return 0;
}

rs_status
rs_event_decode_fast(const char *buf, size_t len, rs_event *ev, char *err, size_t cap)
{
	if (buf != NULL && decode_fast(buf, len, ev)) {
		stats.fast++;
		return RS_OK;
	}
	stats.fallback++;
	return rs_event_decode(buf, len, ev, err, cap);
}
