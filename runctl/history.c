/*
 * history.c - read a run's events from a file, JetStream or Postgres (see
 * history.h).
 *
 * The file path is the fast one (`replay --file` must decode and reduce
 * >= 1M events/s): the whole file is read with one read loop into one
 * buffer, lines are found with memchr and handed to the decoder in place,
 * never copied, and decoded with rs_event_decode_fast (rs_event_fast.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "history.h"
#include "rs_config.h"
#include "rs_event_fast.h"
#include "rs_id.h"
#include "rs_json.h"
#include "runctl.h"

/* Read all of fd into a malloc'd buffer (size hint from fstat). */
static int
slurp(int fd, char **out, size_t *len)
{
	struct stat st;
	size_t cap = 1 << 16, n = 0;
	char *buf, *nb;
	ssize_t r;

	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0)
		cap = (size_t)st.st_size + 1;
	if ((buf = malloc(cap)) == NULL)
		return -1;
	for (;;) {
		if (n == cap) {
			if ((nb = realloc(buf, cap * 2)) == NULL) {
				free(buf);
				return -1;
			}
			buf = nb;
			cap *= 2;
		}
		r = read(fd, buf + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			free(buf);
			return -1;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	*out = buf;
	*len = n;
	return 0;
}

/* The export header line, if this is one. */
static int
header_line(const char *p, size_t n, json_t **agent, char *err, size_t cap)
{
	json_t *h = NULL, *a;
	char jerr[256];

	if (rs_json_parse(p, n, &h, jerr, sizeof(jerr)) != RS_OK) {
		snprintf(err, cap, "export header: %s", jerr);
		return RC_FAIL;
	}
	a = json_object_get(h, "agent");
	if (agent != NULL && json_is_object(a))
		*agent = json_incref(a);
	json_decref(h);
	return RC_OK;
}

int
rs_ctl_hist_scan(const char *buf, size_t len, const char *name, hist_fn fn, void *ctx,
          json_t **agent, char *err, size_t cap)
{
	const char *p = buf, *end = buf + len, *nl;
	size_t lineno = 0, events = 0;
	char derr[256];
	rs_event ev;
	rs_status st;
	int rc;

	if (agent != NULL)
		*agent = NULL;
	if (buf == NULL)
		len = 0;
	while (p != NULL && p < end) {
		size_t n;

		nl = memchr(p, '\n', (size_t)(end - p));
		n = nl ? (size_t)(nl - p) : (size_t)(end - p);
		lineno++;
		if (n > 0 && p[n - 1] == '\r')
			n--;
		if (n == 0)
			goto next;
		/* Only the first line may be the export header. */
		if (lineno == 1 && memmem(p, n, "\"" HIST_EXPORT_KEY "\"", sizeof(HIST_EXPORT_KEY) + 1) != NULL &&
		    memmem(p, n, "\"specversion\"", 13) == NULL) {
			if ((rc = header_line(p, n, agent, err, cap)) != RC_OK)
				return rc;
			goto next;
		}
		/* Same result as rs_event_decode, without a jansson tree per line. */
		st = rs_event_decode_fast(p, n, &ev, derr, sizeof(derr));
		if (st != RS_OK && st != RS_ENOTFOUND) {
			snprintf(err, cap, "%s:%zu: not a Runstream event: %s", name, lineno, derr);
			return RC_FAIL;
		}
		events++;
		rc = fn(ctx, &ev, p, n);
		rs_event_free(&ev);
		if (rc != RC_OK)
			return rc;
next:
		p = nl ? nl + 1 : end;
	}
	if (events == 0) {
		snprintf(err, cap, "%s: no events in this file", name);
		return RC_NOTFOUND;
	}
	return RC_OK;
}

static int
read_file(const hist_src *src, hist_fn fn, void *ctx, json_t **agent, char *err, size_t cap)
{
	int fd = strcmp(src->file, "-") == 0 ? STDIN_FILENO : open(src->file, O_RDONLY | O_CLOEXEC);
	char *buf = NULL;
	size_t len = 0;
	int rc;

	if (fd < 0) {
		snprintf(err, cap, "cannot open %s: %s", src->file, strerror(errno));
		return errno == ENOENT ? RC_NOTFOUND : RC_FAIL;
	}
	if (slurp(fd, &buf, &len) != 0) {
		snprintf(err, cap, "cannot read %s: %s", src->file, strerror(errno));
		rc = RC_FAIL;
	} else {
		rc = rs_ctl_hist_scan(buf, len, src->file, fn, ctx, agent, err, cap);
	}
	if (fd != STDIN_FILENO)
		close(fd);
	free(buf);
	return rc;
}

/* Run ids go into a subject: refuse anything that is not one token. */
static int
subject_token_ok(const char *s)
{
	if (s == NULL || *s == '\0' || strlen(s) > 64)
		return 0;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
		      *s == '-' || *s == '_'))
			return 0;
	return 1;
}

/* An ordered consumer on the run's subject: the literal one when the
 * tenant is known (fast on a big stream), runs.*.<run_id> otherwise. */
static int
read_js(const hist_src *src, hist_fn fn, void *ctx, char *err, size_t cap)
{
	char subject[160], derr[256];
	natsSubscription *sub = NULL;
	jsConsumerInfo *ci = NULL;
	jsSubOptions so;
	jsErrCode jerr = 0;
	natsMsg *m = NULL;
	jsMsgMetaData *meta = NULL;
	natsStatus s;
	rs_event ev;
	rs_status st;
	int rc = RC_OK;

	if (!subject_token_ok(src->run_id)) {
		snprintf(err, cap, "'%s' is not a run id", src->run_id ? src->run_id : "");
		return RC_USAGE;
	}
	snprintf(subject, sizeof(subject), "runs.%s.%s", src->tenant ? src->tenant : "*", src->run_id);
	jsSubOptions_Init(&so);
	so.Stream = "RUNS";
	so.Ordered = true;
	so.Config.DeliverPolicy = js_DeliverAll;
	s = js_SubscribeSync(&sub, src->nats->js, subject, NULL, &so, &jerr);
	if (s != NATS_OK) {
		if (rs_nats_status(s, jerr) == RS_ENOTFOUND) {
			snprintf(err, cap, "stream RUNS does not exist: run `runctl streams apply`");
			return RC_FAIL;
		}
		snprintf(err, cap, "cannot read %s from JetStream: %s", subject, natsStatus_GetText(s));
		return rs_nats_status(s, jerr) == RS_EUNAVAIL ? RC_DOWN : RC_FAIL;
	}
	/* Delivered + pending at creation is every matching message: 0 means
	 * the run does not exist (no waiting for a timeout). */
	s = natsSubscription_GetConsumerInfo(&ci, sub, NULL, &jerr);
	if (s == NATS_OK && ci->NumPending + ci->Delivered.Consumer == 0) {
		snprintf(err, cap, "run %s not found in stream RUNS%s%s (if `runctl archive --purge` "
		         "removed it, its file is listed in the archive's archive.ndjson and the read "
		         "model keeps its events: --from-pg)", src->run_id,
		         src->tenant ? " for tenant " : "", src->tenant ? src->tenant : "");
		rc = RC_NOTFOUND;
		goto cleanup;
	}
	for (;;) {
		s = natsSubscription_NextMsg(&m, sub, 10000);
		if (s != NATS_OK) {
			snprintf(err, cap, "reading %s: %s", subject, natsStatus_GetText(s));
			rc = s == NATS_TIMEOUT ? RC_FAIL : RC_DOWN;
			goto cleanup;
		}
		st = rs_event_decode(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), &ev, derr,
		                     sizeof(derr));
		if (st != RS_OK && st != RS_ENOTFOUND) {
			snprintf(err, cap, "%s: a message is not a Runstream event: %s", subject, derr);
			rc = RC_FAIL;
			goto cleanup;
		}
		rc = fn(ctx, &ev, natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m));
		rs_event_free(&ev);
		if (rc != RC_OK)
			goto cleanup;
		if (natsMsg_GetMetaData(&meta, m) == NATS_OK && meta->NumPending == 0)
			break;
		jsMsgMetaData_Destroy(meta);
		meta = NULL;
		natsMsg_Destroy(m);
		m = NULL;
	}
cleanup:
	jsMsgMetaData_Destroy(meta);
	natsMsg_Destroy(m);
	jsConsumerInfo_Destroy(ci);
	natsSubscription_Unsubscribe(sub);
	natsSubscription_Destroy(sub);
	return rc;
}

/* Rebuild each CloudEvent from its run_events row (the projector keeps
 * the envelope's parts as columns). */
static const char pg_query[] =
	"SELECT (jsonb_build_object('specversion','1.0','id',event_id,'source',source,"
	" 'type', CASE WHEN type LIKE 'runstream.%' THEN type ELSE 'runstream.' || type END,"
	" 'subject', run_id::text,"
	" 'time', to_char(time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),"
	" 'datacontenttype','application/json','runseq',seq,'tenant',tenant,'data',data)"
	" || CASE WHEN traceparent IS NULL THEN '{}'::jsonb"
	"    ELSE jsonb_build_object('traceparent', traceparent) END)::text"
	" FROM run_events WHERE run_id::text = $1 ORDER BY seq";

static int
read_pg(const hist_src *src, hist_fn fn, void *ctx, char *err, size_t cap)
{
	const char *params[1] = { src->run_id };
	char derr[256];
	PGconn *c = PQconnectdb(src->pg_url);
	PGresult *res = NULL;
	rs_event ev;
	rs_status st;
	int rc = RC_OK, rows;

	if (PQstatus(c) != CONNECTION_OK) {
		snprintf(err, cap, "cannot reach Postgres at %s: is the stack up? (set RS_PG_URL / --pg)",
		         src->pg_url);
		rc = RC_DOWN;
		goto cleanup;
	}
	res = PQexecParams(c, pg_query, 1, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		snprintf(err, cap, "reading run_events: %s(has `runctl migrate` run?)",
		         PQerrorMessage(c));
		rc = RC_FAIL;
		goto cleanup;
	}
	rows = PQntuples(res);
	if (rows == 0) {
		snprintf(err, cap, "run %s not found in Postgres run_events (the projector may lag: "
		         "try without --from-pg)", src->run_id);
		rc = RC_NOTFOUND;
		goto cleanup;
	}
	for (int i = 0; i < rows && rc == RC_OK; i++) {
		const char *v = PQgetvalue(res, i, 0);
		size_t n = (size_t)PQgetlength(res, i, 0);
		st = rs_event_decode(v, n, &ev, derr, sizeof(derr));
		if (st != RS_OK && st != RS_ENOTFOUND) {
			snprintf(err, cap, "run_events row %d: %s", i + 1, derr);
			rc = RC_FAIL;
			break;
		}
		rc = fn(ctx, &ev, v, n);
		rs_event_free(&ev);
	}
cleanup:
	PQclear(res);
	PQfinish(c);
	return rc;
}

int
rs_ctl_hist_read(const hist_src *src, hist_fn fn, void *ctx, json_t **agent, char *err, size_t cap)
{
	if (agent != NULL)
		*agent = NULL;
	err[0] = '\0';
	if (src->file != NULL)
		return read_file(src, fn, ctx, agent, err, cap);
	if (src->pg_url != NULL)
		return read_pg(src, fn, ctx, err, cap);
	return read_js(src, fn, ctx, err, cap);
}

int
rs_ctl_hist_collect(void *ctx, rs_event *ev, const char *raw, size_t len)
{
	hist_buf *b = ctx;

	if (b->n == b->cap) {
		size_t nc = b->cap ? b->cap * 2 : 64;
		rs_event *ne = realloc(b->ev, nc * sizeof(*ne));
		char **nr;
		if (ne == NULL)
			return RC_FAIL;
		b->ev = ne;
		if ((nr = realloc(b->raw, nc * sizeof(*nr))) == NULL)
			return RC_FAIL;
		b->raw = nr;
		b->cap = nc;
	}
	if ((b->raw[b->n] = strndup(raw, len)) == NULL)
		return RC_FAIL;
	b->ev[b->n++] = *ev;
	memset(ev, 0, sizeof(*ev));   /* stolen: the caller's free is a no-op */
	return RC_OK;
}

void
rs_ctl_hist_buf_free(hist_buf *b)
{
	for (size_t i = 0; i < b->n; i++) {
		rs_event_free(&b->ev[i]);
		free(b->raw[i]);
	}
	free(b->ev);
	free(b->raw);
	memset(b, 0, sizeof(*b));
}

int
rs_ctl_hist_src_from_args(int argc, char **argv, const char *cmd, const char *run_id, hist_src *src,
                   rs_nats *n)
{
	memset(src, 0, sizeof(*src));
	memset(n, 0, sizeof(*n));
	src->file = rs_ctl_flag(argc, argv, "file", NULL);
	src->run_id = run_id;
	src->tenant = rs_ctl_flag(argc, argv, "tenant", NULL);
	if (src->tenant != NULL && !rs_id_is_token(src->tenant, 64))
		return rs_ctl_out_err(RC_USAGE, cmd, "--tenant must match [a-z0-9_-]{1,64}");
	if (src->file != NULL)
		return RC_OK;
	if (run_id == NULL)
		return rs_ctl_out_err(RC_USAGE, cmd, "give a run id, or --file run.ndjson (see --help)");
	if (rs_ctl_has(argc, argv, "from-pg")) {
		src->pg_url = rs_ctl_flag(argc, argv, "pg", rs_env_str("RS_PG_URL",
		              "postgresql://127.0.0.1:5432/runstream"));
		return RC_OK;
	}
	src->nats = n;
	return rs_ctl_nats(n, argc, argv);
}
