/*
 * dlq.c - poison input. A command we can never carry out (undecodable,
 * unknown run, missing agent, refused by decide, redelivered too often) is
 * copied to dlq.orchestrator with the reason and terminated, so one bad
 * message never blocks the runs behind it.
 */
#include <string.h>

#include "orch.h"
#include "rs_log.h"

void
trace_id_of(const char *tp, char out[33])
{
	out[0] = '\0';
	if (tp != NULL && strlen(tp) >= 35 && tp[2] == '-') {
		memcpy(out, tp + 3, 32);
		out[32] = '\0';
	}
}

void
poison(orch *o, natsMsg *msg, const char *run_id, const char *reason)
{
	jsMsgMetaData *meta = NULL;
	uint64_t seq = 0;

	if (natsMsg_GetMetaData(&meta, msg) == NATS_OK) {
		seq = meta->Sequence.Stream;
		jsMsgMetaData_Destroy(meta);
	}
	rs_log(RS_LOG_WARN, run_id, NULL, "poison command on %s: %s", natsMsg_GetSubject(msg), reason);
	rs_metric_inc(om.dead_letters);
	/* If the DLQ itself is down we still terminate: the alternative is a
	 * hot loop redelivering the same bad message. */
	rs_dlq_publish(o->nats.js, "orchestrator", natsMsg_GetSubject(msg), seq,
	               natsMsg_GetData(msg), natsMsg_GetDataLength(msg), reason);
	natsMsg_Term(msg, NULL);
}
