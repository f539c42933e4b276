/* rs_json.c - strict parse, canonical dump, paths (see rs_json.h). */
#include "rs_json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int
rs_json_depth(const json_t *v)
{
	int max = 0, d;
	size_t i;
	const char *k;
	json_t *c;

	if (json_is_object(v)) {
		json_object_foreach((json_t *)v, k, c) {
			d = rs_json_depth(c);
			if (d > max)
				max = d;
		}
		return max + 1;
	}
	if (json_is_array(v)) {
		json_array_foreach(v, i, c) {
			d = rs_json_depth(c);
			if (d > max)
				max = d;
		}
		return max + 1;
	}
	return 0;
}

/* Scan nesting before handing to jansson, so a hostile 1 MB of '[' cannot
 * recurse deeply inside the parser. Strings are skipped correctly. */
static int
scan_depth_exceeds(const char *buf, size_t len, int max, size_t *where)
{
	int depth = 0, in_str = 0;

	for (size_t i = 0; i < len; i++) {
		char c = buf[i];
		if (in_str) {
			if (c == '\\')
				i++;
			else if (c == '"')
				in_str = 0;
			continue;
		}
		if (c == '"') {
			in_str = 1;
		} else if (c == '{' || c == '[') {
			if (++depth > max) {
				*where = i;
				return 1;
			}
		} else if (c == '}' || c == ']') {
			depth--;
		}
	}
	return 0;
}

rs_status
rs_json_parse(const char *buf, size_t len, json_t **out, char *err, size_t errcap)
{
	json_error_t jerr;
	size_t where = 0;
	json_t *v;

	*out = NULL;
	if (scan_depth_exceeds(buf, len, RS_JSON_MAX_DEPTH, &where)) {
		snprintf(err, errcap, "JSON nested deeper than %d levels at position %zu",
		         RS_JSON_MAX_DEPTH, where);
		return RS_EINVAL;
	}
	v = json_loadb(buf, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
	if (v == NULL) {
		/* jansson quotes the input near the error ("near '\xea...'"):
		 * the message goes into JSON answers, so it must be UTF-8. */
		snprintf(err, errcap, "invalid JSON at line %d, column %d (position %d): %s",
		         jerr.line, jerr.column, jerr.position, jerr.text);
		rs_json_scrub_utf8(err);
		return RS_EINVAL;
	}
	*out = v;
	return RS_OK;
}

/* Length of the well-formed UTF-8 sequence at p (NUL-terminated), 0 if
 * there is none. */
static size_t
utf8_seq(const unsigned char *p)
{
	unsigned c = p[0], min;
	size_t n;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf) { n = 2; c &= 0x1f; min = 0x80; }
	else if (c >= 0xe0 && c <= 0xef) { n = 3; c &= 0x0f; min = 0x800; }
	else if (c >= 0xf0 && c <= 0xf4) { n = 4; c &= 0x07; min = 0x10000; }
	else return 0;
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)   /* also stops at the NUL */
			return 0;
		c = (c << 6) | (p[i] & 0x3f);
	}
	if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
		return 0;
	return n;
}

void
rs_json_scrub_utf8(char *s)
{
	unsigned char *p = (unsigned char *)s;

	while (*p != '\0') {
		size_t n = utf8_seq(p);
		if (n == 0) {
			*p++ = '?';
			continue;
		}
		p += n;
	}
}

char *
rs_json_dump(const json_t *v)
{
	return json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
}

json_t *
rs_json_path(json_t *v, const char *path)
{
	char tok[256];
	const char *p = path;

	while (v != NULL && *p != '\0') {
		size_t n = strcspn(p, ".");
		if (n == 0 || n >= sizeof(tok))
			return NULL;
		memcpy(tok, p, n);
		tok[n] = '\0';
		p += n;
		if (*p == '.')
			p++;
		if (json_is_object(v)) {
			v = json_object_get(v, tok);
		} else if (json_is_array(v)) {
			char *end;
			long idx = strtol(tok, &end, 10);
			if (*end != '\0' || idx < 0)
				return NULL;
			v = json_array_get(v, (size_t)idx);
		} else {
			return NULL;
		}
	}
	return v;
}
