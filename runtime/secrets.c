/*
 * secrets: every value of an airbyte_secret field is registered here once the config is read, and
 * every LOG, TRACE and stderr text passes through secrets_mask_into before it is printed.
 *
 * A secret reaches a message in whatever form the text it came in had: an API echoes a key in
 * another case, a URL carries it percent-encoded (all of it, or only its reserved characters, in
 * either case of hex digits, or with '+' for spaces), a JSON body escapes it ("\/", "\u0041"), and
 * a body cut to its first 300 bytes may end in its first half. So the matcher takes each of the
 * secret's characters in any of those spellings, and a text that ends inside a secret has that
 * prefix masked. Every secret counts, whatever its length: a two-character key is still a key.
 * The registry belongs to the run (struct runtime); the output stream masks with it.
 */
#include "secrets.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

/* A text that ends inside a secret after this many of its characters has them masked. */
#define PREFIX_MIN 4

void secrets_add(struct secrets *s, const char *value)
{
	if (!*value || s->count == SECRETS_MAX)
		return;
	for (size_t i = 0; i < s->count; i++)
		if (!strcmp(s->known[i], value))
			return;
	char *copy = strdup(value);
	if (copy)
		s->known[s->count++] = copy;
}

static int hex_value(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = (unsigned char)tolower(c);
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* How many bytes of text at p spell the byte c (0: none do): itself in either case, %XX, '+' for
 * a space, or a JSON escape (\/, \\, \", \uXXXX for ASCII). */
static size_t spelling_of(const unsigned char *p, size_t left, unsigned char c)
{
	if (left >= 1 && (p[0] == c || (isalpha(c) && tolower(p[0]) == tolower(c))))
		return 1;
	if (left >= 1 && c == ' ' && p[0] == '+')
		return 1;
	if (left >= 3 && p[0] == '%' && hex_value(p[1]) >= 0 && hex_value(p[2]) >= 0 &&
	    hex_value(p[1]) * 16 + hex_value(p[2]) == c)
		return 3;
	if (left >= 2 && p[0] == '\\' && p[1] == c && (c == '/' || c == '\\' || c == '"'))
		return 2;
	if (left >= 6 && p[0] == '\\' && p[1] == 'u' && c < 0x80) {
		int v = 0;
		for (int i = 2; i < 6; i++) {
			int h = hex_value(p[i]);
			if (h < 0)
				return 0;
			v = v * 16 + h;
		}
		return v == c ? 6 : 0;
	}
	return 0;
}

/* The length of text at p that spells the secret, or of a prefix of it that the text ends in;
 * 0 when neither. */
static size_t match_at(const unsigned char *p, size_t left, const char *secret)
{
	size_t used = 0, matched = 0, len = strlen(secret);
	for (; matched < len; matched++) {
		size_t n = spelling_of(p + used, left - used, (unsigned char)secret[matched]);
		if (!n)
			break;
		used += n;
	}
	if (matched == len)
		return used;
	return used == left && matched >= PREFIX_MIN ? used : 0;
}

/* The longest spelling of a known secret at p; 0 when none starts there. */
static size_t secret_at(const struct secrets *s, const unsigned char *p, size_t left)
{
	size_t best = 0;
	for (size_t i = 0; s && i < s->count; i++) {
		size_t n = match_at(p, left, s->known[i]);
		if (n > best)
			best = n;
	}
	return best;
}

void secrets_mask_into(const struct secrets *s, struct buf *out, const char *text, size_t len)
{
	const unsigned char *p = (const unsigned char *)text;
	size_t i = 0, copied = 0;
	while (i < len) {
		size_t n = secret_at(s, p + i, len - i);
		if (n) {
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
