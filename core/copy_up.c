/* copy_up.c - copy-up: a temp object in the work dir gets data (FICLONE, copy_file_range,
 * read/write), xattrs (without private ones), owner, mode and times, then is renamed into
 * place, so a crash leaves either the lower view or the complete copy. Lower files with
 * several names go through the hard-link index so that the names stay linked. */
#include "ovl.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/xattr.h>

int ovl_dir_each(int dirfd, const char *name, int (*fn)(int fd, const char *entry, void *ctx),
		 void *ctx)
{
	int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -errno;
	}
	int r = 0;
	struct dirent *de;
	while (r == 0 && (de = readdir(d))) {
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			r = fn(fd, de->d_name, ctx);
	}
	closedir(d);
	return r;
}

/* Removes every entry, remembering the last failure but going on with the rest. */
static int rm_entry(int fd, const char *entry, void *ctx)
{
	int e = ovl_rm_rf_at(fd, entry);
	if (e < 0)
		*(int *)ctx = e;
	return 0;
}

int ovl_empty_dir_at(int dirfd, const char *name)
{
	int last = 0;
	int r = ovl_dir_each(dirfd, name, rm_entry, &last);
	return r < 0 ? r : last;
}

int ovl_rm_rf_at(int dirfd, const char *name)
{
	if (unlinkat(dirfd, name, 0) == 0)
		return 0;
	if (errno != EISDIR && errno != EPERM)
		return errno == ENOENT ? 0 : -errno;
	int r = ovl_empty_dir_at(dirfd, name);
	if (unlinkat(dirfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
		return -errno;
	return r;
}

int ovl_copy_xattrs_at(struct ovl_fs *fs, int sdir, const char *sname, int ddir, const char *dname)
{
	(void)fs;
	char spath[PATH_MAX], dpath[PATH_MAX];
	ovl_fdpath(spath, sizeof(spath), sdir, sname);
	ovl_fdpath(dpath, sizeof(dpath), ddir, dname);
	ssize_t n = llistxattr(spath, NULL, 0);
	if (n <= 0)
		return (n < 0 && errno != ENOTSUP && errno != EOPNOTSUPP) ? -errno : 0;
	autofree char *list = malloc(n);
	if (!list)
		return -ENOMEM;
	n = llistxattr(spath, list, n);
	if (n < 0)
		return -errno;
	for (ssize_t off = 0; off < n; off += strlen(list + off) + 1) {
		const char *name = list + off;
		if (ovl_is_private_xattr(name))
			continue;
		ssize_t vl = lgetxattr(spath, name, NULL, 0);
		if (vl < 0)
			continue;
		autofree char *val = malloc(vl ? vl : 1);
		if (!val)
			return -ENOMEM;
		vl = lgetxattr(spath, name, val, vl);
		if (vl < 0)
			continue;
		if (lsetxattr(dpath, name, val, vl, 0) < 0) {
			if (errno == ENOTSUP || errno == EOPNOTSUPP ||
			    (errno == EPERM && strncmp(name, "user.", 5)))
				continue;
			return -errno;
		}
	}
	return 0;
}

/* Copies [off, off+len) with copy_file_range, falling back to read/write. */
static int copy_range(int in, int out, off_t off, off_t len, bool *cfr)
{
	off_t done = 0;
	while (done < len) {
		ssize_t n;
		if (*cfr) {
			off_t ioff = off + done, ooff = off + done;
			n = copy_file_range(in, &ioff, out, &ooff, len - done, 0);
			if (n < 0 && (errno == EXDEV || errno == EINVAL || errno == ENOSYS ||
				      errno == EOPNOTSUPP)) {
				*cfr = false;
				continue;
			}
		} else {
			char buf[1 << 16];
			size_t want = len - done < (off_t)sizeof(buf) ? (size_t)(len - done) :
									sizeof(buf);
			n = pread(in, buf, want, off + done);
			for (ssize_t w = 0; n > 0 && w < n;) {
				ssize_t k = pwrite(out, buf + w, n - w, off + done + w);
				if (k < 0) {
					if (errno == EINTR)
						continue;
					return -errno;
				}
				w += k;
			}
		}
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			break; /* the lower file is shorter than it said: keep what is there */
		done += n;
	}
	return 0;
}

/* Copies the data of in to out: a reflink when the filesystem can, else the data
 * segments only, so that holes stay holes (like the kernel's copy-up). */
static int copy_data(int in, int out, off_t size)
{
	if (size == 0)
		return 0;
	if (ioctl(out, FICLONE, in) == 0)
		return 0;
	bool cfr = true;
	off_t pos = 0;
	while (pos < size) {
		off_t data = lseek(in, pos, SEEK_DATA);
		if (data < 0) {
			if (errno == ENXIO)
				break; /* only a hole is left */
			data = pos; /* no SEEK_DATA here: copy everything */
		}
		off_t hole = lseek(in, data, SEEK_HOLE);
		if (hole < 0 || hole > size)
			hole = size;
		int r = copy_range(in, out, data, hole - data, &cfr);
		if (r < 0)
			return r;
		pos = hole;
	}
	return ftruncate(out, size) < 0 ? -errno : 0;
}

void ovl_index_name(char *buf, size_t len, const struct stat *st)
{
	snprintf(buf, len, "%llx-%llx", (unsigned long long)st->st_dev,
		 (unsigned long long)st->st_ino);
}

/* The kernel's index=on names each index entry by the hex of an ovl_fb: version, 0xfb magic,
 * length, flags, handle type, the lower filesystem's uuid, then the file handle. */
struct ovl_kidx {
	unsigned char type, fidlen;
	unsigned char fid[MAX_HANDLE_SZ];
	char name[2 * (21 + MAX_HANDLE_SZ) + 1];
};

static int hexval(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

void ovl_kindex_load(struct ovl_fs *fs, int workdir_fd)
{
	int fd = openat(workdir_fd, "index", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return;
	fs->kindexfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		return;
	}
	struct dirent *de;
	while ((de = readdir(d))) {
		size_t len = strlen(de->d_name);
		unsigned char b[21 + MAX_HANDLE_SZ];
		if (len % 2 || len / 2 < 22 || len / 2 > sizeof(b))
			continue;
		bool ok = true;
		for (size_t i = 0; i < len / 2 && ok; i++) {
			int hi = hexval(de->d_name[2 * i]), lo = hexval(de->d_name[2 * i + 1]);
			ok = hi >= 0 && lo >= 0;
			b[i] = (unsigned char)(hi << 4 | lo);
		}
		if (!ok || b[1] != 0xfb || b[2] != len / 2)
			continue;
		struct ovl_kidx *nk = realloc(fs->kidx, sizeof(*nk) * (fs->nkidx + 1));
		if (!nk)
			break;
		fs->kidx = nk;
		struct ovl_kidx *k = &nk[fs->nkidx++];
		k->type = b[4];
		k->fidlen = (unsigned char)(len / 2 - 21);
		memcpy(k->fid, b + 21, k->fidlen);
		memcpy(k->name, de->d_name, len + 1);
	}
	closedir(d);
}

const char *ovl_kindex_find(struct ovl_fs *fs, int dirfd, const char *name)
{
	if (!fs->nkidx)
		return NULL;
	struct {
		struct file_handle fh;
		unsigned char buf[MAX_HANDLE_SZ];
	} h;
	h.fh.handle_bytes = MAX_HANDLE_SZ;
	int mnt;
	if (name_to_handle_at(dirfd, name, &h.fh, &mnt, 0) < 0)
		return NULL;
	for (size_t i = 0; i < fs->nkidx; i++) {
		struct ovl_kidx *k = &fs->kidx[i];
		if (k->type == h.fh.handle_type && k->fidlen == h.fh.handle_bytes &&
		    !memcmp(k->fid, h.fh.f_handle, k->fidlen))
			return k->name;
	}
	return NULL;
}

/* Our origin record on an upper object: "INO", or while it shares its inode with the
 * hard-link index "INOiLOWER:LINKED": the lower inode had LOWER names, LINKED of them are
 * linked into the upper so far (the rest still show through from the lower layer). */
static void origin_set(struct ovl_fs *fs, int dirfd, const char *name, uint64_t ino, bool idx,
		       nlink_t lower, nlink_t linked)
{
	if (!fs->feat.private_prefix)
		return;
	char path[PATH_MAX], xname[64], val[96];
	ovl_fdpath(path, sizeof(path), dirfd, name);
	snprintf(xname, sizeof(xname), "%sstrata.origin", fs->feat.private_prefix);
	int vl = idx ? snprintf(val, sizeof(val), "%llui%llu:%llu", (unsigned long long)ino,
				(unsigned long long)lower, (unsigned long long)linked) :
		       snprintf(val, sizeof(val), "%llu", (unsigned long long)ino);
	/* trusted.* cannot be set on symlinks by some filesystems: the origin is a hint */
	lsetxattr(path, xname, val, vl, 0);
}

static nlink_t origin_linked(struct ovl_fs *fs, int dirfd, const char *name)
{
	char path[PATH_MAX], xname[64], val[96];
	ovl_fdpath(path, sizeof(path), dirfd, name);
	snprintf(xname, sizeof(xname), "%sstrata.origin", fs->feat.private_prefix);
	ssize_t r = lgetxattr(path, xname, val, sizeof(val) - 1);
	if (r <= 0)
		return 0;
	val[r] = '\0';
	char *c = strchr(val, ':');
	return c ? (nlink_t)strtoull(c + 1, NULL, 10) : 0;
}

/* Once every lower name of an indexed inode is linked in the upper, the index entry has done
 * its job: drop it, so the upper's link count is the true one (for the kernel too). */
static void index_settle(struct ovl_fs *fs, int upfd, const char *name, const char *idx,
			 nlink_t lower_nlink, struct ovl_node *n)
{
	nlink_t linked = origin_linked(fs, upfd, name) + 1;
	n->indexed = true;
	n->lower_nlink = lower_nlink;
	n->linked = linked;
	if (linked < lower_nlink || !idx || unlinkat(fs->indexfd, idx, 0) < 0) {
		origin_set(fs, upfd, name, n->ino, true, lower_nlink, linked);
		return;
	}
	origin_set(fs, upfd, name, n->ino, false, 0, 0);
	n->indexed = false;
	n->lower_nlink = n->linked = 0;
}

/* Creates the upper copy of n. Called with n->lock held and the parent already upper. */
static int copy_up_locked(struct ovl_fs *fs, struct ovl_node *n, bool data)
{
	int up = fs->upper;
	autofree char *name = NULL;
	autofree char *uname = NULL;
	autoclose int lpfd = ovl_node_parent_fd(fs, n, n->top, &name);
	if (lpfd < 0)
		return lpfd;
	autoclose int upfd = ovl_node_parent_fd(fs, n, up, &uname);
	if (upfd < 0)
		return upfd;
	struct stat st;
	if (fstatat(lpfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	struct stat pst;
	bool have_pst = fstatat(upfd, "", &pst, AT_EMPTY_PATH) == 0;

	char idx[64] = "";
	bool use_index = !S_ISDIR(st.st_mode) && st.st_nlink > 1 && fs->indexfd >= 0;
	const char *kidx = use_index ? ovl_kindex_find(fs, lpfd, name) : NULL;
	if (kidx && linkat(fs->kindexfd, kidx, upfd, name, 0) == 0) {
		/* another name was copied up by the kernel: join it, and count names our way
		 * (every upper name but the kernel's index entry came from the lower) */
		struct stat ust;
		nlink_t names =
			fstatat(upfd, name, &ust, AT_SYMLINK_NOFOLLOW) == 0 && ust.st_nlink > 1 ?
				ust.st_nlink - 1 :
				1;
		if (origin_linked(fs, upfd, name) == 0)
			origin_set(fs, upfd, name, n->ino, true, st.st_nlink, names - 1);
		index_settle(fs, upfd, name, NULL, st.st_nlink, n);
		use_index = false;
		goto placed;
	}
	if (use_index) {
		ovl_index_name(idx, sizeof(idx), &st);
		if (linkat(fs->indexfd, idx, upfd, name, 0) == 0)
			goto placed;
	}

	char tmp[64];
	ovl_tmpname(fs, tmp, sizeof(tmp));
	int r = 0;
	if (S_ISREG(st.st_mode)) {
		autoclose int in = -1;
		if (data && st.st_size > 0) {
			in = openat(lpfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
			if (in < 0)
				return -errno;
		}
		autoclose int out =
			openat(fs->workfd, tmp, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
		if (out < 0)
			return -errno;
		if (in >= 0)
			r = copy_data(in, out, st.st_size);
		if (!r && !fs->p.volatile_ && fsync(out) < 0)
			r = -errno;
	} else if (S_ISDIR(st.st_mode)) {
		r = mkdirat(fs->workfd, tmp, 0700) < 0 ? -errno : 0;
	} else if (S_ISLNK(st.st_mode)) {
		char target[PATH_MAX + 1];
		ssize_t len = readlinkat(lpfd, name, target, PATH_MAX);
		if (len < 0)
			return -errno;
		target[len] = '\0';
		r = symlinkat(target, fs->workfd, tmp) < 0 ? -errno : 0;
	} else {
		r = mknodat(fs->workfd, tmp, (st.st_mode & S_IFMT) | 0600, st.st_rdev) < 0 ?
			    -errno :
			    0;
	}
	if (r < 0)
		goto fail;
	r = ovl_copy_xattrs_at(fs, lpfd, name, fs->workfd, tmp);
	if (r < 0)
		goto fail;
	/* linked 0: index_settle counts this name once it is in place */
	origin_set(fs, fs->workfd, tmp, n->ino, use_index, st.st_nlink, 0);
	if (fs->p.xattr_permissions) {
		/* the copy records what the lower showed (its override, or its inode), in the
		 * name this mount writes; its own owner is what we may give it */
		struct stat ost = st;
		ovl_override_apply(fs, lpfd, name, &ost);
		r = ovl_set_owner(fs, fs->workfd, tmp, ost.st_uid, ost.st_gid, ost.st_mode,
				  ost.st_rdev);
		if (r < 0)
			goto fail;
		/* best effort: the override xattr holds the owner that counts */
		if (fchownat(fs->workfd, tmp, st.st_uid, st.st_gid, AT_SYMLINK_NOFOLLOW) < 0)
			r = 0;
	} else if (fchownat(fs->workfd, tmp, st.st_uid, st.st_gid, AT_SYMLINK_NOFOLLOW) < 0 &&
		   !ovl_idmap_squashed(fs)) {
		r = -errno;
		goto fail;
	}
	if (!S_ISLNK(st.st_mode) && fchmodat(fs->workfd, tmp, st.st_mode & 07777, 0) < 0) {
		r = -errno;
		goto fail;
	}
	struct timespec ts[2] = { st.st_atim, st.st_mtim };
	if (utimensat(fs->workfd, tmp, ts, AT_SYMLINK_NOFOLLOW) < 0) {
		r = -errno;
		goto fail;
	}
	if (use_index && linkat(fs->workfd, tmp, fs->indexfd, idx, 0) < 0) {
		if (errno != EEXIST) {
			use_index = false; /* no index: the names part ways, as without index=on */
		} else {
			/* another name of this inode was copied up meanwhile: link to it */
			unlinkat(fs->workfd, tmp, 0);
			if (linkat(fs->indexfd, idx, upfd, name, 0) < 0)
				return -errno;
			goto placed;
		}
	}
	if (renameat2(fs->workfd, tmp, upfd, name, RENAME_NOREPLACE) < 0) {
		if (errno != EINVAL || renameat(fs->workfd, tmp, upfd, name) < 0) {
			r = -errno;
			goto fail;
		}
	}
placed:
	if (use_index)
		index_settle(fs, upfd, name, idx, st.st_nlink, n);
	if (have_pst) {
		/* creating the copy changed the parent's times: put them back */
		struct timespec pts[2] = { pst.st_atim, pst.st_mtim };
		utimensat(upfd, "", pts, AT_EMPTY_PATH);
	}
	if (S_ISDIR(st.st_mode)) {
		uint16_t *ns = malloc(sizeof(uint16_t) * (n->nstack + 1));
		if (!ns)
			return -ENOMEM;
		ns[0] = up;
		int k = 1;
		for (int i = 0; i < n->nstack; i++)
			if (n->stack[i] != up)
				ns[k++] = n->stack[i];
		free(n->stack);
		n->stack = ns;
		n->nstack = k;
	}
	n->top = up;
	return 0;
fail:
	ovl_rm_rf_at(fs->workfd, tmp);
	return r;
}

int ovl_copy_up(struct ovl_fs *fs, struct ovl_node *n, bool data)
{
	if (!fs->has_upper)
		return -EROFS;
	pthread_mutex_lock(&n->lock);
	int r = ovl_node_refresh(fs, n);
	bool done = n->top == fs->upper;
	pthread_mutex_unlock(&n->lock);
	if (r < 0 || done)
		return r;
	struct ovl_node *p = ovl_node_parent(fs, n);
	if (!p)
		return -ENOENT;
	r = ovl_copy_up(fs, p, true);
	if (r < 0)
		return r;
	pthread_mutex_lock(&n->lock);
	r = ovl_node_refresh(fs, n);
	if (r == 0 && n->top != fs->upper)
		r = copy_up_locked(fs, n, data);
	pthread_mutex_unlock(&n->lock);
	return r;
}

int ovl_copy_up_tree(struct ovl_fs *fs, struct ovl_node *n)
{
	int r = ovl_copy_up(fs, n, true);
	if (r < 0 || n->type != S_IFDIR)
		return r;
	struct ovl_dirh h = { 0 };
	r = ovl_dir_load(fs, n, &h, false);
	if (r < 0)
		return r;
	for (size_t i = 0; i < h.n && r == 0; i++) {
		struct fuse_entry_param e;
		r = ovl_lookup(fs, ovl_node_id(n), h.ents[i].name, &e);
		if (r < 0 || !e.ino) {
			r = r < 0 ? r : 0;
			continue;
		}
		struct ovl_node *c = ovl_node_get(fs, e.ino);
		if (c) {
			r = ovl_copy_up_tree(fs, c);
			ovl_node_forget(fs, c, 1);
		}
	}
	ovl_dirh_free(&h);
	return r;
}
