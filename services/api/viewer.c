/*
 * viewer.c - the routes the run viewer needs beyond the core API
 * (docs/viewer.md, docs/api.md "Viewer"): a run's state at any event, the
 * re-check of its history against today's code, run-scoped stream tokens
 * and the tenant's devices.
 *
 *   GET  /v1/runs/{id}/state?at=N   the fold of events 1..N: rs_run_view,
 *                                   what `runctl replay --at N` prints
 *   GET  /v1/runs/{id}/check        rs_replay_check (common/rs_replay.c),
 *                                   what `runctl replay --check` reports
 *   POST /v1/runs/{id}/stream-token a token for ?token= on that run's
 *                                   stream, for clients that cannot send
 *                                   a header (EventSource)
 *   GET  /v1/devices                the devices read model (Postgres)
 *
 * Worker threads. state and check read the run's history from its literal
 * subject (direct gets for a short run, an ordered consumer for a long
 * one, as the orchestrator's cold rebuild does), decoded with
 * rs_event_decode, at most RS_API_VIEW_MAX_EVENTS events: the state
 * machine is the same code the orchestrator and runctl link, so the
 * browser never re-implements the fold.
 *
 * Stream tokens never carry the API key: "st1.<tenant>.<expiry>.<mac>",
 * mac = HMAC-SHA256(key, "st1\n<tenant>\n<run_id>\n<expiry>") in hex,
 * where key is RS_API_STREAM_TOKEN_KEY (64 hex chars; set the same on
 * every API process behind one address) or 32 random bytes per process.
 * A token opens only that run's stream, until it expires
 * (RS_API_STREAM_TOKEN_TTL_S, 60 s); a stream opened in time keeps going.
 * It is checked at header time without any round trip (http.c).
 */
#include "api.h"
#include "rs_mem.h"
#include "request.h"
#include "rs_agent.h"
#include "rs_config.h"
#include "rs_effects.h"
#include "rs_event.h"
#include "rs_id.h"
#include "rs_json.h"
#include "rs_log.h"
#include "rs_replay.h"
#include "rs_run.h"
#include "rs_time.h"

#include "rs_hash.h"
#include <inttypes.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static unsigned char token_key[32];
static int64_t token_ttl_s = 60;
static int64_t view_max_events = 100000;

rs_status
rs_api_stream_token_init(rs_api *app)
{
	const char *k = rs_env_str("RS_API_STREAM_TOKEN_KEY", "");
	char hex[65];

	(void)app;
	if (rs_env_int("RS_API_STREAM_TOKEN_TTL_S", 60, 5, 3600, &token_ttl_s) != RS_OK ||
	    rs_env_int("RS_API_VIEW_MAX_EVENTS", 100000, 100, 10000000, &view_max_events) != RS_OK)
		return RS_EINVAL;
	if (k[0] == '\0') {
		if (rs_id_random_hex(hex, sizeof(token_key)) != RS_OK)
			return RS_EIO;
		k = hex;
	} else if (strlen(k) != 64) {
		rs_error("RS_API_STREAM_TOKEN_KEY: must be 64 hex characters (32 bytes)");
		return RS_EINVAL;
	}
	for (size_t i = 0; i < sizeof(token_key); i++) {
		int hi = rs_hex_digit(k[2 * i]), lo = rs_hex_digit(k[2 * i + 1]);
		if (hi < 0 || lo < 0) {
			rs_error("RS_API_STREAM_TOKEN_KEY: must be 64 hex characters (32 bytes)");
			return RS_EINVAL;
		}
		token_key[i] = (unsigned char)(hi << 4 | lo);
	}
	return RS_OK;
}

static void
token_mac(const char *tenant, const char *run_id, int64_t exp, char out[65])
{
	char msg[256];
	unsigned char mac[32];
	unsigned int len = sizeof(mac);
	int n = snprintf(msg, sizeof(msg), "st1\n%s\n%s\n%" PRId64, tenant, run_id, exp);

	if (HMAC(EVP_sha256(), token_key, sizeof(token_key), (const unsigned char *)msg,
	         (size_t)n, mac, &len) == NULL)
		abort();
	for (unsigned i = 0; i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", mac[i]);
}

rs_status
rs_api_stream_token_check(const char *token, const char *run_id, char *tenant, size_t cap)
{
	const char *dot_mac, *dot_exp;
	char t[72], expect[65];
	int64_t exp;
	char exps[24];
	size_t tl;

	if (strncmp(token, "st1.", 4) != 0 || (dot_mac = strrchr(token, '.')) == NULL ||
	    strlen(dot_mac + 1) != 64)
		return RS_EINVAL;
	for (dot_exp = dot_mac - 1; dot_exp > token + 3 && *dot_exp != '.'; dot_exp--)
		;
	if (dot_exp <= token + 3 || (size_t)(dot_mac - dot_exp - 1) >= sizeof(exps))
		return RS_EINVAL;
	tl = (size_t)(dot_exp - (token + 4));
	if (tl == 0 || tl >= sizeof(t) || tl >= cap)
		return RS_EINVAL;
	memcpy(t, token + 4, tl);
	t[tl] = '\0';
	memcpy(exps, dot_exp + 1, (size_t)(dot_mac - dot_exp - 1));
	exps[dot_mac - dot_exp - 1] = '\0';
	if (!rs_id_is_token(t, 64) || rs_parse_int(exps, 0, INT64_MAX, &exp) != RS_OK)
		return RS_EINVAL;
	token_mac(t, run_id, exp, expect);
	if (CRYPTO_memcmp(expect, dot_mac + 1, 64) != 0)
		return RS_EINVAL;
	if (exp < (int64_t)time(NULL))
		return RS_ETIMEOUT;
	snprintf(tenant, cap, "%s", t);
	return RS_OK;
}

/* 404 / 503 for a run that cannot be read; RS_OK if it exists. */
static rs_status
need_run(rs_api *app, rs_api_job *job, uint64_t *last)
{
	int term = 0;
	rs_status st = rs_api_run_lookup(app, job->tenant, job->run_id, last, &term);

	if (st == RS_ENOTFOUND)
		rs_api_problem(job, 404, "no run %s", job->run_id);
	else if (st != RS_OK) {
		rs_api_problem_retry(job, 503, 1, "cannot read run %s from JetStream: %s", job->run_id,
		               rs_status_str(st));
	}
	return st;
}

void
rs_api_stream_token(rs_api *app, rs_api_job *job)
{
	char mac[65], tok[256], url[400];
	uint64_t last = 0;
	int64_t exp = (int64_t)time(NULL) + token_ttl_s;

	if (need_run(app, job, &last) != RS_OK)
		return;
	token_mac(job->tenant, job->run_id, exp, mac);
	snprintf(tok, sizeof(tok), "st1.%s.%" PRId64 ".%s", job->tenant, exp, mac);
	snprintf(url, sizeof(url), "/v1/runs/%s/stream?token=%s", job->run_id, tok);
	rs_api_json(job, 200, json_pack("{s:s, s:I, s:I, s:s}", "token", tok, "expires_at",
	                                (json_int_t)exp, "ttl_s", (json_int_t)token_ttl_s,
	                                "stream_url", url));
}

/* ---- history: the run's events, decoded ---- */

typedef struct {
	rs_event *ev;
	size_t n, cap;
} view_hist;

static void
hist_free(view_hist *h)
{
	for (size_t i = 0; i < h->n; i++)
		rs_event_free(&h->ev[i]);
	free(h->ev);
	memset(h, 0, sizeof(*h));
}

/* Decode one event message into h. On failure a problem is set on job. */
static rs_status
hist_add(rs_api_job *job, view_hist *h, natsMsg *m, uint64_t sseq)
{
	char err[256];
	rs_event ev;

	if ((int64_t)h->n >= view_max_events) {
		rs_api_problem(job, 422, "the run has more than %" PRId64 " events "
		               "(RS_API_VIEW_MAX_EVENTS): use runctl replay", view_max_events);
		return RS_EINVAL;
	}
	memset(&ev, 0, sizeof(ev));
	if (rs_event_decode(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), &ev, err,
	                    sizeof(err)) != RS_OK) {
		rs_api_problem(job, 500, "event at stream sequence %" PRIu64 " does not decode: %s",
		               sseq, err);
		return RS_EINVAL;
	}
	if (h->n == h->cap) {
		size_t ncap = h->cap ? h->cap * 2 : 64;
		rs_event *ne = realloc(h->ev, ncap * sizeof(*ne));
		if (ne == NULL)
			rs_oom(0);
		h->ev = ne;
		h->cap = ncap;
	}
	h->ev[h->n++] = ev;
	return RS_OK;
}

static rs_status
unavailable(rs_api_job *job)
{
	rs_api_problem_retry(job, 503, 1, "cannot read run %s from JetStream", job->run_id);
	return RS_EUNAVAIL;
}

#define DIRECT_GET_MAX 64

/* read_history's reader state. */
typedef struct {
	rs_api_job *job;
	view_hist *h;
	uint64_t upto;
} hist_read;

static int
hist_each(void *arg, natsMsg *m, uint64_t sseq)
{
	hist_read *r = arg;

	if (hist_add(r->job, r->h, m, sseq) != RS_OK)
		return -1;
	return r->h->ev[r->h->n - 1].runseq >= r->upto;
}

/* Events 1..upto (0: all) of the run into h, as they are now (up to the
 * run's newest event at the time of the call). Like the orchestrator's
 * cold rebuild: a short run by direct gets, a long one by an ordered
 * consumer (rs_api_log_history). On failure a problem is set on job. */
static rs_status
read_history(rs_api *app, rs_api_job *job, uint64_t upto, view_hist *h)
{
	jsDirectGetMsgOptions o;
	char subj[160], err[256];
	const char *sq = NULL;
	uint64_t last_runseq = 0;
	natsMsg *m = NULL;
	natsStatus s;
	rs_status st;
	rs_event ev;
	hist_read r = { job, h, 0 };

	rs_event_subject(job->tenant, job->run_id, subj, sizeof(subj));
	jsDirectGetMsgOptions_Init(&o);
	o.LastBySubject = subj;
	s = rs_api_log_get(app, &m, &o);
	if (s == NATS_NOT_FOUND)
		return RS_OK;
	if (s != NATS_OK || natsMsgHeader_Get(m, "Nats-Sequence", &sq) != NATS_OK || sq == NULL) {
		natsMsg_Destroy(m);
		return unavailable(job);
	}
	memset(&ev, 0, sizeof(ev));
	if (rs_event_decode(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), &ev, err,
	                    sizeof(err)) == RS_OK)
		last_runseq = ev.runseq;
	rs_event_free(&ev);
	natsMsg_Destroy(m);
	if (upto == 0 || upto > last_runseq)
		upto = last_runseq;
	if (upto == 0)
		return RS_OK;
	r.upto = upto;
	st = rs_api_log_history(app, job->tenant, job->run_id, 0, upto > DIRECT_GET_MAX,
	                        hist_each, &r);
	if (st == RS_ERR)
		return RS_EINVAL;       /* hist_add set the problem */
	return st == RS_OK ? RS_OK : unavailable(job);
}

void
rs_api_run_state(rs_api *app, rs_api_job *job)
{
	view_hist h = { 0 };
	char at_s[24] = "", err[300];
	int64_t at = 0;
	uint64_t last = 0;
	rs_run *run = NULL;
	rs_eff_track eff;
	json_t *view;

	rs_eff_init(&eff);
	if (rs_api_qarg(job->query, "at", at_s, sizeof(at_s)) &&
	    rs_parse_int(at_s, 1, INT64_MAX, &at) != RS_OK) {
		rs_api_problem(job, 400, "at: must be an event runseq >= 1");
		return;
	}
	if (need_run(app, job, &last) != RS_OK || read_history(app, job, (uint64_t)at, &h) != RS_OK)
		goto cleanup;
	if (at == 0)
		at = h.n > 0 ? (int64_t)h.ev[h.n - 1].runseq : 0;
	if (h.n == 0 || h.ev[h.n - 1].runseq < (uint64_t)at) {
		rs_api_problem(job, 422, "at: the run has %" PRIu64 " events; %" PRId64 " is past its end",
		               h.n ? h.ev[h.n - 1].runseq : 0, at);
		goto cleanup;
	}
	run = rs_run_new();
	for (size_t i = 0; i < h.n && h.ev[i].runseq <= (uint64_t)at; i++) {
		if (rs_run_evolve(run, &h.ev[i], err, sizeof(err)) != RS_OK) {
			rs_api_problem(job, 500, "the state machine rejects the history: %s", err);
			goto cleanup;
		}
		rs_eff_add(&eff, &h.ev[i]);
	}
	view = rs_run_view(run);
	/* As `runctl replay --at` shows it: the http requests and model
	 * turns, for a run that has any (rs_effects.h). */
	if (json_array_size(rs_eff_list(&eff)) > 0)
		json_object_set(view, "effects", rs_eff_list(&eff));
	rs_api_json(job, 200, json_pack("{s:I, s:I, s:s, s:o}", "at", (json_int_t)at, "last_seq",
	                                (json_int_t)last, "status",
	                                rs_run_status_name(rs_run_get_status(run)), "state", view));
cleanup:
	rs_eff_free(&eff);
	rs_run_free(run);
	hist_free(&h);
}

void
rs_api_run_check(rs_api *app, rs_api_job *job)
{
	view_hist h = { 0 };
	rs_replay_report rep;
	const rs_ev_run_created *rc0;
	rs_agent *agent = NULL;
	kvEntry *e = NULL;
	json_t *def = NULL;
	char key[256], err[600];
	uint64_t last = 0;

	memset(&rep, 0, sizeof(rep));
	if (need_run(app, job, &last) != RS_OK || read_history(app, job, 0, &h) != RS_OK)
		goto cleanup;
	if (h.n == 0 || h.ev[0].type != RS_EV_RUN_CREATED) {
		rs_api_problem(job, 409, "the run has no run.created event yet: nothing to check");
		goto cleanup;
	}
	rc0 = &h.ev[0].d.run_created;
	snprintf(key, sizeof(key), "%s.%s.%s", job->tenant, rc0->agent, rc0->version);
	if (kvStore_Get(&e, app->kv_agents, key) != NATS_OK ||
	    rs_json_parse(kvEntry_ValueString(e), (size_t)kvEntry_ValueLen(e), &def, err,
	                  sizeof(err)) != RS_OK) {
		rs_api_problem_retry(job, 503, 1, "cannot read agent %s version %s", rc0->agent, rc0->version);
		goto cleanup;
	}
	if (rs_agent_parse(def, &agent, err, sizeof(err)) != RS_OK) {
		rs_api_problem(job, 409, "the agent definition %s@%s is not valid today: %s", rc0->agent,
		               rc0->version, err);
		goto cleanup;
	}
	if (rs_replay_check(h.ev, h.n, agent, &rep, err, sizeof(err)) != RS_OK) {
		rs_api_problem(job, 500, "the history does not apply: %s", err);
		goto cleanup;
	}
	if (rep.ok)
		rs_api_json(job, 200, json_pack("{s:b, s:I, s:I, s:s, s:s, s:s}", "ok", 1, "events",
		                                (json_int_t)rep.events, "groups", (json_int_t)rep.groups,
		                                "status", rep.status, "agent", rc0->agent, "version",
		                                rc0->version));
	else
		rs_api_json(job, 200, json_pack("{s:b, s:I, s:I, s:s, s:s, s:s, s:O, s:O, s:I, s:s, s:s}",
		                                "ok", 0, "seq", (json_int_t)rep.seq, "group_seq",
		                                (json_int_t)rep.group_seq, "group_type",
		                                rs_event_type_name(rep.group_type), "command", rep.command,
		                                "reason", rep.reason,
		                                "recorded", rep.recorded ? rep.recorded : json_null(),
		                                "decided", rep.decided ? rep.decided : json_null(),
		                                "events", (json_int_t)rep.events,
		                                "agent", rc0->agent, "version", rc0->version));
cleanup:
	rs_replay_report_free(&rep);
	rs_agent_free(agent);
	json_decref(def);
	kvEntry_Destroy(e);
	hist_free(&h);
}

void
rs_api_devices_list(rs_api *app, rs_api_job *job)
{
	static const char *sql =
		"SELECT json_build_object('device_id', d.device_id, 'online', d.online, "
		"'router', d.router, 'tools', d.tools, 'connected_at', d.connected_at, "
		"'last_seen', d.last_seen)::text FROM devices d WHERE d.tenant = $1 "
		"AND (d.online OR $2::text = 'true') ORDER BY d.device_id LIMIT 1000";
	char all[8] = "false";
	const char *params[2];
	PGresult *res;

	if (rs_api_qarg(job->query, "include_offline", all, sizeof(all)) &&
	    strcmp(all, "true") != 0 && strcmp(all, "false") != 0) {
		rs_api_problem(job, 400, "include_offline: must be true or false");
		return;
	}
	params[0] = job->tenant;
	params[1] = all;
	if ((res = rs_api_pg_query(app, job, sql, 2, params)) == NULL)
		return;
	rs_api_json(job, 200, json_pack("{s:o}", "devices", rs_api_pg_json_column(res)));
	PQclear(res);
}
