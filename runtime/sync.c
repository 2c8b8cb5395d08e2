/*
 * sync: the read command. The script declares streams and how to ask for a page; this file owns
 * everything that must be right for every connector:
 *
 * - Cursors are per partition (a ticker) and only ever the last cursor value actually emitted, so
 *   a day whose data has not appeared yet (before the close, a provider delay, a holiday) is asked
 *   for again next time, and a resumed sync starts the day after the last emitted one.
 * - Ranges run from the cursor (or the start date) to the last complete day in the stream's time
 *   zone, cut into windows; every page of a window is followed (same origin only, no repeats).
 * - A STATE follows every page that emitted records and closes every stream, so a sync that dies
 *   keeps what it finished. Records must come in ascending cursor order within a partition, which
 *   is what makes "the cursor is the largest value emitted" a safe checkpoint.
 * - On any failure: the state of what was emitted, INCOMPLETE, one TRACE error, exit non-zero.
 */
#include "sync.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "date.h"
#include "host.h"
#include "http.h"
#include "json.h"
#include "proto.h"
#include "secrets.h"

#define NO_CURSOR INT64_MIN
#define MAX_PAGES_PER_WINDOW 100000
#define DEFAULT_PARTITION_KEY "partitions"

struct partition {
	const char *key; /* NULL for a stream without partitions; the string lives in run->keys */
	int64_t cursor;       /* the largest cursor value emitted, in this run or before it */
	int64_t last_emitted; /* the last cursor value emitted in this run, for the order check */
};

struct sync_error {
	int set;
	enum proto_failure type;
	char message[2048];
	char stack[4096];
};

struct stream_run {
	lua_State *L;
	const char *name;
	int script, def, config, legacy, keys;
	int incremental;
	char cursor_field[128];
	char partition_key[128];
	int partitioned;
	struct partition *parts;
	size_t nparts;
	int64_t start_day, end_day, window_days, lookback_days;
	int64_t records_since_state;
	int states_emitted;
	int running_sent;
	struct sync_error err;
};

/* Reused across pages: owned by this file for the whole read, freed at the end. */
static struct http_response page;

static int run_fail(struct stream_run *s, enum proto_failure type, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int run_fail(struct stream_run *s, enum proto_failure type, const char *fmt, ...)
{
	if (s->err.set)
		return -1;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(s->err.message, sizeof s->err.message, fmt, ap);
	va_end(ap);
	s->err.set = 1;
	s->err.type = type;
	return -1;
}

/* Records the error table left by host_call; pops it. */
static int run_fail_script(struct stream_run *s, const char *what)
{
	struct host_error e;
	host_error_read(s->L, -1, &e);
	run_fail(s, e.failure, "%s: %s", what, e.message);
	if (e.stack)
		snprintf(s->err.stack, sizeof s->err.stack, "%s", e.stack);
	lua_pop(s->L, 1);
	return -1;
}

/* Pushes def[name] when it is a function; returns 0 when there is none (nothing pushed). */
static int push_hook(struct stream_run *s, const char *name)
{
	if (lua_getfield(s->L, s->def, name) == LUA_TFUNCTION)
		return 1;
	lua_pop(s->L, 1);
	return 0;
}

/* A declared value that may be given directly or as function(config). Pushes it. */
static int push_setting(struct stream_run *s, const char *name)
{
	lua_State *L = s->L;
	if (lua_getfield(L, s->def, name) != LUA_TFUNCTION)
		return 0;
	lua_pushvalue(L, s->config);
	if (host_call(L, 1, 1) != LUA_OK) {
		char what[160];
		snprintf(what, sizeof what, "stream '%s': %s(config) failed", s->name, name);
		return run_fail_script(s, what);
	}
	return 0;
}

static int read_day_setting(struct stream_run *s, const char *name, int64_t *day, int required)
{
	if (push_setting(s, name))
		return -1;
	lua_State *L = s->L;
	int rc = 0;
	if (lua_isnil(L, -1)) {
		if (required)
			rc = run_fail(s, PROTO_SYSTEM_ERROR, "stream '%s' declares no %s", s->name, name);
		else
			*day = NO_CURSOR;
	} else if (lua_type(L, -1) != LUA_TSTRING || date_parse_day(lua_tostring(L, -1), day)) {
		rc = run_fail(s, PROTO_CONFIG_ERROR, "stream '%s': %s '%s' is not a YYYY-MM-DD date", s->name, name,
			      luaL_tolstring(L, -1, NULL));
	}
	lua_settop(L, s->keys);
	return rc;
}

static int read_count_setting(struct stream_run *s, const char *name, int64_t *value)
{
	if (push_setting(s, name))
		return -1;
	lua_State *L = s->L;
	int rc = 0;
	*value = 0;
	if (!lua_isnil(L, -1)) {
		int ok = 0;
		lua_Integer n = lua_tointegerx(L, -1, &ok);
		if (!ok || n < 0 || n > 100000)
			rc = run_fail(s, PROTO_CONFIG_ERROR, "stream '%s': %s must be a whole number of days from 0 to 100000",
				      s->name, name);
		*value = n;
	}
	lua_settop(L, s->keys);
	return rc;
}

/* The last day whose data is final: today once day_complete_at has passed in the stream's zone. */
static int last_complete_day(struct stream_run *s, int64_t *day)
{
	lua_State *L = s->L;
	if (lua_getfield(L, s->def, "end_date") != LUA_TNIL) {
		lua_pop(L, 1);
		return read_day_setting(s, "end_date", day, 1);
	}
	lua_pop(L, 1);
	enum date_zone zone = DATE_UTC;
	lua_getfield(L, s->def, "timezone");
	if (!lua_isnil(L, -1) && (!lua_isstring(L, -1) || date_zone_from_name(lua_tostring(L, -1), &zone)))
		return run_fail(s, PROTO_SYSTEM_ERROR, "stream '%s': timezone must be UTC or America/New_York", s->name);
	int complete_at = 24 * 3600;
	lua_getfield(L, s->def, "day_complete_at");
	if (!lua_isnil(L, -1)) {
		int64_t parsed;
		char probe[40];
		snprintf(probe, sizeof probe, "1970-01-01T%s:00Z", lua_isstring(L, -1) ? lua_tostring(L, -1) : "x");
		if (date_parse(probe, DATE_UTC, &parsed))
			return run_fail(s, PROTO_SYSTEM_ERROR, "stream '%s': day_complete_at must be HH:MM", s->name);
		complete_at = (int)parsed;
	}
	lua_settop(L, s->keys);
	int64_t now = date_now_ms() / 1000;
	int64_t today = date_day_in_zone(now, zone);
	*day = date_seconds_into_day(now, zone) >= complete_at ? today : today - 1;
	return 0;
}

static int plan(struct stream_run *s)
{
	if (read_day_setting(s, "start_date", &s->start_day, 1) || last_complete_day(s, &s->end_day) ||
	    read_count_setting(s, "window_days", &s->window_days) ||
	    read_count_setting(s, "lookback_days", &s->lookback_days))
		return -1;
	return 0;
}

static int add_partition_key(struct stream_run *s, int value_idx, lua_Integer position)
{
	lua_State *L = s->L;
	if (lua_type(L, value_idx) != LUA_TSTRING || lua_rawlen(L, value_idx) == 0)
		return run_fail(s, PROTO_CONFIG_ERROR, "stream '%s': partition %d is not a non-empty string", s->name,
				(int)position);
	lua_pushvalue(L, value_idx);
	if (lua_rawget(L, s->keys) != LUA_TNIL) {
		lua_pop(L, 1);
		return 0; /* the same partition listed twice is read once */
	}
	lua_pop(L, 1);
	lua_pushvalue(L, value_idx);
	lua_pushinteger(L, (lua_Integer)s->nparts);
	lua_rawset(L, s->keys);
	s->parts[s->nparts].key = lua_tostring(L, value_idx);
	s->parts[s->nparts].cursor = NO_CURSOR;
	s->parts[s->nparts].last_emitted = NO_CURSOR;
	s->nparts++;
	return 0;
}

/* Partition keys are kept alive as keys of run->keys; parts lives in a userdata slot below it. */
static int load_partitions(struct stream_run *s)
{
	lua_State *L = s->L;
	lua_getfield(L, s->def, "partition_state_key");
	snprintf(s->partition_key, sizeof s->partition_key, "%s",
		 lua_isstring(L, -1) ? lua_tostring(L, -1) : DEFAULT_PARTITION_KEY);
	lua_pop(L, 1);
	if (!push_hook(s, "partitions")) {
		s->parts = lua_newuserdatauv(L, sizeof *s->parts, 0);
		lua_replace(L, s->keys - 1);
		s->parts[0].key = NULL;
		s->parts[0].cursor = NO_CURSOR;
		s->parts[0].last_emitted = NO_CURSOR;
		s->nparts = 1;
		return 0;
	}
	lua_pushvalue(L, s->config);
	if (host_call(L, 1, 1) != LUA_OK)
		return run_fail_script(s, "partitions(config) failed");
	if (!lua_istable(L, -1) || lua_rawlen(L, -1) == 0)
		return run_fail(s, PROTO_CONFIG_ERROR, "stream '%s': partitions(config) gave no partitions", s->name);
	int list = lua_gettop(L);
	lua_Integer n = (lua_Integer)lua_rawlen(L, list);
	s->parts = lua_newuserdatauv(L, sizeof *s->parts * (size_t)n, 0);
	lua_replace(L, s->keys - 1);
	s->partitioned = 1;
	s->nparts = 0;
	for (lua_Integer i = 1; i <= n; i++) {
		lua_rawgeti(L, list, i);
		if (add_partition_key(s, lua_gettop(L), i))
			return -1;
		/* The string stays referenced as a key of run->keys, so its pointer stays valid. */
		lua_pop(L, 1);
	}
	lua_settop(L, s->keys);
	return 0;
}

static int cursor_from(struct stream_run *s, int table_idx, const char *whose, int64_t *cursor)
{
	lua_State *L = s->L;
	lua_getfield(L, table_idx, s->cursor_field);
	int rc = 0;
	if (!lua_isnil(L, -1)) {
		if (lua_type(L, -1) != LUA_TSTRING || date_parse_day(lua_tostring(L, -1), cursor))
			rc = run_fail(s, PROTO_CONFIG_ERROR, "state: %s has %s '%s', not a YYYY-MM-DD date", whose,
				      s->cursor_field, luaL_tolstring(L, -1, NULL));
	}
	lua_pop(L, lua_gettop(L) > table_idx && lua_type(L, -1) == LUA_TSTRING && rc ? 2 : 1);
	return rc;
}

/* Per-partition cursors win; a single top-level cursor (legacy, or from before partitions)
 * applies to every partition; a partition missing from a per-partition map starts afresh. */
static int load_cursors(struct stream_run *s, int states)
{
	lua_State *L = s->L;
	int top = lua_gettop(L);
	lua_getfield(L, states, s->name);
	int stream_state = lua_gettop(L);
	if (!lua_istable(L, stream_state)) {
		lua_settop(L, top);
		return 0;
	}
	int64_t shared = NO_CURSOR;
	char whose[300];
	snprintf(whose, sizeof whose, "stream '%s'", s->name);
	if (cursor_from(s, stream_state, whose, &shared))
		return -1;
	lua_getfield(L, stream_state, s->partition_key);
	int map = s->partitioned && lua_istable(L, -1) ? lua_gettop(L) : 0;
	for (size_t i = 0; i < s->nparts; i++) {
		s->parts[i].cursor = map ? NO_CURSOR : shared;
		if (!map)
			continue;
		lua_getfield(L, map, s->parts[i].key);
		if (lua_istable(L, -1)) {
			snprintf(whose, sizeof whose, "partition '%s' of stream '%s'", s->parts[i].key, s->name);
			if (cursor_from(s, lua_gettop(L), whose, &s->parts[i].cursor))
				return -1;
		}
		lua_pop(L, 1);
	}
	lua_settop(L, top);
	return 0;
}

static void push_day(lua_State *L, int64_t day)
{
	char text[DATE_DAY_LEN];
	date_format_day(day, text);
	lua_pushstring(L, text);
}

/* {cursor: min over partitions, partition_key: {key: {cursor: day}}}, or {cursor: day}. [-0, +1, m] */
static void push_stream_state(struct stream_run *s)
{
	lua_State *L = s->L;
	lua_newtable(L);
	int64_t least = NO_CURSOR;
	int all_have_cursors = 1;
	if (s->partitioned) {
		lua_newtable(L);
		for (size_t i = 0; i < s->nparts; i++) {
			if (s->parts[i].cursor == NO_CURSOR) {
				all_have_cursors = 0;
				continue;
			}
			if (least == NO_CURSOR || s->parts[i].cursor < least)
				least = s->parts[i].cursor;
			lua_newtable(L);
			push_day(L, s->parts[i].cursor);
			lua_setfield(L, -2, s->cursor_field);
			lua_setfield(L, -2, s->parts[i].key);
		}
		lua_setfield(L, -2, s->partition_key);
	} else {
		least = s->parts[0].cursor;
	}
	/* The top-level cursor means "every partition is complete up to here", as the legacy state did. */
	if (least != NO_CURSOR && all_have_cursors) {
		push_day(L, least);
		lua_setfield(L, -2, s->cursor_field);
	}
}

static int checkpoint(struct stream_run *s)
{
	lua_State *L = s->L;
	int top = lua_gettop(L);
	push_stream_state(s);
	lua_pushvalue(L, -1);
	lua_setfield(L, s->legacy, s->name);
	char err[256];
	int rc = proto_stream_state(L, s->name, top + 1, s->legacy, s->records_since_state, err, sizeof err);
	lua_settop(L, top);
	if (rc)
		return run_fail(s, PROTO_SYSTEM_ERROR, "cannot write the state of stream '%s': %s", s->name, err);
	s->records_since_state = 0;
	s->states_emitted++;
	return 0;
}

/* ctx = {config, stream, partition, from, to}. [-0, +1, m] */
static void push_context(struct stream_run *s, const struct partition *p, int64_t from, int64_t to)
{
	lua_State *L = s->L;
	lua_createtable(L, 0, 5);
	lua_pushvalue(L, s->config);
	lua_setfield(L, -2, "config");
	lua_pushstring(L, s->name);
	lua_setfield(L, -2, "stream");
	if (p->key) {
		lua_pushstring(L, p->key);
		lua_setfield(L, -2, "partition");
	}
	push_day(L, from);
	lua_setfield(L, -2, "from");
	push_day(L, to);
	lua_setfield(L, -2, "to");
}

/* The API's own words for an error: its JSON "message" or "error", else the start of the body. */
static void api_message(lua_State *L, const struct http_response *resp, char *out, size_t outlen)
{
	int top = lua_gettop(L);
	snprintf(out, outlen, "%.300s", resp->body.len ? resp->body.data : "(empty body)");
	json_decode_push(L, resp->body.data ? resp->body.data : "", resp->body.len);
	if (lua_istable(L, -2)) {
		static const char *const fields[] = {"message", "error", "detail", NULL};
		for (const char *const *f = fields; *f; f++) {
			lua_getfield(L, -2, *f);
			if (lua_type(L, -1) == LUA_TSTRING) {
				snprintf(out, outlen, "%s", lua_tostring(L, -1));
				break;
			}
			lua_pop(L, 1);
		}
	}
	lua_settop(L, top);
}

/* Lets the script phrase an HTTP error (describe_error(status, body, ctx) -> message [, failure_type]). */
static int fail_http_status(struct stream_run *s, int ctx, const char *url)
{
	lua_State *L = s->L;
	char message[1024];
	api_message(L, &page, message, sizeof message);
	enum proto_failure type = PROTO_CONFIG_ERROR;
	if (page.status < 400)
		type = PROTO_SYSTEM_ERROR;
	if (push_hook(s, "describe_error")) {
		lua_pushinteger(L, page.status);
		json_decode_push(L, page.body.data ? page.body.data : "", page.body.len);
		lua_pop(L, 1);
		lua_pushvalue(L, ctx);
		if (host_call(L, 3, 2) != LUA_OK)
			return run_fail_script(s, "describe_error failed");
		if (lua_isstring(L, -2))
			snprintf(message, sizeof message, "%s", lua_tostring(L, -2));
		if (lua_isstring(L, -1))
			proto_failure_from_name(lua_tostring(L, -1), &type);
		lua_pop(L, 2);
	}
	struct buf masked = {0};
	secrets_mask_into(&masked, url, strlen(url));
	run_fail(s, type, "stream '%s': HTTP %ld from %s: %s", s->name, page.status, buf_cstr(&masked), message);
	buf_free(&masked);
	return -1;
}

/* GETs url until a 2xx JSON answer arrives, retrying what is worth retrying. Pushes the body. */
static int fetch_json(struct stream_run *s, int ctx, const char *url, const struct curl_slist *headers)
{
	lua_State *L = s->L;
	struct http_retry retry;
	http_retry_start(&retry);
	char why[CURL_ERROR_SIZE + 128];
	for (;;) {
		http_perform(url, headers, &page);
		if (host_cancelled)
			return run_fail(s, PROTO_TRANSIENT_ERROR, "the sync was cancelled (SIGTERM)");
		int retryable = http_is_retryable(&page);
		if (!retryable && page.status >= 200 && page.status < 300) {
			json_decode_push(L, page.body.data, page.body.len);
			if (!lua_isnil(L, -2) || lua_isnil(L, -1)) {
				lua_pop(L, 1);
				return 0;
			}
			snprintf(why, sizeof why, "HTTP %ld with a body that is not JSON (%s)", page.status,
				 lua_tostring(L, -1));
			lua_pop(L, 2);
		} else if (!retryable) {
			return fail_http_status(s, ctx, url);
		} else {
			http_describe_failure(&page, why, sizeof why);
		}
		if (http_retry_wait(&retry, &page, why))
			return run_fail(s, PROTO_TRANSIENT_ERROR,
					"stream '%s': gave up after %d attempts over %.0f s; last error: %s", s->name,
					retry.attempt + 1, (double)(date_now_ms() - retry.started_ms) / 1000.0, why);
	}
}

static int record_day(struct stream_run *s, int record, int64_t *day)
{
	lua_State *L = s->L;
	lua_getfield(L, record, s->cursor_field);
	int ok = lua_type(L, -1) == LUA_TSTRING && date_parse_day(lua_tostring(L, -1), day) == 0;
	if (!ok)
		run_fail(s, PROTO_SYSTEM_ERROR, "stream '%s': a record's %s is '%s', not a YYYY-MM-DD date", s->name,
			 s->cursor_field, luaL_tolstring(L, -1, NULL));
	lua_settop(L, record);
	return ok ? 0 : -1;
}

static int emit_records(struct stream_run *s, struct partition *p, int records, int64_t from, int64_t to)
{
	lua_State *L = s->L;
	lua_Integer n = (lua_Integer)lua_rawlen(L, records);
	int64_t emitted_at = date_now_ms();
	for (lua_Integer i = 1; i <= n; i++) {
		lua_rawgeti(L, records, i);
		int record = lua_gettop(L);
		if (!lua_istable(L, record))
			return run_fail(s, PROTO_SYSTEM_ERROR, "stream '%s': record %d from parse is a %s, not a table",
					s->name, (int)i, luaL_typename(L, record));
		int64_t day;
		if (record_day(s, record, &day))
			return -1;
		if (day < from || day > to) {
			lua_pop(L, 1);
			continue;
		}
		if (p->last_emitted != NO_CURSOR && day < p->last_emitted)
			return run_fail(s, PROTO_SYSTEM_ERROR,
					"stream '%s': records must come in ascending %s order (a page went backwards)",
					s->name, s->cursor_field);
		if (!s->running_sent) {
			proto_stream_status(s->name, "RUNNING", 0);
			s->running_sent = 1;
		}
		char err[256];
		if (proto_record(L, s->name, record, emitted_at, err, sizeof err))
			return run_fail(s, PROTO_SYSTEM_ERROR, "stream '%s': record %d cannot be written: %s", s->name,
					(int)i, err);
		s->records_since_state++;
		p->last_emitted = day;
		if (p->cursor == NO_CURSOR || day > p->cursor)
			p->cursor = day;
		lua_pop(L, 1);
	}
	return 0;
}

/* Calls parse(ctx, response) and emits what it returns; pushes the next URL or nil. */
static int handle_page(struct stream_run *s, struct partition *p, int ctx, int body, const char *url, int64_t from,
		       int64_t to)
{
	lua_State *L = s->L;
	if (!push_hook(s, "parse"))
		return run_fail(s, PROTO_SYSTEM_ERROR, "stream '%s' has no parse(ctx, response) function", s->name);
	lua_pushvalue(L, ctx);
	lua_createtable(L, 0, 3);
	lua_pushinteger(L, page.status);
	lua_setfield(L, -2, "status");
	lua_pushvalue(L, body);
	lua_setfield(L, -2, "body");
	lua_pushstring(L, url);
	lua_setfield(L, -2, "url");
	if (host_call(L, 2, 2) != LUA_OK)
		return run_fail_script(s, "parse(ctx, response) failed");
	int records = lua_gettop(L) - 1;
	if (!lua_isnil(L, records) && !lua_istable(L, records))
		return run_fail(s, PROTO_SYSTEM_ERROR, "stream '%s': parse must return a list of records, not a %s",
				s->name, luaL_typename(L, records));
	if (lua_istable(L, records) && emit_records(s, p, records, from, to))
		return -1;
	lua_remove(L, records);
	if (!lua_isnil(L, -1) && (lua_type(L, -1) != LUA_TSTRING || lua_rawlen(L, -1) == 0)) {
		lua_pop(L, 1);
		lua_pushnil(L);
	}
	return 0;
}

static int check_next_url(struct stream_run *s, const char *origin, const char *next, int seen)
{
	lua_State *L = s->L;
	char next_origin[512];
	if (http_origin(next, next_origin, sizeof next_origin) || strcmp(origin, next_origin))
		return run_fail(s, PROTO_SYSTEM_ERROR,
				"stream '%s': the next page is on another host (%s); refusing to send credentials there",
				s->name, next_origin);
	if (lua_getfield(L, seen, next) != LUA_TNIL)
		return run_fail(s, PROTO_SYSTEM_ERROR, "stream '%s': pagination loop, the API sent the same next URL twice",
				s->name);
	lua_pop(L, 1);
	return 0;
}

/* One window of one partition: the first request from the script, then every next page. */
static int read_window(struct stream_run *s, struct partition *p, int64_t from, int64_t to)
{
	lua_State *L = s->L;
	int top = lua_gettop(L);
	push_context(s, p, from, to);
	int ctx = lua_gettop(L);
	if (!push_hook(s, "request"))
		return run_fail(s, PROTO_SYSTEM_ERROR, "stream '%s' has no request(ctx) function", s->name);
	lua_pushvalue(L, ctx);
	if (host_call(L, 1, 2) != LUA_OK)
		return run_fail_script(s, "request(ctx) failed");
	if (lua_type(L, -2) != LUA_TSTRING)
		return run_fail(s, PROTO_SYSTEM_ERROR, "stream '%s': request(ctx) must return a URL string", s->name);
	if (http_push_headers(L, -1) != LUA_OK)
		return run_fail(s, PROTO_SYSTEM_ERROR, "stream '%s': request options: %s", s->name, lua_tostring(L, -1));
	int headers = lua_gettop(L);
	const char *first_url = lua_tostring(L, headers - 2);
	char origin[512];
	if (http_origin(first_url, origin, sizeof origin))
		return run_fail(s, PROTO_CONFIG_ERROR, "stream '%s': '%s' is not a valid URL", s->name, first_url);
	lua_newtable(L);
	int seen = lua_gettop(L);
	lua_pushvalue(L, headers - 2);
	for (int pages = 0; !lua_isnil(L, -1); pages++) {
		int url = lua_gettop(L);
		if (pages > 0 && check_next_url(s, origin, lua_tostring(L, url), seen))
			return -1;
		if (pages >= MAX_PAGES_PER_WINDOW)
			return run_fail(s, PROTO_SYSTEM_ERROR, "stream '%s': more than %d pages in one window", s->name,
					MAX_PAGES_PER_WINDOW);
		lua_pushvalue(L, url);
		lua_pushboolean(L, 1);
		lua_rawset(L, seen);
		if (fetch_json(s, ctx, lua_tostring(L, url), http_header_list(L, headers)))
			return -1;
		if (handle_page(s, p, ctx, url + 1, lua_tostring(L, url), from, to))
			return -1;
		if (s->records_since_state > 0 && checkpoint(s))
			return -1;
		lua_replace(L, url);
		lua_settop(L, url);
	}
	lua_settop(L, top);
	return 0;
}

static void log_plan(struct stream_run *s, const struct partition *p, int64_t from)
{
	char first[DATE_DAY_LEN], last[DATE_DAY_LEN], cursor[DATE_DAY_LEN] = "none";
	date_format_day(from, first);
	date_format_day(s->end_day, last);
	if (p->cursor != NO_CURSOR)
		date_format_day(p->cursor, cursor);
	if (from > s->end_day)
		proto_logf("INFO", "%s%s%s%s: up to date (cursor %s, last complete day %s)", s->name, p->key ? "[" : "",
			   p->key ? p->key : "", p->key ? "]" : "", cursor, last);
	else
		proto_logf("INFO", "%s%s%s%s: %s sync from %s to %s (cursor %s)", s->name, p->key ? "[" : "",
			   p->key ? p->key : "", p->key ? "]" : "", s->incremental ? "incremental" : "full refresh",
			   first, last, cursor);
}

static int read_partition(struct stream_run *s, struct partition *p)
{
	int64_t from = s->start_day;
	if (s->incremental && p->cursor != NO_CURSOR) {
		int64_t resume = p->cursor + 1 - s->lookback_days;
		from = resume > s->start_day ? resume : s->start_day;
	}
	log_plan(s, p, from);
	while (from <= s->end_day) {
		int64_t to = s->end_day;
		if (s->window_days > 0 && from + s->window_days - 1 < to)
			to = from + s->window_days - 1;
		if (read_window(s, p, from, to))
			return -1;
		from = to + 1;
	}
	return 0;
}

static int read_cursor_field(struct stream_run *s)
{
	lua_State *L = s->L;
	lua_getfield(L, s->def, "cursor_field");
	int ok = lua_type(L, -1) == LUA_TSTRING && lua_rawlen(L, -1) < sizeof s->cursor_field;
	if (ok)
		snprintf(s->cursor_field, sizeof s->cursor_field, "%s", lua_tostring(L, -1));
	lua_pop(L, 1);
	if (!ok)
		return run_fail(s, PROTO_SYSTEM_ERROR, "stream '%s' declares no cursor_field", s->name);
	return 0;
}

static int run_stream(struct stream_run *s, int states)
{
	if (read_cursor_field(s) || load_partitions(s) || (s->incremental && load_cursors(s, states)) || plan(s))
		return -1;
	for (size_t i = 0; i < s->nparts; i++)
		if (read_partition(s, &s->parts[i]))
			return -1;
	return 0;
}

/* Reports a failed stream: the state of what was emitted first, then the status and the error.
 * With nothing emitted since the last STATE, no new one: the platform keeps the one it has. */
static void report_failure(struct stream_run *s)
{
	if (s->parts && s->records_since_state > 0 && !proto_stdout_failed()) {
		struct sync_error saved = s->err;
		s->err.set = 0;
		checkpoint(s);
		s->err = saved;
	}
	proto_stream_status(s->name, "INCOMPLETE", 0);
	proto_trace_error(s->err.type, s->err.message, NULL, s->err.stack[0] ? s->err.stack : NULL);
}

static int read_stream(lua_State *L, int script, int config, int legacy, int states, int configured)
{
	struct stream_run s;
	memset(&s, 0, sizeof s);
	s.L = L;
	lua_getfield(L, configured, "stream");
	lua_getfield(L, -1, "name");
	s.name = lua_tostring(L, -1);
	lua_getfield(L, configured, "sync_mode");
	s.incremental = !strcmp(lua_tostring(L, -1), "incremental");
	sync_push_stream_def(L, script, s.name);
	s.def = lua_gettop(L);
	s.script = script;
	s.config = config;
	s.legacy = legacy;
	lua_pushnil(L); /* slot for the partitions userdata */
	lua_newtable(L);
	s.keys = lua_gettop(L);
	http_settings.stream = s.name;
	proto_stream_status(s.name, "STARTED", 0);
	int rc;
	if (lua_isnil(L, s.def)) {
		s.parts = NULL;
		rc = run_fail(&s, PROTO_CONFIG_ERROR, "the catalog asks for stream '%s', which this source does not have",
			      s.name);
	} else {
		rc = run_stream(&s, states);
		/* Every stream ends with a STATE, even one with nothing new (a future cursor, a holiday). */
		if (!rc && (s.records_since_state > 0 || s.states_emitted == 0))
			rc = checkpoint(&s);
	}
	if (rc)
		report_failure(&s);
	else
		proto_stream_status(s.name, "COMPLETE", 0);
	http_settings.stream = NULL;
	lua_settop(L, configured);
	return rc;
}

void sync_push_stream_def(lua_State *L, int script, const char *name)
{
	lua_getfield(L, script, "streams");
	int streams = lua_gettop(L);
	if (lua_istable(L, streams)) {
		lua_Integer n = (lua_Integer)lua_rawlen(L, streams);
		for (lua_Integer i = 1; i <= n; i++) {
			lua_rawgeti(L, streams, i);
			lua_getfield(L, -1, "name");
			int match = lua_type(L, -1) == LUA_TSTRING && !strcmp(lua_tostring(L, -1), name);
			lua_pop(L, 1);
			if (match) {
				lua_remove(L, streams);
				return;
			}
			lua_pop(L, 1);
		}
	}
	lua_pop(L, 1);
	lua_pushnil(L);
}

/* The legacy blob starts as the incoming state so that copying it keeps streams not synced now. */
static int push_legacy(lua_State *L, int states)
{
	lua_newtable(L);
	lua_pushnil(L);
	while (lua_next(L, states)) {
		lua_pushvalue(L, -2);
		lua_insert(L, -2);
		lua_rawset(L, -4);
	}
	return lua_gettop(L);
}

int sync_read(lua_State *L, int script, int config, int catalog, int states)
{
	int legacy = push_legacy(L, states);
	lua_getfield(L, catalog, "streams");
	int streams = lua_gettop(L);
	lua_Integer n = (lua_Integer)lua_rawlen(L, streams);
	int failed = 0;
	for (lua_Integer i = 1; i <= n && !host_cancelled && !proto_stdout_failed(); i++) {
		lua_rawgeti(L, streams, i);
		if (read_stream(L, script, config, legacy, states, lua_gettop(L)))
			failed = 1;
		lua_pop(L, 1);
	}
	http_response_free(&page);
	lua_settop(L, legacy - 1);
	if (host_cancelled && !failed) {
		proto_trace_error(PROTO_TRANSIENT_ERROR, "the sync was cancelled (SIGTERM)", NULL, NULL);
		failed = 1;
	}
	return failed;
}
