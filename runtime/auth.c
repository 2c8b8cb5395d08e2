/*
 * auth: declared credentials. A script says which kind and which config fields hold them
 * ("config.token"); the runtime adds them to each request as it is sent (http.c), so no URL,
 * header or error the script sees holds them, and every value is masked in what is printed.
 *
 * OAuth2 (RFC 6749 section 4.4 client credentials, section 6 refresh token): the token endpoint is
 * asked by a form POST; the access token is cached until shortly before expires_in runs out and
 * fetched anew once when an API answers 401. A refresh token the server rotates is kept and
 * written back to the platform in a CONTROL message (connectorConfig), since the old one stops
 * working and the next sync would otherwise start with it.
 */
#include "auth.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "date.h"
#include "host.h"
#include "json.h"
#include "runtime.h"
#include "secrets.h"
#include "suggest.h"

/* Renew a token this long before it expires, or a tenth of its lifetime when that is shorter: a
 * request sent just before the end arrives after it. */
#define REFRESH_MARGIN_MS (60 * 1000)

static const char *const KINDS[] = {"api_key", "bearer", "basic", "oauth2", NULL};
static const char *const API_KEY_KEYS[] = {"type", "key", "header", "query", "prefix", NULL};
static const char *const BEARER_KEYS[] = {"type", "token", NULL};
static const char *const BASIC_KEYS[] = {"type", "username", "password", NULL};
static const char *const OAUTH2_KEYS[] = {"type",          "grant", "token_url",   "client_id", "client_secret",
					  "refresh_token", "scope", "client_auth", NULL};
static const char *const GRANTS[] = {"refresh_token", "client_credentials", NULL};
static const char *const CLIENT_AUTHS[] = {"body", "basic", NULL};

static const char *const *keys_of(int kind)
{
	static const char *const *const by_kind[] = {API_KEY_KEYS, BEARER_KEYS, BASIC_KEYS, OAUTH2_KEYS};
	return by_kind[kind];
}

static int index_of(const char *name, const char *const *names)
{
	for (int i = 0; names[i]; i++)
		if (!strcmp(name, names[i]))
			return i;
	return -1;
}

/* One of names at key (absent: fallback), as its index. */
static int choice(lua_State *L, int def, const char *key, const char *const *names, int fallback)
{
	int type = lua_getfield(L, def, key);
	int found = type == LUA_TNIL ? fallback : -1;
	if (type == LUA_TSTRING)
		found = index_of(lua_tostring(L, -1), names);
	if (found < 0) {
		luaL_Buffer b;
		luaL_buffinit(L, &b);
		for (int i = 0; names[i]; i++)
			lua_pushfstring(L, "%s\"%s\"", i ? ", " : "", names[i]), luaL_addvalue(&b);
		luaL_pushresult(&b);
		const char *closest = type == LUA_TSTRING ? suggest_closest(lua_tostring(L, -2), names) : NULL;
		luaL_error(L, "auth.%s is %s %s, not one of %s%s%s%s", key, type == LUA_TSTRING ? "the string" : "a",
			   type == LUA_TSTRING ? lua_tostring(L, -2) : luaL_typename(L, -2), lua_tostring(L, -1),
			   closest ? " (did you mean " : "", closest ? closest : "", closest ? "?)" : "");
	}
	lua_pop(L, 1);
	return found;
}

/* Each step of a credential's "config.a.b" must be a property the spec declares (argument 2, the
 * connectionSpecification's properties), where it declares them: a misspelt field would send no
 * credential at all, and a 401 says nothing of why. */
static void check_in_spec(lua_State *L, const char *key, const char *path)
{
	int top = lua_gettop(L);
	lua_pushvalue(L, 2);
	for (const char *p = path + 7; *p && lua_istable(L, -1);) {
		const char *dot = strchr(p, '.');
		size_t len = dot ? (size_t)(dot - p) : strlen(p);
		lua_pushlstring(L, p, len);
		if (lua_rawget(L, -2) == LUA_TNIL) {
			const char *names[65];
			int n = 0;
			lua_pushnil(L);
			while (lua_next(L, -3) && n < 64) {
				lua_pop(L, 1);
				if (lua_type(L, -1) == LUA_TSTRING)
					names[n++] = lua_tostring(L, -1);
			}
			names[n] = NULL;
			const char *step = lua_pushlstring(L, p, len);
			const char *closest = suggest_closest(step, names);
			luaL_error(L, "auth.%s names %s, a config field the spec does not declare%s%s%s", key, path,
				   closest ? " (did you mean " : "", closest ? closest : "", closest ? "?)" : "");
		}
		lua_getfield(L, -1, "properties");
		lua_remove(L, -2);
		lua_remove(L, -2);
		p += len + (dot ? 1 : 0);
	}
	lua_settop(L, top);
}

/* A credential: absent (unless required), or "config.<field>[.<field>...]". */
static void check_config_path(lua_State *L, int def, const char *key, int required)
{
	int type = lua_getfield(L, def, key);
	if (type == LUA_TNIL) {
		if (required)
			luaL_error(L, "auth.%s is missing: name the config field that holds it (\"config.%s\")", key,
				   key);
		lua_pop(L, 1);
		return;
	}
	const char *path = lua_tostring(L, -1);
	if (type != LUA_TSTRING || strncmp(path, "config.", 7) || !path[7] || strstr(path, "..") ||
	    path[strlen(path) - 1] == '.')
		luaL_error(L,
			   "auth.%s must name the config field that holds it, as \"config.%s\" (credentials are "
			   "never written in the script)",
			   key, key);
	check_in_spec(L, key, path);
	lua_pop(L, 1);
}

static void check_text(lua_State *L, int def, const char *key)
{
	int type = lua_getfield(L, def, key);
	if (type != LUA_TNIL && (type != LUA_TSTRING || !lua_rawlen(L, -1)))
		luaL_error(L, "auth.%s must be a non-empty string", key);
	lua_pop(L, 1);
}

static void check_keys(lua_State *L, int def, const char *const *known, const char *kind)
{
	char why[400];
	if (!suggest_known_keys(L, def, known, 0, why, sizeof why))
		luaL_error(L, "auth (type \"%s\"): %s", kind, why);
}

int auth_check_declaration(lua_State *L)
{
	if (lua_type(L, 1) != LUA_TTABLE)
		return luaL_error(L, "auth must be a table, not a %s", luaL_typename(L, 1));
	if (lua_getfield(L, 1, "type") == LUA_TNIL)
		return luaL_error(L, "auth.type is missing: \"api_key\", \"bearer\", \"basic\" or \"oauth2\"");
	lua_pop(L, 1);
	int kind = choice(L, 1, "type", KINDS, -1);
	check_keys(L, 1, keys_of(kind), KINDS[kind]);
	switch (kind) {
	case 0:
		check_config_path(L, 1, "key", 1);
		check_text(L, 1, "header");
		check_text(L, 1, "query");
		check_text(L, 1, "prefix");
		lua_getfield(L, 1, "header");
		lua_getfield(L, 1, "query");
		if (lua_isnil(L, -1) == lua_isnil(L, -2))
			return luaL_error(L, "auth: an api_key goes in a header or the query: give header or query");
		break;
	case 1: check_config_path(L, 1, "token", 1); break;
	case 2:
		check_config_path(L, 1, "username", 1);
		check_config_path(L, 1, "password", 0);
		break;
	default: {
		int grant = choice(L, 1, "grant", GRANTS, 0);
		int type = lua_getfield(L, 1, "token_url");
		if (type != LUA_TSTRING && type != LUA_TFUNCTION)
			return luaL_error(L, "auth.token_url must be a URL or a function(config) returning one, not %s",
					  luaL_typename(L, -1));
		check_config_path(L, 1, "client_id", 1);
		check_config_path(L, 1, "client_secret", 1);
		check_config_path(L, 1, "refresh_token", grant == 0);
		check_text(L, 1, "scope");
		choice(L, 1, "client_auth", CLIENT_AUTHS, 0);
		break;
	}
	}
	return 0;
}

/* Pushes the config value at the declaration's "config.a.b" path (nil when any step is absent). */
static void push_config_value(lua_State *L, int config, const char *path)
{
	lua_pushvalue(L, config);
	for (const char *p = path + 7; *p;) {
		const char *dot = strchr(p, '.');
		size_t len = dot ? (size_t)(dot - p) : strlen(p);
		if (!lua_istable(L, -1)) {
			lua_pop(L, 1);
			lua_pushnil(L);
			return;
		}
		lua_pushlstring(L, p, len);
		lua_gettable(L, -2);
		lua_remove(L, -2);
		p += len + (dot ? 1 : 0);
	}
}

/* The credential the declaration's key names, copied (NULL when the config leaves it out). */
static char *credential(struct runtime *rt, int def, int config, const char *key)
{
	lua_State *L = rt->L;
	char *value = NULL;
	if (lua_getfield(L, def, key) == LUA_TSTRING) {
		push_config_value(L, config, lua_tostring(L, -1));
		if (lua_type(L, -1) == LUA_TSTRING || lua_type(L, -1) == LUA_TNUMBER) {
			value = strdup(lua_tostring(L, -1));
			if (value)
				secrets_add(&rt->secrets, value);
		}
		lua_pop(L, 1);
	}
	lua_pop(L, 1);
	return value;
}

static char *text_field(lua_State *L, int def, const char *key)
{
	char *value = NULL;
	if (lua_getfield(L, def, key) == LUA_TSTRING)
		value = strdup(lua_tostring(L, -1));
	lua_pop(L, 1);
	return value;
}

static int configure_api_key(struct runtime *rt, struct auth *a, int def, int config)
{
	lua_State *L = rt->L;
	char *key = credential(rt, def, config, "key");
	if (!key)
		return 0;
	char *prefix = text_field(L, def, "prefix");
	char *header = text_field(L, def, "header");
	size_t len = strlen(key) + (prefix ? strlen(prefix) : 0) + (header ? strlen(header) : 0) + 4;
	char *value = malloc(len);
	if (value)
		snprintf(value, len, "%s%s", prefix ? prefix : "", key);
	if (header && value) {
		a->header_line = malloc(len);
		if (a->header_line)
			snprintf(a->header_line, len, "%s: %s", header, value);
		a->sent.header_line = a->header_line;
	} else if (value) {
		a->query_name = text_field(L, def, "query");
		a->query_value = http_escape(&rt->http, value, strlen(value));
		a->sent.query_name = a->query_name;
		a->sent.query_value_escaped = a->query_value;
		if (a->query_value)
			secrets_add(&rt->secrets, a->query_value);
	}
	free(value);
	free(prefix);
	free(header);
	free(key);
	return 0;
}

/* The token URL, given or made by token_url(config). */
static int resolve_token_url(struct runtime *rt, struct auth *a, int def, int config, char *err, size_t errlen)
{
	lua_State *L = rt->L;
	if (lua_getfield(L, def, "token_url") == LUA_TFUNCTION) {
		lua_pushvalue(L, config);
		if (host_call(L, 1, 1) != LUA_OK) {
			struct host_error e;
			host_error_read(L, -1, &e);
			snprintf(err, errlen, "auth.token_url(config) failed: %s", e.message);
			lua_pop(L, 1);
			return -1;
		}
	}
	if (lua_type(L, -1) != LUA_TSTRING) {
		snprintf(err, errlen, "auth.token_url(config) returned a %s, not a URL", luaL_typename(L, -1));
		lua_pop(L, 1);
		return -1;
	}
	a->token_url = strdup(lua_tostring(L, -1));
	lua_pop(L, 1);
	return 0;
}

static int configure_oauth2(struct runtime *rt, struct auth *a, int def, int config, char *err, size_t errlen)
{
	lua_State *L = rt->L;
	a->refresh_grant = choice(L, def, "grant", GRANTS, 0) == 0;
	a->client_auth_basic = choice(L, def, "client_auth", CLIENT_AUTHS, 0) == 1;
	if (resolve_token_url(rt, a, def, config, err, errlen))
		return -1;
	a->client_id = credential(rt, def, config, "client_id");
	a->client_secret = credential(rt, def, config, "client_secret");
	a->scope = text_field(L, def, "scope");
	static const char *const needed[] = {"client_id", "client_secret", "refresh_token"};
	char *const *values[] = {&a->client_id, &a->client_secret, &a->refresh_token};
	if (a->refresh_grant) {
		a->refresh_token = credential(rt, def, config, "refresh_token");
		a->refresh_token_path = text_field(L, def, "refresh_token");
	}
	for (int i = 0; i < (a->refresh_grant ? 3 : 2); i++) {
		if (*values[i])
			continue;
		lua_getfield(L, def, needed[i]);
		snprintf(err, errlen, "OAuth2 needs %s: the config has no %s", needed[i], lua_tostring(L, -1) + 7);
		lua_pop(L, 1);
		return -1;
	}
	lua_pushvalue(L, config);
	a->config_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	return 0;
}

/* Base64 (RFC 4648), for the Basic header's spelling of a credential: libcurl encodes it but keeps
 * its encoder to itself, and the masker must know that spelling too. */
static void base64(struct buf *out, const char *data, size_t len)
{
	static const char digits[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	for (size_t i = 0; i < len; i += 3) {
		unsigned n = (unsigned char)data[i] << 16;
		n |= i + 1 < len ? (unsigned char)data[i + 1] << 8 : 0;
		n |= i + 2 < len ? (unsigned char)data[i + 2] : 0;
		buf_putc(out, digits[n >> 18 & 63]);
		buf_putc(out, digits[n >> 12 & 63]);
		buf_putc(out, i + 1 < len ? digits[n >> 6 & 63] : '=');
		buf_putc(out, i + 2 < len ? digits[n & 63] : '=');
	}
}

/* An API that echoes the Authorization header it got (an error body, a debug proxy) prints
 * base64("user:password"): that is a secret too. */
static void mask_basic_header(struct runtime *rt, const char *username, const char *password)
{
	if (!username)
		return;
	struct buf pair = {0}, encoded = {0};
	buf_printf(&pair, "%s:%s", username, password ? password : "");
	base64(&encoded, pair.data, pair.len);
	secrets_add(&rt->secrets, buf_cstr(&encoded));
	buf_free(&pair);
	buf_free(&encoded);
}

int auth_configure(struct runtime *rt, int script_idx, int config_idx, char *err, size_t errlen)
{
	lua_State *L = rt->L;
	struct auth *a = &rt->auth;
	script_idx = lua_absindex(L, script_idx);
	config_idx = lua_absindex(L, config_idx);
	auth_free(rt);
	if (lua_getfield(L, script_idx, "auth") != LUA_TTABLE) {
		lua_pop(L, 1);
		return 0;
	}
	int def = lua_gettop(L);
	int rc = 0;
	lua_getfield(L, def, "type");
	a->kind = (enum auth_kind)(index_of(lua_tostring(L, -1), KINDS) + 1);
	lua_pop(L, 1);
	switch (a->kind) {
	case AUTH_API_KEY: rc = configure_api_key(rt, a, def, config_idx); break;
	case AUTH_BEARER:
		a->token = credential(rt, def, config_idx, "token");
		a->sent.bearer = a->token;
		break;
	case AUTH_BASIC:
		a->username = credential(rt, def, config_idx, "username");
		a->password = credential(rt, def, config_idx, "password");
		a->sent.username = a->username;
		a->sent.password = a->password;
		mask_basic_header(rt, a->username, a->password);
		break;
	case AUTH_OAUTH2:
		rc = configure_oauth2(rt, a, def, config_idx, err, errlen);
		if (!rc && a->client_auth_basic)
			mask_basic_header(rt, a->client_id, a->client_secret);
		break;
	default: break;
	}
	lua_settop(L, def - 1);
	return rc;
}

/* Appends "&name=value", value percent-encoded. */
static void add_form_pair(struct runtime *rt, struct buf *form, const char *name, const char *value)
{
	char *escaped = http_escape(&rt->http, value, strlen(value));
	buf_printf(form, "%s%s=%s", form->len ? "&" : "", name, escaped ? escaped : "");
	curl_free(escaped);
}

static void token_request_form(struct runtime *rt, const struct auth *a, struct buf *form)
{
	add_form_pair(rt, form, "grant_type", a->refresh_grant ? "refresh_token" : "client_credentials");
	if (a->refresh_grant)
		add_form_pair(rt, form, "refresh_token", a->refresh_token);
	if (!a->client_auth_basic) {
		add_form_pair(rt, form, "client_id", a->client_id);
		add_form_pair(rt, form, "client_secret", a->client_secret);
	}
	if (a->scope)
		add_form_pair(rt, form, "scope", a->scope);
}

/* The token endpoint's answer, with the runtime's retries for what says it was not processed (a
 * rotated refresh token must not be spent twice): 0 when an answer came. */
static int ask_token_endpoint(struct runtime *rt, const struct auth *a, struct http_response *resp, int may_retry)
{
	struct buf form = {0};
	token_request_form(rt, a, &form);
	struct curl_slist *headers = curl_slist_append(NULL, "Content-Type: application/x-www-form-urlencoded");
	struct curl_slist *more = curl_slist_append(headers, "Accept: application/json");
	headers = more ? more : headers;
	struct http_credentials client = {.username = a->client_id, .password = a->client_secret};
	struct http_request req = {
		.method = "POST",
		.url = a->token_url,
		.headers = headers,
		.body = form.data ? form.data : "",
		.body_len = form.len,
		.credentials = a->client_auth_basic ? &client : NULL,
	};
	struct http_retry retry;
	http_retry_start(&retry);
	char why[CURL_ERROR_SIZE + 64];
	int rc;
	for (;;) {
		trace_request(rt, "oauth2", NULL, &req);
		int64_t sent = date_now_ms();
		rc = http_perform(&rt->http, &req, resp);
		trace_response(rt, "oauth2", NULL, resp, date_now_ms() - sent);
		if (!may_retry || !http_is_retryable_once_sent(resp))
			break;
		http_describe_failure(resp, why, sizeof why);
		if (http_retry_wait(&rt->http, &retry, resp, why, NULL))
			break;
	}
	curl_slist_free_all(headers);
	buf_free(&form);
	return rc;
}

/* The token endpoint's reason for a refusal: RFC 6749's error_description / error, or the
 * message / status other servers put in their bodies. */
static void refusal_reason(lua_State *L, const struct http_response *resp, char *out, size_t outlen)
{
	snprintf(out, outlen, "%.200s", resp->body.len ? resp->body.data : "(empty body)");
	json_decode_push(L, resp->body.data ? resp->body.data : "", resp->body.len);
	if (lua_istable(L, -2)) {
		static const char *const fields[] = {"error_description", "message", "error", "status", NULL};
		for (const char *const *f = fields; *f; f++) {
			if (lua_getfield(L, -2, *f) == LUA_TSTRING) {
				snprintf(out, outlen, "%.300s", lua_tostring(L, -1));
				lua_pop(L, 1);
				break;
			}
			lua_pop(L, 1);
		}
	}
	lua_pop(L, 2);
}

/* Writes the config with the rotated refresh token, as the platform expects it back. */
static void save_rotated_refresh_token(struct runtime *rt, struct auth *a)
{
	lua_State *L = rt->L;
	int top = lua_gettop(L);
	lua_rawgeti(L, LUA_REGISTRYINDEX, a->config_ref);
	int config = lua_gettop(L);
	const char *path = a->refresh_token_path + 7;
	const char *last = strrchr(path, '.');
	if (last) {
		lua_pushfstring(L, "config.%s", lua_pushlstring(L, path, (size_t)(last - path)));
		push_config_value(L, config, lua_tostring(L, -1));
	} else {
		lua_pushvalue(L, config);
	}
	if (lua_istable(L, -1)) {
		lua_pushstring(L, a->refresh_token);
		lua_setfield(L, -2, last ? last + 1 : path);
	}
	lua_createtable(L, 0, 3);
	lua_pushliteral(L, "CONNECTOR_CONFIG");
	lua_setfield(L, -2, "type");
	lua_pushnumber(L, (lua_Number)date_now_ms());
	lua_setfield(L, -2, "emitted_at");
	lua_createtable(L, 0, 1);
	lua_pushvalue(L, config);
	lua_setfield(L, -2, "config");
	lua_setfield(L, -2, "connectorConfig");
	char err[256];
	if (proto_message(&rt->out, L, "CONTROL", "control", -1, err, sizeof err))
		proto_logf(&rt->out, "ERROR", "the rotated refresh token cannot be saved: %s", err);
	else
		proto_log(&rt->out, "INFO",
			  "OAuth2: the token endpoint rotated the refresh token; the new one is saved "
			  "in the config (CONTROL connectorConfig)");
	lua_settop(L, top);
}

/* Takes the token endpoint's 200 answer: access_token, expires_in and perhaps a new refresh_token. */
static int take_token(struct runtime *rt, struct auth *a, const struct http_response *resp, char *err, size_t errlen)
{
	lua_State *L = rt->L;
	int top = lua_gettop(L);
	json_decode_push(L, resp->body.data ? resp->body.data : "", resp->body.len);
	if (!lua_istable(L, -2) || lua_getfield(L, -2, "access_token") != LUA_TSTRING || !lua_rawlen(L, -1)) {
		snprintf(err, errlen, "the answer has no access_token");
		lua_settop(L, top);
		return -1;
	}
	free(a->token);
	a->token = strdup(lua_tostring(L, -1));
	secrets_add(&rt->secrets, a->token);
	a->sent.bearer = a->token;
	a->generation++;
	int64_t now = date_now_ms();
	a->refresh_at_ms = INT64_MAX;
	if (lua_getfield(L, -3, "expires_in") == LUA_TNUMBER || lua_isstring(L, -1)) {
		double seconds = lua_tonumber(L, -1);
		if (seconds > 0 && seconds < 1e9) {
			int64_t lifetime = (int64_t)(seconds * 1000);
			int64_t margin = lifetime / 10 < REFRESH_MARGIN_MS ? lifetime / 10 : REFRESH_MARGIN_MS;
			a->refresh_at_ms = now + lifetime - margin;
		}
	}
	/* A replayed answer's refresh token is the recording's placeholder, not a rotation. */
	if (lua_getfield(L, -4, "refresh_token") == LUA_TSTRING && a->refresh_grant && !rt->cassette.replaying &&
	    strcmp(lua_tostring(L, -1), a->refresh_token)) {
		free(a->refresh_token);
		a->refresh_token = strdup(lua_tostring(L, -1));
		secrets_add(&rt->secrets, a->refresh_token);
		save_rotated_refresh_token(rt, a);
	}
	lua_settop(L, top);
	if (!a->token || (a->refresh_grant && !a->refresh_token)) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	return 0;
}

static int fetch_token(struct runtime *rt, struct auth *a, int retry, enum proto_failure *failure, char *err,
		       size_t errlen)
{
	struct http_response resp = {0};
	char why[CURL_ERROR_SIZE + 400];
	int rc = -1;
	*failure = PROTO_CONFIG_ERROR;
	if (ask_token_endpoint(rt, a, &resp, retry)) {
		http_describe_failure(&resp, why, sizeof why);
		*failure = PROTO_TRANSIENT_ERROR;
	} else if (resp.status != 200) {
		char reason[400];
		refusal_reason(rt->L, &resp, reason, sizeof reason);
		snprintf(why, sizeof why, "HTTP %ld: %s", resp.status, reason);
		if (resp.status >= 500 || resp.status == 429)
			*failure = PROTO_TRANSIENT_ERROR;
	} else {
		rc = take_token(rt, a, &resp, why, sizeof why);
	}
	if (rc)
		snprintf(err, errlen, "OAuth2 token request to %s failed: %s%s", a->token_url, why,
			 *failure == PROTO_CONFIG_ERROR
				 ? " (check the client id, secret and refresh token in the config)"
				 : "");
	else
		proto_logf(&rt->out, "INFO", "OAuth2: new access token from %s (token %u)", a->token_url,
			   a->generation);
	http_response_free(&resp);
	return rc;
}

int auth_prepare(struct runtime *rt, struct http_request *req, unsigned *generation, enum proto_failure *failure,
		 char *err, size_t errlen)
{
	struct auth *a = &rt->auth;
	req->credentials = NULL;
	*generation = a->generation;
	if (!req->with_auth || a->kind == AUTH_NONE)
		return 0;
	if (a->kind == AUTH_OAUTH2 && date_now_ms() >= a->refresh_at_ms) {
		if (fetch_token(rt, a, !req->no_retry, failure, err, errlen))
			return -1;
		*generation = a->generation;
	}
	req->credentials = &a->sent;
	return 0;
}

int auth_retry_after_401(struct runtime *rt, unsigned generation, int *refreshed)
{
	struct auth *a = &rt->auth;
	if (a->kind != AUTH_OAUTH2)
		return 0;
	if (generation != a->generation)
		return 1; /* a newer token came while this request was out */
	if (*refreshed)
		return 0;
	*refreshed = 1;
	a->refresh_at_ms = 0;
	proto_log(&rt->out, "INFO", "OAuth2: the API refused the access token (HTTP 401); fetching a new one");
	return 1;
}

void auth_free(struct runtime *rt)
{
	struct auth *a = &rt->auth;
	char *owned[] = {a->header_line,   a->query_name, a->username,          a->password,
			 a->token,         a->token_url,  a->client_id,         a->client_secret,
			 a->refresh_token, a->scope,      a->refresh_token_path};
	for (size_t i = 0; i < sizeof owned / sizeof owned[0]; i++)
		free(owned[i]);
	curl_free(a->query_value);
	if (rt->L && a->config_ref > 0)
		luaL_unref(rt->L, LUA_REGISTRYINDEX, a->config_ref);
	memset(a, 0, sizeof *a);
	a->config_ref = LUA_NOREF;
}
