/* curl_lazy: libcurl's functions, backed by libcurl.so.4 loaded on first use (see curl_lazy.c). */
#ifndef SOURCE_LUA_CURL_LAZY_H
#define SOURCE_LUA_CURL_LAZY_H

/* Starts loading libcurl on another thread, for a command that will need it for certain: the
 * ~8 ms of mapping it and its ~30 libraries (and its curl_global_init, whose TLS start runs on
 * a thread of its own meanwhile) overlap with reading the script, the config and the catalog. */
void curl_lazy_preload(void);
/* Waits for a preload to end (before exit, when nothing used libcurl after all). */
void curl_lazy_wait(void);
/* At exit: undoes the preload's curl_global_init when no curl_global_init claimed it. */
void curl_lazy_cleanup(void);

/* Why libcurl could not be loaded, or NULL. */
const char *curl_lazy_error(void);

#endif
