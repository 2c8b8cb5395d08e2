/*
 * tz-probe: answers time zone queries from stdin with runtime/tz.c, one line out per line in, so
 * that tests/tz/test_tz_zoneinfo.py can compare every zone with Python's zoneinfo in one process.
 *
 *   offset ZONE EPOCH   ->  OFFSET IS_DST ABBREVIATION FROM UNTIL   (tz_lookup at a UTC instant)
 *   local ZONE LOCAL    ->  UTC                                     (tz_local_to_utc)
 *   find ZONE           ->  ok | error MESSAGE
 *
 * An unknown zone in offset/local answers "error MESSAGE". The database is $TZDIR or the system's.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tz.h"

#define LINE_MAX_LEN 1024

struct probe {
	struct tz_db *db;
	const struct tz_zone *zone; /* the last zone asked for: queries come in runs of one zone */
	char err[256];
};

static const struct tz_zone *zone_named(struct probe *p, const char *name)
{
	if (p->zone && !strcmp(tz_zone_name(p->zone), name))
		return p->zone;
	p->zone = tz_find(p->db, name, p->err, sizeof p->err);
	return p->zone;
}

static void answer(struct probe *p, const char *cmd, const char *name, const char *number)
{
	const struct tz_zone *z = zone_named(p, name);
	if (!z) {
		printf("error %s\n", p->err);
		return;
	}
	if (!strcmp(cmd, "find")) {
		printf("ok\n");
		return;
	}
	char *end;
	int64_t v = number ? (int64_t)strtoll(number, &end, 10) : 0;
	if (!number || *end) {
		printf("error bad number\n");
		return;
	}
	if (!strcmp(cmd, "local")) {
		printf("%" PRId64 "\n", tz_local_to_utc(z, v));
		return;
	}
	struct tz_period at;
	tz_lookup(z, v, &at);
	printf("%" PRId32 " %d %s %" PRId64 " %" PRId64 "\n", at.offset, at.is_dst, at.abbreviation, at.from, at.until);
}

int main(void)
{
	struct probe p = {tz_db_open(NULL), NULL, ""};
	if (!p.db)
		return 1;
	char line[LINE_MAX_LEN];
	while (fgets(line, sizeof line, stdin)) {
		line[strcspn(line, "\r\n")] = '\0';
		char *save = NULL;
		const char *cmd = strtok_r(line, " ", &save);
		const char *name = cmd ? strtok_r(NULL, " ", &save) : NULL;
		const char *number = name ? strtok_r(NULL, " ", &save) : NULL;
		if (!cmd || !name || (strcmp(cmd, "offset") && strcmp(cmd, "local") && strcmp(cmd, "find")))
			printf("error bad query\n");
		else
			answer(&p, cmd, name, number);
	}
	tz_db_close(p.db);
	return fflush(stdout) == 0 ? 0 : 1;
}
