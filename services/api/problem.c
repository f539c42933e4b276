/*
 * problem.c - RFC 7807 error bodies and JSON responses.
 *
 * Every error the API returns is application/problem+json with a stable
 * `type` URI per status, the standard `title`, and a `detail` precise
 * enough to fix the request (the JSON position, the field path, ...).
 */
#include "api.h"
#include "rs_json.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *
rs_api_reason(int status)
{
	switch (status) {
	case 200: return "OK";
	case 201: return "Created";
	case 202: return "Accepted";
	case 204: return "No Content";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 413: return "Payload Too Large";
	case 415: return "Unsupported Media Type";
	case 422: return "Unprocessable Entity";
	case 429: return "Too Many Requests";
	case 500: return "Internal Server Error";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	case 507: return "Insufficient Storage";
	default: return "Error";
	}
}

static const char *
problem_slug(int status)
{
	switch (status) {
	case 400: return "malformed-request";
	case 401: return "unauthorized";
	case 404: return "not-found";
	case 405: return "method-not-allowed";
	case 409: return "conflict";
	case 413: return "body-too-large";
	case 422: return "invalid-definition";
	case 429: return "too-many-requests";
	case 503: return "unavailable";
	case 507: return "insufficient-storage";
	default: return "error";
	}
}

void
rs_api_json(rs_api_job *job, int status, json_t *v)
{
	free(job->resp);
	job->resp = v != NULL ? rs_json_dump(v) : NULL;
	json_decref(v);
	if (job->resp == NULL) {
		job->status = 500;
		job->ctype = "application/problem+json";
		job->resp = strdup("{\"status\":500,\"title\":\"Internal Server Error\"}");
	} else {
		job->status = status;
		job->ctype = "application/json";
	}
	job->resp_len = job->resp != NULL ? strlen(job->resp) : 0;
	job->action = RS_ACT_RESPOND;
}

void
rs_api_problem(rs_api_job *job, int status, const char *fmt, ...)
{
	char detail[1024], type[128], instance[RS_API_PATH_MAX];
	va_list ap;
	json_t *p;

	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	/* detail may quote the request (a path, a field name) and be cut
	 * inside a character, and the path is the client's bytes: both must
	 * be UTF-8, or json_pack fails and the client gets a bare 500. */
	rs_json_scrub_utf8(detail);
	snprintf(instance, sizeof(instance), "%s", job->path);
	rs_json_scrub_utf8(instance);
	snprintf(type, sizeof(type), "https://runstream.dev/problems/%s", problem_slug(status));
	p = json_pack("{s:s, s:s, s:i, s:s, s:s}", "type", type, "title", rs_api_reason(status),
	              "status", status, "detail", detail, "instance", instance);
	rs_api_json(job, status, p);
	if (job->status == status)
		job->ctype = "application/problem+json";
}

void
rs_api_problem_retry(rs_api_job *job, int status, int retry_s, const char *fmt, ...)
{
	char detail[1024];
	size_t have = strlen(job->hdrs);
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	rs_api_problem(job, status, "%s", detail);
	snprintf(job->hdrs + have, sizeof(job->hdrs) - have, "Retry-After: %d\n", retry_s);
}
