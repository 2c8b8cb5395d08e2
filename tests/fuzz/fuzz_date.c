/*
 * fuzz_date: the date parsers on arbitrary text, and the invariants the sync engine relies on.
 * - date_parse_day accepts exactly the days date_format_day writes: format(parse(s)) == s, for
 *   years 1000..9999, and a day read as a time in either zone starts that day.
 * - date_parse accepts or rejects a text in both zones alike; the two readings differ by 0 (an
 *   explicit offset) or by New York's offset (4 or 5 hours), and fall on the same local day.
 * - whatever instant was parsed, date_format_day writes a terminated text, and a day in the
 *   supported range reads back as itself.
 * Any violation aborts, so that libFuzzer keeps the input. FUZZ_LENIENT=1 skips formatting days
 * outside 1000..9999 (reported: regressions/fuzz_date/format-day-year-10000-unterminated).
 */
#include <lua.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "date.h"
#include "tz.h"
#include "fuzz_common.h"

#define SECONDS_PER_DAY 86400

static int64_t first_day;
static int64_t last_day;
static int lenient;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	if (date_parse_day("1000-01-01", &first_day) || date_parse_day("9999-12-31", &last_day)) {
		fprintf(stderr, "fuzz_date: the range ends do not parse\n");
		abort();
	}
	lenient = fuzz_lenient();
	return 0;
}

/* The two zones the checks use: 0 UTC (a NULL zone), 1 New York from the tz database. */
#define DATE_UTC 0
#define DATE_NEW_YORK 1

static const struct tz_zone *zone_of(int id)
{
	static struct tz_db *db;
	static const struct tz_zone *new_york;
	if (id == DATE_UTC)
		return NULL;
	if (!db)
		db = tz_db_open(NULL);
	if (!new_york && db)
		new_york = tz_find(db, "America/New_York", NULL, 0);
	if (!new_york)
		abort();
	return new_york;
}

static const char *zone_name(int zone)
{
	return zone == DATE_UTC ? "UTC" : "America/New_York";
}

/* date_format_day must always terminate its text; a day in range must read back as itself. */
static void check_format(const char *input, int64_t day)
{
	if (lenient && (day < first_day || day > last_day))
		return;
	char out[DATE_DAY_LEN];
	memset(out, 'X', sizeof out);
	date_format_day(day, out);
	FUZZ_CHECK(memchr(out, '\0', sizeof out) != NULL,
		   "date_format_day(%lld) left its %d-byte buffer unterminated ('%.*s'); input '%s'", (long long)day,
		   DATE_DAY_LEN, DATE_DAY_LEN, out, input);
	if (day < first_day || day > last_day)
		return;
	int64_t back;
	FUZZ_CHECK(date_parse_day(out, &back) == 0 && back == day, "day %lld formats as '%s', which does not read back",
		   (long long)day, out);
}

static void check_instant(const char *input, int64_t epoch, int zone)
{
	int offset = date_zone_offset(zone_of(zone), epoch);
	if (zone == DATE_UTC)
		FUZZ_CHECK(offset == 0, "UTC offset %d", offset);
	else
		FUZZ_CHECK(offset == -14400 || offset == -18000 || offset == -17762, "New York offset %d at %lld",
			   offset, (long long)epoch); /* -17762: local mean time, before 1883 */
	int seconds = date_seconds_into_day(epoch, zone_of(zone));
	FUZZ_CHECK(seconds >= 0 && seconds < SECONDS_PER_DAY, "seconds into day %d for '%s' in %s", seconds, input,
		   zone_name(zone));
	int64_t day = date_day_in_zone(epoch, zone_of(zone));
	FUZZ_CHECK(day * SECONDS_PER_DAY + seconds == epoch + offset, "day %lld + %d s is not %lld + %d for '%s' in %s",
		   (long long)day, seconds, (long long)epoch, offset, input, zone_name(zone));
	check_format(input, day);
}

static void check_day(const char *s)
{
	int64_t days;
	if (date_parse_day(s, &days))
		return;
	FUZZ_CHECK(days >= first_day && days <= last_day, "'%s' parsed to day %lld, out of range", s, (long long)days);
	char out[DATE_DAY_LEN];
	date_format_day(days, out);
	FUZZ_CHECK(strcmp(out, s) == 0, "'%s' parsed to day %lld, which formats as '%s'", s, (long long)days, out);
	static const int zones[] = {DATE_UTC, DATE_NEW_YORK};
	for (size_t i = 0; i < 2; i++) {
		int64_t epoch;
		FUZZ_CHECK(date_parse(s, zone_of(zones[i]), &epoch) == 0, "day '%s' is not a date in %s", s,
			   zone_name(zones[i]));
		FUZZ_CHECK(date_day_in_zone(epoch, zone_of(zones[i])) == days,
			   "day '%s' in %s starts on day %lld, not %lld", s, zone_name(zones[i]),
			   (long long)date_day_in_zone(epoch, zone_of(zones[i])), (long long)days);
		FUZZ_CHECK(date_seconds_into_day(epoch, zone_of(zones[i])) == 0,
			   "day '%s' in %s starts %d s after midnight", s, zone_name(zones[i]),
			   date_seconds_into_day(epoch, zone_of(zones[i])));
	}
}

static void check_time(const char *s)
{
	int64_t utc, new_york;
	int utc_rc = date_parse(s, zone_of(DATE_UTC), &utc);
	int new_york_rc = date_parse(s, zone_of(DATE_NEW_YORK), &new_york);
	FUZZ_CHECK(utc_rc == 0 || utc_rc == -1, "date_parse returned %d", utc_rc);
	FUZZ_CHECK(utc_rc == new_york_rc, "'%s' parses in one zone only (UTC %d, New York %d)", s, utc_rc, new_york_rc);
	if (utc_rc)
		return;
	int64_t prefix;
	char head[11];
	memcpy(head, s, 10);
	head[10] = '\0';
	FUZZ_CHECK(date_parse_day(head, &prefix) == 0, "'%s' parses but its day '%s' does not", s, head);
	int64_t diff = new_york - utc;
	FUZZ_CHECK(diff == 0 || diff == 14400 || diff == 18000 || diff == 17762,
		   "'%s' reads %lld s apart in UTC and New York", s, (long long)diff);
	check_instant(s, utc, DATE_UTC);
	check_instant(s, new_york, DATE_NEW_YORK);
	if (diff != 0) {
		/* No explicit offset: the same wall clock, so the same local day in both zones. */
		int64_t utc_day = date_day_in_zone(utc, zone_of(DATE_UTC));
		int64_t new_york_day = date_day_in_zone(new_york, zone_of(DATE_NEW_YORK));
		FUZZ_CHECK(utc_day == new_york_day, "'%s' falls on day %lld in UTC but %lld in New York", s,
			   (long long)utc_day, (long long)new_york_day);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* Exactly size + 1 bytes, so that ASan sees any read past the terminator. */
	char *s = malloc(size + 1);
	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	check_day(s);
	check_time(s);
	free(s);
	return 0;
}
