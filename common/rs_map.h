/*
 * rs_map.h - the one string-keyed hash map of the tree (chained, power-of-
 * two buckets, grown by doubling when it holds as many entries as buckets).
 * Services use it for their caches and pending tables: run ids, call keys,
 * device ids, agent names, token hashes. Not thread-safe: each map belongs
 * to one thread or is guarded by its owner's lock.
 *
 * Ownership: the map copies and owns every key. Values are the caller's
 * unless the map was given a free_val function (rs_map_init): then the map
 * owns them and frees them when they are replaced, deleted (rs_map_del) or
 * the map is freed. rs_map_take always hands the value back unfreed.
 *
 * A zeroed rs_map is a valid empty map that does not own its values.
 */
#ifndef RS_MAP_H
#define RS_MAP_H

#include <stdbool.h>
#include <stddef.h>

#include "rs_status.h"

typedef struct rs_map_ent {
	struct rs_map_ent *next;
	char *key;  /* owned by the map: read it, never free or change it */
	void *val;
} rs_map_ent;

typedef struct {
	rs_map_ent **b;
	size_t nb, n;                /* buckets (0 or a power of two), entries */
	void (*free_val)(void *val); /* NULL: values are not the map's */
} rs_map;

/* An empty map; free_val NULL means the caller keeps the values. */
void rs_map_init(rs_map *m, void (*free_val)(void *val));

/* The value under key, or NULL. */
void *rs_map_get(const rs_map *m, const char *key);

/* Set key to val (replacing, and freeing an owned old value). RS_ENOMEM
 * if the entry could not be allocated (the map is unchanged). */
rs_status rs_map_put(rs_map *m, const char *key, void *val);

/* Remove key and return its value, now the caller's (NULL if absent). */
void *rs_map_take(rs_map *m, const char *key);

/* Remove key, freeing its value if the map owns values; whether it was there. */
bool rs_map_del(rs_map *m, const char *key);

/* Entries held. */
size_t rs_map_count(const rs_map *m);

/* Iterate (any order):
 *   size_t i = 0; rs_map_ent *e = NULL;
 *   while ((e = rs_map_next(m, &i, e)) != NULL) ...
 * To delete while iterating, fetch the next entry before deleting this one:
 *   for (e = rs_map_next(m, &i, NULL); e != NULL; e = nx) {
 *           nx = rs_map_next(m, &i, e); ... rs_map_del(m, e->key); } */
rs_map_ent *rs_map_next(const rs_map *m, size_t *i, const rs_map_ent *e);

/* Free every entry (and owned values); the map is empty and reusable. */
void rs_map_free(rs_map *m);

#endif
