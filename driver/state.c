/* state.c - per-mount records in the state dir: <id>.json (written atomically), <id>.lock
 * (flock'd by whoever works on the mount), <id>.log (the server's stderr) and <id>.exit
 * (how the server ended, written by its monitor). ".lock" serialises creating and removing
 * records. A record whose strata process died half-way is found by its free lock. */
#include "strata.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>

static int mkdir_p(const char *path, mode_t mode)
{
	char buf[PATH_MAX];
	if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf))
		return -ENAMETOOLONG;
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0755) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(buf, mode) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

/* Root of the initial user namespace ("0 0 4294967295" in uid_map), not the root of a user
 * namespace that an unprivileged user made (unshare --map-root-user, podman unshare). */
static bool real_root(void)
{
	if (geteuid() != 0)
		return false;
	FILE *f = fopen("/proc/self/uid_map", "re");
	if (!f)
		return true;
	unsigned long a = 1, b = 1, c = 0;
	int n = fscanf(f, "%lu %lu %lu", &a, &b, &c);
	fclose(f);
	return n == 3 && a == 0 && b == 0 && c == 4294967295ul;
}

int strata_state_open(const char *dir, char **path_out, struct strata_error *err)
{
	autofree char *path = NULL;
	const char *x = getenv("XDG_RUNTIME_DIR");
	if (dir && *dir) {
		path = strdup(dir);
	} else if (real_root() || (geteuid() == 0 && (!x || !*x))) {
		/* root of a user namespace keeps its state with its user's, if it knows where */
		path = strdup("/run/strata");
	} else {
		if (!x || !*x)
			return strata_fail(
				err, STRATA_EXIT_USAGE, EINVAL, NULL,
				"no state dir: XDG_RUNTIME_DIR is unset (use --state-dir)");
		if (asprintf(&path, "%s/strata", x) < 0)
			path = NULL;
	}
	if (!path)
		return strata_fail(err, STRATA_EXIT_FAIL, ENOMEM, NULL, "out of memory");
	if (path[0] != '/')
		return strata_fail(err, STRATA_EXIT_USAGE, EINVAL, NULL,
				   "the state dir must be an absolute path: '%s'", path);
	int r = mkdir_p(path, 0700);
	if (r < 0)
		return strata_fail(err, STRATA_EXIT_FAIL, -r, NULL, "state dir '%s': %s", path,
				   strerror(-r));
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return strata_fail(err, STRATA_EXIT_FAIL, errno, NULL, "state dir '%s': %s", path,
				   strerror(errno));
	if (path_out)
		*path_out = steal_ptr(&path);
	return fd;
}

int strata_lock(int dirfd, const char *name, int op)
{
	for (;;) {
		int fd = openat(dirfd, name, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
		if (fd < 0)
			return -1;
		int r;
		do
			r = flock(fd, op);
		while (r < 0 && errno == EINTR);
		if (r < 0) {
			int e = errno;
			close(fd);
			errno = e;
			return -1;
		}
		/* the holder before us may have removed the file: then lock the new one */
		struct stat a, b;
		if (fstat(fd, &a) == 0 && fstatat(dirfd, name, &b, AT_SYMLINK_NOFOLLOW) == 0 &&
		    a.st_dev == b.st_dev && a.st_ino == b.st_ino)
			return fd;
		close(fd);
	}
}

static int write_atomic(int dirfd, const char *name, const char *data, size_t len)
{
	char tmp[NAME_MAX + 1];
	snprintf(tmp, sizeof(tmp), ".tmp.%d.%.180s", (int)getpid(), name);
	int fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return -errno;
	size_t off = 0;
	while (off < len) {
		ssize_t n = write(fd, data + off, len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			int e = n < 0 ? errno : EIO;
			close(fd);
			unlinkat(dirfd, tmp, 0);
			return -e;
		}
		off += (size_t)n;
	}
	if (fsync(fd) < 0 || close(fd) < 0) {
		int e = errno;
		unlinkat(dirfd, tmp, 0);
		return -e;
	}
	if (renameat(dirfd, tmp, dirfd, name) < 0) {
		int e = errno;
		unlinkat(dirfd, tmp, 0);
		return -e;
	}
	return 0;
}

int strata_record_write(int dirfd, const char *id, json_object *rec, struct strata_error *err)
{
	char name[NAME_MAX + 1];
	snprintf(name, sizeof(name), "%s.json", id);
	const char *s = json_object_to_json_string_ext(rec, JSON_C_TO_STRING_PLAIN |
								    JSON_C_TO_STRING_NOSLASHESCAPE);
	int r = write_atomic(dirfd, name, s, strlen(s));
	if (r < 0)
		return strata_fail(err, STRATA_EXIT_FAIL, -r, NULL, "writing the state record: %s",
				   strerror(-r));
	return 0;
}

static json_object *read_json(int dirfd, const char *name)
{
	int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return NULL;
	/* a record holds at most a spec's paths: bounded by the spec size */
	size_t cap = 65536, len = 0;
	autofree char *buf = malloc(cap);
	while (buf) {
		if (len + 1 == cap) {
			char *nb = cap < 4 * STRATA_SPEC_MAX ? realloc(buf, cap * 2) : NULL;
			if (!nb)
				break;
			buf = nb;
			cap *= 2;
		}
		ssize_t n = read(fd, buf + len, cap - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	if (!buf) {
		errno = ENOMEM;
		return NULL;
	}
	buf[len] = '\0';
	json_object *o = json_tokener_parse(buf);
	if (!o || !json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		errno = EINVAL;
		return NULL;
	}
	return o;
}

json_object *strata_record_read(int dirfd, const char *id)
{
	char name[NAME_MAX + 1];
	snprintf(name, sizeof(name), "%s.json", id);
	return read_json(dirfd, name);
}

void strata_record_remove(int dirfd, const char *id)
{
	static const char *const sfx[] = { ".json", ".exit", ".log", ".lock" };
	for (size_t i = 0; i < sizeof(sfx) / sizeof(sfx[0]); i++) {
		char name[NAME_MAX + 1];
		snprintf(name, sizeof(name), "%s%s", id, sfx[i]);
		unlinkat(dirfd, name, 0);
	}
}

static int cmpstr(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int strata_record_ids(int dirfd, char ***out)
{
	int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -1;
	}
	char **v = calloc(1, sizeof(*v));
	int n = 0;
	struct dirent *de;
	while (v && (de = readdir(d))) {
		size_t l = strlen(de->d_name);
		if (de->d_name[0] == '.' || l <= 5 || strcmp(de->d_name + l - 5, ".json"))
			continue;
		char **nv = realloc(v, sizeof(*v) * (n + 2));
		if (!nv)
			break;
		v = nv;
		v[n] = strndup(de->d_name, l - 5);
		if (v[n])
			v[++n] = NULL;
	}
	closedir(d);
	if (!v)
		return -1;
	qsort(v, n, sizeof(*v), cmpstr);
	*out = v;
	return n;
}

void strata_free_strv(char **v)
{
	for (char **p = v; p && *p; p++)
		free(*p);
	free(v);
}

int strata_exit_write(int dirfd, const char *id, int wstatus)
{
	char name[NAME_MAX + 1], buf[256];
	snprintf(name, sizeof(name), "%s.exit", id);
	if (WIFSIGNALED(wstatus))
		snprintf(buf, sizeof(buf), "{\"signal\":%d,\"signalName\":\"SIG%s\"%s}",
			 WTERMSIG(wstatus), sigabbrev_np(WTERMSIG(wstatus)) ?: "UNKNOWN",
			 WCOREDUMP(wstatus) ? ",\"coreDumped\":true" : "");
	else
		snprintf(buf, sizeof(buf), "{\"exitCode\":%d}", WEXITSTATUS(wstatus));
	return write_atomic(dirfd, name, buf, strlen(buf));
}

json_object *strata_exit_read(int dirfd, const char *id)
{
	char name[NAME_MAX + 1];
	snprintf(name, sizeof(name), "%s.exit", id);
	return read_json(dirfd, name);
}
