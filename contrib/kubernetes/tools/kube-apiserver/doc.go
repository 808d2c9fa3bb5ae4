// Package kubeapiserver holds no code: this module exists to build
// kube-apiserver from the Go module proxy for contrib/kubernetes's tests
// (see ../ensure-tools.sh), with
//
//	go build -o BIN k8s.io/kubernetes/cmd/kube-apiserver
//
// run in this directory. go.mod requires k8s.io/kubernetes and replaces each
// k8s.io staging module with its release of the same cut, because the
// upstream go.mod points them at ./staging, which the module zip lacks; its
// tool directive keeps go mod tidy from dropping the requirement.
//
// The package itself is here so that go vet, go test and staticcheck run
// over every module under contrib/ find something in this one: with no
// package at all they fail with "no packages to vet". It is a module of its
// own so that the contrib/kubernetes module neither requires k8s.io/kubernetes
// nor builds it on go test ./... .
package kubeapiserver
