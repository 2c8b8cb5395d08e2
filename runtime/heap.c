/*
 * heap: glibc malloc's settings for the process, and the sync's heap in huge pages.
 *
 * A sync moves ~10 MB of answers and ~25 MB of records through buffers of a few hundred KB
 * each: per page, the answer, its records, curl's reads. Reused, they stay a few MB, but every
 * 4 KB of them the first time costs a page fault (~1,100 of a 40-ticker sync's ~2,000; the
 * rest is the loader mapping libcurl's libraries) and work again in the kernel at exit. Backed
 * by 2 MB pages, the same heap is a handful of faults. glibc does this itself with
 * GLIBC_TUNABLES=glibc.malloc.hugetlb=1, but a tunable is read from the environment at start-up
 * only, and the image's users should not have to set it: this is its effect, done from main()
 * before any thread starts.
 *
 * Not owned here: what is allocated, and when.
 */
#define _DEFAULT_SOURCE
#include "heap.h"

#include <malloc.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

/* The heap a sync is given at once (untouched, it costs nothing): enough for 8 transfers and
 * the pages being walked with room to spare. A sync that needs more grows past it in 4 KB
 * pages, as before. */
#define SYNC_HEAP_BYTES (16u << 20)
#define HUGE_PAGE_BYTES ((uintptr_t)2 << 20)

/* Every page brings buffers of a few hundred KB (the answer, its Lua string, its records), which
 * glibc would mmap and munmap each time, paying a page fault per 4 KB on every page; kept in
 * the heap, they are reused instead. The peak stays what the largest page needs. */
void heap_keep_freed_memory(void)
{
#ifdef M_MMAP_THRESHOLD
	mallopt(M_MMAP_THRESHOLD, 64 << 20);
	mallopt(M_TRIM_THRESHOLD, 128 << 20);
#endif
}

void heap_prepare_for_sync(void)
{
#if defined(M_ARENA_MAX) && defined(MADV_HUGEPAGE)
	/* One arena: the walk's threads allocate a few times a page, and their buffers are freed by
	 * the main thread anyway; in an arena of their own (a separate mapping) they would miss the
	 * huge pages below. */
	mallopt(M_ARENA_MAX, 1);
	heap_keep_freed_memory(); /* else the room below would be a mapping of its own, gone when freed */
	/* Below the mmap threshold, this comes from the top of the heap, which it extends; freed, it
	 * stays there (the trim threshold is above it) as the room the sync's buffers are cut from.
	 * Only malloc's own header is written, so nothing is touched yet. */
	char *room = malloc(SYNC_HEAP_BYTES);
	if (!room)
		return;
	uintptr_t from = ((uintptr_t)room + HUGE_PAGE_BYTES - 1) & ~(HUGE_PAGE_BYTES - 1);
	uintptr_t to = ((uintptr_t)room + SYNC_HEAP_BYTES) & ~(HUGE_PAGE_BYTES - 1);
	/* Advice only: where transparent huge pages are off, or madvise fails, the heap is as it
	 * was. */
	if (to > from)
		(void)madvise((void *)from, to - from, MADV_HUGEPAGE);
	free(room);
#endif
}
