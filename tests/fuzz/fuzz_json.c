/*
 * fuzz_json: decoding with json_decode_push, then the writer's round trip. For any text that
 * decodes, json_encode must succeed, its output must decode again, and encoding that second value
 * must give the same text byte for byte: the writer is a fixed point after one pass (exact
 * numbers, empty arrays kept, strings escaped the same way, members in byte order of their names).
 * Any violation aborts with both texts.
 */
#include <stdint.h>
#include <stdlib.h>

#include "buf.h"
#include "fuzz_common.h"
#include "json.h"

static lua_State *shared_state;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	shared_state = fuzz_open_state();
	return 0;
}

struct fuzz_input {
	const uint8_t *data;
	size_t size;
	struct buf first;
	struct buf second;
};

static void dump(const char *label, const struct buf *b)
{
	fprintf(stderr, "%s (%zu bytes): ", label, b->len);
	for (size_t i = 0; i < b->len && i < 4096; i++) {
		unsigned char c = (unsigned char)b->data[i];
		if (c >= 0x20 && c < 0x7f)
			fputc(c, stderr);
		else
			fprintf(stderr, "\\x%02x", c);
	}
	fputc('\n', stderr);
}

static int run(lua_State *L)
{
	struct fuzz_input *in = lua_touserdata(L, 1);
	char err[128];
	json_decode_push(L, (const char *)in->data, in->size);
	if (lua_isnil(L, -2) && !lua_isnil(L, -1))
		return 0; /* not JSON */
	lua_pop(L, 1);
	int rc = json_encode(L, -1, &in->first, err, sizeof err);
	FUZZ_CHECK(rc == 0, "a decoded value does not encode: %s", err);
	lua_pop(L, 1);

	json_decode_push(L, in->first.data, in->first.len);
	if (lua_isnil(L, -2) && !lua_isnil(L, -1)) {
		dump("written", &in->first);
		FUZZ_CHECK(0, "our own output is not JSON: %s", lua_tostring(L, -1));
	}
	lua_pop(L, 1);
	rc = json_encode(L, -1, &in->second, err, sizeof err);
	FUZZ_CHECK(rc == 0, "the re-decoded value does not encode: %s", err);
	if (in->first.len != in->second.len || memcmp(in->first.data, in->second.data, in->first.len) != 0) {
		dump("first ", &in->first);
		dump("second", &in->second);
		FUZZ_CHECK(0, "%s", "encoding is not stable across a decode");
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_input in = {data, size, {0}, {0}};
	fuzz_pcall(shared_state, run, &in);
	fuzz_collect(shared_state);
	buf_free(&in.first);
	buf_free(&in.second);
	return 0;
}
