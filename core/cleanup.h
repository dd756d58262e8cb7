/* cleanup.h - scope-bound cleanup of fds and memory, shared by stratafs and the driver;
 * ownership is handed off with steal_fd()/steal_ptr(). Also read_small_file(), the one
 * reader of small /proc and log files both use. */
#ifndef STRATA_CLEANUP_H
#define STRATA_CLEANUP_H

#include <dirent.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

static inline void cleanup_closep(int *fd)
{
	if (*fd >= 0)
		close(*fd);
}
static inline void cleanup_freep(void *p)
{
	free(*(void **)p);
}
static inline void cleanup_closedirp(DIR **d)
{
	if (*d)
		closedir(*d);
}
#define autoclose __attribute__((cleanup(cleanup_closep)))
#define autofree __attribute__((cleanup(cleanup_freep)))
#define autoclosedir __attribute__((cleanup(cleanup_closedirp)))
static inline int steal_fd(int *fd)
{
	int r = *fd;
	*fd = -1;
	return r;
}
static inline void *steal_ptr(void *pp)
{
	void **p = pp;
	void *r = *p;
	*p = NULL;
	return r;
}

/* Reads up to size - 1 bytes of dirfd/path (O_NOFOLLOW) into buf, NUL-terminated.
 * Returns the length read, or -1 when it cannot be opened or holds nothing. */
static inline ssize_t read_small_file(int dirfd, const char *path, char *buf, size_t size)
{
	int fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, size - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	return n;
}

#endif
