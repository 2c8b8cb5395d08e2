/*
 * fuzz_catalog: the configured catalog through input_read_json and input_check_catalog, as the
 * read command takes it. Bytes become the content of a temporary file. A Lua error is fine (a
 * config_error); crashes, leaks and undefined behaviour are not.
 */
#include <stdint.h>

#include "fuzz_common.h"
#include "input.h"

struct fuzz_input {
	const char *path;
};

static int run(lua_State *L)
{
	struct fuzz_input *in = lua_touserdata(L, 1);
	int top = lua_gettop(L);
	input_read_json(L, in->path, "catalog");
	FUZZ_CHECK(lua_gettop(L) == top + 1, "input_read_json left %d values, not 1", lua_gettop(L) - top);
	input_check_catalog(L, -1);
	FUZZ_CHECK(lua_gettop(L) == top + 1, "input_check_catalog changed the stack by %d", lua_gettop(L) - top - 1);
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
