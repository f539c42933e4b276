/*
 * rs_agent_children.c - the agent parser's orchestration steps: parallel
 * (named branches, each a steps list), foreach (a steps list per item) and
 * run (another agent as a child run), with their child input and
 * on_failure. A branch's steps are parsed by rs_agent_parse_steps
 * (rs_agent.c), so the same rules (ids, kinds, depth) hold at every level.
 */
#include "rs_agent_int.h"
#include "rs_mem.h"
#include "rs_id.h"
#include "rs_json.h"
#include "rs_secret.h"
#include "rs_template.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* --- orchestration: parallel, foreach, run (children runs) --- */

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* A list of steps that runs as a child run: parsed like a definition of
 * its own (its templates see the child's input and its own steps), with
 * the parent's name; the version is the parent's, set once it is known. */
static rs_status
parse_sub(json_t *steps, const char *path, const char *name, const idset *ids, rs_sub *sub,
          char *err, size_t cap)
{
	idset sids;
	rs_agent *a;

	if (ids->depth + 1 > RS_AGENT_MAX_DEPTH)
		return rs_agent_fail(err, cap, path, "parallel and foreach nest at most %d deep",
		            RS_AGENT_MAX_DEPTH);
	if (!json_is_array(steps) || json_array_size(steps) == 0)
		return rs_agent_fail(err, cap, path, "must be a non-empty array of steps");
	if (json_array_size(steps) > RS_AGENT_MAX_STEP_COUNT)
		return rs_agent_fail(err, cap, path, "must have at most %d steps", RS_AGENT_MAX_STEP_COUNT);
	if ((a = calloc(1, sizeof(*a))) == NULL)
		rs_oom(0);
	a->name = rs_agent_xstrdup(ids->name);
	a->max_steps = RS_AGENT_MAX_STEPS_DEFAULT;
	sub->name = rs_agent_xstrdup(name);
	sub->agent = a;
	sids.steps = steps;
	sids.n = json_array_size(steps);
	sids.prefix = path;
	sids.name = ids->name;
	sids.depth = ids->depth + 1;
	return rs_agent_parse_steps(a, &sids, err, cap);
}

/* input: a template of the children's input (an object once rendered;
 * checked against the parent's steps, where it is rendered). */
static rs_status
parse_child_input(json_t *js, const char *path, rs_step *s, const idset *ids,
                  char *err, size_t cap)
{
	json_t *v = json_object_get(js, "input");
	char p[320];

	if (v == NULL)
		return RS_OK;
	rs_agent_subpath(p, sizeof(p), path, "input");
	if (!json_is_object(v) && !json_is_string(v))
		return rs_agent_fail(err, cap, p, "must be an object or a template string");
	if (rs_agent_check_template(v, p, ids, err, cap) != RS_OK)
		return RS_EINVAL;
	s->child_input = json_deep_copy(v);
	return RS_OK;
}

static rs_status
parse_on_failure(json_t *js, const char *path, rs_step *s, char *err, size_t cap)
{
	const char *v;
	char p[320];

	if (rs_agent_get_str(js, "on_failure", path, 0, &v, err, cap) != RS_OK)
		return RS_EINVAL;
	if (v == NULL || strcmp(v, "fail") == 0)
		return RS_OK;
	if (strcmp(v, "collect") == 0) {
		s->collect = 1;
		return RS_OK;
	}
	rs_agent_subpath(p, sizeof(p), path, "on_failure");
	return rs_agent_fail(err, cap, p, "must be \"fail\" or \"collect\"");
}

rs_status
rs_agent_parse_parallel(json_t *js, const char *path, rs_step *s, const idset *ids,
               char *err, size_t cap)
{
	json_t *br = json_object_get(js, "branches"), *v, *join;
	const char *k, *keys[RS_AGENT_MAX_BRANCHES];
	char p[320], q[400];
	size_t n, i = 0;

	rs_agent_subpath(p, sizeof(p), path, "branches");
	if (br == NULL)
		return rs_agent_fail(err, cap, p, "required");
	if (!json_is_object(br) || (n = json_object_size(br)) == 0)
		return rs_agent_fail(err, cap, p, "must be a non-empty object of named step lists");
	if (n > RS_AGENT_MAX_BRANCHES)
		return rs_agent_fail(err, cap, p, "must have at most %d branches", RS_AGENT_MAX_BRANCHES);
	if ((s->subs = calloc(n, sizeof(*s->subs))) == NULL)
		rs_oom(0);
	/* Sorted names: the canonical order (the definition's key order is not
	 * part of its version, so it must not decide anything). */
	json_object_foreach(br, k, v)
		keys[i++] = k;
	qsort(keys, n, sizeof(keys[0]), cmp_str);
	for (i = 0; i < n; i++) {
		rs_agent_pathf(q, sizeof(q), "%s.%s", p, keys[i]);
		if (!rs_id_is_token(keys[i], 64))
			return rs_agent_fail(err, cap, q, "branch names must match [a-z0-9_-]{1,64}");
		s->nsubs = i + 1;
		if (parse_sub(json_object_get(br, keys[i]), q, keys[i], ids, &s->subs[i], err,
		              cap) != RS_OK)
			return RS_EINVAL;
	}
	s->join_n = (int64_t)n;
	join = json_object_get(js, "join");
	rs_agent_subpath(p, sizeof(p), path, "join");
	if (join == NULL || (json_is_string(join) && strcmp(json_string_value(join), "all") == 0))
		;
	else if (json_is_string(join) && strcmp(json_string_value(join), "any") == 0)
		s->join_n = 1;
	else if (json_is_integer(join) && json_integer_value(join) >= 1 &&
	         json_integer_value(join) <= (json_int_t)n)
		s->join_n = json_integer_value(join);
	else
		return rs_agent_fail(err, cap, p, "must be \"all\", \"any\" or an integer 1..%zu", n);
	if (parse_on_failure(js, path, s, err, cap) != RS_OK)
		return RS_EINVAL;
	return parse_child_input(js, path, s, ids, err, cap);
}

rs_status
rs_agent_parse_foreach(json_t *js, const char *path, rs_step *s, const idset *ids,
              char *err, size_t cap)
{
	json_t *items = json_object_get(js, "items"), *mc;
	char p[320];

	rs_agent_subpath(p, sizeof(p), path, "items");
	if (items == NULL)
		return rs_agent_fail(err, cap, p, "required");
	if (!json_is_array(items) && !json_is_string(items))
		return rs_agent_fail(err, cap, p, "must be an array or a template string");
	if (rs_agent_check_template(items, p, ids, err, cap) != RS_OK)
		return RS_EINVAL;
	s->items = json_deep_copy(items);
	s->max_concurrency = RS_FOREACH_CONCURRENCY_DEFAULT;
	mc = json_object_get(js, "max_concurrency");
	rs_agent_subpath(p, sizeof(p), path, "max_concurrency");
	if (mc != NULL && (!json_is_integer(mc) || json_integer_value(mc) < 1 ||
	                   json_integer_value(mc) > RS_FOREACH_MAX_CONCURRENCY))
		return rs_agent_fail(err, cap, p, "must be an integer 1..%d", RS_FOREACH_MAX_CONCURRENCY);
	if (mc != NULL)
		s->max_concurrency = json_integer_value(mc);
	if ((s->subs = calloc(1, sizeof(*s->subs))) == NULL)
		rs_oom(0);
	s->nsubs = 1;
	rs_agent_subpath(p, sizeof(p), path, "steps");
	if (json_object_get(js, "steps") == NULL)
		return rs_agent_fail(err, cap, p, "required");
	if (parse_sub(json_object_get(js, "steps"), p, "each", ids, &s->subs[0], err, cap) != RS_OK)
		return RS_EINVAL;
	if (parse_on_failure(js, path, s, err, cap) != RS_OK)
		return RS_EINVAL;
	return parse_child_input(js, path, s, ids, err, cap);
}

rs_status
rs_agent_parse_run(json_t *js, const char *path, rs_step *s, const idset *ids, char *err, size_t cap)
{
	const char *agent, *version;
	char p[320];

	if (rs_agent_get_str(js, "agent", path, 1, &agent, err, cap) != RS_OK ||
	    rs_agent_get_str(js, "version", path, 0, &version, err, cap) != RS_OK)
		return RS_EINVAL;
	rs_agent_subpath(p, sizeof(p), path, "agent");
	if (!rs_id_is_token(agent, 64))
		return rs_agent_fail(err, cap, p, "must match [a-z0-9_-]{1,64}");
	rs_agent_subpath(p, sizeof(p), path, "version");
	if (version != NULL && strcmp(version, "latest") != 0 && !rs_id_is_token(version, 64))
		return rs_agent_fail(err, cap, p, "must be a version (16 hex chars) or \"latest\"");
	s->child_agent = rs_agent_xstrdup(agent);
	s->child_version = version != NULL && strcmp(version, "latest") != 0 ? rs_agent_xstrdup(version)
	                                                                    : NULL;
	return parse_child_input(js, path, s, ids, err, cap);
}
