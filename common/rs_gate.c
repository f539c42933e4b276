/*
 * rs_gate.c - the admission gate's entry and its two operations, join and
 * leave (rs_gate.h). Pure: the orchestrator's gate.c reads and writes the
 * KV entries by compare-and-set around these.
 */
#include "rs_gate.h"
#include "rs_json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void
rs_gate_kv_key(const char *tenant, const char *key, char *buf, size_t cap)
{
	char h[65];

	if (key == NULL) {
		snprintf(buf, cap, "%s.tenant", tenant);
		return;
	}
	/* Hashed: a rendered key may hold any characters (KV keys may not). */
	rs_sha256_hex(key, strlen(key), h);
	snprintf(buf, cap, "%s.k.%.32s", tenant, h);
}

static int
ids_ok(json_t *a)
{
	size_t i;
	json_t *v;

	if (!json_is_array(a))
		return 0;
	json_array_foreach(a, i, v)
		if (!json_is_string(v))
			return 0;
	return 1;
}

rs_status
rs_gate_parse(const char *buf, size_t len, rs_gate *g)
{
	json_t *v = NULL;
	char err[128];

	memset(g, 0, sizeof(*g));
	if (buf == NULL || len == 0) {
		g->running = json_array();
		g->queue = json_array();
		return RS_OK;
	}
	if (rs_json_parse(buf, len, &v, err, sizeof(err)) != RS_OK)
		return RS_EINVAL;
	if (!json_is_object(v) || !json_is_integer(json_object_get(v, "limit")) ||
	    !ids_ok(json_object_get(v, "running")) || !ids_ok(json_object_get(v, "queue"))) {
		json_decref(v);
		return RS_EINVAL;
	}
	g->limit = (int64_t)json_integer_value(json_object_get(v, "limit"));
	g->running = json_incref(json_object_get(v, "running"));
	g->queue = json_incref(json_object_get(v, "queue"));
	json_decref(v);
	return RS_OK;
}

char *
rs_gate_dump(const rs_gate *g)
{
	json_t *v = json_pack("{s:I, s:O, s:O}", "limit", (json_int_t)g->limit, "running",
	                      g->running, "queue", g->queue);
	char *s = rs_json_dump(v);

	json_decref(v);
	return s;
}

void
rs_gate_free(rs_gate *g)
{
	json_decref(g->running);
	json_decref(g->queue);
	memset(g, 0, sizeof(*g));
}

static long
index_of(json_t *a, const char *id)
{
	size_t i;
	json_t *v;

	json_array_foreach(a, i, v)
		if (strcmp(json_string_value(v), id) == 0)
			return (long)i;
	return -1;
}

rs_gate_result
rs_gate_join(rs_gate *g, int64_t limit, const char *run_id, int *changed)
{
	*changed = 0;
	if (g->limit != limit) {
		g->limit = limit;
		*changed = 1;
	}
	if (index_of(g->running, run_id) >= 0)
		return RS_GATE_ADMITTED;
	if (index_of(g->queue, run_id) >= 0)
		return RS_GATE_QUEUED;
	if (json_array_size(g->running) + json_array_size(g->queue) >= RS_GATE_MAX_IDS)
		return RS_GATE_FULL;
	*changed = 1;
	if ((int64_t)json_array_size(g->running) < limit && json_array_size(g->queue) == 0) {
		json_array_append_new(g->running, json_string(run_id));
		return RS_GATE_ADMITTED;
	}
	json_array_append_new(g->queue, json_string(run_id));
	return RS_GATE_QUEUED;
}

int
rs_gate_leave(rs_gate *g, int64_t limit, const char *run_id, json_t *promoted, int *changed)
{
	long i;
	int found = 0;

	*changed = 0;
	if (limit > 0 && g->limit != limit) {
		g->limit = limit;
		*changed = 1;
	}
	if ((i = index_of(g->running, run_id)) >= 0) {
		json_array_remove(g->running, (size_t)i);
		found = 1;
	} else if ((i = index_of(g->queue, run_id)) >= 0) {
		json_array_remove(g->queue, (size_t)i);
		found = 1;
	}
	while ((int64_t)json_array_size(g->running) < g->limit && json_array_size(g->queue) > 0) {
		json_t *head = json_incref(json_array_get(g->queue, 0));
		json_array_remove(g->queue, 0);
		json_array_append(g->running, head);
		json_array_append_new(promoted, head);
		*changed = 1;
	}
	if (found)
		*changed = 1;
	return found;
}

int64_t
rs_gate_position(const rs_gate *g, const char *run_id)
{
	long i;

	if (index_of(g->running, run_id) >= 0)
		return 0;
	if ((i = index_of(g->queue, run_id)) >= 0)
		return (int64_t)i + 1;
	return -1;
}
