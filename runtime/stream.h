/* stream: the table a script returns and its stream definitions, checked once when it is loaded. */
#ifndef SOURCE_LUA_STREAM_H
#define SOURCE_LUA_STREAM_H

#include <lua.h>
#include <stddef.h>
#include <stdint.h>

struct runtime;
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
	const char *strftime; /* FORMAT_STRFTIME */
	const struct tz_zone *zone; /* days are counted, and local times read, in it; NULL: UTC */
	/* Day: seconds into a day at which its data is final (day_complete_at); the default, a whole
	 * day, means once it has ended. */
	int complete_at;
	struct cursor_step ceiling_lag; /* data newer than now minus this is not final yet */
	int ceiling_declared; /* day_complete_at or ceiling_lag was given */
};

struct stream_def {
	const char *name;
	int index; /* 1-based position in the script's streams */
	struct cursor_def cursor;
	int has_primary_key;
	int partitioned;
	const char *partition_state_key;
	int has_describe_error;
};

struct script_def {
	int legacy_state; /* write the tutorial's whole-source state blob in every STATE's data */
	int has_check;
	size_t count;
	struct stream_def streams[];
};

/* Checks the table the script returned (at script_idx) and every stream in it; raises a
 * system_error that names the offending key (and the closest valid one) on the first mistake.
 * Pushes a userdata that owns the result and keeps what it points to alive. [-0, +1, e] */
const struct script_def *stream_load_script(struct runtime *rt, int script_idx);

/* The definition of the stream called name, or NULL. */
const struct stream_def *stream_find(const struct script_def *script, const char *name);

/* Pushes the stream's own table (script_idx: the script_def userdata). [-0, +1, -] */
void stream_push_table(lua_State *L, int script_idx, const struct stream_def *def);

/* Pushes the AirbyteStream that discover lists for the stream. [-0, +1, m] */
void stream_push_catalog_entry(lua_State *L, int script_idx, const struct stream_def *def);

/* The name of a kind or an order, as scripts spell it. */
const char *stream_kind_name(enum cursor_kind kind);
const char *stream_order_name(enum cursor_order order);

#endif
