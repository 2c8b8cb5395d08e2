/* buf: a growable byte buffer shared by the encoder, the HTTP client and the output stream. */
#ifndef SOURCE_LUA_BUF_H
#define SOURCE_LUA_BUF_H

#include <stddef.h>

struct buf {
	char *data;
	size_t len;
	size_t cap;
};

/* Every function aborts the process on out-of-memory: a half-written message is worse than none. */
void buf_reserve(struct buf *b, size_t extra);
void buf_append(struct buf *b, const void *data, size_t len);
void buf_puts(struct buf *b, const char *s);
void buf_putc(struct buf *b, char c);
void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* NUL-terminates without counting the terminator in len. */
const char *buf_cstr(struct buf *b);
void buf_clear(struct buf *b);
void buf_free(struct buf *b);

#endif
