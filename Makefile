# nspod: `make setup` once (root, Debian 12), then `sudo make test` / `sudo make demo`.
SHELL := /bin/bash
PYTHON ?= /usr/bin/python3
VENV := .venv
PY := $(VENV)/bin/python
APT_PACKAGES := build-essential python3-venv python3-dev libcap-dev libseccomp-dev musl-tools \
	nftables iproute2 procps nginx-light busybox-static curl \
	skopeo umoci docker-registry e2fsprogs
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup apt venv build install install-locked uninstall test unit integration demo bench bench-setup lint rootfs clean \
	vm-test vm-reboot-test vm-destroy vm-up vm-ssh lab-setup lab-box print-apt-packages

setup: apt venv build rootfs

print-apt-packages:
	@echo $(APT_PACKAGES)

apt:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing: $$missing"; \
		$(SUDO) apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $$missing; \
	fi; \
	if echo "$$missing" | grep -qw docker-registry; then \
		echo "docker-registry is for the tests (they start their own on 127.0.0.1): its service stays off"; \
		$(SUDO) systemctl disable --now docker-registry.service >/dev/null 2>&1 || \
		{ $(SUDO) invoke-rc.d docker-registry stop; $(SUDO) update-rc.d docker-registry disable; } \
			>/dev/null 2>&1 || true; \
	fi

# The venv is ready once pip, setuptools and cffi are upgraded in it: the stamp
# is written only then, so a setup that failed half way (a venv made, the
# upgrade not done) is repaired by running `make setup` again.
READY := $(VENV)/.nspod-ready
DEPS := "pyroute2>=0.9,<0.10" "python-prctl>=1.8" "PyYAML>=6"

$(READY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel cffi
	touch $@

venv: $(READY)
	$(PY) -m pip install -q $(DEPS) pytest pytest-timeout "kubernetes-validate>=1.30"

# The development copy: nspod built into .venv (tests run .venv/bin/nspod).
WHEEL := $(VENV)/wheel

build: $(READY)
	@rm -rf $(WHEEL)
	$(PY) -m pip wheel -q --no-build-isolation --no-deps -w $(WHEEL) .
	$(PY) -m pip install -q --no-deps --force-reinstall $(WHEEL)/nspod-*.whl
	@rm -rf build *.egg-info
	cd / && $(CURDIR)/$(PY) $(CURDIR)/tools/fast-entry
	@$(VENV)/bin/nspod --version

# `sudo make install`: the development copy, then the same wheel in a venv
# under $(PREFIX)/lib/nspod with $(PREFIX)/bin/nspod, where root's PATH finds it
# (sudo's secure_path has /usr/local/bin). `sudo make uninstall` removes both.
PREFIX ?= /usr/local
SYSVENV := $(PREFIX)/lib/nspod

install: build
	@mkdir -p $(PREFIX)/lib $(PREFIX)/bin
	flock $(PREFIX)/lib/.nspod-install.lock $(MAKE) --no-print-directory install-locked

install-locked:
	@[ -f $(SYSVENV)/.nspod-ready ] || { \
		$(PYTHON) -m venv $(SYSVENV) && \
		$(SYSVENV)/bin/python -m pip install -q --upgrade pip && \
		touch $(SYSVENV)/.nspod-ready; }
	$(SYSVENV)/bin/python -m pip install -q cffi $(DEPS)
	$(SYSVENV)/bin/python -m pip install -q --no-deps --force-reinstall $(CURDIR)/$(WHEEL)/nspod-*.whl
	cd / && $(SYSVENV)/bin/python $(CURDIR)/tools/fast-entry
	ln -sfn $(SYSVENV)/bin/nspod $(PREFIX)/bin/nspod
	@$(PREFIX)/bin/nspod --version

uninstall:
	@if [ -L $(PREFIX)/bin/nspod ] && [ "$$(readlink $(PREFIX)/bin/nspod)" = $(SYSVENV)/bin/nspod ]; then \
		rm -f $(PREFIX)/bin/nspod; fi
	rm -rf $(SYSVENV)
	@echo "nspod removed from $(PREFIX) (state under /run/nspod is left: nspod gc, or reboot)"

rootfs: tests/rootfs/bin/busybox

tests/rootfs/bin/busybox: tools/mkrootfs
	tools/mkrootfs tests/rootfs

# PYTEST_ARGS: tests to run instead of all of them; NSPOD_SLOW: see test_bench.py
PYTEST_ARGS ?= tests
test:
	NSPOD_SLOW=$(or $(NSPOD_SLOW),1) $(VENV)/bin/pytest $(PYTEST_ARGS)

unit:
	$(VENV)/bin/pytest tests/unit

integration:
	$(VENV)/bin/pytest tests/integration

demo:
	tools/demo

bench:
	$(PY) bench/bench.py

# The tools the benchmark compares with: not needed to run nspod.
bench-setup: setup
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends \
		podman runc catatonit tini
	$(PY) -m pip install -q matplotlib

# The lab: a Debian VM with a stock kernel, systemd and cgroup v2, booted here
# with no download but Debian's packages. DIST=bookworm (Debian 12) or trixie (13).
# `make lab-box` builds the box (debootstrap -> qcow2 + kernel/initrd, and a
# libvirt Vagrant box); `make vm-test` boots it with qemu (KVM, or TCG when
# nested KVM is unusable: NSPOD_LAB_ACCEL), copies this tree in and runs
# `make setup && make test` there. Not part of `make test`: slow under TCG.
DIST ?= bookworm
export DIST

lab-setup:
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends \
		debootstrap qemu-system-x86 qemu-utils e2fsprogs openssh-client rsync

lab-box:
	$(SUDO) tools/lab-box $(DIST)

vm-up:
	tools/lab up

vm-test:
	tools/lab test

vm-ssh:
	tools/lab ssh

# Issue 19's reboot test: `make install` and the boot unit enabled in the lab VM,
# a pod with a --restart always member and a published port, a real reboot
# (systemctl reboot in the VM), and the port answers again with nothing run by hand.
vm-reboot-test:
	tools/lab sync
	tools/lab ssh 'chmod 755 ~ && cd nspod && { sudo make setup >/tmp/setup.log 2>&1 || \
		{ tail -20 /tmp/setup.log; exit 125; }; } && sudo make install && \
		sudo install -m 644 tools/nspod-restart.service /etc/systemd/system/ && \
		sudo systemctl daemon-reload && sudo systemctl enable nspod-restart.service && \
		sudo NSPOD=/usr/local/bin/nspod tools/reboot-check before'
	tools/lab reboot
	tools/lab ssh 'cd nspod && sudo NSPOD=/usr/local/bin/nspod tools/reboot-check after'

vm-destroy:
	tools/lab destroy

# pause and the logger as setup.py builds them, and warnings as errors: for
# CI and developers only, never in a user's build (a newer compiler warns more)
C_CHECK := $(shell command -v musl-gcc || echo cc) -Os -Wall -Wextra -Werror \
	-fstack-protector-strong -c -o /dev/null

lint:
	$(PY) -m pip install -q ruff mypy
	$(VENV)/bin/ruff check nspod tests bench
	$(VENV)/bin/mypy nspod
	$(C_CHECK) csrc/pause.c
	$(C_CHECK) csrc/logger.c
	@mkdir -p build/lint
	cc -O2 -Wall -Wextra -Werror -o build/lint/filters csrc/filters.c -lseccomp
	build/lint/filters pause > build/lint/pause_filter.h
	build/lint/filters logger > build/lint/logger_filter.h
	$(C_CHECK) -DNSPOD_PAUSE_FILTER -Ibuild/lint csrc/pause.c
	$(C_CHECK) -DNSPOD_LOGGER_FILTER -Ibuild/lint csrc/logger.c

clean:
	rm -rf build *.egg-info nspod/_core*.so nspod/_seccomp*.so nspod/pause tests/rootfs
