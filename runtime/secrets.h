/* secrets: the values of airbyte_secret fields, and masking them out of every text we print. */
#ifndef SOURCE_LUA_SECRETS_H
#define SOURCE_LUA_SECRETS_H

#include <stddef.h>

#include "buf.h"

#define SECRETS_MAX 64

/* The texts to mask: each secret in the forms it may take on the way out. Zero-initialised. */
struct secrets {
	char *known[SECRETS_MAX];
	size_t count;
};

/* Remembers a secret (and its URL-encoded form); values shorter than 3 bytes are not worth masking. */
void secrets_add(struct secrets *s, const char *value);
/* Appends text to out with every known secret replaced by "****". */
void secrets_mask_into(const struct secrets *s, struct buf *out, const char *text, size_t len);
void secrets_clear(struct secrets *s);

#endif
