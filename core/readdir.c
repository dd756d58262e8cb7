/* readdir.c - the merged listing of a directory, its per-handle cache, whiteout filtering,
 * and the empty-directory check used by rmdir and rename. */
#include "ovl.h"

#include <fcntl.h>
#include <string.h>

#define WH_PREFIX ".wh."

/* A small open-addressing set of names seen in upper layers. */
struct nameset {
	char **v;
	size_t cap, n;
};

static uint64_t hash_str(const char *s)
{
	uint64_t h = 1469598103934665603ull;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

static int set_grow(struct nameset *s)
{
	size_t nc = s->cap ? s->cap * 2 : 64;
	char **nv = calloc(nc, sizeof(char *));
	if (!nv)
		return -ENOMEM;
	for (size_t i = 0; i < s->cap; i++) {
		if (!s->v[i])
			continue;
		size_t j = hash_str(s->v[i]) & (nc - 1);
		while (nv[j])
			j = (j + 1) & (nc - 1);
		nv[j] = s->v[i];
	}
	free(s->v);
	s->v = nv;
	s->cap = nc;
	return 0;
}

/* Returns 1 if added, 0 if present, -ENOMEM. The set takes a copy of name. */
static int set_add(struct nameset *s, const char *name)
{
	if ((s->n + 1) * 2 > s->cap && set_grow(s) < 0)
		return -ENOMEM;
	size_t j = hash_str(name) & (s->cap - 1);
	while (s->v[j]) {
		if (!strcmp(s->v[j], name))
			return 0;
		j = (j + 1) & (s->cap - 1);
	}
	s->v[j] = strdup(name);
	if (!s->v[j])
		return -ENOMEM;
	s->n++;
	return 1;
}

static bool set_has(const struct nameset *s, const char *name)
{
	if (!s->cap)
		return false;
	size_t j = hash_str(name) & (s->cap - 1);
	while (s->v[j]) {
		if (!strcmp(s->v[j], name))
			return true;
		j = (j + 1) & (s->cap - 1);
	}
	return false;
}

static void set_free(struct nameset *s)
{
	for (size_t i = 0; i < s->cap; i++)
		free(s->v[i]);
	free(s->v);
	memset(s, 0, sizeof(*s));
}

static int add_ent(struct ovl_dirh *h, const char *name, uint64_t ino, unsigned char type)
{
	if (h->n == h->cap) {
		size_t nc = h->cap ? h->cap * 2 : 32;
		struct ovl_dirent *ne = realloc(h->ents, nc * sizeof(*ne));
		if (!ne)
			return -ENOMEM;
		h->ents = ne;
		h->cap = nc;
	}
	h->ents[h->n].name = strdup(name);
	if (!h->ents[h->n].name)
		return -ENOMEM;
	h->ents[h->n].ino = ino;
	h->ents[h->n].type = type;
	h->n++;
	return 0;
}

void ovl_dirh_free(struct ovl_dirh *h)
{
	for (size_t i = 0; i < h->n; i++)
		free(h->ents[i].name);
	free(h->ents);
	h->ents = NULL;
	h->n = h->cap = 0;
}

/* A listing shared by the readers of one directory: the node holds a reference while it is
 * current, each readdir one while it copies entries out. */
struct ovl_listing {
	atomic_int refs;
	struct ovl_dirh h;
};

static void listing_put(struct ovl_listing *l)
{
	if (l && atomic_fetch_sub(&l->refs, 1) == 1) {
		ovl_dirh_free(&l->h);
		free(l);
	}
}

void ovl_listing_drop(struct ovl_node *n)
{
	listing_put(n->listing);
	n->listing = NULL;
}

/* Visits the merged entries of dir: cb(name, d_ino, d_type) for each visible name. */
static int merge_dir(struct ovl_fs *fs, struct ovl_node *dir,
		     int (*cb)(void *ctx, const char *name, uint64_t ino, unsigned char type),
		     void *ctx)
{
	struct ovl_place pl;
	int r = ovl_node_place(fs, dir, &pl);
	if (r < 0)
		return r;
	const uint16_t *stack = ovl_place_stack(&pl);
	struct nameset seen = { 0 }; /* names decided by an upper layer: shown or whited out */
	for (int i = 0; i < pl.nstack && r >= 0; i++) {
		int l = stack[i];
		int pfd = ovl_node_layer_fd(fs, dir, l);
		if (pfd < 0) {
			if (pfd == -ENOENT)
				continue;
			r = pfd;
			break;
		}
		int fd = openat(pfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		close(pfd);
		if (fd < 0) {
			r = -errno;
			break;
		}
		DIR *d = fdopendir(fd);
		if (!d) {
			r = -errno;
			close(fd);
			break;
		}
		bool last = i + 1 == pl.nstack;
		struct dirent *de;
		/* errno tells readdir's end from its failure: the calls in the loop set it too */
		while ((errno = 0, de = readdir(d))) {
			const char *name = de->d_name;
			if (!strcmp(name, ".") || !strcmp(name, ".."))
				continue;
			if (ovl_is_wh_name(name)) {
				/* .wh.NAME hides NAME below; .wh..wh..opq is a marker */
				const char *target = name + sizeof(WH_PREFIX) - 1;
				if (*target && strcmp(name, ".wh..wh..opq") && !last &&
				    set_add(&seen, target) < 0) {
					r = -ENOMEM;
					break;
				}
				continue;
			}
			if (set_has(&seen, name))
				continue;
			bool wh = false;
			if (de->d_type == DT_CHR || de->d_type == DT_UNKNOWN) {
				struct stat st;
				if (fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
				    ovl_is_whiteout_stat(&st))
					wh = true;
			}
			if (!last && set_add(&seen, name) < 0) {
				r = -ENOMEM;
				break;
			}
			if (wh)
				continue;
			unsigned char type = de->d_type;
			if (fs->p.xattr_permissions && (type == DT_REG || type == DT_UNKNOWN)) {
				/* an empty file may stand for a device, fifo or socket */
				struct stat st;
				if (fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
				    (!S_ISREG(st.st_mode) || st.st_size == 0)) {
					ovl_override_apply(fs, fd, name, &st);
					type = IFTODT(st.st_mode);
				}
			}
			r = cb(ctx, name, de->d_ino, type);
			if (r != 0)
				break;
		}
		if (!de && errno && r >= 0)
			r = -errno;
		closedir(d);
	}
	set_free(&seen);
	ovl_place_free(&pl);
	return r;
}

/* The offset of the entry after name: a hash of the name, not a position, so that an
 * offset the kernel got from one listing (its readdir cache outlives handles) resumes a
 * listing made later, after entries came or went, without repeating or skipping names. */
static off_t name_cookie(const char *name)
{
	if (!strcmp(name, ".") || !strcmp(name, ".."))
		return name[1] ? 2 : 1;
	return (off_t)(hash_str(name) >> 2) + 3;
}

static int cookie_cmp(const void *a, const void *b)
{
	off_t x = name_cookie(((const struct ovl_dirent *)a)->name);
	off_t y = name_cookie(((const struct ovl_dirent *)b)->name);
	return x < y ? -1 : x > y;
}

static int load_cb(void *ctx, const char *name, uint64_t ino, unsigned char type)
{
	return add_ent(ctx, name, ino, type);
}

int ovl_dir_load(struct ovl_fs *fs, struct ovl_node *dir, struct ovl_dirh *h, bool dots)
{
	ovl_dirh_free(h);
	int r = 0;
	if (dots) {
		r = add_ent(h, ".", dir->ino, DT_DIR);
		if (!r)
			r = add_ent(h, "..", dir->ino, DT_DIR); /* any non-zero ino: 0 hides it */
	}
	if (!r)
		r = merge_dir(fs, dir, load_cb, h);
	if (r < 0) {
		ovl_dirh_free(h);
		return r;
	}
	if (h->n > 1)
		qsort(h->ents, h->n, sizeof(*h->ents), cookie_cmp);
	return 0;
}

static int empty_cb(void *ctx, const char *name, uint64_t ino, unsigned char type)
{
	(void)ctx;
	(void)name;
	(void)ino;
	(void)type;
	return -ENOTEMPTY;
}

int ovl_dir_empty(struct ovl_fs *fs, struct ovl_node *dir)
{
	return merge_dir(fs, dir, empty_cb, NULL);
}

/* The listing to serve a read at off from, with a reference. A read from offset 0 starts a
 * pass (the kernel fills its readdir cache, or a reader opened or rewound the directory):
 * it gets a fresh listing, which later reads of the pass share. A read past 0 with none
 * (another pass reached the end and dropped it) makes one too: offsets are name cookies,
 * so any listing resumes where the last one stopped. */
static struct ovl_listing *listing_get(struct ovl_fs *fs, struct ovl_node *dir, off_t off, int *err)
{
	if (off != 0) {
		pthread_mutex_lock(&dir->lock);
		struct ovl_listing *l = dir->listing;
		if (l)
			atomic_fetch_add(&l->refs, 1);
		pthread_mutex_unlock(&dir->lock);
		if (l)
			return l;
	}
	struct ovl_listing *l = calloc(1, sizeof(*l));
	if (!l) {
		*err = -ENOMEM;
		return NULL;
	}
	int r = ovl_dir_load(fs, dir, &l->h, true);
	if (r < 0) {
		free(l);
		*err = r;
		return NULL;
	}
	atomic_store(&l->refs, 2); /* the node's and ours */
	pthread_mutex_lock(&dir->lock);
	struct ovl_listing *old = dir->listing;
	dir->listing = l;
	pthread_mutex_unlock(&dir->lock);
	listing_put(old);
	return l;
}

/* Takes dir's listing off the node (only if it is still `only`, when given) and drops the
 * node's reference to it. */
static void listing_detach(struct ovl_node *dir, const struct ovl_listing *only)
{
	pthread_mutex_lock(&dir->lock);
	struct ovl_listing *l = dir->listing;
	if (only && l != only)
		l = NULL;
	if (l)
		dir->listing = NULL;
	pthread_mutex_unlock(&dir->lock);
	listing_put(l);
}

void ovl_dir_changed(struct ovl_node *dir)
{
	listing_detach(dir, NULL);
}

ssize_t ovl_readdir_fill(struct ovl_fs *fs, fuse_req_t req, fuse_ino_t ino, char *buf, size_t size,
			 off_t off, bool plus)
{
	struct ovl_node *dir = ovl_node_get(fs, ino);
	if (!dir)
		return -ESTALE;
	if (dir->type != S_IFDIR)
		return -ENOTDIR;
	int err = 0;
	struct ovl_listing *l = listing_get(fs, dir, off, &err);
	if (!l)
		return err;
	const struct ovl_dirh *h = &l->h;
	size_t pos = 0, lo = 0, hi = h->n;
	while (lo < hi) { /* the first entry past off */
		size_t mid = lo + (hi - lo) / 2;
		if (name_cookie(h->ents[mid].name) <= off)
			lo = mid + 1;
		else
			hi = mid;
	}
	size_t i;
	for (i = lo; i < h->n; i++) {
		const struct ovl_dirent *de = &h->ents[i];
		size_t used;
		if (plus) {
			struct fuse_entry_param e;
			memset(&e, 0, sizeof(e));
			bool dot = !strcmp(de->name, ".") || !strcmp(de->name, "..");
			if (dot) {
				e.attr.st_ino = de->ino;
				e.attr.st_mode = DTTOIF(de->type);
			} else if (ovl_lookup(fs, ino, de->name, &e) < 0 || e.ino == 0) {
				continue; /* vanished since the listing was made */
			}
			used = fuse_add_direntry_plus(req, buf + pos, size - pos, de->name, &e,
						      name_cookie(de->name));
			if (used > size - pos) {
				/* did not fit: give the lookup reference back */
				struct ovl_node *n =
					(!dot && e.ino) ? ovl_node_get(fs, e.ino) : NULL;
				if (n)
					ovl_node_forget(fs, n, 1);
				break;
			}
		} else {
			struct stat st = { .st_ino = de->ino, .st_mode = DTTOIF(de->type) };
			used = fuse_add_direntry(req, buf + pos, size - pos, de->name, &st,
						 name_cookie(de->name));
			if (used > size - pos)
				break;
		}
		pos += used;
	}
	/* an empty reply past the last entry ends the pass (the kernel asks until it gets one,
	 * and has the listing now): unless another pass replaced it, the node lets it go */
	if (i == h->n && pos == 0)
		listing_detach(dir, l);
	listing_put(l);
	return (ssize_t)pos;
}
