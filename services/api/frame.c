/*
 * frame.c - one SSE frame per event: "id: <runseq>\nevent: <type>\ndata:
 * <CloudEvent>\n\n", formatted once (from a live or a stored message) and
 * shared, refcounted, by every watcher of the run (api.h, rs_api_frame).
 *
 * A leaf: the live consumer and the history replay (live.c) make frames,
 * the hub and the streams (reply.c, sse.c) and the queue (work.c) hold
 * and drop them.
 */
#include "api.h"
#include "rs_time.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void
rs_api_frame_unref(rs_api_frame *f)
{
	if (f != NULL && f->refs >= 0 && --f->refs == 0)
		free(f);
}

rs_api_frame *
rs_api_frame_from_msg(natsMsg *m, const char *tenant, const char *run_id)
{
	uint64_t seq = 0;
	char type[64];
	int term = 0, n;
	size_t dlen = (size_t)natsMsg_GetDataLength(m), cap;
	rs_api_frame *f;

	if (rs_api_msg_meta(m, &seq, type, &term) != RS_OK)
		return NULL;
	/* The CloudEvent is compact JSON: no raw line break can end the
	 * one-line data: field early (JSON escapes them inside strings;
	 * between tokens a CR or LF would be legal JSON: refused). */
	if (memchr(natsMsg_GetData(m), '\n', dlen) != NULL ||
	    memchr(natsMsg_GetData(m), '\r', dlen) != NULL)
		return NULL;
	cap = dlen + 128;
	f = malloc(sizeof(*f) + LWS_PRE + cap);
	if (f == NULL)
		return NULL;
	memset(f, 0, sizeof(*f));
	f->refs = 1;
	f->runseq = seq;
	f->t_us = rs_mono_us();
	f->terminal = term;
	snprintf(f->tenant, sizeof(f->tenant), "%s", tenant);
	snprintf(f->run_id, sizeof(f->run_id), "%s", run_id);
	n = snprintf((char *)f->buf + LWS_PRE, cap, "id: %llu\nevent: %s\ndata: ",
	             (unsigned long long)seq, type);
	memcpy(f->buf + LWS_PRE + n, natsMsg_GetData(m), dlen);
	memcpy(f->buf + LWS_PRE + n + dlen, "\n\n", 3);
	f->len = (size_t)n + dlen + 2;
	return f;
}
