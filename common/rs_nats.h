/*
 * rs_nats.h - NATS connection and JetStream helpers over nats.c.
 *
 * One rs_nats per process role: a connection to a comma-separated list of
 * servers that reconnects forever, and its JetStream context. Shut down with
 * rs_nats_close(), which drains (in-flight subscriptions finish, pending
 * publishes flush) before closing.
 */
#ifndef RS_NATS_H
#define RS_NATS_H

#include <nats/nats.h>
#include <stdint.h>
#include "rs_status.h"

/* Most servers RS_NATS_URL may list, and longest user name (a subject
 * token of the inbox prefix, so [A-Za-z0-9_-]). */
#define RS_NATS_MAX_SERVERS 16
#define RS_NATS_MAX_USER 64

typedef struct {
	natsConnection *nc;
	jsCtx *js;
	/* "_INBOX" without credentials, "_INBOX_<user>" with them: the only
	 * reply subjects this connection may subscribe to when the server
	 * enforces per-user permissions (docs/operations.md "NATS users"). */
	char inbox_prefix[8 + RS_NATS_MAX_USER];
} rs_nats;

/* Connect to urls ("nats://a:4222,nats://b:4222": each one is a seed
 * server, see rs_nats_split_urls) with client name `name`. Credentials come
 * from the environment: RS_NATS_USER and RS_NATS_PASSWORD (both or
 * neither; unset = no authentication), and then the connection's inboxes
 * start with "_INBOX_<user>." instead of "_INBOX.".
 * jsopts may be NULL or a jsOptions the caller initialised (e.g. async
 * publish handlers); it is copied. Retries the first connect for
 * connect_wait_ms before giving up with RS_EUNAVAIL; RS_EINVAL for a
 * malformed URL list or credentials. */
rs_status rs_nats_connect(rs_nats *n, const char *urls, const char *name,
                          jsOptions *jsopts, int64_t connect_wait_ms);

/* Split a comma-separated server list into at most max URLs (blanks
 * around commas trimmed; empty items refused). nats.c's
 * natsOptions_SetURL takes one URL only (a list fails to connect with "No
 * server available"), natsOptions_SetServers takes the array. The URLs
 * are written into buf (cap bytes) and urls[i] point into it.
 * RS_OK and *count, or RS_EINVAL (empty list, empty item, too many, too
 * long). */
rs_status rs_nats_split_urls(const char *list, char *buf, size_t cap,
                             const char **urls, int max, int *count);

/* natsOptions_SetServers from a comma-separated list (rs_nats_split_urls):
 * what rs_nats_connect does, for programs that build their own options
 * (the benchmarks). RS_EINVAL for a list that does not split. */
rs_status rs_nats_set_servers(natsOptions *o, const char *list);

/* A new unique inbox subject "<n->inbox_prefix>.<nuid>" in buf, for
 * subscriptions that build their own reply subjects (nats.c's
 * natsInbox_Create always says "_INBOX", which a user restricted to its
 * own prefix may not subscribe to). */
rs_status rs_nats_new_inbox(const rs_nats *n, char *buf, size_t cap);

/* 1 if natsMsg_Destroy() frees messages in the calling thread instead of
 * handing them to nats.c's collector thread (rs_natsgc.c says why). */
int rs_natsgc_active(void);

/* Drain (bounded by timeout_ms) and free everything. Safe on a zeroed n. */
void rs_nats_close(rs_nats *n, int64_t timeout_ms);

/* 1 while the connection is up. */
int rs_nats_connected(const rs_nats *n);

/* Map a natsStatus (and optional jsErrCode) to an rs_status:
 * wrong-last-sequence -> RS_ECONFLICT, not-found -> RS_ENOTFOUND, timeouts
 * -> RS_ETIMEOUT, connection problems -> RS_EUNAVAIL. */
rs_status rs_nats_status(natsStatus s, jsErrCode jerr);

/* Parse a JetStream pub ack body: {"stream":..,"seq":N[,"duplicate":true]}
 * or {"error":{"code":..,"err_code":E,"description":..}}. On an error
 * answer returns RS_EIO with *jerr = E and the description in err; on an
 * unreadable one RS_EINVAL. */
rs_status rs_js_parse_puback(const char *data, size_t len, uint64_t *seq, int *dup,
                             jsErrCode *jerr, char *err, size_t cap);

/* The part of rs_js_parse_puback that reads nats-server's own success
 * template ({"stream":"<name>", "seq":<n>}, ,"duplicate": true) without a
 * JSON parser: 1 and *seq, *dup set, or 0 for any other shape. */
int rs_js_puback_fast(const char *data, size_t len, uint64_t *seq, int *dup);

/* Build a message with the given headers (NULL-terminated key,value list).
 * data is copied. Caller owns *out (natsMsg_Destroy) unless a publish
 * function documents that it takes it. */
rs_status rs_nats_msg(natsMsg **out, const char *subject, const char *data,
                      int len, ...);

/* Synchronous JetStream publish of msg (not consumed: caller destroys).
 * msg_id, when not NULL, de-duplicates; expect_subj_seq >= 0 sets
 * Nats-Expected-Last-Subject-Sequence. On success *seq (if not NULL) is the
 * stream sequence and *dup is 1 if the server saw a duplicate. */
rs_status rs_js_publish(jsCtx *js, natsMsg *msg, const char *msg_id,
                        int64_t expect_subj_seq, int64_t timeout_ms,
                        uint64_t *seq, int *dup);

/* Dead-letter: publish the payload of an offending message to
 * dlq.<source> with headers Runstream-Dlq-Reason/-Subject/-Seq. */
rs_status rs_dlq_publish(jsCtx *js, const char *source, const char *orig_subject,
                         uint64_t orig_seq, const char *data, int len,
                         const char *reason);

/* Idle heartbeat of rs_js_follow consumers. nats.c checks for them every two
 * intervals and re-creates a consumer that went silent, so this bounds how
 * long live delivery stalls after a nats-server restart (2-3 intervals);
 * idle, it costs one empty message per interval. nats.c's default is 5 s. */
#define RS_JS_FOLLOW_HEARTBEAT_MS 2000

/* Follow `stream` live from now on: a JetStream ordered push consumer on
 * subject filter `filter` (ephemeral, memory storage, no acks, flow
 * control, an idle heartbeat every heartbeat_ms, or
 * RS_JS_FOLLOW_HEARTBEAT_MS when 0). nats.c re-creates it from the next
 * stream sequence on every reconnect, on a gap and when heartbeats stop,
 * so what arrives is in stream order, none missing. cb NULL makes a
 * synchronous subscription (natsSubscription_NextMsg).
 * "From now on": *floor receives the stream's last sequence before the
 * consumer exists, and the caller drops every message rs_js_follow_fresh()
 * calls old. The deliver policy is "last", not "new": that one old message
 * starts nats.c's sequence tracking at the end of the stream. With "new",
 * a re-creation (any reconnect) before the first new message restarts at
 * sequence 1 and re-sends the whole (filtered) stream.
 * Caller owns *sub and ends it with rs_js_follow_stop(). */
rs_status rs_js_follow(natsSubscription **sub, jsCtx *js, const char *stream,
                       const char *filter, int64_t heartbeat_ms, natsMsgHandler cb,
                       void *closure, uint64_t *floor);

/* 1 if m, delivered by rs_js_follow, is newer than floor. */
int rs_js_follow_fresh(natsMsg *m, uint64_t floor);

/* Stop and free an rs_js_follow subscription (NULL-safe; *sub = NULL).
 * Unsubscribes without deleting the consumer: the server removes an
 * ephemeral consumer by itself seconds after its subscriber is gone. An
 * explicit delete (natsSubscription_Unsubscribe) races nats.c 3.4.1's
 * ordered-consumer reset after a reconnect: ASan caught a use-after-free
 * of the consumer name inside jsSub_deleteConsumer. */
void rs_js_follow_stop(natsSubscription **sub);

#endif
