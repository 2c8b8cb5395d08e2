/*
 * suggest: "did you mean" for names a user typed: script keys, cursor kinds, options. Distances
 * are counted on bytes; names here are ASCII identifiers, so that is the same as characters.
 */
#include "suggest.h"

#include <stdio.h>
#include <string.h>

#define MAX_NAME 64

static size_t min3(size_t a, size_t b, size_t c)
{
	size_t m = a < b ? a : b;
	return m < c ? m : c;
}

/* Damerau-Levenshtein (optimal string alignment) over three rolling rows. */
size_t suggest_distance(const char *a, const char *b, size_t limit)
{
	size_t n = strlen(a), m = strlen(b);
	if (n > MAX_NAME || m > MAX_NAME)
		return limit + 1;
	size_t diff = n > m ? n - m : m - n;
	if (diff > limit)
		return limit + 1;
	size_t rows[3][MAX_NAME + 1];
	size_t *before = rows[0], *prev = rows[1], *cur = rows[2];
	for (size_t j = 0; j <= m; j++)
		prev[j] = j;
	for (size_t i = 1; i <= n; i++) {
		cur[0] = i;
		for (size_t j = 1; j <= m; j++) {
			size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
			cur[j] = min3(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost);
			if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
			    before[j - 2] + 1 < cur[j])
				cur[j] = before[j - 2] + 1;
		}
		size_t *spare = before;
		before = prev;
		prev = cur;
		cur = spare;
	}
	return prev[m] > limit ? limit + 1 : prev[m];
}

const char *suggest_closest(const char *word, const char *const *candidates)
{
	size_t len = strlen(word);
	size_t limit = len / 3 > 2 ? len / 3 : 2;
	const char *best = NULL;
	size_t best_distance = limit + 1;
	for (const char *const *c = candidates; *c; c++) {
		size_t d = suggest_distance(word, *c, limit);
		if (d < best_distance) {
			best = *c;
			best_distance = d;
		}
	}
	return best;
}

/* The key at -1 as a user wrote it: a name, a number, true or false; else its type. */
static void key_text(lua_State *L, char *out, size_t outlen)
{
	switch (lua_type(L, -1)) {
	case LUA_TSTRING: snprintf(out, outlen, "%s", lua_tostring(L, -1)); break;
	case LUA_TNUMBER:
		if (lua_isinteger(L, -1))
			snprintf(out, outlen, "%lld", (long long)lua_tointeger(L, -1));
		else
			snprintf(out, outlen, "%g", (double)lua_tonumber(L, -1));
		break;
	case LUA_TBOOLEAN: snprintf(out, outlen, "%s", lua_toboolean(L, -1) ? "true" : "false"); break;
	default: snprintf(out, outlen, "(a %s)", lua_typename(L, lua_type(L, -1))); break;
	}
}

static int is_known(lua_State *L, const char *const *known, lua_Integer positional)
{
	if (lua_isinteger(L, -1)) {
		lua_Integer i = lua_tointeger(L, -1);
		return i >= 1 && i <= positional;
	}
	if (lua_type(L, -1) != LUA_TSTRING)
		return 0;
	const char *key = lua_tostring(L, -1);
	for (const char *const *k = known; *k; k++)
		if (!strcmp(key, *k))
			return 1;
	return 0;
}

int suggest_known_keys(lua_State *L, int idx, const char *const *known, lua_Integer positional, char *out,
		       size_t outlen)
{
	idx = lua_absindex(L, idx);
	lua_pushnil(L);
	while (lua_next(L, idx)) {
		lua_pop(L, 1);
		if (is_known(L, known, positional))
			continue;
		char key[MAX_NAME + 32];
		key_text(L, key, sizeof key);
		lua_pop(L, 1);
		const char *closest = suggest_closest(key, known);
		size_t len = (size_t)snprintf(out, outlen, "unknown key '%s'", key);
		if (closest) {
			snprintf(out + (len < outlen ? len : outlen), len < outlen ? outlen - len : 0,
				 " (did you mean %s?)", closest);
			return 0;
		}
		for (const char *const *k = known; *k && len < outlen; k++)
			len += (size_t)snprintf(out + len, outlen - len, "%s%s", k == known ? " (known: " : ", ", *k);
		if (len < outlen)
			snprintf(out + len, outlen - len, ")");
		return 0;
	}
	return 1;
}
