/*
 * config: reading the config a command is given: its secrets registered before anything can
 * print them, validated against the spec, and the runtime's own settings taken from it.
 */
#include "config.h"

#include <lauxlib.h>
#include <string.h>

#include "input.h"
#include "json.h"
#include "runtime.h"
#include "secrets.h"
#include "validate.h"

static void push_spec(lua_State *L, int script)
{
	lua_getfield(L, script, "spec");
}

static void register_secret(void *secrets, const char *value)
{
	secrets_add(secrets, value);
}

/* Pushes a bound as the shortest text that reads as it (0.001, 64, 86400). [-0, +1, m] */
static const char *number_text(lua_State *L, double d)
{
	char text[JSON_NUMBER_MAX + 1];
	text[json_double_text(d, text)] = '\0';
	return lua_pushstring(L, text);
}

/* Runtime knobs a user may set in the config (the script's spec may document them). A value the
 * runtime cannot use is a config error, never silently the default. */
static const struct runtime_setting {
	const char *name;
	double minimum, maximum; /* past these a value is a mistake, or would overflow the
				  * milliseconds it becomes (1e17 s of timeout disabled it) */
	int zero_is_off;         /* 0 is also accepted: the setting is off */
} runtime_settings[] = {
	/* At least one request a day: fewer made the interval overflow its milliseconds. */
	{"requests_per_minute", 1.0 / 1440, 1e6, 1},  {"concurrency", 1, 64, 0},
	{"request_timeout_seconds", 0.001, 86400, 0}, {"retry_max_seconds", 0, 7 * 86400, 0},
	{"rate_limit_wait_seconds", 0, 86400, 0},
};

/* Checks the runtime settings; on a bad one pushes the message and returns -1. */
static int check_runtime_settings(lua_State *L, int config)
{
	for (size_t i = 0; i < sizeof runtime_settings / sizeof runtime_settings[0]; i++) {
		const struct runtime_setting *r = &runtime_settings[i];
		int type = lua_getfield(L, config, r->name);
		double value = lua_tonumber(L, -1);
		int in_range = (value >= r->minimum && value <= r->maximum) || (r->zero_is_off && value == 0);
		int bad = type != LUA_TNIL && (type != LUA_TNUMBER || !in_range);
		lua_pop(L, 1);
		if (bad) {
			lua_pushfstring(L, "config field '%s' must be %sa number from %s to %s", r->name,
					r->zero_is_off ? "0 (off) or " : "", number_text(L, r->minimum),
					number_text(L, r->maximum));
			lua_remove(L, -2);
			lua_remove(L, -2);
			return -1;
		}
	}
	return 0;
}

static double number_field(lua_State *L, int table, const char *name, double fallback)
{
	lua_getfield(L, table, name);
	double value = lua_type(L, -1) == LUA_TNUMBER ? lua_tonumber(L, -1) : fallback;
	lua_pop(L, 1);
	return value;
}

static void apply_runtime_settings(struct http_settings *http_settings, lua_State *L, int config)
{
	http_settings->requests_per_minute = number_field(L, config, "requests_per_minute", 0);
	double concurrency = number_field(L, config, "concurrency", 0);
	if (concurrency >= 1)
		http_settings->concurrency = (int)concurrency; /* check_runtime_settings refused more than 64 */
	double timeout = number_field(L, config, "request_timeout_seconds", 0);
	if (timeout > 0)
		http_settings->timeout_ms = (long)(timeout * 1000);
	double budget = number_field(L, config, "retry_max_seconds", -1);
	if (budget >= 0)
		http_settings->retry_budget_ms = (int64_t)(budget * 1000);
	double wait = number_field(L, config, "rate_limit_wait_seconds", -1);
	if (wait >= 0)
		http_settings->rate_limit_wait_ms = (int64_t)(wait * 1000);
}

int config_load(struct runtime *rt, int script, const char *path)
{
	lua_State *L = rt->L;
	input_read_json(L, path, "config");
	int config = lua_gettop(L);
	if (!lua_istable(L, config) || lua_rawlen(L, config) > 0)
		input_raise(L, PROTO_CONFIG_ERROR, "the config file '%s' must hold a JSON object", path);
	push_spec(L, script);
	lua_getfield(L, -1, "connectionSpecification");
	validate_each_secret(L, -1, config, register_secret, &rt->secrets);
	char err[1024];
	int rc = validate_config(L, -1, config, err, sizeof err);
	lua_settop(L, config);
	if (rc) {
		lua_pushstring(L, err);
		return -1;
	}
	if (check_runtime_settings(L, config))
		return -1;
	apply_runtime_settings(&rt->http_settings, L, config);
	return 0;
}
