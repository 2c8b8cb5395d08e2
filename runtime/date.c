/*
 * date: calendar math for cursors and windows (the Lua `date` module is date_module.c's).
 *
 * Days are int64 counts since 1970-01-01 and instants int64 epoch seconds or microseconds, so window arithmetic
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
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "civil.h"
#include "tz.h"

static int64_t days_from_civil(int year, int month, int day)
{
	return civil_to_days(year, month, day);
}

int date_weekday(int64_t days)
{
	/* 1970-01-01 was a Thursday; ISO numbering, Monday 1 to Sunday 7. */
	int from_sunday = (int)(((days % 7) + 7 + 4) % 7);
	return from_sunday == 0 ? 7 : from_sunday;
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
	return civil_floor_div(epoch + date_zone_offset(zone, epoch), DATE_SECONDS_PER_DAY);
}

int date_seconds_into_day(int64_t epoch, const struct tz_zone *zone)
{
	int64_t local = epoch + date_zone_offset(zone, epoch);
	return (int)(local - civil_floor_div(local, DATE_SECONDS_PER_DAY) * DATE_SECONDS_PER_DAY);
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
	*epoch = civil_floor_div(us, 1000000);
	return 0;
}

size_t date_format_instant(int64_t us, char out[DATE_INSTANT_LEN])
{
	int64_t seconds = civil_floor_div(us, 1000000);
	int64_t micros = us - seconds * 1000000;
	int64_t days = civil_floor_div(seconds, DATE_SECONDS_PER_DAY);
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
