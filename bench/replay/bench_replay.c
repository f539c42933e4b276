/*
 * bench_replay.c - how fast runctl's file replay path decodes and reduces
 * events: the same rs_ctl_hist_scan() `runctl replay --file` uses (one read of
 * the whole file, lines split in place), measured in layers so a slow
 * result says where the time goes:
 *   split          line splitting only (runctl's own reading path)
 *   strict decode  + rs_event_decode of every line (the reference codec)
 *   strict reduce  + rs_run_evolve into one state per run
 *   fast decode    rs_ctl_hist_scan: rs_event_decode_fast of every line
 *   fast reduce    rs_ctl_hist_scan + rs_run_evolve  <- `runctl replay --file`
 *   evolve only    rs_run_evolve over events decoded beforehand
 *   2 thr. by run  fast decode + evolve, runs partitioned by run_id
 *                  (events of different runs are independent)
 *   2 thr. pipe    decode on a worker thread, evolve in file order on the
 *                  main one (works for a single run, runctl's usual file)
 * Each layer reports its best wall time and its best CPU time (the
 * machine may be shared: CPU time is what the code costs).
 *   bench_replay HISTORY.ndjson [ROUNDS] [--no-strict]
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "history.h"
#include "rs_event_fast.h"
#include "rs_run.h"
#include "runctl.h"

typedef rs_status (*decode_fn)(const char *buf, size_t len, rs_event *ev, char *err, size_t cap);

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

/* One state per run; the generated history has each run's events together. */
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
clock_s(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double
now_s(void)
{
	return clock_s(CLOCK_MONOTONIC);
}

/* CPU time of the process (all threads): on a shared machine the wall
 * time of a layer also counts the time other processes had the core. */
static double
cpu_s(void)
{
	return clock_s(CLOCK_PROCESS_CPUTIME_ID);
}

/* Next non-empty line at *p (CR stripped); NULL at the end. */
static const char *
next_line(const char **p, const char *end, size_t *n)
{
	const char *line, *nl;

	while (*p < end) {
		line = *p;
		nl = memchr(line, '\n', (size_t)(end - line));
		*n = nl ? (size_t)(nl - line) : (size_t)(end - line);
		*p = nl ? nl + 1 : end;
		if (*n > 0 && line[*n - 1] == '\r')
			(*n)--;
		if (*n > 0)
			return line;
	}
	return NULL;
}

/* Split lines only: what runctl adds on top of the codec. */
static unsigned long long
split(const char *buf, size_t len)
{
	const char *p = buf, *end = buf + len;
	unsigned long long n = 0;
	size_t ln;

	while (next_line(&p, end, &ln) != NULL)
		n++;
	return n;
}

/* rs_ctl_hist_scan's loop with a chosen decoder (for the strict reference). */
static int
scan_with(decode_fn dec, const char *buf, size_t len, hist_fn fn, void *ctx)
{
	const char *p = buf, *end = buf + len, *line;
	char err[256];
	rs_event ev;
	rs_status st;
	size_t n;
	int rc;

	while ((line = next_line(&p, end, &n)) != NULL) {
		st = dec(line, n, &ev, err, sizeof(err));
		if (st != RS_OK && st != RS_ENOTFOUND) {
			fprintf(stderr, "decode: %s\n", err);
			return RC_FAIL;
		}
		rc = fn(ctx, &ev, line, n);
		rs_event_free(&ev);
		if (rc != RC_OK)
			return rc;
	}
	return RC_OK;
}

/* ---- evolve only ---- */

typedef struct {
	rs_event *ev;
	size_t n, cap;
} ev_array;

static int
keep(void *ctx, rs_event *ev, const char *raw, size_t len)
{
	ev_array *a = ctx;

	if (a->n == a->cap) {
		size_t nc = a->cap ? a->cap * 2 : 1024;
		rs_event *ne = realloc(a->ev, nc * sizeof(*ne));
		if (ne == NULL)
			return RC_FAIL;
		a->ev = ne;
		a->cap = nc;
	}
	a->ev[a->n++] = *ev;
	memset(ev, 0, sizeof(*ev));
	return RC_OK;
}

/* Wall time of the evolve loop; *best_cpu keeps its best CPU time. */
static double
time_evolve_only(const char *buf, size_t len, double *best_cpu)
{
	ev_array a = { 0 };
	reduce_ctx c = { 0 };
	double t, cpu;

	if (scan_with(rs_event_decode_fast, buf, len, keep, &a) != RC_OK)
		exit(1);
	t = now_s();
	cpu = cpu_s();
	for (size_t i = 0; i < a.n; i++)
		if (reduce(&c, &a.ev[i], NULL, 0) != RC_OK)
			exit(1);
	t = now_s() - t;
	if ((cpu = cpu_s() - cpu) < *best_cpu)
		*best_cpu = cpu;
	rs_run_free(c.run);
	for (size_t i = 0; i < a.n; i++)
		rs_event_free(&a.ev[i]);
	free(a.ev);
	return t;
}

/* ---- 2 threads, runs partitioned by run_id ---- */

#define NTHREADS 2

typedef struct {
	const char *buf;
	size_t len;
	unsigned me;
	reduce_ctx c;
	int rc;
} part_ctx;

/* Which thread owns a line: a hash of its subject (the run id). A line
 * without one goes to thread 0, whose decoder then reports it. */
static unsigned
owner(const char *line, size_t n)
{
	const char *s = memmem(line, n, "\"subject\":\"", 11);
	uint32_t h = 2166136261u;

	if (s == NULL || (size_t)(line + n - s) < 11 + 36)
		return 0;
	s += 11;
	for (int i = 0; i < 36; i++)
		h = (h ^ (unsigned char)s[i]) * 16777619u;
	return h % NTHREADS;
}

/* Works on locals and publishes at the end: the two contexts share a
 * cache line, and writing them per event would bounce it between cores. */
static void *
part_main(void *arg)
{
	part_ctx *pc = arg;
	const char *p = pc->buf, *end = pc->buf + pc->len, *line;
	reduce_ctx c = { 0 };
	char err[256];
	rs_event ev;
	int rc = RC_OK;
	size_t n;

	while (rc == RC_OK && (line = next_line(&p, end, &n)) != NULL) {
		if (owner(line, n) != pc->me)
			continue;
		if (rs_event_decode_fast(line, n, &ev, err, sizeof(err)) != RS_OK) {
			fprintf(stderr, "decode: %s\n", err);
			rc = RC_FAIL;
			break;
		}
		rc = reduce(&c, &ev, line, n);
		rs_event_free(&ev);
	}
	pc->c = c;
	pc->rc = rc;
	return NULL;
}

static void
time_partitioned(const char *buf, size_t len, unsigned long long *events)
{
	part_ctx pc[NTHREADS];
	pthread_t th[NTHREADS];

	memset(pc, 0, sizeof(pc));
	for (unsigned i = 0; i < NTHREADS; i++) {
		pc[i].buf = buf;
		pc[i].len = len;
		pc[i].me = i;
		if (pthread_create(&th[i], NULL, part_main, &pc[i]) != 0)
			exit(1);
	}
	*events = 0;
	for (unsigned i = 0; i < NTHREADS; i++) {
		pthread_join(th[i], NULL);
		if (pc[i].rc != RC_OK)
			exit(1);
		*events += pc[i].c.events;
		rs_run_free(pc[i].c.run);
	}
}

/* ---- 2 threads, pipelined: decode on a worker, evolve in order ----
 * What a single-run file (runctl's usual input) can use: events of one
 * run must be evolved in order, but decoding them is independent. The
 * worker decodes batches of lines into a ring; the main thread evolves
 * them in file order (and frees them). One lock round trip per batch. */

#define PIPE_BATCH 256
#define PIPE_RING 8

typedef struct {
	rs_event ev[PIPE_BATCH];
	size_t n;
} pipe_batch;

typedef struct {
	const char *buf;
	size_t len;
	pipe_batch ring[PIPE_RING];
	unsigned long long produced, consumed;   /* batches */
	int done, failed;
	pthread_mutex_t mu;
	pthread_cond_t cv;
} pipe_ctx;

static void *
pipe_worker(void *arg)
{
	pipe_ctx *pc = arg;
	const char *p = pc->buf, *end = pc->buf + pc->len, *line = pc->buf;
	char err[256];
	size_t n;

	while (line != NULL) {
		pipe_batch *b;
		pthread_mutex_lock(&pc->mu);
		while (pc->produced - pc->consumed == PIPE_RING)
			pthread_cond_wait(&pc->cv, &pc->mu);
		pthread_mutex_unlock(&pc->mu);
		b = &pc->ring[pc->produced % PIPE_RING];
		for (b->n = 0; b->n < PIPE_BATCH && (line = next_line(&p, end, &n)) != NULL; b->n++) {
			if (rs_event_decode_fast(line, n, &b->ev[b->n], err, sizeof(err)) != RS_OK) {
				fprintf(stderr, "decode: %s\n", err);
				pc->failed = 1;
				line = NULL;
				break;
			}
		}
		pthread_mutex_lock(&pc->mu);
		pc->produced++;
		pthread_cond_signal(&pc->cv);
		pthread_mutex_unlock(&pc->mu);
	}
	pthread_mutex_lock(&pc->mu);
	pc->done = 1;
	pthread_cond_signal(&pc->cv);
	pthread_mutex_unlock(&pc->mu);
	return NULL;
}

static unsigned long long
time_pipelined(const char *buf, size_t len)
{
	pipe_ctx *pc = calloc(1, sizeof(*pc));
	reduce_ctx c = { 0 };
	pthread_t th;

	if (pc == NULL)
		exit(1);
	pc->buf = buf;
	pc->len = len;
	pthread_mutex_init(&pc->mu, NULL);
	pthread_cond_init(&pc->cv, NULL);
	if (pthread_create(&th, NULL, pipe_worker, pc) != 0)
		exit(1);
	for (;;) {
		pipe_batch *b;
		pthread_mutex_lock(&pc->mu);
		while (pc->consumed == pc->produced && !pc->done)
			pthread_cond_wait(&pc->cv, &pc->mu);
		if (pc->consumed == pc->produced) {
			pthread_mutex_unlock(&pc->mu);
			break;
		}
		pthread_mutex_unlock(&pc->mu);
		b = &pc->ring[pc->consumed % PIPE_RING];
		for (size_t i = 0; i < b->n; i++) {
			if (reduce(&c, &b->ev[i], NULL, 0) != RC_OK)
				exit(1);
			rs_event_free(&b->ev[i]);
		}
		pthread_mutex_lock(&pc->mu);
		pc->consumed++;
		pthread_cond_signal(&pc->cv);
		pthread_mutex_unlock(&pc->mu);
	}
	pthread_join(th, NULL);
	if (pc->failed)
		exit(1);
	rs_run_free(c.run);
	pthread_mutex_destroy(&pc->mu);
	pthread_cond_destroy(&pc->cv);
	free(pc);
	return c.events;
}

/* ---- main ---- */

enum { L_SPLIT, L_STRICT_DEC, L_STRICT_RED, L_FAST_DEC, L_FAST_RED, L_EVOLVE, L_PART, L_PIPE,
       L__N };

typedef struct {
	double wall[L__N], cpu[L__N];   /* best of the rounds, each */
	double t0, c0;
} timing;

static void
start(timing *tm)
{
	tm->t0 = now_s();
	tm->c0 = cpu_s();
}

static void
stop(timing *tm, int layer)
{
	double w = now_s() - tm->t0, c = cpu_s() - tm->c0;

	if (w < tm->wall[layer])
		tm->wall[layer] = w;
	if (c < tm->cpu[layer])
		tm->cpu[layer] = c;
}

static void
row(const timing *tm, int layer, const char *name, unsigned long long n, const char *note)
{
	printf("%-14s %10.0f events/s  (%.3f s)  %10.0f events/CPU-s%s\n", name,
	       (double)n / tm->wall[layer], tm->wall[layer], (double)n / tm->cpu[layer], note);
}

int
main(int argc, char **argv)
{
	int rounds = argc > 2 ? atoi(argv[2]) : 3, fd;
	int strict = !(argc > 3 && strcmp(argv[3], "--no-strict") == 0);
	unsigned long long n = 0, pn = 0;
	rs_event_fast_stats fs;
	char *buf, err[512];
	struct stat st;
	timing tm;
	size_t len;

	if (argc < 2 || (fd = open(argv[1], O_RDONLY)) < 0 || fstat(fd, &st) != 0) {
		fprintf(stderr, "usage: bench_replay HISTORY.ndjson [ROUNDS] [--no-strict] "
		        "(make one with gen_history)\n");
		return 2;
	}
	len = (size_t)st.st_size;
	buf = malloc(len);
	if (buf == NULL || read(fd, buf, len) != (ssize_t)len)
		return 1;
	close(fd);
	for (int i = 0; i < L__N; i++)
		tm.wall[i] = tm.cpu[i] = 1e9;
	for (int i = 0; i < rounds; i++) {
		reduce_ctx c = { 0 };
		double ev_only;
		start(&tm);
		n = split(buf, len);
		stop(&tm, L_SPLIT);
		if (strict) {
			start(&tm);
			if (scan_with(rs_event_decode, buf, len, count_only, &c) != RC_OK)
				return 1;
			stop(&tm, L_STRICT_DEC);
			memset(&c, 0, sizeof(c));
			start(&tm);
			if (scan_with(rs_event_decode, buf, len, reduce, &c) != RC_OK)
				return 1;
			stop(&tm, L_STRICT_RED);
			rs_run_free(c.run);
			memset(&c, 0, sizeof(c));
		}
		start(&tm);
		if (rs_ctl_hist_scan(buf, len, argv[1], count_only, &c, NULL, err, sizeof(err)) != RC_OK) {
			fprintf(stderr, "%s\n", err);
			return 1;
		}
		stop(&tm, L_FAST_DEC);
		memset(&c, 0, sizeof(c));
		start(&tm);
		if (rs_ctl_hist_scan(buf, len, argv[1], reduce, &c, NULL, err, sizeof(err)) != RC_OK) {
			fprintf(stderr, "%s\n", err);
			return 1;
		}
		stop(&tm, L_FAST_RED);
		rs_run_free(c.run);
		ev_only = time_evolve_only(buf, len, &tm.cpu[L_EVOLVE]);
		if (ev_only < tm.wall[L_EVOLVE])
			tm.wall[L_EVOLVE] = ev_only;
		start(&tm);
		time_partitioned(buf, len, &pn);
		stop(&tm, L_PART);
		if (pn != n) {
			fprintf(stderr, "partitioned run reduced %llu events of %llu\n", pn, n);
			return 1;
		}
		start(&tm);
		pn = time_pipelined(buf, len);
		stop(&tm, L_PIPE);
		if (pn != n) {
			fprintf(stderr, "pipelined run reduced %llu events of %llu\n", pn, n);
			return 1;
		}
	}
	rs_event_fast_get_stats(&fs);
	printf("events %llu, %.1f MB, best of %d rounds (wall and CPU time best separately)\n",
	       n, (double)len / 1e6, rounds);
	row(&tm, L_SPLIT, "split", n, "");
	if (strict) {
		row(&tm, L_STRICT_DEC, "strict decode", n, "  rs_event_decode");
		row(&tm, L_STRICT_RED, "strict reduce", n, "  rs_event_decode + rs_run_evolve");
	}
	row(&tm, L_FAST_DEC, "fast decode", n, "  hist_scan: rs_event_decode_fast");
	row(&tm, L_FAST_RED, "fast reduce", n, "  <- runctl replay --file: decode + evolve");
	row(&tm, L_EVOLVE, "evolve only", n, "  rs_run_evolve, events decoded beforehand");
	row(&tm, L_PART, "2 thr. by run", n, "  fast decode + evolve, runs split by run_id");
	row(&tm, L_PIPE, "2 thr. pipe", n, "  decode on a worker, evolve in order (any file)");
	printf("fast path took %llu decodes itself, %llu fell back to rs_event_decode "
	       "(main thread)\n", fs.fast, fs.fallback);
	free(buf);
	return 0;
}
