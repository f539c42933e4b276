/*
 * test_common.c - unit tests for common/'s server-free modules: config
 * parsing, UUIDv7 ordering, RFC 3339 time, strict JSON, migration naming,
 * metrics exposition, ops routing, secret sealing. No servers; exit 1 on the first failure.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rs_config.h"
#include "rs_id.h"
#include "rs_json.h"
#include "rs_metrics.h"
#include "rs_ops.h"
#include "rs_pg.h"
#include "rs_secret.h"
#include "../check.h"
#include "rs_nats.h"
#include "rs_time.h"
#include "rs_gate.h"

static void
test_parse_int(void)
{
	int64_t v = 0;

	CHECK(rs_parse_int("8080", 0, 65535, &v) == RS_OK && v == 8080);
	CHECK(rs_parse_int("-5", -10, 10, &v) == RS_OK && v == -5);
	CHECK(rs_parse_int("80x", 0, 65535, &v) == RS_EINVAL);
	CHECK(rs_parse_int("", 0, 65535, &v) == RS_EINVAL);
	CHECK(rs_parse_int("65536", 0, 65535, &v) == RS_EINVAL);
	CHECK(rs_parse_int("99999999999999999999999", 0, 10, &v) == RS_EINVAL);
}

static void
test_env(void)
{
	int64_t v = 0;
	rs_config cfg;

	setenv("RS_TEST_PORT", "1234", 1);
	CHECK(rs_env_int("RS_TEST_PORT", 1, 0, 65535, &v) == RS_OK && v == 1234);
	setenv("RS_TEST_PORT", "12a", 1);
	CHECK(rs_env_int("RS_TEST_PORT", 1, 0, 65535, &v) == RS_EINVAL);
	unsetenv("RS_TEST_PORT");
	CHECK(rs_env_int("RS_TEST_PORT", 77, 0, 65535, &v) == RS_OK && v == 77);
	setenv("RS_TEST_STR", "", 1);
	CHECK(strcmp(rs_env_str("RS_TEST_STR", "def"), "def") == 0);
	unsetenv("RS_NATS_URL");
	CHECK(rs_config_load(&cfg, "svc", "RS_TEST_OPS", 9999) == RS_OK);
	CHECK(strcmp(cfg.nats_url, "nats://127.0.0.1:4222") == 0);
	CHECK(strcmp(cfg.listen_addr, "127.0.0.1") == 0);
	CHECK(cfg.ops_port == 9999);
	CHECK(strncmp(cfg.instance_id, "svc-", 4) == 0);
	setenv("RS_SHUTDOWN_GRACE_MS", "-1", 1);
	CHECK(rs_config_load(&cfg, "svc", NULL, 0) == RS_EINVAL);
	unsetenv("RS_SHUTDOWN_GRACE_MS");
}

static void
test_uuidv7(void)
{
	char prev[RS_UUID_LEN + 1], cur[RS_UUID_LEN + 1];
	int64_t t = 1763800000000LL;

	rs_id_uuidv7_at(t, prev);
	CHECK(rs_id_is_uuid(prev));
	CHECK(prev[14] == '7');
	CHECK(strchr("89ab", prev[19]) != NULL);
	CHECK(rs_id_uuidv7_ms(prev) == t);
	/* Many ids in the same millisecond and across milliseconds stay in
	 * strictly increasing lexical order: sortable by creation time. */
	for (int i = 0; i < 20000; i++) {
		rs_id_uuidv7_at(t + i / 1000, cur);
		CHECK(strcmp(prev, cur) < 0);
		memcpy(prev, cur, sizeof(cur));
	}
	rs_id_uuidv7(cur);
	CHECK(rs_id_uuidv7_ms(cur) >= rs_now_ms() - 1000);
	CHECK(!rs_id_is_uuid("0193c1c1-0000-7000-8000-00000000000G"));
	CHECK(!rs_id_is_uuid("short"));
	CHECK(rs_id_is_token("acme-1_x", 64));
	CHECK(!rs_id_is_token("Acme", 64));
	CHECK(!rs_id_is_token("a.b", 64));
	CHECK(!rs_id_is_token("", 64));
}

static void
test_time(void)
{
	char buf[40];
	int64_t ms = 0;

	rs_time_rfc3339(1763800000123LL, buf, sizeof(buf));
	CHECK(strcmp(buf, "2025-11-22T08:26:40.123Z") == 0);
	CHECK(rs_time_parse_rfc3339(buf, &ms) == RS_OK && ms == 1763800000123LL);
	CHECK(rs_time_parse_rfc3339("2025-11-22T09:26:40.123+01:00", &ms) == RS_OK &&
	      ms == 1763800000123LL);
	CHECK(rs_time_parse_rfc3339("2025-11-22T08:26:40Z", &ms) == RS_OK && ms == 1763800000000LL);
	CHECK(rs_time_parse_rfc3339("2025-11-22 08:26:40", &ms) == RS_EINVAL);
	CHECK(rs_time_parse_rfc3339("2025-13-22T08:26:40Z", &ms) == RS_EINVAL);
	CHECK(rs_time_parse_rfc3339("2025-11-22T08:26:40.Z", &ms) == RS_EINVAL);
	CHECK(rs_time_parse_rfc3339("2025-11-22T08:26:40Zjunk", &ms) == RS_EINVAL);
	/* The calendar is computed (no timegm): its answers are timegm's,
	 * normalisation of a day past the month's end and a leap second
	 * included; before 1970 too. */
	{
		int64_t a = 0, b = 0;
		CHECK(rs_time_parse_rfc3339("2024-02-30T00:00:00Z", &a) == RS_OK &&
		      rs_time_parse_rfc3339("2024-03-01T00:00:00Z", &b) == RS_OK && a == b);
		CHECK(rs_time_parse_rfc3339("2016-12-31T23:59:60Z", &a) == RS_OK &&
		      rs_time_parse_rfc3339("2017-01-01T00:00:00Z", &b) == RS_OK && a == b);
		CHECK(rs_time_parse_rfc3339("2000-02-29T12:00:00.5Z", &a) == RS_OK &&
		      a == 951825600500LL);
		CHECK(rs_time_parse_rfc3339("1969-12-31T23:59:59Z", &a) == RS_OK && a == -1000);
		CHECK(rs_time_parse_rfc3339("1899-12-31T23:59:59Z", &a) == RS_EINVAL);
	}
}

static void
test_json(void)
{
	char err[256], *s;
	json_t *v = NULL;
	char deep[200];

	CHECK(rs_json_parse("{\"b\":1,\"a\":[1,2]}", 17, &v, err, sizeof(err)) == RS_OK);
	s = rs_json_dump(v);
	CHECK(strcmp(s, "{\"a\":[1,2],\"b\":1}") == 0);
	CHECK(json_integer_value(rs_json_path(v, "a.1")) == 2);
	CHECK(rs_json_path(v, "a.7") == NULL);
	CHECK(rs_json_path(v, "b.c") == NULL);
	free(s);
	json_decref(v);
	CHECK(rs_json_parse("{\"a\":1,\"a\":2}", 13, &v, err, sizeof(err)) == RS_EINVAL);
	CHECK(strstr(err, "duplicate") != NULL);
	CHECK(rs_json_parse("{\"a\":}", 6, &v, err, sizeof(err)) == RS_EINVAL);
	CHECK(strstr(err, "line 1, column 6") != NULL);
	memset(deep, '[', 100);
	memset(deep + 100, ']', 100);
	CHECK(rs_json_parse(deep, 200, &v, err, sizeof(err)) == RS_EINVAL);
	CHECK(strstr(err, "deeper than 64") != NULL);
	/* Brackets inside strings do not count as depth. */
	{
		char str[80];
		memset(str, '[', sizeof(str));
		str[0] = '"';
		str[78] = '"';
		str[79] = '\0';
		CHECK(rs_json_parse(str, strlen(str), &v, err, sizeof(err)) == RS_OK);
	}
	json_decref(v);
	/* A parse error quoting half a character is still UTF-8 (it goes
	 * into JSON answers; found by tests/fuzz). */
	{
		const char *half = "{\"a\":\"\\\xc3\xa9\"}";
		CHECK(rs_json_parse(half, strlen(half), &v, err, sizeof(err)) == RS_EINVAL);
	}
	{
		json_t *js = json_string(err);
		CHECK(js != NULL && strstr(err, "invalid escape") != NULL);
		json_decref(js);
	}
	{
		const struct { const char *in, *out; } u[] = {
			{ "plain", "plain" },
			{ "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80" },
			{ "cut \xc3", "cut ?" },                      /* truncated sequence */
			{ "\xe2\x82x", "??x" },
			{ "\xc0\xaf", "??" },                        /* overlong '/' */
			{ "\xed\xa0\x80", "???" },                  /* a surrogate */
			{ "\xf4\x90\x80\x80", "????" },            /* past U+10FFFF */
			{ "\xff\xfe", "??" },
		};
		char buf[64];
		for (size_t i = 0; i < sizeof(u) / sizeof(u[0]); i++) {
			snprintf(buf, sizeof(buf), "%s", u[i].in);
			rs_json_scrub_utf8(buf);
			CHECK_STR(buf, u[i].out);
		}
	}
	rs_sha256_hex("abc", 3, err);
	CHECK(strcmp(err, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad") == 0);
}

static void
test_migration_names(void)
{
	CHECK(rs_migration_version("0001_checkpoints.sql") == 1);
	CHECK(rs_migration_version("0042_x.sql") == 42);
	CHECK(rs_migration_version("1_x.sql") == -1);
	CHECK(rs_migration_version("0001-x.sql") == -1);
	CHECK(rs_migration_version("0001_x.txt") == -1);
	/* Embedded migrations are ordered, uniquely numbered and well named. */
	for (int i = 0; rs_migrations[i] != NULL; i++) {
		CHECK(rs_migration_version(rs_migrations_names[i]) > 0);
		if (i > 0)
			CHECK(rs_migration_version(rs_migrations_names[i]) >
			      rs_migration_version(rs_migrations_names[i - 1]));
	}
}

static int
not_ready(void *arg, char *why, size_t cap)
{
	snprintf(why, cap, "nats \"down\"");
	return *(int *)arg;
}

static void
test_metrics_and_ops(void)
{
	rs_metric *c = rs_counter("rs_test_total", "A test counter.", "status=\"ok\"");
	rs_metric *h = rs_histogram("rs_test_seconds", "A test histogram.", NULL);
	int ready = 0;
	rs_ops ops = { "svc", not_ready, &ready };
	char *body = NULL;
	size_t len = 0;
	const char *ctype = NULL;

	rs_metric_inc(c);
	rs_metric_add(c, 2);
	rs_metric_observe(h, 0.003);
	rs_metric_observe(h, 20);
	CHECK(rs_ops_route(&ops, "/metrics", &body, &len, &ctype) == 200);
	CHECK(strstr(body, "# TYPE rs_test_total counter\nrs_test_total{status=\"ok\"} 3\n") != NULL);
	CHECK(strstr(body, "rs_test_seconds_bucket{le=\"0.005\"} 1\n") != NULL);
	CHECK(strstr(body, "rs_test_seconds_bucket{le=\"+Inf\"} 2\n") != NULL);
	CHECK(strstr(body, "rs_test_seconds_count 2\n") != NULL);
	CHECK(strncmp(ctype, "text/plain; version=0.0.4", 25) == 0);
	free(body);
	CHECK(rs_ops_route(&ops, "/readyz", &body, &len, &ctype) == 503);
	CHECK(strstr(body, "\"reason\":\"nats \\\"down\\\"\"") != NULL);
	free(body);
	ready = 1;
	CHECK(rs_ops_route(&ops, "/readyz", &body, &len, &ctype) == 200);
	free(body);
	CHECK(rs_ops_route(&ops, "/healthz", &body, &len, &ctype) == 200);
	free(body);
	CHECK(rs_ops_route(&ops, "/v1/other", &body, &len, &ctype) == 0);
}

/* JetStream pub acks as nats-server 2.9 writes them (server/stream.go:
 * the pubAck template has a blank after the stream name's comma, and
 * duplicates end in ,"duplicate": true}). */
static void
test_puback(void)
{
	uint64_t seq;
	int dup;
	jsErrCode jerr;
	char err[160];
	const char *ok = "{\"stream\":\"RUNS\", \"seq\":42}";
	const char *d = "{\"stream\":\"RUNS\", \"seq\":7,\"duplicate\": true}";
	const char *wrong = "{\"error\":{\"code\":400,\"err_code\":10071,"
	                    "\"description\":\"wrong last sequence: 5\"}}";

	/* The server's own shapes take the parser-free path; nothing a JSON
	 * parser would read differently does. */
	{
		const char *lead0 = "{\"stream\":\"RUNS\",\"seq\":06}";
		const char *utf8 = "{\"stream\":\"R\xc3\x9cNS\",\"seq\":3}";
		const char *big = "{\"stream\":\"RUNS\",\"seq\":9223372036854775808}";
		CHECK(rs_js_puback_fast(lead0, strlen(lead0), &seq, &dup) == 0);
		CHECK(rs_js_puback_fast(utf8, strlen(utf8), &seq, &dup) == 0);
		CHECK(rs_js_puback_fast(big, strlen(big), &seq, &dup) == 0);
	}
	CHECK(rs_js_puback_fast(ok, strlen(ok), &seq, &dup) == 1 && seq == 42 && dup == 0);
	CHECK(rs_js_puback_fast(d, strlen(d), &seq, &dup) == 1 && seq == 7 && dup == 1);
	CHECK(rs_js_puback_fast(wrong, strlen(wrong), &seq, &dup) == 0);
		CHECK(rs_js_parse_puback(ok, strlen(ok), &seq, &dup, &jerr, err, sizeof(err)) == RS_OK);
	CHECK(seq == 42 && dup == 0 && jerr == 0);
	CHECK(rs_js_parse_puback(d, strlen(d), &seq, &dup, &jerr, err, sizeof(err)) == RS_OK);
	CHECK(seq == 7 && dup == 1);
	CHECK(rs_js_parse_puback(wrong, strlen(wrong), &seq, &dup, &jerr, err, sizeof(err)) == RS_EIO);
	CHECK(jerr == JSStreamWrongLastSequenceErr && seq == 0);
	CHECK_STR(err, "wrong last sequence: 5 (10071)");
	CHECK(rs_js_parse_puback("", 0, &seq, &dup, &jerr, err, sizeof(err)) == RS_EINVAL);
	CHECK(rs_js_parse_puback("{\"seq\":3}", 9, &seq, &dup, &jerr, err, sizeof(err)) == RS_EINVAL);
	CHECK(rs_js_parse_puback("[1]", 3, &seq, &dup, &jerr, err, sizeof(err)) == RS_EINVAL);

	/* Shapes beside the fast path's exact one go through jansson: same
	 * answers either way. */
	const struct { const char *in; rs_status st; uint64_t seq; int dup; } t[] = {
		{ "{\"stream\":\"RUNS\",\"domain\":\"hub\",\"seq\":5}", RS_OK, 5, 0 },
		{ "{\"stream\":\"RUNS\",\"seq\":5,\"domain\":\"hub\",\"duplicate\":true}", RS_OK, 5, 1 },
		{ "{ \"stream\": \"RUNS\", \"seq\": 6 }", RS_OK, 6, 0 },
		{ "{\"stream\":\"R\\u0055NS\",\"seq\":8}", RS_OK, 8, 0 },
		{ "{\"stream\":\"RUNS\",\"seq\":42}", RS_OK, 42, 0 },
		{ "{\"stream\":\"RUNS\",\"seq\":7,\"duplicate\":true}", RS_OK, 7, 1 },
		{ "{\"stream\":\"RUNS\", \"seq\":7,\"duplicate\": false}", RS_OK, 7, 0 },
		{ "{\"stream\":\"RUNS\", \"seq\":7,\"duplicate\": true", RS_EINVAL, 0, 0 },
		{ "{\"stream\":\"RUNS\",\"seq\":18446744073709551615}", RS_EINVAL, 0, 0 },
		{ "{\"stream\":\"RUNS\",\"seq\":0}", RS_EINVAL, 0, 0 },
		{ "{\"stream\":\"RUNS\",\"seq\":42", RS_EINVAL, 0, 0 },
		{ "{\"stream\":\"RUNS\",\"seq\":42}x", RS_EINVAL, 0, 0 },
		{ "{\"stream\":\"RUNS\",\"seq\":42,\"duplicate\":false}", RS_OK, 42, 0 },
		{ "{\"stream\":\"RUNS\",\"seq\":-3}", RS_EINVAL, 0, 0 },
		{ "{\"stream\":\"RUNS", RS_EINVAL, 0, 0 },
		{ "{\"stream\":\"RUNS\"", RS_EINVAL, 0, 0 },
		/* found by tests/fuzz: the fast path accepted what JSON refuses */
		{ "{\"stream\":\"RUNS\",\"seq\":06}", RS_EINVAL, 0, 0 },
		{ "{\"stream\":\"RUNS\",\"seq\":9999999999999999999}", RS_EINVAL, 0, 0 },
		{ "{\"stream\":\"R\xff\",\"seq\":3}", RS_EINVAL, 0, 0 },
		{ "{\"stream\":\"R\xc3\x9cNS\",\"seq\":3}", RS_OK, 3, 0 },
		{ "{\"stream\":\"RUNS\",\"seq\":9223372036854775807}", RS_OK, 9223372036854775807ULL, 0 },
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		rs_status st = rs_js_parse_puback(t[i].in, strlen(t[i].in), &seq, &dup, &jerr, err,
		                                  sizeof(err));
		CHECK_INT(st, t[i].st);
		CHECK_INT(seq, t[i].seq);
		CHECK_INT(dup, t[i].dup);
	}
	/* Not NUL-terminated: only len bytes are read. */
	CHECK(rs_js_parse_puback("{\"stream\":\"RUNS\",\"seq\":42}}}", 26, &seq, &dup, &jerr, err,
	                         sizeof(err)) == RS_OK);
	CHECK(seq == 42);
}

/* rs_natsgc.c: natsMsg_Destroy frees at once (our natsGC_collect is the
 * one libnats calls); ASan's leak check holds that the message, headers
 * included, is really freed. */
static void
test_natsgc(void)
{
	natsMsg *m = NULL;

	CHECK(rs_natsgc_active() == 1);
	CHECK(natsMsg_Create(&m, "a.b", "r", "data", 4) == NATS_OK);
	CHECK(natsMsgHeader_Set(m, "Nats-Msg-Id", "x-1") == NATS_OK);
	CHECK(natsMsgHeader_Add(m, "Runstream-Type", "run.created") == NATS_OK);
	natsMsg_Destroy(m);
}

/* RS_NATS_URL lists: split for natsOptions_SetServers (issue 21). */
static void
test_split_urls(void)
{
	const char *u[RS_NATS_MAX_SERVERS];
	char buf[256];
	int n = -1;

	CHECK(rs_nats_split_urls("nats://a:1", buf, sizeof(buf), u, RS_NATS_MAX_SERVERS, &n) == RS_OK && n == 1);
	CHECK_STR(u[0], "nats://a:1");
	CHECK(rs_nats_split_urls("nats://a:1, nats://b:2 ,nats://c:3", buf, sizeof(buf), u,
	                         RS_NATS_MAX_SERVERS, &n) == RS_OK && n == 3);
	CHECK_STR(u[1], "nats://b:2");
	CHECK_STR(u[2], "nats://c:3");
	CHECK(rs_nats_split_urls("", buf, sizeof(buf), u, RS_NATS_MAX_SERVERS, &n) == RS_EINVAL);
	CHECK(rs_nats_split_urls("nats://a:1,,nats://b:2", buf, sizeof(buf), u, RS_NATS_MAX_SERVERS, &n) == RS_EINVAL);
	CHECK(rs_nats_split_urls("nats://a:1, ", buf, sizeof(buf), u, RS_NATS_MAX_SERVERS, &n) == RS_EINVAL);
	CHECK(rs_nats_split_urls("a,b,c", buf, sizeof(buf), u, 2, &n) == RS_EINVAL);
	CHECK(rs_nats_split_urls("nats://a-long-host:4222", buf, 8, u, 2, &n) == RS_EINVAL);
	CHECK(rs_nats_split_urls(NULL, buf, sizeof(buf), u, 2, &n) == RS_EINVAL);
}

/* rs_secret: AES-256-GCM round trip; a wrong key, a changed byte, or the
 * blob moved under another name/tenant is refused. */
static void
test_secret(void)
{
	static const char hex[] = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
	rs_secret_key k, k2;
	unsigned char *blob = NULL, *blob2 = NULL;
	size_t blen = 0, blen2 = 0, len = 0;
	char err[128], kv[RS_SECRET_KVKEY_MAX], *v = NULL;
	const char *why;

	CHECK(rs_secret_key_parse(hex, &k, err, sizeof(err)) == RS_OK);
	CHECK(rs_secret_key_parse("abc", &k2, err, sizeof(err)) == RS_EINVAL);
	CHECK(strstr(err, "64 hex") != NULL);
	CHECK(rs_secret_key_parse("zz0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
	                          &k2, err, sizeof(err)) == RS_EINVAL);
	memcpy(&k2, &k, sizeof(k));
	k2.k[31] ^= 1;

	CHECK(rs_secret_name_ok("OPENAI_KEY-2"));
	CHECK(!rs_secret_name_ok(""));
	CHECK(!rs_secret_name_ok("a.b"));
	CHECK(!rs_secret_name_ok("a b"));
	CHECK(!rs_secret_name_ok("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")); /* 65 */
	CHECK(rs_secret_value_ok("sk-1", 4, &why));
	CHECK(!rs_secret_value_ok("a\r\nb", 4, &why));
	CHECK(!rs_secret_value_ok("", 0, &why));
	CHECK(rs_secret_kvkey("acme", "KEY", kv, sizeof(kv)) == RS_OK);
	CHECK_STR(kv, "acme.KEY");
	CHECK(rs_secret_kvkey("Acme", "KEY", kv, sizeof(kv)) == RS_EINVAL);
	CHECK(rs_secret_kvkey("acme", "a.b", kv, sizeof(kv)) == RS_EINVAL);

	CHECK(rs_secret_seal(&k, "acme.KEY", "s3cret-value", 12, &blob, &blen) == RS_OK);
	CHECK(blen == 12 + 29);
	CHECK(blob != NULL && memmem(blob, blen, "s3cret", 6) == NULL);   /* not in clear */
	CHECK(rs_secret_open(&k, "acme.KEY", blob, blen, &v, &len) == RS_OK);
	CHECK_STR(v, "s3cret-value");
	CHECK(len == 12);
	rs_secret_free(v);
	v = NULL;
	/* Two seals of one value differ (random nonce). */
	CHECK(rs_secret_seal(&k, "acme.KEY", "s3cret-value", 12, &blob2, &blen2) == RS_OK);
	CHECK(blen2 == blen && memcmp(blob, blob2, blen) != 0);
	/* Wrong key. */
	CHECK(rs_secret_open(&k2, "acme.KEY", blob, blen, &v, &len) == RS_EINVAL && v == NULL);
	/* Moved under another name, or another tenant's key. */
	CHECK(rs_secret_open(&k, "acme.OTHER", blob, blen, &v, &len) == RS_EINVAL && v == NULL);
	CHECK(rs_secret_open(&k, "evil.KEY", blob, blen, &v, &len) == RS_EINVAL && v == NULL);
	/* Any changed byte: version, nonce, ciphertext, tag. */
	for (size_t i = 0; i < blen; i++) {
		blob[i] ^= 0x40;
		CHECK(rs_secret_open(&k, "acme.KEY", blob, blen, &v, &len) == RS_EINVAL && v == NULL);
		blob[i] ^= 0x40;
	}
	/* Truncated. */
	CHECK(rs_secret_open(&k, "acme.KEY", blob, blen - 1, &v, &len) == RS_EINVAL);
	CHECK(rs_secret_open(&k, "acme.KEY", blob, 5, &v, &len) == RS_EINVAL);
	/* Still opens after all that. */
	CHECK(rs_secret_open(&k, "acme.KEY", blob, blen, &v, &len) == RS_OK);
	rs_secret_free(v);
	free(blob2);
	CHECK(rs_secret_seal(&k, "acme.KEY", "x", RS_SECRET_VALUE_MAX + 1, &blob2, &blen2) == RS_EINVAL);

	setenv(RS_SECRET_KEY_ENV, "nothex", 1);
	CHECK(rs_secret_key_from_env(&k2, err, sizeof(err)) == RS_EINVAL);
	CHECK(strstr(err, RS_SECRET_KEY_ENV) != NULL);
	unsetenv(RS_SECRET_KEY_ENV);
	CHECK(rs_secret_key_from_env(&k2, err, sizeof(err)) == RS_ENOTFOUND);
	free(blob);
	free(blob2);
	rs_secret_key_wipe(&k);
}

/* The admission gate's entry (rs_gate.h): slots, FIFO, idempotence. */
static void
test_gate(void)
{
	rs_gate g;
	json_t *promoted = json_array();
	char key[200], *txt;
	int changed;

	rs_gate_kv_key("acme", NULL, key, sizeof(key));
	CHECK_STR(key, "acme.tenant");
	rs_gate_kv_key("acme", "cust 7.*>", key, sizeof(key));   /* any characters: hashed */
	CHECK(strncmp(key, "acme.k.", 7) == 0 && strlen(key) == 7 + 32 && !strpbrk(key + 7, " *>"));

	CHECK(rs_gate_parse(NULL, 0, &g) == RS_OK);
	CHECK(rs_gate_join(&g, 2, "r1", &changed) == RS_GATE_ADMITTED && changed);
	CHECK(rs_gate_join(&g, 2, "r1", &changed) == RS_GATE_ADMITTED && !changed);   /* again */
	CHECK(rs_gate_join(&g, 2, "r2", &changed) == RS_GATE_ADMITTED);
	CHECK(rs_gate_join(&g, 2, "r3", &changed) == RS_GATE_QUEUED && changed);
	CHECK(rs_gate_join(&g, 2, "r4", &changed) == RS_GATE_QUEUED);
	CHECK(rs_gate_join(&g, 2, "r3", &changed) == RS_GATE_QUEUED && !changed);
	CHECK_INT(rs_gate_position(&g, "r1"), 0);
	CHECK_INT(rs_gate_position(&g, "r4"), 2);
	CHECK_INT(rs_gate_position(&g, "zz"), -1);
	/* round trip through the KV value */
	txt = rs_gate_dump(&g);
	CHECK_STR(txt, "{\"limit\":2,\"queue\":[\"r3\",\"r4\"],\"running\":[\"r1\",\"r2\"]}");
	rs_gate_free(&g);
	CHECK(rs_gate_parse(txt, strlen(txt), &g) == RS_OK);
	free(txt);
	/* a queued run leaves: nobody promoted */
	CHECK(rs_gate_leave(&g, 2, "r3", promoted, &changed) == 1 && changed);
	CHECK_INT(json_array_size(promoted), 0);
	/* a running one leaves: the head of the queue gets the slot */
	CHECK(rs_gate_leave(&g, 2, "r1", promoted, &changed) == 1);
	CHECK_INT(json_array_size(promoted), 1);
	CHECK_STR(json_string_value(json_array_get(promoted, 0)), "r4");
	CHECK_INT(rs_gate_position(&g, "r4"), 0);
	/* leaving twice changes nothing */
	json_array_clear(promoted);
	CHECK(rs_gate_leave(&g, 2, "r1", promoted, &changed) == 0 && !changed);
	/* a larger limit frees slots for the queue at the next leave */
	CHECK(rs_gate_join(&g, 2, "r5", &changed) == RS_GATE_QUEUED);
	CHECK(rs_gate_join(&g, 2, "r6", &changed) == RS_GATE_QUEUED);
	CHECK(rs_gate_leave(&g, 4, "r2", promoted, &changed) == 1);
	CHECK_INT(json_array_size(promoted), 2);
	CHECK_INT(json_array_size(g.running), 3);
	rs_gate_free(&g);
	/* malformed entries are refused */
	CHECK(rs_gate_parse("{\"limit\":1,\"running\":[1],\"queue\":[]}", 36, &g) == RS_EINVAL);
	CHECK(rs_gate_parse("[]", 2, &g) == RS_EINVAL);
	json_decref(promoted);
}

int
main(void)
{
	test_parse_int();
	test_env();
	test_uuidv7();
	test_time();
	test_json();
	test_migration_names();
	test_metrics_and_ops();
	test_puback();
	test_natsgc();
	test_split_urls();
	test_secret();
	test_gate();
	return check_report("test_common");
}
