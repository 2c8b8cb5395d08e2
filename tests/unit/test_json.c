/*
 * test_json: the message writer (json.c): exact doubles, string escaping to valid UTF-8, Lua values
 * to JSON (integers, arrays vs objects, errors that leave the output as it was), and decode ->
 * encode round trips that keep empty arrays as arrays.
 */
#include <lauxlib.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "json.h"

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? and nothing else. */
static int is_json_number(const char *s)
{
	if (*s == '-')
		s++;
	if (*s == '0') {
		s++;
	} else if (*s >= '1' && *s <= '9') {
		while (*s >= '0' && *s <= '9')
			s++;
	} else {
		return 0;
	}
	if (*s == '.') {
		s++;
		if (!(*s >= '0' && *s <= '9'))
			return 0;
		while (*s >= '0' && *s <= '9')
			s++;
	}
	if (*s == 'e' || *s == 'E') {
		s++;
		if (*s == '+' || *s == '-')
			s++;
		if (!(*s >= '0' && *s <= '9'))
			return 0;
		while (*s >= '0' && *s <= '9')
			s++;
	}
	return *s == '\0';
}

/* Whether s[0..len) is well-formed UTF-8 without surrogates or overlong forms. */
static int is_valid_utf8(const unsigned char *s, size_t len)
{
	size_t i = 0;
	while (i < len) {
		unsigned char c = s[i];
		size_t n;
		uint32_t cp;
		uint32_t min;
		if (c < 0x80) {
			i++;
			continue;
		} else if ((c & 0xe0) == 0xc0) {
			n = 2;
			cp = c & 0x1f;
			min = 0x80;
		} else if ((c & 0xf0) == 0xe0) {
			n = 3;
			cp = c & 0x0f;
			min = 0x800;
		} else if ((c & 0xf8) == 0xf0) {
			n = 4;
			cp = c & 0x07;
			min = 0x10000;
		} else {
			return 0;
		}
		if (i + n > len)
			return 0;
		for (size_t k = 1; k < n; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return 0;
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
		i += n;
	}
	return 1;
}

/* ---- json_write_double ---- */

struct double_case {
	const char *label;
	double value;
	const char *text; /* the exact text expected, or NULL when only the round trip matters */
};

static const struct double_case doubles[] = {
	{"0.1", 0.1, "0.1"},
	{"804.58", 804.58, "804.58"},
	{"-804.58", -804.58, "-804.58"},
	{"1e21", 1e21, "1e+21"},
	{"5e-324 (smallest subnormal)", 5e-324, NULL},
	{"DBL_MAX", 1.7976931348623157e308, "1.7976931348623157e+308"},
	{"-DBL_MAX", -1.7976931348623157e308, "-1.7976931348623157e+308"},
	{"-0.0", -0.0, NULL},
	{"131.6292", 131.6292, "131.6292"},
	{"1646629200000.0", 1646629200000.0, "1646629200000"},
	{"2^53", 9007199254740992.0, "9007199254740992"},
	{"2^53+2", 9007199254740994.0, "9007199254740994"},
	{"123456789.123456789", 123456789.123456789, "123456789.12345679"},
	{"0.1+0.2", 0.30000000000000004, "0.30000000000000004"},
	{"1/3", 1.0 / 3.0, "0.3333333333333333"},
	{"DBL_MIN", 2.2250738585072014e-308, NULL},
	{"-1e-300", -1e-300, "-1e-300"},
	{"1e23", 1e23, "1e+23"},
	{"1e-7", 1e-7, NULL},
	{"2^63", 9223372036854775808.0, NULL},
	{"2^51+0.5", 2251799813685248.5, "2251799813685248.5"},
};

static void double_round_trips(void)
{
	for (size_t i = 0; i < COUNT_OF(doubles); i++) {
		const struct double_case *c = &doubles[i];
		struct buf out = {0};
		json_write_double(&out, c->value);
		const char *text = buf_cstr(&out);
		double back = strtod(text, NULL);
		CHECK(memcmp(&back, &c->value, sizeof back) == 0, "%s: \"%s\" reads back as %.17g, not bit-exact %.17g",
		      c->label, text, back, c->value);
		CHECK(is_json_number(text), "%s: \"%s\" is not a JSON number", c->label, text);
		if (c->text)
			CHECK(strcmp(text, c->text) == 0, "%s: wrote \"%s\", want \"%s\"", c->label, text, c->text);
		buf_free(&out);
	}
}

static void integral_doubles_print_as_integers(void)
{
	static const struct double_case integral[] = {
		{"0", 0.0, "0"},
		{"1", 1.0, "1"},
		{"-5", -5.0, "-5"},
		{"100", 100.0, "100"},
		{"1e15", 1e15, "1000000000000000"},
		{"1646629200000", 1646629200000.0, "1646629200000"},
		{"2^53-1", 9007199254740991.0, "9007199254740991"},
		{"-(2^53-1)", -9007199254740991.0, "-9007199254740991"},
		{"volume 70494150", 70494150.0, "70494150"},
	};
	for (size_t i = 0; i < COUNT_OF(integral); i++) {
		struct buf out = {0};
		json_write_double(&out, integral[i].value);
		const char *text = buf_cstr(&out);
		CHECK(strcmp(text, integral[i].text) == 0, "%s: wrote \"%s\"", integral[i].label, text);
		CHECK(!strpbrk(text, ".eE"), "%s: \"%s\" has a fraction or an exponent", integral[i].label, text);
		buf_free(&out);
	}
}

static void non_finite_doubles_are_null(void)
{
	const double values[] = {NAN, -NAN, INFINITY, -INFINITY};
	const char *labels[] = {"NaN", "-NaN", "Inf", "-Inf"};
	for (size_t i = 0; i < COUNT_OF(values); i++) {
		struct buf out = {0};
		buf_puts(&out, "x:");
		json_write_double(&out, values[i]);
		CHECK(out.len == 6 && memcmp(out.data, "x:null", 6) == 0, "%s: wrote \"%.*s\"", labels[i], (int)out.len,
		      out.data);
		buf_free(&out);
	}
}

/* ---- json_write_string ---- */

struct string_case {
	const char *label;
	const char *in;
	size_t len;
	const char *want;
	const char *alt; /* another acceptable result (one U+FFFD per bad byte, or per maximal subpart) */
};

#define BYTES(s) s, sizeof(s) - 1

static const struct string_case strings[] = {
	{"plain ASCII", BYTES("hello, world /"), "\"hello, world /\"", NULL},
	{"empty", BYTES(""), "\"\"", NULL},
	{"double quote", BYTES("say \"hi\""), "\"say \\\"hi\\\"\"", NULL},
	{"backslash", BYTES("C:\\dir\\"), "\"C:\\\\dir\\\\\"", NULL},
	{"short escapes", BYTES("\n\r\t\b\f"), "\"\\n\\r\\t\\b\\f\"", NULL},
	{"other control chars", BYTES("\x01\x1f\x0b"), "\"\\u0001\\u001f\\u000b\"", NULL},
	{"DEL passes", BYTES("a\x7f"), "\"a\x7f\"", NULL},
	{"embedded NUL", BYTES("a\0b"), "\"a\\u0000b\"", NULL},
	{"2-byte UTF-8", BYTES("caf\xc3\xa9 \xc2\x80 \xdf\xbf"), "\"caf\xc3\xa9 \xc2\x80 \xdf\xbf\"", NULL},
	{"3-byte UTF-8", BYTES("\xe2\x82\xac \xe0\xa0\x80 \xed\x9f\xbf \xee\x80\x80 \xef\xbf\xbd"),
	 "\"\xe2\x82\xac \xe0\xa0\x80 \xed\x9f\xbf \xee\x80\x80 \xef\xbf\xbd\"", NULL},
	{"4-byte UTF-8", BYTES("\xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf"), "\"\xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf\"", NULL},
	{"invalid byte 0xff",
	 BYTES("a\xff"
	       "b"),
	 "\"a\\ufffdb\"", NULL},
	{"lone continuation byte", BYTES("\x80"), "\"\\ufffd\"", NULL},
	{"overlong 2-byte '/'", BYTES("\xc0\xaf"), "\"\\ufffd\\ufffd\"", NULL},
	{"overlong 2-byte 0xc1", BYTES("\xc1\xbf"), "\"\\ufffd\\ufffd\"", NULL},
	{"overlong 3-byte '/'", BYTES("\xe0\x80\xaf"), "\"\\ufffd\\ufffd\\ufffd\"", NULL},
	{"overlong 4-byte '/'", BYTES("\xf0\x80\x80\xaf"), "\"\\ufffd\\ufffd\\ufffd\\ufffd\"", NULL},
	{"surrogate U+D800", BYTES("\xed\xa0\x80"), "\"\\ufffd\\ufffd\\ufffd\"", NULL},
	{"surrogate U+DFFF", BYTES("x\xed\xbf\xbfy"), "\"x\\ufffd\\ufffd\\ufffdy\"", NULL},
	{"above U+10FFFF", BYTES("\xf4\x90\x80\x80"), "\"\\ufffd\\ufffd\\ufffd\\ufffd\"", NULL},
	{"0xf5 lead", BYTES("\xf5\x80"), "\"\\ufffd\\ufffd\"", NULL},
	{"truncated at the end", BYTES("a\xe2\x82"), "\"a\\ufffd\\ufffd\"", "\"a\\ufffd\""},
	{"truncated before ASCII",
	 BYTES("\xe2\x82"
	       "A"),
	 "\"\\ufffd\\ufffdA\"", "\"\\ufffdA\""},
	{"lead byte before ASCII",
	 BYTES("\xf0"
	       "AB"),
	 "\"\\ufffdAB\"", NULL},
	{"valid after invalid", BYTES("\xff\xc3\xa9"), "\"\\ufffd\xc3\xa9\"", NULL},
};

static void string_escaping(void)
{
	for (size_t i = 0; i < COUNT_OF(strings); i++) {
		const struct string_case *c = &strings[i];
		struct buf out = {0};
		json_write_string(&out, c->in, c->len);
		int matches = out.len == strlen(c->want) && memcmp(out.data, c->want, out.len) == 0;
		if (!matches && c->alt)
			matches = out.len == strlen(c->alt) && memcmp(out.data, c->alt, out.len) == 0;
		if (!matches)
			test_check_bytes(out.data, out.len, c->want, strlen(c->want), __FILE__, __LINE__, c->label);
		CHECK(is_valid_utf8((const unsigned char *)out.data, out.len), "%s: output is not valid UTF-8",
		      c->label);
		int raw_control = 0;
		for (size_t k = 0; k < out.len; k++)
			raw_control |= (unsigned char)out.data[k] < 0x20;
		CHECK(!raw_control, "%s: a raw control byte reached the output", c->label);
		buf_free(&out);
	}
}

static void string_appends(void)
{
	struct buf out = {0};
	buf_puts(&out, "{\"k\":");
	json_write_string(&out, "v", 1);
	buf_putc(&out, '}');
	CHECK_BUF(&out, "{\"k\":\"v\"}", "appended literal");
	buf_free(&out);
}

/* ---- json_encode ---- */

struct encode_case {
	const char *chunk; /* Lua returning the value */
	const char *want;
};

static void run_encode_cases(const struct encode_case *cases, size_t count)
{
	lua_State *L = test_lua_open();
	if (!L)
		return;
	for (size_t i = 0; i < count; i++) {
		int top = lua_gettop(L);
		test_push_lua(L, cases[i].chunk);
		struct buf out = {0};
		char err[128];
		int rc = test_encode(L, -1, &out, err, sizeof err);
		if (CHECK(rc == 0, "%s: json_encode failed: %s", cases[i].chunk, err))
			test_check_bytes(out.data, out.len, cases[i].want, strlen(cases[i].want), __FILE__, __LINE__,
					 cases[i].chunk);
		CHECK(lua_gettop(L) == top + 1, "%s: json_encode moved the stack top", cases[i].chunk);
		lua_settop(L, top);
		buf_free(&out);
	}
	test_lua_close(L);
}

static void encode_scalars(void)
{
	static const struct encode_case cases[] = {
		{"return nil", "null"},
		{"return json.null", "null"},
		{"return true", "true"},
		{"return false", "false"},
		{"return 42", "42"},
		{"return -7", "-7"},
		{"return math.mininteger", "-9223372036854775808"},
		{"return math.maxinteger", "9223372036854775807"},
		{"return 0.5", "0.5"},
		{"return 3.0", "3"},
		{"return 804.58", "804.58"},
		{"return 'a\"b\\n'", "\"a\\\"b\\n\""},
		{"return 0/0", "null"},
		{"return -math.huge", "null"},
	};
	run_encode_cases(cases, COUNT_OF(cases));
}

static void encode_big_integers_exactly(void)
{
	lua_State *L = test_lua_open();
	if (!L)
		return;
	static const struct {
		lua_Integer value;
		const char *text;
	} cases[] = {
		{9007199254740993LL, "9007199254740993"},
		{9007199254740995LL, "9007199254740995"},
		{-9007199254740993LL, "-9007199254740993"},
		{1646629200000123LL, "1646629200000123"},
	};
	for (size_t i = 0; i < COUNT_OF(cases); i++) {
		struct buf out = {0};
		char err[128];
		lua_pushinteger(L, cases[i].value);
		if (CHECK(test_encode(L, -1, &out, err, sizeof err) == 0, "json_encode failed: %s", err))
			test_check_bytes(out.data, out.len, cases[i].text, strlen(cases[i].text), __FILE__, __LINE__,
					 "integer");
		lua_pop(L, 1);
		buf_free(&out);
	}
	test_lua_close(L);
}

static void encode_nested_tables(void)
{
	static const struct encode_case cases[] = {
		{"return {a = {b = {1, 2, {c = true}}}}", "{\"a\":{\"b\":[1,2,{\"c\":true}]}}"},
		{"return {{1}, {{2}}, {}}", "[[1],[[2]],{}]"},
		{"return {['we\"ird'] = {x = 'y'}}", "{\"we\\\"ird\":{\"x\":\"y\"}}"},
		{"return {t = 1646629200000.0}", "{\"t\":1646629200000}"},
	};
	run_encode_cases(cases, COUNT_OF(cases));
}

/* Members come out in byte order of their names, whatever order the table holds them in. */
static void encode_members_in_name_order(void)
{
	static const struct encode_case cases[] = {
		{"return {zeta = 1, alpha = 2, Beta = 3, ['a b'] = 4, ['\\u{e9}'] = 5, [''] = 6}",
		 "{\"\":6,\"Beta\":3,\"a b\":4,\"alpha\":2,\"zeta\":1,\"\xc3\xa9\":5}"},
		{"local t = {} for i = 50, 1, -1 do t['k' .. i] = i end t.k1 = nil return t",
		 "{\"k10\":10,\"k11\":11,\"k12\":12,\"k13\":13,\"k14\":14,\"k15\":15,\"k16\":16,\"k17\":17,"
		 "\"k18\":18,\"k19\":19,\"k2\":2,\"k20\":20,\"k21\":21,\"k22\":22,\"k23\":23,\"k24\":24,"
		 "\"k25\":25,\"k26\":26,\"k27\":27,\"k28\":28,\"k29\":29,\"k3\":3,\"k30\":30,\"k31\":31,"
		 "\"k32\":32,\"k33\":33,\"k34\":34,\"k35\":35,\"k36\":36,\"k37\":37,\"k38\":38,\"k39\":39,"
		 "\"k4\":4,\"k40\":40,\"k41\":41,\"k42\":42,\"k43\":43,\"k44\":44,\"k45\":45,\"k46\":46,"
		 "\"k47\":47,\"k48\":48,\"k49\":49,\"k5\":5,\"k50\":50,\"k6\":6,\"k7\":7,\"k8\":8,\"k9\":9}"},
		/* number keys sort by the text they are written as */
		{"return {[10] = 'a', [2] = 'b', [1.5] = 'c', x = 'd'}",
		 "{\"1.5\":\"c\",\"10\":\"a\",\"2\":\"b\",\"x\":\"d\"}"},
		{"return {b = {d = 1, c = 2}, a = {}}", "{\"a\":{},\"b\":{\"c\":2,\"d\":1}}"},
	};
	run_encode_cases(cases, COUNT_OF(cases));
}

static void encode_sequences_as_arrays(void)
{
	static const struct encode_case cases[] = {
		{"return {1, 'two', 3.5, false}", "[1,\"two\",3.5,false]"},
		{"return {json.null, json.null}", "[null,null]"},
		{"return {0/0, math.huge}", "[null,null]"},
		{"local t = {} for i = 1, 20 do t[i] = i * i end return t",
		 "[1,4,9,16,25,36,49,64,81,100,121,144,169,196,225,256,289,324,361,400]"},
	};
	run_encode_cases(cases, COUNT_OF(cases));
}

static void encode_empty_tables(void)
{
	static const struct encode_case cases[] = {
		{"return json.array()", "[]"},
		{"return json.array({})", "[]"},
		{"return json.array(nil)", "[]"},
		{"return {a = json.object(nil)}", "{\"a\":{}}"},
		{"return {list = json.array()}", "{\"list\":[]}"},
		{"return json.array({json.array(), {}})", "[[],{}]"},
		{"return json.array({1, 2})", "[1,2]"},
		{"return {}", "{}"},
		{"return json.object()", "{}"},
		{"return json.object(json.array())", "{}"},
		{"return {obj = {}}", "{\"obj\":{}}"},
	};
	run_encode_cases(cases, COUNT_OF(cases));
}

static void encode_marked_from_c(void)
{
	lua_State *L = test_lua_open();
	if (!L)
		return;
	struct buf out = {0};
	char err[128];
	lua_newtable(L);
	json_mark_array(L, -1);
	if (CHECK(test_encode(L, -1, &out, err, sizeof err) == 0, "json_encode failed: %s", err))
		CHECK_BUF(&out, "[]", "json_mark_array on an empty table");
	buf_clear(&out);
	lua_newtable(L);
	if (CHECK(test_encode(L, -1, &out, err, sizeof err) == 0, "json_encode failed: %s", err))
		CHECK_BUF(&out, "{}", "an unmarked empty table");
	lua_pop(L, 2);
	buf_free(&out);
	test_lua_close(L);
}

/* Objects come out in hash order: check the members and that nothing else is there. */
struct object_case {
	const char *chunk;
	const char *members[4];
};

static void run_object_cases(const struct object_case *cases, size_t count)
{
	lua_State *L = test_lua_open();
	if (!L)
		return;
	for (size_t i = 0; i < count; i++) {
		struct buf out = {0};
		char err[128];
		test_push_lua(L, cases[i].chunk);
		if (CHECK(test_encode(L, -1, &out, err, sizeof err) == 0, "%s: json_encode failed: %s", cases[i].chunk,
			  err)) {
			const char *text = buf_cstr(&out);
			size_t expected = 2;
			size_t n = 0;
			for (; n < 4 && cases[i].members[n]; n++) {
				expected += strlen(cases[i].members[n]) + (n ? 1 : 0);
				CHECK_CONTAINS(text, cases[i].members[n], cases[i].chunk);
			}
			CHECK(text[0] == '{' && text[out.len - 1] == '}' && out.len == expected,
			      "%s: \"%s\" is not an object of exactly %zu members", cases[i].chunk, text, n);
		}
		lua_pop(L, 1);
		buf_free(&out);
	}
	test_lua_close(L);
}

static void encode_mixed_keys_as_object(void)
{
	static const struct object_case cases[] = {
		{"return {10, 20, x = 1}", {"\"1\":10", "\"2\":20", "\"x\":1", NULL}},
		{"return {[1] = 'a', [3] = 'c'}", {"\"1\":\"a\"", "\"3\":\"c\"", NULL}},
		{"return {[0] = 'z', 'a'}", {"\"0\":\"z\"", "\"1\":\"a\"", NULL}},
		{"return {[-1] = true}", {"\"-1\":true", NULL}},
		{"return {[1.5] = true}", {"\"1.5\":true", NULL}},
		{"return {date = '2022-03-07', price = 131.6292, list = json.array()}",
		 {"\"date\":\"2022-03-07\"", "\"price\":131.6292", "\"list\":[]", NULL}},
	};
	run_object_cases(cases, COUNT_OF(cases));
}

struct failing_case {
	const char *chunk;
	const char *reason; /* a word the error must contain */
};

static void encode_errors_leave_output_untouched(void)
{
	static const struct failing_case cases[] = {
		{"local t = {} t.self = t return t", "nested"},
		{"local t = {} t[1] = t return t", "nested"},
		{"local a, b = {}, {} a.b = b b.a = a return {root = a}", "nested"},
		{"return print", "function"},
		{"return {a = {1, 2, print}}", "function"},
		{"return {f = function() end, x = 1}", "function"},
		{"return coroutine.create(print)", "thread"},
		{"return {[true] = 1}", "key"},
		{"return {[{}] = 1}", "key"},
	};
	lua_State *L = test_lua_open();
	if (!L)
		return;
	for (size_t i = 0; i < COUNT_OF(cases); i++) {
		struct buf out = {0};
		char err[128];
		buf_puts(&out, "prefix");
		test_push_lua(L, cases[i].chunk);
		int top = lua_gettop(L);
		int rc = test_encode(L, -1, &out, err, sizeof err);
		CHECK(rc == -1, "%s: json_encode returned %d", cases[i].chunk, rc);
		CHECK(out.len == 6 && memcmp(out.data, "prefix", 6) == 0, "%s: output changed to \"%.40s\"",
		      cases[i].chunk, buf_cstr(&out));
		CHECK(rc == 0 || strstr(err, cases[i].reason), "%s: reason \"%s\" does not mention %s", cases[i].chunk,
		      err, cases[i].reason);
		CHECK(lua_gettop(L) == top, "%s: stack top %d, was %d", cases[i].chunk, lua_gettop(L), top);
		lua_settop(L, 0);
		buf_free(&out);
	}
	test_lua_close(L);
}

static void encode_deep_nesting(void)
{
	lua_State *L = test_lua_open();
	if (!L)
		return;
	struct buf out = {0};
	char err[128];
	test_push_lua(L, "local t = {} local cur = t for i = 1, 100 do cur.n = {} cur = cur.n end return t");
	if (CHECK(test_encode(L, -1, &out, err, sizeof err) == 0, "100 levels: %s", err))
		CHECK(out.len == 100 * strlen("{\"n\":") + 2 + 100, "100 levels: %zu bytes", out.len);
	lua_pop(L, 1);
	buf_clear(&out);
	test_push_lua(L, "local t = {} local cur = t for i = 1, 100000 do cur[1] = {} cur = cur[1] end return t");
	CHECK(test_encode(L, -1, &out, err, sizeof err) == -1 && out.len == 0, "100000 levels were not refused");
	lua_pop(L, 1);
	buf_free(&out);
	test_lua_close(L);
}

/* What the decoder reads at the depth limit the writer writes back; one level more is too deep
 * for both, and the decoder says so rather than "not JSON". */
static void deepest_json_round_trips(void)
{
	lua_State *L = test_lua_open();
	if (!L)
		return;
	struct buf text = {0}, out = {0};
	char err[128];
	for (int i = 0; i < JSON_MAX_DEPTH; i++)
		buf_putc(&text, '[');
	for (int i = 0; i < JSON_MAX_DEPTH; i++)
		buf_putc(&text, ']');
	CHECK(json_decode_push(L, text.data, text.len) == JSON_DECODED, "%d levels: %s", JSON_MAX_DEPTH,
	      lua_tostring(L, -1));
	lua_pop(L, 1);
	if (CHECK(test_encode(L, -1, &out, err, sizeof err) == 0, "%d levels: %s", JSON_MAX_DEPTH, err))
		CHECK(out.len == text.len && !memcmp(out.data, text.data, text.len), "%d levels came back as %.40s...",
		      JSON_MAX_DEPTH, buf_cstr(&out));
	lua_settop(L, 0);
	buf_clear(&text);
	for (int i = 0; i <= JSON_MAX_DEPTH; i++)
		buf_puts(&text, "{\"a\":");
	buf_puts(&text, "1");
	for (int i = 0; i <= JSON_MAX_DEPTH; i++)
		buf_putc(&text, '}');
	CHECK(json_decode_push(L, text.data, text.len) == JSON_TOO_DEEP, "%d levels were not too deep",
	      JSON_MAX_DEPTH + 1);
	CHECK(lua_isstring(L, -1) && strstr(lua_tostring(L, -1), "nested deeper than 1000 levels"), "the reason: %s",
	      lua_tostring(L, -1));
	lua_settop(L, 0);
	test_push_lua(L, "local t = {} local cur = t for i = 1, 1000 do cur[1] = {} cur = cur[1] end return t");
	CHECK(test_encode(L, -1, &out, err, sizeof err) == -1 && strstr(err, "nested deeper than 1000 levels"),
	      "1001 levels of tables were written (%s)", err);
	buf_free(&text);
	buf_free(&out);
	test_lua_close(L);
}

static void encode_runs_no_metamethods(void)
{
	static const struct encode_case cases[] = {
		{"return setmetatable({a = 1}, {__index = function() error('index') end, "
		 "__pairs = function() error('pairs') end, __len = function() error('len') end})",
		 "{\"a\":1}"},
		{"return setmetatable({1, 2}, {__index = function() error('index') end})", "[1,2]"},
	};
	run_encode_cases(cases, COUNT_OF(cases));
}

static void lua_encode_raises_with_reason(void)
{
	lua_State *L = test_lua_open();
	if (!L)
		return;
	int status = luaL_loadstring(L, "return json.encode({f = print})");
	if (status == LUA_OK)
		status = lua_pcall(L, 0, 1, 0);
	CHECK(status == LUA_ERRRUN, "json.encode of a function did not raise (status %d)", status);
	if (status == LUA_ERRRUN)
		CHECK_CONTAINS(lua_tostring(L, -1), "json.encode", "error message");
	lua_settop(L, 0);
	test_lua_close(L);
}

/* ---- decode -> encode ---- */

static void run_round_trips(const struct encode_case *cases, size_t count)
{
	lua_State *L = test_lua_open();
	if (!L)
		return;
	for (size_t i = 0; i < count; i++) {
		const char *in = cases[i].chunk;
		int top = lua_gettop(L);
		json_decode_push(L, in, strlen(in));
		CHECK(lua_gettop(L) == top + 2, "%s: json_decode_push pushed %d values", in, lua_gettop(L) - top);
		if (CHECK(!lua_isnil(L, -2) || lua_isnil(L, -1), "%s: decode failed: %s", in, lua_tostring(L, -1))) {
			struct buf out = {0};
			char err[128];
			if (CHECK(test_encode(L, -2, &out, err, sizeof err) == 0, "%s: encode failed: %s", in, err))
				test_check_bytes(out.data, out.len, cases[i].want, strlen(cases[i].want), __FILE__,
						 __LINE__, in);
			buf_free(&out);
		}
		lua_settop(L, top);
	}
	test_lua_close(L);
}

static void round_trip_empty_arrays(void)
{
	static const struct encode_case cases[] = {
		{"[]", "[]"},
		{"[ ]", "[]"},
		{"[\n\t\r ]", "[]"},
		{"{\"a\":[]}", "{\"a\":[]}"},
		{"{\"b\":[[]]}", "{\"b\":[[]]}"},
		{"[[],{}]", "[[],{}]"},
		{"[[[]]]", "[[[]]]"},
		{"[{\"a\":[ ]}]", "[{\"a\":[]}]"},
		{"{}", "{}"},
	};
	run_round_trips(cases, COUNT_OF(cases));
}

static void round_trip_two_keys(void)
{
	static const char *const inputs[] = {"{\"a\":[],\"b\":[[]]}", "{ \"b\" : [ [ ] ] , \"a\" : [ ] }"};
	lua_State *L = test_lua_open();
	if (!L)
		return;
	for (size_t i = 0; i < COUNT_OF(inputs); i++) {
		struct buf out = {0};
		char err[128];
		test_push_json(L, inputs[i]);
		if (CHECK(test_encode(L, -1, &out, err, sizeof err) == 0, "%s: %s", inputs[i], err)) {
			const char *text = buf_cstr(&out);
			int ok = !strcmp(text, "{\"a\":[],\"b\":[[]]}") || !strcmp(text, "{\"b\":[[]],\"a\":[]}");
			CHECK(ok, "%s came back as %s", inputs[i], text);
		}
		lua_pop(L, 1);
		buf_free(&out);
	}
	test_lua_close(L);
}

static void round_trip_brackets_in_strings(void)
{
	static const struct encode_case cases[] = {
		{"\"[]\"", "\"[]\""},
		{"[\"[]\",[]]", "[\"[]\",[]]"},
		{"{\"a\":\"x[ ]y\"}", "{\"a\":\"x[ ]y\"}"},
		{"[\"\\\\\",[]]", "[\"\\\\\",[]]"},
		{"[\"\\\"[]\",[]]", "[\"\\\"[]\",[]]"},
	};
	run_round_trips(cases, COUNT_OF(cases));
}

static void round_trip_numbers(void)
{
	static const struct encode_case cases[] = {
		{"[0.1,804.58,131.6292,1646629200000,-3,0,-0.001]", "[0.1,804.58,131.6292,1646629200000,-3,0,-0.001]"},
		{"[1e+21,123456789.12345679,9007199254740992]", "[1e+21,123456789.12345679,9007199254740992]"},
		{"[1.7976931348623157e+308,-0]", "[1.7976931348623157e+308,-0]"},
		{"[true,false,null]", "[true,false,null]"},
	};
	run_round_trips(cases, COUNT_OF(cases));
}

static void round_trip_unicode_escapes(void)
{
	static const struct encode_case cases[] = {
		{"[\"\\u00e9\\u20ac\\ud83d\\ude00\"]", "[\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"]"},
		{"[\"\\u0001\\u001f\\u0000x\"]", "[\"\\u0001\\u001f\\u0000x\"]"},
		{"[\"\\/\\b\\f\\n\\r\\t\"]", "[\"/\\b\\f\\n\\r\\t\"]"},
		{"[\"caf\xc3\xa9\"]", "[\"caf\xc3\xa9\"]"},
	};
	run_round_trips(cases, COUNT_OF(cases));
}

static void round_trip_sentinel_lookalike(void)
{
	/* The string an earlier decoder used as its stand-in for [] must come back as itself. */
	static const struct encode_case cases[] = {
		{"[[],[\"\\u0000source-lua-empty-array\"]]", "[[],[\"\\u0000source-lua-empty-array\"]]"},
	};
	run_round_trips(cases, COUNT_OF(cases));
}

static void decode_rejects_bad_text(void)
{
	static const char *const bad[] =
		{
			"[1,2",
			"{\"a\":}",
			"[NaN]",
			"[Infinity]",
			"[0x10]",
			"nul",
			"[1,]",
			"01",
			"1.",
			".5",
			"1e",
			"-",
			"[\"\\ud800\"]",
			"[\"\\udc00\"]",
			"\"\\x\"",
			"\"a\tb\"",
			"{1:2}",
			"[1] 2",
			"",
			"  ",
			"\"abc\\",
			"[\"a\\", /* a backslash that is the text's last byte */
		};
	lua_State *L = test_lua_open();
	if (!L)
		return;
	for (size_t i = 0; i < COUNT_OF(bad); i++) {
		int top = lua_gettop(L);
		json_decode_push(L, bad[i], strlen(bad[i]));
		CHECK(lua_gettop(L) == top + 2, "%s: pushed %d values", bad[i], lua_gettop(L) - top);
		CHECK(lua_isnil(L, -2) && lua_type(L, -1) == LUA_TSTRING, "%s was accepted", bad[i]);
		lua_settop(L, top);
	}
	test_lua_close(L);
}

static void decode_null_is_json_null(void)
{
	lua_State *L = test_lua_open();
	if (!L)
		return;
	test_push_json(L, "null");
	CHECK(lua_type(L, -1) == LUA_TLIGHTUSERDATA && lua_touserdata(L, -1) == NULL, "null decoded as a %s",
	      luaL_typename(L, -1));
	lua_settop(L, 0);
	test_push_lua(L, "return json.decode('{\"a\":null}').a == json.null");
	CHECK(lua_toboolean(L, -1), "json.decode(...).a is not json.null");
	lua_settop(L, 0);
	test_lua_close(L);
}

/* Integers stay integers (ids past 2^53 exactly), anything with a point or an exponent is a float. */
static void decode_numbers_keep_their_kind(void)
{
	static const struct {
		const char *text;
		const char *check; /* a Lua expression on v, the decoded value, that must be true */
	} cases[] = {
		{"9007199254740993", "math.type(v) == 'integer' and v == 9007199254740993"},
		{"-9223372036854775808", "v == math.mininteger"},
		{"9223372036854775807", "v == math.maxinteger"},
		{"9223372036854775808", "math.type(v) == 'float'"},
		{"100", "math.type(v) == 'integer' and tostring(v) == '100'"},
		{"1.0", "math.type(v) == 'float'"},
		{"1e2", "math.type(v) == 'float' and v == 100"},
		{"-0", "math.type(v) == 'float' and 1 / v < 0"},
		{"1e400", "v == math.huge"},
		{"[]", "json.encode(v) == '[]'"},
		{"{}", "json.encode(v) == '{}'"},
		{"\"\\ud83d\\ude00\"", "v == '\\u{1F600}'"},
		{"{\"a\":1,\"a\":2}", "v.a == 2"},
	};
	lua_State *L = test_lua_open();
	if (!L)
		return;
	for (size_t i = 0; i < COUNT_OF(cases); i++) {
		char chunk[300];
		snprintf(chunk, sizeof chunk, "local v = json.decode(%s) return %s", "...", cases[i].check);
		lua_settop(L, 0);
		if (luaL_loadstring(L, chunk) != LUA_OK) {
			CHECK(0, "%s: %s", cases[i].text, lua_tostring(L, -1));
			continue;
		}
		lua_pushstring(L, cases[i].text);
		if (CHECK(lua_pcall(L, 1, 1, 0) == LUA_OK, "%s: %s", cases[i].text, lua_tostring(L, -1)))
			CHECK(lua_toboolean(L, -1), "%s: %s is false", cases[i].text, cases[i].check);
	}
	test_lua_close(L);
}

static const struct test tests[] = {
	{"json_write_double round trips bit-exact", double_round_trips},
	{"json_write_double prints integral values as integers", integral_doubles_print_as_integers},
	{"json_write_double writes NaN and infinities as null", non_finite_doubles_are_null},
	{"json_write_string escapes and repairs UTF-8", string_escaping},
	{"json_write_string appends to the buffer", string_appends},
	{"json_encode scalars", encode_scalars},
	{"json_encode keeps integers above 2^53 exact", encode_big_integers_exactly},
	{"json_encode nested tables", encode_nested_tables},
	{"json_encode writes members in byte order of their names", encode_members_in_name_order},
	{"json_encode sequences as arrays", encode_sequences_as_arrays},
	{"json_encode marked empty tables as [], others as {}", encode_empty_tables},
	{"json_encode json_mark_array from C", encode_marked_from_c},
	{"json_encode mixed and sparse keys as objects", encode_mixed_keys_as_object},
	{"json_encode errors leave the output and stack as they were", encode_errors_leave_output_untouched},
	{"json_encode deep nesting: 100 levels pass, 100000 are refused", encode_deep_nesting},
	{"the deepest JSON read is written back; one level more is too deep, not 'not JSON'", deepest_json_round_trips},
	{"json_encode runs no metamethods", encode_runs_no_metamethods},
	{"json.encode raises with a reason", lua_encode_raises_with_reason},
	{"decode -> encode keeps empty arrays", round_trip_empty_arrays},
	{"decode -> encode of an object with two array members", round_trip_two_keys},
	{"decode -> encode leaves [] inside strings alone", round_trip_brackets_in_strings},
	{"decode -> encode keeps numbers exact", round_trip_numbers},
	{"decode -> encode of unicode escapes", round_trip_unicode_escapes},
	{"decode -> encode keeps a string equal to the empty-array sentinel", round_trip_sentinel_lookalike},
	{"json_decode_push rejects bad text with nil, message", decode_rejects_bad_text},
	{"json_decode_push gives json.null for null", decode_null_is_json_null},
	{"json_decode_push keeps integers integers, exactly", decode_numbers_keep_their_kind},
};

const struct suite json_suite = {"json", tests, COUNT_OF(tests), NULL, NULL, NULL};
