/*
 * webhook.c - http steps: perform one http.requested and answer with an
 * effect.result.
 *
 * What a receiver can rely on:
 *   Idempotency-Key: <run_id>-<step_id>-<attempt>  (the same for a
 *       re-issued request: dedupe on it)
 *   <hmac.header>: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>
 *       when the step asks for a signature (hmac.secret names a secret of
 *       the run's tenant, resolved now by secrets.c, never logged or stored)
 *   header values with "{{secrets.NAME}}" references get the tenant's
 *       value substituted here; the event keeps the reference.
 * A missing secret is the permanent error secret_missing naming it; a
 * request still naming hmac.secret_env (recorded before v1.2) is refused
 * with secret_env_unsupported.
 *   Content-Type: application/json for a non-string body, unless set.
 * The answer's output is {status, headers, body, duration_ms} for any
 * status (the state machine judges it), its headers with credentials
 * (Set-Cookie, ...) redacted; transport failures are errors (http.c):
 * connect_failed / connection_error (transient), timeout, and permanent
 * invalid_request (refused before connecting: a header value with CR/LF,
 * a method that is not a short token, ...), egress_denied,
 * tls_verify_failed, too_many_redirects, response_too_large.
 * Redirects are followed only when the step sets max_redirects (1..5),
 * each hop vetted by the egress policy again.
 */
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "executor.h"
#include "rs_agent.h"
#include "rs_json.h"
#include "rs_log.h"
#include "rs_secret.h"
#include "rs_time.h"

#define MAX_HEADERS 64

/* "t=<t>,v1=<hex>" into out. */
static void
sign(const char *secret, const char *body, size_t len, int64_t t, char *out, size_t cap)
{
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;
	char prefix[32], hex[2 * EVP_MAX_MD_SIZE + 1];
	size_t plen = (size_t)snprintf(prefix, sizeof(prefix), "%lld.", (long long)t);
	unsigned char *msg = malloc(plen + len + 1);

	hex[0] = '\0';
	if (msg != NULL) {
		memcpy(msg, prefix, plen);
		memcpy(msg + plen, body, len);
		HMAC(EVP_sha256(), secret, (int)strlen(secret), msg, plen + len, mac, &maclen);
		for (unsigned int i = 0; i < maclen; i++)
			snprintf(hex + 2 * i, 3, "%02x", mac[i]);
		free(msg);
	}
	snprintf(out, cap, "t=%lld,v1=%s", (long long)t, hex);
}

/* Monotonic deadline from the request: its wall deadline, and never more
 * than timeout_ms from now. <= now: already late. */
static int64_t
mono_deadline(int64_t wall_deadline, int64_t timeout_ms)
{
	int64_t now = rs_mono_ms(), left = wall_deadline - rs_now_ms();

	if (left > timeout_ms)
		left = timeout_ms;
	return now + left;
}

/* The response body as JSON: parsed when it is JSON, else a string. */
static json_t *
body_value(const http_resp *r)
{
	json_t *v = NULL;
	char err[64];

	if (r->body == NULL || r->body_len == 0)
		return json_null();
	if (rs_json_parse(r->body, r->body_len, &v, err, sizeof(err)) == RS_OK)
		return v;
	return json_stringn(r->body, r->body_len);
}

static rs_status
answer_error(executor *x, const rs_event *req, const char *code, const char *msg,
             rs_errclass cls)
{
	rs_err e = { (char *)code, (char *)msg, cls, cls != RS_ERRCLASS_PERMANENT, NULL };

	rs_metric_inc(rs_exec_em.effects_err[EK_HTTP]);
	rs_log(RS_LOG_INFO, req->run_id, NULL, "http %s: %s: %s",
	       req->d.http_requested.effect_id, code, msg);
	return rs_exec_publish_result(x, req, NULL, &e, 0);
}

/* A transport failure (http.c classified it). */
static rs_status
answer_transport(executor *x, const rs_event *req, http_fail f, const char *why)
{
	return answer_error(x, req, rs_exec_http_fail_code(f), why, rs_exec_http_fail_class(f));
}

rs_status
rs_exec_webhook_run(executor *x, const rs_event *req)
{
	const rs_ev_http_requested *h = &req->d.http_requested;
	http_header hdr[MAX_HEADERS + 3];
	char *body = NULL, *vals[MAX_HEADERS], idem[320], sig[200], err[320] = "";
	char *secret = NULL, missing[RS_SECRET_NAME_MAX + 1];
	const char *k;
	size_t slen = 0;
	int has_ctype = 0;
	size_t n = 0, nv = 0, blen = 0;
	http_req q;
	http_resp r;
	json_t *v, *out;
	int64_t t0;
	http_fail f;
	rs_status st = RS_OK;

	memset(&q, 0, sizeof(q));
	memset(&r, 0, sizeof(r));
	if (json_object_size(h->headers) > MAX_HEADERS) {
		snprintf(err, sizeof(err), "more than %d headers", MAX_HEADERS);
		st = answer_error(x, req, "invalid_request", err, RS_ERRCLASS_PERMANENT);
		goto cleanup;
	}
	json_object_foreach(h->headers, k, v) {
		if (n == MAX_HEADERS)
			break;
		if (json_is_string(v) && strstr(json_string_value(v), "{{secrets.") != NULL) {
			st = rs_exec_secrets_render(x->secrets, req->tenant, json_string_value(v), &vals[nv],
			                    missing, sizeof(missing));
			if (st == RS_ENOTFOUND) {
				snprintf(err, sizeof(err), "secret %s (header %s) does not exist", missing, k);
				st = answer_error(x, req, "secret_missing", err, RS_ERRCLASS_PERMANENT);
				goto cleanup;
			}
			if (st != RS_OK)
				goto cleanup;   /* bucket unreadable now: re-issued later */
		} else {
			vals[nv] = json_is_string(v) ? strdup(json_string_value(v)) : rs_json_dump(v);
		}
		hdr[n].name = k;
		hdr[n++].value = vals[nv] ? vals[nv] : "";
		nv++;
		has_ctype |= strcasecmp(k, "content-type") == 0;
	}
	if (h->body != NULL) {
		body = json_is_string(h->body) ? strdup(json_string_value(h->body))
		                                : rs_json_dump(h->body);
		blen = body ? strlen(body) : 0;
		if (!json_is_string(h->body) && !has_ctype) {
			hdr[n].name = "Content-Type";
			hdr[n++].value = "application/json";
		}
	}
	snprintf(idem, sizeof(idem), "%s-%s-%lld", req->run_id, h->step_id, (long long)h->attempt);
	hdr[n].name = "Idempotency-Key";
	hdr[n++].value = idem;
	if (h->hmac != NULL) {
		if (json_object_get(h->hmac, "secret_env") != NULL) {
			st = answer_error(x, req, "secret_env_unsupported", "hmac.secret_env named an "
			                  "environment variable: name a tenant secret in hmac.secret",
			                  RS_ERRCLASS_PERMANENT);
			goto cleanup;
		}
		k = json_string_value(json_object_get(h->hmac, "secret"));
		st = rs_exec_secrets_get(x->secrets, req->tenant, k, &secret, &slen);
		if (st == RS_ENOTFOUND) {
			snprintf(err, sizeof(err), "secret %s (hmac.secret) does not exist",
			         k ? k : "(none)");
			st = answer_error(x, req, "secret_missing", err, RS_ERRCLASS_PERMANENT);
			goto cleanup;
		}
		if (st != RS_OK)
			goto cleanup;
		sign(secret, body ? body : "", blen, rs_now_ms() / 1000, sig, sizeof(sig));
		hdr[n].name = json_string_value(json_object_get(h->hmac, "header"));
		if (hdr[n].name == NULL)
			hdr[n].name = "Runstream-Signature";
		hdr[n++].value = sig;
	}
	q.method = h->method;
	q.url = h->url;
	q.headers = hdr;
	q.nheaders = n;
	q.body = body;
	q.body_len = blen;
	q.deadline_ms = mono_deadline(h->deadline, h->timeout_ms);
	q.max_body = h->max_response_bytes > 0 ? (size_t)h->max_response_bytes
	                                       : RS_HTTP_MAX_RESPONSE_DEFAULT;
	q.max_redirects = h->max_redirects > 0 && h->max_redirects <= RS_HTTP_MAX_REDIRECTS ?
	                  (long)h->max_redirects : 0;
	t0 = rs_mono_ms();
	if (q.deadline_ms <= t0) {
		st = answer_error(x, req, "timeout", "the request's deadline passed before it was "
		                  "sent", RS_ERRCLASS_TIMEOUT);
		goto cleanup;
	}
	/* Refused before any connection: nothing of it reaches a socket. */
	if ((f = rs_exec_http_do(&q, &r)) != HF_OK) {
		st = answer_transport(x, req, f, r.err);
		goto cleanup;
	}
	out = json_pack("{s:i, s:O, s:o, s:I}", "status", r.status, "headers", r.headers,
	                "body", body_value(&r), "duration_ms", (json_int_t)(rs_mono_ms() - t0));
	rs_metric_inc(rs_exec_em.effects_ok[EK_HTTP]);
	st = rs_exec_publish_result(x, req, out, NULL, 0);
cleanup:
	rs_exec_http_resp_free(&r);
	for (size_t i = 0; i < nv; i++)
		rs_secret_free(vals[i]);   /* may hold substituted secrets: wiped */
	rs_secret_free(secret);
	OPENSSL_cleanse(sig, sizeof(sig));
	free(body);
	return st;
}
