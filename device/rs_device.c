/*
 * rs_device.c - the device SDK (see rs_device.h): one lws client context
 * and connection on the caller's thread, a pool of handler threads, and a
 * ring of recent call ids for de-duplication.
 *
 * Only the lws thread touches lws objects and the ring; handlers hand
 * their results back through a mutex-protected list and
 * lws_cancel_service() (LWS_CALLBACK_EVENT_WAIT_CANCELLED drains it).
 */
#include "rs_device.h"

#include <libwebsockets.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rs_json.h"
#include "rs_log.h"
#include "rs_time.h"

#define SUBPROTOCOL "runstream.device.v1"
#define RING 512

typedef struct dev_call {
	struct dev_call *next;
	rs_device_call pub;
	json_t *frame;          /* owns the strings pub points to */
	struct dev_tool *tool;
	struct rs_device *dev;
	atomic_int cancelled;
	int64_t deadline_ms;    /* Unix ms; 0: none */
	char *result;           /* tool.result frame, set by the worker */
} dev_call;

typedef struct dev_tool {
	struct dev_tool *next;
	char *name;
	rs_device_tool_fn fn;
	void *arg;
} dev_tool;

enum { SEEN_FREE = 0, SEEN_RUNNING, SEEN_DONE, SEEN_CANCELLED };

typedef struct {
	char *call_id;
	int state;
	dev_call *call;         /* while running */
	char *result;           /* when done: resent on redelivery */
} seen_ent;

typedef struct out_frame {
	struct out_frame *next;
	size_t len;
	unsigned char buf[];
} out_frame;

struct rs_device {
	char *url, *device_id, *token;
	char host[256], path[256];
	int port, nworkers, bmin, bmax, backoff;
	json_t *tools;          /* hello's tools array */
	dev_tool *handlers;

	struct lws_context *ctx;
	struct lws *wsi;
	int welcomed;
	atomic_int stop;
	atomic_int abort_all;   /* handlers see rs_device_cancelled(): fatal close or drain overdue */
	int fatal;              /* 0, or the close that ended the device: 4401, 4409 */
	int draining, grace_ms, running;
	int64_t drain_until;    /* monotonic ms */
	lws_sorted_usec_list_t sul_reconnect, sul_drain;
	out_frame *outq, *outq_tail;
	char *rx;
	size_t rx_len;

	seen_ent seen[RING];
	size_t seen_next;

	/* handler pool */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	dev_call *todo, *todo_tail;     /* for workers */
	dev_call *done;                 /* back to the lws thread */
	pthread_t *threads;
	int nthreads, closing;
};

/* ---- outbound ------------------------------------------------------- */

static void
send_frame(rs_device *d, const char *s)
{
	size_t len = strlen(s);
	out_frame *o;

	if (d->wsi == NULL)
		return;
	o = malloc(sizeof(*o) + LWS_PRE + len);
	if (o == NULL)
		return;
	o->next = NULL;
	o->len = len;
	memcpy(o->buf + LWS_PRE, s, len);
	if (d->outq_tail)
		d->outq_tail->next = o;
	else
		d->outq = o;
	d->outq_tail = o;
	lws_callback_on_writable(d->wsi);
}

static void
drop_outq(rs_device *d)
{
	out_frame *o, *n;

	for (o = d->outq; o; o = n) {
		n = o->next;
		free(o);
	}
	d->outq = d->outq_tail = NULL;
	free(d->rx);
	d->rx = NULL;
	d->rx_len = 0;
}

/* ---- de-duplication ring -------------------------------------------- */

static seen_ent *
seen_find(rs_device *d, const char *call_id)
{
	for (size_t i = 0; i < RING; i++)
		if (d->seen[i].state != SEEN_FREE && strcmp(d->seen[i].call_id, call_id) == 0)
			return &d->seen[i];
	return NULL;
}

static seen_ent *
seen_add(rs_device *d, const char *call_id)
{
	seen_ent *e = &d->seen[d->seen_next];

	d->seen_next = (d->seen_next + 1) % RING;
	/* Evicting a running call only forgets its dedupe entry; the call
	 * itself still completes and answers. */
	free(e->call_id);
	free(e->result);
	memset(e, 0, sizeof(*e));
	e->call_id = strdup(call_id);
	if (e->call_id == NULL)
		return NULL;
	e->state = SEEN_RUNNING;
	return e;
}

/* ---- handlers ------------------------------------------------------- */

static char *
result_frame(const char *call_id, int ok, json_t *output, const rs_device_error *err)
{
	json_t *o = json_pack("{s:s, s:s}", "type", "tool.result", "call_id", call_id);
	char *s;

	if (o == NULL)
		return NULL;
	if (ok)
		json_object_set_new(o, "output", output ? output : json_null());
	else
		json_object_set_new(o, "error", json_pack("{s:s, s:s, s:b}", "code",
		                    err->code[0] ? err->code : "tool_error", "message", err->message,
		                    "retryable", err->retryable));
	s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(o);
	return s;
}

static void *
worker_main(void *arg)
{
	rs_device *d = arg;
	dev_call *c;

	for (;;) {
		json_t *out = NULL;
		rs_device_error err;
		int rc;

		pthread_mutex_lock(&d->mu);
		while (d->todo == NULL && !d->closing)
			pthread_cond_wait(&d->cv, &d->mu);
		c = d->todo;
		if (c == NULL) {
			pthread_mutex_unlock(&d->mu);
			return NULL;
		}
		d->todo = c->next;
		if (d->todo == NULL)
			d->todo_tail = NULL;
		pthread_mutex_unlock(&d->mu);

		memset(&err, 0, sizeof(err));
		rc = c->tool->fn(c->tool->arg, &c->pub, &out, &err);
		c->result = result_frame(c->pub.call_id, rc == 0, out, &err);

		pthread_mutex_lock(&d->mu);
		c->next = d->done;
		d->done = c;
		pthread_mutex_unlock(&d->mu);
		if (d->ctx)
			lws_cancel_service(d->ctx);
	}
}

static void
call_free(dev_call *c)
{
	json_decref(c->frame);
	free(c->result);
	free(c);
}

/* lws thread: results from the workers. */
static void
drain_done(rs_device *d)
{
	dev_call *c, *next;

	pthread_mutex_lock(&d->mu);
	c = d->done;
	d->done = NULL;
	pthread_mutex_unlock(&d->mu);
	for (; c != NULL; c = next) {
		seen_ent *e = seen_find(d, c->pub.call_id);

		next = c->next;
		d->running--;
		if (e != NULL && e->call == c) {
			e->call = NULL;
			if (e->state == SEEN_RUNNING) {
				e->state = SEEN_DONE;
				e->result = c->result ? strdup(c->result) : NULL;
			}
		}
		/* Not for a cancelled call: nobody wants it. If we are offline
		 * the stored copy goes out when the router redelivers. */
		if (c->result != NULL && (e == NULL || e->state == SEEN_DONE))
			send_frame(d, c->result);
		call_free(c);
	}
}

int
rs_device_cancelled(const rs_device_call *call)
{
	const dev_call *c = (const dev_call *)((const char *)call - offsetof(dev_call, pub));

	return atomic_load(&c->cancelled) || atomic_load(&c->dev->abort_all) ||
	       (c->deadline_ms > 0 && rs_now_ms() >= c->deadline_ms);
}

/* ---- frames from the router ----------------------------------------- */

static void
on_tool_call(rs_device *d, json_t *o)
{
	const char *call_id = json_string_value(json_object_get(o, "call_id"));
	const char *tool = json_string_value(json_object_get(o, "tool"));
	seen_ent *e;
	dev_call *c;
	dev_tool *t;

	if (call_id == NULL || tool == NULL)
		return;
	e = seen_find(d, call_id);
	if (e != NULL) {
		if (e->state == SEEN_DONE && e->result != NULL) {
			/* Our answer may have been lost: the same answer again, the
			 * handler is not run twice. */
			rs_info("device %s: answered from cache: %s", d->device_id, call_id);
			send_frame(d, e->result);
		} else {
			rs_info("device %s: redelivered while %s: %s", d->device_id,
			        e->state == SEEN_RUNNING ? "running" : "cancelled", call_id);
		}
		return;
	}
	/* Draining: not ours to start; the router hands it out again once we
	 * have left. */
	if (atomic_load(&d->stop))
		return;
	for (t = d->handlers; t != NULL && strcmp(t->name, tool) != 0; t = t->next)
		;
	if (t == NULL) {
		rs_device_error err = { "unknown_tool", "", 0 };
		char *s;

		snprintf(err.message, sizeof(err.message), "this device has no tool \"%s\"", tool);
		s = result_frame(call_id, 0, NULL, &err);
		if (s != NULL)
			send_frame(d, s);
		free(s);
		return;
	}
	c = calloc(1, sizeof(*c));
	e = seen_add(d, call_id);
	if (c == NULL || e == NULL) {
		free(c);
		return;
	}
	c->frame = json_incref(o);
	c->tool = t;
	c->dev = d;
	c->pub.call_id = call_id;
	c->pub.tool = tool;
	c->pub.run_id = json_string_value(json_object_get(o, "run_id"));
	c->pub.step_id = json_string_value(json_object_get(o, "step_id"));
	c->pub.deadline = json_string_value(json_object_get(o, "deadline"));
	c->pub.args = json_object_get(o, "args");
	c->pub.attempt = json_integer_value(json_object_get(o, "attempt"));
	if (c->pub.deadline == NULL || rs_time_parse_rfc3339(c->pub.deadline, &c->deadline_ms) != RS_OK)
		c->deadline_ms = 0;
	e->call = c;
	d->running++;
	pthread_mutex_lock(&d->mu);
	if (d->todo_tail)
		d->todo_tail->next = c;
	else
		d->todo = c;
	d->todo_tail = c;
	pthread_cond_signal(&d->cv);
	pthread_mutex_unlock(&d->mu);
}

static void
on_frame(rs_device *d, const char *buf, size_t len)
{
	json_t *o = NULL;
	char err[200];
	const char *type;

	if (rs_json_parse(buf, len, &o, err, sizeof(err)) != RS_OK || !json_is_object(o)) {
		rs_warn("device: unparseable frame from router: %s", err);
		goto cleanup;
	}
	type = json_string_value(json_object_get(o, "type"));
	if (type == NULL)
		goto cleanup;
	if (strcmp(type, "welcome") == 0) {
		d->welcomed = 1;
		d->backoff = d->bmin;
		rs_info("device %s: welcome (tenant %s)", d->device_id,
		        json_string_value(json_object_get(o, "tenant")));
	} else if (strcmp(type, "tool.call") == 0) {
		on_tool_call(d, o);
	} else if (strcmp(type, "tool.cancel") == 0) {
		const char *id = json_string_value(json_object_get(o, "call_id"));
		seen_ent *e = id ? seen_find(d, id) : NULL;

		if (e != NULL && e->state == SEEN_RUNNING) {
			rs_info("device %s: cancelled by the router: %s", d->device_id, id);
			e->state = SEEN_CANCELLED;
			if (e->call != NULL)
				atomic_store(&e->call->cancelled, 1);
		}
	} else if (strcmp(type, "error") == 0) {
		const char *code = json_string_value(json_object_get(o, "code"));

		rs_warn("device %s: router error %s: %s", d->device_id, code ? code : "?",
		        json_string_value(json_object_get(o, "message")));
		if (code != NULL && strcmp(code, "unauthorized") == 0)
			d->fatal = 4401;
		else if (code != NULL && strcmp(code, "replaced") == 0)
			d->fatal = 4409;
	}
cleanup:
	json_decref(o);
}

/* ---- connection ----------------------------------------------------- */

static void connect_now(lws_sorted_usec_list_t *sul);

static void
schedule_reconnect(rs_device *d)
{
	int delay = d->backoff;

	if (atomic_load(&d->stop) || d->fatal)
		return;
	/* Exponential with jitter: a fleet does not reconnect in lockstep. */
	delay = delay / 2 + (int)(lws_now_usecs() % (uint64_t)(delay / 2 + 1));
	d->backoff = d->backoff * 2 > d->bmax ? d->bmax : d->backoff * 2;
	rs_info("device %s: reconnecting in %d ms", d->device_id, delay);
	lws_sul_schedule(d->ctx, 0, &d->sul_reconnect, connect_now, (lws_usec_t)delay * 1000);
}

static void
connect_now(lws_sorted_usec_list_t *sul)
{
	rs_device *d = lws_container_of(sul, rs_device, sul_reconnect);
	struct lws_client_connect_info i;

	memset(&i, 0, sizeof(i));
	i.context = d->ctx;
	i.address = d->host;
	i.port = d->port;
	i.path = d->path;
	i.host = d->host;
	i.origin = d->host;
	i.protocol = SUBPROTOCOL;
	i.local_protocol_name = SUBPROTOCOL;
	i.pwsi = &d->wsi;
	i.userdata = d;
	d->welcomed = 0;
	if (lws_client_connect_via_info(&i) == NULL) {
		d->wsi = NULL;
		schedule_reconnect(d);
	}
}

static int
on_receive(rs_device *d, const char *in, size_t len)
{
	int final = lws_is_final_fragment(d->wsi) && lws_remaining_packet_payload(d->wsi) == 0;
	char *p;

	if (final && d->rx == NULL) {
		on_frame(d, in, len);
		return 0;
	}
	p = realloc(d->rx, d->rx_len + len + 1);
	if (p == NULL)
		return -1;
	d->rx = p;
	memcpy(d->rx + d->rx_len, in, len);
	d->rx_len += len;
	if (final) {
		on_frame(d, d->rx, d->rx_len);
		free(d->rx);
		d->rx = NULL;
		d->rx_len = 0;
	}
	return 0;
}

static int
device_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
	rs_device *d = lws_context_user(lws_get_context(wsi));
	out_frame *o;

	if (d == NULL)
		return 0;
	switch (reason) {
	case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
		drain_done(d);
		return 0;
	case LWS_CALLBACK_CLIENT_ESTABLISHED: {
		json_t *h = json_pack("{s:s, s:s, s:s, s:O}", "type", "hello", "device_id",
		                      d->device_id, "token", d->token, "tools", d->tools);
		char *s = h ? json_dumps(h, JSON_COMPACT | JSON_SORT_KEYS) : NULL;

		if (s != NULL)
			send_frame(d, s);
		free(s);
		json_decref(h);
		return 0;
	}
	case LWS_CALLBACK_CLIENT_RECEIVE:
		return on_receive(d, in, len);
	case LWS_CALLBACK_CLIENT_WRITEABLE:
		o = d->outq;
		if (o == NULL)
			return 0;
		d->outq = o->next;
		if (d->outq == NULL)
			d->outq_tail = NULL;
		if (lws_write(wsi, o->buf + LWS_PRE, o->len, LWS_WRITE_TEXT) < (int)o->len) {
			free(o);
			return -1;
		}
		free(o);
		if (d->outq != NULL)
			lws_callback_on_writable(wsi);
		return 0;
	case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
		if (len >= 2) {
			int code = ((const unsigned char *)in)[0] << 8 | ((const unsigned char *)in)[1];

			rs_info("device %s: router closed the connection (%d)", d->device_id, code);
			/* Reconnecting would not help: the token is refused, or a
			 * newer connection of this device took over (two would
			 * replace each other forever). */
			if (code == 4401 || code == 4409)
				d->fatal = code;
		}
		return 0;
	case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
		rs_warn("device %s: cannot connect to %s: %s", d->device_id, d->url,
		        in ? (const char *)in : "error");
		d->wsi = NULL;
		drop_outq(d);
		schedule_reconnect(d);
		return 0;
	case LWS_CALLBACK_CLIENT_CLOSED:
		rs_info("device %s: disconnected", d->device_id);
		d->wsi = NULL;
		drop_outq(d);
		schedule_reconnect(d);
		return 0;
	default:
		return 0;
	}
}

/* ---- shutdown ------------------------------------------------------- */

/* Wakes the service loop while draining, so the grace period is checked
 * even when nothing else happens. */
static void
drain_tick(lws_sorted_usec_list_t *sul)
{
	rs_device *d = lws_container_of(sul, rs_device, sul_drain);

	lws_sul_schedule(d->ctx, 0, &d->sul_drain, drain_tick, 100 * LWS_US_PER_MS);
}

/* lws thread: 1 once a stopping device may leave. Stopping takes no new
 * calls but lets the running ones finish and sends their results (for up to
 * grace_ms, then handlers see rs_device_cancelled()); results of calls that
 * finish while offline stay unsent: the router hands those calls out again. */
static int
drained(rs_device *d)
{
	if (!atomic_load(&d->stop))
		return 0;
	if (!d->draining) {
		d->draining = 1;
		d->drain_until = rs_mono_ms() + d->grace_ms;
		lws_sul_cancel(&d->sul_reconnect);
		drain_tick(&d->sul_drain);
		if (d->running > 0)
			rs_info("device %s: stopping: waiting for %d running call(s)", d->device_id,
			        d->running);
	}
	if (d->running > 0 && rs_mono_ms() >= d->drain_until && !atomic_load(&d->abort_all)) {
		rs_warn("device %s: %d call(s) still running after %d ms: cancelling them",
		        d->device_id, d->running, d->grace_ms);
		atomic_store(&d->abort_all, 1);
	}
	return d->running == 0 && (d->outq == NULL || d->wsi == NULL);
}

static const struct lws_protocols protocols[] = {
	{ SUBPROTOCOL, device_cb, 0, 0, 0, NULL, 0 },
	{ NULL, NULL, 0, 0, 0, NULL, 0 }
};

/* ---- life cycle ----------------------------------------------------- */

rs_status
rs_device_new(rs_device **out, const rs_device_config *cfg)
{
	rs_device *d = calloc(1, sizeof(*d));
	char tmp[512];
	const char *prot, *ads, *path;
	int port;

	*out = NULL;
	if (d == NULL)
		return RS_ENOMEM;
	if (cfg->url == NULL || cfg->device_id == NULL || cfg->token == NULL)
		goto bad;
	snprintf(tmp, sizeof(tmp), "%s", cfg->url);
	if (lws_parse_uri(tmp, &prot, &ads, &port, &path) != 0 || strcmp(prot, "ws") != 0)
		goto bad;
	snprintf(d->host, sizeof(d->host), "%s", ads);
	snprintf(d->path, sizeof(d->path), "/%s", path);
	d->port = port;
	d->url = strdup(cfg->url);
	d->device_id = strdup(cfg->device_id);
	d->token = strdup(cfg->token);
	d->tools = json_array();
	d->nworkers = cfg->workers > 0 ? cfg->workers : 4;
	d->bmin = cfg->backoff_min_ms > 0 ? cfg->backoff_min_ms : 100;
	d->bmax = cfg->backoff_max_ms > 0 ? cfg->backoff_max_ms : 10000;
	d->grace_ms = cfg->shutdown_grace_ms > 0 ? cfg->shutdown_grace_ms : 30000;
	d->backoff = d->bmin;
	pthread_mutex_init(&d->mu, NULL);
	pthread_cond_init(&d->cv, NULL);
	if (d->url == NULL || d->device_id == NULL || d->token == NULL || d->tools == NULL) {
		rs_device_free(d);
		return RS_ENOMEM;
	}
	*out = d;
	return RS_OK;
bad:
	rs_error("device: RS_ROUTER_URL must look like ws://host:port/v1/devices/connect (only ws://)");
	free(d);
	return RS_EINVAL;
}

rs_status
rs_device_add_tool(rs_device *d, const char *name, const char *description,
                   const char *input_schema_json, rs_device_tool_fn fn, void *arg)
{
	dev_tool *t = calloc(1, sizeof(*t));
	json_t *schema = NULL, *o;
	char err[200];

	if (t == NULL || (t->name = strdup(name)) == NULL) {
		free(t);
		return RS_ENOMEM;
	}
	if (input_schema_json != NULL &&
	    rs_json_parse(input_schema_json, strlen(input_schema_json), &schema, err, sizeof(err)) != RS_OK) {
		rs_error("device: tool %s: input schema: %s", name, err);
		free(t->name);
		free(t);
		return RS_EINVAL;
	}
	o = json_pack("{s:s, s:s}", "name", name, "description", description ? description : "");
	if (schema != NULL)
		json_object_set_new(o, "input_schema", schema);
	json_array_append_new(d->tools, o);
	t->fn = fn;
	t->arg = arg;
	t->next = d->handlers;
	d->handlers = t;
	return RS_OK;
}

rs_status
rs_device_run(rs_device *d)
{
	struct lws_context_creation_info info;
	rs_status st = RS_OK;

	memset(&info, 0, sizeof(info));
	info.port = CONTEXT_PORT_NO_LISTEN;
	info.protocols = protocols;
	info.user = d;
	info.options = LWS_SERVER_OPTION_DISABLE_IPV6;
	lws_set_log_level(LLL_ERR, NULL);
	d->ctx = lws_create_context(&info);
	if (d->ctx == NULL)
		return RS_ERR;
	d->threads = calloc((size_t)d->nworkers, sizeof(pthread_t));
	if (d->threads == NULL) {
		st = RS_ENOMEM;
		goto cleanup;
	}
	for (; d->nthreads < d->nworkers; d->nthreads++)
		if (pthread_create(&d->threads[d->nthreads], NULL, worker_main, d) != 0)
			break;
	lws_sul_schedule(d->ctx, 0, &d->sul_reconnect, connect_now, 1);
	while (!d->fatal && !drained(d))
		if (lws_service(d->ctx, 0) < 0)
			break;
	if (d->fatal == 4401) {
		rs_error("device %s: the router refused the token (close 4401, unauthorized): "
		         "not reconnecting; issue a new one with `runctl devices token`", d->device_id);
		st = RS_EINVAL;
	} else if (d->fatal == 4409) {
		rs_error("device %s: another connection of this device replaced this one "
		         "(close 4409): not reconnecting", d->device_id);
		st = RS_ECONFLICT;
	}
cleanup:
	lws_sul_cancel(&d->sul_reconnect);
	lws_sul_cancel(&d->sul_drain);
	/* Handlers still running (a fatal close, or overdue) see
	 * rs_device_cancelled() from here on. */
	atomic_store(&d->abort_all, 1);
	pthread_mutex_lock(&d->mu);
	d->closing = 1;
	pthread_cond_broadcast(&d->cv);
	pthread_mutex_unlock(&d->mu);
	for (int i = 0; i < d->nthreads; i++)
		pthread_join(d->threads[i], NULL);
	d->nthreads = 0;
	lws_context_destroy(d->ctx);
	d->ctx = NULL;
	d->wsi = NULL;
	drop_outq(d);
	return st;
}

void
rs_device_stop(rs_device *d)
{
	/* Async-signal-safe: an atomic store and lws_cancel_service (a write
	 * to lws' event pipe). The service thread does the rest (drained()). */
	atomic_store(&d->stop, 1);
	if (d->ctx != NULL)
		lws_cancel_service(d->ctx);
}

void
rs_device_free(rs_device *d)
{
	dev_tool *t, *tn;
	dev_call *c, *cn;

	if (d == NULL)
		return;
	for (t = d->handlers; t; t = tn) {
		tn = t->next;
		free(t->name);
		free(t);
	}
	for (c = d->done; c; c = cn) {
		cn = c->next;
		call_free(c);
	}
	for (c = d->todo; c; c = cn) {
		cn = c->next;
		call_free(c);
	}
	for (size_t i = 0; i < RING; i++) {
		free(d->seen[i].call_id);
		free(d->seen[i].result);
	}
	json_decref(d->tools);
	free(d->threads);
	free(d->url);
	free(d->device_id);
	free(d->token);
	pthread_mutex_destroy(&d->mu);
	pthread_cond_destroy(&d->cv);
	free(d);
}
