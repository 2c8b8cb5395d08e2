/*
 * date: calendar math for cursors and windows, and the Lua `date` module.
 *
 * Days are int64 counts since 1970-01-01 and instants int64 epoch seconds, so window arithmetic
 * is plain addition and never touches the host's time zone. Day <-> civil date conversions are
 * Howard Hinnant's integer algorithms rather than timegm/gmtime_r: every record's day passes
 * through them twice, and glibc's versions take a lock and consult the zone machinery each time.
 * strftime still formats date.format's output. America/New_York is computed here from the US rules rather
 * than from the tz database: slim container images often ship without tzdata, and switching TZ
 * with setenv is process-global and not thread-safe. Trading days are New York days.
 */
#define _GNU_SOURCE
#include "date.h"

#include <ctype.h>
#include <lauxlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

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

static int year_of_day(int64_t days)
{
	return civil_from_days(days).year;
}

static void civil_from_epoch(int64_t epoch, struct tm *tm)
{
	time_t t = (time_t)epoch;
	gmtime_r(&t, tm);
}

static int weekday_of(int64_t days)
{
	/* 1970-01-01 was a Thursday; 0 = Sunday as in struct tm. */
	return (int)(((days % 7) + 7 + 4) % 7);
}

/* Day of the nth (1-based) given weekday of a month; n = -1 asks for the last one. */
static int64_t nth_weekday(int year, int month, int weekday, int n)
{
	if (n < 0) {
		int next_year = month == 12 ? year + 1 : year;
		int next_month = month == 12 ? 1 : month + 1;
		int64_t last = days_from_civil(next_year, next_month, 1) - 1;
		return last - ((weekday_of(last) - weekday + 7) % 7);
	}
	int64_t first = days_from_civil(year, month, 1);
	return first + ((weekday - weekday_of(first) + 7) % 7) + 7 * (n - 1);
}

/* The UTC instants at which New York daylight time starts and ends in a year. Every record's
 * day goes through here, so the last year asked for is remembered (per thread: pages are
 * mapped on worker threads). */
static void new_york_dst_bounds(int year, int64_t *start, int64_t *end)
{
	static _Thread_local int cached_year = -1;
	static _Thread_local int64_t cached_start, cached_end;
	if (year == cached_year) {
		*start = cached_start;
		*end = cached_end;
		return;
	}
	int64_t start_day;
	int64_t end_day;
	if (year >= 2007) {
		start_day = nth_weekday(year, 3, 0, 2);
		end_day = nth_weekday(year, 11, 0, 1);
	} else if (year >= 1987) {
		start_day = nth_weekday(year, 4, 0, 1);
		end_day = nth_weekday(year, 10, 0, -1);
	} else {
		start_day = nth_weekday(year, 4, 0, -1);
		end_day = nth_weekday(year, 10, 0, -1);
	}
	/* 02:00 EST is 07:00 UTC; 02:00 EDT is 06:00 UTC. */
	*start = start_day * DATE_SECONDS_PER_DAY + 7 * 3600;
	*end = end_day * DATE_SECONDS_PER_DAY + 6 * 3600;
	cached_year = year;
	cached_start = *start;
	cached_end = *end;
}

int date_zone_offset(enum date_zone zone, int64_t epoch)
{
	if (zone == DATE_UTC)
		return 0;
	/* The year of the last instant asked for, as days: consecutive records share it, and finding
	 * the year of a day is most of the cost here. */
	static _Thread_local int64_t year_first = 1, year_last = 0;
	static _Thread_local int year;
	int64_t day = date_floor_div(epoch - 5 * 3600, DATE_SECONDS_PER_DAY);
	if (day < year_first || day > year_last) {
		year = year_of_day(day);
		year_first = days_from_civil(year, 1, 1);
		year_last = days_from_civil(year + 1, 1, 1) - 1;
	}
	int64_t start;
	int64_t end;
	new_york_dst_bounds(year, &start, &end);
	return (epoch >= start && epoch < end) ? -4 * 3600 : -5 * 3600;
}

int date_zone_offset_span(enum date_zone zone, int64_t epoch, int64_t *from, int64_t *until)
{
	if (zone == DATE_UTC) {
		*from = INT64_MIN;
		*until = INT64_MAX;
		return 0;
	}
	int offset = date_zone_offset(zone, epoch);
	/* date_zone_offset decides by the year of epoch - 5 h, from 05:00 UTC on 1 January to the
	 * next, and by the daylight bounds within it: the span is the piece of that year. */
	int64_t day = date_floor_div(epoch - 5 * 3600, DATE_SECONDS_PER_DAY);
	int year = year_of_day(day);
	int64_t year_start = days_from_civil(year, 1, 1) * DATE_SECONDS_PER_DAY + 5 * 3600;
	int64_t year_end = days_from_civil(year + 1, 1, 1) * DATE_SECONDS_PER_DAY + 5 * 3600;
	int64_t start, end;
	new_york_dst_bounds(year, &start, &end);
	if (epoch < start) {
		*from = year_start;
		*until = start;
	} else if (epoch < end) {
		*from = start;
		*until = end;
	} else {
		*from = end;
		*until = year_end;
	}
	return offset;
}

int64_t date_day_in_zone(int64_t epoch, enum date_zone zone)
{
	return date_floor_div(epoch + date_zone_offset(zone, epoch), DATE_SECONDS_PER_DAY);
}

int date_seconds_into_day(int64_t epoch, enum date_zone zone)
{
	int64_t local = epoch + date_zone_offset(zone, epoch);
	return (int)(local - date_floor_div(local, DATE_SECONDS_PER_DAY) * DATE_SECONDS_PER_DAY);
}

int date_zone_from_name(const char *name, enum date_zone *zone)
{
	if (!strcmp(name, "UTC") || !strcmp(name, "Etc/UTC") || !strcmp(name, "Z")) {
		*zone = DATE_UTC;
		return 0;
	}
	if (!strcmp(name, "America/New_York") || !strcmp(name, "US/Eastern")) {
		*zone = DATE_NEW_YORK;
		return 0;
	}
	return -1;
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

/* Converts a wall-clock time in zone to UTC. An hour repeated in autumn is its first occurrence;
 * a time in the spring gap is read as standard time, so it moves forward (02:30 -> 03:30 EDT). */
static int64_t local_to_epoch(int64_t local, enum date_zone zone)
{
	if (zone == DATE_UTC)
		return local;
	int64_t as_daylight = local + 4 * 3600;
	if (date_zone_offset(zone, as_daylight) == -4 * 3600)
		return as_daylight;
	return local + 5 * 3600;
}

static int parse_clock(const char *s, int *seconds, const char **rest)
{
	int hour, minute, second = 0;
	if (read_digits(s, 2, &hour) || s[2] != ':' || read_digits(s + 3, 2, &minute))
		return -1;
	s += 5;
	if (*s == ':') {
		if (read_digits(s + 1, 2, &second))
			return -1;
		s += 3;
		if (*s == '.') {
			s++;
			if (!isdigit((unsigned char)*s))
				return -1;
			while (isdigit((unsigned char)*s))
				s++;
		}
	}
	if (hour > 23 || minute > 59 || second > 60)
		return -1;
	*seconds = hour * 3600 + minute * 60 + second;
	*rest = s;
	return 0;
}

static int parse_offset(const char *s, int *offset)
{
	if ((s[0] == 'Z' || s[0] == 'z') && s[1] == '\0') {
		*offset = 0;
		return 0;
	}
	int hours, minutes;
	if ((s[0] != '+' && s[0] != '-') || read_digits(s + 1, 2, &hours) || s[3] != ':' ||
	    read_digits(s + 4, 2, &minutes) || s[6] != '\0' || hours > 23 || minutes > 59)
		return -1;
	*offset = (s[0] == '-' ? -1 : 1) * (hours * 3600 + minutes * 60);
	return 0;
}

int date_parse(const char *s, enum date_zone zone, int64_t *epoch)
{
	int64_t days;
	if (strlen(s) < 10 || parse_day_prefix(s, &days))
		return -1;
	if (s[10] == '\0') {
		*epoch = local_to_epoch(days * DATE_SECONDS_PER_DAY, zone);
		return 0;
	}
	if (s[10] != 'T' && s[10] != 't' && s[10] != ' ')
		return -1;
	int seconds;
	const char *rest;
	if (parse_clock(s + 11, &seconds, &rest))
		return -1;
	int64_t local = days * DATE_SECONDS_PER_DAY + seconds;
	if (*rest == '\0') {
		*epoch = local_to_epoch(local, zone);
		return 0;
	}
	int offset;
	if (parse_offset(rest, &offset))
		return -1;
	*epoch = local - offset;
	return 0;
}

int64_t date_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static enum date_zone check_zone(lua_State *L, int arg)
{
	enum date_zone zone = DATE_UTC;
	const char *name = luaL_optstring(L, arg, "UTC");
	if (date_zone_from_name(name, &zone))
		luaL_argerror(L, arg, lua_pushfstring(L, "unknown time zone '%s' (use UTC or America/New_York)", name));
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
	enum date_zone zone = check_zone(L, 1);
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
	enum date_zone zone = check_zone(L, 2);
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
	enum date_zone zone = check_zone(L, 3);
	struct tm tm;
	civil_from_epoch(epoch + date_zone_offset(zone, epoch), &tm);
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
	enum date_zone zone = check_zone(L, 2);
	int64_t seconds = (int64_t)(ms / 1000.0);
	if ((lua_Number)seconds * 1000.0 > ms)
		seconds--;
	return push_day(L, date_day_in_zone(seconds, zone));
}

/* date.add_days("YYYY-MM-DD", n) -> "YYYY-MM-DD" */
static int date_lua_add_days(lua_State *L)
{
	int64_t days = check_day(L, 1);
	return push_day(L, days + (int64_t)luaL_checkinteger(L, 2));
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
