/* main.c - argv to params, opening the layers, the FUSE session and mount, daemonizing
 * once the mount answers, the request loop and teardown. No filesystem logic here. */
#include "ovl.h"

#include <fcntl.h>
#include <getopt.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/statfs.h>
#include <sys/wait.h>

#define FUSE_SUPER_MAGIC 0x65735546

static void usage(FILE *f)
{
	fprintf(f, "usage: stratafs [-f] [-d] [--version] [--help] -o OPTIONS [SOURCE] MOUNTPOINT\n"
		   "\n"
		   "A FUSE overlay filesystem, on-disk compatible with the kernel's overlayfs.\n"
		   "\n"
		   "options:\n"
		   "  lowerdir=A:B:C     lower layers, topmost first (\\: and \\\\ escape)\n"
		   "  upperdir=DIR       writable layer (needs workdir=)\n"
		   "  workdir=DIR        scratch dir on the upper's filesystem\n"
		   "  volatile, fsync=0  never fsync\n"
		   "  timeout=SECONDS    kernel cache timeout for entries and attributes\n"
		   "  threaded=0|1       multi-threaded request loop (default 1)\n"
		   "  spin=US            poll /dev/fuse US us before sleeping (default 50; 0 on\n"
		   "                     one CPU or where idle CPUs poll)\n"
		   "  writeback=1        kernel writeback cache\n"
		   "  passthrough=0|1|all  FUSE passthrough (default 1: upper files)\n"
		   "  noacl, noxattrs=1  disable POSIX ACLs / all xattrs\n"
		   "  ino32_t            fold inode numbers to 32 bits\n"
		   "  static_nlink       report nlink 1 for directories\n"
		   "  context=, fast_ino, xino=, redirect_dir=   accepted for compatibility\n"
		   "  rw ro dev nodev suid nosuid exec noexec atime noatime defaults\n"
		   "  -f                 stay in the foreground\n"
		   "  -d                 debug output (implies -f)\n");
}

/* The first line of a small file into buf; false (buf empty) when it cannot be read. */
static bool read_line(const char *path, char *buf, size_t len)
{
	buf[0] = 0;
	FILE *f = fopen(path, "re");
	if (!f)
		return false;
	bool ok = fgets(buf, (int)len, f) != NULL;
	fclose(f);
	if (!ok)
		buf[0] = 0;
	return ok;
}

/* Whether idle CPUs poll for a wake-up for a while before they halt: cpuidle-haltpoll with
 * guest_halt_poll_ns above 0 (KVM guests), or idle=poll. Writes a short reason into why. */
static bool idle_cpus_poll(char *why, size_t len)
{
	char line[4096];
	if (read_line("/sys/devices/system/cpu/cpuidle/current_driver", line, sizeof(line)) &&
	    !strcmp(line, "haltpoll\n") &&
	    read_line("/sys/module/haltpoll/parameters/guest_halt_poll_ns", line, sizeof(line))) {
		long v = strtol(line, NULL, 10);
		if (v > 0) {
			snprintf(why, len, "idle CPUs poll: haltpoll guest_halt_poll_ns=%ld", v);
			return true;
		}
	}
	if (read_line("/proc/cmdline", line, sizeof(line)))
		for (char *w = strtok(line, " \n"); w; w = strtok(NULL, " \n"))
			if (!strcmp(w, "idle=poll")) {
				snprintf(why, len, "idle CPUs poll: idle=poll");
				return true;
			}
	return false;
}

/* Polling /dev/fuse pays only when the client can run on another CPU meanwhile, and when an
 * idle CPU halts: where idle CPUs poll before halting, a sleeping server thread is woken
 * without an interrupt anyway, and a spinning one only takes the CPU the client's reply has
 * to be woken on (measured: docs/performance.md, "Idle polling"). */
static unsigned default_spin_us(char *why, size_t len)
{
	cpu_set_t set;
	if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) < 2) {
		snprintf(why, len, "one CPU");
		return 0;
	}
	if (idle_cpus_poll(why, len))
		return 0;
	snprintf(why, len, "default");
	return OVL_LOOP_SPIN_US;
}

static int add_opts(struct ovl_params *p, const char *s)
{
	char err[512] = "";
	if (ovl_parse_opts(p, s, err, sizeof(err)) < 0) {
		fprintf(stderr, "stratafs: %s\n", err);
		return -1;
	}
	return 0;
}

static int parse_args(int argc, char **argv, struct ovl_params *p)
{
	static const struct option longopts[] = { { "help", no_argument, NULL, 'h' },
						  { "version", no_argument, NULL, 'V' },
						  { NULL, 0, NULL, 0 } };
	char *pos[2];
	int npos = 0;
	int c;
	p->threaded = true;
	p->spin_us = -1;
	p->passthrough = 1;
	p->squash_uid = p->squash_gid = -1;
	while ((c = getopt_long(argc, argv, "-fdho:Vs", longopts, NULL)) != -1) {
		switch (c) {
		case 'f':
			p->foreground = true;
			break;
		case 'd':
			p->debug = p->foreground = true;
			break;
		case 's':
			p->threaded = false;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		case 'V':
			printf("stratafs %s (libfuse %s)\n", STRATA_VERSION, fuse_pkgversion());
			exit(0);
		case 'o':
			if (add_opts(p, optarg) < 0)
				return -1;
			break;
		case 1:
			if (npos == 2) {
				fprintf(stderr, "stratafs: unexpected argument '%s'\n", optarg);
				return -1;
			}
			pos[npos++] = optarg;
			break;
		default:
			usage(stderr);
			return -1;
		}
	}
	if (npos > 0)
		p->mountpoint = strdup(pos[npos - 1]); /* SOURCE, if given, is ignored */
	char err[512] = "";
	if (ovl_params_validate(p, err, sizeof(err)) < 0) {
		fprintf(stderr, "stratafs: %s\n", err);
		return -1;
	}
	return 0;
}

/* Checks from outside the server that the mount is live. */
static int check_mounted(const char *mnt)
{
	struct statfs sf;
	struct stat st, pst;
	if (statfs(mnt, &sf) < 0) {
		fprintf(stderr, "stratafs: %s: mount does not answer: %s\n", mnt, strerror(errno));
		return -1;
	}
	if ((unsigned long)sf.f_type != FUSE_SUPER_MAGIC) {
		fprintf(stderr, "stratafs: %s: not a FUSE mount after mounting\n", mnt);
		return -1;
	}
	char parent[PATH_MAX];
	snprintf(parent, sizeof(parent), "%s/..", mnt);
	if (stat(mnt, &st) < 0 || stat(parent, &pst) < 0 || st.st_dev == pst.st_dev) {
		fprintf(stderr, "stratafs: %s: mount is not visible\n", mnt);
		return -1;
	}
	return 0;
}

static void raise_nofile(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static int cache_size(void)
{
	struct rlimit rl;
	long max = 4096;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
		/* keep most of the fd budget for open files */
		long quarter = (long)rl.rlim_cur / 4;
		if (quarter < max)
			max = quarter > 16 ? quarter : 16;
	}
	return (int)max;
}

static char *fuse_mount_opts(struct ovl_fs *fs)
{
	char *o = NULL;
	const char *fsname = "stratafs";
	/* libfuse mounts nosuid by default; like fuse-overlayfs (and the kernel's overlayfs
	 * under podman) a root mount keeps setuid binaries working unless told otherwise */
	if (asprintf(&o, "fsname=%s,subtype=stratafs,default_permissions,allow_other%s%s%s%s",
		     fsname, geteuid() == 0 ? ",suid" : "", fs->has_upper ? "" : ",ro",
		     fs->p.vfs_opts ? "," : "", fs->p.vfs_opts ? fs->p.vfs_opts : "") < 0)
		return NULL;
	return o;
}

int main(int argc, char **argv)
{
	static struct ovl_fs fs;
	struct ovl_params *p = &fs.p;
	if (parse_args(argc, argv, p) < 0)
		return 1;
	/* a daemon must not hold its caller's pipes (bats, podman wait for EOF on them);
	 * a /dev/fd/N mountpoint is an fd handed to us on purpose */
	if (strncmp(p->mountpoint, "/dev/fd/", 8) != 0)
		close_range(3, ~0U, 0);
	umask(0);
	raise_nofile();

	char err[1024] = "";
	if (ovl_layers_open(&fs, err, sizeof(err)) < 0) {
		fprintf(stderr, "stratafs: %s\n", err);
		return 1;
	}
	fs.timeout = p->timeout_set ? p->timeout : 86400.0;
	if (ovl_nodes_init(&fs) < 0 || ovl_fdcache_init(&fs, cache_size()) < 0) {
		fprintf(stderr, "stratafs: out of memory\n");
		return 1;
	}

	autofree char *mopts = fuse_mount_opts(&fs);
	char *fargv[] = { argv[0], "-o", mopts, p->debug ? "-d" : NULL, NULL };
	struct fuse_args args = FUSE_ARGS_INIT(p->debug ? 4 : 3, fargv);
	struct fuse_session *se = fuse_session_new(&args, &ovl_ops, sizeof(ovl_ops), &fs);
	fuse_opt_free_args(&args); /* the session keeps copies of what it needs */
	if (!se) {
		fprintf(stderr, "stratafs: cannot create the FUSE session\n");
		return 1;
	}
	fs.se = se;
	if (fuse_session_mount(se, p->mountpoint) != 0) {
		fprintf(stderr, "stratafs: cannot mount on '%s'\n", p->mountpoint);
		fuse_session_destroy(se);
		return 1;
	}

	if (!p->foreground) {
		int pfd[2];
		if (pipe2(pfd, O_CLOEXEC) < 0) {
			fprintf(stderr, "stratafs: pipe: %s\n", strerror(errno));
			fuse_session_unmount(se);
			return 1;
		}
		pid_t pid = fork();
		if (pid < 0) {
			fprintf(stderr, "stratafs: fork: %s\n", strerror(errno));
			fuse_session_unmount(se);
			return 1;
		}
		if (pid > 0) {
			close(pfd[1]);
			char b;
			ssize_t n;
			do
				n = read(pfd[0], &b, 1);
			while (n < 0 && errno == EINTR);
			if (n == 1 && check_mounted(p->mountpoint) == 0)
				_exit(0);
			if (n != 1)
				fprintf(stderr, "stratafs: the server exited before serving\n");
			kill(pid, SIGTERM);
			waitpid(pid, NULL, 0);
			fuse_session_unmount(se);
			_exit(1);
		}
		close(pfd[0]);
		setsid();
		if (chdir("/") < 0) {
			/* nothing relies on the cwd after the layers are open */
		}
		int nul = open("/dev/null", O_RDWR | O_CLOEXEC);
		if (nul >= 0) {
			dup2(nul, 0);
			dup2(nul, 1);
			dup2(nul, 2);
			if (nul > 2)
				close(nul);
		}
		if (write(pfd[1], "1", 1) != 1)
			_exit(1);
		close(pfd[1]);
	}

	/* before the sandbox: its root has no /sys */
	char why[96] = "spin=";
	unsigned spin = p->spin_us >= 0 ? (unsigned)p->spin_us : default_spin_us(why, sizeof(why));
	unsigned threads = p->threaded ? 16 : 1;
	if (p->debug)
		fprintf(stderr, "stratafs: request loop: up to %u threads, spin %u us (%s)\n",
			threads, spin, why);

	/* confine the server (sandbox=1, from the strata driver) before it serves anything */
	if (ovl_sandbox_apply(&fs, err, sizeof(err)) < 0) {
		fprintf(stderr, "stratafs: sandbox: %s\n", err);
		fuse_session_unmount(se);
		fuse_session_destroy(se);
		return 1;
	}
	fuse_set_signal_handlers(se);
	int r = ovl_loop_run(se, threads, spin);
	if (r < 0)
		fprintf(stderr, "stratafs: request loop: %s\n", strerror(-r));
	fuse_remove_signal_handlers(se);
	fuse_session_unmount(se);
	fuse_session_destroy(se);
	ovl_fdcache_destroy(&fs);
	ovl_nodes_destroy(&fs);
	ovl_layers_close(&fs);
	ovl_params_free(p);
	return r < 0 ? 1 : 0;
}
