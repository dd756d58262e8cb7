/* idmap.c - owners as shown through the mount versus as stored on disk: uidmapping=/gidmapping=
 * ranges, squash_to_root/squash_to_uid=/squash_to_gid=, the overflow id, and the
 * override-stat xattrs of xattr_permissions=1|2 (owner, mode and type kept in an xattr
 * instead of the inode).
 *
 * Direction (fuse-overlayfs's, which containers-storage relies on): a range "A:B:N" of
 * uidmapping= ("ContainerID:HostID:Size" as containers-storage writes it) says that the ids
 * A..A+N-1 stored in the layers are shown as B..B+N-1. An image layer keeps the ids of the
 * image (0 for root) and the mount presents them shifted into the host range the container's
 * user namespace maps, so the container sees its own ids without a chown of the layers.
 * Owners written through the mount (create, chown, copy-up) go the other way: the caller's
 * id B+k is stored as A+k. A stored id outside every range shows as the overflow id
 * (/proc/sys/kernel/overflowuid, 65534). squash_* replaces what is shown, nothing else. */
#include "ovl.h"

#include <endian.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>

#define OVERRIDE_USER "user.containers.override_stat"
#define OVERRIDE_PRIV "security.fuseoverlayfs.override_stat"
#define OVERRIDE_FOVL "user.fuseoverlayfs.override_stat"

static uint32_t read_overflow(const char *path)
{
	char buf[32];
	if (read_small_file(AT_FDCWD, path, buf, sizeof(buf)) < 0)
		return 65534;
	char *end;
	unsigned long v = strtoul(buf, &end, 10);
	return end == buf ? 65534 : (uint32_t)v;
}

void ovl_idmap_init(struct ovl_fs *fs)
{
	fs->overflow_uid = read_overflow("/proc/sys/kernel/overflowuid");
	fs->overflow_gid = read_overflow("/proc/sys/kernel/overflowgid");
}

int ovl_idmap_lookup(const struct ovl_idmap *m, int n, uint32_t id, bool to_shown, uint32_t *out)
{
	if (n == 0) {
		*out = id;
		return 0;
	}
	for (int i = 0; i < n; i++) {
		uint32_t from = to_shown ? m[i].inside : m[i].outside;
		uint32_t to = to_shown ? m[i].outside : m[i].inside;
		/* id - from < len, without overflowing from + len */
		if (id >= from && id - from < m[i].len) {
			*out = to + (id - from);
			return 0;
		}
	}
	return -EINVAL;
}

uid_t ovl_uid_shown(const struct ovl_fs *fs, uid_t disk)
{
	if (fs->p.squash_uid >= 0)
		return (uid_t)fs->p.squash_uid;
	if (fs->p.squash_to_root)
		return 0;
	uint32_t v;
	if (ovl_idmap_lookup(fs->p.uidmap, fs->p.nuidmap, disk, true, &v) < 0)
		return fs->overflow_uid;
	return v;
}

gid_t ovl_gid_shown(const struct ovl_fs *fs, gid_t disk)
{
	if (fs->p.squash_gid >= 0)
		return (gid_t)fs->p.squash_gid;
	if (fs->p.squash_to_root)
		return 0;
	uint32_t v;
	if (ovl_idmap_lookup(fs->p.gidmap, fs->p.ngidmap, disk, true, &v) < 0)
		return fs->overflow_gid;
	return v;
}

int ovl_uid_disk(const struct ovl_fs *fs, uid_t shown, uid_t *disk)
{
	uint32_t v;
	int r = ovl_idmap_lookup(fs->p.uidmap, fs->p.nuidmap, shown, false, &v);
	*disk = r < 0 ? fs->overflow_uid : v;
	return r;
}

int ovl_gid_disk(const struct ovl_fs *fs, gid_t shown, gid_t *disk)
{
	uint32_t v;
	int r = ovl_idmap_lookup(fs->p.gidmap, fs->p.ngidmap, shown, false, &v);
	*disk = r < 0 ? fs->overflow_gid : v;
	return r;
}

void ovl_idmap_stat(const struct ovl_fs *fs, struct stat *st)
{
	st->st_uid = ovl_uid_shown(fs, st->st_uid);
	st->st_gid = ovl_gid_shown(fs, st->st_gid);
}

bool ovl_idmap_squashed(const struct ovl_fs *fs)
{
	return fs->p.squash_to_root || fs->p.squash_uid >= 0 || fs->p.squash_gid >= 0;
}

/* ---- POSIX ACL xattrs ---- */

/* system.posix_acl_{access,default}: a 4-byte version, then 8-byte entries (tag, perm, id),
 * little endian; named user and group entries carry an id. */
#define ACL_VERSION 2
#define ACL_USER 0x02
#define ACL_GROUP 0x08

bool ovl_is_acl_xattr(const char *name)
{
	return !strcmp(name, "system.posix_acl_access") ||
	       !strcmp(name, "system.posix_acl_default");
}

int ovl_idmap_acl(const struct ovl_fs *fs, void *value, size_t size, bool to_shown)
{
	if (!fs->p.nuidmap && !fs->p.ngidmap)
		return 0;
	unsigned char *v = value;
	if (size < 4 || (size - 4) % 8 || le32toh(*(uint32_t *)v) != ACL_VERSION)
		return -EINVAL;
	for (size_t off = 4; off < size; off += 8) {
		uint16_t tag = le16toh(*(uint16_t *)(v + off));
		if (tag != ACL_USER && tag != ACL_GROUP)
			continue;
		uint32_t id = le32toh(*(uint32_t *)(v + off + 4)), out;
		bool user = tag == ACL_USER;
		int r = ovl_idmap_lookup(user ? fs->p.uidmap : fs->p.gidmap,
					 user ? fs->p.nuidmap : fs->p.ngidmap, id, to_shown, &out);
		if (r < 0) {
			if (!to_shown)
				return -EINVAL; /* an entry for an id the mapping cannot store */
			out = user ? fs->overflow_uid : fs->overflow_gid;
		}
		*(uint32_t *)(v + off + 4) = htole32(out);
	}
	return 0;
}

/* ---- override-stat xattrs ---- */

static const char *override_name(const struct ovl_fs *fs)
{
	return fs->p.xattr_permissions == 1 ? OVERRIDE_PRIV : OVERRIDE_USER;
}

bool ovl_is_override_xattr(const struct ovl_fs *fs, const char *name)
{
	if (!fs->p.xattr_permissions)
		return false;
	return !strcmp(name, OVERRIDE_USER) || !strcmp(name, OVERRIDE_PRIV) ||
	       !strcmp(name, OVERRIDE_FOVL);
}

int ovl_override_parse(const char *val, struct ovl_override *o)
{
	unsigned long uid, gid, mode;
	int used = 0;
	memset(o, 0, sizeof(*o));
	if (sscanf(val, "%lu:%lu:%lo%n", &uid, &gid, &mode, &used) != 3 || mode > 07777 ||
	    uid > UINT32_MAX || gid > UINT32_MAX)
		return -EINVAL;
	o->uid = (uid_t)uid;
	o->gid = (gid_t)gid;
	o->mode = (mode_t)mode;
	const char *t = val + used;
	if (!*t)
		return 0;
	if (*t++ != ':')
		return -EINVAL;
	unsigned int maj, min;
	int tl = 0;
	if (!strcmp(t, "file"))
		o->type = S_IFREG;
	else if (!strcmp(t, "dir"))
		o->type = S_IFDIR;
	else if (!strcmp(t, "symlink"))
		o->type = S_IFLNK;
	else if (!strcmp(t, "pipe"))
		o->type = S_IFIFO;
	else if (!strcmp(t, "socket"))
		o->type = S_IFSOCK;
	else if (sscanf(t, "char-%u-%u%n", &maj, &min, &tl) == 2 && !t[tl])
		o->type = S_IFCHR, o->rdev = makedev(maj, min);
	else if (sscanf(t, "block-%u-%u%n", &maj, &min, &tl) == 2 && !t[tl])
		o->type = S_IFBLK, o->rdev = makedev(maj, min);
	else
		return -EINVAL;
	return 0;
}

int ovl_override_format(char *buf, size_t len, uid_t uid, gid_t gid, mode_t mode, dev_t rdev)
{
	const char *t;
	char dev[48];
	switch (mode & S_IFMT) {
	case S_IFDIR:
		t = "dir";
		break;
	case S_IFLNK:
		t = "symlink";
		break;
	case S_IFIFO:
		t = "pipe";
		break;
	case S_IFSOCK:
		t = "socket";
		break;
	case S_IFCHR:
	case S_IFBLK:
		snprintf(dev, sizeof(dev), "%s-%u-%u", S_ISCHR(mode) ? "char" : "block",
			 major(rdev), minor(rdev));
		t = dev;
		break;
	default:
		t = "file";
	}
	return snprintf(buf, len, "%u:%u:0%o:%s", (unsigned)uid, (unsigned)gid,
			(unsigned)(mode & 07777), t);
}

/* Reads the override of (dirfd, name) ("" for dirfd itself): 1 found, 0 none, -errno. */
static int override_get(const struct ovl_fs *fs, int dirfd, const char *name,
			struct ovl_override *o)
{
	char path[PATH_MAX], val[128];
	ovl_fdpath(path, sizeof(path), dirfd, name);
	/* ours first, then what containers-storage and fuse-overlayfs write */
	const char *names[] = { override_name(fs), OVERRIDE_USER, OVERRIDE_FOVL, OVERRIDE_PRIV };
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (i > 0 && !strcmp(names[i], names[0]))
			continue;
		/* "" names dirfd itself: follow the /proc link to it */
		ssize_t r = *name ? lgetxattr(path, names[i], val, sizeof(val) - 1) :
				    getxattr(path, names[i], val, sizeof(val) - 1);
		if (r < 0) {
			if (errno == ENODATA || errno == ENOTSUP || errno == EOPNOTSUPP ||
			    errno == EPERM)
				continue;
			return -errno;
		}
		val[r] = '\0';
		if (ovl_override_parse(val, o) < 0) {
			ovl_log("ignoring malformed %s '%s'", names[i], val);
			continue;
		}
		return 1;
	}
	return 0;
}

void ovl_override_apply(const struct ovl_fs *fs, int dirfd, const char *name, struct stat *st)
{
	if (!fs->p.xattr_permissions)
		return;
	struct ovl_override o;
	if (override_get(fs, dirfd, name, &o) != 1)
		return;
	st->st_uid = o.uid;
	st->st_gid = o.gid;
	mode_t type = st->st_mode & S_IFMT;
	/* an empty regular file may stand for what a rootless writer could not create */
	if (o.type && o.type != type && S_ISREG(st->st_mode) &&
	    (S_ISCHR(o.type) || S_ISBLK(o.type) || S_ISFIFO(o.type) || S_ISSOCK(o.type))) {
		type = o.type;
		st->st_rdev = o.rdev;
		st->st_size = 0;
	}
	st->st_mode = type | o.mode;
}

int ovl_override_set(const struct ovl_fs *fs, int dirfd, const char *name, uid_t uid, gid_t gid,
		     mode_t mode, dev_t rdev)
{
	char path[PATH_MAX], val[128];
	ovl_fdpath(path, sizeof(path), dirfd, name);
	int len = ovl_override_format(val, sizeof(val), uid, gid, mode, rdev);
	if ((*name ? lsetxattr(path, override_name(fs), val, (size_t)len, 0) :
		     setxattr(path, override_name(fs), val, (size_t)len, 0)) < 0) {
		/* symlinks take no user.* xattrs: their owner stays the inode's */
		if (S_ISLNK(mode) && (errno == EPERM || errno == ENOTSUP || errno == EOPNOTSUPP))
			return 0;
		return -errno;
	}
	return 0;
}

int ovl_override_current(const struct ovl_fs *fs, int dirfd, const char *name, struct stat *st)
{
	if (fstatat(dirfd, name, st, AT_SYMLINK_NOFOLLOW | (*name ? 0 : AT_EMPTY_PATH)) < 0)
		return -errno;
	ovl_override_apply(fs, dirfd, name, st);
	return 0;
}

int ovl_set_owner(struct ovl_fs *fs, int dirfd, const char *name, uid_t uid, gid_t gid, mode_t mode,
		  dev_t rdev)
{
	int flags = AT_SYMLINK_NOFOLLOW | (*name ? 0 : AT_EMPTY_PATH);
	if (fs->p.xattr_permissions) {
		if (S_ISLNK(mode)) {
			/* no user.* xattrs on symlinks: their owner is the inode's, if we may */
			if (fchownat(dirfd, name, uid, gid, flags) < 0)
				return 0;
			return 0;
		}
		return ovl_override_set(fs, dirfd, name, uid, gid, mode, rdev);
	}
	if (fchownat(dirfd, name, uid, gid, flags) < 0) {
		/* a squashed mount shows fixed owners: what is stored does not matter */
		if (ovl_idmap_squashed(fs))
			return 0;
		return -errno;
	}
	return 0;
}
