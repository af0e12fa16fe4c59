package spec

import (
	"encoding/base64"
	"encoding/binary"
	"strings"
)

// sshKey builds a well-formed authorized_keys line of the given type with
// made-up key material.
func sshKey(typ, comment string) string {
	var blob []byte
	blob = binary.BigEndian.AppendUint32(blob, uint32(len(typ)))
	blob = append(blob, typ...)
	blob = binary.BigEndian.AppendUint32(blob, 32)
	for i := range 32 {
		blob = append(blob, byte(i*7+1))
	}
	line := typ + " " + base64.StdEncoding.EncodeToString(blob)
	if comment != "" {
		line += " " + comment
	}
	return line
}

// goodYAML is a valid spec; tests derive bad ones from it.
const goodYAML = `name: demo
image: vgrid-guest
quantum:
  vcpus: 2
  cpu: 0.5
  memory: 512Mi
  disk: 1Gi
duration: 2h
`

// with replaces old by new in goodYAML, once; it panics if old is missing,
// so that a test cannot silently test the good spec.
func with(old, new string) string {
	if !strings.Contains(goodYAML, old) {
		panic("goodYAML has no " + old)
	}
	return strings.Replace(goodYAML, old, new, 1)
}
