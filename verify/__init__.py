"""Proof: scrub and repair the store, check devpi, air-gap install proof, model load checks, gc."""

# Where the last verify's result lives; the status page reads it without importing verify.run.
VERIFY_STATE = "state/verify.json"
