// Large arenas: mem_free_big keeps a freed one for the next mem_alloc_big it fits (the
// smallest that fits), frees what it cannot keep, and mem_calloc_big still zeroes a
// kept one. Under ASan (make ASAN=1 test) a double free or a leak would show here.
#include "testutil.h"

#include "mdgan/mem.h"

#define MIB ((size_t)1 << 20)

static void test_kept_arena_is_reused(void **state) {
    (void)state;
    char *a = mem_alloc_big(8 * MIB);
    assert_non_null(a);
    memset(a, 7, 8 * MIB);
    mem_free_big(a);
    char *b = mem_alloc_big(6 * MIB);   // fits the kept 8 MiB: the same memory
    assert_ptr_equal(a, b);
    char *c = mem_alloc_big(16 * MIB);   // nothing kept fits: new memory
    assert_non_null(c);
    assert_ptr_not_equal(c, b);
    mem_free_big(b);
    mem_free_big(c);
    float *z = mem_calloc_big(4 * MIB / sizeof(float), sizeof(float));   // a kept one, zeroed
    assert_true(z == (float *)(void *)b || z == (float *)(void *)c);
    for (size_t i = 0; i < 4 * MIB / sizeof(float); i += 4093) assert_true(z[i] == 0.0f);
    mem_free_big(z);
    // drain what is kept so the next case starts empty
    void *d = mem_alloc_big(8 * MIB), *e = mem_alloc_big(16 * MIB);
    assert_non_null(d);
    assert_non_null(e);
    free(d), free(e);
}

static void test_smallest_that_fits(void **state) {
    (void)state;
    void *big = mem_alloc_big(32 * MIB), *mid = mem_alloc_big(12 * MIB), *small = mem_alloc_big(4 * MIB);
    assert_non_null(big), assert_non_null(mid), assert_non_null(small);
    mem_free_big(big), mem_free_big(mid), mem_free_big(small);
    void *x = mem_alloc_big(10 * MIB);   // 12 MiB, not 32
    assert_ptr_equal(x, mid);
    void *y = mem_alloc_big(3 * MIB);
    assert_ptr_equal(y, small);
    void *w = mem_alloc_big(20 * MIB);
    assert_ptr_equal(w, big);
    free(x), free(y), free(w);
}

// More freed arenas than are kept, and small blocks: all freed, none lost (ASan).
static void test_more_than_kept(void **state) {
    (void)state;
    void *p[12];
    for (int i = 0; i < 12; i++) {
        p[i] = mem_alloc_big((size_t)(i + 2) * MIB);
        assert_non_null(p[i]);
    }
    for (int i = 0; i < 12; i++) mem_free_big(p[i]);
    void *s = mem_alloc_big(1000);   // small: plain malloc, plain free
    assert_non_null(s);
    mem_free_big(s);
    mem_free_big(NULL);
    // the smallest kept one comes back first: p[0] (2 MiB) was kept, being freed first
    void *q = mem_alloc_big(2 * MIB);
    assert_ptr_equal(q, p[0]);
    free(q);
    // what stays kept is still reachable, not leaked (LeakSanitizer under ASan)
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kept_arena_is_reused),
        cmocka_unit_test(test_smallest_that_fits),
        cmocka_unit_test(test_more_than_kept),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
