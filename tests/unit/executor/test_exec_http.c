/*
 * test_exec_http.c - the executor's outbound requests (services/executor/
 * http.c) against a one-connection HTTP server in this process: what
 * rs_exec_http_validate refuses before any socket (methods, URLs, header names,
 * reserved framing headers, values with controls, the bounds of each),
 * the request as it reaches the wire (method, path, headers, body bytes,
 * no stray Content-Type or Expect), the response as recorded (repeated
 * headers joined, credentials redacted, Retry-After), the response body
 * cap, the deadline, and the egress policy refusing loopback unless the
 * allow-list names it.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../check.h"
#include "executor.h"
#include "rs_time.h"

/* ---- a one-connection server ---- */

typedef struct {
	int fd;                  /* listening socket */
	int port;
	const char *response;    /* written whole, then the connection closes */
	char req[16384];         /* the request as received */
	size_t req_len;
} server;

static void
server_open(server *s)
{
	struct sockaddr_in a;
	socklen_t len = sizeof(a);

	memset(s, 0, sizeof(*s));
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if ((s->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
	    bind(s->fd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(s->fd, 4) != 0 ||
	    getsockname(s->fd, (struct sockaddr *)&a, &len) != 0) {
		perror("test server");
		abort();
	}
	s->port = ntohs(a.sin_port);
}

/* Bytes of body a request announces (Content-Length), 0 if none. */
static size_t
content_length(const char *req)
{
	const char *p = strcasestr(req, "\r\ncontent-length:");

	return p != NULL ? (size_t)strtoul(p + 17, NULL, 10) : 0;
}

/* Accept one connection, read one request, answer s->response, close. */
static void *
serve_one(void *arg)
{
	server *s = arg;
	int c = accept(s->fd, NULL, NULL);
	const char *end = NULL;
	ssize_t n;

	if (c < 0)
		return NULL;
	s->req_len = 0;
	while (s->req_len < sizeof(s->req) - 1) {
		n = read(c, s->req + s->req_len, sizeof(s->req) - 1 - s->req_len);
		if (n <= 0)
			break;
		s->req_len += (size_t)n;
		s->req[s->req_len] = '\0';
		if (end == NULL && (end = strstr(s->req, "\r\n\r\n")) != NULL)
			end += 4;
		if (end != NULL && s->req_len >= (size_t)(end - s->req) + content_length(s->req))
			break;
	}
	if (write(c, s->response, strlen(s->response)) < 0)
		perror("test server write");
	close(c);
	return NULL;
}

/* rs_exec_http_do(q) while the server answers one connection with response. */
static http_fail
call(server *s, http_req *q, const char *response, http_resp *r)
{
	pthread_t t;
	http_fail f;

	s->response = response;
	pthread_create(&t, NULL, serve_one, s);
	f = rs_exec_http_do(q, r);
	pthread_join(t, NULL);
	return f;
}

/* ---- validation ---- */

static http_fail
validate(const char *method, const char *url, const http_header *h, size_t nh, char *why)
{
	http_req q;

	memset(&q, 0, sizeof(q));
	q.method = method;
	q.url = url;
	q.headers = h;
	q.nheaders = nh;
	why[0] = '\0';
	return rs_exec_http_validate(&q, why, 200);
}

static void
test_validate(void)
{
	char why[200], long_url[8300], long_name[200], long_value[8300];
	http_header h[70];

	CHECK_INT(validate("GET", "http://example.com/", NULL, 0, why), HF_OK);
	CHECK_INT(validate("PATCH", "HTTPS://example.com/a?b=c", NULL, 0, why), HF_OK);
	CHECK_INT(validate("M-SEARCH", "http://x/", NULL, 0, why), HF_OK);
	/* methods: a token of 1 to 16 */
	CHECK_INT(validate("", "http://x/", NULL, 0, why), HF_INVALID);
	CHECK_STR(why, "method must be a token of 1 to 16 characters");
	CHECK_INT(validate(NULL, "http://x/", NULL, 0, why), HF_INVALID);
	CHECK_INT(validate("GE T", "http://x/", NULL, 0, why), HF_INVALID);
	CHECK_INT(validate("GET\r\nX", "http://x/", NULL, 0, why), HF_INVALID);
	CHECK_INT(validate("ABCDEFGHIJKLMNOP", "http://x/", NULL, 0, why), HF_OK);
	CHECK_INT(validate("ABCDEFGHIJKLMNOPQ", "http://x/", NULL, 0, why), HF_INVALID);
	/* URLs: http(s), no spaces or controls, at most 8192 bytes */
	CHECK_INT(validate("GET", "ftp://x/", NULL, 0, why), HF_INVALID);
	CHECK(strstr(why, "http:// or https://") != NULL);
	CHECK_INT(validate("GET", "file:///etc/passwd", NULL, 0, why), HF_INVALID);
	CHECK_INT(validate("GET", "http://x/a b", NULL, 0, why), HF_INVALID);
	CHECK_INT(validate("GET", "http://x/a\r\nHost: y", NULL, 0, why), HF_INVALID);
	CHECK_INT(validate("GET", "http://x/\x7f", NULL, 0, why), HF_INVALID);
	CHECK_INT(validate("GET", NULL, NULL, 0, why), HF_INVALID);
	memcpy(long_url, "http://x/", 9);
	memset(long_url + 9, 'a', 8192 - 9);
	long_url[8192] = '\0';
	CHECK_INT(validate("GET", long_url, NULL, 0, why), HF_OK);
	long_url[8192] = 'a';
	long_url[8193] = '\0';
	CHECK_INT(validate("GET", long_url, NULL, 0, why), HF_INVALID);

	/* headers: names are tokens of at most 128, not framing/hop-by-hop;
	 * values without CR, LF or other controls, at most 8192 bytes */
	h[0] = (http_header){ "X-Id", "a7" };
	h[1] = (http_header){ "Authorization", "Bearer t" };
	h[2] = (http_header){ "X-Tab", "a\tb" };
	h[3] = (http_header){ "X-Utf8", "caf\xc3\xa9" };
	h[4] = (http_header){ "X-Empty", "" };
	CHECK_INT(validate("POST", "http://x/", h, 5, why), HF_OK);
	static const char *const reserved[] = { "Content-Length", "transfer-encoding", "Connection",
	                                        "Keep-Alive", "Upgrade", "TE", "Trailer",
	                                        "Proxy-Connection", "Expect" };
	for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++) {
		h[1] = (http_header){ reserved[i], "x" };
		CHECKF(validate("POST", "http://x/", h, 2, why) == HF_INVALID, "%s", reserved[i]);
		CHECK(strstr(why, "is set by the executor") != NULL);
	}
	h[1] = (http_header){ "X-Bad", "a\r\nX-Smuggled: 1" };
	CHECK_INT(validate("POST", "http://x/", h, 2, why), HF_INVALID);
	CHECK(strstr(why, "X-Bad") != NULL);
	h[1] = (http_header){ "X-Bad", "a\nb" };
	CHECK_INT(validate("POST", "http://x/", h, 2, why), HF_INVALID);
	h[1] = (http_header){ "X-Bad", "a\x01" };
	CHECK_INT(validate("POST", "http://x/", h, 2, why), HF_INVALID);
	h[1] = (http_header){ "X-Bad", NULL };
	CHECK_INT(validate("POST", "http://x/", h, 2, why), HF_INVALID);
	h[1] = (http_header){ "X Bad", "v" };
	CHECK_INT(validate("POST", "http://x/", h, 2, why), HF_INVALID);
	CHECK(strstr(why, "is not a token") != NULL);
	h[1] = (http_header){ "X-Bad:", "v" };
	CHECK_INT(validate("POST", "http://x/", h, 2, why), HF_INVALID);
	h[1] = (http_header){ "", "v" };
	CHECK_INT(validate("POST", "http://x/", h, 2, why), HF_INVALID);
	memset(long_name, 'n', 128);
	long_name[128] = '\0';
	h[1] = (http_header){ long_name, "v" };
	CHECK_INT(validate("POST", "http://x/", h, 2, why), HF_OK);
	long_name[128] = 'n';
	long_name[129] = '\0';
	CHECK_INT(validate("POST", "http://x/", h, 2, why), HF_INVALID);
	memset(long_value, 'v', 8192);
	long_value[8192] = '\0';
	h[1] = (http_header){ "X-Long", long_value };
	CHECK_INT(validate("POST", "http://x/", h, 2, why), HF_OK);
	long_value[8192] = 'v';
	long_value[8193] = '\0';
	CHECK_INT(validate("POST", "http://x/", h, 2, why), HF_INVALID);
	/* at most 64 headers */
	for (size_t i = 0; i < 70; i++)
		h[i] = (http_header){ "X-N", "v" };
	CHECK_INT(validate("GET", "http://x/", h, 64, why), HF_OK);
	CHECK_INT(validate("GET", "http://x/", h, 65, why), HF_INVALID);
	CHECK_STR(why, "more than 64 headers");
}

static void
test_fail_names(void)
{
	CHECK_STR(rs_exec_http_fail_code(HF_INVALID), "invalid_request");
	CHECK_STR(rs_exec_http_fail_code(HF_EGRESS), "egress_denied");
	CHECK_STR(rs_exec_http_fail_code(HF_CONNECT), "connect_failed");
	CHECK_STR(rs_exec_http_fail_code(HF_TLS), "tls_verify_failed");
	CHECK_STR(rs_exec_http_fail_code(HF_TIMEOUT), "timeout");
	CHECK_STR(rs_exec_http_fail_code(HF_IO), "connection_error");
	CHECK_STR(rs_exec_http_fail_code(HF_TOO_LARGE), "response_too_large");
	CHECK_STR(rs_exec_http_fail_code(HF_REDIRECTS), "too_many_redirects");
	CHECK_INT(rs_exec_http_fail_class(HF_CONNECT), RS_ERRCLASS_TRANSIENT);
	CHECK_INT(rs_exec_http_fail_class(HF_IO), RS_ERRCLASS_TRANSIENT);
	CHECK_INT(rs_exec_http_fail_class(HF_TIMEOUT), RS_ERRCLASS_TIMEOUT);
	CHECK_INT(rs_exec_http_fail_class(HF_EGRESS), RS_ERRCLASS_PERMANENT);
	CHECK_INT(rs_exec_http_fail_class(HF_INVALID), RS_ERRCLASS_PERMANENT);
	CHECK_INT(rs_exec_http_fail_class(HF_TOO_LARGE), RS_ERRCLASS_PERMANENT);
}

static void
req_init(http_req *q, const char *method, const char *url)
{
	memset(q, 0, sizeof(*q));
	q->method = method;
	q->url = url;
	q->deadline_ms = rs_mono_ms() + 10000;
	q->max_body = 1 << 20;
}

/* Default deny: loopback is refused at connect time, before any byte. */
static void
test_egress_denied(void)
{
	http_cfg cfg = { .egress_allow = "", .connect_timeout_ms = 2000, .max_connections = 4 };
	char err[256];
	http_req q;
	http_resp r;
	server s;

	CHECK(rs_exec_http_global_init(&cfg, err, sizeof(err)) == RS_OK);
	server_open(&s);
	char url[64];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/x", s.port);
	req_init(&q, "GET", url);
	CHECK_INT(rs_exec_http_do(&q, &r), HF_EGRESS);
	CHECKF(strstr(r.err, "loopback address 127.0.0.1") != NULL, "%s", r.err);
	CHECK_INT(r.status, 0);
	rs_exec_http_resp_free(&r);
	close(s.fd);
	rs_exec_http_global_cleanup();

	cfg.egress_allow = "10.0.0.0/8,bad/99";
	CHECK(rs_exec_http_global_init(&cfg, err, sizeof(err)) == RS_EINVAL);
	CHECKF(strstr(err, "RS_EXECUTOR_EGRESS_ALLOW") != NULL, "%s", err);
}

static void
test_wire(void)
{
	http_cfg cfg = { .egress_allow = "127.0.0.1/32", .connect_timeout_ms = 2000,
	                 .max_connections = 4 };
	http_header h[] = { { "X-Id", "a7" }, { "Authorization", "Bearer tok" }, { "X-Empty", "" } };
	const char *body = "{\"n\":\"3\"}";
	char err[256], url[96], *hdr_end;
	http_req q;
	http_resp r;
	server s;

	CHECK(rs_exec_http_global_init(&cfg, err, sizeof(err)) == RS_OK);
	server_open(&s);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/in/a7?x=1", s.port);

	/* the request as sent; the response as recorded */
	req_init(&q, "POST", url);
	q.headers = h;
	q.nheaders = 3;
	q.body = body;
	q.body_len = strlen(body);
	CHECK_INT(call(&s, &q, "HTTP/1.1 201 Created\r\nContent-Length: 11\r\n"
	               "Set-Cookie: session=secret\r\nX-Thing: a\r\nX-Thing: b\r\n"
	               "Connection: close\r\n\r\n{\"ok\":true}", &r), HF_OK);
	CHECKF(strncmp(s.req, "POST /in/a7?x=1 HTTP/1.1\r\n", 26) == 0, "%.60s", s.req);
	CHECK(strstr(s.req, "\r\nX-Id: a7\r\n") != NULL);
	CHECK(strstr(s.req, "\r\nAuthorization: Bearer tok\r\n") != NULL);
	CHECK(strstr(s.req, "\r\nX-Empty:\r\n") != NULL);
	CHECK(strstr(s.req, "\r\nContent-Length: 9\r\n") != NULL);
	CHECK(strstr(s.req, "\r\nUser-Agent: runstream-executor\r\n") != NULL);
	CHECK(strcasestr(s.req, "\r\nContent-Type:") == NULL);   /* none given, none added */
	CHECK(strcasestr(s.req, "\r\nExpect:") == NULL);
	hdr_end = strstr(s.req, "\r\n\r\n");
	CHECK(hdr_end != NULL && strcmp(hdr_end + 4, body) == 0);
	CHECK_INT(r.status, 201);
	CHECK_STR(r.body, "{\"ok\":true}");
	CHECK_INT(r.body_len, 11);
	CHECK_STR(json_string_value(json_object_get(r.headers, "set-cookie")), "[redacted]");
	CHECK_STR(json_string_value(json_object_get(r.headers, "x-thing")), "a, b");
	CHECK_INT(rs_exec_http_retry_after_ms(&r), 0);
	rs_exec_http_resp_free(&r);

	/* a Content-Type the step gives is sent as given */
	h[2] = (http_header){ "Content-Type", "text/plain" };
	CHECK_INT(call(&s, &q, "HTTP/1.1 503 Busy\r\nRetry-After: 7\r\nContent-Length: 0\r\n"
	               "Connection: close\r\n\r\n", &r), HF_OK);
	CHECK(strstr(s.req, "\r\nContent-Type: text/plain\r\n") != NULL);
	CHECK_INT(r.status, 503);
	CHECK_INT(rs_exec_http_retry_after_ms(&r), 7000);
	rs_exec_http_resp_free(&r);

	/* the response body cap: exactly the cap passes, one byte more fails */
	req_init(&q, "GET", url);
	q.max_body = 11;
	CHECK_INT(call(&s, &q, "HTTP/1.1 200 OK\r\nContent-Length: 11\r\nConnection: close\r\n\r\n"
	               "hello world", &r), HF_OK);
	CHECK(strncmp(s.req, "GET /in/a7?x=1 HTTP/1.1\r\n", 25) == 0);
	CHECK(strcasestr(s.req, "\r\nContent-Length:") == NULL);
	CHECK_STR(r.body, "hello world");
	rs_exec_http_resp_free(&r);
	q.max_body = 10;
	CHECK_INT(call(&s, &q, "HTTP/1.1 200 OK\r\nContent-Length: 11\r\nConnection: close\r\n\r\n"
	               "hello world", &r), HF_TOO_LARGE);
	CHECK(strstr(r.err, "larger than 10 bytes") != NULL);
	rs_exec_http_resp_free(&r);

	/* an invalid request never reaches a socket; nor does a late one */
	req_init(&q, "GET", url);
	h[0] = (http_header){ "X-Id", "a\r\nX-Smuggled: 1" };
	q.headers = h;
	q.nheaders = 1;
	CHECK_INT(rs_exec_http_do(&q, &r), HF_INVALID);
	rs_exec_http_resp_free(&r);
	req_init(&q, "GET", url);
	q.deadline_ms = rs_mono_ms() - 1;
	CHECK_INT(rs_exec_http_do(&q, &r), HF_TIMEOUT);
	CHECK_STR(r.err, "the deadline passed before the request was sent");
	rs_exec_http_resp_free(&r);

	close(s.fd);
	rs_exec_http_global_cleanup();
}

int
main(void)
{
	test_validate();
	test_fail_names();
	test_egress_denied();
	test_wire();
	return check_report("test_exec_http");
}
