/*
 * emit_bench: the emission rate in isolation. A page already in memory (Polygon bars, HubSpot-like
 * contacts) is handed to the parse() of the script's first stream as the engine hands it (a
 * response object), and the records it gives are written as RECORD messages of that stream the
 * way the engine writes them, over and over, on one core. parse may return a declared mapper's
 * batch or Lua tables; a batch's cursor values (the stream's cursor_field and cursor_kind) are
 * read for every record, as the engine reads them. Messages go to stdout: run it with stdout on
 * /dev/null. Prints "records_per_second N" on stderr.
 *
 * usage: emit_bench SCRIPT PAGE_FILE SECONDS
 */
#define _GNU_SOURCE
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cursor.h"
#include "host.h"
#include "json.h"
#include "proto.h"
#include "records.h"
#include "runtime.h"

struct bench {
	const char *script;
	const char *page_path;
	double seconds;
	long long records;
	double elapsed;
	const char *stream;       /* the first stream's name */
	const char *cursor_field; /* NULL: no cursor */
	enum cursor_kind cursor_kind;
};

static double now_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void push_file(lua_State *L, const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		luaL_error(L, "cannot open %s", path);
	luaL_Buffer b;
	luaL_buffinit(L, &b);
	size_t n;
	char chunk[65536];
	while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
		luaL_addlstring(&b, chunk, n);
	fclose(f);
	luaL_pushresult(&b);
}

static long long write_batch(lua_State *L, const struct bench *b, const struct record_batch *batch)
{
	char why[512];
	if (records_batch_settle(batch, why, sizeof why) != RECORDS_OK)
		luaL_error(L, "the page was not mapped: %s", why);
	/* As the engine writes a batch framed for its stream: every record's day read, then the run of
	 * adjacent message lines written at once. */
	size_t n = records_batch_count(batch);
	if (!records_batch_framed_for(batch, b->stream))
		luaL_error(L, "the batch was not framed for %s", b->stream);
	int column = b->cursor_field ? records_batch_column(batch, b->cursor_field, b->cursor_kind) : -1;
	if (b->cursor_field && column < 0)
		luaL_error(L, "the batch has no %s column '%s'", cursor_kind_names[b->cursor_kind], b->cursor_field);
	int64_t last = INT64_MIN;
	for (size_t i = 0; i < n && column >= 0; i++) {
		const char *data;
		size_t len;
		int64_t value;
		records_batch_get(batch, i, column, &data, &len, &value);
		if (value < last)
			luaL_error(L, "record %d goes back in time", (int)i + 1);
		last = value;
	}
	if (n) {
		const char *first, *final;
		size_t first_len, final_len;
		records_batch_line(batch, 0, &first, &first_len);
		records_batch_line(batch, n - 1, &final, &final_len);
		proto_write_lines(&runtime_of(L)->out, first, (size_t)(final + final_len - first));
	}
	return (long long)n;
}

static long long write_tables(lua_State *L, const struct bench *b, int records)
{
	lua_Integer n = (lua_Integer)lua_rawlen(L, records);
	char err[128];
	for (lua_Integer i = 1; i <= n; i++) {
		lua_rawgeti(L, records, i);
		if (proto_record(&runtime_of(L)->out, L, b->stream, lua_gettop(L), 1700000000000LL, err, sizeof err))
			luaL_error(L, "record %d: %s", (int)i, err);
		lua_pop(L, 1);
	}
	return (long long)n;
}

/* One page: parse, write every record. Returns how many records. */
static long long one_page(lua_State *L, const struct bench *b, int parse, int ctx, int text)
{
	int top = lua_gettop(L);
	size_t len;
	const char *page = lua_tolstring(L, text, &len);
	lua_pushvalue(L, parse);
	lua_pushvalue(L, ctx);
	lua_pushliteral(L, "http://127.0.0.1/page");
	records_push_response(L, 200, -1, page, len);
	lua_remove(L, -2);
	if (host_call(L, 2, 2) != LUA_OK) {
		lua_getfield(L, -1, "message");
		luaL_error(L, "parse failed: %s", lua_tostring(L, -1));
	}
	const struct record_batch *batch = records_to_batch(L, top + 1);
	long long n = batch ? write_batch(L, b, batch) : write_tables(L, b, top + 1);
	lua_settop(L, top);
	/* As the engine does after every page. */
	lua_gc(L, LUA_GCCOLLECT);
	return n;
}

static int bench_main(lua_State *L)
{
	struct bench *b = lua_touserdata(L, 1);
	host_load_script(L, b->script);
	lua_getfield(L, -1, "streams");
	lua_rawgeti(L, -1, 1);
	int stream = lua_gettop(L);
	lua_getfield(L, stream, "name");
	b->stream = luaL_checkstring(L, -1);
	if (lua_getfield(L, stream, "cursor_field") == LUA_TSTRING) {
		b->cursor_field = lua_tostring(L, -1);
		lua_getfield(L, stream, "cursor_kind");
		b->cursor_kind = (enum cursor_kind)luaL_checkoption(L, -1, "day", cursor_kind_names);
	}
	lua_getfield(L, stream, "parse");
	int parse = lua_gettop(L);
	lua_createtable(L, 0, 1);
	lua_pushstring(L, "TSLA");
	lua_setfield(L, -2, "partition");
	lua_pushstring(L, b->stream);
	lua_setfield(L, -2, "stream");
	int ctx = lua_gettop(L);
	push_file(L, b->page_path);
	int text = lua_gettop(L);
	one_page(L, b, parse, ctx, text); /* warm-up */
	b->records = 0;
	double start = now_seconds();
	do {
		b->records += one_page(L, b, parse, ctx, text);
		b->elapsed = now_seconds() - start;
	} while (b->elapsed < b->seconds);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: %s SCRIPT PAGE_FILE SECONDS\n", argv[0]);
		return 2;
	}
	struct bench b = {argv[1], argv[2], atof(argv[3]), 0, 0, NULL, NULL, CURSOR_NONE};
	struct runtime rt;
	runtime_init(&rt);
	rt.limits.memory_bytes = 512u << 20;
	rt.limits.instructions_per_call = 4000000000LL;
	lua_State *L = rt.L = host_open(&rt);
	lua_pushcfunction(L, bench_main);
	lua_pushlightuserdata(L, &b);
	int rc = lua_pcall(L, 1, 0, 0);
	if (rc != LUA_OK)
		fprintf(stderr, "emit_bench: %s\n", lua_tostring(L, -1));
	runtime_free(&rt);
	if (rc != LUA_OK)
		return 1;
	fprintf(stderr, "records %lld in %.3f s\nrecords_per_second %.0f\n", b.records, b.elapsed,
		(double)b.records / b.elapsed);
	return 0;
}
