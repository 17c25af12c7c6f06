#!/usr/bin/env bash
# Build the real control plane (kube-apiserver, kube-scheduler, kube-controller-manager,
# etcd), helm, Prometheus (the idle-server tests) and Kueue (the shared-quota tests) from
# the Go module proxy into a cache outside the clone, keyed by the Kubernetes version:
#
#     ${MIG_SPAWNER_K8S_CACHE:-${XDG_CACHE_HOME:-~/.cache}/mig-spawner/k8s-v1.37.2}/
#
# Only what is missing (or was built from another pinned version) is built; a
# second run is a few stat calls.  `build.sh --print-dir` prints the cache
# directory and exits (it needs no Go: `make demo` expands it on machines without one).
# The pins are the go.mod files next to this script.
#
# MIG_SPAWNER_BUILD_ONLY="helm etcd kubernetes prometheus kueue" (the default) limits what
# is built, e.g. `MIG_SPAWNER_BUILD_ONLY=helm` for the chart tests alone.  `selftest` (never
# built otherwise) builds the tiny module in selftest/ with the same build() and EXIT trap:
# tests/controlplane/test_build_script.py runs it on an empty cache, as a first run.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
export GOFLAGS="${GOFLAGS:--buildvcs=false}"
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"

modver() { # module dir, module path -> version pinned in that go.mod
	(cd "$here/$1" && go list -m -f '{{.Version}}' "$2")
}

# The pinned Kubernetes version, read from go.mod itself: --print-dir must work without Go.
k8s_version="$(awk '$1 == "require" && $2 == "k8s.io/kubernetes" {print $3}' "$here/kubernetes/go.mod")"
[[ -n "$k8s_version" ]] || { echo "build.sh: no k8s.io/kubernetes pin in $here/kubernetes/go.mod" >&2; exit 2; }
cache="${MIG_SPAWNER_K8S_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mig-spawner/k8s-$k8s_version}"
if [[ "${1:-}" == "--print-dir" ]]; then
	echo "$cache"
	exit 0
fi
mkdir -p "$cache"
only=" ${MIG_SPAWNER_BUILD_ONLY:-helm etcd kubernetes prometheus kueue} "
only="${only//,/ }"
wanted() { [[ "$only" == *" $1 "* ]]; }

# The staging replaces must match the pinned k8s.io/kubernetes.
python3 "$here/staging.py" --check

goversion="$(go env GOVERSION)"
# needs NAME STAMP: true when $cache/NAME is missing or was built from another pin
needs() {
	[[ -x "$cache/$1" && -f "$cache/.$1.stamp" && "$(cat "$cache/.$1.stamp")" == "$2" ]] && return 1
	return 0
}
# build MODULE_DIR LDFLAGS STAMP NAME=PKG... : go build the named packages, then
# move each binary into the cache and stamp it.
build() {
	local dir="$1" ldflags="$2" stamp="$3"
	shift 3
	local pkgs=() names=() spec
	for spec in "$@"; do
		names+=("${spec%%=*}")
		pkgs+=("${spec#*=}")
	done
	# A global, not a local: the EXIT trap runs after this function has returned, and
	# under `set -u` a local named there would be unbound ("tmp: unbound variable").
	build_tmp="$(mktemp -d "$cache/.build.XXXXXX")"
	trap 'rm -rf "${build_tmp:-}"' EXIT # also when go build fails (set -e leaves the function early)
	local tmp="$build_tmp"
	echo "building ${names[*]} ($stamp) into $cache" >&2
	local t0=$SECONDS
	(cd "$here/$dir" && nice -n "${BUILD_NICE:-10}" go build -trimpath -ldflags "$ldflags" -o "$tmp/" "${pkgs[@]}")
	local name pkg
	for spec in "$@"; do
		name="${spec%%=*}"
		pkg="${spec#*=}"
		[[ "${pkg##*/}" =~ ^v[0-9]+$ ]] && pkg="${pkg%/*}" # go names .../server/v3 "server"
		mv -f "$tmp/${pkg##*/}" "$cache/$name"
		echo "$stamp" >"$cache/.$name.stamp"
	done
	rm -rf "$tmp"
	echo "built ${names[*]} in $((SECONDS - t0))s" >&2
}

# The build script's own first-run test: a stdlib-only module, built like the others.
if wanted selftest; then
	stamp="selftest $goversion"
	if needs selftest "$stamp"; then
		build selftest "-s -w" "$stamp" selftest=mig-spawner.invalid/buildselftest
	fi
fi

# helm first: the chart tests need only it.
if wanted helm; then
	helm_version="$(modver helm helm.sh/helm/v3)"
	helm_k8s="$(modver helm k8s.io/client-go)" # v0.MINOR.PATCH
	helm_k8s_minor="$(cut -d. -f2 <<<"$helm_k8s")"
	stamp="helm.sh/helm/v3@$helm_version $goversion"
	if needs helm "$stamp"; then
		build helm "-s -w -X helm.sh/helm/v3/internal/version.version=$helm_version \
	-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$helm_k8s_minor \
	-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$helm_k8s_minor" \
			"$stamp" helm=helm.sh/helm/v3/cmd/helm
	fi
fi

if wanted etcd; then
	etcd_version="$(modver etcd go.etcd.io/etcd/server/v3)"
	stamp="go.etcd.io/etcd/server/v3@$etcd_version $goversion"
	if needs etcd "$stamp"; then
		build etcd "-s -w" "$stamp" etcd=go.etcd.io/etcd/server/v3
	fi
fi

# Prometheus with no service discovery but static and file targets (remove_all_sd drops
# the cloud SD plugins: about a third fewer packages) and no web UI assets (built in only
# with the builtinassets tag): the tests use its HTTP API alone.
if wanted prometheus; then
	prometheus_version="$(modver prometheus github.com/prometheus/prometheus)"
	stamp="github.com/prometheus/prometheus@$prometheus_version remove_all_sd $goversion"
	if needs prometheus "$stamp"; then
		# the module's v0.MMM.P tag is release (MMM / 100).(MMM % 100).P: v0.316.0 is 3.16.0
		IFS=. read -r _ mmm patch <<<"$prometheus_version"
		release="$((10#$mmm / 100)).$((10#$mmm % 100)).$patch"
		GOFLAGS="$GOFLAGS -tags=remove_all_sd" build prometheus \
			"-s -w -X github.com/prometheus/common/version.Version=$release" \
			"$stamp" prometheus=github.com/prometheus/prometheus/cmd/prometheus
	fi
fi

# Kueue's manager, with the version its release Makefile stamps (the manager logs it at
# start). tests/kueue_harness.py reads Kueue's CRDs, webhooks and RBAC from the module's
# source in the Go module cache: downloaded here even when the binary is already built (a
# cleaned module cache), a no-op when it is there.
if wanted kueue; then
	kueue_version="$(modver kueue sigs.k8s.io/kueue)"
	(cd "$here/kueue" && go mod download sigs.k8s.io/kueue)
	stamp="sigs.k8s.io/kueue@$kueue_version $goversion"
	if needs kueue "$stamp"; then
		build kueue "-s -w -X sigs.k8s.io/kueue/pkg/version.GitVersion=$kueue_version" \
			"$stamp" kueue=sigs.k8s.io/kueue/cmd/kueue
	fi
fi

minor="$(cut -d. -f2 <<<"$k8s_version")"
ldflags="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	ldflags+=" -X $p.gitVersion=$k8s_version -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
done
stamp="k8s.io/kubernetes@$k8s_version $goversion"
want=()
for c in kube-apiserver kube-scheduler kube-controller-manager; do
	needs "$c" "$stamp" && want+=("$c=k8s.io/kubernetes/cmd/$c")
done
if wanted kubernetes && ((${#want[@]})); then
	build kubernetes "$ldflags" "$stamp" "${want[@]}"
fi
echo "$cache"
