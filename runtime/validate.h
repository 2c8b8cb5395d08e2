/* validate: checking a config against the spec's connectionSpecification (a JSON Schema subset). */
#ifndef SOURCE_LUA_VALIDATE_H
#define SOURCE_LUA_VALIDATE_H

#include <lua.h>
#include <stddef.h>

/* Returns 0 when the value at value_idx satisfies the schema at schema_idx, else -1 with a message
 * naming the field. Understands type, required, properties, items, enum, pattern, format (date,
 * date-time), minimum, maximum, minLength, maxLength, minItems, maxItems. [-0, +0, m] */
int validate_config(lua_State *L, int schema_idx, int value_idx, char *err, size_t errlen);

/* validate_config for a record against its stream's json_schema: type and required only (with
 * properties and items), the message naming the field. [-0, +0, m] */
int validate_record(lua_State *L, int schema_idx, int value_idx, char *err, size_t errlen);

/* Calls fn(ctx, value) for every value in the config that the schema marks airbyte_secret. [-0, +0, m] */
void validate_each_secret(lua_State *L, int schema_idx, int value_idx, void (*fn)(void *ctx, const char *value),
			  void *ctx);

#endif
