/*
 * rs_template.c - parse, check and render "{{ ... }}" templates (see
 * rs_template.h for the language). The scanner is shared by checking and
 * rendering so that what validation accepts is exactly what renders.
 */
#include "rs_template.h"
#include "rs_mem.h"
#include "rs_json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXPR_MAX 512

/* A growable text buffer for interpolation. Allocation failure aborts:
 * like Redis, we treat OOM as fatal rather than thread it everywhere. */
typedef struct {
	char *s;
	size_t len, cap;
} sbuf;

static void
sbuf_add(sbuf *b, const char *p, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t ncap = b->cap ? b->cap : 64;
		while (ncap < b->len + n + 1)
			ncap *= 2;
		b->s = rs_xrealloc(b->s, ncap);
		b->cap = ncap;
	}
	memcpy(b->s + b->len, p, n);
	b->len += n;
	b->s[b->len] = '\0';
}

static int
is_path_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '_' || c == '-';
}

static int
is_id_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

/* Next dot-separated token of expr[*pos..len): sets *tok, *toklen. The
 * caller has ruled out a trailing dot, so every token is followed by a dot
 * or the end. */
static int
next_token(const char *expr, size_t len, size_t *pos, const char **tok, size_t *toklen)
{
	size_t start = *pos, i = start;

	if (start >= len)
		return 0;
	while (i < len && expr[i] != '.')
		i++;
	*tok = expr + start;
	*toklen = i - start;
	*pos = (i < len) ? i + 1 : i;
	return 1;
}

rs_status
rs_template_parse_expr(const char *expr, size_t len, char *step_id, size_t idcap,
                       char *err, size_t cap)
{
	static const char *shape = "expected input[.<path>] or steps.<id>.output[.<path>]";
	size_t pos = 0, n, ntok = 0, i;
	const char *tok;

	step_id[0] = '\0';
	if (len == 0 || expr[len - 1] == '.') {
		snprintf(err, cap, "%s", shape);
		return RS_EINVAL;
	}
	while (next_token(expr, len, &pos, &tok, &n)) {
		if (n == 0) {
			snprintf(err, cap, "empty path segment (%s)", shape);
			return RS_EINVAL;
		}
		for (i = 0; i < n; i++) {
			if (!is_path_char(tok[i])) {
				snprintf(err, cap, "invalid character '%c' in path", tok[i]);
				return RS_EINVAL;
			}
		}
		if (ntok == 0 && !(n == 5 && memcmp(tok, "input", 5) == 0) &&
		    !(n == 5 && memcmp(tok, "steps", 5) == 0))
			goto bad_shape;
		if (ntok == 1 && expr[0] == 's') {
			for (i = 0; i < n; i++)
				if (!is_id_char(tok[i]))
					goto bad_shape;
			if (n > RS_TEMPLATE_MAX_ID || n + 1 > idcap)
				goto bad_shape;
			memcpy(step_id, tok, n);
			step_id[n] = '\0';
		}
		if (ntok == 2 && expr[0] == 's' && !(n == 6 && memcmp(tok, "output", 6) == 0))
			goto bad_shape;
		ntok++;
	}
	if (expr[0] == 's' && ntok < 3)
		goto bad_shape;
	return RS_OK;

bad_shape:
	step_id[0] = '\0';
	snprintf(err, cap, "%s", shape);
	return RS_EINVAL;
}

int
rs_template_secret_ref(const char *expr, size_t len, char *name, size_t cap)
{
	size_t n;

	if (len <= 8 || memcmp(expr, "secrets.", 8) != 0)
		return 0;
	n = len - 8;
	if (n > 64 || n + 1 > cap)
		return 0;
	for (size_t i = 8; i < len; i++)
		if (!is_path_char(expr[i]))
			return 0;
	memcpy(name, expr + 8, n);
	name[n] = '\0';
	return 1;
}

json_t *
rs_template_lookup(json_t *ctx, const char *expr)
{
	return rs_json_path(ctx, expr);
}

/*
 * Scanning. A template string is a sequence of literal text and "{{expr}}"
 * pieces; scan() calls piece() for each in order. Literal "}}" outside a
 * template is just text.
 */
typedef rs_status (*piece_fn)(const char *p, size_t n, int is_expr, void *ud,
                              char *err, size_t cap);

static rs_status
scan(const char *s, piece_fn piece, void *ud, char *err, size_t cap)
{
	const char *p = s, *open, *close, *inner;
	rs_status st;

	while ((open = strstr(p, "{{")) != NULL) {
		if (open > p && (st = piece(p, (size_t)(open - p), 0, ud, err, cap)) != RS_OK)
			return st;
		close = strstr(open + 2, "}}");
		if (close == NULL) {
			snprintf(err, cap, "unclosed \"{{\"");
			return RS_EINVAL;
		}
		inner = strstr(open + 2, "{{");
		if (inner != NULL && inner < close) {
			snprintf(err, cap, "nested \"{{\"");
			return RS_EINVAL;
		}
		/* Trim blanks: "{{ input.a }}" is allowed. */
		const char *a = open + 2, *b = close;
		while (a < b && (*a == ' ' || *a == '\t'))
			a++;
		while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
			b--;
		if ((size_t)(b - a) >= EXPR_MAX) {
			snprintf(err, cap, "expression longer than %d bytes", EXPR_MAX - 1);
			return RS_EINVAL;
		}
		if ((st = piece(a, (size_t)(b - a), 1, ud, err, cap)) != RS_OK)
			return st;
		p = close + 2;
	}
	if (*p != '\0')
		return piece(p, strlen(p), 0, ud, err, cap);
	return RS_OK;
}

/* 1 if s is exactly one "{{expr}}" with nothing around it. */
static int
whole_template(const char *s)
{
	size_t n = strlen(s);
	const char *close;

	if (n < 4 || strncmp(s, "{{", 2) != 0 || strcmp(s + n - 2, "}}") != 0)
		return 0;
	close = strstr(s + 2, "}}");
	return close == s + n - 2;
}

/* --- checking --- */

typedef struct {
	rs_template_step_known known;
	void *ud;
	char step_id[RS_TEMPLATE_MAX_ID + 1];
	int unknown;  /* set when a referenced step does not exist */
	int secrets;  /* "{{secrets.NAME}}" allowed here */
} check_ctx;

static rs_status
check_piece(const char *p, size_t n, int is_expr, void *ud, char *err, size_t cap)
{
	check_ctx *c = ud;
	char name[RS_TEMPLATE_MAX_ID + 1];

	if (!is_expr)
		return RS_OK;
	if (rs_template_secret_ref(p, n, name, sizeof(name))) {
		if (c->secrets)
			return RS_OK;
		snprintf(err, cap, "secrets.<name> may be used only in http header values");
		return RS_EINVAL;
	}
	if (rs_template_parse_expr(p, n, c->step_id, sizeof(c->step_id), err, cap) != RS_OK)
		return RS_EINVAL;
	if (c->step_id[0] != '\0' && !c->known(c->step_id, c->ud)) {
		c->unknown = 1;
		return RS_EINVAL;
	}
	return RS_OK;
}

static rs_status
check_string(const char *s, const char *path, check_ctx *c, char *err, size_t cap)
{
	char why[256];

	c->unknown = 0;
	if (scan(s, check_piece, c, why, sizeof(why)) == RS_OK)
		return RS_OK;
	if (c->unknown)
		snprintf(err, cap, "%s: unknown step \"%s\" in template \"%s\"", path,
		         c->step_id, s);
	else
		snprintf(err, cap, "%s: malformed template \"%s\": %s", path, s, why);
	return RS_EINVAL;
}

static rs_status
check_value(json_t *v, const char *path, check_ctx *c, char *err, size_t cap)
{
	char sub[512];
	const char *k;
	json_t *child;
	size_t i;

	/* A path deeper than sub is truncated: fine for a message. (The
	 * return value of snprintf is looked at only to tell the compiler so.) */
	if (json_is_string(v))
		return check_string(json_string_value(v), path, c, err, cap);
	if (json_is_object(v)) {
		json_object_foreach(v, k, child) {
			if (snprintf(sub, sizeof(sub), "%s.%s", path, k) >= (int)sizeof(sub))
				sub[sizeof(sub) - 1] = '\0';
			if (check_value(child, sub, c, err, cap) != RS_OK)
				return RS_EINVAL;
		}
	} else if (json_is_array(v)) {
		json_array_foreach(v, i, child) {
			if (snprintf(sub, sizeof(sub), "%s[%zu]", path, i) >= (int)sizeof(sub))
				sub[sizeof(sub) - 1] = '\0';
			if (check_value(child, sub, c, err, cap) != RS_OK)
				return RS_EINVAL;
		}
	}
	return RS_OK;
}

static rs_status
check(json_t *tmpl, const char *path, rs_template_step_known known, void *ud, int secrets,
      char *err, size_t cap)
{
	check_ctx c;

	memset(&c, 0, sizeof(c));
	c.known = known;
	c.ud = ud;
	c.secrets = secrets;
	return check_value(tmpl, path, &c, err, cap);
}

rs_status
rs_template_check(json_t *tmpl, const char *path, rs_template_step_known known,
                  void *ud, char *err, size_t cap)
{
	return check(tmpl, path, known, ud, 0, err, cap);
}

rs_status
rs_template_check_secrets(json_t *tmpl, const char *path, rs_template_step_known known,
                          void *ud, char *err, size_t cap)
{
	return check(tmpl, path, known, ud, 1, err, cap);
}

/* --- rendering --- */

typedef struct {
	json_t *ctx;
	sbuf out;
} render_ctx;

static rs_status
render_piece(const char *p, size_t n, int is_expr, void *ud, char *err, size_t cap)
{
	render_ctx *r = ud;
	char expr[EXPR_MAX], id[RS_TEMPLATE_MAX_ID + 1];
	json_t *v;
	char *dump;

	if (!is_expr) {
		sbuf_add(&r->out, p, n);
		return RS_OK;
	}
	if (rs_template_secret_ref(p, n, id, sizeof(id))) {
		/* Never resolved here: the executor substitutes it at call time. */
		sbuf_add(&r->out, "{{secrets.", 10);
		sbuf_add(&r->out, id, strlen(id));
		sbuf_add(&r->out, "}}", 2);
		return RS_OK;
	}
	if (rs_template_parse_expr(p, n, id, sizeof(id), err, cap) != RS_OK)
		return RS_EINVAL;
	memcpy(expr, p, n);
	expr[n] = '\0';
	v = rs_template_lookup(r->ctx, expr);
	if (v == NULL || json_is_null(v))
		return RS_OK;
	if (json_is_string(v)) {
		sbuf_add(&r->out, json_string_value(v), json_string_length(v));
		return RS_OK;
	}
	dump = rs_json_dump(v);
	if (dump == NULL)
		rs_oom(0);   /* jansson could not allocate */
	sbuf_add(&r->out, dump, strlen(dump));
	free(dump);
	return RS_OK;
}

static rs_status
render_string(json_t *str, json_t *ctx, json_t **out, char *err, size_t cap)
{
	const char *s = json_string_value(str);
	char expr[EXPR_MAX];
	render_ctx r;
	rs_status st;

	if (strstr(s, "{{") == NULL) {
		*out = json_incref(str);
		return RS_OK;
	}
	memset(&r, 0, sizeof(r));
	r.ctx = ctx;
	if ((st = scan(s, render_piece, &r, err, cap)) != RS_OK)
		goto cleanup;
	if (whole_template(s)) {
		/* Type-keeping: re-derive the trimmed expression. */
		const char *a = s + 2, *b = s + strlen(s) - 2;
		while (a < b && (*a == ' ' || *a == '\t'))
			a++;
		while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
			b--;
		memcpy(expr, a, (size_t)(b - a));
		expr[b - a] = '\0';
		char name[RS_TEMPLATE_MAX_ID + 1];
		if (rs_template_secret_ref(expr, strlen(expr), name, sizeof(name))) {
			*out = json_stringn(r.out.s, r.out.len);  /* the reference itself */
		} else {
			json_t *v = rs_template_lookup(ctx, expr);
			*out = v ? json_deep_copy(v) : json_null();
		}
	} else {
		*out = json_stringn(r.out.s ? r.out.s : "", r.out.len);
	}
	if (*out == NULL)
		rs_oom(0);   /* jansson could not allocate */
cleanup:
	free(r.out.s);
	return st;
}

rs_status
rs_template_render(json_t *tmpl, json_t *ctx, json_t **out, char *err, size_t cap)
{
	const char *k;
	json_t *child, *r, *acc;
	size_t i;

	*out = NULL;
	if (json_is_string(tmpl))
		return render_string(tmpl, ctx, out, err, cap);
	if (json_is_object(tmpl)) {
		acc = json_object();
		json_object_foreach(tmpl, k, child) {
			if (rs_template_render(child, ctx, &r, err, cap) != RS_OK) {
				json_decref(acc);
				return RS_EINVAL;
			}
			json_object_set_new(acc, k, r);
		}
		*out = acc;
		return RS_OK;
	}
	if (json_is_array(tmpl)) {
		acc = json_array();
		json_array_foreach(tmpl, i, child) {
			if (rs_template_render(child, ctx, &r, err, cap) != RS_OK) {
				json_decref(acc);
				return RS_EINVAL;
			}
			json_array_append_new(acc, r);
		}
		*out = acc;
		return RS_OK;
	}
	/* Numbers, booleans, null: immutable here, share them. */
	*out = json_incref(tmpl);
	return RS_OK;
}
