/* dir.c - namespace changes: create/mkdir/mknod/symlink/link/unlink/rmdir/rename,
 * creating whiteouts and opaque markers where the lower layers must stay hidden. */
#include "ovl.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/xattr.h>

/* What sits at (upper dir, name) before we create something there. */
struct slot {
	int udir; /* O_PATH fd of the parent in the upper layer */
	bool whiteout; /* a char 0/0 whiteout occupies the name */
	bool wh_file; /* a .wh.NAME marker hides the name */
};

static int valid_new_name(const char *name)
{
	if (strlen(name) > NAME_MAX)
		return -ENAMETOOLONG;
	if (ovl_is_wh_name(name))
		return -EINVAL; /* would read back as a whiteout marker */
	return 0;
}

/* Copies the parent up and finds out what occupies name in the upper dir. */
static int prepare_slot(struct ovl_fs *fs, struct ovl_node *dir, const char *name, struct slot *s)
{
	s->udir = -1;
	s->whiteout = s->wh_file = false;
	if (!fs->has_upper)
		return -EROFS;
	int r = valid_new_name(name);
	if (r < 0)
		return r;
	r = ovl_copy_up(fs, dir, true);
	if (r < 0)
		return r;
	s->udir = ovl_node_layer_fd(fs, dir, fs->upper);
	if (s->udir < 0)
		return s->udir;
	struct stat st;
	if (fstatat(s->udir, name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
		if (!ovl_is_whiteout_stat(&st)) {
			close(s->udir);
			s->udir = -1;
			return -EEXIST;
		}
		s->whiteout = true;
	} else if (errno != ENOENT) {
		r = -errno;
		close(s->udir);
		s->udir = -1;
		return r;
	}
	s->wh_file = ovl_has_wh_file(s->udir, name);
	return 0;
}

struct owner {
	uid_t uid;
	gid_t gid;
	bool sgid_dir; /* parent is setgid: new dirs inherit the bit */
};

/* The stored owner of a new object: the caller's ids unmapped (a caller outside the mapping
 * gets the overflow id, as with fuse-overlayfs), or the parent's group below a setgid dir. */
static void new_owner(struct ovl_fs *fs, fuse_req_t req, int udir, struct owner *o)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	ovl_uid_disk(fs, ctx->uid, &o->uid);
	ovl_gid_disk(fs, ctx->gid, &o->gid);
	o->sgid_dir = false;
	struct stat pst;
	if (ovl_override_current(fs, udir, "", &pst) == 0 && (pst.st_mode & S_ISGID)) {
		o->gid = pst.st_gid;
		o->sgid_dir = true;
	}
}

/* The mode a new object gets: the kernel leaves the umask to us when ACLs are on. */
static mode_t new_mode(struct ovl_fs *fs, fuse_req_t req, int udir, mode_t mode)
{
	if (fs->p.noacl)
		return mode;
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	char path[64];
	ovl_fdpath(path, sizeof(path), udir, NULL);
	if (getxattr(path, "system.posix_acl_default", NULL, 0) > 0)
		return mode; /* the default ACL decides, applied by the upper filesystem */
	return mode & ~(ctx->umask & 0777);
}

/* Moves a finished object from the work dir to (udir, name), replacing a whiteout. */
static int place_from_work(struct ovl_fs *fs, const char *tmp, struct slot *s, const char *name,
			   bool isdir)
{
	if (isdir && s->whiteout) {
		if (renameat2(fs->workfd, tmp, s->udir, name, RENAME_EXCHANGE) < 0)
			return -errno;
		unlinkat(fs->workfd, tmp, 0);
	} else if (renameat(fs->workfd, tmp, s->udir, name) < 0) {
		return -errno;
	}
	if (s->wh_file)
		ovl_remove_wh_file(s->udir, name);
	return 0;
}

static int make_entry(struct ovl_fs *fs, struct ovl_node *dir, int udir, const char *name,
		      struct fuse_entry_param *e)
{
	struct ovl_lookup_res res = { 0 };
	if (fstatat(udir, name, &res.st, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	ovl_override_apply(fs, udir, name, &res.st);
	res.top = fs->upper;
	res.ino = res.st.st_ino;
	uint16_t up = fs->upper;
	if (S_ISDIR(res.st.st_mode)) {
		res.stack = &up;
		res.nstack = 1;
	}
	struct ovl_node *n = ovl_node_lookup_ref(fs, dir, name, &res);
	if (!n)
		return -ENOMEM;
	ovl_fill_entry(fs, n, &res.st, e);
	return 0;
}

int ovl_mknod(struct ovl_fs *fs, fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
	      dev_t rdev, const char *link, struct fuse_entry_param *e)
{
	struct ovl_node *dir = ovl_node_get(fs, parent);
	if (!dir)
		return -ESTALE;
	/* a char 0/0 would read back as a whiteout: the kernel refuses it too */
	if (S_ISCHR(mode) && rdev == 0)
		return -EPERM;
	struct slot s;
	int r = prepare_slot(fs, dir, name, &s);
	if (r < 0)
		return r;
	autoclose int udir = s.udir;
	struct owner o;
	new_owner(fs, req, udir, &o);
	bool isdir = S_ISDIR(mode);
	if (!link)
		mode = (mode & S_IFMT) | new_mode(fs, req, udir, mode & 07777);
	bool via_work = s.whiteout || s.wh_file;
	int target = via_work ? fs->workfd : udir;
	char tmp[64];
	ovl_tmpname(fs, tmp, sizeof(tmp));
	const char *tname = via_work ? tmp : name;
	if (link)
		r = symlinkat(link, target, tname);
	else if (isdir)
		r = mkdirat(target, tname, mode & 07777);
	else
		r = mknodat(target, tname, mode, rdev);
	if (r < 0 && errno == EPERM && fs->p.xattr_permissions &&
	    (S_ISCHR(mode) || S_ISBLK(mode))) {
		/* no CAP_MKNOD (rootless): an empty file, the override xattr keeps the type */
		r = mknodat(target, tname, S_IFREG | 0600, 0);
	}
	if (r < 0)
		return -errno;
	if ((r = ovl_set_owner(fs, target, tname, o.uid, o.gid,
			       link ? S_IFLNK | 0777 : mode | (isdir && o.sgid_dir ? S_ISGID : 0),
			       rdev)) < 0) {
		errno = -r;
		goto fail;
	}
	if (isdir && via_work) {
		if (o.sgid_dir && fchmodat(target, tname, (mode & 07777) | S_ISGID, 0) < 0)
			goto fail;
		/* the lower layers hold something under this name: hide it */
		if ((r = ovl_set_opaque(fs, target, tname)) < 0) {
			errno = -r;
			goto fail;
		}
	}
	if (via_work && (r = place_from_work(fs, tmp, &s, name, isdir)) < 0) {
		errno = -r;
		goto fail;
	}
	return make_entry(fs, dir, udir, name, e);
fail:
	r = -errno;
	ovl_rm_rf_at(target, tname);
	return r;
}

int ovl_create(struct ovl_fs *fs, fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
	       struct fuse_file_info *fi, struct fuse_entry_param *e)
{
	struct ovl_node *dir = ovl_node_get(fs, parent);
	if (!dir)
		return -ESTALE;
	struct slot s;
	int r = prepare_slot(fs, dir, name, &s);
	if (r < 0)
		return r;
	autoclose int udir = s.udir;
	struct owner o;
	new_owner(fs, req, udir, &o);
	mode = new_mode(fs, req, udir, mode & 07777);
	bool via_work = s.whiteout || s.wh_file;
	int target = via_work ? fs->workfd : udir;
	char tmp[64];
	ovl_tmpname(fs, tmp, sizeof(tmp));
	const char *tname = via_work ? tmp : name;
	int flags = (fi->flags & ~(O_CREAT | O_EXCL | O_NOCTTY | O_TRUNC)) | O_CREAT | O_EXCL |
		    O_NOFOLLOW | O_CLOEXEC;
	autoclose int fd = openat(target, tname, flags, mode);
	if (fd < 0)
		return -errno;
	if ((r = ovl_set_owner(fs, target, tname, o.uid, o.gid, S_IFREG | mode, 0)) < 0) {
		errno = -r;
		goto fail;
	}
	if (via_work && (r = place_from_work(fs, tmp, &s, name, false)) < 0) {
		errno = -r;
		goto fail;
	}
	r = make_entry(fs, dir, udir, name, e);
	if (r < 0)
		return r;
	struct ovl_node *n = ovl_node_get(fs, e->ino);
	if (n)
		atomic_fetch_add(&n->nopen, 1);
	fi->fh = (uint64_t)steal_fd(&fd);
	return 0;
fail:
	r = -errno;
	unlinkat(target, tname, 0);
	return r;
}

/* Looks up name in dir and takes a node reference. */
static int child(struct ovl_fs *fs, struct ovl_node *dir, const char *name, struct ovl_node **out)
{
	struct fuse_entry_param e;
	int r = ovl_check_name(name);
	if (r < 0)
		return r;
	r = ovl_lookup(fs, ovl_node_id(dir), name, &e);
	if (r < 0)
		return r;
	if (!e.ino)
		return -ENOENT;
	*out = ovl_node_get(fs, e.ino);
	return *out ? 0 : -ESTALE;
}

int ovl_unlink(struct ovl_fs *fs, fuse_ino_t parent, const char *name, bool isdir)
{
	struct ovl_node *dir = ovl_node_get(fs, parent);
	if (!dir)
		return -ESTALE;
	if (!fs->has_upper)
		return -EROFS;
	struct ovl_node *n;
	autoclose int udir = -1;
	int r = child(fs, dir, name, &n);
	if (r < 0)
		return r;
	if (isdir && n->type != S_IFDIR)
		r = -ENOTDIR;
	else if (!isdir && n->type == S_IFDIR)
		r = -EISDIR;
	else if (isdir)
		r = ovl_dir_empty(fs, n);
	if (r < 0)
		goto out;
	r = ovl_copy_up(fs, dir, true);
	if (r < 0)
		goto out;
	udir = ovl_node_layer_fd(fs, dir, fs->upper);
	if (udir < 0) {
		r = udir;
		goto out;
	}
	int lower = ovl_lower_has(fs, dir, name);
	if (lower < 0) {
		r = lower;
		goto out;
	}
	ovl_node_pin(fs, n);
	pthread_mutex_lock(&n->lock);
	bool in_upper = n->top == fs->upper;
	pthread_mutex_unlock(&n->lock);
	if (lower) {
		r = ovl_create_whiteout(fs, udir, name);
	} else if (in_upper && isdir) {
		/* it may still hold whiteouts: move it out of sight, then remove it */
		char tmp[64];
		ovl_tmpname(fs, tmp, sizeof(tmp));
		if (renameat(udir, name, fs->workfd, tmp) < 0)
			r = -errno;
		else
			r = ovl_rm_rf_at(fs->workfd, tmp);
	} else if (in_upper) {
		r = unlinkat(udir, name, 0) < 0 ? -errno : 0;
	}
	if (r == 0)
		ovl_node_unhash(fs, n);
out:
	ovl_node_forget(fs, n, 1);
	return r;
}

/* Makes the directory n, moving to (newdir, newname), an upper-only opaque directory when
 * lower layers hold that name, copying its whole lower content up first. */
static int prepare_dir_move(struct ovl_fs *fs, struct ovl_node *n, struct ovl_node *newdir,
			    const char *newname)
{
	struct ovl_place pl;
	int r = ovl_node_place(fs, n, &pl);
	if (r < 0)
		return r;
	bool merged = pl.top != fs->upper || pl.nstack > 1;
	ovl_place_free(&pl);
	if (merged) {
		r = ovl_copy_up_tree(fs, n);
		if (r < 0)
			return r;
	}
	int lower = ovl_lower_has(fs, newdir, newname);
	if (lower < 0)
		return lower;
	if (merged || lower) {
		char *name;
		int pfd = ovl_node_parent_fd(fs, n, fs->upper, &name);
		if (pfd < 0)
			return pfd;
		/* an upper-only directory holds no whiteouts (the kernel would list them) */
		r = merged ? ovl_clear_whiteouts_at(pfd, name) : 0;
		if (r == 0)
			r = ovl_set_opaque(fs, pfd, name);
		free(name);
		close(pfd);
		if (r < 0)
			return r;
		atomic_fetch_add(&fs->epoch, 1);
	}
	return 0;
}

int ovl_rename(struct ovl_fs *fs, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
	       const char *newname, unsigned int flags)
{
	if (flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE))
		return -EINVAL;
	if (!fs->has_upper)
		return -EROFS;
	struct ovl_node *dir = ovl_node_get(fs, parent);
	struct ovl_node *ndir = ovl_node_get(fs, newparent);
	if (!dir || !ndir)
		return -ESTALE;
	int r = valid_new_name(newname);
	if (r < 0)
		return r;
	struct ovl_node *src = NULL, *dst = NULL;
	autoclose int sfd = -1;
	autoclose int dfd = -1;
	r = child(fs, dir, name, &src);
	if (r < 0)
		return r;
	r = child(fs, ndir, newname, &dst);
	if (r == -ENOENT) {
		dst = NULL;
		r = 0;
	}
	if (r < 0)
		goto out;
	if (src == dst)
		goto out; /* same name: nothing to do */
	if (dst && (flags & RENAME_NOREPLACE)) {
		r = -EEXIST;
		goto out;
	}
	if (!dst && (flags & RENAME_EXCHANGE)) {
		r = -ENOENT;
		goto out;
	}
	bool sdir = src->type == S_IFDIR;
	if (dst && !(flags & RENAME_EXCHANGE)) {
		bool ddir = dst->type == S_IFDIR;
		if (sdir && !ddir)
			r = -ENOTDIR;
		else if (!sdir && ddir)
			r = -EISDIR;
		else if (ddir)
			r = ovl_dir_empty(fs, dst);
		if (r < 0)
			goto out;
	}
	/* get both sides into the upper layer */
	r = ovl_copy_up(fs, src, true);
	if (r == 0 && sdir)
		r = prepare_dir_move(fs, src, ndir, newname);
	if (r == 0 && dst && (flags & RENAME_EXCHANGE)) {
		r = ovl_copy_up(fs, dst, true);
		if (r == 0 && dst->type == S_IFDIR)
			r = prepare_dir_move(fs, dst, dir, name);
	}
	if (r == 0)
		r = ovl_copy_up(fs, ndir, true);
	if (r < 0)
		goto out;
	sfd = ovl_node_layer_fd(fs, dir, fs->upper);
	dfd = ovl_node_layer_fd(fs, ndir, fs->upper);
	if (sfd < 0 || dfd < 0) {
		r = sfd < 0 ? sfd : dfd;
		goto out;
	}
	if (flags & RENAME_EXCHANGE) {
		if (renameat2(sfd, name, dfd, newname, RENAME_EXCHANGE) < 0) {
			r = -errno;
			goto out;
		}
		ovl_node_exchange(fs, src, dst);
		if (sdir || dst->type == S_IFDIR)
			atomic_fetch_add(&fs->epoch, 1);
		goto out;
	}
	if (dst)
		ovl_node_pin(fs, dst);
	int need_wh = ovl_lower_has(fs, dir, name);
	if (need_wh < 0) {
		r = need_wh;
		goto out;
	}
	/* clear what the upper holds at the destination */
	char tmp[64] = "";
	struct stat dst_st;
	if (fstatat(dfd, newname, &dst_st, AT_SYMLINK_NOFOLLOW) == 0) {
		if (S_ISDIR(dst_st.st_mode) || (sdir && ovl_is_whiteout_stat(&dst_st))) {
			ovl_tmpname(fs, tmp, sizeof(tmp));
			if (renameat(dfd, newname, fs->workfd, tmp) < 0) {
				r = -errno;
				goto out;
			}
		}
	}
	if (need_wh && fs->feat.rename_whiteout) {
		r = renameat2(sfd, name, dfd, newname, RENAME_WHITEOUT) < 0 ? -errno : 0;
	} else {
		r = renameat(sfd, name, dfd, newname) < 0 ? -errno : 0;
		if (r == 0 && need_wh)
			r = ovl_create_whiteout(fs, sfd, name);
	}
	if (r < 0 && tmp[0]) {
		/* put the destination back */
		renameat(fs->workfd, tmp, dfd, newname);
		tmp[0] = '\0';
	}
	if (tmp[0])
		ovl_rm_rf_at(fs->workfd, tmp);
	if (r < 0)
		goto out;
	ovl_remove_wh_file(dfd, newname);
	ovl_node_move(fs, src, ndir, newname);
	if (sdir)
		atomic_fetch_add(&fs->epoch, 1);
out:
	if (dst)
		ovl_node_forget(fs, dst, 1);
	ovl_node_forget(fs, src, 1);
	return r;
}

int ovl_link(struct ovl_fs *fs, fuse_ino_t ino, fuse_ino_t newparent, const char *newname,
	     struct fuse_entry_param *e)
{
	struct ovl_node *n = ovl_node_get(fs, ino);
	struct ovl_node *dir = ovl_node_get(fs, newparent);
	if (!n || !dir)
		return -ESTALE;
	if (n->type == S_IFDIR)
		return -EPERM;
	int r = ovl_copy_up(fs, n, true);
	if (r < 0)
		return r;
	struct slot s;
	r = prepare_slot(fs, dir, newname, &s);
	if (r < 0)
		return r;
	autoclose int udir = s.udir;
	char *sname;
	autoclose int spfd = ovl_node_parent_fd(fs, n, fs->upper, &sname);
	if (spfd < 0)
		return spfd;
	autofree char *sname_free = sname;
	if (s.whiteout || s.wh_file) {
		char tmp[64];
		ovl_tmpname(fs, tmp, sizeof(tmp));
		if (linkat(spfd, sname, fs->workfd, tmp, 0) < 0)
			return -errno;
		r = place_from_work(fs, tmp, &s, newname, false);
		if (r < 0) {
			unlinkat(fs->workfd, tmp, 0);
			return r;
		}
	} else if (linkat(spfd, sname, udir, newname, 0) < 0) {
		return -errno;
	}
	/* the new name is the same inode: answer with the source node, so that the kernel
	 * keeps one inode (and one page cache) for both names */
	struct stat st;
	if (fstatat(udir, newname, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	ovl_override_apply(fs, udir, newname, &st);
	ovl_node_ref(fs, n);
	ovl_fill_entry(fs, n, &st, e);
	e->entry_timeout = 0; /* n keeps its first name: let the kernel look the new one up */
	e->attr_timeout = 0;
	return 0;
}
