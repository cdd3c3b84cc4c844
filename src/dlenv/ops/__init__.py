"""What a dlenv command does end to end (orchestration over cloud/, ssh/ and provision/)."""
