/*
 * gates.c - where a queued run stands in its admission gates, for
 * GET /v1/runs/{id} (docs/api.md "Concurrency").
 *
 * Only for a run whose view says `queued`: its run.created (the first
 * message on its literal subject, one direct get) says whether it is
 * gated and by which key and limits; the gates are the KV `gates` entries
 * the orchestrator keeps (common/rs_gate.h). The answer gains
 *   "queue": {"gate": "concurrency"|"tenant", "key"?, "limit", "running",
 *             "position", "ahead"}
 * for the gate the run waits in (the key's first: a run joins the tenant
 * gate only once it holds a key slot). Costs nothing for runs that are
 * not queued; a gate that cannot be read leaves the view as it is.
 */
#include "api.h"
#include "rs_event.h"
#include "rs_gate.h"
#include "rs_log.h"

#include <stdio.h>
#include <string.h>

/* The gate entry at kvkey; 0 if read (g filled), -1 otherwise. */
static int
read_gate(rs_api *app, const char *kvkey, rs_gate *g)
{
	kvEntry *e = NULL;
	natsStatus s = kvStore_Get(&e, app->kv_gates, kvkey);
	rs_status st;

	if (s == NATS_NOT_FOUND)
		return rs_gate_parse(NULL, 0, g) == RS_OK ? 0 : -1;
	if (s != NATS_OK)
		return -1;
	st = rs_gate_parse(kvEntry_ValueString(e), (size_t)kvEntry_ValueLen(e), g);
	kvEntry_Destroy(e);
	return st == RS_OK ? 0 : -1;
}

static json_t *
describe(const rs_gate *g, const char *gate, const char *key, int64_t pos)
{
	json_t *q = json_pack("{s:s, s:I, s:I, s:I, s:I}", "gate", gate, "limit",
	                      (json_int_t)g->limit, "running",
	                      (json_int_t)json_array_size(g->running), "position", (json_int_t)pos,
	                      "ahead", (json_int_t)(pos > 0 ? pos - 1 : 0));
	if (key != NULL)
		json_object_set_new(q, "key", json_string(key));
	return q;
}

void
rs_api_gate_annotate(rs_api *app, const char *tenant, const char *run_id, json_t *view)
{
	jsDirectGetMsgOptions o;
	natsMsg *m = NULL;
	rs_event ev;
	rs_gate g;
	char subj[160], kvkey[200], err[128];
	const rs_ev_run_created *c;
	int64_t pos;

	const char *status = json_string_value(json_object_get(view, "status"));

	if (app->kv_gates == NULL || status == NULL || strcmp(status, "queued") != 0)
		return;
	rs_event_subject(tenant, run_id, subj, sizeof(subj));
	jsDirectGetMsgOptions_Init(&o);
	o.Sequence = 1;
	o.NextBySubject = subj;
	if (rs_api_log_get(app, &m, &o) != NATS_OK)
		return;
	if (rs_event_decode(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), &ev, err,
	                    sizeof(err)) != RS_OK) {
		natsMsg_Destroy(m);
		return;
	}
	natsMsg_Destroy(m);
	c = &ev.d.run_created;
	if (ev.type != RS_EV_RUN_CREATED || (c->concurrency_limit == 0 && c->tenant_limit == 0))
		goto cleanup;
	if (c->concurrency_limit > 0) {
		rs_gate_kv_key(tenant, c->concurrency_key ? c->concurrency_key : "", kvkey,
		               sizeof(kvkey));
		if (read_gate(app, kvkey, &g) != 0)
			goto cleanup;
		pos = rs_gate_position(&g, run_id);
		if (pos != 0 || c->tenant_limit == 0) {
			/* waits for a key slot (or is not in the gate yet: -1) */
			json_object_set_new(view, "queue", describe(&g, "concurrency",
			                                            c->concurrency_key, pos));
			rs_gate_free(&g);
			goto cleanup;
		}
		rs_gate_free(&g);
	}
	rs_gate_kv_key(tenant, NULL, kvkey, sizeof(kvkey));
	if (read_gate(app, kvkey, &g) != 0)
		goto cleanup;
	json_object_set_new(view, "queue", describe(&g, "tenant", NULL,
	                                            rs_gate_position(&g, run_id)));
	rs_gate_free(&g);
cleanup:
	rs_event_free(&ev);
}
