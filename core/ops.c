/* ops.c - the fuse_lowlevel_ops table: unpacks requests, calls the engine, and is the only
 * place that replies to the kernel. */
#include "ovl.h"

#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/statvfs.h>
#include <syslog.h>
#include <time.h>

static struct ovl_fs *FS(fuse_req_t req)
{
	struct ovl_fs *fs = fuse_req_userdata(req);
	/* the kernel can be asked about passthrough only once it has the INIT reply */
	if (atomic_load_explicit(&fs->pt_probe, memory_order_relaxed))
		ovl_passthrough_settle(fs);
	return fs;
}

void ovl_log(const char *fmt, ...)
{
	/* at most 20 messages a second, so a bad image cannot flood the log */
	static atomic_long window;
	static atomic_int count;
	long now = (long)time(NULL);
	if (atomic_exchange(&window, now) != now)
		atomic_store(&count, 0);
	if (atomic_fetch_add(&count, 1) >= 20)
		return;
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fuse_log(FUSE_LOG_ERR, "stratafs: %s\n", msg);
}

static void reply_entry(fuse_req_t req, int r, struct fuse_entry_param *e)
{
	if (r < 0)
		fuse_reply_err(req, -r);
	else
		fuse_reply_entry(req, e);
}

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	struct ovl_fs *fs = userdata;
	unsigned want = FUSE_CAP_READDIRPLUS | FUSE_CAP_READDIRPLUS_AUTO |
			FUSE_CAP_PARALLEL_DIROPS | FUSE_CAP_ATOMIC_O_TRUNC | FUSE_CAP_ASYNC_READ |
			FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE | FUSE_CAP_SPLICE_READ |
			FUSE_CAP_CACHE_SYMLINKS;
	if (!fs->p.noacl && !fs->p.noxattrs)
		want |= FUSE_CAP_POSIX_ACL | FUSE_CAP_DONT_MASK;
	if (fs->p.writeback)
		want |= FUSE_CAP_WRITEBACK_CACHE;
	conn->want |= want & conn->capable;
	if (conn->capable & FUSE_CAP_NO_OPENDIR_SUPPORT) {
		conn->want |= FUSE_CAP_NO_OPENDIR_SUPPORT;
		fs->no_opendir = true;
	}
	/* locks are kept by the kernel for this mount */
	conn->want &= ~(FUSE_CAP_POSIX_LOCKS | FUSE_CAP_FLOCK_LOCKS);
	if (!(conn->capable & FUSE_CAP_POSIX_ACL))
		fs->p.noacl = true;
	ovl_passthrough_init(fs, conn);
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fuse_entry_param e;
	int r = ovl_lookup(FS(req), parent, name, &e);
	if (r == 0 && e.ino == 0 && FS(req)->timeout == 0) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	reply_entry(req, r, &e);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	struct ovl_node *n = ovl_node_get(FS(req), ino);
	if (n)
		ovl_node_forget(FS(req), n, nlookup);
	fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *f)
{
	for (size_t i = 0; i < count; i++) {
		struct ovl_node *n = ovl_node_get(FS(req), f[i].ino);
		if (n)
			ovl_node_forget(FS(req), n, f[i].nlookup);
	}
	fuse_reply_none(req);
}

/* How long the kernel may keep attributes. Not at all for a file with several names: each
 * name is its own node (its own kernel inode), so a size or mode changed through one name
 * would stay stale behind the others; nor for a node whose name is gone. */
static double attr_timeout(const struct ovl_fs *fs, const struct ovl_node *n, const struct stat *st)
{
	return (st->st_nlink > 1 && !S_ISDIR(st->st_mode)) || n->unlinked ? 0 : fs->timeout;
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct ovl_fs *fs = FS(req);
	struct ovl_node *n = ovl_node_get(fs, ino);
	struct stat st;
	int r;
	if (!n) {
		fuse_reply_err(req, ESTALE);
		return;
	}
	if (fi && n->type == S_IFREG) {
		ovl_file_refresh(fs, ino, (int)fi->fh);
		r = fstat((int)fi->fh, &st) < 0 ? -errno : 0;
		if (r == 0) {
			ovl_override_apply(fs, (int)fi->fh, "", &st);
			ovl_fixup_stat(fs, n, &st);
		}
	} else {
		r = ovl_getattr_node(fs, n, &st);
	}
	if (r < 0) {
		fuse_reply_err(req, -r);
		return;
	}
	ovl_idmap_stat(fs, &st);
	fuse_reply_attr(req, &st, attr_timeout(fs, n, &st));
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		       struct fuse_file_info *fi)
{
	struct ovl_fs *fs = FS(req);
	struct ovl_node *n = ovl_node_get(fs, ino);
	struct stat st;
	int r = n ? ovl_setattr(fs, n, attr, to_set, fi, &st) : -ESTALE;
	if (r < 0) {
		fuse_reply_err(req, -r);
		return;
	}
	ovl_idmap_stat(fs, &st);
	fuse_reply_attr(req, &st, attr_timeout(fs, n, &st));
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
	char buf[PATH_MAX + 1];
	int r = ovl_readlink(FS(req), ino, buf, sizeof(buf));
	if (r < 0)
		fuse_reply_err(req, -r);
	else
		fuse_reply_readlink(req, buf);
}

/* After a change to a directory's entries: a listing kept for it is out of date. */
static void dir_changed(fuse_req_t req, fuse_ino_t dir)
{
	struct ovl_node *n = ovl_node_get(FS(req), dir);
	if (n)
		ovl_dir_changed(n);
}

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
	struct fuse_entry_param e;
	int r = ovl_mknod(FS(req), req, parent, name, mode, rdev, NULL, &e);
	dir_changed(req, parent);
	reply_entry(req, r, &e);
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	struct fuse_entry_param e;
	int r = ovl_mknod(FS(req), req, parent, name, S_IFDIR | mode, 0, NULL, &e);
	dir_changed(req, parent);
	reply_entry(req, r, &e);
}

static void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	struct fuse_entry_param e;
	int r = ovl_mknod(FS(req), req, parent, name, S_IFLNK | 0777, 0, link, &e);
	dir_changed(req, parent);
	reply_entry(req, r, &e);
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	int r = ovl_unlink(FS(req), parent, name, false);
	dir_changed(req, parent);
	fuse_reply_err(req, -r);
}

static void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	int r = ovl_unlink(FS(req), parent, name, true);
	dir_changed(req, parent);
	fuse_reply_err(req, -r);
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
		      const char *newname, unsigned int flags)
{
	int r = ovl_rename(FS(req), parent, name, newparent, newname, flags);
	dir_changed(req, parent);
	if (newparent != parent)
		dir_changed(req, newparent);
	fuse_reply_err(req, -r);
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	struct fuse_entry_param e;
	int r = ovl_link(FS(req), ino, newparent, newname, &e);
	dir_changed(req, newparent);
	reply_entry(req, r, &e);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	int r = ovl_open(FS(req), req, ino, fi);
	if (r < 0)
		fuse_reply_err(req, -r);
	else if (fuse_reply_open(req, fi) == -ENOENT)
		ovl_file_close(FS(req), req, ino, fi); /* the opener was interrupted: no release */
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		      struct fuse_file_info *fi)
{
	struct fuse_entry_param e;
	int r = ovl_create(FS(req), req, parent, name, mode, fi, &e);
	dir_changed(req, parent);
	if (r < 0) {
		fuse_reply_err(req, -r);
		return;
	}
	ovl_file_created(FS(req), req, ovl_node_get(FS(req), e.ino), fi);
	if (fuse_reply_create(req, &e, fi) == -ENOENT)
		ovl_file_close(FS(req), req, e.ino, fi);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	ovl_file_refresh(FS(req), ino, (int)fi->fh);
	struct fuse_bufvec buf = FUSE_BUFVEC_INIT(size);
	buf.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
	buf.buf[0].fd = (int)fi->fh;
	buf.buf[0].pos = off;
	fuse_reply_data(req, &buf, FUSE_BUF_SPLICE_MOVE);
}

static void op_write_buf(fuse_req_t req, fuse_ino_t ino, struct fuse_bufvec *in, off_t off,
			 struct fuse_file_info *fi)
{
	(void)ino;
	struct fuse_bufvec out = FUSE_BUFVEC_INIT(fuse_buf_size(in));
	out.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
	out.buf[0].fd = (int)fi->fh;
	out.buf[0].pos = off;
	ssize_t r = fuse_buf_copy(&out, in, 0);
	if (r < 0)
		fuse_reply_err(req, (int)-r);
	else
		fuse_reply_write(req, (size_t)r);
}

static void op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	/* close a dup so that errors of the last close are reported (NFS-like uppers) */
	int fd = dup((int)fi->fh);
	int r = fd < 0 ? errno : (close(fd) < 0 ? errno : 0);
	fuse_reply_err(req, r);
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	ovl_file_close(FS(req), req, ino, fi);
	fuse_reply_err(req, 0);
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	(void)ino;
	int r = 0;
	if (!FS(req)->p.volatile_)
		r = (datasync ? fdatasync((int)fi->fh) : fsync((int)fi->fh)) < 0 ? errno : 0;
	fuse_reply_err(req, r);
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct ovl_fs *fs = FS(req);
	struct ovl_node *n = ovl_node_get(fs, ino);
	if (!n) {
		fuse_reply_err(req, ESTALE);
		return;
	}
	if (fs->no_opendir) {
		/* a directory needs no handle here (readdir.c keeps listings on the node): the
		 * kernel then stops sending OPENDIR and RELEASEDIR, and caches listings as if
		 * we had asked for cache_readdir and keep_cache */
		fuse_reply_err(req, ENOSYS);
		return;
	}
	fi->fh = 0;
	/* every change to a directory goes through us, and the kernel drops its cached
	 * listing whenever we change one: let it keep listings across opens */
	fi->cache_readdir = 1;
	fi->keep_cache = 1;
	fuse_reply_open(req, fi);
}

static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, bool plus)
{
	char *buf = malloc(size);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	ssize_t r = ovl_readdir_fill(FS(req), req, ino, buf, size, off, plus);
	if (r < 0)
		fuse_reply_err(req, (int)-r);
	else
		fuse_reply_buf(req, buf, (size_t)r);
	free(buf);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	(void)fi;
	do_readdir(req, ino, size, off, false);
}

static void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			   struct fuse_file_info *fi)
{
	(void)fi;
	do_readdir(req, ino, size, off, true);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	(void)fi;
	fuse_reply_err(req, 0);
}

static void op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	(void)datasync;
	(void)fi;
	struct ovl_fs *fs = FS(req);
	struct ovl_node *n = ovl_node_get(fs, ino);
	int r = 0;
	if (n && fs->has_upper && !fs->p.volatile_ && n->top == fs->upper) {
		int pfd = ovl_node_layer_fd(fs, n, fs->upper);
		int fd = pfd < 0 ? -1 : openat(pfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd >= 0) {
			r = fsync(fd) < 0 ? errno : 0;
			close(fd);
		}
		if (pfd >= 0)
			close(pfd);
	}
	fuse_reply_err(req, r);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	(void)ino;
	struct statvfs st;
	int r = ovl_statfs(FS(req), &st);
	if (r < 0)
		fuse_reply_err(req, -r);
	else
		fuse_reply_statfs(req, &st);
}

static void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
			size_t size, int flags)
{
	fuse_reply_err(req, -ovl_setxattr(FS(req), ino, name, value, size, flags));
}

static void reply_xattr(fuse_req_t req, ssize_t r, const char *buf, size_t size)
{
	if (r < 0)
		fuse_reply_err(req, (int)-r);
	else if (size == 0)
		fuse_reply_xattr(req, (size_t)r);
	else
		fuse_reply_buf(req, buf, (size_t)r);
}

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	char *buf = size ? malloc(size) : NULL;
	if (size && !buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	reply_xattr(req, ovl_getxattr(FS(req), ino, name, buf, size), buf, size);
	free(buf);
}

static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	char *buf = size ? malloc(size) : NULL;
	if (size && !buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	reply_xattr(req, ovl_listxattr(FS(req), ino, buf, size), buf, size);
	free(buf);
}

static void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	fuse_reply_err(req, -ovl_removexattr(FS(req), ino, name));
}

static void op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
			 struct fuse_file_info *fi)
{
	(void)ino;
	fuse_reply_err(req, fallocate((int)fi->fh, mode, off, len) < 0 ? errno : 0);
}

static void op_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence,
		     struct fuse_file_info *fi)
{
	ovl_file_refresh(FS(req), ino, (int)fi->fh);
	off_t r = lseek((int)fi->fh, off, whence);
	if (r < 0)
		fuse_reply_err(req, errno);
	else
		fuse_reply_lseek(req, r);
}

static void op_copy_file_range(fuse_req_t req, fuse_ino_t ino_in, off_t off_in,
			       struct fuse_file_info *fi_in, fuse_ino_t ino_out, off_t off_out,
			       struct fuse_file_info *fi_out, size_t len, int flags)
{
	(void)ino_in;
	(void)ino_out;
	ssize_t r = copy_file_range((int)fi_in->fh, &off_in, (int)fi_out->fh, &off_out, len,
				    (unsigned)flags);
	if (r < 0)
		fuse_reply_err(req, errno);
	else
		fuse_reply_write(req, (size_t)r);
}

static void op_access(fuse_req_t req, fuse_ino_t ino, int mask)
{
	/* permission checks are the kernel's (default_permissions); existence is ours */
	(void)mask;
	struct stat st;
	struct ovl_node *n = ovl_node_get(FS(req), ino);
	int r = n ? ovl_getattr_node(FS(req), n, &st) : -ESTALE;
	if (r == 0 && (mask & W_OK) && !FS(req)->has_upper)
		r = -EROFS;
	fuse_reply_err(req, -r);
}

static void op_ioctl(fuse_req_t req, fuse_ino_t ino, unsigned int cmd, void *arg,
		     struct fuse_file_info *fi, unsigned flags, const void *in_buf, size_t in_bufsz,
		     size_t out_bufsz)
{
	(void)arg;
	(void)fi;
	if (flags & FUSE_IOCTL_COMPAT) {
		fuse_reply_err(req, ENOSYS);
		return;
	}
	char out[64];
	size_t outsz = 0;
	int r = ovl_ioctl_flags(FS(req), ino, cmd, in_buf, in_bufsz, out, &outsz);
	if (r < 0)
		fuse_reply_err(req, -r);
	else
		fuse_reply_ioctl(req, 0, outsz && out_bufsz >= outsz ? out : NULL,
				 out_bufsz >= outsz ? outsz : 0);
}

const struct fuse_lowlevel_ops ovl_ops = {
	.ioctl = op_ioctl,
	.init = op_init,
	.lookup = op_lookup,
	.forget = op_forget,
	.forget_multi = op_forget_multi,
	.getattr = op_getattr,
	.setattr = op_setattr,
	.readlink = op_readlink,
	.mknod = op_mknod,
	.mkdir = op_mkdir,
	.symlink = op_symlink,
	.unlink = op_unlink,
	.rmdir = op_rmdir,
	.rename = op_rename,
	.link = op_link,
	.open = op_open,
	.create = op_create,
	.read = op_read,
	.write_buf = op_write_buf,
	.flush = op_flush,
	.release = op_release,
	.fsync = op_fsync,
	.opendir = op_opendir,
	.readdir = op_readdir,
	.readdirplus = op_readdirplus,
	.releasedir = op_releasedir,
	.fsyncdir = op_fsyncdir,
	.statfs = op_statfs,
	.setxattr = op_setxattr,
	.getxattr = op_getxattr,
	.listxattr = op_listxattr,
	.removexattr = op_removexattr,
	.fallocate = op_fallocate,
	.lseek = op_lseek,
	.copy_file_range = op_copy_file_range,
	.access = op_access,
};
