#ifndef MDGAN_MEM_H
#define MDGAN_MEM_H
// Large arenas (weights, gradients, Adam moments, activations): aligned to 2 MiB and
// marked for transparent huge pages, so that first touching hundreds of MiB costs a
// fault per 2 MiB instead of one per 4 KiB page (on this KVM guest, faults were a fifth
// of a whole `mdgan predict`). Freed with free() or mem_free_big. Small sizes are plain
// malloc.
#include <stddef.h>

void *mem_alloc_big(size_t bytes);    // uninitialised; NULL when out of memory
void *mem_calloc_big(size_t n, size_t size);   // zeroed; NULL on overflow or out of memory
// Frees an arena of mem_alloc_big (or of malloc), or keeps a large one, its pages
// already touched, for the next mem_alloc_big it fits: fresh memory costs the kernel's
// zeroing of every page, and in this VM the host's faults too once it has taken the
// pages back (predict's G2 then takes G1's weights' memory, and its activations G1's).
// At most four are held, until an allocation takes them or the process ends.
void mem_free_big(void *p);

// Keeps memory that is freed with the process for the next allocation: glibc would give
// a heap's free top back to the kernel once 128 KiB are free, and map allocations of 128
// KiB and more afresh each time (until its threshold adapts), so a loop that allocates
// and frees a frame's buffers took page faults on the same memory on every pass (in this
// VM a 4 KiB fault costs about 20 us: refine infer's frame writing 0.19 -> 0.08 s).
// Allocations from 32 MiB up are still mapped, and given back when freed. Called once
// at start by cli_main.
void mem_keep_freed(void);

#endif
