/*
 * dead.c - dead letters of the projections: a message a projection cannot
 * apply (malformed, a runseq duplicate or gap, a subject or tenant that
 * does not match, a row Postgres rejects) is recorded with its reason in
 * the batch result and stored in dead_letters in the batch's transaction,
 * so the stream moves on and an operator can see and replay it
 * (docs/projector.md).
 */
#include "pgcopy.h"
#include "projector.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Sanitized copy: printable ASCII only, so reasons and subjects from the
 * outside are always valid text for Postgres and the logs. */
static char *
printable(const char *s, size_t cap)
{
	size_t n = strnlen(s, cap);
	char *o = malloc(n + 1);

	if (o == NULL)
		return NULL;
	for (size_t i = 0; i < n; i++)
		o[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
	o[n] = '\0';
	return o;
}

rs_status
rs_proj_add_dead(rs_proj_result *res, const rs_proj_msg *m, const char *fmt, ...)
{
	char buf[512];
	rs_proj_dead *nd;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	nd = realloc(res->dead, (res->ndead + 1) * sizeof(*nd));
	if (nd == NULL)
		return RS_ENOMEM;
	res->dead = nd;
	nd[res->ndead].msg = m;
	if ((nd[res->ndead].reason = printable(buf, sizeof(buf))) == NULL)
		return RS_ENOMEM;
	res->ndead++;
	return RS_OK;
}

void
rs_proj_result_reset(rs_proj_result *r)
{
	for (size_t i = 0; i < r->ndead; i++)
		free(r->dead[i].reason);
	free(r->dead);
	memset(r, 0, sizeof(*r));
}

rs_status
rs_proj_store_dead(PGconn *c, const char *source, const rs_proj_result *res)
{
	for (size_t i = 0; i < res->ndead; i++) {
		const rs_proj_msg *m = res->dead[i].msg;
		char seq[24], *subj = printable(m->subject, 1024);
		const char *p[5] = { source, seq, subj, res->dead[i].reason, m->data };
		int lens[5] = { 0, 0, 0, 0, m->len };
		int fmts[5] = { 0, 0, 0, 0, 1 };
		rs_status st;

		if (subj == NULL)
			return RS_ENOMEM;
		snprintf(seq, sizeof(seq), "%" PRIu64, m->seq);
		st = rs_proj_exec_ok(c, PQexecParams(c,
		    "INSERT INTO dead_letters (source, stream_seq, subject, reason, payload) "
		    "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (source, stream_seq) DO NOTHING",
		    5, NULL, p, lens, fmts, 0), "insert dead letter");
		free(subj);
		if (st != RS_OK)
			return st;
	}
	return RS_OK;
}
