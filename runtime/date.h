/* date: calendar math on int64 epoch values (UTC and America/New_York), and the Lua `date` module. */
#ifndef SOURCE_LUA_DATE_H
#define SOURCE_LUA_DATE_H

#include <lua.h>
#include <stdint.h>

enum date_zone { DATE_UTC, DATE_NEW_YORK };

#define DATE_DAY_LEN 11 /* "YYYY-MM-DD" and its NUL */
#define DATE_SECONDS_PER_DAY 86400

/* a / b rounded towards minus infinity (C rounds towards zero), for b > 0: the day of a negative
 * instant. */
static inline int64_t date_floor_div(int64_t a, int64_t b)
{
	return a / b - (a % b < 0);
}

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

/* Parses YYYY-MM-DD or an RFC 3339 time (YYYY-MM-DDTHH:MM[:SS[.frac]][Z|+HH:MM]); a time without an
 * offset, or a bare day, is read in zone. Returns 0 and epoch seconds, or -1. */
int date_parse(const char *s, enum date_zone zone, int64_t *epoch);

/* Offset of zone from UTC, in seconds, at the UTC instant epoch (-14400 or -18000 for New York). */
int date_zone_offset(enum date_zone zone, int64_t epoch);

/* date_zone_offset, and the instants [*from, *until) around epoch that have the same offset
 * (not always the whole span: callers cache it to skip the search for the next instants). */
int date_zone_offset_span(enum date_zone zone, int64_t epoch, int64_t *from, int64_t *until);

/* Day (since 1970-01-01) that the instant falls on in zone. */
int64_t date_day_in_zone(int64_t epoch, enum date_zone zone);

/* Seconds since midnight, in zone, at the instant epoch. */
int date_seconds_into_day(int64_t epoch, enum date_zone zone);

/* Zone from its IANA name; returns -1 for a zone we do not carry. */
int date_zone_from_name(const char *name, enum date_zone *zone);

/* Wall clock in milliseconds since the epoch. */
int64_t date_now_ms(void);

/* Opens the `date` module. [-0, +1, m] */
int date_open(lua_State *L);

#endif
