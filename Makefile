# tutor: build, test, demo. `make` builds build/libtutor.a and build/tutor;
# `make test` runs every test; `make test SANITIZE=1` does so under ASan + UBSan.
# Sources are found by wildcard: src/<layer>/*.c make the library (src/cli the program),
# tests/<layer>/test_*.c are Criterion tests (one executable each),
# tests/gradcheck/test_*.c link the double-precision build of the library.

CC ?= gcc
SANITIZE ?= 0
ifeq ($(SANITIZE),1)
BUILD ?= build/sanitize
OPT = -O1 -g -march=native -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
else
BUILD ?= build/release
OPT = -O3 -g -march=native
endif

PKGS = libcjson libutf8proc libmicrohttpd
CFLAGS_ALL = -std=c11 -D_GNU_SOURCE -fno-trapping-math -Wall -Wextra -Wno-unused-parameter -Wno-format-truncation -Iinclude -Isrc \
	$(OPT) $(shell pkg-config --cflags $(PKGS) 2>/dev/null) -I/usr/include/x86_64-linux-gnu/openblas-pthread $(CFLAGS)
LIBS = $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lopenblas -lpthread -lm
# MPI (data-parallel training, sharded generation): on when OpenMPI's mpicc is installed
# (Debian's libopenmpi-dev), off with MPI=0 or without it; a build without MPI runs as one process.
MPI ?= $(if $(shell command -v mpicc 2>/dev/null),1,0)
ifeq ($(MPI),1)
CFLAGS_ALL += -DTUTOR_MPI $(shell mpicc -showme:compile 2>/dev/null)
LIBS += $(shell mpicc -showme:link 2>/dev/null)
endif
LDFLAGS_ALL = $(OPT) $(LDFLAGS)

# -march=native binaries must not travel: a build folder kept from another machine (another
# CPU, other instruction sets) would die of an illegal instruction. Every object depends on a
# stamp named after what -march=native means on this machine, so a build made elsewhere is
# rebuilt rather than run.
NATIVE_ID := $(shell $(CC) -march=native -Q --help=target 2>/dev/null | md5sum | cut -c1-12)
CPU_STAMP = $(BUILD)/.cpu-$(NATIVE_ID)
$(CPU_STAMP):
	@mkdir -p $(BUILD) && rm -f $(BUILD)/.cpu-* && touch $@
FUZZ_CPU_STAMP = build/fuzz/.cpu-$(NATIVE_ID)
$(FUZZ_CPU_STAMP):
	@mkdir -p build/fuzz && rm -f build/fuzz/.cpu-* && touch $@

LIB_SRC = $(filter-out src/cli/%,$(wildcard src/*/*.c))
CLI_SRC = $(wildcard src/cli/*.c)
TEST_SRC = $(filter-out tests/gradcheck/%,$(wildcard tests/*/test_*.c))
GRAD_SRC = $(wildcard tests/gradcheck/test_*.c)
BENCH_SRC = $(wildcard bench/*.c)
HDRS = $(wildcard include/tutor/*.h) $(wildcard src/*/*.h)

LIB_OBJ = $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
LIBD_OBJ = $(LIB_SRC:%.c=$(BUILD)/objd/%.o)
CLI_OBJ = $(CLI_SRC:%.c=$(BUILD)/obj/%.o)
TEST_BIN = $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
GRAD_BIN = $(GRAD_SRC:tests/%.c=$(BUILD)/tests/%)
BENCH_BIN = $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)

.PHONY: all deps test demo bench clean tests teacher fuzz
# build/tutor, the program a user runs, always points at the release build: a sanitizer
# build (ten times slower) is only used by its own tests, through TUTOR_BUILD.
ifeq ($(SANITIZE),1)
all: $(BUILD)/libtutor.a $(BUILD)/tutor
else
all: $(BUILD)/libtutor.a $(BUILD)/tutor build/tutor
endif

# The Debian packages are installed before anything compiles, also under make -j: every
# object waits for this stamp (order-only), which scripts/deps.sh makes once they are there.
DEPS_STAMP = build/.deps-build
$(DEPS_STAMP):
	@scripts/deps.sh build
	@mkdir -p build && touch $@
deps:
	@scripts/deps.sh build

# V=1 shows whole command lines.
ifeq ($(V),1)
Q =
say = @true
else
Q = @
say = @echo
endif

$(BUILD)/obj/%.o: %.c $(HDRS) $(CPU_STAMP) | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(say) "  CC      $<"
	$(Q)$(CC) $(CFLAGS_ALL) -c $< -o $@

$(BUILD)/objd/%.o: %.c $(HDRS) $(CPU_STAMP) | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(say) "  CC(f64) $<"
	$(Q)$(CC) $(CFLAGS_ALL) -DTUTOR_REAL_DOUBLE -c $< -o $@

$(BUILD)/libtutor.a: $(LIB_OBJ)
	@rm -f $@
	$(say) "  AR      $@"
	$(Q)ar rcs $@ $^

$(BUILD)/libtutor-double.a: $(LIBD_OBJ)
	@rm -f $@
	$(say) "  AR      $@"
	$(Q)ar rcs $@ $^

$(BUILD)/tutor: $(CLI_OBJ) $(BUILD)/libtutor.a
	$(say) "  LINK    $@"
	$(Q)$(CC) $(LDFLAGS_ALL) $(CLI_OBJ) $(BUILD)/libtutor.a $(LIBS) -o $@

# build/tutor is the program a user runs, whatever the build flavour.
build/tutor: $(BUILD)/tutor
	@ln -sf $(patsubst build/%,%,$(BUILD))/tutor build/tutor

$(BUILD)/tests/gradcheck/%: tests/gradcheck/%.c tests/testlib.h $(BUILD)/libtutor-double.a $(CPU_STAMP)
	@mkdir -p $(dir $@)
	$(say) "  TEST    $@"
	$(Q)$(CC) $(CFLAGS_ALL) -DTUTOR_REAL_DOUBLE $< $(BUILD)/libtutor-double.a $(LDFLAGS_ALL) -lcriterion $(LIBS) -o $@

$(BUILD)/tests/%: tests/%.c tests/testlib.h $(BUILD)/libtutor.a $(CPU_STAMP)
	@mkdir -p $(dir $@)
	$(say) "  TEST    $@"
	$(Q)$(CC) $(CFLAGS_ALL) $< $(BUILD)/libtutor.a $(LDFLAGS_ALL) -lcriterion $(LIBS) -o $@

$(BUILD)/bench/%: bench/%.c $(BUILD)/libtutor.a $(CPU_STAMP)
	@mkdir -p $(dir $@)
	$(say) "  BENCH   $@"
	$(Q)$(CC) $(CFLAGS_ALL) $< $(BUILD)/libtutor.a $(LDFLAGS_ALL) $(LIBS) -o $@

tests: $(TEST_BIN) $(GRAD_BIN) $(BUILD)/tutor

# Tests run with one thread unless a test is about threads (DESIGN.md).
test:
	@scripts/deps.sh test
	@$(MAKE) --no-print-directory all tests
	@scripts/debdesc-fetch.sh >/dev/null
	@BUILD=$(BUILD) SANITIZE=$(SANITIZE) scripts/run-tests.sh $(TEST_BIN) $(GRAD_BIN)

bench: all $(BENCH_BIN)
	@echo "benchmarks built in $(BUILD)/bench: run them one at a time (see bench/README.md)"

demo: all
	@scripts/demo.sh

# Retrains the debdesc teacher (hours; resumable: run it again after an interruption).
teacher: all
	@scripts/teacher.sh

# Fuzzing: the library and the harnesses of fuzz/ built with clang, libFuzzer, ASan and UBSan
# (clang's float-cast-overflow check included); `make fuzz FUZZ_SECONDS=N` runs each for N s.
FUZZ_SECONDS ?= 60
FUZZ_BUILD = build/fuzz
FUZZ_CFLAGS = -std=c11 -D_GNU_SOURCE -g -O1 -march=native -fno-omit-frame-pointer -Iinclude -Isrc \
	-fsanitize=address,undefined,float-cast-overflow -fno-sanitize-recover=undefined,float-cast-overflow \
	-I/usr/include/x86_64-linux-gnu/openblas-pthread -Wno-unused-command-line-argument
FUZZ_SRC = $(wildcard fuzz/fuzz_*.c)
FUZZ_BIN = $(FUZZ_SRC:fuzz/%.c=$(FUZZ_BUILD)/%)
FUZZ_LIB_OBJ = $(LIB_SRC:%.c=$(FUZZ_BUILD)/obj/%.o)
FUZZ_STAMP = build/.deps-fuzz
$(FUZZ_STAMP):
	@scripts/deps.sh fuzz
	@mkdir -p build && touch $@
$(FUZZ_BUILD)/obj/%.o: %.c $(HDRS) $(FUZZ_CPU_STAMP) | $(FUZZ_STAMP)
	@mkdir -p $(dir $@)
	$(say) "  CC(fuzz) $<"
	$(Q)clang $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c $< -o $@
$(FUZZ_BUILD)/libtutor.a: $(FUZZ_LIB_OBJ)
	@rm -f $@
	$(Q)ar rcs $@ $^
$(FUZZ_BUILD)/fuzz_%: fuzz/fuzz_%.c fuzz/fuzz_common.h $(FUZZ_BUILD)/libtutor.a $(FUZZ_CPU_STAMP)
	$(say) "  FUZZ    $@"
	$(Q)clang $(FUZZ_CFLAGS) -fsanitize=fuzzer $< $(FUZZ_BUILD)/libtutor.a $(LIBS) -o $@
fuzz: $(FUZZ_BIN)
	@scripts/fuzz.sh $(FUZZ_SECONDS) $(FUZZ_BIN)

clean:
	rm -rf build
