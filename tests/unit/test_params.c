/* test_params.c - unit tests for core/params.c: option table, lowerdir escapes, validation. */
#include "../../core/ovl.h"
#include "tap.h"

#include <string.h>

static int parse(struct ovl_params *p, const char *o, char *err)
{
	memset(p, 0, sizeof(*p));
	return ovl_parse_opts(p, o, err, 256);
}

int main(void)
{
	struct ovl_params p;
	char err[256];
	char **v;

	int n = ovl_split_lowerdir("a:b\\:c:d\\\\e", &v);
	CHECK("lowerdir splits on unescaped colons", n == 3);
	CHECK("\\: keeps the colon", n == 3 && !strcmp(v[1], "b:c"));
	CHECK("\\\\ keeps one backslash", n == 3 && !strcmp(v[2], "d\\e"));
	for (int i = 0; i < n; i++)
		free(v[i]);
	free(v);

	n = ovl_split_lowerdir("l/ID/../diff1::x", &v);
	CHECK("paths are not cleaned and empty items dropped",
	      n == 2 && !strcmp(v[0], "l/ID/../diff1") && !strcmp(v[1], "x"));
	for (int i = 0; i < n; i++)
		free(v[i]);
	free(v);

	CHECK("podman's option string parses",
	      parse(&p, "lowerdir=/l1:/l2,upperdir=/u,workdir=/w,,volatile", err) == 0);
	CHECK("two lowers", p.nlower == 2 && !strcmp(p.lowerdirs[1], "/l2"));
	CHECK("upper and work", !strcmp(p.upperdir, "/u") && !strcmp(p.workdir, "/w"));
	CHECK("volatile", p.volatile_);
	p.mountpoint = strdup("/m");
	CHECK("validates", ovl_params_validate(&p, err, sizeof(err)) == 0);
	ovl_params_free(&p);

	CHECK("quoted comma in context",
	      parse(&p, "context=\"system_u:object_r:container_file_t:s0:c1,c2\",lowerdir=/l",
		    err) == 0);
	CHECK("context value unquoted",
	      p.context && !strcmp(p.context, "system_u:object_r:container_file_t:s0:c1,c2"));
	CHECK("lowerdir after context", p.nlower == 1);
	ovl_params_free(&p);

	CHECK("plugins refused", parse(&p, "lowerdir=/l,plugins=/x.so", err) < 0);
	CHECK("plugins message names it", strstr(err, "plugins") != NULL);
	ovl_params_free(&p);

	CHECK("squash_to_uid=42 parses",
	      parse(&p, "squash_to_uid=42", err) == 0 && p.squash_uid == 42);
	ovl_params_free(&p);
	CHECK("squash_to_uid= (empty) is refused, not root", parse(&p, "squash_to_uid=", err) < 0);
	CHECK("its message names the option", strstr(err, "squash_to_uid") != NULL);
	ovl_params_free(&p);
	CHECK("squash_to_gid= (empty) is refused", parse(&p, "squash_to_gid=", err) < 0);
	ovl_params_free(&p);
	CHECK("squash_to_gid above 4294967294 is refused",
	      parse(&p, "squash_to_gid=4294967295", err) < 0);
	ovl_params_free(&p);

	CHECK("fsync=0 means volatile", parse(&p, "fsync=0", err) == 0 && p.volatile_);
	ovl_params_free(&p);
	CHECK("timeout parses", parse(&p, "timeout=2.5", err) == 0 && p.timeout == 2.5);
	ovl_params_free(&p);
	CHECK("bad timeout refused", parse(&p, "timeout=abc", err) < 0);
	ovl_params_free(&p);
	CHECK("vfs words collected", parse(&p, "nodev,nosuid,noexec,ro", err) == 0 && p.readonly &&
					     !strcmp(p.vfs_opts, "nodev,nosuid,noexec,ro"));
	ovl_params_free(&p);
	CHECK("uidmapping with two ranges",
	      parse(&p, "uidmapping=0:1000:1:1:100000:65536", err) == 0 && p.nuidmap == 2 &&
		      p.uidmap[1].outside == 100000 && p.uidmap[1].len == 65536);
	ovl_params_free(&p);
	CHECK("bad uidmapping refused", parse(&p, "uidmapping=0:1000", err) < 0);
	ovl_params_free(&p);
	CHECK("unknown option is not an error", parse(&p, "frobnicate=1,lowerdir=/l", err) == 0);
	ovl_params_free(&p);

	memset(&p, 0, sizeof(p));
	p.mountpoint = strdup("/m");
	CHECK("no lowerdir is an error", ovl_params_validate(&p, err, sizeof(err)) < 0);
	ovl_params_free(&p);
	parse(&p, "lowerdir=/l,upperdir=/u", err);
	p.mountpoint = strdup("/m");
	CHECK("upperdir without workdir is an error",
	      ovl_params_validate(&p, err, sizeof(err)) < 0 && strstr(err, "workdir"));
	ovl_params_free(&p);
	TAP_DONE();
}
