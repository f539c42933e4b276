/*
 * rs_template.h - "{{input.a}}" / "{{steps.<id>.output.x}}" templates in
 * agent definitions (tool args, transform values, the run output).
 *
 * A template is any JSON value. Only string values are templated (object
 * keys are not). Inside a string, "{{ expr }}" is replaced by the value of
 * expr in the context object
 *     {"input": <run input>, "steps": {"<id>": {"output": <value>}}}
 * where expr is "input", "input.<path>", "steps.<id>.output" or
 * "steps.<id>.output.<path>"; a path is dot-separated tokens of
 * [A-Za-z0-9_-] (numeric tokens index arrays, see rs_json_path).
 *
 * A string that is exactly one template (blanks inside the braces allowed)
 * keeps the JSON type of the value; a missing value renders as null.
 * Otherwise the string is interpolated: strings are inserted as they are,
 * other values as compact JSON, and missing values or null as "".
 *
 * Secret references: "{{secrets.NAME}}" (NAME [A-Za-z0-9_-]{1,64}) is
 * allowed only where the checker is told so (http header values, see
 * rs_agent.c). Rendering never resolves it: it is written back as the
 * canonical text "{{secrets.NAME}}" (blanks dropped), and a string that is
 * only a reference stays that string. The state machine never sees secret
 * values; the event records the reference and the executor substitutes the
 * tenant's value at call time (services/executor/secrets.c).
 *
 * Rendering is pure: no I/O, no clock, the same input gives the same bytes.
 */
#ifndef RS_TEMPLATE_H
#define RS_TEMPLATE_H

#include <jansson.h>
#include <stddef.h>
#include "rs_status.h"

#define RS_TEMPLATE_MAX_ID 64

/* Render tmpl against ctx. On success *out is a new reference. Fails
 * (RS_EINVAL, err says why) only on a malformed template, which agent
 * validation already rules out. Neither tmpl nor ctx is modified. */
rs_status rs_template_render(json_t *tmpl, json_t *ctx, json_t **out,
                             char *err, size_t cap);

/* Check the syntax of one expression (what sits between the braces, or a
 * branch "path"), expr[0..len). On success step_id receives the referenced
 * step id ("" for input); idcap >= RS_TEMPLATE_MAX_ID + 1. On failure err
 * gets a reason without a field path, e.g.
 * "expected input.<path> or steps.<id>.output[.<path>]". */
rs_status rs_template_parse_expr(const char *expr, size_t len, char *step_id,
                                 size_t idcap, char *err, size_t cap);

/* 1 if expr[0..len) is "secrets.<name>" with a valid name; the name goes
 * to name (cap >= 65). */
int rs_template_secret_ref(const char *expr, size_t len, char *name, size_t cap);

/* Value of a (well-formed) expression in ctx: borrowed, NULL if missing. */
json_t *rs_template_lookup(json_t *ctx, const char *expr);

/* Called by rs_template_check for each step referenced; returns nonzero if
 * the step id exists. */
typedef int (*rs_template_step_known)(const char *step_id, void *ud);

/* Validate every template inside tmpl. path names tmpl in messages (e.g.
 * "steps[1].args"); errors read
 *   steps[1].args.url: malformed template "{{input": unclosed "{{"
 *   steps[1].args[0]: unknown step "nope" in template "{{steps.nope.output}}"
 */
rs_status rs_template_check(json_t *tmpl, const char *path,
                            rs_template_step_known known, void *ud,
                            char *err, size_t cap);

/* Same, also accepting "{{secrets.NAME}}" references (http header values). */
rs_status rs_template_check_secrets(json_t *tmpl, const char *path,
                                    rs_template_step_known known, void *ud,
                                    char *err, size_t cap);

#endif
