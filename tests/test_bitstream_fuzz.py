"""A short fuzz run of the .codes reader (the full 10 000 cases: python -m tests.bitstream_fuzz)."""

from tests.bitstream_fuzz import run


def test_mutated_files_raise_only_bitstream_errors_and_fast():
    result = run(1500, seed=1)
    assert result["other_exceptions"] == []
    assert result["slowest_s"] < 2.0
    assert result["refused"] > 0.9 * result["cases"]
