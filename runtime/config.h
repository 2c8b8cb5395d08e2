/* config: the config file of check, discover, read and test-read. */
#ifndef SOURCE_LUA_CONFIG_H
#define SOURCE_LUA_CONFIG_H

struct runtime;

/* Reads the config, registers its secrets, validates it against the script's spec (script: its
 * table) and applies the runtime settings it holds; pushes it. Returns 0, or -1 with the
 * validation message pushed instead (check reports it as FAILED, the others as a config_error). */
int config_load(struct runtime *rt, int script, const char *path);

#endif
