/* namei.c - lookup across layers: whiteouts, opaque dirs, the lower stack of a node,
 * and the hard-link index for lower files with several names. */
#include "ovl.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/xattr.h>

int ovl_check_name(const char *name)
{
	size_t len = strlen(name);
	if (len > NAME_MAX)
		return -ENAMETOOLONG;
	if (ovl_is_wh_name(name))
		return -ENOENT;
	return 0;
}

void ovl_lookup_res_free(struct ovl_lookup_res *res)
{
	free(res->stack);
	free(res->lpath);
	res->stack = NULL;
	res->lpath = NULL;
}

/* The kernel's redirect_dir: a renamed directory names its lower origin in an xattr,
 * either "/absolute/path" from the layer roots or a "name" in the same parent. */
static char *read_redirect(struct ovl_fs *fs, struct ovl_node *dir, int dirfd, const char *name)
{
	static const char *const xattrs[] = { "trusted.overlay.redirect", "user.overlay.redirect" };
	char path[PATH_MAX], val[PATH_MAX];
	ovl_fdpath(path, sizeof(path), dirfd, name);
	ssize_t r = -1;
	for (size_t i = 0; i < 2 && r <= 0; i++)
		r = lgetxattr(path, xattrs[i], val, sizeof(val) - 1);
	if (r <= 0)
		return NULL;
	val[r] = '\0';
	if (val[0] == '/')
		return strdup(val + 1);
	if (strchr(val, '/'))
		return NULL;
	/* relative: the parent's lower path plus the name */
	char *ppath = ovl_node_lower_path(fs, dir);
	if (!ppath)
		return NULL;
	char *out = NULL;
	if (asprintf(&out, "%s%s%s", ppath, *ppath ? "/" : "", val) < 0)
		out = NULL;
	free(ppath);
	return out;
}

/* The kernel's overlay.origin names the lower object by file handle (an ovl_fb: version,
 * 0xfb magic, length, flags, handle type, uuid, handle); the kernel reports the lower
 * inode number for a copied-up object, so do we. */
static bool read_kernel_origin(struct ovl_fs *fs, const char *path, struct ovl_lookup_res *res)
{
	unsigned char b[21 + MAX_HANDLE_SZ];
	char xname[64];
	snprintf(xname, sizeof(xname), "%sorigin", fs->feat.private_prefix);
	ssize_t r = lgetxattr(path, xname, b, sizeof(b));
	if (r < 22 || b[1] != 0xfb || b[2] != r)
		return false;
	struct {
		struct file_handle fh;
		unsigned char buf[MAX_HANDLE_SZ];
	} h;
	h.fh.handle_bytes = (unsigned)(r - 21);
	h.fh.handle_type = b[4];
	memcpy(h.fh.f_handle, b + 21, h.fh.handle_bytes);
	for (int l = 0; l < fs->nlayers; l++) {
		if (fs->layers[l].upper)
			continue;
		/* the mount fd must be a real open file, not O_PATH */
		int mfd = openat(fs->layers[l].fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (mfd < 0)
			continue;
		int fd = open_by_handle_at(mfd, &h.fh, O_PATH | O_CLOEXEC);
		close(mfd);
		if (fd < 0)
			continue;
		struct stat st;
		bool ok = fstat(fd, &st) == 0 && st.st_dev == fs->layers[l].dev;
		close(fd);
		if (ok) {
			res->ino = st.st_ino;
			return true;
		}
	}
	return false;
}

/* Reads the origin inode number we stored on a copied-up object, and the link-count
 * correction of an indexed file (ours, or the kernel's "U-1" overlay.nlink). */
static bool read_origin(struct ovl_fs *fs, int dirfd, const char *name, struct ovl_lookup_res *res)
{
	if (!fs->feat.private_prefix)
		return false;
	char path[PATH_MAX], xname[64], val[64];
	ovl_fdpath(path, sizeof(path), dirfd, name);
	if (!S_ISDIR(res->st.st_mode) && res->st.st_nlink > 1) {
		snprintf(xname, sizeof(xname), "%snlink", fs->feat.private_prefix);
		ssize_t r = lgetxattr(path, xname, val, sizeof(val) - 1);
		int adj;
		if (r > 1) {
			val[r] = '\0';
			if (val[0] == 'U' && sscanf(val + 1, "%d", &adj) == 1 &&
			    (adj >= 0 || (nlink_t)-adj < res->st.st_nlink))
				res->nlink_adj = adj;
		}
	}
	snprintf(xname, sizeof(xname), "%sstrata.origin", fs->feat.private_prefix);
	ssize_t r = lgetxattr(path, xname, val, sizeof(val) - 1);
	if (r <= 0)
		return read_kernel_origin(fs, path, res);
	val[r] = '\0';
	char flag = 0;
	unsigned long long v, lower = 0, linked = 0;
	if (sscanf(val, "%llu%c%llu:%llu", &v, &flag, &lower, &linked) < 1)
		return false;
	res->ino = v;
	if (flag == 'i') {
		res->indexed = true;
		res->lower_nlink = lower;
		res->linked = linked;
	}
	return true;
}

void ovl_reread_nlink_adj(struct ovl_fs *fs, struct ovl_node *n, int dirfd, const char *name)
{
	struct ovl_lookup_res res = { 0 };
	if (fstatat(dirfd, name, &res.st, AT_SYMLINK_NOFOLLOW) < 0)
		return;
	read_origin(fs, dirfd, name, &res);
	n->nlink_adj = res.nlink_adj;
	n->indexed = res.indexed;
	n->lower_nlink = res.lower_nlink;
	n->linked = res.linked;
}

static int stack_push(struct ovl_lookup_res *res, int l)
{
	uint16_t *ns = realloc(res->stack, sizeof(uint16_t) * (res->nstack + 1));
	if (!ns)
		return -ENOMEM;
	res->stack = ns;
	res->stack[res->nstack++] = (uint16_t)l;
	return 0;
}

/* Below a redirected directory the lower layers are searched at its redirect path from
 * each layer's root, in every layer under the one holding the redirect (like the kernel,
 * whatever the new parent's opacity). */
static int lookup_redirect(struct ovl_fs *fs, int from, struct ovl_lookup_res *res)
{
	for (int l = from + 1; l < fs->nlayers; l++) {
		int rfd = ovl_open_path(fs->layers[l].fd, res->lpath);
		if (rfd == -ENOENT || rfd == -ENOTDIR)
			continue;
		if (rfd < 0)
			return rfd;
		struct stat st;
		int r = fstatat(rfd, "", &st, AT_EMPTY_PATH) < 0 ? -errno : 0;
		if (r == 0 && (ovl_is_whiteout_stat(&st) || !S_ISDIR(st.st_mode))) {
			close(rfd);
			break;
		}
		if (r == 0)
			r = stack_push(res, l);
		int opaque = r == 0 && l + 1 < fs->nlayers ? ovl_is_opaque(rfd, "") : 0;
		close(rfd);
		if (r < 0)
			return r;
		if (opaque == 1)
			break;
	}
	return 0;
}

int ovl_lookup_name(struct ovl_fs *fs, struct ovl_node *dir, const struct ovl_place *pl,
		    const char *name, struct ovl_lookup_res *res)
{
	memset(res, 0, sizeof(*res));
	res->top = -1;
	const uint16_t *stack = ovl_place_stack(pl);
	int r = 0;
	for (int i = 0; i < pl->nstack; i++) {
		int l = stack[i];
		autoclose int dfd = ovl_node_layer_fd(fs, dir, l);
		if (dfd == -ENOENT || dfd == -ENOTDIR)
			continue;
		if (dfd < 0) {
			r = dfd;
			break;
		}
		struct stat st;
		if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			if (errno != ENOENT && errno != ENOTDIR) {
				r = -errno;
				break;
			}
			if (ovl_has_wh_file(dfd, name))
				break;
			continue;
		}
		if (ovl_is_whiteout_stat(&st))
			break;
		if (res->top < 0) {
			res->top = l;
			ovl_override_apply(fs, dfd, name, &st);
			res->st = st;
			res->ino = st.st_ino;
			if (fs->layers[l].upper)
				read_origin(fs, dfd, name, res);
			res->lower_links = !fs->layers[l].upper && !S_ISDIR(st.st_mode) &&
					   st.st_nlink > 1 && fs->indexfd >= 0;
			if (!S_ISDIR(st.st_mode))
				break;
		} else if (!S_ISDIR(st.st_mode)) {
			break;
		}
		r = stack_push(res, l);
		if (r < 0 || l + 1 == fs->nlayers)
			break;
		/* an opaque dir hides the layers below; a redirected one (the kernel's
		 * redirect_dir) continues at its old path, even under an opaque parent */
		if (ovl_is_opaque(dfd, name) == 1)
			break;
		res->lpath = read_redirect(fs, dir, dfd, name);
		if (res->lpath) {
			r = lookup_redirect(fs, l, res);
			break;
		}
		if (i + 1 == pl->nstack)
			break;
	}
	if (r == 0 && res->top < 0)
		r = -ENOENT;
	if (r < 0)
		ovl_lookup_res_free(res);
	return r;
}

int ovl_index_sync(struct ovl_fs *fs, struct ovl_node *n)
{
	if (!n->lower_links || n->unlinked)
		return 0;
	pthread_mutex_lock(&n->lock);
	int top = n->top;
	pthread_mutex_unlock(&n->lock);
	if (top == fs->upper) {
		n->lower_links = false;
		return 0;
	}
	autoclose int fd = ovl_node_layer_fd(fs, n, top);
	if (fd < 0)
		return fd;
	struct stat st, ist;
	if (fstatat(fd, "", &st, AT_EMPTY_PATH) < 0)
		return -errno;
	char idx[64];
	ovl_index_name(idx, sizeof(idx), &st);
	if (fstatat(fs->indexfd, idx, &ist, AT_SYMLINK_NOFOLLOW) < 0) {
		char *name;
		int pfd = ovl_node_parent_fd(fs, n, top, &name);
		bool kernel = pfd >= 0 && ovl_kindex_find(fs, pfd, name);
		if (pfd >= 0) {
			free(name);
			close(pfd);
		}
		if (!kernel)
			return 0; /* no name of it was copied up yet */
	}
	int r = ovl_copy_up(fs, n, true);
	if (r == 0)
		n->lower_links = false;
	return r;
}

void ovl_fill_entry(struct ovl_fs *fs, struct ovl_node *n, const struct stat *st,
		    struct fuse_entry_param *e)
{
	memset(e, 0, sizeof(*e));
	e->ino = ovl_node_id(n);
	e->generation = 0;
	e->attr = *st;
	ovl_fixup_stat(fs, n, &e->attr);
	ovl_idmap_stat(fs, &e->attr);
	e->attr_timeout = fs->timeout;
	e->entry_timeout = fs->timeout;
	/* several names, several nodes: do not let the kernel keep stale counts and sizes */
	if (!S_ISDIR(st->st_mode) && st->st_nlink > 1)
		e->attr_timeout = 0;
}

int ovl_lookup(struct ovl_fs *fs, fuse_ino_t parent, const char *name, struct fuse_entry_param *e)
{
	struct ovl_node *dir = ovl_node_get(fs, parent);
	if (!dir)
		return -ESTALE;
	int r = ovl_check_name(name);
	if (r == -ENOENT) {
		/* a negative entry the kernel may cache */
		memset(e, 0, sizeof(*e));
		e->entry_timeout = fs->timeout;
		return 0;
	}
	if (r < 0)
		return r;
	struct ovl_place pl;
	r = ovl_node_place(fs, dir, &pl);
	if (r < 0)
		return r;
	struct ovl_lookup_res res;
	r = ovl_lookup_name(fs, dir, &pl, name, &res);
	ovl_place_free(&pl);
	if (r == -ENOENT) {
		memset(e, 0, sizeof(*e));
		e->entry_timeout = fs->timeout;
		return 0;
	}
	if (r < 0)
		return r;
	struct ovl_node *n = ovl_node_lookup_ref(fs, dir, name, &res);
	ovl_lookup_res_free(&res);
	if (!n)
		return -ENOMEM;
	if (n->lower_links && ovl_index_sync(fs, n) == 0 && !n->lower_links)
		ovl_getattr_node(fs, n, &res.st); /* now the linked copy */
	ovl_fill_entry(fs, n, &res.st, e);
	return 0;
}

int ovl_lower_has(struct ovl_fs *fs, struct ovl_node *dir, const char *name)
{
	struct ovl_place pl;
	int r = ovl_node_place(fs, dir, &pl);
	if (r < 0)
		return r;
	/* only the layers below the upper count */
	const uint16_t *stack = ovl_place_stack(&pl);
	struct ovl_place lower = { .top = -1, .nstack = 0 };
	uint16_t *ls = malloc(sizeof(uint16_t) * (pl.nstack + 1));
	if (!ls) {
		ovl_place_free(&pl);
		return -ENOMEM;
	}
	for (int i = 0; i < pl.nstack; i++)
		if (!fs->layers[stack[i]].upper)
			ls[lower.nstack++] = stack[i];
	/* an upper dir that is opaque hides the lowers */
	if (pl.nstack && fs->has_upper && stack[0] == fs->upper && pl.nstack == 1)
		lower.nstack = 0;
	lower.bigstack = ls;
	ovl_place_free(&pl);
	struct ovl_lookup_res res;
	r = lower.nstack ? ovl_lookup_name(fs, dir, &lower, name, &res) : -ENOENT;
	free(ls);
	if (r == 0) {
		ovl_lookup_res_free(&res);
		return 1;
	}
	return r == -ENOENT ? 0 : r;
}
