"""``mnistctl serve``: the HTTP API and the draw-a-digit page (web/) over an inference classifier."""
