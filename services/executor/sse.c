/*
 * sse.c - the parser of a streaming Chat Completions response: server-sent
 * events whose "data:" lines carry chunks
 *     {"choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}]}
 *     {"choices":[{"delta":{"tool_calls":[{"index":0,"id":"c1","type":"function",
 *                  "function":{"name":"get","arguments":"{\"a\""}}]}}]}
 *     {"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2}}
 * and end with "data: [DONE]". Text deltas are appended; tool calls are
 * accumulated by their index (id and name arrive once, arguments in
 * pieces). Pure: bytes in, message out; llm.c does the I/O.
 *
 * Bounded (sse.h): a line longer than max_line, a message (text plus tool
 * call ids, names and arguments) larger than max_message, or more than
 * max_tool_calls calls stop the parse with SSE_TOO_LARGE. Pieces are
 * appended to growable buffers (doubling), never re-copied per chunk: a
 * model that sends arguments one byte per chunk costs linear time.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rs_json.h"
#include "rs_mem.h"
#include "sse.h"

typedef struct {
	char *p;
	size_t len, cap;
} buf;

typedef struct {
	buf id, name, args;
} call;

struct sse_acc {
	sse_limits lim;
	buf line;                 /* partial line */
	buf text;                 /* all content so far */
	size_t taken;             /* text handed out as deltas */
	call *calls;
	size_t ncalls;
	size_t msg_bytes;         /* text + call strings: checked against max_message */
	json_t *usage;
	char *finish;
	int done;
	int err;                  /* SSE_MALFORMED / SSE_TOO_LARGE, sticky */
	char why[160];
};

static void *
xrealloc(void *p, size_t n)
{
	if ((p = realloc(p, n)) == NULL)
		rs_oom(0);
	return p;
}

static void
buf_add(buf *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 64;
		while (cap < b->len + n + 1)
			cap *= 2;
		b->p = xrealloc(b->p, cap);
		b->cap = cap;
	}
	if (n > 0)
		memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static int
fail(sse_acc *a, int err, const char *why)
{
	if (a->err == 0) {
		a->err = err;
		snprintf(a->why, sizeof(a->why), "%s", why);
	}
	return a->err;
}

sse_acc *
rs_exec_sse_acc_new(const sse_limits *lim)
{
	sse_acc *a = calloc(1, sizeof(*a));

	if (a == NULL)
		rs_oom(0);
	a->lim = *lim;
	return a;
}

void
rs_exec_sse_acc_free(sse_acc *a)
{
	if (a == NULL)
		return;
	free(a->line.p);
	free(a->text.p);
	for (size_t i = 0; i < a->ncalls; i++) {
		free(a->calls[i].id.p);
		free(a->calls[i].name.p);
		free(a->calls[i].args.p);
	}
	free(a->calls);
	json_decref(a->usage);
	free(a->finish);
	free(a);
}

/* Count n more message bytes against the cap. */
static int
charge(sse_acc *a, size_t n)
{
	if (n > a->lim.max_message || a->msg_bytes > a->lim.max_message - n) {
		char why[160];
		snprintf(why, sizeof(why), "the model's message is larger than %zu bytes",
		         a->lim.max_message);
		return fail(a, SSE_TOO_LARGE, why);
	}
	a->msg_bytes += n;
	return 0;
}

static int
add_str(sse_acc *a, buf *b, json_t *piece, int replace)
{
	size_t n;

	if (!json_is_string(piece))
		return 0;
	n = json_string_length(piece);
	if (replace) {
		a->msg_bytes -= b->len;
		b->len = 0;
	}
	if (charge(a, n) != 0)
		return a->err;
	buf_add(b, json_string_value(piece), n);
	return 0;
}

static int
merge_tool_call(sse_acc *a, json_t *tc)
{
	json_t *idx = json_object_get(tc, "index"), *fn;
	size_t i;
	char why[160];

	if (!json_is_object(tc))
		return 0;
	i = json_is_integer(idx) && json_integer_value(idx) >= 0 ?
	    (size_t)json_integer_value(idx) : a->ncalls;
	if (i >= a->lim.max_tool_calls) {
		snprintf(why, sizeof(why), "the model sent more than %zu tool calls",
		         a->lim.max_tool_calls);
		return fail(a, SSE_TOO_LARGE, why);
	}
	if (i >= a->ncalls) {
		a->calls = xrealloc(a->calls, (i + 1) * sizeof(*a->calls));
		memset(a->calls + a->ncalls, 0, (i + 1 - a->ncalls) * sizeof(*a->calls));
		a->ncalls = i + 1;
	}
	fn = json_object_get(tc, "function");
	if (add_str(a, &a->calls[i].id, json_object_get(tc, "id"), 1) != 0 ||
	    add_str(a, &a->calls[i].name, json_object_get(fn, "name"), 0) != 0 ||
	    add_str(a, &a->calls[i].args, json_object_get(fn, "arguments"), 0) != 0)
		return a->err;
	return 0;
}

static int
feed_chunk(sse_acc *a, const char *data, size_t n)
{
	json_t *o = NULL, *choice, *delta, *tcs, *tc, *fin;
	char err[64];
	size_t i;

	if (n == 6 && memcmp(data, "[DONE]", 6) == 0) {
		a->done = 1;
		return SSE_DONE;
	}
	if (rs_json_parse(data, n, &o, err, sizeof(err)) != RS_OK || !json_is_object(o) ||
	    json_object_get(o, "error") != NULL) {
		json_decref(o);
		return fail(a, SSE_MALFORMED, "the model sent a malformed chunk");
	}
	if (json_is_object(json_object_get(o, "usage"))) {
		json_decref(a->usage);
		a->usage = json_incref(json_object_get(o, "usage"));
	}
	choice = json_array_get(json_object_get(o, "choices"), 0);
	delta = json_object_get(choice, "delta");
	if (add_str(a, &a->text, json_object_get(delta, "content"), 0) != 0)
		goto out;
	tcs = json_object_get(delta, "tool_calls");
	json_array_foreach(tcs, i, tc)
		if (merge_tool_call(a, tc) != 0)
			goto out;
	fin = json_object_get(choice, "finish_reason");
	if (json_is_string(fin) && json_string_length(fin) > 0 && json_string_length(fin) < 64) {
		free(a->finish);
		if ((a->finish = strdup(json_string_value(fin))) == NULL)
			rs_oom(0);
	}
out:
	json_decref(o);
	return a->err;
}

/* One complete line (without its end). */
static int
feed_line(sse_acc *a, char *line, size_t n)
{
	if (n > 0 && line[n - 1] == '\r')
		line[--n] = '\0';
	if (n < 5 || memcmp(line, "data:", 5) != 0)
		return SSE_OK;   /* blank separators, comments, event:/id: fields */
	line += 5;
	n -= 5;
	if (n > 0 && *line == ' ') {
		line++;
		n--;
	}
	return feed_chunk(a, line, n);
}

int
rs_exec_sse_acc_feed(sse_acc *a, const char *p, size_t n)
{
	const char *nl;
	size_t k;
	int rc = SSE_OK;
	char why[160];

	if (a->err)
		return a->err;
	while (n > 0 && rc == SSE_OK && !a->done) {
		nl = memchr(p, '\n', n);
		k = nl ? (size_t)(nl - p) : n;
		if (a->line.len + k > a->lim.max_line) {
			snprintf(why, sizeof(why), "a line of the model's stream is longer than %zu "
			         "bytes", a->lim.max_line);
			return fail(a, SSE_TOO_LARGE, why);
		}
		buf_add(&a->line, p, k);
		p += k;
		n -= k;
		if (nl == NULL)
			break;
		p++;
		n--;
		rc = feed_line(a, a->line.p, a->line.len);
		a->line.len = 0;
	}
	return a->done ? SSE_DONE : rc;
}

const char *
rs_exec_sse_acc_error(const sse_acc *a)
{
	return a->why;
}

char *
rs_exec_sse_acc_take_text(sse_acc *a, size_t max, size_t *len)
{
	size_t n = a->text.len - a->taken;
	char *s;

	*len = 0;
	if (n == 0 || max == 0)
		return NULL;
	if (n > max) {
		n = max;
		/* Back up to the start of a UTF-8 character (never split one). */
		while (n > 0 && ((unsigned char)a->text.p[a->taken + n] & 0xc0) == 0x80)
			n--;
		if (n == 0)
			return NULL;
	}
	if ((s = malloc(n + 1)) == NULL)
		rs_oom(0);
	memcpy(s, a->text.p + a->taken, n);
	s[n] = '\0';
	a->taken += n;
	*len = n;
	return s;
}

size_t
rs_exec_sse_acc_pending_text(const sse_acc *a)
{
	return a->text.len - a->taken;
}

json_t *
rs_exec_sse_acc_message(const sse_acc *a)
{
	json_t *m = json_pack("{s:s}", "role", "assistant"), *calls, *c;

	json_object_set_new(m, "content", a->text.len > 0 ? json_stringn(a->text.p, a->text.len)
	                                                  : json_null());
	if (a->ncalls > 0) {
		calls = json_array();
		for (size_t i = 0; i < a->ncalls; i++) {
			const call *k = &a->calls[i];
			c = json_pack("{s:s#, s:s, s:{s:s#, s:s#}}", "id", k->id.p ? k->id.p : "",
			              k->id.len, "type", "function", "function",
			              "name", k->name.p ? k->name.p : "", k->name.len,
			              "arguments", k->args.p ? k->args.p : "", k->args.len);
			json_array_append_new(calls, c ? c : json_null());
		}
		json_object_set_new(m, "tool_calls", calls);
	}
	return m;
}

json_t *
rs_exec_sse_acc_usage(const sse_acc *a)
{
	json_t *u;

	if (!json_is_object(a->usage))
		return NULL;
	/* Only the two counters the contract records. */
	u = json_object();
	if (json_is_integer(json_object_get(a->usage, "prompt_tokens")))
		json_object_set(u, "prompt_tokens", json_object_get(a->usage, "prompt_tokens"));
	if (json_is_integer(json_object_get(a->usage, "completion_tokens")))
		json_object_set(u, "completion_tokens", json_object_get(a->usage, "completion_tokens"));
	return u;
}

const char *
rs_exec_sse_acc_finish(const sse_acc *a)
{
	return a->finish;
}

/* Complete: "[DONE]" seen, or at least a finish_reason (some servers
 * close right after it). Anything less is a cut stream. */
int
rs_exec_sse_acc_done(const sse_acc *a)
{
	return a->done || a->finish != NULL;
}
