/*
 * agents.c - POST /v1/agents, GET /v1/agents[/{name}[/versions/{v}]], and
 * the agent (name, version?) -> version resolution used by run creation.
 *
 * KV `agents`: <tenant>.<name>.<version> holds the canonical definition
 * (created once with kvStore_Create: immutable), <tenant>.<name>.latest
 * holds {"version":...} and moves to whatever was pushed last (pushing an
 * older definition again makes it current, like a redeploy).
 * Versions are immutable, so "version exists" is cached forever; "latest"
 * is cached for a second so run creation costs no KV round trip.
 */
#include "api.h"
#include "rs_hash.h"
#include "rs_agent.h"
#include "rs_id.h"
#include "rs_json.h"
#include "rs_log.h"
#include "rs_time.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define AGENT_SLOTS 4096
#define LATEST_TTL_MS 1000

typedef struct {
	char key[224];
	char version[17];
	int64_t expires_ms;  /* INT64_MAX: immutable */
} agent_slot;

struct rs_api_agentc {
	pthread_mutex_t mu;
	agent_slot slots[AGENT_SLOTS];
};

rs_status
rs_api_agents_init(rs_api *app)
{
	app->agentc = calloc(1, sizeof(*app->agentc));
	if (app->agentc == NULL)
		return RS_ENOMEM;
	pthread_mutex_init(&app->agentc->mu, NULL);
	return RS_OK;
}

void
rs_api_agents_free(rs_api *app)
{
	if (app->agentc != NULL) {
		pthread_mutex_destroy(&app->agentc->mu);
		free(app->agentc);
		app->agentc = NULL;
	}
}

static unsigned
hash_str(const char *s)
{
	return (unsigned)(rs_hash_str(s) % AGENT_SLOTS);
}

static int
cache_get(rs_api *app, const char *key, char out[17])
{
	agent_slot *sl = &app->agentc->slots[hash_str(key)];
	int hit = 0;

	pthread_mutex_lock(&app->agentc->mu);
	if (strcmp(sl->key, key) == 0 && sl->expires_ms > rs_mono_ms()) {
		memcpy(out, sl->version, 17);
		hit = 1;
	}
	pthread_mutex_unlock(&app->agentc->mu);
	return hit;
}

static void
cache_put(rs_api *app, const char *key, const char *version, int64_t ttl_ms)
{
	agent_slot *sl = &app->agentc->slots[hash_str(key)];

	if (strlen(key) >= sizeof(sl->key))
		return;
	pthread_mutex_lock(&app->agentc->mu);
	snprintf(sl->key, sizeof(sl->key), "%s", key);
	snprintf(sl->version, sizeof(sl->version), "%s", version);
	sl->expires_ms = ttl_ms == INT64_MAX ? INT64_MAX : rs_mono_ms() + ttl_ms;
	pthread_mutex_unlock(&app->agentc->mu);
}

static int
is_version(const char *v)
{
	if (strlen(v) != 16)
		return 0;
	for (; *v; v++)
		if (!((*v >= '0' && *v <= '9') || (*v >= 'a' && *v <= 'f')))
			return 0;
	return 1;
}

rs_status
rs_api_agent_resolve(rs_api *app, const char *tenant, const char *name,
                     const char *version, char out[17])
{
	char key[256];
	kvEntry *e = NULL;
	json_t *v = NULL;
	natsStatus s;
	rs_status st;

	if (!rs_id_is_token(name, 64))
		return RS_ENOTFOUND;
	if (version != NULL) {
		if (!is_version(version))
			return RS_ENOTFOUND;
		snprintf(key, sizeof(key), "%s.%s.%s", tenant, name, version);
		if (cache_get(app, key, out))
			return RS_OK;
		s = kvStore_Get(&e, app->kv_agents, key);
		kvEntry_Destroy(e);
		if (s != NATS_OK)
			return rs_nats_status(s, 0);
		snprintf(out, 17, "%s", version);
		cache_put(app, key, out, INT64_MAX);
		return RS_OK;
	}
	snprintf(key, sizeof(key), "%s.%s.latest", tenant, name);
	if (cache_get(app, key, out))
		return RS_OK;
	s = kvStore_Get(&e, app->kv_agents, key);
	if (s != NATS_OK)
		return rs_nats_status(s, 0);
	{
		char err[128];
		const char *ver;
		st = rs_json_parse(kvEntry_ValueString(e), (size_t)kvEntry_ValueLen(e), &v, err, sizeof(err));
		ver = st == RS_OK ? json_string_value(json_object_get(v, "version")) : NULL;
		if (ver == NULL || !is_version(ver)) {
			st = RS_EIO;
			goto cleanup;
		}
		memcpy(out, ver, 17);
	}
	cache_put(app, key, out, LATEST_TTL_MS);
	st = RS_OK;
cleanup:
	json_decref(v);
	kvEntry_Destroy(e);
	return st;
}

void
rs_api_agents_post(rs_api *app, rs_api_job *job)
{
	json_t *def = NULL;
	rs_agent *a = NULL;
	char err[512], key[256], latest[64];
	char *canon = NULL;
	const char *name, *ver;
	kvEntry *e = NULL;
	natsStatus s;
	int created = 1;

	if (rs_json_parse(job->body != NULL ? job->body : "", job->body_len, &def, err,
	                  sizeof(err)) != RS_OK) {
		rs_api_problem(job, 400, "%s", err);
		goto cleanup;
	}
	if (!json_is_object(def)) {
		rs_api_problem(job, 422, "(root): an agent definition must be a JSON object");
		goto cleanup;
	}
	if (rs_agent_parse(def, &a, err, sizeof(err)) != RS_OK) {
		rs_api_problem(job, 422, "%s", err);
		goto cleanup;
	}
	name = rs_agent_name(a);
	ver = rs_agent_version(a);
	if (!rs_id_is_token(name, 64)) {
		rs_api_problem(job, 422, "name: must match [a-z0-9_-]{1,64}");
		goto cleanup;
	}
	canon = rs_json_dump(rs_agent_json(a));
	if (canon == NULL) {
		rs_api_problem(job, 500, "cannot encode the definition");
		goto cleanup;
	}
	snprintf(key, sizeof(key), "%s.%s.%s", job->tenant, name, ver);
	s = kvStore_Create(NULL, app->kv_agents, key, canon, (int)strlen(canon));
	if (s != NATS_OK) {
		/* Exists already? The version is a content hash, but compare the
		 * bytes anyway: a hash collision must not pass silently. */
		s = kvStore_Get(&e, app->kv_agents, key);
		if (s != NATS_OK) {
			rs_api_problem_retry(job, 503, 1, "cannot store the definition: NATS %s", natsStatus_GetText(s));
			goto cleanup;
		}
		if ((size_t)kvEntry_ValueLen(e) != strlen(canon) ||
		    memcmp(kvEntry_ValueString(e), canon, strlen(canon)) != 0) {
			rs_api_problem(job, 409, "version %s of agent %s exists with a different definition",
			               ver, name);
			goto cleanup;
		}
		created = 0;
	}
	snprintf(latest, sizeof(latest), "{\"version\":\"%s\"}", ver);
	snprintf(key, sizeof(key), "%s.%s.latest", job->tenant, name);
	s = kvStore_PutString(NULL, app->kv_agents, key, latest);
	if (s != NATS_OK) {
		rs_api_problem_retry(job, 503, 1, "cannot update the latest version: NATS %s", natsStatus_GetText(s));
		goto cleanup;
	}
	cache_put(app, key, ver, LATEST_TTL_MS);
	rs_api_json(job, created ? 201 : 200,
	            json_pack("{s:s, s:s, s:b}", "name", name, "version", ver, "created", created));
	snprintf(job->hdrs + strlen(job->hdrs), sizeof(job->hdrs) - strlen(job->hdrs),
	         "Location: /v1/agents/%s/versions/%s\n", name, ver);
cleanup:
	kvEntry_Destroy(e);
	free(canon);
	rs_agent_free(a);
	json_decref(def);
}

/* Keys of the bucket under prefix "<tenant>.<name>." or "<tenant>.":
 * a watcher over the prefix, metadata only, stopped at the end of the
 * initial values. */
static rs_status
list_keys(rs_api *app, const char *filter, json_t *names, int want_latest_names)
{
	kvWatcher *w = NULL;
	kvWatchOptions o;
	kvEntry *e = NULL;
	natsStatus s;

	kvWatchOptions_Init(&o);
	o.IgnoreDeletes = true;
	o.MetaOnly = true;
	s = kvStore_Watch(&w, app->kv_agents, filter, &o);
	if (s != NATS_OK)
		return rs_nats_status(s, 0);
	for (;;) {
		s = kvWatcher_Next(&e, w, 5000);
		if (s != NATS_OK || e == NULL)
			break;
		{
			/* key = tenant.name.version|latest */
			const char *k = kvEntry_Key(e);
			const char *last = strrchr(k, '.');
			const char *first = strchr(k, '.');
			if (last != NULL && first != NULL && last > first) {
				if (want_latest_names && strcmp(last + 1, "latest") == 0)
					json_array_append_new(names, json_stringn(first + 1, (size_t)(last - first - 1)));
				else if (!want_latest_names && strcmp(last + 1, "latest") != 0)
					json_array_append_new(names, json_string(last + 1));
			}
		}
		kvEntry_Destroy(e);
		e = NULL;
	}
	kvEntry_Destroy(e);
	kvWatcher_Destroy(w);
	return s == NATS_OK || s == NATS_TIMEOUT ? RS_OK : rs_nats_status(s, 0);
}

void
rs_api_agents_get(rs_api *app, rs_api_job *job, const char *name, const char *version)
{
	char key[256], ver[17], err[128];
	kvEntry *e = NULL;
	json_t *def = NULL, *list = NULL;
	natsStatus s;
	rs_status st;

	if (name == NULL) {
		list = json_array();
		snprintf(key, sizeof(key), "%s.*.latest", job->tenant);
		if (list_keys(app, key, list, 1) != RS_OK) {
			rs_api_problem_retry(job, 503, 1, "cannot list agents: NATS unavailable");
			goto cleanup;
		}
		rs_api_json(job, 200, json_pack("{s:O}", "agents", list));
		goto cleanup;
	}
	st = rs_api_agent_resolve(app, job->tenant, name, version, ver);
	if (st == RS_ENOTFOUND) {
		if (version != NULL)
			rs_api_problem(job, 404, "agent %s has no version %s", name, version);
		else
			rs_api_problem(job, 404, "no agent named %s", name);
		goto cleanup;
	}
	if (st != RS_OK) {
		rs_api_problem_retry(job, 503, 1, "cannot read agent %s: NATS %s", name, rs_status_str(st));
		goto cleanup;
	}
	snprintf(key, sizeof(key), "%s.%s.%s", job->tenant, name, ver);
	s = kvStore_Get(&e, app->kv_agents, key);
	if (s != NATS_OK || rs_json_parse(kvEntry_ValueString(e), (size_t)kvEntry_ValueLen(e), &def,
	                                  err, sizeof(err)) != RS_OK) {
		rs_api_problem_retry(job, 503, 1, "cannot read agent %s version %s", name, ver);
		goto cleanup;
	}
	if (version != NULL) {
		rs_api_json(job, 200, json_pack("{s:s, s:s, s:O}", "name", name, "version", ver,
		                                "definition", def));
		goto cleanup;
	}
	list = json_array();
	snprintf(key, sizeof(key), "%s.%s.*", job->tenant, name);
	if (list_keys(app, key, list, 0) != RS_OK) {
		rs_api_problem_retry(job, 503, 1, "cannot list versions of %s", name);
		goto cleanup;
	}
	rs_api_json(job, 200, json_pack("{s:s, s:s, s:O, s:O}", "name", name, "latest", ver,
	                                "versions", list, "definition", def));
cleanup:
	json_decref(list);
	json_decref(def);
	kvEntry_Destroy(e);
}
