/*
 * paginate: the declared paginators. A stream says `paginator = {type = "link"}` (or "offset",
 * "page", "cursor") and its parse returns records only; the next request is made here from the
 * page's request and answer, the way the API documents its paging.
 */
#include "paginate.h"

#include <lauxlib.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "json.h"
#include "runtime.h"
#include "suggest.h"

static const char *const kinds[] = {"link", "offset", "page", "cursor", NULL};
static const char *const keys_link[] = {"type", NULL};
static const char *const keys_offset[] = {"type", "limit", "offset_param", "limit_param", "start", NULL};
static const char *const keys_page[] = {"type", "size", "page_param", "size_param", "start", NULL};
static const char *const keys_cursor[] = {"type", "path", "param", "into", NULL};

static void check_keys(lua_State *L, int table, const char *where, const char *const *known)
{
	char why[400];
	if (!suggest_known_keys(L, table, known, 0, why, sizeof why))
		luaL_error(L, "%s: %s", where, why);
}

static const char *text_key(lua_State *L, int table, int pins, const char *key, const char *fallback, const char *where)
{
	int type = lua_getfield(L, table, key);
	if (type == LUA_TNIL) {
		lua_pop(L, 1);
		return fallback;
	}
	if (type != LUA_TSTRING || lua_rawlen(L, -1) == 0)
		luaL_error(L, "%s: %s must be a non-empty string", where, key);
	const char *value = lua_tostring(L, -1);
	lua_rawseti(L, pins, (lua_Integer)lua_rawlen(L, pins) + 1);
	return value;
}

static long long count_key(lua_State *L, int table, const char *key, long long fallback, long long minimum,
			   const char *where)
{
	int type = lua_getfield(L, table, key);
	int is_integer = 0;
	long long value = type == LUA_TNIL ? fallback : (long long)lua_tointegerx(L, -1, &is_integer);
	lua_pop(L, 1);
	if (type != LUA_TNIL && (!is_integer || value < minimum))
		luaL_error(L, "%s: %s must be an integer of at least %d", where, key, (int)minimum);
	return value;
}

/* Offset and page paginators differ only in their keys' names and defaults. */
struct numbered {
	const char *const *keys;
	const char *size_key, *param_key, *param_default, *size_param_key, *size_param_default;
	long long start;
	const char *needs; /* the error for a missing size */
};

static const struct numbered NUMBERED[] = {
	{keys_offset, "limit", "offset_param", "offset", "limit_param", "limit", 0,
	 "an offset paginator needs limit (records a page asks for)"},
	{keys_page, "size", "page_param", "page", "size_param", "per_page", 1,
	 "a page paginator needs size (records a page asks for)"},
};

static void read_numbered(lua_State *L, int p, int pins, const char *where, const struct numbered *n,
			  struct paginator_def *out)
{
	check_keys(L, p, where, n->keys);
	out->size = count_key(L, p, n->size_key, 0, 1, where);
	if (!out->size)
		luaL_error(L, "%s: %s", where, n->needs);
	out->param = text_key(L, p, pins, n->param_key, n->param_default, where);
	out->size_param = text_key(L, p, pins, n->size_param_key, n->size_param_default, where);
	out->start = count_key(L, p, "start", n->start, 0, where);
}

void paginate_read_def(lua_State *L, int def, int pins, const char *where, struct paginator_def *out)
{
	memset(out, 0, sizeof *out);
	if (lua_getfield(L, def, "paginator") == LUA_TNIL) {
		lua_pop(L, 1);
		return;
	}
	int p = lua_gettop(L);
	if (!lua_istable(L, p))
		luaL_error(L, "%s: paginator must be a table such as {type = \"link\"}, not a %s", where,
			   luaL_typename(L, p));
	lua_getfield(L, p, "type");
	const char *type = lua_tostring(L, -1);
	int kind = -1;
	for (int k = 0; type && kinds[k]; k++)
		if (!strcmp(type, kinds[k]))
			kind = k;
	if (kind < 0) {
		const char *close = type ? suggest_closest(type, kinds) : NULL;
		luaL_error(L, "%s: type must be \"link\", \"offset\", \"page\" or \"cursor\"%s%s%s", where,
			   close ? " (did you mean " : "", close ? close : "", close ? "?)" : "");
	}
	lua_pop(L, 1);
	out->kind = (enum paginator_kind)(kind + 1);
	switch (out->kind) {
	case PAGINATOR_LINK: check_keys(L, p, where, keys_link); break;
	case PAGINATOR_OFFSET: read_numbered(L, p, pins, where, &NUMBERED[0], out); break;
	case PAGINATOR_PAGE: read_numbered(L, p, pins, where, &NUMBERED[1], out); break;
	case PAGINATOR_CURSOR: {
		check_keys(L, p, where, keys_cursor);
		out->path = text_key(L, p, pins, "path", NULL, where);
		out->param = text_key(L, p, pins, "param", NULL, where);
		if (!out->path || !out->param)
			luaL_error(L,
				   "%s: a cursor paginator needs path (where the body holds the next "
				   "token) and param (the name it is sent under)",
				   where);
		const char *into = text_key(L, p, pins, "into", "query", where);
		if (strcmp(into, "query") && strcmp(into, "json"))
			luaL_error(L, "%s: into must be \"query\" or \"json\", not \"%s\"", where, into);
		out->into_json = !strcmp(into, "json");
		break;
	}
	case PAGINATOR_NONE: break;
	}
	lua_pop(L, 1);
}

/* Pushes url with name=value in its query: an earlier value of name replaced, else appended. */
static void push_url_with_param(lua_State *L, const char *url, const char *name, const char *value)
{
	struct runtime *rt = runtime_of(L);
	char *escaped_name = http_escape(&rt->http, name, strlen(name));
	char *escaped_value = escaped_name ? http_escape(&rt->http, value, strlen(value)) : NULL;
	if (!escaped_value) {
		curl_free(escaped_name);
		luaL_error(L, "out of memory");
	}
	struct buf pair = {0};
	buf_printf(&pair, "%s=%s", escaped_name, escaped_value);
	buf_clear(&rt->lua_scratch);
	http_url_with_pairs(&rt->lua_scratch, url, buf_cstr(&pair), escaped_name);
	buf_free(&pair);
	curl_free(escaped_name);
	curl_free(escaped_value);
	lua_pushlstring(L, rt->lua_scratch.data ? rt->lua_scratch.data : "", rt->lua_scratch.len);
}

/* Sets prepared.url's name=value (a number). */
static void set_url_param(lua_State *L, int prepared, const char *name, long long value)
{
	char text[32];
	snprintf(text, sizeof text, "%lld", value);
	lua_getfield(L, prepared, "url");
	push_url_with_param(L, lua_tostring(L, -1), name, text);
	lua_setfield(L, prepared, "url");
	lua_pop(L, 1);
}

void paginate_first(lua_State *L, const struct paginator_def *p, int prepared_idx)
{
	int prepared = lua_absindex(L, prepared_idx);
	if (p->kind != PAGINATOR_OFFSET && p->kind != PAGINATOR_PAGE)
		return;
	set_url_param(L, prepared, p->param, p->start);
	if (p->size_param)
		set_url_param(L, prepared, p->size_param, p->size);
}

/* The number value of name=... in url's query, or fallback. */
static long long url_param(const char *url, const char *name, long long fallback)
{
	const char *q = strchr(url, '?');
	size_t len = strlen(name);
	for (const char *p = q; p && *p;) {
		p++;
		if (!strncmp(p, name, len) && p[len] == '=') {
			long long value = 0;
			if (sscanf(p + len + 1, "%lld", &value) == 1)
				return value;
			return fallback;
		}
		p = strpbrk(p, "&#");
		if (p && *p == '#')
			break;
	}
	return fallback;
}

/* The URL of rel="next" in a Link header (RFC 8288): <url>; rel="next", <url>; rel="last". */
static int push_link_next(lua_State *L, const struct http_response *resp)
{
	char link[8192];
	if (http_header(resp, "Link", link, sizeof link))
		return 0;
	for (char *p = link; (p = strchr(p, '<'));) {
		char *close = strchr(p, '>');
		if (!close)
			return 0;
		char *next_entry = strchr(close, ',');
		size_t params_len = next_entry ? (size_t)(next_entry - close) : strlen(close);
		char params[512];
		snprintf(params, sizeof params, "%.*s", (int)params_len, close + 1);
		for (char *c = params; *c; c++)
			*c = (char)(*c == '\'' ? '"' : *c);
		if (strstr(params, "rel=\"next\"") || strstr(params, "rel=next") || strstr(params, " next\"") ||
		    strstr(params, "\"next ")) {
			lua_pushlstring(L, p + 1, (size_t)(close - p - 1));
			return 1;
		}
		p = close + 1;
	}
	return 0;
}

/* Pushes the value at the dotted path in response.body, or nil. */
static void push_body_path(lua_State *L, int response, const char *path)
{
	lua_getfield(L, response, "body");
	for (const char *p = path; *p && !lua_isnil(L, -1);) {
		const char *dot = strchr(p, '.');
		size_t len = dot ? (size_t)(dot - p) : strlen(p);
		if (!lua_istable(L, -1)) {
			lua_pop(L, 1);
			lua_pushnil(L);
			break;
		}
		lua_pushlstring(L, p, len);
		lua_gettable(L, -2);
		lua_remove(L, -2);
		p += len + (dot != NULL);
	}
}

/* A request spec like the prepared one, for the next page: its url, method and body. */
static void push_spec_from(lua_State *L, int prepared)
{
	lua_createtable(L, 0, 4);
	static const char *const copied[] = {"url", "method", "idempotent", "auth", NULL};
	for (const char *const *k = copied; *k; k++) {
		lua_getfield(L, prepared, *k);
		lua_setfield(L, -2, *k);
	}
	if (lua_getfield(L, prepared, "body") != LUA_TNIL) {
		lua_setfield(L, -2, "body");
		lua_getfield(L, prepared, "content_type");
		lua_setfield(L, -2, "content_type");
	} else {
		lua_pop(L, 1);
	}
}

void paginate_push_next(lua_State *L, const struct paginator_def *p, int prepared_idx, int response_idx,
			const struct http_response *resp)
{
	int prepared = lua_absindex(L, prepared_idx);
	int response = lua_absindex(L, response_idx);
	switch (p->kind) {
	case PAGINATOR_NONE: lua_pushnil(L); return;
	case PAGINATOR_LINK:
		if (!push_link_next(L, resp))
			lua_pushnil(L);
		return;
	case PAGINATOR_OFFSET:
	case PAGINATOR_PAGE: {
		push_spec_from(L, prepared);
		int spec = lua_gettop(L);
		lua_getfield(L, prepared, "url");
		long long at = url_param(lua_tostring(L, -1), p->param, p->start);
		lua_pop(L, 1);
		set_url_param(L, spec, p->param, at + (p->kind == PAGINATOR_OFFSET ? p->size : 1));
		return;
	}
	case PAGINATOR_CURSOR: {
		push_body_path(L, response, p->path);
		if (lua_isnil(L, -1) || lua_toboolean(L, -1) == 0 ||
		    (lua_type(L, -1) == LUA_TSTRING && lua_rawlen(L, -1) == 0) ||
		    (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER)) {
			lua_pop(L, 1);
			lua_pushnil(L);
			return;
		}
		int token = lua_gettop(L);
		push_spec_from(L, prepared);
		int spec = lua_gettop(L);
		if (!p->into_json) {
			lua_getfield(L, spec, "url");
			push_url_with_param(L, lua_tostring(L, -1), p->param, lua_tostring(L, token));
			lua_setfield(L, spec, "url");
			lua_pop(L, 1);
		} else {
			/* The page's JSON body again, with the token under param. */
			lua_getfield(L, prepared, "body");
			size_t len = 0;
			const char *text = lua_tolstring(L, -1, &len);
			enum json_decoded decoded = text ? json_decode_push(L, text, len) : JSON_INVALID;
			if (text)
				lua_pop(L, 1); /* the decoder's second value */
			if (decoded != JSON_DECODED || !lua_istable(L, -1))
				luaL_error(L, "paginator: the request's body is not a JSON object, so the cursor "
					      "cannot go into it (into = \"query\"?)");
			lua_pushvalue(L, token);
			lua_setfield(L, -2, p->param);
			lua_setfield(L, spec, "json");
			lua_pop(L, 1);
			lua_pushnil(L);
			lua_setfield(L, spec, "body");
			lua_pushnil(L);
			lua_setfield(L, spec, "content_type");
		}
		lua_remove(L, token);
		return;
	}
	}
	lua_pushnil(L);
}

int paginate_was_last(const struct paginator_def *p, size_t count)
{
	return (p->kind == PAGINATOR_OFFSET || p->kind == PAGINATOR_PAGE) && count < (size_t)p->size;
}
