/*
 * appender.c - asynchronous JetStream publishes for the engine.
 *
 * Every event append and every effect goes out with js_PublishMsgAsync so
 * that many runs have writes in flight at once (one round trip per event
 * would cap us at a few thousand events/s). nats.c calls appender_on_ack
 * on its delivery thread for each answer; the engine (engine_puback, on
 * that same thread) finds out who sent the message in the pubmap (message
 * pointer -> run). The message is destroyed after that lookup, so a
 * pointer cannot be reused while it is still a key.
 */
#include <stdlib.h>
#include <string.h>

#include "orch.h"
#include "rs_log.h"

typedef struct pub_ent {
	natsMsg *msg;
	orun *run;
	pub_kind kind;
	struct pub_ent *next;
} pub_ent;

#define PUB_BUCKETS 65536

struct pubmap {
	pub_ent *b[PUB_BUCKETS];
	pub_ent *free_list;
};

static size_t
hash_ptr(const void *p)
{
	uintptr_t x = (uintptr_t)p;

	x ^= x >> 17;
	x *= 0xed5ad4bbu;
	x ^= x >> 11;
	return x & (PUB_BUCKETS - 1);
}

struct pubmap *
pubmap_new(void)
{
	return calloc(1, sizeof(struct pubmap));
}

void
pubmap_free(struct pubmap *m)
{
	pub_ent *e, *n;

	if (m == NULL)
		return;
	for (int i = 0; i < PUB_BUCKETS; i++)
		for (e = m->b[i]; e != NULL; e = n) {
			n = e->next;
			free(e);
		}
	for (e = m->free_list; e != NULL; e = n) {
		n = e->next;
		free(e);
	}
	free(m);
}

static int
pubmap_put(struct pubmap *m, natsMsg *msg, orun *r, pub_kind kind)
{
	pub_ent *e = m->free_list;
	size_t h = hash_ptr(msg);

	if (e != NULL)
		m->free_list = e->next;
	else if ((e = malloc(sizeof(*e))) == NULL)
		return -1;
	e->msg = msg;
	e->run = r;
	e->kind = kind;
	e->next = m->b[h];
	m->b[h] = e;
	return 0;
}

orun *
pubmap_take(struct pubmap *m, natsMsg *msg, pub_kind *kind)
{
	pub_ent **pp = &m->b[hash_ptr(msg)], *e;
	orun *r;

	for (; *pp != NULL; pp = &(*pp)->next) {
		if ((*pp)->msg != msg)
			continue;
		e = *pp;
		*pp = e->next;
		r = e->run;
		*kind = e->kind;
		e->next = m->free_list;
		m->free_list = e;
		return r;
	}
	return NULL;
}

void
appender_on_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
	orch *o = closure;
	puback it;

	memset(&it, 0, sizeof(it));
	it.msg = msg;
	if (pa != NULL) {
		it.seq = pa->Sequence;
		it.dup = pa->Duplicate ? 1 : 0;
	} else if (pae != NULL) {
		it.err = pae->Err != NATS_OK ? pae->Err : NATS_ERR;
		it.jerr = pae->ErrCode;
	} else {
		it.err = NATS_ERR;
	}
	engine_puback(o, &it);
}

rs_status
appender_send(orch *o, orun *r, pub_kind kind, natsMsg *msg, const char *msg_id, int64_t expect)
{
	jsPubOptions po;
	natsMsg *key = msg;
	natsStatus s;

	jsPubOptions_Init(&po);
	po.MsgId = msg_id;
	po.MaxWait = 10000;   /* no answer by then: reported as a timeout */
	/* nats.c treats ExpectLastSubjectSeq 0 as unset; the server reads an
	 * explicit "0" as "no message on this subject yet". */
	if (expect > 0)
		po.ExpectLastSubjectSeq = (uint64_t)expect;
	else if (expect == 0)
		natsMsgHeader_Set(msg, "Nats-Expected-Last-Subject-Sequence", "0");
	/* nats.c stalls a publish at MaxPending until acks drain; those acks
	 * wait for the engine mutex we hold. Refuse well before (timer
	 * forwarding has its own jsCtx and its own count). */
	if (o->pending_pubs >= o->cfg.max_pending_pub - 64) {
		natsMsg_Destroy(msg);
		return RS_EUNAVAIL;
	}
	if (pubmap_put(o->pubs, msg, r, kind) != 0) {
		natsMsg_Destroy(msg);
		return RS_ENOMEM;
	}
	s = js_PublishMsgAsync(o->nats.js, &msg, &po);
	if (s != NATS_OK) {
		pub_kind k;

		pubmap_take(o->pubs, key, &k);
		natsMsg_Destroy(msg);
		rs_log(RS_LOG_WARN, r->run_id, NULL, "async publish failed: %s", natsStatus_GetText(s));
		return rs_nats_status(s, 0);
	}
	o->pending_pubs++;
	return RS_OK;
}
