/*
 * stream: reads the table a script returns, once, right after loading it, and turns each stream
 * into a struct stream_def the engine trusts. Every key is checked here: an unknown one is an
 * error that names it and the closest valid key ("cursor_feild: did you mean cursor_field?"), a
 * value of the wrong type names the key and what it should be, and the hooks a read needs
 * (request, parse) must be there. So a script with a typo fails at once, on every command,
 * instead of behaving differently from what its author wrote, or failing at the first page.
 *
 * Values that may be functions of the config (start, end, window, lookback) are only checked for
 * their type here; cursor.c evaluates them when a read starts.
 */
#include "stream.h"

#include <lauxlib.h>
#include <string.h>

#include "auth.h"
#include "cursor.h"
#include "input.h"
#include "runtime.h"
#include "suggest.h"
#include "tz.h"

static const char SCRIPT_MT[] = "source_lua.script";

static const char *const script_keys[] = {"spec", "check", "streams", "legacy_state", "auth", NULL};

static const char *const stream_keys[] = {
	"name",
	"json_schema",
	"namespace",
	"primary_key",
	"cursor_field",
	"cursor_kind",
	"cursor_format",
	"cursor_order",
	"start",
	"start_date",
	"end",
	"end_date",
	"timezone",
	"day_complete_at",
	"ceiling_lag",
	"window",
	"window_days",
	"lookback",
	"lookback_days",
	"partitions",
	"request",
	"partition_state_key",
	"parse",
	"describe_error",
	"errors",
	"paginator",
	"schema_check",
	"parent",
	NULL,
};

static const char *const error_rule_keys[] = {"status", "message", "action", "failure_type", NULL};
static const char *const error_actions[] = {"retry", "ignore", "fail", NULL};

/* Keys that only mean something for a stream with a cursor. */
static const char *const cursor_keys[] = {
	"cursor_kind",     "cursor_format", "cursor_order", "start",       "start_date", "end",           "end_date",
	"day_complete_at", "ceiling_lag",   "window",       "window_days", "lookback",   "lookback_days", NULL,
};

/* Where errors point: "stream 'news'" or "streams[2]". */
struct place {
	char text[160];
};

static int fail(lua_State *L, const struct place *where, const char *fmt, const char *a, const char *b)
{
	char detail[600];
	snprintf(detail, sizeof detail, fmt, a ? a : "", b ? b : "");
	return input_raise(L, PROTO_SYSTEM_ERROR, "the script: %s: %s", where->text, detail);
}

/* Every key of the table at idx must be a name in known. */
static void check_keys(lua_State *L, int idx, const struct place *where, const char *const *known)
{
	char why[400];
	if (!suggest_known_keys(L, idx, known, 0, why, sizeof why))
		fail(L, where, "%s", why, NULL);
}

/* Pins the string value at idx in the pins table: its pointer stays valid as long as the script. */
static const char *pin_string(lua_State *L, int pins, int idx)
{
	lua_pushvalue(L, idx);
	const char *s = lua_tostring(L, -1);
	lua_rawseti(L, pins, (lua_Integer)lua_rawlen(L, pins) + 1);
	return s;
}

/* A string field: NULL when absent; raises when present and not a non-empty string without NUL. */
static const char *string_field(lua_State *L, int def, int pins, const char *key, const struct place *where)
{
	int type = lua_getfield(L, def, key);
	const char *value = NULL;
	if (type != LUA_TNIL) {
		size_t len;
		if (type != LUA_TSTRING)
			fail(L, where, "%s must be a string, not a %s", key, luaL_typename(L, -1));
		const char *s = lua_tolstring(L, -1, &len);
		if (len == 0 || strlen(s) != len)
			fail(L, where, "%s must be a non-empty string without NUL characters", key, NULL);
		value = pin_string(L, pins, -1);
	}
	lua_pop(L, 1);
	return value;
}

/* A field that must be absent or a function. */
static int function_field(lua_State *L, int def, const char *key, const struct place *where, int required)
{
	int type = lua_getfield(L, def, key);
	lua_pop(L, 1);
	if (type == LUA_TNIL && required)
		fail(L, where, "%s is missing: a stream needs %s", key,
		     strcmp(key, "request") ? "parse(ctx, response)" : "request(ctx)");
	if (type != LUA_TNIL && type != LUA_TFUNCTION)
		fail(L, where, "%s must be a function, not a %s", key, lua_typename(L, type));
	return type == LUA_TFUNCTION;
}

/* One of names (a NULL-terminated list), given as a string; fallback when absent. */
static int choice_field(lua_State *L, int def, const char *key, const char *const *names, int fallback,
			const struct place *where)
{
	int type = lua_getfield(L, def, key);
	if (type == LUA_TNIL) {
		lua_pop(L, 1);
		return fallback;
	}
	if (type != LUA_TSTRING)
		fail(L, where, "%s must be a string, not a %s", key, luaL_typename(L, -1));
	const char *value = lua_tostring(L, -1);
	for (int i = 0; names[i]; i++) {
		if (!strcmp(value, names[i])) {
			lua_pop(L, 1);
			return i;
		}
	}
	char expected[200] = "";
	for (int i = 0; names[i]; i++) {
		if (!strcmp(names[i], "none"))
			continue;
		strcat(expected, expected[0] ? ", " : "");
		strcat(expected, names[i]);
	}
	const char *closest = suggest_closest(value, names);
	char message[400];
	snprintf(message, sizeof message, "%s '%s' is not one of %s%s%s%s", key, value, expected,
		 closest ? " (did you mean " : "", closest ? closest : "", closest ? "?)" : "");
	return fail(L, where, "%s%s", message, NULL);
}

/* primary_key: "id", { "id", "date" } or the protocol's { {"id"}, {"date"} }. */
static int check_primary_key(lua_State *L, int def, const struct place *where)
{
	int type = lua_getfield(L, def, "primary_key");
	int present = type != LUA_TNIL;
	if (type == LUA_TTABLE) {
		lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
		if (n == 0)
			fail(L, where, "primary_key must name at least one field", NULL, NULL);
		for (lua_Integer i = 1; i <= n; i++) {
			int t = lua_rawgeti(L, -1, i);
			int ok = t == LUA_TSTRING;
			if (t == LUA_TTABLE) {
				lua_Integer m = (lua_Integer)lua_rawlen(L, -1);
				ok = m > 0;
				for (lua_Integer k = 1; ok && k <= m; k++) {
					ok = lua_rawgeti(L, -1, k) == LUA_TSTRING;
					lua_pop(L, 1);
				}
			}
			lua_pop(L, 1);
			if (!ok)
				fail(L, where,
				     "primary_key must be a field name, a list of names or a list of paths "
				     "like { {\"id\"} }",
				     NULL, NULL);
		}
	} else if (type != LUA_TNIL && type != LUA_TSTRING) {
		fail(L, where, "primary_key must be a field name or a list of them, not a %s", luaL_typename(L, -1),
		     NULL);
	}
	lua_pop(L, 1);
	return present;
}

/* start, end, window, lookback: a value of the types given by types, or a function of the config. */
static void check_setting(lua_State *L, int def, const char *key, int number_ok, int string_ok,
			  const struct place *where)
{
	int type = lua_getfield(L, def, key);
	lua_pop(L, 1);
	if (type == LUA_TNIL || type == LUA_TFUNCTION || (type == LUA_TNUMBER && number_ok) ||
	    (type == LUA_TSTRING && string_ok))
		return;
	fail(L, where, "%s must be %s or a function(config) returning one", key,
	     number_ok && string_ok ? "a string or a number"
	     : number_ok            ? "a number"
				    : "a string");
}

/* A setting given as a constant step is checked now (a function's result when the read starts). */
static void check_step(lua_State *L, int def, const char *key, const struct cursor_def *c, int days_only,
		       const struct place *where)
{
	lua_getfield(L, def, key);
	if (lua_type(L, -1) == LUA_TSTRING || lua_type(L, -1) == LUA_TNUMBER) {
		struct cursor_step step;
		char why[300];
		if (cursor_step_from_lua(c, L, -1, days_only, &step, why, sizeof why))
			fail(L, where, "%s: %s", key, why);
	}
	lua_pop(L, 1);
}

/* Only one of two spellings of the same setting. */
static void one_of(lua_State *L, int def, const char *a, const char *b, const struct place *where)
{
	int has_a = lua_getfield(L, def, a) != LUA_TNIL;
	int has_b = lua_getfield(L, def, b) != LUA_TNIL;
	lua_pop(L, 2);
	if (has_a && has_b)
		fail(L, where, "%s and %s are the same setting: give one", a, b);
}

static void read_zone(struct runtime *rt, lua_State *L, int def, struct cursor_def *c, const struct place *where)
{
	c->zone = NULL;
	if (lua_getfield(L, def, "timezone") == LUA_TNIL) {
		lua_pop(L, 1);
		return;
	}
	if (lua_type(L, -1) != LUA_TSTRING)
		fail(L, where, "timezone must be a time zone name like \"Europe/London\", not a %s",
		     luaL_typename(L, -1), NULL);
	char err[300];
	const char *name = lua_tostring(L, -1);
	if (strcmp(name, "UTC") && !(c->zone = tz_find(rt->zones, name, err, sizeof err)))
		fail(L, where, "timezone: %s%s", err, NULL);
	lua_pop(L, 1);
}

/* day_complete_at = "HH:MM": the time of day at which a day's data is final. "00:00" and "24:00"
 * both mean once the day has ended: no day is complete when it begins. */
static void read_complete_at(lua_State *L, int def, struct cursor_def *c, const struct place *where)
{
	c->complete_at = 24 * 3600;
	if (lua_getfield(L, def, "day_complete_at") == LUA_TNIL) {
		lua_pop(L, 1);
		return;
	}
	const char *text = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
	int ok = strlen(text) == 5 && text[2] == ':';
	for (int i = 0; ok && i < 5; i++)
		ok = i == 2 || (text[i] >= '0' && text[i] <= '9');
	int hours = ok ? (text[0] - '0') * 10 + (text[1] - '0') : 0;
	int minutes = ok ? (text[3] - '0') * 10 + (text[4] - '0') : 0;
	if (!ok || minutes > 59 || hours > 24 || (hours == 24 && minutes > 0))
		fail(L, where, "day_complete_at must be a time of day \"HH:MM\"", NULL, NULL);
	c->complete_at = hours * 3600 + minutes * 60;
	c->ceiling_declared = 1;
	if (c->complete_at == 0)
		c->complete_at = 24 * 3600;
	if (c->kind != CURSOR_DAY)
		fail(L, where, "day_complete_at goes with cursor_kind = \"day\"; use ceiling_lag for %s cursors",
		     cursor_kind_names[c->kind], NULL);
	lua_pop(L, 1);
}

static void read_format(lua_State *L, int def, int pins, struct cursor_def *c, const struct place *where)
{
	c->format = FORMAT_RFC3339;
	c->strftime = NULL;
	const char *format = string_field(L, def, pins, "cursor_format", where);
	if (!format)
		return;
	if (c->kind != CURSOR_DATETIME)
		fail(L, where, "cursor_format goes with cursor_kind = \"datetime\"", NULL, NULL);
	if (!strcmp(format, "rfc3339") || !strcmp(format, "iso8601"))
		c->format = FORMAT_RFC3339;
	else if (!strcmp(format, "epoch_s"))
		c->format = FORMAT_EPOCH_S;
	else if (!strcmp(format, "epoch_ms"))
		c->format = FORMAT_EPOCH_MS;
	else if (strchr(format, '%'))
		c->format = FORMAT_STRFTIME, c->strftime = format;
	else
		fail(L, where,
		     "cursor_format '%s' is not rfc3339, epoch_s, epoch_ms or a strftime pattern such as "
		     "\"%%Y-%%m-%%d %%H:%%M:%%S\"",
		     format, NULL);
}

static void read_cursor(struct runtime *rt, lua_State *L, int def, int pins, struct stream_def *s,
			const struct place *where)
{
	struct cursor_def *c = &s->cursor;
	memset(c, 0, sizeof *c);
	c->field = string_field(L, def, pins, "cursor_field", where);
	if (!c->field) {
		for (const char *const *k = cursor_keys; *k; k++) {
			int present = lua_getfield(L, def, *k) != LUA_TNIL;
			lua_pop(L, 1);
			if (present)
				fail(L, where,
				     "%s goes with cursor_field; a stream without one is read in full every time", *k,
				     NULL);
		}
		c->kind = CURSOR_NONE;
		return;
	}
	c->kind = (enum cursor_kind)choice_field(L, def, "cursor_kind", cursor_kind_names, CURSOR_DAY, where);
	if (c->kind == CURSOR_NONE)
		fail(L, where, "cursor_kind \"none\" means no cursor: leave cursor_field out instead", NULL, NULL);
	c->order = (enum cursor_order)choice_field(L, def, "cursor_order", cursor_order_names, ORDER_ASCENDING, where);
	read_format(L, def, pins, c, where);
	read_zone(rt, L, def, c, where);
	read_complete_at(L, def, c, where);
	one_of(L, def, "start", "start_date", where);
	one_of(L, def, "end", "end_date", where);
	one_of(L, def, "window", "window_days", where);
	one_of(L, def, "lookback", "lookback_days", where);
	int numbers = c->kind != CURSOR_DAY;
	int strings = c->kind != CURSOR_INTEGER;
	check_setting(L, def, "start", numbers, strings, where);
	check_setting(L, def, "start_date", numbers, strings, where);
	check_setting(L, def, "end", numbers, strings, where);
	check_setting(L, def, "end_date", numbers, strings, where);
	check_setting(L, def, "window", c->kind == CURSOR_INTEGER, c->kind != CURSOR_INTEGER, where);
	check_setting(L, def, "lookback", c->kind == CURSOR_INTEGER, c->kind != CURSOR_INTEGER, where);
	check_setting(L, def, "window_days", 1, 0, where);
	check_setting(L, def, "lookback_days", 1, 0, where);
	if (c->kind != CURSOR_DAY) {
		static const char *const day_only[] = {"window_days", "lookback_days", NULL};
		for (const char *const *k = day_only; *k; k++) {
			int present = lua_getfield(L, def, *k) != LUA_TNIL;
			lua_pop(L, 1);
			if (present)
				fail(L, where, "%s goes with day cursors; use %s", *k,
				     c->kind == CURSOR_INTEGER ? "a count (window = 1000)"
							       : "an ISO 8601 duration (\"P30D\")");
		}
	}
	check_step(L, def, "window", c, 0, where);
	check_step(L, def, "lookback", c, 0, where);
	check_step(L, def, "window_days", c, 1, where);
	check_step(L, def, "lookback_days", c, 1, where);
	if (lua_getfield(L, def, "ceiling_lag") != LUA_TNIL) {
		char why[300];
		if (c->kind == CURSOR_INTEGER)
			fail(L, where, "ceiling_lag is a time: it goes with day and datetime cursors", NULL, NULL);
		if (lua_type(L, -1) != LUA_TSTRING ||
		    cursor_step_from_lua(c, L, -1, 0, &c->ceiling_lag, why, sizeof why))
			fail(L, where, "ceiling_lag must be an ISO 8601 duration such as \"PT1H\"%s%s",
			     lua_type(L, -1) == LUA_TSTRING ? ": " : "", lua_type(L, -1) == LUA_TSTRING ? why : NULL);
		c->ceiling_declared = 1;
	}
	lua_pop(L, 1);
}

/* rule.status: an HTTP status, or a list of them. */
static void read_rule_statuses(lua_State *L, int rule, const struct place *where, struct error_rule *out)
{
	int type = lua_getfield(L, rule, "status");
	int list = lua_gettop(L);
	lua_Integer n = type == LUA_TTABLE ? (lua_Integer)lua_rawlen(L, list) : type == LUA_TNIL ? 0 : 1;
	if (n > STREAM_MAX_RULE_STATUSES)
		fail(L, where, "status lists more than %s statuses", "16", NULL);
	for (lua_Integer i = 1; i <= n; i++) {
		if (type == LUA_TTABLE)
			lua_rawgeti(L, list, i);
		else
			lua_pushvalue(L, list);
		int is_integer;
		lua_Integer status = lua_tointegerx(L, -1, &is_integer);
		if (!is_integer || status < 100 || status > 599)
			fail(L, where, "status must be an HTTP status (100 to 599) or a list of them, not %s",
			     luaL_tolstring(L, -1, NULL), NULL);
		out->statuses[out->status_count++] = (int)status;
		lua_pop(L, 1);
	}
	lua_pop(L, 1);
}

/* errors = { {status = 404, action = "ignore"}, {message = "...", action = "fail", failure_type = ...} }:
 * the first rule whose status and message both match an answer that is not a page decides. */
static void read_error_rules(lua_State *L, int def, int pins, const struct place *stream, struct stream_def *s)
{
	if (lua_getfield(L, def, "errors") == LUA_TNIL) {
		lua_pop(L, 1);
		return;
	}
	int rules = lua_gettop(L);
	if (!lua_istable(L, rules))
		fail(L, stream, "errors must be a list of rules such as {status = 404, action = \"ignore\"}, not a %s",
		     luaL_typename(L, rules), NULL);
	lua_Integer n = (lua_Integer)lua_rawlen(L, rules);
	if (n > STREAM_MAX_ERROR_RULES)
		fail(L, stream, "errors has more than %s rules", "16", NULL);
	for (lua_Integer i = 1; i <= n; i++) {
		struct place where;
		snprintf(where.text, sizeof where.text, "%.130s: errors[%d]", stream->text, (int)i);
		lua_rawgeti(L, rules, i);
		int rule = lua_gettop(L);
		if (!lua_istable(L, rule))
			fail(L, &where, "must be a table such as {status = 404, action = \"ignore\"}, not a %s",
			     luaL_typename(L, rule), NULL);
		check_keys(L, rule, &where, error_rule_keys);
		struct error_rule *out = &s->error_rules[s->error_rule_count++];
		memset(out, 0, sizeof *out);
		read_rule_statuses(L, rule, &where, out);
		out->message = string_field(L, rule, pins, "message", &where);
		if (!out->status_count && !out->message)
			fail(L, &where, "needs a status or a message to match", NULL, NULL);
		const char *action = string_field(L, rule, pins, "action", &where);
		if (!action)
			fail(L, &where, "needs an action: \"retry\", \"ignore\" or \"fail\"", NULL, NULL);
		int found = -1;
		for (int k = 0; error_actions[k]; k++)
			if (!strcmp(action, error_actions[k]))
				found = k;
		if (found < 0) {
			const char *close = suggest_closest(action, error_actions);
			char hint[64] = "";
			if (close)
				snprintf(hint, sizeof hint, " (did you mean %s?)", close);
			fail(L, &where, "action '%s' is none of retry, ignore and fail%s", action, hint);
		}
		out->action = (enum error_action)found;
		out->failure_type = -1;
		const char *failure = string_field(L, rule, pins, "failure_type", &where);
		if (failure) {
			enum proto_failure type;
			if (out->action != ERROR_FAIL)
				fail(L, &where, "failure_type goes with action \"fail\" only", NULL, NULL);
			if (proto_failure_from_name(failure, &type))
				fail(L, &where,
				     "failure_type '%s' is none of config_error, system_error and "
				     "transient_error",
				     failure, NULL);
			out->failure_type = (int)type;
		}
		lua_pop(L, 1);
	}
	lua_pop(L, 1);
}

/* paginate_read_def under lua_pcall (its errors are plain messages): def, pins, the output. */
static int read_paginator(lua_State *L)
{
	paginate_read_def(L, 1, 2, "paginator", lua_touserdata(L, 3));
	return 0;
}

static const char *const parent_keys[] = {"stream", "field", NULL};

/* parent = {stream = "name", field = "key"}: the other stream is resolved once all are read. */
static void read_parent(lua_State *L, int def, int pins, const struct place *where, struct stream_def *s)
{
	if (lua_getfield(L, def, "parent") == LUA_TNIL) {
		lua_pop(L, 1);
		return;
	}
	int parent = lua_gettop(L);
	struct place inner;
	snprintf(inner.text, sizeof inner.text, "%.140s: parent", where->text);
	if (!lua_istable(L, parent))
		fail(L, &inner, "must be a table {stream = ..., field = ...}, not a %s", luaL_typename(L, parent),
		     NULL);
	check_keys(L, parent, &inner, parent_keys);
	s->parent_name = string_field(L, parent, pins, "stream", &inner);
	s->parent_field = string_field(L, parent, pins, "field", &inner);
	if (!s->parent_name || !s->parent_field)
		fail(L, &inner,
		     "needs stream (the parent stream's name) and field (the member of its records that "
		     "names each partition)",
		     NULL, NULL);
	if (s->partitioned)
		fail(L, where, "has both partitions and parent: the partitions come from one of them", NULL, NULL);
	s->partitioned = 1;
	lua_pop(L, 1);
}

/* Each parent names another stream of the script, and no chain of parents comes back to itself. */
static void resolve_parents(lua_State *L, struct script_def *script)
{
	const char *names[65];
	size_t n = 0;
	for (size_t i = 0; i < script->count && n < 64; i++)
		names[n++] = script->streams[i].name;
	names[n] = NULL;
	for (size_t i = 0; i < script->count; i++) {
		struct stream_def *s = &script->streams[i];
		struct place where;
		snprintf(where.text, sizeof where.text, "stream '%.120s': parent", s->name);
		if (!s->parent_name)
			continue;
		s->parent = stream_find(script, s->parent_name);
		if (!s->parent) {
			const char *closest = suggest_closest(s->parent_name, names);
			if (closest)
				fail(L, &where, "no stream is called '%s' (did you mean %s?)", s->parent_name, closest);
			fail(L, &where, "no stream is called '%s'", s->parent_name, NULL);
		}
	}
	for (size_t i = 0; i < script->count; i++) {
		const struct stream_def *p = script->streams[i].parent;
		for (size_t steps = 0; p; p = p->parent)
			if (p == &script->streams[i] || ++steps > script->count) {
				struct place where;
				snprintf(where.text, sizeof where.text, "stream '%.120s'", script->streams[i].name);
				fail(L, &where, "is its own parent (through '%s')", script->streams[i].parent_name,
				     NULL);
			}
	}
}

static void read_stream(struct runtime *rt, lua_State *L, int def, int pins, lua_Integer position, struct stream_def *s)
{
	struct place where;
	snprintf(where.text, sizeof where.text, "streams[%d]", (int)position);
	if (!lua_istable(L, def))
		fail(L, &where, "must be a table, not a %s", luaL_typename(L, def), NULL);
	s->index = (int)position;
	s->name = string_field(L, def, pins, "name", &where);
	if (!s->name)
		fail(L, &where, "has no name", NULL, NULL);
	snprintf(where.text, sizeof where.text, "stream '%.120s'", s->name);
	check_keys(L, def, &where, stream_keys);
	if (lua_getfield(L, def, "json_schema") != LUA_TTABLE)
		fail(L, &where, "json_schema must be a table (a JSON schema of its records)", NULL, NULL);
	lua_pop(L, 1);
	string_field(L, def, pins, "namespace", &where);
	s->has_primary_key = check_primary_key(L, def, &where);
	read_cursor(rt, L, def, pins, s, &where);
	function_field(L, def, "request", &where, 1);
	function_field(L, def, "parse", &where, 1);
	s->has_describe_error = function_field(L, def, "describe_error", &where, 0);
	read_error_rules(L, def, pins, &where, s);
	const char *check = string_field(L, def, pins, "schema_check", &where);
	s->schema_check = SCHEMA_CHECK_ERROR;
	if (check && !strcmp(check, "warn"))
		s->schema_check = SCHEMA_CHECK_WARN;
	else if (check && !strcmp(check, "off"))
		s->schema_check = SCHEMA_CHECK_OFF;
	else if (check && strcmp(check, "error"))
		fail(L, &where, "schema_check must be \"error\", \"warn\" or \"off\", not \"%s\"", check, NULL);
	lua_pushcfunction(L, read_paginator);
	lua_pushvalue(L, def);
	lua_pushvalue(L, pins);
	lua_pushlightuserdata(L, &s->paginator);
	if (lua_pcall(L, 3, 0, 0) != LUA_OK)
		fail(L, &where, "%s", lua_tostring(L, -1), NULL);
	s->partitioned = function_field(L, def, "partitions", &where, 0);
	read_parent(L, def, pins, &where, s);
	s->partition_state_key = string_field(L, def, pins, "partition_state_key", &where);
	if (!s->partition_state_key)
		s->partition_state_key = "partitions";
	if (s->cursor.field && s->partitioned && !strcmp(s->partition_state_key, s->cursor.field))
		fail(L, &where, "partition_state_key '%s' is also the cursor field; the state needs both",
		     s->partition_state_key, NULL);
}

static void check_script_table(lua_State *L, int script, const struct place *where)
{
	check_keys(L, script, where, script_keys);
	if (lua_getfield(L, script, "spec") != LUA_TTABLE)
		fail(L, where, "spec must be a table (the connector's specification)", NULL, NULL);
	if (lua_getfield(L, -1, "connectionSpecification") != LUA_TTABLE)
		fail(L, where, "spec has no connectionSpecification table", NULL, NULL);
	lua_pop(L, 2);
	int type = lua_getfield(L, script, "legacy_state");
	if (type != LUA_TNIL && type != LUA_TBOOLEAN)
		fail(L, where, "legacy_state must be true or false", NULL, NULL);
	lua_pop(L, 1);
	if (lua_getfield(L, script, "streams") != LUA_TTABLE || lua_rawlen(L, -1) == 0)
		fail(L, where, "streams must be a non-empty list of stream definitions", NULL, NULL);
	lua_pop(L, 1);
	if (lua_getfield(L, script, "auth") != LUA_TNIL) {
		lua_pushcfunction(L, auth_check_declaration);
		lua_insert(L, -2);
		lua_getfield(L, script, "spec");
		lua_getfield(L, -1, "connectionSpecification");
		lua_getfield(L, -1, "properties");
		lua_replace(L, -3);
		lua_pop(L, 1);
		if (lua_pcall(L, 2, 0, 0) != LUA_OK)
			fail(L, where, "%s", lua_tostring(L, -1), NULL);
	} else {
		lua_pop(L, 1);
	}
}

const struct script_def *stream_load_script(struct runtime *rt, int script_idx)
{
	lua_State *L = rt->L;
	script_idx = lua_absindex(L, script_idx);
	struct place where = {"the table it returns"};
	if (!lua_istable(L, script_idx))
		fail(L, &where, "must be a table (spec, check, streams), not a %s", luaL_typename(L, script_idx), NULL);
	check_script_table(L, script_idx, &where);
	lua_getfield(L, script_idx, "streams");
	int streams = lua_gettop(L);
	size_t count = lua_rawlen(L, streams);
	struct script_def *script = lua_newuserdatauv(L, sizeof *script + count * sizeof script->streams[0], 1);
	memset(script, 0, sizeof *script + count * sizeof script->streams[0]);
	luaL_newmetatable(L, SCRIPT_MT);
	lua_setmetatable(L, -2);
	int ud = lua_gettop(L);
	/* pins[i] is stream i's table; the strings the definitions point into follow. */
	lua_createtable(L, (int)count, 0);
	int pins = lua_gettop(L);
	for (size_t i = 1; i <= count; i++) {
		lua_rawgeti(L, streams, (lua_Integer)i);
		lua_rawseti(L, pins, (lua_Integer)i);
	}
	lua_pushvalue(L, pins);
	lua_setiuservalue(L, ud, 1);
	for (size_t i = 0; i < count; i++) {
		lua_rawgeti(L, pins, (lua_Integer)i + 1);
		read_stream(rt, L, lua_gettop(L), pins, (lua_Integer)i + 1, &script->streams[i]);
		lua_pop(L, 1);
		for (size_t k = 0; k < i; k++)
			if (!strcmp(script->streams[k].name, script->streams[i].name))
				fail(L, &where, "two streams are called '%s'", script->streams[i].name, NULL);
	}
	script->count = count;
	resolve_parents(L, script);
	lua_getfield(L, script_idx, "legacy_state");
	script->legacy_state = lua_toboolean(L, -1);
	lua_getfield(L, script_idx, "check");
	script->has_check = lua_isfunction(L, -1);
	lua_settop(L, ud);
	lua_remove(L, streams);
	return script;
}

const struct stream_def *stream_find(const struct script_def *script, const char *name)
{
	for (size_t i = 0; i < script->count; i++)
		if (!strcmp(script->streams[i].name, name))
			return &script->streams[i];
	return NULL;
}

void stream_push_table(lua_State *L, int script_idx, const struct stream_def *def)
{
	lua_getiuservalue(L, script_idx, 1);
	lua_rawgeti(L, -1, def->index);
	lua_remove(L, -2);
}

static void push_string_list(lua_State *L, const char *only)
{
	lua_createtable(L, 1, 0);
	lua_pushstring(L, only);
	lua_rawseti(L, -2, 1);
}

/* The protocol's form, a list of paths: "id" -> {{"id"}}, {"a", "b"} -> {{"a"}, {"b"}}. */
static void push_primary_key(lua_State *L, int def)
{
	int type = lua_getfield(L, def, "primary_key");
	if (type == LUA_TSTRING) {
		lua_createtable(L, 1, 0);
		push_string_list(L, lua_tostring(L, -2));
		lua_rawseti(L, -2, 1);
		lua_remove(L, -2);
		return;
	}
	if (type != LUA_TTABLE)
		return;
	lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
	lua_createtable(L, (int)n, 0);
	for (lua_Integer i = 1; i <= n; i++) {
		if (lua_rawgeti(L, -2, i) == LUA_TSTRING) {
			push_string_list(L, lua_tostring(L, -1));
			lua_remove(L, -2);
		}
		lua_rawseti(L, -2, i);
	}
	lua_remove(L, -2);
}

void stream_push_catalog_entry(lua_State *L, int script_idx, const struct stream_def *def)
{
	stream_push_table(L, script_idx, def);
	int table = lua_gettop(L);
	lua_createtable(L, 0, 8);
	int out = lua_gettop(L);
	static const char *const copied[] = {"name", "json_schema", "namespace", NULL};
	for (const char *const *f = copied; *f; f++) {
		lua_getfield(L, table, *f);
		lua_setfield(L, out, *f);
	}
	int incremental = def->cursor.kind != CURSOR_NONE;
	lua_createtable(L, 2, 0);
	lua_pushstring(L, "full_refresh");
	lua_rawseti(L, -2, 1);
	if (incremental) {
		lua_pushstring(L, "incremental");
		lua_rawseti(L, -2, 2);
	}
	lua_setfield(L, out, "supported_sync_modes");
	if (incremental) {
		lua_pushboolean(L, 1);
		lua_setfield(L, out, "source_defined_cursor");
		push_string_list(L, def->cursor.field);
		lua_setfield(L, out, "default_cursor_field");
	}
	lua_pushboolean(L, incremental);
	lua_setfield(L, out, "is_resumable");
	if (def->has_primary_key) {
		push_primary_key(L, table);
		lua_setfield(L, out, "source_defined_primary_key");
	}
	lua_remove(L, table);
}
