package retrieval

import "context"

// Reconcile runs one pass of Run's reconcile loop.
func (s *Service) Reconcile(ctx context.Context) error { return s.reconcile(ctx) }
