/*
 * intake.c - TOOLCALLS reaches the router the moment it is stored.
 *
 * The shared durable pull consumer `routers` (streams/TOOLCALLS.routers.json)
 * is read without a fetch loop: this file keeps a pull request outstanding
 * on the server at all times, renewed before it expires or runs out of
 * messages, and receives the messages on an asynchronous subscription to
 * the requests' reply subjects. A stored message therefore goes out to a
 * waiting request at once, warm or after hours of idleness.
 *
 * Why not common/rs_consume.c (nats.c's FetchRequest, no_wait + expires):
 * not because a fetch waits for its batch to fill (measured in session 5
 * with the intake on rs_consume: a request of 256 delivered a lone call in
 * ~1.6 ms, the server ends such a request after the first burst), but
 * because nats.c allows one fetch per subscription, so after every burst
 * no request is outstanding for a round trip while the next is sent. Under
 * load that cost the router 7-21 % of its C=64 round trip p50 (bench/router,
 * 6 of 6 pairs; docs/benchmarks.md, "Router"). Here up to three requests
 * overlap, so one is waiting while another ends.
 *
 * Each request has its own reply subject (<inbox>.<n>) so its status
 * messages (100 idle heartbeat, 404/408 over, 409 refused) name it; the
 * messages themselves carry their stream subject and are counted against
 * the oldest live request. A request the server stopped answering (no message
 * and no heartbeat for 2 heartbeat intervals: a reconnect, a restarted
 * server) is forgotten and replaced. At most RS_INTAKE_MAX_REQS are
 * outstanding per router; many routers share `max_waiting` (512).
 *
 * The messages are acknowledged by hand (rs_router_intake_settle): nats.c's
 * natsMsg_Ack only works on messages of its own JetStream subscriptions.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "router.h"
#include "rs_mem.h"
#include "rs_log.h"
#include "rs_time.h"

/* A request asks for RS_INTAKE_BATCH messages and lives
 * RS_ROUTER_PULL_EXPIRES_MS (r->pull_expires_ms, 30 s); the server sends an
 * idle heartbeat every min(5 s, expires/4); a new request goes out when
 * the live ones have less than half their batch or a third of their life
 * left. */
#define RS_INTAKE_BATCH 256
#define RS_INTAKE_MAX_REQS 3
#define RS_INTAKE_NEXT_SUBJ "$JS.API.CONSUMER.MSG.NEXT.TOOLCALLS.routers"

typedef struct {
	uint64_t id;
	int64_t expires;     /* mono ms */
	int64_t seen;        /* mono ms: sent, last message or heartbeat */
	int remaining;
	int live;
} intake_req;

struct rs_router_intake {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	pthread_t keeper;
	int keeper_started;
	natsSubscription *sub;
	char inbox[128];
	uint64_t next_id;
	intake_req reqs[RS_INTAKE_MAX_REQS];
	int64_t refused_until;  /* mono ms: a 409 backs off */
	int64_t expires_ms, heartbeat_ms, renew_ms;
};

/* Called with mu held. */
static intake_req *
find_req(struct rs_router_intake *in, uint64_t id)
{
	for (int i = 0; i < RS_INTAKE_MAX_REQS; i++)
		if (in->reqs[i].live && in->reqs[i].id == id)
			return &in->reqs[i];
	return NULL;
}

/* Called with mu held: 1 if a live request will still take messages for a
 * while (so no new one is needed now). */
static int
covered(struct rs_router_intake *in, int64_t now)
{
	for (int i = 0; i < RS_INTAKE_MAX_REQS; i++) {
		intake_req *q = &in->reqs[i];
		if (q->live && q->remaining > RS_INTAKE_BATCH / 2 && q->expires - now > in->renew_ms)
			return 1;
	}
	return 0;
}

static void
on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *closure)
{
	rs_router *r = closure;
	struct rs_router_intake *in = r->intake;
	const char *subj = natsMsg_GetSubject(m), *dot = strrchr(subj, '.');
	const char *status = NULL;
	uint64_t id = dot != NULL ? strtoull(dot + 1, NULL, 10) : 0;
	intake_req *q;
	int64_t now = rs_mono_ms();
	int user;

	(void)nc;
	(void)sub;
	user = !(natsMsg_GetDataLength(m) == 0 &&
	         natsMsgHeader_Get(m, "Status", &status) == NATS_OK && status != NULL);
	pthread_mutex_lock(&in->mu);
	if (user) {
		/* A message carries its stream subject, not the request's reply
		 * subject: count it against the oldest live request (the server
		 * serves a consumer's waiting requests in order). */
		q = NULL;
		for (int i = 0; i < RS_INTAKE_MAX_REQS; i++)
			if (in->reqs[i].live && (q == NULL || in->reqs[i].id < q->id))
				q = &in->reqs[i];
		if (q != NULL) {
			q->seen = now;
			if (--q->remaining <= 0)
				q->live = 0;
		}
	} else if ((q = find_req(in, id)) != NULL) {
		q->seen = now;
		if (strncmp(status, "100", 3) != 0) {
			/* 404/408: the request is over; 409: refused (max_waiting,
			 * a consumer that changed). */
			rs_debug("router: TOOLCALLS pull request %llu over: %s (%d left)",
			         (unsigned long long)id, status, q->remaining);
			q->live = 0;
			if (strncmp(status, "409", 3) == 0) {
				const char *desc = NULL;
				natsMsgHeader_Get(m, "Description", &desc);
				rs_warn("router: TOOLCALLS pull request refused: %s", desc ? desc : "409");
				in->refused_until = now + 1000;
			}
		}
	}
	if (!covered(in, now))
		pthread_cond_signal(&in->cv);
	pthread_mutex_unlock(&in->mu);
	/* Stopping: left unacked, the message goes to another router after
	 * AckWait. */
	if (user && natsMsg_GetReply(m) != NULL && !atomic_load(&r->stopping))
		rs_router_calls_take(r, m);   /* takes m */
	else
		natsMsg_Destroy(m);
}

/* Called with mu held. */
static void
send_request(rs_router *r, struct rs_router_intake *in, int64_t now)
{
	char subj[160], body[160];
	intake_req *q = NULL;
	natsStatus s;

	for (int i = 0; i < RS_INTAKE_MAX_REQS && q == NULL; i++)
		if (!in->reqs[i].live)
			q = &in->reqs[i];
	if (q == NULL) {
		/* All slots taken by requests that are low: retire the oldest. */
		q = &in->reqs[0];
		for (int i = 1; i < RS_INTAKE_MAX_REQS; i++)
			if (in->reqs[i].expires < q->expires)
				q = &in->reqs[i];
	}
	q->id = ++in->next_id;
	/* The server's clock starts a little later: stop counting on it first. */
	q->expires = now + in->expires_ms - in->expires_ms / 60;
	q->seen = now;
	q->remaining = RS_INTAKE_BATCH;
	snprintf(subj, sizeof(subj), "%s.%llu", in->inbox, (unsigned long long)q->id);
	snprintf(body, sizeof(body), "{\"batch\":%d,\"expires\":%lld,\"idle_heartbeat\":%lld}",
	         RS_INTAKE_BATCH, (long long)in->expires_ms * 1000000LL,
	         (long long)in->heartbeat_ms * 1000000LL);
	s = natsConnection_PublishRequestString(r->nats.nc, RS_INTAKE_NEXT_SUBJ, subj, body);
	q->live = s == NATS_OK;
	if (q->live)
		rs_metric_inc(r->m.pull_requests);
	rs_debug("router: TOOLCALLS pull request %llu sent", (unsigned long long)q->id);
	if (s != NATS_OK)
		rs_debug("router: TOOLCALLS pull request not sent: %s", natsStatus_GetText(s));
}

static void *
keeper_main(void *arg)
{
	rs_router *r = arg;
	struct rs_router_intake *in = r->intake;

	pthread_mutex_lock(&in->mu);
	while (!atomic_load(&r->stopping)) {
		int64_t now = rs_mono_ms();
		struct timespec ts;

		for (int i = 0; i < RS_INTAKE_MAX_REQS; i++) {
			intake_req *q = &in->reqs[i];
			if (q->live && (now >= q->expires || now - q->seen > 2 * in->heartbeat_ms + 1000))
			{
				rs_debug("router: TOOLCALLS pull request %llu %s (%d left)", (unsigned long long)q->id,
				         now >= q->expires ? "expired" : "silent: lost", q->remaining);
				q->live = 0;   /* expired, or lost (reconnect, server restart) */
			}
		}
		if (!covered(in, now) && now >= in->refused_until && rs_nats_connected(&r->nats))
			send_request(r, in, now);
		/* Wake at least every 250 ms: expiries, a reconnect. */
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 250 * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&in->cv, &in->mu, &ts);
	}
	pthread_mutex_unlock(&in->mu);
	return NULL;
}

rs_status
rs_router_intake_start(rs_router *r)
{
	struct rs_router_intake *in = calloc(1, sizeof(*in));
	char wild[160];
	natsStatus s;

	if (in == NULL)
		rs_oom(0);
	pthread_mutex_init(&in->mu, NULL);
	pthread_cond_init(&in->cv, NULL);
	in->expires_ms = r->pull_expires_ms;
	in->heartbeat_ms = in->expires_ms / 4 < 5000 ? in->expires_ms / 4 : 5000;
	in->renew_ms = in->expires_ms / 3;
	r->intake = in;
	if (rs_nats_new_inbox(&r->nats, in->inbox, sizeof(in->inbox)) != RS_OK)
		return RS_ERR;
	snprintf(wild, sizeof(wild), "%s.*", in->inbox);
	s = natsConnection_Subscribe(&in->sub, r->nats.nc, wild, on_msg, r);
	if (s == NATS_OK)
		s = natsSubscription_SetPendingLimits(in->sub, -1, -1);
	if (s != NATS_OK) {
		rs_error("router: cannot subscribe for TOOLCALLS: %s", natsStatus_GetText(s));
		return rs_nats_status(s, 0);
	}
	if (pthread_create(&in->keeper, NULL, keeper_main, r) != 0)
		return RS_ERR;
	in->keeper_started = 1;
	return RS_OK;
}

void
rs_router_intake_stop(rs_router *r)
{
	struct rs_router_intake *in = r->intake;

	if (in == NULL)
		return;
	if (in->keeper_started) {
		pthread_mutex_lock(&in->mu);
		pthread_cond_signal(&in->cv);
		pthread_mutex_unlock(&in->mu);
		pthread_join(in->keeper, NULL);
	}
	/* Messages the server sends to a request after this are not acked
	 * and come back to another router after AckWait. on_msg may still be
	 * running on the subscription's thread: `in` lives until
	 * rs_router_intake_free, after the connection is closed. */
	if (in->sub != NULL)
		natsSubscription_Unsubscribe(in->sub);
}

void
rs_router_intake_free(rs_router *r)
{
	struct rs_router_intake *in = r->intake;

	if (in == NULL)
		return;
	natsSubscription_Destroy(in->sub);
	pthread_mutex_destroy(&in->mu);
	pthread_cond_destroy(&in->cv);
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
