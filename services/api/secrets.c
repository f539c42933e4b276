/*
 * secrets.c - PUT /v1/secrets/{name}, DELETE /v1/secrets/{name},
 * GET /v1/secrets: a tenant's secrets (common/rs_secret.h).
 *
 * The tenant is the API key's. Values go in and never come out: PUT seals
 * the value under RS_SECRETS_KEY before it reaches KV `secrets`, GET lists
 * names and update times only, and no response, problem detail or log line
 * carries a value (a malformed body gets a fixed message rather than the
 * JSON parser's, which quotes the text near the error). The executor is
 * the only reader of values.
 */
#include "api.h"
#include "rs_json.h"
#include "rs_log.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

rs_status
rs_api_secrets_init(rs_api *app)
{
	char err[160];

	switch (rs_secret_key_from_env(&app->secret_key, err, sizeof(err))) {
	case RS_OK:
		app->have_secret_key = 1;
		return RS_OK;
	case RS_ENOTFOUND:
		rs_warn("api: %s: PUT /v1/secrets answers 503", err);
		return RS_OK;
	default:
		rs_error("api: %s", err);
		return RS_EINVAL;
	}
}

void
rs_api_secrets_free(rs_api *app)
{
	rs_secret_key_wipe(&app->secret_key);
	app->have_secret_key = 0;
}

static int
name_ok(rs_api_job *job, const char *name)
{
	if (rs_secret_name_ok(name))
		return 1;
	rs_api_problem(job, 400, "secret name: must match [A-Za-z0-9_-]{1,64}");
	return 0;
}

static int
available(rs_api *app, rs_api_job *job, int need_key)
{
	if (app->kv_secrets == NULL || (need_key && !app->have_secret_key)) {
		rs_api_problem(job, 503, "secrets are not set up on this server (%s)",
		               app->kv_secrets == NULL ? "KV bucket secrets missing"
		                                       : "RS_SECRETS_KEY not set");
		return 0;
	}
	return 1;
}

void
rs_api_secrets_put(rs_api *app, rs_api_job *job, const char *name)
{
	json_t *body = NULL, *v;
	const char *why;
	char err[256];
	int created = 0;
	rs_status st;

	if (!name_ok(job, name) || !available(app, job, 1))
		return;
	if (rs_json_parse(job->body != NULL ? job->body : "", job->body_len, &body, err,
	                  sizeof(err)) != RS_OK || !json_is_object(body)) {
		rs_api_problem(job, 400, "body must be a JSON object {\"value\": \"...\"}");
		goto cleanup;
	}
	v = json_object_get(body, "value");
	if (json_object_size(body) != 1 || !json_is_string(v)) {
		rs_api_problem(job, 422, "body must be exactly {\"value\": \"<string>\"}");
		goto cleanup;
	}
	if (!rs_secret_value_ok(json_string_value(v), json_string_length(v), &why)) {
		rs_api_problem(job, 422, "value: %s", why);
		goto cleanup;
	}
	st = rs_secret_put(app->kv_secrets, &app->secret_key, job->tenant, name,
	                   json_string_value(v), json_string_length(v), &created);
	if (st != RS_OK) {
		rs_api_problem_retry(job, 503, 1, "cannot store the secret now");
		goto cleanup;
	}
	rs_info("api: tenant %s %s secret %s", job->tenant, created ? "created" : "replaced", name);
	rs_api_json(job, created ? 201 : 200, json_pack("{s:s, s:b}", "name", name,
	                                                 "created", created));
cleanup:
	if (body != NULL) {
		/* Wipe the plain value held by the parsed body and the request. */
		v = json_object_get(body, "value");
		if (json_is_string(v))
			OPENSSL_cleanse((void *)json_string_value(v), json_string_length(v));
		json_decref(body);
	}
	if (job->body != NULL)
		OPENSSL_cleanse(job->body, job->body_len);
}

void
rs_api_secrets_delete(rs_api *app, rs_api_job *job, const char *name)
{
	rs_status st;

	if (!name_ok(job, name) || !available(app, job, 0))
		return;
	st = rs_secret_delete(app->kv_secrets, job->tenant, name);
	if (st == RS_ENOTFOUND) {
		rs_api_problem(job, 404, "no secret %s", name);
		return;
	}
	if (st != RS_OK) {
		rs_api_problem_retry(job, 503, 1, "cannot delete the secret now");
		return;
	}
	rs_info("api: tenant %s deleted secret %s", job->tenant, name);
	job->status = 204;
	free(job->resp);
	job->resp = NULL;
	job->resp_len = 0;
	job->ctype = NULL;
}

void
rs_api_secrets_list(rs_api *app, rs_api_job *job)
{
	json_t *items = NULL;

	if (!available(app, job, 0))
		return;
	if (rs_secret_list(app->nats.js, app->kv_secrets, job->tenant, &items) != RS_OK) {
		rs_api_problem_retry(job, 503, 1, "cannot list secrets now");
		return;
	}
	rs_api_json(job, 200, json_pack("{s:o}", "secrets", items));
}
