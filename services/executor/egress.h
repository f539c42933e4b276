/*
 * egress.h - the executor's egress policy (egress.c): which addresses http
 * and llm steps may connect to. Pure, no I/O: also built into
 * tests/unit/executor.
 */
#ifndef EXEC_EGRESS_H
#define EXEC_EGRESS_H

#include <stddef.h>
#include <sys/socket.h>
#include <netinet/in.h>

#include "rs_status.h"

typedef struct egress_policy egress_policy;

/* The allow-list RS_EXECUTOR_EGRESS_ALLOW (comma list of CIDRs and host
 * names; NULL or "" = none). *out is the caller's (rs_exec_egress_free). RS_EINVAL
 * with err naming the bad entry. */
rs_status rs_exec_egress_parse(const char *allow, egress_policy **out, char *err, size_t cap);
void rs_exec_egress_free(egress_policy *p);
size_t rs_exec_egress_rules(const egress_policy *p);

/* The default-deny class of an address ("loopback", "private", ...), or
 * NULL for a public address. Never NULL for a non-IP family. */
const char *rs_exec_egress_classify(const struct sockaddr *sa);

/* The verdict for connecting to sa on behalf of a URL whose host is host:
 * NULL allowed, else the class that denies it (static string). p may be
 * NULL (no allow-list). */
const char *rs_exec_egress_check(const egress_policy *p, const char *host, const struct sockaddr *sa);

/* The address as text (no port). */
void rs_exec_egress_addr_text(const struct sockaddr *sa, char *out, size_t cap);

#endif
