// Package arch holds no code: its test checks the module's import rules,
// the architecture's seams that must not erode (the calendar stays pure,
// the HTTP layer holds no calendar logic, the core speaks no HTTP).
package arch
