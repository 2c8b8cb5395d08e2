/*
 * date: calendar math for cursors and windows, and the Lua `date` module.
 *
 * Days are int64 counts since 1970-01-01 and instants int64 epoch seconds, so window arithmetic
 * is plain addition and never touches the host's time zone. Day <-> civil date conversions are
 * Howard Hinnant's integer algorithms rather than timegm/gmtime_r: every record's day passes
 * through them twice, and glibc's versions take a lock and consult the zone machinery each time.
 * strftime still formats date.format's output. Zones come from the tz database through tz.c
 * (any IANA name, historical rules included); a NULL zone is UTC, which needs no lookup. Switching
 * TZ with setenv would be process-global and not thread-safe, and pages are mapped on workers.
 */
#define _GNU_SOURCE
#include "date.h"

#include <ctype.h>
#include <lauxlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "runtime.h"
#include "tz.h"

struct civil {
	int year, month, day;
};

/* Howard Hinnant's civil_from_days: proleptic Gregorian, any int64 day. */
static struct civil civil_from_days(int64_t days)
{
	int64_t z = days + 719468;
	int64_t era = date_floor_div(z, 146097);
	int64_t doe = z - era * 146097;
	int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	int64_t mp = (5 * doy + 2) / 153;
	struct civil c;
	c.day = (int)(doy - (153 * mp + 2) / 5 + 1);
	c.month = (int)(mp < 10 ? mp + 3 : mp - 9);
	c.year = (int)(yoe + era * 400 + (c.month <= 2));
	return c;
}

/* Howard Hinnant's days_from_civil. */
static int64_t days_from_civil(int year, int month, int day)
{
	int64_t y = (int64_t)year - (month <= 2);
	int64_t era = date_floor_div(y, 400);
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static int civil_from_epoch(int64_t epoch, struct tm *tm)
{
	time_t t = (time_t)epoch;
	return gmtime_r(&t, tm) ? 0 : -1;
}

static int weekday_of(int64_t days)
{
	/* 1970-01-01 was a Thursday; 0 = Sunday as in struct tm. */
	return (int)(((days % 7) + 7 + 4) % 7);
}

int64_t date_days_from_civil(int year, int month, int day)
{
	return days_from_civil(year, month, day);
}

void date_civil_from_days(int64_t days, int *year, int *month, int *day)
{
	struct civil c = civil_from_days(days);
	*year = c.year;
	*month = c.month;
	*day = c.day;
}

int32_t date_zone_offset(const struct tz_zone *zone, int64_t epoch)
{
	return zone ? tz_offset(zone, epoch, NULL, NULL) : 0;
}

int32_t date_zone_offset_span(const struct tz_zone *zone, int64_t epoch, int64_t *from, int64_t *until)
{
	if (!zone) {
		*from = INT64_MIN;
		*until = INT64_MAX;
		return 0;
	}
	return tz_offset(zone, epoch, from, until);
}

int64_t date_day_in_zone(int64_t epoch, const struct tz_zone *zone)
{
	return date_floor_div(epoch + date_zone_offset(zone, epoch), DATE_SECONDS_PER_DAY);
}

int date_seconds_into_day(int64_t epoch, const struct tz_zone *zone)
{
	int64_t local = epoch + date_zone_offset(zone, epoch);
	return (int)(local - date_floor_div(local, DATE_SECONDS_PER_DAY) * DATE_SECONDS_PER_DAY);
}

int64_t date_local_to_epoch(int64_t local, const struct tz_zone *zone)
{
	return zone ? tz_local_to_utc(zone, local) : local;
}

static int read_digits(const char *s, int count, int *value)
{
	*value = 0;
	for (int i = 0; i < count; i++) {
		if (!isdigit((unsigned char)s[i]))
			return -1;
		*value = *value * 10 + (s[i] - '0');
	}
	return 0;
}

static int valid_civil(int year, int month, int day)
{
	if (year < 1000 || month < 1 || month > 12 || day < 1)
		return 0;
	struct civil c = civil_from_days(days_from_civil(year, month, day));
	return c.day == day && c.month == month;
}

/* Reads YYYY-MM-DD at the start of s. */
static int parse_day_prefix(const char *s, int64_t *days)
{
	int year, month, day;
	if (read_digits(s, 4, &year) || s[4] != '-' || read_digits(s + 5, 2, &month) || s[7] != '-' ||
	    read_digits(s + 8, 2, &day))
		return -1;
	if (!valid_civil(year, month, day))
		return -1;
	*days = days_from_civil(year, month, day);
	return 0;
}

int date_parse_day(const char *s, int64_t *days)
{
	if (strlen(s) != 10)
		return -1;
	return parse_day_prefix(s, days);
}

void date_month_span(int64_t days, int64_t *first, int64_t *last)
{
	struct civil c = civil_from_days(days);
	*first = days - (c.day - 1);
	*last = (c.month == 12 ? days_from_civil(c.year + 1, 1, 1) : days_from_civil(c.year, c.month + 1, 1)) - 1;
}

void date_format_day(int64_t days, char out[DATE_DAY_LEN])
{
	struct civil c = civil_from_days(days);
	if (c.year < 0 || c.year > 9999) {
		snprintf(out, DATE_DAY_LEN, "%s", "0000-00-00");
		return;
	}
	int y = c.year;
	out[0] = (char)('0' + y / 1000);
	out[1] = (char)('0' + y / 100 % 10);
	out[2] = (char)('0' + y / 10 % 10);
	out[3] = (char)('0' + y % 10);
	out[4] = '-';
	out[5] = (char)('0' + c.month / 10);
	out[6] = (char)('0' + c.month % 10);
	out[7] = '-';
	out[8] = (char)('0' + c.day / 10);
	out[9] = (char)('0' + c.day % 10);
	out[10] = '\0';
}

/* Reads HH:MM[:SS[.fraction]] at s; the fraction is kept to microseconds. */
static int parse_clock(const char *s, const char *end, int64_t *us, const char **rest)
{
	int hour, minute, second = 0;
	if (end - s < 5 || read_digits(s, 2, &hour) || s[2] != ':' || read_digits(s + 3, 2, &minute))
		return -1;
	s += 5;
	int64_t micros = 0;
	if (s < end && *s == ':') {
		if (end - s < 3 || read_digits(s + 1, 2, &second))
			return -1;
		s += 3;
		if (s < end && (*s == '.' || *s == ',')) {
			s++;
			if (s >= end || !isdigit((unsigned char)*s))
				return -1;
			int digits = 0;
			for (; s < end && isdigit((unsigned char)*s); s++, digits++)
				if (digits < 6)
					micros = micros * 10 + (*s - '0');
			for (; digits < 6; digits++)
				micros *= 10;
		}
	}
	/* 60: a leap second, read as the next one (POSIX time has none). */
	if (hour > 23 || minute > 59 || second > 60)
		return -1;
	*us = ((int64_t)hour * 3600 + minute * 60 + second) * 1000000 + micros;
	*rest = s;
	return 0;
}

/* Z, +HH:MM, +HHMM or +HH (and '-'), up to the end. */
static int parse_offset(const char *s, const char *end, int *offset)
{
	size_t len = (size_t)(end - s);
	if (len == 1 && (s[0] == 'Z' || s[0] == 'z')) {
		*offset = 0;
		return 0;
	}
	int hours, minutes = 0;
	if (len < 3 || (s[0] != '+' && s[0] != '-') || read_digits(s + 1, 2, &hours))
		return -1;
	if (len == 6 && s[3] == ':') {
		if (read_digits(s + 4, 2, &minutes))
			return -1;
	} else if (len == 5) {
		if (read_digits(s + 3, 2, &minutes))
			return -1;
	} else if (len != 3) {
		return -1;
	}
	if (hours > 23 || minutes > 59)
		return -1;
	*offset = (s[0] == '-' ? -1 : 1) * (hours * 3600 + minutes * 60);
	return 0;
}

int date_parse_instant(const char *s, size_t len, const struct tz_zone *zone, int64_t *us)
{
	int64_t days;
	const char *end = s + len;
	if (len < 10 || memchr(s, '\0', len) || parse_day_prefix(s, &days))
		return -1;
	if (len == 10) {
		*us = date_local_to_epoch(days * DATE_SECONDS_PER_DAY, zone) * 1000000;
		return 0;
	}
	if (s[10] != 'T' && s[10] != 't' && s[10] != ' ')
		return -1;
	int64_t clock_us;
	const char *rest;
	if (parse_clock(s + 11, end, &clock_us, &rest))
		return -1;
	int64_t local_seconds = days * DATE_SECONDS_PER_DAY + clock_us / 1000000;
	int64_t fraction = clock_us % 1000000;
	if (rest == end) {
		*us = date_local_to_epoch(local_seconds, zone) * 1000000 + fraction;
		return 0;
	}
	int offset;
	if (parse_offset(rest, end, &offset))
		return -1;
	*us = (local_seconds - offset) * 1000000 + fraction;
	return 0;
}

int date_parse(const char *s, const struct tz_zone *zone, int64_t *epoch)
{
	int64_t us;
	if (date_parse_instant(s, strlen(s), zone, &us))
		return -1;
	*epoch = date_floor_div(us, 1000000);
	return 0;
}

size_t date_format_instant(int64_t us, char out[DATE_INSTANT_LEN])
{
	int64_t seconds = date_floor_div(us, 1000000);
	int64_t micros = us - seconds * 1000000;
	int64_t days = date_floor_div(seconds, DATE_SECONDS_PER_DAY);
	int64_t clock = seconds - days * DATE_SECONDS_PER_DAY;
	char day[DATE_DAY_LEN];
	date_format_day(days, day);
	int n = snprintf(out, DATE_INSTANT_LEN, "%sT%02d:%02d:%02d", day, (int)(clock / 3600), (int)(clock / 60 % 60),
			 (int)(clock % 60));
	if (micros) {
		char fraction[8];
		snprintf(fraction, sizeof fraction, "%06d", (int)micros);
		size_t digits = 6;
		while (fraction[digits - 1] == '0')
			digits--;
		fraction[digits] = '\0';
		n += snprintf(out + n, DATE_INSTANT_LEN - (size_t)n, ".%s", fraction);
	}
	n += snprintf(out + n, DATE_INSTANT_LEN - (size_t)n, "Z");
	return (size_t)n;
}

int64_t date_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The zone named by argument arg (default UTC); NULL stands for UTC. */
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
	if (lua_type(L, 1) != LUA_TSTRING || date_parse(lua_tostring(L, 1), zone, &epoch)) {
		lua_pushnil(L);
		lua_pushfstring(L, "'%s' is not a date (YYYY-MM-DD or RFC 3339)", luaL_tolstring(L, 1, NULL));
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
	int32_t offset = date_zone_offset(zone, epoch);
	if (epoch < DATE_MIN_DAY * DATE_SECONDS_PER_DAY || epoch > (DATE_MAX_DAY + 1) * DATE_SECONDS_PER_DAY ||
	    civil_from_epoch(epoch + offset, &tm))
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
	int64_t seconds = (int64_t)(ms / 1000.0);
	if ((lua_Number)seconds * 1000.0 > ms)
		seconds--;
	return push_day(L, date_day_in_zone(seconds, zone));
}

/* date.add_days("YYYY-MM-DD", n) -> "YYYY-MM-DD" */
static int date_lua_add_days(lua_State *L)
{
	int64_t days = check_day(L, 1);
	lua_Integer n = luaL_checkinteger(L, 2);
	int64_t sum;
	if (n > DATE_MAX_DAY - DATE_MIN_DAY || n < DATE_MIN_DAY - DATE_MAX_DAY || (sum = days + (int64_t)n) < DATE_MIN_DAY ||
	    sum > DATE_MAX_DAY)
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
	int wd = weekday_of(check_day(L, 1));
	lua_pushinteger(L, wd == 0 ? 7 : wd);
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
