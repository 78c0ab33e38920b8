"""sentence-transformers and MTEB shapes around an lmembed encoder.

SentenceTransformerLike: the encode(sentences, batch_size=..., normalize_embeddings=...,
prompt=..., convert_to_numpy=...) signature that sentence-transformers' evaluators (and code
written for a SentenceTransformer) call, plus similarity() and
get_sentence_embedding_dimension().

MtebEncoder: MTEB 2's EncoderProtocol (encode(DataLoader, *, task_metadata, hf_split,
hf_subset, prompt_type)), so `mteb.evaluate(MtebEncoder(...), tasks)` and MTEB's evaluator
classes score an lmembed design directly. Prompts follow sentence-transformers/MTEB: a dict
from "{task}-{query|document}", "{task}", "{task type}-{query|document}", "{task type}",
"query" or "document" to the prefix text (first match wins, as MTEB resolves them).

Neither class imports torch, sentence-transformers or mteb; torch is imported only for
convert_to_tensor=True.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import numpy as np

__all__ = ["SentenceTransformerLike", "MtebEncoder", "cos_sim"]


def cos_sim(a: Any, b: Any) -> np.ndarray:
    """Cosine similarity matrix [len(a), len(b)] (float32; zero rows give 0)."""
    a = np.atleast_2d(np.asarray(a, dtype=np.float32))
    b = np.atleast_2d(np.asarray(b, dtype=np.float32))
    na = np.linalg.norm(a, axis=1, keepdims=True)
    nb = np.linalg.norm(b, axis=1, keepdims=True)
    a = np.divide(a, na, out=np.zeros_like(a), where=na > 0)
    b = np.divide(b, nb, out=np.zeros_like(b), where=nb > 0)
    return a @ b.T


class SentenceTransformerLike:
    """An lmembed encoder (lmembed.Encoder, lmembed.Lookup, or anything with
    encode(texts, instruction=None) -> array and .dim) behind sentence-transformers' encode().

    prompts: name -> prefix, as SentenceTransformer(prompts=...); default_prompt_name picks
    one for calls without prompt/prompt_name. A prompt is handed to lmembed as the
    instruction: put before the text and left out of mean-style pooling.
    """

    similarity_fn_name = "cosine"

    class _ModelCard:
        """Where sentence-transformers' evaluators store their metrics (model.model_card_data)."""

        def __init__(self):
            self.eval_results = []

        def set_evaluation_metrics(self, evaluator, metrics, epoch=0, step=0):
            self.eval_results.append((type(evaluator).__name__, dict(metrics), epoch, step))

    def __init__(self, encoder: Any, *, prompts: Mapping[str, str] | None = None,
                 default_prompt_name: str | None = None, batch_size: int = 32):
        self.encoder = encoder
        self.prompts = dict(prompts or {})
        self.default_prompt_name = default_prompt_name
        self.batch_size = batch_size
        self.model_card_data = self._ModelCard()
        if default_prompt_name is not None and default_prompt_name not in self.prompts:
            raise KeyError(f"default_prompt_name {default_prompt_name!r} is not in prompts "
                           f"({sorted(self.prompts)})")

    def get_sentence_embedding_dimension(self) -> int:
        return int(self.encoder.dim)

    def encode(self, sentences: str | Sequence[str], batch_size: int | None = None,
               show_progress_bar: bool | None = None, output_value: str = "sentence_embedding",
               precision: str = "float32", convert_to_numpy: bool = True,
               convert_to_tensor: bool = False, device: str | None = None,
               normalize_embeddings: bool = False, prompt_name: str | None = None,
               prompt: str | None = None, **kwargs: Any):
        """Embeddings of sentences, as SentenceTransformer.encode returns them: an array
        [n, dim] (1-D for a single string), a torch tensor with convert_to_tensor=True, or a
        list of 1-D arrays with convert_to_numpy=False. Keywords that make no sense for lmembed
        (device, show_progress_bar, ...) are accepted and ignored."""
        if output_value not in (None, "sentence_embedding"):
            raise ValueError(f"output_value={output_value!r}: lmembed returns sentence "
                             "embeddings only")
        if precision not in (None, "float32"):
            raise ValueError(f"precision={precision!r}: lmembed returns float32 embeddings")
        truncate_dim = kwargs.pop("truncate_dim", None)
        single = isinstance(sentences, str)
        texts = [sentences] if single else [str(s) for s in sentences]
        if prompt is None:
            name = prompt_name if prompt_name is not None else self.default_prompt_name
            if name is not None:
                if name not in self.prompts:
                    raise KeyError(f"prompt_name {name!r} is not in prompts ({sorted(self.prompts)})")
                prompt = self.prompts[name]
        bs = batch_size or self.batch_size
        parts = [self.encoder.encode(texts[i:i + bs], prompt or None)
                 for i in range(0, len(texts), bs)]
        e = parts[0] if len(parts) == 1 else (
            np.concatenate(parts) if parts else np.zeros((0, self.encoder.dim), np.float32))
        e = np.asarray(e, dtype=np.float32)
        if truncate_dim is not None:
            e = np.ascontiguousarray(e[:, :truncate_dim])
        if normalize_embeddings:
            n = np.linalg.norm(e, axis=1, keepdims=True)
            e = np.divide(e, n, out=np.zeros_like(e), where=n > 0)
        if single:
            e = e[0]
        if convert_to_tensor:
            import torch
            return torch.from_numpy(np.ascontiguousarray(e))
        if not convert_to_numpy:
            return list(e) if not single else e
        return e

    def encode_query(self, sentences, **kwargs):
        """encode() with the "query" prompt when there is one (sentence-transformers >= 5)."""
        if kwargs.get("prompt") is None and kwargs.get("prompt_name") is None and "query" in self.prompts:
            kwargs["prompt_name"] = "query"
        return self.encode(sentences, **kwargs)

    def encode_document(self, sentences, **kwargs):
        """encode() with the "document" prompt when there is one (sentence-transformers >= 5)."""
        if kwargs.get("prompt") is None and kwargs.get("prompt_name") is None and "document" in self.prompts:
            kwargs["prompt_name"] = "document"
        return self.encode(sentences, **kwargs)

    def similarity(self, a: Any, b: Any) -> np.ndarray:
        """Cosine similarity matrix, as SentenceTransformer.similarity with cosine."""
        return cos_sim(a, b)

    def similarity_pairwise(self, a: Any, b: Any) -> np.ndarray:
        """Cosine of each pair (row i of a with row i of b)."""
        a = np.atleast_2d(np.asarray(a, dtype=np.float32))
        b = np.atleast_2d(np.asarray(b, dtype=np.float32))
        num = np.einsum("ij,ij->i", a.astype(np.float64), b.astype(np.float64))
        den = np.linalg.norm(a, axis=1).astype(np.float64) * np.linalg.norm(b, axis=1)
        return np.divide(num, den, out=np.zeros_like(num), where=den > 0).astype(np.float32)


def _enum_value(x: Any) -> str | None:
    if x is None:
        return None
    return str(getattr(x, "value", x))


class MtebEncoder(SentenceTransformerLike):
    """MTEB 2's EncoderProtocol over an lmembed encoder: MTEB hands over a DataLoader of
    batches ({"text": [...]}), the task's metadata and the prompt type; the prompt is resolved
    from `prompts` in MTEB's order of priority and passed to lmembed as the instruction."""

    def __init__(self, encoder: Any, *, prompts: Mapping[str, str] | None = None,
                 name: str = "lmembed", batch_size: int = 256):
        super().__init__(encoder, prompts=prompts, batch_size=batch_size)
        self.name = name

    def resolve_prompt(self, task_metadata: Any, prompt_type: Any) -> str | None:
        """The prompt for a task and prompt type ("query"/"document"/None), MTEB's order."""
        task = getattr(task_metadata, "name", None)
        ttype = getattr(task_metadata, "type", None)
        pt = _enum_value(prompt_type)
        keys = []
        if task and pt:
            keys.append(f"{task}-{pt}")
        if task:
            keys.append(task)
        if ttype and pt:
            keys.append(f"{ttype}-{pt}")
        if ttype:
            keys.append(ttype)
        if pt:
            keys.append(pt)
        for k in keys:
            if k in self.prompts:
                return self.prompts[k]
        return None

    def encode(self, inputs: Any, *, task_metadata: Any = None, hf_split: str | None = None,
               hf_subset: str | None = None, prompt_type: Any = None, **kwargs: Any):
        """Embeddings [n, dim] of every text of the DataLoader (or a plain list of texts)."""
        if isinstance(inputs, (str, list, tuple)):
            return super().encode(inputs, **kwargs)
        texts = _texts_of(inputs)
        prompt = self.resolve_prompt(task_metadata, prompt_type)
        return super().encode(texts, batch_size=self.batch_size, prompt=prompt)

    @property
    def mteb_model_meta(self):
        """An empty ModelMeta naming this encoder (mteb.evaluate records it)."""
        from mteb.models import ModelMeta
        return ModelMeta.create_empty(overwrites=dict(name=f"lmembed/{self.name}", revision="local"))


def _texts_of(loader: Iterable[Any]) -> list[str]:
    texts: list[str] = []
    for batch in loader:
        if isinstance(batch, Mapping):
            if "text" not in batch:
                raise ValueError(f"MtebEncoder: a batch without 'text' (keys {sorted(batch)}): "
                                 "lmembed embeds text only")
            texts.extend(str(t) for t in batch["text"])
        else:
            texts.extend(str(t) for t in batch)
    return texts
