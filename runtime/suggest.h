/* suggest: the closest valid name to a misspelt one, for errors that say "did you mean ...?". */
#ifndef SOURCE_LUA_SUGGEST_H
#define SOURCE_LUA_SUGGEST_H

#include <lua.h>
#include <stddef.h>

/* The candidate (a NULL-terminated list) nearest to word by edit distance, when it is near enough
 * to be a likely misspelling (at most a third of the word's length, at least 2); else NULL. */
const char *suggest_closest(const char *word, const char *const *candidates);

/* Whether every key of the table at idx is a name in known (a NULL-terminated list), the integer
 * keys 1 to positional aside (a list part). When one is not, writes "unknown key 'x' (did you mean
 * y?)" into out, or the known names when none is close, and returns 0: each caller says where.
 * [-0, +0, -] */
int suggest_known_keys(lua_State *L, int idx, const char *const *known, lua_Integer positional, char *out,
		       size_t outlen);

/* Edit distance (insertions, deletions, substitutions, adjacent swaps) between a and b, counted
 * up to limit: anything larger is reported as limit + 1. */
size_t suggest_distance(const char *a, const char *b, size_t limit);

#endif
