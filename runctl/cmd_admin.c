/*
 * cmd_admin.c - runctl streams apply, migrate, keys create|ls|revoke,
 * devices token|ls|revoke.
 *
 * Secrets (API keys, device tokens) are printed once and stored only as
 * their SHA-256 in the KV buckets the services check (apikeys, devtokens):
 * sha256hex -> {"tenant", "device_id"?, "created_at"}. What ls shows of a
 * secret is its id: the first 12 hex characters of that hash (enough to
 * tell keys apart, useless to anyone who reads it). Revoking purges the
 * entry: the api stops accepting a key within RS_API_AUTH_TTL_MS (its
 * cache); tool-routers watch devtokens and close the device's live
 * connections at once (services/tool-router/revoke.c).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rs_config.h"
#include "rs_mem.h"
#include "rs_id.h"
#include "rs_json.h"
#include "rs_pg.h"
#include "rs_streams.h"
#include "rs_time.h"
#include "runctl.h"

#define SECRET_ID_LEN 12   /* hex chars of sha256 shown as a key/token id */

int
rs_ctl_cmd_streams_apply(int argc, char **argv)
{
	char report[8192];
	rs_nats n;
	int rc = rs_ctl_nats(&n, argc, argv);

	if (rc != RC_OK)
		return rc;
	if (rs_streams_apply(n.js, report, sizeof(report)) != RS_OK) {
		fputs(report, stdout);
		fprintf(stderr, "runctl: streams apply failed (see the log line above)\n");
		rc = RC_FAIL;
	} else {
		fputs(report, stdout);
	}
	rs_nats_close(&n, 2000);
	return rc;
}

int
rs_ctl_cmd_migrate(int argc, char **argv)
{
	const char *url = rs_ctl_flag(argc, argv, "pg", rs_env_str("RS_PG_URL",
	                  "postgresql://127.0.0.1:5432/runstream"));
	char report[8192];
	PGconn *c = NULL;
	int applied = 0, rc = RC_OK;

	if (rs_pg_connect(&c, url) != RS_OK) {
		fprintf(stderr, "runctl: cannot reach Postgres at %s: is the stack up? (set RS_PG_URL / --pg)\n", url);
		return RC_DOWN;
	}
	if (rs_pg_migrate(c, report, sizeof(report), &applied) != RS_OK) {
		fprintf(stderr, "runctl: migrate failed (see the log line above)\n");
		rc = RC_FAIL;
	}
	fputs(report, stdout);
	printf("%d migration(s) applied\n", applied);
	PQfinish(c);
	return rc;
}

/* Store sha256(secret) -> value in bucket, print the secret. */
static int
issue_secret(int argc, char **argv, const char *bucket, const char *prefix, json_t *value)
{
	char secret[80], hex[49], sum[65];
	kvStore *kv = NULL;
	uint64_t rev = 0;
	char *body = NULL;
	rs_nats n;
	int rc = rs_ctl_nats(&n, argc, argv);

	if (rc != RC_OK)
		return rc;
	json_object_set_new(value, "created_at", json_integer(rs_now_ms()));
	rs_id_random_hex(hex, 24);
	snprintf(secret, sizeof(secret), "%s%s", prefix, hex);
	rs_sha256_hex(secret, strlen(secret), sum);
	body = rs_json_dump(value);
	if (js_KeyValue(&kv, n.js, bucket) != NATS_OK) {
		rc = rs_ctl_out_err(RC_FAIL, NULL, "KV bucket %s missing: run `runctl streams apply` first", bucket);
	} else if (kvStore_PutString(&rev, kv, sum, body) != NATS_OK) {
		rc = rs_ctl_out_err(RC_FAIL, NULL, "cannot store the secret in %s", bucket);
	} else if (rs_ctl_out_json()) {
		json_t *doc = json_pack("{s:s, s:s%}", "secret", secret, "id", sum, (size_t)SECRET_ID_LEN);
		json_object_update(doc, value);
		rs_ctl_out_json_value(stdout, doc, 0);
		json_decref(doc);
	} else {
		printf("%s\n", secret);
	}
	free(body);
	kvStore_Destroy(kv);
	rs_nats_close(&n, 2000);
	return rc;
}

int
rs_ctl_cmd_keys_create(int argc, char **argv)
{
	const char *tenant = rs_ctl_flag(argc, argv, "tenant", NULL);
	json_t *v;
	int rc;

	if (!rs_id_is_token(tenant, 64))
		return rs_ctl_out_err(RC_USAGE, "keys create", "--tenant must match [a-z0-9_-]{1,64}");
	v = json_pack("{s:s}", "tenant", tenant);
	rc = issue_secret(argc, argv, "apikeys", "rk_", v);
	json_decref(v);
	return rc;
}

int
rs_ctl_cmd_devices_token(int argc, char **argv)
{
	const char *tenant = rs_ctl_flag(argc, argv, "tenant", NULL);
	const char *device = rs_ctl_flag(argc, argv, "device", NULL);
	json_t *v;
	int rc;

	if (!rs_id_is_token(tenant, 64) || !rs_id_is_token(device, 64))
		return rs_ctl_out_err(RC_USAGE, "devices token", "--tenant and --device must match [a-z0-9_-]{1,64}");
	v = json_pack("{s:s,s:s}", "tenant", tenant, "device_id", device);
	rc = issue_secret(argc, argv, "devtokens", "dt_", v);
	json_decref(v);
	return rc;
}

/* ---- keys ls|revoke, devices ls|revoke ---- */

typedef struct {
	char sum[65];
	json_t *value;       /* {"tenant", "device_id"?, "created_at"?} */
} secret_ent;

typedef struct {
	secret_ent *v;
	size_t n;
} secret_list;

static void
secret_list_free(secret_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		json_decref(l->v[i].value);
	free(l->v);
	memset(l, 0, sizeof(*l));
}

static int
is_sha256_hex(const char *k)
{
	size_t n = strlen(k);

	if (n != 64)
		return 0;
	for (; *k; k++)
		if (!((*k >= '0' && *k <= '9') || (*k >= 'a' && *k <= 'f')))
			return 0;
	return 1;
}

/* Every live entry of bucket that belongs to tenant (and device, unless
 * NULL). Admin tooling: one key listing and one get per key. */
static int
secrets_of(kvStore *kv, const char *cmd, const char *tenant, const char *device,
           secret_list *out)
{
	kvKeysList keys = { 0 };
	natsStatus s = kvStore_Keys(&keys, kv, NULL);

	memset(out, 0, sizeof(*out));
	if (s == NATS_NOT_FOUND)
		return RC_OK;
	if (s != NATS_OK)
		return rs_ctl_out_err(rs_nats_status(s, 0) == RS_EUNAVAIL ? RC_DOWN : RC_FAIL, cmd,
		               "listing keys: %s", natsStatus_GetText(s));
	if ((out->v = calloc((size_t)keys.Count + 1, sizeof(*out->v))) == NULL)
		rs_oom(0);
	for (int i = 0; i < keys.Count; i++) {
		kvEntry *e = NULL;
		json_t *v = NULL;
		char err[128];
		const char *t, *d;

		if (!is_sha256_hex(keys.Keys[i]) || kvStore_Get(&e, kv, keys.Keys[i]) != NATS_OK)
			continue;
		if (rs_json_parse(kvEntry_Value(e), (size_t)kvEntry_ValueLen(e), &v, err,
		                  sizeof(err)) == RS_OK &&
		    (t = json_string_value(json_object_get(v, "tenant"))) != NULL &&
		    strcmp(t, tenant) == 0) {
			d = json_string_value(json_object_get(v, "device_id"));
			if (device == NULL || (d != NULL && strcmp(d, device) == 0)) {
				snprintf(out->v[out->n].sum, sizeof(out->v[out->n].sum), "%s", keys.Keys[i]);
				out->v[out->n++].value = v;
				v = NULL;
			}
		}
		json_decref(v);
		kvEntry_Destroy(e);
	}
	kvKeysList_Destroy(&keys);
	return RC_OK;
}

static void
iso_time(json_t *ms, char *buf, size_t cap)
{
	if (!json_is_integer(ms))
		snprintf(buf, cap, "-");
	else
		rs_time_rfc3339(json_integer_value(ms), buf, cap);
}

/* Open bucket after the usual argument checks; RC_OK or the exit code. */
static int
admin_open(int argc, char **argv, const char *cmd, const char *const *flags, const char *bucket,
           rs_nats *n, kvStore **kv, const char **tenant)
{
	int rc;

	memset(n, 0, sizeof(*n));
	*kv = NULL;
	if ((rc = rs_ctl_check_flags(argc, argv, cmd, flags)) != RC_OK)
		return rc;
	if ((*tenant = rs_ctl_tenant(argc, argv)) == NULL)
		return rs_ctl_out_err(RC_USAGE, cmd, "--tenant T (or RS_TENANT) is required, [a-z0-9_-]{1,64}");
	if ((rc = rs_ctl_nats(n, argc, argv)) != RC_OK)
		return rc;
	if (js_KeyValue(kv, n->js, bucket) != NATS_OK)
		return rs_ctl_out_err(RC_FAIL, cmd, "KV bucket %s missing: run `runctl streams apply` first", bucket);
	return RC_OK;
}

static const char *const tenant_only[] = { "tenant", NULL };

int
rs_ctl_cmd_keys_ls(int argc, char **argv)
{
	const char *cmd = "keys ls", *tenant;
	secret_list l = { 0 };
	json_t *arr = json_array();
	kvStore *kv = NULL;
	char when[40];
	rs_nats n;
	int rc;

	if ((rc = admin_open(argc, argv, cmd, tenant_only, "apikeys", &n, &kv, &tenant)) != RC_OK ||
	    (rc = secrets_of(kv, cmd, tenant, NULL, &l)) != RC_OK)
		goto cleanup;
	for (size_t i = 0; i < l.n; i++)
		json_array_append_new(arr, json_pack("{s:s%, s:s, s:O}", "id", l.v[i].sum,
		                      (size_t)SECRET_ID_LEN, "tenant", tenant, "created_at",
		                      json_object_get(l.v[i].value, "created_at") ?
		                      json_object_get(l.v[i].value, "created_at") : json_null()));
	if (rs_ctl_out_json()) {
		json_t *doc = json_pack("{s:O}", "keys", arr);
		rs_ctl_out_json_value(stdout, doc, 0);
		json_decref(doc);
	} else if (l.n == 0) {
		printf("no API keys for tenant %s (create one with `runctl keys create --tenant %s`)\n",
		       tenant, tenant);
	} else {
		printf("%-14s %s\n", "KEY ID", "CREATED");
		for (size_t i = 0; i < l.n; i++) {
			iso_time(json_object_get(l.v[i].value, "created_at"), when, sizeof(when));
			printf("%.*s   %s\n", SECRET_ID_LEN, l.v[i].sum, when);
		}
	}
cleanup:
	json_decref(arr);
	secret_list_free(&l);
	kvStore_Destroy(kv);
	rs_nats_close(&n, 1000);
	return rc;
}

/* Purge entry sum of kv (the value and its history: nothing of the
 * secret's owner stays readable). */
static int
purge(kvStore *kv, const char *cmd, const char *sum)
{
	natsStatus s = kvStore_Purge(kv, sum, NULL);

	if (s != NATS_OK)
		return rs_ctl_out_err(rs_nats_status(s, 0) == RS_EUNAVAIL ? RC_DOWN : RC_FAIL, cmd,
		               "cannot revoke %.*s: %s", SECRET_ID_LEN, sum, natsStatus_GetText(s));
	return RC_OK;
}

int
rs_ctl_cmd_keys_revoke(int argc, char **argv)
{
	const char *cmd = "keys revoke", *tenant, *arg = rs_ctl_arg(argc, argv, 0);
	secret_list l = { 0 };
	kvStore *kv = NULL;
	char sum[65];
	size_t i, match = 0, hit = 0, alen;
	rs_nats n;
	int rc;

	if (arg == NULL || rs_ctl_nargs(argc, argv) != 1)
		return rs_ctl_out_err(RC_USAGE, cmd, "usage: runctl keys revoke KEY_ID|KEY --tenant T");
	memset(&n, 0, sizeof(n));
	/* The key itself (rk_...) or its id: at least 8 hex chars of its hash. */
	if (strncmp(arg, "rk_", 3) == 0) {
		rs_sha256_hex(arg, strlen(arg), sum);
	} else {
		alen = strlen(arg);
		for (i = 0; i < alen; i++)
			if (!((arg[i] >= '0' && arg[i] <= '9') || (arg[i] >= 'a' && arg[i] <= 'f')))
				break;
		if (alen < 8 || alen > 64 || i != alen) {
			rc = rs_ctl_out_err(RC_USAGE, cmd, "give a key id (8 to 64 hex characters, from `runctl "
			             "keys ls`) or the key itself (rk_...)");
			goto cleanup;
		}
		snprintf(sum, sizeof(sum), "%s", arg);
	}
	if ((rc = admin_open(argc, argv, cmd, tenant_only, "apikeys", &n, &kv, &tenant)) != RC_OK ||
	    (rc = secrets_of(kv, cmd, tenant, NULL, &l)) != RC_OK)
		goto cleanup;
	for (i = 0; i < l.n; i++)
		if (strncmp(l.v[i].sum, sum, strlen(sum)) == 0) {
			match++;
			hit = i;
		}
	if (match == 0) {
		rc = rs_ctl_out_err(RC_NOTFOUND, cmd, "tenant %s has no API key %.*s", tenant, SECRET_ID_LEN, sum);
		goto cleanup;
	}
	if (match > 1) {
		rc = rs_ctl_out_err(RC_USAGE, cmd, "%s matches %zu keys: give more of the id", arg, match);
		goto cleanup;
	}
	if ((rc = purge(kv, cmd, l.v[hit].sum)) != RC_OK)
		goto cleanup;
	if (rs_ctl_out_json()) {
		json_t *doc = json_pack("{s:s%, s:s, s:b}", "id", l.v[hit].sum, (size_t)SECRET_ID_LEN,
		                        "tenant", tenant, "revoked", 1);
		rs_ctl_out_json_value(stdout, doc, 0);
		json_decref(doc);
	} else {
		printf("revoked API key %.*s of tenant %s (the api stops accepting it within "
		       "RS_API_AUTH_TTL_MS)\n", SECRET_ID_LEN, l.v[hit].sum, tenant);
	}
cleanup:
	secret_list_free(&l);
	kvStore_Destroy(kv);
	rs_nats_close(&n, 1000);
	return rc;
}

int
rs_ctl_cmd_devices_ls(int argc, char **argv)
{
	const char *cmd = "devices ls", *tenant;
	secret_list l = { 0 };
	json_t *arr = json_array(), *d;
	kvStore *kv = NULL, *pres = NULL;
	char when[40], key[160];
	rs_nats n;
	size_t i;
	int rc;

	if ((rc = admin_open(argc, argv, cmd, tenant_only, "devtokens", &n, &kv, &tenant)) != RC_OK ||
	    (rc = secrets_of(kv, cmd, tenant, NULL, &l)) != RC_OK)
		goto cleanup;
	if (js_KeyValue(&pres, n.js, "presence") != NATS_OK)
		pres = NULL;   /* online unknown: shown as null */
	for (i = 0; i < l.n; i++) {
		const char *dev = json_string_value(json_object_get(l.v[i].value, "device_id"));
		kvEntry *e = NULL;
		json_t *online = json_null();
		if (dev == NULL)
			continue;
		if (pres != NULL) {
			snprintf(key, sizeof(key), "%s.%s", tenant, dev);
			online = json_boolean(kvStore_Get(&e, pres, key) == NATS_OK);
			kvEntry_Destroy(e);
		}
		json_array_append_new(arr, json_pack("{s:s, s:s%, s:O, s:o}", "device_id", dev,
		                      "token_id", l.v[i].sum, (size_t)SECRET_ID_LEN, "created_at",
		                      json_object_get(l.v[i].value, "created_at") ?
		                      json_object_get(l.v[i].value, "created_at") : json_null(),
		                      "online", online));
	}
	if (rs_ctl_out_json()) {
		json_t *doc = json_pack("{s:O}", "devices", arr);
		rs_ctl_out_json_value(stdout, doc, 0);
		json_decref(doc);
	} else if (json_array_size(arr) == 0) {
		printf("no device tokens for tenant %s (issue one with `runctl devices token`)\n", tenant);
	} else {
		printf("%-32s %-14s %-7s %s\n", "DEVICE", "TOKEN ID", "ONLINE", "CREATED");
		json_array_foreach(arr, i, d) {
			json_t *on = json_object_get(d, "online");
			iso_time(json_object_get(d, "created_at"), when, sizeof(when));
			printf("%-32s %-14s %-7s %s\n", json_string_value(json_object_get(d, "device_id")),
			       json_string_value(json_object_get(d, "token_id")),
			       json_is_null(on) ? "?" : json_is_true(on) ? "yes" : "no", when);
		}
	}
cleanup:
	json_decref(arr);
	secret_list_free(&l);
	kvStore_Destroy(kv);
	kvStore_Destroy(pres);
	rs_nats_close(&n, 1000);
	return rc;
}

int
rs_ctl_cmd_devices_revoke(int argc, char **argv)
{
	const char *cmd = "devices revoke", *tenant, *dev = rs_ctl_arg(argc, argv, 0);
	secret_list l = { 0 };
	kvStore *kv = NULL;
	rs_nats n;
	size_t i;
	int rc;

	if (dev == NULL || rs_ctl_nargs(argc, argv) != 1 || !rs_id_is_token(dev, 64))
		return rs_ctl_out_err(RC_USAGE, cmd, "usage: runctl devices revoke DEVICE --tenant T "
		               "(DEVICE: [a-z0-9_-]{1,64})");
	if ((rc = admin_open(argc, argv, cmd, tenant_only, "devtokens", &n, &kv, &tenant)) != RC_OK ||
	    (rc = secrets_of(kv, cmd, tenant, dev, &l)) != RC_OK)
		goto cleanup;
	if (l.n == 0) {
		rc = rs_ctl_out_err(RC_NOTFOUND, cmd, "tenant %s has no token for device %s", tenant, dev);
		goto cleanup;
	}
	for (i = 0; i < l.n; i++)
		if ((rc = purge(kv, cmd, l.v[i].sum)) != RC_OK)
			goto cleanup;
	if (rs_ctl_out_json()) {
		json_t *doc = json_pack("{s:s, s:s, s:I}", "tenant", tenant, "device_id", dev,
		                        "revoked", (json_int_t)l.n);
		rs_ctl_out_json_value(stdout, doc, 0);
		json_decref(doc);
	} else {
		printf("revoked %zu token%s of device %s (tenant %s); routers close its connections\n",
		       l.n, l.n == 1 ? "" : "s", dev, tenant);
	}
cleanup:
	secret_list_free(&l);
	kvStore_Destroy(kv);
	rs_nats_close(&n, 1000);
	return rc;
}

/*
 * projector rebuild: the projector owns its rebuild (build the read models
 * in a fresh schema from RUNS, then swap it in); runctl runs that code by
 * executing `rs-projector --rebuild` rather than linking a second copy of
 * the projector. Found via RS_PROJECTOR_BIN, next to this runctl in a
 * build tree (../services/projector/rs-projector), or on PATH.
 */
int
rs_ctl_cmd_projector_rebuild(int argc, char **argv)
{
	const char *bin = rs_env_str("RS_PROJECTOR_BIN", NULL);
	char self[4096], path[4200], *slash;
	ssize_t n;

	if (rs_ctl_check_flags(argc, argv, "projector rebuild", (const char *const[]){ "pg", NULL }) != RC_OK)
		return RC_USAGE;
	if (bin == NULL && (n = readlink("/proc/self/exe", self, sizeof(self) - 1)) > 0) {
		self[n] = '\0';
		if ((slash = strrchr(self, '/')) != NULL) {
			*slash = '\0';
			snprintf(path, sizeof(path), "%s/../services/projector/rs-projector", self);
			if (access(path, X_OK) == 0)
				bin = path;
		}
	}
	if (bin == NULL)
		bin = "rs-projector";
	fflush(stdout);
	execlp(bin, bin, "--rebuild", (char *)NULL);
	fprintf(stderr, "runctl projector rebuild: cannot run %s --rebuild: %s (build the projector, "
	        "or set RS_PROJECTOR_BIN)\n", bin, strerror(errno));
	return RC_NOTFOUND;
}
