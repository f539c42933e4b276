/*
 * rs_agent_int.h - private to the agent definition parser's files:
 * rs_agent.c (the definition as a whole: top-level fields, the two passes
 * over the steps, the step model, branch evaluation), rs_agent_effects.c
 * (http and llm steps) and rs_agent_children.c (parallel, foreach and run
 * steps, whose sub-step lists are parsed again by rs_agent.c). Nothing
 * else includes it: the public interface is rs_agent.h.
 *
 * It holds what they share: the id set of one steps array, the field
 * checking helpers (each error names its field path), and the parsers one
 * file calls in another, with the rs_agent_ prefix.
 */
#ifndef RS_AGENT_INT_H
#define RS_AGENT_INT_H

#include "rs_agent.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_INITIAL_BACKOFF_MS 1000
#define DEFAULT_MAX_BACKOFF_MS     60000
#define DEFAULT_MULTIPLIER         2.0
#define NAME_MAX_LEN               128  /* tool and signal names */

/* A parsed definition (immutable once rs_agent_parse returns it). */
struct rs_agent {
	char *name;
	char *description;
	char version[17];
	json_t *def;         /* deep copy of the definition */
	int64_t timeout_s;
	int64_t max_steps;
	json_t *output;      /* template or NULL */
	json_t *conc_key;    /* concurrency.key template (a string) or NULL */
	int64_t conc_limit;  /* concurrency.limit, 0 = none */
	rs_step *steps;
	size_t nsteps;
};

/* The step ids of one "steps" array, for pass 2 to resolve targets. */
typedef struct {
	json_t *steps;      /* the "steps" array of the definition */
	size_t n;
	const char *prefix; /* field path of that array: "steps", "steps[2].branches.a" */
	const char *name;   /* the agent's name (children's lists share it) */
	int depth;          /* 0 for the definition, +1 per parallel/foreach */
} idset;

/* ---- shared by rs_agent*.c ---- */

/* Write "<path>: <message>" into err and return RS_EINVAL. */
rs_status rs_agent_fail(char *err, size_t cap, const char *path, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* A field path into buf (truncated if deeper than cap: fine for a message). */
void rs_agent_pathf(char *buf, size_t cap, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
char *rs_agent_xstrdup(const char *s);
void rs_agent_subpath(char *buf, size_t cap, const char *path, const char *key);
int rs_agent_in_list(const char *k, const char **list);
rs_status rs_agent_check_fields(json_t *obj, const char *path, const char **a, const char **b,
                                char *err, size_t cap);
rs_status rs_agent_get_int(json_t *obj, const char *key, const char *path, int64_t min,
                           int64_t *out, char *err, size_t cap);
rs_status rs_agent_get_str(json_t *obj, const char *key, const char *path, int req,
                           const char **out, char *err, size_t cap);
int rs_agent_is_name(const char *s);
int rs_agent_id_known(const char *id, void *ud);
rs_status rs_agent_parse_retry(json_t *step, const char *path, rs_retry *r, char *err, size_t cap);
rs_status rs_agent_check_template(json_t *t, const char *path, const idset *ids, char *err,
                                  size_t cap);
rs_status rs_agent_parse_steps(rs_agent *a, const idset *ids, char *err, size_t cap);
rs_status rs_agent_parse_http(json_t *js, const char *path, rs_step *s, const idset *ids,
                              char *err, size_t cap);
rs_status rs_agent_parse_llm(json_t *js, const char *path, rs_step *s, const idset *ids,
                             char *err, size_t cap);
rs_status rs_agent_parse_parallel(json_t *js, const char *path, rs_step *s, const idset *ids,
                                  char *err, size_t cap);
rs_status rs_agent_parse_foreach(json_t *js, const char *path, rs_step *s, const idset *ids,
                                 char *err, size_t cap);
rs_status rs_agent_parse_run(json_t *js, const char *path, rs_step *s, const idset *ids,
                             char *err, size_t cap);
extern const char *rs_agent_http_methods[];

#endif
