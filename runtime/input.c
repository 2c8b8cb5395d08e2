/*
 * input: the files the platform hands us. Each is decoded (json_decode.c), then checked once here so
 * that the rest of the runtime can trust its shape; every problem is a config_error that names
 * the file and the field. Unknown fields are ignored, as the protocol expects.
 */
#include "input.h"

#include <errno.h>
#include <lauxlib.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

#define INPUT_MAX_BYTES (64u << 20)

int input_raise(lua_State *L, enum proto_failure type, const char *fmt, ...)
{
	char message[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(message, sizeof message, fmt, ap);
	va_end(ap);
	lua_createtable(L, 0, 2);
	lua_pushstring(L, message);
	lua_setfield(L, -2, "message");
	lua_pushstring(L, proto_failure_name(type));
	lua_setfield(L, -2, "failure_type");
	return lua_error(L);
}

/* Reads the whole file into a Lua string, so that nothing C-owned is alive if we raise. */
static void push_file(lua_State *L, const char *path, const char *what)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		input_raise(L, PROTO_CONFIG_ERROR, "cannot open the %s file '%s': %s", what, path, strerror(errno));
	luaL_Buffer b;
	luaL_buffinit(L, &b);
	size_t total = 0;
	for (;;) {
		char *chunk = luaL_prepbuffer(&b);
		size_t n = fread(chunk, 1, LUAL_BUFFERSIZE, f);
		luaL_addsize(&b, n);
		total += n;
		if (n < LUAL_BUFFERSIZE || total > INPUT_MAX_BYTES)
			break;
	}
	int failed = ferror(f);
	fclose(f);
	luaL_pushresult(&b);
	if (failed)
		input_raise(L, PROTO_CONFIG_ERROR, "cannot read the %s file '%s'", what, path);
	if (total > INPUT_MAX_BYTES)
		input_raise(L, PROTO_CONFIG_ERROR, "the %s file '%s' is larger than %u MB", what, path,
			    INPUT_MAX_BYTES >> 20);
}

static int is_blank(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r')
			return 0;
	return 1;
}

void input_read_json(lua_State *L, const char *path, const char *what)
{
	push_file(L, path, what);
	size_t len;
	const char *text = lua_tolstring(L, -1, &len);
	if (is_blank(text, len))
		input_raise(L, PROTO_CONFIG_ERROR, "the %s file '%s' is empty", what, path);
	json_decode_push(L, text, len);
	if (lua_isnil(L, -2) && !lua_isnil(L, -1))
		input_raise(L, PROTO_CONFIG_ERROR, "the %s file '%s' is not valid JSON: %s", what, path,
			    lua_tostring(L, -1));
	lua_pop(L, 1);
	lua_remove(L, -2);
}

static int is_array(lua_State *L, int idx)
{
	return lua_istable(L, idx) && (lua_rawlen(L, idx) > 0 || (lua_getmetatable(L, idx) && (lua_pop(L, 1), 1)));
}

static int is_empty_table(lua_State *L, int idx)
{
	lua_pushnil(L);
	if (lua_next(L, idx)) {
		lua_pop(L, 2);
		return 0;
	}
	return 1;
}

/* states[name] = stream_state for one {stream_descriptor, stream_state} object at idx. */
static void add_stream_state(lua_State *L, int states, int idx, const char *where)
{
	if (!lua_istable(L, idx))
		input_raise(L, PROTO_CONFIG_ERROR, "state: %s must be an object", where);
	lua_getfield(L, idx, "stream_descriptor");
	if (!lua_istable(L, -1))
		input_raise(L, PROTO_CONFIG_ERROR, "state: %s has no stream_descriptor", where);
	lua_getfield(L, -1, "name");
	if (lua_type(L, -1) != LUA_TSTRING)
		input_raise(L, PROTO_CONFIG_ERROR, "state: %s has no stream_descriptor.name", where);
	lua_getfield(L, idx, "stream_state");
	if (lua_type(L, -1) == LUA_TLIGHTUSERDATA && !lua_touserdata(L, -1)) {
		/* "stream_state": null, as older platforms write for a stream never synced: no state. */
		lua_pop(L, 3);
		return;
	}
	if (!lua_isnil(L, -1) && !lua_istable(L, -1))
		input_raise(L, PROTO_CONFIG_ERROR, "state: the stream_state of '%s' must be an object",
			    lua_tostring(L, -2));
	/* Two states for one stream: which one the platform meant cannot be known, and keeping either
	 * could skip what the other covers. */
	lua_pushvalue(L, -2);
	if (lua_rawget(L, states) != LUA_TNIL)
		input_raise(L, PROTO_CONFIG_ERROR, "state: stream '%s' has two states; give one per stream",
			    lua_tostring(L, -3));
	lua_pop(L, 1);
	lua_pushvalue(L, -2);
	lua_insert(L, -2);
	lua_rawset(L, states);
	lua_pop(L, 2);
}

static void add_state_message(lua_State *L, int states, int idx, int position);

/* {stream_name: stream_state}. Values are kept whatever their type: the read decides, for the
 * streams it reads, whether one is usable (state.c), and other keys pass through untouched. */
static void add_legacy_blob(lua_State *L, int states, int idx)
{
	lua_pushnil(L);
	while (lua_next(L, idx)) {
		int is_null = lua_type(L, -1) == LUA_TLIGHTUSERDATA && !lua_touserdata(L, -1);
		if (lua_type(L, -2) != LUA_TSTRING || is_null) {
			lua_pop(L, 1);
			continue;
		}
		lua_pushvalue(L, -2);
		lua_insert(L, -2);
		lua_settable(L, states);
	}
}

static void add_global_state(lua_State *L, int states, int idx)
{
	lua_getfield(L, idx, "global");
	if (!lua_istable(L, -1))
		input_raise(L, PROTO_CONFIG_ERROR, "state: a GLOBAL state needs a 'global' object");
	lua_getfield(L, -1, "stream_states");
	int list = lua_gettop(L);
	if (lua_istable(L, list)) {
		lua_Integer n = (lua_Integer)lua_rawlen(L, list);
		for (lua_Integer i = 1; i <= n; i++) {
			lua_rawgeti(L, list, i);
			add_stream_state(L, states, lua_gettop(L), "a global stream_states entry");
			lua_pop(L, 1);
		}
	}
	lua_pop(L, 2);
}

static void add_state_message(lua_State *L, int states, int idx, int position)
{
	char where[64];
	snprintf(where, sizeof where, "entry %d", position);
	if (!lua_istable(L, idx))
		input_raise(L, PROTO_CONFIG_ERROR, "state: %s must be an object", where);
	lua_getfield(L, idx, "type");
	const char *type = lua_tostring(L, -1);
	if (type && !strcmp(type, "STATE")) {
		/* A whole AirbyteMessage was passed: unwrap its state. */
		lua_getfield(L, idx, "state");
		add_state_message(L, states, lua_gettop(L), position);
		lua_pop(L, 2);
		return;
	}
	if (type && !strcmp(type, "GLOBAL")) {
		add_global_state(L, states, idx);
	} else if (!type || !strcmp(type, "LEGACY")) {
		lua_getfield(L, idx, "data");
		if (lua_istable(L, -1))
			add_legacy_blob(L, states, lua_gettop(L));
		lua_pop(L, 1);
	} else if (!strcmp(type, "STREAM")) {
		lua_getfield(L, idx, "stream");
		add_stream_state(L, states, lua_gettop(L), where);
		lua_pop(L, 1);
	} else {
		input_raise(L, PROTO_CONFIG_ERROR, "state: %s has an unknown type '%s'", where, type);
	}
	lua_pop(L, 1);
}

void input_read_state(lua_State *L, const char *path)
{
	lua_newtable(L);
	int states = lua_gettop(L);
	if (!path)
		return;
	push_file(L, path, "state");
	size_t len;
	const char *text = lua_tolstring(L, -1, &len);
	if (is_blank(text, len)) {
		lua_pop(L, 1);
		return;
	}
	json_decode_push(L, text, len);
	if (lua_isnil(L, -2) && !lua_isnil(L, -1))
		input_raise(L, PROTO_CONFIG_ERROR, "the state file '%s' is not valid JSON: %s", path,
			    lua_tostring(L, -1));
	lua_pop(L, 1);
	int root = lua_gettop(L);
	if (lua_isnil(L, root) || (lua_type(L, root) == LUA_TLIGHTUSERDATA && !lua_touserdata(L, root))) {
		lua_settop(L, states);
		return;
	}
	if (!lua_istable(L, root))
		input_raise(L, PROTO_CONFIG_ERROR, "the state file '%s' must hold a list or an object, not a %s", path,
			    luaL_typename(L, root));
	if (is_array(L, root)) {
		lua_Integer n = (lua_Integer)lua_rawlen(L, root);
		for (lua_Integer i = 1; i <= n; i++) {
			lua_rawgeti(L, root, i);
			add_state_message(L, states, lua_gettop(L), (int)i);
			lua_pop(L, 1);
		}
	} else if (!is_empty_table(L, root)) {
		lua_getfield(L, root, "type");
		int typed = lua_type(L, -1) == LUA_TSTRING;
		lua_pop(L, 1);
		if (typed)
			add_state_message(L, states, root, 1);
		else
			add_legacy_blob(L, states, root);
	}
	lua_settop(L, states);
}

static const char *const sync_modes[] = {"full_refresh", "incremental", NULL};

static int one_of(const char *value, const char *const *allowed)
{
	for (; value && *allowed; allowed++)
		if (!strcmp(value, *allowed))
			return 1;
	return 0;
}

void input_check_catalog(lua_State *L, int idx)
{
	idx = lua_absindex(L, idx);
	if (!lua_istable(L, idx))
		input_raise(L, PROTO_CONFIG_ERROR, "the catalog must be a JSON object with 'streams'");
	lua_getfield(L, idx, "streams");
	int streams = lua_gettop(L);
	if (!lua_istable(L, streams))
		input_raise(L, PROTO_CONFIG_ERROR, "the catalog has no 'streams' list");
	lua_Integer n = (lua_Integer)lua_rawlen(L, streams);
	lua_newtable(L);
	int seen = lua_gettop(L);
	for (lua_Integer i = 1; i <= n; i++) {
		lua_rawgeti(L, streams, i);
		if (!lua_istable(L, -1))
			input_raise(L, PROTO_CONFIG_ERROR, "catalog: streams[%d] must be an object", (int)i - 1);
		lua_getfield(L, -1, "stream");
		if (!lua_istable(L, -1))
			input_raise(L, PROTO_CONFIG_ERROR, "catalog: streams[%d] has no 'stream' object", (int)i - 1);
		lua_getfield(L, -1, "name");
		if (lua_type(L, -1) != LUA_TSTRING || lua_rawlen(L, -1) == 0)
			input_raise(L, PROTO_CONFIG_ERROR, "catalog: streams[%d].stream has no name", (int)i - 1);
		const char *name = lua_tostring(L, -1);
		if (strlen(name) != lua_rawlen(L, -1))
			input_raise(L, PROTO_CONFIG_ERROR, "catalog: the name of streams[%d] contains a NUL character",
				    (int)i - 1);
		lua_pushvalue(L, -1);
		if (lua_rawget(L, seen) != LUA_TNIL)
			input_raise(L, PROTO_CONFIG_ERROR,
				    "catalog: stream '%s' is listed twice; its records would be sent twice", name);
		lua_pop(L, 1);
		lua_pushvalue(L, -1);
		lua_pushboolean(L, 1);
		lua_rawset(L, seen);
		lua_getfield(L, -3, "sync_mode");
		const char *mode = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
		if (!one_of(mode, sync_modes))
			input_raise(L, PROTO_CONFIG_ERROR,
				    "catalog: stream '%s' has sync_mode '%s'; it must be full_refresh or incremental",
				    name, mode ? mode : luaL_typename(L, -1));
		lua_pop(L, 4);
	}
	lua_pop(L, 2);
}
