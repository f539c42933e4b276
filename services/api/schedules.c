/*
 * schedules.c - /v1/schedules: create, list, get, pause, resume, delete
 * (docs/api.md "Schedules"). A schedule is one entry of KV `schedules`,
 * <tenant>.<id>; the orchestrator's scheduler (services/orchestrator/
 * scheduler.c) fires it and advances its last_tick_ms. Everything here is
 * validated before it is stored (the cron expression parses, the zone is
 * in the tz database, the agent exists), so the scheduler never meets a
 * definition it cannot run. Changes other than create are compare-and-set
 * on the entry's revision, like the scheduler's.
 */
#include "api.h"
#include "request.h"
#include "rs_id.h"
#include "rs_json.h"
#include "rs_log.h"
#include "rs_sched.h"
#include "rs_time.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SCHEDULES_LISTED 1000
#define MAX_CATCH_UP 100

static void
unavailable(rs_api_job *job, const char *what)
{
	rs_api_problem_retry(job, 503, 1, "cannot %s now: KV schedules unavailable", what);
}

static int
have_bucket(rs_api *app, rs_api_job *job)
{
	if (app->kv_schedules == NULL) {
		unavailable(job, "use schedules");
		return 0;
	}
	return 1;
}

/* The public view of a stored schedule, with its next fire time. */
static json_t *
view(const json_t *s)
{
	json_t *v = json_deep_copy(s), *last = json_object_get(s, "last_tick_ms");
	const char *cron_s = json_string_value(json_object_get(s, "cron"));
	rs_sched_timing t = { NULL, NULL, 0, 0 };
	rs_cron cron;
	rs_tz *tz = NULL;
	char err[160], when[40];
	int64_t next = 0, after = json_integer_value(last);

	json_object_del(v, "last_tick_ms");
	json_object_del(v, "anchor_ms");
	if (json_integer_value(last) > 0) {
		rs_time_rfc3339(json_integer_value(last), when, sizeof(when));
		json_object_set_new(v, "last_tick_at", json_string(when));
	} else {
		json_object_set_new(v, "last_tick_at", json_null());
	}
	if (cron_s != NULL) {
		if (rs_cron_parse(cron_s, &cron, err, sizeof(err)) == RS_OK &&
		    rs_tz_load(json_string_value(json_object_get(s, "timezone")), NULL, &tz, err,
		               sizeof(err)) == RS_OK) {
			t.cron = &cron;
			t.tz = tz;
		}
	} else {
		t.interval_ms = json_integer_value(json_object_get(s, "interval_s")) * 1000;
		t.anchor_ms = json_integer_value(json_object_get(s, "anchor_ms"));
	}
	if (after < rs_now_ms())
		after = rs_now_ms();
	if (!json_is_true(json_object_get(s, "paused")) && (t.cron != NULL || t.interval_ms > 0) &&
	    rs_sched_next(&t, after, &next) == RS_OK) {
		rs_time_rfc3339(next, when, sizeof(when));
		json_object_set_new(v, "next_fire_at", json_string(when));
	} else {
		json_object_set_new(v, "next_fire_at", json_null());
	}
	rs_tz_free(tz);
	return v;
}

/* Validate a POST body into the stored form (new reference) or set a
 * problem and return NULL. */
static json_t *
validate(rs_api *app, rs_api_job *job)
{
	json_t *b = NULL, *v, *out = NULL;
	const char *k, *id = NULL, *agent = NULL, *version = NULL, *cron_s = NULL;
	const char *zone_s = "UTC", *catch_up = "one";
	int64_t interval = 0, max_catch_up = 10, next;
	char err[256], ver[17], gen[RS_UUID_LEN + 1], created[40];
	rs_catchup policy;
	rs_cron cron;
	rs_tz *tz = NULL;
	rs_status st;

	if (rs_json_parse(job->body, job->body_len, &b, err, sizeof(err)) != RS_OK) {
		rs_api_problem(job, 400, "%s", err);
		return NULL;
	}
	if (!json_is_object(b)) {
		rs_api_problem(job, 422, "body: must be an object");
		goto done;
	}
	json_object_foreach(b, k, v) {
		int ok = 1;
		if (strcmp(k, "id") == 0)
			ok = (id = json_string_value(v)) != NULL && rs_id_is_token(id, 64);
		else if (strcmp(k, "agent") == 0)
			ok = (agent = json_string_value(v)) != NULL && rs_id_is_token(agent, 64);
		else if (strcmp(k, "version") == 0)
			ok = (version = json_string_value(v)) != NULL && strlen(version) <= 64;
		else if (strcmp(k, "input") == 0)
			ok = json_is_object(v);
		else if (strcmp(k, "cron") == 0)
			ok = (cron_s = json_string_value(v)) != NULL;
		else if (strcmp(k, "timezone") == 0)
			ok = (zone_s = json_string_value(v)) != NULL;
		else if (strcmp(k, "interval_s") == 0)
			ok = json_is_integer(v) && (interval = json_integer_value(v)) >= 1 &&
			     interval <= 366 * 86400;
		else if (strcmp(k, "catch_up") == 0)
			ok = (catch_up = json_string_value(v)) != NULL &&
			     rs_catchup_parse(catch_up, &policy) == RS_OK;
		else if (strcmp(k, "max_catch_up") == 0)
			ok = json_is_integer(v) && (max_catch_up = json_integer_value(v)) >= 1 &&
			     max_catch_up <= MAX_CATCH_UP;
		else {
			rs_api_problem(job, 422, "%.64s: unknown member (body {\"id\"?, \"agent\", "
			               "\"version\"?, \"input\"?, \"cron\" + \"timezone\"? | \"interval_s\", "
			               "\"catch_up\"?, \"max_catch_up\"?})", k);
			goto done;
		}
		if (!ok) {
			rs_api_problem(job, 422, "%s: %s", k,
			    strcmp(k, "id") == 0 || strcmp(k, "agent") == 0 ? "must match [a-z0-9_-]{1,64}" :
			    strcmp(k, "interval_s") == 0 ? "must be an integer from 1 to 31622400" :
			    strcmp(k, "catch_up") == 0 ? "must be one of skip, one, all" :
			    strcmp(k, "max_catch_up") == 0 ? "must be an integer from 1 to 100" :
			    strcmp(k, "input") == 0 ? "must be an object" : "must be a string");
			goto done;
		}
	}
	if (agent == NULL) {
		rs_api_problem(job, 422, "agent: required");
		goto done;
	}
	if ((cron_s == NULL) == (interval == 0)) {
		rs_api_problem(job, 422, "exactly one of cron and interval_s");
		goto done;
	}
	if (cron_s == NULL && json_object_get(b, "timezone") != NULL) {
		rs_api_problem(job, 422, "timezone: only with cron");
		goto done;
	}
	if (cron_s != NULL) {
		if (rs_cron_parse(cron_s, &cron, err, sizeof(err)) != RS_OK) {
			rs_api_problem(job, 422, "%s", err);
			goto done;
		}
		if (rs_tz_load(zone_s, NULL, &tz, err, sizeof(err)) != RS_OK) {
			rs_api_problem(job, 422, "%s", err);
			goto done;
		}
		if (rs_cron_next(&cron, tz, rs_now_ms(), &next) != RS_OK) {
			rs_api_problem(job, 422, "cron: \"%s\" never fires (within 5 years)", cron_s);
			goto done;
		}
	}
	st = rs_api_agent_resolve(app, job->tenant, agent, version, ver);
	if (st == RS_ENOTFOUND) {
		rs_api_problem(job, 422, version ? "version: agent %s has no version %s"
		                                 : "agent: no agent named %s", agent, version);
		goto done;
	}
	if (st != RS_OK) {
		unavailable(job, "resolve the agent");
		goto done;
	}
	if (id == NULL) {
		rs_id_uuidv7(gen);
		id = gen;
	}
	rs_time_rfc3339(rs_now_ms(), created, sizeof(created));
	v = json_object_get(b, "input");
	out = json_pack("{s:s, s:s, s:o, s:s, s:I, s:b, s:I, s:s}", "id", id, "agent", agent,
	                "input", v != NULL ? json_incref(v) : json_object(),
	                "catch_up", catch_up, "max_catch_up", (json_int_t)max_catch_up,
	                "paused", 0, "last_tick_ms", (json_int_t)rs_now_ms(), "created_at", created);
	if (version != NULL)
		json_object_set_new(out, "version", json_string(ver));
	if (cron_s != NULL) {
		json_object_set_new(out, "cron", json_string(cron_s));
		json_object_set_new(out, "timezone", json_string(zone_s));
	} else {
		json_object_set_new(out, "interval_s", json_integer(interval));
		json_object_set_new(out, "anchor_ms", json_integer(rs_now_ms()));
	}
done:
	rs_tz_free(tz);
	json_decref(b);
	return out;
}

void
rs_api_schedules_create(rs_api *app, rs_api_job *job)
{
	json_t *s;
	char key[200], *txt;
	natsStatus ns;

	if (!have_bucket(app, job) || (s = validate(app, job)) == NULL)
		return;
	snprintf(key, sizeof(key), "%s.%s", job->tenant, json_string_value(json_object_get(s, "id")));
	txt = rs_json_dump(s);
	ns = kvStore_Create(NULL, app->kv_schedules, key, txt, (int)strlen(txt));
	free(txt);
	if (ns == NATS_OK) {
		snprintf(job->hdrs + strlen(job->hdrs), sizeof(job->hdrs) - strlen(job->hdrs),
		         "Location: /v1/schedules/%s\n", json_string_value(json_object_get(s, "id")));
		rs_info("api: tenant %s created schedule %s", job->tenant,
		        json_string_value(json_object_get(s, "id")));
		rs_api_json(job, 201, view(s));
	} else if (ns == NATS_ERR) {
		rs_api_problem(job, 409, "schedule %s exists", json_string_value(json_object_get(s, "id")));
	} else {
		unavailable(job, "store the schedule");
	}
	json_decref(s);
}

/* The entry at key: NATS_OK with *s and *rev, NATS_NOT_FOUND, another
 * status, or NATS_INVALID_ARG when it does not parse. */
static natsStatus
get_entry(rs_api *app, const char *key, json_t **s, uint64_t *rev)
{
	kvEntry *e = NULL;
	char err[128];
	natsStatus ns = kvStore_Get(&e, app->kv_schedules, key);

	*s = NULL;
	if (ns != NATS_OK)
		return ns;
	*rev = kvEntry_Revision(e);
	if (rs_json_parse(kvEntry_ValueString(e), (size_t)kvEntry_ValueLen(e), s, err,
	                  sizeof(err)) != RS_OK)
		ns = NATS_INVALID_ARG;
	kvEntry_Destroy(e);
	return ns;
}

/* The stored schedule and its revision; 0 or a problem set. */
static int
load(rs_api *app, rs_api_job *job, const char *id, json_t **s, uint64_t *rev)
{
	char key[200];
	natsStatus ns;

	snprintf(key, sizeof(key), "%s.%s", job->tenant, id);
	ns = get_entry(app, key, s, rev);
	if (ns == NATS_OK)
		return 0;
	if (ns == NATS_NOT_FOUND)
		rs_api_problem(job, 404, "no schedule %s", id);
	else if (ns == NATS_INVALID_ARG)
		rs_api_problem(job, 500, "schedule %s is unreadable", id);
	else
		unavailable(job, "read the schedule");
	return -1;
}

void
rs_api_schedules_get(rs_api *app, rs_api_job *job, const char *id)
{
	json_t *s;
	uint64_t rev;

	if (!have_bucket(app, job) || load(app, job, id, &s, &rev) != 0)
		return;
	rs_api_json(job, 200, view(s));
	json_decref(s);
}

void
rs_api_schedules_pause(rs_api *app, rs_api_job *job, const char *id, int pause)
{
	for (int attempt = 0; attempt < 10; attempt++) {
		json_t *s;
		uint64_t rev;
		char key[200], *txt;
		natsStatus ns;

		if (!have_bucket(app, job) || load(app, job, id, &s, &rev) != 0)
			return;
		json_object_set_new(s, "paused", json_boolean(pause));
		/* Resuming does not fire what fell in the pause. */
		if (!pause)
			json_object_set_new(s, "last_tick_ms", json_integer(rs_now_ms()));
		txt = rs_json_dump(s);
		snprintf(key, sizeof(key), "%s.%s", job->tenant, id);
		ns = kvStore_Update(NULL, app->kv_schedules, key, txt, (int)strlen(txt), rev);
		free(txt);
		if (ns == NATS_OK) {
			rs_api_json(job, 200, view(s));
			json_decref(s);
			return;
		}
		json_decref(s);
		if (ns != NATS_ERR) {
			unavailable(job, "update the schedule");
			return;
		}
	}
	unavailable(job, "update the schedule (changed concurrently)");
}

void
rs_api_schedules_delete(rs_api *app, rs_api_job *job, const char *id)
{
	json_t *s;
	uint64_t rev;
	char key[200];

	if (!have_bucket(app, job) || load(app, job, id, &s, &rev) != 0)
		return;
	json_decref(s);
	snprintf(key, sizeof(key), "%s.%s", job->tenant, id);
	if (kvStore_Delete(app->kv_schedules, key) != NATS_OK) {
		unavailable(job, "delete the schedule");
		return;
	}
	rs_info("api: tenant %s deleted schedule %s", job->tenant, id);
	job->status = 204;
	free(job->resp);
	job->resp = NULL;
	job->resp_len = 0;
	job->ctype = NULL;
}

void
rs_api_schedules_list(rs_api *app, rs_api_job *job)
{
	kvKeysList keys;
	json_t *arr = json_array();
	char prefix[100];
	size_t plen;

	if (!have_bucket(app, job)) {
		json_decref(arr);
		return;
	}
	snprintf(prefix, sizeof(prefix), "%s.", job->tenant);
	plen = strlen(prefix);
	memset(&keys, 0, sizeof(keys));
	natsStatus ns = kvStore_Keys(&keys, app->kv_schedules, NULL);
	if (ns != NATS_OK && ns != NATS_NOT_FOUND) {
		json_decref(arr);
		unavailable(job, "list schedules");
		return;
	}
	for (int i = 0; i < keys.Count && json_array_size(arr) < MAX_SCHEDULES_LISTED; i++) {
		json_t *s;
		uint64_t rev;
		if (strncmp(keys.Keys[i], prefix, plen) != 0)
			continue;
		if (get_entry(app, keys.Keys[i], &s, &rev) != NATS_OK)
			continue;   /* deleted meanwhile, or unreadable: not listed */
		json_array_append_new(arr, view(s));
		json_decref(s);
	}
	kvKeysList_Destroy(&keys);
	rs_api_json(job, 200, json_pack("{s:o}", "schedules", arr));
}
