/* devtools: the commands for writing a stream: test-read (a read made visible, with limits, no
 * catalog needed) and catalog (a configured catalog from discover). */
#ifndef SOURCE_LUA_DEVTOOLS_H
#define SOURCE_LUA_DEVTOOLS_H

#include <stdint.h>

struct runtime;
struct script_def;

struct dev_options {
	const char *stream;  /* test-read: only this stream */
	const char *streams; /* catalog: "a,b" */
	const char *mode;    /* catalog: full_refresh or incremental */
	int64_t max_records, max_pages, max_partitions;
	int json, infer_schema, verbose;
};

/* Reads every stream of the script (or o->stream) as test-read: a trace on stdout. Returns the
 * exit status. script and def_idx: the script's table and its script_def userdata. */
int command_test_read(struct runtime *rt, int script, const struct script_def *def, int def_idx, const char *config,
		      const char *state, const struct dev_options *o);

/* Writes a ConfiguredAirbyteCatalog of the script's streams (or o->streams) on stdout. */
void command_catalog(struct runtime *rt, int script, const struct script_def *def, int def_idx, const char *config,
		     const struct dev_options *o);

#endif
