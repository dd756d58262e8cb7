/* test_sandbox.c - core/sandbox.c from inside: each part, applied in a child process, does
 * what it claims (the refused syscalls fail, the allowed ones and threads still work, the
 * capability sets and the mount namespace are what /proc says). Needs root. */
#include "ovl.h"
#include "tap.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sys/xattr.h>

/* Runs fn in a child; its exit status is the number of failed checks (printed there). */
static int in_child(int (*fn)(void))
{
	fflush(stdout);
	pid_t p = fork();
	if (p == 0) {
		int r = fn();
		fflush(stdout);
		_exit(r);
	}
	int st;
	waitpid(p, &st, 0);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 100 + WTERMSIG(st);
}

static unsigned long long status_hex(const char *key)
{
	FILE *f = fopen("/proc/self/status", "re");
	char line[256];
	unsigned long long v = ~0ull;
	size_t kl = strlen(key);
	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, key, kl) && line[kl] == ':')
			v = strtoull(line + kl + 1, NULL, 16);
	if (f)
		fclose(f);
	return v;
}

static void *thread_fn(void *arg)
{
	return arg;
}

static int seccomp_child(void)
{
	char err[256] = "";
	void *filter = NULL;
	int bad = 0;
	prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
	if (ovl_sandbox_seccomp_build(&filter, err, sizeof(err)) < 0 ||
	    ovl_sandbox_seccomp_load(filter, err, sizeof(err)) < 0) {
		printf("not ok - seccomp filter loads (%s)\n", err);
		return 1;
	}
#define T(name, cond)                                                    \
	do {                                                             \
		if (cond)                                                \
			printf("ok - %s\n", name);                       \
		else {                                                   \
			printf("not ok - %s (errno %d)\n", name, errno); \
			bad++;                                           \
		}                                                        \
	} while (0)
	T("seccomp: Seccomp is 2 (filter) in /proc/self/status", status_hex("Seccomp") == 2);
	errno = 0;
	T("seccomp: mount is refused (EPERM)",
	  mount("none", "/tmp", "tmpfs", 0, NULL) < 0 && errno == EPERM);
	T("seccomp: umount2 is refused", umount2("/tmp", MNT_DETACH) < 0 && errno == EPERM);
	T("seccomp: unshare is refused", unshare(CLONE_NEWNS) < 0 && errno == EPERM);
	T("seccomp: setns is refused", syscall(SYS_setns, 0, 0) < 0 && errno == EPERM);
	T("seccomp: pivot_root is refused",
	  syscall(SYS_pivot_root, "/", "/") < 0 && errno == EPERM);
	T("seccomp: ptrace is refused", ptrace(PTRACE_TRACEME, 0, 0, 0) < 0 && errno == EPERM);
	T("seccomp: bpf is refused", syscall(SYS_bpf, 0, 0, 0) < 0 && errno == EPERM);
	T("seccomp: keyctl is refused", syscall(SYS_keyctl, 0, 0, 0, 0, 0) < 0 && errno == EPERM);
	T("seccomp: add_key is refused", syscall(SYS_add_key, 0, 0, 0, 0, 0) < 0 && errno == EPERM);
	T("seccomp: init_module is refused",
	  syscall(SYS_init_module, 0, 0, 0) < 0 && errno == EPERM);
	T("seccomp: finit_module is refused",
	  syscall(SYS_finit_module, -1, "", 0) < 0 && errno == EPERM);
	T("seccomp: kexec_load is refused",
	  syscall(SYS_kexec_load, 0, 0, 0, 0) < 0 && errno == EPERM);
	T("seccomp: execve is refused",
	  execl("/bin/true", "true", (char *)NULL) < 0 && errno == EPERM);
	T("seccomp: socket is refused", socket(AF_INET, SOCK_STREAM, 0) < 0 && errno == EPERM);
	T("seccomp: an unlisted syscall fails (ENOSYS)",
	  syscall(SYS_sethostname, "x", 1) < 0 && errno == ENOSYS);
	T("seccomp: clone with a namespace flag fails",
	  syscall(SYS_clone, CLONE_NEWNET | SIGCHLD, 0, 0, 0, 0) < 0);
	int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
	char buf[64];
	T("seccomp: open and read work", fd >= 0 && read(fd, buf, sizeof(buf)) > 0);
	T("seccomp: a filesystem ioctl (FS_IOC_GETFLAGS) is let through",
	  fd < 0 || ioctl(fd, FS_IOC_GETFLAGS, buf) == 0 || errno != ENOSYS);
	T("seccomp: an unlisted ioctl (TIOCSTI) fails",
	  ioctl(0, TIOCSTI, "x") < 0 && errno == ENOSYS);
	if (fd >= 0)
		close(fd);
	pthread_t th;
	void *ret = NULL;
	T("seccomp: threads still start (clone3 falls back to clone)",
	  pthread_create(&th, NULL, thread_fn, (void *)7) == 0 && pthread_join(th, &ret) == 0 &&
		  ret == (void *)7);
	char tmpl[] = "/tmp/strata-sb.XXXXXX";
	int tf = mkstemp(tmpl);
	T("seccomp: xattrs, fchmod, unlink work",
	  tf >= 0 && fchmod(tf, 0600) == 0 &&
		  (fsetxattr(tf, "user.t", "1", 1, 0) == 0 || errno == ENOTSUP) &&
		  unlink(tmpl) == 0);
	return bad;
}

static int caps_child(void)
{
	char err[256] = "";
	int bad = 0;
	if (ovl_sandbox_drop_caps(false, err, sizeof(err)) < 0) {
		printf("not ok - caps: drop (%s)\n", err);
		return 1;
	}
	unsigned long long want = 0;
	for (int i = 0; ovl_sandbox_caps[i].cap >= 0; i++)
		want |= 1ull << ovl_sandbox_caps[i].cap;
	T("caps: CapEff is exactly the documented set", status_hex("CapEff") == want);
	T("caps: CapPrm is exactly the documented set", status_hex("CapPrm") == want);
	T("caps: CapBnd is exactly the documented set", status_hex("CapBnd") == want);
	T("caps: CapInh and CapAmb are empty",
	  status_hex("CapInh") == 0 && status_hex("CapAmb") == 0);
	T("caps: CAP_SYS_ADMIN is gone (trusted.* xattrs refused)",
	  !(status_hex("CapEff") & (1ull << CAP_SYS_ADMIN)));
	return bad;
}

static int caps_admin_child(void)
{
	char err[256] = "";
	int bad = 0;
	if (ovl_sandbox_drop_caps(true, err, sizeof(err)) < 0) {
		printf("not ok - caps: drop keeping CAP_SYS_ADMIN (%s)\n", err);
		return 1;
	}
	T("caps: keep_sys_admin keeps CAP_SYS_ADMIN and nothing more",
	  status_hex("CapEff") & (1ull << CAP_SYS_ADMIN) &&
		  !(status_hex("CapEff") & (1ull << CAP_SYS_PTRACE)) &&
		  !(status_hex("CapEff") & (1ull << CAP_NET_ADMIN)));
	return bad;
}

static int ns_child(void)
{
	char err[256] = "";
	int bad = 0;
	char before[64] = "", after[64] = "";
	if (readlink("/proc/self/ns/mnt", before, sizeof(before) - 1) < 0)
		bad++;
	int keep = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (ovl_sandbox_private_root(err, sizeof(err)) < 0) {
		printf("not ok - namespace: private root (%s)\n", err);
		return 1;
	}
	if (readlink("/proc/self/ns/mnt", after, sizeof(after) - 1) < 0)
		bad++;
	T("namespace: a new mount namespace", strcmp(before, after) != 0);
	DIR *d = opendir("/");
	int n = 0, proc = 0;
	struct dirent *de;
	while (d && (de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
			n++;
			proc += !strcmp(de->d_name, "proc");
		}
	if (d)
		closedir(d);
	T("namespace: the root holds /proc and nothing else", n == 1 && proc == 1);
	struct stat st;
	T("namespace: /etc is not reachable by path", stat("/etc/passwd", &st) < 0);
	T("namespace: the root is read-only", mkdir("/x", 0700) < 0 && errno == EROFS);
	char p[64];
	snprintf(p, sizeof(p), "/proc/self/fd/%d/etc", keep);
	T("namespace: fds opened before still reach their files", stat(p, &st) == 0);
	return bad;
}

static int layer_scan(void)
{
	char d[] = "/tmp/strata-scan.XXXXXX";
	if (!mkdtemp(d))
		return -1;
	char p[256];
	snprintf(p, sizeof(p), "%s/a/b/c", d);
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "mkdir -p %s", p);
	if (system(cmd) != 0)
		return -1;
	int fd = open(d, O_PATH | O_DIRECTORY | O_CLOEXEC);
	int none = ovl_sandbox_layer_uses_trusted(fd, 1000);
	int r = setxattr(p, "trusted.overlay.opaque", "y", 1, 0);
	int found = r == 0 ? ovl_sandbox_layer_uses_trusted(fd, 1000) : 1;
	int bounded = ovl_sandbox_layer_uses_trusted(fd, 1);
	close(fd);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", d);
	if (system(cmd) != 0)
		return -1;
	if (!(none == 0 && found == 1 && bounded == 1))
		printf("# scan: none=%d found=%d (setxattr %d) bounded=%d\n", none, found, r,
		       bounded);
	return none == 0 && found == 1 && bounded == 1 ? 0 : -1;
}

int main(void)
{
	if (geteuid() != 0) {
		printf("# skip: the sandbox tests need root (capabilities, mount namespaces)\n");
		return 77;
	}
	CHECK("the documented capability set is small",
	      ovl_sandbox_caps[7].cap == -1 && ovl_sandbox_caps[0].why);
	CHECK("seccomp: every check held", in_child(seccomp_child) == 0);
	CHECK("caps: every check held", in_child(caps_child) == 0);
	CHECK("caps: CAP_SYS_ADMIN when asked", in_child(caps_admin_child) == 0);
	CHECK("namespace: every check held", in_child(ns_child) == 0);
	CHECK("trusted.overlay scan finds markers deep down, and stops at its bound",
	      layer_scan() == 0);
	TAP_DONE();
}
