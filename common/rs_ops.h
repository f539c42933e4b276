/*
 * rs_ops.h - the operational endpoints every service exposes:
 *   GET /healthz  200 {"status":"ok"} while the process is alive
 *   GET /readyz   200 {"status":"ready"} or 503 {"status":"not ready","reason":...}
 *   GET /metrics  Prometheus text exposition (rs_metrics_render)
 *
 * rs_ops_route() is the pure part (unit-tested). Services with their own
 * libwebsockets HTTP server (api, tool-router) call rs_ops_lws_respond()
 * from their HTTP callback; the others start rs_ops_server, a small lws
 * context on its own thread.
 */
#ifndef RS_OPS_H
#define RS_OPS_H

#include <stddef.h>
#include "rs_status.h"

struct lws;

/* Readiness probe: return 1 when ready, else 0 and a reason in why. Called
 * from the ops thread: must be thread-safe and quick (no blocking I/O). */
typedef int (*rs_ready_fn)(void *arg, char *why, size_t cap);

typedef struct {
	const char *service;
	rs_ready_fn ready; /* NULL: always ready */
	void *arg;
} rs_ops;

/* If path is an ops path, fill *body (malloc'd, caller frees), *len and
 * *ctype and return the HTTP status; return 0 if path is not ours. */
int rs_ops_route(const rs_ops *ops, const char *path, char **body, size_t *len,
                 const char **ctype);

/* Answer an ops request on wsi completely (headers, body, transaction end).
 * Returns 1 if path is not an ops path (caller continues), else the lws
 * callback return value (0 keep-alive, -1 close). */
int rs_ops_lws_respond(struct lws *wsi, const rs_ops *ops, const char *path);

/* Write a complete small HTTP response (status, content type, body) on wsi
 * from an LWS_CALLBACK_HTTP* callback. Returns the lws callback value. */
int rs_http_respond(struct lws *wsi, int status, const char *ctype,
                    const char *body, size_t len);

typedef struct rs_ops_server rs_ops_server;

/* Start a server for the ops endpoints on addr:port in its own thread.
 * ops must outlive the server. *out owned by caller: rs_ops_server_stop. */
rs_status rs_ops_server_start(rs_ops_server **out, const char *addr, int port,
                              const rs_ops *ops);
void rs_ops_server_stop(rs_ops_server *s);

#endif
