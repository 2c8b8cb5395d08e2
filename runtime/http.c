/*
 * http: every network call goes through here, with explicit limits (connect and total timeouts,
 * a body cap, http/https only, bounded redirects) because Debian's libcurl defaults to none.
 * Retry policy is here too so that every script gets it: exponential backoff with full jitter,
 * Retry-After honoured, a 429 without it waited out long enough for a one-minute quota window,
 * and a client-side request budget so free-tier users need never see a 429.
 * Nothing here calls Lua from inside a libcurl callback: bytes are collected in C buffers.
 */
#define _GNU_SOURCE
#include "http.h"

#include <ctype.h>
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "cassette.h"
#include "curl_lazy.h"
#include "date.h"
#include "host.h"
#include "proto.h"

#define MAX_BACKOFF_MS (120 * 1000)
#define MAX_RETRY_AFTER_S (366.0 * 86400)

const struct http_settings http_default_settings = {
	.connect_timeout_ms = 10 * 1000,
	.timeout_ms = 60 * 1000,
	.max_body_bytes = 256u << 20,
	.retry_budget_ms = 10 * 60 * 1000,
	.rate_limit_wait_ms = 15 * 1000,
	.requests_per_minute = 0,
	.concurrency = 4,
};

void http_client_init(struct http_client *c, const struct http_settings *settings, struct output *out)
{
	memset(c, 0, sizeof *c);
	c->settings = settings;
	c->out = out;
}

/* libcurl (and the TLS library under it) takes tens of milliseconds to initialise, so it starts
 * on the first request: spec and a failing config never pay for it. */
static int ensure_started(struct http_client *c)
{
	if (c->easy || c->start_failed)
		return c->start_failed ? -1 : 0;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		c->start_failed = 1;
		return -1;
	}
	c->easy = curl_easy_init();
	c->multi = curl_multi_init();
	c->start_failed = !c->easy || !c->multi;
	return c->start_failed ? -1 : 0;
}

void http_client_cleanup(struct http_client *c)
{
	if (c->easy)
		curl_easy_cleanup(c->easy);
	if (c->multi)
		curl_multi_cleanup(c->multi);
	if (c->multi || c->easy)
		curl_global_cleanup();
	c->easy = NULL;
	c->multi = NULL;
	free(c->replayed);
	c->replayed = NULL;
	c->replayed_count = c->replayed_size = 0;
	/* libcurl stays mapped: unmapping it and its thirty libraries at exit cost ~2 ms of a sync. */
}

/* A body announced as larger than this grows as it arrives: a Content-Length is a promise the
 * server may not keep. */
#define MAX_PRESIZED_BODY (32u << 20)

static size_t collect_body(char *data, size_t size, size_t count, void *userdata)
{
	struct http_response *resp = userdata;
	size_t n = size * count;
	if (resp->body.len + n > resp->max_body_bytes) {
		resp->body_too_large = 1;
		return 0; /* makes curl fail the transfer with CURLE_WRITE_ERROR */
	}
	/* The page's buffer is handed on with the page, so each answer starts with none: sized once
	 * from Content-Length, it is not grown (and copied) a dozen times from 256 bytes. */
	if (resp->body.len == 0 && resp->expected_body_bytes > resp->body.cap)
		buf_reserve(&resp->body, resp->expected_body_bytes);
	buf_append(&resp->body, data, n);
	return n;
}

static size_t collect_header(char *data, size_t size, size_t count, void *userdata)
{
	struct http_response *resp = userdata;
	size_t n = size * count;
	/* A new status line starts a new response (after a redirect or a 100 Continue). */
	if (n >= 5 && memcmp(data, "HTTP/", 5) == 0) {
		buf_clear(&resp->headers);
		resp->expected_body_bytes = 0;
	}
	buf_append(&resp->headers, data, n);
	if (n > 15 && !strncasecmp(data, "content-length:", 15)) {
		/* The line is not NUL-terminated: its digits are copied out first. */
		char digits[24];
		size_t at = 15, len = 0;
		while (at < n && (data[at] == ' ' || data[at] == '\t'))
			at++;
		while (at < n && len < sizeof digits - 1 && data[at] >= '0' && data[at] <= '9')
			digits[len++] = data[at++];
		digits[len] = '\0';
		unsigned long long length = len ? strtoull(digits, NULL, 10) : 0;
		/* A hint only (a compressed body grows): never more than a body may take. */
		int plausible = length < resp->max_body_bytes && length <= MAX_PRESIZED_BODY;
		resp->expected_body_bytes = plausible ? (size_t)length : 0;
	}
	return n;
}

static int abort_when_cancelled(void *clientp, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
				curl_off_t ulnow)
{
	(void)clientp, (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
	return host_cancelled ? 1 : 0;
}

void http_wait_fd(int fd, int timeout_ms)
{
	struct pollfd p = {fd, POLLIN, 0};
	if (!host_cancelled)
		poll(&p, 1, timeout_ms);
}

void http_sleep_ms(int64_t ms)
{
	while (ms > 0 && !host_cancelled) {
		int64_t step = ms > 200 ? 200 : ms;
		struct timespec ts = {(time_t)(step / 1000), (long)(step % 1000) * 1000000L};
		nanosleep(&ts, NULL);
		ms -= step;
	}
}

int64_t http_budget_delay_ms(const struct http_client *c)
{
	int64_t now = date_now_ms();
	return c->next_request_slot_ms > now ? c->next_request_slot_ms - now : 0;
}

/* Spaces requests evenly so that a per-minute quota is never exceeded. */
void http_budget_take(struct http_client *c)
{
	if (c->settings->requests_per_minute <= 0)
		return;
	int64_t interval = (int64_t)(60000.0 / c->settings->requests_per_minute);
	int64_t now = date_now_ms();
	c->next_request_slot_ms = (c->next_request_slot_ms > now ? c->next_request_slot_ms : now) + interval;
}

static void wait_for_request_budget(struct http_client *c)
{
	http_sleep_ms(http_budget_delay_ms(c));
	http_budget_take(c);
}

/* Bytes libcurl reads from a connection at a time (it allocates this much per transfer). */
#define HTTP_READ_BUFFER (128L * 1024)

/* Whether the URL's query already has a parameter called name (the next page's URL an API gave
 * often repeats the key it was asked with). */
/* Whether the query parameter at p (up to stop) is called name (len bytes). */
static int is_param(const char *p, const char *stop, const char *name, size_t len)
{
	return (size_t)(stop - p) >= len && !strncmp(p, name, len) && (p + len == stop || p[len] == '=');
}

int http_url_has_param(const char *url, const char *name)
{
	const char *hash = strchr(url, '#');
	const char *end = hash ? hash : url + strlen(url);
	const char *q = memchr(url, '?', (size_t)(end - url));
	size_t len = strlen(name);
	for (const char *p = q ? q + 1 : end; p < end;) {
		const char *amp = memchr(p, '&', (size_t)(end - p));
		const char *stop = amp ? amp : end;
		if (is_param(p, stop, name, len))
			return 1;
		p = amp ? amp + 1 : stop;
	}
	return 0;
}

void http_url_with_pairs(struct buf *out, const char *url, const char *pairs, const char *replaced)
{
	const char *hash = strchr(url, '#');
	const char *end = hash ? hash : url + strlen(url);
	const char *q = memchr(url, '?', (size_t)(end - url));
	size_t replaced_len = replaced ? strlen(replaced) : 0;
	buf_append(out, url, (size_t)((q ? q : end) - url));
	int first = 1;
	for (const char *p = q ? q + 1 : end; p < end;) {
		const char *amp = memchr(p, '&', (size_t)(end - p));
		const char *stop = amp ? amp : end;
		if (stop > p && !(replaced && is_param(p, stop, replaced, replaced_len))) {
			buf_putc(out, first ? '?' : '&');
			buf_append(out, p, (size_t)(stop - p));
			first = 0;
		}
		p = amp ? amp + 1 : stop;
	}
	if (*pairs) {
		buf_putc(out, first ? '?' : '&');
		buf_puts(out, pairs);
	} else if (first && q) {
		buf_putc(out, '?'); /* "x?" stays as it was given */
	}
	buf_puts(out, hash ? hash : "");
}

/* Adds the credentials: libcurl writes Bearer and Basic itself (and keeps them from another host
 * a redirect leads to); the API key's header line and query pair are added to copies. */
static void add_credentials(CURL *easy, const struct http_request *req, struct http_response *resp)
{
	const struct http_credentials *cr = req->credentials;
	if (cr->bearer) {
		curl_easy_setopt(easy, CURLOPT_HTTPAUTH, CURLAUTH_BEARER);
		curl_easy_setopt(easy, CURLOPT_XOAUTH2_BEARER, cr->bearer);
	} else if (cr->username) {
		curl_easy_setopt(easy, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
		curl_easy_setopt(easy, CURLOPT_USERNAME, cr->username);
		curl_easy_setopt(easy, CURLOPT_PASSWORD, cr->password ? cr->password : "");
	}
	if (cr->header_line) {
		struct curl_slist *list = NULL;
		for (const struct curl_slist *h = req->headers; h; h = h->next)
			list = curl_slist_append(list, h->data);
		resp->sent_headers = curl_slist_append(list, cr->header_line);
		if (!resp->sent_headers)
			curl_slist_free_all(list);
		curl_easy_setopt(easy, CURLOPT_HTTPHEADER, resp->sent_headers);
	}
	if (cr->query_name && !http_url_has_param(req->url, cr->query_name)) {
		struct buf url = {0}, pair = {0};
		buf_printf(&pair, "%s=%s", cr->query_name, cr->query_value_escaped);
		http_url_with_pairs(&url, req->url, buf_cstr(&pair), NULL);
		buf_free(&pair);
		resp->sent_url = (char *)buf_cstr(&url);
		curl_easy_setopt(easy, CURLOPT_URL, resp->sent_url);
	}
}

static void forget_credentials(struct http_response *resp)
{
	curl_slist_free_all(resp->sent_headers);
	resp->sent_headers = NULL;
	free(resp->sent_url);
	resp->sent_url = NULL;
}

static void configure(const struct http_client *c, CURL *easy, const struct http_request *req,
		      struct http_response *resp)
{
	curl_easy_reset(easy);
	resp->max_body_bytes = c->settings->max_body_bytes;
	curl_easy_setopt(easy, CURLOPT_URL, req->url);
	curl_easy_setopt(easy, CURLOPT_HTTPHEADER, req->headers);
	if (req->credentials)
		add_credentials(easy, req, resp);
	if (req->body) {
		/* Copied: the caller's string need not outlive the call. A body makes the request a POST
		 * unless another method is named. */
		curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
		curl_easy_setopt(easy, CURLOPT_COPYPOSTFIELDS, req->body);
	}
	if (req->method && strcmp(req->method, "GET")) {
		if (!strcmp(req->method, "POST") && !req->body) {
			curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
			curl_easy_setopt(easy, CURLOPT_COPYPOSTFIELDS, "");
		} else if (strcmp(req->method, "POST")) {
			curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, req->method);
		}
	}
	curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, c->settings->connect_timeout_ms);
	curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, c->settings->timeout_ms);
	curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 1L);
	curl_easy_setopt(easy, CURLOPT_MAXREDIRS, 5L);
	curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(easy, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(easy, CURLOPT_ACCEPT_ENCODING, "");
	curl_easy_setopt(easy, CURLOPT_USERAGENT, "source-lua/0.1 (+airbyte)");
	/* libcurl reads 16 KB at a time by default: a 250 KB page was ~16 rounds of poll, recv and
	 * the write callback on the main thread (632 recv and 686 poll calls for the bench's 40 pages;
	 * 81 and 136 at 128 KB). The curl tool reads 100 KB at a time. */
	curl_easy_setopt(easy, CURLOPT_BUFFERSIZE, HTTP_READ_BUFFER);
	curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, collect_body);
	curl_easy_setopt(easy, CURLOPT_WRITEDATA, resp);
	curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, collect_header);
	curl_easy_setopt(easy, CURLOPT_HEADERDATA, resp);
	curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, resp->error);
	curl_easy_setopt(easy, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(easy, CURLOPT_XFERINFOFUNCTION, abort_when_cancelled);
	/* Redirects must not carry the Authorization header to another host. */
	curl_easy_setopt(easy, CURLOPT_UNRESTRICTED_AUTH, 0L);
}

void http_response_reset(struct http_response *resp)
{
	resp->status = 0;
	resp->code = CURLE_OK;
	resp->error[0] = '\0';
	resp->expected_body_bytes = 0;
	resp->body_too_large = 0;
	buf_clear(&resp->body);
	buf_clear(&resp->headers);
	forget_credentials(resp);
	free(resp->exchange);
	resp->exchange = NULL;
}

void http_response_free(struct http_response *resp)
{
	buf_free(&resp->body);
	buf_free(&resp->headers);
	forget_credentials(resp);
	free(resp->exchange);
	resp->exchange = NULL;
}

/* The error of a transfer that failed: libcurl's words, but for a body it stopped at the cap,
 * where they would be "Failure writing output to destination". */
static void describe_transfer_error(struct http_response *resp)
{
	if (resp->body_too_large)
		snprintf(resp->error, sizeof resp->error, "the answer is larger than %zu MB, the most one may be",
			 resp->max_body_bytes >> 20);
	else if (!resp->error[0])
		snprintf(resp->error, sizeof resp->error, "%s", curl_easy_strerror(resp->code));
}

int http_perform(struct http_client *c, const struct http_request *req, struct http_response *resp)
{
	http_response_reset(resp);
	if (ensure_started(c)) {
		snprintf(resp->error, sizeof resp->error, "cannot initialise libcurl: %s",
			 curl_lazy_error() ? curl_lazy_error() : "curl_global_init failed");
		resp->code = CURLE_FAILED_INIT;
		return -1;
	}
	if (cassette_begin(c->cassette, req, resp))
		return resp->code == CURLE_OK ? 0 : -1;
	wait_for_request_budget(c);
	configure(c, c->easy, req, resp);
	resp->code = curl_easy_perform(c->easy);
	curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &resp->status);
	buf_cstr(&resp->body);
	cassette_end(c->cassette, resp);
	if (resp->code != CURLE_OK) {
		describe_transfer_error(resp);
		return -1;
	}
	return 0;
}

int http_header_next(const struct http_response *resp, size_t *pos, struct http_header_line *line)
{
	const char *base = resp->headers.data;
	size_t len = resp->headers.len;
	while (base && *pos < len) {
		const char *p = base + *pos;
		const char *eol = memchr(p, '\n', len - *pos);
		if (!eol)
			eol = base + len;
		*pos = (size_t)(eol - base) + 1;
		const char *colon = memchr(p, ':', (size_t)(eol - p));
		if (!colon)
			continue;
		const char *v = colon + 1;
		while (v < eol && (*v == ' ' || *v == '\t'))
			v++;
		const char *ve = eol;
		while (ve > v && (ve[-1] == '\r' || ve[-1] == ' '))
			ve--;
		line->name = p;
		line->name_len = (size_t)(colon - p);
		line->value = v;
		line->value_len = (size_t)(ve - v);
		return 1;
	}
	return 0;
}

int http_header(const struct http_response *resp, const char *name, char *out, size_t outlen)
{
	size_t pos = 0;
	struct http_header_line line;
	while (http_header_next(resp, &pos, &line)) {
		if (line.name_len == strlen(name) && strncasecmp(line.name, name, line.name_len) == 0) {
			snprintf(out, outlen, "%.*s", (int)line.value_len, line.value);
			return 0;
		}
	}
	return -1;
}

void http_describe_failure(const struct http_response *resp, char *out, size_t outlen)
{
	if (resp->code != CURLE_OK)
		snprintf(out, outlen, "%s", resp->error);
	else
		snprintf(out, outlen, "HTTP %ld", resp->status);
}

void http_retry_start(struct http_retry *r)
{
	r->attempt = 0;
	r->started_ms = date_now_ms();
}

/* Failures that asking again gets the same: a URL libcurl cannot fetch, a transfer the runtime
 * stopped (SIGTERM), a redirect loop, and a certificate that is not trusted or does not fit, or
 * TLS files that cannot be read (a user behind a proxy that re-signs TLS would otherwise wait
 * out the whole retry budget, minutes, for the message). */
static int is_permanent_failure(CURLcode code)
{
	switch (code) {
	case CURLE_UNSUPPORTED_PROTOCOL:
	case CURLE_URL_MALFORMAT:
	case CURLE_ABORTED_BY_CALLBACK:
	case CURLE_TOO_MANY_REDIRECTS:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_CRL_BADFILE:
	case CURLE_SSL_ISSUER_ERROR:
	case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
	case CURLE_SSL_INVALIDCERTSTATUS: return 1;
	default: return 0;
	}
}

int http_is_retryable(const struct http_response *resp)
{
	if (resp->code != CURLE_OK)
		return !is_permanent_failure(resp->code) && !resp->body_too_large;
	return resp->status == 408 || resp->status == 429 || resp->status >= 500;
}

int http_is_retryable_once_sent(const struct http_response *resp)
{
	if (resp->code != CURLE_OK)
		return resp->code == CURLE_COULDNT_CONNECT || resp->code == CURLE_COULDNT_RESOLVE_HOST;
	char value[128];
	return resp->status == 429 || (resp->status == 503 && !http_header(resp, "Retry-After", value, sizeof value));
}

/* Retry-After is either delta-seconds or an HTTP date; -1 when absent or unreadable. */
static int64_t retry_after_ms(const struct http_response *resp)
{
	char value[128];
	if (http_header(resp, "Retry-After", value, sizeof value))
		return -1;
	char *end;
	errno = 0;
	double seconds = strtod(value, &end);
	/* A wait past a year is past any retry budget: capped, so that the arithmetic on it cannot
	 * overflow (Retry-After: 9223372036854774 was a signed overflow). */
	if (end != value && *end == '\0' && errno == 0 && seconds >= 0)
		return (int64_t)((seconds < MAX_RETRY_AFTER_S ? seconds : MAX_RETRY_AFTER_S) * 1000.0);
	struct tm tm = {0};
	if (strptime(value, "%a, %d %b %Y %H:%M:%S GMT", &tm)) {
		int64_t at = (int64_t)timegm(&tm) * 1000;
		int64_t now = date_now_ms();
		int64_t wait = at > now ? at - now : 0;
		return wait < (int64_t)(MAX_RETRY_AFTER_S * 1000) ? wait : (int64_t)(MAX_RETRY_AFTER_S * 1000);
	}
	return -1;
}

static int64_t backoff_ms(const struct http_client *c, const struct http_retry *r, const struct http_response *resp)
{
	int64_t base = resp->status == 429 ? c->settings->rate_limit_wait_ms : 1000;
	int shift = r->attempt > 10 ? 10 : r->attempt;
	int64_t cap = base << shift;
	if (cap > MAX_BACKOFF_MS)
		cap = MAX_BACKOFF_MS;
	/* Half fixed, half random: spreads retries of many connectors without ever waiting ~0. */
	return cap / 2 + (int64_t)(drand48() * (double)(cap / 2));
}

int64_t http_retry_delay(struct http_client *c, struct http_retry *r, const struct http_response *resp, const char *why,
			 const char *stream)
{
	int64_t wait = retry_after_ms(resp);
	if (wait < 0)
		wait = backoff_ms(c, r, resp);
	int64_t now = date_now_ms();
	int64_t spent = now - r->started_ms;
	if (host_cancelled || spent + wait > c->settings->retry_budget_ms)
		return -1;
	r->attempt++;
	if (c->cassette && c->cassette->replaying) {
		/* The recording's answers are already there: the waits it made would only slow a test. */
		proto_logf(c->out, "WARN", "%s; retry %d at once (replayed)", why, r->attempt);
		return 0;
	}
	proto_logf(c->out, "WARN", "%s; retry %d in %.1f s", why, r->attempt, (double)wait / 1000.0);
	if (resp->status == 429 && stream)
		proto_stream_status(c->out, stream, "RUNNING", now + wait);
	proto_flush(c->out);
	return wait;
}

int http_retry_wait(struct http_client *c, struct http_retry *r, const struct http_response *resp, const char *why,
		    const char *stream)
{
	int64_t wait = http_retry_delay(c, r, resp, why, stream);
	if (wait < 0)
		return -1;
	http_sleep_ms(wait);
	return host_cancelled ? -1 : 0;
}

/* A transfer a replay answered: finished at once, without libcurl. */
static int queue_replayed(struct http_client *c, struct http_transfer *t)
{
	if (c->replayed_count == c->replayed_size) {
		size_t size = c->replayed_size ? 2 * c->replayed_size : 16;
		struct http_transfer **grown = realloc(c->replayed, size * sizeof *grown);
		if (!grown)
			return -1;
		c->replayed = grown;
		c->replayed_size = size;
	}
	c->replayed[c->replayed_count++] = t;
	t->replayed_by = c;
	return 0;
}

int http_transfer_start(struct http_client *c, struct http_transfer *t, const struct http_request *req)
{
	if (ensure_started(c))
		return -1;
	if (!t->easy)
		t->easy = curl_easy_init();
	if (!t->easy)
		return -1;
	http_response_reset(&t->resp);
	if (cassette_begin(c->cassette, req, &t->resp))
		return queue_replayed(c, t);
	configure(c, t->easy, req, &t->resp);
	curl_easy_setopt(t->easy, CURLOPT_PRIVATE, t);
	http_budget_take(c);
	if (curl_multi_add_handle(c->multi, t->easy) != CURLM_OK)
		return -1;
	t->client = c;
	return 0;
}

static struct http_transfer *next_finished(struct http_client *c)
{
	int left;
	CURLMsg *msg;
	while ((msg = curl_multi_info_read(c->multi, &left))) {
		if (msg->msg != CURLMSG_DONE)
			continue;
		struct http_transfer *t = NULL;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&t);
		t->resp.code = msg->data.result;
		curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &t->resp.status);
		buf_cstr(&t->resp.body);
		if (t->resp.code != CURLE_OK)
			describe_transfer_error(&t->resp);
		curl_multi_remove_handle(c->multi, t->easy);
		t->client = NULL;
		cassette_end(c->cassette, &t->resp);
		return t;
	}
	return NULL;
}

struct http_transfer *http_transfers_wait(struct http_client *c, int timeout_ms, int wake_fd)
{
	if (c->replayed_count) {
		struct http_transfer *t = c->replayed[0];
		memmove(c->replayed, c->replayed + 1, --c->replayed_count * sizeof *c->replayed);
		return t;
	}
	int running;
	curl_multi_perform(c->multi, &running);
	struct http_transfer *done = next_finished(c);
	if (done)
		return done;
	struct curl_waitfd wake = {wake_fd, CURL_WAIT_POLLIN, 0};
	curl_multi_poll(c->multi, wake_fd >= 0 ? &wake : NULL, wake_fd >= 0 ? 1 : 0, timeout_ms, NULL);
	curl_multi_perform(c->multi, &running);
	return next_finished(c);
}

void http_transfer_free(struct http_transfer *t)
{
	struct http_client *c = t->replayed_by;
	for (size_t i = 0; c && i < c->replayed_count; i++)
		if (c->replayed[i] == t)
			memmove(c->replayed + i, c->replayed + i + 1, (--c->replayed_count - i) * sizeof *c->replayed);
	t->replayed_by = NULL;
	if (t->easy) {
		if (t->client)
			curl_multi_remove_handle(t->client->multi, t->easy);
		t->client = NULL;
		curl_easy_cleanup(t->easy);
		t->easy = NULL;
	}
	http_response_free(&t->resp);
}

char *http_escape(struct http_client *c, const char *text, size_t len)
{
	if (ensure_started(c))
		return NULL;
	return curl_easy_escape(c->easy, text, (int)len);
}

char *http_resolve_url(struct http_client *c, const char *base, const char *ref)
{
	if (ensure_started(c))
		return NULL;
	CURLU *u = curl_url();
	char *resolved = NULL;
	if (u && curl_url_set(u, CURLUPART_URL, base, 0) == CURLUE_OK &&
	    curl_url_set(u, CURLUPART_URL, ref, 0) == CURLUE_OK)
		curl_url_get(u, CURLUPART_URL, &resolved, 0);
	curl_url_cleanup(u);
	return resolved;
}

int http_origin(struct http_client *c, const char *url, char *out, size_t outlen)
{
	if (ensure_started(c))
		return -1;
	CURLU *u = curl_url();
	char *scheme = NULL;
	char *host = NULL;
	char *port = NULL;
	int rc = -1;
	if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK) {
		curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT);
		for (char *c = host; *c; c++)
			*c = (char)tolower((unsigned char)*c);
		snprintf(out, outlen, "%s://%s:%s", scheme, host, port ? port : "");
		rc = 0;
	}
	curl_free(scheme);
	curl_free(host);
	curl_free(port);
	curl_url_cleanup(u);
	return rc;
}
