/*
 * proto: every byte on stdout goes through here (but the CPU watchdog's prepared message, host.c),
 * so that each line is exactly one valid message.
 * Messages are built in one large buffer and written at flush points (STATE, errors, statuses,
 * a full buffer, exit): records reach stdout in batches, and a STATE is never written before the
 * records it covers. Once stdout fails (the platform went away) writing stops, and main says so
 * on stderr.
 */
#define _GNU_SOURCE
#include "proto.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "date.h"
#include "json.h"
#include "secrets.h"

#define FLUSH_THRESHOLD (256 * 1024)

void proto_init(struct output *o, const struct secrets *secrets)
{
	o->buf = (struct buf){0};
	o->flushed = 0;
	o->failed = 0;
	o->secrets = secrets;
	o->divert = NULL;
	o->divert_ctx = NULL;
	buf_reserve(&o->buf, FLUSH_THRESHOLD);
	/* A pipe holds 64 KB by default, so each 256 KB flush would wait for the reader four times;
	 * a pipe as large as the buffer lets a flush go in one write. Not a pipe, or no permission
	 * for the size: nothing changes. */
	int size = fcntl(STDOUT_FILENO, F_GETPIPE_SZ);
	if (size > 0 && size < FLUSH_THRESHOLD)
		fcntl(STDOUT_FILENO, F_SETPIPE_SZ, FLUSH_THRESHOLD);
}

static void write_all(struct output *o, const char *data, size_t len)
{
	size_t done = 0;
	o->flushed += len;
	if (o->divert) {
		o->divert(o->divert_ctx, data, len);
		return;
	}
	while (!o->failed && done < len) {
		ssize_t n = write(STDOUT_FILENO, data + done, len - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			o->failed = 1;
			o->error = n < 0 ? errno : EIO;
		} else
			done += (size_t)n;
	}
}

int proto_flush(struct output *o)
{
	write_all(o, o->buf.data, o->buf.len);
	buf_clear(&o->buf);
	return o->failed ? -1 : 0;
}

void proto_write_lines(struct output *o, const char *lines, size_t len)
{
	if (len >= FLUSH_THRESHOLD) {
		proto_flush(o);
		write_all(o, lines, len);
		return;
	}
	buf_append(&o->buf, lines, len);
	if (o->buf.len >= FLUSH_THRESHOLD)
		proto_flush(o);
}

int proto_stdout_failed(const struct output *o)
{
	return o->failed;
}

uint64_t proto_bytes(const struct output *o)
{
	return o->flushed + o->buf.len;
}

void proto_shutdown(struct output *o)
{
	proto_flush(o);
	buf_free(&o->buf);
}

static void end_message(struct output *o, int flush_now)
{
	buf_putc(&o->buf, '\n');
	if (flush_now || o->buf.len >= FLUSH_THRESHOLD)
		proto_flush(o);
}

static void write_masked_text(struct output *o, const char *text, size_t len)
{
	struct buf masked = {0};
	secrets_mask_into(o->secrets, &masked, text, len);
	json_write_string(&o->buf, masked.data ? masked.data : "", masked.len);
	buf_free(&masked);
}

static void write_masked_string(struct output *o, const char *text)
{
	write_masked_text(o, text, strlen(text));
}

void proto_log_text(struct output *o, const char *level, const char *text, size_t len)
{
	buf_puts(&o->buf, "{\"type\":\"LOG\",\"log\":{\"level\":");
	json_write_string(&o->buf, level, strlen(level));
	buf_puts(&o->buf, ",\"message\":");
	write_masked_text(o, text, len);
	buf_puts(&o->buf, "}}");
	end_message(o, 1);
}

void proto_log(struct output *o, const char *level, const char *text)
{
	proto_log_text(o, level, text, strlen(text));
}

void proto_logf(struct output *o, const char *level, const char *fmt, ...)
{
	char text[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof text, fmt, ap);
	va_end(ap);
	proto_log(o, level, text);
}

const char *proto_failure_name(enum proto_failure type)
{
	switch (type) {
	case PROTO_CONFIG_ERROR: return "config_error";
	case PROTO_TRANSIENT_ERROR: return "transient_error";
	default: return "system_error";
	}
}

int proto_failure_from_name(const char *name, enum proto_failure *type)
{
	static const enum proto_failure all[] = {PROTO_SYSTEM_ERROR, PROTO_CONFIG_ERROR, PROTO_TRANSIENT_ERROR};
	for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
		if (!strcmp(name, proto_failure_name(all[i]))) {
			*type = all[i];
			return 0;
		}
	}
	return -1;
}

static void begin_trace(struct output *o, const char *trace_type)
{
	buf_printf(&o->buf, "{\"type\":\"TRACE\",\"trace\":{\"type\":\"%s\",\"emitted_at\":%lld", trace_type,
		   (long long)date_now_ms());
}

void proto_trace_error(struct output *o, enum proto_failure type, const char *message, const char *internal,
		       const char *stack)
{
	begin_trace(o, "ERROR");
	buf_puts(&o->buf, ",\"error\":{\"message\":");
	write_masked_string(o, message);
	if (internal) {
		buf_puts(&o->buf, ",\"internal_message\":");
		write_masked_string(o, internal);
	}
	if (stack) {
		buf_puts(&o->buf, ",\"stack_trace\":");
		write_masked_string(o, stack);
	}
	buf_printf(&o->buf, ",\"failure_type\":\"%s\"}}}", proto_failure_name(type));
	end_message(o, 1);
}

void proto_stream_status(struct output *o, const char *stream, const char *status, int64_t rate_limited_until_ms)
{
	begin_trace(o, "STREAM_STATUS");
	buf_puts(&o->buf, ",\"stream_status\":{\"stream_descriptor\":{\"name\":");
	json_write_string(&o->buf, stream, strlen(stream));
	buf_printf(&o->buf, "},\"status\":\"%s\"", status);
	if (rate_limited_until_ms > 0)
		buf_printf(&o->buf,
			   ",\"reasons\":[{\"type\":\"RATE_LIMITED\",\"rate_limited\":{\"quota_reset\":%lld}}]",
			   (long long)rate_limited_until_ms);
	buf_puts(&o->buf, "}}}");
	end_message(o, 1);
}

void proto_connection_status(struct output *o, int succeeded, const char *message)
{
	buf_printf(&o->buf, "{\"type\":\"CONNECTION_STATUS\",\"connectionStatus\":{\"status\":\"%s\"",
		   succeeded ? "SUCCEEDED" : "FAILED");
	if (message) {
		buf_puts(&o->buf, ",\"message\":");
		write_masked_string(o, message);
	}
	buf_puts(&o->buf, "}}");
	end_message(o, 1);
}

int proto_record(struct output *o, lua_State *L, const char *stream, int data_idx, int64_t emitted_at_ms, char *err,
		 size_t errlen)
{
	size_t mark = o->buf.len;
	buf_puts(&o->buf, "{\"type\":\"RECORD\",\"record\":{\"stream\":");
	json_write_string(&o->buf, stream, strlen(stream));
	buf_puts(&o->buf, ",\"data\":");
	if (json_encode_in_table_order(L, data_idx, &o->buf, err, errlen)) {
		o->buf.len = mark;
		return -1;
	}
	buf_puts(&o->buf, ",\"emitted_at\":");
	json_write_int(&o->buf, (long long)emitted_at_ms);
	buf_puts(&o->buf, "}}");
	end_message(o, 0);
	return 0;
}

void proto_record_frame_init(struct proto_record_frame *f, const char *stream, int64_t emitted_at_ms)
{
	memset(f, 0, sizeof *f);
	buf_puts(&f->head, "{\"type\":\"RECORD\",\"record\":{\"stream\":");
	json_write_string(&f->head, stream, strlen(stream));
	buf_puts(&f->head, ",\"data\":");
	buf_puts(&f->tail, ",\"emitted_at\":");
	json_write_int(&f->tail, (long long)emitted_at_ms);
	buf_puts(&f->tail, "}}");
}

void proto_record_frame_free(struct proto_record_frame *f)
{
	buf_free(&f->head);
	buf_free(&f->tail);
}

void proto_record_framed(struct output *o, const struct proto_record_frame *f, const char *data, size_t len)
{
	buf_reserve(&o->buf, f->head.len + len + f->tail.len + 1);
	char *p = o->buf.data + o->buf.len;
	memcpy(p, f->head.data, f->head.len);
	memcpy(p + f->head.len, data, len);
	memcpy(p + f->head.len + len, f->tail.data, f->tail.len);
	o->buf.len += f->head.len + len + f->tail.len;
	end_message(o, 0);
}

int proto_message(struct output *o, lua_State *L, const char *type, const char *key, int idx, char *err, size_t errlen)
{
	size_t mark = o->buf.len;
	buf_printf(&o->buf, "{\"type\":\"%s\",\"%s\":", type, key);
	if (json_encode(L, idx, &o->buf, err, errlen)) {
		o->buf.len = mark;
		return -1;
	}
	buf_putc(&o->buf, '}');
	end_message(o, 1);
	return 0;
}

int proto_stream_state_json(struct output *o, lua_State *L, const char *stream, const char *state, size_t state_len,
			    int legacy_idx, int64_t record_count, char *err, size_t errlen)
{
	if (!legacy_idx) {
		buf_puts(&o->buf, "{\"type\":\"STATE\",\"state\":{\"type\":\"STREAM\",\"stream\":{\"stream_"
				  "descriptor\":{\"name\":");
		json_write_string(&o->buf, stream, strlen(stream));
		buf_puts(&o->buf, "},\"stream_state\":");
		buf_append(&o->buf, state, state_len);
		buf_printf(&o->buf, "},\"sourceStats\":{\"recordCount\":%lld.0}}}", (long long)record_count);
		end_message(o, 1);
		return 0;
	}
	/* data: the legacy blob with this stream's entry as state. The blob's own entry for it is
	 * set aside while the rest is encoded (it may be older than state), then put back. */
	legacy_idx = lua_absindex(L, legacy_idx);
	lua_getfield(L, legacy_idx, stream);
	lua_pushnil(L);
	lua_setfield(L, legacy_idx, stream);
	struct buf others = {0};
	int rc = json_encode(L, legacy_idx, &others, err, errlen);
	lua_setfield(L, legacy_idx, stream);
	if (rc) {
		buf_free(&others);
		return -1;
	}
	buf_puts(&o->buf,
		 "{\"type\":\"STATE\",\"state\":{\"type\":\"STREAM\",\"stream\":{\"stream_descriptor\":{\"name\":");
	json_write_string(&o->buf, stream, strlen(stream));
	buf_puts(&o->buf, "},\"stream_state\":");
	buf_append(&o->buf, state, state_len);
	buf_puts(&o->buf, "},\"data\":{");
	json_write_string(&o->buf, stream, strlen(stream));
	buf_putc(&o->buf, ':');
	buf_append(&o->buf, state, state_len);
	/* others is an object: "{}" or "{...}" */
	if (others.len > 2) {
		buf_putc(&o->buf, ',');
		buf_append(&o->buf, others.data + 1, others.len - 1);
	} else {
		buf_putc(&o->buf, '}');
	}
	buf_free(&others);
	/* The protocol asks for a decimal point: recordCount is a double on the platform's side. */
	buf_printf(&o->buf, ",\"sourceStats\":{\"recordCount\":%lld.0}}}", (long long)record_count);
	end_message(o, 1);
	return 0;
}
