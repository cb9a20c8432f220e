# nspod: `make setup` once (root, Debian 12), then `sudo make test` / `sudo make demo`.
SHELL := /bin/bash
PYTHON ?= /usr/bin/python3
VENV := .venv
PY := $(VENV)/bin/python
APT_PACKAGES := build-essential python3-venv python3-dev libcap-dev libseccomp-dev musl-tools \
	nftables iproute2 procps nginx-light busybox-static curl \
	skopeo umoci docker-registry
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup apt venv install test unit integration demo bench bench-setup lint rootfs clean \
	vm-test vm-reboot-test vm-destroy lab-setup

setup: apt venv install rootfs

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

# A venv whose upgrade failed (no network, say) is removed: the next run makes it again.
$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel cffi || { rm -rf $(VENV); exit 1; }

venv: $(PY)
	$(PY) -m pip install -q "pyroute2>=0.9,<0.10" "python-prctl>=1.8" "PyYAML>=6" pytest pytest-timeout \
		"kubernetes-validate>=1.30"

install: $(PY)
	$(PY) -m pip install -q --no-build-isolation --no-deps --force-reinstall .
	@rm -rf build *.egg-info
	cd / && $(CURDIR)/$(PY) $(CURDIR)/tools/fast-entry
	@$(VENV)/bin/nspod --version

rootfs: tests/rootfs/bin/busybox

tests/rootfs/bin/busybox: tools/mkrootfs
	tools/mkrootfs tests/rootfs

test:
	$(VENV)/bin/pytest tests

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

# The Vagrant lab: a Debian 12 VM with a stock kernel and cgroup v2.
lab-setup:
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends \
		vagrant vagrant-libvirt

# The first `vagrant up` boots, copies the tree and provisions (make setup); later
# runs copy the current tree again (rsync) and re-run make setup, which is cheap.
vm-test:
	vagrant up
	vagrant rsync
	vagrant ssh -c 'cd ~/nspod && sudo make setup && sudo make test'

# Issue 19's reboot test: a pod with a --restart always member and a published
# port, the boot unit enabled, a real reboot (vagrant reload), the port answers.
vm-reboot-test:
	vagrant up
	vagrant rsync
	vagrant ssh -c 'cd ~/nspod && sudo make setup && \
		sed "s|/usr/local/bin/nspod|$$HOME/nspod/.venv/bin/nspod|" tools/nspod-restart.service | \
		sudo tee /etc/systemd/system/nspod-restart.service >/dev/null && \
		sudo systemctl daemon-reload && sudo systemctl enable nspod-restart.service && \
		sudo tools/reboot-check before'
	vagrant reload
	vagrant ssh -c 'cd ~/nspod && sudo tools/reboot-check after'

vm-destroy:
	vagrant destroy -f

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
	cc -O2 -Wall -Wextra -Werror -o build/lint/pause_filter csrc/pause_filter.c -lseccomp
	build/lint/pause_filter > build/lint/pause_filter.h
	$(C_CHECK) -DNSPOD_PAUSE_FILTER -Ibuild/lint csrc/pause.c

clean:
	rm -rf build *.egg-info nspod/_core*.so nspod/_seccomp*.so nspod/pause tests/rootfs
