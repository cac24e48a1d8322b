"""Generated tokens to text, one step at a time, with OpenAI's stop strings.

`tokenizers`' DecodeStream turns tokens into text as they come (holding back a character split across
tokens). What no library does for us is OpenAI's `stop`: the stop string is cut from the answer and
generation ends where it starts; text that may still turn out to start a stop string is held back from a
stream until the next tokens decide.
"""

from __future__ import annotations

from collections.abc import Sequence

from tokenizers import Tokenizer
from tokenizers.decoders import DecodeStream


class IncrementalText:
    def __init__(self, tokenizer: Tokenizer, prompt_ids: Sequence[int], stop: Sequence[str]) -> None:
        self._tokenizer = tokenizer
        # Seeded with the prompt, so a token's leading space or merge with the prompt decodes as in one text.
        self._stream = DecodeStream(ids=list(prompt_ids[-8:]), skip_special_tokens=True)
        self._stop = tuple(item for item in stop if item)
        self._hold_back = max((len(item) for item in self._stop), default=1) - 1
        self._text = ""
        self._sent = 0
        self.stopped = False

    def add(self, token_id: int) -> None:
        """Takes one generated token; sets `stopped` once the text reaches a stop string."""
        if self.stopped:
            return
        chunk = self._stream.step(self._tokenizer, token_id)
        if not chunk:
            return
        searched_from = max(0, len(self._text) - self._hold_back)
        self._text += chunk
        cut = min((found for item in self._stop if (found := self._text.find(item, searched_from)) >= 0), default=-1)
        if cut >= 0:
            self._text = self._text[:cut]
            self.stopped = True

    def take(self, final: bool) -> str:
        """The text not yet taken; until `final`, less what may still begin a stop string."""
        end = len(self._text) if final or self.stopped else max(self._sent, len(self._text) - self._hold_back)
        piece = self._text[self._sent : end]
        self._sent = end
        return piece
