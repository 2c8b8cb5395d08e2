/*
 * cursor: what a cursor value is, for each kind a stream may declare.
 *
 * - day: a calendar day, "YYYY-MM-DD", counted in the stream's time zone (stock bars).
 * - datetime: an instant, compared as such whatever offset a record spells it with; read from
 *   RFC 3339 / ISO 8601 texts by default, or epoch seconds, epoch milliseconds or a strftime
 *   pattern (cursor_format); always written in state as RFC 3339 in UTC, to the microsecond.
 * - integer: an exact 64-bit integer (ids, sequence numbers), from a number or its decimal text.
 *
 * All three are int64 inside, so the engine compares and stores them without knowing the kind.
 * The bounds of a read (start, end, windows, lookback, the ceiling past which data is not final
 * yet) are worked out here once per stream, at the read's fixed "now".
 */
#define _GNU_SOURCE
#include "cursor.h"

#include <ctype.h>
#include <errno.h>
#include <lauxlib.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "date.h"
#include "host.h"
#include "json.h"
#include "tz.h"

#define MICROS 1000000LL
#define DAY_MICROS (DATE_SECONDS_PER_DAY * MICROS)
/* Datetimes the text forms can spell: the years 1000 to 9999. */
#define MIN_INSTANT (DATE_MIN_DAY * DAY_MICROS)
#define MAX_INSTANT ((DATE_MAX_DAY + 1) * DAY_MICROS - 1)
/* No step moves a cursor by more than the whole range (about 9,000 years). */
#define MAX_STEP_DAYS (DATE_MAX_DAY - DATE_MIN_DAY)

const char *const cursor_kind_names[] = {"none", "day", "datetime", "integer", NULL};
const char *const cursor_order_names[] = {"ascending", "descending", "unsorted", NULL};

static int64_t clamp(int64_t v, int64_t lo, int64_t hi)
{
	return v < lo ? lo : v > hi ? hi : v;
}

/* ---- steps ---- */

/* One "<number><unit>" of a duration; the number may have a fraction only for seconds. */
static int read_amount(const char **p, double *amount)
{
	char *end;
	errno = 0;
	if (!isdigit((unsigned char)**p))
		return -1;
	double value = strtod(*p, &end);
	if (errno || end == *p || !(value >= 0) || value > 1e12)
		return -1;
	*amount = value;
	*p = end;
	return 0;
}

static int parse_duration(const char *text, struct cursor_step *step)
{
	const char *p = text;
	memset(step, 0, sizeof *step);
	if (*p != 'P')
		return -1;
	p++;
	int in_time = 0, parts = 0;
	while (*p) {
		if (*p == 'T') {
			if (in_time)
				return -1;
			in_time = 1;
			p++;
			continue;
		}
		double n;
		if (read_amount(&p, &n))
			return -1;
		char unit = *p++;
		if (unit != 'S' && n != floor(n))
			return -1;
		if (!in_time && unit == 'Y')
			step->months += (int64_t)n * 12;
		else if (!in_time && unit == 'M')
			step->months += (int64_t)n;
		else if (!in_time && unit == 'W')
			step->days += (int64_t)n * 7;
		else if (!in_time && unit == 'D')
			step->days += (int64_t)n;
		else if (in_time && unit == 'H')
			step->micros += (int64_t)n * 3600 * MICROS;
		else if (in_time && unit == 'M')
			step->micros += (int64_t)n * 60 * MICROS;
		else if (in_time && unit == 'S')
			step->micros += (int64_t)llround(n * (double)MICROS);
		else
			return -1;
		parts++;
		if (step->months > MAX_STEP_DAYS / 28 || step->days > MAX_STEP_DAYS ||
		    step->micros > MAX_STEP_DAYS * DAY_MICROS)
			return -1;
	}
	return parts > 0 && !(in_time && p[-1] == 'T') ? 0 : -1;
}

int cursor_step_from_lua(const struct cursor_def *c, lua_State *L, int idx, int days_only, struct cursor_step *step,
			 char *why, size_t whylen)
{
	memset(step, 0, sizeof *step);
	if (days_only || c->kind == CURSOR_INTEGER) {
		int ok = 0;
		lua_Integer n = lua_tointegerx(L, idx, &ok);
		if (!ok || lua_type(L, idx) != LUA_TNUMBER || n < 0 ||
		    n > (days_only ? MAX_STEP_DAYS : INT64_MAX / 4)) {
			snprintf(why, whylen, "must be a whole number%s from 0 up", days_only ? " of days" : "");
			return -1;
		}
		if (days_only)
			step->days = n;
		else
			step->count = n;
		step->set = n > 0;
		return 0;
	}
	if (lua_type(L, idx) != LUA_TSTRING || parse_duration(lua_tostring(L, idx), step)) {
		snprintf(why, whylen, "'%s' is not an ISO 8601 duration such as \"P30D\", \"PT6H\" or \"P1M\"",
			 luaL_tolstring(L, idx, NULL));
		lua_pop(L, 1);
		return -1;
	}
	if (c->kind == CURSOR_DAY && step->micros) {
		snprintf(why, whylen, "'%s' has hours, minutes or seconds: day cursors move by whole days",
			 lua_tostring(L, idx));
		return -1;
	}
	step->set = step->months || step->days || step->micros;
	return 0;
}

/* Months and days on the calendar: the day of the month kept, or the month's last day. */
static int64_t add_calendar(int64_t day, int64_t months, int64_t days)
{
	if (months) {
		int y, m, d;
		date_civil_from_days(day, &y, &m, &d);
		int64_t index = (int64_t)y * 12 + (m - 1) + months;
		int64_t year = index >= 0 ? index / 12 : -((-index + 11) / 12);
		int month = (int)(index - year * 12) + 1;
		year = clamp(year, 1000, 9999);
		int64_t first = date_days_from_civil((int)year, month, 1);
		int64_t next = month == 12 ? date_days_from_civil((int)year + 1, 1, 1)
					   : date_days_from_civil((int)year, month + 1, 1);
		int64_t length = next - first;
		day = first + (d <= length ? d : length) - 1;
	}
	return clamp(day + days, DATE_MIN_DAY, DATE_MAX_DAY);
}

int64_t cursor_add(const struct cursor_def *c, int64_t v, const struct cursor_step *step, int sign)
{
	switch (c->kind) {
	case CURSOR_INTEGER: {
		int64_t n = step->count * sign;
		if ((n > 0 && v > INT64_MAX - n) || (n < 0 && v < INT64_MIN - n))
			return n > 0 ? INT64_MAX : INT64_MIN;
		return v + n;
	}
	case CURSOR_DAY: return add_calendar(v, step->months * sign, step->days * sign);
	case CURSOR_DATETIME: {
		if (step->months || step->days) {
			int64_t seconds = civil_floor_div(v, MICROS);
			int64_t fraction = v - seconds * MICROS;
			int64_t local = seconds + date_zone_offset(c->zone, seconds);
			int64_t day = civil_floor_div(local, DATE_SECONDS_PER_DAY);
			int64_t clock = local - day * DATE_SECONDS_PER_DAY;
			day = add_calendar(day, step->months * sign, step->days * sign);
			v = date_local_to_epoch(day * DATE_SECONDS_PER_DAY + clock, c->zone) * MICROS + fraction;
		}
		return clamp(v + step->micros * sign, MIN_INSTANT, MAX_INSTANT);
	}
	default: return v;
	}
}

/* ---- values ---- */

static int day_from_text(const char *text, size_t len, int64_t *v)
{
	char day[DATE_DAY_LEN];
	if (len != 10)
		return -1;
	memcpy(day, text, 10);
	day[10] = '\0';
	return date_parse_day(day, v);
}

static int integer_from_text(const char *text, size_t len, int64_t *v)
{
	char digits[32];
	if (len == 0 || len >= sizeof digits)
		return -1;
	memcpy(digits, text, len);
	digits[len] = '\0';
	char *end;
	errno = 0;
	long long n = strtoll(digits, &end, 10);
	if (errno || *end || !(isdigit((unsigned char)digits[0]) || digits[0] == '-'))
		return -1;
	*v = n;
	return 0;
}

/* An integer exactly, from a Lua integer or a float without a fraction inside 2^53. */
static int integer_from_number(lua_State *L, int idx, int64_t *v)
{
	if (lua_isinteger(L, idx)) {
		*v = (int64_t)lua_tointeger(L, idx);
		return 0;
	}
	double d = lua_tonumber(L, idx);
	if (d != floor(d) || fabs(d) > 9007199254740992.0)
		return -1;
	*v = (int64_t)d;
	return 0;
}

static int instant_from_epoch(double amount, double per_second, int64_t *v)
{
	double us = amount / per_second * (double)MICROS;
	if (!(us >= (double)MIN_INSTANT && us <= (double)MAX_INSTANT))
		return -1;
	*v = (int64_t)floor(us);
	return 0;
}

static int instant_from_strftime(const struct cursor_def *c, const char *text, int64_t *v)
{
	struct tm tm;
	memset(&tm, 0, sizeof tm);
	tm.tm_mday = 1;
	const char *end = strptime(text, c->strftime, &tm);
	if (!end || *end)
		return -1;
	int64_t day = date_days_from_civil(tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday);
	if (day < DATE_MIN_DAY || day > DATE_MAX_DAY)
		return -1;
	int64_t local = day * DATE_SECONDS_PER_DAY + tm.tm_hour * 3600 + tm.tm_min * 60 + tm.tm_sec;
	/* An offset the text spells (%z) wins over the stream's zone. */
	int64_t seconds = strstr(c->strftime, "%z") ? local - tm.tm_gmtoff : date_local_to_epoch(local, c->zone);
	*v = seconds * MICROS;
	return 0;
}

static int datetime_from_text(const struct cursor_def *c, const char *text, size_t len, int64_t *v)
{
	if (c->format == FORMAT_STRFTIME)
		return strlen(text) == len ? instant_from_strftime(c, text, v) : -1;
	if (c->format == FORMAT_EPOCH_S || c->format == FORMAT_EPOCH_MS) {
		char *end;
		errno = 0;
		double amount = strtod(text, &end);
		if (errno || end != text + len || len == 0)
			return -1;
		return instant_from_epoch(amount, c->format == FORMAT_EPOCH_S ? 1.0 : 1000.0, v);
	}
	return date_parse_instant(text, len, c->zone, v);
}

static const char *expected_form(const struct cursor_def *c)
{
	switch (c->kind) {
	case CURSOR_DAY: return "a YYYY-MM-DD date";
	case CURSOR_INTEGER: return "an integer";
	default: break;
	}
	switch (c->format) {
	case FORMAT_EPOCH_S: return "a number of seconds since 1970";
	case FORMAT_EPOCH_MS: return "a number of milliseconds since 1970";
	case FORMAT_STRFTIME: return "a date-time in its cursor_format";
	default: return "an ISO 8601 date-time";
	}
}

/* why: "'2026-11-30T09:15:00Z' is not a YYYY-MM-DD date", with a hint when another kind fits. */
static int not_a_value(const struct cursor_def *c, lua_State *L, int idx, char *why, size_t whylen)
{
	const char *shown = luaL_tolstring(L, idx, NULL);
	const char *hint = "";
	int64_t probe;
	if (c->kind == CURSOR_DAY && lua_type(L, idx) == LUA_TSTRING &&
	    date_parse_instant(shown, strlen(shown), NULL, &probe) == 0)
		hint = " (declare cursor_kind = \"datetime\" for a cursor that holds date-times)";
	else if (c->kind == CURSOR_DAY && lua_type(L, idx) == LUA_TNUMBER)
		hint = " (declare cursor_kind = \"integer\", or \"datetime\" with cursor_format = \"epoch_s\" or "
		       "\"epoch_ms\")";
	snprintf(why, whylen, "'%.80s' is not %s%s", shown, expected_form(c), hint);
	lua_pop(L, 1);
	return -1;
}

int cursor_from_lua(const struct cursor_def *c, lua_State *L, int idx, int64_t *v, char *why, size_t whylen)
{
	idx = lua_absindex(L, idx);
	int type = lua_type(L, idx);
	size_t len = 0;
	const char *text = type == LUA_TSTRING ? lua_tolstring(L, idx, &len) : NULL;
	int rc = -1;
	switch (c->kind) {
	case CURSOR_DAY: rc = text ? day_from_text(text, len, v) : -1; break;
	case CURSOR_INTEGER:
		rc = type == LUA_TNUMBER ? integer_from_number(L, idx, v) : text ? integer_from_text(text, len, v) : -1;
		break;
	case CURSOR_DATETIME:
		if (type == LUA_TNUMBER && (c->format == FORMAT_EPOCH_S || c->format == FORMAT_EPOCH_MS))
			rc = instant_from_epoch(lua_tonumber(L, idx), c->format == FORMAT_EPOCH_S ? 1.0 : 1000.0, v);
		else if (text)
			rc = datetime_from_text(c, text, len, v);
		break;
	default: break;
	}
	return rc ? not_a_value(c, L, idx, why, whylen) : 0;
}

int cursor_from_state(const struct cursor_def *c, lua_State *L, int idx, int64_t *v, char *why, size_t whylen)
{
	idx = lua_absindex(L, idx);
	if (c->kind != CURSOR_DATETIME || lua_type(L, idx) != LUA_TSTRING)
		return cursor_from_lua(c, L, idx, v, why, whylen);
	/* State and configs hold RFC 3339 (or a day, midnight in the stream's zone) whatever the
	 * records' format. */
	size_t len;
	const char *text = lua_tolstring(L, idx, &len);
	if (date_parse_instant(text, len, c->zone, v) == 0 && *v >= MIN_INSTANT && *v <= MAX_INSTANT)
		return 0;
	snprintf(why, whylen, "'%.80s' is not a YYYY-MM-DD date or an RFC 3339 date-time", text);
	return -1;
}

void cursor_push(const struct cursor_def *c, lua_State *L, int64_t v)
{
	char text[CURSOR_TEXT_MAX];
	if (c->kind == CURSOR_INTEGER) {
		lua_pushinteger(L, (lua_Integer)v);
		return;
	}
	if (c->kind == CURSOR_DATETIME && c->format == FORMAT_EPOCH_S) {
		lua_pushinteger(L, (lua_Integer)civil_floor_div(v, MICROS));
		return;
	}
	if (c->kind == CURSOR_DATETIME && c->format == FORMAT_EPOCH_MS) {
		lua_pushinteger(L, (lua_Integer)civil_floor_div(v, 1000));
		return;
	}
	if (c->kind == CURSOR_DATETIME && c->format == FORMAT_STRFTIME) {
		int64_t seconds = civil_floor_div(v, MICROS);
		int32_t offset = date_zone_offset(c->zone, seconds);
		time_t local = (time_t)(seconds + offset);
		struct tm tm;
		gmtime_r(&local, &tm);
		tm.tm_gmtoff = offset;
		tm.tm_zone = c->zone ? tz_abbreviation(c->zone, seconds) : "UTC";
		size_t n = strftime(text, sizeof text, c->strftime, &tm);
		lua_pushlstring(L, text, n);
		return;
	}
	lua_pushstring(L, cursor_text(c, v, text));
}

const char *cursor_text(const struct cursor_def *c, int64_t v, char out[CURSOR_TEXT_MAX])
{
	switch (c->kind) {
	case CURSOR_DAY: date_format_day(v, out); break;
	case CURSOR_DATETIME: date_format_instant(v, out); break;
	default: snprintf(out, CURSOR_TEXT_MAX, "%lld", (long long)v); break;
	}
	return out;
}

void cursor_write_json(const struct cursor_def *c, int64_t v, struct buf *out)
{
	char text[CURSOR_TEXT_MAX];
	if (c->kind == CURSOR_INTEGER) {
		json_write_int(out, (long long)v);
		return;
	}
	cursor_text(c, v, text);
	json_write_string(out, text, strlen(text));
}

/* ---- the bounds of a read ---- */

struct plan_context {
	lua_State *L;
	const struct cursor_def *c;
	int def, config;
	enum proto_failure *type;
	char *err;
	size_t errlen;
};

static int plan_fail(struct plan_context *p, enum proto_failure type, const char *fmt, const char *a, const char *b)
{
	*p->type = type;
	snprintf(p->err, p->errlen, fmt, a, b ? b : "");
	return -1;
}

/* Pushes the setting called name (or its other spelling alias): its value, or what its function
 * returns for the config. Returns -1 (nothing pushed) when the function failed. */
static int push_setting(struct plan_context *p, const char *name, const char *alias, const char **used)
{
	lua_State *L = p->L;
	*used = name;
	if (lua_getfield(L, p->def, name) == LUA_TNIL && alias) {
		lua_pop(L, 1);
		lua_getfield(L, p->def, alias);
		*used = alias;
	}
	if (lua_type(L, -1) != LUA_TFUNCTION)
		return 0;
	lua_pushvalue(L, p->config);
	if (host_call(L, 1, 1) == LUA_OK)
		return 0;
	struct host_error e;
	host_error_read(L, -1, &e);
	*p->type = e.failure;
	snprintf(p->err, p->errlen, "%s(config) failed: %s", *used, e.message);
	lua_pop(L, 1);
	return -1;
}

static int read_value_setting(struct plan_context *p, const char *name, const char *alias, int *has, int64_t *v)
{
	const char *used;
	if (push_setting(p, name, alias, &used))
		return -1;
	char why[200];
	*has = !lua_isnil(p->L, -1);
	int rc = *has ? cursor_from_state(p->c, p->L, -1, v, why, sizeof why) : 0;
	lua_pop(p->L, 1);
	return rc ? plan_fail(p, PROTO_CONFIG_ERROR, "%s: %s", used, why) : 0;
}

static int read_step_setting(struct plan_context *p, const char *name, const char *days_alias, struct cursor_step *s)
{
	const char *used;
	if (push_setting(p, name, days_alias, &used))
		return -1;
	char why[300];
	int rc = 0;
	memset(s, 0, sizeof *s);
	if (!lua_isnil(p->L, -1))
		rc = cursor_step_from_lua(p->c, p->L, -1, used == days_alias, s, why, sizeof why);
	lua_pop(p->L, 1);
	return rc ? plan_fail(p, PROTO_CONFIG_ERROR, "%s %s", used, why) : 0;
}

/* The first day that is not final: a day is final once day_complete_at has passed on it (by
 * default, once it has ended), or once it ended ceiling_lag ago. */
static int64_t day_ceiling(const struct cursor_def *c, int64_t now)
{
	if (c->ceiling_lag.set) {
		int64_t lagged = cursor_add(&(struct cursor_def){.kind = CURSOR_DATETIME, .zone = c->zone},
					    now * MICROS, &c->ceiling_lag, -1);
		return date_day_in_zone(civil_floor_div(lagged, MICROS), c->zone);
	}
	int64_t today = date_day_in_zone(now, c->zone);
	return date_seconds_into_day(now, c->zone) >= c->complete_at ? today + 1 : today;
}

int cursor_plan_load(lua_State *L, const struct cursor_def *c, int def_idx, int config_idx, int64_t now_ms,
		     struct cursor_plan *plan, enum proto_failure *type, char *err, size_t errlen)
{
	struct plan_context p = {L, c, lua_absindex(L, def_idx), lua_absindex(L, config_idx), type, err, errlen};
	memset(plan, 0, sizeof *plan);
	if (read_value_setting(&p, "start", "start_date", &plan->has_start, &plan->start) ||
	    read_value_setting(&p, "end", "end_date", &plan->has_end, &plan->end) ||
	    read_step_setting(&p, "window", c->kind == CURSOR_DAY ? "window_days" : NULL, &plan->window) ||
	    read_step_setting(&p, "lookback", c->kind == CURSOR_DAY ? "lookback_days" : NULL, &plan->lookback))
		return -1;
	if (!plan->has_start && c->kind != CURSOR_INTEGER)
		return plan_fail(&p, PROTO_SYSTEM_ERROR,
				 "no start: a %s cursor needs start (or start_date), a value or a "
				 "function(config)",
				 cursor_kind_names[c->kind], NULL);
	/* An end the script gives is final up to it, unless the script also says when data is final.
	 * Datetime bounds are whole seconds: APIs that take a time in a query rarely take fractions. */
	int64_t now = civil_floor_div(now_ms, 1000);
	now_ms = now * 1000;
	if (c->kind == CURSOR_DAY) {
		plan->has_ceiling = c->ceiling_declared || !plan->has_end;
		plan->ceiling = day_ceiling(c, now);
		if (!plan->has_end) {
			plan->has_end = 1;
			plan->end = plan->ceiling - 1;
		}
	} else if (c->kind == CURSOR_DATETIME) {
		plan->has_ceiling = c->ceiling_declared || !plan->has_end;
		plan->ceiling = cursor_add(c, now_ms * 1000, &c->ceiling_lag, -1);
		if (!plan->has_end) {
			plan->has_end = 1;
			plan->end = now_ms * 1000;
		}
	}
	if (plan->window.set && (!plan->has_start || !plan->has_end))
		return plan_fail(&p, PROTO_SYSTEM_ERROR, "window needs both start and end for %s cursors",
				 cursor_kind_names[c->kind], NULL);
	return 0;
}

/* Whether a window starting at from has anything to read. */
static int before_end(const struct cursor_def *c, const struct cursor_plan *plan, int64_t from)
{
	if (!plan->has_end)
		return 1;
	return c->kind == CURSOR_DATETIME ? from < plan->end : from <= plan->end;
}

int cursor_first_window(const struct cursor_def *c, const struct cursor_plan *plan, int has_from, int64_t from,
			struct cursor_window *w)
{
	memset(w, 0, sizeof *w);
	w->has_from = has_from;
	w->from = from;
	if (has_from && !before_end(c, plan, from))
		return 0;
	w->has_to = plan->has_end;
	w->to = plan->end;
	if (plan->window.set && has_from) {
		int64_t next = cursor_add(c, from, &plan->window, 1);
		int64_t to = c->kind == CURSOR_DATETIME ? next : next - 1;
		if (to < w->to)
			w->to = to;
	}
	return 1;
}

int cursor_next_window(const struct cursor_def *c, const struct cursor_plan *plan, const struct cursor_window *w,
		       struct cursor_window *next)
{
	if (!w->has_to || !w->has_from || (plan->has_end && w->to >= plan->end))
		return 0;
	int64_t from = c->kind == CURSOR_DATETIME ? w->to : w->to + 1;
	return cursor_first_window(c, plan, 1, from, next);
}

int cursor_in_window(const struct cursor_def *c, const struct cursor_window *w, int64_t v)
{
	if (w->has_from && v < w->from)
		return 0;
	if (!w->has_to)
		return 1;
	return c->kind == CURSOR_DATETIME ? v < w->to : v <= w->to;
}
