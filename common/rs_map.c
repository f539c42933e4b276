/*
 * rs_map.c - the one string-keyed hash map (see rs_map.h for ownership).
 * Derived from the tool-router's map, which served connections, devices,
 * calls and tokens; the api, orchestrator and router tables now share it
 * instead of each writing buckets, chains and growth again.
 *
 * Hash: rs_hash_str (FNV-1a). Keys are ids we or NATS produced, or hashes
 * of tokens; an attacker choosing keys can at worst lengthen a chain.
 */
#include <stdlib.h>
#include <string.h>

#include "rs_hash.h"
#include "rs_map.h"

static size_t
slot(const char *key, size_t nb)
{
	return (size_t)rs_hash_str(key) & (nb - 1);
}

void
rs_map_init(rs_map *m, void (*free_val)(void *val))
{
	memset(m, 0, sizeof(*m));
	m->free_val = free_val;
}

void *
rs_map_get(const rs_map *m, const char *key)
{
	rs_map_ent *e;

	if (m->nb == 0)
		return NULL;
	for (e = m->b[slot(key, m->nb)]; e != NULL; e = e->next)
		if (strcmp(e->key, key) == 0)
			return e->val;
	return NULL;
}

static rs_status
grow(rs_map *m)
{
	size_t nb = m->nb ? m->nb * 2 : 64, i;
	rs_map_ent **b = calloc(nb, sizeof(*b)), *e, *next;

	if (b == NULL)
		return RS_ENOMEM;
	for (i = 0; i < m->nb; i++) {
		for (e = m->b[i]; e != NULL; e = next) {
			next = e->next;
			e->next = b[slot(e->key, nb)];
			b[slot(e->key, nb)] = e;
		}
	}
	free(m->b);
	m->b = b;
	m->nb = nb;
	return RS_OK;
}

rs_status
rs_map_put(rs_map *m, const char *key, void *val)
{
	rs_map_ent *e;
	size_t i;

	if (m->nb == 0 || m->n >= m->nb) {
		if (grow(m) != RS_OK)
			return RS_ENOMEM;
	}
	i = slot(key, m->nb);
	for (e = m->b[i]; e != NULL; e = e->next) {
		if (strcmp(e->key, key) == 0) {
			if (m->free_val != NULL && e->val != val)
				m->free_val(e->val);
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

/* Unlink key's entry and return it (the caller frees it), or NULL. */
static rs_map_ent *
unlink_ent(rs_map *m, const char *key)
{
	rs_map_ent **pp, *e;

	if (m->nb == 0)
		return NULL;
	for (pp = &m->b[slot(key, m->nb)]; (e = *pp) != NULL; pp = &e->next) {
		if (strcmp(e->key, key) == 0) {
			*pp = e->next;
			m->n--;
			return e;
		}
	}
	return NULL;
}

void *
rs_map_take(rs_map *m, const char *key)
{
	rs_map_ent *e = unlink_ent(m, key);
	void *v;

	if (e == NULL)
		return NULL;
	v = e->val;
	free(e->key);
	free(e);
	return v;
}

bool
rs_map_del(rs_map *m, const char *key)
{
	rs_map_ent *e = unlink_ent(m, key);

	if (e == NULL)
		return false;
	if (m->free_val != NULL)
		m->free_val(e->val);
	free(e->key);
	free(e);
	return true;
}

size_t
rs_map_count(const rs_map *m)
{
	return m->n;
}

rs_map_ent *
rs_map_next(const rs_map *m, size_t *i, const rs_map_ent *e)
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
rs_map_free(rs_map *m)
{
	rs_map_ent *e, *next;
	void (*free_val)(void *) = m->free_val;

	for (size_t i = 0; i < m->nb; i++) {
		for (e = m->b[i]; e != NULL; e = next) {
			next = e->next;
			if (free_val != NULL)
				free_val(e->val);
			free(e->key);
			free(e);
		}
	}
	free(m->b);
	memset(m, 0, sizeof(*m));
	m->free_val = free_val;
}
