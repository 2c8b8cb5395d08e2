/*
 * curl_lazy: libcurl, loaded on first use with dlopen instead of at start-up.
 *
 * Why: Debian's libcurl pulls in some thirty shared libraries (TLS, Kerberos, LDAP, SSH, HTTP/2,
 * ...), and mapping them costs ~20 ms before main runs, five times the whole `spec` budget. The
 * functions below have libcurl's own names and prototypes, so the rest of the runtime calls
 * libcurl as usual; each forwards to the real function once libcurl.so.4 is loaded. Only the
 * functions the runtime uses are here; a missing library makes them fail the way libcurl reports
 * failure (NULL handles, CURLE_FAILED_INIT), never crash.
 *
 * The loaded library and its function table are process-wide, as libcurl's own globals are: the
 * shims keep libcurl's signatures, so they cannot be handed the runtime. For a sync, main starts
 * the load on a thread of its own (curl_lazy_preload) while the script and config load.
 */
#define _GNU_SOURCE
#define CURL_DISABLE_TYPECHECK /* the type-checking macros would shadow the definitions below */
#include <curl/curl.h>
#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "curl_lazy.h"

#define LIBCURL_SONAME "libcurl.so.4"

static struct {
	CURLcode (*global_init)(long);
	void (*global_cleanup)(void);
	CURL *(*easy_init)(void);
	void (*easy_cleanup)(CURL *);
	void (*easy_reset)(CURL *);
	CURLcode (*easy_perform)(CURL *);
	CURLcode (*easy_setopt)(CURL *, CURLoption, ...);
	CURLcode (*easy_getinfo)(CURL *, CURLINFO, ...);
	const char *(*easy_strerror)(CURLcode);
	char *(*easy_escape)(CURL *, const char *, int);
	void (*free)(void *);
	struct curl_slist *(*slist_append)(struct curl_slist *, const char *);
	void (*slist_free_all)(struct curl_slist *);
	CURLM *(*multi_init)(void);
	CURLMcode (*multi_cleanup)(CURLM *);
	CURLMcode (*multi_add_handle)(CURLM *, CURL *);
	CURLMcode (*multi_remove_handle)(CURLM *, CURL *);
	CURLMcode (*multi_perform)(CURLM *, int *);
	CURLMcode (*multi_poll)(CURLM *, struct curl_waitfd[], unsigned int, int, int *);
	CURLMsg *(*multi_info_read)(CURLM *, int *);
	CURLU *(*url)(void);
	void (*url_cleanup)(CURLU *);
	CURLUcode (*url_set)(CURLU *, CURLUPart, const char *, unsigned int);
	CURLUcode (*url_get)(CURLU *, CURLUPart, char **, unsigned int);
} fn;

static void *library;
static char load_error[256];

/* POSIX's sanctioned way of turning dlsym's object pointer into a function pointer. */
static int resolve(void *slot, const char *name)
{
	void *symbol = dlsym(library, name);
	if (!symbol) {
		snprintf(load_error, sizeof load_error, "%s has no %s", LIBCURL_SONAME, name);
		return -1;
	}
	memcpy(slot, &symbol, sizeof symbol);
	return 0;
}

static int load_library(void)
{
	if (library)
		return 0;
	if (load_error[0])
		return -1;
	/* Lazy: what a library calls in another is bound at its first call, not all ~9,000 symbols
	 * at once (-0.6 ms of start). libcurl itself is linked with BIND_NOW, so a missing symbol of
	 * its own still fails here, not later. */
	void *handle = dlopen(LIBCURL_SONAME, RTLD_LAZY | RTLD_LOCAL);
	if (!handle) {
		snprintf(load_error, sizeof load_error, "cannot load %s: %s", LIBCURL_SONAME, dlerror());
		return -1;
	}
	library = handle;
	struct {
		void *slot;
		const char *name;
	} table[] = {
		{&fn.global_init, "curl_global_init"},
		{&fn.global_cleanup, "curl_global_cleanup"},
		{&fn.easy_init, "curl_easy_init"},
		{&fn.easy_cleanup, "curl_easy_cleanup"},
		{&fn.easy_reset, "curl_easy_reset"},
		{&fn.easy_perform, "curl_easy_perform"},
		{&fn.easy_setopt, "curl_easy_setopt"},
		{&fn.easy_getinfo, "curl_easy_getinfo"},
		{&fn.easy_strerror, "curl_easy_strerror"},
		{&fn.easy_escape, "curl_easy_escape"},
		{&fn.free, "curl_free"},
		{&fn.slist_append, "curl_slist_append"},
		{&fn.slist_free_all, "curl_slist_free_all"},
		{&fn.multi_init, "curl_multi_init"},
		{&fn.multi_cleanup, "curl_multi_cleanup"},
		{&fn.multi_add_handle, "curl_multi_add_handle"},
		{&fn.multi_remove_handle, "curl_multi_remove_handle"},
		{&fn.multi_perform, "curl_multi_perform"},
		{&fn.multi_poll, "curl_multi_poll"},
		{&fn.multi_info_read, "curl_multi_info_read"},
		{&fn.url, "curl_url"},
		{&fn.url_cleanup, "curl_url_cleanup"},
		{&fn.url_set, "curl_url_set"},
		{&fn.url_get, "curl_url_get"},
	};
	for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
		if (resolve(table[i].slot, table[i].name)) {
			dlclose(library);
			library = NULL;
			return -1;
		}
	}
	return 0;
}

static pthread_t preloader;
static int preloading;
/* What the preloader's curl_global_init(CURL_GLOBAL_DEFAULT) returned, when it made that call:
 * the TLS library's start (reading its configuration) then also happens off the main thread.
 * libcurl 7.84 and later (Debian 12 has 7.88) allow it on any thread. */
static int preloaded_init;
static CURLcode preloaded_init_code;

static void *preload_main(void *unused)
{
	(void)unused;
	if (load_library() == 0) {
		preloaded_init_code = fn.global_init(CURL_GLOBAL_DEFAULT);
		preloaded_init = 1;
	}
	return NULL;
}

void curl_lazy_preload(void)
{
	if (library || preloading)
		return;
	/* Signals stay with the main thread, which acts on them. */
	sigset_t all, saved;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &saved);
	preloading = pthread_create(&preloader, NULL, preload_main, NULL) == 0;
	if (preloading)
		pthread_setname_np(preloader, "source-lua-load");
	pthread_sigmask(SIG_SETMASK, &saved, NULL);
}

/* Only the main thread calls libcurl, so only it joins the preloader. */
void curl_lazy_wait(void)
{
	if (preloading) {
		pthread_join(preloader, NULL);
		preloading = 0;
	}
}

static int load(void)
{
	curl_lazy_wait();
	return load_library();
}

const char *curl_lazy_error(void)
{
	return load_error[0] ? load_error : NULL;
}

CURLcode curl_global_init(long flags)
{
	if (load())
		return CURLE_FAILED_INIT;
	if (preloaded_init && flags == CURL_GLOBAL_DEFAULT) {
		preloaded_init = 0; /* that call stands for this one: one init, one cleanup */
		return preloaded_init_code;
	}
	return fn.global_init(flags);
}

void curl_lazy_cleanup(void)
{
	curl_lazy_wait();
	if (preloaded_init && preloaded_init_code == CURLE_OK)
		fn.global_cleanup();
	preloaded_init = 0;
}

void curl_global_cleanup(void)
{
	if (library)
		fn.global_cleanup();
}

CURL *curl_easy_init(void)
{
	return load() ? NULL : fn.easy_init();
}

void curl_easy_cleanup(CURL *handle)
{
	if (library)
		fn.easy_cleanup(handle);
}

void curl_easy_reset(CURL *handle)
{
	if (library)
		fn.easy_reset(handle);
}

CURLcode curl_easy_perform(CURL *handle)
{
	return load() ? CURLE_FAILED_INIT : fn.easy_perform(handle);
}

/* libcurl reads the argument by the option's number range; so do we, to pass it on unchanged.
 * Function pointers travel as void *, which has their representation on every ABI curl supports. */
CURLcode curl_easy_setopt(CURL *handle, CURLoption option, ...)
{
	if (load())
		return CURLE_FAILED_INIT;
	va_list ap;
	va_start(ap, option);
	CURLcode rc;
	if (option < CURLOPTTYPE_OBJECTPOINT)
		rc = fn.easy_setopt(handle, option, va_arg(ap, long));
	else if (option < CURLOPTTYPE_OFF_T || option >= CURLOPTTYPE_BLOB)
		rc = fn.easy_setopt(handle, option, va_arg(ap, void *));
	else
		rc = fn.easy_setopt(handle, option, va_arg(ap, curl_off_t));
	va_end(ap);
	return rc;
}

/* Every CURLINFO takes a pointer to where the answer goes. */
CURLcode curl_easy_getinfo(CURL *handle, CURLINFO info, ...)
{
	if (load())
		return CURLE_FAILED_INIT;
	va_list ap;
	va_start(ap, info);
	CURLcode rc = fn.easy_getinfo(handle, info, va_arg(ap, void *));
	va_end(ap);
	return rc;
}

const char *curl_easy_strerror(CURLcode code)
{
	return load() ? load_error : fn.easy_strerror(code);
}

char *curl_easy_escape(CURL *handle, const char *string, int length)
{
	return load() ? NULL : fn.easy_escape(handle, string, length);
}

void curl_free(void *p)
{
	if (library)
		fn.free(p);
}

struct curl_slist *curl_slist_append(struct curl_slist *list, const char *data)
{
	return load() ? NULL : fn.slist_append(list, data);
}

void curl_slist_free_all(struct curl_slist *list)
{
	if (library)
		fn.slist_free_all(list);
}

CURLM *curl_multi_init(void)
{
	return load() ? NULL : fn.multi_init();
}

CURLMcode curl_multi_cleanup(CURLM *multi)
{
	return library ? fn.multi_cleanup(multi) : CURLM_BAD_HANDLE;
}

CURLMcode curl_multi_add_handle(CURLM *multi, CURL *handle)
{
	return load() ? CURLM_BAD_HANDLE : fn.multi_add_handle(multi, handle);
}

CURLMcode curl_multi_remove_handle(CURLM *multi, CURL *handle)
{
	return library ? fn.multi_remove_handle(multi, handle) : CURLM_BAD_HANDLE;
}

CURLMcode curl_multi_perform(CURLM *multi, int *running)
{
	return load() ? CURLM_BAD_HANDLE : fn.multi_perform(multi, running);
}

CURLMcode curl_multi_poll(CURLM *multi, struct curl_waitfd extra_fds[], unsigned int extra_nfds, int timeout_ms,
			  int *numfds)
{
	return load() ? CURLM_BAD_HANDLE : fn.multi_poll(multi, extra_fds, extra_nfds, timeout_ms, numfds);
}

CURLMsg *curl_multi_info_read(CURLM *multi, int *msgs_in_queue)
{
	return load() ? NULL : fn.multi_info_read(multi, msgs_in_queue);
}

CURLU *curl_url(void)
{
	return load() ? NULL : fn.url();
}

void curl_url_cleanup(CURLU *handle)
{
	if (library)
		fn.url_cleanup(handle);
}

CURLUcode curl_url_set(CURLU *handle, CURLUPart what, const char *part, unsigned int flags)
{
	return load() ? CURLUE_OUT_OF_MEMORY : fn.url_set(handle, what, part, flags);
}

CURLUcode curl_url_get(CURLU *handle, CURLUPart what, char **part, unsigned int flags)
{
	return load() ? CURLUE_OUT_OF_MEMORY : fn.url_get(handle, what, part, flags);
}
