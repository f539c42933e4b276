/* rs_nats.c - connection, status mapping, publish helpers (see rs_nats.h). */
#include "rs_nats.h"
#include "rs_config.h"
#include "rs_log.h"
#include "rs_time.h"

#include <stdarg.h>
#include <jansson.h>
#include <stdio.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void
on_disconnected(natsConnection *nc, void *closure)
{
	/* A drain/close we asked for is not worth a warning. */
	if (!natsConnection_IsClosed(nc) && !natsConnection_IsDraining(nc))
		rs_warn("nats: disconnected");
}

static void
on_reconnected(natsConnection *nc, void *closure)
{
	char url[256] = "";

	natsConnection_GetConnectedUrl(nc, url, sizeof(url));
	rs_info("nats: reconnected to %s", url);
}

static void
on_async_error(natsConnection *nc, natsSubscription *sub, natsStatus err, void *closure)
{
	rs_warn("nats: async error: %s", natsStatus_GetText(err));
}

rs_status
rs_nats_split_urls(const char *list, char *buf, size_t cap, const char **urls, int max,
                   int *count)
{
	size_t used = 0;
	int k = 0;
	const char *p = list, *e, *a, *b;

	*count = 0;
	if (list == NULL)
		return RS_EINVAL;
	for (;;) {
		e = strchr(p, ',');
		if (e == NULL)
			e = p + strlen(p);
		for (a = p; a < e && (*a == ' ' || *a == '\t'); a++)
			;
		for (b = e; b > a && (b[-1] == ' ' || b[-1] == '\t'); b--)
			;
		if (b == a || k == max || used + (size_t)(b - a) + 1 > cap)
			return RS_EINVAL;
		memcpy(buf + used, a, (size_t)(b - a));
		buf[used + (size_t)(b - a)] = '\0';
		urls[k++] = buf + used;
		used += (size_t)(b - a) + 1;
		if (*e == '\0')
			break;
		p = e + 1;
	}
	*count = k;
	return RS_OK;
}

rs_status
rs_nats_new_inbox(const rs_nats *n, char *buf, size_t cap)
{
	natsInbox *inbox = NULL;
	const char *nuid;
	int w;

	if (natsInbox_Create(&inbox) != NATS_OK)
		return RS_ENOMEM;
	/* natsInbox_Create gives "_INBOX.<nuid>": keep the unique part. */
	nuid = strchr((const char *)inbox, '.');
	w = snprintf(buf, cap, "%s.%s", n->inbox_prefix[0] ? n->inbox_prefix : "_INBOX",
	             nuid != NULL ? nuid + 1 : (const char *)inbox);
	natsInbox_Destroy(inbox);
	return (w < 0 || (size_t)w >= cap) ? RS_EINVAL : RS_OK;
}

/* A user name must be usable as a subject token (its inbox prefix) and in
 * the server's configuration file without quoting surprises. */
static int
user_ok(const char *u)
{
	size_t i;

	for (i = 0; u[i] != '\0'; i++)
		if (!((u[i] >= 'a' && u[i] <= 'z') || (u[i] >= 'A' && u[i] <= 'Z') ||
		      (u[i] >= '0' && u[i] <= '9') || u[i] == '_' || u[i] == '-'))
			return 0;
	return i > 0 && i <= RS_NATS_MAX_USER;
}

rs_status
rs_nats_set_servers(natsOptions *o, const char *list)
{
	const char *servers[RS_NATS_MAX_SERVERS];
	char buf[4096];
	int n = 0;

	if (rs_nats_split_urls(list, buf, sizeof(buf), servers, RS_NATS_MAX_SERVERS, &n) != RS_OK)
		return RS_EINVAL;
	/* nats.c copies the URLs: buf may go. */
	return natsOptions_SetServers(o, servers, n) == NATS_OK ? RS_OK : RS_EINVAL;
}

rs_status
rs_nats_connect(rs_nats *n, const char *urls, const char *name, jsOptions *jsopts,
                int64_t connect_wait_ms)
{
	natsOptions *opts = NULL;
	natsStatus s;
	rs_status st = RS_EUNAVAIL;
	int64_t deadline = rs_mono_ms() + connect_wait_ms;
	const char *servers[RS_NATS_MAX_SERVERS];
	char urlbuf[4096];
	int nservers = 0;
	const char *user = rs_env_str("RS_NATS_USER", NULL);
	const char *pass = rs_env_str("RS_NATS_PASSWORD", NULL);

	memset(n, 0, sizeof(*n));
	if (!rs_natsgc_active())
		rs_warn("nats: natsGC_collect is not ours: messages are freed by nats.c's "
		        "collector thread (slower, see common/rs_natsgc.c)");
	if (rs_nats_split_urls(urls, urlbuf, sizeof(urlbuf), servers, RS_NATS_MAX_SERVERS,
	                       &nservers) != RS_OK) {
		rs_error("nats: RS_NATS_URL \"%s\" is not a comma-separated list of at most %d "
		         "server URLs", urls ? urls : "", RS_NATS_MAX_SERVERS);
		return RS_EINVAL;
	}
	if ((user == NULL) != (pass == NULL) || (user != NULL && !user_ok(user)) ||
	    (pass != NULL && strlen(pass) > 256)) {
		rs_error("nats: set both RS_NATS_USER ([A-Za-z0-9_-]{1,%d}) and RS_NATS_PASSWORD "
		         "(at most 256 bytes), or neither", RS_NATS_MAX_USER);
		return RS_EINVAL;
	}
	if (natsOptions_Create(&opts) != NATS_OK)
		return RS_ENOMEM;
	/* SetServers, not SetURL: nats.c 3.4.1's SetURL takes one URL and a
	 * list never connects. With several, the order is kept (randomising
	 * is left on: instances of a service spread over the nodes). */
	natsOptions_SetServers(opts, servers, nservers);
	if (user != NULL) {
		natsOptions_SetUserInfo(opts, user, pass);
		snprintf(n->inbox_prefix, sizeof(n->inbox_prefix), "_INBOX_%s", user);
		natsOptions_SetCustomInboxPrefix(opts, n->inbox_prefix);
	}
	natsOptions_SetName(opts, name);
	natsOptions_SetMaxReconnect(opts, -1);
	natsOptions_SetReconnectWait(opts, 250);
	natsOptions_SetReconnectBufSize(opts, 64 * 1024 * 1024);
	natsOptions_SetPingInterval(opts, 10000);
	natsOptions_SetMaxPendingMsgs(opts, 1000000);
	/* RS_NATS_SEND_ASAP=1: write each publish at once rather than after
	 * the flusher's ~1 ms (docs/operations.md, measured there). */
	if (getenv("RS_NATS_SEND_ASAP") != NULL && strcmp(getenv("RS_NATS_SEND_ASAP"), "1") == 0)
		natsOptions_SetSendAsap(opts, true);
	natsOptions_SetDisconnectedCB(opts, on_disconnected, NULL);
	natsOptions_SetReconnectedCB(opts, on_reconnected, NULL);
	natsOptions_SetErrorHandler(opts, on_async_error, NULL);
	for (;;) {
		s = natsConnection_Connect(&n->nc, opts);
		/* Wrong credentials do not get better by retrying. */
		if (s == NATS_OK || s == NATS_CONNECTION_AUTH_FAILED || rs_mono_ms() >= deadline)
			break;
		usleep(100 * 1000);
	}
	if (s != NATS_OK) {
		rs_error("nats: cannot connect to %s%s%s: %s", urls, user ? " as user " : "",
		         user ? user : "", natsStatus_GetText(s));
		goto cleanup;
	}
	if (natsConnection_JetStream(&n->js, n->nc, jsopts) != NATS_OK) {
		rs_error("nats: cannot create JetStream context");
		st = RS_ERR;
		goto cleanup;
	}
	st = RS_OK;
cleanup:
	natsOptions_Destroy(opts);
	if (st != RS_OK) {
		natsConnection_Destroy(n->nc);
		n->nc = NULL;
	}
	return st;
}

void
rs_nats_close(rs_nats *n, int64_t timeout_ms)
{
	if (n->nc != NULL && natsConnection_Status(n->nc) == NATS_CONN_STATUS_CONNECTED) {
		if (natsConnection_DrainTimeout(n->nc, timeout_ms) == NATS_OK) {
			int64_t deadline = rs_mono_ms() + timeout_ms;
			while (!natsConnection_IsClosed(n->nc) && rs_mono_ms() < deadline)
				usleep(10 * 1000);
		}
	}
	jsCtx_Destroy(n->js);
	natsConnection_Destroy(n->nc);
	n->js = NULL;
	n->nc = NULL;
}

int
rs_nats_connected(const rs_nats *n)
{
	return n->nc != NULL && natsConnection_Status(n->nc) == NATS_CONN_STATUS_CONNECTED;
}

rs_status
rs_nats_status(natsStatus s, jsErrCode jerr)
{
	if (s == NATS_OK)
		return RS_OK;
	if (jerr == JSStreamWrongLastSequenceErr)
		return RS_ECONFLICT;
	if (s == NATS_NOT_FOUND || jerr == JSStreamNotFoundErr ||
	    jerr == JSConsumerNotFoundErr || jerr == JSNoMessageFoundErr)
		return RS_ENOTFOUND;
	if (s == NATS_TIMEOUT)
		return RS_ETIMEOUT;
	if (s == NATS_CONNECTION_CLOSED || s == NATS_NO_SERVER || s == NATS_CONNECTION_DISCONNECTED ||
	    s == NATS_NO_RESPONDERS || s == NATS_STALE_CONNECTION)
		return RS_EUNAVAIL;
	if (s == NATS_NO_MEMORY)
		return RS_ENOMEM;
	if (s == NATS_INVALID_ARG)
		return RS_EINVAL;
	return RS_EIO;
}

/* p past optional blanks and then the literal lit, or NULL. */
static const char *
puback_lit(const char *p, const char *end, const char *lit)
{
	size_t n = strlen(lit);

	while (p < end && *p == ' ')
		p++;
	if ((size_t)(end - p) < n || memcmp(p, lit, n) != 0)
		return NULL;
	return p + n;
}

/*
 * The answer nats-server writes for a stored message, from its own
 * template (server/stream.go, mset.pubAck): {"stream":"<name>", "seq":<n>},
 * with ,"duplicate": true before the brace when it was one. Read without a
 * JSON parser, since the orchestrator reads one per event; 0 if data has
 * any other shape (an error, a domain), which then goes to jansson.
 */
int
rs_js_puback_fast(const char *p, size_t len, uint64_t *seq, int *dup)
{
	const char *end = p + len;
	const char *q;
	uint64_t n = 0;
	int digits = 0, d = 0;

	if ((p = puback_lit(p, end, "{\"stream\":\"")) == NULL)
		return 0;
	/* Stream names are ASCII: anything else (an escape, a control
	 * character, a byte a JSON parser would reject as bad UTF-8) is left
	 * to jansson. */
	for (; p < end && *p != '"'; p++)
		if (*p == '\\' || (unsigned char)*p < 0x20 || (unsigned char)*p >= 0x80)
			return 0;
	if (p == end || (p = puback_lit(p + 1, end, ",")) == NULL ||
	    (p = puback_lit(p, end, "\"seq\":")) == NULL)
		return 0;
	/* JSON's integer: no leading zero; and within int64, like the
	 * parser this stands in for (19 digits cannot overflow uint64_t). */
	if (p < end && *p == '0')
		return 0;
	for (; p < end && *p >= '0' && *p <= '9' && digits < 19; p++, digits++)
		n = n * 10 + (uint64_t)(*p - '0');
	if (digits == 0 || n > (uint64_t)INT64_MAX)
		return 0;
	if ((q = puback_lit(p, end, ",")) != NULL) {
		if ((q = puback_lit(q, end, "\"duplicate\":")) == NULL ||
		    (p = puback_lit(q, end, "true")) == NULL)
			return 0;
		d = 1;
	}
	if ((p = puback_lit(p, end, "}")) == NULL || p != end)
		return 0;
	*seq = n;
	*dup = d;
	return 1;
}

rs_status
rs_js_parse_puback(const char *data, size_t len, uint64_t *seq, int *dup, jsErrCode *jerr,
                   char *err, size_t cap)
{
	json_t *v, *e, *s;
	json_error_t je;
	rs_status st = RS_EINVAL;

	*seq = 0;
	*dup = 0;
	*jerr = 0;
	if (data != NULL && rs_js_puback_fast(data, len, seq, dup)) {
		if (cap > 0)
			err[0] = '\0';
		return RS_OK;
	}
	snprintf(err, cap, "unreadable pub ack");
	if (data == NULL || (v = json_loadb(data, len, 0, &je)) == NULL)
		return RS_EINVAL;
	if ((e = json_object_get(v, "error")) != NULL) {
		*jerr = (jsErrCode)json_integer_value(json_object_get(e, "err_code"));
		snprintf(err, cap, "%s (%d)", json_string_value(json_object_get(e, "description"))
		         ? json_string_value(json_object_get(e, "description")) : "error", (int)*jerr);
		st = RS_EIO;
		goto cleanup;
	}
	s = json_object_get(v, "seq");
	if (!json_is_integer(s) || json_integer_value(s) <= 0 ||
	    !json_is_string(json_object_get(v, "stream")))
		goto cleanup;
	*seq = (uint64_t)json_integer_value(s);
	*dup = json_is_true(json_object_get(v, "duplicate"));
	err[0] = '\0';
	st = RS_OK;
cleanup:
	json_decref(v);
	return st;
}

rs_status
rs_nats_msg(natsMsg **out, const char *subject, const char *data, int len, ...)
{
	natsMsg *m = NULL;
	va_list ap;
	const char *k, *v;

	if (natsMsg_Create(&m, subject, NULL, data, len) != NATS_OK)
		return RS_ENOMEM;
	va_start(ap, len);
	while ((k = va_arg(ap, const char *)) != NULL) {
		v = va_arg(ap, const char *);
		if (v != NULL && natsMsgHeader_Set(m, k, v) != NATS_OK) {
			va_end(ap);
			natsMsg_Destroy(m);
			return RS_ENOMEM;
		}
	}
	va_end(ap);
	*out = m;
	return RS_OK;
}

rs_status
rs_js_publish(jsCtx *js, natsMsg *msg, const char *msg_id, int64_t expect_subj_seq,
              int64_t timeout_ms, uint64_t *seq, int *dup)
{
	jsPubOptions po;
	jsPubAck *pa = NULL;
	jsErrCode jerr = 0;
	natsStatus s;

	jsPubOptions_Init(&po);
	po.MsgId = msg_id;
	po.MaxWait = timeout_ms;
	/* nats.c treats 0 as "unset", but the server honours an explicit 0
	 * header as "no message on this subject yet": set it ourselves. */
	if (expect_subj_seq > 0)
		po.ExpectLastSubjectSeq = (uint64_t)expect_subj_seq;
	else if (expect_subj_seq == 0)
		natsMsgHeader_Set(msg, "Nats-Expected-Last-Subject-Sequence", "0");
	s = js_PublishMsg(&pa, js, msg, &po, &jerr);
	if (s != NATS_OK) {
		jsPubAck_Destroy(pa);
		return rs_nats_status(s, jerr);
	}
	if (seq != NULL)
		*seq = pa->Sequence;
	if (dup != NULL)
		*dup = pa->Duplicate ? 1 : 0;
	jsPubAck_Destroy(pa);
	return RS_OK;
}

rs_status
rs_dlq_publish(jsCtx *js, const char *source, const char *orig_subject, uint64_t orig_seq,
               const char *data, int len, const char *reason)
{
	char subj[128], seqs[32];
	natsMsg *m = NULL;
	rs_status st;

	snprintf(subj, sizeof(subj), "dlq.%s", source);
	snprintf(seqs, sizeof(seqs), "%llu", (unsigned long long)orig_seq);
	st = rs_nats_msg(&m, subj, data, len, "Runstream-Dlq-Reason", reason,
	                 "Runstream-Dlq-Subject", orig_subject, "Runstream-Dlq-Seq", seqs,
	                 "Runstream-Dlq-Source", source, NULL);
	if (st != RS_OK)
		return st;
	st = rs_js_publish(js, m, NULL, -1, 5000, NULL, NULL);
	natsMsg_Destroy(m);
	if (st != RS_OK)
		rs_error("dlq: cannot dead-letter %s seq %s: %s", orig_subject, seqs, rs_status_str(st));
	else
		rs_warn("dlq: %s seq %s dead-lettered to %s: %s", orig_subject, seqs, subj, reason);
	return st;
}

rs_status
rs_js_follow(natsSubscription **sub, jsCtx *js, const char *stream, const char *filter,
             int64_t heartbeat_ms, natsMsgHandler cb, void *closure, uint64_t *floor)
{
	jsStreamInfo *si = NULL;
	jsSubOptions so;
	jsErrCode jerr = 0;
	natsStatus s;

	*sub = NULL;
	/* Read before the consumer exists: everything after it is new. */
	s = js_GetStreamInfo(&si, js, stream, NULL, &jerr);
	if (s != NATS_OK)
		return rs_nats_status(s, jerr);
	*floor = si->State.LastSeq;
	jsStreamInfo_Destroy(si);
	jsSubOptions_Init(&so);
	so.Stream = stream;
	so.Ordered = true;
	so.Config.DeliverPolicy = js_DeliverLast;     /* see rs_nats.h */
	so.Config.Heartbeat = (heartbeat_ms > 0 ? heartbeat_ms : RS_JS_FOLLOW_HEARTBEAT_MS) * 1000000;
	if (cb != NULL)
		s = js_Subscribe(sub, js, filter, cb, closure, NULL, &so, &jerr);
	else
		s = js_SubscribeSync(sub, js, filter, NULL, &so, &jerr);
	if (s != NATS_OK) {
		*sub = NULL;
		return rs_nats_status(s, jerr);
	}
	return RS_OK;
}

int
rs_js_follow_fresh(natsMsg *m, uint64_t floor)
{
	jsMsgMetaData *md = NULL;
	int fresh;

	if (natsMsg_GetMetaData(&md, m) != NATS_OK)
		return 0;
	fresh = md->Sequence.Stream > floor;
	jsMsgMetaData_Destroy(md);
	return fresh;
}

void
rs_js_follow_stop(natsSubscription **sub)
{
	if (*sub == NULL)
		return;
	natsSubscription_Destroy(*sub);   /* unsubscribes; never deletes */
	*sub = NULL;
}
