package api

// eventRoutes are the event log's routes (query, feed, export).
func (s *Server) eventRoutes() []Route { return nil }
