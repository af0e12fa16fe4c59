# vgrid: `make run` sets up everything and deploys the example on this
# machine; `make test` runs every test. See README.md.

GO        ?= go
BIN       := $(CURDIR)/bin
VGRID     := $(BIN)/vgrid
GUEST     := $(BIN)/vgrid-guest-agent
DATA_DIR  ?= $(shell if [ "$$(id -u)" = 0 ]; then echo /var/lib/vgrid; else echo $$HOME/.local/share/vgrid; fi)
IMAGE_DIR := $(DATA_DIR)/images/vgrid-guest
EXAMPLE   ?= examples/workspace.yaml
CLUSTER   ?= examples/cluster.yaml
VOLUME_WS ?= examples/volume.yaml
GRID      ?= examples/grid.yaml
VERSION   := $(shell git describe --always --dirty 2>/dev/null || echo dev)
SUDO      := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Debian packages the tests and the runtime need.
PKGS := qemu-system-x86 qemu-system-common qemu-utils linux-image-cloud-amd64 busybox-static genisoimage e2fsprogs cpio lz4 iproute2 ca-certificates etcd-server etcd-client chromium chromium-driver

export PATH := $(PATH):/usr/local/go/bin
export GOFLAGS ?= -buildvcs=false

.PHONY: all deps build image run stop test test-cloud test-short vet fmt bench fuzz clean

all: build

## deps: install the Debian packages that are missing
deps:
	@missing=""; for p in $(PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		$(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $$missing; \
	else echo "all packages present"; fi

## build: the vgrid binary and the static guest agent
build:
	@mkdir -p $(BIN)
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(VGRID) ./cmd/vgrid
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w" -o $(GUEST) ./cmd/vgrid-guest-agent

## image: build the guest image into the data directory (reproducible)
image: build
	$(VGRID) image build --agent $(GUEST) --out $(IMAGE_DIR)

## run: install, build, start vgrid up, deploy the example and show it
run: deps image
	@if [ -f $(DATA_DIR)/vgrid.pid ] && kill -0 $$(cat $(DATA_DIR)/vgrid.pid) 2>/dev/null; then \
		echo "vgrid up already running (pid $$(cat $(DATA_DIR)/vgrid.pid)); restarting it on the new build"; \
		$(VGRID) down --data-dir $(DATA_DIR); fi
	$(VGRID) up --detach --data-dir $(DATA_DIR)
	@name=$$(sed -n 's/^name: *\([a-z0-9-]*\).*/\1/p' $(EXAMPLE) | head -1); \
	if $(VGRID) workspace get $$name >/dev/null 2>&1; then \
		echo "workspace $$name exists already; starting it if it is stopped"; \
		$(VGRID) workspace start $$name; \
	else $(VGRID) workspace create -f $(EXAMPLE) >/dev/null; fi; \
	echo; $(VGRID) workspace get $$name; echo; \
	echo "The guest's console:"; $(VGRID) workspace logs $$name | tail -n 5; echo; \
	echo "Look at it:  $(VGRID) workspace list | get $$name [-o json] | logs $$name | events $$name"; \
	echo "Stop it:     $(VGRID) workspace stop $$name   (delete: $(VGRID) workspace delete $$name)"; \
	echo "Resize it while it runs:  $(VGRID) workspace resize $$name --cpu 1 --disk 2Gi"; \
	echo "Move it live (a grid of hosts: vgrid up --hosts 3):  $(VGRID) workspace migrate $$name"; echo
	@cl=$$(sed -n 's/^name: *\([a-z0-9-]*\).*/\1/p' $(CLUSTER) | head -1); \
	if $(VGRID) cluster get $$cl >/dev/null 2>&1; then \
		echo "cluster $$cl exists already; starting it if it is stopped"; \
		$(VGRID) cluster start $$cl >/dev/null; \
	else $(VGRID) cluster create -f $(CLUSTER) --wait=false >/dev/null; fi; \
	$(VGRID) cluster get $$cl; \
	echo "Waiting for every member to run with its roster..."; \
	i=0; until $(VGRID) cluster get $$cl | head -1 | grep -q ': Ready,'; do \
		i=$$((i+1)); if [ $$i -gt 300 ]; then echo "cluster $$cl is not Ready after 5 minutes:"; $(VGRID) cluster get $$cl; exit 1; fi; sleep 1; done; \
	$(VGRID) cluster get $$cl; echo; \
	echo "From $$cl-head-0, every other member by name (its /etc/hosts is the cluster's roster):"; \
	for m in $$($(VGRID) cluster get $$cl | awk 'NR > 2 && $$1 != "'$$cl-head-0'" {print $$1}'); do \
		$(VGRID) workspace exec $$cl-head-0 -- /bin/sh -c "ping -c 1 -W 5 $$m | sed -n 2p | sed 's/^/  $$cl-head-0 -> $$m: /'"; done; echo; \
	echo "Run in a member:  $(VGRID) workspace exec $$cl-worker-0 -- cat /etc/hosts"; \
	echo "Scale it:         $(VGRID) cluster scale $$cl worker=3   (stop|start|delete: $(VGRID) cluster stop $$cl)"; \
	echo "Stop vgrid:       $(VGRID) down --data-dir $(DATA_DIR)   (workspaces keep running)"; echo
	@$(VGRID) volume get notes >/dev/null 2>&1 || $(VGRID) volume create notes --size 64Mi; \
	ws=$$(sed -n 's/^name: *\([a-z0-9-]*\).*/\1/p' $(VOLUME_WS) | head -1); \
	if $(VGRID) workspace get $$ws >/dev/null 2>&1; then $(VGRID) workspace start $$ws >/dev/null 2>&1 || true; \
	else $(VGRID) workspace create -f $(VOLUME_WS) >/dev/null; fi; \
	echo "Waiting for $$ws to mount volume notes..."; \
	i=0; until $(VGRID) workspace exec $$ws -- /bin/sh -c 'grep -q " /notes " /proc/mounts' >/dev/null 2>&1; do \
		i=$$((i+1)); if [ $$i -gt 180 ]; then echo "$$ws has not mounted its volume after 3 minutes:"; $(VGRID) workspace get $$ws; exit 1; fi; sleep 1; done; \
	$(VGRID) workspace exec $$ws -- /bin/sh -c 'date >> /notes/log; echo "  /notes/log on the volume (kept when $$(hostname) is deleted):"; sed "s/^/    /" /notes/log; df -h /notes | tail -1 | sed "s/^/  /"'; \
	echo "Volumes:          $(VGRID) volume list   (snapshot: $(VGRID) volume snapshot notes --to notes-copy)"; \
	echo "Save a workspace: $(VGRID) workspace save $$ws --image $$ws-v2   (then boot it: image: $$ws-v2)"; echo
	@echo "A virtual grid ($(GRID): two clusters sharing a network and a dataset volume), planned against"; \
	echo "the live calendar; nothing is booked:  $(VGRID) plan -f $(GRID)"; \
	$(VGRID) plan -f $(GRID) --width 80 || true; echo; \
	echo "Carry out that plan:  $(VGRID) grid apply -f $(GRID) --plan <its ID>   (bigger: --set workers=8)"; echo
	@$(VGRID) dashboard

## stop: stop the example workspace and vgrid up
stop:
	-$(VGRID) workspace delete $$(sed -n 's/^name: *\([a-z0-9-]*\).*/\1/p' $(EXAMPLE) | head -1)
	-$(VGRID) cluster delete $$(sed -n 's/^name: *\([a-z0-9-]*\).*/\1/p' $(CLUSTER) | head -1)
	-$(VGRID) workspace delete $$(sed -n 's/^name: *\([a-z0-9-]*\).*/\1/p' $(VOLUME_WS) | head -1)
	-$(VGRID) down --data-dir $(DATA_DIR)

vet:
	$(GO) vet ./...

fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

## test: vet, gofmt, every test (real QEMU guests under TCG here), race detector on the concurrent packages
test: deps vet fmt
	$(GO) test -count=1 -timeout 28m $$($(GO) list ./... | grep -v /test/fault)
	@# The fault suites (a killed control plane; replicas on an etcd cluster)
	@# load the machine: run apart from the end-to-end tests' TCG guests.
	$(GO) test -count=1 -timeout 10m ./test/fault/...
	$(GO) test -count=1 -race -timeout 20m ./internal/store/... ./internal/leader/... ./internal/control/... ./internal/server/... ./internal/agent/... ./internal/client/... ./internal/cgroup/... ./internal/hypervisor/... ./internal/guest/agent/... ./test/fault/...

## test-cloud: boot a real Debian cloud image (cloud-init, firmware boot) built with debootstrap; about 5 minutes
test-cloud:
	@for p in debootstrap fdisk; do dpkg -s $$p >/dev/null 2>&1 || { $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends debootstrap fdisk; break; }; done
	VGRID_CLOUD_IMAGE_TEST=1 $(GO) test -count=1 -timeout 30m -run 'TestCloudImage|TestVendorDataShell' -v ./internal/hypervisor/qemu

## test-short: the tests that need no root or QEMU
test-short:
	$(GO) test -short ./...

## bench: benchmarks (see docs/benchmarks.md)
bench: build
	$(GO) test -run '^$$' -bench . -benchmem ./internal/calendar/ ./internal/store/...
	$(GO) run ./bench/startlatency -n 50

## fuzz: a minute of fuzzing on each parser: specs, policy files, agent and admin bodies, hosts' certificate requests, lease times, store files
fuzz:
	$(GO) test -run '^$$' -fuzz FuzzParse -fuzztime 60s ./internal/spec
	$(GO) test -run '^$$' -fuzz FuzzParse -fuzztime 60s ./internal/policyfile
	$(GO) test -run '^$$' -fuzz FuzzDecodeAgentReport -fuzztime 60s ./internal/server
	$(GO) test -run '^$$' -fuzz FuzzDecodeNode -fuzztime 60s ./internal/server
	$(GO) test -run '^$$' -fuzz FuzzDecodeAdminBody -fuzztime 60s ./internal/server
	$(GO) test -run '^$$' -fuzz FuzzCSR -fuzztime 60s ./internal/server
	$(GO) test -run '^$$' -fuzz FuzzLeaseTimes -fuzztime 60s ./internal/calendar
	$(GO) test -run '^$$' -fuzz FuzzCheck -fuzztime 60s -fuzzminimizetime 10s ./internal/store/bolt
	$(GO) test -run '^$$' -fuzz FuzzDecodeLog -fuzztime 60s ./internal/store/bolt

clean:
	rm -rf $(BIN)
