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
BENCH    := $(BUILD)/bench/bench_step

.PHONY: all test install-deps demo bench clean fixtures
all: $(BINS)

# V=1 shows the full commands
Q := $(if $(V),,@)

$(BUILD)/common/%.o: common/%.c $(wildcard include/mdgan/*.h) | $(BUILD)/common
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/common/conv.o: CFLAGS += $(HOT_CFLAGS)

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

$(BENCH): bench/bench_step.c $(LIB) | $(BUILD)/bench
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(CFLAGS) $< $(LIB) -o $@ $(LDFLAGS) $(LDLIBS)

$(BUILD)/common $(BUILD)/tests $(BUILD)/bench $(BINDIR):
	mkdir -p $@

# Every test program gets the binaries' folder and the fixtures' folder; the runner
# prints one closing line "N passed, N failed" over all cmocka counts.
test: $(BINS) $(TESTS)
	@MDGAN_BINDIR=$(abspath $(BINDIR)) MDGAN_FIXTURES=$(abspath tests/fixtures) \
	  sh tests/run.sh $(TESTS)

# Regenerate the PyTorch reference fixtures (needs python3-torch; the result is committed).
fixtures:
	/usr/bin/python3 tests/make_fixtures.py tests/fixtures
	/usr/bin/python3 tests/make_metric_fixtures.py tests/fixtures/metrics.safetensors

install-deps:
	sh .ci/install-deps

# The default job: data (if none), Stage I for a few minutes, G1 over the data set,
# metrics, and where everything is. Run again, it resumes the same run.
CONF_GET = sed -n 's/^$(1) *= *//p' pipeline.conf | head -n 1
demo:
	@if [ "$$(id -u)" = 0 ]; then sh .ci/install-deps --runtime; fi
	@$(MAKE) --no-print-directory all
	@set -e; start=$$(date +%s); \
	root=$$($(call CONF_GET,root)); frames=$$($(call CONF_GET,frames)); size=$$($(call CONF_GET,size)); \
	run=$$($(call CONF_GET,dir))/$$($(call CONF_GET,name)); \
	if ! ls $$root/*/*/* >/dev/null 2>&1; then \
	  bin/mdgan data synth --out $$root --clips 48 --frames $$frames --size $$size --per-video 4; fi; \
	if ls $$run/checkpoints/base_step_*.safetensors >/dev/null 2>&1; then resume="--resume $$run"; else resume=""; fi; \
	bin/mdgan-base train --config pipeline.conf $$resume --minutes 8; \
	ckpt=$$(ls $$run/checkpoints/base_step_*.safetensors | tail -n 1); \
	bin/mdgan-base infer --checkpoint $$ckpt --data $$root --out $$run/y1; \
	bin/mdgan eval --pred $$run/y1 --real $$root --frames $$frames --json $$run/eval.json | tail -n 2; \
	sheet=$$(ls $$run/samples/step_*.png | tail -n 1); \
	echo; echo "demo done in $$(( $$(date +%s) - start )) s"; \
	echo "  checkpoint:    $$ckpt"; \
	echo "  contact sheet: $$sheet (real clips above G1's)"; \
	echo "  animation:     $${sheet%.png}.gif"; \
	echo "  videos (Y1):   $$run/y1/<video>/<clip>/frame_*.png"; \
	echo "  metrics:       $$run/eval.json, $$run/metrics.jsonl"

# mdgan against PyTorch side by side (bench/README.md); BENCH_ARGS="--quick" etc.
bench: $(BENCH)
	@sh bench/run.sh --bin $(abspath $(BENCH)) $(BENCH_ARGS)

clean:
	rm -rf build bin
