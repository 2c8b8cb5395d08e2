/* date: calendar math on int64 epoch values in any IANA zone (tz.c), and the Lua `date` module. */
#ifndef SOURCE_LUA_DATE_H
#define SOURCE_LUA_DATE_H

#include <lua.h>
#include <stdint.h>

#include "civil.h"

struct tz_zone; /* a NULL zone is UTC */

#define DATE_DAY_LEN 11     /* "YYYY-MM-DD" and its NUL */
#define DATE_INSTANT_LEN 32 /* "YYYY-MM-DDTHH:MM:SS.ffffffZ" and its NUL */
#define DATE_SECONDS_PER_DAY 86400
/* The days of the years 1000 to 9999, the range every text form here can spell. */
#define DATE_MIN_DAY ((int64_t)-354285)
#define DATE_MAX_DAY ((int64_t)2932896)

/* ms / 1000 for 0 <= ms < 2^54 (every stamp of up to 16 digits), and seconds / 86400 for
 * 0 <= seconds < 2^45, each as one multiply. The walk needs both for every bar's day, and there
 * GCC, deeming the block cold, emitted the divisions as 64-bit idiv (~40 cycles each, ~3% of the
 * walk's samples). Exact in those ranges: each magic is 2^64 / divisor rounded up, by less than
 * 1 (2^10 / 1000 and 61,184 / 86,400 over), so the error times the largest operand stays below
 * 2^64, which cannot carry the quotient past an integer (test_date checks the edges). */
static inline int64_t date_ms_to_seconds(uint64_t ms)
{
	return (int64_t)(((unsigned __int128)ms * 0x4189374BC6A7F0u) >> 64);
}

static inline int64_t date_seconds_to_day(uint64_t seconds)
{
	return (int64_t)(((unsigned __int128)seconds * 0xC22E4506728Au) >> 64);
}

/* Parses exactly YYYY-MM-DD (a real calendar day, years 1000..9999) into days since 1970-01-01. */
int date_parse_day(const char *s, int64_t *days);
void date_format_day(int64_t days, char out[DATE_DAY_LEN]);
/* The first and last day of the month that days falls in. */
void date_month_span(int64_t days, int64_t *first, int64_t *last);
/* Proleptic Gregorian conversions between days since 1970-01-01 and year, month (1-12), day. */
int64_t date_days_from_civil(int year, int month, int day);
void date_civil_from_days(int64_t days, int *year, int *month, int *day);

/* Parses an ISO 8601 / RFC 3339 instant of len bytes: YYYY-MM-DD, optionally followed by
 * [T t space]HH:MM[:SS[.fraction]] and an offset (Z, +HH:MM, +HHMM, +HH); a text without an offset,
 * or a bare day, is a wall-clock time in zone. Digits past microseconds are dropped. Returns 0 and
 * microseconds since the epoch, or -1. Pure: safe on any thread. */
int date_parse_instant(const char *s, size_t len, const struct tz_zone *zone, int64_t *us);
/* The same for a NUL-terminated text, in whole seconds (rounded down). */
int date_parse(const char *s, const struct tz_zone *zone, int64_t *epoch);
/* RFC 3339 in UTC, "2026-11-30T09:15:00Z", with ".ffffff" (trailing zeros dropped) when the
 * instant is not a whole second. Returns the length. */
size_t date_format_instant(int64_t us, char out[DATE_INSTANT_LEN]);

/* Offset of zone from UTC, in seconds, at the UTC instant epoch (local = utc + offset). */
int32_t date_zone_offset(const struct tz_zone *zone, int64_t epoch);

/* date_zone_offset, and the instants [*from, *until) around epoch that have the same offset
 * (callers cache it to skip the lookup for the next instants). */
int32_t date_zone_offset_span(const struct tz_zone *zone, int64_t epoch, int64_t *from, int64_t *until);

/* Day (since 1970-01-01) that the instant falls on in zone. */
int64_t date_day_in_zone(int64_t epoch, const struct tz_zone *zone);

/* Seconds since midnight, in zone, at the instant epoch. */
int date_seconds_into_day(int64_t epoch, const struct tz_zone *zone);

/* The instant of a wall-clock time in zone (seconds since 1970-01-01T00:00 local): a repeated
 * time is its first occurrence, a skipped one is read with the offset before the gap. */
int64_t date_local_to_epoch(int64_t local, const struct tz_zone *zone);

/* The day of the week, ISO numbering: Monday 1 to Sunday 7. */
int date_weekday(int64_t days);

/* Wall clock in milliseconds since the epoch. */
int64_t date_now_ms(void);

/* Opens the `date` module (date_module.c). [-0, +1, m] */
int date_open(lua_State *L);

#endif
