/*
 * rs_secret.c - AES-256-GCM sealing of tenant secrets and the KV bucket
 * that holds them (see rs_secret.h for the format and why).
 *
 * OpenSSL's EVP interface does the cipher; the nonce is 12 random bytes
 * from RAND_bytes (a key seals far fewer than 2^32 values, so random
 * nonces stay well inside GCM's bound). Plain values never go to the log:
 * errors name the key ("<tenant>.<name>"), never the value.
 */
#include "rs_secret.h"
#include "rs_mem.h"
#include "rs_id.h"
#include "rs_hash.h"
#include "rs_time.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VERSION_BYTE 0x01
#define NONCE_LEN 12
#define TAG_LEN 16
#define OVERHEAD (1 + NONCE_LEN + TAG_LEN)

int
rs_secret_name_ok(const char *name)
{
	size_t n;

	if (name == NULL || (n = strlen(name)) == 0 || n > RS_SECRET_NAME_MAX)
		return 0;
	for (; *name; name++)
		if (!((*name >= 'a' && *name <= 'z') || (*name >= 'A' && *name <= 'Z') ||
		      (*name >= '0' && *name <= '9') || *name == '_' || *name == '-'))
			return 0;
	return 1;
}

int
rs_secret_value_ok(const char *value, size_t len, const char **why)
{
	if (len == 0) {
		*why = "must not be empty";
		return 0;
	}
	if (len > RS_SECRET_VALUE_MAX) {
		*why = "must be at most 8192 bytes";
		return 0;
	}
	for (size_t i = 0; i < len; i++) {
		if (value[i] == '\0' || value[i] == '\r' || value[i] == '\n') {
			*why = "must not contain NUL, CR or LF (secrets are sent in HTTP headers)";
			return 0;
		}
	}
	return 1;
}

rs_status
rs_secret_key_parse(const char *hex, rs_secret_key *out, char *err, size_t cap)
{
	if (hex == NULL || strlen(hex) != 2 * RS_SECRET_KEY_LEN) {
		snprintf(err, cap, "must be %d hex characters (e.g. `openssl rand -hex 32`)",
		         2 * RS_SECRET_KEY_LEN);
		return RS_EINVAL;
	}
	for (int i = 0; i < RS_SECRET_KEY_LEN; i++) {
		int hi = rs_hex_digit(hex[2 * i]), lo = rs_hex_digit(hex[2 * i + 1]);
		if (hi < 0 || lo < 0) {
			rs_secret_key_wipe(out);
			snprintf(err, cap, "must be hex characters only");
			return RS_EINVAL;
		}
		out->k[i] = (unsigned char)(hi << 4 | lo);
	}
	return RS_OK;
}

rs_status
rs_secret_key_from_env(rs_secret_key *out, char *err, size_t cap)
{
	const char *hex = getenv(RS_SECRET_KEY_ENV);
	char why[96];

	if (hex == NULL || *hex == '\0') {
		snprintf(err, cap, "%s is not set", RS_SECRET_KEY_ENV);
		return RS_ENOTFOUND;
	}
	if (rs_secret_key_parse(hex, out, why, sizeof(why)) != RS_OK) {
		snprintf(err, cap, "%s: %s", RS_SECRET_KEY_ENV, why);
		return RS_EINVAL;
	}
	return RS_OK;
}

void
rs_secret_key_wipe(rs_secret_key *k)
{
	OPENSSL_cleanse(k->k, sizeof(k->k));
}

rs_status
rs_secret_kvkey(const char *tenant, const char *name, char *out, size_t cap)
{
	if (tenant == NULL || !rs_id_is_token(tenant, 64) || !rs_secret_name_ok(name))
		return RS_EINVAL;
	if ((size_t)snprintf(out, cap, "%s.%s", tenant, name) >= cap)
		return RS_EINVAL;
	return RS_OK;
}

void
rs_secret_free(char *value)
{
	if (value == NULL)
		return;
	OPENSSL_cleanse(value, strlen(value));
	free(value);
}

rs_status
rs_secret_seal(const rs_secret_key *key, const char *kvkey, const char *value, size_t len,
               unsigned char **out, size_t *outlen)
{
	EVP_CIPHER_CTX *c = NULL;
	unsigned char *b = NULL;
	int n = 0, fin = 0;
	rs_status st = RS_ERR;

	*out = NULL;
	*outlen = 0;
	if (len > RS_SECRET_VALUE_MAX)
		return RS_EINVAL;
	b = rs_xmalloc(OVERHEAD + len);
	b[0] = VERSION_BYTE;
	if (RAND_bytes(b + 1, NONCE_LEN) != 1 || (c = EVP_CIPHER_CTX_new()) == NULL)
		goto cleanup;
	if (EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
	    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, NONCE_LEN, NULL) != 1 ||
	    EVP_EncryptInit_ex(c, NULL, NULL, key->k, b + 1) != 1 ||
	    EVP_EncryptUpdate(c, NULL, &n, (const unsigned char *)kvkey, (int)strlen(kvkey)) != 1 ||
	    EVP_EncryptUpdate(c, b + 1 + NONCE_LEN, &n, (const unsigned char *)value, (int)len) != 1 ||
	    EVP_EncryptFinal_ex(c, b + 1 + NONCE_LEN + n, &fin) != 1 ||
	    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, TAG_LEN, b + 1 + NONCE_LEN + len) != 1)
		goto cleanup;
	*out = b;
	*outlen = OVERHEAD + len;
	b = NULL;
	st = RS_OK;
cleanup:
	EVP_CIPHER_CTX_free(c);
	free(b);
	return st;
}

rs_status
rs_secret_open(const rs_secret_key *key, const char *kvkey, const void *blob, size_t bloblen,
               char **value, size_t *len)
{
	const unsigned char *b = blob;
	EVP_CIPHER_CTX *c = NULL;
	size_t clen;
	char *p = NULL;
	int n = 0, fin = 0;
	rs_status st = RS_EINVAL;

	*value = NULL;
	*len = 0;
	if (bloblen < OVERHEAD + 1 || bloblen > OVERHEAD + RS_SECRET_VALUE_MAX ||
	    b[0] != VERSION_BYTE)
		return RS_EINVAL;
	clen = bloblen - OVERHEAD;
	p = rs_xmalloc(clen + 1);
	if ((c = EVP_CIPHER_CTX_new()) == NULL)
		goto cleanup;
	/* The tag is checked by EVP_DecryptFinal_ex: until it succeeds the
	 * plaintext in p is not trusted (and is wiped on failure). */
	if (EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
	    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, NONCE_LEN, NULL) != 1 ||
	    EVP_DecryptInit_ex(c, NULL, NULL, key->k, b + 1) != 1 ||
	    EVP_DecryptUpdate(c, NULL, &n, (const unsigned char *)kvkey, (int)strlen(kvkey)) != 1 ||
	    EVP_DecryptUpdate(c, (unsigned char *)p, &n, b + 1 + NONCE_LEN, (int)clen) != 1 ||
	    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, TAG_LEN,
	                        (void *)(b + 1 + NONCE_LEN + clen)) != 1 ||
	    EVP_DecryptFinal_ex(c, (unsigned char *)p + n, &fin) != 1)
		goto cleanup;
	p[clen] = '\0';
	if (memchr(p, '\0', clen) != NULL)
		goto cleanup;
	*value = p;
	*len = clen;
	p = NULL;
	st = RS_OK;
cleanup:
	EVP_CIPHER_CTX_free(c);
	if (p != NULL) {
		OPENSSL_cleanse(p, clen + 1);
		free(p);
	}
	return st;
}

/* --- KV --- */

rs_status
rs_secret_put(kvStore *kv, const rs_secret_key *key, const char *tenant, const char *name,
              const char *value, size_t len, int *created)
{
	char k[RS_SECRET_KVKEY_MAX];
	unsigned char *blob = NULL;
	size_t blen = 0;
	uint64_t rev = 0;
	const char *why;
	natsStatus s;
	rs_status st;

	*created = 0;
	if (rs_secret_kvkey(tenant, name, k, sizeof(k)) != RS_OK ||
	    !rs_secret_value_ok(value, len, &why))
		return RS_EINVAL;
	if ((st = rs_secret_seal(key, k, value, len, &blob, &blen)) != RS_OK)
		return st;
	/* Create first: it tells a new name (201) from a replaced one (200). */
	s = kvStore_Create(&rev, kv, k, blob, (int)blen);
	if (s == NATS_OK) {
		*created = 1;
	} else {
		s = kvStore_Put(&rev, kv, k, blob, (int)blen);
	}
	free(blob);
	return s == NATS_OK ? RS_OK : RS_EUNAVAIL;
}

rs_status
rs_secret_get(kvStore *kv, const rs_secret_key *key, const char *tenant, const char *name,
              char **value, size_t *len)
{
	char k[RS_SECRET_KVKEY_MAX];
	kvEntry *e = NULL;
	natsStatus s;
	rs_status st;

	*value = NULL;
	*len = 0;
	if (rs_secret_kvkey(tenant, name, k, sizeof(k)) != RS_OK)
		return RS_EINVAL;
	s = kvStore_Get(&e, kv, k);
	if (s == NATS_NOT_FOUND) {
		return RS_ENOTFOUND;
	}
	if (s != NATS_OK)
		return RS_EUNAVAIL;
	st = rs_secret_open(key, k, kvEntry_Value(e), (size_t)kvEntry_ValueLen(e), value, len);
	kvEntry_Destroy(e);
	return st;
}

rs_status
rs_secret_delete(kvStore *kv, const char *tenant, const char *name)
{
	char k[RS_SECRET_KVKEY_MAX];
	kvEntry *e = NULL;
	natsStatus s;

	if (rs_secret_kvkey(tenant, name, k, sizeof(k)) != RS_OK)
		return RS_EINVAL;
	s = kvStore_Get(&e, kv, k);
	kvEntry_Destroy(e);
	if (s == NATS_NOT_FOUND) {
		return RS_ENOTFOUND;
	}
	if (s != NATS_OK)
		return RS_EUNAVAIL;
	/* Purge, not delete: a delete marker would leave the ciphertext in
	 * the bucket's history. */
	return kvStore_Purge(kv, k, NULL) == NATS_OK ? RS_OK : RS_EUNAVAIL;
}

static int
by_name(const void *a, const void *b)
{
	json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;

	return strcmp(json_string_value(json_object_get(x, "name")),
	              json_string_value(json_object_get(y, "name")));
}

/* Number of subjects of the tenant in the bucket's stream (puts and
 * delete markers alike), or -1 if it cannot be told. */
static int
tenant_subjects(jsCtx *js, const char *tenant)
{
	char filter[96];
	jsOptions o;
	jsStreamInfo *si = NULL;
	jsErrCode jerr = 0;
	int n = -1;

	jsOptions_Init(&o);
	snprintf(filter, sizeof(filter), "$KV.%s.%s.*", RS_SECRET_BUCKET, tenant);
	o.Stream.Info.SubjectsFilter = filter;
	if (js_GetStreamInfo(&si, js, "KV_" RS_SECRET_BUCKET, &o, &jerr) == NATS_OK && si != NULL)
		n = si->State.Subjects != NULL ? si->State.Subjects->Count : 0;
	jsStreamInfo_Destroy(si);
	return n;
}

rs_status
rs_secret_list(jsCtx *js, kvStore *kv, const char *tenant, json_t **out)
{
	char filter[80], when[40];
	kvWatchOptions o;
	kvWatcher *w = NULL;
	kvEntry *e = NULL;
	json_t **items = NULL, *arr;
	size_t n = 0, capn = 0;
	size_t plen;
	natsStatus s;
	rs_status st = RS_OK;

	*out = NULL;
	if (!rs_id_is_token(tenant, 64))
		return RS_EINVAL;
	if (tenant_subjects(js, tenant) == 0) {
		*out = json_array();
		return RS_OK;
	}
	snprintf(filter, sizeof(filter), "%s.*", tenant);
	plen = strlen(tenant) + 1;
	kvWatchOptions_Init(&o);
	/* Deletes and purges are skipped below: with IgnoreDeletes a tenant whose
	 * newest entry is a purge marker never gets the end-of-values marker. */
	o.MetaOnly = true;     /* names and times: the ciphertexts are not read */
	if (kvStore_Watch(&w, kv, filter, &o) != NATS_OK)
		return RS_EUNAVAIL;
	/* The initial values end with a NULL entry. */
	for (;;) {
		e = NULL;
		s = kvWatcher_Next(&e, w, 5000);
		if (s != NATS_OK) {
			st = RS_EUNAVAIL;
			break;
		}
		if (e == NULL)
			break;
		if (kvEntry_Operation(e) == kvOp_Put && strlen(kvEntry_Key(e)) > plen) {
			if (n == capn) {
				capn = capn ? 2 * capn : 16;
				items = rs_xrealloc(items, capn * sizeof(*items));
			}
			rs_time_rfc3339(kvEntry_Created(e) / 1000000, when, sizeof(when));
			items[n++] = json_pack("{s:s, s:s}", "name", kvEntry_Key(e) + plen,
			                       "updated_at", when);
		}
		kvEntry_Destroy(e);
	}
	kvWatcher_Destroy(w);
	if (st == RS_OK) {
		qsort(items, n, sizeof(*items), by_name);
		arr = json_array();
		for (size_t i = 0; i < n; i++)
			json_array_append_new(arr, items[i]);
		*out = arr;
	} else {
		for (size_t i = 0; i < n; i++)
			json_decref(items[i]);
	}
	free(items);
	return st;
}
