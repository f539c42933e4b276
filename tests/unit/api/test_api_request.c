/*
 * test_api_request.c - rs-api's request routing and the shapes of what
 * clients send (services/api/request.c), without a server: the route
 * table (every route, the methods each allows, so what http.c answers 404
 * and 405 to), path parameter bounds, Prefer: wait, Last-Event-ID, the
 * Idempotency-Key rule, query arguments, the list cursor, tags and the
 * bodies of POST /v1/runs, cancel, signals, fork and retry.
 */
#include "../check.h"
#include "request.h"

#include <stdlib.h>
#include <string.h>

#define U "0190f5d2-7c4e-7a3b-8c1d-2e3f4a5b6c7d"

/* A route, its allow list and its parameters. */
typedef struct {
	const char *path;
	int route;
	const char *allow;        /* NULL: R_NONE (404) */
	const char *p1, *p2, *run_id;
} route_case;

static const route_case routes[] = {
	{ "/v1/agents", R_AGENTS, "GET, POST", "", "", "" },
	{ "/v1/agents/deploy", R_AGENT, "GET", "deploy", "", "" },
	{ "/v1/agents/deploy/versions/abc123", R_AGENT_VERSION, "GET", "deploy", "abc123", "" },
	{ "/v1/secrets", R_SECRETS, "GET", "", "", "" },
	{ "/v1/secrets/TOKEN", R_SECRET, "PUT, DELETE", "TOKEN", "", "" },
	{ "/v1/schedules", R_SCHEDULES, "GET, POST", "", "", "" },
	{ "/v1/schedules/nightly", R_SCHEDULE, "GET, DELETE", "nightly", "", "" },
	{ "/v1/schedules/nightly/pause", R_SCHEDULE_PAUSE, "POST", "nightly", "", "" },
	{ "/v1/schedules/nightly/resume", R_SCHEDULE_RESUME, "POST", "nightly", "", "" },
	{ "/v1/devices", R_DEVICES, "GET", "", "", "" },
	{ "/v1/runs", R_RUNS, "GET, POST", "", "", "" },
	{ "/v1/runs/" U, R_RUN, "GET", "", "", U },
	{ "/v1/runs/" U "/events", R_RUN_EVENTS, "GET", "", "", U },
	{ "/v1/runs/" U "/stream", R_RUN_STREAM, "GET", "", "", U },
	{ "/v1/runs/" U "/cancel", R_RUN_CANCEL, "POST", "", "", U },
	{ "/v1/runs/" U "/fork", R_RUN_FORK, "POST", "", "", U },
	{ "/v1/runs/" U "/retry", R_RUN_RETRY, "POST", "", "", U },
	{ "/v1/runs/" U "/state", R_RUN_STATE, "GET", "", "", U },
	{ "/v1/runs/" U "/check", R_RUN_CHECK, "GET", "", "", U },
	{ "/v1/runs/" U "/stream-token", R_RUN_STREAM_TOKEN, "POST", "", "", U },
	{ "/v1/runs/" U "/signals/approval", R_RUN_SIGNAL, "POST", "", "approval", U },
	/* repeated slashes fold; a trailing one is no new segment */
	{ "//v1//runs///" U "/", R_RUN, "GET", "", "", U },
	/* 404: unknown, too short, too deep, not /v1, a malformed run id */
	{ "/", R_NONE, NULL, NULL, NULL, NULL },
	{ "/v1", R_NONE, NULL, NULL, NULL, NULL },
	{ "/v2/runs", R_NONE, NULL, NULL, NULL, NULL },
	{ "/v1/nope", R_NONE, NULL, NULL, NULL, NULL },
	{ "/v1/devices/d1", R_NONE, NULL, NULL, NULL, NULL },
	{ "/v1/runs/not-a-uuid", R_NONE, NULL, NULL, NULL, NULL },
	{ "/v1/runs/" U "x", R_NONE, NULL, NULL, NULL, NULL },
	{ "/v1/runs/" U "/nope", R_NONE, NULL, NULL, NULL, NULL },
	{ "/v1/runs/" U "/signals", R_NONE, NULL, NULL, NULL, NULL },
	{ "/v1/runs/" U "/signals/a/b", R_NONE, NULL, NULL, NULL, NULL },
	{ "/v1/agents/a/versions", R_NONE, NULL, NULL, NULL, NULL },
	{ "/v1/agents/a/other/v", R_NONE, NULL, NULL, NULL, NULL },
	{ "/v1/secrets/a/b", R_NONE, NULL, NULL, NULL, NULL },
	{ "/v1/schedules/Not_A_Token", R_NONE, NULL, NULL, NULL, NULL },
	{ "/v1/schedules/s/stop", R_NONE, NULL, NULL, NULL, NULL },
	{ "/v1/a/b/c/d/e/f/g", R_NONE, NULL, NULL, NULL, NULL },
};

static void
test_routes(void)
{
	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
		const route_case *c = &routes[i];
		rs_api_job j;
		const char *allow = "untouched";
		int r;

		memset(&j, 0, sizeof(j));
		r = rs_api_route_of(c->path, &j, &allow);
		CHECKF(r == c->route, "%s: route %d, want %d", c->path, r, c->route);
		if (c->allow == NULL) {
			CHECKF(strcmp(allow, "untouched") == 0, "%s: allow set on a 404", c->path);
			continue;
		}
		CHECKF(strcmp(allow, c->allow) == 0, "%s: allow \"%s\", want \"%s\"", c->path, allow,
		       c->allow);
		CHECK_STR(j.p1, c->p1);
		CHECK_STR(j.p2, c->p2);
		CHECK_STR(j.run_id, c->run_id);
	}
}

/* A path parameter fills its buffer exactly (79 bytes + NUL); one byte
 * more is no route (404), never a truncated name. */
static void
test_param_bounds(void)
{
	char seg[200], path[300];
	rs_api_job j;
	const char *allow = NULL;

	memset(seg, 'a', 79);
	seg[79] = '\0';
	snprintf(path, sizeof(path), "/v1/agents/%s", seg);
	memset(&j, 0, sizeof(j));
	CHECK_INT(rs_api_route_of(path, &j, &allow), R_AGENT);
	CHECK_INT(strlen(j.p1), 79);
	CHECK_STR(j.p1, seg);

	snprintf(path, sizeof(path), "/v1/runs/" U "/signals/%s", seg);
	memset(&j, 0, sizeof(j));
	CHECK_INT(rs_api_route_of(path, &j, &allow), R_RUN_SIGNAL);
	CHECK_STR(j.p2, seg);

	seg[79] = 'a';
	seg[80] = '\0';
	snprintf(path, sizeof(path), "/v1/agents/%s", seg);
	memset(&j, 0, sizeof(j));
	CHECK_INT(rs_api_route_of(path, &j, &allow), R_NONE);
	CHECK_STR(j.p1, "");
	snprintf(path, sizeof(path), "/v1/runs/" U "/signals/%s", seg);
	CHECK_INT(rs_api_route_of(path, &j, &allow), R_NONE);

	/* a schedule id is a token of at most 64 */
	memset(seg, 'a', 65);
	seg[65] = '\0';
	snprintf(path, sizeof(path), "/v1/schedules/%s", seg);
	CHECK_INT(rs_api_route_of(path, &j, &allow), R_NONE);
	seg[64] = '\0';
	snprintf(path, sizeof(path), "/v1/schedules/%s", seg);
	CHECK_INT(rs_api_route_of(path, &j, &allow), R_SCHEDULE);
}

/* What http.c answers 405 to: a method the route's allow list lacks. */
static void
test_methods(void)
{
	static const struct {
		rs_api_method m;
		const char *allow;
		int ok;
	} cases[] = {
		{ RS_M_GET, "GET, POST", 1 }, { RS_M_POST, "GET, POST", 1 },
		{ RS_M_PUT, "GET, POST", 0 }, { RS_M_DELETE, "GET, POST", 0 },
		{ RS_M_POST, "GET", 0 }, { RS_M_GET, "POST", 0 },
		{ RS_M_PUT, "PUT, DELETE", 1 }, { RS_M_DELETE, "PUT, DELETE", 1 },
		{ RS_M_GET, "PUT, DELETE", 0 }, { RS_M_DELETE, "GET, DELETE", 1 },
		{ RS_M_PATCH, "GET, POST", 0 }, { RS_M_OTHER, "GET, POST", 0 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		CHECKF(rs_api_method_allowed(cases[i].m, cases[i].allow) == cases[i].ok,
		       "method %d with allow \"%s\"", (int)cases[i].m, cases[i].allow);
}

static void
test_headers(void)
{
	uint64_t seq = 99;
	char key[RS_API_HDR_MAX + 1];

	CHECK_INT(rs_api_prefer_wait("wait=5"), 5);
	CHECK_INT(rs_api_prefer_wait("respond-async, wait=30"), 30);
	CHECK_INT(rs_api_prefer_wait("wait=61"), 60);           /* clamped */
	CHECK_INT(rs_api_prefer_wait("wait=99999999999999999999"), 60); /* read 15 digits */
	CHECK_INT(rs_api_prefer_wait("wait=x"), 0);
	CHECK_INT(rs_api_prefer_wait("return=minimal"), 0);
	CHECK_INT(rs_api_prefer_wait(""), 0);

	CHECK(rs_api_parse_runseq("0", &seq) == RS_OK && seq == 0);
	CHECK(rs_api_parse_runseq("42", &seq) == RS_OK && seq == 42);
	CHECK(rs_api_parse_runseq("9223372036854775807", &seq) == RS_OK);
	CHECK(rs_api_parse_runseq("9223372036854775808", &seq) == RS_EINVAL);
	CHECK(rs_api_parse_runseq("-1", &seq) == RS_EINVAL);
	CHECK(rs_api_parse_runseq("1x", &seq) == RS_EINVAL);
	CHECK(rs_api_parse_runseq("", &seq) == RS_EINVAL);

	CHECK(rs_api_idem_key_ok("order-17 retry"));
	CHECK(!rs_api_idem_key_ok(""));
	CHECK(!rs_api_idem_key_ok("a\tb"));
	CHECK(!rs_api_idem_key_ok("caf\xc3\xa9"));
	memset(key, 'k', RS_API_HDR_MAX - 1);
	key[RS_API_HDR_MAX - 1] = '\0';
	CHECK(rs_api_idem_key_ok(key));
	key[RS_API_HDR_MAX - 1] = 'k';
	key[RS_API_HDR_MAX] = '\0';
	CHECK(!rs_api_idem_key_ok(key));
}

static void
test_qarg(void)
{
	char out[8] = "same";

	CHECK(rs_api_qarg("limit=10&status=running", "status", out, sizeof(out)) == 1);
	CHECK_STR(out, "running");
	CHECK(rs_api_qarg("limit=10&status=running", "limit", out, sizeof(out)) == 1);
	CHECK_STR(out, "10");
	CHECK(rs_api_qarg("xlimit=1", "limit", out, sizeof(out)) == 0);   /* whole names only */
	CHECK_STR(out, "10");
	CHECK(rs_api_qarg("limit", "limit", out, sizeof(out)) == 0);
	CHECK(rs_api_qarg("a=&b=2", "a", out, sizeof(out)) == 1);
	CHECK_STR(out, "");
	CHECK(rs_api_qarg("a=123456789012", "a", out, sizeof(out)) == 1); /* truncated */
	CHECK_STR(out, "1234567");
	CHECK(rs_api_qarg("", "a", out, sizeof(out)) == 0);
}

static void
test_cursor(void)
{
	char cur[160], us[32], id[RS_API_RUNKEY], bad[160];

	rs_api_cursor_encode("1733390000123456", U, cur, sizeof(cur));
	CHECK(strchr(cur, '.') == NULL && strchr(cur, '=') == NULL);
	CHECK(rs_api_cursor_decode(cur, us, id) == RS_OK);
	CHECK_STR(us, "1733390000123456");
	CHECK_STR(id, U);
	/* anything this API did not hand out */
	CHECK(rs_api_cursor_decode("", us, id) == RS_EINVAL);
	CHECK(rs_api_cursor_decode("!!!", us, id) == RS_EINVAL);
	rs_api_cursor_encode("12a4", U, bad, sizeof(bad));
	CHECK(rs_api_cursor_decode(bad, us, id) == RS_EINVAL);
	rs_api_cursor_encode("1234", "not-a-uuid", bad, sizeof(bad));
	CHECK(rs_api_cursor_decode(bad, us, id) == RS_EINVAL);
	rs_api_cursor_encode("", U, bad, sizeof(bad));
	CHECK(rs_api_cursor_decode(bad, us, id) == RS_EINVAL);
	rs_api_cursor_encode("12345678901234567890123456789012", U, bad, sizeof(bad));
	CHECK(rs_api_cursor_decode(bad, us, id) == RS_EINVAL);
}

/* Status (0, 400 or 422) and detail of POST /v1/runs for body. */
static int
run_body(const char *body, char *err, size_t cap)
{
	json_t *root = NULL, *input = NULL;
	const char *agent = NULL, *version = NULL;
	int st;

	err[0] = '\0';
	st = rs_api_run_body(body, strlen(body), &root, &agent, &version, &input, err, cap);
	CHECK((st == 0) == (root != NULL));
	CHECK(st == 0 || (agent == NULL && version == NULL));
	json_decref(root);
	return st;
}

static void
test_bodies(void)
{
	char err[256], tags[2048];
	json_t *root = NULL, *input = NULL, *payload = NULL;
	const char *agent = NULL, *version = NULL, *reason = NULL;
	const char *ok = "{\"agent\":\"a\",\"version\":\"v1\",\"input\":{\"x\":1},\"tags\":{\"env\":\"prod\"}}";
	int64_t from = 0;
	size_t off = 0;

	CHECK_INT(rs_api_run_body(ok, strlen(ok), &root, &agent, &version, &input, err,
	                          sizeof(err)), 0);
	CHECK_STR(agent, "a");
	CHECK_STR(version, "v1");
	CHECK(json_is_object(input));
	json_decref(root);

	CHECK_INT(run_body("{\"agent\":\"a\"}", err, sizeof(err)), 0);
	CHECK_INT(run_body("{", err, sizeof(err)), 400);
	CHECK_INT(run_body("", err, sizeof(err)), 400);
	CHECK_INT(run_body("{\"agent\":\"a\",\"agent\":\"b\"}", err, sizeof(err)), 400);
	CHECK_INT(run_body("[]", err, sizeof(err)), 422);
	CHECK_INT(run_body("{}", err, sizeof(err)), 422);
	CHECK_STR(err, "agent: required, a string");
	CHECK_INT(run_body("{\"agent\":1}", err, sizeof(err)), 422);
	CHECK_INT(run_body("{\"agent\":\"a\",\"extra\":1}", err, sizeof(err)), 422);
	CHECK_STR(err, "extra: unknown field");
	CHECK_INT(run_body("{\"agent\":\"a\",\"version\":2}", err, sizeof(err)), 422);
	CHECK_STR(err, "version: must be a string");
	CHECK_INT(run_body("{\"agent\":\"a\",\"input\":[1]}", err, sizeof(err)), 422);
	CHECK_STR(err, "input: must be a JSON object");
	CHECK_INT(run_body("{\"agent\":\"a\",\"tags\":[]}", err, sizeof(err)), 422);
	CHECK_INT(run_body("{\"agent\":\"a\",\"tags\":{\"a:b\":\"x\"}}", err, sizeof(err)), 422);
	CHECK_INT(run_body("{\"agent\":\"a\",\"tags\":{\"k\":1}}", err, sizeof(err)), 422);

	/* tags: 16 fine, 17 too many */
	off = (size_t)snprintf(tags, sizeof(tags), "{\"agent\":\"a\",\"tags\":{");
	for (int i = 0; i < RS_API_MAX_TAGS; i++)
		off += (size_t)snprintf(tags + off, sizeof(tags) - off, "%s\"t%d\":\"v\"", i ? "," : "", i);
	snprintf(tags + off, sizeof(tags) - off, "}}");
	CHECK_INT(run_body(tags, err, sizeof(err)), 0);
	snprintf(tags + off, sizeof(tags) - off, ",\"t99\":\"v\"}}");
	CHECK_INT(run_body(tags, err, sizeof(err)), 422);
	CHECK_STR(err, "tags: at most 16 tags");

	CHECK_INT(rs_api_cancel_body("", 0, &root, &reason, err, sizeof(err)), 0);
	CHECK(root == NULL && reason == NULL);
	CHECK_INT(rs_api_cancel_body("{\"reason\":\"done\"}", 17, &root, &reason, err, sizeof(err)), 0);
	CHECK_STR(reason, "done");
	json_decref(root);
	CHECK_INT(rs_api_cancel_body("{\"reason\":5}", 12, &root, &reason, err, sizeof(err)), 422);
	CHECK_INT(rs_api_cancel_body("nope", 4, &root, &reason, err, sizeof(err)), 400);

	CHECK_INT(rs_api_signal_body("approval", "", 0, &payload, err, sizeof(err)), 0);
	CHECK(payload == NULL);
	CHECK_INT(rs_api_signal_body("approval", "{\"by\":\"ann\"}", 12, &payload, err, sizeof(err)), 0);
	CHECK(json_is_object(payload));
	json_decref(payload);
	CHECK_INT(rs_api_signal_body("Approval", "", 0, &payload, err, sizeof(err)), 422);
	CHECK_INT(rs_api_signal_body("approval", "{", 1, &payload, err, sizeof(err)), 400);

	CHECK_INT(rs_api_fork_body("", 0, 0, &root, &from, &version, &input, err, sizeof(err)), 422);
	CHECK_INT(rs_api_fork_body("", 0, 1, &root, &from, &version, &input, err, sizeof(err)), 0);
	CHECK_INT(rs_api_fork_body("{\"from_seq\":3}", 14, 0, &root, &from, &version, &input, err,
	                           sizeof(err)), 0);
	CHECK_INT(from, 3);
	json_decref(root);
	CHECK_INT(rs_api_fork_body("{\"from_seq\":0}", 14, 0, &root, &from, &version, &input, err,
	                           sizeof(err)), 422);
	CHECK_INT(rs_api_fork_body("{\"from_seq\":3}", 14, 1, &root, &from, &version, &input, err,
	                           sizeof(err)), 422);   /* retry takes no from_seq */
	CHECK_INT(rs_api_fork_body("{\"version\":\"\"}", 14, 1, &root, &from, &version, &input, err,
	                           sizeof(err)), 422);
}

int
main(void)
{
	test_routes();
	test_param_bounds();
	test_methods();
	test_headers();
	test_qarg();
	test_cursor();
	test_bodies();
	return check_report("test_api_request");
}
