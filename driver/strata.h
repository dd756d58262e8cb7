/* strata.h - the driver's one internal header, organised by the file that owns each part. */
#ifndef STRATA_DRIVER_H
#define STRATA_DRIVER_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/types.h>
#include <unistd.h>

#define STRATA_DRIVER_VERSION "0.1.0"

/* exit codes: the operation failed (status says why) / the spec or command line is invalid */
#define STRATA_EXIT_FAIL 1
#define STRATA_EXIT_USAGE 2

#include "cleanup.h"

static inline void strata_jsonp(json_object **o)
{
	if (*o)
		json_object_put(*o);
}
#define autojson __attribute__((cleanup(strata_jsonp)))

/* ---- error.c ---- */
struct strata_error {
	int exit_code; /* STRATA_EXIT_FAIL or STRATA_EXIT_USAGE; 0 while no error is set */
	int errnum;
	char field[256]; /* the spec field at fault ("lower[1]"), or "" */
	char message[1024];
};
/* Records the first error (later calls keep it). Always returns -1, for `return strata_fail(..)`. */
int strata_fail(struct strata_error *err, int exit_code, int errnum, const char *field,
		const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* "ENOENT" for 2; "EUNKNOWN" when there is no name. */
const char *strata_errno_name(int errnum);
/* {"code", "errno", "field"?, "message"} (a new reference). */
json_object *strata_error_json(const struct strata_error *err);
/* {"id"?, "state": "error", "error": {...}} (a new reference). */
json_object *strata_error_doc(const char *id, const struct strata_error *err);

/* ---- spec.c ---- */
#define STRATA_SPEC_MAX (4u << 20) /* bytes of JSON */
#define STRATA_ID_MAX 128
#define STRATA_MAX_LAYERS 500 /* as stratafs (OVL_MAX_LAYERS) */

struct strata_idmap {
	uint32_t container, host, size;
};

struct strata_spec {
	char *id; /* given, or derived from the target */
	bool id_given;
	const char *form; /* "native" or "containerd" */
	char *target;
	char **lower; /* topmost first */
	char **lower_field; /* the spec field each lower came from, for errors */
	int nlower;
	char *upper, *work;
	char upper_field[80], work_field[80];
	bool readonly;
	/* options */
	bool volatile_, writeback, noacl, noxattrs, ino32, static_nlink, userxattr;
	bool threaded;
	int spin_us; /* stratafs spin=: -1 its default */
	int passthrough; /* FUSE passthrough asked for: 0 no, 1 yes (upper files), 2 "all" */
	double timeout;
	bool timeout_set;
	/* owners (stratafs's xattr_permissions=, squash_*); squash ids -1 when not given */
	int xattr_permissions;
	bool squash_to_root;
	int64_t squash_uid, squash_gid;
	char *context;
	unsigned long mflags; /* MS_* for mount(2) */
	struct strata_idmap *uidmap, *gidmap;
	int nuidmap, ngidmap;
};

/* Parses and validates one spec document (either form). Pure: touches no file.
 * Returns 0, or -1 with err (exit code 2, the field named). */
int strata_spec_parse(const char *buf, size_t len, struct strata_spec *spec,
		      struct strata_error *err);
void strata_spec_free(struct strata_spec *spec);
/* 0 if id is a valid mount id, else -1 with err (field "id"). */
int strata_id_check(const char *id, struct strata_error *err);
/* The spec's options as JSON, for the record (a new reference). */
json_object *strata_spec_options_json(const struct strata_spec *spec);

/* ---- mount.c ---- */
/* The spec's directories, opened once (O_PATH) and validated by fd: the mount and the server
 * get exactly the objects that were checked, whatever happens to the paths afterwards. */
struct strata_layers {
	int target;
	char *target_path; /* where target resolved to (the kernel's name for it) */
	int *lower;
	int nlower;
	int upper, work;
};
int strata_layers_open(const struct strata_spec *spec, struct strata_layers *l,
		       struct strata_error *err);
void strata_layers_close(struct strata_layers *l);
/* Opens /dev/fuse and mounts it on l->target. Returns the fuse fd, or -1 with err.
 * dev receives the mount's "major:minor". */
int strata_fuse_mount(const struct strata_spec *spec, const struct strata_layers *l, char *dev,
		      size_t devlen, struct strata_error *err);
/* Finds the topmost mount at path in /proc/self/mountinfo: 1 (dev/fstype filled), 0, -errno. */
int strata_mountinfo_find(const char *path, char *dev, size_t devlen, char *fstype, size_t fslen);
/* Detaches the mount at target if it is still the one with dev (never someone else's).
 * 0 (also when nothing was mounted), or -1 with err. */
int strata_unmount_target(const char *target, const char *dev, struct strata_error *err);

/* ---- spawn.c ---- */
struct strata_server {
	pid_t pid; /* stratafs */
	pid_t monitor; /* reaps stratafs and records how it ended */
	unsigned long long start; /* the server's start time (/proc/PID/stat), against pid reuse */
};
/* Path of the stratafs binary: $STRATAFS, else next to this program. Caller frees. */
char *strata_stratafs_path(void);
/* Starts the monitor and, under it, stratafs serving fusefd. stderr of stratafs goes to
 * logfd. Returns 0 once stratafs was executed, or -1 with err. */
int strata_spawn(const struct strata_spec *spec, const struct strata_layers *l, int fusefd,
		 int statedir, int logfd, struct strata_server *srv, struct strata_error *err);
/* Waits until the mount at target answers statfs as FUSE, the server dies, or timeout_ms
 * passes. 0, or -1 with err. */
int strata_wait_ready(const char *target, const struct strata_server *srv, int timeout_ms,
		      struct strata_error *err);
/* Waits up to timeout_ms for pid to exit (it need not be our child). 0 gone, -1 still there. */
int strata_wait_pid_gone(pid_t pid, unsigned long long start, int timeout_ms);
/* Does pid still run the process that started at start (not a zombie)? */
bool strata_pid_alive(pid_t pid, unsigned long long start);
unsigned long long strata_pid_start(pid_t pid);

/* ---- state.c ---- */
/* Opens (creating, 0700) the state dir: dir, else /run/strata for root, else
 * $XDG_RUNTIME_DIR/strata. Returns a dir fd or -1 with err. */
int strata_state_open(const char *dir, char **path_out, struct strata_error *err);
/* flock()s NAME in the state dir (created if missing), retrying if the lock file was
 * replaced meanwhile. op: LOCK_SH/LOCK_EX [|LOCK_NB]. Returns the fd or -1 (errno). */
int strata_lock(int dirfd, const char *name, int op);
/* Writes <id>.json atomically (temp file, fsync, rename). 0 or -1 with err. */
int strata_record_write(int dirfd, const char *id, json_object *rec, struct strata_error *err);
/* Reads <id>.json: the record, or NULL (errno ENOENT when there is none). */
json_object *strata_record_read(int dirfd, const char *id);
/* Removes <id>.json and the files that go with it (lock, log, exit). */
void strata_record_remove(int dirfd, const char *id);
/* Ids of every record, sorted. Returns the count (ids NULL-terminated), or -1. */
int strata_record_ids(int dirfd, char ***ids);
void strata_free_strv(char **v);
/* The monitor writes <id>.exit.json when the server ends. */
int strata_exit_write(int dirfd, const char *id, int wstatus);
json_object *strata_exit_read(int dirfd, const char *id);

/* ---- status.c ---- */
/* Adds what the server's probe chose (its "stratafs: features:" log line: whiteout form,
 * opaque marker, xattr namespace, override-stat xattr, idmap) to the features object. */
void strata_add_probed_features(int dirfd, const char *id, json_object *features);
/* Sets features.passthrough to whether the server uses FUSE passthrough, from the last
 * "stratafs: passthrough: on|off: REASON" line of its log, and features.passthroughReason to
 * the reason when it was asked for but is off. */
void strata_set_passthrough(int dirfd, const char *id, bool asked, json_object *features);
/* What the kernel says about the server's confinement (a new reference). */
json_object *strata_sandbox_json(pid_t pid);
/* The status document of a record, with its live state (mounted, mounting, dead, detached).
 * *live is set when the server and its mount are both there. */
json_object *strata_status(int dirfd, json_object *rec, bool *live);
/* Current time as RFC 3339 UTC. */
void strata_now_rfc3339(char *buf, size_t len);

#endif
