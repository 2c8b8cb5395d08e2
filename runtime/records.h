/* records: the response object parse() sees, declared record mappings (records.declare) and the
 * record batches they produce from a page's text (page_walk.c), without a Lua table per item. */
#ifndef SOURCE_LUA_RECORDS_H
#define SOURCE_LUA_RECORDS_H

#include <lua.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "cursor.h"

#define RECORDS_NO_VALUE INT64_MIN

struct record_batch;
struct runtime;

/* Opens the `records` module (records.declare). [-0, +1, m] */
int records_open(lua_State *L);

/* Pushes the response object of an answer: {status, url, text, body}, text made a Lua string and
 * body decoded as JSON on first use. url_idx holds the URL; text is copied. [-0, +1, m] */
void records_push_response(lua_State *L, long status, int url_idx, const char *text, size_t len);

/* The same, taking body's memory instead of copying it: body is left empty. [-0, +1, m] */
void records_push_response_taking(lua_State *L, long status, int url_idx, struct buf *body);

/* After parse() failed: 1, with the reason, when it failed because the page at response_idx is
 * not JSON (a truncated or garbled answer, worth asking again); else 0. */
int records_response_not_json(lua_State *L, int response_idx, char *why, size_t whylen);

/* For the engine, once parse has returned: the answer's text of the response at response_idx is
 * freed, now or, when batches still hold it, with the last of them, instead of when the collector
 * gets to it. The collector cannot tell that it matters: it is malloc'ed, ~250 KB behind userdata
 * of a few bytes, and was what a full collection after every page was for. A script that kept the
 * response and reads its text later gets an error. [-0, +0, -] */
void records_response_release(lua_State *L, int response_idx);
/* The same for the batch at idx (when it is one), once its records are emitted: its record
 * buffers go back for the next pages. Looking into it later is an error. [-0, +0, -] */
void records_batch_release(lua_State *L, int idx);
/* Whether records_batch_release gave the batch's records back (it has none left). */
int records_batch_released(const struct record_batch *b);
/* How many answers' texts and batches are not freed yet: beyond what the slots hold, garbage the
 * collector should be asked for (a batch the script made and did not return, say). */
size_t records_held(const struct runtime *rt);

/* The record batch at idx (what mapper:map returns), or NULL when the value is something else. */
const struct record_batch *records_to_batch(lua_State *L, int idx);

/* Whether the batch's page has been walked (on a worker, during a sync): settling will not wait. */
int records_batch_ready(const struct record_batch *b);

enum records_outcome { RECORDS_OK, RECORDS_NOT_JSON, RECORDS_WRONG_SHAPE };
/* Waits for the walk, then tells how it went; why says what was wrong (for RECORDS_WRONG_SHAPE
 * with the script line that called map). The accessors below need RECORDS_OK. */
enum records_outcome records_batch_settle(const struct record_batch *b, char *why, size_t whylen);
/* Pushes the next page's URL that the page gave (a string), or nil. [-0, +1, m] */
void records_batch_push_next_url(lua_State *L, const struct record_batch *b);
size_t records_batch_count(const struct record_batch *b);
/* Which value column holds the declared field called name as values of a cursor of kind: days for
 * as = day, day_from_ms or day_from_s; microseconds for datetime, datetime_from_ms or
 * datetime_from_s; the integer for integer. -1 when no field of that name has such values. */
int records_batch_column(const struct record_batch *b, const char *name, enum cursor_kind kind);
/* Whether the batch's records were framed as RECORD messages of this stream (ctx.stream was it). */
int records_batch_framed_for(const struct record_batch *b, const char *stream);
/* Record i as a whole RECORD message line, newline included; consecutive records are adjacent. */
void records_batch_line(const struct record_batch *b, size_t i, const char **line, size_t *len);
/* 1 when every record has a value in column and the values ascend: then first and last are the first
 * and the last record's, and all the records are one run of lines (records_batch_lines). */
int records_batch_column_span(const struct record_batch *b, int column, int64_t *first, int64_t *last);
/* All the records as RECORD message lines, one after another. */
void records_batch_lines(const struct record_batch *b, const char **lines, size_t *len);
/* Record i: its data object as JSON text, and its value in column (RECORDS_NO_VALUE when absent
 * or when column is -1). */
void records_batch_get(const struct record_batch *b, size_t i, int column, const char **data, size_t *len,
		       int64_t *day);

#endif
