/*
 * test_secrets: masking (secrets.c): raw and URL-encoded forms, the longest secret winning, text
 * without secrets left byte for byte, short values ignored. The registry is process-global, so
 * every test starts and ends with secrets_clear(&registry).
 */
#include <string.h>

#include "harness.h"
#include "secrets.h"

static struct secrets registry;

struct mask_case {
	const char *label;
	const char *secrets[3];
	const char *text;
	const char *want;
};

static const struct mask_case mask_cases[] = {
	{"raw secret", {"abc123", NULL}, "token abc123 end", "token **** end"},
	{"secret at both ends", {"abc123", NULL}, "abc123 and abc123", "**** and ****"},
	{"adjacent copies", {"abc123", NULL}, "abc123abc123", "********"},
	{"whole text", {"abc123", NULL}, "abc123", "****"},
	{"overlapping copies", {"aaa", NULL}, "aaaa", "****a"},
	{"URL-encoded form", {"p@ss word/1", NULL}, "GET /?key=p%40ss%20word%2F1&x=1", "GET /?key=****&x=1"},
	{"raw form of a secret with reserved characters", {"p@ss word/1", NULL}, "key=p@ss word/1.", "key=****."},
	{"Bearer header",
	 {"pk_live_123", NULL},
	 "Authorization: Bearer pk_live_123\r\n",
	 "Authorization: Bearer ****\r\n"},
	{"longest wins (shorter added first)", {"abcd", "abcdef", NULL}, "xabcdefx", "x****x"},
	{"longest wins (longer added first)", {"abcdef", "abcd", NULL}, "xabcdefx", "x****x"},
	{"shorter still masked alone", {"abcdef", "abcd", NULL}, "abcd!", "****!"},
	{"no secret in the text", {"abc123", NULL}, "nothing to hide here: abc12 3.", "nothing to hide here: abc12 3."},
	{"prefix a text ends in (a body cut at 300 bytes)", {"abc123", NULL}, "key abc12", "key ****"},
	{"short prefix at the end is kept", {"abc123", NULL}, "x abc", "x abc"},
	{"prefix inside a text is kept", {"abc123", NULL}, "abc12 3", "abc12 3"},
	{"echoed in another case", {"pk_Live_123", NULL}, "bad key PK_LIVE_123!", "bad key ****!"},
	{"percent-encoded in part", {"p@ss/1", NULL}, "?key=p%40ss/1&", "?key=****&"},
	{"percent-encoded in lower-case hex", {"p@ss/1", NULL}, "?key=p%40ss%2f1&", "?key=****&"},
	{"plus for a space", {"a b c d", NULL}, "q=a+b+c+d", "q=****"},
	/* '%' is spelt "%" or "%25": the first must not hide the second */
	{"a '%' percent-encoded", {"ab%41cd", NULL}, "?k=ab%2541cd&", "?k=****&"},
	{"a '%' percent-encoded, and the text it could also start", {"ab%25", NULL}, "k=ab%2525&", "k=****&"},
	{"a backslash JSON-escaped", {"a\\b\\c", NULL}, "\"a\\\\b\\\\c\"", "\"****\""},
	{"a backslash escaped as \\u005c", {"a\\bc", NULL}, "\"a\\u005cbc\"", "\"****\""},
	{"JSON-escaped slash", {"ab/cd", NULL}, "{\"key\":\"ab\\/cd\"}", "{\"key\":\"****\"}"},
	{"JSON \\u escape", {"abcd", NULL}, "\"\\u0061bcd\"", "\"****\""},
	{"empty text", {"abc123", NULL}, "", ""},
	{"every secret, whatever its length", {"ab", "x", NULL}, "ab x ab", "**** **** ****"},
	{"3 bytes is enough", {"abc", NULL}, "xabcx", "x****x"},
	{"no secrets at all", {NULL}, "api_key=abc123", "api_key=abc123"},
};

static void mask(void)
{
	for (size_t i = 0; i < COUNT_OF(mask_cases); i++) {
		const struct mask_case *c = &mask_cases[i];
		secrets_clear(&registry);
		for (size_t k = 0; k < COUNT_OF(c->secrets) && c->secrets[k]; k++)
			secrets_add(&registry, c->secrets[k]);
		struct buf out = {0};
		buf_puts(&out, "|");
		secrets_mask_into(&registry, &out, c->text, strlen(c->text));
		CHECK(out.len >= 1 && out.data[0] == '|', "%s: the buffer's earlier content was changed", c->label);
		if (out.len >= 1)
			test_check_bytes(out.data + 1, out.len - 1, c->want, strlen(c->want), __FILE__, __LINE__,
					 c->label);
		buf_free(&out);
	}
	secrets_clear(&registry);
}

/* len, not strlen: bytes after a NUL are masked too. */
static void mask_respects_length(void)
{
	static const char text[] = "a\0abc123\0z";
	secrets_clear(&registry);
	secrets_add(&registry, "abc123");
	struct buf out = {0};
	secrets_mask_into(&registry, &out, text, sizeof text - 1);
	test_check_bytes(out.data, out.len, "a\0****\0z", 8, __FILE__, __LINE__, "text with NULs");
	buf_clear(&out);
	secrets_mask_into(&registry, &out, text, 5); /* "a\0abc": the secret is cut off, so nothing is masked */
	test_check_bytes(out.data, out.len, "a\0abc", 5, __FILE__, __LINE__, "secret past len");
	buf_free(&out);
	secrets_clear(&registry);
}

static void clear_forgets(void)
{
	secrets_clear(&registry);
	secrets_add(&registry, "forget-me");
	secrets_clear(&registry);
	struct buf out = {0};
	secrets_mask_into(&registry, &out, "forget-me", 9);
	CHECK_BUF(&out, "forget-me", "after secrets_clear");
	buf_free(&out);
}

static void duplicates_are_harmless(void)
{
	secrets_clear(&registry);
	for (int i = 0; i < 200; i++)
		secrets_add(&registry, "same-secret");
	secrets_add(&registry, "other-secret");
	struct buf out = {0};
	const char *text = "same-secret other-secret";
	secrets_mask_into(&registry, &out, text, strlen(text));
	CHECK_BUF(&out, "**** ****", "a secret added 200 times, then another");
	buf_free(&out);
	secrets_clear(&registry);
}

static const struct test tests[] = {
	{"secrets_mask_into masks raw and URL-encoded forms, longest first", mask},
	{"secrets_mask_into masks by length, across NULs", mask_respects_length},
	{"secrets_clear forgets every secret", clear_forgets},
	{"adding a secret again does not crowd out others", duplicates_are_harmless},
};

const struct suite secrets_suite = {"secrets", tests, COUNT_OF(tests), NULL, NULL, NULL};
