/*
 * rs_consume.h - one JetStream consumer loop for every service: bind to an
 * existing durable pull consumer, hand each batch to a callback the moment
 * the server delivers it, settle every message with one enum of
 * dispositions, warn at most every few seconds, count, stop cleanly.
 *
 * No fetch wait on the path of a message: the loop keeps one pull request
 * outstanding that returns as soon as anything is delivered ("no_wait"
 * with an expiry: nats-server 2.9 treats it as a one-shot that ends right
 * after delivering) and lives RS_CONSUME_EXPIRES_MS (30 s) when nothing
 * comes; the server's idle heartbeat (RS_CONSUME_HEARTBEAT_MS, 2 s) tells
 * a request lost to a reconnect from a quiet stream. A new request is sent
 * the moment the previous one ends, so a message stored after ten idle
 * minutes reaches the callback in one server hop, and an idle consumer
 * costs one request per 30 s. Why not nats.c's plain Fetch loop, and what
 * nats-server 2.9.10 does with expired requests: docs/architecture.md,
 * "Consuming JetStream".
 *
 * Overlapping mode (cfg.overlap >= 2, the tool-router's intake): nats.c
 * allows one fetch per subscription, so after every burst the loop above
 * has no request outstanding for a round trip; under load that cost the
 * router 7-21 % of its C=64 round trip (docs/benchmarks.md, "Router"). In
 * this mode the loop writes the pull protocol itself: up to cfg.overlap
 * requests outstanding, each on its own reply subject <cfg.inbox>.<n>, the
 * next sent while the live ones still have half their batch and a third of
 * their life. Messages arrive on a subscription thread one at a time
 * (on_batch gets n == 1); they are not bound to a nats.c JetStream
 * subscription, so one the owner TAKEs is settled by its ack subject with
 * rs_consume_settle_reply. room is not used in this mode.
 *
 * Threads: one loop thread per consumer calls room, on_batch (in the
 * overlapping mode the loop thread sends requests and on_batch runs on the
 * subscription's delivery thread); an optional ticker thread calls on_tick
 * every tick_ms (housekeeping that must not depend on traffic, e.g.
 * expiring lost publish acks). Callbacks never run concurrently with
 * themselves; on_tick may run beside on_batch.
 *
 * Adopting it (a service with its own Fetch loop):
 *   rs_consume_cfg cfg = { .name = "executor", .stream = "RUNS",
 *       .durable = "executor", .filter = "runs.>", .batch = 64,
 *       .on_batch = on_batch, .arg = x };
 *   rs_consume_start(&x->consumer, x->nats.nc, x->nats.js, &cfg);
 *   ... on SIGTERM: rs_consume_stop(x->consumer); rs_consume_join(x->consumer);
 *   rs_consume_free(x->consumer);   (after the last rs_consume_settle)
 * and in on_batch set out[i] for every message. The overlapping mode adds
 * .overlap = 3, .inbox = <rs_nats_new_inbox> (services/tool-router/calls_take.c).
 */
#ifndef RS_CONSUME_H
#define RS_CONSUME_H

#include <stdbool.h>
#include <stdint.h>

#include <nats/nats.h>

#include "rs_status.h"

/* What becomes of one delivered message. */
typedef enum rs_consume_disp {
	RS_CONSUME_ACK = 0,    /* done: never again */
	RS_CONSUME_NAK,        /* give it back now (redelivered at once) */
	RS_CONSUME_NAK_DELAY,  /* give it back, redelivered after delay_ms */
	RS_CONSUME_TERM,       /* poison: never again (dead-letter it first) */
	RS_CONSUME_PROGRESS,   /* still working: restart AckWait (rs_consume_settle only) */
	RS_CONSUME_TAKEN,      /* the callback owns the message now and settles it later
	                        * with rs_consume_settle (or natsMsg_Ack & co) */
	RS_CONSUME_DROP,       /* forget it unsettled: redelivered after AckWait */
} rs_consume_disp;

typedef struct rs_consume_out {
	rs_consume_disp disp;
	int64_t delay_ms;      /* RS_CONSUME_NAK_DELAY only */
} rs_consume_out;

/* A batch, in delivery order (n >= 1). out[] is pre-set to RS_CONSUME_ACK;
 * the callback sets each entry. Messages whose entry is not TAKEN are
 * settled and destroyed by the loop after the callback returns. */
typedef void (*rs_consume_batch_fn)(void *arg, natsMsg **msgs, int n, rs_consume_out *out);

/* How many messages the owner can take now (0: none yet). May block up to
 * wait_ms for room; called before every pull request. NULL: cfg.batch. */
typedef int (*rs_consume_room_fn)(void *arg, int64_t wait_ms);

typedef void (*rs_consume_tick_fn)(void *arg);

typedef struct rs_consume_cfg {
	const char *name;      /* logs and the metrics label consumer="<name>" */
	const char *stream;    /* the durable must exist (runctl streams apply) */
	const char *durable;
	const char *filter;    /* the subscription's subject, e.g. "cmd.>" */
	bool headers_only;     /* the durable delivers headers only (checked at bind) */
	int batch;             /* most messages per batch; default 64 */
	int64_t expires_ms;    /* life of an idle pull request; 0: RS_CONSUME_EXPIRES_MS */
	int64_t heartbeat_ms;  /* idle heartbeat; 0: RS_CONSUME_HEARTBEAT_MS (< expires/2) */
	rs_consume_batch_fn on_batch;
	rs_consume_room_fn room;       /* optional */
	rs_consume_tick_fn on_tick;    /* optional, with tick_ms > 0 */
	int64_t tick_ms;
	void *arg;
	int overlap;           /* >= 2: overlapping mode with that many requests
	                        * (at most RS_CONSUME_MAX_OVERLAP); 0, 1: one fetch */
	const char *inbox;     /* overlapping mode: a fresh inbox of the connection
	                        * (rs_nats_new_inbox: it has the user's prefix) */
} rs_consume_cfg;

#define RS_CONSUME_MAX_OVERLAP 8

typedef struct rs_consume rs_consume;

/* Bind to cfg->stream/cfg->durable (never creates it) and start the loop.
 * nc is js's connection (stop wakes the loop through it). cfg's strings must outlive the consumer. *out is NULL on failure. */
rs_status rs_consume_start(rs_consume **out, natsConnection *nc, jsCtx *js,
                           const rs_consume_cfg *cfg);

/* Stop taking messages: no new pull request, the outstanding one is cut
 * short (the loop is woken at once). Returns without waiting. Safe from any
 * thread, more than once; NULL is a no-op. */
void rs_consume_stop(rs_consume *c);

/* Wait until the loop (and the ticker) have ended: the batch in hand is
 * finished and settled; then unsubscribe. Implies rs_consume_stop. */
void rs_consume_join(rs_consume *c);

/* Free it (after join; messages TAKEN before stay valid). NULL: no-op.
 * Overlapping mode: on_batch may still be running on the subscription's
 * thread after join; free after the connection is closed. */
void rs_consume_free(rs_consume *c);

/* Settle a message the callback TAKEN: ACK, NAK, NAK_DELAY (delay_ms), TERM
 * destroy it; PROGRESS keeps it (restarts AckWait); DROP destroys it
 * unsettled. The one place the dispositions meet nats.c. */
rs_status rs_consume_settle(natsMsg *m, rs_consume_disp d, int64_t delay_ms);

/* The same for a message known by its ack subject (natsMsg_GetReply; the
 * overlapping mode's messages, which nats.c cannot ack): publishes the
 * settlement on c's connection. Any thread; DROP and a NULL reply do
 * nothing. A lost settlement means a redelivery after AckWait. */
rs_status rs_consume_settle_reply(rs_consume *c, const char *reply, rs_consume_disp d,
                                  int64_t delay_ms);

/* What a JetStream ack subject says of its message (natsMsg_GetMetaData
 * for messages nats.c cannot read it from). */
typedef struct rs_consume_meta {
	uint64_t stream_seq;
	uint64_t delivered;    /* delivery count, 1 the first time */
	int64_t stored_ns;     /* Unix ns, the server's clock */
} rs_consume_meta;

/* RS_OK, or RS_EINVAL (all fields 0) if reply is not an ack subject. */
rs_status rs_consume_reply_meta(const char *reply, rs_consume_meta *out);

/* The status of the last pull request: NATS_OK after a delivery or a
 * normal expiry, else the error (NATS_NO_RESPONDERS: the durable is gone).
 * For owners that recreate their durable. */
natsStatus rs_consume_status(const rs_consume *c);

/* Delivered messages so far (for tests and metrics). */
uint64_t rs_consume_delivered(const rs_consume *c);

#endif
