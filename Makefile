# Makefile — the front door: `make demo`, `make check`, `make install`.
# The build itself is Meson + ninja; these targets wrap it and install the
# Debian packages it needs first (scripts/deps.sh).

BUILD ?= build
ASAN_BUILD ?= build-asan
PREFIX ?= /usr/local
PYTEST = /usr/bin/python3 -m pytest

.PHONY: all build deps demo check asan fuzz install bench clean

all: build

deps:
	@scripts/deps.sh build

$(BUILD)/build.ninja:
	meson setup $(BUILD) --prefix=$(PREFIX)

build: deps $(BUILD)/build.ninja
	ninja -C $(BUILD)

demo: build
	$(BUILD)/aegis run -- echo "hello from aegis"

$(ASAN_BUILD)/build.ninja:
	meson setup $(ASAN_BUILD) -Db_sanitize=address,undefined -Db_lundef=false -Dstatic=false \
		-Dbuildtype=debug

asan: deps $(ASAN_BUILD)/build.ninja
	ninja -C $(ASAN_BUILD)

# libFuzzer targets for the parsers of user input (clang).
FUZZ_BUILD ?= build-fuzz
FUZZ_SRC = src/common/util.c src/common/error.c src/sandbox/env.c src/sandbox/netns.c
FUZZ_CFLAGS = -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
	-D_GNU_SOURCE -Iinclude
fuzz:
	@scripts/deps.sh test
	mkdir -p $(FUZZ_BUILD)
	clang $(FUZZ_CFLAGS) tests/fuzz/fuzz_parse.c $(FUZZ_SRC) -o $(FUZZ_BUILD)/fuzz_parse
	clang $(FUZZ_CFLAGS) tests/fuzz/fuzz_policy.c src/common/policy.c src/common/util.c \
		src/common/error.c src/common/hash.c -ljansson -lcrypto -o $(FUZZ_BUILD)/fuzz_policy
	clang $(FUZZ_CFLAGS) tests/fuzz/fuzz_proxy.c src/sandbox/netrules.c src/common/error.c src/common/relay.c \
		src/common/util.c -ljansson -lpthread -o $(FUZZ_BUILD)/fuzz_proxy
	clang $(FUZZ_CFLAGS) tests/fuzz/fuzz_logrecord.c src/common/logrecord.c -o $(FUZZ_BUILD)/fuzz_logrecord
	clang $(FUZZ_CFLAGS) tests/fuzz/fuzz_netmux.c src/common/error.c -o $(FUZZ_BUILD)/fuzz_netmux
	clang $(FUZZ_CFLAGS) tests/fuzz/fuzz_ctlwire.c src/common/util.c -ljansson -o $(FUZZ_BUILD)/fuzz_ctlwire
	clang $(FUZZ_CFLAGS) tests/fuzz/fuzz_auditrelay.c src/common/audit.c src/common/hash.c src/common/util.c \
		src/common/error.c -ljansson -lcrypto -lpthread -o $(FUZZ_BUILD)/fuzz_auditrelay
	clang $(FUZZ_CFLAGS) tests/fuzz/fuzz_image.c src/common/imageref.c src/common/ocispec.c \
		src/common/error.c -ljansson -o $(FUZZ_BUILD)/fuzz_image
	clang $(FUZZ_CFLAGS) tests/fuzz/fuzz_mcp.c src/cli/mcp_rpc.c src/cli/mcp_schema.c -ljansson \
		-o $(FUZZ_BUILD)/fuzz_mcp

# Every test, against the normal build and again against the ASan+UBSan
# build, plus a bounded run of each fuzz target.
check:
	@scripts/deps.sh test
	$(MAKE) build asan fuzz
	scripts/check.sh $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)

install: build
	meson install -C $(BUILD)

bench: build
	@scripts/deps.sh bench
	bash bench/run.sh
	bash bench/policy.sh
	/usr/bin/python3 bench/network.py
	/usr/bin/python3 bench/daemon.py
	/usr/bin/python3 bench/instances.py
	/usr/bin/python3 bench/expose.py
	/usr/bin/python3 bench/images.py
	/usr/bin/python3 bench/vm.py

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
