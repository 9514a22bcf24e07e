"""Read-only reports over what Handoff recorded."""
