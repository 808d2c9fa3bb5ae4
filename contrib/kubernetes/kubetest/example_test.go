package kubetest_test

import (
	"context"
	"fmt"
	"log"
	"net"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/faasplane/faas/contrib/kubernetes/kubetest"
)

// A control plane with one fake node, and a pod that runs on it.
func Example() {
	ctx := context.Background()
	cp, err := kubetest.Start(ctx, kubetest.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer cp.Close()

	if _, err := cp.AddNode(ctx, "node-0"); err != nil {
		log.Fatal(err)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: corev1.PodSpec{
			NodeName:   "node-0", // no scheduler: the pod names its node
			Containers: []corev1.Container{{Name: "web", Image: "example.invalid/web"}},
		},
	}
	if _, err := cp.Client.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		log.Fatal(err)
	}
	running, err := cp.WaitForPod(ctx, "default", "web", kubetest.PodRunning)
	if err != nil {
		log.Fatal(err)
	}
	ip := net.ParseIP(running.Status.PodIP)
	fmt.Println("phase:", running.Status.Phase)
	fmt.Println("pod IP in", cp.PodCIDR, "and loopback:", cp.PodCIDR.Contains(ip) && ip.IsLoopback())
	// Output:
	// phase: Running
	// pod IP in 127.0.1.0/24 and loopback: true
}
