"""Fixtures for every test folder: the local control plane (modeldeploy_devcluster.pytest_plugin)."""

pytest_plugins = ["modeldeploy_devcluster.pytest_plugin"]
