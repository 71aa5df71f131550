# Kastro: the two commands are `make demo` and `make test`; both install what they need.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV        ?= .venv
PYTHON      ?= python3
STAMPS      := .kastro/stamps
APT_PACKAGES := podman runc debootstrap uidmap nftables iproute2 openssh-client \
                prometheus prometheus-alertmanager graphviz tcpdump ethtool nmap util-linux \
                wireguard-tools qrencode easy-rsa openvpn iputils-ping chromium chromium-driver \
                rsyslog rsyslog-gnutls dnsmasq-base memcached snmpd snmp unbound openssh-server \
                rsync samba smbclient chrony isc-dhcp-client masscan hping3 \
                qemu-system-x86 qemu-utils e2fsprogs aide clamav clamav-testfiles tcpreplay \
                curl python3-pyftpdlib borgbackup borgmatic postgresql
SCENARIO    ?= base
INVENTORY   ?= inventory/example
LAB         ?= kastro

export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export CONTAINERS_CONF := $(CURDIR)/kastro/lab/containers.conf
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
# Molecule writes its own ansible.cfg; these carry the model's vars plugin into it (see ansible.cfg).
export ANSIBLE_VARS_PLUGINS := $(CURDIR)/plugins/vars
export ANSIBLE_VARS_ENABLED := kastro_model
export ANSIBLE_LIBRARY := $(CURDIR)/plugins/modules
export ANSIBLE_ACTION_PLUGINS := $(CURDIR)/plugins/action
export ANSIBLE_FILTER_PLUGINS := $(CURDIR)/plugins/filter
export ANSIBLE_STRATEGY_PLUGINS := $(CURDIR)/plugins/strategy
export ANSIBLE_FORCE_COLOR := 0
export PY_COLORS := 0

.PHONY: help deps apt venv image lint unit molecule test demo demo-down bench messages clean

help:
	@echo "make demo       build test hosts, run playbooks/site.yml on them, attack a sensor, show the monitor's and Suricata's alerts, block the attacker, draft the NIS2 early warning"
	@echo "make demo-down  remove the demo hosts"
	@echo "make test       lint + unit tests + Molecule scenarios (everything CI runs)"
	@echo "make molecule SCENARIO=base   one Molecule scenario"
	@echo "make lint       ansible-lint (production), yamllint, ruff, mypy"
	@echo "make bench      the monitor against Suricata, Suricata's rule sets on 1 and 2 cores (prints numbers; not a test)"
	@echo "make messages   merge new admin-facing messages into the Greek catalog (kastro/locale/el): translate the empty ones"

$(STAMPS):
	@mkdir -p $@

# Debian packages: re-run only when the list above changes.
$(STAMPS)/apt: Makefile | $(STAMPS)
	@echo "==> εγκατάσταση πακέτων Debian / installing Debian packages: $(APT_PACKAGES)"
	@if [ "$$(id -u)" != 0 ]; then echo "run as root (apt-get, podman, network namespaces)"; exit 1; fi
	DEBIAN_FRONTEND=noninteractive apt-get update -q
	@# The daemons among them (sshd, smbd, unbound, chronyd, snmpd, memcached, freshclam) are for tests in
	@# network namespaces only: never started on this machine by their installation.
	@if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; \
	  chmod 755 /usr/sbin/policy-rc.d; touch $(STAMPS)/policy-rc.d; fi
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(APT_PACKAGES)
	@# Suricata 7 is in bookworm-backports only (same mirror as bookworm); tests run it in network
	@# namespaces, the lab's sensors install it themselves (role suricata).
	printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
	  "$$($(PYTHON) -c 'import sys; sys.path.insert(0, "."); from kastro.lab.image import debian_mirror; print(debian_mirror())')" \
	  > /etc/apt/sources.list.d/kastro-bookworm-backports.sources
	DEBIAN_FRONTEND=noninteractive apt-get update -q
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends -t bookworm-backports suricata
	@if [ -e $(STAMPS)/policy-rc.d ]; then rm -f /usr/sbin/policy-rc.d $(STAMPS)/policy-rc.d; fi
	@# freshclam would fetch signatures from the internet at the next boot: never on this machine.
	@# Suricata would capture on this machine's own interface at the next boot: tests start their own.
	@if command -v systemctl >/dev/null; then systemctl mask clamav-freshclam.service suricata.service >/dev/null 2>&1 || true; fi
	@touch $@

# Python virtualenv: re-run when the dependencies change.
$(VENV)/.installed: pyproject.toml constraints.txt
	@echo "==> δημιουργία του $(VENV) και εγκατάσταση του kastro / creating $(VENV) and installing kastro with its dev dependencies"
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -U pip
	$(VENV)/bin/pip install -q -c constraints.txt -e '.[dev]'
	@touch $@

apt: $(STAMPS)/apt
venv: $(VENV)/.installed
deps: apt venv

image: deps
	kastro lab image

# The messages of babel.cfg's modules into the Greek catalog: new ones arrive empty, and
# tests/unit/test_i18n.py fails until each has its Greek.
messages: venv
	@mkdir -p .kastro
	$(VENV)/bin/pybabel --quiet extract -F babel.cfg -k t -k _ -k N_ -k _inventory_argument:2 \
	  --no-default-keywords --no-location --sort-output -o .kastro/kastro.pot .
	$(VENV)/bin/pybabel --quiet update -i .kastro/kastro.pot -d kastro/locale -D kastro -l el --ignore-obsolete --width 96

lint: venv
	yamllint -s .
	ansible-lint --profile production --offline
	ruff check .
	ruff format --check .
	mypy

unit: venv
	pytest -m "not molecule and not lab and not vm"

molecule: deps image
	molecule test -s $(SCENARIO) < /dev/null

# Everything, in one pytest run so its closing summary counts every test, in two workers (the
# podman hosts beside the rest: tests/conftest.py); then the line coverage of kastro/ and
# monitors/ measured in those workers.
test: deps image lint
	@mkdir -p .kastro
	pytest -v --durations=40 -n 2 --cov --cov-report= < /dev/null
	coverage report

demo: deps image
	@set -e; SECONDS=0; mkdir -p .kastro; \
	echo "==> έλεγχος και σχέδιο / validating and planning $(INVENTORY)"; \
	kastro validate $(INVENTORY); \
	kastro plan -i $(INVENTORY) --check; \
	kastro show policy -i $(INVENTORY); kastro show matrix -i $(INVENTORY); \
	kastro show graph -i $(INVENTORY) .kastro/topology.svg; \
	echo "==> εκκίνηση των υπολογιστών του εργαστηρίου / starting the lab hosts of $(INVENTORY)"; \
	kastro lab up $(INVENTORY) --lab $(LAB); \
	echo "==> εκτέλεση / running playbooks/site.yml"; \
	ansible-playbook -i $(INVENTORY) -i .kastro/lab/$(LAB)/inventory.yml playbooks/site.yml; \
	echo "==> ο διακομιστής αλληλογραφίας του εργαστηρίου / the lab's mail server (exim4 on the monitoring host: the SOC's mailbox)"; \
	ansible-playbook -i $(INVENTORY) -i .kastro/lab/$(LAB)/inventory.yml molecule/_lab/mail.yml; \
	echo "==> δημοσιευμένες υπηρεσίες: τι φτάνει το διαδίκτυο του εργαστηρίου / published services: what the lab's internet hosts reach"; \
	ansible-playbook -i $(INVENTORY) -i .kastro/lab/$(LAB)/inventory.yml molecule/_lab/website.yml; \
	kastro lab reach $(INVENTORY) --lab $(LAB); \
	echo "==> δύο πάροχοι: ο πρώτος σωπαίνει και επιστρέφει / two ISPs: the first goes silent, then comes back"; \
	kastro lab failover $(INVENTORY) --lab $(LAB); \
	echo "==> τι εγκαταστάθηκε πού / what is deployed where"; \
	kastro lab report --lab $(LAB); \
	echo "==> βαθμοί θωράκισης ανά υπολογιστή / hardening scores per host (OpenSCAP ANSSI-BP-028 enhanced, Lynis)"; \
	kastro lab scores --lab $(LAB) || echo "(scores not measured: see the message above; the demo goes on)"; \
	echo "==> αντίγραφα ασφαλείας: το πρώτο αντίγραφο και άσκηση επαναφοράς, και η κατάσταση του ελεγκτή / backups: the first backup and restore drill, and the controller's own state"; \
	ansible-playbook -i $(INVENTORY) -i .kastro/lab/$(LAB)/inventory.yml molecule/_lab/backup-demo.yml; \
	kastro backup controller -i $(INVENTORY) -i .kastro/lab/$(LAB)/inventory.yml; \
	kastro backup controller --drill -i $(INVENTORY) -i .kastro/lab/$(LAB)/inventory.yml; \
	kastro backup status -i $(INVENTORY) -i .kastro/lab/$(LAB)/inventory.yml; \
	echo "==> ο επιτιθέμενος σαρώνει έναν αισθητήρα: ανίχνευση, ειδοποίηση, e-mail, αποκλεισμός, αναφορά NIS2 / the attacker scans a sensor: detected, alerted, e-mailed, blocked (kastro respond), reported (kastro incident: the NIS2 early warning drafted)"; \
	kastro lab attack $(INVENTORY) --lab $(LAB) --contain --report; \
	echo "==> το demo τελείωσε σε / demo finished in $${SECONDS}s (εικόνα / topology picture: .kastro/topology.svg; make demo-down removes the hosts)"

# Not part of `make test`: benchmarks print numbers, they do not pass or fail.
bench: deps
	python benchmarks/monitor_bench.py --live
	python benchmarks/suricata_bench.py

demo-down: venv
	kastro lab down --lab $(LAB)

clean: demo-down
	rm -rf .kastro .pytest_cache .mypy_cache .ruff_cache
