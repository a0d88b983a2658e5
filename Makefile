# Makefile — the front door: `make demo`, `make check`, `make install`.
# The build itself is Meson + ninja; these targets wrap it and install the
# Debian packages it needs first (scripts/deps.sh).

BUILD ?= build
ASAN_BUILD ?= build-asan
PREFIX ?= /usr/local
PYTEST = /usr/bin/python3 -m pytest

.PHONY: all build deps demo check unit integration asan install bench clean

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

# Every test, against the normal build and again against the ASan+UBSan build.
check:
	@scripts/deps.sh test
	$(MAKE) build asan
	scripts/check.sh $(BUILD) $(ASAN_BUILD)

install: build
	meson install -C $(BUILD)

bench: build
	@scripts/deps.sh bench
	bash bench/run.sh

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
