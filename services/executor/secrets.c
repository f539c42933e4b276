/*
 * secrets.c - the executor's view of tenant secrets: look a name up for
 * the run's tenant, decrypt it, and substitute "{{secrets.NAME}}"
 * references in header values at call time.
 *
 * Only the tenant of the request's subject (runs.<tenant>.<run>, checked
 * against the event by consumer.c) is ever asked for, so a definition can
 * reach its own tenant's secrets and nothing else: not another tenant's,
 * not the executor's environment. A missing secret is reported by name
 * only ("secret_missing"), the same whether the bucket, the tenant or the
 * name is what is missing.
 *
 * Cache: decrypted values are kept for RS_EXECUTOR_SECRET_TTL_MS (30 s)
 * in a fixed table of SECRET_SLOTS entries (a collision evicts), so a busy
 * model step does not cost a KV read and a decryption per turn, and a
 * replaced or deleted secret stops being used within the TTL. Values are
 * wiped when evicted. Nothing here logs a value.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "executor.h"
#include "rs_mem.h"
#include "rs_hash.h"
#include "rs_log.h"
#include "rs_secret.h"
#include "rs_time.h"

#define SECRET_SLOTS 1024

typedef struct {
	char key[RS_SECRET_KVKEY_MAX];   /* "<tenant>.<name>", "" if empty */
	char *value;
	size_t len;
	int64_t expires_ms;
} slot;

struct secrets {
	kvStore *kv;                 /* NULL: no bucket, every lookup is missing */
	rs_secret_key key;
	int have_key;
	int64_t ttl_ms;
	pthread_mutex_t mu;
	slot slots[SECRET_SLOTS];
};

secrets *
rs_exec_secrets_new(jsCtx *js, int64_t ttl_ms)
{
	secrets *s = calloc(1, sizeof(*s));
	char err[160];

	if (s == NULL)
		rs_oom(0);
	pthread_mutex_init(&s->mu, NULL);
	s->ttl_ms = ttl_ms;
	switch (rs_secret_key_from_env(&s->key, err, sizeof(err))) {
	case RS_OK:
		s->have_key = 1;
		break;
	case RS_ENOTFOUND:
		rs_warn("%s: steps that name secrets fail with secret_missing", err);
		break;
	default:
		rs_error("%s", err);
		rs_exec_secrets_free(s);
		return NULL;
	}
	if (js_KeyValue(&s->kv, js, RS_SECRET_BUCKET) != NATS_OK) {
		rs_warn("KV %s not found (run `runctl streams apply`): steps that name secrets "
		        "fail with secret_missing", RS_SECRET_BUCKET);
		s->kv = NULL;
	}
	return s;
}

static void
slot_clear(slot *sl)
{
	rs_secret_free(sl->value);
	memset(sl, 0, sizeof(*sl));
}

void
rs_exec_secrets_free(secrets *s)
{
	if (s == NULL)
		return;
	for (size_t i = 0; i < SECRET_SLOTS; i++)
		slot_clear(&s->slots[i]);
	kvStore_Destroy(s->kv);
	rs_secret_key_wipe(&s->key);
	pthread_mutex_destroy(&s->mu);
	free(s);
}

rs_status
rs_exec_secrets_get(secrets *s, const char *tenant, const char *name, char **value, size_t *len)
{
	char k[RS_SECRET_KVKEY_MAX];
	slot *sl;
	rs_status st;

	*value = NULL;
	*len = 0;
	if (s == NULL || rs_secret_kvkey(tenant, name, k, sizeof(k)) != RS_OK)
		return RS_ENOTFOUND;
	sl = &s->slots[rs_hash_str(k) % SECRET_SLOTS];
	pthread_mutex_lock(&s->mu);
	if (strcmp(sl->key, k) == 0 && sl->expires_ms > rs_mono_ms()) {
		*value = strdup(sl->value);
		*len = sl->len;
	}
	pthread_mutex_unlock(&s->mu);
	if (*value != NULL)
		return RS_OK;
	if (!s->have_key || s->kv == NULL)
		return RS_ENOTFOUND;
	st = rs_secret_get(s->kv, &s->key, tenant, name, value, len);
	if (st == RS_EINVAL) {
		/* Sealed under another key, or moved: as good as missing to the
		 * step, worth an operator's attention (names only). */
		rs_warn("secret %s does not open with %s (other key, or altered): treated as missing",
		        k, RS_SECRET_KEY_ENV);
		return RS_ENOTFOUND;
	}
	if (st != RS_OK)
		return st;
	pthread_mutex_lock(&s->mu);
	slot_clear(sl);
	memcpy(sl->key, k, sizeof(sl->key));
	sl->value = strdup(*value);
	sl->len = *len;
	sl->expires_ms = rs_mono_ms() + s->ttl_ms;
	if (sl->value == NULL)
		rs_oom(0);
	pthread_mutex_unlock(&s->mu);
	return RS_OK;
}

rs_status
rs_exec_secrets_render(secrets *s, const char *tenant, const char *in, char **out,
               char *missing, size_t mcap)
{
	const char *p = in, *open, *close;
	char name[RS_SECRET_NAME_MAX + 1], *v, *buf = NULL;
	size_t n = 0, cap = 0, vlen, need;
	rs_status st = RS_OK;

	*out = NULL;
	missing[0] = '\0';
	while (1) {
		const char *piece = p;
		size_t plen;
		open = strstr(p, "{{secrets.");
		close = open ? strstr(open + 10, "}}") : NULL;
		if (open != NULL && close != NULL && (size_t)(close - open - 10) <= RS_SECRET_NAME_MAX) {
			memcpy(name, open + 10, (size_t)(close - open - 10));
			name[close - open - 10] = '\0';
		} else {
			open = NULL;
		}
		plen = open ? (size_t)(open - piece) : strlen(piece);
		v = NULL;
		vlen = 0;
		if (open != NULL) {
			st = rs_exec_secrets_get(s, tenant, name, &v, &vlen);
			if (st != RS_OK) {
				snprintf(missing, mcap, "%s", name);
				break;
			}
		}
		need = n + plen + vlen + 1;
		if (need > cap) {
			char *nb = malloc(need * 2);
			if (nb == NULL)
				rs_oom(0);
			if (buf != NULL) {
				memcpy(nb, buf, n);
				memset(buf, 0, cap);
				free(buf);
			}
			buf = nb;
			cap = need * 2;
		}
		memcpy(buf + n, piece, plen);
		n += plen;
		if (v != NULL) {
			memcpy(buf + n, v, vlen);
			n += vlen;
			rs_secret_free(v);
		}
		buf[n] = '\0';
		if (open == NULL)
			break;
		p = close + 2;
	}
	if (st != RS_OK) {
		if (buf != NULL) {
			memset(buf, 0, cap);
			free(buf);
		}
		return st;
	}
	*out = buf;
	return RS_OK;
}
