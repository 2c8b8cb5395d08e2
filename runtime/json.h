/* json: the exact JSON writer for protocol messages (json.c), the decoder (json_decode.c), and
 * the Lua `json` module (json_module.c). */
#ifndef SOURCE_LUA_JSON_H
#define SOURCE_LUA_JSON_H

#include <lua.h>
#include <stddef.h>

#include "buf.h"

/* How deep JSON may nest, in the decoder, the page walker and the writer alike, so that what one
 * reads the others accept. Real answers stay within a few dozen levels; 1000 is where Python's json
 * and other common decoders stop too. Deeper text is refused as too deep (a fault asking again will not
 * mend), never as "not JSON". */
#define JSON_MAX_DEPTH 1000

/* The metatable that marks a table as a JSON array (json_mark_array). */
#define JSON_ARRAY_MT "source_lua.json.array"

/* Appends the JSON text of the value at idx to out, object members in byte order of their names
 * (the same text on every run). On failure returns -1, leaves out as it was and writes the
 * reason to err. Never raises except on memory errors. [-0, +0, m] */
int json_encode(lua_State *L, int idx, struct buf *out, char *err, size_t errlen);

/* json_encode with object members in the table's order, which Lua's hash seed changes from run
 * to run: for records built in Lua, the one hot path that goes through here. [-0, +0, m] */
int json_encode_in_table_order(lua_State *L, int idx, struct buf *out, char *err, size_t errlen);

/* Appends s as a JSON string literal (quotes included); invalid UTF-8 becomes U+FFFD. */
void json_write_string(struct buf *out, const char *s, size_t len);

/* Longest text json_int_text and json_double_text write (%.17g of a double, with room to spare). */
#define JSON_NUMBER_MAX 40

/* Writes a decimal integer to out (not NUL-terminated); returns its length. */
size_t json_int_text(long long value, char out[JSON_NUMBER_MAX]);

/* Writes the shortest text that reads back as exactly d (null for NaN and infinities); returns its length. */
size_t json_double_text(double d, char out[JSON_NUMBER_MAX]);

/* Length of the valid UTF-8 sequence starting at s (1 to 4), or 0 when it is not one. */
int json_utf8_sequence_length(const unsigned char *s, size_t left);

/* Appends a decimal integer. */
void json_write_int(struct buf *out, long long value);

/* Appends the shortest text that reads back as exactly d (null for NaN and infinities). */
void json_write_double(struct buf *out, double d);

enum json_decoded { JSON_DECODED = 0, JSON_INVALID = -1, JSON_TOO_DEEP = -2 };

/* Decodes JSON text (which must be UTF-8) into Lua values; pushes the value and nil, or nil and an
 * error message, and returns which. Integers that fit in 64 bits stay integers; empty arrays are
 * marked as arrays; null is json.null. [-0, +2, m] */
enum json_decoded json_decode_push(lua_State *L, const char *text, size_t len);

/* Opens the `json` module (json_module.c): json.decode, json.encode, json.array, json.object,
 * json.null. [-0, +1, m] */
int json_open(lua_State *L);

/* Marks the table at idx as a JSON array so that it stays [] when empty. [-0, +0, m] */
void json_mark_array(lua_State *L, int idx);

#endif
