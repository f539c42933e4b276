/*
 * bench_replay.c - how fast runctl's file replay path decodes and reduces
 * events: the same hist_scan() `runctl replay --file` uses (one read of
 * the whole file, lines split in place), measured in three layers so a
 * slow result says where the time goes:
 *   split   line splitting only (runctl's own reading path)
 *   decode  + rs_event_decode of every line (the shared codec)
 *   reduce  + rs_run_evolve into one state per run (the shared state machine)
 *   bench_replay HISTORY.ndjson [ROUNDS]
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "history.h"
#include "rs_run.h"
#include "runctl.h"

typedef struct {
	rs_run *run;
	char run_id[40];
	unsigned long long events;
} reduce_ctx;

static int
count_only(void *ctx, rs_event *ev, const char *raw, size_t len)
{
	((reduce_ctx *)ctx)->events++;
	return RC_OK;
}

static int
reduce(void *ctx, rs_event *ev, const char *raw, size_t len)
{
	reduce_ctx *r = ctx;
	char err[256];

	if (r->run == NULL || strcmp(r->run_id, ev->run_id) != 0) {
		rs_run_free(r->run);
		r->run = rs_run_new();
		memcpy(r->run_id, ev->run_id, sizeof(r->run_id));
	}
	if (rs_run_evolve(r->run, ev, err, sizeof(err)) != RS_OK) {
		fprintf(stderr, "evolve: %s\n", err);
		return RC_FAIL;
	}
	r->events++;
	return RC_OK;
}

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Split lines only: what runctl adds on top of the codec. */
static unsigned long long
split(const char *buf, size_t len)
{
	const char *p = buf, *end = buf + len, *nl;
	unsigned long long n = 0;

	while (p < end && (nl = memchr(p, '\n', (size_t)(end - p))) != NULL) {
		n += nl > p;
		p = nl + 1;
	}
	return n;
}

int
main(int argc, char **argv)
{
	int rounds = argc > 2 ? atoi(argv[2]) : 3, fd;
	char *buf, err[512];
	struct stat st;
	size_t len;
	double best_split = 1e9, best_dec = 1e9, best_red = 1e9, t;
	unsigned long long n = 0;

	if (argc < 2 || (fd = open(argv[1], O_RDONLY)) < 0 || fstat(fd, &st) != 0) {
		fprintf(stderr, "usage: bench_replay HISTORY.ndjson [ROUNDS] (make one with gen_history)\n");
		return 2;
	}
	len = (size_t)st.st_size;
	buf = malloc(len);
	if (buf == NULL || read(fd, buf, len) != (ssize_t)len)
		return 1;
	close(fd);
	for (int i = 0; i < rounds; i++) {
		reduce_ctx c = { 0 };
		t = now_s();
		n = split(buf, len);
		if ((t = now_s() - t) < best_split)
			best_split = t;
		t = now_s();
		if (hist_scan(buf, len, argv[1], count_only, &c, NULL, err, sizeof(err)) != RC_OK) {
			fprintf(stderr, "%s\n", err);
			return 1;
		}
		if ((t = now_s() - t) < best_dec)
			best_dec = t;
		memset(&c, 0, sizeof(c));
		t = now_s();
		if (hist_scan(buf, len, argv[1], reduce, &c, NULL, err, sizeof(err)) != RC_OK) {
			fprintf(stderr, "%s\n", err);
			return 1;
		}
		if ((t = now_s() - t) < best_red)
			best_red = t;
		rs_run_free(c.run);
	}
	printf("events %llu, %.1f MB, best of %d rounds\n", n, (double)len / 1e6, rounds);
	printf("split   %10.0f events/s  (%.3f s)\n", (double)n / best_split, best_split);
	printf("decode  %10.0f events/s  (%.3f s)\n", (double)n / best_dec, best_dec);
	printf("reduce  %10.0f events/s  (%.3f s)  <- runctl replay --file: decode + evolve\n",
	       (double)n / best_red, best_red);
	free(buf);
	return 0;
}
