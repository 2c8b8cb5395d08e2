/* suggest: the closest valid name to a misspelt one, for errors that say "did you mean ...?". */
#ifndef SOURCE_LUA_SUGGEST_H
#define SOURCE_LUA_SUGGEST_H

#include <stddef.h>

/* The candidate (a NULL-terminated list) nearest to word by edit distance, when it is near enough
 * to be a likely misspelling (at most a third of the word's length, at least 2); else NULL. */
const char *suggest_closest(const char *word, const char *const *candidates);

/* Edit distance (insertions, deletions, substitutions, adjacent swaps) between a and b, counted
 * up to limit: anything larger is reported as limit + 1. */
size_t suggest_distance(const char *a, const char *b, size_t limit);

#endif
