/*
 * emit: the records of one page, from parse to stdout. For each record, in this order:
 *
 * 1. outside the window asked for: skipped (counted; the API sent more than it was asked);
 * 2. emitted by an earlier read, as the incoming state records: skipped (counted), which is what
 *    makes a resumed read exactly-once whatever the page boundaries were;
 * 3. an ascending stream's record going back in time: an error naming it;
 * 4. written, and the partition's position moves (state.h).
 *
 * How a position moves depends on the declared order. Ascending: to the greatest value emitted,
 * still open (with the primary keys of the records emitted at it) until a window ends, because
 * the next page may hold more records of that value. Descending or unsorted: not until the window
 * ends, at the greatest value seen; meanwhile the keys of what the window emitted are kept, so a
 * failure half-way loses and repeats nothing. Values at or past the ceiling are written but never
 * move a position: the next read sends them again, once they may have settled.
 */
#include "emit.h"

#include <lauxlib.h>
#include <stdio.h>
#include <string.h>

#include "date.h"
#include "json.h"
#include "proto.h"
#include "records.h"
#include "runtime.h"
#include "validate.h"

/* Where a page's records come from: a Lua list, or a batch and its value column. */
struct page {
	struct stream_read *r;
	struct partition *p;
	const struct cursor_window *w;
	int records; /* the Lua list, or 0 */
	const struct record_batch *batch;
	int column;
	/* The greatest final value emitted on the page (ascending). */
	int has_top;
	int64_t top;
};

static const struct cursor_def *cursor_of(const struct stream_read *r)
{
	return &r->def->cursor;
}

/* ---- primary keys ---- */

/* Pushes the record's primary key as canonical JSON text: [v1, v2, ...], nil for a missing field.
 * record_idx holds the record as a table. [-0, +1, m] */
static void push_key_of_table(struct stream_read *r, int record_idx)
{
	lua_State *L = r->L;
	record_idx = lua_absindex(L, record_idx);
	struct buf text = {0};
	buf_putc(&text, '[');
	lua_Integer n = (lua_Integer)lua_rawlen(L, r->pk_paths);
	for (lua_Integer i = 1; i <= n; i++) {
		lua_rawgeti(L, r->pk_paths, i);
		int path = lua_gettop(L);
		lua_pushvalue(L, record_idx);
		lua_Integer depth = (lua_Integer)lua_rawlen(L, path);
		for (lua_Integer k = 1; k <= depth && lua_istable(L, -1); k++) {
			lua_rawgeti(L, path, k);
			lua_rawget(L, -2);
			lua_remove(L, -2);
		}
		char err[64];
		if (i > 1)
			buf_putc(&text, ',');
		if (lua_isnil(L, -1) || lua_istable(L, -1) || json_encode(L, -1, &text, err, sizeof err))
			buf_puts(&text, lua_isnil(L, -1) ? "null" : "\"?\"");
		lua_settop(L, path - 1);
	}
	buf_putc(&text, ']');
	lua_pushlstring(L, text.data, text.len);
	buf_free(&text);
}

/* Pushes the key of record i of the page. [-0, +1, m] */
static void push_key(struct page *pg, size_t i)
{
	lua_State *L = pg->r->L;
	if (pg->records) {
		lua_rawgeti(L, pg->records, (lua_Integer)i + 1);
	} else {
		const char *data;
		size_t len;
		int64_t ignored;
		records_batch_get(pg->batch, i, -1, &data, &len, &ignored);
		json_decode_push(L, data, len);
		lua_pop(L, 1);
	}
	push_key_of_table(pg->r, -1);
	lua_remove(L, -2);
}

/* ---- the four steps ---- */

/* 1 when an earlier read emitted the record, as the incoming state says. */
static int already_emitted(struct page *pg, size_t i, int64_t v)
{
	const struct position *from = &pg->p->resume;
	if (pg->r->plan.lookback.set)
		return 0; /* a lookback asks to send these again */
	if (from->has_cursor && v < from->cursor)
		return 1;
	if (from->has_cursor && v == from->cursor && !from->open)
		return 1;
	int set = from->has_cursor && v == from->cursor   ? from->at
		  : v > from->cursor || !from->has_cursor ? from->after
							  : 0;
	if (!set || !pg->r->pk_paths)
		return 0;
	push_key(pg, i);
	int has = state_set_has(&pg->r->state, set, -1);
	lua_pop(pg->r->L, 1);
	return has;
}

static void log_overflow(struct stream_read *r, struct partition *p, const char *what)
{
	if (p->overflow_logged)
		return;
	p->overflow_logged = 1;
	proto_logf(&r->rt->out, "WARN",
		   "stream '%s'%s%s%s: more than %zu records %s; the state keeps the keys of the first %zu, so after a "
		   "failure the others would be sent again (never lost)",
		   r->def->name, p->key ? " partition '" : "", p->key ? p->key : "", p->key ? "'" : "",
		   r->rt->checkpoints.max_boundary_keys, what, r->rt->checkpoints.max_boundary_keys);
}

/* The greatest final value an unsorted window has seen, where its position goes when it ends,
 * and the keys of its records at that value. Returns 0 for a value at or past the ceiling. */
static int note_window_max(struct page *pg, size_t i, int64_t v)
{
	struct stream_read *r = pg->r;
	struct partition *p = pg->p;
	if (r->plan.has_ceiling && v >= r->plan.ceiling)
		return 0;
	if (p->has_window_max && v < p->window_max)
		return 1;
	if (!p->has_window_max || v > p->window_max) {
		state_set_free(&r->state, p->window_top);
		p->window_top = r->pk_paths ? state_set_new(&r->state) : 0;
		p->window_max = v;
		p->has_window_max = 1;
	}
	if (p->window_top) {
		push_key(pg, i);
		if (state_set_add(&r->state, p->window_top, -1, r->rt->checkpoints.max_boundary_keys))
			log_overflow(r, p, "share one cursor value");
		lua_pop(r->L, 1);
	}
	return 1;
}

/* 1 to write record i of value v, 0 to skip it (counted), -1 on error. */
static int admit(struct page *pg, size_t i, int64_t v)
{
	struct stream_read *r = pg->r;
	struct partition *p = pg->p;
	const struct cursor_def *c = cursor_of(r);
	if (!cursor_in_window(c, pg->w, v)) {
		p->counts.outside_window++;
		return 0;
	}
	if (already_emitted(pg, i, v)) {
		p->counts.already_emitted++;
		/* Sent by the run that failed inside this window: still one of the window's values. */
		if (c->order != ORDER_ASCENDING && (!p->resume.has_cursor || v > p->resume.cursor))
			note_window_max(pg, i, v);
		return 0;
	}
	if (c->order == ORDER_ASCENDING && p->has_last && v < p->last) {
		char a[CURSOR_TEXT_MAX], b[CURSOR_TEXT_MAX];
		return read_fail(r, PROTO_SYSTEM_ERROR,
				 "stream '%s'%s%s%s: records must come in ascending %s order (declare cursor_order = "
				 "\"unsorted\" otherwise): record %zu has %s after %s",
				 r->def->name, p->key ? " partition '" : "", p->key ? p->key : "", p->key ? "'" : "",
				 c->field, i + 1, cursor_text(c, v, a), cursor_text(c, p->last, b));
	}
	return 1;
}

/* An unsorted window's record: its key joins the window's, so that a failure before the window
 * ends repeats nothing. */
static void note_unsorted(struct page *pg, size_t i, int64_t v)
{
	struct stream_read *r = pg->r;
	struct partition *p = pg->p;
	if (!note_window_max(pg, i, v))
		p->counts.past_ceiling++;
	if (!r->pk_paths || (p->now.has_cursor && v <= p->now.cursor))
		return;
	if (!p->now.after || p->now.after == p->resume.after) {
		struct position to = p->now;
		to.after = state_set_copy(&r->state, p->now.after);
		state_position_set(&r->state, p, &to);
	}
	push_key(pg, i);
	if (state_set_add_valued(&r->state, p->now.after, -1, v, r->rt->checkpoints.max_boundary_keys))
		log_overflow(r, p, "of one window are emitted before it ends");
	lua_pop(r->L, 1);
	p->dirty = 1;
	r->state.changed = 1;
}

/* After writing record i of value v. */
static void note(struct page *pg, size_t i, int64_t v)
{
	struct stream_read *r = pg->r;
	struct partition *p = pg->p;
	p->counts.emitted++;
	if (!p->has_last || v > p->last)
		p->last = v;
	p->has_last = 1;
	if (cursor_of(r)->order != ORDER_ASCENDING) {
		note_unsorted(pg, i, v);
		return;
	}
	if (r->plan.has_ceiling && v >= r->plan.ceiling) {
		p->counts.past_ceiling++;
		return;
	}
	if (!pg->has_top || v > pg->top)
		pg->top = v;
	pg->has_top = 1;
}

/* The value of record i; -1 with the error recorded when it has none. */
static int value_of(struct page *pg, size_t i, int64_t *v)
{
	struct stream_read *r = pg->r;
	const struct cursor_def *c = cursor_of(r);
	if (pg->batch) {
		const char *data;
		size_t len;
		records_batch_get(pg->batch, i, pg->column, &data, &len, v);
		if (*v != RECORDS_NO_VALUE)
			return 0;
		return read_fail(r, PROTO_SYSTEM_ERROR, "stream '%s': record %zu has no %s", r->def->name, i + 1,
				 c->field);
	}
	lua_State *L = r->L;
	lua_rawgeti(L, pg->records, (lua_Integer)i + 1);
	lua_getfield(L, -1, c->field);
	char why[300];
	int rc = cursor_from_lua(c, L, -1, v, why, sizeof why);
	lua_pop(L, 2);
	if (rc)
		return read_fail(r, PROTO_SYSTEM_ERROR, "stream '%s': record %zu's %s %s", r->def->name, i + 1,
				 c->field, why);
	return 0;
}

/* An ascending page is written: the position moves to its greatest final value, open, with the
 * keys of the records at that value (found from the end of the page). */
static void settle_ascending(struct page *pg, size_t count)
{
	struct stream_read *r = pg->r;
	struct partition *p = pg->p;
	if (!pg->has_top)
		return;
	int64_t top = pg->top;
	if (p->now.has_cursor && (top < p->now.cursor || (top == p->now.cursor && !p->now.open)))
		return; /* a lookback sent these again: the position stays */
	struct position to = p->now;
	if (!p->now.has_cursor || top > p->now.cursor) {
		to.has_cursor = 1;
		to.cursor = top;
		to.open = 1;
		to.at = r->pk_paths ? state_set_new(&r->state) : 0;
		to.after = 0;
	} else if (r->pk_paths && (!p->now.at || p->now.at == p->resume.at)) {
		to.at = state_set_copy(&r->state, p->now.at);
	}
	state_position_set(&r->state, p, &to);
	if (!r->pk_paths)
		return;
	for (size_t k = count; k-- > 0;) {
		int64_t v;
		if (value_of(pg, k, &v))
			break; /* the loop over the page stopped at it already */
		if (v > top)
			continue;
		if (v < top)
			break;
		push_key(pg, k);
		if (state_set_add(&r->state, p->now.at, -1, r->rt->checkpoints.max_boundary_keys))
			log_overflow(r, p, "share one cursor value");
		lua_pop(r->L, 1);
	}
}

static void running(struct stream_read *r)
{
	if (!r->running_sent) {
		proto_stream_status(&r->rt->out, r->def->name, "RUNNING", 0);
		r->running_sent = 1;
	}
}

/* ---- Lua tables ---- */

/* The records of a page up to the first that cannot be written: those before it went out, and
 * the position covers them, so that the STATE written on the way out is exact. */
static int finish_page(struct page *pg, size_t processed, int64_t written, uint64_t bytes_before)
{
	struct stream_read *r = pg->r;
	state_count_records(&r->state, written, (size_t)(proto_bytes(&r->rt->out) - bytes_before));
	if (cursor_of(r)->kind != CURSOR_NONE && cursor_of(r)->order == ORDER_ASCENDING)
		settle_ascending(pg, processed);
	return r->err.set ? -1 : 0;
}

/* A record built in Lua against the stream's json_schema (at schema; 0: not checked): 0 when it
 * may go out (it matches, or the stream is lenient and the mismatch is warned about once), -1 when
 * the read fails on it. */
static int check_record_schema(struct stream_read *r, struct partition *p, size_t i, int record, int schema)
{
	lua_State *L = r->L;
	char err[400];
	if (!schema || !validate_record(L, schema, record, err, sizeof err))
		return 0;
	if (r->def->schema_check == SCHEMA_CHECK_ERROR)
		return read_fail(r, PROTO_SYSTEM_ERROR,
				 "stream '%s': record %zu from parse does not match the stream's json_schema: %s "
				 "(schema_check = \"warn\" lets such records through with a warning)",
				 r->def->name, i + 1, err);
	p->counts.schema_mismatches++;
	/* Once a mismatch: the warnings of this read are kept under its address in the registry. */
	if (lua_rawgetp(L, LUA_REGISTRYINDEX, r) != LUA_TTABLE) {
		lua_pop(L, 1);
		lua_newtable(L);
		lua_pushvalue(L, -1);
		lua_rawsetp(L, LUA_REGISTRYINDEX, r);
	}
	if (lua_getfield(L, -1, err) == LUA_TNIL) {
		lua_pushboolean(L, 1);
		lua_setfield(L, -3, err);
		proto_logf(
			&r->rt->out, "WARN",
			"stream '%s': a record does not match the stream's json_schema: %s (sent as it is; said once)",
			r->def->name, err);
	}
	lua_pop(L, 2);
	return 0;
}

int emit_tables(struct stream_read *r, struct partition *p, const struct cursor_window *w, int records_idx)
{
	lua_State *L = r->L;
	struct page pg = {r, p, w, lua_absindex(L, records_idx), NULL, -1, 0, 0};
	int schema = 0;
	if (r->def->schema_check != SCHEMA_CHECK_OFF) {
		lua_getfield(L, r->def_idx, "json_schema");
		schema = lua_gettop(L);
	}
	size_t n = lua_rawlen(L, pg.records);
	int64_t emitted_at = date_now_ms();
	int has_cursor = cursor_of(r)->kind != CURSOR_NONE;
	uint64_t before = proto_bytes(&r->rt->out);
	int64_t written = 0;
	size_t i;
	for (i = 0; i < n; i++) {
		if (lua_rawgeti(L, pg.records, (lua_Integer)i + 1) != LUA_TTABLE) {
			read_fail(r, PROTO_SYSTEM_ERROR, "stream '%s': record %zu from parse is a %s, not a table",
				  r->def->name, i + 1, luaL_typename(L, -1));
			lua_pop(L, 1);
			break;
		}
		int record = lua_gettop(L);
		int64_t v = 0;
		int verdict = 1;
		if (has_cursor && (value_of(&pg, i, &v) || (verdict = admit(&pg, i, v)) < 0)) {
			lua_settop(L, record - 1);
			break;
		}
		if (verdict && check_record_schema(r, pg.p, i, record, schema)) {
			lua_settop(L, record - 1);
			break;
		}
		if (verdict) {
			char err[256];
			running(r);
			if (proto_record(&r->rt->out, L, r->def->name, record, emitted_at, err, sizeof err)) {
				read_fail(r, PROTO_SYSTEM_ERROR, "stream '%s': record %zu cannot be written: %s",
					  r->def->name, i + 1, err);
				lua_settop(L, record - 1);
				break;
			}
			written++;
			if (has_cursor)
				note(&pg, i, v);
			else
				p->counts.emitted++;
		}
		lua_settop(L, record - 1);
	}
	if (schema)
		lua_remove(L, schema);
	return finish_page(&pg, i, written, before);
}

/* ---- declared batches ---- */

/* Every record written as it is: in the window, after the last, none emitted before, none at the
 * ceiling, in order. The usual page of an ascending stream, written as one piece. */
static int whole_page_goes(struct page *pg, size_t n)
{
	struct stream_read *r = pg->r;
	struct partition *p = pg->p;
	const struct cursor_def *c = cursor_of(r);
	int64_t first, last;
	if (n == 0 || c->order != ORDER_ASCENDING || !records_batch_framed_for(pg->batch, r->def->name) ||
	    !records_batch_column_span(pg->batch, pg->column, &first, &last))
		return 0;
	if (!cursor_in_window(c, pg->w, first) || !cursor_in_window(c, pg->w, last))
		return 0;
	if (p->has_last && first < p->last)
		return 0;
	if (r->plan.has_ceiling && last >= r->plan.ceiling)
		return 0;
	const struct position *from = &p->resume;
	if (!r->plan.lookback.set && (from->after || (from->has_cursor && first <= from->cursor)))
		return 0;
	return 1;
}

int emit_batch(struct stream_read *r, struct partition *p, const struct cursor_window *w,
	       const struct record_batch *batch)
{
	const struct cursor_def *c = cursor_of(r);
	size_t n = records_batch_count(batch);
	int column = records_batch_column(batch, c->field, c->kind);
	if (n > 0 && c->kind != CURSOR_NONE && column < 0)
		return read_fail(r, PROTO_SYSTEM_ERROR,
				 "stream '%s': the declared records have no field '%s' with a value the cursor can "
				 "read: declare it with as = %s",
				 r->def->name, c->field,
				 c->kind == CURSOR_DAY ? "\"day\", \"day_from_ms\" or \"day_from_s\""
				 : c->kind == CURSOR_INTEGER
					 ? "\"integer\""
					 : "\"datetime\", \"datetime_from_ms\" or \"datetime_from_s\"");
	struct page pg = {r, p, w, 0, batch, column, 0, 0};
	if (n > 0)
		running(r);
	if (c->kind == CURSOR_NONE || whole_page_goes(&pg, n)) {
		const char *lines;
		size_t len;
		if (records_batch_framed_for(batch, r->def->name)) {
			records_batch_lines(batch, &lines, &len);
			proto_write_lines(&r->rt->out, lines, len);
			state_count_records(&r->state, (int64_t)n, len);
			p->counts.emitted += (int64_t)n;
			if (c->kind != CURSOR_NONE && n > 0) {
				int64_t first, last;
				records_batch_column_span(batch, column, &first, &last);
				p->last = last;
				p->has_last = 1;
				if (!r->plan.has_ceiling || last < r->plan.ceiling)
					pg.top = last, pg.has_top = 1;
				settle_ascending(&pg, n);
			}
			return r->err.set ? -1 : 0;
		}
	}
	/* Record by record: runs of written records that are adjacent in the batch go out in one piece;
	 * a batch framed for another stream (ctx.stream was not this one) is framed again here. */
	int framed = records_batch_framed_for(batch, r->def->name);
	struct proto_record_frame frame = {{0}, {0}};
	if (!framed)
		proto_record_frame_init(&frame, r->def->name, date_now_ms());
	uint64_t before = proto_bytes(&r->rt->out);
	const char *run = NULL;
	size_t run_len = 0;
	int64_t written = 0;
	size_t i;
	for (i = 0; i < n; i++) {
		int64_t v = 0;
		int verdict = 1;
		if (c->kind != CURSOR_NONE && (value_of(&pg, i, &v) || (verdict = admit(&pg, i, v)) < 0))
			break;
		const char *line, *data;
		size_t line_len, data_len;
		int64_t ignored;
		records_batch_line(batch, i, &line, &line_len);
		if (!verdict || !framed) {
			if (run)
				proto_write_lines(&r->rt->out, run, run_len);
			run = NULL;
			if (verdict) {
				records_batch_get(batch, i, -1, &data, &data_len, &ignored);
				proto_record_framed(&r->rt->out, &frame, data, data_len);
			}
		} else {
			if (!run)
				run = line, run_len = 0;
			run_len += line_len;
		}
		if (verdict) {
			written++;
			if (c->kind != CURSOR_NONE)
				note(&pg, i, v);
			else
				p->counts.emitted++;
		}
	}
	if (run)
		proto_write_lines(&r->rt->out, run, run_len);
	proto_record_frame_free(&frame);
	return finish_page(&pg, i, written, before);
}

/* ---- windows and partitions ---- */

/* Whether a position stays open at its value when a window ends: for datetimes, a record the API
 * indexes late at that very instant would otherwise be skipped for good by the next read, which
 * then asks from the value again and skips only the keys it holds. Days and integers are complete
 * once read to the window's end; without a primary key an open position would send that value's
 * records again at every read. */
static int stays_open(const struct stream_read *r)
{
	return cursor_of(r)->kind == CURSOR_DATETIME && r->pk_paths;
}

void emit_window_done(struct stream_read *r, struct partition *p)
{
	const struct cursor_def *c = cursor_of(r);
	if (c->kind == CURSOR_NONE)
		return;
	struct position to = p->now;
	int open = stays_open(r);
	if (c->order != ORDER_ASCENDING && p->has_window_max) {
		if (!to.has_cursor || p->window_max > to.cursor) {
			to.has_cursor = 1;
			to.cursor = p->window_max;
			to.open = open;
			to.at = open ? p->window_top : 0;
			p->window_top = open ? 0 : p->window_top;
		} else if (p->window_max == to.cursor && to.open && open) {
			to.at = state_set_copy(&r->state, to.at);
			lua_rawgeti(r->L, r->state.sets, p->window_top);
			lua_Integer n = (lua_Integer)lua_rawlen(r->L, -1);
			for (lua_Integer k = 1; k <= n; k++) {
				lua_rawgeti(r->L, -1, k);
				state_set_add(&r->state, to.at, -1, r->rt->checkpoints.max_boundary_keys);
				lua_pop(r->L, 1);
			}
			lua_pop(r->L, 1);
		}
	}
	state_set_free(&r->state, p->window_top);
	p->window_top = 0;
	p->has_window_max = 0;
	/* Every record up to the cursor has been read: nothing more can come at it, but for a
	 * datetime's late records (above). */
	if (!open) {
		to.open = 0;
		to.at = 0;
	}
	/* Keys sent beyond the cursor by a window a failed run cut short stay until a window reaches
	 * their values: the resume reads the windows before theirs first. */
	to.after = to.after && to.has_cursor ? state_set_past(&r->state, to.after, to.cursor) : to.after;
	if (to.has_cursor == p->now.has_cursor && to.cursor == p->now.cursor && to.open == p->now.open &&
	    to.at == p->now.at && to.after == p->now.after)
		return;
	state_position_set(&r->state, p, &to);
}

void emit_partition_done(struct stream_read *r, struct partition *p)
{
	const struct partition_counts *n = &p->counts;
	if (!n->outside_window && !n->already_emitted && !n->past_ceiling && !n->skipped_by_script &&
	    !n->ignored_answers)
		return;
	char text[600];
	int len = snprintf(text, sizeof text, "%s%s%s%s: %lld records emitted", r->def->name, p->key ? "[" : "",
			   p->key ? p->key : "", p->key ? "]" : "", (long long)n->emitted);
	if (n->already_emitted && len < (int)sizeof text)
		len += snprintf(text + len, sizeof text - (size_t)len, "; %lld skipped, emitted by an earlier read",
				(long long)n->already_emitted);
	if (n->outside_window && len < (int)sizeof text)
		len += snprintf(text + len, sizeof text - (size_t)len, "; %lld skipped, outside the window asked for",
				(long long)n->outside_window);
	if (n->skipped_by_script && len < (int)sizeof text)
		len += snprintf(text + len, sizeof text - (size_t)len, "; %lld skipped by the script",
				(long long)n->skipped_by_script);
	if (n->ignored_answers && len < (int)sizeof text)
		len += snprintf(text + len, sizeof text - (size_t)len,
				"; %lld answers ignored by an errors rule (their windows count as read)",
				(long long)n->ignored_answers);
	if (n->past_ceiling && len < (int)sizeof text)
		snprintf(text + len, sizeof text - (size_t)len,
			 "; %lld not final yet (past the ceiling): the next read sends them again",
			 (long long)n->past_ceiling);
	proto_log(&r->rt->out, "INFO", text);
}
