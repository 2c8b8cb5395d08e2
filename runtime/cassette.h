/* cassette: the HTTP exchanges of a run written to a folder (--record DIR), without their
 * secrets, and a run answered from them with no network (--replay DIR). */
#ifndef SOURCE_LUA_CASSETTE_H
#define SOURCE_LUA_CASSETTE_H

#include <lua.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

struct http_request;
struct http_response;
struct secrets;
struct cassette_entry;

struct cassette {
	int recording, replaying;
	char *dir;
	const struct secrets *secrets;
	unsigned written; /* exchanges recorded so far */
	struct cassette_entry *entries;
	size_t count;
	int64_t started_ms; /* the recorded run's clock, which a replay reads again */
	int checked;        /* a replay's files were checked for secrets */
	char error[512];    /* why recording stopped (a secret would have been written), or replaying
			     * was refused (a file holds a secret) */
};

/* Starts recording into dir (made if missing; it must hold no earlier recording) or replaying
 * from it (every file read now; one that holds a secret of this config is refused). L is used to
 * read the files. 0, or -1 with err. */
int cassette_open(struct cassette *k, const char *dir, int replay, const struct secrets *secrets, lua_State *L,
		  int64_t started_ms, char *err, size_t errlen);
void cassette_close(struct cassette *k);

/* At the start of an exchange: replaying, fills resp from the recording (or with an error naming
 * the request that has none) and returns 1; recording, keeps the request in resp for
 * cassette_end; else 0. */
int cassette_begin(struct cassette *k, const struct http_request *req, struct http_response *resp);
/* When the answer is in: recording, writes the exchange (secrets removed, then checked gone). */
void cassette_end(struct cassette *k, struct http_response *resp);

/* text with every secret removed: the config's (in any spelling) and the values of members and
 * parameters named like credentials (access_token, refresh_token, client_secret, password, ...)
 * and of the Authorization, Cookie and Set-Cookie headers. */
void cassette_scrub(const struct secrets *secrets, struct buf *out, const char *text, size_t len);

#endif
