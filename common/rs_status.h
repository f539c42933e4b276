/*
 * rs_status.h - the one status convention of Runstream.
 *
 * Every fallible function returns an rs_status. RS_OK is zero so that
 * "if (st != RS_OK) goto cleanup;" reads naturally. Details go to the log
 * (rs_log) or to a caller-supplied error buffer, never into the status.
 */
#ifndef RS_STATUS_H
#define RS_STATUS_H

typedef enum {
	RS_OK = 0,
	RS_ERR,          /* unspecified failure */
	RS_EINVAL,       /* bad input: caller or outside data is wrong */
	RS_ENOMEM,       /* allocation failed */
	RS_ENOTFOUND,    /* the thing asked for does not exist */
	RS_EEXISTS,      /* create of something that already exists */
	RS_ECONFLICT,    /* optimistic concurrency lost (wrong last sequence) */
	RS_ETIMEOUT,     /* deadline passed */
	RS_EIO,          /* network / disk / server error, maybe transient */
	RS_EUNAVAIL,     /* dependency down (NATS, Postgres); retry later */
	RS_ECLOSED,      /* shutting down */
} rs_status;

/* Static string naming the status, e.g. "EINVAL". Never NULL. */
const char *rs_status_str(rs_status st);

#endif
