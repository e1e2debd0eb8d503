"""Shared fixtures live in tests/fixtures/, one module per server or model kind."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

pytest_plugins = [
    "tests.fixtures.examples",
    "tests.fixtures.mock_llm",
    "tests.fixtures.tiny_bert",
    "tests.fixtures.label_studio",
    "tests.fixtures.flows",
]
