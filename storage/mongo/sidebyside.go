package mongo

import (
	"errors"
	"sync"
)

// sideBySide runs fns concurrently and returns their errors joined. The
// commands they send overlap, so on a replica set they cost one round trip
// of latency, not len(fns): the store issues what does not depend on each
// other this way (see the command budgets in the package doc).
func sideBySide(fns ...func() error) error {
	switch len(fns) {
	case 0:
		return nil
	case 1:
		return fns[0]()
	}
	errs := make([]error, len(fns))
	var wg sync.WaitGroup
	for i, fn := range fns[1:] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i+1] = fn()
		}()
	}
	errs[0] = fns[0]()
	wg.Wait()
	return errors.Join(errs...)
}
