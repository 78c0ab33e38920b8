"""lmembed: decoder-only LLMs (Llama, Qwen2) as text-embedding models, from Python.

The C++ library does the work (tokenizer, frozen backbone, pooling, training, MTEB-style
evaluation); this package binds it::

    import lmembed
    enc = lmembed.Encoder("data/models/stories260K.gguf", attention="causal", pooling="mean")
    e = enc.encode(["A man is playing a flute.", "A man plays the flute."])  # float32 [2, dim]
    print(float(e[0] @ e[1]))

Errors are lmembed.Error and its subclasses FormatError (.file, .offset), ShapeError,
ConfigError, IoError (an OSError) and InputError.
"""
from __future__ import annotations

import json
import os
from typing import Any, Callable, Sequence, Tuple, Union

# OpenMP threads that spin while waiting starve each other on a busy machine; sleeping at once
# costs nothing measurable when idle (bench/results/omp_wait_policy_*.txt). libgomp reads this
# when it is loaded, which importing _lmembed may do: a value the user set wins, and a libgomp
# another module loaded first keeps its own setting.
if "OMP_WAIT_POLICY" not in os.environ and "LMEMBED_OMP_WAIT_POLICY" not in os.environ:
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"

from . import _lmembed  # noqa: E402
from ._errors import ConfigError, Error, FormatError, InputError, IoError, ShapeError  # noqa: E402
from ._lmembed import (  # noqa: F401,E402  (re-exported API)
    Encoder,
    __version__,
    bundled_task_names,
    cache,
    cpu_level,
    format_instruction,
    task_data,
    task_texts,
    train,
)
from ._lmembed import _evaluate  # noqa: E402

_lmembed._set_error_types(Error, FormatError, ShapeError, ConfigError, IoError, InputError)

__all__ = [
    "ConfigError", "Encoder", "Error", "FormatError", "InputError", "IoError", "ShapeError",
    "__version__", "bundled_task_names", "cache", "cpu_level", "evaluate", "format_instruction",
    "task_data", "task_texts", "train", "Lookup",
]

Keys = Sequence[Tuple[str, str]]
Model = Union[Encoder, Tuple[Keys, Any], Callable[[list, str], Any]]


def evaluate(model: Model, tasks: Union[str, Sequence[str], None] = None, *,
             data_dir: Union[str, os.PathLike, None] = None, max_examples: int = 0,
             seed: int = 42, n_experiments: int = 10, samples_per_label: int = 8,
             clustering_runs: int = 10, batch_size: int = 256, instructions: bool = True,
             progress: bool = False) -> list[dict]:
    """Scores embeddings on MTEB-style tasks with the library's evaluator (`lmembed eval`).

    model: an lmembed.Encoder (queries get format_instruction(task instruction), as
    `lmembed eval --model`), a (keys, embeddings) pair with keys[i] = (instruction, text) of row
    i (as `lmembed eval --embeddings --texts`; see task_texts), or a callable
    (texts: list[str], instruction: str) -> array [n, d].
    tasks: bundled names (default: all, see bundled_task_names()) or task folders in MTEB's
    layout. Returns one record per task: task, category, metric, value (the main score),
    metrics, per_example, notes ...
    """
    if tasks is None:
        tasks = bundled_task_names()
    elif isinstance(tasks, (str, os.PathLike)):
        tasks = [tasks]
    if isinstance(model, (tuple, list)) and len(model) == 2 and not callable(model):
        import numpy as np
        keys = [(str(i), str(t)) for i, t in model[0]]
        model = (keys, np.ascontiguousarray(model[1], dtype=np.float32))
    records = _evaluate(model, [os.fspath(t) for t in tasks], data_dir=data_dir,
                        max_examples=max_examples, seed=seed, n_experiments=n_experiments,
                        samples_per_label=samples_per_label, clustering_runs=clustering_runs,
                        batch_size=batch_size, instructions=instructions, progress=progress)
    return [json.loads(r) for r in records]


class Lookup:
    """Precomputed embeddings as an encoder: row i of `embeddings` is keys[i] =
    (instruction, text). encode(texts, instruction) returns their rows (KeyError for a text
    that is not there), so the same vectors can be scored by lmembed.evaluate and, through
    lmembed.st, by MTEB or sentence-transformers."""

    def __init__(self, keys: Keys, embeddings: Any):
        import numpy as np
        self.keys = [(str(i), str(t)) for i, t in keys]
        self.embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
        if self.embeddings.ndim != 2 or len(self.keys) != self.embeddings.shape[0]:
            raise ShapeError(f"Lookup: {len(self.keys)} keys for embeddings of shape "
                             f"{self.embeddings.shape}")
        self._row = {k: i for i, k in enumerate(self.keys)}
        self.dim = int(self.embeddings.shape[1])

    def encode(self, texts: Sequence[str], instruction: str | None = None,
               batch_size: int | None = None):
        ins = instruction or ""
        return self.embeddings[[self._row[(ins, t)] for t in texts]]
