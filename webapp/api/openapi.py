"""OpenAPI placeholder (filled in next)."""
