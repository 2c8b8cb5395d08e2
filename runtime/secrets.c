/*
 * secrets: every value of an airbyte_secret field is registered here once the config is read, and
 * every LOG, TRACE and stderr text passes through secrets_mask_into. Error texts from libcurl and
 * from the API may quote a URL or a header, so the URL-encoded form is masked too.
 * The registry belongs to the run (struct runtime); the output stream masks with it.
 */
#include "secrets.h"

#include "json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void remember(struct secrets *s, const char *value)
{
	if (strlen(value) < 3 || s->count == SECRETS_MAX)
		return;
	for (size_t i = 0; i < s->count; i++)
		if (!strcmp(s->known[i], value))
			return;
	char *copy = strdup(value);
	if (copy)
		s->known[s->count++] = copy;
}

static void url_encode(const char *value, struct buf *out)
{
	static const char hex[] = "0123456789ABCDEF";
	for (const unsigned char *p = (const unsigned char *)value; *p; p++) {
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
		    strchr("-._~", *p)) {
			buf_putc(out, (char)*p);
		} else {
			buf_putc(out, '%');
			buf_putc(out, hex[*p >> 4]);
			buf_putc(out, hex[*p & 15]);
		}
	}
}

void secrets_add(struct secrets *s, const char *value)
{
	remember(s, value);
	struct buf encoded = {0};
	url_encode(value, &encoded);
	remember(s, buf_cstr(&encoded));
	/* As json.encode would write it (quotes and backslashes escaped), without the quotes. */
	buf_clear(&encoded);
	json_write_string(&encoded, value, strlen(value));
	if (encoded.len >= 2) {
		encoded.data[encoded.len - 1] = '\0';
		remember(s, encoded.data + 1);
	}
	buf_free(&encoded);
}

/* Index of the secret that starts at text, or -1; the longest wins so that a prefix cannot leak. */
static int secret_at(const struct secrets *s, const char *text, size_t left, size_t *match_len)
{
	int best = -1;
	*match_len = 0;
	for (size_t i = 0; s && i < s->count; i++) {
		size_t n = strlen(s->known[i]);
		if (n <= left && n > *match_len && memcmp(text, s->known[i], n) == 0) {
			best = (int)i;
			*match_len = n;
		}
	}
	return best;
}

void secrets_mask_into(const struct secrets *s, struct buf *out, const char *text, size_t len)
{
	size_t i = 0;
	size_t copied = 0;
	while (i < len) {
		size_t n;
		if (secret_at(s, text + i, len - i, &n) >= 0) {
			buf_append(out, text + copied, i - copied);
			buf_puts(out, "****");
			i += n;
			copied = i;
		} else {
			i++;
		}
	}
	buf_append(out, text + copied, len - copied);
}

void secrets_clear(struct secrets *s)
{
	for (size_t i = 0; i < s->count; i++)
		free(s->known[i]);
	s->count = 0;
}
