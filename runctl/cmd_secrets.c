/*
 * cmd_secrets.c - runctl secrets set|rm|ls: a tenant's secrets, written
 * straight to KV `secrets` like the other admin commands (keys, tokens).
 *
 * `set` seals the value with RS_SECRETS_KEY (the same key the api and the
 * executor hold; `./run up` keeps it in .run/secrets.env) before it leaves
 * this process. The value comes from stdin by default, so it stays out of
 * shell history and `ps`; --value is for scripts and tests. One trailing
 * newline of stdin is dropped (what `echo` and here-strings add). Values
 * are never printed back: `ls` shows names and update times.
 */
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rs_secret.h"
#include "rs_mem.h"
#include "runctl.h"

static const char *const set_flags[] = { "tenant", "value", "nats", NULL };
static const char *const tenant_flags[] = { "tenant", "nats", NULL };

static int
open_bucket(rs_nats *n, kvStore **kv, const char *cmd)
{
	if (js_KeyValue(kv, n->js, RS_SECRET_BUCKET) != NATS_OK)
		return rs_ctl_out_err(RC_FAIL, cmd, "KV bucket %s missing: run `runctl streams apply` first",
		               RS_SECRET_BUCKET);
	return RC_OK;
}

/* The value from --value or stdin (malloc'd, *len bytes). */
static int
read_value(int argc, char **argv, const char *cmd, char **out, size_t *len)
{
	const char *v = rs_ctl_flag(argc, argv, "value", NULL);
	size_t n = 0, cap = RS_SECRET_VALUE_MAX + 2;
	char *buf;

	if ((buf = malloc(cap + 1)) == NULL)
		rs_oom(0);
	if (v != NULL) {
		n = strlen(v);
		if (n > RS_SECRET_VALUE_MAX)
			n = RS_SECRET_VALUE_MAX + 1;   /* refused below */
		memcpy(buf, v, n);
	} else {
		size_t got;
		while (n < cap && (got = fread(buf + n, 1, cap - n, stdin)) > 0)
			n += got;
		if (n > 0 && buf[n - 1] == '\n')
			n--;
		if (n > 0 && buf[n - 1] == '\r')
			n--;
	}
	buf[n] = '\0';
	*out = buf;
	*len = n;
	(void)cmd;
	return RC_OK;
}

int
rs_ctl_cmd_secrets_set(int argc, char **argv)
{
	const char *cmd = "secrets set", *tenant = rs_ctl_tenant(argc, argv);
	const char *name = rs_ctl_arg(argc, argv, 0), *why;
	rs_secret_key key;
	kvStore *kv = NULL;
	char err[160], *value = NULL;
	size_t len = 0;
	int rc, created = 0, have_key = 0;
	rs_nats n;

	memset(&n, 0, sizeof(n));
	if ((rc = rs_ctl_check_flags(argc, argv, cmd, set_flags)) != RC_OK)
		return rc;
	if (tenant == NULL || !rs_secret_name_ok(name))
		return rs_ctl_out_err(RC_USAGE, cmd, "usage: runctl secrets set --tenant T NAME [--value V] "
		               "(NAME [A-Za-z0-9_-]{1,64}; the value is read from stdin without --value)");
	if (rs_secret_key_from_env(&key, err, sizeof(err)) != RS_OK)
		return rs_ctl_out_err(RC_USAGE, cmd, "%s (source .run/secrets.env, or set it to the key the "
		               "api and executor use)", err);
	have_key = 1;
	if ((rc = read_value(argc, argv, cmd, &value, &len)) != RC_OK)
		goto cleanup;
	if (!rs_secret_value_ok(value, len, &why)) {
		rc = rs_ctl_out_err(RC_USAGE, cmd, "value: %s", why);
		goto cleanup;
	}
	if ((rc = rs_ctl_nats(&n, argc, argv)) != RC_OK || (rc = open_bucket(&n, &kv, cmd)) != RC_OK)
		goto cleanup;
	if (rs_secret_put(kv, &key, tenant, name, value, len, &created) != RS_OK) {
		rc = rs_ctl_out_err(RC_FAIL, cmd, "cannot store secret %s for tenant %s (is the tenant "
		             "[a-z0-9_-]{1,64}?)", name, tenant);
		goto cleanup;
	}
	printf("%s secret %s of tenant %s\n", created ? "created" : "replaced", name, tenant);
cleanup:
	if (value != NULL) {
		OPENSSL_cleanse(value, len);
		free(value);
	}
	if (have_key)
		rs_secret_key_wipe(&key);
	kvStore_Destroy(kv);
	if (n.nc != NULL)
		rs_nats_close(&n, 2000);
	return rc;
}

int
rs_ctl_cmd_secrets_rm(int argc, char **argv)
{
	const char *cmd = "secrets rm", *tenant = rs_ctl_tenant(argc, argv);
	const char *name = rs_ctl_arg(argc, argv, 0);
	kvStore *kv = NULL;
	rs_status st;
	rs_nats n;
	int rc;

	memset(&n, 0, sizeof(n));
	if ((rc = rs_ctl_check_flags(argc, argv, cmd, tenant_flags)) != RC_OK)
		return rc;
	if (tenant == NULL || !rs_secret_name_ok(name))
		return rs_ctl_out_err(RC_USAGE, cmd, "usage: runctl secrets rm --tenant T NAME");
	if ((rc = rs_ctl_nats(&n, argc, argv)) != RC_OK || (rc = open_bucket(&n, &kv, cmd)) != RC_OK)
		goto cleanup;
	st = rs_secret_delete(kv, tenant, name);
	if (st == RS_ENOTFOUND)
		rc = rs_ctl_out_err(RC_NOTFOUND, cmd, "tenant %s has no secret %s", tenant, name);
	else if (st != RS_OK)
		rc = rs_ctl_out_err(RC_FAIL, cmd, "cannot delete secret %s", name);
	else
		printf("deleted secret %s of tenant %s\n", name, tenant);
cleanup:
	kvStore_Destroy(kv);
	if (n.nc != NULL)
		rs_nats_close(&n, 2000);
	return rc;
}

int
rs_ctl_cmd_secrets_ls(int argc, char **argv)
{
	const char *cmd = "secrets ls", *tenant = rs_ctl_tenant(argc, argv);
	kvStore *kv = NULL;
	json_t *list = NULL, *v;
	size_t i;
	rs_nats n;
	int rc;

	memset(&n, 0, sizeof(n));
	if ((rc = rs_ctl_check_flags(argc, argv, cmd, tenant_flags)) != RC_OK)
		return rc;
	if (tenant == NULL)
		return rs_ctl_out_err(RC_USAGE, cmd, "--tenant T (or RS_TENANT) is required");
	if ((rc = rs_ctl_nats(&n, argc, argv)) != RC_OK || (rc = open_bucket(&n, &kv, cmd)) != RC_OK)
		goto cleanup;
	if (rs_secret_list(n.js, kv, tenant, &list) != RS_OK) {
		rc = rs_ctl_out_err(RC_FAIL, cmd, "cannot list the secrets of tenant %s", tenant);
		goto cleanup;
	}
	if (rs_ctl_out_json()) {
		rs_ctl_out_json_value(stdout, list, 0);
	} else if (json_array_size(list) == 0) {
		printf("no secrets for tenant %s (add one with `runctl secrets set --tenant %s NAME`)\n",
		       tenant, tenant);
	} else {
		printf("%-40s %s\n", "NAME", "UPDATED");
		json_array_foreach(list, i, v)
			printf("%-40s %s\n", json_string_value(json_object_get(v, "name")),
			       json_string_value(json_object_get(v, "updated_at")));
	}
cleanup:
	json_decref(list);
	kvStore_Destroy(kv);
	if (n.nc != NULL)
		rs_nats_close(&n, 2000);
	return rc;
}
