"""A pytest plugin: one real single-node HDFS (NameNode + DataNode) for the whole run.

Register it with `pytest_plugins = ["tests.hdfs_fixture"]` in tests/conftest.py. The jars come
from scripts/fetch-hadoop.sh (TRIPFLOW_HADOOP_JARS or the default cache directory)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port
from tripflow.config import Settings
from tripflow.services.hdfs import ManagedHdfs


@pytest.fixture(scope="session")
def hdfs(test_home: Path) -> Iterator[ManagedHdfs]:
    """Start HDFS under the run's home on free ports; stop it when the run ends."""
    settings = Settings(
        _env_file=None,
        home=test_home,
        hdfs_port=free_port(),
        hdfs_http_port=free_port(),
        # 0: the DataNode binds ports the system picks and registers them with the NameNode,
        # so no port can be taken between choosing and binding it.
        hdfs_datanode_port=0,
        hdfs_datanode_http_port=0,
        hdfs_datanode_ipc_port=0,
    )
    cluster = ManagedHdfs(settings)
    cluster.start()
    yield cluster
    cluster.stop()
