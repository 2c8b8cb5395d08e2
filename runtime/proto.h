/* proto: Airbyte protocol messages on stdout, one per line, through one buffer. */
#ifndef SOURCE_LUA_PROTO_H
#define SOURCE_LUA_PROTO_H

#include <lua.h>
#include <stdint.h>

#include "buf.h"

struct secrets;

/* stdout, as the protocol's messages go out on it: one buffer, flushed at the points that matter. */
struct output {
	struct buf buf;
	uint64_t flushed;              /* bytes handed to write(2) so far */
	int failed;                    /* stdout is gone (the platform stopped reading): later writes are dropped */
	int error;                     /* the errno of the write that failed */
	const struct secrets *secrets; /* masked out of every text written */
	/* When set, whole lines go here instead of stdout (test-read's trace, trace.c). */
	void (*divert)(void *ctx, const char *lines, size_t len);
	void *divert_ctx;
};

enum proto_failure { PROTO_SYSTEM_ERROR, PROTO_CONFIG_ERROR, PROTO_TRANSIENT_ERROR };

void proto_init(struct output *o, const struct secrets *secrets);
/* Writes out what is buffered; returns -1 once stdout is gone (then every later write is dropped). */
int proto_flush(struct output *o);
int proto_stdout_failed(const struct output *o);
/* Every byte of every message so far, written or buffered: differences measure what went out. */
uint64_t proto_bytes(const struct output *o);
void proto_shutdown(struct output *o);

/* Texts are masked for secrets before they are written. */
void proto_log(struct output *o, const char *level, const char *text);
/* The same for text that may hold NUL bytes (Lua strings). */
void proto_log_text(struct output *o, const char *level, const char *text, size_t len);
void proto_logf(struct output *o, const char *level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void proto_trace_error(struct output *o, enum proto_failure type, const char *message, const char *internal,
		       const char *stack);
const char *proto_failure_name(enum proto_failure type);
int proto_failure_from_name(const char *name, enum proto_failure *type);
/* status: STARTED, RUNNING, COMPLETE, INCOMPLETE; rate_limited_until_ms > 0 adds a RATE_LIMITED reason. */
void proto_stream_status(struct output *o, const char *stream, const char *status, int64_t rate_limited_until_ms);
void proto_connection_status(struct output *o, int succeeded, const char *message);

/* RECORD for the data table at data_idx; -1 with err when data cannot be written as JSON. */
int proto_record(struct output *o, lua_State *L, const char *stream, int data_idx, int64_t emitted_at_ms, char *err,
		 size_t errlen);

/* The fixed parts of a stream's RECORD messages, so that a page's records are written with three
 * copies each around their data. */
struct proto_record_frame {
	struct buf head, tail;
};
void proto_record_frame_init(struct proto_record_frame *f, const char *stream, int64_t emitted_at_ms);
void proto_record_frame_free(struct proto_record_frame *f);
/* Complete message lines made elsewhere (a page's RECORD messages): appended, or written at once
 * after what is buffered when they are as large as the buffer, which spares copying them. */
void proto_write_lines(struct output *o, const char *lines, size_t len);
/* RECORD whose data is the JSON object text data (already valid JSON). */
void proto_record_framed(struct output *o, const struct proto_record_frame *f, const char *data, size_t len);

/* Writes {"type": type, key: <table at idx>}. Returns -1 with err when the table is not JSON. */
int proto_message(struct output *o, lua_State *L, const char *type, const char *key, int idx, char *err, size_t errlen);

/* STATE of one stream: its stream_state as JSON text (an object), and, when legacy_idx is not 0,
 * as data the whole-source blob at legacy_idx with that state in place of the blob's own entry for
 * the stream (in the message only: the blob is left as it was). */
int proto_stream_state_json(struct output *o, lua_State *L, const char *stream, const char *state, size_t state_len,
			    int legacy_idx, int64_t record_count, char *err, size_t errlen);

#endif
