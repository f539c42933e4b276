/*
 * cli.c - argument handling, dispatch and connections shared by runctl
 * commands. Options are "--name value" or "--name=value"; a small fixed
 * set of options take no value (they are listed here, once, so every
 * command finds its positional arguments the same way).
 */
#include <stdio.h>
#include <string.h>

#include "rs_config.h"
#include "rs_id.h"
#include "rs_json.h"
#include "rs_log.h"
#include "runctl.h"

static const char *const bare_flags[] = {
	"json", "no-color", "help", "check", "from-pg", "watch", "all", "follow",
	"raw", "quiet", "env-passwords", "purge", NULL
};

static const char *const global_flags[] = { "json", "no-color", "help", "nats", NULL };

static int
in_list(const char *const *l, const char *s, size_t n)
{
	for (; *l != NULL; l++)
		if (strlen(*l) == n && strncmp(*l, s, n) == 0)
			return 1;
	return 0;
}

/* Length of the option name in "--name" / "--name=value". */
static size_t
opt_len(const char *a)
{
	const char *eq = strchr(a + 2, '=');

	return eq ? (size_t)(eq - (a + 2)) : strlen(a + 2);
}

static int
is_opt(const char *a)
{
	return strncmp(a, "--", 2) == 0 && a[2] != '\0';
}

const char *
rs_ctl_flag(int argc, char **argv, const char *name, const char *def)
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
rs_ctl_has(int argc, char **argv, const char *name)
{
	for (int i = 1; i < argc; i++)
		if (strncmp(argv[i], "--", 2) == 0 && strcmp(argv[i] + 2, name) == 0)
			return 1;
	return 0;
}

const char *
rs_ctl_arg(int argc, char **argv, int want)
{
	int seen = 0;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--") == 0) {
			/* everything after "--" is positional */
			for (i++; i < argc; i++)
				if (seen++ == want)
					return argv[i];
			return NULL;
		}
		if (is_opt(argv[i])) {
			size_t n = opt_len(argv[i]);
			if (argv[i][2 + n] != '=' && !in_list(bare_flags, argv[i] + 2, n))
				i++; /* skip the value */
			continue;
		}
		if (seen++ == want)
			return argv[i];
	}
	return NULL;
}

int
rs_ctl_nargs(int argc, char **argv)
{
	int n = 0;

	while (rs_ctl_arg(argc, argv, n) != NULL)
		n++;
	return n;
}

int
rs_ctl_check_flags(int argc, char **argv, const char *cmd, const char *const *known)
{
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--") == 0)
			break;
		if (!is_opt(argv[i]))
			continue;
		size_t n = opt_len(argv[i]);
		if (!in_list(global_flags, argv[i] + 2, n) && (known == NULL || !in_list(known, argv[i] + 2, n)))
			return rs_ctl_out_err(RC_USAGE, cmd, "unknown option '%.*s' (see runctl %s --help)",
			               (int)n + 2, argv[i], cmd);
		if (in_list(bare_flags, argv[i] + 2, n))
			continue;
		if (argv[i][2 + n] != '=') {
			if (i + 1 >= argc)
				return rs_ctl_out_err(RC_USAGE, cmd, "option '%s' needs a value", argv[i]);
			i++;
		}
	}
	return RC_OK;
}

int
rs_ctl_nats(rs_nats *n, int argc, char **argv)
{
	const char *url = rs_ctl_flag(argc, argv, "nats",
	                              rs_env_str("RS_NATS_URL", "nats://127.0.0.1:4222"));

	memset(n, 0, sizeof(*n));
	if (rs_nats_connect(n, url, "runctl", NULL, 2000) != RS_OK)
		return rs_ctl_out_err(RC_DOWN, NULL, "cannot reach NATS at %s: is the stack up? (./run up, or set "
		               "RS_NATS_URL / --nats)", url);
	return RC_OK;
}

const char *
rs_ctl_tenant(int argc, char **argv)
{
	const char *t = rs_ctl_flag(argc, argv, "tenant", rs_env_str("RS_TENANT", NULL));

	return (t != NULL && rs_id_is_token(t, 64)) ? t : NULL;
}

static void
usage(const runctl_cmd *cmds)
{
	fprintf(stderr, "usage: runctl <command> [options]\n\ncommands:\n");
	for (const runctl_cmd *c = cmds; c->group != NULL; c++)
		fprintf(stderr, "  %-9s %-8s %s\n", c->group, c->name ? c->name : "", c->help);
	fprintf(stderr, "\nEvery command takes --help; runctl --version prints the build's version.\n"
	        "Global options: --json (output for scripts, errors included),\n"
	        "--no-color, --nats URL. Connection settings come from RS_NATS_URL, RS_PG_URL,\n"
	        "RS_API_URL and RS_API_KEY (docs/runctl.md).\n"
	        "Exit codes: 0 ok, 1 failure or divergence, 2 usage, 3 not found, 4 server down.\n");
}

static int
help(const runctl_cmd *c)
{
	printf("usage: runctl %s%s%s%s%s\n\n%s\n", c->group, c->name ? " " : "", c->name ? c->name : "",
	       c->usage ? " " : "", c->usage ? c->usage : "", c->help);
	return RC_OK;
}

/* Print the commands of one group, for "runctl agents" without a verb. */
static int
group_usage(const runctl_cmd *cmds, const char *group)
{
	fprintf(stderr, "usage: runctl %s <command>\n\n", group);
	for (const runctl_cmd *c = cmds; c->group != NULL; c++)
		if (strcmp(c->group, group) == 0)
			fprintf(stderr, "  %-8s %s\n", c->name, c->help);
	return RC_USAGE;
}

/* runctl --version: the build's version (meson project version and git
 * commit, see runctl/meson.build). */
static int
print_version(const char *version)
{
	if (rs_ctl_out_json()) {
		json_t *v = json_pack("{s:s, s:s}", "name", "runctl", "version", version);
		rs_ctl_out_json_value(stdout, v, 0);
		json_decref(v);
	} else {
		printf("runctl %s\n", version);
	}
	return RC_OK;
}

int
rs_ctl_dispatch(const runctl_cmd *cmds, const char *version, int argc, char **argv)
{
	int group_known = 0;

	rs_log_init("runctl");
	/* Before a command is found, --json anywhere decides how errors read. */
	rs_ctl_out_init(argc, argv);
	if (argc >= 2 && (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0))
		return print_version(version);
	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		usage(cmds);
		return argc < 2 ? RC_USAGE : RC_OK;
	}
	for (const runctl_cmd *c = cmds; c->group != NULL; c++) {
		if (strcmp(c->group, argv[1]) != 0)
			continue;
		group_known = 1;
		if (c->name == NULL) {
			if (rs_ctl_has(argc, argv, "help") || (argc >= 3 && strcmp(argv[2], "-h") == 0))
				return help(c);
			rs_ctl_out_init(argc - 1, argv + 1);
			return c->fn(argc - 1, argv + 1);
		}
		if (argc >= 3 && strcmp(c->name, argv[2]) == 0) {
			if (rs_ctl_has(argc, argv, "help") || (argc >= 4 && strcmp(argv[3], "-h") == 0))
				return help(c);
			rs_ctl_out_init(argc - 2, argv + 2);
			return c->fn(argc - 2, argv + 2);
		}
	}
	if (group_known && (argc < 3 || strcmp(argv[2], "--help") == 0)) {
		int rc = group_usage(cmds, argv[1]);
		return argc >= 3 ? RC_OK : rc;   /* asked for help: not an error */
	}
	if (rs_ctl_out_json())
		return rs_ctl_out_err(RC_USAGE, NULL, "unknown command '%s%s%s' (runctl --help lists them)",
		               argv[1], argc > 2 ? " " : "", argc > 2 ? argv[2] : "");
	fprintf(stderr, "runctl: unknown command '%s%s%s'\n\n", argv[1], argc > 2 ? " " : "",
	        argc > 2 ? argv[2] : "");
	usage(cmds);
	return RC_USAGE;
}
