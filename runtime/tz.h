/* tz: IANA time zones read from the system's tz database (TZif files, RFC 8536). */
#ifndef SOURCE_LUA_TZ_H
#define SOURCE_LUA_TZ_H

#include <stddef.h>
#include <stdint.h>

struct tz_db;   /* the zones loaded so far; one per process, owned by the runtime; tz_find is not thread-safe */
struct tz_zone; /* one zone, immutable once loaded: every lookup below is safe from any thread */

/* What a zone's clocks show over [from, until) (INT64_MIN / INT64_MAX for open ends); the
 * abbreviation lives as long as the db. */
struct tz_period {
	int32_t offset; /* local = utc + offset, in seconds */
	int is_dst;
	const char *abbreviation;
	int64_t from;
	int64_t until;
};

/* The largest TZif file read (the biggest in tzdata is ~3 KB). */
#define TZ_FILE_MAX ((size_t)1 << 20)

struct tz_db *
tz_db_open(const char *dir);        /* dir NULL: $TZDIR, else /usr/share/zoneinfo; NULL only when out of memory */
void tz_db_close(struct tz_db *db); /* frees every zone it loaded */

/* Finds or loads the zone called name ("UTC", "Europe/London", "America/New_York", links such as
 * "US/Eastern"): the names the database has, and "UTC", which works even when no tz database is
 * installed. Unknown or unreadable: NULL, and err (may be NULL) gets one sentence that
 * names the zone and, for an unknown one, up to three closest valid names by edit distance, e.g.
 * "unknown time zone 'Europe/Londn' (did you mean Europe/London, Europe/Lisbon or Europe/Minsk?)";
 * a damaged file's sentence names the file and what is wrong with it. A name with "..", a leading
 * '/', or characters outside [A-Za-z0-9/_+-] is refused without touching the disk. */
const struct tz_zone *tz_find(struct tz_db *db, const char *name, char *err, size_t errlen);
const char *tz_zone_name(const struct tz_zone *z);
/* Adds a zone called name from TZif bytes in memory (a test's damaged file), with
 * tz_find's checks; NULL, and err, when the name is refused or taken or the data is not a zone. */
const struct tz_zone *tz_load(struct tz_db *db, const char *name, const void *data, size_t len, char *err,
			      size_t errlen);

/* Offset from UTC in seconds (local = utc + offset) at the UTC instant t (epoch seconds, any int64
 * that keeps the result representable; years -9999..9999 at least). When from/until are not NULL
 * they get the instants [from, until) around t over which the offset is the same (callers cache
 * it: a page of 2,500 daily bars asks for each bar, so a cached span skips most lookups).
 * INT64_MIN / INT64_MAX for open ends. The span is one over which DST flag and abbreviation stay
 * the same too; it can end where only they change. */
int32_t tz_offset(const struct tz_zone *z, int64_t t, int64_t *from, int64_t *until);
/* Whether t is in daylight-saving time, and its abbreviation ("EST", "BST", "+0330"), for %Z. */
int tz_is_dst(const struct tz_zone *z, int64_t t);
const char *tz_abbreviation(const struct tz_zone *z, int64_t t);
/* All of the above in one lookup. */
void tz_lookup(const struct tz_zone *z, int64_t t, struct tz_period *out);

/* The UTC instant of a local wall-clock time, given as seconds since 1970-01-01T00:00 in local
 * reckoning. Ambiguous and skipped times resolve as Python's zoneinfo does with fold=0: a repeated
 * time (fall back) is its first occurrence; a skipped time (spring forward) uses the offset in
 * effect before the gap. */
int64_t tz_local_to_utc(const struct tz_zone *z, int64_t local);

#endif
