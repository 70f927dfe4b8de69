"""TF Hub models: fetch, validate archives, serve to tensorflow_hub, prefetch, import."""
