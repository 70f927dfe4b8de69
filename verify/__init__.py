"""Proof: scrub and repair the store, check devpi, air-gap install proof, model load checks, gc."""
