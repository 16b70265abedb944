//go:build !wasip1

package main

// The component's main comes with the bindings the build generates; this one lets the
// stage build natively, for `go test`.
func main() {}
