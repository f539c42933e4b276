/*
 * http_client.c - a small blocking HTTP/1.1 client for the executor's
 * workers: one request per connection ("Connection: close"), a deadline
 * over everything (connect, send, headers, body), a cap on the response
 * body, and a streaming mode for server-sent events.
 *
 * Why not libwebsockets' client: it wants its own event loop thread and
 * callbacks; a worker that owns one effect at a time is simpler with a
 * plain socket and poll(2), and needs no locking. Plain http only: TLS is
 * a documented gap (docs/architecture.md, "Executor"); https URLs fail
 * with a permanent error instead of silently going out in clear text.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "executor.h"
#include "rs_config.h"
#include "rs_time.h"

#define MAX_HEAD 65536
#define READ_CHUNK 16384

typedef enum { B_NONE, B_LENGTH, B_CHUNKED, B_CLOSE } body_mode;
typedef enum { C_SIZE, C_DATA, C_CRLF, C_TRAILER, C_DONE } chunk_state;

typedef struct {
	int fd;
	const http_req *q;
	http_resp *r;
	char *in;                 /* unparsed bytes */
	size_t inlen, incap;
	body_mode mode;
	int64_t remaining;        /* B_LENGTH / C_DATA */
	chunk_state cs;
	int stop;                 /* on_data asked to stop, or the cap was hit */
	char *err;
	size_t cap;
} conn;

static rs_status
failf(conn *c, rs_status st, const char *fmt, const char *detail)
{
	snprintf(c->err, c->cap, fmt, detail ? detail : "");
	return st;
}

/* http://host[:port][/path] -> parts. */
static rs_status
parse_url(const char *url, char *host, size_t hcap, char *port, size_t pcap,
          const char **path)
{
	const char *h, *end, *colon;
	size_t n;

	if (strncmp(url, "https://", 8) == 0)
		return RS_ENOTFOUND;
	if (strncmp(url, "http://", 7) != 0)
		return RS_EINVAL;
	h = url + 7;
	end = h + strcspn(h, "/?#");
	colon = memchr(h, ':', (size_t)(end - h));
	n = (size_t)((colon ? colon : end) - h);
	if (n == 0 || n >= hcap)
		return RS_EINVAL;
	memcpy(host, h, n);
	host[n] = '\0';
	if (colon != NULL) {
		n = (size_t)(end - colon - 1);
		if (n == 0 || n >= pcap)
			return RS_EINVAL;
		memcpy(port, colon + 1, n);
		port[n] = '\0';
	} else {
		snprintf(port, pcap, "80");
	}
	*path = *end == '\0' ? "/" : end;
	return RS_OK;
}

static int
left_ms(const http_req *q)
{
	int64_t l = q->deadline_ms - rs_mono_ms();

	return l <= 0 ? 0 : (l > 3600000 ? 3600000 : (int)l);
}

/* Wait for ev on fd, ticking; 1 ready, 0 deadline, -1 error. */
static int
wait_fd(conn *c, short ev)
{
	struct pollfd p = { c->fd, ev, 0 };
	int l, t, n;

	for (;;) {
		if ((l = left_ms(c->q)) == 0)
			return 0;
		t = c->q->on_tick && c->q->tick_ms > 0 && c->q->tick_ms < l ? (int)c->q->tick_ms : l;
		n = poll(&p, 1, t);
		if (n > 0)
			return 1;
		if (n < 0 && errno != EINTR)
			return -1;
		if (c->q->on_tick != NULL)
			c->q->on_tick(c->q->ud);
	}
}

static rs_status
dial(conn *c, const char *host, const char *port)
{
	struct addrinfo hints, *res = NULL, *ai;
	int fd = -1, rc, soerr = 0;
	socklen_t sl = sizeof(soerr);

	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	if ((rc = getaddrinfo(host, port, &hints, &res)) != 0)
		return failf(c, RS_EUNAVAIL, "cannot resolve host: %s", gai_strerror(rc));
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
		            ai->ai_protocol);
		if (fd < 0)
			continue;
		c->fd = fd;
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 ||
		    (errno == EINPROGRESS && wait_fd(c, POLLOUT) == 1 &&
		     getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 && soerr == 0))
			break;
		close(fd);
		c->fd = fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0)
		return failf(c, left_ms(c->q) == 0 ? RS_ETIMEOUT : RS_EUNAVAIL,
		             "cannot connect: %s", soerr ? strerror(soerr) : "refused or timed out");
	return RS_OK;
}

static rs_status
send_all(conn *c, const char *buf, size_t n)
{
	ssize_t w;

	while (n > 0) {
		w = send(c->fd, buf, n, MSG_NOSIGNAL);
		if (w > 0) {
			buf += w;
			n -= (size_t)w;
			continue;
		}
		if (w < 0 && errno != EAGAIN && errno != EINTR)
			return failf(c, RS_EIO, "send: %s", strerror(errno));
		if (wait_fd(c, POLLOUT) != 1)
			return failf(c, RS_ETIMEOUT, "send: %s", "deadline passed");
	}
	return RS_OK;
}

static rs_status
send_request(conn *c, const char *host, const char *port, const char *path)
{
	const http_req *q = c->q;
	size_t cap = 1024 + strlen(path), n;
	rs_status st;
	char *head;
	int has_len = q->body != NULL || strcmp(q->method, "POST") == 0 ||
	              strcmp(q->method, "PUT") == 0 || strcmp(q->method, "PATCH") == 0;

	for (size_t i = 0; i < q->nheaders; i++)
		cap += strlen(q->headers[i].name) + strlen(q->headers[i].value) + 4;
	if ((head = malloc(cap)) == NULL)
		return RS_ENOMEM;
	n = (size_t)snprintf(head, cap, "%s %s HTTP/1.1\r\nHost: %s%s%s\r\nConnection: close\r\n"
	                     "User-Agent: runstream-executor\r\n", q->method, path, host,
	                     strcmp(port, "80") ? ":" : "", strcmp(port, "80") ? port : "");
	for (size_t i = 0; i < q->nheaders; i++)
		n += (size_t)snprintf(head + n, cap - n, "%s: %s\r\n", q->headers[i].name,
		                      q->headers[i].value);
	if (has_len)
		n += (size_t)snprintf(head + n, cap - n, "Content-Length: %zu\r\n", q->body_len);
	n += (size_t)snprintf(head + n, cap - n, "\r\n");
	st = send_all(c, head, n);
	free(head);
	if (st == RS_OK && q->body_len > 0)
		st = send_all(c, q->body, q->body_len);
	return st;
}

/* Read more bytes into c->in: 1 got some, 0 EOF, else an error status. */
static int
read_more(conn *c, rs_status *st)
{
	ssize_t n;
	int w;

	if (c->incap - c->inlen < READ_CHUNK) {
		char *p = realloc(c->in, c->incap + READ_CHUNK * 2);
		if (p == NULL) {
			*st = RS_ENOMEM;
			return -1;
		}
		c->in = p;
		c->incap += READ_CHUNK * 2;
	}
	for (;;) {
		n = recv(c->fd, c->in + c->inlen, c->incap - c->inlen - 1, 0);
		if (n > 0) {
			c->inlen += (size_t)n;
			c->in[c->inlen] = '\0';
			return 1;
		}
		if (n == 0)
			return 0;
		if (errno != EAGAIN && errno != EINTR) {
			*st = failf(c, RS_EIO, "recv: %s", strerror(errno));
			return -1;
		}
		if ((w = wait_fd(c, POLLIN)) != 1) {
			*st = w == 0 ? failf(c, RS_ETIMEOUT, "deadline passed%s", "")
			             : failf(c, RS_EIO, "poll: %s", strerror(errno));
			return -1;
		}
	}
}

static void
consume(conn *c, size_t n)
{
	memmove(c->in, c->in + n, c->inlen - n);
	c->inlen -= n;
	c->in[c->inlen] = '\0';
}

/* One header line "Name: value" into r->headers (lower-case name; a
 * repeated header is joined with ", "). */
static void
add_header(http_resp *r, char *line)
{
	char *colon = strchr(line, ':'), *v, *p;
	const char *old;
	char *joined;

	if (colon == NULL)
		return;
	*colon = '\0';
	for (p = line; *p; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	for (v = colon + 1; *v == ' ' || *v == '\t'; v++)
		;
	for (p = v + strlen(v); p > v && (p[-1] == ' ' || p[-1] == '\t'); p--)
		*--p = '\0';
	old = json_string_value(json_object_get(r->headers, line));
	if (old != NULL && asprintf(&joined, "%s, %s", old, v) > 0) {
		json_object_set_new(r->headers, line, json_string(joined));
		free(joined);
		return;
	}
	json_object_set_new(r->headers, line, json_string(v));
}

static rs_status
read_head(conn *c)
{
	char *end, *line, *next;
	rs_status st = RS_OK;
	int got, minor;

	while ((end = strstr(c->in ? c->in : "", "\r\n\r\n")) == NULL) {
		if (c->inlen > MAX_HEAD)
			return failf(c, RS_EIO, "response headers larger than %s", "64 KiB");
		if ((got = read_more(c, &st)) <= 0)
			return got == 0 ? failf(c, RS_EIO, "connection closed before the response%s", "")
			                : st;
	}
	*end = '\0';
	if (sscanf(c->in, "HTTP/1.%d %d", &minor, &c->r->status) != 2 || c->r->status < 100)
		return failf(c, RS_EIO, "malformed status line%s", "");
	line = strstr(c->in, "\r\n");
	for (line = line ? line + 2 : NULL; line != NULL && *line; line = next) {
		next = strstr(line, "\r\n");
		if (next != NULL) {
			*next = '\0';
			next += 2;
		}
		add_header(c->r, line);
	}
	consume(c, (size_t)(end + 4 - c->in));
	return RS_OK;
}

/* Hand body bytes on: to the stream callback, or into the capped buffer. */
static void
deliver(conn *c, const char *buf, size_t n)
{
	http_resp *r = c->r;
	char *p;

	if (n == 0 || c->stop)
		return;
	if (c->q->on_data != NULL) {
		if (c->q->on_data(c->q->ud, buf, n) != 0)
			c->stop = 1;
		return;
	}
	if (r->body_len + n > c->q->max_body) {
		r->too_large = 1;
		c->stop = 1;
		return;
	}
	if ((p = realloc(r->body, r->body_len + n + 1)) == NULL) {
		c->stop = 1;
		return;
	}
	r->body = p;
	memcpy(r->body + r->body_len, buf, n);
	r->body_len += n;
	r->body[r->body_len] = '\0';
}

/* Decode what c->in holds of a chunked body. */
static rs_status
dechunk(conn *c)
{
	char *eol;
	size_t take;
	long long size;

	for (;;) {
		switch (c->cs) {
		case C_SIZE:
		case C_TRAILER:
			if ((eol = strstr(c->in, "\r\n")) == NULL)
				return RS_OK;
			*eol = '\0';
			if (c->cs == C_TRAILER) {
				if (eol == c->in)
					c->cs = C_DONE;
			} else {
				if (sscanf(c->in, "%llx", &size) != 1 || size < 0)
					return failf(c, RS_EIO, "malformed chunk size%s", "");
				c->remaining = size;
				c->cs = size == 0 ? C_TRAILER : C_DATA;
			}
			consume(c, (size_t)(eol + 2 - c->in));
			break;
		case C_DATA:
			take = c->inlen < (size_t)c->remaining ? c->inlen : (size_t)c->remaining;
			if (take == 0)
				return RS_OK;
			deliver(c, c->in, take);
			consume(c, take);
			if ((c->remaining -= (int64_t)take) == 0)
				c->cs = C_CRLF;
			break;
		case C_CRLF:
			if (c->inlen < 2)
				return RS_OK;
			consume(c, 2);
			c->cs = C_SIZE;
			break;
		case C_DONE:
			return RS_OK;
		}
	}
}

static int
body_done(const conn *c)
{
	return c->stop || (c->mode == B_CHUNKED && c->cs == C_DONE) ||
	       (c->mode == B_LENGTH && c->remaining == 0) || c->mode == B_NONE;
}

static rs_status
read_body(conn *c)
{
	const char *te = json_string_value(json_object_get(c->r->headers, "transfer-encoding"));
	const char *cl = json_string_value(json_object_get(c->r->headers, "content-length"));
	rs_status st = RS_OK;
	size_t take;
	int got;

	if (strcmp(c->q->method, "HEAD") == 0 || c->r->status == 204 || c->r->status == 304)
		c->mode = B_NONE;
	else if (te != NULL && strcasestr(te, "chunked") != NULL)
		c->mode = B_CHUNKED;
	else if (cl != NULL && rs_parse_int(cl, 0, INT64_MAX, &c->remaining) == RS_OK)
		c->mode = B_LENGTH;
	else
		c->mode = B_CLOSE;
	for (;;) {
		if (c->mode == B_CHUNKED) {
			if ((st = dechunk(c)) != RS_OK)
				return st;
		} else if (c->mode != B_NONE && c->inlen > 0) {
			take = c->mode == B_LENGTH && (size_t)c->remaining < c->inlen ?
			       (size_t)c->remaining : c->inlen;
			deliver(c, c->in, take);
			consume(c, take);
			if (c->mode == B_LENGTH)
				c->remaining -= (int64_t)take;
		}
		if (body_done(c))
			return RS_OK;
		if ((got = read_more(c, &st)) < 0)
			return st;
		if (got == 0)
			return c->mode == B_CLOSE ? RS_OK
			                          : failf(c, RS_EIO, "connection closed mid-body%s", "");
	}
}

rs_status
http_do(const http_req *q, http_resp *r, char *err, size_t cap)
{
	conn c;
	char host[256], port[16];
	const char *path;
	rs_status st;

	memset(r, 0, sizeof(*r));
	memset(&c, 0, sizeof(c));
	c.fd = -1;
	c.q = q;
	c.r = r;
	c.err = err;
	c.cap = cap;
	st = parse_url(q->url, host, sizeof(host), port, sizeof(port), &path);
	if (st == RS_ENOTFOUND)
		return failf(&c, RS_EINVAL, "https is not supported by this executor build%s", "");
	if (st != RS_OK)
		return failf(&c, RS_EINVAL, "malformed URL %s", q->url);
	if ((r->headers = json_object()) == NULL)
		return RS_ENOMEM;
	if ((st = dial(&c, host, port)) != RS_OK ||
	    (st = send_request(&c, host, port, path)) != RS_OK ||
	    (st = read_head(&c)) != RS_OK)
		goto cleanup;
	st = read_body(&c);
cleanup:
	if (c.fd >= 0)
		close(c.fd);
	free(c.in);
	return st;
}

void
http_resp_free(http_resp *r)
{
	json_decref(r->headers);
	free(r->body);
	memset(r, 0, sizeof(*r));
}

int64_t
http_retry_after_ms(const http_resp *r)
{
	const char *v = json_string_value(json_object_get(r->headers, "retry-after"));
	int64_t s;

	if (v == NULL || rs_parse_int(v, 0, 86400, &s) != RS_OK)
		return 0;
	return s * 1000;
}
