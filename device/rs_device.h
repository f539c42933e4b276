/*
 * rs_device.h - a small C library for Runstream devices: connect to a
 * tool-router over WebSocket (runstream.device.v1, docs/devices.md), say
 * hello with the tools you registered, run tool calls on worker threads,
 * reconnect with exponential backoff and jitter, and de-duplicate calls by
 * call_id (a redelivered call that already finished gets its stored result
 * again; one still running is not started twice; the last 512 are kept).
 * The same semantics as the JavaScript and Python SDKs (sdk/), checked by
 * one conformance test (tests/integration/sdk.test.mjs).
 *
 * Threads: rs_device_run() runs the connection on the calling thread;
 * handlers run on cfg.workers worker threads. rs_device_stop() may be
 * called from any thread or a signal handler.
 *
 * Ownership: rs_device_new copies the config strings; rs_device_free
 * releases everything (call it after rs_device_run returned).
 */
#ifndef RS_DEVICE_H
#define RS_DEVICE_H

#include <jansson.h>
#include <stdint.h>

#include "rs_status.h"

typedef struct rs_device rs_device;

typedef struct {
	const char *url;        /* ws://host:port/v1/devices/connect */
	const char *device_id;  /* [a-z0-9_-]{1,64} */
	const char *token;      /* from `runctl devices token` */
	int workers;            /* handler threads; 0: 4 */
	int backoff_min_ms;     /* first reconnect delay; 0: 100 */
	int backoff_max_ms;     /* cap; 0: 10000 */
	int shutdown_grace_ms;  /* rs_device_stop lets running calls finish this long; 0: 30000 */
} rs_device_config;

/* One tool call as the handler sees it. Borrowed for the handler's
 * duration: copy what you keep. */
typedef struct rs_device_call rs_device_call;
struct rs_device_call {
	const char *call_id, *run_id, *step_id, *tool, *deadline;
	const json_t *args;
	int64_t attempt;
};

typedef struct {
	char code[64];          /* e.g. "tool_error" */
	char message[256];
	int retryable;          /* 1: the orchestrator may retry the step */
} rs_device_error;

/* A tool handler, run on a worker thread. Return 0 with *output set (a new
 * reference; NULL means JSON null), or -1 with err filled in. */
typedef int (*rs_device_tool_fn)(void *arg, const rs_device_call *call, json_t **output,
                                 rs_device_error *err);

rs_status rs_device_new(rs_device **out, const rs_device_config *cfg);
/* Register before rs_device_run. input_schema_json may be NULL. */
rs_status rs_device_add_tool(rs_device *d, const char *name, const char *description,
                             const char *input_schema_json, rs_device_tool_fn fn, void *arg);
/* Connect and serve until rs_device_stop (RS_OK: running calls finished and
 * answered first), or until the router ends the device for good: it refused
 * the token (RS_EINVAL: close 4401) or another connection of the same device
 * replaced this one (RS_ECONFLICT: close 4409). Other closes reconnect. */
rs_status rs_device_run(rs_device *d);
void rs_device_stop(rs_device *d);
/* 1 once the router cancelled this call, its deadline passed, or the
 * device is going away (a fatal close, or rs_device_stop's grace is over):
 * long handlers should poll it and return early. A cancelled call's result
 * is not sent. */
int rs_device_cancelled(const rs_device_call *call);
void rs_device_free(rs_device *d);

#endif
