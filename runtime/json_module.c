/*
 * json_module: the Lua `json` module: json.decode (json_decode.c), json.encode (json.c's exact
 * writer), json.array and json.object (marks for empty tables), json.null.
 */
#include <lauxlib.h>

#include "json.h"

/* json.decode(text) -> value | nil, errmsg */
static int json_lua_decode(lua_State *L)
{
	size_t len;
	const char *text = luaL_checklstring(L, 1, &len);
	json_decode_push(L, text, len);
	if (lua_isnil(L, -2) && !lua_isnil(L, -1))
		return 2;
	lua_pop(L, 1);
	return 1;
}

/* json.encode(value) -> text | raises on values JSON cannot hold */
static int json_lua_encode(lua_State *L)
{
	luaL_checkany(L, 1);
	struct buf out = {0};
	char err[128];
	if (json_encode(L, 1, &out, err, sizeof err)) {
		buf_free(&out);
		return luaL_error(L, "json.encode: %s", err);
	}
	lua_pushlstring(L, out.data ? out.data : "", out.len);
	buf_free(&out);
	return 1;
}

/* json.array([t]) -> t, marked so that it is written as an array even when empty */
static int json_lua_array(lua_State *L)
{
	if (lua_isnoneornil(L, 1)) {
		lua_settop(L, 0);
		lua_newtable(L);
	}
	luaL_checktype(L, 1, LUA_TTABLE);
	lua_settop(L, 1);
	json_mark_array(L, 1);
	return 1;
}

/* json.object([t]) -> t, unmarked, so that it is written as an object when empty */
static int json_lua_object(lua_State *L)
{
	if (lua_isnoneornil(L, 1)) {
		lua_settop(L, 0);
		lua_newtable(L);
	}
	luaL_checktype(L, 1, LUA_TTABLE);
	lua_settop(L, 1);
	lua_pushnil(L);
	lua_setmetatable(L, 1);
	return 1;
}

int json_open(lua_State *L)
{
	static const luaL_Reg functions[] = {
		{"decode", json_lua_decode},
		{"encode", json_lua_encode},
		{"array", json_lua_array},
		{"object", json_lua_object},
		{NULL, NULL},
	};
	luaL_newmetatable(L, JSON_ARRAY_MT);
	lua_pop(L, 1);
	luaL_newlib(L, functions);
	lua_pushlightuserdata(L, NULL);
	lua_setfield(L, -2, "null");
	return 1;
}
