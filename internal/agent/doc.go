// Package agent is the host agent: it registers its host with the control
// plane (with a join token, then its own node token), learns the workspaces
// assigned to the host by long-polling the API, drives a hypervisor.Driver
// toward the desired state of each, and reports what it observes. Guests
// outlive the agent; a restarted agent adopts them through the driver.
package agent
