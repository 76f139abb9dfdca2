//go:build !linux

package sockio

const supported = false
