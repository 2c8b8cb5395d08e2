/*
 * trace: the engine's events (a partition begins, a request goes, an answer comes, a page is
 * split into kept and dropped records, a limit stops the read), and test-read's view of a read.
 *
 * Events are JSON objects written into the protocol's own output buffer as lines of type
 * "_EVENT", so that they stay in order with the records, checkpoints and logs around them. In
 * test-read, every line the output would write goes to the formatter (runtime/trace.lua, compiled
 * in) instead of stdout; it prints the trace. With --debug in other commands, an event becomes a
 * DEBUG LOG message with the formatter's text. The formatter runs in a Lua state of its own: it
 * must not share the script's instruction and memory limits, nor be able to touch its globals.
 */
#include "trace.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "date.h"
#include "http.h"
#include "json.h"
#include "runtime.h"
#include "secrets.h"
#include "state.h"
#include "trace_lua.h" /* TRACE_LUA: runtime/trace.lua's text (Makefile) */

#define PROGRESS_EVERY_MS 200
#define BODY_SHOWN 2000 /* of a request's body, in its event */

static int lua_out(lua_State *L)
{
	size_t len;
	const char *text = luaL_checklstring(L, 1, &len);
	fwrite(text, 1, len, stdout);
	fputc('\n', stdout);
	return 0;
}

static int lua_progress(lua_State *L)
{
	struct trace *t = lua_touserdata(L, lua_upvalueindex(1));
	int64_t now = date_now_ms();
	if (now - t->progress_at_ms < PROGRESS_EVERY_MS)
		return 0;
	t->progress_at_ms = now;
	fprintf(stderr, "\r\033[K%s", luaL_checkstring(L, 1));
	fflush(stderr);
	return 0;
}

static int lua_now_ms(lua_State *L)
{
	lua_pushinteger(L, date_now_ms());
	return 1;
}

/* Calls the formatter's function name with one string; its errors go to stderr (a trace that
 * cannot be printed must not end the read). */
static void call_formatter(struct trace *t, const char *name, const char *text, size_t len, int results)
{
	lua_State *L = t->L;
	lua_rawgeti(L, LUA_REGISTRYINDEX, t->handle);
	lua_getfield(L, -1, name);
	lua_remove(L, -2);
	int nargs = 0;
	if (text) {
		lua_pushlstring(L, text, len);
		nargs = 1;
	}
	if (lua_pcall(L, nargs, results, 0) != LUA_OK) {
		fprintf(stderr, "source-lua: the trace could not be printed: %s\n", lua_tostring(L, -1));
		lua_pop(L, 1);
		for (int i = 0; i < results; i++)
			lua_pushnil(L);
	}
}

/* Copies the value at idx of one state into another, through JSON. */
static void copy_value(lua_State *from, int idx, lua_State *to)
{
	struct buf text = {0};
	char err[128];
	if (json_encode(from, idx, &text, err, sizeof err) == 0)
		json_decode_push(to, text.data ? text.data : "null", text.len ? text.len : 4);
	else
		lua_pushnil(to), lua_pushnil(to);
	lua_pop(to, 1);
	buf_free(&text);
}

static void push_options(lua_State *L, const struct trace_options *opt)
{
	lua_createtable(L, 0, 8);
	lua_pushboolean(L, opt->json);
	lua_setfield(L, -2, "json");
	lua_pushboolean(L, opt->infer_schema);
	lua_setfield(L, -2, "infer_schema");
	lua_pushboolean(L, opt->verbose);
	lua_setfield(L, -2, "verbose");
	if (opt->max_records > 0) {
		lua_pushinteger(L, opt->max_records);
		lua_setfield(L, -2, "max_records");
	}
}

/* The formatter's state: base, string, table and math, the json module, and its three C helpers. */
static int open_formatter(struct trace *t, lua_State *script, int declared_idx)
{
	lua_State *L = t->L = luaL_newstate();
	if (!L)
		return -1;
	luaL_requiref(L, "_G", luaopen_base, 1);
	luaL_requiref(L, "string", luaopen_string, 1);
	luaL_requiref(L, "table", luaopen_table, 1);
	luaL_requiref(L, "math", luaopen_math, 1);
	luaL_requiref(L, "json", json_open, 1);
	lua_pop(L, 5);
	lua_pushcfunction(L, lua_now_ms);
	lua_setglobal(L, "now_ms");
	if (luaL_loadbuffer(L, TRACE_LUA, sizeof TRACE_LUA - 1, "=trace.lua") != LUA_OK ||
	    lua_pcall(L, 0, 1, 0) != LUA_OK) {
		fprintf(stderr, "source-lua: the trace formatter does not load: %s\n", lua_tostring(L, -1));
		return -1;
	}
	push_options(L, &t->opt);
	if (declared_idx) {
		copy_value(script, declared_idx, L);
		lua_setfield(L, -2, "declared");
	}
	lua_pushcfunction(L, lua_out);
	if (t->progress) {
		lua_pushlightuserdata(L, t);
		lua_pushcclosure(L, lua_progress, 1);
	} else {
		lua_pushnil(L);
	}
	if (lua_pcall(L, 3, 1, 0) != LUA_OK) {
		fprintf(stderr, "source-lua: the trace formatter does not start: %s\n", lua_tostring(L, -1));
		return -1;
	}
	t->handle = luaL_ref(L, LUA_REGISTRYINDEX);
	return 0;
}

/* Every line the output would have written goes to the formatter. */
static void divert(void *ctx, const char *data, size_t len)
{
	struct trace *t = ctx;
	while (len) {
		const char *nl = memchr(data, '\n', len);
		if (!nl) {
			buf_append(&t->carry, data, len);
			return;
		}
		size_t n = (size_t)(nl - data);
		if (t->carry.len) {
			buf_append(&t->carry, data, n);
			call_formatter(t, "line", t->carry.data, t->carry.len, 0);
			buf_clear(&t->carry);
		} else {
			call_formatter(t, "line", data, n, 0);
		}
		data += n + 1;
		len -= n + 1;
	}
}

int trace_start(struct runtime *rt, const struct trace_options *opt, int declared_idx)
{
	struct trace *t = &rt->trace;
	t->opt = *opt;
	t->progress = isatty(STDERR_FILENO);
	if (open_formatter(t, rt->L, declared_idx ? lua_absindex(rt->L, declared_idx) : 0))
		return -1;
	t->active = 1;
	proto_flush(&rt->out);
	rt->out.divert = divert;
	rt->out.divert_ctx = t;
	return 0;
}

void trace_finish(struct runtime *rt)
{
	struct trace *t = &rt->trace;
	if (!t->active)
		return;
	proto_flush(&rt->out);
	call_formatter(t, "finish", NULL, 0, 0);
	if (t->progress && t->progress_at_ms)
		fprintf(stderr, "\r\033[K");
	fflush(stdout);
}

void trace_free(struct runtime *rt)
{
	struct trace *t = &rt->trace;
	if (t->L)
		lua_close(t->L);
	buf_free(&t->carry);
	memset(t, 0, sizeof *t);
}

int trace_wanted(const struct runtime *rt)
{
	return rt->trace.active || rt->debug;
}

/* ---- building events ---- */

static void put_key(struct buf *b, const char *key)
{
	buf_putc(b, ',');
	json_write_string(b, key, strlen(key));
	buf_putc(b, ':');
}

static void put_text(struct buf *b, const char *key, const char *value)
{
	put_key(b, key);
	if (value)
		json_write_string(b, value, strlen(value));
	else
		buf_append(b, "null", 4);
}

/* A text as printed: secrets masked. */
static void put_masked(struct runtime *rt, struct buf *b, const char *key, const char *value, size_t len)
{
	struct buf masked = {0};
	secrets_mask_into(&rt->secrets, &masked, value, len);
	put_key(b, key);
	json_write_string(b, masked.data ? masked.data : "", masked.len);
	buf_free(&masked);
}

static void put_int(struct buf *b, const char *key, int64_t value)
{
	put_key(b, key);
	json_write_int(b, value);
}

static void begin(struct buf *b, const char *event, const char *stream, const char *partition)
{
	buf_printf(b, "{\"type\":\"_EVENT\",\"event\":\"%s\"", event);
	put_text(b, "stream", stream);
	if (partition)
		put_text(b, "partition", partition);
}

/* The event goes into the output in order (test-read), or becomes a DEBUG log (--debug). */
static void end(struct runtime *rt, struct buf *b)
{
	buf_putc(b, '}');
	if (rt->trace.active) {
		buf_putc(b, '\n');
		proto_write_lines(&rt->out, b->data, b->len);
	} else if (rt->debug) {
		struct trace *t = &rt->trace;
		if (!t->L && open_formatter(t, rt->L, 0)) {
			proto_log_text(&rt->out, "DEBUG", b->data, b->len);
		} else {
			call_formatter(t, "describe", b->data, b->len, 1);
			size_t len;
			const char *text = lua_tolstring(t->L, -1, &len);
			proto_log_text(&rt->out, "DEBUG", text ? text : b->data, text ? len : b->len);
			lua_pop(t->L, 1);
		}
	}
	buf_free(b);
}

void trace_partition(struct runtime *rt, const char *stream, const char *partition, const char *from, const char *to,
		     int reading)
{
	if (!rt->trace.active)
		return; /* the INFO log says it already */
	struct buf b = {0};
	begin(&b, "partition", stream, partition);
	if (from)
		put_text(&b, "from", from);
	if (to)
		put_text(&b, "to", to);
	put_key(&b, "reading");
	buf_printf(&b, "%s", reading ? "true" : "false");
	end(rt, &b);
}

void trace_request(struct runtime *rt, const char *stream, const char *partition, const struct http_request *req)
{
	if (!trace_wanted(rt))
		return;
	struct buf b = {0};
	begin(&b, "request", stream, partition);
	put_text(&b, "method", req->method ? req->method : "GET");
	put_masked(rt, &b, "url", req->url, strlen(req->url));
	put_key(&b, "headers");
	buf_putc(&b, '[');
	int n = 0;
	for (const struct curl_slist *h = req->headers; h; h = h->next, n++) {
		if (n)
			buf_putc(&b, ',');
		struct buf masked = {0};
		secrets_mask_into(&rt->secrets, &masked, h->data, strlen(h->data));
		json_write_string(&b, masked.data ? masked.data : "", masked.len);
		buf_free(&masked);
	}
	const struct http_credentials *cr = req->credentials;
	if (cr && (cr->bearer || cr->username || cr->header_line)) {
		const char *line = cr->bearer     ? "Authorization: Bearer ****"
				   : cr->username ? "Authorization: Basic ****"
						  : NULL;
		char own[160];
		if (!line) {
			const char *colon = strchr(cr->header_line, ':');
			snprintf(own, sizeof own, "%.*s: ****", colon ? (int)(colon - cr->header_line) : 0,
				 cr->header_line);
			line = own;
		}
		buf_printf(&b, "%s", n ? "," : "");
		json_write_string(&b, line, strlen(line));
	}
	buf_putc(&b, ']');
	if (cr && cr->query_name)
		put_text(&b, "query_credential", cr->query_name);
	put_int(&b, "body_bytes", req->body ? (int64_t)req->body_len : 0);
	if (req->body && req->body_len)
		put_masked(rt, &b, "body", req->body, req->body_len < BODY_SHOWN ? req->body_len : BODY_SHOWN);
	end(rt, &b);
}

void trace_response(struct runtime *rt, const char *stream, const char *partition, const struct http_response *resp,
		    int64_t elapsed_ms)
{
	if (!trace_wanted(rt))
		return;
	struct buf b = {0};
	begin(&b, "response", stream, partition);
	put_int(&b, "status", resp->status);
	put_int(&b, "ms", elapsed_ms);
	put_int(&b, "bytes", (int64_t)resp->body.len);
	if (resp->code != CURLE_OK) {
		char why[CURL_ERROR_SIZE + 64];
		http_describe_failure(resp, why, sizeof why);
		put_masked(rt, &b, "error", why, strlen(why));
	}
	end(rt, &b);
}

void trace_page(struct runtime *rt, const char *stream, const char *partition, int page, int64_t parsed,
		const struct partition_counts *before, const struct partition_counts *after, const char *next)
{
	if (!rt->trace.active)
		return;
	struct buf b = {0};
	begin(&b, "page", stream, partition);
	put_int(&b, "page", page);
	put_int(&b, "records", parsed);
	put_int(&b, "kept", after->emitted - before->emitted);
	put_key(&b, "dropped");
	buf_printf(&b, "{\"outside_window\":%lld,\"already_emitted\":%lld,\"skipped_by_script\":%lld}",
		   (long long)(after->outside_window - before->outside_window),
		   (long long)(after->already_emitted - before->already_emitted),
		   (long long)(after->skipped_by_script - before->skipped_by_script));
	put_int(&b, "past_ceiling", after->past_ceiling - before->past_ceiling);
	put_int(&b, "schema_warnings", after->schema_mismatches - before->schema_mismatches);
	if (next)
		put_masked(rt, &b, "next", next, strlen(next));
	else
		put_text(&b, "next", NULL);
	end(rt, &b);
}

void trace_limit(struct runtime *rt, const char *stream, const char *limit, int64_t value)
{
	if (!rt->trace.active)
		return;
	struct buf b = {0};
	begin(&b, "limit", stream, NULL);
	put_text(&b, "limit", limit);
	put_int(&b, "value", value);
	end(rt, &b);
}
