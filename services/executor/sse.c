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
 */
#include <stdlib.h>
#include <string.h>

#include "executor.h"
#include "rs_json.h"

#define MAX_LINE (1024 * 1024)

struct sse_acc {
	char *line;               /* partial line */
	size_t linelen;
	char *text;               /* all content so far */
	size_t textlen;
	size_t taken;             /* text handed out as deltas */
	json_t *calls;            /* [{id, type, function: {name, arguments}}] by index */
	json_t *usage;
	char *finish;
	int done;
	int any;                  /* at least one chunk parsed */
};

sse_acc *
sse_acc_new(void)
{
	sse_acc *a = calloc(1, sizeof(*a));

	if (a != NULL && (a->calls = json_array()) == NULL) {
		free(a);
		return NULL;
	}
	return a;
}

void
sse_acc_free(sse_acc *a)
{
	if (a == NULL)
		return;
	free(a->line);
	free(a->text);
	json_decref(a->calls);
	json_decref(a->usage);
	free(a->finish);
	free(a);
}

static int
append_text(sse_acc *a, const char *s, size_t n)
{
	char *p = realloc(a->text, a->textlen + n + 1);

	if (p == NULL)
		return -1;
	a->text = p;
	memcpy(a->text + a->textlen, s, n);
	a->textlen += n;
	a->text[a->textlen] = '\0';
	return 0;
}

/* Concatenate piece onto the string member key of o. */
static void
concat(json_t *o, const char *key, json_t *piece)
{
	const char *old = json_string_value(json_object_get(o, key));
	size_t ol = old ? strlen(old) : 0, pl;
	char *s;

	if (!json_is_string(piece))
		return;
	pl = json_string_length(piece);
	if ((s = malloc(ol + pl + 1)) == NULL)
		return;
	memcpy(s, old ? old : "", ol);
	memcpy(s + ol, json_string_value(piece), pl);
	s[ol + pl] = '\0';
	json_object_set_new(o, key, json_stringn(s, ol + pl));
	free(s);
}

static void
merge_tool_call(sse_acc *a, json_t *tc)
{
	json_t *idx = json_object_get(tc, "index"), *slot, *fn, *sfn;
	size_t i;

	i = json_is_integer(idx) && json_integer_value(idx) >= 0 ?
	    (size_t)json_integer_value(idx) : json_array_size(a->calls);
	if (i > 128)
		return;
	while (json_array_size(a->calls) <= i)
		json_array_append_new(a->calls, json_pack("{s:s, s:s, s:{s:s, s:s}}", "id", "",
		                      "type", "function", "function", "name", "", "arguments", ""));
	slot = json_array_get(a->calls, i);
	if (json_is_string(json_object_get(tc, "id")))
		json_object_set(slot, "id", json_object_get(tc, "id"));
	fn = json_object_get(tc, "function");
	sfn = json_object_get(slot, "function");
	concat(sfn, "name", json_object_get(fn, "name"));
	concat(sfn, "arguments", json_object_get(fn, "arguments"));
}

static int
feed_chunk(sse_acc *a, const char *data, size_t n)
{
	json_t *o = NULL, *choice, *delta, *tcs, *tc, *fin;
	char err[64];
	size_t i;

	if (n == 6 && memcmp(data, "[DONE]", 6) == 0) {
		a->done = 1;
		return 1;
	}
	if (rs_json_parse(data, n, &o, err, sizeof(err)) != RS_OK || !json_is_object(o) ||
	    json_object_get(o, "error") != NULL) {
		json_decref(o);
		return -1;
	}
	a->any = 1;
	if (json_is_object(json_object_get(o, "usage"))) {
		json_decref(a->usage);
		a->usage = json_incref(json_object_get(o, "usage"));
	}
	choice = json_array_get(json_object_get(o, "choices"), 0);
	delta = json_object_get(choice, "delta");
	if (json_is_string(json_object_get(delta, "content")))
		append_text(a, json_string_value(json_object_get(delta, "content")),
		            json_string_length(json_object_get(delta, "content")));
	tcs = json_object_get(delta, "tool_calls");
	json_array_foreach(tcs, i, tc)
		merge_tool_call(a, tc);
	fin = json_object_get(choice, "finish_reason");
	if (json_is_string(fin) && json_string_length(fin) > 0) {
		free(a->finish);
		a->finish = strdup(json_string_value(fin));
	}
	json_decref(o);
	return 0;
}

/* One complete line (without its end). */
static int
feed_line(sse_acc *a, char *line, size_t n)
{
	if (n > 0 && line[n - 1] == '\r')
		line[--n] = '\0';
	if (n < 5 || memcmp(line, "data:", 5) != 0)
		return 0;   /* blank separators, comments, event:/id: fields */
	line += 5;
	n -= 5;
	if (n > 0 && *line == ' ') {
		line++;
		n--;
	}
	return feed_chunk(a, line, n);
}

int
sse_acc_feed(sse_acc *a, const char *buf, size_t n)
{
	const char *nl;
	size_t k;
	char *p;
	int rc = 0;

	while (n > 0 && rc == 0 && !a->done) {
		nl = memchr(buf, '\n', n);
		k = nl ? (size_t)(nl - buf) : n;
		if (a->linelen + k > MAX_LINE)
			return -1;
		if ((p = realloc(a->line, a->linelen + k + 1)) == NULL)
			return -1;
		a->line = p;
		memcpy(a->line + a->linelen, buf, k);
		a->linelen += k;
		a->line[a->linelen] = '\0';
		buf += k;
		n -= k;
		if (nl == NULL)
			break;
		buf++;
		n--;
		rc = feed_line(a, a->line, a->linelen);
		a->linelen = 0;
	}
	return a->done ? 1 : rc;
}

char *
sse_acc_take_text(sse_acc *a, size_t *len)
{
	char *s;

	*len = a->textlen - a->taken;
	if (*len == 0 || (s = malloc(*len + 1)) == NULL)
		return NULL;
	memcpy(s, a->text + a->taken, *len);
	s[*len] = '\0';
	a->taken = a->textlen;
	return s;
}

size_t
sse_acc_pending_text(const sse_acc *a)
{
	return a->textlen - a->taken;
}

json_t *
sse_acc_message(const sse_acc *a)
{
	json_t *m = json_pack("{s:s}", "role", "assistant");

	json_object_set_new(m, "content", a->textlen > 0 ? json_stringn(a->text, a->textlen)
	                                                 : json_null());
	if (json_array_size(a->calls) > 0)
		json_object_set_new(m, "tool_calls", json_deep_copy(a->calls));
	return m;
}

json_t *
sse_acc_usage(const sse_acc *a)
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
sse_acc_finish(const sse_acc *a)
{
	return a->finish;
}

/* Complete: "[DONE]" seen, or at least a finish_reason (some servers
 * close right after it). Anything less is a cut stream. */
int
sse_acc_done(const sse_acc *a)
{
	return a->done || a->finish != NULL;
}
