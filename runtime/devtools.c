/*
 * devtools: test-read and catalog, the commands a stream's author runs while writing it.
 *
 * test-read is the read command with the catalog made up (every stream, or the one named; the
 * incremental mode where a stream has a cursor) and stdout turned into a trace (trace.c): the
 * same engine, so what it shows is what a sync does. catalog turns discover's streams into the
 * configured catalog read asks for.
 */
#include "devtools.h"

#include <lauxlib.h>
#include <stdio.h>
#include <string.h>

#include "auth.h"
#include "config.h"
#include "input.h"
#include "json.h"
#include "read.h"
#include "runtime.h"
#include "stream.h"
#include "suggest.h"
#include "trace.h"

/* The configured catalog entry of one stream: incremental when asked for and it has a cursor. */
static void push_configured(lua_State *L, int def_idx, const struct stream_def *def, int incremental)
{
	stream_push_catalog_entry(L, def_idx, def);
	int stream = lua_gettop(L);
	int use_cursor = incremental && def->cursor.kind != CURSOR_NONE;
	lua_createtable(L, 0, 5);
	lua_pushvalue(L, stream);
	lua_setfield(L, -2, "stream");
	lua_pushstring(L, use_cursor ? "incremental" : "full_refresh");
	lua_setfield(L, -2, "sync_mode");
	lua_pushstring(L, use_cursor ? (def->has_primary_key ? "append_dedup" : "append") : "overwrite");
	lua_setfield(L, -2, "destination_sync_mode");
	if (use_cursor) {
		lua_getfield(L, stream, "default_cursor_field");
		lua_setfield(L, -2, "cursor_field");
	}
	if (def->has_primary_key) {
		lua_getfield(L, stream, "source_defined_primary_key");
		lua_setfield(L, -2, "primary_key");
	}
	lua_remove(L, stream);
}

/* The names in a "a,b" list that the script has, each a stream; an unknown one is a config error
 * naming the closest. */
static const struct stream_def *find_or_raise(lua_State *L, const struct script_def *def, const char *name, size_t len)
{
	char wanted[256];
	snprintf(wanted, sizeof wanted, "%.*s", (int)(len < 255 ? len : 255), name);
	const struct stream_def *s = stream_find(def, wanted);
	if (s)
		return s;
	const char *names[65];
	size_t n = 0;
	for (size_t i = 0; i < def->count && n < 64; i++)
		names[n++] = def->streams[i].name;
	names[n] = NULL;
	const char *closest = suggest_closest(wanted, names);
	input_raise(L, PROTO_CONFIG_ERROR, "the script has no stream '%s'%s%s%s", wanted,
		    closest ? " (did you mean " : "", closest ? closest : "", closest ? "?)" : "");
	return NULL;
}

/* {streams = {...}} of the streams named in list ("a,b"; NULL: all). */
static void push_catalog(lua_State *L, const struct script_def *def, int def_idx, const char *list, int incremental)
{
	lua_createtable(L, 0, 1);
	lua_newtable(L);
	lua_Integer n = 0;
	if (!list) {
		for (size_t i = 0; i < def->count; i++) {
			push_configured(L, def_idx, &def->streams[i], incremental);
			lua_rawseti(L, -2, ++n);
		}
	} else {
		for (const char *p = list; *p;) {
			size_t len = strcspn(p, ",");
			if (len) {
				push_configured(L, def_idx, find_or_raise(L, def, p, len), incremental);
				lua_rawseti(L, -2, ++n);
			}
			p += len + (p[len] == ',');
		}
	}
	lua_setfield(L, -2, "streams");
}

/* {stream name = json_schema}, for --infer-schema's comparison. */
static void push_declared_schemas(lua_State *L, const struct script_def *def, int def_idx)
{
	lua_newtable(L);
	for (size_t i = 0; i < def->count; i++) {
		stream_push_table(L, def_idx, &def->streams[i]);
		lua_getfield(L, -1, "json_schema");
		lua_setfield(L, -3, def->streams[i].name);
		lua_pop(L, 1);
	}
}

int command_test_read(struct runtime *rt, int script, const struct script_def *def, int def_idx, const char *config,
		      const char *state, const struct dev_options *o)
{
	lua_State *L = rt->L;
	struct trace_options opt = {
		.json = o->json,
		.infer_schema = o->infer_schema,
		.verbose = o->verbose,
		.max_records = o->max_records,
		.max_pages = o->max_pages,
		.max_partitions = o->max_partitions,
	};
	push_declared_schemas(L, def, def_idx);
	if (trace_start(rt, &opt, -1))
		input_raise(L, PROTO_SYSTEM_ERROR, "the trace cannot start");
	lua_pop(L, 1);
	if (config_load(rt, script, config))
		input_raise(L, PROTO_CONFIG_ERROR, "%s", lua_tostring(L, -1));
	int config_idx = lua_gettop(L);
	char err[1024];
	if (auth_configure(rt, script, config_idx, err, sizeof err))
		input_raise(L, PROTO_CONFIG_ERROR, "%s", err);
	push_catalog(L, def, def_idx, o->stream, 1);
	int catalog = lua_gettop(L);
	input_read_state(L, state);
	int states = lua_gettop(L);
	int failed = read_catalog(rt, def, def_idx, config_idx, catalog, states);
	trace_finish(rt);
	return failed ? 1 : 0;
}

void command_catalog(struct runtime *rt, int script, const struct script_def *def, int def_idx, const char *config,
		     const struct dev_options *o)
{
	lua_State *L = rt->L;
	if (config_load(rt, script, config))
		input_raise(L, PROTO_CONFIG_ERROR, "%s", lua_tostring(L, -1));
	int incremental = !o->mode || !strcmp(o->mode, "incremental");
	if (o->mode && !incremental && strcmp(o->mode, "full_refresh"))
		input_raise(L, PROTO_CONFIG_ERROR, "--mode is full_refresh or incremental, not '%s'", o->mode);
	push_catalog(L, def, def_idx, o->streams, incremental);
	struct buf text = {0};
	char err[256];
	if (json_encode(L, -1, &text, err, sizeof err))
		input_raise(L, PROTO_SYSTEM_ERROR, "the catalog cannot be written as JSON: %s", err);
	buf_putc(&text, '\n');
	proto_write_lines(&rt->out, text.data, text.len);
	buf_free(&text);
}
