/*
 * test_executor.c - the executor's egress policy by table (IPv4, IPv6,
 * IPv4-mapped and other embedded forms, the edges of every CIDR), the
 * allow-list, and the SSE parser's limits.
 */
#include <arpa/inet.h>
#include <stdlib.h>

#include "../check.h"
#include "egress.h"
#include "sse.h"

static struct sockaddr_storage
addr(const char *s)
{
	struct sockaddr_storage ss;

	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, s, &((struct sockaddr_in *)&ss)->sin_addr) == 1) {
		ss.ss_family = AF_INET;
	} else if (inet_pton(AF_INET6, s, &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1) {
		ss.ss_family = AF_INET6;
	} else {
		fprintf(stderr, "bad test address %s\n", s);
		abort();
	}
	return ss;
}

static const struct { const char *a, *want; } classes[] = {
	/* IPv4: each denied range, and the first address past its edges */
	{ "127.0.0.1", "loopback" }, { "127.255.255.255", "loopback" },
	{ "126.255.255.255", NULL }, { "128.0.0.0", NULL },
	{ "0.0.0.0", "unspecified" }, { "0.255.255.255", "unspecified" }, { "1.0.0.0", NULL },
	{ "10.0.0.0", "private" }, { "10.255.255.255", "private" },
	{ "9.255.255.255", NULL }, { "11.0.0.0", NULL },
	{ "172.16.0.0", "private" }, { "172.31.255.255", "private" },
	{ "172.15.255.255", NULL }, { "172.32.0.0", NULL },
	{ "192.168.0.1", "private" }, { "192.168.255.255", "private" },
	{ "192.167.255.255", NULL }, { "192.169.0.0", NULL },
	{ "100.64.0.0", "cgnat" }, { "100.127.255.255", "cgnat" },
	{ "100.63.255.255", NULL }, { "100.128.0.0", NULL },
	{ "169.254.0.1", "link-local" }, { "169.254.169.254", "metadata" },
	{ "169.253.255.255", NULL }, { "169.255.0.0", NULL },
	{ "224.0.0.1", "multicast" }, { "239.255.255.255", "multicast" },
	{ "223.255.255.255", NULL },
	{ "240.0.0.1", "reserved" }, { "255.255.255.255", "broadcast" },
	{ "192.0.0.8", "reserved" }, { "198.18.0.1", "reserved" }, { "198.19.255.255", "reserved" },
	{ "198.20.0.0", NULL },
	{ "8.8.8.8", NULL }, { "93.184.216.34", NULL },
	/* IPv6 */
	{ "::", "unspecified" }, { "::1", "loopback" }, { "::2", "unspecified" },
	{ "fe80::1", "link-local" }, { "febf:ffff::1", "link-local" }, { "fec0::1", "private" },
	{ "fc00::1", "private" }, { "fdff:ffff::1", "private" }, { "fbff:ffff::1", NULL },
	{ "fd00:ec2::254", "metadata" }, { "fd00:ec2::253", "private" },
	{ "ff02::1", "multicast" }, { "ff0e::1", "multicast" },
	{ "2001:4860:4860::8888", NULL }, { "2606:4700::1111", NULL },
	/* IPv6 forms carrying an IPv4 address are judged by it */
	{ "::ffff:127.0.0.1", "loopback" }, { "::ffff:10.1.2.3", "private" },
	{ "::ffff:169.254.169.254", "metadata" }, { "::ffff:8.8.8.8", NULL },
	{ "::ffff:0.0.0.0", "unspecified" }, { "::ffff:100.64.0.1", "cgnat" },
	{ "::127.0.0.1", "loopback" }, { "::8.8.8.8", NULL },
	{ "64:ff9b::7f00:1", "loopback" }, { "64:ff9b::808:808", NULL },
	{ "2002:7f00:1::", "loopback" }, { "2002:c0a8:101::1", "private" }, { "2002:808:808::", NULL },
};

static void
test_classes(void)
{
	for (size_t i = 0; i < sizeof(classes) / sizeof(classes[0]); i++) {
		struct sockaddr_storage ss = addr(classes[i].a);
		const char *got = rs_exec_egress_classify((struct sockaddr *)&ss);
		if (got == NULL ? classes[i].want != NULL
		                : classes[i].want == NULL || strcmp(got, classes[i].want) != 0)
			fprintf(stderr, "  %s -> %s, want %s\n", classes[i].a, got ? got : "public",
			        classes[i].want ? classes[i].want : "public");
		CHECK_STR(got ? got : "public", classes[i].want ? classes[i].want : "public");
		/* with no allow-list, the verdict is the class */
		got = rs_exec_egress_check(NULL, "example.com", (struct sockaddr *)&ss);
		CHECK_STR(got ? got : "public", classes[i].want ? classes[i].want : "public");
	}
}

static void
test_allow(void)
{
	egress_policy *p = NULL;
	char err[128] = "";
	struct sockaddr_storage a;

	CHECK(rs_exec_egress_parse("127.0.0.1/32, 10.1.0.0/16,fd00::/8 , Hooks.Internal,::1",
	                   &p, err, sizeof(err)) == RS_OK);
	CHECK_INT(rs_exec_egress_rules(p), 5);
	a = addr("127.0.0.1");
	CHECK(rs_exec_egress_check(p, "x", (struct sockaddr *)&a) == NULL);
	a = addr("127.0.0.2");
	CHECK_STR(rs_exec_egress_check(p, "x", (struct sockaddr *)&a), "loopback");
	a = addr("::ffff:127.0.0.1");          /* mapped form of an allowed v4 */
	CHECK(rs_exec_egress_check(p, "x", (struct sockaddr *)&a) == NULL);
	a = addr("10.1.255.255");
	CHECK(rs_exec_egress_check(p, "x", (struct sockaddr *)&a) == NULL);
	a = addr("10.2.0.0");
	CHECK_STR(rs_exec_egress_check(p, "x", (struct sockaddr *)&a), "private");
	a = addr("fd12::1");
	CHECK(rs_exec_egress_check(p, "x", (struct sockaddr *)&a) == NULL);
	a = addr("fe80::1");
	CHECK_STR(rs_exec_egress_check(p, "x", (struct sockaddr *)&a), "link-local");
	a = addr("::1");
	CHECK(rs_exec_egress_check(p, "x", (struct sockaddr *)&a) == NULL);
	/* a host name opens whatever that URL host resolves to */
	a = addr("192.168.1.1");
	CHECK(rs_exec_egress_check(p, "hooks.internal", (struct sockaddr *)&a) == NULL);
	CHECK_STR(rs_exec_egress_check(p, "other.internal", (struct sockaddr *)&a), "private");
	rs_exec_egress_free(p);

	p = NULL;
	CHECK(rs_exec_egress_parse("", &p, err, sizeof(err)) == RS_OK);
	CHECK_INT(rs_exec_egress_rules(p), 0);
	rs_exec_egress_free(p);
	CHECK(rs_exec_egress_parse("10.0.0.0/33", &p, err, sizeof(err)) == RS_EINVAL);
	CHECK(strstr(err, "10.0.0.0/33") != NULL);
	CHECK(rs_exec_egress_parse("bad host!", &p, err, sizeof(err)) == RS_EINVAL);
	CHECK(rs_exec_egress_parse("::1/129", &p, err, sizeof(err)) == RS_EINVAL);
	CHECK(rs_exec_egress_parse("1.2.3.4/", &p, err, sizeof(err)) == RS_EINVAL);
}

static void
test_sse_limits(void)
{
	sse_limits lim = { 64, 40, 2 };
	sse_acc *a;
	char big[200];
	size_t len;
	char *t;

	/* a line longer than max_line, even without its newline */
	a = rs_exec_sse_acc_new(&lim);
	memset(big, 'x', sizeof(big));
	CHECK_INT(rs_exec_sse_acc_feed(a, big, sizeof(big)), SSE_TOO_LARGE);
	CHECK(strstr(rs_exec_sse_acc_error(a), "longer than 64") != NULL);
	CHECK_INT(rs_exec_sse_acc_feed(a, "\n", 1), SSE_TOO_LARGE);   /* sticky */
	rs_exec_sse_acc_free(a);

	/* text over max_message, accumulated over chunks */
	a = rs_exec_sse_acc_new(&lim);
	for (int i = 0; i < 3; i++) {
		const char *c = "data: {\"choices\":[{\"delta\":{\"content\":\"0123456789abcdef\"}}]}\n\n";
		int rc = rs_exec_sse_acc_feed(a, c, strlen(c));
		CHECK_INT(rc, i < 2 ? SSE_OK : SSE_TOO_LARGE);
	}
	CHECK(strstr(rs_exec_sse_acc_error(a), "larger than 40") != NULL);
	/* take in pieces of at most 10 bytes */
	t = rs_exec_sse_acc_take_text(a, 10, &len);
	CHECK_INT(len, 10);
	free(t);
	CHECK_INT(rs_exec_sse_acc_pending_text(a), 22);
	rs_exec_sse_acc_free(a);

	/* tool calls beyond max_tool_calls */
	a = rs_exec_sse_acc_new(&lim);
	{
		const char *c = "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":2}]}}]}\n";
		CHECK_INT(rs_exec_sse_acc_feed(a, c, strlen(c)), SSE_TOO_LARGE);
		CHECK(strstr(rs_exec_sse_acc_error(a), "more than 2 tool calls") != NULL);
	}
	rs_exec_sse_acc_free(a);

	/* arguments in pieces are joined; [DONE] ends */
	lim.max_message = 1000;
	a = rs_exec_sse_acc_new(&lim);
	{
		const char *c = "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"c1\","
		                "\"function\":{\"name\":\"get\",\"arguments\":\"{\\\"a\\\"\"}}]}}]}\n"
		                "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,"
		                "\"function\":{\"arguments\":\":1}\"}}]},\"finish_reason\":\"tool_calls\"}]}\n"
		                "data: [DONE]\n";
		json_t *m;
		lim.max_line = 1000;
		rs_exec_sse_acc_free(a);
		a = rs_exec_sse_acc_new(&lim);
		CHECK_INT(rs_exec_sse_acc_feed(a, c, strlen(c)), SSE_DONE);
		m = rs_exec_sse_acc_message(a);
		CHECK_STR(json_string_value(json_object_get(json_object_get(json_array_get(
		          json_object_get(m, "tool_calls"), 0), "function"), "arguments")), "{\"a\":1}");
		CHECK_STR(rs_exec_sse_acc_finish(a), "tool_calls");
		json_decref(m);
	}
	rs_exec_sse_acc_free(a);

	/* a UTF-8 character is never split by a bounded take */
	a = rs_exec_sse_acc_new(&lim);
	{
		const char *c = "data: {\"choices\":[{\"delta\":{\"content\":\"a\\u00e9\"}}]}\n";
		CHECK_INT(rs_exec_sse_acc_feed(a, c, strlen(c)), SSE_OK);
		t = rs_exec_sse_acc_take_text(a, 2, &len);  /* "a" + half of é: only "a" */
		CHECK_INT(len, 1);
		free(t);
		t = rs_exec_sse_acc_take_text(a, 2, &len);
		CHECK_INT(len, 2);
		free(t);
	}
	rs_exec_sse_acc_free(a);
}

int
main(void)
{
	test_classes();
	test_allow();
	test_sse_limits();
	return check_report("test_executor");
}
