/*
 * tz: IANA time zones from the system's tz database: reads TZif files (RFC 8536, versions 1-4,
 * the 64-bit block when there is one), evaluates their POSIX TZ footer after the last transition
 * (with RFC 8536's extensions), and answers offset, DST flag and abbreviation at a UTC instant, and
 * the UTC instant of a local time. Answers follow Python's zoneinfo (tests/tz checks every zone),
 * down to its choices where RFC 8536 leaves room: before the first transition, the first non-DST
 * type (not type 0); a local time in a gap or fold, the fold=0 reading. Where zoneinfo departs from
 * POSIX, on footers no zone in tzdata has, tz.c keeps to POSIX: a day-of-year rule "n" counts from
 * 0 (zoneinfo: from 1), "J59" is February 28 in leap years too (zoneinfo: the 29th), rule hours
 * reach 167 (zoneinfo: 99), and a rule that changes within hours of New Year takes the changes of
 * the years around it into account (zoneinfo judges each UTC year's two changes alone).
 *
 * Why our own reader and not libcctz, Debian's maintained library: cctz is C++ and Debian ships it
 * only as a shared library, which would add libstdc++ to every start of the binary and put C++
 * frames under Lua's longjmp; a TZif reader in C is small by comparison.
 *
 * Owns: the db (the zones loaded so far, and the list of zone names once an error message needed
 * it), every zone's memory, and the checks that make a corrupt or hostile file an error, never an
 * out-of-bounds read. Not owned: which zone a script asks for, date formatting, the clock.
 * Leap-second records are skipped, as zoneinfo does: times are POSIX times.
 */
#include "tz.h"

#include "civil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DEFAULT_DIR "/usr/share/zoneinfo"
#define DAY 86400
/* The Gregorian calendar repeats, weekdays included, every 400 years (146,097 days, 20,871 weeks):
 * a footer rule is evaluated on the instant brought into [1970, 2370) so that no year overflows. */
#define CYCLE ((int64_t)146097 * DAY)
#define NAME_MAX_LEN 255   /* longest zone name accepted (the longest real one has 32 bytes) */
#define ABBR_MAX_LEN 31    /* longest footer abbreviation */
#define FOOTER_MAX_LEN 255 /* longest footer (the longest real one has 45 bytes) */
#define WALK_DEPTH 4       /* America/Argentina/Buenos_Aires is 3 deep */
#define NAMES_MAX 20000    /* a bound on what an odd directory can make us list */
#define SUGGESTIONS 3
/* The changes of a footer rule looked at around an instant: years y-2 .. y+2, start and end of
 * each. Rule times reach +-167 h and offsets +-26 h, so a year's changes can fall up to 8 days
 * into the next or previous year; two years either side always frame the instant. */
#define RULE_YEARS 5
#define RULE_CHANGES (2 * RULE_YEARS)

/* ---- arithmetic that saturates instead of overflowing ---- */

static int64_t add_sat(int64_t a, int64_t b)
{
	int64_t r;
	if (!__builtin_add_overflow(a, b, &r))
		return r;
	return b > 0 ? INT64_MAX : INT64_MIN;
}

static int64_t floor_mod(int64_t a, int64_t b)
{
	int64_t r = a % b;
	return r < 0 ? r + b : r;
}

/* u, computed for an instant brought into the base cycle, moved back by `cycles` cycles. */
static int64_t uncycle(int64_t u, int64_t cycles)
{
	int64_t shift;
	if (__builtin_mul_overflow(cycles, CYCLE, &shift))
		return cycles < 0 ? INT64_MIN : INT64_MAX;
	return add_sat(u, shift);
}

/* ---- the proleptic Gregorian calendar (H. Hinnant's algorithms); years near 1970-2370 only ---- */

static int is_leap(int64_t y)
{
	return y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
}

static int days_in_month(int64_t y, int m)
{
	static const unsigned char days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	return days[m - 1] + (m == 2 && is_leap(y));
}

/* Days since 1970-01-01 of y-m-d, and the year a day falls in (civil.h). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
	return civil_to_days(y, m, d);
}

static int64_t year_of_day(int64_t day)
{
	return civil_from_days(day).year;
}

/* ---- zones ---- */

/* A local time type: what the clocks show between two transitions. */
struct ttype {
	int32_t offset;
	unsigned char is_dst;
	uint32_t abbr; /* where its NUL-terminated abbreviation starts in the zone's abbrs */
};

enum rule_form {
	RULE_JULIAN, /* Jn: day 1..365, February 29 never counted */
	RULE_DAY,    /* n: day 0..365, February 29 counted */
	RULE_MONTH,  /* Mm.w.d: day d (0 Sunday) of week w (5: the last) of month m */
};

struct rule_date {
	enum rule_form form;
	int day;
	int month;
	int week;
	int wday;
	int32_t time; /* seconds after local midnight, -167 h .. 167 h */
};

/* A footer with DST: the changes each year, and the two types it switches between. */
struct rule {
	struct rule_date start; /* DST starts; read in standard time */
	struct rule_date end;   /* DST ends; read in DST */
	uint16_t std;
	uint16_t dst;
	int32_t std_offset;
	int32_t dst_offset;
};

struct tz_zone {
	struct tz_zone *next;
	char *name;
	char *abbrs;
	struct ttype *types;
	size_t ntypes;
	/* The transitions as the file gives them; zoneinfo's local lookups bisect these. */
	size_t ntrans;
	int64_t *trans;
	int64_t *wall; /* the local time (fold=0 reading) at which transition i happens */
	uint16_t *trans_type;
	uint16_t before; /* zoneinfo's type before the first transition: the first non-DST one */
	uint16_t after;  /* after the last transition when there is no DST rule */
	/* The UTC step function up to the last transition (everywhere without a DST rule), runs of
	 * equal types merged so that a span is as long as it can be. steps_at[0] is INT64_MIN. */
	size_t nsteps;
	int64_t *steps_at;
	uint16_t *steps_type;
	int has_rule;
	struct rule rule;
};

struct tz_db {
	char *dir;
	struct tz_zone *zones;
	char **names; /* every zone name, listed on the first unknown name */
	size_t nnames;
	int names_listed;
};

static void zone_free(struct tz_zone *z)
{
	if (!z)
		return;
	free(z->name);
	free(z->abbrs);
	free(z->types);
	free(z->trans);
	free(z->wall);
	free(z->trans_type);
	free(z->steps_at);
	free(z->steps_type);
	free(z);
}

static const struct ttype *type_of(const struct tz_zone *z, uint16_t i)
{
	return &z->types[i];
}

static int same_type(const struct tz_zone *z, uint16_t a, uint16_t b)
{
	const struct ttype *x = type_of(z, a);
	const struct ttype *y = type_of(z, b);
	return x->offset == y->offset && x->is_dst == y->is_dst && strcmp(z->abbrs + x->abbr, z->abbrs + y->abbr) == 0;
}

/* ---- the footer's rule ---- */

/* The local day (since 1970-01-01) on which d falls in year y. */
static int64_t rule_day(const struct rule_date *d, int64_t y)
{
	int64_t jan1 = days_from_civil(y, 1, 1);
	if (d->form == RULE_JULIAN)
		return jan1 + d->day - 1 + (d->day >= 60 && is_leap(y));
	if (d->form == RULE_DAY)
		return jan1 + d->day;
	int64_t first = days_from_civil(y, d->month, 1);
	int64_t first_wday = floor_mod(first + 4, 7); /* 1970-01-01 was a Thursday */
	int64_t mday = 1 + floor_mod(d->wday - first_wday, 7) + 7 * (d->week - 1);
	while (mday > days_in_month(y, d->month))
		mday -= 7;
	return first + mday - 1;
}

struct rule_change {
	int64_t at;   /* UTC */
	int64_t wall; /* the local time it happens at, read as zoneinfo does with fold=0 */
	int to_dst;
};

/* The rule's changes in years y-2 .. y+2, ordered by instant. Changes at the same instant stay in
 * year order, a year's start before its end, and the last one decides: an end that meets the next
 * year's start (RFC 8536's all-year DST, "EST5EDT,0/0,J365/25") leaves DST on. */
static void rule_changes(const struct rule *r, int64_t y, struct rule_change c[RULE_CHANGES])
{
	int32_t later = r->dst_offset > r->std_offset ? r->dst_offset : r->std_offset;
	for (int i = 0; i < RULE_YEARS; i++) {
		int64_t year = y - RULE_YEARS / 2 + i;
		int64_t start = rule_day(&r->start, year) * DAY + r->start.time - r->std_offset;
		int64_t end = rule_day(&r->end, year) * DAY + r->end.time - r->dst_offset;
		c[2 * i] = (struct rule_change){start, start + later, 1};
		c[2 * i + 1] = (struct rule_change){end, end + later, 0};
	}
	/* Insertion sort, stable: ties keep the order above. */
	for (int i = 1; i < RULE_CHANGES; i++) {
		struct rule_change v = c[i];
		int j = i;
		for (; j > 0 && c[j - 1].at > v.at; j--)
			c[j] = c[j - 1];
		c[j] = v;
	}
}

/* Index of the last change of the group of changes at the same instant as c[i]. */
static int group_last(const struct rule_change c[RULE_CHANGES], int i)
{
	while (i + 1 < RULE_CHANGES && c[i + 1].at == c[i].at)
		i++;
	return i;
}

static int group_first(const struct rule_change c[RULE_CHANGES], int i)
{
	while (i > 0 && c[i - 1].at == c[i].at)
		i--;
	return i;
}

/* Whether the rule has DST at the UTC instant t, and the instants [from, until) around t over
 * which that holds. */
static int rule_at(const struct rule *r, int64_t t, int64_t *from, int64_t *until)
{
	int64_t cycles = civil_floor_div(t, CYCLE);
	int64_t base = floor_mod(t, CYCLE);
	struct rule_change c[RULE_CHANGES];
	rule_changes(r, year_of_day(civil_floor_div(base, DAY)), c);
	int k = -1; /* the last change at or before base: the last of its group, as c is ordered */
	for (int i = 0; i < RULE_CHANGES; i++)
		if (c[i].at <= base)
			k = i;
	int dst = k >= 0 ? c[k].to_dst : !c[0].to_dst;
	/* Back over the groups of changes that leave the state as it is. */
	int64_t lo = base;
	for (int g = k >= 0 ? group_first(c, k) : -1; g >= 0;) {
		lo = c[g].at;
		if (g == 0 || c[g - 1].to_dst != dst)
			break;
		g = group_first(c, g - 1);
	}
	/* Forward likewise; past the last change seen, the state is known only up to it. */
	int64_t hi = (c[RULE_CHANGES - 1].at > base ? c[RULE_CHANGES - 1].at : base) + 1;
	for (int m = k + 1; m < RULE_CHANGES;) {
		int e = group_last(c, m);
		if (c[e].to_dst != dst) {
			hi = c[m].at;
			break;
		}
		m = e + 1;
	}
	*from = uncycle(lo, cycles);
	*until = uncycle(hi, cycles);
	return dst;
}

/* Whether the rule has DST at a local time, read as zoneinfo does with fold=0: the period with
 * the smaller offset starts at the end of a gap and ends at the end of a fold. */
static int rule_at_local(const struct rule *r, int64_t local)
{
	int64_t base = floor_mod(local, CYCLE);
	struct rule_change c[RULE_CHANGES];
	rule_changes(r, year_of_day(civil_floor_div(base, DAY)), c);
	int dst = !c[0].to_dst;
	for (int i = 0; i < RULE_CHANGES; i++)
		if (c[i].wall <= base)
			dst = c[i].to_dst;
	return dst;
}

/* ---- parsing the footer: std offset [dst [offset] ,start[/time] ,end[/time]] ---- */

static int is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static int is_alpha(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* Skips c when it comes next; returns whether it did. */
static int eat(const char **p, char c)
{
	if (**p != c)
		return 0;
	(*p)++;
	return 1;
}

/* An unsigned decimal of 1..max_digits digits. */
static int parse_number(const char **p, int max_digits, int *out)
{
	const char *s = *p;
	int v = 0;
	int n = 0;
	while (n < max_digits && is_digit(s[n])) {
		v = v * 10 + (s[n] - '0');
		n++;
	}
	if (n == 0)
		return -1;
	*p = s + n;
	*out = v;
	return 0;
}

/* A name, unquoted (letters) or quoted (<letters, digits, + and ->), into out. */
static int parse_abbr(const char **p, char out[ABBR_MAX_LEN + 1])
{
	int quoted = eat(p, '<');
	size_t n = 0;
	for (char c = **p; is_alpha(c) || (quoted && (is_digit(c) || c == '+' || c == '-')); c = **p) {
		if (n == ABBR_MAX_LEN)
			return -1;
		out[n++] = c;
		(*p)++;
	}
	out[n] = '\0';
	if (quoted && !eat(p, '>'))
		return -1;
	return n > 0 ? 0 : -1;
}

/* [+-]h[hh][:mm[:ss]], hours up to max_hours; the sign's sense is the caller's. */
static int parse_hms(const char **p, int max_hours, int32_t *out)
{
	int sign = eat(p, '-') ? -1 : 1;
	if (sign > 0)
		eat(p, '+');
	int h;
	int m = 0;
	int s = 0;
	if (parse_number(p, 3, &h) < 0 || h > max_hours)
		return -1;
	if (eat(p, ':')) {
		if (parse_number(p, 2, &m) < 0 || m > 59)
			return -1;
		if (eat(p, ':') && (parse_number(p, 2, &s) < 0 || s > 59))
			return -1;
	}
	*out = sign * (h * 3600 + m * 60 + s);
	return 0;
}

/* POSIX offsets count west: "EST5" is UTC-5. */
static int parse_offset(const char **p, int32_t *offset)
{
	int32_t west;
	if (parse_hms(p, 24, &west) < 0)
		return -1;
	*offset = -west;
	return 0;
}

static int parse_rule_date(const char **p, struct rule_date *d)
{
	d->time = 2 * 3600;
	if (eat(p, 'M')) {
		d->form = RULE_MONTH;
		if (parse_number(p, 2, &d->month) < 0 || d->month < 1 || d->month > 12 || !eat(p, '.'))
			return -1;
		if (parse_number(p, 1, &d->week) < 0 || d->week < 1 || d->week > 5 || !eat(p, '.'))
			return -1;
		if (parse_number(p, 1, &d->wday) < 0 || d->wday > 6)
			return -1;
	} else if (eat(p, 'J')) {
		d->form = RULE_JULIAN;
		if (parse_number(p, 3, &d->day) < 0 || d->day < 1 || d->day > 365)
			return -1;
	} else {
		d->form = RULE_DAY;
		if (parse_number(p, 3, &d->day) < 0 || d->day > 365)
			return -1;
	}
	/* RFC 8536 3.3.1: a rule time may be negative and reach 167 hours. */
	return eat(p, '/') ? parse_hms(p, 167, &d->time) : 0;
}

struct footer {
	char std_abbr[ABBR_MAX_LEN + 1];
	char dst_abbr[ABBR_MAX_LEN + 1];
	int32_t std_offset;
	int32_t dst_offset;
	int has_dst;
	struct rule_date start;
	struct rule_date end;
};

static int parse_footer(const char *s, struct footer *f)
{
	memset(f, 0, sizeof *f);
	if (parse_abbr(&s, f->std_abbr) < 0 || parse_offset(&s, &f->std_offset) < 0)
		return -1;
	if (*s == '\0')
		return 0;
	f->has_dst = 1;
	if (parse_abbr(&s, f->dst_abbr) < 0)
		return -1;
	f->dst_offset = f->std_offset + 3600; /* POSIX: one hour ahead unless told */
	if (*s != ',' && parse_offset(&s, &f->dst_offset) < 0)
		return -1;
	/* The rules are optional in POSIX, but TZif footers always carry them (RFC 8536 3.3). */
	if (!eat(&s, ',') || parse_rule_date(&s, &f->start) < 0)
		return -1;
	if (!eat(&s, ',') || parse_rule_date(&s, &f->end) < 0)
		return -1;
	return *s == '\0' ? 0 : -1;
}

/* ---- reading a TZif file ---- */

struct reader {
	const unsigned char *p;
	size_t len;
	size_t at;
};

static const unsigned char *take(struct reader *r, uint64_t n)
{
	if (n > r->len - r->at)
		return NULL;
	const unsigned char *p = r->p + r->at;
	r->at += (size_t)n;
	return p;
}

static uint32_t be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int64_t be64(const unsigned char *p)
{
	return (int64_t)((uint64_t)be32(p) << 32 | be32(p + 4));
}

struct header {
	int version; /* 1, or 2 and up */
	uint32_t isutcnt, isstdcnt, leapcnt, timecnt, typecnt, charcnt;
};

static const char *read_header(struct reader *r, struct header *h)
{
	const unsigned char *p = take(r, 44);
	if (!p)
		return "truncated header";
	if (memcmp(p, "TZif", 4) != 0)
		return "no TZif magic in the header";
	if (p[4] != 0 && p[4] < '2')
		return "unknown TZif version";
	h->version = p[4] == 0 ? 1 : 2;
	h->isutcnt = be32(p + 20);
	h->isstdcnt = be32(p + 24);
	h->leapcnt = be32(p + 28);
	h->timecnt = be32(p + 32);
	h->typecnt = be32(p + 36);
	h->charcnt = be32(p + 40);
	return NULL;
}

/* Bytes of the data block after h, with time_size-byte times (no overflow: counts are 32-bit). */
static uint64_t block_size(const struct header *h, unsigned time_size)
{
	return (uint64_t)h->timecnt * (time_size + 1) + (uint64_t)h->typecnt * 6 + h->charcnt +
	       (uint64_t)h->leapcnt * (time_size + 4) + h->isstdcnt + h->isutcnt;
}

/* The file's own data, checked, before the zone is built from it. */
struct tzif {
	struct header h;
	const unsigned char *times;
	unsigned time_size;
	const unsigned char *indices;
	const unsigned char *types;
	const unsigned char *chars;
	char footer[FOOTER_MAX_LEN + 1];
	int has_footer;
};

static const char *check_counts(const struct header *h)
{
	if (h->typecnt == 0 || h->typecnt > 256)
		return "the number of local time types is not 1..256";
	if (h->charcnt == 0)
		return "no time zone abbreviations";
	if ((h->isstdcnt != 0 && h->isstdcnt != h->typecnt) || (h->isutcnt != 0 && h->isutcnt != h->typecnt))
		return "standard/wall or UT/local indicator count differs from the type count";
	return NULL;
}

/* The footer of a version 2+ file: "\n" TZ-string "\n". */
static const char *read_footer(struct reader *r, struct tzif *f)
{
	const unsigned char *nl = take(r, 1);
	if (!nl || *nl != '\n')
		return "no newline before the TZ footer";
	size_t start = r->at;
	const unsigned char *end = memchr(r->p + start, '\n', r->len - start);
	if (!end)
		return "unterminated TZ footer";
	size_t n = (size_t)(end - (r->p + start));
	if (n > FOOTER_MAX_LEN)
		return "TZ footer too long";
	if (memchr(r->p + start, '\0', n))
		return "NUL byte in the TZ footer";
	memcpy(f->footer, r->p + start, n);
	f->footer[n] = '\0';
	f->has_footer = n > 0;
	return NULL;
}

static const char *read_tzif(const unsigned char *data, size_t len, struct tzif *f)
{
	struct reader r = {data, len, 0};
	const char *why = read_header(&r, &f->h);
	if (why)
		return why;
	f->time_size = 4;
	if (f->h.version >= 2) {
		/* The version 1 block is for old readers; skip it to the 64-bit one. */
		if (!take(&r, block_size(&f->h, 4)))
			return "truncated version 1 data block";
		why = read_header(&r, &f->h);
		if (why)
			return why;
		f->h.version = 2;
		f->time_size = 8;
	}
	why = check_counts(&f->h);
	if (why)
		return why;
	const struct header *h = &f->h;
	if (block_size(h, f->time_size) > len - r.at)
		return "truncated data block";
	f->times = take(&r, (uint64_t)h->timecnt * f->time_size);
	f->indices = take(&r, h->timecnt);
	f->types = take(&r, (uint64_t)h->typecnt * 6);
	f->chars = take(&r, h->charcnt);
	take(&r, (uint64_t)h->leapcnt * (f->time_size + 4) + h->isstdcnt + h->isutcnt);
	f->has_footer = 0;
	return h->version >= 2 ? read_footer(&r, f) : NULL;
}

static int64_t tzif_time(const struct tzif *f, uint32_t i)
{
	const unsigned char *p = f->times + (size_t)i * f->time_size;
	return f->time_size == 8 ? be64(p) : (int64_t)(int32_t)be32(p);
}

/* The file's types into z (abbreviations checked: NUL-terminated, printable ASCII). */
static const char *load_types(const struct tzif *f, struct tz_zone *z)
{
	for (uint32_t i = 0; i < f->h.typecnt; i++) {
		const unsigned char *t = f->types + (size_t)i * 6;
		int32_t offset = (int32_t)be32(t);
		/* RFC 8536 3.2: -89999..93599 (under 25 hours west, 26 hours east). */
		if (offset < -89999 || offset > 93599)
			return "UTC offset out of range";
		if (t[4] > 1)
			return "DST flag neither 0 nor 1";
		if (t[5] >= f->h.charcnt)
			return "abbreviation index out of range";
		const unsigned char *a = f->chars + t[5];
		const unsigned char *nul = memchr(a, '\0', f->h.charcnt - t[5]);
		if (!nul)
			return "abbreviation not NUL-terminated";
		for (; a < nul; a++)
			if (*a < 0x20 || *a > 0x7e)
				return "abbreviation with a non-printing byte";
		z->types[i] = (struct ttype){offset, t[4], t[5]};
	}
	return NULL;
}

static const char *load_transitions(const struct tzif *f, struct tz_zone *z)
{
	for (uint32_t i = 0; i < f->h.timecnt; i++) {
		z->trans[i] = tzif_time(f, i);
		if (i > 0 && z->trans[i] <= z->trans[i - 1])
			return "transition times not in ascending order";
		if (f->indices[i] >= f->h.typecnt)
			return "transition to an undefined local time type";
		z->trans_type[i] = f->indices[i];
	}
	return NULL;
}

/* Appends a type with a footer's abbreviation; returns its index. */
static uint16_t add_type(struct tz_zone *z, size_t *abbrs_len, int32_t offset, int is_dst, const char *abbr)
{
	size_t n = strlen(abbr) + 1;
	memcpy(z->abbrs + *abbrs_len, abbr, n);
	z->types[z->ntypes] = (struct ttype){offset, (unsigned char)is_dst, (uint32_t)*abbrs_len};
	*abbrs_len += n;
	return (uint16_t)z->ntypes++;
}

static const char *load_footer(const struct tzif *f, struct tz_zone *z, size_t *abbrs_len)
{
	struct footer ft;
	if (parse_footer(f->footer, &ft) < 0)
		return "malformed TZ footer";
	uint16_t std = add_type(z, abbrs_len, ft.std_offset, 0, ft.std_abbr);
	if (!ft.has_dst) {
		z->after = std;
		return NULL;
	}
	uint16_t dst = add_type(z, abbrs_len, ft.dst_offset, 1, ft.dst_abbr);
	z->has_rule = 1;
	z->rule = (struct rule){ft.start, ft.end, std, dst, ft.std_offset, ft.dst_offset};
	return NULL;
}

/* zoneinfo's derived data: the type before the first transition (the first non-DST type, else
 * type 0) and each transition's wall time for a fold=0 reading (the later of the two readings:
 * the end of a gap, the end of a fold). */
static void derive(struct tz_zone *z, uint32_t file_types)
{
	z->before = 0;
	for (uint32_t i = 0; i < file_types; i++) {
		if (!z->types[i].is_dst) {
			z->before = (uint16_t)i;
			break;
		}
	}
	for (size_t i = 0; i < z->ntrans; i++) {
		int32_t a = type_of(z, i == 0 ? 0 : z->trans_type[i - 1])->offset;
		int32_t b = type_of(z, z->trans_type[i])->offset;
		z->wall[i] = add_sat(z->trans[i], a > b ? a : b);
	}
}

static void push_step(struct tz_zone *z, int64_t at, uint16_t type)
{
	if (z->nsteps > 0 && z->steps_at[z->nsteps - 1] == at)
		z->nsteps--; /* a transition at INT64_MIN replaces the first step */
	if (z->nsteps > 0 && same_type(z, z->steps_type[z->nsteps - 1], type))
		return;
	z->steps_at[z->nsteps] = at;
	z->steps_type[z->nsteps] = type;
	z->nsteps++;
}

/* The UTC step function, as zoneinfo's fromutc reads the zone: the before type, each
 * transition, then (without a DST rule) the type after the last transition. */
static void build_steps(struct tz_zone *z)
{
	z->nsteps = 0;
	if (z->ntrans == 0) {
		if (!z->has_rule)
			push_step(z, INT64_MIN, z->after);
		return;
	}
	push_step(z, INT64_MIN, z->before);
	for (size_t i = 0; i < z->ntrans; i++)
		push_step(z, z->trans[i], z->trans_type[i]);
	int64_t last = z->trans[z->ntrans - 1];
	if (!z->has_rule && last < INT64_MAX)
		push_step(z, last + 1, z->after);
}

static int alloc_zone_arrays(struct tz_zone *z, const struct tzif *f, size_t abbrs_cap)
{
	size_t nt = f->h.timecnt;
	z->abbrs = malloc(abbrs_cap);
	z->types = calloc((size_t)f->h.typecnt + 2, sizeof *z->types);
	z->trans = calloc(nt ? nt : 1, sizeof *z->trans);
	z->wall = calloc(nt ? nt : 1, sizeof *z->wall);
	z->trans_type = calloc(nt ? nt : 1, sizeof *z->trans_type);
	z->steps_at = calloc(nt + 2, sizeof *z->steps_at);
	z->steps_type = calloc(nt + 2, sizeof *z->steps_type);
	return z->abbrs && z->types && z->trans && z->wall && z->trans_type && z->steps_at && z->steps_type ? 0 : -1;
}

/* Builds z from a checked file; returns NULL or why the file is unusable. */
static const char *build_zone(const struct tzif *f, struct tz_zone *z)
{
	size_t abbrs_cap = (size_t)f->h.charcnt + 2 * (ABBR_MAX_LEN + 1);
	if (alloc_zone_arrays(z, f, abbrs_cap) < 0)
		return "out of memory";
	memcpy(z->abbrs, f->chars, f->h.charcnt);
	size_t abbrs_len = f->h.charcnt;
	z->ntypes = f->h.typecnt;
	z->ntrans = f->h.timecnt;
	const char *why = load_types(f, z);
	if (!why)
		why = load_transitions(f, z);
	if (why)
		return why;
	/* No footer: the last transition's type goes on; with none, zoneinfo takes the last type. */
	z->after = z->ntrans ? z->trans_type[z->ntrans - 1] : (uint16_t)(z->ntypes - 1);
	if (f->has_footer) {
		why = load_footer(f, z, &abbrs_len);
		if (why)
			return why;
	}
	derive(z, f->h.typecnt);
	build_steps(z);
	return NULL;
}

/* ---- lookups ---- */

static size_t last_at_or_before(const int64_t *v, size_t n, int64_t t)
{
	size_t lo = 0;
	size_t hi = n;
	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;
		if (v[mid] <= t)
			lo = mid;
		else
			hi = mid;
	}
	return lo;
}

/* The rule's type at t, extended back into the last transition's step when it is the same. */
static uint16_t lookup_rule(const struct tz_zone *z, int64_t t, int64_t *from, int64_t *until)
{
	uint16_t type = rule_at(&z->rule, t, from, until) ? z->rule.dst : z->rule.std;
	if (z->ntrans == 0)
		return type;
	int64_t rule_from = z->trans[z->ntrans - 1] + 1;
	if (*from <= rule_from) {
		*from = rule_from;
		if (same_type(z, z->steps_type[z->nsteps - 1], type))
			*from = z->steps_at[z->nsteps - 1];
	}
	return type;
}

static uint16_t lookup_steps(const struct tz_zone *z, int64_t t, int64_t *from, int64_t *until)
{
	size_t i = last_at_or_before(z->steps_at, z->nsteps, t);
	uint16_t type = z->steps_type[i];
	*from = z->steps_at[i];
	if (i + 1 < z->nsteps) {
		*until = z->steps_at[i + 1];
		return type;
	}
	*until = INT64_MAX;
	if (z->has_rule && z->trans[z->ntrans - 1] < INT64_MAX) {
		int64_t rule_from = z->trans[z->ntrans - 1] + 1;
		int64_t rfrom;
		int64_t runtil;
		uint16_t next = rule_at(&z->rule, rule_from, &rfrom, &runtil) ? z->rule.dst : z->rule.std;
		*until = same_type(z, next, type) ? runtil : rule_from;
	}
	return type;
}

/* The type at the UTC instant t, as zoneinfo's fromutc finds it. */
static uint16_t lookup(const struct tz_zone *z, int64_t t, int64_t *from, int64_t *until)
{
	if (z->has_rule && (z->ntrans == 0 || t > z->trans[z->ntrans - 1]))
		return lookup_rule(z, t, from, until);
	return lookup_steps(z, t, from, until);
}

/* bisect_right, the very search zoneinfo does (so even odd files give the same answer). */
static size_t bisect_right(const int64_t *v, size_t n, int64_t x)
{
	size_t lo = 0;
	size_t hi = n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (x < v[mid])
			hi = mid;
		else
			lo = mid + 1;
	}
	return lo;
}

/* The type zoneinfo gives a local time with fold=0. */
static uint16_t lookup_local(const struct tz_zone *z, int64_t local)
{
	size_t n = z->ntrans;
	if (n > 0 && local < z->wall[0])
		return z->before;
	if (n == 0 || local > z->wall[n - 1]) {
		if (!z->has_rule)
			return z->after;
		return rule_at_local(&z->rule, local) ? z->rule.dst : z->rule.std;
	}
	return z->trans_type[bisect_right(z->wall, n, local) - 1];
}

void tz_lookup(const struct tz_zone *z, int64_t t, struct tz_period *out)
{
	uint16_t i = lookup(z, t, &out->from, &out->until);
	out->offset = type_of(z, i)->offset;
	out->is_dst = type_of(z, i)->is_dst;
	out->abbreviation = z->abbrs + type_of(z, i)->abbr;
}

int32_t tz_offset(const struct tz_zone *z, int64_t t, int64_t *from, int64_t *until)
{
	struct tz_period p;
	tz_lookup(z, t, &p);
	if (from)
		*from = p.from;
	if (until)
		*until = p.until;
	return p.offset;
}

int tz_is_dst(const struct tz_zone *z, int64_t t)
{
	struct tz_period p;
	tz_lookup(z, t, &p);
	return p.is_dst;
}

const char *tz_abbreviation(const struct tz_zone *z, int64_t t)
{
	struct tz_period p;
	tz_lookup(z, t, &p);
	return p.abbreviation;
}

int64_t tz_local_to_utc(const struct tz_zone *z, int64_t local)
{
	return add_sat(local, -(int64_t)type_of(z, lookup_local(z, local))->offset);
}

const char *tz_zone_name(const struct tz_zone *z)
{
	return z->name;
}

/* ---- loading ---- */

enum load_result { LOAD_OK, LOAD_MISSING, LOAD_NOT_TZIF, LOAD_BAD, LOAD_OOM };

/* Reads at most TZ_FILE_MAX bytes of a regular file. *why is set for LOAD_BAD. */
static enum load_result read_file(const char *path, unsigned char **data, size_t *len, const char **why)
{
	/* O_NONBLOCK: a FIFO planted in the tree must not hang the open. */
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		int e = errno;
		*why = strerror(e);
		return e == ENOENT || e == ENOTDIR ? LOAD_MISSING : LOAD_BAD;
	}
	struct stat st;
	enum load_result rc = LOAD_BAD;
	*data = NULL;
	*len = 0;
	if (fstat(fd, &st) != 0) {
		*why = strerror(errno);
		goto done;
	}
	if (S_ISDIR(st.st_mode)) {
		rc = LOAD_MISSING;
		goto done;
	}
	*why = "not a regular file";
	if (!S_ISREG(st.st_mode))
		goto done;
	*why = "larger than 1 MB";
	if (st.st_size > (off_t)TZ_FILE_MAX)
		goto done;
	size_t cap = (size_t)st.st_size + 1; /* +1 sees a file that grew past its size */
	*data = malloc(cap);
	if (!*data) {
		rc = LOAD_OOM;
		goto done;
	}
	for (;;) {
		ssize_t n = read(fd, *data + *len, cap - *len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			*why = strerror(errno);
			goto done;
		}
		if (n == 0)
			break;
		*len += (size_t)n;
		if (*len == cap) {
			*why = "changed while being read";
			goto done;
		}
	}
	rc = *len >= 4 && memcmp(*data, "TZif", 4) == 0 ? LOAD_OK : LOAD_NOT_TZIF;
done:
	close(fd);
	if (rc != LOAD_OK) {
		free(*data);
		*data = NULL;
	}
	return rc;
}

static struct tz_zone *zone_new(const char *name)
{
	struct tz_zone *z = calloc(1, sizeof *z);
	if (!z)
		return NULL;
	z->name = strdup(name);
	if (!z->name) {
		free(z);
		return NULL;
	}
	return z;
}

/* UTC for a system without a tz database. */
static struct tz_zone *zone_utc(void)
{
	static const unsigned char file_chars[] = "UTC";
	struct tzif f = {.h = {.version = 2, .typecnt = 1, .charcnt = 4}, .chars = file_chars};
	static const unsigned char type[6] = {0, 0, 0, 0, 0, 0};
	f.types = type;
	struct tz_zone *z = zone_new("UTC");
	if (!z || build_zone(&f, z)) {
		zone_free(z);
		return NULL;
	}
	return z;
}

/* ---- names ---- */

/* A name we would look up: [A-Za-z0-9/_+-], no leading '/', no empty part ("//", trailing '/');
 * so no "..", no absolute path, nothing that escapes the directory. */
static int valid_name(const char *name)
{
	size_t n = strnlen(name, NAME_MAX_LEN + 1);
	if (n == 0 || n > NAME_MAX_LEN || name[0] == '/' || name[n - 1] == '/')
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];
		if (!is_alpha(c) && !is_digit(c) && c != '/' && c != '_' && c != '+' && c != '-')
			return 0;
		if (c == '/' && name[i + 1] == '/')
			return 0;
	}
	return 1;
}

/* The name as it can be shown in a message: printable, at most 64 bytes. */
static void shown_name(const char *name, char out[72])
{
	size_t n = 0;
	for (; name[n] && n < 64; n++)
		out[n] = name[n] >= 0x20 && name[n] < 0x7f && name[n] != '\'' ? name[n] : '?';
	out[n] = '\0';
	if (name[n])
		strcpy(out + n, "...");
}

struct names {
	char **v;
	size_t n;
	size_t cap;
};

static int names_add(struct names *ns, const char *name)
{
	if (ns->n == NAMES_MAX)
		return 0;
	if (ns->n == ns->cap) {
		size_t cap = ns->cap ? 2 * ns->cap : 64;
		char **v = realloc(ns->v, cap * sizeof *v);
		if (!v)
			return -1;
		ns->v = v;
		ns->cap = cap;
	}
	ns->v[ns->n] = strdup(name);
	if (!ns->v[ns->n])
		return -1;
	ns->n++;
	return 0;
}

static int has_tzif_magic(int dirfd, const char *entry)
{
	int fd = openat(dirfd, entry, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0)
		return 0;
	char magic[4];
	ssize_t n = read(fd, magic, sizeof magic);
	close(fd);
	return n == 4 && memcmp(magic, "TZif", 4) == 0;
}

static int list_dir(int fd, const char *prefix, int depth, struct names *ns);

/* One directory entry: a zone file is added, a real directory walked (symlinked directories are
 * not followed, so the walk cannot loop), anything else skipped. */
static int list_entry(int dirfd, const char *entry, const char *prefix, int depth, struct names *ns)
{
	char name[NAME_MAX_LEN + 2];
	int n = snprintf(name, sizeof name, "%s%s%s", prefix, *prefix ? "/" : "", entry);
	if (n < 0 || (size_t)n >= sizeof name || !valid_name(name))
		return 0;
	if (depth == 0 && (!strcmp(entry, "posix") || !strcmp(entry, "right") || !strcmp(entry, "posixrules")))
		return 0; /* copies of the tree, and zic's default rules: not zones a user would pick */
	struct stat st;
	if (fstatat(dirfd, entry, &st, AT_SYMLINK_NOFOLLOW) != 0)
		return 0;
	if (S_ISDIR(st.st_mode)) {
		if (depth + 1 >= WALK_DEPTH)
			return 0;
		int sub = openat(dirfd, entry, O_RDONLY | O_CLOEXEC | O_DIRECTORY | O_NOFOLLOW);
		return sub < 0 ? 0 : list_dir(sub, name, depth + 1, ns);
	}
	if (S_ISLNK(st.st_mode) && (fstatat(dirfd, entry, &st, 0) != 0 || !S_ISREG(st.st_mode)))
		return 0;
	if (!S_ISREG(st.st_mode) || !has_tzif_magic(dirfd, entry))
		return 0;
	return names_add(ns, name);
}

/* Lists the zones under the open directory fd (which it closes). */
static int list_dir(int fd, const char *prefix, int depth, struct names *ns)
{
	DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		return 0;
	}
	int rc = 0;
	for (struct dirent *e = readdir(d); rc == 0 && e; e = readdir(d))
		if (e->d_name[0] != '.')
			rc = list_entry(dirfd(d), e->d_name, prefix, depth, ns);
	closedir(d);
	return rc;
}

/* Every zone name in the database, and UTC; listed once, for the messages about unknown names.
 * Walking the tree (as zoneinfo.available_timezones does) rather than reading tzdata.zi lists
 * exactly the names tz_find can load, in any $TZDIR, including one without tzdata.zi. */
static void list_names(struct tz_db *db)
{
	if (db->names_listed)
		return;
	db->names_listed = 1;
	struct names ns = {NULL, 0, 0};
	int fd = open(db->dir, O_RDONLY | O_CLOEXEC | O_DIRECTORY);
	int rc = fd < 0 ? 0 : list_dir(fd, "", 0, &ns);
	int has_utc = 0;
	for (size_t i = 0; i < ns.n; i++)
		has_utc |= !strcmp(ns.v[i], "UTC");
	if (rc == 0 && !has_utc)
		rc = names_add(&ns, "UTC");
	(void)rc; /* out of memory: the suggestions are what was listed */
	db->names = ns.v;
	db->nnames = ns.n;
}

static char lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* Levenshtein distance, letters compared without case (so "utc" suggests UTC). */
static size_t edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a);
	size_t lb = strlen(b);
	size_t row[NAME_MAX_LEN + 2];
	if (la > NAME_MAX_LEN || lb > NAME_MAX_LEN)
		return SIZE_MAX;
	for (size_t j = 0; j <= lb; j++)
		row[j] = j;
	for (size_t i = 1; i <= la; i++) {
		size_t diag = row[0];
		row[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t up = row[j];
			size_t best = diag + (lower(a[i - 1]) != lower(b[j - 1]));
			if (up + 1 < best)
				best = up + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			diag = up;
		}
	}
	return row[lb];
}

/* How far candidate is from what was typed: a name typed without a region ("London") is also
 * compared with the candidate's last part. Ranked by the nearer of the two, then by the whole
 * name's distance (so "utc" puts UTC before Etc/UTC). */
static void name_distance(const char *typed, const char *candidate, size_t *nearest, size_t *whole)
{
	*whole = edit_distance(typed, candidate);
	*nearest = *whole;
	const char *base = strrchr(candidate, '/');
	if (!strchr(typed, '/') && base) {
		size_t b = edit_distance(typed, base + 1);
		if (b < *nearest)
			*nearest = b;
	}
}

struct suggestion {
	const char *name;
	size_t nearest;
	size_t whole;
};

static int ranks_before(const struct suggestion *a, const struct suggestion *b)
{
	if (a->nearest != b->nearest)
		return a->nearest < b->nearest;
	if (a->whole != b->whole)
		return a->whole < b->whole;
	return strcmp(a->name, b->name) < 0;
}

/* Up to SUGGESTIONS names closest to typed, best first; far ones left out. */
static size_t suggest(struct tz_db *db, const char *typed, const char *out[SUGGESTIONS])
{
	struct suggestion best[SUGGESTIONS];
	size_t n = 0;
	size_t limit = strlen(typed) / 3 > 2 ? strlen(typed) / 3 : 2;
	list_names(db);
	for (size_t i = 0; i < db->nnames; i++) {
		struct suggestion c = {db->names[i], 0, 0};
		name_distance(typed, c.name, &c.nearest, &c.whole);
		if (c.nearest > limit)
			continue;
		size_t at = n;
		while (at > 0 && ranks_before(&c, &best[at - 1]))
			at--;
		if (at == SUGGESTIONS)
			continue;
		if (n < SUGGESTIONS)
			n++;
		for (size_t j = n - 1; j > at; j--)
			best[j] = best[j - 1];
		best[at] = c;
	}
	for (size_t i = 0; i < n; i++)
		out[i] = best[i].name;
	return n;
}

static void unknown_zone(struct tz_db *db, const char *name, char *err, size_t errlen)
{
	const char *s[SUGGESTIONS];
	char shown[72];
	shown_name(name, shown);
	size_t n = suggest(db, name, s);
	if (n == 0 && db->nnames <= 1)
		snprintf(err, errlen, "unknown time zone '%s' (no tz database in %s: install tzdata or set TZDIR)",
			 shown, db->dir);
	else if (n == 0)
		snprintf(err, errlen, "unknown time zone '%s'", shown);
	else if (n == 1)
		snprintf(err, errlen, "unknown time zone '%s' (did you mean %s?)", shown, s[0]);
	else if (n == 2)
		snprintf(err, errlen, "unknown time zone '%s' (did you mean %s or %s?)", shown, s[0], s[1]);
	else
		snprintf(err, errlen, "unknown time zone '%s' (did you mean %s, %s or %s?)", shown, s[0], s[1], s[2]);
}

/* ---- the db ---- */

struct tz_db *tz_db_open(const char *dir)
{
	if (!dir) {
		const char *env = getenv("TZDIR");
		dir = env && *env ? env : DEFAULT_DIR;
	}
	struct tz_db *db = calloc(1, sizeof *db);
	if (!db)
		return NULL;
	db->dir = strdup(dir);
	if (!db->dir) {
		free(db);
		return NULL;
	}
	return db;
}

void tz_db_close(struct tz_db *db)
{
	if (!db)
		return;
	while (db->zones) {
		struct tz_zone *next = db->zones->next;
		zone_free(db->zones);
		db->zones = next;
	}
	for (size_t i = 0; i < db->nnames; i++)
		free(db->names[i]);
	free(db->names);
	free(db->dir);
	free(db);
}

/* A new zone called name from TZif bytes, or NULL and why. */
static struct tz_zone *zone_from_bytes(const char *name, const unsigned char *data, size_t len, const char **why)
{
	struct tzif f;
	struct tz_zone *z = zone_new(name);
	*why = !z ? "out of memory" : read_tzif(data, len, &f);
	if (!*why)
		*why = build_zone(&f, z);
	if (!*why)
		return z;
	zone_free(z);
	return NULL;
}

/* Loads name's file into a new zone; on failure sets err and returns NULL. */
static struct tz_zone *load_zone(struct tz_db *db, const char *name, char *err, size_t errlen)
{
	char path[4096];
	int n = snprintf(path, sizeof path, "%s/%s", db->dir, name);
	if (n < 0 || (size_t)n >= sizeof path) {
		snprintf(err, errlen, "cannot load time zone '%s': the path is too long", name);
		return NULL;
	}
	unsigned char *data;
	size_t len;
	const char *why = NULL;
	enum load_result rc = read_file(path, &data, &len, &why);
	if (rc == LOAD_MISSING && !strcmp(name, "UTC")) {
		struct tz_zone *z = zone_utc();
		if (!z)
			snprintf(err, errlen, "out of memory loading time zone 'UTC'");
		return z;
	}
	if (rc == LOAD_MISSING) {
		unknown_zone(db, name, err, errlen);
		return NULL;
	}
	if (rc == LOAD_NOT_TZIF) {
		snprintf(err, errlen, "unknown time zone '%s': %s is not a TZif file", name, path);
		return NULL;
	}
	if (rc != LOAD_OK) {
		snprintf(err, errlen, "cannot load time zone '%s' from %s: %s", name, path,
			 rc == LOAD_OOM ? "out of memory" : why);
		return NULL;
	}
	struct tz_zone *z = zone_from_bytes(name, data, len, &why);
	free(data);
	if (!z)
		snprintf(err, errlen, "cannot load time zone '%s' from %s: %s", name, path, why);
	return z;
}

/* Checks the name a caller gave; sets err when it is refused. */
static int usable_name(struct tz_db *db, const char *name, char *err, size_t errlen)
{
	if (!db || !name) {
		snprintf(err, errlen, "no time zone database or name");
		return 0;
	}
	if (valid_name(name))
		return 1;
	char shown[72];
	shown_name(name, shown);
	snprintf(err, errlen,
		 "invalid time zone name '%s' (a zone name is letters, digits and / _ + -, as in America/New_York)",
		 shown);
	return 0;
}

static struct tz_zone *loaded(struct tz_db *db, const char *name)
{
	for (struct tz_zone *z = db->zones; z; z = z->next)
		if (!strcmp(z->name, name))
			return z;
	return NULL;
}

static const struct tz_zone *keep(struct tz_db *db, struct tz_zone *z)
{
	z->next = db->zones;
	db->zones = z;
	return z;
}

static const struct tz_zone *find_zone(struct tz_db *db, const char *name, char *err, size_t errlen)
{
	if (!usable_name(db, name, err, errlen))
		return NULL;
	struct tz_zone *z = loaded(db, name);
	if (z)
		return z;
	z = load_zone(db, name, err, errlen);
	return z ? keep(db, z) : NULL;
}

const struct tz_zone *tz_find(struct tz_db *db, const char *name, char *err, size_t errlen)
{
	char scratch[1];
	if (!err || errlen == 0)
		return find_zone(db, name, scratch, sizeof scratch);
	err[0] = '\0';
	return find_zone(db, name, err, errlen);
}

static const struct tz_zone *load_bytes(struct tz_db *db, const char *name, const void *data, size_t len, char *err,
					size_t errlen)
{
	if (!usable_name(db, name, err, errlen))
		return NULL;
	if (loaded(db, name)) {
		snprintf(err, errlen, "time zone '%s' is already loaded", name);
		return NULL;
	}
	const char *why = "larger than 1 MB";
	if (len <= TZ_FILE_MAX)
		why = data && len >= 4 && memcmp(data, "TZif", 4) == 0 ? NULL : "not TZif data";
	struct tz_zone *z = why ? NULL : zone_from_bytes(name, data, len, &why);
	if (!z) {
		snprintf(err, errlen, "cannot load time zone '%s': %s", name, why);
		return NULL;
	}
	return keep(db, z);
}

const struct tz_zone *tz_load(struct tz_db *db, const char *name, const void *data, size_t len, char *err,
			      size_t errlen)
{
	char scratch[1];
	if (!err || errlen == 0)
		return load_bytes(db, name, data, len, scratch, sizeof scratch);
	err[0] = '\0';
	return load_bytes(db, name, data, len, err, errlen);
}
