"""Damaged state files: lean.loads and the record reader (no root needed)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from nspod import lean, records
from nspod.errors import DamagedRecord
from nspod.store import Store

MALFORMED = [
    "",  # an empty file
    "   \n",
    "{",  # truncated at each point
    '{"name"',
    '{"name":',
    '{"name": "p"',
    '{"name": "p",',
    '"abc',
    '"\\u12"',
    "[1,",
    "garbage",
    "nul",
    "\x00\x00",
    '{"a" 1}',
    "{} {}",
    "[" * 100_000,  # nested beyond the recursion limit
]


@pytest.mark.parametrize("text", MALFORMED)
def test_loads_raises_value_error_on_malformed_input(text: str) -> None:
    with pytest.raises(ValueError):
        lean.loads(text)


def test_loads_without_the_c_module_raises_value_error_too() -> None:
    """The public-json fallback (an interpreter without _json) behaves the same."""
    code = (
        "import sys; sys.modules['_json'] = None\n"
        "from nspod import lean\n"
        "assert not hasattr(lean, '_scan'), 'the fallback is not in use'\n"
        "assert lean.loads(' {\"a\": [1, 2.5, null]} ') == {'a': [1, 2.5, None]}\n"
        "assert lean.dumps({'b': 1, 'a': True}) == '{\"a\": true, \"b\": 1}'\n"
        "bad = []\n"
        f"for text in {MALFORMED!r}:\n"
        "    try:\n"
        "        lean.loads(text)\n"
        "    except ValueError:\n"
        "        continue\n"
        "    except BaseException as e:\n"
        "        bad.append((text[:20], type(e).__name__))\n"
        "    else:\n"
        "        bad.append((text[:20], 'no error'))\n"
        "assert not bad, bad\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd="/", timeout=60)
    assert r.returncode == 0, r.stderr


def test_loads_and_dumps_round_trip() -> None:
    obj = {"name": "p", "n": [1, 2.5, None, True], "s": "é\n\"", "d": {}}
    assert lean.loads(lean.dumps(obj)) == obj


def _pod_json(tmp_path: Path, content: str | None) -> tuple[Store, str]:
    store = Store(tmp_path)
    store.ensure()
    pdir = Path(store.pod_dir("p"))
    pdir.mkdir()
    path = pdir / "pod.json"
    if content is None:
        path.mkdir()
    else:
        path.write_text(content)
    return store, str(path)


DAMAGED = [
    (None, "is a directory"),
    ("", "empty"),
    ('{"name": "p", "hostn', "not JSON"),
    ("garbage\n", "not JSON"),
    ("[1, 2]", "not a JSON object"),
    ('{"hostname": "p", "created": 1, "state": "running"}', "no 'name'"),
    ('{"name": "p", "hostname": "p", "created": "yesterday", "state": "running"}',
     "'created' is a str"),
    ('{"name": "p", "hostname": "p", "created": 1, "state": "running", "pid": "12"}',
     "'pid' is a str"),
    ('{"name": "p", "hostname": "p", "created": 1, "state": "running", "net": []}',
     "'net' is a list"),
]


@pytest.mark.parametrize(("content", "why"), DAMAGED)
def test_damaged_pod_record_is_named(tmp_path: Path, content: str | None, why: str) -> None:
    store, path = _pod_json(tmp_path, content)
    with pytest.raises(DamagedRecord) as e:
        store.load("p")
    assert str(e.value).startswith(f"damaged record {path}: {why}")


def test_damaged_record_unreadable_bytes(tmp_path: Path) -> None:
    store, path = _pod_json(tmp_path, "")
    Path(path).write_bytes(b'{"name": "\xff"}')
    with pytest.raises(DamagedRecord, match="not UTF-8"):
        store.load("p")


def test_missing_record_is_no_such_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        records.read(os.path.join(tmp_path, "nope.json"), records.POD, records.POD_REQUIRED)


def test_claimed_member_record_is_not_damage(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    path.write_text("")
    assert records.read_claimed(str(path), records.MEMBER, records.MEMBER_REQUIRED) is None
    path.write_text("{")
    with pytest.raises(DamagedRecord):
        records.read_claimed(str(path), records.MEMBER, records.MEMBER_REQUIRED)
