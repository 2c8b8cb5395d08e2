/* engine: reading one stream: its partitions, each read window by window and page by page through
 * an explicit state machine, several at once on one libcurl multi handle. */
#ifndef SOURCE_LUA_ENGINE_H
#define SOURCE_LUA_ENGINE_H

#include <lua.h>
#include <stdint.h>

#include "cursor.h"
#include "proto.h"
#include "state.h"
#include "stream.h"

struct runtime;
struct script_def;

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
	int def_idx;    /* the stream's table */
	int config;     /* the config */
	int pk_paths;   /* the primary key as a list of paths; 0 without one */
	int incremental;
	struct cursor_plan plan;
	struct stream_state state;
	struct read_error err;
	int running_sent; /* the stream's RUNNING status is out */
	size_t partitions_read, partitions_up_to_date;
};

/* Records the first failure of the read (later ones are consequences). Returns -1. */
int read_fail(struct stream_read *r, enum proto_failure type, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Reads one configured stream (script_idx: the script_def userdata; configured_idx: its entry of
 * the configured catalog; states_idx: the incoming state; legacy_idx: the whole-source blob, or 0)
 * and writes every message of it: statuses, records, checkpoints, and on failure the state of
 * what it emitted and one TRACE error. Returns 0, or -1 when it failed. */
int engine_read_stream(struct runtime *rt, const struct script_def *script, int script_idx, int config_idx,
		       int configured_idx, int states_idx, int legacy_idx);

#endif
