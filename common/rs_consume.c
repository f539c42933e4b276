/*
 * rs_consume.c - the one JetStream consumer loop (rs_consume.h): bind to
 * a durable pull consumer, keep one pull request outstanding, hand every
 * delivery to the owner's batch callback at once, settle each message by
 * one enum, warn rate-limited, count, stop cleanly.
 *
 * The pull request (natsSubscription_FetchRequest): Batch = the owner's
 * room, NoWait = true *with* Expires, Heartbeat. nats-server 2.9.10
 * (consumer.go processNextMsgRequest) keeps such a request waiting when
 * nothing is pending and ends it with a 408 right after the first burst it
 * delivers ("one-shot"), so nats.c returns as soon as messages arrive; it
 * never waits for the batch to fill. When nothing comes the request lives
 * `expires` and the next one is sent the moment its 408 arrives, so there
 * is always a live request except for one round trip per `expires`. Why
 * long-lived (30 s) and not nats.c's Fetch(500 ms) loop: an idle consumer
 * then costs 1 request per 30 s instead of 2 per second, and every expiry
 * opens the window of a 2.9.10 bug that loses a redelivery until the next
 * AckWait (docs/architecture.md, "Consuming JetStream"). The idle
 * heartbeat makes a request lost to a reconnect end after 2 heartbeats
 * (nats.c reports NATS_MISSED_HEARTBEAT), not after `expires`.
 *
 * The overlapping mode (cfg.overlap >= 2; why: rs_consume.h) writes the
 * pull protocol itself: a keeper thread (instead of the loop) sends raw
 * requests {"batch","expires","idle_heartbeat"} to
 * $JS.API.CONSUMER.MSG.NEXT.<stream>.<durable>, each with the reply
 * subject <inbox>.<n> so its status messages (100 heartbeat, 404/408 over,
 * 409 refused) name it; messages carry their stream subject and are
 * counted against the oldest live request (the server serves a consumer's
 * waiting requests in order). A request silent for two heartbeats (a
 * reconnect, a restarted server) is forgotten and replaced. Many instances
 * share the durable's max_waiting (512 for TOOLCALLS/routers).
 *
 * Stop: the loop may be inside a 30 s request, so rs_consume_stop wakes it
 * by publishing a 408 status message to the subscription's own inbox:
 * nats.c ends the fetch exactly as on the server's 408 and returns what it
 * has collected, which is then handled and settled like any batch.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rs_consume.h"
#include "rs_mem.h"
#include "rs_log.h"
#include "rs_metrics.h"
#include "rs_nats.h"
#include "rs_time.h"

#define DEFAULT_BATCH 64
#define DEFAULT_EXPIRES_MS 30000
#define DEFAULT_HEARTBEAT_MS 2000
#define WARN_EVERY_MS 5000
#define ERROR_PAUSE_MS 100
#define ROOM_WAIT_MS 250

struct rs_consume {
	rs_consume_cfg cfg;
	natsConnection *nc;
	natsSubscription *sub;
	atomic_int stopping;
	atomic_ullong delivered;
	atomic_int last_status;   /* natsStatus of the last pull request */
	pthread_t loop_th, tick_th;
	int loop_started, tick_started;
	pthread_mutex_t mu;        /* the ticker's and stop's condition */
	pthread_cond_t cv;
	int64_t last_warn;
	rs_metric *m_delivered, *m_batches, *m_requests, *m_errors;
	/* overlapping mode only; under mu */
	pthread_cond_t kcv;        /* wakes the keeper */
	char next_subj[256];
	uint64_t next_id;
	struct pull_req {
		uint64_t id;
		int64_t expires;       /* mono ms */
		int64_t seen;          /* mono ms: sent, last message or heartbeat */
		int remaining;
		int live;
	} reqs[RS_CONSUME_MAX_OVERLAP];
	int64_t refused_until;     /* mono ms: a 409 backs off */
};

/* A duration setting in ms; malformed stops the owner's start-up, as every
 * setting does (docs/operations.md, "Configuration"). */
static rs_status
env_ms(const char *name, int64_t def, int64_t *out)
{
	const char *v = getenv(name);
	char *end = NULL;
	long long x;

	*out = def;
	if (v == NULL || *v == '\0')
		return RS_OK;
	x = strtoll(v, &end, 10);
	if (end == v || *end != '\0' || x < 1 || x > 3600000) {
		rs_error("%s=%s: not a duration in ms (1..3600000)", name, v);
		return RS_EINVAL;
	}
	*out = (int64_t)x;
	return RS_OK;
}

/* Sleep up to ms, woken early by stop. */
static void
pause_ms(rs_consume *c, int64_t ms)
{
	struct timespec ts;
	int64_t until = rs_mono_ms() + ms;

	ts.tv_sec = (time_t)(until / 1000);
	ts.tv_nsec = (long)(until % 1000) * 1000000L;
	pthread_mutex_lock(&c->mu);
	while (!atomic_load(&c->stopping) && rs_mono_ms() < until)
		if (pthread_cond_timedwait(&c->cv, &c->mu, &ts) != 0)
			break;
	pthread_mutex_unlock(&c->mu);
}

static void
warn_limited(rs_consume *c, const char *what, natsStatus s)
{
	rs_metric_inc(c->m_errors);
	if (rs_mono_ms() - c->last_warn < WARN_EVERY_MS)
		return;
	c->last_warn = rs_mono_ms();
	rs_warn("consumer %s (%s/%s): %s: %s (%s)", c->cfg.name, c->cfg.stream, c->cfg.durable, what,
	        natsStatus_GetText(s), nats_GetLastError(NULL) ? nats_GetLastError(NULL) : "");
}

rs_status
rs_consume_settle(natsMsg *m, rs_consume_disp d, int64_t delay_ms)
{
	natsStatus s = NATS_OK;

	if (m == NULL)
		return RS_EINVAL;
	switch (d) {
	case RS_CONSUME_ACK:
		s = natsMsg_Ack(m, NULL);
		break;
	case RS_CONSUME_NAK:
		s = natsMsg_Nak(m, NULL);
		break;
	case RS_CONSUME_NAK_DELAY:
		s = delay_ms > 0 ? natsMsg_NakWithDelay(m, delay_ms, NULL) : natsMsg_Nak(m, NULL);
		break;
	case RS_CONSUME_TERM:
		s = natsMsg_Term(m, NULL);
		break;
	case RS_CONSUME_PROGRESS:
		return natsMsg_InProgress(m, NULL) == NATS_OK ? RS_OK : RS_EIO;
	case RS_CONSUME_TAKEN:
		return RS_EINVAL;  /* not a settlement */
	case RS_CONSUME_DROP:
		break;
	}
	natsMsg_Destroy(m);
	return s == NATS_OK ? RS_OK : RS_EIO;
}

/* The wire form of a settlement (what natsMsg_Ack & co publish); 0: none. */
static int
settle_body(rs_consume_disp d, int64_t delay_ms, char *buf, size_t cap)
{
	static const char *const body[] = {
		[RS_CONSUME_ACK] = "+ACK", [RS_CONSUME_NAK] = "-NAK", [RS_CONSUME_NAK_DELAY] = "-NAK",
		[RS_CONSUME_TERM] = "+TERM", [RS_CONSUME_PROGRESS] = "+WPI",
	};

	if ((unsigned)d >= sizeof(body) / sizeof(body[0]) || body[d] == NULL)
		return 0;   /* TAKEN, DROP */
	if (d == RS_CONSUME_NAK_DELAY && delay_ms > 0)
		snprintf(buf, cap, "-NAK {\"delay\":%lld}", (long long)delay_ms * 1000000LL);
	else
		snprintf(buf, cap, "%s", body[d]);
	return 1;
}

rs_status
rs_consume_settle_reply(rs_consume *c, const char *reply, rs_consume_disp d, int64_t delay_ms)
{
	char body[64];

	if (c == NULL || d == RS_CONSUME_TAKEN)
		return RS_EINVAL;
	if (reply == NULL || reply[0] == '\0' || !settle_body(d, delay_ms, body, sizeof(body)))
		return RS_OK;
	if (natsConnection_PublishString(c->nc, reply, body) != NATS_OK) {
		rs_debug("consumer %s: cannot settle (%s): redelivered after AckWait", c->cfg.name, body);
		return RS_EIO;
	}
	return RS_OK;
}

/* A JetStream ack subject is
 * $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>
 * or, with a domain and account hash, two more tokens after $JS.ACK and
 * one at the end (12 tokens). */
rs_status
rs_consume_reply_meta(const char *reply, rs_consume_meta *out)
{
	const char *tok[16];
	int n = 0, off;

	memset(out, 0, sizeof(*out));
	if (reply == NULL || strncmp(reply, "$JS.ACK.", 8) != 0)
		return RS_EINVAL;
	tok[n++] = reply;
	for (const char *p = reply; *p != '\0' && n < 16; p++)
		if (*p == '.')
			tok[n++] = p + 1;
	if (n == 9)
		off = 0;
	else if (n == 11 || n == 12)
		off = 2;
	else
		return RS_EINVAL;
	out->delivered = strtoull(tok[4 + off], NULL, 10);
	out->stream_seq = strtoull(tok[5 + off], NULL, 10);
	out->stored_ns = (int64_t)strtoull(tok[7 + off], NULL, 10);
	return RS_OK;
}

/* Hand one delivered batch to the owner, then settle what it did not take. */
static void
deliver(rs_consume *c, natsMsgList *list)
{
	rs_consume_out stack_out[64], *out = stack_out;
	int n = list->Count;

	if (n > (int)(sizeof(stack_out) / sizeof(stack_out[0])) &&
	    (out = calloc((size_t)n, sizeof(*out))) == NULL)
		rs_oom(0);
	for (int i = 0; i < n; i++) {
		out[i].disp = RS_CONSUME_ACK;
		out[i].delay_ms = 0;
	}
	atomic_fetch_add(&c->delivered, (unsigned long long)n);
	rs_metric_add(c->m_delivered, (double)n);
	rs_metric_inc(c->m_batches);
	c->cfg.on_batch(c->cfg.arg, list->Msgs, n, out);
	for (int i = 0; i < n; i++) {
		natsMsg *m = list->Msgs[i];

		list->Msgs[i] = NULL;
		if (out[i].disp == RS_CONSUME_TAKEN)
			continue;
		if (out[i].disp == RS_CONSUME_PROGRESS) {
			/* In progress but not kept: it comes back after AckWait. */
			natsMsg_InProgress(m, NULL);
			natsMsg_Destroy(m);
			continue;
		}
		rs_consume_settle(m, out[i].disp, out[i].delay_ms);
	}
	if (out != stack_out)
		free(out);
	natsMsgList_Destroy(list);
}

static void *
loop_main(void *arg)
{
	rs_consume *c = arg;
	int64_t backoff = 0;

	while (!atomic_load(&c->stopping)) {
		jsFetchRequest req;
		natsMsgList list;
		natsStatus s;
		int64_t t0;
		int room = c->cfg.batch;

		if (c->cfg.room != NULL) {
			room = c->cfg.room(c->cfg.arg, ROOM_WAIT_MS);
			if (room <= 0)
				continue;
			if (room > c->cfg.batch)
				room = c->cfg.batch;
		}
		jsFetchRequest_Init(&req);
		req.Batch = room;
		req.NoWait = true;   /* with Expires: a one-shot, see the top */
		req.Expires = c->cfg.expires_ms * 1000000LL;
		req.Heartbeat = c->cfg.heartbeat_ms * 1000000LL;
		memset(&list, 0, sizeof(list));
		rs_metric_inc(c->m_requests);
		t0 = rs_mono_ms();
		s = natsSubscription_FetchRequest(&list, c->sub, &req);
		atomic_store(&c->last_status,
		             (s == NATS_TIMEOUT || s == NATS_MISSED_HEARTBEAT) ? NATS_OK : (int)s);
		if (s == NATS_OK && list.Count > 0) {
			deliver(c, &list);
			backoff = 0;
			continue;
		}
		natsMsgList_Destroy(&list);
		if (atomic_load(&c->stopping))
			break;
		if (s == NATS_OK || s == NATS_TIMEOUT || s == NATS_MISSED_HEARTBEAT) {
			/* Expired (the normal idle end), or heartbeats missed (a lost
			 * request): ask again at once. A 408 long before the expiry
			 * is the server refusing the request ("Requests Pending":
			 * another instance's request waits for what is pending, e.g.
			 * at MaxAckPending): back off instead of spinning. */
			if (s == NATS_TIMEOUT && rs_mono_ms() - t0 < c->cfg.expires_ms / 2) {
				backoff = backoff == 0 ? 1 : backoff * 2;
				if (backoff > ERROR_PAUSE_MS)
					backoff = ERROR_PAUSE_MS;
				pause_ms(c, backoff);
			} else {
				backoff = 0;
			}
			continue;
		}
		warn_limited(c, "pull request failed", s);
		pause_ms(c, ERROR_PAUSE_MS);
	}
	return NULL;
}

static void *
tick_main(void *arg)
{
	rs_consume *c = arg;

	while (!atomic_load(&c->stopping)) {
		c->cfg.on_tick(c->cfg.arg);
		pause_ms(c, c->cfg.tick_ms);
	}
	return NULL;
}

/* ---- the overlapping mode ------------------------------------------- */

/* With mu held: 1 if a live request will still take messages for a while
 * (less than half its batch gone, more than a third of its life left). */
static int
covered(rs_consume *c, int64_t now)
{
	for (int i = 0; i < c->cfg.overlap; i++) {
		struct pull_req *q = &c->reqs[i];
		if (q->live && q->remaining > c->cfg.batch / 2 && q->expires - now > c->cfg.expires_ms / 3)
			return 1;
	}
	return 0;
}

/* The subscription's thread: a message or a request's status. */
static void
overlap_msg(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *closure)
{
	rs_consume *c = closure;
	const char *subj = natsMsg_GetSubject(m), *dot = strrchr(subj, '.');
	const char *status = NULL, *reply;
	uint64_t id = dot != NULL ? strtoull(dot + 1, NULL, 10) : 0;
	struct pull_req *q = NULL;
	int64_t now = rs_mono_ms();
	rs_consume_out out = { RS_CONSUME_ACK, 0 };
	int user;

	(void)nc;
	(void)sub;
	user = !(natsMsg_GetDataLength(m) == 0 &&
	         natsMsgHeader_Get(m, "Status", &status) == NATS_OK && status != NULL);
	pthread_mutex_lock(&c->mu);
	if (user) {
		for (int i = 0; i < c->cfg.overlap; i++)
			if (c->reqs[i].live && (q == NULL || c->reqs[i].id < q->id))
				q = &c->reqs[i];
		if (q != NULL) {
			q->seen = now;
			if (--q->remaining <= 0)
				q->live = 0;
		}
	} else {
		for (int i = 0; i < c->cfg.overlap && q == NULL; i++)
			if (c->reqs[i].live && c->reqs[i].id == id)
				q = &c->reqs[i];
		if (q != NULL) {
			q->seen = now;
			if (strncmp(status, "100", 3) != 0) {
				/* 404/408: over; 409: refused (max_waiting, a changed
				 * consumer); 503: no responders (the durable is gone). */
				rs_debug("consumer %s: pull request %llu over: %s (%d left)", c->cfg.name,
				         (unsigned long long)id, status, q->remaining);
				q->live = 0;
				if (strncmp(status, "409", 3) == 0) {
					const char *desc = NULL;
					natsMsgHeader_Get(m, "Description", &desc);
					warn_limited(c, desc != NULL ? desc : "pull request refused", NATS_ERR);
					c->refused_until = now + 1000;
				}
				atomic_store(&c->last_status,
				             strncmp(status, "503", 3) == 0 ? NATS_NO_RESPONDERS : NATS_OK);
			}
		}
	}
	if (!covered(c, now))
		pthread_cond_signal(&c->kcv);
	pthread_mutex_unlock(&c->mu);
	reply = natsMsg_GetReply(m);
	/* Stopping: left unsettled, the message goes to another instance after
	 * AckWait. */
	if (!user || reply == NULL || atomic_load(&c->stopping)) {
		natsMsg_Destroy(m);
		return;
	}
	atomic_fetch_add(&c->delivered, 1ULL);
	rs_metric_inc(c->m_delivered);
	rs_metric_inc(c->m_batches);
	c->cfg.on_batch(c->cfg.arg, &m, 1, &out);
	if (out.disp == RS_CONSUME_TAKEN)
		return;
	rs_consume_settle_reply(c, reply, out.disp, out.delay_ms);
	natsMsg_Destroy(m);
}

/* With mu held: a new request in a free slot (or the oldest one's). */
static void
send_request(rs_consume *c, int64_t now)
{
	char subj[192], body[160];
	struct pull_req *q = NULL;
	natsStatus s;

	for (int i = 0; i < c->cfg.overlap && q == NULL; i++)
		if (!c->reqs[i].live)
			q = &c->reqs[i];
	if (q == NULL) {
		/* All slots taken by requests that are low: retire the oldest. */
		q = &c->reqs[0];
		for (int i = 1; i < c->cfg.overlap; i++)
			if (c->reqs[i].expires < q->expires)
				q = &c->reqs[i];
	}
	q->id = ++c->next_id;
	/* The server's clock starts a little later: stop counting on it first. */
	q->expires = now + c->cfg.expires_ms - c->cfg.expires_ms / 60;
	q->seen = now;
	q->remaining = c->cfg.batch;
	snprintf(subj, sizeof(subj), "%s.%llu", c->cfg.inbox, (unsigned long long)q->id);
	snprintf(body, sizeof(body), "{\"batch\":%d,\"expires\":%lld,\"idle_heartbeat\":%lld}",
	         c->cfg.batch, (long long)c->cfg.expires_ms * 1000000LL,
	         (long long)c->cfg.heartbeat_ms * 1000000LL);
	s = natsConnection_PublishRequestString(c->nc, c->next_subj, subj, body);
	q->live = s == NATS_OK;
	if (q->live)
		rs_metric_inc(c->m_requests);
	else
		rs_debug("consumer %s: pull request not sent: %s", c->cfg.name, natsStatus_GetText(s));
}

/* The keeper: the loop thread of the overlapping mode. */
static void *
keeper_main(void *arg)
{
	rs_consume *c = arg;

	pthread_mutex_lock(&c->mu);
	while (!atomic_load(&c->stopping)) {
		int64_t now = rs_mono_ms(), until = now + 250;
		struct timespec ts;

		for (int i = 0; i < c->cfg.overlap; i++) {
			struct pull_req *q = &c->reqs[i];
			if (q->live && (now >= q->expires ||
		                    (c->cfg.heartbeat_ms > 0 && now - q->seen > 2 * c->cfg.heartbeat_ms + 1000))) {
				rs_debug("consumer %s: pull request %llu %s (%d left)", c->cfg.name,
				         (unsigned long long)q->id, now >= q->expires ? "expired" : "silent: lost",
				         q->remaining);
				q->live = 0;
			}
		}
		if (!covered(c, now) && now >= c->refused_until &&
		    natsConnection_Status(c->nc) == NATS_CONN_STATUS_CONNECTED)
			send_request(c, now);
		/* Wake at least every 250 ms: expiries, a reconnect. */
		ts.tv_sec = (time_t)(until / 1000);
		ts.tv_nsec = (long)(until % 1000) * 1000000L;
		pthread_cond_timedwait(&c->kcv, &c->mu, &ts);
	}
	pthread_mutex_unlock(&c->mu);
	return NULL;
}

/* The overlapping mode's bind: the durable must exist (a lookup that
 * cannot answer now is not fatal: the keeper keeps asking), then one
 * subscription on <inbox>.* for every request's replies. */
static rs_status
bind_overlap(rs_consume *c, jsCtx *js)
{
	jsConsumerInfo *ci = NULL;
	jsErrCode jerr = 0;
	char wild[192];
	natsStatus s;

	s = js_GetConsumerInfo(&ci, js, c->cfg.stream, c->cfg.durable, NULL, &jerr);
	jsConsumerInfo_Destroy(ci);
	if (s != NATS_OK && (s == NATS_NOT_FOUND || jerr == JSConsumerNotFoundErr ||
	                     jerr == JSStreamNotFoundErr)) {
		rs_error("consumer %s: no durable %s/%s (run `runctl streams apply`)", c->cfg.name,
		         c->cfg.stream, c->cfg.durable);
		return RS_ENOTFOUND;
	}
	if (s != NATS_OK)
		warn_limited(c, "cannot look up the durable now", s);
	snprintf(c->next_subj, sizeof(c->next_subj), "$JS.API.CONSUMER.MSG.NEXT.%s.%s", c->cfg.stream,
	         c->cfg.durable);
	snprintf(wild, sizeof(wild), "%s.*", c->cfg.inbox);
	s = natsConnection_Subscribe(&c->sub, c->nc, wild, overlap_msg, c);
	if (s == NATS_OK)
		s = natsSubscription_SetPendingLimits(c->sub, -1, -1);
	if (s != NATS_OK) {
		rs_error("consumer %s: cannot subscribe to %s: %s", c->cfg.name, wild, natsStatus_GetText(s));
		natsSubscription_Destroy(c->sub);
		c->sub = NULL;
		return rs_nats_status(s, 0);
	}
	return RS_OK;
}

static rs_status
bind(rs_consume *c, jsCtx *js)
{
	jsSubOptions so;
	jsErrCode jerr = 0;
	natsStatus s;

	jsSubOptions_Init(&so);
	so.Stream = c->cfg.stream;
	so.Consumer = c->cfg.durable;
	/* nats.c checks the durable against what is set here. */
	if (c->cfg.headers_only)
		so.Config.HeadersOnly = true;
	s = js_PullSubscribe(&c->sub, js, c->cfg.filter, c->cfg.durable, NULL, &so, &jerr);
	if (s != NATS_OK) {
		rs_error("consumer %s: cannot bind to %s/%s (run `runctl streams apply`): %s (%d): %s",
		         c->cfg.name, c->cfg.stream, c->cfg.durable, natsStatus_GetText(s), (int)jerr,
		         nats_GetLastError(NULL) ? nats_GetLastError(NULL) : "");
		c->sub = NULL;
		return rs_nats_status(s, jerr);
	}
	return RS_OK;
}

rs_status
rs_consume_start(rs_consume **out, natsConnection *nc, jsCtx *js, const rs_consume_cfg *cfg)
{
	rs_consume *c;
	char labels[160];
	char *lab;
	rs_status st;

	*out = NULL;
	if (cfg == NULL || nc == NULL || js == NULL || cfg->name == NULL || cfg->stream == NULL ||
	    cfg->durable == NULL || cfg->filter == NULL || cfg->on_batch == NULL ||
	    (cfg->on_tick != NULL && cfg->tick_ms <= 0) || cfg->overlap > RS_CONSUME_MAX_OVERLAP ||
	    (cfg->overlap >= 2 && (cfg->inbox == NULL || strlen(cfg->inbox) > 160 ||
	                           strlen(cfg->stream) + strlen(cfg->durable) > 200)))
		return RS_EINVAL;
	if ((c = calloc(1, sizeof(*c))) == NULL)
		rs_oom(0);
	c->cfg = *cfg;
	c->nc = nc;
	if (c->cfg.batch <= 0)
		c->cfg.batch = DEFAULT_BATCH;
	if ((c->cfg.expires_ms <= 0 &&
	     env_ms("RS_CONSUME_EXPIRES_MS", DEFAULT_EXPIRES_MS, &c->cfg.expires_ms) != RS_OK) ||
	    (c->cfg.heartbeat_ms <= 0 &&
	     env_ms("RS_CONSUME_HEARTBEAT_MS", DEFAULT_HEARTBEAT_MS, &c->cfg.heartbeat_ms) != RS_OK)) {
		free(c);
		return RS_EINVAL;
	}
	/* The server refuses a heartbeat above half the expiry it is sent, and
	 * nats.c sends the expiry 10 ms short. */
	if (c->cfg.heartbeat_ms * 2 > c->cfg.expires_ms - 20)
		c->cfg.heartbeat_ms = (c->cfg.expires_ms - 20) / 2;
	if (c->cfg.heartbeat_ms < 1)
		c->cfg.heartbeat_ms = 0;   /* too short a life to beat in: none */
	pthread_mutex_init(&c->mu, NULL);
	{
		pthread_condattr_t ca;

		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&c->cv, &ca);
		pthread_cond_init(&c->kcv, &ca);
		pthread_condattr_destroy(&ca);
	}
	/* The metrics registry keeps the labels pointer for the life of the
	 * process (a restarted consumer finds its series again; the string of
	 * the second start is then a few bytes never freed). */
	snprintf(labels, sizeof(labels), "consumer=\"%s\"", cfg->name);
	if ((lab = strdup(labels)) == NULL)
		rs_oom(0);
	c->m_delivered = rs_counter("rs_consume_delivered_total",
	                            "Messages handed to a consumer's callback", lab);
	c->m_batches = rs_counter("rs_consume_batches_total", "Batches handed to a consumer's callback",
	                          lab);
	c->m_requests = rs_counter("rs_consume_pull_requests_total",
	                           "Pull requests sent (one per batch, or per idle expiry)", lab);
	c->m_errors = rs_counter("rs_consume_errors_total", "Pull requests that failed", lab);
	if ((st = c->cfg.overlap >= 2 ? bind_overlap(c, js) : bind(c, js)) != RS_OK) {
		pthread_cond_destroy(&c->kcv);
		pthread_cond_destroy(&c->cv);
		pthread_mutex_destroy(&c->mu);
		free(c);
		return st;
	}
	if (pthread_create(&c->loop_th, NULL, c->cfg.overlap >= 2 ? keeper_main : loop_main, c) != 0)
		goto fail;
	c->loop_started = 1;
	if (c->cfg.on_tick != NULL) {
		if (pthread_create(&c->tick_th, NULL, tick_main, c) != 0)
			goto fail;
		c->tick_started = 1;
	}
	rs_info("consumer %s: bound to %s/%s (request life %lld ms, heartbeat %lld ms, batch %d, "
	        "%d request(s) at once)", c->cfg.name, c->cfg.stream, c->cfg.durable,
	        (long long)c->cfg.expires_ms, (long long)c->cfg.heartbeat_ms, c->cfg.batch,
	        c->cfg.overlap >= 2 ? c->cfg.overlap : 1);
	*out = c;
	return RS_OK;
fail:
	rs_consume_join(c);
	rs_consume_free(c);
	return RS_ERR;
}

/* End the fetch in progress: a 408 status on our own inbox is what nats.c
 * takes for the server's end of the request. */
static void
wake_fetch(rs_consume *c)
{
	natsMsg *m = NULL;
	const char *inbox = c->sub != NULL ? natsSubscription_GetSubject(c->sub) : NULL;

	if (inbox == NULL)
		return;
	if (natsMsg_Create(&m, inbox, NULL, NULL, 0) != NATS_OK)
		return;
	if (natsMsgHeader_Set(m, "Status", "408") == NATS_OK &&
	    natsMsgHeader_Set(m, "Description", "Consumer Stopping") == NATS_OK)
		natsConnection_PublishMsg(c->nc, m);
	natsMsg_Destroy(m);
}

void
rs_consume_stop(rs_consume *c)
{
	if (c == NULL || atomic_exchange(&c->stopping, 1))
		return;
	pthread_mutex_lock(&c->mu);
	pthread_cond_broadcast(&c->cv);
	pthread_cond_broadcast(&c->kcv);
	pthread_mutex_unlock(&c->mu);
	if (c->cfg.overlap < 2)
		wake_fetch(c);
}

void
rs_consume_join(rs_consume *c)
{
	if (c == NULL)
		return;
	rs_consume_stop(c);
	if (c->loop_started) {
		pthread_join(c->loop_th, NULL);
		c->loop_started = 0;
	}
	if (c->tick_started) {
		pthread_join(c->tick_th, NULL);
		c->tick_started = 0;
	}
	/* Messages the outstanding request delivers from here on are not
	 * ours: they come back after AckWait. The request itself dies with the
	 * interest (the server drops requests whose inbox has no subscriber). */
	if (c->sub != NULL)
		natsSubscription_Unsubscribe(c->sub);
}

void
rs_consume_free(rs_consume *c)
{
	if (c == NULL)
		return;
	rs_consume_join(c);
	natsSubscription_Destroy(c->sub);
	pthread_cond_destroy(&c->kcv);
	pthread_cond_destroy(&c->cv);
	pthread_mutex_destroy(&c->mu);
	free(c);
}

natsStatus
rs_consume_status(const rs_consume *c)
{
	return c == NULL ? NATS_INVALID_SUBSCRIPTION
	                 : (natsStatus)atomic_load(&((rs_consume *)c)->last_status);
}

uint64_t
rs_consume_delivered(const rs_consume *c)
{
	return c == NULL ? 0 : (uint64_t)atomic_load(&((rs_consume *)c)->delivered);
}
