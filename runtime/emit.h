/* emit: a page's records on their way out: which are written and why the others are not, and how
 * each moves its partition's position. */
#ifndef SOURCE_LUA_EMIT_H
#define SOURCE_LUA_EMIT_H

#include "cursor.h"
#include "records.h"
#include "state.h"
#include "stream_read.h"

/* Writes the records of a page parse built as Lua tables (a list at records_idx). Returns 0 or -1. */
int emit_tables(struct stream_read *r, struct partition *p, const struct cursor_window *w, int records_idx);

/* Writes the records of a page a declared mapper made (a settled batch). Returns 0 or -1. */
int emit_batch(struct stream_read *r, struct partition *p, const struct cursor_window *w,
	       const struct record_batch *batch);

/* Every page of the partition's current window was read: it is complete up to its cursor. */
void emit_window_done(struct stream_read *r, struct partition *p);

/* The partition is finished: one LOG line for what was skipped and why, if anything was. */
void emit_partition_done(struct stream_read *r, struct partition *p);

#endif
