#!/usr/bin/env bash
# Build one Go tool from the Go module proxy into a cache outside the clone, once:
#
#     tests/tools/go-tool.sh [--print] NAME PACKAGE@VERSION   e.g. helm helm.sh/helm/v3/cmd/helm@v3.22.0
#
# prints the path of the binary (with --print: only that, building nothing), ${MIG_SPAWNER_TOOL_CACHE:-${XDG_CACHE_HOME:-~/.cache}/mig-spawner}/
# NAME-VERSION/NAME, building it only when it is missing. The tests find helm through
# MIG_SPAWNER_HELM, which the Makefile sets to this path.
set -euo pipefail
print_only=""
if [[ "${1:-}" == "--print" ]]; then
	print_only=1
	shift
fi
name="$1"
spec="$2"
version="${spec##*@}"
dir="${MIG_SPAWNER_TOOL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mig-spawner}/$name-$version"
if [[ -z "$print_only" && ! -x "$dir/$name" ]]; then
	command -v go >/dev/null || { echo "go-tool.sh: building $name needs Go (https://go.dev/dl/)" >&2; exit 1; }
	mkdir -p "$dir"
	echo "go-tool.sh: building $spec into $dir (once)" >&2
	tmp="$(mktemp -d "$dir/.build.XXXXXX")"
	trap 'rm -rf "$tmp"' EXIT
	GOBIN="$tmp" GOFLAGS="${GOFLAGS:--buildvcs=false}" GOTOOLCHAIN="${GOTOOLCHAIN:-auto}" \
		nice -n "${BUILD_NICE:-10}" go install -trimpath "$spec"
	mv -f "$tmp/$name" "$dir/$name"
fi
echo "$dir/$name"
