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
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <unistd.h>

#define MAX_THREADS 16

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t work_ready = PTHREAD_COND_INITIALIZER;
static pthread_cond_t work_done = PTHREAD_COND_INITIALIZER;
static struct pool_job *head, *tail;
static pthread_t threads[MAX_THREADS];
static int nthreads;
static int stopping;
static int done_fd = -1;

/* A nice value is per thread on Linux; failing to lower one's own priority only costs speed. */
#define WORKER_NICE 10

static void *worker(void *unused)
{
	(void)unused;
	(void)setpriority(PRIO_PROCESS, (id_t)gettid(), WORKER_NICE);
	pthread_mutex_lock(&lock);
	for (;;) {
		while (!head && !stopping)
			pthread_cond_wait(&work_ready, &lock);
		if (!head)
			break; /* stopping, and nothing is left to run */
		struct pool_job *job = head;
		head = job->next;
		if (!head)
			tail = NULL;
		pthread_mutex_unlock(&lock);
		job->run(job);
		pthread_mutex_lock(&lock);
		job->done = 1;
		pthread_cond_broadcast(&work_done);
		uint64_t one = 1;
		if (write(done_fd, &one, sizeof one) < 0) {
			/* The counter cannot overflow in practice; a missed wake-up only delays. */
		}
	}
	pthread_mutex_unlock(&lock);
	return NULL;
}

void pool_start(int count)
{
	if (nthreads || count <= 0)
		return;
	done_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (done_fd < 0)
		return;
	stopping = 0;
	/* Workers block every signal, so that SIGTERM, SIGPIPE and the CPU watchdog's timer reach the
	 * main thread, which is the one that acts on them. */
	sigset_t all, saved;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &saved);
	for (int i = 0; i < count && i < MAX_THREADS; i++) {
		if (pthread_create(&threads[i], NULL, worker, NULL))
			break;
		/* So that top -H, perf --comm and gdb tell the walk from the main thread. */
		pthread_setname_np(threads[i], POOL_THREAD_NAME);
		nthreads++;
	}
	pthread_sigmask(SIG_SETMASK, &saved, NULL);
	if (!nthreads) {
		close(done_fd);
		done_fd = -1;
	}
}

void pool_stop(void)
{
	if (!nthreads)
		return;
	pthread_mutex_lock(&lock);
	stopping = 1;
	pthread_cond_broadcast(&work_ready);
	pthread_mutex_unlock(&lock);
	for (int i = 0; i < nthreads; i++)
		pthread_join(threads[i], NULL);
	nthreads = 0;
	close(done_fd);
	done_fd = -1;
}

int pool_running(void)
{
	return nthreads > 0;
}

int pool_threads(void)
{
	return nthreads;
}

void pool_submit(struct pool_job *job)
{
	job->next = NULL;
	job->queued = 1;
	job->done = 0;
	if (!nthreads) {
		job->run(job);
		job->done = 1;
		return;
	}
	pthread_mutex_lock(&lock);
	if (tail)
		tail->next = job;
	else
		head = job;
	tail = job;
	pthread_cond_signal(&work_ready);
	pthread_mutex_unlock(&lock);
}

int pool_job_done(struct pool_job *job)
{
	pthread_mutex_lock(&lock);
	int done = job->done;
	pthread_mutex_unlock(&lock);
	return done;
}

void pool_wait(struct pool_job *job)
{
	pthread_mutex_lock(&lock);
	while (!job->done)
		pthread_cond_wait(&work_done, &lock);
	pthread_mutex_unlock(&lock);
}

int pool_done_fd(void)
{
	return done_fd;
}

void pool_drain_done_fd(void)
{
	uint64_t count;
	if (done_fd >= 0 && read(done_fd, &count, sizeof count) < 0) {
		/* EAGAIN: nothing finished since the last drain. */
	}
}
