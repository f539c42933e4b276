/*
 * fuzz_api_request.c - the part of rs-api's request handling that is ours
 * (services/api/request.c): routing of method and path, query arguments,
 * `Prefer: wait`, `Last-Event-ID`, the list cursor, the JSON bodies of
 * POST /v1/runs, cancel and signals, and the run.start command an accepted
 * creation becomes. libwebsockets' own HTTP parsing is not ours to fuzz.
 *
 * Input: text lines, the way a request carries them (so seeds are
 * readable and libFuzzer's dictionary-free mutations still line up):
 *   METHOD\n PATH[?QUERY]\n Prefer\n Last-Event-ID\n Idempotency-Key\n
 *   traceparent\n BODY (the rest)
 * Missing lines are empty. Header values are cut to the API's buffer
 * sizes as http.c does.
 *
 * Properties: a route's parameters fit their buffers and a run id is a
 * UUID; only GET/POST are ever allowed (PUT/DELETE on a secret); wait is in [0, 60]; a cursor that
 * decodes re-encodes to one that decodes the same; a body that is
 * accepted yields what its route needs; a creation the API would accept
 * encodes as a run.start command that decodes back; every refusal
 * (404, 400, 422) goes out as a problem+json with that status (a client
 * must never be able to turn its own input into a 500).
 */
#include "fuzz.h"
#include "request.h"
#include "rs_cmd.h"
#include "rs_id.h"

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	fuzz_init();
	return 0;
}

/* The next line of [*p, end) into out (cap, truncated like a header copy). */
static void
next_line(const char **p, const char *end, char *out, size_t cap)
{
	const char *nl = memchr(*p, '\n', (size_t)(end - *p));
	size_t n = nl != NULL ? (size_t)(nl - *p) : (size_t)(end - *p);

	snprintf(out, cap, "%.*s", (int)(n < cap ? n : cap - 1), *p);
	*p = nl != NULL ? nl + 1 : end;
}

static rs_api_method
method_of(const char *m)
{
	if (strcmp(m, "GET") == 0) return RS_M_GET;
	if (strcmp(m, "POST") == 0) return RS_M_POST;
	if (strcmp(m, "PUT") == 0) return RS_M_PUT;
	if (strcmp(m, "DELETE") == 0) return RS_M_DELETE;
	if (strcmp(m, "PATCH") == 0) return RS_M_PATCH;
	return RS_M_OTHER;
}

static void
bounded(const char *s, size_t cap)
{
	FUZZ_CHECK(memchr(s, '\0', cap) != NULL);
}

/* The problem answer rs-api sends for a client's error: it must keep its
 * status (a detail or path the client controls must not turn it into a
 * bare 500) and be JSON. */
static void
answer(rs_api_job *j, int status, const char *detail)
{
	json_error_t je;
	json_t *v;

	rs_api_problem(j, status, "%s", detail);
	FUZZ_CHECK(j->status == status && j->resp != NULL);
	v = json_loadb(j->resp, j->resp_len, 0, &je);
	FUZZ_CHECK(v != NULL && json_integer_value(json_object_get(v, "status")) == status);
	json_decref(v);
	free(j->resp);
	j->resp = NULL;
}

static void
cursor(const char *query)
{
	char after[200], us[32], id[RS_API_RUNKEY], enc[160], us2[32], id2[RS_API_RUNKEY];

	if (!rs_api_qarg(query, "after", after, sizeof(after)))
		return;
	bounded(after, sizeof(after));
	if (rs_api_cursor_decode(after, us, id) != RS_OK)
		return;
	FUZZ_CHECK(rs_id_is_uuid(id) && us[0] != '\0' && strspn(us, "0123456789") == strlen(us));
	rs_api_cursor_encode(us, id, enc, sizeof(enc));
	FUZZ_CHECK(rs_api_cursor_decode(enc, us2, id2) == RS_OK);
	FUZZ_CHECK(strcmp(us, us2) == 0 && strcmp(id, id2) == 0);
}

/* What rs_api_runs_create builds from an accepted body (agent resolved
 * to a fixed name and version): it must encode and decode back. */
static void
run_start(json_t *input, const char *idem, const char *traceparent)
{
	char err[256] = "", *buf = NULL;
	size_t len = 0;
	rs_cmd cmd, back;
	rs_status st;

	memset(&cmd, 0, sizeof(cmd));
	cmd.type = RS_CMD_RUN_START;
	snprintf(cmd.run_id, sizeof(cmd.run_id), "0193a0f0-0000-7000-8000-000000000001");
	snprintf(cmd.tenant, sizeof(cmd.tenant), "demo");
	if (rs_traceparent_valid(traceparent))
		snprintf(cmd.traceparent, sizeof(cmd.traceparent), "%s", traceparent);
	cmd.agent = "demo-greeter";
	cmd.version = "0123456789abcdef";
	cmd.input = input != NULL ? input : json_object();
	cmd.idempotency_key = idem[0] != '\0' ? (char *)idem : NULL;
	st = rs_cmd_encode(&cmd, &buf, &len);
	if (input == NULL)
		json_decref(cmd.input);
	if (st != RS_OK)
		fprintf(stderr, "accepted creation does not encode as run.start (%d), "
		        "Idempotency-Key \"%s\"\n", (int)st, idem);
	FUZZ_CHECK(st == RS_OK);
	st = rs_cmd_decode(buf, len, &back, err, sizeof(err));
	if (st != RS_OK)
		fprintf(stderr, "run.start does not decode: %s\n%.*s\n", err, (int)len, buf);
	FUZZ_CHECK(st == RS_OK);
	rs_cmd_free(&back);
	free(buf);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data, *end = p + size, *allow = NULL, *agent, *version;
	const char *reason, *q;
	char method[16], target[1024], prefer[RS_API_HDR_MAX], lastid[RS_API_HDR_MAX];
	char idem[RS_API_HDR_MAX], tp[64], arg[RS_API_HDR_MAX], waitv[32], err[512];
	json_t *root, *input;
	rs_api_job *j = calloc(1, sizeof(*j));
	uint64_t after;
	int route, wait, status;

	FUZZ_CHECK(j != NULL);
	next_line(&p, end, method, sizeof(method));
	next_line(&p, end, target, sizeof(target));
	next_line(&p, end, prefer, sizeof(prefer));
	next_line(&p, end, lastid, sizeof(lastid));
	next_line(&p, end, idem, sizeof(idem));
	next_line(&p, end, tp, sizeof(tp));
	j->method = method_of(method);
	if ((q = strchr(target, '?')) != NULL) {
		snprintf(j->query, sizeof(j->query), "%s", q + 1);
		target[q - target] = '\0';
	}
	snprintf(j->path, sizeof(j->path), "%s", target);

	/* routing */
	route = rs_api_route_of(target, j, &allow);
	if (route == R_NONE) {
		snprintf(err, sizeof(err), "no such resource: %s", target);
		answer(j, 404, err);
	}
	bounded(j->p1, sizeof(j->p1));
	bounded(j->p2, sizeof(j->p2));
	bounded(j->run_id, sizeof(j->run_id));
	if (route != R_NONE) {
		/* R_DEVICES is the last route of request.h's enum (the viewer's
		 * routes came after R_SCHEDULE_RESUME, the bound this check had
		 * until the fuzzer found GET /v1/devices past it). */
		FUZZ_CHECK(allow != NULL && route > R_NONE && route <= R_DEVICES);
		if ((route >= R_RUN && route <= R_RUN_SIGNAL) || route == R_RUN_FORK ||
		    route == R_RUN_RETRY || route == R_RUN_STATE || route == R_RUN_CHECK ||
		    route == R_RUN_STREAM_TOKEN)
			FUZZ_CHECK(rs_id_is_uuid(j->run_id));
		/* PUT and DELETE only on a secret; nothing else beyond GET/POST */
		if (rs_api_method_allowed(j->method, allow))
			FUZZ_CHECK(j->method == RS_M_GET || j->method == RS_M_POST ||
			           (route == R_SECRET &&
			            (j->method == RS_M_PUT || j->method == RS_M_DELETE)) ||
			           (route == R_SCHEDULE && j->method == RS_M_DELETE));
	}

	/* Prefer: wait / ?wait= (as http.c combines them) */
	wait = rs_api_prefer_wait(prefer);
	FUZZ_CHECK(wait >= 0 && wait <= 60);
	if (rs_api_qarg(j->query, "wait", arg, sizeof(arg))) {
		snprintf(waitv, sizeof(waitv), "wait=%.8s", arg);
		wait = rs_api_prefer_wait(waitv);
		FUZZ_CHECK(wait >= 0 && wait <= 60);
	}

	/* Last-Event-ID, else ?after= */
	if (lastid[0] == '\0')
		rs_api_qarg(j->query, "after", lastid, sizeof(lastid));
	if (lastid[0] != '\0' && rs_api_parse_runseq(lastid, &after) == RS_OK)
		FUZZ_CHECK(after <= (uint64_t)INT64_MAX);

	/* the other query arguments, and the list cursor */
	if (rs_api_qarg(j->query, "status", arg, 32))
		bounded(arg, 32);
	if (rs_api_qarg(j->query, "limit", arg, 16))
		bounded(arg, 16);
	cursor(j->query);

	/* bodies: every shape on every input */
	status = rs_api_run_body(p, (size_t)(end - p), &root, &agent, &version, &input, err,
	                         sizeof(err));
	if (status == 0) {
		FUZZ_CHECK(root != NULL && agent != NULL && (input == NULL || json_is_object(input)));
		/* http.c refuses a key that is present and not ok with a 400 */
		if (idem[0] == '\0' || rs_api_idem_key_ok(idem))
			run_start(input, idem, tp);
		else
			answer(j, 400, "Idempotency-Key: must be " RS_API_IDEM_RULE);
		json_decref(root);
	} else {
		FUZZ_CHECK((status == 400 || status == 422) && root == NULL && err[0] != '\0');
		answer(j, status, err);
	}
	status = rs_api_cancel_body(p, (size_t)(end - p), &root, &reason, err, sizeof(err));
	if (status == 0) {
		json_decref(root);
	} else {
		FUZZ_CHECK((status == 400 || status == 422) && root == NULL);
		answer(j, status, err);
	}
	for (int retry = 0; retry < 2; retry++) {
		int64_t from_seq;
		status = rs_api_fork_body(p, (size_t)(end - p), retry, &root, &from_seq, &version,
		                          &input, err, sizeof(err));
		if (status == 0) {
			FUZZ_CHECK(retry ? from_seq == 0 : from_seq >= 1);
			FUZZ_CHECK(input == NULL || json_is_object(input));
			json_decref(root);
		} else {
			FUZZ_CHECK((status == 400 || status == 422) && root == NULL && err[0] != '\0');
			answer(j, status, err);
		}
	}
	status = rs_api_signal_body(route == R_RUN_SIGNAL ? j->p2 : "approve", p,
	                            (size_t)(end - p), &root, err, sizeof(err));
	if (status == 0) {
		json_decref(root);
	} else {
		FUZZ_CHECK((status == 400 || status == 422) && root == NULL);
		answer(j, status, err);
	}
	free(j);
	return 0;
}
