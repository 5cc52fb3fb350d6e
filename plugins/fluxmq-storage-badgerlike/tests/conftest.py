import pytest

pytest.register_assert_rewrite("fluxmq_core.testing.conformance")
