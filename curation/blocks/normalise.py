"""Unicode, control-character and whitespace normalisation, before any filter sees the text.

Control characters: the line separators Python's str.splitlines() honours besides \n and \r (vertical tab,
form feed, the file/group/record separators, NEL, U+2028, U+2029) become \n, so every later step (datatrove's
filters split on \n, others use splitlines) sees the same lines; every other C0 and C1 control character
(NUL, bell, backspace, escape, DEL, U+0080-U+009F, ...) is removed. Tab stays. The count of documents that
lost one is the block's `control_characters` stat.
"""

from __future__ import annotations

import re
import unicodedata

from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from . import marks

# Exotic spaces (no-break, en/em, ideographic, ...) become a plain space; zero-width characters go.
_ODD_SPACES = re.compile(r"[\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]")
_ZERO_WIDTH = re.compile(r"[\u200b\u200c\u200d\u2060\ufeff]")
_LINE_SEPARATORS = re.compile("[\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
_CONTROLS = re.compile("[\x00-\x08\x0e-\x1b\x1f\x7f-\x84\x86-\x9f]")
_TRAILING = re.compile(r"[ \t]+\n")
_MANY_BLANK_LINES = re.compile(r"\n{3,}")


def normalise_text(text: str, form: str = "NFC") -> str:
    """NFC (or NFKC), newlines as \\n, no control characters, odd spaces as ' ', no trailing spaces, at most
    one blank line.

    Leading indentation is kept: code and nested lists depend on it.
    """
    text = unicodedata.normalize(form, text)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROLS.sub("", _LINE_SEPARATORS.sub("\n", text))
    text = _ZERO_WIDTH.sub("", _ODD_SPACES.sub(" ", text))
    text = _TRAILING.sub("\n", text + "\n")
    return _MANY_BLANK_LINES.sub("\n\n", text).strip("\n").rstrip()


class Normalise(PipelineStep):
    type = "✂️ - FORMAT"
    name = "🔤 Normalise"

    def __init__(self, form: str = "NFC"):
        super().__init__()
        self.form = form

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        for doc in data:
            if marks.is_live(doc):
                with self.track_time():
                    text = normalise_text(doc.text, self.form)
                    if _CONTROLS.search(doc.text):
                        self.stat_update("control_characters")
                if text != doc.text:
                    self.stat_update("changed")
                if text.strip():
                    doc.text = text
                else:  # only whitespace or zero-width characters: nothing left to curate
                    marks.drop(doc, "bad_record:empty_text", "text is empty after normalisation")
                    doc.metadata[marks.RAW_TEXT] = doc.text
            yield doc
