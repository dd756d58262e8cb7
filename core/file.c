/* file.c - open/read/write/flush/fsync/release/fallocate/lseek/copy_file_range on the real
 * file of a node, readlink and statfs. Reads of lower files never copy up. */
#include "ovl.h"

#include <fcntl.h>
#include <string.h>
#include <sys/statvfs.h>

int ovl_open_node(struct ovl_fs *fs, struct ovl_node *n, int flags)
{
	struct ovl_place pl;
	int r = ovl_node_place(fs, n, &pl);
	if (r < 0)
		return r;
	ovl_place_free(&pl);
	autofree char *name = NULL;
	autoclose int pfd = ovl_node_parent_fd(fs, n, pl.top, &name);
	if (pfd < 0)
		return pfd;
	int fd = openat(pfd, name, flags | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
	return fd < 0 ? -errno : fd;
}

int ovl_open(struct ovl_fs *fs, fuse_ino_t ino, struct fuse_file_info *fi)
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
	int fd = ovl_open_node(fs, n, flags);
	if (fd < 0)
		return fd;
	struct stat st;
	if (fstat(fd, &st) == 0 && st.st_nlink <= 1 && !n->indexed)
		fi->keep_cache = 1; /* one name, one node: the page cache stays coherent */
	fi->fh = (uint64_t)fd;
	atomic_fetch_add(&n->nopen, 1);
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
