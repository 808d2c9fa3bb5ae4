// Package faastest is faasplane's policy lab: workload generators and trace
// loaders, fakes of every plug-in interface, and a deterministic simulator
// that runs the production policies on a virtual clock.
//
// Workloads are deterministic streams of arrivals: Poisson, bursty on/off,
// diurnal, a heavy-tailed population of many functions shaped like the
// published Azure Functions characteristics, and a loader for the Azure
// Functions 2019 per-minute invocation-count files.
package faastest
