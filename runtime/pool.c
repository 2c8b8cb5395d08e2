/*
 * pool: a few worker threads and one FIFO of jobs.
 *
 * Only pure C work runs here: the Lua state belongs to the main thread alone. A job's owner keeps
 * it alive until pool_job_done says it finished, and waits for it (pool_wait) before freeing it.
 * Completion is signalled on an eventfd so that the main thread can sleep in curl_multi_poll or
 * poll and wake for either a network event or a finished job.
 *
 * Workers run at a lower priority than the main thread: the main thread drives the transfers,
 * and a worker woken for a page must not take its core while an answer waits to be read (a sync
 * on two cores was ~1-2 ms faster in 30 alternating runs). They still get every core the main
 * thread leaves, which is most of the time: it mostly waits for the network.
 */
#define _GNU_SOURCE
#include "pool.h"

#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <unistd.h>

/* A nice value is per thread on Linux; failing to lower one's own priority only costs speed. */
#define WORKER_NICE 10

static void *worker(void *arg)
{
	struct pool *p = arg;
	(void)setpriority(PRIO_PROCESS, (id_t)gettid(), WORKER_NICE);
	pthread_mutex_lock(&p->lock);
	for (;;) {
		while (!p->head && !p->stopping)
			pthread_cond_wait(&p->work_ready, &p->lock);
		if (!p->head)
			break; /* stopping, and nothing is left to run */
		struct pool_job *job = p->head;
		p->head = job->next;
		if (!p->head)
			p->tail = NULL;
		pthread_mutex_unlock(&p->lock);
		job->run(job);
		pthread_mutex_lock(&p->lock);
		job->done = 1;
		pthread_cond_broadcast(&p->work_done);
		uint64_t one = 1;
		if (write(p->done_fd, &one, sizeof one) < 0) {
			/* The counter cannot overflow in practice; a missed wake-up only delays. */
		}
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

void pool_init(struct pool *p)
{
	memset(p, 0, sizeof *p);
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->work_ready, NULL);
	pthread_cond_init(&p->work_done, NULL);
	p->done_fd = -1;
}

void pool_destroy(struct pool *p)
{
	pool_stop(p);
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->work_ready);
	pthread_cond_destroy(&p->work_done);
}

void pool_start(struct pool *p, int count)
{
	if (p->nthreads || count <= 0)
		return;
	p->done_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (p->done_fd < 0)
		return;
	p->stopping = 0;
	/* Workers block every signal, so that SIGTERM, SIGPIPE and the CPU watchdog's timer reach the
	 * main thread, which is the one that acts on them. */
	sigset_t all, saved;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &saved);
	for (int i = 0; i < count && i < POOL_MAX_THREADS; i++) {
		if (pthread_create(&p->threads[i], NULL, worker, p))
			break;
		/* So that top -H, perf --comm and gdb tell the walk from the main thread. */
		pthread_setname_np(p->threads[i], POOL_THREAD_NAME);
		p->nthreads++;
	}
	pthread_sigmask(SIG_SETMASK, &saved, NULL);
	if (!p->nthreads) {
		close(p->done_fd);
		p->done_fd = -1;
	}
}

void pool_stop(struct pool *p)
{
	if (!p->nthreads)
		return;
	pthread_mutex_lock(&p->lock);
	p->stopping = 1;
	pthread_cond_broadcast(&p->work_ready);
	pthread_mutex_unlock(&p->lock);
	for (int i = 0; i < p->nthreads; i++)
		pthread_join(p->threads[i], NULL);
	p->nthreads = 0;
	close(p->done_fd);
	p->done_fd = -1;
}

int pool_running(const struct pool *p)
{
	return p->nthreads > 0;
}

int pool_threads(const struct pool *p)
{
	return p->nthreads;
}

void pool_submit(struct pool *p, struct pool_job *job)
{
	job->pool = p;
	job->next = NULL;
	job->queued = 1;
	job->done = 0;
	if (!p->nthreads) {
		job->run(job);
		job->done = 1;
		return;
	}
	pthread_mutex_lock(&p->lock);
	if (p->tail)
		p->tail->next = job;
	else
		p->head = job;
	p->tail = job;
	pthread_cond_signal(&p->work_ready);
	pthread_mutex_unlock(&p->lock);
}

int pool_job_done(struct pool_job *job)
{
	struct pool *p = job->pool;
	pthread_mutex_lock(&p->lock);
	int done = job->done;
	pthread_mutex_unlock(&p->lock);
	return done;
}

void pool_wait(struct pool_job *job)
{
	struct pool *p = job->pool;
	pthread_mutex_lock(&p->lock);
	while (!job->done)
		pthread_cond_wait(&p->work_done, &p->lock);
	pthread_mutex_unlock(&p->lock);
}

int pool_done_fd(const struct pool *p)
{
	return p->done_fd;
}

void pool_drain_done_fd(const struct pool *p)
{
	uint64_t count;
	if (p->done_fd >= 0 && read(p->done_fd, &count, sizeof count) < 0) {
		/* EAGAIN: nothing finished since the last drain. */
	}
}
