"""The provenance report's flags on learner code, read statically (no kernel): what reaches around
the test that calls a graded function, and answers kept in a table rather than computed."""

from __future__ import annotations

import json

from autograder.grading.provenance import STRING_TABLE_AT, TABLE_AT, machinery_flags, provenance


def _flags(source: str, name: str = "f") -> list[str]:
    return provenance([(source, False)], [name], {}, set())[name].flags


FRAME_WALK = '''def f(batch):
    try:
        raise RuntimeError
    except RuntimeError as exc:
        caller = exc.__traceback__.tb_frame.f_back
    if caller.f_locals.get("_ok") is False:
        raise ValueError("refused")
'''


def test_reading_the_callers_frame_through_a_traceback_is_flagged():
    found = machinery_flags([(3, FRAME_WALK)])
    assert any("__traceback__" in f for f in found) and any("f_locals" in f for f in found)
    assert any("sys.exc_info" in f for f in machinery_flags([(1, "import sys\ndef f():\n    return sys.exc_info()[2]\n")]))


def test_honest_error_handling_is_not_flagged():
    honest = '''def parse(text):
    try:
        return int(text)
    except ValueError as err:
        raise ValueError(f"not a number: {text!r}") from err
'''
    assert machinery_flags([(1, honest)]) == []


def test_a_table_kept_in_a_string_is_flagged_like_a_literal_table():
    table = {f"<answer>{i}</answer>": i for i in range(40)}
    packed = f"import json\nTABLE = {json.dumps(json.dumps(table))}\ndef f(text):\n    return json.loads(TABLE).get(text)\n"
    assert any("parses a table of" in flag and "characters out of a string" in flag for flag in _flags(packed))
    rows = "\n".join(f"{k}={v}" for k, v in table.items())
    inline = f"def f(text):\n    return dict(line.split('=') for line in {rows!r}.split('\\n')).get(text)\n"
    assert any("parses a table of" in flag and "characters out of a string" in flag for flag in _flags(inline))
    literal = f"def f(text):\n    return {table!r}.get(text)\n"
    assert any("table of" in flag for flag in _flags(literal)) and len(table) * 2 >= TABLE_AT


def test_short_strings_that_are_split_or_parsed_are_not_a_table():
    honest = '''import re
TAGS = "<answer> </answer>"
def f(text):
    opening, closing = TAGS.split()
    digits = re.findall(r"-?[0-9]+", text)
    return int(digits[0]) if opening in text and closing in text and digits else None
'''
    assert _flags(honest) == []
    assert len('"<answer> </answer>"') < STRING_TABLE_AT
