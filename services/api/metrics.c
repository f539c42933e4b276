/*
 * metrics.c - the API's Prometheus series (rendered by rs_ops at /metrics).
 * Registered once at start-up, updated lock-free from any thread.
 */
#include "api.h"
#include "rs_metrics.h"

static rs_metric *m_req_2xx, *m_req_4xx, *m_req_5xx, *m_latency, *m_created;
static rs_metric *m_watchers, *m_sse_sent, *m_waiters, *m_sse_lat;
static rs_metric *m_lim_watch, *m_lim_wait, *m_drop_subject, *m_drop_event;
static rs_metric *m_view_cache, *m_view_log, *m_views, *m_view_bytes;

void
rs_api_metrics_init(void)
{
	m_req_2xx = rs_counter("rs_api_requests_total", "HTTP requests answered", "class=\"2xx\"");
	m_req_4xx = rs_counter("rs_api_requests_total", "HTTP requests answered", "class=\"4xx\"");
	m_req_5xx = rs_counter("rs_api_requests_total", "HTTP requests answered", "class=\"5xx\"");
	m_latency = rs_histogram("rs_api_request_seconds", "Request latency (arrival to response)", NULL);
	m_created = rs_counter("rs_api_runs_created_total", "Runs created (start durably in CMDS)", NULL);
	m_watchers = rs_gauge("rs_api_sse_watchers", "Open SSE streams", NULL);
	m_waiters = rs_gauge("rs_api_waiters", "Requests parked by Prefer: wait / ?wait", NULL);
	m_sse_lat = rs_histogram("rs_api_sse_delivery_seconds",
	                         "Time an event spends in the API: received from NATS (or read for a "
	                         "replay) until written to a watcher's socket", NULL);
	m_sse_sent = rs_counter("rs_api_sse_events_total", "SSE events written", NULL);
	m_lim_watch = rs_counter("rs_api_limited_total", "Requests refused with 429 by a per-key "
	                         "or per-tenant limit", "kind=\"watch\"");
	m_lim_wait = rs_counter("rs_api_limited_total", "Requests refused with 429 by a per-key "
	                        "or per-tenant limit", "kind=\"wait\"");
	m_drop_subject = rs_counter("rs_api_live_dropped_total", "Live messages on runs.> dropped "
	                            "before the hub: malformed", "reason=\"subject\"");
	m_drop_event = rs_counter("rs_api_live_dropped_total", "Live messages on runs.> dropped "
	                          "before the hub: malformed", "reason=\"event\"");
	m_view_cache = rs_counter("rs_api_view_reads_total", "Single-run answers (GET, waits) by "
	                          "where the run's view came from", "source=\"cache\"");
	m_view_log = rs_counter("rs_api_view_reads_total", "Single-run answers (GET, waits) by "
	                        "where the run's view came from", "source=\"log\"");
	m_views = rs_gauge("rs_api_views", "Run views held (RS_API_VIEW_CACHE_RUNS)", NULL);
	m_view_bytes = rs_gauge("rs_api_view_bytes", "Bytes of events folded into the run views "
	                        "held (RS_API_VIEW_CACHE_MB)", NULL);
}

void
rs_api_metric_view_read(int from_log)
{
	rs_metric_inc(from_log ? m_view_log : m_view_cache);
}

void
rs_api_metric_views(double n, double bytes)
{
	rs_metric_set(m_views, n);
	rs_metric_set(m_view_bytes, bytes);
}

void
rs_api_metric_request(int status, double seconds)
{
	rs_metric_inc(status >= 500 ? m_req_5xx : status >= 400 ? m_req_4xx : m_req_2xx);
	rs_metric_observe(m_latency, seconds);
}

void rs_api_metric_created(void) { rs_metric_inc(m_created); }
void rs_api_metric_watchers(double n) { rs_metric_set(m_watchers, n); }
void
rs_api_metric_sse_sent(double seconds_in_api)
{
	rs_metric_inc(m_sse_sent);
	rs_metric_observe(m_sse_lat, seconds_in_api);
}
void rs_api_metric_waiters(double n) { rs_metric_set(m_waiters, n); }
void
rs_api_metric_limited(int kind)
{
	rs_metric_inc(kind == RS_API_LIM_WATCH ? m_lim_watch : m_lim_wait);
}

void
rs_api_metric_live_dropped(const char *reason)
{
	rs_metric_inc(reason[0] == 's' ? m_drop_subject : m_drop_event);
}
