"""Which answer a provider's response produced, for ``gf.rate(response)``.

A model-SDK wrapper remembers, per response id, the conversation and event of the answer
it recorded; ``gf.rate`` then takes the response object, or its id, as the target
(core/targets.py). One :class:`ResponseAnswers` per wrapper, registered with
``register_target_resolver(answers.target)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..core.targets import AnswerMap, AnswerRef
from .calls import CallState


class ResponseAnswers:
    """A bounded map response id -> answer, and the rating-target resolver reading it.

    Args:
        id_of: the response id of an SDK object passed to ``gf.rate`` (None when the
            object is not this SDK's response).
    """

    __slots__ = ("_answers", "_id_of")

    def __init__(self, id_of: Callable[[Any], Any]) -> None:
        self._answers: AnswerMap[str] = AnswerMap()
        self._id_of = id_of

    def remember(self, response_id: Any, call: CallState) -> None:
        """Remember which answer ``response_id`` produced (an empty or non-text id: none)."""
        if isinstance(response_id, str) and response_id:
            self._answers.put(response_id, call.conv, call.key)

    def target(self, target: Any) -> AnswerRef | None:
        """``gf.rate`` targets: a response id, or a response object (its id)."""
        if isinstance(target, str):
            return self._answers.get(target)
        rid = self._id_of(target)
        return self._answers.get(rid) if isinstance(rid, str) and rid else None


def attribute_of(module_prefix: str, name: str) -> Callable[[Any], Any]:
    """``id_of`` for an SDK whose response objects live in ``module_prefix`` and carry
    their id as attribute ``name``."""

    def id_of(target: Any) -> Any:
        if type(target).__module__.startswith(module_prefix):
            return getattr(target, name, None)
        return None

    return id_of
