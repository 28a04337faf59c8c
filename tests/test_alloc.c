// No allocation inside a training step after the first (issue 8, target 6): the test
// is linked with -Wl,--wrap for malloc, calloc, realloc and posix_memalign, so every
// call from the library's objects is counted here (OpenBLAS's and libgomp's own, in
// their shared libraries, are not: they are not ours to change).
#include <stdint.h>

#include "mdgan/stage1.h"
#include "mdgan/stage2.h"
#include "testutil.h"

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
int __real_posix_memalign(void **p, size_t align, size_t n);

static long allocations;

void *__wrap_malloc(size_t n) {
    __atomic_add_fetch(&allocations, 1, __ATOMIC_RELAXED);
    return __real_malloc(n);
}
void *__wrap_calloc(size_t n, size_t size) {
    __atomic_add_fetch(&allocations, 1, __ATOMIC_RELAXED);
    return __real_calloc(n, size);
}
void *__wrap_realloc(void *p, size_t n) {
    __atomic_add_fetch(&allocations, 1, __ATOMIC_RELAXED);
    return __real_realloc(p, n);
}
int __wrap_posix_memalign(void **p, size_t align, size_t n) {
    __atomic_add_fetch(&allocations, 1, __ATOMIC_RELAXED);
    return __real_posix_memalign(p, align, n);
}

static float *random_clips(Rng *rng, size_t n) {
    float *y = malloc(n * sizeof(float));
    assert_non_null(y);
    for (size_t i = 0; i < n; i++) y[i] = 2.0f * rng_uniform(rng) - 1.0f;
    return y;
}

static void test_stage1_steps_allocate_nothing(void **state) {
    (void)state;
    const int N = 2, T = 8, S = 32;
    Rng rng;
    rng_seed(&rng, 5);
    AdamConfig opt = ADAM_DEFAULTS;
    Stage1 s;
    const long before_init = allocations;
    assert_int_equal(stage1_init(&s, N, T, S, S, 8, 8, 100.0f, &opt, &opt, &rng), 0);
    assert_true(allocations > before_init);   // the counter sees the library's calls
    float *y = random_clips(&rng, (size_t)N * 3 * T * S * S);
    Stage1Losses l;
    stage1_step(&s, y, &l);
    const long before = allocations;
    for (int i = 0; i < 3; i++) stage1_step(&s, y, &l);
    printf("    3 Stage I steps after the first: %ld allocations\n", allocations - before);
    assert_int_equal(allocations - before, 0);
    free(y);
    stage1_free(&s);
}

static void test_stage2_steps_allocate_nothing(void **state) {
    (void)state;
    const int N = 2, T = 8, S = 32;
    Rng rng;
    rng_seed(&rng, 6);
    AdamConfig opt = ADAM_DEFAULTS;
    for (int form = 0; form < 2; form++) {
        Stage2 s;
        assert_int_equal(stage2_init(&s, N, T, S, S, 8, 8, 100.0f, 1.0f, form ? RANK_BOUNDED : RANK_PAPER, &opt, &opt,
                                     &rng), 0);
        const size_t n = (size_t)N * 3 * T * S * S;
        float *y = random_clips(&rng, n), *y1 = random_clips(&rng, n);
        Stage2Losses l;
        stage2_step(&s, y, y1, &l);
        const long before = allocations;
        for (int i = 0; i < 3; i++) stage2_step(&s, y, y1, &l);
        printf("    3 Stage II steps (%s) after the first: %ld allocations\n", form ? "bounded" : "paper",
               allocations - before);
        assert_int_equal(allocations - before, 0);
        free(y), free(y1);
        stage2_free(&s);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stage1_steps_allocate_nothing),
        cmocka_unit_test(test_stage2_steps_allocate_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
