/*
 * cli.c - argument handling and connections shared by runctl commands.
 */
#include <stdio.h>
#include <string.h>

#include "rs_config.h"
#include "rs_log.h"
#include "runctl.h"

const char *
runctl_flag(int argc, char **argv, const char *name, const char *def)
{
	size_t n = strlen(name);

	for (int i = 1; i < argc; i++) {
		if (strncmp(argv[i], "--", 2) != 0 || strncmp(argv[i] + 2, name, n) != 0)
			continue;
		if (argv[i][2 + n] == '=')
			return argv[i] + 3 + n;
		if (argv[i][2 + n] == '\0' && i + 1 < argc)
			return argv[i + 1];
	}
	return def;
}

int
runctl_has(int argc, char **argv, const char *name)
{
	for (int i = 1; i < argc; i++)
		if (strncmp(argv[i], "--", 2) == 0 && strcmp(argv[i] + 2, name) == 0)
			return 1;
	return 0;
}

int
runctl_nats(rs_nats *n, int argc, char **argv)
{
	const char *url = runctl_flag(argc, argv, "nats",
	                              rs_env_str("RS_NATS_URL", "nats://127.0.0.1:4222"));

	if (rs_nats_connect(n, url, "runctl", NULL, 2000) != RS_OK) {
		fprintf(stderr, "runctl: cannot reach NATS at %s: is the stack up? (./run up, or set RS_NATS_URL / --nats)\n", url);
		return RC_DOWN;
	}
	return RC_OK;
}

static void
usage(const runctl_cmd *cmds)
{
	fprintf(stderr, "usage: runctl <command> [options]\n\ncommands:\n");
	for (const runctl_cmd *c = cmds; c->group != NULL; c++)
		fprintf(stderr, "  %-8s %-10s %s\n", c->group, c->name ? c->name : "", c->help);
	fprintf(stderr, "\nConnection settings come from RS_NATS_URL and RS_PG_URL (see docs/operations.md).\n");
}

int
runctl_dispatch(const runctl_cmd *cmds, int argc, char **argv)
{
	rs_log_init("runctl");
	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		usage(cmds);
		return argc < 2 ? RC_USAGE : RC_OK;
	}
	for (const runctl_cmd *c = cmds; c->group != NULL; c++) {
		if (strcmp(c->group, argv[1]) != 0)
			continue;
		if (c->name == NULL)
			return c->fn(argc - 1, argv + 1);
		if (argc >= 3 && strcmp(c->name, argv[2]) == 0) {
			if (runctl_has(argc, argv, "help")) {
				printf("runctl %s %s: %s\n", c->group, c->name, c->help);
				return RC_OK;
			}
			return c->fn(argc - 2, argv + 2);
		}
	}
	fprintf(stderr, "runctl: unknown command '%s%s%s'\n\n", argv[1], argc > 2 ? " " : "",
	        argc > 2 ? argv[2] : "");
	usage(cmds);
	return RC_USAGE;
}
