/* auth: the credentials a script declares (its `auth` table), taken from the config and added to
 * every request it makes: an API key in a header or the query, Bearer, Basic, or an OAuth2 access
 * token fetched by POST, cached, refreshed before it expires and once on a 401. */
#ifndef SOURCE_LUA_AUTH_H
#define SOURCE_LUA_AUTH_H

#include <lua.h>
#include <stddef.h>
#include <stdint.h>

#include "http.h"
#include "proto.h"

struct runtime;

enum auth_kind { AUTH_NONE, AUTH_API_KEY, AUTH_BEARER, AUTH_BASIC, AUTH_OAUTH2 };

/* The credentials of one run, resolved from the config; every string is owned (malloc). */
struct auth {
	enum auth_kind kind;
	struct http_credentials sent; /* what goes with each request; points into the members below */
	char *header_line, *query_name, *query_value, *username, *password, *token;
	/* OAuth2 */
	int refresh_grant;     /* refresh_token grant; else client_credentials */
	int client_auth_basic; /* client id and secret in a Basic header instead of the body */
	char *token_url, *client_id, *client_secret, *refresh_token, *scope;
	char *refresh_token_path; /* the config field holding the refresh token, for a rotated one */
	int64_t refresh_at_ms;    /* when the cached token is due for renewal; 0: none cached */
	unsigned generation;      /* counts the tokens fetched: a 401 for an older one needs no new one */
	int config_ref;           /* the config table (registry), updated when the refresh token rotates */
};

/* Checks the script's auth declaration (argument 1) under lua_pcall, against the spec's
 * connectionSpecification.properties (argument 2, or nil): an unknown key or type, a missing
 * credential, a credential not written "config.<field>" or naming a field the spec does not
 * declare raises a message naming it. */
int auth_check_declaration(lua_State *L);

/* Resolves the script's auth (at script_idx) from the config (at config_idx): 0, or -1 with a
 * config error's text in err. Credentials the config leaves out are not sent, except OAuth2's. */
int auth_configure(struct runtime *rt, int script_idx, int config_idx, char *err, size_t errlen);

/* Sets req->credentials for a request that takes them (req->with_auth), fetching an OAuth2 token
 * when none is cached or it is due; *generation tells which token went. 0, or -1 with *failure
 * and err saying why the token could not be had (naming the token URL). */
int auth_prepare(struct runtime *rt, struct http_request *req, unsigned *generation, enum proto_failure *failure,
		 char *err, size_t errlen);

/* After a 401 to a request sent with token generation: whether to send it again, with a token
 * fetched anew (at most once per request: *refreshed records it) or already newer. */
int auth_retry_after_401(struct runtime *rt, unsigned generation, int *refreshed);

void auth_free(struct runtime *rt);

#endif
