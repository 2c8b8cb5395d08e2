/* test_url: the one editor of URL queries (http_url_with_pairs) and the cassette's scrubbing of
 * secrets (cassette_scrub): pure text functions. */
#include <string.h>

#include "cassette.h"
#include "harness.h"
#include "http.h"
#include "secrets.h"

static void check_pairs(const char *url, const char *pairs, const char *replaced, const char *want)
{
	struct buf out = {0};
	http_url_with_pairs(&out, url, pairs, replaced);
	CHECK_BUF(&out, want, url);
	buf_free(&out);
}

static void pairs_are_appended_before_the_fragment(void)
{
	check_pairs("https://a/x", "p=1", NULL, "https://a/x?p=1");
	check_pairs("https://a/x?", "p=1", NULL, "https://a/x?p=1");
	check_pairs("https://a/x?a=1", "p=1&q=2", NULL, "https://a/x?a=1&p=1&q=2");
	check_pairs("https://a/x?a=1#top", "p=1", NULL, "https://a/x?a=1&p=1#top");
	check_pairs("https://a/x#frag?not=query", "p=1", NULL, "https://a/x?p=1#frag?not=query");
	check_pairs("https://a/x?a=1", "", NULL, "https://a/x?a=1");
	check_pairs("https://a/x?a=1&&b=2&", "", NULL, "https://a/x?a=1&b=2");
}

static void a_replaced_parameter_goes_wherever_it_was(void)
{
	check_pairs("https://a/x?offset=0&limit=2", "offset=4", "offset", "https://a/x?limit=2&offset=4");
	check_pairs("https://a/x?offsetx=1&offset&offset=3", "offset=4", "offset", "https://a/x?offsetx=1&offset=4");
	check_pairs("https://a/x?page=2#f", "page=3", "page", "https://a/x?page=3#f");
}

static void has_param_sees_only_the_query(void)
{
	CHECK(http_url_has_param("https://a/x?apiKey=1&b=2", "apiKey"), "apiKey first");
	CHECK(http_url_has_param("https://a/x?b=2&apiKey", "apiKey"), "apiKey without a value");
	CHECK(!http_url_has_param("https://a/x?apiKeys=1", "apiKey"), "a longer name");
	CHECK(!http_url_has_param("https://a/x#?apiKey=1", "apiKey"), "in the fragment");
	CHECK(!http_url_has_param("https://a/apiKey=1", "apiKey"), "in the path");
}

static void scrub(const struct secrets *s, const char *text, const char *want)
{
	struct buf out = {0};
	cassette_scrub(s, &out, text, strlen(text));
	CHECK_BUF(&out, want, text);
	buf_free(&out);
}

static void scrubbing_removes_config_secrets_and_credential_members(void)
{
	struct secrets s = {0};
	secrets_add(&s, "sk-live-123");
	scrub(&s, "GET https://a/x?key=sk-live-123&n=1", "GET https://a/x?key=****&n=1");
	scrub(&s, "{\"access_token\": \"abc\", \"expires_in\": 10, \"refresh_token\":\"r\\\"q\"}",
	      "{\"access_token\": \"****\", \"expires_in\": 10, \"refresh_token\":\"****\"}");
	scrub(&s, "grant_type=refresh_token&refresh_token=xyz&client_secret=s3",
	      "grant_type=refresh_token&refresh_token=****&client_secret=****");
	scrub(&s, "HTTP/1.1 200 OK\r\nSet-Cookie: id=1\r\nContent-Type: a\r\n",
	      "HTTP/1.1 200 OK\r\nSet-Cookie: ****\r\nContent-Type: a\r\n");
	scrub(&s, "{\"token_type\": \"bearer\", \"name\": \"token\"}",
	      "{\"token_type\": \"bearer\", \"name\": \"token\"}");
	secrets_clear(&s);
}

static const struct test tests[] = {
	{"pairs are appended before the fragment", pairs_are_appended_before_the_fragment},
	{"a replaced parameter goes wherever it was", a_replaced_parameter_goes_wherever_it_was},
	{"has_param sees only the query", has_param_sees_only_the_query},
	{"scrubbing removes config secrets and credential members",
	 scrubbing_removes_config_secrets_and_credential_members},
};

const struct suite url_suite = {"url", tests, COUNT_OF(tests), NULL, NULL, NULL};
