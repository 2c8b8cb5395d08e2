/*
 * fuzz_json: decoding with json_decode_push, then the writer's round trip. For any text that
 * decodes, json_encode must succeed, its output must decode again, and encoding that second value
 * must give the same text: the writer is a fixed point after one pass (exact numbers, empty
 * arrays kept, strings escaped the same way). Any violation aborts with both texts.
 *
 * "The same" allows one difference: the order of an object's members. The writer emits them in
 * lua_next order, which depends on the table's insertion history, so a re-decoded object may come
 * out in another order; both texts are compared with their members sorted.
 *
 * FUZZ_LENIENT=1 in the environment tolerates the differences already reported (see
 * regressions/fuzz_json/): "\ufffd" written for invalid UTF-8 where a real U+FFFD is written raw,
 * and distinct keys that become the same key once their invalid bytes are replaced. Use it to
 * look for other bugs while those are open; the smoke runs without it.
 */
#include <stdint.h>
#include <stdlib.h>

#include "buf.h"
#include "fuzz_common.h"
#include "json.h"

static lua_State *shared_state;
static int lenient;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	shared_state = fuzz_open_state();
	lenient = fuzz_lenient();
	return 0;
}

struct fuzz_input {
	const uint8_t *data;
	size_t size;
	struct buf first;
	struct buf second;
	struct buf first_sorted;
	struct buf second_sorted;
};

/* Canonical form of the writer's output: object members sorted by their text. */
struct member {
	char *text; /* "key":value, canonical */
	size_t len;
	size_t key_len;
};

/* Set when an object of the text being canonicalized has two members with the same key. */
static int saw_duplicate_key;

static int member_order(const void *a, const void *b)
{
	const struct member *x = a;
	const struct member *y = b;
	size_t n = x->len < y->len ? x->len : y->len;
	int c = memcmp(x->text, y->text, n);
	return c ? c : (x->len > y->len) - (x->len < y->len);
}

static size_t skip_space(const char *s, size_t len, size_t i)
{
	while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
		i++;
	return i;
}

/* Appends the canonical text of the value at s[i]; returns the index after it. */
static size_t canon_value(const char *s, size_t len, size_t i, struct buf *out)
{
	i = skip_space(s, len, i);
	FUZZ_CHECK(i < len, "%s", "canonical form: text ends inside a value");
	if (s[i] == '"') {
		size_t start = i++;
		while (i < len && s[i] != '"') {
			if (lenient && len - i >= 6 && memcmp(s + i, "\\ufffd", 6) == 0) {
				buf_append(out, s + start, i - start);
				buf_puts(out, "\xef\xbf\xbd");
				i += 6;
				start = i;
				continue;
			}
			i += s[i] == '\\' ? 2 : 1;
		}
		FUZZ_CHECK(i < len, "%s", "canonical form: unterminated string");
		buf_append(out, s + start, ++i - start);
		return i;
	}
	if (s[i] == '[') {
		buf_putc(out, '[');
		i = skip_space(s, len, i + 1);
		if (i < len && s[i] == ']') {
			buf_putc(out, ']');
			return i + 1;
		}
		for (;;) {
			i = skip_space(s, len, canon_value(s, len, i, out));
			FUZZ_CHECK(i < len && (s[i] == ',' || s[i] == ']'), "%s", "canonical form: bad array");
			buf_putc(out, s[i]);
			if (s[i++] == ']')
				return i;
		}
	}
	if (s[i] == '{') {
		struct member *members = NULL;
		size_t count = 0;
		i = skip_space(s, len, i + 1);
		if (i < len && s[i] == '}')
			i++;
		else
			for (;;) {
				struct buf m = {0};
				i = skip_space(s, len, canon_value(s, len, i, &m));
				FUZZ_CHECK(i < len && s[i] == ':', "%s", "canonical form: bad member");
				size_t key_len = m.len;
				buf_putc(&m, ':');
				i = skip_space(s, len, canon_value(s, len, i + 1, &m));
				members = realloc(members, (count + 1) * sizeof *members);
				FUZZ_CHECK(members != NULL, "%s", "out of memory");
				members[count].text = m.data;
				members[count].key_len = key_len;
				members[count++].len = m.len;
				FUZZ_CHECK(i < len && (s[i] == ',' || s[i] == '}'), "%s", "canonical form: bad object");
				if (s[i++] == '}')
					break;
			}
		if (count > 1)
			qsort(members, count, sizeof *members, member_order);
		for (size_t k = 1; k < count; k++)
			if (members[k].key_len == members[k - 1].key_len &&
			    memcmp(members[k].text, members[k - 1].text, members[k].key_len) == 0)
				saw_duplicate_key = 1;
		buf_putc(out, '{');
		for (size_t k = 0; k < count; k++) {
			if (k)
				buf_putc(out, ',');
			buf_append(out, members[k].text, members[k].len);
			free(members[k].text);
		}
		buf_putc(out, '}');
		free(members);
		return i;
	}
	size_t start = i;
	while (i < len && s[i] != ',' && s[i] != ']' && s[i] != '}' && s[i] != ':' && s[i] != ' ')
		i++;
	buf_append(out, s + start, i - start);
	return i;
}

static void canonical(const struct buf *text, struct buf *out)
{
	size_t end = skip_space(text->data, text->len, canon_value(text->data, text->len, 0, out));
	FUZZ_CHECK(end == text->len, "%s", "canonical form: text after the value");
}

/* Prints a text with its non-printable bytes escaped, for the failure report. */
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
	if (in->first.len == in->second.len && memcmp(in->first.data, in->second.data, in->first.len) == 0)
		return 0;
	saw_duplicate_key = 0;
	canonical(&in->first, &in->first_sorted);
	if (lenient && saw_duplicate_key)
		return 0;
	canonical(&in->second, &in->second_sorted);
	if (in->first_sorted.len != in->second_sorted.len ||
	    memcmp(in->first_sorted.data, in->second_sorted.data, in->first_sorted.len) != 0) {
		dump("first ", &in->first);
		dump("second", &in->second);
		FUZZ_CHECK(0, "%s", "encoding is not stable across a decode");
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_input in = {data, size, {0}, {0}, {0}, {0}};
	fuzz_pcall(shared_state, run, &in);
	fuzz_collect(shared_state);
	buf_free(&in.first);
	buf_free(&in.second);
	buf_free(&in.first_sorted);
	buf_free(&in.second_sorted);
	return 0;
}
