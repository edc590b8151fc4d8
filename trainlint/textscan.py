"""Searching a file's text for words, fast: the quick tests that run on every file before (or instead of) a
parse (``Rule.may_fire``, "does this entry train?").

Python's ``re`` tries a pattern that begins with ``\\b``, or with an alternation of many words, at every
position of the text: ``\\b(?:RandomCrop|RandomResizedCrop|...)\\s*\\(`` over the 1,099 files of the speed
corpus costs ~0.5 s, as much as a twentieth of parsing them. :func:`search_words` asks the same pattern
only where a word holding one of a few literal substrings (``hints``) starts, which ``str.find`` locates
at memory speed.
"""

from __future__ import annotations

import re
from typing import Sequence


def search_words(pattern: "re.Pattern[str]", text: str, hints: Sequence[str], ignore_case: bool = False) -> bool:
    """``bool(pattern.search(text))``, for a ``pattern`` whose every match starts where a word starts and
    holds one of ``hints`` in that first word (lower case with ``ignore_case``, for a pattern compiled with
    ``re.I``): the pattern is matched at the start of each word that holds a hint."""
    haystack = text
    if ignore_case:
        if not text.isascii():  # (lowering may change the length of other text: positions would not hold)
            return pattern.search(text) is not None
        haystack = text.lower()
    find, match = haystack.find, pattern.match
    for hint in hints:
        i = find(hint)
        while i >= 0:
            start = i
            while start and (text[start - 1].isalnum() or text[start - 1] == "_"):  # (re's \w)
                start -= 1
            if match(text, start) is not None:
                return True
            i = find(hint, i + 1)
    return False
