/* paginate: declared paginators, the next page of a window without pagination code in the script:
 * a Link header, offset and limit, a page number, or a cursor token from the body. */
#ifndef SOURCE_LUA_PAGINATE_H
#define SOURCE_LUA_PAGINATE_H

#include <lua.h>
#include <stddef.h>

#include "http.h"

enum paginator_kind {
	PAGINATOR_NONE,
	PAGINATOR_LINK,   /* the Link header's rel="next" URL */
	PAGINATOR_OFFSET, /* offset_param += limit, limit_param = limit; stops on a short page */
	PAGINATOR_PAGE,   /* page_param += 1 from start, size_param = size; stops on a short page */
	PAGINATOR_CURSOR, /* the token at path in the body, as param in the query or the JSON body */
};

struct paginator_def {
	enum paginator_kind kind;
	const char *param;      /* offset_param, page_param or the cursor's param */
	const char *size_param; /* limit_param or size_param; NULL: not sent */
	const char *path;       /* the cursor's dotted path in the body ("paging.next.after") */
	long long size;         /* records a page asks for: limit or size */
	long long start;        /* the first offset or page number */
	int into_json;          /* the cursor goes into the JSON body, not the query */
};

/* The paginator declared at def's "paginator" key (the stream table at def); raises a message
 * naming the key (and the closest valid one) on a mistake. Strings stay alive in pins. [-0, +0, e] */
void paginate_read_def(lua_State *L, int def, int pins, const char *where, struct paginator_def *out);

/* The window's first request (a prepared table at idx) with the paginator's first-page
 * parameters in its URL; replaces it. [-0, +0, e] */
void paginate_first(lua_State *L, const struct paginator_def *p, int prepared_idx);

/* Pushes the next page's request spec (a table for http_push_request, without headers so that
 * the page's are kept), or nil when the answer says there is none. prepared_idx: this page's
 * request; response_idx: the response parse was handed. [-0, +1, e] */
void paginate_push_next(lua_State *L, const struct paginator_def *p, int prepared_idx, int response_idx,
			const struct http_response *resp);

/* Whether a page of count records was the last one (a short page, for offset and page). */
int paginate_was_last(const struct paginator_def *p, size_t count);

#endif
