/*
 * logread.c - reads of RUNS that must be current: one message, or a
 * run's whole history.
 *
 * Every read of the log the API makes by message (a run's newest event for
 * read-your-writes, SSE history, view loads and catch-ups, the viewer's
 * state reads, fork and gate look-ups) goes through rs_api_log_get, with
 * the options of a direct get. Why: RUNS has allow_direct, and on a
 * cluster (RUNS with replicas > 1) any replica answers DIRECT.GET, one
 * that is behind (just restarted, or resumed after a pause) from its own
 * older state: a run's newest event looks older than it is, a history
 * walk by next_by_subj ends early (docs/architecture.md "Streams"). A
 * direct get cannot be checked against a floor either: its answer does not
 * say how far the replica that gave it has got. So on a cluster these
 * reads go to the stream leader, STREAM.MSG.GET (seq, next_by_subj or
 * last_by_subj), which answers from the state every append was
 * acknowledged in. On one node (R1) the only replica is the leader, and
 * the direct get, the cheaper of the two (no JSON, no base64), stays.
 *
 * RS_API_RUNS_READS: auto (default: leader when RUNS has replicas > 1,
 * read once at start), direct, leader. Measured in docs/api.md.
 *
 * The leader's answer is a JSON envelope with the message's headers and
 * data in base64; it is turned back into a natsMsg shaped like a direct
 * get's (data, subject, the stored headers, Nats-Sequence), so callers do
 * not care which read answered.
 *
 * A run's history (SSE replay pages, view loads and catch-ups, the
 * viewer's state and check) is read by rs_api_log_history alone: direct
 * gets for a few events (no consumer to create), one ordered consumer on
 * the run's literal subject for many (~0.2-0.4 ms a get would be seconds
 * for 10,000 events); the caller, who knows how long the run is, chooses.
 */
#include "api.h"
#include "rs_event.h"
#include "rs_json.h"
#include "rs_log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Bounds on what the leader's envelope may hold: RUNS messages are
 * bounded by the stream's max_msg_size (1 MB by default), headers are a
 * few short lines. */
#define ENVELOPE_MAX (4 * 1048576)
#define HDRS_MAX 8192
#define HDR_LINES_MAX 32

rs_status
rs_api_log_init(rs_api *app)
{
	const char *mode = getenv("RS_API_RUNS_READS");
	jsStreamInfo *si = NULL;
	jsErrCode jerr = 0;
	natsStatus s;

	if (mode == NULL || mode[0] == '\0' || strcmp(mode, "auto") == 0) {
		s = js_GetStreamInfo(&si, app->nats.js, "RUNS", NULL, &jerr);
		if (s != NATS_OK)
			return rs_nats_status(s, jerr);
		app->runs_leader_reads = si->Config != NULL && si->Config->Replicas > 1;
		jsStreamInfo_Destroy(si);
	} else if (strcmp(mode, "direct") == 0) {
		app->runs_leader_reads = 0;
	} else if (strcmp(mode, "leader") == 0) {
		app->runs_leader_reads = 1;
	} else {
		rs_error("RS_API_RUNS_READS: must be auto, direct or leader (got \"%s\")", mode);
		return RS_EINVAL;
	}
	/* The SSE recheck (sse.c) is for node faults: on by default on a
	 * cluster only. */
	if (app->sse_recheck_s < 0)
		app->sse_recheck_s = app->runs_leader_reads ? 30 : 0;
	rs_info("RUNS reads that must be current: %s; idle SSE watchers checked against the "
	        "log every %d s (0 = never)",
	        app->runs_leader_reads ? "the stream leader (STREAM.MSG.GET)" : "direct get",
	        app->sse_recheck_s);
	return RS_OK;
}

static int
b64val(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/* Standard base64 (padding optional) into a new buffer; NULL if it is
 * not base64. *outlen is the decoded length. */
static unsigned char *
b64_decode(const char *in, size_t len, size_t *outlen)
{
	unsigned char *out = malloc(len / 4 * 3 + 4);
	uint32_t acc = 0;
	int bits = 0;
	size_t n = 0;

	if (out == NULL)
		abort();
	while (len > 0 && in[len - 1] == '=')
		len--;
	for (size_t i = 0; i < len; i++) {
		int v = b64val((unsigned char)in[i]);
		if (v < 0) {
			free(out);
			return NULL;
		}
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[n++] = (unsigned char)(acc >> bits);
		}
	}
	*outlen = n;
	return out;
}

/* "NATS/1.0\r\nKey: Value\r\n...\r\n\r\n" onto m (bounded lines). */
static rs_status
set_headers(natsMsg *m, const char *h, size_t len)
{
	const char *p = h, *end = h + len, *eol;
	int lines = 0;

	if (len < 8 || strncmp(h, "NATS/1.0", 8) != 0)
		return RS_EINVAL;
	if ((eol = memchr(p, '\n', (size_t)(end - p))) == NULL)
		return RS_OK;     /* a status line only */
	for (p = eol + 1; p < end && lines < HDR_LINES_MAX; p = eol + 1, lines++) {
		const char *colon, *v;
		char key[128], val[512];
		size_t kl, vl;

		if ((eol = memchr(p, '\n', (size_t)(end - p))) == NULL)
			eol = end;
		vl = (size_t)(eol - p);
		if (vl > 0 && p[vl - 1] == '\r')
			vl--;
		if (vl == 0)
			break;
		if ((colon = memchr(p, ':', vl)) == NULL || (kl = (size_t)(colon - p)) == 0 ||
		    kl >= sizeof(key))
			return RS_EINVAL;
		v = colon + 1;
		while (v < p + vl && *v == ' ')
			v++;
		if ((size_t)(p + vl - v) >= sizeof(val))
			continue;       /* not one the API reads: skipped */
		memcpy(key, p, kl);
		key[kl] = '\0';
		memcpy(val, v, (size_t)(p + vl - v));
		val[p + vl - v] = '\0';
		if (natsMsgHeader_Add(m, key, val) != NATS_OK)
			return RS_EIO;
		if (eol == end)
			break;
	}
	return RS_OK;
}

/* The leader's answer (JSON) to a natsMsg; NATS_NOT_FOUND for its 404. */
static natsStatus
from_envelope(natsMsg **out, const char *data, size_t len)
{
	json_t *v = NULL, *msg, *err;
	json_error_t jerr;
	const char *subj, *d64, *h64;
	unsigned char *body = NULL, *hdrs = NULL;
	size_t blen = 0, hlen = 0;
	json_int_t seq;
	char sq[24];
	natsStatus s = NATS_ERR;

	*out = NULL;
	if (len > ENVELOPE_MAX || (v = json_loadb(data, len, 0, &jerr)) == NULL)
		return NATS_ERR;
	if ((err = json_object_get(v, "error")) != NULL) {
		s = json_integer_value(json_object_get(err, "code")) == 404 ? NATS_NOT_FOUND : NATS_ERR;
		goto cleanup;
	}
	msg = json_object_get(v, "message");
	subj = json_string_value(json_object_get(msg, "subject"));
	seq = json_integer_value(json_object_get(msg, "seq"));
	d64 = json_string_value(json_object_get(msg, "data"));
	h64 = json_string_value(json_object_get(msg, "hdrs"));
	if (subj == NULL || seq < 1)
		goto cleanup;
	if (d64 != NULL && (body = b64_decode(d64, strlen(d64), &blen)) == NULL)
		goto cleanup;
	if (h64 != NULL && (strlen(h64) > HDRS_MAX * 4 / 3 + 4 ||
	                    (hdrs = b64_decode(h64, strlen(h64), &hlen)) == NULL))
		goto cleanup;
	if ((s = natsMsg_Create(out, subj, NULL, (const char *)body, (int)blen)) != NATS_OK)
		goto cleanup;
	snprintf(sq, sizeof(sq), "%lld", (long long)seq);
	if ((hdrs != NULL && set_headers(*out, (const char *)hdrs, hlen) != RS_OK) ||
	    natsMsgHeader_Set(*out, "Nats-Sequence", sq) != NATS_OK) {
		natsMsg_Destroy(*out);
		*out = NULL;
		s = NATS_ERR;
	}
cleanup:
	free(body);
	free(hdrs);
	json_decref(v);
	return s;
}

natsStatus
rs_api_log_get(rs_api *app, natsMsg **m, const jsDirectGetMsgOptions *o)
{
	json_t *req;
	char *body;
	natsMsg *reply = NULL;
	natsStatus s;

	*m = NULL;
	if (!app->runs_leader_reads)
		return js_DirectGetMsg(m, app->nats.js, "RUNS", NULL, (jsDirectGetMsgOptions *)o);
	req = json_object();
	if (o->LastBySubject != NULL) {
		json_object_set_new(req, "last_by_subj", json_string(o->LastBySubject));
	} else {
		json_object_set_new(req, "seq", json_integer((json_int_t)o->Sequence));
		if (o->NextBySubject != NULL)
			json_object_set_new(req, "next_by_subj", json_string(o->NextBySubject));
	}
	body = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	if (body == NULL)
		abort();
	s = natsConnection_Request(&reply, app->nats.nc, "$JS.API.STREAM.MSG.GET.RUNS", body,
	                           (int)strlen(body), app->pub_timeout_ms);
	free(body);
	if (s != NATS_OK)
		return s;
	s = from_envelope(m, natsMsg_GetData(reply), (size_t)natsMsg_GetDataLength(reply));
	natsMsg_Destroy(reply);
	return s;
}

/* ---- a run's history: the one reader (SSE replay, views, the viewer) ---- */

/* Direct gets, next by subject after `after`, until there is none. */
static rs_status
history_by_gets(rs_api *app, const char *subj, uint64_t after, rs_api_log_each fn, void *arg)
{
	jsDirectGetMsgOptions o;
	uint64_t seq = after + 1;

	for (;;) {
		natsMsg *m = NULL;
		const char *sq = NULL;
		natsStatus s;
		int rc;

		jsDirectGetMsgOptions_Init(&o);
		o.Sequence = seq;
		o.NextBySubject = subj;
		s = rs_api_log_get(app, &m, &o);
		if (s == NATS_NOT_FOUND)
			return RS_OK;
		if (s != NATS_OK)
			return rs_nats_status(s, 0);
		if (natsMsgHeader_Get(m, "Nats-Sequence", &sq) != NATS_OK || sq == NULL) {
			natsMsg_Destroy(m);
			return RS_EIO;
		}
		seq = strtoull(sq, NULL, 10);
		rc = fn(arg, m, seq);
		natsMsg_Destroy(m);
		if (rc != 0)
			return rc > 0 ? RS_OK : RS_ERR;
		seq++;
	}
}

/* An ordered consumer on the literal subject from after + 1, until the
 * server says nothing is pending. */
static rs_status
history_by_consumer(rs_api *app, const char *subj, uint64_t after, rs_api_log_each fn,
                    void *arg)
{
	jsSubOptions so;
	natsSubscription *sub = NULL;
	jsErrCode jerr = 0;
	natsStatus s;
	rs_status st = RS_OK;

	jsSubOptions_Init(&so);
	so.Stream = "RUNS";          /* skip the stream-by-subject lookup */
	so.Ordered = true;
	if (after > 0) {
		so.Config.DeliverPolicy = js_DeliverByStartSequence;
		so.Config.OptStartSeq = after + 1;
	}
	if ((s = js_SubscribeSync(&sub, app->nats.js, subj, NULL, &so, &jerr)) != NATS_OK)
		return rs_nats_status(s, jerr);
	for (;;) {
		natsMsg *m = NULL;
		jsMsgMetaData *md = NULL;
		uint64_t sseq, pending;
		int rc;

		if ((s = natsSubscription_NextMsg(&m, sub, 5000)) != NATS_OK) {
			st = rs_nats_status(s, 0);
			break;
		}
		if (natsMsg_GetMetaData(&md, m) != NATS_OK) {
			natsMsg_Destroy(m);
			st = RS_EIO;
			break;
		}
		sseq = md->Sequence.Stream;
		pending = md->NumPending;
		jsMsgMetaData_Destroy(md);
		rc = fn(arg, m, sseq);
		natsMsg_Destroy(m);
		if (rc != 0) {
			st = rc > 0 ? RS_OK : RS_ERR;
			break;
		}
		if (pending == 0)
			break;
	}
	natsSubscription_Unsubscribe(sub);
	natsSubscription_Destroy(sub);
	return st;
}

rs_status
rs_api_log_history(rs_api *app, const char *tenant, const char *run_id, uint64_t after,
                   int by_consumer, rs_api_log_each fn, void *arg)
{
	char subj[160];

	rs_event_subject(tenant, run_id, subj, sizeof(subj));
	return by_consumer ? history_by_consumer(app, subj, after, fn, arg)
	                   : history_by_gets(app, subj, after, fn, arg);
}
