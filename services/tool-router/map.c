/*
 * map.c - a small chained hash map with string keys, used only on the lws
 * service thread (connections by id, devices, calls, cached tokens). No
 * locking by design: see router.h for who owns what.
 */
#include <stdlib.h>
#include <string.h>

#include "router.h"
#include "rs_hash.h"

/* rs_hash_str (FNV-1a): short keys, no adversarial pressure worth a keyed
 * hash here (keys are ids the router or KV produced, or sha256 of tokens). */
static size_t
hash(const char *s)
{
	return (size_t)rs_hash_str(s);
}

void *
rs_router_map_get(const rs_router_map *m, const char *key)
{
	rs_router_map_ent *e;

	if (m->nb == 0)
		return NULL;
	for (e = m->b[hash(key) & (m->nb - 1)]; e != NULL; e = e->next)
		if (strcmp(e->key, key) == 0)
			return e->val;
	return NULL;
}

static rs_status
grow(rs_router_map *m)
{
	size_t nb = m->nb ? m->nb * 2 : 64, i;
	rs_router_map_ent **b = calloc(nb, sizeof(*b)), *e, *next;

	if (b == NULL)
		return RS_ENOMEM;
	for (i = 0; i < m->nb; i++) {
		for (e = m->b[i]; e != NULL; e = next) {
			next = e->next;
			e->next = b[hash(e->key) & (nb - 1)];
			b[hash(e->key) & (nb - 1)] = e;
		}
	}
	free(m->b);
	m->b = b;
	m->nb = nb;
	return RS_OK;
}

rs_status
rs_router_map_put(rs_router_map *m, const char *key, void *val)
{
	rs_router_map_ent *e;
	size_t i;

	if (m->nb == 0 || m->n >= m->nb) {
		if (grow(m) != RS_OK)
			return RS_ENOMEM;
	}
	i = hash(key) & (m->nb - 1);
	for (e = m->b[i]; e != NULL; e = e->next) {
		if (strcmp(e->key, key) == 0) {
			e->val = val;
			return RS_OK;
		}
	}
	e = malloc(sizeof(*e));
	if (e == NULL)
		return RS_ENOMEM;
	e->key = strdup(key);
	if (e->key == NULL) {
		free(e);
		return RS_ENOMEM;
	}
	e->val = val;
	e->next = m->b[i];
	m->b[i] = e;
	m->n++;
	return RS_OK;
}

void *
rs_router_map_del(rs_router_map *m, const char *key)
{
	rs_router_map_ent **pp, *e;
	void *v;

	if (m->nb == 0)
		return NULL;
	for (pp = &m->b[hash(key) & (m->nb - 1)]; (e = *pp) != NULL; pp = &e->next) {
		if (strcmp(e->key, key) == 0) {
			*pp = e->next;
			v = e->val;
			free(e->key);
			free(e);
			m->n--;
			return v;
		}
	}
	return NULL;
}

rs_router_map_ent *
rs_router_map_next(const rs_router_map *m, size_t *i, rs_router_map_ent *e)
{
	if (e != NULL && e->next != NULL)
		return e->next;
	if (e != NULL)
		(*i)++;
	for (; *i < m->nb; (*i)++)
		if (m->b[*i] != NULL)
			return m->b[*i];
	return NULL;
}

void
rs_router_map_free(rs_router_map *m)
{
	rs_router_map_ent *e, *next;

	for (size_t i = 0; i < m->nb; i++) {
		for (e = m->b[i]; e != NULL; e = next) {
			next = e->next;
			free(e->key);
			free(e);
		}
	}
	free(m->b);
	memset(m, 0, sizeof(*m));
}
