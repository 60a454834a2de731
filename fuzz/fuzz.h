/* Shared by the harnesses: a private scratch file per process, in RAM
 * (/dev/shm when it exists) because the readers take paths. */
#ifndef BP_FUZZ_H
#define BP_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* "/dev/shm/bp_fuzz_<pid>_<name>" (or under /tmp), built once per name. */
const char *fuzz_path(const char *name, char *buf, size_t size);
/* Write data to path (truncating); 0 on failure. */
int fuzz_write(const char *path, const void *data, size_t size);

#endif
