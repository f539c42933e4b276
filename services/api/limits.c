/*
 * limits.c - how many SSE watchers and parked waits (Prefer: wait, ?wait)
 * one API key and one tenant may hold on this API process.
 *
 * A watcher or a waiter costs no thread, but it does cost a connection, a
 * hub entry, queued frames and (for a watcher) history replay work: one
 * tenant with a loop opening streams could take every file descriptor of
 * the process. So each is counted per key (sha256 of the key, from
 * auth.c) and per tenant, on the service thread only (no lock), and a
 * request over a limit gets 429 with Retry-After before any work is done
 * for it. The slot is held by the request (rs_api_req.lim_*) from dispatch
 * until its answer is written or its connection closes, and given back
 * exactly once (rs_api_limit_release, called from both places).
 *
 * Limits are per process: N API processes behind a balancer allow N times
 * as much, which is what one process can bear, not a quota. A setting of
 * 0 disables that limit.
 */
#include "api.h"
#include "rs_log.h"
#include "rs_map.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
	int n[3];                   /* by kind: [RS_API_LIM_WATCH], [RS_API_LIM_WAIT] */
} lim_ent;

/* "k:<keyid>" or "t:<tenant>" -> lim_ent (owned by the map). */
struct rs_api_limits {
	rs_map by_name;
};

rs_status
rs_api_limits_init(rs_api *app)
{
	app->limits = calloc(1, sizeof(*app->limits));
	if (app->limits == NULL)
		return RS_ENOMEM;
	rs_map_init(&app->limits->by_name, free);
	return RS_OK;
}

void
rs_api_limits_free(rs_api *app)
{
	if (app->limits == NULL)
		return;
	rs_map_free(&app->limits->by_name);
	free(app->limits);
	app->limits = NULL;
}

/* The entry for name; created when create is set (NULL if out of memory). */
static lim_ent *
ent(rs_api *app, const char *name, int create)
{
	lim_ent *e = rs_map_get(&app->limits->by_name, name);

	if (e != NULL || !create || (e = calloc(1, sizeof(*e))) == NULL)
		return e;
	if (rs_map_put(&app->limits->by_name, name, e) != RS_OK) {
		free(e);
		return NULL;
	}
	return e;
}

/* Drop name's entry when it no longer counts anything. */
static void
ent_gc(rs_api *app, const char *name)
{
	lim_ent *e = rs_map_get(&app->limits->by_name, name);

	if (e != NULL && e->n[RS_API_LIM_WATCH] == 0 && e->n[RS_API_LIM_WAIT] == 0)
		rs_map_del(&app->limits->by_name, name);
}

int
rs_api_limit_take(rs_api *app, rs_api_req *r, rs_api_job *job, int kind)
{
	char kname[76], tname[76];
	int kmax = kind == RS_API_LIM_WATCH ? app->max_watchers_key : app->max_waits_key;
	int tmax = kind == RS_API_LIM_WATCH ? app->max_watchers_tenant : app->max_waits_tenant;
	const char *what = kind == RS_API_LIM_WATCH ? "open streams" : "waiting requests";
	const char *setting = NULL;
	lim_ent *k, *t;
	int limit = 0;

	rs_api_limit_release(app, r);   /* one slot per transaction */
	snprintf(kname, sizeof(kname), "k:%s", job->keyid);
	snprintf(tname, sizeof(tname), "t:%s", job->tenant);
	k = ent(app, kname, 1);
	t = ent(app, tname, 1);
	if (k == NULL || t == NULL) {
		ent_gc(app, kname);
		ent_gc(app, tname);
		rs_api_problem_retry(job, 503, 1, "out of memory");
		return -1;
	}
	if (kmax > 0 && k->n[kind] >= kmax) {
		setting = kind == RS_API_LIM_WATCH ? "RS_API_MAX_WATCHERS_PER_KEY" : "RS_API_MAX_WAITS_PER_KEY";
		limit = kmax;
	} else if (tmax > 0 && t->n[kind] >= tmax) {
		setting = kind == RS_API_LIM_WATCH ? "RS_API_MAX_WATCHERS_PER_TENANT"
		                                   : "RS_API_MAX_WAITS_PER_TENANT";
		limit = tmax;
	}
	if (setting != NULL) {
		ent_gc(app, kname);
		ent_gc(app, tname);
		rs_api_metric_limited(kind);
		rs_api_problem_retry(job, 429, app->limit_retry_after_s,
		                     "too many %s: this %s already holds %d (%s); close one or retry later",
		                     what, strstr(setting, "_KEY") != NULL ? "API key" : "tenant", limit,
		                     setting);
		return -1;
	}
	k->n[kind]++;
	t->n[kind]++;
	r->lim_kind = (uint8_t)kind;
	memcpy(r->lim_key, job->keyid, sizeof(r->lim_key));
	memcpy(r->lim_tenant, job->tenant, sizeof(r->lim_tenant));
	return 0;
}

void
rs_api_limit_release(rs_api *app, rs_api_req *r)
{
	char kname[76], tname[76];
	lim_ent *e;
	int kind = r->lim_kind;

	if (kind == 0 || app->limits == NULL)
		return;
	r->lim_kind = 0;
	snprintf(kname, sizeof(kname), "k:%s", r->lim_key);
	snprintf(tname, sizeof(tname), "t:%s", r->lim_tenant);
	if ((e = ent(app, kname, 0)) != NULL && e->n[kind] > 0)
		e->n[kind]--;
	if ((e = ent(app, tname, 0)) != NULL && e->n[kind] > 0)
		e->n[kind]--;
	ent_gc(app, kname);
	ent_gc(app, tname);
}
