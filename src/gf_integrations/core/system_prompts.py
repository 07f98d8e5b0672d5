"""System prompts in wire form: components with ``{{variables}}``, or plain text; sent
once per conversation and again only when they change."""

from __future__ import annotations

import json
from typing import Any

from .conversations import ConvState
from .events import SystemPrompt
from .ids import content_digest
from .masking import MaskFn, apply_mask
from .safejson import Limits, truncate_text
from .wireform import wire_text


class SystemPrompts:
    """Maps a conversation's system prompt and marks it pending when it changed."""

    __slots__ = ("_last", "limits", "mask")

    def __init__(self, limits: Limits, mask: MaskFn | None) -> None:
        self.limits = limits
        self.mask = mask
        # the last prompt mapped, its wire form and digest: shared by the next conversation
        # that has the same prompt (wire values are only ever encoded, never changed)
        self._last: tuple[SystemPrompt, str | dict[str, Any], str] | None = None

    def set(self, state: ConvState, prompt: SystemPrompt) -> None:
        """Note ``prompt`` for the conversation; pending for sending if it changed."""
        if prompt == state.prompt_source:
            return  # the same prompt as last call (the usual case): skip mapping + digest
        state.prompt_source = prompt
        cached = self._last
        if cached is not None and cached[0] == prompt:
            # the prompt every conversation shares (an app's fixed system prompt)
            _, wire, digest = cached
        else:
            mapped = self.wire(prompt)
            if mapped is None:
                return
            wire = mapped
            digest = content_digest(json.dumps(wire, sort_keys=True, ensure_ascii=False))
            self._last = (prompt, wire, digest)
        if digest != state.prompt_digest:
            state.prompt_digest = digest
            state.pending_prompt = wire

    def wire(self, prompt: SystemPrompt) -> str | dict[str, Any] | None:
        """The wire form of ``prompt`` (masked, truncated), None when it has no text."""
        lim = self.limits
        if prompt.components:
            comps = []
            for comp in prompt.components:
                content = comp.get("content")
                if content is None:
                    continue
                c: dict[str, Any] = {"content": truncate_text(str(content), lim.max_string)}
                for src, dst in (
                    ("name", "name"),
                    ("type", "type"),
                    ("source", "source"),
                    ("is_dynamic", "isDynamic"),
                    ("external_component_id", "externalComponentId"),
                ):
                    if comp.get(src) is not None:
                        c[dst] = comp.get(src)
                if self.mask is not None:
                    c["content"] = apply_mask(self.mask, c["content"])
                comps.append(c)
            if not comps:
                return None
            obj: dict[str, Any] = {"components": comps}
            if prompt.variables:
                variables = {str(k): wire_text(v, lim) or "" for k, v in prompt.variables.items()}
                obj["variables"] = apply_mask(self.mask, variables) if self.mask else variables
            if prompt.external_prompt_id:
                obj["externalPromptId"] = prompt.external_prompt_id
            return obj
        if prompt.content:
            text = truncate_text(prompt.content, lim.max_string)
            if self.mask is not None:
                text = apply_mask(self.mask, text)
            if prompt.external_prompt_id:
                return {"content": text, "externalPromptId": prompt.external_prompt_id}
            return text
        return None
