#ifndef MDGAN_MEM_H
#define MDGAN_MEM_H
// Large arenas (weights, gradients, Adam moments, activations): aligned to 2 MiB and
// marked for transparent huge pages, so that first touching hundreds of MiB costs a
// fault per 2 MiB instead of one per 4 KiB page (on this KVM guest, faults were a fifth
// of a whole `mdgan predict`). Freed with free(). Small sizes are plain malloc.
#include <stddef.h>

void *mem_alloc_big(size_t bytes);    // uninitialised; NULL when out of memory
void *mem_calloc_big(size_t n, size_t size);   // zeroed; NULL on overflow or out of memory

#endif
