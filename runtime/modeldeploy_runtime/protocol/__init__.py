"""HTTP protocols: Open Inference Protocol v2 (JSON and binary tensors), KServe v1, errors in one place."""
