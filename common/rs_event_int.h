/*
 * rs_event_int.h - private to the event codec's files: rs_event.c (names,
 * the field table of each type, decoding) and rs_event_encode.c (the
 * envelope and the two encoders: the direct writer and the tree-built
 * reference). Nothing else includes it: the public interface is
 * rs_event.h.
 */
#ifndef RS_EVENT_INT_H
#define RS_EVENT_INT_H

#include "rs_event.h"

#define EV_TYPE_PREFIX "runstream."
#define EV_DEFAULT_SOURCE "runstream/orchestrator"
#define EV_RUNSEQ_MAX 2147483647LL /* CloudEvents Integer is 32-bit signed */
#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* ---- shared by rs_event*.c ---- */
/* The data object of an event of type t from its struct s (new), or NULL. */
json_t *rs_event_data_encode(rs_event_type t, const void *s);
/* Indexed by rs_errclass and rs_timer_purpose. */
extern const char *const rs_event_errclass_names[3];
extern const char *const rs_event_purpose_names[6];

#endif
