/*
 * host: the only file that creates or closes the lua_State.
 *
 * Scripts are user code run unattended, so they get a fenced standard library: no io, no
 * os.execute/exit/getenv, no require or package, load() only for text chunks, print() sent to
 * the LOG stream instead of stdout (which carries the protocol). Memory is capped by the
 * allocator and every call from C gets an instruction budget checked by a count hook; once the
 * budget is spent the hook fires on every instruction, so a script cannot swallow the error with
 * pcall and keep looping.
 */
#define _GNU_SOURCE
#include "host.h"

#include <lauxlib.h>
#include <lualib.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "date.h"
#include "http.h"
#include "json.h"
#include "records.h"
#include "runtime.h"

#define HOOK_EVERY 10000

volatile sig_atomic_t host_cancelled;

/* Head-room granted after the script runs out of memory, so the error can still be reported. */
#define HOST_ERROR_RESERVE (1u << 20)

struct host_state {
	struct runtime *rt;
	struct host_limits limits;
	lua_State *L;
	size_t memory_used;
	size_t memory_reserve;
	long long instructions_left;
	int out_of_memory; /* set by the allocator; the hook then stops the script */
};

static void host_hook(lua_State *L, lua_Debug *ar);

static void *host_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
	struct host_state *h = ud;
	size_t old_size = ptr ? osize : 0;
	if (nsize == 0) {
		free(ptr);
		h->memory_used -= old_size;
		return NULL;
	}
	if (nsize > old_size && h->memory_used - old_size + nsize > h->limits.memory_bytes + h->memory_reserve) {
		/* A script that catches memory errors with pcall would loop through emergency collections
		 * for ever: from the next instruction on, the hook raises until control is back in C.
		 * lua_sethook is documented as safe to call at any time. */
		if (h->L && !h->out_of_memory) {
			h->out_of_memory = 1;
			lua_sethook(h->L, host_hook, LUA_MASKCOUNT, 1);
		}
		return NULL;
	}
	void *grown = realloc(ptr, nsize);
	if (grown)
		h->memory_used = h->memory_used - old_size + nsize;
	return grown;
}

static struct host_state *host_of(lua_State *L)
{
	void *ud;
	lua_getallocf(L, &ud);
	return ud;
}

static void host_hook(lua_State *L, lua_Debug *ar)
{
	(void)ar;
	struct host_state *h = host_of(L);
	h->instructions_left -= HOOK_EVERY;
	if (host_cancelled) {
		lua_sethook(L, host_hook, LUA_MASKCOUNT, 1);
		luaL_error(L, "the sync was cancelled");
	}
	if (h->out_of_memory) {
		lua_sethook(L, host_hook, LUA_MASKCOUNT, 1);
		luaL_error(L, "the script ran out of memory (limit %d MB)", (int)(h->limits.memory_bytes >> 20));
	}
	if (h->instructions_left < 0) {
		lua_sethook(L, host_hook, LUA_MASKCOUNT, 1);
		luaL_error(L, "script exceeded its instruction limit (%I instructions per call): an endless loop?",
			   (lua_Integer)h->limits.instructions_per_call);
	}
}

/* print(...) -> logs the arguments at INFO, tab-separated, as the stock print would write them */
static int host_print(lua_State *L)
{
	int n = lua_gettop(L);
	luaL_Buffer b;
	luaL_buffinit(L, &b);
	for (int i = 1; i <= n; i++) {
		if (i > 1)
			luaL_addchar(&b, '\t');
		luaL_tolstring(L, i, NULL);
		luaL_addvalue(&b);
	}
	luaL_pushresult(&b);
	size_t len;
	const char *text = lua_tolstring(L, -1, &len);
	proto_log_text(&runtime_of(L)->out, "INFO", text, len);
	return 0;
}

/* load(chunk [, chunkname [, mode [, env]]]) -> the stock load, always in text mode */
static int host_load(lua_State *L)
{
	/* An absent env must stay absent: an explicit nil would give the chunk no globals at all. */
	int nargs = lua_gettop(L) >= 4 ? 4 : 3;
	lua_settop(L, nargs);
	lua_pushliteral(L, "t");
	lua_replace(L, 3);
	lua_pushvalue(L, lua_upvalueindex(1));
	lua_insert(L, 1);
	lua_call(L, nargs, LUA_MULTRET);
	return lua_gettop(L);
}

/* setmetatable(t, mt) -> t, the stock one, but for a metatable with __gc: Lua runs finalizers with
 * its hooks off, so no instruction budget, watchdog or SIGTERM could stop one that never ends
 * (a __gc looping for ever hung check and read until SIGKILL). Scripts own no resource a
 * finalizer would have to free. */
static int host_setmetatable(lua_State *L)
{
	if (lua_istable(L, 2)) {
		lua_pushliteral(L, "__gc");
		if (lua_rawget(L, 2) != LUA_TNIL)
			return luaL_error(L,
					  "setmetatable: __gc (finalizers) is not available to scripts: nothing could "
					  "bound how long one runs");
		lua_pop(L, 1);
	}
	lua_pushvalue(L, lua_upvalueindex(1));
	lua_insert(L, 1);
	lua_call(L, lua_gettop(L) - 1, 1);
	return 1;
}

/* os.time() is the clock; os.time{...} would read the fields in the host's time zone, which must
 * never change what a script computes. */
static int host_os_time(lua_State *L)
{
	if (!lua_isnoneornil(L, 1))
		return luaL_error(L,
				  "os.time{...} reads the fields in the host's time zone: use date.parse(text, zone)");
	lua_pushvalue(L, lua_upvalueindex(1));
	lua_call(L, 0, 1);
	return 1;
}

static void log_level(lua_State *L, const char *level)
{
	int n = lua_gettop(L);
	luaL_Buffer b;
	luaL_buffinit(L, &b);
	for (int i = 1; i <= n; i++) {
		if (i > 1)
			luaL_addchar(&b, ' ');
		luaL_tolstring(L, i, NULL);
		luaL_addvalue(&b);
	}
	luaL_pushresult(&b);
	size_t len;
	const char *text = lua_tolstring(L, -1, &len);
	proto_log_text(&runtime_of(L)->out, level, text, len);
}

/* log.info(...) / log.warn(...) / log.error(...) / log.debug(...) -> nothing; one LOG message */
static int log_info(lua_State *L)
{
	log_level(L, "INFO");
	return 0;
}
static int log_warn(lua_State *L)
{
	log_level(L, "WARN");
	return 0;
}
static int log_error(lua_State *L)
{
	log_level(L, "ERROR");
	return 0;
}
static int log_debug(lua_State *L)
{
	log_level(L, "DEBUG");
	return 0;
}

static int open_log(lua_State *L)
{
	static const luaL_Reg functions[] = {
		{"info", log_info}, {"warn", log_warn}, {"error", log_error}, {"debug", log_debug}, {NULL, NULL},
	};
	luaL_newlib(L, functions);
	return 1;
}

static void remove_fields(lua_State *L, const char *table, const char *const *names)
{
	lua_getglobal(L, table);
	for (; *names; names++) {
		lua_pushnil(L);
		lua_setfield(L, -2, *names);
	}
	lua_pop(L, 1);
}

static void open_sandboxed_libs(lua_State *L)
{
	static const luaL_Reg libs[] = {
		{LUA_GNAME, luaopen_base},        {LUA_TABLIBNAME, luaopen_table},
		{LUA_STRLIBNAME, luaopen_string}, {LUA_MATHLIBNAME, luaopen_math},
		{LUA_UTF8LIBNAME, luaopen_utf8},  {LUA_COLIBNAME, luaopen_coroutine},
		{LUA_OSLIBNAME, luaopen_os},      {NULL, NULL},
	};
	static const char *const base_removed[] = {"dofile", "loadfile", "require", NULL};
	/* os.date and os.time{} read the host's local time zone: scripts use the date module (os.time
	 * without arguments stays, as host_os_time). */
	static const char *const os_removed[] = {"execute", "exit",      "getenv", "remove", "rename",
						 "tmpname", "setlocale", "date",   NULL};
	for (const luaL_Reg *lib = libs; lib->func; lib++) {
		luaL_requiref(L, lib->name, lib->func, 1);
		lua_pop(L, 1);
	}
	remove_fields(L, LUA_GNAME, base_removed);
	remove_fields(L, LUA_OSLIBNAME, os_removed);
	lua_getglobal(L, "load");
	lua_pushcclosure(L, host_load, 1);
	lua_setglobal(L, "load");
	lua_getglobal(L, "setmetatable");
	lua_pushcclosure(L, host_setmetatable, 1);
	lua_setglobal(L, "setmetatable");
	lua_pushcfunction(L, host_print);
	lua_setglobal(L, "print");
	lua_getglobal(L, LUA_OSLIBNAME);
	lua_getfield(L, -1, "time");
	lua_pushcclosure(L, host_os_time, 1);
	lua_setfield(L, -2, "time");
	lua_pop(L, 1);
}

static void open_runtime_modules(lua_State *L)
{
	static const luaL_Reg modules[] = {
		{"json", json_open},       {"date", date_open}, {"http", http_open},
		{"records", records_open}, {"log", open_log},   {NULL, NULL},
	};
	for (const luaL_Reg *m = modules; m->func; m++) {
		luaL_requiref(L, m->name, m->func, 1);
		lua_pop(L, 1);
	}
}

static int host_init(lua_State *L)
{
	open_sandboxed_libs(L);
	open_runtime_modules(L);
	return 0;
}

lua_State *host_open(struct runtime *rt)
{
	struct host_state *h = calloc(1, sizeof *h);
	if (!h)
		return NULL;
	h->rt = rt;
	h->limits = rt->limits;
	h->instructions_left = rt->limits.instructions_per_call;
	lua_State *L = lua_newstate(host_alloc, h);
	if (!L) {
		free(h);
		return NULL;
	}
	*(struct runtime **)lua_getextraspace(L) = rt;
	lua_pushcfunction(L, host_init);
	if (lua_pcall(L, 0, 0, 0) != LUA_OK) {
		host_close(L);
		return NULL;
	}
	h->L = L;
	lua_sethook(L, host_hook, LUA_MASKCOUNT, HOOK_EVERY);
	return L;
}

void host_close(lua_State *L)
{
	if (!L)
		return;
	struct host_state *h = host_of(L);
	lua_close(L);
	free(h);
}

void host_load_script(lua_State *L, const char *path)
{
	int status = luaL_loadfilex(L, path, "t");
	if (status != LUA_OK)
		lua_error(L);
	if (host_call(L, 0, 1) != LUA_OK) {
		lua_getfield(L, -1, "message");
		luaL_error(L, "%s", lua_tostring(L, -1));
	}
	if (!lua_istable(L, -1))
		luaL_error(L, "%s: the script must return a table (spec, streams, check), not a %s", path,
			   luaL_typename(L, -1));
}

/*
 * The watchdog: the count hook never fires inside C (a backtracking string.find, a huge
 * string.rep), so each call from C also gets a CPU-time budget from setitimer. When it runs out
 * the process cannot safely unwind, so the handler writes one prepared TRACE error with write(2)
 * and ends the process. Messages before the last STATE are already out; anything after it is
 * not covered by a state, so the next sync reads it again. SIGTERM and SIGINT during a call cut
 * its budget to CANCEL_GRACE_SECONDS: the hook acts on them at once in Lua code, and a call stuck
 * in C ends with the prepared cancellation message instead of running out its budget.
 */
#define CANCEL_GRACE_SECONDS 1

/* A message laid out before the call, each emitted_at's value left out. */
struct prepared_message {
	char text[1024];
	size_t len;
	size_t stamp_at[2]; /* where the call's start time goes */
	int stamps;
};
static struct prepared_message watchdog_overrun, watchdog_cancel;
/* What the messages were laid out for: they are laid out again only when that changes.
 * Formatting them (and installing the handler) on every call cost 2-3 us a call, a fifth of a
 * sync's typical script call. */
static char watchdog_stream[200];
static int watchdog_has_stream;
static long long watchdog_seconds = -1;

/* When the current call began: the messages' emitted_at, as it was when they were formatted on
 * every call. */
static volatile long long watchdog_armed_ms;
/* Whether a call runs under the timer (for the cancellation signals' handler). */
static volatile sig_atomic_t watchdog_running;

/* Async-signal-safe: only write and _exit; no stdio, no clock (under the tests' libfaketime,
 * clock_gettime is not a plain system call). */
static void watchdog_fire(int sig)
{
	(void)sig;
	const struct prepared_message *m = host_cancelled ? &watchdog_cancel : &watchdog_overrun;
	long long stamp = watchdog_armed_ms;
	unsigned long long ms = stamp < 0 ? 0 - (unsigned long long)stamp : (unsigned long long)stamp;
	char digits[24];
	size_t first = sizeof digits;
	do
		digits[--first] = (char)('0' + ms % 10);
	while ((ms /= 10) > 0);
	if (stamp < 0)
		digits[--first] = '-';
	static char out[sizeof m->text + 2 * sizeof digits];
	size_t len = 0, from = 0;
	for (int i = 0; i <= m->stamps; i++) {
		size_t to = i < m->stamps ? m->stamp_at[i] : m->len;
		while (from < to)
			out[len++] = m->text[from++];
		for (size_t d = first; i < m->stamps && d < sizeof digits; d++)
			out[len++] = digits[d];
	}
	ssize_t ignored = write(STDOUT_FILENO, out, len);
	(void)ignored;
	_exit(1);
}

void host_on_cancel_signal(int sig)
{
	host_cancelled = sig == SIGINT ? 2 : 1;
	if (!watchdog_running)
		return;
	/* getitimer and setitimer are plain system calls on Linux (not on POSIX's list of
	 * async-signal-safe functions, which has no way to shorten a timer). */
	struct itimerval left;
	if (getitimer(ITIMER_VIRTUAL, &left) == 0 && left.it_value.tv_sec >= CANCEL_GRACE_SECONDS) {
		struct itimerval soon = {{0, 0}, {CANCEL_GRACE_SECONDS, 0}};
		setitimer(ITIMER_VIRTUAL, &soon, NULL);
	}
}

/* Whether text needs no escape inside a JSON string: no quote, backslash or control byte. */
static int spelt_as_is_in_json(const char *text)
{
	for (const unsigned char *p = (const unsigned char *)text; *p; p++)
		if (*p < 0x20 || *p == '"' || *p == '\\')
			return 0;
	return 1;
}

/* Appends text to the message; stamp: the call's start time goes after it. */
static void prepared_add(struct prepared_message *m, const char *text, int stamp)
{
	size_t len = strlen(text);
	if (len >= sizeof m->text - m->len)
		len = sizeof m->text - m->len - 1;
	memcpy(m->text + m->len, text, len);
	m->len += len;
	if (stamp)
		m->stamp_at[m->stamps++] = m->len;
}

/* The stream's INCOMPLETE status when there is a stream, then an error with this text. */
static void prepare(struct prepared_message *m, const char *stream, const char *error_fields)
{
	m->len = 0;
	m->stamps = 0;
	char text[512];
	if (stream) {
		prepared_add(m, "{\"type\":\"TRACE\",\"trace\":{\"type\":\"STREAM_STATUS\",\"emitted_at\":", 1);
		snprintf(text, sizeof text,
			 ",\"stream_status\":{\"stream_descriptor\":{\"name\":\"%s\"},\"status\":\"INCOMPLETE\"}}}\n",
			 stream);
		prepared_add(m, text, 0);
	}
	prepared_add(m, "{\"type\":\"TRACE\",\"trace\":{\"type\":\"ERROR\",\"emitted_at\":", 1);
	snprintf(text, sizeof text, ",\"error\":{%s}}}\n", error_fields);
	prepared_add(m, text, 0);
}

static void watchdog_lay_out(const char *stream, long long seconds)
{
	char error[256];
	snprintf(error, sizeof error,
		 "\"message\":\"the script used more than %lld s of CPU in one call (stuck inside a library "
		 "function?)\",\"failure_type\":\"system_error\"",
		 seconds);
	prepare(&watchdog_overrun, stream, error);
	/* SIGINT and SIGTERM are told apart by the hook's message; here one text serves both. */
	prepare(&watchdog_cancel, stream,
		"\"message\":\"the sync was cancelled (SIGTERM or SIGINT) while the script was inside a "
		"library function\",\"failure_type\":\"transient_error\"");
	watchdog_has_stream = stream != NULL;
	if (stream)
		strcpy(watchdog_stream, stream);
	watchdog_seconds = seconds;
}

static void watchdog_arm(const struct host_state *h)
{
	/* 5 million instructions a second is slow even for string-heavy Lua under sanitizers: this
	 * budget only catches C that never ends, and must not pre-empt the instruction limit. */
	long long seconds = h->limits.cpu_seconds_per_call > 0 ? h->limits.cpu_seconds_per_call
							       : h->limits.instructions_per_call / 5000000 + 2;
	/* A name that would need escaping is left out: the handler cannot escape. */
	const char *stream = h->rt->stream;
	if (stream && (strlen(stream) >= sizeof watchdog_stream || !spelt_as_is_in_json(stream)))
		stream = NULL;
	if (seconds != watchdog_seconds || (stream != NULL) != watchdog_has_stream ||
	    (stream && strcmp(stream, watchdog_stream)))
		watchdog_lay_out(stream, seconds);
	static int installed;
	if (!installed) {
		struct sigaction sa;
		memset(&sa, 0, sizeof sa);
		sa.sa_handler = watchdog_fire;
		sigaction(SIGVTALRM, &sa, NULL);
		installed = 1;
	}
	watchdog_armed_ms = date_now_ms();
	/* A signal that came before the call: the hook stops it at its first instructions, or the
	 * grace ends it if it goes straight into C. */
	long long budget = host_cancelled && seconds > CANCEL_GRACE_SECONDS ? CANCEL_GRACE_SECONDS : seconds;
	struct itimerval timer = {{0, 0}, {(time_t)budget, 0}};
	setitimer(ITIMER_VIRTUAL, &timer, NULL);
	watchdog_running = 1;
}

static void watchdog_disarm(void)
{
	watchdog_running = 0;
	struct itimerval off = {{0, 0}, {0, 0}};
	setitimer(ITIMER_VIRTUAL, &off, NULL);
}

/* Message handler: turns any error value into {message, failure_type?, stack}. */
static int host_traceback(lua_State *L)
{
	const char *failure = NULL;
	const char *message;
	if (lua_istable(L, 1)) {
		lua_getfield(L, 1, "failure_type");
		failure = lua_tostring(L, -1);
		lua_getfield(L, 1, "message");
		message = lua_tostring(L, -1);
		if (!message)
			message = "the script raised an error table without a message";
	} else {
		message = luaL_tolstring(L, 1, NULL);
	}
	lua_createtable(L, 0, 3);
	lua_pushstring(L, message);
	lua_setfield(L, -2, "message");
	if (failure) {
		lua_pushstring(L, failure);
		lua_setfield(L, -2, "failure_type");
	}
	luaL_traceback(L, L, NULL, 1);
	lua_setfield(L, -2, "stack");
	return 1;
}

int host_call(lua_State *L, int nargs, int nresults)
{
	struct host_state *h = host_of(L);
	h->instructions_left = h->limits.instructions_per_call;
	h->out_of_memory = 0;
	lua_sethook(L, host_hook, LUA_MASKCOUNT, HOOK_EVERY);
	int base = lua_gettop(L) - nargs;
	lua_pushcfunction(L, host_traceback);
	lua_insert(L, base);
	watchdog_arm(h);
	int status = lua_pcall(L, nargs, nresults, base);
	watchdog_disarm();
	lua_remove(L, base);
	h->out_of_memory = 0;
	if (status == LUA_ERRMEM) {
		h->memory_reserve = HOST_ERROR_RESERVE;
		lua_pop(L, 1);
		lua_gc(L, LUA_GCCOLLECT);
		lua_createtable(L, 0, 1);
		lua_pushfstring(L, "the script ran out of memory (limit %d MB)", (int)(h->limits.memory_bytes >> 20));
		lua_setfield(L, -2, "message");
		h->memory_reserve = 0;
	} else if (status != LUA_OK && !lua_istable(L, -1)) {
		const char *text = lua_tostring(L, -1);
		lua_createtable(L, 0, 1);
		lua_pushstring(L, text ? text : "error in the error handler");
		lua_setfield(L, -2, "message");
		lua_remove(L, -2);
	}
	return status;
}

size_t host_memory_limit(lua_State *L)
{
	return host_of(L)->limits.memory_bytes;
}

void host_error_read(lua_State *L, int idx, struct host_error *err)
{
	idx = lua_absindex(L, idx);
	lua_getfield(L, idx, "message");
	err->message = lua_tostring(L, -1);
	lua_getfield(L, idx, "stack");
	err->stack = lua_tostring(L, -1);
	lua_getfield(L, idx, "failure_type");
	err->failure = PROTO_SYSTEM_ERROR;
	if (lua_isstring(L, -1))
		proto_failure_from_name(lua_tostring(L, -1), &err->failure);
	/* The strings stay alive: they are fields of the error table, which stays on the stack. */
	lua_pop(L, 3);
	if (!err->message)
		err->message = "unknown error";
}
