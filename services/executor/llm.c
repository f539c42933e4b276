/*
 * llm.c - one model turn of an llm step: a streaming OpenAI-compatible
 * Chat Completions request built from llm.requested, its text streamed
 * back as llm.chunk commands, the complete assistant message as an
 * effect.result.
 *
 * Batching: a chunk is sent when RS_EXECUTOR_CHUNK_BYTES of text are
 * waiting, or when RS_EXECUTOR_CHUNK_MS passed since the last one was sent
 * (so the first tokens of a quiet stream go out at once, and a fast stream
 * costs one event per period, not one per token).
 *
 * The API key: model.api_key_secret names a secret of the run's tenant,
 * resolved (secrets.c) for the request and nowhere else: never logged,
 * never in an event or a command. A request still naming api_key_env (an
 * event recorded before v1.2) is refused: the environment is not the
 * tenant's.
 *
 * Errors: 429, 408 and 5xx are transient (Retry-After passed on), other
 * 4xx permanent; a stream that ends without finish_reason/[DONE] is a
 * transient "stream_cut"; the deadline is a timeout; egress_denied,
 * tls_verify_failed, invalid_request and response_too_large (the stream
 * over RS_EXECUTOR_MAX_STREAM_BYTES, or a line / message / tool calls over
 * the parser's limits) are permanent. The state machine
 * retries the turn by the step's retry policy.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "executor.h"
#include "rs_mem.h"
#include "rs_json.h"
#include "rs_log.h"
#include "rs_secret.h"
#include "rs_time.h"

#define ERR_BODY_MAX 2048
#define DONE_GRACE_MS 1000

typedef struct {
	executor *x;
	const rs_event *req;
	http_resp *resp;          /* filled by rs_exec_http_do: status known before the body */
	sse_acc *acc;
	int bad;                  /* SSE_MALFORMED / SSE_TOO_LARGE */
	int64_t done_at;          /* [DONE] seen (rs_mono_ms), 0 before */
	int publish_failed;
	int64_t next_index;
	int64_t last_flush;
	char errbody[ERR_BODY_MAX + 1];
	size_t errlen;
} turn;

/* Send the text waiting, if the batching rule says so (force: all now). */
static void
flush(turn *t, int force)
{
	int64_t now = rs_mono_ms();
	size_t pending = rs_exec_sse_acc_pending_text(t->acc), len;
	char *text;

	if (pending == 0 || t->publish_failed)
		return;
	if (!force && pending < (size_t)t->x->cfg.chunk_bytes &&
	    now - t->last_flush < t->x->cfg.chunk_ms)
		return;
	/* At most chunk_bytes per command (cut on a character boundary): a
	 * single huge delta never makes a command over the payload limit. */
	while ((text = rs_exec_sse_acc_take_text(t->acc, (size_t)t->x->cfg.chunk_bytes, &len)) != NULL) {
		if (rs_exec_publish_chunk(t->x, t->req, t->next_index++, text, len) != RS_OK)
			t->publish_failed = 1;
		free(text);
		if (t->publish_failed)
			break;
	}
	t->last_flush = now;
}

static int
on_data(void *ud, const char *buf, size_t n)
{
	turn *t = ud;
	size_t room;
	int rc;

	if (t->resp->status < 200 || t->resp->status > 299) {
		room = ERR_BODY_MAX - t->errlen;
		memcpy(t->errbody + t->errlen, buf, n < room ? n : room);
		t->errlen += n < room ? n : room;
		t->errbody[t->errlen] = '\0';
		return 0;
	}
	rc = rs_exec_sse_acc_feed(t->acc, buf, n);
	if (rc < 0)
		t->bad = rc;
	flush(t, 0);
	/* After [DONE] the rest of the response is read (and ignored), not cut:
	 * a transfer aborted mid-body closes its connection, one that ends
	 * cleanly goes back to the cache for the next turn (keep-alive). */
	if (rc == SSE_DONE && t->done_at == 0)
		t->done_at = rs_mono_ms();
	return rc < 0 || t->publish_failed;
}

/* Batching, and the end of a server that keeps the response open after
 * [DONE]: DONE_GRACE_MS for it to end, then the turn is complete anyway. */
static int
on_tick(void *ud)
{
	turn *t = ud;

	flush(t, 0);
	return t->done_at != 0 && rs_mono_ms() - t->done_at > DONE_GRACE_MS;
}

/* Schemas and descriptions the definition left out, from the devices'
 * hello (KV presence <tenant>.<device>): the first device of the tenant
 * offering the tool wins. */
static json_t *
presence_tools(executor *x, const char *tenant)
{
	json_t *all = json_object(), *v, *t;
	kvKeysList keys;
	kvEntry *e = NULL;
	char err[64];
	size_t plen = strlen(tenant), i;

	memset(&keys, 0, sizeof(keys));
	if (x->presence == NULL || kvStore_Keys(&keys, x->presence, NULL) != NATS_OK)
		return all;
	for (int k = 0; k < keys.Count; k++) {
		if (strncmp(keys.Keys[k], tenant, plen) != 0 || keys.Keys[k][plen] != '.')
			continue;
		if (kvStore_Get(&e, x->presence, keys.Keys[k]) != NATS_OK)
			continue;
		v = NULL;
		if (rs_json_parse(kvEntry_ValueString(e), (size_t)kvEntry_ValueLen(e), &v, err,
		                  sizeof(err)) == RS_OK) {
			json_array_foreach(json_object_get(v, "tools"), i, t) {
				const char *name = json_string_value(json_object_get(t, "name"));
				if (name != NULL && json_object_get(all, name) == NULL)
					json_object_set(all, name, t);
			}
		}
		json_decref(v);
		kvEntry_Destroy(e);
		e = NULL;
	}
	kvKeysList_Destroy(&keys);
	return all;
}

/* tools of the request as Chat Completions "tools". */
static json_t *
api_tools(executor *x, const rs_event *req)
{
	json_t *tools = req->d.llm_requested.tools, *out = json_array(), *known = NULL, *t, *f,
	       *dev, *schema, *desc;
	size_t i;

	json_array_foreach(tools, i, t) {
		schema = json_object_get(t, "input_schema");
		desc = json_object_get(t, "description");
		if ((schema == NULL || desc == NULL) && known == NULL)
			known = presence_tools(x, req->tenant);
		dev = json_object_get(known, json_string_value(json_object_get(t, "name")));
		if (schema == NULL)
			schema = json_object_get(dev, "input_schema");
		if (desc == NULL)
			desc = json_object_get(dev, "description");
		f = json_pack("{s:O, s:o}", "name", json_object_get(t, "name"), "parameters",
		              json_is_object(schema) ? json_incref(schema)
		                                     : json_pack("{s:s}", "type", "object"));
		if (json_is_string(desc))
			json_object_set(f, "description", desc);
		json_array_append_new(out, json_pack("{s:s, s:o}", "type", "function", "function", f));
	}
	json_decref(known);
	return out;
}

static char *
request_body(executor *x, const rs_event *req)
{
	const rs_ev_llm_requested *l = &req->d.llm_requested;
	json_t *b = json_pack("{s:O, s:O, s:b, s:{s:b}}", "model",
	                      json_object_get(l->model, "model"), "messages", l->messages,
	                      "stream", 1, "stream_options", "include_usage", 1);
	char *s;

	if (json_array_size(l->tools) > 0)
		json_object_set_new(b, "tools", api_tools(x, req));
	if (l->max_tokens > 0)
		json_object_set_new(b, "max_tokens", json_integer(l->max_tokens));
	if (l->temperature != NULL)
		json_object_set(b, "temperature", l->temperature);
	s = rs_json_dump(b);
	json_decref(b);
	return s;
}

static rs_status
answer_error(executor *x, const rs_event *req, const char *code, const char *msg,
             rs_errclass cls, int64_t retry_after_ms)
{
	rs_err e = { (char *)code, (char *)msg, cls, cls != RS_ERRCLASS_PERMANENT, NULL };

	rs_metric_inc(rs_exec_em.effects_err[EK_LLM]);
	rs_log(RS_LOG_INFO, req->run_id, NULL, "llm %s: %s: %s", req->d.llm_requested.effect_id,
	       code, msg);
	return rs_exec_publish_result(x, req, NULL, &e, retry_after_ms);
}

/* A non-2xx answer of the model API. */
static rs_status
answer_status(executor *x, const rs_event *req, const turn *t, const http_resp *r)
{
	char code[32], msg[300];
	rs_errclass cls = r->status == 429 || r->status == 408 || r->status >= 500 ?
	                  RS_ERRCLASS_TRANSIENT : RS_ERRCLASS_PERMANENT;

	snprintf(code, sizeof(code), "http_%d", r->status);
	snprintf(msg, sizeof(msg), "model API answered %d: %.200s", r->status,
	         t->errlen ? t->errbody : "");
	return answer_error(x, req, code, msg, cls, rs_exec_http_retry_after_ms(r));
}

static rs_status
answer_message(executor *x, const rs_event *req, turn *t)
{
	json_t *out = json_pack("{s:o}", "message", rs_exec_sse_acc_message(t->acc)), *u;

	flush(t, 1);
	if (t->publish_failed) {
		json_decref(out);
		return RS_EUNAVAIL;
	}
	if ((u = rs_exec_sse_acc_usage(t->acc)) != NULL)
		json_object_set_new(out, "usage", u);
	if (rs_exec_sse_acc_finish(t->acc) != NULL)
		json_object_set_new(out, "finish_reason", json_string(rs_exec_sse_acc_finish(t->acc)));
	rs_metric_inc(rs_exec_em.effects_ok[EK_LLM]);
	return rs_exec_publish_result(x, req, out, NULL, 0);
}

/* Build the request (URL, headers with the key, NULL: none) and run it. */
static http_fail
call_model(executor *x, const rs_event *req, turn *t, http_resp *r, const char *key)
{
	const rs_ev_llm_requested *l = &req->d.llm_requested;
	const char *base = json_string_value(json_object_get(l->model, "base_url"));
	http_header hdr[3] = { { "Content-Type", "application/json" },
	                       { "Accept", "text/event-stream" }, { "Authorization", NULL } };
	char *url = NULL, *auth = NULL, *body;
	size_t bl = base ? strlen(base) : 0;
	http_req q;
	http_fail f;

	if (asprintf(&url, "%.*s/chat/completions",
	             (int)(bl > 0 && base[bl - 1] == '/' ? bl - 1 : bl), base ? base : "") < 0)
		rs_oom(0);
	if ((body = request_body(x, req)) == NULL)
		rs_oom(0);
	if (key != NULL && asprintf(&auth, "Bearer %s", key) < 0)
		rs_oom(0);
	hdr[2].value = auth;
	memset(&q, 0, sizeof(q));
	q.method = "POST";
	q.url = url;
	q.headers = hdr;
	q.nheaders = auth ? 3 : 2;
	q.body = body;
	q.body_len = strlen(body);
	q.deadline_ms = rs_mono_ms() + (l->deadline - rs_now_ms());
	q.max_body = (size_t)x->cfg.max_sse_bytes;
	q.on_data = on_data;
	q.on_tick = on_tick;
	q.tick_ms = x->cfg.chunk_ms / 4 > 0 ? x->cfg.chunk_ms / 4 : 1;
	q.ud = t;
	t->resp = r;
	f = rs_exec_http_do(&q, r);
	if (auth != NULL) {
		memset(auth, 0, strlen(auth));   /* the key does not outlive the request */
		free(auth);
	}
	free(body);
	free(url);
	return f;
}

rs_status
rs_exec_llm_run(executor *x, const rs_event *req)
{
	turn t;
	http_resp r;
	http_fail f;
	const char *name = json_string_value(json_object_get(req->d.llm_requested.model,
	                                                     "api_key_secret"));
	char err[256] = "", *key = NULL;
	size_t klen = 0;
	rs_status st;

	memset(&t, 0, sizeof(t));
	memset(&r, 0, sizeof(r));
	t.x = x;
	t.req = req;
	t.acc = rs_exec_sse_acc_new(&x->cfg.sse);
	if (req->d.llm_requested.deadline <= rs_now_ms()) {
		st = answer_error(x, req, "timeout", "the turn's deadline passed before it was sent",
		                  RS_ERRCLASS_TIMEOUT, 0);
		goto cleanup;
	}
	if (json_object_get(req->d.llm_requested.model, "api_key_env") != NULL) {
		st = answer_error(x, req, "secret_env_unsupported", "model.api_key_env named an "
		                  "environment variable: name a tenant secret in model.api_key_secret",
		                  RS_ERRCLASS_PERMANENT, 0);
		goto cleanup;
	}
	if (name != NULL) {
		st = rs_exec_secrets_get(x->secrets, req->tenant, name, &key, &klen);
		if (st == RS_ENOTFOUND) {
			snprintf(err, sizeof(err), "secret %s (model.api_key_secret) does not exist", name);
			st = answer_error(x, req, "secret_missing", err, RS_ERRCLASS_PERMANENT, 0);
			goto cleanup;
		}
		if (st != RS_OK)
			goto cleanup;   /* bucket unreadable now: not acked, re-issued */
	}
	f = call_model(x, req, &t, &r, key);
	if (t.publish_failed) {
		st = RS_EUNAVAIL;   /* not acked: the turn is re-issued */
	} else if (f == HF_EGRESS || f == HF_INVALID || f == HF_TLS || f == HF_TOO_LARGE ||
	           f == HF_REDIRECTS) {
		/* Permanent whatever arrived: the policy, the request or the limits. */
		st = answer_error(x, req, rs_exec_http_fail_code(f), r.err, rs_exec_http_fail_class(f), 0);
	} else if (r.status != 0 && (r.status < 200 || r.status > 299)) {
		st = answer_status(x, req, &t, &r);
	} else if (t.bad == SSE_TOO_LARGE) {
		st = answer_error(x, req, "response_too_large", rs_exec_sse_acc_error(t.acc),
		                  RS_ERRCLASS_PERMANENT, 0);
	} else if (t.bad) {
		st = answer_error(x, req, "bad_stream", rs_exec_sse_acc_error(t.acc),
		                  RS_ERRCLASS_TRANSIENT, 0);
	} else if (rs_exec_sse_acc_done(t.acc)) {
		st = answer_message(x, req, &t);
	} else if (f == HF_TIMEOUT) {
		st = answer_error(x, req, "timeout", "the model did not finish before the deadline",
		                  RS_ERRCLASS_TIMEOUT, 0);
	} else if (f == HF_CONNECT) {
		st = answer_error(x, req, "connect_failed", r.err, RS_ERRCLASS_TRANSIENT, 0);
	} else {
		st = answer_error(x, req, "stream_cut", r.status ? "the stream ended before the "
		                  "answer was complete" : r.err, RS_ERRCLASS_TRANSIENT, 0);
	}
cleanup:
	rs_secret_free(key);
	rs_exec_http_resp_free(&r);
	rs_exec_sse_acc_free(t.acc);
	return st;
}
