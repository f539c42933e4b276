/*
 * request.c - the pure part of request handling (request.h): routing,
 * query arguments, Prefer / Last-Event-ID, the list cursor, and the shape
 * of the JSON bodies clients send.
 *
 * Kept apart from http.c (lws) and the handlers (NATS, Postgres) so the
 * code that reads untrusted bytes can be fuzzed on its own
 * (tests/fuzz/fuzz_api_request.c). Every output buffer is bounded and
 * NUL-terminated whatever the input.
 */
#include "request.h"
#include "rs_config.h"
#include "rs_id.h"
#include "rs_json.h"

#include <stdio.h>
#include <string.h>

int
rs_api_route_of(const char *path, rs_api_job *j, const char **allow)
{
	char seg[6][80];
	int n = 0;
	const char *p = path;

	while (*p == '/')
		p++;
	while (*p && n < 6) {
		const char *e = strchr(p, '/');
		size_t len = e != NULL ? (size_t)(e - p) : strlen(p);
		if (len == 0 || len >= sizeof(seg[0]))
			return R_NONE;
		memcpy(seg[n], p, len);
		seg[n][len] = '\0';
		n++;
		p += len;
		while (*p == '/')
			p++;
	}
	if (*p || n < 2 || strcmp(seg[0], "v1") != 0)
		return R_NONE;
	if (strcmp(seg[1], "agents") == 0) {
		if (n == 2) { *allow = "GET, POST"; return R_AGENTS; }
		snprintf(j->p1, sizeof(j->p1), "%s", seg[2]);
		if (n == 3) { *allow = "GET"; return R_AGENT; }
		if (n == 5 && strcmp(seg[3], "versions") == 0) {
			snprintf(j->p2, sizeof(j->p2), "%s", seg[4]);
			*allow = "GET";
			return R_AGENT_VERSION;
		}
		return R_NONE;
	}
	if (strcmp(seg[1], "secrets") == 0) {
		if (n == 2) { *allow = "GET"; return R_SECRETS; }
		if (n == 3) {
			snprintf(j->p1, sizeof(j->p1), "%s", seg[2]);
			*allow = "PUT, DELETE";
			return R_SECRET;
		}
		return R_NONE;
	}
	if (strcmp(seg[1], "schedules") == 0) {
		if (n == 2) { *allow = "GET, POST"; return R_SCHEDULES; }
		if (!rs_id_is_token(seg[2], 64))
			return R_NONE;
		snprintf(j->p1, sizeof(j->p1), "%s", seg[2]);
		if (n == 3) { *allow = "GET, DELETE"; return R_SCHEDULE; }
		if (n == 4 && strcmp(seg[3], "pause") == 0) { *allow = "POST"; return R_SCHEDULE_PAUSE; }
		if (n == 4 && strcmp(seg[3], "resume") == 0) { *allow = "POST"; return R_SCHEDULE_RESUME; }
		return R_NONE;
	}
	if (strcmp(seg[1], "devices") == 0 && n == 2) { *allow = "GET"; return R_DEVICES; }
	if (strcmp(seg[1], "runs") != 0)
		return R_NONE;
	if (n == 2) { *allow = "GET, POST"; return R_RUNS; }
	/* A malformed run id cannot name a run: 404, like an unknown one. */
	if (!rs_id_is_uuid(seg[2]))
		return R_NONE;
	memcpy(j->run_id, seg[2], RS_UUID_LEN + 1);
	if (n == 3) { *allow = "GET"; return R_RUN; }
	if (n == 4 && strcmp(seg[3], "events") == 0) { *allow = "GET"; return R_RUN_EVENTS; }
	if (n == 4 && strcmp(seg[3], "stream") == 0) { *allow = "GET"; return R_RUN_STREAM; }
	if (n == 4 && strcmp(seg[3], "cancel") == 0) { *allow = "POST"; return R_RUN_CANCEL; }
	if (n == 4 && strcmp(seg[3], "fork") == 0) { *allow = "POST"; return R_RUN_FORK; }
	if (n == 4 && strcmp(seg[3], "retry") == 0) { *allow = "POST"; return R_RUN_RETRY; }
	if (n == 4 && strcmp(seg[3], "state") == 0) { *allow = "GET"; return R_RUN_STATE; }
	if (n == 4 && strcmp(seg[3], "check") == 0) { *allow = "GET"; return R_RUN_CHECK; }
	if (n == 4 && strcmp(seg[3], "stream-token") == 0) { *allow = "POST"; return R_RUN_STREAM_TOKEN; }
	if (n == 5 && strcmp(seg[3], "signals") == 0) {
		snprintf(j->p2, sizeof(j->p2), "%s", seg[4]);
		*allow = "POST";
		return R_RUN_SIGNAL;
	}
	return R_NONE;
}

int
rs_api_method_allowed(rs_api_method m, const char *allow)
{
	if (m == RS_M_GET)
		return strstr(allow, "GET") != NULL;
	if (m == RS_M_POST)
		return strstr(allow, "POST") != NULL;
	if (m == RS_M_PUT)
		return strstr(allow, "PUT") != NULL;
	if (m == RS_M_DELETE)
		return strstr(allow, "DELETE") != NULL;
	return 0;
}

rs_status
rs_api_parse_runseq(const char *s, uint64_t *out)
{
	int64_t n;

	if (rs_parse_int(s, 0, INT64_MAX, &n) != RS_OK)
		return RS_EINVAL;
	*out = (uint64_t)n;
	return RS_OK;
}

int
rs_api_prefer_wait(const char *v)
{
	const char *p = strstr(v, "wait=");
	int64_t n;
	char num[16];
	size_t i = 0;

	if (p == NULL)
		return 0;
	for (p += 5; *p >= '0' && *p <= '9' && i < sizeof(num) - 1; p++)
		num[i++] = *p;
	num[i] = '\0';
	if (rs_parse_int(num, 0, INT64_MAX, &n) != RS_OK)
		return 0;
	return n > 60 ? 60 : (int)n;
}

int
rs_api_idem_key_ok(const char *k)
{
	size_t n = strlen(k);

	if (n == 0 || n >= RS_API_HDR_MAX)
		return 0;
	for (; *k != '\0'; k++)
		if ((unsigned char)*k < 0x20 || (unsigned char)*k > 0x7e)
			return 0;
	return 1;
}

int
rs_api_qarg(const char *q, const char *k, char *out, size_t cap)
{
	size_t kl = strlen(k);
	const char *p = q;

	while (p != NULL && *p) {
		if (strncmp(p, k, kl) == 0 && p[kl] == '=') {
			const char *v = p + kl + 1, *e = strchr(v, '&');
			size_t n = e != NULL ? (size_t)(e - v) : strlen(v);
			if (n >= cap)
				n = cap - 1;
			memcpy(out, v, n);
			out[n] = '\0';
			return 1;
		}
		p = strchr(p, '&');
		if (p != NULL)
			p++;
	}
	return 0;
}

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static void
b64_encode(const char *in, char *out, size_t cap)
{
	size_t n = strlen(in), o = 0;

	for (size_t i = 0; i < n && o + 5 < cap; i += 3) {
		unsigned v = (unsigned char)in[i] << 16;
		if (i + 1 < n) v |= (unsigned char)in[i + 1] << 8;
		if (i + 2 < n) v |= (unsigned char)in[i + 2];
		out[o++] = b64url[(v >> 18) & 63];
		out[o++] = b64url[(v >> 12) & 63];
		if (i + 1 < n) out[o++] = b64url[(v >> 6) & 63];
		if (i + 2 < n) out[o++] = b64url[v & 63];
	}
	out[o] = '\0';
}

static int
b64_decode(const char *in, char *out, size_t cap)
{
	unsigned v = 0;
	int bits = 0;
	size_t o = 0;

	for (; *in; in++) {
		const char *p = strchr(b64url, *in);
		if (p == NULL || *in == '\0')
			return -1;
		v = (v << 6) | (unsigned)(p - b64url);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (o + 1 >= cap)
				return -1;
			out[o++] = (char)((v >> bits) & 0xff);
		}
	}
	out[o] = '\0';
	return 0;
}

void
rs_api_cursor_encode(const char *created_us, const char *run_id, char *out, size_t cap)
{
	char raw[96];

	snprintf(raw, sizeof(raw), "%s.%s", created_us, run_id);
	b64_encode(raw, out, cap);
}

rs_status
rs_api_cursor_decode(const char *cursor, char us[32], char id[RS_API_RUNKEY])
{
	char cur[160];
	const char *dot;
	size_t n;

	if (b64_decode(cursor, cur, sizeof(cur)) != 0 || (dot = strchr(cur, '.')) == NULL ||
	    !rs_id_is_uuid(dot + 1))
		return RS_EINVAL;
	n = (size_t)(dot - cur);
	/* Digits only: the value becomes a bigint query parameter. */
	if (n == 0 || n >= 32 || strspn(cur, "0123456789") != n)
		return RS_EINVAL;
	memcpy(us, cur, n);
	us[n] = '\0';
	snprintf(id, RS_API_RUNKEY, "%s", dot + 1);
	return RS_OK;
}

/* A tag key: [A-Za-z0-9_.-]{1,RS_API_TAG_KEY_MAX} (no ':', which separates
 * key and value in ?tag=k:v). */
static int
tag_key_ok(const char *k)
{
	size_t n = strlen(k);

	if (n == 0 || n > RS_API_TAG_KEY_MAX)
		return 0;
	for (; *k; k++)
		if (!((*k >= 'a' && *k <= 'z') || (*k >= 'A' && *k <= 'Z') ||
		      (*k >= '0' && *k <= '9') || *k == '_' || *k == '.' || *k == '-'))
			return 0;
	return 1;
}

int
rs_api_tags_check(json_t *tags, char *err, size_t cap)
{
	const char *k;
	json_t *v;

	if (tags == NULL)
		return 0;
	if (!json_is_object(tags)) {
		snprintf(err, cap, "tags: must be an object of strings");
		return -1;
	}
	if (json_object_size(tags) > RS_API_MAX_TAGS) {
		snprintf(err, cap, "tags: at most %d tags", RS_API_MAX_TAGS);
		return -1;
	}
	json_object_foreach(tags, k, v) {
		if (!tag_key_ok(k)) {
			snprintf(err, cap, "tags: key \"%.80s\" must match [A-Za-z0-9_.-]{1,%d}", k,
			         RS_API_TAG_KEY_MAX);
			return -1;
		}
		if (!json_is_string(v) || json_string_length(v) > RS_API_TAG_VALUE_MAX) {
			snprintf(err, cap, "tags.%s: must be a string of at most %d bytes", k,
			         RS_API_TAG_VALUE_MAX);
			return -1;
		}
	}
	return 0;
}

int
rs_api_run_body(const char *body, size_t len, json_t **root, const char **agent,
                const char **version, json_t **input, char *err, size_t cap)
{
	json_t *b = NULL, *in;
	const char *k;
	json_t *v;
	int status = 422;

	*root = NULL;
	*agent = *version = NULL;
	*input = NULL;
	if (rs_json_parse(body != NULL ? body : "", len, &b, err, cap) != RS_OK)
		return 400;
	if (!json_is_object(b)) {
		snprintf(err, cap, "(root): must be a JSON object {\"agent\", \"version\"?, \"input\"?}");
		goto fail;
	}
	json_object_foreach(b, k, v)
		if (strcmp(k, "agent") != 0 && strcmp(k, "version") != 0 && strcmp(k, "input") != 0 &&
		    strcmp(k, "tags") != 0) {
			snprintf(err, cap, "%s: unknown field", k);
			goto fail;
		}
	if (rs_api_tags_check(json_object_get(b, "tags"), err, cap) != 0)
		goto fail;
	if ((*agent = json_string_value(json_object_get(b, "agent"))) == NULL) {
		snprintf(err, cap, "agent: required, a string");
		goto fail;
	}
	if (json_object_get(b, "version") != NULL &&
	    (*version = json_string_value(json_object_get(b, "version"))) == NULL) {
		snprintf(err, cap, "version: must be a string");
		goto fail;
	}
	in = json_object_get(b, "input");
	if (in != NULL && !json_is_object(in)) {
		snprintf(err, cap, "input: must be a JSON object");
		goto fail;
	}
	*input = in;
	*root = b;
	return 0;
fail:
	*agent = *version = NULL;
	json_decref(b);
	return status;
}

int
rs_api_cancel_body(const char *body, size_t len, json_t **root, const char **reason,
                   char *err, size_t cap)
{
	json_t *b = NULL;

	*root = NULL;
	*reason = NULL;
	if (len == 0)
		return 0;
	if (rs_json_parse(body, len, &b, err, cap) != RS_OK)
		return 400;
	if (!json_is_object(b) ||
	    (json_object_get(b, "reason") != NULL && !json_is_string(json_object_get(b, "reason")))) {
		snprintf(err, cap, "reason: must be a string (body {\"reason\"?})");
		json_decref(b);
		return 422;
	}
	*reason = json_string_value(json_object_get(b, "reason"));
	*root = b;
	return 0;
}

int
rs_api_signal_body(const char *name, const char *body, size_t len, json_t **payload,
                   char *err, size_t cap)
{
	*payload = NULL;
	if (!rs_id_is_token(name, 64)) {
		snprintf(err, cap, "signal name: must match [a-z0-9_-]{1,64}");
		return 422;
	}
	if (len > 0 && rs_json_parse(body, len, payload, err, cap) != RS_OK)
		return 400;
	return 0;
}

int
rs_api_fork_body(const char *body, size_t len, int retry, json_t **root, int64_t *from_seq,
                 const char **version, json_t **input, char *err, size_t cap)
{
	json_t *b = NULL, *v;
	const char *k;

	*root = NULL;
	*from_seq = 0;
	*version = NULL;
	*input = NULL;
	if (len == 0) {
		if (!retry) {
			snprintf(err, cap, "from_seq: missing (body {\"from_seq\", \"version\"?, "
			         "\"input\"?})");
			return 422;
		}
		return 0;
	}
	if (rs_json_parse(body, len, &b, err, cap) != RS_OK)
		return 400;
	if (!json_is_object(b)) {
		snprintf(err, cap, "body: must be an object");
		goto bad;
	}
	json_object_foreach(b, k, v) {
		if (strcmp(k, "from_seq") == 0 && !retry) {
			if (!json_is_integer(v) || json_integer_value(v) < 1) {
				snprintf(err, cap, "from_seq: must be an integer >= 1");
				goto bad;
			}
			*from_seq = (int64_t)json_integer_value(v);
		} else if (strcmp(k, "version") == 0) {
			if (!json_is_string(v) || json_string_length(v) == 0 ||
			    json_string_length(v) > 64) {
				snprintf(err, cap, "version: must be a string of 1 to 64 characters");
				goto bad;
			}
			*version = json_string_value(v);
		} else if (strcmp(k, "input") == 0) {
			if (!json_is_object(v)) {
				snprintf(err, cap, "input: must be an object");
				goto bad;
			}
			*input = v;
		} else {
			snprintf(err, cap, "%.64s: unknown member (body {%s\"version\"?, \"input\"?})", k,
			         retry ? "" : "\"from_seq\", ");
			goto bad;
		}
	}
	if (!retry && *from_seq == 0) {
		snprintf(err, cap, "from_seq: missing");
		goto bad;
	}
	*root = b;
	return 0;
bad:
	json_decref(b);
	*version = NULL;
	*input = NULL;
	return 422;
}
