/* state: where each partition of a stream stands (its position), read from the platform's state
 * when a read starts and written back in STATE messages, as often as the checkpoint policy says. */
#ifndef SOURCE_LUA_STATE_H
#define SOURCE_LUA_STATE_H

#include <lua.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "stream.h"

struct runtime;

/*
 * A position says which records a partition has emitted, in three parts:
 * - every record whose cursor value is below cursor, and at cursor too unless open;
 * - when open, the records at cursor whose primary keys are in the set "at";
 * - the records beyond cursor whose keys are in the set "after" (a window of a descending or
 *   unsorted stream that failed half-way).
 * A resumed read skips exactly those, so no record is lost and none is sent twice. Key sets are
 * Lua tables kept by the stream_state (0: none).
 */
struct position {
	int has_cursor;
	int open;
	int64_t cursor;
	int at, after; /* slots in the stream_state's table of key sets; 0 for none */
};

struct partition_counts {
	int64_t emitted;
	int64_t outside_window;  /* records the API sent outside the window asked for */
	int64_t already_emitted; /* records an earlier read emitted (its state says so) */
	int64_t past_ceiling;    /* emitted, not final yet: the next read sends them again */
	int64_t skipped_by_script;
	int64_t ignored_answers;   /* answers an errors rule said to ignore: their windows count as read */
	int64_t schema_mismatches; /* records sent with a json_schema mismatch (schema_check = "warn") */
};

struct partition {
	const char *key;        /* NULL for a stream without partitions; kept alive by the stream_state */
	struct position resume; /* the incoming state's: what this read skips */
	struct position now;    /* what a checkpoint writes */
	int has_last;
	int64_t last; /* the last value emitted, for the ascending order check */
	int has_window_max;
	int64_t window_max; /* an unsorted window's greatest final value so far */
	int window_top;     /* the keys of its records at that value (a key set; 0 for none) */
	int overflow_logged;
	int dirty; /* now changed since entry was written */
	struct buf entry;
	struct partition_counts counts;
};

/* One stream's partitions and checkpoints during a read. */
struct stream_state {
	struct runtime *rt;
	const struct stream_def *def;
	size_t count;
	struct partition *parts;
	int sets; /* stack index of the table of key sets */
	/* Checkpoints: a STATE once the records written since the last one outweigh it 20 to 1 (the
	 * policy's ratio), or its interval has passed, and always at the end and before an error. */
	int64_t records_since;
	size_t bytes_since;
	size_t last_state_len;
	int64_t last_state_ms;
	int64_t records_total;
	int states_written;
	int changed; /* a position moved since the last STATE */
	struct buf json;
	int legacy; /* stack index of the whole-source blob when the script writes one, else 0 */
};

/* Makes the partitions (keys: a list of partition keys at keys_idx, or 0 for one partition
 * without a key) and pushes what owns them, then the table of key sets. [-0, +2, m] */
void state_open(struct stream_state *ss, struct runtime *rt, const struct stream_def *def, int keys_idx);

/* Reads the stream's entry of the incoming state (states_idx: {stream = stream_state}) into every
 * partition's resume and now positions. Returns 0, or -1 with a config_error message in err. */
int state_load(struct stream_state *ss, int states_idx, char *err, size_t errlen);

/* Key sets: a set holds primary keys as canonical JSON texts, in the order they were added. */
int state_set_new(struct stream_state *ss);
/* Whether the set holds the key (a string) at key_idx. */
int state_set_has(struct stream_state *ss, int set, int key_idx);
/* Adds the key at key_idx; returns -1 when the set already holds limit keys (nothing added). */
int state_set_add(struct stream_state *ss, int set, int key_idx, size_t limit);
size_t state_set_count(struct stream_state *ss, int set);
/* state_set_add, keeping the key's cursor value (the keys sent beyond a position). */
int state_set_add_valued(struct stream_state *ss, int set, int key_idx, int64_t value, size_t limit);
/* A new set of the entries whose value is past after (and those without a value), or 0 when none. */
int state_set_past(struct stream_state *ss, int set, int64_t after);
/* A new set with the same keys. */
int state_set_copy(struct stream_state *ss, int set);
void state_set_free(struct stream_state *ss, int set);

/* Sets now to a position, freeing the key sets it held that the new one does not. */
void state_position_set(struct stream_state *ss, struct partition *p, const struct position *to);

/* Records written since the last STATE, and their bytes. */
void state_count_records(struct stream_state *ss, int64_t records, size_t bytes);
/* Whether the policy wants a STATE now. */
int state_checkpoint_due(const struct stream_state *ss, int64_t now_ms);
/* Writes a STATE of every partition's now. Returns 0, or -1 with err. */
int state_checkpoint(struct stream_state *ss, char *err, size_t errlen);

/* The stream state as it stands, decoded (for the legacy blob of later streams). [-0, +1, m] */
void state_push_current(struct stream_state *ss);

#endif
