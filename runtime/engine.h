/* engine: reading one stream: its partitions, each read window by window and page by page through
 * an explicit state machine, several at once on one libcurl multi handle. */
#ifndef SOURCE_LUA_ENGINE_H
#define SOURCE_LUA_ENGINE_H

#include <lua.h>

struct runtime;
struct script_def;

/* Reads one configured stream (script_idx: the script_def userdata; configured_idx: its entry of
 * the configured catalog; states_idx: the incoming state; legacy_idx: the whole-source blob, or 0)
 * and writes every message of it: statuses, records, checkpoints, and on failure the state of
 * what it emitted and one TRACE error. Returns 0, or -1 when it failed. */
int engine_read_stream(struct runtime *rt, const struct script_def *script, int script_idx, int config_idx,
		       int configured_idx, int states_idx, int legacy_idx);

#endif
