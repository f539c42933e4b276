/*
 * sse.h - the parser of a streamed Chat Completions response (sse.c).
 * Pure (bytes in, message out, no I/O), and bounded: every size it keeps
 * is capped by sse_limits, so a hostile model server costs at most those
 * bytes. Also built alone into the libFuzzer harness tests/fuzz/fuzz_exec_sse.c.
 */
#ifndef EXEC_SSE_H
#define EXEC_SSE_H

#include <jansson.h>
#include <stddef.h>

typedef struct {
	size_t max_line;          /* one SSE line (a "data:" chunk) */
	size_t max_message;       /* text + tool call ids, names and arguments */
	size_t max_tool_calls;    /* tool calls of one message */
} sse_limits;

enum { SSE_DONE = 1, SSE_OK = 0, SSE_MALFORMED = -1, SSE_TOO_LARGE = -2 };

typedef struct sse_acc sse_acc;
/* lim is copied. Aborts when memory runs out. */
sse_acc *rs_exec_sse_acc_new(const sse_limits *lim);
void rs_exec_sse_acc_free(sse_acc *a);
/* Feed bytes of the stream: SSE_DONE after "data: [DONE]", SSE_MALFORMED
 * (a chunk that is not a JSON object, or an "error" chunk), SSE_TOO_LARGE
 * (a limit was hit), else SSE_OK. After an error every later feed returns
 * the same error; rs_exec_sse_acc_error says what. */
int rs_exec_sse_acc_feed(sse_acc *a, const char *buf, size_t n);
const char *rs_exec_sse_acc_error(const sse_acc *a);   /* "" if none */
/* Text received since the last take, at most max bytes (cut on a UTF-8
 * character boundary), malloc'd, *len bytes; NULL if none. */
char *rs_exec_sse_acc_take_text(sse_acc *a, size_t max, size_t *len);
size_t rs_exec_sse_acc_pending_text(const sse_acc *a);
/* The assistant message so far: {role, content, tool_calls?}, usage
 * (or NULL) and finish_reason (or NULL). New references. */
json_t *rs_exec_sse_acc_message(const sse_acc *a);
json_t *rs_exec_sse_acc_usage(const sse_acc *a);
const char *rs_exec_sse_acc_finish(const sse_acc *a);
int rs_exec_sse_acc_done(const sse_acc *a);

#endif
