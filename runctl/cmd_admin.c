/*
 * cmd_admin.c - runctl streams apply, migrate, keys create, devices token.
 *
 * Secrets (API keys, device tokens) are printed once and stored only as
 * their SHA-256 in the KV buckets the services check (apikeys, devtokens).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rs_config.h"
#include "rs_id.h"
#include "rs_json.h"
#include "rs_pg.h"
#include "rs_streams.h"
#include "runctl.h"

int
cmd_streams_apply(int argc, char **argv)
{
	char report[8192];
	rs_nats n;
	int rc = runctl_nats(&n, argc, argv);

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
cmd_migrate(int argc, char **argv)
{
	const char *url = runctl_flag(argc, argv, "pg", rs_env_str("RS_PG_URL",
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
	int rc = runctl_nats(&n, argc, argv);

	if (rc != RC_OK)
		return rc;
	rs_id_random_hex(hex, 24);
	snprintf(secret, sizeof(secret), "%s%s", prefix, hex);
	rs_sha256_hex(secret, strlen(secret), sum);
	body = rs_json_dump(value);
	if (js_KeyValue(&kv, n.js, bucket) != NATS_OK) {
		fprintf(stderr, "runctl: KV bucket %s missing: run `runctl streams apply` first\n", bucket);
		rc = RC_FAIL;
	} else if (kvStore_PutString(&rev, kv, sum, body) != NATS_OK) {
		fprintf(stderr, "runctl: cannot store the secret in %s\n", bucket);
		rc = RC_FAIL;
	} else {
		printf("%s\n", secret);
	}
	free(body);
	kvStore_Destroy(kv);
	rs_nats_close(&n, 2000);
	return rc;
}

int
cmd_keys_create(int argc, char **argv)
{
	const char *tenant = runctl_flag(argc, argv, "tenant", NULL);
	json_t *v;
	int rc;

	if (!rs_id_is_token(tenant, 64)) {
		fprintf(stderr, "runctl keys create: --tenant must match [a-z0-9_-]{1,64}\n");
		return RC_USAGE;
	}
	v = json_pack("{s:s}", "tenant", tenant);
	rc = issue_secret(argc, argv, "apikeys", "rk_", v);
	json_decref(v);
	return rc;
}

int
cmd_devices_token(int argc, char **argv)
{
	const char *tenant = runctl_flag(argc, argv, "tenant", NULL);
	const char *device = runctl_flag(argc, argv, "device", NULL);
	json_t *v;
	int rc;

	if (!rs_id_is_token(tenant, 64) || !rs_id_is_token(device, 64)) {
		fprintf(stderr, "runctl devices token: --tenant and --device must match [a-z0-9_-]{1,64}\n");
		return RC_USAGE;
	}
	v = json_pack("{s:s,s:s}", "tenant", tenant, "device_id", device);
	rc = issue_secret(argc, argv, "devtokens", "dt_", v);
	json_decref(v);
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
cmd_projector_rebuild(int argc, char **argv)
{
	const char *bin = rs_env_str("RS_PROJECTOR_BIN", NULL);
	char self[4096], path[4200], *slash;
	ssize_t n;

	if (runctl_check_flags(argc, argv, "projector rebuild", (const char *const[]){ "pg", NULL }) != RC_OK)
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
