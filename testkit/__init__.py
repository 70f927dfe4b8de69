"""Kit that the tests and the benches share: real little wheels and sdists built on the fly,
a local PEP 691 upstream, real servers (moto, devpi) on free ports, and a tfmirror config
for a run. Not part of the product: not packaged, not in the layers, imported by no
product module; importable from a checkout's root, as `tests` is."""
