"""The wire format, signing, validation and the sans-IO peer state machine. No I/O."""
