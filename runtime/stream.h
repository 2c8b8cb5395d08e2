/* stream: the table a script returns and its stream definitions, checked once when it is loaded. */
#ifndef SOURCE_LUA_STREAM_H
#define SOURCE_LUA_STREAM_H

#include <lua.h>
#include <stddef.h>
#include <stdint.h>

#include "cursor.h"
#include "paginate.h"

struct runtime;

/* What to do with an answer that is not a page (errors = {...} in the stream's definition). */
enum error_action {
	ERROR_RETRY,  /* ask again later, within the retry budget */
	ERROR_IGNORE, /* the window counts as read with no records; one WARN line */
	ERROR_FAIL,   /* the read fails, with the rule's failure_type */
};

#define STREAM_MAX_ERROR_RULES 16
#define STREAM_MAX_RULE_STATUSES 16

struct error_rule {
	int statuses[STREAM_MAX_RULE_STATUSES]; /* none: any status */
	int status_count;
	const char *message; /* text the answer's body must contain; NULL: any */
	enum error_action action;
	int failure_type; /* an enum proto_failure for ERROR_FAIL; -1: as without the rule */
};

struct stream_def {
	const char *name;
	int index; /* 1-based position in the script's streams */
	struct cursor_def cursor;
	int has_primary_key;
	int partitioned;
	const char *partition_state_key;
	/* parent = {stream, field}: the partitions are the values of field in the parent's records */
	const char *parent_name, *parent_field;
	const struct stream_def *parent;
	int has_describe_error;
	int error_rule_count;
	struct error_rule error_rules[STREAM_MAX_ERROR_RULES];
	struct paginator_def paginator;
	enum schema_check { SCHEMA_CHECK_ERROR, SCHEMA_CHECK_WARN, SCHEMA_CHECK_OFF } schema_check;
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

#endif
