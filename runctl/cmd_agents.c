/*
 * cmd_agents.c - `runctl agents validate|push|ls|show`: agent definitions
 * in the KV bucket agents, written the way the API (services/api/agents.c)
 * writes them:
 *   <tenant>.<name>.<version>  canonical definition, created once (immutable)
 *   <tenant>.<name>.latest     {"version": "..."}, moved by every push
 * kvStore_Create makes a push idempotent: pushing the same definition
 * twice yields the same version and "created": false. Like the API, a push
 * of an existing version still moves latest to it (pushing an older
 * definition again makes it current: a redeploy or a rollback).
 * `validate` is the same parser (rs_agent_parse) offline: no NATS needed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rs_agent.h"
#include "rs_id.h"
#include "rs_json.h"
#include "runctl.h"

static const char *const tenant_flags[] = { "tenant", "version", NULL };

static int
open_kv(rs_nats *n, kvStore **kv, const char *cmd)
{
	if (js_KeyValue(kv, n->js, "agents") != NATS_OK)
		return rs_ctl_out_err(RC_FAIL, cmd, "KV bucket agents missing: run `runctl streams apply` first");
	return RC_OK;
}

/* Value of key as new JSON, RC_NOTFOUND if absent. */
static int
kv_json(kvStore *kv, const char *key, json_t **out, char *err, size_t cap)
{
	kvEntry *e = NULL;
	natsStatus s = kvStore_Get(&e, kv, key);
	int rc = RC_OK;

	*out = NULL;
	if (s == NATS_NOT_FOUND) {
		snprintf(err, cap, "agent key %s not found in KV agents", key);
		return RC_NOTFOUND;
	}
	if (s != NATS_OK) {
		snprintf(err, cap, "reading KV agents %s: %s", key, natsStatus_GetText(s));
		return rs_nats_status(s, 0) == RS_EUNAVAIL ? RC_DOWN : RC_FAIL;
	}
	if (rs_json_parse(kvEntry_Value(e), (size_t)kvEntry_ValueLen(e), out, err, cap) != RS_OK)
		rc = RC_FAIL;
	kvEntry_Destroy(e);
	return rc;
}

/* The version in <tenant>.<name>.latest. */
static int
latest_version(kvStore *kv, const char *tenant, const char *name, char *ver, size_t cap,
               char *err, size_t ecap)
{
	char key[300];
	json_t *v = NULL;
	const char *s;
	int rc;

	snprintf(key, sizeof(key), "%s.%s.latest", tenant, name);
	if ((rc = kv_json(kv, key, &v, err, ecap)) != RC_OK) {
		if (rc == RC_NOTFOUND)
			snprintf(err, ecap, "agent %s not found for tenant %s (push it with "
			         "`runctl agents push FILE`)", name, tenant);
		return rc;
	}
	s = json_string_value(json_object_get(v, "version"));
	if (s == NULL || !rs_id_is_token(s, 64)) {
		snprintf(err, ecap, "%s holds no version", key);
		json_decref(v);
		return RC_FAIL;
	}
	snprintf(ver, cap, "%s", s);
	json_decref(v);
	return RC_OK;
}

int
rs_ctl_agents_fetch(rs_nats *n, const char *tenant, const char *name, const char *version,
             json_t **def, char *err, size_t cap)
{
	char key[300], ver[80];
	kvStore *kv = NULL;
	int rc;

	*def = NULL;
	if (!rs_id_is_token(tenant, 64) || name == NULL || strchr(name, '.') || strchr(name, '*') ||
	    strchr(name, '>') || (version != NULL && !rs_id_is_token(version, 64))) {
		snprintf(err, cap, "not a valid agent reference");
		return RC_USAGE;
	}
	if (js_KeyValue(&kv, n->js, "agents") != NATS_OK) {
		snprintf(err, cap, "KV bucket agents missing: run `runctl streams apply` first");
		return RC_FAIL;
	}
	if (version == NULL) {
		if ((rc = latest_version(kv, tenant, name, ver, sizeof(ver), err, cap)) != RC_OK)
			goto cleanup;
		version = ver;
	}
	snprintf(key, sizeof(key), "%s.%s.%s", tenant, name, version);
	rc = kv_json(kv, key, def, err, cap);
	if (rc == RC_NOTFOUND)
		snprintf(err, cap, "agent %s@%s not found in KV agents (key %s)", name, version, key);
cleanup:
	kvStore_Destroy(kv);
	return rc;
}

static char *
read_all(const char *path, size_t *len)
{
	FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
	char *buf = NULL, *nb;
	size_t n = 0, cap = 0, r;

	if (f == NULL)
		return NULL;
	do {
		if (n + 4096 > cap) {
			if ((nb = realloc(buf, cap = cap * 2 + 8192)) == NULL) {
				free(buf);
				buf = NULL;
				break;
			}
			buf = nb;
		}
		r = fread(buf + n, 1, cap - n - 1, f);
		n += r;
	} while (r > 0);
	if (buf != NULL)
		buf[n] = '\0';
	if (f != stdin)
		fclose(f);
	*len = n;
	return buf;
}

/*
 * agents validate FILE: rs_agent_parse_text, exactly what POST /v1/agents
 * and the orchestrator run, without a server. Exit 0 valid, 2 invalid
 * (the parser's "<field path>: <problem>"), 3 unreadable file.
 */
int
rs_ctl_cmd_agents_validate(int argc, char **argv)
{
	const char *cmd = "agents validate", *file = rs_ctl_arg(argc, argv, 0);
	char err[512], *buf = NULL;
	rs_agent *a = NULL;
	size_t len = 0;
	json_t *doc;
	int rc;

	if ((rc = rs_ctl_check_flags(argc, argv, cmd, NULL)) != RC_OK)
		return rc;
	if (file == NULL || rs_ctl_nargs(argc, argv) != 1)
		return rs_ctl_out_err(RC_USAGE, cmd, "give one definition file: runctl agents validate FILE "
		               "(- for stdin)");
	if ((buf = read_all(file, &len)) == NULL)
		return rs_ctl_out_err(RC_NOTFOUND, cmd, "cannot read %s", file);
	if (rs_agent_parse_text(buf, len, &a, err, sizeof(err)) != RS_OK) {
		if (rs_ctl_out_json()) {
			doc = json_pack("{s:b, s:s, s:{s:s, s:i, s:s}}", "valid", 0, "file", file,
			                "error", "command", cmd, "exit", RC_USAGE, "message", err);
			rs_ctl_out_json_value(stdout, doc, 0);
			json_decref(doc);
		} else {
			fprintf(stderr, "runctl %s: %s is not a valid agent: %s\n", cmd, file, err);
		}
		rc = RC_USAGE;
		goto cleanup;
	}
	if (rs_ctl_out_json()) {
		doc = json_pack("{s:b, s:s, s:s, s:s, s:I}", "valid", 1, "file", file, "name",
		                rs_agent_name(a), "version", rs_agent_version(a), "steps",
		                (json_int_t)rs_agent_step_count(a));
		rs_ctl_out_json_value(stdout, doc, 0);
		json_decref(doc);
	} else {
		printf("%s: valid, %s@%s (%zu step%s)\n", file, rs_agent_name(a), rs_agent_version(a),
		       rs_agent_step_count(a), rs_agent_step_count(a) == 1 ? "" : "s");
	}
	rc = RC_OK;
cleanup:
	free(buf);
	rs_agent_free(a);
	return rc;
}

int
rs_ctl_cmd_agents_push(int argc, char **argv)
{
	const char *cmd = "agents push", *file = rs_ctl_arg(argc, argv, 0);
	const char *tenant = rs_ctl_tenant(argc, argv);
	char err[512], key[300], *buf = NULL, *canon = NULL, *latest = NULL;
	rs_agent *a = NULL;
	kvStore *kv = NULL;
	uint64_t rev = 0;
	size_t len = 0;
	int rc, created = 0;
	natsStatus s;
	rs_nats n;

	memset(&n, 0, sizeof(n));
	if ((rc = rs_ctl_check_flags(argc, argv, cmd, tenant_flags)) != RC_OK)
		return rc;
	if (file == NULL)
		return rs_ctl_out_err(RC_USAGE, cmd, "give the definition file: runctl agents push FILE --tenant T");
	if (tenant == NULL)
		return rs_ctl_out_err(RC_USAGE, cmd, "--tenant T (or RS_TENANT) is required, [a-z0-9_-]{1,64}");
	if ((buf = read_all(file, &len)) == NULL)
		return rs_ctl_out_err(RC_NOTFOUND, cmd, "cannot read %s", file);
	if (rs_agent_parse_text(buf, len, &a, err, sizeof(err)) != RS_OK) {
		rc = rs_ctl_out_err(RC_FAIL, cmd, "%s is not a valid agent: %s", file, err);
		goto cleanup;
	}
	if ((rc = rs_ctl_nats(&n, argc, argv)) != RC_OK || (rc = open_kv(&n, &kv, cmd)) != RC_OK)
		goto cleanup;
	canon = rs_json_dump(rs_agent_json(a));
	snprintf(key, sizeof(key), "%s.%s.%s", tenant, rs_agent_name(a), rs_agent_version(a));
	s = kvStore_CreateString(&rev, kv, key, canon);
	if (s == NATS_OK) {
		created = 1;
	} else {
		/* Create fails when the key exists. The version is the hash of
		 * the content, so an existing key is this very definition. */
		kvEntry *e = NULL;
		natsStatus g = kvStore_Get(&e, kv, key);
		/* Like the API: compare the bytes, a hash collision must not
		 * pass silently. */
		int same = g == NATS_OK && (size_t)kvEntry_ValueLen(e) == strlen(canon) &&
		           memcmp(kvEntry_Value(e), canon, strlen(canon)) == 0;
		kvEntry_Destroy(e);
		if (g != NATS_OK) {
			rc = rs_ctl_out_err(RC_FAIL, cmd, "cannot store %s: %s", key, natsStatus_GetText(s));
			goto cleanup;
		}
		if (!same) {
			rc = rs_ctl_out_err(RC_FAIL, cmd, "version %s of agent %s exists with a different "
			             "definition", rs_agent_version(a), rs_agent_name(a));
			goto cleanup;
		}
	}
	{
		/* Every push moves latest, as POST /v1/agents does. */
		json_t *l = json_pack("{s:s}", "version", rs_agent_version(a));
		latest = rs_json_dump(l);
		json_decref(l);
		snprintf(key, sizeof(key), "%s.%s.latest", tenant, rs_agent_name(a));
		if ((s = kvStore_PutString(&rev, kv, key, latest)) != NATS_OK) {
			rc = rs_ctl_out_err(RC_FAIL, cmd, "stored the version but not %s: %s (push again)", key,
			             natsStatus_GetText(s));
			goto cleanup;
		}
	}
	if (rs_ctl_out_json()) {
		json_t *doc = json_pack("{s:s,s:s,s:s,s:b,s:s}", "tenant", tenant, "name",
		                        rs_agent_name(a), "version", rs_agent_version(a), "created",
		                        created, "latest", rs_agent_version(a));
		rs_ctl_out_json_value(stdout, doc, 0);
		json_decref(doc);
	} else {
		printf("%s@%s %s; latest is now %s\n", rs_agent_name(a), rs_agent_version(a),
		       created ? "created" : "already exists (created: false)", rs_agent_version(a));
	}
	rc = RC_OK;
cleanup:
	free(buf);
	free(canon);
	free(latest);
	rs_agent_free(a);
	kvStore_Destroy(kv);
	rs_nats_close(&n, 1000);
	return rc;
}

int
rs_ctl_cmd_agents_ls(int argc, char **argv)
{
	const char *cmd = "agents ls", *tenant = rs_ctl_tenant(argc, argv);
	kvKeysList keys = { 0 };
	kvStore *kv = NULL;
	json_t *list = json_array();
	char prefix[80], err[256], ver[80];
	size_t plen;
	natsStatus s;
	rs_nats n;
	int rc;

	memset(&n, 0, sizeof(n));
	if ((rc = rs_ctl_check_flags(argc, argv, cmd, tenant_flags)) != RC_OK)
		goto cleanup;
	if (tenant == NULL) {
		rc = rs_ctl_out_err(RC_USAGE, cmd, "--tenant T (or RS_TENANT) is required");
		goto cleanup;
	}
	if ((rc = rs_ctl_nats(&n, argc, argv)) != RC_OK || (rc = open_kv(&n, &kv, cmd)) != RC_OK)
		goto cleanup;
	s = kvStore_Keys(&keys, kv, NULL);
	if (s != NATS_OK && s != NATS_NOT_FOUND) {
		rc = rs_ctl_out_err(RC_FAIL, cmd, "listing KV agents: %s", natsStatus_GetText(s));
		goto cleanup;
	}
	plen = (size_t)snprintf(prefix, sizeof(prefix), "%s.", tenant);
	for (int i = 0; i < keys.Count; i++) {
		const char *k = keys.Keys[i];
		size_t kl = strlen(k);
		char name[200];
		if (strncmp(k, prefix, plen) != 0 || kl < plen + 8 || strcmp(k + kl - 7, ".latest") != 0)
			continue;
		snprintf(name, sizeof(name), "%.*s", (int)(kl - plen - 7), k + plen);
		if (latest_version(kv, tenant, name, ver, sizeof(ver), err, sizeof(err)) != RC_OK)
			continue;
		json_array_append_new(list, json_pack("{s:s,s:s}", "name", name, "version", ver));
	}
	if (rs_ctl_out_json()) {
		rs_ctl_out_json_value(stdout, list, 0);
	} else if (json_array_size(list) == 0) {
		printf("no agents for tenant %s (push one with `runctl agents push FILE`)\n", tenant);
	} else {
		size_t i;
		json_t *v;
		printf("%-32s %s\n", "NAME", "LATEST VERSION");
		json_array_foreach(list, i, v)
			printf("%-32s %s\n", json_string_value(json_object_get(v, "name")),
			       json_string_value(json_object_get(v, "version")));
	}
	rc = RC_OK;
cleanup:
	json_decref(list);
	kvKeysList_Destroy(&keys);
	kvStore_Destroy(kv);
	rs_nats_close(&n, 1000);
	return rc;
}

int
rs_ctl_cmd_agents_show(int argc, char **argv)
{
	const char *cmd = "agents show", *tenant = rs_ctl_tenant(argc, argv);
	const char *name = rs_ctl_arg(argc, argv, 0), *version = rs_ctl_flag(argc, argv, "version", NULL);
	json_t *def = NULL;
	char err[512];
	rs_nats n;
	int rc;

	memset(&n, 0, sizeof(n));
	if ((rc = rs_ctl_check_flags(argc, argv, cmd, tenant_flags)) != RC_OK)
		return rc;
	if (name == NULL || tenant == NULL)
		return rs_ctl_out_err(RC_USAGE, cmd, "usage: runctl agents show NAME --tenant T [--version V]");
	if ((rc = rs_ctl_nats(&n, argc, argv)) != RC_OK)
		return rc;
	rc = rs_ctl_agents_fetch(&n, tenant, name, version, &def, err, sizeof(err));
	if (rc != RC_OK)
		rs_ctl_out_err(rc, cmd, "%s", err);
	else
		rs_ctl_out_json_value(stdout, def, !rs_ctl_out_json());
	json_decref(def);
	rs_nats_close(&n, 1000);
	return rc;
}
