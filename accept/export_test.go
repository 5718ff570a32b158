package accept

import "testing"

// PoisonPooledBuffers overwrites every buffer as it goes back to its pool,
// until t ends: whatever still refers to one then reads X's.
func PoisonPooledBuffers(t testing.TB) {
	poison = func(b []byte) {
		for i := range b {
			b[i] = 'X'
		}
	}
	t.Cleanup(func() { poison = nil })
}
