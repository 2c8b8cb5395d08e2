/*
 * page_walk: reads a page of JSON once, validating it as it goes, and writes every item's record
 * as a JSON object per the declared fields (records.c compiles them from records.declare).
 *
 * Why a scanner rather than the JSON decoder (json_decode.c): that one decodes into Lua tables. A daily bar
 * decoded into a table, mapped into a second table by a Lua function and walked again to write it
 * costs ~27 times what this walk does (make bench: emission against the same mapping as a Lua loop). The
 * scanner accepts exactly RFC 8259 JSON in UTF-8 (depth at most JSON_MAX_DEPTH, as the decoder), so
 * a page that the decoder would refuse is refused here too, before any of its records is emitted. It
 * never decodes what it copies: a value is written as the page spelt it (numbers with an exponent
 * or a trailing zero are rewritten in the runtime's shortest form), which keeps every digit.
 *
 * A field may read a dotted path into the item's objects ("properties.email"). The members on the
 * declared paths form a tree (struct walk_node); a member on it whose value is an object is read
 * member by member (read_through) where any other is skipped, in the same single pass.
 *
 * No Lua and no shared state here: walks run on worker threads.
 */
#define _GNU_SOURCE
#include "page_walk.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "json.h"

/* Members of an object on the paths whose names are remembered from one item to the next. */
#define SLOT_GUESSES 16
/* Items of more members, or with a name over 12 bytes, are read member by member. */
#define SHAPE_MAX 16
#define SHAPE_NAME_MAX 12
#define PIECE_PAD 16
/* The plan's pieces are copied 32 bytes at a time. */
#define PLAN_PAD 32
/* Bytes a record may write past its end before the next one overwrites them. */
#define RECORD_SLACK 64

struct value {
	const unsigned char *at; /* NULL when the item lacks the member */
	size_t len;
	char type; /* s(tring) n(umber) l (null) b(oolean) o(bject) a(rray) */
	/* A number already in the runtime's form (no exponent, no trailing zero); an object or array
	 * holding no number that may be past a double's range: either is copied as spelt. */
	char plain;
	char escaped;
	char is_integer; /* a number spelt as at most 18 digits, no point or exponent */
};

struct walk {
	const struct walk_mapping *m;
	const struct walk_constant *constants;
	const struct walk_frame *frame;
	struct walk_output *out;
	size_t memory_cap;
	const unsigned char *start, *end;
	int failed;
	int item;
	/* Added to a container's depth: -1 when the page itself is the list ("$"), whose items sit a
	 * level higher than in an object's member; +1 a segment of a dotted list ("data.items"). */
	int depth_bias;
	size_t list_at; /* where the list's segment at this level of the page starts in m->list */
	/* Numbers scanned so far that may be past a double's range (see scan_number), and line
	 * breaks skipped (see ws): a container whose scan meets either is not copied as spelt. */
	unsigned long maybe_huge, line_breaks;
	struct value values[WALK_MAX_FIELDS];
	struct value next;
	/* Items of a page spell their members in the same order: member k of the last item, and the
	 * node of the paths it matched (-1: none), answer for member k of this one with one
	 * comparison. The objects on the paths have rows of their own, SLOT_GUESSES each (slots). */
	struct member_guess {
		const unsigned char *name;
		size_t len;
		int node;
	} guess[WALK_MAX_FIELDS], *slots;
	/* The nested sources (m->nested) that this item has a value for (bit i: source i). */
	uint64_t present;
	int64_t month_first, month_last; /* the month whose text day_text holds */
	char day_text[16];               /* "YYYY-MM-DD" with its quotes, padded for one 16-byte move */
	/* What every record writes around its values, each piece followed by PIECE_PAD readable bytes
	 * so that it is copied in 16-byte moves (memcpy's call costs more than these few bytes): the
	 * frame's head and tail, and per field ',"name":' (with its text for a context or value). */
	char *pieces;
	size_t pieces_len;
	size_t record_bound; /* the most a record writes beyond what it copies from its item */
	struct piece {
		const char *at;
		size_t len;
	} head, tail;
	/* The fields as put_field writes them, resolved once per page; a context or value field
	 * without a value is left out. */
	struct field_op {
		enum walk_kind kind;
		const struct walk_field *f;
		const struct value *v;
		struct piece piece;
		/* FROM_DAY_MS: the instants [zone_from, zone_until) have zone_offset (consecutive items
		 * mostly fall in one span, and finding the offset is most of a day's cost). */
		int64_t zone_from, zone_until;
		int zone_offset;
		struct piece fallback; /* the default's text; len 0: none */
	} ops[WALK_MAX_FIELDS];
	int nops;
	/* The members of the last item read in full, when it spelt them without space or escape:
	 * an item spelling the same members is read by matching each '{"name":' or ',"name":' as
	 * one 16-byte comparison, instead of scanning names, spaces and separators byte by byte. */
	struct shape {
		int count; /* 0: none learnt */
		/* Items of this shape that read_item_of_shape_indexed gave back to read_item_of_shape
		 * (values that are not numbers, or items longer than it reads): past a few, the page's
		 * items are not for it, and it is no longer tried. */
		int index_misses;
		struct shape_member {
			unsigned char bytes[16] __attribute__((aligned(16))); /* the separator, zero-padded */
			unsigned care; /* which of the 16 bytes count: the separator's (bit k: byte k) */
			size_t len;
			struct value *value; /* where its value goes */
			int node;            /* a member paths go through (read_through), else -1 */
		} members[SHAPE_MAX];
		int nested; /* a member is a node with children: its items are not for the index */
	} shape;
	struct value unused; /* where the values of members no field reads go */
	/* The record of an item of the learnt shape, whose members are known: the text between two
	 * values (the frame, keys, context fields) laid out as one piece, each followed by a value
	 * written per its field; the last piece closes the data and the frame. */
	struct plan {
		struct plan_step {
			struct piece piece;
			struct field_op *op;      /* the field whose value follows the piece; NULL after the last */
			const struct value *copy; /* op's value when op copies it (FROM_COPY), else NULL */
		} steps[WALK_MAX_FIELDS + 1];
		char *text;
		uint64_t present; /* the nested sources its items have (w->present) */
		/* The columns of the fields whose defaults the plan writes as constants. */
		struct plan_column {
			int column;
			int64_t value;
		} columns[WALK_MAX_FIELDS];
		int ncolumns;
	} plan;
};

static const unsigned char *syntax(struct walk *w, const unsigned char *p, const char *what)
{
	if (!w->failed) {
		w->failed = 1;
		w->out->outcome = WALK_NOT_JSON;
		snprintf(w->out->message, sizeof w->out->message, "%s at byte %zu", what, (size_t)(p - w->start));
	}
	return NULL;
}

/* Valid JSON that is not a page of items as declared. */
static const unsigned char *wrong_shape(struct walk *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static const unsigned char *wrong_shape(struct walk *w, const char *fmt, ...)
{
	if (!w->failed) {
		w->failed = 1;
		w->out->outcome = WALK_WRONG_SHAPE;
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(w->out->message, sizeof w->out->message, fmt, ap);
		va_end(ap);
	}
	return NULL;
}

/* Valid JSON perhaps, but deeper than the runtime reads: the same answer comes again if asked for. */
static const unsigned char *too_deep(struct walk *w, const unsigned char *p)
{
	return wrong_shape(w, "the answer nests deeper than %d levels at byte %zu", JSON_MAX_DEPTH,
			   (size_t)(p - w->start));
}

/* The text is NUL-terminated (a Lua string or a page), so text[len] is readable: loops that stop at NUL need no bound
 * check of their own (NUL is neither space, digit nor string content). Line breaks are counted: a
 * value copied with one inside would split its RECORD message's line. */
static inline const unsigned char *ws(struct walk *w, const unsigned char *p)
{
	if (*p > ' ')
		return p;
	for (;; p++) {
		if (*p == '\n' || *p == '\r')
			w->line_breaks++;
		else if (*p != ' ' && *p != '\t')
			return p;
	}
}

static inline int is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static int is_hex(unsigned char c)
{
	return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static unsigned hex_value(const unsigned char *p)
{
	unsigned v = 0;
	for (int i = 0; i < 4; i++)
		v = v * 16 + (unsigned)(is_digit(p[i]) ? p[i] - '0' : (p[i] | 0x20) - 'a' + 10);
	return v;
}

/* Whether p starts \uXXXX within the text. */
static int is_escape_u(const unsigned char *p, const unsigned char *end)
{
	return end - p >= 6 && p[0] == '\\' && p[1] == 'u' && is_hex(p[2]) && is_hex(p[3]) && is_hex(p[4]) &&
	       is_hex(p[5]);
}

/* p is just after the opening quote; returns the closing quote. */
static const unsigned char *scan_string(struct walk *w, const unsigned char *p, char *escaped)
{
	const unsigned char *end = w->end;
	for (;;) {
		while (*p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\')
			p++;
		if (p >= end)
			return syntax(w, p, "a string is not closed");
		if (*p == '"')
			return p;
		if (*p == '\\') {
			*escaped = 1;
			if (end - p < 2)
				return syntax(w, p, "a string is not closed");
			switch (p[1]) {
			case '"':
			case '\\':
			case '/':
			case 'b':
			case 'f':
			case 'n':
			case 'r':
			case 't': p += 2; continue;
			case 'u': {
				if (!is_escape_u(p, end))
					return syntax(w, p, "a \\u escape needs four hex digits");
				unsigned cp = hex_value(p + 2);
				/* As json_decode.c: UTF-16 halves only in pairs, so that every string is valid UTF-8. */
				if (cp >= 0xdc00 && cp < 0xe000)
					return syntax(w, p, "a low surrogate escape without its high half");
				if (cp >= 0xd800 && cp < 0xdc00) {
					unsigned low = is_escape_u(p + 6, end) ? hex_value(p + 8) : 0;
					if (low < 0xdc00 || low >= 0xe000)
						return syntax(w, p, "a high surrogate escape without its low half");
					p += 6;
				}
				p += 6;
				continue;
			}
			default: return syntax(w, p, "invalid escape in a string");
			}
		}
		if (*p < 0x20)
			return syntax(w, p, "a control character in a string");
		int n = json_utf8_sequence_length(p, (size_t)(end - p));
		if (n == 0)
			return syntax(w, p, "not valid UTF-8");
		p += n;
	}
}

/* Eight bytes at a time while eight remain: a byte b is a digit when b + 0x46 and b - 0x30 both
 * keep their top bit clear; lanes below the first non-digit are digits, so no carry or borrow
 * reaches it, and the lowest flagged lane is the first non-digit. */
static inline const unsigned char *skip_digits(const unsigned char *p, const unsigned char *end)
{
	while (end - p >= 8) {
		uint64_t x;
		memcpy(&x, p, 8);
		uint64_t flags = ((x + 0x4646464646464646ULL) | (x - 0x3030303030303030ULL)) & 0x8080808080808080ULL;
		if (flags)
			return p + (__builtin_ctzll(flags) >> 3);
		p += 8;
	}
	while (is_digit(*p))
		p++;
	return p;
}

static inline const unsigned char *scan_number(struct walk *w, const unsigned char *p, struct value *v)
{
	const unsigned char *end = w->end;
	p += *p == '-';
	const unsigned char *digits = p;
	v->plain = 1;
	if (*p == '0')
		p++;
	else if (*p >= '1' && *p <= '9')
		p = skip_digits(p + 1, end);
	else
		return syntax(w, p, "invalid number");
	v->is_integer = p - digits <= 18;
	/* Past a double's range the Lua loop gets an infinity (written null): so do long spellings. */
	if (p - digits > 300)
		v->plain = 0;
	/* Below 10^200 and with an exponent of at most two digits, a number is below 10^299: nothing
	 * larger can be past the range. An object or array holding such a number is rewritten. */
	int maybe_huge = p - digits > 200;
	if (*p == '.') {
		v->is_integer = 0;
		if (!is_digit(*++p))
			return syntax(w, p, "a number needs digits after its point");
		p = skip_digits(p, end);
		if (p[-1] == '0')
			v->plain = 0;
	}
	if (*p == 'e' || *p == 'E') {
		v->is_integer = 0;
		v->plain = 0;
		if (*++p == '+' || *p == '-')
			p++;
		if (!is_digit(*p))
			return syntax(w, p, "a number needs digits in its exponent");
		const unsigned char *exponent = p;
		p = skip_digits(p, end);
		maybe_huge |= p - exponent > 2;
	}
	w->maybe_huge += (unsigned long)maybe_huge;
	return p;
}

static const unsigned char *scan_literal(struct walk *w, const unsigned char *p, const char *word, size_t len)
{
	if ((size_t)(w->end - p) < len || memcmp(p, word, len))
		return syntax(w, p, "unexpected characters");
	return p + len;
}

static const unsigned char *skip_value(struct walk *w, const unsigned char *p, int depth);

/* After a member or an element: 1 at a comma (p then at what follows), 0 at close (p just past
 * it), -1 (not JSON) at anything else. */
static int after_item(struct walk *w, const unsigned char **p, unsigned char close)
{
	const unsigned char *q = ws(w, *p);
	if (*q == ',') {
		*p = ws(w, q + 1);
		return 1;
	}
	if (*q == close && q < w->end) {
		*p = q + 1;
		return 0;
	}
	syntax(w, q, close == '}' ? "expected ',' or '}'" : "expected ',' or ']'");
	return -1;
}

static const unsigned char *skip_members(struct walk *w, const unsigned char *p, int depth)
{
	const unsigned char *end = w->end;
	if (depth + w->depth_bias > JSON_MAX_DEPTH)
		return too_deep(w, p);
	p = ws(w, p + 1);
	if (p < end && *p == '}')
		return p + 1;
	for (;;) {
		char escaped = 0;
		if (p >= end || *p != '"')
			return syntax(w, p, "expected a member name");
		if (!(p = scan_string(w, p + 1, &escaped)))
			return NULL;
		p = ws(w, p + 1);
		if (p >= end || *p != ':')
			return syntax(w, p, "expected ':'");
		if (!(p = skip_value(w, ws(w, p + 1), depth)))
			return NULL;
		int more = after_item(w, &p, '}');
		if (more <= 0)
			return more ? NULL : p;
	}
}

static const unsigned char *skip_elements(struct walk *w, const unsigned char *p, int depth)
{
	const unsigned char *end = w->end;
	if (depth + w->depth_bias > JSON_MAX_DEPTH)
		return too_deep(w, p);
	p = ws(w, p + 1);
	if (p < end && *p == ']')
		return p + 1;
	for (;;) {
		if (!(p = skip_value(w, p, depth)))
			return NULL;
		int more = after_item(w, &p, ']');
		if (more <= 0)
			return more ? NULL : p;
	}
}

/* Scans one value starting at p (no leading space); fills v when given. Returns the end. */
static const unsigned char *scan_value(struct walk *w, const unsigned char *p, int depth, struct value *v)
{
	struct value ignored;
	if (!v)
		v = &ignored;
	v->at = p;
	v->plain = 1;
	v->escaped = 0;
	v->is_integer = 0;
	const unsigned char *q;
	unsigned long maybe_huge = w->maybe_huge, line_breaks = w->line_breaks;
	if (p >= w->end)
		return syntax(w, p, "the text ends where a value should be");
	switch (*p) {
	case '"':
		v->type = 's';
		q = scan_string(w, p + 1, &v->escaped);
		q = q ? q + 1 : NULL;
		break;
	case '{':
		v->type = 'o';
		q = skip_members(w, p, depth + 1);
		v->plain = w->maybe_huge == maybe_huge && w->line_breaks == line_breaks;
		break;
	case '[':
		v->type = 'a';
		q = skip_elements(w, p, depth + 1);
		v->plain = w->maybe_huge == maybe_huge && w->line_breaks == line_breaks;
		break;
	case 't':
		v->type = 'b';
		q = scan_literal(w, p, "true", 4);
		break;
	case 'f':
		v->type = 'b';
		q = scan_literal(w, p, "false", 5);
		break;
	case 'n':
		v->type = 'l';
		q = scan_literal(w, p, "null", 4);
		break;
	default: v->type = 'n'; q = scan_number(w, p, v);
	}
	if (q)
		v->len = (size_t)(q - p);
	return q;
}

static const unsigned char *skip_value(struct walk *w, const unsigned char *p, int depth)
{
	return scan_value(w, p, depth, NULL);
}

/* With its article: "is a string", "is an object or array". */
static const char *type_name(char type)
{
	switch (type) {
	case 's': return "a string";
	case 'n': return "a number";
	case 'l': return "null";
	case 'b': return "a boolean";
	case 'o': return "an object";
	default: return "an array";
	}
}

static int same_bytes(const unsigned char *a, const char *b, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (a[i] != (unsigned char)b[i])
			return 0;
	return 1;
}

static size_t put_utf8(unsigned char *out, unsigned cp)
{
	if (cp < 0x80) {
		out[0] = (unsigned char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (unsigned char)(0xc0 | cp >> 6);
		out[1] = (unsigned char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (unsigned char)(0xe0 | cp >> 12);
		out[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
		out[2] = (unsigned char)(0x80 | (cp & 0x3f));
		return 3;
	}
	out[0] = (unsigned char)(0xf0 | cp >> 18);
	out[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3f));
	out[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
	out[3] = (unsigned char)(0x80 | (cp & 0x3f));
	return 4;
}

/* The next character of a validated string's body as UTF-8 bytes, its escape undone; advances p.
 * A lone surrogate cannot occur: the scanner refuses it. */
static size_t next_char(const unsigned char **p, unsigned char bytes[4])
{
	static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
	const unsigned char *s = *p;
	if (*s != '\\') {
		bytes[0] = *s;
		*p = s + 1;
		return 1;
	}
	if (s[1] != 'u') {
		bytes[0] = (unsigned char)to[strchr(from, s[1]) - from];
		*p = s + 2;
		return 1;
	}
	unsigned cp = hex_value(s + 2);
	s += 6;
	if (cp >= 0xd800 && cp < 0xdc00) {
		cp = 0x10000 + ((cp - 0xd800) << 10) + (hex_value(s + 2) - 0xdc00);
		s += 6;
	}
	*p = s;
	return put_utf8(bytes, cp);
}

/* The body [p, q) unescaped into out; its length, or cap + 1 when longer than cap. */
static size_t unescape(const unsigned char *p, const unsigned char *q, unsigned char *out, size_t cap)
{
	size_t n = 0;
	while (p < q) {
		unsigned char bytes[4];
		size_t count = next_char(&p, bytes);
		if (n + count > cap)
			return cap + 1;
		memcpy(out + n, bytes, count);
		n += count;
	}
	return n;
}

/* Rare: a member name with escapes, compared as it is unescaped. */
static int escaped_name_is(const unsigned char *p, const unsigned char *q, const char *name, size_t len)
{
	size_t n = 0;
	while (p < q) {
		unsigned char bytes[4];
		size_t count = next_char(&p, bytes);
		if (n + count > len || memcmp(name + n, bytes, count))
			return 0;
		n += count;
	}
	return n == len;
}

/* Whether the member name spelt at [p, q) (between its quotes) is name. */
static int name_is(const unsigned char *p, const unsigned char *q, char escaped, const char *name, size_t len)
{
	if (escaped)
		return escaped_name_is(p, q, name, len);
	return (size_t)(q - p) == len && same_bytes(p, name, len);
}

/* Of the nodes first and its siblings, the one named [p, q); -1 for none. */
static int search_member(struct walk *w, int first, const unsigned char *p, const unsigned char *q, char escaped)
{
	const struct walk_node *nodes = w->m->nodes;
	for (int n = first; n >= 0; n = nodes[n].sibling)
		if (name_is(p, q, escaped, nodes[n].name, nodes[n].len))
			return n;
	return -1;
}

/* The node that member number k, named [p, q), of an object whose members on the paths start at
 * first matches (-1: none), remembered in g for the next object of the same place. */
static int find_member(struct walk *w, struct member_guess *g, int first, const unsigned char *p,
		       const unsigned char *q, char escaped)
{
	size_t len = (size_t)(q - p);
	if (!g || escaped)
		return search_member(w, first, p, q, escaped);
	if (g->name && g->len == len && same_bytes(p, (const char *)g->name, len))
		return g->node;
	g->name = p;
	g->len = len;
	g->node = search_member(w, first, p, q, 0);
	return g->node;
}

/* --------------------------------------------------------------------------------------------
 * Writing a record
 * ------------------------------------------------------------------------------------------ */

/* The value is a validated JSON number followed by a byte that ends it, so strtod stops there. */
static double number_value(const struct value *v)
{
	return strtod((const char *)v->at, NULL);
}

/* The value of eight ASCII digits, by halves of halves (the bytes are known to be digits). */
static inline long long eight_digits(const unsigned char *p)
{
	uint64_t x;
	memcpy(&x, p, 8);
	x = (x & 0x0f0f0f0f0f0f0f0fULL) * 2561 >> 8;
	x = (x & 0x00ff00ff00ff00ffULL) * 6553601 >> 16;
	return (long long)((x & 0x0000ffff0000ffffULL) * 42949672960001ULL >> 32);
}

/* The value of the 9 to 16 digits at p, when 16 bytes from p are readable: the first eight read
 * at once, then the eight bytes after them with the bytes past the digits shifted out (a zero
 * byte reads as a leading 0). */
static inline long long nine_to_sixteen_digits(const unsigned char *p, size_t digits)
{
	static const long long powers[] = {1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000};
	uint64_t rest;
	memcpy(&rest, p + 8, 8);
	rest <<= 8 * (16 - digits);
	return eight_digits(p) * powers[digits - 8] + eight_digits((const unsigned char *)&rest);
}

/* A number spelt with 19 or more digits and neither point nor exponent, exactly, when it fits in
 * 64 bits (ids and sequence numbers past 10^18): through a double it would be rounded. */
static int exact_long_integer(const struct value *v, long long *out)
{
	const unsigned char *p = v->at, *end = v->at + v->len;
	int negative = p < end && *p == '-';
	p += negative;
	if (end - p < 19 || end - p > 20)
		return -1;
	unsigned long long n = 0;
	for (; p < end; p++) {
		if (!is_digit(*p) || __builtin_mul_overflow(n, 10ull, &n) ||
		    __builtin_add_overflow(n, (unsigned)(*p - '0'), &n))
			return -1;
	}
	if (negative ? n > 9223372036854775808ull : n > 9223372036854775807ull)
		return -1;
	*out = negative ? (long long)(0 - n) : (long long)n;
	return 0;
}

/* math.tointeger's rule: an integral number that fits, else nothing. readable: bytes from the
 * value's start that may be read. */
static int number_to_integer(const struct value *v, size_t readable, long long *out)
{
	if (v->is_integer) {
		const unsigned char *p = v->at, *end = v->at + v->len;
		int negative = *p == '-';
		long long n = 0;
		p += negative;
		if (end - p > 8 && end - p <= 16 && readable >= 17) {
			/* Millisecond stamps have 13 digits. */
			n = nine_to_sixteen_digits(p, (size_t)(end - p));
			p = end;
		} else if (end - p >= 8) {
			/* 17 or 18 digits: the last eight are read in one go. */
			for (; end - p > 8; p++)
				n = n * 10 + (*p - '0');
			n = n * 100000000 + eight_digits(p);
			p = end;
		}
		for (; p < end; p++)
			n = n * 10 + (*p - '0');
		*out = negative ? -n : n;
		return 0;
	}
	if (exact_long_integer(v, out) == 0)
		return 0;
	double d = number_value(v);
	if (d != floor(d) || !(d >= -9223372036854775808.0 && d < 9223372036854775808.0))
		return -1;
	*out = (long long)d;
	return 0;
}

/* The digits of a number spelt with an exponent or trailing zeros, as json_double_text would
 * write the double it reads as, when that can be told from the digits alone: at most 15
 * significant digits (so no shorter decimal reads as the same double, and the decimal is the
 * shortest text), and either an integer of at most 15 digits or at most 6 decimals below 1e9 (forms
 * json_double_text uses there). Returns 0 when strtod and json_double_text must decide. */
static size_t quick_number_text(const struct value *v, char *out)
{
	const unsigned char *p = v->at;
	const unsigned char *end = p + v->len;
	int negative = *p == '-';
	p += negative;
	/* The digits of the mantissa, its point left out: the text only moves that point. */
	char digits[32];
	const unsigned char *run_end = skip_digits(p, end);
	size_t whole = (size_t)(run_end - p), fraction = 0;
	if (whole > sizeof digits)
		return 0;
	memcpy(digits, p, whole);
	p = run_end;
	if (*p == '.') {
		run_end = skip_digits(p + 1, end);
		fraction = (size_t)(run_end - p - 1);
		if (whole + fraction > sizeof digits)
			return 0;
		memcpy(digits + whole, p + 1, fraction);
		p = run_end;
	}
	int exponent = 0;
	if (p < end) {
		int negative_exponent = *++p == '-';
		p += *p == '-' || *p == '+';
		if (end - p > 3)
			return 0;
		for (; p < end; p++)
			exponent = exponent * 10 + (*p - '0');
		exponent = negative_exponent ? -exponent : exponent;
	}
	size_t first = 0, last = whole + fraction;
	while (first < last && digits[first] == '0')
		first++;
	while (last > first && digits[last - 1] == '0')
		last--;
	int significant = (int)(last - first);
	if (significant == 0 || significant > 15)
		return 0; /* zero and its sign, or more digits than a double tells apart: the slow path */
	/* The value is digits[first, last) times 10^scale. */
	int scale = exponent - (int)fraction + (int)(whole + fraction - last);
	size_t len = 0;
	if (negative)
		out[len++] = '-';
	if (scale >= 0) {
		if (significant + scale > 15)
			return 0; /* 16 digits and more (some past 2^53): the slow path */
		memcpy(out + len, digits + first, (size_t)significant);
		len += (size_t)significant;
		memset(out + len, '0', (size_t)scale);
		return len + (size_t)scale;
	}
	int decimals = -scale, units = significant - decimals;
	if (decimals > 6 || units > 9)
		return 0;
	if (units <= 0) {
		out[len++] = '0';
		out[len++] = '.';
		memset(out + len, '0', (size_t)-units);
		len += (size_t)-units;
		memcpy(out + len, digits + first, (size_t)significant);
		return len + (size_t)significant;
	}
	memcpy(out + len, digits + first, (size_t)units);
	len += (size_t)units;
	out[len++] = '.';
	memcpy(out + len, digits + first + units, (size_t)decimals);
	return len + (size_t)decimals;
}

/* Bit 7 of each of the 8 bytes at p that is not an ASCII digit (see skip_digits). */
static inline uint64_t non_digits(const unsigned char *p)
{
	uint64_t x;
	memcpy(&x, p, 8);
	return ((x + 0x4646464646464646ULL) | (x - 0x3030303030303030ULL)) & 0x8080808080808080ULL;
}

/* How many digits start p, when fewer than 16; 16 for as many or more. Reads 16 bytes. */
static inline size_t count_digits(const unsigned char *p)
{
	uint64_t flags = non_digits(p);
	if (flags)
		return (size_t)__builtin_ctzll(flags) >> 3;
	flags = non_digits(p + 8);
	return flags ? 8 + ((size_t)__builtin_ctzll(flags) >> 3) : 16;
}

/* quick_number_text's commonest cases, in fewer instructions: a positive mantissa without leading
 * zero and an exponent of one or two digits, written as an integer of at most 15 digits (when the
 * exponent is at least the fraction's length: Polygon's volume 9.833403e+06 is 9833403) or as at
 * most 9 units and 6 decimals (1.25281897e+07 is 12528189.7). The digits are moved in 16-byte
 * copies; the text is what quick_number_text writes. 0 for any other number. v is valid JSON;
 * 33 bytes from v->at are readable (after 15 digits and 16 decimals it looks at one more), and
 * out has 32 bytes of room. */
static inline size_t mantissa_and_exponent_text(const struct value *v, char *out)
{
	const unsigned char *p = v->at, *end = v->at + v->len;
	if (*p == '-' || *p == '0')
		return 0;
	size_t whole = count_digits(p), fraction = 0;
	if (whole > 15)
		return 0;
	const unsigned char *q = p + whole;
	if (*q == '.') {
		fraction = count_digits(q + 1);
		q += 1 + fraction;
	}
	if (*q != 'e' && *q != 'E')
		return 0;
	int trailing_zero = fraction && q[-1] == '0';
	q += 1 + (q[1] == '+');
	if (!is_digit(*q) || end - q > 2)
		return 0; /* a negative exponent, or three digits and more */
	size_t exponent = end - q == 1 ? (size_t)(q[0] - '0') : (size_t)(q[0] - '0') * 10 + (size_t)(q[1] - '0');
	memcpy(out, p, 16);
	memcpy(out + whole, p + whole + 1, 16);
	if (exponent >= fraction) {
		if (whole + exponent > 15)
			return 0;
		memcpy(out + whole + fraction, "0000000000000000", 16);
		return whole + exponent;
	}
	size_t units = whole + exponent, decimals = fraction - exponent;
	if (trailing_zero || units > 9 || decimals > 6)
		return 0;
	out[units] = '.';
	memcpy(out + units + 1, p + whole + 1 + exponent, 16);
	return units + 1 + decimals;
}

/* A number not plain, as the runtime writes the double it reads as: the quickest of the ways that
 * can tell (readable: the bytes from v->at that may be read). */
static size_t number_text(const struct value *v, char *out, size_t readable)
{
	size_t len = readable > 32 ? mantissa_and_exponent_text(v, out) : 0;
	if (!len)
		len = quick_number_text(v, out);
	return len ? len : json_double_text(number_value(v), out);
}

static inline int zone_offset_at(struct field_op *op, int64_t seconds)
{
	if (seconds < op->zone_from || seconds >= op->zone_until)
		op->zone_offset = date_zone_offset_span(op->f->zone, seconds, &op->zone_from, &op->zone_until);
	return op->zone_offset;
}

static int64_t day_in_zone(struct field_op *op, int64_t seconds)
{
	return civil_floor_div(seconds + zone_offset_at(op, seconds), DATE_SECONDS_PER_DAY);
}

/* day_from_ms for the usual value, a positive stamp of 9 to 16 digits giving a day in range;
 * 0 for any other, which day_from_ms then reads (or refuses, with its message). */
static inline int quick_day_from_ms(const struct walk *w, struct field_op *op, int64_t *out)
{
	const struct value *v = op->v;
	if (v->type != 'n' || !v->is_integer || v->at[0] == '-' || v->len < 9 || v->len > 16 || w->end - v->at < 17)
		return 0;
	int64_t seconds = date_ms_to_seconds((uint64_t)nine_to_sixteen_digits(v->at, v->len));
	/* At least 10^8 ms: local time is past 1970-01-02, so the day is a quotient of positives. */
	int64_t day = date_seconds_to_day((uint64_t)(seconds + zone_offset_at(op, seconds)));
	if (day < DATE_MIN_DAY || day > DATE_MAX_DAY)
		return 0;
	*out = day;
	return 1;
}

static int day_from_ms(struct walk *w, struct field_op *op, int64_t *out)
{
	const struct walk_field *f = op->f;
	const struct value *v = op->v;
	const char *source = w->m->sources[f->source].name;
	if (v->type != 'n') {
		wrong_shape(w, "item %d of '%s': '%s' is %s, not a number of milliseconds", w->item, w->m->list, source,
			    type_name(v->type));
		return -1;
	}
	long long ms;
	int64_t seconds;
	if (number_to_integer(v, (size_t)(w->end - v->at), &ms) == 0 && ms > -(1LL << 53) && ms < (1LL << 53)) {
		seconds = civil_floor_div(ms, 1000);
	} else {
		double d = number_value(v);
		if (!(fabs(d) < 1e15))
			seconds = INT64_MAX;
		else
			seconds = (int64_t)floor(d / 1000.0);
	}
	int64_t day = seconds == INT64_MAX ? INT64_MAX : day_in_zone(op, seconds);
	if (day < DATE_MIN_DAY || day > DATE_MAX_DAY) {
		wrong_shape(w, "item %d of '%s': '%s' = %.*s ms is not a time in the years 1000 to 9999", w->item,
			    w->m->list, source, (int)(v->len > 40 ? 40 : v->len), (const char *)v->at);
		return -1;
	}
	*out = day;
	return 0;
}

static int day_from_text(struct walk *w, const struct walk_field *f, const struct value *v, int64_t *out)
{
	char text[DATE_DAY_LEN];
	size_t len = 0;
	if (v->type == 's' && !v->escaped && v->len == 12) {
		memcpy(text, v->at + 1, 10);
		len = 10;
	} else if (v->type == 's' && v->escaped) {
		len = unescape(v->at + 1, v->at + v->len - 1, (unsigned char *)text, 10);
	}
	if (len == 10) {
		text[10] = '\0';
		if (date_parse_day(text, out) == 0)
			return 0;
	}
	wrong_shape(w, "item %d of '%s': '%s' is not a YYYY-MM-DD day", w->item, w->m->list,
		    w->m->sources[f->source].name);
	return -1;
}

/* An ISO 8601 / RFC 3339 instant, in microseconds. */
static int instant_from_text(struct walk *w, const struct walk_field *f, const struct value *v, int64_t *out)
{
	char text[DATE_INSTANT_LEN + 8];
	size_t len = 0;
	if (v->type == 's' && !v->escaped && v->len - 2 <= sizeof text) {
		memcpy(text, v->at + 1, v->len - 2);
		len = v->len - 2;
	} else if (v->type == 's' && v->escaped) {
		len = unescape(v->at + 1, v->at + v->len - 1, (unsigned char *)text, sizeof text);
	}
	if (len <= sizeof text && len && date_parse_instant(text, len, f->zone, out) == 0)
		return 0;
	wrong_shape(w, "item %d of '%s': '%s' is not an ISO 8601 date-time", w->item, w->m->list,
		    w->m->sources[f->source].name);
	return -1;
}

static inline char *put(char *out, const void *data, size_t len)
{
	memcpy(out, data, len);
	return out + len;
}

/* Short copies as one fixed 16-byte move (the output has the slack, the source is checked):
 * memcpy's call costs more than the bytes. */
static inline char *put_short(char *out, const void *data, size_t len, size_t readable)
{
	if (len <= 16 && readable >= 16) {
		memcpy(out, data, 16);
		return out + len;
	}
	return put(out, data, len);
}

static inline char *put_piece(char *out, const struct piece *piece)
{
	memcpy(out, piece->at, 16);
	for (size_t i = 16; i < piece->len; i += 16)
		memcpy(out + i, piece->at + i, 16);
	return out + piece->len;
}

/* A value as the page spells it. */
static inline char *put_value(struct walk *w, char *out, const struct value *v)
{
	return put_short(out, v->at, v->len, (size_t)(w->end - v->at));
}

/* An object or array that is not plain, written as the Lua loop would, on one line: a number that
 * reads as an infinity becomes null (never longer than the number), a line break between tokens a
 * space, the rest as spelt. The value is valid JSON, so a number ends where strtod stops, and a
 * line break can only be space between tokens. */
static size_t container_text(const struct value *v, char *out)
{
	const unsigned char *p = v->at, *end = v->at + v->len;
	char *start = out;
	while (p < end) {
		if (*p == '"') {
			const unsigned char *q = p + 1;
			while (*q != '"')
				q += *q == '\\' ? 2 : 1;
			out = put(out, p, (size_t)(q + 1 - p));
			p = q + 1;
		} else if (*p == '-' || is_digit(*p)) {
			char *number_end;
			double d = strtod((const char *)p, &number_end);
			const unsigned char *q = (const unsigned char *)number_end;
			out = isinf(d) ? put(out, "null", 4) : put(out, p, (size_t)(q - p));
			p = q;
		} else {
			*out++ = *p == '\n' || *p == '\r' ? ' ' : (char)*p;
			p++;
		}
	}
	return (size_t)(out - start);
}

static void set_month(struct walk *w, int64_t day)
{
	date_format_day(day, w->day_text + 1);
	w->day_text[0] = w->day_text[11] = '"';
	date_month_span(day, &w->month_first, &w->month_last);
}

/* Consecutive items mostly fall in the same month: its text is kept and only the day changes. */
static inline char *put_day(struct walk *w, char *out, int64_t day)
{
	if (day < w->month_first || day > w->month_last)
		set_month(w, day);
	int dom = (int)(day - w->month_first) + 1;
	w->day_text[9] = (char)('0' + dom / 10);
	w->day_text[10] = (char)('0' + dom % 10);
	memcpy(out, w->day_text, 16);
	return out + 12;
}

/* An epoch number as a whole count of units, rounded down; per: how many units one of the page's
 * makes (1, or 1000 for milliseconds from seconds). -1 when it is beyond any year. */
static int epoch_count(const struct walk *w, const struct value *v, int64_t per, int64_t *out)
{
	long long n;
	if (number_to_integer(v, (size_t)(w->end - v->at), &n) == 0 && n > -(1LL << 53) && n < (1LL << 53)) {
		*out = n * per;
		return 0;
	}
	double d = number_value(v) * (double)per;
	if (!(fabs(d) < 1e18))
		return -1;
	*out = (int64_t)floor(d);
	return 0;
}

/* Fails the walk: the epoch field's value is no time the runtime can write. */
static int epoch_out_of_range(struct walk *w, const struct field_op *op)
{
	const struct value *v = op->v;
	wrong_shape(w, "item %d of '%s': '%s' = %.*s %s is not a time in the years 1000 to 9999", w->item, w->m->list,
		    w->m->sources[op->f->source].name, (int)(v->len > 40 ? 40 : v->len), (const char *)v->at,
		    op->kind == FROM_DATETIME_MS ? "ms" : "s");
	return -1;
}

/* The value of an epoch field (day_from_s, datetime_from_s, datetime_from_ms) as a count of
 * units (per as for epoch_count) when it lies in [first, end); else the walk fails, naming the
 * item. */
static int epoch_value(struct walk *w, const struct field_op *op, int64_t per, int64_t first, int64_t end, int64_t *out)
{
	const struct value *v = op->v;
	if (v->type != 'n') {
		wrong_shape(w, "item %d of '%s': '%s' is %s, not a number of %s", w->item, w->m->list,
			    w->m->sources[op->f->source].name, type_name(v->type),
			    op->kind == FROM_DATETIME_MS ? "milliseconds" : "seconds");
		return -1;
	}
	if (epoch_count(w, v, per, out) || *out < first || *out >= end)
		return epoch_out_of_range(w, op);
	return 0;
}

/* A string's text, its escapes undone: in place when it has none, else in buf (size bytes: at most
 * cap of text, the rest zeroed). NULL when it is not a string or its text is longer than cap. */
static const unsigned char *string_text(const struct value *v, unsigned char *buf, size_t size, size_t cap, size_t *len)
{
	if (v->type != 's')
		return NULL;
	if (!v->escaped) {
		*len = v->len - 2;
		return v->at + 1;
	}
	*len = unescape(v->at + 1, v->at + v->len - 1, buf, cap);
	if (*len > cap)
		return NULL;
	memset(buf + *len, 0, size - *len);
	return buf;
}

/* Whether [p, p + len) is exactly a JSON number: then *v is that number, as scan_number reads it. */
static int spells_number(const unsigned char *p, size_t len, struct value *v)
{
	const unsigned char *end = p + len, *start = p;
	p += p < end && *p == '-';
	const unsigned char *digits = p;
	if (p < end && *p == '0')
		p++;
	else if (p < end && *p >= '1' && *p <= '9')
		while (p < end && is_digit(*p))
			p++;
	else
		return 0;
	*v = (struct value){start, len, 'n', p - digits <= 300, 0, p - digits <= 18};
	if (p < end && *p == '.') {
		if (++p == end || !is_digit(*p))
			return 0;
		while (p < end && is_digit(*p))
			p++;
		v->is_integer = 0;
		v->plain &= p[-1] != '0';
	}
	if (p < end && (*p | 0x20) == 'e') {
		p += p + 1 < end && (p[1] == '+' || p[1] == '-');
		if (++p == end || !is_digit(*p))
			return 0;
		while (p < end && is_digit(*p))
			p++;
		v->is_integer = 0;
		v->plain = 0;
	}
	return p == end;
}

/* as = "number": a number as FROM_COPY writes it, the same for a string that is one ("12.5");
 * anything else is left out. */
static char *put_number(struct walk *w, char *out, const struct value *v, int *omit)
{
	struct value number = *v;
	size_t readable = (size_t)(w->end - v->at);
	unsigned char buf[64 + 48]; /* a number's text, and what number_text may read past it */
	if (v->type == 's') {
		size_t len;
		const unsigned char *text = string_text(v, buf, sizeof buf, 64, &len);
		if (!text || !spells_number(text, len, &number)) {
			*omit = 1;
			return out;
		}
		/* The closing quote or the zeroed room ends the number for strtod and the digit scans. */
		readable = text == buf ? sizeof buf : (size_t)(w->end - text);
	} else if (v->type != 'n') {
		*omit = 1;
		return out;
	}
	if (number.plain)
		return put(out, number.at, number.len);
	return out + number_text(&number, out, readable);
}

/* as = "string": a string as it is, a number as the page spells it and a boolean as its word,
 * quoted; null, objects and arrays are left out. */
static char *put_string(struct walk *w, char *out, const struct value *v, int *omit)
{
	switch (v->type) {
	case 's': return put_value(w, out, v);
	case 'n':
	case 'b':
		*out = '"';
		out = put(out + 1, v->at, v->len);
		*out = '"';
		return out + 1;
	default: *omit = 1; return out;
	}
}

/* as = "boolean": a boolean, or the string "true" or "false" as one; anything else is left out. */
static char *put_boolean(struct walk *w, char *out, const struct value *v, int *omit)
{
	if (v->type == 'b')
		return put_value(w, out, v);
	unsigned char buf[8];
	size_t len = 0;
	const unsigned char *text = string_text(v, buf, sizeof buf, 5, &len);
	if (text && len == 4 && !memcmp(text, "true", 4))
		return put(out, "true", 4);
	if (text && len == 5 && !memcmp(text, "false", 5))
		return put(out, "false", 5);
	*omit = 1;
	return out;
}

static inline char *put_two_digits(char *out, int n)
{
	out[0] = (char)('0' + n / 10);
	out[1] = (char)('0' + n % 10);
	return out + 2;
}

/* An instant as RFC 3339 in UTC, quoted: "YYYY-MM-DDTHH:MM:SSZ", with ".mmm" before the Z when it
 * is not a whole second. */
static char *put_instant(struct walk *w, char *out, int64_t ms)
{
	int64_t seconds = civil_floor_div(ms, 1000);
	int64_t day = civil_floor_div(seconds, DATE_SECONDS_PER_DAY);
	int clock = (int)(seconds - day * DATE_SECONDS_PER_DAY), millis = (int)(ms - seconds * 1000);
	out = put_day(w, out, day) - 1; /* its closing quote becomes the T */
	*out++ = 'T';
	out = put_two_digits(out, clock / 3600);
	*out++ = ':';
	out = put_two_digits(out, clock / 60 % 60);
	*out++ = ':';
	out = put_two_digits(out, clock % 60);
	if (millis) {
		*out++ = '.';
		*out++ = (char)('0' + millis / 100);
		out = put_two_digits(out, millis % 100);
	}
	*out++ = 'Z';
	*out++ = '"';
	return out;
}

/* The epoch kinds: the field's value checked, its column set, its text written. */
static char *put_epoch(struct walk *w, char *out, struct field_op *op, int64_t *cols)
{
	int64_t *column = &cols[op->f->column];
	const int64_t ms_per_day = 1000 * DATE_SECONDS_PER_DAY;
	if (op->kind == FROM_DAY_S) {
		int64_t seconds;
		/* A day either side, as date.from_ms: the zone's offset decides. */
		if (epoch_value(w, op, 1, (DATE_MIN_DAY - 1) * DATE_SECONDS_PER_DAY,
				(DATE_MAX_DAY + 2) * DATE_SECONDS_PER_DAY, &seconds))
			return NULL;
		*column = day_in_zone(op, seconds);
		if (*column < DATE_MIN_DAY || *column > DATE_MAX_DAY) {
			epoch_out_of_range(w, op);
			return NULL;
		}
		return put_day(w, out, *column);
	}
	int64_t ms;
	if (epoch_value(w, op, op->kind == FROM_DATETIME_S ? 1000 : 1, DATE_MIN_DAY * ms_per_day,
			(DATE_MAX_DAY + 1) * ms_per_day, &ms))
		return NULL;
	*column = ms * 1000;
	return put_instant(w, out, ms);
}

/* Writes the value of a field after its key (inlined in both writers: it is the walk's inner
 * loop). NULL when the item cannot give the field a value it must have; out unchanged and *omit
 * set when the field has none in this item (it is left out). */
static inline __attribute__((always_inline)) char *put_field_value(struct walk *w, char *out, struct field_op *op,
								   int64_t *cols, int *omit)
{
	const struct value *v = op->v;
	long long integer;
	if (op->kind == FROM_COPY) {
		if (v->plain)
			return put_value(w, out, v);
		if (v->type != 'n')
			return out + container_text(v, out);
		return out + number_text(v, out, (size_t)(w->end - v->at));
	}
	if (v->type == 'l' && op->kind != FROM_STRING) {
		*omit = 1; /* every conversion leaves null out */
		return out;
	}
	switch (op->kind) {
	case FROM_NUMBER: return put_number(w, out, v, omit);
	case FROM_STRING: return put_string(w, out, v, omit);
	case FROM_BOOLEAN: return put_boolean(w, out, v, omit);
	case FROM_DAY_S:
	case FROM_DATETIME_MS:
	case FROM_DATETIME_S: return put_epoch(w, out, op, cols);
	case FROM_INTEGER:
		if (v->type != 'n' || number_to_integer(v, (size_t)(w->end - v->at), &integer)) {
			*omit = 1;
			return out;
		}
		cols[op->f->column] = integer;
		/* Spelt as an integer already: the text is the integer's text, but for "-0". */
		if (v->is_integer && !(v->len == 2 && v->at[0] == '-' && v->at[1] == '0'))
			return put_value(w, out, v);
		return out + json_int_text(integer, out);
	case FROM_DATETIME:
		if (instant_from_text(w, op->f, v, &cols[op->f->column]))
			return NULL;
		return put(out, v->at, v->len);
	case FROM_DAY_MS:
		if (!quick_day_from_ms(w, op, &cols[op->f->column]) && day_from_ms(w, op, &cols[op->f->column]))
			return NULL;
		return put_day(w, out, cols[op->f->column]);
	default: /* FROM_DAY */
		if (day_from_text(w, op->f, v, &cols[op->f->column]))
			return NULL;
		return put(out, v->at, v->len);
	}
}

/* A field's default, as its value at out, and its column's. */
static inline char *put_fallback(char *out, const struct field_op *op, int64_t *cols)
{
	if (op->f->fallback_column != WALK_NO_VALUE)
		cols[op->f->column] = op->f->fallback_column;
	return put_piece(out, &op->fallback);
}

static char *required_finds_nothing(struct walk *w, const struct field_op *op) __attribute__((cold));

static char *required_finds_nothing(struct walk *w, const struct field_op *op)
{
	wrong_shape(w, "item %d of '%s': field '%s' is required, and its path '%s' finds nothing", w->item, w->m->list,
		    op->f->name, w->m->sources[op->f->source].name);
	return NULL;
}

/* Writes a field as ',"name":value' (its default, or nothing, when it has no value); NULL when
 * the item cannot give it a value it must have. */
static inline char *put_field(struct walk *w, char *out, struct field_op *op, int64_t *cols)
{
	if (op->kind == FROM_CONTEXT)
		return put_piece(out, &op->piece);
	if (!op->v->at) {
		if (op->f->required)
			return required_finds_nothing(w, op);
		return op->fallback.len ? put_fallback(put_piece(out, &op->piece), op, cols) : out;
	}
	int omit = 0;
	char *value = put_piece(out, &op->piece);
	char *end = put_field_value(w, value, op, cols, &omit);
	if (!omit)
		return end;
	return op->fallback.len ? put_fallback(value, op, cols) : out;
}

/* Lays out the pieces; -1 when there is no memory for them. */
static int build_pieces(struct walk *w)
{
	const struct walk_mapping *m = w->m;
	size_t size = w->frame->head_len + w->frame->tail_len + 2 * PIECE_PAD;
	for (int i = 0; i < m->nfields; i++)
		size += 1 + m->fields[i].key_len + w->constants[i].len + m->fields[i].fallback_len + 2 * PIECE_PAD;
	char *at = w->pieces = calloc(1, size);
	w->pieces_len = size;
	if (!at)
		return -1;
	/* The plan holds the same text, '{' and '}', and a pad after each of its pieces. */
	w->plan.text = calloc(1, size + 2 + (size_t)(m->nfields + 2) * PLAN_PAD); /* none: no plan, write_record */
	w->head = (struct piece){at, w->frame->head_len};
	at = put(at, w->frame->head, w->frame->head_len) + PIECE_PAD;
	w->tail = (struct piece){at, w->frame->tail_len};
	at = put(at, w->frame->tail, w->frame->tail_len) + PIECE_PAD;
	/* The pieces hold the frame, every key and every constant: what a record writes but its values. */
	w->record_bound = w->pieces_len + m->fixed_bound + 2 + RECORD_SLACK;
	w->nops = 0;
	for (int i = 0; i < m->nfields; i++) {
		const struct walk_field *f = &m->fields[i];
		int constant = f->kind == FROM_CONTEXT || f->kind == FROM_VALUE;
		if (constant && !w->constants[i].len)
			continue;
		char *piece = at;
		*at++ = ',';
		at = put(at, f->key, f->key_len);
		if (constant)
			at = put(at, w->constants[i].text, w->constants[i].len);
		struct field_op *op = &w->ops[w->nops++];
		*op = (struct field_op){constant ? FROM_CONTEXT : f->kind,
					f,
					constant ? NULL : &w->values[f->source],
					{piece, (size_t)(at - piece)},
					0,
					0,
					0,
					{NULL, 0}};
		at += PIECE_PAD;
		if (!constant && f->fallback_len) {
			op->fallback = (struct piece){at, f->fallback_len};
			at = put(at, f->fallback, f->fallback_len) + PIECE_PAD;
		}
	}
	return 0;
}

/* Grows a buffer to hold need bytes, within the memory cap; NULL (the old block kept) when it
 * cannot. */
static void *grow(struct walk *w, void *ptr, size_t *cap, size_t need, size_t first)
{
	size_t size = *cap ? *cap : first;
	while (size < need)
		size *= 2;
	if (size > w->memory_cap)
		return NULL;
	void *grown = realloc(ptr, size);
	if (grown)
		*cap = size;
	return grown;
}

/* Out of line: rare, and it would make every record's start too big to inline. */
static int grow_buffers(struct walk *w, size_t data_bytes) __attribute__((noinline));

/* Room for data_bytes more of records and one more entry: almost always there already. */
static inline int reserve(struct walk *w, size_t data_bytes)
{
	const struct walk_output *o = w->out;
	if (o->len + data_bytes <= o->mem.cap && o->count < o->mem.entries_cap)
		return 0;
	return grow_buffers(w, data_bytes);
}

static int grow_buffers(struct walk *w, size_t data_bytes)
{
	struct walk_output *o = w->out;
	struct walk_buffers *mem = &o->mem;
	size_t ncolumns = (size_t)w->m->ncolumns;
	if (o->len + data_bytes > mem->cap) {
		char *data = grow(w, mem->data, &mem->cap, o->len + data_bytes, 64 * 1024);
		if (!data)
			return -1;
		mem->data = data;
	}
	if (o->count == mem->entries_cap) {
		size_t cap = mem->entries_cap ? mem->entries_cap * 2 : 1024;
		size_t entries_bytes = mem->entries_cap * sizeof *mem->entries,
		       cols_bytes = mem->entries_cap * ncolumns * 8;
		struct walk_entry *entries = grow(w, mem->entries, &entries_bytes, cap * sizeof *entries, 1);
		if (!entries)
			return -1;
		mem->entries = entries;
		if (ncolumns) {
			int64_t *cols = grow(w, mem->cols, &cols_bytes, cap * ncolumns * sizeof *cols, 1);
			if (!cols)
				return -1;
			mem->cols = cols;
		}
		mem->entries_cap = cap;
	}
	return 0;
}

static void note_column(struct walk_column_span *span, int64_t day, size_t record)
{
	if (day == WALK_NO_VALUE) {
		span->every_record = 0;
		return;
	}
	if (record == 0)
		span->first = day;
	else if (day < span->last)
		span->ascending = 0;
	span->last = day;
}

static int beyond_memory_cap(struct walk *w) __attribute__((noinline, cold));

static int beyond_memory_cap(struct walk *w)
{
	wrong_shape(w, "the records of one page need more than the memory limit (%zu MB)", w->memory_cap >> 20);
	return -1;
}

/* Room for one more record, and its day columns, cleared; -1 (the walk failed) past the memory
 * cap. */
static inline int begin_record(struct walk *w, size_t item_len, int64_t **cols_out)
{
	struct walk_output *o = w->out;
	const struct walk_mapping *m = w->m;
	/* Copied values lie inside the item (one may be copied by several fields); everything else is
	 * bounded by the declaration and the pieces. */
	if (reserve(w, w->record_bound + item_len * (size_t)m->max_copies))
		return beyond_memory_cap(w);
	/* No value columns: no buffer for them either (NULL + 0 is not a pointer to compute). */
	int64_t *cols = *cols_out = m->ncolumns ? o->mem.cols + o->count * (size_t)m->ncolumns : NULL;
	for (int d = 0; d < m->ncolumns; d++)
		cols[d] = WALK_NO_VALUE;
	return 0;
}

/* Keeps the record written at the end of the records, [line, end), its data at data_offset. */
static inline void end_record(struct walk *w, const int64_t *cols, const char *line, const char *end,
			      size_t data_offset, size_t data_len)
{
	struct walk_output *o = w->out;
	for (int d = 0; d < w->m->ncolumns; d++)
		note_column(&o->column_span[d], cols[d], o->count);
	struct walk_entry *e = &o->mem.entries[o->count];
	e->data_offset = data_offset;
	e->data_len = data_len;
	e->offset = o->len;
	e->len = (size_t)(end - line);
	o->len += e->len;
	o->count++;
}

static int write_record(struct walk *w, size_t item_len)
{
	int64_t *cols = NULL;
	if (begin_record(w, item_len, &cols))
		return -1;
	char *line = w->out->mem.data + w->out->len;
	char *start = put_piece(line, &w->head);
	/* Every field starts with its comma: the first one's becomes the object's brace. */
	char *out = start;
	for (int i = 0; i < w->nops; i++)
		if (!(out = put_field(w, out, &w->ops[i], cols)))
			return -1;
	if (out == start)
		*out++ = '{';
	*start = '{';
	*out++ = '}';
	size_t data_len = (size_t)(out - start);
	out = put_piece(out, &w->tail);
	end_record(w, cols, line, out, (size_t)(start - line), data_len);
	return 0;
}

/* write_record for an item read by read_item_of_shape, from the plan: 0 when written, -1 on
 * error (as write_record fails), 1 when a field has no value in this item (an integer field
 * whose value is no integer, a null day), which the plan cannot leave out, or when the item's
 * nested values are not the ones the plan is for: nothing is kept then. */
static int write_planned_record(struct walk *w, size_t item_len)
{
	if ((w->present ^ w->plan.present) & w->m->nested)
		return 1;
	int64_t *cols = NULL;
	if (begin_record(w, item_len, &cols))
		return -1;
	for (int i = 0; i < w->plan.ncolumns; i++)
		cols[w->plan.columns[i].column] = w->plan.columns[i].value;
	char *line = w->out->mem.data + w->out->len;
	char *out = line;
	const struct plan_step *step = w->plan.steps;
	for (;; step++) {
		/* Most pieces are at most 32 bytes: two moves, no loop. */
		memcpy(out, step->piece.at, 16);
		memcpy(out + 16, step->piece.at + 16, 16);
		for (size_t i = 32; i < step->piece.len; i += 16)
			memcpy(out + i, step->piece.at + i, 16);
		out += step->piece.len;
		/* Most values are copied as spelt: no dispatch on the field's kind, and no check of what
		 * is readable (read_item_of_shape and read_item_of_shape_indexed leave at least 64 bytes
		 * of the page after each value's start). */
		const struct value *copy = step->copy;
		if (copy && copy->plain) {
			out = put_short(out, copy->at, copy->len, 16);
			continue;
		}
		if (!step->op)
			break;
		int omit = 0;
		char *value = out;
		if (!(out = put_field_value(w, out, step->op, cols, &omit)))
			return -1;
		if (omit && !step->op->fallback.len)
			return 1;
		if (omit)
			out = put_fallback(value, step->op, cols);
	}
	size_t head = w->frame->head_len;
	end_record(w, cols, line, out, head, (size_t)(out - line) - head - w->frame->tail_len);
	return 0;
}

/* Lays out the plan for items whose members feed the sources marked in present: the fields
 * without a value in such items are left out, and what lies between two values is one piece. */
static void build_plan(struct walk *w, const char present[WALK_MAX_FIELDS])
{
	struct plan *plan = &w->plan;
	char *at = plan->text;
	char *piece = at;
	int count = 0, first = 1;
	at = put(at, w->frame->head, w->frame->head_len);
	plan->ncolumns = 0;
	for (int i = 0; i < w->nops; i++) {
		struct field_op *op = &w->ops[i];
		/* A field without its value in these items writes its default, the same for each. */
		int fallback = op->kind != FROM_CONTEXT && !present[op->f->source] && op->fallback.len;
		int constant = op->kind == FROM_CONTEXT || fallback;
		if (!constant && !present[op->f->source])
			continue;
		char *field = at;
		at = put(at, op->piece.at, op->piece.len);
		if (first)
			*field = '{';
		first = 0;
		if (fallback) {
			at = put(at, op->fallback.at, op->fallback.len);
			if (op->f->fallback_column != WALK_NO_VALUE)
				plan->columns[plan->ncolumns++] =
					(struct plan_column){op->f->column, op->f->fallback_column};
		}
		if (constant)
			continue;
		/* A nested value may lie near the page's end: it is copied by put_field_value, which looks. */
		int unchecked_copy = op->kind == FROM_COPY && !(w->m->nested >> op->f->source & 1);
		plan->steps[count++] =
			(struct plan_step){{piece, (size_t)(at - piece)}, op, unchecked_copy ? op->v : NULL};
		at += PLAN_PAD;
		piece = at;
	}
	if (first)
		*at++ = '{';
	*at++ = '}';
	at = put(at, w->frame->tail, w->frame->tail_len);
	plan->steps[count++] = (struct plan_step){{piece, (size_t)(at - piece)}, NULL, NULL};
}

/* A member as read_item found it, for learning the item's shape. */
struct member_seen {
	const unsigned char *name;
	size_t name_len, value_len;
	int source;
	int node; /* a node with children, read by read_through; else -1 */
	char escaped;
};

/* Learns the shape of the item at [item, item_end) from its members, when they were spelt
 * without escapes and the item without any space: its length is then the sum of its parts. */
static void learn_shape(struct walk *w, const unsigned char *item, const unsigned char *item_end,
			const struct member_seen *seen, int count)
{
	struct shape *s = &w->shape;
	s->count = 0;
	s->index_misses = 0;
	if (count == 0 || count > SHAPE_MAX || !w->plan.text)
		return;
	size_t tight = 1;
	for (int k = 0; k < count; k++) {
		if (seen[k].escaped || seen[k].name_len > SHAPE_NAME_MAX)
			return;
		tight += seen[k].name_len + 4 + seen[k].value_len;
	}
	if (tight != (size_t)(item_end - item))
		return;
	for (int k = 0; k < count; k++) {
		struct shape_member *m = &s->members[k];
		unsigned char *bytes = m->bytes;
		size_t len = seen[k].name_len + 4;
		memset(bytes, 0, sizeof m->bytes);
		bytes[0] = k ? ',' : '{';
		bytes[1] = '"';
		memcpy(bytes + 2, seen[k].name, seen[k].name_len);
		bytes[len - 2] = '"';
		bytes[len - 1] = ':';
		m->care = (1u << len) - 1;
		m->len = len;
		m->value = seen[k].source >= 0 ? &w->values[seen[k].source] : &w->unused;
		m->node = seen[k].node;
	}
	s->count = count;
	s->nested = 0;
	char present[WALK_MAX_FIELDS] = {0};
	for (int k = 0; k < count; k++) {
		s->nested |= seen[k].node >= 0;
		if (seen[k].source >= 0)
			present[seen[k].source] = 1;
	}
	/* Which nested values an item has is not in its shape: the plan is for the items that have
	 * the same ones as this. */
	for (uint64_t nested = w->present & w->m->nested; nested; nested &= nested - 1)
		present[__builtin_ctzll(nested)] = 1;
	w->plan.present = w->present & w->m->nested;
	build_plan(w, present);
}

/* p is at a member's name; g: the guess for its place (NULL for none), first: the nodes of its
 * object. Reads the name (its length between the quotes in *name_len) and its ':', setting *node
 * to the node it names (-1: none). Returns the start of the value. */
static inline const unsigned char *read_member_name(struct walk *w, const unsigned char *p, struct member_guess *g,
						    int first, int *node, char *escaped, size_t *name_len)
{
	const unsigned char *end = w->end;
	if (p >= end || *p != '"')
		return syntax(w, p, "expected a member name");
	const unsigned char *name = p + 1;
	if (g && g->name && (size_t)(end - name) > g->len && name[g->len] == '"' &&
	    same_bytes(name, (const char *)g->name, g->len)) {
		/* Spelt as member k of an earlier object, which was scanned: valid, no escapes. */
		p = name + g->len;
		*node = g->node;
	} else {
		if (!(p = scan_string(w, name, escaped)))
			return NULL;
		*node = find_member(w, g, first, name, p, *escaped);
	}
	*name_len = (size_t)(p - name);
	p = ws(w, p + 1);
	if (p >= end || *p != ':')
		return syntax(w, p, "expected ':'");
	return ws(w, p + 1);
}

static const unsigned char *read_through(struct walk *w, const unsigned char *p, int node, int depth, struct value *v);

/* The value at p of a member that matched node (-1: none) into v. */
static inline const unsigned char *read_value(struct walk *w, const unsigned char *p, int node, int depth,
					      struct value *v)
{
	if (node >= 0 && w->m->nodes[node].child >= 0)
		return read_through(w, p, node, depth, v);
	return scan_value(w, p, depth, v);
}

/* p is at the value of a member that paths go on through (node): when it is an object, the
 * members they name are read into their values, the others skipped; the value as a whole goes
 * to v, as scan_value gives it. What an earlier member of the same name gave under the node is
 * dropped first: the last one counts, as when the page is decoded. */
static const unsigned char *read_through(struct walk *w, const unsigned char *p, int node, int depth, struct value *v)
{
	const struct walk_mapping *m = w->m;
	const struct walk_node *n = &m->nodes[node];
	for (uint64_t below = n->below; below; below &= below - 1)
		w->values[__builtin_ctzll(below)].at = NULL;
	w->present &= ~n->below;
	if (*p != '{')
		return scan_value(w, p, depth, v);
	/* As scan_value reads an object: its members' values one level deeper, within the limit. */
	if (depth + 1 + w->depth_bias > JSON_MAX_DEPTH)
		return too_deep(w, p);
	const unsigned char *end = w->end, *start = p;
	unsigned long maybe_huge = w->maybe_huge, line_breaks = w->line_breaks;
	struct member_guess *row = w->slots + (size_t)n->slot * SLOT_GUESSES;
	p = ws(w, p + 1);
	if (p < end && *p == '}') {
		p++;
	} else {
		for (int k = 0;; k++) {
			char escaped = 0;
			int child;
			size_t name_len;
			if (!(p = read_member_name(w, p, k < SLOT_GUESSES ? &row[k] : NULL, n->child, &child, &escaped,
						   &name_len)))
				return NULL;
			int source = child >= 0 ? m->nodes[child].source : -1;
			if (!(p = read_value(w, p, child, depth + 1, source >= 0 ? &w->values[source] : &w->unused)))
				return NULL;
			if (source >= 0)
				w->present |= 1ull << source;
			int more = after_item(w, &p, '}');
			if (more < 0)
				return NULL;
			if (!more)
				break;
		}
	}
	*v = (struct value){
		start, (size_t)(p - start), 'o', w->maybe_huge == maybe_huge && w->line_breaks == line_breaks, 0, 0};
	return p;
}

/* p is at the item's '{'; reads its members into w->values. */
static const unsigned char *read_item(struct walk *w, const unsigned char *p)
{
	const unsigned char *end = w->end;
	const unsigned char *item = p;
	struct member_seen seen[SHAPE_MAX];
	for (int i = 0; i < w->m->nsources; i++)
		w->values[i].at = NULL;
	w->present = 0;
	w->shape.count = 0;
	p = ws(w, p + 1);
	if (p < end && *p == '}')
		return p + 1;
	for (int k = 0;; k++) {
		char escaped = 0;
		const unsigned char *name = p + 1;
		int node;
		size_t name_len;
		if (!(p = read_member_name(w, p, k < WALK_MAX_FIELDS ? &w->guess[k] : NULL, w->m->first, &node,
					   &escaped, &name_len)))
			return NULL;
		int source = node >= 0 ? w->m->nodes[node].source : -1;
		struct value *v = source >= 0 ? &w->values[source] : &w->unused;
		if (!(p = read_value(w, p, node, 3, v)))
			return NULL;
		int through = node >= 0 && w->m->nodes[node].child >= 0 ? node : -1;
		if (k < SHAPE_MAX)
			seen[k] = (struct member_seen){name, name_len, v->len, source, through, escaped};
		int more = after_item(w, &p, '}');
		if (more < 0)
			return NULL;
		if (!more) {
			learn_shape(w, item, p, seen, k + 1);
			return p;
		}
	}
}

/* scan_number for a number of the common kinds (at most 15 digits before and after its point,
 * a short exponent), without a loop; anything else, or not a number, goes to scan_number.
 * At least 64 bytes from p are readable. */
static inline const unsigned char *scan_number_short(struct walk *w, const unsigned char *p, struct value *v)
{
	const unsigned char *start = p;
	p += *p == '-';
	size_t n = count_digits(p);
	/* n - 1 >= 15: no digit, or 16 and more. */
	if (n - 1 >= 15 || (*p == '0' && n > 1))
		return scan_number(w, start, v);
	p += n;
	v->is_integer = 1;
	v->plain = 1;
	if (*p == '.') {
		n = count_digits(p + 1);
		if (n == 0 || n == 16)
			return scan_number(w, start, v);
		p += 1 + n;
		v->is_integer = 0;
		v->plain = p[-1] != '0';
	}
	if ((*p | 0x20) == 'e') {
		const unsigned char *e = p + 1;
		e += *e == '+' || *e == '-';
		n = count_digits(e);
		if (n == 0 || n == 16)
			return scan_number(w, start, v);
		p = e + n;
		v->is_integer = 0;
		v->plain = 0;
	}
	return p;
}

/* The bytes a JSON number starts with. */
static const unsigned char starts_number[256] = {
	['-'] = 1, ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1,
	['5'] = 1, ['6'] = 1, ['7'] = 1, ['8'] = 1, ['9'] = 1,
};

/* The 16 bytes at p start with the member's separator. */
static inline int separator_matches(const unsigned char *p, const struct shape_member *m)
{
#ifdef __SSE2__
	__m128i text = _mm_loadu_si128((const __m128i *)p);
	unsigned same = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(text, _mm_load_si128((const __m128i *)m->bytes)));
	return (~same & m->care) == 0;
#else
	return memcmp(p, m->bytes, m->len) == 0;
#endif
}

/* p is at the item's '{': reads it when it spells the members of the learnt shape, in order and
 * without space. NULL when it does not (w->failed unset: read_item reads it from its start) or
 * when a value is not JSON (w->failed set, as read_item would find). */
static const unsigned char *read_item_of_shape(struct walk *w, const unsigned char *p)
{
	const struct shape *s = &w->shape;
	/* Locals: the values written below are inside *w, so the compiler would read these again
	 * after every store. */
	const struct shape_member *m = s->members, *last = m + s->count;
	const unsigned char *end = w->end;
	for (; m < last; m++) {
		if (end - p < 80 || !separator_matches(p, m))
			return NULL;
		p += m->len;
		struct value *v = m->value;
		const unsigned char *q;
		if (m->node >= 0) {
			if (*p <= ' ')
				return NULL;
			q = read_through(w, p, m->node, 3, v);
		} else if (starts_number[*p]) {
			v->at = p;
			v->type = 'n';
			v->escaped = 0;
			q = scan_number_short(w, p, v);
			if (q)
				v->len = (size_t)(q - p);
		} else {
			if (*p <= ' ')
				return NULL; /* space before the value: read_item skips it */
			q = scan_value(w, p, 3, v);
		}
		if (!q)
			return NULL;
		p = q;
	}
	return *p == '}' ? p + 1 : NULL;
}

#ifdef __SSE2__
/* What read_item_of_shape_indexed needs readable from an item's start: 128 bytes for its
 * index, and the 64 that scan_number_short needs after a number that starts inside them. */
#define INDEXED_READABLE 192
#define INDEXED_SPAN 128
#define INDEX_MISSES_MAX 8

/* Bit i: byte i of the 16 at p is ',' or '}', the bytes that end a value inside an item. */
static inline uint64_t value_ends16(const unsigned char *p)
{
	__m128i c = _mm_loadu_si128((const __m128i *)p);
	__m128i ends = _mm_or_si128(_mm_cmpeq_epi8(c, _mm_set1_epi8(',')), _mm_cmpeq_epi8(c, _mm_set1_epi8('}')));
	return (uint64_t)(unsigned)_mm_movemask_epi8(ends);
}

static inline uint64_t value_ends64(const unsigned char *p)
{
	return value_ends16(p) | value_ends16(p + 16) << 16 | value_ends16(p + 32) << 32 | value_ends16(p + 48) << 48;
}

/* Bit i: byte i of the 16 at p is a digit (*digits; signed compares: bytes from 0x80 up are
 * negative), a point (*points). */
static inline void digit_and_point_bits16(const unsigned char *p, unsigned *digits, unsigned *points)
{
	__m128i c = _mm_loadu_si128((const __m128i *)p);
	__m128i digit =
		_mm_and_si128(_mm_cmpgt_epi8(c, _mm_set1_epi8('0' - 1)), _mm_cmplt_epi8(c, _mm_set1_epi8('9' + 1)));
	*digits = (unsigned)_mm_movemask_epi8(digit);
	*points = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(c, _mm_set1_epi8('.')));
}

/* read_item_of_shape for an item of at most 128 bytes whose values are numbers, the way a
 * structural index does it: one pass finds every ',' and '}' of the item 16 bytes at a time, and
 * the members are then read from those positions, each independent of the one before (in
 * read_item_of_shape, a member waits for the end of the previous number, found eight bytes at a
 * time). The item is taken only when it is exactly the shape's separators and valid numbers in
 * turn, closed by '}': each separator at the end of the previous value, each value up to the next
 * ',' or '}', and the last one closing the item. A number of fewer than 16 bytes that is
 * digits, or digits with one point inside, is checked from one digit and point mask; any other
 * (an exponent, more digits) is scanned by scan_number_short and must end where its ',' or '}'
 * is. The values are those read_item_of_shape gives. NULL for anything else (w->failed set when
 * a number is not JSON), which read_item_of_shape then reads. INDEXED_READABLE bytes from p are
 * readable. */
static const unsigned char *read_item_of_shape_indexed(struct walk *w, const unsigned char *p)
{
	const struct shape *s = &w->shape;
	int count = s->count;
	/* The ',' and '}' of the 64 bytes from chunk, taken lowest first. */
	size_t chunk = 0;
	uint64_t ends = value_ends64(p);
	size_t separator = 0;
	for (int k = 0; k < count; k++) {
		const struct shape_member *m = &s->members[k];
		while (!ends) {
			chunk += 64;
			if (chunk == INDEXED_SPAN)
				return NULL; /* longer than INDEXED_SPAN */
			ends = value_ends64(p + chunk);
		}
		size_t start = separator + m->len, end = chunk + (size_t)__builtin_ctzll(ends);
		ends &= ends - 1;
		if (!separator_matches(p + separator, m) || end <= start)
			return NULL;
		const unsigned char *at = p + start;
		size_t len = end - start;
		struct value *v = m->value;
		unsigned others = 1, points = 0;
		if (len < 16) {
			unsigned span = (1u << len) - 1;
			digit_and_point_bits16(at, &others, &points);
			others = ~others & span;
			points &= span;
		}
		if (others == 0) {
			if (*at == '0' && len > 1)
				return NULL; /* a leading zero: read_item_of_shape says so */
			v->is_integer = 1;
			v->plain = 1;
		} else if (others == points && !(others & (others - 1)) && !(others & 1) && !(others >> (len - 1)) &&
			   !(*at == '0' && others != 2)) {
			/* One point, neither first nor last; a leading zero only alone before it. */
			v->is_integer = 0;
			v->plain = at[len - 1] != '0';
		} else {
			if (!starts_number[*at] || scan_number_short(w, at, v) != p + end)
				return NULL;
		}
		v->at = at;
		v->len = len;
		v->type = 'n';
		v->escaped = 0;
		separator = end;
	}
	return p[separator] == '}' ? p + separator + 1 : NULL;
}
#endif

/* An item when the page has a learnt shape: from the structural index where it can be read so,
 * else by read_item_of_shape (NULL as it returns). */
static const unsigned char *read_item_of_learnt_shape(struct walk *w, const unsigned char *p)
{
#ifdef __SSE2__
	if (w->end - p >= INDEXED_READABLE && w->shape.index_misses < INDEX_MISSES_MAX && !w->shape.nested) {
		const unsigned char *q = read_item_of_shape_indexed(w, p);
		if (q || w->failed)
			return q;
		w->shape.index_misses++;
	}
#endif
	return read_item_of_shape(w, p);
}

/* p is at the list's '['. */
static const unsigned char *walk_items(struct walk *w, const unsigned char *p)
{
	const unsigned char *end = w->end;
	p = ws(w, p + 1);
	if (p < end && *p == ']')
		return p + 1;
	for (;;) {
		w->item++;
		const unsigned char *item = p;
		if (p < end && *p == '{') {
			const unsigned char *q = w->shape.count ? read_item_of_learnt_shape(w, p) : NULL;
			int written = 1;
			if (q)
				written = write_planned_record(w, (size_t)(q - item));
			else if (!w->failed)
				q = read_item(w, p);
			if (!q || written < 0 || (written > 0 && write_record(w, (size_t)(q - item))))
				return NULL;
			p = q;
		} else {
			struct value v;
			if (!(p = scan_value(w, p, 2, &v)))
				return NULL;
			return wrong_shape(w, "item %d of '%s' is %s, not an object", w->item, w->m->list,
					   type_name(v.type));
		}
		int more = after_item(w, &p, ']');
		if (more <= 0)
			return more ? NULL : p;
	}
}

/* The list member's value at p: an array of items, or null for none. */
static const unsigned char *walk_list(struct walk *w, const unsigned char *p)
{
	if (p < w->end && *p == '[')
		return walk_items(w, p);
	struct value v;
	if (!(p = scan_value(w, p, 1, &v)))
		return NULL;
	if (v.type != 'l')
		return wrong_shape(w, "the page's '%s' is %s, not an array", w->m->list, type_name(v.type));
	return p;
}

static const unsigned char *walk_members(struct walk *w, const unsigned char *p, int *list_seen);

/* The object at p holds the rest of a dotted list ("items" of "data.items"): walked one level
 * down; an object that is not there, or not an object, holds no records. */
static const unsigned char *walk_list_parent(struct walk *w, const unsigned char *p, size_t rest_at, int *list_seen)
{
	if (p >= w->end || *p != '{')
		return skip_value(w, p, 1);
	size_t saved_at = w->list_at;
	w->list_at = rest_at;
	w->depth_bias++;
	p = walk_members(w, p, list_seen);
	w->depth_bias--;
	w->list_at = saved_at;
	return p;
}

static const unsigned char *walk_member(struct walk *w, const unsigned char *p, int *list_seen)
{
	const unsigned char *end = w->end;
	char escaped = 0;
	if (p >= end || *p != '"')
		return syntax(w, p, "expected a member name");
	const unsigned char *name = p + 1;
	if (!(p = scan_string(w, name, &escaped)))
		return NULL;
	const char *segment = w->m->list + w->list_at;
	const char *dot = memchr(segment, '.', w->m->list_len - w->list_at);
	size_t segment_len = dot ? (size_t)(dot - segment) : w->m->list_len - w->list_at;
	int on_path = name_is(name, p, escaped, segment, segment_len);
	int is_list = on_path && !dot;
	int is_next =
		!on_path && w->list_at == 0 && w->m->next && name_is(name, p, escaped, w->m->next, w->m->next_len);
	p = ws(w, p + 1);
	if (p >= end || *p != ':')
		return syntax(w, p, "expected ':'");
	p = ws(w, p + 1);
	if (on_path && dot)
		return walk_list_parent(w, p, (size_t)(dot - w->m->list) + 1, list_seen);
	if (is_list) {
		if ((*list_seen)++)
			return wrong_shape(w, "the page has '%s' twice", w->m->list);
		return walk_list(w, p);
	}
	if (!is_next)
		return skip_value(w, p, 1);
	struct value v;
	if (!(p = scan_value(w, p, 1, &v)))
		return NULL;
	w->next = v.type == 's' ? v : (struct value){0};
	return p;
}

/* p is at an object's '{': its members, the list's (or its parent's) walked. */
static const unsigned char *walk_members(struct walk *w, const unsigned char *p, int *list_seen)
{
	const unsigned char *end = w->end;
	p = ws(w, p + 1);
	if (p < end && *p == '}')
		return p + 1;
	for (;;) {
		if (!(p = walk_member(w, p, list_seen)))
			return NULL;
		int more = after_item(w, &p, '}');
		if (more < 0)
			return NULL;
		if (!more)
			return p;
	}
}

/* The arrays of objects a page holds where its list was not: their paths, as many as fit. */
#define FOUND_PATH_MAX 256
struct arrays_found {
	char paths[160];
	size_t len;
	int count, listed;
};

static void note_array(struct arrays_found *found, const char *path, size_t len)
{
	found->count++;
	size_t room = sizeof found->paths - found->len;
	int n = snprintf(found->paths + found->len, room, "%s\"%.*s\"", found->len ? ", " : "", (int)len, path);
	if (n > 0 && (size_t)n < room) {
		found->len += (size_t)n;
		found->listed++;
	} else {
		found->paths[found->len] = '\0'; /* this one did not fit */
	}
}

/* p is at an object's '{' (of a page that is JSON): notes the non-empty arrays of objects among
 * its members, and among its objects' members down to levels levels; path holds the object's
 * path (path_len bytes, at most FOUND_PATH_MAX with its NUL). */
static const unsigned char *find_arrays(struct walk *w, const unsigned char *p, int levels, char *path, size_t path_len,
					struct arrays_found *found)
{
	p = ws(w, p + 1);
	if (*p == '}')
		return p + 1;
	for (;;) {
		char escaped = 0;
		const unsigned char *name = p + 1;
		if (!(p = scan_string(w, name, &escaped)))
			return NULL;
		int n = snprintf(path + path_len, FOUND_PATH_MAX - path_len, "%s%.*s", path_len ? "." : "",
				 (int)(p - name), (const char *)name);
		size_t len = n > 0 && path_len + (size_t)n < FOUND_PATH_MAX ? path_len + (size_t)n : FOUND_PATH_MAX - 1;
		p = ws(w, ws(w, p + 1) + 1); /* past the ':' */
		if (*p == '[' && *ws(w, p + 1) == '{')
			note_array(found, path, len);
		if (*p == '{' && levels > 1)
			p = find_arrays(w, p, levels - 1, path, len, found);
		else
			p = skip_value(w, p, 1);
		path[path_len] = '\0';
		int more = p ? after_item(w, &p, '}') : -1;
		if (more <= 0)
			return more ? NULL : p;
	}
}

/* A list that is not on a page which has arrays of items elsewhere, as far down as one level more
 * than the list's path (a misspelt or misplaced list), fails the walk naming them; a page without
 * any (an empty page of an API that leaves the list out then) holds no records. */
static void list_finds_nothing(struct walk *w)
{
	int levels = 2;
	for (size_t i = 0; i < w->m->list_len; i++)
		levels += w->m->list[i] == '.';
	char path[FOUND_PATH_MAX] = "";
	struct arrays_found found = {.len = 0, .count = 0, .listed = 0};
	found.paths[0] = '\0';
	if (!find_arrays(w, ws(w, w->start), levels, path, 0, &found) || !found.count)
		return;
	char more[32] = "";
	if (found.listed < found.count)
		snprintf(more, sizeof more, " and %d more", found.count - found.listed);
	wrong_shape(w, "list \"%s\" finds nothing; the page has %s at %s%s", w->m->list,
		    found.count > 1 ? "arrays" : "an array", found.paths, more);
}

static void walk_page(struct walk *w)
{
	const unsigned char *end = w->end;
	const unsigned char *p = ws(w, w->start);
	int list_seen = 0;
	if (w->m->list_is_root) {
		struct value v;
		if (p < end && *p == '[') {
			w->depth_bias = -1;
			if (!(p = walk_items(w, p)))
				return;
		} else if (!(p = scan_value(w, p, 0, &v))) {
			return;
		} else if (ws(w, p) == end) {
			wrong_shape(w, "the page is %s, not an array", type_name(v.type));
			return;
		}
	} else if (p < end && *p == '{') {
		if (!(p = walk_members(w, p, &list_seen)))
			return;
		if (ws(w, p) == end && !list_seen) {
			list_finds_nothing(w);
			return;
		}
	} else {
		struct value v;
		if (!(p = scan_value(w, p, 0, &v)))
			return;
		if (ws(w, p) == end)
			wrong_shape(w, "the page is %s, not an object with '%s'", type_name(v.type), w->m->list);
	}
	if (ws(w, p) != end)
		syntax(w, p, "more text after the JSON value");
}

/* A shape error stops the walk where it is found; whether the text was JSON at all decides
 * between asking again (a cut answer) and failing, so the whole text is checked then. */
static void check_rest_is_json(struct walk *w)
{
	struct walk_output probe;
	memset(&probe, 0, sizeof probe);
	struct walk check = *w;
	check.out = &probe;
	check.failed = 0;
	const unsigned char *p = skip_value(&check, ws(w, w->start), 0);
	if (p && ws(w, p) != w->end)
		syntax(&check, p, "more text after the JSON value");
	if (probe.outcome == WALK_NOT_JSON) {
		w->out->outcome = WALK_NOT_JSON;
		memcpy(w->out->message, probe.message, sizeof probe.message);
	}
}

void page_walk(const struct walk_mapping *m, const char *text, size_t len, const struct walk_constant *constants,
	       const struct walk_frame *frame, size_t memory_cap, struct walk_output *out)
{
	struct walk w;
	memset(&w, 0, sizeof w);
	w.m = m;
	w.constants = constants;
	w.frame = frame;
	w.out = out;
	w.memory_cap = memory_cap;
	w.start = (const unsigned char *)text;
	w.end = w.start + len;
	w.month_first = 1;
	w.month_last = 0;
	out->len = 0;
	out->count = 0;
	for (int d = 0; d < m->ncolumns; d++)
		out->column_span[d] = (struct walk_column_span){WALK_NO_VALUE, WALK_NO_VALUE, 1, 1};
	out->outcome = WALK_OK;
	out->message[0] = '\0';
	if (m->nslots)
		w.slots = calloc((size_t)m->nslots * SLOT_GUESSES, sizeof *w.slots);
	if (build_pieces(&w) || (m->nslots && !w.slots)) {
		wrong_shape(&w, "no memory to write the page's records");
		free(w.pieces);
		free(w.plan.text);
		free(w.slots);
		return;
	}
	walk_page(&w);
	if (out->outcome == WALK_WRONG_SHAPE)
		check_rest_is_json(&w);
	out->next = w.next.at ? (const char *)w.next.at : NULL;
	out->next_len = w.next.at ? w.next.len : 0;
	out->next_escaped = w.next.escaped;
	free(w.pieces);
	free(w.plan.text);
	free(w.slots);
}

void walk_buffers_free(struct walk_buffers *mem)
{
	free(mem->data);
	free(mem->entries);
	free(mem->cols);
	memset(mem, 0, sizeof *mem);
}
