"""Real peers on this machine: worker processes on a loopback libp2p mesh.

``launcher``: the bootstrap node, the worker processes (spawn, read, kill, restart,
commands), per-round metrics from the workers' round events, and the run files.
``real_experiment``: a scenario file on that mesh (topology imposed, timeline events
turned into real faults).
"""
