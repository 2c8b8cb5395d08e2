/*
 * state: the stream state, in and out.
 *
 * A partition's state is its position (state.h) written as an object:
 *
 *   {"published_utc": "2026-11-30T09:15:00Z"}
 *       every record up to and including that value was emitted;
 *   {"published_utc": "2026-11-30T09:15:00Z", "emitted_at_cursor": [["a1"], ["a2"]]}
 *       every record before it, and of those at it the ones with these primary keys (the
 *       checkpoint fell inside a run of records sharing one value; the rest of the run comes
 *       next time, and only the rest);
 *   "emitted_after_cursor": [{"cursor": "2026-12-01T08:00:00Z", "key": ["a7"]}, ...]
 *       records beyond the value emitted by a window of a descending or unsorted stream that did not finish,
 *       each with its own value, so that the windows a resume reads first do not forget them.
 *
 * A stream with partitions keeps them under partition_state_key, with the least cursor of the
 * partitions beside them when every partition is complete up to its cursor (the form the
 * tutorial's state had): {"tickers": {"TSLA": {"date": ...}}, "date": ...}.
 *
 * Why each partition's text is kept (entry) rather than the state rebuilt as a Lua table: with
 * thousands of partitions a STATE is mostly the same text each time, and only the partitions that
 * moved since the last one are written again.
 */
#include "state.h"

#include <lauxlib.h>
#include <stdio.h>
#include <string.h>

#include "cursor.h"
#include "json.h"
#include "proto.h"
#include "runtime.h"
#include "date.h"

#define AT_KEY "emitted_at_cursor"
#define AFTER_KEY "emitted_after_cursor"

static const char PARTITIONS_MT[] = "source_lua.state.partitions";

struct partitions_block {
	size_t count;
	struct partition parts[];
};

static int partitions_gc(lua_State *L)
{
	struct partitions_block *b = lua_touserdata(L, 1);
	for (size_t i = 0; i < b->count; i++)
		buf_free(&b->parts[i].entry);
	b->count = 0;
	return 0;
}

void state_open(struct stream_state *ss, struct runtime *rt, const struct stream_def *def, int keys_idx)
{
	lua_State *L = rt->L;
	keys_idx = keys_idx ? lua_absindex(L, keys_idx) : 0;
	size_t count = keys_idx ? lua_rawlen(L, keys_idx) : 1;
	memset(ss, 0, sizeof *ss);
	ss->rt = rt;
	ss->def = def;
	struct partitions_block *b = lua_newuserdatauv(L, sizeof *b + count * sizeof b->parts[0], 2);
	memset(b, 0, sizeof *b + count * sizeof b->parts[0]);
	if (luaL_newmetatable(L, PARTITIONS_MT)) {
		lua_pushcfunction(L, partitions_gc);
		lua_setfield(L, -2, "__gc");
	}
	lua_setmetatable(L, -2);
	b->count = count;
	if (keys_idx) {
		/* The key strings stay alive as the block's second uservalue. */
		lua_pushvalue(L, keys_idx);
		lua_setiuservalue(L, -2, 2);
		for (size_t i = 0; i < count; i++) {
			lua_rawgeti(L, keys_idx, (lua_Integer)i + 1);
			b->parts[i].key = lua_tostring(L, -1);
			lua_pop(L, 1);
		}
	}
	lua_newtable(L);
	lua_pushvalue(L, -1);
	lua_setiuservalue(L, -3, 1);
	ss->sets = lua_gettop(L);
	ss->parts = b->parts;
	ss->count = count;
	for (size_t i = 0; i < count; i++)
		b->parts[i].dirty = 1;
	ss->last_state_ms = date_now_ms();
}

/* ---- key sets: t[i] = key text, t[key] = i ---- */

static lua_State *state_L(struct stream_state *ss)
{
	return ss->rt->L;
}

int state_set_new(struct stream_state *ss)
{
	lua_State *L = state_L(ss);
	lua_newtable(L);
	return luaL_ref(L, ss->sets);
}

void state_set_free(struct stream_state *ss, int set)
{
	if (set)
		luaL_unref(state_L(ss), ss->sets, set);
}

static void push_set(struct stream_state *ss, int set)
{
	lua_rawgeti(state_L(ss), ss->sets, set);
}

int state_set_has(struct stream_state *ss, int set, int key_idx)
{
	if (!set)
		return 0;
	lua_State *L = state_L(ss);
	key_idx = lua_absindex(L, key_idx);
	push_set(ss, set);
	lua_pushvalue(L, key_idx);
	int has = lua_rawget(L, -2) != LUA_TNIL;
	lua_pop(L, 2);
	return has;
}

size_t state_set_count(struct stream_state *ss, int set)
{
	if (!set)
		return 0;
	lua_State *L = state_L(ss);
	push_set(ss, set);
	size_t n = lua_rawlen(L, -1);
	lua_pop(L, 1);
	return n;
}

int state_set_add(struct stream_state *ss, int set, int key_idx, size_t limit)
{
	lua_State *L = state_L(ss);
	key_idx = lua_absindex(L, key_idx);
	push_set(ss, set);
	int table = lua_gettop(L);
	lua_pushvalue(L, key_idx);
	if (lua_rawget(L, table) != LUA_TNIL) {
		lua_settop(L, table - 1);
		return 0;
	}
	lua_Integer n = (lua_Integer)lua_rawlen(L, table);
	if ((size_t)n >= limit) {
		lua_settop(L, table - 1);
		return -1;
	}
	lua_pushvalue(L, key_idx);
	lua_rawseti(L, table, n + 1);
	lua_pushvalue(L, key_idx);
	lua_pushinteger(L, n + 1);
	lua_rawset(L, table);
	lua_settop(L, table - 1);
	return 0;
}

/* A key's cursor value, for the sets that keep one (emitted_after_cursor): at index -i. */
static int set_value_at(lua_State *L, int table, lua_Integer i, int64_t *value)
{
	int has = lua_rawgeti(L, table, -i) == LUA_TNUMBER;
	if (has)
		*value = (int64_t)lua_tointeger(L, -1);
	lua_pop(L, 1);
	return has;
}

int state_set_add_valued(struct stream_state *ss, int set, int key_idx, int64_t value, size_t limit)
{
	lua_State *L = state_L(ss);
	key_idx = lua_absindex(L, key_idx);
	if (state_set_add(ss, set, key_idx, limit))
		return -1;
	push_set(ss, set);
	lua_pushvalue(L, key_idx);
	lua_rawget(L, -2);
	lua_Integer i = lua_tointeger(L, -1);
	lua_pushinteger(L, (lua_Integer)value);
	lua_rawseti(L, -3, -i);
	lua_pop(L, 2);
	return 0;
}

/* A copy of set's entries, only those whose value is past after when only_after is set (entries
 * without a value are kept). */
static int copy_entries(struct stream_state *ss, int set, int only_after, int64_t after)
{
	int copy = state_set_new(ss);
	if (!set)
		return copy;
	lua_State *L = state_L(ss);
	push_set(ss, set);
	int table = lua_gettop(L);
	lua_Integer n = (lua_Integer)lua_rawlen(L, table);
	for (lua_Integer i = 1; i <= n; i++) {
		int64_t value;
		int valued = set_value_at(L, table, i, &value);
		if (only_after && valued && value <= after)
			continue;
		lua_rawgeti(L, table, i);
		if (valued)
			state_set_add_valued(ss, copy, -1, value, (size_t)-1);
		else
			state_set_add(ss, copy, -1, (size_t)-1);
		lua_pop(L, 1);
	}
	lua_pop(L, 1);
	return copy;
}

int state_set_copy(struct stream_state *ss, int set)
{
	return copy_entries(ss, set, 0, 0);
}

int state_set_past(struct stream_state *ss, int set, int64_t after)
{
	int copy = copy_entries(ss, set, 1, after);
	if (state_set_count(ss, copy))
		return copy;
	state_set_free(ss, copy);
	return 0;
}

/* [key, ...], or for a set that keeps values [{"cursor": value, "key": key}, ...]. */
static void write_set(struct stream_state *ss, int set, struct buf *out)
{
	lua_State *L = state_L(ss);
	buf_putc(out, '[');
	push_set(ss, set);
	int table = lua_gettop(L);
	lua_Integer n = (lua_Integer)lua_rawlen(L, table);
	for (lua_Integer i = 1; i <= n; i++) {
		size_t len;
		int64_t value;
		int valued = set_value_at(L, table, i, &value);
		lua_rawgeti(L, table, i);
		const char *key = lua_tolstring(L, -1, &len);
		if (i > 1)
			buf_putc(out, ',');
		if (valued) {
			buf_puts(out, "{\"cursor\":");
			cursor_write_json(&ss->def->cursor, value, out);
			buf_puts(out, ",\"key\":");
		}
		buf_append(out, key, len);
		if (valued)
			buf_putc(out, '}');
		lua_pop(L, 1);
	}
	lua_pop(L, 1);
	buf_putc(out, ']');
}

void state_position_set(struct stream_state *ss, struct partition *p, const struct position *to)
{
	if (p->now.at && p->now.at != to->at && p->now.at != p->resume.at)
		state_set_free(ss, p->now.at);
	if (p->now.after && p->now.after != to->after && p->now.after != p->resume.after)
		state_set_free(ss, p->now.after);
	p->now = *to;
	p->dirty = 1;
	ss->changed = 1;
}

/* ---- reading ---- */

/* A list of primary keys ([["a1"], ["a2"]]) into a new set of their canonical texts. */
static int read_key_list(struct stream_state *ss, int list, int *set, const char *whose, const char *name, char *err,
			 size_t errlen)
{
	lua_State *L = state_L(ss);
	list = lua_absindex(L, list);
	if (!lua_istable(L, list)) {
		snprintf(err, errlen, "state: %s has %s that is not a list of primary keys", whose, name);
		return -1;
	}
	*set = state_set_new(ss);
	struct buf text = {0};
	lua_Integer n = (lua_Integer)lua_rawlen(L, list);
	int rc = 0;
	for (lua_Integer i = 1; i <= n && !rc; i++) {
		lua_rawgeti(L, list, i);
		char why[200];
		int64_t value = 0;
		int valued = 0;
		buf_clear(&text);
		/* {"cursor": value, "key": [...]}: a key with the value of its record. */
		if (lua_istable(L, -1) && lua_rawlen(L, -1) == 0 && lua_getfield(L, -1, "key") == LUA_TTABLE) {
			lua_getfield(L, -2, "cursor");
			valued = cursor_from_state(&ss->def->cursor, L, -1, &value, why, sizeof why) == 0;
			lua_pop(L, 1);
			lua_replace(L, -2);
			if (!valued) {
				snprintf(err, errlen, "state: %s: %s[%d] has a cursor that is not one: %s", whose, name,
					 (int)i, why);
				rc = -1;
			}
		}
		if (!rc && (!lua_istable(L, -1) || json_encode(L, -1, &text, why, sizeof why))) {
			snprintf(err, errlen, "state: %s: %s[%d] is not a primary key like [\"id\"]", whose, name,
				 (int)i);
			rc = -1;
		} else if (!rc) {
			lua_pushlstring(L, text.data, text.len);
			if (valued)
				state_set_add_valued(ss, *set, -1, value, (size_t)-1);
			else
				state_set_add(ss, *set, -1, (size_t)-1);
			lua_pop(L, 1);
		}
		lua_pop(L, 1);
	}
	buf_free(&text);
	return rc;
}

/* One position object: {cursor_field: value, emitted_at_cursor?: [...], emitted_after_cursor?: [...]}. */
static int read_position(struct stream_state *ss, int obj, struct position *pos, const char *whose, char *err,
			 size_t errlen)
{
	lua_State *L = state_L(ss);
	const struct cursor_def *c = &ss->def->cursor;
	obj = lua_absindex(L, obj);
	memset(pos, 0, sizeof *pos);
	if (!lua_istable(L, obj)) {
		snprintf(err, errlen, "state: %s must be an object like {\"%s\": ...}, not a %s", whose, c->field,
			 luaL_typename(L, obj));
		return -1;
	}
	int rc = 0;
	char why[200];
	if (lua_getfield(L, obj, c->field) != LUA_TNIL) {
		pos->has_cursor = 1;
		if (cursor_from_state(c, L, -1, &pos->cursor, why, sizeof why)) {
			snprintf(err, errlen, "state: %s has a %s that is not a cursor value: %s", whose, c->field,
				 why);
			rc = -1;
		}
	}
	lua_pop(L, 1);
	if (!rc) {
		if (lua_getfield(L, obj, AT_KEY) != LUA_TNIL) {
			pos->open = 1;
			rc = read_key_list(ss, -1, &pos->at, whose, AT_KEY, err, errlen);
			if (!rc && !pos->has_cursor) {
				snprintf(err, errlen, "state: %s has %s without %s", whose, AT_KEY, c->field);
				rc = -1;
			}
		}
		lua_pop(L, 1);
	}
	if (!rc) {
		if (lua_getfield(L, obj, AFTER_KEY) != LUA_TNIL)
			rc = read_key_list(ss, -1, &pos->after, whose, AFTER_KEY, err, errlen);
		lua_pop(L, 1);
	}
	return rc;
}

static void start_at(struct partition *p, const struct position *pos)
{
	p->resume = *pos;
	p->now = *pos;
	p->dirty = 1;
}

/* ---- writing ---- */

/* The members of a position: "cursor":v, "emitted_at_cursor":[...], "emitted_after_cursor":[...]. */
static int write_position(struct stream_state *ss, const struct position *pos, struct buf *out)
{
	const struct cursor_def *c = &ss->def->cursor;
	int members = 0;
	if (pos->has_cursor) {
		json_write_string(out, c->field, strlen(c->field));
		buf_putc(out, ':');
		cursor_write_json(c, pos->cursor, out);
		members++;
	}
	if (pos->open) {
		buf_puts(out, members++ ? ",\"" AT_KEY "\":" : "\"" AT_KEY "\":");
		if (pos->at)
			write_set(ss, pos->at, out);
		else
			buf_puts(out, "[]");
	}
	if (pos->after && state_set_count(ss, pos->after)) {
		buf_puts(out, members++ ? ",\"" AFTER_KEY "\":" : "\"" AFTER_KEY "\":");
		write_set(ss, pos->after, out);
	}
	return members;
}

static void write_entry(struct stream_state *ss, struct partition *p)
{
	buf_clear(&p->entry);
	struct buf members = {0};
	if (write_position(ss, &p->now, &members)) {
		json_write_string(&p->entry, p->key, strlen(p->key));
		buf_puts(&p->entry, ":{");
		buf_append(&p->entry, members.data, members.len);
		buf_putc(&p->entry, '}');
	}
	buf_free(&members);
	p->dirty = 0;
}

/* The value every partition is complete up to (its own cursor, or the one before it while it is
 * open at it), when there is one: the tutorial's top-level cursor, which a reader of the old form
 * may apply to every partition. Datetimes have no "value before", so an open one has none. */
static int complete_everywhere(const struct stream_state *ss, int64_t *least)
{
	int datetime = ss->def->cursor.kind == CURSOR_DATETIME;
	for (size_t i = 0; i < ss->count; i++) {
		const struct position *pos = &ss->parts[i].now;
		if (!pos->has_cursor || pos->after || (pos->open && (datetime || pos->cursor == INT64_MIN)))
			return 0;
		int64_t complete = pos->open ? pos->cursor - 1 : pos->cursor;
		if (i == 0 || complete < *least)
			*least = complete;
	}
	return ss->count > 0;
}

static void write_stream_state(struct stream_state *ss, struct buf *out)
{
	const struct stream_def *def = ss->def;
	buf_putc(out, '{');
	if (!def->partitioned) {
		write_position(ss, &ss->parts[0].now, out);
		buf_putc(out, '}');
		return;
	}
	json_write_string(out, def->partition_state_key, strlen(def->partition_state_key));
	buf_puts(out, ":{");
	int members = 0;
	for (size_t i = 0; i < ss->count; i++) {
		struct partition *p = &ss->parts[i];
		if (p->dirty)
			write_entry(ss, p);
		if (!p->entry.len)
			continue;
		if (members++)
			buf_putc(out, ',');
		buf_append(out, p->entry.data, p->entry.len);
	}
	buf_putc(out, '}');
	int64_t least = 0;
	if (complete_everywhere(ss, &least)) {
		buf_putc(out, ',');
		json_write_string(out, def->cursor.field, strlen(def->cursor.field));
		buf_putc(out, ':');
		cursor_write_json(&def->cursor, least, out);
	}
	buf_putc(out, '}');
}

/* Per-partition positions win; a single top-level cursor (the tutorial's state, or one from before
 * partitions) applies to every partition; a partition missing from a per-partition map starts
 * afresh. A state this cannot read is an error, never ignored: that would send everything again. */
int state_load(struct stream_state *ss, int states_idx, char *err, size_t errlen)
{
	lua_State *L = state_L(ss);
	const struct stream_def *def = ss->def;
	int top = lua_gettop(L);
	int type = lua_getfield(L, states_idx, def->name);
	int stream_state = lua_gettop(L);
	int rc = 0;
	char whose[300];
	snprintf(whose, sizeof whose, "stream '%s'", def->name);
	if (type != LUA_TTABLE) {
		if (type != LUA_TNIL) {
			snprintf(err, errlen, "state: the state of stream '%s' must be an object, not a %s", def->name,
				 lua_typename(L, type));
			rc = -1;
		}
	} else if (!def->partitioned) {
		struct position pos;
		rc = read_position(ss, stream_state, &pos, whose, err, errlen);
		if (!rc)
			start_at(&ss->parts[0], &pos);
	} else {
		struct position shared;
		rc = read_position(ss, stream_state, &shared, whose, err, errlen);
		type = lua_getfield(L, stream_state, def->partition_state_key);
		int map = type == LUA_TTABLE && lua_rawlen(L, -1) == 0 ? lua_gettop(L) : 0;
		/* A map this cannot read is harmless only when the top-level cursor, the least of the
		 * partitions', can stand in for it. */
		if (!rc && type != LUA_TNIL && !map && !shared.has_cursor) {
			snprintf(err, errlen, "state: '%s' of stream '%s' must be an object of {partition: {%s: ...}}",
				 def->partition_state_key, def->name, def->cursor.field);
			rc = -1;
		}
		for (size_t i = 0; i < ss->count && !rc; i++) {
			struct partition *p = &ss->parts[i];
			if (!map) {
				/* Shared sets are owned by each partition's copy. */
				struct position pos = shared;
				pos.at = shared.at ? state_set_copy(ss, shared.at) : 0;
				pos.after = shared.after ? state_set_copy(ss, shared.after) : 0;
				start_at(p, &pos);
				continue;
			}
			if (lua_getfield(L, map, p->key) != LUA_TNIL) {
				struct position pos;
				snprintf(whose, sizeof whose, "partition '%s' of stream '%s'", p->key, def->name);
				rc = read_position(ss, -1, &pos, whose, err, errlen);
				if (!rc)
					start_at(p, &pos);
			}
			lua_pop(L, 1);
		}
		state_set_free(ss, shared.at);
		state_set_free(ss, shared.after);
	}
	lua_settop(L, top);
	if (!rc) {
		/* The first STATE is weighed against the state the read started from. */
		buf_clear(&ss->json);
		write_stream_state(ss, &ss->json);
		ss->last_state_len = ss->json.len;
	}
	return rc;
}

void state_count_records(struct stream_state *ss, int64_t records, size_t bytes)
{
	ss->records_since += records;
	ss->records_total += records;
	ss->bytes_since += bytes;
}

int state_checkpoint_due(const struct stream_state *ss, int64_t now_ms)
{
	if (ss->records_since == 0)
		return 0;
	const struct checkpoint_policy *policy = &ss->rt->checkpoints;
	size_t weight = ss->last_state_len ? ss->last_state_len : 64;
	return ss->bytes_since >= weight * policy->records_per_state ||
	       now_ms - ss->last_state_ms >= policy->interval_ms;
}

int state_checkpoint(struct stream_state *ss, char *err, size_t errlen)
{
	struct runtime *rt = ss->rt;
	buf_clear(&ss->json);
	write_stream_state(ss, &ss->json);
	if (proto_stream_state_json(&rt->out, rt->L, ss->def->name, ss->json.data, ss->json.len, ss->legacy,
				    ss->records_since, err, errlen))
		return -1;
	/* The legacy blob repeats the stream state in data. */
	ss->last_state_len = ss->json.len * (ss->legacy ? 2 : 1);
	ss->records_since = 0;
	ss->bytes_since = 0;
	ss->changed = 0;
	ss->last_state_ms = date_now_ms();
	ss->states_written++;
	return 0;
}

void state_push_current(struct stream_state *ss)
{
	buf_clear(&ss->json);
	write_stream_state(ss, &ss->json);
	json_decode_push(state_L(ss), ss->json.data, ss->json.len);
	lua_pop(state_L(ss), 1);
}
