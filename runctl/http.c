/*
 * http.c - a minimal HTTP/1.1 client for the Runstream API: one request
 * per connection (Connection: close), plain TCP, Content-Length or
 * chunked responses. runctl goes through the API for `runs` so that
 * authentication and idempotency are exactly what clients get.
 */
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "rs_time.h"
#include "runctl.h"

typedef struct {
	char host[256];
	char port[8];
	const char *path;
} http_url;

static rs_status
parse_url(const char *url, http_url *u)
{
	const char *p, *h, *slash, *colon;

	if (strncmp(url, "http://", 7) != 0)
		return RS_EINVAL;
	h = url + 7;
	slash = strchr(h, '/');
	p = slash ? slash : h + strlen(h);
	colon = memchr(h, ':', (size_t)(p - h));
	if ((colon ? colon : p) - h <= 0 || (size_t)((colon ? colon : p) - h) >= sizeof(u->host))
		return RS_EINVAL;
	snprintf(u->host, sizeof(u->host), "%.*s", (int)((colon ? colon : p) - h), h);
	if (colon)
		snprintf(u->port, sizeof(u->port), "%.*s", (int)(p - colon - 1), colon + 1);
	else
		snprintf(u->port, sizeof(u->port), "80");
	u->path = slash ? slash : "/";
	return RS_OK;
}

static rs_status
dial(const http_url *u, int timeout_ms, int *out)
{
	struct addrinfo hints = { 0 }, *res = NULL, *ai;
	int fd = -1;

	hints.ai_socktype = SOCK_STREAM;
	if (getaddrinfo(u->host, u->port, &hints, &res) != 0)
		return RS_EUNAVAIL;
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0)
			continue;
		struct timeval tv = { timeout_ms / 1000, (timeout_ms % 1000) * 1000 };
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0)
		return RS_EUNAVAIL;
	*out = fd;
	return RS_OK;
}

static rs_status
send_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return RS_EIO;
		p += w;
		n -= (size_t)w;
	}
	return RS_OK;
}

/* Decode a chunked body in place; returns its length, or -1. */
static long
unchunk(char *b, size_t n)
{
	size_t in = 0, out = 0;

	for (;;) {
		char *end;
		unsigned long sz = strtoul(b + in, &end, 16);
		char *crlf = strstr(end, "\r\n");
		if (crlf == NULL || crlf >= b + n)
			return -1;
		in = (size_t)(crlf - b) + 2;
		if (sz == 0)
			return (long)out;
		if (in + sz > n)
			return -1;
		memmove(b + out, b + in, sz);
		out += sz;
		in += sz + 2;
	}
}

static rs_status
parse_response(char *buf, size_t n, http_resp *out)
{
	char *body = strstr(buf, "\r\n\r\n"), *line, *save = NULL;
	int chunked = 0;
	long len;

	if (body == NULL || sscanf(buf, "HTTP/1.%*d %d", &out->status) != 1)
		return RS_EIO;
	*body = '\0';
	body += 4;
	for (line = strtok_r(buf, "\r\n", &save); line; line = strtok_r(NULL, "\r\n", &save))
		if (strncasecmp(line, "Transfer-Encoding:", 18) == 0 && strstr(line + 18, "chunked"))
			chunked = 1;
	len = (long)(n - (size_t)(body - buf));
	if (chunked && (len = unchunk(body, (size_t)len)) < 0)
		return RS_EIO;
	if ((out->body = malloc((size_t)len + 1)) == NULL)
		return RS_ENOMEM;
	memcpy(out->body, body, (size_t)len);
	out->body[len] = '\0';
	out->len = (size_t)len;
	return RS_OK;
}

rs_status
rs_ctl_http_request(const char *method, const char *url, const char *const *headers, const char *body,
             size_t blen, int timeout_ms, http_resp *out)
{
	http_url u;
	char head[4096], *buf = NULL, *nb;
	size_t n = 0, cap = 0;
	int fd = -1, off;
	rs_status st;

	memset(out, 0, sizeof(*out));
	if ((st = parse_url(url, &u)) != RS_OK)
		return st;
	if ((st = dial(&u, timeout_ms, &fd)) != RS_OK)
		return st;
	off = snprintf(head, sizeof(head), "%s %s HTTP/1.1\r\nHost: %s:%s\r\nConnection: close\r\n"
	               "User-Agent: runctl\r\nAccept: application/json\r\n", method, u.path, u.host, u.port);
	for (const char *const *h = headers; h && *h && off < (int)sizeof(head); h++)
		off += snprintf(head + off, sizeof(head) - (size_t)off, "%s\r\n", *h);
	if (body != NULL && off < (int)sizeof(head))
		off += snprintf(head + off, sizeof(head) - (size_t)off,
		                "Content-Type: application/json\r\nContent-Length: %zu\r\n", blen);
	if (off + 3 >= (int)sizeof(head)) {
		st = RS_EINVAL;
		goto cleanup;
	}
	off += snprintf(head + off, sizeof(head) - (size_t)off, "\r\n");
	if ((st = send_all(fd, head, (size_t)off)) != RS_OK ||
	    (body && (st = send_all(fd, body, blen)) != RS_OK))
		goto cleanup;
	for (;;) {
		ssize_t r;
		if (n + 4096 + 1 > cap) {
			if ((nb = realloc(buf, cap = cap * 2 + 16384)) == NULL) {
				st = RS_ENOMEM;
				goto cleanup;
			}
			buf = nb;
		}
		r = recv(fd, buf + n, cap - n - 1, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			st = (errno == EAGAIN || errno == EWOULDBLOCK) ? RS_ETIMEOUT : RS_EIO;
			goto cleanup;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	if (buf == NULL) {
		st = RS_EIO;
		goto cleanup;
	}
	buf[n] = '\0';
	st = parse_response(buf, n, out);
cleanup:
	free(buf);
	close(fd);
	return st;
}

void
rs_ctl_http_resp_free(http_resp *r)
{
	free(r->body);
	memset(r, 0, sizeof(*r));
}
