/* curl_lazy: libcurl's functions, backed by libcurl.so.4 loaded on first use (see curl_lazy.c). */
#ifndef SOURCE_LUA_CURL_LAZY_H
#define SOURCE_LUA_CURL_LAZY_H

/* Why libcurl could not be loaded, or NULL. */
const char *curl_lazy_error(void);

#endif
