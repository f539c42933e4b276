/*
 * appender.c - JetStream publishes for the engine, with our own acks.
 *
 * Every event append and every effect is published without waiting, so
 * that many runs have writes in flight at once (one round trip per event
 * would cap us at a few thousand events/s). Each publish carries a reply
 * subject <inbox>.<token>; JetStream answers there with its pub ack. One
 * subscription on <inbox>.* receives every answer on its delivery thread,
 * which carries it out (rs_orch_engine_puback) under the engine mutex.
 *
 * Why not js_PublishMsgAsync: nats.c keeps every pending message in a
 * string hash, and with a MaxWait it queues a synthetic "timeout" message
 * for every publish when its deadline passes, acked or not (nats.c 3.4.1
 * never unlinks acked ones): in a sustained load that is one more message
 * through the ack thread per event. Here the pubmap (token -> run) is the
 * only pending state, kept in send order, so expiring lost acks is a look
 * at its head (rs_orch_appender_expire).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orch.h"
#include "rs_log.h"
#include "rs_time.h"

typedef struct pub_ent {
	uint64_t token;
	orun *run;
	pub_kind kind;
	int64_t sent_ms;
	struct pub_ent *hnext;          /* hash chain */
	struct pub_ent *older, *newer;  /* send order */
} pub_ent;

#define PUB_BUCKETS 65536

struct pubmap {
	pub_ent *b[PUB_BUCKETS];
	pub_ent *oldest, *newest;
	pub_ent *free_list;
	uint64_t next_token;
	natsSubscription *sub;
	char prefix[96];                /* "<inbox>." */
	size_t prefix_len;
};

struct pubmap *
rs_orch_pubmap_new(void)
{
	return calloc(1, sizeof(struct pubmap));
}

void
rs_orch_pubmap_free(struct pubmap *m)
{
	pub_ent *e, *n;

	if (m == NULL)
		return;
	for (e = m->oldest; e != NULL; e = n) {
		n = e->newer;
		free(e);
	}
	for (e = m->free_list; e != NULL; e = n) {
		n = e->hnext;
		free(e);
	}
	natsSubscription_Destroy(m->sub);
	free(m);
}

static pub_ent *
pubmap_put(struct pubmap *m, orun *r, pub_kind kind)
{
	pub_ent *e = m->free_list;
	size_t h;

	if (e != NULL)
		m->free_list = e->hnext;
	else if ((e = malloc(sizeof(*e))) == NULL)
		return NULL;
	e->token = ++m->next_token;
	e->run = r;
	e->kind = kind;
	e->sent_ms = rs_mono_ms();
	h = e->token & (PUB_BUCKETS - 1);
	e->hnext = m->b[h];
	m->b[h] = e;
	e->newer = NULL;
	e->older = m->newest;
	if (m->newest != NULL)
		m->newest->newer = e;
	else
		m->oldest = e;
	m->newest = e;
	return e;
}

/* Unlink e (found in its chain at *pp) and recycle it. */
static void
pubmap_drop(struct pubmap *m, pub_ent **pp, pub_ent *e)
{
	*pp = e->hnext;
	if (e->older != NULL) e->older->newer = e->newer; else m->oldest = e->newer;
	if (e->newer != NULL) e->newer->older = e->older; else m->newest = e->older;
	e->hnext = m->free_list;
	m->free_list = e;
}

orun *
rs_orch_pubmap_take(struct pubmap *m, uint64_t token, pub_kind *kind)
{
	pub_ent **pp = &m->b[token & (PUB_BUCKETS - 1)], *e;
	orun *r;

	for (; *pp != NULL; pp = &(*pp)->hnext) {
		if ((*pp)->token != token)
			continue;
		e = *pp;
		r = e->run;
		*kind = e->kind;
		pubmap_drop(m, pp, e);
		return r;
	}
	return NULL;
}

/* "0" .. "18446744073709551615" after the prefix; 0 if not ours. */
static uint64_t
token_of(const struct pubmap *m, const char *subject)
{
	const char *p;
	uint64_t t = 0;

	if (subject == NULL || strncmp(subject, m->prefix, m->prefix_len) != 0)
		return 0;
	for (p = subject + m->prefix_len; *p >= '0' && *p <= '9'; p++)
		t = t * 10 + (uint64_t)(*p - '0');
	return *p == '\0' ? t : 0;
}

static void
on_reply(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
	orch *o = closure;
	puback pa;
	char err[160];

	memset(&pa, 0, sizeof(pa));
	pa.token = token_of(o->pubs, natsMsg_GetSubject(msg));
	if (natsMsg_IsNoResponders(msg)) {
		pa.err = NATS_NO_RESPONDERS;
	} else if (rs_js_parse_puback(natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg),
	                              &pa.seq, &pa.dup, &pa.jerr, err, sizeof(err)) != RS_OK) {
		pa.err = NATS_ERR;
		rs_debug("append refused: %s", err);
	}
	natsMsg_Destroy(msg);
	if (pa.token != 0)
		rs_orch_engine_puback(o, &pa);
}

rs_status
rs_orch_appender_start(orch *o)
{
	char inbox[95], subj[128];      /* _INBOX_<user, 64>.<nuid, 22> */
	natsStatus s;

	/* Under the connection's own inbox prefix: with NATS users, the
	 * orchestrator may subscribe to _INBOX_<user>.> only. */
	if (rs_nats_new_inbox(&o->nats, inbox, sizeof(inbox)) != RS_OK)
		return RS_ENOMEM;
	snprintf(o->pubs->prefix, sizeof(o->pubs->prefix), "%s.", inbox);
	o->pubs->prefix_len = strlen(o->pubs->prefix);
	snprintf(subj, sizeof(subj), "%s*", o->pubs->prefix);
	s = natsConnection_Subscribe(&o->pubs->sub, o->nats.nc, subj, on_reply, o);
	if (s == NATS_OK)
		/* Never drop an ack as a slow consumer: the publishes in flight
		 * are bounded by RS_ORCH_MAX_PENDING_PUBLISH anyway. */
		s = natsSubscription_SetPendingLimits(o->pubs->sub, -1, -1);
	if (s != NATS_OK) {
		rs_error("cannot subscribe to the pub-ack inbox: %s", natsStatus_GetText(s));
		return rs_nats_status(s, 0);
	}
	return RS_OK;
}

void
rs_orch_appender_expire(orch *o, int64_t older_than_ms)
{
	struct pubmap *m = o->pubs;
	int64_t limit = rs_mono_ms() - older_than_ms;
	puback pa;

	while (m->oldest != NULL && m->oldest->sent_ms < limit) {
		memset(&pa, 0, sizeof(pa));
		pa.token = m->oldest->token;
		pa.err = NATS_TIMEOUT;
		rs_orch_engine_puback_locked(o, &pa);
	}
}

rs_status
rs_orch_appender_send(orch *o, orun *r, pub_kind kind, const char *subj, const char *data, size_t len,
              const char *type, int cloudevent, const char *msg_id, int64_t expect)
{
	char reply[128], num[24];
	natsMsg *m = NULL;
	pub_ent *e;
	natsStatus s;

	/* Bounded memory and bounded time to ack everything in flight. */
	if (o->pending_pubs >= o->cfg.max_pending_pub)
		return RS_EUNAVAIL;
	if ((e = pubmap_put(o->pubs, r, kind)) == NULL)
		return RS_ENOMEM;
	snprintf(reply, sizeof(reply), "%s%llu", o->pubs->prefix, (unsigned long long)e->token);
	s = natsMsg_Create(&m, subj, reply, data, (int)len);
	if (s == NATS_OK && cloudevent)
		s = natsMsgHeader_Set(m, "Content-Type", "application/cloudevents+json");
	if (s == NATS_OK)
		s = natsMsgHeader_Set(m, "Runstream-Type", type);
	if (s == NATS_OK && msg_id != NULL)
		s = natsMsgHeader_Set(m, "Nats-Msg-Id", msg_id);
	/* An explicit "0" reads "no message on this subject yet". */
	if (s == NATS_OK && expect >= 0) {
		snprintf(num, sizeof(num), "%lld", (long long)expect);
		s = natsMsgHeader_Set(m, "Nats-Expected-Last-Subject-Sequence", num);
	}
	if (s == NATS_OK)
		s = natsConnection_PublishMsg(o->nats.nc, m);
	natsMsg_Destroy(m);
	if (s != NATS_OK) {
		pub_kind k;
		rs_orch_pubmap_take(o->pubs, e->token, &k);
		rs_log(RS_LOG_WARN, r->run_id, NULL, "publish failed: %s", natsStatus_GetText(s));
		return rs_nats_status(s, 0);
	}
	o->pending_pubs++;
	return RS_OK;
}
