"""modeldeploy's inference runtime: one PyTorch model behind the Open Inference Protocol and KServe v1."""

__version__ = "0.1.0"
