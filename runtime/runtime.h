/* runtime: what one run of the connector shares, made once in main and passed down. */
#ifndef SOURCE_LUA_RUNTIME_H
#define SOURCE_LUA_RUNTIME_H

#include <lua.h>
#include <stddef.h>
#include <stdint.h>

#include "auth.h"
#include "cassette.h"
#include "host.h"
#include "http.h"
#include "pool.h"
#include "proto.h"
#include "secrets.h"
#include "trace.h"

struct tz_db;

/* How often a stream's state is written (state.c): a STATE costs the whole stream state, so with
 * many partitions one per page would outweigh the records. */
struct checkpoint_policy {
	int64_t interval_ms;      /* at least one STATE this often while records flow */
	size_t records_per_state; /* record bytes per state byte before the next STATE */
	size_t max_boundary_keys; /* keys of records at a partition's cursor kept in its state */
};

/* As lua.c keeps its globals to progname and passes the lua_State down, the runtime keeps what a
 * run shares here: settings and limits, the output, the clock, and the services built on them.
 * No other file keeps mutable state at file scope, with two exceptions that cannot be per-run:
 * what a signal handler must reach (host_cancelled and the CPU watchdog's prepared message,
 * host.c), and libcurl loaded into the process on first use (curl_lazy.c, whose curl_* entry
 * points are the process's symbols). */
struct runtime {
	struct host_limits limits;
	struct http_settings http_settings;
	struct checkpoint_policy checkpoints;
	int debug;          /* --debug */
	int64_t started_ms; /* the run's clock: "now" for every window and ceiling of the read */

	struct secrets secrets;
	struct auth auth;         /* the script's declared credentials, resolved from the config */
	struct trace trace;       /* test-read's view of the read; --debug's events */
	struct cassette cassette; /* --record DIR, --replay DIR */
	struct output out;
	struct http_client http;
	struct pool pool;
	struct tz_db *zones;
	/* Pages and record batches alive outside Lua's count (records.c). */
	size_t held_pages, held_batches;
	/* The Lua http module's answer buffer, reused from one call to the next (http_module.c). */
	struct http_response lua_response;
	struct buf lua_scratch;
	/* The stream being read, for statuses written outside the engine (NULL between streams). */
	const char *stream;
	lua_State *L;
};

/* Sets defaults and opens the services that need no config; the caller fills limits first or
 * keeps the defaults. Returns -1 when out of memory. */
int runtime_init(struct runtime *rt);
/* Frees everything, the Lua state included. */
void runtime_free(struct runtime *rt);

/* The runtime a Lua state belongs to (set by host_open). */
static inline struct runtime *runtime_of(lua_State *L)
{
	return *(struct runtime **)lua_getextraspace(L);
}

#endif
