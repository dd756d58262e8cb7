/* fsx.c - an fsx-style file checker: random reads, writes, truncates, mmap reads and
 * writes, fsyncs and reopens on one file, each read checked against an in-memory model
 * of the content. Built by `make tools`, run by tests/bats/stress.bats.
 *
 *   fsx [-N ops] [-S seed] [-l maxlen] [-o maxop] [-M] [-r reffile] FILE
 *
 * -r: the file's initial content must equal reffile's (a lower file seen through the
 * overlay before its copy-up). -M: no mmap operations. Exit 0 when every check passed;
 * 1 with the last operations and the first differing byte otherwise; 2 on a usage or
 * system error (an unexpected errno counts as a failure, 1). */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *path;
static int fd = -1;
static unsigned char *model, *buf;
static size_t flen, maxlen = 1 << 20, maxop = 64 << 10;
static uint64_t rng;

#define NLOG 24
static char oplog[NLOG][96];
static unsigned long opno;

static uint64_t rnd(void)
{
	/* xorshift64*: reproducible from -S */
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return rng * 2685821657736338717ULL;
}

static void logop(const char *fmt, size_t a, size_t b)
{
	snprintf(oplog[opno % NLOG], sizeof(oplog[0]), fmt, a, b);
}

static void dump_and_fail(const char *what, size_t off, size_t i, unsigned char got)
{
	fprintf(stderr,
		"fsx: %s: %s mismatch at offset %zu (op %lu): expected 0x%02x, got 0x%02x\n", path,
		what, off + i, opno, model[off + i], got);
	fprintf(stderr, "fsx: file length (model) %zu; last operations:\n", flen);
	for (unsigned long k = opno >= NLOG ? opno - NLOG + 1 : 0; k <= opno; k++)
		fprintf(stderr, "  %lu: %s\n", k, oplog[k % NLOG]);
	exit(1);
}

static void fail_errno(const char *what)
{
	fprintf(stderr, "fsx: %s: op %lu: %s: %s\n", path, opno, what, strerror(errno));
	exit(1);
}

static void check(const char *what, size_t off, const unsigned char *got, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (got[i] != model[off + i])
			dump_and_fail(what, off, i, got[i]);
}

static void op_read(size_t off, size_t len)
{
	logop("read %zu +%zu", off, len);
	size_t want = off >= flen ? 0 : (off + len > flen ? flen - off : len);
	ssize_t n = pread(fd, buf, len, off);
	if (n < 0)
		fail_errno("pread");
	if ((size_t)n != want) {
		fprintf(stderr, "fsx: %s: op %lu: read %zu +%zu returned %zd, expected %zu\n", path,
			opno, off, len, n, want);
		exit(1);
	}
	check("read", off, buf, want);
}

static void op_write(size_t off, size_t len)
{
	logop("write %zu +%zu", off, len);
	for (size_t i = 0; i < len; i++)
		buf[i] = (unsigned char)(rnd() >> 56);
	ssize_t n = pwrite(fd, buf, len, off);
	if (n < 0)
		fail_errno("pwrite");
	if ((size_t)n != len) {
		fprintf(stderr, "fsx: %s: short write %zd of %zu\n", path, n, len);
		exit(1);
	}
	if (off > flen)
		memset(model + flen, 0, off - flen);
	memcpy(model + off, buf, len);
	if (off + len > flen)
		flen = off + len;
}

static void op_truncate(size_t size)
{
	logop("truncate %zu%.0zu", size, (size_t)0);
	if (ftruncate(fd, size) < 0)
		fail_errno("ftruncate");
	if (size > flen)
		memset(model + flen, 0, size - flen);
	flen = size;
}

static void op_mapread(size_t off, size_t len)
{
	if (off >= flen)
		return op_read(off, len);
	if (off + len > flen)
		len = flen - off;
	logop("mapread %zu +%zu", off, len);
	size_t pg = (size_t)sysconf(_SC_PAGESIZE), moff = off & ~(pg - 1);
	unsigned char *p = mmap(NULL, len + off - moff, PROT_READ, MAP_SHARED, fd, moff);
	if (p == MAP_FAILED)
		fail_errno("mmap read");
	check("mapread", off, p + (off - moff), len);
	munmap(p, len + off - moff);
}

static void op_mapwrite(size_t off, size_t len)
{
	logop("mapwrite %zu +%zu", off, len);
	if (off + len > flen) {
		/* a mapping cannot extend the file: grow it first, as fsx does */
		if (ftruncate(fd, off + len) < 0)
			fail_errno("ftruncate (mapwrite)");
		memset(model + flen, 0, off + len - flen);
		flen = off + len;
	}
	size_t pg = (size_t)sysconf(_SC_PAGESIZE), moff = off & ~(pg - 1);
	unsigned char *p =
		mmap(NULL, len + off - moff, PROT_READ | PROT_WRITE, MAP_SHARED, fd, moff);
	if (p == MAP_FAILED)
		fail_errno("mmap write");
	for (size_t i = 0; i < len; i++)
		model[off + i] = p[off - moff + i] = (unsigned char)(rnd() >> 56);
	if (msync(p, len + off - moff, MS_SYNC) < 0)
		fail_errno("msync");
	munmap(p, len + off - moff);
}

static void reopen(void)
{
	logop("reopen%.0zu%.0zu", (size_t)0, (size_t)0);
	if (fd >= 0 && close(fd) < 0)
		fail_errno("close");
	fd = open(path, O_RDWR);
	if (fd < 0)
		fail_errno("open");
}

int main(int argc, char **argv)
{
	unsigned long nops = 10000;
	const char *ref = NULL;
	int c, nommap = 0;
	rng = 1;
	while ((c = getopt(argc, argv, "N:S:l:o:Mr:")) != -1) {
		switch (c) {
		case 'N':
			nops = strtoul(optarg, NULL, 0);
			break;
		case 'S':
			rng = strtoull(optarg, NULL, 0) * 2654435761ULL + 1;
			break;
		case 'l':
			maxlen = strtoul(optarg, NULL, 0);
			break;
		case 'o':
			maxop = strtoul(optarg, NULL, 0);
			break;
		case 'M':
			nommap = 1;
			break;
		case 'r':
			ref = optarg;
			break;
		default:
			fprintf(stderr, "usage: fsx [-N ops] [-S seed] [-l maxlen] [-o maxop] [-M] "
					"[-r reffile] FILE\n");
			return 2;
		}
	}
	if (optind != argc - 1 || maxlen == 0 || maxop == 0 || maxop > maxlen)
		return fprintf(stderr, "fsx: bad arguments\n"), 2;
	path = argv[optind];
	model = calloc(1, maxlen + maxop);
	buf = malloc(maxop + 1);
	if (!model || !buf)
		return 2;
	/* the model starts as the file's content, checked against -r */
	int rfd = open(ref ? ref : path, O_RDONLY);
	if (rfd < 0)
		return perror(ref ? ref : path), 2;
	struct stat st;
	if (fstat(rfd, &st) < 0 || (size_t)st.st_size > maxlen)
		return fprintf(stderr, "fsx: %s: larger than -l %zu\n", ref ? ref : path, maxlen),
		       2;
	flen = (size_t)st.st_size;
	for (size_t got = 0; got < flen;) {
		ssize_t n = pread(rfd, model + got, flen - got, got);
		if (n <= 0)
			return perror("read"), 2;
		got += (size_t)n;
	}
	close(rfd);
	reopen();
	/* before any change: the whole file as the model says (the lower view) */
	if (fstat(fd, &st) < 0 || (size_t)st.st_size != flen)
		return fprintf(stderr, "fsx: %s: size %lld, expected %zu\n", path,
			       (long long)st.st_size, flen),
		       1;
	for (size_t off = 0; off < flen; off += maxop)
		op_read(off, flen - off < maxop ? flen - off : maxop);

	for (opno = 1; opno <= nops; opno++) {
		unsigned r = (unsigned)(rnd() % 100);
		size_t off = (size_t)(rnd() % maxlen);
		size_t len = 1 + (size_t)(rnd() % maxop);
		if (off + len > maxlen)
			len = maxlen - off;
		if (len == 0)
			len = 1, off = maxlen - 1;
		if (r < 30)
			op_read(off, len);
		else if (r < 60)
			op_write(off, len);
		else if (r < 68)
			op_truncate((size_t)(rnd() % maxlen));
		else if (r < 80)
			nommap ? op_read(off, len) : op_mapread(off, len);
		else if (r < 92)
			nommap ? op_write(off, len) : op_mapwrite(off, len);
		else if (r < 96) {
			logop("fsync%.0zu%.0zu", (size_t)0, (size_t)0);
			if (fsync(fd) < 0)
				fail_errno("fsync");
		} else {
			reopen();
		}
		if (fstat(fd, &st) < 0)
			fail_errno("fstat");
		if ((size_t)st.st_size != flen) {
			fprintf(stderr, "fsx: %s: op %lu (%s): size %lld, expected %zu\n", path,
				opno, oplog[opno % NLOG], (long long)st.st_size, flen);
			return 1;
		}
	}
	/* and at the end, through a new descriptor */
	reopen();
	for (size_t off = 0; off < flen; off += maxop)
		op_read(off, flen - off < maxop ? flen - off : maxop);
	close(fd);
	printf("fsx: %s: %lu operations, final length %zu: ok\n", path, nops, flen);
	return 0;
}
