/* secrets: the values of airbyte_secret fields, and masking them out of every text we print. */
#ifndef SOURCE_LUA_SECRETS_H
#define SOURCE_LUA_SECRETS_H

#include <stddef.h>

#include "buf.h"

#define SECRETS_MAX 64

/* The secrets to mask, as the config gives them. Zero-initialised. */
struct secrets {
	char *known[SECRETS_MAX];
	size_t count;
};

/* Remembers a secret (any non-empty value). */
void secrets_add(struct secrets *s, const char *value);
/* Appends text to out with every known secret replaced by "****", in any spelling it may take on
 * the way out (case, percent-encoding, JSON escapes), and a prefix of one that the text ends in. */
void secrets_mask_into(const struct secrets *s, struct buf *out, const char *text, size_t len);
void secrets_clear(struct secrets *s);

#endif
