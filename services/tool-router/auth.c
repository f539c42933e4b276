/*
 * auth.c - device authentication: a hello's token is looked up in KV
 * `devtokens` by sha256hex(token) -> {tenant, device_id}, and the device id
 * it names must be the one in the hello.
 *
 * The look-up runs on a worker (it is a NATS round trip); the connection
 * waits in RS_CONN_AUTH. Positive answers are cached on the service thread
 * for TOKEN_TTL_MS so a fleet reconnecting after a router restart does not
 * hammer the KV. Revocation does not wait for that TTL: revoke.c watches
 * KV devtokens, and a deleted token leaves the cache, and every connection
 * it authenticated is closed (rs_router_auth_revoke). A look-up that read
 * the token just before it was deleted and answers just after is refused
 * too: recently revoked sums are remembered for REVOKED_TTL_MS. Unknown
 * tokens are not cached (a token created a moment ago must work at once).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "router.h"
#include "rs_mem.h"
#include "rs_json.h"
#include "rs_log.h"
#include "rs_time.h"

#define TOKEN_TTL_MS 60000
#define TOKEN_CACHE_MAX 200000
#define REVOKED_TTL_MS 60000
#define CLOSE_REVOKED 4403

typedef struct {
	int64_t expires;
	char tenant[72], device_id[72];
} token_ent;

enum { AUTH_OK = 0, AUTH_UNKNOWN, AUTH_UNAVAILABLE };

typedef struct {
	rs_router_job j;
	uint64_t conn;
	int result;
	char sum[65];
	char tenant[72], tok_device[72];   /* from the KV */
	char device_id[72];                /* from the hello */
	size_t tools_len, names_len;
	char data[];                       /* tools\0 names */
} auth_job;

static void
finish(rs_router *r, auth_job *j, rs_router_conn *c)
{
	if (j->result == AUTH_UNAVAILABLE) {
		rs_metric_inc(r->m.auth_fail);
		rs_router_conn_error(r, c, "unavailable", "cannot verify the token now; retry later", 1011);
		return;
	}
	if (j->result != AUTH_OK || strcmp(j->tok_device, j->device_id) != 0) {
		rs_metric_inc(r->m.auth_fail);
		rs_info("router: conn %llu: hello for device %s refused (%s)", (unsigned long long)c->id,
		        j->device_id, j->result != AUTH_OK ? "unknown token" : "token is for another device");
		rs_router_conn_error(r, c, "unauthorized",
		                     "unknown device token, or the token was issued for another device_id",
		                     4401);
		return;
	}
	rs_metric_inc(r->m.auth_ok);
	rs_router_conn_accept(r, c, j->tenant, j->device_id, j->data, j->data + j->tools_len + 1,
	                      j->names_len);
	if (c->dev != NULL)
		memcpy(c->dev->token, j->sum, sizeof(c->dev->token));
}

/* 1 if sum was revoked less than REVOKED_TTL_MS ago (service thread). */
static int
recently_revoked(rs_router *r, const char *sum)
{
	int64_t *at = rs_map_get(&r->revoked, sum);

	return at != NULL && rs_mono_ms() - *at < REVOKED_TTL_MS;
}

int
rs_router_auth_revoke(rs_router *r, const char *sum)
{
	rs_router_conn *c, *next;
	rs_map_ent *e;
	int64_t *at, now = rs_mono_ms();
	size_t i;
	int closed = 0;

	free(rs_map_take(&r->tokens, sum));
	/* Forget old revocations first: the map stays small. */
	for (i = 0, e = NULL; (e = rs_map_next(&r->revoked, &i, e)) != NULL;) {
		at = e->val;
		if (now - *at >= REVOKED_TTL_MS) {
			char *k = strdup(e->key);
			if (k == NULL)
				rs_oom(0);
			free(rs_map_take(&r->revoked, k));
			free(k);
			i = 0;   /* the map changed: start over (rare, small) */
			e = NULL;
		}
	}
	if ((at = rs_map_get(&r->revoked, sum)) == NULL) {
		if ((at = malloc(sizeof(*at))) == NULL)
			rs_oom(0);
		if (rs_map_put(&r->revoked, sum, at) != RS_OK)
			rs_oom(0);
	}
	*at = now;
	for (c = r->conns; c != NULL; c = next) {
		next = c->next;
		if (c->dev == NULL || c->state != RS_CONN_READY || strcmp(c->dev->token, sum) != 0)
			continue;
		rs_info("router: device %s: its token was revoked, closing conn %llu", c->dev->key,
		        (unsigned long long)c->id);
		rs_router_conn_error(r, c, "revoked", "the device token was revoked", CLOSE_REVOKED);
		closed++;
	}
	return closed;
}

static void
tokens_free(rs_router *r)
{
	rs_map_ent *e;
	size_t i;

	for (i = 0, e = NULL; (e = rs_map_next(&r->tokens, &i, e)) != NULL;)
		free(e->val);
	rs_map_free(&r->tokens);
}

/* Service thread: the worker's answer. */
static void
auth_done(rs_router *r, rs_router_job *jj)
{
	auth_job *j = (auth_job *)jj;
	rs_router_conn *c = rs_router_conn_find(r, j->conn);

	if (j->result == AUTH_OK && recently_revoked(r, j->sum))
		j->result = AUTH_UNKNOWN;   /* read just before its deletion */
	if (j->result == AUTH_OK) {
		token_ent *t = rs_map_get(&r->tokens, j->sum);

		if (t == NULL && r->tokens.n >= TOKEN_CACHE_MAX)
			tokens_free(r);  /* crude bound; refills on demand */
		if (t == NULL && (t = calloc(1, sizeof(*t))) != NULL &&
		    rs_map_put(&r->tokens, j->sum, t) != RS_OK) {
			free(t);
			t = NULL;
		}
		if (t != NULL) {
			t->expires = rs_mono_ms() + TOKEN_TTL_MS;
			snprintf(t->tenant, sizeof(t->tenant), "%s", j->tenant);
			snprintf(t->device_id, sizeof(t->device_id), "%s", j->tok_device);
		}
	}
	if (c != NULL && c->state == RS_CONN_AUTH)
		finish(r, j, c);
	free(j);
}

/* Worker: one KV get. */
static void
auth_lookup(rs_router *r, rs_router_job *jj)
{
	auth_job *j = (auth_job *)jj;
	kvEntry *e = NULL;
	json_t *v = NULL;
	char err[128];
	natsStatus s = kvStore_Get(&e, r->kv_tokens, j->sum);

	if (s == NATS_NOT_FOUND) {
		j->result = AUTH_UNKNOWN;
	} else if (s != NATS_OK) {
		j->result = AUTH_UNAVAILABLE;
	} else if (rs_json_parse(kvEntry_Value(e), (size_t)kvEntry_ValueLen(e), &v, err, sizeof(err)) != RS_OK ||
	           !json_is_string(json_object_get(v, "tenant")) ||
	           !json_is_string(json_object_get(v, "device_id"))) {
		rs_warn("router: malformed devtokens entry %.8s...", j->sum);
		j->result = AUTH_UNKNOWN;
	} else {
		j->result = AUTH_OK;
		snprintf(j->tenant, sizeof(j->tenant), "%s", json_string_value(json_object_get(v, "tenant")));
		snprintf(j->tok_device, sizeof(j->tok_device), "%s",
		         json_string_value(json_object_get(v, "device_id")));
	}
	json_decref(v);
	kvEntry_Destroy(e);
	j->j.fn = auth_done;
	rs_router_post(r, &j->j);
}

void
rs_router_auth_hello(rs_router *r, rs_router_conn *c, const rs_router_frame *f)
{
	char *tools = rs_json_dump(f->tools), *names = rs_router_tool_names(f->tools);
	size_t names_len = 1;
	auth_job *j = NULL;
	token_ent *t;

	if (tools == NULL || names == NULL)
		goto cleanup;
	for (const char *p = names; *p != '\0'; p += strlen(p) + 1)
		names_len += strlen(p) + 1;
	j = calloc(1, sizeof(*j) + strlen(tools) + 1 + names_len);
	if (j == NULL)
		goto cleanup;
	j->conn = c->id;
	rs_sha256_hex(f->token, strlen(f->token), j->sum);
	snprintf(j->device_id, sizeof(j->device_id), "%s", f->device_id);
	j->tools_len = strlen(tools);
	j->names_len = names_len;
	memcpy(j->data, tools, j->tools_len + 1);
	memcpy(j->data + j->tools_len + 1, names, names_len);
	c->state = RS_CONN_AUTH;
	t = rs_map_get(&r->tokens, j->sum);
	if (t != NULL && t->expires > rs_mono_ms()) {
		j->result = AUTH_OK;
		snprintf(j->tenant, sizeof(j->tenant), "%s", t->tenant);
		snprintf(j->tok_device, sizeof(j->tok_device), "%s", t->device_id);
		finish(r, j, c);
		goto cleanup;
	}
	j->j.fn = auth_lookup;
	rs_router_work(r, j->sum, &j->j);
	j = NULL;
cleanup:
	if (tools == NULL || names == NULL)
		rs_router_conn_error(r, c, "internal", "out of memory", 1011);
	free(j);
	free(tools);
	free(names);
}

void
rs_router_auth_free(rs_router *r)
{
	rs_map_ent *e;
	size_t i;

	tokens_free(r);
	for (i = 0, e = NULL; (e = rs_map_next(&r->revoked, &i, e)) != NULL;)
		free(e->val);
	rs_map_free(&r->revoked);
}
