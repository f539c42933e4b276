/*
 * test_map.c - common/rs_map.c, the one string-keyed hash map: insert,
 * lookup, replace, delete and take, growth past many doublings, iteration
 * (each entry exactly once, and deleting while iterating), and who frees
 * the values (owned or not).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "../check.h"
#include "rs_map.h"

static int freed;

static void
count_free(void *v)
{
	freed++;
	free(v);
}

static void
test_basic(void)
{
	rs_map m = { 0 };
	int a = 1, b = 2, c = 3;

	CHECK(rs_map_get(&m, "x") == NULL);      /* empty map, no buckets yet */
	CHECK(rs_map_take(&m, "x") == NULL);
	CHECK(!rs_map_del(&m, "x"));
	CHECK_INT(rs_map_put(&m, "a", &a), RS_OK);
	CHECK_INT(rs_map_put(&m, "b", &b), RS_OK);
	CHECK(rs_map_get(&m, "a") == &a);
	CHECK(rs_map_get(&m, "b") == &b);
	CHECK(rs_map_get(&m, "c") == NULL);
	CHECK(rs_map_get(&m, "") == NULL);
	CHECK_INT(rs_map_count(&m), 2);

	CHECK_INT(rs_map_put(&m, "a", &c), RS_OK); /* replace: no new entry */
	CHECK(rs_map_get(&m, "a") == &c);
	CHECK_INT(rs_map_count(&m), 2);

	CHECK(rs_map_take(&m, "a") == &c);
	CHECK(rs_map_get(&m, "a") == NULL);
	CHECK_INT(rs_map_count(&m), 1);
	CHECK(rs_map_del(&m, "b"));               /* not owned: b untouched */
	CHECK(!rs_map_del(&m, "b"));
	CHECK_INT(rs_map_count(&m), 0);
	CHECK_INT(b, 2);

	/* the key is copied: the caller's buffer may change afterwards */
	char key[8] = "k1";
	CHECK_INT(rs_map_put(&m, key, &a), RS_OK);
	key[1] = '2';
	CHECK(rs_map_get(&m, "k1") == &a);
	CHECK(rs_map_get(&m, "k2") == NULL);
	rs_map_free(&m);
	CHECK_INT(rs_map_count(&m), 0);
	CHECK(rs_map_get(&m, "k1") == NULL);
	rs_map_free(&m);                          /* twice is harmless */
}

#define N 5000

static void
test_grow_iterate(void)
{
	rs_map m = { 0 };
	static unsigned char seen[N];
	char k[32];
	size_t i = 0, n = 0;
	rs_map_ent *e = NULL, *nx;
	int bad = 0;

	for (intptr_t v = 0; v < N; v++) {
		snprintf(k, sizeof(k), "run-%ld", (long)v);
		if (rs_map_put(&m, k, (void *)(v + 1)) != RS_OK)
			bad++;
	}
	CHECK_INT(bad, 0);
	CHECK_INT(rs_map_count(&m), N);
	CHECK(m.nb >= N);                         /* grew by doubling past N */
	for (intptr_t v = 0; v < N; v++) {
		snprintf(k, sizeof(k), "run-%ld", (long)v);
		if ((intptr_t)rs_map_get(&m, k) != v + 1)
			bad++;
	}
	CHECK_INT(bad, 0);

	while ((e = rs_map_next(&m, &i, e)) != NULL) {
		intptr_t v = (intptr_t)e->val - 1;

		if (v < 0 || v >= N || seen[v]++)
			bad++;
		n++;
	}
	CHECK_INT(bad, 0);
	CHECK_INT(n, N);

	/* delete every odd entry while iterating */
	i = 0;
	for (e = rs_map_next(&m, &i, NULL); e != NULL; e = nx) {
		nx = rs_map_next(&m, &i, e);
		if ((intptr_t)e->val % 2 == 0)
			CHECK(rs_map_del(&m, e->key));
	}
	CHECK_INT(rs_map_count(&m), N / 2);
	for (intptr_t v = 0; v < N; v++) {
		snprintf(k, sizeof(k), "run-%ld", (long)v);
		if ((rs_map_get(&m, k) != NULL) != (v % 2 == 0))
			bad++;
	}
	CHECK_INT(bad, 0);
	rs_map_free(&m);
}

static void
test_owned(void)
{
	rs_map m;
	int *v;

	rs_map_init(&m, count_free);
	freed = 0;
	for (int i = 0; i < 3; i++) {
		v = malloc(sizeof(*v));
		*v = i;
		CHECK_INT(rs_map_put(&m, i == 2 ? "a" : (i ? "b" : "a"), v), RS_OK);
	}
	CHECK_INT(freed, 1);                      /* "a" replaced: old value freed */
	CHECK_INT(*(int *)rs_map_get(&m, "a"), 2);
	v = rs_map_take(&m, "b");                 /* taken: ours now, not freed */
	CHECK_INT(freed, 1);
	CHECK(v != NULL && *v == 1);
	free(v);
	CHECK_INT(rs_map_put(&m, "c", malloc(1)), RS_OK);
	CHECK(rs_map_del(&m, "c"));               /* deleted: freed */
	CHECK_INT(freed, 2);
	rs_map_free(&m);                          /* "a" freed with the map */
	CHECK_INT(freed, 3);
	CHECK(m.free_val == count_free);          /* still owns after free */
}

int
main(void)
{
	test_basic();
	test_grow_iterate();
	test_owned();
	return check_report("test_map");
}
