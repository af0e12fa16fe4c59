package agent

import (
	"encoding/binary"
	"net"
	"reflect"
	"testing"
)

func TestParseCPUList(t *testing.T) {
	tests := []struct {
		in      string
		want    int
		wantErr bool
	}{
		{"0\n", 1, false},
		{"0-3", 4, false},
		{"0-3,5", 5, false},
		{"0,2,4-7\n", 6, false},
		{"", 0, true},
		{"a-b", 0, true},
		{"3-1", 0, true},
		{"0-", 0, true},
	}
	for _, tt := range tests {
		got, err := ParseCPUList(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseCPUList(%q) = %d, %v; want %d, err=%v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestParseMemTotal(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    int64
		wantErr bool
	}{
		{"typical", "MemTotal:         229072 kB\nMemFree:          180000 kB\n", 229072, false},
		{"not first", "MemFree: 1 kB\nMemTotal: 2048 kB\n", 2048, false},
		{"no unit", "MemTotal: 42\n", 42, false},
		{"missing", "MemFree: 1 kB\n", 0, true},
		{"bad number", "MemTotal: x kB\n", 0, true},
		{"bad unit", "MemTotal: 1 MB\n", 0, true},
	}
	for _, tt := range tests {
		got, err := ParseMemTotal([]byte(tt.in))
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("%s: got %d, %v; want %d, err=%v", tt.name, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestParseUptime(t *testing.T) {
	tests := []struct {
		in      string
		want    float64
		wantErr bool
	}{
		{"1.23 2.34\n", 1.23, false},
		{"100.00 50.00", 100, false},
		{"", 0, true},
		{"x 1", 0, true},
	}
	for _, tt := range tests {
		got, err := ParseUptime(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseUptime(%q) = %v, %v; want %v, err=%v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestParseMetaData(t *testing.T) {
	tests := []struct {
		name   string
		in     string
		values map[string]string
		lists  map[string][]string
	}{
		{
			name:   "scalars",
			in:     "instance-id: ws-1\nlocal-hostname: box\n",
			values: map[string]string{"instance-id": "ws-1", "local-hostname": "box"},
			lists:  map[string][]string{},
		},
		{
			name: "keys list and quotes",
			in: "# comment\ninstance-id: \"ws-2\"\npublic-keys:\n  - ssh-ed25519 AAAA one@x\n  - 'ssh-rsa BBBB two'\n" +
				"local-hostname: 'b2'\n",
			values: map[string]string{"instance-id": "ws-2", "local-hostname": "b2"},
			lists:  map[string][]string{"public-keys": {"ssh-ed25519 AAAA one@x", "ssh-rsa BBBB two"}},
		},
		{
			name:   "unindented list items",
			in:     "public-keys:\n- k1\n- k2\nlocal-hostname: h\n",
			values: map[string]string{"local-hostname": "h"},
			lists:  map[string][]string{"public-keys": {"k1", "k2"}},
		},
		{
			name:   "scalar public key",
			in:     "public-keys: ssh-ed25519 CCCC\r\n",
			values: map[string]string{"public-keys": "ssh-ed25519 CCCC"},
			lists:  map[string][]string{"public-keys": {"ssh-ed25519 CCCC"}},
		},
		{
			name:   "value with colon, nested map ignored",
			in:     "url: http://x:80/y\nnet:\n  eth0: dhcp\n",
			values: map[string]string{"url": "http://x:80/y"},
			lists:  map[string][]string{},
		},
		{
			name:   "empty",
			in:     "",
			values: map[string]string{},
			lists:  map[string][]string{},
		},
	}
	for _, tt := range tests {
		got := ParseMetaData([]byte(tt.in))
		if !reflect.DeepEqual(got.Values, tt.values) {
			t.Errorf("%s: values = %q, want %q", tt.name, got.Values, tt.values)
		}
		if !reflect.DeepEqual(got.Lists, tt.lists) {
			t.Errorf("%s: lists = %q, want %q", tt.name, got.Lists, tt.lists)
		}
	}
}

func TestParseEnv(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []EnvVar
	}{
		{"simple", "A=1\nB=two words\n", []EnvVar{{"A", "1"}, {"B", "two words"}}},
		{"comments blanks export quotes", "# c\n\nexport X=\"q v\"\nY='s'\n", []EnvVar{{"X", "q v"}, {"Y", "s"}}},
		{"bad keys skipped", "1A=x\nA-B=y\nnoequals\nOK=\n", []EnvVar{{"OK", ""}}},
		{"override keeps first position", "A=1\nB=2\nA=3\n", []EnvVar{{"A", "3"}, {"B", "2"}}},
		{"value with equals", "U=a=b\n", []EnvVar{{"U", "a=b"}}},
		{"empty", "", nil},
	}
	for _, tt := range tests {
		if got := ParseEnv([]byte(tt.in)); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: got %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestFormatEnv(t *testing.T) {
	tests := []struct {
		in   []EnvVar
		want string
	}{
		{nil, ""},
		{[]EnvVar{{"A", "1"}}, "A='1'\n"},
		{[]EnvVar{{"A", "it's"}, {"B", "$x y"}}, "A='it'\\''s'\nB='$x y'\n"},
	}
	for _, tt := range tests {
		if got := string(FormatEnv(tt.in)); got != tt.want {
			t.Errorf("FormatEnv(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func pvd(label string) []byte {
	b := make([]byte, 2048)
	b[0] = 1
	copy(b[1:], "CD001")
	copy(b[40:72], []byte(label + "                                ")[:32])
	return b
}

func TestISOVolumeLabel(t *testing.T) {
	bad := pvd("cidata")
	bad[1] = 'X'
	tests := []struct {
		name   string
		in     []byte
		want   string
		wantOK bool
	}{
		{"cidata", pvd("cidata"), "cidata", true},
		{"upper", pvd("CIDATA"), "CIDATA", true},
		{"other", pvd("DATA_DISK"), "DATA_DISK", true},
		{"not iso", bad, "", false},
		{"short", []byte{1, 'C', 'D'}, "", false},
		{"zeros", make([]byte, 2048), "", false},
	}
	for _, tt := range tests {
		got, ok := ISOVolumeLabel(tt.in)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("%s: got %q, %v; want %q, %v", tt.name, got, ok, tt.want, tt.wantOK)
		}
	}
}

func event(typ, code uint16, value int32) []byte {
	b := make([]byte, inputEventSize)
	binary.LittleEndian.PutUint16(b[16:], typ)
	binary.LittleEndian.PutUint16(b[18:], code)
	binary.LittleEndian.PutUint32(b[20:], uint32(value))
	return b
}

func TestIsKeyEvent(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want bool
	}{
		{"power key down", event(1, 116, 1), true},
		{"key up", event(1, 116, 0), true},
		{"syn", event(0, 0, 0), false},
		{"short", []byte{1, 2, 3}, false},
	}
	for _, tt := range tests {
		if got := IsKeyEvent(tt.in); got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestUsableAddress(t *testing.T) {
	tests := []struct {
		ip   string
		want bool
	}{
		{"10.0.2.15", true},
		{"192.168.42.10", true},
		{"2001:db8::1", true},
		{"127.0.0.1", false},
		{"::1", false},
		{"fe80::1", false},
		{"169.254.1.1", false},
		{"0.0.0.0", false},
	}
	for _, tt := range tests {
		if got := usableAddress(net.ParseIP(tt.ip)); got != tt.want {
			t.Errorf("usableAddress(%s) = %v, want %v", tt.ip, got, tt.want)
		}
	}
}
