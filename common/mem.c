// Large arenas on transparent huge pages (include/mdgan/mem.h).
#include "mdgan/mem.h"

#include <malloc.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define HUGE_PAGE ((size_t)2 << 20)

void *mem_alloc_big(size_t bytes) {
    if (bytes < HUGE_PAGE) return malloc(bytes ? bytes : 1);
    void *p;
    // whole huge pages, so the arena's tail shares no page with another allocation
    size_t rounded = (bytes + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE;
    if (rounded < bytes || posix_memalign(&p, HUGE_PAGE, rounded) != 0) return NULL;
    madvise(p, rounded, MADV_HUGEPAGE);   // advice only: without THP it is plain memory
    return p;
}

void *mem_calloc_big(size_t n, size_t size) {
    if (size && n > SIZE_MAX / size) return NULL;
    const size_t bytes = n * size;
    if (bytes < HUGE_PAGE) return calloc(n ? n : 1, size ? size : 1);
    void *p = mem_alloc_big(bytes);
    if (p) memset(p, 0, bytes);
    return p;
}

void mem_keep_freed(void) {
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 256 << 20);
}
