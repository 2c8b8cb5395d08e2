/*
 * json_decode: JSON text into Lua values, for every text the runtime reads (config, catalog,
 * state, answers) and json.decode.
 *
 * Why our own decoder and not lua-cjson, the usual Lua library: cjson turns every number into a
 * double, so an id or sequence number past 2^53 comes back rounded (an integer cursor could neither
 * be read from a page nor round-trip through the state) and a config's 100 becomes 100.0 in a
 * URL; and it decodes [] and {} alike. Here a number written without fraction or exponent that fits in 64 bits is a Lua
 * integer, any other a float (inf past a double's range, which the writer prints as null), and an
 * empty array comes back marked as one (json_mark_array).
 *
 * The input is known to be UTF-8 (json_decode_push checks it first); objects keep the last of
 * duplicate keys; null is json.null (a NULL light userdata). Errors are returned, never raised
 * (but for memory errors), with the byte where the text stops being JSON.
 */
#include "json.h"

#include <errno.h>
#include <lauxlib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct decoder {
	lua_State *L;
	const char *start, *p, *end;
	int depth;
	int too_deep;
	char error[160];
};

static int fail(struct decoder *d, const char *what)
{
	snprintf(d->error, sizeof d->error, "%s at byte %zu", what, (size_t)(d->p - d->start));
	return -1;
}

static void skip_space(struct decoder *d)
{
	while (d->p < d->end && (*d->p == ' ' || *d->p == '\t' || *d->p == '\n' || *d->p == '\r'))
		d->p++;
}

static int hex4(const char *p, unsigned *out)
{
	unsigned v = 0;
	for (int i = 0; i < 4; i++) {
		char c = p[i];
		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v |= (unsigned)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v |= (unsigned)(c - 'A' + 10);
		else
			return -1;
	}
	*out = v;
	return 0;
}

static void add_utf8(luaL_Buffer *b, unsigned cp)
{
	char out[4];
	size_t n;
	if (cp < 0x80) {
		out[0] = (char)cp;
		n = 1;
	} else if (cp < 0x800) {
		out[0] = (char)(0xC0 | (cp >> 6));
		out[1] = (char)(0x80 | (cp & 0x3F));
		n = 2;
	} else if (cp < 0x10000) {
		out[0] = (char)(0xE0 | (cp >> 12));
		out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
		out[2] = (char)(0x80 | (cp & 0x3F));
		n = 3;
	} else {
		out[0] = (char)(0xF0 | (cp >> 18));
		out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
		out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
		out[3] = (char)(0x80 | (cp & 0x3F));
		n = 4;
	}
	luaL_addlstring(b, out, n);
}

/* \uXXXX, with a surrogate pair as one character. A lone surrogate is no character: refused, as
 * page_walk.c refuses it, since a string must stay valid UTF-8. */
static int escaped_code_point(struct decoder *d, unsigned *cp)
{
	if (d->end - d->p < 6 || hex4(d->p + 2, cp))
		return fail(d, "a \\u escape without four hex digits");
	d->p += 6;
	if (*cp >= 0xDC00 && *cp <= 0xDFFF)
		return fail(d, "a \\u escape of a lone low surrogate");
	if (*cp >= 0xD800 && *cp <= 0xDBFF) {
		unsigned low;
		if (d->end - d->p < 6 || d->p[0] != '\\' || d->p[1] != 'u' || hex4(d->p + 2, &low) || low < 0xDC00 ||
		    low > 0xDFFF)
			return fail(d, "a \\u escape of a lone high surrogate");
		d->p += 6;
		*cp = 0x10000 + ((*cp - 0xD800) << 10) + (low - 0xDC00);
	}
	return 0;
}

/* A string; d->p is at its opening quote. Pushes it. */
static int decode_string(struct decoder *d)
{
	const char *s = ++d->p;
	while (d->p < d->end && *d->p != '"' && *d->p != '\\' && (unsigned char)*d->p >= 0x20)
		d->p++;
	if (d->p < d->end && *d->p == '"') {
		lua_pushlstring(d->L, s, (size_t)(d->p - s));
		d->p++;
		return 0;
	}
	luaL_Buffer b;
	luaL_buffinit(d->L, &b);
	luaL_addlstring(&b, s, (size_t)(d->p - s));
	while (d->p < d->end && *d->p != '"') {
		unsigned char c = (unsigned char)*d->p;
		if (c < 0x20)
			return fail(d, "a control character inside a string");
		if (c != '\\') {
			luaL_addchar(&b, (char)c);
			d->p++;
			continue;
		}
		if (d->end - d->p < 2)
			return fail(d, "a string without its closing quote");
		char e = d->p[1];
		const char *plain = strchr("\"\\/bfnrt", e);
		if (e && plain) {
			static const char out[] = "\"\\/\b\f\n\r\t";
			luaL_addchar(&b, out[plain - "\"\\/bfnrt"]);
			d->p += 2;
		} else if (e == 'u') {
			unsigned cp;
			if (escaped_code_point(d, &cp))
				return -1;
			add_utf8(&b, cp);
		} else {
			return fail(d, "an unknown escape in a string");
		}
	}
	if (d->p >= d->end)
		return fail(d, "a string without its closing quote");
	d->p++;
	luaL_pushresult(&b);
	return 0;
}

static int is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* A number as RFC 8259 spells it; an integer (no fraction, no exponent) that fits in 64 bits is
 * pushed as a Lua integer, anything else as a float. */
static int decode_number(struct decoder *d)
{
	const char *s = d->p;
	const char *p = s;
	if (p < d->end && *p == '-')
		p++;
	if (p >= d->end || !is_digit(*p))
		return fail(d, "not a value");
	if (*p == '0')
		p++;
	else
		while (p < d->end && is_digit(*p))
			p++;
	int integral = 1;
	if (p < d->end && *p == '.') {
		integral = 0;
		p++;
		if (p >= d->end || !is_digit(*p))
			return d->p = p, fail(d, "a number without digits after its point");
		while (p < d->end && is_digit(*p))
			p++;
	}
	if (p < d->end && (*p == 'e' || *p == 'E')) {
		integral = 0;
		p++;
		if (p < d->end && (*p == '+' || *p == '-'))
			p++;
		if (p >= d->end || !is_digit(*p))
			return d->p = p, fail(d, "a number without digits in its exponent");
		while (p < d->end && is_digit(*p))
			p++;
	}
	size_t len = (size_t)(p - s);
	char small[64];
	char *text = len < sizeof small ? small : malloc(len + 1);
	if (!text)
		return fail(d, "no memory for a number");
	memcpy(text, s, len);
	text[len] = '\0';
	d->p = p;
	/* "-0" is a float: an integer has no negative zero, and writing it back must keep the sign. */
	int negative_zero = len == 2 && s[0] == '-' && s[1] == '0';
	if (integral && !negative_zero) {
		errno = 0;
		long long n = strtoll(text, NULL, 10);
		if (errno != ERANGE) {
			if (text != small)
				free(text);
			lua_pushinteger(d->L, (lua_Integer)n);
			return 0;
		}
	}
	double value = strtod(text, NULL);
	if (text != small)
		free(text);
	lua_pushnumber(d->L, value);
	return 0;
}

static int literal(struct decoder *d, const char *word)
{
	size_t n = strlen(word);
	if ((size_t)(d->end - d->p) < n || memcmp(d->p, word, n))
		return fail(d, "not a value");
	d->p += n;
	return 0;
}

static int decode_value(struct decoder *d);

static int decode_array(struct decoder *d)
{
	lua_State *L = d->L;
	d->p++;
	lua_newtable(L);
	int table = lua_gettop(L);
	lua_Integer n = 0;
	skip_space(d);
	if (d->p < d->end && *d->p == ']') {
		d->p++;
		json_mark_array(L, table);
		return 0;
	}
	for (;;) {
		if (decode_value(d))
			return -1;
		lua_rawseti(L, table, ++n);
		skip_space(d);
		if (d->p < d->end && *d->p == ',') {
			d->p++;
			continue;
		}
		if (d->p < d->end && *d->p == ']') {
			d->p++;
			return 0;
		}
		return fail(d, "an array without ',' or ']'");
	}
}

static int decode_object(struct decoder *d)
{
	lua_State *L = d->L;
	d->p++;
	lua_newtable(L);
	int table = lua_gettop(L);
	skip_space(d);
	if (d->p < d->end && *d->p == '}') {
		d->p++;
		return 0;
	}
	for (;;) {
		skip_space(d);
		if (d->p >= d->end || *d->p != '"')
			return fail(d, "an object key that is not a string");
		if (decode_string(d))
			return -1;
		skip_space(d);
		if (d->p >= d->end || *d->p != ':')
			return fail(d, "an object key without ':'");
		d->p++;
		if (decode_value(d))
			return -1;
		lua_rawset(L, table);
		skip_space(d);
		if (d->p < d->end && *d->p == ',') {
			d->p++;
			continue;
		}
		if (d->p < d->end && *d->p == '}') {
			d->p++;
			return 0;
		}
		return fail(d, "an object without ',' or '}'");
	}
}

static int too_deep(struct decoder *d)
{
	char what[64];
	snprintf(what, sizeof what, "nested deeper than %d levels", JSON_MAX_DEPTH);
	d->too_deep = 1;
	return fail(d, what);
}

static int decode_value(struct decoder *d)
{
	skip_space(d);
	if (d->p >= d->end)
		return fail(d, "the text ends where a value should be");
	switch (*d->p) {
	case '{':
	case '[': {
		if (++d->depth > JSON_MAX_DEPTH || !lua_checkstack(d->L, 4))
			return too_deep(d);
		int rc = *d->p == '{' ? decode_object(d) : decode_array(d);
		d->depth--;
		return rc;
	}
	case '"': return decode_string(d);
	case 't': lua_pushboolean(d->L, 1); return literal(d, "true");
	case 'f': lua_pushboolean(d->L, 0); return literal(d, "false");
	case 'n': lua_pushlightuserdata(d->L, NULL); return literal(d, "null");
	default: return decode_number(d);
	}
}

static enum json_decoded decode_text(lua_State *L, const char *text, size_t len)
{
	struct decoder d = {L, text, text, text + len, 0, 0, ""};
	int top = lua_gettop(L);
	int rc = decode_value(&d);
	if (rc == 0) {
		skip_space(&d);
		if (d.p < d.end)
			rc = fail(&d, "more text after the value");
	}
	if (rc == 0) {
		lua_pushnil(L);
		return JSON_DECODED;
	}
	lua_settop(L, top);
	lua_pushnil(L);
	lua_pushstring(L, d.error);
	return d.too_deep ? JSON_TOO_DEEP : JSON_INVALID;
}

/* Offset of the first byte that is not part of valid UTF-8, or len. ASCII runs are skipped fast. */
static size_t invalid_utf8_at(const char *text, size_t len)
{
	const unsigned char *p = (const unsigned char *)text;
	size_t i = 0;
	while (i < len) {
		if (p[i] < 0x80) {
			i++;
			continue;
		}
		int n = json_utf8_sequence_length(p + i, len - i);
		if (n == 0)
			return i;
		i += (size_t)n;
	}
	return len;
}

enum json_decoded json_decode_push(lua_State *L, const char *text, size_t len)
{
	/* JSON is UTF-8 (RFC 8259). Rejecting other bytes here means every decoded string can be
	 * written back unchanged; replacing them would merge distinct keys into one. */
	size_t bad = invalid_utf8_at(text, len);
	if (bad < len) {
		lua_pushnil(L);
		lua_pushfstring(L, "not valid UTF-8 at byte %d", (int)bad);
		return JSON_INVALID;
	}
	return decode_text(L, text, len);
}
