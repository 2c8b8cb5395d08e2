/*
 * test_tz: IANA zones from TZif files (tz.c): UTC without a database, New York, London, Dublin's
 * negative DST, quoted footer names, Lord Howe's 30-minute DST, footer rules far out, instants
 * before 1900 and at the ends of int64, local times in gaps and folds, the errors for unknown and
 * refused names, and files that are truncated, corrupt, huge, a directory or a FIFO. Expected
 * values come from Python 3.11's zoneinfo on Debian's tzdata 2025b (tests/tz compares every zone).
 */
#define _DEFAULT_SOURCE /* mkdtemp */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "tz.h"

#define SYSTEM_DIR "/usr/share/zoneinfo"
#define ERR_LEN 256

/* ---- fixtures ---- */

/* The system database, or NULL (and the test skipped) where tzdata is not installed. */
static struct tz_db *system_db(void)
{
	if (access(SYSTEM_DIR "/America/New_York", R_OK) != 0) {
		test_skip("no tz database in " SYSTEM_DIR);
		return NULL;
	}
	struct tz_db *db = tz_db_open(SYSTEM_DIR);
	CHECK(db != NULL, "tz_db_open returned NULL");
	return db;
}

static const struct tz_zone *find(struct tz_db *db, const char *name)
{
	char err[ERR_LEN] = "";
	const struct tz_zone *z = tz_find(db, name, err, sizeof err);
	CHECK(z != NULL, "tz_find(%s) failed: %s", name, err);
	return z;
}

static int make_temp_dir(char *path, size_t len)
{
	const char *tmp = getenv("TMPDIR");
	snprintf(path, len, "%s/source-lua-tz-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	return CHECK(mkdtemp(path) != NULL, "mkdtemp(%s): %s", path, strerror(errno)) ? 0 : -1;
}

static void remove_tree(const char *path)
{
	DIR *d = opendir(path);
	if (!d) {
		unlink(path);
		return;
	}
	for (struct dirent *e = readdir(d); e; e = readdir(d)) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		char sub[4096];
		snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
		remove_tree(sub);
	}
	closedir(d);
	rmdir(path);
}

static int write_file(const char *dir, const char *name, const void *data, size_t len)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (!CHECK(fd >= 0, "cannot create %s: %s", path, strerror(errno)))
		return -1;
	ssize_t n = len ? write(fd, data, len) : 0;
	close(fd);
	return CHECK(n == (ssize_t)len, "short write to %s", path) ? 0 : -1;
}

static int read_system_file(const char *name, struct buf *out)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/%s", SYSTEM_DIR, name);
	FILE *f = fopen(path, "rb");
	if (!CHECK(f != NULL, "cannot open %s", path))
		return -1;
	char chunk[4096];
	for (size_t n = fread(chunk, 1, sizeof chunk, f); n > 0; n = fread(chunk, 1, sizeof chunk, f))
		buf_append(out, chunk, n);
	fclose(f);
	return 0;
}

/* A synthetic TZif v2 file: a token version 1 block, then types, transitions and footer. */
struct tzif_type {
	int32_t offset;
	int is_dst;
	const char *abbr;
};

struct tzif_spec {
	const char *footer;
	size_t ntypes;
	struct tzif_type types[4];
	size_t ntrans;
	int64_t trans[4];
	unsigned char type_of[4];
};

static void put32(struct buf *b, uint32_t v)
{
	unsigned char p[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16), (unsigned char)(v >> 8),
			      (unsigned char)v};
	buf_append(b, p, 4);
}

static void put_header(struct buf *b, char version, uint32_t timecnt, uint32_t typecnt, uint32_t charcnt)
{
	buf_append(b, "TZif", 4);
	buf_putc(b, version);
	buf_append(b, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 15);
	put32(b, 0);
	put32(b, 0);
	put32(b, 0);
	put32(b, timecnt);
	put32(b, typecnt);
	put32(b, charcnt);
}

static void tzif_build(const struct tzif_spec *s, struct buf *out)
{
	struct buf chars = {0};
	uint32_t at[4];
	for (size_t i = 0; i < s->ntypes; i++) {
		at[i] = (uint32_t)chars.len;
		buf_append(&chars, s->types[i].abbr, strlen(s->types[i].abbr) + 1);
	}
	put_header(out, '2', 0, 1, 1);
	buf_append(out, "\0\0\0\0\0\0\0", 7); /* one type (UTC, "") for version 1 readers */
	put_header(out, '2', (uint32_t)s->ntrans, (uint32_t)s->ntypes, (uint32_t)chars.len);
	for (size_t i = 0; i < s->ntrans; i++) {
		put32(out, (uint32_t)((uint64_t)s->trans[i] >> 32));
		put32(out, (uint32_t)s->trans[i]);
	}
	buf_append(out, s->type_of, s->ntrans);
	for (size_t i = 0; i < s->ntypes; i++) {
		put32(out, (uint32_t)s->types[i].offset);
		buf_putc(out, (char)s->types[i].is_dst);
		buf_putc(out, (char)at[i]);
	}
	buf_append(out, chars.data, chars.len);
	buf_printf(out, "\n%s\n", s->footer);
	buf_free(&chars);
}

/* A zone with only a footer (and an unused LMT type), in dir under name. */
static int write_footer_zone(const char *dir, const char *name, const char *footer)
{
	struct tzif_spec s = {.footer = footer, .ntypes = 1, .types = {{0, 0, "LMT"}}};
	struct buf b = {0};
	tzif_build(&s, &b);
	int rc = write_file(dir, name, b.data, b.len);
	buf_free(&b);
	return rc;
}

/* ---- answers at UTC instants ---- */

struct instant_case {
	const char *zone;
	int64_t t;
	int32_t offset;
	int is_dst;
	const char *abbr;
};

static const struct instant_case instants[] = {
	/* New York around 2022's changes, at 2100 (the footer), and its 1883 LMT -> EST transition. */
	{"America/New_York", 1647154799LL, -18000, 0, "EST"},
	{"America/New_York", 1647154800LL, -14400, 1, "EDT"},
	{"America/New_York", 1667714399LL, -14400, 1, "EDT"},
	{"America/New_York", 1667714400LL, -18000, 0, "EST"},
	{"America/New_York", 4118342400LL, -14400, 1, "EDT"},
	{"America/New_York", 4133376000LL, -18000, 0, "EST"},
	{"America/New_York", -2717650801LL, -17762, 0, "LMT"},
	{"America/New_York", -2717650800LL, -18000, 0, "EST"},
	{"America/New_York", -5364662400LL, -17762, 0, "LMT"},   /* 1800 */
	{"America/New_York", 253386403200LL, -14400, 1, "EDT"},  /* 9999-07-01 */
	{"America/New_York", 253402257600LL, -18000, 0, "EST"},  /* 9999-12-31 */
	{"America/New_York", -377705203200LL, -17762, 0, "LMT"}, /* -9999-01-01 */
	{"US/Eastern", 1647154800LL, -14400, 1, "EDT"},
	{"Europe/London", 1648342799LL, 0, 0, "GMT"},
	{"Europe/London", 1648342800LL, 3600, 1, "BST"},
	{"Europe/London", 1667091599LL, 3600, 1, "BST"},
	{"Europe/London", 1667091600LL, 0, 0, "GMT"},
	{"Europe/London", -5364662400LL, -75, 0, "LMT"},
	/* Dublin: IST is standard time, GMT its negative DST. */
	{"Europe/Dublin", 1642204800LL, 0, 1, "GMT"},
	{"Europe/Dublin", 1657843200LL, 3600, 0, "IST"},
	{"Europe/Dublin", 4103654400LL, 0, 1, "GMT"},
	{"Europe/Dublin", 4119292800LL, 3600, 0, "IST"},
	/* Quoted footer names: <+0330>-3:30, Nuuk's <-02>2<-01>,M3.5.0/-1,M10.5.0/0. */
	{"Asia/Tehran", 4118083200LL, 12600, 0, "+0330"},
	{"Asia/Tehran", 4102444800LL, 12600, 0, "+0330"},
	{"America/Nuuk", 4103654400LL, -7200, 0, "-02"},
	{"America/Nuuk", 4119292800LL, -3600, 1, "-01"},
	/* Lord Howe: 30 minutes of DST. */
	{"Australia/Lord_Howe", 4103654400LL, 39600, 1, "+11"},
	{"Australia/Lord_Howe", 4119292800LL, 37800, 0, "+1030"},
	{"Asia/Kolkata", -3786825600LL, 21208, 0, "LMT"},
	{"Asia/Kolkata", 2524608000LL, 19800, 0, "IST"},
	{"UTC", 1647154800LL, 0, 0, "UTC"},
	{"Etc/GMT+5", 0, -18000, 0, "-05"},
};

static void instants_match_zoneinfo(void)
{
	struct tz_db *db = system_db();
	if (!db)
		return;
	for (size_t i = 0; i < COUNT_OF(instants); i++) {
		const struct instant_case *c = &instants[i];
		const struct tz_zone *z = find(db, c->zone);
		if (!z)
			continue;
		struct tz_period p;
		tz_lookup(z, c->t, &p);
		CHECK(p.offset == c->offset && p.is_dst == c->is_dst && !strcmp(p.abbreviation, c->abbr),
		      "%s at %lld: %d %d %s, want %d %d %s", c->zone, (long long)c->t, p.offset, p.is_dst,
		      p.abbreviation, c->offset, c->is_dst, c->abbr);
		CHECK(tz_offset(z, c->t, NULL, NULL) == c->offset, "%s: tz_offset differs from tz_lookup", c->zone);
		CHECK(tz_is_dst(z, c->t) == c->is_dst, "%s: tz_is_dst differs from tz_lookup", c->zone);
		CHECK(!strcmp(tz_abbreviation(z, c->t), c->abbr), "%s: tz_abbreviation differs", c->zone);
		CHECK(p.from <= c->t && c->t < p.until, "%s at %lld: span [%lld, %lld)", c->zone, (long long)c->t,
		      (long long)p.from, (long long)p.until);
	}
	tz_db_close(db);
}

/* The spans are the zone's transitions: in 2100 (footer rules) exactly zoneinfo's. */
struct span_case {
	const char *zone;
	int64_t t;
	int64_t from;
	int64_t until;
};

static const struct span_case spans[] = {
	{"America/New_York", 4118342400LL, 4108690800LL, 4129250400LL},
	{"America/Nuuk", 4119292800LL, 4109878800LL, 4128627600LL},
	{"Australia/Lord_Howe", 4119292800LL, 4110447600LL, 4126174200LL},
	{"Europe/Dublin", 4119292800LL, 4109878800LL, 4128627600LL},
	{"America/New_York", 1647154799LL, 1636264800LL, 1647154800LL},
	{"America/New_York", -5364662400LL, INT64_MIN, -2717650800LL},
	{"Asia/Tehran", 4118083200LL, 1663788600LL, INT64_MAX},
};

static void spans_are_transitions(void)
{
	struct tz_db *db = system_db();
	if (!db)
		return;
	for (size_t i = 0; i < COUNT_OF(spans); i++) {
		const struct span_case *c = &spans[i];
		const struct tz_zone *z = find(db, c->zone);
		int64_t from = 0;
		int64_t until = 0;
		if (z)
			tz_offset(z, c->t, &from, &until);
		CHECK(z && from == c->from && until == c->until, "%s at %lld: span [%lld, %lld), want [%lld, %lld)",
		      c->zone, (long long)c->t, (long long)from, (long long)until, (long long)c->from,
		      (long long)c->until);
	}
	tz_db_close(db);
}

/* A page of 2,500 daily bars asks for each bar: the cached span answers almost all of them, and
 * every cached answer is the one a lookup gives. */
static void span_cache_skips_lookups(void)
{
	struct tz_db *db = system_db();
	const struct tz_zone *z = db ? find(db, "America/New_York") : NULL;
	if (!z) {
		tz_db_close(db);
		return;
	}
	int64_t from = 1;
	int64_t until = 0;
	int32_t offset = 0;
	int lookups = 0;
	for (int64_t day = 0; day < 2500; day++) {
		int64_t t = 1262304000LL + day * 86400 + 75600; /* 21:00Z from 2010-01-01 */
		if (t < from || t >= until) {
			offset = tz_offset(z, t, &from, &until);
			lookups++;
		}
		CHECK(offset == tz_offset(z, t, NULL, NULL), "cached offset wrong at %lld", (long long)t);
	}
	CHECK(lookups <= 15, "%d lookups for 2,500 days (about 2 a year expected)", lookups);
	tz_db_close(db);
}

/* ---- local times ---- */

struct local_case {
	const char *zone;
	int64_t local;
	int64_t utc;
};

static const struct local_case locals[] = {
	{"America/New_York", 1647138600LL, 1647156600LL},   /* 2022-03-13 02:30, skipped: EST's reading */
	{"America/New_York", 1647136799LL, 1647154799LL},   /* 01:59:59 EST */
	{"America/New_York", 1647140400LL, 1647154800LL},   /* 03:00 EDT */
	{"America/New_York", 1667698200LL, 1667712600LL},   /* 2022-11-06 01:30, twice: the EDT one */
	{"America/New_York", 1667696399LL, 1667710799LL},   /* 00:59:59 EDT */
	{"America/New_York", 1667700000LL, 1667718000LL},   /* 02:00 EST */
	{"America/New_York", 4108674600LL, 4108692600LL},   /* 2100-03-14 02:30, footer gap */
	{"America/New_York", 4129234200LL, 4129248600LL},   /* 2100-11-07 01:30, footer fold */
	{"America/New_York", -2717668680LL, -2717650918LL}, /* 1883-11-18 12:02, repeated: LMT's */
	{"America/New_York", -5364662400LL, -5364644638LL}, /* 1800, before any transition */
	{"Europe/Dublin", 1648344600LL, 1648344600LL},      /* 2022-03-27 01:30, skipped: GMT's */
	{"Europe/Dublin", 1667093400LL, 1667089800LL},      /* 2022-10-30 01:30, twice: IST's */
	{"Europe/Dublin", 4109880600LL, 4109880600LL},      /* 2100, footer with negative DST */
	{"Europe/Dublin", 4128629400LL, 4128625800LL},
	{"America/Nuuk", 4109873400LL, 4109880600LL},        /* 2100-03-27 23:30, a gap at -1:00 */
	{"America/Nuuk", 4128622200LL, 4128625800LL},        /* 2100-10-30 23:30, a fold at 0:00 */
	{"Australia/Lord_Howe", 1664676900LL, 1664639100LL}, /* 2022-10-02 02:15, a 30-minute gap */
	{"Australia/Lord_Howe", 1648950300LL, 1648910700LL}, /* 2022-04-03 01:45, a 30-minute fold */
	{"UTC", 1667698200LL, 1667698200LL},
};

static void local_times_resolve_as_zoneinfo(void)
{
	struct tz_db *db = system_db();
	if (!db)
		return;
	for (size_t i = 0; i < COUNT_OF(locals); i++) {
		const struct tz_zone *z = find(db, locals[i].zone);
		int64_t utc = z ? tz_local_to_utc(z, locals[i].local) : 0;
		CHECK(utc == locals[i].utc, "%s local %lld: %lld, want %lld", locals[i].zone,
		      (long long)locals[i].local, (long long)utc, (long long)locals[i].utc);
	}
	tz_db_close(db);
}

/* Every int64 is answered without overflow (UBSan checks; local times saturate), offsets stay real
 * ones. */
static void ends_of_int64(void)
{
	static const char *const zones[] = {"America/New_York", "Europe/Dublin", "Australia/Lord_Howe", "UTC"};
	static const int64_t ts[] = {INT64_MIN, INT64_MIN + 1,    -(INT64_C(1) << 62), -1,
				     0,         INT64_C(1) << 62, INT64_MAX - 1,       INT64_MAX};
	struct tz_db *db = system_db();
	if (!db)
		return;
	for (size_t i = 0; i < COUNT_OF(zones); i++) {
		const struct tz_zone *z = find(db, zones[i]);
		for (size_t j = 0; z && j < COUNT_OF(ts); j++) {
			int64_t from;
			int64_t until;
			int32_t off = tz_offset(z, ts[j], &from, &until);
			CHECK(off > -86400 && off < 86400, "%s at %lld: offset %d", zones[i], (long long)ts[j], off);
			CHECK(from <= ts[j] && (ts[j] < until || until == INT64_MAX), "%s at %lld: span [%lld, %lld)",
			      zones[i], (long long)ts[j], (long long)from, (long long)until);
			(void)tz_local_to_utc(z, ts[j]);
		}
	}
	tz_db_close(db);
}

/* ---- the database ---- */

static void utc_without_a_database(void)
{
	char dir[512];
	if (make_temp_dir(dir, sizeof dir) < 0)
		return;
	struct tz_db *db = tz_db_open(dir);
	char err[ERR_LEN] = "";
	const struct tz_zone *utc = tz_find(db, "UTC", err, sizeof err);
	CHECK(utc != NULL, "UTC without a database: %s", err);
	if (utc) {
		int64_t from = 0;
		int64_t until = 0;
		CHECK(tz_offset(utc, 1647154800LL, &from, &until) == 0, "UTC offset not 0");
		CHECK(from == INT64_MIN && until == INT64_MAX, "UTC span [%lld, %lld)", (long long)from,
		      (long long)until);
		CHECK_STR(tz_abbreviation(utc, 0), "UTC", "abbreviation");
		CHECK(!tz_is_dst(utc, 0), "UTC in DST");
		CHECK(tz_local_to_utc(utc, 12345) == 12345, "UTC local time moved");
		CHECK_STR(tz_zone_name(utc), "UTC", "name");
		CHECK(tz_find(db, "UTC", NULL, 0) == utc, "UTC loaded twice");
	}
	CHECK(tz_find(db, "Europe/London", err, sizeof err) == NULL, "Europe/London found in an empty directory");
	CHECK_CONTAINS(err, "unknown time zone 'Europe/London'", "error");
	CHECK_CONTAINS(err, "no tz database", "error");
	tz_db_close(db);
	remove_tree(dir);
}

static void tzdir_is_the_default(void)
{
	char dir[512];
	if (make_temp_dir(dir, sizeof dir) < 0)
		return;
	write_footer_zone(dir, "Only", "<+0330>-3:30");
	const char *saved = getenv("TZDIR");
	char keep[4096];
	snprintf(keep, sizeof keep, "%s", saved ? saved : "");
	setenv("TZDIR", dir, 1);
	struct tz_db *db = tz_db_open(NULL);
	const struct tz_zone *z = find(db, "Only");
	CHECK(z && tz_offset(z, 0, NULL, NULL) == 12600, "the zone from $TZDIR");
	tz_db_close(db);
	if (saved)
		setenv("TZDIR", keep, 1);
	else
		unsetenv("TZDIR");
	remove_tree(dir);
}

static void zones_load_once(void)
{
	struct tz_db *db = system_db();
	if (!db)
		return;
	const struct tz_zone *a = find(db, "Europe/London");
	CHECK(a == find(db, "Europe/London"), "Europe/London loaded twice");
	const struct tz_zone *link = find(db, "GB");
	CHECK(link && link != a && !strcmp(tz_zone_name(link), "GB"), "a link keeps the name it was asked by");
	tz_db_close(db);
}

struct unknown_case {
	const char *name;
	const char *want;
};

static const struct unknown_case unknowns[] = {
	{"Europe/Londn", "unknown time zone 'Europe/Londn' (did you mean Europe/London, "},
	{"London", "(did you mean Europe/London?)"},
	{"utc", "did you mean UTC, "},
	{"America/New_Yrok", "did you mean America/New_York"},
	{"Asia/Tokio", "did you mean Asia/Tokyo"},
	{"Xyzzy/Plugh", "unknown time zone 'Xyzzy/Plugh'"},
	{"America", "unknown time zone 'America'"},
	{"leapseconds", "leapseconds is not a TZif file"},
};

static void unknown_names_get_suggestions(void)
{
	struct tz_db *db = system_db();
	if (!db)
		return;
	for (size_t i = 0; i < COUNT_OF(unknowns); i++) {
		char err[ERR_LEN] = "";
		const struct tz_zone *z = tz_find(db, unknowns[i].name, err, sizeof err);
		CHECK(z == NULL, "%s was found", unknowns[i].name);
		CHECK_CONTAINS(err, unknowns[i].want, unknowns[i].name);
	}
	char tiny[8];
	CHECK(tz_find(db, "Nowhere/Atall", tiny, sizeof tiny) == NULL && strlen(tiny) == 7, "a short err buffer");
	tz_db_close(db);
}

/* Names that could leave the directory (or are not names) are refused before the disk: a file
 * planted where "../Planted" would lead is never read. */
static void refused_names(void)
{
	static const char *const refused[] = {
		"../Planted",     "../etc/passwd", "/etc/passwd",     "zones/../../Planted", "",     "Europe//London",
		"Europe/London/", "Europe London", "Europe/London\n", "Europe/Lon.don",      "\x01", "..",
	};
	char dir[512];
	if (make_temp_dir(dir, sizeof dir) < 0)
		return;
	char zones[600];
	snprintf(zones, sizeof zones, "%s/zones", dir);
	mkdir(zones, 0755);
	write_footer_zone(dir, "Planted", "EST5");
	struct tz_db *db = tz_db_open(zones);
	for (size_t i = 0; i < COUNT_OF(refused); i++) {
		char err[ERR_LEN] = "";
		CHECK(tz_find(db, refused[i], err, sizeof err) == NULL, "\"%s\" was accepted", refused[i]);
		CHECK_CONTAINS(err, "invalid time zone name", refused[i]);
	}
	char long_name[400];
	memset(long_name, 'A', sizeof long_name - 1);
	long_name[sizeof long_name - 1] = '\0';
	CHECK(tz_find(db, long_name, NULL, 0) == NULL, "a 399-byte name was accepted");
	CHECK(tz_find(db, NULL, NULL, 0) == NULL, "a NULL name was accepted");
	tz_db_close(db);
	remove_tree(dir);
}

/* ---- footers ---- */

struct footer_case {
	const char *footer;
	int64_t t;
	int32_t offset;
	int is_dst;
	const char *abbr;
};

static const struct footer_case footers[] = {
	{"<+0330>-3:30", 0, 12600, 0, "+0330"},
	{"<-00>0", 0, 0, 0, "-00"},
	/* RFC 8536 3.3.1: DST all year (starts Jan 1 00:00, ends Dec 31 24:00 + 1 h). */
	{"EST5EDT,0/0,J365/25", 1704067200LL, -14400, 1, "EDT"}, /* 2024-01-01T00:00Z */
	{"EST5EDT,0/0,J365/25", 1719792000LL, -14400, 1, "EDT"}, /* 2024-07-01 */
	{"EST5EDT,0/0,J365/25", 1735689599LL, -14400, 1, "EDT"}, /* 2024-12-31T23:59:59Z */
	/* POSIX: n counts from 0 (day 100 of 2023 is April 11); Jn never counts February 29 (J59 is
	 * February 28, J60 March 1, in every year). */
	{"AAA0BBB,100/0,J300/0", 1681171199LL, 0, 0, "AAA"},    /* 2023-04-10T23:59:59Z */
	{"AAA0BBB,100/0,J300/0", 1681171200LL, 3600, 1, "BBB"}, /* 2023-04-11T00:00Z */
	{"AAA0BBB,J59/0,J300/0", 1709078399LL, 0, 0, "AAA"},    /* 2024-02-27T23:59:59Z */
	{"AAA0BBB,J59/0,J300/0", 1709078400LL, 3600, 1, "BBB"}, /* 2024-02-28T00:00Z */
	{"AAA0BBB,J60/0,J300/0", 1709251199LL, 0, 0, "AAA"},    /* 2024-02-29T23:59:59Z */
	{"AAA0BBB,J60/0,J300/0", 1709251200LL, 3600, 1, "BBB"}, /* 2024-03-01T00:00Z */
	/* Hours beyond a day, and negative: M3.1.0/167 is 2024-03-03 + 6 days 23 h, M10.1.0/-167 is
	 * 2024-10-06 - 6 days 23 h (in DST, so 00:00Z). */
	{"AAA0BBB,M3.1.0/167,M10.1.0/-167", 1710025199LL, 0, 0, "AAA"},
	{"AAA0BBB,M3.1.0/167,M10.1.0/-167", 1710025200LL, 3600, 1, "BBB"},
	{"AAA0BBB,M3.1.0/167,M10.1.0/-167", 1727567999LL, 3600, 1, "BBB"},
	{"AAA0BBB,M3.1.0/167,M10.1.0/-167", 1727568000LL, 0, 0, "AAA"},
	{"<+1245>-12:45<+1345>,M9.5.0/2:45,M4.1.0/3:45", 1719792000LL, 45900, 0, "+1245"},
	{"<+1245>-12:45<+1345>,M9.5.0/2:45,M4.1.0/3:45", 1704067200LL, 49500, 1, "+1345"},
	{"AAA0BBB-2,M3.5.0/1,M10.5.0/3", 1719792000LL, 7200, 1, "BBB"},
	{"AAA3:00:30BBB,M3.5.0,M10.5.0", 0, -10830, 0, "AAA"},
};

static void footer_rules(void)
{
	char dir[512];
	if (make_temp_dir(dir, sizeof dir) < 0)
		return;
	struct tz_db *db = tz_db_open(dir);
	for (size_t i = 0; i < COUNT_OF(footers); i++) {
		const struct footer_case *c = &footers[i];
		char name[32];
		snprintf(name, sizeof name, "F%zu", i);
		write_footer_zone(dir, name, c->footer);
		const struct tz_zone *z = find(db, name);
		if (!z)
			continue;
		struct tz_period p;
		tz_lookup(z, c->t, &p);
		CHECK(p.offset == c->offset && p.is_dst == c->is_dst && !strcmp(p.abbreviation, c->abbr),
		      "%s at %lld: %d %d %s, want %d %d %s", c->footer, (long long)c->t, p.offset, p.is_dst,
		      p.abbreviation, c->offset, c->is_dst, c->abbr);
	}
	tz_db_close(db);
	remove_tree(dir);
}

static void malformed_footers(void)
{
	static const char *const bad[] = {
		"EST",
		"5",
		"EST5EDT",
		"EST5EDT,M3.2.0",
		"EST5EDT,M13.2.0,M11.1.0",
		"EST5EDT,M3.6.0,M11.1.0",
		"EST5EDT,M3.2.7,M11.1.0",
		"EST5EDT,M3.2,M11.1.0",
		"EST5EDT,J0,J100",
		"EST5EDT,366,J100",
		"EST5EDT,M3.2.0/168,M11.1.0",
		"EST5EDT,M3.2.0/2:60,M11.1.0",
		"EST5EDT,M3.2.0,M11.1.0x",
		"EST5EDT,M3.2.0,M11.1.0,",
		"<EST5",
		"<E$T>5",
		"<>5",
		"EST25",
		"EST5:",
		"EST-",
		"ABCDEFGHIJKLMNOPQRSTUVWXYZABCDEFG5",
	};
	char dir[512];
	if (make_temp_dir(dir, sizeof dir) < 0)
		return;
	struct tz_db *db = tz_db_open(dir);
	for (size_t i = 0; i < COUNT_OF(bad); i++) {
		char name[32];
		snprintf(name, sizeof name, "Bad%zu", i);
		write_footer_zone(dir, name, bad[i]);
		char err[ERR_LEN] = "";
		CHECK(tz_find(db, name, err, sizeof err) == NULL, "footer \"%s\" was accepted", bad[i]);
		CHECK_CONTAINS(err, "malformed TZ footer", bad[i]);
		CHECK_CONTAINS(err, name, "the file is named");
	}
	tz_db_close(db);
	remove_tree(dir);
}

/* A version 1 file (32-bit times, no footer), and the rules zoneinfo follows around transitions:
 * before the first one, the first non-DST type (not type 0); after the last, its type. */
static void version_1_and_zoneinfo_edges(void)
{
	char dir[512];
	if (make_temp_dir(dir, sizeof dir) < 0)
		return;
	struct buf b = {0};
	put_header(&b, '\0', 2, 3, 12);
	put32(&b, 1000);
	put32(&b, 2000);
	buf_append(&b, "\2\1", 2);
	static const unsigned char types[] = {0, 0, 0x0e, 0x10, 1, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0x1c, 0x20, 0, 8};
	buf_append(&b, types, sizeof types);
	buf_append(&b, "DDD\0SSS\0TTT\0", 12);
	write_file(dir, "V1", b.data, b.len);
	struct tz_db *db = tz_db_open(dir);
	const struct tz_zone *z = find(db, "V1");
	if (z) {
		CHECK(tz_offset(z, 999, NULL, NULL) == 0 && !strcmp(tz_abbreviation(z, 999), "SSS"),
		      "before the first transition: %s", tz_abbreviation(z, 999));
		CHECK(!strcmp(tz_abbreviation(z, 1000), "TTT") && tz_offset(z, 1000, NULL, NULL) == 7200, "at 1000");
		CHECK(!strcmp(tz_abbreviation(z, 2000), "SSS"), "at 2000");
		CHECK(!strcmp(tz_abbreviation(z, INT64_MAX), "SSS"), "after the last transition");
		/* The local time 1000 + 1 is before the transition's wall time (1000 + 7200). */
		CHECK(tz_local_to_utc(z, 1001) == 1001, "local 1001 -> %lld", (long long)tz_local_to_utc(z, 1001));
		CHECK(tz_local_to_utc(z, 8300) == 1100, "local 8300 -> %lld", (long long)tz_local_to_utc(z, 8300));
	}
	tz_db_close(db);
	buf_free(&b);
	remove_tree(dir);
}

/* ---- hostile files ---- */

/* A zone that loaded from a damaged file must still answer sanely everywhere. */
static void check_plausible(const struct tz_zone *z, const char *what)
{
	static const int64_t ts[] = {INT64_MIN,    -(INT64_C(1) << 59), -5364662400LL, -2717650800LL, 0,
				     1647154800LL, 2147483647LL,        4118342400LL,  INT64_MAX};
	for (size_t i = 0; i < COUNT_OF(ts); i++) {
		struct tz_period p;
		tz_lookup(z, ts[i], &p);
		if (!CHECK(p.offset >= -89999 && p.offset <= 93599 && p.abbreviation && strlen(p.abbreviation) < 64,
			   "%s: at %lld offset %d", what, (long long)ts[i], p.offset))
			return;
		if (!CHECK(p.from <= ts[i] && (ts[i] < p.until || p.until == INT64_MAX), "%s: span at %lld", what,
			   (long long)ts[i]))
			return;
		if (p.from != INT64_MIN)
			CHECK(tz_offset(z, p.from, NULL, NULL) == p.offset, "%s: offset at the span's start", what);
		(void)tz_local_to_utc(z, ts[i]);
	}
}

/* Loads data (with tz_load, in a fresh db): NULL with the zone named in the error, or a zone that
 * answers sanely. Returns whether it loaded. */
static int load_damaged(const struct buf *data, const char *what)
{
	struct tz_db *db = tz_db_open("/nonexistent-tz-dir");
	char err[ERR_LEN] = "";
	const struct tz_zone *z = tz_load(db, "Damaged", data->data, data->len, err, sizeof err);
	if (z)
		check_plausible(z, what);
	else
		CHECK_CONTAINS(err, "cannot load time zone 'Damaged': ", what);
	tz_db_close(db);
	return z != NULL;
}

/* The same through a file: the error names the file. */
static void load_damaged_file(const char *dir, const struct buf *data, const char *what)
{
	if (write_file(dir, "Cut", data->data, data->len) < 0)
		return;
	struct tz_db *db = tz_db_open(dir);
	char err[ERR_LEN] = "";
	CHECK(tz_find(db, "Cut", err, sizeof err) == NULL, "%s: loaded", what);
	CHECK_CONTAINS(err, "/Cut", what);
	tz_db_close(db);
}

static void every_truncation_fails(void)
{
	struct buf whole = {0};
	char dir[512];
	if (access(SYSTEM_DIR "/America/New_York", R_OK) != 0) {
		test_skip("no tz database in " SYSTEM_DIR);
		return;
	}
	if (read_system_file("America/New_York", &whole) < 0 || make_temp_dir(dir, sizeof dir) < 0) {
		buf_free(&whole);
		return;
	}
	int loaded = 0;
	for (size_t len = 0; len < whole.len; len++) {
		struct buf cut = {whole.data, len, len};
		char what[64];
		snprintf(what, sizeof what, "cut to %zu bytes", len);
		loaded += load_damaged(&cut, what);
		if (len < 5 || len == 44 || len == whole.len / 2 || len + 1 == whole.len)
			load_damaged_file(dir, &cut, what);
	}
	CHECK(loaded == 0, "%d truncations of America/New_York loaded", loaded);
	CHECK(load_damaged(&whole, "whole"), "the whole file did not load");
	buf_free(&whole);
	remove_tree(dir);
}

static uint64_t next_random(uint64_t *state)
{
	*state ^= *state << 13;
	*state ^= *state >> 7;
	*state ^= *state << 17;
	return *state;
}

/* Random byte flips anywhere, then in the footer: no crash, NULL or sane answers. */
static void byte_flips_never_crash(void)
{
	struct buf whole = {0};
	if (access(SYSTEM_DIR "/America/New_York", R_OK) != 0) {
		test_skip("no tz database in " SYSTEM_DIR);
		return;
	}
	if (read_system_file("America/New_York", &whole) < 0) {
		buf_free(&whole);
		return;
	}
	uint64_t seed = 0x9e3779b97f4a7c15u;
	struct buf copy = {0};
	int loaded = 0;
	for (int round = 0; round < 20000; round++) {
		buf_clear(&copy);
		buf_append(&copy, whole.data, whole.len);
		size_t window = round < 14000 ? copy.len : 64; /* the last 6,000 rounds: the footer */
		int flips = 1 + (int)(next_random(&seed) % 3);
		for (int i = 0; i < flips; i++) {
			size_t at = copy.len - window + next_random(&seed) % window;
			copy.data[at] ^= (char)(1 + next_random(&seed) % 255);
		}
		char what[64];
		snprintf(what, sizeof what, "flip round %d", round);
		loaded += load_damaged(&copy, what);
	}
	/* Most flips land in the version 1 block, which is skipped, or in transition data. */
	CHECK(loaded > 3000 && loaded < 20000, "%d of 20,000 damaged files loaded", loaded);
	buf_free(&copy);
	buf_free(&whole);
}

static void absurd_counts(void)
{
	static const uint32_t counts[][3] = {
		{0xffffffffu, 1, 4}, {1, 0xffffffffu, 4}, {1, 1, 0xffffffffu}, {0, 0, 4}, {0, 300, 4}, {0, 1, 0},
	};
	for (size_t i = 0; i < COUNT_OF(counts); i++) {
		struct buf b = {0};
		put_header(&b, '2', 0, 1, 1);
		buf_append(&b, "\0\0\0\0\0\0\0", 7);
		put_header(&b, '2', counts[i][0], counts[i][1], counts[i][2]);
		buf_append(&b, "\0\0\0\0\0\0UTC\0\nUTC0\n", 16);
		CHECK(!load_damaged(&b, "absurd counts"), "counts %zu loaded", i);
		buf_free(&b);
	}
	/* Transitions out of order, and to a type that does not exist. */
	struct tzif_spec order = {
		.footer = "EST5", .ntypes = 1, .types = {{-18000, 0, "EST"}}, .ntrans = 2, .trans = {2000, 1000}};
	struct tzif_spec undefined = {.footer = "EST5",
				      .ntypes = 1,
				      .types = {{-18000, 0, "EST"}},
				      .ntrans = 1,
				      .trans = {1000},
				      .type_of = {1}};
	struct tzif_spec offset = {.footer = "EST5", .ntypes = 1, .types = {{100000, 0, "EST"}}};
	const struct tzif_spec *specs[] = {&order, &undefined, &offset};
	for (size_t i = 0; i < COUNT_OF(specs); i++) {
		struct buf b = {0};
		tzif_build(specs[i], &b);
		CHECK(!load_damaged(&b, "bad data"), "bad data %zu loaded", i);
		buf_free(&b);
	}
}

/* tz_load: the checks of tz_find, on bytes. */
static void loading_from_memory(void)
{
	struct tzif_spec spec = {.footer = "<+0530>-5:30", .ntypes = 1, .types = {{19800, 0, "+0530"}}};
	struct buf b = {0};
	tzif_build(&spec, &b);
	struct tz_db *db = tz_db_open("/nonexistent-tz-dir");
	char err[ERR_LEN] = "";
	const struct tz_zone *z = tz_load(db, "Mem/Zone", b.data, b.len, err, sizeof err);
	CHECK(z && tz_offset(z, 0, NULL, NULL) == 19800, "tz_load: %s", err);
	CHECK(tz_find(db, "Mem/Zone", err, sizeof err) == z, "tz_find does not find the loaded zone");
	CHECK(tz_load(db, "Mem/Zone", b.data, b.len, err, sizeof err) == NULL, "a name loaded twice");
	CHECK_CONTAINS(err, "already loaded", "twice");
	CHECK(tz_load(db, "../Mem", b.data, b.len, err, sizeof err) == NULL, "a refused name loaded");
	CHECK(tz_load(db, "Text", "hello", 5, err, sizeof err) == NULL, "text loaded");
	CHECK_CONTAINS(err, "not TZif data", "text");
	CHECK(tz_load(db, "Huge", b.data, TZ_FILE_MAX + 1, NULL, 0) == NULL, "over 1 MB loaded");
	tz_db_close(db);
	buf_free(&b);
}

static void huge_files_directories_and_fifos(void)
{
	char dir[512];
	if (make_temp_dir(dir, sizeof dir) < 0)
		return;
	size_t len = TZ_FILE_MAX + 10;
	char *big = calloc(1, len);
	if (big) {
		memcpy(big, "TZif2", 5);
		write_file(dir, "Big", big, len);
		free(big);
	}
	char path[600];
	snprintf(path, sizeof path, "%s/Sub", dir);
	mkdir(path, 0755);
	snprintf(path, sizeof path, "%s/Pipe", dir);
	int fifo = mkfifo(path, 0644);
	struct tz_db *db = tz_db_open(dir);
	char err[ERR_LEN] = "";
	CHECK(tz_find(db, "Big", err, sizeof err) == NULL, "a file over 1 MB loaded");
	CHECK_CONTAINS(err, "larger than 1 MB", "big");
	CHECK_CONTAINS(err, "/Big", "big");
	CHECK(tz_find(db, "Sub", err, sizeof err) == NULL, "a directory loaded");
	CHECK_CONTAINS(err, "unknown time zone 'Sub'", "directory");
	if (fifo == 0) {
		CHECK(tz_find(db, "Pipe", err, sizeof err) == NULL, "a FIFO loaded");
		CHECK_CONTAINS(err, "not a regular file", "fifo");
	}
	tz_db_close(db);
	remove_tree(dir);
}

static const struct test tz_tests[] = {
	{"instants match zoneinfo", instants_match_zoneinfo},
	{"spans are the zone's transitions", spans_are_transitions},
	{"a cached span skips lookups", span_cache_skips_lookups},
	{"local times resolve as zoneinfo's fold=0", local_times_resolve_as_zoneinfo},
	{"the ends of int64", ends_of_int64},
	{"UTC without a database", utc_without_a_database},
	{"$TZDIR is the default directory", tzdir_is_the_default},
	{"zones load once", zones_load_once},
	{"unknown names get suggestions", unknown_names_get_suggestions},
	{"refused names", refused_names},
	{"footer rules", footer_rules},
	{"malformed footers", malformed_footers},
	{"a version 1 file, zoneinfo's edges", version_1_and_zoneinfo_edges},
	{"every truncation fails", every_truncation_fails},
	{"byte flips never crash", byte_flips_never_crash},
	{"absurd counts", absurd_counts},
	{"loading from memory", loading_from_memory},
	{"huge files, directories and FIFOs", huge_files_directories_and_fifos},
};

const struct suite tz_suite = {"tz", tz_tests, COUNT_OF(tz_tests), NULL, NULL, NULL};
