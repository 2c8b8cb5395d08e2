/*
 * test_date: calendar math (date.c): strict YYYY-MM-DD parsing, day formatting, America/New_York
 * offsets across DST rules, days in a zone (Polygon's bar timestamps), RFC 3339 parsing.
 * The whole table runs twice, with the process TZ set to America/Los_Angeles and to Asia/Tokyo,
 * to show that the host's zone never leaks into the results.
 */
#define _DEFAULT_SOURCE /* tm_gmtoff, for comparing with the tz database */
#include <lauxlib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "date.h"
#include "harness.h"
#include "tz.h"

/* The zones the tables name: 0 is UTC (a NULL zone), 1 New York from the tz database. */
#define DATE_UTC 0
#define DATE_NEW_YORK 1
typedef int zone_id;

static const struct tz_zone *zone_of(zone_id id)
{
	static struct tz_db *db;
	static const struct tz_zone *new_york;
	if (id == DATE_UTC)
		return NULL;
	if (!db)
		db = tz_db_open(NULL);
	if (db && !new_york)
		new_york = tz_find(db, "America/New_York", NULL, 0);
	return new_york;
}

static char saved_tz[256];
static int saved_tz_set = -1; /* -1: not saved yet */

static void set_tz(const char *zone)
{
	if (saved_tz_set < 0) {
		const char *tz = getenv("TZ");
		saved_tz_set = tz != NULL;
		snprintf(saved_tz, sizeof saved_tz, "%s", tz ? tz : "");
	}
	setenv("TZ", zone, 1);
	tzset();
}

static void restore_tz(const char *zone)
{
	(void)zone;
	if (saved_tz_set > 0)
		setenv("TZ", saved_tz, 1);
	else
		unsetenv("TZ");
	tzset();
}

/* Proves the suite's TZ is in effect: otherwise the two runs would test the same thing. */
static void host_zone_in_effect(void)
{
	const char *zone = test_param();
	time_t t = 1656633600; /* 2022-07-01T00:00:00Z */
	struct tm tm;
	localtime_r(&t, &tm);
	if (!strcmp(zone, "America/Los_Angeles"))
		CHECK(tm.tm_mday == 30 && tm.tm_hour == 17, "local time is day %d %02d:00, not 30 17:00 (PDT)",
		      tm.tm_mday, tm.tm_hour);
	else if (!strcmp(zone, "Asia/Tokyo"))
		CHECK(tm.tm_mday == 1 && tm.tm_hour == 9, "local time is day %d %02d:00, not 1 09:00 (JST)", tm.tm_mday,
		      tm.tm_hour);
	else
		CHECK(0, "no expectation for TZ=%s", zone);
}

/* ---- days ---- */

struct day_case {
	const char *text;
	int64_t days;
};

static const struct day_case valid_days[] = {
	{"1970-01-01", 0},       {"1969-12-31", -1},    {"2022-03-11", 19062},  {"2022-03-07", 19058},
	{"2024-02-29", 19782},   {"2000-02-29", 11016}, {"1900-01-01", -25567}, {"1000-01-01", -354285},
	{"9999-12-31", 2932896}, {"2100-12-31", 47846},
};

static void parse_day_accepts(void)
{
	for (size_t i = 0; i < COUNT_OF(valid_days); i++) {
		int64_t days = 12345;
		int rc = date_parse_day(valid_days[i].text, &days);
		CHECK(rc == 0, "%s was rejected", valid_days[i].text);
		CHECK(rc != 0 || days == valid_days[i].days, "%s parsed as day %lld, want %lld", valid_days[i].text,
		      (long long)days, (long long)valid_days[i].days);
	}
}

static void parse_day_rejects(void)
{
	static const char *const bad[] = {
		"2022-13-45",  "2022-02-29",
		"2023-02-29",  "1900-02-29",
		"2100-02-29",  "2022-04-31",
		"2022-00-10",  "2022-01-00",
		"2022-01-32",  "yesterday",
		"20220101",    "2022-1-01",
		"2022-01-1",   "",
		"2022-01-01 ", " 2022-01-01",
		"2022-01-01x", "2022/01/01",
		"2022-0a-01",  "0999-12-31",
		"+022-01-01",  "2022-01-01T00:00:00Z",
		"-2022-01-01",
	};
	for (size_t i = 0; i < COUNT_OF(bad); i++) {
		int64_t days = 0;
		int rc = date_parse_day(bad[i], &days);
		CHECK(rc != 0, "\"%s\" was accepted as day %lld", bad[i], (long long)days);
	}
}

static void format_day_known(void)
{
	for (size_t i = 0; i < COUNT_OF(valid_days); i++) {
		char text[DATE_DAY_LEN];
		date_format_day(valid_days[i].days, text);
		CHECK(strcmp(text, valid_days[i].text) == 0, "day %lld formatted as %s, want %s",
		      (long long)valid_days[i].days, text, valid_days[i].text);
	}
}

static void format_day_inverts_parse(void)
{
	int64_t first = -25567; /* 1900-01-01 */
	int64_t last = 47846;   /* 2100-12-31 */
	int failures = 0;
	char previous[DATE_DAY_LEN] = "";
	for (int64_t d = first; d <= last && failures < 3; d++) {
		char text[DATE_DAY_LEN];
		int64_t back = 0;
		date_format_day(d, text);
		int ok = strlen(text) == 10 && date_parse_day(text, &back) == 0 && back == d;
		ok = ok && strcmp(previous, text) < 0;
		if (!CHECK(ok, "day %lld -> \"%s\" -> %lld (after \"%s\")", (long long)d, text, (long long)back,
			   previous))
			failures++;
		memcpy(previous, text, sizeof previous);
	}
}

/* ---- New York ---- */

struct offset_case {
	const char *label;
	int64_t epoch;
	int offset;
};

static const struct offset_case offsets[] = {
	{"2022-03-13T06:59:59Z", 1647154799, -18000},
	{"2022-03-13T07:00:00Z", 1647154800, -14400},
	{"2022-11-06T05:59:59Z", 1667714399, -14400},
	{"2022-11-06T06:00:00Z", 1667714400, -18000},
	{"2006-04-02T06:59:59Z", 1143961199, -18000},
	{"2006-04-02T07:00:00Z", 1143961200, -14400},
	{"2006-10-29T05:59:59Z", 1162101599, -14400},
	{"2006-10-29T06:00:00Z", 1162101600, -18000},
	{"2007-03-11T06:59:59Z", 1173596399, -18000},
	{"2007-03-11T07:00:00Z", 1173596400, -14400},
	{"2007-11-04T05:59:59Z", 1194155999, -14400},
	{"2007-11-04T06:00:00Z", 1194156000, -18000},
	{"1986-04-27T06:59:59Z", 514969199, -18000},
	{"1986-04-27T07:00:00Z", 514969200, -14400},
	{"2024-03-10T07:00:00Z", 1710054000, -14400},
	{"2024-11-03T06:00:00Z", 1730613600, -18000},
	{"2022-01-15T12:00:00Z", 1642248000, -18000},
	{"2022-07-01T00:00:00Z", 1656633600, -14400},
	{"2022-01-01T03:00:00Z (2021-12-31 in New York)", 1641006000, -18000},
	{"1970-01-01T00:00:00Z", 0, -18000},
};

static void zone_offset_dst(void)
{
	for (size_t i = 0; i < COUNT_OF(offsets); i++) {
		int got = date_zone_offset(zone_of(DATE_NEW_YORK), offsets[i].epoch);
		CHECK(got == offsets[i].offset, "%s: offset %d, want %d", offsets[i].label, got, offsets[i].offset);
		CHECK(date_zone_offset(zone_of(DATE_UTC), offsets[i].epoch) == 0, "%s: UTC offset is not 0",
		      offsets[i].label);
	}
}

/* Every hour from 1987 to 2040 against the tz database (the US rules date.c encodes). */
static void zone_offset_matches_tzdata(void)
{
	set_tz("America/New_York");
	int failures = 0;
	for (int64_t t = 536457600; t < 2208988800 && failures < 3; t += 3600) {
		time_t tt = (time_t)t;
		struct tm tm;
		localtime_r(&tt, &tm);
		int got = date_zone_offset(zone_of(DATE_NEW_YORK), t);
		if (!CHECK(got == (int)tm.tm_gmtoff, "epoch %lld: offset %d, tzdata says %ld", (long long)t, got,
			   (long)tm.tm_gmtoff))
			failures++;
	}
	set_tz(test_param());
}

/* The span given with an offset holds the instant and has that offset at both ends and in between
 * (it may stop where only the abbreviation changes: EWT to EPT in 1945). */
static void zone_offset_span_is_exact(void)
{
	int failures = 0;
	for (int64_t t = -2208988800; t < 4102444800 && failures < 3; t += 7 * 86400 + 3917) {
		int64_t from, until;
		int offset = date_zone_offset_span(zone_of(DATE_NEW_YORK), t, &from, &until);
		int ok = offset == date_zone_offset(zone_of(DATE_NEW_YORK), t) && from <= t && t < until &&
			 date_zone_offset(zone_of(DATE_NEW_YORK), from) == offset &&
			 date_zone_offset(zone_of(DATE_NEW_YORK), until - 1) == offset;
		if (!CHECK(ok, "epoch %lld: offset %d over [%lld, %lld)", (long long)t, offset, (long long)from,
			   (long long)until))
			failures++;
		/* A change of offset inside the span would be missed by the walk's cache. */
		for (int64_t probe = from; probe < until && failures < 3; probe += 86400 / 4)
			if (!CHECK(date_zone_offset(zone_of(DATE_NEW_YORK), probe) == offset,
				   "epoch %lld: offset changes at %lld", (long long)t, (long long)probe))
				failures++;
	}
	int64_t from, until;
	CHECK(date_zone_offset_span(zone_of(DATE_UTC), 1646708400, &from, &until) == 0 && from == INT64_MIN &&
		      until == INT64_MAX,
	      "UTC: offset 0 for all time");
}

struct day_in_zone_case {
	const char *label;
	int64_t epoch;
	zone_id zone;
	const char *day;
	int seconds; /* into that day */
};

static const struct day_in_zone_case days_in_zone[] = {
	{"2022-03-08T03:00Z in New York", 1646708400, DATE_NEW_YORK, "2022-03-07", 22 * 3600},
	{"2022-03-08T03:00Z in UTC", 1646708400, DATE_UTC, "2022-03-08", 3 * 3600},
	{"bar 1646629200000 (00:00 EST)", 1646629200, DATE_NEW_YORK, "2022-03-07", 0},
	{"bar 1647230400000 (00:00 EDT)", 1647230400, DATE_NEW_YORK, "2022-03-14", 0},
	{"a second before 2022-03-07 EST", 1646629199, DATE_NEW_YORK, "2022-03-06", 86399},
	{"2022-03-13T04:59:59Z", 1647147599, DATE_NEW_YORK, "2022-03-12", 86399},
	{"2022-03-13T05:00:00Z", 1647147600, DATE_NEW_YORK, "2022-03-13", 0},
	{"2022-11-06T03:59:59Z", 1667707199, DATE_NEW_YORK, "2022-11-05", 86399},
	{"2022-11-06T04:00:00Z", 1667707200, DATE_NEW_YORK, "2022-11-06", 0},
	{"epoch -1 in UTC", -1, DATE_UTC, "1969-12-31", 86399},
	{"epoch 0 in New York", 0, DATE_NEW_YORK, "1969-12-31", 19 * 3600},
};

static void day_in_zone(void)
{
	for (size_t i = 0; i < COUNT_OF(days_in_zone); i++) {
		const struct day_in_zone_case *c = &days_in_zone[i];
		char text[DATE_DAY_LEN];
		date_format_day(date_day_in_zone(c->epoch, zone_of(c->zone)), text);
		CHECK(strcmp(text, c->day) == 0, "%s: day %s, want %s", c->label, text, c->day);
		int seconds = date_seconds_into_day(c->epoch, zone_of(c->zone));
		CHECK(seconds == c->seconds, "%s: %d seconds into the day, want %d", c->label, seconds, c->seconds);
	}
}

/* date.from_ms is what the script turns a bar's t into. */
static void lua_from_ms(void)
{
	static const struct {
		const char *chunk;
		const char *day;
	} cases[] = {
		{"return date.from_ms(1646629200000, 'America/New_York')", "2022-03-07"},
		{"return date.from_ms(1647230400000, 'America/New_York')", "2022-03-14"},
		{"return date.from_ms(1646629199999, 'America/New_York')", "2022-03-06"},
		{"return date.from_ms(1646629200000.0, 'America/New_York')", "2022-03-07"},
		{"return date.from_ms(1646629200000)", "2022-03-07"},
		{"return date.from_ms(1646611200000)", "2022-03-07"},
		{"return date.from_ms(-1)", "1969-12-31"},
	};
	lua_State *L = test_lua_open();
	if (!L)
		return;
	for (size_t i = 0; i < COUNT_OF(cases); i++) {
		test_push_lua(L, cases[i].chunk);
		CHECK_STR(lua_tostring(L, -1), cases[i].day, cases[i].chunk);
		lua_settop(L, 0);
	}
	test_lua_close(L);
}

/* The Lua functions at the edges of the years 1000 to 9999: a text inside, an argument error
 * (never a wrapped or five-digit year) outside, whatever the integer. */
static void lua_edges_of_the_range(void)
{
	static const struct {
		const char *chunk;
		const char *want; /* the text, or NULL for an error that names the range */
	} cases[] = {
		{"return date.format(253402300799)", "9999-12-31"},
		{"return date.format(253402300800)", NULL},
		{"return date.format(-30610224000)", "1000-01-01"},
		{"return date.format(-30610224001)", NULL},
		{"return date.format(253402300799, '%Y-%m-%d', 'Asia/Tokyo')", NULL},
		{"return date.format(253402300799 - 9 * 3600, '%Y-%m-%d', 'Asia/Tokyo')", "9999-12-31"},
		{"return date.format(math.maxinteger)", NULL},
		{"return date.format(math.mininteger, '%Y', 'Pacific/Kiritimati')", NULL},
		{"return date.add_days('9999-12-30', 1)", "9999-12-31"},
		{"return date.add_days('9999-12-31', 1)", NULL},
		{"return date.add_days('2024-01-01', math.maxinteger)", NULL},
		{"return date.add_days('2024-01-01', math.mininteger)", NULL},
		{"return date.from_ms(253402300799999)", "9999-12-31"},
		{"return date.from_ms(253402300800000)", NULL},
		{"return date.from_ms(-30610224000000)", "1000-01-01"},
		{"return date.from_ms(-30610224000001)", NULL},
		{"return date.from_ms(253402300799999 - 9 * 3600000, 'Asia/Tokyo')", "9999-12-31"},
		{"return date.from_ms(253402300799999, 'Asia/Tokyo')", NULL},
		{"return date.from_ms(math.maxinteger)", NULL},
		{"return date.from_ms(math.mininteger)", NULL},
		{"return date.from_ms(1e300)", NULL},
		{"return date.from_ms(-1e300)", NULL},
		{"return date.from_ms(0/0)", NULL},
	};
	lua_State *L = test_lua_open();
	if (!L)
		return;
	for (size_t i = 0; i < COUNT_OF(cases); i++) {
		int status = luaL_loadstring(L, cases[i].chunk) || lua_pcall(L, 0, 1, 0);
		if (cases[i].want)
			CHECK(status == LUA_OK && lua_isstring(L, -1) && !strcmp(lua_tostring(L, -1), cases[i].want),
			      "%s gave %s", cases[i].chunk, lua_tostring(L, -1));
		else
			CHECK(status != LUA_OK && strstr(lua_tostring(L, -1), "years 1000 to 9999"), "%s gave %s",
			      cases[i].chunk, lua_tostring(L, -1));
		lua_settop(L, 0);
	}
	test_lua_close(L);
}

/* date.parse's failure is nil and a message, whatever it was given. */
static void lua_parse_failure_is_nil_and_a_message(void)
{
	static const char *const chunks[] = {
		"return date.parse('garbage')",
		"return date.parse('99999-01-01T00:00:00Z')",
		"return date.parse(42)",
		"return date.parse(setmetatable({}, {__tostring = function() return '2024-01-01' end}))",
	};
	lua_State *L = test_lua_open();
	if (!L)
		return;
	for (size_t i = 0; i < COUNT_OF(chunks); i++) {
		int status = luaL_loadstring(L, chunks[i]) || lua_pcall(L, 0, 2, 0);
		CHECK(status == LUA_OK && lua_isnil(L, -2) && lua_type(L, -1) == LUA_TSTRING &&
			      strstr(lua_tostring(L, -1), "is not a date"),
		      "%s gave %s, %s", chunks[i], luaL_typename(L, -2), lua_tostring(L, -1));
		lua_settop(L, 0);
	}
	test_lua_close(L);
}

/* ---- date_parse ---- */

struct parse_case {
	const char *text;
	zone_id zone;
	int64_t epoch;
};

static void run_parse_cases(const struct parse_case *cases, size_t count)
{
	for (size_t i = 0; i < count; i++) {
		int64_t epoch = 0;
		int rc = date_parse(cases[i].text, zone_of(cases[i].zone), &epoch);
		const char *zone = cases[i].zone == DATE_UTC ? "UTC" : "New York";
		CHECK(rc == 0, "\"%s\" (%s) was rejected", cases[i].text, zone);
		CHECK(rc != 0 || epoch == cases[i].epoch, "\"%s\" (%s) parsed as %lld, want %lld", cases[i].text, zone,
		      (long long)epoch, (long long)cases[i].epoch);
	}
}

static void parse_rfc3339_offsets(void)
{
	/* All 2022-03-08T03:00:00Z; an explicit offset wins over the zone argument. */
	static const struct parse_case cases[] = {
		{"2022-03-08T03:00:00Z", DATE_UTC, 1646708400},
		{"2022-03-08T03:00:00Z", DATE_NEW_YORK, 1646708400},
		{"2022-03-07T22:00:00-05:00", DATE_UTC, 1646708400},
		{"2022-03-08T08:30:00+05:30", DATE_NEW_YORK, 1646708400},
		{"2022-03-08T03:00:00+00:00", DATE_NEW_YORK, 1646708400},
		{"2022-03-08T03:00:00-00:00", DATE_UTC, 1646708400},
		{"2022-03-08T03:00:00.123456Z", DATE_UTC, 1646708400},
		{"2022-03-08t03:00:00z", DATE_UTC, 1646708400},
		{"2022-03-08 03:00:00Z", DATE_UTC, 1646708400},
		{"2022-03-08T03:00Z", DATE_UTC, 1646708400},
		{"2022-03-07T23:00:00-04:00", DATE_UTC, 1646708400},
	};
	run_parse_cases(cases, COUNT_OF(cases));
}

static void parse_local_times(void)
{
	static const struct parse_case cases[] = {
		{"2022-03-07", DATE_UTC, 1646611200},
		{"2022-03-07", DATE_NEW_YORK, 1646629200},
		{"2022-07-01", DATE_NEW_YORK, 1656648000},
		{"2022-03-07T22:00:00", DATE_NEW_YORK, 1646708400},
		{"2022-07-01T12:00:00", DATE_NEW_YORK, 1656691200},
		{"2022-03-13T01:30:00", DATE_NEW_YORK, 1647153000},
		{"2022-03-13T03:30:00", DATE_NEW_YORK, 1647156600},
		{"2022-11-06T02:30:00", DATE_NEW_YORK, 1667719800},
		{"2022-03-08T03:00:00", DATE_UTC, 1646708400},
	};
	run_parse_cases(cases, COUNT_OF(cases));
}

static void parse_spring_gap_moves_forward(void)
{
	/* BUG: date.c's local_to_epoch is documented as "a time in New York's spring gap moves forward",
	 * but 2022-03-13T02:30 (which does not exist in New York) comes back as 06:30Z, i.e. 01:30 EST,
	 * an hour before the gap, instead of 07:30Z (03:30 EDT). The second offset lookup uses the
	 * guessed instant (after the change, -4h) and applies it to a wall time before the change. */
	static const struct parse_case cases[] = {
		{"2022-03-13T02:30:00", DATE_NEW_YORK, 1647156600},
	};
	run_parse_cases(cases, COUNT_OF(cases));
	int64_t before = 0;
	int64_t inside = 0;
	if (date_parse("2022-03-13T01:59:59", zone_of(DATE_NEW_YORK), &before) == 0 &&
	    date_parse("2022-03-13T02:30:00", zone_of(DATE_NEW_YORK), &inside) == 0)
		CHECK(inside > before, "02:30 (in the gap) is %lld, not after 01:59:59 (%lld)", (long long)inside,
		      (long long)before);
}

static void parse_rejects(void)
{
	static const char *const bad[] = {
		"",
		"yesterday",
		"2022-03-08T",
		"2022-03-08X03:00:00Z",
		"2022-03-08T3:00:00Z",
		"2022-03-08T03:00:00Zjunk",
		"2022-03-08T03:00:00 Z",
		"2022-03-08T24:00:00Z",
		"2022-03-08T03:60:00Z",
		"2022-03-08T03:00:61Z",
		"2022-03-08T03:00:00.Z",
		"2022-03-08T03:00:00+24:00",
		"2022-02-30T00:00:00Z",
		"2022-3-08T03:00:00Z",
		"20220308T030000Z",
	};
	for (size_t i = 0; i < COUNT_OF(bad); i++) {
		int64_t epoch = 0;
		int rc = date_parse(bad[i], zone_of(DATE_UTC), &epoch);
		CHECK(rc != 0, "\"%s\" was accepted as %lld", bad[i], (long long)epoch);
	}
}

static void zone_from_name(void)
{
	static const struct {
		const char *name;
		int found;
	} cases[] = {
		{"UTC", 1},        {"Etc/UTC", 1},       {"America/New_York", 1},
		{"US/Eastern", 1}, {"Europe/London", 1}, {"america/new_york", 0},
		{"", 0},           {"../etc/passwd", 0},
	};
	struct tz_db *db = tz_db_open(NULL);
	for (size_t i = 0; db && i < COUNT_OF(cases); i++) {
		char err[300] = "";
		const struct tz_zone *zone = tz_find(db, cases[i].name, err, sizeof err);
		CHECK((zone != NULL) == cases[i].found, "\"%s\": found %d, want %d (%s)", cases[i].name, zone != NULL,
		      cases[i].found, err);
	}
	tz_db_close(db);
}

/* Each operand against the division it stands for: every edge of a quotient (k * d - 1, k * d)
 * for small k and around the largest operand, and a spread of others over the whole range. */
static void check_quotients(const char *name, int64_t (*quotient)(uint64_t), uint64_t divisor, uint64_t limit)
{
	uint64_t x = 0x9E3779B97F4A7C15u;
	for (uint64_t k = 0; k < 100000; k++) {
		uint64_t edges[] = {k * divisor, k * divisor + divisor - 1, limit - 1 - k,
				    (limit / divisor - k) * divisor, (limit / divisor - k) * divisor - 1};
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		uint64_t spread = x % limit;
		for (size_t i = 0; i < COUNT_OF(edges); i++)
			CHECK((uint64_t)quotient(edges[i]) == edges[i] / divisor, "%s(%llu) = %lld", name,
			      (unsigned long long)edges[i], (long long)quotient(edges[i]));
		CHECK((uint64_t)quotient(spread) == spread / divisor, "%s(%llu) = %lld", name,
		      (unsigned long long)spread, (long long)quotient(spread));
	}
}

static void quotients_by_multiply(void)
{
	check_quotients("date_ms_to_seconds", date_ms_to_seconds, 1000, (uint64_t)1 << 54);
	check_quotients("date_seconds_to_day", date_seconds_to_day, DATE_SECONDS_PER_DAY, (uint64_t)1 << 45);
}

static const struct test tests[] = {
	{"the host TZ is in effect", host_zone_in_effect},
	{"date_ms_to_seconds and date_seconds_to_day are the divisions, edges and spread", quotients_by_multiply},
	{"date_parse_day accepts real days", parse_day_accepts},
	{"date_parse_day rejects anything else", parse_day_rejects},
	{"date_format_day of known days", format_day_known},
	{"date_format_day inverts date_parse_day, 1900..2100", format_day_inverts_parse},
	{"date_zone_offset around DST changes (2006, 2007, 2022 rules)", zone_offset_dst},
	{"date_zone_offset matches tzdata hourly, 1987..2039", zone_offset_matches_tzdata},
	{"date_zone_offset_span: the offset holds over the whole span, 1900..2100", zone_offset_span_is_exact},
	{"date_day_in_zone and date_seconds_into_day", day_in_zone},
	{"date.from_ms of Polygon bar timestamps", lua_from_ms},
	{"date.format, date.from_ms and date.add_days at the edges of the years 1000 to 9999", lua_edges_of_the_range},
	{"date.parse fails with nil and a message", lua_parse_failure_is_nil_and_a_message},
	{"date_parse RFC 3339 with offsets", parse_rfc3339_offsets},
	{"date_parse local times in the zone", parse_local_times},
	{"date_parse moves a time in the spring gap forward", parse_spring_gap_moves_forward},
	{"date_parse rejects malformed times", parse_rejects},
	{"date_zone_from_name", zone_from_name},
};

const struct suite date_suite_los_angeles = {
	"date[TZ=America/Los_Angeles]", tests, COUNT_OF(tests), set_tz, restore_tz, "America/Los_Angeles",
};

const struct suite date_suite_tokyo = {
	"date[TZ=Asia/Tokyo]", tests, COUNT_OF(tests), set_tz, restore_tz, "Asia/Tokyo",
};
