/*
 * out.c - how runctl talks to people and to scripts.
 *
 * Human output is aligned text; colour is used only when stdout is a
 * terminal and NO_COLOR is unset, so piped output and golden files are
 * byte-for-byte deterministic. --json switches every command to JSON on
 * stdout (one document, or one object per line for streams), errors
 * included (rs_ctl_out_err).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "rs_json.h"
#include "runctl.h"

static int json_mode;
static int color_mode;

void
rs_ctl_out_init(int argc, char **argv)
{
	const char *nc = getenv("NO_COLOR");

	json_mode = rs_ctl_has(argc, argv, "json");
	color_mode = !json_mode && isatty(STDOUT_FILENO) && (nc == NULL || nc[0] == '\0') &&
	             !rs_ctl_has(argc, argv, "no-color");
}

int
rs_ctl_out_json(void)
{
	return json_mode;
}

int
rs_ctl_out_tty(void)
{
	return color_mode;
}

const char *
rs_ctl_out_on(out_color c)
{
	static const char *const seq[] = {
		[OUT_PLAIN] = "", [OUT_RED] = "\033[31m", [OUT_GREEN] = "\033[32m",
		[OUT_YELLOW] = "\033[33m", [OUT_MAGENTA] = "\033[35m", [OUT_DIM] = "\033[2m",
		[OUT_BOLD] = "\033[1m",
	};

	return color_mode ? seq[c] : "";
}

const char *
rs_ctl_out_off(void)
{
	return color_mode ? "\033[0m" : "";
}

void
rs_ctl_out_json_value(FILE *f, json_t *v, int pretty)
{
	char *s = pretty ? json_dumps(v, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_ENCODE_ANY)
	                 : json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);

	if (s != NULL) {
		fputs(s, f);
		fputc('\n', f);
		free(s);
	}
}

/* In --json mode an error is a JSON document too, on stdout where the
 * script reads (one line; nothing on stderr), so `out=$(runctl --json ...)`
 * always holds JSON: {"error": {"command", "exit", "message"}}. */
int
rs_ctl_out_err(int rc, const char *cmd, const char *fmt, ...)
{
	char msg[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (json_mode) {
		json_t *doc = json_pack("{s:{s:s?, s:i, s:s}}", "error", "command", cmd, "exit", rc,
		                        "message", msg);
		rs_ctl_out_json_value(stdout, doc, 0);
		json_decref(doc);
		fflush(stdout);
		return rc;
	}
	if (cmd != NULL)
		fprintf(stderr, "runctl %s: %s\n", cmd, msg);
	else
		fprintf(stderr, "runctl: %s\n", msg);
	return rc;
}
