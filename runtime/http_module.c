/*
 * http_module: the Lua `http` module. Synchronous calls on the runtime's client (http.c), so that
 * scripts share its timeouts, limits and retry policy. Responses are collected in C buffers owned
 * by the runtime, not by the Lua call, so a Lua error mid-call leaks nothing.
 */
#include <ctype.h>
#include <lauxlib.h>
#include <string.h>

#include "http.h"
#include "runtime.h"
#include "secrets.h"

/* Servers refuse far smaller headers; a bigger one is a config mistake, not a network fault. */
#define HEADER_MAX_BYTES (16 * 1024)

/* Builds the header list from opts.headers; the list is anchored in a userdata so an error frees it. */
struct header_list {
	struct curl_slist *list;
};

static int header_list_gc(lua_State *L)
{
	struct header_list *h = lua_touserdata(L, 1);
	curl_slist_free_all(h->list);
	h->list = NULL;
	return 0;
}

static struct header_list *push_header_list(lua_State *L, int opts_idx)
{
	struct header_list *h = lua_newuserdatauv(L, sizeof *h, 0);
	h->list = NULL;
	if (luaL_newmetatable(L, "source_lua.http.headers")) {
		lua_pushcfunction(L, header_list_gc);
		lua_setfield(L, -2, "__gc");
	}
	lua_setmetatable(L, -2);
	if (lua_isnoneornil(L, opts_idx))
		return h;
	luaL_checktype(L, opts_idx, LUA_TTABLE);
	if (lua_getfield(L, opts_idx, "headers") == LUA_TTABLE) {
		lua_pushnil(L);
		while (lua_next(L, -2)) {
			const char *name = luaL_tolstring(L, -2, NULL);
			const char *value = luaL_tolstring(L, -2, NULL);
			if (strpbrk(name, "\r\n:") || strpbrk(value, "\r\n"))
				luaL_error(L, "http: header '%s' contains a newline or a colon", name);
			if (strlen(name) + strlen(value) > HEADER_MAX_BYTES)
				luaL_error(L, "http: header '%s' is longer than %d bytes", name, HEADER_MAX_BYTES);
			lua_pushfstring(L, "%s: %s", name, value);
			struct curl_slist *grown = curl_slist_append(h->list, lua_tostring(L, -1));
			if (!grown)
				luaL_error(L, "http: out of memory");
			h->list = grown;
			lua_pop(L, 4);
		}
	}
	lua_pop(L, 1);
	return h;
}

static int push_header_list_from_arg(lua_State *L)
{
	push_header_list(L, 1);
	return 1;
}

int http_push_headers(lua_State *L, int opts_idx)
{
	opts_idx = lua_absindex(L, opts_idx);
	lua_pushcfunction(L, push_header_list_from_arg);
	lua_pushvalue(L, opts_idx);
	return lua_pcall(L, 1, 1, 0);
}

const struct curl_slist *http_header_list(lua_State *L, int idx)
{
	struct header_list *h = luaL_testudata(L, idx, "source_lua.http.headers");
	return h ? h->list : NULL;
}

/* headers["Link"] finds headers.link: names are stored lower-case, and a key that is not found
 * is looked up again lower-cased. */
static int headers_index(lua_State *L)
{
	if (lua_type(L, 2) != LUA_TSTRING)
		return 0;
	size_t len;
	const char *key = lua_tolstring(L, 2, &len);
	luaL_Buffer lower;
	luaL_buffinit(L, &lower);
	for (size_t i = 0; i < len; i++)
		luaL_addchar(&lower, (char)tolower((unsigned char)key[i]));
	luaL_pushresult(&lower);
	lua_rawget(L, 1);
	return 1;
}

void http_push_response_headers(lua_State *L, const struct http_response *resp)
{
	lua_newtable(L);
	int headers = lua_gettop(L);
	size_t pos = 0;
	struct http_header_line line;
	while (http_header_next(resp, &pos, &line)) {
		luaL_Buffer name;
		luaL_buffinit(L, &name);
		for (size_t i = 0; i < line.name_len; i++)
			luaL_addchar(&name, (char)tolower((unsigned char)line.name[i]));
		luaL_pushresult(&name);
		/* A field sent twice (two Link lines) is one value joined with ", " (RFC 9110, 5.3). */
		lua_pushvalue(L, -1);
		if (lua_rawget(L, headers) == LUA_TSTRING) {
			lua_pushliteral(L, ", ");
			lua_pushlstring(L, line.value, line.value_len);
			lua_concat(L, 3);
		} else {
			lua_pop(L, 1);
			lua_pushlstring(L, line.value, line.value_len);
		}
		lua_rawset(L, headers);
	}
	if (luaL_newmetatable(L, "source_lua.http.response_headers")) {
		lua_pushcfunction(L, headers_index);
		lua_setfield(L, -2, "__index");
	}
	lua_setmetatable(L, headers);
}

static int opt_retries(lua_State *L, int opts_idx)
{
	if (lua_isnoneornil(L, opts_idx))
		return 1;
	lua_getfield(L, opts_idx, "retry");
	int retry = lua_isnil(L, -1) ? 1 : lua_toboolean(L, -1);
	lua_pop(L, 1);
	return retry;
}

/* http.get(url [, {headers = {...}, retry = true}]) -> status, body, headers | nil, errmsg */
static int http_lua_get(lua_State *L)
{
	const char *url = luaL_checkstring(L, 1);
	/* The options are optional: slot 2 holds them or nil, not the header list pushed next. */
	lua_settop(L, 2);
	struct header_list *headers = push_header_list(L, 2);
	int retry = opt_retries(L, 2);
	struct runtime *rt = runtime_of(L);
	struct http_response *resp = &rt->lua_response;
	struct http_retry r;
	http_retry_start(&r);
	char why[CURL_ERROR_SIZE + 64];
	for (;;) {
		http_perform(&rt->http, url, headers->list, resp);
		if (!retry || !http_is_retryable(resp))
			break;
		http_describe_failure(resp, why, sizeof why);
		if (http_retry_wait(&rt->http, &r, resp, why, rt->stream))
			break;
	}
	/* No answer, or one cut short (the connection dropped, the size cap): a status with part of
	 * a body would be taken for the whole. */
	if (resp->code != CURLE_OK) {
		http_describe_failure(resp, why, sizeof why);
		buf_clear(&rt->lua_scratch);
		secrets_mask_into(&rt->secrets, &rt->lua_scratch, why, strlen(why));
		lua_pushnil(L);
		lua_pushlstring(L, rt->lua_scratch.data, rt->lua_scratch.len);
		return 2;
	}
	lua_pushinteger(L, resp->status);
	lua_pushlstring(L, resp->body.data ? resp->body.data : "", resp->body.len);
	http_push_response_headers(L, resp);
	return 3;
}

/* http.escape(text) -> text percent-encoded for a URL path segment or query value */
static int http_lua_escape(lua_State *L)
{
	size_t len;
	const char *s = luaL_checklstring(L, 1, &len);
	char *escaped = http_escape(&runtime_of(L)->http, s, len);
	if (!escaped)
		return luaL_error(L, "http.escape: out of memory");
	lua_pushstring(L, escaped);
	curl_free(escaped);
	return 1;
}

int http_open(lua_State *L)
{
	static const luaL_Reg functions[] = {
		{"get", http_lua_get},
		{"escape", http_lua_escape},
		{NULL, NULL},
	};
	luaL_newlib(L, functions);
	return 1;
}
