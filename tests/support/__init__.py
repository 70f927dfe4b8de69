"""Test helpers: real wheels built on the fly, a local PEP 691 upstream, real servers."""
