/*
 * engine: the read of one stream. Its partitions are read by up to `concurrency` slots at once on
 * one libcurl multi handle; a slot reads one partition at a time, window by window, page by page,
 * so that each partition's records and checkpoints stay in order while the network stays busy.
 *
 * A slot is a state machine (curl's lib/multi.c is the model): its phase says what it waits for,
 * and slot_step() is the one function that moves it on, so every path a page can take is in one
 * switch:
 *
 *   IDLE -> REQUEST -> READY -> FETCHING -> ANSWERED -> [MAPPING] -> EMIT -> READY (next page)
 *                                              |                      \-> WINDOW -> REQUEST (next window)
 *                                              \-> READY (retry later)          \-> IDLE (next partition)
 *   IDLE -> FINISHED when no partition is left; any phase -> the read fails (read_fail).
 *
 * Lua runs only between transfers, never inside a libcurl callback. What records are written and
 * how positions move is emit.c's; what a position is and how it is saved, state.c's.
 */
#define _GNU_SOURCE /* memmem */
#include "engine.h"

#include <lauxlib.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "date.h"
#include "emit.h"
#include "host.h"
#include "http.h"
#include "json.h"
#include "pool.h"
#include "records.h"
#include "runtime.h"
#include "stream_read.h"
#include "suggest.h"

#define MAX_PAGES_PER_WINDOW 100000
/* No server takes more; a bigger request is a config mistake (a pasted file), not a network fault. */
#define MAX_URL_BYTES (64 * 1024)
/* A page's garbage is collected at once when Lua holds this much more than after the last full
 * collection (a parse that built tables from response.body): memory stays at about one page per
 * slot instead of doubling between cycles. Relative, not absolute: with thousands of partitions
 * the live heap alone is past any fixed mark, and a full collection after every page then cost
 * more than the read (4 s of a 10,000-ticker resume). */
#define COLLECT_GROWTH_KB 1024

/* The key under which ctx keeps what ctx:skip counted; scripts cannot spell it. */
static const char SKIPPED_KEY = 0;
static const char CTX_MT[] = "source_lua.ctx";

enum phase {
	PHASE_IDLE,     /* takes the next partition, or finishes */
	PHASE_REQUEST,  /* request(ctx) gives the window's first page */
	PHASE_READY,    /* a page to fetch once its time and the request budget allow */
	PHASE_FETCHING, /* the transfer runs */
	PHASE_ANSWERED, /* an answer is in: a page to parse, a retry or an error */
	PHASE_MAPPING,  /* parse gave a batch that a worker still maps */
	PHASE_EMIT,     /* the page's records go out; then the next page, or the window is done */
	PHASE_WINDOW,   /* the window is done: the next one, or the partition is */
	PHASE_FINISHED, /* no partition left */
};

enum step { STEP_AGAIN, STEP_WAIT, STEP_FAIL };

/* A phase that fails records why (read_fail, fail_script) and stops its slot: the read winds
 * down and reports it. */
static enum step step_failed(int recorded)
{
	(void)recorded;
	return STEP_FAIL;
}

struct slot {
	enum phase phase;
	struct partition *p;
	struct cursor_window window;
	struct http_transfer transfer;
	int64_t not_before_ms;
	int pages;
	struct http_retry retry;
	int idempotent;           /* the request may be sent again whatever became of it (not a POST) */
	int paginated;            /* the next page's request is the declared paginator's, not parse's */
	unsigned auth_generation; /* the OAuth2 token the request went with */
	int64_t sent_ms;          /* when the request went, for the trace */
	int reauthed;             /* a 401 to this page already had a token fetched anew */
	char origin[512];
};

struct slots {
	size_t count;
	struct slot slot[];
};

struct engine {
	struct stream_read *r;
	struct slots *slots;
	int anchors; /* anchors[i] = {ctx, request, seen, url, records, next} of slot i: its Lua values */
	size_t next_partition;
	int mapping; /* pages handed to the workers and not emitted yet */
	int live_kb; /* what Lua held after the last full collection */
};

/* Records the error table host_call left on the stack; pops it. */
static int fail_script(struct stream_read *r, const char *what)
{
	struct host_error e;
	host_error_read(r->L, -1, &e);
	read_fail(r, e.failure, "stream '%s': %s: %s", r->def->name, what, e.message);
	if (e.stack)
		snprintf(r->err.stack, sizeof r->err.stack, "%s", e.stack);
	lua_pop(r->L, 1);
	return -1;
}

static const char *cancel_reason(void)
{
	return host_cancelled == 2 ? "the sync was cancelled (SIGINT)" : "the sync was cancelled (SIGTERM)";
}

/* ---- slots and their Lua values ---- */

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
	if (luaL_newmetatable(L, "source_lua.engine.slots")) {
		lua_pushcfunction(L, slots_gc);
		lua_setfield(L, -2, "__gc");
	}
	lua_setmetatable(L, -2);
	all->count = count;
	return all;
}

static size_t slot_index(const struct engine *e, const struct slot *s)
{
	return (size_t)(s - e->slots->slot);
}

static void push_anchor(struct engine *e, struct slot *s, const char *field)
{
	lua_State *L = e->r->L;
	lua_rawgeti(L, e->anchors, (lua_Integer)slot_index(e, s) + 1);
	lua_getfield(L, -1, field);
	lua_remove(L, -2);
}

/* Sets field of the slot's anchors to the value on top (popped). */
static void set_anchor(struct engine *e, struct slot *s, const char *field)
{
	lua_State *L = e->r->L;
	lua_rawgeti(L, e->anchors, (lua_Integer)slot_index(e, s) + 1);
	lua_insert(L, -2);
	lua_setfield(L, -2, field);
	lua_pop(L, 1);
}

/* "stream[partition]" for messages. */
static const char *where(const struct stream_read *r, const struct partition *p, char *out, size_t len)
{
	snprintf(out, len, "%s%s%s%s", r->def->name, p->key ? "[" : "", p->key ? p->key : "", p->key ? "]" : "");
	return out;
}

/* ---- ctx ---- */

/* ctx:skip([n]): the script drops n records (default 1) on purpose; they are counted and logged
 * with the partition's summary. */
static int ctx_skip(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	lua_Integer n = luaL_optinteger(L, 2, 1);
	luaL_argcheck(L, n >= 0, 2, "a count of records, 0 or more");
	lua_rawgetp(L, 1, &SKIPPED_KEY);
	lua_Integer before = lua_tointeger(L, -1);
	lua_pushinteger(L, before + n);
	lua_rawsetp(L, 1, &SKIPPED_KEY);
	return 0;
}

/* ctx = {config, stream, partition, from, to}, with ctx:skip. [-0, +1, m] */
static void push_context(struct stream_read *r, const struct partition *p, const struct cursor_window *w)
{
	lua_State *L = r->L;
	lua_createtable(L, 0, 5);
	lua_pushvalue(L, r->config);
	lua_setfield(L, -2, "config");
	lua_pushstring(L, r->def->name);
	lua_setfield(L, -2, "stream");
	if (p->key) {
		lua_pushstring(L, p->key);
		lua_setfield(L, -2, "partition");
	}
	if (r->def->cursor.kind != CURSOR_NONE) {
		if (w->has_from) {
			cursor_push(&r->def->cursor, L, w->from);
			lua_setfield(L, -2, "from");
		}
		if (w->has_to) {
			cursor_push(&r->def->cursor, L, w->to);
			lua_setfield(L, -2, "to");
		}
	}
	if (luaL_newmetatable(L, CTX_MT)) {
		lua_createtable(L, 0, 1);
		lua_pushcfunction(L, ctx_skip);
		lua_setfield(L, -2, "skip");
		lua_setfield(L, -2, "__index");
	}
	lua_setmetatable(L, -2);
}

/* What ctx:skip counted during the last call, moved to the partition's counts. */
static void collect_skipped(struct engine *e, struct slot *s)
{
	lua_State *L = e->r->L;
	push_anchor(e, s, "ctx");
	lua_rawgetp(L, -1, &SKIPPED_KEY);
	s->p->counts.skipped_by_script += lua_tointeger(L, -1);
	lua_pushnil(L);
	lua_rawsetp(L, -3, &SKIPPED_KEY);
	lua_pop(L, 2);
}

/* ---- phases ---- */

/* Where a partition's read starts: after what its state covers (at its cursor when it is open),
 * or at the start; lookback moves it back, never before the start. */
static int starting_point(struct stream_read *r, const struct partition *p, int64_t *from)
{
	const struct cursor_def *c = &r->def->cursor;
	const struct cursor_plan *plan = &r->plan;
	const struct position *pos = &p->resume;
	if (!pos->has_cursor) {
		*from = plan->start;
		return plan->has_start;
	}
	int64_t next = pos->cursor;
	if (!pos->open && c->kind != CURSOR_DATETIME)
		next = pos->cursor == INT64_MAX ? INT64_MAX : pos->cursor + 1;
	if (plan->lookback.set)
		next = cursor_add(c, next, &plan->lookback, -1);
	if (plan->has_start && next < plan->start)
		next = plan->start;
	*from = next;
	return 1;
}

/* Past this many partitions, where each starts is a DEBUG line (--debug) and the stream ends with
 * one summary instead: 10,000 INFO lines were a third of a 10,000-ticker resume's output. */
#define PLAN_LINES_UP_TO 100

static void log_plan(struct stream_read *r, const struct partition *p, const struct cursor_window *w, int reading)
{
	const struct cursor_def *c = &r->def->cursor;
	if (reading)
		r->partitions_read++;
	else
		r->partitions_up_to_date++;
	if (r->state.count > PLAN_LINES_UP_TO && !r->rt->debug)
		return;
	const char *level = r->state.count > PLAN_LINES_UP_TO ? "DEBUG" : "INFO";
	char name[300], from[CURSOR_TEXT_MAX], end[CURSOR_TEXT_MAX] = "the end", cursor[CURSOR_TEXT_MAX] = "none";
	where(r, p, name, sizeof name);
	if (c->kind == CURSOR_NONE) {
		proto_logf(&r->rt->out, level, "%s: full refresh", name);
		return;
	}
	if (r->plan.has_end)
		cursor_text(c, r->plan.end, end);
	if (p->resume.has_cursor)
		cursor_text(c, p->resume.cursor, cursor);
	if (!reading) {
		proto_logf(&r->rt->out, level, "%s: up to date (cursor %s, last %s %s)", name, cursor,
			   c->kind == CURSOR_DAY ? "complete day" : "value", end);
		return;
	}
	if (w->has_from)
		cursor_text(c, w->from, from);
	else
		snprintf(from, sizeof from, "the beginning");
	proto_logf(&r->rt->out, level, "%s: %s sync from %s to %s (cursor %s%s)", name,
		   r->incremental ? "incremental" : "full refresh", from, end, cursor,
		   p->resume.open ? ", resumed inside its run of equal values" : "");
}

/* The partition's window, for the trace. */
static void trace_window(struct stream_read *r, const struct partition *p, const struct cursor_window *w, int reading)
{
	if (!r->rt->trace.active)
		return;
	const struct cursor_def *c = &r->def->cursor;
	char from[CURSOR_TEXT_MAX] = "", to[CURSOR_TEXT_MAX] = "";
	if (c->kind != CURSOR_NONE && w->has_from)
		cursor_text(c, w->from, from);
	if (c->kind != CURSOR_NONE && w->has_to)
		cursor_text(c, w->to, to);
	trace_partition(r->rt, r->def->name, p->key, from[0] ? from : NULL, to[0] ? to : NULL, reading);
}

/* test-read's --max-partitions, --max-pages and --max-records: the read stops, without a
 * checkpoint past what it read. */
static int limit_reached(struct stream_read *r)
{
	const struct trace_options *lim = &r->rt->trace.opt;
	if (!r->rt->trace.active || r->stopped_at_limit || r->collect_field)
		return r->stopped_at_limit;
	const char *which = NULL;
	int64_t value = 0;
	if (lim->max_pages > 0 && r->pages_read >= lim->max_pages)
		which = "max-pages", value = lim->max_pages;
	else if (lim->max_records > 0 && r->state.records_total >= lim->max_records)
		which = "max-records", value = lim->max_records;
	if (!which)
		return 0;
	r->stopped_at_limit = 1;
	/* Every page read was written whole: a state past them skips nothing. Past --max-records it
	 * would skip what the trace did not show, and the trace holds it back. */
	char err[256];
	if (r->def->cursor.kind != CURSOR_NONE && (r->state.records_since > 0 || r->state.changed) &&
	    state_checkpoint(&r->state, err, sizeof err))
		read_fail(r, PROTO_SYSTEM_ERROR, "cannot write the state of stream '%s': %s", r->def->name, err);
	trace_limit(r->rt, r->def->name, which, value);
	return 1;
}

static enum step take_partition(struct engine *e, struct slot *s)
{
	struct stream_read *r = e->r;
	const struct trace_options *lim = &r->rt->trace.opt;
	while (e->next_partition < r->state.count && !r->stopped_at_limit) {
		if (r->rt->trace.active && !r->collect_field && lim->max_partitions > 0 &&
		    (int64_t)(r->partitions_read) >= lim->max_partitions) {
			/* Not a stop: the partitions begun are read to their end. */
			if (!r->partition_limit_said)
				trace_limit(r->rt, r->def->name, "max-partitions", lim->max_partitions);
			r->partition_limit_said = 1;
			break;
		}
		struct partition *p = &r->state.parts[e->next_partition++];
		int has_from = 0;
		int64_t from = 0;
		int reading = 1;
		if (r->def->cursor.kind == CURSOR_NONE)
			memset(&s->window, 0, sizeof s->window);
		else {
			has_from = starting_point(r, p, &from);
			reading = cursor_first_window(&r->def->cursor, &r->plan, has_from, from, &s->window);
		}
		log_plan(r, p, &s->window, reading);
		trace_window(r, p, &s->window, reading);
		if (reading) {
			s->p = p;
			s->phase = PHASE_REQUEST;
			return STEP_AGAIN;
		}
	}
	s->p = NULL;
	s->phase = PHASE_FINISHED;
	return STEP_WAIT;
}

/* The key under which a request is remembered in "seen": its URL, and for a request with a
 * method other than GET or a body, those too (a search API posts to one URL, page after page). */
static void push_seen_key(lua_State *L, int prepared)
{
	lua_getfield(L, prepared, "url");
	lua_getfield(L, prepared, "method");
	lua_getfield(L, prepared, "body");
	if (!strcmp(lua_tostring(L, -2), "GET") && lua_isnil(L, -1)) {
		lua_pop(L, 2);
		return;
	}
	if (lua_isnil(L, -1)) {
		lua_pop(L, 1);
		lua_pushliteral(L, "");
	}
	lua_pushliteral(L, "\n");
	lua_insert(L, -3);
	lua_pushliteral(L, "\n");
	lua_insert(L, -2);
	lua_concat(L, 5);
}

/* The prepared request on top becomes the slot's: anchored with its URL; pops it. */
static void set_request(struct engine *e, struct slot *s)
{
	lua_State *L = e->r->L;
	struct http_request req;
	s->idempotent = http_request_of(L, -1, &req);
	lua_getfield(L, -1, "url");
	set_anchor(e, s, "url");
	set_anchor(e, s, "request");
}

/* request(ctx) -> url [, opts] or a request table, for the window's first page. */
static enum step ask_for_request(struct engine *e, struct slot *s)
{
	struct stream_read *r = e->r;
	lua_State *L = r->L;
	int top = lua_gettop(L);
	lua_createtable(L, 0, 6);
	lua_rawseti(L, e->anchors, (lua_Integer)slot_index(e, s) + 1);
	push_context(r, s->p, &s->window);
	lua_pushvalue(L, -1);
	set_anchor(e, s, "ctx");
	lua_getfield(L, r->def_idx, "request");
	lua_insert(L, -2);
	int called = host_call(L, 1, 2);
	if (called == LUA_OK)
		collect_skipped(e, s);
	if (called != LUA_OK)
		return step_failed(fail_script(r, "request(ctx) failed"));
	if (lua_type(L, -2) != LUA_TSTRING && lua_type(L, -2) != LUA_TTABLE)
		return step_failed(read_fail(r, PROTO_SYSTEM_ERROR,
					     "stream '%s': request(ctx) must return a URL or a request table, not %s",
					     r->def->name, luaL_typename(L, -2)));
	if (lua_type(L, -2) == LUA_TTABLE && !lua_isnil(L, -1))
		return step_failed(read_fail(r, PROTO_SYSTEM_ERROR,
					     "stream '%s': request(ctx) returned a request table and a second value: "
					     "put everything in the table",
					     r->def->name));
	if (http_push_request(L, -2, lua_isnil(L, -1) ? 0 : -1, "GET") != LUA_OK)
		return step_failed(read_fail(r, PROTO_CONFIG_ERROR, "stream '%s': request(ctx): %s", r->def->name,
					     lua_tostring(L, -1)));
	paginate_first(L, &r->def->paginator, -1);
	lua_getfield(L, -1, "url");
	size_t url_len = lua_rawlen(L, -1);
	if (url_len > MAX_URL_BYTES)
		return step_failed(read_fail(r, PROTO_CONFIG_ERROR,
					     "stream '%s': request(ctx) built a URL of %zu bytes (at most %d)",
					     r->def->name, url_len, MAX_URL_BYTES));
	if (http_origin(&r->rt->http, lua_tostring(L, -1), s->origin, sizeof s->origin))
		return step_failed(read_fail(r, PROTO_CONFIG_ERROR, "stream '%s': '%s' is not a valid URL",
					     r->def->name, lua_tostring(L, -1)));
	lua_pop(L, 1);
	set_request(e, s);
	lua_newtable(L);
	set_anchor(e, s, "seen");
	lua_settop(L, top);
	s->pages = 0;
	s->reauthed = 0;
	s->not_before_ms = 0;
	http_retry_start(&s->retry);
	s->phase = PHASE_READY;
	return STEP_AGAIN;
}

static enum step start_fetch(struct engine *e, struct slot *s, int64_t *wake_at)
{
	struct stream_read *r = e->r;
	lua_State *L = r->L;
	int64_t now = date_now_ms();
	int64_t ready = s->not_before_ms;
	int64_t budget = now + http_budget_delay_ms(&r->rt->http);
	if (budget > ready)
		ready = budget;
	if (ready > now) {
		if (ready < *wake_at)
			*wake_at = ready;
		return STEP_WAIT;
	}
	push_anchor(e, s, "seen");
	push_anchor(e, s, "request");
	push_seen_key(L, lua_gettop(L));
	lua_pushboolean(L, 1);
	lua_rawset(L, -4);
	struct http_request req;
	http_request_of(L, -1, &req);
	req.no_retry = 0; /* a page's token is worth the retry budget */
	enum proto_failure failure;
	char why[1200];
	if (auth_prepare(r->rt, &req, &s->auth_generation, &failure, why, sizeof why)) {
		lua_pop(L, 2);
		return step_failed(read_fail(r, failure, "stream '%s': %s", r->def->name, why));
	}
	trace_request(r->rt, r->def->name, s->p->key, &req);
	s->sent_ms = date_now_ms();
	int rc = http_transfer_start(&r->rt->http, &s->transfer, &req);
	lua_pop(L, 2);
	if (rc)
		return step_failed(
			read_fail(r, PROTO_SYSTEM_ERROR, "stream '%s': cannot start an HTTP transfer", r->def->name));
	s->phase = PHASE_FETCHING;
	return STEP_WAIT;
}

/* The answer was not usable (a network fault, a 5xx, a 429, a body that is not JSON): the same
 * page again later, or the read gives up once the retry budget is spent. */
static enum step retry_later(struct engine *e, struct slot *s, const char *why)
{
	struct stream_read *r = e->r;
	int64_t delay = http_retry_delay(&r->rt->http, &s->retry, &s->transfer.resp, why, r->def->name);
	if (delay < 0) {
		if (host_cancelled)
			return step_failed(read_fail(r, PROTO_TRANSIENT_ERROR, "%s", cancel_reason()));
		return step_failed(read_fail(r, PROTO_TRANSIENT_ERROR,
					     "stream '%s': gave up after %d attempts over %.0f s; last error: %s",
					     r->def->name, s->retry.attempt + 1,
					     (double)(date_now_ms() - s->retry.started_ms) / 1000.0, why));
	}
	s->not_before_ms = date_now_ms() + delay;
	s->phase = PHASE_READY;
	return STEP_AGAIN;
}

/* The API's own words for an error: its JSON "message" or "error", else the start of the body. */
static void api_message(lua_State *L, const struct http_response *resp, char *out, size_t outlen)
{
	int top = lua_gettop(L);
	snprintf(out, outlen, "%.300s", resp->body.len ? resp->body.data : "(empty body)");
	json_decode_push(L, resp->body.data ? resp->body.data : "", resp->body.len);
	if (lua_istable(L, -2)) {
		/* {"error": {"message": ...}} (Stripe, Google) holds it one level down */
		if (lua_getfield(L, -2, "error") == LUA_TTABLE)
			lua_replace(L, -3);
		else
			lua_pop(L, 1);
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

/* An HTTP status that asking again would not mend: the script may phrase it
 * (describe_error(status, body, ctx) -> message [, failure_type]). */
static enum step fail_http_status(struct engine *e, struct slot *s, int failure_type)
{
	struct stream_read *r = e->r;
	lua_State *L = r->L;
	const struct http_response *resp = &s->transfer.resp;
	char message[1024];
	api_message(L, resp, message, sizeof message);
	enum proto_failure type = resp->status < 400 ? PROTO_SYSTEM_ERROR : PROTO_CONFIG_ERROR;
	if (r->def->has_describe_error) {
		lua_getfield(L, r->def_idx, "describe_error");
		lua_pushinteger(L, resp->status);
		json_decode_push(L, resp->body.data ? resp->body.data : "", resp->body.len);
		lua_pop(L, 1);
		push_anchor(e, s, "ctx");
		if (host_call(L, 3, 2) != LUA_OK)
			return step_failed(fail_script(r, "describe_error failed"));
		if (lua_isstring(L, -2))
			snprintf(message, sizeof message, "%s", lua_tostring(L, -2));
		if (lua_isstring(L, -1))
			proto_failure_from_name(lua_tostring(L, -1), &type);
		lua_pop(L, 2);
	}
	if (failure_type >= 0)
		type = (enum proto_failure)failure_type; /* the stream's errors rule said so */
	push_anchor(e, s, "url");
	read_fail(r, type, "stream '%s': HTTP %ld from %s: %s", r->def->name, resp->status, lua_tostring(L, -1),
		  message);
	lua_pop(L, 1);
	return STEP_FAIL;
}

/* A request libcurl could not make and asking again would not mend: an untrusted certificate, a
 * URL it cannot fetch, a redirect loop, or an answer past the size cap. */
static enum step fail_transfer(struct engine *e, struct slot *s)
{
	struct stream_read *r = e->r;
	const struct http_response *resp = &s->transfer.resp;
	char why[CURL_ERROR_SIZE + 64];
	http_describe_failure(resp, why, sizeof why);
	push_anchor(e, s, "url");
	read_fail(r, resp->body_too_large ? PROTO_SYSTEM_ERROR : PROTO_CONFIG_ERROR, "stream '%s': cannot fetch %s: %s",
		  r->def->name, lua_tostring(r->L, -1), why);
	lua_pop(r->L, 1);
	return STEP_FAIL;
}

/* Pages handed to the workers and not yet finished, at most: each holds its text and its records
 * (~1 MB for a decade of bars), so holding one per slot would make memory grow with concurrency;
 * a page that arrives beyond this waits in its transfer buffer, which exists anyway. */
static int mapping_full(const struct engine *e)
{
	const struct pool *pool = &e->r->rt->pool;
	return pool_running(pool) && e->mapping >= pool_threads(pool) + 1;
}

/* Whether the table at idx has a key other than 1..#t; if so, pushes that key's description. A
 * list keeps its keys in the array part, so this looks at nothing but what follows it. */
static int not_a_list(lua_State *L, int idx)
{
	lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
	if (n > 0)
		lua_pushinteger(L, n);
	else
		lua_pushnil(L);
	while (lua_next(L, idx)) {
		lua_pop(L, 1);
		if (lua_isinteger(L, -1) && lua_tointeger(L, -1) >= 1 && lua_tointeger(L, -1) <= n)
			continue;
		if (lua_type(L, -1) == LUA_TSTRING)
			lua_pushfstring(L, "'%s'", lua_tostring(L, -1));
		else if (lua_type(L, -1) == LUA_TNUMBER)
			lua_pushfstring(L, "%s", lua_tostring(L, -1));
		else
			lua_pushfstring(L, "of type %s", luaL_typename(L, -1));
		lua_remove(L, -2);
		return 1;
	}
	return 0;
}

static int push_paginated_next(lua_State *L)
{
	paginate_push_next(L, lua_touserdata(L, 1), 3, 4, lua_touserdata(L, 2));
	return 1;
}

/* Pushes the next page's request by the stream's paginator (nil: none); -1 when the answer does
 * not give what it needs (a body that is not JSON, say). */
static int paginated_next(struct engine *e, struct slot *s, int response)
{
	struct stream_read *r = e->r;
	lua_State *L = r->L;
	lua_pushcfunction(L, push_paginated_next);
	lua_pushlightuserdata(L, (void *)&r->def->paginator);
	lua_pushlightuserdata(L, &s->transfer.resp);
	push_anchor(e, s, "request");
	lua_pushvalue(L, response);
	if (lua_pcall(L, 4, 1, 0) == LUA_OK)
		return 0;
	read_fail(r, PROTO_SYSTEM_ERROR, "stream '%s': paginator: %s", r->def->name, lua_tostring(L, -1));
	lua_pop(L, 1);
	return -1;
}

/* parse(ctx, response) on a 2xx answer: records (a list or a batch) and the next URL. */
static enum step parse_page(struct engine *e, struct slot *s)
{
	struct stream_read *r = e->r;
	lua_State *L = r->L;
	const struct http_response *resp = &s->transfer.resp;
	int top = lua_gettop(L);
	lua_getfield(L, r->def_idx, "parse");
	push_anchor(e, s, "url");
	records_push_response_taking(L, resp->status, -1, &s->transfer.resp.body);
	lua_remove(L, -2);
	int response = top + 2;
	http_push_response_headers(L, resp);
	lua_setfield(L, response, "headers");
	lua_pushvalue(L, top + 1);
	push_anchor(e, s, "ctx");
	lua_pushvalue(L, response);
	int called = host_call(L, 2, 2);
	s->paginated = 0;
	if (called == LUA_OK && lua_isnil(L, top + 4) && r->def->paginator.kind != PAGINATOR_NONE) {
		if (paginated_next(e, s, response)) {
			records_response_release(L, response);
			return STEP_FAIL;
		}
		lua_replace(L, top + 4);
		s->paginated = 1;
	}
	/* Whatever parse made of the answer, its buffer is not the collector's to free: it goes now,
	 * or with the last batch still walking it. */
	records_response_release(L, response);
	if (called != LUA_OK) {
		char reason[256], why[400];
		if (records_response_not_json(L, response, reason, sizeof reason)) {
			snprintf(why, sizeof why, "HTTP %ld with a body that is not JSON (%s)", resp->status, reason);
			lua_settop(L, top);
			return retry_later(e, s, why);
		}
		lua_replace(L, top + 1);
		lua_settop(L, top + 1);
		return step_failed(fail_script(r, "parse(ctx, response) failed"));
	}
	collect_skipped(e, s);
	int records = top + 3, next = top + 4;
	const struct record_batch *batch = records_to_batch(L, records);
	if (batch && records_batch_released(batch))
		return step_failed(
			read_fail(r, PROTO_SYSTEM_ERROR,
				  "stream '%s': parse returned a batch whose records were already written (one "
				  "kept from an earlier page); return the batch of this page's response",
				  r->def->name));
	if (!batch && !lua_istable(L, records))
		return step_failed(read_fail(r, PROTO_SYSTEM_ERROR,
					     "stream '%s': parse must return a list of records (or a batch), not %s%s",
					     r->def->name,
					     lua_isnil(L, records) ? "nil; a page without records is " : "a ",
					     lua_isnil(L, records) ? "{}" : luaL_typename(L, records)));
	if (!batch && not_a_list(L, records))
		return step_failed(
			read_fail(r, PROTO_SYSTEM_ERROR,
				  "stream '%s': parse returned a table with the key %s, not a list of records "
				  "(one record is returned as {record})",
				  r->def->name, lua_tostring(L, -1)));
	lua_pushvalue(L, records);
	set_anchor(e, s, "records");
	lua_pushvalue(L, next);
	set_anchor(e, s, "next");
	lua_settop(L, top);
	if (batch && !records_batch_ready(batch)) {
		e->mapping++;
		s->phase = PHASE_MAPPING;
		return STEP_WAIT;
	}
	s->phase = PHASE_EMIT;
	return STEP_AGAIN;
}

/* The first of the stream's errors rules that matches the answer's status and body, or NULL. */
static const struct error_rule *error_rule_for(const struct stream_def *def, const struct http_response *resp)
{
	for (int i = 0; i < def->error_rule_count; i++) {
		const struct error_rule *rule = &def->error_rules[i];
		int status_matches = rule->status_count == 0;
		for (int k = 0; k < rule->status_count && !status_matches; k++)
			status_matches = rule->statuses[k] == resp->status;
		if (!status_matches)
			continue;
		if (rule->message &&
		    !(resp->body.data && memmem(resp->body.data, resp->body.len, rule->message, strlen(rule->message))))
			continue;
		return rule;
	}
	return NULL;
}

static enum step apply_error_rule(struct engine *e, struct slot *s, const struct error_rule *rule)
{
	struct stream_read *r = e->r;
	lua_State *L = r->L;
	const struct http_response *resp = &s->transfer.resp;
	int number = (int)(rule - r->def->error_rules) + 1;
	if (rule->action == ERROR_FAIL)
		return fail_http_status(e, s, rule->failure_type);
	if (rule->action == ERROR_RETRY) {
		char why[CURL_ERROR_SIZE + 640];
		http_describe_failure(resp, why, sizeof why);
		size_t len = strlen(why);
		snprintf(why + len, sizeof why - len, " (errors[%d]: retry)", number);
		return retry_later(e, s, why);
	}
	char message[1024], text[1600];
	api_message(L, resp, message, sizeof message);
	push_anchor(e, s, "url");
	snprintf(text, sizeof text, "%s%s%s%s: HTTP %ld from %s ignored (errors[%d]): %s", r->def->name,
		 s->p->key ? "[" : "", s->p->key ? s->p->key : "", s->p->key ? "]" : "", resp->status,
		 lua_tostring(L, -1), number, message);
	lua_pop(L, 1);
	proto_log(&r->rt->out, "WARN", text);
	s->p->counts.ignored_answers++;
	s->phase = PHASE_WINDOW;
	return STEP_AGAIN;
}

/* A finished transfer: a page, an error, or a retry later. */
static enum step on_answer(struct engine *e, struct slot *s)
{
	struct stream_read *r = e->r;
	const struct http_response *resp = &s->transfer.resp;
	if (host_cancelled)
		return step_failed(read_fail(r, PROTO_TRANSIENT_ERROR, "%s", cancel_reason()));
	trace_response(r->rt, r->def->name, s->p->key, resp, date_now_ms() - s->sent_ms);
	int retryable = s->idempotent ? http_is_retryable(resp) : http_is_retryable_once_sent(resp);
	if (!retryable && resp->code != CURLE_OK)
		return fail_transfer(e, s); /* before the status: a 200 whose body was cut off is no page */
	if (resp->code == CURLE_OK && resp->status == 401 &&
	    auth_retry_after_401(r->rt, s->auth_generation, &s->reauthed)) {
		s->not_before_ms = 0;
		s->phase = PHASE_READY;
		return STEP_AGAIN;
	}
	if (resp->code == CURLE_OK && (resp->status < 200 || resp->status >= 300)) {
		const struct error_rule *rule = error_rule_for(r->def, resp);
		if (rule)
			return apply_error_rule(e, s, rule);
	}
	if (!retryable && (resp->status < 200 || resp->status >= 300))
		return fail_http_status(e, s, -1);
	if (retryable) {
		char why[CURL_ERROR_SIZE + 640];
		http_describe_failure(resp, why, sizeof why);
		return retry_later(e, s, why);
	}
	if (mapping_full(e))
		return STEP_WAIT;
	return parse_page(e, s);
}

/* Leaves on top the next URL to follow: the one parse gave, else, for a batch, the one its page
 * gave; nil when there is none or it is not a non-empty string. */
static void push_next_url(struct engine *e, struct slot *s, const struct record_batch *batch)
{
	lua_State *L = e->r->L;
	push_anchor(e, s, "next");
	if (lua_isnil(L, -1) && batch) {
		lua_pop(L, 1);
		records_batch_push_next_url(L, batch);
	}
	int is_table = lua_type(L, -1) == LUA_TTABLE;
	if (!lua_isnil(L, -1) && !is_table && (lua_type(L, -1) != LUA_TSTRING || lua_rawlen(L, -1) == 0)) {
		lua_pop(L, 1);
		lua_pushnil(L);
	}
}

/* Replaces the next URL on top with itself resolved against the page's URL, as a browser
 * resolves a link ("/v2/items?cursor=x", "?page=3"). */
static int resolve_next_url(struct engine *e, struct slot *s)
{
	struct stream_read *r = e->r;
	lua_State *L = r->L;
	size_t len;
	const char *next = lua_tolstring(L, -1, &len);
	if (len > MAX_URL_BYTES)
		return read_fail(r, PROTO_SYSTEM_ERROR,
				 "stream '%s': the API gave a next page URL of %zu bytes (at most %d)", r->def->name,
				 len, MAX_URL_BYTES);
	push_anchor(e, s, "url");
	char *resolved = http_resolve_url(&r->rt->http, lua_tostring(L, -1), next);
	lua_pop(L, 1);
	if (!resolved)
		return read_fail(r, PROTO_SYSTEM_ERROR, "stream '%s': the next page URL '%s' is not a URL",
				 r->def->name, next);
	lua_pushstring(L, resolved);
	curl_free(resolved);
	lua_replace(L, -2);
	return 0;
}

/* Credentials go only to the first URL's host, each page once (the prepared request on top). */
static int check_next_request(struct engine *e, struct slot *s)
{
	struct stream_read *r = e->r;
	lua_State *L = r->L;
	int prepared = lua_gettop(L);
	char next_origin[512] = "";
	lua_getfield(L, prepared, "url");
	int elsewhere = http_origin(&r->rt->http, lua_tostring(L, -1), next_origin, sizeof next_origin) ||
			strcmp(s->origin, next_origin);
	lua_pop(L, 1);
	if (elsewhere)
		return read_fail(
			r, PROTO_SYSTEM_ERROR,
			"stream '%s': the next page is on another host (%s); refusing to send credentials there",
			r->def->name, next_origin);
	push_anchor(e, s, "seen");
	push_seen_key(L, prepared);
	int repeated = lua_rawget(L, -2) != LUA_TNIL;
	lua_pop(L, 2);
	if (repeated)
		return read_fail(r, PROTO_SYSTEM_ERROR,
				 "stream '%s': pagination loop, the same next page was asked for twice", r->def->name);
	if (s->pages >= MAX_PAGES_PER_WINDOW)
		return read_fail(r, PROTO_SYSTEM_ERROR, "stream '%s': more than %d pages in one window", r->def->name,
				 MAX_PAGES_PER_WINDOW);
	return 0;
}

/* Replaces the next page on top (a URL, or a request table from parse) with its prepared request:
 * a URL is a GET with this page's headers and auth; a table without headers keeps them too. Its URL is
 * resolved against this page's. */
static int prepare_next_request(struct engine *e, struct slot *s)
{
	struct stream_read *r = e->r;
	lua_State *L = r->L;
	int next = lua_gettop(L);
	int inherit = 1;
	if (lua_istable(L, next)) {
		inherit = lua_getfield(L, next, "headers") == LUA_TNIL;
		lua_pop(L, 1);
		if (http_push_request(L, next, 0, "GET") != LUA_OK)
			return read_fail(r, PROTO_SYSTEM_ERROR, "stream '%s': the next request parse gave: %s",
					 r->def->name, lua_tostring(L, -1));
	} else {
		lua_createtable(L, 0, 4);
		lua_pushvalue(L, next);
		lua_setfield(L, -2, "url");
		lua_pushliteral(L, "GET");
		lua_setfield(L, -2, "method");
		lua_pushboolean(L, 1);
		lua_setfield(L, -2, "idempotent");
		push_anchor(e, s, "request");
		lua_getfield(L, -1, "auth");
		lua_setfield(L, -3, "auth");
		lua_pop(L, 1);
	}
	int prepared = lua_gettop(L);
	if (inherit) {
		push_anchor(e, s, "request");
		lua_getfield(L, -1, "headers");
		lua_setfield(L, prepared, "headers");
		lua_pop(L, 1);
	}
	lua_getfield(L, prepared, "url");
	if (resolve_next_url(e, s))
		return -1;
	lua_setfield(L, prepared, "url");
	lua_replace(L, next);
	return 0;
}

static enum step checkpoint_if_due(struct engine *e)
{
	struct stream_read *r = e->r;
	if (r->def->cursor.kind == CURSOR_NONE || r->collect_field || !state_checkpoint_due(&r->state, date_now_ms()))
		return STEP_AGAIN;
	char err[256];
	if (state_checkpoint(&r->state, err, sizeof err))
		return step_failed(read_fail(r, PROTO_SYSTEM_ERROR, "cannot write the state of stream '%s': %s",
					     r->def->name, err));
	return STEP_AGAIN;
}

/* Pushes the record's member at a dotted path, or nil. */
static void push_member(lua_State *L, int record, const char *path)
{
	lua_pushvalue(L, record);
	while (*path && lua_istable(L, -1)) {
		const char *dot = strchr(path, '.');
		size_t len = dot ? (size_t)(dot - path) : strlen(path);
		lua_pushlstring(L, path, len);
		lua_gettable(L, -2);
		lua_remove(L, -2);
		path += len + (dot ? 1 : 0);
	}
	if (*path) {
		lua_pop(L, 1);
		lua_pushnil(L);
	}
}

/* A parent's page: each record's collect_field (a non-empty string, or an integer) becomes a
 * partition of the child, once. Records without one are counted, and logged when done. */
static int collect_partition_keys(struct stream_read *r, int records, size_t count)
{
	lua_State *L = r->L;
	for (size_t i = 1; i <= count; i++) {
		lua_geti(L, records, (lua_Integer)i); /* a batch's record decoded, or the table's */
		push_member(L, lua_gettop(L), r->collect_field);
		r->collected_records++;
		if (lua_isinteger(L, -1))
			lua_tostring(L, -1);
		size_t len = 0;
		const char *key = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
		if (!key || !len || strlen(key) != len) {
			r->collect_missing++;
		} else if (lua_pushvalue(L, -1), lua_rawget(L, r->collect_seen) == LUA_TNIL) {
			lua_pushvalue(L, -2);
			lua_pushboolean(L, 1);
			lua_rawset(L, r->collect_seen);
			lua_pushvalue(L, -2);
			lua_rawseti(L, r->collect_list, (lua_Integer)lua_rawlen(L, r->collect_list) + 1);
		}
		lua_settop(L, records);
	}
	return 0;
}

/* The page in the trace: what parse gave, what was kept and dropped, and the next request (on
 * top of the stack: a URL, a request table or nil). */
static void trace_page_done(struct engine *e, struct slot *s, size_t parsed, const struct partition_counts *before)
{
	lua_State *L = e->r->L;
	int top = lua_gettop(L);
	const char *next = NULL;
	if (lua_type(L, top) == LUA_TSTRING) {
		next = lua_tostring(L, top);
	} else if (lua_istable(L, top)) {
		/* A request table, shown as the request it will be (its query and body included). */
		if (http_push_request(L, top, 0, "GET") == LUA_OK) {
			int prepared = lua_gettop(L);
			lua_getfield(L, prepared, "method");
			lua_getfield(L, prepared, "url");
			lua_getfield(L, prepared, "body");
			next = lua_pushfstring(L, "%s %s%s%s", lua_tostring(L, -3), lua_tostring(L, -2),
					       lua_isstring(L, -1) ? " " : "",
					       lua_isstring(L, -1) ? lua_tostring(L, -1) : "");
		}
	}
	trace_page(e->r->rt, e->r->def->name, s->p->key, s->pages + 1, (int64_t)parsed, before, &s->p->counts, next);
	lua_settop(L, top);
}

/* The page's records go out; then its next page, or the window is done. */
static enum step emit_page(struct engine *e, struct slot *s)
{
	struct stream_read *r = e->r;
	lua_State *L = r->L;
	int top = lua_gettop(L);
	push_anchor(e, s, "records");
	int records = lua_gettop(L);
	const struct record_batch *batch = records_to_batch(L, records);
	int rc = 0;
	struct partition_counts before = s->p->counts;
	if (batch) {
		char reason[512], why[640];
		switch (records_batch_settle(batch, reason, sizeof reason)) {
		case RECORDS_NOT_JSON:
			snprintf(why, sizeof why, "HTTP %ld with a body that is not JSON (%s)", s->transfer.resp.status,
				 reason);
			records_batch_release(L, records); /* the page is asked for again: this one is garbage */
			lua_settop(L, top);
			return retry_later(e, s, why);
		case RECORDS_WRONG_SHAPE:
			lua_settop(L, top);
			return step_failed(read_fail(r, PROTO_SYSTEM_ERROR,
						     "stream '%s': parse(ctx, response) failed: %s", r->def->name,
						     reason));
		default: break;
		}
		rc = r->collect_field ? collect_partition_keys(r, records, records_batch_count(batch))
				      : emit_batch(r, s->p, &s->window, batch);
	} else if (r->collect_field && lua_istable(L, records)) {
		rc = collect_partition_keys(r, records, lua_rawlen(L, records));
	} else if (lua_istable(L, records)) {
		rc = emit_tables(r, s->p, &s->window, records);
	}
	if (rc) {
		lua_settop(L, top);
		return STEP_FAIL;
	}
	push_next_url(e, s, batch);
	size_t count = batch ? records_batch_count(batch) : lua_rawlen(L, records);
	if (s->paginated && paginate_was_last(&r->def->paginator, count)) {
		lua_pop(L, 1);
		lua_pushnil(L); /* a short page: the API has no more */
	}
	r->pages_read++;
	if (r->rt->trace.active)
		trace_page_done(e, s, count, &before);
	records_batch_release(L, records);
	lua_pushnil(L);
	set_anchor(e, s, "records");
	lua_pushnil(L);
	set_anchor(e, s, "next");
	/* A slot holds at most an answer and its batch; more held means garbage worth collecting. */
	if (lua_gc(L, LUA_GCCOUNT) > e->live_kb + COLLECT_GROWTH_KB || records_held(r->rt) > 2 * e->slots->count + 2) {
		lua_gc(L, LUA_GCCOLLECT);
		e->live_kb = lua_gc(L, LUA_GCCOUNT);
	}
	if (limit_reached(r)) {
		lua_settop(L, top);
		s->phase = PHASE_FINISHED;
		return STEP_WAIT;
	}
	if (lua_isnil(L, -1)) {
		lua_settop(L, top);
		s->phase = PHASE_WINDOW;
		return STEP_AGAIN;
	}
	if (checkpoint_if_due(e) == STEP_FAIL) {
		lua_settop(L, top);
		return STEP_FAIL;
	}
	s->pages++;
	s->reauthed = 0;
	if (prepare_next_request(e, s) || check_next_request(e, s)) {
		lua_settop(L, top);
		return STEP_FAIL;
	}
	set_request(e, s);
	lua_settop(L, top);
	http_retry_start(&s->retry);
	s->not_before_ms = 0;
	s->phase = PHASE_READY;
	return STEP_AGAIN;
}

static enum step window_done(struct engine *e, struct slot *s)
{
	struct stream_read *r = e->r;
	struct cursor_window next;
	emit_window_done(r, s->p);
	if (r->def->cursor.kind != CURSOR_NONE && cursor_next_window(&r->def->cursor, &r->plan, &s->window, &next)) {
		s->window = next;
		trace_window(r, s->p, &s->window, 1);
		s->phase = PHASE_REQUEST;
	} else {
		emit_partition_done(r, s->p);
		s->p = NULL;
		s->phase = PHASE_IDLE;
	}
	return checkpoint_if_due(e);
}

/* Moves the slot on from its phase as far as it can go now. */
static enum step slot_step(struct engine *e, struct slot *s, int64_t *wake_at)
{
	if (e->r->stopped_at_limit && s->phase != PHASE_FINISHED) {
		/* test-read's limit: other slots' pages in flight are not shown (nor checkpointed). */
		s->phase = PHASE_FINISHED;
		return STEP_WAIT;
	}
	switch (s->phase) {
	case PHASE_IDLE: return take_partition(e, s);
	case PHASE_REQUEST: return ask_for_request(e, s);
	case PHASE_READY: return start_fetch(e, s, wake_at);
	case PHASE_FETCHING: return STEP_WAIT;
	case PHASE_ANSWERED: return on_answer(e, s);
	case PHASE_MAPPING: {
		push_anchor(e, s, "records");
		int ready = records_batch_ready(records_to_batch(e->r->L, -1));
		lua_pop(e->r->L, 1);
		if (!ready)
			return STEP_WAIT;
		e->mapping--;
		s->phase = PHASE_EMIT;
		return STEP_AGAIN;
	}
	case PHASE_EMIT: return emit_page(e, s);
	case PHASE_WINDOW: return window_done(e, s);
	default: return STEP_WAIT;
	}
}

/* Steps every slot until none can move without waiting. Returns how many slots still have work
 * (or -1), with what they wait for. */
static int step_all(struct engine *e, int64_t *wake_at, int *fetching, int *mapping)
{
	int moved;
	do {
		moved = 0;
		for (size_t i = 0; i < e->slots->count; i++) {
			struct slot *s = &e->slots->slot[i];
			enum step st;
			while ((st = slot_step(e, s, wake_at)) == STEP_AGAIN)
				moved = 1;
			if (st == STEP_FAIL)
				return -1;
		}
	} while (moved);
	int active = 0;
	*fetching = *mapping = 0;
	for (size_t i = 0; i < e->slots->count; i++) {
		enum phase phase = e->slots->slot[i].phase;
		active += phase != PHASE_FINISHED;
		*fetching += phase == PHASE_FETCHING;
		*mapping += phase == PHASE_MAPPING;
	}
	return active;
}

static int pump(struct engine *e)
{
	struct stream_read *r = e->r;
	struct runtime *rt = r->rt;
	for (;;) {
		if (host_cancelled)
			return read_fail(r, PROTO_TRANSIENT_ERROR, "%s", cancel_reason());
		if (proto_stdout_failed(&rt->out))
			return read_fail(r, PROTO_SYSTEM_ERROR, "stdout was closed: nobody reads the sync any more");
		/* Emptied before looking, so that a walk finishing after the look wakes the wait below. */
		pool_drain_done_fd(&rt->pool);
		if (r->stopped_at_limit)
			return 0;
		int64_t wake_at = INT64_MAX;
		int fetching, mapping;
		int active = step_all(e, &wake_at, &fetching, &mapping);
		if (active <= 0)
			return active;
		int64_t wait = wake_at == INT64_MAX ? 1000 : wake_at - date_now_ms();
		int timeout = wait < 0 ? 0 : wait > 1000 ? 1000 : (int)wait;
		int wake_fd = mapping ? pool_done_fd(&rt->pool) : -1;
		if (!fetching) {
			if (wake_fd >= 0)
				http_wait_fd(wake_fd, timeout);
			else
				http_sleep_ms(timeout);
			continue;
		}
		struct http_transfer *done = http_transfers_wait(&rt->http, timeout, wake_fd);
		while (done) {
			struct slot *s = (struct slot *)(void *)((char *)done - offsetof(struct slot, transfer));
			s->phase = PHASE_ANSWERED;
			done = http_transfers_wait(&rt->http, 0, -1);
		}
	}
}

static int read_partitions(struct stream_read *r)
{
	lua_State *L = r->L;
	int top = lua_gettop(L);
	size_t count = (size_t)r->rt->http_settings.concurrency;
	if (count > r->state.count)
		count = r->state.count;
	if (count < 1)
		count = 1;
	struct engine e = {r, push_slots(L, count), 0, 0, 0, lua_gc(L, LUA_GCCOUNT)};
	lua_createtable(L, (int)count, 0);
	e.anchors = lua_gettop(L);
	for (size_t i = 0; i < count; i++) {
		lua_newtable(L);
		lua_rawseti(L, e.anchors, (lua_Integer)i + 1);
	}
	int rc = pump(&e);
	slots_release(e.slots);
	lua_settop(L, top);
	return rc < 0 ? -1 : 0;
}

/* ---- the stream ---- */

static int push_parent_keys(struct stream_read *child, int *pushed);

/* partitions(config): the partition keys, each a non-empty string without NUL, listed once
 * (the same key twice is read once). Pushes the list; 0 pushed nothing (a stream without them). */
static int push_partition_keys(struct stream_read *r, int *pushed)
{
	lua_State *L = r->L;
	*pushed = 0;
	if (!r->def->partitioned)
		return 0;
	if (r->def->parent)
		return push_parent_keys(r, pushed);
	lua_getfield(L, r->def_idx, "partitions");
	lua_pushvalue(L, r->config);
	if (host_call(L, 1, 1) != LUA_OK)
		return fail_script(r, "partitions(config) failed");
	if (!lua_istable(L, -1) || lua_rawlen(L, -1) == 0)
		return read_fail(r, PROTO_CONFIG_ERROR, "stream '%s': partitions(config) gave no partitions",
				 r->def->name);
	int given = lua_gettop(L);
	lua_Integer n = (lua_Integer)lua_rawlen(L, given);
	lua_createtable(L, (int)n, 0);
	int list = lua_gettop(L);
	lua_createtable(L, 0, (int)n);
	int seen = lua_gettop(L);
	for (lua_Integer i = 1; i <= n; i++) {
		lua_rawgeti(L, given, i);
		size_t len;
		const char *key = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
		if (!key || len == 0)
			return read_fail(r, PROTO_CONFIG_ERROR, "stream '%s': partition %d is not a non-empty string",
					 r->def->name, (int)i);
		if (strlen(key) != len)
			return read_fail(r, PROTO_CONFIG_ERROR, "stream '%s': partition %d contains a NUL character",
					 r->def->name, (int)i);
		lua_pushvalue(L, -1);
		if (lua_rawget(L, seen) == LUA_TNIL) {
			lua_pushvalue(L, -2);
			lua_pushboolean(L, 1);
			lua_rawset(L, seen);
			lua_pushvalue(L, -2);
			lua_rawseti(L, list, (lua_Integer)lua_rawlen(L, list) + 1);
		}
		lua_pop(L, 2);
	}
	lua_settop(L, list);
	lua_remove(L, given);
	*pushed = 1;
	return 0;
}

static int prepare(struct stream_read *r, int states_idx);

/* The child's partitions: the parent stream read in full through the same engine (its paging,
 * errors rules, concurrency and the request budget), its records kept only for their field.
 * Pushes the list. */
static int push_parent_keys(struct stream_read *child, int *pushed)
{
	lua_State *L = child->L;
	const struct stream_def *def = child->def;
	struct stream_read parent;
	memset(&parent, 0, sizeof parent);
	parent.rt = child->rt;
	parent.L = L;
	parent.config = child->config;
	parent.script_idx = child->script_idx;
	parent.def = def->parent;
	parent.collect_field = def->parent_field;
	lua_newtable(L);
	parent.collect_list = lua_gettop(L);
	lua_newtable(L);
	parent.collect_seen = lua_gettop(L);
	stream_push_table(L, child->script_idx, parent.def);
	parent.def_idx = lua_gettop(L);
	int rc = prepare(&parent, 0);
	if (!rc)
		rc = read_partitions(&parent);
	buf_free(&parent.state.json);
	if (rc)
		return read_fail(child, parent.err.type, "stream '%s': reading its parent stream '%s': %s", def->name,
				 def->parent_name, parent.err.message);
	size_t count = lua_rawlen(L, parent.collect_list);
	proto_logf(&child->rt->out, "INFO", "%s: %zu partitions from %zu records of parent stream '%s'", def->name,
		   count, parent.collected_records, def->parent_name);
	if (parent.collect_missing)
		proto_logf(&child->rt->out, "WARN",
			   "%s: %zu records of parent stream '%s' have no %s (a non-empty string or an integer): no "
			   "partition for them",
			   def->name, parent.collect_missing, def->parent_name, def->parent_field);
	lua_settop(L, parent.collect_list);
	*pushed = 1;
	return 0;
}

/* The primary key as a list of paths ({{"id"}}), or nothing for a stream without one. */
static void push_primary_key_paths(struct stream_read *r)
{
	lua_State *L = r->L;
	r->pk_paths = 0;
	int type = lua_getfield(L, r->def_idx, "primary_key");
	if (type == LUA_TNIL) {
		lua_pop(L, 1);
		return;
	}
	lua_newtable(L);
	if (type == LUA_TSTRING) {
		lua_createtable(L, 1, 0);
		lua_pushvalue(L, -3);
		lua_rawseti(L, -2, 1);
		lua_rawseti(L, -2, 1);
	} else {
		lua_Integer n = (lua_Integer)lua_rawlen(L, -2);
		for (lua_Integer i = 1; i <= n; i++) {
			if (lua_rawgeti(L, -2, i) == LUA_TSTRING) {
				lua_createtable(L, 1, 0);
				lua_insert(L, -2);
				lua_rawseti(L, -2, 1);
			}
			lua_rawseti(L, -2, i);
		}
	}
	lua_remove(L, -2);
	r->pk_paths = lua_gettop(L);
}

static int prepare(struct stream_read *r, int states_idx)
{
	const struct cursor_def *c = &r->def->cursor;
	char err[2048];
	enum proto_failure type = PROTO_CONFIG_ERROR;
	if (c->kind != CURSOR_NONE &&
	    cursor_plan_load(r->L, c, r->def_idx, r->config, r->rt->started_ms, &r->plan, &type, err, sizeof err))
		return read_fail(r, type, "stream '%s': %s", r->def->name, err);
	push_primary_key_paths(r);
	if (!r->pk_paths && c->kind != CURSOR_NONE && r->incremental)
		proto_logf(&r->rt->out, "WARN",
			   "stream '%s' has no primary_key: a read resumed after a failure sends again the records %s "
			   "(at least once, never lost); declare primary_key for exactly once",
			   r->def->name,
			   c->order == ORDER_ASCENDING ? "of the cursor value it stopped at"
						       : "of the window it stopped in");
	int keys;
	if (push_partition_keys(r, &keys))
		return -1;
	state_open(&r->state, r->rt, r->def, keys ? lua_gettop(r->L) : 0);
	if (r->incremental && state_load(&r->state, states_idx, err, sizeof err))
		return read_fail(r, PROTO_CONFIG_ERROR, "%s", err);
	return 0;
}

/* The state of what was emitted first, then the status and the error. With nothing emitted since
 * the last STATE, no new one: the platform keeps the one it has. */
static void report_failure(struct stream_read *r, const char *name)
{
	struct runtime *rt = r->rt;
	if (r->def && r->def->cursor.kind != CURSOR_NONE && r->state.parts &&
	    (r->state.records_since > 0 || r->state.changed) && !proto_stdout_failed(&rt->out)) {
		char err[256];
		state_checkpoint(&r->state, err, sizeof err);
	}
	proto_stream_status(&rt->out, name, "INCOMPLETE", 0);
	proto_trace_error(&rt->out, r->err.type, r->err.message, NULL, r->err.stack[0] ? r->err.stack : NULL);
}

/* The closest stream name the script has, for a catalog that names one it does not. */
static const char *closest_stream(const struct script_def *script, const char *name)
{
	const char *names[65];
	size_t n = 0;
	for (size_t i = 0; i < script->count && n < 64; i++)
		names[n++] = script->streams[i].name;
	names[n] = NULL;
	return suggest_closest(name, names);
}

int engine_read_stream(struct runtime *rt, const struct script_def *script, int script_idx, int config_idx,
		       int configured_idx, int states_idx, int legacy_idx)
{
	lua_State *L = rt->L;
	int top = lua_gettop(L);
	struct stream_read read;
	struct stream_read *r = &read;
	memset(r, 0, sizeof *r);
	r->rt = rt;
	r->L = L;
	r->config = config_idx;
	lua_getfield(L, configured_idx, "stream");
	lua_getfield(L, -1, "name");
	const char *name = lua_tostring(L, -1);
	lua_getfield(L, configured_idx, "sync_mode");
	r->incremental = !strcmp(lua_tostring(L, -1), "incremental");
	lua_pop(L, 1);
	r->def = stream_find(script, name);
	r->script_idx = script_idx;
	rt->stream = name;
	proto_stream_status(&rt->out, name, "STARTED", 0);
	int rc;
	if (!r->def) {
		const char *closest = closest_stream(script, name);
		rc = read_fail(r, PROTO_CONFIG_ERROR,
			       "the catalog asks for stream '%s', which this source does not have%s%s%s", name,
			       closest ? " (did you mean " : "", closest ? closest : "", closest ? "?)" : "");
	} else if (r->incremental && r->def->cursor.kind == CURSOR_NONE) {
		rc = read_fail(r, PROTO_CONFIG_ERROR,
			       "stream '%s' has no cursor, so it can only be read in full: configure it with sync_mode "
			       "full_refresh",
			       name);
	} else {
		stream_push_table(L, script_idx, r->def);
		r->def_idx = lua_gettop(L);
		rc = prepare(r, states_idx);
		r->state.legacy = legacy_idx;
		if (!rc)
			rc = read_partitions(r);
		/* Every stream with a cursor ends with a STATE, even one with nothing new (a holiday). */
		if (!rc && !r->stopped_at_limit && r->def->cursor.kind != CURSOR_NONE &&
		    (r->state.records_since > 0 || r->state.changed || r->state.states_written == 0)) {
			char err[256];
			if (state_checkpoint(&r->state, err, sizeof err))
				rc = read_fail(r, PROTO_SYSTEM_ERROR, "cannot write the state of stream '%s': %s", name,
					       err);
		}
	}
	if (r->state.count > PLAN_LINES_UP_TO)
		proto_logf(&rt->out, "INFO", "%s: %zu partitions: %zu read, %zu up to date; %lld records", name,
			   r->state.count, r->partitions_read, r->partitions_up_to_date,
			   (long long)r->state.records_total);
	if (rc)
		report_failure(r, name);
	else
		proto_stream_status(&rt->out, name, "COMPLETE", 0);
	/* Later streams' STATEs carry this stream's last state in the whole-source blob. */
	if (legacy_idx && r->def && r->state.parts && r->def->cursor.kind != CURSOR_NONE && r->state.states_written) {
		state_push_current(&r->state);
		lua_setfield(L, legacy_idx, name);
	}
	lua_pushnil(L); /* emit.c's schema warnings of this read */
	lua_rawsetp(L, LUA_REGISTRYINDEX, r);
	buf_free(&r->state.json);
	rt->stream = NULL;
	lua_settop(L, top);
	return rc ? -1 : 0;
}
