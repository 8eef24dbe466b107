// Process memory settings for the forward passes (see Kernels.keepFreedActivationMemory).
#include "ckernels.h"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

void ck_keep_freed_memory(size_t mmap_threshold, size_t trim_threshold) {
#if defined(__GLIBC__)
    mallopt(M_MMAP_THRESHOLD, (int)mmap_threshold);
    mallopt(M_TRIM_THRESHOLD, (int)trim_threshold);
#else
    (void)mmap_threshold;
    (void)trim_threshold;
#endif
}
