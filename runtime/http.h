/* http: the libcurl client (timeouts, caps, retries, request budget) and the Lua `http` module. */
#ifndef SOURCE_LUA_HTTP_H
#define SOURCE_LUA_HTTP_H

#include <curl/curl.h>
#include <lua.h>
#include <stdint.h>

#include "buf.h"

struct output;
struct cassette;

struct http_settings {
	long connect_timeout_ms;
	long timeout_ms;
	size_t max_body_bytes;
	int64_t retry_budget_ms;    /* give up retrying one request after this long */
	int64_t rate_limit_wait_ms; /* first wait after a 429 without Retry-After */
	double requests_per_minute; /* client-side budget; 0 = none */
	int concurrency;            /* transfers at once during a read */
};

/* The defaults, which a config's runtime settings override (main.c). */
extern const struct http_settings http_default_settings;

/* The client of one run: libcurl's handles (started on first use) and the request budget. */
struct http_client {
	const struct http_settings *settings;
	struct output *out; /* retries are logged here */
	CURL *easy;
	CURLM *multi;
	int start_failed;
	int64_t next_request_slot_ms;
	struct cassette *cassette; /* --record or --replay; NULL otherwise */
	/* Transfers a replay answered at once, handed out by http_transfers_wait first. */
	struct http_transfer **replayed;
	size_t replayed_count, replayed_size;
};

void http_client_init(struct http_client *c, const struct http_settings *settings, struct output *out);
void http_client_cleanup(struct http_client *c);

struct http_response {
	long status; /* 0 when no HTTP answer came back */
	struct buf body;
	struct buf headers; /* raw header lines of the last response */
	/* What configure made for the credentials and keeps alive until the next transfer: the
	 * header list with the API key's line, the URL with its query pair. */
	struct curl_slist *sent_headers;
	char *sent_url;
	char *exchange;             /* --record: the request, described, until the answer is in (cassette.c) */
	size_t expected_body_bytes; /* its Content-Length, when it gave one */
	size_t max_body_bytes;      /* the cap this transfer was started with */
	int body_too_large;         /* the body passed max_body_bytes: the transfer was stopped */
	CURLcode code;
	char error[CURL_ERROR_SIZE];
};

/* Credentials added to a request as it is sent, so that the URLs and headers a script sees, logs
 * and errors hold none of them, and a token fetched again is used by the next attempt. Any NULL
 * member is not sent. */
struct http_credentials {
	const char *bearer;              /* Authorization: Bearer (libcurl's CURLAUTH_BEARER) */
	const char *username, *password; /* Basic (CURLAUTH_BASIC) */
	const char *header_line;         /* "Name: value" */
	const char *query_name;          /* a query parameter, unless the URL already has it */
	const char *query_value_escaped;
};

/* What is sent: the method (NULL: GET), the URL, the header list and the body (NULL: none), each
 * owned by the caller; the body is copied when the transfer starts. */
struct http_request {
	const char *method;
	const char *url;
	const struct curl_slist *headers;
	const char *body;
	size_t body_len;
	int with_auth; /* the script's declared credentials apply (not auth = false) */
	int no_retry;  /* retry = false: one attempt, the OAuth2 token's included */
	const struct http_credentials *credentials;
};

/* One attempt, no retry. Returns 0 when an HTTP answer arrived (any status), -1 otherwise. */
int http_perform(struct http_client *c, const struct http_request *req, struct http_response *resp);
void http_response_reset(struct http_response *resp);
void http_response_free(struct http_response *resp);
/* Iterates the header lines of the last response: start with *pos = 0; returns 0 at the end. */
struct http_header_line {
	const char *name, *value;
	size_t name_len, value_len;
};
int http_header_next(const struct http_response *resp, size_t *pos, struct http_header_line *line);
/* Value of a response header (case-insensitive), copied into out; 0 when present. */
int http_header(const struct http_response *resp, const char *name, char *out, size_t outlen);
/* Human text for a failed attempt: curl's error or the status line. */
void http_describe_failure(const struct http_response *resp, char *out, size_t outlen);

/* Retry bookkeeping for one logical request. */
struct http_retry {
	int attempt;
	int64_t started_ms;
};
void http_retry_start(struct http_retry *r);
/* Whether this answer should be tried again (408, 429, 5xx, transport errors, truncated bodies;
 * not a certificate problem, a URL libcurl cannot fetch, too many redirects, a body past
 * max_body_bytes). */
int http_is_retryable(const struct http_response *resp);
/* http_is_retryable for a request that is not idempotent (a POST): only what says the request was
 * not processed, a 429, a 503 with Retry-After, or a connection that was never made. */
int http_is_retryable_once_sent(const struct http_response *resp);
/* Sleeps before the next attempt (honouring Retry-After, backoff with jitter); returns -1 when the
 * retry budget is spent or the sync was cancelled. why is logged, masked. */
int http_retry_wait(struct http_client *c, struct http_retry *r, const struct http_response *resp, const char *why,
		    const char *stream);

/* Computes the wait before the next attempt (Retry-After, else backoff with jitter), logs it and,
 * on a 429 while a stream is read (stream not NULL), reports it RATE_LIMITED; -1 when the retry
 * budget is spent or the sync was cancelled. */
int64_t http_retry_delay(struct http_client *c, struct http_retry *r, const struct http_response *resp, const char *why,
			 const char *stream);
void http_sleep_ms(int64_t ms);
/* Sleeps until fd is readable, at most timeout_ms (SIGTERM ends it early). */
void http_wait_fd(int fd, int timeout_ms);

/* The client-side request budget (requests_per_minute): how long until the next request may go,
 * and taking a slot. */
int64_t http_budget_delay_ms(const struct http_client *c);
void http_budget_take(struct http_client *c);

/* Concurrent transfers on one libcurl multi handle: connections are shared and reused. */
struct http_transfer {
	CURL *easy;
	struct http_client *client;      /* while it runs */
	struct http_client *replayed_by; /* a replay's answer waiting to be handed out */
	struct http_response resp;
};
int http_transfer_start(struct http_client *c, struct http_transfer *t, const struct http_request *req);
/* Drives every transfer; returns one that finished (its resp filled) or NULL after timeout_ms,
 * or sooner when wake_fd (unless -1) becomes readable. */
struct http_transfer *http_transfers_wait(struct http_client *c, int timeout_ms, int wake_fd);
/* Stops the transfer if it runs and frees what it holds. */
void http_transfer_free(struct http_transfer *t);

/* Percent-encodes text (free with curl_free); NULL when out of memory. */
char *http_escape(struct http_client *c, const char *text, size_t len);

/* Pushes a table of the answer's header fields: names lower-case (looking one up in any case
 * finds it), a field sent twice joined with ", ". [-0, +1, m] */
void http_push_response_headers(lua_State *L, const struct http_response *resp);

/* ref resolved against base as a browser resolves a link (RFC 3986: "/v2/x?cursor=1", "?page=2",
 * "https://other/"): the absolute URL (free with curl_free), or NULL when either cannot be read. */
char *http_resolve_url(struct http_client *c, const char *base, const char *ref);

/* The URL with pairs ("a=1&b=2", already encoded) added to its query, before any fragment; the
 * query's parameters called replaced (unless NULL) are left out first. One editor of queries for
 * request tables, paginators and an API key in the query. */
void http_url_with_pairs(struct buf *out, const char *url, const char *pairs, const char *replaced);
/* Whether url's query has a parameter called name. */
int http_url_has_param(const char *url, const char *name);

/* Scheme, host and port of url ("https://api.polygon.io:443"), for same-host checks. */
int http_origin(struct http_client *c, const char *url, char *out, size_t outlen);

const struct curl_slist *http_header_list(lua_State *L, int idx);

/* Prepares a request from spec (a URL or a request table: url, method, query, headers, body,
 * content_type, json, form, retry, idempotent) and opts (0, or a table of the same keys merged
 * into a URL spec), under lua_pcall. Pushes the prepared table, or the error message; returns the
 * pcall status. Unknown keys are errors that name the closest known one. */
int http_push_request(lua_State *L, int spec_idx, int opts_idx, const char *default_method);
/* Fills req from a prepared table (whose strings it keeps alive); returns whether the request
 * may be repeated (idempotent). */
int http_request_of(lua_State *L, int prepared_idx, struct http_request *req);

/* Opens the `http` module (http_module.c). [-0, +1, m] */
int http_open(lua_State *L);

#endif
