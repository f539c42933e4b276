/*
 * ui.c - what rs-api does for browsers: the run viewer's static files
 * under /ui/ (docs/viewer.md) and CORS (RS_API_CORS_ORIGINS).
 *
 * Static files: the directory RS_API_UI_DIR (default: where meson
 * installs services/api/ui, else the source tree's copy, so a build-tree
 * rs-api serves the viewer too) is read once at start into a table of
 * names. A request is a look-up of its one path segment in that table:
 * there is no path built from the URI and no file opened at request time,
 * so no "..", symlink or encoding trick can reach another file. Only
 * regular files with a known extension (their content type) and a plain
 * name ([A-Za-z0-9._-], no leading dot) are taken, at most UI_MAX_FILES of
 * at most UI_MAX_FILE bytes. Each answer carries an ETag (FNV-1a of the
 * bytes) and "Cache-Control: no-cache": the names are not content-hashed,
 * so a browser revalidates (304, no body) and always runs the viewer that
 * matches this API. A missing directory only disables the viewer (404).
 *
 * CORS is off unless RS_API_CORS_ORIGINS lists origins ("*" or
 * "https://a.example,https://b.example"). A request whose Origin is listed
 * gets Access-Control-Allow-Origin (the origin itself, with Vary: Origin);
 * a preflight (OPTIONS with Access-Control-Request-Method) gets 204 with
 * the methods and the headers the API reads. No credentials mode: the API
 * uses Bearer keys, never cookies.
 *
 * Service thread only, after rs_api_viewer_init; the table is immutable.
 */
#include "api.h"
#include "rs_mem.h"
#include "rs_config.h"
#include "rs_log.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#ifndef RS_UI_INSTALL_DIR
#define RS_UI_INSTALL_DIR "/usr/local/share/runstream/ui"
#endif
#ifndef RS_UI_SOURCE_DIR
#define RS_UI_SOURCE_DIR ""
#endif

#define UI_MAX_FILES 64
#define UI_MAX_FILE (4 * 1024 * 1024)
#define CORS_MAX 16

typedef struct {
	char name[64];
	const char *ctype;
	char *body;
	size_t len;
	char etag[24];
} ui_file;

static const struct {
	const char *ext, *ctype;
} ui_types[] = {
	{ ".html", "text/html; charset=utf-8" },
	{ ".js", "text/javascript; charset=utf-8" },
	{ ".mjs", "text/javascript; charset=utf-8" },
	{ ".css", "text/css; charset=utf-8" },
	{ ".svg", "image/svg+xml" },
	{ ".png", "image/png" },
	{ ".ico", "image/x-icon" },
	{ ".json", "application/json" },
	{ ".txt", "text/plain; charset=utf-8" },
};

static const char *
ctype_of(const char *name)
{
	size_t n = strlen(name);

	for (size_t i = 0; i < sizeof(ui_types) / sizeof(ui_types[0]); i++) {
		size_t e = strlen(ui_types[i].ext);
		if (n > e && strcmp(name + n - e, ui_types[i].ext) == 0)
			return ui_types[i].ctype;
	}
	return NULL;
}

static int
plain_name(const char *s)
{
	if (*s == '\0' || *s == '.' || strlen(s) >= sizeof(((ui_file *)0)->name))
		return 0;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
		      *s == '.' || *s == '_' || *s == '-'))
			return 0;
	return 1;
}

static rs_status
load_file(const char *dir, const char *name, ui_file *f)
{
	char path[1024];
	struct stat sb;
	FILE *fp;
	uint64_t h = 1469598103934665603ULL;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode) || sb.st_size > UI_MAX_FILE)
		return RS_EINVAL;
	if ((fp = fopen(path, "rb")) == NULL)
		return RS_EIO;
	f->body = malloc((size_t)sb.st_size + 1);
	if (f->body == NULL)
		rs_oom(0);
	f->len = fread(f->body, 1, (size_t)sb.st_size, fp);
	fclose(fp);
	if (f->len != (size_t)sb.st_size) {
		free(f->body);
		f->body = NULL;
		return RS_EIO;
	}
	f->body[f->len] = '\0';
	for (size_t i = 0; i < f->len; i++)
		h = (h ^ (unsigned char)f->body[i]) * 1099511628211ULL;
	snprintf(f->etag, sizeof(f->etag), "\"%016llx\"", (unsigned long long)h);
	snprintf(f->name, sizeof(f->name), "%s", name);
	f->ctype = ctype_of(name);
	return RS_OK;
}

struct rs_api_viewer {
	ui_file files[UI_MAX_FILES];
	size_t nfiles;
	char dir[512];
	int cors_any;
	char cors[CORS_MAX][128];
	size_t ncors;
};

static void
load_dir(rs_api_viewer *v, const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;

	if (d == NULL)
		return;
	snprintf(v->dir, sizeof(v->dir), "%s", dir);
	while ((de = readdir(d)) != NULL && v->nfiles < UI_MAX_FILES) {
		if (!plain_name(de->d_name) || ctype_of(de->d_name) == NULL)
			continue;
		if (load_file(dir, de->d_name, &v->files[v->nfiles]) == RS_OK)
			v->nfiles++;
	}
	closedir(d);
}

static rs_status
load_cors(rs_api_viewer *v)
{
	const char *s = rs_env_str("RS_API_CORS_ORIGINS", "");
	char buf[2048];
	char *tok, *save = NULL;

	if (strlen(s) >= sizeof(buf)) {
		rs_error("RS_API_CORS_ORIGINS: longer than %zu bytes", sizeof(buf) - 1);
		return RS_EINVAL;
	}
	snprintf(buf, sizeof(buf), "%s", s);
	for (tok = strtok_r(buf, ", ", &save); tok != NULL; tok = strtok_r(NULL, ", ", &save)) {
		if (strcmp(tok, "*") == 0) {
			v->cors_any = 1;
			continue;
		}
		/* An origin is scheme://host[:port]: no path, no trailing slash. */
		if ((strncmp(tok, "http://", 7) != 0 && strncmp(tok, "https://", 8) != 0) ||
		    strchr(strstr(tok, "//") + 2, '/') != NULL || strlen(tok) >= sizeof(v->cors[0]) ||
		    v->ncors >= CORS_MAX) {
			rs_error("RS_API_CORS_ORIGINS: '%s' is not an origin (scheme://host[:port]), "
			         "or more than %d are listed", tok, CORS_MAX);
			return RS_EINVAL;
		}
		snprintf(v->cors[v->ncors++], sizeof(v->cors[0]), "%s", tok);
	}
	return RS_OK;
}

rs_status
rs_api_viewer_init(rs_api *app)
{
	rs_api_viewer *v = calloc(1, sizeof(*v));
	const char *dir = rs_env_str("RS_API_UI_DIR", "");

	if (v == NULL)
		rs_oom(0);
	app->viewer = v;
	if (load_cors(v) != RS_OK)
		return RS_EINVAL;
	if (rs_api_stream_token_init(app) != RS_OK)
		return RS_EINVAL;
	if (dir[0] != '\0') {
		load_dir(v, dir);
	} else {
		load_dir(v, RS_UI_INSTALL_DIR);
		if (v->nfiles == 0 && RS_UI_SOURCE_DIR[0] != '\0')
			load_dir(v, RS_UI_SOURCE_DIR);
	}
	if (v->nfiles == 0)
		rs_warn("api: no viewer files (RS_API_UI_DIR %s): /ui/ answers 404",
		        dir[0] ? dir : RS_UI_INSTALL_DIR);
	else
		rs_info("api: viewer: %zu files from %s at /ui/", v->nfiles, v->dir);
	if (v->cors_any || v->ncors > 0)
		rs_info("api: CORS on for %s", v->cors_any ? "any origin" : rs_env_str("RS_API_CORS_ORIGINS", ""));
	return RS_OK;
}

void
rs_api_viewer_free(rs_api *app)
{
	rs_api_viewer *v = app->viewer;

	if (v == NULL)
		return;
	for (size_t i = 0; i < v->nfiles; i++)
		free(v->files[i].body);
	free(v);
	app->viewer = NULL;
}

static void
redirect(rs_api_job *j, const char *to)
{
	j->status = 301;
	j->ctype = "text/plain; charset=utf-8";
	snprintf(j->hdrs, sizeof(j->hdrs), "Location: %s\n", to);
}

int
rs_api_ui_serve(rs_api *app, struct lws *wsi, const char *uri, rs_api_job *j)
{
	rs_api_viewer *v = app->viewer;
	const char *name;
	char inm[64];

	if (strcmp(uri, "/") == 0 || strcmp(uri, "/ui") == 0) {
		redirect(j, "/ui/");
		return 0;
	}
	if (strncmp(uri, "/ui/", 4) != 0)
		return 1;
	if (j->method != RS_M_GET) {
		rs_api_problem(j, 405, "%s allows GET", uri);
		snprintf(j->hdrs, sizeof(j->hdrs), "Allow: GET\n");
		return 0;
	}
	name = uri[4] == '\0' ? "index.html" : uri + 4;
	for (size_t i = 0; v != NULL && i < v->nfiles; i++) {
		const ui_file *f = &v->files[i];
		if (strcmp(f->name, name) != 0)
			continue;
		snprintf(j->hdrs, sizeof(j->hdrs),
		         "Cache-Control: no-cache\nETag: %s\nX-Content-Type-Options: nosniff\n"
		         "Content-Security-Policy: default-src 'self'; img-src 'self' data:; "
		         "frame-ancestors 'none'\n", f->etag);
		j->ctype = f->ctype;
		if (lws_hdr_copy(wsi, inm, sizeof(inm), WSI_TOKEN_HTTP_IF_NONE_MATCH) > 0 &&
		    strcmp(inm, f->etag) == 0) {
			j->status = 304;
			return 0;
		}
		j->status = 200;
		j->resp = malloc(f->len + 1);
		if (j->resp == NULL)
			rs_oom(0);
		memcpy(j->resp, f->body, f->len);
		j->resp_len = f->len;
		return 0;
	}
	rs_api_problem(j, 404, "no such file in the viewer: %s", uri);
	return 0;
}

/* ---- CORS ---- */

void
rs_api_cors_origin(rs_api *app, struct lws *wsi, char *out, size_t cap)
{
	rs_api_viewer *v = app->viewer;
	char origin[160];
	int n;

	out[0] = '\0';
	if (v == NULL || (!v->cors_any && v->ncors == 0))
		return;
	n = lws_hdr_copy(wsi, origin, sizeof(origin), WSI_TOKEN_ORIGIN);
	if (n <= 0 || (size_t)n >= cap)
		return;
	for (int i = 0; i < n; i++)
		if ((unsigned char)origin[i] < 0x21 || (unsigned char)origin[i] > 0x7e)
			return;     /* never echo a byte that could break a header */
	if (!v->cors_any) {
		size_t i;
		for (i = 0; i < v->ncors; i++)
			if (strcmp(v->cors[i], origin) == 0)
				break;
		if (i == v->ncors)
			return;
	}
	snprintf(out, cap, "%s", origin);
}

int
rs_api_cors_preflight(rs_api *app, struct lws *wsi, const char *origin, rs_api_job *j)
{
	char m[32];

	(void)app;
	if (!lws_hdr_total_length(wsi, WSI_TOKEN_OPTIONS_URI))
		return 1;
	if (origin[0] == '\0' ||
	    lws_hdr_custom_copy(wsi, m, sizeof(m), "access-control-request-method:", 30) <= 0) {
		/* Not a preflight of an allowed origin: OPTIONS is not served. */
		rs_api_problem(j, origin[0] ? 400 : 403, "%s",
		               origin[0] ? "OPTIONS without Access-Control-Request-Method"
		                         : "CORS: this origin is not in RS_API_CORS_ORIGINS");
		return 0;
	}
	j->status = 204;
	snprintf(j->hdrs, sizeof(j->hdrs),
	         "Access-Control-Allow-Methods: GET, POST, PUT, DELETE\n"
	         "Access-Control-Allow-Headers: Authorization, Content-Type, Idempotency-Key, "
	         "Last-Event-ID, Prefer, traceparent\nAccess-Control-Max-Age: 600\n");
	return 0;
}

int
rs_api_cors_add(struct lws *wsi, const char *origin, unsigned char **p, unsigned char *end)
{
	static const char expose[] = "Location, Retry-After, WWW-Authenticate";

	if (origin[0] == '\0')
		return 0;
	if (lws_add_http_header_by_name(wsi, (const unsigned char *)"access-control-allow-origin:",
	                                (const unsigned char *)origin, (int)strlen(origin), p, end) ||
	    lws_add_http_header_by_name(wsi, (const unsigned char *)"vary:",
	                                (const unsigned char *)"Origin", 6, p, end) ||
	    lws_add_http_header_by_name(wsi, (const unsigned char *)"access-control-expose-headers:",
	                                (const unsigned char *)expose, (int)sizeof(expose) - 1, p, end))
		return -1;
	return 0;
}
