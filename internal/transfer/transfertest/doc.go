// Package transfertest makes a throwaway certificate authority and host
// certificates (client and server use, CN the host name) for tests and
// benchmarks of internal/transfer.
package transfertest
