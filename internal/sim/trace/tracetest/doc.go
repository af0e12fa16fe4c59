// Package tracetest finds the shared workload traces for the tests of the
// packages that read them (trace.Dir, skipping where there are none). The
// trace package's own tests keep a copy: they cannot import this one.
package tracetest
