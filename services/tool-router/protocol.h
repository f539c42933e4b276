/*
 * protocol.h - the public device protocol (docs/devices.md), as pure
 * functions: parse and validate frames a device sends, build the frames the
 * router sends. No I/O, no globals: unit-tested in tests/unit/router.
 */
#ifndef RS_ROUTER_PROTOCOL_H
#define RS_ROUTER_PROTOCOL_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "rs_cmd.h"
#include "rs_status.h"

#define RS_ROUTER_MAX_TOOLS 256
#define RS_ROUTER_MAX_TOKEN 256
#define RS_ROUTER_MAX_CALLID 128
#define RS_ROUTER_MAX_TOOLNAME 128

typedef enum { RS_FRAME_HELLO = 1, RS_FRAME_RESULT } rs_router_frame_type;

/* A parsed device frame. Strings and JSON values are borrowed from root,
 * which the frame owns: rs_router_frame_free releases everything. */
typedef struct {
	rs_router_frame_type type;
	json_t *root;
	/* hello */
	const char *device_id, *token;
	json_t *tools;        /* array (possibly empty), validated */
	/* tool.result */
	const char *call_id;
	json_t *output;       /* exactly one of output / error */
	json_t *error;        /* {code, message, retryable?} */
} rs_router_frame;

/* Parse one text frame. On failure returns RS_EINVAL and writes a protocol
 * error code ("malformed_json", "invalid_frame", "unknown_type") into code
 * and a message naming the problem ("tool.result: call_id: missing") into
 * msg. *f is zeroed on failure. */
rs_status rs_router_frame_parse(const char *buf, size_t len, rs_router_frame *f,
                                char *code, size_t codecap, char *msg, size_t msgcap);
void rs_router_frame_free(rs_router_frame *f);

/* Frame builders: malloc'd compact JSON (caller frees), NULL on ENOMEM. */
char *rs_router_frame_welcome(const char *device_id, const char *tenant, int heartbeat_s);
char *rs_router_frame_error(const char *code, const char *message);
char *rs_router_frame_call(const rs_toolcall *tc);
char *rs_router_frame_cancel(const char *call_id);

/* Tool names of a validated tools array as a NUL-separated list ending in
 * an empty name ("echo\0fail\0\0"); malloc'd, caller frees. */
char *rs_router_tool_names(const json_t *tools);
/* 1 if names (as above) contains tool. */
int rs_router_has_tool(const char *names, const char *tool);

#endif
