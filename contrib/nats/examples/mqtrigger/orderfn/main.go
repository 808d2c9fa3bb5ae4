// Command orderfn is the function of the mqtrigger example: it "processes"
// an order, {"order": N}, and fails as real functions do — every tenth
// order (N % 10 == 3) hits a dependency that is briefly down and answers
// 503 with Retry-After on its first delivery, and every hundredth (N % 100
// == 99) is a poison message that always answers 500. Deliveries come in
// X-Faas-Trigger-Delivery; the request ID, the same on every delivery of a
// message, is what a real function would deduplicate on.
package main

import (
	"encoding/json"
	"fmt"
	"log"
	"net/http"

	"github.com/faasplane/faas/function"
)

func main() {
	if err := function.Serve(http.HandlerFunc(handle)); err != nil {
		log.Fatal(err)
	}
}

func handle(w http.ResponseWriter, r *http.Request) {
	var order struct {
		Order int `json:"order"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&order); err != nil {
		http.Error(w, "not an order: "+err.Error(), http.StatusBadRequest)
		return
	}
	switch {
	case order.Order%100 == 99:
		http.Error(w, fmt.Sprintf("order %d: corrupt line items", order.Order), http.StatusInternalServerError)
	case order.Order%10 == 3 && r.Header.Get("X-Faas-Trigger-Delivery") == "1":
		w.Header().Set("Retry-After", "0")
		http.Error(w, "inventory service unavailable", http.StatusServiceUnavailable)
	default:
		fmt.Fprintf(w, "order %d processed (request %s)\n", order.Order, r.Header.Get("X-Faas-Request-Id"))
	}
}
