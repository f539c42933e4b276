/*
 * rs_agent.h - agent definitions: validation, the immutable version hash,
 * and the read-only step model the run state machine walks.
 *
 * A definition is JSON (docs/agents.md):
 *   {"name": "...", "description"?: "...", "timeout_s"?: n, "max_steps"?: n,
 *    "steps": [ {"id", "kind", "next"?, ...kind fields}, ... ],
 *    "output"?: <template>, "concurrency"?: {"key": <template>, "limit": n}}
 * Kinds: tool, sleep, signal, branch, transform, http, llm (server-side
 * effects carried out by the executor), parallel, foreach, run (work done
 * by child runs, rs_run.c) - docs/agents.md. Validation is complete:
 * the first problem found is reported with the field path, e.g.
 *   steps[2].retry.max_backoff_ms: must be >= initial_backoff_ms (500)
 *
 * The version is the first 16 hex chars of sha256 over the canonical JSON
 * (sorted keys, compact) of the definition as given (defaults are not
 * filled in), so key order and whitespace do not change it.
 *
 * Ownership: rs_agent_parse() copies what it needs; the rs_agent owns all
 * its memory, and every pointer returned by the accessors is borrowed and
 * lives as long as the agent. An rs_agent is immutable and may be shared
 * between threads.
 */
#ifndef RS_AGENT_H
#define RS_AGENT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include "rs_status.h"

#define RS_AGENT_MAX_STEPS_DEFAULT 1000
#define RS_TOOL_TIMEOUT_DEFAULT_S  30
#define RS_HTTP_TIMEOUT_DEFAULT_S  30
#define RS_HTTP_MAX_RESPONSE_DEFAULT (256 * 1024)
#define RS_HTTP_MAX_REDIRECTS      5   /* max_redirects: 0 (default, not followed) .. 5 */
#define RS_LLM_TIMEOUT_DEFAULT_S   120
#define RS_LLM_MAX_TURNS_DEFAULT   8
#define RS_LLM_MAX_ATTEMPTS_DEFAULT 3
#define RS_STEP_END (-1)          /* step index meaning "the run is done" */
/* Bounds (a definition is a tenant's input; docs/agents.md lists them) */
#define RS_AGENT_MAX_TIMEOUT_S     (30LL * 86400) /* any timeout_s; duration_ms this in ms */
#define RS_AGENT_MAX_STEPS_LIMIT   100000        /* max_steps */
#define RS_AGENT_MAX_STEP_COUNT    1000          /* steps in a definition */
#define RS_AGENT_MAX_ATTEMPTS      100           /* retry.max_attempts */
#define RS_AGENT_MAX_BACKOFF_MS    86400000      /* retry backoffs: one day */
#define RS_AGENT_MAX_TURNS         64            /* llm max_turns */
#define RS_AGENT_MAX_TOKENS        1000000       /* llm max_tokens */
#define RS_AGENT_MAX_BRANCHES      32            /* parallel branches */
#define RS_AGENT_MAX_DEPTH         4             /* nesting of parallel/foreach */
#define RS_FOREACH_MAX_ITEMS       1000          /* elements of a foreach */
#define RS_FOREACH_MAX_CONCURRENCY 100           /* foreach max_concurrency */
#define RS_FOREACH_CONCURRENCY_DEFAULT 10

typedef struct rs_agent rs_agent;

/* A list of steps run as a child run (a parallel branch, a foreach body):
 * name is the branch name ("each" for foreach); agent is built from the
 * list like a definition of its own, with the parent's name and version. */
typedef struct {
	char *name;
	rs_agent *agent;
} rs_sub;

typedef enum {
	RS_STEP_TOOL = 0, RS_STEP_SLEEP, RS_STEP_SIGNAL, RS_STEP_BRANCH, RS_STEP_TRANSFORM,
	RS_STEP_HTTP, RS_STEP_LLM,
	/* orchestration: the work runs in child runs (docs/agents.md) */
	RS_STEP_PARALLEL, RS_STEP_FOREACH, RS_STEP_RUN
} rs_step_kind;
#define RS_STEP_KIND_LAST RS_STEP_RUN

const char *rs_step_kind_name(rs_step_kind k);   /* "tool", ... */

typedef enum {
	RS_OP_EQUALS = 0, RS_OP_NOT_EQUALS, RS_OP_GT, RS_OP_LT, RS_OP_EXISTS
} rs_branch_op;

typedef struct {
	int64_t max_attempts;        /* >= 1, default 1 (no retry) */
	int64_t initial_backoff_ms;  /* >= 1, default 1000 */
	int64_t max_backoff_ms;      /* >= initial, default max(60000, initial) */
	double multiplier;           /* >= 1.0, default 2.0 */
	json_t *non_retryable;       /* array of error codes, NULL if none */
} rs_retry;

typedef struct {
	char *path;                  /* "input.a" / "steps.x.output.y" */
	rs_branch_op op;
	json_t *value;               /* operand (exists: true/false) */
	int goto_idx;                /* step index */
} rs_branch_case;

typedef struct {
	char *id;
	rs_step_kind kind;
	int next_idx;                /* index, or RS_STEP_END */
	/* tool */
	char *tool;
	json_t *args;                /* template, {} if absent */
	char *device;                /* exactly one of device / capability */
	char *capability;
	/* tool (default 30), signal (0 = wait forever), http (30), llm (120,
	 * per model turn) */
	int64_t timeout_s;
	rs_retry retry;              /* tool, signal, http and llm steps */
	/* sleep */
	int64_t duration_ms;
	/* signal */
	char *signal;
	/* branch */
	rs_branch_case *cases;
	size_t ncases;
	int else_idx;
	/* transform */
	json_t *value;               /* template */
	/* http */
	char *method;                /* upper case, default "POST" */
	json_t *url;                 /* template (a string) */
	json_t *headers;             /* template object, {} if absent */
	json_t *body;                /* template or NULL */
	json_t *expect_status;       /* array of integers; NULL: any 2xx */
	char *hmac_secret;           /* secret name (of the run's tenant); NULL: no signature */
	char *hmac_header;           /* default "Runstream-Signature" */
	int64_t max_response_bytes;
	int64_t max_redirects;       /* 0: redirects are not followed */
	/* llm */
	char *base_url, *model;
	char *api_key_secret;        /* secret name (of the run's tenant) or NULL: no key */
	json_t *system;              /* template or NULL */
	json_t *prompt;              /* template */
	json_t *llm_tools;           /* [{name, description?, input_schema?}], [] if none */
	int64_t max_turns, max_tokens; /* max_tokens 0: not sent */
	json_t *temperature;         /* number or NULL */
	int64_t tool_timeout_s;      /* per tool call the model makes */
	/* parallel / foreach / run: children */
	rs_sub *subs;                /* parallel: branches in definition order;
	                              * foreach: one, "each" */
	size_t nsubs;
	int64_t join_n;              /* parallel: branches to wait for (all = nsubs) */
	int collect;                 /* on_failure "collect": a failed child is
	                              * recorded in the output, not fatal */
	json_t *items;               /* foreach: template of the array */
	int64_t max_concurrency;     /* foreach: children running at once */
	json_t *child_input;         /* template of the children's input or NULL */
	char *child_agent;           /* run: the agent to start */
	char *child_version;         /* run: pinned version, NULL = latest */
} rs_step;

/* Validate def and build the agent. On success *out is owned by the caller
 * (rs_agent_free). On failure returns RS_EINVAL and err holds
 * "<field path>: <problem>". def is not modified or retained. */
rs_status rs_agent_parse(json_t *def, rs_agent **out, char *err, size_t cap);

/* Same from text, parsed strictly (duplicate keys rejected). */
rs_status rs_agent_parse_text(const char *buf, size_t len, rs_agent **out,
                              char *err, size_t cap);

void rs_agent_free(rs_agent *a);

const char *rs_agent_name(const rs_agent *a);
const char *rs_agent_version(const rs_agent *a);     /* 16 hex chars */
const char *rs_agent_description(const rs_agent *a); /* NULL if none */
json_t *rs_agent_json(const rs_agent *a);            /* borrowed definition */
int64_t rs_agent_timeout_s(const rs_agent *a);       /* 0 = none */
int64_t rs_agent_max_steps(const rs_agent *a);
json_t *rs_agent_output(const rs_agent *a);          /* template or NULL */
/* concurrency: the key template (a JSON string, borrowed) and *limit, or
 * NULL (and *limit 0) when the agent declares none. */
json_t *rs_agent_concurrency(const rs_agent *a, int64_t *limit);
#define RS_AGENT_MAX_CONCURRENCY 10000      /* concurrency.limit */
#define RS_AGENT_MAX_CONCURRENCY_KEY 256    /* concurrency.key template, characters */

/* Version of def without validating it (canonical JSON hash). out[17]. */
rs_status rs_agent_version_of(json_t *def, char out[17]);

size_t rs_agent_step_count(const rs_agent *a);
const rs_step *rs_agent_step(const rs_agent *a, size_t idx); /* NULL if out of range */
/* Step by id; *idx (optional) receives its index. NULL if unknown. */
const rs_step *rs_agent_step_find(const rs_agent *a, const char *id, int *idx);

/* The agent a child run walks: scope is "" (the agent itself) or
 * "<step id>/<branch>" segments joined by "/" (a branch of a parallel
 * step, "each" for the body of a foreach), nested up to
 * RS_AGENT_MAX_DEPTH. NULL if the scope names nothing. Borrowed: lives as
 * long as a. A scoped list has the definition's name and version but no
 * JSON of its own (rs_agent_json: NULL), no timeout_s and no output
 * template (a child's output is its last step's). */
const rs_agent *rs_agent_scope(const rs_agent *a, const char *scope);

/* Evaluate a branch step against a template context ({"input", "steps"}):
 * the index of the step to go to (or RS_STEP_END). *case_idx receives the
 * index of the first matching case, or -1 when "else" applies.
 * Operators: equals / not_equals compare numbers by value and other JSON
 * structurally (a missing value equals nothing); gt / lt are false unless
 * the value is a number; exists: true matches a present, non-null value. */
int rs_branch_target(const rs_step *s, json_t *ctx, int *case_idx);

/* 1 if status is what an http step expects (expect_status, else 2xx). */
int rs_http_status_expected(const rs_step *s, int64_t status);

#endif
