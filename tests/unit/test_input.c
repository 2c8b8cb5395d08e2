/*
 * test_input: the platform's files (input.c): every state form read into {stream = state}, the
 * config_error raised for malformed state, input_read_json's errors, and the configured catalog
 * check. Raising functions run inside lua_pcall; their error is the {message, failure_type} table.
 */
#include <lauxlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "input.h"
#include "json.h"

/* input_read_state(L, path) with path passed as a light userdata (NULL for none). */
static int read_state(lua_State *L)
{
	const char *path = lua_touserdata(L, 1);
	input_read_state(L, path);
	return 1;
}

/* input_read_json(L, path, "config"). */
static int read_json(lua_State *L)
{
	input_read_json(L, lua_touserdata(L, 1), "config");
	return 1;
}

/* input_check_catalog on the argument; returns how the stack top moved. */
static int check_catalog(lua_State *L)
{
	int top = lua_gettop(L);
	input_check_catalog(L, 1);
	lua_pushinteger(L, lua_gettop(L) - top);
	return 1;
}

/* Writes content to a temp file and calls fn on its path in protected mode; pushes the result or
 * the error. Returns the lua_pcall status, or -1 when the file could not be made. */
static int call_on_file(lua_State *L, lua_CFunction fn, const char *content)
{
	char path[512];
	if (test_temp_file(content, strlen(content), path, sizeof path))
		return -1;
	lua_pushcfunction(L, fn);
	lua_pushlightuserdata(L, path);
	int status = lua_pcall(L, 1, 1, 0);
	unlink(path);
	return status;
}

static int count_keys(lua_State *L, int idx)
{
	int n = 0;
	idx = lua_absindex(L, idx);
	lua_pushnil(L);
	/* Only table members are stream states; other members of a legacy blob pass through to the
	 * read, which rejects them only for the streams it reads (sync.c). */
	while (lua_next(L, idx)) {
		n += lua_istable(L, -1);
		lua_pop(L, 1);
	}
	return n;
}

/* The state table at -1 must be exactly {stock_prices = {date = date}} (date NULL: no streams). */
static void check_states(lua_State *L, const char *label, const char *date)
{
	if (!CHECK(lua_istable(L, -1), "%s: pushed a %s, not a table", label, luaL_typename(L, -1)))
		return;
	int n = count_keys(L, -1);
	if (!date) {
		CHECK(n == 0, "%s: %d streams, want none", label, n);
		return;
	}
	CHECK(n == 1, "%s: %d streams, want 1", label, n);
	lua_getfield(L, -1, "stock_prices");
	if (CHECK(lua_istable(L, -1), "%s: stock_prices is a %s", label, luaL_typename(L, -1))) {
		lua_getfield(L, -1, "date");
		CHECK_STR(lua_tostring(L, -1), date, label);
		lua_pop(L, 1);
	}
	lua_pop(L, 1);
}

/* The error at -1 must be a config_error whose message contains each of words. */
static void check_config_error(lua_State *L, const char *label, const char *const *words)
{
	if (!CHECK(lua_istable(L, -1), "%s: the error is a %s, not a table", label, luaL_typename(L, -1)))
		return;
	lua_getfield(L, -1, "failure_type");
	CHECK_STR(lua_tostring(L, -1), "config_error", label);
	lua_getfield(L, -2, "message");
	for (; *words; words++)
		CHECK_CONTAINS(lua_tostring(L, -1), *words, label);
	lua_pop(L, 2);
}

static void state_none(void)
{
	lua_State *L = test_lua_open();
	if (!L)
		return;
	lua_pushcfunction(L, read_state);
	lua_pushlightuserdata(L, NULL);
	int status = lua_pcall(L, 1, 1, 0);
	if (CHECK(status == LUA_OK, "no state file: %s", lua_tostring(L, -1)))
		check_states(L, "no state file", NULL);
	lua_settop(L, 0);
	test_lua_close(L);
}

struct state_case {
	const char *label;
	const char *content;
	const char *date; /* stock_prices' cursor, or NULL for no state */
};

static void run_state_cases(const struct state_case *cases, size_t count)
{
	lua_State *L = test_lua_open();
	if (!L)
		return;
	for (size_t i = 0; i < count; i++) {
		int status = call_on_file(L, read_state, cases[i].content);
		if (status < 0)
			break;
		const char *message = NULL;
		if (status != LUA_OK && lua_istable(L, -1)) {
			lua_getfield(L, -1, "message");
			message = lua_tostring(L, -1);
		}
		if (CHECK(status == LUA_OK, "%s: raised %s", cases[i].label, message ? message : lua_tostring(L, -1)))
			check_states(L, cases[i].label, cases[i].date);
		lua_settop(L, 0);
	}
	test_lua_close(L);
}

static void state_empty_forms(void)
{
	static const struct state_case cases[] = {
		{"empty file", "", NULL}, {"blank file", " \n\t\r\n", NULL},
		{"[]", "[]", NULL},       {"[ ] with spaces", "[ ]\n", NULL},
		{"{}", "{}", NULL},       {"null", "null", NULL},
	};
	run_state_cases(cases, COUNT_OF(cases));
}

static void state_legacy_blob(void)
{
	static const struct state_case cases[] = {
		{"legacy blob", "{\"stock_prices\":{\"date\":\"2022-03-11\"}}", "2022-03-11"},
		{"legacy blob with a non-object member", "{\"stock_prices\":{\"date\":\"2022-03-11\"},\"version\":2}",
		 "2022-03-11"},
	};
	run_state_cases(cases, COUNT_OF(cases));
}

static void state_stream_list(void)
{
	static const struct state_case cases[] = {
		{"platform STREAM list",
		 "[{\"type\":\"STREAM\",\"stream\":{\"stream_descriptor\":{\"name\":\"stock_prices\"},"
		 "\"stream_state\":{\"date\":\"2022-03-11\"}}}]",
		 "2022-03-11"},
		{"one STREAM object, not in a list",
		 "{\"type\":\"STREAM\",\"stream\":{\"stream_descriptor\":{\"name\":\"stock_prices\"},"
		 "\"stream_state\":{\"date\":\"2022-03-10\"}}}",
		 "2022-03-10"},
		{"STREAM with a namespace",
		 "[{\"type\":\"STREAM\",\"stream\":{\"stream_descriptor\":"
		 "{\"name\":\"stock_prices\",\"namespace\":null},"
		 "\"stream_state\":{\"date\":\"2022-03-09\"}}}]",
		 "2022-03-09"},
	};
	run_state_cases(cases, COUNT_OF(cases));
}

static void state_global(void)
{
	static const struct state_case cases[] = {
		{"GLOBAL state",
		 "[{\"type\":\"GLOBAL\",\"global\":{\"shared_state\":{\"cdc\":1},\"stream_states\":["
		 "{\"stream_descriptor\":{\"name\":\"stock_prices\"},\"stream_state\":{\"date\":\"2022-03-11\"}}]}}]",
		 "2022-03-11"},
		{"GLOBAL state without stream_states", "[{\"type\":\"GLOBAL\",\"global\":{\"shared_state\":{}}}]",
		 NULL},
	};
	run_state_cases(cases, COUNT_OF(cases));
}

static void state_legacy_typed(void)
{
	static const struct state_case cases[] = {
		{"LEGACY object", "{\"type\":\"LEGACY\",\"data\":{\"stock_prices\":{\"date\":\"2022-03-11\"}}}",
		 "2022-03-11"},
		{"LEGACY in a list", "[{\"type\":\"LEGACY\",\"data\":{\"stock_prices\":{\"date\":\"2022-03-08\"}}}]",
		 "2022-03-08"},
		{"untyped state message in a list", "[{\"data\":{\"stock_prices\":{\"date\":\"2022-03-07\"}}}]",
		 "2022-03-07"},
	};
	run_state_cases(cases, COUNT_OF(cases));
}

static void state_whole_messages(void)
{
	static const struct state_case cases[] = {
		{"AirbyteMessages in a list",
		 "[{\"type\":\"STATE\",\"state\":{\"type\":\"STREAM\",\"stream\":{\"stream_descriptor\":"
		 "{\"name\":\"stock_prices\"},\"stream_state\":{\"date\":\"2022-03-11\"}}}}]",
		 "2022-03-11"},
		{"one AirbyteMessage",
		 "{\"type\":\"STATE\",\"state\":{\"type\":\"LEGACY\","
		 "\"data\":{\"stock_prices\":{\"date\":\"2022-03-04\"}}}}",
		 "2022-03-04"},
	};
	run_state_cases(cases, COUNT_OF(cases));
}

static void state_unknown_fields_ignored(void)
{
	static const struct state_case cases[] = {
		{"unknown fields everywhere",
		 "[{\"type\":\"STREAM\",\"sourceStats\":{\"recordCount\":3},\"future\":[1,2],"
		 "\"stream\":{\"stream_descriptor\":{\"name\":\"stock_prices\",\"extra\":true},"
		 "\"stream_state\":{\"date\":\"2022-03-11\",\"tickers\":{}},\"more\":\"x\"}}]",
		 "2022-03-11"},
	};
	run_state_cases(cases, COUNT_OF(cases));
}

/* Two streams from one list: both keep their own state. */
static void state_two_streams(void)
{
	static const char content[] =
		"[{\"type\":\"STREAM\",\"stream\":{\"stream_descriptor\":{\"name\":\"a\"},\"stream_state\":{\"n\":1}}},"
		"{\"type\":\"STREAM\",\"stream\":{\"stream_descriptor\":{\"name\":\"b\"},\"stream_state\":{\"n\":2}}}]";
	lua_State *L = test_lua_open();
	if (!L)
		return;
	int status = call_on_file(L, read_state, content);
	if (CHECK(status == LUA_OK, "raised: %s", status > 0 ? lua_tostring(L, -1) : "(no file)")) {
		CHECK(count_keys(L, -1) == 2, "%d streams, want 2", count_keys(L, -1));
		lua_getfield(L, -1, "a");
		lua_getfield(L, -1, "n");
		lua_getfield(L, -3, "b");
		lua_getfield(L, -1, "n");
		lua_Integer a = lua_tointeger(L, -3);
		lua_Integer b = lua_tointeger(L, -1);
		CHECK(a == 1 && b == 2, "a.n = %lld, b.n = %lld", (long long)a, (long long)b);
	}
	lua_settop(L, 0);
	test_lua_close(L);
}

struct error_case {
	const char *label;
	const char *content;
	const char *words[3];
};

static void run_error_cases(lua_CFunction fn, const struct error_case *cases, size_t count)
{
	lua_State *L = test_lua_open();
	if (!L)
		return;
	for (size_t i = 0; i < count; i++) {
		int status = call_on_file(L, fn, cases[i].content);
		if (status < 0)
			break;
		if (CHECK(status == LUA_ERRRUN, "%s: status %d, want a raised error", cases[i].label, status))
			check_config_error(L, cases[i].label, cases[i].words);
		lua_settop(L, 0);
	}
	test_lua_close(L);
}

static void state_malformed(void)
{
	static const struct error_case cases[] = {
		{"not JSON", "{\"stock_prices\":", {"state", "not valid JSON", NULL}},
		{"a number", "42", {"state", "number", NULL}},
		{"a string", "\"2022-03-11\"", {"state", "string", NULL}},
		{"a boolean", "true", {"state", "boolean", NULL}},
		{"a list entry that is a number", "[1]", {"entry 1", "object", NULL}},
		{"a later list entry that is a string",
		 "[{\"type\":\"LEGACY\",\"data\":{}},\"x\"]",
		 {"entry 2", "object", NULL}},
		{"an unknown type", "[{\"type\":\"BOGUS\"}]", {"unknown type", "BOGUS", NULL}},
		{"an unknown type in an object", "{\"type\":\"PER_STREAM\"}", {"unknown type", "PER_STREAM", NULL}},
		{"STREAM without stream_descriptor",
		 "[{\"type\":\"STREAM\",\"stream\":{\"stream_state\":{}}}]",
		 {"stream_descriptor", NULL}},
		{"STREAM whose stream_state is a string",
		 "[{\"type\":\"STREAM\",\"stream\":{\"stream_descriptor\":{\"name\":\"stock_prices\"},"
		 "\"stream_state\":\"x\"}}]",
		 {"stock_prices", "stream_state", NULL}},
		{"GLOBAL without global", "[{\"type\":\"GLOBAL\"}]", {"GLOBAL", "global", NULL}},
		{"two entries for one stream (which one holds cannot be known)",
		 "[{\"type\":\"STREAM\",\"stream\":{\"stream_descriptor\":{\"name\":\"stock_prices\"},"
		 "\"stream_state\":{\"date\":\"2022-03-01\"}}},"
		 "{\"type\":\"STATE\",\"state\":{\"type\":\"STREAM\",\"stream\":{\"stream_descriptor\":"
		 "{\"name\":\"stock_prices\"},\"stream_state\":{\"date\":\"2022-03-11\"}}}}]",
		 {"stock_prices", "two states", NULL}},
	};
	run_error_cases(read_state, cases, COUNT_OF(cases));
}

static void read_json_errors(void)
{
	static const struct error_case cases[] = {
		{"empty config", "", {"config", "empty", NULL}},
		{"config not JSON", "{\"api_key\":", {"config", "not valid JSON", NULL}},
	};
	run_error_cases(read_json, cases, COUNT_OF(cases));

	lua_State *L = test_lua_open();
	if (!L)
		return;
	lua_pushcfunction(L, read_json);
	lua_pushlightuserdata(L, (void *)"/nonexistent/source-lua/config.json");
	if (CHECK(lua_pcall(L, 1, 1, 0) == LUA_ERRRUN, "a missing config file was read")) {
		static const char *const words[] = {"config", "/nonexistent/source-lua/config.json", NULL};
		check_config_error(L, "missing config", words);
	}
	lua_settop(L, 0);
	int status = call_on_file(L, read_json, "{\"api_key\":\"k\",\"list\":[]}");
	if (CHECK(status == LUA_OK, "a valid config raised")) {
		lua_getfield(L, -1, "api_key");
		CHECK_STR(lua_tostring(L, -1), "k", "config api_key");
		CHECK(lua_gettop(L) == 2, "input_read_json left %d values", lua_gettop(L) - 1);
	}
	lua_settop(L, 0);
	test_lua_close(L);
}

/* ---- configured catalog ---- */

static int run_catalog(lua_State *L, const char *json)
{
	lua_pushcfunction(L, check_catalog);
	test_push_json(L, json);
	return lua_pcall(L, 1, 1, 0);
}

static void catalog_valid(void)
{
	static const char *const catalogs[] = {
		"{\"streams\":[{\"stream\":{\"name\":\"stock_prices\",\"json_schema\":{},"
		"\"supported_sync_modes\":[\"full_refresh\",\"incremental\"]},"
		"\"sync_mode\":\"incremental\",\"destination_sync_mode\":\"append\",\"cursor_field\":[\"date\"]}]}",
		"{\"streams\":[{\"stream\":{\"name\":\"stock_prices\"},\"sync_mode\":\"full_refresh\","
		"\"destination_sync_mode\":\"overwrite\"}]}",
		"{\"streams\":[{\"stream\":{\"name\":\"a\"},\"sync_mode\":\"full_refresh\"},"
		"{\"stream\":{\"name\":\"b\"},\"sync_mode\":\"incremental\"}],\"unknown\":1}",
	};
	lua_State *L = test_lua_open();
	if (!L)
		return;
	for (size_t i = 0; i < COUNT_OF(catalogs); i++) {
		int status = run_catalog(L, catalogs[i]);
		if (CHECK(status == LUA_OK, "catalog %zu was refused", i)) {
			CHECK(lua_tointeger(L, -1) == 0, "catalog %zu: input_check_catalog moved the stack by %lld", i,
			      (long long)lua_tointeger(L, -1));
		} else if (lua_istable(L, -1)) {
			lua_getfield(L, -1, "message");
			CHECK(0, "catalog %zu: %s", i, lua_tostring(L, -1));
		}
		lua_settop(L, 0);
	}
	test_lua_close(L);
}

static void catalog_invalid(void)
{
	static const struct error_case cases[] = {
		{"no streams", "{}", {"streams", NULL}},
		{"streams is not a list", "{\"streams\":\"stock_prices\"}", {"streams", NULL}},
		{"a list, not an object", "[1]", {"streams", NULL}},
		{"a stream entry that is a number", "{\"streams\":[1]}", {"streams[0]", NULL}},
		{"a stream without 'stream'",
		 "{\"streams\":[{\"sync_mode\":\"incremental\"}]}",
		 {"streams[0]", "stream", NULL}},
		{"a stream without a name",
		 "{\"streams\":[{\"stream\":{},\"sync_mode\":\"incremental\"}]}",
		 {"streams[0]", "name", NULL}},
		{"a stream with an empty name",
		 "{\"streams\":[{\"stream\":{\"name\":\"\"},\"sync_mode\":\"incremental\"}]}",
		 {"streams[0]", "name", NULL}},
		{"the second stream without a name",
		 "{\"streams\":[{\"stream\":{\"name\":\"a\"},\"sync_mode\":\"incremental\"},{\"stream\":{\"name\":5},"
		 "\"sync_mode\":\"incremental\"}]}",
		 {"streams[1]", "name", NULL}},
		{"sync_mode bogus",
		 "{\"streams\":[{\"stream\":{\"name\":\"stock_prices\"},\"sync_mode\":\"bogus\"}]}",
		 {"stock_prices", "bogus", NULL}},
		{"sync_mode missing",
		 "{\"streams\":[{\"stream\":{\"name\":\"stock_prices\"}}]}",
		 {"stock_prices", "sync_mode", NULL}},
		{"one stream listed twice (its records would be sent twice)",
		 "{\"streams\":[{\"stream\":{\"name\":\"stock_prices\"},\"sync_mode\":\"incremental\"},"
		 "{\"stream\":{\"name\":\"stock_prices\"},\"sync_mode\":\"full_refresh\"}]}",
		 {"stock_prices", "listed twice", NULL}},
		{"a NUL in a stream name",
		 "{\"streams\":[{\"stream\":{\"name\":\"stock\\u0000prices\"},"
		 "\"sync_mode\":\"incremental\"}]}",
		 {"streams[0]", "NUL", NULL}},
	};
	lua_State *L = test_lua_open();
	if (!L)
		return;
	for (size_t i = 0; i < COUNT_OF(cases); i++) {
		int status = run_catalog(L, cases[i].content);
		if (CHECK(status == LUA_ERRRUN, "%s: status %d, want a raised error", cases[i].label, status))
			check_config_error(L, cases[i].label, cases[i].words);
		lua_settop(L, 0);
	}
	test_lua_close(L);
}

static const struct test tests[] = {
	{"input_read_state with no file", state_none},
	{"input_read_state: empty file, blank, [], {}, null mean no state", state_empty_forms},
	{"input_read_state: legacy {stream: state} blob", state_legacy_blob},
	{"input_read_state: platform STREAM list and object", state_stream_list},
	{"input_read_state: GLOBAL state", state_global},
	{"input_read_state: LEGACY typed state", state_legacy_typed},
	{"input_read_state: whole AirbyteMessages", state_whole_messages},
	{"input_read_state: unknown fields are ignored", state_unknown_fields_ignored},
	{"input_read_state: two streams keep their own state", state_two_streams},
	{"input_read_state: malformed state is a config_error", state_malformed},
	{"input_read_json: missing, empty and broken files", read_json_errors},
	{"input_check_catalog accepts valid catalogs", catalog_valid},
	{"input_check_catalog names what is wrong", catalog_invalid},
};

const struct suite input_suite = {"input", tests, COUNT_OF(tests), NULL, NULL, NULL};
