// Package kubetest runs a real Kubernetes control plane for a test, on
// 127.0.0.1 and in a temporary directory: an etcd embedded in the test
// process, a kube-apiserver child process and kwok, a child process that
// plays the kubelet of fake nodes. Tests of the Kubernetes adapter (and its
// examples) talk to it with an ordinary client-go clientset, so they see
// what a cluster does and a fake clientset does not: admission, defaulting,
// validation, resourceVersion conflicts (409), watches that resume or
// expire, RBAC.
//
// Start returns once the apiserver answers /readyz; Close kills the
// children's process groups, waits for them and stops etcd, leaving no
// process or goroutine behind. No scheduler or controller-manager runs:
// pods name their node (spec.nodeName), and nodes are added with AddNode,
// which waits until kwok reports them Ready. kwok then moves each pod bound
// to such a node to Running and gives it an IP from Options.PodCIDR
// (127.0.1.0/24 by default). Those are real loopback addresses, so a test
// can stand in for the pod's process by listening on podIP:port. Deleting a
// pod removes it once kwok has seen the deletion, as a kubelet would.
//
// The binaries come from the environment (FAAS_KUBE_APISERVER, FAAS_KWOK,
// FAAS_KWOK_STAGES) or from a cache keyed by version,
// $FAAS_TOOLS_CACHE or $HOME/.cache/faasplane/tools. If they are missing,
// Start runs ../tools/ensure-tools.sh itself: it builds kube-apiserver
// v1.37.2 from the Go module proxy (5-10 minutes and 2.4 GB of memory on two
// cores) and installs kwok v0.8.0 (2-3 minutes), once per machine.
// CI runs that script before go test, so that the build is not charged to
// a test's timeout (go test's default -timeout is 10 minutes). With the
// tools in place a control plane starts in 3-5 s on two cores (etcd
// 0.3-0.9 s, kube-apiserver 2.2-3.8 s to /readyz), uses about 280 MB for
// kube-apiserver and 50 MB for kwok, and closes in under 0.2 s; a node is
// Ready 40-60 ms after its creation, a pod Running 20-30 ms after its
// creation, and gone 10-15 ms after its deletion.
package kubetest
