/*
 * kv.c - the KV projections: KV_agents -> agents/agent_versions and
 * KV_presence -> devices (docs/projector.md).
 *
 * These streams carry few messages (agent pushes, presence refreshes every
 * few seconds per device), so each message is one idempotent upsert inside
 * the batch transaction; the checkpoint in the same transaction makes them
 * exactly-once like the run tables. Keys are parsed from the subject
 * $KV.<bucket>.<key>; a key or value that does not fit is dead-lettered.
 */
#include "projector.h"
#include "rs_id.h"
#include "rs_json.h"
#include "rs_log.h"
#include "rs_time.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Split "$KV.<bucket>.<a>.<b>[.<c>]" into its key tokens (copies into buf).
 * Returns the number of tokens, or -1 if a token is not [a-z0-9_-]. */
static int
kv_key(const char *subject, const char *bucket, char *buf, size_t cap, char **tok, int max)
{
	size_t pl = 4 + strlen(bucket) + 1;
	char *save = NULL, *t;
	int n = 0;

	if (strncmp(subject, "$KV.", 4) != 0 || strncmp(subject + 4, bucket, strlen(bucket)) != 0 ||
	    subject[pl - 1] != '.')
		return -1;
	snprintf(buf, cap, "%s", subject + pl);
	for (t = strtok_r(buf, ".", &save); t != NULL; t = strtok_r(NULL, ".", &save)) {
		if (n == max || !rs_id_is_token(t, 64))
			return -1;
		tok[n++] = t;
	}
	return n;
}

static rs_status
exec_params(PGconn *c, const char *sql, int n, const char *const *p)
{
	PGresult *r = PQexecParams(c, sql, n, NULL, p, NULL, NULL, 0);
	rs_status st = RS_OK;

	if (PQresultStatus(r) != PGRES_COMMAND_OK) {
		rs_warn("projector: %s", PQresultErrorMessage(r));
		st = rs_proj_pg_lost(c, r) ? RS_EUNAVAIL : RS_EIO;
	}
	PQclear(r);
	return st;
}

static int
is_delete(const rs_proj_msg *m)
{
	return m->kv_op != NULL && (strcmp(m->kv_op, "DEL") == 0 || strcmp(m->kv_op, "PURGE") == 0);
}

static rs_status
agent_one(PGconn *c, const rs_proj_msg *m, rs_proj_result *res)
{
	char keybuf[256], ts[40], err[160];
	char *tok[3], *def = NULL;
	json_t *v = NULL;
	const char *ver;
	rs_status st = RS_OK;

	if (kv_key(m->subject, "agents", keybuf, sizeof(keybuf), tok, 3) != 3)
		return rs_proj_add_dead(res, m, "agents key must be <tenant>.<name>.<version|latest>");
	rs_time_rfc3339(m->ts_ms, ts, sizeof(ts));
	if (is_delete(m)) {
		/* Versions are immutable; only a deleted latest pointer matters. */
		if (strcmp(tok[2], "latest") == 0) {
			const char *p[3] = { tok[0], tok[1], ts };

			st = exec_params(c, "UPDATE agents SET latest_version = NULL, updated_at = $3 "
			                    "WHERE tenant = $1 AND name = $2", 3, p);
		}
		goto done;
	}
	if (rs_json_parse(m->data, (size_t)m->len, &v, err, sizeof(err)) != RS_OK || !json_is_object(v)) {
		st = rs_proj_add_dead(res, m, "agents value is not a JSON object: %s", err);
		goto cleanup;
	}
	if (strcmp(tok[2], "latest") == 0) {
		const char *p[4];

		ver = json_string_value(json_object_get(v, "version"));
		if (ver == NULL || !rs_id_is_token(ver, 64)) {
			st = rs_proj_add_dead(res, m, "latest: \"version\" must be a version id");
			goto cleanup;
		}
		p[0] = tok[0];
		p[1] = tok[1];
		p[2] = ver;
		p[3] = ts;
		st = exec_params(c, "INSERT INTO agents (tenant, name, latest_version, created_at, updated_at) "
		                    "VALUES ($1, $2, $3, $4, $4) ON CONFLICT (tenant, name) DO UPDATE "
		                    "SET latest_version = EXCLUDED.latest_version, updated_at = EXCLUDED.updated_at",
		                 4, p);
	} else {
		const char *p[5];

		if ((def = json_dumps(v, JSON_COMPACT)) == NULL) {
			st = RS_ENOMEM;
			goto cleanup;
		}
		p[0] = tok[0];
		p[1] = tok[1];
		p[2] = tok[2];
		p[3] = def;
		p[4] = ts;
		{
			const char *pa[3] = { tok[0], tok[1], ts };

			st = exec_params(c, "INSERT INTO agents (tenant, name, created_at, updated_at) "
			                    "VALUES ($1, $2, $3, $3) ON CONFLICT (tenant, name) DO NOTHING",
			                 3, pa);
		}
		if (st == RS_OK)
			st = exec_params(c, "INSERT INTO agent_versions (tenant, name, version, definition, created_at) "
			                    "VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING", 5, p);
	}
done:
	if (st == RS_OK) {
		res->applied++;
		if (m->ts_ms > res->last_event_ms)
			res->last_event_ms = m->ts_ms;
	}
cleanup:
	free(def);
	json_decref(v);
	return st;
}

static rs_status
presence_one(PGconn *c, const rs_proj_msg *m, rs_proj_result *res)
{
	char keybuf[256], ts[40], cat[40], err[160];
	char *tok[2], *tools = NULL;
	const char *router, *s;
	json_t *v = NULL, *jt;
	int64_t ms;
	rs_status st = RS_OK;

	if (kv_key(m->subject, "presence", keybuf, sizeof(keybuf), tok, 2) != 2)
		return rs_proj_add_dead(res, m, "presence key must be <tenant>.<device_id>");
	rs_time_rfc3339(m->ts_ms, ts, sizeof(ts));
	if (is_delete(m)) {
		const char *p[3] = { tok[0], tok[1], ts };

		st = exec_params(c, "UPDATE devices SET online = false, updated_at = now() "
		                    "WHERE tenant = $1 AND device_id = $2 AND last_seen <= $3", 3, p);
		goto done;
	}
	if (rs_json_parse(m->data, (size_t)m->len, &v, err, sizeof(err)) != RS_OK || !json_is_object(v)) {
		st = rs_proj_add_dead(res, m, "presence value is not a JSON object: %s", err);
		goto cleanup;
	}
	router = json_string_value(json_object_get(v, "router"));
	jt = json_object_get(v, "tools");
	if (jt != NULL && !json_is_array(jt)) {
		st = rs_proj_add_dead(res, m, "presence: \"tools\" must be an array");
		goto cleanup;
	}
	if ((tools = jt ? json_dumps(jt, JSON_COMPACT) : strdup("[]")) == NULL) {
		st = RS_ENOMEM;
		goto cleanup;
	}
	s = json_string_value(json_object_get(v, "connected_at"));
	cat[0] = '\0';
	if (s != NULL && rs_time_parse_rfc3339(s, &ms) == RS_OK)
		rs_time_rfc3339(ms, cat, sizeof(cat));
	else if (json_is_integer(json_object_get(v, "connected_at")))
		rs_time_rfc3339(json_integer_value(json_object_get(v, "connected_at")), cat, sizeof(cat));
	{
		const char *p[6] = { tok[0], tok[1], router, tools, cat[0] ? cat : NULL, ts };

		st = exec_params(c, "INSERT INTO devices (tenant, device_id, router, tools, online, "
		                    "connected_at, last_seen, updated_at) VALUES ($1, $2, $3, $4, true, $5, $6, now()) "
		                    "ON CONFLICT (tenant, device_id) DO UPDATE SET router = EXCLUDED.router, "
		                    "tools = EXCLUDED.tools, online = true, connected_at = EXCLUDED.connected_at, "
		                    "last_seen = EXCLUDED.last_seen, updated_at = now()", 6, p);
	}
done:
	if (st == RS_OK) {
		res->applied++;
		if (m->ts_ms > res->last_event_ms)
			res->last_event_ms = m->ts_ms;
	}
cleanup:
	free(tools);
	json_decref(v);
	return st;
}

rs_status
rs_proj_agents_apply(PGconn *c, const rs_proj_msg *msgs, size_t n, rs_proj_result *res)
{
	rs_status st;

	for (size_t i = 0; i < n; i++)
		if ((st = agent_one(c, &msgs[i], res)) != RS_OK)
			return st;
	return rs_proj_store_dead(c, "projector.agents", res);
}

rs_status
rs_proj_presence_apply(PGconn *c, const rs_proj_msg *msgs, size_t n, rs_proj_result *res)
{
	rs_status st;

	for (size_t i = 0; i < n; i++)
		if ((st = presence_one(c, &msgs[i], res)) != RS_OK)
			return st;
	return rs_proj_store_dead(c, "projector.presence", res);
}
