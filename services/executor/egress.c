/*
 * egress.c - where http and llm steps may connect to. Pure: addresses in,
 * a verdict out; http.c calls it from curl's open-socket callback, i.e.
 * on the address curl is about to connect to after DNS resolution, so a
 * name that resolves to a public address at push time and to 127.0.0.1
 * at run time (DNS rebinding) is judged by the address actually used.
 *
 * Denied by default (each with the name reported in the error):
 *   loopback      127.0.0.0/8, ::1
 *   unspecified   0.0.0.0/8, ::
 *   link-local    169.254.0.0/16, fe80::/10
 *   metadata      169.254.169.254, fd00:ec2::254 (cloud instance metadata)
 *   private       10/8, 172.16/12, 192.168/16, fc00::/7 (ULA), fec0::/10
 *   cgnat         100.64.0.0/10
 *   multicast     224.0.0.0/4, ff00::/8
 *   broadcast     255.255.255.255
 *   reserved      240.0.0.0/4, 192.0.0.0/24, 198.18.0.0/15
 * IPv6 forms that embed an IPv4 address (IPv4-mapped ::ffff:a.b.c.d,
 * IPv4-compatible ::a.b.c.d, NAT64 64:ff9b::/96, 6to4 2002::/16) are
 * judged by the IPv4 address they carry.
 *
 * RS_EXECUTOR_EGRESS_ALLOW opens holes: a comma list of CIDRs (an address
 * alone is a /32 or /128) and host names (matched, case-insensitively,
 * against the host of the URL being connected to, redirects included).
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "egress.h"
#include "rs_mem.h"

#define MAX_RULES 64
#define MAX_HOST 253

typedef struct {
	int family;                  /* AF_INET / AF_INET6 */
	unsigned char addr[16];
	int prefix;
} cidr;

struct egress_policy {
	cidr nets[MAX_RULES];
	size_t nnets;
	char *hosts[MAX_RULES];
	size_t nhosts;
};

static int
in_prefix(const unsigned char *a, const unsigned char *net, int prefix)
{
	int full = prefix / 8, rest = prefix % 8;

	if (memcmp(a, net, (size_t)full) != 0)
		return 0;
	if (rest == 0)
		return 1;
	return ((a[full] ^ net[full]) & (unsigned char)(0xff << (8 - rest))) == 0;
}

static const char *
classify4(const unsigned char *a)
{
	if (a[0] == 127)
		return "loopback";
	if (a[0] == 0)
		return "unspecified";
	if (a[0] == 169 && a[1] == 254)
		return a[2] == 169 && a[3] == 254 ? "metadata" : "link-local";
	if (a[0] == 10 || (a[0] == 172 && (a[1] & 0xf0) == 16) || (a[0] == 192 && a[1] == 168))
		return "private";
	if (a[0] == 100 && (a[1] & 0xc0) == 64)
		return "cgnat";
	if ((a[0] & 0xf0) == 224)
		return "multicast";
	if (a[0] == 255 && a[1] == 255 && a[2] == 255 && a[3] == 255)
		return "broadcast";
	if ((a[0] & 0xf0) == 240 || (a[0] == 192 && a[1] == 0 && a[2] == 0) ||
	    (a[0] == 198 && (a[1] & 0xfe) == 18))
		return "reserved";
	return NULL;
}

static const char *
classify6(const unsigned char *a)
{
	static const unsigned char zero[16], mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	                                                    0xff, 0xff },
	                           nat64[12] = { 0, 0x64, 0xff, 0x9b },
	                           metadata[16] = { 0xfd, 0, 0x0e, 0xc2, [14] = 0x02, [15] = 0x54 };
	unsigned char one[16] = { [15] = 1 };

	if (memcmp(a, zero, 16) == 0)
		return "unspecified";
	if (memcmp(a, one, 16) == 0)
		return "loopback";
	if (memcmp(a, mapped, 12) == 0 || memcmp(a, nat64, 12) == 0)
		return classify4(a + 12);
	if (memcmp(a, zero, 12) == 0)        /* IPv4-compatible ::a.b.c.d (deprecated) */
		return classify4(a + 12);
	if (a[0] == 0x20 && a[1] == 0x02)    /* 6to4: 2002:AABB:CCDD::/48 */
		return classify4(a + 2);
	if (memcmp(a, metadata, 16) == 0)
		return "metadata";
	if (a[0] == 0xfe && (a[1] & 0xc0) == 0x80)
		return "link-local";
	if ((a[0] & 0xfe) == 0xfc || (a[0] == 0xfe && (a[1] & 0xc0) == 0xc0))
		return "private";
	if (a[0] == 0xff)
		return "multicast";
	return NULL;
}

const char *
rs_exec_egress_classify(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return classify4((const unsigned char *)&((const struct sockaddr_in *)sa)->sin_addr);
	if (sa->sa_family == AF_INET6)
		return classify6((const unsigned char *)&((const struct sockaddr_in6 *)sa)->sin6_addr);
	return "non-ip";
}

static int
parse_cidr(const char *s, cidr *c)
{
	char buf[64], *slash;
	int max;
	long p;
	char *end;

	if (strlen(s) >= sizeof(buf))
		return -1;
	strcpy(buf, s);
	slash = strchr(buf, '/');
	if (slash != NULL)
		*slash = '\0';
	memset(c, 0, sizeof(*c));
	if (inet_pton(AF_INET, buf, c->addr) == 1) {
		c->family = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, buf, c->addr) == 1) {
		c->family = AF_INET6;
		max = 128;
	} else {
		return 1;                    /* not an address: maybe a host name */
	}
	c->prefix = max;
	if (slash != NULL) {
		p = strtol(slash + 1, &end, 10);
		if (slash[1] == '\0' || *end != '\0' || p < 0 || p > max)
			return -1;
		c->prefix = (int)p;
	}
	return 0;
}

static int
host_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > MAX_HOST)
		return 0;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && *s != '-' && *s != '.' && *s != '_')
			return 0;
	return 1;
}

rs_status
rs_exec_egress_parse(const char *allow, egress_policy **out, char *err, size_t cap)
{
	egress_policy *p = calloc(1, sizeof(*p));
	char *copy = NULL, *tok, *save = NULL, *b, *e;
	rs_status st = RS_OK;
	int rc;

	if (p == NULL)
		rs_oom(0);
	*out = NULL;
	if (allow == NULL || *allow == '\0')
		goto done;
	if ((copy = strdup(allow)) == NULL)
		rs_oom(0);
	for (tok = strtok_r(copy, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
		for (b = tok; *b == ' ' || *b == '\t'; b++)
			;
		for (e = b + strlen(b); e > b && (e[-1] == ' ' || e[-1] == '\t'); e--)
			;
		*e = '\0';
		if (*b == '\0')
			continue;
		if (p->nnets + p->nhosts == MAX_RULES) {
			snprintf(err, cap, "more than %d entries", MAX_RULES);
			st = RS_EINVAL;
			goto done;
		}
		rc = parse_cidr(b, &p->nets[p->nnets]);
		if (rc == 0) {
			p->nnets++;
		} else if (rc == 1 && strchr(b, '/') == NULL && host_ok(b)) {
			if ((p->hosts[p->nhosts++] = strdup(b)) == NULL)
				rs_oom(0);
		} else {
			snprintf(err, cap, "\"%.64s\" is neither a CIDR nor a host name", b);
			st = RS_EINVAL;
			goto done;
		}
	}
done:
	free(copy);
	if (st != RS_OK) {
		rs_exec_egress_free(p);
		return st;
	}
	*out = p;
	return RS_OK;
}

void
rs_exec_egress_free(egress_policy *p)
{
	if (p == NULL)
		return;
	for (size_t i = 0; i < p->nhosts; i++)
		free(p->hosts[i]);
	free(p);
}

size_t
rs_exec_egress_rules(const egress_policy *p)
{
	return p ? p->nnets + p->nhosts : 0;
}

static int
allowed_net(const egress_policy *p, const struct sockaddr *sa)
{
	const unsigned char *a;
	unsigned char v4[4];
	int fam = sa->sa_family;

	if (fam == AF_INET) {
		a = (const unsigned char *)&((const struct sockaddr_in *)sa)->sin_addr;
	} else if (fam == AF_INET6) {
		a = (const unsigned char *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
		/* An IPv4-mapped address matches the IPv4 rules too. */
		if (memcmp(a, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12) == 0) {
			memcpy(v4, a + 12, 4);
			for (size_t i = 0; i < p->nnets; i++)
				if (p->nets[i].family == AF_INET && in_prefix(v4, p->nets[i].addr,
				                                              p->nets[i].prefix))
					return 1;
		}
	} else {
		return 0;
	}
	for (size_t i = 0; i < p->nnets; i++)
		if (p->nets[i].family == fam && in_prefix(a, p->nets[i].addr, p->nets[i].prefix))
			return 1;
	return 0;
}

void
rs_exec_egress_addr_text(const struct sockaddr *sa, char *out, size_t cap)
{
	char buf[INET6_ADDRSTRLEN] = "?";

	if (sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, buf, sizeof(buf));
	else if (sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, buf, sizeof(buf));
	snprintf(out, cap, "%s", buf);
}

const char *
rs_exec_egress_check(const egress_policy *p, const char *host, const struct sockaddr *sa)
{
	const char *why = rs_exec_egress_classify(sa);

	if (why == NULL || p == NULL)
		return why;
	if (allowed_net(p, sa))
		return NULL;
	for (size_t i = 0; host != NULL && i < p->nhosts; i++)
		if (strcasecmp(host, p->hosts[i]) == 0)
			return NULL;
	return why;
}
