/*
 * event_fixtures.h - populated sample events for the codec tests and for
 * event_samples (the input of the JSON Schema check). One place builds
 * them so the C round trip and the schema check see the same events.
 */
#ifndef EVENT_FIXTURES_H
#define EVENT_FIXTURES_H

#include "rs_event.h"

#define FX_RUN_ID "0190f5e4-7a3b-7c1d-8e2f-0123456789ab"
#define FX_TENANT "acme"
#define FX_TIME_MS 1767323045678LL /* 2026-01-02T03:04:05.678Z */

/* Fill ev with an event of type t. full: every optional member set too;
 * otherwise only the required ones. Members are allocated following the
 * rs_event ownership rules: release with rs_event_free(). */
void fx_event(rs_event_type t, int full, rs_event *ev);

#endif
