/*
 * registry.c - what rs-api knows about a run without reading its history:
 * does it exist (its newest event on the log, else its entry in KV `runs`),
 * the entry itself (written with run.start, read as the "queued" view of a
 * run with no events yet), and the runseq/type of one stored event.
 *
 * Any thread. Every file that needs to know "is this run there, is it
 * finished" asks here, so none of them depends on the file that writes
 * runs (runs_write.c) or on the live hub (live.c) for it.
 */
#include "api.h"
#include "rs_event.h"
#include "rs_id.h"
#include "rs_json.h"
#include "rs_time.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TYPE_MAX 64     /* longer than any event type name */

rs_status
rs_api_msg_meta(natsMsg *m, uint64_t *runseq, char type[64], int *terminal)
{
	const char *h = NULL, *t;
	json_t *v = NULL, *rs;
	json_error_t jerr;
	rs_event_type et, et2;
	rs_status st = RS_EINVAL;

	v = json_loadb(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), 0, &jerr);
	if (v == NULL)
		return RS_EINVAL;
	rs = json_object_get(v, "runseq");
	if (!json_is_integer(rs) || json_integer_value(rs) < 1)
		goto cleanup;
	*runseq = (uint64_t)json_integer_value(rs);
	/* The type goes into the SSE event: line: only a known event type
	 * name (so no CR/LF, bounded). Header and CloudEvent must agree. */
	if (natsMsgHeader_Get(m, "Runstream-Type", &h) != NATS_OK)
		h = NULL;
	t = json_string_value(json_object_get(v, "type"));
	if (h != NULL && (strlen(h) >= TYPE_MAX || rs_event_type_parse(h, &et) != RS_OK))
		goto cleanup;
	if (t != NULL && (strlen(t) >= TYPE_MAX || rs_event_type_parse(t, &et2) != RS_OK))
		goto cleanup;
	if (h == NULL && t == NULL)
		goto cleanup;
	if (h == NULL)
		et = et2;
	else if (t != NULL && et != et2)
		goto cleanup;
	snprintf(type, 64, "%s", rs_event_type_name(et));
	*terminal = rs_event_type_terminal(et);
	st = RS_OK;
cleanup:
	json_decref(v);
	return st;
}

rs_status
rs_api_run_lookup(rs_api *app, const char *tenant, const char *run_id, uint64_t *last_seq,
                  int *terminal)
{
	jsDirectGetMsgOptions o;
	natsMsg *m = NULL;
	kvEntry *e = NULL;
	char subj[160], key[160], type[64];
	natsStatus s;

	*last_seq = 0;
	*terminal = 0;
	if (!rs_id_is_uuid(run_id))
		return RS_ENOTFOUND;
	rs_event_subject(tenant, run_id, subj, sizeof(subj));
	jsDirectGetMsgOptions_Init(&o);
	o.LastBySubject = subj;
	s = rs_api_log_get(app, &m, &o);
	if (s == NATS_OK) {
		rs_status st = rs_api_msg_meta(m, last_seq, type, terminal);
		natsMsg_Destroy(m);
		return st == RS_OK ? RS_OK : RS_EIO;
	}
	if (s != NATS_NOT_FOUND)
		return rs_nats_status(s, 0);
	snprintf(key, sizeof(key), "%s.%s", tenant, run_id);
	s = kvStore_Get(&e, app->kv_runs, key);
	if (s == NATS_OK) {
		/* No events, but registered: created and not yet started, or
		 * archived and purged (runctl archive marks the entry first):
		 * then it is finished, its history elsewhere. A plain search,
		 * not a parse: the entry is ours and small. */
		const char *v = kvEntry_ValueString(e);

		*terminal = v != NULL && strstr(v, "\"archived_at\"") != NULL;
	}
	kvEntry_Destroy(e);
	if (s == NATS_OK)
		return RS_OK;
	return s == NATS_NOT_FOUND ? RS_ENOTFOUND : rs_nats_status(s, 0);
}

rs_status
rs_api_registry_msg(natsMsg **out, const char *tenant, const char *run_id, const char *agent,
                    const char *version, const char *start, size_t start_len, char msgid[64])
{
	char subj[160], created[40], *buf;
	json_t *reg;
	rs_status st;

	*out = NULL;
	rs_time_rfc3339(rs_id_uuidv7_ms(run_id), created, sizeof(created));
	/* "start": the run.start command itself, the second copy the
	 * orchestrator starts the run from if CMDS lost the first one
	 * (services/orchestrator/reconcile.c). */
	reg = json_pack("{s:s, s:s, s:s, s:o?}", "agent", agent, "version", version, "created_at",
	                created, "start", start != NULL ? json_loadb(start, start_len, 0, NULL) : NULL);
	buf = reg != NULL ? rs_json_dump(reg) : NULL;
	json_decref(reg);
	if (buf == NULL)
		return RS_ENOMEM;
	snprintf(msgid, 64, "reg-%s", run_id);
	snprintf(subj, sizeof(subj), "$KV.runs.%s.%s", tenant, run_id);
	st = rs_nats_msg(out, subj, buf, (int)strlen(buf), "Nats-Msg-Id", msgid, NULL);
	free(buf);
	return st;
}

/* The registry entry of a run with no events yet: a "queued" view. */
json_t *
rs_api_registry_view(rs_api *app, const char *tenant, const char *run_id)
{
	char key[160], err[128];
	kvEntry *e = NULL;
	json_t *reg = NULL, *v = NULL;

	snprintf(key, sizeof(key), "%s.%s", tenant, run_id);
	if (kvStore_Get(&e, app->kv_runs, key) == NATS_OK &&
	    rs_json_parse(kvEntry_ValueString(e), (size_t)kvEntry_ValueLen(e), &reg, err,
	                  sizeof(err)) == RS_OK)
		v = json_pack("{s:s, s:s, s:O?, s:O?, s:O?, s:i, s:[], s:[]}", "run_id", run_id,
		              "status", "queued", "agent", json_object_get(reg, "agent"),
		              "version", json_object_get(reg, "version"),
		              "created_at", json_object_get(reg, "created_at"), "last_seq", 0,
		              "steps", "tool_calls");
	json_decref(reg);
	kvEntry_Destroy(e);
	return v;
}
