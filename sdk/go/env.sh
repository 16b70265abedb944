# shellcheck shell=bash disable=SC2154 # $here is the sourcing script's folder
# Sourced by the Go scripts: the Go toolchain of sdk/toolchains.sh, with its caches inside
# the toolchains folder, offline (there is no module proxy here: the one module the bindings
# need is replaced by the copy in the toolchains folder).
tc=${WEIR_TOOLCHAINS:-$here/../../.toolchains}
if [ -x "$tc/go/bin/go" ]; then
    export GOROOT=$tc/go
    export PATH=$GOROOT/bin:$PATH
    export GOCACHE=${GOCACHE:-$tc/go-cache}
    export GOMODCACHE=${GOMODCACHE:-$tc/go-mod}
    export GOPATH=${GOPATH:-$tc/go-path}
fi
command -v go >/dev/null || {
    echo "go not found: run sdk/toolchains.sh go" >&2
    exit 1
}
export GOTOOLCHAIN=local GOPROXY=off GOFLAGS=-mod=mod GOTELEMETRY=off CGO_ENABLED=0
