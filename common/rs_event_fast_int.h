/*
 * rs_event_fast_int.h - private to the single-pass event decoder's files:
 * rs_event_fast.c (the sorted field tables, data fields, the envelope and
 * the decoder's entry) and rs_event_fast_scan.c (the in-place JSON
 * scanner: strings, numbers, literals, and building json_t values for the
 * free-form members). Nothing else includes it: the public interface is
 * rs_event_fast.h.
 *
 * The scanner never rejects: 0 from any of its functions means "doubt",
 * and the caller hands the whole input to the strict decoder (see the
 * opening comment of rs_event_fast.c for why that keeps it correct). The
 * smallest steps (white space, one expected byte, list separators) are
 * inline here because they run between every two tokens.
 */
#ifndef RS_EVENT_FAST_INT_H
#define RS_EVENT_FAST_INT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "rs_event.h"

/* Where we are in the input; every read checks p < end. */
typedef struct {
	const char *p, *end;
} cur;

/* A string as it is in the input, between its quotes. */
typedef struct {
	const char *s;
	size_t n;       /* raw length */
	int esc;        /* has backslash escapes (the value is shorter) */
} slice;

static inline void
ws(cur *c)
{
	/* compact JSON has none: one compare in the common case */
	while (c->p < c->end && (unsigned char)*c->p <= ' ' &&
	       (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
		c->p++;
}

/* Consume ch (after whitespace) or fail. */
static inline int
expect(cur *c, char ch)
{
	ws(c);
	if (c->p >= c->end || *c->p != ch)
		return 0;
	c->p++;
	ws(c);
	return 1;
}

static inline int
peek(const cur *c)
{
	return c->p < c->end ? (unsigned char)*c->p : -1;
}

/* After a member or an element: ',' (1: another follows, blanks skipped),
 * the closing bracket `close` (0: consumed), anything else (-1). */
static inline int
list_next(cur *c, char close)
{
	ws(c);
	if (peek(c) == ',') {
		c->p++;
		ws(c);
		return 1;
	}
	if (peek(c) != close)
		return -1;
	c->p++;
	return 0;
}

/* ---- rs_event_fast_scan.c ---- */
int rs_efast_scan_string(cur *c, slice *out);
size_t rs_efast_unescape(const slice *sl, char *dst);
int rs_efast_scan_int(cur *c, int64_t *v);
int rs_efast_scan_literal(cur *c, int *which);
json_t *rs_efast_build_value(cur *c, int depth);
int rs_efast_time_value(const slice *sl, int64_t *ms);

#endif
