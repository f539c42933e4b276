/*
 * http.c - the executor's outbound HTTP, on libcurl: https with
 * certificate verification (system CA store, plus RS_EXECUTOR_CA_FILE),
 * HTTP/2 when the server offers it, the standard proxy variables
 * (http_proxy, https_proxy, no_proxy: libcurl reads them), a deadline over
 * everything, redirects only when the step asks (bounded, each hop vetted
 * again), and a cap on the response body in both modes.
 *
 * Why this shape: a worker owns one effect at a time (pool.c) and the
 * effect's own code (llm.c) publishes chunks synchronously from inside the
 * stream, so each call runs its own multi handle on the worker's thread:
 * curl_multi_poll() gives the streaming tick (llm.chunk batching) that a
 * blocking curl_easy_perform cannot. Connections, DNS answers and TLS
 * sessions live in one process-wide CURLSH, so calls to a host reuse
 * kept-alive connections whichever worker makes them.
 *
 * Egress: CURLOPT_OPENSOCKETFUNCTION sees the address curl is about to
 * connect to, after DNS, for every new connection (redirect hops
 * included), and refuses it unless rs_exec_egress_check() allows it. Reused
 * connections were vetted when opened (curl reuses a connection only for
 * the same host and port). With a proxy, the address vetted is the
 * proxy's: list it in RS_EXECUTOR_EGRESS_ALLOW if it is private, and
 * leave the policy for targets to the proxy.
 *
 * Before any connection, rs_exec_http_validate() refuses what could smuggle a
 * second header or request: CR/LF/NUL and other controls in header values
 * and the URL, header names that are not RFC 7230 tokens, methods that are
 * not short tokens, framing and hop-by-hop headers.
 */
#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "egress.h"
#include "rs_mem.h"
#include "executor.h"
#include "rs_config.h"
#include "rs_time.h"

#define MAX_METHOD 16
#define MAX_URL 8192
#define MAX_HEADERS 64
#define MAX_HEADER_NAME 128
#define MAX_HEADER_VALUE 8192
#define MAX_RESP_HEADERS 100           /* recorded response headers */
#define MAX_RESP_HEADER_BYTES 65536    /* ... and their bytes */
#define REDACTED "[redacted]"

static CURLSH *share;
static pthread_mutex_t share_mu[CURL_LOCK_DATA_LAST];
static egress_policy *policy;
static char *ca_file;
static int64_t connect_timeout_ms = 10000;
static long max_connections = 64;

/* ---- the shared cache ---- */

static void
share_lock(CURL *h, curl_lock_data d, curl_lock_access a, void *u)
{
	(void)h; (void)a; (void)u;
	pthread_mutex_lock(&share_mu[d]);
}

static void
share_unlock(CURL *h, curl_lock_data d, void *u)
{
	(void)h; (void)u;
	pthread_mutex_unlock(&share_mu[d]);
}

rs_status
rs_exec_http_global_init(const http_cfg *c, char *err, size_t cap)
{
	char why[160] = "";

	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		snprintf(err, cap, "curl_global_init failed");
		return RS_ERR;
	}
	if (rs_exec_egress_parse(c->egress_allow, &policy, why, sizeof(why)) != RS_OK) {
		snprintf(err, cap, "RS_EXECUTOR_EGRESS_ALLOW: %s", why);
		return RS_EINVAL;
	}
	if (c->ca_file != NULL && *c->ca_file != '\0' && (ca_file = strdup(c->ca_file)) == NULL)
		rs_oom(0);
	connect_timeout_ms = c->connect_timeout_ms;
	max_connections = (long)c->max_connections;
	for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
		pthread_mutex_init(&share_mu[i], NULL);
	if ((share = curl_share_init()) == NULL)
		rs_oom(0);
	curl_share_setopt(share, CURLSHOPT_LOCKFUNC, share_lock);
	curl_share_setopt(share, CURLSHOPT_UNLOCKFUNC, share_unlock);
	curl_share_setopt(share, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT);
	curl_share_setopt(share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
	curl_share_setopt(share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
	return RS_OK;
}

void
rs_exec_http_global_cleanup(void)
{
	if (share != NULL)
		curl_share_cleanup(share);
	share = NULL;
	rs_exec_egress_free(policy);
	policy = NULL;
	free(ca_file);
	ca_file = NULL;
	curl_global_cleanup();
}

size_t
rs_exec_http_egress_rules(void)
{
	return rs_exec_egress_rules(policy);
}

/* ---- validation ---- */

/* RFC 7230 tchar. */
static int
is_tchar(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static int
is_token(const char *s, size_t max)
{
	size_t n = 0;

	for (; s[n] != '\0'; n++)
		if (n >= max || !is_tchar((unsigned char)s[n]))
			return 0;
	return n > 0;
}

/* A field value: visible characters, spaces, tabs and non-ASCII bytes;
 * never CR, LF, NUL or another control character. */
static int
value_ok(const char *s, size_t max)
{
	size_t n = 0;

	for (; s[n] != '\0'; n++) {
		unsigned char c = (unsigned char)s[n];
		if (n >= max || (c < 0x20 && c != '\t') || c == 0x7f)
			return 0;
	}
	return 1;
}

static int
url_ok(const char *u)
{
	size_t n = 0;

	if (strncasecmp(u, "http://", 7) != 0 && strncasecmp(u, "https://", 8) != 0)
		return 0;
	for (; u[n] != '\0'; n++)
		if (n >= MAX_URL || (unsigned char)u[n] <= 0x20 || (unsigned char)u[n] == 0x7f)
			return 0;
	return 1;
}

/* Headers curl or HTTP itself owns: setting them by hand would desync the
 * message framing (request smuggling) or the connection's reuse. */
static int
reserved_header(const char *name)
{
	static const char *const names[] = { "content-length", "transfer-encoding", "connection",
	                                     "keep-alive", "upgrade", "te", "trailer",
	                                     "proxy-connection", "expect", NULL };

	for (int i = 0; names[i] != NULL; i++)
		if (strcasecmp(name, names[i]) == 0)
			return 1;
	return 0;
}

http_fail
rs_exec_http_validate(const http_req *q, char *why, size_t cap)
{
	if (q->method == NULL || !is_token(q->method, MAX_METHOD)) {
		snprintf(why, cap, "method must be a token of 1 to %d characters", MAX_METHOD);
		return HF_INVALID;
	}
	if (q->url == NULL || !url_ok(q->url)) {
		snprintf(why, cap, "url must be an http:// or https:// URL of at most %d bytes "
		         "without spaces or control characters", MAX_URL);
		return HF_INVALID;
	}
	if (q->nheaders > MAX_HEADERS) {
		snprintf(why, cap, "more than %d headers", MAX_HEADERS);
		return HF_INVALID;
	}
	for (size_t i = 0; i < q->nheaders; i++) {
		const char *k = q->headers[i].name, *v = q->headers[i].value;
		if (k == NULL || !is_token(k, MAX_HEADER_NAME)) {
			snprintf(why, cap, "header name \"%.40s\" is not a token (RFC 7230) of at most "
			         "%d characters", k ? k : "", MAX_HEADER_NAME);
			return HF_INVALID;
		}
		if (reserved_header(k)) {
			snprintf(why, cap, "header %s is set by the executor, not by a step", k);
			return HF_INVALID;
		}
		if (v == NULL || !value_ok(v, MAX_HEADER_VALUE)) {
			snprintf(why, cap, "header %s: the value has a CR, LF, NUL or another control "
			         "character, or is longer than %d bytes", k, MAX_HEADER_VALUE);
			return HF_INVALID;
		}
	}
	return HF_OK;
}

/* ---- one call ---- */

typedef struct {
	const http_req *q;
	http_resp *r;
	CURL *easy;
	size_t seen;              /* body bytes received (both modes) */
	size_t hdr_bytes;
	int too_large, denied, stopped;
} call;

static int
credential_header(const char *lname)
{
	static const char *const names[] = { "set-cookie", "set-cookie2", "cookie",
	                                     "authorization", "proxy-authorization", "x-api-key",
	                                     "x-auth-token", "x-amz-security-token", NULL };

	for (int i = 0; names[i] != NULL; i++)
		if (strcmp(lname, names[i]) == 0)
			return 1;
	return 0;
}

/* A header value as a JSON string: bytes that are not valid UTF-8 (a
 * Latin-1 value) become '?'. */
static json_t *
header_string(const char *v, size_t n)
{
	json_t *s = json_stringn(v, n);
	char *copy;

	if (s != NULL)
		return s;
	if ((copy = malloc(n + 1)) == NULL)
		rs_oom(0);
	for (size_t i = 0; i < n; i++)
		copy[i] = (unsigned char)v[i] < 0x80 ? v[i] : '?';
	s = json_stringn(copy, n);
	free(copy);
	return s;
}

static size_t
on_header(char *p, size_t size, size_t nitems, void *ud)
{
	call *c = ud;
	size_t n = size * nitems, klen;
	char name[MAX_HEADER_NAME + 1], *colon, *v, *end;
	const char *old;
	json_t *val;

	if (n >= 5 && memcmp(p, "HTTP/", 5) == 0) {
		/* A new response (after a 1xx or a followed redirect): start over. */
		json_object_clear(c->r->headers);
		c->hdr_bytes = 0;
		return n;
	}
	if ((colon = memchr(p, ':', n)) == NULL)
		return n;                         /* the blank line, or folded junk */
	klen = (size_t)(colon - p);
	if (klen == 0 || klen > MAX_HEADER_NAME)
		return n;
	c->hdr_bytes += n;
	if (c->hdr_bytes > MAX_RESP_HEADER_BYTES ||
	    json_object_size(c->r->headers) >= MAX_RESP_HEADERS) {
		snprintf(c->r->err, sizeof(c->r->err), "response headers larger than %d bytes or "
		         "more than %d", MAX_RESP_HEADER_BYTES, MAX_RESP_HEADERS);
		c->too_large = 1;
		return 0;
	}
	for (size_t i = 0; i < klen; i++)
		name[i] = (char)(p[i] >= 'A' && p[i] <= 'Z' ? p[i] - 'A' + 'a' : p[i]);
	name[klen] = '\0';
	for (v = colon + 1, end = p + n; v < end && (*v == ' ' || *v == '\t'); v++)
		;
	while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t'))
		end--;
	if (credential_header(name)) {
		json_object_set_new(c->r->headers, name, json_string(REDACTED));
		return n;
	}
	old = json_string_value(json_object_get(c->r->headers, name));
	if (old != NULL) {
		/* A repeated header is joined with ", " (RFC 7230 3.2.2). */
		size_t ol = strlen(old), vl = (size_t)(end - v);
		char *joined = malloc(ol + 2 + vl);
		if (joined == NULL)
			rs_oom(0);
		memcpy(joined, old, ol);
		memcpy(joined + ol, ", ", 2);
		memcpy(joined + ol + 2, v, vl);
		val = header_string(joined, ol + 2 + vl);
		free(joined);
	} else {
		val = header_string(v, (size_t)(end - v));
	}
	json_object_set_new(c->r->headers, name, val ? val : json_string(""));
	return n;
}

static size_t
on_body(char *p, size_t size, size_t nmemb, void *ud)
{
	call *c = ud;
	http_resp *r = c->r;
	size_t n = size * nmemb;
	long status = 0;

	curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &status);
	r->status = (int)status;
	if (n > c->q->max_body || c->seen > c->q->max_body - n) {
		snprintf(r->err, sizeof(r->err), "response body larger than %zu bytes", c->q->max_body);
		c->too_large = 1;
		return 0;
	}
	c->seen += n;
	if (c->q->on_data != NULL) {
		if (c->q->on_data(c->q->ud, p, n) != 0) {
			c->stopped = 1;
			return 0;
		}
		return n;
	}
	if ((r->body = realloc(r->body, r->body_len + n + 1)) == NULL)
		rs_oom(0);
	memcpy(r->body + r->body_len, p, n);
	r->body_len += n;
	r->body[r->body_len] = '\0';
	return n;
}

/* The host of the URL curl is connecting for (redirect hops included). */
static void
current_host(CURL *easy, char *out, size_t cap)
{
	char *url = NULL, *host = NULL;
	CURLU *u;

	out[0] = '\0';
	curl_easy_getinfo(easy, CURLINFO_EFFECTIVE_URL, &url);
	if (url == NULL || (u = curl_url()) == NULL)
		return;
	if (curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK)
		snprintf(out, cap, "%s", host);
	curl_free(host);
	curl_url_cleanup(u);
}

static curl_socket_t
on_open_socket(void *ud, curlsocktype purpose, struct curl_sockaddr *a)
{
	call *c = ud;
	char host[256], addr[64];
	const char *why;

	current_host(c->easy, host, sizeof(host));
	why = rs_exec_egress_check(policy, host, &a->addr);
	if (why != NULL) {
		rs_exec_egress_addr_text(&a->addr, addr, sizeof(addr));
		snprintf(c->r->err, sizeof(c->r->err), "egress policy: %s address %s (host %.100s) is "
		         "denied; allow it with RS_EXECUTOR_EGRESS_ALLOW", why, addr, host);
		c->denied = 1;
		return CURL_SOCKET_BAD;
	}
	(void)purpose;
	return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
}

static http_fail
classify(CURLcode rc, call *c)
{
	if (c->denied)
		return HF_EGRESS;
	if (c->too_large)
		return HF_TOO_LARGE;
	if (c->stopped)
		return HF_STOPPED;
	switch (rc) {
	case CURLE_OK:
		return HF_OK;
	case CURLE_OPERATION_TIMEDOUT:
		return HF_TIMEOUT;
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
	case CURLE_COULDNT_CONNECT:
		return HF_CONNECT;
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
		return HF_TLS;
	case CURLE_TOO_MANY_REDIRECTS:
		return HF_REDIRECTS;
	case CURLE_URL_MALFORMAT:
	case CURLE_UNSUPPORTED_PROTOCOL:
		return HF_INVALID;
	default:
		return HF_IO;
	}
}

static int
left_ms(const http_req *q)
{
	int64_t l = q->deadline_ms - rs_mono_ms();

	return l <= 0 ? 0 : (l > 86400000 ? 86400000 : (int)l);
}

http_fail
rs_exec_http_do(const http_req *q, http_resp *r)
{
	struct curl_slist *hdrs = NULL;
	char line[MAX_HEADER_NAME + MAX_HEADER_VALUE + 4], errbuf[CURL_ERROR_SIZE] = "";
	int has_ctype = 0, running = 1, left, has_body;
	CURLM *multi = NULL;
	CURLMsg *m;
	CURLcode rc = CURLE_OK;
	http_fail f;
	call c;

	memset(r, 0, sizeof(*r));
	if ((r->headers = json_object()) == NULL)
		rs_oom(0);
	if ((f = rs_exec_http_validate(q, r->err, sizeof(r->err))) != HF_OK)
		return f;
	if ((left = left_ms(q)) == 0) {
		snprintf(r->err, sizeof(r->err), "the deadline passed before the request was sent");
		return HF_TIMEOUT;
	}
	memset(&c, 0, sizeof(c));
	c.q = q;
	c.r = r;
	if ((c.easy = curl_easy_init()) == NULL || (multi = curl_multi_init()) == NULL)
		rs_oom(0);
	for (size_t i = 0; i < q->nheaders; i++) {
		snprintf(line, sizeof(line), "%s: %s", q->headers[i].name, q->headers[i].value);
		if (*q->headers[i].value == '\0')   /* "Name;" sends an empty header in curl */
			snprintf(line, sizeof(line), "%s;", q->headers[i].name);
		hdrs = curl_slist_append(hdrs, line);
		has_ctype |= strcasecmp(q->headers[i].name, "content-type") == 0;
	}
	has_body = q->body != NULL || strcmp(q->method, "POST") == 0 ||
	           strcmp(q->method, "PUT") == 0 || strcmp(q->method, "PATCH") == 0;
	/* Without these curl would add a form Content-Type and "Expect: 100-continue". */
	if (has_body && !has_ctype)
		hdrs = curl_slist_append(hdrs, "Content-Type:");
	hdrs = curl_slist_append(hdrs, "Expect:");
	if (hdrs == NULL)
		rs_oom(0);

	curl_easy_setopt(c.easy, CURLOPT_URL, q->url);
	curl_easy_setopt(c.easy, CURLOPT_SHARE, share);
	curl_easy_setopt(c.easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c.easy, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c.easy, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c.easy, CURLOPT_FOLLOWLOCATION, q->max_redirects > 0 ? 1L : 0L);
	curl_easy_setopt(c.easy, CURLOPT_MAXREDIRS, q->max_redirects);
	curl_easy_setopt(c.easy, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
	curl_easy_setopt(c.easy, CURLOPT_USERAGENT, "runstream-executor");
	curl_easy_setopt(c.easy, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(c.easy, CURLOPT_TIMEOUT_MS, (long)left);
	curl_easy_setopt(c.easy, CURLOPT_CONNECTTIMEOUT_MS,
	                 (long)(connect_timeout_ms < left ? connect_timeout_ms : left));
	curl_easy_setopt(c.easy, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(c.easy, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c.easy, CURLOPT_HEADERDATA, &c);
	curl_easy_setopt(c.easy, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c.easy, CURLOPT_WRITEDATA, &c);
	curl_easy_setopt(c.easy, CURLOPT_OPENSOCKETFUNCTION, on_open_socket);
	curl_easy_setopt(c.easy, CURLOPT_OPENSOCKETDATA, &c);
	curl_easy_setopt(c.easy, CURLOPT_TCP_KEEPALIVE, 1L);
	if (ca_file != NULL)
		curl_easy_setopt(c.easy, CURLOPT_CAINFO, ca_file);
	if (strcmp(q->method, "HEAD") == 0)
		curl_easy_setopt(c.easy, CURLOPT_NOBODY, 1L);
	if (has_body) {
		curl_easy_setopt(c.easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)q->body_len);
		curl_easy_setopt(c.easy, CURLOPT_POSTFIELDS, q->body ? q->body : "");
	}
	if (strcmp(q->method, "GET") != 0 || has_body)
		curl_easy_setopt(c.easy, CURLOPT_CUSTOMREQUEST, q->method);
	/* Idle connections kept in the shared cache: without this a multi
	 * with one transfer keeps 4 and closes the rest after each call. */
	curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, max_connections);
	curl_multi_add_handle(multi, c.easy);

	while (running > 0) {
		int tick = q->on_tick != NULL && q->tick_ms > 0 ? (int)q->tick_ms : 1000;
		if (curl_multi_perform(multi, &running) != CURLM_OK)
			break;
		if (running == 0)
			break;
		curl_multi_poll(multi, NULL, 0, tick, NULL);
		if (q->on_tick != NULL && q->on_tick(q->ud) != 0) {
			c.stopped = 1;
			break;
		}
	}
	while ((m = curl_multi_info_read(multi, &left)) != NULL)
		if (m->msg == CURLMSG_DONE)
			rc = m->data.result;
	{
		long status = 0;
		curl_easy_getinfo(c.easy, CURLINFO_RESPONSE_CODE, &status);
		if (status > 0)
			r->status = (int)status;
	}
	f = classify(rc, &c);
	if (f != HF_OK && f != HF_STOPPED && r->err[0] == '\0')
		snprintf(r->err, sizeof(r->err), "%s", errbuf[0] ? errbuf : curl_easy_strerror(rc));
	curl_multi_remove_handle(multi, c.easy);
	curl_easy_cleanup(c.easy);
	curl_multi_cleanup(multi);
	curl_slist_free_all(hdrs);
	return f;
}

const char *
rs_exec_http_fail_code(http_fail f)
{
	switch (f) {
	case HF_OK: return "ok";
	case HF_INVALID: return "invalid_request";
	case HF_EGRESS: return "egress_denied";
	case HF_CONNECT: return "connect_failed";
	case HF_TLS: return "tls_verify_failed";
	case HF_TIMEOUT: return "timeout";
	case HF_TOO_LARGE: return "response_too_large";
	case HF_REDIRECTS: return "too_many_redirects";
	case HF_STOPPED: return "stopped";
	case HF_IO: break;
	}
	return "connection_error";
}

rs_errclass
rs_exec_http_fail_class(http_fail f)
{
	switch (f) {
	case HF_TIMEOUT: return RS_ERRCLASS_TIMEOUT;
	case HF_CONNECT:
	case HF_IO: return RS_ERRCLASS_TRANSIENT;
	default: return RS_ERRCLASS_PERMANENT;
	}
}

void
rs_exec_http_resp_free(http_resp *r)
{
	json_decref(r->headers);
	free(r->body);
	r->headers = NULL;
	r->body = NULL;
	r->body_len = 0;
}

int64_t
rs_exec_http_retry_after_ms(const http_resp *r)
{
	const char *v = json_string_value(json_object_get(r->headers, "retry-after"));
	int64_t s;

	if (v == NULL || rs_parse_int(v, 0, 86400, &s) != RS_OK)
		return 0;
	return s * 1000;
}
