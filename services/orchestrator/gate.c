/*
 * gate.c - admission: concurrency keys and the tenant limit on running
 * runs (docs/agents.md "concurrency", docs/architecture.md "Admission").
 *
 * A gated run (rs_run_gate) is created queued and holds nothing. When its
 * run.created is durable the engine calls rs_orch_gate_settle(): the run joins its
 * key's gate, then (once it holds a key slot) the tenant's gate; holding
 * every slot it needs, it is sent run.admit (Nats-Msg-Id admit-<run_id>),
 * which the state machine turns into run.started. When a gated run is
 * finished, rs_orch_gate_settle() makes it leave both gates; the runs that get the
 * freed slots (the head of the queue, FIFO) go on to the next gate or are
 * admitted.
 *
 * The state is in KV `gates` (rs_gate.h), changed only by compare-and-set
 * on the entry's revision, so instances share it and a restart loses
 * nothing. The engine calls in before acking the command that caused the
 * change, and a failure naks the command: a crash before the KV write
 * redelivers the command and the join/leave happens then (both are
 * idempotent). A crash after a KV write but before the run.admit of a
 * promoted run is repaired when the command is redelivered: leave finds the
 * run already gone and re-sends run.admit to every run holding a slot
 * (de-duplicated by CMDS and ignored by runs already started). Only on a
 * redelivery: late commands of finished runs (a timer firing after the end)
 * are common and must not cost a publish per slot holder each. Any
 * command reaching a run that still waits re-joins it (a no-op, or an
 * admit re-sent if it holds its slots).
 *
 * Synchronous on a NATS connection of its own (like the reconciliation):
 * a few KV round trips per gated run start and end, under the engine
 * mutex. Runs that are not gated never come here.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orch.h"
#include "rs_mem.h"
#include "rs_gate.h"
#include "rs_log.h"

#define CAS_RETRIES 50

typedef enum { OP_JOIN, OP_LEAVE } gate_op;

static rs_status
send_admit(orch *o, const char *tenant, const char *run_id)
{
	rs_cmd c;
	char *buf = NULL, subj[160], msgid[96];
	size_t len = 0;
	natsMsg *m = NULL;
	rs_status st;

	memset(&c, 0, sizeof(c));
	c.type = RS_CMD_RUN_ADMIT;
	snprintf(c.run_id, sizeof(c.run_id), "%s", run_id);
	snprintf(c.tenant, sizeof(c.tenant), "%s", tenant);
	if ((st = rs_cmd_encode(&c, &buf, &len)) != RS_OK)
		return st;
	rs_cmd_subject(tenant, run_id, subj, sizeof(subj));
	rs_cmd_msg_id(&c, msgid, sizeof(msgid));
	st = rs_nats_msg(&m, subj, buf, (int)len, "Runstream-Type", "run.admit", NULL);
	if (st == RS_OK)
		st = rs_js_publish(o->gate_nats.js, m, msgid, -1, 5000, NULL, NULL);
	natsMsg_Destroy(m);
	free(buf);
	rs_metric_inc(rs_orch_om.gate_admits);
	return st;
}

/*
 * One compare-and-set change of one gate. JOIN: *res is the outcome.
 * LEAVE: promoted receives the run ids given a slot; *found whether
 * run_id was there (when it was not, running receives the ids holding a
 * slot, for the repair above).
 */
static rs_status
change(orch *o, const char *kvkey, gate_op op, int64_t limit, const char *run_id,
       rs_gate_result *res, json_t *promoted, json_t *running, int *found)
{
	for (int attempt = 0; attempt < CAS_RETRIES; attempt++) {
		kvEntry *e = NULL;
		rs_gate g;
		uint64_t rev = 0;
		natsStatus s = kvStore_Get(&e, o->gates_kv, kvkey);
		int changed = 0;
		char *out;

		if (s != NATS_OK && s != NATS_NOT_FOUND)
			return rs_nats_status(s, 0);
		if (s == NATS_OK)
			rev = kvEntry_Revision(e);
		if (rs_gate_parse(s == NATS_OK ? kvEntry_ValueString(e) : NULL,
		                  s == NATS_OK ? (size_t)kvEntry_ValueLen(e) : 0, &g) != RS_OK) {
			rs_error("gate %s: unreadable entry, starting it afresh", kvkey);
			rs_gate_parse(NULL, 0, &g);
		}
		kvEntry_Destroy(e);
		if (promoted != NULL)
			json_array_clear(promoted);
		if (op == OP_JOIN) {
			*res = rs_gate_join(&g, limit, run_id, &changed);
		} else {
			*found = rs_gate_leave(&g, limit, run_id, promoted, &changed);
			if (!*found && running != NULL)
				json_array_extend(running, g.running);
		}
		if (!changed) {
			rs_gate_free(&g);
			return RS_OK;
		}
		out = rs_gate_dump(&g);
		rs_gate_free(&g);
		if (out == NULL)
			rs_oom(0);
		s = rev ? kvStore_Update(NULL, o->gates_kv, kvkey, out, (int)strlen(out), rev)
		        : kvStore_Create(NULL, o->gates_kv, kvkey, out, (int)strlen(out));
		free(out);
		if (s == NATS_OK)
			return RS_OK;
		/* Another instance changed it first (wrong last sequence, or the
		 * key exists): read again. */
		rs_metric_inc(rs_orch_om.gate_conflicts);
		if (json_is_array(running))
			json_array_clear(running);
	}
	rs_warn("gate %s: %d compare-and-set conflicts in a row", kvkey, CAS_RETRIES);
	return RS_ECONFLICT;
}

/* run_id holds its key slot (or has no key): join the tenant gate, and
 * admit it when it holds that too. */
static rs_status
after_key(orch *o, const char *tenant, const char *run_id, int64_t tenant_limit)
{
	char kvkey[200];
	rs_gate_result res = RS_GATE_ADMITTED;
	rs_status st;

	if (tenant_limit > 0) {
		rs_gate_kv_key(tenant, NULL, kvkey, sizeof(kvkey));
		if ((st = change(o, kvkey, OP_JOIN, tenant_limit, run_id, &res, NULL, NULL, NULL))
		    != RS_OK)
			return st;
		if (res == RS_GATE_FULL)
			return RS_EUNAVAIL;
	}
	return res == RS_GATE_ADMITTED ? send_admit(o, tenant, run_id) : RS_OK;
}

static rs_status
join(orch *o, const char *tenant, const char *run_id, const char *key, int64_t limit,
     int64_t tenant_limit)
{
	char kvkey[200];
	rs_gate_result res = RS_GATE_ADMITTED;
	rs_status st;

	if (key != NULL) {
		rs_gate_kv_key(tenant, key, kvkey, sizeof(kvkey));
		if ((st = change(o, kvkey, OP_JOIN, limit, run_id, &res, NULL, NULL, NULL)) != RS_OK)
			return st;
		if (res == RS_GATE_FULL) {
			rs_warn("gate %s is full (%d runs): run %s waits for room", kvkey,
			        RS_GATE_MAX_IDS, run_id);
			return RS_EUNAVAIL;
		}
		if (res == RS_GATE_QUEUED)
			return RS_OK;
	}
	return after_key(o, tenant, run_id, tenant_limit);
}

static rs_status
leave(orch *o, const char *tenant, const char *run_id, const char *key, int64_t limit,
      int64_t tenant_limit, int repair)
{
	char kvkey[200];
	json_t *promoted = json_array(), *running = json_array(), *p;
	rs_status st = RS_OK;
	size_t i;
	int found = 1;

	/* The tenant gate first: a slot freed there may go to a run that
	 * already holds its key slot. */
	if (tenant_limit > 0) {
		rs_gate_kv_key(tenant, NULL, kvkey, sizeof(kvkey));
		st = change(o, kvkey, OP_LEAVE, tenant_limit, run_id, NULL, promoted, running, &found);
		json_array_foreach(promoted, i, p)
			if (st == RS_OK)
				st = send_admit(o, tenant, json_string_value(p));
		if (!found && repair)
			json_array_foreach(running, i, p)
				if (st == RS_OK)
					st = send_admit(o, tenant, json_string_value(p));
	}
	if (st == RS_OK && key != NULL) {
		json_array_clear(promoted);
		json_array_clear(running);
		rs_gate_kv_key(tenant, key, kvkey, sizeof(kvkey));
		st = change(o, kvkey, OP_LEAVE, limit, run_id, NULL, promoted, running, &found);
		json_array_foreach(promoted, i, p)
			if (st == RS_OK)
				st = after_key(o, tenant, json_string_value(p), tenant_limit);
		if (!found && repair)
			json_array_foreach(running, i, p)
				if (st == RS_OK)
					st = after_key(o, tenant, json_string_value(p), tenant_limit);
	}
	json_decref(promoted);
	json_decref(running);
	return st;
}

rs_status
rs_orch_gate_settle(orch *o, const rs_run *r, int redelivered)
{
	const char *key;
	int64_t limit, tenant_limit;
	rs_run_status s = rs_run_get_status(r);

	if (!rs_run_gate(r, &key, &limit, &tenant_limit))
		return RS_OK;
	if (o->gates_kv == NULL)
		return RS_EIO;
	if (s == RS_RUN_QUEUED)
		return join(o, rs_run_get_tenant(r), rs_run_get_id(r), key, limit, tenant_limit);
	if (rs_run_status_terminal(s))
		return leave(o, rs_run_get_tenant(r), rs_run_get_id(r), key, limit, tenant_limit,
		             redelivered);
	return RS_OK;   /* running: it holds its slots */
}

rs_status
rs_orch_gate_start(orch *o)
{
	char name[160];

	snprintf(name, sizeof(name), "%s-gate", o->cfg.base.instance_id);
	if (rs_nats_connect(&o->gate_nats, o->cfg.base.nats_url, name, NULL, 10000) != RS_OK)
		return RS_EIO;
	if (js_KeyValue(&o->gates_kv, o->gate_nats.js, "gates") != NATS_OK) {
		rs_error("cannot open KV bucket gates (run `runctl streams apply`)");
		return RS_ENOTFOUND;
	}
	return RS_OK;
}

void
rs_orch_gate_stop(orch *o)
{
	if (o->gates_kv != NULL)
		kvStore_Destroy(o->gates_kv);
	o->gates_kv = NULL;
	if (o->gate_nats.nc != NULL)
		rs_nats_close(&o->gate_nats, 1000);
}
