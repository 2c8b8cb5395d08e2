/*
 * fuzz_config: a config, decoded as main decodes it, checked against the connectionSpecification
 * of scripts/stock_prices.lua with validate_config, and its secrets registered through
 * validate_each_secret and secrets_add. The script is loaded once per process: from
 * $SOURCE_LUA_FUZZ_SCRIPT, else from ../../scripts/ beside this file.
 * Properties: no crash, leak or undefined behaviour; the stack is restored; a failure comes with a
 * message; a registered secret never survives secrets_mask_into.
 */
#define _GNU_SOURCE /* memmem */
#include <stdint.h>

#include "buf.h"
#include "fuzz_common.h"
#include "json.h"
#include "secrets.h"
#include "validate.h"

#define FUZZ_MAX_SEEN 8

static lua_State *shared_state;
/* The schema lives in the registry under this address: a C function called through lua_pcall
 * sees only its own stack frame. */
static const char schema_key = 's';

/* The secrets of the current input, as validate_each_secret handed them over. */
static char *seen[FUZZ_MAX_SEEN];
static size_t seen_count;

static void on_secret(void *ctx, const char *value)
{
	(void)ctx;
	FUZZ_CHECK(value != NULL, "validate_each_secret passed NULL");
	secrets_add(&runtime_of(shared_state)->secrets, value);
	if (seen_count < FUZZ_MAX_SEEN) {
		seen[seen_count] = strdup(value);
		if (seen[seen_count])
			seen_count++;
	}
}

static void forget_secrets(void)
{
	for (size_t i = 0; i < seen_count; i++)
		free(seen[i]);
	seen_count = 0;
	secrets_clear(&runtime_of(shared_state)->secrets);
}

static const char *script_path(char *buffer, size_t len)
{
	const char *env = getenv("SOURCE_LUA_FUZZ_SCRIPT");
	if (env && *env)
		return env;
	const char *file = __FILE__;
	const char *slash = strrchr(file, '/');
	int dir_len = slash ? (int)(slash - file) : 1;
	snprintf(buffer, len, "%.*s/../../scripts/stock_prices.lua", dir_len, slash ? file : ".");
	return buffer;
}

/* Pushes script.spec.connectionSpecification. */
static int load_schema(lua_State *L)
{
	const char *path = lua_touserdata(L, 1);
	host_load_script(L, path);
	if (lua_getfield(L, -1, "spec") != LUA_TTABLE)
		return luaL_error(L, "%s: the script has no spec table", path);
	if (lua_getfield(L, -1, "connectionSpecification") != LUA_TTABLE)
		return luaL_error(L, "%s: the spec has no connectionSpecification", path);
	return 1;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	char buffer[4096];
	const char *path = script_path(buffer, sizeof buffer);
	shared_state = fuzz_open_state();
	lua_pushcfunction(shared_state, load_schema);
	lua_pushlightuserdata(shared_state, (void *)path);
	if (lua_pcall(shared_state, 1, 1, 0) != LUA_OK) {
		fprintf(stderr, "fuzz_config: cannot load the schema from %s: %s\n", path,
			lua_isstring(shared_state, -1) ? lua_tostring(shared_state, -1) : "(error object)");
		exit(1);
	}
	lua_rawsetp(shared_state, LUA_REGISTRYINDEX, &schema_key);
	return 0;
}

struct fuzz_input {
	const uint8_t *data;
	size_t size;
};

/* Masks text that embeds each secret between other bytes; no secret may come out intact. */
static void check_masking(const struct fuzz_input *in)
{
	for (size_t i = 0; i < seen_count; i++) {
		const char *secret = seen[i];
		size_t len = strlen(secret);
		/* "****" can itself spell a secret made of stars; too short ones are not masked by design. */
		if (len < 3 || strchr(secret, '*'))
			continue;
		struct buf text = {0};
		buf_append(&text, in->data, in->size < 256 ? in->size : 256);
		buf_puts(&text, "Bearer ");
		buf_append(&text, secret, len);
		buf_puts(&text, "&x");
		struct buf masked = {0};
		secrets_mask_into(&runtime_of(shared_state)->secrets, &masked, text.data, text.len);
		int leaked = masked.len >= len && memmem(masked.data, masked.len, secret, len) != NULL;
		buf_free(&text);
		buf_free(&masked);
		FUZZ_CHECK(!leaked, "secret '%s' survives masking", secret);
	}
}

static int run(lua_State *L)
{
	struct fuzz_input *in = lua_touserdata(L, 1);
	int top = lua_gettop(L);
	lua_rawgetp(L, LUA_REGISTRYINDEX, &schema_key);
	int schema = lua_gettop(L);
	json_decode_push(L, (const char *)in->data, in->size);
	if (lua_isnil(L, -2) && !lua_isnil(L, -1))
		return 0; /* not JSON: main stops before validating */
	lua_pop(L, 1);
	int config = lua_gettop(L);
	validate_each_secret(L, schema, config, on_secret, NULL);
	FUZZ_CHECK(lua_gettop(L) == config, "validate_each_secret changed the stack by %d", lua_gettop(L) - config);
	char err[1024];
	err[0] = '\0';
	int rc = validate_config(L, schema, config, err, sizeof err);
	FUZZ_CHECK(lua_gettop(L) == config, "validate_config changed the stack by %d", lua_gettop(L) - config);
	FUZZ_CHECK(rc == 0 || rc == -1, "validate_config returned %d", rc);
	FUZZ_CHECK(rc == 0 || (memchr(err, '\0', sizeof err) && err[0]), "validate_config failed without a message");
	check_masking(in);
	lua_settop(L, top);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_input in = {data, size};
	lua_State *L = shared_state;
	int top = lua_gettop(L);
	fuzz_pcall(L, run, &in);
	FUZZ_CHECK(lua_gettop(L) == top, "the shared stack grew");
	forget_secrets();
	fuzz_collect(L);
	return 0;
}
