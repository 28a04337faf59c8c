// Large arenas on transparent huge pages (include/mdgan/mem.h).
#include "mdgan/mem.h"

#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define HUGE_PAGE ((size_t)2 << 20)

// Arenas given back by mem_free_big, already faulted in, for the next mem_alloc_big
// that fits: the smallest that does. A few at most; one that does not fit the table
// is freed.
enum { KEPT_MAX = 4 };
static struct {
    void *p;
    size_t bytes;
} kept[KEPT_MAX];
static pthread_mutex_t kept_lock = PTHREAD_MUTEX_INITIALIZER;

static void *take_kept(size_t bytes) {
    void *p = NULL;
    pthread_mutex_lock(&kept_lock);
    int best = -1;
    for (int i = 0; i < KEPT_MAX; i++)
        if (kept[i].p && kept[i].bytes >= bytes && (best < 0 || kept[i].bytes < kept[best].bytes)) best = i;
    if (best >= 0) p = kept[best].p, kept[best].p = NULL;
    pthread_mutex_unlock(&kept_lock);
    return p;
}

void *mem_alloc_big(size_t bytes) {
    if (bytes < HUGE_PAGE) return malloc(bytes ? bytes : 1);
    void *p = take_kept(bytes);
    if (p) return p;
    // whole huge pages, so the arena's tail shares no page with another allocation
    size_t rounded = (bytes + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE;
    if (rounded < bytes || posix_memalign(&p, HUGE_PAGE, rounded) != 0) return NULL;
    madvise(p, rounded, MADV_HUGEPAGE);   // advice only: without THP it is plain memory
    return p;
}

void mem_free_big(void *p) {
    const size_t bytes = p ? malloc_usable_size(p) : 0;
    if (bytes >= HUGE_PAGE) {
        pthread_mutex_lock(&kept_lock);
        for (int i = 0; i < KEPT_MAX && p; i++)
            if (!kept[i].p) kept[i].p = p, kept[i].bytes = bytes, p = NULL;
        pthread_mutex_unlock(&kept_lock);
    }
    free(p);
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
