/* sandbox.c - confining the long-lived FUSE server once its layers are open and the mount
 * exists: no_new_privs, a private mount namespace whose root is an empty read-only tmpfs
 * (only /proc stays reachable), the minimal capability set for file operations, and a
 * seccomp allow-list. Applied by stratafs when started with sandbox=1 (the strata driver
 * does that); the driver shares the inspection helpers below.
 *
 * Order (after crun and bubblewrap): the seccomp filter is compiled first, while nothing
 * is dropped yet, then no_new_privs, the mount namespace, the capabilities, and the filter
 * is loaded last (loading needs no privilege once no_new_privs is set). */
#include "ovl.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <linux/fuse.h>
#include <sched.h>
#include <seccomp.h>
#include <stdio.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <termios.h>

#ifndef FS_IOC_FSGETXATTR
#define FS_IOC_FSGETXATTR _IOR('X', 31, struct fsxattr)
#define FS_IOC_FSSETXATTR _IOW('X', 32, struct fsxattr)
#endif
#ifndef FUSE_DEV_IOC_CLONE
#define FUSE_DEV_IOC_CLONE _IOR(229, 0, uint32_t)
#endif
/* FUSE passthrough (kernel >= 6.9; Debian 12's headers predate it): struct fuse_backing_map
 * is { int32_t fd; uint32_t flags; uint64_t padding; } */
#ifndef FUSE_DEV_IOC_BACKING_OPEN
#define FUSE_DEV_IOC_BACKING_OPEN _IOC(_IOC_WRITE, 229, 1, 16)
#define FUSE_DEV_IOC_BACKING_CLOSE _IOW(229, 2, uint32_t)
#endif

/* What each capability the server keeps is for. Everything else is dropped from the
 * effective, permitted, inheritable, ambient and bounding sets. The kernel has already
 * checked the caller's permissions (the mount uses default_permissions); the server acts
 * for callers of every uid on files of every uid, which is what these are for. */
const struct ovl_sandbox_cap ovl_sandbox_caps[] = {
	{ CAP_CHOWN, "chown for callers; copy-up and create keep the owner" },
	{ CAP_DAC_OVERRIDE, "read/write layer files whatever their mode (copy-up of 0000 files)" },
	{ CAP_DAC_READ_SEARCH, "open_by_handle_at on the hard-link index; search any layer dir" },
	{ CAP_FOWNER, "chmod, utimens, xattrs and O_NOATIME on files the server does not own" },
	{ CAP_FSETID, "keep setuid/setgid bits across chown, chmod and copy-up" },
	{ CAP_MKNOD, "char 0/0 whiteouts, and device nodes a root container creates" },
	{ CAP_SETFCAP, "copy-up and setxattr of security.capability (file capabilities)" },
	{ -1, NULL },
};

/* ---- what the layers need ------------------------------------------------------------ */

/* fd: a directory opened O_RDONLY (flistxattr does not take O_PATH fds) */
static bool has_trusted_overlay(int fd)
{
	char list[4096];
	ssize_t n = flistxattr(fd, list, sizeof(list));
	if (n < 0)
		return errno == ERANGE; /* a huge list: be conservative */
	for (ssize_t off = 0; off < n; off += strlen(list + off) + 1)
		if (!strncmp(list + off, "trusted.overlay.", 16))
			return true;
	return false;
}

int ovl_sandbox_layer_uses_trusted(int layerfd, long max_dirs)
{
	/* an explicit stack of open directories: depth is bounded by max_dirs, not the C stack */
	struct frame {
		DIR *d;
	};
	size_t cap = 64, depth = 0;
	struct frame *st = malloc(cap * sizeof(*st));
	if (!st)
		return -ENOMEM;
	long seen = 0;
	int r = 0;
	int fd = openat(layerfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		free(st);
		return -errno;
	}
	if (has_trusted_overlay(fd)) {
		close(fd);
		free(st);
		return 1;
	}
	st[depth].d = fdopendir(fd);
	if (!st[depth].d) {
		r = -errno;
		close(fd);
		free(st);
		return r;
	}
	depth++;
	while (depth > 0 && r == 0) {
		DIR *d = st[depth - 1].d;
		struct dirent *de = readdir(d);
		if (!de) {
			closedir(d);
			depth--;
			continue;
		}
		if (de->d_type != DT_DIR && de->d_type != DT_UNKNOWN)
			continue;
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		int cfd = openat(dirfd(d), de->d_name,
				 O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
		if (cfd < 0)
			continue; /* not a directory, or unreadable: nothing to find */
		if (++seen > max_dirs || has_trusted_overlay(cfd)) {
			close(cfd);
			r = 1;
			break;
		}
		if (depth == cap) {
			struct frame *n = realloc(st, 2 * cap * sizeof(*st));
			if (!n) {
				close(cfd);
				r = -ENOMEM;
				break;
			}
			st = n;
			cap *= 2;
		}
		st[depth].d = fdopendir(cfd);
		if (!st[depth].d) {
			close(cfd);
			continue;
		}
		depth++;
	}
	while (depth > 0)
		closedir(st[--depth].d);
	free(st);
	return r;
}

/* ---- mount namespace -------------------------------------------------------------------- */

int ovl_sandbox_private_root(char *err, size_t errlen)
{
	if (unshare(CLONE_NEWNS) < 0) {
		snprintf(err, errlen, "unshare(CLONE_NEWNS): %s", strerror(errno));
		return -1;
	}
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
		snprintf(err, errlen, "making / private: %s", strerror(errno));
		return -1;
	}
	/* The copy of the mount table includes our own FUSE mount. Left there, it would keep
	 * the superblock alive after the host unmounts it, and the server would never see
	 * the end of the connection: the whole old tree has to go, so pivot into a tmpfs. */
	static const char *const bases[] = { "/tmp", "/run", "/mnt", "/var/tmp", "/root", "/" };
	const char *base = NULL;
	for (int i = 0; bases[i]; i++) {
		struct stat st;
		if (lstat(bases[i], &st) == 0 && S_ISDIR(st.st_mode)) {
			base = bases[i];
			break;
		}
	}
	if (mount("strata-sandbox", base, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
		  "mode=0755,size=64k,nr_inodes=16") < 0) {
		snprintf(err, errlen, "tmpfs on %s: %s", base, strerror(errno));
		return -1;
	}
	if (chdir(base) < 0 || mkdir("proc", 0555) < 0) {
		snprintf(err, errlen, "preparing the sandbox root: %s", strerror(errno));
		return -1;
	}
	/* /proc/self/fd/N is how the l*xattr calls reach a file by its fd */
	if (mount("/proc", "proc", NULL, MS_BIND | MS_REC, NULL) < 0) {
		snprintf(err, errlen, "bind-mounting /proc: %s", strerror(errno));
		return -1;
	}
	if (syscall(SYS_pivot_root, ".", ".") < 0) {
		snprintf(err, errlen, "pivot_root: %s", strerror(errno));
		return -1;
	}
	if (umount2(".", MNT_DETACH) < 0) {
		snprintf(err, errlen, "detaching the old root: %s", strerror(errno));
		return -1;
	}
	if (chdir("/") < 0) {
		snprintf(err, errlen, "chdir /: %s", strerror(errno));
		return -1;
	}
	if (mount(NULL, "/", NULL,
		  MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) {
		snprintf(err, errlen, "remounting the sandbox root read-only: %s", strerror(errno));
		return -1;
	}
	return 0;
}

/* ---- capabilities ------------------------------------------------------------------------ */

int ovl_sandbox_drop_caps(bool keep_sys_admin, char *err, size_t errlen)
{
	bool keep[CAP_LAST_CAP + 1] = { false };
	for (int i = 0; ovl_sandbox_caps[i].cap >= 0; i++)
		keep[ovl_sandbox_caps[i].cap] = true;
	if (keep_sys_admin)
		keep[CAP_SYS_ADMIN] = true;
	/* the bounding set first: dropping from it needs CAP_SETPCAP, which goes next */
	for (int c = 0; c <= CAP_LAST_CAP; c++) {
		if (keep[c] || !CAP_IS_SUPPORTED(c))
			continue;
		if (cap_drop_bound(c) < 0 && errno != EINVAL) {
			snprintf(err, errlen, "dropping capability %d from the bounding set: %s", c,
				 strerror(errno));
			return -1;
		}
	}
	cap_t caps = cap_init(); /* all clear */
	if (!caps) {
		snprintf(err, errlen, "cap_init: %s", strerror(errno));
		return -1;
	}
	cap_t cur = cap_get_proc();
	for (int c = 0; c <= CAP_LAST_CAP; c++) {
		cap_flag_value_t v = CAP_CLEAR;
		if (!keep[c] || !cur || cap_get_flag(cur, c, CAP_PERMITTED, &v) < 0 || v != CAP_SET)
			continue;
		cap_value_t cv = c;
		cap_set_flag(caps, CAP_EFFECTIVE, 1, &cv, CAP_SET);
		cap_set_flag(caps, CAP_PERMITTED, 1, &cv, CAP_SET);
	}
	if (cur)
		cap_free(cur);
	int r = cap_set_proc(caps);
	int e = errno;
	cap_free(caps);
	if (r < 0) {
		snprintf(err, errlen, "setting capabilities: %s", strerror(e));
		return -1;
	}
	if (CAP_AMBIENT_SUPPORTED())
		cap_reset_ambient();
	return 0;
}

/* ---- seccomp ------------------------------------------------------------------------------- */

/* Every syscall the server makes after the filter is loaded: the request loop (core/loop.c:
 * libfuse's receive with splice, poll, sched_yield, thread cancellation), glibc's thread,
 * memory and stdio internals, and the file operations of core/. Measured with strace -f -c
 * over the test suites (docs/strata.8). */
static const char *const allowed[] = {
	/* memory, threads, signals, time */
	"brk", "mmap", "munmap", "mremap", "mprotect", "madvise", "futex", "futex_waitv",
	"set_robust_list", "get_robust_list", "rseq", "set_tid_address", "exit", "exit_group",
	"gettid", "getpid", "getppid", "tgkill", "rt_sigaction", "rt_sigprocmask", "rt_sigreturn",
	"rt_sigtimedwait", "sigaltstack", "restart_syscall", "clock_gettime", "clock_getres",
	"clock_nanosleep", "nanosleep", "gettimeofday", "time", "sched_yield", "sched_getaffinity",
	"getrandom", "prlimit64", "getrlimit", "getuid", "geteuid", "getgid", "getegid",
	"getgroups", "capget", "umask", "uname",
	/* fds and I/O */
	"read", "write", "readv", "writev", "pread64", "pwrite64", "preadv", "pwritev", "preadv2",
	"pwritev2", "close", "dup", "dup2", "dup3", "fcntl", "pipe", "pipe2", "splice", "vmsplice",
	"tee", "sendfile", "copy_file_range", "lseek", "poll", "ppoll", "select", "pselect6",
	"flock",
	/* the file operations of core/ */
	"openat", "openat2", "open", "name_to_handle_at", "open_by_handle_at", "newfstatat",
	"fstat", "stat", "lstat", "statx", "fstatfs", "statfs", "getdents64", "readlinkat",
	"readlink", "faccessat", "faccessat2", "access", "mkdirat", "mknodat", "symlinkat",
	"linkat", "unlinkat", "renameat", "renameat2", "fchmod", "fchmodat", "fchown", "fchownat",
	"utimensat", "ftruncate", "fallocate", "fsync", "fdatasync", "syncfs", "sync_file_range",
	"getxattr", "lgetxattr", "fgetxattr", "setxattr", "lsetxattr", "fsetxattr", "listxattr",
	"llistxattr", "flistxattr", "removexattr", "lremovexattr", "fremovexattr", "getcwd",
	"fchdir",
	/* the path forms of the same operations (glibc's unlink() is the unlink syscall) */
	"creat", "mkdir", "rmdir", "unlink", "rename", "link", "symlink", "mknod", "chmod", "chown",
	"lchown", "truncate", "utimes", "utime", "futimesat", NULL
};

/* Refused with EPERM, named so that the policy reads as the design says (everything not
 * allowed is refused anyway, with ENOSYS). */
static const char *const refused[] = { "mount",
				       "umount2",
				       "pivot_root",
				       "setns",
				       "unshare",
				       "ptrace",
				       "bpf",
				       "kexec_load",
				       "kexec_file_load",
				       "init_module",
				       "finit_module",
				       "delete_module",
				       "keyctl",
				       "add_key",
				       "request_key",
				       "execve",
				       "execveat",
				       "open_tree",
				       "move_mount",
				       "fsopen",
				       "fsconfig",
				       "fsmount",
				       "fspick",
				       "mount_setattr",
				       "chroot",
				       "swapon",
				       "swapoff",
				       "reboot",
				       "perf_event_open",
				       "userfaultfd",
				       "process_vm_readv",
				       "process_vm_writev",
				       "setuid",
				       "setgid",
				       "setreuid",
				       "setregid",
				       "setresuid",
				       "setresgid",
				       "setfsuid",
				       "setfsgid",
				       "setgroups",
				       "capset",
				       "quotactl",
				       "fanotify_init",
				       "socket",
				       "socketpair",
				       "connect",
				       "kill",
				       "prctl",
				       "seccomp",
				       "personality",
				       "ioprio_set",
				       NULL };

/* The ioctl numbers the server may issue: reflink for copy-up, and the inode-flag and fsxattr
 * pair that lsattr/chattr pass through (core/file.c). libfuse issues FUSE_DEV_IOC_CLONE only
 * with clone_fd, which stratafs leaves off; it is allowed so that turning it on does not turn
 * into a silent failure. FUSE_DEV_IOC_BACKING_OPEN/CLOSE register backing files for FUSE
 * passthrough (core/file.c); the kernel refuses them without CAP_SYS_ADMIN anyway. isatty()
 * in stdio asks TCGETS. */
static const unsigned long allowed_ioctls[] = { FICLONE,
						FS_IOC_GETFLAGS,
						FS_IOC_SETFLAGS,
						FS_IOC_FSGETXATTR,
						FS_IOC_FSSETXATTR,
						FUSE_DEV_IOC_CLONE,
						FUSE_DEV_IOC_BACKING_OPEN,
						FUSE_DEV_IOC_BACKING_CLOSE,
						TCGETS };

int ovl_sandbox_seccomp_build(void **out, char *err, size_t errlen)
{
	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ERRNO(ENOSYS));
	if (!ctx) {
		snprintf(err, errlen, "seccomp_init failed");
		return -1;
	}
	int r = 0;
	const char *what = "";
	for (int i = 0; allowed[i] && r == 0; i++) {
		int nr = seccomp_syscall_resolve_name(allowed[i]);
		if (nr == __NR_SCMP_ERROR)
			continue; /* not on this architecture */
		what = allowed[i];
		r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0);
	}
	for (int i = 0; refused[i] && r == 0; i++) {
		int nr = seccomp_syscall_resolve_name(refused[i]);
		if (nr == __NR_SCMP_ERROR)
			continue;
		what = refused[i];
		r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), nr, 0);
	}
	/* ioctl: the request is an unsigned int in the kernel; compare the low 32 bits */
	for (size_t i = 0; i < sizeof(allowed_ioctls) / sizeof(allowed_ioctls[0]) && r == 0; i++) {
		what = "ioctl";
		r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
				     SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffUL,
					     allowed_ioctls[i] & 0xffffffffUL));
	}
	/* threads only: clone without any namespace flag; clone3 hides its flags in memory,
	 * so it answers ENOSYS and glibc falls back to clone */
	if (r == 0) {
		what = "clone";
		r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1,
				     SCMP_A0(SCMP_CMP_MASKED_EQ,
					     CLONE_NEWNS | CLONE_NEWUSER | CLONE_NEWPID |
						     CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS |
						     CLONE_NEWCGROUP | CLONE_NEWTIME,
					     0));
	}
	if (r == 0) {
		/* a filter shared by every thread, also any a library started already */
		what = "TSYNC";
		r = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1);
	}
	if (r < 0) {
		snprintf(err, errlen, "seccomp rule for %s: %s", what, strerror(-r));
		seccomp_release(ctx);
		return -1;
	}
	*out = ctx;
	return 0;
}

int ovl_sandbox_seccomp_load(void *filter, char *err, size_t errlen)
{
	int r = seccomp_load(filter);
	seccomp_release(filter);
	if (r < 0) {
		snprintf(err, errlen, "loading the seccomp filter: %s", strerror(-r));
		return -1;
	}
	return 0;
}

/* ---- the whole sandbox --------------------------------------------------------------------- */

/* Is this process in the initial user namespace? Its uid_map there is the identity over the
 * whole range; a user namespace maps less (a full identity map needs real root to set up, and
 * then the kernel's own answer, core/file.c, still tells). */
static bool initial_user_ns(void)
{
	char buf[256];
	unsigned a, b, n;
	if (read_small_file(AT_FDCWD, "/proc/self/uid_map", buf, sizeof(buf)) < 0)
		return false;
	int used = 0;
	if (sscanf(buf, "%u %u %u %n", &a, &b, &n, &used) != 3)
		return false;
	return a == 0 && b == 0 && n == 4294967295u && buf[used] == '\0';
}

/* FUSE passthrough: the kernel registers a backing file only for a server with CAP_SYS_ADMIN
 * in the initial user namespace (fs/fuse/backing.c). So it is kept when passthrough was asked
 * for explicitly (passthrough=1|all; the strata driver's options.passthrough), the build can
 * do it and the writeback cache does not rule it out, and only in the initial user
 * namespace: in any other the kernel refuses passthrough whatever the server holds. */
static int passthrough_needs_sys_admin(struct ovl_fs *fs, bool initial_ns, const char **reason)
{
#ifdef HAVE_FUSE_PASSTHROUGH
	if (!fs->p.passthrough || !fs->p.passthrough_asked || fs->p.writeback)
		return 0;
	if (!initial_ns) {
		fprintf(stderr, "stratafs: sandbox: CAP_SYS_ADMIN not kept for FUSE passthrough: "
				"in a user namespace the kernel refuses passthrough anyway\n");
		return 0;
	}
	*reason = "FUSE passthrough was asked for";
	return 1;
#else
	(void)fs, (void)initial_ns, (void)reason;
	return 0;
#endif
}

/* Decides whether the server must keep CAP_SYS_ADMIN. Linux lets only CAP_SYS_ADMIN read or
 * write trusted.* xattrs; without it they read as absent, silently. So it is kept when the
 * overlay depends on trusted.overlay.*: the upper was probed to take them (root on a
 * filesystem with trusted xattrs: kernel-compatible markers are written there), or a lower
 * layer carries them (an opaque dir would otherwise show its hidden content). With
 * sandbox=userxattr it is not kept for them: markers go to user.overlay.* (what the kernel's
 * overlayfs reads with -o userxattr) and trusted.overlay.* in any layer is an error. It is
 * also kept when FUSE passthrough was asked for (passthrough_needs_sys_admin). */
static int need_sys_admin(struct ovl_fs *fs, const char **reason, char *err, size_t errlen)
{
	bool user_only = fs->p.sandbox == OVL_SANDBOX_USERXATTR;
	*reason = NULL;
	if (fs->has_upper && fs->feat.private_prefix &&
	    !strncmp(fs->feat.private_prefix, "trusted.", 8)) {
		if (!user_only) {
			*reason = "the upper layer takes trusted.overlay.* markers";
			return 1;
		}
		fs->feat.opaque_xattr = NULL;
		fs->feat.private_prefix = NULL;
		char path[64];
		/* "/." so that the l*xattr calls act on the directory, not on the /proc link */
		snprintf(path, sizeof(path), "/proc/self/fd/%d/.", fs->workfd);
		if (lsetxattr(path, "user.overlay.strata-probe", "y", 1, 0) == 0) {
			lremovexattr(path, "user.overlay.strata-probe");
			fs->feat.opaque_xattr = "user.overlay.opaque";
			fs->feat.private_prefix = "user.overlay.";
		}
	}
	/* in a user namespace trusted.* reads as absent whatever we hold: no walk can see it */
	bool initial_ns = initial_user_ns();
	for (int i = 0; i < fs->nlayers && initial_ns; i++) {
		int r = ovl_sandbox_layer_uses_trusted(fs->layers[i].fd, 1000000);
		if (r < 0) {
			snprintf(err, errlen, "scanning layer '%s' for trusted.overlay xattrs: %s",
				 fs->layers[i].path, strerror(-r));
			return -1;
		}
		if (r == 0)
			continue;
		if (user_only) {
			snprintf(
				err, errlen,
				"layer '%s' carries trusted.overlay.* xattrs, which cannot be read "
				"without CAP_SYS_ADMIN (userxattr)",
				fs->layers[i].path);
			return -1;
		}
		*reason = "a layer carries trusted.overlay.* markers";
		return 1;
	}
	return passthrough_needs_sys_admin(fs, initial_ns, reason);
}

int ovl_sandbox_apply(struct ovl_fs *fs, char *err, size_t errlen)
{
	if (fs->p.sandbox == OVL_SANDBOX_OFF)
		return 0;
	void *filter = NULL;
	if (ovl_sandbox_seccomp_build(&filter, err, errlen) < 0)
		return -1;
	const char *reason;
	int sys_admin = need_sys_admin(fs, &reason, err, errlen);
	if (sys_admin < 0)
		goto fail;
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
		snprintf(err, errlen, "PR_SET_NO_NEW_PRIVS: %s", strerror(errno));
		goto fail;
	}
	/* pthread_cancel (libfuse's multi-threaded loop ends its workers with it) loads
	 * libgcc_s on first use: once the old root is gone that dlopen fails and glibc
	 * aborts the server at unmount. Load it while the libraries are still reachable. */
	dlopen("libgcc_s.so.1", RTLD_NOW | RTLD_GLOBAL | RTLD_NODELETE);
	if (ovl_sandbox_private_root(err, errlen) < 0)
		goto fail;
	if (ovl_sandbox_drop_caps(sys_admin == 1, err, errlen) < 0)
		goto fail;
	/* one line for the log: what was kept and why (strata status reads the rest from /proc) */
	fprintf(stderr, "stratafs: sandbox: no_new_privs, private mount namespace, seccomp, %s\n",
		sys_admin ? "CAP_SYS_ADMIN kept" : "no CAP_SYS_ADMIN");
	if (reason)
		fprintf(stderr, "stratafs: sandbox: CAP_SYS_ADMIN kept: %s\n", reason);
	return ovl_sandbox_seccomp_load(filter, err, errlen);
fail:
	seccomp_release(filter);
	return -1;
}
