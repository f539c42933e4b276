/*
 * rs_metrics.h - Prometheus metrics (text exposition format 0.0.4).
 *
 * A process-wide registry of counters, gauges and histograms. Metrics are
 * registered once at start-up (not thread-safe) and updated from any
 * thread (lock-free atomics). A "series" is a metric name plus a fixed
 * label string such as `status="completed"`: register each series you use.
 */
#ifndef RS_METRICS_H
#define RS_METRICS_H

#include <stddef.h>
#include <stdint.h>

typedef struct rs_metric rs_metric;

/* Register a series. name must match [a-z_:][a-z0-9_:]*; labels is NULL or
 * `k="v",k2="v2"`. Returns a handle valid for the life of the process. */
rs_metric *rs_counter(const char *name, const char *help, const char *labels);
rs_metric *rs_gauge(const char *name, const char *help, const char *labels);
/* Histogram with latency buckets in seconds (0.0005 .. 10). */
rs_metric *rs_histogram(const char *name, const char *help, const char *labels);

void rs_metric_inc(rs_metric *m);
void rs_metric_add(rs_metric *m, double v);
void rs_metric_set(rs_metric *m, double v);
double rs_metric_get(const rs_metric *m);
/* Record an observation (seconds) into a histogram. */
void rs_metric_observe(rs_metric *m, double seconds);

/* Render every registered series. Caller frees the result. */
char *rs_metrics_render(size_t *len);

#endif
