"""What a run records of where it ran: the machine line a summary prints and the environment beside it."""

from __future__ import annotations

import pytest

from oracle.provenance import environment, machine


def test_a_run_given_one_compute_thread_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert "OMP_NUM_THREADS" not in machine()
    assert environment()["machine"]["omp_num_threads"] is None
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert ", OMP_NUM_THREADS=1" in machine()
    assert environment()["machine"]["omp_num_threads"] == "1"
