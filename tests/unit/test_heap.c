/*
 * heap: a sync's heap is advised into huge pages (where glibc's malloc is the one in use), and
 * freed buffers stay in it.
 */
#define _DEFAULT_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "heap.h"

#define MB ((size_t)1 << 20)

/* The kernel gives huge pages to memory that asks for them (THP "always" or "madvise"). */
static int huge_pages_on_advice(void)
{
	char line[128] = "";
	FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
	if (!f)
		return 0;
	if (!fgets(line, sizeof line, f))
		line[0] = '\0';
	fclose(f);
	return strstr(line, "[always]") || strstr(line, "[madvise]");
}

/* Whether malloc is glibc's; where it is not (ASan and valgrind bring their own, which glibc's
 * settings do not reach), the test is marked skipped. */
static int glibc_malloc_or_skip(void)
{
#ifdef __SANITIZE_ADDRESS__
	int glibc = 0;
#else
	const char *preload = getenv("LD_PRELOAD");
	int glibc = !(preload && strstr(preload, "vgpreload"));
#endif
	if (!glibc)
		test_skip("malloc is not glibc's here (ASan, valgrind)");
	return glibc;
}

/* Copies the name (what follows its inode, "" for none) and the VmFlags of the mapping that
 * holds address; both "" when no mapping does. */
static void mapping_of(uintptr_t address, char *name, char *flags, size_t len)
{
	name[0] = flags[0] = '\0';
	FILE *f = fopen("/proc/self/smaps", "r");
	if (!f)
		return;
	char line[512];
	int inside = 0;
	while (fgets(line, sizeof line, f)) {
		unsigned long from, to;
		int named_at = 0;
		if (sscanf(line, "%lx-%lx %*s %*s %*s %*s %n", &from, &to, &named_at) == 2 && named_at > 0) {
			inside = address >= from && address < to;
			if (inside)
				snprintf(name, len, "%.*s", (int)strcspn(line + named_at, "\n"), line + named_at);
		} else if (inside && !strncmp(line, "VmFlags:", 8)) {
			snprintf(flags, len, "%.*s", (int)strcspn(line + 8, "\n"), line + 8);
			break;
		}
	}
	fclose(f);
}

/* Runs check in a child, so that this process's heap is left as it was; its exit status is the
 * test's (0: held). */
static int in_child(int (*check)(void))
{
	fflush(NULL);
	pid_t child = fork();
	if (child < 0)
		return -1;
	if (child == 0)
		_exit(check());
	int status = 0;
	if (waitpid(child, &status, 0) != child || !WIFEXITED(status))
		return -1;
	return WEXITSTATUS(status);
}

/* A buffer cut after heap_prepare_for_sync lies in a mapping advised into huge pages (smaps
 * flag "hg"). 0 advised, 1 not, 2 no memory. */
static int buffer_in_huge_pages(void)
{
	heap_prepare_for_sync();
	char *buffer = malloc(6 * MB);
	if (!buffer)
		return 2;
	memset(buffer, 1, 6 * MB);
	/* The byte 3 MB in lies in a whole advised 2 MB page, wherever the buffer starts. */
	char name[512], flags[512];
	mapping_of((uintptr_t)buffer + 3 * MB, name, flags, sizeof flags);
	free(buffer);
	return strstr(flags, " hg") ? 0 : 1;
}

static void sync_heap_in_huge_pages(void)
{
	if (!glibc_malloc_or_skip())
		return;
	if (!huge_pages_on_advice()) {
		test_skip("transparent huge pages are off on this kernel");
		return;
	}
	int status = in_child(buffer_in_huge_pages);
	CHECK(status == 0, "a 6 MB buffer after heap_prepare_for_sync is not in huge pages (child: %d)", status);
}

/* A 600 KB buffer, above glibc's default mmap threshold (128 KB), is cut from the heap instead
 * of mapped apart: freed, it stays there for the next page. 0 in the heap, 1 not, 2 no memory. */
static int buffer_in_heap(void)
{
	heap_keep_freed_memory();
	char *buffer = malloc(600 * 1024);
	if (!buffer)
		return 2;
	char name[512], flags[512];
	mapping_of((uintptr_t)buffer, name, flags, sizeof flags);
	free(buffer);
	return strcmp(name, "[heap]") ? 1 : 0;
}

static void freed_buffers_stay_in_heap(void)
{
	if (!glibc_malloc_or_skip())
		return;
	int status = in_child(buffer_in_heap);
	CHECK(status == 0, "a 600 KB buffer is not in the heap after heap_keep_freed_memory (child: %d)", status);
}

static const struct test tests[] = {
	{"a sync's buffers come from huge pages where the kernel allows it", sync_heap_in_huge_pages},
	{"buffers of a few hundred KB come from the heap, not mappings of their own", freed_buffers_stay_in_heap},
};

const struct suite heap_suite = {"heap", tests, COUNT_OF(tests), NULL, NULL, NULL};
