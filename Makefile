# pyvirt: two set-up commands on a fresh Debian 12 machine (as root):
#   make demo   install what is missing, then run the main job
#   make test   install what is missing, then run the whole suite
# Re-running skips what is already installed.

VENV      ?= .venv
PY        := $(VENV)/bin/python
STAMP     := $(VENV)/.pyvirt-installed
PYTHON    ?= python3
QEMU_USER := libvirt-qemu
# Debian packages the project runs with, tests against (virsh, python3-libvirt,
# libvirtd 9.0 for reference figures, libvirt-doc for libvirt's own test-driver host files)
# and builds its test guests from.
DEB_PACKAGES := qemu-system-x86 qemu-utils libvirt-clients python3-libvirt \
	libvirt-daemon libvirt-daemon-driver-qemu gcc gcc-multilib make \
	busybox-static linux-image-cloud-amd64 cpio gzip bzip2 xz-utils lzop zstd iproute2 \
	gnutls-bin sasl2-bin libsasl2-modules openssh-server openssh-client netcat-openbsd \
	prometheus-libvirt-exporter virtinst virt-manager xvfb xauth dnsmasq-base nftables iptables lvm2 \
	etcd-server etcd-client libvirt-doc

.PHONY: all deps venv guests test faults soak soak-leases demo bench clean install

all: test

deps:
	@missing=""; \
	for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || missing="$$missing python3-venv"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then echo "missing Debian packages:$$missing (run as root, or apt-get install them)"; exit 1; fi; \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi; \
	if [ "$$(id -u)" = 0 ] && ! getent passwd $(QEMU_USER) >/dev/null; then \
	  echo "creating the system user QEMU runs as: $(QEMU_USER) (group kvm), as libvirt-daemon-system does"; \
	  getent group kvm >/dev/null || groupadd --system kvm; \
	  useradd --system --no-create-home --home-dir /var/lib/libvirt --shell /usr/sbin/nologin \
	    --gid kvm --comment "Libvirt Qemu" $(QEMU_USER); \
	fi; \
	if [ "$$(id -u)" = 0 ] && ! getent group $(QEMU_USER) >/dev/null; then \
	  echo "creating the group $(QEMU_USER), as libvirt-daemon-system does (libvirtd 9.0 resolves it at start)"; \
	  groupadd --system $(QEMU_USER) && usermod -a -G $(QEMU_USER) $(QEMU_USER); \
	fi

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]' --config-settings editable_mode=compat
	touch $@

guests: deps
	bash guests/build.sh

# Debian's libvirtd.conf and qemu.conf for tests/test_check_config.py, unpacked from
# the package rather than installed (its postinst creates users and services).
LIBVIRT_CONF := build/libvirt-conf/etc/libvirt/libvirtd.conf

$(LIBVIRT_CONF):
	rm -rf build/libvirt-deb && mkdir -p build/libvirt-deb
	cd build/libvirt-deb && { apt-get download -q libvirt-daemon-system 2>/dev/null || \
	  { apt-get update -q && apt-get download -q libvirt-daemon-system; }; } && \
	  dpkg-deb -x libvirt-daemon-system_*.deb ../libvirt-conf || \
	  echo "libvirt-daemon-system not fetched: tests/test_check_config.py will skip"

# Two workers (most tests wait on guests and daemons, not on the CPU); each test file runs
# whole on one worker, so its module fixtures are made once, and the tests that run a
# libvirtd all on one (tests/conftest.py groups them).  TEST_JOBS=0 runs serially.
TEST_JOBS ?= 2

test: deps venv guests $(LIBVIRT_CONF)
	$(PY) -m pytest -q --durations=25 $(if $(filter 0,$(TEST_JOBS)),,-n $(TEST_JOBS) --dist loadgroup)

# The whole fault-injection matrix of tests/faults (flow × fault × phase; `make test`
# runs a bounded set of it), with its result table at the end.
faults: deps venv guests
	PYVIRT_FAULTS=all $(PY) -m pytest -q tests/faults

demo: deps venv guests
	$(PY) scripts/demo.py

# The chaos soak at length: 1,000 random operations from 4 clients on two hosts, faults
# included (tests/test_soak.py; `make test` runs 60).  PYVIRT_SOAK_SEED=N replays a seed.
SOAK_OPS ?= 1000

soak: deps venv guests
	PYVIRT_SOAK_OPS=$${PYVIRT_SOAK_OPS:-$(SOAK_OPS)} $(PY) -m pytest -q -s -p no:cacheprovider tests/test_soak.py

# The split-brain soak on etcd leases at length: two hosts race to start one guest on one
# disk 200 times, random kill -9 of either daemon (tests/test_locking_etcd_soak.py; `make test`
# runs 20 rounds).  PYVIRT_LEASE_SOAK_SEED=N replays a seed.
LEASE_SOAK_ROUNDS ?= 200

soak-leases: deps venv guests
	PYVIRT_LEASE_SOAK_ROUNDS=$${PYVIRT_LEASE_SOAK_ROUNDS:-$(LEASE_SOAK_ROUNDS)} $(PY) -m pytest -q -s -p no:cacheprovider tests/test_locking_etcd_soak.py

# Every benchmark, each beside libvirt 9.0 in the same run (several minutes each;
# bench/save.py with bzip2 and xz takes the longest).
BENCHES := lifecycle rpc migrate tunnel save limits unprivileged stats tls cli storage locking converge crossmigrate

bench: deps venv guests
	for b in $(BENCHES); do $(PY) bench/$$b.py || exit 1; done

# Install for operators: the package (pip, into the system's Python or PYTHON's), the
# systemd unit (Type=notify), bash completion and the man pages.  DESTDIR for packaging.
PREFIX     ?= /usr/local
BINDIR     ?= $(PREFIX)/bin
SYSCONFDIR ?= /etc
UNITDIR    ?= /etc/systemd/system
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
MANDIR     ?= $(PREFIX)/share/man

install:
	$(PYTHON) -m pip install -q --no-deps --ignore-installed --root=$(or $(DESTDIR),/) --prefix=$(PREFIX) .
	install -d $(DESTDIR)$(UNITDIR) $(DESTDIR)$(BASHCOMPDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man8 \
	  $(DESTDIR)$(SYSCONFDIR)/pyvirt
	sed -e 's|@BINDIR@|$(BINDIR)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' share/systemd/pyvirtd.service.in \
	  > $(DESTDIR)$(UNITDIR)/pyvirtd.service
	install -m 644 share/bash-completion/completions/pyvirt $(DESTDIR)$(BASHCOMPDIR)/pyvirt
	install -m 644 share/man/pyvirt.1 $(DESTDIR)$(MANDIR)/man1/pyvirt.1
	install -m 644 share/man/pyvirtd.8 $(DESTDIR)$(MANDIR)/man8/pyvirtd.8
	test -e $(DESTDIR)$(SYSCONFDIR)/pyvirt/pyvirtd.conf || : > $(DESTDIR)$(SYSCONFDIR)/pyvirt/pyvirtd.conf
	@echo "installed; then: systemctl daemon-reload && systemctl enable --now pyvirtd"

clean:
	rm -rf build $(VENV)
