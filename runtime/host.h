/* host: the lua_State: allocator and limits, sandboxed libraries, loading the script, host_call(). */
#ifndef SOURCE_LUA_HOST_H
#define SOURCE_LUA_HOST_H

#include <lua.h>
#include <signal.h>
#include <stddef.h>

#include "buf.h"
#include "proto.h"

struct host_limits {
	size_t memory_bytes;
	long long instructions_per_call;
	long long cpu_seconds_per_call; /* 0: derived from the instruction budget */
};

/* Set by the SIGTERM (1) and SIGINT (2) handler; the hook, the HTTP client and the sync loop all
 * watch it. */
extern volatile sig_atomic_t host_cancelled;

/* The handler of SIGTERM and SIGINT: sets host_cancelled, and gives a script call stuck inside C
 * a second of CPU before the watchdog ends the process with a cancellation message. */
void host_on_cancel_signal(int sig);

struct runtime;

/* Creates the state with the sandboxed standard library, under rt's limits, and ties it to rt
 * (runtime_of). NULL when out of memory. */
lua_State *host_open(struct runtime *rt);
void host_close(lua_State *L);

/* Loads the script as text and runs its main chunk: pushes the table it returns. Call inside a
 * protected call (it raises with a clear message when the script is missing or broken). [-0, +1, e] */
void host_load_script(lua_State *L, const char *path);

/* Calls the function below nargs arguments with a traceback handler and a fresh instruction budget.
 * On failure returns the lua status and leaves one error table {message, failure_type?, stack}. */
int host_call(lua_State *L, int nargs, int nresults);

/* The script's memory limit, in bytes: work done for the script outside the Lua heap (a page's
 * records) keeps within it too. */
size_t host_memory_limit(lua_State *L);

/* Reads the error table that host_call left at idx. */
struct host_error {
	const char *message;
	const char *stack;
	enum proto_failure failure;
};
void host_error_read(lua_State *L, int idx, struct host_error *err);

#endif
