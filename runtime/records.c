/*
 * records: how a page of an API answer becomes records.
 *
 * parse(ctx, response) sees the answer as a response object: status, url, text, and body, the
 * text decoded by lua-cjson on first use. A script may build records from body in Lua, or declare
 * them once (records.declare) and return mapper:map(ctx, response), which reads the page's text
 * in one pass and writes every item's record straight to JSON.
 *
 * Why our own scanner rather than lua-cjson: cjson can only decode into Lua tables. A daily bar
 * decoded into a table, mapped into a second table by a Lua function and walked again to write it
 * costs ~3 us, three times the runtime's whole budget for a record (docs/PERFORMANCE.md). The
 * scanner accepts exactly RFC 8259 JSON in UTF-8 (depth at most 128, as cjson is configured), so
 * a page that cjson would refuse is refused here too, before any of its records is emitted. It
 * never decodes what it copies: a declared value is written as the page spelt it (numbers with an
 * exponent or a trailing zero are rewritten in the runtime's shortest form), which keeps every
 * digit. Strings with escapes that must be compared or returned go through cjson.
 *
 * Memory: a batch's buffers come from the Lua allocator, so the script's memory limit covers them,
 * and they belong to the batch userdata, so an error raised mid-page frees them with it.
 */
#define _GNU_SOURCE
#include "records.h"

#include <lauxlib.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "date.h"
#include "json.h"

#define MAX_FIELDS 64
#define MAX_DEPTH 128
/* 1000-01-01 and 9999-12-31, the days date_format_day can spell. */
#define FIRST_DAY (-354285)
#define LAST_DAY 2932896

static const char MAPPER_MT[] = "source_lua.records.mapper";
static const char BATCH_MT[] = "source_lua.records.batch";
static const char RESPONSE_MT[] = "source_lua.records.response";
/* The key under which a response remembers that its text is not JSON; scripts cannot spell it. */
static const char NOT_JSON_KEY = 0;

enum field_kind { FROM_COPY, FROM_INTEGER, FROM_DAY_MS, FROM_DAY, FROM_CONTEXT, FROM_VALUE };

struct field {
	enum field_kind kind;
	const char *name;
	const char *key; /* "name": */
	size_t key_len;
	char key16[16]; /* the same, zero-padded, when it fits: copied in one 16-byte move */
	int source;     /* the item member it reads (FROM_COPY, FROM_INTEGER, FROM_DAY*) */
	int day_column; /* FROM_DAY_MS, FROM_DAY */
	enum date_zone zone;
	const char *context; /* FROM_CONTEXT: the ctx field */
	int value_pin;       /* FROM_VALUE: where the constant is kept in the pins table */
};

struct source {
	const char *name;
	size_t len;
};

struct entry {
	size_t offset, len;
};

/* A batch's buffers, handed back to the mapper when the batch is collected so that the next page
 * writes into memory that is already mapped (fresh pages cost a fault each). */
struct buffers {
	char *data;
	size_t cap;
	struct entry *entries;
	int64_t *days;
	size_t entries_cap;
};

struct mapper {
	lua_Alloc alloc;
	void *alloc_ud;
	struct buffers spare;
	int collected;
	const char *list;
	size_t list_len;
	const char *next; /* NULL when the declaration names no next-page field */
	size_t next_len;
	int nfields, nsources, ndays;
	size_t fixed_bound; /* most bytes a record can take beyond what it copies from its item */
	int copies_of[MAX_FIELDS]; /* how many fields copy each source member verbatim */
	int max_copies;
	struct field fields[MAX_FIELDS];
	struct source sources[MAX_FIELDS];
	const char *day_names[MAX_FIELDS];
};


struct record_batch {
	lua_Alloc alloc;
	void *alloc_ud;
	struct mapper *m;
	struct buffers mem;
	size_t len, count;
	struct buf constants; /* the texts of context and value fields, written once per page */
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
		int n = p[i] >= 0x80 ? json_utf8_sequence_length(p + i, *len - i) : (p[i] >= 0x20 && p[i] != '"' && p[i] != '\\');
		if (n == 0)
			luaL_error(L, "records.declare: %s '%s' must be UTF-8 without quotes, backslashes or control characters",
				   what, s);
		i += (size_t)n;
	}
	return s;
}

/* Catches misspelt options (form = "t") instead of silently leaving a field out. known may list
 * "1" for the positional first element. */
static void refuse_unknown_keys(lua_State *L, int idx, const char *const *known, const char *where)
{
	lua_pushnil(L);
	while (lua_next(L, idx)) {
		lua_pop(L, 1);
		const char *key = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1)
				  : lua_isinteger(L, -1) && lua_tointeger(L, -1) == 1 ? "1"
										    : NULL;
		int ok = 0;
		for (const char *const *k = known; key && !ok && *k; k++)
			ok = !strcmp(key, *k);
		if (!ok) {
			lua_pushvalue(L, -1);
			luaL_error(L, "records.declare: %s has an unknown key '%s'", where, luaL_tolstring(L, -1, NULL));
		}
	}
}

static int source_index(lua_State *L, struct mapper *m, int pins, int idx)
{
	size_t len;
	const char *name = lua_tolstring(L, idx, &len);
	for (int i = 0; i < m->nsources; i++)
		if (m->sources[i].len == len && !memcmp(m->sources[i].name, name, len))
			return i;
	m->sources[m->nsources].name = pin_string(L, pins, idx);
	m->sources[m->nsources].len = len;
	return m->nsources++;
}

static enum field_kind field_kind_of(lua_State *L, int spec, const char *name)
{
	int has_context = lua_getfield(L, spec, "context") != LUA_TNIL;
	int has_value = lua_getfield(L, spec, "value") != LUA_TNIL;
	int has_from = lua_getfield(L, spec, "from") != LUA_TNIL;
	int as = lua_getfield(L, spec, "as");
	const char *as_name = as == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
	enum field_kind kind = FROM_COPY;
	if (has_context + has_value + has_from != 1)
		luaL_error(L, "records.declare: field '%s' needs exactly one of from, context or value", name);
	if (as != LUA_TNIL && (!has_from || !as_name))
		luaL_error(L, "records.declare: field '%s': as goes with from and is a string", name);
	if (has_context)
		kind = FROM_CONTEXT;
	else if (has_value)
		kind = FROM_VALUE;
	else if (!as_name)
		kind = FROM_COPY;
	else if (!strcmp(as_name, "integer"))
		kind = FROM_INTEGER;
	else if (!strcmp(as_name, "day_from_ms"))
		kind = FROM_DAY_MS;
	else if (!strcmp(as_name, "day"))
		kind = FROM_DAY;
	else
		luaL_error(L, "records.declare: field '%s': as must be \"integer\", \"day_from_ms\" or \"day\", not '%s'",
			   name, as_name);
	lua_pop(L, 4);
	return kind;
}

static void declare_field(lua_State *L, struct mapper *m, int pins, int spec, int position)
{
	static const char *const known[] = {"1", "name", "from", "as", "zone", "context", "value", NULL};
	char where[32];
	snprintf(where, sizeof where, "field %d", position);
	if (!lua_istable(L, spec))
		luaL_error(L, "records.declare: %s must be a table like { \"name\", from = \"key\" }", where);
	refuse_unknown_keys(L, spec, known, where);
	if (lua_rawgeti(L, spec, 1) == LUA_TNIL) {
		lua_pop(L, 1);
		lua_getfield(L, spec, "name");
	}
	size_t len;
	const char *name = checked_name(L, -1, where, &len);
	for (int i = 0; i < m->nfields; i++)
		if (!strcmp(m->fields[i].name, name))
			luaL_error(L, "records.declare: field '%s' is declared twice", name);
	struct field *f = &m->fields[m->nfields];
	f->name = pin_string(L, pins, -1);
	lua_pushfstring(L, "\"%s\":", name);
	f->key_len = lua_rawlen(L, -1);
	f->key = pin_string(L, pins, -1);
	if (f->key_len <= sizeof f->key16)
		memcpy(f->key16, f->key, f->key_len);
	lua_pop(L, 2);
	f->kind = field_kind_of(L, spec, f->name);
	f->zone = DATE_UTC;
	if (lua_getfield(L, spec, "zone") != LUA_TNIL &&
	    (f->kind != FROM_DAY_MS || !lua_isstring(L, -1) || date_zone_from_name(lua_tostring(L, -1), &f->zone)))
		luaL_error(L, "records.declare: field '%s': zone goes with as = \"day_from_ms\" and is UTC or America/New_York",
			   f->name);
	lua_pop(L, 1);
	if (f->kind == FROM_CONTEXT) {
		lua_getfield(L, spec, "context");
		checked_name(L, -1, "context", &len);
		f->context = pin_string(L, pins, -1);
		lua_pop(L, 1);
	} else if (f->kind == FROM_VALUE) {
		lua_getfield(L, spec, "value");
		lua_rawseti(L, pins, (lua_Integer)lua_rawlen(L, pins) + 1);
		f->value_pin = (int)lua_rawlen(L, pins);
	} else {
		lua_getfield(L, spec, "from");
		checked_name(L, -1, "from", &len);
		f->source = source_index(L, m, pins, lua_gettop(L));
		lua_pop(L, 1);
		if (f->kind == FROM_COPY || f->kind == FROM_DAY) {
			int copies = ++m->copies_of[f->source];
			if (copies > m->max_copies)
				m->max_copies = copies;
		}
	}
	if (f->kind == FROM_DAY_MS || f->kind == FROM_DAY) {
		f->day_column = m->ndays;
		m->day_names[m->ndays++] = f->name;
	}
	/* A comma, the key, a number's text and the slack of a 16-byte move. */
	m->fixed_bound += 1 + f->key_len + JSON_NUMBER_MAX + 16;
	m->nfields++;
}

/* records.declare{ list = "results", next_url = "next_url", fields = { {"name", from = "key"}, ... } } */
static int records_declare(lua_State *L)
{
	static const char *const known[] = {"list", "next_url", "fields", NULL};
	luaL_checktype(L, 1, LUA_TTABLE);
	lua_settop(L, 1);
	refuse_unknown_keys(L, 1, known, "the declaration");
	struct mapper *m = lua_newuserdatauv(L, sizeof *m, 1);
	memset(m, 0, sizeof *m);
	m->alloc = lua_getallocf(L, &m->alloc_ud);
	luaL_setmetatable(L, MAPPER_MT);
	lua_newtable(L);
	int pins = lua_gettop(L);
	lua_pushvalue(L, pins);
	lua_setiuservalue(L, 2, 1);
	lua_getfield(L, 1, "list");
	m->list = checked_name(L, -1, "list", &m->list_len);
	pin_string(L, pins, -1);
	lua_pop(L, 1);
	if (lua_getfield(L, 1, "next_url") != LUA_TNIL) {
		m->next = checked_name(L, -1, "next_url", &m->next_len);
		pin_string(L, pins, -1);
	}
	lua_pop(L, 1);
	if (lua_getfield(L, 1, "fields") != LUA_TTABLE || lua_rawlen(L, -1) == 0)
		return luaL_error(L, "records.declare: fields must be a non-empty list");
	int fields = lua_gettop(L);
	lua_Integer n = (lua_Integer)lua_rawlen(L, fields);
	if (n > MAX_FIELDS)
		return luaL_error(L, "records.declare: at most %d fields", MAX_FIELDS);
	for (lua_Integer i = 1; i <= n; i++) {
		lua_rawgeti(L, fields, i);
		declare_field(L, m, pins, lua_gettop(L), (int)i);
		lua_pop(L, 1);
	}
	lua_settop(L, 2);
	return 1;
}

/* --------------------------------------------------------------------------------------------
 * Batches: where a page's records are written
 * ------------------------------------------------------------------------------------------ */

static void free_buffers(lua_Alloc alloc, void *ud, struct buffers *mem, int ndays)
{
	alloc(ud, mem->data, mem->cap, 0);
	alloc(ud, mem->entries, mem->entries_cap * sizeof *mem->entries, 0);
	alloc(ud, mem->days, mem->entries_cap * (size_t)ndays * sizeof *mem->days, 0);
	memset(mem, 0, sizeof *mem);
}

static int batch_gc(lua_State *L)
{
	struct record_batch *b = lua_touserdata(L, 1);
	if (!b->alloc)
		return 0;
	/* The mapper outlives its batches (it is their uservalue), but at lua_close its finalizer
	 * may run first: then it takes nothing back. */
	if (!b->m->collected && !b->m->spare.data && !b->m->spare.entries)
		b->m->spare = b->mem;
	else
		free_buffers(b->alloc, b->alloc_ud, &b->mem, b->m->ndays);
	buf_free(&b->constants);
	memset(b, 0, sizeof *b);
	return 0;
}

static int mapper_gc(lua_State *L)
{
	struct mapper *m = lua_touserdata(L, 1);
	if (m->alloc)
		free_buffers(m->alloc, m->alloc_ud, &m->spare, m->ndays);
	m->collected = 1;
	return 0;
}

static void *regrow(lua_State *L, struct record_batch *b, void *ptr, size_t old_size, size_t new_size)
{
	void *grown = new_size ? b->alloc(b->alloc_ud, ptr, old_size, new_size) : ptr;
	if (!grown && new_size)
		luaL_error(L, "records: a page's records do not fit in the script's memory limit");
	return grown;
}

static char *reserve_data(lua_State *L, struct record_batch *b, size_t extra)
{
	if (b->mem.cap - b->len < extra) {
		size_t cap = b->mem.cap ? b->mem.cap : 64 * 1024;
		while (cap - b->len < extra)
			cap *= 2;
		b->mem.data = regrow(L, b, b->mem.data, b->mem.cap, cap);
		b->mem.cap = cap;
	}
	return b->mem.data + b->len;
}

static void reserve_entry(lua_State *L, struct record_batch *b)
{
	struct buffers *mem = &b->mem;
	if (b->count < mem->entries_cap)
		return;
	size_t cap = mem->entries_cap ? mem->entries_cap * 2 : 1024;
	size_t ndays = (size_t)b->m->ndays;
	mem->entries = regrow(L, b, mem->entries, mem->entries_cap * sizeof *mem->entries, cap * sizeof *mem->entries);
	mem->days = regrow(L, b, mem->days, mem->entries_cap * ndays * sizeof *mem->days, cap * ndays * sizeof *mem->days);
	mem->entries_cap = cap;
}

static struct record_batch *push_batch(lua_State *L, int mapper_idx)
{
	struct record_batch *b = lua_newuserdatauv(L, sizeof *b, 1);
	memset(b, 0, sizeof *b);
	b->m = lua_touserdata(L, mapper_idx);
	b->alloc = lua_getallocf(L, &b->alloc_ud);
	b->mem = b->m->spare;
	memset(&b->m->spare, 0, sizeof b->m->spare);
	luaL_setmetatable(L, BATCH_MT);
	lua_pushvalue(L, mapper_idx);
	lua_setiuservalue(L, -2, 1);
	return b;
}

/* #batch: how many records */
static int batch_len(lua_State *L)
{
	const struct record_batch *b = luaL_checkudata(L, 1, BATCH_MT);
	lua_pushinteger(L, (lua_Integer)b->count);
	return 1;
}

/* batch[i]: record i decoded into a table, for scripts and tests that want to look at one */
static int batch_index(lua_State *L)
{
	const struct record_batch *b = luaL_checkudata(L, 1, BATCH_MT);
	lua_Integer i = lua_isinteger(L, 2) ? lua_tointeger(L, 2) : 0;
	if (i < 1 || (size_t)i > b->count)
		return 0;
	const struct entry *e = &b->mem.entries[i - 1];
	json_decode_push(L, b->mem.data + e->offset, e->len);
	lua_pop(L, 1);
	return 1;
}

/* --------------------------------------------------------------------------------------------
 * The scanner
 * ------------------------------------------------------------------------------------------ */

struct value {
	const unsigned char *at; /* NULL when the item lacks the member */
	size_t len;
	char type; /* s(tring) n(umber) l (null) b(oolean) c(ontainer) */
	char plain; /* a number already in the runtime's form: no exponent, no trailing zero */
	char escaped;
	char is_integer; /* a number spelt as at most 18 digits, no point or exponent */
};

struct walk {
	lua_State *L;
	const struct mapper *m;
	struct record_batch *b;
	const unsigned char *start, *end;
	const char *error; /* why the text is not JSON */
	size_t error_at;
	int item;
	struct value values[MAX_FIELDS];
	struct value next;
	/* Items of a page spell their members in the same order: member k of the last item, and the
	 * source it matched (-1: none), answer for member k of this one with one comparison. */
	struct member_guess {
		const unsigned char *name;
		size_t len;
		int source;
	} guess[MAX_FIELDS];
	size_t constant_offset[MAX_FIELDS], constant_len[MAX_FIELDS]; /* in b->constants; len 0: omitted */
	int64_t month_first, month_last; /* the month whose text day_text holds */
	char day_text[DATE_DAY_LEN];
	size_t constants_len;
};

static const unsigned char *syntax(struct walk *w, const unsigned char *p, const char *what)
{
	if (!w->error) {
		w->error = what;
		w->error_at = (size_t)(p - w->start);
	}
	return NULL;
}

/* The text is a Lua string, so text[len] is a readable NUL: loops that stop at NUL need no bound
 * check of their own (NUL is neither space, digit nor string content). */
static inline const unsigned char *ws(const unsigned char *p, const unsigned char *end)
{
	(void)end;
	if (*p > ' ')
		return p;
	while (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')
		p++;
	return p;
}

static inline int is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static int is_hex(unsigned char c)
{
	return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* p is just after the opening quote; returns the closing quote. */
static const unsigned char *scan_string(struct walk *w, const unsigned char *p, char *escaped)
{
	const unsigned char *end = w->end;
	for (;;) {
		while (*p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\')
			p++;
		if (p >= end)
			return syntax(w, p, "a string is not closed");
		if (*p == '"')
			return p;
		if (*p == '\\') {
			*escaped = 1;
			if (end - p < 2)
				return syntax(w, p, "a string is not closed");
			switch (p[1]) {
			case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
				p += 2;
				continue;
			case 'u':
				if (end - p < 6 || !is_hex(p[2]) || !is_hex(p[3]) || !is_hex(p[4]) || !is_hex(p[5]))
					return syntax(w, p, "a \\u escape needs four hex digits");
				p += 6;
				continue;
			default:
				return syntax(w, p, "invalid escape in a string");
			}
		}
		if (*p < 0x20)
			return syntax(w, p, "a control character in a string");
		int n = json_utf8_sequence_length(p, (size_t)(end - p));
		if (n == 0)
			return syntax(w, p, "not valid UTF-8");
		p += n;
	}
}

/* Eight bytes at a time while eight remain: a byte b is a digit when b + 0x46 and b - 0x30 both
 * keep their top bit clear; lanes below the first non-digit are digits, so no carry or borrow
 * reaches it, and the lowest flagged lane is the first non-digit. */
static inline const unsigned char *skip_digits(const unsigned char *p, const unsigned char *end)
{
	while (end - p >= 8) {
		uint64_t x;
		memcpy(&x, p, 8);
		uint64_t flags = ((x + 0x4646464646464646ULL) | (x - 0x3030303030303030ULL)) & 0x8080808080808080ULL;
		if (flags)
			return p + (__builtin_ctzll(flags) >> 3);
		p += 8;
	}
	while (is_digit(*p))
		p++;
	return p;
}

static const unsigned char *scan_number(struct walk *w, const unsigned char *p, struct value *v)
{
	const unsigned char *end = w->end;
	p += *p == '-';
	const unsigned char *digits = p;
	v->plain = 1;
	if (*p == '0')
		p++;
	else if (*p >= '1' && *p <= '9')
		p = skip_digits(p + 1, end);
	else
		return syntax(w, p, "invalid number");
	v->is_integer = p - digits <= 18;
	if (*p == '.') {
		v->is_integer = 0;
		if (!is_digit(*++p))
			return syntax(w, p, "a number needs digits after its point");
		p = skip_digits(p, end);
		if (p[-1] == '0')
			v->plain = 0;
	}
	if (*p == 'e' || *p == 'E') {
		v->is_integer = 0;
		v->plain = 0;
		if (*++p == '+' || *p == '-')
			p++;
		if (!is_digit(*p))
			return syntax(w, p, "a number needs digits in its exponent");
		p = skip_digits(p, end);
	}
	return p;
}

static const unsigned char *scan_literal(struct walk *w, const unsigned char *p, const char *word, size_t len)
{
	if ((size_t)(w->end - p) < len || memcmp(p, word, len))
		return syntax(w, p, "unexpected characters");
	return p + len;
}

static const unsigned char *skip_value(struct walk *w, const unsigned char *p, int depth);

static const unsigned char *skip_members(struct walk *w, const unsigned char *p, int depth)
{
	const unsigned char *end = w->end;
	if (depth > MAX_DEPTH)
		return syntax(w, p, "nested too deeply");
	p = ws(p + 1, end);
	if (p < end && *p == '}')
		return p + 1;
	for (;;) {
		char escaped = 0;
		if (p >= end || *p != '"')
			return syntax(w, p, "expected a member name");
		if (!(p = scan_string(w, p + 1, &escaped)))
			return NULL;
		p = ws(p + 1, end);
		if (p >= end || *p != ':')
			return syntax(w, p, "expected ':'");
		if (!(p = skip_value(w, ws(p + 1, end), depth)))
			return NULL;
		p = ws(p, end);
		if (p < end && *p == ',') {
			p = ws(p + 1, end);
			continue;
		}
		if (p < end && *p == '}')
			return p + 1;
		return syntax(w, p, "expected ',' or '}'");
	}
}

static const unsigned char *skip_elements(struct walk *w, const unsigned char *p, int depth)
{
	const unsigned char *end = w->end;
	if (depth > MAX_DEPTH)
		return syntax(w, p, "nested too deeply");
	p = ws(p + 1, end);
	if (p < end && *p == ']')
		return p + 1;
	for (;;) {
		if (!(p = skip_value(w, p, depth)))
			return NULL;
		p = ws(p, end);
		if (p < end && *p == ',') {
			p = ws(p + 1, end);
			continue;
		}
		if (p < end && *p == ']')
			return p + 1;
		return syntax(w, p, "expected ',' or ']'");
	}
}

/* Scans one value starting at p (no leading space); fills v when given. Returns the end. */
static const unsigned char *scan_value(struct walk *w, const unsigned char *p, int depth, struct value *v)
{
	struct value ignored;
	if (!v)
		v = &ignored;
	v->at = p;
	v->plain = 1;
	v->escaped = 0;
	v->is_integer = 0;
	const unsigned char *q;
	if (p >= w->end)
		return syntax(w, p, "the text ends where a value should be");
	switch (*p) {
	case '"':
		v->type = 's';
		q = scan_string(w, p + 1, &v->escaped);
		q = q ? q + 1 : NULL;
		break;
	case '{':
		v->type = 'c';
		q = skip_members(w, p, depth + 1);
		break;
	case '[':
		v->type = 'c';
		q = skip_elements(w, p, depth + 1);
		break;
	case 't':
		v->type = 'b';
		q = scan_literal(w, p, "true", 4);
		break;
	case 'f':
		v->type = 'b';
		q = scan_literal(w, p, "false", 5);
		break;
	case 'n':
		v->type = 'l';
		q = scan_literal(w, p, "null", 4);
		break;
	default:
		v->type = 'n';
		q = scan_number(w, p, v);
	}
	if (q)
		v->len = (size_t)(q - p);
	return q;
}

static const unsigned char *skip_value(struct walk *w, const unsigned char *p, int depth)
{
	return scan_value(w, p, depth, NULL);
}

static const char *type_name(char type)
{
	switch (type) {
	case 's': return "string";
	case 'n': return "number";
	case 'l': return "null";
	case 'b': return "boolean";
	default: return "object or array";
	}
}

static int same_bytes(const unsigned char *a, const char *b, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (a[i] != (unsigned char)b[i])
			return 0;
	return 1;
}

/* Rare: a member name with escapes, compared after cjson unescapes it. */
static int escaped_name_is(struct walk *w, const unsigned char *p, const unsigned char *q, const char *name,
			   size_t len)
{
	json_decode_push(w->L, (const char *)p - 1, (size_t)(q - p) + 2);
	size_t got = 0;
	const char *s = lua_tolstring(w->L, -2, &got);
	int same = s && got == len && !memcmp(s, name, len);
	lua_pop(w->L, 2);
	return same;
}

/* Whether the member name spelt at [p, q) (between its quotes) is name. */
static int name_is(struct walk *w, const unsigned char *p, const unsigned char *q, char escaped, const char *name,
		   size_t len)
{
	if (escaped)
		return escaped_name_is(w, p, q, name, len);
	return (size_t)(q - p) == len && same_bytes(p, name, len);
}

static int search_source(struct walk *w, const unsigned char *p, const unsigned char *q, char escaped)
{
	const struct mapper *m = w->m;
	for (int i = 0; i < m->nsources; i++)
		if (name_is(w, p, q, escaped, m->sources[i].name, m->sources[i].len))
			return i;
	return -1;
}

/* The source that member number k, named [p, q), feeds; -1 for none. */
static int find_source(struct walk *w, int k, const unsigned char *p, const unsigned char *q, char escaped)
{
	size_t len = (size_t)(q - p);
	if (k >= MAX_FIELDS || escaped)
		return search_source(w, p, q, escaped);
	struct member_guess *g = &w->guess[k];
	if (g->name && g->len == len && same_bytes(p, (const char *)g->name, len))
		return g->source;
	g->name = p;
	g->len = len;
	g->source = search_source(w, p, q, 0);
	return g->source;
}

/* --------------------------------------------------------------------------------------------
 * Writing a record
 * ------------------------------------------------------------------------------------------ */

/* The value is a validated JSON number followed by a byte that ends it, so strtod stops there. */
static double number_value(const struct value *v)
{
	return strtod((const char *)v->at, NULL);
}

/* math.tointeger's rule: an integral number that fits, else nothing. */
static int number_to_integer(const struct value *v, long long *out)
{
	if (v->is_integer) {
		const unsigned char *p = v->at, *end = v->at + v->len;
		int negative = *p == '-';
		long long n = 0;
		for (p += negative; p < end; p++)
			n = n * 10 + (*p - '0');
		*out = negative ? -n : n;
		return 0;
	}
	double d = number_value(v);
	if (d != floor(d) || !(d >= -9223372036854775808.0 && d < 9223372036854775808.0))
		return -1;
	*out = (long long)d;
	return 0;
}

/* The digits of a number spelt with an exponent or trailing zeros, as json_double_text would
 * write the double it reads as, when that can be told from the digits alone: at most 15
 * significant digits (so no shorter decimal reads as the same double, and the decimal is the
 * shortest text), and either an integer below 2^53 or at most 6 decimals below 1e9 (the two forms
 * json_double_text uses there). Returns 0 when strtod and json_double_text must decide. */
static size_t quick_number_text(const struct value *v, char *out)
{
	const unsigned char *p = v->at;
	const unsigned char *end = p + v->len;
	int negative = *p == '-';
	p += negative;
	unsigned long long d = 0;
	int significant = 0, exponent = 0, seen_point = 0;
	for (; p < end && (is_digit(*p) || *p == '.'); p++) {
		if (*p == '.') {
			seen_point = 1;
			continue;
		}
		if (d == 0 && *p == '0') {
			exponent -= seen_point;
			continue;
		}
		if (++significant > 15)
			return 0;
		d = d * 10 + (unsigned long long)(*p - '0');
		exponent -= seen_point;
	}
	if (d == 0)
		return 0; /* zero and its sign: the slow path */
	if (p < end) {
		long long e = strtoll((const char *)p + 1, NULL, 10);
		if (e > 400 || e < -400)
			return 0;
		exponent += (int)e;
	}
	while (d % 10 == 0) {
		d /= 10;
		significant--;
		exponent++;
	}
	size_t len = 0;
	if (negative)
		out[len++] = '-';
	if (exponent >= 0) {
		for (; exponent > 0; exponent--) {
			if (d >= (1ULL << 53) / 10)
				return 0;
			d *= 10;
		}
		if (d >= (1ULL << 53))
			return 0;
		return len + json_int_text((long long)d, out + len);
	}
	int decimals = -exponent;
	if (decimals > 6 || significant - decimals > 9)
		return 0;
	char digits[JSON_NUMBER_MAX];
	int n = (int)json_int_text((long long)d, digits);
	if (n <= decimals) {
		out[len++] = '0';
		out[len++] = '.';
		for (int z = n; z < decimals; z++)
			out[len++] = '0';
		memcpy(out + len, digits, (size_t)n);
		return len + (size_t)n;
	}
	memcpy(out + len, digits, (size_t)(n - decimals));
	len += (size_t)(n - decimals);
	out[len++] = '.';
	memcpy(out + len, digits + n - decimals, (size_t)decimals);
	return len + (size_t)decimals;
}

static size_t number_text(const struct value *v, char *out)
{
	size_t len = quick_number_text(v, out);
	return len ? len : json_double_text(number_value(v), out);
}

static int64_t day_from_ms(struct walk *w, const struct field *f, const struct value *v)
{
	const char *source = w->m->sources[f->source].name;
	if (v->type != 'n')
		luaL_error(w->L, "records: item %d of '%s': '%s' is a %s, not a number of milliseconds", w->item,
			   w->m->list, source, type_name(v->type));
	long long ms;
	int64_t seconds;
	if (number_to_integer(v, &ms) == 0 && ms > -(1LL << 53) && ms < (1LL << 53)) {
		seconds = ms >= 0 ? ms / 1000 : -((-ms + 999) / 1000);
	} else {
		double d = number_value(v);
		if (!(fabs(d) < 1e15))
			seconds = INT64_MAX;
		else
			seconds = (int64_t)floor(d / 1000.0);
	}
	int64_t day = seconds == INT64_MAX ? INT64_MAX : date_day_in_zone(seconds, f->zone);
	if (day < FIRST_DAY || day > LAST_DAY)
		luaL_error(w->L, "records: item %d of '%s': '%s' = %.*s ms is not a time in the years 1000 to 9999",
			   w->item, w->m->list, source, (int)(v->len > 40 ? 40 : v->len), (const char *)v->at);
	return day;
}

static int64_t day_from_text(struct walk *w, const struct field *f, const struct value *v)
{
	char text[DATE_DAY_LEN];
	int64_t day;
	if (v->type == 's' && !v->escaped && v->len == 12) {
		memcpy(text, v->at + 1, 10);
		text[10] = '\0';
		if (date_parse_day(text, &day) == 0)
			return day;
	}
	luaL_error(w->L, "records: item %d of '%s': '%s' is not a YYYY-MM-DD day", w->item, w->m->list,
		   w->m->sources[f->source].name);
	return 0;
}

static inline char *put(char *out, const void *data, size_t len)
{
	memcpy(out, data, len);
	return out + len;
}

/* Short copies as one fixed 16-byte move (the output has the slack, the source is checked):
 * memcpy's call costs more than the bytes. */
static inline char *put_short(char *out, const void *data, size_t len, size_t readable)
{
	if (len <= 16 && readable >= 16) {
		memcpy(out, data, 16);
		return out + len;
	}
	return put(out, data, len);
}

static inline char *put_key(char *out, const struct field *f, int *first)
{
	if (!*first)
		*out++ = ',';
	*first = 0;
	if (f->key_len <= sizeof f->key16)
		return put_short(out, f->key16, f->key_len, sizeof f->key16);
	return put(out, f->key, f->key_len);
}

static int month_length(int year, int month)
{
	static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	int leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
	return days[month - 1] + (month == 2 && leap);
}

/* Consecutive items mostly fall in the same month: its text is kept and only the day changes. */
static char *put_day(struct walk *w, char *out, int64_t day)
{
	if (day < w->month_first || day > w->month_last) {
		date_format_day(day, w->day_text);
		int year = atoi(w->day_text), month = atoi(w->day_text + 5), dom = atoi(w->day_text + 8);
		w->month_first = day - (dom - 1);
		w->month_last = w->month_first + month_length(year, month) - 1;
	}
	int dom = (int)(day - w->month_first) + 1;
	w->day_text[8] = (char)('0' + dom / 10);
	w->day_text[9] = (char)('0' + dom % 10);
	*out++ = '"';
	out = put(out, w->day_text, 10);
	*out++ = '"';
	return out;
}

static char *put_field(struct walk *w, char *out, int i, int64_t *days, int *first)
{
	const struct field *f = &w->m->fields[i];
	if (f->kind == FROM_CONTEXT || f->kind == FROM_VALUE) {
		if (w->constant_len[i])
			out = put(put_key(out, f, first), w->b->constants.data + w->constant_offset[i], w->constant_len[i]);
		return out;
	}
	const struct value *v = &w->values[f->source];
	if (!v->at)
		return out;
	char number[JSON_NUMBER_MAX];
	long long integer;
	switch (f->kind) {
	case FROM_COPY:
		out = put_key(out, f, first);
		if (v->type == 'n' && !v->plain)
			return put(out, number, number_text(v, number));
		return put_short(out, v->at, v->len, (size_t)(w->end - v->at));
	case FROM_INTEGER:
		if (v->type != 'n' || number_to_integer(v, &integer))
			return out;
		out = put_key(out, f, first);
		/* Spelt as an integer already (but for "-0"): the text is the integer's text. */
		if (v->is_integer && (integer != 0 || v->len == 1))
			return put_short(out, v->at, v->len, (size_t)(w->end - v->at));
		return put(out, number, json_int_text(integer, number));
	case FROM_DAY_MS:
		if (v->type == 'l')
			return out;
		days[f->day_column] = day_from_ms(w, f, v);
		return put_day(w, put_key(out, f, first), days[f->day_column]);
	default: /* FROM_DAY */
		if (v->type == 'l')
			return out;
		days[f->day_column] = day_from_text(w, f, v);
		return put(put_key(out, f, first), v->at, v->len);
	}
}

static void write_record(struct walk *w, size_t item_len)
{
	struct record_batch *b = w->b;
	const struct mapper *m = w->m;
	reserve_entry(w->L, b);
	/* Copied values lie inside the item (one may be copied by several fields); everything else is
	 * bounded by the declaration. */
	char *start = reserve_data(w->L, b, item_len * (size_t)m->max_copies + m->fixed_bound + w->constants_len + 2);
	int64_t *days = b->mem.days + b->count * (size_t)m->ndays;
	for (int d = 0; d < m->ndays; d++)
		days[d] = RECORDS_NO_DAY;
	char *out = start;
	int first = 1;
	*out++ = '{';
	for (int i = 0; i < m->nfields; i++)
		out = put_field(w, out, i, days, &first);
	*out++ = '}';
	b->mem.entries[b->count].offset = b->len;
	b->mem.entries[b->count].len = (size_t)(out - start);
	b->len += (size_t)(out - start);
	b->count++;
}

/* p is at the item's '{'; reads its members into w->values. */
static const unsigned char *read_item(struct walk *w, const unsigned char *p)
{
	const unsigned char *end = w->end;
	for (int i = 0; i < w->m->nsources; i++)
		w->values[i].at = NULL;
	p = ws(p + 1, end);
	if (p < end && *p == '}')
		return p + 1;
	for (int k = 0;; k++) {
		char escaped = 0;
		if (p >= end || *p != '"')
			return syntax(w, p, "expected a member name");
		const unsigned char *name = p + 1;
		const struct member_guess *g = k < MAX_FIELDS ? &w->guess[k] : NULL;
		int source;
		if (g && g->name && (size_t)(end - name) > g->len && name[g->len] == '"' &&
		    same_bytes(name, (const char *)g->name, g->len)) {
			/* Spelt as member k of an earlier item, which was scanned: valid, no escapes. */
			p = name + g->len;
			source = g->source;
		} else {
			if (!(p = scan_string(w, name, &escaped)))
				return NULL;
			source = find_source(w, k, name, p, escaped);
		}
		p = ws(p + 1, end);
		if (p >= end || *p != ':')
			return syntax(w, p, "expected ':'");
		struct value *v = source >= 0 ? &w->values[source] : NULL;
		if (!(p = scan_value(w, ws(p + 1, end), 3, v)))
			return NULL;
		p = ws(p, end);
		if (p < end && *p == ',') {
			p = ws(p + 1, end);
			continue;
		}
		if (p < end && *p == '}')
			return p + 1;
		return syntax(w, p, "expected ',' or '}'");
	}
}

/* p is at the list's '['. */
static const unsigned char *walk_items(struct walk *w, const unsigned char *p)
{
	const unsigned char *end = w->end;
	p = ws(p + 1, end);
	if (p < end && *p == ']')
		return p + 1;
	for (;;) {
		w->item++;
		const unsigned char *item = p;
		if (p < end && *p == '{') {
			if (!(p = read_item(w, p)))
				return NULL;
			write_record(w, (size_t)(p - item));
		} else {
			struct value v;
			if (!(p = scan_value(w, p, 2, &v)))
				return NULL;
			luaL_error(w->L, "records: item %d of '%s' is a %s, not an object", w->item, w->m->list,
				   type_name(v.type));
		}
		p = ws(p, end);
		if (p < end && *p == ',') {
			p = ws(p + 1, end);
			continue;
		}
		if (p < end && *p == ']')
			return p + 1;
		return syntax(w, p, "expected ',' or ']'");
	}
}

/* The list member's value at p: an array of items, or null for none. */
static const unsigned char *walk_list(struct walk *w, const unsigned char *p)
{
	if (p < w->end && *p == '[')
		return walk_items(w, p);
	struct value v;
	if (!(p = scan_value(w, p, 1, &v)))
		return NULL;
	if (v.type != 'l')
		luaL_error(w->L, "records: the page's '%s' is a %s, not an array", w->m->list, type_name(v.type));
	return p;
}

static const unsigned char *walk_member(struct walk *w, const unsigned char *p, int *list_seen)
{
	const unsigned char *end = w->end;
	char escaped = 0;
	if (p >= end || *p != '"')
		return syntax(w, p, "expected a member name");
	const unsigned char *name = p + 1;
	if (!(p = scan_string(w, name, &escaped)))
		return NULL;
	int is_list = name_is(w, name, p, escaped, w->m->list, w->m->list_len);
	int is_next = !is_list && w->m->next && name_is(w, name, p, escaped, w->m->next, w->m->next_len);
	p = ws(p + 1, end);
	if (p >= end || *p != ':')
		return syntax(w, p, "expected ':'");
	p = ws(p + 1, end);
	if (is_list) {
		if ((*list_seen)++)
			luaL_error(w->L, "records: the page has '%s' twice", w->m->list);
		return walk_list(w, p);
	}
	if (!is_next)
		return skip_value(w, p, 1);
	struct value v;
	if (!(p = scan_value(w, p, 1, &v)))
		return NULL;
	w->next = v.type == 's' ? v : (struct value){0};
	return p;
}

static void walk_page(struct walk *w)
{
	const unsigned char *end = w->end;
	const unsigned char *p = ws(w->start, end);
	int list_seen = 0;
	if (p < end && *p == '{') {
		p = ws(p + 1, end);
		if (p < end && *p == '}') {
			p++;
		} else {
			for (;;) {
				if (!(p = walk_member(w, p, &list_seen)))
					return;
				p = ws(p, end);
				if (p < end && *p == ',') {
					p = ws(p + 1, end);
					continue;
				}
				if (p < end && *p == '}') {
					p++;
					break;
				}
				syntax(w, p, "expected ',' or '}'");
				return;
			}
		}
	} else {
		struct value v;
		if (!(p = scan_value(w, p, 0, &v)))
			return;
		if (ws(p, end) == end)
			luaL_error(w->L, "records: the page is a %s, not an object with '%s'", type_name(v.type), w->m->list);
	}
	if (ws(p, end) != end)
		syntax(w, p, "more text after the JSON value");
}

/* --------------------------------------------------------------------------------------------
 * mapper:map(ctx, response) and the response object
 * ------------------------------------------------------------------------------------------ */

/* Raises the error that tells the engine to ask for the page again; marks the response. */
static int fail_not_json(lua_State *L, int response, const char *why)
{
	lua_pushlightuserdata(L, (void *)&NOT_JSON_KEY);
	lua_pushstring(L, why);
	lua_rawset(L, response);
	lua_createtable(L, 0, 2);
	lua_pushfstring(L, "the answer is not JSON (%s)", why);
	lua_setfield(L, -2, "message");
	lua_pushliteral(L, "transient_error");
	lua_setfield(L, -2, "failure_type");
	return lua_error(L);
}

/* Writes the texts of context and value fields once per page; a nil leaves the field out. */
static void write_constants(lua_State *L, struct walk *w, int mapper, int ctx)
{
	const struct mapper *m = w->m;
	char err[128];
	lua_getiuservalue(L, mapper, 1);
	int pins = lua_gettop(L);
	for (int i = 0; i < m->nfields; i++) {
		const struct field *f = &m->fields[i];
		w->constant_len[i] = 0;
		if (f->kind != FROM_CONTEXT && f->kind != FROM_VALUE)
			continue;
		if (f->kind == FROM_CONTEXT)
			lua_getfield(L, ctx, f->context);
		else
			lua_rawgeti(L, pins, f->value_pin);
		size_t mark = w->b->constants.len;
		if (!lua_isnil(L, -1) && json_encode(L, -1, &w->b->constants, err, sizeof err))
			luaL_error(L, "records: field '%s': %s", f->name, err);
		w->constant_offset[i] = mark;
		w->constant_len[i] = w->b->constants.len - mark;
		w->constants_len += w->constant_len[i];
		lua_pop(L, 1);
	}
	lua_pop(L, 1);
}

static void push_next_url(lua_State *L, const struct value *next)
{
	if (!next->at) {
		lua_pushnil(L);
	} else if (next->escaped) {
		json_decode_push(L, (const char *)next->at, next->len);
		lua_pop(L, 1);
	} else {
		lua_pushlstring(L, (const char *)next->at + 1, next->len - 2);
	}
}

/* mapper:map(ctx, response) -> batch, next_url */
static int mapper_map(lua_State *L)
{
	const struct mapper *m = luaL_checkudata(L, 1, MAPPER_MT);
	luaL_checktype(L, 2, LUA_TTABLE);
	luaL_checktype(L, 3, LUA_TTABLE);
	lua_settop(L, 3);
	lua_getfield(L, 3, "text");
	size_t len;
	const char *text = lua_tolstring(L, 4, &len);
	if (lua_type(L, 4) != LUA_TSTRING)
		return luaL_error(L, "mapper:map(ctx, response): response.text is a %s, not a string", luaL_typename(L, 4));
	struct walk w;
	memset(&w, 0, sizeof w);
	w.month_first = 1;
	w.month_last = 0;
	w.L = L;
	w.m = m;
	w.b = push_batch(L, 1);
	w.start = (const unsigned char *)text;
	w.end = w.start + len;
	write_constants(L, &w, 1, 2);
	walk_page(&w);
	if (w.error) {
		char why[160];
		snprintf(why, sizeof why, "%s at byte %zu", w.error, w.error_at);
		return fail_not_json(L, 3, why);
	}
	push_next_url(L, &w.next);
	return 2;
}

/* response.body: the text decoded on first use, then kept. */
static int response_index(lua_State *L)
{
	if (lua_type(L, 2) != LUA_TSTRING || strcmp(lua_tostring(L, 2), "body"))
		return 0;
	lua_getfield(L, 1, "text");
	size_t len;
	const char *text = lua_tolstring(L, -1, &len);
	if (!text)
		return 0;
	json_decode_push(L, text, len);
	if (lua_isnil(L, -2) && !lua_isnil(L, -1))
		return fail_not_json(L, 1, lua_tostring(L, -1));
	lua_pop(L, 1);
	lua_pushliteral(L, "body");
	lua_pushvalue(L, -2);
	lua_rawset(L, 1);
	return 1;
}

void records_push_response(lua_State *L, long status, int url_idx, const char *text, size_t len)
{
	url_idx = lua_absindex(L, url_idx);
	lua_createtable(L, 0, 4);
	lua_pushinteger(L, status);
	lua_setfield(L, -2, "status");
	lua_pushvalue(L, url_idx);
	lua_setfield(L, -2, "url");
	lua_pushlstring(L, text ? text : "", len);
	lua_setfield(L, -2, "text");
	luaL_setmetatable(L, RESPONSE_MT);
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

const struct record_batch *records_to_batch(lua_State *L, int idx)
{
	return luaL_testudata(L, idx, BATCH_MT);
}

size_t records_batch_count(const struct record_batch *b)
{
	return b->count;
}

int records_batch_day_column(const struct record_batch *b, const char *name)
{
	for (int i = 0; i < b->m->ndays; i++)
		if (!strcmp(b->m->day_names[i], name))
			return i;
	return -1;
}

void records_batch_get(const struct record_batch *b, size_t i, int column, const char **data, size_t *len,
		       int64_t *day)
{
	*data = b->mem.data + b->mem.entries[i].offset;
	*len = b->mem.entries[i].len;
	*day = column >= 0 ? b->mem.days[i * (size_t)b->m->ndays + (size_t)column] : RECORDS_NO_DAY;
}

int records_open(lua_State *L)
{
	static const luaL_Reg mapper_methods[] = {{"map", mapper_map}, {NULL, NULL}};
	if (luaL_newmetatable(L, MAPPER_MT)) {
		luaL_newlib(L, mapper_methods);
		lua_setfield(L, -2, "__index");
		lua_pushcfunction(L, mapper_gc);
		lua_setfield(L, -2, "__gc");
	}
	if (luaL_newmetatable(L, BATCH_MT)) {
		lua_pushcfunction(L, batch_gc);
		lua_setfield(L, -2, "__gc");
		lua_pushcfunction(L, batch_len);
		lua_setfield(L, -2, "__len");
		lua_pushcfunction(L, batch_index);
		lua_setfield(L, -2, "__index");
	}
	if (luaL_newmetatable(L, RESPONSE_MT)) {
		lua_pushcfunction(L, response_index);
		lua_setfield(L, -2, "__index");
	}
	lua_pop(L, 3);
	lua_createtable(L, 0, 1);
	lua_pushcfunction(L, records_declare);
	lua_setfield(L, -2, "declare");
	return 1;
}
