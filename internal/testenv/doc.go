// Package testenv holds what tests need to know about the machine they run
// on: where the module and the shared traces are, and how to skip for a
// missing prerequisite. Under VGRID_REQUIRE_ALL (CI sets it, as CI installs
// everything) such a skip is a failure instead, so nothing skips silently.
package testenv
