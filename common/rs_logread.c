/*
 * rs_logread.c - single-message reads of a stream that must be current:
 * the leader's STREAM.MSG.GET on a cluster, DIRECT.GET on one node
 * (rs_logread.h says why).
 */
#include "rs_logread.h"
#include "rs_mem.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Bounds on what the leader's envelope may hold: RUNS messages are
 * bounded by the stream's max_msg_size (1 MB by default), headers are a
 * few short lines. */
#define ENVELOPE_MAX (4 * 1048576)
#define HDRS_MAX 8192
#define HDR_LINES_MAX 32

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
		rs_oom(0);
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
natsStatus
rs_logread_envelope(natsMsg **out, const char *data, size_t len)
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

rs_status
rs_logread_init(rs_logread *lr, natsConnection *nc, jsCtx *js, const char *stream,
                const char *mode, int64_t timeout_ms)
{
	jsStreamInfo *si = NULL;
	jsErrCode jerr = 0;
	natsStatus s;

	memset(lr, 0, sizeof(*lr));
	lr->nc = nc;
	lr->js = js;
	lr->timeout_ms = timeout_ms > 0 ? timeout_ms : 5000;
	if (strlen(stream) >= sizeof(lr->stream))
		return RS_EINVAL;
	snprintf(lr->stream, sizeof(lr->stream), "%s", stream);
	if (mode == NULL || mode[0] == '\0' || strcmp(mode, "auto") == 0) {
		s = js_GetStreamInfo(&si, js, stream, NULL, &jerr);
		if (s != NATS_OK)
			return s == NATS_NOT_FOUND ? RS_ENOTFOUND : s == NATS_TIMEOUT ? RS_ETIMEOUT : RS_EUNAVAIL;
		lr->leader = si->Config != NULL && si->Config->Replicas > 1;
		jsStreamInfo_Destroy(si);
	} else if (strcmp(mode, "direct") == 0) {
		lr->leader = 0;
	} else if (strcmp(mode, "leader") == 0) {
		lr->leader = 1;
	} else {
		return RS_EINVAL;
	}
	return RS_OK;
}

natsStatus
rs_logread_get(const rs_logread *lr, natsMsg **m, const jsDirectGetMsgOptions *o)
{
	json_t *req;
	char *body, subj[128];
	natsMsg *reply = NULL;
	natsStatus s;

	*m = NULL;
	if (!lr->leader)
		return js_DirectGetMsg(m, lr->js, lr->stream, NULL, (jsDirectGetMsgOptions *)o);
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
		rs_oom(0);
	snprintf(subj, sizeof(subj), "$JS.API.STREAM.MSG.GET.%s", lr->stream);
	s = natsConnection_Request(&reply, lr->nc, subj, body, (int)strlen(body), lr->timeout_ms);
	free(body);
	if (s != NATS_OK)
		return s;
	s = rs_logread_envelope(m, natsMsg_GetData(reply), (size_t)natsMsg_GetDataLength(reply));
	natsMsg_Destroy(reply);
	return s;
}
