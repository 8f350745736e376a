"""Domain values the layers above share: built once, never changed, no I/O."""
