"""reasonmill: build verified reasoning datasets for fine-tuning LLMs.

```python
from reasonmill import Pipeline
result = Pipeline.from_yaml("configs/quickstart.yaml").run()
```
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from reasonmill.pipeline import Pipeline


def __getattr__(name: str) -> Any:
    # lazy, so `import reasonmill` stays cheap in worker processes
    if name == "Pipeline":
        from reasonmill.pipeline import Pipeline

        return Pipeline
    raise AttributeError(name)


__all__ = ["Pipeline", "__version__"]
