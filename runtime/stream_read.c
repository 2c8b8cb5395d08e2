/*
 * stream_read: the failure of a stream's read, recorded once where it happens (the engine's
 * phases, the emission of a page) and reported once, when the read winds down (engine.c).
 */
#include "stream_read.h"

#include <stdarg.h>
#include <stdio.h>

int read_fail(struct stream_read *r, enum proto_failure type, const char *fmt, ...)
{
	if (r->err.set)
		return -1;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(r->err.message, sizeof r->err.message, fmt, ap);
	va_end(ap);
	r->err.set = 1;
	r->err.type = type;
	return -1;
}
