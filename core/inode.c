/* inode.c - the node table (arena index + generation as fuse_ino_t), lookup counts, forget,
 * the bounded cache of layer fds, and getattr/setattr. */
#include "ovl.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/xattr.h>

#define CHUNK_SHIFT 12
#define CHUNK_SIZE (1u << CHUNK_SHIFT)
/* the chunk table never moves, so a node id is resolved without a lock */
#define MAX_CHUNKS (1u << 16)

static uint32_t name_hash(uint32_t parent, const char *name)
{
	uint32_t h = 2166136261u ^ parent;
	for (const unsigned char *s = (const unsigned char *)name; *s; s++)
		h = (h ^ *s) * 16777619u;
	return h;
}

static struct ovl_node *node_at(struct ovl_fs *fs, uint32_t idx)
{
	uint32_t c = idx >> CHUNK_SHIFT;
	if (idx == 0 || c >= MAX_CHUNKS)
		return NULL;
	struct ovl_node *chunk = __atomic_load_n(&fs->chunks[c], __ATOMIC_ACQUIRE);
	return chunk ? &chunk[idx & (CHUNK_SIZE - 1)] : NULL;
}

/* Called with tlock held. */
static struct ovl_node *node_alloc(struct ovl_fs *fs)
{
	if (!fs->freelist) {
		if (fs->nchunks == MAX_CHUNKS)
			return NULL;
		struct ovl_node *chunk = calloc(CHUNK_SIZE, sizeof(*chunk));
		if (!chunk)
			return NULL;
		uint32_t base = fs->nchunks << CHUNK_SHIFT;
		for (uint32_t i = CHUNK_SIZE; i-- > 0;) {
			uint32_t idx = base + i;
			if (idx == 0 || idx == OVL_ROOT_IDX)
				continue;
			chunk[i].idx = idx;
			chunk[i].gen = 0;
			chunk[i].hnext = fs->freelist;
			pthread_mutex_init(&chunk[i].lock, NULL);
			fs->freelist = idx;
		}
		if (base == 0) {
			chunk[OVL_ROOT_IDX].idx = OVL_ROOT_IDX;
			pthread_mutex_init(&chunk[OVL_ROOT_IDX].lock, NULL);
		}
		__atomic_store_n(&fs->chunks[fs->nchunks++], chunk, __ATOMIC_RELEASE);
	}
	struct ovl_node *n = node_at(fs, fs->freelist);
	fs->freelist = n->hnext;
	n->gen++;
	n->inuse = true;
	n->hnext = 0;
	n->nlookup = 0;
	n->children = 0;
	n->hashed = n->unlinked = n->indexed = n->lower_links = false;
	n->nlink_adj = 0;
	n->lower_nlink = 0;
	atomic_store(&n->nopen, 0);
	n->ufd = -1;
	n->stack = NULL;
	n->nstack = 0;
	n->lpath = NULL;
	n->pt_backing = n->pt_count = 0;
	n->pt_lower = n->pt_used = false;
	n->listing = NULL;
	n->xneg = 0;
	return n;
}

static int table_grow(struct ovl_fs *fs)
{
	uint32_t nb = fs->nbuckets ? fs->nbuckets * 2 : 1024;
	uint32_t *b = calloc(nb, sizeof(*b));
	if (!b)
		return -ENOMEM;
	for (uint32_t i = 0; i < fs->nbuckets; i++) {
		uint32_t idx = fs->buckets[i];
		while (idx) {
			struct ovl_node *n = node_at(fs, idx);
			uint32_t next = n->hnext;
			uint32_t h = name_hash(n->parent, n->name) & (nb - 1);
			n->hnext = b[h];
			b[h] = idx;
			idx = next;
		}
	}
	free(fs->buckets);
	fs->buckets = b;
	fs->nbuckets = nb;
	return 0;
}

static void hash_insert(struct ovl_fs *fs, struct ovl_node *n)
{
	if (fs->nhashed + 1 > fs->nbuckets)
		table_grow(fs);
	uint32_t h = name_hash(n->parent, n->name) & (fs->nbuckets - 1);
	n->hnext = fs->buckets[h];
	fs->buckets[h] = n->idx;
	n->hashed = true;
	fs->nhashed++;
}

static void hash_remove(struct ovl_fs *fs, struct ovl_node *n)
{
	if (!n->hashed)
		return;
	uint32_t h = name_hash(n->parent, n->name) & (fs->nbuckets - 1);
	uint32_t *pp = &fs->buckets[h];
	while (*pp && *pp != n->idx)
		pp = &node_at(fs, *pp)->hnext;
	if (*pp)
		*pp = n->hnext;
	n->hnext = 0;
	n->hashed = false;
	fs->nhashed--;
}

static struct ovl_node *hash_find(struct ovl_fs *fs, uint32_t parent, const char *name)
{
	if (!fs->nbuckets)
		return NULL;
	uint32_t h = name_hash(parent, name) & (fs->nbuckets - 1);
	for (uint32_t idx = fs->buckets[h]; idx;) {
		struct ovl_node *n = node_at(fs, idx);
		if (n->parent == parent && !strcmp(n->name, name))
			return n;
		idx = n->hnext;
	}
	return NULL;
}

int ovl_nodes_init(struct ovl_fs *fs)
{
	pthread_mutex_init(&fs->tlock, NULL);
	fs->chunks = calloc(MAX_CHUNKS, sizeof(*fs->chunks));
	if (!fs->chunks)
		return -ENOMEM;
	if (table_grow(fs) < 0)
		return -ENOMEM;
	/* allocate chunk 0, which holds the root at index 1 */
	struct ovl_node *tmp = node_alloc(fs);
	if (!tmp)
		return -ENOMEM;
	/* give that node back: we only wanted chunk 0 */
	tmp->inuse = false;
	tmp->hnext = fs->freelist;
	fs->freelist = tmp->idx;

	struct ovl_node *root = node_at(fs, OVL_ROOT_IDX);
	root->inuse = true;
	root->gen = 0;
	root->name = strdup("");
	root->nlookup = 1;
	root->type = S_IFDIR;
	root->top = 0;
	root->nstack = fs->nlayers;
	root->stack = calloc(fs->nlayers, sizeof(uint16_t));
	if (!root->stack || !root->name)
		return -ENOMEM;
	for (int i = 0; i < fs->nlayers; i++)
		root->stack[i] = i;
	struct stat st;
	if (fstat(fs->layers[0].fd, &st) == 0)
		root->ino = st.st_ino;
	root->epoch = atomic_load(&fs->epoch);
	return 0;
}

void ovl_nodes_destroy(struct ovl_fs *fs)
{
	for (uint32_t c = 0; c < fs->nchunks; c++) {
		for (uint32_t i = 0; i < CHUNK_SIZE; i++) {
			struct ovl_node *n = &fs->chunks[c][i];
			if (n->inuse) {
				free(n->name);
				free(n->stack);
				free(n->lpath);
				ovl_listing_drop(n);
			}
			pthread_mutex_destroy(&n->lock);
		}
		free(fs->chunks[c]);
	}
	free(fs->chunks);
	free(fs->buckets);
	fs->chunks = NULL;
	fs->buckets = NULL;
}

struct ovl_node *ovl_node_get(struct ovl_fs *fs, fuse_ino_t id)
{
	uint32_t idx = (uint32_t)id;
	uint32_t gen = (uint32_t)(id >> 32);
	/* no lock: the kernel only sends ids it holds a lookup reference on, so the node
	 * cannot be freed under us; the checks catch a confused or hostile peer */
	struct ovl_node *n = node_at(fs, idx);
	if (n && (!__atomic_load_n(&n->inuse, __ATOMIC_ACQUIRE) ||
		  __atomic_load_n(&n->gen, __ATOMIC_RELAXED) != gen))
		n = NULL;
	if (!n)
		ovl_log("stale or invalid node id %#llx", (unsigned long long)id);
	return n;
}

/* Releases one reference (lookup count or child); frees the node when none are left.
 * Called with tlock held. */
static void node_put_locked(struct ovl_fs *fs, struct ovl_node *n)
{
	while (n && n->idx != OVL_ROOT_IDX && n->nlookup == 0 && n->children == 0) {
		struct ovl_node *parent = n->hashed || n->parent ? node_at(fs, n->parent) : NULL;
		hash_remove(fs, n);
		fuse_ino_t id = ovl_node_id(n);
		free(n->name);
		free(n->stack);
		free(n->lpath);
		ovl_listing_drop(n);
		n->name = NULL;
		n->stack = NULL;
		n->lpath = NULL;
		if (n->ufd >= 0)
			close(n->ufd);
		n->ufd = -1;
		n->inuse = false;
		n->parent = 0;
		n->hnext = fs->freelist;
		fs->freelist = n->idx;
		ovl_fdcache_drop(fs, id);
		if (parent) {
			parent->children--;
			n = parent;
		} else {
			n = NULL;
		}
	}
}

struct ovl_node *ovl_node_lookup_ref(struct ovl_fs *fs, struct ovl_node *parent, const char *name,
				     const struct ovl_lookup_res *res)
{
	pthread_mutex_lock(&fs->tlock);
	struct ovl_node *n = hash_find(fs, parent->idx, name);
	if (n && (n->type != (res->st.st_mode & S_IFMT))) {
		/* the name now holds another object: the old node lives on unhashed */
		hash_remove(fs, n);
		n->unlinked = true;
		n = NULL;
	}
	if (n) {
		n->nlookup++;
		pthread_mutex_unlock(&fs->tlock);
		return n;
	}
	n = node_alloc(fs);
	if (!n) {
		pthread_mutex_unlock(&fs->tlock);
		return NULL;
	}
	n->name = strdup(name);
	if (!n->name) {
		n->inuse = false;
		n->hnext = fs->freelist;
		fs->freelist = n->idx;
		pthread_mutex_unlock(&fs->tlock);
		return NULL;
	}
	n->parent = parent->idx;
	parent->children++;
	n->nlookup = 1;
	n->type = res->st.st_mode & S_IFMT;
	n->ino = res->ino;
	n->top = res->top;
	n->indexed = res->indexed;
	n->nlink_adj = res->nlink_adj;
	n->lower_nlink = res->lower_nlink;
	n->linked = res->linked;
	n->lower_links = res->lower_links;
	n->lpath = res->lpath ? strdup(res->lpath) : NULL;
	n->epoch = atomic_load(&fs->epoch);
	if (res->nstack) {
		n->stack = malloc(sizeof(uint16_t) * res->nstack);
		if (n->stack) {
			memcpy(n->stack, res->stack, sizeof(uint16_t) * res->nstack);
			n->nstack = res->nstack;
		}
	}
	hash_insert(fs, n);
	pthread_mutex_unlock(&fs->tlock);
	return n;
}

void ovl_node_ref(struct ovl_fs *fs, struct ovl_node *n)
{
	pthread_mutex_lock(&fs->tlock);
	n->nlookup++;
	pthread_mutex_unlock(&fs->tlock);
}

void ovl_node_pin(struct ovl_fs *fs, struct ovl_node *n)
{
	if (atomic_load(&n->nopen) == 0 || n->type == S_IFDIR)
		return;
	pthread_mutex_lock(&n->lock);
	if (n->ufd < 0) {
		int fd = ovl_node_layer_fd(fs, n, n->top);
		if (fd >= 0)
			n->ufd = fd;
	}
	pthread_mutex_unlock(&n->lock);
}

void ovl_node_forget(struct ovl_fs *fs, struct ovl_node *n, uint64_t nlookup)
{
	pthread_mutex_lock(&fs->tlock);
	if (n->nlookup < nlookup) {
		ovl_log("forget of %llu lookups on a node holding %llu",
			(unsigned long long)nlookup, (unsigned long long)n->nlookup);
		nlookup = n->nlookup;
	}
	n->nlookup -= nlookup;
	node_put_locked(fs, n);
	pthread_mutex_unlock(&fs->tlock);
}

void ovl_node_unhash(struct ovl_fs *fs, struct ovl_node *n)
{
	pthread_mutex_lock(&fs->tlock);
	hash_remove(fs, n);
	n->unlinked = true;
	pthread_mutex_unlock(&fs->tlock);
}

int ovl_node_move(struct ovl_fs *fs, struct ovl_node *n, struct ovl_node *newparent,
		  const char *newname)
{
	char *nn = strdup(newname);
	if (!nn)
		return -ENOMEM;
	pthread_mutex_lock(&fs->tlock);
	struct ovl_node *victim = hash_find(fs, newparent->idx, newname);
	if (victim && victim != n) {
		hash_remove(fs, victim);
		victim->unlinked = true;
	}
	hash_remove(fs, n);
	struct ovl_node *oldparent = node_at(fs, n->parent);
	free(n->name);
	n->name = nn;
	if (oldparent != newparent) {
		n->parent = newparent->idx;
		newparent->children++;
		oldparent->children--;
	}
	hash_insert(fs, n);
	/* the old parent may now be unreferenced */
	if (oldparent != newparent)
		node_put_locked(fs, oldparent);
	pthread_mutex_unlock(&fs->tlock);
	return 0;
}

void ovl_node_exchange(struct ovl_fs *fs, struct ovl_node *a, struct ovl_node *b)
{
	pthread_mutex_lock(&fs->tlock);
	hash_remove(fs, a);
	hash_remove(fs, b);
	uint32_t ap = a->parent;
	char *an = a->name;
	a->parent = b->parent;
	a->name = b->name;
	b->parent = ap;
	b->name = an;
	hash_insert(fs, a);
	hash_insert(fs, b);
	pthread_mutex_unlock(&fs->tlock);
}

char *ovl_node_lower_path(struct ovl_fs *fs, struct ovl_node *n)
{
	const char *parts[256];
	int np = 0;
	char *out = NULL;
	pthread_mutex_lock(&fs->tlock);
	const char *base = "";
	for (struct ovl_node *c = n; c && c->idx != OVL_ROOT_IDX; c = node_at(fs, c->parent)) {
		if (c->lpath) {
			base = c->lpath;
			break;
		}
		if (np == 256)
			goto out;
		parts[np++] = c->name;
	}
	size_t len = strlen(base) + 1;
	for (int i = 0; i < np; i++)
		len += strlen(parts[i]) + 1;
	out = malloc(len);
	if (!out)
		goto out;
	strcpy(out, base);
	for (int i = np - 1; i >= 0; i--) {
		if (*out)
			strcat(out, "/");
		strcat(out, parts[i]);
	}
out:
	pthread_mutex_unlock(&fs->tlock);
	return out;
}

int ovl_open_path(int dirfd, const char *path)
{
	int fd = fcntl(dirfd, F_DUPFD_CLOEXEC, 3);
	if (fd < 0)
		return -errno;
	const char *s = path;
	while (*s) {
		const char *e = strchr(s, '/');
		size_t len = e ? (size_t)(e - s) : strlen(s);
		if (len > NAME_MAX) {
			close(fd);
			return -ENAMETOOLONG;
		}
		if (len && !(len == 1 && s[0] == '.')) {
			char comp[NAME_MAX + 1];
			memcpy(comp, s, len);
			comp[len] = '\0';
			if (!strcmp(comp, "..")) {
				close(fd);
				return -EINVAL; /* never climb out of a layer */
			}
			int nfd = openat(fd, comp, O_PATH | O_NOFOLLOW | O_CLOEXEC);
			int e2 = errno;
			close(fd);
			if (nfd < 0)
				return -e2;
			fd = nfd;
		}
		s += len;
		while (*s == '/')
			s++;
	}
	return fd;
}

/* Walks from the nearest ancestor with a cached fd in layer l down to n by names. */
int ovl_node_layer_fd(struct ovl_fs *fs, struct ovl_node *n, int l)
{
	enum { MAXDEPTH = 64 };
	int fd;
	if (n->idx == OVL_ROOT_IDX) {
		fd = fcntl(fs->layers[l].fd, F_DUPFD_CLOEXEC, 3);
		return fd < 0 ? -errno : fd;
	}
	fd = ovl_fdcache_get(fs, ovl_node_id(n), l);
	if (fd >= 0)
		return fd;

	/* collect the chain of names up to a cached ancestor or the root */
	char *names[MAXDEPTH];
	fuse_ino_t ids[MAXDEPTH];
	int depth = 0;
	int base = -1;
	pthread_mutex_lock(&fs->tlock);
	struct ovl_node *c = n;
	if (n->unlinked && !n->hashed) {
		pthread_mutex_unlock(&fs->tlock);
		return -ENOENT;
	}
	while (c && c->idx != OVL_ROOT_IDX) {
		if (depth == MAXDEPTH) {
			/* deeper than we walk in one go: resolve the ancestor first */
			struct ovl_node *anc = c;
			pthread_mutex_unlock(&fs->tlock);
			int afd = ovl_node_layer_fd(fs, anc, l);
			if (afd < 0) {
				for (int i = 0; i < depth; i++)
					free(names[i]);
				return afd;
			}
			base = afd;
			pthread_mutex_lock(&fs->tlock);
			break;
		}
		if (depth > 0) {
			int cfd = ovl_fdcache_get(fs, ovl_node_id(c), l);
			if (cfd >= 0) {
				base = cfd;
				break;
			}
		}
		/* a redirected dir is found in the lower layers at its redirect path */
		bool redirected = c->lpath && l != fs->upper;
		names[depth] = strdup(redirected ? c->lpath : c->name);
		ids[depth] = ovl_node_id(c);
		if (!names[depth]) {
			pthread_mutex_unlock(&fs->tlock);
			for (int i = 0; i < depth; i++)
				free(names[i]);
			return -ENOMEM;
		}
		depth++;
		if (redirected)
			break;
		c = node_at(fs, c->parent);
	}
	pthread_mutex_unlock(&fs->tlock);
	if (base < 0) {
		base = fcntl(fs->layers[l].fd, F_DUPFD_CLOEXEC, 3);
		if (base < 0) {
			int e = -errno;
			for (int i = 0; i < depth; i++)
				free(names[i]);
			return e;
		}
	}
	fd = base;
	int err = 0;
	for (int i = depth - 1; i >= 0; i--) {
		if (!err) {
			int nfd = ovl_open_path(fd, names[i]);
			if (nfd < 0)
				err = nfd;
			close(fd);
			fd = nfd;
			if (!err && i > 0) {
				int dfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
				if (dfd >= 0)
					ovl_fdcache_put(fs, ids[i], l, dfd);
			}
		}
		free(names[i]);
	}
	if (err)
		return err;
	if (n->type == S_IFDIR) {
		int dfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
		if (dfd >= 0)
			ovl_fdcache_put(fs, ovl_node_id(n), l, dfd);
	}
	return fd;
}

struct ovl_node *ovl_node_parent(struct ovl_fs *fs, struct ovl_node *n)
{
	pthread_mutex_lock(&fs->tlock);
	struct ovl_node *p = n->hashed ? node_at(fs, n->parent) : NULL;
	pthread_mutex_unlock(&fs->tlock);
	return p;
}

int ovl_node_parent_fd(struct ovl_fs *fs, struct ovl_node *n, int l, char **name)
{
	pthread_mutex_lock(&fs->tlock);
	struct ovl_node *p = node_at(fs, n->parent);
	*name = n->name ? strdup(n->name) : NULL;
	bool gone = !n->hashed || !p;
	pthread_mutex_unlock(&fs->tlock);
	if (!*name)
		return -ENOMEM;
	if (gone) {
		free(*name);
		*name = NULL;
		return -ENOENT;
	}
	int fd = ovl_node_layer_fd(fs, p, l);
	if (fd < 0) {
		free(*name);
		*name = NULL;
	}
	return fd;
}

int ovl_node_refresh(struct ovl_fs *fs, struct ovl_node *n)
{
	unsigned ep = atomic_load(&fs->epoch);
	if (n->epoch == ep || n->idx == OVL_ROOT_IDX)
		return 0;
	pthread_mutex_lock(&fs->tlock);
	struct ovl_node *p = n->hashed ? node_at(fs, n->parent) : NULL;
	autofree char *name = n->name ? strdup(n->name) : NULL;
	pthread_mutex_unlock(&fs->tlock);
	if (!p || !name) {
		n->epoch = ep;
		return 0;
	}
	struct ovl_place pl;
	int r = ovl_node_place(fs, p, &pl);
	if (r < 0)
		return r;
	struct ovl_lookup_res res;
	r = ovl_lookup_name(fs, p, &pl, name, &res);
	ovl_place_free(&pl);
	if (r < 0)
		return r == -ENOENT ? 0 : r;
	if ((res.st.st_mode & S_IFMT) == n->type) {
		char *lp = res.lpath ? strdup(res.lpath) : NULL;
		pthread_mutex_lock(&fs->tlock);
		free(n->lpath);
		n->lpath = lp;
		pthread_mutex_unlock(&fs->tlock);
		n->top = res.top;
		free(n->stack);
		n->stack = steal_ptr(&res.stack);
		n->nstack = res.nstack;
		n->epoch = ep;
	}
	ovl_lookup_res_free(&res);
	return 0;
}

int ovl_node_place(struct ovl_fs *fs, struct ovl_node *n, struct ovl_place *pl)
{
	pthread_mutex_lock(&n->lock);
	int r = ovl_node_refresh(fs, n);
	if (r < 0) {
		pthread_mutex_unlock(&n->lock);
		return r;
	}
	pl->top = n->top;
	pl->nstack = n->nstack;
	pl->bigstack = NULL;
	if (n->nstack > 64) {
		pl->bigstack = malloc(sizeof(uint16_t) * n->nstack);
		if (!pl->bigstack) {
			pthread_mutex_unlock(&n->lock);
			return -ENOMEM;
		}
		memcpy(pl->bigstack, n->stack, sizeof(uint16_t) * n->nstack);
	} else if (n->nstack) {
		memcpy(pl->stack, n->stack, sizeof(uint16_t) * n->nstack);
	}
	pthread_mutex_unlock(&n->lock);
	return 0;
}

void ovl_place_free(struct ovl_place *pl)
{
	free(pl->bigstack);
	pl->bigstack = NULL;
}

void ovl_fixup_stat(struct ovl_fs *fs, struct ovl_node *n, struct stat *st)
{
	st->st_ino = n->ino;
	if (fs->p.ino32)
		st->st_ino = (uint32_t)(st->st_ino ^ (st->st_ino >> 32));
	if (!n->indexed && n->nlink_adj && !S_ISDIR(st->st_mode) &&
	    st->st_nlink > (nlink_t)-n->nlink_adj)
		st->st_nlink += n->nlink_adj; /* the kernel's index entry is not a name */
	if (n->indexed && !S_ISDIR(st->st_mode)) {
		/* our index entry is not a name; names still only in the lower count */
		nlink_t names = st->st_nlink > 1 ? st->st_nlink - 1 : st->st_nlink;
		st->st_nlink =
			names + (n->lower_nlink > n->linked ? n->lower_nlink - n->linked : 0);
	}
	/* like the kernel: a merged directory's link count is unknown, so 1 */
	if (S_ISDIR(st->st_mode) && (fs->p.static_nlink || n->nstack > 1))
		st->st_nlink = 1;
	/* an unlinked node shows what its object says: 0 for an upper file, the lower
	 * inode's count for a lower one (as the kernel does) */
}

int ovl_getattr_node(struct ovl_fs *fs, struct ovl_node *n, struct stat *st)
{
	if (n->unlinked) {
		pthread_mutex_lock(&n->lock);
		int r = n->ufd >= 0 ? ovl_override_current(fs, n->ufd, "", st) : -ENOENT;
		pthread_mutex_unlock(&n->lock);
		if (r == 0)
			ovl_fixup_stat(fs, n, st);
		return r;
	}
	if (n->lower_links)
		ovl_index_sync(fs, n);
	struct ovl_place pl;
	int r = ovl_node_place(fs, n, &pl);
	if (r < 0)
		return r;
	ovl_place_free(&pl);
	int fd = ovl_node_layer_fd(fs, n, pl.top);
	if (fd < 0)
		return fd;
	r = ovl_override_current(fs, fd, "", st);
	close(fd);
	if (r == 0 && pl.top == fs->upper && !S_ISDIR(st->st_mode) &&
	    (st->st_nlink > 1 || n->indexed)) {
		/* the link count of an upper file with several names depends on index xattrs,
		 * which another name may have changed since this node was looked up */
		char *name;
		int pfd = ovl_node_parent_fd(fs, n, fs->upper, &name);
		if (pfd >= 0) {
			ovl_reread_nlink_adj(fs, n, pfd, name);
			free(name);
			close(pfd);
		}
	}
	if (r == 0)
		ovl_fixup_stat(fs, n, st);
	return r;
}

#define OVL_SET_ATTR_TIMES                                                 \
	(FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_CTIME | \
	 FUSE_SET_ATTR_ATIME_NOW | FUSE_SET_ATTR_MTIME_NOW)

int ovl_setattr(struct ovl_fs *fs, struct ovl_node *n, struct stat *attr, int to_set,
		struct fuse_file_info *fi, struct stat *out)
{
	int r;
	if (!fs->has_upper)
		return -EROFS;
	/* an unlinked node has no name to copy up or reach: only its open file or the fd
	 * pinned at unlink (when it is the upper copy) are left */
	bool gone = n->unlinked;
	bool trunc_zero = (to_set & FUSE_SET_ATTR_SIZE) && attr->st_size == 0 && !fi;
	r = gone ? 0 : ovl_copy_up(fs, n, !trunc_zero);
	if (r < 0)
		return r;
	autoclose int fd = -1;
	if (fi && n->type == S_IFREG) {
		fd = fcntl((int)fi->fh, F_DUPFD_CLOEXEC, 3);
		fd = fd < 0 ? -errno : fd;
	} else if (gone) {
		pthread_mutex_lock(&n->lock);
		bool pinned = n->ufd >= 0 && n->top == fs->upper;
		fd = pinned ? fcntl(n->ufd, F_DUPFD_CLOEXEC, 3) : -ENOENT;
		fd = pinned && fd < 0 ? -errno : fd;
		pthread_mutex_unlock(&n->lock);
	} else {
		fd = ovl_node_layer_fd(fs, n, fs->upper);
	}
	if (fd == -ENOENT && gone && !(to_set & ~OVL_SET_ATTR_TIMES)) {
		/* the writeback cache flushes the times of a file after its last name and
		 * last open file are gone (syncfs): there is nothing left to stamp */
		memset(out, 0, sizeof(*out));
		out->st_mode = n->type;
		out->st_ino = n->ino;
		return 0;
	}
	if (fd < 0)
		return fd;
	char path[64];
	ovl_fdpath(path, sizeof(path), fd, NULL);
	struct stat cur;
	r = ovl_override_current(fs, fd, "", &cur);
	if (r < 0)
		return r;
	if (to_set & FUSE_SET_ATTR_MODE) {
		if (S_ISLNK(cur.st_mode))
			return -EOPNOTSUPP;
		if (fs->p.xattr_permissions) {
			/* the mode lives in the override xattr, the inode keeps what it has */
			cur.st_mode = (cur.st_mode & S_IFMT) | (attr->st_mode & 07777);
			r = ovl_override_set(fs, fd, "", cur.st_uid, cur.st_gid, cur.st_mode,
					     cur.st_rdev);
			if (r < 0)
				return r;
		} else if (chmod(path, attr->st_mode & 07777) < 0) {
			return -errno;
		}
	}
	if (to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) {
		/* the kernel sends shown ids: store the unmapped ones */
		uid_t u = (uid_t)-1;
		gid_t g = (gid_t)-1;
		if ((to_set & FUSE_SET_ATTR_UID) && ovl_uid_disk(fs, attr->st_uid, &u) < 0 &&
		    !ovl_idmap_squashed(fs))
			return -EINVAL;
		if ((to_set & FUSE_SET_ATTR_GID) && ovl_gid_disk(fs, attr->st_gid, &g) < 0 &&
		    !ovl_idmap_squashed(fs))
			return -EINVAL;
		if (fs->p.xattr_permissions) {
			/* the override keeps both ids: fill in the one that stays */
			u = u == (uid_t)-1 ? cur.st_uid : u;
			g = g == (gid_t)-1 ? cur.st_gid : g;
		}
		r = ovl_set_owner(fs, fd, "", u, g, cur.st_mode, cur.st_rdev);
		if (r < 0)
			return r;
	}
	if (to_set & FUSE_SET_ATTR_SIZE) {
		if (!S_ISREG(cur.st_mode))
			return S_ISDIR(cur.st_mode) ? -EISDIR : -EINVAL;
		int wfd = (fi && n->type == S_IFREG) ? fcntl((int)fi->fh, F_DUPFD_CLOEXEC, 3) :
			  gone			     ? open(path, O_WRONLY | O_CLOEXEC) :
						       ovl_open_node(fs, n, O_WRONLY);
		if (wfd < 0)
			return wfd == -1 ? -errno : wfd;
		r = ftruncate(wfd, attr->st_size) < 0 ? -errno : 0;
		close(wfd);
		if (r < 0)
			return r;
	}
	if (to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_CTIME)) {
		struct timespec ts[2] = { { .tv_nsec = UTIME_OMIT }, { .tv_nsec = UTIME_OMIT } };
		if (to_set & FUSE_SET_ATTR_ATIME_NOW)
			ts[0].tv_nsec = UTIME_NOW;
		else if (to_set & FUSE_SET_ATTR_ATIME)
			ts[0] = attr->st_atim;
		if (to_set & FUSE_SET_ATTR_MTIME_NOW)
			ts[1].tv_nsec = UTIME_NOW;
		else if (to_set & FUSE_SET_ATTR_MTIME)
			ts[1] = attr->st_mtim;
		if (ts[0].tv_nsec != UTIME_OMIT || ts[1].tv_nsec != UTIME_OMIT) {
			if (S_ISLNK(cur.st_mode)) {
				char *name;
				int pfd = ovl_node_parent_fd(fs, n, fs->upper, &name);
				if (pfd < 0)
					return pfd;
				r = utimensat(pfd, name, ts, AT_SYMLINK_NOFOLLOW) < 0 ? -errno : 0;
				free(name);
				close(pfd);
			} else {
				r = utimensat(AT_FDCWD, path, ts, 0) < 0 ? -errno : 0;
			}
			if (r < 0)
				return r;
		}
	}
	r = ovl_override_current(fs, fd, "", out);
	if (r < 0)
		return r;
	ovl_fixup_stat(fs, n, out);
	return 0;
}

/* The fd cache: a bounded table of O_PATH directory fds keyed by (node id, layer), so that
 * reaching a node costs one openat from its parent instead of a walk from the root.
 * Eviction is FIFO over a ring of slots. */
struct cache_slot {
	fuse_ino_t id;
	int layer;
	int fd; /* -1: free */
	int next; /* bucket chain */
};

struct ovl_fdcache {
	pthread_mutex_t lock;
	struct cache_slot *slots;
	int *buckets;
	int nslots, nbuckets, hand;
};

static unsigned cache_hash(const struct ovl_fdcache *c, fuse_ino_t id, int l)
{
	uint64_t h = (id * 0x9E3779B97F4A7C15ull) ^ ((uint64_t)l * 0xC2B2AE3D27D4EB4Full);
	return (unsigned)(h >> 32) & (c->nbuckets - 1);
}

int ovl_fdcache_init(struct ovl_fs *fs, int max)
{
	struct ovl_fdcache *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->nslots = max;
	c->nbuckets = 1;
	while (c->nbuckets < max)
		c->nbuckets <<= 1;
	c->slots = calloc(max, sizeof(*c->slots));
	c->buckets = malloc(sizeof(int) * c->nbuckets);
	if (!c->slots || !c->buckets) {
		free(c->slots);
		free(c->buckets);
		free(c);
		return -ENOMEM;
	}
	for (int i = 0; i < max; i++)
		c->slots[i].fd = -1;
	for (int i = 0; i < c->nbuckets; i++)
		c->buckets[i] = -1;
	pthread_mutex_init(&c->lock, NULL);
	fs->cache = c;
	return 0;
}

void ovl_fdcache_destroy(struct ovl_fs *fs)
{
	struct ovl_fdcache *c = fs->cache;
	if (!c)
		return;
	for (int i = 0; i < c->nslots; i++)
		if (c->slots[i].fd >= 0)
			close(c->slots[i].fd);
	free(c->slots);
	free(c->buckets);
	free(c);
	fs->cache = NULL;
}

static void cache_unlink(struct ovl_fdcache *c, int s)
{
	struct cache_slot *sl = &c->slots[s];
	int *pp = &c->buckets[cache_hash(c, sl->id, sl->layer)];
	while (*pp >= 0 && *pp != s)
		pp = &c->slots[*pp].next;
	if (*pp == s)
		*pp = sl->next;
	close(sl->fd);
	sl->fd = -1;
}

int ovl_fdcache_get(struct ovl_fs *fs, fuse_ino_t id, int l)
{
	struct ovl_fdcache *c = fs->cache;
	int fd = -1;
	pthread_mutex_lock(&c->lock);
	for (int s = c->buckets[cache_hash(c, id, l)]; s >= 0; s = c->slots[s].next) {
		if (c->slots[s].id == id && c->slots[s].layer == l) {
			fd = fcntl(c->slots[s].fd, F_DUPFD_CLOEXEC, 3);
			break;
		}
	}
	pthread_mutex_unlock(&c->lock);
	return fd;
}

void ovl_fdcache_put(struct ovl_fs *fs, fuse_ino_t id, int l, int fd)
{
	struct ovl_fdcache *c = fs->cache;
	pthread_mutex_lock(&c->lock);
	unsigned h = cache_hash(c, id, l);
	for (int s = c->buckets[h]; s >= 0; s = c->slots[s].next) {
		if (c->slots[s].id == id && c->slots[s].layer == l) {
			pthread_mutex_unlock(&c->lock);
			close(fd);
			return;
		}
	}
	int s = c->hand;
	c->hand = (c->hand + 1) % c->nslots;
	if (c->slots[s].fd >= 0)
		cache_unlink(c, s);
	c->slots[s] = (struct cache_slot){ .id = id, .layer = l, .fd = fd, .next = c->buckets[h] };
	c->buckets[h] = s;
	pthread_mutex_unlock(&c->lock);
}

void ovl_fdcache_drop(struct ovl_fs *fs, fuse_ino_t id)
{
	struct ovl_fdcache *c = fs->cache;
	if (!c)
		return;
	pthread_mutex_lock(&c->lock);
	for (int l = 0; l < fs->nlayers; l++) {
		unsigned h = cache_hash(c, id, l);
		for (int s = c->buckets[h]; s >= 0; s = c->slots[s].next) {
			if (c->slots[s].id == id && c->slots[s].layer == l) {
				cache_unlink(c, s);
				break;
			}
		}
	}
	pthread_mutex_unlock(&c->lock);
}
