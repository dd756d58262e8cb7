/* benchtool: the timed inner loops of `make bench` (tests/bench/bench.py), in C so that
 * the tool's own per-file cost stays far below a FUSE round trip.
 *
 *   benchtool walk MODE [-x DIRNAME] PLAN|-r ROOT
 *        MODE: readdir  list directories only, descend by d_type (no stat)
 *              stat     fstatat(AT_SYMLINK_NOFOLLOW) every entry
 *              read     open + read to EOF every regular file (no stat)
 *              list     print "path\ttype\tmode\tsize\tnlink\ttarget" per entry (manifest)
 *        PLAN: a file of lines "R DIR" (walk DIR recursively) or "D DIR" (its entries
 *              only, no descent); -r ROOT is the plan "R ROOT".
 *        -x DIRNAME: never descend into directories of that name (read: skip big files).
 *        Prints "entries=N dirs=D files=F bytes=B errors=E" on stderr; exit 1 if errors.
 *   benchtool append ROOT LIST   append one byte to each file ROOT/path named in LIST
 *   benchtool meta DIR N         mkdir DIR; create N empty files; stat them; unlink them; rmdir
 *   benchtool seqread FILE       read FILE to EOF in 1 MiB chunks
 *   benchtool seqwrite FILE MIB  create FILE, write MIB MiB in 1 MiB writes, close
 *   benchtool randread FILE N SEED  N preads of 4 KiB at random 4 KiB-aligned offsets of FILE
 *   benchtool syncfs PATH...     syncfs(2) the filesystem holding each PATH
 *   benchtool touch MIB          allocate MIB MiB, write every page, exit (see bench.py:
 *                                prefault())
 *
 * Directories are walked fd-relative (openat on the parent's fd), so the tool holds one fd
 * per level of depth, never one per entry.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum mode { M_READDIR, M_STAT, M_READ, M_LIST };

static enum mode mode;
static const char *skip_name;
static unsigned long long n_entries, n_dirs, n_files, n_bytes, n_errors;
static char iobuf[1 << 20];

static void err(const char *what, const char *path)
{
	n_errors++;
	if (n_errors <= 10)
		fprintf(stderr, "benchtool: %s %s: %s\n", what, path, strerror(errno));
}

static void print_entry(const char *path, const struct stat *st, int dfd, const char *name)
{
	char target[PATH_MAX] = "";
	char t = '?';
	switch (st->st_mode & S_IFMT) {
	case S_IFREG:
		t = 'f';
		break;
	case S_IFDIR:
		t = 'd';
		break;
	case S_IFLNK:
		t = 'l';
		break;
	case S_IFCHR:
		t = 'c';
		break;
	case S_IFBLK:
		t = 'b';
		break;
	case S_IFIFO:
		t = 'p';
		break;
	case S_IFSOCK:
		t = 's';
		break;
	}
	if (t == 'l') {
		ssize_t n = readlinkat(dfd, name, target, sizeof(target) - 1);
		if (n < 0)
			err("readlink", path);
		else
			target[n] = 0;
	}
	printf("%s\t%c\t%04o\t%lld\t%lu\t%s\n", path, t, (unsigned)(st->st_mode & 07777),
	       t == 'd' ? 0LL : (long long)st->st_size, (unsigned long)st->st_nlink, target);
}

static void read_file(int dfd, const char *name, const char *path)
{
	int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		err("open", path);
		return;
	}
	for (;;) {
		ssize_t n = read(fd, iobuf, sizeof(iobuf));
		if (n < 0) {
			err("read", path);
			break;
		}
		if (n == 0)
			break;
		n_bytes += (unsigned long long)n;
	}
	close(fd);
}

/* Walks the entries of the open directory dfd (path is for messages and list output). */
static void walk_dir(int dfd, const char *path, int recursive)
{
	DIR *d = fdopendir(dfd);
	if (!d) {
		err("fdopendir", path);
		close(dfd);
		return;
	}
	struct dirent *de;
	char sub[PATH_MAX];
	for (;;) {
		errno = 0;
		de = readdir(d);
		if (!de) {
			if (errno)
				err("readdir", path);
			break;
		}
		const char *nm = de->d_name;
		if (nm[0] == '.' && (!nm[1] || (nm[1] == '.' && !nm[2])))
			continue;
		n_entries++;
		snprintf(sub, sizeof(sub), "%s/%s", path, nm);
		unsigned char type = de->d_type;
		struct stat st;
		if (mode == M_STAT || mode == M_LIST || type == DT_UNKNOWN) {
			if (fstatat(dirfd(d), nm, &st, AT_SYMLINK_NOFOLLOW) < 0) {
				err("stat", sub);
				continue;
			}
			type = IFTODT(st.st_mode);
			if (mode == M_LIST)
				print_entry(sub, &st, dirfd(d), nm);
		}
		if (type == DT_DIR) {
			n_dirs++;
			if (!recursive || (skip_name && !strcmp(nm, skip_name)))
				continue;
			int cfd = openat(dirfd(d), nm,
					 O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (cfd < 0) {
				err("opendir", sub);
				continue;
			}
			walk_dir(cfd, sub, 1);
		} else if (type == DT_REG) {
			n_files++;
			if (mode == M_READ)
				read_file(dirfd(d), nm, sub);
		}
	}
	closedir(d);
}

static void walk_root(const char *root, int recursive)
{
	int fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		err("open", root);
		return;
	}
	walk_dir(fd, root, recursive);
}

static int cmd_walk(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	if (!strcmp(argv[1], "readdir"))
		mode = M_READDIR;
	else if (!strcmp(argv[1], "stat"))
		mode = M_STAT;
	else if (!strcmp(argv[1], "read"))
		mode = M_READ;
	else if (!strcmp(argv[1], "list"))
		mode = M_LIST;
	else
		return 2;
	int i = 2;
	if (i + 1 < argc && !strcmp(argv[i], "-x")) {
		skip_name = argv[i + 1];
		i += 2;
	}
	if (i + 1 < argc && !strcmp(argv[i], "-r")) {
		walk_root(argv[i + 1], 1);
	} else if (i < argc) {
		FILE *f = fopen(argv[i], "re");
		if (!f) {
			perror(argv[i]);
			return 2;
		}
		char line[PATH_MAX + 4];
		while (fgets(line, sizeof(line), f)) {
			line[strcspn(line, "\n")] = 0;
			if ((line[0] == 'R' || line[0] == 'D') && line[1] == ' ')
				walk_root(line + 2, line[0] == 'R');
		}
		fclose(f);
	} else {
		return 2;
	}
	if (mode == M_LIST)
		fflush(stdout);
	fprintf(stderr, "entries=%llu dirs=%llu files=%llu bytes=%llu errors=%llu\n", n_entries,
		n_dirs, n_files, n_bytes, n_errors);
	return n_errors ? 1 : 0;
}

static int cmd_append(int argc, char **argv)
{
	if (argc != 3)
		return 2;
	int root = open(argv[1], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	FILE *f = fopen(argv[2], "re");
	if (root < 0 || !f) {
		perror("append");
		return 2;
	}
	char line[PATH_MAX + 2];
	while (fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = 0;
		if (!line[0])
			continue;
		int fd = openat(root, line, O_WRONLY | O_APPEND | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0) {
			err("open", line);
			continue;
		}
		if (write(fd, "+", 1) != 1)
			err("write", line);
		else
			n_files++;
		if (close(fd) < 0)
			err("close", line);
	}
	fclose(f);
	close(root);
	fprintf(stderr, "files=%llu errors=%llu\n", n_files, n_errors);
	return n_errors ? 1 : 0;
}

static int cmd_meta(int argc, char **argv)
{
	if (argc != 3)
		return 2;
	long n = atol(argv[2]);
	if (mkdir(argv[1], 0755) < 0) {
		err("mkdir", argv[1]);
		return 1;
	}
	int dfd = open(argv[1], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0) {
		err("open", argv[1]);
		return 1;
	}
	char nm[64];
	struct stat st;
	for (long i = 0; i < n; i++) {
		snprintf(nm, sizeof(nm), "file-%06ld.tmp", i);
		int fd = openat(dfd, nm, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
		if (fd < 0)
			err("create", nm);
		else
			close(fd);
	}
	for (long i = 0; i < n; i++) {
		snprintf(nm, sizeof(nm), "file-%06ld.tmp", i);
		if (fstatat(dfd, nm, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
			err("stat", nm);
	}
	for (long i = 0; i < n; i++) {
		snprintf(nm, sizeof(nm), "file-%06ld.tmp", i);
		if (unlinkat(dfd, nm, 0) < 0)
			err("unlink", nm);
	}
	close(dfd);
	if (rmdir(argv[1]) < 0)
		err("rmdir", argv[1]);
	fprintf(stderr, "files=%ld errors=%llu\n", n, n_errors);
	return n_errors ? 1 : 0;
}

static int cmd_seqread(int argc, char **argv)
{
	if (argc != 2)
		return 2;
	read_file(AT_FDCWD, argv[1], argv[1]);
	fprintf(stderr, "bytes=%llu errors=%llu\n", n_bytes, n_errors);
	return n_errors ? 1 : 0;
}

static int cmd_seqwrite(int argc, char **argv)
{
	if (argc != 3)
		return 2;
	long mib = atol(argv[2]);
	int fd = open(argv[1], O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0) {
		err("open", argv[1]);
		return 1;
	}
	memset(iobuf, 0x5a, sizeof(iobuf));
	for (long i = 0; i < mib; i++) {
		ssize_t w = write(fd, iobuf, sizeof(iobuf));
		if (w != (ssize_t)sizeof(iobuf)) {
			err("write", argv[1]);
			break;
		}
		n_bytes += (unsigned long long)w;
	}
	if (close(fd) < 0)
		err("close", argv[1]);
	fprintf(stderr, "bytes=%llu errors=%llu\n", n_bytes, n_errors);
	return n_errors ? 1 : 0;
}

static int cmd_randread(int argc, char **argv)
{
	if (argc != 4)
		return 2;
	long n = atol(argv[2]);
	unsigned long long x = strtoull(argv[3], NULL, 10) * 2654435761ULL + 1;
	int fd = open(argv[1], O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0 || st.st_size < 4096) {
		err("open", argv[1]);
		return 1;
	}
	unsigned long long blocks = (unsigned long long)st.st_size / 4096;
	for (long i = 0; i < n; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17; /* xorshift64 */
		ssize_t r = pread(fd, iobuf, 4096, (off_t)((x % blocks) * 4096));
		if (r != 4096) {
			err("pread", argv[1]);
			break;
		}
		n_bytes += 4096;
		n_files++;
	}
	close(fd);
	fprintf(stderr, "reads=%llu bytes=%llu errors=%llu\n", n_files, n_bytes, n_errors);
	return n_errors ? 1 : 0;
}

static int cmd_syncfs(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		int fd = open(argv[i], O_RDONLY | O_CLOEXEC);
		if (fd < 0 || syncfs(fd) < 0)
			err("syncfs", argv[i]);
		if (fd >= 0)
			close(fd);
	}
	return n_errors ? 1 : 0;
}

static int cmd_touch(int argc, char **argv)
{
	if (argc != 2)
		return 2;
	size_t len = (size_t)atol(argv[1]) << 20;
	char *p = malloc(len);
	if (!p) {
		perror("malloc");
		return 1;
	}
	for (size_t i = 0; i < len; i += 4096)
		p[i] = 1;
	free(p);
	return 0;
}

int main(int argc, char **argv)
{
	int r = 2;
	if (argc >= 2) {
		if (!strcmp(argv[1], "walk"))
			r = cmd_walk(argc - 1, argv + 1);
		else if (!strcmp(argv[1], "append"))
			r = cmd_append(argc - 1, argv + 1);
		else if (!strcmp(argv[1], "meta"))
			r = cmd_meta(argc - 1, argv + 1);
		else if (!strcmp(argv[1], "seqread"))
			r = cmd_seqread(argc - 1, argv + 1);
		else if (!strcmp(argv[1], "seqwrite"))
			r = cmd_seqwrite(argc - 1, argv + 1);
		else if (!strcmp(argv[1], "randread"))
			r = cmd_randread(argc - 1, argv + 1);
		else if (!strcmp(argv[1], "syncfs"))
			r = cmd_syncfs(argc - 1, argv + 1);
		else if (!strcmp(argv[1], "touch"))
			r = cmd_touch(argc - 1, argv + 1);
	}
	if (r == 2)
		fprintf(stderr, "usage: see the comment at the top of tests/bench/benchtool.c\n");
	return r;
}
