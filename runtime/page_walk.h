/* page_walk: one validating pass over a page of JSON that writes each item's record as JSON, per
 * a compiled field mapping (records.declare). Pure C, no Lua: it runs on worker threads. */
#ifndef SOURCE_LUA_PAGE_WALK_H
#define SOURCE_LUA_PAGE_WALK_H

#include <stddef.h>
#include <stdint.h>

#include "date.h"

#define WALK_MAX_FIELDS 64
/* The most segments all the fields' from paths have together (a path's members in common with
 * another's count once). */
#define WALK_MAX_NODES 256
#define WALK_NO_VALUE INT64_MIN

/* What a field writes: a value as the page spells it (FROM_COPY), converted per its as
 * (FROM_INTEGER to FROM_DATETIME_S), or a constant rendered before the walk. FROM_DAY and
 * FROM_DATETIME copy a string that must be a day or an ISO 8601 instant. */
enum walk_kind {
	FROM_COPY,
	FROM_INTEGER,
	FROM_NUMBER,
	FROM_STRING,
	FROM_BOOLEAN,
	FROM_DAY,
	FROM_DAY_MS,
	FROM_DAY_S,
	FROM_DATETIME,
	FROM_DATETIME_MS,
	FROM_DATETIME_S,
	FROM_CONTEXT,
	FROM_VALUE
};

/* What the int64 column of a field holds: each record of the kinds that have one also gets its
 * value there (days since 1970-01-01, microseconds since the epoch, the integer), so that the
 * engine knows every record's cursor without reading it back from the text. */
enum walk_column { COLUMN_NONE, COLUMN_INTEGER, COLUMN_DAY, COLUMN_DATETIME };

static inline enum walk_column walk_kind_column(enum walk_kind kind)
{
	switch (kind) {
	case FROM_INTEGER: return COLUMN_INTEGER;
	case FROM_DAY:
	case FROM_DAY_MS:
	case FROM_DAY_S: return COLUMN_DAY;
	case FROM_DATETIME:
	case FROM_DATETIME_MS:
	case FROM_DATETIME_S: return COLUMN_DATETIME;
	default: return COLUMN_NONE;
	}
}

static inline int walk_kind_has_column(enum walk_kind kind)
{
	return walk_kind_column(kind) != COLUMN_NONE;
}

struct walk_field {
	enum walk_kind kind;
	const char *name;
	const char *key; /* "name": */
	size_t key_len;
	int source;                 /* the value it reads (all but FROM_CONTEXT and FROM_VALUE) */
	int column;                 /* where its value goes, for the kinds walk_kind_has_column names */
	const struct tz_zone *zone; /* FROM_DAY_MS's and FROM_DAY_S's days, FROM_DATETIME's texts without an
				     * offset; NULL: UTC */
	/* A from field's default: its JSON text, written when the field would be left out (fallback_len
	 * 0: none), and its value for the column (WALK_NO_VALUE for null). */
	const char *fallback;
	size_t fallback_len;
	int64_t fallback_column;
	int required; /* an item whose path finds nothing is an error */
};

/* One member on the fields' from paths: the item's members ("properties" of
 * "properties.email") and, under them, members of the objects those hold. The nodes form a tree
 * whose top level is the item's members; each source is the node its path ends at. */
struct walk_node {
	const char *name; /* the member's name: one segment of a path, not NUL-terminated */
	size_t len;
	int source;     /* the source whose path ends here; -1 for none */
	int parent;     /* -1 for a member of the item */
	int child;      /* the first member of this member's object on a path; -1 for none */
	int sibling;    /* the next member of the same object on a path; -1 for none */
	int slot;       /* a node with children: its row of the walk's member guesses */
	uint64_t below; /* the sources whose paths go on through this member (bit i: source i) */
};

struct walk_mapping {
	const char *list; /* the member holding the items */
	size_t list_len;
	int list_is_root; /* list is "$": the page itself is the array of items */
	const char *next; /* the member holding the next page's URL; NULL for none */
	size_t next_len;
	int nfields, nsources, ncolumns;
	size_t fixed_bound; /* most bytes a record takes beyond what it copies from its item */
	int max_copies;     /* most copies a record holds of one byte of its item (bound_copies) */
	struct walk_field fields[WALK_MAX_FIELDS];
	struct {
		const char *name; /* its path as declared, for messages */
		size_t len;
	} sources[WALK_MAX_FIELDS];
	struct walk_node nodes[WALK_MAX_NODES];
	int nnodes;
	int first;       /* the first of the item's members on a path; -1 for none */
	int nslots;      /* nodes with children */
	uint64_t nested; /* the sources whose paths go into an object of the item */
};

/* What a context or value field writes, rendered before the walk; len 0 leaves the field out. */
struct walk_constant {
	const char *text;
	size_t len;
};

/* Record i is a whole RECORD message line, head + data + tail (the frame), in data. */
struct walk_entry {
	size_t offset, len;           /* the line */
	size_t data_offset, data_len; /* the data object, from the line's start */
};

/* What goes around every record's data: the RECORD message's start, and its end with the
 * newline. */
struct walk_frame {
	const char *head, *tail;
	size_t head_len, tail_len;
};

/* Owned by whoever walks; reusable from one page to the next (malloc'ed). */
struct walk_buffers {
	char *data;
	size_t cap;
	struct walk_entry *entries;
	int64_t *cols; /* ncolumns per record */
	size_t entries_cap;
};

enum walk_outcome { WALK_OK, WALK_NOT_JSON, WALK_WRONG_SHAPE };

/* A value column over all the records of a page: the engine emits the page in one piece when
 * every record has its value and the values ascend. */
struct walk_column_span {
	int64_t first, last;
	int every_record, ascending;
};

struct walk_output {
	struct walk_buffers mem;
	size_t len, count;
	struct walk_column_span column_span[WALK_MAX_FIELDS];
	enum walk_outcome outcome;
	char message[256]; /* why, when not WALK_OK */
	/* The next page's URL as the page spells it, quotes included; NULL when there is none. */
	const char *next;
	size_t next_len;
	int next_escaped;
};

/* Walks text (text[len] must be readable: a NUL, as Lua strings have) into out, whose buffers may
 * hold a previous page's memory. The records may use at most memory_cap bytes. */
void page_walk(const struct walk_mapping *m, const char *text, size_t len, const struct walk_constant *constants,
	       const struct walk_frame *frame, size_t memory_cap, struct walk_output *out);

void walk_buffers_free(struct walk_buffers *mem);

#endif
