package etcd

import (
	"context"
	"errors"
	"strings"
	"testing"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestExplain: each way etcd fails to answer is said with the endpoints
// and, where a lost quorum may be why, says so.
func TestExplain(t *testing.T) {
	s := &Store{endpoints: "http://a:2379,http://b:2379"}
	live := context.Background()
	for _, c := range []struct {
		name string
		err  error
		want []string
	}{
		{"member gone mid-request", status.Error(codes.Unavailable, "error reading from server: EOF"),
			[]string{"http://a:2379,http://b:2379", "no member answered", "quorum", "EOF"}},
		{"no leader", rpctypes.ErrNoLeader, []string{"no leader (no quorum)"}},
		{"timed out in the cluster", rpctypes.ErrTimeout, []string{"timed out in the cluster", "quorum"}},
		{"other", errors.New("permission denied"), []string{"etcd at http://a:2379,http://b:2379: permission denied"}},
	} {
		got := s.explain(live, c.err, "within 1.5s").Error()
		for _, w := range c.want {
			if !strings.Contains(got, w) {
				t.Errorf("%s: %q, want it to say %q", c.name, got, w)
			}
		}
		if !errors.Is(s.explain(live, c.err, "within 1.5s"), c.err) {
			t.Errorf("%s: the cause is not wrapped", c.name)
		}
	}
}
