"""Wire formats and translation between them (issue 15)."""
