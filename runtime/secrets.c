/*
 * secrets: every value of an airbyte_secret field is registered here once the config is read, and
 * every LOG, TRACE and CONNECTION_STATUS text (and http.get's error text) passes through
 * secrets_mask_into before a script or stdout sees it.
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

/* The lengths of text at p that spell the byte c: itself in either case or '+' for a space (1),
 * a JSON escape \/ \\ \" (2), %XX (3), \uXXXX for ASCII (6). Writes them to lens; returns how
 * many. More than one fits only at '%' ("%" and "%25") and '\\' ("\\", "\\\\", "%5C", ...). */
static int spellings_of(const unsigned char *p, size_t left, unsigned char c, size_t lens[4])
{
	int n = 0;
	if (left >= 1 && (p[0] == c || (isalpha(c) && tolower(p[0]) == tolower(c)) || (c == ' ' && p[0] == '+')))
		lens[n++] = 1;
	if (left >= 2 && p[0] == '\\' && p[1] == c && (c == '/' || c == '\\' || c == '"'))
		lens[n++] = 2;
	if (left >= 3 && p[0] == '%' && hex_value(p[1]) >= 0 && hex_value(p[2]) >= 0 &&
	    hex_value(p[1]) * 16 + hex_value(p[2]) == c)
		lens[n++] = 3;
	if (left >= 6 && p[0] == '\\' && p[1] == 'u' && c < 0x80) {
		int v = 0;
		for (int i = 2; i < 6 && v >= 0; i++) {
			int h = hex_value(p[i]);
			v = h < 0 ? -1 : v * 16 + h;
		}
		if (v == c)
			lens[n++] = 6;
	}
	return n;
}

/* Text offsets a partial match can stand at; more than this many at once means a hostile text,
 * and the extra ones are not followed. */
#define MATCH_PATHS 32

/* The length of text at p that spells the secret (the longest, where spellings overlap), or of a
 * prefix of it that the text ends in; 0 when neither. Every spelling of each character is followed
 * at once, so that "%2541" is found to spell "%41" though "%" alone spells '%' too. */
static size_t match_at(const unsigned char *p, size_t left, const char *secret)
{
	size_t at[MATCH_PATHS] = {0}, next[MATCH_PATHS];
	int paths = 1;
	size_t len = strlen(secret);
	for (size_t matched = 0; matched < len; matched++) {
		int count = 0;
		for (int i = 0; i < paths; i++) {
			if (at[i] == left) {
				if (matched >= PREFIX_MIN)
					return left;
				continue;
			}
			size_t lens[4];
			int n = spellings_of(p + at[i], left - at[i], (unsigned char)secret[matched], lens);
			for (int j = 0; j < n; j++) {
				size_t to = at[i] + lens[j];
				int known = 0;
				for (int k = 0; k < count && !known; k++)
					known = next[k] == to;
				if (!known && count < MATCH_PATHS)
					next[count++] = to;
			}
		}
		if (!count)
			return 0;
		memcpy(at, next, (size_t)count * sizeof *at);
		paths = count;
	}
	size_t longest = 0;
	for (int i = 0; i < paths; i++)
		if (at[i] > longest)
			longest = at[i];
	return longest;
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
