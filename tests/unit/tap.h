/* tap.h - the minimal TAP-style reporting shared by the C unit tests (tests/run.sh counts it). */
#ifndef STRATA_TAP_H
#define STRATA_TAP_H
#include <stdio.h>

static int tap_failed;

#define CHECK(name, cond)                                                                     \
	do {                                                                                  \
		if (cond) {                                                                   \
			printf("ok - %s\n", name);                                            \
		} else {                                                                      \
			printf("not ok - %s (%s:%d: %s)\n", name, __FILE__, __LINE__, #cond); \
			tap_failed = 1;                                                       \
		}                                                                             \
	} while (0)

#define SKIP(name, why) printf("ok - %s # skip %s\n", name, why)
#define TAP_DONE() return tap_failed ? 1 : 0
#endif
