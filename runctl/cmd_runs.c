/*
 * cmd_runs.c - `runctl runs start|ls|show|cancel|signal|fork|retry`, through the
 * HTTP API (RS_API_URL, RS_API_KEY) so that authentication, validation
 * and idempotency are exactly those of any client. `runs start --watch`
 * then follows the run's events on JetStream (an ordered consumer from
 * the run's first event, so nothing is missed between the POST and the
 * subscription) and exits with the run's outcome: 0 completed, 1 failed,
 * cancelled or timed out.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rs_config.h"
#include "rs_id.h"
#include "rs_json.h"
#include "rs_time.h"
#include "timeline.h"
#include "runctl.h"

static const char *const runs_flags[] = {
	"api", "api-key", "input", "idempotency-key", "version", "watch", "status", "agent",
	"limit", "after", "reason", "payload", "tenant", "from-seq", "tag", "created-after",
	"created-before", NULL
};
static const char *const sched_flags[] = {
	"api", "api-key", "input", "version", "id", "cron", "tz", "interval", "catch-up",
	"max-catch-up", NULL
};

typedef struct {
	char url[512];
	char auth[300];
} api_cfg;

static int
api_init(int argc, char **argv, api_cfg *a, const char *cmd)
{
	const char *base = rs_ctl_flag(argc, argv, "api", rs_env_str("RS_API_URL", "http://127.0.0.1:8080"));
	const char *key = rs_ctl_flag(argc, argv, "api-key", rs_env_str("RS_API_KEY", NULL));
	size_t n = strlen(base);

	if (key == NULL)
		return rs_ctl_out_err(RC_USAGE, cmd, "RS_API_KEY (or --api-key) is required: create one with "
		               "`runctl keys create --tenant T`");
	snprintf(a->url, sizeof(a->url), "%.*s", (int)(n && base[n - 1] == '/' ? n - 1 : n), base);
	snprintf(a->auth, sizeof(a->auth), "Authorization: Bearer %s", key);
	return RC_OK;
}

/* One API call; *out receives the parsed JSON body (or NULL). Maps HTTP
 * statuses to exit codes and prints the API's error message. */
static int
api_call(const api_cfg *a, const char *cmd, const char *method, const char *path, json_t *body,
         const char *extra_header, json_t **out)
{
	const char *headers[3] = { a->auth, extra_header, NULL };
	char url[1024], *txt = body ? json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY) : NULL;
	http_resp r;
	json_t *j = NULL;
	const char *msg;
	rs_status st;
	int rc = RC_OK;

	if (out != NULL)
		*out = NULL;
	snprintf(url, sizeof(url), "%s%s", a->url, path);
	st = rs_ctl_http_request(method, url, headers, txt, txt ? strlen(txt) : 0, 15000, &r);
	free(txt);
	if (st == RS_EUNAVAIL)
		return rs_ctl_out_err(RC_DOWN, cmd, "cannot reach the API at %s: is the stack up? (set RS_API_URL / --api)",
		               a->url);
	if (st != RS_OK)
		return rs_ctl_out_err(RC_FAIL, cmd, "the API at %s gave no usable answer (%s)", a->url, rs_status_str(st));
	j = r.len ? json_loadb(r.body, r.len, 0, NULL) : NULL;
	/* The API answers errors as problem+json (RFC 9457): "detail". */
	msg = json_string_value(json_object_get(j, "detail"));
	if (msg == NULL)
		msg = json_string_value(json_object_get(json_object_get(j, "error"), "message"));
	if (msg == NULL)
		msg = json_string_value(json_object_get(j, "error"));
	if (msg == NULL)
		msg = json_string_value(json_object_get(j, "message"));
	if (r.status == 401 || r.status == 403)
		rc = rs_ctl_out_err(RC_FAIL, cmd, "the API refused the key (HTTP %d): check RS_API_KEY", r.status);
	else if (r.status == 404)
		rc = rs_ctl_out_err(RC_NOTFOUND, cmd, "not found: %s", msg ? msg : path);
	else if (r.status >= 400 && r.status < 500)
		rc = rs_ctl_out_err(RC_FAIL, cmd, "the API rejected the request (HTTP %d): %s", r.status, msg ? msg : r.body);
	else if (r.status >= 500 || r.status < 200)
		rc = rs_ctl_out_err(r.status == 503 ? RC_DOWN : RC_FAIL, cmd, "API error (HTTP %d): %s", r.status,
		             msg ? msg : "see the API log");
	if (rc == RC_OK && out != NULL)
		*out = json_incref(j);
	json_decref(j);
	rs_ctl_http_resp_free(&r);
	return rc;
}

static int
run_id_arg(int argc, char **argv, const char *cmd, const char **id)
{
	*id = rs_ctl_arg(argc, argv, 0);
	if (*id == NULL || !rs_id_is_uuid(*id))
		return rs_ctl_out_err(RC_USAGE, cmd, "give a run id (a UUID)");
	return RC_OK;
}

/* Print an API answer: JSON as is, or indented for people. */
static void
show(json_t *v)
{
	rs_ctl_out_json_value(stdout, v, !rs_ctl_out_json());
}

/* Follow a run's events to its end; exit status from its outcome. */
static int
watch(int argc, char **argv, const char *run_id, const char *cmd)
{
	char subject[120], line[600], err[256];
	natsSubscription *sub = NULL;
	jsSubOptions so;
	jsErrCode jerr = 0;
	int64_t start = 0;
	rs_nats n;
	int rc;

	if ((rc = rs_ctl_nats(&n, argc, argv)) != RC_OK)
		return rc;
	snprintf(subject, sizeof(subject), "runs.*.%s", run_id);
	jsSubOptions_Init(&so);
	so.Stream = "RUNS";
	so.Ordered = true;
	if (js_SubscribeSync(&sub, n.js, subject, NULL, &so, &jerr) != NATS_OK) {
		rc = rs_ctl_out_err(RC_FAIL, cmd, "cannot follow %s", subject);
		goto cleanup;
	}
	rc = -1;
	while (rc < 0) {
		natsMsg *m = NULL;
		rs_event ev;
		tl_row row;
		natsStatus s = natsSubscription_NextMsg(&m, sub, 1000);
		if (s == NATS_TIMEOUT)
			continue;
		if (s != NATS_OK) {
			rc = rs_ctl_out_err(RC_DOWN, cmd, "lost NATS while following the run");
			break;
		}
		if (rs_event_decode(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), &ev, err,
		                    sizeof(err)) == RS_OK) {
			if (start == 0)
				start = ev.time_ms;
			if (rs_ctl_out_json()) {
				fwrite(natsMsg_GetData(m), 1, (size_t)natsMsg_GetDataLength(m), stdout);
				fputc('\n', stdout);
			} else {
				rs_ctl_tl_row_of(&ev, start, &row);
				rs_ctl_tl_format_row(&row, rs_ctl_out_on(row.mark == TL_FAIL ? OUT_RED : row.mark == TL_DONE
				              ? OUT_GREEN : OUT_YELLOW), rs_ctl_out_off(), line, sizeof(line));
				puts(line);
			}
			fflush(stdout);
			if (rs_event_type_terminal(ev.type))
				rc = ev.type == RS_EV_RUN_COMPLETED ? RC_OK : RC_FAIL;
			rs_event_free(&ev);
		}
		natsMsg_Destroy(m);
	}
cleanup:
	natsSubscription_Destroy(sub);
	rs_nats_close(&n, 1000);
	return rc;
}

int
rs_ctl_cmd_runs_start(int argc, char **argv)
{
	const char *cmd = "runs start", *agent = rs_ctl_arg(argc, argv, 0);
	const char *input = rs_ctl_flag(argc, argv, "input", "{}");
	const char *key = rs_ctl_flag(argc, argv, "idempotency-key", NULL);
	const char *version = rs_ctl_flag(argc, argv, "version", NULL);
	char err[256], idem[300];
	json_t *in = NULL, *body = NULL, *res = NULL;
	const char *run_id;
	api_cfg a;
	int rc;

	if ((rc = rs_ctl_check_flags(argc, argv, cmd, runs_flags)) != RC_OK)
		return rc;
	if (agent == NULL)
		return rs_ctl_out_err(RC_USAGE, cmd, "usage: runctl runs start AGENT --input JSON [--idempotency-key K] [--watch]");
	if (rs_json_parse(input, strlen(input), &in, err, sizeof(err)) != RS_OK || !json_is_object(in)) {
		json_decref(in);
		return rs_ctl_out_err(RC_USAGE, cmd, "--input must be a JSON object: %s", err);
	}
	if ((rc = api_init(argc, argv, &a, cmd)) != RC_OK)
		goto cleanup;
	body = json_pack("{s:s,s:O}", "agent", agent, "input", in);
	if (version != NULL)
		json_object_set_new(body, "version", json_string(version));
	snprintf(idem, sizeof(idem), "Idempotency-Key: %s", key ? key : "");
	if ((rc = api_call(&a, cmd, "POST", "/v1/runs", body, key ? idem : NULL, &res)) != RC_OK)
		goto cleanup;
	run_id = json_string_value(json_object_get(res, "run_id"));
	if (run_id == NULL) {
		rc = rs_ctl_out_err(RC_FAIL, cmd, "the API answer has no run_id");
		goto cleanup;
	}
	if (rs_ctl_out_json())
		show(res);
	else
		printf("run %s started\n", run_id);
	if (rs_ctl_has(argc, argv, "watch"))
		rc = watch(argc, argv, run_id, cmd);
cleanup:
	json_decref(in);
	json_decref(body);
	json_decref(res);
	return rc;
}

/* The API's page bound for GET /v1/runs (services/api/reads.c). */
#define RUNS_PAGE_MAX 100

/* A cursor of GET /v1/runs: base64url, no padding (safe in a query). */
static int
is_cursor(const char *c)
{
	size_t n = strlen(c);

	if (n == 0 || n > 200)
		return 0;
	for (; *c; c++)
		if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
		      (*c >= '0' && *c <= '9') || *c == '-' || *c == '_'))
			return 0;
	return 1;
}

/*
 * runs ls: one page of GET /v1/runs (newest first). --limit is checked
 * against the API's own bound (1..100) so the error is ours and clear;
 * the page's next_after cursor is printed (with the command that fetches
 * the next page), or "no more runs" on the last page.
 */
/* key=value for a query string: prefix, then value percent-encoded (all
 * but unreserved characters). */
static void
query_escape(const char *prefix, const char *v, char *out, size_t cap)
{
	size_t o = (size_t)snprintf(out, cap, "%s", prefix);

	for (; *v && o + 4 < cap; v++) {
		unsigned char c = (unsigned char)*v;
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '_' || c == '.' || c == '~')
			out[o++] = (char)c;
		else
			o += (size_t)snprintf(out + o, cap - o, "%%%02X", c);
	}
	out[o] = '\0';
}

int
rs_ctl_cmd_runs_ls(int argc, char **argv)
{
	const char *cmd = "runs ls";
	const char *status = rs_ctl_flag(argc, argv, "status", NULL), *agent = rs_ctl_flag(argc, argv, "agent", NULL);
	const char *limit = rs_ctl_flag(argc, argv, "limit", "20");
	const char *after = rs_ctl_flag(argc, argv, "after", NULL);
	const char *tag = rs_ctl_flag(argc, argv, "tag", NULL);
	const char *cafter = rs_ctl_flag(argc, argv, "created-after", NULL);
	const char *cbefore = rs_ctl_flag(argc, argv, "created-before", NULL);
	char path[1400], qtag[700] = "", qca[120] = "", qcb[120] = "";
	int64_t ms;
	json_t *res = NULL, *runs, *r;
	const char *next;
	int64_t lim;
	api_cfg a;
	size_t i;
	int rc;

	if ((rc = rs_ctl_check_flags(argc, argv, cmd, runs_flags)) != RC_OK)
		return rc;
	if (rs_parse_int(limit, 1, RUNS_PAGE_MAX, &lim) != RS_OK)
		return rs_ctl_out_err(RC_USAGE, cmd, "--limit must be between 1 and %d (the API's page size "
		               "bound; page with --after)", RUNS_PAGE_MAX);
	if ((status && !rs_id_is_token(status, 32)) || (agent && !rs_id_is_token(agent, 64)))
		return rs_ctl_out_err(RC_USAGE, cmd, "bad --status or --agent");
	if (after != NULL && !is_cursor(after))
		return rs_ctl_out_err(RC_USAGE, cmd, "--after must be a next_after cursor printed by runs ls");
	if (tag != NULL && (strchr(tag, ':') == NULL || strlen(tag) > 300))
		return rs_ctl_out_err(RC_USAGE, cmd, "--tag must be key:value");
	if ((cafter && rs_time_parse_rfc3339(cafter, &ms) != RS_OK) ||
	    (cbefore && rs_time_parse_rfc3339(cbefore, &ms) != RS_OK))
		return rs_ctl_out_err(RC_USAGE, cmd, "--created-after / --created-before take an RFC 3339 time "
		               "(2026-01-02T03:04:05Z)");
	if (tag != NULL)
		query_escape("&tag=", tag, qtag, sizeof(qtag));
	if (cafter != NULL)
		query_escape("&created_after=", cafter, qca, sizeof(qca));
	if (cbefore != NULL)
		query_escape("&created_before=", cbefore, qcb, sizeof(qcb));
	if ((rc = api_init(argc, argv, &a, cmd)) != RC_OK)
		return rc;
	snprintf(path, sizeof(path), "/v1/runs?limit=%" PRId64 "%s%s%s%s%s%s%s%s%s", lim,
	         status ? "&status=" : "", status ? status : "", agent ? "&agent=" : "",
	         agent ? agent : "", after ? "&after=" : "", after ? after : "", qtag, qca, qcb);
	if ((rc = api_call(&a, cmd, "GET", path, NULL, NULL, &res)) != RC_OK)
		return rc;
	runs = json_object_get(res, "runs");
	next = json_string_value(json_object_get(res, "next_after"));
	if (rs_ctl_out_json() || !json_is_array(runs)) {
		rs_ctl_out_json_value(stdout, res, !rs_ctl_out_json());
	} else {
		if (json_array_size(runs) > 0)
			printf("%-36s  %-20s  %-10s  %s\n", "RUN", "AGENT", "STATUS", "CREATED");
		json_array_foreach(runs, i, r)
			printf("%-36s  %-20s  %-10s  %s\n", json_string_value(json_object_get(r, "run_id")),
			       json_string_value(json_object_get(r, "agent")),
			       json_string_value(json_object_get(r, "status")),
			       json_string_value(json_object_get(r, "created_at")));
		if (next != NULL)
			printf("next_after: %s  (next page: runctl runs ls --after %s%s%s%s%s --limit %" PRId64 ")\n",
			       next, next, status ? " --status " : "", status ? status : "",
			       agent ? " --agent " : "", agent ? agent : "", lim);
		else
			printf("%s\n", json_array_size(runs) ? "no more runs" : "no runs");
	}
	json_decref(res);
	return RC_OK;
}

int
rs_ctl_cmd_runs_show(int argc, char **argv)
{
	const char *cmd = "runs show", *id;
	char path[128];
	json_t *res = NULL;
	api_cfg a;
	int rc;

	if ((rc = rs_ctl_check_flags(argc, argv, cmd, runs_flags)) != RC_OK ||
	    (rc = run_id_arg(argc, argv, cmd, &id)) != RC_OK || (rc = api_init(argc, argv, &a, cmd)) != RC_OK)
		return rc;
	snprintf(path, sizeof(path), "/v1/runs/%s", id);
	if ((rc = api_call(&a, cmd, "GET", path, NULL, NULL, &res)) == RC_OK)
		show(res);
	json_decref(res);
	return rc;
}

int
rs_ctl_cmd_runs_cancel(int argc, char **argv)
{
	const char *cmd = "runs cancel", *id, *reason = rs_ctl_flag(argc, argv, "reason", NULL);
	char path[128];
	json_t *res = NULL, *body;
	api_cfg a;
	int rc;

	if ((rc = rs_ctl_check_flags(argc, argv, cmd, runs_flags)) != RC_OK ||
	    (rc = run_id_arg(argc, argv, cmd, &id)) != RC_OK || (rc = api_init(argc, argv, &a, cmd)) != RC_OK)
		return rc;
	snprintf(path, sizeof(path), "/v1/runs/%s/cancel", id);
	body = reason ? json_pack("{s:s}", "reason", reason) : json_object();
	if ((rc = api_call(&a, cmd, "POST", path, body, NULL, &res)) == RC_OK) {
		if (rs_ctl_out_json())
			show(res);
		else
			printf("cancel requested for run %s\n", id);
	}
	json_decref(body);
	json_decref(res);
	return rc;
}

int
rs_ctl_cmd_runs_signal(int argc, char **argv)
{
	const char *cmd = "runs signal", *id, *name = rs_ctl_arg(argc, argv, 1);
	const char *payload = rs_ctl_flag(argc, argv, "payload", "null");
	char path[128], err[256];
	json_t *res = NULL, *p = NULL;
	api_cfg a;
	int rc;

	if ((rc = rs_ctl_check_flags(argc, argv, cmd, runs_flags)) != RC_OK ||
	    (rc = run_id_arg(argc, argv, cmd, &id)) != RC_OK)
		return rc;
	if (name == NULL || !rs_id_is_token(name, 64))
		return rs_ctl_out_err(RC_USAGE, cmd, "usage: runctl runs signal RUN_ID NAME [--payload JSON] "
		               "(NAME: [a-z0-9_-]{1,64})");
	if (rs_json_parse(payload, strlen(payload), &p, err, sizeof(err)) != RS_OK)
		return rs_ctl_out_err(RC_USAGE, cmd, "--payload must be JSON: %s", err);
	if ((rc = api_init(argc, argv, &a, cmd)) != RC_OK)
		goto cleanup;
	/* POST /v1/runs/{id}/signals/{name}, the body is the payload. */
	snprintf(path, sizeof(path), "/v1/runs/%s/signals/%s", id, name);
	if ((rc = api_call(&a, cmd, "POST", path, p, NULL, &res)) == RC_OK) {
		if (rs_ctl_out_json())
			show(res);
		else
			printf("signal %s sent to run %s\n", name, id);
	}
cleanup:
	json_decref(p);
	json_decref(res);
	return rc;
}

/* runs fork RUN_ID --from-seq N [--version V] [--input JSON] and runs retry
 * RUN_ID [--version V] [--input JSON]: POST /v1/runs/{id}/fork|retry. */
static int
fork_or_retry(int argc, char **argv, int retry)
{
	const char *cmd = retry ? "runs retry" : "runs fork", *id;
	const char *from = rs_ctl_flag(argc, argv, "from-seq", NULL);
	const char *version = rs_ctl_flag(argc, argv, "version", NULL);
	const char *input = rs_ctl_flag(argc, argv, "input", NULL);
	char path[128], err[256];
	json_t *res = NULL, *body = json_object(), *in = NULL;
	int64_t seq;
	api_cfg a;
	int rc;

	if ((rc = rs_ctl_check_flags(argc, argv, cmd, runs_flags)) != RC_OK ||
	    (rc = run_id_arg(argc, argv, cmd, &id)) != RC_OK)
		goto cleanup;
	if (!retry) {
		if (from == NULL || rs_parse_int(from, 1, INT64_MAX, &seq) != RS_OK) {
			rc = rs_ctl_out_err(RC_USAGE, cmd, "usage: runctl runs fork RUN_ID --from-seq N "
			             "[--version V] [--input JSON] (N: the source's events to keep, >= 1)");
			goto cleanup;
		}
		json_object_set_new(body, "from_seq", json_integer(seq));
	}
	if (version != NULL)
		json_object_set_new(body, "version", json_string(version));
	if (input != NULL) {
		if (rs_json_parse(input, strlen(input), &in, err, sizeof(err)) != RS_OK ||
		    !json_is_object(in)) {
			rc = rs_ctl_out_err(RC_USAGE, cmd, "--input must be a JSON object%s%s", in ? "" : ": ",
			             in ? "" : err);
			goto cleanup;
		}
		json_object_set(body, "input", in);
	}
	if ((rc = api_init(argc, argv, &a, cmd)) != RC_OK)
		goto cleanup;
	snprintf(path, sizeof(path), "/v1/runs/%s/%s", id, retry ? "retry" : "fork");
	if ((rc = api_call(&a, cmd, "POST", path, body, NULL, &res)) == RC_OK) {
		if (rs_ctl_out_json())
			show(res);
		else
			printf("%s\nforked from %s after event %lld, version %s, %lld step(s) reused\n",
			       json_string_value(json_object_get(res, "run_id")), id,
			       (long long)json_integer_value(json_object_get(res, "from_seq")),
			       json_string_value(json_object_get(res, "version")),
			       (long long)json_integer_value(json_object_get(res, "reused_steps")));
	}
cleanup:
	json_decref(in);
	json_decref(body);
	json_decref(res);
	return rc;
}

int
rs_ctl_cmd_runs_fork(int argc, char **argv)
{
	return fork_or_retry(argc, argv, 0);
}

int
rs_ctl_cmd_runs_retry(int argc, char **argv)
{
	return fork_or_retry(argc, argv, 1);
}

/* ---- schedules (through the API: /v1/schedules) ---- */

static int
sched_id_arg(int argc, char **argv, const char *cmd, const char **id)
{
	*id = rs_ctl_arg(argc, argv, 0);
	if (*id == NULL || !rs_id_is_token(*id, 64))
		return rs_ctl_out_err(RC_USAGE, cmd, "usage: runctl %s SCHEDULE_ID (ID: [a-z0-9_-]{1,64})", cmd);
	return RC_OK;
}

static void
sched_line(json_t *s)
{
	const char *cron = json_string_value(json_object_get(s, "cron"));
	char when[96];

	if (cron != NULL)
		snprintf(when, sizeof(when), "cron \"%s\" %s", cron,
		         json_string_value(json_object_get(s, "timezone")));
	else
		snprintf(when, sizeof(when), "every %llds",
		         (long long)json_integer_value(json_object_get(s, "interval_s")));
	printf("%-24s  %-20s  %-34s  %-6s  next %s\n", json_string_value(json_object_get(s, "id")),
	       json_string_value(json_object_get(s, "agent")), when,
	       json_is_true(json_object_get(s, "paused")) ? "paused" : "active",
	       json_string_value(json_object_get(s, "next_fire_at")) ?
	       json_string_value(json_object_get(s, "next_fire_at")) : "-");
}

int
rs_ctl_cmd_schedules_create(int argc, char **argv)
{
	const char *cmd = "schedules create", *agent = rs_ctl_arg(argc, argv, 0);
	const char *cron = rs_ctl_flag(argc, argv, "cron", NULL), *tz = rs_ctl_flag(argc, argv, "tz", NULL);
	const char *interval = rs_ctl_flag(argc, argv, "interval", NULL);
	const char *input = rs_ctl_flag(argc, argv, "input", NULL);
	const char *opt[4][2] = { { "id", "id" }, { "version", "version" },
	                          { "catch-up", "catch_up" }, { NULL, NULL } };
	const char *mcu = rs_ctl_flag(argc, argv, "max-catch-up", NULL);
	json_t *body = json_object(), *res = NULL, *in = NULL;
	char err[256];
	int64_t v;
	api_cfg a;
	int rc;

	if ((rc = rs_ctl_check_flags(argc, argv, cmd, sched_flags)) != RC_OK)
		goto cleanup;
	if (agent == NULL || (cron == NULL) == (interval == NULL)) {
		rc = rs_ctl_out_err(RC_USAGE, cmd, "usage: runctl schedules create AGENT (--cron \"M H DOM MON DOW\" "
		             "[--tz ZONE] | --interval SECONDS) [--id ID] [--input JSON] [--version V] "
		             "[--catch-up skip|one|all] [--max-catch-up N]");
		goto cleanup;
	}
	json_object_set_new(body, "agent", json_string(agent));
	if (cron != NULL) {
		json_object_set_new(body, "cron", json_string(cron));
		if (tz != NULL)
			json_object_set_new(body, "timezone", json_string(tz));
	} else {
		if (rs_parse_int(interval, 1, 366 * 86400, &v) != RS_OK) {
			rc = rs_ctl_out_err(RC_USAGE, cmd, "--interval: seconds, 1 to 31622400");
			goto cleanup;
		}
		json_object_set_new(body, "interval_s", json_integer(v));
	}
	for (int i = 0; opt[i][0]; i++) {
		const char *x = rs_ctl_flag(argc, argv, opt[i][0], NULL);
		if (x != NULL)
			json_object_set_new(body, opt[i][1], json_string(x));
	}
	if (mcu != NULL) {
		if (rs_parse_int(mcu, 1, 100, &v) != RS_OK) {
			rc = rs_ctl_out_err(RC_USAGE, cmd, "--max-catch-up: 1 to 100");
			goto cleanup;
		}
		json_object_set_new(body, "max_catch_up", json_integer(v));
	}
	if (input != NULL) {
		if (rs_json_parse(input, strlen(input), &in, err, sizeof(err)) != RS_OK ||
		    !json_is_object(in)) {
			rc = rs_ctl_out_err(RC_USAGE, cmd, "--input must be a JSON object");
			goto cleanup;
		}
		json_object_set(body, "input", in);
	}
	if ((rc = api_init(argc, argv, &a, cmd)) != RC_OK)
		goto cleanup;
	if ((rc = api_call(&a, cmd, "POST", "/v1/schedules", body, NULL, &res)) == RC_OK) {
		if (rs_ctl_out_json())
			show(res);
		else
			sched_line(res);
	}
cleanup:
	json_decref(in);
	json_decref(body);
	json_decref(res);
	return rc;
}

int
rs_ctl_cmd_schedules_ls(int argc, char **argv)
{
	const char *cmd = "schedules ls";
	json_t *res = NULL, *s;
	size_t i;
	api_cfg a;
	int rc;

	if ((rc = rs_ctl_check_flags(argc, argv, cmd, sched_flags)) != RC_OK ||
	    (rc = api_init(argc, argv, &a, cmd)) != RC_OK)
		return rc;
	if ((rc = api_call(&a, cmd, "GET", "/v1/schedules", NULL, NULL, &res)) == RC_OK) {
		if (rs_ctl_out_json()) {
			show(res);
		} else {
			json_array_foreach(json_object_get(res, "schedules"), i, s)
				sched_line(s);
			if (json_array_size(json_object_get(res, "schedules")) == 0)
				printf("no schedules\n");
		}
	}
	json_decref(res);
	return rc;
}

/* show, pause, resume, rm: one call on /v1/schedules/{id}[/action]. */
static int
sched_one(int argc, char **argv, const char *cmd, const char *method, const char *action)
{
	const char *id;
	char path[160];
	json_t *res = NULL, *body = NULL;
	api_cfg a;
	int rc;

	if ((rc = rs_ctl_check_flags(argc, argv, cmd, sched_flags)) != RC_OK ||
	    (rc = sched_id_arg(argc, argv, cmd, &id)) != RC_OK ||
	    (rc = api_init(argc, argv, &a, cmd)) != RC_OK)
		return rc;
	snprintf(path, sizeof(path), "/v1/schedules/%s%s%s", id, action ? "/" : "", action ? action : "");
	/* A POST carries a body (an empty object): the server reads one. */
	if (strcmp(method, "POST") == 0)
		body = json_object();
	rc = api_call(&a, cmd, method, path, body, NULL, &res);
	json_decref(body);
	if (rc == RC_OK) {
		if (res == NULL)
			printf("schedule %s deleted\n", id);
		else if (rs_ctl_out_json())
			show(res);
		else
			sched_line(res);
	}
	json_decref(res);
	return rc;
}

int rs_ctl_cmd_schedules_show(int argc, char **argv) { return sched_one(argc, argv, "schedules show", "GET", NULL); }
int rs_ctl_cmd_schedules_pause(int argc, char **argv) { return sched_one(argc, argv, "schedules pause", "POST", "pause"); }
int rs_ctl_cmd_schedules_resume(int argc, char **argv) { return sched_one(argc, argv, "schedules resume", "POST", "resume"); }
int rs_ctl_cmd_schedules_rm(int argc, char **argv) { return sched_one(argc, argv, "schedules rm", "DELETE", NULL); }
