/*
 * test_records: declared records (records.c, page_walk.c, pool.c): records.declare and its
 * refusals; mapper:map on hand-written pages, each batch settled as the engine settles it (every
 * syntax error class of the scanner is "not JSON", which #batch raises as a transient_error like
 * response.body; every shape error names the map call's line and the item); the exact text of the
 * records (field order, absent members, null, the integer rule, numbers, strings, escapes,
 * constants and context fields); next_url; the depth limit at 128 and 129; generated numbers and
 * days against the runtime's own writer and date functions; the batch accessors the engine uses;
 * batches walked on worker threads; and the response object whose body is decoded on first use.
 *
 * Where the scanner and lua-cjson (what response.body uses) judge the same page, they must agree,
 * except where cjson is laxer than RFC 8259 (those pages are listed, and refused by the scanner).
 */
#include <dirent.h>
#include <errno.h>
#include <lauxlib.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "date.h"
#include "harness.h"
#include "host.h"
#include "json.h"
#include "pool.h"
#include "records.h"
#include "runtime.h"
#include "tz.h"

#define BYTES(s) s, sizeof(s) - 1

/* The declaration of the feature's description, and a one-field one for the scanner's cases. */
static const char FULL[] = "return records.declare { list = 'results', next_url = 'next_url', fields = {\n"
			   "  { 'date', from = 't', as = 'day_from_ms', zone = 'America/New_York' },\n"
			   "  { 'stock_ticker', context = 'partition' },\n"
			   "  { 'price', from = 'c' },\n"
			   "  { 'transactions', from = 'n', as = 'integer' },\n"
			   "  { 'x', value = 'k' },\n"
			   "  { 'd2', from = 'day_text', as = 'day' },\n"
			   "} }";
static const char ONE[] =
	"return records.declare { list = 'results', next_url = 'next_url', fields = { { 'c', from = 'c' } } }";

/* What one mapper:map call and the settling of its batch gave. */
struct mapped {
	int status;                   /* of the map call: LUA_OK, or what it raised (in error) */
	enum records_outcome outcome; /* records_batch_settle's verdict */
	char why[600];                /* its reason */
	char error[600];              /* what map raised, or what #batch raised in Lua */
	int error_is_table;           /* #batch raised {message, failure_type} */
	char failure[32];             /* its failure_type */
	int has_next;
	char next[600];
	const struct record_batch *batch; /* left on the stack until the caller's lua_settop */
};

/* Pushes the mapper a declaration chunk returns (nil, and a failure, when it fails). */
static int push_mapper(lua_State *L, const char *chunk)
{
	return test_push_lua(L, chunk);
}

/* The ctx of a window of partition TSLA, with a config table. */
static void push_ctx(lua_State *L)
{
	lua_createtable(L, 0, 5);
	lua_pushliteral(L, "TSLA");
	lua_setfield(L, -2, "partition");
	lua_pushliteral(L, "2022-03-01");
	lua_setfield(L, -2, "from");
	lua_pushliteral(L, "2022-03-11");
	lua_setfield(L, -2, "to");
	lua_pushliteral(L, "stock_prices");
	lua_setfield(L, -2, "stream");
	test_push_lua(L, "return { list = { 1, 2 } }");
	lua_setfield(L, -2, "config");
}

/* Reads the error value on top (a string, or a {message, failure_type} table) into m; pops it. */
static void read_error(lua_State *L, struct mapped *m)
{
	m->error_is_table = lua_istable(L, -1);
	if (m->error_is_table) {
		lua_getfield(L, -1, "message");
		snprintf(m->error, sizeof m->error, "%s", lua_isstring(L, -1) ? lua_tostring(L, -1) : "?");
		lua_getfield(L, -2, "failure_type");
		snprintf(m->failure, sizeof m->failure, "%s", lua_isstring(L, -1) ? lua_tostring(L, -1) : "");
		lua_pop(L, 2);
	} else {
		snprintf(m->error, sizeof m->error, "%s", lua_isstring(L, -1) ? lua_tostring(L, -1) : "?");
	}
	lua_pop(L, 1);
}

/* Calls mapper:map(ctx, response) on a page from a Lua line (chunk "test", line 1, which errors of
 * the wrong shape name), settles the batch, and reads what #batch says in Lua. Leaves the batch
 * on the stack; the caller restores the top. */
static int map_page(lua_State *L, int mapper, const char *text, size_t len, struct mapped *m)
{
	memset(m, 0, sizeof *m);
	mapper = lua_absindex(L, mapper);
	test_push_lua(L, "return function(m, ctx, r) return m:map(ctx, r) end");
	lua_pushvalue(L, mapper);
	push_ctx(L);
	lua_pushliteral(L, "https://api.example.com/v2/aggs");
	records_push_response(L, 200, -1, text, len);
	lua_remove(L, -2);
	m->status = lua_pcall(L, 3, 1, 0);
	if (m->status != LUA_OK) {
		read_error(L, m);
		return m->status;
	}
	m->batch = records_to_batch(L, -1);
	if (!m->batch) {
		snprintf(m->error, sizeof m->error, "map returned a %s, not a batch", luaL_typename(L, -1));
		m->status = LUA_ERRRUN;
		return m->status;
	}
	m->outcome = records_batch_settle(m->batch, m->why, sizeof m->why);
	CHECK(records_batch_ready(m->batch), "a settled batch is not ready");
	if (m->outcome == RECORDS_OK) {
		records_batch_push_next_url(L, m->batch);
		if (lua_type(L, -1) == LUA_TSTRING) {
			m->has_next = 1;
			snprintf(m->next, sizeof m->next, "%s", lua_tostring(L, -1));
		}
		lua_pop(L, 1);
	}
	/* In Lua, #batch raises what settling found. */
	test_push_lua(L, "return function(b) return #b end");
	lua_pushvalue(L, -2);
	if (lua_pcall(L, 1, 1, 0) != LUA_OK)
		read_error(L, m);
	else
		lua_pop(L, 1);
	return LUA_OK;
}

/* The text of record i (0-based). */
static void record_text(const struct mapped *m, size_t i, const char **data, size_t *len)
{
	int64_t day;
	records_batch_get(m->batch, i, -1, data, len, &day);
}

/* Checks that a page maps to exactly these records (texts), and next. */
static void check_records(lua_State *L, int mapper, const char *label, const char *page, size_t page_len,
			  const char *const *want, size_t count, const char *next)
{
	int top = lua_gettop(L);
	struct mapped m;
	if (map_page(L, mapper, page, page_len, &m) != LUA_OK ||
	    !CHECK(m.outcome == RECORDS_OK, "%s: outcome %d: %s", label, (int)m.outcome, m.why)) {
		CHECK(m.status == LUA_OK, "%s: map failed: %s", label, m.error);
		lua_settop(L, top);
		return;
	}
	CHECK(!m.error[0], "%s: #batch raised %s", label, m.error);
	if (CHECK(records_batch_count(m.batch) == count, "%s: %zu records, want %zu", label,
		  records_batch_count(m.batch), count)) {
		for (size_t i = 0; i < count; i++) {
			const char *data;
			size_t len;
			record_text(&m, i, &data, &len);
			test_check_bytes(data, len, want[i], strlen(want[i]), __FILE__, __LINE__, label);
		}
	}
	if (next)
		CHECK(m.has_next && !strcmp(m.next, next), "%s: next_url is '%s', want '%s'", label,
		      m.has_next ? m.next : "(nil)", next);
	else
		CHECK(!m.has_next, "%s: next_url is '%s', want nil", label, m.next);
	lua_settop(L, top);
}

#define ONE_RECORD(L, mapper, label, page, want, next)                               \
	do {                                                                         \
		const char *const want_[] = {want};                                  \
		check_records(L, mapper, label, page, strlen(page), want_, 1, next); \
	} while (0)

/* Checks that a page is not JSON: settling says so with a reason containing reason (when given),
 * and #batch raises a transient_error table, as response.body does. */
static void check_not_json(lua_State *L, int mapper, const char *label, const char *page, size_t len,
			   const char *reason)
{
	int top = lua_gettop(L);
	struct mapped m;
	if (map_page(L, mapper, page, len, &m) != LUA_OK) {
		CHECK(0, "%s: map raised %s", label, m.error);
	} else if (CHECK(m.outcome == RECORDS_NOT_JSON, "%s: %s (%zu records, outcome %d: %s)", label,
			 m.outcome == RECORDS_OK ? "accepted" : "not refused as not JSON",
			 m.outcome == RECORDS_OK ? records_batch_count(m.batch) : 0, (int)m.outcome, m.why)) {
		CHECK(m.error_is_table && !strcmp(m.failure, "transient_error"),
		      "%s: #batch raised '%s' (failure_type '%s'), not a transient error table", label, m.error,
		      m.failure);
		CHECK_CONTAINS(m.error, "the answer is not JSON (", label);
		if (reason) {
			CHECK_CONTAINS(m.why, reason, label);
			CHECK_CONTAINS(m.error, reason, label);
		}
	}
	lua_settop(L, top);
}

/* Checks that valid JSON of the wrong shape is an error naming the line of the map call and the
 * item (a system error for the engine); #batch raises it as a plain error. */
static void check_shape_error(lua_State *L, int mapper, const char *label, const char *page, size_t len,
			      const char *words)
{
	int top = lua_gettop(L);
	struct mapped m;
	if (map_page(L, mapper, page, len, &m) != LUA_OK) {
		CHECK(0, "%s: map raised %s", label, m.error);
	} else if (CHECK(m.outcome == RECORDS_WRONG_SHAPE, "%s: outcome %d (%s), not a wrong shape", label,
			 (int)m.outcome, m.why)) {
		CHECK_CONTAINS(m.why, words, label);
		CHECK(!strncmp(m.why, "test:1: records: ", 17), "%s: '%s' does not start with the map call's line",
		      label, m.why);
		CHECK(!m.error_is_table, "%s: #batch raised a table (%s: %s)", label, m.failure, m.error);
		CHECK_CONTAINS(m.error, words, label);
		CHECK_CONTAINS(m.error, "test:1: records: ", label);
	}
	lua_settop(L, top);
}

/* Whether the decoder (json_decode_push, what response.body uses) accepts text. */
static int cjson_accepts(lua_State *L, const char *text, size_t len)
{
	json_decode_push(L, text, len);
	int ok = !(lua_isnil(L, -2) && !lua_isnil(L, -1));
	lua_pop(L, 2);
	return ok;
}

/* Whether the scanner takes text as JSON (a shape error counts as JSON). */
static int scanner_accepts(lua_State *L, int mapper, const char *text, size_t len)
{
	int top = lua_gettop(L);
	struct mapped m;
	int status = map_page(L, mapper, text, len, &m);
	lua_settop(L, top);
	CHECK(status == LUA_OK, "map raised %s", m.error);
	return m.outcome != RECORDS_NOT_JSON;
}

/* "[[[...1...]]]" with n brackets each side, in a static buffer. */
static const char *nest(const char *before, int n, const char *after)
{
	static char text[2 * JSON_MAX_DEPTH + 64];
	size_t at = (size_t)snprintf(text, sizeof text, "%s", before);
	for (int i = 0; i < n; i++)
		text[at++] = '[';
	text[at++] = '1';
	for (int i = 0; i < n; i++)
		text[at++] = ']';
	snprintf(text + at, sizeof text - at, "%s", after);
	return text;
}

static lua_State *open_with(const char *declaration)
{
	lua_State *L = test_lua_open();
	if (!L)
		return NULL;
	if (push_mapper(L, declaration) ||
	    !CHECK(lua_type(L, 1) == LUA_TUSERDATA, "the declaration gave a %s", luaL_typename(L, 1))) {
		test_lua_close(L);
		return NULL;
	}
	return L;
}

/* ---- records.declare ---- */

static void declarations_are_checked(void)
{
	static const struct {
		const char *fields; /* the declaration's fields, or a whole chunk when it starts with "return" */
		const char *words;
	} bad[] = {
		{"return records.declare()", "table expected"},
		{"return records.declare('results')", "table expected"},
		{"return records.declare { fields = { { 'c', from = 'c' } } }", "list must be a non-empty string"},
		{"return records.declare { list = '', fields = { { 'c', from = 'c' } } }",
		 "list must be a non-empty string"},
		{"return records.declare { list = 5, fields = { { 'c', from = 'c' } } }",
		 "list must be a non-empty string"},
		{"return records.declare { list = 'results' }", "fields must be a non-empty list"},
		{"return records.declare { list = 'results', fields = {} }", "fields must be a non-empty list"},
		{"return records.declare { list = 'results', fields = { c = { from = 'c' } } }",
		 "fields must be a non-empty list"},
		{"return records.declare { list = 'results', next_url = 5, fields = { { 'c', from = 'c' } } }",
		 "next_url must be a non-empty string"},
		{"return records.declare { list = 'results', lists = 'x', fields = { { 'c', from = 'c' } } }",
		 "the declaration has an unknown key 'lists'"},
		{"return records.declare { list = 'results', [1] = 'x', fields = { { 'c', from = 'c' } } }",
		 "the declaration has an unknown key '1'"},
		{"{ 'c', form = 'c' }", "field 1 has an unknown key 'form'"},
		{"{ 'c', from = 'c' }, { 'd', from = 'd', As = 'day' }", "field 2 has an unknown key 'As'"},
		{"{ 'c', 'c' }", "field 1 has an unknown key '2'"},
		{"{ 'c', from = 'c', [true] = 1 }", "field 1 has an unknown key 'true'"},
		{"'c'", "field 1 must be a table"},
		{"{ from = 'c' }", "field 1 must be a non-empty string"},
		{"{ '', from = 'c' }", "field 1 must be a non-empty string"},
		{"{ 5, from = 'c' }", "field 1 must be a non-empty string"},
		{"{ 'a\"b', from = 'c' }", "must be UTF-8 without quotes, backslashes or control characters"},
		{"{ 'a\\\\b', from = 'c' }", "must be UTF-8 without quotes"},
		{"{ 'a\\nb', from = 'c' }", "must be UTF-8 without quotes"},
		{"{ 'a\\255b', from = 'c' }", "must be UTF-8 without quotes"},
		{"{ 'c', from = 'c' }, { 'c', from = 'd' }", "field 'c' is declared twice"},
		{"{ 'c', from = 'c' }, { name = 'c', value = 1 }", "field 'c' is declared twice"},
		{"{ 'c' }", "field 'c' needs exactly one of from, context or value"},
		{"{ 'c', from = 'c', context = 'partition' }", "needs exactly one of"},
		{"{ 'c', from = 'c', value = 1 }", "needs exactly one of"},
		{"{ 'c', context = 'partition', value = 1 }", "needs exactly one of"},
		{"{ 'c', context = 'partition', as = 'day' }", "as goes with from and is a string"},
		{"{ 'c', value = 1, as = 'integer' }", "as goes with from and is a string"},
		{"{ 'c', from = 'c', as = 5 }", "as goes with from and is a string"},
		{"{ 'c', from = 'c', as = 'int' }",
		 "as must be integer, number, string, boolean, day, day_from_ms, day_from_s, datetime, "
		 "datetime_from_ms or datetime_from_s, not 'int'"},
		{"{ 'c', from = 'c', as = 'integr' }", "not 'integr' (did you mean integer?)"},
		{"{ 'c', from = 'c', as = 'datetime_from_sec' }", "(did you mean datetime_from_s?)"},
		{"{ 'c', from = 'c', as = 'Boolean' }", "(did you mean boolean?)"},
		{"{ 'c', from = 'c', as = 'datetime_from_ms', zone = 'UTC' }", "zone goes with as = \"day_from_ms\""},
		{"{ 'c', from = 'c', as = 'datetime_from_s', zone = 'UTC' }", "zone goes with"},
		{"{ 'c', from = 'c', as = 'number', zone = 'UTC' }", "zone goes with"},
		{"{ 'c', from = 'c', as = 'day_from_s', zone = 'Mars/Olympus' }", "unknown time zone 'Mars/Olympus'"},
		{"{ 'c', from = 'c', zone = 'UTC' }", "zone goes with as = \"day_from_ms\""},
		{"{ 'c', from = 'c', as = 'day', zone = 'UTC' }", "zone goes with as = \"day_from_ms\""},
		{"{ 'c', from = 'c', as = 'day_from_ms', zone = 'Europe/Pariss' }",
		 "unknown time zone 'Europe/Pariss' (did you mean Europe/Paris"},
		{"{ 'c', from = 'c', as = 'day_from_ms', zone = true }", "zone goes with"},
		{"{ 'c', from = '' }", "from must be a non-empty string"},
		{"{ 'c', context = 'partition', default = 1 }", "field 'c': default goes with from"},
		{"{ 'c', value = 1, required = true }", "field 'c': required goes with from"},
		{"{ 'c', from = 'c', required = 'yes' }", "field 'c': required is true or false"},
		{"{ 'c', from = 'c', required = true, default = 1 }", "a required field has no default"},
		{"{ 'c', from = 'c', default = print }", "field 'c': default: "},
		{"{ 'c', from = 'c', as = 'integer', default = 'x' }", "default must be json.null or an integer"},
		{"{ 'c', from = 'c', as = 'integer', default = 2.5 }", "default must be json.null or an integer"},
		{"{ 'c', from = 'c', as = 'day_from_s', default = '2022-02-30' }",
		 "default must be json.null or a YYYY-MM-DD day"},
		{"{ 'c', from = 'c', as = 'datetime_from_ms', default = 5 }", "or an ISO 8601 date-time"},
		{"{ 'c', from = 'c', defualt = 5 }", "unknown key 'defualt' (did you mean default?)"},
		{"{ 'c', from = 'c', requierd = true }", "unknown key 'requierd' (did you mean required?)"},
		{"{ 'c', from = 'a..b' }", "from 'a..b' has an empty member name"},
		{"{ 'c', from = '.a' }", "from '.a' has an empty member name"},
		{"{ 'c', from = 'a.' }", "from 'a.' has an empty member name"},
		{"{ 'c', from = 5 }", "from must be a non-empty string"},
		{"{ 'c', context = '' }", "context must be a non-empty string"},
	};
	for (size_t i = 0; i < COUNT_OF(bad); i++) {
		lua_State *L = test_lua_open();
		if (!L)
			return;
		char chunk[1024];
		if (!strncmp(bad[i].fields, "return", 6))
			snprintf(chunk, sizeof chunk, "%s", bad[i].fields);
		else
			snprintf(chunk, sizeof chunk, "return records.declare { list = 'results', fields = { %s } }",
				 bad[i].fields);
		char wrapped[1200];
		snprintf(wrapped, sizeof wrapped,
			 "local ok, err = pcall(function() %s end) return ok and 'accepted' or tostring(err)", chunk);
		test_push_lua(L, wrapped);
		const char *got = lua_tostring(L, -1);
		CHECK(got && strcmp(got, "accepted"), "%s: accepted", chunk);
		CHECK_CONTAINS(got, bad[i].words, chunk);
		if (strncmp(bad[i].fields, "return records.declare()", 24) &&
		    strncmp(bad[i].fields, "return records.declare('", 24))
			CHECK_CONTAINS(got, "records.declare: ", chunk);
		test_lua_close(L);
	}
}

static void declarations_that_work(void)
{
	lua_State *L = test_lua_open();
	if (!L)
		return;
	/* 64 fields is the most; a name may be given as name = ...; any UTF-8 goes in names. */
	struct buf chunk = {0};
	buf_puts(&chunk, "local f = {} for i = 1, 64 do f[i] = { 'f' .. i, from = 'k' .. (i % 7) } end "
			 "f[1] = { name = 'prix_\xe2\x82\xac', from = 'k1' } "
			 "return records.declare { list = 'results', fields = f }");
	test_push_lua(L, buf_cstr(&chunk));
	CHECK(lua_type(L, -1) == LUA_TUSERDATA, "64 fields: got a %s", luaL_typename(L, -1));
	int mapper = lua_gettop(L);
	const char page[] = "{\"results\":[{\"k1\":1,\"k2\":2,\"k0\":0}]}";
	struct mapped m;
	if (map_page(L, mapper, BYTES(page), &m) == LUA_OK && CHECK(records_batch_count(m.batch) == 1, "one record")) {
		const char *data;
		size_t len;
		record_text(&m, 0, &data, &len);
		static const char start[] = "{\"prix_\xe2\x82\xac\":1,\"f2\":2,\"f7\":0,\"f8\":1,\"f9\":2,\"f14\":0,";
		CHECK(len > sizeof start && !memcmp(data, start, sizeof start - 1), "64 fields: %.*s", (int)len, data);
		CHECK(!memcmp(data + len - 8, "\"f64\":1}", 8), "64 fields ends with f64: %.*s", (int)len, data);
	} else {
		CHECK(0, "64 fields: map failed: %s", m.error);
	}
	lua_settop(L, 0);
	buf_free(&chunk);
	test_push_lua(L,
		      "local f = {} for i = 1, 65 do f[i] = { 'f' .. i, from = 'k' } end "
		      "local ok, err = pcall(records.declare, { list = 'results', fields = f }) return tostring(err)");
	CHECK_CONTAINS(lua_tostring(L, -1), "at most 64 fields", "65 fields");
	lua_settop(L, 0);
	/* The paths may have 256 members in all (shared ones count once), not 257. */
	test_push_lua(L, "local f = {} for i = 1, 64 do f[i] = { 'f' .. i, from = 'k' .. i .. '.a.b.c' } end "
			 "return records.declare { list = 'results', fields = f }");
	CHECK(lua_type(L, -1) == LUA_TUSERDATA, "256 path members: got a %s", luaL_typename(L, -1));
	lua_settop(L, 0);
	test_push_lua(L, "local f = {} for i = 1, 64 do f[i] = { 'f' .. i, from = 'k' .. i .. '.a.b.c' } end "
			 "f[64].from = 'k1.a.b.d' f[63].from = 'k1.a.e.f' "
			 "local ok, err = pcall(records.declare, { list = 'results', fields = f }) "
			 "return ok and 'accepted' or tostring(err)");
	CHECK_STR(lua_tostring(L, -1), "accepted", "paths sharing their first members");
	lua_settop(L, 0);
	test_push_lua(L,
		      "local f = {} for i = 1, 64 do f[i] = { 'f' .. i, from = 'k' .. i .. '.a.b.c' } end "
		      "f[64].from = 'k64.a.b.c.d' "
		      "local ok, err = pcall(records.declare, { list = 'results', fields = f }) return tostring(err)");
	CHECK_CONTAINS(lua_tostring(L, -1), "the from paths have more than 256 members in all", "257 path members");
	lua_settop(L, 0);
	test_lua_close(L);
}

/* ---- records ---- */

static void records_of_the_description(void)
{
	lua_State *L = open_with(FULL);
	if (!L)
		return;
	/* members in another order than declared; day_text as a day; a second item with almost
	 * nothing; a third with nulls. */
	const char page[] =
		"{\"ticker\":\"TSLA\",\"results\":["
		"{\"v\":1,\"day_text\":\"2022-03-07\",\"n\":663567,\"c\":804.58,\"t\":1646629200000},"
		"{\"t\":1646715600000},"
		"{\"t\":1646802000000,\"c\":null,\"n\":null,\"day_text\":null}"
		"],\"status\":\"OK\",\"next_url\":\"https://api.polygon.io/v2/aggs/ticker/TSLA?cursor=abc\"}";
	const char *const want[] = {
		"{\"date\":\"2022-03-07\",\"stock_ticker\":\"TSLA\",\"price\":804.58,\"transactions\":663567,\"x\":"
		"\"k\","
		"\"d2\":\"2022-03-07\"}",
		"{\"date\":\"2022-03-08\",\"stock_ticker\":\"TSLA\",\"x\":\"k\"}",
		"{\"date\":\"2022-03-09\",\"stock_ticker\":\"TSLA\",\"price\":null,\"x\":\"k\"}",
	};
	check_records(L, 1, "description", BYTES(page), want, 3,
		      "https://api.polygon.io/v2/aggs/ticker/TSLA?cursor=abc");
	test_lua_close(L);
}

/* The generated cases' random numbers (xorshift: the same cases on every run). */
static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

static unsigned pick(unsigned n)
{
	return (unsigned)(rng() % n);
}

static void numbers_and_the_integer_rule(void)
{
	static const struct {
		const char *in;
		const char *copied;  /* what a plain from field writes */
		const char *integer; /* what as = "integer" writes, NULL: the field is left out */
	} cases[] = {
		{"0", "0", "0"},
		{"-0", "-0", "0"},
		{"27", "27", "27"},
		{"27.0", "27", "27"},
		{"27.50", "27.5", NULL},
		{"1.5", "1.5", NULL},
		{"0.1", "0.1", NULL},
		{"-0.0", "-0", "0"},
		{"1.10", "1.1", NULL},
		{"100", "100", "100"},
		{"9.833403e+06", "9833403", "9833403"},
		{"7.0790813e+07", "70790813", "70790813"},
		{"1.2345678e+06", "1234567.8", NULL},
		{"1E2", "100", "100"},
		{"1e+2", "100", "100"},
		{"1.0e0", "1", "1"},
		{"1e-2", "0.01", NULL},
		{"-1.25E-3", "-0.00125", NULL},
		{"1646629200000", "1646629200000", "1646629200000"},
		{"804.58", "804.58", NULL},
		{"123456789012345678", "123456789012345678", "123456789012345678"},
		{"-9223372036854775808", "-9223372036854775808", "-9223372036854775808"},
		{"9223372036854775808", "9223372036854775808", NULL},
		{"123456789012345678901234567890", "123456789012345678901234567890", NULL},
		{"1e400", "null", NULL},
		{"0.30000000000000004", "0.30000000000000004", NULL},
		{"\"7\"", "\"7\"", NULL},
		{"true", "true", NULL},
		{"null", "null", NULL},
		{"[1.50]", "[1.50]", NULL},
		{"{\"a\":1e2}", "{\"a\":1e2}", NULL},
		/* Inside an object or array, numbers stay as spelt, but for those past a double's range,
		 * which the Lua loop writes as null, as it does at the top. */
		{"{\"a\":1e400,\"b\":[-1E+999,1e308,\"1e400\"],\"c\":1.50}",
		 "{\"a\":null,\"b\":[null,1e308,\"1e400\"],\"c\":1.50}", NULL},
		{"[1e-400,12345e305,{\"\\\"\":99e999}]", "[1e-400,null,{\"\\\"\":null}]", NULL},
		{"[1e100,0.5e-999]", "[1e100,0.5e-999]", NULL},
	};
	lua_State *L = open_with("return records.declare { list = 'results', fields = {"
				 " { 'copied', from = 'v' }, { 'integer', from = 'v', as = 'integer' } } }");
	if (!L)
		return;
	for (size_t i = 0; i < COUNT_OF(cases); i++) {
		char page[256], want[256];
		snprintf(page, sizeof page, "{\"results\":[{\"v\":%s}]}", cases[i].in);
		if (cases[i].integer)
			snprintf(want, sizeof want, "{\"copied\":%s,\"integer\":%s}", cases[i].copied,
				 cases[i].integer);
		else
			snprintf(want, sizeof want, "{\"copied\":%s}", cases[i].copied);
		ONE_RECORD(L, 1, cases[i].in, page, want, NULL);
	}
	test_lua_close(L);
}

/* Numbers with an exponent, followed by enough of the page for the walk's 16-byte moves (the
 * cases above end their pages at once, which takes the general path): each is written as the
 * runtime's shortest form of the double it reads as, by both writers (the first item is read
 * member by member, the second from the learnt shape's plan). Mantissas of 1 to 9 digits with 0
 * to 9 decimals, trailing zeros or not, exponents -20 to 20 spelt e, E, e+ and E-. */
static void numbers_with_an_exponent_in_a_long_page(void)
{
	lua_State *L = open_with("return records.declare { list = 'results', fields = { { 'v', from = 'v' } } }");
	if (!L)
		return;
	for (int i = 0; i < 4000; i++) {
		char number[64];
		int at = 0;
		unsigned whole = 1 + pick(9), fraction = pick(10);
		int exponent = (int)pick(41) - 20;
		number[at++] = (char)('1' + pick(9));
		for (unsigned k = 1; k < whole; k++)
			number[at++] = (char)('0' + pick(10));
		if (fraction) {
			number[at++] = '.';
			for (unsigned k = 0; k < fraction; k++)
				number[at++] = (char)('0' + pick(10));
		}
		static const char *const spellings[] = {"e", "E", "e+", "E+"};
		at += snprintf(number + at, sizeof number - (size_t)at, "%s%d",
			       exponent < 0 ? (pick(2) ? "e" : "E") : spellings[pick(4)], exponent);
		char want_text[JSON_NUMBER_MAX + 1];
		want_text[json_double_text(strtod(number, NULL), want_text)] = 0;
		char page[512], want[128];
		snprintf(page, sizeof page,
			 "{\"results\":[{\"v\":%s,\"pad\":\"0123456789012345678901234567890123456789\"},"
			 "{\"v\":%s,\"pad\":\"0123456789012345678901234567890123456789\"}],\"status\":\"OK\"}",
			 number, number);
		snprintf(want, sizeof want, "{\"v\":%s}", want_text);
		const char *const wants[] = {want, want};
		check_records(L, 1, number, page, strlen(page), wants, 2, NULL);
	}
	test_lua_close(L);
}

/* Item 2 of a page gives the same record, day column and outcome read member by member (after
 * an item of another shape) as after first, an item of its shape (read from the learnt shape:
 * by the structural index where 192 bytes of the page follow the item, else eight bytes at a
 * time). A member after the list gives every item those bytes. */
static void check_column_alone_and_after(lua_State *L, const char *first, const char *item, int column)
{
	/* An item of another shape as long as first, so that errors name the same byte. */
	char other[300];
	size_t pad = strlen(first) > 12 && strlen(first) < sizeof other ? strlen(first) - 12 : 0;
	snprintf(other, sizeof other, "{\"other\":\"%0*d\"}", (int)pad, 0);
	if (!pad)
		strcpy(other, "{\"other\":1}");
	char alone_text[1200], after_text[1200];
	snprintf(alone_text, sizeof alone_text, "{\"results\":[%s,%s],\"request_id\":\"%0250d\"}", other, item, 0);
	snprintf(after_text, sizeof after_text, "{\"results\":[%s,%s],\"request_id\":\"%0250d\"}", first, item, 0);
	struct mapped alone, after;
	int top = lua_gettop(L);
	if (map_page(L, 1, alone_text, strlen(alone_text), &alone) != LUA_OK ||
	    map_page(L, 1, after_text, strlen(after_text), &after) != LUA_OK) {
		CHECK(0, "%s: map raised %s%s", item, alone.error, after.error);
		lua_settop(L, top);
		return;
	}
	if (!CHECK(alone.outcome == after.outcome && !strcmp(alone.why, after.why),
		   "%s: outcome %d (%s) alone, %d (%s) after an item of its shape", item, (int)alone.outcome, alone.why,
		   (int)after.outcome, after.why) ||
	    alone.outcome != RECORDS_OK ||
	    !CHECK(records_batch_count(after.batch) == 2, "%s: %zu records", item, records_batch_count(after.batch))) {
		lua_settop(L, top);
		return;
	}
	const char *a, *b;
	size_t alen, blen;
	int64_t day_alone, day_after;
	records_batch_get(alone.batch, 1, column, &a, &alen, &day_alone);
	records_batch_get(after.batch, 1, column, &b, &blen, &day_after);
	test_check_bytes(b, blen, a, alen, __FILE__, __LINE__, item);
	CHECK(day_alone == day_after, "%s: day column %lld alone, %lld after", item, (long long)day_alone,
	      (long long)day_after);
	lua_settop(L, top);
}

/* The same for a mapper whose first value column is column 0. */
static void check_alone_and_after(lua_State *L, const char *first, const char *item)
{
	check_column_alone_and_after(L, first, item, 0);
}

/* An item read after one of the same members (the learnt shape, and its planned record) gives
 * the record, day column and error it gives read member by member (after an item of another
 * shape, so that both are item 2 of their page). */
static void items_of_a_learnt_shape_as_alone(void)
{
#define BASE "{\"t\":1646629200000,\"c\":27.17,\"n\":96068,\"day_text\":\"2022-03-07\"}"
	static const struct {
		const char *first, *item;
	} cases[] = {
		{BASE, "{\"t\":1646629200000,\"c\":9.833403e+06,\"n\":-0,\"day_text\":\"2022-03-07\"}"},
		{BASE, "{\"t\":1646629200000,\"c\":27.10,\"n\":-7,\"day_text\":\"2022-03-07\"}"},
		{BASE, "{\"t\":1646629200000,\"c\":27.10,\"n\":5.0,\"day_text\":\"2022-03-07\"}"},
		{BASE, "{\"t\":1646629200000,\"c\":1e400,\"n\":1e2,\"day_text\":null}"},
		{BASE, "{\"t\":null,\"c\":\"x\",\"n\":\"5\",\"day_text\":\"2022-03-07\"}"},
		{BASE, "{\"t\":1646629200000.5,\"c\":[1.50],\"n\":null,\"day_text\":\"2022-03-07\"}"},
		{BASE, "{\"t\":-1646629200000,\"c\":-0.0,\"n\":123456789012345678,\"day_text\":\"2022-03-07\"}"},
		{BASE, "{\"t\":99999999999999,\"c\":0.000001,\"n\":1,\"day_text\":\"2022-03-07\"}"},
		{BASE, "{\"t\":1e3,\"c\":{\"a\":1},\"n\":1,\"day_text\":\"2022-03-07\"}"},
		{BASE, "{\"t\":1646629200000,\"c\":{\"a\":[1e400,1.50]},\"n\":1,\"day_text\":\"2022-03-07\"}"},
		{BASE, "{\"t\":253402318800000,\"c\":1,\"n\":1,\"day_text\":\"2022-03-07\"}"},
		{BASE, "{\"t\":1646629200000,\"c\":1.2345678e+06,\"n\":7,\"day_text\":\"2022-02-30\"}"},
		{BASE, "{\"t\":\"1646629200000\",\"c\":1,\"n\":1,\"day_text\":\"2022-03-07\"}"},
		{BASE, "{\"t\":123456789,\"c\":12345678901234567890,\"n\":1,\"day_text\":\"2022-03-07\"}"},
		/* Across New York's spring change (13 March 2022) and a year's end, from one cached offset. */
		{"{\"t\":1646974800000,\"c\":1,\"n\":1,\"day_text\":\"2022-03-11\"}",
		 "{\"t\":1647230400000,\"c\":1,\"n\":1,\"day_text\":\"2022-03-14\"}"},
		{"{\"t\":1640840400000,\"c\":1,\"n\":1,\"day_text\":\"2021-12-30\"}",
		 "{\"t\":1641013200000,\"c\":1,\"n\":1,\"day_text\":\"2022-01-01\"}"},
		/* The first declared field without its member, and a member given twice. */
		{"{\"c\":1,\"n\":2}", "{\"c\":3.50,\"n\":4}"},
		{"{\"c\":1,\"c\":2,\"t\":1646629200000}", "{\"c\":1,\"c\":2.0,\"t\":1646629200000}"},
		{"{\"n\":1}", "{\"n\":-0}"},
	};
#undef BASE
	lua_State *L = open_with(FULL);
	if (!L)
		return;
	for (size_t i = 0; i < COUNT_OF(cases); i++)
		check_alone_and_after(L, cases[i].first, cases[i].item);
	test_lua_close(L);
}

/* One spelling of a JSON value, valid or not: numbers of every form (signs, leading zeros, long
 * runs, points without digits, exponents with and without sign and digits, up to three), with now
 * and then a space, a string, a literal or a stray byte. */
static void random_value(char *out, size_t cap)
{
	switch (pick(16)) {
	case 0: snprintf(out, cap, "\"%u,}\"", pick(1000)); return;
	case 1: snprintf(out, cap, "%s", pick(2) ? "null" : "true"); return;
	default: break;
	}
	size_t at = 0;
#define PUT(c) (at + 1 < cap ? (void)(out[at++] = (char)(c)) : (void)0)
	if (pick(8) == 0)
		PUT('-');
	unsigned whole = pick(19);
	for (unsigned k = 0; k < whole; k++)
		PUT(k == 0 && pick(5) ? '1' + pick(9) : '0' + pick(10));
	if (pick(3)) {
		PUT('.');
		unsigned fraction = pick(18);
		for (unsigned k = 0; k < fraction; k++)
			PUT('0' + pick(10));
	}
	if (pick(4) == 0) {
		PUT(pick(2) ? 'e' : 'E');
		if (pick(3))
			PUT(pick(2) ? '+' : '-');
		unsigned digits = pick(4);
		for (unsigned k = 0; k < digits; k++)
			PUT('0' + pick(10));
	}
	if (pick(29) == 0)
		PUT(' ');
	else if (pick(31) == 0)
		PUT('x');
#undef PUT
	out[at] = 0;
}

/* Items of four numbers of every spelling, valid or not (random_value), each read member by
 * member and from the learnt shape (mostly by the structural index): the same records, day
 * columns and errors. */
static void generated_items_alone_and_after(void)
{
	lua_State *L = open_with(FULL);
	if (!L)
		return;
	for (int i = 0; i < 3000; i++) {
		char c[64], n[64], v[64], vw[64], item[400];
		random_value(c, sizeof c);
		random_value(n, sizeof n);
		random_value(v, sizeof v);
		random_value(vw, sizeof vw);
		snprintf(item, sizeof item, "{\"t\":1646629200000,\"c\":%s,\"n\":%s,\"v\":%s,\"vw\":%s}", c, n, v, vw);
		check_alone_and_after(L, "{\"t\":1646629200000,\"c\":1,\"n\":2,\"v\":3,\"vw\":4}", item);
	}
	test_lua_close(L);
}

static void strings_are_copied_verbatim(void)
{
	lua_State *L = open_with(ONE);
	if (!L)
		return;
	static const char *const strings[] = {
		"\"\"",
		"\"plain\"",
		"\"caf\xc3\xa9 \xe2\x9c\x93 \xf0\x9d\x84\x9e \xf4\x8f\xbf\xbf \x7f\"",
		"\"caf\\u00e9 \\\"q\\\" \\\\ \\/ \\b\\f\\n\\r\\t \\u0000 \\ud834\\udd1e \\uDBFF\\uDFFF\"",
		"\"\\u20AC\\u20ac\"",
	};
	for (size_t i = 0; i < COUNT_OF(strings); i++) {
		char page[256], want[256];
		snprintf(page, sizeof page, "{\"results\":[{\"c\":%s}]}", strings[i]);
		snprintf(want, sizeof want, "{\"c\":%s}", strings[i]);
		ONE_RECORD(L, 1, strings[i], page, want, NULL);
	}
	/* batch[i] decodes a record back: the escapes come out as their characters. */
	test_push_lua(L, "return function(m, r) local b = m:map({}, r) return b[1].c end");
	lua_pushvalue(L, 1);
	lua_pushliteral(L, "u");
	const char page[] = "{\"results\":[{\"c\":\"caf\\u00e9 \\ud834\\udd1e\"}]}";
	records_push_response(L, 200, -1, BYTES(page));
	lua_remove(L, -2);
	if (CHECK(lua_pcall(L, 2, 1, 0) == LUA_OK, "batch[1]: %s", lua_tostring(L, -1)))
		CHECK_STR(lua_tostring(L, -1), "caf\xc3\xa9 \xf0\x9d\x84\x9e", "batch[1].c");
	test_lua_close(L);
}

static void absent_null_and_declared_order(void)
{
	lua_State *L =
		open_with("return records.declare { list = 'results', fields = {"
			  " { 'a', from = 'a' }, { 'b', from = 'b', as = 'integer' }, { 'c', from = 'c', as = 'day' },"
			  " { 'd', from = 'd', as = 'day_from_ms' }, { 'e', from = 'a' } } }");
	if (!L)
		return;
	const char page[] = "{\"results\":["
			    "{\"d\":0,\"c\":\"2022-03-01\",\"b\":2,\"a\":1},"
			    "{},"
			    "{\"a\":null,\"b\":null,\"c\":null,\"d\":null},"
			    "{\"z\":1,\"b\":1.5},"
			    "{\"a\":{},\"d\":-86400000}"
			    "]}";
	const char *const want[] = {
		"{\"a\":1,\"b\":2,\"c\":\"2022-03-01\",\"d\":\"1970-01-01\",\"e\":1}",
		"{}",
		"{\"a\":null,\"e\":null}",
		"{}",
		"{\"a\":{},\"d\":\"1969-12-31\",\"e\":{}}",
	};
	check_records(L, 1, "absent and null", BYTES(page), want, COUNT_OF(want), NULL);
	test_lua_close(L);
}

/* The declaration of the nested paths' cases: a member copied and gone through, paths of three
 * levels, two paths through one object, one ending at a member a deeper path goes on from. */
static const char NESTED[] = "return records.declare { list = 'results', fields = {\n"
			     "  { 'id', from = 'id' },\n"
			     "  { 'email', from = 'properties.email' },\n"
			     "  { 'first', from = 'properties.firstname', as = 'integer' },\n"
			     "  { 'props', from = 'properties' },\n"
			     "  { 'abc', from = 'a.b.c' },\n"
			     "  { 'ab', from = 'a.b' },\n"
			     "  { 'abd', from = 'a.b.d', as = 'day' },\n"
			     "} }";

static void nested_paths(void)
{
	lua_State *L = open_with(NESTED);
	if (!L)
		return;
	const char page[] =
		"{\"results\":["
		/* everything there, in another order than declared, other members around */
		"{\"a\":{\"x\":1,\"b\":{\"d\":\"2022-03-01\",\"c\":[1,2.50]}},\"id\":1,"
		"\"properties\":{\"email\":\"e@x\",\"z\":{\"email\":0},\"firstname\":7.0}},"
		/* parents that are not objects: the paths find nothing, the parents are copied */
		"{\"id\":2,\"properties\":null,\"a\":{\"b\":[{\"c\":1}]}},"
		"{\"id\":3,\"properties\":\"p\",\"a\":7},"
		/* a segment missing on the way, and an empty object */
		"{\"id\":4,\"properties\":{},\"a\":{\"c\":{\"b\":1}}},"
		/* a parent given twice: the last one counts, and what the first held is gone */
		"{\"id\":5,\"properties\":{\"email\":\"old\",\"firstname\":1},\"properties\":{\"firstname\":2}},"
		"{\"id\":6,\"a\":{\"b\":{\"c\":1}},\"a\":null},"
		/* a nested member given twice; names spelt with escapes; space everywhere */
		"{ \"id\" : 7 , \"pro\\u0070erties\" : { \"email\" : 1 , \"em\\u0061il\" : \"two\" } ,"
		" \"a\" : { \"b\" : { \"c\" : { } } } }"
		"]}";
	const char *const want[] = {
		"{\"id\":1,\"email\":\"e@x\",\"first\":7,\"props\":{\"email\":\"e@x\",\"z\":{\"email\":0},"
		"\"firstname\":7.0},"
		"\"abc\":[1,2.50],\"ab\":{\"d\":\"2022-03-01\",\"c\":[1,2.50]},\"abd\":\"2022-03-01\"}",
		"{\"id\":2,\"props\":null,\"ab\":[{\"c\":1}]}",
		"{\"id\":3,\"props\":\"p\"}",
		"{\"id\":4,\"props\":{}}",
		"{\"id\":5,\"first\":2,\"props\":{\"firstname\":2}}",
		"{\"id\":6}",
		"{\"id\":7,\"email\":\"two\",\"props\":{ \"email\" : 1 , \"em\\u0061il\" : \"two\" },\"abc\":{ },"
		"\"ab\":{ \"c\" : { } }}",
	};
	check_records(L, 1, "nested paths", BYTES(page), want, COUNT_OF(want), NULL);
	test_lua_close(L);
}

/* Items of one learnt shape whose nested members differ from item to item: each written as when
 * read alone (the plan is for the nested values of the item it was learnt from). */
static void nested_paths_of_a_learnt_shape(void)
{
	static const struct {
		const char *first, *item;
	} cases[] = {
		{"{\"id\":1,\"properties\":{\"email\":\"a\",\"firstname\":1}}",
		 "{\"id\":2,\"properties\":{\"email\":\"b\"}}"},
		{"{\"id\":1,\"properties\":{\"email\":\"a\"}}",
		 "{\"id\":2,\"properties\":{\"email\":\"b\",\"firstname\":2}}"},
		{"{\"id\":1,\"properties\":{\"email\":\"a\"}}", "{\"id\":2,\"properties\":{\"firstname\":2}}"},
		{"{\"id\":1,\"properties\":{\"email\":\"a\"}}", "{\"id\":2,\"properties\":null}"},
		{"{\"id\":1,\"properties\":null}", "{\"id\":2,\"properties\":{\"email\":\"b\"}}"},
		{"{\"id\":1,\"properties\":{\"email\":\"a\"}}", "{\"id\":2,\"properties\":{\"firstname\":2.5}}"},
		{"{\"id\":1,\"properties\":{\"email\":\"a\"}}", "{\"id\":2,\"properties\":{\"email\":1e400}}"},
		{"{\"id\":1,\"a\":{\"b\":{\"c\":1,\"d\":\"2022-03-01\"}}}",
		 "{\"id\":2,\"a\":{\"b\":{\"d\":\"2022-02-30\"}}}"},
		{"{\"id\":1,\"a\":{\"b\":{\"c\":1}}}", "{\"id\":2,\"a\":{\"b\":{\"c\":2},\"b\":7}}"},
		{"{\"id\":1,\"a\":{\"b\":{\"c\":1}}}", "{\"id\":2,\"a\":1}"},
		{"{\"id\":1,\"properties\":{\"email\":\"a\"}}", "{\"id\":2,\"properties\":{\"email\":\"a\",}}"},
		{"{\"id\":1,\"properties\":{\"email\":\"a\"}}", "{\"id\":2,\"properties\":{\"email\":\"a\"]}"},
	};
	lua_State *L = open_with(NESTED);
	if (!L)
		return;
	for (size_t i = 0; i < COUNT_OF(cases); i++)
		check_alone_and_after(L, cases[i].first, cases[i].item);
	test_lua_close(L);
}

/* Through a path, the objects count towards the limit as everywhere: 1000 levels are read, 1001
 * are too deep, whether the levels are on the path or under its end. */
static void nested_paths_at_the_depth_limit(void)
{
	lua_State *L = open_with("return records.declare { list = 'results', fields = {"
				 " { 'v', from = 'a.a.a' }, { 'w', from = 'b.x' } } }");
	if (!L)
		return;
	/* The page, the list and the item are three levels; the objects under a the rest. */
	for (int extra = 0; extra <= 1; extra++) {
		int objects = JSON_MAX_DEPTH - 3 + extra;
		struct buf page = {0}, want = {0};
		buf_puts(&page, "{\"results\":[{\"b\":{\"x\":1},\"a\":");
		for (int i = 0; i < objects; i++)
			buf_puts(&page, "{\"a\":");
		buf_puts(&page, "1");
		for (int i = 0; i < objects; i++)
			buf_putc(&page, '}');
		buf_puts(&page, "}]}");
		if (!extra) {
			/* a.a.a is the third object */
			buf_puts(&want, "{\"v\":");
			for (int i = 2; i < objects; i++)
				buf_puts(&want, "{\"a\":");
			buf_puts(&want, "1");
			for (int i = 2; i < objects; i++)
				buf_putc(&want, '}');
			buf_puts(&want, ",\"w\":1}");
			const char *const wants[] = {buf_cstr(&want)};
			check_records(L, 1, "1000 levels through a path", page.data, page.len, wants, 1, NULL);
		} else {
			check_shape_error(L, 1, "1001 levels through a path", page.data, page.len,
					  "nests deeper than 1000 levels");
		}
		buf_free(&page);
		buf_free(&want);
	}
	test_lua_close(L);
}

/* as = "number", "string" and "boolean", each value alone in an item: what each field writes ("-"
 * where it leaves the field out). */
static void number_string_and_boolean(void)
{
	static const struct {
		const char *value, *number, *string, *boolean;
	} cases[] = {
		{"12", "12", "\"12\"", "-"},
		{"12.50", "12.5", "\"12.50\"", "-"},
		{"1e2", "100", "\"1e2\"", "-"},
		{"-0", "-0", "\"-0\"", "-"},
		{"123456789012345678901234567890", "123456789012345678901234567890",
		 "\"123456789012345678901234567890\"", "-"},
		{"1e400", "null", "\"1e400\"", "-"},
		{"\"12.5\"", "12.5", "\"12.5\"", "-"},
		{"\"12.50\"", "12.5", "\"12.50\"", "-"},
		{"\"-1E+2\"", "-100", "\"-1E+2\"", "-"},
		{"\"0.25\"", "0.25", "\"0.25\"", "-"},
		{"\"\\u0031\\u0032.5\"", "12.5", "\"\\u0031\\u0032.5\"", "-"},
		{"\"98765432109876543210\"", "98765432109876543210", "\"98765432109876543210\"", "-"},
		/* strings that are not JSON numbers */
		{"\" 12\"", "-", "\" 12\"", "-"},
		{"\"12 \"", "-", "\"12 \"", "-"},
		{"\"\"", "-", "\"\"", "-"},
		{"\"-\"", "-", "\"-\"", "-"},
		{"\"1.\"", "-", "\"1.\"", "-"},
		{"\".5\"", "-", "\".5\"", "-"},
		{"\"01\"", "-", "\"01\"", "-"},
		{"\"+1\"", "-", "\"+1\"", "-"},
		{"\"1e\"", "-", "\"1e\"", "-"},
		{"\"1e+\"", "-", "\"1e+\"", "-"},
		{"\"0x10\"", "-", "\"0x10\"", "-"},
		{"\"NaN\"", "-", "\"NaN\"", "-"},
		{"\"12a\"", "-", "\"12a\"", "-"},
		/* booleans, and strings that are one */
		{"true", "-", "\"true\"", "true"},
		{"false", "-", "\"false\"", "false"},
		{"\"true\"", "-", "\"true\"", "true"},
		{"\"false\"", "-", "\"false\"", "false"},
		{"\"tru\\u0065\"", "-", "\"tru\\u0065\"", "true"},
		{"\"True\"", "-", "\"True\"", "-"},
		{"\"yes\"", "-", "\"yes\"", "-"},
		{"1", "1", "\"1\"", "-"},
		/* null, objects and arrays are none of them */
		{"null", "-", "-", "-"},
		{"{}", "-", "-", "-"},
		{"[1]", "-", "-", "-"},
	};
	lua_State *L = open_with("return records.declare { list = 'results', fields = {"
				 " { 'n', from = 'v', as = 'number' }, { 's', from = 'v', as = 'string' },"
				 " { 'b', from = 'v', as = 'boolean' } } }");
	if (!L)
		return;
	for (size_t i = 0; i < COUNT_OF(cases); i++) {
		char page[300], want[300];
		snprintf(page, sizeof page, "{\"results\":[{\"v\":%s}]}", cases[i].value);
		struct buf record = {0};
		const char *values[] = {cases[i].number, cases[i].string, cases[i].boolean};
		const char *names[] = {"n", "s", "b"};
		for (int k = 0; k < 3; k++)
			if (strcmp(values[k], "-"))
				buf_printf(&record, "%s\"%s\":%s", record.len ? "," : "", names[k], values[k]);
		snprintf(want, sizeof want, "{%s}", record.len ? record.data : "");
		buf_free(&record);
		const char *const wants[] = {want};
		check_records(L, 1, cases[i].value, page, strlen(page), wants, 1, NULL);
	}
	/* After an item of the same shape, whose plan writes each field: the same records. */
	for (size_t i = 0; i < COUNT_OF(cases); i++) {
		char item[100];
		snprintf(item, sizeof item, "{\"v\":%s}", cases[i].value);
		check_column_alone_and_after(L, "{\"v\":1}", item, -1);
		check_column_alone_and_after(L, "{\"v\":true}", item, -1);
	}
	test_lua_close(L);
}

static const char EPOCHS[] = "return records.declare { list = 'results', fields = {"
			     " { 'ms', from = 'ms', as = 'datetime_from_ms' },"
			     " { 's', from = 's', as = 'datetime_from_s' },"
			     " { 'ny', from = 's', as = 'day_from_s', zone = 'America/New_York' },"
			     " { 'utc', from = 's', as = 'day_from_s' } } }";

/* datetime_from_ms, datetime_from_s and day_from_s: texts, rounding down, negative epochs, New
 * York's changes of offset, the years' bounds, and the columns the engine reads. */
static void epoch_fields(void)
{
	static const struct {
		const char *item, *record;
		int64_t ms_column, ny_column; /* RECORDS_NO_VALUE: none */
	} cases[] = {
		{"{\"ms\":0,\"s\":0}",
		 "{\"ms\":\"1970-01-01T00:00:00Z\",\"s\":\"1970-01-01T00:00:00Z\",\"ny\":\"1969-12-31\",\"utc\":"
		 "\"1970-01-01\"}",
		 0, -1},
		{"{\"ms\":-1,\"s\":-1}",
		 "{\"ms\":\"1969-12-31T23:59:59.999Z\",\"s\":\"1969-12-31T23:59:59Z\",\"ny\":\"1969-12-31\",\"utc\":"
		 "\"1969-12-31\"}",
		 -1000, -1},
		{"{\"ms\":1646629200123}", "{\"ms\":\"2022-03-07T05:00:00.123Z\"}", 1646629200123000, RECORDS_NO_VALUE},
		{"{\"ms\":1646629200120}", "{\"ms\":\"2022-03-07T05:00:00.120Z\"}", 1646629200120000, RECORDS_NO_VALUE},
		{"{\"ms\":1646629200001}", "{\"ms\":\"2022-03-07T05:00:00.001Z\"}", 1646629200001000, RECORDS_NO_VALUE},
		/* fractions of a unit are rounded down, to the millisecond */
		{"{\"ms\":1646629200000.7}", "{\"ms\":\"2022-03-07T05:00:00Z\"}", 1646629200000000, RECORDS_NO_VALUE},
		{"{\"ms\":-1.5}", "{\"ms\":\"1969-12-31T23:59:59.998Z\"}", -2000, RECORDS_NO_VALUE},
		{"{\"ms\":1.6466292e12}", "{\"ms\":\"2022-03-07T05:00:00Z\"}", 1646629200000000, RECORDS_NO_VALUE},
		{"{\"ms\":16466292001e2}", "{\"ms\":\"2022-03-07T05:00:00.100Z\"}", 1646629200100000, RECORDS_NO_VALUE},
		{"{\"s\":1646629200.5}",
		 "{\"s\":\"2022-03-07T05:00:00.500Z\",\"ny\":\"2022-03-07\",\"utc\":\"2022-03-07\"}", RECORDS_NO_VALUE,
		 19058},
		{"{\"s\":1e9}", "{\"s\":\"2001-09-09T01:46:40Z\",\"ny\":\"2001-09-08\",\"utc\":\"2001-09-09\"}",
		 RECORDS_NO_VALUE, 11573},
		/* New York's spring change (2022-03-13 07:00 UTC) and autumn change (2022-11-06 06:00 UTC) */
		{"{\"s\":1647143999}", "{\"s\":\"2022-03-13T03:59:59Z\",\"ny\":\"2022-03-12\",\"utc\":\"2022-03-13\"}",
		 RECORDS_NO_VALUE, 19063},
		{"{\"s\":1647154800}", "{\"s\":\"2022-03-13T07:00:00Z\",\"ny\":\"2022-03-13\",\"utc\":\"2022-03-13\"}",
		 RECORDS_NO_VALUE, 19064},
		{"{\"s\":1667707199}", "{\"s\":\"2022-11-06T03:59:59Z\",\"ny\":\"2022-11-05\",\"utc\":\"2022-11-06\"}",
		 RECORDS_NO_VALUE, 19301},
		{"{\"s\":1667707200}", "{\"s\":\"2022-11-06T04:00:00Z\",\"ny\":\"2022-11-06\",\"utc\":\"2022-11-06\"}",
		 RECORDS_NO_VALUE, 19302},
		/* the first and last instants of the years 1000 to 9999 */
		{"{\"ms\":-30610224000000}", "{\"ms\":\"1000-01-01T00:00:00Z\"}", -30610224000000000, RECORDS_NO_VALUE},
		{"{\"ms\":253402300799999}", "{\"ms\":\"9999-12-31T23:59:59.999Z\"}", 253402300799999000,
		 RECORDS_NO_VALUE},
		{"{\"s\":253402300799}",
		 "{\"s\":\"9999-12-31T23:59:59Z\",\"ny\":\"9999-12-31\",\"utc\":\"9999-12-31\"}", RECORDS_NO_VALUE,
		 2932896},
		/* null leaves them out */
		{"{\"ms\":null,\"s\":null}", "{}", RECORDS_NO_VALUE, RECORDS_NO_VALUE},
	};
	lua_State *L = open_with(EPOCHS);
	if (!L)
		return;
	for (size_t i = 0; i < COUNT_OF(cases); i++) {
		char page[300];
		snprintf(page, sizeof page, "{\"results\":[%s]}", cases[i].item);
		const char *const wants[] = {cases[i].record};
		check_records(L, 1, cases[i].item, page, strlen(page), wants, 1, NULL);
		struct mapped m;
		if (map_page(L, 1, page, strlen(page), &m) == LUA_OK && m.outcome == RECORDS_OK) {
			const char *data;
			size_t len;
			int64_t ms, ny;
			records_batch_get(m.batch, 0, records_batch_column(m.batch, "ms", CURSOR_DATETIME), &data, &len,
					  &ms);
			records_batch_get(m.batch, 0, records_batch_column(m.batch, "ny", CURSOR_DAY), &data, &len,
					  &ny);
			CHECK(ms == cases[i].ms_column, "%s: ms column %lld", cases[i].item, (long long)ms);
			if (cases[i].ny_column != -1)
				CHECK(ny == cases[i].ny_column, "%s: ny column %lld", cases[i].item, (long long)ny);
		}
		lua_settop(L, 1);
		check_alone_and_after(L, "{\"ms\":1,\"s\":1}", cases[i].item);
	}
	static const struct {
		const char *item, *words;
	} errors[] = {
		{"{\"ms\":\"1646629200000\"}", "item 1 of 'results': 'ms' is a string, not a number of milliseconds"},
		{"{\"s\":true}", "item 1 of 'results': 's' is a boolean, not a number of seconds"},
		{"{\"s\":{}}", "'s' is an object, not a number of seconds"},
		{"{\"ms\":-30610224000001}", "'ms' = -30610224000001 ms is not a time in the years 1000 to 9999"},
		{"{\"ms\":253402300800000}", "'ms' = 253402300800000 ms is not a time"},
		{"{\"ms\":1e300}", "'ms' = 1e300 ms is not a time"},
		{"{\"ms\":-1e400}", "'ms' = -1e400 ms is not a time"},
		{"{\"s\":253402300800}", "'s' = 253402300800 s is not a time"},
		{"{\"s\":9223372036854775807}", "'s' = 9223372036854775807 s is not a time"},
		/* 1000-01-01 in UTC is 999-12-31 in New York */
		{"{\"s\":-30610224000}", "'s' = -30610224000 s is not a time in the years 1000 to 9999"},
	};
	for (size_t i = 0; i < COUNT_OF(errors); i++) {
		char page[300];
		snprintf(page, sizeof page, "{\"results\":[%s]}", errors[i].item);
		check_shape_error(L, 1, errors[i].item, page, strlen(page), errors[i].words);
	}
	test_lua_close(L);
}

#define DEFAULT_FIELDS                                                                              \
	"return records.declare { list = 'results', fields = {"                                     \
	" { 'i', from = 'i', as = 'integer', default = 0 }, { 'a', from = 'a', default = 'none' }," \
	" { 'd', from = 'p.d', as = 'day', default = '2022-01-01' },"                               \
	" { 'o', from = 'p.o', default = { x = 1 } }, { 'n', from = 'n', as = 'number', default = json.null },"
static const char DEFAULTS[] = DEFAULT_FIELDS " { 'r', from = 'p.r', required = true } } }";
static const char DEFAULTS_NOT_REQUIRED[] = DEFAULT_FIELDS " { 'r', from = 'p.r' } } }";

/* default: written wherever the field would be left out (the path finds nothing, or as leaves the
 * value out), its column with it; required: an item whose path finds nothing is an error. */
static void defaults_and_required_fields(void)
{
	lua_State *L = open_with(DEFAULTS);
	if (!L)
		return;
	const char page[] = "{\"results\":["
			    "{\"a\":1,\"i\":5,\"p\":{\"d\":\"2022-03-01\",\"o\":[],\"r\":1},\"n\":\"3\"},"
			    "{\"p\":{\"r\":null}},"
			    "{\"a\":null,\"i\":2.5,\"p\":{\"r\":true,\"d\":null},\"n\":\"x\"}"
			    "]}";
	const char *const want[] = {
		"{\"i\":5,\"a\":1,\"d\":\"2022-03-01\",\"o\":[],\"n\":3,\"r\":1}",
		"{\"i\":0,\"a\":\"none\",\"d\":\"2022-01-01\",\"o\":{\"x\":1},\"n\":null,\"r\":null}",
		"{\"i\":0,\"a\":null,\"d\":\"2022-01-01\",\"o\":{\"x\":1},\"n\":null,\"r\":true}",
	};
	check_records(L, 1, "defaults", BYTES(page), want, COUNT_OF(want), NULL);
	struct mapped m;
	if (map_page(L, 1, BYTES(page), &m) == LUA_OK && m.outcome == RECORDS_OK) {
		int i_column = records_batch_column(m.batch, "i", CURSOR_INTEGER);
		int d_column = records_batch_column(m.batch, "d", CURSOR_DAY);
		static const int64_t is[] = {5, 0, 0}, ds[] = {19052, 18993, 18993};
		for (size_t k = 0; k < 3; k++) {
			const char *data;
			size_t len;
			int64_t i, d;
			records_batch_get(m.batch, k, i_column, &data, &len, &i);
			records_batch_get(m.batch, k, d_column, &data, &len, &d);
			CHECK(i == is[k] && d == ds[k], "record %zu: columns i %lld, d %lld", k + 1, (long long)i,
			      (long long)d);
		}
	}
	lua_settop(L, 1);
	static const struct {
		const char *page, *words;
	} errors[] = {
		{"{\"results\":[{\"p\":{\"r\":1}},{\"p\":{}}]}",
		 "item 2 of 'results': field 'r' is required, and its path 'p.r' finds nothing"},
		{"{\"results\":[{\"p\":5}]}", "item 1 of 'results': field 'r' is required, and its path 'p.r'"},
		{"{\"results\":[{}]}", "item 1 of 'results': field 'r' is required"},
	};
	for (size_t i = 0; i < COUNT_OF(errors); i++)
		check_shape_error(L, 1, errors[i].page, errors[i].page, strlen(errors[i].page), errors[i].words);
	test_lua_close(L);
	/* Items of one shape with and without values: the plan writes the same records and columns
	 * (an item of another shape comes first on one page: r is not required here). */
	if (!(L = open_with(DEFAULTS_NOT_REQUIRED)))
		return;
	static const char *const items[] = {
		"{\"i\":5,\"a\":1,\"p\":{\"r\":1,\"d\":\"2022-03-01\",\"o\":2},\"n\":1}",
		"{\"i\":2.5,\"a\":1,\"p\":{\"r\":1},\"n\":\"x\"}",
		"{\"i\":null,\"a\":null,\"p\":{\"r\":1,\"d\":null,\"o\":null},\"n\":null}",
		"{\"i\":7,\"a\":1,\"p\":{\"d\":\"2022-03-01\"},\"n\":1}",
		"{\"i\":7,\"p\":{\"r\":1}}",
	};
	for (size_t i = 0; i < COUNT_OF(items); i++)
		for (size_t k = 0; k < COUNT_OF(items); k++)
			check_alone_and_after(L, items[i], items[k]);
	test_lua_close(L);
}

/* A copied object or array spelt over several lines is written on one (each line break a space):
 * its RECORD message is one line of the protocol. */
static void line_breaks_inside_copied_values(void)
{
	lua_State *L = open_with("return records.declare { list = 'results', fields = {"
				 " { 'x', from = 'x' }, { 'e', from = 'p.e' }, { 'p', from = 'p' } } }");
	if (!L)
		return;
	const char page[] = "{\"results\":[\n"
			    "{\"x\":[1,\n2,\r\n{\"a\" :\r\"b\\nc\"}],\"p\":{\"e\":{\n}}},\n"
			    "{\"x\":[1,\n2,\r\n{\"a\" :\r\"b\\nc\"}],\"p\":{\"e\":{\n},\"n\":[1e400,\n1.50]}},\n"
			    "{\"x\":[1, 2],\"p\":{\"e\":{ }}}\n"
			    "]}";
	const char *const want[] = {
		"{\"x\":[1, 2,  {\"a\" : \"b\\nc\"}],\"e\":{ },\"p\":{\"e\":{ }}}",
		"{\"x\":[1, 2,  {\"a\" : \"b\\nc\"}],\"e\":{ },\"p\":{\"e\":{ },\"n\":[null, 1.50]}}",
		"{\"x\":[1, 2],\"e\":{ },\"p\":{\"e\":{ }}}",
	};
	check_records(L, 1, "line breaks", BYTES(page), want, COUNT_OF(want), NULL);
	test_lua_close(L);
}

static void constants_and_context_fields(void)
{
	lua_State *L = open_with(
		"return records.declare { list = 'results', fields = {"
		" { 'p', context = 'partition' }, { 'f', context = 'from' }, { 'cfg', context = 'config' },"
		" { 'none', context = 'nothing_here' }, { 's', value = 'polygon' }, { 'i', value = 3 },"
		" { 'r', value = 0.5 }, { 'no', value = false }, { 'n', value = json.null },"
		" { 't', value = { 'a', 'b' } }, { 'o', value = { k = 1 } }, { 'u', value = 'caf\\u{e9} \"' },"
		" { 'c', from = 'c' } } }");
	if (!L)
		return;
	const char page[] = "{\"results\":[{\"c\":1},{}]}";
	const char *const want[] = {
		"{\"p\":\"TSLA\",\"f\":\"2022-03-01\",\"cfg\":{\"list\":[1,2]},\"s\":\"polygon\",\"i\":3,\"r\":0.5,"
		"\"no\":false,\"n\":null,\"t\":[\"a\",\"b\"],\"o\":{\"k\":1},\"u\":\"caf\xc3\xa9 \\\"\",\"c\":1}",
		"{\"p\":\"TSLA\",\"f\":\"2022-03-01\",\"cfg\":{\"list\":[1,2]},\"s\":\"polygon\",\"i\":3,\"r\":0.5,"
		"\"no\":false,\"n\":null,\"t\":[\"a\",\"b\"],\"o\":{\"k\":1},\"u\":\"caf\xc3\xa9 \\\"\"}",
	};
	check_records(L, 1, "constants", BYTES(page), want, 2, NULL);
	lua_settop(L, 0);
	/* A constant JSON cannot hold is an error of the page's map, naming the field. */
	test_push_lua(L, "local m = records.declare { list = 'results', fields = { { 'f', value = print } } } "
			 "local ok, err = pcall(m.map, m, {}, { text = '{}' }) return tostring(err)");
	CHECK_CONTAINS(lua_tostring(L, -1), "records: field 'f'", "a function as a value");
	test_lua_close(L);
}

static void day_fields(void)
{
	lua_State *L = open_with("return records.declare { list = 'results', fields = {"
				 " { 'ny', from = 't', as = 'day_from_ms', zone = 'America/New_York' },"
				 " { 'utc', from = 't', as = 'day_from_ms', zone = 'UTC' },"
				 " { 'default', from = 't', as = 'day_from_ms' } } }");
	if (!L)
		return;
	static const struct {
		const char *t;
		const char *want;
	} cases[] = {
		{"1646629200000", "{\"ny\":\"2022-03-07\",\"utc\":\"2022-03-07\",\"default\":\"2022-03-07\"}"},
		/* 2022-03-07 04:59:59.999 UTC is still 2022-03-06 in New York */
		{"1646629199999", "{\"ny\":\"2022-03-06\",\"utc\":\"2022-03-07\",\"default\":\"2022-03-07\"}"},
		{"1646629199999.5", "{\"ny\":\"2022-03-06\",\"utc\":\"2022-03-07\",\"default\":\"2022-03-07\"}"},
		{"1.6466292e12", "{\"ny\":\"2022-03-07\",\"utc\":\"2022-03-07\",\"default\":\"2022-03-07\"}"},
		{"1646629200000.0", "{\"ny\":\"2022-03-07\",\"utc\":\"2022-03-07\",\"default\":\"2022-03-07\"}"},
		/* summer: EDT */
		{"1657252800000", "{\"ny\":\"2022-07-08\",\"utc\":\"2022-07-08\",\"default\":\"2022-07-08\"}"},
		{"1657252799999", "{\"ny\":\"2022-07-07\",\"utc\":\"2022-07-08\",\"default\":\"2022-07-08\"}"},
		{"0", "{\"ny\":\"1969-12-31\",\"utc\":\"1970-01-01\",\"default\":\"1970-01-01\"}"},
		{"-1", "{\"ny\":\"1969-12-31\",\"utc\":\"1969-12-31\",\"default\":\"1969-12-31\"}"},
		{"-0.5", "{\"ny\":\"1969-12-31\",\"utc\":\"1969-12-31\",\"default\":\"1969-12-31\"}"},
		{"253402300799999", "{\"ny\":\"9999-12-31\",\"utc\":\"9999-12-31\",\"default\":\"9999-12-31\"}"},
		/* midnight 1000-01-01 in New York (EST) */
		{"-30610206000000", "{\"ny\":\"1000-01-01\",\"utc\":\"1000-01-01\",\"default\":\"1000-01-01\"}"},
		{"null", "{}"},
	};
	for (size_t i = 0; i < COUNT_OF(cases); i++) {
		char page[128];
		snprintf(page, sizeof page, "{\"results\":[{\"t\":%s}]}", cases[i].t);
		ONE_RECORD(L, 1, cases[i].t, page, cases[i].want, NULL);
	}
	test_lua_close(L);
	L = open_with(
		"return records.declare { list = 'results', fields = { { 'utc', from = 't', as = 'day_from_ms' } } }");
	if (!L)
		return;
	ONE_RECORD(L, 1, "first day", "{\"results\":[{\"t\":-30610224000000}]}", "{\"utc\":\"1000-01-01\"}", NULL);
	test_lua_close(L);
}

static void whitespace_everywhere(void)
{
	lua_State *L = open_with(FULL);
	if (!L)
		return;
	const char page[] =
		" \t\r\n{ \"status\" : \"OK\" ,\n\t\"results\"\r\n:\n[ { \"t\" : 1646629200000 , \"c\" :\t1.5 ,"
		" \"n\" : 3 } ,\r\n { } ] , \"next_url\" : \"u\" , \"x\" : [ 1 , { \"y\" : [ ] } ] }\r\n\t ";
	const char *const want[] = {
		"{\"date\":\"2022-03-07\",\"stock_ticker\":\"TSLA\",\"price\":1.5,\"transactions\":3,\"x\":\"k\"}",
		"{\"stock_ticker\":\"TSLA\",\"x\":\"k\"}",
	};
	check_records(L, 1, "whitespace", BYTES(page), want, 2, "u");
	test_lua_close(L);
}

static void duplicate_members_last_wins(void)
{
	lua_State *L = open_with(ONE);
	if (!L)
		return;
	ONE_RECORD(L, 1, "c twice", "{\"results\":[{\"c\":1,\"c\":2}]}", "{\"c\":2}", NULL);
	ONE_RECORD(L, 1, "c then null", "{\"results\":[{\"c\":1,\"x\":0,\"c\":null}]}", "{\"c\":null}", NULL);
	ONE_RECORD(L, 1, "c and its escape", "{\"results\":[{\"c\":1,\"\\u0063\":[2]}]}", "{\"c\":[2]}", NULL);
	ONE_RECORD(L, 1, "next_url twice", "{\"next_url\":\"a\",\"results\":[{\"c\":1}],\"next_url\":\"b\"}",
		   "{\"c\":1}", "b");
	ONE_RECORD(L, 1, "next_url then null", "{\"next_url\":\"a\",\"next_url\":null,\"results\":[{\"c\":1}]}",
		   "{\"c\":1}", NULL);
	/* What the page decodes to agrees: cjson keeps the last one too. */
	test_push_lua(L, "return json.decode('{\"c\":1,\"c\":2}').c");
	CHECK(lua_tonumber(L, -1) == 2, "cjson kept %s", lua_tostring(L, -1));
	test_lua_close(L);
}

static void members_in_any_order_and_escaped_names(void)
{
	lua_State *L = open_with("return records.declare { list = 'results', next_url = 'next_url', fields = {"
				 " { 'a', from = 'a' }, { 'bb', from = 'bb' }, { 'c', from = 'c' } } }");
	if (!L)
		return;
	/* Items spell their members in the same order most of the time: the scanner guesses by
	 * position, and must not be fooled when an item does otherwise. */
	const char page[] = "{\"results\":["
			    "{\"a\":1,\"bb\":2,\"c\":3},"
			    "{\"a\":4,\"bb\":5,\"c\":6},"
			    "{\"c\":7,\"a\":8,\"bb\":9},"
			    "{\"b\":0,\"bbb\":0,\"cc\":0,\"a \":0,\"A\":0,\"c\":10},"
			    "{\"\\u0061\":11,\"b\\u0062\":12,\"\\u0063\":13,\"c\\u0000\":0,\"\\u0063 \":0},"
			    "{\"a\":14,\"bb\":15,\"c\":16,\"a\":17},"
			    "{\"ab\":0,\"bbc\":0,\"c \":0,\"a\":18},"
			    "{\"a\":19,\"b\":0,\"bb\":20}"
			    "]}";
	const char *const want[] = {
		"{\"a\":1,\"bb\":2,\"c\":3}",
		"{\"a\":4,\"bb\":5,\"c\":6}",
		"{\"a\":8,\"bb\":9,\"c\":7}",
		"{\"c\":10}",
		"{\"a\":11,\"bb\":12,\"c\":13}",
		"{\"a\":17,\"bb\":15,\"c\":16}",
		/* names that begin as the last item's did at the same place are other names */
		"{\"a\":18}",
		"{\"a\":19,\"bb\":20}",
	};
	check_records(L, 1, "member order", BYTES(page), want, COUNT_OF(want), NULL);
	/* Members past the 64th are matched too. */
	struct buf wide = {0};
	buf_puts(&wide, "{\"results\":[");
	for (int item = 0; item < 3; item++) {
		buf_puts(&wide, item ? ",{" : "{");
		for (int k = 0; k < 70; k++)
			buf_printf(&wide, "\"m%d\":%d,", k, k);
		buf_printf(&wide, "\"%s\":%d}", item == 1 ? "bb" : "c", item);
	}
	buf_puts(&wide, "]}");
	const char *const wide_want[] = {"{\"c\":0}", "{\"bb\":1}", "{\"c\":2}"};
	check_records(L, 1, "70 members before", wide.data, wide.len, wide_want, 3, NULL);
	buf_free(&wide);
	/* The list and next_url may be spelt with escapes too. */
	const char escaped[] =
		"{\"\\u0072esults\":[{\"a\":1}],\"next\\u005Furl\":\"https:\\/\\/h\\/p?a=1\\u0026b=\\u00e9\"}";
	ONE_RECORD(L, 1, "escaped list and next_url", escaped, "{\"a\":1}", "https://h/p?a=1&b=\xc3\xa9");
	/* Names that only look alike are other members. */
	ONE_RECORD(L, 1, "look-alikes", "{\"results \":7,\"Results\":7,\"results\":[{\"a\":1}],\"next_url \":\"x\"}",
		   "{\"a\":1}", NULL);
	test_lua_close(L);
}

static void next_url_values(void)
{
	lua_State *L = open_with(ONE);
	if (!L)
		return;
	static const struct {
		const char *page;
		const char *next;
	} cases[] = {
		{"{\"results\":[],\"next_url\":\"https://h/p?cursor=YWJj\"}", "https://h/p?cursor=YWJj"},
		{"{\"next_url\":\"https://h/p\",\"results\":[]}", "https://h/p"},
		{"{\"results\":[],\"next_url\":\"a\\\"b\\\\c\\/d\\n\"}", "a\"b\\c/d\n"},
		{"{\"results\":[],\"next_url\":null}", NULL},
		{"{\"results\":[],\"next_url\":5}", NULL},
		{"{\"results\":[],\"next_url\":[\"https://h/p\"]}", NULL},
		{"{\"results\":[],\"next_url\":{\"href\":\"https://h/p\"}}", NULL},
		{"{\"results\":[],\"next_url\":true}", NULL},
		{"{\"results\":[]}", NULL},
		{"{\"results\":[{\"next_url\":\"in-an-item\"}]}", NULL},
		{"{\"results\":[],\"links\":{\"next_url\":\"nested\"}}", NULL},
		{"{\"results\":[],\"next_url\":\"\"}", ""},
	};
	for (size_t i = 0; i < COUNT_OF(cases); i++) {
		int top = lua_gettop(L);
		struct mapped m;
		if (map_page(L, 1, cases[i].page, strlen(cases[i].page), &m) != LUA_OK) {
			CHECK(0, "%s: %s", cases[i].page, m.error);
		} else if (cases[i].next) {
			CHECK(m.has_next && !strcmp(m.next, cases[i].next), "%s: next '%s'", cases[i].page, m.next);
		} else {
			CHECK(!m.has_next, "%s: next '%s', want nil", cases[i].page, m.next);
		}
		lua_settop(L, top);
	}
	/* A declaration without next_url never gives one. */
	test_lua_close(L);
	L = open_with("return records.declare { list = 'results', fields = { { 'c', from = 'c' } } }");
	if (!L)
		return;
	ONE_RECORD(L, 1, "no next_url declared", "{\"results\":[{\"c\":1}],\"next_url\":\"https://h/p\"}", "{\"c\":1}",
		   NULL);
	test_lua_close(L);
}

static void pages_without_records(void)
{
	lua_State *L = open_with(ONE);
	if (!L)
		return;
	static const char *const pages[] = {
		"{\"results\":[]}",
		"{\"results\":null}",
		"{}",
		"{\"status\":\"OK\",\"resultsCount\":0}",
		" { } ",
		"{\"results\" : [ ] }",
		"{\"results\":\n\tnull\n}",
		/* Polygon's empty page, and pages whose arrays hold no items */
		"{\"status\":\"OK\",\"request_id\":\"x\",\"count\":0}",
		"{\"result\":[],\"tags\":[\"a\",{\"b\":1}],\"n\":[[{}]]}",
		/* an array of items deeper than one level more than the list's path */
		"{\"a\":{\"b\":{\"c\":[{\"c\":1}]}}}",
	};
	for (size_t i = 0; i < COUNT_OF(pages); i++)
		check_records(L, 1, pages[i], pages[i], strlen(pages[i]), NULL, 0, NULL);
	test_lua_close(L);
}

/* A list that is not on a page holding arrays of objects elsewhere (down to one level more than
 * the list's path) is an error naming them. */
static void a_list_that_finds_nothing(void)
{
	static const struct {
		const char *list, *page, *words;
	} cases[] = {
		{"results", "{\"result\":[{\"c\":1}]}",
		 "list \"results\" finds nothing; the page has an array at \"result\""},
		{"results", "{\"data\":{\"results\":[{}]},\"x\":1}", "the page has an array at \"data.results\""},
		{"results", " { \"a\" : [ ] , \"b\" : [ { } ] , \"c\" : { \"d\" : [ {\"e\":[{}]} ] } } ",
		 "the page has arrays at \"b\", \"c.d\""},
		{"data.itmes", "{\"data\":{\"items\":[{\"id\":1}]},\"meta\":{}}",
		 "list \"data.itmes\" finds nothing; the page has an array at \"data.items\""},
		{"data.items", "{\"data\":\"x\",\"other\":{\"a\":{\"b\":[{}]}}}", "an array at \"other.a.b\""},
		{"data.items", "{\"dta\":{\"items\":[{}]},\"data\":{}}", "an array at \"dta.items\""},
		{"results", "{\"\\u0072esult\":[{}]}", "an array at \"\\u0072esult\""},
		{"results",
		 "{\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1\":[{}],"
		 "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa2\":[{}],"
		 "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa3\":[{}],"
		 "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa4\":[{}]}",
		 "aaa2\" and 2 more"},
	};
	for (size_t i = 0; i < COUNT_OF(cases); i++) {
		char chunk[200];
		snprintf(chunk, sizeof chunk,
			 "return records.declare { list = '%s', fields = { { 'c', from = 'c' } } }", cases[i].list);
		lua_State *L = open_with(chunk);
		if (!L)
			return;
		check_shape_error(L, 1, cases[i].page, cases[i].page, strlen(cases[i].page), cases[i].words);
		test_lua_close(L);
	}
}

/* ---- pages that are not JSON ---- */

static void syntax_errors_are_not_json(void)
{
	static const struct {
		const char *page;
		size_t len; /* 0: strlen */
		const char *reason;
	} cases[] = {
		/* the end of the text */
		{"", 0, "the text ends where a value should be at byte 0"},
		{" \n\t\r", 0, "the text ends where a value should be at byte 4"},
		{"{", 0, "expected a member name at byte 1"},
		{"{\"results\"", 0, "expected ':' at byte 10"},
		{"{\"results\":", 0, "the text ends where a value should be"},
		{"{\"results\":[", 0, "the text ends where a value should be"},
		{"{\"results\":[{", 0, "expected a member name"},
		{"{\"results\":[{\"c\"", 0, "expected ':'"},
		{"{\"results\":[{\"c\":", 0, "the text ends where a value should be"},
		{"{\"results\":[{\"c\":1", 0, "expected ',' or '}'"},
		{"{\"results\":[{\"c\":12", 0, "expected ',' or '}'"},
		{"{\"results\":[{\"c\":1}", 0, "expected ',' or ']'"},
		{"{\"results\":[{\"c\":1},", 0, "the text ends where a value should be"},
		{"{\"results\":[{\"c\":1}]", 0, "expected ',' or '}'"},
		{"{\"results\":[{\"c\":1}],", 0, "expected a member name"},
		{"{\"results\":[{\"c\":\"ab", 0, "a string is not closed"},
		{"{\"results\":[{\"c\":\"ab\\", 0, "a string is not closed"},
		{"{\"results\":[{\"c\":\"\\u00", 0, "a \\u escape needs four hex digits"},
		{"{\"results\":[{\"c\":tr", 0, "unexpected characters"},
		{"{\"results\":[{\"c\":1.", 0, "a number needs digits after its point"},
		{"{\"results\":[{\"c\":1e", 0, "a number needs digits in its exponent"},
		{"{\"results\":[{\"c\":-", 0, "invalid number"},
		{"{\"x\":[1,2", 0, "expected ',' or ']'"},
		{"{\"x\":{\"a\":1", 0, "expected ',' or '}'"},
		{"{\"next_url\":\"https://h", 0, "a string is not closed"},
		{"{\"results\":[{\"c\":1}],\"next_url\":\"https://h/p?cursor=abc\"", 0, "expected ',' or '}'"},
		/* structure */
		{"{\"results\":[{\"c\":1}] \"x\":1}", 0, "expected ',' or '}' at byte 21"},
		{"{\"results\":[{\"c\":1x}]}", 0, "expected ',' or '}' at byte 18"},
		{"{\"results\":[{\"c\":1} {\"c\":2}]}", 0, "expected ',' or ']'"},
		{"{\"results\":[{\"c\" 1}]}", 0, "expected ':'"},
		{"{\"results\":[{\"c\":1,}]}", 0, "expected a member name"},
		{"{\"results\":[{\"c\":1},]}", 0, "invalid number"},
		{"{\"results\":[,]}", 0, "invalid number"},
		{"{\"results\":[{c:1}]}", 0, "expected a member name"},
		{"{\"results\":[{'c':1}]}", 0, "expected a member name"},
		{"{results:[]}", 0, "expected a member name"},
		{"{\"results\" []}", 0, "expected ':'"},
		{"{\"a\":1,}", 0, "expected a member name"},
		{"{\"a\":1 \"b\":2}", 0, "expected ',' or '}'"},
		{"{\"a\":[1 2]}", 0, "expected ',' or ']'"},
		{"{\"a\":[1,]}", 0, "invalid number"},
		{"{\"a\":{\"b\" 1}}", 0, "expected ':'"},
		{"{\"a\":{1:2}}", 0, "expected a member name"},
		{"{\"a\":1}}", 0, "more text after the JSON value at byte 7"},
		{"{\"results\":[]} x", 0, "more text after the JSON value"},
		{"{\"results\":[]}{}", 0, "more text after the JSON value"},
		{"{\"results\":[]}\0", sizeof("{\"results\":[]}\0") - 1, "more text after the JSON value"},
		{"[1] x", 0, "more text after the JSON value"},
		{"\"a\" \"b\"", 0, "more text after the JSON value"},
		{"/* c */ {}", 0, "invalid number at byte 0"},
		{"{} // c", 0, "more text after the JSON value"},
		{"\xef\xbb\xbf{}", 0, "invalid number at byte 0"},
		{"<html><body>OK</body></html>", 0, "invalid number at byte 0"},
		/* strings */
		{"{\"results\":[{\"c\":\"\\x41\"}]}", 0, "invalid escape in a string"},
		{"{\"results\":[{\"c\":\"\\'\"}]}", 0, "invalid escape in a string"},
		{"{\"results\":[{\"c\":\"\\U0041\"}]}", 0, "invalid escape in a string"},
		{"{\"results\":[{\"c\":\"\\u12G4\"}]}", 0, "a \\u escape needs four hex digits"},
		{"{\"results\":[{\"c\":\"\\u123\"}]}", 0, "a \\u escape needs four hex digits"},
		{"{\"s\":\"\\ q\"}", 0, "invalid escape in a string"},
		{"{\"results\":[{\"c\":\"a\tb\"}]}", 0, "a control character in a string"},
		{"{\"results\":[{\"c\":\"a\nb\"}]}", 0, "a control character in a string"},
		{"{\"results\":[{\"c\":\"\x01\"}]}", 0, "a control character in a string"},
		{"{\"results\":[{\"c\":\"\x1f\"}]}", 0, "a control character in a string"},
		{"{\"results\":[{\"c\":\"a\0b\"}]}", sizeof("{\"results\":[{\"c\":\"a\0b\"}]}") - 1,
		 "a control character in a string at byte 19"},
		{"{\"a\tb\":1}", 0, "a control character in a string"},
		/* UTF-8, in copied values, skipped values, member names and the list's name */
		{"{\"results\":[{\"c\":\"\xc3\x28\"}]}", 0, "not valid UTF-8 at byte 18"},
		{"{\"results\":[{\"c\":\"\xff\"}]}", 0, "not valid UTF-8"},
		{"{\"results\":[{\"c\":\"\x80\"}]}", 0, "not valid UTF-8"},
		{"{\"results\":[{\"c\":\"\xc0\xaf\"}]}", 0, "not valid UTF-8"},         /* overlong */
		{"{\"results\":[{\"c\":\"\xe0\x80\xaf\"}]}", 0, "not valid UTF-8"},     /* overlong */
		{"{\"results\":[{\"c\":\"\xed\xa0\x80\"}]}", 0, "not valid UTF-8"},     /* a surrogate */
		{"{\"results\":[{\"c\":\"\xf4\x90\x80\x80\"}]}", 0, "not valid UTF-8"}, /* > U+10FFFF */
		{"{\"results\":[{\"c\":\"\xf8\x88\x80\x80\x80\"}]}", 0, "not valid UTF-8"},
		{"{\"results\":[{\"c\":\"\xe2\x82\"}]}", 0, "not valid UTF-8"}, /* cut short */
		{"{\"results\":[{\"c\":\"\xe2\x82", 0, "not valid UTF-8"},      /* cut at the end */
		{"{\"status\":\"O\xffK\",\"results\":[]}", 0, "not valid UTF-8"},
		{"{\"results\":[{\"c\":1}],\"status\":\"\xffOK\"}", 0, "not valid UTF-8"},
		{"{\"results\":[{\"\xff\":1}]}", 0, "not valid UTF-8"},
		{"{\"r\xc3\":[]}", 0, "not valid UTF-8"},
		{"{\"results\":[{\"c\":1}],\"next_url\":\"https://h/\xff\"}", 0, "not valid UTF-8"},
		{"\xff", 0, "invalid number at byte 0"},
		/* numbers */
		{"{\"results\":[{\"c\":01}]}", 0, "expected ',' or '}'"},
		{"{\"results\":[{\"c\":-01}]}", 0, "expected ',' or '}'"},
		{"{\"results\":[{\"c\":00}]}", 0, "expected ',' or '}'"},
		{"{\"results\":[{\"c\":+1}]}", 0, "invalid number"},
		{"{\"results\":[{\"c\":.5}]}", 0, "invalid number"},
		{"{\"results\":[{\"c\":-.5}]}", 0, "invalid number"},
		{"{\"results\":[{\"c\":--1}]}", 0, "invalid number"},
		{"{\"results\":[{\"c\":-}]}", 0, "invalid number"},
		{"{\"results\":[{\"c\":1.}]}", 0, "a number needs digits after its point"},
		{"{\"results\":[{\"c\":1.e5}]}", 0, "a number needs digits after its point"},
		{"{\"results\":[{\"c\":1e}]}", 0, "a number needs digits in its exponent"},
		{"{\"results\":[{\"c\":1e+}]}", 0, "a number needs digits in its exponent"},
		{"{\"results\":[{\"c\":1E-x}]}", 0, "a number needs digits in its exponent"},
		{"{\"results\":[{\"c\":1.0.0}]}", 0, "expected ',' or '}'"},
		{"{\"results\":[{\"c\":1e5e5}]}", 0, "expected ',' or '}'"},
		{"{\"results\":[{\"c\":0x10}]}", 0, "expected ',' or '}'"},
		{"{\"results\":[{\"c\":NaN}]}", 0, "invalid number"},
		{"{\"results\":[{\"c\":Infinity}]}", 0, "invalid number"},
		{"{\"results\":[{\"c\":-Infinity}]}", 0, "invalid number"},
		{"{\"results\":[{\"t\":1646629200000x}]}", 0, "expected ',' or '}'"},
		/* literals */
		{"{\"results\":[{\"c\":tru}]}", 0, "unexpected characters"},
		{"{\"results\":[{\"c\":True}]}", 0, "invalid number"},
		{"{\"results\":[{\"c\":nul}]}", 0, "unexpected characters"},
		{"{\"results\":[{\"c\":nan}]}", 0, "unexpected characters"},
		{"{\"results\":[{\"c\":fals}]}", 0, "unexpected characters"},
		{"{\"results\":[{\"c\":falsey}]}", 0, "expected ',' or '}'"},
		{"{\"results\":[{\"c\":undefined}]}", 0, "invalid number"},
		{"{\"results\":nil}", 0, "unexpected characters"},
		{"{\"results\":tru}", 0, "unexpected characters"},
		{"nul", 0, "unexpected characters"},
	};
	lua_State *L = open_with(FULL);
	if (!L)
		return;
	for (size_t i = 0; i < COUNT_OF(cases); i++) {
		char label[160];
		test_escape(cases[i].page, cases[i].len ? cases[i].len : strlen(cases[i].page), label, sizeof label);
		check_not_json(L, 1, label, cases[i].page, cases[i].len ? cases[i].len : strlen(cases[i].page),
			       cases[i].reason);
	}
	test_lua_close(L);
}

/* Whether mapping text fails for nesting too deeply. */
static int walk_says_too_deep(lua_State *L, int mapper, const char *text, size_t len)
{
	int top = lua_gettop(L);
	struct mapped m;
	map_page(L, mapper, text, len, &m);
	lua_settop(L, top);
	return m.outcome == RECORDS_WRONG_SHAPE && strstr(m.why, "nests deeper than");
}

static void nesting_past_the_limit_is_too_deep_not_invalid(void)
{
	lua_State *L = open_with(ONE);
	if (!L)
		return;
	/* The page is level 1. */
	static const struct {
		const char *before, *after;
		int levels_before; /* containers opened before the nest */
	} places[] = {
		{"{\"x\":", "}", 1},                 /* a member of the page that is skipped */
		{"{\"results\":[{\"c\":", "}]}", 3}, /* a copied member of an item */
		{"{\"results\":[{\"z\":", "}]}", 3}, /* a skipped member of an item */
		{"{\"next_url\":", "}", 1},          /* the next_url member */
		{"", "", 0},                         /* the page itself (an array: a shape error) */
		{"{\"results\":", "}", 1},           /* the list itself (as an array of arrays) */
		{"{\"results\":[", "]}", 2},         /* an item (an array: a shape error) */
	};
	char label[64];
	for (size_t i = 0; i < COUNT_OF(places); i++) {
		int n = JSON_MAX_DEPTH - places[i].levels_before;
		const char *ok = nest(places[i].before, n, places[i].after);
		size_t ok_len = strlen(ok);
		snprintf(label, sizeof label, "place %zu, %d levels", i, JSON_MAX_DEPTH);
		CHECK(cjson_accepts(L, ok, ok_len), "%s: the decoder refuses it", label);
		CHECK(scanner_accepts(L, 1, ok, ok_len), "%s: refused as not JSON", label);
		CHECK(!walk_says_too_deep(L, 1, ok, ok_len), "%s: refused as too deep", label);
		const char *deep = nest(places[i].before, n + 1, places[i].after);
		snprintf(label, sizeof label, "place %zu, %d levels", i, JSON_MAX_DEPTH + 1);
		CHECK(json_decode_push(L, deep, strlen(deep)) == JSON_TOO_DEEP, "%s: the decoder does not say too deep",
		      label);
		lua_pop(L, 2);
		check_shape_error(L, 1, label, deep, strlen(deep), "nests deeper than 1000 levels");
	}
	/* Objects count as arrays do; the copied value at the limit is written as it came. */
	struct buf page = {0};
	buf_puts(&page, "{\"results\":[{\"c\":");
	for (int i = 0; i < JSON_MAX_DEPTH - 3; i++)
		buf_puts(&page, "{\"a\":");
	buf_puts(&page, "1");
	for (int i = 0; i < JSON_MAX_DEPTH - 3; i++)
		buf_putc(&page, '}');
	struct buf want = {0};
	buf_puts(&want, "{\"c\":");
	buf_append(&want, page.data + 17, page.len - 17);
	buf_putc(&want, '}');
	buf_puts(&page, "}]}");
	const char *const wants[] = {buf_cstr(&want)};
	check_records(L, 1, "997 objects in an item", page.data, page.len, wants, 1, NULL);
	buf_free(&page);
	buf_free(&want);
	/* Deep nesting long past the limit is refused without recursing into it (no stack overflow). */
	size_t huge = 1000000;
	char *deep = malloc(huge + 8);
	if (CHECK(deep != NULL, "malloc")) {
		memcpy(deep, "{\"x\":", 5);
		memset(deep + 5, '[', huge);
		check_shape_error(L, 1, "a million [", deep, huge + 5, "nests deeper than 1000 levels");
		free(deep);
	}
	test_lua_close(L);
}

/* cjson is laxer than RFC 8259 here; the scanner follows the RFC. */
static const char *const LAXER_THAN_RFC[] = {
	"{\"c\":1.}", "{\"c\":1.e5}", "{\"c\":-.5}", "{\"c\":\"a\tb\"}", "{\"c\":\"a\x01\"}",
};

static void scanner_agrees_with_cjson(void)
{
	static const char *const pages[] = {
		"{}",
		"{\"results\":[]}",
		"{\"results\":null}",
		"[]",
		"7",
		"\"s\"",
		"null",
		"true",
		" {} ",
		"{\"results\":[{\"c\":1}]}",
		"{\"c\":-0.0e-0}",
		"{\"c\":1E5}",
		"{\"c\":1e999}",
		"{\"c\":\"\\u0000\"}",
		"{\"c\":\"\\ud834\\udd1e\"}",
		"{\"c\":\"\\udbff\\udfff\"}",
		"{\"c\":\"\x7f\"}",
		"{\"c\":[[],{},[{}]]}",
		"",
		" ",
		"{",
		"}",
		"{\"c\":01}",
		"{\"c\":+1}",
		"{\"c\":.5}",
		"{\"c\":0x10}",
		"{\"c\":NaN}",
		"{\"c\":Infinity}",
		"{\"c\":tRue}",
		"[1,]",
		"{\"a\":1,}",
		"{\"c\":[1 2]}",
		"{\"c\":{1:2}}",
		"{\"c\":\"\\U0041\"}",
		"{\"c\":\"\\u004\"}",
		"{\"c\":\"\\'\"}",
		"{\"c\":1e5.}",
		"{\"c\":\"\xc3\x28\"}",
		"{\"c\":\"\xed\xa0\x80\"}",
		"\xef\xbb\xbf{}",
		"{\"c\":1} x",
		"{} {}",
	};
	lua_State *L = open_with(ONE);
	if (!L)
		return;
	for (size_t i = 0; i < COUNT_OF(pages); i++) {
		size_t len = strlen(pages[i]);
		int cjson = cjson_accepts(L, pages[i], len);
		int scanner = scanner_accepts(L, 1, pages[i], len);
		char label[120];
		test_escape(pages[i], len, label, sizeof label);
		CHECK(cjson == scanner, "%s: cjson %s it, the scanner %s it", label, cjson ? "accepts" : "refuses",
		      scanner ? "accepts" : "refuses");
	}
	for (size_t i = 0; i < COUNT_OF(LAXER_THAN_RFC); i++) {
		char label[120];
		test_escape(LAXER_THAN_RFC[i], strlen(LAXER_THAN_RFC[i]), label, sizeof label);
		CHECK(!scanner_accepts(L, 1, LAXER_THAN_RFC[i], strlen(LAXER_THAN_RFC[i])),
		      "%s: the scanner accepts it", label);
	}
	test_lua_close(L);
}

/* Each page: cjson refuses it, and map (declaration decl) reports it as not JSON. */
static void refused_by_both(const char *decl, const char *const *pages, size_t count)
{
	lua_State *L = open_with(decl);
	if (!L)
		return;
	for (size_t i = 0; i < count; i++) {
		CHECK(!cjson_accepts(L, pages[i], strlen(pages[i])), "%s: cjson accepts it", pages[i]);
		check_not_json(L, 1, pages[i], pages[i], strlen(pages[i]), NULL);
	}
	test_lua_close(L);
}

/* A \u escape of a lone surrogate is no character: cjson refuses the page (so a script reading
 * response.body has it asked for again), and so must map(), rather than copy it into a record. */
static void lone_surrogate_escapes_are_not_json(void)
{
	static const char *const pages[] = {
		"{\"results\":[{\"c\":\"\\ud800\"}]}",
		"{\"results\":[{\"c\":\"\\udc00\"}]}",
		"{\"results\":[{\"c\":\"\\ud800x\"}]}",
		"{\"results\":[{\"c\":\"\\ud800\\u0041\"}]}",
		"{\"results\":[{\"c\":\"\\ud800\\ud800\"}]}",
		"{\"results\":[{\"c\":\"\\udfff\\ud800\"}]}",
		"{\"status\":\"\\ud800\",\"results\":[]}",
		"{\"results\":[{\"\\ud800\":1}]}",
		/* a next_url cjson cannot decode must not read as "no next page" (the rest would be lost) */
		"{\"results\":[{\"c\":1}],\"next_url\":\"https://h/p?c=\\ud800\"}",
	};
	refused_by_both(ONE, pages, COUNT_OF(pages));
}

/* A page that is not JSON is asked for again, whatever its first bytes hold: a page cut short
 * after a list or item of the wrong shape is still not JSON (cjson refuses it, so a script reading
 * response.body has it asked for again), and a retry may well bring the right page. */
static void not_json_wins_over_a_shape_error(void)
{
	static const char *const pages[] = {
		"{\"results\":7,",
		"{\"results\":\"x\",\"status\":\"O",
		"{\"results\":[7,",
		"{\"results\":[{\"c\":1},[],{\"c\":",
		"{\"results\":[],\"results\":[",
		"{\"results\":[{\"t\":\"x\"},{\"t\":16",
		"{\"results\":7} trailing",
	};
	refused_by_both(FULL, pages, COUNT_OF(pages));
}

/* ---- valid JSON of the wrong shape ---- */

static void shape_errors_name_the_item(void)
{
	static const struct {
		const char *page;
		const char *words;
	} cases[] = {
		{"[]", "the page is an array, not an object with 'results'"},
		{"[{\"results\":[]}]", "not an object with 'results'"},
		{"\"results\"", "the page is a string, not an object with 'results'"},
		{"7", "the page is a number"},
		{"null", "the page is null"},
		{"true", "the page is a boolean"},
		{" 7 \n", "the page is a number"},
		{"{\"results\":7}", "the page's 'results' is a number, not an array"},
		{"{\"results\":\"[]\"}", "the page's 'results' is a string, not an array"},
		{"{\"results\":{}}", "the page's 'results' is an object, not an array"},
		{"{\"results\":{\"0\":{\"c\":1}}}", "not an array"},
		{"{\"results\":false}", "the page's 'results' is a boolean, not an array"},
		{"{\"results\":[7]}", "item 1 of 'results' is a number, not an object"},
		{"{\"results\":[{\"t\":1},\"x\"]}", "item 2 of 'results' is a string, not an object"},
		{"{\"results\":[{},{},null]}", "item 3 of 'results' is null, not an object"},
		{"{\"results\":[[]]}", "item 1 of 'results' is an array, not an object"},
		{"{\"results\":[true]}", "item 1 of 'results' is a boolean"},
		{"{\"results\":[],\"results\":[]}", "the page has 'results' twice"},
		{"{\"results\":null,\"results\":null}", "the page has 'results' twice"},
		{"{\"results\":[],\"\\u0072esults\":[]}", "the page has 'results' twice"},
		{"{\"results\":[{\"t\":\"1646629200000\"}]}",
		 "item 1 of 'results': 't' is a string, not a number of milliseconds"},
		{"{\"results\":[{},{\"t\":true}]}", "item 2 of 'results': 't' is a boolean, not a number"},
		{"{\"results\":[{\"t\":{}}]}", "'t' is an object, not a number"},
		{"{\"results\":[{\"t\":[1646629200000]}]}", "'t' is an array, not a number"},
		{"{\"results\":[{\"day_text\":\"2022-02-30\"}]}",
		 "item 1 of 'results': 'day_text' is not a YYYY-MM-DD day"},
		{"{\"results\":[{\"day_text\":\"2022-3-1\"}]}", "'day_text' is not a YYYY-MM-DD day"},
		{"{\"results\":[{\"day_text\":\"2022-03-01T00:00:00Z\"}]}", "'day_text' is not a YYYY-MM-DD day"},
		{"{\"results\":[{\"day_text\":\"0999-12-31\"}]}", "'day_text' is not a YYYY-MM-DD day"},
		{"{\"results\":[{\"day_text\":20220301}]}", "'day_text' is not a YYYY-MM-DD day"},
		{"{\"results\":[{\"day_text\":true}]}", "'day_text' is not a YYYY-MM-DD day"},
		{"{\"results\":[{\"day_text\":\"\"}]}", "'day_text' is not a YYYY-MM-DD day"},
	};
	lua_State *L = open_with(FULL);
	if (!L)
		return;
	for (size_t i = 0; i < COUNT_OF(cases); i++) {
		CHECK(cjson_accepts(L, cases[i].page, strlen(cases[i].page)), "%s: not JSON for cjson", cases[i].page);
		check_shape_error(L, 1, cases[i].page, cases[i].page, strlen(cases[i].page), cases[i].words);
	}
	test_lua_close(L);
}

/* A time outside the years 1000 to 9999 names the item, the member and the value. */
static void out_of_range_ms_names_the_item(void)
{
	static const struct {
		const char *page;
		const char *words;
	} cases[] = {
		{"{\"results\":[{\"t\":1e300}]}",
		 "item 1 of 'results': 't' = 1e300 ms is not a time in the years 1000 to 9999"},
		{"{\"results\":[{},{\"t\":-1e300}]}",
		 "item 2 of 'results': 't' = -1e300 ms is not a time in the years 1000"},
		{"{\"results\":[{\"t\":1e400}]}", "'t' = 1e400 ms is not a time"},
		/* 10000-01-01 in New York; 999-12-31 in New York */
		{"{\"results\":[{\"t\":253402318800000}]}", "'t' = 253402318800000 ms is not a time"},
		{"{\"results\":[{\"t\":-30610224000000}]}", "'t' = -30610224000000 ms is not a time"},
		{"{\"results\":[{\"t\":9223372036854775807}]}", "'t' = 9223372036854775807 ms is not a time"},
		{"{\"results\":[{\"t\":1234567890123456789012345678901234567890123456789}]}",
		 "'t' = 1234567890123456789012345678901234567890 ms is not a time"},
	};
	lua_State *L = open_with(FULL);
	if (!L)
		return;
	for (size_t i = 0; i < COUNT_OF(cases); i++)
		check_shape_error(L, 1, cases[i].page, cases[i].page, strlen(cases[i].page), cases[i].words);
	test_lua_close(L);
}

/* ---- generated cases, checked against the runtime's own functions ---- */

/* A random JSON number: sign, 1 to 20 integer digits, maybe a fraction (often ending in 0), maybe
 * an exponent. */
static void random_number(char *out, size_t size)
{
	size_t n = 0;
	if (pick(3) == 0)
		out[n++] = '-';
	unsigned digits = 1 + (pick(4) == 0 ? pick(20) : pick(13));
	out[n++] = digits == 1 && pick(4) == 0 ? '0' : (char)('1' + pick(9));
	for (unsigned i = 1; i < digits && out[0 + (out[0] == '-')] != '0'; i++)
		out[n++] = (char)('0' + pick(10));
	if (pick(2)) {
		out[n++] = '.';
		unsigned fraction = 1 + pick(10);
		for (unsigned i = 0; i < fraction; i++)
			out[n++] = (char)('0' + pick(10));
		if (pick(2))
			out[n++] = '0';
	}
	if (pick(2)) {
		out[n++] = pick(2) ? 'e' : 'E';
		unsigned sign = pick(3);
		if (sign)
			out[n++] = sign == 1 ? '+' : '-';
		unsigned e = pick(5) == 0 ? pick(400) : pick(25);
		n += (size_t)snprintf(out + n, size - n, "%u", e);
	}
	out[n] = '\0';
}

/* What a plain from field writes for the number text, and what as = "integer" writes ("" to leave
 * the field out): the text itself when it has no exponent and no trailing fractional zero, else
 * the runtime's shortest form of its double; math.tointeger's rule on the exact value. */
static void expected_number(const char *text, char *copied, char *integer)
{
	const char *exponent = strpbrk(text, "eE");
	const char *point = strchr(text, '.');
	const char *fraction_end = exponent ? exponent : text + strlen(text);
	int plain = !exponent && !(point && fraction_end[-1] == '0');
	double d = strtod(text, NULL);
	if (plain)
		strcpy(copied, text);
	else
		copied[json_double_text(d, copied)] = '\0';
	errno = 0;
	long long exact = !exponent && !point ? strtoll(text, NULL, 10) : 0;
	if (!exponent && !point && errno != ERANGE)
		integer[json_int_text(exact, integer)] = '\0'; /* exactly, whatever its digits */
	else if (d == floor(d) && d >= -9223372036854775808.0 && d < 9223372036854775808.0)
		integer[json_int_text((long long)d, integer)] = '\0';
	else
		integer[0] = '\0';
}

static void generated_numbers_agree_with_the_runtime_writer(void)
{
	lua_State *L = open_with("return records.declare { list = 'results', fields = {"
				 " { 'c', from = 'v' }, { 'i', from = 'v', as = 'integer' } } }");
	if (!L)
		return;
	enum { PAGES = 20, ITEMS = 1000 };
	static char numbers[ITEMS][64];
	for (int page = 0; page < PAGES; page++) {
		struct buf text = {0};
		buf_puts(&text, "{\"results\":[");
		for (int i = 0; i < ITEMS; i++) {
			random_number(numbers[i], sizeof numbers[i]);
			buf_printf(&text, "%s{\"v\":%s}", i ? "," : "", numbers[i]);
		}
		buf_puts(&text, "]}");
		struct mapped m;
		int failures = 0;
		if (map_page(L, 1, text.data, text.len, &m) == LUA_OK && m.outcome == RECORDS_OK &&
		    CHECK(records_batch_count(m.batch) == ITEMS, "page %d: %zu records", page,
			  records_batch_count(m.batch))) {
			for (int i = 0; i < ITEMS && failures < 3; i++) {
				char copied[JSON_NUMBER_MAX + 64], integer[JSON_NUMBER_MAX + 1], want[200];
				expected_number(numbers[i], copied, integer);
				if (integer[0])
					snprintf(want, sizeof want, "{\"c\":%s,\"i\":%s}", copied, integer);
				else
					snprintf(want, sizeof want, "{\"c\":%s}", copied);
				const char *data;
				size_t len;
				record_text(&m, (size_t)i, &data, &len);
				if (!test_check_bytes(data, len, want, strlen(want), __FILE__, __LINE__, numbers[i]))
					failures++;
			}
		} else {
			CHECK(0, "page %d: map %d, outcome %d: %s %s", page, m.status, (int)m.outcome, m.why, m.error);
		}
		lua_settop(L, 1);
		buf_free(&text);
	}
	test_lua_close(L);
}

static int64_t floor_div(int64_t a, int64_t b)
{
	return a / b - (a % b != 0 && (a < 0) != (b < 0));
}

/* Random epochs in milliseconds and seconds over the years 1000 to 9999: datetime_from_ms's
 * text reads back (date_parse_instant) as its column, which is the instant rounded down to the
 * millisecond, with ".mmm" exactly when that is not a whole second, and agrees with
 * date_format_instant; day_from_s's day is date_day_in_zone's in New York. */
static void generated_instants_agree_with_the_date_functions(void)
{
	lua_State *L = open_with(EPOCHS);
	if (!L)
		return;
	char err[200];
	const struct tz_zone *ny = tz_find(runtime_of(L)->zones, "America/New_York", err, sizeof err);
	const int64_t first_ms = (DATE_MIN_DAY + 1) * 86400000LL, span = (DATE_MAX_DAY - DATE_MIN_DAY - 2) * 86400000LL;
	enum { ITEMS = 2000 };
	static int64_t ms[ITEMS], s[ITEMS];
	struct buf text = {0};
	buf_puts(&text, "{\"results\":[");
	for (int i = 0; i < ITEMS; i++) {
		uint64_t r = rng();
		/* near 1970 now and then, where negatives and small numbers are */
		ms[i] = i % 4 == 0 ? (int64_t)(r % 200000000000ULL) - 100000000000LL
				   : first_ms + (int64_t)(r % (uint64_t)span);
		if (i % 5 == 0)
			ms[i] -= ms[i] % 1000; /* whole seconds */
		s[i] = floor_div(ms[i], 1000);
		buf_printf(&text, "%s{\"ms\":%lld,\"s\":%lld}", i ? "," : "", (long long)ms[i], (long long)s[i]);
	}
	buf_puts(&text, "]}");
	struct mapped m;
	if (map_page(L, 1, text.data, text.len, &m) == LUA_OK &&
	    CHECK(m.outcome == RECORDS_OK, "outcome %d: %s", (int)m.outcome, m.why)) {
		int ms_column = records_batch_column(m.batch, "ms", CURSOR_DATETIME);
		int ny_column = records_batch_column(m.batch, "ny", CURSOR_DAY);
		int failures = 0;
		for (int i = 0; i < ITEMS && failures < 3; i++) {
			const char *data;
			size_t len;
			int64_t us, day;
			records_batch_get(m.batch, (size_t)i, ms_column, &data, &len, &us);
			records_batch_get(m.batch, (size_t)i, ny_column, &data, &len, &day);
			/* {"ms":"<text>",... */
			const char *at = data + 7, *end = memchr(at, '"', len - 7);
			int64_t parsed = 0;
			char formatted[DATE_INSTANT_LEN];
			size_t formatted_len = date_format_instant(us, formatted);
			size_t text_len = end ? (size_t)(end - at) : 0;
			int ok = end && date_parse_instant(at, text_len, NULL, &parsed) == 0 && parsed == us &&
				 us == ms[i] * 1000 && text_len == (ms[i] % 1000 ? 24u : 20u) &&
				 !memcmp(at, formatted, 19) && formatted_len >= 20 && day == date_day_in_zone(s[i], ny);
			if (!CHECK(ok, "%lld ms: %.*s (column %lld, day %lld)", (long long)ms[i], (int)len, data,
				   (long long)us, (long long)day))
				failures++;
		}
	} else {
		CHECK(0, "map: %s %s", m.error, m.why);
	}
	buf_free(&text);
	test_lua_close(L);
}

/* Random instants from year 1000 to 9999, in random order (so the month the walk remembers keeps
 * changing), in both zones, against date_day_in_zone and date_format_day. */
static void generated_days_agree_with_the_date_functions(void)
{
	lua_State *L = open_with("return records.declare { list = 'results', fields = {"
				 " { 'ny', from = 't', as = 'day_from_ms', zone = 'America/New_York' },"
				 " { 'utc', from = 't', as = 'day_from_ms' } } }");
	if (!L)
		return;
	const int64_t first = -30610224000000LL + 2 * 86400000LL, last = 253402300799999LL - 2 * 86400000LL;
	enum { ITEMS = 5000 };
	static int64_t ms[ITEMS];
	struct buf text = {0};
	buf_puts(&text, "{\"results\":[");
	for (int i = 0; i < ITEMS; i++) {
		switch (pick(4)) {
		case 0: /* anywhere */ ms[i] = first + (int64_t)(rng() % (uint64_t)(last - first)); break;
		case 1: /* near a New York midnight or a month's end in recent years */
			ms[i] = 946684800000LL + (int64_t)pick(40 * 366) * 86400000LL + 4 * 3600000LL +
				(int64_t)pick(2 * 3600000) - 3600000;
			break;
		case 2: /* the next day of the one before */ ms[i] = i ? ms[i - 1] + 86400000LL : 0; break;
		default: /* before 1970 */ ms[i] = -(int64_t)(rng() % 30610224000000ULL) + 2 * 86400000LL;
		}
		buf_printf(&text, "%s{\"t\":%lld}", i ? "," : "", (long long)ms[i]);
	}
	buf_puts(&text, "]}");
	struct mapped m;
	if (map_page(L, 1, text.data, text.len, &m) == LUA_OK && m.outcome == RECORDS_OK &&
	    CHECK(records_batch_count(m.batch) == ITEMS, "%zu records", records_batch_count(m.batch))) {
		int ny = records_batch_column(m.batch, "ny", CURSOR_DAY),
		    utc = records_batch_column(m.batch, "utc", CURSOR_DAY);
		const struct tz_zone *new_york = tz_find(runtime_of(L)->zones, "America/New_York", NULL, 0);
		int failures = 0;
		for (int i = 0; i < ITEMS && failures < 3; i++) {
			int64_t seconds = floor_div(ms[i], 1000);
			int64_t ny_day = date_day_in_zone(seconds, new_york), utc_day = date_day_in_zone(seconds, NULL);
			char a[DATE_DAY_LEN], b[DATE_DAY_LEN], want[80];
			date_format_day(ny_day, a);
			date_format_day(utc_day, b);
			snprintf(want, sizeof want, "{\"ny\":\"%s\",\"utc\":\"%s\"}", a, b);
			const char *data;
			size_t len;
			int64_t day;
			records_batch_get(m.batch, (size_t)i, ny, &data, &len, &day);
			char label[64];
			snprintf(label, sizeof label, "t = %lld", (long long)ms[i]);
			if (!test_check_bytes(data, len, want, strlen(want), __FILE__, __LINE__, label))
				failures++;
			failures += !CHECK(day == ny_day, "%s: ny column %lld", label, (long long)day);
			records_batch_get(m.batch, (size_t)i, utc, &data, &len, &day);
			failures += !CHECK(day == utc_day, "%s: utc column %lld", label, (long long)day);
		}
	} else {
		CHECK(0, "map %d, outcome %d: %s %s", m.status, (int)m.outcome, m.why, m.error);
	}
	buf_free(&text);
	/* Every day, in order, across the Februaries of 1900 (not leap), 2000 (leap), 2023, 2024 and
	 * 2100 (not leap), and the last days of 9999. */
	static const char *const spans[][2] = {
		{"1899-12-25", "1900-03-05"}, {"1999-12-25", "2000-03-05"}, {"2023-01-25", "2024-03-05"},
		{"2099-12-25", "2100-03-05"}, {"9999-11-25", "9999-12-31"},
	};
	for (size_t k = 0; k < COUNT_OF(spans); k++) {
		int64_t a, b;
		date_parse_day(spans[k][0], &a);
		date_parse_day(spans[k][1], &b);
		struct buf page = {0}, want = {0};
		buf_puts(&page, "{\"results\":[");
		for (int64_t day = a; day <= b; day++) {
			char text_day[DATE_DAY_LEN];
			date_format_day(day, text_day);
			/* noon UTC: the same day in both zones */
			buf_printf(&page, "%s{\"t\":%lld}", day > a ? "," : "",
				   (long long)(day * 86400 + 43200) * 1000);
			buf_printf(&want, "{\"ny\":\"%s\",\"utc\":\"%s\"}\n", text_day, text_day);
		}
		buf_puts(&page, "]}");
		struct mapped m;
		if (map_page(L, 1, page.data, page.len, &m) == LUA_OK && m.outcome == RECORDS_OK &&
		    CHECK(records_batch_count(m.batch) == (size_t)(b - a + 1), "%s: %zu records", spans[k][0],
			  records_batch_count(m.batch))) {
			struct buf got = {0};
			for (size_t i = 0; i < records_batch_count(m.batch); i++) {
				const char *data;
				size_t len;
				record_text(&m, i, &data, &len);
				buf_append(&got, data, len);
				buf_putc(&got, '\n');
			}
			test_check_bytes(got.data, got.len, want.data, want.len, __FILE__, __LINE__, spans[k][0]);
			buf_free(&got);
		} else {
			CHECK(0, "%s: map %d, outcome %d: %s", spans[k][0], m.status, (int)m.outcome, m.why);
		}
		lua_settop(L, 1);
		buf_free(&page);
		buf_free(&want);
	}
	test_lua_close(L);
}

/* ---- the batch ---- */

static void batch_accessors(void)
{
	lua_State *L = open_with(FULL);
	if (!L)
		return;
	const char page[] = "{\"results\":["
			    "{\"t\":1646629200000,\"day_text\":\"2022-03-01\",\"c\":1},"
			    "{\"day_text\":\"2022-03-02\"},"
			    "{\"t\":1646802000000,\"day_text\":null},"
			    "{\"t\":null}"
			    "]}";
	struct mapped m;
	if (map_page(L, 1, BYTES(page), &m) != LUA_OK || !CHECK(m.batch != NULL, "no batch")) {
		CHECK(0, "map failed: %s", m.error);
		test_lua_close(L);
		return;
	}
	int batch = lua_gettop(L);
	CHECK(records_batch_count(m.batch) == 4, "count %zu", records_batch_count(m.batch));
	int date = records_batch_column(m.batch, "date", CURSOR_DAY);
	int d2 = records_batch_column(m.batch, "d2", CURSOR_DAY);
	int transactions = records_batch_column(m.batch, "transactions", CURSOR_INTEGER);
	CHECK(date == 0 && transactions == 1 && d2 == 2, "value columns: date %d, transactions %d, d2 %d", date,
	      transactions, d2);
	CHECK(records_batch_column(m.batch, "price", CURSOR_DAY) == -1, "price is not a day field");
	CHECK(records_batch_column(m.batch, "stock_ticker", CURSOR_DAY) == -1, "stock_ticker is not a day field");
	CHECK(records_batch_column(m.batch, "t", CURSOR_DAY) == -1, "t is a source, not a field");
	CHECK(records_batch_column(m.batch, "", CURSOR_DAY) == -1, "an empty name");
	/* A column holds the values of its own kind of cursor only. */
	CHECK(records_batch_column(m.batch, "date", CURSOR_INTEGER) == -1, "days are not integers");
	CHECK(records_batch_column(m.batch, "date", CURSOR_DATETIME) == -1, "days are not datetimes");
	CHECK(records_batch_column(m.batch, "transactions", CURSOR_DAY) == -1, "integers are not days");
	CHECK(records_batch_column(m.batch, "date", CURSOR_NONE) == -1, "no cursor, no column");
	static const char *const dates[] = {"2022-03-07", NULL, "2022-03-09", NULL};
	static const char *const d2s[] = {"2022-03-01", "2022-03-02", NULL, NULL};
	for (size_t i = 0; i < 4; i++) {
		const char *data, *again;
		size_t len, again_len;
		int64_t day, want, none;
		records_batch_get(m.batch, i, date, &data, &len, &day);
		if (dates[i]) {
			date_parse_day(dates[i], &want);
			CHECK(day == want, "record %zu: date column %lld, want %lld", i, (long long)day,
			      (long long)want);
		} else {
			CHECK(day == RECORDS_NO_VALUE, "record %zu: date column %lld, want none", i, (long long)day);
		}
		records_batch_get(m.batch, i, d2, &again, &again_len, &day);
		if (d2s[i]) {
			date_parse_day(d2s[i], &want);
			CHECK(day == want, "record %zu: d2 column %lld, want %lld", i, (long long)day, (long long)want);
		} else {
			CHECK(day == RECORDS_NO_VALUE, "record %zu: d2 column %lld, want none", i, (long long)day);
		}
		CHECK(again == data && again_len == len, "record %zu: the text depends on the column", i);
		records_batch_get(m.batch, i, -1, &again, &again_len, &none);
		CHECK(none == RECORDS_NO_VALUE && again == data, "record %zu: column -1 gives day %lld", i,
		      (long long)none);
	}
	const char *data;
	size_t len;
	int64_t day;
	records_batch_get(m.batch, 3, date, &data, &len, &day);
	test_check_bytes(data, len, BYTES("{\"stock_ticker\":\"TSLA\",\"x\":\"k\"}"), __FILE__, __LINE__, "record 4");

	/* From Lua: #batch, batch[i] as a table, nothing outside 1..#batch. */
	test_push_lua(L,
		      "return function(b) local t = b[1] return #b, t.date, t.price, t.x, b[0], b[5], b['1'], b[1.5],"
		      " b[2].date, b[4].stock_ticker end");
	lua_pushvalue(L, batch);
	if (CHECK(lua_pcall(L, 1, 10, 0) == LUA_OK, "batch from Lua: %s", lua_tostring(L, -1))) {
		int base = lua_gettop(L) - 9;
		CHECK(lua_tointeger(L, base) == 4, "#batch is %s", lua_tostring(L, base));
		CHECK_STR(lua_tostring(L, base + 1), "2022-03-07", "batch[1].date");
		CHECK(lua_tonumber(L, base + 2) == 1, "batch[1].price");
		CHECK_STR(lua_tostring(L, base + 3), "k", "batch[1].x");
		/* b[0], b[5], b['1'], b[1.5] are nothing; record 2 has no date */
		for (int k = 4; k <= 8; k++)
			CHECK(lua_isnil(L, base + k), "value %d is a %s", k, luaL_typename(L, base + k));
		CHECK_STR(lua_tostring(L, base + 9), "TSLA", "batch[4].stock_ticker");
	}
	lua_settop(L, batch);
	/* records_to_batch: only a batch is one. */
	CHECK(records_to_batch(L, batch) == m.batch, "records_to_batch(batch)");
	CHECK(records_to_batch(L, 1) == NULL, "a mapper is not a batch");
	lua_newtable(L);
	CHECK(records_to_batch(L, -1) == NULL, "a table is not a batch");
	lua_pushnil(L);
	CHECK(records_to_batch(L, -1) == NULL, "nil is not a batch");
	lua_pushliteral(L, "batch");
	CHECK(records_to_batch(L, -1) == NULL, "a string is not a batch");
	test_lua_close(L);
}

/* The day span of a page: the engine writes a page in one piece only when it says every record
 * has the day and the days ascend, so it must never say so of a page where that is not true. */
static void day_spans(void)
{
	lua_State *L = open_with(FULL);
	if (!L)
		return;
	static const struct {
		const char *page;
		int spans; /* date column */
		const char *first, *last;
	} cases[] = {
		{"{\"results\":[{\"t\":1646629200000},{\"t\":1646715600000},{\"t\":1646802000000}]}", 1, "2022-03-07",
		 "2022-03-09"},
		{"{\"results\":[{\"t\":1646629200000},{\"t\":1646629200000}]}", 1, "2022-03-07", "2022-03-07"},
		{"{\"results\":[{\"t\":1646629200000}]}", 1, "2022-03-07", "2022-03-07"},
		{"{\"results\":[{\"t\":1646715600000},{\"t\":1646629200000},{\"t\":1646802000000}]}", 0, NULL, NULL},
		{"{\"results\":[{\"t\":1646629200000},{\"c\":1},{\"t\":1646802000000}]}", 0, NULL, NULL},
		{"{\"results\":[{\"t\":1646629200000},{\"t\":null}]}", 0, NULL, NULL},
		{"{\"results\":[{\"c\":1},{\"t\":1646629200000}]}", 0, NULL, NULL},
		{"{\"results\":[]}", 0, NULL, NULL},
		{"{\"status\":\"OK\"}", 0, NULL, NULL},
	};
	for (size_t k = 0; k < COUNT_OF(cases); k++) {
		struct mapped m;
		int top = lua_gettop(L);
		if (map_page(L, 1, cases[k].page, strlen(cases[k].page), &m) != LUA_OK || !m.batch) {
			CHECK(0, "case %zu: map failed: %s", k, m.error);
			lua_settop(L, top);
			continue;
		}
		int date = records_batch_column(m.batch, "date", CURSOR_DAY);
		int64_t first = 0, last = 0, want;
		int spans = records_batch_column_span(m.batch, date, &first, &last);
		CHECK(spans == cases[k].spans, "case %zu: span %d, want %d", k, spans, cases[k].spans);
		if (spans && cases[k].spans) {
			date_parse_day(cases[k].first, &want);
			CHECK(first == want, "case %zu: first day %lld, want %s", k, (long long)first, cases[k].first);
			date_parse_day(cases[k].last, &want);
			CHECK(last == want, "case %zu: last day %lld, want %s", k, (long long)last, cases[k].last);
			/* The lines are the records' lines, one after another. */
			const char *lines, *line;
			size_t len, line_len, at = 0;
			records_batch_lines(m.batch, &lines, &len);
			for (size_t i = 0; i < records_batch_count(m.batch); i++) {
				records_batch_line(m.batch, i, &line, &line_len);
				CHECK(line == lines + at, "case %zu: line %zu is not where the run says", k, i);
				at += line_len;
			}
			CHECK(at == len, "case %zu: the run is %zu bytes, its lines %zu", k, len, at);
		}
		CHECK(!records_batch_column_span(m.batch, -1, &first, &last), "case %zu: column -1 spans", k);
		lua_settop(L, top);
	}
	test_lua_close(L);
}

/* Buffers grow past their first sizes (64 KB of text, 1024 entries), are handed back when a batch
 * is collected, and serve the next page; a record copying one big member twice fits. */
static void big_pages_and_reused_buffers(void)
{
	lua_State *L =
		open_with("return records.declare { list = 'results', fields = {"
			  " { 'date', from = 't', as = 'day_from_ms' }, { 'a', from = 's' }, { 'b', from = 's' },"
			  " { 'n', from = 'n', as = 'integer' } } }");
	if (!L)
		return;
	for (int round = 0; round < 3; round++) {
		size_t count = round == 1 ? 10 : 5000;
		struct buf page = {0};
		buf_puts(&page, "{\"results\":[");
		for (size_t i = 0; i < count; i++)
			buf_printf(&page, "%s{\"t\":%lld,\"s\":\"r%d-%zu\",\"n\":%zu}", i ? "," : "",
				   1646629200000LL + (long long)i * 86400000LL, round, i, i);
		buf_puts(&page, "]}");
		int top = lua_gettop(L);
		struct mapped m;
		if (map_page(L, 1, page.data, page.len, &m) == LUA_OK &&
		    CHECK(records_batch_count(m.batch) == count, "round %d: %zu records", round,
			  records_batch_count(m.batch))) {
			int column = records_batch_column(m.batch, "date", CURSOR_DAY);
			int64_t first;
			date_parse_day("2022-03-07", &first);
			for (size_t i = 0; i < count; i += (i < 1100 ? 1 : 97)) {
				const char *data;
				size_t len;
				int64_t day;
				records_batch_get(m.batch, i, column, &data, &len, &day);
				char want[128], text[DATE_DAY_LEN];
				date_format_day(first + (int64_t)i, text);
				snprintf(want, sizeof want,
					 "{\"date\":\"%s\",\"a\":\"r%d-%zu\",\"b\":\"r%d-%zu\",\"n\":%zu}", text, round,
					 i, round, i, i);
				if (!test_check_bytes(data, len, want, strlen(want), __FILE__, __LINE__, "big page"))
					break;
				CHECK(day == first + (int64_t)i, "round %d record %zu: day %lld", round, i,
				      (long long)day);
			}
		} else {
			CHECK(0, "round %d: map failed: %s", round, m.error);
		}
		lua_settop(L, top);
		lua_gc(L, LUA_GCCOLLECT, 0);
		buf_free(&page);
	}
	/* One item of 300 KB, its member copied by two fields. */
	struct buf page = {0};
	buf_puts(&page, "{\"results\":[{\"t\":0,\"s\":\"");
	for (int i = 0; i < 300000; i++)
		buf_putc(&page, (char)('a' + i % 26));
	buf_puts(&page, "\"}]}");
	struct mapped m;
	if (map_page(L, 1, page.data, page.len, &m) == LUA_OK &&
	    CHECK(records_batch_count(m.batch) == 1, "one record")) {
		const char *data;
		size_t len;
		int64_t day;
		records_batch_get(m.batch, 0, 0, &data, &len, &day);
		struct buf want = {0};
		const char *member = page.data + strlen("{\"results\":[{\"t\":0,\"s\":");
		buf_puts(&want, "{\"date\":\"1970-01-01\",\"a\":");
		buf_append(&want, member, 300002);
		buf_puts(&want, ",\"b\":");
		buf_append(&want, member, 300002);
		buf_putc(&want, '}');
		test_check_bytes(data, len, want.data, want.len, __FILE__, __LINE__, "a 300 KB member copied twice");
		CHECK(day == 0, "day %lld", (long long)day);
		buf_free(&want);
	} else {
		CHECK(0, "a big item: %s", m.error);
	}
	lua_settop(L, 1);
	buf_free(&page);
	/* Two batches alive at once do not share buffers. */
	test_push_lua(L, "return function(m, a, b) local x = m:map({}, { text = a }) local y = m:map({}, { text = b })"
			 " collectgarbage() return x[1].a, y[1].a, #x, #y end");
	lua_pushvalue(L, 1);
	lua_pushliteral(L, "{\"results\":[{\"t\":0,\"s\":\"first\"}]}");
	lua_pushliteral(L, "{\"results\":[{\"t\":0,\"s\":\"second\"},{\"t\":1,\"s\":\"third\"}]}");
	if (CHECK(lua_pcall(L, 3, 4, 0) == LUA_OK, "two batches: %s", lua_tostring(L, -1))) {
		CHECK_STR(lua_tostring(L, -4), "first", "the first batch");
		CHECK_STR(lua_tostring(L, -3), "second", "the second batch");
		CHECK(lua_tointeger(L, -2) == 1 && lua_tointeger(L, -1) == 2, "counts");
	}
	test_lua_close(L);
}

/* A page whose records do not fit in the script's memory limit is an error, not a crash, and the
 * state serves the next page. */
static void records_beyond_the_memory_limit(void)
{
	lua_State *L = test_lua_open_limited((size_t)16 << 20);
	if (!CHECK(L != NULL, "host_open"))
		return;
	test_push_lua(L, "local f = {} for i = 1, 40 do f[i] = { 'f' .. i, from = 's' } end "
			 "return records.declare { list = 'results', fields = f }");
	struct buf page = {0};
	buf_puts(&page, "{\"results\":[{\"s\":\"");
	for (int i = 0; i < 1000000; i++)
		buf_putc(&page, 'x');
	buf_puts(&page, "\"}]}");
	struct mapped m;
	if (map_page(L, 1, page.data, page.len, &m) == LUA_OK) {
		CHECK(m.outcome == RECORDS_WRONG_SHAPE, "40 copies of 1 MB fit in 16 MB: outcome %d", (int)m.outcome);
		CHECK_CONTAINS(m.why, "the records of one page need more than the memory limit (16 MB)", "memory");
	} else {
		CHECK(0, "map raised %s", m.error);
	}
	lua_settop(L, 1);
	buf_free(&page);
	lua_gc(L, LUA_GCCOLLECT, 0);
	ONE_RECORD(
		L, 1, "the next page", "{\"results\":[{\"s\":1}]}",
		"{\"f1\":1,\"f2\":1,\"f3\":1,\"f4\":1,\"f5\":1,\"f6\":1,\"f7\":1,\"f8\":1,\"f9\":1,\"f10\":1,\"f11\":1,"
		"\"f12\":1,\"f13\":1,\"f14\":1,\"f15\":1,\"f16\":1,\"f17\":1,\"f18\":1,\"f19\":1,\"f20\":1,\"f21\":1,"
		"\"f22\":1,\"f23\":1,\"f24\":1,\"f25\":1,\"f26\":1,\"f27\":1,\"f28\":1,\"f29\":1,\"f30\":1,\"f31\":1,"
		"\"f32\":1,\"f33\":1,\"f34\":1,\"f35\":1,\"f36\":1,\"f37\":1,\"f38\":1,\"f39\":1,\"f40\":1}",
		NULL);
	test_lua_close(L);
}

/* ---- map's arguments and the response object ---- */

static void map_checks_its_arguments(void)
{
	lua_State *L = open_with(ONE);
	if (!L)
		return;
	static const struct {
		const char *call;
		const char *words;
	} cases[] = {
		{"m:map({}, {})", "response.text is a nil, not a string"},
		{"m:map({}, { body = {} })", "response.text is a nil"},
		{"m:map(nil, { text = '{}' })", "table expected"},
		{"m:map({})", "table expected"},
		{"m.map({}, {}, { text = '{}' })", "source_lua.records.mapper expected"},
	};
	for (size_t i = 0; i < COUNT_OF(cases); i++) {
		char chunk[256];
		snprintf(chunk, sizeof chunk,
			 "local m = ... local ok, err = pcall(function() return %s end) "
			 "return ok and 'accepted' or tostring(err)",
			 cases[i].call);
		if (luaL_loadstring(L, chunk) != LUA_OK) {
			CHECK(0, "%s: %s", chunk, lua_tostring(L, -1));
			lua_settop(L, 1);
			continue;
		}
		lua_pushvalue(L, 1);
		lua_call(L, 1, 1);
		CHECK_CONTAINS(lua_tostring(L, -1), cases[i].words, cases[i].call);
		lua_settop(L, 1);
	}
	/* A plain table with text is a response too. */
	test_push_lua(
		L, "return function(m) local b = m:map({}, { text = '{\"results\":[{\"c\":1}],\"next_url\":\"u\"}' })"
		   " return #b, b:next_url() end");
	lua_pushvalue(L, 1);
	if (CHECK(lua_pcall(L, 1, 2, 0) == LUA_OK, "a plain table: %s", lua_tostring(L, -1)))
		CHECK(lua_tointeger(L, -2) == 1 && !strcmp(lua_tostring(L, -1), "u"),
		      "a plain table: %s records, next %s", lua_tostring(L, -2), lua_tostring(L, -1));
	test_lua_close(L);
}

/* A number is not a page's text either (lua_tolstring would turn it into one). */
static void map_refuses_a_number_as_the_text(void)
{
	lua_State *L = open_with(ONE);
	if (!L)
		return;
	test_push_lua(L,
		      "return function(m) local ok, err = pcall(m.map, m, {}, { text = 5 }) return tostring(err) end");
	lua_pushvalue(L, 1);
	if (CHECK(lua_pcall(L, 1, 1, 0) == LUA_OK, "%s", lua_tostring(L, -1)))
		CHECK_CONTAINS(lua_tostring(L, -1), "response.text is a number, not a string", "text = 5");
	/* The same on a response of the engine's, whose text is still in its page. */
	test_push_lua(
		L, "return function(m, r) r.text = 5 local ok, err = pcall(m.map, m, {}, r) return tostring(err) end");
	lua_pushvalue(L, 1);
	lua_pushliteral(L, "u");
	records_push_response(L, 200, -1, BYTES("{\"results\":[]}"));
	lua_remove(L, -2);
	if (CHECK(lua_pcall(L, 2, 1, 0) == LUA_OK, "%s", lua_tostring(L, -1)))
		CHECK_CONTAINS(lua_tostring(L, -1), "response.text is a number, not a string",
			       "engine's response, text = 5");
	test_lua_close(L);
}

/* The page a response keeps is not one of its keys (json.encode would refuse a key that is not a
 * string): pairs sees status and url, then text and body once read. */
static void response_keys_are_its_fields(void)
{
	lua_State *L = open_with(ONE);
	if (!L)
		return;
	test_push_lua(L, "return function(r) local function keys() local names = {} for k in pairs(r) do"
			 " names[#names + 1] = tostring(k) end table.sort(names) return table.concat(names, ',') end"
			 " local before = keys() local _ = r.text, r.body return before, keys() end");
	lua_pushliteral(L, "u");
	records_push_response(L, 200, -1, BYTES("{\"results\":[]}"));
	lua_remove(L, -2);
	if (CHECK(lua_pcall(L, 1, 2, 0) == LUA_OK, "%s", lua_tostring(L, -1))) {
		CHECK_STR(lua_tostring(L, -2), "status,url", "keys before text and body are read");
		CHECK_STR(lua_tostring(L, -1), "body,status,text,url", "keys after");
	}
	test_lua_close(L);
}

static void response_body_is_decoded_on_first_use(void)
{
	lua_State *L = test_lua_open();
	if (!L)
		return;
	test_push_lua(L,
		      "return function(r)"
		      " local before = rawget(r, 'body')"
		      " local body = r.body"
		      " return before == nil, type(body), body.results[1].c, rawget(r, 'body') == body, r.body == body,"
		      " r.status, r.url, r.text, r.headers, r[1]"
		      " end");
	lua_pushliteral(L, "https://h/p");
	const char text[] = "{\"results\":[{\"c\":1.5}]}";
	records_push_response(L, 200, -1, BYTES(text));
	lua_remove(L, -2);
	if (CHECK(lua_pcall(L, 1, 10, 0) == LUA_OK, "body: %s", lua_tostring(L, -1))) {
		int base = lua_gettop(L) - 9;
		CHECK(lua_toboolean(L, base), "body was there before it was used");
		CHECK_STR(lua_tostring(L, base + 1), "table", "type(body)");
		CHECK(lua_tonumber(L, base + 2) == 1.5, "body.results[1].c");
		CHECK(lua_toboolean(L, base + 3) && lua_toboolean(L, base + 4), "body is decoded once and kept");
		CHECK(lua_tointeger(L, base + 5) == 200, "status");
		CHECK_STR(lua_tostring(L, base + 6), "https://h/p", "url");
		CHECK_STR(lua_tostring(L, base + 7), text, "text");
		CHECK(lua_isnil(L, base + 8) && lua_isnil(L, base + 9), "other fields are nil");
	}
	lua_settop(L, 0);
	/* A body that is not JSON: the same retryable error as map's, and the response is marked. */
	static const struct {
		const char *text;
		size_t len;
		const char *why;
	} bad[] = {
		{"{\"results\":[", 12, NULL},
		{"<html></html>", 13, NULL},
		{"{\"s\":\"\xff\"}", sizeof("{\"s\":\"\xff\"}") - 1, "not valid UTF-8 at byte 6"},
		{"", 0, NULL},
	};
	for (size_t i = 0; i < COUNT_OF(bad); i++) {
		test_push_lua(L, "return function(r) return r.body end");
		lua_pushliteral(L, "https://h/p");
		records_push_response(L, 200, -1, bad[i].text, bad[i].len);
		lua_remove(L, -2);
		int response = lua_gettop(L);
		lua_pushvalue(L, -2);
		lua_pushvalue(L, response);
		int status = lua_pcall(L, 1, 1, 0);
		char why[256] = "";
		if (CHECK(status != LUA_OK, "body of '%s' decoded", bad[i].text)) {
			CHECK(lua_istable(L, -1), "the error is a %s", luaL_typename(L, -1));
			if (lua_istable(L, -1)) {
				lua_getfield(L, -1, "failure_type");
				CHECK_STR(lua_tostring(L, -1), "transient_error", bad[i].text);
				lua_getfield(L, -2, "message");
				CHECK_CONTAINS(lua_tostring(L, -1), "the answer is not JSON (", bad[i].text);
			}
			CHECK(records_response_not_json(L, response, why, sizeof why),
			      "'%s': the response is not marked", bad[i].text);
			if (bad[i].why)
				CHECK_CONTAINS(why, bad[i].why, bad[i].text);
		}
		lua_settop(L, 0);
	}
	/* JSON null is a body: json.null, not an error. */
	test_push_lua(L, "return function(r) return r.body == json.null end");
	lua_pushliteral(L, "u");
	records_push_response(L, 200, -1, BYTES("null"));
	lua_remove(L, -2);
	if (CHECK(lua_pcall(L, 1, 1, 0) == LUA_OK, "null body: %s", lua_tostring(L, -1)))
		CHECK(lua_toboolean(L, -1), "a null body is json.null");
	lua_settop(L, 0);
	test_lua_close(L);
}

/* A body read from Lua marks its response (for the engine) with a key scripts cannot spell, and so
 * does a batch's verdict once Lua reads it (#batch), so that a parse that looked into its batch
 * and failed has the page asked for again. */
static void the_not_json_mark(void)
{
	lua_State *L = open_with(FULL);
	if (!L)
		return;
	test_push_lua(L, "return function(m, r) local b = m:map({}, r) return pcall(function() return #b end) end");
	lua_pushliteral(L, "u");
	records_push_response(L, 200, -1, BYTES("{\"results\":[{\"t\":1646629200000}] x"));
	lua_remove(L, -2);
	int response = lua_gettop(L);
	lua_pushvalue(L, -2);
	lua_pushvalue(L, 1);
	lua_pushvalue(L, response);
	char why[256];
	if (CHECK(lua_pcall(L, 2, 2, 0) == LUA_OK, "%s", lua_tostring(L, -1)))
		CHECK(!lua_toboolean(L, -2), "#batch of a page that is not JSON did not raise");
	CHECK(records_response_not_json(L, response, why, sizeof why) && strstr(why, "at byte 33"),
	      "#batch of a page that is not JSON did not mark its response");
	lua_settop(L, 1);
	test_push_lua(L,
		      "return function(r) pcall(function() return r.body end)"
		      " local names = {} for k in pairs(r) do if type(k) == 'string' then names[#names + 1] = k end end"
		      " table.sort(names) return table.concat(names, ',') end");
	lua_pushliteral(L, "u");
	records_push_response(L, 200, -1, BYTES("{"));
	lua_remove(L, -2);
	response = lua_gettop(L);
	lua_pushvalue(L, -2);
	lua_pushvalue(L, response);
	if (CHECK(lua_pcall(L, 1, 1, 0) == LUA_OK, "%s", lua_tostring(L, -1)))
		/* The mark is not a string key; the text stays in its page until read. */
		CHECK_STR(lua_tostring(L, -1), "status,url", "the string keys of a marked response");
	CHECK(records_response_not_json(L, response, why, sizeof why), "reading the body did not mark the response");
	test_lua_close(L);
}

/* Maps a page without settling: pushes the batch. */
static const struct record_batch *push_unsettled(lua_State *L, int mapper, const char *text, size_t len)
{
	mapper = lua_absindex(L, mapper);
	test_push_lua(L, "return function(m, ctx, r) return m:map(ctx, r) end");
	lua_pushvalue(L, mapper);
	push_ctx(L);
	lua_pushliteral(L, "u");
	records_push_response(L, 200, -1, text, len);
	lua_remove(L, -2);
	if (lua_pcall(L, 3, 1, 0) != LUA_OK) {
		CHECK(0, "map raised %s", lua_tostring(L, -1));
		return NULL;
	}
	return records_to_batch(L, -1);
}

/* Page k of the worker test: k * 37 bars, or a page that is not JSON (k % 7 == 3) or of the wrong
 * shape (k % 7 == 5). */
static void worker_page(struct buf *page, int k)
{
	buf_clear(page);
	if (k % 7 == 3) {
		buf_puts(page, "{\"results\":[{\"t\":1646629200000},");
		return;
	}
	if (k % 7 == 5) {
		buf_puts(page, "{\"results\":[{\"t\":1646629200000},7]}");
		return;
	}
	buf_puts(page, "{\"results\":[");
	for (int i = 0; i < k * 37; i++)
		buf_printf(page, "%s{\"t\":%lld,\"c\":%d.50,\"n\":%d}", i ? "," : "", 1646629200000LL + i * 86400000LL,
			   i, k);
	buf_printf(page, "],\"next_url\":\"https://h/p?page=%d\"}", k + 1);
}

/* How many of this process's threads are named name (Linux: /proc/self/task/TID/comm). */
static int threads_named(const char *name)
{
	DIR *tasks = opendir("/proc/self/task");
	if (!tasks)
		return -1;
	int count = 0;
	struct dirent *task;
	while ((task = readdir(tasks))) {
		if (task->d_name[0] == '.')
			continue;
		char path[300], comm[32] = "";
		snprintf(path, sizeof path, "/proc/self/task/%s/comm", task->d_name);
		FILE *f = fopen(path, "r");
		if (f) {
			if (fgets(comm, sizeof comm, f))
				comm[strcspn(comm, "\n")] = 0;
			fclose(f);
		}
		count += strcmp(comm, name) == 0;
	}
	closedir(tasks);
	return count;
}

/* During a sync pages are walked on worker threads: batches mapped at once and settled in any
 * order give what a walk on the main thread gives; a batch collected while its walk is queued or
 * running waits for it; lua_close with walks in flight is clean (ASan, valgrind). */
static void batches_walked_on_workers(void)
{
	lua_State *L = open_with(FULL);
	if (!L)
		return;
	struct pool *pool = &runtime_of(L)->pool;
	pool_start(pool, 3);
	if (!CHECK(pool_running(pool), "no worker started")) {
		test_lua_close(L);
		return;
	}
	CHECK(threads_named(POOL_THREAD_NAME) == pool_threads(pool), "%d of %d workers named %s",
	      threads_named(POOL_THREAD_NAME), pool_threads(pool), POOL_THREAD_NAME);
	enum { PAGES = 24 };
	struct buf page = {0};
	const struct record_batch *batches[PAGES];
	int first = lua_gettop(L) + 1;
	for (int k = 0; k < PAGES; k++) {
		worker_page(&page, k);
		batches[k] = push_unsettled(L, 1, page.data, page.len);
	}
	/* Dropped before they are settled: their __gc waits for their walks. */
	for (int k = 0; k < 4; k++) {
		worker_page(&page, 40 + k);
		push_unsettled(L, 1, page.data, page.len);
		lua_pop(L, 1);
	}
	lua_gc(L, LUA_GCCOLLECT, 0);
	for (int k = PAGES - 1; k >= 0; k--) {
		if (!batches[k])
			continue;
		CHECK(records_to_batch(L, first + k) == batches[k], "batch %d moved", k);
		char why[600];
		enum records_outcome outcome = records_batch_settle(batches[k], why, sizeof why);
		CHECK(records_batch_ready(batches[k]), "batch %d: settled but not ready", k);
		if (k % 7 == 3) {
			CHECK(outcome == RECORDS_NOT_JSON, "page %d: outcome %d (%s)", k, (int)outcome, why);
			continue;
		}
		if (k % 7 == 5) {
			CHECK(outcome == RECORDS_WRONG_SHAPE, "page %d: outcome %d (%s)", k, (int)outcome, why);
			CHECK_CONTAINS(why, "test:1: records: item 2 of 'results' is a number, not an object",
				       "worker");
			continue;
		}
		if (!CHECK(outcome == RECORDS_OK, "page %d: outcome %d (%s)", k, (int)outcome, why) ||
		    !CHECK(records_batch_count(batches[k]) == (size_t)k * 37, "page %d: %zu records", k,
			   records_batch_count(batches[k])))
			continue;
		/* Its records are those of the page. */
		for (size_t i = 0; i < records_batch_count(batches[k]); i += 17) {
			const char *data;
			size_t len;
			int64_t day, want_day;
			records_batch_get(batches[k], i, records_batch_column(batches[k], "date", CURSOR_DAY), &data,
					  &len, &day);
			char want[200], text[DATE_DAY_LEN];
			date_parse_day("2022-03-07", &want_day);
			want_day += (int64_t)i;
			date_format_day(want_day, text);
			snprintf(want, sizeof want,
				 "{\"date\":\"%s\",\"stock_ticker\":\"TSLA\",\"price\":%zu.5,\"transactions\":%d,\"x\":"
				 "\"k\"}",
				 text, i, k);
			if (!test_check_bytes(data, len, want, strlen(want), __FILE__, __LINE__,
					      "a page walked on a worker"))
				break;
			CHECK(day == want_day, "page %d record %zu: day %lld", k, i, (long long)day);
		}
		records_batch_push_next_url(L, batches[k]);
		char next[64];
		snprintf(next, sizeof next, "https://h/p?page=%d", k + 1);
		CHECK_STR(lua_tostring(L, -1), next, "next_url of a batch walked on a worker");
		lua_pop(L, 1);
	}
	/* And from Lua: #batch and batch:next_url() wait for the walk. */
	worker_page(&page, 9);
	test_push_lua(L, "return function(m, text) local b = m:map({ partition = 'X' }, { text = text })"
			 " return #b, b:next_url(), b[1].stock_ticker end");
	lua_pushvalue(L, 1);
	lua_pushlstring(L, page.data, page.len);
	if (CHECK(lua_pcall(L, 2, 3, 0) == LUA_OK, "from Lua: %s", lua_tostring(L, -1))) {
		CHECK(lua_tointeger(L, -3) == 9 * 37, "#batch is %s", lua_tostring(L, -3));
		CHECK_STR(lua_tostring(L, -2), "https://h/p?page=10", "batch:next_url()");
		CHECK_STR(lua_tostring(L, -1), "X", "batch[1].stock_ticker");
	}
	/* Closed with walks in flight. */
	for (int k = 0; k < 4; k++) {
		worker_page(&page, 50 + k);
		push_unsettled(L, 1, page.data, page.len);
	}
	pool_stop(pool);
	CHECK(!pool_running(pool), "the workers did not stop");
	test_lua_close(L);
	buf_free(&page);
}

/* What the engine does once parse has returned and the records are written: the answer's page
 * goes with the last batch that holds it; a batch's buffers go at once; records_held counts what
 * is not freed, down to nothing after a collection; a released batch or page raises an error in
 * Lua. */
static void released_batches_and_pages(void)
{
	lua_State *L = open_with(FULL);
	if (!L)
		return;
	struct runtime *rt = runtime_of(L);
	size_t before = records_held(rt);
	const char page[] = "{\"results\":[{\"t\":1646629200000,\"c\":1}],\"next_url\":\"https://h/p?cursor=2\"}";
	lua_pushliteral(L, "https://api.example.com/v2/aggs");
	records_push_response(L, 200, -1, BYTES(page));
	lua_remove(L, -2);
	int response = lua_gettop(L);
	test_push_lua(L, "return function(m, ctx, r) return m:map(ctx, r), m:map(ctx, r) end");
	lua_pushvalue(L, 1);
	push_ctx(L);
	lua_pushvalue(L, response);
	if (!CHECK(lua_pcall(L, 3, 2, 0) == LUA_OK, "two maps: %s", lua_tostring(L, -1))) {
		test_lua_close(L);
		return;
	}
	int first = lua_gettop(L) - 1, second = lua_gettop(L);
	const struct record_batch *a = records_to_batch(L, first), *b = records_to_batch(L, second);
	char why[256];
	CHECK(a && b && records_batch_settle(a, why, sizeof why) == RECORDS_OK &&
		      records_batch_settle(b, why, sizeof why) == RECORDS_OK,
	      "both batches walked");
	CHECK(records_held(rt) == before + 3, "a page and two batches held: %zu", records_held(rt) - before);
	records_response_release(L, response);
	CHECK(records_held(rt) == before + 3, "the page stays for its two batches: %zu", records_held(rt) - before);
	records_batch_release(L, second);
	CHECK(records_batch_released(b) && !records_batch_released(a), "only the second batch is released");
	CHECK(records_batch_count(b) == 0, "a released batch has no records left");
	CHECK(records_held(rt) == before + 2, "the page stays for the first batch: %zu", records_held(rt) - before);
	/* The first batch still reads its next URL from the page's text. */
	records_batch_push_next_url(L, a);
	CHECK_STR(lua_tostring(L, -1), "https://h/p?cursor=2", "the page's next_url after the other batch went");
	lua_pop(L, 1);
	records_batch_release(L, first);
	CHECK(records_held(rt) == before, "both batches and the page freed: %zu", records_held(rt) - before);
	records_batch_release(L, first); /* twice: nothing more */
	test_push_lua(L, "return function(b, r) local ok, e = pcall(function() return #b end) "
			 "local ok2, e2 = pcall(function() return r.text end) return ok, e, ok2, e2 end");
	lua_pushvalue(L, first);
	lua_pushvalue(L, response);
	if (CHECK(lua_pcall(L, 2, 4, 0) == LUA_OK, "looking into them: %s", lua_tostring(L, -1))) {
		CHECK(!lua_toboolean(L, -4), "#batch after its release raised nothing");
		CHECK_CONTAINS(lua_tostring(L, -3), "records were written and released", "the batch's error");
		CHECK(!lua_toboolean(L, -2), "response.text after its release raised nothing");
		CHECK_CONTAINS(lua_tostring(L, -1), "this page was released", "the response's error");
	}
	lua_settop(L, 1);
	/* Unreleased, a page and its batch are held until the collector frees them. */
	struct mapped m;
	if (map_page(L, 1, BYTES(page), &m) == LUA_OK)
		CHECK(records_held(rt) == before + 2, "a mapped page: %zu held", records_held(rt) - before);
	lua_settop(L, 1);
	lua_gc(L, LUA_GCCOLLECT, 0);
	CHECK(records_held(rt) == before, "after a collection: %zu held", records_held(rt) - before);
	host_close(L);
	rt->L = NULL;
	CHECK(records_held(rt) == 0, "after lua_close: %zu held", records_held(rt));
	runtime_free(rt);
	free(rt);
}

static const struct test tests[] = {
	{"records.declare refuses what cannot work, saying why", declarations_are_checked},
	{"records.declare takes 64 fields, name = and UTF-8 names, not 65", declarations_that_work},
	{"map writes the description's records in declared order", records_of_the_description},
	{"map: numbers rewritten only with an exponent or trailing zero; the integer rule",
	 numbers_and_the_integer_rule},
	{"numbers with an exponent in a long page: the shortest form, by both writers",
	 numbers_with_an_exponent_in_a_long_page},
	{"generated items read member by member and from the learnt shape: the same records and errors",
	 generated_items_alone_and_after},
	{"items read after one of their shape are written as when alone", items_of_a_learnt_shape_as_alone},
	{"map copies strings verbatim, escapes and UTF-8 intact", strings_are_copied_verbatim},
	{"map leaves absent members out; null per kind", absent_null_and_declared_order},
	{"map: dotted from paths into the item's objects; parents missing, not objects or given twice", nested_paths},
	{"map: nested values that differ between items of one learnt shape", nested_paths_of_a_learnt_shape},
	{"map: 1000 levels through a path are read, 1001 too deep", nested_paths_at_the_depth_limit},
	{"map: as = number, string and boolean", number_string_and_boolean},
	{"map: datetime_from_ms, datetime_from_s, day_from_s; rounding, bounds, zones, columns", epoch_fields},
	{"map: defaults where a field would be left out, their columns; required fields", defaults_and_required_fields},
	{"map writes a copied value spelt over several lines on one", line_breaks_inside_copied_values},
	{"map writes constants and context fields, JSON-encoded", constants_and_context_fields},
	{"map: day_from_ms in both zones, to the bounds; day text", day_fields},
	{"map takes whitespace everywhere", whitespace_everywhere},
	{"map: of a member given twice the last counts", duplicate_members_last_wins},
	{"map matches members in any order, spelt with escapes", members_in_any_order_and_escaped_names},
	{"map returns next_url only when it is a string", next_url_values},
	{"map: empty, null and absent lists give no records", pages_without_records},
	{"map: a list that finds nothing on a page with arrays of items elsewhere names them",
	 a_list_that_finds_nothing},
	{"map: every syntax error is not JSON, with where", syntax_errors_are_not_json},
	{"map: 1000 levels are JSON, 1001 too deep (not 'not JSON'), wherever they are",
	 nesting_past_the_limit_is_too_deep_not_invalid},
	{"map agrees with cjson on what is JSON, but for cjson's laxities", scanner_agrees_with_cjson},
	{"map refuses lone surrogate escapes, as cjson does", lone_surrogate_escapes_are_not_json},
	{"map: a page that is not JSON is not JSON even after a shape error", not_json_wins_over_a_shape_error},
	{"map: shape errors are plain errors naming the item", shape_errors_name_the_item},
	{"map: a time outside the years 1000 to 9999 names the item and value", out_of_range_ms_names_the_item},
	{"map: 20000 generated numbers as the runtime's writer and math.tointeger",
	 generated_numbers_agree_with_the_runtime_writer},
	{"map: 5000 generated instants' days as date_day_in_zone", generated_days_agree_with_the_date_functions},
	{"map: 2000 generated epochs as date_parse_instant, date_format_instant and date_day_in_zone",
	 generated_instants_agree_with_the_date_functions},
	{"batch: count, day columns, records, Lua access", batch_accessors},
	{"batch: a day span only when every record has the day and the days ascend", day_spans},
	{"batch: big pages, buffers handed back and reused", big_pages_and_reused_buffers},
	{"map: records beyond the memory limit are an error", records_beyond_the_memory_limit},
	{"map checks its arguments", map_checks_its_arguments},
	{"map refuses a number as response.text", map_refuses_a_number_as_the_text},
	{"a response's keys are its fields: its page is kept apart", response_keys_are_its_fields},
	{"response.body is decoded on first use, kept, retryable when not JSON", response_body_is_decoded_on_first_use},
	{"reading a body or a batch that is not JSON marks the response", the_not_json_mark},
	{"batches walked on worker threads: settled in any order, collected, closed", batches_walked_on_workers},
	{"released batches and pages: freed at once or with the last batch, counted, errors in Lua",
	 released_batches_and_pages},
};

const struct suite records_suite = {"records", tests, COUNT_OF(tests), NULL, NULL, NULL};
