"""The running peer: runtimes, transports, trainer, datasets, models, identity, API."""
