/* heap: how malloc's heap is set up for the process; nothing else. */
#ifndef SOURCE_LUA_HEAP_H
#define SOURCE_LUA_HEAP_H

/* Freed buffers stay in the heap to be reused (every command). */
void heap_keep_freed_memory(void);
/* For a sync, before any thread starts: heap_keep_freed_memory, and one heap for all threads,
 * backed by huge pages where the kernel grants them. */
void heap_prepare_for_sync(void);

#endif
