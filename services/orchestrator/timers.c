/*
 * timers.c - durable timers: never early, fire once, survive restarts.
 *
 * A timer is a timer.fire command body on TIMERS (timers.<tenant>.<run_id>,
 * Nats-Msg-Id timer-<timer_id>), consumed through the shared durable pull
 * consumer `timers`. The server keeps every timer until it is acked, so
 * the server, not our memory, is where pending timers live:
 *   - a timer due later than hold_ms is nak'd with delay (due - now -
 *     lead_ms): the server gives it back (to any instance) shortly before
 *     it is due;
 *   - a timer due within hold_ms is held un-acked in an in-memory min-heap
 *     and fired from there at its due time (precise: no server round trip
 *     on the critical path). hold_ms is far below AckWait, so a held timer
 *     never needs natsMsg_InProgress; if we crash while holding it, the
 *     server redelivers it after AckWait (late, never lost, never early).
 * Firing = publishing the body to CMDS with the timer message's own
 * Nats-Msg-Id (timer-<timer_id> for the first copy: de-duplicated if we
 * fire it twice within the window; a copy put back early or published again
 * after a loss has its own id), then acking it. The state machine ignores
 * a fire for a timer that is no longer pending. A forward that fails, or
 * whose ack does not come within FORWARD_MAX_WAIT_MS, is retried from the
 * heap (retry_later), not handed back to the server.
 *
 * Two details keep lateness low with thousands of timers due together:
 *   - forwarding is asynchronous (its own JetStream context): the timer
 *     message is acked from the publish ack handler once CMDS has stored
 *     the command, so a burst costs one round trip, not one per timer;
 *   - nats-server 2.9 only re-checks nak delays when the consumer's
 *     redelivery timer runs, and that timer is re-armed from AckWait, so
 *     the `timers` consumer uses a short AckWait (streams/TIMERS.timers.json)
 *     and the lead time is at least that long. A held timer is redelivered
 *     every AckWait while we hold it: the heap keeps the newest delivery
 *     of a stream sequence and drops the older one (never acked twice).
 *
 * Two threads: the consumer loop (common/rs_consume.h) takes timers from
 * the server, the firer sleeps until the earliest held one is due. They
 * are apart because of a nats-server 2.9.10 bug (consumer.go,
 * loopAndGatherMsgs): a redelivery the server takes out of its queue while
 * every pull request it holds has expired is counted as delivered but sent
 * to no one, and comes back only an AckWait later. When one thread did
 * both, its fetches expired at every due time (short waits), and a nak'd
 * timer now and then came back twice too late: fired up to a second late
 * (bench/orchestrator: one timer of 10,000 in about one run of four).
 * The consumer loop keeps a pull request outstanding for 30 s at a time
 * and renews it the moment it ends, so a lapsed one is left only for a
 * round trip per 30 idle seconds, and the lead time absorbs one such loss.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "orch.h"
#include "rs_mem.h"
#include "rs_map.h"
#include "rs_log.h"
#include "rs_time.h"

#define FORWARD_MAX_WAIT_MS 5000   /* a forward's ack is awaited this long */

typedef struct {
	int64_t due;
	natsMsg *msg;
	uint64_t sseq;         /* stream sequence: one timer, many deliveries */
	int tries;             /* forwards that failed: retried from here */
	char subj[128];
	char id[256];
	char run_id[40];
} held;

/* Timers forwarded to CMDS and not yet acknowledged by the server, keyed
 * by the Nats-Msg-Id of the forward (the ack handler gets the published
 * message back, not a closure of ours). Touched by the timer thread and
 * the nats.c ack thread: a mutex. */
typedef struct fly {
	struct fly *next;      /* an older forward of the same timer id */
	char id[256];
	natsMsg *timer;        /* the TIMERS delivery to ack */
	int64_t due;
	uint64_t sseq;
	int tries;             /* forwards of this delivery that failed */
	char subj[128];
	char run_id[40];
} fly;

/* id -> the newest fly of that id (not owned: freed by who takes it). The
 * same timer can be forwarded twice (redelivered while its first forward
 * awaits its ack): each forward keeps its entry, newest first. */
struct timerfly {
	pthread_mutex_t mu;
	rs_map by_id;
};

static void
fly_put(struct timerfly *tf, fly *f)
{
	pthread_mutex_lock(&tf->mu);
	f->next = rs_map_get(&tf->by_id, f->id);
	if (rs_map_put(&tf->by_id, f->id, f) != RS_OK)
		rs_oom(0);   /* the forward would never be acked */
	pthread_mutex_unlock(&tf->mu);
}

static fly *
fly_take(struct timerfly *tf, const char *id)
{
	fly *f;

	pthread_mutex_lock(&tf->mu);
	f = rs_map_take(&tf->by_id, id);
	if (f != NULL && f->next != NULL && rs_map_put(&tf->by_id, id, f->next) != RS_OK)
		rs_oom(0);
	pthread_mutex_unlock(&tf->mu);
	return f;
}

static int retry_later(orch *o, const fly *f);

/* Publish ack handler of timer_js: the command is stored (or not). */
static void
timer_on_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
	orch *o = closure;
	const char *id = NULL;
	fly *f = NULL;

	if (natsMsgHeader_Get(msg, "Nats-Msg-Id", &id) == NATS_OK && id != NULL)
		f = fly_take(o->timer_fly, id);
	if (f != NULL) {
		if (pae == NULL) {
			natsMsg_Ack(f->timer, NULL);
			rs_metric_inc(rs_orch_om.timers_fired);
			rs_metric_observe(rs_orch_om.timer_lag, (double)(rs_now_ms() - f->due) / 1000.0);
		} else {
			rs_warn("timer %s: cannot forward to CMDS: %s", f->id,
			        pae->ErrText ? pae->ErrText : natsStatus_GetText(pae->Err));
			if (retry_later(o, f))
				f->timer = NULL;   /* held again */
			else
				natsMsg_NakWithDelay(f->timer, 200, NULL);
		}
		natsMsg_Destroy(f->timer);
		free(f);
	}
	natsMsg_Destroy(msg);
}

typedef struct {
	held *v;
	size_t n, cap;
} heap;

/* The held timers, shared by the fetcher (adds) and the firer (fires). */
struct timerheld {
	pthread_mutex_t mu;
	pthread_cond_t cv;         /* a new earliest timer, or stopping */
	heap h;
};

static void
heap_swap(heap *h, size_t a, size_t b)
{
	held t = h->v[a];
	h->v[a] = h->v[b];
	h->v[b] = t;
}

static int
heap_push(heap *h, const held *x)
{
	size_t i;

	if (h->n == h->cap) {
		size_t nc = h->cap ? h->cap * 2 : 1024;
		held *nv = realloc(h->v, nc * sizeof(*nv));
		if (nv == NULL)
			return -1;
		h->v = nv;
		h->cap = nc;
	}
	i = h->n++;
	h->v[i] = *x;
	while (i > 0 && h->v[(i - 1) / 2].due > h->v[i].due) {
		heap_swap(h, i, (i - 1) / 2);
		i = (i - 1) / 2;
	}
	return 0;
}

static held
heap_pop(heap *h)
{
	held top = h->v[0];
	size_t i = 0, l, r, m;

	h->v[0] = h->v[--h->n];
	for (;;) {
		l = 2 * i + 1;
		r = l + 1;
		m = i;
		if (l < h->n && h->v[l].due < h->v[m].due) m = l;
		if (r < h->n && h->v[r].due < h->v[m].due) m = r;
		if (m == i)
			break;
		heap_swap(h, i, m);
		i = m;
	}
	return top;
}

/*
 * A forward that failed (no CMDS leader, an ack lost): the timer goes back
 * into the heap, still un-acked, and is forwarded again from here after
 * RETRY_MS, doubling to RETRY_MAX_MS. Why not a nak, as before: a nak
 * relies on the server to deliver the timer again, and nats-server 2.9.10
 * after a consumer leader change was seen not to, for minutes (bench/chaos,
 * session 8: TIMERS' durable held 265 timers with 5 redeliveries; 30 runs
 * slept forever). The server still has the timer: if we die holding it,
 * AckWait brings it to another instance. 1 if held again.
 */
#define RETRY_MS 250
#define RETRY_MAX_MS 5000

static int
retry_later(orch *o, const fly *f)
{
	struct timerheld *th = o->timer_held;
	int64_t wait = (int64_t)RETRY_MS << (f->tries < 5 ? f->tries : 5);
	held t;
	int ok;

	if (atomic_load(&o->stopping))
		return 0;   /* stopping: the server hands it to another instance */
	memset(&t, 0, sizeof(t));
	t.due = rs_now_ms() + (wait > RETRY_MAX_MS ? RETRY_MAX_MS : wait);
	t.msg = f->timer;
	t.sseq = f->sseq;
	t.tries = f->tries + 1;
	snprintf(t.subj, sizeof(t.subj), "%s", f->subj);
	snprintf(t.id, sizeof(t.id), "%s", f->id);
	snprintf(t.run_id, sizeof(t.run_id), "%s", f->run_id);
	pthread_mutex_lock(&th->mu);
	ok = heap_push(&th->h, &t) == 0;
	if (ok && th->h.v[0].sseq == t.sseq)
		pthread_cond_signal(&th->cv);
	pthread_mutex_unlock(&th->mu);
	return ok;
}

/* Forward a due timer to CMDS asynchronously; timer_on_ack acks it. */
static void
fire(orch *o, held *t)
{
	natsMsg *m = NULL;
	jsPubOptions po;
	fly *f;

	f = calloc(1, sizeof(*f));
	if (f == NULL ||
	    rs_nats_msg(&m, t->subj, natsMsg_GetData(t->msg), natsMsg_GetDataLength(t->msg),
	                "Runstream-Type", "timer.fire", "Nats-Msg-Id", t->id, NULL) != RS_OK)
		goto fail;
	snprintf(f->id, sizeof(f->id), "%s", t->id);
	f->timer = t->msg;
	f->due = t->due;
	f->sseq = t->sseq;
	f->tries = t->tries;
	snprintf(f->subj, sizeof(f->subj), "%s", t->subj);
	snprintf(f->run_id, sizeof(f->run_id), "%s", t->run_id);
	fly_put(o->timer_fly, f);
	jsPubOptions_Init(&po);
	po.MsgId = t->id;
	/* An ack that never comes (lost in a leader change or a reconnect)
	 * reaches timer_on_ack as a timeout after this long, and the timer
	 * is nak'd and fired again (a second forward under the same id is
	 * de-duplicated by CMDS). Without it the timer waited for the
	 * server's AckWait redelivery, which nats-server 2.9.10 was seen to
	 * stop after a consumer leader change (bench/chaos, session 8: 100
	 * timers held for minutes, 28 redeliveries at AckWait 1 s). */
	po.MaxWait = FORWARD_MAX_WAIT_MS;
	if (js_PublishMsgAsync(o->timer_js, &m, &po) != NATS_OK) {
		/* Not handed to the library: take it back, unless an ack raced. */
		if (fly_take(o->timer_fly, t->id) == NULL)
			return;
		natsMsg_Destroy(m);
		goto fail;
	}
	return;
fail:
	rs_log(RS_LOG_WARN, t->run_id, NULL, "timer %s: cannot forward to CMDS", t->id);
	free(f);
	natsMsg_NakWithDelay(t->msg, 200, NULL);
	natsMsg_Destroy(t->msg);
}

/* A held timer delivered again (AckWait passed while we held it): keep
 * the newest delivery, drop the old one unacked. 1 if it was held. */
static int
replace_held(heap *h, const held *t)
{
	for (size_t i = 0; i < h->n; i++) {
		if (h->v[i].sseq == t->sseq) {
			natsMsg_Destroy(h->v[i].msg);
			h->v[i].msg = t->msg;
			return 1;
		}
	}
	return 0;
}

/* A timer delivered by the server: fire, hold or hand back. Takes msg. */
static void
accept(orch *o, natsMsg *msg)
{
	struct timerheld *th = o->timer_held;
	heap *h = &th->h;
	rs_cmd c;
	char err[256], why[300];
	held t;
	int64_t now, left;

	memset(&c, 0, sizeof(c));
	if (rs_cmd_decode(natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg), &c, err,
	                  sizeof(err)) != RS_OK || c.type != RS_CMD_TIMER_FIRE) {
		snprintf(why, sizeof(why), "undecodable timer: %s", err);
		rs_orch_poison(o, msg, NULL, why);
		natsMsg_Destroy(msg);
		return;
	}
	memset(&t, 0, sizeof(t));
	t.due = c.due_at;
	t.msg = msg;
	{
		jsMsgMetaData *md = NULL;
		if (natsMsg_GetMetaData(&md, msg) == NATS_OK)
			t.sseq = md->Sequence.Stream;
		jsMsgMetaData_Destroy(md);
	}
	rs_cmd_subject(c.tenant, c.run_id, t.subj, sizeof(t.subj));
	/* The forward carries the timer message's own id: timer-<timer_id>
	 * for the first copy, another for a copy put back early or published
	 * again because the first was lost (effects.c). CMDS must not take
	 * such a copy for a duplicate of a forward it lost. */
	{
		const char *mid = NULL;
		if (natsMsgHeader_Get(msg, "Nats-Msg-Id", &mid) == NATS_OK && mid != NULL && mid[0] != '\0')
			snprintf(t.id, sizeof(t.id), "%s", mid);
		else
			snprintf(t.id, sizeof(t.id), "timer-%s", c.timer_id);
	}
	snprintf(t.run_id, sizeof(t.run_id), "%s", c.run_id);
	rs_cmd_free(&c);
	now = rs_now_ms();
	left = t.due - now;
	if (left <= 0) {
		fire(o, &t);
	} else if (left <= o->cfg.timer_hold_ms) {
		pthread_mutex_lock(&th->mu);
		if (!replace_held(h, &t)) {
			if (heap_push(h, &t) != 0) {
				natsMsg_NakWithDelay(msg, left, NULL);
				natsMsg_Destroy(msg);
			} else if (h->v[0].sseq == t.sseq) {
				pthread_cond_signal(&th->cv);   /* the new earliest */
			}
		}
		pthread_mutex_unlock(&th->mu);
	} else {
		natsMsg_NakWithDelay(msg, left - o->cfg.timer_lead_ms, NULL);
		natsMsg_Destroy(msg);
	}
}

/* Fire every held timer that is due (th->mu held; released while firing). */
static void
fire_due(orch *o, struct timerheld *th)
{
	held t;

	while (th->h.n > 0 && th->h.v[0].due <= rs_now_ms()) {
		t = heap_pop(&th->h);
		pthread_mutex_unlock(&th->mu);
		fire(o, &t);
		pthread_mutex_lock(&th->mu);
	}
	rs_metric_set(rs_orch_om.timers_held, (double)th->h.n);
}

/* Shutdown: give held timers back so another instance need not wait
 * for AckWait. */
static void
hand_back(heap *h)
{
	held t;
	int64_t left;

	while (h->n > 0) {
		t = heap_pop(h);
		left = t.due - rs_now_ms();
		natsMsg_NakWithDelay(t.msg, left > 0 ? left : 0, NULL);
		natsMsg_Destroy(t.msg);
	}
}

/* The firer: sleeps until the earliest held timer is due (or a new one
 * is earlier), fires it. Due times are wall clock (they come from the
 * state machine); the wait is on the monotonic clock. */
static void *
fire_main(void *arg)
{
	orch *o = arg;
	struct timerheld *th = o->timer_held;
	struct timespec ts;
	int64_t wait, until;

	pthread_mutex_lock(&th->mu);
	while (!atomic_load(&o->stopping)) {
		fire_due(o, th);
		wait = 250;   /* also how soon a stop is seen */
		if (th->h.n > 0 && th->h.v[0].due - rs_now_ms() < wait)
			wait = th->h.v[0].due - rs_now_ms();
		if (wait <= 0)
			continue;
		until = rs_mono_ms() + wait;
		ts.tv_sec = (time_t)(until / 1000);
		ts.tv_nsec = (long)(until % 1000) * 1000000L;
		pthread_cond_timedwait(&th->cv, &th->mu, &ts);
	}
	hand_back(&th->h);
	pthread_mutex_unlock(&th->mu);
	return NULL;
}

/* Timers from the server: each is fired, held or handed back (accept
 * takes the message). */
static void
on_batch(void *arg, natsMsg **msgs, int n, rs_consume_out *out)
{
	for (int i = 0; i < n; i++) {
		accept(arg, msgs[i]);
		out[i].disp = RS_CONSUME_TAKEN;
	}
}

rs_status
rs_orch_timers_start(orch *o)
{
	jsOptions jo;
	rs_status st;

	o->timer_fly = calloc(1, sizeof(*o->timer_fly));
	o->timer_held = calloc(1, sizeof(*o->timer_held));
	if (o->timer_fly == NULL || o->timer_held == NULL)
		return RS_ENOMEM;
	pthread_mutex_init(&o->timer_fly->mu, NULL);
	pthread_mutex_init(&o->timer_held->mu, NULL);
	{
		pthread_condattr_t ca;
		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&o->timer_held->cv, &ca);
		pthread_condattr_destroy(&ca);
	}
	jsOptions_Init(&jo);
	jo.PublishAsync.MaxPending = 65536;
	jo.PublishAsync.AckHandler = timer_on_ack;
	jo.PublishAsync.AckHandlerClosure = o;
	if (natsConnection_JetStream(&o->timer_js, o->nats.nc, &jo) != NATS_OK)
		return RS_ERR;
	{
		rs_consume_cfg cfg = {
			.name = "timers",
			.stream = "TIMERS",
			.durable = "timers",
			.filter = "timers.>",
			.batch = (int)o->cfg.timer_batch,
			.on_batch = on_batch,
			.arg = o,
		};
		if ((st = rs_consume_start(&o->timer_in, o->nats.nc, o->nats.js, &cfg)) != RS_OK)
			return st;
	}
	if (pthread_create(&o->timer_fire_thread, NULL, fire_main, o) != 0) {
		rs_consume_free(o->timer_in);
		o->timer_in = NULL;
		return RS_ERR;
	}
	return RS_OK;
}

void
rs_orch_timers_join(orch *o)
{
	if (o->timer_in == NULL)
		return;   /* never started */
	rs_consume_join(o->timer_in);
	/* Wake the firer now rather than at its next check. */
	pthread_mutex_lock(&o->timer_held->mu);
	pthread_cond_signal(&o->timer_held->cv);
	pthread_mutex_unlock(&o->timer_held->mu);
	pthread_join(o->timer_fire_thread, NULL);   /* hands held timers back */
	/* Forwards still in flight are acked (or nak'd) by their handler. */
	if (o->timer_js != NULL) {
		/* Bounded: an ack lost to a leader change would otherwise hold
		 * the stop forever (nats.c waits without limit given no
		 * options); an unacked forward's timer comes back anyway. */
		jsPubOptions po;

		jsPubOptions_Init(&po);
		po.MaxWait = o->cfg.base.shutdown_grace_ms / 4 > 500 ? o->cfg.base.shutdown_grace_ms / 4 : 500;
		js_PublishAsyncComplete(o->timer_js, &po);
	}
}

void
rs_orch_timers_free(orch *o)
{
	jsCtx_Destroy(o->timer_js);
	o->timer_js = NULL;
	if (o->timer_fly != NULL) {
		size_t i = 0;
		rs_map_ent *e = NULL;

		while ((e = rs_map_next(&o->timer_fly->by_id, &i, e)) != NULL) {
			fly *f = e->val, *next;
			for (; f != NULL; f = next) {
				next = f->next;
				natsMsg_Destroy(f->timer);
				free(f);
			}
		}
		rs_map_free(&o->timer_fly->by_id);
		pthread_mutex_destroy(&o->timer_fly->mu);
		free(o->timer_fly);
		o->timer_fly = NULL;
	}
	if (o->timer_held != NULL) {
		/* Timers the fetcher took after the firer had stopped. */
		hand_back(&o->timer_held->h);
		free(o->timer_held->h.v);
		pthread_cond_destroy(&o->timer_held->cv);
		pthread_mutex_destroy(&o->timer_held->mu);
		free(o->timer_held);
		o->timer_held = NULL;
	}
	/* Last: the messages handed back above belong to its subscription. */
	rs_consume_free(o->timer_in);
	o->timer_in = NULL;
}
