/*
 * json: the JSON writer of every message (and the mark that keeps an empty array an array).
 * Decoding is json_decode.c's, the Lua `json` module json_module.c's.
 *
 * Protocol messages must be exact, so every message is written here: integers as integers,
 * floats with the fewest digits that read back exactly (lua-cjson, the usual Lua library, prints
 * 14 significant digits), arrays marked with json.array() staying arrays when empty, strings
 * escaped to valid UTF-8, object members in byte order of their names.
 */
#define _GNU_SOURCE
#include "json.h"

#include <lauxlib.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct encoder {
	lua_State *L;
	struct buf *out;
	char *err;
	size_t errlen;
	int sorted; /* object members in byte order of their names, not the table's */
};

int json_utf8_sequence_length(const unsigned char *s, size_t left)
{
	unsigned char c = s[0];
	int n;
	uint32_t cp;
	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf) {
		n = 2;
		cp = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		n = 3;
		cp = c & 0x0f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4;
		cp = c & 0x07;
	} else {
		return 0;
	}
	if ((size_t)n > left)
		return 0;
	for (int i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)))
		return 0;
	if (cp >= 0xd800 && cp <= 0xdfff)
		return 0;
	return n;
}

void json_write_string(struct buf *out, const char *s, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p = (const unsigned char *)s;
	buf_reserve(out, len + 2);
	buf_putc(out, '"');
	size_t i = 0;
	while (i < len) {
		size_t run = i;
		while (run < len && p[run] >= 0x20 && p[run] < 0x80 && p[run] != '"' && p[run] != '\\')
			run++;
		if (run > i) {
			buf_append(out, p + i, run - i);
			i = run;
			continue;
		}
		unsigned char c = p[i];
		if (c >= 0x80) {
			int n = json_utf8_sequence_length(p + i, len - i);
			if (n == 0) {
				buf_puts(out, "\\ufffd");
				i++;
			} else {
				buf_append(out, p + i, (size_t)n);
				i += (size_t)n;
			}
			continue;
		}
		switch (c) {
		case '"': buf_puts(out, "\\\""); break;
		case '\\': buf_puts(out, "\\\\"); break;
		case '\n': buf_puts(out, "\\n"); break;
		case '\r': buf_puts(out, "\\r"); break;
		case '\t': buf_puts(out, "\\t"); break;
		case '\b': buf_puts(out, "\\b"); break;
		case '\f': buf_puts(out, "\\f"); break;
		default: {
			char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
			buf_append(out, esc, sizeof esc);
		}
		}
		i++;
	}
	buf_putc(out, '"');
}

size_t json_int_text(long long value, char out[JSON_NUMBER_MAX])
{
	char digits[24];
	char *p = digits + sizeof digits;
	unsigned long long magnitude = value < 0 ? 0ULL - (unsigned long long)value : (unsigned long long)value;
	do {
		*--p = (char)('0' + magnitude % 10);
		magnitude /= 10;
	} while (magnitude);
	if (value < 0)
		*--p = '-';
	size_t len = (size_t)(digits + sizeof digits - p);
	memcpy(out, p, len);
	return len;
}

void json_write_int(struct buf *out, long long value)
{
	char text[JSON_NUMBER_MAX];
	buf_append(out, text, json_int_text(value, text));
}

/* Writes d as a decimal with at most 6 fractional digits when that reads back exactly; -1 if not.
 * Exact because r / 10^k is the double nearest to the decimal r * 10^-k, which is what strtod
 * returns for that text; the smallest such k gives the shortest text. This covers prices and
 * volumes without printf and strtod, which dominated the cost of a record. */
static size_t short_decimal_text(double d, char out[JSON_NUMBER_MAX])
{
	static const double powers[] = {1e1, 1e2, 1e3, 1e4, 1e5, 1e6};
	if (!(fabs(d) < 1e9 && fabs(d) >= 1e-6))
		return 0;
	for (int k = 1; k <= 6; k++) {
		double scaled = nearbyint(d * powers[k - 1]);
		if (scaled / powers[k - 1] != d)
			continue;
		char digits[40];
		long long r = (long long)fabs(scaled);
		int n = 0;
		do {
			digits[n++] = (char)('0' + r % 10);
			r /= 10;
		} while (r || n <= k);
		size_t len = 0;
		if (d < 0)
			out[len++] = '-';
		for (int i = n - 1; i >= 0; i--) {
			out[len++] = digits[i];
			if (i == k)
				out[len++] = '.';
		}
		return len;
	}
	return 0;
}

size_t json_double_text(double d, char out[JSON_NUMBER_MAX])
{
	if (!isfinite(d)) {
		memcpy(out, "null", 4);
		return 4;
	}
	/* Integral values print without an exponent or ".0" so that 1646629200000 stays an integer. */
	if (d == floor(d) && fabs(d) < 9007199254740992.0) {
		if (d == 0 && signbit(d)) {
			memcpy(out, "-0", 2);
			return 2;
		}
		return json_int_text((long long)d, out);
	}
	size_t len = short_decimal_text(d, out);
	if (len)
		return len;
	for (int precision = 15; precision <= 17; precision++) {
		snprintf(out, JSON_NUMBER_MAX, "%.*g", precision, d);
		if (strtod(out, NULL) == d)
			break;
	}
	return strlen(out);
}

void json_write_double(struct buf *out, double d)
{
	char text[JSON_NUMBER_MAX];
	buf_append(out, text, json_double_text(d, text));
}

static int encode_value(struct encoder *e, int idx, int depth);

static int encode_fail(struct encoder *e, const char *what)
{
	snprintf(e->err, e->errlen, "%s", what);
	return -1;
}

static int has_array_mark(lua_State *L, int idx)
{
	if (!lua_getmetatable(L, idx))
		return 0;
	luaL_getmetatable(L, JSON_ARRAY_MT);
	int marked = lua_rawequal(L, -1, -2);
	lua_pop(L, 2);
	return marked;
}

/* A table is written as an array when marked, or when its keys are exactly 1..n with n > 0. */
static int is_sequence(lua_State *L, int idx, lua_Integer *length)
{
	lua_Integer count = 0;
	lua_Integer max = 0;
	lua_pushnil(L);
	while (lua_next(L, idx)) {
		lua_pop(L, 1);
		if (!lua_isinteger(L, -1)) {
			lua_pop(L, 1);
			return 0;
		}
		lua_Integer k = lua_tointeger(L, -1);
		if (k < 1) {
			lua_pop(L, 1);
			return 0;
		}
		if (k > max)
			max = k;
		count++;
	}
	*length = max;
	return count > 0 && count == max;
}

static int encode_array(struct encoder *e, int idx, lua_Integer n, int depth)
{
	buf_putc(e->out, '[');
	for (lua_Integer i = 1; i <= n; i++) {
		if (i > 1)
			buf_putc(e->out, ',');
		lua_rawgeti(e->L, idx, i);
		int rc = encode_value(e, lua_gettop(e->L), depth + 1);
		lua_pop(e->L, 1);
		if (rc)
			return rc;
	}
	buf_putc(e->out, ']');
	return 0;
}

static int encode_key(struct encoder *e, int key_idx)
{
	lua_State *L = e->L;
	if (lua_type(L, key_idx) == LUA_TSTRING) {
		size_t len;
		const char *s = lua_tolstring(L, key_idx, &len);
		json_write_string(e->out, s, len);
		return 0;
	}
	if (lua_isinteger(L, key_idx)) {
		buf_printf(e->out, "\"%lld\"", (long long)lua_tointeger(L, key_idx));
		return 0;
	}
	if (lua_type(L, key_idx) == LUA_TNUMBER) {
		struct buf number = {0};
		json_write_double(&number, lua_tonumber(L, key_idx));
		json_write_string(e->out, number.data, number.len);
		buf_free(&number);
		return 0;
	}
	return encode_fail(e, "object keys must be strings or numbers");
}

/* A member name as written: a string as is, a number as its JSON text. */
struct member_name {
	const char *text;
	size_t len;
	lua_Integer slot; /* the key's index in the table of keys */
};

static int by_name(const void *a, const void *b)
{
	const struct member_name *x = a, *y = b;
	int c = memcmp(x->text, y->text, x->len < y->len ? x->len : y->len);
	return c ? c : (x->len > y->len) - (x->len < y->len);
}

/* Pushes a table of the object's keys and, after each, the string it is written as; returns
 * their number. */
static lua_Integer push_keys(struct encoder *e, int idx)
{
	lua_State *L = e->L;
	lua_newtable(L);
	int keys = lua_gettop(L);
	lua_Integer n = 0;
	lua_pushnil(L);
	while (lua_next(L, idx)) {
		lua_pop(L, 1);
		lua_pushvalue(L, -1);
		lua_rawseti(L, keys, ++n);
		if (lua_type(L, -1) == LUA_TSTRING) {
			lua_pushvalue(L, -1);
		} else if (lua_isinteger(L, -1)) {
			char text[JSON_NUMBER_MAX];
			lua_pushlstring(L, text, json_int_text((long long)lua_tointeger(L, -1), text));
		} else if (lua_type(L, -1) == LUA_TNUMBER) {
			char text[JSON_NUMBER_MAX];
			lua_pushlstring(L, text, json_double_text(lua_tonumber(L, -1), text));
		} else {
			lua_pop(L, 2);
			return -1;
		}
		lua_rawseti(L, keys, ++n);
	}
	return n / 2;
}

/* Members in byte order of their names, so that what a script builds prints the same on every
 * run (Lua's table order changes with its per-run hash seed). */
static int encode_object_sorted(struct encoder *e, int idx, int depth)
{
	lua_State *L = e->L;
	lua_Integer count = push_keys(e, idx);
	if (count < 0)
		return encode_fail(e, "object keys must be strings or numbers");
	int keys = lua_gettop(L);
	/* A userdata, not malloc: a memory error raised below must not leak it. */
	struct member_name *names = lua_newuserdatauv(L, (size_t)count * sizeof *names + 1, 0);
	for (lua_Integer i = 0; i < count; i++) {
		lua_rawgeti(L, keys, 2 * i + 2);
		names[i].text = lua_tolstring(L, -1, &names[i].len); /* anchored in keys */
		names[i].slot = 2 * i + 1;
		lua_pop(L, 1);
	}
	qsort(names, (size_t)count, sizeof *names, by_name);
	buf_putc(e->out, '{');
	for (lua_Integer i = 0; i < count; i++) {
		if (i)
			buf_putc(e->out, ',');
		json_write_string(e->out, names[i].text, names[i].len);
		buf_putc(e->out, ':');
		lua_rawgeti(L, keys, names[i].slot);
		lua_rawget(L, idx);
		int rc = encode_value(e, lua_gettop(L), depth + 1);
		lua_pop(L, 1);
		if (rc)
			return rc;
	}
	buf_putc(e->out, '}');
	lua_pop(L, 2);
	return 0;
}

static int encode_object(struct encoder *e, int idx, int depth)
{
	if (e->sorted)
		return encode_object_sorted(e, idx, depth);
	lua_State *L = e->L;
	int first = 1;
	buf_putc(e->out, '{');
	lua_pushnil(L);
	while (lua_next(L, idx)) {
		if (!first)
			buf_putc(e->out, ',');
		first = 0;
		if (encode_key(e, lua_gettop(L) - 1) ||
		    (buf_putc(e->out, ':'), encode_value(e, lua_gettop(L), depth + 1))) {
			lua_pop(L, 2);
			return -1;
		}
		lua_pop(L, 1);
	}
	buf_putc(e->out, '}');
	return 0;
}

static int encode_table(struct encoder *e, int idx, int depth)
{
	if (depth >= JSON_MAX_DEPTH) {
		snprintf(e->err, e->errlen, "nested deeper than %d levels (a table that contains itself?)",
			 JSON_MAX_DEPTH);
		return -1;
	}
	if (!lua_checkstack(e->L, 4))
		return encode_fail(e, "Lua stack exhausted");
	lua_Integer n = 0;
	if (has_array_mark(e->L, idx))
		return encode_array(e, idx, (lua_Integer)lua_rawlen(e->L, idx), depth);
	if (is_sequence(e->L, idx, &n))
		return encode_array(e, idx, n, depth);
	return encode_object(e, idx, depth);
}

static int encode_value(struct encoder *e, int idx, int depth)
{
	lua_State *L = e->L;
	switch (lua_type(L, idx)) {
	case LUA_TNIL: buf_puts(e->out, "null"); return 0;
	case LUA_TBOOLEAN: buf_puts(e->out, lua_toboolean(L, idx) ? "true" : "false"); return 0;
	case LUA_TNUMBER:
		if (lua_isinteger(L, idx))
			json_write_int(e->out, (long long)lua_tointeger(L, idx));
		else
			json_write_double(e->out, lua_tonumber(L, idx));
		return 0;
	case LUA_TSTRING: {
		size_t len;
		const char *s = lua_tolstring(L, idx, &len);
		json_write_string(e->out, s, len);
		return 0;
	}
	case LUA_TTABLE: return encode_table(e, idx, depth);
	case LUA_TLIGHTUSERDATA:
		if (lua_touserdata(L, idx) == NULL) {
			buf_puts(e->out, "null");
			return 0;
		}
		/* fall through */
	default: {
		char what[64];
		snprintf(what, sizeof what, "cannot encode a %s", luaL_typename(L, idx));
		return encode_fail(e, what);
	}
	}
}

static int encode(lua_State *L, int idx, struct buf *out, int sorted, char *err, size_t errlen)
{
	struct encoder e = {L, out, err, errlen, sorted};
	size_t mark = out->len;
	int top = lua_gettop(L);
	int rc = encode_value(&e, lua_absindex(L, idx), 0);
	lua_settop(L, top);
	if (rc)
		out->len = mark;
	return rc;
}

int json_encode(lua_State *L, int idx, struct buf *out, char *err, size_t errlen)
{
	return encode(L, idx, out, 1, err, errlen);
}

int json_encode_in_table_order(lua_State *L, int idx, struct buf *out, char *err, size_t errlen)
{
	return encode(L, idx, out, 0, err, errlen);
}

void json_mark_array(lua_State *L, int idx)
{
	idx = lua_absindex(L, idx);
	luaL_getmetatable(L, JSON_ARRAY_MT);
	lua_setmetatable(L, idx);
}
