/* xattr.c - extended attributes through the mount: private overlay names are filtered
 * (whiteout.c knows which), changes copy the node up first. */
#include "ovl.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/xattr.h>

/* Fills path with a /proc path naming n in its top layer without following it.
 * Returns an fd that must stay open while path is used, or -errno. */
static int node_xpath(struct ovl_fs *fs, struct ovl_node *n, char *path, size_t len)
{
	struct ovl_place pl;
	int r = ovl_node_place(fs, n, &pl);
	if (r < 0)
		return r;
	ovl_place_free(&pl);
	if (n->idx == OVL_ROOT_IDX) {
		int fd = ovl_node_layer_fd(fs, n, pl.top);
		if (fd >= 0)
			ovl_fdpath(path, len, fd, "."); /* the dir itself, not the /proc link */
		return fd;
	}
	char *name;
	int pfd = ovl_node_parent_fd(fs, n, pl.top, &name);
	if (pfd < 0)
		return pfd;
	ovl_fdpath(path, len, pfd, name);
	free(name);
	return pfd;
}

/* Names the kernel asks for over and over and that are mostly absent: ls -l asks for
 * security.selinux of every entry, every write and chown for security.capability, and FUSE
 * has no xattr cache. Their absence is remembered per node: lower layers do not change and
 * every change to the upper goes through this mount, which bumps fs->xgen after each one
 * (any node: the names of a hard link are separate nodes). */
static const char *const neg_names[] = {
	"security.selinux",	   "security.capability",      "security.ima",
	"system.posix_acl_access", "system.posix_acl_default", "security.apparmor",
};

static int neg_bit(const char *name)
{
	if (strncmp(name, "security.", 9) && strncmp(name, "system.", 7))
		return -1;
	for (size_t i = 0; i < sizeof(neg_names) / sizeof(neg_names[0]); i++)
		if (!strcmp(name, neg_names[i]))
			return (int)i;
	return -1;
}

static void xattrs_changed(struct ovl_fs *fs)
{
	atomic_fetch_add(&fs->xgen, 1);
}

ssize_t ovl_getxattr(struct ovl_fs *fs, fuse_ino_t ino, const char *name, char *buf, size_t size)
{
	if (fs->p.noxattrs)
		return -EOPNOTSUPP;
	if (ovl_is_private_xattr(name))
		return -EOPNOTSUPP;
	if (ovl_is_override_xattr(fs, name))
		return -ENODATA; /* the metadata itself, shown as owner and mode */
	struct ovl_node *n = ovl_node_get(fs, ino);
	if (!n)
		return -ESTALE;
	int bit = neg_bit(name);
	/* read before the lookup: a change that ends after it bumps past this generation */
	uint64_t gen = atomic_load(&fs->xgen) & (UINT64_MAX >> 8);
	uint64_t neg = __atomic_load_n(&n->xneg, __ATOMIC_ACQUIRE);
	if (bit >= 0 && neg >> 8 == gen && (neg & (1u << bit)))
		return -ENODATA;
	char path[PATH_MAX];
	autoclose int fd = node_xpath(fs, n, path, sizeof(path));
	if (fd < 0)
		return fd;
	ssize_t r = lgetxattr(path, name, buf, size);
	if (r < 0) {
		int e = errno;
		if (e == ENODATA && bit >= 0) {
			uint64_t keep = neg >> 8 == gen ? neg & 0xff : 0;
			__atomic_store_n(&n->xneg, gen << 8 | keep | (1u << bit), __ATOMIC_RELEASE);
		}
		return -e;
	}
	/* ACL entries name stored ids: show them as the owners are shown */
	if (size && r > 0 && ovl_is_acl_xattr(name) && ovl_idmap_acl(fs, buf, (size_t)r, true) < 0)
		return -EIO;
	return r;
}

ssize_t ovl_listxattr(struct ovl_fs *fs, fuse_ino_t ino, char *buf, size_t size)
{
	if (fs->p.noxattrs)
		return 0;
	struct ovl_node *n = ovl_node_get(fs, ino);
	if (!n)
		return -ESTALE;
	char path[PATH_MAX];
	autoclose int fd = node_xpath(fs, n, path, sizeof(path));
	if (fd < 0)
		return fd;
	ssize_t len = llistxattr(path, NULL, 0);
	if (len < 0)
		return -errno;
	autofree char *all = malloc(len + 1);
	if (!all)
		return -ENOMEM;
	len = llistxattr(path, all, len);
	if (len < 0)
		return -errno;
	size_t out = 0;
	for (ssize_t off = 0; off < len; off += strlen(all + off) + 1) {
		const char *x = all + off;
		if (ovl_is_private_xattr(x) || ovl_is_override_xattr(fs, x))
			continue;
		size_t l = strlen(x) + 1;
		if (size) {
			if (out + l > size)
				return -ERANGE;
			memcpy(buf + out, x, l);
		}
		out += l;
	}
	return (ssize_t)out;
}

int ovl_setxattr(struct ovl_fs *fs, fuse_ino_t ino, const char *name, const char *value,
		 size_t size, int flags)
{
	if (fs->p.noxattrs)
		return -EOPNOTSUPP;
	if (ovl_is_private_xattr(name))
		return -EOPNOTSUPP;
	if (ovl_is_override_xattr(fs, name))
		return -EPERM; /* owner and mode change through chown and chmod only */
	struct ovl_node *n = ovl_node_get(fs, ino);
	if (!n)
		return -ESTALE;
	int r = ovl_copy_up(fs, n, true);
	if (r < 0)
		return r;
	autofree char *mapped = NULL;
	if (ovl_is_acl_xattr(name) && (fs->p.nuidmap || fs->p.ngidmap)) {
		mapped = malloc(size ? size : 1);
		if (!mapped)
			return -ENOMEM;
		memcpy(mapped, value, size);
		r = ovl_idmap_acl(fs, mapped, size, false);
		if (r < 0)
			return r;
		value = mapped;
	}
	char path[PATH_MAX];
	autoclose int fd = node_xpath(fs, n, path, sizeof(path));
	if (fd < 0)
		return fd;
	r = lsetxattr(path, name, value, size, flags) < 0 ? -errno : 0;
	xattrs_changed(fs);
	return r;
}

int ovl_removexattr(struct ovl_fs *fs, fuse_ino_t ino, const char *name)
{
	if (fs->p.noxattrs)
		return -EOPNOTSUPP;
	if (ovl_is_private_xattr(name))
		return -EOPNOTSUPP;
	if (ovl_is_override_xattr(fs, name))
		return -EPERM;
	struct ovl_node *n = ovl_node_get(fs, ino);
	if (!n)
		return -ESTALE;
	char path[PATH_MAX];
	{
		/* nothing to remove: do not copy up for it */
		autoclose int fd = node_xpath(fs, n, path, sizeof(path));
		if (fd < 0)
			return fd;
		if (lgetxattr(path, name, NULL, 0) < 0)
			return -errno;
	}
	int r = ovl_copy_up(fs, n, true);
	if (r < 0)
		return r;
	autoclose int fd = node_xpath(fs, n, path, sizeof(path));
	if (fd < 0)
		return fd;
	r = lremovexattr(path, name) < 0 ? -errno : 0;
	xattrs_changed(fs);
	return r;
}
