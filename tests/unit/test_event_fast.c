/*
 * test_event_fast.c - differential test of the fast event decoder
 * (common/rs_event_fast.c) against the strict one (rs_event_decode): for
 * every input both must return the same status and error text, and on
 * success events whose rs_event_encode bytes (and envelope members) are
 * identical. Inputs: every fixture event (full and minimal), every event
 * line of the recorded histories (tests/fixtures), and thousands of mutations of them:
 * truncations, byte flips, duplicated and reordered keys, whitespace,
 * escapes, every data field dropped and retyped (so a table in
 * rs_event_fast.c that drifts from rs_event.c fails here), numbers, times
 * and nesting depths at the edges.
 *   test_event_fast [FIXTURES_DIR]   (default: found from this file's path)
 */
#include <dirent.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "event_fixtures.h"
#include "rs_event.h"
#include "rs_event_fast.h"

static unsigned long long cases;

/* ---- the comparison ------------------------------------------------- */

static void
show(const char *what, const char *buf, size_t len)
{
	fprintf(stderr, "  %s: %.*s%s\n", what, (int)(len > 600 ? 600 : len), buf,
	        len > 600 ? "..." : "");
}

/* Both decoders on buf[0..len): same outcome, same event. */
static void
agree(const char *buf, size_t len)
{
	char e1[256] = "", e2[256] = "", *a = NULL, *b = NULL;
	rs_event s, f;
	rs_status ss, fs;
	int same = 1;

	cases++;
	ss = rs_event_decode(buf, len, &s, e1, sizeof(e1));
	fs = rs_event_decode_fast(buf, len, &f, e2, sizeof(e2));
	if (ss != fs || (ss != RS_OK && strcmp(e1, e2) != 0)) {
		same = 0;
	} else if (ss == RS_OK) {
		same = s.type == f.type && s.runseq == f.runseq && s.time_ms == f.time_ms &&
		       strcmp(s.run_id, f.run_id) == 0 && strcmp(s.tenant, f.tenant) == 0 &&
		       strcmp(s.traceparent, f.traceparent) == 0 && s.source != NULL &&
		       f.source != NULL && strcmp(s.source, f.source) == 0 &&
		       rs_event_encode(&s, &a, NULL) == RS_OK && rs_event_encode(&f, &b, NULL) == RS_OK &&
		       strcmp(a, b) == 0;
	}
	checks++;
	if (!same) {
		failures++;
		fprintf(stderr, "decoders disagree: strict %d \"%s\", fast %d \"%s\"\n", (int)ss, e1,
		        (int)fs, e2);
		show("input", buf, len);
		if (a != NULL && b != NULL) {
			show("strict", a, strlen(a));
			show("fast", b, strlen(b));
		}
	}
	free(a);
	free(b);
	if (ss == RS_OK || ss == RS_ENOTFOUND)
		rs_event_free(&s);
	if (fs == RS_OK || fs == RS_ENOTFOUND)
		rs_event_free(&f);
}

static void
agree_str(const char *s)
{
	agree(s, strlen(s));
}

/* Dump v with flags and compare (v kept). */
static void
agree_json(const json_t *v, size_t flags)
{
	char *text = json_dumps(v, flags | JSON_ENCODE_ANY);

	if (text == NULL)
		abort();
	agree_str(text);
	free(text);
}

/* ---- the corpus ------------------------------------------------------ */

typedef struct {
	char **text;
	size_t n, cap;
} corpus;

static void
corpus_add(corpus *c, const char *s, size_t n)
{
	if (c->n == c->cap) {
		c->cap = c->cap ? c->cap * 2 : 64;
		if ((c->text = realloc(c->text, c->cap * sizeof(*c->text))) == NULL)
			abort();
	}
	if ((c->text[c->n++] = strndup(s, n)) == NULL)
		abort();
}

static void
corpus_free(corpus *c)
{
	for (size_t i = 0; i < c->n; i++)
		free(c->text[i]);
	free(c->text);
}

static void
add_fixture_events(corpus *c)
{
	for (int t = 0; t < RS_EV__COUNT; t++) {
		for (int full = 0; full <= 1; full++) {
			rs_event ev;
			char *out = NULL;
			size_t n = 0;

			fx_event((rs_event_type)t, full, &ev);
			CHECK(rs_event_encode(&ev, &out, &n) == RS_OK);
			if (out != NULL)
				corpus_add(c, out, n);
			free(out);
			rs_event_free(&ev);
		}
	}
}

/* Every event line of every *.ndjson in dir (export headers skipped). */
static size_t
add_fixture_files(corpus *c, const char *dir)
{
	char path[2048], *line = NULL;
	struct dirent *de;
	size_t cap = 0, files = 0;
	ssize_t n;
	DIR *d = opendir(dir);
	FILE *f;

	if (d == NULL)
		return 0;
	while ((de = readdir(d)) != NULL) {
		size_t l = strlen(de->d_name);
		if (l < 7 || strcmp(de->d_name + l - 7, ".ndjson") != 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if ((f = fopen(path, "r")) == NULL)
			continue;
		files++;
		while ((n = getline(&line, &cap, f)) > 0) {
			while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
				n--;
			if (n == 0 || (strstr(line, "\"runstream_export\"") != NULL &&
			               strstr(line, "\"specversion\"") == NULL))
				continue;
			corpus_add(c, line, (size_t)n);
		}
		fclose(f);
	}
	free(line);
	closedir(d);
	return files;
}

/* ---- mutations ------------------------------------------------------- */

static unsigned long long rng = 0x9e3779b97f4a7c15ULL;

static unsigned
rnd(unsigned n)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (unsigned)(rng % n);
}

static void
truncations(const char *s)
{
	size_t n = strlen(s);

	for (size_t k = 0; k < n; k += 1 + n / 40)
		agree(s, k);
	agree(s, n - 1);
}

/* Bytes that matter to a JSON scanner, and some that do not. */
static const unsigned char flip_bytes[] = {
	'"', '\\', '{', '}', '[', ']', ',', ':', ' ', '\t', '0', '9', '-', '.', 'e', 'a', 'Z', 'T',
	'/', 'u', 0x00, 0x01, 0x1f, 0x7f, 0x80, 0xbf, 0xc0, 0xc3, 0xe2, 0xed, 0xf0, 0xf5, 0xff,
};

static void
byte_flips(const char *s, int count)
{
	size_t n = strlen(s);
	char *m = malloc(n + 1);

	if (m == NULL)
		abort();
	for (int i = 0; i < count; i++) {
		memcpy(m, s, n + 1);
		m[rnd((unsigned)n)] = (char)flip_bytes[rnd(sizeof(flip_bytes))];
		if (i % 3 == 0)   /* sometimes two */
			m[rnd((unsigned)n)] = (char)flip_bytes[rnd(sizeof(flip_bytes))];
		agree(m, n);
	}
	free(m);
}

/* Insert text at position pos of s, compare. */
static void
agree_insert(const char *s, size_t pos, const char *text)
{
	size_t n = strlen(s), t = strlen(text);
	char *m = malloc(n + t + 1);

	if (m == NULL)
		abort();
	memcpy(m, s, pos);
	memcpy(m + pos, text, t);
	memcpy(m + pos + t, s + pos, n - pos + 1);
	agree(m, n + t);
	free(m);
}

/* Duplicate members: the first top-level member and the first data member
 * repeated, extra unknown members, whitespace between tokens. */
static void
textual(const char *s)
{
	const char *data = strstr(s, "\"data\":{");
	size_t n = strlen(s);
	char member[256];
	const char *end;

	agree_insert(s, 1, "\"tenant\":\"acme\",");
	agree_insert(s, 1, "\"traceparent\":\"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\",");
	agree_insert(s, 1, "\"partitionkey\":\"x\",");
	agree_insert(s, 1, "\"Bad-Name\":1,");
	agree_insert(s, 1, " ");
	agree_insert(s, 0, " \r\n\t");
	agree_insert(s, n, " \n");
	agree_insert(s, n, "x");
	agree_insert(s, n, "{}");
	agree_insert(s, n - 1, ",");
	if (data != NULL) {
		size_t at = (size_t)(data - s) + 8;
		agree_insert(s, at, "\"zzz\":{\"a\":[1,2,{\"b\":null}]},");
		agree_insert(s, at, "\"zzz\":{\"a\":1,\"a\":2},");
		agree_insert(s, at, " ");
		/* the first data member again */
		end = strchr(s + at, ',');
		if (end != NULL && (size_t)(end - (s + at)) < sizeof(member) - 2 &&
		    memchr(s + at, '{', (size_t)(end - (s + at))) == NULL) {
			snprintf(member, sizeof(member), "%.*s,", (int)(end - (s + at)), s + at);
			agree_insert(s, at, member);
		}
	}
	/* whitespace after every structural character */
	{
		char *m = malloc(n * 3 + 1), *o = m;
		int in_str = 0;
		if (m == NULL)
			abort();
		for (size_t i = 0; i < n; i++) {
			*o++ = s[i];
			if (in_str) {
				if (s[i] == '\\')
					*o++ = s[++i];
				else if (s[i] == '"')
					in_str = 0;
			} else if (s[i] == '"') {
				in_str = 1;
			} else if (strchr("{}[],:", s[i]) != NULL) {
				*o++ = i % 2 ? ' ' : '\n';
			}
		}
		*o = '\0';
		agree_str(m);
		free(m);
	}
}

/* Replacement values for every member: each type, edges of each rule. */
static const char *const values[] = {
	"null", "true", "false", "0", "-0", "1", "-1", "7", "100", "2147483647", "2147483648",
	"9223372036854775807", "9223372036854775808", "123456789012345678901234567890",
	"1.0", "1.5", "1e3", "1E-2", "-0.0", "1e400", "1e-400", "01", "\"\"", "\"x\"", "\"a.b\"",
	"\"a b\"", "\"a*\"", "\"tool\"", "\"llm\"", "\"sleep\"", "\"retry\"", "\"transient\"",
	"\"timeout\"", "\"Tool\"", "\"2026-01-02T03:04:05Z\"", "\"2026-01-02T03:04:05.678Z\"",
	"\"1969-12-31T23:59:59.999Z\"", "\"2026-02-31T24:00:00Z\"", "\"\\u0041\"", "\"a\\/b\"",
	"\"a\\nb\"", "\"caf\xc3\xa9\"", "\"\xc3\x28\"", "\"\xc0\xaf\"", "\"\xe0\x80\xaf\"",
	"\"\xf0\x80\x80\xaf\"", "\"\xed\xa0\x80\"", "\"\xf4\x90\x80\x80\"", "\"\xe2\x82\"",
	"\"\xf0\x9f\x98\x80\"", "\"\xef\xbf\xbf\"", "\"\xc3\xc0\"",
	"\"\\b\\f\\n\\r\\t\\\"\\\\\\/\"", "\"\\x\"", "\"\\u00e9\\ud83d\\ude00\"", "\"\\u0000\"",
	"1.0000000000000000000000000000000000000000000000000000000000000000000001", "-1.5e-3", "\"\xdf\xbf\"", "\"a\x7f\"",
	"{\"\xc3\xa9\":1}", "{\"a\\/\":1,\"a/\":2}", "{\"\\u0061\":1}", "\"" FX_RUN_ID "\"",
	"\"0190F5E4-7A3B-7C1D-8E2F-0123456789AB\"", "\"acme\"", "\"ACME\"", "{}", "[]",
	"{\"a\":1}", "[1,\"x\",null,{\"b\":[true]}]", "{\"a\":1,\"a\":2}",
	"{\"code\":\"c\",\"message\":\"m\",\"class\":\"permanent\",\"retryable\":true}",
	"{\"code\":\"c\",\"message\":\"m\",\"class\":\"bad\",\"retryable\":true}",
	"{\"code\":\"c\",\"message\":\"m\",\"class\":\"timeout\",\"retryable\":1}",
	"{\"code\":\"\",\"message\":\"m\",\"class\":\"timeout\",\"retryable\":false}",
	"{\"code\":\"c\",\"message\":\"m\",\"class\":\"timeout\",\"retryable\":false,\"x\":1}",
	"{\"code\":\"c\",\"message\":\"m\",\"class\":\"timeout\",\"retryable\":false,\"step_id\":\"\"}",
	"{\"code\":\"c\",\"class\":\"timeout\",\"retryable\":false}",
	"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
	"\"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\"",
	"\"runstream.run.created\"", "\"runstream.run.nope\"", "\"runstream.Run.x\"", "\"1.0\"",
	"\"application/json\"", "\"runstream/orchestrator\"",
};

/* Every member of obj dropped, then replaced by each value; the event
 * is dumped sorted (the wire form) after each change. */
static void
members(json_t *ev, json_t *obj)
{
	char *keys[32];
	size_t nkeys = 0;
	const char *k;
	json_t *v, *keep;

	/* keys first: a key deleted and set again moves to the end */
	json_object_foreach(obj, k, v)
		if (nkeys < 32 && (keys[nkeys++] = strdup(k)) == NULL)
			abort();
	for (size_t ki = 0; ki < nkeys; ki++) {
		const char *key = keys[ki];
		keep = json_incref(json_object_get(obj, key));
		json_object_del(obj, key);
		agree_json(ev, JSON_COMPACT | JSON_SORT_KEYS);
		for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
			json_t *nv = json_loads(values[i], JSON_DECODE_ANY, NULL);
			if (nv == NULL) {
				/* not JSON by itself: splice the text in */
				char *text;
				json_object_set_new(obj, key, json_string("@@"));
				text = json_dumps(ev, JSON_COMPACT | JSON_SORT_KEYS);
				if (text != NULL) {
					char *at = strstr(text, "\"@@\""), *m;
					if (at != NULL && (m = malloc(strlen(text) + strlen(values[i]) + 1)) != NULL) {
						sprintf(m, "%.*s%s%s", (int)(at - text), text, values[i], at + 4);
						agree_str(m);
						free(m);
					}
				}
				free(text);
				continue;
			}
			json_object_set_new(obj, key, nv);
			agree_json(ev, JSON_COMPACT | JSON_SORT_KEYS);
		}
		json_object_set_new(obj, key, keep);
		free(keys[ki]);
	}
}

/* Keys reversed (any order is valid JSON), pretty-printed, \u-escaped. */
static void
shapes(json_t *ev)
{
	json_t *rev = json_object();
	const char *keys[32];
	size_t n = 0;
	const char *k;
	json_t *v;

	json_object_foreach(ev, k, v)
		if (n < 32)
			keys[n++] = k;
	while (n-- > 0)
		json_object_set(rev, keys[n], json_object_get(ev, keys[n]));
	agree_json(rev, JSON_COMPACT | JSON_PRESERVE_ORDER);
	agree_json(ev, JSON_INDENT(2) | JSON_SORT_KEYS);
	agree_json(ev, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII);
	agree_json(ev, JSON_COMPACT | JSON_SORT_KEYS | JSON_ESCAPE_SLASH);
	json_decref(rev);
}

/* runseq/id, time and traceparent variants (kept consistent or not). */
static void
envelope_edges(json_t *ev)
{
	static const char *const times[] = {
		"2026-01-02T03:04:05Z", "2026-01-02t03:04:05z", "2026-01-02 03:04:05.1Z",
		"2026-01-02T03:04:05.123456789Z", "2026-01-02T03:04:05+01:00", "2026-01-02T03:04:05-99:99",
		"2026-01-02T03:04:05+0100", "2026-01-02T03:04:05.Z", "2026-1-02T03:04:05Z",
		"2024-02-29T23:59:60Z", "2026-02-31T00:00:00Z", "2026-13-01T00:00:00Z",
		"1970-01-01T00:00:00Z", "1970-01-01T00:00:00+00:01", "1969-12-31T23:59:59.999Z",
		"1900-01-01T00:00:00Z", "9999-12-31T23:59:59.999Z", "2026-01-02T03:04:05Zx",
		"2026-01-02T03:04:05", "2026-01-02T03:04:5Z", "2026-01-32T00:00:00Z",
		"2026-01-02T24:00:00Z", "2026-01-02T23:60:00Z", "0000-01-01T00:00:00Z",
		"2026-01-02T03:04:05.1234567890123456789012345678901234567890123456789012345Z",
		"2026-01-02x03:04:05Z", "2026-01-02T03:04:05.1", "2026-01-02T03:04:05+01:0a",
		"2026-01-02T03-04-05Z", "2026-01-02T03:04:05+01:00x", "2026-01-02T03:04:05.999999Z",
	};
	static const long long seqs[] = { 0, 1, 9, 10, 99, 2147483647LL, 2147483648LL, -1 };
	json_t *keep_time = json_incref(json_object_get(ev, "time"));
	json_t *keep_seq = json_incref(json_object_get(ev, "runseq"));
	json_t *keep_id = json_incref(json_object_get(ev, "id"));
	const char *subject = json_string_value(json_object_get(ev, "subject"));
	char id[128];

	for (size_t i = 0; i < sizeof(times) / sizeof(times[0]); i++) {
		json_object_set_new(ev, "time", json_string(times[i]));
		agree_json(ev, JSON_COMPACT | JSON_SORT_KEYS);
	}
	json_object_set(ev, "time", keep_time);
	for (size_t i = 0; subject != NULL && i < sizeof(seqs) / sizeof(seqs[0]); i++) {
		json_object_set_new(ev, "runseq", json_integer(seqs[i]));
		snprintf(id, sizeof(id), "%s-%lld", subject, seqs[i]);
		json_object_set_new(ev, "id", json_string(id));
		agree_json(ev, JSON_COMPACT | JSON_SORT_KEYS);
		snprintf(id, sizeof(id), "%s-0%lld", subject, seqs[i]);
		json_object_set_new(ev, "id", json_string(id));
		agree_json(ev, JSON_COMPACT | JSON_SORT_KEYS);
	}
	json_object_set(ev, "runseq", keep_seq);
	json_object_set(ev, "id", keep_id);
	json_decref(keep_time);
	json_decref(keep_seq);
	json_decref(keep_id);
}

/* A free-form member of data replaced by d nested arrays: with the
 * envelope and data that is d + 2 levels, around the strict cap of 64. */
static void
depths(json_t *ev)
{
	json_t *data = json_object_get(ev, "data");
	char *text, *at, *m, *nest;
	const char *k;
	json_t *v;

	/* a free-form member of data, if the type has one */
	json_object_foreach(data, k, v)
		if (json_is_object(v) || json_is_null(v) || json_is_array(v))
			break;
	if (k == NULL || strcmp(k, "error") == 0)
		return;
	for (int d = 58; d <= 66; d++) {
		json_t *keep = json_incref(v);
		json_object_set_new(data, k, json_string("@@"));
		text = json_dumps(ev, JSON_COMPACT | JSON_SORT_KEYS);
		json_object_set_new(data, k, keep);
		v = keep;
		if (text == NULL || (at = strstr(text, "\"@@\"")) == NULL ||
		    (nest = malloc((size_t)d * 2 + 2)) == NULL) {
			free(text);
			return;
		}
		nest[d * 2] = '\0';
		for (int i = 0; i < d; i++) {
			nest[i] = '[';
			nest[d * 2 - 1 - i] = ']';
		}
		/* and as objects: {"a":{"a":...{}}} */
		if ((m = malloc(strlen(text) + (size_t)d * 6 + 1)) != NULL) {
			size_t o = (size_t)(at - text);
			memcpy(m, text, o);
			for (int i = 0; i < d - 1; i++, o += 5)
				memcpy(m + o, "{\"a\":", 5);
			m[o++] = '{';
			for (int i = 0; i < d; i++)
				m[o++] = '}';
			strcpy(m + o, at + 4);
			agree_str(m);
			free(m);
		}
		if ((m = malloc(strlen(text) + (size_t)d * 2 + 1)) != NULL) {
			sprintf(m, "%.*s%s%s", (int)(at - text), text, nest, at + 4);
			agree_str(m);
			free(m);
		}
		free(nest);
		free(text);
	}
}

static void
mutate(const char *s, int deep)
{
	json_t *ev = json_loads(s, 0, NULL);

	agree_str(s);
	truncations(s);
	byte_flips(s, deep ? 200 : 20);
	textual(s);
	if (ev == NULL)
		return;
	shapes(ev);
	if (deep) {
		json_t *data = json_object_get(ev, "data"), *err;
		envelope_edges(ev);
		members(ev, ev);
		if (json_is_object(data))
			members(ev, data);
		if ((err = json_object_get(data, "error")) != NULL && json_is_object(err))
			members(ev, err);
		depths(ev);
	}
	json_decref(ev);
}

/* Where tests/fixtures is: argv[1], or next to this source file. */
static const char *
fixtures_dir(int argc, char **argv, char *buf, size_t cap)
{
	char src[1024];

	if (argc > 1)
		return argv[1];
	snprintf(src, sizeof(src), "%s", __FILE__);
	snprintf(buf, cap, "%s/../fixtures", dirname(src));
	return buf;
}

/* rs_event_raw_member: on every event of the corpus, "data" is found and
 * its bytes are the value jansson reads there; so are the other top-level
 * members; a member that is not there is not found. */
static void
raw_members(const char *text)
{
	static const char *keys[] = { "data", "id", "runseq", "time", "type", "specversion",
	                              "absent", "dat" };
	size_t len = strlen(text);
	json_t *o = json_loadb(text, len, 0, NULL);

	CHECK(o != NULL);
	for (size_t k = 0; o != NULL && k < sizeof(keys) / sizeof(keys[0]); k++) {
		json_t *want = json_object_get(o, keys[k]), *got;
		const char *vs = NULL;
		size_t vn = 0;
		int found = rs_event_raw_member(text, len, keys[k], &vs, &vn);

		CHECK(found == (want != NULL) || (!found && want != NULL && strcmp(keys[k], "data") != 0));
		if (!found || want == NULL)
			continue;
		got = json_loadb(vs, vn, JSON_DECODE_ANY, NULL);
		CHECK(got != NULL && json_equal(got, want));
		json_decref(got);
	}
	json_decref(o);
}

int
main(int argc, char **argv)
{
	corpus c = { 0 };
	char dirbuf[1100];
	const char *dir = fixtures_dir(argc, argv, dirbuf, sizeof(dirbuf));
	rs_event_fast_stats st;
	size_t files, nfx;

	json_object_seed(1);
	add_fixture_events(&c);
	nfx = c.n;
	files = add_fixture_files(&c, dir);
	if (files == 0) {
		fprintf(stderr, "no fixtures in %s (give the directory as argument)\n", dir);
		CHECK(files > 0);
	}
	/* Every fixture event: as is, then mutated (the fixture events and
	 * one line in five of the recorded histories deeply). */
	for (size_t i = 0; i < c.n; i++) {
		rs_event_fast_get_stats(&st);
		unsigned long long before = st.fast;
		agree_str(c.text[i]);
		rs_event_fast_get_stats(&st);
		/* the v1.0 types must really take the fast path, else this test
		 * proves nothing about it */
		if (strstr(c.text[i], "\"runstream.http.") == NULL &&
		    strstr(c.text[i], "\"runstream.llm.") == NULL && st.fast != before + 1) {
			fprintf(stderr, "fast path fell back on a plain event (is a data table in "
			        "common/rs_event_fast.c behind rs_event.c's?):\n");
			show("input", c.text[i], strlen(c.text[i]));
			CHECK(0);
		}
	}
	for (size_t i = 0; i < c.n; i++)
		raw_members(c.text[i]);
	for (size_t i = 0; i < c.n; i++)
		mutate(c.text[i], i < nfx || i % 5 == 0);
	rs_event_fast_get_stats(&st);
	printf("test_event_fast: %zu events (%zu from %zu files), %llu cases "
	       "(fast path %llu, fallback %llu), %d checks, %d failures\n",
	       c.n, c.n - nfx, files, cases, st.fast, st.fallback, checks, failures);
	corpus_free(&c);
	return failures == 0 ? 0 : 1;
}
