/*
 * records: how a page of an API answer becomes records, as the script sees it.
 *
 * parse(ctx, response) gets a response object: status, url, text, and body, the text decoded
 * (json_decode.c) on first use. The text stays in the buffer libcurl's transfer filled (a page userdata)
 * and becomes a Lua string only when the script reads response.text: a mapper walks the buffer
 * itself, so a page is never copied. A script may build records from body in Lua, or declare them once
 * (records.declare) and return mapper:map(ctx, response): a batch, whose records page_walk.c
 * writes straight from the text without a Lua table per item. During a sync the walk runs on a
 * worker thread (pool.c) while the engine goes on with other transfers; the batch is settled
 * (waited for, its outcome read) by whoever uses it first: the engine, or #batch, batch[i] and
 * batch:next_url() in Lua. A page that is not JSON, or not shaped as declared, is reported then.
 *
 * Memory: a batch's buffers are malloc'ed, capped at the script's memory limit, and freed by the
 * engine once its records are written (records_batch_release; the userdata's __gc frees those of a
 * batch the engine never got, after any walk still running on them has finished); they go back
 * to the mapper for the next page, whose pages are then already mapped.
 */
#define _GNU_SOURCE
#include "records.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "date.h"
#include "host.h"
#include "json.h"
#include "page_walk.h"
#include "pool.h"
#include "proto.h"
#include "runtime.h"
#include "suggest.h"
#include "tz.h"

static const char MAPPER_MT[] = "source_lua.records.mapper";
static const char BATCH_MT[] = "source_lua.records.batch";
static const char RESPONSE_MT[] = "source_lua.records.response";
static const char PAGE_MT[] = "source_lua.records.page";
/* The registry key of the table from each response to its page. Weak-keyed (an ephemeron): a
 * page lives as long as its response, and the response itself shows nothing of it to pairs or
 * json.encode. */
static const char PAGES_KEY = 0;
/* The key under which a response remembers that its text is not JSON; scripts cannot spell it. */
static const char NOT_JSON_KEY = 0;

#define SPARE_BUFFERS 6

struct mapper {
	struct walk_mapping map;
	/* Collected batches' buffers, for the next pages: as many as pages are walked at once, so
	 * that after the first pages no page writes its records into memory never touched before
	 * (each 4 KB of it a page fault). */
	struct walk_buffers spares[SPARE_BUFFERS];
	int nspares;
	int collected;
	const char *context[WALK_MAX_FIELDS]; /* FROM_CONTEXT: the ctx field */
	int value_pin[WALK_MAX_FIELDS];       /* FROM_VALUE: where the constant is kept in the pins */
	int copies_of[WALK_MAX_FIELDS];       /* how many fields copy each source verbatim */
};

/* An answer's text, NUL-terminated, in memory of its own. */
struct page {
	struct runtime *rt; /* counts the pages not freed yet (records_held) */
	char *data;
	size_t len;
	int released; /* given back when parse returned: freed then, or with the last batch walking it */
	int batches;  /* live batches walking or holding the text */
};

struct record_batch {
	struct pool_job job; /* first: the job is the batch */
	struct runtime *rt;
	struct mapper *m;
	const char *text;  /* the page (a Lua string or page) kept alive as the batch's second uservalue */
	struct page *page; /* that page, when it is one: its text is not freed while the batch lives */
	size_t text_len;
	size_t memory_cap;
	struct buf constants;
	struct walk_constant constant[WALK_MAX_FIELDS];
	/* Each record is written as a whole RECORD message of ctx.stream, stamped at map time. */
	struct proto_record_frame frame;
	struct walk_frame frame_at;
	char *stream; /* ctx.stream, or NULL */
	struct walk_output out;
	char where[200]; /* the script line that called map, for errors reported later */
	int live;        /* set once the buffers belong to the batch (cleared by __gc or a release) */
	int released;    /* records_batch_release gave its records back */
};

/* --------------------------------------------------------------------------------------------
 * records.declare
 * ------------------------------------------------------------------------------------------ */

/* Keeps the string at idx alive as long as the mapper (pins is its uservalue). */
static const char *pin_string(lua_State *L, int pins, int idx)
{
	lua_pushvalue(L, idx);
	const char *s = lua_tostring(L, -1);
	lua_rawseti(L, pins, (lua_Integer)lua_rawlen(L, pins) + 1);
	return s;
}

static const char *checked_name(lua_State *L, int idx, const char *what, size_t *len)
{
	if (lua_type(L, idx) != LUA_TSTRING || lua_rawlen(L, idx) == 0)
		luaL_error(L, "records.declare: %s must be a non-empty string", what);
	const char *s = lua_tolstring(L, idx, len);
	const unsigned char *p = (const unsigned char *)s;
	for (size_t i = 0; i < *len;) {
		int n = p[i] >= 0x80 ? json_utf8_sequence_length(p + i, *len - i)
				     : (p[i] >= 0x20 && p[i] != '"' && p[i] != '\\');
		if (n == 0)
			luaL_error(L,
				   "records.declare: %s '%s' must be UTF-8 without quotes, backslashes or control "
				   "characters",
				   what, s);
		i += (size_t)n;
	}
	return s;
}

/* Catches misspelt options (form = "t") instead of silently leaving a field out. known may list
 * "1" for the positional first element. */
static void refuse_unknown_keys(lua_State *L, int idx, const char *const *known, const char *where,
				lua_Integer positional)
{
	char why[400];
	if (!suggest_known_keys(L, idx, known, positional, why, sizeof why))
		luaL_error(L, "records.declare: %s has an %s", where, why);
}

/* The node for the member name[0, len) of the object at *link's level, added when new. */
static int path_node(lua_State *L, struct walk_mapping *m, int *link, int parent, const char *name, size_t len)
{
	int last = -1;
	for (int n = *link; n >= 0; last = n, n = m->nodes[n].sibling)
		if (m->nodes[n].len == len && !memcmp(m->nodes[n].name, name, len))
			return n;
	if (m->nnodes == WALK_MAX_NODES)
		luaL_error(L, "records.declare: the from paths have more than %d members in all", WALK_MAX_NODES);
	int n = m->nnodes++;
	m->nodes[n] = (struct walk_node){name, len, -1, parent, -1, -1, -1, 0};
	if (last >= 0)
		m->nodes[last].sibling = n;
	else
		*link = n;
	return n;
}

/* The source that reads the path at idx ("key" or "a.b.c"), added with its nodes when new. */
static int source_index(lua_State *L, struct walk_mapping *m, int pins, int idx)
{
	size_t len;
	const char *path = lua_tolstring(L, idx, &len);
	for (int i = 0; i < m->nsources; i++)
		if (m->sources[i].len == len && !memcmp(m->sources[i].name, path, len))
			return i;
	int source = m->nsources++;
	path = m->sources[source].name = pin_string(L, pins, idx);
	m->sources[source].len = len;
	int node = -1, *link = &m->first;
	for (const char *segment = path;;) {
		const char *dot = memchr(segment, '.', (size_t)(path + len - segment));
		size_t segment_len = dot ? (size_t)(dot - segment) : (size_t)(path + len - segment);
		if (segment_len == 0)
			luaL_error(L, "records.declare: from '%s' has an empty member name", path);
		node = path_node(L, m, link, node, segment, segment_len);
		if (!dot)
			break;
		struct walk_node *through = &m->nodes[node];
		through->below |= 1ull << source;
		if (through->slot < 0)
			through->slot = m->nslots++;
		link = &through->child;
		segment = dot + 1;
	}
	m->nodes[node].source = source;
	if (m->nodes[node].parent >= 0)
		m->nested |= 1ull << source;
	return source;
}

/* The most bytes of one item a record may copy: a field copying a member copies its objects' members
 * too, so the copies of a source and of the sources above it on its path add up. */
static void bound_copies(struct mapper *mapper)
{
	struct walk_mapping *m = &mapper->map;
	for (int n = 0; n < m->nnodes; n++) {
		if (m->nodes[n].source < 0)
			continue;
		int copies = 0;
		for (int up = n; up >= 0; up = m->nodes[up].parent)
			if (m->nodes[up].source >= 0)
				copies += mapper->copies_of[m->nodes[up].source];
		if (copies > m->max_copies)
			m->max_copies = copies;
	}
}

/* The names of as, and their kinds, in the order messages list them. */
static const char *const AS_NAMES[] = {"integer",     "number",     "string",   "boolean",          "day",
				       "day_from_ms", "day_from_s", "datetime", "datetime_from_ms", "datetime_from_s",
				       NULL};
static const enum walk_kind AS_KINDS[] = {FROM_INTEGER, FROM_NUMBER, FROM_STRING,   FROM_BOOLEAN,     FROM_DAY,
					  FROM_DAY_MS,  FROM_DAY_S,  FROM_DATETIME, FROM_DATETIME_MS, FROM_DATETIME_S};

static enum walk_kind kind_of_as(lua_State *L, const char *name, const char *as_name)
{
	for (size_t i = 0; AS_NAMES[i]; i++)
		if (!strcmp(as_name, AS_NAMES[i]))
			return AS_KINDS[i];
	const char *closest = suggest_closest(as_name, AS_NAMES);
	luaL_error(L,
		   "records.declare: field '%s': as must be integer, number, string, boolean, day, day_from_ms, "
		   "day_from_s, datetime, datetime_from_ms or datetime_from_s, not '%s'%s%s%s",
		   name, as_name, closest ? " (did you mean " : "", closest ? closest : "", closest ? "?)" : "");
	return FROM_COPY;
}

static enum walk_kind field_kind_of(lua_State *L, int spec, const char *name)
{
	int has_context = lua_getfield(L, spec, "context") != LUA_TNIL;
	int has_value = lua_getfield(L, spec, "value") != LUA_TNIL;
	int has_from = lua_getfield(L, spec, "from") != LUA_TNIL;
	int as = lua_getfield(L, spec, "as");
	const char *as_name = as == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
	enum walk_kind kind = FROM_COPY;
	if (has_context + has_value + has_from != 1)
		luaL_error(L, "records.declare: field '%s' needs exactly one of from, context or value", name);
	if (as != LUA_TNIL && (!has_from || !as_name))
		luaL_error(L, "records.declare: field '%s': as goes with from and is a string", name);
	if (has_context)
		kind = FROM_CONTEXT;
	else if (has_value)
		kind = FROM_VALUE;
	else if (as_name)
		kind = kind_of_as(L, name, as_name);
	lua_pop(L, 4);
	return kind;
}

/* The kinds whose records copy the member's text (a string, a number as spelt): their bytes count
 * towards a record's size with the item's (bound_copies). */
static int kind_copies(enum walk_kind kind)
{
	return kind == FROM_COPY || kind == FROM_NUMBER || kind == FROM_STRING || kind == FROM_DAY ||
	       kind == FROM_DATETIME;
}

/* The default's value for the field's column: null (none), or a value of the column's kind. */
static int64_t default_column(lua_State *L, const struct walk_field *f, int idx)
{
	enum walk_column column = walk_kind_column(f->kind);
	int64_t v = WALK_NO_VALUE;
	const char *text = lua_type(L, idx) == LUA_TSTRING ? lua_tostring(L, idx) : NULL;
	if (column == COLUMN_NONE || (lua_islightuserdata(L, idx) && !lua_touserdata(L, idx)))
		return WALK_NO_VALUE;
	if (column == COLUMN_INTEGER && lua_type(L, idx) == LUA_TNUMBER) {
		int exact;
		lua_Integer n = lua_tointegerx(L, idx, &exact); /* a float only when it is an integer */
		if (exact)
			return (int64_t)n;
	} else if (column == COLUMN_DAY && text && date_parse_day(text, &v) == 0) {
		return v;
	} else if (column == COLUMN_DATETIME && text && date_parse_instant(text, strlen(text), f->zone, &v) == 0) {
		return v;
	}
	luaL_error(L, "records.declare: field '%s': default must be json.null or %s", f->name,
		   column == COLUMN_INTEGER ? "an integer"
		   : column == COLUMN_DAY   ? "a YYYY-MM-DD day"
					    : "an ISO 8601 date-time");
	return v;
}

/* default = v and required = true, which go with from. */
static void declare_default_and_required(lua_State *L, struct walk_field *f, int pins, int spec)
{
	int has_default = lua_getfield(L, spec, "default") != LUA_TNIL;
	int required = lua_getfield(L, spec, "required");
	if (required != LUA_TNIL && required != LUA_TBOOLEAN)
		luaL_error(L, "records.declare: field '%s': required is true or false", f->name);
	f->required = lua_toboolean(L, -1);
	if ((has_default || f->required) && (f->kind == FROM_CONTEXT || f->kind == FROM_VALUE))
		luaL_error(L, "records.declare: field '%s': %s goes with from", f->name,
			   has_default ? "default" : "required");
	if (has_default && f->required)
		luaL_error(L, "records.declare: field '%s': a required field has no default", f->name);
	f->fallback = NULL;
	f->fallback_len = 0;
	f->fallback_column = WALK_NO_VALUE;
	if (has_default) {
		struct buf text = {0};
		char err[128];
		if (json_encode(L, -2, &text, err, sizeof err)) {
			buf_free(&text);
			luaL_error(L, "records.declare: field '%s': default: %s", f->name, err);
		}
		lua_pushlstring(L, text.data, text.len);
		buf_free(&text);
		f->fallback = pin_string(L, pins, -1);
		f->fallback_len = lua_rawlen(L, -1);
		lua_pop(L, 1);
		f->fallback_column = default_column(L, f, lua_gettop(L) - 1);
	}
	lua_pop(L, 2);
}

static void declare_field(lua_State *L, struct mapper *mapper, int pins, int spec, int position)
{
	struct walk_mapping *m = &mapper->map;
	/* and [1], the field's name */
	static const char *const known[] = {"name",  "from",    "as",       "zone", "context",
					    "value", "default", "required", NULL};
	char where[32];
	snprintf(where, sizeof where, "field %d", position);
	if (!lua_istable(L, spec))
		luaL_error(L, "records.declare: %s must be a table like { \"name\", from = \"key\" }", where);
	refuse_unknown_keys(L, spec, known, where, 1);
	if (lua_rawgeti(L, spec, 1) == LUA_TNIL) {
		lua_pop(L, 1);
		lua_getfield(L, spec, "name");
	}
	size_t len;
	const char *name = checked_name(L, -1, where, &len);
	for (int i = 0; i < m->nfields; i++)
		if (!strcmp(m->fields[i].name, name))
			luaL_error(L, "records.declare: field '%s' is declared twice", name);
	int index = m->nfields;
	struct walk_field *f = &m->fields[index];
	f->name = pin_string(L, pins, -1);
	lua_pushfstring(L, "\"%s\":", name);
	f->key_len = lua_rawlen(L, -1);
	f->key = pin_string(L, pins, -1);
	lua_pop(L, 2);
	f->kind = field_kind_of(L, spec, f->name);
	f->zone = NULL;
	if (lua_getfield(L, spec, "zone") != LUA_TNIL) {
		if ((f->kind != FROM_DAY_MS && f->kind != FROM_DAY_S && f->kind != FROM_DATETIME) ||
		    lua_type(L, -1) != LUA_TSTRING)
			luaL_error(
				L,
				"records.declare: field '%s': zone goes with as = \"day_from_ms\", \"day_from_s\" or "
				"\"datetime\" and is a time zone name",
				f->name);
		char err[300];
		if (strcmp(lua_tostring(L, -1), "UTC") &&
		    !(f->zone = tz_find(runtime_of(L)->zones, lua_tostring(L, -1), err, sizeof err)))
			luaL_error(L, "records.declare: field '%s': %s", f->name, err);
	}
	lua_pop(L, 1);
	if (f->kind == FROM_CONTEXT) {
		lua_getfield(L, spec, "context");
		checked_name(L, -1, "context", &len);
		mapper->context[index] = pin_string(L, pins, -1);
		lua_pop(L, 1);
	} else if (f->kind == FROM_VALUE) {
		lua_getfield(L, spec, "value");
		lua_rawseti(L, pins, (lua_Integer)lua_rawlen(L, pins) + 1);
		mapper->value_pin[index] = (int)lua_rawlen(L, pins);
	} else {
		lua_getfield(L, spec, "from");
		checked_name(L, -1, "from", &len);
		f->source = source_index(L, m, pins, lua_gettop(L));
		lua_pop(L, 1);
		if (kind_copies(f->kind))
			mapper->copies_of[f->source]++;
	}
	if (walk_kind_has_column(f->kind))
		f->column = m->ncolumns++;
	declare_default_and_required(L, f, pins, spec);
	/* A comma, the key, a number's text and the slack of a 16-byte move (a default's text is one of
	 * the walk's pieces, counted there). */
	m->fixed_bound += 1 + f->key_len + JSON_NUMBER_MAX + 16;
	m->nfields++;
}

/* records.declare{ list = "results", next_url = "next_url", fields = { {"name", from = "key"}, ... } } */
static int records_declare(lua_State *L)
{
	static const char *const known[] = {"list", "next_url", "fields", NULL};
	luaL_checktype(L, 1, LUA_TTABLE);
	lua_settop(L, 1);
	refuse_unknown_keys(L, 1, known, "the declaration", 0);
	struct mapper *mapper = lua_newuserdatauv(L, sizeof *mapper, 1);
	memset(mapper, 0, sizeof *mapper);
	luaL_setmetatable(L, MAPPER_MT);
	struct walk_mapping *m = &mapper->map;
	m->first = -1;
	lua_newtable(L);
	int pins = lua_gettop(L);
	lua_pushvalue(L, pins);
	lua_setiuservalue(L, 2, 1);
	lua_getfield(L, 1, "list");
	m->list = checked_name(L, -1, "list", &m->list_len);
	m->list_is_root = !strcmp(m->list, "$");
	pin_string(L, pins, -1);
	lua_pop(L, 1);
	if (m->list_is_root) {
		int has_next = lua_getfield(L, 1, "next_url") != LUA_TNIL;
		lua_pop(L, 1);
		if (has_next)
			return luaL_error(L, "records.declare: list = \"$\" (the page is the array) leaves no member "
					     "for next_url: use a paginator");
	}
	if (lua_getfield(L, 1, "next_url") != LUA_TNIL) {
		m->next = checked_name(L, -1, "next_url", &m->next_len);
		pin_string(L, pins, -1);
	}
	lua_pop(L, 1);
	if (lua_getfield(L, 1, "fields") != LUA_TTABLE || lua_rawlen(L, -1) == 0)
		return luaL_error(L, "records.declare: fields must be a non-empty list");
	int fields = lua_gettop(L);
	lua_Integer n = (lua_Integer)lua_rawlen(L, fields);
	if (n > WALK_MAX_FIELDS)
		return luaL_error(L, "records.declare: at most %d fields", WALK_MAX_FIELDS);
	for (lua_Integer i = 1; i <= n; i++) {
		lua_rawgeti(L, fields, i);
		declare_field(L, mapper, pins, lua_gettop(L), (int)i);
		lua_pop(L, 1);
	}
	bound_copies(mapper);
	lua_settop(L, 2);
	return 1;
}

/* --------------------------------------------------------------------------------------------
 * Batches
 * ------------------------------------------------------------------------------------------ */

static void walk_job(struct pool_job *job)
{
	struct record_batch *b = (struct record_batch *)job;
	page_walk(&b->m->map, b->text, b->text_len, b->constant, &b->frame_at, b->memory_cap, &b->out);
}

static void batch_wait(const struct record_batch *b)
{
	if (b->job.queued)
		pool_wait((struct pool_job *)&b->job);
}

static void free_page_text(struct page *page)
{
	if (page->data)
		page->rt->held_pages--;
	free(page->data);
	page->data = NULL;
}

/* What the batch owns goes, its record buffers back to the mapper for the next pages. */
static void batch_free(struct record_batch *b)
{
	batch_wait(b);
	/* The mapper outlives its batches (it is their uservalue), but at lua_close its finalizer
	 * may run first: then it takes nothing back. */
	if (!b->m->collected && b->m->nspares < SPARE_BUFFERS && (b->out.mem.data || b->out.mem.entries))
		b->m->spares[b->m->nspares++] = b->out.mem;
	else
		walk_buffers_free(&b->out.mem);
	buf_free(&b->constants);
	proto_record_frame_free(&b->frame);
	free(b->stream);
	b->live = 0;
	b->rt->held_batches--;
	/* Nothing of the records is left to read by mistake (the buffers may be another batch's
	 * now). */
	memset(&b->out.mem, 0, sizeof b->out.mem);
	b->out.count = b->out.len = 0;
	b->out.next = NULL;
	b->out.next_len = 0;
	struct page *page = b->page;
	b->page = NULL;
	if (page && --page->batches == 0 && page->released)
		free_page_text(page);
}

static int batch_gc(lua_State *L)
{
	struct record_batch *b = lua_touserdata(L, 1);
	if (b->live)
		batch_free(b);
	return 0;
}

static int mapper_gc(lua_State *L)
{
	struct mapper *m = lua_touserdata(L, 1);
	while (m->nspares > 0)
		walk_buffers_free(&m->spares[--m->nspares]);
	m->collected = 1;
	return 0;
}

/* A power of two, or the cap when that is smaller (the caller has checked that want fits in it):
 * pages of one API differ by a few bytes, and a buffer sized for exactly one of them would be too
 * small for the next, slightly larger one; freed and allocated again, it comes from fresh heap, a
 * page fault per 4 KB touched. The part a page does not write is never touched and costs no
 * memory. */
static size_t records_buffer_size(size_t want, size_t cap)
{
	size_t size = 64 * 1024;
	while (size < want && size <= SIZE_MAX / 2)
		size *= 2;
	return size >= want && size <= cap ? size : cap;
}

/* The batch keeps the mapper, the page's text and the response as its uservalues. */
static struct record_batch *push_batch(lua_State *L, int mapper_idx, int text_idx, int response_idx, const char *text,
				       size_t text_len)
{
	struct record_batch *b = lua_newuserdatauv(L, sizeof *b, 3);
	memset(b, 0, sizeof *b);
	b->m = lua_touserdata(L, mapper_idx);
	if (b->m->nspares > 0)
		b->out.mem = b->m->spares[--b->m->nspares];
	b->live = 1;
	b->rt = runtime_of(L);
	b->rt->held_batches++;
	luaL_setmetatable(L, BATCH_MT);
	lua_pushvalue(L, mapper_idx);
	lua_setiuservalue(L, -2, 1);
	lua_pushvalue(L, text_idx);
	lua_setiuservalue(L, -2, 2);
	lua_pushvalue(L, response_idx);
	lua_setiuservalue(L, -2, 3);
	b->text = text;
	b->text_len = text_len;
	b->page = luaL_testudata(L, text_idx, PAGE_MT);
	if (b->page)
		b->page->batches++;
	b->memory_cap = host_memory_limit(L);
	/* Records take about three times their items' text (a bar's message is ~2.5 times its item):
	 * asked for at once, here, the buffer is not grown and copied during the walk. */
	struct walk_buffers *mem = &b->out.mem;
	size_t want = text_len <= SIZE_MAX / 3 ? text_len * 3 : SIZE_MAX;
	if (mem->cap < want && want <= b->memory_cap) {
		free(mem->data); /* a previous page's records: nothing to keep */
		size_t size = records_buffer_size(want, b->memory_cap);
		mem->data = malloc(size);
		mem->cap = mem->data ? size : 0;
	}
	b->job.run = walk_job;
	return b;
}

/* Renders the context and value fields once per page; a nil leaves the field out. */
static void render_constants(lua_State *L, struct record_batch *b, int mapper_idx, int ctx)
{
	const struct mapper *m = b->m;
	size_t offset[WALK_MAX_FIELDS];
	char err[128];
	lua_getiuservalue(L, mapper_idx, 1);
	int pins = lua_gettop(L);
	for (int i = 0; i < m->map.nfields; i++) {
		enum walk_kind kind = m->map.fields[i].kind;
		offset[i] = b->constants.len;
		if (kind != FROM_CONTEXT && kind != FROM_VALUE)
			continue;
		if (kind == FROM_CONTEXT)
			lua_getfield(L, ctx, m->context[i]);
		else
			lua_rawgeti(L, pins, m->value_pin[i]);
		if (!lua_isnil(L, -1) && json_encode(L, -1, &b->constants, err, sizeof err))
			luaL_error(L, "records: field '%s': %s", m->map.fields[i].name, err);
		lua_pop(L, 1);
	}
	lua_pop(L, 1);
	/* Pointers only now: the buffer may have moved while it grew. */
	for (int i = 0; i < m->map.nfields; i++) {
		size_t end = i + 1 < m->map.nfields ? offset[i + 1] : b->constants.len;
		b->constant[i].text = b->constants.data ? b->constants.data + offset[i] : "";
		b->constant[i].len = end - offset[i];
	}
}

/* The RECORD message around each record, for the stream ctx.stream names. */
static void frame_records(lua_State *L, struct record_batch *b, int ctx)
{
	lua_getfield(L, ctx, "stream");
	const char *stream = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
	b->stream = stream ? strdup(stream) : NULL;
	lua_pop(L, 1);
	proto_record_frame_init(&b->frame, b->stream ? b->stream : "", date_now_ms());
	buf_putc(&b->frame.tail, '\n');
	b->frame_at.head = b->frame.head.data;
	b->frame_at.head_len = b->frame.head.len;
	b->frame_at.tail = b->frame.tail.data;
	b->frame_at.tail_len = b->frame.tail.len;
}

/* Raises the error that tells the engine to ask for the page again; marks the response. */
static int fail_not_json(lua_State *L, int response, const char *why)
{
	if (lua_istable(L, response)) {
		lua_pushlightuserdata(L, (void *)&NOT_JSON_KEY);
		lua_pushstring(L, why);
		lua_rawset(L, response);
	}
	lua_createtable(L, 0, 2);
	lua_pushfstring(L, "the answer is not JSON (%s)", why);
	lua_setfield(L, -2, "message");
	lua_pushliteral(L, "transient_error");
	lua_setfield(L, -2, "failure_type");
	return lua_error(L);
}

/* For Lua: waits for the walk and raises its error, if any. */
static const struct record_batch *settled_batch(lua_State *L)
{
	const struct record_batch *b = luaL_checkudata(L, 1, BATCH_MT);
	if (b->released)
		luaL_error(L, "records: this batch's records were written and released after its parse returned; look "
			      "into a batch during the parse that made it");
	batch_wait(b);
	if (b->out.outcome == WALK_NOT_JSON) {
		/* Marked on the response too, so that a parse that looked into its batch and failed
		 * has the page asked for again, as the engine does when it finds out itself. */
		lua_getiuservalue(L, 1, 3);
		fail_not_json(L, lua_gettop(L), b->out.message);
	} else if (b->out.outcome != WALK_OK) {
		luaL_error(L, "%srecords: %s", b->where, b->out.message);
	}
	return b;
}

/* #batch: how many records */
static int batch_len(lua_State *L)
{
	lua_pushinteger(L, (lua_Integer)settled_batch(L)->out.count);
	return 1;
}

static void push_next_url(lua_State *L, const struct record_batch *b)
{
	const struct walk_output *o = &b->out;
	if (!o->next) {
		lua_pushnil(L);
	} else if (o->next_escaped) {
		json_decode_push(L, o->next, o->next_len);
		lua_pop(L, 1);
	} else {
		lua_pushlstring(L, o->next + 1, o->next_len - 2);
	}
}

/* batch:next_url(): the next page's URL the page gave, or nil */
static int batch_next_url(lua_State *L)
{
	push_next_url(L, settled_batch(L));
	return 1;
}

/* batch[i]: record i decoded into a table, for scripts and tests that want to look at one */
static int batch_index(lua_State *L)
{
	if (lua_type(L, 2) == LUA_TSTRING && !strcmp(lua_tostring(L, 2), "next_url")) {
		lua_pushcfunction(L, batch_next_url);
		return 1;
	}
	const struct record_batch *b = settled_batch(L);
	lua_Integer i = lua_isinteger(L, 2) ? lua_tointeger(L, 2) : 0;
	if (i < 1 || (size_t)i > b->out.count)
		return 0;
	const struct walk_entry *e = &b->out.mem.entries[i - 1];
	json_decode_push(L, b->out.mem.data + e->offset + e->data_offset, e->data_len);
	lua_pop(L, 1);
	return 1;
}

/* --------------------------------------------------------------------------------------------
 * mapper:map(ctx, response) and the response object
 * ------------------------------------------------------------------------------------------ */

/* The page's text freed, or marked to be freed with the last batch still walking it (a script
 * may map one response twice). */
static void release_page(struct page *page)
{
	page->released = 1;
	if (page->batches == 0)
		free_page_text(page);
}

static int page_gc(lua_State *L)
{
	/* A batch holds its page, so it is collected first and the count is 0 here; were the order
	 * ever the other, the last batch frees the text. */
	release_page(lua_touserdata(L, 1));
	return 0;
}

static void push_pages(lua_State *L)
{
	if (lua_rawgetp(L, LUA_REGISTRYINDEX, &PAGES_KEY) != LUA_TNIL)
		return;
	lua_pop(L, 1);
	lua_newtable(L);
	lua_createtable(L, 0, 1);
	lua_pushliteral(L, "k");
	lua_setfield(L, -2, "__mode");
	lua_setmetatable(L, -2);
	lua_pushvalue(L, -1);
	lua_rawsetp(L, LUA_REGISTRYINDEX, &PAGES_KEY);
}

/* The response's text: response.text when the script set or read it, else its page. Pushes what
 * keeps the text alive; NULL (nothing pushed) when there is neither, or when response.text is
 * something other than a string. */
static const char *push_response_text(lua_State *L, int response, size_t *len)
{
	response = lua_absindex(L, response);
	lua_pushliteral(L, "text");
	int type = lua_rawget(L, response);
	if (type == LUA_TSTRING)
		return lua_tolstring(L, -1, len);
	lua_pop(L, 1);
	if (type != LUA_TNIL)
		return NULL;
	push_pages(L);
	lua_pushvalue(L, response);
	lua_rawget(L, -2);
	lua_remove(L, -2);
	struct page *page = luaL_testudata(L, -1, PAGE_MT);
	if (page && page->released)
		luaL_error(L, "response: this page was released when its parse returned; read response.text "
			      "or response.body during the parse that got it");
	if (page && page->data) {
		*len = page->len;
		return page->data;
	}
	lua_pop(L, 1);
	return NULL;
}

/* mapper:map(ctx, response) -> batch */
static int mapper_map(lua_State *L)
{
	luaL_checkudata(L, 1, MAPPER_MT);
	luaL_checktype(L, 2, LUA_TTABLE);
	luaL_checktype(L, 3, LUA_TTABLE);
	lua_settop(L, 3);
	size_t len;
	const char *text = push_response_text(L, 3, &len);
	if (!text) {
		lua_getfield(L, 3, "text");
		if (lua_type(L, 4) != LUA_TSTRING)
			return luaL_error(L, "mapper:map(ctx, response): response.text is a %s, not a string",
					  luaL_typename(L, 4));
		text = lua_tolstring(L, 4, &len);
	}
	struct record_batch *b = push_batch(L, 1, 4, 3, text, len);
	render_constants(L, b, 1, 2);
	frame_records(L, b, 2);
	luaL_where(L, 1);
	snprintf(b->where, sizeof b->where, "%s", lua_tostring(L, -1));
	lua_pop(L, 1);
	pool_submit(&b->rt->pool, &b->job);
	return 1;
}

/* response.text, made a Lua string on first use; response.body, the text decoded on first use.
 * Both are kept. */
static int response_index(lua_State *L)
{
	if (lua_type(L, 2) != LUA_TSTRING)
		return 0;
	const char *key = lua_tostring(L, 2);
	int is_text = !strcmp(key, "text");
	if (!is_text && strcmp(key, "body"))
		return 0;
	size_t len;
	const char *text = push_response_text(L, 1, &len);
	if (!text)
		return 0;
	if (is_text) {
		lua_pushlstring(L, text, len);
	} else {
		switch (json_decode_push(L, text, len)) {
		case JSON_TOO_DEEP: /* asking again brings the same answer */
			return luaL_error(L, "the answer is JSON %s", lua_tostring(L, -1));
		case JSON_INVALID: return fail_not_json(L, 1, lua_tostring(L, -1));
		case JSON_DECODED: break;
		}
		lua_pop(L, 1);
	}
	lua_pushvalue(L, 2);
	lua_pushvalue(L, -2);
	lua_rawset(L, 1);
	return 1;
}

/* Pushes the response table with an empty page; returns the page, for the caller to fill. */
static struct page *push_response_of(lua_State *L, long status, int url_idx)
{
	url_idx = lua_absindex(L, url_idx);
	lua_createtable(L, 0, 4);
	lua_pushinteger(L, status);
	lua_setfield(L, -2, "status");
	lua_pushvalue(L, url_idx);
	lua_setfield(L, -2, "url");
	luaL_setmetatable(L, RESPONSE_MT);
	push_pages(L);
	lua_pushvalue(L, -2);
	struct page *page = lua_newuserdatauv(L, sizeof *page, 0);
	page->rt = runtime_of(L);
	page->data = NULL;
	page->len = 0;
	page->released = 0;
	page->batches = 0;
	luaL_setmetatable(L, PAGE_MT);
	lua_rawset(L, -3);
	lua_pop(L, 1);
	return page;
}

void records_push_response(lua_State *L, long status, int url_idx, const char *text, size_t len)
{
	struct page *page = push_response_of(L, status, url_idx);
	if (!text)
		len = 0;
	char *copy = malloc(len + 1);
	if (!copy)
		luaL_error(L, "not enough memory for a page of %zu bytes", len);
	if (len)
		memcpy(copy, text, len);
	copy[len] = '\0';
	page->data = copy;
	page->len = len;
	page->rt->held_pages++;
}

void records_push_response_taking(lua_State *L, long status, int url_idx, struct buf *body)
{
	struct page *page = push_response_of(L, status, url_idx);
	buf_cstr(body);
	page->data = body->data;
	page->len = body->len;
	if (page->data)
		page->rt->held_pages++;
	memset(body, 0, sizeof *body);
}

int records_response_not_json(lua_State *L, int response_idx, char *why, size_t whylen)
{
	response_idx = lua_absindex(L, response_idx);
	if (!lua_istable(L, response_idx))
		return 0;
	lua_pushlightuserdata(L, (void *)&NOT_JSON_KEY);
	lua_rawget(L, response_idx);
	int marked = lua_type(L, -1) == LUA_TSTRING;
	if (marked)
		snprintf(why, whylen, "%s", lua_tostring(L, -1));
	lua_pop(L, 1);
	return marked;
}

/* --------------------------------------------------------------------------------------------
 * For the engine
 * ------------------------------------------------------------------------------------------ */

void records_batch_release(lua_State *L, int idx)
{
	struct record_batch *b = luaL_testudata(L, idx, BATCH_MT);
	if (!b || !b->live)
		return;
	batch_free(b); /* waits for the walk; the page goes with it when it was released */
	b->released = 1;
	b->text = NULL;
	b->text_len = 0;
}

void records_response_release(lua_State *L, int response_idx)
{
	response_idx = lua_absindex(L, response_idx);
	if (!lua_istable(L, response_idx))
		return;
	push_pages(L);
	lua_pushvalue(L, response_idx);
	lua_rawget(L, -2);
	struct page *page = luaL_testudata(L, -1, PAGE_MT);
	if (page)
		release_page(page);
	lua_pop(L, 2);
}

int records_batch_released(const struct record_batch *b)
{
	return b->released;
}

size_t records_held(const struct runtime *rt)
{
	return rt->held_pages + rt->held_batches;
}

const struct record_batch *records_to_batch(lua_State *L, int idx)
{
	return luaL_testudata(L, idx, BATCH_MT);
}

int records_batch_ready(const struct record_batch *b)
{
	return !b->job.queued || pool_job_done((struct pool_job *)&b->job);
}

enum records_outcome records_batch_settle(const struct record_batch *b, char *why, size_t whylen)
{
	batch_wait(b);
	switch (b->out.outcome) {
	case WALK_OK: return RECORDS_OK;
	case WALK_NOT_JSON: snprintf(why, whylen, "%s", b->out.message); return RECORDS_NOT_JSON;
	default: snprintf(why, whylen, "%srecords: %s", b->where, b->out.message); return RECORDS_WRONG_SHAPE;
	}
}

void records_batch_push_next_url(lua_State *L, const struct record_batch *b)
{
	push_next_url(L, b);
}

size_t records_batch_count(const struct record_batch *b)
{
	return b->out.count;
}

int records_batch_column(const struct record_batch *b, const char *name, enum cursor_kind kind)
{
	static const enum walk_column of_kind[] = {
		[CURSOR_DAY] = COLUMN_DAY, [CURSOR_DATETIME] = COLUMN_DATETIME, [CURSOR_INTEGER] = COLUMN_INTEGER};
	const struct walk_mapping *m = &b->m->map;
	if (kind == CURSOR_NONE)
		return -1;
	for (int i = 0; i < m->nfields; i++) {
		const struct walk_field *f = &m->fields[i];
		if (walk_kind_has_column(f->kind) && !strcmp(f->name, name))
			return walk_kind_column(f->kind) == of_kind[kind] ? f->column : -1;
	}
	return -1;
}

void records_batch_get(const struct record_batch *b, size_t i, int column, const char **data, size_t *len, int64_t *day)
{
	const struct walk_output *o = &b->out;
	const struct walk_entry *e = &o->mem.entries[i];
	*data = o->mem.data + e->offset + e->data_offset;
	*len = e->data_len;
	*day = column >= 0 ? o->mem.cols[i * (size_t)b->m->map.ncolumns + (size_t)column] : RECORDS_NO_VALUE;
}

int records_batch_framed_for(const struct record_batch *b, const char *stream)
{
	return b->stream && !strcmp(b->stream, stream);
}

int records_batch_column_span(const struct record_batch *b, int column, int64_t *first, int64_t *last)
{
	if (column < 0 || column >= b->m->map.ncolumns || b->out.count == 0)
		return 0;
	const struct walk_column_span *span = &b->out.column_span[column];
	*first = span->first;
	*last = span->last;
	return span->every_record && span->ascending;
}

void records_batch_lines(const struct record_batch *b, const char **lines, size_t *len)
{
	*lines = b->out.mem.data;
	*len = b->out.len;
}

void records_batch_line(const struct record_batch *b, size_t i, const char **line, size_t *len)
{
	*line = b->out.mem.data + b->out.mem.entries[i].offset;
	*len = b->out.mem.entries[i].len;
}

static void new_metatable(lua_State *L, const char *name, const luaL_Reg *fields)
{
	if (luaL_newmetatable(L, name))
		luaL_setfuncs(L, fields, 0);
	lua_pop(L, 1);
}

int records_open(lua_State *L)
{
	static const luaL_Reg mapper_fields[] = {{"__gc", mapper_gc}, {NULL, NULL}};
	static const luaL_Reg mapper_methods[] = {{"map", mapper_map}, {NULL, NULL}};
	static const luaL_Reg batch_fields[] = {
		{"__gc", batch_gc}, {"__len", batch_len}, {"__index", batch_index}, {NULL, NULL}};
	static const luaL_Reg response_fields[] = {{"__index", response_index}, {NULL, NULL}};
	static const luaL_Reg page_fields[] = {{"__gc", page_gc}, {NULL, NULL}};
	new_metatable(L, MAPPER_MT, mapper_fields);
	luaL_getmetatable(L, MAPPER_MT);
	luaL_newlib(L, mapper_methods);
	lua_setfield(L, -2, "__index");
	lua_pop(L, 1);
	new_metatable(L, BATCH_MT, batch_fields);
	new_metatable(L, RESPONSE_MT, response_fields);
	new_metatable(L, PAGE_MT, page_fields);
	lua_createtable(L, 0, 1);
	lua_pushcfunction(L, records_declare);
	lua_setfield(L, -2, "declare");
	return 1;
}
