/* The in-process face of faultfs.c, for tests that link it in (tests/faultunit). */
#pragma once

#ifdef __cplusplus
extern "C" {
#endif

/* Counts the calls named `call` ("" = every call faultfs counts but read)
 * on paths under `dir`, and fails the `at`th (and, if `persist`, every later
 * one) with errno `err`. Returns the rule's number for faultfs_seen(), or -1. */
int faultfs_arm(const char* dir, const char* call, long at, int err, int persist);
/* How many calls rule `rule` has counted so far. */
long faultfs_seen(int rule);
/* Drops every rule and the directory. */
void faultfs_disarm(void);

#ifdef __cplusplus
}
#endif
