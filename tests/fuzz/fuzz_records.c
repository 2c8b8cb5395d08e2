/*
 * fuzz_records: declared records (records.declare, mapper:map; runtime/records.c and
 * page_walk.c) against the runtime's decoder and the Lua loop they replace, differentially.
 *
 * One fixed declaration covers every field kind: plain copies (two fields copy one member),
 * as = "integer" (one reads a member that is also copied), as = "day_from_ms" in both zones,
 * as = "day", context and value fields, a name outside ASCII. For each input, the text goes to
 * mapper:map(ctx, response), whose batch is settled as the engine settles it
 * (records_batch_settle) and looked at as Lua sees it; separately, json_decode_push decodes it,
 * and the expected records are built in C from the decoded body, as this Lua loop would:
 *
 *   plain        rec.k = item.k                      (JSON null stays null)
 *   integer      rec.k = math.tointeger(item.k) when item.k is a number, else omitted
 *   day_from_ms  date.from_ms(item.t, zone); null/absent omitted; a non-number or a day outside
 *                1000-01-01..9999-12-31 is an error
 *   day          item.d when it is a YYYY-MM-DD day (date_parse_day); null/absent omitted; else error
 *   context      ctx.k (nil: omitted)         value   the constant
 *
 * Properties (any violation aborts with both sides printed):
 *  (a) the walk ends RECORDS_NOT_JSON exactly when the text is not JSON, RECORDS_WRONG_SHAPE
 *      ("records: ...") exactly when it is JSON of the wrong shape (not an object, `results` not
 *      an array or null, `results` twice, absent where the page has arrays of objects among its
 *      members or theirs, an item that is not an object, a bad day or day_from_ms value), else
 *      RECORDS_OK; #batch, batch[1] and batch:next_url() succeed, or
 *      raise {failure_type = "transient_error", message = "the answer is not JSON (<why>)"}, or
 *      raise the shape error string, accordingly.
 *  (b) #batch is the number of items. Record i, decoded, equals the reference record written by
 *      json_encode (as the engine writes a Lua-built record) and decoded: numbers compared as
 *      values, [] and {} told apart. Its text is byte for byte the declared fields in order,
 *      each value as the page spells it, except numbers with an exponent or a fractional trailing
 *      zero (json_double_text of their double), integers (their digits), days (quoted); and
 *      the day columns the engine reads hold the days written. batch[i] is record i decoded.
 *      Each record is framed as a whole RECORD message line of ctx.stream (records_batch_line):
 *      the same head and tail around every record, the lines adjacent.
 *  (c) records_batch_push_next_url and batch:next_url() give body.next_url when it is a string,
 *      else nil.
 *  (d) response.body is the text decoded by json_decode_push, or raises the not-JSON error and
 *      marks the response (records_response_not_json).
 *  Half the inputs are mapped twice while the first batch lives: same records, other buffers.
 * The walk runs on the calling thread; FUZZ_RECORDS_WORKERS=n runs it on n worker threads
 * (pool.c) instead, as a sync does.
 *
 * "Is JSON" is decided by a strict RFC 8259 checker in this file (UTF-8, \u escapes
 * of surrogates in pairs), cross-checked with json_decode_push (json_decode.c), which follows the
 * same rules: the two must agree on every text. Also intended, where the declaration is stricter than a literal Lua loop would be: a
 * day_from_ms value must be a JSON number (date.from_ms coerces "123"), an integer field omits a
 * numeric string (math.tointeger("5") is 5 in Lua 5.4.4), a `results` object is refused (ipairs
 * would see no items) and a null `results` is an empty page. Numbers are compared as values, so
 * digits the walk keeps and a double loses (123456789012345678, 0.10000000000000000001) agree.
 *
 * FUZZ_LENIENT=1 tolerated divergences while they were open (regressions/fuzz_records/README.md);
 * none is open now: an "as = day" string spelt with escapes is unescaped, and a number of more
 * than 300 digits is rewritten (to null past a double's range) as the Lua loop writes it.
 */
#define _GNU_SOURCE /* memmem */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "buf.h"
#include "date.h"
#include "fuzz_common.h"
#include "json.h"
#include "pool.h"
#include "records.h"
#include "tz.h"

/* ------------------------------------------------------------------------------------------
 * The declaration, and what the reference loop does for each field
 * ---------------------------------------------------------------------------------------- */

enum kind { COPY, INTEGER, DAY_MS, DAY, CONTEXT, VALUE };

struct field {
	const char *name;
	enum kind kind;
	const char *arg;  /* the item member (COPY, INTEGER, DAY*), the ctx field, or a Lua expression */
	const char *zone; /* DAY_MS: NULL for the default (UTC) */
};

static const struct field fields[] = {
	{"date", DAY_MS, "t", "America/New_York"},
	{"ticker", CONTEXT, "partition", NULL},
	{"price", COPY, "c", NULL},
	{"open", COPY, "o", NULL},
	{"high", COPY, "h", NULL},
	{"low", COPY, "l", NULL},
	{"close", COPY, "c", NULL},
	{"volume", COPY, "v", NULL},
	{"vwap", COPY, "vw", NULL},
	{"transactions", INTEGER, "n", NULL},
	{"utc_date", DAY_MS, "t", NULL},
	{"session", DAY, "d", NULL},
	{"shares", INTEGER, "v", NULL},
	{"extra", COPY, "x", NULL},
	{"\xc3\xa9t\xc3\xa9", COPY, "\xc3\xa9", NULL},
	{"emoji", COPY, "\xf0\x9f\x98\x80/x", NULL},         /* matched by "\ud83d\ude00\/x" too */
	{"volume_weighted_average_price", COPY, "vw", NULL}, /* a key longer than 16 bytes */
	{"source", VALUE, "'polygon'", NULL},
	{"adjusted", VALUE, "true", NULL},
	{"scale", VALUE, "0.1", NULL},
	{"tags", VALUE, "json.array()", NULL},
	{"window", CONTEXT, "window", NULL},
	{"missing", CONTEXT, "absent", NULL},
};
#define NFIELDS ((int)(sizeof fields / sizeof *fields))
static const char LIST[] = "results";
static const char NEXT[] = "next_url";
/* ctx, built once; its values are what context fields write. */
static const char STREAM[] = "stock \"prices\" \xc3\xa9";
static const char CTX_LUA[] = "return { stream = 'stock \"prices\" \\u{e9}', partition = 'BRK.B \"\\\\ \\u{e9}', "
			      "window = { from = '2024-01-02', days = 5 } }";

static lua_State *shared_state;
static int lenient;
static int64_t first_day, last_day;
/* Registry slots. */
static int mapper_ref, ctx_ref, from_ms_ref, values_ref;

/* ------------------------------------------------------------------------------------------
 * A strict RFC 8259 checker, independent of both parsers under test
 * ---------------------------------------------------------------------------------------- */

enum strict_reason {
	STRICT_OK,
	STRICT_CONTROL,      /* a raw U+0001..U+001F in a string: cjson accepts */
	STRICT_NUMBER,       /* a malformed number: cjson may accept ("1.", "-.5") */
	STRICT_TRAILING_NUL, /* NUL after the value: cjson stops reading there */
	STRICT_SURROGATE,    /* a \u escape of a lone surrogate: cjson refuses */
	STRICT_OTHER,        /* anything else: cjson refuses */
	STRICT_TOO_DEEP,     /* nested deeper than JSON_MAX_DEPTH: a shape error, never "not JSON" */
};

static const char *const reason_names[] = {"ok",
					   "control character in a string",
					   "malformed number",
					   "NUL after the value",
					   "lone surrogate escape",
					   "other",
					   "nested too deeply"};

struct strict {
	const unsigned char *start, *end;
	enum strict_reason reason;
	size_t at;
};

static const unsigned char *st_fail(struct strict *st, const unsigned char *p, enum strict_reason reason)
{
	if (st->reason == STRICT_OK) {
		st->reason = reason;
		st->at = (size_t)(p - st->start);
	}
	return NULL;
}

static const unsigned char *st_ws(const struct strict *st, const unsigned char *p)
{
	while (p < st->end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
		p++;
	return p;
}

/* RFC 3629: shortest form, no surrogates, at most U+10FFFF. Returns the length, or 0. */
static int utf8_length(const unsigned char *p, const unsigned char *end)
{
	uint32_t cp;
	int n;
	if (*p < 0x80)
		return 1;
	if ((*p & 0xe0) == 0xc0) {
		n = 2;
		cp = *p & 0x1f;
	} else if ((*p & 0xf0) == 0xe0) {
		n = 3;
		cp = *p & 0x0f;
	} else if ((*p & 0xf8) == 0xf0) {
		n = 4;
		cp = *p & 0x07;
	} else {
		return 0;
	}
	if (end - p < n)
		return 0;
	for (int i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (p[i] & 0x3f);
	}
	static const uint32_t least[] = {0, 0, 0x80, 0x800, 0x10000};
	if (cp < least[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

static int hex4(const unsigned char *p, const unsigned char *end, unsigned *out)
{
	if (end - p < 4)
		return -1;
	unsigned v = 0;
	for (int i = 0; i < 4; i++) {
		unsigned char c = p[i];
		unsigned d = 16;
		if (c >= '0' && c <= '9')
			d = c - '0';
		else if (c >= 'a' && c <= 'f')
			d = c - 'a' + 10u;
		else if (c >= 'A' && c <= 'F')
			d = c - 'A' + 10u;
		if (d == 16)
			return -1;
		v = v << 4 | d;
	}
	*out = v;
	return 0;
}

/* p is at the opening quote; returns the byte after the closing one. */
static const unsigned char *st_string(struct strict *st, const unsigned char *p)
{
	p++;
	for (;;) {
		if (p >= st->end)
			return st_fail(st, p, STRICT_OTHER);
		unsigned char c = *p;
		if (c == '"')
			return p + 1;
		if (c == '\\') {
			if (st->end - p < 2)
				return st_fail(st, p, STRICT_OTHER);
			if (strchr("\"\\/bfnrt", p[1]) && p[1]) {
				p += 2;
				continue;
			}
			unsigned cp, low;
			if (p[1] != 'u' || hex4(p + 2, st->end, &cp))
				return st_fail(st, p, STRICT_OTHER);
			p += 6;
			if (cp >= 0xdc00 && cp <= 0xdfff)
				return st_fail(st, p - 6, STRICT_SURROGATE);
			if (cp >= 0xd800 && cp <= 0xdbff) {
				if (st->end - p < 2 || p[0] != '\\' || p[1] != 'u' || hex4(p + 2, st->end, &low) ||
				    low < 0xdc00 || low > 0xdfff)
					return st_fail(st, p - 6, STRICT_SURROGATE);
				p += 6;
			}
			continue;
		}
		if (c < 0x20)
			return st_fail(st, p, c ? STRICT_CONTROL : STRICT_OTHER);
		int n = utf8_length(p, st->end);
		if (!n)
			return st_fail(st, p, STRICT_OTHER);
		p += n;
	}
}

static int digit(const struct strict *st, const unsigned char *p)
{
	return p < st->end && *p >= '0' && *p <= '9';
}

static const unsigned char *st_number(struct strict *st, const unsigned char *p)
{
	const unsigned char *start = p;
	if (*p == '-')
		p++;
	if (p < st->end && *p == '0')
		p++;
	else if (digit(st, p) && *p != '0')
		while (digit(st, p))
			p++;
	else
		return st_fail(st, start, STRICT_NUMBER);
	if (p < st->end && *p == '.') {
		if (!digit(st, ++p))
			return st_fail(st, start, STRICT_NUMBER);
		while (digit(st, p))
			p++;
	}
	if (p < st->end && (*p == 'e' || *p == 'E')) {
		p++;
		if (p < st->end && (*p == '+' || *p == '-'))
			p++;
		if (!digit(st, p))
			return st_fail(st, start, STRICT_NUMBER);
		while (digit(st, p))
			p++;
	}
	return p;
}

static const unsigned char *st_value(struct strict *st, const unsigned char *p, int depth);

/* p is at '{' or '['. */
static const unsigned char *st_container(struct strict *st, const unsigned char *p, int depth)
{
	unsigned char close = *p == '{' ? '}' : ']';
	if (depth > JSON_MAX_DEPTH)
		return st_fail(st, p, STRICT_TOO_DEEP);
	p = st_ws(st, p + 1);
	if (p < st->end && *p == close)
		return p + 1;
	for (;;) {
		if (close == '}') {
			if (p >= st->end || *p != '"')
				return st_fail(st, p, STRICT_OTHER);
			if (!(p = st_string(st, p)))
				return NULL;
			p = st_ws(st, p);
			if (p >= st->end || *p != ':')
				return st_fail(st, p, STRICT_OTHER);
			p = st_ws(st, p + 1);
		}
		if (!(p = st_value(st, p, depth)))
			return NULL;
		p = st_ws(st, p);
		if (p < st->end && *p == ',') {
			p = st_ws(st, p + 1);
			continue;
		}
		if (p < st->end && *p == close)
			return p + 1;
		return st_fail(st, p, STRICT_OTHER);
	}
}

/* One value at p (no leading space); depth is that of the container holding it. */
static const unsigned char *st_value(struct strict *st, const unsigned char *p, int depth)
{
	if (p >= st->end)
		return st_fail(st, p, STRICT_OTHER);
	switch (*p) {
	case '{':
	case '[': return st_container(st, p, depth + 1);
	case '"': return st_string(st, p);
	case 't':
	case 'f':
	case 'n': {
		const char *word = *p == 't' ? "true" : *p == 'f' ? "false" : "null";
		size_t len = strlen(word);
		if ((size_t)(st->end - p) < len || memcmp(p, word, len))
			return st_fail(st, p, STRICT_OTHER);
		return p + len;
	}
	default:
		if (*p == '-' || (*p >= '0' && *p <= '9'))
			return st_number(st, p);
		return st_fail(st, p, STRICT_OTHER);
	}
}

static enum strict_reason strict_check(const unsigned char *text, size_t len, size_t *at)
{
	struct strict st = {text, text + len, STRICT_OK, 0};
	const unsigned char *p = st_value(&st, st_ws(&st, text), 0);
	if (p) {
		p = st_ws(&st, p);
		if (p < st.end)
			st_fail(&st, p, *p == '\0' ? STRICT_TRAILING_NUL : STRICT_OTHER);
	}
	*at = st.at;
	return st.reason;
}

/* Walks the members of the valid JSON object at text[0] (after leading space): calls fn with each
 * raw name (between its quotes) and the span of its value. */
typedef void (*member_fn)(void *ud, const unsigned char *name, size_t name_len, const unsigned char *value,
			  size_t value_len);

static void for_each_member(const unsigned char *text, size_t len, member_fn fn, void *ud)
{
	struct strict st = {text, text + len, STRICT_OK, 0};
	const unsigned char *p = st_ws(&st, text);
	FUZZ_CHECK(p < st.end && *p == '{', "%s", "for_each_member: not an object");
	p = st_ws(&st, p + 1);
	if (*p == '}')
		return;
	for (;;) {
		const unsigned char *name = p + 1;
		p = st_string(&st, p);
		FUZZ_CHECK(p != NULL, "%s", "for_each_member: bad name");
		size_t name_len = (size_t)(p - 1 - name);
		p = st_ws(&st, st_ws(&st, p) + 1);
		const unsigned char *value = p;
		p = st_value(&st, p, 1);
		FUZZ_CHECK(p != NULL, "%s", "for_each_member: bad value");
		fn(ud, name, name_len, value, (size_t)(p - value));
		p = st_ws(&st, p);
		if (*p == '}')
			return;
		p = st_ws(&st, p + 1);
	}
}

/* ------------------------------------------------------------------------------------------
 * Reporting
 * ---------------------------------------------------------------------------------------- */

static void dump(const char *label, const void *data, size_t len)
{
	const unsigned char *p = data;
	fprintf(stderr, "%s (%zu bytes): ", label, len);
	for (size_t i = 0; i < len && i < 4096; i++) {
		if (p[i] >= 0x20 && p[i] < 0x7f)
			fputc(p[i], stderr);
		else
			fprintf(stderr, "\\x%02x", p[i]);
	}
	fputs(len > 4096 ? "...\n" : "\n", stderr);
}

static const uint8_t *input_data;
static size_t input_size;

#define MISMATCH(...)                                  \
	do {                                           \
		dump("input", input_data, input_size); \
		FUZZ_CHECK(0, __VA_ARGS__);            \
	} while (0)

/* ------------------------------------------------------------------------------------------
 * Comparing decoded values
 * ---------------------------------------------------------------------------------------- */

static int is_null(lua_State *L, int idx)
{
	return lua_type(L, idx) == LUA_TLIGHTUSERDATA && lua_touserdata(L, idx) == NULL;
}

static int inf_is_null;
static int ignore_marks;

/* Deep equality of decoded values: numbers as values, tables by content and array mark. */
static int same_value(lua_State *L, int a, int b, int depth)
{
	a = lua_absindex(L, a);
	b = lua_absindex(L, b);
	/* Lenient: a number too large for a double, copied with all its digits, reads back as an
	 * infinity where the writer writes null (regressions/fuzz_records/huge-plain-number-*). */
	if (inf_is_null && lua_type(L, a) == LUA_TNUMBER && isinf(lua_tonumber(L, a)) && is_null(L, b))
		return 1;
	if (lua_type(L, a) != lua_type(L, b))
		return 0;
	if (lua_type(L, a) != LUA_TTABLE)
		return lua_rawequal(L, a, b);
	FUZZ_CHECK(depth <= JSON_MAX_DEPTH && lua_checkstack(L, 6), "%s", "decoded value nested too deeply");
	int ma = lua_getmetatable(L, a);
	int mb = lua_getmetatable(L, b);
	int same_mark = ma == mb && (!ma || lua_rawequal(L, -1, -2));
	lua_pop(L, ma + mb);
	if (!same_mark && !ignore_marks)
		return 0;
	return fuzz_same_members(L, a, b, depth, same_value);
}

/* A decoded JSON array: marked (empty) or with element 1. A decoded object has string keys only. */
static int is_array(lua_State *L, int idx)
{
	if (lua_type(L, idx) != LUA_TTABLE)
		return 0;
	if (lua_rawlen(L, idx) > 0)
		return 1;
	int marked = lua_getmetatable(L, idx);
	lua_pop(L, marked);
	return marked;
}

static int is_object(lua_State *L, int idx)
{
	return lua_type(L, idx) == LUA_TTABLE && !is_array(L, idx);
}

/* Decodes text; pushes the value, or fails the property with what. */
static void decode_or_fail(lua_State *L, const char *text, size_t len, const char *what)
{
	json_decode_push(L, text, len);
	if (lua_isnil(L, -2) && !lua_isnil(L, -1)) {
		dump(what, text, len);
		MISMATCH("%s does not decode: %s", what, lua_tostring(L, -1));
	}
	lua_pop(L, 1);
}

static void encode_or_fail(lua_State *L, int idx, struct buf *out)
{
	char err[128];
	FUZZ_CHECK(json_encode(L, idx, out, err, sizeof err) == 0, "a reference record does not encode: %s", err);
}

/* ------------------------------------------------------------------------------------------
 * The reference
 * ---------------------------------------------------------------------------------------- */

/* Counts the top-level members of the page called `results`, names unescaped as cjson does. */
struct list_count {
	lua_State *L;
	int count;
};

static void count_list(void *ud, const unsigned char *name, size_t len, const unsigned char *value, size_t vlen)
{
	(void)value;
	(void)vlen;
	struct list_count *c = ud;
	size_t got = len;
	const char *s = (const char *)name;
	if (memchr(name, '\\', len)) {
		decode_or_fail(c->L, (const char *)name - 1, len + 2, "a member name");
		s = lua_tolstring(c->L, -1, &got);
	}
	if (got == strlen(LIST) && !memcmp(s, LIST, got))
		c->count++;
	if (s != (const char *)name)
		lua_pop(c->L, 1);
}

/* The reference record of the item at idx: pushes it (a table) and returns 1, or pushes nothing and
 * returns 0 when the loop would raise (the reason in why). */
static int reference_record(lua_State *L, int item, int ctx, int values, int64_t days[NFIELDS], const char **why)
{
	lua_createtable(L, 0, NFIELDS);
	int rec = lua_gettop(L);
	for (int i = 0; i < NFIELDS; i++) {
		const struct field *f = &fields[i];
		days[i] = RECORDS_NO_VALUE;
		if (f->kind == CONTEXT) {
			lua_getfield(L, ctx, f->arg);
		} else if (f->kind == VALUE) {
			lua_rawgeti(L, values, i + 1);
		} else {
			lua_pushstring(L, f->arg);
			lua_rawget(L, item);
		}
		int v = lua_gettop(L);
		switch (f->kind) {
		case COPY:
		case CONTEXT:
		case VALUE: break;
		case INTEGER: {
			int ok = 0;
			lua_Integer n = lua_type(L, v) == LUA_TNUMBER ? lua_tointegerx(L, v, &ok) : 0;
			lua_pop(L, 1);
			if (ok)
				lua_pushinteger(L, n);
			else
				lua_pushnil(L);
			break;
		}
		case DAY_MS: {
			if (lua_isnil(L, v) || is_null(L, v)) {
				lua_pop(L, 1);
				lua_pushnil(L);
				break;
			}
			if (lua_type(L, v) != LUA_TNUMBER) {
				*why = "a day_from_ms value that is not a number";
				lua_settop(L, rec - 1);
				return 0;
			}
			/* date.from_ms's arithmetic, to see whether the day is one date_format_day can spell
			 * before asking date.from_ms for it. */
			double ms = lua_tonumber(L, v);
			const struct tz_zone *zone = f->zone && strcmp(f->zone, "UTC")
							     ? tz_find(runtime_of(L)->zones, f->zone, NULL, 0)
							     : NULL;
			int64_t day = INT64_MAX;
			if (fabs(ms) < 1e15) {
				int64_t seconds = (int64_t)(ms / 1000.0);
				if ((double)seconds * 1000.0 > ms)
					seconds--;
				day = date_day_in_zone(seconds, zone);
			}
			if (day < first_day || day > last_day) {
				*why = "a day_from_ms value outside the years 1000 to 9999";
				lua_settop(L, rec - 1);
				return 0;
			}
			lua_rawgeti(L, LUA_REGISTRYINDEX, from_ms_ref);
			lua_pushvalue(L, v);
			if (f->zone)
				lua_pushstring(L, f->zone);
			lua_call(L, f->zone ? 2 : 1, 1);
			int64_t parsed;
			FUZZ_CHECK(lua_type(L, -1) == LUA_TSTRING &&
					   date_parse_day(lua_tostring(L, -1), &parsed) == 0 && parsed == day,
				   "date.from_ms(%.17g) gives '%s', not day %lld", ms, lua_tostring(L, -1),
				   (long long)day);
			days[i] = day;
			lua_replace(L, v);
			break;
		}
		case DAY: {
			if (lua_isnil(L, v) || is_null(L, v)) {
				lua_pop(L, 1);
				lua_pushnil(L);
				break;
			}
			size_t len = 0;
			const char *s = lua_type(L, v) == LUA_TSTRING ? lua_tolstring(L, v, &len) : NULL;
			if (!s || len != 10 || date_parse_day(s, &days[i])) {
				*why = "an as = \"day\" value that is not a YYYY-MM-DD day";
				lua_settop(L, rec - 1);
				return 0;
			}
			break;
		}
		}
		lua_setfield(L, rec, f->name);
	}
	return 1;
}

/* ------------------------------------------------------------------------------------------
 * The items as the page spells them, for the expected record texts
 * ---------------------------------------------------------------------------------------- */

struct span {
	const unsigned char *at; /* NULL: absent */
	size_t len;
};

/* Calls fn with the span of each element of the valid JSON array at text. */
typedef void (*element_fn)(void *ud, const unsigned char *value, size_t len);

static void for_each_element(const unsigned char *text, size_t len, element_fn fn, void *ud)
{
	struct strict st = {text, text + len, STRICT_OK, 0};
	const unsigned char *p = st_ws(&st, text);
	FUZZ_CHECK(p < st.end && *p == '[', "%s", "for_each_element: not an array");
	p = st_ws(&st, p + 1);
	if (*p == ']')
		return;
	for (;;) {
		const unsigned char *value = p;
		p = st_value(&st, p, 1);
		FUZZ_CHECK(p != NULL, "%s", "for_each_element: bad value");
		fn(ud, value, (size_t)(p - value));
		p = st_ws(&st, p);
		if (*p == ']')
			return;
		p = st_ws(&st, p + 1);
	}
}

/* Whether the member name spelt name[0..len) (between its quotes) reads as want, as cjson reads it. */
static int name_reads_as(lua_State *L, const unsigned char *name, size_t len, const char *want)
{
	if (!memchr(name, '\\', len))
		return len == strlen(want) && !memcmp(name, want, len);
	decode_or_fail(L, (const char *)name - 1, len + 2, "a member name");
	size_t got;
	const char *s = lua_tolstring(L, -1, &got);
	int same = got == strlen(want) && !memcmp(s, want, got);
	lua_pop(L, 1);
	return same;
}

struct page_scan {
	lua_State *L;
	struct span list;   /* the value of the page's `results` */
	struct span *items; /* per item, per field: the member it reads (the last one with that name) */
	size_t count, cap;
};

static void item_member(void *ud, const unsigned char *name, size_t len, const unsigned char *value, size_t vlen)
{
	struct page_scan *ps = ud;
	struct span *item = ps->items + (ps->count - 1) * NFIELDS;
	for (int i = 0; i < NFIELDS; i++)
		if (fields[i].kind != CONTEXT && fields[i].kind != VALUE &&
		    name_reads_as(ps->L, name, len, fields[i].arg))
			item[i] = (struct span){value, vlen};
}

static void list_element(void *ud, const unsigned char *value, size_t len)
{
	struct page_scan *ps = ud;
	if (ps->count == ps->cap) {
		ps->cap = ps->cap ? 2 * ps->cap : 64;
		ps->items = realloc(ps->items, ps->cap * NFIELDS * sizeof *ps->items);
		FUZZ_CHECK(ps->items != NULL, "%s", "out of memory");
	}
	memset(ps->items + ps->count * NFIELDS, 0, NFIELDS * sizeof *ps->items);
	ps->count++;
	if (*value == '{')
		for_each_member(value, len, item_member, ps);
}

static void page_member(void *ud, const unsigned char *name, size_t len, const unsigned char *value, size_t vlen)
{
	struct page_scan *ps = ud;
	if (name_reads_as(ps->L, name, len, LIST))
		ps->list = (struct span){value, vlen};
}

/* Fills ps with the page's items (the page is valid JSON, an object with one `results` at most). */
static void scan_page(lua_State *L, struct page_scan *ps)
{
	memset(ps, 0, sizeof *ps);
	ps->L = L;
	for_each_member(input_data, input_size, page_member, ps);
	if (ps->list.at && *ps->list.at == '[')
		for_each_element(ps->list.at, ps->list.len, list_element, ps);
}

/* ------------------------------------------------------------------------------------------
 * Comparing the mapper's records with the reference
 * ---------------------------------------------------------------------------------------- */

static int is_number_text(const struct span *v)
{
	return *v->at == '-' || (*v->at >= '0' && *v->at <= '9');
}

/* Digits before the point: past 300 a number is rewritten (a double cannot hold it). */
static size_t integer_digits(const struct span *v)
{
	size_t i = *v->at == '-';
	size_t n = 0;
	while (i < v->len && v->at[i] >= '0' && v->at[i] <= '9')
		i++, n++;
	return n;
}

/* An object or array as a record copies it: as spelt, but for the numbers that read as an
 * infinity, null (as the Lua loop writes them), and line breaks between tokens, spaces (the record
 * is one line). Token by token over valid JSON: a string to its unescaped quote, a number to where
 * strtod stops. */
static void copy_with_infinities_null(const struct span *v, struct buf *out)
{
	size_t i = 0;
	while (i < v->len) {
		const char *at = (const char *)v->at + i;
		size_t n = 1;
		if (*at == '"') {
			while (at[n] != '"')
				n += at[n] == '\\' ? 2 : 1;
			n++;
		} else if (*at == '-' || (*at >= '0' && *at <= '9')) {
			char *stop;
			if (isinf(strtod(at, &stop))) {
				buf_puts(out, "null");
				i += (size_t)(stop - at);
				continue;
			}
			n = (size_t)(stop - at);
		} else if (*at == '\n' || *at == '\r') {
			at = " ";
		}
		buf_append(out, at, n);
		i += n;
	}
}

/* What a record must spell for field i, whose reference value is at idx: a copied value as the page
 * spells it, but for numbers with an exponent or a fractional trailing zero, which are written
 * as json_double_text writes the double they read as, and infinities inside an object or array,
 * written null; an integer from its exact digits when the
 * page spells one of at most 18, else the reference's; days quoted; constants as json_encode
 * writes them. */
static void expected_value(lua_State *L, int i, int idx, const struct span *v, struct buf *out)
{
	char number[JSON_NUMBER_MAX];
	FUZZ_CHECK(v->at || fields[i].kind == CONTEXT || fields[i].kind == VALUE,
		   "field '%s' has a reference value, but the harness found no member '%s' in the text", fields[i].name,
		   fields[i].arg);
	switch (fields[i].kind) {
	case COPY: {
		int rewrite = is_number_text(v) &&
			      (memchr(v->at, 'e', v->len) || memchr(v->at, 'E', v->len) ||
			       (memchr(v->at, '.', v->len) && v->at[v->len - 1] == '0') || integer_digits(v) > 300);
		if (rewrite) /* strtod stops at the ',' or '}' after the value */
			buf_append(out, number, json_double_text(strtod((const char *)v->at, NULL), number));
		else if (*v->at == '{' || *v->at == '[')
			copy_with_infinities_null(v, out);
		else
			buf_append(out, v->at, v->len);
		return;
	}
	case INTEGER: {
		const unsigned char *p = v->at + (*v->at == '-');
		size_t digits = v->len - (size_t)(p - v->at);
		int exact = digits <= 18;
		for (size_t k = 0; k < digits && exact; k++)
			exact = p[k] >= '0' && p[k] <= '9';
		long long n = (long long)lua_tointeger(L, idx);
		if (exact) {
			n = 0;
			for (size_t k = 0; k < digits; k++)
				n = n * 10 + (p[k] - '0');
			n = *v->at == '-' ? -n : n;
		}
		buf_append(out, number, json_int_text(n, number));
		return;
	}
	case DAY_MS:
		buf_putc(out, '"');
		buf_puts(out, lua_tostring(L, idx));
		buf_putc(out, '"');
		return;
	case DAY: buf_append(out, v->at, v->len); return;
	default: encode_or_fail(L, idx, out); return;
	}
}

static void compare_records(lua_State *L, const struct record_batch *batch, int batch_idx, int items, int ctx,
			    int values)
{
	size_t n = lua_rawlen(L, items);
	struct page_scan ps;
	scan_page(L, &ps);
	FUZZ_CHECK(ps.count == n, "the harness sees %zu items in the text and %zu decoded", ps.count, n);
	FUZZ_CHECK(records_batch_count(batch) == n, "%zu records for %zu items", records_batch_count(batch), n);
	lua_len(L, batch_idx);
	FUZZ_CHECK(lua_tointeger(L, -1) == (lua_Integer)n, "#batch is %lld, not %zu", (long long)lua_tointeger(L, -1),
		   n);
	lua_pop(L, 1);
	int columns[NFIELDS];
	for (int i = 0; i < NFIELDS; i++) {
		columns[i] = records_batch_column(batch, fields[i].name,
						  fields[i].kind == INTEGER ? CURSOR_INTEGER : CURSOR_DAY);
		int has_column = fields[i].kind == DAY || fields[i].kind == DAY_MS || fields[i].kind == INTEGER;
		FUZZ_CHECK((columns[i] >= 0) == has_column, "field '%s' has value column %d", fields[i].name,
			   columns[i]);
	}
	FUZZ_CHECK(records_batch_framed_for(batch, STREAM) && !records_batch_framed_for(batch, "stock_prices"), "%s",
		   "the batch is not framed for ctx.stream alone");
	struct buf ref_text = {0}, expected = {0};
	const char *head = NULL, *tail = NULL, *last_end = NULL;
	size_t head_len = 0, tail_len = 0;
	for (size_t k = 1; k <= n; k++) {
		int base = lua_gettop(L);
		const char *data;
		size_t len;
		int64_t day;
		records_batch_get(batch, k - 1, -1, &data, &len, &day);
		FUZZ_CHECK(day == RECORDS_NO_VALUE, "%s", "records_batch_get gives a day for column -1");
		decode_or_fail(L, data, len, "record");
		int got = lua_gettop(L);
		lua_geti(L, batch_idx, (lua_Integer)k);
		FUZZ_CHECK(same_value(L, got, -1, 0), "batch[%zu] is not its record text decoded", k);
		lua_pop(L, 1);

		/* the RECORD message line around it: the same head and tail for every record, lines
		 * adjacent, and the line a RECORD of ctx.stream whose data is the record */
		const char *line;
		size_t line_len;
		records_batch_line(batch, k - 1, &line, &line_len);
		FUZZ_CHECK(line <= data && data + len <= line + line_len && line_len > 0 && line[line_len - 1] == '\n',
			   "record %zu is not inside its line", k);
		if (k == 1) {
			head = line;
			head_len = (size_t)(data - line);
			tail = data + len;
			tail_len = (size_t)(line + line_len - tail);
		} else {
			FUZZ_CHECK(line == last_end, "record %zu's line does not follow the previous one", k);
			FUZZ_CHECK((size_t)(data - line) == head_len && !memcmp(line, head, head_len) &&
					   (size_t)(line + line_len - (data + len)) == tail_len &&
					   !memcmp(data + len, tail, tail_len),
				   "record %zu is framed unlike record 1", k);
		}
		last_end = line + line_len;
		decode_or_fail(L, line, line_len - 1, "RECORD line");
		int message = lua_gettop(L);
		lua_getfield(L, message, "type");
		lua_getfield(L, message, "record");
		FUZZ_CHECK(lua_type(L, -2) == LUA_TSTRING && !strcmp(lua_tostring(L, -2), "RECORD") &&
				   lua_istable(L, -1),
			   "record %zu's line is not a RECORD message", k);
		lua_getfield(L, -1, "stream");
		lua_getfield(L, -2, "emitted_at");
		lua_getfield(L, -3, "data");
		FUZZ_CHECK(lua_type(L, -3) == LUA_TSTRING && !strcmp(lua_tostring(L, -3), STREAM) &&
				   lua_isnumber(L, -2) && same_value(L, -1, got, 0),
			   "record %zu's RECORD message has another stream, no emitted_at, or other data", k);
		lua_settop(L, got);

		/* (b) the values, as the Lua loop would write them */
		lua_rawgeti(L, items, (lua_Integer)k);
		int64_t days[NFIELDS];
		const char *why = NULL;
		FUZZ_CHECK(reference_record(L, lua_gettop(L), ctx, values, days, &why), "item %zu: %s", k, why);
		int rec = lua_gettop(L);
		ref_text.len = 0;
		encode_or_fail(L, rec, &ref_text);
		decode_or_fail(L, ref_text.data, ref_text.len, "reference record");
		int want = lua_gettop(L);
		inf_is_null = lenient;
		int same = same_value(L, got, want, 0);
		inf_is_null = 0;
		if (!same) {
			dump("record   ", data, len);
			dump("reference", ref_text.data, ref_text.len);
			MISMATCH("record %zu differs from the reference", k);
		}

		/* the text: declared order, values spelt as documented */
		expected.len = 0;
		buf_putc(&expected, '{');
		for (int i = 0; i < NFIELDS; i++) {
			lua_getfield(L, rec, fields[i].name);
			if (!lua_isnil(L, -1)) {
				if (expected.len > 1)
					buf_putc(&expected, ',');
				buf_printf(&expected, "\"%s\":", fields[i].name);
				expected_value(L, i, lua_gettop(L), &ps.items[(k - 1) * NFIELDS + i], &expected);
			}
			lua_pop(L, 1);
			if (columns[i] < 0)
				continue;
			records_batch_get(batch, k - 1, columns[i], &data, &len, &day);
			int64_t want = days[i];
			if (fields[i].kind == INTEGER) {
				/* The integer the record holds, or none when the field was left out. */
				lua_getfield(L, rec, fields[i].name);
				want = lua_isinteger(L, -1) ? (int64_t)lua_tointeger(L, -1) : RECORDS_NO_VALUE;
				lua_pop(L, 1);
				/* The reference went through lua-cjson's doubles: past 2^53 it is not exact,
				 * while the walk reads the digits. */
				if (want != RECORDS_NO_VALUE && (want >= (1LL << 53) || want <= -(1LL << 53)))
					want = day;
			}
			FUZZ_CHECK(day == want, "record %zu: value column of '%s' holds %lld, not %lld", k,
				   fields[i].name, (long long)day, (long long)want);
		}
		buf_putc(&expected, '}');
		records_batch_get(batch, k - 1, -1, &data, &len, &day);
		if (len != expected.len || memcmp(data, expected.data, len)) {
			dump("record  ", data, len);
			dump("expected", expected.data, expected.len);
			MISMATCH("record %zu is not spelt as expected", k);
		}
		lua_settop(L, base);
	}
	buf_free(&ref_text);
	buf_free(&expected);
	free(ps.items);
}

/* ------------------------------------------------------------------------------------------
 * One input
 * ---------------------------------------------------------------------------------------- */

static int starts_with(const char *s, const char *prefix)
{
	return s && !strncmp(s, prefix, strlen(prefix));
}

/* The non-empty arrays of objects among the page's members and its objects' members, counted as
 * spelt (every member, duplicates too): where the list is absent, these make the page a list that
 * finds nothing. */
struct arrays_seen {
	int count, level;
};

static void array_member(void *ud, const unsigned char *name, size_t len, const unsigned char *value, size_t vlen)
{
	struct arrays_seen *a = ud;
	(void)name;
	(void)len;
	if (*value == '[') {
		const unsigned char *p = value + 1;
		while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
			p++;
		a->count += *p == '{';
	} else if (*value == '{' && a->level < 2) {
		a->level++;
		for_each_member(value, vlen, array_member, a);
		a->level--;
	}
}

/* The expected outcome from the decoded body at idx: 1 success (items array, or nil, pushed), 0 a
 * shape error (nothing pushed; why says which). */
static int reference_page(lua_State *L, int body, int ctx, int values, const char **why)
{
	if (!is_object(L, body)) {
		*why = "the page is not an object";
		return 0;
	}
	struct list_count c = {L, 0};
	for_each_member(input_data, input_size, count_list, &c);
	if (c.count > 1) {
		*why = "the page has the list twice";
		return 0;
	}
	lua_getfield(L, body, LIST);
	int items = lua_gettop(L);
	struct arrays_seen arrays = {0, 1};
	if (lua_isnil(L, items))
		for_each_member(input_data, input_size, array_member, &arrays);
	if (arrays.count) {
		*why = "the list finds nothing where the page has arrays of items";
		lua_pop(L, 1);
		return 0;
	}
	if (lua_isnil(L, items) || is_null(L, items)) {
		lua_pop(L, 1);
		lua_newtable(L);
		return 1;
	}
	if (!is_array(L, items)) {
		*why = "the list is not an array";
		lua_pop(L, 1);
		return 0;
	}
	for (lua_Integer k = 1; k <= (lua_Integer)lua_rawlen(L, items); k++) {
		lua_rawgeti(L, items, k);
		int item = lua_gettop(L);
		if (!is_object(L, item)) {
			*why = "an item is not an object";
			lua_settop(L, items - 1);
			return 0;
		}
		int64_t days[NFIELDS];
		if (!reference_record(L, item, ctx, values, days, why)) {
			lua_settop(L, items - 1);
			return 0;
		}
		lua_settop(L, item - 1);
	}
	return 1;
}

static int get_body(lua_State *L)
{
	lua_getfield(L, 1, "body");
	return 1;
}

/* What Lua sees of a batch: #batch, batch[1], batch:next_url(). */
static int op_len(lua_State *L)
{
	lua_len(L, 1);
	return 1;
}

static int op_index(lua_State *L)
{
	lua_geti(L, 1, 1);
	return 1;
}

static int op_next_url(lua_State *L)
{
	lua_getfield(L, 1, "next_url");
	lua_pushvalue(L, 1);
	lua_call(L, 1, 1);
	return 1;
}

/* Each of them succeeds when the walk did, else raises what the engine was told: the not-JSON
 * error table, or the shape error as a string. */
static void check_lua_view(lua_State *L, int batch, enum records_outcome outcome, const char *why)
{
	static const lua_CFunction ops[] = {op_len, op_index, op_next_url};
	static const char *const names[] = {"#batch", "batch[1]", "batch:next_url()"};
	for (int i = 0; i < 3; i++) {
		lua_pushcfunction(L, ops[i]);
		lua_pushvalue(L, batch);
		int status = lua_pcall(L, 1, 1, 0);
		if (outcome == RECORDS_OK) {
			FUZZ_CHECK(status == LUA_OK, "%s raises after a walk that went well: %s", names[i],
				   lua_isstring(L, -1) ? lua_tostring(L, -1) : luaL_typename(L, -1));
		} else if (outcome == RECORDS_NOT_JSON) {
			FUZZ_CHECK(status != LUA_OK && lua_istable(L, -1),
				   "%s does not raise a table for a page that is not JSON", names[i]);
			lua_getfield(L, -1, "failure_type");
			lua_getfield(L, -2, "message");
			const char *failure = lua_tostring(L, -2);
			const char *message = lua_tostring(L, -1);
			char want[600];
			snprintf(want, sizeof want, "the answer is not JSON (%s)", why);
			FUZZ_CHECK(failure && !strcmp(failure, "transient_error") && message && !strcmp(message, want),
				   "%s raises %s / %s, not the not-JSON error for '%s'", names[i],
				   failure ? failure : "(none)", message ? message : "(none)", why);
			lua_pop(L, 2);
		} else {
			FUZZ_CHECK(status != LUA_OK && lua_type(L, -1) == LUA_TSTRING &&
					   !strcmp(lua_tostring(L, -1), why),
				   "%s raises %s, not the shape error '%s'", names[i],
				   lua_isstring(L, -1) ? lua_tostring(L, -1) : luaL_typename(L, -1), why);
		}
		lua_pop(L, 1);
	}
}

/* mapper:map(ctx, response): pushes the batch. With no worker started, the walk has run; with
 * FUZZ_RECORDS_WORKERS=n it runs on one of n threads, as during a sync. */
static const struct record_batch *map_page(lua_State *L, int mapper, int ctx, int response)
{
	lua_getfield(L, mapper, "map");
	lua_pushvalue(L, mapper);
	lua_pushvalue(L, ctx);
	lua_pushvalue(L, response);
	FUZZ_CHECK(lua_pcall(L, 3, 1, 0) == LUA_OK, "map raised: %s",
		   lua_isstring(L, -1) ? lua_tostring(L, -1) : luaL_typename(L, -1));
	const struct record_batch *batch = records_to_batch(L, -1);
	FUZZ_CHECK(batch != NULL, "map returned a %s, not a batch", luaL_typename(L, -1));
	FUZZ_CHECK(pool_running(&runtime_of(L)->pool) || records_batch_ready(batch), "%s",
		   "no worker runs, yet the walk is not done");
	return batch;
}

static int run(lua_State *L)
{
	(void)lua_touserdata(L, 1);
	lua_settop(L, 0);
	lua_rawgeti(L, LUA_REGISTRYINDEX, ctx_ref);
	int ctx = lua_gettop(L);
	lua_rawgeti(L, LUA_REGISTRYINDEX, values_ref);
	int values = lua_gettop(L);

	size_t strict_at = 0;
	enum strict_reason strict = strict_check(input_data, input_size, &strict_at);
	enum json_decoded decoded = json_decode_push(L, (const char *)input_data, input_size);
	int cjson_ok = decoded == JSON_DECODED;
	const char *cjson_error = cjson_ok ? NULL : lua_tostring(L, -1);
	lua_pop(L, cjson_ok);
	int body = lua_gettop(L);
	if (!cjson_ok)
		FUZZ_CHECK(strict != STRICT_OK, "json_decode_push refuses what RFC 8259 allows: %s", cjson_error);
	/* The runtime's decoder follows RFC 8259 as the walk does: no leniency either way. */
	if (cjson_ok)
		FUZZ_CHECK(strict == STRICT_OK, "json_decode_push accepts a text refused for '%s' at byte %zu",
			   reason_names[strict], strict_at);
	if (decoded == JSON_TOO_DEEP)
		FUZZ_CHECK(strict == STRICT_TOO_DEEP,
			   "json_decode_push calls too deep a text refused for '%s' at byte %zu", reason_names[strict],
			   strict_at);
	int is_json = strict == STRICT_OK;

	/* mapper:map(ctx, response) -> batch; the walk's outcome is read when the batch is settled */
	lua_rawgeti(L, LUA_REGISTRYINDEX, mapper_ref);
	int mapper = lua_gettop(L);
	lua_pushliteral(L, "https://api.polygon.io/v2/aggs/ticker/AAPL/range/1/day/2024-01-02/2024-01-31");
	records_push_response(L, 200, -1, (const char *)input_data, input_size);
	int response = lua_gettop(L);
	const struct record_batch *batch = map_page(L, mapper, ctx, response);
	int result = lua_gettop(L);
	char why[512];
	enum records_outcome outcome = records_batch_settle(batch, why, sizeof why);
	check_lua_view(L, result, outcome, why);
	int not_json = outcome == RECORDS_NOT_JSON;
	const char *shape_error = outcome == RECORDS_WRONG_SHAPE ? why : NULL;
	if (shape_error)
		FUZZ_CHECK(starts_with(shape_error, "records: "), "a shape error that is not a 'records:' one: %s",
			   shape_error);

	/* (d) response.body, what a script that builds its records in Lua reads: cjson's decoding, or
	 * the not-JSON error, with the response marked so that the engine asks again; JSON nested too
	 * deeply is a plain error (the same answer would come again). */
	char marked_why[200];
	lua_pushcfunction(L, get_body);
	lua_pushvalue(L, response);
	if (lua_pcall(L, 1, 1, 0) == LUA_OK) {
		FUZZ_CHECK(cjson_ok, "%s", "response.body decodes a text json_decode_push refuses");
		FUZZ_CHECK(same_value(L, -1, body, 0), "%s", "response.body is not the text decoded");
	} else if (decoded == JSON_TOO_DEEP) {
		FUZZ_CHECK(lua_type(L, -1) == LUA_TSTRING && strstr(lua_tostring(L, -1), "nested deeper than"), "%s",
			   "response.body raises something else than the too-deep error");
		FUZZ_CHECK(!records_response_not_json(L, response, marked_why, sizeof marked_why), "%s",
			   "response.body marked a too-deep answer to be asked for again");
	} else {
		FUZZ_CHECK(!cjson_ok, "response.body raises for a text json_decode_push accepts: %s",
			   lua_istable(L, -1) ? "(a table)" : lua_tostring(L, -1));
		FUZZ_CHECK(lua_istable(L, -1) && lua_getfield(L, -1, "failure_type") == LUA_TSTRING &&
				   !strcmp(lua_tostring(L, -1), "transient_error"),
			   "%s", "response.body raises something else than the not-JSON error");
		FUZZ_CHECK(records_response_not_json(L, response, marked_why, sizeof marked_why), "%s",
			   "response.body raised without marking the response");
	}
	lua_settop(L, result);

	/* (a) not JSON exactly when the text is not JSON; too deep is a shape error */
	if (strict == STRICT_TOO_DEEP) {
		if (outcome == RECORDS_WRONG_SHAPE)
			return 0;
		MISMATCH("the text nests deeper than %d levels at byte %zu but map %s%s", JSON_MAX_DEPTH, strict_at,
			 outcome == RECORDS_OK ? "succeeded" : "says: ", why);
	}
	if (!is_json) {
		if (not_json)
			return 0;
		MISMATCH("the text is not JSON (%s at byte %zu; json_decode_push: %s) but map %s%s",
			 reason_names[strict], strict_at, cjson_ok ? "accepts it" : cjson_error,
			 outcome == RECORDS_OK ? "succeeded" : "says: ", shape_error ? shape_error : "");
	}
	if (not_json)
		MISMATCH("the text is JSON but map says it is not: %s", why);

	/* the shape, and each item's reference record */
	const char *ref_why = NULL;
	int ok = reference_page(L, body, ctx, values, &ref_why);
	if (!ok) {
		if (outcome != RECORDS_OK)
			return 0;
		MISMATCH("map succeeded where the reference loop raises (%s)", ref_why);
	}
	int items = lua_gettop(L);
	if (outcome != RECORDS_OK) {
		if (lenient && strstr(shape_error, "is not a YYYY-MM-DD day") && memchr(input_data, '\\', input_size))
			return 0; /* reported: escaped day strings refused */
		MISMATCH("map says the page has the wrong shape where the reference loop succeeds: %s", shape_error);
	}

	/* (b) the records */
	compare_records(L, batch, result, items, ctx, values);
	for (lua_Integer k = 0; k <= 1; k++) {
		lua_geti(L, result, k ? (lua_Integer)records_batch_count(batch) + 1 : 0);
		FUZZ_CHECK(lua_isnil(L, -1), "batch[%lld] is a %s", k ? (long long)records_batch_count(batch) + 1 : 0LL,
			   luaL_typename(L, -1));
		lua_pop(L, 1);
	}

	/* (c) the next URL, as the engine reads it and as batch:next_url() gives it */
	lua_getfield(L, body, NEXT);
	if (lua_type(L, -1) != LUA_TSTRING) {
		lua_pop(L, 1);
		lua_pushnil(L);
	}
	int want = lua_gettop(L);
	records_batch_push_next_url(L, batch);
	lua_pushcfunction(L, op_next_url);
	lua_pushvalue(L, result);
	lua_call(L, 1, 1);
	for (int got = want + 1; got <= want + 2; got++)
		if (!lua_rawequal(L, want, got)) {
			size_t a = 0, b = 0;
			const char *w = lua_tolstring(L, want, &a);
			const char *g = lua_type(L, got) == LUA_TSTRING ? lua_tolstring(L, got, &b) : NULL;
			dump(got == want + 1 ? "next_url (engine)   " : "next_url (Lua)      ", g ? g : "nil",
			     g ? b : 3);
			dump("next_url (reference)", w ? w : "nil", w ? a : 3);
			MISMATCH("%s", "next_url differs");
		}
	lua_settop(L, result);

	/* Half the time, the same page again while the first batch is alive: the second batch must
	 * get its own buffers (the mapper lends its spare ones to one batch), and both must hold the
	 * same records. */
	if (input_size % 2) {
		const struct record_batch *again = map_page(L, mapper, ctx, response);
		FUZZ_CHECK(records_batch_settle(again, why, sizeof why) == RECORDS_OK, "mapping the page again: %s",
			   why);
		FUZZ_CHECK(again != batch && records_batch_count(again) == records_batch_count(batch), "%s",
			   "mapping the page again gave another count");
		for (size_t k = 0; k < records_batch_count(batch); k++) {
			const char *a, *b;
			size_t alen, blen;
			int64_t day;
			records_batch_get(batch, k, -1, &a, &alen, &day);
			records_batch_get(again, k, -1, &b, &blen, &day);
			FUZZ_CHECK(a != b && alen == blen && !memcmp(a, b, alen),
				   "record %zu differs when the page is mapped again", k + 1);
		}
		lua_pop(L, 1);
	}
	return 0;
}

/* ------------------------------------------------------------------------------------------
 * Set-up
 * ---------------------------------------------------------------------------------------- */

static int eval_ref(lua_State *L, const char *chunk)
{
	if (luaL_loadstring(L, chunk) != LUA_OK || lua_pcall(L, 0, 1, 0) != LUA_OK) {
		fprintf(stderr, "fuzz_records: %s: %s\n", chunk, lua_tostring(L, -1));
		abort();
	}
	return luaL_ref(L, LUA_REGISTRYINDEX);
}

static int declare(lua_State *L)
{
	lua_getglobal(L, "records");
	lua_getfield(L, -1, "declare");
	lua_createtable(L, 0, 3);
	lua_pushstring(L, LIST);
	lua_setfield(L, -2, "list");
	lua_pushstring(L, NEXT);
	lua_setfield(L, -2, "next_url");
	lua_createtable(L, NFIELDS, 0);
	lua_rawgeti(L, LUA_REGISTRYINDEX, values_ref);
	for (int i = 0; i < NFIELDS; i++) {
		const struct field *f = &fields[i];
		lua_createtable(L, 1, 3);
		lua_pushstring(L, f->name);
		lua_rawseti(L, -2, 1);
		if (f->kind == VALUE) {
			lua_rawgeti(L, -2, i + 1);
			lua_setfield(L, -2, "value");
		} else {
			lua_pushstring(L, f->arg);
			lua_setfield(L, -2, f->kind == CONTEXT ? "context" : "from");
		}
		static const char *const as[] = {[INTEGER] = "integer", [DAY_MS] = "day_from_ms", [DAY] = "day"};
		if (f->kind == INTEGER || f->kind == DAY_MS || f->kind == DAY) {
			lua_pushstring(L, as[f->kind]);
			lua_setfield(L, -2, "as");
		}
		if (f->zone) {
			lua_pushstring(L, f->zone);
			lua_setfield(L, -2, "zone");
		}
		lua_rawseti(L, -3, i + 1);
	}
	lua_pop(L, 1);
	lua_setfield(L, -2, "fields");
	lua_call(L, 1, 1);
	return 1;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	lua_State *L = fuzz_open_state();
	lenient = fuzz_lenient();
	const char *workers = getenv("FUZZ_RECORDS_WORKERS");
	if (workers && atoi(workers) > 0)
		pool_start(&runtime_of(L)->pool, atoi(workers));
	if (date_parse_day("1000-01-01", &first_day) || date_parse_day("9999-12-31", &last_day))
		abort();
	/* The constants of value fields, at their field's index. */
	lua_createtable(L, NFIELDS, 0);
	for (int i = 0; i < NFIELDS; i++) {
		if (fields[i].kind != VALUE)
			continue;
		char chunk[128];
		snprintf(chunk, sizeof chunk, "return %s", fields[i].arg);
		lua_rawgeti(L, LUA_REGISTRYINDEX, eval_ref(L, chunk));
		lua_rawseti(L, -2, i + 1);
	}
	values_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	ctx_ref = eval_ref(L, CTX_LUA);
	from_ms_ref = eval_ref(L, "return date.from_ms");
	lua_pushcfunction(L, declare);
	if (lua_pcall(L, 0, 1, 0) != LUA_OK) {
		fprintf(stderr, "fuzz_records: records.declare: %s\n", lua_tostring(L, -1));
		abort();
	}
	mapper_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	shared_state = L;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	lua_State *L = shared_state;
	input_data = data;
	input_size = size;
	lua_pushcfunction(L, run);
	lua_pushlightuserdata(L, NULL);
	int status = lua_pcall(L, 1, 0, 0);
	if (status != LUA_OK) {
		/* The harness itself must not raise: a memory error here would hide a comparison. */
		dump("input", data, size);
		FUZZ_CHECK(0, "the harness raised: %s",
			   lua_tostring(L, -1) ? lua_tostring(L, -1) : luaL_typename(L, -1));
	}
	fuzz_collect(L);
	return 0;
}
