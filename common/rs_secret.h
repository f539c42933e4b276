/*
 * rs_secret.h - per-tenant secrets: sealing values at rest and the KV
 * bucket `secrets` that holds them.
 *
 * A secret is a value a tenant stores once (PUT /v1/secrets/{name},
 * `runctl secrets set`) and its agents name (model.api_key_secret,
 * hmac.secret, "{{secrets.NAME}}" in http header values). Only the
 * executor ever reads a value back, for the run's own tenant, at call
 * time; the API lists names and update times only.
 *
 * At rest: KV key "<tenant>.<name>", value
 *     0x01 | nonce (12 bytes, random) | ciphertext | tag (16 bytes)
 * AES-256-GCM under RS_SECRETS_KEY (64 hex characters), with the KV key
 * itself as associated data: a ciphertext copied under another name or
 * another tenant's key does not open. Whoever can read the bucket sees
 * names and lengths, never values.
 *
 * Names: [A-Za-z0-9_-]{1,64}. Values: 1..RS_SECRET_VALUE_MAX bytes without
 * NUL, CR or LF (they end up in HTTP headers).
 *
 * Plain values handed out by this module are malloc'd and must be released
 * with rs_secret_free, which wipes them first.
 */
#ifndef RS_SECRET_H
#define RS_SECRET_H

#include <jansson.h>
#include <nats/nats.h>
#include <stddef.h>

#include "rs_status.h"

#define RS_SECRET_NAME_MAX  64
#define RS_SECRET_VALUE_MAX 8192
#define RS_SECRET_KEY_LEN   32
#define RS_SECRET_BUCKET    "secrets"
#define RS_SECRET_KEY_ENV   "RS_SECRETS_KEY"
/* "<tenant>.<name>": tenant <= 64, name <= 64. */
#define RS_SECRET_KVKEY_MAX 136

typedef struct {
	unsigned char k[RS_SECRET_KEY_LEN];
} rs_secret_key;

/* 1 if name is a valid secret name. */
int rs_secret_name_ok(const char *name);

/* 1 if value (len bytes) may be stored; else 0 and why says what is wrong. */
int rs_secret_value_ok(const char *value, size_t len, const char **why);

/* Parse 64 hex characters. RS_EINVAL with a message otherwise. */
rs_status rs_secret_key_parse(const char *hex, rs_secret_key *out, char *err, size_t cap);

/* The key from RS_SECRETS_KEY. RS_ENOTFOUND when unset, RS_EINVAL when
 * malformed (err says which). */
rs_status rs_secret_key_from_env(rs_secret_key *out, char *err, size_t cap);

/* Wipe a key (before it goes out of scope). */
void rs_secret_key_wipe(rs_secret_key *k);

/* "<tenant>.<name>" into out (cap >= RS_SECRET_KVKEY_MAX). RS_EINVAL if
 * tenant is not a subject token [a-z0-9_-]{1,64} or name not valid. */
rs_status rs_secret_kvkey(const char *tenant, const char *name, char *out, size_t cap);

/* Seal value under key, bound to kvkey. *out (malloc'd, *outlen bytes) is
 * owned by the caller. */
rs_status rs_secret_seal(const rs_secret_key *key, const char *kvkey, const char *value,
                         size_t len, unsigned char **out, size_t *outlen);

/* Open a sealed blob bound to kvkey. RS_EINVAL if it is malformed, was
 * sealed under another key or another kvkey, or was altered. *value is
 * NUL-terminated, *len bytes, release with rs_secret_free. */
rs_status rs_secret_open(const rs_secret_key *key, const char *kvkey, const void *blob,
                         size_t bloblen, char **value, size_t *len);

/* Wipe and free a plain value (NULL is fine). */
void rs_secret_free(char *value);

/* --- the KV bucket (callers hold the kvStore of RS_SECRET_BUCKET) --- */

/* Store (seal) a value. *created: 1 if the name was new. */
rs_status rs_secret_put(kvStore *kv, const rs_secret_key *key, const char *tenant,
                        const char *name, const char *value, size_t len, int *created);

/* Read and open a value: RS_ENOTFOUND if there is none, RS_EINVAL if it
 * does not open, RS_EUNAVAIL if the bucket cannot be read. */
rs_status rs_secret_get(kvStore *kv, const rs_secret_key *key, const char *tenant,
                        const char *name, char **value, size_t *len);

/* Remove a value (purged: no ciphertext is kept). RS_ENOTFOUND if none. */
rs_status rs_secret_delete(kvStore *kv, const char *tenant, const char *name);

/* The tenant's secrets: *out = [{"name", "updated_at"}] sorted by name
 * (a new reference). Values are not read. js is the context kv came from
 * (a tenant without secrets is answered from stream info: a KV watcher
 * with nothing to deliver only ends at its timeout on nats.c 3.4). */
rs_status rs_secret_list(jsCtx *js, kvStore *kv, const char *tenant, json_t **out);

#endif
