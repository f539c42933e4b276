/*
 * scheduler.c - fires schedules (docs/api.md "Schedules"): a thread that,
 * every RS_ORCH_SCHEDULER_TICK_MS, reads the KV bucket `schedules` (the api
 * writes the definitions), works out each active schedule's due ticks
 * since its last_tick_ms (common/rs_sched.h: cron in a zone or interval,
 * catch-up skip|one|all, bounded) and starts one run per tick.
 *
 * Exactly one run per tick with any number of instances, without a leader:
 * the run id is derived from (tenant, schedule id, tick) (rs_sched_run_id),
 * so every instance that fires a tick publishes the same run.start
 * (Nats-Msg-Id start-<run_id>, de-duplicated by CMDS within its window)
 * for the same run (after the window, the state machine decides nothing
 * for a run.start of a run that exists). last_tick_ms is then advanced by
 * compare-and-set; losing that race only means another instance advanced
 * it. A crash between the publish and the advance fires the same ticks
 * again: the same runs, so nothing new. Downtime: the next pass sees the
 * ticks missed and applies the schedule's catch-up policy.
 *
 * The definitions come from a watch of the bucket (kvStore_WatchAll), kept
 * in memory: a pass costs no round trip unless a tick is due. Why not a
 * listing per pass (kvStore_Keys, as before session 8): each listing
 * creates and deletes an ephemeral consumer, a proposal to the JetStream
 * meta group of a cluster, once a second per instance for as long as the
 * fleet runs (bench/chaos: the nodes' logs were mostly those, through every
 * leader election). The watch is made again every RESYNC_MS, and whenever
 * it fails, so that an update it missed is missed for at most that long.
 * All on the gate's NATS connection, on this thread (never the engine's).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "orch.h"
#include "rs_event.h"
#include "rs_json.h"
#include "rs_log.h"
#include "rs_map.h"
#include "rs_mem.h"
#include "rs_sched.h"
#include "rs_time.h"

#define MAX_TICKS_PER_PASS 100
#define ZONE_CACHE 64
#define RESYNC_MS 60000   /* the watch is made again this often */

/* A schedule as the watch last brought it (or as we last wrote it). */
typedef struct {
	uint64_t rev;
	json_t *s;
} sched_ent;

static void
sched_ent_free(void *v)
{
	sched_ent *e = v;

	json_decref(e->s);
	free(e);
}

/* Zones are immutable once read: kept for the life of the process. */
static struct { char name[72]; rs_tz *tz; } zones[ZONE_CACHE];

static const rs_tz *
zone(const char *name)
{
	char err[160];
	int i;

	for (i = 0; i < ZONE_CACHE && zones[i].tz != NULL; i++)
		if (strcmp(zones[i].name, name) == 0)
			return zones[i].tz;
	if (i == ZONE_CACHE)
		i = ZONE_CACHE - 1;   /* full: reuse the last slot */
	rs_tz_free(zones[i].tz);
	zones[i].tz = NULL;
	if (rs_tz_load(name, NULL, &zones[i].tz, err, sizeof(err)) != RS_OK) {
		rs_warn("scheduler: %s", err);
		return NULL;
	}
	snprintf(zones[i].name, sizeof(zones[i].name), "%s", name);
	return zones[i].tz;
}

/* Publish the registry entry and run.start of one tick's run. */
static rs_status
start_tick(orch *o, const char *tenant, const char *id, json_t *s, int64_t tick)
{
	const char *agent = json_string_value(json_object_get(s, "agent"));
	const char *version = json_string_value(json_object_get(s, "version"));
	char run_id[37], subj[200], msgid[96], key[200], ver[72] = "", created[40];
	char *buf = NULL, *reg = NULL;
	size_t len = 0;
	kvEntry *e = NULL;
	natsMsg *m = NULL;
	json_t *rj;
	rs_cmd c;
	rs_status st;

	if (version == NULL) {
		snprintf(key, sizeof(key), "%s.%s.latest", tenant, agent);
		if (kvStore_Get(&e, o->agents_kv, key) != NATS_OK) {
			rs_warn("scheduler: schedule %s.%s: agent %s has no latest version", tenant, id,
			        agent);
			return RS_ENOTFOUND;
		}
		/* {"version": "<id>"} (services/api/agents.c) */
		{
			json_t *lv = NULL;
			char perr[64];
			if (rs_json_parse(kvEntry_ValueString(e), (size_t)kvEntry_ValueLen(e), &lv, perr,
			                  sizeof(perr)) == RS_OK &&
			    json_string_value(json_object_get(lv, "version")) != NULL)
				snprintf(ver, sizeof(ver), "%s",
				         json_string_value(json_object_get(lv, "version")));
			json_decref(lv);
		}
		kvEntry_Destroy(e);
		if (ver[0] == '\0')
			return RS_ENOTFOUND;
		version = ver;
	}
	rs_sched_run_id(tenant, id, tick, run_id);
	memset(&c, 0, sizeof(c));
	c.type = RS_CMD_RUN_START;
	snprintf(c.run_id, sizeof(c.run_id), "%s", run_id);
	snprintf(c.tenant, sizeof(c.tenant), "%s", tenant);
	c.agent = (char *)agent;
	c.version = (char *)version;
	c.input = json_object_get(s, "input");
	c.schedule_id = (char *)id;
	c.schedule_tick = tick;
	if ((st = rs_cmd_encode(&c, &buf, &len)) != RS_OK)
		return st;
	rs_time_rfc3339(tick, created, sizeof(created));
	rj = json_pack("{s:s, s:s, s:s, s:s, s:o?}", "agent", agent, "version", version, "created_at",
	               created, "schedule_id", id, "start", json_loadb(buf, len, 0, NULL));
	reg = rs_json_dump(rj);
	json_decref(rj);
	snprintf(subj, sizeof(subj), "$KV.runs.%s.%s", tenant, run_id);
	snprintf(msgid, sizeof(msgid), "reg-%s", run_id);
	st = rs_nats_msg(&m, subj, reg, (int)strlen(reg), NULL);
	if (st == RS_OK)
		st = rs_js_publish(o->gate_nats.js, m, msgid, -1, 5000, NULL, NULL);
	natsMsg_Destroy(m);
	m = NULL;
	if (st == RS_OK) {
		rs_cmd_subject(tenant, run_id, subj, sizeof(subj));
		rs_cmd_msg_id(&c, msgid, sizeof(msgid));
		st = rs_nats_msg(&m, subj, buf, (int)len, "Runstream-Type", "run.start", NULL);
		if (st == RS_OK)
			st = rs_js_publish(o->gate_nats.js, m, msgid, -1, 5000, NULL, NULL);
		natsMsg_Destroy(m);
	}
	free(buf);
	free(reg);
	if (st == RS_OK)
		rs_metric_inc(rs_orch_om.schedule_runs);
	return st;
}

/* One schedule: fire what is due, advance last_tick_ms (compare-and-set
 * on the revision we know; on success that is our new copy). */
static void
pass_one(orch *o, const char *kvkey, sched_ent *ent, int64_t now)
{
	json_t *s = json_deep_copy(ent->s);
	char err[200], tenant[72], *dot, *out;
	const char *id, *cron_s, *zone_s;
	rs_cron cron;
	rs_sched_timing t = { NULL, NULL, 0, 0 };
	rs_catchup policy;
	int64_t ticks[MAX_TICKS_PER_PASS], last, adv;
	size_t n, max;
	uint64_t rev = ent->rev, newrev = 0;

	if (s == NULL)
		rs_oom(0);
	if ((dot = strchr(kvkey, '.')) == NULL || (size_t)(dot - kvkey) >= sizeof(tenant))
		goto cleanup;
	snprintf(tenant, sizeof(tenant), "%.*s", (int)(dot - kvkey), kvkey);
	if (json_is_true(json_object_get(s, "paused")))
		goto cleanup;
	id = json_string_value(json_object_get(s, "id"));
	cron_s = json_string_value(json_object_get(s, "cron"));
	zone_s = json_string_value(json_object_get(s, "timezone"));
	if (id == NULL || json_string_value(json_object_get(s, "agent")) == NULL)
		goto cleanup;
	if (cron_s != NULL) {
		if (rs_cron_parse(cron_s, &cron, err, sizeof(err)) != RS_OK ||
		    (t.tz = zone(zone_s ? zone_s : "UTC")) == NULL)
			goto cleanup;
		t.cron = &cron;
	} else {
		t.interval_ms = json_integer_value(json_object_get(s, "interval_s")) * 1000;
		t.anchor_ms = json_integer_value(json_object_get(s, "anchor_ms"));
		if (t.interval_ms <= 0)
			goto cleanup;
	}
	if (rs_catchup_parse(json_string_value(json_object_get(s, "catch_up")), &policy) != RS_OK)
		policy = RS_CATCHUP_ONE;
	max = (size_t)json_integer_value(json_object_get(s, "max_catch_up"));
	if (max == 0 || max > MAX_TICKS_PER_PASS)
		max = MAX_TICKS_PER_PASS;
	last = json_integer_value(json_object_get(s, "last_tick_ms"));
	if (rs_sched_due(&t, last, now, o->cfg.schedule_grace_ms, policy, max, ticks,
	                 MAX_TICKS_PER_PASS, &n, &adv) != RS_OK || adv == last)
		goto cleanup;
	for (size_t i = 0; i < n; i++)
		if (start_tick(o, tenant, id, s, ticks[i]) != RS_OK)
			goto cleanup;   /* not advanced: the next pass tries again */
	json_object_set_new(s, "last_tick_ms", json_integer(adv));
	out = rs_json_dump(s);
	if (out != NULL && kvStore_Update(&newrev, o->schedules_kv, kvkey, out, (int)strlen(out), rev)
	    == NATS_OK) {
		json_decref(ent->s);
		ent->s = json_incref(s);
		ent->rev = newrev;
	} else {
		/* Another instance advanced it (the watch brings its
		 * write), or no answer: the next pass fires the same ticks,
		 * the same runs. */
		rs_debug("scheduler: %s not advanced here", kvkey);
	}
	free(out);
cleanup:
	json_decref(s);
}

/* A change the watch brought: keep the newest revision of each key. */
static void
apply_entry(rs_map *live, kvEntry *e)
{
	const char *key = kvEntry_Key(e);
	sched_ent *cur = rs_map_get(live, key), *n;
	uint64_t rev = kvEntry_Revision(e);
	json_t *s = NULL;
	char err[200];

	if (cur != NULL && cur->rev >= rev)
		return;   /* our own write came first */
	if (kvEntry_Operation(e) != kvOp_Put ||
	    rs_json_parse(kvEntry_ValueString(e), (size_t)kvEntry_ValueLen(e), &s, err, sizeof(err)) != RS_OK) {
		rs_map_del(live, key);
		return;
	}
	n = rs_xmalloc(sizeof(*n));
	n->rev = rev;
	n->s = s;
	if (rs_map_put(live, key, n) != RS_OK)
		rs_oom(0);
}

static void *
sched_main(void *arg)
{
	orch *o = arg;
	kvWatcher *w = NULL;
	rs_map live;
	int64_t next_pass = 0, watched_at = 0;
	int loaded = 0;   /* the watch has delivered every current value */

	rs_map_init(&live, sched_ent_free);
	while (!atomic_load(&o->stopping)) {
		int64_t now = rs_now_ms();
		kvEntry *e = NULL;
		natsStatus s;

		if (w != NULL && now - watched_at >= RESYNC_MS) {
			kvWatcher_Destroy(w);
			w = NULL;
		}
		if (w == NULL) {
			if (kvStore_WatchAll(&w, o->schedules_kv, NULL) != NATS_OK) {
				w = NULL;
				usleep(1000 * 1000);
				continue;
			}
			watched_at = now;
			loaded = 0;
			rs_map_free(&live);
			rs_map_init(&live, sched_ent_free);
		}
		if (loaded && now >= next_pass) {
			size_t i = 0;
			rs_map_ent *ent = NULL;

			while ((ent = rs_map_next(&live, &i, ent)) != NULL && !atomic_load(&o->stopping))
				pass_one(o, ent->key, ent->val, now);
			next_pass = now + o->cfg.scheduler_tick_ms;
		}
		s = kvWatcher_Next(&e, w, 100);   /* short: stopping is checked between */
		if (s == NATS_TIMEOUT)
			continue;
		if (s != NATS_OK) {
			kvWatcher_Destroy(w);
			w = NULL;
			continue;
		}
		if (e == NULL)
			loaded = 1;   /* the end of the current values */
		else
			apply_entry(&live, e);
		kvEntry_Destroy(e);
	}
	if (w != NULL)
		kvWatcher_Destroy(w);
	rs_map_free(&live);
	return NULL;
}

rs_status
rs_orch_scheduler_start(orch *o)
{
	if (o->cfg.scheduler_tick_ms == 0)
		return RS_OK;
	if (js_KeyValue(&o->schedules_kv, o->gate_nats.js, "schedules") != NATS_OK) {
		rs_error("cannot open KV bucket schedules (run `runctl streams apply`)");
		return RS_ENOTFOUND;
	}
	if (pthread_create(&o->sched_thread, NULL, sched_main, o) != 0)
		return RS_ERR;
	return RS_OK;
}

void
rs_orch_scheduler_join(orch *o)
{
	if (o->sched_thread)
		pthread_join(o->sched_thread, NULL);
	o->sched_thread = 0;
	if (o->schedules_kv != NULL)
		kvStore_Destroy(o->schedules_kv);
	o->schedules_kv = NULL;
	for (int i = 0; i < ZONE_CACHE; i++) {
		rs_tz_free(zones[i].tz);
		zones[i].tz = NULL;
	}
}
