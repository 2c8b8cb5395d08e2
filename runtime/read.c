/*
 * read: the read command. Streams are read in the catalog's order, each by the engine; a stream
 * that fails does not stop the others (the platform retries the sync as a whole), and the exit
 * status says whether any failed. The whole-source state blob that the tutorial's connector wrote
 * is carried only for a script that asks for it (legacy_state = true).
 */
#include "read.h"

#include <stdlib.h>
#include <unistd.h>

#include "engine.h"
#include "host.h"
#include "pool.h"
#include "proto.h"
#include "runtime.h"
#include "stream.h"

/* The legacy blob starts as the incoming state, so that copying it keeps streams not read now. */
static int push_legacy(lua_State *L, int states)
{
	lua_newtable(L);
	lua_pushnil(L);
	while (lua_next(L, states)) {
		lua_pushvalue(L, -2);
		lua_insert(L, -2);
		lua_rawset(L, -4);
	}
	return lua_gettop(L);
}

/* Pages are walked on worker threads while the main thread drives the network and writes
 * messages: one worker per core, at most 4 (a sync has few pages in flight), none on one core.
 * SOURCE_LUA_MAP_THREADS sets the number; 0 walks every page on the main thread. */
static int map_threads(void)
{
	const char *env = getenv("SOURCE_LUA_MAP_THREADS");
	if (env && *env) {
		char *end;
		long n = strtol(env, &end, 10);
		return *end || n < 0 ? 0 : n > POOL_MAX_THREADS ? POOL_MAX_THREADS : (int)n;
	}
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	return cores <= 1 ? 0 : cores > 4 ? 4 : (int)cores;
}

int read_catalog(struct runtime *rt, const struct script_def *script, int script_idx, int config, int catalog,
		 int states)
{
	lua_State *L = rt->L;
	int top = lua_gettop(L);
	pool_start(&rt->pool, map_threads());
	int legacy = script->legacy_state ? push_legacy(L, states) : 0;
	lua_getfield(L, catalog, "streams");
	int streams = lua_gettop(L);
	lua_Integer n = (lua_Integer)lua_rawlen(L, streams);
	int failed = 0;
	for (lua_Integer i = 1; i <= n && !host_cancelled && !proto_stdout_failed(&rt->out); i++) {
		lua_rawgeti(L, streams, i);
		if (engine_read_stream(rt, script, script_idx, config, lua_gettop(L), states, legacy))
			failed = 1;
		lua_pop(L, 1);
	}
	lua_settop(L, top);
	pool_stop(&rt->pool);
	if (host_cancelled && !failed) {
		proto_trace_error(&rt->out, PROTO_TRANSIENT_ERROR,
				  host_cancelled == 2 ? "the sync was cancelled (SIGINT)"
						      : "the sync was cancelled (SIGTERM)",
				  NULL, NULL);
		failed = 1;
	}
	return failed;
}
