/* test_buf: the growable byte buffer (buf.c): appends, formatting, NUL termination, growth, reuse. */
#include <stdint.h>
#include <string.h>

#include "buf.h"
#include "harness.h"

static void appends_in_order(void)
{
	struct buf b = {0};
	buf_puts(&b, "ab");
	buf_putc(&b, 'c');
	buf_append(&b, "def", 2);
	buf_printf(&b, "[%d|%s|%05.1f]", -42, "x", 2.5);
	CHECK_BUF(&b, "abcde[-42|x|002.5]", "content");
	buf_free(&b);
}

static void cstr_terminates_without_counting(void)
{
	struct buf b = {0};
	CHECK_STR(buf_cstr(&b), "", "empty buffer");
	CHECK(b.len == 0, "len of an empty buffer after buf_cstr is %zu", b.len);
	buf_puts(&b, "hello");
	const char *s = buf_cstr(&b);
	CHECK(b.len == 5, "len counts the terminator: %zu", b.len);
	CHECK(s == b.data && s[5] == '\0', "buf_cstr does not terminate data in place");
	buf_putc(&b, '!');
	CHECK_STR(buf_cstr(&b), "hello!", "append after buf_cstr");
	buf_free(&b);
}

static void binary_bytes_survive(void)
{
	static const char bytes[] = {'a', '\0', 'b', '\xff', '\0'};
	struct buf b = {0};
	buf_append(&b, bytes, sizeof bytes);
	buf_append(&b, bytes, sizeof bytes);
	CHECK(b.len == 2 * sizeof bytes, "len %zu", b.len);
	CHECK(memcmp(b.data, bytes, sizeof bytes) == 0 && memcmp(b.data + sizeof bytes, bytes, sizeof bytes) == 0,
	      "embedded NULs or high bytes were not copied as they are");
	buf_free(&b);
}

static void grows_across_many_appends(void)
{
	struct buf b = {0};
	int ok = 1;
	for (int i = 0; i < 100000; i++)
		buf_putc(&b, (char)('a' + i % 26));
	CHECK(b.len == 100000, "len %zu after 100000 bytes", b.len);
	CHECK(b.cap > b.len, "cap %zu leaves no room for the terminator", b.cap);
	for (size_t i = 0; i < b.len && ok; i++)
		ok = CHECK(b.data[i] == (char)('a' + i % 26), "byte %zu is '%c'", i, b.data[i]);
	buf_free(&b);
}

static void printf_longer_than_first_block(void)
{
	char big[1000];
	memset(big, 'x', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	struct buf b = {0};
	buf_puts(&b, "<");
	buf_printf(&b, "%s|%lld", big, (long long)INT64_MIN);
	CHECK(b.len == 1 + 999 + 1 + 20, "len %zu", b.len);
	CHECK(b.data[0] == '<' && b.data[1] == 'x' && b.data[999] == 'x' && b.data[1000] == '|',
	      "printf output misplaced");
	CHECK(memcmp(b.data + 1001, "-9223372036854775808", 20) == 0, "number tail wrong");
	CHECK(strlen(buf_cstr(&b)) == b.len, "terminator misplaced");
	buf_free(&b);
}

static void printf_empty_result(void)
{
	struct buf b = {0};
	buf_puts(&b, "k");
	buf_printf(&b, "%s", "");
	CHECK_BUF(&b, "k", "empty format result");
	buf_free(&b);
}

static void reserve_keeps_room(void)
{
	/* Sizes where doubling from 256 lands exactly on len + extra: the NUL must still fit. */
	static const size_t extras[] = {0, 1, 253, 255, 256, 509, 512, 1021, 4096};
	for (size_t start = 0; start <= 3; start += 3) {
		for (size_t i = 0; i < COUNT_OF(extras); i++) {
			struct buf e = {0};
			buf_append(&e, "abc", start);
			buf_reserve(&e, extras[i]);
			CHECK(e.cap - e.len > extras[i], "len %zu, reserve(%zu): cap %zu has no room for the NUL",
			      start, extras[i], e.cap);
			buf_free(&e);
		}
	}
	struct buf b = {0};
	buf_puts(&b, "abc");
	buf_reserve(&b, 5000);
	CHECK(b.cap - b.len > 5000, "reserve(5000) left cap %zu for len %zu", b.cap, b.len);
	const char *before = b.data;
	char block[5000];
	memset(block, 'q', sizeof block);
	buf_append(&b, block, sizeof block);
	buf_cstr(&b);
	CHECK(b.data == before, "appending the reserved bytes and a terminator reallocated");
	CHECK(b.len == 5003 && memcmp(b.data, "abcq", 4) == 0, "content after reserve");
	buf_free(&b);
}

static void clear_keeps_capacity(void)
{
	struct buf b = {0};
	buf_puts(&b, "some text that is long enough");
	size_t cap = b.cap;
	char *data = b.data;
	buf_clear(&b);
	CHECK(b.len == 0 && b.cap == cap && b.data == data, "clear changed cap or data");
	buf_puts(&b, "new");
	CHECK_STR(buf_cstr(&b), "new", "write after clear");
	buf_free(&b);
}

static void free_resets_and_reuse(void)
{
	struct buf b = {0};
	buf_puts(&b, "x");
	buf_free(&b);
	CHECK(b.data == NULL && b.len == 0 && b.cap == 0, "free left data %p len %zu cap %zu", (void *)b.data, b.len,
	      b.cap);
	buf_free(&b);
	buf_puts(&b, "again");
	CHECK_BUF(&b, "again", "reuse after free");
	buf_free(&b);
}

static const struct test tests[] = {
	{"appends, putc and printf in order", appends_in_order},
	{"buf_cstr terminates without counting the NUL", cstr_terminates_without_counting},
	{"binary bytes and NULs are kept", binary_bytes_survive},
	{"grows across 100000 single-byte appends", grows_across_many_appends},
	{"buf_printf longer than the first block", printf_longer_than_first_block},
	{"buf_printf of an empty result", printf_empty_result},
	{"buf_reserve leaves room for the bytes and a NUL", reserve_keeps_room},
	{"buf_clear keeps the capacity", clear_keeps_capacity},
	{"buf_free resets; the buffer is reusable", free_resets_and_reuse},
};

const struct suite buf_suite = {"buf", tests, COUNT_OF(tests), NULL, NULL, NULL};
