# mdgan — plain Makefile (see README.md).
#   make            library + bin/mdgan, bin/mdgan-base, bin/mdgan-refine
#   make test       build and run every test (non-zero exit on any failure)
#   make ASAN=1 test   the same under AddressSanitizer + UBSan (objects in build/asan)
#   make DEBUG=1    -O0 -g
#   make install-deps  Debian packages (as root)
#   make demo       the default pipeline from pipeline.conf

CC      ?= gcc
PKGS    := openblas libpng libjpeg libzmq sqlite3 inih jansson libsodium zlib
TESTPKGS:= cmocka

CFLAGS_BASE := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -fopenmp -Iinclude \
               $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS  := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lgif -lm -fopenmp

ifeq ($(ASAN),1)
  BUILD  := build/asan
  CFLAGS := $(CFLAGS_BASE) -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
            -fno-sanitize-recover=undefined
  LDFLAGS += -fsanitize=address,undefined
  BINDIR := build/asan/bin
else ifeq ($(DEBUG),1)
  BUILD  := build/debug
  CFLAGS := $(CFLAGS_BASE) -O0 -g
  BINDIR := build/debug/bin
else
  BUILD  := build/release
  CFLAGS := $(CFLAGS_BASE) -O2 -g -march=x86-64-v2
  BINDIR := bin
  # the vol2col/col2vol loops gain about 10% of a training step from -O3's vectorizer
  HOT_CFLAGS := -O3
endif

LIB_SRC  := $(wildcard common/*.c)
LIB_OBJ  := $(LIB_SRC:common/%.c=$(BUILD)/common/%.o)
LIB      := $(BUILD)/libmdgan.a
BINS     := $(BINDIR)/mdgan $(BINDIR)/mdgan-base $(BINDIR)/mdgan-refine
TEST_SRC := $(wildcard tests/test_*.c)
TESTS    := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
# the fault matrix (issue 9): real processes, files and sockets, one program per fault
FAULT_SRC := $(wildcard tests/faults/test_*.c)
TESTS    += $(FAULT_SRC:tests/faults/%.c=$(BUILD)/tests/faults/%)
BENCH    := $(BUILD)/bench/bench_step

.PHONY: all test install-deps demo bench clean fixtures
all: $(BINS)

# V=1 shows the full commands
Q := $(if $(V),,@)

$(BUILD)/common/%.o: common/%.c $(wildcard include/mdgan/*.h) | $(BUILD)/common
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/common/conv.o $(BUILD)/common/gemm.o $(BUILD)/common/ops.o: CFLAGS += $(HOT_CFLAGS)

$(LIB): $(LIB_OBJ)
	$(Q)rm -f $@ && ar rcs $@ $^

$(BINDIR)/mdgan: stages/coord.c $(LIB) | $(BINDIR)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(CFLAGS) $< $(LIB) -o $@ $(LDFLAGS) $(LDLIBS)
$(BINDIR)/mdgan-base: stages/base.c $(LIB) | $(BINDIR)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(CFLAGS) $< $(LIB) -o $@ $(LDFLAGS) $(LDLIBS)
$(BINDIR)/mdgan-refine: stages/refine.c $(LIB) | $(BINDIR)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(CFLAGS) $< $(LIB) -o $@ $(LDFLAGS) $(LDLIBS)

$(BUILD)/tests/%: tests/%.c $(wildcard tests/*.h) $(LIB) | $(BUILD)/tests
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(CFLAGS) $< $(LIB) -o $@ $(LDFLAGS) $(LDLIBS) $(shell pkg-config --libs $(TESTPKGS))
$(BUILD)/tests/faults/%: tests/faults/%.c $(wildcard tests/*.h tests/faults/*.h) $(LIB) | $(BUILD)/tests/faults
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(CFLAGS) -Itests $< $(LIB) -o $@ $(LDFLAGS) $(LDLIBS) $(shell pkg-config --libs $(TESTPKGS))

# test_alloc counts the library's allocations through the linker's --wrap
$(BUILD)/tests/test_alloc: LDFLAGS += -Wl,--wrap=malloc -Wl,--wrap=calloc -Wl,--wrap=realloc \
                                      -Wl,--wrap=posix_memalign
$(BENCH): bench/bench_step.c $(LIB) | $(BUILD)/bench
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(CFLAGS) $< $(LIB) -o $@ $(LDFLAGS) $(LDLIBS)

$(BUILD)/common $(BUILD)/tests $(BUILD)/tests/faults $(BUILD)/bench $(BINDIR):
	mkdir -p $@

# Every test program gets the binaries' folder and the fixtures' folder; the runner
# prints one closing line "N passed, N failed" over all cmocka counts.
test: $(BINS) $(TESTS)
	@MDGAN_BINDIR=$(abspath $(BINDIR)) MDGAN_FIXTURES=$(abspath tests/fixtures) \
	  sh tests/run.sh $(TESTS)

# Long-run checks kept out of `make test` and CI (issue 9): the soak test (both stages
# and the coordinator at a tiny shape for SOAK_MINUTES, with repeated kills and
# restarts, logging every process's RSS and open descriptors each minute) and the
# valgrind runs of each executable's integration path.
SOAK_MINUTES ?= 30
.PHONY: soak valgrind
soak: $(BINS)
	@sh tests/soak.sh --bin $(abspath $(BINDIR)) --minutes $(SOAK_MINUTES)
valgrind: $(BINS)
	@sh tests/valgrind.sh --bin $(abspath $(BINDIR))

# Regenerate the PyTorch reference fixtures (needs python3-torch; the result is committed).
fixtures:
	/usr/bin/python3 tests/make_fixtures.py tests/fixtures
	/usr/bin/python3 tests/make_metric_fixtures.py tests/fixtures/metrics.safetensors

install-deps:
	sh .ci/install-deps

# The default job: data (if none), then `mdgan run pipeline.conf`: Stage I, mdgan-base
# serve with Stage II training against it over ZeroMQ, predictions of the validation
# clips through both stages, their metrics and the report. Each time a new run
# (default, default-2, ...) on the same data.
CONF_GET = sed -n 's/^$(1) *= *//p' pipeline.conf | head -n 1
demo:
	@if [ "$$(id -u)" = 0 ]; then sh .ci/install-deps --runtime; fi
	@$(MAKE) --no-print-directory all
	@set -e; start=$$(date +%s); \
	root=$$($(call CONF_GET,root)); frames=$$($(call CONF_GET,frames)); size=$$($(call CONF_GET,size)); \
	if ! ls $$root/*/*/* >/dev/null 2>&1; then \
	  bin/mdgan data synth --out $$root --clips 48 --frames $$frames --size $$size --per-video 4; fi; \
	bin/mdgan run pipeline.conf; \
	echo; echo "demo done in $$(( $$(date +%s) - start )) s"

BENCH_WIRE := $(BUILD)/bench/bench_wire
# mdgan against PyTorch side by side (bench/README.md); BENCH_ARGS="--quick" etc.;
# then the ZeroMQ tensor transport (bench_wire: ipc:// and tcp://127.0.0.1 between two
# processes), then `mdgan predict` as a whole process against PyTorch's (bench/predict.sh);
# those two take only --quick from BENCH_ARGS.
bench: $(BENCH) $(BENCH_WIRE) $(BINS)
	@sh bench/run.sh --bin $(abspath $(BENCH)) $(BENCH_ARGS)
	@$(BENCH_WIRE) $(filter --quick,$(BENCH_ARGS))
	@sh bench/predict.sh --bin $(abspath $(BINDIR)) $(filter --quick,$(BENCH_ARGS))

$(BENCH_WIRE): bench/bench_wire.c $(LIB) | $(BUILD)/bench
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(CFLAGS) $< $(LIB) -o $@ $(LDFLAGS) $(LDLIBS)

# Fuzzing the wire parsers, the control messages, the safetensors and checkpoint
# reader, the config parser and --set, the image loader and the dataset walker with
# libFuzzer (tests/fuzz/, README.md there), built with clang in build/fuzz, apart
# from the gcc objects; each target links only the library objects it needs:
#   make fuzz [FUZZ_SECONDS=30] [FUZZ_TARGETS="image config"]
#                        build the targets and run each that long, one after the other,
#                        on a fresh copy of its seed corpus (build/fuzz/corpus-NAME);
#                        fails on any crash, leak, sanitizer report or broken invariant
#   make fuzz-corpus     rewrite the committed seeds tests/fuzz/corpus/NAME/
.PHONY: fuzz fuzz-corpus
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 30
FUZZ_ALL     := wire control safetensors config image dataset
FUZZ_TARGETS ?= $(FUZZ_ALL)
FUZZ_DIR     := build/fuzz
FUZZ_PKGS    := libzmq zlib jansson libpng libjpeg inih libsodium openblas
FUZZ_CFLAGS  := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -g -O1 -fno-omit-frame-pointer -Iinclude \
                $(shell pkg-config --cflags $(FUZZ_PKGS) 2>/dev/null) \
                -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_LIBS    := $(shell pkg-config --libs $(FUZZ_PKGS) 2>/dev/null) -lgif -lm
# the library objects of each target (common/NAME.c)
FUZZ_OBJ_wire        := wire error
FUZZ_OBJ_control     := control wire train fileio sha256 rng error
FUZZ_OBJ_safetensors := safetensors ckpt net adam conv gemm ops mem rng fileio sha256 error
FUZZ_OBJ_config      := config loss conv gemm sha256 error
FUZZ_OBJ_image       := image mem fileio sha256 error
FUZZ_OBJ_dataset     := dataset image mem rng fileio sha256 error
# clang 14 names a target_clones function's ifunc "adam_step.ifunc", which callers in
# other files do not find: net.o gets the portable clone (no fuzz input reaches it)
FUZZ_LDFLAGS_safetensors := -Wl,--defsym=adam_step=adam_step.default.1 -lgomp
FUZZ_LDFLAGS_config      := -lgomp
# libFuzzer flags of each target: the largest input, what the dataset walker's
# warnings would flood (stderr; libFuzzer's and the sanitizers' reports still show)
FUZZ_FLAGS_wire        :=
FUZZ_FLAGS_control     := -max_len=16384
FUZZ_FLAGS_safetensors := -max_len=65536
FUZZ_FLAGS_config      := -max_len=8192
FUZZ_FLAGS_image       := -max_len=16384
FUZZ_FLAGS_dataset     := -max_len=4096 -close_fd_mask=2
# the targets' temporary files (a file per input; the dataset target a tree per input)
FUZZ_TMPDIR  ?= $(if $(wildcard /dev/shm),/dev/shm,/tmp)

$(FUZZ_DIR)/%.o: common/%.c $(wildcard include/mdgan/*.h) | $(FUZZ_DIR)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c $< -o $@
# Without -fopenmp (clang's OpenMP is libomp-dev, not a CI package) the other objects'
# parallel loops run on one thread. conv.c and loss.c call OpenMP's runtime and clang
# 14 refuses gemm.c (shuffle immediates held in const ints); none of them parses
# anything and no fuzz input reaches them but rank_form_parse: gcc builds these three,
# uninstrumented, and their targets link libgomp.
FUZZ_GCC_OBJ := conv loss gemm
$(FUZZ_GCC_OBJ:%=$(FUZZ_DIR)/%.o): $(FUZZ_DIR)/%.o: common/%.c $(wildcard include/mdgan/*.h) | $(FUZZ_DIR)
	$(CC) $(CFLAGS_BASE) -O2 -c $< -o $@

# fuzz_NAME, and fuzz_NAME_gen, the generator of its seed corpus
define FUZZ_TARGET_RULES
$(FUZZ_DIR)/fuzz_$(1): tests/fuzz/fuzz_$(1).c tests/fuzz/fuzzutil.h $(FUZZ_OBJ_$(1):%=$(FUZZ_DIR)/%.o) | $(FUZZ_DIR)
	$$(FUZZ_CC) $$(FUZZ_CFLAGS) -fsanitize=fuzzer $$< $(FUZZ_OBJ_$(1):%=$(FUZZ_DIR)/%.o) -o $$@ $$(FUZZ_LIBS) \
	  $$(FUZZ_LDFLAGS_$(1))
$(FUZZ_DIR)/fuzz_$(1)_gen: tests/fuzz/fuzz_$(1).c tests/fuzz/fuzzutil.h $(FUZZ_OBJ_$(1):%=$(FUZZ_DIR)/%.o) | $(FUZZ_DIR)
	$$(FUZZ_CC) $$(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -DFUZZ_GENERATOR $$< $(FUZZ_OBJ_$(1):%=$(FUZZ_DIR)/%.o) \
	  -o $$@ $$(FUZZ_LIBS) $$(FUZZ_LDFLAGS_$(1))
endef
$(foreach t,$(FUZZ_ALL),$(eval $(call FUZZ_TARGET_RULES,$(t))))
$(FUZZ_DIR):
	mkdir -p $@

# One target's run; OpenMP on one thread, so a run takes one core.
define FUZZ_RUN
	rm -rf $(FUZZ_DIR)/corpus-$(1) && mkdir -p $(FUZZ_DIR)/corpus-$(1)
	cp tests/fuzz/corpus/$(1)/* $(FUZZ_DIR)/corpus-$(1)/
	OMP_NUM_THREADS=1 TMPDIR=$(FUZZ_TMPDIR) $(FUZZ_DIR)/fuzz_$(1) -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=2048 \
	  -print_final_stats=1 $(if $(wildcard tests/fuzz/$(1).dict),-dict=tests/fuzz/$(1).dict) $(FUZZ_FLAGS_$(1)) \
	  -artifact_prefix=$(FUZZ_DIR)/$(1)- $(FUZZ_DIR)/corpus-$(1)
	@echo "fuzz_$(1): $$(ls $(FUZZ_DIR)/corpus-$(1) | wc -l) files in $(FUZZ_DIR)/corpus-$(1)"

endef
fuzz: $(FUZZ_TARGETS:%=$(FUZZ_DIR)/fuzz_%)
	$(foreach t,$(FUZZ_TARGETS),$(call FUZZ_RUN,$(t)))

define FUZZ_GEN
	rm -rf tests/fuzz/corpus/$(1) && mkdir -p tests/fuzz/corpus
	OMP_NUM_THREADS=1 $(FUZZ_DIR)/fuzz_$(1)_gen tests/fuzz/corpus/$(1)

endef
fuzz-corpus: $(FUZZ_TARGETS:%=$(FUZZ_DIR)/fuzz_%_gen)
	$(foreach t,$(FUZZ_TARGETS),$(call FUZZ_GEN,$(t)))

clean:
	rm -rf build bin
