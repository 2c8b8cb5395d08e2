/*
 * date_module: the Lua `date` module: days as "YYYY-MM-DD" strings, instants as epoch seconds,
 * any IANA zone by name (looked up in the run's tz database), on date.c's calendar math.
 */
#define _GNU_SOURCE /* struct tm's tm_gmtoff and tm_zone */
#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "date.h"
#include "runtime.h"
#include "tz.h"

static int civil_from_epoch(int64_t epoch, struct tm *tm)
{
	time_t t = (time_t)epoch;
	return gmtime_r(&t, tm) ? 0 : -1;
}

static const struct tz_zone *check_zone(lua_State *L, int arg)
{
	const char *name = luaL_optstring(L, arg, "UTC");
	if (!strcmp(name, "UTC"))
		return NULL;
	char err[300];
	const struct tz_zone *zone = tz_find(runtime_of(L)->zones, name, err, sizeof err);
	if (!zone)
		luaL_argerror(L, arg, lua_pushstring(L, err));
	return zone;
}

static int64_t check_day(lua_State *L, int arg)
{
	int64_t days;
	const char *s = luaL_checkstring(L, arg);
	if (date_parse_day(s, &days))
		luaL_argerror(L, arg, lua_pushfstring(L, "'%s' is not a YYYY-MM-DD date", s));
	return days;
}

static int push_day(lua_State *L, int64_t days)
{
	char text[DATE_DAY_LEN];
	date_format_day(days, text);
	lua_pushstring(L, text);
	return 1;
}

/* date.today([tz]) -> "YYYY-MM-DD", today in tz (default UTC) */
static int date_lua_today(lua_State *L)
{
	const struct tz_zone *zone = check_zone(L, 1);
	return push_day(L, date_day_in_zone(date_now_ms() / 1000, zone));
}

/* date.now() -> epoch seconds (integer) */
static int date_lua_now(lua_State *L)
{
	lua_pushinteger(L, date_now_ms() / 1000);
	return 1;
}

/* date.now_ms() -> epoch milliseconds (integer) */
static int date_lua_now_ms(lua_State *L)
{
	lua_pushinteger(L, date_now_ms());
	return 1;
}

/* date.parse(text [, tz]) -> epoch seconds | nil, errmsg */
static int date_lua_parse(lua_State *L)
{
	const struct tz_zone *zone = check_zone(L, 2);
	int64_t epoch;
	if (lua_type(L, 1) != LUA_TSTRING) {
		lua_pushnil(L);
		lua_pushfstring(L, "a %s is not a date (YYYY-MM-DD or RFC 3339)", luaL_typename(L, 1));
		return 2;
	}
	if (date_parse(lua_tostring(L, 1), zone, &epoch)) {
		lua_pushnil(L);
		lua_pushfstring(L, "'%s' is not a date (YYYY-MM-DD or RFC 3339)", lua_tostring(L, 1));
		return 2;
	}
	lua_pushinteger(L, epoch);
	return 1;
}

/* date.format(epoch_seconds [, fmt [, tz]]) -> text (strftime format, default "%Y-%m-%d") */
static int date_lua_format(lua_State *L)
{
	int64_t epoch = (int64_t)luaL_checkinteger(L, 1);
	const char *fmt = luaL_optstring(L, 2, "%Y-%m-%d");
	const struct tz_zone *zone = check_zone(L, 3);
	struct tm tm;
	/* The text is local time: that is what must fall in the years 1000 to 9999 (a day either side
	 * first, so that adding the offset cannot overflow). */
	int64_t first = DATE_MIN_DAY * DATE_SECONDS_PER_DAY, end = (DATE_MAX_DAY + 1) * DATE_SECONDS_PER_DAY;
	if (epoch < first - DATE_SECONDS_PER_DAY || epoch >= end + DATE_SECONDS_PER_DAY)
		return luaL_argerror(L, 1, "not an instant in the years 1000 to 9999");
	int32_t offset = date_zone_offset(zone, epoch);
	int64_t local = epoch + offset;
	if (local < first || local >= end || civil_from_epoch(local, &tm))
		return luaL_argerror(L, 1, "not an instant in the years 1000 to 9999");
	/* For %Z and %z: glibc's strftime reads them from these members. */
	tm.tm_gmtoff = offset;
	tm.tm_zone = zone ? tz_abbreviation(zone, epoch) : "UTC";
	char text[128];
	size_t n = strftime(text, sizeof text, fmt, &tm);
	if (n == 0 && fmt[0] != '\0')
		return luaL_argerror(L, 2, "format gives an empty or too long text");
	lua_pushlstring(L, text, n);
	return 1;
}

/* date.from_ms(epoch_ms [, tz]) -> "YYYY-MM-DD", the day of that instant in tz */
static int date_lua_from_ms(lua_State *L)
{
	lua_Number ms = luaL_checknumber(L, 1);
	const struct tz_zone *zone = check_zone(L, 2);
	/* A day past either end, so that any zone's offset still lands outside the range below; the
	 * bound also keeps the conversion to an integer defined (NaN fails it too). */
	const lua_Number bound_ms = 1000.0 * DATE_SECONDS_PER_DAY;
	if (!(ms >= (DATE_MIN_DAY - 1) * bound_ms && ms < (DATE_MAX_DAY + 2) * bound_ms))
		return luaL_argerror(L, 1, "not an instant in the years 1000 to 9999");
	int64_t seconds = (int64_t)floor(ms / 1000.0);
	int64_t day = date_day_in_zone(seconds, zone);
	if (day < DATE_MIN_DAY || day > DATE_MAX_DAY)
		return luaL_argerror(L, 1, "not an instant in the years 1000 to 9999");
	return push_day(L, day);
}

/* date.add_days("YYYY-MM-DD", n) -> "YYYY-MM-DD" */
static int date_lua_add_days(lua_State *L)
{
	int64_t days = check_day(L, 1);
	lua_Integer n = luaL_checkinteger(L, 2);
	int64_t sum;
	if (n > DATE_MAX_DAY - DATE_MIN_DAY || n < DATE_MIN_DAY - DATE_MAX_DAY ||
	    (sum = days + (int64_t)n) < DATE_MIN_DAY || sum > DATE_MAX_DAY)
		return luaL_argerror(L, 2, "the day would fall outside the years 1000 to 9999");
	return push_day(L, sum);
}

/* date.diff_days(a, b) -> days from a to b (b - a) */
static int date_lua_diff_days(lua_State *L)
{
	int64_t a = check_day(L, 1);
	lua_pushinteger(L, check_day(L, 2) - a);
	return 1;
}

/* date.is_day(text) -> true when text is a real YYYY-MM-DD day */
static int date_lua_is_day(lua_State *L)
{
	int64_t days;
	lua_pushboolean(L, lua_type(L, 1) == LUA_TSTRING && date_parse_day(lua_tostring(L, 1), &days) == 0);
	return 1;
}

/* date.weekday("YYYY-MM-DD") -> 1 (Monday) .. 7 (Sunday) */
static int date_lua_weekday(lua_State *L)
{
	lua_pushinteger(L, date_weekday(check_day(L, 1)));
	return 1;
}

int date_open(lua_State *L)
{
	static const luaL_Reg functions[] = {
		{"today", date_lua_today},
		{"now", date_lua_now},
		{"now_ms", date_lua_now_ms},
		{"parse", date_lua_parse},
		{"format", date_lua_format},
		{"from_ms", date_lua_from_ms},
		{"add_days", date_lua_add_days},
		{"diff_days", date_lua_diff_days},
		{"is_day", date_lua_is_day},
		{"weekday", date_lua_weekday},
		{NULL, NULL},
	};
	luaL_newlib(L, functions);
	return 1;
}
