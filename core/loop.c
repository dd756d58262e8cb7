/* loop.c - the request loop: a pool of worker threads that take turns at /dev/fuse, the one
 * whose turn it is polling the device for a short while before it sleeps.
 *
 * Why: every FUSE request is a round trip between the process that made the system call and a
 * server thread. When the server thread sleeps in read(), the kernel has to wake it, and waking
 * a thread on another CPU costs an inter-processor interrupt; in a virtual machine without halt
 * polling that is a VM exit on both sides, 15-20 us, several times the work the request itself
 * needs. A server thread that is already running when the request is queued takes it at once.
 * So the receiving thread reads the device non-blocking for up to spin_us before it sleeps in
 * poll(); a burst of requests (a directory walk, an untar) never has to wake it. Measured on a
 * 2-vCPU guest: 19 us per GETXATTR round trip with libfuse's loop, 9-11 us with this one
 * (docs/performance.md).
 *
 * Two modes, switched by the share of recent requests that came within spin_us of the one
 * before (above 7/8: hot; below 3/4: cold):
 * - hot (a burst: a walk, ls -l, an untar): one thread at a time receives (the receive lock),
 *   reading the device non-blocking and yielding between reads, up to the spin window, before
 *   it sleeps in poll(); it gives up the lock as soon as it holds a request, so the next idle
 *   worker takes over receiving while it works. Only the receiver waits on the device, so a
 *   request queued while it spins wakes nobody.
 * - cold (requests further apart, as reads that wait on the disk; always with spin=0): every
 *   idle worker blocks in read() on the device, as in libfuse's own loop; the kernel wakes one per
 *   request and there is no hand-over between workers, which would cost a second wake-up.
 * Workers are started on demand, up to max_threads, when a request arrives and no worker is
 * waiting to receive: a slow request (a cold read, an fsync, a copy-up) never holds up others.
 *
 * Ending: SIGTERM, SIGINT and SIGHUP (libfuse's handlers end the session) are blocked in the
 * workers and reach only the main thread, which does nothing but wait for the end of the
 * session (a signal, or a worker that read ENODEV after an unmount). It then cancels the
 * workers still waiting for requests (cancellation is enabled only there; the others see the
 * end before they wait again) and joins them all. */
#include "ovl.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

/* The share of requests that come within spin_us of the one before, a moving average over
 * about the last 16 (fixed point, SHARE_ONE = all of them): the loop turns hot above
 * HOT_SHARE, cold below COLD_SHARE. */
#define SHARE_ONE 1024
#define HOT_SHARE (SHARE_ONE * 7 / 8)
#define COLD_SHARE (SHARE_ONE * 3 / 4)

struct ovl_loop {
	struct fuse_session *se;
	int fd;
	long spin_max_ns; /* spin= */
	atomic_bool hot; /* the device is O_NONBLOCK and workers take turns */
	atomic_llong last_request; /* CLOCK_MONOTONIC ns of the latest request received */
	atomic_int close_share; /* SHARE_ONE: every recent request came close to the last */
	unsigned max_threads;
	pthread_mutex_t recv_lock; /* hot: held by the thread whose turn it is to receive */
	pthread_mutex_t lock; /* guards the counters and the thread list below */
	unsigned nthreads;
	atomic_uint waiting; /* workers waiting for a request (queued on recv_lock or receiving) */
	int error;
	sem_t ended;
	pthread_t threads[OVL_LOOP_MAX_THREADS];
};

static long long now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void set_mode(struct ovl_loop *l, bool hot)
{
	int fl = fcntl(l->fd, F_GETFL);
	if (fl < 0 || fcntl(l->fd, F_SETFL, hot ? fl | O_NONBLOCK : fl & ~O_NONBLOCK) < 0)
		return; /* stay as we are */
	atomic_store(&l->hot, hot);
}

/* A request received now: how close it came to the one before decides the mode. Several
 * workers may update the share at once in cold mode; a lost update only blurs the average. */
static void note_request(struct ovl_loop *l)
{
	long long t = now_ns();
	long long gap = t - atomic_exchange(&l->last_request, t);
	int share = atomic_load_explicit(&l->close_share, memory_order_relaxed);
	share += ((gap <= l->spin_max_ns ? SHARE_ONE : 0) - share) / 16;
	atomic_store_explicit(&l->close_share, share, memory_order_relaxed);
	bool hot = atomic_load_explicit(&l->hot, memory_order_relaxed);
	if (!hot && share > HOT_SHARE)
		set_mode(l, true);
	else if (hot && share < COLD_SHARE)
		set_mode(l, false);
}

static void unlock_recv(void *arg)
{
	pthread_mutex_unlock(arg);
}

/* Hot: with recv_lock held. > 0 a request, 0 the session ended, < 0 an error. */
static int receive_hot(struct ovl_loop *l, struct fuse_buf *buf)
{
	long long start = now_ns();
	bool slept = false;
	for (;;) {
		if (fuse_session_exited(l->se))
			return 0;
		int res = fuse_session_receive_buf(l->se, buf);
		if (res > 0) {
			note_request(l);
			return res;
		}
		if (res != -EAGAIN && res != -EINTR)
			return res;
		if (res == -EAGAIN && !slept && now_ns() - start < l->spin_max_ns) {
			/* let a runnable task on this CPU (the client, often) go first */
			sched_yield();
			continue;
		}
		/* sleep until a request */
		struct pollfd pfd = { .fd = l->fd, .events = POLLIN };
		pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, NULL);
		int r = poll(&pfd, 1, -1);
		int e = errno;
		pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
		if (r < 0 && e != EINTR)
			return -e;
		slept = true;
	}
}

/* Cold: a blocking read, as libfuse's loop does. > 0 a request, 0 the session ended, -EAGAIN
 * or -EINTR nothing (the loop turned hot, a signal), < 0 an error. */
static int receive_cold(struct ovl_loop *l, struct fuse_buf *buf)
{
	pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, NULL);
	int res = fuse_session_exited(l->se) ? 0 : fuse_session_receive_buf(l->se, buf);
	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
	if (res > 0 && l->spin_max_ns > 0)
		note_request(l);
	return res;
}

static void *worker(void *arg);

/* If nobody is waiting to receive (at the start, or a worker now holds a request), start a
 * worker that will. 0 or pthread_create's error. */
static int grow(struct ovl_loop *l)
{
	if (atomic_load(&l->waiting) > 0)
		return 0;
	int r = 0;
	pthread_mutex_lock(&l->lock);
	/* none after the end: ovl_loop_run joins the threads it counted then */
	if (l->nthreads < l->max_threads && !fuse_session_exited(l->se)) {
		r = pthread_create(&l->threads[l->nthreads], NULL, worker, l);
		if (r == 0)
			l->nthreads++;
	}
	pthread_mutex_unlock(&l->lock);
	return r;
}

static void free_buf(void *arg)
{
	free(((struct fuse_buf *)arg)->mem);
}

static void *worker(void *arg)
{
	struct ovl_loop *l = arg;
	struct fuse_buf buf = { .mem = NULL };
	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
	pthread_cleanup_push(free_buf, &buf);
	for (;;) {
		int res;
		atomic_fetch_add(&l->waiting, 1);
		if (atomic_load(&l->hot)) {
			pthread_mutex_lock(&l->recv_lock);
			pthread_cleanup_push(unlock_recv, &l->recv_lock);
			res = atomic_load(&l->hot) ? receive_hot(l, &buf) : -EAGAIN;
			pthread_cleanup_pop(1);
		} else {
			res = receive_cold(l, &buf);
		}
		atomic_fetch_sub(&l->waiting, 1);
		if (res == -EAGAIN || res == -EINTR)
			continue;
		if (res <= 0) {
			if (res < 0) {
				pthread_mutex_lock(&l->lock);
				if (!l->error)
					l->error = res;
				pthread_mutex_unlock(&l->lock);
			}
			/* ENODEV (unmounted) or a signal */
			fuse_session_exit(l->se);
			sem_post(&l->ended);
			break;
		}
		grow(l);
		fuse_session_process_buf(l->se, &buf);
	}
	pthread_cleanup_pop(1);
	return NULL;
}

int ovl_loop_run(struct fuse_session *se, unsigned max_threads, unsigned spin_us)
{
	struct ovl_loop *l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->se = se;
	l->fd = fuse_session_fd(se);
	l->spin_max_ns = (long)spin_us * 1000;
	atomic_store(&l->close_share, SHARE_ONE);
	l->max_threads = max_threads < 1		    ? 1 :
			 max_threads > OVL_LOOP_MAX_THREADS ? OVL_LOOP_MAX_THREADS :
							      max_threads;
	pthread_mutex_init(&l->recv_lock, NULL);
	pthread_mutex_init(&l->lock, NULL);
	sem_init(&l->ended, 0, 0);
	if (l->spin_max_ns > 0)
		set_mode(l, true);

	/* the exit signals reach this thread only: the workers (created with them blocked) are
	 * never interrupted by them */
	sigset_t exit_signals, old;
	sigemptyset(&exit_signals);
	sigaddset(&exit_signals, SIGTERM);
	sigaddset(&exit_signals, SIGINT);
	sigaddset(&exit_signals, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &exit_signals, &old);
	int r = grow(l);
	pthread_sigmask(SIG_UNBLOCK, &exit_signals, NULL);
	if (r != 0) {
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		free(l);
		return -r;
	}
	while (!fuse_session_exited(se))
		sem_wait(&l->ended); /* a worker posts it; a signal to this thread ends it early */
	pthread_sigmask(SIG_BLOCK, &exit_signals, NULL);

	/* wake the workers that wait for requests; the others see the end by themselves */
	pthread_mutex_lock(&l->lock);
	unsigned n = l->nthreads; /* no new workers once the session has ended */
	for (unsigned i = 0; i < n; i++)
		pthread_cancel(l->threads[i]);
	pthread_mutex_unlock(&l->lock);
	for (unsigned i = 0; i < n; i++)
		pthread_join(l->threads[i], NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	int err = l->error == -ENODEV ? 0 : l->error;
	sem_destroy(&l->ended);
	pthread_mutex_destroy(&l->recv_lock);
	pthread_mutex_destroy(&l->lock);
	free(l);
	return err;
}
