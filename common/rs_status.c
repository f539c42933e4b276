/* rs_status.c - names for rs_status values (for logs and error bodies). */
#include "rs_status.h"

const char *
rs_status_str(rs_status st)
{
	switch (st) {
	case RS_OK:        return "OK";
	case RS_ERR:       return "ERR";
	case RS_EINVAL:    return "EINVAL";
	case RS_ENOMEM:    return "ENOMEM";
	case RS_ENOTFOUND: return "ENOTFOUND";
	case RS_EEXISTS:   return "EEXISTS";
	case RS_ECONFLICT: return "ECONFLICT";
	case RS_ETIMEOUT:  return "ETIMEOUT";
	case RS_EIO:       return "EIO";
	case RS_EUNAVAIL:  return "EUNAVAIL";
	case RS_ECLOSED:   return "ECLOSED";
	}
	return "UNKNOWN";
}
