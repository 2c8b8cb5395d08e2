/* stream_read: one stream's read as the engine and emission share it (engine.c, emit.c). */
#ifndef SOURCE_LUA_STREAM_READ_H
#define SOURCE_LUA_STREAM_READ_H

#include <lua.h>
#include <stddef.h>
#include <stdint.h>

#include "cursor.h"
#include "proto.h"
#include "state.h"
#include "stream.h"

struct runtime;

struct read_error {
	int set;
	enum proto_failure type;
	char message[2048];
	char stack[4096];
};

/* One stream's read: what every part of the engine (engine.c, emit.c) shares. */
struct stream_read {
	struct runtime *rt;
	lua_State *L;
	const struct stream_def *def;
	int def_idx;  /* the stream's table */
	int config;   /* the config */
	int pk_paths; /* the primary key as a list of paths; 0 without one */
	int incremental;
	struct cursor_plan plan;
	struct stream_state state;
	struct read_error err;
	int running_sent; /* the stream's RUNNING status is out */
	int script_idx;   /* the script_def userdata */
	/* Reading a parent for its child's partitions: no record, STATE or status goes out; each
	 * record's collect_field value is added once to collect_list. */
	const char *collect_field;
	int collect_list, collect_seen;
	size_t collected_records, collect_missing;
	int64_t pages_read;
	int stopped_at_limit;     /* test-read's --max-pages or --max-records ended the read */
	int partition_limit_said; /* test-read's --max-partitions was reported */
	size_t partitions_read, partitions_up_to_date;
};

/* Records the first failure of the read (later ones are consequences). Returns -1. */
int read_fail(struct stream_read *r, enum proto_failure type, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
