"""Prompt templates per category (SPEC section 1, item 6).

A template is a ``str.format`` string with the fields ``{problem}`` and
``{starter_code}``; users override any category in the ``templates`` setting. The
system prompt asks for the ``<think>…</think><answer>…</answer>`` form that the
``think``/``answer`` split and the format verifier expect.
"""

from __future__ import annotations

DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful assistant. To answer, first think through the reasoning process "
    "inside <think> </think> tags, then give the final answer inside <answer> </answer> tags, "
    "i.e. <think> reasoning process here </think><answer> answer here </answer>."
)

MATH_SUFFIX = "Let's think step by step and output the final answer within \\boxed{}."

DEFAULT_TEMPLATES: dict[str, str] = {
    "math": "{problem}\n" + MATH_SUFFIX.replace("{", "{{").replace("}", "}}"),
    "code": (
        "{problem}{starter_block}\n"
        "Write your solution in Python 3 and put the complete code in a single ```python fenced block."
    ),
    "default": "{problem}",
}


def render_prompt(record: dict, templates: dict[str, str] | None = None) -> str:
    """The user message for a record, from its category's template (or ``default``)."""
    merged = {**DEFAULT_TEMPLATES, **templates} if templates else DEFAULT_TEMPLATES
    category = record.get("category") or "default"
    template = merged.get(category, merged["default"])
    starter = record.get("starter_code") or ""
    starter_block = f"\n\nStart from this code:\n```python\n{starter}\n```" if starter.strip() else ""
    try:
        return template.format(problem=record.get("problem") or "", starter_code=starter, starter_block=starter_block)
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(
            f"generate.templates[{category!r}] is not a valid template ({exc!r}); it may use only "
            "{problem}, {starter_code} and {starter_block}, and must double literal braces as {{ }}"
        ) from exc


def build_messages(record: dict, system_prompt: str | None, templates: dict[str, str] | None = None) -> list[dict]:
    """Chat messages for one record: an optional system message, then the user prompt."""
    messages = []
    if system_prompt:
        messages.append({"role": "system", "content": system_prompt})
    messages.append({"role": "user", "content": render_prompt(record, templates)})
    return messages
