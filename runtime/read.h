/* read: the read command: the configured catalog's streams, one after another. */
#ifndef SOURCE_LUA_READ_H
#define SOURCE_LUA_READ_H

struct runtime;
struct script_def;

/* Reads every configured stream (script_idx: the script_def userdata; config, catalog and states
 * are stack indexes, states as input_read_state pushes it). Writes every message itself;
 * returns 0, or 1 when a stream failed or the sync was cancelled. */
int read_catalog(struct runtime *rt, const struct script_def *script, int script_idx, int config, int catalog,
		 int states);

#endif
