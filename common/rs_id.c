/* rs_id.c - UUIDv7 and random ids (see rs_id.h). */
#include "rs_id.h"
#include "rs_time.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

static pthread_mutex_t id_lock = PTHREAD_MUTEX_INITIALIZER;
static int64_t id_last_ms;
static uint16_t id_counter;

static void
fill_random(void *buf, size_t n)
{
	size_t got = 0;

	while (got < n) {
		ssize_t r = getrandom((char *)buf + got, n - got, 0);
		if (r > 0)
			got += (size_t)r;
	}
}

static void
format_uuid(const uint8_t b[16], char out[RS_UUID_LEN + 1])
{
	snprintf(out, RS_UUID_LEN + 1,
	         "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
	         b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9],
	         b[10], b[11], b[12], b[13], b[14], b[15]);
}

void
rs_id_uuidv7_at(int64_t ms, char out[RS_UUID_LEN + 1])
{
	uint8_t b[16];
	uint16_t seq;

	fill_random(b, sizeof(b));
	pthread_mutex_lock(&id_lock);
	if (ms <= id_last_ms) {
		/* Same (or earlier) millisecond: keep order with a counter. */
		ms = id_last_ms;
		seq = ++id_counter;
		if (seq > 0x0fff) {
			ms = ++id_last_ms;
			id_counter = seq = 0;
		}
	} else {
		id_last_ms = ms;
		/* Start the counter low but random so ids stay unguessable. */
		id_counter = seq = (uint16_t)(b[6] & 0x03);
	}
	pthread_mutex_unlock(&id_lock);
	for (int i = 0; i < 6; i++)
		b[i] = (uint8_t)(ms >> (40 - 8 * i));
	b[6] = (uint8_t)(0x70 | ((seq >> 8) & 0x0f));
	b[7] = (uint8_t)(seq & 0xff);
	b[8] = (uint8_t)(0x80 | (b[8] & 0x3f));
	format_uuid(b, out);
}

void
rs_id_uuidv7(char out[RS_UUID_LEN + 1])
{
	rs_id_uuidv7_at(rs_now_ms(), out);
}

int
rs_id_is_uuid(const char *s)
{
	if (s == NULL || strlen(s) != RS_UUID_LEN)
		return 0;
	for (int i = 0; i < RS_UUID_LEN; i++) {
		char c = s[i];
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (c != '-')
				return 0;
		} else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
			return 0;
		}
	}
	return 1;
}

int64_t
rs_id_uuidv7_ms(const char *s)
{
	int64_t ms = 0;
	int digits = 0;

	if (!rs_id_is_uuid(s) || s[14] != '7')
		return -1;
	for (int i = 0; i < 13 && digits < 12; i++) {
		char c = s[i];
		if (c == '-')
			continue;
		ms = ms * 16 + (c <= '9' ? c - '0' : c - 'a' + 10);
		digits++;
	}
	return ms;
}

rs_status
rs_id_random_hex(char *out, size_t n)
{
	uint8_t buf[64];

	if (n > sizeof(buf))
		return RS_EINVAL;
	fill_random(buf, n);
	for (size_t i = 0; i < n; i++)
		snprintf(out + 2 * i, 3, "%02x", buf[i]);
	return RS_OK;
}

int
rs_id_is_token(const char *s, size_t max)
{
	size_t n;

	if (s == NULL)
		return 0;
	n = strlen(s);
	if (n == 0 || n > max)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
			return 0;
	}
	return 1;
}

int
rs_id_is_subject_token(const char *s)
{
	if (s == NULL || *s == '\0')
		return 0;
	for (; *s != '\0'; s++)
		if (*s == '.' || *s == '*' || *s == '>' || (unsigned char)*s <= ' ' || *s == 0x7f)
			return 0;
	return 1;
}
