/*
 * rs_field.h - the field-table engine, shared by the event codec
 * (rs_event.c), the command codec (rs_cmd.c) and the fast event decoder
 * (rs_event_fast.c). One table per JSON object shape; encode, decode and
 * free all walk it. Kinds that embed event types (RS_F_ERR: rs_err,
 * RS_F_PURPOSE: rs_timer_purpose) are declared in rs_event.h.
 */
#ifndef RS_FIELD_H
#define RS_FIELD_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include "rs_status.h"

/* A flat JSON object is described once by an array of rs_field, and the
 * encode, decode and free of that object all walk the same table, so they
 * cannot disagree about a field. Offsets are into the C struct. */
typedef enum {
	RS_F_STR,      /* char *; min = minimum length; optional: NULL = absent */
	RS_F_CALLID,   /* char *, usable as a NATS subject token (no . * > space) */
	RS_F_UUID,     /* char *, canonical lowercase UUID */
	RS_F_TOKEN,    /* char *, [a-z0-9_-]{1,64} (rs_id_is_token) */
	RS_F_STEPKIND, /* char *, one of tool|sleep|signal|branch|transform|http|llm|parallel|foreach|run */
	RS_F_INT,      /* int64_t >= min; optional: 0 = absent */
	RS_F_TIME,     /* int64_t Unix ms >= 0 <-> RFC 3339; optional: 0 = absent */
	RS_F_BOOL,     /* int 0/1 <-> true/false */
	RS_F_JSON,     /* json_t *, any value; required: NULL encodes as null */
	RS_F_OBJECT,   /* json_t *, a JSON object */
	RS_F_ERR,      /* rs_err, embedded; always required */
	RS_F_PURPOSE,  /* rs_timer_purpose <-> its name */
	RS_F_ARRAY,    /* json_t *, a JSON array */
	RS_F_NUMBER,   /* json_t *, a JSON number (so 0 stays distinct from absent) */
} rs_field_kind;

typedef struct {
	const char *name;   /* JSON member name */
	rs_field_kind kind;
	int optional;
	size_t off;         /* offsetof() the member in the struct */
	int64_t min;        /* RS_F_INT: smallest value; RS_F_STR: min length */
} rs_field;

/* The member a field describes, in the struct at s. */
#define RS_FIELD_MEMBER(s, f, type) ((type *)(void *)((char *)(s) + (f)->off))
#define RS_FIELD_CMEMBER(s, f, type) \
	((type const *)(const void *)((const char *)(s) + (f)->off))

/* Add the fields of struct s to obj. RS_EINVAL if s breaks the table
 * (required member missing, value out of range), RS_ENOMEM. */
rs_status rs_fields_encode(const rs_field *f, size_t n, const void *s, json_t *obj);
/* Fill struct s from obj (members not in the table are ignored). Errors
 * read "<prefix>.<name>: <problem>" (no prefix: "<name>: <problem>"). On
 * failure the members of the table are released again. */
rs_status rs_fields_decode(const rs_field *f, size_t n, json_t *obj, void *s,
                           const char *prefix, char *err, size_t cap);
/* Release the table's members of s and set them to zero. */
void rs_fields_free(const rs_field *f, size_t n, void *s);
/* 1 if s (n bytes, NUL-terminated) meets the shape rule of a string field
 * (f->kind one of the string kinds); shared by both decoders. */
int rs_field_string_ok(const rs_field *f, const char *s, size_t n);
/* 1 for the kinds stored as char * (STR, CALLID, UUID, TOKEN, STEPKIND). */
int rs_field_is_string(rs_field_kind k);
/* 1 if the member of s is absent (meaningful for optional fields only):
 * NULL string or JSON, 0 integer or time. */
int rs_field_absent(const rs_field *f, const void *s);
/* Write "<prefix>.<name>: <problem>" (no prefix: "<name>: <problem>") to
 * err and return RS_EINVAL: the error form of every field check. */
rs_status rs_field_fail(char *err, size_t cap, const char *prefix, const char *name,
                        const char *fmt, ...) __attribute__((format(printf, 5, 6)));

#endif
