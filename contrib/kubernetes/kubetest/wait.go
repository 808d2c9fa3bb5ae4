package kubetest

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
)

// kwok's convention for "this node is mine": Start tells kwok to manage the
// nodes that carry this annotation, and AddNode sets it.
const (
	NodeAnnotation      = "kwok.x-k8s.io/node"
	NodeAnnotationValue = "fake"
)

// AddNode registers a node for kwok to play the kubelet of, and waits until
// kwok has marked it Ready. Pods bound to it (spec.nodeName: no scheduler
// runs) then go Running with an IP from PodCIDR.
func (cp *ControlPlane) AddNode(ctx context.Context, name string) (*corev1.Node, error) {
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Annotations: map[string]string{NodeAnnotation: NodeAnnotationValue},
			Labels: map[string]string{
				"kubernetes.io/hostname": name,
				"kubernetes.io/os":       "linux",
				"type":                   "kwok",
			},
		},
	}
	if _, err := cp.Client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("kubetest: create node %s: %w", name, err)
	}
	n, err := cp.WaitForNode(ctx, name, NodeReady)
	if err != nil {
		return nil, cp.kwok.failure(err)
	}
	return n, nil
}

// NodeReady reports whether the node's Ready condition is True.
func NodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// PodRunning reports whether the pod is Running and has its IP.
func PodRunning(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodRunning && p.Status.PodIP != ""
}

// WaitForNode watches the node until cond holds, for at most the control
// plane's Timeout. A node that does not exist yet is waited for.
func (cp *ControlPlane) WaitForNode(ctx context.Context, name string, cond func(*corev1.Node) bool) (*corev1.Node, error) {
	nodes := cp.Client.CoreV1().Nodes()
	lw := nameListWatch(name,
		func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) { return nodes.List(ctx, o) },
		func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) { return nodes.Watch(ctx, o) })
	return waitFor(ctx, cp.timeout, lw, "node "+name, func(n *corev1.Node, exists bool) bool {
		return exists && cond(n)
	})
}

// WaitForPod watches the pod until cond holds, for at most the control
// plane's Timeout. A pod that does not exist yet is waited for.
func (cp *ControlPlane) WaitForPod(ctx context.Context, namespace, name string, cond func(*corev1.Pod) bool) (*corev1.Pod, error) {
	return waitFor(ctx, cp.timeout, cp.podListWatch(namespace, name), "pod "+namespace+"/"+name,
		func(p *corev1.Pod, exists bool) bool { return exists && cond(p) })
}

// WaitForPodGone waits until the pod no longer exists: with kwok, a deleted
// pod is removed once kwok has seen its deletionTimestamp, as a kubelet
// would after stopping its containers.
func (cp *ControlPlane) WaitForPodGone(ctx context.Context, namespace, name string) error {
	_, err := waitFor(ctx, cp.timeout, cp.podListWatch(namespace, name), "pod "+namespace+"/"+name+" gone",
		func(_ *corev1.Pod, exists bool) bool { return !exists })
	return err
}

func (cp *ControlPlane) podListWatch(namespace, name string) *cache.ListWatch {
	pods := cp.Client.CoreV1().Pods(namespace)
	return nameListWatch(name,
		func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) { return pods.List(ctx, o) },
		func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) { return pods.Watch(ctx, o) })
}

// waitForNamespace waits until the namespace exists.
func (cp *ControlPlane) waitForNamespace(ctx context.Context, name string) error {
	nss := cp.Client.CoreV1().Namespaces()
	lw := nameListWatch(name,
		func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) { return nss.List(ctx, o) },
		func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) { return nss.Watch(ctx, o) })
	_, err := waitFor(ctx, cp.timeout, lw, "namespace "+name,
		func(_ *corev1.Namespace, exists bool) bool { return exists })
	return err
}

// nameListWatch lists and watches the one object called name.
func nameListWatch(name string,
	list func(context.Context, metav1.ListOptions) (runtime.Object, error),
	watchFn func(context.Context, metav1.ListOptions) (watch.Interface, error),
) *cache.ListWatch {
	sel := fields.OneTermEqualSelector("metadata.name", name).String()
	return &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = sel
			return list(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = sel
			return watchFn(ctx, o)
		},
	}
}

// waitFor lists the one object lw selects and then watches it from the
// list's resourceVersion (resuming if the watch breaks) until cond holds,
// or timeout passes. cond sees exists false, and a zero object, while
// there is no such object. A watch, not a poll, so the wait ends the moment
// the apiserver has the change; not an informer either, whose cache-sync
// check polls every 100 ms and would add that to every measured latency.
func waitFor[T runtime.Object](ctx context.Context, timeout time.Duration, lw *cache.ListWatch, what string, cond func(obj T, exists bool) bool) (T, error) {
	var zero, last T
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	fail := func(err error) (T, error) {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%v)", err, context.Cause(ctx))
		}
		return last, fmt.Errorf("kubetest: waiting for %s: %w", what, err)
	}

	list, err := lw.ListWithContext(ctx, metav1.ListOptions{})
	if err != nil {
		return fail(err)
	}
	items, err := meta.ExtractList(list)
	if err != nil {
		return fail(err)
	}
	exists := false
	for _, item := range items {
		if obj, ok := item.(T); ok {
			last, exists = obj, true
		}
	}
	if cond(last, exists) {
		return last, nil
	}
	listMeta, err := meta.ListAccessor(list)
	if err != nil {
		return fail(err)
	}

	w, err := watchtools.NewRetryWatcherWithContext(ctx, listMeta.GetResourceVersion(), lw)
	if err != nil {
		return fail(err)
	}
	defer func() {
		w.Stop()
		<-w.Done() // its goroutine has ended when waitFor returns
	}()
	_, err = watchtools.UntilWithoutRetry(ctx, w, func(ev watch.Event) (bool, error) {
		switch ev.Type {
		case watch.Deleted:
			last = zero
			return cond(zero, false), nil
		case watch.Added, watch.Modified:
			obj, ok := ev.Object.(T)
			if !ok {
				return false, fmt.Errorf("unexpected %T in watch", ev.Object)
			}
			last = obj
			return cond(obj, true), nil
		case watch.Error:
			return false, apierrors.FromObject(ev.Object)
		}
		return false, nil // bookmarks
	})
	if err != nil {
		return fail(err)
	}
	return last, nil
}
