/* rs_ops.c - /healthz, /readyz, /metrics (see rs_ops.h). */
#include "rs_ops.h"
#include "rs_log.h"
#include "rs_metrics.h"

#include <libwebsockets.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int
rs_ops_route(const rs_ops *ops, const char *path, char **body, size_t *len,
             const char **ctype)
{
	char why[256] = "";
	char *b;

	if (strcmp(path, "/metrics") == 0) {
		*body = rs_metrics_render(len);
		*ctype = "text/plain; version=0.0.4; charset=utf-8";
		return 200;
	}
	if (strcmp(path, "/healthz") != 0 && strcmp(path, "/readyz") != 0)
		return 0;
	*ctype = "application/json";
	b = malloc(512);
	if (b == NULL)
		return 500;
	if (strcmp(path, "/healthz") == 0) {
		snprintf(b, 512, "{\"service\":\"%s\",\"status\":\"ok\"}", ops->service);
		*body = b;
		*len = strlen(b);
		return 200;
	}
	if (ops->ready == NULL || ops->ready(ops->arg, why, sizeof(why))) {
		snprintf(b, 512, "{\"service\":\"%s\",\"status\":\"ready\"}", ops->service);
		*body = b;
		*len = strlen(b);
		return 200;
	}
	{
		char esc[300];
		rs_log_escape(esc, sizeof(esc), why);
		snprintf(b, 512, "{\"service\":\"%s\",\"status\":\"not ready\",\"reason\":\"%s\"}",
		         ops->service, esc);
	}
	*body = b;
	*len = strlen(b);
	return 503;
}

/*
 * One whole response. close: say `Connection: close`. The dedicated ops
 * port does: a probe or a scrape comes every few seconds, and a client
 * that keeps the connection for the next one races the server's idle
 * close (measured: "other side closed" on a reused socket, seconds later,
 * under load). Ports that also serve the API keep connections alive.
 */
static int
respond(struct lws *wsi, int status, const char *ctype, const char *body, size_t len,
        int close)
{
	size_t hdrcap = LWS_PRE + 1024;
	unsigned char *buf = malloc(hdrcap + len), *start, *p, *end;
	int rc = -1;

	if (buf == NULL)
		return -1;
	start = p = buf + LWS_PRE;
	end = buf + LWS_PRE + 1024 - 1;
	if (lws_add_http_common_headers(wsi, (unsigned int)status, ctype, (lws_filepos_t)len,
	                                &p, end))
		goto cleanup;
	if (close && lws_add_http_header_by_token(wsi, WSI_TOKEN_CONNECTION,
	                                          (const unsigned char *)"close", 5, &p, end))
		goto cleanup;
	if (lws_finalize_http_header(wsi, &p, end))
		goto cleanup;
	memcpy(p, body, len);
	p += len;
	/* Headers and body in one write; lws buffers what the socket refuses. */
	if (lws_write(wsi, start, (size_t)(p - start), LWS_WRITE_HTTP_FINAL) < 0)
		goto cleanup;
	rc = lws_http_transaction_completed(wsi) ? -1 : 0;
cleanup:
	free(buf);
	return rc;
}

int
rs_http_respond(struct lws *wsi, int status, const char *ctype, const char *body,
                size_t len)
{
	return respond(wsi, status, ctype, body, len, 0);
}

/* rs_ops_lws_respond, with or without Connection: close. */
static int
ops_respond(struct lws *wsi, const rs_ops *ops, const char *path, int close)
{
	char *body = NULL;
	size_t len = 0;
	const char *ctype = NULL;
	int status, rc;

	status = rs_ops_route(ops, path, &body, &len, &ctype);
	if (status == 0)
		return 1;
	if (body == NULL)
		return -1;
	rc = respond(wsi, status, ctype, body, len, close);
	free(body);
	return rc;
}

int
rs_ops_lws_respond(struct lws *wsi, const rs_ops *ops, const char *path)
{
	return ops_respond(wsi, ops, path, 0);
}

struct rs_ops_server {
	struct lws_context *ctx;
	pthread_t thread;
	atomic_int stop;
	const rs_ops *ops;
	char addr[64];
	int port;
	atomic_int started; /* 1 ok, -1 failed */
};

static int
ops_http_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
            size_t len)
{
	rs_ops_server *s;
	char path[128];

	if (reason != LWS_CALLBACK_HTTP)
		return lws_callback_http_dummy(wsi, reason, user, in, len);
	s = lws_context_user(lws_get_context(wsi));
	snprintf(path, sizeof(path), "%s", (const char *)in);
	if (ops_respond(wsi, s->ops, path, 1) == 1) {
		static const char nf[] = "{\"title\":\"not found\",\"status\":404}";
		return respond(wsi, 404, "application/problem+json", nf, sizeof(nf) - 1, 1);
	}
	return 0;
}

static const struct lws_protocols ops_protocols[] = {
	{ "http", ops_http_cb, 0, 0, 0, NULL, 0 },
	{ NULL, NULL, 0, 0, 0, NULL, 0 }
};

static void *
ops_thread(void *arg)
{
	rs_ops_server *s = arg;
	struct lws_context_creation_info info;

	memset(&info, 0, sizeof(info));
	info.port = s->port;
	info.iface = s->addr;
	info.protocols = ops_protocols;
	info.user = s;
	info.options = LWS_SERVER_OPTION_DISABLE_IPV6;
	s->ctx = lws_create_context(&info);
	if (s->ctx == NULL) {
		atomic_store(&s->started, -1);
		return NULL;
	}
	atomic_store(&s->started, 1);
	while (!atomic_load(&s->stop))
		if (lws_service(s->ctx, 0) < 0)
			break;
	lws_context_destroy(s->ctx);
	return NULL;
}

rs_status
rs_ops_server_start(rs_ops_server **out, const char *addr, int port, const rs_ops *ops)
{
	rs_ops_server *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return RS_ENOMEM;
	s->ops = ops;
	s->port = port;
	snprintf(s->addr, sizeof(s->addr), "%s", addr);
	lws_set_log_level(LLL_ERR, NULL);
	if (pthread_create(&s->thread, NULL, ops_thread, s) != 0) {
		free(s);
		return RS_ERR;
	}
	while (atomic_load(&s->started) == 0)
		usleep(1000);
	if (atomic_load(&s->started) < 0) {
		pthread_join(s->thread, NULL);
		free(s);
		rs_error("ops: cannot listen on %s:%d", addr, port);
		return RS_EIO;
	}
	rs_info("ops endpoints on http://%s:%d (/healthz /readyz /metrics)", addr, port);
	*out = s;
	return RS_OK;
}

void
rs_ops_server_stop(rs_ops_server *s)
{
	if (s == NULL)
		return;
	atomic_store(&s->stop, 1);
	lws_cancel_service(s->ctx);
	pthread_join(s->thread, NULL);
	free(s);
}
