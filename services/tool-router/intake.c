/*
 * intake.c - TOOLCALLS reaches the router the moment it is stored.
 *
 * The shared durable pull consumer `routers` (streams/TOOLCALLS.routers.json)
 * is read through the one consumer loop of the tree, common/rs_consume.c: a
 * pull request always outstanding (no_wait with a long expiry: nats-server
 * 2.9.10 answers it as a one-shot, the first burst at once), the next one
 * sent the moment it ends, an idle heartbeat so that a request lost to a
 * reconnect or a leader change ends after two missed beats and is replaced
 * (docs/architecture.md, "Consuming JetStream"). Every message goes to
 * rs_router_calls_take on the loop's thread, which decodes it and posts it
 * to the service thread; calls.c settles it later by its reply subject.
 *
 * The messages are acked by their `$JS.ACK` reply subject
 * (rs_router_intake_settle): calls.c keeps only the reply string of a
 * message it took, not the natsMsg, until its KV create is acked.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "router.h"
#include "rs_consume.h"
#include "rs_log.h"

/* Most messages per pull request: a burst of calls is taken in one. */
#define RS_INTAKE_BATCH 256

struct rs_router_intake {
	rs_consume *cons;
};

/* The loop's thread: hand every call to calls.c (which settles it later);
 * stopping, leave them unsettled: another router gets them after AckWait. */
static void
on_batch(void *arg, natsMsg **msgs, int n, rs_consume_out *out)
{
	rs_router *r = arg;

	for (int i = 0; i < n; i++) {
		if (atomic_load(&r->stopping) || natsMsg_GetReply(msgs[i]) == NULL) {
			out[i].disp = RS_CONSUME_DROP;
			continue;
		}
		out[i].disp = RS_CONSUME_TAKEN;
		rs_router_calls_take(r, msgs[i]);   /* takes msgs[i] */
	}
}

rs_status
rs_router_intake_start(rs_router *r)
{
	struct rs_router_intake *in = calloc(1, sizeof(*in));
	rs_consume_cfg cfg;
	int64_t hb;

	if (in == NULL)
		abort();   /* out of memory: the tree's policy */
	r->intake = in;
	/* The heartbeat the intake has always used: min(5 s, expires/4). */
	hb = r->pull_expires_ms / 4 < 5000 ? r->pull_expires_ms / 4 : 5000;
	memset(&cfg, 0, sizeof(cfg));
	cfg.name = "router-calls";
	cfg.stream = "TOOLCALLS";
	cfg.durable = "routers";
	cfg.filter = "toolcalls.>";
	cfg.batch = RS_INTAKE_BATCH;
	cfg.expires_ms = r->pull_expires_ms;
	cfg.heartbeat_ms = hb > 0 ? hb : 1;
	cfg.on_batch = on_batch;
	cfg.arg = r;
	return rs_consume_start(&in->cons, r->nats.nc, r->nats.js, &cfg);
}

void
rs_router_intake_stop(rs_router *r)
{
	struct rs_router_intake *in = r->intake;

	if (in == NULL || in->cons == NULL)
		return;
	/* The batch in hand finishes (calls.c takes or drops each message);
	 * what the server sends after this comes back after AckWait. */
	rs_consume_join(in->cons);
}

void
rs_router_intake_free(rs_router *r)
{
	struct rs_router_intake *in = r->intake;

	if (in == NULL)
		return;
	rs_consume_free(in->cons);
	free(in);
	r->intake = NULL;
}

void
rs_router_intake_settle(rs_router *r, const char *reply, rs_router_settle how)
{
	static const char *const body[] = {
		[RS_SETTLE_ACK] = "+ACK",
		[RS_SETTLE_NAK] = "-NAK {\"delay\":500000000}",
		[RS_SETTLE_TERM] = "+TERM",
	};

	if (reply == NULL || reply[0] == '\0')
		return;
	if (natsConnection_PublishString(r->nats.nc, reply, body[how]) != NATS_OK)
		rs_debug("router: cannot settle TOOLCALLS message (%s): redelivered after AckWait",
		         body[how]);
}

/* Token of a JetStream ack subject:
 * $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>
 * or, with a domain and account hash, two more tokens in front and one at
 * the end (12 tokens). idx counts in the 9-token form. */
static uint64_t
ack_token(const char *reply, int idx)
{
	const char *tok[16];
	int n = 0;
	const char *p = reply;

	if (p == NULL)
		return 0;
	tok[n++] = p;
	for (; *p != '\0' && n < 16; p++)
		if (*p == '.')
			tok[n++] = p + 1;
	if (n == 9)
		return strtoull(tok[idx], NULL, 10);
	if (n >= 11)
		return strtoull(tok[idx + 2], NULL, 10);
	return 0;
}

uint64_t
rs_router_intake_stream_seq(const char *reply)
{
	return ack_token(reply, 5);
}

int64_t
rs_router_intake_stored_ns(const char *reply)
{
	return (int64_t)ack_token(reply, 7);
}
