/* whiteout.c - the only file that knows the on-disk markers: whiteout and opaque forms,
 * and which xattr names are private to the overlay. */
#include "ovl.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>

#define WH_PREFIX ".wh."
#define WH_OPQ ".wh..wh..opq"

static const char *const opaque_xattrs[] = { "trusted.overlay.opaque", "user.overlay.opaque",
					     "user.fuseoverlayfs.opaque", NULL };
static const char *const private_prefixes[] = { "trusted.overlay.", "user.overlay.",
						"user.fuseoverlayfs.", NULL };

void ovl_fdpath(char *buf, size_t len, int dirfd, const char *name)
{
	if (name && *name)
		snprintf(buf, len, "/proc/self/fd/%d/%s", dirfd, name);
	else
		snprintf(buf, len, "/proc/self/fd/%d", dirfd);
}

bool ovl_is_whiteout_stat(const struct stat *st)
{
	return S_ISCHR(st->st_mode) && st->st_rdev == makedev(0, 0);
}

bool ovl_is_wh_name(const char *name)
{
	return strncmp(name, WH_PREFIX, sizeof(WH_PREFIX) - 1) == 0;
}

bool ovl_is_private_xattr(const char *name)
{
	for (int i = 0; private_prefixes[i]; i++)
		if (!strncmp(name, private_prefixes[i], strlen(private_prefixes[i])))
			return true;
	return false;
}

bool ovl_has_wh_file(int dirfd, const char *name)
{
	char wh[NAME_MAX + 8];
	struct stat st;
	if (strlen(name) + sizeof(WH_PREFIX) > sizeof(wh))
		return false;
	snprintf(wh, sizeof(wh), WH_PREFIX "%s", name);
	return fstatat(dirfd, wh, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

int ovl_is_opaque(int dirfd, const char *name)
{
	char path[PATH_MAX];
	char list[4096];
	/* "." so that the l*xattr calls act on the directory, not on the /proc link */
	ovl_fdpath(path, sizeof(path), dirfd, *name ? name : ".");
	ssize_t n = llistxattr(path, list, sizeof(list));
	if (n < 0 && errno == ERANGE) {
		/* a huge list: check each marker directly */
		n = 0;
		for (int i = 0; opaque_xattrs[i]; i++) {
			char v[4];
			ssize_t r = lgetxattr(path, opaque_xattrs[i], v, sizeof(v));
			if (r == 1 && v[0] == 'y')
				return 1;
		}
	}
	for (ssize_t off = 0; n > 0 && off < n; off += strlen(list + off) + 1) {
		for (int i = 0; opaque_xattrs[i]; i++) {
			if (strcmp(list + off, opaque_xattrs[i]))
				continue;
			char v[4];
			ssize_t r = lgetxattr(path, opaque_xattrs[i], v, sizeof(v));
			if (r == 1 && v[0] == 'y')
				return 1;
		}
	}
	int fd = *name ? openat(dirfd, name, O_PATH | O_NOFOLLOW | O_DIRECTORY | O_CLOEXEC) :
			 fcntl(dirfd, F_DUPFD_CLOEXEC, 3);
	if (fd < 0)
		return -errno;
	struct stat st;
	int r = fstatat(fd, WH_OPQ, &st, AT_SYMLINK_NOFOLLOW) == 0;
	close(fd);
	return r;
}

int ovl_set_opaque(struct ovl_fs *fs, int dirfd, const char *name)
{
	if (fs->feat.opaque_xattr) {
		char path[PATH_MAX];
		ovl_fdpath(path, sizeof(path), dirfd, name);
		if (lsetxattr(path, fs->feat.opaque_xattr, "y", 1, 0) < 0)
			return -errno;
		return 0;
	}
	int d = openat(dirfd, name, O_PATH | O_NOFOLLOW | O_DIRECTORY | O_CLOEXEC);
	if (d < 0)
		return -errno;
	int f = openat(d, WH_OPQ, O_CREAT | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0000);
	int err = f < 0 ? -errno : 0;
	if (f >= 0)
		close(f);
	close(d);
	return err;
}

int ovl_create_whiteout(struct ovl_fs *fs, int udirfd, const char *name)
{
	if (fs->feat.wh_mknod) {
		char tmp[64];
		ovl_tmpname(fs, tmp, sizeof(tmp));
		if (mknodat(fs->workfd, tmp, S_IFCHR | 0000, makedev(0, 0)) < 0)
			return -errno;
		if (renameat(fs->workfd, tmp, udirfd, name) < 0) {
			int e = -errno;
			unlinkat(fs->workfd, tmp, 0);
			/* replacing a directory: exchange, then remove the old one */
			if (e == -EISDIR || e == -ENOTEMPTY || e == -EEXIST) {
				if (mknodat(fs->workfd, tmp, S_IFCHR | 0000, makedev(0, 0)) < 0)
					return -errno;
				if (renameat2(fs->workfd, tmp, udirfd, name, RENAME_EXCHANGE) < 0) {
					e = -errno;
					unlinkat(fs->workfd, tmp, 0);
					return e;
				}
				return ovl_rm_rf_at(fs->workfd, tmp);
			}
			return e;
		}
		return 0;
	}
	/* .wh.NAME form: remove what is there, then drop the marker */
	char wh[NAME_MAX + 8];
	if (strlen(name) + sizeof(WH_PREFIX) > sizeof(wh))
		return -ENAMETOOLONG;
	struct stat st;
	if (fstatat(udirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
		int r = S_ISDIR(st.st_mode) ? ovl_rm_rf_at(udirfd, name) :
					      unlinkat(udirfd, name, 0);
		if (r < 0)
			return r == -1 ? -errno : r;
	}
	snprintf(wh, sizeof(wh), WH_PREFIX "%s", name);
	int f = openat(udirfd, wh, O_CREAT | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0000);
	if (f < 0)
		return -errno;
	close(f);
	return 0;
}

/* Removes a ".wh.NAME" marker for name in the upper dir, if there is one. */
int ovl_remove_wh_file(int udirfd, const char *name)
{
	char wh[NAME_MAX + 8];
	if (strlen(name) + sizeof(WH_PREFIX) > sizeof(wh))
		return 0;
	snprintf(wh, sizeof(wh), WH_PREFIX "%s", name);
	if (unlinkat(udirfd, wh, 0) < 0 && errno != ENOENT)
		return -errno;
	return 0;
}

/* STRATAFS_DISABLE=whiteout-mknod,xattr-trusted,xattr-user makes the probe treat those as
 * refused (as in a user namespace, or on a filesystem without them): for tests, and for
 * users who want the portable forms. */
static bool disabled(const char *what)
{
	const char *v = getenv("STRATAFS_DISABLE");
	size_t l = strlen(what);
	for (const char *p = v; p && *p;) {
		const char *e = strchr(p, ',');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		if (n == l && !strncmp(p, what, l))
			return true;
		p = e ? e + 1 : NULL;
	}
	return false;
}

int ovl_probe_upper(struct ovl_fs *fs)
{
	char tmp[64];
	ovl_tmpname(fs, tmp, sizeof(tmp));
	/* char 0/0: refused without CAP_MKNOD on older kernels (< 5.8) and in some user
	 * namespaces; then .wh.NAME files */
	fs->feat.wh_mknod = !disabled("whiteout-mknod") &&
			    mknodat(fs->workfd, tmp, S_IFCHR | 0000, makedev(0, 0)) == 0;
	if (fs->feat.wh_mknod) {
		char tmp2[64];
		ovl_tmpname(fs, tmp2, sizeof(tmp2));
		int f = openat(fs->workfd, tmp2, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
		if (f >= 0) {
			close(f);
			char tmp3[64];
			ovl_tmpname(fs, tmp3, sizeof(tmp3));
			fs->feat.rename_whiteout =
				renameat2(fs->workfd, tmp2, fs->workfd, tmp3, RENAME_WHITEOUT) == 0;
			unlinkat(fs->workfd, fs->feat.rename_whiteout ? tmp3 : tmp2, 0);
			unlinkat(fs->workfd, tmp2, 0);
		}
		unlinkat(fs->workfd, tmp, 0);
	}
	/* which xattr namespace can mark opaque dirs: trusted.* needs CAP_SYS_ADMIN in the
	 * initial user namespace, user.* a filesystem that has user xattrs; else the
	 * .wh..wh..opq file form */
	fs->feat.opaque_xattr = NULL;
	fs->feat.private_prefix = NULL;
	if (mkdirat(fs->workfd, tmp, 0700) == 0) {
		char path[PATH_MAX];
		ovl_fdpath(path, sizeof(path), fs->workfd, tmp);
		if (!fs->p.userxattr && !disabled("xattr-trusted") &&
		    lsetxattr(path, "trusted.overlay.opaque", "y", 1, 0) == 0) {
			fs->feat.opaque_xattr = "trusted.overlay.opaque";
			fs->feat.private_prefix = "trusted.overlay.";
		} else if (!disabled("xattr-user") &&
			   lsetxattr(path, "user.overlay.opaque", "y", 1, 0) == 0) {
			fs->feat.opaque_xattr = "user.overlay.opaque";
			fs->feat.private_prefix = "user.overlay.";
		}
		unlinkat(fs->workfd, tmp, AT_REMOVEDIR);
	}
	return 0;
}

int ovl_features_string(const struct ovl_fs *fs, char *buf, size_t len)
{
	if (!fs->has_upper)
		return snprintf(buf, len, "upper=none");
	return snprintf(buf, len,
			"whiteout=%s rename_whiteout=%s opaque=%s xattr_prefix=%s "
			"override_stat=%s idmap=%s",
			fs->feat.wh_mknod ? "chardev" : "file",
			fs->feat.rename_whiteout ? "yes" : "no",
			fs->feat.opaque_xattr ? fs->feat.opaque_xattr : ".wh..wh..opq",
			fs->feat.private_prefix ? fs->feat.private_prefix : "none",
			fs->p.xattr_permissions == 1 ? "security.fuseoverlayfs.override_stat" :
			fs->p.xattr_permissions == 2 ? "user.containers.override_stat" :
						       "off",
			fs->p.nuidmap || fs->p.ngidmap ? "yes" : "no");
}

static int clear_entry(int fd, const char *n, void *ctx)
{
	(void)ctx;
	struct stat st;
	if (fstatat(fd, n, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return 0;
	if (ovl_is_whiteout_stat(&st) || ovl_is_wh_name(n))
		return unlinkat(fd, n, 0) < 0 && errno != ENOENT ? -errno : 0;
	return S_ISDIR(st.st_mode) ? ovl_clear_whiteouts_at(fd, n) : 0;
}

int ovl_clear_whiteouts_at(int dirfd, const char *name)
{
	return ovl_dir_each(dirfd, name, clear_entry, NULL);
}
