/*
 * cmd_nats.c - runctl nats config, consumers grant: who may do what on NATS.
 *
 * nats-server 2.9 authorises per user with publish/subscribe allow lists
 * (docs/operations.md "NATS users"). This file is the one place those lists
 * are written down: one user per service role, with exactly the subjects
 * that role uses (derived from the code, checked by running every
 * integration test against them and reading the server log for permission
 * violations), an admin user for runctl and tests, and read-only team users
 * issued by `consumers grant`.
 *
 * Files, all in one directory (RS_NATS_AUTH_DIR or --dir; mode 0600):
 *   users.env        RS_NATS_PASSWORD_<ROLE>=<secret>, created once per
 *                    installation, kept afterwards (services read theirs)
 *   teams.tsv        one granted team per line: name, tenant, password
 *   auth.conf        the `authorization { users = [...] }` block generated
 *                    from the two above; the server's config includes it
 *   nats-server.pid  written by nats-server itself (pid_file in the config
 *                    ./run and the tests write): `grant` sends it SIGHUP
 *                    (a config reload) after rewriting auth.conf
 * Passwords are in the clear in auth.conf, which is why the directory is
 * private: nats-server 2.9 recognises only "$2a$" bcrypt hashes and we have
 * no bcrypt here (a follow-up).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rs_config.h"
#include "rs_mem.h"
#include "rs_id.h"
#include "rs_time.h"
#include "runctl.h"

#define MAX_TEAMS 1024
#define MAX_SUBJ 96
#define TEAM_NAME_MAX 48

/* A growable list of subjects. */
typedef struct {
	char **v;
	size_t n, cap;
} subjects;

static void
add(subjects *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
add(subjects *s, const char *fmt, ...)
{
	va_list ap;
	char buf[256];

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	for (size_t i = 0; i < s->n; i++)
		if (strcmp(s->v[i], buf) == 0)
			return;
	if (s->n == s->cap) {
		s->cap = s->cap ? 2 * s->cap : 32;
		s->v = realloc(s->v, s->cap * sizeof(*s->v));
		if (s->v == NULL)
			rs_oom(0);
	}
	if ((s->v[s->n++] = strdup(buf)) == NULL)
		rs_oom(0);
}

static void
subjects_free(subjects *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i]);
	free(s->v);
	memset(s, 0, sizeof(*s));
}

/* ---- the grants, in JetStream terms ---- */

/* Look a stream up (services check at start-up that theirs exist). */
static void
stream_info(subjects *p, const char *stream)
{
	add(p, "$JS.API.STREAM.INFO.%s", stream);
}

/* Bind to and pull from an existing durable, ack its messages. */
static void
durable_pull(subjects *p, const char *stream, const char *durable)
{
	stream_info(p, stream);
	add(p, "$JS.API.CONSUMER.INFO.%s.%s", stream, durable);
	add(p, "$JS.API.CONSUMER.MSG.NEXT.%s.%s", stream, durable);
	add(p, "$JS.ACK.%s.%s.>", stream, durable);
}

/* Ephemeral (ordered) push consumers: nats.c creates them with either
 * form of the create API, deletes them, answers flow control. */
static void
ephemeral(subjects *p, const char *stream)
{
	stream_info(p, stream);
	/* nats.c looks the stream up by subject when a subscription does not
	 * name it (kvStore_Watch): the answer is stream names only. */
	add(p, "$JS.API.STREAM.NAMES");
	add(p, "$JS.API.CONSUMER.CREATE.%s", stream);
	add(p, "$JS.API.CONSUMER.CREATE.%s.>", stream);
	add(p, "$JS.API.CONSUMER.DELETE.%s.*", stream);
	add(p, "$JS.API.CONSUMER.INFO.%s.*", stream);
	add(p, "$JS.FC.%s.>", stream);
}

/* Read single messages: direct get (both forms), and the older
 * STREAM.MSG.GET that js_GetLastMsg uses. */
static void
direct_get(subjects *p, const char *stream)
{
	add(p, "$JS.API.DIRECT.GET.%s", stream);
	add(p, "$JS.API.DIRECT.GET.%s.>", stream);
	add(p, "$JS.API.STREAM.MSG.GET.%s", stream);
}

static void
kv_read(subjects *p, const char *bucket)
{
	char stream[64];

	snprintf(stream, sizeof(stream), "KV_%s", bucket);
	stream_info(p, stream);
	direct_get(p, stream);
}

static void
kv_write(subjects *p, const char *bucket)
{
	kv_read(p, bucket);
	add(p, "$KV.%s.>", bucket);
}

/* Watch (and list keys of) a bucket: an ordered consumer on its stream. */
static void
kv_watch(subjects *p, const char *bucket)
{
	char stream[64];

	snprintf(stream, sizeof(stream), "KV_%s", bucket);
	ephemeral(p, stream);
}

/* A service that creates (and may delete) its own named durable. */
static void
durable_own(subjects *p, const char *stream, const char *durable)
{
	durable_pull(p, stream, durable);
	add(p, "$JS.API.CONSUMER.CREATE.%s.%s", stream, durable);
	add(p, "$JS.API.CONSUMER.CREATE.%s.%s.>", stream, durable);
	add(p, "$JS.API.CONSUMER.DURABLE.CREATE.%s.%s", stream, durable);
	add(p, "$JS.API.CONSUMER.DELETE.%s.%s", stream, durable);
}

typedef struct {
	const char *user;   /* also the suffix of RS_NATS_PASSWORD_<USER> */
	const char *what;   /* one line for the generated file */
} role;

static const role roles[] = {
	{ "admin", "runctl admin commands (streams apply, keys, agents, DLQ) and tests: everything" },
	{ "api", "HTTP API: commands to CMDS, KV agents/idempotency/runs/secrets, reads RUNS" },
	{ "orchestrator", "the only writer of runs.>; CMDS and TIMERS consumers; TIMERS, TOOLCALLS, DLQ, KV gates" },
	{ "tool-router", "TOOLCALLS consumer; commands to CMDS; KV presence/calls, reads devtokens" },
	{ "projector", "reads RUNS and the agents/presence KV streams through its own durables" },
	{ "executor", "RUNS consumer `executor` (headers) and reads; commands to CMDS; reads KV presence/secrets" },
};
#define NROLES (sizeof(roles) / sizeof(roles[0]))

/* The publish allow list of a role (its inbox is added by the caller). */
static void
role_publish(const char *user, subjects *p)
{
	if (strcmp(user, "admin") == 0) {
		add(p, ">");
	} else if (strcmp(user, "api") == 0) {
		add(p, "cmd.>");
		kv_read(p, "apikeys");
		kv_write(p, "agents");
		kv_watch(p, "agents");
		kv_write(p, "idempotency");
		kv_write(p, "runs");
		kv_write(p, "secrets");    /* PUT/DELETE /v1/secrets (sealed values) */
		kv_watch(p, "secrets");    /* GET /v1/secrets: names only */
		kv_read(p, "gates");       /* a queued run's position (gates.c) */
		kv_write(p, "schedules");  /* /v1/schedules */
		kv_watch(p, "schedules");  /* listing */
		stream_info(p, "CMDS");
		ephemeral(p, "RUNS");      /* the live consumer on runs.>, history reads */
		direct_get(p, "RUNS");
	} else if (strcmp(user, "orchestrator") == 0) {
		add(p, "runs.>");
		add(p, "timers.>");
		add(p, "toolcalls.>");
		add(p, "cmd.>");            /* timer.fire, forwarded when due */
		add(p, "dlq.orchestrator");
		durable_pull(p, "CMDS", "orchestrator");
		durable_pull(p, "TIMERS", "timers");
		stream_info(p, "TOOLCALLS");
		stream_info(p, "DLQ");
		ephemeral(p, "RUNS");      /* cold rebuild of a run */
		/* the reconciliation sweep reads RUNS' headers through an
		 * ephemeral pull consumer (reconcile.c) */
		add(p, "$JS.API.CONSUMER.MSG.NEXT.RUNS.*");
		direct_get(p, "RUNS");
		kv_read(p, "agents");
		kv_write(p, "gates");      /* admission gates (gate.c), compare-and-set */
		kv_write(p, "schedules");  /* scheduler.c: last_tick_ms, compare-and-set */
		kv_watch(p, "schedules");  /* kvStore_Keys */
		kv_write(p, "runs");       /* scheduler.c: the registry entry of a tick's run */
		/* reconcile.c reads the registrations' headers (runs never started) */
		kv_watch(p, "runs");
		add(p, "$JS.API.CONSUMER.MSG.NEXT.KV_runs.*");
	} else if (strcmp(user, "tool-router") == 0) {
		add(p, "cmd.>");            /* tool.delivered, tool.result */
		add(p, "dlq.tool-router");
		durable_pull(p, "TOOLCALLS", "routers");
		stream_info(p, "CMDS");
		kv_read(p, "devtokens");
		kv_watch(p, "devtokens");  /* revocations close live connections (revoke.c) */
		kv_write(p, "presence");
		kv_write(p, "calls");
		kv_watch(p, "calls");
	} else if (strcmp(user, "projector") == 0) {
		add(p, "dlq.projector");
		durable_own(p, "RUNS", "projector-runs");
		direct_get(p, "RUNS");     /* is a passed-over sequence still there? */
		durable_own(p, "KV_agents", "projector-agents");
		durable_own(p, "KV_presence", "projector-presence");
		ephemeral(p, "RUNS");      /* rs-projector --rebuild */
	} else if (strcmp(user, "executor") == 0) {
		add(p, "cmd.>");            /* effect.result, llm.chunk */
		add(p, "dlq.executor");
		durable_pull(p, "RUNS", "executor");
		direct_get(p, "RUNS");
		stream_info(p, "CMDS");
		kv_read(p, "presence");
		kv_watch(p, "presence");   /* kvStore_Keys */
		kv_read(p, "secrets");     /* the run's tenant's secrets, at call time */
	}
}

/* The publish and subscribe allow lists of team user team-<name>, reading
 * tenant's events (what 2.9 can and cannot hold a team to: see
 * docs/operations.md "NATS users"). */
static void
team_grants(const char *name, const char *tenant, subjects *p, subjects *s)
{
	/* Create its one consumer, named team-<name>, on RUNS through the
	 * create API whose last tokens are the filter: nats-server checks
	 * that the filter in the request equals them (error 10131), so the
	 * filter cannot leave runs.<tenant>. The filterless forms
	 * ($JS.API.CONSUMER.CREATE.RUNS, DURABLE.CREATE) are not granted. */
	add(p, "$JS.API.CONSUMER.CREATE.RUNS.team-%s.runs.%s.>", name, tenant);
	add(p, "$JS.API.CONSUMER.INFO.RUNS.team-%s", name);
	add(p, "$JS.API.CONSUMER.DELETE.RUNS.team-%s", name);
	add(p, "$JS.API.CONSUMER.MSG.NEXT.RUNS.team-%s", name);
	add(p, "$JS.ACK.RUNS.team-%s.>", name);
	/* Last event of one run: the subject is in the request subject. */
	add(p, "$JS.API.DIRECT.GET.RUNS.runs.%s.>", tenant);
	add(s, "runs.%s.>", tenant);
}

typedef struct {
	char name[TEAM_NAME_MAX + 1];
	char tenant[65];
	char password[65];
} team;

static int
open_private(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	if (fd >= 0 && fchmod(fd, 0600) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Write data to path (mode 0600) through a temporary file and a rename:
 * the server never reads a half-written configuration. */
static int
write_private(const char *path, const char *data)
{
	char tmp[4200];
	FILE *f;
	int fd;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	fd = open_private(tmp);
	if (fd < 0 || (f = fdopen(fd, "w")) == NULL) {
		fprintf(stderr, "runctl: cannot write %s: %s\n", tmp, strerror(errno));
		if (fd >= 0)
			close(fd);
		return RC_FAIL;
	}
	if (fputs(data, f) == EOF || fflush(f) != 0 || fsync(fileno(f)) != 0) {
		fprintf(stderr, "runctl: cannot write %s: %s\n", tmp, strerror(errno));
		fclose(f);
		return RC_FAIL;
	}
	fclose(f);
	if (rename(tmp, path) != 0) {
		fprintf(stderr, "runctl: cannot rename %s: %s\n", tmp, strerror(errno));
		return RC_FAIL;
	}
	return RC_OK;
}

/* "tool-router" -> "TOOL_ROUTER" (an environment variable suffix). */
static void
env_suffix(const char *user, char *out, size_t cap)
{
	size_t i;

	for (i = 0; user[i] != '\0' && i + 1 < cap; i++)
		out[i] = user[i] == '-' ? '_' : (char)(user[i] >= 'a' && user[i] <= 'z' ? user[i] - 32 : user[i]);
	out[i] = '\0';
}

/* Read users.env: the password of each role (64 hex chars), or create
 * the missing ones. */
static int
load_passwords(const char *dir, char pw[][65], int create)
{
	char path[4200], line[256], var[64], suf[32];
	FILE *f;
	int changed = 0, rc = RC_OK;

	for (size_t r = 0; r < NROLES; r++)
		pw[r][0] = '\0';
	snprintf(path, sizeof(path), "%s/users.env", dir);
	if ((f = fopen(path, "r")) != NULL) {
		while (fgets(line, sizeof(line), f) != NULL) {
			for (size_t r = 0; r < NROLES; r++) {
				env_suffix(roles[r].user, suf, sizeof(suf));
				int n = snprintf(var, sizeof(var), "RS_NATS_PASSWORD_%s=", suf);
				if (strncmp(line, var, (size_t)n) == 0 && strlen(line + n) >= 64 &&
				    strspn(line + n, "0123456789abcdef") == 64)
					memcpy(pw[r], line + n, 64), pw[r][64] = '\0';
			}
		}
		fclose(f);
	} else if (errno != ENOENT) {
		fprintf(stderr, "runctl: cannot read %s: %s\n", path, strerror(errno));
		return RC_FAIL;
	}
	for (size_t r = 0; r < NROLES; r++) {
		if (pw[r][0] != '\0')
			continue;
		if (!create) {
			fprintf(stderr, "runctl: %s has no password for %s: run `runctl nats config` first\n",
			        path, roles[r].user);
			return RC_FAIL;
		}
		if (rs_id_random_hex(pw[r], 32) != RS_OK)
			return RC_FAIL;
		changed = 1;
	}
	if (changed) {
		char *buf = NULL;
		size_t len = 0;
		FILE *m = open_memstream(&buf, &len);

		if (m == NULL)
			rs_oom(0);
		fprintf(m, "# NATS passwords of this installation (runctl nats config). Keep private.\n");
		for (size_t r = 0; r < NROLES; r++) {
			env_suffix(roles[r].user, suf, sizeof(suf));
			fprintf(m, "RS_NATS_PASSWORD_%s=%s\n", suf, pw[r]);
		}
		fclose(m);
		rc = write_private(path, buf);
		free(buf);
	}
	return rc;
}

static int
team_name_ok(const char *s)
{
	return s != NULL && rs_id_is_token(s, TEAM_NAME_MAX);
}

/* Read teams.tsv into *out (caller frees); *n teams. */
static int
load_teams(const char *dir, team **out, size_t *n)
{
	char path[4200], line[512];
	FILE *f;
	team *v = NULL, t;
	size_t k = 0, lineno = 0;

	*out = NULL;
	*n = 0;
	snprintf(path, sizeof(path), "%s/teams.tsv", dir);
	if ((f = fopen(path, "r")) == NULL)
		return errno == ENOENT ? RC_OK : (fprintf(stderr, "runctl: cannot read %s: %s\n", path,
		                                           strerror(errno)), RC_FAIL);
	while (fgets(line, sizeof(line), f) != NULL) {
		char *a, *b, *c, *save = NULL;

		lineno++;
		if (line[0] == '#' || line[0] == '\n')
			continue;
		a = strtok_r(line, "\t\n", &save);
		b = strtok_r(NULL, "\t\n", &save);
		c = strtok_r(NULL, "\t\n", &save);
		if (!team_name_ok(a) || !rs_id_is_token(b, 64) || c == NULL || strlen(c) != 64 ||
		    strspn(c, "0123456789abcdef") != 64 || k == MAX_TEAMS) {
			fprintf(stderr, "runctl: %s line %zu is not \"name<TAB>tenant<TAB>password\"\n",
			        path, lineno);
			fclose(f);
			free(v);
			return RC_FAIL;
		}
		snprintf(t.name, sizeof(t.name), "%s", a);
		snprintf(t.tenant, sizeof(t.tenant), "%s", b);
		snprintf(t.password, sizeof(t.password), "%s", c);
		if ((v = realloc(v, (k + 1) * sizeof(*v))) == NULL)
			rs_oom(0);
		v[k++] = t;
	}
	fclose(f);
	*out = v;
	*n = k;
	return RC_OK;
}

static int
save_teams(const char *dir, const team *v, size_t n)
{
	char path[4200], *buf = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&buf, &len);
	int rc;

	if (m == NULL)
		rs_oom(0);
	fprintf(m, "# Teams granted read access (runctl consumers grant): name, tenant, password.\n");
	for (size_t i = 0; i < n; i++)
		fprintf(m, "%s\t%s\t%s\n", v[i].name, v[i].tenant, v[i].password);
	fclose(m);
	snprintf(path, sizeof(path), "%s/teams.tsv", dir);
	rc = write_private(path, buf);
	free(buf);
	return rc;
}

static void
print_list(FILE *m, const char *key, const subjects *s)
{
	fprintf(m, "%s: [", key);
	for (size_t i = 0; i < s->n; i++)
		fprintf(m, "%s\"%s\"", i ? ", " : "", s->v[i]);
	fprintf(m, "] }");
}

/* One user entry; password NULL writes a reference to the environment
 * variable RS_NATS_PASSWORD_<USER> (resolved by nats-server at start). */
static void
print_user(FILE *m, const char *user, const char *password, const char *what,
           const subjects *pub, const subjects *sub)
{
	char suf[64];

	fprintf(m, "    # %s\n", what);
	if (password != NULL) {
		fprintf(m, "    { user: \"%s\", password: \"%s\",\n", user, password);
	} else {
		env_suffix(user, suf, sizeof(suf));
		fprintf(m, "    { user: \"%s\", password: $RS_NATS_PASSWORD_%s,\n", user, suf);
	}
	fprintf(m, "      permissions: {\n        publish: { ");
	print_list(m, "allow", pub);
	fprintf(m, ",\n        subscribe: { ");
	print_list(m, "allow", sub);
	fprintf(m, "\n      } }\n");
}

/* The authorization block: every role, then every team. pw NULL: the
 * passwords are environment references (compose). */
static char *
render_auth(char pw[][65], const team *teams, size_t nteams)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&buf, &len);

	if (m == NULL)
		rs_oom(0);
	fprintf(m, "# Generated by `runctl nats config` / `runctl consumers grant`: do not edit.\n"
	        "# One user per service role, each allowed only the subjects its role uses\n"
	        "# (docs/operations.md \"NATS users\"); inboxes are _INBOX_<user>.\n"
	        "authorization {\n  users = [\n");
	for (size_t r = 0; r < NROLES; r++) {
		subjects p = { 0 }, s = { 0 };

		role_publish(roles[r].user, &p);
		if (strcmp(roles[r].user, "admin") == 0)
			add(&s, ">");
		else {
			add(&s, "_INBOX_%s.>", roles[r].user);
			/* its own inboxes only: rs_consume_stop ends a pull request
			 * in progress with a status message to the request's inbox */
			add(&p, "_INBOX_%s.>", roles[r].user);
		}
		print_user(m, roles[r].user, pw ? pw[r] : NULL, roles[r].what, &p, &s);
		subjects_free(&p);
		subjects_free(&s);
	}
	for (size_t i = 0; i < nteams; i++) {
		subjects p = { 0 }, s = { 0 };
		char user[64], what[160];

		snprintf(user, sizeof(user), "team-%s", teams[i].name);
		snprintf(what, sizeof(what), "team %s: read-only, tenant %s", teams[i].name, teams[i].tenant);
		team_grants(teams[i].name, teams[i].tenant, &p, &s);
		add(&s, "_INBOX_%s.>", user);
		print_user(m, user, teams[i].password, what, &p, &s);
		subjects_free(&p);
		subjects_free(&s);
	}
	fprintf(m, "  ]\n}\n");
	fclose(m);
	return buf;
}

static const char *
auth_dir(int argc, char **argv)
{
	return rs_ctl_flag(argc, argv, "dir", rs_env_str("RS_NATS_AUTH_DIR", ".run/nats-auth"));
}

static int
ensure_dir(const char *dir)
{
	if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
		fprintf(stderr, "runctl: cannot create %s: %s\n", dir, strerror(errno));
		return RC_FAIL;
	}
	if (chmod(dir, 0700) != 0) {
		fprintf(stderr, "runctl: cannot chmod %s: %s\n", dir, strerror(errno));
		return RC_FAIL;
	}
	return RC_OK;
}

/* Regenerate DIR/auth.conf from users.env and teams.tsv. */
static int
write_auth(const char *dir, char pw[][65], const team *teams, size_t nteams)
{
	char path[4200], *conf = render_auth(pw, teams, nteams);
	int rc;

	snprintf(path, sizeof(path), "%s/auth.conf", dir);
	rc = write_private(path, conf);
	free(conf);
	return rc;
}

int
rs_ctl_cmd_nats_config(int argc, char **argv)
{
	const char *dir = auth_dir(argc, argv);
	char pw[NROLES][65];
	team *teams = NULL;
	size_t nteams = 0;
	int rc;

	if (rs_ctl_check_flags(argc, argv, "nats config",
	                       (const char *const[]){ "dir", "env-passwords", NULL }) != RC_OK)
		return RC_USAGE;
	if (rs_ctl_has(argc, argv, "env-passwords")) {
		/* For deployments that hand passwords to the server in its
		 * environment (compose): no secrets written, no teams. */
		char *conf = render_auth(NULL, NULL, 0);
		fputs(conf, stdout);
		free(conf);
		return RC_OK;
	}
	if ((rc = ensure_dir(dir)) != RC_OK || (rc = load_passwords(dir, pw, 1)) != RC_OK ||
	    (rc = load_teams(dir, &teams, &nteams)) != RC_OK ||
	    (rc = write_auth(dir, pw, teams, nteams)) != RC_OK)
		goto cleanup;
	printf("%s/auth.conf: %zu service users, %zu teams; passwords in %s/users.env\n", dir,
	       NROLES, nteams, dir);
cleanup:
	free(teams);
	return rc;
}

/* The pid nats-server wrote to DIR/nats-server.pid, or 0. */
static pid_t
server_pid(const char *dir)
{
	char path[4200];
	long pid = 0;
	FILE *f;

	snprintf(path, sizeof(path), "%s/nats-server.pid", dir);
	if ((f = fopen(path, "r")) == NULL)
		return 0;
	if (fscanf(f, "%ld", &pid) != 1 || pid <= 1)
		pid = 0;
	fclose(f);
	return (pid_t)pid;
}

/* The first server of RS_NATS_URL / --nats without any user:password@. */
static void
public_url(int argc, char **argv, char *out, size_t cap)
{
	const char *url = rs_ctl_flag(argc, argv, "nats", rs_env_str("RS_NATS_URL", "nats://127.0.0.1:4222"));
	const char *at, *comma, *scheme = strstr(url, "://");
	size_t head = scheme ? (size_t)(scheme - url) + 3 : 0;

	comma = strchr(url, ',');
	at = strchr(url + head, '@');
	if (at != NULL && (comma == NULL || at < comma))
		snprintf(out, cap, "%.*s%.*s", (int)head, url,
		         (int)(comma ? (size_t)(comma - at - 1) : strlen(at + 1)), at + 1);
	else
		snprintf(out, cap, "%.*s", (int)(comma ? (size_t)(comma - url) : strlen(url)), url);
}

/* Connect as the team until the reloaded server accepts the password
 * (a reload is asynchronous): proof that the grant is in force. */
static int
check_login(const char *url, const char *user, const char *password, int64_t wait_ms)
{
	int64_t deadline = rs_mono_ms() + wait_ms;
	natsOptions *o = NULL;
	natsConnection *nc = NULL;
	natsStatus s = NATS_ERR;

	if (natsOptions_Create(&o) != NATS_OK)
		rs_oom(0);
	natsOptions_SetURL(o, url);
	natsOptions_SetUserInfo(o, user, password);
	natsOptions_SetTimeout(o, 1000);
	while ((s = natsConnection_Connect(&nc, o)) != NATS_OK && rs_mono_ms() < deadline)
		usleep(50 * 1000);
	natsConnection_Destroy(nc);
	natsOptions_Destroy(o);
	return s == NATS_OK;
}

/* Create the team's durable consumer as the admin when it does not exist:
 * nats.c 3.4.1 creates durables only through the filterless
 * DURABLE.CREATE subject, which a team may not use, but binds to an
 * existing one with the INFO and MSG.NEXT calls it may. */
static int
ensure_team_consumer(int argc, char **argv, const char *user, const char *tenant)
{
	char filter[96];
	jsConsumerConfig cc;
	jsConsumerInfo *ci = NULL;
	jsErrCode jerr = 0;
	rs_nats n;
	int rc = rs_ctl_nats(&n, argc, argv);

	if (rc != RC_OK)
		return rc;
	if (js_GetConsumerInfo(&ci, n.js, "RUNS", user, NULL, &jerr) == NATS_OK) {
		jsConsumerInfo_Destroy(ci);
		goto cleanup;
	}
	snprintf(filter, sizeof(filter), "runs.%s.>", tenant);
	jsConsumerConfig_Init(&cc);
	cc.Durable = user;
	cc.FilterSubject = filter;
	cc.AckPolicy = js_AckExplicit;
	cc.DeliverPolicy = js_DeliverAll;
	/* Right after the reload that gave the team its user, nats-server
	 * 2.9.10 can answer "JetStream not enabled" (10076) for a moment while
	 * it re-registers the account (seen in a clean-clone CI run): try
	 * again for up to 5 s. */
	for (int i = 0; i < 50; i++) {
		jerr = 0;
		if (js_AddConsumer(&ci, n.js, "RUNS", &cc, NULL, &jerr) == NATS_OK || jerr != JSNotEnabledErr)
			break;
		usleep(100 * 1000);
	}
	if (ci == NULL) {
		fprintf(stderr, "runctl consumers grant: cannot create consumer %s on RUNS: %s (%d)\n", user,
		        nats_GetLastError(NULL), (int)jerr);
		rc = RC_FAIL;
	}
	jsConsumerInfo_Destroy(ci);
cleanup:
	rs_nats_close(&n, 2000);
	return rc;
}

int
rs_ctl_cmd_consumers_grant(int argc, char **argv)
{
	const char *dir = auth_dir(argc, argv);
	const char *tenant = rs_ctl_flag(argc, argv, "tenant", NULL);
	const char *name = rs_ctl_flag(argc, argv, "name", NULL);
	char pw[NROLES][65], url[512], user[64];
	team *teams = NULL, *t = NULL;
	size_t nteams = 0;
	pid_t pid;
	int rc;

	if (rs_ctl_check_flags(argc, argv, "consumers grant",
	                       (const char *const[]){ "tenant", "name", "dir", "nats", NULL }) != RC_OK)
		return RC_USAGE;
	if (!rs_id_is_token(tenant, 64) || !team_name_ok(name)) {
		fprintf(stderr, "runctl consumers grant: --tenant must match [a-z0-9_-]{1,64} and "
		        "--name [a-z0-9_-]{1,%d}\n", TEAM_NAME_MAX);
		return RC_USAGE;
	}
	if ((rc = load_passwords(dir, pw, 0)) != RC_OK || (rc = load_teams(dir, &teams, &nteams)) != RC_OK)
		goto cleanup;
	for (size_t i = 0; i < nteams; i++)
		if (strcmp(teams[i].name, name) == 0)
			t = &teams[i];
	if (t != NULL && strcmp(t->tenant, tenant) != 0) {
		fprintf(stderr, "runctl consumers grant: team %s already reads tenant %s; its consumer "
		        "name is taken (choose another --name)\n", name, t->tenant);
		rc = RC_USAGE;
		goto cleanup;
	}
	if (t == NULL) {
		if (nteams == MAX_TEAMS) {
			fprintf(stderr, "runctl consumers grant: %d teams already\n", MAX_TEAMS);
			rc = RC_FAIL;
			goto cleanup;
		}
		if ((teams = realloc(teams, (nteams + 1) * sizeof(*teams))) == NULL)
			rs_oom(0);
		t = &teams[nteams++];
		memset(t, 0, sizeof(*t));
		snprintf(t->name, sizeof(t->name), "%s", name);
		snprintf(t->tenant, sizeof(t->tenant), "%s", tenant);
	}
	/* A new password every time: granting again rotates it. */
	if (rs_id_random_hex(t->password, 32) != RS_OK) {
		rc = RC_FAIL;
		goto cleanup;
	}
	if ((rc = save_teams(dir, teams, nteams)) != RC_OK || (rc = write_auth(dir, pw, teams, nteams)) != RC_OK)
		goto cleanup;
	snprintf(user, sizeof(user), "team-%s", name);
	public_url(argc, argv, url, sizeof(url));
	if ((pid = server_pid(dir)) == 0 || kill(pid, SIGHUP) != 0) {
		fprintf(stderr, "runctl consumers grant: %s/auth.conf written, but no running nats-server "
		        "found through %s/nats-server.pid: reload it yourself (nats-server --signal "
		        "reload=<pid>)\n", dir, dir);
		rc = RC_DOWN;
	} else if (!check_login(url, user, t->password, 5000)) {
		fprintf(stderr, "runctl consumers grant: nats-server (pid %d) was told to reload, but "
		        "%s cannot log in at %s: see its log\n", (int)pid, user, url);
		rc = RC_FAIL;
	} else {
		rc = ensure_team_consumer(argc, argv, user, tenant);
	}
	if (rs_ctl_out_json()) {
		json_t *v = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "user", user, "password",
		                      t->password, "url", url, "tenant", tenant, "consumer", user,
		                      "filter", "", "inbox_prefix", "");
		char f[128], ib[96];
		snprintf(f, sizeof(f), "runs.%s.>", tenant);
		snprintf(ib, sizeof(ib), "_INBOX_%s", user);
		json_object_set_new(v, "filter", json_string(f));
		json_object_set_new(v, "inbox_prefix", json_string(ib));
		rs_ctl_out_json_value(stdout, v, 0);
		json_decref(v);
	} else {
		printf("RS_NATS_URL=%s\nRS_NATS_USER=%s\nRS_NATS_PASSWORD=%s\n"
		       "# consumer name: %s   filter: runs.%s.>   inbox prefix: _INBOX_%s\n",
		       url, user, t->password, user, tenant, user);
	}
cleanup:
	free(teams);
	return rc;
}
