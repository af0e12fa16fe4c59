// Package api holds the REST API's wire types that are not domain objects
// (those are in internal/model): the error shape, the agent protocol, token
// and project requests, and the OpenAPI document the server serves.
package api
