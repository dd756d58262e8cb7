/* error.c - the error object every driver function fills on failure, and its JSON form. */
#include "strata.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int strata_fail(struct strata_error *err, int exit_code, int errnum, const char *field,
		const char *fmt, ...)
{
	if (!err || err->exit_code)
		return -1; /* the first error is the one that explains the others */
	err->exit_code = exit_code ? exit_code : STRATA_EXIT_FAIL;
	err->errnum = errnum;
	snprintf(err->field, sizeof(err->field), "%s", field ? field : "");
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err->message, sizeof(err->message), fmt, ap);
	va_end(ap);
	return -1;
}

const char *strata_errno_name(int errnum)
{
	const char *n = errnum > 0 ? strerrorname_np(errnum) : NULL;
	return n ? n : "EUNKNOWN";
}

json_object *strata_error_json(const struct strata_error *err)
{
	json_object *e = json_object_new_object();
	json_object_object_add(e, "code", json_object_new_string(strata_errno_name(err->errnum)));
	json_object_object_add(e, "errno", json_object_new_int(err->errnum));
	if (err->field[0])
		json_object_object_add(e, "field", json_object_new_string(err->field));
	json_object_object_add(e, "message", json_object_new_string(err->message));
	return e;
}

json_object *strata_error_doc(const char *id, const struct strata_error *err)
{
	json_object *d = json_object_new_object();
	if (id)
		json_object_object_add(d, "id", json_object_new_string(id));
	json_object_object_add(d, "state", json_object_new_string("error"));
	json_object_object_add(d, "error", strata_error_json(err));
	return d;
}
