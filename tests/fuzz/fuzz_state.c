/*
 * fuzz_state: the platform's state file, in every form it can take, through input_read_state.
 * Bytes become the content of a temporary file. A Lua error is fine (main reports it as a
 * config_error); a crash, a leak, undefined behaviour or a result of the wrong shape is not.
 * On success the result must be {stream_name = table} and must encode as JSON, as sync does
 * when it writes the state back.
 */
#include <stdint.h>

#include "buf.h"
#include "fuzz_common.h"
#include "input.h"
#include "json.h"

struct fuzz_input {
	const char *path;
};

static void check_states(lua_State *L, int states)
{
	FUZZ_CHECK(lua_istable(L, states), "input_read_state pushed a %s", luaL_typename(L, states));
	lua_pushnil(L);
	while (lua_next(L, states)) {
		FUZZ_CHECK(lua_type(L, -2) == LUA_TSTRING, "a state key is a %s", luaL_typename(L, -2));
		/* Members of a legacy blob pass through whatever their type (the read rejects an unusable
		 * state of a stream it reads), but never as JSON null. */
		FUZZ_CHECK(!lua_isnil(L, -1) && !(lua_type(L, -1) == LUA_TLIGHTUSERDATA && !lua_touserdata(L, -1)),
			   "the state of '%s' is null", lua_tostring(L, -2));
		lua_pop(L, 1);
	}
	struct buf out = {0};
	char err[128];
	int rc = json_encode(L, states, &out, err, sizeof err);
	buf_free(&out);
	FUZZ_CHECK(rc == 0, "the states read back do not encode: %s", err);
}

static int run(lua_State *L)
{
	struct fuzz_input *in = lua_touserdata(L, 1);
	int top = lua_gettop(L);
	input_read_state(L, in->path);
	FUZZ_CHECK(lua_gettop(L) == top + 1, "input_read_state left %d values, not 1", lua_gettop(L) - top);
	check_states(L, top + 1);
	return 0;
}

static lua_State *shared_state;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	shared_state = fuzz_open_state();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_input in = {fuzz_temp_write(data, size)};
	fuzz_pcall(shared_state, run, &in);
	fuzz_collect(shared_state);
	return 0;
}
