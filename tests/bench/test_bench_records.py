"""A continued benchmark reads its step records (``done.json``) through the boundary layer: a
damaged one is one error naming it (issue 21), never a KeyError traceback."""

import json

import pytest

from avguide.bench.runner import _done, _once, _step_seconds
from avguide.errors import BadInputError


@pytest.mark.parametrize("content, words", [
    ("", "empty bench step record"),
    ('{"result": {"a": 1}', "corrupt bench step record"),
    ('{"seconds": 3}', "needs 'result' and 'seconds'); delete it to run the step again"),
    ('{"result": {}, "seconds": "soon"}', "needs 'result' and 'seconds'"),
    ("[]", "expected a JSON object"),
])
def test_damaged_step_record_is_one_line_naming_it(content, words, tmp_path):
    (tmp_path / "done.json").write_text(content)
    with pytest.raises(BadInputError) as e:
        _once(tmp_path, lambda: pytest.fail("a finished step must not run again"), {})
    msg = str(e.value)
    assert msg.startswith(str(tmp_path / "done.json")) and words in msg and "\n" not in msg, msg


def test_a_finished_step_is_not_run_again(tmp_path):
    assert _once(tmp_path, lambda: {"x": 1}, {"cfg": 1}) == {"x": 1}
    assert _once(tmp_path, lambda: pytest.fail("ran again"), {"cfg": 1}) == {"x": 1}
    assert _step_seconds(tmp_path) >= 0 and _done(tmp_path)["bench_config"] == {"cfg": 1}
    assert json.loads((tmp_path / "done.json").read_text())["result"] == {"x": 1}
