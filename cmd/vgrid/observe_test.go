package main

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
)

func TestLogFormat(t *testing.T) {
	defer func() { logFormat = "text" }()
	for _, c := range []struct {
		format string
		ok     func(line string) bool
	}{
		{"text", func(l string) bool { return strings.Contains(l, "msg=hello") && strings.Contains(l, "node=h1") }},
		{"json", func(l string) bool {
			var m map[string]any
			return json.Unmarshal([]byte(l), &m) == nil && m["msg"] == "hello" && m["node"] == "h1"
		}},
	} {
		if err := logFormat.Set(c.format); err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		slog.New(logHandler(&b, nil)).Info("hello", "node", "h1")
		if !c.ok(strings.TrimSpace(b.String())) {
			t.Errorf("--log-format %s wrote %q", c.format, b.String())
		}
	}
	if err := logFormat.Set("xml"); err == nil || logFormat != "json" {
		t.Errorf("--log-format xml: err %v, format now %s", err, logFormat)
	}
}
