/*
 * secrets: every value of an airbyte_secret field is registered here once the config is read, and
 * every LOG, TRACE and stderr text passes through secrets_mask_into. Error texts from libcurl and
 * from the API may quote a URL or a header, so the URL-encoded form is masked too.
 * Process-global on purpose: a secret must be masked wherever a message is built.
 */
#include "secrets.h"

#include "json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SECRETS_MAX 64

static char *known[SECRETS_MAX];
static size_t known_count;

static void remember(const char *value)
{
	if (strlen(value) < 3 || known_count == SECRETS_MAX)
		return;
	for (size_t i = 0; i < known_count; i++)
		if (!strcmp(known[i], value))
			return;
	char *copy = strdup(value);
	if (copy)
		known[known_count++] = copy;
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

void secrets_add(const char *value)
{
	remember(value);
	struct buf encoded = {0};
	url_encode(value, &encoded);
	remember(buf_cstr(&encoded));
	/* As json.encode would write it (quotes and backslashes escaped), without the quotes. */
	buf_clear(&encoded);
	json_write_string(&encoded, value, strlen(value));
	if (encoded.len >= 2) {
		encoded.data[encoded.len - 1] = '\0';
		remember(encoded.data + 1);
	}
	buf_free(&encoded);
}

/* Index of the secret that starts at text, or -1; the longest wins so that a prefix cannot leak. */
static int secret_at(const char *text, size_t left, size_t *match_len)
{
	int best = -1;
	*match_len = 0;
	for (size_t i = 0; i < known_count; i++) {
		size_t n = strlen(known[i]);
		if (n <= left && n > *match_len && memcmp(text, known[i], n) == 0) {
			best = (int)i;
			*match_len = n;
		}
	}
	return best;
}

void secrets_mask_into(struct buf *out, const char *text, size_t len)
{
	size_t i = 0;
	size_t copied = 0;
	while (i < len) {
		size_t n;
		if (secret_at(text + i, len - i, &n) >= 0) {
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

void secrets_eprint(const char *text)
{
	struct buf line = {0};
	secrets_mask_into(&line, text, strlen(text));
	buf_putc(&line, '\n');
	fwrite(line.data, 1, line.len, stderr);
	fflush(stderr);
	buf_free(&line);
}

void secrets_clear(void)
{
	for (size_t i = 0; i < known_count; i++)
		free(known[i]);
	known_count = 0;
}
