package api

// retrievalRoutes are the receiver systems' routes (list, fetch, ack).
func (s *Server) retrievalRoutes() []Route { return nil }
