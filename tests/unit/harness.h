/*
 * harness: a small table-driven runner for the runtime's pure parts (no network, no stdout
 * protocol). Each test file exposes one or more suites, a table of {name, fn}; main (harness.c)
 * runs every suite in order, prints `ok - suite: name` or `not ok - suite: name: detail` for each
 * test and ends with exactly one line `N passed, N failed`.
 *
 * Checks record the first failure's detail and keep going, so a test can still close its
 * lua_State and free its buffers (the suite must stay clean under ASan and valgrind). Each check
 * returns whether it held, for tests that cannot go on after a failed one.
 */
#ifndef SOURCE_LUA_TEST_HARNESS_H
#define SOURCE_LUA_TEST_HARNESS_H

#include <lua.h>
#include <stddef.h>

#include "buf.h"

struct test {
	const char *name;
	void (*fn)(void);
};

struct suite {
	const char *name;
	const struct test *tests;
	size_t count;
	/* Optional: run around every test of the suite with param (the date suites set TZ). */
	void (*setup)(const char *param);
	void (*teardown)(const char *param);
	const char *param;
};

#define COUNT_OF(a) (sizeof(a) / sizeof((a)[0]))

/* The suites, one table per file; harness.c lists them in the order they run. */
extern const struct suite buf_suite;
extern const struct suite json_suite;
extern const struct suite date_suite_los_angeles;
extern const struct suite date_suite_tokyo;
extern const struct suite input_suite;
extern const struct suite validate_suite;
extern const struct suite secrets_suite;
extern const struct suite records_suite;
extern const struct suite heap_suite;
extern const struct suite tz_suite;
extern const struct suite url_suite;

/* Records a failure unless ok; returns ok. */
int test_check(int ok, const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* Compares byte strings (got may be NULL); the detail shows both, with unprintable bytes escaped. */
int test_check_bytes(const char *got, size_t got_len, const char *want, size_t want_len, const char *file, int line,
		     const char *what);
/* Records a failure when needle does not occur in haystack (haystack may be NULL). */
int test_check_contains(const char *haystack, const char *needle, const char *file, int line, const char *what);

#define CHECK(cond, ...) test_check((cond) ? 1 : 0, __FILE__, __LINE__, __VA_ARGS__)
#define CHECK_STR(got, want, what) \
	test_check_bytes((got), (got) ? strlen(got) : 0, (want), strlen(want), __FILE__, __LINE__, (what))
#define CHECK_BUF(b, want, what) test_check_bytes((b)->data, (b)->len, (want), strlen(want), __FILE__, __LINE__, (what))
#define CHECK_CONTAINS(haystack, needle, what) test_check_contains((haystack), (needle), __FILE__, __LINE__, (what))

/* The running suite's param (NULL when it has none). */
const char *test_param(void);
/* Marks the running test as one that can check nothing here, and why (printed TAP-style,
 * "# SKIP why"; it still counts as passed). */
void test_skip(const char *why);

/* Escapes bytes for a one-line detail ("\x00" style) into out; always NUL-terminates. */
void test_escape(const char *s, size_t len, char *out, size_t outlen);

/* A state made as main makes it (sandboxed libraries, json, date, http, log); NULL is a failure. */
lua_State *test_lua_open(void);
/* The same with another memory limit. */
lua_State *test_lua_open_limited(size_t memory_bytes);
void test_lua_close(lua_State *L);

/* Writes len bytes into a new temporary file; path receives its name. Returns 0, or -1. */
int test_temp_file(const char *content, size_t len, char *path, size_t pathlen);

/* Finds a project file (e.g. "scripts/stock_prices.lua") from the working directory or from the
 * binary's place in build/ or build/sanitize/. Returns 0 and the path, or -1. */
int test_project_file(const char *relative, char *path, size_t pathlen);

/* Decodes JSON text with the runtime's decoder; pushes the value or, on failure, records a failure
 * and pushes nil. [-0, +1, m] */
void test_push_json(lua_State *L, const char *text);

/* Runs a Lua chunk (text) that returns one value and pushes that value; on an error records a
 * failure and pushes nil. Returns 0 when the chunk ran. [-0, +1, m] */
int test_push_lua(lua_State *L, const char *chunk);

/* Encodes the value at idx with json_encode into a fresh buffer (freed by the caller); returns its rc
 * and, on failure, the reason in err. */
int test_encode(lua_State *L, int idx, struct buf *out, char *err, size_t errlen);

#endif
