"""One thin router per resource: parse, authorize, call a service."""
