/*
 * rs_event_fast_scan.c - the in-place JSON scanner of the single-pass event
 * decoder (rs_event_fast.c): strings validated as jansson would (UTF-8,
 * control characters, the simple escapes; plain bytes skipped 16 or 8 at a
 * time), numbers and literals as jansson reads them, and json_t values built
 * directly for the free-form members (input, output, args, payload...)
 * without jansson's lexer. Every function answers 0/NULL on doubt, never
 * an error of its own: the caller falls back to the strict decoder.
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

/* ---- scanning ------------------------------------------------------- */

/* Byte classes inside a JSON string. */
enum { SC_PLAIN = 0, SC_QUOTE, SC_ESC, SC_CTRL, SC_HIGH };

static int
str_class(unsigned char ch)
{
	if (ch >= 0x20 && ch < 0x80)
		return ch == '"' ? SC_QUOTE : ch == '\\' ? SC_ESC : SC_PLAIN;
	return ch < 0x20 ? SC_CTRL : SC_HIGH;
}

/* Length of the valid UTF-8 sequence at p, 0 if invalid: the same rules
 * as jansson's utf8_check_first/utf8_check_full (no overlong forms, no
 * surrogates, nothing above U+10FFFF). */
static size_t
utf8_len(const unsigned char *p, const unsigned char *end)
{
	unsigned u = p[0];
	size_t n;
	int32_t v;

	if (u >= 0xC2 && u <= 0xDF) {
		n = 2;
		v = u & 0x1F;
	} else if (u >= 0xE0 && u <= 0xEF) {
		n = 3;
		v = u & 0xF;
	} else if (u >= 0xF0 && u <= 0xF4) {
		n = 4;
		v = u & 0x7;
	} else {
		return 0;
	}
	if ((size_t)(end - p) < n)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if (p[i] < 0x80 || p[i] > 0xBF)
			return 0;
		v = (v << 6) + (p[i] & 0x3F);
	}
	if (v > 0x10FFFF || (v > 0xD7FF && v < 0xE000) || (n == 3 && v < 0x800) ||
	    (n == 4 && v < 0x10000))
		return 0;
	return n;
}

/* The one-character escapes; \u is left to the strict decoder. */
static int
simple_escape(unsigned char ch)
{
	return ch == '"' || ch == '\\' || ch == '/' || ch == 'b' || ch == 'f' || ch == 'n' ||
	       ch == 'r' || ch == 't';
}

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
/* Bytes of x that need a look inside a string: '"', '\\', a control
 * character or a byte >= 0x80, as a mask of their high bits. The bit
 * tricks ("has zero byte", "has byte less than") can mark a byte above
 * a real hit by mistake, never one below it: the lowest set bit is
 * exact, which is all the caller uses. */
static uint64_t
special8(uint64_t x)
{
	const uint64_t ones = 0x0101010101010101ULL, high = 0x8080808080808080ULL;
	uint64_t q = x ^ (ones * '"'), b = x ^ (ones * '\\');

	return (((x - ones * 0x20) & ~x) | ((q - ones) & ~q) | ((b - ones) & ~b) | x) & high;
}
#endif

#ifdef __SSE2__
/* Offset of the first byte of p[0..16) that needs a look (16 if none).
 * One signed compare finds control characters and bytes >= 0x80 alike. */
static unsigned
special16(const unsigned char *p)
{
	__m128i x = _mm_loadu_si128((const __m128i *)(const void *)p);
	__m128i m = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(x, _mm_set1_epi8('"')),
	                                      _mm_cmpeq_epi8(x, _mm_set1_epi8('\\'))),
	                         _mm_cmplt_epi8(x, _mm_set1_epi8(0x20)));
	unsigned bits = (unsigned)_mm_movemask_epi8(m);

	return bits != 0 ? (unsigned)__builtin_ctz(bits) : 16;
}
#endif

/* A string at c (on its opening quote) into *out, validated as jansson
 * would; 0 on doubt. Plain bytes are skipped 16 (SSE2) or 8 at a time. */
int
rs_efast_scan_string(cur *c, slice *out)
{
	const unsigned char *p = (const unsigned char *)c->p + 1;
	const unsigned char *start = p, *end = (const unsigned char *)c->end;
	int esc = 0;
	size_t n;

	for (;;) {
#ifdef __SSE2__
		while (end - p >= 16) {
			unsigned k = special16(p);
			p += k;
			if (k < 16)
				goto look;
		}
#endif
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__   /* first byte = lowest bits */
		while (end - p >= 8) {
			uint64_t w, m;
			memcpy(&w, p, 8);
			if ((m = special8(w)) != 0) {
				p += (size_t)__builtin_ctzll(m) >> 3;
				break;
			}
			p += 8;
		}
#endif
		if (p >= end)
			return 0;
#ifdef __SSE2__
look:
#endif
		switch (str_class(*p)) {
		case SC_PLAIN:
			p++;
			break;
		case SC_QUOTE:
			out->s = (const char *)start;
			out->n = (size_t)(p - start);
			out->esc = esc;
			c->p = (const char *)p + 1;
			return 1;
		case SC_ESC:
			if (p + 1 >= end || !simple_escape(p[1]))
				return 0;
			esc = 1;
			p += 2;
			break;
		case SC_HIGH:
			if ((n = utf8_len(p, end)) == 0)
				return 0;
			p += n;
			break;
		default:
			return 0;
		}
	}
}

/* The value of a scanned string into dst (room for sl->n + 1); returns
 * its length. */
size_t
rs_efast_unescape(const slice *sl, char *dst)
{
	size_t o = 0;

	if (!sl->esc) {
		memcpy(dst, sl->s, sl->n);
		dst[sl->n] = '\0';
		return sl->n;
	}
	for (size_t i = 0; i < sl->n; i++) {
		char ch = sl->s[i];
		if (ch == '\\') {
			ch = sl->s[++i];
			switch (ch) {
			case 'b': ch = '\b'; break;
			case 'f': ch = '\f'; break;
			case 'n': ch = '\n'; break;
			case 'r': ch = '\r'; break;
			case 't': ch = '\t'; break;
			default: break;   /* " \ / stand for themselves */
			}
		}
		dst[o++] = ch;
	}
	dst[o] = '\0';
	return o;
}

static int
is_digit(int ch)
{
	return ch >= '0' && ch <= '9';
}

/* A JSON number at c. *is_int tells which kind; integers of up to 18
 * digits land in *i (they cannot overflow), anything longer is a doubt.
 * Reals are only checked here (grammar) and left at [start, c->p). */
static int
scan_number(cur *c, int *is_int, int64_t *i)
{
	const char *p = c->p, *end = c->end;
	int neg = 0, ndig = 0;
	int64_t v = 0;

	if (p < end && *p == '-') {
		neg = 1;
		p++;
	}
	if (p >= end || !is_digit(*p))
		return 0;
	if (*p == '0') {
		p++;
		ndig = 1;
	} else {
		while (p < end && is_digit(*p)) {
			if (++ndig > 18)
				return 0;
			v = v * 10 + (*p++ - '0');
		}
	}
	*is_int = 1;
	if (p < end && *p == '.') {
		if (++p >= end || !is_digit(*p))
			return 0;
		while (p < end && is_digit(*p))
			p++;
		*is_int = 0;
	}
	if (p < end && (*p == 'e' || *p == 'E')) {
		p++;
		if (p < end && (*p == '+' || *p == '-'))
			p++;
		if (p >= end || !is_digit(*p))
			return 0;
		while (p < end && is_digit(*p))
			p++;
		*is_int = 0;
	}
	/* jansson reads "01" as 0 then a stray token: invalid either way. */
	if (p < end && is_digit(*p))
		return 0;
	*i = neg ? -v : v;
	c->p = p;
	return 1;
}

int
rs_efast_scan_int(cur *c, int64_t *v)
{
	int is_int;

	return scan_number(c, &is_int, v) && is_int;
}

/* true / false / null at c: 1 = matched (*which 't', 'f', 'n'). */
int
rs_efast_scan_literal(cur *c, int *which)
{
	size_t left = (size_t)(c->end - c->p);
	const char *lit;
	size_t n;

	switch (peek(c)) {
	case 't': lit = "true"; n = 4; break;
	case 'f': lit = "false"; n = 5; break;
	case 'n': lit = "null"; n = 4; break;
	default: return 0;
	}
	if (left < n || memcmp(c->p, lit, n) != 0)
		return 0;
	*which = lit[0];
	c->p += n;
	/* jansson reads a whole word ("truex" is one bad token). */
	return peek(c) < 0 || !((*c->p >= 'a' && *c->p <= 'z') || (*c->p >= 'A' && *c->p <= 'Z'));
}

/* ---- building json_t values (the free-form members) ------------------ */

/* A real exactly as jansson makes it: strtod of the token (jansson swaps
 * '.' for the locale's decimal point first; we only go on when that is
 * '.'), an overflow to +-HUGE_VAL is an error. */
static json_t *
build_real(const char *s, size_t n)
{
	char buf[64], *end;
	double d;

	if (n >= sizeof(buf) || localeconv()->decimal_point[0] != '.' ||
	    localeconv()->decimal_point[1] != '\0')
		return NULL;
	memcpy(buf, s, n);
	buf[n] = '\0';
	errno = 0;
	d = strtod(buf, &end);
	if (end != buf + n || ((d == HUGE_VAL || d == -HUGE_VAL) && errno == ERANGE))
		return NULL;
	return json_real(d);
}

static json_t *
build_string(const slice *sl)
{
	char small[256], *buf = small;
	json_t *v;
	size_t n;

	if (!sl->esc)
		return json_stringn_nocheck(sl->s, sl->n);
	if (sl->n >= sizeof(small) && (buf = malloc(sl->n + 1)) == NULL)
		return NULL;
	n = rs_efast_unescape(sl, buf);
	v = json_stringn_nocheck(buf, n);
	if (buf != small)
		free(buf);
	return v;
}

/* An object at c ('{'), depth counting it. Keys are inserted in input
 * order, as jansson's parser does; a key that does not grow the object is
 * a duplicate (JSON_REJECT_DUPLICATES would refuse the event). */
static json_t *
build_object(cur *c, int depth)
{
	json_t *o, *v;
	slice k;
	size_t before;
	int more;

	if (depth > RS_JSON_MAX_DEPTH || (o = json_object()) == NULL)
		return NULL;
	if (!expect(c, '{'))
		goto fail;
	if (peek(c) == '}') {
		c->p++;
		return o;
	}
	for (;;) {
		if (peek(c) != '"' || !rs_efast_scan_string(c, &k) || k.esc || !expect(c, ':'))
			goto fail;
		if ((v = rs_efast_build_value(c, depth)) == NULL)
			goto fail;
		before = json_object_size(o);
		if (json_object_setn_new_nocheck(o, k.s, k.n, v) != 0 || json_object_size(o) == before)
			goto fail;
		if ((more = list_next(c, '}')) < 0)
			goto fail;
		if (!more)
			return o;
	}
fail:
	json_decref(o);
	return NULL;
}

static json_t *
build_array(cur *c, int depth)
{
	json_t *a, *v;
	int more;

	if (depth > RS_JSON_MAX_DEPTH || (a = json_array()) == NULL)
		return NULL;
	if (!expect(c, '['))
		goto fail;
	if (peek(c) == ']') {
		c->p++;
		return a;
	}
	for (;;) {
		if ((v = rs_efast_build_value(c, depth)) == NULL || json_array_append_new(a, v) != 0)
			goto fail;
		if ((more = list_next(c, ']')) < 0)
			goto fail;
		if (!more)
			return a;
	}
fail:
	json_decref(a);
	return NULL;
}

/* Any JSON value at c; depth is that of its container. NULL = doubt. */
json_t *
rs_efast_build_value(cur *c, int depth)
{
	const char *start = c->p;
	int is_int, which;
	int64_t i;
	slice sl;

	switch (peek(c)) {
	case '{':
		return build_object(c, depth + 1);
	case '[':
		return build_array(c, depth + 1);
	case '"':
		return rs_efast_scan_string(c, &sl) ? build_string(&sl) : NULL;
	case 't':
	case 'f':
	case 'n':
		if (!rs_efast_scan_literal(c, &which))
			return NULL;
		return which == 't' ? json_true() : which == 'f' ? json_false() : json_null();
	default:
		if (!scan_number(c, &is_int, &i))
			return NULL;
		return is_int ? json_integer(i) : build_real(start, (size_t)(c->p - start));
	}
}

/* A time string (RS_F_TIME, the envelope's time): Unix ms >= 0. */
int
rs_efast_time_value(const slice *sl, int64_t *ms)
{
	char buf[64];

	if (sl->esc || sl->n >= sizeof(buf))
		return 0;
	memcpy(buf, sl->s, sl->n);
	buf[sl->n] = '\0';
	return rs_time_parse_rfc3339(buf, ms) == RS_OK && *ms >= 0;
}
