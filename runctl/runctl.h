/*
 * runctl.h - shared declarations of the runctl subcommands: argument
 * helpers (cli.c), output (out.c), the HTTP client for the API (http.c),
 * and one entry point per command (cmd_<group>.c).
 */
#ifndef RUNCTL_H
#define RUNCTL_H

#include <jansson.h>
#include <stddef.h>
#include <stdio.h>

#include "rs_nats.h"

enum { RC_OK = 0, RC_FAIL = 1, RC_USAGE = 2, RC_NOTFOUND = 3, RC_DOWN = 4 };

typedef int (*runctl_fn)(int argc, char **argv);

typedef struct {
	const char *group, *name, *help;
	runctl_fn fn;
	const char *usage;  /* options, shown by --help; NULL if none */
} runctl_cmd;

/* Find and run the command named by argv[1] (and argv[2]); prints help.
 * `runctl --version [--json]` prints version (the build's, main.c). */
int rs_ctl_dispatch(const runctl_cmd *cmds, const char *version, int argc, char **argv);

/* Every command (commands.c), ended by a row of NULLs. */
extern const runctl_cmd rs_ctl_commands[];

/* Value of --name in argv (also --name=value), else def. */
const char *rs_ctl_flag(int argc, char **argv, const char *name, const char *def);
/* 1 if the bare flag --name is present. */
int rs_ctl_has(int argc, char **argv, const char *name);
/* The i-th (0-based) positional argument after argv[0], skipping --flags
 * and their values (flags that take no value are known to cli.c). NULL if
 * there is none. */
const char *rs_ctl_arg(int argc, char **argv, int i);
/* Number of positional arguments after argv[0]. */
int rs_ctl_nargs(int argc, char **argv);
/* Usage check: every --flag must be in `known` (NULL-terminated names
 * without "--"; --json, --no-color, --nats, --help are always allowed),
 * and a value-taking flag must have a value. Prints the problem and
 * returns RC_USAGE, else RC_OK. */
int rs_ctl_check_flags(int argc, char **argv, const char *cmd, const char *const *known);

/* Connect to NATS from RS_NATS_URL / --nats; prints a clear error. */
int rs_ctl_nats(rs_nats *n, int argc, char **argv);
/* Tenant from --tenant or RS_TENANT; NULL if neither (or invalid). */
const char *rs_ctl_tenant(int argc, char **argv);

/* ---- out.c: human or JSON output ---- */
typedef enum { OUT_PLAIN = 0, OUT_RED, OUT_GREEN, OUT_YELLOW, OUT_MAGENTA, OUT_DIM, OUT_BOLD } out_color;

/* Decide the output mode once per command: --json, and colour only when
 * stdout is a terminal and NO_COLOR is unset (and --no-color absent). */
void rs_ctl_out_init(int argc, char **argv);
int rs_ctl_out_json(void);
int rs_ctl_out_tty(void);
/* Escape sequences for c (empty strings when colour is off). */
const char *rs_ctl_out_on(out_color c);
const char *rs_ctl_out_off(void);
/* Print v on stdout: compact + newline in JSON mode, indented otherwise. */
void rs_ctl_out_json_value(FILE *f, json_t *v, int pretty);
/* Print an error "runctl <cmd>: <msg>" on stderr (cmd NULL: "runctl: <msg>")
 * and return rc. In --json mode print {"error": {"command", "exit": rc,
 * "message"}} on stdout instead. */
int rs_ctl_out_err(int rc, const char *cmd, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* ---- http.c: a minimal HTTP/1.1 client for the Runstream API ---- */
typedef struct {
	int status;       /* HTTP status, 0 if no response */
	char *body;       /* NUL-terminated, malloc'd */
	size_t len;
} http_resp;

/* One request to url (http://host:port/path...), Connection: close.
 * headers: NULL-terminated "Name: value" strings. Returns RS_OK with a
 * response of any status; RS_EUNAVAIL if the server cannot be reached,
 * RS_ETIMEOUT, RS_EIO on a malformed answer. */
rs_status rs_ctl_http_request(const char *method, const char *url, const char *const *headers,
                       const char *body, size_t blen, int timeout_ms, http_resp *out);
void rs_ctl_http_resp_free(http_resp *r);

/* ---- cmd_agents.c: agent definitions in KV agents ---- */
/* The definition <tenant>.<name>.<version> (version NULL: the latest) as
 * a new reference in *def. RC_OK, RC_NOTFOUND (err says what is missing),
 * RC_FAIL. */
int rs_ctl_agents_fetch(rs_nats *n, const char *tenant, const char *name, const char *version,
                 json_t **def, char *err, size_t cap);

/* ---- commands ---- */
int rs_ctl_cmd_streams_apply(int argc, char **argv);
int rs_ctl_cmd_migrate(int argc, char **argv);
int rs_ctl_cmd_keys_create(int argc, char **argv);
int rs_ctl_cmd_devices_token(int argc, char **argv);
int rs_ctl_cmd_keys_ls(int argc, char **argv);
int rs_ctl_cmd_keys_revoke(int argc, char **argv);
int rs_ctl_cmd_devices_ls(int argc, char **argv);
int rs_ctl_cmd_devices_revoke(int argc, char **argv);
int rs_ctl_cmd_secrets_set(int argc, char **argv);
int rs_ctl_cmd_secrets_rm(int argc, char **argv);
int rs_ctl_cmd_secrets_ls(int argc, char **argv);
int rs_ctl_cmd_replay(int argc, char **argv);
int rs_ctl_cmd_export(int argc, char **argv);
int rs_ctl_cmd_archive(int argc, char **argv);
int rs_ctl_cmd_diff(int argc, char **argv);
int rs_ctl_cmd_tail(int argc, char **argv);
int rs_ctl_cmd_agents_validate(int argc, char **argv);
int rs_ctl_cmd_agents_push(int argc, char **argv);
int rs_ctl_cmd_agents_ls(int argc, char **argv);
int rs_ctl_cmd_agents_show(int argc, char **argv);
int rs_ctl_cmd_runs_start(int argc, char **argv);
int rs_ctl_cmd_runs_ls(int argc, char **argv);
int rs_ctl_cmd_runs_show(int argc, char **argv);
int rs_ctl_cmd_runs_cancel(int argc, char **argv);
int rs_ctl_cmd_runs_signal(int argc, char **argv);
int rs_ctl_cmd_runs_fork(int argc, char **argv);
int rs_ctl_cmd_runs_retry(int argc, char **argv);
int rs_ctl_cmd_schedules_create(int argc, char **argv);
int rs_ctl_cmd_schedules_ls(int argc, char **argv);
int rs_ctl_cmd_schedules_show(int argc, char **argv);
int rs_ctl_cmd_schedules_pause(int argc, char **argv);
int rs_ctl_cmd_schedules_resume(int argc, char **argv);
int rs_ctl_cmd_schedules_rm(int argc, char **argv);
int rs_ctl_cmd_dlq_ls(int argc, char **argv);
int rs_ctl_cmd_dlq_show(int argc, char **argv);
int rs_ctl_cmd_dlq_retry(int argc, char **argv);
int rs_ctl_cmd_projector_rebuild(int argc, char **argv);
int rs_ctl_cmd_nats_config(int argc, char **argv);
int rs_ctl_cmd_consumers_grant(int argc, char **argv);

#endif
