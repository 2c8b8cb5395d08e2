/*
 * fuzz_common: what the libFuzzer targets share: a Lua state made the way main makes it (with
 * smaller limits), a temporary file that file-reading entry points can be pointed at, and a
 * protected call. Header-only so that each target stays one .c file plus the runtime objects.
 */
#ifndef SOURCE_LUA_FUZZ_COMMON_H
#define SOURCE_LUA_FUZZ_COMMON_H

#include <lauxlib.h>
#include <lua.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "host.h"
#include "runtime.h"

#define FUZZ_MEMORY_BYTES (64u << 20)
#define FUZZ_INSTRUCTIONS 100000000LL

/* Reports a broken property and stops, so that libFuzzer saves the input as a crash. */
#define FUZZ_CHECK(cond, ...)                                                                                   \
	do {                                                                                                    \
		if (!(cond)) {                                                                                  \
			fprintf(stderr, "fuzz: property violated at %s:%d: %s\n  ", __FILE__, __LINE__, #cond); \
			fprintf(stderr, __VA_ARGS__);                                                           \
			fputc('\n', stderr);                                                                    \
			abort();                                                                                \
		}                                                                                               \
	} while (0)

/* FUZZ_LENIENT=1 tolerates the bugs already reported (each has a file under regressions/), so
 * that a long run can look for others while they are open. The smoke never sets it. */
static inline int fuzz_lenient(void)
{
	const char *env = getenv("FUZZ_LENIENT");
	return env && !strcmp(env, "1");
}

static inline lua_State *fuzz_open_state(void)
{
	/* One runtime per process, as one state serves every input. */
	static struct runtime rt;
	runtime_init(&rt);
	rt.limits.memory_bytes = FUZZ_MEMORY_BYTES;
	rt.limits.instructions_per_call = FUZZ_INSTRUCTIONS;
	lua_State *L = rt.L = host_open(&rt);
	if (!L) {
		fprintf(stderr, "fuzz: host_open failed\n");
		abort();
	}
	return L;
}

/* One state serves every input of a process; a full collection after each input frees what the
 * input made, so that libFuzzer's per-input leak check stays meaningful. */
static inline void fuzz_collect(lua_State *L)
{
	lua_settop(L, 0);
	lua_gc(L, LUA_GCCOLLECT);
}

/* One temporary file per process, made on first use. Its name is removed at once and it is read
 * through /proc/self/fd, so that a crash leaves nothing behind. */
static char fuzz_temp_path_buf[64];
static int fuzz_temp_fd = -1;

/* Replaces the temporary file's content with data; returns its path. */
static inline const char *fuzz_temp_write(const uint8_t *data, size_t size)
{
	if (fuzz_temp_fd < 0) {
		/* Memory-backed first: on a disk file, truncating and rewriting per input is slow. */
		const char *dirs[] = {"/dev/shm", getenv("TMPDIR"), "/tmp"};
		for (size_t i = 0; i < sizeof dirs / sizeof *dirs && fuzz_temp_fd < 0; i++) {
			if (!dirs[i] || !*dirs[i] || strlen(dirs[i]) > 32)
				continue;
			snprintf(fuzz_temp_path_buf, sizeof fuzz_temp_path_buf, "%s/source-lua-fuzz-XXXXXX", dirs[i]);
			fuzz_temp_fd = mkstemp(fuzz_temp_path_buf);
		}
		if (fuzz_temp_fd < 0) {
			perror("fuzz: mkstemp");
			abort();
		}
		unlink(fuzz_temp_path_buf);
		snprintf(fuzz_temp_path_buf, sizeof fuzz_temp_path_buf, "/proc/self/fd/%d", fuzz_temp_fd);
	}
	if (ftruncate(fuzz_temp_fd, 0) != 0) {
		perror("fuzz: ftruncate");
		abort();
	}
	size_t done = 0;
	while (done < size) {
		ssize_t n = pwrite(fuzz_temp_fd, data + done, size - done, (off_t)done);
		if (n <= 0) {
			perror("fuzz: pwrite");
			abort();
		}
		done += (size_t)n;
	}
	return fuzz_temp_path_buf;
}

/* Whether tables a and b (absolute indices) have the same keys, and for each key values that
 * same(L, value_a, value_b, depth + 1) finds equal: the walk the targets' deep comparisons share. */
static inline int fuzz_same_members(lua_State *L, int a, int b, int depth, int (*same)(lua_State *, int, int, int))
{
	lua_Integer count_a = 0, count_b = 0;
	lua_pushnil(L);
	while (lua_next(L, b)) {
		count_b++;
		lua_pop(L, 1);
	}
	lua_pushnil(L);
	while (lua_next(L, a)) {
		count_a++;
		lua_pushvalue(L, -2);
		lua_rawget(L, b);
		int equal = same(L, -2, -1, depth + 1);
		lua_pop(L, 2);
		if (!equal) {
			lua_pop(L, 1);
			return 0;
		}
	}
	return count_a == count_b;
}

/* Runs fn(ud) in a protected call. Any Lua error is an accepted outcome for a fuzzed input: the
 * runtime reports it as a TRACE error. Returns the status; the stack is left as it was. */
static inline int fuzz_pcall(lua_State *L, lua_CFunction fn, void *ud)
{
	int top = lua_gettop(L);
	lua_pushcfunction(L, fn);
	lua_pushlightuserdata(L, ud);
	int status = lua_pcall(L, 1, 0, 0);
	if (status != LUA_OK) {
		/* The error value must be something main's report_pmain_error can read. */
		FUZZ_CHECK(lua_istable(L, -1) || lua_isstring(L, -1), "error value is a %s", luaL_typename(L, -1));
	}
	lua_settop(L, top);
	return status;
}

#endif
