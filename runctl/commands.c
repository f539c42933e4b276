/*
 * commands.c - every runctl command in one table: group, name, one-line
 * help, handler (cmd_<group>.c) and the options --help shows. Adding a
 * command is a row here; rs_ctl_dispatch (cli.c) finds it and prints the
 * help from it. main.c only hands argv to the dispatcher.
 */
#include "runctl.h"

#define SRC "[RUN_ID | --file run.ndjson] [--from-pg [--pg URL]] [--tenant T]"

const runctl_cmd rs_ctl_commands[] = {
	{ "replay", NULL, "print a run's timeline; --at SEQ: its state after event SEQ; --check: "
	  "compare the history with what today's state machine decides", rs_ctl_cmd_replay,
	  SRC " [--at SEQ | --check [--agent-file def.json]] [--json]" },
	{ "export", NULL, "write a run's history (agent definition first) as ndjson on stdout",
	  rs_ctl_cmd_export, SRC " [--agent-file def.json] > run.ndjson" },
	{ "archive", NULL, "export finished runs older than S seconds, one export file each, to DIR "
	  "(and DIR/archive.ndjson); --purge then removes them from RUNS", rs_ctl_cmd_archive,
	  "--out DIR [--older-than S (86400)] [--tenant T] [--limit N (1000)] [--purge] [--pg URL]" },
	{ "diff", NULL, "where two runs of the same agent went different ways (exit 1 if they did)",
	  rs_ctl_cmd_diff, "RUN_A RUN_B (run ids, or exported .ndjson files) [--tenant T] [--from-pg]" },
	{ "tail", NULL, "follow run events live", rs_ctl_cmd_tail,
	  "[--tenant T] [--type TYPE] [--run ID] [--count N] [--for SECONDS] [--json]" },
	{ "agents", "validate", "check an agent definition offline with the server's parser (exit 2 "
	  "and the parser's message if invalid)", rs_ctl_cmd_agents_validate, "FILE [--json]" },
	{ "agents", "push", "validate and store an agent definition and make it the latest version "
	  "(prints version, created or not)", rs_ctl_cmd_agents_push, "FILE --tenant T" },
	{ "agents", "ls", "list a tenant's agents and their latest versions", rs_ctl_cmd_agents_ls, "--tenant T" },
	{ "agents", "show", "print an agent definition", rs_ctl_cmd_agents_show, "NAME --tenant T [--version V]" },
	{ "runs", "start", "start a run through the API; --watch follows it and exits with its outcome",
	  rs_ctl_cmd_runs_start, "AGENT --input JSON [--version V] [--idempotency-key K] [--watch]" },
	{ "runs", "ls", "list runs, newest first, one page (API); prints the cursor of the next page",
	  rs_ctl_cmd_runs_ls, "[--status S] [--agent A] [--tag K:V] [--created-after T] [--created-before T] [--limit N (1-100)] [--after CURSOR]" },
	{ "runs", "show", "show a run (API)", rs_ctl_cmd_runs_show, "RUN_ID" },
	{ "runs", "cancel", "cancel a run (API)", rs_ctl_cmd_runs_cancel, "RUN_ID [--reason TEXT]" },
	{ "runs", "signal", "send a signal to a run (API)", rs_ctl_cmd_runs_signal, "RUN_ID NAME [--payload JSON]" },
	{ "runs", "fork", "start a new run reusing a run's first N events (API)", rs_ctl_cmd_runs_fork,
	  "RUN_ID --from-seq N [--version V] [--input JSON]" },
	{ "runs", "retry", "fork a failed run from just before its failed step (API)", rs_ctl_cmd_runs_retry,
	  "RUN_ID [--version V] [--input JSON]" },
	{ "schedules", "create", "start runs of an agent on a cron or an interval (API)", rs_ctl_cmd_schedules_create,
	  "AGENT (--cron EXPR [--tz ZONE] | --interval S) [--id ID] [--input JSON] [--catch-up P]" },
	{ "schedules", "ls", "list schedules with their next fire times (API)", rs_ctl_cmd_schedules_ls, "" },
	{ "schedules", "show", "one schedule (API)", rs_ctl_cmd_schedules_show, "ID" },
	{ "schedules", "pause", "stop a schedule's ticks (API)", rs_ctl_cmd_schedules_pause, "ID" },
	{ "schedules", "resume", "restart a paused schedule (API)", rs_ctl_cmd_schedules_resume, "ID" },
	{ "schedules", "rm", "delete a schedule (API)", rs_ctl_cmd_schedules_rm, "ID" },
	{ "dlq", "ls", "list dead-lettered messages", rs_ctl_cmd_dlq_ls, "[--source S] [--limit N]" },
	{ "dlq", "show", "show one dead letter with its payload", rs_ctl_cmd_dlq_show, "SEQ" },
	{ "dlq", "retry", "republish dead letters to their original subject and delete them",
	  rs_ctl_cmd_dlq_retry, "SEQ | --all [--source S]" },
	{ "streams", "apply", "create or update every stream, consumer and KV bucket", rs_ctl_cmd_streams_apply, NULL },
	{ "migrate", NULL, "apply pending Postgres migrations", rs_ctl_cmd_migrate, "[--pg URL]" },
	{ "projector", "rebuild", "rebuild the Postgres read models from RUNS (rs-projector --rebuild)",
	  rs_ctl_cmd_projector_rebuild, NULL },
	{ "keys", "create", "create an API key for a tenant", rs_ctl_cmd_keys_create, "--tenant T" },
	{ "keys", "ls", "list a tenant's API keys (ids: the first 12 hex of their sha256)", rs_ctl_cmd_keys_ls,
	  "--tenant T" },
	{ "keys", "revoke", "revoke an API key by id (from keys ls) or by the key itself", rs_ctl_cmd_keys_revoke,
	  "KEY_ID|KEY --tenant T" },
	{ "devices", "token", "issue a device token", rs_ctl_cmd_devices_token, "--tenant T --device D" },
	{ "devices", "ls", "list a tenant's devices with tokens, and whether they are online",
	  rs_ctl_cmd_devices_ls, "--tenant T" },
	{ "devices", "revoke", "revoke every token of a device; routers drop its live connections",
	  rs_ctl_cmd_devices_revoke, "DEVICE --tenant T" },
	{ "nats", "config", "write the NATS users of this installation (passwords once, auth.conf "
	  "for nats-server); --env-passwords prints it with $RS_NATS_PASSWORD_<ROLE> references",
	  rs_ctl_cmd_nats_config, "[--dir DIR] [--env-passwords]" },
	{ "consumers", "grant", "read-only NATS credentials for another team: tenant T's events "
	  "through its own consumer team-NAME on RUNS (reloads nats-server)", rs_ctl_cmd_consumers_grant,
	  "--tenant T --name NAME [--dir DIR] [--json]" },
	{ "secrets", "set", "store a tenant secret, sealed with RS_SECRETS_KEY (value from stdin)",
	  rs_ctl_cmd_secrets_set, "--tenant T NAME [--value V]" },
	{ "secrets", "rm", "delete a tenant secret", rs_ctl_cmd_secrets_rm, "--tenant T NAME" },
	{ "secrets", "ls", "list a tenant's secrets (names and update times, never values)",
	  rs_ctl_cmd_secrets_ls, "--tenant T" },
	{ NULL, NULL, NULL, NULL, NULL }
};
