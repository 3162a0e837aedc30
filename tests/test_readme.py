"""The README's Python example runs and prints what its comments say."""

import contextlib
import io
import re
from pathlib import Path

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()


def test_readme_python_example_prints_what_it_claims(monkeypatch):
    monkeypatch.chdir(ROOT)  # the example reads a clip of examples/audio
    (code,) = re.findall(r"```python\n(.*?)```", README, flags=re.S)
    expected = [line.split("#")[1].split(":")[0].strip() for line in code.splitlines() if line.startswith("print(")]
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        exec(compile(code, "README.md", "exec"), {})
    assert output.getvalue().splitlines() == expected
