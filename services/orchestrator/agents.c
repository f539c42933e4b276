/*
 * agents.c - agent definitions from the KV bucket `agents`, parsed once.
 *
 * A version (<tenant>.<name>.<version>) is immutable: its key is created
 * once and never rewritten, so a parsed rs_agent is cached for the life of
 * the process and never invalidated. `<tenant>.<name>.latest` moves, so it
 * is read from the KV every time a run.start omits the version.
 * Engine thread only: no locking.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orch.h"
#include "rs_json.h"
#include "rs_log.h"
#include "rs_map.h"

/* <tenant>.<name>.<version> -> parsed rs_agent (owned by the map). */
struct agentcache {
	rs_map by_key;
};

static void
free_agent(void *ag)
{
	rs_agent_free(ag);
}

struct agentcache *
rs_orch_agentcache_new(void)
{
	struct agentcache *a = calloc(1, sizeof(*a));

	if (a != NULL)
		rs_map_init(&a->by_key, free_agent);
	return a;
}

void
rs_orch_agentcache_free(struct agentcache *a)
{
	if (a == NULL)
		return;
	rs_map_free(&a->by_key);
	free(a);
}

/* The version named by <tenant>.<name>.latest into out[17]. */
static rs_status
latest_version(orch *o, const char *tenant, const char *name, char out[17], char *err, size_t cap)
{
	char key[256], jerr[160];
	kvEntry *e = NULL;
	json_t *v = NULL;
	const char *ver;
	natsStatus s;
	rs_status st;

	snprintf(key, sizeof(key), "%s.%s.latest", tenant, name);
	s = kvStore_Get(&e, o->agents_kv, key);
	if (s != NATS_OK) {
		st = rs_nats_status(s, 0);
		snprintf(err, cap, "agent %s/%s: no latest version (%s)", tenant, name,
		         natsStatus_GetText(s));
		return st;
	}
	st = rs_json_parse(kvEntry_Value(e), (size_t)kvEntry_ValueLen(e), &v, jerr, sizeof(jerr));
	kvEntry_Destroy(e);
	if (st != RS_OK) {
		snprintf(err, cap, "agent %s/%s latest: %s", tenant, name, jerr);
		return RS_ENOTFOUND;
	}
	ver = json_string_value(json_object_get(v, "version"));
	if (ver == NULL || strlen(ver) != 16) {
		snprintf(err, cap, "agent %s/%s latest: no version", tenant, name);
		json_decref(v);
		return RS_ENOTFOUND;
	}
	memcpy(out, ver, 17);
	json_decref(v);
	return RS_OK;
}

static rs_status
load_version(orch *o, const char *key, rs_agent **out, char *err, size_t cap)
{
	kvEntry *e = NULL;
	natsStatus s;
	rs_status st;
	char perr[256];

	s = kvStore_Get(&e, o->agents_kv, key);
	if (s != NATS_OK) {
		snprintf(err, cap, "agent %s: %s", key, natsStatus_GetText(s));
		return rs_nats_status(s, 0);
	}
	st = rs_agent_parse_text(kvEntry_Value(e), (size_t)kvEntry_ValueLen(e), out, perr, sizeof(perr));
	kvEntry_Destroy(e);
	if (st != RS_OK) {
		/* A stored definition that does not validate will never do so:
		 * report it like a missing agent. */
		snprintf(err, cap, "agent %s: invalid definition: %s", key, perr);
		return RS_ENOTFOUND;
	}
	return RS_OK;
}

rs_status
rs_orch_agents_get(orch *o, const char *tenant, const char *name, const char *version,
           const rs_agent **out, char *err, size_t cap)
{
	struct agentcache *a = o->agents;
	char key[256], ver[17];
	rs_agent *ag = NULL;
	rs_status st;

	if (name == NULL) {
		snprintf(err, cap, "no agent named");
		return RS_ENOTFOUND;
	}
	if (version == NULL) {
		if ((st = latest_version(o, tenant, name, ver, err, cap)) != RS_OK)
			return st;
		version = ver;
	}
	snprintf(key, sizeof(key), "%s.%s.%s", tenant, name, version);
	if ((*out = rs_map_get(&a->by_key, key)) != NULL)
		return RS_OK;
	if ((st = load_version(o, key, &ag, err, cap)) != RS_OK)
		return st;
	if (rs_map_put(&a->by_key, key, ag) != RS_OK) {
		rs_agent_free(ag);
		return RS_ENOMEM;
	}
	*out = ag;
	return RS_OK;
}
