"""The core: config, the store with its lease and conditional writes, verified fetch,
run records, and the small serving pieces every side uses. It imports nothing of ours."""
