/* pool: worker threads for pure C work that must not touch Lua (mapping a page's records), so
 * that the main thread keeps the network busy and writes messages meanwhile. */
#ifndef SOURCE_LUA_POOL_H
#define SOURCE_LUA_POOL_H

struct pool_job {
	void (*run)(struct pool_job *job);
	struct pool_job *next;
	int queued; /* submitted and not yet waited for */
	int done;   /* read and written under the pool's lock */
};

/* The workers' thread name (at most 15 bytes, Linux's limit). */
#define POOL_THREAD_NAME "source-lua-walk"

/* Starts up to threads workers (0 or failure: none; jobs then run in pool_submit). */
void pool_start(int threads);
/* Runs what is queued, then stops the workers. */
void pool_stop(void);
int pool_running(void);
/* How many workers run (0 when none). */
int pool_threads(void);

/* Runs job->run(job) on a worker, or at once when no worker runs. */
void pool_submit(struct pool_job *job);
/* Whether the job has finished (its results may be read). */
int pool_job_done(struct pool_job *job);
/* Blocks until the job has finished. */
void pool_wait(struct pool_job *job);

/* A descriptor that becomes readable when a job finishes (-1 when no worker runs), and the call
 * that empties it before looking for finished jobs. */
int pool_done_fd(void);
void pool_drain_done_fd(void);

#endif
