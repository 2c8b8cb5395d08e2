/*
 * validate: the config is checked against the script's connectionSpecification before anything
 * runs, so a typo gives a config_error naming the field instead of a failure deep in a sync.
 * No JSON Schema validator for C is packaged in Debian, so this covers the subset that Airbyte
 * specs use (CAT forbids $ref, anyOf, allOf, not and if/then/else in specs anyway). Patterns are
 * POSIX extended regular expressions, which agree with ECMA-262 on the simple anchored patterns
 * specs use for dates and identifiers.
 */
#include "validate.h"

#include <lauxlib.h>
#include <math.h>
#include <regex.h>
#include <stdio.h>
#include <string.h>

#include "date.h"

struct check {
	lua_State *L;
	char *err;
	size_t errlen;
	char path[256];
	const char *subject; /* "config field", "field" */
	int types_only;      /* type, required and their nesting only (records) */
};

static int fail(struct check *c, const char *fmt, const char *detail)
{
	char what[512];
	snprintf(what, sizeof what, fmt, detail ? detail : "");
	snprintf(c->err, c->errlen, "%s '%s': %s", c->subject, c->path[0] ? c->path : "(root)", what);
	return -1;
}

static const char *json_type_of(lua_State *L, int idx)
{
	switch (lua_type(L, idx)) {
	case LUA_TSTRING: return "string";
	case LUA_TBOOLEAN: return "boolean";
	case LUA_TNUMBER: {
		lua_Number d = lua_tonumber(L, idx);
		return (lua_isinteger(L, idx) || (isfinite(d) && d == floor(d))) ? "integer" : "number";
	}
	case LUA_TTABLE: {
		if (lua_rawlen(L, idx) > 0)
			return "array";
		if (lua_getmetatable(L, idx)) {
			lua_pop(L, 1);
			return "array";
		}
		return "object";
	}
	case LUA_TLIGHTUSERDATA:
	case LUA_TNIL: return "null";
	default: return "unsupported";
	}
}

static int type_matches(const char *want, const char *have)
{
	if (!strcmp(want, have))
		return 1;
	return !strcmp(want, "number") && !strcmp(have, "integer");
}

static int check_type(struct check *c, int schema, int value)
{
	lua_State *L = c->L;
	const char *have = json_type_of(L, value);
	int ok = 1;
	lua_getfield(L, schema, "type");
	if (lua_type(L, -1) == LUA_TSTRING) {
		ok = type_matches(lua_tostring(L, -1), have);
	} else if (lua_istable(L, -1)) {
		ok = 0;
		lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
		for (lua_Integer i = 1; i <= n && !ok; i++) {
			lua_rawgeti(L, -1, i);
			ok = lua_type(L, -1) == LUA_TSTRING && type_matches(lua_tostring(L, -1), have);
			lua_pop(L, 1);
		}
	}
	char want[64];
	snprintf(want, sizeof want, "%s", lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "another type");
	lua_pop(L, 1);
	if (ok)
		return 0;
	char detail[160];
	snprintf(detail, sizeof detail, "must be of type %s, not %s", want, have);
	return fail(c, "%s", detail);
}

static int check_enum(struct check *c, int schema, int value)
{
	lua_State *L = c->L;
	if (lua_getfield(L, schema, "enum") != LUA_TTABLE) {
		lua_pop(L, 1);
		return 0;
	}
	lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
	for (lua_Integer i = 1; i <= n; i++) {
		lua_rawgeti(L, -1, i);
		int equal = lua_rawequal(L, -1, value);
		lua_pop(L, 1);
		if (equal) {
			lua_pop(L, 1);
			return 0;
		}
	}
	lua_pop(L, 1);
	return fail(c, "%s", "is not one of the allowed values");
}

static int check_pattern(struct check *c, const char *pattern, const char *text)
{
	regex_t re;
	if (regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB))
		return 0; /* a pattern POSIX cannot read is the schema's problem, not the user's */
	int matched = regexec(&re, text, 0, NULL, 0) == 0;
	regfree(&re);
	if (matched)
		return 0;
	char detail[300];
	snprintf(detail, sizeof detail, "'%.100s' does not match the pattern %.150s", text, pattern);
	return fail(c, "%s", detail);
}

static int check_format(struct check *c, const char *format, const char *text)
{
	int64_t parsed;
	if (!strcmp(format, "date") && date_parse_day(text, &parsed)) {
		char detail[200];
		snprintf(detail, sizeof detail, "'%.100s' is not a date (YYYY-MM-DD)", text);
		return fail(c, "%s", detail);
	}
	if (!strcmp(format, "date-time") && (strlen(text) <= 10 || date_parse(text, NULL, &parsed))) {
		char detail[200];
		snprintf(detail, sizeof detail, "'%.100s' is not an RFC 3339 date-time", text);
		return fail(c, "%s", detail);
	}
	return 0;
}

static int check_string(struct check *c, int schema, int value)
{
	lua_State *L = c->L;
	int top = lua_gettop(L);
	size_t len;
	const char *text = lua_tolstring(L, value, &len);
	int rc = 0;
	if (lua_getfield(L, schema, "minLength") == LUA_TNUMBER && (lua_Number)len < lua_tonumber(L, -1))
		rc = fail(c, "%s", "is too short");
	if (!rc && lua_getfield(L, schema, "maxLength") == LUA_TNUMBER && (lua_Number)len > lua_tonumber(L, -1))
		rc = fail(c, "%s", "is too long");
	if (!rc && lua_getfield(L, schema, "pattern") == LUA_TSTRING)
		rc = check_pattern(c, lua_tostring(L, -1), text);
	if (!rc && lua_getfield(L, schema, "format") == LUA_TSTRING)
		rc = check_format(c, lua_tostring(L, -1), text);
	lua_settop(L, top);
	return rc;
}

static int check_number(struct check *c, int schema, int value)
{
	lua_State *L = c->L;
	int top = lua_gettop(L);
	lua_Number d = lua_tonumber(L, value);
	int rc = 0;
	if (lua_getfield(L, schema, "minimum") == LUA_TNUMBER && d < lua_tonumber(L, -1))
		rc = fail(c, "must be at least %s", lua_tostring(L, -1));
	if (!rc && lua_getfield(L, schema, "maximum") == LUA_TNUMBER && d > lua_tonumber(L, -1))
		rc = fail(c, "must be at most %s", lua_tostring(L, -1));
	lua_settop(L, top);
	return rc;
}

static int check_value(struct check *c, int schema, int value);

static int descend(struct check *c, const char *segment, int schema, int value)
{
	size_t saved = strlen(c->path);
	snprintf(c->path + saved, sizeof c->path - saved, "%s%s", saved ? "." : "", segment);
	int rc = check_value(c, schema, value);
	if (!rc)
		c->path[saved] = '\0';
	return rc;
}

static int check_required(struct check *c, int schema, int value)
{
	lua_State *L = c->L;
	int top = lua_gettop(L);
	if (lua_getfield(L, schema, "required") != LUA_TTABLE) {
		lua_settop(L, top);
		return 0;
	}
	int required = lua_gettop(L);
	int rc = 0;
	lua_Integer n = (lua_Integer)lua_rawlen(L, required);
	for (lua_Integer i = 1; i <= n && !rc; i++) {
		lua_settop(L, required);
		/* Entries that are not strings are the schema's mistake: skip them. */
		if (lua_rawgeti(L, required, i) != LUA_TSTRING)
			continue;
		const char *name = lua_tostring(L, -1);
		int type = lua_getfield(L, value, name);
		if (type == LUA_TNIL || (type == LUA_TLIGHTUSERDATA && !lua_touserdata(L, -1))) {
			char detail[200];
			snprintf(detail, sizeof detail, "'%s' is required", name);
			rc = fail(c, "%s", detail);
		}
	}
	lua_settop(L, top);
	return rc;
}

static int check_object(struct check *c, int schema, int value)
{
	lua_State *L = c->L;
	if (check_required(c, schema, value))
		return -1;
	if (lua_getfield(L, schema, "properties") != LUA_TTABLE) {
		lua_pop(L, 1);
		return 0;
	}
	int properties = lua_gettop(L);
	lua_pushnil(L);
	while (lua_next(L, properties)) {
		if (lua_type(L, -2) == LUA_TSTRING && lua_istable(L, -1)) {
			lua_getfield(L, value, lua_tostring(L, -2));
			if (!lua_isnil(L, -1) && descend(c, lua_tostring(L, -3), lua_gettop(L) - 1, lua_gettop(L))) {
				lua_settop(L, properties - 1);
				return -1;
			}
			lua_pop(L, 1);
		}
		lua_pop(L, 1);
	}
	lua_pop(L, 1);
	return 0;
}

static int check_array(struct check *c, int schema, int value)
{
	lua_State *L = c->L;
	int top = lua_gettop(L);
	lua_Integer count = (lua_Integer)lua_rawlen(L, value);
	int rc = 0;
	if (!c->types_only) {
		if (lua_getfield(L, schema, "minItems") == LUA_TNUMBER && (lua_Number)count < lua_tonumber(L, -1))
			rc = fail(c, "needs at least %s items", lua_tostring(L, -1));
		if (!rc && lua_getfield(L, schema, "maxItems") == LUA_TNUMBER &&
		    (lua_Number)count > lua_tonumber(L, -1))
			rc = fail(c, "takes at most %s items", lua_tostring(L, -1));
		lua_settop(L, top);
		if (rc)
			return rc;
	}
	if (lua_getfield(L, schema, "items") != LUA_TTABLE) {
		lua_pop(L, 1);
		return 0;
	}
	int items = lua_gettop(L);
	lua_Integer n = (lua_Integer)lua_rawlen(L, value);
	for (lua_Integer i = 1; i <= n; i++) {
		char segment[32];
		snprintf(segment, sizeof segment, "%lld", (long long)i - 1);
		lua_rawgeti(L, value, i);
		if (descend(c, segment, items, lua_gettop(L))) {
			lua_settop(L, items - 1);
			return -1;
		}
		lua_pop(L, 1);
	}
	lua_pop(L, 1);
	return 0;
}

static int check_value(struct check *c, int schema, int value)
{
	lua_State *L = c->L;
	if (!lua_checkstack(L, 8))
		return fail(c, "%s", "is nested too deeply");
	int top = lua_gettop(L);
	int rc = check_type(c, schema, value) || (!c->types_only && check_enum(c, schema, value));
	if (!rc) {
		const char *type = json_type_of(L, value);
		if (!strcmp(type, "string") && !c->types_only)
			rc = check_string(c, schema, value);
		else if ((!strcmp(type, "integer") || !strcmp(type, "number")) && !c->types_only)
			rc = check_number(c, schema, value);
		else if (!strcmp(type, "object"))
			rc = check_object(c, schema, value);
		else if (!strcmp(type, "array"))
			rc = check_array(c, schema, value);
	}
	lua_settop(L, top);
	return rc ? -1 : 0;
}

int validate_config(lua_State *L, int schema_idx, int value_idx, char *err, size_t errlen)
{
	struct check c = {L, err, errlen, {0}, "config field", 0};
	return check_value(&c, lua_absindex(L, schema_idx), lua_absindex(L, value_idx));
}

int validate_record(lua_State *L, int schema_idx, int value_idx, char *err, size_t errlen)
{
	struct check c = {L, err, errlen, {0}, "field", 1};
	return check_value(&c, lua_absindex(L, schema_idx), lua_absindex(L, value_idx));
}

static void each_secret(lua_State *L, int schema, int value, void (*fn)(void *, const char *), void *ctx, int depth)
{
	if (depth > 16 || !lua_istable(L, schema) || !lua_istable(L, value) || !lua_checkstack(L, 6))
		return;
	if (lua_getfield(L, schema, "properties") != LUA_TTABLE) {
		lua_pop(L, 1);
		return;
	}
	int properties = lua_gettop(L);
	lua_pushnil(L);
	while (lua_next(L, properties)) {
		if (lua_type(L, -2) == LUA_TSTRING && lua_istable(L, -1)) {
			int prop = lua_gettop(L);
			lua_getfield(L, value, lua_tostring(L, -2));
			int field = lua_gettop(L);
			lua_getfield(L, prop, "airbyte_secret");
			if (lua_toboolean(L, -1) && lua_type(L, field) == LUA_TSTRING)
				fn(ctx, lua_tostring(L, field));
			lua_pop(L, 1);
			each_secret(L, prop, field, fn, ctx, depth + 1);
			lua_pop(L, 1);
		}
		lua_pop(L, 1);
	}
	lua_pop(L, 1);
}

void validate_each_secret(lua_State *L, int schema_idx, int value_idx, void (*fn)(void *ctx, const char *value),
			  void *ctx)
{
	each_secret(L, lua_absindex(L, schema_idx), lua_absindex(L, value_idx), fn, ctx, 0);
}
