/*
 * service.c - rs-api's parts in the order they start and stop: its
 * settings, the hooks common/rs_service.c calls (main.c is the table naming
 * them) and the drain of open requests, streams and waits on SIGTERM. The
 * lws service loop runs on the main thread; the lifecycle's signal thread
 * wakes it (lws_cancel_service is thread-safe).
 */
#include "api.h"
#include "rs_config.h"
#include "rs_log.h"
#include "rs_time.h"

#include <sys/resource.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const rs_api_required[] = { "RUNS", "CMDS", "kv:apikeys", "kv:agents",
                                        "kv:idempotency", "kv:runs", NULL };

static rs_status
load_config(rs_api *app, const rs_config *cfg)
{
	int64_t v;

	app->listen_addr = cfg->listen_addr;
	app->pg_url = cfg->pg_url;
	app->event_lib = rs_env_str("RS_API_EVENT_LIB", "libev");
	if (strcmp(app->event_lib, "libev") != 0 && strcmp(app->event_lib, "poll") != 0) {
		rs_error("RS_API_EVENT_LIB: must be libev or poll, not %s", app->event_lib);
		return RS_EINVAL;
	}
	app->port = (int)cfg->ops_port;
	app->shutdown_grace_ms = cfg->shutdown_grace_ms;
#define INT_ENV(name, def, min, max, field) \
	do { if (rs_env_int(name, def, min, max, &v) != RS_OK) return RS_EINVAL; field = v; } while (0)
	INT_ENV("RS_API_MAX_BODY", 1048576, 1024, 64 * 1048576, app->max_body);
	INT_ENV("RS_API_MAX_FDS", 32768, 256, 1048576, app->max_fds);
	INT_ENV("RS_API_HEADER_TIMEOUT_S", 10, 1, 300, app->header_timeout_s);
	INT_ENV("RS_API_IDLE_TIMEOUT_S", 30, 1, 3600, app->idle_timeout_s);
	INT_ENV("RS_API_SSE_HEARTBEAT_S", 15, 1, 3600, app->hb_s);
	INT_ENV("RS_API_WORKERS", 4, 1, 256, app->workers);
	INT_ENV("RS_API_AUTH_TTL_MS", 10000, 0, 3600000, app->auth_ttl_ms);
	INT_ENV("RS_API_RYW_MS", 2000, 0, 60000, app->ryw_ms);
	INT_ENV("RS_API_PUBLISH_TIMEOUT_MS", 5000, 100, 60000, app->pub_timeout_ms);
	INT_ENV("RS_API_STORAGE_HIGH_WATER_PCT", 90, 1, 100, app->storage_high_water_pct);
	/* Limits (docs/operations.md, "Limits"); 0 turns a per-* one off. */
	INT_ENV("RS_API_MAX_WATCHERS_PER_KEY", 100, 0, 1000000, app->max_watchers_key);
	INT_ENV("RS_API_MAX_WATCHERS_PER_TENANT", 1000, 0, 1000000, app->max_watchers_tenant);
	INT_ENV("RS_API_MAX_WAITS_PER_KEY", 100, 0, 1000000, app->max_waits_key);
	INT_ENV("RS_API_MAX_WAITS_PER_TENANT", 1000, 0, 1000000, app->max_waits_tenant);
	INT_ENV("RS_API_LIMIT_RETRY_AFTER_S", 5, 1, 3600, app->limit_retry_after_s);
	INT_ENV("RS_API_SSE_REPLAY_PAGE", 256, 16, 65536, app->replay_page);
	INT_ENV("RS_API_SSE_RECHECK_S", -1, -1, 3600, app->sse_recheck_s);
	/* Run views for single-run reads and waits (views.c); 0 runs: no cache. */
	INT_ENV("RS_API_VIEW_CACHE_RUNS", 10000, 0, 10000000, app->view_cache_runs);
	INT_ENV("RS_API_VIEW_CACHE_MB", 64, 1, 65536, app->view_cache_mb);
#undef INT_ENV
	return RS_OK;
}

/* Set the soft RLIMIT_NOFILE to RS_API_MAX_FDS (at most the hard limit),
 * before lws sizes its tables from it. Both directions matter: a soft
 * limit of 1024 (a common default) caps the watchers near 1,000, and a
 * huge one makes every connection close slow - libwebsockets 4.1.6 as
 * packaged (built with _DEBUG) scans its whole fd table, one slot per
 * possible fd, on each close (sanity_assert_no_sockfd_traces): ~17 us at
 * 20,000 fds, ~0.46 ms at 1,048,576 (docs/benchmarks.md, API). */
static void
set_fd_limit(rs_api *app)
{
	struct rlimit rl;
	rlim_t want = (rlim_t)app->max_fds;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return;
	if (rl.rlim_max != RLIM_INFINITY && want > rl.rlim_max)
		want = rl.rlim_max;
	if (want == rl.rlim_cur)
		return;
	rl.rlim_cur = want;
	if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
		rs_warn("api: cannot set RLIMIT_NOFILE to %llu", (unsigned long long)want);
	else if (want < (rlim_t)app->max_fds)
		rs_info("api: open files limited to %llu by the hard limit (RS_API_MAX_FDS %d)",
		        (unsigned long long)want, app->max_fds);
}

/* The required ones were checked (rs_api_required); the others are
 * optional and their routes answer 503 without them. */
static rs_status
open_kv(rs_api *app)
{
	if (js_KeyValue(&app->kv_apikeys, app->nats.js, "apikeys") != NATS_OK ||
	    js_KeyValue(&app->kv_agents, app->nats.js, "agents") != NATS_OK ||
	    js_KeyValue(&app->kv_idem, app->nats.js, "idempotency") != NATS_OK ||
	    js_KeyValue(&app->kv_runs, app->nats.js, "runs") != NATS_OK)
		return RS_EIO;
	if (js_KeyValue(&app->kv_schedules, app->nats.js, "schedules") != NATS_OK) {
		rs_warn("api: KV schedules missing (run: runctl streams apply): /v1/schedules answers 503");
		app->kv_schedules = NULL;
	}
	/* Optional: without it a queued run shows no queue position. */
	if (js_KeyValue(&app->kv_gates, app->nats.js, "gates") != NATS_OK) {
		rs_warn("api: KV gates missing (run: runctl streams apply): no queue positions");
		app->kv_gates = NULL;
	}
	/* Optional: without it the secrets routes answer 503. */
	if (js_KeyValue(&app->kv_secrets, app->nats.js, RS_SECRET_BUCKET) != NATS_OK) {
		rs_warn("api: KV %s missing (run: runctl streams apply): /v1/secrets answers 503",
		        RS_SECRET_BUCKET);
		app->kv_secrets = NULL;
	}
	atomic_store(&app->streams_ok, 1);
	return RS_OK;
}

/* Stop accepting, answer or close what is open, then let the workers and
 * async publishes finish - bounded by RS_SHUTDOWN_GRACE_MS. */
static void
drain(rs_api *app)
{
	int64_t deadline = rs_mono_ms() + app->shutdown_grace_ms;

	atomic_store(&app->stopping, 1);
	rs_info("api: shutting down: closing SSE streams, finishing %d request(s)",
	        rs_api_work_inflight(app));
	rs_api_sse_close_all(app);
	rs_api_hub_expire_waiters(app);
	while (rs_mono_ms() < deadline &&
	       (rs_api_work_inflight(app) > 0 || rs_api_hub_watchers(app) > 0 ||
	        app->nwaiters > 0)) {
		if (rs_api_http_service(app, 0) < 0)
			break;
		/* work finished meanwhile may have started new streams/waits */
		rs_api_sse_close_all(app);
		rs_api_hub_expire_waiters(app);
	}
	/* A few more turns so the last answers leave the socket buffers. */
	for (int i = 0; i < 20; i++)
		rs_api_http_service(app, 1);
}

rs_status
rs_api_service_configure(rs_service *s)
{
	rs_api *app = s->app;

	if (load_config(app, s->cfg) != RS_OK)
		return RS_EINVAL;
	set_fd_limit(app);
	app->ops = s->ops;   /* our HTTP server answers /healthz /readyz /metrics */
	return RS_OK;
}

rs_status
rs_api_service_init(rs_service *s)
{
	rs_api *app = s->app;

	if (rs_api_auth_init(app) != RS_OK || rs_api_agents_init(app) != RS_OK ||
	    rs_api_pending_init(app) != RS_OK || rs_api_limits_init(app) != RS_OK ||
	    rs_api_secrets_init(app) != RS_OK || rs_api_viewer_init(app) != RS_OK)
		return RS_ERR;
	return RS_OK;
}

void
rs_api_service_js_options(rs_service *s, jsOptions *jo)
{
	jo->PublishAsync.AckHandler = rs_api_pub_ack;
	jo->PublishAsync.AckHandlerClosure = s->app;
	jo->PublishAsync.MaxPending = 16384;
	jo->PublishAsync.StallWait = 1000;
}

rs_status
rs_api_service_start(rs_service *s)
{
	rs_api *app = s->app;

	if (open_kv(app) != RS_OK || rs_api_work_start(app, app->workers) != RS_OK ||
	    rs_api_live_start(app) != RS_OK || rs_api_http_start(app) != RS_OK)
		return RS_ERR;
	return RS_OK;
}

void
rs_api_service_run(rs_service *s)
{
	while (!atomic_load(&s->stopping))
		if (rs_api_http_service(s->app, 0) < 0)
			break;
}

void
rs_api_service_wake(rs_service *s)
{
	rs_api *app = s->app;

	if (app->ctx != NULL)
		lws_cancel_service(app->ctx);
}

/* Order: open requests answered (when we served any), no new live frames,
 * no more workers, then the server, then the last async publishes. */
void
rs_api_service_drain(rs_service *s, int64_t grace_ms)
{
	rs_api *app = s->app;

	(void)grace_ms;   /* drain() reads app->shutdown_grace_ms, the same */
	if (atomic_load(&s->started))
		drain(app);
	rs_api_live_unsubscribe(app);
	rs_api_work_stop(app);
	rs_api_http_stop(app);
	rs_api_live_stop(app);
	if (app->nats.js != NULL) {
		/* Bounded: an ack lost to a leader change must not hold the
		 * stop forever (nats.c waits without limit given no options). */
		jsPubOptions po;

		jsPubOptions_Init(&po);
		po.MaxWait = 2000;
		js_PublishAsyncComplete(app->nats.js, &po);
	}
	kvStore_Destroy(app->kv_apikeys);
	kvStore_Destroy(app->kv_agents);
	kvStore_Destroy(app->kv_idem);
	kvStore_Destroy(app->kv_runs);
	kvStore_Destroy(app->kv_gates);
	kvStore_Destroy(app->kv_schedules);
	kvStore_Destroy(app->kv_secrets);
	rs_api_secrets_free(app);
}

int
rs_api_service_stop(rs_service *s)
{
	rs_api *app = s->app;

	rs_api_pending_free(app);
	rs_api_agents_free(app);
	rs_api_auth_free(app);
	rs_api_limits_free(app);
	rs_api_viewer_free(app);
	rs_api_sse_free_static();
	return 0;
}
