/* cursor: cursor kinds (day, datetime, integer): reading, comparing and writing their values,
 * steps (windows, lookback, the ceiling's lag), and the bounds of one read of a stream. */
#ifndef SOURCE_LUA_CURSOR_H
#define SOURCE_LUA_CURSOR_H

#include <lua.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "proto.h"

struct tz_zone;

/* What a stream's cursor values are (cursor.c). NONE: the stream has no cursor and is read in
 * full each time. */
enum cursor_kind { CURSOR_NONE, CURSOR_DAY, CURSOR_DATETIME, CURSOR_INTEGER };
/* The order in which the API hands out a partition's records, by cursor value. */
enum cursor_order { ORDER_ASCENDING, ORDER_DESCENDING, ORDER_UNSORTED };
/* How a datetime cursor is spelt in records (state always holds RFC 3339). */
enum cursor_format { FORMAT_RFC3339, FORMAT_EPOCH_S, FORMAT_EPOCH_MS, FORMAT_STRFTIME };

/* An amount to move a cursor by (windows, lookback, the ceiling's lag): ISO 8601 durations for
 * days and datetimes (months and days on the calendar of the stream's zone, the rest in
 * microseconds), a plain count for integers. */
struct cursor_step {
	int64_t months, days, micros;
	int64_t count;
	int set;
};

struct cursor_def {
	enum cursor_kind kind;
	const char *field; /* the record member that holds the value */
	enum cursor_order order;
	enum cursor_format format;
	const char *strftime;       /* FORMAT_STRFTIME */
	const struct tz_zone *zone; /* days are counted, and local times read, in it; NULL: UTC */
	/* Day: seconds into a day at which its data is final (day_complete_at); the default, a whole
	 * day, means once it has ended. */
	int complete_at;
	struct cursor_step ceiling_lag; /* data newer than now minus this is not final yet */
	int ceiling_declared;           /* day_complete_at or ceiling_lag was given */
};

/* A kind's or an order's name, as scripts spell it; NULL-terminated lists of them, in enum order. */
extern const char *const cursor_kind_names[];
extern const char *const cursor_order_names[];

/* The longest text of a cursor value, NUL included. Every kind's values are int64, ordered as the
 * values are: days since 1970-01-01 for days, microseconds since the epoch for datetimes, the
 * number itself for integers. */
#define CURSOR_TEXT_MAX 64

/* The bounds of one read of a stream, fixed when it starts (the clock does not move them). */
struct cursor_plan {
	int has_start;
	int64_t start; /* the first value to read when a partition has no state */
	int has_end;
	int64_t end; /* days, integers: the last value to read; datetimes: the first not to */
	int has_ceiling;
	int64_t ceiling; /* values at or past it are not final: checkpoints never reach them */
	struct cursor_step window, lookback;
};

/* A window of a partition's read: [from, to] for days and integers, [from, to) for datetimes. */
struct cursor_window {
	int has_from, has_to;
	int64_t from, to;
};

/* A step from a Lua value at idx: an ISO 8601 duration ("P30D", "PT6H", "P1M") for days and
 * datetimes, a whole number of days for days_only settings (window_days), a count for integers.
 * Returns 0, or -1 with why. [-0, +0, -] */
int cursor_step_from_lua(const struct cursor_def *c, lua_State *L, int idx, int days_only, struct cursor_step *step,
			 char *why, size_t whylen);

/* v moved by step, sign times (+1 or -1); saturates at the ends of the kind's range. */
int64_t cursor_add(const struct cursor_def *c, int64_t v, const struct cursor_step *step, int sign);

/* A record's value as Lua hands it over (a string in the stream's format, or a number for
 * integers and epoch formats). Returns 0, or -1 with why. [-0, +0, -] */
int cursor_from_lua(const struct cursor_def *c, lua_State *L, int idx, int64_t *v, char *why, size_t whylen);

/* A value as the state or a config spells it (days: YYYY-MM-DD; datetimes: RFC 3339 or a day;
 * integers: a number or its decimal text). Returns 0, or -1 with why. [-0, +0, -] */
int cursor_from_state(const struct cursor_def *c, lua_State *L, int idx, int64_t *v, char *why, size_t whylen);

/* Pushes v as the script sees it in ctx.from and ctx.to: a day's text, a datetime in the
 * stream's cursor_format (RFC 3339 in UTC by default), an integer. [-0, +1, m] */
void cursor_push(const struct cursor_def *c, lua_State *L, int64_t v);

/* Appends v as the state holds it: JSON text ("2022-03-11", "2026-11-30T09:15:00Z", 42). */
void cursor_write_json(const struct cursor_def *c, int64_t v, struct buf *out);

/* v as text for messages. */
const char *cursor_text(const struct cursor_def *c, int64_t v, char out[CURSOR_TEXT_MAX]);

/* Evaluates the stream's start, end, window, lookback and ceiling for a read that starts at
 * now_ms (def_idx: the stream's table, config_idx: the config). Returns 0, or -1 with the
 * message and its failure type. */
int cursor_plan_load(lua_State *L, const struct cursor_def *c, int def_idx, int config_idx, int64_t now_ms,
		     struct cursor_plan *plan, enum proto_failure *type, char *err, size_t errlen);

/* The first window of a partition whose next value to read is from (has_from 0: no lower bound,
 * an integer stream without a start); 0 when there is nothing to read. */
int cursor_first_window(const struct cursor_def *c, const struct cursor_plan *plan, int has_from, int64_t from,
			struct cursor_window *w);
/* The window after w; 0 when w reached the end. */
int cursor_next_window(const struct cursor_def *c, const struct cursor_plan *plan, const struct cursor_window *w,
		       struct cursor_window *next);
/* Whether v lies in the window. */
int cursor_in_window(const struct cursor_def *c, const struct cursor_window *w, int64_t v);

#endif
