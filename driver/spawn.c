/* spawn.c - starting the server: a monitor process (its own session, stdio on /dev/null, no
 * capabilities) forks stratafs with the /dev/fuse fd and the layer fds, reaps it and records
 * how it ended. A sync pipe carries the server's pid and, if exec fails, its errno; readiness
 * is the mount answering statfs (the request waits in the kernel until the server has
 * applied its sandbox and entered its loop), raced against the server's death and a deadline. */
#include "strata.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>

#define FUSE_SUPER_MAGIC 0x65735546

char *strata_stratafs_path(void)
{
	const char *env = getenv("STRATAFS");
	if (env && *env)
		return strdup(env);
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 16);
	if (n <= 0)
		return strdup("stratafs");
	self[n] = '\0';
	char *slash = strrchr(self, '/');
	strcpy(slash ? slash + 1 : self, "stratafs");
	return strdup(self);
}

unsigned long long strata_pid_start(pid_t pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if (read_small_file(AT_FDCWD, path, buf, sizeof(buf)) < 0)
		return 0;
	/* after "(comm)": state is field 3, starttime field 22 */
	char *p = strrchr(buf, ')');
	if (!p || p[1] != ' ' || p[2] == 'Z' || p[2] == 'X')
		return 0;
	unsigned long long start = 0;
	int field = 3;
	for (p += 2; *p && field < 22; p++)
		if (*p == ' ')
			field++;
	if (field == 22)
		start = strtoull(p, NULL, 10);
	return start;
}

bool strata_pid_alive(pid_t pid, unsigned long long start)
{
	if (pid <= 0)
		return false;
	unsigned long long s = strata_pid_start(pid);
	return s != 0 && (start == 0 || s == start);
}

static int pidfd_open_(pid_t pid)
{
	return (int)syscall(SYS_pidfd_open, pid, 0);
}

int strata_wait_pid_gone(pid_t pid, unsigned long long start, int timeout_ms)
{
	if (!strata_pid_alive(pid, start))
		return 0;
	autoclose int pfd = pidfd_open_(pid);
	if (pfd >= 0 && strata_pid_alive(pid, start)) {
		struct pollfd p = { .fd = pfd, .events = POLLIN };
		int r;
		do
			r = poll(&p, 1, timeout_ms);
		while (r < 0 && errno == EINTR);
		/* POLLIN comes when it exits; a reaped zombie and a zombie both count as gone */
		if (r > 0)
			return 0;
	}
	/* no pidfd (kernel < 5.3): poll /proc */
	struct timespec t0, now;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (strata_pid_alive(pid, start)) {
		clock_gettime(CLOCK_MONOTONIC, &now);
		long ms = (now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000;
		if (ms >= timeout_ms)
			return -1;
		struct timespec d = { 0, 5 * 1000 * 1000 };
		nanosleep(&d, NULL);
	}
	return 0;
}

static int append(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int append(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
{
	va_list ap;
	for (;;) {
		va_start(ap, fmt);
		int n = vsnprintf(*buf ? *buf + *len : NULL, *buf ? *cap - *len : 0, fmt, ap);
		va_end(ap);
		if (n < 0)
			return -1;
		if (*buf && *len + (size_t)n < *cap) {
			*len += (size_t)n;
			return 0;
		}
		size_t nc = (*cap ? *cap : 256) * 2 + (size_t)n;
		char *nb = realloc(*buf, nc);
		if (!nb)
			return -1;
		*buf = nb;
		*cap = nc;
	}
}

/* stratafs's -o string: the layers as /dev/fd/N of the fds the driver validated */
static char *server_opts(const struct strata_spec *s, const struct strata_layers *l)
{
	char *o = NULL;
	size_t len = 0, cap = 0;
	int r = append(&o, &len, &cap, "lowerdir=");
	if (s->readonly && l->upper >= 0)
		r |= append(&o, &len, &cap, "/dev/fd/%d:", l->upper); /* a read-only view of it */
	for (int i = 0; i < l->nlower; i++)
		r |= append(&o, &len, &cap, "%s/dev/fd/%d", i ? ":" : "", l->lower[i]);
	if (!s->readonly && l->upper >= 0)
		r |= append(&o, &len, &cap, ",upperdir=/dev/fd/%d,workdir=/dev/fd/%d", l->upper,
			    l->work);
	r |= append(&o, &len, &cap, ",sandbox=%s", s->userxattr ? "userxattr" : "1");
	if (s->volatile_)
		r |= append(&o, &len, &cap, ",volatile");
	if (s->timeout_set)
		r |= append(&o, &len, &cap, ",timeout=%.3f", s->timeout);
	if (!s->threaded)
		r |= append(&o, &len, &cap, ",threaded=0");
	if (s->spin_us >= 0)
		r |= append(&o, &len, &cap, ",spin=%d", s->spin_us);
	if (s->writeback)
		r |= append(&o, &len, &cap, ",writeback=1");
	/* always: stratafs's own default is passthrough=1 */
	r |= append(&o, &len, &cap, ",passthrough=%s",
		    s->passthrough == 2 ? "all" :
		    s->passthrough	? "1" :
					  "0");
	if (s->noacl)
		r |= append(&o, &len, &cap, ",noacl");
	if (s->noxattrs)
		r |= append(&o, &len, &cap, ",noxattrs=1");
	if (s->ino32)
		r |= append(&o, &len, &cap, ",ino32_t");
	if (s->static_nlink)
		r |= append(&o, &len, &cap, ",static_nlink");
	if (s->context)
		r |= append(&o, &len, &cap, ",context=\"%s\"", s->context);
	if (s->xattr_permissions)
		r |= append(&o, &len, &cap, ",xattr_permissions=%d", s->xattr_permissions);
	if (s->squash_to_root)
		r |= append(&o, &len, &cap, ",squash_to_root");
	if (s->squash_uid >= 0)
		r |= append(&o, &len, &cap, ",squash_to_uid=%lld", (long long)s->squash_uid);
	if (s->squash_gid >= 0)
		r |= append(&o, &len, &cap, ",squash_to_gid=%lld", (long long)s->squash_gid);
	for (int m = 0; m < 2; m++) {
		const struct strata_idmap *map = m ? s->gidmap : s->uidmap;
		int n = m ? s->ngidmap : s->nuidmap;
		for (int i = 0; i < n; i++)
			r |= append(&o, &len, &cap, "%s%u:%u:%u",
				    i ? ":" : (m ? ",gidmapping=" : ",uidmapping="),
				    map[i].container, map[i].host, map[i].size);
	}
	if (r) {
		free(o);
		return NULL;
	}
	return o;
}

static void write_all(int fd, const void *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		p = (const char *)p + w;
		n -= (size_t)w;
	}
}

/* The monitor keeps nothing but the state dir: no capabilities (also not from the bounding
 * set), no_new_privs, no fds of the driver's caller. */
static void monitor_confine(int statedir)
{
	int nul = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (nul >= 0) {
		dup2(nul, 0);
		dup2(nul, 1);
		dup2(nul, 2);
	}
	if (statedir != 3) {
		dup3(statedir, 3, O_CLOEXEC);
	}
	close_range(4, ~0U, 0);
	prctl(PR_SET_NAME, "strata-monitor", 0, 0, 0);
	prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
	for (int c = 0; c <= CAP_LAST_CAP; c++)
		if (CAP_IS_SUPPORTED(c))
			cap_drop_bound(c);
	cap_t none = cap_init();
	if (none) {
		cap_set_proc(none);
		cap_free(none);
	}
}

static void reset_signals(void)
{
	sigset_t all;
	sigemptyset(&all);
	sigprocmask(SIG_SETMASK, &all, NULL);
	for (int s = 1; s < NSIG; s++)
		signal(s, SIG_DFL);
}

int strata_spawn(const struct strata_spec *s, const struct strata_layers *l, int fusefd,
		 int statedir, int logfd, struct strata_server *srv, struct strata_error *err)
{
	autofree char *bin = strata_stratafs_path();
	autofree char *opts = server_opts(s, l);
	char fusepath[32];
	if (!bin || !opts)
		return strata_fail(err, STRATA_EXIT_FAIL, ENOMEM, NULL, "out of memory");
	if (access(bin, X_OK) < 0)
		return strata_fail(err, STRATA_EXIT_FAIL, errno, NULL,
				   "stratafs '%s' cannot be run: %s (set STRATAFS)", bin,
				   strerror(errno));
	snprintf(fusepath, sizeof(fusepath), "/dev/fd/%d", fusefd);
	char *argv[] = { bin, "-f", "-o", opts, fusepath, NULL };
	char *envp[] = { "PATH=/usr/sbin:/usr/bin:/sbin:/bin", NULL };
	/* what the server inherits; everything else is O_CLOEXEC */
	int keep[STRATA_MAX_LAYERS + 4], nkeep = 0;
	keep[nkeep++] = fusefd;
	for (int i = 0; i < l->nlower; i++)
		keep[nkeep++] = l->lower[i];
	if (l->upper >= 0)
		keep[nkeep++] = l->upper;
	if (l->work >= 0)
		keep[nkeep++] = l->work;

	int sync[2];
	if (pipe2(sync, O_CLOEXEC) < 0)
		return strata_fail(err, STRATA_EXIT_FAIL, errno, NULL, "pipe: %s", strerror(errno));
	pid_t mon = fork();
	if (mon < 0) {
		int e = errno;
		close(sync[0]);
		close(sync[1]);
		return strata_fail(err, STRATA_EXIT_FAIL, e, NULL, "fork: %s", strerror(e));
	}
	if (mon == 0) {
		close(sync[0]);
		setsid();
		reset_signals();
		pid_t pid = fork();
		if (pid == 0) {
			int nul = open("/dev/null", O_RDWR | O_CLOEXEC);
			if (nul < 0 || dup2(nul, 0) < 0 || dup2(nul, 1) < 0 || dup2(logfd, 2) < 0) {
				int e = errno;
				write_all(sync[1], &e, sizeof(e));
				_exit(127);
			}
			for (int i = 0; i < nkeep; i++)
				fcntl(keep[i], F_SETFD, 0);
			execve(bin, argv, envp);
			int e = errno;
			write_all(sync[1], &e, sizeof(e));
			_exit(127);
		}
		int32_t v = pid < 0 ? -errno : pid;
		write_all(sync[1], &v, sizeof(v));
		close(sync[1]);
		if (pid < 0)
			_exit(1);
		char id[STRATA_ID_MAX + 1];
		snprintf(id, sizeof(id), "%s", s->id);
		monitor_confine(statedir);
		int st;
		while (waitpid(pid, &st, 0) < 0) {
			if (errno != EINTR)
				_exit(1);
		}
		strata_exit_write(3, id, st);
		_exit(0);
	}
	close(sync[1]);
	int32_t v = 0;
	int e = 0;
	ssize_t n;
	do
		n = read(sync[0], &v, sizeof(v));
	while (n < 0 && errno == EINTR);
	if (n == (ssize_t)sizeof(v) && v > 0) {
		do
			n = read(sync[0], &e, sizeof(e));
		while (n < 0 && errno == EINTR);
		if (n != (ssize_t)sizeof(e))
			e = 0; /* EOF: exec succeeded */
	}
	close(sync[0]);
	srv->monitor = mon;
	srv->pid = v > 0 ? v : 0;
	if (v <= 0) {
		waitpid(mon, NULL, 0);
		return strata_fail(err, STRATA_EXIT_FAIL, v < 0 ? -v : EIO, NULL,
				   "starting the server: %s", strerror(v < 0 ? -v : EIO));
	}
	if (e) {
		waitpid(mon, NULL, 0);
		return strata_fail(err, STRATA_EXIT_FAIL, e, NULL, "executing '%s': %s", bin,
				   strerror(e));
	}
	srv->start = strata_pid_start(srv->pid);
	return 0;
}

struct probe {
	char *target;
	int fd; /* write end: one byte when statfs returned */
	int result; /* 0 FUSE answered, -errno, or 1 when not FUSE */
};

static void *probe_thread(void *arg)
{
	struct probe *p = arg;
	struct statfs sf;
	int r = statfs(p->target, &sf);
	p->result = r < 0 ? -errno : ((unsigned long)sf.f_type == FUSE_SUPER_MAGIC ? 0 : 1);
	write_all(p->fd, "x", 1);
	close(p->fd);
	return NULL;
}

int strata_wait_ready(const char *target, const struct strata_server *srv, int timeout_ms,
		      struct strata_error *err)
{
	int pp[2];
	if (pipe2(pp, O_CLOEXEC) < 0)
		return strata_fail(err, STRATA_EXIT_FAIL, errno, NULL, "pipe: %s", strerror(errno));
	/* leaked on timeout (the thread may still be blocked in statfs): the process exits soon */
	struct probe *p = calloc(1, sizeof(*p));
	if (!p || !(p->target = strdup(target))) {
		close(pp[0]);
		close(pp[1]);
		return strata_fail(err, STRATA_EXIT_FAIL, ENOMEM, NULL, "out of memory");
	}
	p->fd = pp[1];
	pthread_t th;
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	int r = pthread_create(&th, &attr, probe_thread, p);
	pthread_attr_destroy(&attr);
	if (r) {
		close(pp[0]);
		close(pp[1]);
		return strata_fail(err, STRATA_EXIT_FAIL, r, NULL, "pthread_create: %s",
				   strerror(r));
	}
	autoclose int rd = pp[0];
	autoclose int pfd = pidfd_open_(srv->pid);
	struct pollfd fds[2] = { { .fd = rd, .events = POLLIN }, { .fd = pfd, .events = POLLIN } };
	struct timespec t0, now;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		clock_gettime(CLOCK_MONOTONIC, &now);
		long left = timeout_ms - ((now.tv_sec - t0.tv_sec) * 1000 +
					  (now.tv_nsec - t0.tv_nsec) / 1000000);
		if (left <= 0)
			return strata_fail(err, STRATA_EXIT_FAIL, ETIMEDOUT, NULL,
					   "the mount did not answer within %d ms", timeout_ms);
		/* without a pidfd, wake up now and then to look at /proc */
		int n = poll(fds, pfd >= 0 ? 2 : 1,
			     pfd >= 0 ? (int)left : (left > 50 ? 50 : (int)left));
		if (n < 0 && errno != EINTR)
			return strata_fail(err, STRATA_EXIT_FAIL, errno, NULL, "poll: %s",
					   strerror(errno));
		if (n > 0 && (fds[0].revents & (POLLIN | POLLHUP))) {
			if (p->result == 0)
				return 0;
			/* a dead server aborts the connection: say so, not just ENOTCONN */
			if (p->result < 0 && strata_wait_pid_gone(srv->pid, srv->start, 100) == 0)
				return strata_fail(err, STRATA_EXIT_FAIL, ECHILD, NULL,
						   "the server exited before serving");
			if (p->result == 1)
				return strata_fail(err, STRATA_EXIT_FAIL, EIO, NULL,
						   "'%s' is not a FUSE mount after mounting",
						   target);
			return strata_fail(err, STRATA_EXIT_FAIL, -p->result, NULL,
					   "the mount does not answer: %s", strerror(-p->result));
		}
		if ((n > 0 && pfd >= 0 && (fds[1].revents & POLLIN)) ||
		    (pfd < 0 && !strata_pid_alive(srv->pid, srv->start)))
			return strata_fail(err, STRATA_EXIT_FAIL, ECHILD, NULL,
					   "the server exited before serving");
	}
}
