/*
 * runtime: making and freeing the one struct runtime of a run. What each member is for is said in
 * runtime.h; the services themselves live in their own files (proto.c, http.c, pool.c, ...).
 */
#include "runtime.h"

#include <string.h>

#include "tz.h"

#define DEFAULT_MEMORY_BYTES ((size_t)256 << 20)
#define DEFAULT_INSTRUCTIONS 2000000000LL

int runtime_init(struct runtime *rt)
{
	memset(rt, 0, sizeof *rt);
	rt->limits.memory_bytes = DEFAULT_MEMORY_BYTES;
	rt->limits.instructions_per_call = DEFAULT_INSTRUCTIONS;
	rt->http_settings = http_default_settings;
	rt->checkpoints.interval_ms = 60 * 1000;
	rt->checkpoints.records_per_state = 20;
	rt->checkpoints.max_boundary_keys = 10000;
	proto_init(&rt->out, &rt->secrets);
	http_client_init(&rt->http, &rt->http_settings, &rt->out);
	pool_init(&rt->pool);
	rt->zones = tz_db_open(NULL);
	return rt->zones ? 0 : -1;
}

void runtime_free(struct runtime *rt)
{
	pool_destroy(&rt->pool);
	auth_free(rt);
	trace_free(rt);
	cassette_close(&rt->cassette);
	if (rt->L)
		host_close(rt->L);
	rt->L = NULL;
	http_response_free(&rt->lua_response);
	buf_free(&rt->lua_scratch);
	http_client_cleanup(&rt->http);
	proto_shutdown(&rt->out);
	secrets_clear(&rt->secrets);
	tz_db_close(rt->zones);
	rt->zones = NULL;
}
