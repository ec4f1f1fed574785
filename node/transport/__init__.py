"""Transports: one interface, an in-memory and a libp2p implementation."""
