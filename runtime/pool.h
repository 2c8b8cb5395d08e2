/* pool: worker threads for pure C work that must not touch Lua (mapping a page's records), so
 * that the main thread keeps the network busy and writes messages meanwhile. */
#ifndef SOURCE_LUA_POOL_H
#define SOURCE_LUA_POOL_H

#include <pthread.h>

#define POOL_MAX_THREADS 16

struct pool_job {
	void (*run)(struct pool_job *job);
	struct pool *pool; /* set by pool_submit */
	struct pool_job *next;
	int queued; /* ever submitted (a job never submitted needs no waiting for) */
	int done;   /* read and written under the pool's lock */
};

/* The workers' thread name (at most 15 bytes, Linux's limit). */
#define POOL_THREAD_NAME "source-lua-walk"

/* The workers and their queue; one per run (struct runtime). */
struct pool {
	pthread_mutex_t lock;
	pthread_cond_t work_ready, work_done;
	struct pool_job *head, *tail;
	pthread_t threads[POOL_MAX_THREADS];
	int nthreads;
	int stopping;
	int done_fd;
};

void pool_init(struct pool *p);
/* Stops the workers and frees what pool_init made. */
void pool_destroy(struct pool *p);
/* Starts up to threads workers (0 or failure: none; jobs then run in pool_submit). */
void pool_start(struct pool *p, int threads);
/* Runs what is queued, then stops the workers. */
void pool_stop(struct pool *p);
int pool_running(const struct pool *p);
/* How many workers run (0 when none). */
int pool_threads(const struct pool *p);

/* Runs job->run(job) on a worker, or at once when no worker runs. */
void pool_submit(struct pool *p, struct pool_job *job);
/* Whether the job has finished (its results may be read). */
int pool_job_done(struct pool_job *job);
/* Blocks until the job has finished. */
void pool_wait(struct pool_job *job);

/* A descriptor that becomes readable when a job finishes (-1 when no worker runs), and the call
 * that empties it before looking for finished jobs. */
int pool_done_fd(const struct pool *p);
void pool_drain_done_fd(const struct pool *p);

#endif
