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
#include <unistd.h>

#include "buf.h"
#include "date.h"
#include "host.h"
#include "http.h"
#include "json.h"
#include "pool.h"
#include "proto.h"
#include "records.h"
#include "runtime.h"
#include "secrets.h"

#define NO_CURSOR INT64_MIN
#define MAX_PAGES_PER_WINDOW 100000
/* No server takes more; a bigger request is a config mistake (a pasted file), not a network fault. */
#define MAX_URL_BYTES (64 * 1024)
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
	struct runtime *rt;
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
	int legacy_behind; /* the legacy blob's entry for this stream is older than its last STATE */
	struct buf state_json; /* the last STATE's stream_state, reused from one page to the next */
	int running_sent;
	struct sync_error err;
};

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
	/* Keys are C strings from here on (the state's member names, ctx.partition). */
	if (strlen(lua_tostring(L, value_idx)) != lua_rawlen(L, value_idx))
		return run_fail(s, PROTO_CONFIG_ERROR, "stream '%s': partition %d contains a NUL character", s->name,
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
	/* The state holds both side by side: {partition_state_key = {...}, cursor_field = day}. */
	if (!strcmp(s->partition_key, s->cursor_field))
		return run_fail(s, PROTO_SYSTEM_ERROR,
				"stream '%s': partition_state_key '%s' is also the cursor field; the state needs both",
				s->name, s->partition_key);
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
	int type = lua_getfield(L, states, s->name);
	int stream_state = lua_gettop(L);
	if (type != LUA_TTABLE) {
		lua_settop(L, top);
		/* A cursor we cannot read must not be dropped: that would re-send everything. */
		if (type != LUA_TNIL)
			return run_fail(s, PROTO_CONFIG_ERROR, "state: the state of stream '%s' must be an object, not a %s",
					s->name, lua_typename(L, type));
		return 0;
	}
	int64_t shared = NO_CURSOR;
	char whose[300];
	snprintf(whose, sizeof whose, "stream '%s'", s->name);
	if (cursor_from(s, stream_state, whose, &shared))
		return -1;
	type = lua_getfield(L, stream_state, s->partition_key);
	int map = s->partitioned && type == LUA_TTABLE && lua_rawlen(L, -1) == 0 ? lua_gettop(L) : 0;
	/* A per-partition map we cannot read is only harmless when the top-level cursor, the minimum
	 * over partitions, can stand in for it; otherwise ignoring it would re-send everything. */
	if (s->partitioned && type != LUA_TNIL && !map && shared == NO_CURSOR)
		return run_fail(s, PROTO_CONFIG_ERROR, "state: '%s' of stream '%s' must be an object of {%s = day}",
				s->partition_key, s->name, s->cursor_field);
	for (size_t i = 0; i < s->nparts; i++) {
		s->parts[i].cursor = map ? NO_CURSOR : shared;
		if (!map)
			continue;
		int entry = lua_getfield(L, map, s->parts[i].key);
		snprintf(whose, sizeof whose, "partition '%s' of stream '%s'", s->parts[i].key, s->name);
		if (entry == LUA_TTABLE) {
			if (cursor_from(s, lua_gettop(L), whose, &s->parts[i].cursor))
				return -1;
		} else if (entry != LUA_TNIL) {
			return run_fail(s, PROTO_CONFIG_ERROR, "state: %s must be an object like {\"%s\": \"YYYY-MM-DD\"}",
					whose, s->cursor_field);
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

/* "name":"YYYY-MM-DD" */
static void write_day_member(struct buf *out, const char *name, int64_t day)
{
	char text[DATE_DAY_LEN];
	json_write_string(out, name, strlen(name));
	buf_putc(out, ':');
	date_format_day(day, text);
	json_write_string(out, text, strlen(text));
}

/* The stream's state, {cursor: min over partitions, partition_key: {key: {cursor: day}}} or
 * {cursor: day}, written as JSON from C: a STATE per page would otherwise build and encode a Lua
 * table of every partition's cursor (~30 us a page at 40 tickers, and it grows with them). The
 * top-level cursor means "every partition is complete up to here", as the legacy state did. */
static void write_stream_state(const struct stream_run *s, struct buf *out)
{
	int64_t least = NO_CURSOR;
	int all_have_cursors = 1, members = 0;
	buf_putc(out, '{');
	if (s->partitioned) {
		json_write_string(out, s->partition_key, strlen(s->partition_key));
		buf_puts(out, ":{");
		for (size_t i = 0; i < s->nparts; i++) {
			const struct partition *p = &s->parts[i];
			if (p->cursor == NO_CURSOR) {
				all_have_cursors = 0;
				continue;
			}
			if (least == NO_CURSOR || p->cursor < least)
				least = p->cursor;
			if (members++)
				buf_putc(out, ',');
			json_write_string(out, p->key, strlen(p->key));
			buf_puts(out, ":{");
			write_day_member(out, s->cursor_field, p->cursor);
			buf_putc(out, '}');
		}
		buf_putc(out, '}');
	} else {
		least = s->parts[0].cursor;
	}
	if (least != NO_CURSOR && all_have_cursors) {
		if (s->partitioned)
			buf_putc(out, ',');
		write_day_member(out, s->cursor_field, least);
	}
	buf_putc(out, '}');
}

static int checkpoint(struct stream_run *s)
{
	buf_clear(&s->state_json);
	write_stream_state(s, &s->state_json);
	char err[256];
	int rc = proto_stream_state_json(&s->rt->out, s->L, s->name, s->state_json.data, s->state_json.len, s->legacy,
					 s->records_since_state, err, sizeof err);
	if (rc)
		return run_fail(s, PROTO_SYSTEM_ERROR, "cannot write the state of stream '%s': %s", s->name, err);
	s->legacy_behind = 1;
	s->records_since_state = 0;
	s->states_emitted++;
	return 0;
}

/* The legacy blob, which the STATEs of later streams carry, gets this stream's last state: the
 * last STATE's own text, decoded. */
static void catch_up_legacy(struct stream_run *s)
{
	if (!s->legacy_behind)
		return;
	json_decode_push(s->L, s->state_json.data, s->state_json.len);
	lua_pop(s->L, 1);
	lua_setfield(s->L, s->legacy, s->name);
	s->legacy_behind = 0;
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

/*
 * The page loop. Partitions are read by up to `concurrency` slots at once on one libcurl multi
 * handle; a slot reads one partition at a time, window by window, page by page, so each
 * partition's records and checkpoints stay in order while the network is kept busy. Lua runs only
 * between transfers, never inside a libcurl callback.
 */
struct slot {
	struct http_transfer transfer;
	struct partition *p; /* NULL when the slot has no partition left to read */
	int64_t from, to;    /* the window being read */
	int busy;            /* a transfer is running */
	int mapping;         /* parse gave a batch whose page a worker is still walking */
	int parked;          /* its answer came while enough pages were being walked: parse waits */
	int64_t not_before_ms;
	int pages;
	struct http_retry retry;
	char origin[512];
};

struct slots {
	size_t count;
	struct slot slot[];
};

static void slots_release(struct slots *all)
{
	for (size_t i = 0; i < all->count; i++)
		http_transfer_free(&all->slot[i].transfer);
	all->count = 0;
}

static int slots_gc(lua_State *L)
{
	slots_release(lua_touserdata(L, 1));
	return 0;
}

/* The slots live in a userdata so that their buffers and handles are freed even after a Lua error. */
static struct slots *push_slots(lua_State *L, size_t count)
{
	struct slots *all = lua_newuserdatauv(L, sizeof *all + count * sizeof all->slot[0], 0);
	memset(all, 0, sizeof *all + count * sizeof all->slot[0]);
	if (luaL_newmetatable(L, "source_lua.sync.slots")) {
		lua_pushcfunction(L, slots_gc);
		lua_setfield(L, -2, "__gc");
	}
	lua_setmetatable(L, -2);
	all->count = count;
	return all;
}

struct engine {
	struct stream_run *s;
	struct slots *slots;
	int anchors; /* anchors[i] = {ctx, headers, seen, url} of slot i, keeping its Lua values alive */
	size_t next_partition;
};

/* Pushes field of slot i's anchor table. */
static void push_anchor(struct engine *e, size_t i, const char *field)
{
	lua_State *L = e->s->L;
	lua_rawgeti(L, e->anchors, (lua_Integer)i + 1);
	lua_getfield(L, -1, field);
	lua_remove(L, -2);
}

/* Sets field of slot i's anchor table to the value on top (popped). */
static void set_anchor(struct engine *e, size_t i, const char *field)
{
	lua_State *L = e->s->L;
	lua_rawgeti(L, e->anchors, (lua_Integer)i + 1);
	lua_insert(L, -2);
	lua_setfield(L, -2, field);
	lua_pop(L, 1);
}

/* Lets the script phrase an HTTP error (describe_error(status, body, ctx) -> message [, failure_type]). */
static int fail_http_status(struct engine *e, size_t i)
{
	struct stream_run *s = e->s;
	lua_State *L = s->L;
	const struct http_response *resp = &e->slots->slot[i].transfer.resp;
	char message[1024];
	api_message(L, resp, message, sizeof message);
	enum proto_failure type = resp->status < 400 ? PROTO_SYSTEM_ERROR : PROTO_CONFIG_ERROR;
	if (push_hook(s, "describe_error")) {
		lua_pushinteger(L, resp->status);
		json_decode_push(L, resp->body.data ? resp->body.data : "", resp->body.len);
		lua_pop(L, 1);
		push_anchor(e, i, "ctx");
		if (host_call(L, 3, 2) != LUA_OK)
			return run_fail_script(s, "describe_error failed");
		if (lua_isstring(L, -2))
			snprintf(message, sizeof message, "%s", lua_tostring(L, -2));
		if (lua_isstring(L, -1))
			proto_failure_from_name(lua_tostring(L, -1), &type);
		lua_pop(L, 2);
	}
	push_anchor(e, i, "url");
	run_fail(s, type, "stream '%s': HTTP %ld from %s: %s", s->name, resp->status, lua_tostring(L, -1), message);
	lua_pop(L, 1);
	return -1;
}

/* A request libcurl could not make and asking again would not mend: an untrusted certificate, a
 * URL it cannot fetch, a redirect loop (what the user's config or network must change), or an
 * answer past the size cap (the API's fault). */
static int fail_transfer(struct engine *e, size_t i)
{
	struct stream_run *s = e->s;
	lua_State *L = s->L;
	const struct http_response *resp = &e->slots->slot[i].transfer.resp;
	char why[CURL_ERROR_SIZE + 64];
	http_describe_failure(resp, why, sizeof why);
	push_anchor(e, i, "url");
	run_fail(s, resp->body_too_large ? PROTO_SYSTEM_ERROR : PROTO_CONFIG_ERROR, "stream '%s': cannot fetch %s: %s",
		 s->name, lua_tostring(L, -1), why);
	lua_pop(L, 1);
	return -1;
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

/* Whether a record of day belongs to the window, and that it keeps the partition's order:
 * 1 to write it, 0 to skip it, -1 on error. */
static int admit_record(struct stream_run *s, const struct partition *p, int64_t day, int64_t from, int64_t to)
{
	if (day < from || day > to)
		return 0;
	if (p->last_emitted != NO_CURSOR && day < p->last_emitted)
		return run_fail(s, PROTO_SYSTEM_ERROR,
				"stream '%s': records must come in ascending %s order (a page went backwards)", s->name,
				s->cursor_field);
	if (!s->running_sent) {
		proto_stream_status(&s->rt->out, s->name, "RUNNING", 0);
		s->running_sent = 1;
	}
	return 1;
}

static void count_record(struct stream_run *s, struct partition *p, int64_t day)
{
	s->records_since_state++;
	p->last_emitted = day;
	if (p->cursor == NO_CURSOR || day > p->cursor)
		p->cursor = day;
}

/* Records that parse built as Lua tables. */
static int emit_tables(struct stream_run *s, struct partition *p, int records, int64_t from, int64_t to)
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
		int admit = admit_record(s, p, day, from, to);
		if (admit < 0)
			return -1;
		char err[256];
		if (admit && proto_record(&s->rt->out, L, s->name, record, emitted_at, err, sizeof err))
			return run_fail(s, PROTO_SYSTEM_ERROR, "stream '%s': record %d cannot be written: %s", s->name,
					(int)i, err);
		if (admit)
			count_record(s, p, day);
		lua_pop(L, 1);
	}
	return 0;
}

/* Records that a declared mapper wrote from the page (mapper:map): already JSON, days known. */
static int emit_batch(struct stream_run *s, struct partition *p, const struct record_batch *b, int64_t from,
		      int64_t to)
{
	size_t n = records_batch_count(b);
	int column = records_batch_day_column(b, s->cursor_field);
	if (n > 0 && column < 0)
		return run_fail(s, PROTO_SYSTEM_ERROR,
				"stream '%s': the declared records have no day field '%s' (the cursor field): declare it "
				"with as = \"day\" or as = \"day_from_ms\"",
				s->name, s->cursor_field);
	/* Framed for this stream already (the usual case): runs of admitted records, adjacent in the
	 * batch, are written as they are. A script that mapped with another ctx.stream gets its data
	 * framed here, record by record. */
	int framed = records_batch_framed_for(b, s->name);
	int64_t first, last;
	/* admit_record for the first record fails the sync when it goes backwards: checked first. */
	if (framed && records_batch_day_span(b, column, &first, &last) && last <= to &&
	    (p->last_emitted == NO_CURSOR || first >= p->last_emitted) && admit_record(s, p, first, from, to) == 1) {
		/* Every record admitted, in order: what the loop below would do, record by record. */
		const char *lines;
		size_t len;
		records_batch_lines(b, &lines, &len);
		proto_write_lines(&s->rt->out, lines, len);
		s->records_since_state += n - 1;
		count_record(s, p, last);
		return 0;
	}
	struct proto_record_frame frame = {{0}, {0}};
	if (!framed)
		proto_record_frame_init(&frame, s->name, date_now_ms());
	const char *run = NULL;
	size_t run_len = 0;
	int rc = 0;
	for (size_t i = 0; i < n && rc == 0; i++) {
		const char *data;
		size_t len;
		int64_t day;
		records_batch_get(b, i, column, &data, &len, &day);
		int admit = day == RECORDS_NO_DAY ? run_fail(s, PROTO_SYSTEM_ERROR, "stream '%s': record %zu has no %s",
							     s->name, i + 1, s->cursor_field)
						  : admit_record(s, p, day, from, to);
		if (admit < 0) {
			rc = -1;
		} else if (admit == 0 || !framed) {
			if (run)
				proto_write_lines(&s->rt->out, run, run_len);
			run = NULL;
			if (admit)
				proto_record_framed(&s->rt->out, &frame, data, len);
		} else {
			const char *line;
			size_t line_len;
			records_batch_line(b, i, &line, &line_len);
			if (!run)
				run = line, run_len = 0;
			run_len += line_len;
		}
		if (admit > 0)
			count_record(s, p, day);
	}
	if (run)
		proto_write_lines(&s->rt->out, run, run_len);
	proto_record_frame_free(&frame);
	return rc;
}

/* Leaves on top the next URL to follow: the one given (at next_idx) if any, else, for a batch,
 * the one its page gave; nil when there is none or it is not a non-empty string. */
static void push_next_url(lua_State *L, int next_idx, const struct record_batch *batch)
{
	if (lua_isnil(L, next_idx) && batch)
		records_batch_push_next_url(L, batch);
	else
		lua_pushvalue(L, next_idx);
	if (!lua_isnil(L, -1) && (lua_type(L, -1) != LUA_TSTRING || lua_rawlen(L, -1) == 0)) {
		lua_pop(L, 1);
		lua_pushnil(L);
	}
}

/* Emits the records of a walked batch (at batch_idx, parse's second result at next_idx) and
 * leaves the next URL on top. Returns 1, with why, when the page was not JSON. */
static int finish_batch(struct engine *e, size_t i, int batch_idx, int next_idx, char *why, size_t whylen)
{
	struct stream_run *s = e->s;
	struct slot *slot = &e->slots->slot[i];
	const struct record_batch *batch = records_to_batch(s->L, batch_idx);
	char reason[512];
	switch (records_batch_settle(batch, reason, sizeof reason)) {
	case RECORDS_NOT_JSON:
		snprintf(why, whylen, "HTTP %ld with a body that is not JSON (%s)", slot->transfer.resp.status, reason);
		records_batch_release(s->L, batch_idx); /* the page is asked for again: this one is garbage */
		return 1;
	case RECORDS_WRONG_SHAPE:
		return run_fail(s, PROTO_SYSTEM_ERROR, "stream '%s': parse(ctx, response) failed: %s", s->name, reason);
	default:
		break;
	}
	if (emit_batch(s, slot->p, batch, slot->from, slot->to))
		return -1;
	push_next_url(s->L, next_idx, batch);
	records_batch_release(s->L, batch_idx);
	return 0;
}

/* Calls parse(ctx, response) on the answer and emits the records; leaves the next URL or nil.
 * Returns 1, with why, when the answer turned out not to be JSON (worth asking again), and 2
 * (nothing left) when parse gave a batch still being walked: finish_mapped takes it from there. */
static int handle_page(struct engine *e, size_t i, char *why, size_t whylen)
{
	struct stream_run *s = e->s;
	struct slot *slot = &e->slots->slot[i];
	const struct http_response *resp = &slot->transfer.resp;
	lua_State *L = s->L;
	int top = lua_gettop(L);
	if (!push_hook(s, "parse"))
		return run_fail(s, PROTO_SYSTEM_ERROR, "stream '%s' has no parse(ctx, response) function", s->name);
	push_anchor(e, i, "url");
	records_push_response_taking(L, resp->status, -1, &slot->transfer.resp.body);
	lua_remove(L, -2);
	int response = top + 2;
	lua_pushvalue(L, top + 1);
	push_anchor(e, i, "ctx");
	lua_pushvalue(L, response);
	int called = host_call(L, 2, 2);
	/* Whatever parse made of the answer, its buffer is not the collector's to free: it goes now,
	 * or with the last batch still walking it. */
	records_response_release(L, response);
	if (called != LUA_OK) {
		char reason[256];
		if (records_response_not_json(L, response, reason, sizeof reason)) {
			snprintf(why, whylen, "HTTP %ld with a body that is not JSON (%s)", resp->status, reason);
			lua_settop(L, top);
			return 1;
		}
		return run_fail_script(s, "parse(ctx, response) failed");
	}
	int records = top + 3, next = top + 4;
	const struct record_batch *batch = records_to_batch(L, records);
	if (batch && records_batch_released(batch))
		return run_fail(s, PROTO_SYSTEM_ERROR,
				"stream '%s': parse returned a batch whose records were already written (one kept from an "
				"earlier page); return the batch of this page's response",
				s->name);
	if (!batch && !lua_isnil(L, records) && !lua_istable(L, records))
		return run_fail(s, PROTO_SYSTEM_ERROR, "stream '%s': parse must return a list of records, not a %s",
				s->name, luaL_typename(L, records));
	if (batch && !records_batch_ready(batch)) {
		lua_pushvalue(L, records);
		set_anchor(e, i, "batch");
		lua_pushvalue(L, next);
		set_anchor(e, i, "next");
		slot->mapping = 1;
		lua_settop(L, top);
		return 2;
	}
	int rc = 0;
	if (batch)
		rc = finish_batch(e, i, records, next, why, whylen);
	else if (lua_istable(L, records) && emit_tables(s, slot->p, records, slot->from, slot->to))
		rc = -1;
	else
		push_next_url(L, next, NULL);
	if (rc) {
		if (rc > 0)
			lua_settop(L, top);
		return rc;
	}
	lua_replace(L, top + 1);
	lua_settop(L, top + 1);
	return 0;
}

static int check_next_url(struct engine *e, size_t i, const char *next)
{
	struct stream_run *s = e->s;
	lua_State *L = s->L;
	char next_origin[512];
	if (http_origin(&s->rt->http, next, next_origin, sizeof next_origin) || strcmp(e->slots->slot[i].origin, next_origin))
		return run_fail(s, PROTO_SYSTEM_ERROR,
				"stream '%s': the next page is on another host (%s); refusing to send credentials there",
				s->name, next_origin);
	push_anchor(e, i, "seen");
	int repeated = lua_getfield(L, -1, next) != LUA_TNIL;
	lua_pop(L, 2);
	if (repeated)
		return run_fail(s, PROTO_SYSTEM_ERROR, "stream '%s': pagination loop, the API sent the same next URL twice",
				s->name);
	if (e->slots->slot[i].pages >= MAX_PAGES_PER_WINDOW)
		return run_fail(s, PROTO_SYSTEM_ERROR, "stream '%s': more than %d pages in one window", s->name,
				MAX_PAGES_PER_WINDOW);
	return 0;
}

/* Asks the script for the first page of the window starting at from. */
static int begin_window(struct engine *e, size_t i, int64_t from)
{
	struct stream_run *s = e->s;
	struct slot *slot = &e->slots->slot[i];
	lua_State *L = s->L;
	int top = lua_gettop(L);
	slot->from = from;
	slot->to = s->end_day;
	if (s->window_days > 0 && from + s->window_days - 1 < slot->to)
		slot->to = from + s->window_days - 1;
	lua_createtable(L, 0, 4);
	lua_rawseti(L, e->anchors, (lua_Integer)i + 1);
	push_context(s, slot->p, slot->from, slot->to);
	lua_pushvalue(L, -1);
	set_anchor(e, i, "ctx");
	if (!push_hook(s, "request"))
		return run_fail(s, PROTO_SYSTEM_ERROR, "stream '%s' has no request(ctx) function", s->name);
	lua_insert(L, -2);
	if (host_call(L, 1, 2) != LUA_OK)
		return run_fail_script(s, "request(ctx) failed");
	if (lua_type(L, -2) != LUA_TSTRING)
		return run_fail(s, PROTO_SYSTEM_ERROR, "stream '%s': request(ctx) must return a URL string", s->name);
	if (http_push_headers(L, -1) != LUA_OK)
		return run_fail(s, PROTO_SYSTEM_ERROR, "stream '%s': request options: %s", s->name, lua_tostring(L, -1));
	set_anchor(e, i, "headers");
	lua_pop(L, 1);
	if (lua_rawlen(L, -1) > MAX_URL_BYTES)
		return run_fail(s, PROTO_CONFIG_ERROR, "stream '%s': request(ctx) built a URL of %zu bytes (at most %d)",
				s->name, (size_t)lua_rawlen(L, -1), MAX_URL_BYTES);
	if (http_origin(&s->rt->http, lua_tostring(L, -1), slot->origin, sizeof slot->origin))
		return run_fail(s, PROTO_CONFIG_ERROR, "stream '%s': '%s' is not a valid URL", s->name, lua_tostring(L, -1));
	set_anchor(e, i, "url");
	lua_newtable(L);
	set_anchor(e, i, "seen");
	slot->pages = 0;
	slot->not_before_ms = 0;
	http_retry_start(&slot->retry);
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
	const char *open = p->key ? "[" : "", *key = p->key ? p->key : "", *close = p->key ? "]" : "";
	if (from > s->end_day)
		proto_logf(&s->rt->out, "INFO", "%s%s%s%s: up to date (cursor %s, last complete day %s)", s->name, open, key, close,
			   cursor, last);
	else
		proto_logf(&s->rt->out, "INFO", "%s%s%s%s: %s sync from %s to %s (cursor %s)", s->name, open, key, close,
			   s->incremental ? "incremental" : "full refresh", first, last, cursor);
}

/* Gives the slot the next partition with days to read, or leaves it idle for good. */
static int next_partition(struct engine *e, size_t i)
{
	struct stream_run *s = e->s;
	struct slot *slot = &e->slots->slot[i];
	slot->p = NULL;
	while (e->next_partition < s->nparts) {
		struct partition *p = &s->parts[e->next_partition++];
		int64_t from = s->start_day;
		if (s->incremental && p->cursor != NO_CURSOR) {
			int64_t resume = p->cursor + 1 - s->lookback_days;
			from = resume > s->start_day ? resume : s->start_day;
		}
		log_plan(s, p, from);
		if (from <= s->end_day) {
			slot->p = p;
			return begin_window(e, i, from);
		}
	}
	return 0;
}

static int start_transfer(struct engine *e, size_t i)
{
	struct stream_run *s = e->s;
	struct slot *slot = &e->slots->slot[i];
	lua_State *L = s->L;
	push_anchor(e, i, "seen");
	push_anchor(e, i, "url");
	lua_pushvalue(L, -1);
	lua_pushboolean(L, 1);
	lua_rawset(L, -4);
	push_anchor(e, i, "headers");
	int rc = http_transfer_start(&s->rt->http, &slot->transfer, lua_tostring(L, -2), http_header_list(L, -1));
	lua_pop(L, 3);
	if (rc)
		return run_fail(s, PROTO_SYSTEM_ERROR, "stream '%s': cannot start an HTTP transfer", s->name);
	slot->busy = 1;
	return 0;
}

/* A page arrived and was emitted: follow next_url, or move to the next window or partition. */
static int after_page(struct engine *e, size_t i)
{
	struct stream_run *s = e->s;
	struct slot *slot = &e->slots->slot[i];
	lua_State *L = s->L;
	if (s->records_since_state > 0 && checkpoint(s))
		return -1;
	if (!lua_isnil(L, -1)) {
		slot->pages++;
		if (check_next_url(e, i, lua_tostring(L, -1)))
			return -1;
		set_anchor(e, i, "url");
		http_retry_start(&slot->retry);
		slot->not_before_ms = 0;
		return 0;
	}
	lua_pop(L, 1);
	if (slot->to < s->end_day)
		return begin_window(e, i, slot->to + 1);
	return next_partition(e, i);
}

/* The answer was not usable (a network fault, a 5xx, a 429, a body that is not JSON): asks again
 * later, or gives up once the retry budget is spent. */
static int retry_later(struct engine *e, size_t i, const char *why)
{
	struct stream_run *s = e->s;
	struct slot *slot = &e->slots->slot[i];
	int64_t delay = http_retry_delay(&s->rt->http, &slot->retry, &slot->transfer.resp, why, s->name);
	if (delay < 0)
		return run_fail(s, PROTO_TRANSIENT_ERROR,
				"stream '%s': gave up after %d attempts over %.0f s; last error: %s", s->name,
				slot->retry.attempt + 1, (double)(date_now_ms() - slot->retry.started_ms) / 1000.0, why);
	slot->not_before_ms = date_now_ms() + delay;
	return 0;
}

/* A page's records are written, and its text and record buffers were released with them. What
 * is left of it in Lua is a few KB, unless the script built tables from response.body (a
 * decade of bars is ~2 MB of them), or left answers or batches behind that the collector does
 * not know hold ~1 MB each (a batch it made and did not return): then its garbage is collected
 * now, which keeps memory at about one page per slot instead of letting the heap double
 * between cycles. A full collection after every page cost ~25 us a page (docs/PERFORMANCE.md,
 * item 14); then on to the next page. */
#define COLLECT_ABOVE_KB 1024

static int page_done(struct engine *e, size_t i)
{
	/* A slot holds at most an answer and its batch. */
	size_t held_by_slots = 2 * e->slots->count;
	if (lua_gc(e->s->L, LUA_GCCOUNT) > COLLECT_ABOVE_KB || records_held(e->s->rt) > held_by_slots + 2)
		lua_gc(e->s->L, LUA_GCCOLLECT);
	return after_page(e, i);
}

/* Decides what a finished transfer means: a page, an error, or a retry later. */
static int on_transfer_done(struct engine *e, size_t i)
{
	struct stream_run *s = e->s;
	struct slot *slot = &e->slots->slot[i];
	const struct http_response *resp = &slot->transfer.resp;
	char why[CURL_ERROR_SIZE + 640];
	slot->busy = 0;
	if (host_cancelled)
		return run_fail(s, PROTO_TRANSIENT_ERROR, "the sync was cancelled (SIGTERM)");
	int retryable = http_is_retryable(resp);
	if (!retryable && resp->code != CURLE_OK)
		return fail_transfer(e, i); /* before the status: a 200 whose body was cut off is no page */
	if (!retryable && resp->status >= 200 && resp->status < 300) {
		int rc = handle_page(e, i, why, sizeof why);
		if (rc < 0)
			return -1;
		if (rc == 0)
			return page_done(e, i);
		if (rc == 2)
			return 0;
	} else if (!retryable) {
		return fail_http_status(e, i);
	} else {
		http_describe_failure(resp, why, sizeof why);
	}
	return retry_later(e, i, why);
}

/* Pages handed to the workers and not yet finished, at most: each holds its text and its records
 * (~1 MB for a decade of bars), so holding one per slot would make memory grow with concurrency
 * by that much; a page that arrives beyond this waits in its transfer buffer, which exists anyway. */
static int max_pages_mapping(const struct engine *e)
{
	return pool_threads(&e->s->rt->pool) + 1;
}

static int pages_mapping(const struct engine *e)
{
	int n = 0;
	for (size_t i = 0; i < e->slots->count; i++)
		n += e->slots->slot[i].mapping;
	return n;
}

/* A finished transfer: handled now, or parked until fewer pages are being walked. */
static int transfer_finished(struct engine *e, size_t i)
{
	struct slot *slot = &e->slots->slot[i];
	if (pool_running(&e->s->rt->pool) && pages_mapping(e) >= max_pages_mapping(e)) {
		slot->busy = 0;
		slot->parked = 1;
		return 0;
	}
	return on_transfer_done(e, i);
}

static int unpark(struct engine *e)
{
	for (size_t i = 0; i < e->slots->count && pages_mapping(e) < max_pages_mapping(e); i++) {
		struct slot *slot = &e->slots->slot[i];
		if (slot->parked) {
			slot->parked = 0;
			if (on_transfer_done(e, i))
				return -1;
		}
	}
	return 0;
}

/* Emits the pages whose walk has finished since the last look, in any slot. */
static int finish_mapped(struct engine *e)
{
	lua_State *L = e->s->L;
	for (size_t i = 0; i < e->slots->count; i++) {
		struct slot *slot = &e->slots->slot[i];
		if (!slot->mapping)
			continue;
		int top = lua_gettop(L);
		push_anchor(e, i, "batch");
		push_anchor(e, i, "next");
		if (!records_batch_ready(records_to_batch(L, top + 1))) {
			lua_settop(L, top);
			continue;
		}
		slot->mapping = 0;
		char why[640];
		int rc = finish_batch(e, i, top + 1, top + 2, why, sizeof why);
		if (rc >= 0) {
			lua_pushnil(L);
			set_anchor(e, i, "batch");
			lua_pushnil(L);
			set_anchor(e, i, "next");
		}
		if (rc < 0)
			return -1;
		if (rc > 0) {
			lua_settop(L, top);
			if (retry_later(e, i, why))
				return -1;
			continue;
		}
		lua_replace(L, top + 1);
		lua_settop(L, top + 1);
		if (page_done(e, i))
			return -1;
		lua_settop(L, top);
	}
	return 0;
}

/* Starts what may start now; returns how many slots still have work, and the next start time. */
static int start_ready(struct engine *e, int *busy, int *mapping, int64_t *wake_at)
{
	int active = 0;
	*busy = 0;
	*mapping = 0;
	*wake_at = INT64_MAX;
	for (size_t i = 0; i < e->slots->count; i++) {
		struct slot *slot = &e->slots->slot[i];
		if (!slot->p)
			continue;
		active++;
		if (!slot->busy && !slot->mapping && !slot->parked) {
			int64_t now = date_now_ms();
			int64_t ready = slot->not_before_ms;
			int64_t budget = now + http_budget_delay_ms(&e->s->rt->http);
			if (budget > ready)
				ready = budget;
			if (ready <= now && start_transfer(e, i))
				return -1;
			if (!slot->busy && ready < *wake_at)
				*wake_at = ready;
		}
		*busy += slot->busy;
		*mapping += slot->mapping;
	}
	return active;
}

static int pump(struct engine *e)
{
	for (;;) {
		if (host_cancelled)
			return run_fail(e->s, PROTO_TRANSIENT_ERROR, "the sync was cancelled (SIGTERM)");
		if (proto_stdout_failed(&e->s->rt->out))
			return run_fail(e->s, PROTO_SYSTEM_ERROR, "stdout was closed: nobody reads the sync any more");
		/* Emptied before looking, so that a walk finishing after the look wakes the wait below. */
		pool_drain_done_fd(&e->s->rt->pool);
		if (finish_mapped(e) || unpark(e))
			return -1;
		int busy, mapping;
		int64_t wake_at;
		int active = start_ready(e, &busy, &mapping, &wake_at);
		if (active <= 0)
			return active;
		int64_t wait = wake_at == INT64_MAX ? 1000 : wake_at - date_now_ms();
		int timeout = wait < 0 ? 0 : wait > 1000 ? 1000 : (int)wait;
		int wake_fd = mapping ? pool_done_fd(&e->s->rt->pool) : -1;
		if (!busy) {
			if (wake_fd >= 0)
				http_wait_fd(wake_fd, timeout);
			else
				http_sleep_ms(timeout);
			continue;
		}
		struct http_transfer *done = http_transfers_wait(&e->s->rt->http, timeout, wake_fd);
		while (done) {
			size_t i = (size_t)((struct slot *)(void *)done - e->slots->slot);
			if (transfer_finished(e, i))
				return -1;
			done = http_transfers_wait(&e->s->rt->http, 0, -1);
		}
	}
}

static int read_partitions(struct stream_run *s)
{
	lua_State *L = s->L;
	int top = lua_gettop(L);
	size_t count = (size_t)s->rt->http_settings.concurrency;
	if (count > s->nparts)
		count = s->nparts;
	if (count < 1)
		count = 1;
	struct engine e = {s, push_slots(L, count), 0, 0};
	lua_createtable(L, (int)count, 0);
	e.anchors = lua_gettop(L);
	int rc = 0;
	for (size_t i = 0; i < count && !rc; i++)
		rc = next_partition(&e, i);
	if (!rc)
		rc = pump(&e);
	slots_release(e.slots);
	lua_settop(L, top);
	return rc < 0 ? -1 : 0;
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
	return read_partitions(s);
}

/* Reports a failed stream: the state of what was emitted first, then the status and the error.
 * With nothing emitted since the last STATE, no new one: the platform keeps the one it has. */
static void report_failure(struct stream_run *s)
{
	if (s->parts && s->records_since_state > 0 && !proto_stdout_failed(&s->rt->out)) {
		struct sync_error saved = s->err;
		s->err.set = 0;
		checkpoint(s);
		s->err = saved;
	}
	proto_stream_status(&s->rt->out, s->name, "INCOMPLETE", 0);
	proto_trace_error(&s->rt->out, s->err.type, s->err.message, NULL, s->err.stack[0] ? s->err.stack : NULL);
}

static int read_stream(struct runtime *rt, int script, int config, int legacy, int states, int configured)
{
	lua_State *L = rt->L;
	struct stream_run s;
	memset(&s, 0, sizeof s);
	s.rt = rt;
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
	rt->stream = s.name;
	proto_stream_status(&rt->out, s.name, "STARTED", 0);
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
		proto_stream_status(&rt->out, s.name, "COMPLETE", 0);
	catch_up_legacy(&s);
	buf_free(&s.state_json);
	rt->stream = NULL;
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

/* Pages are walked on worker threads while the main thread drives the network and writes
 * messages. The walk is most of a sync's work (~5x the main thread's), so there is one worker
 * per core, at most 4 (a sync has few pages in flight), and none on a single core.
 * SOURCE_LUA_MAP_THREADS sets the number; 0 walks every page on the main thread. */
static int map_threads(void)
{
	const char *env = getenv("SOURCE_LUA_MAP_THREADS");
	if (env && *env) {
		char *end;
		long n = strtol(env, &end, 10);
		return *end || n < 0 ? 0 : n > 16 ? 16 : (int)n;
	}
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	return cores <= 1 ? 0 : cores > 4 ? 4 : (int)cores;
}

int sync_read(struct runtime *rt, int script, int config, int catalog, int states)
{
	lua_State *L = rt->L;
	pool_start(&rt->pool, map_threads());
	int legacy = push_legacy(L, states);
	lua_getfield(L, catalog, "streams");
	int streams = lua_gettop(L);
	lua_Integer n = (lua_Integer)lua_rawlen(L, streams);
	int failed = 0;
	for (lua_Integer i = 1; i <= n && !host_cancelled && !proto_stdout_failed(&rt->out); i++) {
		lua_rawgeti(L, streams, i);
		if (read_stream(rt, script, config, legacy, states, lua_gettop(L)))
			failed = 1;
		lua_pop(L, 1);
	}
	lua_settop(L, legacy - 1);
	pool_stop(&rt->pool);
	if (host_cancelled && !failed) {
		proto_trace_error(&rt->out, PROTO_TRANSIENT_ERROR, "the sync was cancelled (SIGTERM)", NULL, NULL);
		failed = 1;
	}
	return failed;
}
