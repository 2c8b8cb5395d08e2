/*
 * harness: runs the suites and prints one line per test and the summary. Owns the failure record
 * of the running test and the shared fixtures (lua_State, temp files, project files); knows
 * nothing about what the tests check.
 */
#include "harness.h"
#include "runtime.h"

#include <lauxlib.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "host.h"
#include "json.h"

#define DETAIL_MAX 600

static const struct suite *const suites[] = {
	&buf_suite,     &json_suite, &date_suite_los_angeles, &date_suite_tokyo, &input_suite, &validate_suite,
	&secrets_suite, &heap_suite, &records_suite,          &tz_suite,         &url_suite,
};

static struct {
	int failures;
	char detail[DETAIL_MAX];
	const char *skipped; /* why the test could check nothing here, or NULL */
	const char *param;
} current;

void test_skip(const char *why)
{
	current.skipped = why;
}

const char *test_param(void)
{
	return current.param;
}

/* Keeps the report on one line whatever the detail holds. */
static void flatten(char *s)
{
	for (; *s; s++)
		if (*s == '\n' || *s == '\r' || *s == '\t')
			*s = ' ';
}

int test_check(int ok, const char *file, int line, const char *fmt, ...)
{
	if (ok)
		return 1;
	if (current.failures++ == 0) {
		int n = snprintf(current.detail, sizeof current.detail, "%s:%d: ", file, line);
		if (n < 0 || (size_t)n >= sizeof current.detail)
			n = 0;
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(current.detail + n, sizeof current.detail - (size_t)n, fmt, ap);
		va_end(ap);
		flatten(current.detail);
	}
	return 0;
}

void test_escape(const char *s, size_t len, char *out, size_t outlen)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;
	if (outlen == 0)
		return;
	if (!s) {
		snprintf(out, outlen, "(null)");
		return;
	}
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		char piece[5];
		size_t n = 0;
		if (c >= 0x20 && c < 0x7f) {
			piece[n++] = (char)c;
		} else {
			piece[n++] = '\\';
			piece[n++] = 'x';
			piece[n++] = hex[c >> 4];
			piece[n++] = hex[c & 15];
		}
		if (o + n + 4 >= outlen) {
			memcpy(out + o, "...", 3);
			o += 3;
			break;
		}
		memcpy(out + o, piece, n);
		o += n;
	}
	out[o] = '\0';
}

int test_check_bytes(const char *got, size_t got_len, const char *want, size_t want_len, const char *file, int line,
		     const char *what)
{
	if (got && got_len == want_len && memcmp(got, want, want_len) == 0)
		return 1;
	char g[240];
	char w[240];
	test_escape(got, got_len, g, sizeof g);
	test_escape(want, want_len, w, sizeof w);
	return test_check(0, file, line, "%s: got \"%s\", want \"%s\"", what, g, w);
}

int test_check_contains(const char *haystack, const char *needle, const char *file, int line, const char *what)
{
	if (haystack && strstr(haystack, needle))
		return 1;
	char h[300];
	test_escape(haystack, haystack ? strlen(haystack) : 0, h, sizeof h);
	return test_check(0, file, line, "%s: \"%s\" does not contain \"%s\"", what, h, needle);
}

lua_State *test_lua_open(void)
{
	return test_lua_open_limited((size_t)64 << 20);
}

lua_State *test_lua_open_limited(size_t memory_bytes)
{
	struct runtime *rt = malloc(sizeof *rt);
	if (!rt || runtime_init(rt)) {
		test_check(0, __FILE__, __LINE__, "runtime_init failed");
		free(rt);
		return NULL;
	}
	rt->limits.memory_bytes = memory_bytes;
	rt->limits.instructions_per_call = 100000000LL;
	lua_State *L = rt->L = host_open(rt);
	test_check(L != NULL, __FILE__, __LINE__, "host_open returned NULL");
	if (!L) {
		runtime_free(rt);
		free(rt);
	}
	return L;
}

void test_lua_close(lua_State *L)
{
	if (!L)
		return;
	struct runtime *rt = runtime_of(L);
	runtime_free(rt);
	free(rt);
}

int test_temp_file(const char *content, size_t len, char *path, size_t pathlen)
{
	const char *dir = getenv("TMPDIR");
	snprintf(path, pathlen, "%s/source-lua-unit-XXXXXX", dir && *dir ? dir : "/tmp");
	int fd = mkstemp(path);
	if (fd < 0) {
		test_check(0, __FILE__, __LINE__, "mkstemp(%s) failed", path);
		return -1;
	}
	size_t done = 0;
	while (done < len) {
		ssize_t n = write(fd, content + done, len - done);
		if (n <= 0)
			break;
		done += (size_t)n;
	}
	close(fd);
	if (done != len) {
		unlink(path);
		test_check(0, __FILE__, __LINE__, "cannot write the temp file %s", path);
		return -1;
	}
	return 0;
}

int test_project_file(const char *relative, char *path, size_t pathlen)
{
	snprintf(path, pathlen, "%s", relative);
	if (access(path, R_OK) == 0)
		return 0;
	/* The binary lives in build/ or build/sanitize/: walk up from it to the project root. */
	char exe[4096];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	if (n <= 0)
		return -1;
	exe[n] = '\0';
	for (int up = 0; up < 4; up++) {
		char *slash = strrchr(exe, '/');
		if (!slash)
			break;
		*slash = '\0';
		snprintf(path, pathlen, "%s/%s", exe, relative);
		if (access(path, R_OK) == 0)
			return 0;
	}
	return -1;
}

void test_push_json(lua_State *L, const char *text)
{
	json_decode_push(L, text, strlen(text));
	if (lua_isnil(L, -2)) {
		test_check(0, __FILE__, __LINE__, "cannot decode %s: %s", text, lua_tostring(L, -1));
		lua_pop(L, 1);
		return;
	}
	lua_pop(L, 1);
}

int test_push_lua(lua_State *L, const char *chunk)
{
	if (luaL_loadbufferx(L, chunk, strlen(chunk), "=test", "t") != LUA_OK || lua_pcall(L, 0, 1, 0) != LUA_OK) {
		test_check(0, __FILE__, __LINE__, "the chunk `%s` failed: %s", chunk, lua_tostring(L, -1));
		lua_pop(L, 1);
		lua_pushnil(L);
		return -1;
	}
	return 0;
}

int test_encode(lua_State *L, int idx, struct buf *out, char *err, size_t errlen)
{
	err[0] = '\0';
	return json_encode(L, idx, out, err, errlen);
}

static void run_test(const struct suite *s, const struct test *t, int *passed, int *failed)
{
	current.failures = 0;
	current.detail[0] = '\0';
	current.skipped = NULL;
	current.param = s->param;
	if (s->setup)
		s->setup(s->param);
	t->fn();
	if (s->teardown)
		s->teardown(s->param);
	if (current.failures == 0 && current.skipped) {
		printf("ok - %s: %s # SKIP %s\n", s->name, t->name, current.skipped);
		(*passed)++;
		return;
	}
	if (current.failures == 0) {
		printf("ok - %s: %s\n", s->name, t->name);
		(*passed)++;
		return;
	}
	if (current.failures > 1)
		printf("not ok - %s: %s: %s (and %d more)\n", s->name, t->name, current.detail, current.failures - 1);
	else
		printf("not ok - %s: %s: %s\n", s->name, t->name, current.detail);
	(*failed)++;
}

int main(void)
{
	int passed = 0;
	int failed = 0;
	/* Line-buffered, so that the lines before a crash are not lost in a pipe. */
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (size_t i = 0; i < COUNT_OF(suites); i++)
		for (size_t j = 0; j < suites[i]->count; j++)
			run_test(suites[i], &suites[i]->tests[j], &passed, &failed);
	printf("%d passed, %d failed\n", passed, failed);
	if (fflush(stdout) != 0)
		return 1;
	return failed ? 1 : 0;
}
