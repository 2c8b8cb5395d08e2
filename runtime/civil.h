/* civil: the proleptic Gregorian calendar on days since 1970-01-01 (Howard Hinnant's integer
 * algorithms), shared by date.c and tz.c: the one place the calendar is written. */
#ifndef SOURCE_LUA_CIVIL_H
#define SOURCE_LUA_CIVIL_H

#include <stdint.h>

struct civil {
	int year, month, day;
};

/* a / b rounded towards minus infinity, for b > 0. */
static inline int64_t civil_floor_div(int64_t a, int64_t b)
{
	return a / b - (a % b < 0);
}

/* The date of a day; any day whose year fits an int. */
static inline struct civil civil_from_days(int64_t days)
{
	int64_t z = days + 719468;
	int64_t era = civil_floor_div(z, 146097);
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

/* The day of a date (month 1-12; a day past the month's end counts on into the next). */
static inline int64_t civil_to_days(int64_t year, int month, int day)
{
	int64_t y = year - (month <= 2);
	int64_t era = civil_floor_div(y, 400);
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

#endif
