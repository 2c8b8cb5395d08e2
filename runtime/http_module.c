/*
 * http_module: the Lua `http` module. Synchronous calls on the runtime's client (http.c), so that
 * scripts share its timeouts, limits and retry policy. Responses are collected in C buffers owned
 * by the runtime, not by the Lua call, so a Lua error mid-call leaks nothing.
 */
#include <ctype.h>
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http.h"
#include "json.h"
#include "runtime.h"
#include "date.h"
#include "secrets.h"
#include "suggest.h"

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

/* ---- requests as tables ---- */

static const char *const REQUEST_KEYS[] = {"url",  "method", "query", "headers",    "body", "content_type",
					   "json", "form",   "retry", "idempotent", "auth", NULL};
static const char *const METHODS[] = {"GET", "POST", "PUT", "PATCH", "DELETE", NULL};

static void check_request_keys(lua_State *L, int spec)
{
	char why[400];
	if (!suggest_known_keys(L, spec, REQUEST_KEYS, 0, why, sizeof why))
		luaL_error(L, "request: %s", why);
}

/* Appends one "name=value" to b, both percent-encoded; a list value gives one pair an element. */
static void add_pair(lua_State *L, luaL_Buffer *b, const char *what, const char *name, int value)
{
	struct http_client *c = &runtime_of(L)->http;
	if (lua_type(L, value) == LUA_TTABLE) {
		lua_Integer n = (lua_Integer)lua_rawlen(L, value);
		for (lua_Integer i = 1; i <= n; i++) {
			/* One level: a list of lists (or a list holding itself) has no query spelling. */
			if (lua_rawgeti(L, value, i) == LUA_TTABLE)
				luaL_error(L,
					   "request: %s.%s holds a table (a list of strings, numbers or booleans only)",
					   what, name);
			add_pair(L, b, what, name, lua_gettop(L));
			lua_pop(L, 1);
		}
		return;
	}
	const char *text = NULL;
	if (lua_type(L, value) == LUA_TSTRING || lua_type(L, value) == LUA_TNUMBER)
		text = lua_tostring(L, value); /* integers stay integers: 32923, never 32923.0 */
	else if (lua_type(L, value) == LUA_TBOOLEAN)
		text = lua_toboolean(L, value) ? "true" : "false";
	else
		luaL_error(L, "request: %s.%s is a %s (strings, numbers, booleans or lists of them)", what, name,
			   luaL_typename(L, value));
	if (luaL_bufflen(b) > 0)
		luaL_addchar(b, '&');
	const char *parts[2] = {name, text};
	for (int i = 0; i < 2; i++) {
		char *escaped = http_escape(c, parts[i], strlen(parts[i]));
		if (!escaped)
			luaL_error(L, "request: out of memory");
		lua_pushstring(L, escaped); /* on the stack before it may raise, so the copy is freed */
		curl_free(escaped);
		luaL_addvalue(b);
		if (i == 0)
			luaL_addchar(b, '=');
	}
}

static int compare_names(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Sorts the list of strings at idx in byte order, in C: the script's table.sort is the script's. */
static void sort_names(lua_State *L, int idx)
{
	size_t n = lua_rawlen(L, idx);
	if (n < 2)
		return;
	const char **sorted = lua_newuserdatauv(L, n * sizeof *sorted, 0); /* collected, even on error */
	for (size_t i = 0; i < n; i++) {
		lua_rawgeti(L, idx, (lua_Integer)i + 1);
		sorted[i] = lua_tostring(L, -1); /* kept alive by the list until it is rewritten below */
		lua_pop(L, 1);
	}
	qsort(sorted, n, sizeof *sorted, compare_names);
	lua_createtable(L, (int)n, 0);
	for (size_t i = 0; i < n; i++) {
		lua_pushstring(L, sorted[i]);
		lua_rawseti(L, -2, (lua_Integer)i + 1);
	}
	lua_replace(L, idx);
	lua_pop(L, 1);
}

/* Pushes the table at idx encoded as name=value pairs joined by '&', in name order. */
static void push_encoded_pairs(lua_State *L, int idx, const char *what)
{
	idx = lua_absindex(L, idx);
	lua_newtable(L); /* the names, sorted */
	int names = lua_gettop(L);
	lua_pushnil(L);
	while (lua_next(L, idx)) {
		lua_pop(L, 1);
		if (lua_type(L, -1) != LUA_TSTRING)
			luaL_error(L, "request: %s has a key of type %s (names are strings)", what,
				   luaL_typename(L, -1));
		lua_pushvalue(L, -1);
		lua_rawseti(L, names, (lua_Integer)lua_rawlen(L, names) + 1);
	}
	sort_names(L, names);
	luaL_Buffer b;
	luaL_buffinit(L, &b);
	lua_Integer n = (lua_Integer)lua_rawlen(L, names);
	for (lua_Integer i = 1; i <= n; i++) {
		lua_rawgeti(L, names, i);
		const char *name = lua_tostring(L, -1);
		lua_pushvalue(L, -1);
		lua_rawget(L, idx);
		add_pair(L, &b, what, name, lua_gettop(L));
		lua_pop(L, 2);
	}
	luaL_pushresult(&b);
	lua_remove(L, names);
}

/* url with the encoded query appended ("?" or "&" as the URL needs). */
static void push_url_with_query(lua_State *L, const char *url, int query)
{
	push_encoded_pairs(L, query, "query");
	struct runtime *rt = runtime_of(L);
	buf_clear(&rt->lua_scratch);
	http_url_with_pairs(&rt->lua_scratch, url, lua_tostring(L, -1), NULL);
	lua_pop(L, 1);
	lua_pushlstring(L, rt->lua_scratch.data ? rt->lua_scratch.data : "", rt->lua_scratch.len);
}

static int has_header(lua_State *L, int spec, const char *name)
{
	if (lua_getfield(L, spec, "headers") != LUA_TTABLE) {
		lua_pop(L, 1);
		return 0;
	}
	int found = 0;
	lua_pushnil(L);
	while (!found && lua_next(L, -2)) {
		lua_pop(L, 1);
		found = lua_type(L, -1) == LUA_TSTRING && !strcasecmp(lua_tostring(L, -1), name);
	}
	lua_pop(L, found ? 2 : 1);
	return found;
}

/* The body and its content type from exactly one of body, json and form; pushes body (or nil)
 * and content type (or nil). */
static void push_body(lua_State *L, int spec)
{
	int given = 0, which = 0;
	static const char *const forms[] = {"body", "json", "form"};
	for (int i = 0; i < 3; i++) {
		if (lua_getfield(L, spec, forms[i]) != LUA_TNIL) {
			given++;
			which = i;
		}
		lua_pop(L, 1);
	}
	if (given > 1)
		luaL_error(L, "request: give one of body, json and form, not %d", given);
	if (!given) {
		lua_pushnil(L);
		lua_pushnil(L);
		return;
	}
	lua_getfield(L, spec, forms[which]);
	if (which == 0) {
		if (lua_type(L, -1) != LUA_TSTRING)
			luaL_error(L, "request: body is a %s, not a string (json = {...} encodes a table)",
				   luaL_typename(L, -1));
		if (lua_getfield(L, spec, "content_type") == LUA_TNIL) {
			lua_pop(L, 1);
			lua_pushliteral(L, "application/octet-stream");
		} else if (lua_type(L, -1) != LUA_TSTRING) {
			luaL_error(L, "request: content_type is a %s, not a string", luaL_typename(L, -2));
		}
		return;
	}
	if (which == 1) {
		struct buf out = {0};
		char err[128];
		if (json_encode(L, lua_gettop(L), &out, err, sizeof err)) {
			buf_free(&out);
			luaL_error(L, "request: json: %s", err);
		}
		lua_pushlstring(L, out.data ? out.data : "", out.len);
		buf_free(&out);
		lua_remove(L, -2);
		lua_pushliteral(L, "application/json");
		return;
	}
	if (lua_type(L, -1) != LUA_TTABLE)
		luaL_error(L, "request: form is a %s, not a table", luaL_typename(L, -1));
	push_encoded_pairs(L, -1, "form");
	lua_remove(L, -2);
	lua_pushliteral(L, "application/x-www-form-urlencoded");
}

/* Arguments: spec (a URL or a request table), opts (nil or a table of the same keys but url),
 * default method. Returns the prepared request {url, method, headers = <list>, body, idempotent,
 * retry}. */
static int prepare_request(lua_State *L)
{
	const char *default_method = lua_tostring(L, 3);
	if (lua_type(L, 1) == LUA_TSTRING) {
		lua_newtable(L);
		if (lua_type(L, 2) == LUA_TTABLE) {
			lua_pushnil(L);
			while (lua_next(L, 2)) {
				lua_pushvalue(L, -2);
				lua_insert(L, -2);
				lua_rawset(L, 4);
			}
			lua_getfield(L, 4, "url");
			if (!lua_isnil(L, -1))
				luaL_error(L, "request: the URL is given twice (as an argument and as url)");
			lua_pop(L, 1);
		} else if (!lua_isnil(L, 2)) {
			luaL_error(L, "request: the options are a %s, not a table", luaL_typename(L, 2));
		}
		lua_pushvalue(L, 1);
		lua_setfield(L, 4, "url");
		lua_replace(L, 1);
	} else if (lua_type(L, 1) != LUA_TTABLE) {
		luaL_error(L, "request: a URL or a request table, not a %s", luaL_typename(L, 1));
	}
	int spec = 1;
	check_request_keys(L, spec);
	lua_createtable(L, 0, 6);
	int out = lua_gettop(L);
	if (lua_getfield(L, spec, "url") != LUA_TSTRING)
		luaL_error(L, "request: url is %s, not a string", lua_isnil(L, -1) ? "missing" : luaL_typename(L, -1));
	if (lua_getfield(L, spec, "query") == LUA_TTABLE)
		push_url_with_query(L, lua_tostring(L, -2), lua_gettop(L));
	else if (!lua_isnil(L, -1))
		luaL_error(L, "request: query is a %s, not a table", luaL_typename(L, -1));
	else
		lua_pushvalue(L, -2);
	lua_setfield(L, out, "url");
	lua_pop(L, 2); /* the url and the query as given */

	const char *method = default_method;
	if (lua_getfield(L, spec, "method") != LUA_TNIL) {
		if (lua_type(L, -1) != LUA_TSTRING)
			luaL_error(L, "request: method is a %s, not a string", luaL_typename(L, -1));
		char upper[8] = "";
		size_t len;
		const char *given = lua_tolstring(L, -1, &len);
		for (size_t i = 0; i < len && len < sizeof upper; i++)
			upper[i] = (char)toupper((unsigned char)given[i]);
		method = NULL;
		for (const char *const *m = METHODS; *m && !method; m++)
			if (len < sizeof upper && !strcmp(upper, *m))
				method = *m;
		if (!method)
			luaL_error(L, "request: method '%s' (GET, POST, PUT, PATCH or DELETE)", given);
	}
	lua_pop(L, 1);
	lua_pushstring(L, method);
	lua_setfield(L, out, "method");

	push_body(L, spec);
	if (!lua_isnil(L, -2) && !strcmp(method, "GET"))
		luaL_error(L, "request: a GET has no body (method = \"POST\"?)");
	const char *content_type = lua_tostring(L, -1);
	struct header_list *h = push_header_list(L, spec);
	if (content_type && !has_header(L, spec, "Content-Type")) {
		lua_pushfstring(L, "Content-Type: %s", content_type);
		struct curl_slist *grown = curl_slist_append(h->list, lua_tostring(L, -1));
		if (!grown)
			luaL_error(L, "request: out of memory");
		h->list = grown;
		lua_pop(L, 1);
	}
	lua_setfield(L, out, "headers");
	lua_pop(L, 1);
	lua_setfield(L, out, "body");

	int idempotent = strcmp(method, "POST") && strcmp(method, "PATCH");
	if (lua_getfield(L, spec, "idempotent") != LUA_TNIL) {
		if (!lua_isboolean(L, -1))
			luaL_error(L, "request: idempotent is a %s, not a boolean", luaL_typename(L, -1));
		idempotent = lua_toboolean(L, -1);
	}
	lua_pop(L, 1);
	lua_pushboolean(L, idempotent);
	lua_setfield(L, out, "idempotent");
	lua_pushboolean(L, opt_retries(L, spec));
	lua_setfield(L, out, "retry");
	int auth = lua_getfield(L, spec, "auth");
	if (auth != LUA_TNIL && auth != LUA_TBOOLEAN)
		luaL_error(L, "request: auth is a %s, not a boolean (false: without the script's auth)",
			   luaL_typename(L, -1));
	lua_pushboolean(L, auth == LUA_TNIL || lua_toboolean(L, -1));
	lua_setfield(L, out, "auth");
	lua_settop(L, out);
	return 1;
}

int http_push_request(lua_State *L, int spec_idx, int opts_idx, const char *default_method)
{
	spec_idx = lua_absindex(L, spec_idx);
	opts_idx = opts_idx ? lua_absindex(L, opts_idx) : 0;
	lua_pushcfunction(L, prepare_request);
	lua_pushvalue(L, spec_idx);
	if (opts_idx)
		lua_pushvalue(L, opts_idx);
	else
		lua_pushnil(L);
	lua_pushstring(L, default_method);
	return lua_pcall(L, 3, 1, 0);
}

int http_request_of(lua_State *L, int prepared_idx, struct http_request *req)
{
	prepared_idx = lua_absindex(L, prepared_idx);
	lua_getfield(L, prepared_idx, "url");
	req->url = lua_tostring(L, -1);
	lua_getfield(L, prepared_idx, "method");
	req->method = lua_tostring(L, -1);
	lua_getfield(L, prepared_idx, "headers");
	req->headers = http_header_list(L, -1);
	size_t len = 0;
	lua_getfield(L, prepared_idx, "body");
	req->body = lua_tolstring(L, -1, &len);
	req->body_len = len;
	lua_getfield(L, prepared_idx, "auth");
	req->with_auth = lua_toboolean(L, -1);
	lua_getfield(L, prepared_idx, "retry");
	req->no_retry = !lua_toboolean(L, -1);
	req->credentials = NULL;
	lua_getfield(L, prepared_idx, "idempotent");
	int idempotent = lua_toboolean(L, -1);
	/* The strings stay alive in the prepared table, which the caller holds. */
	lua_pop(L, 7);
	return idempotent;
}

/* nil and why, masked: the script may print it. */
static int push_failure(lua_State *L, const char *why)
{
	struct runtime *rt = runtime_of(L);
	buf_clear(&rt->lua_scratch);
	secrets_mask_into(&rt->secrets, &rt->lua_scratch, why, strlen(why));
	lua_pushnil(L);
	lua_pushlstring(L, rt->lua_scratch.data, rt->lua_scratch.len);
	return 2;
}

/* The answer of one prepared request, with the runtime's retries unless it says retry = false. */
static int perform_prepared(lua_State *L, int prepared)
{
	struct http_request req;
	int idempotent = http_request_of(L, prepared, &req);
	lua_getfield(L, prepared, "retry");
	int retry = lua_toboolean(L, -1);
	lua_pop(L, 1);
	struct runtime *rt = runtime_of(L);
	struct http_response *resp = &rt->lua_response;
	struct http_retry r;
	http_retry_start(&r);
	char why[CURL_ERROR_SIZE + 1100];
	int refreshed = 0;
	for (;;) {
		unsigned generation;
		enum proto_failure failure;
		if (auth_prepare(rt, &req, &generation, &failure, why, sizeof why))
			return push_failure(L, why);
		const char *place = rt->stream ? rt->stream : "http";
		trace_request(rt, place, NULL, &req);
		int64_t sent = date_now_ms();
		http_perform(&rt->http, &req, resp);
		trace_response(rt, place, NULL, resp, date_now_ms() - sent);
		if (resp->code == CURLE_OK && resp->status == 401 && auth_retry_after_401(rt, generation, &refreshed))
			continue;
		int again = idempotent ? http_is_retryable(resp) : http_is_retryable_once_sent(resp);
		if (!retry || !again)
			break;
		http_describe_failure(resp, why, sizeof why);
		if (http_retry_wait(&rt->http, &r, resp, why, rt->stream))
			break;
	}
	/* No answer, or one cut short (the connection dropped, the size cap): a status with part of
	 * a body would be taken for the whole. */
	if (resp->code != CURLE_OK) {
		http_describe_failure(resp, why, sizeof why);
		return push_failure(L, why);
	}
	lua_pushinteger(L, resp->status);
	lua_pushlstring(L, resp->body.data ? resp->body.data : "", resp->body.len);
	http_push_response_headers(L, resp);
	return 3;
}

static int request_with(lua_State *L, const char *default_method)
{
	lua_settop(L, 2);
	if (http_push_request(L, 1, 2, default_method) != LUA_OK)
		return lua_error(L); /* the message, raised in the script's call */
	return perform_prepared(L, lua_gettop(L));
}

/* http.request(url | {url, method, query, headers, body | json | form, retry, idempotent})
 * -> status, body, headers | nil, errmsg */
static int http_lua_request(lua_State *L)
{
	if (!lua_isnoneornil(L, 2))
		return luaL_error(L, "http.request takes one argument: a URL or a request table");
	return request_with(L, "GET");
}

/* http.get(url [, opts]) -> status, body, headers | nil, errmsg */
static int http_lua_get(lua_State *L)
{
	luaL_checkstring(L, 1);
	return request_with(L, "GET");
}

/* http.post(url [, opts]) -> status, body, headers | nil, errmsg */
static int http_lua_post(lua_State *L)
{
	luaL_checkstring(L, 1);
	return request_with(L, "POST");
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
		{"request", http_lua_request}, {"get", http_lua_get}, {"post", http_lua_post},
		{"escape", http_lua_escape},   {NULL, NULL},
	};
	luaL_newlib(L, functions);
	return 1;
}
