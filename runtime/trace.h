/* trace: what a read does, made visible. `test-read` prints it as a readable trace or JSON lines
 * instead of the protocol's messages; `--debug` on any command writes its request and response
 * events as DEBUG LOG messages. Every URL and header in it is masked. */
#ifndef SOURCE_LUA_TRACE_H
#define SOURCE_LUA_TRACE_H

#include <lua.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

struct runtime;
struct http_request;
struct http_response;
struct partition_counts;

struct trace_options {
	int json;         /* JSON lines instead of text */
	int infer_schema; /* print a JSON schema inferred from the records, and how it differs */
	int verbose;      /* INFO logs too */
	int64_t max_records, max_pages, max_partitions; /* per stream; 0: no limit */
};

struct trace {
	int active; /* test-read: stdout carries the trace */
	struct trace_options opt;
	lua_State *L;     /* the formatter's own state (runtime/trace.lua), never the script's */
	int handle;       /* its functions {line, finish, describe} in its registry */
	struct buf carry; /* the start of a line a flush cut */
	int progress;     /* stderr is a terminal: a progress line for long reads */
	int64_t progress_at_ms;
};

/* Starts test-read's trace: stdout becomes the trace. declared_idx: a table stream name ->
 * json_schema in the script's state (for --infer-schema's differences), or 0. 0, or -1. */
int trace_start(struct runtime *rt, const struct trace_options *opt, int declared_idx);
/* Ends it: what was held back, the inferred schemas; stdout is flushed. */
void trace_finish(struct runtime *rt);
void trace_free(struct runtime *rt);

/* Whether events are wanted at all (test-read or --debug). */
int trace_wanted(const struct runtime *rt);

/* The engine's events. stream and partition name the place; partition may be NULL. */
void trace_partition(struct runtime *rt, const char *stream, const char *partition, const char *from, const char *to,
		     int reading);
void trace_request(struct runtime *rt, const char *stream, const char *partition, const struct http_request *req);
void trace_response(struct runtime *rt, const char *stream, const char *partition, const struct http_response *resp,
		    int64_t elapsed_ms);
void trace_page(struct runtime *rt, const char *stream, const char *partition, int page, int64_t parsed,
		const struct partition_counts *before, const struct partition_counts *after, const char *next);
void trace_limit(struct runtime *rt, const char *stream, const char *limit, int64_t value);

#endif
