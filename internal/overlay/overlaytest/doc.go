// Package overlaytest builds a test bed of network namespaces for overlay
// networks: "hosts" joined by an underlay, and "guests" plugged into a
// host by a veth pair (taps need a process behind them; a veth stands in).
// It needs root. Every namespace is named vgov-<pid>-<n>-<role> (New
// removes those left by test processes that no longer run) and every link
// it makes lives in one of them: nothing is added to the root namespace,
// and t.Cleanup deletes the namespaces, which takes their links with them.
//
// Layout of New(t, k): the namespace <tag>-u holds the bridge vgovu0;
// host i (1..k) is the namespace <tag>-h<i> whose eth0 (10.231.0.(10+i)/24,
// MTU 1500) is paired with vgovh<i> on vgovu0. AddGuest makes the namespace
// <tag>-<name> whose eth0 is paired with vgov<name> in the host's
// namespace, on a bridge the caller made there. New and AddGuest return
// once every link they made is operationally up (until the kernel's link
// watcher has seen the carrier, a device drops what is sent on it).
//
// Traffic: NS.Do runs a function on a thread inside a namespace (sockets
// opened there stay there); Serve answers TCP and UDP with a guest's label,
// AskTCP and AskUDP ask, Throughput measures a TCP stream at the receiver.
package overlaytest
