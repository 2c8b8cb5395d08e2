/* input: reading the platform's files (config, configured catalog, state) into Lua tables. */
#ifndef SOURCE_LUA_INPUT_H
#define SOURCE_LUA_INPUT_H

#include <lua.h>

#include "proto.h"

/* Raises {failure_type = type, message = ...}; the message must name what is wrong. */
int input_raise(lua_State *L, enum proto_failure type, const char *fmt, ...);

/* Reads and decodes a JSON file; what names it in errors ("config"). Raises a config_error. [-0, +1, e] */
void input_read_json(lua_State *L, const char *path, const char *what);

/* Pushes {stream_name = stream_state} from any state form the platform or the tutorial uses:
 * a list of STREAM/GLOBAL/LEGACY state objects, one such object, or a legacy {stream: state} blob.
 * path NULL, an empty file, [], {} and null mean no state. [-0, +1, e] */
void input_read_state(lua_State *L, const char *path);

/* Checks the configured catalog at idx: streams[].stream.name and a valid sync_mode. [-0, +0, e] */
void input_check_catalog(lua_State *L, int idx);

#endif
