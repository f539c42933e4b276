/*
 * rs_logread.h - single-message reads of a stream that must be current.
 *
 * A run's newest event (read-your-writes, the orchestrator's expectation
 * for its next append), a history walk by next_by_subj: every such read
 * must come from the state every append was acknowledged in. With
 * allow_direct, nats-server 2.9.10 lets any replica answer DIRECT.GET, and
 * a replica that just restarted answers from its restored, older store at
 * once (it subscribes to direct gets when the stream is recovered, before
 * it has caught up; one that resumed after a pause does the same): a run
 * looks shorter than it is or unknown, a history walk ends early, and two
 * replicas may answer the successive gets of one walk. On a cluster these
 * reads go to the stream leader instead, STREAM.MSG.GET, whose answer is
 * a JSON envelope turned back here into a natsMsg shaped like a direct
 * get's (data, subject, the stored headers, Nats-Sequence). On one node
 * the only replica is the leader and the direct get (no JSON, no base64)
 * stays.
 */
#ifndef RS_LOGREAD_H
#define RS_LOGREAD_H

#include <nats/nats.h>
#include <stdint.h>
#include "rs_status.h"

typedef struct {
	natsConnection *nc;
	jsCtx *js;
	char stream[64];
	int leader;            /* 1: STREAM.MSG.GET to the leader; 0: DIRECT.GET */
	int64_t timeout_ms;
} rs_logread;

/* Set up reads of `stream`. mode: "auto" or NULL/"" (the leader when the
 * stream has replicas > 1: one stream-info request now), "direct",
 * "leader"; RS_EINVAL for anything else. Borrows nc and js. */
rs_status rs_logread_init(rs_logread *lr, natsConnection *nc, jsCtx *js, const char *stream,
                          const char *mode, int64_t timeout_ms);

/* One message, with the options of a direct get (Sequence + optional
 * NextBySubject, or LastBySubject). NATS_NOT_FOUND when there is none.
 * Caller owns *m. */
natsStatus rs_logread_get(const rs_logread *lr, natsMsg **m, const jsDirectGetMsgOptions *o);

/* The leader's STREAM.MSG.GET answer (JSON) as a natsMsg: NATS_NOT_FOUND
 * for its 404, NATS_ERR for anything malformed or out of bounds. Exposed
 * for the fuzzers and unit tests. */
natsStatus rs_logread_envelope(natsMsg **out, const char *data, size_t len);

#endif
