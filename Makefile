# Keel — the only entry points a user needs.
#   make run     install what is missing, build, boot Keel in QEMU (serial on this terminal)
#   make test    every test: host unit tests and QEMU scenarios
#   make bench   instruction-count benchmarks under QEMU icount (docs/PERFORMANCE.md)
#   make soak    the QEMU tests 10 times in a row beside two CPU hogs (SOAK_RUNS=, SOAK_HOGS=)
#   make fuzz    every cargo-fuzz target of the parsers for a fixed number of inputs, then
#                1M random system calls in QEMU (ktest sysfuzz), then the leak loops: 1,000 VM
#                and 10,000 process cycles leave the kernel census as it was (ktest leaks:1000),
#                then a hostile guest makes 1M random MMIO/HVC/SMC/sysreg accesses in a VM
#   make gdb     QEMU halted with its gdb stub, gdb-multiarch attached with kernel symbols
#   make deps    only install the toolchain (Debian packages; sudo when not root)
#
# QEMU settings are variables: make run SMP=2 MEM=512M APPEND="loglevel=debug" QEMU_EXTRA="..."

SHELL := /bin/bash

# The Debian toolchain (Rust 1.96 with library sources); the rustup one on PATH has no aarch64 std.
CARGO := /usr/bin/cargo
export RUSTC := /usr/bin/rustc
export RUSTC_BOOTSTRAP := 1
export RUSTDOC := /usr/bin/rustdoc
export CARGO_TERM_COLOR ?= never

KERNEL_TARGET := aarch64-unknown-none-softfloat
BUILD_STD := -Zbuild-std=core,alloc -Zbuild-std-features=compiler-builtins-mem
PROFILE ?= release
KERNEL_ELF := target/$(KERNEL_TARGET)/$(PROFILE)/keel
IMAGE := target/keel.Image

# User programs (EL0) and the initrd that carries them.
USER_TARGET := aarch64-unknown-none
USER_BIN_DIR := target/$(USER_TARGET)/user
PROGRAMS := init namesrv console blk fs shell ktest vmm vdev netsw nic resmgr
INITRD := target/initrd.cpio
MANIFEST := services/init/manifest
INITRD_EXTRA ?=

# Guests carried in the initrd: Debian's arm64 Linux (scripts/mkguest.sh, cached in cache/guest;
# `vm run linux`, and `vm run linux-perf` with Debian's perf in its initramfs) and the tiny test guests (tests/guests; /guest/test.Image).
GUEST_DIR := cache/guest
LINUX_GUEST = $(if $(wildcard $(GUEST_DIR)/Image),$(GUEST_DIR)/Image:guest/linux/Image \
	$(GUEST_DIR)/initrd.cpio:guest/linux/initrd.cpio $(GUEST_DIR)/linux.conf:etc/vm/linux.conf \
	guests/linux/check.conf:etc/vm/linux-check.conf guests/linux/quiet-check.conf:etc/vm/linux-quiet-check.conf) \
	$(if $(wildcard $(GUEST_DIR)/initrd-perf.cpio),$(GUEST_DIR)/initrd-perf.cpio:guest/linux/initrd-perf.cpio \
	$(GUEST_DIR)/linux-perf.conf:etc/vm/linux-perf.conf guests/linux/perf-check.conf:etc/vm/linux-perf-check.conf)
TEST_GUEST := target/guests/test.Image

QEMU ?= qemu-system-aarch64
MACHINE ?= virt,virtualization=on,gic-version=3,iommu=smmuv3
CPU ?= max
SMP ?= 4
MEM ?= 2G
APPEND ?=
QEMU_EXTRA ?=
# The disk `make run` attaches (virtio-blk; Keel mounts its ext2 on /disk). Made with mke2fs
# when missing; DISK= (empty) boots without one.
DISK ?= cache/disk.img
DISK_SIZE ?= 64M
# (Make's $(if) splits at commas, so the QEMU options' commas come from $(comma).)
comma := ,
DISK_ARGS = $(if $(DISK),-drive file=$(DISK)$(comma)format=raw$(comma)if=none$(comma)id=disk0$(comma)cache=writeback \
	-device virtio-blk-device$(comma)drive=disk0)
# The network device `make run` attaches (virtio-net, the uplink of Keel's switch sw0): QEMU's
# user networking with restrict=on (DHCP from QEMU at 10.0.2.2; nothing leaves QEMU). NET=
# (empty) boots without one.
NET ?= user
NET_ARGS = $(if $(NET),-netdev $(NET)$(comma)id=net0$(if $(filter user,$(NET)),$(comma)restrict=on) \
	-device virtio-net-device$(comma)netdev=net0)
QEMU_ARGS = -machine $(MACHINE) -global arm-smmuv3.stage=2 -cpu $(CPU) -smp $(SMP) -m $(MEM) \
	-nographic -kernel $(IMAGE) -initrd $(INITRD) -append "$(APPEND)" $(DISK_ARGS) $(NET_ARGS) $(QEMU_EXTRA)

DEPS_STAMP := target/.deps-ok

PHONY_GUESTS := guest test-guest
.PHONY: $(PHONY_GUESTS) all run test test-host test-qemu soak fuzz bench bench-quick bench-compare profile gdb deps build image initrd clean

all: image initrd

deps:
	@bash scripts/deps.sh

# Re-check the toolchain only when the install script changes.
$(DEPS_STAMP): scripts/deps.sh
	@bash scripts/deps.sh
	@mkdir -p target && touch $@

build image: $(IMAGE)

$(IMAGE): $(DEPS_STAMP) FORCE
	$(CARGO) build -p keel-kernel --bin keel --target $(KERNEL_TARGET) $(BUILD_STD) \
		$(if $(filter release,$(PROFILE)),--release)
	python3 scripts/mkimage.py $(KERNEL_ELF) $(IMAGE)

initrd: $(INITRD)

$(INITRD): $(DEPS_STAMP) guest test-guest FORCE
	$(CARGO) build $(foreach p,$(PROGRAMS),-p keel-$(p)) --target $(USER_TARGET) $(BUILD_STD) --profile user
	python3 scripts/mkinitrd.py $(INITRD) --bin $(USER_BIN_DIR) $(PROGRAMS) \
		$(if $(wildcard $(MANIFEST)),--manifest $(MANIFEST)) \
		--extra $(TEST_GUEST):guest/test.Image $(LINUX_GUEST) $(INITRD_EXTRA)

# The Linux guest: fetched and built once, then cached (the script checks its own freshness).
# Without network access the build goes on without it (`vm run linux` then says so).
guest: $(DEPS_STAMP)
	@bash scripts/mkguest.sh $(GUEST_DIR) || echo "make: warning: no Linux guest (scripts/mkguest.sh failed); vm run linux will not work"

# The tiny test guests (bare-metal Rust, EL1), one Image with a scenario per guest=<name>.
test-guest: $(DEPS_STAMP)
	$(CARGO) build -p keel-test-guest --bin guest --release --target $(KERNEL_TARGET) $(BUILD_STD)
	@mkdir -p $(dir $(TEST_GUEST))
	python3 scripts/mkimage.py target/$(KERNEL_TARGET)/release/guest $(TEST_GUEST)

FORCE:

run: $(IMAGE) $(INITRD) $(DISK)
	$(QEMU) $(QEMU_ARGS)

# A fresh ext2 disk image (only when the file does not exist: it keeps what Keel wrote).
ifneq ($(DISK),)
$(DISK): | $(DEPS_STAMP)
	@mkdir -p $(dir $(DISK))
	/usr/sbin/mke2fs -q -t ext2 -L keel $(DISK) $(DISK_SIZE)
endif

# Both also type-check the cargo-fuzz targets first (fuzz/ is outside the workspace; scripts/fuzz.sh
# --check needs no cargo-fuzz): every test runs, and either failing fails the rule.
test: $(IMAGE) $(INITRD)
	status=0; \
	bash scripts/fuzz.sh --check || status=1; \
	KEEL_IMAGE=$(abspath $(IMAGE)) KEEL_INITRD=$(abspath $(INITRD)) QEMU=$(QEMU) $(CARGO) test --workspace --no-fail-fast || status=1; \
	exit $$status

test-host: $(DEPS_STAMP)
	status=0; \
	bash scripts/fuzz.sh --check || status=1; \
	$(CARGO) test --workspace --exclude keel-tests || status=1; \
	exit $$status

test-qemu: $(IMAGE) $(INITRD)
	KEEL_IMAGE=$(abspath $(IMAGE)) KEEL_INITRD=$(abspath $(INITRD)) QEMU=$(QEMU) $(CARGO) test -p keel-tests --no-fail-fast

# The QEMU tests under load, as on CI's busy 2-core machine: stops at the first failing round.
SOAK_RUNS ?= 10
SOAK_HOGS ?= 2
soak: $(IMAGE) $(INITRD)
	KEEL_IMAGE=$(abspath $(IMAGE)) KEEL_INITRD=$(abspath $(INITRD)) QEMU=$(QEMU) CARGO=$(CARGO) \
		bash scripts/soak.sh --runs $(SOAK_RUNS) --hogs $(SOAK_HOGS)

# Fuzzing (scripts/fuzz.sh): the parsers of outside input under cargo-fuzz.
FUZZ_ARGS ?=
fuzz: $(DEPS_STAMP) $(IMAGE) $(INITRD)
	KEEL_IMAGE=$(abspath $(IMAGE)) KEEL_INITRD=$(abspath $(INITRD)) QEMU=$(QEMU) bash scripts/fuzz.sh $(FUZZ_ARGS)

# Benchmarks (docs/PERFORMANCE.md): the table on the terminal, the figures in target/bench/*.json.
# `make test` runs the quick one through tests/tests/bench.rs.
bench: $(IMAGE) $(INITRD)
	python3 scripts/bench.py --image $(IMAGE) --initrd $(INITRD) --qemu $(QEMU)

bench-quick: $(IMAGE) $(INITRD)
	python3 scripts/bench.py --quick --image $(IMAGE) --initrd $(INITRD) --qemu $(QEMU)

# Where a benchmark's instructions go, per kernel function (docs/PERFORMANCE.md "Profiling"):
# make profile BENCH=ipc_call_reply_same_cpu [OPS=200]. Builds with KEEL_PROFILE=$(BENCH), which
# the next plain build undoes.
BENCH ?= ipc_call_reply_same_cpu
OPS ?= 0
profile: $(DEPS_STAMP)
	KEEL_PROFILE=$(BENCH) CARGO_PROFILE_USER_STRIP=false $(MAKE) --no-print-directory $(IMAGE) $(INITRD)
	python3 scripts/profile.py --bench $(BENCH) --ops $(OPS) --qemu $(QEMU) $(if $(USER_BINS),--user $(USER_BINS)) $(if $(TOP),--top $(TOP))

# make bench-compare [A=old.json] [B=new.json]: two results files from `make bench`; by default
# the committed baseline (bench/baseline.json) against the last `make bench`.
A ?= bench/baseline.json
B ?= target/bench/results.json
bench-compare:
	python3 scripts/bench.py compare $(A) $(B)

gdb: $(IMAGE) $(INITRD) $(DISK)
	$(QEMU) $(QEMU_ARGS) -S -gdb tcp::1234 & qemu_pid=$$!; \
	gdb-multiarch -q $(KERNEL_ELF) -ex 'set architecture aarch64' -ex 'target remote :1234'; \
	kill $$qemu_pid 2>/dev/null || true

clean:
	$(CARGO) clean
