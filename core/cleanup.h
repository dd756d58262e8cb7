/* cleanup.h - scope-bound cleanup of fds and memory, shared by stratafs and the driver;
 * ownership is handed off with steal_fd()/steal_ptr(). */
#ifndef STRATA_CLEANUP_H
#define STRATA_CLEANUP_H

#include <dirent.h>
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

#endif
