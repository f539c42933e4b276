/*
 * http.c - the libwebsockets HTTP server: the lws callbacks, routing,
 * headers, body collection and limits.
 *
 * Service thread only. Every /v1 request becomes an rs_api_job: headers
 * and body are copied into it here, a worker runs it (auth first), and the
 * result comes back through rs_api_work_drain -> rs_api_http_complete;
 * reply.c then answers (on WRITEABLE), starts an SSE stream, or parks the
 * request as a waiter in the hub. A parked request costs no thread and no
 * consumer: a hub entry and an lws timer.
 * What the client's bytes mean (route, query arguments, Prefer,
 * Last-Event-ID, Idempotency-Key, body shapes) is decided in request.c,
 * pure and fuzzed (tests/fuzz/fuzz_api_request.c); this file moves bytes
 * between lws and it.
 *
 * Authentication comes first, at header time: the Bearer key is looked up
 * in auth.c's cache (no round trip); on a miss the socket stops being read
 * (lws_rx_flow_control) while a worker asks KV `apikeys`, and only a good
 * key lets the body in. So an unauthenticated client costs no body buffer:
 * at most the bytes that arrived in the same read as its headers (lws's
 * one service buffer), and it gets its 401 before anything else is read;
 * the connection is then closed (its unread body is never drained).
 *
 * Limits: body cap RS_API_MAX_BODY (413 for an authenticated client; an
 * oversized body is read and discarded so the client gets the answer
 * instead of a reset), headers must arrive within RS_API_HEADER_TIMEOUT_S,
 * bodies within BODY_TIMEOUT_S, idle keep-alive connections close after
 * RS_API_IDLE_TIMEOUT_S; SSE watchers and parked waits per key and tenant
 * (limits.c: 429 at dispatch, before any work).
 */
#include "api.h"
#include "request.h"
#include "rs_config.h"
#include "rs_id.h"
#include "rs_json.h"
#include "rs_log.h"

#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BODY_TIMEOUT_S 30
/* Body bytes we may be handed before the key is known good: only what lws
 * read together with the headers (its service buffer, 4096 by default);
 * more means the socket was read despite rx flow control: close. */
#define PREAUTH_BODY_MAX 4096

static int body_or_dispatch(rs_api *app, rs_api_req *r, int in_cb);

/* ---- worker side: auth, then the handler of the route ---- */

/* Header-time auth on a cache miss: the KV look-up, nothing else. */
static int
auth_job(rs_api *app, rs_api_job *j)
{
	if (rs_api_auth(app, j) == RS_OK)
		j->status = 0;
	j->action = RS_ACT_AUTH;    /* a refusal's problem set RESPOND */
	return 0;
}

static int
route_job(rs_api *app, rs_api_job *j)
{
	if (rs_api_auth(app, j) != RS_OK)
		return 0;
	switch (j->route) {
	case R_AGENTS:
		if (j->method == RS_M_POST)
			rs_api_agents_post(app, j);
		else
			rs_api_agents_get(app, j, NULL, NULL);
		break;
	case R_AGENT:
		rs_api_agents_get(app, j, j->p1, NULL);
		break;
	case R_AGENT_VERSION:
		rs_api_agents_get(app, j, j->p1, j->p2);
		break;
	case R_RUNS:
		if (j->method == RS_M_POST)
			return rs_api_runs_create(app, j);
		rs_api_runs_list(app, j);
		break;
	case R_RUN:
		if (j->wait_s > 0) {
			uint64_t last = 0;
			int term = 0;
			rs_status st = rs_api_run_lookup(app, j->tenant, j->run_id, &last, &term);
			if (st != RS_OK && st != RS_ENOTFOUND) {
				/* Unknown (no RUNS leader now?): never the plain GET,
				 * which may answer 200 with a run still in flight. */
				rs_api_problem_retry(j, 503, 1, "cannot read run %s from JetStream: %s", j->run_id,
				               rs_status_str(st));
				break;
			}
			if (st == RS_OK && !term) {
				rs_api_park_reply(j, last);
				break;
			}
		}
		rs_api_runs_get(app, j);
		if (j->wait_s > 0 && j->status == 0)
			rs_api_park_reply(j, 0);   /* the view was not terminal after all: wait */
		break;
	case R_RUN_EVENTS:
		rs_api_runs_events(app, j);
		break;
	case R_RUN_STREAM:
		rs_api_sse_open(app, j);
		break;
	case R_RUN_CANCEL:
		rs_api_runs_cancel(app, j);
		break;
	case R_SCHEDULES:
		if (j->method == RS_M_POST)
			rs_api_schedules_create(app, j);
		else
			rs_api_schedules_list(app, j);
		break;
	case R_SCHEDULE:
		if (j->method == RS_M_DELETE)
			rs_api_schedules_delete(app, j, j->p1);
		else
			rs_api_schedules_get(app, j, j->p1);
		break;
	case R_SCHEDULE_PAUSE:
	case R_SCHEDULE_RESUME:
		rs_api_schedules_pause(app, j, j->p1, j->route == R_SCHEDULE_PAUSE);
		break;
	case R_RUN_FORK:
	case R_RUN_RETRY:
		return rs_api_runs_fork(app, j, j->route == R_RUN_RETRY);
	case R_RUN_SIGNAL:
		rs_api_runs_signal(app, j, j->p2);
		break;
	case R_SECRETS:
		rs_api_secrets_list(app, j);
		break;
	case R_RUN_STATE:
		rs_api_run_state(app, j);
		break;
	case R_RUN_CHECK:
		rs_api_run_check(app, j);
		break;
	case R_RUN_STREAM_TOKEN:
		rs_api_stream_token(app, j);
		break;
	case R_DEVICES:
		rs_api_devices_list(app, j);
		break;
	case R_SECRET:
		if (j->method == RS_M_PUT)
			rs_api_secrets_put(app, j, j->p1);
		else
			rs_api_secrets_delete(app, j, j->p1);
		break;
	default:
		rs_api_problem(j, 404, "no such resource");
	}
	return 0;
}

/* ---- service thread ---- */

static rs_api_method
method_of(struct lws *wsi)
{
	if (lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI))
		return RS_M_GET;
	if (lws_hdr_total_length(wsi, WSI_TOKEN_POST_URI))
		return RS_M_POST;
	if (lws_hdr_total_length(wsi, WSI_TOKEN_PUT_URI))
		return RS_M_PUT;
	if (lws_hdr_total_length(wsi, WSI_TOKEN_DELETE_URI))
		return RS_M_DELETE;
	if (lws_hdr_total_length(wsi, WSI_TOKEN_PATCH_URI))
		return RS_M_PATCH;
	return RS_M_OTHER;
}

static int
parse_u(const char *s, int64_t *out)
{
	return rs_parse_int(s, 0, INT64_MAX, out) == RS_OK ? 0 : -1;
}

static void
custom_hdr(struct lws *wsi, const char *name, char *out, size_t cap)
{
	int n = lws_hdr_custom_copy(wsi, out, (int)cap, name, (int)strlen(name));

	if (n < 0)
		out[0] = '\0';
}

static void
reset_transaction(rs_api *app, rs_api_req *r)
{
	if (r->ticket != NULL) {
		r->ticket->req = NULL;   /* the job's result will be dropped */
		r->ticket = NULL;
	}
	rs_api_unpark(app, r);
	if (r->sse) {
		rs_api_hub_del(app, r);
		rs_api_sse_release(app, r);
	}
	rs_api_limit_release(app, r);
	rs_api_job_free(r->draft);
	rs_api_job_free(r->resp_job);
	rs_api_job_free(r->wait_job);
	r->draft = r->resp_job = r->wait_job = NULL;
	r->have_resp = 0;
	r->auth_pending = r->body_done = r->has_body = r->close_after = 0;
}

/* Body complete (or none): hand the request to a worker. */
static int
dispatch(rs_api *app, rs_api_req *r, int in_cb)
{
	rs_api_job *j = r->draft;

	r->draft = NULL;
	if (j->too_large) {
		rs_api_problem(j, 413, "request body larger than %zu bytes (RS_API_MAX_BODY)",
		               app->max_body);
		goto answer;
	}
	/* Authenticated by now (on_request / auth_done): the limits count
	 * by key and tenant before any work is done for the request. */
	if ((j->route == R_RUN_STREAM && rs_api_limit_take(app, r, j, RS_API_LIM_WATCH) != 0) ||
	    (j->route != R_RUN_STREAM && j->wait_s > 0 &&
	     rs_api_limit_take(app, r, j, RS_API_LIM_WAIT) != 0))
		goto answer;
	if (j->route == R_RUN_STREAM) {
		/* Into the hub before the worker looks at history: nothing
		 * appended from now on can be missed (see live.c). */
		r->sse = 1;
		r->sse_last = j->after;
		r->sse_behind = 0;
		r->drop_gen = 0;
		r->replay_sseq = 0;
		snprintf(r->run_id, sizeof(r->run_id), "%s", j->run_id);
		snprintf(r->hub_tenant, sizeof(r->hub_tenant), "%s", j->tenant);
		rs_api_hub_add(app, r);
		j->action = RS_ACT_SSE;
		lws_set_timeout(r->wsi, NO_PENDING_TIMEOUT, 0);
	} else {
		/* A job (maybe a Postgres read) should not take forever. */
		lws_set_timeout(r->wsi, PENDING_TIMEOUT_HTTP_CONTENT, 30 + j->wait_s);
	}
	rs_api_submit(app, r, j, route_job);
	return 0;
answer:
	/* Inside this connection's own lws callback we may write now;
	 * from anywhere else (auth_done) only on WRITEABLE. */
	if (in_cb)
		return rs_api_respond_now(app, r, j);
	rs_api_respond_later(app, r, j);
	return 0;
}

static int
on_request(rs_api *app, rs_api_req *r, struct lws *wsi, const char *uri)
{
	rs_api_job *j;
	const char *allow = NULL;
	char buf[RS_API_HDR_MAX], clen[32];
	int route;

	r->wsi = wsi;
	r->app = app;
	reset_transaction(app, r);
	/* /healthz, /readyz, /metrics: answered (and the transaction
	 * completed) by rs_ops; 1 means "not an ops path". */
	{
		int rc = rs_ops_lws_respond(wsi, &app->ops, uri);
		if (rc != 1)
			return rc;
	}
	j = rs_api_job_new();
	if (j == NULL)
		return -1;
	j->method = method_of(wsi);
	snprintf(j->path, sizeof(j->path), "%s", uri);
	for (int i = 0; i < 16; i++) {
		int n = lws_hdr_copy_fragment(wsi, buf, sizeof(buf), WSI_TOKEN_HTTP_URI_ARGS, i);
		size_t have = strlen(j->query);
		if (n <= 0)
			break;
		snprintf(j->query + have, sizeof(j->query) - have, "%s%s", have ? "&" : "", buf);
	}
	if (atomic_load(&app->stopping)) {
		rs_api_problem_retry(j, 503, 1, "shutting down");
		return rs_api_respond_now(app, r, j);
	}
	/* Browsers (ui.c): CORS preflights and the viewer's static files are
	 * answered here, with no key and no worker. */
	rs_api_cors_origin(app, wsi, r->cors_origin, sizeof(r->cors_origin));
	if (rs_api_cors_preflight(app, wsi, r->cors_origin, j) == 0 ||
	    rs_api_ui_serve(app, wsi, uri, j) == 0)
		return rs_api_respond_now(app, r, j);
	route = rs_api_route_of(uri, j, &allow);
	if (route == R_NONE) {
		rs_api_problem(j, 404, "no such resource: %s", uri);
		return rs_api_respond_now(app, r, j);
	}
	if (!rs_api_method_allowed(j->method, allow)) {
		rs_api_problem(j, 405, "%s allows %s", uri, allow);
		snprintf(j->hdrs, sizeof(j->hdrs), "Allow: %s\n", allow);
		return rs_api_respond_now(app, r, j);
	}
	j->route = route;
	if (lws_hdr_copy(wsi, j->auth, sizeof(j->auth), WSI_TOKEN_HTTP_AUTHORIZATION) < 0)
		j->auth[0] = '\0';
	custom_hdr(wsi, "idempotency-key:", j->idem, sizeof(j->idem));
	/* Present but refused (too long for the buffer: the copy left it
	 * empty; or bytes run.start cannot carry): 400, never "no key",
	 * which would let a retry start a second run. */
	if (lws_hdr_custom_length(wsi, "idempotency-key:", 16) > 0 &&
	    !rs_api_idem_key_ok(j->idem)) {
		rs_api_problem(j, 400, "Idempotency-Key: must be %s", RS_API_IDEM_RULE);
		r->close_after = 1;   /* the body (if any) is not read */
		return rs_api_respond_now(app, r, j);
	}
	custom_hdr(wsi, "traceparent:", j->traceparent, sizeof(j->traceparent));
	custom_hdr(wsi, "prefer:", buf, sizeof(buf));
	j->wait_s = rs_api_prefer_wait(buf);
	if (route == R_RUN && rs_api_qarg(j->query, "wait", buf, sizeof(buf))) {
		/* ?wait=N means the same as Prefer: wait=N */
		snprintf(clen, sizeof(clen), "wait=%.8s", buf);
		j->wait_s = rs_api_prefer_wait(clen);
	}
	if (route != R_RUNS && route != R_RUN && route != R_RUN_FORK && route != R_RUN_RETRY)
		j->wait_s = 0;
	if (route == R_RUN_STREAM) {
		uint64_t after = 0;
		custom_hdr(wsi, "last-event-id:", buf, sizeof(buf));
		if (buf[0] == '\0')
			rs_api_qarg(j->query, "after", buf, sizeof(buf));
		if (buf[0] != '\0' && rs_api_parse_runseq(buf, &after) != RS_OK) {
			rs_api_problem(j, 400, "Last-Event-ID / after: must be an event runseq (integer >= 0)");
			return rs_api_respond_now(app, r, j);
		}
		j->after = after;
	}
	if (j->method == RS_M_POST || j->method == RS_M_PUT) {
		int64_t cl = 0;
		if (lws_hdr_copy(wsi, clen, sizeof(clen), WSI_TOKEN_HTTP_CONTENT_LENGTH) > 0 &&
		    parse_u(clen, &cl) == 0 && cl > 0) {
			r->has_body = 1;
			if ((size_t)cl > app->max_body)
				j->too_large = 1;
		}
	}
	/* A stream opened with a run-scoped token (viewer.c) instead of the
	 * key: for clients that cannot send a header (EventSource). */
	if (route == R_RUN_STREAM && j->auth[0] == '\0' &&
	    rs_api_qarg(j->query, "token", buf, sizeof(buf))) {
		rs_status ts = rs_api_stream_token_check(buf, j->run_id, j->tenant, sizeof(j->tenant));
		if (ts != RS_OK) {
			rs_api_problem(j, 401, "stream token %s: ask POST /v1/runs/{id}/stream-token for "
			               "a new one", ts == RS_ETIMEOUT ? "expired" : "invalid for this run");
			strcat(j->hdrs, "WWW-Authenticate: Bearer realm=\"runstream\", error=\"invalid_token\"\n");
			return rs_api_respond_now(app, r, j);
		}
		rs_sha256_hex(buf, strlen(buf), j->keyid);   /* limits count per token */
		j->authed = 1;
		r->draft = j;
		return body_or_dispatch(app, r, 1);
	}
	/* The key before the body. */
	switch (rs_api_auth_cached(app, j)) {
	case RS_OK:
		break;
	case RS_ENOTFOUND: {
		rs_api_job *a = rs_api_job_new();
		if (a == NULL) {
			rs_api_job_free(j);
			return -1;
		}
		memcpy(a->path, j->path, sizeof(a->path));
		memcpy(a->auth, j->auth, sizeof(a->auth));
		a->t0_us = j->t0_us;
		a->action = RS_ACT_AUTH;
		r->draft = j;
		r->auth_pending = 1;
		/* Stop reading the socket until the key is known. What lws
		 * already read with the headers still comes (on_body). */
		if (r->has_body)
			lws_rx_flow_control(wsi, 0);
		lws_set_timeout(wsi, PENDING_TIMEOUT_HTTP_CONTENT, BODY_TIMEOUT_S);
		rs_api_submit(app, r, a, auth_job);
		return 0;
	}
	default:
		/* respond_now frees j: the draft must not point at it, or the
		 * close that follows (close_after) frees it again. */
		r->draft = NULL;
		r->close_after = r->has_body;
		return rs_api_respond_now(app, r, j);
	}
	r->draft = j;
	return body_or_dispatch(app, r, 1);
}

/* Authenticated (now, or by auth_done): read the body, or dispatch. */
static int
body_or_dispatch(rs_api *app, rs_api_req *r, int in_cb)
{
	if (r->has_body && !r->body_done) {
		/* the body must arrive within its own deadline */
		lws_set_timeout(r->wsi, PENDING_TIMEOUT_HTTP_CONTENT, BODY_TIMEOUT_S);
		return 0;   /* LWS_CALLBACK_HTTP_BODY follows */
	}
	return dispatch(app, r, in_cb);
}

/* The header-time auth job is back (service thread). */
static void
auth_done(rs_api *app, rs_api_req *r, rs_api_job *a)
{
	rs_api_job *j = r->draft;

	r->auth_pending = 0;
	/* lws gives a flow-controlled connection no WRITEABLE either: reading
	 * resumes whatever the answer. After a refusal what it reads is
	 * dropped unbuffered (on_body: no draft), at most a buffer's worth
	 * before the 401 is written and the connection closed. */
	if (r->has_body)
		lws_rx_flow_control(r->wsi, 1);
	if (j == NULL) {
		rs_api_job_free(a);
		return;
	}
	if (a->status != 0) {
		/* 401 (or 503): answered without reading the body, so the
		 * connection cannot carry another request. */
		r->draft = NULL;
		rs_api_job_free(j);
		r->close_after = 1;
		rs_api_respond_later(app, r, a);
		return;
	}
	memcpy(j->tenant, a->tenant, sizeof(j->tenant));
	memcpy(j->keyid, a->keyid, sizeof(j->keyid));
	j->authed = 1;
	rs_api_job_free(a);
	if (body_or_dispatch(app, r, 0) != 0)
		lws_set_timeout(r->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
}

/* A finished job: header-time auth is this file's; everything else is
 * an answer, a stream or a waiter (reply.c). */
void
rs_api_http_complete(rs_api *app, rs_api_req *r, rs_api_job *j)
{
	if (j->action == RS_ACT_AUTH)
		auth_done(app, r, j);
	else
		rs_api_reply_complete(app, r, j);
}

static int
on_body(rs_api *app, rs_api_req *r, const void *in, size_t len)
{
	rs_api_job *j = r->draft;
	char *nb;

	/* lws reports an empty body as (NULL, 0): nothing to keep (and
	 * memcpy from NULL is undefined even for 0 bytes). */
	if (j == NULL || j->too_large || len == 0)
		return 0;
	if (r->auth_pending && j->body_len + len > PREAUTH_BODY_MAX)
		return -1;      /* read past rx flow control: not ours to hold */
	if (j->body_len + len > app->max_body) {
		j->too_large = 1;
		free(j->body);
		j->body = NULL;
		j->body_len = 0;
		return 0;
	}
	nb = realloc(j->body, j->body_len + len + 1);
	if (nb == NULL)
		return -1;
	memcpy(nb + j->body_len, in, len);
	j->body = nb;
	j->body_len += len;
	j->body[j->body_len] = '\0';
	return 0;
}

static void
heartbeat(lws_sorted_usec_list_t *sul)
{
	rs_api *app = lws_container_of(sul, rs_api, hb_sul);

	rs_api_sse_heartbeat(app);
	lws_sul_schedule(app->ctx, 0, &app->hb_sul, heartbeat, LWS_US_PER_SEC);
}

static int
cb_http(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
	rs_api_req *r = user;
	rs_api *app = lws_context_user(lws_get_context(wsi));

	switch (reason) {
	case LWS_CALLBACK_PROTOCOL_INIT:
		/* The vhost exists now: from here on drains are safe. */
		if (app != NULL)
			lws_sul_schedule(app->ctx, 0, &app->hb_sul, heartbeat, LWS_US_PER_SEC);
		return 0;
	case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
		/* Comes for every protocol and also before/after our setup:
		 * only drain when the work queue exists. */
		if (app != NULL && app->work != NULL && lws_get_vhost_by_name(app->ctx, "default"))
			rs_api_work_drain(app);
		return 0;
	case LWS_CALLBACK_HTTP:
		if (r == NULL)
			return -1;
		return on_request(app, r, wsi, in);
	case LWS_CALLBACK_HTTP_BODY:
		return r != NULL ? on_body(app, r, in, len) : -1;
	case LWS_CALLBACK_HTTP_BODY_COMPLETION:
		if (r == NULL)
			return -1;
		/* A POST with "Content-Length: 0" was dispatched at once;
		 * lws still reports its (empty) body complete. A body that
		 * came whole with the headers waits for the key check. */
		if (r->draft == NULL)
			return 0;
		if (r->auth_pending) {
			r->body_done = 1;
			return 0;
		}
		return dispatch(app, r, 1);
	case LWS_CALLBACK_HTTP_WRITEABLE:
		if (r == NULL)
			return -1;
		if (r->sse == 2)
			return rs_api_sse_writeable(app, r);
		if (r->have_resp) {
			rs_api_job *j = r->resp_job;
			r->resp_job = NULL;
			r->have_resp = 0;
			return rs_api_respond_now(app, r, j);
		}
		return 0;
	case LWS_CALLBACK_CLOSED_HTTP:
	case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
		if (r != NULL && r->app != NULL)
			reset_transaction(app, r);
		return 0;
	default:
		return lws_callback_http_dummy(wsi, reason, user, in, len);
	}
}

static const struct lws_protocols protocols[] = {
	{ "http", cb_http, sizeof(rs_api_req), 0, 0, NULL, 0 },
	{ NULL, NULL, 0, 0, 0, NULL, 0 }
};

rs_status
rs_api_http_start(rs_api *app)
{
	struct lws_context_creation_info info;

	if (rs_api_hub_init(app) != RS_OK)
		return RS_ENOMEM;
	app->on_job_done = rs_api_http_complete;
	app->on_frame = rs_api_hub_frame;
	memset(&info, 0, sizeof(info));
	info.port = app->port;
	info.iface = app->listen_addr;
	info.protocols = protocols;
	info.vhost_name = "default";
	info.user = app;
	info.options = LWS_SERVER_OPTION_DISABLE_IPV6;
	/* poll(2) rescans every fd on each wakeup: with 10,000 SSE
	 * connections that is most of the cost of a delivery. libev (epoll)
	 * only looks at the active ones. */
	if (strcmp(app->event_lib, "libev") == 0) {
		/* Our own loop (lws' foreign-loop mode): lws_service() on an
		 * lws-owned libev loop runs until the loop is broken, so the
		 * shutdown flag would never be looked at. We turn the loop
		 * ourselves, once per wakeup (rs_api_http_service). */
		app->evloop = ev_loop_new(EVFLAG_AUTO);
		if (app->evloop == NULL)
			return RS_ENOMEM;
		app->foreign[0] = app->evloop;
		info.foreign_loops = app->foreign;
		info.options |= LWS_SERVER_OPTION_LIBEV;
	}
	info.timeout_secs = (unsigned)app->header_timeout_s;
	info.keepalive_timeout = app->idle_timeout_s;
	info.max_http_header_pool = 0;      /* as many as fds */
	info.fd_limit_per_thread = 0;
	lws_set_log_level(LLL_ERR, NULL);
	app->ctx = lws_create_context(&info);
	if (app->ctx == NULL) {
		rs_error("api: cannot listen on %s:%d", app->listen_addr, app->port);
		return RS_EIO;
	}
	rs_info("api: listening on http://%s:%d", app->listen_addr, app->port);
	return RS_OK;
}

int
rs_api_http_service(rs_api *app, int nowait)
{
	if (app->evloop != NULL) {
		ev_run(app->evloop, nowait ? EVRUN_NOWAIT : EVRUN_ONCE);
		return 0;
	}
	return lws_service(app->ctx, nowait ? -1 : 0);
}

void
rs_api_http_stop(rs_api *app)
{
	if (app->ctx != NULL)
		lws_context_destroy(app->ctx);
	app->ctx = NULL;
	rs_api_hub_free(app);       /* every connection has left it */
	if (app->evloop != NULL) {
		/* lws stops its watchers in destroy; let libev settle them. */
		ev_run(app->evloop, EVRUN_NOWAIT);
		ev_loop_destroy(app->evloop);
	}
	app->evloop = NULL;
}
