/* file.c - open/read/write/flush/fsync/release/fallocate/lseek/copy_file_range on the real
 * file of a node, FUSE passthrough, readlink and statfs. Reads of lower files never copy up. */
#include "ovl.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <linux/fs.h>
#include <linux/fuse.h>
#include <sys/ioctl.h>
#include <sys/statvfs.h>
#include <sys/vfs.h>

/* Opens n in its top layer; *layer receives the layer the fd is on. */
static int open_node_at(struct ovl_fs *fs, struct ovl_node *n, int flags, int *layer)
{
	struct ovl_place pl;
	int r = ovl_node_place(fs, n, &pl);
	if (r < 0)
		return r;
	ovl_place_free(&pl);
	if (layer)
		*layer = pl.top;
	if (n->idx == OVL_ROOT_IDX) {
		int fd = openat(fs->layers[pl.top].fd, ".", flags | O_CLOEXEC);
		return fd < 0 ? -errno : fd;
	}
	autofree char *name = NULL;
	autoclose int pfd = ovl_node_parent_fd(fs, n, pl.top, &name);
	if (pfd < 0)
		return pfd;
	int fd = openat(pfd, name, flags | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
	return fd < 0 ? -errno : fd;
}

int ovl_open_node(struct ovl_fs *fs, struct ovl_node *n, int flags)
{
	return open_node_at(fs, n, flags, NULL);
}

/* Read-only fds on lower files, by fd number: after a copy-up they are switched to the
 * upper copy, so readers see later writes (as with the kernel's overlayfs). */
#define MAX_TRACKED_FD (1 << 20)
/* Below this size a read-only open is not worth a backing file: registering one (a kernel
 * open of the layer file, twice an ioctl) costs more than the one or two READ requests it
 * saves, and the page cache with keep_cache serves later opens with no request at all
 * (measured: reading 57k small files warm took 2.6 s passed through, 1.9 s without). */
#define PT_MIN_READ (256 * 1024)
static atomic_uchar lower_ro[MAX_TRACKED_FD];
/* fds whose open file is passed through (their node holds a share of its backing id) */
static atomic_uchar passed[MAX_TRACKED_FD];

/* FUSE passthrough: the kernel reads and writes the backing file itself, and the server
 * sees no READ or WRITE for the open file. Kernel rules this has to follow (fs/fuse/iomode.c):
 * every open file of one FUSE inode uses the same backing file while any of them is passed
 * through, and a passed-through open fails (EIO to the caller) while another open of the
 * inode uses the page cache, and the other way round. A backing file cannot be swapped
 * either, so a lower file that may still be copied up is not passed through by default: a
 * later write-open would have to use the lower file as backing. Decided per node under its
 * lock: share the node's backing id when it has one; else pass through only when no other
 * open of the node exists (stratafs hears of a close only after the kernel has counted it, so
 * its counts err on the side of "still open", which falls back to the page cache). */
/* The passthrough state goes to the log in one form, which strata status reads (the last
 * such line counts): "stratafs: passthrough: on" once the kernel has accepted this server's
 * backing files, "stratafs: passthrough: off: REASON" when it is not used. The INIT-time
 * lines are written where the features line is (sandbox or debug); a refusal always is. */
static bool pt_report(const struct ovl_fs *fs)
{
	return fs->p.sandbox != OVL_SANDBOX_OFF || fs->p.debug;
}

/* Debian 12's headers predate passthrough (kernel >= 6.9): see core/sandbox.c */
#ifndef FUSE_DEV_IOC_BACKING_OPEN
#define FUSE_DEV_IOC_BACKING_OPEN _IOC(_IOC_WRITE, 229, 1, 16)
#define FUSE_DEV_IOC_BACKING_CLOSE _IOW(229, 2, uint32_t)
#endif

/* Backing files released: the kernel sends RELEASE after close() has returned, so a
 * write-open right after the last reader closed can overtake it. */
static pthread_mutex_t released_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t released_cond = PTHREAD_COND_INITIALIZER;
static unsigned long released_gen;

/* unused without passthrough */
__attribute__((unused)) static void backing_released(void)
{
	pthread_mutex_lock(&released_lock);
	released_gen++;
	pthread_cond_broadcast(&released_cond);
	pthread_mutex_unlock(&released_lock);
}

#ifdef HAVE_FUSE_PASSTHROUGH
/* Turns passthrough off for good after the kernel refused a backing file with error e. */
static void refused(struct ovl_fs *fs, int e)
{
	if (atomic_exchange(&fs->pt_on, false))
		ovl_log("passthrough: off: refused by the kernel (%s%s); reads and writes go "
			"through the server",
			strerror(e),
			e == EPERM ? ": it needs CAP_SYS_ADMIN in the initial user namespace" : "");
}

void ovl_passthrough_init(struct ovl_fs *fs, struct fuse_conn_info *conn)
{
	const char *off = NULL;
	if (!fs->p.passthrough)
		off = "passthrough=0";
	else if (fs->p.writeback)
		off = "the writeback cache is on (the kernel allows only one of the two)";
	else if (!(conn->capable & FUSE_CAP_PASSTHROUGH))
		off = "the kernel does not offer it (Linux >= 6.9 with CONFIG_FUSE_PASSTHROUGH)";
	if (off) {
		if (pt_report(fs))
			fprintf(stderr, "stratafs: passthrough: off: %s\n", off);
		return;
	}
	conn->want |= FUSE_CAP_PASSTHROUGH;
	/* layers on a plain filesystem; what stacks on this mount stays possible */
	conn->max_backing_stack_depth = 1;
	atomic_store(&fs->pt_on, true);
	atomic_store(&fs->pt_probe, true);
}

/* The kernel checks the server's privilege before it looks at the fd (fs/fuse/backing.c:
 * EPERM without passthrough or CAP_SYS_ADMIN in the initial user namespace), so asking it
 * to register fd -1 tells whether passthrough works without registering anything: EBADF
 * means it would. Requests wait on the lock until the answer is in the log, so the strata
 * driver's readiness check (a statfs) finds it there. */
void ovl_passthrough_settle(struct ovl_fs *fs)
{
	static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	pthread_mutex_lock(&lock);
	if (atomic_load(&fs->pt_probe)) {
		struct {
			int32_t fd;
			uint32_t flags;
			uint64_t padding;
		} map = { .fd = -1 };
		int r = ioctl(fuse_session_fd(fs->se), FUSE_DEV_IOC_BACKING_OPEN, &map);
		int e = errno;
		if (r >= 0) /* never for fd -1; nothing to keep registered either way */
			ioctl(fuse_session_fd(fs->se), FUSE_DEV_IOC_BACKING_CLOSE, &r);
		if (r < 0 && (e == EPERM || e == EOPNOTSUPP || e == ENOTTY || e == ENOSYS))
			refused(fs, e);
		else if (atomic_load(&fs->pt_on) && pt_report(fs))
			fprintf(stderr, "stratafs: passthrough: on\n");
		atomic_store(&fs->pt_probe, false);
	}
	pthread_mutex_unlock(&lock);
}

/* start: this open may set up a backing file (an open sharing one always joins it) */
static void passthrough(struct ovl_fs *fs, fuse_req_t req, struct ovl_node *n, int fd, bool lower,
			bool start, struct fuse_file_info *fi)
{
	if (fd < 0 || fd >= MAX_TRACKED_FD)
		return;
	bool eligible = start && atomic_load(&fs->pt_on) &&
			(!lower || !fs->has_upper || fs->p.passthrough > 1);
	pthread_mutex_lock(&n->lock);
	if (n->pt_count > 0) {
		/* an open of the upper copy may share a lower backing file: it only reads
		 * (passthrough=all refuses write-opens while one is bound, see ovl_open), and
		 * sees what the open lower files see */
		if (n->pt_lower || !lower) {
			n->pt_count++;
			fi->backing_id = n->pt_backing;
		}
	} else if (eligible && atomic_load(&n->nopen) == 1) {
		int id = fuse_passthrough_open(req, fd);
		if (id > 0) {
			n->pt_backing = id;
			n->pt_count = 1;
			n->pt_lower = lower;
			n->pt_used = true;
			fi->backing_id = id;
		} else if (errno != EMFILE && errno != ENFILE && errno != ENOMEM) {
			/* EPERM: no CAP_SYS_ADMIN in the initial user namespace; ELOOP: layers on a
			 * stacked filesystem; others: no kernel support. Asking again per open
			 * would only fail again (and libfuse logs every failure). */
			refused(fs, errno);
		}
	}
	pthread_mutex_unlock(&n->lock);
	if (fi->backing_id > 0) {
		fi->keep_cache = 0;
		fi->noflush = 1; /* the server has nothing to report at close */
		atomic_store(&passed[fd], 1);
	}
}

static void passthrough_release(struct ovl_fs *fs, fuse_req_t req, struct ovl_node *n, int fd)
{
	(void)fs;
	if (fd < 0 || fd >= MAX_TRACKED_FD || !atomic_exchange(&passed[fd], 0) || !n)
		return;
	pthread_mutex_lock(&n->lock);
	bool released = false;
	if (n->pt_count > 0 && --n->pt_count == 0) {
		fuse_passthrough_close(req, n->pt_backing);
		n->pt_backing = 0;
		released = true;
	}
	pthread_mutex_unlock(&n->lock);
	if (released)
		backing_released();
}
#else
void ovl_passthrough_init(struct ovl_fs *fs, struct fuse_conn_info *conn)
{
	(void)conn;
	if (fs->p.passthrough && pt_report(fs))
		fprintf(stderr,
			"stratafs: passthrough: off: stratafs is built against libfuse %s (it needs "
			"libfuse >= 3.16)\n",
			fuse_pkgversion());
	else if (pt_report(fs))
		fprintf(stderr, "stratafs: passthrough: off: passthrough=0\n");
}

void ovl_passthrough_settle(struct ovl_fs *fs)
{
	(void)fs;
}

static void passthrough(struct ovl_fs *fs, fuse_req_t req, struct ovl_node *n, int fd, bool lower,
			bool start, struct fuse_file_info *fi)
{
	(void)fs, (void)req, (void)n, (void)fd, (void)lower, (void)start, (void)fi;
}

static void passthrough_release(struct ovl_fs *fs, fuse_req_t req, struct ovl_node *n, int fd)
{
	(void)fs, (void)req, (void)n, (void)fd;
}
#endif

static bool passed_through(int fd)
{
	return fd >= 0 && fd < MAX_TRACKED_FD && atomic_load(&passed[fd]);
}

/* FLUSH exists so that a close error of the real file reaches the caller's close() (NFS
 * and FUSE uppers report write-back errors there). On local filesystems closing a dup
 * does nothing, so written files skip the FLUSH round trip too. */
static bool upper_close_is_noop(struct ovl_fs *fs)
{
	static atomic_int cached; /* 0 unknown, 1 yes, 2 no */
	int v = atomic_load(&cached);
	if (v == 0) {
		struct statfs sfs;
		v = 2;
		if (fs->has_upper && fstatfs(fs->layers[fs->upper].fd, &sfs) == 0) {
			switch ((unsigned long)sfs.f_type) {
			case 0xEF53: /* ext2/3/4 */
			case 0x58465342: /* xfs */
			case 0x9123683E: /* btrfs */
			case 0x01021994: /* tmpfs */
				v = 1;
			}
		}
		atomic_store(&cached, v);
	}
	return v == 1;
}

void ovl_file_created(struct ovl_fs *fs, fuse_req_t req, struct ovl_node *n,
		      struct fuse_file_info *fi)
{
	if (upper_close_is_noop(fs))
		fi->noflush = 1;
	if (n)
		passthrough(fs, req, n, (int)fi->fh, false, true, fi);
}

void ovl_file_close(struct ovl_fs *fs, fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct ovl_node *n = ovl_node_get(fs, ino);
	int fd = (int)fi->fh;
	passthrough_release(fs, req, n, fd);
	if (n)
		atomic_fetch_sub(&n->nopen, 1);
	ovl_file_released(fd);
	close(fd);
}

void ovl_file_refresh(struct ovl_fs *fs, fuse_ino_t ino, int fd)
{
	if (fd < 0 || fd >= MAX_TRACKED_FD || !atomic_load(&lower_ro[fd]))
		return;
	struct ovl_node *n = ovl_node_get(fs, ino);
	if (!n || n->top != fs->upper)
		return;
	if (!atomic_exchange(&lower_ro[fd], 0))
		return;
	int nfd = ovl_open_node(fs, n, O_RDONLY);
	if (nfd >= 0) {
		dup3(nfd, fd, O_CLOEXEC); /* atomic swap under the same number */
		close(nfd);
	}
}

void ovl_file_released(int fd)
{
	if (fd >= 0 && fd < MAX_TRACKED_FD)
		atomic_store(&lower_ro[fd], 0);
}

/* Whether n is bound to a lower backing file, waiting up to 200 ms for the RELEASE of a
 * reader that has already closed it. */
static bool lower_backing_busy(struct ovl_node *n)
{
	struct timespec deadline;
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_nsec += 200 * 1000000L;
	if (deadline.tv_nsec >= 1000000000L) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}
	for (;;) {
		pthread_mutex_lock(&released_lock);
		unsigned long gen = released_gen;
		pthread_mutex_unlock(&released_lock);
		pthread_mutex_lock(&n->lock);
		bool busy = n->pt_count > 0 && n->pt_lower;
		pthread_mutex_unlock(&n->lock);
		if (!busy)
			return false;
		pthread_mutex_lock(&released_lock);
		int r = 0;
		while (released_gen == gen && r != ETIMEDOUT)
			r = pthread_cond_timedwait(&released_cond, &released_lock, &deadline);
		pthread_mutex_unlock(&released_lock);
		if (r == ETIMEDOUT)
			return true;
	}
}

int ovl_open(struct ovl_fs *fs, fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct ovl_node *n = ovl_node_get(fs, ino);
	if (!n)
		return -ESTALE;
	if (n->type == S_IFDIR)
		return -EISDIR;
	if (n->type != S_IFREG)
		return -ENXIO; /* FIFOs and devices are opened by the kernel, never by us */
	int flags = fi->flags & ~(O_CREAT | O_EXCL | O_NOCTTY);
	int acc = flags & O_ACCMODE;
	bool writing = acc == O_WRONLY || acc == O_RDWR || (flags & O_TRUNC);
	if (!writing && n->lower_links) {
		int r = ovl_index_sync(fs, n);
		if (r < 0)
			return r;
	}
	if (writing) {
		if (!fs->has_upper)
			return -EROFS;
		/* passthrough=all: a lower file open for reading is bound to its lower backing
		 * file; the copy would not be what they read */
		if (fs->p.passthrough == 2 && lower_backing_busy(n))
			return -ETXTBSY;
		int r = ovl_copy_up(fs, n, !(flags & O_TRUNC));
		if (r < 0)
			return r;
	}
	if (fs->p.writeback && acc == O_WRONLY) {
		/* the kernel may read pages back for partial writes */
		flags = (flags & ~O_ACCMODE) | O_RDWR;
	}
	if (fs->p.writeback)
		flags &= ~O_APPEND;
	int layer;
	/* counted before the open: a concurrent passthrough decision must see this open */
	atomic_fetch_add(&n->nopen, 1);
	int fd = open_node_at(fs, n, flags, &layer);
	if (fd < 0) {
		atomic_fetch_sub(&n->nopen, 1);
		return fd;
	}
	struct stat st;
	bool stated = fstat(fd, &st) == 0;
	if (stated && st.st_nlink <= 1 && !n->indexed && !n->pt_used)
		fi->keep_cache = 1; /* one name, one node: the page cache stays coherent */
	fi->fh = (uint64_t)fd;
	/* nothing to report at close for a file we only read: spare the FLUSH round trip */
	if (!writing || upper_close_is_noop(fs))
		fi->noflush = 1;
	bool lower = fs->has_upper && layer != fs->upper;
	passthrough(fs, req, n, fd, lower, writing || !stated || st.st_size >= PT_MIN_READ, fi);
	if (lower && !passed_through(fd) && fd < MAX_TRACKED_FD)
		atomic_store(&lower_ro[fd], 1);
	return 0;
}

int ovl_readlink(struct ovl_fs *fs, fuse_ino_t ino, char *buf, size_t len)
{
	struct ovl_node *n = ovl_node_get(fs, ino);
	if (!n)
		return -ESTALE;
	struct ovl_place pl;
	int r = ovl_node_place(fs, n, &pl);
	if (r < 0)
		return r;
	ovl_place_free(&pl);
	autoclose int lfd = ovl_node_layer_fd(fs, n, pl.top);
	if (lfd < 0)
		return lfd;
	ssize_t l = readlinkat(lfd, "", buf, len - 1);
	if (l < 0)
		return -errno;
	buf[l] = '\0';
	return 0;
}

int ovl_statfs(struct ovl_fs *fs, struct statvfs *st)
{
	if (fstatvfs(fs->layers[0].fd, st) < 0)
		return -errno;
	st->f_namemax = NAME_MAX;
	return 0;
}

static size_t ioctl_size(unsigned int cmd)
{
	switch (cmd) {
	case FS_IOC_GETFLAGS:
	case FS_IOC_SETFLAGS:
		return sizeof(unsigned int);
	case FS_IOC_FSGETXATTR:
	case FS_IOC_FSSETXATTR:
		return sizeof(struct fsxattr);
	}
	return 0;
}

int ovl_ioctl_flags(struct ovl_fs *fs, fuse_ino_t ino, unsigned int cmd, const void *in,
		    size_t insz, void *out, size_t *outsz)
{
	/* only inode flags and fsxattr (lsattr/chattr) pass through: they are plain data */
	size_t sz = ioctl_size(cmd);
	if (!sz)
		return -ENOTTY;
	bool set = cmd == FS_IOC_SETFLAGS || cmd == FS_IOC_FSSETXATTR;
	struct ovl_node *n = ovl_node_get(fs, ino);
	if (!n)
		return -ESTALE;
	if (n->type != S_IFREG && n->type != S_IFDIR)
		return -ENOTTY;
	int flags = O_RDONLY | (n->type == S_IFDIR ? O_DIRECTORY : 0);
	if (set) {
		if (insz < sz)
			return -EINVAL;
		int r = ovl_copy_up(fs, n, true);
		if (r < 0)
			return r;
	}
	autoclose int fd = ovl_open_node(fs, n, flags);
	if (fd < 0)
		return fd;
	union {
		unsigned int flags;
		struct fsxattr fsx;
	} v;
	memset(&v, 0, sizeof(v));
	if (set)
		memcpy(&v, in, sz);
	if (ioctl(fd, cmd, &v) < 0)
		return -errno;
	if (set) {
		*outsz = 0;
	} else {
		memcpy(out, &v, sz);
		*outsz = sz;
	}
	return 0;
}
