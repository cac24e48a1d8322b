"""Model loading, declared metadata and the servable wrapper around a torch module."""
