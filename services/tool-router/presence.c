/*
 * presence.c - KV `presence`: <tenant>.<device_id> -> {router, tools,
 * connected_at, conn}. The bucket's TTL (45 s) is the failure detector: a
 * crashed router stops refreshing and its devices go offline by themselves.
 * We refresh every 15 s and delete on disconnect.
 *
 * The delete is conditional: only if the record still names this
 * connection. A device that reconnected (here or to another router) before
 * its old connection's close was noticed must stay online.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "router.h"
#include "rs_json.h"
#include "rs_log.h"
#include "rs_time.h"

typedef struct {
	rs_router_job j;
	char *key, *value, *tag;
	char data[];
} presence_job;

static presence_job *
job_new(rs_router_job_fn fn, const char *key, const char *value, const char *tag)
{
	size_t kl = strlen(key), vl = strlen(value), tl = strlen(tag);
	presence_job *j = malloc(sizeof(*j) + kl + vl + tl + 3);

	if (j == NULL)
		return NULL;
	j->j.fn = fn;
	j->key = j->data;
	j->value = j->key + kl + 1;
	j->tag = j->value + vl + 1;
	memcpy(j->key, key, kl + 1);
	memcpy(j->value, value, vl + 1);
	memcpy(j->tag, tag, tl + 1);
	return j;
}

static void
put_work(rs_router *r, rs_router_job *jj)
{
	presence_job *j = (presence_job *)jj;

	if (kvStore_PutString(NULL, r->kv_presence, j->key, j->value) != NATS_OK) {
		rs_warn("router: presence put %s failed: %s", j->key, nats_GetLastError(NULL));
	}
	free(j);
}

static void
del_work(rs_router *r, rs_router_job *jj)
{
	presence_job *j = (presence_job *)jj;
	kvEntry *e = NULL;
	json_t *v = NULL;
	char err[128];

	if (kvStore_Get(&e, r->kv_presence, j->key) == NATS_OK &&
	    rs_json_parse(kvEntry_Value(e), (size_t)kvEntry_ValueLen(e), &v, err, sizeof(err)) == RS_OK &&
	    json_is_string(json_object_get(v, "conn")) &&
	    strcmp(json_string_value(json_object_get(v, "conn")), j->tag) == 0)
		kvStore_Delete(r->kv_presence, j->key);
	json_decref(v);
	kvEntry_Destroy(e);
	free(j);
}

static void
conn_tag(rs_router *r, uint64_t conn_id, char *buf, size_t cap)
{
	snprintf(buf, cap, "%s/%llu", r->instance, (unsigned long long)conn_id);
}

void
rs_router_presence_put(rs_router *r, const rs_router_device *d, uint64_t conn_id)
{
	char tag[160], at[40], esc[160];
	char *value;
	size_t cap;
	presence_job *j;

	conn_tag(r, conn_id, tag, sizeof(tag));
	rs_time_rfc3339(d->connected_at, at, sizeof(at));
	rs_log_escape(esc, sizeof(esc), r->instance);
	/* Built by hand: the tools array is already canonical JSON. */
	cap = strlen(d->tools) + strlen(esc) + strlen(tag) + 160;
	value = malloc(cap);
	if (value == NULL)
		return;
	snprintf(value, cap, "{\"conn\":\"%s\",\"connected_at\":\"%s\",\"router\":\"%s\",\"tools\":%s}",
	         tag, at, esc, d->tools);
	j = job_new(put_work, d->key, value, tag);
	free(value);
	if (j != NULL)
		rs_router_work(r, d->key, &j->j);
}

void
rs_router_presence_del(rs_router *r, const rs_router_device *d, uint64_t conn_id)
{
	char tag[160];
	presence_job *j;

	conn_tag(r, conn_id, tag, sizeof(tag));
	j = job_new(del_work, d->key, "", tag);
	if (j != NULL)
		rs_router_work(r, d->key, &j->j);
}

void
rs_router_presence_refresh(rs_router *r)
{
	rs_map_ent *e;
	size_t i;

	for (i = 0, e = NULL; (e = rs_map_next(&r->devices, &i, e)) != NULL;) {
		rs_router_conn *c = e->val;

		if (c->dev != NULL && c->state == RS_CONN_READY)
			rs_router_presence_put(r, c->dev, c->id);
	}
}
