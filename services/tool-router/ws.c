/*
 * ws.c - the WebSocket side: lws protocols (ops HTTP + runstream.device.v1),
 * frame assembly and size cap, the outbound queue per connection,
 * heartbeats, and the life cycle of a device on a connection.
 *
 * Everything here runs on the lws service thread. Other threads reach it
 * only through rs_router_post (the inbox), drained on
 * LWS_CALLBACK_EVENT_WAIT_CANCELLED.
 *
 * Memory per idle device is what lws keeps per wsi (its struct and the
 * rx buffer sized by rx_buffer_size below), our rs_router_conn and the
 * rs_router_device: no buffers are held between messages.
 *
 * Before welcome a connection is nobody's: it may send at most
 * RS_ROUTER_MAX_PREHELLO_BYTES in all (hello and any bad frames, so also
 * the largest frame it can make us assemble), and must be welcomed within
 * RS_ROUTER_HELLO_TIMEOUT_S; both close it. After welcome,
 * RS_ROUTER_MAX_FRAME bounds one frame and RS_ROUTER_MAX_DEVICES_PER_TENANT
 * the connections one tenant's devices hold on this router (one per
 * device already: the newest wins).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "router.h"
#include "rs_log.h"
#include "rs_time.h"

/* lws reads a frame in pieces of this size; large frames are assembled in
 * rs_router_conn.rx up to the frame cap. Small on purpose: lws allocates
 * it for every connection for its whole life. */
#define RX_CHUNK 1024
#define CLOSE_REPLACED 4409
#define CLOSE_TOO_MANY 4429
#define CLOSE_HEARTBEAT 4408

static rs_router *
router_of(struct lws *wsi)
{
	return lws_context_user(lws_get_context(wsi));
}

rs_router_conn *
rs_router_conn_find(rs_router *r, uint64_t id)
{
	char k[24];

	snprintf(k, sizeof(k), "%llu", (unsigned long long)id);
	return rs_map_get(&r->conns_by_id, k);
}

void
rs_router_conn_send(rs_router *r, rs_router_conn *c, const char *frame, size_t len)
{
	rs_router_out *o;

	if (c->state == RS_CONN_CLOSING && c->close_code == 0)
		return;
	o = malloc(sizeof(*o) + LWS_PRE + len);
	if (o == NULL)
		return;
	o->next = NULL;
	o->len = len;
	memcpy(o->buf + LWS_PRE, frame, len);
	if (c->outq_tail != NULL)
		c->outq_tail->next = o;
	else
		c->outq = o;
	c->outq_tail = o;
	rs_metric_inc(r->m.frames_out);
	lws_callback_on_writable(c->wsi);
}

void
rs_router_conn_error(rs_router *r, rs_router_conn *c, const char *code, const char *message,
                     uint16_t close_code)
{
	char *frame = rs_router_frame_error(code, message);

	if (frame != NULL) {
		rs_router_conn_send(r, c, frame, strlen(frame));
		free(frame);
	}
	if (close_code != 0) {
		c->close_code = close_code;
		c->state = RS_CONN_CLOSING;
		lws_callback_on_writable(c->wsi);
	}
}

static void
device_free(rs_router_device *d)
{
	if (d == NULL)
		return;
	free(d->key);
	free(d->tools);
	free(d->names);
	free(d);
}

/* Connections holding a device of tenant: +1 / -1 (service thread). */
static int
tenant_count(rs_router *r, const char *tenant, int delta)
{
	intptr_t n = (intptr_t)rs_map_get(&r->tenant_conns, tenant) + delta;

	if (n <= 0)
		rs_map_take(&r->tenant_conns, tenant);
	else if (rs_map_put(&r->tenant_conns, tenant, (void *)n) != RS_OK)
		return -1;
	return 0;
}

void
rs_router_conn_accept(rs_router *r, rs_router_conn *c, const char *tenant,
                      const char *device_id, const char *tools, const char *names,
                      size_t names_len)
{
	size_t tl = strlen(tenant), dl = strlen(device_id);
	rs_router_device *d;
	rs_router_conn *old;
	char *frame, key[150];

	/* A reconnecting device replaces itself: not one more connection. */
	snprintf(key, sizeof(key), "%s.%s", tenant, device_id);
	if (r->max_devices_tenant > 0 && rs_map_get(&r->devices, key) == NULL &&
	    (intptr_t)rs_map_get(&r->tenant_conns, tenant) >= r->max_devices_tenant) {
		char msg[160];
		rs_metric_inc(r->m.tenant_refused);
		snprintf(msg, sizeof(msg), "tenant already has %d devices connected to this router "
		         "(RS_ROUTER_MAX_DEVICES_PER_TENANT); retry later", r->max_devices_tenant);
		rs_router_conn_error(r, c, "too_many_devices", msg, CLOSE_TOO_MANY);
		return;
	}
	d = calloc(1, sizeof(*d) + tl + dl + 2);

	if (d == NULL || (d->key = malloc(tl + dl + 2)) == NULL ||
	    (d->tools = strdup(tools)) == NULL || (d->names = malloc(names_len)) == NULL) {
		device_free(d);
		rs_router_conn_error(r, c, "internal", "out of memory", 1011);
		return;
	}
	snprintf(d->key, tl + dl + 2, "%s.%s", tenant, device_id);
	memcpy(d->ids, tenant, tl + 1);
	memcpy(d->ids + tl + 1, device_id, dl + 1);
	d->tenant = d->ids;
	d->device_id = d->ids + tl + 1;
	memcpy(d->names, names, names_len);
	d->connected_at = rs_now_ms();
	d->conn_id = c->id;

	/* One live connection per device on this router: the newest wins
	 * (the old one is probably half-open after a network change). */
	old = rs_map_get(&r->devices, d->key);
	if (old != NULL && old != c) {
		rs_info("router: device %s reconnected: closing its previous connection", d->key);
		rs_router_conn_error(r, old, "replaced", "a newer connection of this device took over",
		                     CLOSE_REPLACED);
	}
	if (rs_map_put(&r->devices, d->key, c) != RS_OK) {
		device_free(d);
		rs_router_conn_error(r, c, "internal", "out of memory", 1011);
		return;
	}
	if (tenant_count(r, d->tenant, 1) != 0) {
		rs_map_take(&r->devices, d->key);
		device_free(d);
		rs_router_conn_error(r, c, "internal", "out of memory", 1011);
		return;
	}
	c->dev = d;
	c->state = RS_CONN_READY;
	lws_set_timeout(c->wsi, NO_PENDING_TIMEOUT, 0);
	frame = rs_router_frame_welcome(device_id, tenant, r->heartbeat_s);
	if (frame != NULL) {
		rs_router_conn_send(r, c, frame, strlen(frame));
		free(frame);
	}
	rs_metric_set(r->m.devices, (double)r->devices.n);
	rs_info("router: device %s connected (conn %llu)", d->key, (unsigned long long)c->id);
	rs_router_presence_put(r, d, c->id);
	rs_router_calls_device_up(r, c);
}

static void
conn_closed(rs_router *r, rs_router_conn *c)
{
	char k[24];
	rs_router_out *o, *next;

	if (c->id == 0)
		return;  /* never established */
	snprintf(k, sizeof(k), "%llu", (unsigned long long)c->id);
	rs_map_take(&r->conns_by_id, k);
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		r->conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	if (c->dev != NULL) {
		if (rs_map_get(&r->devices, c->dev->key) == c) {
			rs_map_take(&r->devices, c->dev->key);
			rs_router_presence_del(r, c->dev, c->id);
		}
		rs_info("router: device %s disconnected (conn %llu)", c->dev->key,
		        (unsigned long long)c->id);
		c->state = RS_CONN_CLOSING;
		rs_router_calls_device_down(r, c);
		tenant_count(r, c->dev->tenant, -1);
		device_free(c->dev);
		c->dev = NULL;
	}
	for (o = c->outq; o != NULL; o = next) {
		next = o->next;
		free(o);
	}
	free(c->rx);
	memset(c, 0, sizeof(*c));
	rs_metric_set(r->m.devices, (double)r->devices.n);
	rs_metric_set(r->m.connections, (double)r->conns_by_id.n);
}

static void
handle_frame(rs_router *r, rs_router_conn *c, const char *buf, size_t len, int binary)
{
	rs_router_frame f;
	char code[32], msg[300];

	rs_metric_inc(r->m.frames_in);
	if (binary) {
		snprintf(code, sizeof(code), "invalid_frame");
		snprintf(msg, sizeof(msg), "frame: binary frames are not supported (send JSON text)");
		goto bad;
	}
	if (rs_router_frame_parse(buf, len, &f, code, sizeof(code), msg, sizeof(msg)) != RS_OK)
		goto bad;
	if (f.type == RS_FRAME_HELLO) {
		if (c->state != RS_CONN_HELLO) {
			rs_router_frame_free(&f);
			snprintf(code, sizeof(code), "invalid_frame");
			snprintf(msg, sizeof(msg), "hello: already received on this connection");
			goto bad;
		}
		rs_router_auth_hello(r, c, &f);
	} else {
		if (c->state != RS_CONN_READY) {
			rs_router_frame_free(&f);
			snprintf(code, sizeof(code), "invalid_frame");
			snprintf(msg, sizeof(msg), "tool.result: not allowed before welcome");
			goto bad;
		}
		rs_router_calls_result(r, c, &f);
	}
	rs_router_frame_free(&f);
	return;
bad:
	rs_metric_inc(r->m.bad_frames);
	c->bad_frames++;
	rs_debug("router: conn %llu: bad frame %d: %s", (unsigned long long)c->id, c->bad_frames, msg);
	rs_router_conn_error(r, c, code, msg,
	                     c->bad_frames >= r->max_bad_frames ? LWS_CLOSE_STATUS_POLICY_VIOLATION : 0);
}

/* Assemble a message from lws's pieces; returns -1 to close the socket. */
static int
on_receive(rs_router *r, rs_router_conn *c, const char *in, size_t len)
{
	size_t remaining = lws_remaining_packet_payload(c->wsi);
	int final = lws_is_final_fragment(c->wsi) && remaining == 0;
	int binary = lws_frame_is_binary(c->wsi);
	char *p;

	if (c->state == RS_CONN_CLOSING)
		return 0;
	if (c->state != RS_CONN_READY) {
		/* Nobody yet: a small budget for everything it sends. */
		c->prehello += len;
		if (c->prehello + remaining > r->max_prehello) {
			rs_metric_inc(r->m.prehello_refused);
			rs_info("router: conn %llu: over %zu bytes before welcome: closed",
			        (unsigned long long)c->id, r->max_prehello);
			lws_close_reason(c->wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE,
			                 (unsigned char *)"too much before hello", 21);
			return -1;
		}
	}
	if (c->rx_len + len + remaining > r->max_frame) {
		rs_metric_inc(r->m.oversize);
		rs_info("router: conn %llu: frame over %zu bytes refused", (unsigned long long)c->id,
		        r->max_frame);
		lws_close_reason(c->wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE,
		                 (unsigned char *)"frame too large", 15);
		return -1;
	}
	if (final && c->rx == NULL) {
		handle_frame(r, c, in, len, binary);  /* the common case: no copy */
		return 0;
	}
	p = realloc(c->rx, c->rx_len + len + 1);
	if (p == NULL)
		return -1;
	c->rx = p;
	memcpy(c->rx + c->rx_len, in, len);
	c->rx_len += len;
	if (final) {
		handle_frame(r, c, c->rx, c->rx_len, binary);
		free(c->rx);
		c->rx = NULL;
		c->rx_len = 0;
	}
	return 0;
}

static int
on_writeable(rs_router *r, rs_router_conn *c)
{
	rs_router_out *o;

	if (c->ping_due) {
		/* Not empty: lws 4.1 reports only pongs with a payload
		 * (LWS_CALLBACK_RECEIVE_PONG), and peers echo ours. */
		unsigned char ping[LWS_PRE + 2];

		c->ping_due = 0;
		ping[LWS_PRE] = 'h';
		if (lws_write(c->wsi, ping + LWS_PRE, 1, LWS_WRITE_PING) < 0)
			return -1;
		if (c->outq != NULL || c->close_code != 0)
			lws_callback_on_writable(c->wsi);
		return 0;
	}
	o = c->outq;
	if (o != NULL) {
		c->outq = o->next;
		if (c->outq == NULL)
			c->outq_tail = NULL;
		if (lws_write(c->wsi, o->buf + LWS_PRE, o->len, LWS_WRITE_TEXT) < (int)o->len) {
			free(o);
			return -1;
		}
		free(o);
		if (c->outq != NULL || c->close_code != 0)
			lws_callback_on_writable(c->wsi);
		return 0;
	}
	if (c->close_code != 0) {
		const char *why = c->close_code == 4401 ? "unauthorized"
		                : c->close_code == CLOSE_HEARTBEAT ? "heartbeat timeout"
		                : c->close_code == CLOSE_REPLACED ? "replaced"
		                : c->close_code == LWS_CLOSE_STATUS_POLICY_VIOLATION ? "too many bad frames"
		                : "closing";
		lws_close_reason(c->wsi, (enum lws_close_status)c->close_code, (unsigned char *)why,
		                 strlen(why));
		return -1;
	}
	return 0;
}

static void
drain_inbox(rs_router *r)
{
	rs_router_job *j = rs_router_queue_take_all(&r->inbox), *next;

	for (; j != NULL; j = next) {
		next = j->next;
		j->fn(r, j);
	}
}

static int
device_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
	rs_router *r = router_of(wsi);
	rs_router_conn *c = user;
	char k[24];

	switch (reason) {
	case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
		if (r != NULL)
			drain_inbox(r);
		return 0;
	case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION: {
		char uri[64];

		if (lws_hdr_copy(wsi, uri, sizeof(uri), WSI_TOKEN_GET_URI) <= 0 ||
		    strcmp(uri, RS_ROUTER_PATH) != 0)
			return 1;
		return 0;
	}
	case LWS_CALLBACK_ESTABLISHED:
		memset(c, 0, sizeof(*c));
		c->wsi = wsi;
		c->id = ++r->next_conn_id;
		snprintf(k, sizeof(k), "%llu", (unsigned long long)c->id);
		if (rs_map_put(&r->conns_by_id, k, c) != RS_OK)
			return -1;
		c->next = r->conns;
		if (r->conns != NULL)
			r->conns->prev = c;
		r->conns = c;
		/* A connection that never says hello is dropped. */
		lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, r->hello_timeout_s);
		rs_metric_set(r->m.connections, (double)r->conns_by_id.n);
		return 0;
	case LWS_CALLBACK_RECEIVE:
		return on_receive(r, c, in, len);
	case LWS_CALLBACK_RECEIVE_PONG:
		c->missed_pongs = 0;
		return 0;
	case LWS_CALLBACK_SERVER_WRITEABLE:
		return on_writeable(r, c);
	case LWS_CALLBACK_CLOSED:
		conn_closed(r, c);
		return 0;
	default:
		return 0;
	}
}

/* The plain-HTTP side of the port: ops endpoints only. */
static int
http_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
	rs_router *r;
	char path[128];

	switch (reason) {
	case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
		/* An upgrade without our subprotocol lands here: refuse it. */
		return 1;
	case LWS_CALLBACK_HTTP:
		r = router_of(wsi);
		snprintf(path, sizeof(path), "%s", (const char *)in);
		{
			int rc = rs_ops_lws_respond(wsi, &r->ops, path);
			static const char nf[] = "{\"status\":404,\"title\":\"not found\"}";

			if (rc != 1)
				return rc;
			return rs_http_respond(wsi, 404, "application/problem+json", nf, sizeof(nf) - 1);
		}
	default:
		return lws_callback_http_dummy(wsi, reason, user, in, len);
	}
}

const struct lws_protocols rs_router_protocols[] = {
	{ "http", http_cb, 0, 0, 0, NULL, 0 },
	{ RS_ROUTER_SUBPROTOCOL, device_cb, sizeof(rs_router_conn), RX_CHUNK, 0, NULL, 0 },
	{ NULL, NULL, 0, 0, 0, NULL, 0 }
};

/* ---- timers --------------------------------------------------------- */

static void
heartbeat_tick(lws_sorted_usec_list_t *sul)
{
	rs_router *r = lws_container_of(sul, rs_router, sul_heartbeat);
	rs_router_conn *c;

	for (c = r->conns; c != NULL; c = c->next) {
		if (c->state == RS_CONN_CLOSING)
			continue;
		if (c->missed_pongs >= 2) {
			rs_metric_inc(r->m.dropped_heartbeat);
			rs_info("router: conn %llu (%s) missed 2 pongs: dropped", (unsigned long long)c->id,
			        c->dev ? c->dev->key : "no hello");
			c->close_code = CLOSE_HEARTBEAT;
			c->state = RS_CONN_CLOSING;
			/* A dead peer may never drain the close: bound it. */
			lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, 2);
			lws_callback_on_writable(c->wsi);
			continue;
		}
		c->missed_pongs++;
		c->ping_due = 1;
		lws_callback_on_writable(c->wsi);
	}
	lws_sul_schedule(r->ctx, 0, &r->sul_heartbeat, heartbeat_tick,
	                 (lws_usec_t)r->heartbeat_s * LWS_US_PER_SEC);
}

static void
sweep_tick(lws_sorted_usec_list_t *sul)
{
	rs_router *r = lws_container_of(sul, rs_router, sul_sweep);

	rs_router_calls_sweep(r);
	lws_sul_schedule(r->ctx, 0, &r->sul_sweep, sweep_tick, LWS_US_PER_SEC);
}

static void
presence_tick(lws_sorted_usec_list_t *sul)
{
	rs_router *r = lws_container_of(sul, rs_router, sul_presence);

	rs_router_presence_refresh(r);
	lws_sul_schedule(r->ctx, 0, &r->sul_presence, presence_tick, 15 * LWS_US_PER_SEC);
}

rs_status
rs_router_ws_start(rs_router *r)
{
	struct lws_context_creation_info info;

	memset(&info, 0, sizeof(info));
	info.port = r->port;
	info.iface = r->listen_addr;
	info.protocols = rs_router_protocols;
	info.user = r;
	info.options = LWS_SERVER_OPTION_DISABLE_IPV6;
	lws_set_log_level(LLL_ERR, NULL);
	r->ctx = lws_create_context(&info);
	if (r->ctx == NULL) {
		rs_error("router: cannot listen on %s:%d", r->listen_addr, r->port);
		return RS_EIO;
	}
	lws_sul_schedule(r->ctx, 0, &r->sul_heartbeat, heartbeat_tick,
	                 (lws_usec_t)r->heartbeat_s * LWS_US_PER_SEC);
	lws_sul_schedule(r->ctx, 0, &r->sul_sweep, sweep_tick, LWS_US_PER_SEC);
	lws_sul_schedule(r->ctx, 0, &r->sul_presence, presence_tick, 15 * LWS_US_PER_SEC);
	rs_info("router: devices on ws://%s:%d%s (subprotocol %s), ops on http://%s:%d",
	        r->listen_addr, r->port, RS_ROUTER_PATH, RS_ROUTER_SUBPROTOCOL, r->listen_addr, r->port);
	return RS_OK;
}

/* Run until r->stopping; then run what workers posted last. */
void
rs_router_ws_run(rs_router *r)
{
	while (!atomic_load(&r->stopping))
		if (lws_service(r->ctx, 0) < 0)
			break;
}

void
rs_router_ws_stop(rs_router *r)
{
	lws_sul_cancel(&r->sul_heartbeat);
	lws_sul_cancel(&r->sul_sweep);
	lws_sul_cancel(&r->sul_presence);
	/* Destroying the context closes every connection (LWS_CALLBACK_CLOSED
	 * frees our state); jobs they post are drained by the caller. */
	lws_context_destroy(r->ctx);
	r->ctx = NULL;
	drain_inbox(r);
}
