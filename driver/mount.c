/* mount.c - the privileged steps: opening the spec's directories once and validating them by
 * fd (existence, kind, nesting, devices), opening /dev/fuse and mount(2)ing it on the
 * validated target, finding mounts in /proc/self/mountinfo, and detaching them. */
#include "strata.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>

#define USAGE STRATA_EXIT_USAGE
#define MAX_DEPTH 4096

/* Opens a directory the spec names. Errors that mean "the spec is wrong" exit 2. */
static int open_dir(const char *path, const char *field, const char *what, struct strata_error *err)
{
	int fd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0)
		return fd;
	int e = errno;
	switch (e) {
	case ENOENT:
		return strata_fail(err, USAGE, e, field, "%s '%s' does not exist", what, path);
	case ENOTDIR:
		return strata_fail(err, USAGE, e, field, "%s '%s' is not a directory", what, path);
	case ENOTCONN:
		return strata_fail(err, USAGE, EBUSY, field,
				   "%s '%s' is a dead FUSE mount (its server is gone)", what, path);
	case ELOOP:
	case ENAMETOOLONG:
	case EACCES:
		return strata_fail(err, USAGE, e, field, "%s '%s': %s", what, path, strerror(e));
	default:
		return strata_fail(err, STRATA_EXIT_FAIL, e, field, "%s '%s': %s", what, path,
				   strerror(e));
	}
}

struct ident {
	dev_t dev;
	ino_t ino;
};

/* The identities of fd and each of its ancestors up to the root ("..", crossing mounts). */
static int ancestry(int fd, struct ident **out, int *nout)
{
	struct ident *v = NULL;
	int n = 0;
	autoclose int cur = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	if (cur < 0)
		return -errno;
	for (int depth = 0; depth < MAX_DEPTH; depth++) {
		struct stat st;
		if (fstat(cur, &st) < 0) {
			free(v);
			return -errno;
		}
		if (n > 0 && v[n - 1].dev == st.st_dev && v[n - 1].ino == st.st_ino)
			break; /* ".." of the root is the root */
		struct ident *nv = realloc(v, sizeof(*v) * (n + 1));
		if (!nv) {
			free(v);
			return -ENOMEM;
		}
		v = nv;
		v[n++] = (struct ident){ st.st_dev, st.st_ino };
		int up = openat(cur, "..", O_PATH | O_DIRECTORY | O_CLOEXEC);
		if (up < 0) {
			free(v);
			return -errno;
		}
		close(cur);
		cur = up;
	}
	*out = v;
	*nout = n;
	return 0;
}

static bool within(const struct ident *chain, int n, int fd)
{
	struct stat st;
	if (fstat(fd, &st) < 0)
		return false;
	for (int i = 0; i < n; i++)
		if (chain[i].dev == st.st_dev && chain[i].ino == st.st_ino)
			return true;
	return false;
}

/* Is fd the root of a mount (the target is already mounted on)? */
static int is_mount_root(int fd)
{
	struct statx stx;
	if (statx(fd, "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS, &stx) < 0)
		return -errno;
	if (stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT)
		return !!(stx.stx_attributes & STATX_ATTR_MOUNT_ROOT);
	/* older kernels: the root of a mount has a different device than its parent, or is
	 * the root directory itself */
	struct stat st, pst;
	autoclose int up = openat(fd, "..", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (up < 0 || fstat(fd, &st) < 0 || fstat(up, &pst) < 0)
		return -errno;
	return st.st_dev != pst.st_dev || st.st_ino == pst.st_ino;
}

int strata_layers_open(const struct strata_spec *s, struct strata_layers *l,
		       struct strata_error *err)
{
	memset(l, 0, sizeof(*l));
	l->target = l->upper = l->work = -1;
	l->target = open_dir(s->target, "target", "target", err);
	if (l->target < 0)
		return -1;
	char proc[64], buf[PATH_MAX];
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", l->target);
	ssize_t n = readlink(proc, buf, sizeof(buf) - 1);
	if (n < 0)
		return strata_fail(err, STRATA_EXIT_FAIL, errno, "target", "resolving target: %s",
				   strerror(errno));
	buf[n] = '\0';
	l->target_path = strdup(buf);
	if (!l->target_path)
		return strata_fail(err, STRATA_EXIT_FAIL, ENOMEM, "target", "out of memory");
	int mr = is_mount_root(l->target);
	if (mr == -ENOTCONN || mr == 1)
		return strata_fail(err, USAGE, EBUSY, "target", "target '%s' is already mounted%s",
				   s->target, mr < 0 ? " (a dead FUSE mount)" : "");
	if (mr < 0)
		return strata_fail(err, STRATA_EXIT_FAIL, -mr, "target", "target '%s': %s",
				   s->target, strerror(-mr));

	l->lower = malloc(sizeof(int) * (s->nlower ? s->nlower : 1));
	if (!l->lower)
		return strata_fail(err, STRATA_EXIT_FAIL, ENOMEM, "lower", "out of memory");
	for (int i = 0; i < s->nlower; i++) {
		l->lower[i] = open_dir(s->lower[i], s->lower_field[i], "lower layer", err);
		if (l->lower[i] < 0)
			return -1;
		l->nlower++;
	}
	if (s->upper) {
		l->upper = open_dir(s->upper, s->upper_field, "upper", err);
		if (l->upper < 0)
			return -1;
		if (!s->readonly) {
			l->work = open_dir(s->work, s->work_field, "work", err);
			if (l->work < 0)
				return -1;
		}
	}

	/* nesting: the kernel's overlayfs refuses the same overlaps (and a target inside a
	 * layer would make the server walk into its own mount) */
	struct ident *tchain = NULL, *uchain = NULL, *wchain = NULL;
	int tn = 0, un = 0, wn = 0, r;
	if ((r = ancestry(l->target, &tchain, &tn)) < 0)
		return strata_fail(err, STRATA_EXIT_FAIL, -r, "target", "target: %s", strerror(-r));
	int rc = 0;
	for (int i = 0; i < l->nlower && rc == 0; i++)
		if (within(tchain, tn, l->lower[i]))
			rc = strata_fail(err, USAGE, EINVAL, "target", "target '%s' is %s %s '%s'",
					 s->target, "inside (or equal to)", s->lower_field[i],
					 s->lower[i]);
	if (rc == 0 && l->upper >= 0 && within(tchain, tn, l->upper))
		rc = strata_fail(err, USAGE, EINVAL, "target",
				 "target '%s' is inside (or equal to) upper '%s'", s->target,
				 s->upper);
	if (rc == 0 && l->work >= 0 && within(tchain, tn, l->work))
		rc = strata_fail(err, USAGE, EINVAL, "target",
				 "target '%s' is inside (or equal to) work '%s'", s->target,
				 s->work);
	if (rc == 0 && l->upper >= 0 && (r = ancestry(l->upper, &uchain, &un)) < 0)
		rc = strata_fail(err, STRATA_EXIT_FAIL, -r, s->upper_field, "upper: %s",
				 strerror(-r));
	for (int i = 0; rc == 0 && l->upper >= 0 && i < l->nlower; i++) {
		if (within(uchain, un, l->lower[i])) {
			rc = strata_fail(err, USAGE, EINVAL, s->upper_field,
					 "upper '%s' is inside (or equal to) %s '%s'", s->upper,
					 s->lower_field[i], s->lower[i]);
			break;
		}
		struct ident *lchain = NULL;
		int ln = 0;
		if ((r = ancestry(l->lower[i], &lchain, &ln)) < 0) {
			rc = strata_fail(err, STRATA_EXIT_FAIL, -r, s->lower_field[i], "%s: %s",
					 s->lower_field[i], strerror(-r));
			break;
		}
		if (within(lchain, ln, l->upper))
			rc = strata_fail(err, USAGE, EINVAL, s->lower_field[i],
					 "%s '%s' is inside upper '%s'", s->lower_field[i],
					 s->lower[i], s->upper);
		free(lchain);
	}
	if (rc == 0 && l->work >= 0) {
		struct stat ust, wst;
		if (fstat(l->upper, &ust) < 0 || fstat(l->work, &wst) < 0)
			rc = strata_fail(err, STRATA_EXIT_FAIL, errno, s->work_field, "work: %s",
					 strerror(errno));
		else if (ust.st_dev != wst.st_dev)
			rc = strata_fail(err, USAGE, EXDEV, s->work_field,
					 "work '%s' is not on the filesystem of upper '%s'",
					 s->work, s->upper);
		else if ((r = ancestry(l->work, &wchain, &wn)) < 0)
			rc = strata_fail(err, STRATA_EXIT_FAIL, -r, s->work_field, "work: %s",
					 strerror(-r));
		else if (within(wchain, wn, l->upper) || within(uchain, un, l->work))
			rc = strata_fail(err, USAGE, EINVAL, s->work_field,
					 "work '%s' and upper '%s' must not contain each other",
					 s->work, s->upper);
		for (int i = 0; rc == 0 && i < l->nlower; i++)
			if (within(wchain, wn, l->lower[i]))
				rc = strata_fail(err, USAGE, EINVAL, s->work_field,
						 "work '%s' is inside %s '%s'", s->work,
						 s->lower_field[i], s->lower[i]);
	}
	free(tchain);
	free(uchain);
	free(wchain);
	return rc;
}

void strata_layers_close(struct strata_layers *l)
{
	if (l->target >= 0)
		close(l->target);
	for (int i = 0; i < l->nlower; i++)
		close(l->lower[i]);
	free(l->lower);
	if (l->upper >= 0)
		close(l->upper);
	if (l->work >= 0)
		close(l->work);
	free(l->target_path);
	memset(l, 0, sizeof(*l));
	l->target = l->upper = l->work = -1;
}

/* mountinfo escapes space, tab, newline and backslash as \ooo */
static void unescape(char *s)
{
	char *o = s;
	for (char *p = s; *p; p++) {
		if (p[0] == '\\' && p[1] >= '0' && p[1] <= '3' && p[2] >= '0' && p[2] <= '7' &&
		    p[3] >= '0' && p[3] <= '7') {
			*o++ = (char)((p[1] - '0') * 64 + (p[2] - '0') * 8 + (p[3] - '0'));
			p += 3;
		} else {
			*o++ = *p;
		}
	}
	*o = '\0';
}

int strata_mountinfo_find(const char *path, char *dev, size_t devlen, char *fstype, size_t fslen)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return -errno;
	char *line = NULL;
	size_t cap = 0;
	int found = 0;
	while (getline(&line, &cap, f) > 0) {
		/* id parent maj:min root mountpoint options [optional...] - fstype source super */
		char *save, *tok[5];
		int n = 0;
		char *sep = strstr(line, " - ");
		if (!sep)
			continue;
		*sep = '\0';
		for (char *t = strtok_r(line, " ", &save); t && n < 5;
		     t = strtok_r(NULL, " ", &save))
			tok[n++] = t;
		if (n < 5)
			continue;
		unescape(tok[4]);
		if (strcmp(tok[4], path))
			continue;
		char *fst = strtok_r(sep + 3, " ", &save);
		snprintf(dev, devlen, "%s", tok[2]);
		snprintf(fstype, fslen, "%s", fst ? fst : "");
		found = 1; /* keep going: the last one listed is the topmost */
	}
	free(line);
	fclose(f);
	return found;
}

int strata_fuse_mount(const struct strata_spec *s, const struct strata_layers *l, char *dev,
		      size_t devlen, struct strata_error *err)
{
	autoclose int fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return strata_fail(err, STRATA_EXIT_FAIL, errno, NULL, "opening /dev/fuse: %s",
				   strerror(errno));
	char data[256], tpath[64];
	snprintf(data, sizeof(data),
		 "fd=%d,rootmode=40000,user_id=%u,group_id=%u,default_permissions,allow_other", fd,
		 (unsigned)geteuid(), (unsigned)getegid());
	/* by the validated fd: a path swapped for a symlink since cannot redirect the mount */
	snprintf(tpath, sizeof(tpath), "/proc/self/fd/%d", l->target);
	if (mount("stratafs", tpath, "fuse.stratafs", s->mflags, data) < 0) {
		int e = errno;
		/* an unprivileged user may mount FUSE only inside a user namespace that owns
		 * its mount namespace */
		return strata_fail(
			err, STRATA_EXIT_FAIL, e, "target", "mount(2) on '%s': %s%s",
			l->target_path, strerror(e),
			e == EPERM && geteuid() != 0 ?
				" (as an unprivileged user, run strata in a user and mount "
				"namespace of your own: unshare --user --map-root-user --mount)" :
				"");
	}
	char fst[64];
	int r = strata_mountinfo_find(l->target_path, dev, devlen, fst, sizeof(fst));
	if (r <= 0 || strcmp(fst, "fuse.stratafs")) {
		umount2(tpath, MNT_DETACH);
		return strata_fail(err, STRATA_EXIT_FAIL, r < 0 ? -r : ENOENT, "target",
				   "the new mount on '%s' is not in /proc/self/mountinfo",
				   l->target_path);
	}
	return steal_fd(&fd);
}

int strata_unmount_target(const char *target, const char *dev, struct strata_error *err)
{
	char cur[64], fst[64];
	int r = strata_mountinfo_find(target, cur, sizeof(cur), fst, sizeof(fst));
	if (r < 0)
		return strata_fail(err, STRATA_EXIT_FAIL, -r, NULL, "reading mountinfo: %s",
				   strerror(-r));
	if (r == 0 || strcmp(fst, "fuse.stratafs") || (dev && *dev && strcmp(cur, dev)))
		return 0; /* nothing of ours is mounted there */
	if (umount2(target, MNT_DETACH | UMOUNT_NOFOLLOW) < 0 && errno != EINVAL && errno != ENOENT)
		return strata_fail(err, STRATA_EXIT_FAIL, errno, NULL, "unmounting '%s': %s",
				   target, strerror(errno));
	return 0;
}
