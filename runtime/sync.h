/* sync: the read command: streams, partitions, cursors, windows, pages, records and checkpoints. */
#ifndef SOURCE_LUA_SYNC_H
#define SOURCE_LUA_SYNC_H

#include <lua.h>

/* Reads every configured stream. script, config, catalog and states are stack indexes (states as
 * input_read_state pushes it). Emits all messages itself; returns 0, or 1 after a TRACE error. */
struct runtime;
int sync_read(struct runtime *rt, int script, int config, int catalog, int states);

/* Finds the stream definition called name in script.streams; pushes it or nil. [-0, +1, m] */
void sync_push_stream_def(lua_State *L, int script, const char *name);

#endif
