/* rs_log.c - JSON-lines logger (see rs_log.h). */
#include "rs_log.h"
#include "rs_time.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *log_service = "runstream";
static rs_log_level log_min = RS_LOG_INFO;
static const char *level_names[] = { "debug", "info", "warn", "error" };

void
rs_log_init(const char *service)
{
	const char *lv = getenv("RS_LOG_LEVEL");

	log_service = service;
	if (lv == NULL)
		return;
	for (int i = 0; i < 4; i++)
		if (strcmp(lv, level_names[i]) == 0)
			log_min = (rs_log_level)i;
}

int
rs_log_escape(char *buf, int cap, const char *s)
{
	int n = 0;

	for (; s != NULL && *s != '\0' && n < cap - 7; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\') {
			buf[n++] = '\\';
			buf[n++] = (char)c;
		} else if (c == '\n') {
			buf[n++] = '\\';
			buf[n++] = 'n';
		} else if (c < 0x20) {
			n += snprintf(buf + n, (size_t)(cap - n), "\\u%04x", c);
		} else {
			buf[n++] = (char)c;
		}
	}
	buf[n] = '\0';
	return n;
}

static int
append_field(char *line, int n, int cap, const char *key, const char *val)
{
	if (val == NULL || n >= cap - 16)
		return n;
	n += snprintf(line + n, (size_t)(cap - n), ",\"%s\":\"", key);
	if (n >= cap - 8)
		return cap - 8;
	n += rs_log_escape(line + n, cap - n - 4, val);
	line[n++] = '"';
	line[n] = '\0';
	return n;
}

void
rs_log(rs_log_level lvl, const char *run_id, const char *trace_id,
       const char *fmt, ...)
{
	char msg[2048], line[4096], ts[40];
	va_list ap;
	int n;

	if (lvl < log_min)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	rs_time_rfc3339(rs_now_ms(), ts, sizeof(ts));
	n = snprintf(line, sizeof(line), "{\"ts\":\"%s\",\"level\":\"%s\",\"service\":\"%s\"",
	             ts, level_names[lvl], log_service);
	n = append_field(line, n, (int)sizeof(line) - 2, "msg", msg);
	n = append_field(line, n, (int)sizeof(line) - 2, "run_id", run_id);
	n = append_field(line, n, (int)sizeof(line) - 2, "trace_id", trace_id);
	line[n++] = '}';
	line[n++] = '\n';
	if (write(STDERR_FILENO, line, (size_t)n) < 0)
		return;
}
