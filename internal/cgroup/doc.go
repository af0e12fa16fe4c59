// Package cgroup creates, limits, reads and removes the control groups that
// enforce a workspace's CPU cap and memory limit on a host. It speaks to the
// kernel's cgroup filesystems directly, for both layouts found in the wild:
// v1 (each controller its own hierarchy, as on this project's hosts, where
// a cgroup2 mount without controllers may sit beside them: "hybrid") and v2
// (one unified hierarchy; controllers are switched on in every ancestor's
// cgroup.subtree_control). A Group is one directory per controller (v1) or
// one directory (v2); its ProcsFiles are written with a process's PID
// before that process execs, so that it is charged from its first page.
package cgroup
