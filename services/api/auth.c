/*
 * auth.c - Bearer API keys -> tenant.
 *
 * The key is never stored: KV `apikeys` maps sha256hex(key) to
 * {"tenant":...} (runctl keys create). Lookups are cached in memory for
 * auth_ttl_ms (RS_API_AUTH_TTL_MS) so the hot path costs no round trip;
 * a revoked key stops working within that TTL. Postgres is never asked.
 * Misses are not cached, so a key created a moment ago works at once.
 *
 * http.c asks the cache at header time (rs_api_auth_cached, no round
 * trip) and only falls back to a worker (rs_api_auth) on a miss, so no
 * request body is read before its key is known good. The sha256 of the
 * key (keyid) is what the per-key limits (limits.c) count by.
 */
#include "api.h"
#include "rs_json.h"
#include "rs_log.h"
#include "rs_time.h"

#include <stdlib.h>
#include <string.h>

#define AUTH_SLOTS 4096

typedef struct {
	char hash[65];
	char tenant[72];
	int64_t expires_ms;
} auth_slot;

struct rs_api_authc {
	pthread_mutex_t mu;
	auth_slot slots[AUTH_SLOTS];
};

/* The hash is uniformly random: its first 32 bits pick the slot. */
static unsigned
slot_of(const char *hash)
{
	unsigned v = 0;

	for (int i = 0; i < 8; i++) {
		char c = hash[i];
		v = (v << 4) | (unsigned)(c <= '9' ? c - '0' : c - 'a' + 10);
	}
	return v % AUTH_SLOTS;
}

/* The key of job's Authorization header, or NULL (401 problem set). */
static const char *
bearer_key(rs_api_job *job)
{
	if (strncasecmp(job->auth, "Bearer ", 7) != 0 || job->auth[7] == '\0') {
		rs_api_problem(job, 401, "missing or malformed Authorization header: expected 'Bearer <api key>'");
		strcat(job->hdrs, "WWW-Authenticate: Bearer realm=\"runstream\"\n");
		return NULL;
	}
	return job->auth + 7;
}

/* Cache look-up of hash: fills job->tenant, returns 1 on a fresh hit. */
static int
cache_get(rs_api_authc *c, const char *hash, rs_api_job *job)
{
	unsigned i = slot_of(hash);
	int hit = 0;

	pthread_mutex_lock(&c->mu);
	if (strcmp(c->slots[i].hash, hash) == 0 && c->slots[i].expires_ms > rs_mono_ms()) {
		memcpy(job->tenant, c->slots[i].tenant, sizeof(job->tenant));
		hit = 1;
	}
	pthread_mutex_unlock(&c->mu);
	return hit;
}

rs_status
rs_api_auth_cached(rs_api *app, rs_api_job *job)
{
	const char *key = bearer_key(job);

	if (key == NULL)
		return RS_EINVAL;
	rs_sha256_hex(key, strlen(key), job->keyid);
	if (!cache_get(app->authc, job->keyid, job))
		return RS_ENOTFOUND;
	job->authed = 1;
	return RS_OK;
}

rs_status
rs_api_auth(rs_api *app, rs_api_job *job)
{
	rs_api_authc *c = app->authc;   /* made by rs_api_auth_init before the workers */
	const char *key;
	char hash[65];
	kvEntry *e = NULL;
	json_t *v = NULL;
	natsStatus s;
	rs_status st = RS_EINVAL;
	unsigned i;
	int64_t now = rs_mono_ms();

	if (job->authed)
		return RS_OK;       /* at header time (http.c) */
	if ((key = bearer_key(job)) == NULL)
		return RS_EINVAL;
	rs_sha256_hex(key, strlen(key), hash);
	memcpy(job->keyid, hash, sizeof(hash));
	i = slot_of(hash);
	if (cache_get(c, hash, job)) {
		job->authed = 1;
		return RS_OK;
	}

	s = kvStore_Get(&e, app->kv_apikeys, hash);
	if (s == NATS_NOT_FOUND) {
		rs_api_problem(job, 401, "unknown API key");
		strcat(job->hdrs, "WWW-Authenticate: Bearer realm=\"runstream\", error=\"invalid_token\"\n");
		goto cleanup;
	}
	if (s != NATS_OK) {
		rs_api_problem_retry(job, 503, 1, "cannot check the API key: NATS %s", natsStatus_GetText(s));
		st = RS_EUNAVAIL;
		goto cleanup;
	}
	{
		char err[128];
		const char *t;
		if (rs_json_parse(kvEntry_ValueString(e), (size_t)kvEntry_ValueLen(e), &v, err,
		                  sizeof(err)) != RS_OK ||
		    (t = json_string_value(json_object_get(v, "tenant"))) == NULL ||
		    strlen(t) >= sizeof(job->tenant)) {
			rs_error("auth: apikeys entry %.12s... is malformed", hash);
			rs_api_problem(job, 401, "API key record is malformed");
			goto cleanup;
		}
		snprintf(job->tenant, sizeof(job->tenant), "%s", t);
	}
	pthread_mutex_lock(&c->mu);
	memcpy(c->slots[i].hash, hash, sizeof(hash));
	memcpy(c->slots[i].tenant, job->tenant, sizeof(job->tenant));
	c->slots[i].expires_ms = now + app->auth_ttl_ms;
	pthread_mutex_unlock(&c->mu);
	job->authed = 1;
	st = RS_OK;
cleanup:
	json_decref(v);
	kvEntry_Destroy(e);
	return st;
}

void
rs_api_auth_free(rs_api *app)
{
	if (app->authc != NULL) {
		pthread_mutex_destroy(&app->authc->mu);
		free(app->authc);
		app->authc = NULL;
	}
}

rs_status
rs_api_auth_init(rs_api *app)
{
	app->authc = calloc(1, sizeof(*app->authc));
	if (app->authc == NULL)
		return RS_ENOMEM;
	pthread_mutex_init(&app->authc->mu, NULL);
	return RS_OK;
}
