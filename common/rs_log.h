/*
 * rs_log.h - JSON-lines logging to stderr.
 *
 * One line per record: {"ts":"...","level":"info","service":"api",
 * "msg":"...","run_id":"...","trace_id":"..."}. run_id and trace_id are
 * omitted when NULL. Thread-safe: each record is one write(2).
 */
#ifndef RS_LOG_H
#define RS_LOG_H

typedef enum { RS_LOG_DEBUG = 0, RS_LOG_INFO, RS_LOG_WARN, RS_LOG_ERROR } rs_log_level;

/* Set the service name stamped on every record and the minimum level
 * (from RS_LOG_LEVEL: debug|info|warn|error, default info). Call once. */
void rs_log_init(const char *service);

/* Write one record. fmt is printf-style; the result is JSON-escaped. */
void rs_log(rs_log_level lvl, const char *run_id, const char *trace_id,
            const char *fmt, ...) __attribute__((format(printf, 4, 5)));

#define rs_debug(...) rs_log(RS_LOG_DEBUG, NULL, NULL, __VA_ARGS__)
#define rs_info(...)  rs_log(RS_LOG_INFO, NULL, NULL, __VA_ARGS__)
#define rs_warn(...)  rs_log(RS_LOG_WARN, NULL, NULL, __VA_ARGS__)
#define rs_error(...) rs_log(RS_LOG_ERROR, NULL, NULL, __VA_ARGS__)

/* Append s to buf (cap bytes incl. NUL) JSON-escaped, without quotes.
 * Returns the number of bytes written (truncates safely). */
int rs_log_escape(char *buf, int cap, const char *s);

#endif
