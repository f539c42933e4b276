/*
 * dlq.c - poison input. A command we can never carry out (undecodable,
 * unknown run, missing agent, refused by decide, redelivered too often) is
 * copied to dlq.orchestrator with the reason and terminated, so one bad
 * message never blocks the runs behind it.
 *
 * A child run's run.start that cannot be carried out (its agent is
 * missing, say) would leave the parent waiting for ever: its parent is
 * told instead, with a child.done "failed" (code child_not_started).
 */
#include <string.h>

#include <stdio.h>
#include <stdlib.h>

#include "orch.h"
#include "rs_log.h"

void
rs_orch_trace_id_of(const char *tp, char out[33])
{
	out[0] = '\0';
	if (tp != NULL && strlen(tp) >= 35 && tp[2] == '-') {
		memcpy(out, tp + 3, 32);
		out[32] = '\0';
	}
}

void
rs_orch_poison(orch *o, natsMsg *msg, const char *run_id, const char *reason)
{
	jsMsgMetaData *meta = NULL;
	uint64_t seq = 0;

	if (natsMsg_GetMetaData(&meta, msg) == NATS_OK) {
		seq = meta->Sequence.Stream;
		jsMsgMetaData_Destroy(meta);
	}
	rs_log(RS_LOG_WARN, run_id, NULL, "poison command on %s: %s", natsMsg_GetSubject(msg), reason);
	rs_metric_inc(rs_orch_om.dead_letters);
	/* If the DLQ itself is down we still terminate: the alternative is a
	 * hot loop redelivering the same bad message. */
	rs_dlq_publish(o->nats.js, "orchestrator", natsMsg_GetSubject(msg), seq,
	               natsMsg_GetData(msg), natsMsg_GetDataLength(msg), reason);
	natsMsg_Term(msg, NULL);
}

void
rs_orch_poison_tell_parent(orch *o, const rs_cmd *c, const char *reason)
{
	rs_cmd done;
	char subj[160], id[160], *buf = NULL;
	size_t len = 0;
	natsMsg *m = NULL;
	rs_status st;

	if (c->type != RS_CMD_RUN_START || c->parent_run_id == NULL)
		return;
	memset(&done, 0, sizeof(done));
	done.type = RS_CMD_CHILD_DONE;
	snprintf(done.run_id, sizeof(done.run_id), "%s", c->parent_run_id);
	snprintf(done.tenant, sizeof(done.tenant), "%s", c->tenant);
	snprintf(done.traceparent, sizeof(done.traceparent), "%s", c->traceparent);
	done.child_run_id = (char *)c->run_id;
	done.child_status = "failed";
	done.output = json_null();
	done.child_error = json_pack("{s:s, s:s, s:s, s:b}", "code", "child_not_started",
	                             "message", reason, "class", "permanent", "retryable", 0);
	st = rs_cmd_encode(&done, &buf, &len);
	json_decref(done.child_error);
	if (st == RS_OK) {
		rs_cmd_subject(done.tenant, done.run_id, subj, sizeof(subj));
		rs_cmd_msg_id(&done, id, sizeof(id));
		st = rs_nats_msg(&m, subj, buf, (int)len, "Runstream-Type", "child.done", NULL);
	}
	if (st == RS_OK)
		st = rs_js_publish(o->nats.js, m, id, -1, 5000, NULL, NULL);
	if (st != RS_OK)
		rs_log(RS_LOG_WARN, c->run_id, NULL, "cannot tell parent %s: %s", c->parent_run_id,
		       rs_status_str(st));
	natsMsg_Destroy(m);
	free(buf);
}
