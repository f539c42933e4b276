/*
 * rs_event_encode.c - encoding run events: the envelope check, the direct
 * writer (canonical JSON straight into a reusable buffer, keys in sorted
 * order, walking each type's field table: the orchestrator's hot path) and
 * the tree-built encoding through jansson that it must match byte for byte
 * (tests/unit/test_event.c compares them) and falls back to. Split from
 * rs_event.c, which keeps the names, the field tables and decoding.
 */
#include "rs_event_int.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rs_id.h"
#include "rs_json.h"
#include "rs_time.h"

/* ---- the envelope --------------------------------------------------- */

static int
envelope_ok(const rs_event *ev)
{
	return (unsigned)ev->type < RS_EV__COUNT && rs_id_is_uuid(ev->run_id) &&
	       rs_id_is_token(ev->tenant, 64) && ev->runseq >= 1 &&
	       ev->runseq <= (uint64_t)EV_RUNSEQ_MAX && ev->time_ms >= 0 &&
	       (ev->traceparent[0] == '\0' || rs_traceparent_valid(ev->traceparent)) &&
	       (ev->source == NULL || ev->source[0] != '\0');
}

static json_t *
envelope_encode(const rs_event *ev, json_t *data)
{
	char id[80], tbuf[40], type[64];
	json_t *o;

	rs_event_id(ev->run_id, ev->runseq, id, sizeof(id));
	rs_time_rfc3339(ev->time_ms, tbuf, sizeof(tbuf));
	snprintf(type, sizeof(type), EV_TYPE_PREFIX "%s", rs_event_type_name(ev->type));
	o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:s, s:O}",
	              "specversion", "1.0", "id", id,
	              "source", ev->source != NULL ? ev->source : EV_DEFAULT_SOURCE,
	              "type", type, "subject", ev->run_id, "time", tbuf,
	              "datacontenttype", "application/json", "runseq", (json_int_t)ev->runseq,
	              "tenant", ev->tenant, "data", data);
	if (o != NULL && ev->traceparent[0] != '\0' &&
	    json_object_set_new(o, "traceparent", json_string(ev->traceparent)) != 0) {
		json_decref(o);
		return NULL;
	}
	return o;
}

/* The tree-built encoding: the reference the direct writer below must
 * match byte for byte (tests/unit/test_event.c compares them), and the
 * fallback for envelope strings the direct writer does not handle. */
static rs_status
encode_tree(const rs_event *ev, json_t *data, char **out, size_t *len)
{
	json_t *o = envelope_encode(ev, data);

	if (o == NULL)
		return RS_ENOMEM;
	*out = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(o);
	if (*out == NULL)
		return RS_ENOMEM;
	*len = strlen(*out);
	return RS_OK;
}

/* A growable output buffer for the direct writer; keeps a NUL after len. */
typedef struct {
	char **buf;
	size_t *cap;
	size_t len;
	int oom;
} ev_out;

static void
out_put(ev_out *w, const char *p, size_t n)
{
	size_t need = w->len + n + 1;

	if (w->oom)
		return;
	if (need > *w->cap) {
		size_t c = *w->cap ? *w->cap : 512;
		char *b;
		while (c < need)
			c *= 2;
		if ((b = realloc(*w->buf, c)) == NULL) {
			w->oom = 1;
			return;
		}
		*w->buf = b;
		*w->cap = c;
	}
	memcpy(*w->buf + w->len, p, n);
	w->len += n;
	(*w->buf)[w->len] = '\0';
}

static void
out_str(ev_out *w, const char *s)
{
	out_put(w, s, strlen(s));
}

static int
dump_cb(const char *p, size_t n, void *arg)
{
	ev_out *w = arg;

	out_put(w, p, n);
	return w->oom ? -1 : 0;
}

/* Printable ASCII without '"' or '\\': written as is, exactly what
 * jansson would write. Anything else goes the tree way. */
static int
plain(const char *s)
{
	for (; *s != '\0'; s++)
		if (*s < 0x20 || *s > 0x7e || *s == '"' || *s == '\\')
			return 0;
	return 1;
}

static size_t u64_digits(uint64_t v, char out[20]);

/*
 * data written directly, without building a jansson tree: the same bytes
 * json_dump_callback(JSON_COMPACT | JSON_SORT_KEYS) writes for the tree
 * rs_event_data_encode() builds (tests/unit/test_event.c compares both for every
 * fixture), at a fraction of the cost: no object, no key array to sort per
 * object, no callback per token. A string that is not plain ASCII is
 * written by jansson itself (json_string validates UTF-8, dump escapes),
 * and so is a real, so escaping and number formatting stay jansson's.
 */
static int
jw_one(const json_t *v, ev_out *w)
{
	if (json_dump_callback(v, dump_cb, w, JSON_COMPACT | JSON_ENCODE_ANY) != 0)
		return -1;
	return 0;
}

/* A C string as a JSON string; -1 if it is not valid UTF-8. */
static int
jw_cstr(const char *str, size_t n, ev_out *w)
{
	json_t *j;
	int rc;

	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)str[i];
		if (c < 0x20 || c > 0x7e || c == '"' || c == '\\')
			goto slow;
	}
	out_put(w, "\"", 1);
	out_put(w, str, n);
	out_put(w, "\"", 1);
	return 0;
slow:
	if ((j = json_stringn(str, n)) == NULL)
		return -1;
	rc = jw_one(j, w);
	json_decref(j);
	return rc;
}

static void
jw_int(int64_t i, ev_out *w)
{
	char num[20];
	uint64_t u = i < 0 ? 0 - (uint64_t)i : (uint64_t)i;

	if (i < 0)
		out_put(w, "-", 1);
	out_put(w, num, u64_digits(u, num));
}

typedef struct {
	const char *k;
	size_t n;
	json_t *v;
} jw_member;

/* jansson's key order: bytes, then length. */
static int
jw_before(const jw_member *a, const jw_member *b)
{
	int c = memcmp(a->k, b->k, a->n < b->n ? a->n : b->n);

	return c < 0 || (c == 0 && a->n < b->n);
}

static int
jw_cmp(const void *a, const void *b)
{
	return jw_before(a, b) ? -1 : jw_before(b, a);
}

static int jw_value(const json_t *v, ev_out *w, int depth);

static int
jw_object(const json_t *o, ev_out *w, int depth)
{
	jw_member small[16], *m = small, t;
	size_t n = json_object_size(o), i = 0, j;
	const char *k;
	json_t *v;
	int rc = 0;

	if (n > 16 && (m = malloc(n * sizeof(*m))) == NULL)
		return -1;
	json_object_foreach((json_t *)o, k, v) {
		m[i].k = k;
		m[i].n = json_object_iter_key_len(json_object_key_to_iter(k));
		m[i].v = v;
		i++;
	}
	if (n > 16) {
		qsort(m, n, sizeof(*m), jw_cmp);
	} else {
		for (i = 1; i < n; i++)   /* insertion sort: most objects are small */
			for (j = i; j > 0 && jw_before(&m[j], &m[j - 1]); j--) {
				t = m[j];
				m[j] = m[j - 1];
				m[j - 1] = t;
			}
	}
	out_put(w, "{", 1);
	for (i = 0; i < n && rc == 0; i++) {
		if (i > 0)
			out_put(w, ",", 1);
		rc = jw_cstr(m[i].k, m[i].n, w);
		if (rc == 0) {
			out_put(w, ":", 1);
			rc = jw_value(m[i].v, w, depth + 1);
		}
	}
	out_put(w, "}", 1);
	if (m != small)
		free(m);
	return rc;
}

static int
jw_value(const json_t *v, ev_out *w, int depth)
{
	size_t i;
	int rc = 0;

	if (depth > 256)   /* deeper than anything we parse: let jansson do it */
		return jw_one(v, w);
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		return jw_object(v, w, depth);
	case JSON_ARRAY:
		out_put(w, "[", 1);
		for (i = 0; i < json_array_size(v) && rc == 0; i++) {
			if (i > 0)
				out_put(w, ",", 1);
			rc = jw_value(json_array_get(v, i), w, depth + 1);
		}
		out_put(w, "]", 1);
		return rc;
	case JSON_STRING:
		return jw_cstr(json_string_value(v), json_string_length(v), w);
	case JSON_INTEGER:
		jw_int((int64_t)json_integer_value(v), w);
		return 0;
	case JSON_TRUE:
		out_str(w, "true");
		return 0;
	case JSON_FALSE:
		out_str(w, "false");
		return 0;
	case JSON_NULL:
		out_str(w, "null");
		return 0;
	default:   /* JSON_REAL: jansson's formatting */
		return jw_one(v, w);
	}
}

/* An error object; same rules as rs_err_encode. Keys in sorted order. */
static int
jw_err(const rs_err *e, ev_out *w)
{
	if (e->code == NULL || *e->code == '\0' || e->message == NULL ||
	    (unsigned)e->cls >= NELEM(rs_event_errclass_names) ||
	    (e->step_id != NULL && *e->step_id == '\0'))
		return -1;
	out_str(w, "{\"class\":\"");
	out_str(w, rs_event_errclass_names[e->cls]);
	out_str(w, "\",\"code\":");
	if (jw_cstr(e->code, strlen(e->code), w) != 0)
		return -1;
	out_str(w, ",\"message\":");
	if (jw_cstr(e->message, strlen(e->message), w) != 0)
		return -1;
	out_str(w, e->retryable ? ",\"retryable\":true" : ",\"retryable\":false");
	if (e->step_id != NULL) {
		out_str(w, ",\"step_id\":");
		if (jw_cstr(e->step_id, strlen(e->step_id), w) != 0)
			return -1;
	}
	out_put(w, "}", 1);
	return 0;
}

/* One member's value; -1 where field_value() would give NULL. */
static int
jw_field(const rs_field *f, const void *s, ev_out *w)
{
	char tbuf[40];
	const char *str;
	const json_t *j;
	int64_t i;

	if (rs_field_is_string(f->kind)) {
		str = *RS_FIELD_CMEMBER(s, f, char *);
		if (str == NULL || !rs_field_string_ok(f, str, strlen(str)))
			return -1;
		return jw_cstr(str, strlen(str), w);
	}
	switch (f->kind) {
	case RS_F_INT:
		if ((i = *RS_FIELD_CMEMBER(s, f, int64_t)) < f->min)
			return -1;
		jw_int(i, w);
		return 0;
	case RS_F_TIME:
		if ((i = *RS_FIELD_CMEMBER(s, f, int64_t)) < 0)
			return -1;
		rs_time_rfc3339(i, tbuf, sizeof(tbuf));
		return jw_cstr(tbuf, strlen(tbuf), w);
	case RS_F_BOOL:
		out_str(w, *RS_FIELD_CMEMBER(s, f, int) != 0 ? "true" : "false");
		return 0;
	case RS_F_JSON:
		j = *RS_FIELD_CMEMBER(s, f, json_t *);
		if (j == NULL) {
			out_str(w, "null");
			return 0;
		}
		return jw_value(j, w, 0);
	case RS_F_OBJECT:
	case RS_F_ARRAY:
	case RS_F_NUMBER:
		j = *RS_FIELD_CMEMBER(s, f, json_t *);
		if (!(f->kind == RS_F_OBJECT ? json_is_object(j) :
		      f->kind == RS_F_ARRAY ? json_is_array(j) : json_is_number(j)))
			return -1;
		return jw_value(j, w, 0);
	case RS_F_ERR:
		return jw_err(RS_FIELD_CMEMBER(s, f, rs_err), w);
	case RS_F_PURPOSE:
		i = *RS_FIELD_CMEMBER(s, f, rs_timer_purpose);
		if (i < 0 || i >= (int64_t)NELEM(rs_event_purpose_names))
			return -1;
		return jw_cstr(rs_event_purpose_names[i], strlen(rs_event_purpose_names[i]), w);
	default:
		return -1;
	}
}

/* The data object of type t from the struct at s; RS_EINVAL where
 * rs_event_data_encode() would fail. */
static rs_status
data_write(rs_event_type t, const void *s, ev_out *w)
{
	size_t n = 0, i, j, k = 0;
	const rs_field *f = rs_event_fields(t, &n), *order[32], *tmp;

	if (n > NELEM(order))
		return RS_EINVAL;
	for (i = 0; i < n; i++)
		if (!(f[i].optional && rs_field_absent(&f[i], s)))
			order[k++] = &f[i];
	for (i = 1; i < k; i++)
		for (j = i; j > 0 && strcmp(order[j]->name, order[j - 1]->name) < 0; j--) {
			tmp = order[j];
			order[j] = order[j - 1];
			order[j - 1] = tmp;
		}
	out_put(w, "{", 1);
	for (i = 0; i < k; i++) {
		if (i > 0)
			out_put(w, ",", 1);
		out_put(w, "\"", 1);
		out_str(w, order[i]->name);
		out_put(w, "\":", 2);
		if (jw_field(order[i], s, w) != 0)
			return w->oom ? RS_ENOMEM : RS_EINVAL;
	}
	out_put(w, "}", 1);
	return w->oom ? RS_ENOMEM : RS_OK;
}

/*
 * The envelope written directly in sorted key order (data, datacontenttype,
 * id, runseq, source, specversion, subject, tenant, time, traceparent, type)
 * around data written by data_write(): the orchestrator encodes every event
 * it appends, and building a JSON tree for the envelope only to dump it
 * again was a quarter of its CPU per event.
 */
/* Decimal digits of v into out (no NUL); returns how many. */
static size_t
u64_digits(uint64_t v, char out[20])
{
	char tmp[20];
	size_t n = 0, i;

	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	for (i = 0; i < n; i++)
		out[i] = tmp[n - 1 - i];
	return n;
}

static rs_status
encode_direct(const rs_event *ev, ev_out *w)
{
	rs_status st;
	/* A decision stamps all its events with one time: format it once. */
	static _Thread_local int64_t t_ms = -1;
	static _Thread_local char tbuf[40];
	char num[20];
	size_t nd;
	const char *src = ev->source != NULL ? ev->source : EV_DEFAULT_SOURCE;

	if (ev->time_ms != t_ms) {
		rs_time_rfc3339(ev->time_ms, tbuf, sizeof(tbuf));
		t_ms = ev->time_ms;
	}
	nd = u64_digits(ev->runseq, num);
	out_str(w, "{\"data\":");
	st = data_write(ev->type, &ev->d, w);
	if (st != RS_OK)
		return st;
	out_str(w, ",\"datacontenttype\":\"application/json\",\"id\":\"");
	out_str(w, ev->run_id);
	out_put(w, "-", 1);
	out_put(w, num, nd);
	out_str(w, "\",\"runseq\":");
	out_put(w, num, nd);
	out_str(w, ",\"source\":\"");
	out_str(w, src);
	out_str(w, "\",\"specversion\":\"1.0\",\"subject\":\"");
	out_str(w, ev->run_id);
	out_str(w, "\",\"tenant\":\"");
	out_str(w, ev->tenant);
	out_str(w, "\",\"time\":\"");
	out_str(w, tbuf);
	if (ev->traceparent[0] != '\0') {
		out_str(w, "\",\"traceparent\":\"");
		out_str(w, ev->traceparent);
	}
	out_str(w, "\",\"type\":\"" EV_TYPE_PREFIX);
	out_str(w, rs_event_type_name(ev->type));
	out_str(w, "\"}");
	return w->oom ? RS_ENOMEM : RS_OK;
}

rs_status
rs_event_encode_into(const rs_event *ev, char **buf, size_t *cap, size_t *len)
{
	json_t *data = NULL;
	char *tree = NULL;
	size_t tlen = 0;
	ev_out w = { buf, cap, 0, 0 };
	rs_status st = RS_EINVAL;

	*len = 0;
	if (!envelope_ok(ev))
		goto cleanup;
	if (plain(ev->source != NULL ? ev->source : EV_DEFAULT_SOURCE)) {
		st = encode_direct(ev, &w);
		*len = w.len;
		goto cleanup;
	}
	data = rs_event_data_encode(ev->type, &ev->d);
	if (data == NULL)
		goto cleanup;
	if ((st = encode_tree(ev, data, &tree, &tlen)) != RS_OK)
		goto cleanup;
	out_put(&w, tree, tlen);
	st = w.oom ? RS_ENOMEM : RS_OK;
	*len = w.len;
cleanup:
	free(tree);
	json_decref(data);
	return st;
}

rs_status
rs_event_encode(const rs_event *ev, char **out, size_t *len)
{
	size_t cap = 0, n = 0;
	rs_status st;

	*out = NULL;
	st = rs_event_encode_into(ev, out, &cap, &n);
	if (st != RS_OK) {
		free(*out);
		*out = NULL;
		return st;
	}
	if (len != NULL)
		*len = n;
	return RS_OK;
}

rs_status
rs_event_encode_tree(const rs_event *ev, char **out, size_t *len)
{
	json_t *data = NULL;
	size_t n = 0;
	rs_status st = RS_EINVAL;

	*out = NULL;
	if (!envelope_ok(ev))
		return RS_EINVAL;
	if ((data = rs_event_data_encode(ev->type, &ev->d)) == NULL)
		return RS_EINVAL;
	st = encode_tree(ev, data, out, &n);
	json_decref(data);
	if (st == RS_OK && len != NULL)
		*len = n;
	return st;
}
