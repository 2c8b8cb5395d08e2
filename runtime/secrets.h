/* secrets: the values of airbyte_secret fields, and masking them out of every text we print. */
#ifndef SOURCE_LUA_SECRETS_H
#define SOURCE_LUA_SECRETS_H

#include <stddef.h>

#include "buf.h"

/* Remembers a secret (and its URL-encoded form); values shorter than 3 bytes are not worth masking. */
void secrets_add(const char *value);
/* Appends text to out with every known secret replaced by "****". */
void secrets_mask_into(struct buf *out, const char *text, size_t len);
/* Prints text to stderr, masked, followed by a newline. */
void secrets_eprint(const char *text);
void secrets_clear(void);

#endif
