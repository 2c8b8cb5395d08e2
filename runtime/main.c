/*
 * main: the command line, the four Airbyte commands and exit codes; nothing else.
 * Everything that touches Lua runs inside one protected call (as lua.c's pmain), so a Lua error
 * anywhere ends in one TRACE message and a non-zero exit, never in a panic.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <lauxlib.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "config.h"
#include "curl_lazy.h"
#include "date.h"
#include "devtools.h"
#include "heap.h"
#include "host.h"
#include "http.h"
#include "input.h"
#include "pool.h"
#include "proto.h"
#include "runtime.h"
#include "read.h"
#include "stream.h"

#define EXIT_USAGE 2
#define DEFAULT_SCRIPT_NAME "stock_prices.lua"
#define IMAGE_SCRIPT "/airbyte/scripts/" DEFAULT_SCRIPT_NAME

struct options {
	const char *command;
	const char *script;
	const char *config;
	const char *catalog;
	const char *state;
	int debug;
	const char *record_dir, *replay_dir;
	struct dev_options dev;
};

static const char usage_text[] =
	"usage: source-lua [--script FILE] spec\n"
	"       source-lua [--script FILE] check    --config FILE\n"
	"       source-lua [--script FILE] discover --config FILE\n"
	"       source-lua [--script FILE] read     --config FILE --catalog FILE [--state FILE]\n"
	"\n"
	"For writing a stream:\n"
	"       source-lua [--script FILE] test-read --config FILE [--stream NAME] [--state FILE]\n"
	"                  [--max-records N] [--max-pages N] [--max-partitions N] [--json]\n"
	"                  [--infer-schema] [--verbose]\n"
	"       source-lua [--script FILE] catalog --config FILE [--streams A,B]\n"
	"                  [--mode full_refresh|incremental]\n"
	"--debug (any command): each request and answer as a DEBUG log message.\n"
	"--record DIR (any command): the HTTP exchanges written to DIR, secrets removed;\n"
	"--replay DIR: answered from DIR, without the network.\n"
	"\n"
	"The script is --script, else $SOURCE_LUA_SCRIPT, else scripts/" DEFAULT_SCRIPT_NAME "\n"
	"beside the installed runtime (../scripts), else " IMAGE_SCRIPT ".\n"
	"Messages go to stdout, one JSON object per line (the Airbyte protocol).\n";

static int usage_error(const char *fmt, const char *arg)
{
	fprintf(stderr, "source-lua: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\n\n%s", usage_text);
	return EXIT_USAGE;
}

static const char **flag_slot(struct options *o, const char *name)
{
	if (!strcmp(name, "--record"))
		return &o->record_dir;
	if (!strcmp(name, "--replay"))
		return &o->replay_dir;
	if (!strcmp(name, "--stream"))
		return &o->dev.stream;
	if (!strcmp(name, "--streams"))
		return &o->dev.streams;
	if (!strcmp(name, "--mode"))
		return &o->dev.mode;
	if (!strcmp(name, "--script"))
		return &o->script;
	if (!strcmp(name, "--config"))
		return &o->config;
	if (!strcmp(name, "--catalog"))
		return &o->catalog;
	if (!strcmp(name, "--state"))
		return &o->state;
	return NULL;
}

/* test-read's switches and limits; 1 when arg is one of them (*i moved past its value), -1 on a
 * bad value, 0 when it is not. */
static int dev_flag(struct options *o, int argc, char **argv, int *i)
{
	const char *arg = argv[*i];
	int *flags[] = {&o->dev.json, &o->dev.infer_schema, &o->dev.verbose};
	static const char *const names[] = {"--json", "--infer-schema", "--verbose"};
	for (int k = 0; k < 3; k++)
		if (!strcmp(arg, names[k]))
			return *flags[k] = 1;
	int64_t *limits[] = {&o->dev.max_records, &o->dev.max_pages, &o->dev.max_partitions};
	static const char *const limit_names[] = {"--max-records", "--max-pages", "--max-partitions"};
	for (int k = 0; k < 3; k++) {
		size_t len = strlen(limit_names[k]);
		if (strncmp(arg, limit_names[k], len) || (arg[len] && arg[len] != '='))
			continue;
		const char *value = arg[len] == '=' ? arg + len + 1 : (*i + 1 < argc ? argv[++*i] : "");
		char *end;
		errno = 0;
		long long n = strtoll(value, &end, 10);
		if (errno || end == value || *end || n < 1)
			return -1;
		*limits[k] = n;
		return 1;
	}
	return 0;
}

/* Returns 0, -1 after --help, or the exit status of a usage error. */
static int parse_args(int argc, char **argv, struct options *o)
{
	for (int i = 1; i < argc; i++) {
		char *arg = argv[i];
		if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
			fputs(usage_text, stdout);
			return -1;
		}
		if (!strcmp(arg, "--debug")) {
			o->debug = 1;
			continue;
		}
		int dev = dev_flag(o, argc, argv, &i);
		if (dev < 0)
			return usage_error("%s needs a whole number, 1 or more", arg);
		if (dev)
			continue;
		if (arg[0] != '-') {
			if (o->command)
				return usage_error("unexpected argument '%s'", arg);
			o->command = arg;
			continue;
		}
		char *eq = strchr(arg, '=');
		if (eq)
			*eq = '\0';
		const char **slot = flag_slot(o, arg);
		if (!slot)
			return usage_error("unknown option '%s'", arg);
		const char *value = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
		if (!value || !*value)
			return usage_error("%s needs a file name", arg);
		*slot = value;
	}
	if (!o->command)
		return usage_error("%s", "no command given");
	int needs_config = strcmp(o->command, "spec") != 0;
	static const char *const commands[] = {"spec", "check", "discover", "read", "test-read", "catalog", NULL};
	int known = 0;
	for (const char *const *c = commands; *c && !known; c++)
		known = !strcmp(o->command, *c);
	if (!known)
		return usage_error("unknown command '%s'", o->command);
	if (o->record_dir && o->replay_dir)
		return usage_error("%s", "--record and --replay go one at a time");
	if (needs_config && !o->config)
		return usage_error("%s needs --config FILE", o->command);
	if (!strcmp(o->command, "read") && !o->catalog)
		return usage_error("%s needs --catalog FILE", "read");
	return 0;
}

static int file_exists(const char *path)
{
	return access(path, R_OK) == 0;
}

/* --script, then $SOURCE_LUA_SCRIPT, then scripts/ beside the binary's folder (build/ and
 * build/sanitize/ in a checkout, /airbyte in the image), then the image's path. */
static const char *find_script(const struct options *o, char *buffer, size_t len)
{
	if (o->script)
		return o->script;
	const char *env = getenv("SOURCE_LUA_SCRIPT");
	if (env && *env)
		return env;
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	if (n > 0) {
		exe[n] = '\0';
		const char *dir = dirname(exe);
		static const char *const ups[] = {"..", "../..", NULL};
		for (const char *const *up = ups; *up; up++) {
			snprintf(buffer, len, "%s/%s/scripts/%s", dir, *up, DEFAULT_SCRIPT_NAME);
			if (file_exists(buffer))
				return buffer;
		}
	}
	return IMAGE_SCRIPT;
}

struct run {
	struct runtime *rt;
	const struct options *opts;
	const char *script_path;
	int exit_code;
};

static void push_spec(lua_State *L, int script)
{
	lua_getfield(L, script, "spec");
}

static void command_spec(struct runtime *rt, int script)
{
	lua_State *L = rt->L;
	push_spec(L, script);
	char err[256];
	if (proto_message(&rt->out, L, "SPEC", "spec", -1, err, sizeof err))
		input_raise(L, PROTO_SYSTEM_ERROR, "the spec cannot be written as JSON: %s", err);
}

static void command_check(struct runtime *rt, int script, const struct script_def *def, struct run *r)
{
	lua_State *L = rt->L;
	if (config_load(rt, script, r->opts->config)) {
		proto_connection_status(&rt->out, 0, lua_tostring(L, -1));
		return;
	}
	int config = lua_gettop(L);
	char err[1024];
	if (auth_configure(rt, script, config, err, sizeof err)) {
		proto_connection_status(&rt->out, 0, err);
		return;
	}
	if (!def->has_check)
		input_raise(L, PROTO_SYSTEM_ERROR, "the script has no check(config) function");
	lua_getfield(L, script, "check");
	lua_pushvalue(L, config);
	if (host_call(L, 1, 2) != LUA_OK) {
		lua_getfield(L, -1, "message");
		proto_connection_status(&rt->out, 0, lua_tostring(L, -1));
		return;
	}
	proto_connection_status(&rt->out, lua_toboolean(L, -2), lua_isstring(L, -1) ? lua_tostring(L, -1) : NULL);
}

static void command_discover(struct runtime *rt, int script, const struct script_def *def, int def_idx, struct run *r)
{
	lua_State *L = rt->L;
	if (config_load(rt, script, r->opts->config))
		input_raise(L, PROTO_CONFIG_ERROR, "%s", lua_tostring(L, -1));
	lua_createtable(L, 0, 1);
	lua_createtable(L, (int)def->count, 0);
	for (size_t i = 0; i < def->count; i++) {
		stream_push_catalog_entry(L, def_idx, &def->streams[i]);
		lua_rawseti(L, -2, (lua_Integer)i + 1);
	}
	lua_setfield(L, -2, "streams");
	char err[256];
	if (proto_message(&rt->out, L, "CATALOG", "catalog", -1, err, sizeof err))
		input_raise(L, PROTO_SYSTEM_ERROR, "the catalog cannot be written as JSON: %s", err);
}

static void command_read(struct runtime *rt, int script, const struct script_def *def, int def_idx, struct run *r)
{
	lua_State *L = rt->L;
	if (config_load(rt, script, r->opts->config))
		input_raise(L, PROTO_CONFIG_ERROR, "%s", lua_tostring(L, -1));
	int config = lua_gettop(L);
	char err[1024];
	if (auth_configure(rt, script, config, err, sizeof err))
		input_raise(L, PROTO_CONFIG_ERROR, "%s", err);
	input_read_json(L, r->opts->catalog, "catalog");
	int catalog = lua_gettop(L);
	input_check_catalog(L, catalog);
	input_read_state(L, r->opts->state);
	int states = lua_gettop(L);
	if (read_catalog(rt, def, def_idx, config, catalog, states))
		r->exit_code = 1;
}

/* --record or --replay: a replay also reads the recorded run's clock again, so that the windows
 * and URLs it makes are the recorded ones. */
static void open_cassette(struct runtime *rt, const struct options *o)
{
	const char *dir = o->record_dir ? o->record_dir : o->replay_dir;
	if (!dir)
		return;
	char err[600];
	if (cassette_open(&rt->cassette, dir, o->replay_dir != NULL, &rt->secrets, rt->L, rt->started_ms, err,
			  sizeof err))
		input_raise(rt->L, PROTO_CONFIG_ERROR, "%s", err);
	if (o->replay_dir && rt->cassette.started_ms)
		rt->started_ms = rt->cassette.started_ms;
	rt->http.cassette = &rt->cassette;
}

static int pmain(lua_State *L)
{
	struct run *r = lua_touserdata(L, 1);
	host_load_script(L, r->script_path);
	int script = lua_gettop(L);
	const struct script_def *def = stream_load_script(r->rt, script);
	int def_idx = lua_gettop(L);
	open_cassette(r->rt, r->opts);
	const char *command = r->opts->command;
	if (!strcmp(command, "spec"))
		command_spec(r->rt, script);
	else if (!strcmp(command, "check"))
		command_check(r->rt, script, def, r);
	else if (!strcmp(command, "discover"))
		command_discover(r->rt, script, def, def_idx, r);
	else if (!strcmp(command, "test-read"))
		r->exit_code =
			command_test_read(r->rt, script, def, def_idx, r->opts->config, r->opts->state, &r->opts->dev);
	else if (!strcmp(command, "catalog"))
		command_catalog(r->rt, script, def, def_idx, r->opts->config, &r->opts->dev);
	else
		command_read(r->rt, script, def, def_idx, r);
	return 0;
}

/* Reports what pmain raised: tables from input_raise carry a failure_type, anything else is ours. */
static void report_pmain_error(struct runtime *rt, lua_State *L)
{
	enum proto_failure type = PROTO_SYSTEM_ERROR;
	const char *message = NULL;
	if (lua_istable(L, -1)) {
		lua_getfield(L, -1, "failure_type");
		if (lua_isstring(L, -1))
			proto_failure_from_name(lua_tostring(L, -1), &type);
		lua_getfield(L, -2, "message");
		message = lua_tostring(L, -1);
	} else {
		message = lua_tostring(L, -1);
	}
	proto_trace_error(&rt->out, type, message ? message : "unknown error", NULL, NULL);
}

static void install_signals(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = host_on_cancel_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
}

static long long env_number(const char *name, long long fallback)
{
	const char *v = getenv(name);
	if (!v || !*v)
		return fallback;
	char *end;
	errno = 0;
	long long n = strtoll(v, &end, 10);
	return (errno || *end || n <= 0) ? fallback : n;
}

static int run_protected(struct run *r)
{
	struct runtime *rt = r->rt;
	rt->limits.memory_bytes = (size_t)env_number("SOURCE_LUA_MEMORY_MB", 256) << 20;
	rt->limits.instructions_per_call = env_number("SOURCE_LUA_MAX_INSTRUCTIONS", 2000000000LL);
	rt->limits.cpu_seconds_per_call = env_number("SOURCE_LUA_CPU_SECONDS", 0);
	lua_State *L = rt->L = host_open(rt);
	if (!L) {
		proto_trace_error(&rt->out, PROTO_SYSTEM_ERROR, "cannot create the Lua state (out of memory)", NULL,
				  NULL);
		return 1;
	}
	lua_pushcfunction(L, pmain);
	lua_pushlightuserdata(L, r);
	if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
		report_pmain_error(rt, L);
		r->exit_code = 1;
	}
	return r->exit_code;
}

int main(int argc, char **argv)
{
	struct options opts = {0};
	int rc = parse_args(argc, argv, &opts);
	if (rc)
		return rc < 0 ? 0 : rc;
	install_signals();
	if (!strcmp(opts.command, "read") || !strcmp(opts.command, "test-read")) {
		heap_prepare_for_sync(); /* before the loader's thread, which shares the heap */
		curl_lazy_preload();
	} else {
		heap_keep_freed_memory();
	}
	srand48((long)date_now_ms() ^ (long)getpid());
	struct runtime rt;
	runtime_init(&rt);
	rt.debug = opts.debug;
	rt.started_ms = date_now_ms();
	char script_buffer[PATH_MAX + 64];
	struct run r = {&rt, &opts, find_script(&opts, script_buffer, sizeof script_buffer), 0};
	rc = run_protected(&r);
	if (rt.cassette.recording && rt.cassette.error[0]) {
		proto_trace_error(&rt.out, PROTO_SYSTEM_ERROR, rt.cassette.error, NULL, NULL);
		rc = 1;
	}
	pool_stop(&rt.pool); /* when a Lua error cut the sync short before it stopped the workers */
	curl_lazy_wait();
	if (proto_flush(&rt.out) || proto_stdout_failed(&rt.out)) {
		/* No message can say it on stdout: stderr is the one place left. */
		fprintf(stderr, "source-lua: writing to stdout failed (%s): the messages from then on were lost\n",
			strerror(rt.out.error));
		rc = rc ? rc : 1;
	}
	runtime_free(&rt);
	curl_lazy_cleanup();
	return rc;
}
