/*
 * cassette: record and replay of HTTP exchanges, for a stream's tests and for reading a stream
 * again without the API.
 *
 * Recording writes each exchange as DIR/NNNN.json: {"request": {method, url, headers, body},
 * "response": {status, headers, body}}, and DIR/cassette.json: {"started_ms": the run's clock}.
 * Every text is scrubbed first (the config's secrets in any spelling; credential-named members,
 * parameters and headers), and the file is checked to hold no secret before it is kept: a file
 * that would is not written and the run fails. The credentials declared by `auth` are added by
 * http.c after the request was described, so they never reach a recording.
 *
 * Replaying answers a request from the recording whose method, URL and body match, scrubbed the
 * same way (so a replay with other secrets, or placeholders, matches); several recordings of one
 * request answer in turn, the last one again after that. A request without one fails with a
 * message that names it, at once: a replay never touches the network.
 */
#define _GNU_SOURCE
#include "cassette.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "http.h"
#include "json.h"
#include "secrets.h"

#define MAX_EXCHANGES 100000
#define META_FILE "cassette.json"

struct cassette_entry {
	char *file; /* its name in the folder */
	char *key;  /* method, URL and body, scrubbed */
	long status;
	char *headers, *body;
	size_t headers_len, body_len;
	int uses;
};

/* Names of members, parameters and headers whose values are credentials, whatever the config. */
static const char *const CREDENTIAL_NAMES[] = {
	"access_token", "refresh_token", "id_token", "client_secret", "password", "api_key",
	"apikey",       "api-key",       "token",    "secret",        NULL,
};
static const char *const CREDENTIAL_HEADERS[] = {"authorization", "proxy-authorization", "cookie",
						 "set-cookie",    "x-api-key",           NULL};

static int is_credential_name(const char *name, size_t len, const char *const *names)
{
	for (const char *const *n = names; *n; n++)
		if (strlen(*n) == len && !strncasecmp(name, *n, len))
			return 1;
	return 0;
}

/* The end of the JSON string whose body starts at p (at its closing quote). */
static const char *string_end(const char *p, const char *end)
{
	while (p < end && *p != '"')
		p += (*p == '\\' && p + 1 < end) ? 2 : 1;
	return p;
}

/* "name": "value" with a credential name: the value becomes ****. */
static void scrub_json_members(struct buf *out, const char *text, size_t len)
{
	const char *p = text, *end = text + len, *copied = text;
	while ((p = memchr(p, '"', (size_t)(end - p)))) {
		const char *name = p + 1, *name_end = string_end(name, end);
		if (name_end >= end)
			break;
		const char *q = name_end + 1;
		while (q < end && (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r'))
			q++;
		if (q < end && *q == ':') {
			q++;
			while (q < end && (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r'))
				q++;
			if (q < end && *q == '"' &&
			    is_credential_name(name, (size_t)(name_end - name), CREDENTIAL_NAMES)) {
				const char *value_end = string_end(q + 1, end);
				buf_append(out, copied, (size_t)(q + 1 - copied));
				buf_puts(out, "****");
				copied = value_end;
				p = value_end < end ? value_end + 1 : end;
				continue;
			}
		}
		p = name_end + 1;
	}
	buf_append(out, copied, (size_t)(end - copied));
}

/* name=value after '?', '&' or the start, with a credential name: the value becomes ****. */
static void scrub_pairs(struct buf *out, const char *text, size_t len)
{
	const char *p = text, *end = text + len, *copied = text;
	while (p < end) {
		const char *start = p;
		const char *stop = start;
		while (stop < end && *stop != '=' && *stop != '&' && *stop != '?' && *stop != '\n')
			stop++;
		if (stop < end && *stop == '=' && is_credential_name(start, (size_t)(stop - start), CREDENTIAL_NAMES)) {
			const char *value_end = stop + 1;
			while (value_end < end && *value_end != '&' && *value_end != '#' && *value_end != '\n')
				value_end++;
			buf_append(out, copied, (size_t)(stop + 1 - copied));
			buf_puts(out, "****");
			copied = p = value_end;
			continue;
		}
		p = stop < end ? stop + 1 : end;
	}
	buf_append(out, copied, (size_t)(end - copied));
}

/* Header lines "Name: value" whose name is a credential's: "Name: ****". */
static void scrub_header_lines(struct buf *out, const char *text, size_t len)
{
	const char *p = text, *end = text + len;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *line_end = nl ? nl + 1 : end;
		const char *colon = memchr(p, ':', (size_t)(line_end - p));
		if (colon && is_credential_name(p, (size_t)(colon - p), CREDENTIAL_HEADERS)) {
			buf_append(out, p, (size_t)(colon - p));
			buf_puts(out, ": ****");
			if (line_end > p && line_end[-1] == '\n')
				buf_puts(out, line_end - 1 > p && line_end[-2] == '\r' ? "\r\n" : "\n");
		} else {
			buf_append(out, p, (size_t)(line_end - p));
		}
		p = line_end;
	}
}

void cassette_scrub(const struct secrets *secrets, struct buf *out, const char *text, size_t len)
{
	struct buf a = {0}, b = {0}, c = {0};
	secrets_mask_into(secrets, &a, text, len);
	scrub_json_members(&b, a.data ? a.data : "", a.len);
	scrub_pairs(&c, b.data ? b.data : "", b.len);
	scrub_header_lines(out, c.data ? c.data : "", c.len);
	buf_free(&a);
	buf_free(&b);
	buf_free(&c);
}

static char *scrubbed(const struct cassette *k, const char *text, size_t len)
{
	struct buf out = {0};
	cassette_scrub(k->secrets, &out, text ? text : "", text ? len : 0);
	return (char *)buf_cstr(&out);
}

/* The request's key: method, URL and body, scrubbed. */
static char *request_key(const struct cassette *k, const struct http_request *req)
{
	struct buf raw = {0};
	buf_printf(&raw, "%s %s\n", req->method ? req->method : "GET", req->url);
	if (req->body)
		buf_append(&raw, req->body, req->body_len);
	char *key = scrubbed(k, raw.data, raw.len);
	buf_free(&raw);
	return key;
}

/* Whether text holds a secret still (masking would change it). */
static int holds_secret(const struct secrets *secrets, const char *text, size_t len)
{
	struct buf masked = {0};
	secrets_mask_into(secrets, &masked, text, len);
	int differs = masked.len != len || (len && memcmp(masked.data, text, len));
	buf_free(&masked);
	return differs;
}

static int read_file(const char *path, struct buf *out)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return -1;
	char chunk[65536];
	size_t n;
	while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
		buf_append(out, chunk, n);
	int failed = ferror(f);
	fclose(f);
	return failed ? -1 : 0;
}

static int write_file(const char *path, const char *data, size_t len)
{
	FILE *f = fopen(path, "wb");
	if (!f)
		return -1;
	int failed = fwrite(data, 1, len, f) != len;
	failed |= fclose(f) != 0;
	return failed ? -1 : 0;
}

static char *string_at(lua_State *L, int table, const char *key, size_t *len)
{
	size_t n = 0;
	const char *s = lua_getfield(L, table, key) == LUA_TSTRING ? lua_tolstring(L, -1, &n) : "";
	char *copy = malloc(n + 1);
	if (copy) {
		memcpy(copy, s, n);
		copy[n] = '\0';
	}
	lua_pop(L, 1);
	if (len)
		*len = n;
	return copy;
}

/* One recorded exchange into entry; -1 when the file is not one. */
static int load_exchange(lua_State *L, const char *text, size_t len, struct cassette_entry *entry)
{
	int top = lua_gettop(L);
	json_decode_push(L, text, len);
	int ok = lua_istable(L, -2) && lua_getfield(L, -2, "request") == LUA_TTABLE &&
		 lua_getfield(L, -3, "response") == LUA_TTABLE;
	if (ok) {
		int request = lua_gettop(L) - 1, response = lua_gettop(L);
		char *method = string_at(L, request, "method", NULL), *url = string_at(L, request, "url", NULL);
		size_t body_len;
		char *body = string_at(L, request, "body", &body_len);
		struct buf key = {0};
		buf_printf(&key, "%s %s\n", method, url);
		buf_append(&key, body, body_len);
		entry->key = (char *)buf_cstr(&key);
		free(method);
		free(url);
		free(body);
		lua_getfield(L, response, "status");
		entry->status = (long)lua_tointeger(L, -1);
		lua_pop(L, 1);
		entry->headers = string_at(L, response, "headers", &entry->headers_len);
		entry->body = string_at(L, response, "body", &entry->body_len);
	}
	lua_settop(L, top);
	return ok ? 0 : -1;
}

static int compare_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int compare_entries(const void *a, const void *b)
{
	const struct cassette_entry *x = a, *y = b;
	int by_key = strcmp(x->key, y->key);
	return by_key ? by_key : strcmp(x->file, y->file);
}

static int load_recordings(struct cassette *k, lua_State *L, char *err, size_t errlen)
{
	DIR *d = opendir(k->dir);
	if (!d) {
		snprintf(err, errlen, "--replay %s: %s", k->dir, strerror(errno));
		return -1;
	}
	char **names = NULL;
	size_t n = 0;
	struct dirent *e;
	while ((e = readdir(d)) && n < MAX_EXCHANGES) {
		size_t len = strlen(e->d_name);
		if (len > 5 && !strcmp(e->d_name + len - 5, ".json") && strcmp(e->d_name, META_FILE)) {
			char **grown = realloc(names, (n + 1) * sizeof *names);
			if (!grown)
				break;
			names = grown;
			names[n++] = strdup(e->d_name);
		}
	}
	closedir(d);
	qsort(names, n, sizeof *names, compare_names);
	k->entries = calloc(n ? n : 1, sizeof *k->entries);
	int rc = 0;
	for (size_t i = 0; i < n; i++) {
		char path[4096];
		struct buf text = {0};
		snprintf(path, sizeof path, "%s/%s", k->dir, names[i]);
		if (!rc && read_file(path, &text)) {
			snprintf(err, errlen, "--replay: cannot read %s: %s", path, strerror(errno));
			rc = -1;
		} else if (!rc && load_exchange(L, text.data ? text.data : "", text.len, &k->entries[k->count]) == 0) {
			k->entries[k->count++].file = strdup(names[i]);
		} else if (!rc) {
			snprintf(err, errlen, "--replay: %s is not a recorded exchange", path);
			rc = -1;
		}
		buf_free(&text);
		free(names[i]);
	}
	free(names);
	if (!rc && !k->count) {
		snprintf(err, errlen, "--replay %s: no recorded exchange in it", k->dir);
		rc = -1;
	}
	/* By key, and in recording order within one (the file names sort so): a replay of 10,000
	 * partitions looks each request up in log time. */
	qsort(k->entries, k->count, sizeof *k->entries, compare_entries);
	return rc;
}

static void load_meta(struct cassette *k, lua_State *L)
{
	char path[4096];
	struct buf text = {0};
	snprintf(path, sizeof path, "%s/%s", k->dir, META_FILE);
	if (read_file(path, &text) == 0) {
		json_decode_push(L, text.data ? text.data : "", text.len);
		if (lua_istable(L, -2) && lua_getfield(L, -2, "started_ms") == LUA_TNUMBER)
			k->started_ms = (int64_t)lua_tointeger(L, -1);
		lua_settop(L, lua_gettop(L) - (lua_istable(L, -2) ? 3 : 2));
	}
	buf_free(&text);
}

static int start_recording(struct cassette *k, int64_t started_ms, char *err, size_t errlen)
{
	if (mkdir(k->dir, 0777) && errno != EEXIST) {
		snprintf(err, errlen, "--record %s: %s", k->dir, strerror(errno));
		return -1;
	}
	DIR *d = opendir(k->dir);
	struct dirent *e;
	int used = 0;
	while (d && (e = readdir(d)))
		used |= strlen(e->d_name) > 5 && !strcmp(e->d_name + strlen(e->d_name) - 5, ".json");
	if (d)
		closedir(d);
	if (used) {
		snprintf(err, errlen, "--record %s: the folder holds a recording already; record into an empty one",
			 k->dir);
		return -1;
	}
	char path[4096], meta[64];
	snprintf(path, sizeof path, "%s/%s", k->dir, META_FILE);
	int len = snprintf(meta, sizeof meta, "{\"started_ms\":%lld}\n", (long long)started_ms);
	if (write_file(path, meta, (size_t)len)) {
		snprintf(err, errlen, "--record: cannot write %s: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

int cassette_open(struct cassette *k, const char *dir, int replay, const struct secrets *secrets, lua_State *L,
		  int64_t started_ms, char *err, size_t errlen)
{
	memset(k, 0, sizeof *k);
	k->dir = strdup(dir);
	k->secrets = secrets;
	k->started_ms = started_ms;
	if (replay) {
		k->replaying = 1;
		load_meta(k, L);
		return load_recordings(k, L, err, errlen);
	}
	k->recording = 1;
	return start_recording(k, started_ms, err, errlen);
}

void cassette_close(struct cassette *k)
{
	for (size_t i = 0; i < k->count; i++) {
		free(k->entries[i].file);
		free(k->entries[i].key);
		free(k->entries[i].headers);
		free(k->entries[i].body);
	}
	free(k->entries);
	free(k->dir);
	memset(k, 0, sizeof *k);
}

/* The recording for key: the first not used yet, else the last one used (entries are sorted). */
static struct cassette_entry *find(struct cassette *k, const char *key)
{
	size_t lo = 0, hi = k->count;
	while (lo < hi) { /* the first entry whose key is not below key */
		size_t mid = lo + (hi - lo) / 2;
		if (strcmp(k->entries[mid].key, key) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	struct cassette_entry *last = NULL;
	for (size_t i = lo; i < k->count && !strcmp(k->entries[i].key, key); i++) {
		if (!k->entries[i].uses)
			return &k->entries[i];
		last = &k->entries[i];
	}
	return last;
}

/* The request part of a recording, kept in resp until the answer is in. */
static void describe_request(struct cassette *k, const struct http_request *req, struct buf *out)
{
	char *url = scrubbed(k, req->url, strlen(req->url));
	buf_puts(out, "{\"request\":{\"method\":");
	const char *method = req->method ? req->method : "GET";
	json_write_string(out, method, strlen(method));
	buf_puts(out, ",\"url\":");
	json_write_string(out, url, strlen(url));
	buf_puts(out, ",\"headers\":[");
	for (const struct curl_slist *h = req->headers; h; h = h->next) {
		char *line = scrubbed(k, h->data, strlen(h->data));
		json_write_string(out, line, strlen(line));
		if (h->next)
			buf_putc(out, ',');
		free(line);
	}
	buf_puts(out, "],\"body\":");
	char *body = scrubbed(k, req->body, req->body_len);
	json_write_string(out, body, strlen(body));
	buf_puts(out, "}");
	free(url);
	free(body);
}

/* A replay's recordings are checked once the config's secrets are known (at the first request):
 * a cassette that holds one is refused. */
static void check_no_secret(struct cassette *k)
{
	for (size_t i = 0; i < k->count && !k->error[0]; i++) {
		const struct cassette_entry *e = &k->entries[i];
		if (holds_secret(k->secrets, e->key, strlen(e->key)) ||
		    holds_secret(k->secrets, e->headers, e->headers_len) ||
		    holds_secret(k->secrets, e->body, e->body_len))
			snprintf(k->error, sizeof k->error,
				 "--replay %s: %s holds a secret of the config; a cassette must hold none (record it "
				 "again with --record)",
				 k->dir, e->file);
	}
}

int cassette_begin(struct cassette *k, const struct http_request *req, struct http_response *resp)
{
	if (!k || (!k->recording && !k->replaying))
		return 0;
	if (k->recording) {
		struct buf text = {0};
		describe_request(k, req, &text);
		free(resp->exchange);
		resp->exchange = (char *)buf_cstr(&text);
		return 0;
	}
	if (!k->checked) {
		check_no_secret(k);
		k->checked = 1;
	}
	char *key = request_key(k, req);
	struct cassette_entry *e = k->error[0] ? NULL : find(k, key);
	if (k->error[0]) {
		resp->code = CURLE_UNSUPPORTED_PROTOCOL;
		snprintf(resp->error, sizeof resp->error, "%.250s", k->error);
	} else if (!e) {
		/* Not retried, and named: a replay that asks for more than was recorded is the script's
		 * change or the clock's, and should say which request. */
		resp->code = CURLE_UNSUPPORTED_PROTOCOL;
		snprintf(resp->error, sizeof resp->error, "--replay %s has no recording of %.*s", k->dir,
			 (int)strcspn(key, "\n"), key);
	} else {
		e->uses++;
		resp->code = CURLE_OK;
		resp->status = e->status;
		buf_append(&resp->headers, e->headers, e->headers_len);
		buf_append(&resp->body, e->body, e->body_len);
		buf_cstr(&resp->body);
	}
	free(key);
	return 1;
}

void cassette_end(struct cassette *k, struct http_response *resp)
{
	if (!k || !k->recording || !resp->exchange || k->error[0])
		return;
	struct buf text = {0};
	buf_puts(&text, resp->exchange);
	buf_puts(&text, ",\"response\":{\"status\":");
	json_write_int(&text, resp->code == CURLE_OK ? resp->status : 0);
	char *headers = scrubbed(k, resp->headers.data, resp->headers.len);
	buf_puts(&text, ",\"headers\":");
	json_write_string(&text, headers, strlen(headers));
	char *body = scrubbed(k, resp->body.data, resp->body.len);
	buf_puts(&text, ",\"body\":");
	json_write_string(&text, body, strlen(body));
	buf_puts(&text, "}}\n");
	free(headers);
	free(body);
	free(resp->exchange);
	resp->exchange = NULL;
	char path[4096];
	snprintf(path, sizeof path, "%s/%04u.json", k->dir, ++k->written);
	if (holds_secret(k->secrets, text.data, text.len))
		snprintf(k->error, sizeof k->error, "exchange %u would have held a secret: not written", k->written);
	else if (write_file(path, text.data, text.len))
		snprintf(k->error, sizeof k->error, "cannot write %.400s: %s", path, strerror(errno));
	buf_free(&text);
}
